"""Command line: ``python -m bayesmix fit [data.csv] --columns a,b --k 1-6``.

With no file, fits the bundled Old Faithful data (column ``waiting``).
"""

import argparse
import sys
import warnings

import numpy as np
import pandas as pd

from . import datasets
from .gaussian import COVARIANCE_TYPES, BayesianGaussianMixture


def parse_k(text):
    """Parse ``"3"`` into ``[3]`` and ``"1-6"`` into ``[1, ..., 6]``."""
    try:
        if "-" in text:
            low, high = (int(part) for part in text.split("-", 1))
            values = list(range(low, high + 1))
        else:
            values = [int(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k takes a number or a range like 1-6, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--k needs numbers of components >= 1, got {text!r}")
    return values


def build_parser():
    parser = argparse.ArgumentParser(prog="bayesmix", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit", help="fit a Bayesian Gaussian mixture to columns of a CSV")
    fit.add_argument("csv", nargs="?", help="CSV file with a header row (default: bundled faithful)")
    fit.add_argument("--columns", help="comma-separated columns to model (default: all numeric)")
    fit.add_argument("--k", type=parse_k, default=None,
                     help="number of components, or a range such as 1-6 to choose from")
    fit.add_argument("--covariance-type", choices=COVARIANCE_TYPES, default="full")
    fit.add_argument("--method", choices=("auto", "loo", "kfold"), default="auto",
                     help="how to compare numbers of components (with a range of --k)")
    fit.add_argument("--draws", type=int, default=1000)
    fit.add_argument("--tune", type=int, default=500)
    fit.add_argument("--chains", type=int, default=4)
    fit.add_argument("--backend", choices=("numba", "jax", "pymc"), default="numba")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--figure", default="bayesmix_fit.png",
                     help="where to write the figure ('' for none)")
    return parser


def load_table(csv, columns):
    if csv is None:
        frame = datasets.load_faithful()
        columns = columns or "waiting"
    else:
        try:
            frame = pd.read_csv(csv)
        except (OSError, pd.errors.ParserError) as error:
            raise SystemExit(f"bayesmix: cannot read {csv}: {error}") from None
    if columns:
        names = [name.strip() for name in columns.split(",")]
        missing = [name for name in names if name not in frame.columns]
        if missing:
            raise SystemExit(f"bayesmix: no column(s) {missing}; the file has {list(frame.columns)}")
        frame = frame[names]
    else:
        frame = frame.select_dtypes("number")
    return frame


def fit_command(args):
    X = load_table(args.csv, args.columns)
    k_values = args.k or ([2] if args.csv is None else list(range(1, 7)))
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
    print(f"bayesmix: {len(X)} rows, columns {list(X.columns)}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if len(k_values) > 1:
            from .model_selection import select_k

            selection = select_k(estimator, X, k_range=k_values, method=args.method)
            print(f"\nChosen K = {selection.best_k_} (method: {selection.method_})")
            print(selection.comparison_.to_string())
            fitted = selection.best_estimator_
        else:
            selection = None
            fitted = estimator.fit(X)
    report(fitted)
    for warning in caught:
        if issubclass(warning.category, UserWarning):
            print(f"warning: {warning.message}")
    if args.figure:
        write_figure(fitted, X, selection, args.figure)
    return 0


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
        for j, name in enumerate(features):
            parts.append(f"{name} {est.means_[k, j]:.4g} [{means[0, k, j]:.4g}, {means[2, k, j]:.4g}]")
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
    try:
        from . import plotting
    except ImportError:
        print("(matplotlib is not installed: no figure written)")
        return
    if not hasattr(plotting, "plot_fit"):
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_panels = 2 if selection is not None else 1
    fig, axes = plt.subplots(1, n_panels, figsize=(6 * n_panels, 4.5), squeeze=False)
    plotting.plot_fit(est, np.asarray(X, dtype=float), ax=axes[0, 0])
    if selection is not None:
        plotting.plot_comparison(selection, ax=axes[0, 1])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"\nFigure written to {path}")


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "fit":
        return fit_command(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
