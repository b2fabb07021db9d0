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

import numpy as np
from scipy.special import gammaln, log_ndtr, ndtr, ndtri

#: Prior shape of the Dirichlet concentration: e0 ~ Gamma(a, a * k_max), mean 1 / k_max.
E0_SHAPE = 10.0
# Random-walk step of log(e0).
_E0_STEP = 0.8


def _log_gamma_draws(rng, shape):
    """log of Gamma(shape, 1) draws, accurate for tiny shapes (no underflow to -inf)."""
    shape = np.asarray(shape, dtype=float)
    return np.log(rng.gamma(shape + 1.0)) + np.log(rng.uniform(size=shape.shape)) / shape


def _sample_categorical_log(log_p, rng):
    """One category per row of ``log_p`` (..., K), unnormalized log-probabilities."""
    log_p = log_p - log_p.max(axis=-1, keepdims=True)
    cdf = np.cumsum(np.exp(log_p), axis=-1)
    u = rng.uniform(size=cdf.shape[:-1] + (1,)) * cdf[..., -1:]
    return np.minimum((u > cdf).sum(axis=-1), log_p.shape[-1] - 1)


def _unround(x, h, mu, sd, rng):
    """Unrounded values: Normal(mu, sd) truncated to [x - h/2, x + h/2] (inverse CDF)."""
    lo = ndtr((x - h / 2 - mu) / sd)
    hi = ndtr((x + h / 2 - mu) / sd)
    u = lo + rng.uniform(size=lo.shape) * (hi - lo)
    z = ndtri(np.clip(u, 1e-300, 1 - 1e-16))
    # Far in a tail the inverse CDF loses precision: keep the draw inside the interval.
    return np.clip(mu + sd * z, x - h / 2, x + h / 2)


def _component_sums(values, z, K):
    """Per chain and component sums of ``values`` (C, N, D) over rows with ``z`` (C, N)."""
    C, N, D = values.shape
    index = (z + K * np.arange(C)[:, None]).ravel()
    sums = np.stack(
        [np.bincount(index, weights=values[..., d].ravel(), minlength=C * K) for d in range(D)],
        axis=-1,
    )
    return sums.reshape(C, K, D)


def gibbs_chains(X, k_max, n_chains, n_iter, burn, rng, resolution=None, e0=None):
    """``n_chains`` independent chains of the sparse finite mixture sampler, run together.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    k_max : int
    n_chains : int
    n_iter, burn : int
        Sweeps kept, after ``burn`` discarded ones.
    rng : numpy.random.Generator
    resolution : ndarray of shape (n_features,), optional
        Rounding per feature (0: exact values).
    e0 : float, optional
        Fixed Dirichlet concentration instead of the Gamma prior.

    Returns
    -------
    dict
        ``k_occupied`` (n_chains, n_iter), ``e0`` (n_chains, n_iter), ``e0_acceptance``.
    """
    X = np.asarray(X, dtype=float)
    N, D = X.shape
    K, C = int(k_max), int(n_chains)
    lo, hi = X.min(axis=0), X.max(axis=0)
    R = np.where(hi > lo, hi - lo, 1.0)
    m = (lo + hi) / 2
    kappa = 1.0 / R**2
    alpha, g, h_rate = 2.0, 0.2, 10.0 / R**2
    h = np.zeros(D) if resolution is None else np.asarray(resolution, dtype=float)
    rounded = bool(np.any(h > 0))

    # Start: means at random rows, a common precision from the data, equal weights.
    mu = X[rng.choice(N, (C, K))] + 1e-3 * R * rng.standard_normal((C, K, D))
    tau = np.broadcast_to(K**2 / np.maximum(X.var(axis=0), 1e-12), (C, K, D)).copy()
    beta = np.broadcast_to(g / h_rate, (C, D)).copy()
    log_w = np.full((C, K), -np.log(K))
    fixed = e0 is not None
    e0 = np.full(C, float(e0) if fixed else 1.0 / K)
    Xc = np.broadcast_to(X, (C, N, D)).copy()
    out_k = np.empty((C, n_iter), dtype=int)
    out_e0 = np.empty((C, n_iter))
    accepted = 0
    chains = np.arange(C)[:, None]

    def log_target(e, sum_log_w):
        # log p(e0 | w) on the log(e0) scale: Gamma prior, Dirichlet density, Jacobian e0.
        return (
            E0_SHAPE * np.log(e) - E0_SHAPE * K * e
            + gammaln(K * e) - K * gammaln(e) + (e - 1.0) * sum_log_w
        )

    for it in range(burn + n_iter):
        # Assignments (C, N).
        log_p = log_w[:, None, :] + (
            0.5 * np.log(tau).sum(axis=2)[:, None, :]
            - 0.5 * (tau[:, None] * (Xc[:, :, None, :] - mu[:, None]) ** 2).sum(axis=3)
        )
        z = _sample_categorical_log(log_p, rng)
        if rounded:
            sd = 1.0 / np.sqrt(tau[chains, z])
            Xc = np.where(h > 0, _unround(X, h, mu[chains, z], sd, rng), X)
        n = np.bincount((z + K * chains).ravel(), minlength=C * K).reshape(C, K).astype(float)
        # Weights: Dirichlet(e0 + n) as normalized gammas, on the log scale.
        log_g = _log_gamma_draws(rng, e0[:, None] + n)
        log_w = log_g - np.logaddexp.reduce(log_g, axis=1, keepdims=True)
        # Means and precisions: semi-conjugate updates.
        S = _component_sums(Xc, z, K)
        prec = tau * n[..., None] + kappa
        mu = (tau * S + kappa * m) / prec + rng.standard_normal((C, K, D)) / np.sqrt(prec)
        SS = _component_sums((Xc - mu[chains, z]) ** 2, z, K)
        tau = rng.gamma(alpha + n[..., None] / 2) / (beta[:, None, :] + SS / 2)
        beta = rng.gamma(np.broadcast_to(g + K * alpha, (C, D))) / (h_rate + tau.sum(axis=1))
        # Concentration: random-walk Metropolis on log(e0).
        if not fixed:
            proposal = e0 * np.exp(_E0_STEP * rng.standard_normal(C))
            sum_log_w = log_w.sum(axis=1)
            accept = np.log(rng.uniform(size=C)) < log_target(proposal, sum_log_w) - log_target(e0, sum_log_w)
            e0 = np.where(accept, proposal, e0)
            accepted += int(accept.sum()) * (it >= burn)
        if it >= burn:
            out_k[:, it - burn] = (n > 0).sum(axis=1)
            out_e0[:, it - burn] = e0
    return {
        "k_occupied": out_k,
        "e0": out_e0,
        "e0_acceptance": np.nan if fixed else accepted / (n_iter * C),
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
