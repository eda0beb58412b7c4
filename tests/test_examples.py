"""The gallery examples run to completion, headless, and leave no files behind.

Each ``examples/plot_*.py`` is executed as a script in a fresh interpreter
(as sphinx-gallery and a user would run it) with the Agg backend, from an
empty working directory.  The examples print their own cross-checks against
theory; here we require a clean exit, no traceback or warning on stderr, an
untouched working directory and an empty temporary directory afterwards.
Every example takes a few seconds, so all but the quick start are marked
``slow`` (they still run in CI).
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
QUICK = {"plot_uv_quickstart.py"}


HAS_TORCH = importlib.util.find_spec("torch") is not None


def _examples():
    scripts = sorted(EXAMPLES.glob("plot_*.py"))
    params = []
    for path in scripts:
        marks = [] if path.name in QUICK else [pytest.mark.slow]
        uses_torch = re.search(r"^(import|from) torch\b", path.read_text(), re.M)
        if uses_torch and not HAS_TORCH:
            # the optional extra: pip install -e ".[torch]" (CI installs it)
            marks.append(pytest.mark.skip(reason="needs the torch extra"))
        params.append(pytest.param(path, id=path.stem, marks=marks))
    return params


def test_gallery_is_complete_and_ordered():
    """The docs order the gallery by the paper's story: every example has a place."""
    spec = importlib.util.spec_from_file_location(
        "gallery_order", EXAMPLES.parent / "docs" / "_ext" / "gallery_order.py"
    )
    order = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(order)
    names = {path.name for path in EXAMPLES.glob("plot_*.py")}
    assert set(order.STORY) == names
    assert len(names) >= 6
    assert (EXAMPLES / "GALLERY_HEADER.rst").is_file()


@pytest.mark.parametrize("script", _examples())
def test_example_runs(script, tmp_path):
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "default"}
    env["TMPDIR"] = str(tmp)  # temporary files must be cleaned up too
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stdout.strip(), "an example should print what it found"
    assert list(cwd.iterdir()) == []  # nothing written to the working dir
    assert list(tmp.iterdir()) == []  # nor left in the temporary directory
