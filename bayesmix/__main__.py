"""Command line: ``bayesmix fit [data.csv] --columns a,b --k 1-6 --figure fit.png``.

With no file, fits the bundled Old Faithful data (column ``waiting``). Results go to
stdout; progress, warnings and errors to stderr. A problem with the input or the options
ends with one line naming it and exit code 2; Ctrl-C ends with exit code 130.
"""

import argparse
import csv as _csv
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from . import __version__, datasets
from .gaussian import COVARIANCE_TYPES, BayesianGaussianMixture

DESCRIPTION = (
    "Fit a Bayesian Gaussian mixture (PyMC model sampled with nutpie) to numeric columns "
    "of a CSV file and report weights, means and convergence. Given a range of K, fit "
    "every K and choose one by expected log predictive density (PSIS-LOO, or K-fold "
    "cross-validation where LOO is unreliable)."
)
EPILOG = (
    "Examples: 'bayesmix fit' (the bundled Old Faithful waiting times, K=2); "
    "'bayesmix fit data.csv --columns x,y --k 1-4 --figure fit.png'. "
    "Results go to stdout, progress to stderr; bad input exits with code 2."
)
# Mixtures over more columns than this are out of reach of a command-line run.
MAX_COLUMNS = 100
# Names listed in an error message; a header may have a million.
MAX_NAMES_SHOWN = 8

_log = logging.getLogger("bayesmix")


class CommandError(Exception):
    """A problem with the command line's input: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def parse_k(text):
    """Parse ``"3"`` into ``[3]`` and ``"1-6"`` into ``[1, ..., 6]``."""
    try:
        if "-" in text:
            low, high = (int(part) for part in text.split("-", 1))
            values = list(range(low, high + 1))
        else:
            values = [int(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"takes a number or a range like 1-6, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"needs numbers of components >= 1, got {text!r}")
    return values


def _at_least(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def build_parser():
    parser = _Parser(prog="bayesmix", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"bayesmix {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, title="commands", metavar="COMMAND"
    )
    fit = commands.add_parser(
        "fit", help="fit a Bayesian Gaussian mixture to columns of a CSV file",
        description=DESCRIPTION, epilog=EPILOG,
    )
    fit.add_argument("csv", nargs="?",
                     help="CSV file with a header row (default: the bundled Old Faithful data)")
    fit.add_argument("--columns", metavar="A,B",
                     help="comma-separated columns to model (default: every numeric column, "
                          f"at most {MAX_COLUMNS}; 'waiting' for the bundled data)")
    fit.add_argument("--k", type=parse_k, default=None, metavar="K",
                     help="number of components, or a range such as 1-6 to choose from "
                          "(default: 1-6 for a file, 2 for the bundled data)")
    fit.add_argument("--covariance-type", choices=COVARIANCE_TYPES, default="full",
                     help="covariance of the components (default: %(default)s)")
    fit.add_argument("--method", choices=("auto", "loo", "kfold"), default="auto",
                     help="how a range of K is compared (default: %(default)s: PSIS-LOO, or "
                          "5-fold cross-validation where LOO is unreliable)")
    fit.add_argument("--draws", type=_at_least(1), default=1000,
                     help="posterior draws per chain (default: %(default)s)")
    fit.add_argument("--tune", type=_at_least(1), default=500,
                     help="warm-up steps per chain (default: %(default)s)")
    fit.add_argument("--chains", type=_at_least(1), default=4,
                     help="independent chains; 2 or more for R-hat (default: %(default)s)")
    fit.add_argument("--backend", choices=("numba", "jax", "pymc"), default="numba",
                     help="how the model is compiled (default: %(default)s)")
    fit.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    fit.add_argument("--figure", metavar="PATH", default=None,
                     help="write a figure of the fit (and of the K comparison) to PATH, "
                          "e.g. fit.png or fit.pdf (default: no figure)")
    fit.add_argument("--sep", default=",", help="column separator of the CSV (default: ',')")
    fit.add_argument("--decimal", default=".", help="decimal point of the CSV (default: '.')")
    fit.add_argument("--thousands", default=None,
                     help="thousands separator of the CSV, e.g. ',' (default: none)")
    return parser


# ------------------------------------------------------------------ input


def _names(names):
    """Up to ``MAX_NAMES_SHOWN`` quoted names, and how many there are in all."""
    names = [str(name) for name in names]
    shown = ", ".join(repr(name) for name in names[:MAX_NAMES_SHOWN])
    return shown + (f", ... ({len(names)} in all)" if len(names) > MAX_NAMES_SHOWN else "")


def _one_line(error):
    return " ".join(str(error).split())


def _format_hint(frame, sep):
    """A suggestion when numbers were read as text: another separator or number format."""
    header = "".join(str(name) for name in frame.columns)
    for other in (";", "\t", "|"):
        if other != sep and other in header:
            return f"; the file seems separated by {other!r}: pass --sep {other!r}"
    text = frame.head(20).select_dtypes(exclude="number").stack().astype(str)
    if text.str.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d*)?").any():
        return "; its numbers seem to have thousands separators: pass --thousands ','"
    if text.str.fullmatch(r"[-+]?\d+,\d+").any():
        return "; its numbers seem to have decimal commas: pass --decimal ','"
    return ""


def _read_header(csv, sep):
    """The header row's names, read without pandas: a header may have a million names."""
    if len(sep) != 1:
        raise CommandError(f"--sep takes one character, got {sep!r}.")
    try:
        with open(csv, newline="", encoding="utf-8-sig") as handle:
            return next(_csv.reader(handle, delimiter=sep))
    except StopIteration:
        raise CommandError(
            f"{csv} is empty: give a CSV file with a header row and data rows."
        ) from None
    except (OSError, UnicodeDecodeError, _csv.Error) as error:
        raise CommandError(f"cannot read {csv}: {_one_line(error)}") from None


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_table(csv, columns, sep=",", decimal=".", thousands=None):
    """The columns to model, as a float DataFrame; ``CommandError`` for bad input."""
    names = [name.strip() for name in columns.split(",") if name.strip()] if columns else None
    if csv is None:
        frame, source = datasets.load_faithful(), "the bundled faithful data"
        names = names or ["waiting"]
    else:
        source = csv
        header = _read_header(csv, sep)
        missing = [name for name in names or () if name not in set(header)]
        if missing:
            raise CommandError(
                f"{csv} has no column {_names(missing)}; its columns are {_names(header)}. "
                "Name columns of the header row in --columns."
            )
        if names is None and len(header) > MAX_COLUMNS:
            raise CommandError(
                f"{csv} has {len(header)} columns, more than bayesmix fit models at once "
                f"({MAX_COLUMNS}); name the ones to model with --columns."
            )
        try:
            frame = pd.read_csv(csv, sep=sep, decimal=decimal, thousands=thousands, usecols=names)
        except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as error:
            raise CommandError(f"cannot read {csv}: {_one_line(error)}") from None
    if len(frame) == 0:
        raise CommandError(f"{source} has a header row but no data rows.")
    if names:
        missing = [name for name in names if name not in frame.columns]
        if missing:
            raise CommandError(
                f"{source} has no column {_names(missing)}; its columns are "
                f"{_names(frame.columns)}."
            )
        frame = frame[names]
        for name in names:
            values = frame[name]
            if not pd.api.types.is_numeric_dtype(values):
                hint = _format_hint(frame, sep) if csv is not None else ""
                numbers = pd.to_numeric(values, errors="coerce")
                text = np.flatnonzero(numbers.isna() & values.notna())
                example = ""
                if text.size:
                    example = f" (data row {text[0] + 1} holds {values.iloc[text[0]]!r})"
                raise CommandError(
                    f"column {name!r} of {source} is not numeric{example}; name numeric "
                    f"columns in --columns{hint}."
                )
    else:
        numeric = frame.select_dtypes("number")
        if numeric.shape[1] == 0:
            hint = _format_hint(frame, sep)
            raise CommandError(
                f"{source} has no numeric column (its columns, as read with --sep "
                f"{sep!r}: {_names(frame.columns)}); a CSV with a header row and numbers "
                f"written like 1234.5 is needed{hint}."
            )
        frame = numeric
    if frame.shape[1] > MAX_COLUMNS:
        raise CommandError(
            f"{source} has {frame.shape[1]} numeric columns, more than bayesmix fit models "
            f"at once ({MAX_COLUMNS}); choose some with --columns."
        )
    frame = frame.astype(float)
    bad = ~np.isfinite(frame.to_numpy())
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise CommandError(
            f"column {frame.columns[col]!r} of {source} has {int(bad[:, col].sum())} missing "
            f"or infinite value(s), the first in data row {row + 1}; remove or fill those rows."
        )
    return frame


