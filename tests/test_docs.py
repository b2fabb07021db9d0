"""The documentation builds: Sphinx with the API reference and the executed example gallery.

``test_docs_build_quick`` runs in CI: a fresh copy of docs/ is built with ``-W`` (a broken
reference, a docstring numpydoc cannot read or an example that raises fails it), running
the quicker gallery examples; the others are rendered without running them.
``test_docs_build_full`` (marked slow) runs every example, as the README's docs command
does.
"""

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bayesmix

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = sorted(p.name for p in (DOCS / "examples").glob("plot_*.py"))
# A few minutes on a cold machine together; the rest (select_k over four K, minibatch
# ADVI, pipelines of cross-validated fits) run in the slow test.
QUICK = ["plot_1_gaussian.py", "plot_3_marginal.py", "plot_4_relabeling.py"]


def build(tmp_path, examples):
    """Build a fresh copy of docs/ running ``examples``; return the HTML folder."""
    source = tmp_path / "docs"
    shutil.copytree(DOCS, source, ignore=shutil.ignore_patterns(
        "_build", "auto_examples", "generated", "backreferences", "sg_execution_times.rst"))
    pattern = "/(" + "|".join(re.escape(name) for name in examples) + ")$"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg",
           "BAYESMIX_DOCS_EXAMPLES": pattern}
    html = tmp_path / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(source), str(html)],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-8000:]
    return html


def check_examples_ran(html, examples):
    """Each example's page holds its output and no traceback."""
    for name in examples:
        page = (html / "auto_examples" / name.replace(".py", ".html")).read_text()
        assert "sphx-glr-script-out" in page, f"{name} shows no output: it did not run"
        assert "Traceback" not in page, f"{name} printed a traceback"


def test_api_reference_lists_every_public_name():
    """Every name in ``bayesmix.__all__`` has an entry in docs/api.rst."""
    text = (DOCS / "api.rst").read_text()
    entries = set(re.findall(r"^   (\w+)$", text, re.M)) | set(
        re.findall(r"^   api/(\w+)$", text, re.M))
    assert set(bayesmix.__all__) <= entries, set(bayesmix.__all__) - entries


def test_examples_use_only_public_api():
    """The gallery imports bayesmix names that exist (no invented API)."""
    for name in EXAMPLES:
        tree = ast.parse((DOCS / "examples" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bayesmix"):
                module = __import__(node.module, fromlist=["_"])
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{name}: {node.module}.{alias.name}"


def test_docs_build_quick(tmp_path):
    """-W build running the quick examples; every public name gets its API page."""
    html = build(tmp_path, QUICK)
    check_examples_ran(html, QUICK)
    for name in bayesmix.__all__:
        if name not in ("datasets",):
            assert (html / "api" / "generated" / f"bayesmix.{name}.html").is_file(), name
    figures = {p.name for p in (html / "_images").glob("sphx_glr_plot_*.png")}
    assert {"sphx_glr_plot_1_gaussian_001.png", "sphx_glr_plot_1_gaussian_003.png"} <= figures


@pytest.mark.slow
def test_docs_build_full(tmp_path):
    """-W build running every example, as the README's command does."""
    html = build(tmp_path, EXAMPLES)
    check_examples_ran(html, EXAMPLES)
