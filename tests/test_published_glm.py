"""Published mixtures of GLMs reproduced: flexmix's Poisson-regression mixture of ``patent``."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from bayesmix import BayesianMixtureRegression, datasets

# flexmix 2.3-18: stepFlexmix(Patents ~ lgRD, k = K, model = FLXMRglm(family = "poisson"),
# nrep = 30), components ordered by intercept (see datasets.load_patent).
FLEXMIX = {
    2: {"loglik": -219.6371, "intercept": [-0.1623, 1.7009], "slope": [1.0262, 0.7256], "weights": [0.7036, 0.2964]},
    3: {
        "loglik": -203.5333,
        "intercept": [-2.3250, 0.5833, 1.9761],
        "slope": [1.5224, 0.8655, 0.6691],
        "weights": [0.2404, 0.5763, 0.1833],
    },
}


def _fit_patent(K, **settings):
    data = datasets.load_patent()
    est = BayesianMixtureRegression(K, family="poisson", relabel="sort", backend="numba", random_state=0, **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(data[["lgRD"]], data["Patents"])
    return est, data


def _check_against_flexmix(est, data, K):
    ref = FLEXMIX[K]
    post = est.idata_.posterior
    # Log-likelihood of the best draw: the posterior mode's neighbourhood, which may not
    # exceed the maximum (beyond rounding) and should come within 1 unit of it.
    loglik = est.idata_.log_likelihood["y"].sum("y_row")
    best = float(loglik.max())
    assert ref["loglik"] - 1.0 < best < ref["loglik"] + 0.01
    # Posterior means within a posterior sd of flexmix's estimates ("sort": by intercept).
    for name, values in (("intercept", ref["intercept"]), ("weights", ref["weights"])):
        mean, sd = post[name].mean(("chain", "draw")).values, post[name].std(("chain", "draw")).values
        assert np.all(np.abs(mean - values) < sd), (name, mean, sd, values)
    coef = post["coef"].sel(feature="lgRD")
    mean, sd = coef.mean(("chain", "draw")).values, coef.std(("chain", "draw")).values
    assert np.all(np.abs(mean - ref["slope"]) < sd), ("slope", mean, sd)


def test_patent_two_components_match_flexmix():
    est, data = _fit_patent(2, draws=1000, tune=1000, chains=2)
    # Two chains: R-hat near 1 (the full check, converged_, is the slow test's).
    assert est.convergence_["rhat_max"] < 1.05 and est.convergence_["n_divergent"] == 0
    _check_against_flexmix(est, data, 2)


@pytest.mark.slow
def test_patent_three_components_match_flexmix():
    est, data = _fit_patent(3, draws=2000, tune=1000, chains=4)
    assert est.converged_
    _check_against_flexmix(est, data, 3)
