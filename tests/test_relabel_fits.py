"""Relabeling on real fits: the estimators' `relabel=` and a hand-sampled PyMC posterior."""

import numpy as np
import pytest

from bayesmix import BayesianGaussianMixture, relabel


@pytest.fixture(scope="module")
def symmetric_data():
    rng = np.random.default_rng(3)
    return np.concatenate([rng.normal(m, 1.0, 120) for m in (-5, 0, 5)])[:, None]


@pytest.mark.parametrize("method", ["stephens", "ecr", "sort"])
def test_unordered_chains_agree_after_relabeling(symmetric_data, method):
    est = BayesianGaussianMixture(
        3, relabel=method, draws=600, tune=300, chains=4, backend="numba", random_state=2
    ).fit(symmetric_data)
    diag = est.relabel_diagnostics_
    assert diag["permuted_share"].shape == (4,)
    assert all(rhat <= 1.01 for rhat in diag["rhat_after"].values()), diag
    np.testing.assert_allclose(np.sort(est.means_.ravel()), [-5, 0, 5], atol=0.3)


def test_relabel_works_on_a_plain_pymc_posterior(symmetric_data):
    import nutpie
    import pymc as pm

    x = symmetric_data[:, 0]
    with pm.Model(coords={"component": range(3)}) as model:
        w = pm.Dirichlet("w", np.ones(3), dims="component")
        mu = pm.Normal("mu", 0, 10, dims="component")
        sigma = pm.HalfNormal("sigma", 3, dims="component")
        pm.NormalMixture("x", w=w, mu=mu, sigma=sigma, observed=x)
    compiled = nutpie.compile_pymc_model(model, backend="jax", gradient_backend="jax")
    idata = nutpie.sample(compiled, draws=200, tune=300, chains=4, seed=11, progress_bar=False)
    idata.add_groups(observed_data={"x": x})
    relabeled, perms = relabel(idata, method="stephens")
    assert perms.shape == (4, 200, 3)
    means = relabeled.posterior["mu"].mean(("chain", "draw")).values
    np.testing.assert_allclose(np.sort(means), [-5, 0, 5], atol=0.3)
    import arviz as az

    assert float(az.rhat(relabeled.posterior["mu"])["mu"].max()) <= 1.01
