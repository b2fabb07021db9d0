"""Statistical validation: simulation-based calibration, interval coverage, published results.

Usage: ``python benchmarks/validation/run_validation.py [--sbc 200] [--coverage 100] [--jobs 2]``

Writes ``benchmarks/validation/report.md`` and its figures beside it. Priors are passed
explicitly so that simulated truths are draws from exactly the prior the model uses
(the default, data-derived priors would make simulation-based calibration meaningless).

Simulation-based calibration (Talts et al. 2018): draw parameters from the prior, data from
the model, fit, and record the rank of each true value among thinned posterior draws; the
ranks are uniform when the posterior is right. Coverage: the share of central 50/90/95%
intervals that contain the truth.
"""

import argparse
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from scipy import stats

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

# Explicit priors (user scale) shared by simulation and fit.
MEAN_PRIOR, MEAN_SCALE, SCALE_PRIOR = 0.0, 3.0, 1.0
N_THIN = 99  # posterior draws kept for ranks: ranks take values 0..99
SAMPLER = {"draws": 500, "tune": 500, "chains": 2, "backend": "jax"}


def simulate_gaussian(rng, n_rows, n_features):
    """Parameters from the prior and data from a K=2 Gaussian mixture (diag covariances)."""
    weights = rng.dirichlet(np.ones(2))
    means = rng.normal(MEAN_PRIOR, MEAN_SCALE, size=(2, n_features))
    if n_features == 1:
        means = np.sort(means, axis=0)  # the model's ordered means
    sigmas = rng.gamma(2.0, SCALE_PRIOR / 2.0, size=(2, n_features))
    labels = rng.choice(2, size=n_rows, p=weights)
    X = means[labels] + sigmas[labels] * rng.standard_normal((n_rows, n_features))
    truth = {"weights[0]": weights[0]}
    for k in range(2):
        for j in range(n_features):
            truth[f"means[{k},{j}]"] = means[k, j]
            truth[f"sigmas[{k},{j}]"] = sigmas[k, j]
    return truth, X


def fit_gaussian(X, seed):
    from bayesmix import BayesianGaussianMixture

    n_features = X.shape[1]
    est = BayesianGaussianMixture(
        2,
        covariance_type="diag",
        mean_prior=np.full(n_features, MEAN_PRIOR),
        mean_prior_scale=MEAN_SCALE,
        scale_prior=SCALE_PRIOR,
        random_state=seed,
        **SAMPLER,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X)
    post = est.idata_.posterior.stack(sample=("chain", "draw"))
    draws = {"weights[0]": post["weights"].values[0]}
    sigmas = post["sigmas"].values.reshape(2, n_features, -1)
    for k in range(2):
        for j in range(n_features):
            draws[f"means[{k},{j}]"] = post["means"].values[k, j]
            draws[f"sigmas[{k},{j}]"] = sigmas[k, j]
    return draws, est.converged_


def one_replication(seed, n_rows, n_features):
    rng = np.random.default_rng(seed)
    truth, X = simulate_gaussian(rng, n_rows, n_features)
    draws, converged = fit_gaussian(X, seed)
    if n_features > 1:
        # Unordered model relabeled by Stephens: match the truth's labels to the fitted ones
        # by the means, the only information a user would have.
        fitted = np.array([[draws[f"means[{k},{j}]"].mean() for j in range(n_features)] for k in range(2)])
        true = np.array([[truth[f"means[{k},{j}]"] for j in range(n_features)] for k in range(2)])
        if np.sum((fitted - true[::-1]) ** 2) < np.sum((fitted - true) ** 2):
            truth = _swap(truth, n_features)
    thin = np.linspace(0, len(draws["weights[0]"]) - 1, N_THIN).astype(int)
    ranks = {name: int(np.sum(draws[name][thin] < truth[name])) for name in truth}
    inside = {
        level: {
            name: bool(np.quantile(d, (1 - level) / 2) <= truth[name] <= np.quantile(d, (1 + level) / 2))
            for name, d in draws.items()
        }
        for level in (0.5, 0.9, 0.95)
    }
    return ranks, inside, converged


def _swap(truth, n_features):
    swapped = {"weights[0]": 1 - truth["weights[0]"]}
    for k in range(2):
        for j in range(n_features):
            swapped[f"means[{k},{j}]"] = truth[f"means[{1 - k},{j}]"]
            swapped[f"sigmas[{k},{j}]"] = truth[f"sigmas[{1 - k},{j}]"]
    return swapped


def uniformity_pvalues(ranks, n_bins=10):
    """Chi-square test of uniform ranks per parameter."""
    out = {}
    for name in ranks[0]:
        values = np.array([r[name] for r in ranks])
        counts, _ = np.histogram(values, bins=n_bins, range=(0, N_THIN + 1))
        out[name] = stats.chisquare(counts).pvalue
    return out


