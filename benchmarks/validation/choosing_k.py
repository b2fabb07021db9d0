"""How often ``select_k`` finds the number of components of simulated 1-D Gaussian mixtures."""

import time
import warnings

import numpy as np
from joblib import Parallel, delayed

#: Candidate K handed to select_k; one more than the largest true K, so that too many
#: components can be chosen.
K_RANGE = range(1, 6)
TRUE_KS = (1, 2, 3, 4)
#: Gap between neighbouring means, in units of the two components' mean standard deviation.
SEPARATIONS = {"well-separated": 6.0, "overlapping": 2.0}
#: Sampler settings of each fit (select_k fits every K of K_RANGE on every data set).
SAMPLER = {"draws": 500, "tune": 500, "chains": 2, "cores": 1}
N_ROWS = 200


def simulate(rng, n_components, separation, n_rows=N_ROWS, rounded=False):
    """A 1-D Gaussian mixture with nearly equal weights and a fixed gap between means.

    Standard deviations are Uniform(0.7, 1.3), weights Dirichlet(20, ..., 20); each mean is
    ``separation`` times the average standard deviation of the pair above the previous one.
    ``rounded``: values rounded to a quarter of the smallest component standard deviation.
    """
    sigmas = rng.uniform(0.7, 1.3, size=n_components)
    weights = rng.dirichlet(np.full(n_components, 20.0))
    gaps = separation * (sigmas[1:] + sigmas[:-1]) / 2
    means = np.concatenate([[0.0], np.cumsum(gaps)])
    labels = rng.choice(n_components, size=n_rows, p=weights)
    X = (means[labels] + sigmas[labels] * rng.standard_normal(n_rows))[:, None]
    if rounded:
        step = sigmas.min() / 4
        X = step * np.round(X / step)
    return X


def one_set(n_components, separation, rep, backend, rounded=False):
    """Simulate one data set and let ``select_k`` (its defaults) choose K."""
    from bayesmix import BayesianGaussianMixture, select_k

    rng = np.random.default_rng([10, n_components, int(separation * 10), rep])
    X = simulate(rng, n_components, separation, rounded=rounded)
    est = BayesianGaussianMixture(random_state=rep, backend=backend, **SAMPLER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel = select_k(est, X, k_range=K_RANGE, n_jobs=1)
    return {
        "true_k": n_components,
        "best_k": sel.best_k_,
        "method": sel.method_,
        "reliable": sel.reliable_,
        "resolution": float(sel.best_estimator_.resolution_[0]),
    }


def run(n_sets, jobs, backend, rounded=False, separations=None):
    """Every (regime, true K, replication); returns the results and the seconds taken.

    ``rounded``: the data are rounded to a quarter of the smallest component sd (and
    ``select_k`` detects that resolution); ``separations`` limits the regimes.
    """
    start = time.perf_counter()
    seps = list(SEPARATIONS.values()) if separations is None else separations
    tasks = [(k, sep, rep) for sep in seps for k in TRUE_KS for rep in range(n_sets)]
    results = Parallel(n_jobs=jobs)(delayed(one_set)(k, sep, rep, backend, rounded) for k, sep, rep in tasks)
    for (k, sep, rep), result in zip(tasks, results):
        result["separation"] = sep
    return results, time.perf_counter() - start


def markdown(results, seconds, backend, rounded=False):
    """Hit rates and the confusion of chosen K, per regime."""
    n_sets = sum(1 for r in results if r["true_k"] == TRUE_KS[0] and r["separation"] == next(iter(SEPARATIONS.values())))
    title = "on rounded data " if rounded else ""
    note = (
        [
            "Every value rounded to a quarter of the smallest component standard deviation; "
            "`resolution=\"auto\"` detects it (a data set where it did not counts as a miss "
            "in the last column).",
            "",
        ]
        if rounded
        else []
    )
    lines = [
        f"## Choosing K {title}: how often `select_k` finds the true K",
        "",
        *note,
        f"{n_sets} simulated data sets of {N_ROWS} rows per true K and regime, "
        f"{len(results)} in all, {seconds:.0f} s. Each is a 1-D Gaussian mixture with "
        "standard deviations drawn from Uniform(0.7, 1.3) and weights from "
        "Dirichlet(20, ..., 20) (nearly equal). Neighbouring means are *d* times the pair's "
        "average standard deviation apart: "
        + ", ".join(f"{name} *d* = {d:g}" for name, d in SEPARATIONS.items())
        + " (at *d* = 2 two equal components make one unimodal bump). "
        f"`select_k(BayesianGaussianMixture(...), X, k_range=range(1, {K_RANGE[-1] + 1}))` "
        "with its defaults (`method=\"auto\"`: PSIS-LOO, or 5-fold CV when a Pareto k exceeds "
        "0.7; `selection=\"parsimonious\"`) and the estimator's default, data-based priors; "
        f"sampler {SAMPLER}, backend `{backend}`.",
        "",
        "| regime | true K | found | hit rate | chosen K: " + " / ".join(str(k) for k in K_RANGE) + " | K-fold used | reliable | resolution detected |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, sep in SEPARATIONS.items():
        if not any(r["separation"] == sep for r in results):
            continue
        for k in TRUE_KS:
            rows = [r for r in results if r["separation"] == sep and r["true_k"] == k]
            chosen = [sum(r["best_k"] == j for r in rows) for j in K_RANGE]
            hits = chosen[k - 1]
            kfold = sum(r["method"] == "kfold" for r in rows)
            lines.append(
                f"| {name} | {k} | {hits}/{len(rows)} | {hits / len(rows):.0%} | "
                + " / ".join(map(str, chosen)) + f" | {kfold} | "
                + f"{sum(r['reliable'] for r in rows)} | {sum(r['resolution'] > 0 for r in rows)} |"
            )
        rows = [r for r in results if r["separation"] == sep]
        hits = sum(r["best_k"] == r["true_k"] for r in rows)
        lines.append(f"| {name} | all | {hits}/{len(rows)} | **{hits / len(rows):.0%}** | | | | |")
    return lines
