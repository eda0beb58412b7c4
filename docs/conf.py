"""Sphinx configuration of the sharpsk documentation.

Build (from the repository root, with the ``docs`` extra installed)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

``-D plot_gallery=0`` skips running the examples.  Two choices here keep that
command working offline (CI reaches package registries only):

* math is MathML written at build time (``_ext/mathml.py``): no CDN, no LaTeX;
* every intersphinx target has an empty local fallback inventory, so an
  unreachable inventory is logged as INFO and its links stay plain text,
  instead of the WARNING (an error under ``-W``) that Sphinx emits when none
  of a target's locations can be read.
"""

import importlib
import os
import re
import socket
import sys
from pathlib import Path

from sphinx.util import logging

import sharpsk

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

logger = logging.getLogger("sharpsk.docs")

# -- Project ------------------------------------------------------------------
project = "sharpsk"
author = "The sharpsk developers"
copyright = "2025, The sharpsk developers"
release = sharpsk.__version__
version = release

# -- General ------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "mathml",  # _ext/mathml.py
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "_intersphinx", "README.md", "Thumbs.db", ".DS_Store"]
root_doc = "index"
default_role = "literal"
add_module_names = False
html_math_renderer = "mathml"

# -- autodoc / autosummary / numpydoc -----------------------------------------
autosummary_generate = True
autodoc_typehints = "none"
autodoc_default_options = {"member-order": "bysource"}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = True
# Docstring checks that fail the build under -W (numpydoc's validation codes).
# Left out: the scikit-learn style this project follows ("self : object" in
# Returns is RT02; methods without See Also / Examples / extended summary) and
# PR09 (a description ending in ".)").
numpydoc_validation_checks = {"all", "ES01", "EX01", "SA01", "RT02", "PR09"}
# Methods inherited from scikit-learn are validated by scikit-learn; constants
# (ALL_CAPS) are documented by a comment, not a docstring.
numpydoc_validation_exclude = {
    r"\.[A-Z][A-Z0-9_]*$",
    r"\.(get_params|set_params|score|set_output|fit_transform|get_metadata_routing)$",
    r"\.set_\w+_request$",
}
numpydoc_xref_aliases = {
    # numpydoc's defaults link these with :ref: and :term: roles, which warn
    # when their intersphinx inventory is unavailable (offline builds), or as
    # "python:int", shown verbatim when unresolved.  Plain :obj: targets link
    # the same pages online and read "int" offline.
    **{name: name for name in ("int", "float", "str", "list", "tuple", "dict")},
    **{name: name for name in ("None", "True", "False", "callable")},
    "string": "str",
    "bool": "bool",
    "boolean": "bool",
    "iterable": "collections.abc.Iterable",
    "sequence": "collections.abc.Sequence",
    "generator": "collections.abc.Generator",
    "array-like": "numpy.typing.ArrayLike",
    "array_like": "numpy.typing.ArrayLike",
    "scalar": "numbers.Number",
    "ndarray": "numpy.ndarray",
    "DataFrame": "pandas.DataFrame",
    "Axes": "matplotlib.axes.Axes",
    "RandomState": "numpy.random.RandomState",
    "BaseEstimator": "sklearn.base.BaseEstimator",
    "UVRegressor": "sharpsk.UVRegressor",
    "MLPRegressor": "sharpsk.MLPRegressor",
    "LearningRateScan": "sharpsk.LearningRateScan",
    "ParameterizationTransformer": "sharpsk.ParameterizationTransformer",
    "SpectralDensity": "sharpsk.hessian.SpectralDensity",
}
numpydoc_xref_ignore = {
    "of",
    "or",
    "and",
    "shape",
    "default",
    "optional",
    "instance",
    "like",
    "array-like",
    "sequence",
    "n_samples",
    "n_features",
    "n_records",
    "width",
    "L",
    # words of prose type lines ("object with the joblib.Memory interface")
    "with",
    "the",
    "interface",
    "same",
    "pair",
    "fitted",
}

# -- intersphinx ----------------------------------------------------------------
# Each target: the remote inventory, then an empty local one.  Offline, the
# remote fetch fails, the fallback loads and Sphinx only logs INFO ("had
# working alternatives"); online the real inventory wins.  After an offline
# build, rebuild with -E (or delete docs/_build) to pick up the links.
# Offline (no DNS for docs.python.org within 2 s, or SHARPSK_DOCS_OFFLINE=1)
# only the empty inventories are read: no fetch, no ConnectionError lines.
_EMPTY_INVENTORY = str(DOCS / "_intersphinx" / "empty.inv")


def _online(host="docs.python.org"):
    if os.environ.get("SHARPSK_DOCS_OFFLINE") == "1":
        return False
    try:
        socket.create_connection((host, 443), timeout=2).close()
    except OSError:
        return False
    return True


_INVENTORIES = (None, _EMPTY_INVENTORY) if _online() else _EMPTY_INVENTORY
intersphinx_mapping = {
    name: (url, _INVENTORIES)
    for name, url in {
        "python": "https://docs.python.org/3/",
        "numpy": "https://numpy.org/doc/stable/",
        "scipy": "https://docs.scipy.org/doc/scipy/",
        "sklearn": "https://scikit-learn.org/stable/",
        "seaborn": "https://seaborn.pydata.org/",
        "matplotlib": "https://matplotlib.org/stable/",
        "pandas": "https://pandas.pydata.org/docs/",
        "joblib": "https://joblib.readthedocs.io/en/stable/",
    }.items()
}
intersphinx_timeout = 10