def rank_histograms(ranks, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(ranks[0])
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 2.6), squeeze=False)
    n = len(ranks)
    low, high = stats.binom.ppf([0.005, 0.995], n, 0.1)
    for ax, name in zip(axes[0], names):
        ax.hist([r[name] for r in ranks], bins=10, range=(0, N_THIN + 1), color="C0")
        ax.axhspan(low, high, color="0.85", zorder=0)
        ax.set_title(name, fontsize=9)
        ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_block(title, n_reps, n_rows, n_features, jobs, figure):
    start = time.perf_counter()
    results = Parallel(n_jobs=jobs)(
        delayed(one_replication)(seed, n_rows, n_features) for seed in range(n_reps)
    )
    ranks = [r for r, _, _ in results]
    pvalues = uniformity_pvalues(ranks)
    threshold = 0.01 / len(pvalues)
    rank_histograms(ranks, HERE / figure, title)
    coverage = {
        level: {name: np.mean([inside[level][name] for _, inside, _ in results]) for name in ranks[0]}
        for level in (0.5, 0.9, 0.95)
    }
    converged = np.mean([c for _, _, c in results])
    lines = [
        f"### {title}",
        "",
        f"{n_reps} replications, {n_rows} rows each, {time.perf_counter() - start:.0f} s; "
        f"{converged:.0%} of fits passed the convergence checks.",
        "",
        f"![rank histograms]({figure})",
        "",
        "| parameter | SBC p-value | rejected at 1% (Bonferroni) | 50% coverage | 90% coverage | 95% coverage |",
        "|---|---|---|---|---|---|",
    ]
    for name in ranks[0]:
        lines.append(
            f"| {name} | {pvalues[name]:.3f} | {'yes' if pvalues[name] < threshold else 'no'} | "
            f"{coverage[0.5][name]:.2f} | {coverage[0.9][name]:.2f} | {coverage[0.95][name]:.2f} |"
        )
    return lines


def published_results():
    """Reproduce the published fits of the shared data sets' README."""
    from bayesmix import BayesianGaussianMixture, datasets

    lines = ["## Published results", "", "| data, model | quantity | reference (MLE) | bayesmix (posterior mean) |",
             "|---|---|---|---|"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        waiting = datasets.load_faithful()[["waiting"]]
        est = BayesianGaussianMixture(2, covariance_type="tied", random_state=0).fit(waiting)
        lines += [
            f"| faithful waiting, K=2, equal sigma | weights | 0.361 / 0.639 | "
            f"{est.weights_[0]:.3f} / {est.weights_[1]:.3f} |",
            f"| | means | 54.61 / 80.09 | {est.means_[0, 0]:.2f} / {est.means_[1, 0]:.2f} |",
            f"| | sigma | 5.869 | {np.sqrt(est.covariances_[0, 0]):.3f} |",
        ]
        acidity = datasets.load_acidity()
        est = BayesianGaussianMixture(2, covariance_type="tied", random_state=0).fit(acidity)
        lines += [
            f"| acidity, K=2, equal variance | weights | 0.623 / 0.377 | "
            f"{est.weights_[0]:.3f} / {est.weights_[1]:.3f} |",
            f"| | means | 4.371 / 6.320 | {est.means_[0, 0]:.3f} / {est.means_[1, 0]:.3f} |",
            f"| | sd | 0.4317 | {np.sqrt(est.covariances_[0, 0]):.4f} |",
        ]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sbc", type=int, default=200, help="replications, 1-D Gaussian")
    parser.add_argument("--sbc-2d", type=int, default=100, help="replications, 2-D Gaussian")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    lines = [
        "# bayesmix validation report",
        "",
        f"Machine: {platform.platform()}, {platform.processor() or 'CPU'}, Python "
        f"{platform.python_version()}. Generated {time.strftime('%Y-%m-%d %H:%M')} by "
        "`python benchmarks/validation/run_validation.py`.",
        "",
        f"Sampler: {SAMPLER}. Priors: means ~ Normal({MEAN_PRIOR}, {MEAN_SCALE}), "
        f"sd ~ Gamma(2, 2/{SCALE_PRIOR}), weights ~ Dirichlet(1, 1).",
        "",
        "## Simulation-based calibration and coverage",
        "",
    ]
    lines += run_block("BayesianGaussianMixture, 1-D, K=2", args.sbc, args.rows, 1, args.jobs, "sbc_gaussian_1d.png")
    lines += [""]
    if args.sbc_2d:
        lines += run_block("BayesianGaussianMixture, 2-D diag, K=2", args.sbc_2d, args.rows, 2, args.jobs,
                           "sbc_gaussian_2d.png")
        lines += [""]
    lines += published_results()
    lines += ["", f"Total run time: {time.perf_counter() - start:.0f} s."]
    report = "\n".join(lines) + "\n"
    (HERE / "report.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
