"""Minibatch ADVI, the large-data path: recovers well-separated truths for every estimator."""

import numpy as np
import pytest

from bayesmix import BayesianGaussianMixture, BayesianMixtureRegression, MarginalMixture

ADVI = {"inference": "advi", "advi_steps": 3000, "batch_size": 200, "draws": 200, "random_state": 0}


@pytest.fixture(scope="module")
def two_clusters():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(-4, 1, 1500), rng.normal(4, 1, 1500)])


def test_gaussian_advi_recovers_means(two_clusters):
    est = BayesianGaussianMixture(2, **ADVI).fit(two_clusters[:, None])
    np.testing.assert_allclose(est.means_.ravel(), [-4, 4], atol=0.15)
    np.testing.assert_allclose(est.weights_, [0.5, 0.5], atol=0.05)
    assert est.idata_.posterior.sizes == {"chain": 1, "draw": 200, "component": 2, "feature": 1}
    assert est.convergence_["method"] == "advi"
    assert est.convergence_["steps"] == 3000
    proba = est.predict_proba(two_clusters[:5, None])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_marginal_advi_recovers_locations(two_clusters):
    est = MarginalMixture(["normal", "normal"], **ADVI).fit(two_clusters[:, None])
    locations = np.sort(est.idata_.posterior["normal_mu"].mean(("chain", "draw")).values.ravel())
    np.testing.assert_allclose(locations, [-4, 4], atol=0.15)


def test_regression_advi_recovers_slopes():
    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 2, 3000)
    group = rng.random(3000) < 0.5
    y = np.where(group, 1 + 2 * x, -1 - 2 * x) + rng.normal(0, 0.3, 3000)
    est = BayesianMixtureRegression(2, **ADVI).fit(x[:, None], y)
    np.testing.assert_allclose(np.sort(est.coef_.ravel()), [-2, 2], atol=0.1)


def test_advi_that_has_not_settled_is_reported(two_clusters):
    with pytest.warns(Warning, match="ADVI loss was still changing"):
        est = BayesianGaussianMixture(2, inference="advi", advi_steps=20, batch_size=50, draws=50,
                                      random_state=0).fit(two_clusters[:, None])
    assert not est.converged_
