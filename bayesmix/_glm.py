"""Response families of :class:`~bayesmix.BayesianMixtureRegression` beyond the normal.

Each family has a link from the linear predictor ``eta = intercept + X @ coef + offset``
to the mean response, a log-density (pytensor for the model, numpy for the predictive
maths; the count and gamma densities are those of :mod:`bayesmix.families`), a sampler
and its support:

============================  ========  ====================  =========================
family                        link      mean                  variance
============================  ========  ====================  =========================
``"poisson"``                 log       ``exp(eta)``          ``mean``
``"negative_binomial"``       log       ``exp(eta)``          ``mean + mean**2 / alpha``
``"binomial"`` (``trials``)   logit     ``trials * p``        ``trials * p * (1 - p)``
``"bernoulli"``               logit     ``p``                 ``p * (1 - p)``
``"gamma"``                   log       ``exp(eta)``          ``mean**2 / shape``
============================  ========  ====================  =========================

with ``p = 1 / (1 + exp(-eta))``. ``alpha`` (negative binomial) and ``shape`` (gamma) are
each component's dispersion parameter, as in ``families.py``.
"""

import numpy as np
import pytensor.tensor as pt
from scipy.special import expit, gammaln, log_expit

from .families import get_family

GLM_FAMILIES = ("poisson", "negative_binomial", "binomial", "bernoulli", "gamma")
RESPONSE_FAMILIES = ("normal",) + GLM_FAMILIES
# Name of each family's dispersion parameter (posterior variable), where it has one.
DISPERSION = {"negative_binomial": "alpha", "gamma": "shape"}
LOG_LINK = ("poisson", "negative_binomial", "gamma")


def check_response(family, y, trials):
    """Raise ``ValueError`` when ``y`` (or ``trials``) is outside the family's support."""
    if family in ("poisson", "negative_binomial"):
        get_family(family).check_support(y, "y")
    elif family == "gamma":
        get_family("gamma").check_support(y, "y")
    elif family in ("binomial", "bernoulli"):
        if np.any((trials < 0) | (trials != np.round(trials))):
            raise ValueError("trials must be non-negative integers.")
        if np.any((y < 0) | (y != np.round(y))):
            raise ValueError(f"y must be non-negative integer counts of successes for family={family!r}.")
        if np.any(y > trials):
            if family == "bernoulli":
                raise ValueError(
                    "y must be 0 or 1 for family='bernoulli'; for counts of successes out of "
                    "several trials use family='binomial' with fit(..., trials=...)."
                )
            bad = int(np.sum(y > trials))
            raise ValueError(f"y exceeds trials in {bad} row(s): successes cannot outnumber trials.")


def logp(family, y, eta, trials, dispersion):
    """Pytensor log-density of ``y`` (N,) under linear predictors ``eta`` (N, K)."""
    y = y[:, None]
    if family == "poisson":
        # y * eta - exp(eta) - log(y!): the Poisson log-mass with log(rate) = eta, which
        # avoids the log(exp(.)) and the parameter checks of the generic form.
        return y * eta - pt.exp(eta) - pt.gammaln(y + 1.0)
    if family in ("binomial", "bernoulli"):
        n = trials[:, None]
        log_choose = pt.gammaln(n + 1.0) - pt.gammaln(y + 1.0) - pt.gammaln(n - y + 1.0)
        return log_choose + y * eta - n * pt.softplus(eta)
    mean = pt.exp(eta)
    if family == "negative_binomial":
        return get_family("negative_binomial").logp(y, mu=mean, alpha=dispersion[None, :])
    return get_family("gamma").logp(y, mean=mean, shape=dispersion[None, :])


def logpdf(family, y, eta, trials, dispersion):
    """Numpy log-density, broadcasting ``y`` and ``trials`` against ``eta`` and ``dispersion``."""
    if family == "poisson":
        return y * eta - np.exp(eta) - gammaln(y + 1.0)
    if family in ("binomial", "bernoulli"):
        log_choose = gammaln(trials + 1.0) - gammaln(y + 1.0) - gammaln(trials - y + 1.0)
        return log_choose + y * log_expit(eta) + (trials - y) * log_expit(-eta)
    name = "mu" if family == "negative_binomial" else "mean"
    return get_family(family).logpdf(y, **{name: np.exp(eta), DISPERSION[family]: dispersion})


def mean(family, eta, trials):
    """Mean response for linear predictors ``eta``."""
    if family in ("binomial", "bernoulli"):
        return trials * expit(eta)
    return np.exp(eta)


def rvs(family, rng, eta, trials, dispersion):
    """One response per element of ``eta`` (``rng`` a ``numpy.random.RandomState``)."""
    if family in ("binomial", "bernoulli"):
        return rng.binomial(trials.astype(np.int64), expit(eta)).astype(float)
    if family == "poisson":
        return rng.poisson(np.exp(eta)).astype(float)
    name = "mu" if family == "negative_binomial" else "mean"
    draws = get_family(family).rvs(rng, **{name: np.exp(eta), DISPERSION[family]: dispersion})
    return np.asarray(draws, dtype=float)


