"""Divergences of the two weights priors on an overfitted Gaussian mixture.

Three clusters (150, 100 and 50 rows at -4, 0 and 4 in every feature, unit spread), K=6,
jax backend, 4 chains of 1000 draws after 1000 tuning steps, one fit per prior and seed.
Prints a table and writes it to the file named on the command line.

    python3 benchmarks/bench_stick_breaking.py OUT.md [--features 1 2] [--seeds 2]
"""

import argparse
import time
import warnings

import numpy as np

from bayesmix import BayesianGaussianMixture


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="file the markdown table is written to")
    parser.add_argument("--features", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    rows = ["| features | prior | seed | seconds | divergences | max R-hat | min bulk ESS | weights (sorted) |",
            "|---|---|---|---|---|---|---|---|"]
    print("\n".join(rows), flush=True)
    for D in args.features:
        rng = np.random.default_rng(1)
        X = np.vstack([rng.normal(c, 1.0, (m, D)) for c, m in zip([-4, 0, 4], [150, 100, 50])])
        for prior in ("dirichlet_distribution", "dirichlet_process"):
            for seed in range(args.seeds):
                est = BayesianGaussianMixture(6, weight_concentration_prior_type=prior, draws=1000, tune=1000,
                                              chains=4, backend="jax", random_state=seed)
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    est.fit(X)
                report = est.convergence_
                row = (f"| {D} | {prior} | {seed} | {time.perf_counter() - start:.0f} | "
                       f"{int(est.idata_.sample_stats.diverging.sum())} / 4000 | {report['rhat_max']:.3f} | "
                       f"{report['ess_bulk_min']:.0f} | {np.round(np.sort(est.weights_)[::-1], 3).tolist()} |")
                rows.append(row)
                print(row, flush=True)
    with open(args.out, "w") as f:
        f.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
