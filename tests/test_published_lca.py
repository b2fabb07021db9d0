"""A published latent class analysis reproduced: poLCA's three classes of ``carcinoma``."""

import warnings

import numpy as np
from scipy import optimize
from scipy.special import expit, log_softmax, logit
from sklearn.exceptions import ConvergenceWarning

from bayesmix import MarginalMixture, datasets

# Linzer and Lewis (2011, Journal of Statistical Software 42(10), section 5.1), poLCA's
# ``carcinoma``: maximum log-likelihood with 3 classes and the class shares, classes in
# the order negative / equivocal / positive (mean probability of a positive rating).
POLCA_LOGLIK = -293.705
POLCA_SHARES = [0.3736, 0.1817, 0.4447]
RATERS = list("ABCDEFG")


def test_carcinoma_three_classes_match_polca():
    X = datasets.load_carcinoma()[RATERS].to_numpy(dtype=float)
    # jax: numba would compile a kernel for this family combination alone (the test took
    # 70 s on empty caches against 35 s on jax)
    est = MarginalMixture(
        [["bernoulli"] * 7] * 3, draws=1000, tune=1000, chains=4, random_state=0, backend="jax"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X)
    assert est.convergence_["rhat_max"] < 1.01 and est.convergence_["n_divergent"] <= 40  # 1%
    post = est.idata_.posterior
    p, weights = post["bernoulli_p"], post["weights"]  # p: (chain, draw, component, feature)
    order = np.argsort(p.mean(("chain", "draw", "bernoulli_feature")).values)
    mean = weights.mean(("chain", "draw")).values[order]
    sd = weights.std(("chain", "draw")).values[order]
    assert np.all(np.abs(mean - POLCA_SHARES) < sd), (mean, sd)

    # Flat priors (Beta(1, 1), Dirichlet(1, 1, 1)): the posterior mode is the maximum
    # likelihood. Climbing bayesmix's own log-likelihood from the best posterior draw
    # must reach poLCA's maximum, and no draw may exceed it.
    params = est._posterior_params()
    loglik = est._row_log_likelihood(X, None, params).sum(axis=1)
    assert loglik.max() < POLCA_LOGLIK + 0.01
    best = int(np.argmax(loglik))
    start = np.r_[np.log(params["weights"][best]), logit(params["bernoulli_p"][best]).ravel()]

    def negative_loglik(theta):
        draw = {
            "weights": np.exp(log_softmax(theta[:3]))[None],
            "bernoulli_p": expit(theta[3:]).reshape(1, 3, 7),
        }
        return -est._row_log_likelihood(X, None, draw).sum()

    # Some of poLCA's probabilities are 0 or 1: logits bounded at +-30 (1e-13 from them).
    bounds = [(None, None)] * 3 + [(-30.0, 30.0)] * 21
    start = np.clip(start, -30.0, 30.0)
    mode = optimize.minimize(negative_loglik, start, method="L-BFGS-B", bounds=bounds)
    assert abs(-mode.fun - POLCA_LOGLIK) < 0.01, -mode.fun
    # 23 parameters: the best of 4000 draws lies a few units below the maximum.
    assert POLCA_LOGLIK - loglik.max() < 10.0