def variance_function(family, mu, trials, dispersion):
    """Variance of the response at mean ``mu``: the weights of Fisher scoring."""
    if family == "poisson":
        return mu
    if family == "negative_binomial":
        return mu + mu**2 / dispersion
    if family == "gamma":
        return mu**2 / dispersion
    p = mu / np.maximum(trials, 1e-12)
    return trials * p * (1 - p)


def intercept_location(family, y, offset, trials, sample_weight):
    """Link of the weighted mean response: where the intercepts' prior is centred."""
    w = sample_weight if sample_weight.sum() > 0 else np.ones_like(y)
    if family in LOG_LINK:
        rate = np.sum(w * y) / np.sum(w * np.exp(offset))
        return float(np.log(max(rate, 1e-3 * np.sum(w) / np.sum(w * np.exp(offset)))))
    p = np.sum(w * y) / max(np.sum(w * trials), 1e-12)
    p = min(max(p, 0.01), 0.99)
    return float(np.log(p / (1 - p)) - np.average(offset, weights=w))


def em_start(family, A, y, offset, trials, K, dispersion_start, rng, intercept=True, n_iter=50):
    """EM fit of a K-component GLM mixture (Fisher-scoring M-steps) from a few splits.

    ``A`` is the design matrix, its first column ones when ``intercept``.
    Returns ``(beta (K, P), dispersion (K,) or None, weights (K,))``, components ordered
    by their first column of ``beta``.
    """
    N, P = A.shape
    ridge = 1e-2 * np.eye(P)
    has_dispersion = family in DISPERSION
    base = intercept_location(family, y, offset, trials, np.ones(N))

    def m_step(resp, betas, disp):
        betas, disp = betas.copy(), disp.copy()
        for k in range(K):
            r = resp[:, k] + 1e-8
            beta = betas[k]
            for _ in range(3):  # a few Fisher-scoring steps per M-step
                eta = np.clip(A @ beta + offset, -30, 30)
                mu = mean(family, eta, trials)
                dmu = mu if family in LOG_LINK else mu * (1 - mu / np.maximum(trials, 1e-12))
                var = np.maximum(variance_function(family, mu, trials, disp[k]), 1e-10)
                W = r * dmu**2 / var
                z = eta - offset + (y - mu) / np.maximum(dmu, 1e-10)
                beta = np.linalg.solve(A.T @ (A * W[:, None]) + ridge, A.T @ (W * z))
            betas[k] = beta
            if has_dispersion:
                mu = mean(family, np.clip(A @ beta + offset, -30, 30), trials)
                if family == "gamma":
                    inv = np.sum(r * (y - mu) ** 2 / mu**2) / r.sum()
                else:
                    inv = np.sum(r * ((y - mu) ** 2 - mu)) / np.sum(r * mu**2)
                disp[k] = np.clip(1.0 / max(inv, 1e-3), 0.2, 100.0)
        weights = np.clip(resp.mean(axis=0), 1e-3, None)
        return betas, disp, weights / weights.sum()

    def e_step(betas, disp, weights):
        eta = np.clip(A @ betas.T + offset[:, None], -30, 30)
        log_joint = np.log(weights) + logpdf(family, y[:, None], eta, trials[:, None], disp)
        total = np.logaddexp.reduce(log_joint, axis=1, keepdims=True)
        return np.exp(log_joint - total), float(total.sum())

    beta0 = np.zeros((K, P))
    if intercept:
        beta0[:, 0] = base
    disp0 = np.full(K, float(dispersion_start))
    pooled = m_step(np.ones((N, 1)).repeat(K, axis=1) / K, beta0, disp0)
    mu = mean(family, A @ pooled[0][0] + offset, trials)
    ratio = (y + 0.5) / (mu + 0.5)
    starts = [np.eye(K)[np.argsort(np.argsort(ratio, kind="stable")) * K // N]]
    if K > 1:
        starts.append(rng.dirichlet(np.ones(K), size=N))
    best = None
    for resp in starts:
        params = m_step(resp, pooled[0], pooled[1])
        loglik = -np.inf
        for _ in range(n_iter if K > 1 else 1):
            resp, new_loglik = e_step(*params)
            params = m_step(resp, params[0], params[1])
            if abs(new_loglik - loglik) < 1e-6 * N:
                break
            loglik = new_loglik
        _, loglik = e_step(*params)
        if np.isfinite(loglik) and (best is None or loglik > best[0]):
            best = (loglik, params)
    if best is None:
        best = (None, pooled)
    betas, disp, weights = best[1]
    order = np.argsort(betas[:, 0], kind="stable")
    return betas[order], (disp[order] if has_dispersion else None), weights[order]
