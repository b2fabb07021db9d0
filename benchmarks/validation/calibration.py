"""Simulation-based calibration and interval coverage, shared by every model.

A model under validation is a :class:`Case`: a function that draws parameters from the
prior and data from the model, a function that fits the estimator and returns its
posterior draws, and the parameter that puts components in a canonical order. Everything
else (ranks, coverage, uniformity tests, figures, tables) is here.

Label switching. The components of a mixture are exchangeable, so a posterior says nothing
about which label the truth's first component carries. Every case therefore compares
*label-invariant* quantities: in the truth and in every posterior draw the components are
sorted by the same parameter (``Case.sort_by``), the way the 1-D Gaussian model orders its
means. Sorting is a function of the parameters alone, so the ranks of the sorted truth
among sorted posterior draws are uniform whenever the posterior is right, whatever
relabeling the estimator applied after sampling (a permutation of each draw, which sorting
undoes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed
from scipy import stats

#: Posterior draws kept (evenly spaced) for the ranks, which then take values 0..N_THIN.
N_THIN = 99
#: Central interval probabilities whose coverage is reported.
LEVELS = (0.5, 0.9, 0.95)
#: Histogram bins of the ranks, and of the uniformity test.
N_BINS = 10
#: Family-wise level of the uniformity tests (Bonferroni over a case's parameters).
ALPHA = 0.01


@dataclass(frozen=True)
class Case:
    """One model under validation.

    Parameters
    ----------
    title : str
        Heading in the report.
    slug : str
        File name stem of the rank-histogram figure.
    simulate : callable ``(rng, n_rows) -> (truth, data)``
        ``truth`` maps parameter names to arrays whose first axis is the component (the
        weights have shape ``(K,)``); ``data`` is the tuple of positional arguments of
        ``fit``'s first argument, ``(X,)`` or ``(X, y)``.
    fit : callable ``(data, seed, sampler) -> (draws, diagnostics)``
        ``sampler`` holds the estimator's sampler parameters; ``draws`` maps the same
        names to arrays ``(n_draws, K, ...)``; ``diagnostics`` is the estimator's
        ``convergence_`` dict with ``converged`` added.
    sort_by : str
        Parameter whose first element (first feature) orders the components.
    description : str
        Model, priors and sizes, for the report.
    """

    title: str
    slug: str
    simulate: Callable
    fit: Callable
    sort_by: str
    description: str = ""


@dataclass
class Replication:
    """Outcome of one simulate-and-fit round."""

    ranks: dict
    inside: dict
    diagnostics: dict


def canonical(params, sort_by):
    """Sort the components of every draw by ``params[sort_by]`` and name every scalar.

    Parameters
    ----------
    params : dict of str to ndarray
        Arrays of shape ``(n_draws, K, ...)``.
    sort_by : str

    Returns
    -------
    dict of str to ndarray of shape (n_draws,)
        ``"name[k]"`` or ``"name[k,j]"`` per element; the weights lose their last
        component (it is one minus the others).
    """
    key = params[sort_by].reshape(params[sort_by].shape[0], params[sort_by].shape[1], -1)[:, :, 0]
    order = np.argsort(key, axis=1, kind="stable")
    out = {}
    for name, values in params.items():
        idx = order.reshape(order.shape + (1,) * (values.ndim - 2))
        values = np.take_along_axis(values, idx, axis=1)
        n_components = values.shape[1] - 1 if name == "weights" else values.shape[1]
        for element in np.ndindex(values.shape[1:]):
            if element[0] < n_components:
                out[f"{name}[{','.join(map(str, element))}]"] = values[(slice(None), *element)]
    return out


def replicate(case, rep, n_rows, case_key, sampler):
    """Simulate one data set from the prior, fit it, and rank the truth among the draws."""
    rng = np.random.default_rng([case_key, rep])
    truth, data = case.simulate(rng, n_rows)
    draws, diagnostics = case.fit(data, rep, sampler)
    truth = {name: value[0] for name, value in canonical(
        {name: np.asarray(v)[None] for name, v in truth.items()}, case.sort_by).items()}
    draws = canonical(draws, case.sort_by)
    n_draws = len(next(iter(draws.values())))
    thin = np.linspace(0, n_draws - 1, N_THIN).round().astype(int)
    ranks = {name: int(np.sum(draws[name][thin] < truth[name])) for name in truth}
    inside = {
        level: {
            name: bool(np.quantile(draws[name], (1 - level) / 2) <= truth[name]
                       <= np.quantile(draws[name], (1 + level) / 2))
            for name in truth
        }
        for level in LEVELS
    }
    return Replication(ranks, inside, diagnostics)


def run_case(case, n_reps, n_rows, jobs, case_key, sampler):
    """Run ``n_reps`` replications of a case; returns them and the seconds taken."""
    start = time.perf_counter()
    reps = Parallel(n_jobs=jobs)(
        delayed(replicate)(case, rep, n_rows, case_key, sampler) for rep in range(n_reps)
    )
    return reps, time.perf_counter() - start


def uniformity_pvalue(ranks):
    """Chi-square test that ranks in 0..N_THIN are uniform, on N_BINS equal bins."""
    counts, _ = np.histogram(ranks, bins=N_BINS, range=(0, N_THIN + 1))
    return float(stats.chisquare(counts).pvalue)


def summarize(reps):
    """Per-parameter SBC p-values and coverage (all fits and converged fits).

    Returns
    -------
    dict
        ``names``; ``pvalue`` (name -> float); ``coverage`` and ``coverage_converged``
        (level -> name -> share); ``n_converged``; ``threshold`` (the Bonferroni level);
        ``rhat_max`` and ``ess_min`` (arrays over replications); ``divergent_share``.
    """
    names = list(reps[0].ranks)
    converged = np.array([r.diagnostics["converged"] for r in reps])

    def coverage(mask):
        if not mask.any():
            return {level: {name: np.nan for name in names} for level in LEVELS}
        return {
            level: {name: float(np.mean([r.inside[level][name] for r, m in zip(reps, mask) if m]))
                    for name in names}
            for level in LEVELS
        }

    return {
        "names": names,
        "pvalue": {name: uniformity_pvalue([r.ranks[name] for r in reps]) for name in names},
        "threshold": ALPHA / len(names),
        "coverage": coverage(np.ones(len(reps), dtype=bool)),
        "coverage_converged": coverage(converged),
        "n_converged": int(converged.sum()),
        "rhat_max": np.array([r.diagnostics["rhat_max"] for r in reps]),
        "ess_min": np.array([r.diagnostics["ess_bulk_min"] for r in reps]),
        "divergent_share": float(np.mean([r.diagnostics["n_divergent"] > 0 for r in reps])),
    }


def rank_histograms(reps, path, title):
    """One rank histogram per parameter with the 99% band of a uniform histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(reps[0].ranks)
    n_cols = min(len(names), 5)
    n_rows = -(-len(names) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.4 * n_cols, 2.2 * n_rows + 0.5), squeeze=False)
    low, high = stats.binom.ppf([0.005, 0.995], len(reps), 1 / N_BINS)
    for ax, name in zip(axes.flat, names):
        ax.hist([r.ranks[name] for r in reps], bins=N_BINS, range=(0, N_THIN + 1), color="C0")
        ax.axhspan(low, high, color="0.85", zorder=0)
        ax.axhline(len(reps) / N_BINS, color="0.5", lw=0.8, zorder=0)
        ax.set_title(name, fontsize=9)
        ax.set_yticks([])
        ax.set_xticks([0, N_THIN + 1])
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def markdown(case, reps, seconds, figure):
    """The report section of one case: sizes, convergence, figure and table."""
    s = summarize(reps)
    n = len(reps)
    rejected = [name for name in s["names"] if s["pvalue"][name] < s["threshold"]]
    cover90 = [s["coverage"][0.9][name] for name in s["names"]]
    lines = [
        f"### {case.title}",
        "",
        case.description,
        "",
        f"{n} replications in {seconds:.0f} s. Convergence checks (R-hat <= 1.01, bulk ESS >= 100 "
        f"per chain, no divergences) passed in {s['n_converged']} of {n} fits "
        f"({s['n_converged'] / n:.0%}); {s['divergent_share']:.0%} of fits had divergences; "
        f"R-hat above 1.05 in {np.mean(s['rhat_max'] > 1.05):.0%}.",
        "",
        f"SBC: {len(rejected)} of {len(s['names'])} parameters rejected at {ALPHA:.0%} "
        f"(Bonferroni: p < {s['threshold']:.4f}); smallest p-value "
        f"{min(s['pvalue'].values()):.3f}. 90% intervals covered the truth in "
        f"{min(cover90):.0%}-{max(cover90):.0%} of fits.",
        "",
        f"![rank histograms of {case.title}]({figure})",
        "",
        "| parameter | SBC p-value | rejected | 50% | 90% | 95% | 90%, converged fits |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in s["names"]:
        cov = [s["coverage"][level][name] for level in LEVELS]
        lines.append(
            f"| {name} | {s['pvalue'][name]:.3f} | {'**yes**' if name in rejected else 'no'} | "
            + " | ".join(f"{c:.2f}" for c in cov)
            + f" | {s['coverage_converged'][0.9][name]:.2f} |"
        )
    return lines, s
