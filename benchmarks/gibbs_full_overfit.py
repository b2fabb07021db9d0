"""Would a Gibbs sampler meet issue #16's overfitted-K targets? An experiment, not a feature.

Usage::

    python benchmarks/gibbs_full_overfit.py --out DIR [--data-seeds 2,100,103,104,109,113]

Fits the data of ``bench_multivariate.py --only overfit`` (2-D, 3 correlated clusters, 2000
rows, ``clusters(2000, 2, 3, seed)``) with K = 3..6 by a semi-conjugate Gibbs sampler over
the assignments, the sampler that ``bayesmix._gibbs`` runs for diagonal mixtures, here
for full covariances. On standardized data::

    weights ~ Dirichlet(1/K, ..., 1/K)           (the package's default)
    mean[k] ~ Normal(0, 2^2 I)                   (the package: twice the data's sd)
    cov[k]  ~ InverseWishart(D + 3, 0.5 I)       (mean 0.25 I: sds half the data's)

Each sweep draws every row's component, then the weights, each mean given its covariance,
and each covariance given its mean, exactly. Four chains of 500 + 1000 sweeps (the
package's tune and draws) run in parallel from the k-means centres and their pooled
covariance; the draws are relabeled as the package does (Stephens on 500 rows, ordered by
the means) and R-hat is the largest over weights, means and covariances. The table goes
to ``DIR/gibbs_full_overfit.md``.
"""

import argparse
import sys
import time
from pathlib import Path

import arviz as az
import numba
import numpy as np
import xarray as xr
from sklearn.cluster import KMeans

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from bench_multivariate import clusters  # noqa: E402
from machine_info import describe  # noqa: E402

from bayesmix import diagnostics  # noqa: E402
from bayesmix.models import fused_mvn  # noqa: E402
from bayesmix.relabel import relabel  # noqa: E402


@numba.njit(cache=True)
def _inverse_wishart(nu, psi):
    """One draw of InverseWishart(nu, psi): the inverse of a Bartlett Wishart(nu, psi^-1)."""
    D = psi.shape[0]
    factor = np.linalg.cholesky(np.linalg.inv(psi))
    bartlett = np.zeros((D, D))
    for i in range(D):
        bartlett[i, i] = np.sqrt(np.random.chisquare(nu - i))
        for j in range(i):
            bartlett[i, j] = np.random.normal()
    root = factor @ bartlett
    return np.linalg.inv(root @ root.T)


@numba.njit(cache=True)
def _chain(X, n_sweeps, burn, e0, mean_var, nu0, psi0, seed, means, covs, weights):
    np.random.seed(seed)
    N, D = X.shape
    K = means.shape[0]
    kept = n_sweeps - burn
    out_w, out_m, out_c = np.empty((kept, K)), np.empty((kept, K, D)), np.empty((kept, K, D, D))
    lp, z = np.empty(K), np.empty(D)
    for sweep in range(n_sweeps):
        chols, offset = np.empty((K, D, D)), np.empty(K)
        for k in range(K):
            chols[k] = np.linalg.cholesky(covs[k])
            offset[k] = np.log(weights[k])
            for d in range(D):
                offset[k] -= np.log(chols[k, d, d])
        n, sx, sxx = np.zeros(K), np.zeros((K, D)), np.zeros((K, D, D))
        for i in range(N):
            top = -np.inf
            for k in range(K):
                q = 0.0
                for d in range(D):
                    s = X[i, d] - means[k, d]
                    for j in range(d):
                        s -= chols[k, d, j] * z[j]
                    z[d] = s / chols[k, d, d]
                    q += z[d] * z[d]
                lp[k] = offset[k] - 0.5 * q
                top = max(top, lp[k])
            total = 0.0
            for k in range(K):
                lp[k] = np.exp(lp[k] - top)
                total += lp[k]
            u, c, acc = np.random.random() * total, 0, lp[0]
            while acc < u and c < K - 1:
                c += 1
                acc += lp[c]
            n[c] += 1
            for d in range(D):
                sx[c, d] += X[i, d]
                for j in range(D):
                    sxx[c, d, j] += X[i, d] * X[i, j]
        gammas = np.array([np.random.gamma(e0 + n[k], 1.0) for k in range(K)])
        weights[:] = np.maximum(gammas / gammas.sum(), 1e-300)
        for k in range(K):
            precision = np.linalg.inv(covs[k])
            cov_mean = np.linalg.inv(np.eye(D) / mean_var + n[k] * precision)
            means[k] = cov_mean @ (precision @ sx[k]) + np.linalg.cholesky(cov_mean) @ np.random.normal(0.0, 1.0, D)
            scatter = sxx[k] - np.outer(means[k], sx[k]) - np.outer(sx[k], means[k]) + n[k] * np.outer(means[k], means[k])
            covs[k] = _inverse_wishart(nu0 + n[k], psi0 + scatter)
        if sweep >= burn:
            out_w[sweep - burn], out_m[sweep - burn], out_c[sweep - burn] = weights, means, covs
    return out_w, out_m, out_c


