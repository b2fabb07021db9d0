"""Gibbs sampler of a sparse finite mixture of diagonal Gaussians: a posterior over K.

The sparse finite mixture of Malsiner-Walli, Frühwirth-Schnatter and Grün (2016,
"Model-based clustering based on sparse finite Gaussian mixtures", Statistics and
Computing 26) with the component priors of Richardson and Green (1997, "On Bayesian
analysis of mixtures with an unknown number of components", JRSS B 59), per feature ``d``
with range ``R_d`` and midrange ``m_d``::

    e0 ~ Gamma(a_e, a_e * k_max)                     (Malsiner-Walli: a_e = 10)
    weights ~ Dirichlet(e0, ..., e0)                 (k_max components)
    mu[k, d] ~ Normal(m_d, R_d)                      (Richardson-Green: kappa = 1 / R^2)
    1 / sigma[k, d]^2 ~ Gamma(2, beta_d)             (shape alpha = 2, rate beta_d)
    beta_d ~ Gamma(0.2, 10 / R_d^2)                  (g = 0.2, h = 10 / R^2)
    x[i, d] | z_i = k ~ Normal(mu[k, d], sigma[k, d])

The number of occupied components K+ of each sweep is a draw from its posterior. Every
full conditional is sampled exactly (assignments, weights, means, precisions, beta);
``e0`` by a random-walk Metropolis step on ``log e0``. Rounded data (resolution ``h`` per
feature) are handled exactly by data augmentation: each sweep draws the unrounded value
of every row from its component's normal truncated to ``[x - h/2, x + h/2]``.

Unlike NUTS on the Dirichlet weights, whose geometry near empty components is a funnel
(divergent transitions, chains stuck at different K), the sampler moves rows between
components directly, so components empty and fill as the posterior asks.
"""

import math

import numba
import numpy as np

#: Prior shape of the Dirichlet concentration: e0 ~ Gamma(a, a * k_max), mean 1 / k_max.
E0_SHAPE = 10.0
# Random-walk step of log(e0).
_E0_STEP = 0.8


def _log_gamma_draws(rng, shape):
    """log of Gamma(shape, 1) draws, accurate for tiny shapes (no underflow to -inf)."""
    shape = np.asarray(shape, dtype=float)
    return np.log(rng.gamma(shape + 1.0)) + np.log(rng.uniform(size=shape.shape)) / shape


# Acklam's rational approximation of the normal quantile (relative error below 1.2e-9).
_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
      1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
      6.680131188771972e01, -1.328068155288572e01)
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
      -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
      3.754408661907416e00)


