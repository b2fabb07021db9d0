"""Sphinx configuration: numpydoc API reference and a sphinx-gallery of executed examples.

Build from the repository root (README): ``python3 -m sphinx -W --keep-going -b html docs
docs/_build/html``. Python warnings raised by an example (a ConvergenceWarning, say) are
written into that example's output on its page; Sphinx's own warnings (a broken
reference, a docstring numpydoc cannot parse, an example that raises) fail a ``-W`` build.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "bayesmix").is_dir():
    sys.path.insert(0, str(ROOT))  # this checkout's bayesmix, also without an install
os.environ.setdefault("MPLBACKEND", "Agg")

import bayesmix  # noqa: E402

project = "bayesmix"
author = "the bayesmix developers"
copyright = "2026, the bayesmix developers"
release = version = bayesmix.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "examples/README.rst", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip"]

autosummary_generate = True
autodoc_default_options = {"members": True}
numpydoc_show_class_members = False  # the class template lists the members itself
numpydoc_class_members_toctree = False

# No intersphinx inventories are fetched (the build must work offline); names of other
# projects in docstrings render as plain text.
intersphinx_mapping = {}

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    # Every plot_*.py runs at build time; tests/test_docs.py narrows this to a quick set
    # (the others are then shown without their output).
    "filename_pattern": os.environ.get("BAYESMIX_DOCS_EXAMPLES", r"/plot_"),
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": False,  # run all, then fail the build naming every broken one
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "min_reported_time": 1,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "doc_module": ("bayesmix",),
    "backreferences_dir": "api/backreferences",
}

html_theme = "pydata_sphinx_theme"
html_title = f"bayesmix {release}"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
html_static_path = []


def _skip_sklearn_plumbing(app, what, name, obj, skip, options):
    """Leave out scikit-learn's metadata-routing methods (set_fit_request, ...).

    scikit-learn adds them to every estimator class; their docstrings point into
    scikit-learn's own user guide, which these pages do not hold.
    """
    if name == "get_metadata_routing" or (name.startswith("set_") and name.endswith("_request")):
        return True
    return skip


def setup(app):
    app.connect("autodoc-skip-member", _skip_sklearn_plumbing)