# -- sphinx-gallery -------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",  # execute every plot_*.py
    "ignore_pattern": r"__init__\.py|/_",
    "within_subsection_order": "gallery_order.story_order",
    "doc_module": ("sharpsk",),
    "backreferences_dir": "gen_modules/backreferences",
    "remove_config_comments": True,
    "min_reported_time": 1,
    "show_memory": False,
    # Thumbnails drawn at twice the size the gallery grid shows them
    # (custom.css: columns of about 280 px), so they stay sharp on HiDPI
    # screens; sphinx-gallery's default, 400 x 280 shown at 160 x 112, left
    # the figures unreadably small.
    "thumbnail_size": (640, 448),
}

# -- HTML -----------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sharpsk {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
# The gallery index lists every example as a thumbnail: no need for the
# navigation column, and its width goes to the thumbnails.
html_sidebars = {"index": [], "install": [], "cli": [], "auto_examples/index": []}
# "On this page" lists a class's methods as fit(), not LearningRateScan.fit():
# the long qualified names did not fit the right-hand sidebar.
toc_object_entries_show_parents = "hide"
html_show_sourcelink = False


# -- API completeness -----------------------------------------------------------
# api.rst is written by hand (grouped, with prose); this check makes the build
# fail under -W when a public name is missing from it or it names a stale one.
_PUBLIC_MODULES = ("sharpsk", "sharpsk.plotting", "sharpsk.datasets", "sharpsk.hessian")


def _public_names():
    names = set()
    for modname in _PUBLIC_MODULES:
        try:
            module = importlib.import_module(modname)
        except ImportError:
            continue  # a module that does not exist yet
        public = getattr(module, "__all__", None)
        if public is None:
            public = [
                n
                for n, obj in vars(module).items()
                if not n.startswith("_")
                and callable(obj)
                and getattr(obj, "__module__", None) == modname
            ]
        names.update(f"{modname}.{n}" for n in public if not n.startswith("__"))
    return names


def _autosummary_names(rst_file):
    names, module, inside = set(), None, False
    for line in rst_file.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\.\. (?:current)?module:: (\S+)", line)
        if match:
            module = match[1]
        if line.startswith(".. autosummary::"):
            inside = True
            continue
        if not inside or not line.strip():
            continue
        if not line.startswith(" "):
            inside = False
        elif not line.strip().startswith(":"):
            names.add(f"{module}.{line.strip()}")
    return names


def check_api_reference(app):
    documented = _autosummary_names(DOCS / "api.rst")
    public = _public_names()
    for name in sorted(public - documented):
        logger.warning("api.rst: public name %s is not documented", name)
    for name in sorted(documented - public):
        logger.warning("api.rst: %s is documented but not public", name)


# -- Command-line help -------------------------------------------------------------
# cli.rst includes the --help text of ``sharpsk`` and of each subcommand,
# written here from the real parser so that the page cannot drift from it.
CLI_HELP_DIR = DOCS / "gen_modules" / "cli"


def write_cli_help(app):
    try:
        from sharpsk.cli import build_parser
    except ImportError as exc:
        logger.warning("cli.rst: cannot import sharpsk.cli.build_parser: %s", exc)
        return
    parser = build_parser()
    helps = {"sharpsk": parser}
    for action in parser._subparsers._group_actions:  # the subcommands
        helps.update({f"sharpsk-{name}": sub for name, sub in action.choices.items()})
    CLI_HELP_DIR.mkdir(parents=True, exist_ok=True)
    old_columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"  # argparse wraps to the terminal width
    try:
        for name, sub in helps.items():
            path = CLI_HELP_DIR / f"{name}.txt"
            text = sub.format_help()
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
    finally:
        if old_columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old_columns


# -- Shapes in docstrings ---------------------------------------------------------
# ``ndarray of shape (n_features_in_,)``: in reST a word ending in "_" is a
# hyperlink reference, an error.  scikit-learn writes (`n_features_in_`,);
# quote such names before numpydoc parses the docstring, so both spellings work.
_SHAPE = re.compile(r"shape \(([^()]*)\)")
_TRAILING_UNDERSCORE = re.compile(r"(?<![`\w])([A-Za-z]\w*_)(?=[\s,)+*]|$)")


def quote_shape_names(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        lines[i] = _SHAPE.sub(
            lambda m: "shape (" + _TRAILING_UNDERSCORE.sub(r"`\1`", m[1]) + ")", line
        )


# -- Docstrings inherited from scikit-learn ------------------------------------
# get_params, score, set_output, set_*_request... come with references into
# scikit-learn's own documentation (its glossary, user-guide labels).  Online,
# intersphinx resolves them; offline they would be "undefined label" warnings.
# Render them as plain text instead; references in sharpsk's docs still warn.
def inherited_sklearn_reference(app, env, node, contnode):
    if "docstring of sklearn." in (node.source or ""):
        return contnode
    return None


def setup(app):
    app.connect("builder-inited", check_api_reference)
    app.connect("builder-inited", write_cli_help)
    app.connect("missing-reference", inherited_sklearn_reference, priority=900)
    app.connect("autodoc-process-docstring", quote_shape_names, priority=400)
