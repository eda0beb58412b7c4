"""Doctests of the optional torch module run only where the extra is installed."""

import importlib.util

collect_ignore = []
if importlib.util.find_spec("torch") is None:
    collect_ignore.append("sharpsk/_torch.py")