@numba.njit(parallel=True, cache=True)
def _chains(X, n_sweeps, burn, e0, mean_var, nu0, psi0, seeds, means, covs, weights):
    C, kept = len(seeds), n_sweeps - burn
    K, D = means.shape[1], X.shape[1]
    W, M, S = np.empty((C, kept, K)), np.empty((C, kept, K, D)), np.empty((C, kept, K, D, D))
    for c in numba.prange(C):
        W[c], M[c], S[c] = _chain(X, n_sweeps, burn, e0, mean_var, nu0, psi0, seeds[c],
                                  means[c].copy(), covs[c].copy(), weights[c].copy())
    return W, M, S


def gibbs_fit(X, K, random_state=0, draws=1000, tune=500, chains=4):
    """Sampling time, time with relabeling, largest R-hat and posterior mean weights."""
    Xs = (X - X.mean(0)) / X.std(0)
    D = X.shape[1]
    start = time.perf_counter()
    km = KMeans(K, n_init=3, random_state=random_state).fit(Xs)
    pooled = np.cov((Xs - km.cluster_centers_[km.labels_]).T)
    nu0 = D + 3.0
    W, M, S = _chains(
        Xs, draws + tune, tune, 1.0 / K, 4.0, nu0, (nu0 - D - 1) * 0.25 * np.eye(D),
        np.arange(chains) + 1000 * random_state, np.repeat(km.cluster_centers_[None], chains, 0),
        np.tile(pooled, (chains, K, 1, 1)), np.full((chains, K), 1.0 / K),
    )
    sampled = time.perf_counter() - start
    rows = np.random.default_rng(random_state).choice(len(Xs), min(500, len(Xs)), replace=False)
    probs = fused_mvn.responsibilities(
        np.ascontiguousarray(Xs[rows]), np.log(W.reshape(-1, K)), np.ascontiguousarray(M.reshape(-1, K, D)),
        np.ascontiguousarray(np.linalg.cholesky(S.reshape(-1, K, D, D))),
    ).reshape(chains, draws, len(rows), K)
    dims = ("chain", "draw", "component")
    posterior = xr.Dataset({"weights": (dims, W), "means": (dims + ("feature",), M),
                            "covariances": (dims + ("feature", "feature2"), S)})
    relabeled = relabel(az.InferenceData(posterior=posterior), "stephens", resp=probs, by="means")[0].posterior
    total = time.perf_counter() - start
    rhat = max(float(np.nanmax(diagnostics.rhat(relabeled[v].values))) for v in posterior.data_vars)
    return sampled, total, rhat, np.sort(relabeled["weights"].mean(("chain", "draw")).values)[::-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for gibbs_full_overfit.md")
    parser.add_argument("--data-seeds", default="2,100,103,104,109,113",
                        help="seeds of clusters(2000, 2, 3, seed) (%(default)s)")
    args = parser.parse_args()
    gibbs_fit(clusters(600, 2, 3, seed=0), 3, draws=20, tune=20)  # compile
    rows, failed = [], {K: 0 for K in (3, 4, 5, 6)}
    for seed in map(int, args.data_seeds.split(",")):
        X = clusters(2000, 2, 3, seed=seed)
        base = None
        for K in (3, 4, 5, 6):
            sampled, total, rhat, weights = gibbs_fit(X, K)
            base = base or total
            failed[K] += rhat > 1.01
            rows.append(f"| {seed} | {K} | {sampled:.2f} | {total:.2f} | {total / base:.2f} | {rhat:.3f} "
                        f"| {', '.join(f'{w:.4f}' for w in weights)} |\n")
            print(rows[-1], end="", flush=True)
    table = (
        "Semi-conjugate Gibbs sampler, 2-D full covariance, `clusters(2000, 2, 3, seed)`, 4 chains x "
        "(500 + 1000) sweeps in parallel, random_state 0.\n\n"
        "| data seed | K | sampling (s) | with relabeling (s) | / K=3 | R-hat max | posterior mean weights |\n"
        "|---|---|---|---|---|---|---|\n" + "".join(rows)
        + "\nFits with R-hat above 1.01, per K: "
        + ", ".join(f"K={K} {n} of {len(rows) // 4}" for K, n in failed.items()) + ".\n"
    )
    text = f"# Gibbs sampler on the overfitted-K data\n\n{describe()}\n\n{table}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gibbs_full_overfit.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
