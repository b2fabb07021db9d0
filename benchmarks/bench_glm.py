"""Speed of mixtures of GLMs: the issue-19 target, side by side with the Gaussian regression.

Usage: ``python benchmarks/bench_glm.py OUT.md [--repeats 3] [--backend numba]``

Data: 10,000 rows, 3 predictors, two components; the same design fitted as a Poisson
regression mixture (``family="poisson"``) and, as the peer measured in the same run, as a
Gaussian mixture of regressions on ``log1p(y)``. Each is fitted once to compile, then
``--repeats`` times warm (defaults: 4 chains, 500 tuning steps, 1000 draws); the table gives
the median warm time and whether every warm fit converged. A second table times one
log-density-and-gradient evaluation (median of 5 x 100 calls) of the kernel nutpie calls for
the Poisson model against a hand-written single-pass numba kernel of the same likelihood.
Targets: a warm Poisson fit <= 5 s, converged; the gradient within 1.5x of the hand-written one.
"""

import argparse
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

import numba
import numpy as np

from bayesmix import BayesianMixtureRegression
from bayesmix.models.kernels import _FAMILY_CODES, _regression_logp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import describe  # noqa: E402


def data(n=10_000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    z = rng.uniform(size=n) < 0.4
    eta = np.where(z, 0.5 + X @ [0.3, -0.2, 0.1], 2.0 + X @ [-0.1, 0.2, 0.3])
    return X, rng.poisson(np.exp(eta)).astype(float)


def warm_fits(family, X, y, repeats, backend):
    """Median warm fit time, whether every warm fit converged, and the fitted estimator."""
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
    return statistics.median(times), all(converged), est


def _timed_us(f, *args):
    f(*args)
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(100):
            f(*args)
        runs.append((time.perf_counter() - start) / 100 * 1e6)
    return statistics.median(runs)


@numba.njit(fastmath=True)
def hand_poisson_mixture(X, y, log_w, intercept, coef, g_log_w, g_intercept, g_coef):
    """A hand-written single-pass kernel: log-likelihood of a Poisson-regression mixture
    (log link, constant weights) and its gradient, one row at a time with libm's exp/log,
    the way one writes it for numba without further tuning."""
    N, D = X.shape
    K = log_w.shape[0]
    joint = np.empty(K)
    d_eta = np.empty(K)
    g_log_w[:] = 0.0
    g_intercept[:] = 0.0
    g_coef[:] = 0.0
    total = 0.0
    for n in range(N):
        largest = -np.inf
        for k in range(K):
            eta = intercept[k]
            for d in range(D):
                eta += X[n, d] * coef[k, d]
            rate = math.exp(eta)
            joint[k] = log_w[k] + y[n] * eta - rate
            d_eta[k] = y[n] - rate
            largest = max(largest, joint[k])
        norm = 0.0
        for k in range(K):
            joint[k] = math.exp(joint[k] - largest)
            norm += joint[k]
        total += largest + math.log(norm) - math.lgamma(y[n] + 1.0)
        for k in range(K):
            r = joint[k] / norm
            g_log_w[k] += r
            g_intercept[k] += r * d_eta[k]
            for d in range(D):
                g_coef[k, d] += r * d_eta[k] * X[n, d]
    return total


def gradient_table(est, X, y):
    """Microseconds per log-density-and-gradient: the kernel nutpie calls for the fitted
    Poisson model (priors included) and the hand-written kernel, at the posterior mean."""
    K, D = est.coef_.shape
    log_w = np.log(est.weights_)
    point = np.r_[est.coef_.ravel(), est.intercept_, (log_w - log_w.mean())[:-1]]  # simplex coordinates
    grad = np.empty_like(point)
    N = len(y)
    ours = _timed_us(
        _regression_logp, point, grad, 0, 1, _FAMILY_CODES["poisson"], X, y, np.ones(N), np.array(1.0),
        np.ones(D), np.array(0.0), np.array(2.5), np.array(1.0), np.array(0.0), np.zeros(N), np.ones(N),
    )
    hand = _timed_us(
        hand_poisson_mixture, X, y, log_w, est.intercept_, est.coef_, np.empty(K), np.empty(K), np.empty((K, D))
    )
    return ours, hand


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", default="numba")
    args = parser.parse_args()
    X, y = data()
    rows = []
    for family, target in (("poisson", y), ("normal", np.log1p(y))):
        seconds, converged, est = warm_fits(family, X, target, args.repeats, args.backend)
        rows.append((family, seconds, converged))
        if family == "poisson":
            ours, hand = gradient_table(est, X, y)
    lines = [
        "| model (10,000 rows, 3 predictors, K=2) | warm fit, median (s) | all converged |",
        "|---|---|---|",
        *[f"| {f} | {s:.2f} | {c} |" for f, s, c in rows],
        "",
        f"Poisson / normal fit time: {rows[0][1] / rows[1][1]:.2f}x (same run, backend {args.backend}, "
        f"{args.repeats} warm fits each).",
        "",
        "| Poisson-regression mixture, log-density + gradient at the posterior mean | us per call (median) |",
        "|---|---|",
        f"| bayesmix's kernel (what nutpie calls; priors included) | {ours:.0f} |",
        f"| hand-written single-pass numba kernel (likelihood only) | {hand:.0f} |",
        f"| ratio bayesmix / hand-written | {ours / hand:.2f} |",
    ]
    command = "python benchmarks/bench_glm.py " + " ".join(sys.argv[1:])
    text = "\n".join([f"# Mixtures of GLMs (`{command}`)", "", describe(("bayesmix", "nutpie", "numba")), "", *lines])
    print(text)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