@numba.njit(cache=True)
def _ndtri(p):
    if p <= 0.0:
        return -np.inf
    if p >= 1.0:
        return np.inf
    if p < 0.02425:
        q = math.sqrt(-2.0 * math.log(p))
        return (((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]) / (
            (((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0)
    if p > 1.0 - 0.02425:
        q = math.sqrt(-2.0 * math.log(1.0 - p))
        return -(((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]) / (
            (((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0)
    q = p - 0.5
    r = q * q
    return (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]) * q / (
        ((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0)


@numba.njit(cache=True)
def _ndtr(x):
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@numba.njit(cache=True)
def _log_target(e, K, sum_log_w):
    # log p(e0 | weights) on the log(e0) scale: Gamma prior, Dirichlet density, Jacobian e0.
    return (E0_SHAPE * math.log(e) - E0_SHAPE * K * e
            + math.lgamma(K * e) - K * math.lgamma(e) + (e - 1.0) * sum_log_w)


@numba.njit(cache=True)
def _chain(X, h, K, n_iter, burn, e0, fixed, seed, out_k, out_e0):
    """One chain; fills ``out_k`` and ``out_e0`` and returns the accepted e0 moves."""
    np.random.seed(seed)
    N, D = X.shape
    lo = np.empty(D)
    R = np.empty(D)
    m = np.empty(D)
    for d in range(D):
        lo[d] = X[:, d].min()
        hi = X[:, d].max()
        R[d] = hi - lo[d] if hi > lo[d] else 1.0
        m[d] = (lo[d] + hi) / 2
    alpha, g = 2.0, 0.2
    rounded = False
    for d in range(D):
        if h[d] > 0:
            rounded = True
    mu = np.empty((K, D))
    tau = np.empty((K, D))
    beta = np.empty(D)
    for d in range(D):
        var = X[:, d].var()
        for k in range(K):
            mu[k, d] = X[np.random.randint(N), d] + 1e-3 * R[d] * np.random.standard_normal()
            tau[k, d] = K * K / max(var, 1e-12)
        beta[d] = g / (10.0 / R[d] ** 2)
    log_w = np.full(K, -math.log(K))
    Xc = X.copy()
    z = np.zeros(N, dtype=np.int64)
    n = np.zeros(K)
    S = np.zeros((K, D))
    SS = np.zeros((K, D))
    log_p = np.empty(K)
    log_g = np.empty(K)
    accepted = 0
    for it in range(burn + n_iter):
        # Assignments, and the unrounded values of rounded rows.
        n[:] = 0.0
        for i in range(N):
            top = -np.inf
            for k in range(K):
                v = log_w[k]
                for d in range(D):
                    r = Xc[i, d] - mu[k, d]
                    v += 0.5 * math.log(tau[k, d]) - 0.5 * tau[k, d] * r * r
                log_p[k] = v
                top = max(top, v)
            total = 0.0
            for k in range(K):
                log_p[k] = math.exp(log_p[k] - top)
                total += log_p[k]
            u = np.random.random() * total
            c = 0
            acc = log_p[0]
            while acc < u and c < K - 1:
                c += 1
                acc += log_p[c]
            z[i] = c
            n[c] += 1.0
            if rounded:
                for d in range(D):
                    if h[d] > 0:
                        sd = 1.0 / math.sqrt(tau[c, d])
                        a = _ndtr((X[i, d] - h[d] / 2 - mu[c, d]) / sd)
                        b = _ndtr((X[i, d] + h[d] / 2 - mu[c, d]) / sd)
                        q = a + np.random.random() * (b - a)
                        x = mu[c, d] + sd * _ndtri(min(max(q, 1e-300), 1.0 - 1e-16))
                        Xc[i, d] = min(max(x, X[i, d] - h[d] / 2), X[i, d] + h[d] / 2)
        # Weights: Dirichlet(e0 + n) as normalized gammas, on the log scale.
        top = -np.inf
        for k in range(K):
            a = e0 + n[k]
            log_g[k] = math.log(np.random.gamma(a + 1.0)) + math.log(np.random.random()) / a
            top = max(top, log_g[k])
        total = 0.0
        for k in range(K):
            total += math.exp(log_g[k] - top)
        sum_log_w = 0.0
        for k in range(K):
            log_w[k] = log_g[k] - top - math.log(total)
            sum_log_w += log_w[k]
        # Means, then precisions: semi-conjugate updates.
        S[:] = 0.0
        for i in range(N):
            for d in range(D):
                S[z[i], d] += Xc[i, d]
        for k in range(K):
            for d in range(D):
                kappa = 1.0 / R[d] ** 2
                prec = tau[k, d] * n[k] + kappa
                mu[k, d] = (tau[k, d] * S[k, d] + kappa * m[d]) / prec + np.random.standard_normal() / math.sqrt(prec)
        SS[:] = 0.0
        for i in range(N):
            for d in range(D):
                r = Xc[i, d] - mu[z[i], d]
                SS[z[i], d] += r * r
        for d in range(D):
            tau_sum = 0.0
            for k in range(K):
                tau[k, d] = np.random.gamma(alpha + n[k] / 2) / (beta[d] + SS[k, d] / 2)
                tau_sum += tau[k, d]
            beta[d] = np.random.gamma(g + K * alpha) / (10.0 / R[d] ** 2 + tau_sum)
        # Concentration: random-walk Metropolis on log(e0).
        if not fixed:
            proposal = e0 * math.exp(_E0_STEP * np.random.standard_normal())
            if math.log(np.random.random()) < _log_target(proposal, K, sum_log_w) - _log_target(e0, K, sum_log_w):
                e0 = proposal
                if it >= burn:
                    accepted += 1
        if it >= burn:
            occupied = 0
            for k in range(K):
                if n[k] > 0:
                    occupied += 1
            out_k[it - burn] = occupied
            out_e0[it - burn] = e0
    return accepted


def gibbs_chains(X, k_max, n_chains, n_iter, burn, rng, resolution=None, e0=None):
    """``n_chains`` independent chains of the sparse finite mixture sampler (numba).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    k_max : int
    n_chains : int
    n_iter, burn : int
        Sweeps kept, after ``burn`` discarded ones.
    rng : numpy.random.Generator
        Seeds the chains.
    resolution : ndarray of shape (n_features,), optional
        Rounding per feature (0: exact values).
    e0 : float or None
        Fixed Dirichlet concentration; ``None``: the Gamma(10, 10 k_max) prior.

    Returns
    -------
    dict
        ``k_occupied`` (n_chains, n_iter), ``e0`` (n_chains, n_iter), ``e0_acceptance``.
    """
    X = np.ascontiguousarray(X, dtype=float)
    D = X.shape[1]
    h = np.zeros(D) if resolution is None else np.asarray(resolution, dtype=float).reshape(D)
    K = int(k_max)
    out_k = np.empty((n_chains, n_iter), dtype=np.int64)
    out_e0 = np.empty((n_chains, n_iter))
    fixed = e0 is not None
    accepted = 0
    for c in range(n_chains):
        seed = int(rng.integers(2**31 - 1))
        accepted += _chain(X, h, K, int(n_iter), int(burn), float(e0) if fixed else 1.0 / K, fixed, seed, out_k[c], out_e0[c])
    return {
        "k_occupied": out_k,
        "e0": out_e0,
        "e0_acceptance": np.nan if fixed else accepted / (n_iter * n_chains),
    }


def prior_k_occupied(n_samples, k_max, e0=None, n_draws=20000, seed=0):
    """Prior of the number of occupied components K+ for ``n_samples`` rows, by simulation.

    Returns
    -------
    ndarray of shape (k_max,)
        P(K+ = k) for k = 1 .. k_max under ``e0 ~ Gamma(10, 10 k_max)`` (or fixed ``e0``).
    """
    rng = np.random.default_rng(seed)
    K = int(k_max)
    if e0 is None:
        e0 = rng.gamma(E0_SHAPE, 1.0 / (E0_SHAPE * K), size=n_draws)
    e0 = np.broadcast_to(np.asarray(e0, dtype=float), (n_draws,))
    log_g = _log_gamma_draws(rng, np.repeat(e0[:, None], K, axis=1))
    w = np.exp(log_g - np.logaddexp.reduce(log_g, axis=1, keepdims=True))
    counts = np.array([rng.multinomial(n_samples, p / p.sum()) for p in w])
    occupied = (counts > 0).sum(axis=1)
    return np.bincount(occupied, minlength=K + 1)[1:] / n_draws
