"""The posterior over K of ``posterior_n_components``: seed stability on three classic data
sets, and how often its mode finds the true K of simulated mixtures.

    python benchmarks/validation/posterior_k.py OUT.md [--seeds 5] [--sets 10] [--sweeps 60000]

Prints the tables and writes them to OUT.md.
"""

import argparse
import sys
import time
import warnings

import numpy as np

from bayesmix import BayesianGaussianMixture, datasets, posterior_n_components
from bayesmix._gibbs import prior_k_occupied

K_MAX = 10
#: Gibbs sweeps per chain: posterior_n_components' default.
SWEEPS = 60000
SHOWN = range(1, 9)
DATA = {"galaxy": datasets.load_galaxy, "enzyme": datasets.load_enzyme, "acidity": datasets.load_acidity}


def k_posterior(X, seed, sweeps, concentration=0.01):
    est = BayesianGaussianMixture(random_state=seed, chains=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probs, fitted = posterior_n_components(
            est, X, k_max=K_MAX, n_sweeps=sweeps, n_burn=sweeps // 5, concentration=concentration
        )
    return probs, fitted


def classic(seeds, sweeps, concentration):
    prior_text = "e0 ~ Gamma(10, 10 k_max)" if concentration == "gamma" else f"e0 = {concentration}"
    lines = [
        f"## Posterior over K on galaxy, enzyme and acidity ({prior_text})",
        "",
        f"`posterior_n_components(BayesianGaussianMixture(random_state=seed, chains=4), X, "
        f"k_max={K_MAX}, n_sweeps={sweeps}, concentration={concentration!r})`: Gibbs sampler of "
        f"the sparse finite mixture, {prior_text}, Richardson-Green component priors; {seeds} seeds. "
        "'range' is the largest difference between seeds in any P(K = k); "
        "'uniform K' reweights the pooled posterior by 1 / prior(K+) (the prior the "
        "sparse mixture induces on the occupied components, by simulation), an approximation "
        "of the posterior under Richardson and Green's uniform prior on K.",
        "",
        "| data | n | P(K=k), k = " + " / ".join(map(str, SHOWN)) + " | range over seeds | max chain disagreement | R-hat of K | divergent | uniform K | s per seed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, load in DATA.items():
        X = load().to_numpy(dtype=float)
        runs, seconds = [], []
        for seed in range(seeds):
            start = time.perf_counter()
            runs.append(k_posterior(X, seed, sweeps, concentration)[0])
            seconds.append(time.perf_counter() - start)
        table = np.stack([r.to_numpy() for r in runs])
        pooled = table.mean(axis=0)
        spread = float((table.max(axis=0) - table.min(axis=0)).max())
        prior = prior_k_occupied(len(X), K_MAX, e0=None if concentration == "gamma" else concentration)
        reweighted = np.where(prior > 0, pooled / np.maximum(prior, 1e-12), 0.0)
        reweighted /= reweighted.sum()
        fmt = lambda p: " / ".join(f"{v:.2f}" for v in p[: len(SHOWN)])
        lines.append(
            f"| {name} | {len(X)} | {fmt(pooled)} | {spread:.3f} | "
            f"{max(r.attrs['chain_disagreement'] for r in runs):.3f} | "
            f"{max(r.attrs['rhat'] for r in runs):.3f} | {max(r.attrs['divergent_share'] for r in runs):.1%} | "
            f"{fmt(reweighted)} | {np.median(seconds):.0f} |"
        )
        print(lines[-1], flush=True)
    n = 82
    prior = prior_k_occupied(n, K_MAX, e0=None if concentration == "gamma" else concentration)
    lines += ["", f"Prior on K+ for n = {n} rows, k_max = {K_MAX}, {prior_text}: "
              + " / ".join(f"{v:.2f}" for v in prior[: len(SHOWN)]) + "."]
    return lines


def simulate(rng, k, n_rows=200, separation=6.0):
    """As choosing_k.simulate: sds Uniform(0.7, 1.3), weights Dirichlet(20), gaps d * mean sd."""
    sigmas = rng.uniform(0.7, 1.3, size=k)
    weights = rng.dirichlet(np.full(k, 20.0))
    means = np.concatenate([[0.0], np.cumsum(separation * (sigmas[1:] + sigmas[:-1]) / 2)])
    labels = rng.choice(k, size=n_rows, p=weights)
    return (means[labels] + sigmas[labels] * rng.standard_normal(n_rows))[:, None]


def simulated(n_sets, sweeps):
    lines = [
        "## Posterior over K on simulated mixtures with known K",
        "",
        f"{n_sets} well-separated sets (d = 6, 200 rows) per true K; the mode of P(K) against "
        f"the truth; {sweeps} sweeps per chain, 4 chains.",
        "",
        "| true K | mode = truth | mean P(true K) | modes |",
        "|---|---|---|---|",
    ]
    hits_all = total = 0
    for k in (1, 2, 3, 4):
        modes, p_true = [], []
        for rep in range(n_sets):
            X = simulate(np.random.default_rng([20, k, rep]), k)
            probs, _ = k_posterior(X, rep, sweeps)
            modes.append(int(probs.idxmax()))
            p_true.append(float(probs[k]))
        hits = sum(m == k for m in modes)
        hits_all, total = hits_all + hits, total + n_sets
        lines.append(f"| {k} | {hits}/{n_sets} | {np.mean(p_true):.2f} | {modes} |")
        print(lines[-1], flush=True)
    lines.append(f"| all | **{hits_all / total:.0%}** | | |")
    return lines, hits_all / total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sets", type=int, default=10)
    parser.add_argument("--sweeps", type=int, default=SWEEPS)
    args = parser.parse_args(argv)
    lines = []
    if args.seeds:
        lines += classic(args.seeds, args.sweeps, 0.01) + [""] + classic(args.seeds, args.sweeps, "gamma")
    if args.sets:
        lines += [""] + simulated(args.sets, args.sweeps)[0]
    with open(args.out, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
