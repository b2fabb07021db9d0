"""Speed of mixtures of GLMs: the issue-19 target, side by side with the Gaussian regression.

Usage: ``python benchmarks/bench_glm.py OUT.md [--repeats 3] [--backend numba]``

Data: 10,000 rows, 3 predictors, two components; the same design fitted as a Poisson
regression mixture (``family="poisson"``) and, as the peer measured in the same run, as a
Gaussian mixture of regressions on ``log1p(y)``. Each is fitted once to compile, then
``--repeats`` times warm (defaults: 4 chains, 500 tuning steps, 1000 draws); the table gives
the median warm time, whether every warm fit converged, and one log-density-and-gradient
evaluation of each compiled graph (median of 5 x 100 calls). The target is a warm Poisson fit
<= 5 s, converged.
"""

import argparse
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import pymc as pm

from bayesmix import BayesianMixtureRegression
from bayesmix.models.regression import build_regression_mixture


def data(n=10_000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    z = rng.uniform(size=n) < 0.4
    eta = np.where(z, 0.5 + X @ [0.3, -0.2, 0.1], 2.0 + X @ [-0.1, 0.2, 0.3])
    return X, rng.poisson(np.exp(eta)).astype(float)


def warm_fits(family, X, y, repeats, backend):
    est = BayesianMixtureRegression(2, family=family, backend=backend, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)  # compiles
        times, converged = [], []
        for seed in range(1, repeats + 1):
            start = time.perf_counter()
            est.set_params(random_state=seed).fit(X, y)
            times.append(time.perf_counter() - start)
            converged.append(est.converged_)
    return statistics.median(times), all(converged)


def gradient_us(family, X, y):
    model = build_regression_mixture(2, X.shape[1], family=family)
    values = {"X": X, "y": y, "sample_weight": np.ones(len(y))}
    if family != "normal":
        values.update(offset=np.zeros(len(y)), trials=np.ones(len(y)))
    with model:
        pm.set_data(values)
    f = model.logp_dlogp_function(ravel_inputs=True, mode="NUMBA")
    f.set_extra_values({})
    point = np.full(sum(v.size for v in model.initial_point().values()), 0.1)
    f(point)
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(100):
            f(point)
        runs.append((time.perf_counter() - start) / 100 * 1e6)
    return statistics.median(runs)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", default="numba")
    args = parser.parse_args()
    X, y = data()
    rows = []
    for family, target in (("poisson", y), ("normal", np.log1p(y))):
        seconds, converged = warm_fits(family, X, target, args.repeats, args.backend)
        rows.append((family, seconds, converged, gradient_us(family, X, target)))
    lines = [
        "| model (10,000 rows, 3 predictors, K=2) | warm fit, median (s) | all converged | logp+grad (us) |",
        "|---|---|---|---|",
        *[f"| {f} | {s:.2f} | {c} | {g:.0f} |" for f, s, c, g in rows],
        "",
        f"Poisson / normal: fit {rows[0][1] / rows[1][1]:.2f}x, gradient {rows[0][3] / rows[1][3]:.2f}x "
        f"(same run, backend {args.backend}, {args.repeats} warm fits each).",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