def check_figure_path(path):
    """Fail before fitting if the figure cannot be written where asked."""
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        raise CommandError(
            f"cannot write the figure to {path}: folder {folder} does not exist; create it "
            "or give another --figure path."
        )
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise CommandError("--figure needs matplotlib: pip install matplotlib.") from None
    formats = FigureCanvasBase.get_supported_filetypes()
    if target.suffix.lstrip(".").lower() not in formats:
        raise CommandError(
            f"cannot write a figure to {path}: end the file name in one of "
            + ", ".join(f".{name}" for name in ("png", "pdf", "svg", "jpg"))
            + " (or another format matplotlib writes)."
        )


# ------------------------------------------------------------------ fit and report


def fit_command(args):
    X = load_table(args.csv, args.columns, args.sep, args.decimal, args.thousands)
    if args.csv is not None and all(_is_number(name) for name in X.columns):
        print(
            f"bayesmix: warning: the header row of {args.csv} ({_names(X.columns)}) holds only "
            "numbers: if the file has no header row, its first data row was read as column "
            "names and left out of the fit; add a header row (e.g. x1,x2).",
            file=sys.stderr,
        )
    if args.figure:
        check_figure_path(args.figure)
    k_values = args.k or ([2] if args.csv is None else list(range(1, 7)))
    if max(k_values) > len(X):
        raise CommandError(
            f"--k asks for up to {max(k_values)} components, but there are {len(X)} rows."
        )
    estimator = BayesianGaussianMixture(
        k_values[0],
        covariance_type=args.covariance_type,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        backend=args.backend,
        random_state=args.seed,
        progressbar=sys.stderr.isatty(),
    )
    print(f"Data: {len(X)} rows; columns {_names(X.columns)}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Each K's convergence is in the table, the chosen fit's in the report.
        warnings.simplefilter("ignore", ConvergenceWarning)
        # PyTensor's advice to install a BLAS concerns its C backend; bayesmix samples
        # with numba or jax code, which does not use it.
        warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
        if len(k_values) > 1:
            from .model_selection import select_k

            _log.info("fitting K = %d..%d and comparing them", k_values[0], k_values[-1])
            selection = select_k(estimator, X, k_range=k_values, method=args.method)
            print(f"\nChosen K = {selection.best_k_} by {selection.method_}: "
                  f"{selection.method_reason_}")
            print(comparison_text(selection))
            fitted = selection.best_estimator_
        else:
            selection = None
            _log.info("fitting K = %d", k_values[0])
            start = time.perf_counter()
            fitted = estimator.fit(X)
            _log.info("K = %d fitted in %.1f s", k_values[0], time.perf_counter() - start)
    report(fitted)
    shown = set()
    for warning in caught:
        text = _one_line(warning.message)
        if issubclass(warning.category, UserWarning) and text not in shown:
            shown.add(text)
            print(f"bayesmix: warning: {text}", file=sys.stderr)
    if args.figure:
        write_figure(fitted, X, selection, args.figure)
    return 0


def _converged(selection):
    """K -> whether its fit converged: the table's column, else each full-data fit's."""
    table = selection.comparison_
    if "converged" in table:
        return {k: table.loc[k, "converged"] for k in table.index}
    return {k: getattr(est, "converged_", None) for k, est in selection.estimators_.items()}


def comparison_text(selection):
    """The comparison as a compact table: one row per K, best elpd first."""
    table = selection.comparison_
    converged = _converged(selection)
    lines = [f"{'K':>3} {'rank':>4} {'elpd':>10} {'se':>7} {'dse':>7} {'weight':>6}  converged"]
    for k, row in table.iterrows():
        flag = converged.get(k)
        flag = "-" if flag is None or pd.isna(flag) else ("yes" if flag else "no")
        chosen = "   <- chosen" if k == selection.best_k_ else ""
        lines.append(
            f"{k:>3} {int(row['rank']):>4} {row['elpd']:>10.1f} {row['se']:>7.1f} "
            f"{row['dse']:>7.1f} {row['weight']:>6.2f}  {flag:<9}{chosen}"
        )
    lines.append(
        "(elpd: expected log predictive density, higher is better; se: its standard error; "
        "dse: standard error of the difference from the best; weight: stacking weight)"
    )
    return "\n".join(lines)


def report(est):
    """Print weights and means with 90% intervals, and the convergence checks."""
    posterior = est.idata_.posterior
    print(f"\nK = {est.n_components}; posterior means with 90% equal-tailed intervals")
    quantiles = (0.05, 0.5, 0.95)
    weights = posterior["weights"].quantile(quantiles, dim=("chain", "draw")).values
    means = posterior["means"].quantile(quantiles, dim=("chain", "draw")).values
    features = list(posterior["means"].coords["feature"].values)
    for k in range(est.n_components):
        parts = [f"weight {est.weights_[k]:.3f} [{weights[0, k]:.3f}, {weights[2, k]:.3f}]"]
        for j, name in enumerate(features[:MAX_NAMES_SHOWN]):
            interval = f"[{means[0, k, j]:.4g}, {means[2, k, j]:.4g}]"
            parts.append(f"{name} {est.means_[k, j]:.4g} {interval}")
        print(f"  component {k}: " + "; ".join(parts))
    conv = est.convergence_
    status = "converged" if est.converged_ else "NOT converged"
    print(
        f"\nConvergence: {status} (max R-hat {conv['rhat_max']:.3f}, "
        f"min bulk ESS {conv['ess_bulk_min']:.0f}, divergences {conv['n_divergent']})"
    )
    for problem in conv["problems"]:
        print(f"  - {problem}")


def write_figure(est, X, selection, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import plotting

    n_panels = 2 if selection is not None else 1
    fig, axes = plt.subplots(1, n_panels, figsize=(6 * n_panels, 4.5), squeeze=False)
    plotting.plot_fit(est, np.asarray(X, dtype=float), ax=axes[0, 0])
    if selection is not None:
        plotting.plot_comparison(selection, ax=axes[0, 1])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"\nFigure written to {path}")


def main(argv=None):
    """Run the command line; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, --version, or a usage error already printed
        return done.code if isinstance(done.code, int) else 2
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("bayesmix: %(message)s"))
    level = _log.level
    _log.addHandler(handler)
    _log.setLevel(logging.INFO)
    try:
        return fit_command(args)
    except CommandError as error:
        print(f"bayesmix: error: {error}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as error:
        print(f"bayesmix: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as error:
        print(f"bayesmix: the fit failed: {_one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bayesmix: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    finally:
        _log.removeHandler(handler)
        _log.setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
