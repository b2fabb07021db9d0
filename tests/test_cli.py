"""The command line: help, version, the comparison table, figures, progress and errors."""

import contextlib
import io
import os
import re
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix import BayesianGaussianMixture
from bayesmix.__main__ import comparison_text, main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--draws", "20", "--tune", "20", "--chains", "1", "--backend", "jax"]


def run(args):
    """``main(args)`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def selection_run(tmp_path_factory):
    """One K = 1..2 run on the bundled data, with a figure."""
    figure = tmp_path_factory.mktemp("figure") / "fit.png"
    code, out, err = run(["fit", "--k", "1-2", "--method", "loo", "--figure", str(figure), *TINY])
    return code, out, err, figure


def test_range_of_k_prints_a_compact_table(selection_run):
    code, out, err, _ = selection_run
    assert code == 0, err
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["K", "rank"])
    assert lines[header].split() == ["K", "rank", "elpd", "se", "dse", "weight", "converged"]
    rows = [line.split() for line in lines[header + 1 : header + 3]]
    assert sorted(int(row[0]) for row in rows) == [1, 2]
    for row in rows:
        assert np.isfinite(float(row[2]))
        assert 0 <= float(row[5]) <= 1 and len(row[5].split(".")[1]) == 2
        assert row[6] in ("yes", "no")
    assert sum("<- chosen" in line for line in lines) == 1
    assert "e-" not in "\n".join(lines[header : header + 3])  # no 7.5e-18 weights
    assert "Chosen K = " in out and "Convergence:" in out


def test_progress_goes_to_stderr_one_line_per_k(selection_run):
    _, out, err, _ = selection_run
    assert "K=1 fitted on all the data" in err and "K=2 fitted on all the data" in err
    assert "fitted on all the data" not in out


def test_warnings_about_other_ks_and_blas_advice_are_not_printed(selection_run):
    # Twenty draws on one chain: every K fails the convergence checks; the table says so.
    _, out, err, _ = selection_run
    assert "may not have converged" not in err
    assert "BLAS" not in err + out
    assert "Traceback" not in err


def test_figure_is_written_where_asked(selection_run):
    _, out, _, figure = selection_run
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Figure written to {figure}" in out


def test_no_figure_unless_asked_and_blas_warning_silenced(selection_run, tmp_path, monkeypatch):
    # PyTensor warns about BLAS once per process; here the fit raises it again.
    fit = BayesianGaussianMixture.fit

    def fit_with_blas_warning(self, *args, **kwargs):
        warnings.warn("PyTensor could not link to a BLAS installation.", UserWarning, stacklevel=2)
        warnings.warn("a warning bayesmix users should see", UserWarning, stacklevel=2)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(BayesianGaussianMixture, "fit", fit_with_blas_warning)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["fit", "--k", "2", *TINY])
    assert code == 0, err
    assert list(tmp_path.iterdir()) == []
    assert "Figure" not in out
    assert "BLAS" not in err
    assert "bayesmix: warning: a warning bayesmix users should see" in err


def _selection(table, estimators):
    return types.SimpleNamespace(comparison_=table, best_k_=2, estimators_=estimators)


def _table(**extra):
    return pd.DataFrame(
        {"rank": [0, 1], "elpd": [-10.0, -12.5], "se": [1.0, 1.2], "dse": [0.0, 0.7],
         "weight": [1.0, 7.479469e-18], **extra},
        index=pd.Index([2, 3], name="K"),
    )


def test_table_reads_a_converged_column_when_there_is_one():
    fits = {2: types.SimpleNamespace(converged_=True), 3: types.SimpleNamespace(converged_=True)}
    text = comparison_text(_selection(_table(converged=[True, False]), fits))
    rows = [line.split() for line in text.splitlines()[1:3]]
    assert rows[0] == ["2", "0", "-10.0", "1.0", "0.0", "1.00", "yes", "<-", "chosen"]
    assert rows[1] == ["3", "1", "-12.5", "1.2", "0.7", "0.00", "no"]


def test_table_computes_converged_from_the_fits_otherwise():
    fits = {2: types.SimpleNamespace(converged_=False), 3: types.SimpleNamespace(converged_=True)}
    rows = [line.split() for line in comparison_text(_selection(_table(), fits)).splitlines()[1:3]]
    assert rows[0][6] == "no" and rows[1][6] == "yes"
    rows = [line.split() for line in comparison_text(_selection(_table(), {})).splitlines()[1:3]]
    assert rows[0][6] == "-"


def test_version():
    code, out, _ = run(["--version"])
    assert code == 0 and out.strip() == f"bayesmix {bayesmix.__version__}"


def test_help_shows_defaults_and_no_markup():
    code, out, _ = run(["fit", "--help"])
    assert code == 0
    for default in ("(default: 1000)", "(default: 500)", "(default: 4)", "(default: numba)",
                    "(default: full)", "(default: no figure)"):
        assert default in " ".join(out.split()), default
    assert "``" not in out and ":class:" not in out
    code, out, _ = run(["--help"])
    assert code == 0 and "``" not in out


def test_ctrl_c_exits_130_with_one_line(monkeypatch):
    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(BayesianGaussianMixture, "fit", interrupted)
    code, _, err = run(["fit", "--k", "2", *TINY])
    assert code == 130
    assert err.strip().splitlines()[-1] == "bayesmix: interrupted (Ctrl-C)"


def _write(path, text):
    path.write_text(text)
    return str(path)


WIDE = ",".join(f"c{i}" for i in range(1_000_000)) + "\n" + ",".join(["1"] * 1_000_000) + "\n"

# case -> (CSV file text, or None for the bundled data; further arguments; expected message)
ERRORS = {
    "empty": ("", [], "is empty"),
    "no rows": ("a,b\n", [], "no data rows"),
    "semicolons": ("a;b\n1.5;2\n3;4\n", [], "--sep ';'"),
    "thousands": ('a\n"1,234"\n"3,456"\n', [], "--thousands ','"),
    "text column": ("a,name\n1,x\n2,y\n", ["--columns", "a,name"], "'name' of .* not numeric"),
    "unknown column": ("a\n1\n", ["--columns", "b"], "no column 'b'"),
    "missing value": ("a,b\n1,2\n,3\n", [], "1 missing .* data row 2"),
    "too many components": ("a\n1\n2\n", ["--k", "1-3"], "3 components, but there are 2 rows"),
    "draws 0": (None, ["--draws", "0"], "--draws: must be at least 1"),
    "bad k": (None, ["--k", "two"], "--k: takes a number or a range"),
    "figure folder": (None, ["--figure", "absent/f.png"], "folder absent does not exist"),
    "figure format": (None, ["--figure", "f.xyz"], "end the file name"),
    "million columns": (WIDE, [], "1000000 columns"),
    "million columns, one named": (
        WIDE, ["--columns", "zz"], r"no column 'zz'; its columns are 'c0', .* \(1000000 in all\)"
    ),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_input_errors_are_one_line_with_exit_code_2(case, tmp_path, monkeypatch):
    text, args, message = ERRORS[case]
    monkeypatch.chdir(tmp_path)
    files = [] if text is None else [_write(tmp_path / "data.csv", text)]
    code, out, err = run(["fit", *files, *args])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) < 400, err[:1000]
    assert lines[0].startswith("bayesmix")
    assert re.search(message, lines[0]), lines[0]


def test_a_header_row_of_numbers_is_pointed_out(tmp_path, monkeypatch):
    """A CSV without a header row loses its first data row to the column names; say so."""
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path / "data.csv", "".join(f"{i % 7}.5,{i % 5}.25\n" for i in range(40)))
    code, out, err = run(["fit", path, "--draws", "20", "--tune", "20", "--chains", "1", "--k", "1"])
    assert code == 0 and "Data: 39 rows; columns '0.5', '0.25'" in out
    assert "bayesmix: warning: the header row of " in err and "data.csv ('0.5', '0.25') holds only numbers" in err


def test_missing_file_is_one_line(tmp_path):
    code, _, err = run(["fit", str(tmp_path / "absent.csv")])
    assert code == 2 and err.startswith("bayesmix: error: cannot read") and err.count("\n") == 1


def test_the_installed_command_exits_2_without_a_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "bayesmix", "fit", _write(tmp_path / "e.csv", "")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"bayesmix: error: {tmp_path / 'e.csv'} is empty: give a CSV file with a header row "
        "and data rows."
    ]


def test_bundled_data_default_fits_k_2_on_waiting():
    # No fit: the defaults as parsed.
    from bayesmix.__main__ import build_parser, load_table

    args = build_parser().parse_args(["fit"])
    X = load_table(args.csv, args.columns)
    assert list(X.columns) == ["waiting"] and np.isfinite(X.to_numpy()).all()
    assert args.figure is None and args.k is None
