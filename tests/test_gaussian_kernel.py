"""The whole-model numba kernel of the diagonal Gaussian mixture (bayesmix.models.gaussian_kernel)."""

import logging

import numpy as np
import pymc as pm
import pytensor
import pytest
from pytensor.compile.mode import Mode

from bayesmix import BayesianGaussianMixture
from bayesmix._nutpie_numba import _agrees_with_pymc, _kernel_model, _model_functions
from bayesmix.models.gaussian import build_gaussian_mixture
from bayesmix.models.gaussian_kernel import GaussianKernel

VARIANTS = [
    # K, D, covariance type, ordered, weight prior
    (3, 1, "spherical", False, "dirichlet_distribution"),
    (3, 1, "spherical", True, "dirichlet_distribution"),
    (1, 1, "spherical", False, "dirichlet_distribution"),
    (4, 1, "tied", False, "dirichlet_process"),
    (2, 3, "diag", False, "dirichlet_distribution"),
    (4, 3, "diag", False, "dirichlet_process"),
    (3, 4, "spherical", False, "dirichlet_process"),
]


def _kernel_for(D, cov, ordered, prior):
    return GaussianKernel(
        process=prior == "dirichlet_process", ordered=ordered, tied=cov == "tied", spherical=cov == "spherical"
    )


def _random_data(rng, D, n=9):
    return {
        "X": rng.normal(size=(n, D)) * 2.0,
        "sample_weight": rng.uniform(0.2, 3.0, n),
        "weight_concentration": rng.uniform(0.3, 3.0),
        "mean_loc": rng.normal(size=D),
        "mean_scale": rng.uniform(0.5, 3.0, D),
        "scale_prior": rng.uniform(0.3, 2.0, D),
        "resolution": rng.uniform(0.0, 0.8, D),
    }


@pytest.mark.parametrize("K, D, cov, ordered, prior", VARIANTS)
def test_kernel_is_the_models_log_density_and_gradient(K, D, cov, ordered, prior):
    rng = np.random.default_rng(K * 10 + D)
    model = build_gaussian_mixture(K, D, cov, ordered, weight_prior=prior)
    kernel = _kernel_for(D, cov, ordered, prior)
    data = _random_data(rng, D)
    value_vars = [model.rvs_to_values[rv] for rv in model.free_RVs]
    assert [v.name for v in value_vars] == kernel.free_names(K)
    logp = model.logp()
    with model:
        pm.set_data(data)
    function = pytensor.function(
        value_vars, [logp, *pytensor.grad(logp, value_vars)], mode=Mode(linker="py", optimizer="fast_compile")
    )
    shapes = [np.shape(value) for value in model.initial_point().values()]
    sizes = [int(np.prod(shape)) for shape in shapes]
    args = [np.asarray(data[name], dtype=float) for name in kernel.data_names]
    for _ in range(3):
        x = rng.normal(0.0, 1.0, sum(sizes))
        parts = np.split(x, np.cumsum(sizes)[:-1])
        expected, *grads = function(*[part.reshape(shape) for part, shape in zip(parts, shapes)])
        grad = np.empty_like(x)
        value = kernel.logp(x, grad, *kernel.flags, *args)
        np.testing.assert_allclose(value, expected, rtol=1e-10)
        np.testing.assert_allclose(grad, np.concatenate([np.ravel(g) for g in grads]), rtol=1e-8, atol=1e-10)
        weights, sticks, means, scales = kernel.expand(x, *kernel.flags, D)
        names = ("weights", "means", "sigma" if cov == "tied" else "sigmas")
        constrained = pytensor.function(
            value_vars,
            model.replace_rvs_by_values([model[name] for name in names]),
            mode=Mode(linker="py", optimizer="fast_compile"),
            on_unused_input="ignore",
        )(*[part.reshape(shape) for part, shape in zip(parts, shapes)])
        for mine, theirs in zip((weights, means, scales), constrained):
            np.testing.assert_allclose(np.ravel(mine), np.ravel(theirs), rtol=1e-10)


def test_a_kernel_of_another_model_is_refused_and_named_in_a_warning(caplog):
    # A diagonal model checked against the spherical kernel: same variable names, other
    # sizes, so the comparison with PyMC's log-density must catch it.
    model = build_gaussian_mixture(2, 3, "diag", False)
    functions = _model_functions(model, {}, None)
    shape_info = functions[-1]
    wrong = GaussianKernel(spherical=True)
    with caplog.at_level(logging.WARNING, logger="bayesmix._nutpie_numba"):
        assert not _agrees_with_pymc(model, _kernel_model(model, wrong, functions), wrong, shape_info)
    assert "disagrees with PyMC" in caplog.text
    right = GaussianKernel()
    assert _agrees_with_pymc(model, _kernel_model(model, right, functions), right, shape_info)
    # Variables the kernel does not know: no kernel model at all.
    assert _kernel_model(model, GaussianKernel(ordered=True), functions) is None


def test_the_numba_backend_samples_through_the_kernel_and_agrees_with_jax(caplog):
    rng = np.random.default_rng(3)
    X = np.r_[rng.normal(-2.0, 0.5, 150), rng.normal(2.0, 0.8, 250)][:, None]
    settings = {"n_components": 2, "draws": 300, "tune": 300, "chains": 2, "random_state": 1}
    with caplog.at_level(logging.DEBUG, logger="bayesmix._nutpie_numba"):
        numba_fit = BayesianGaussianMixture(backend="numba", **settings).fit(X)
    assert "callbacks around the model kernel" in caplog.text
    jax_fit = BayesianGaussianMixture(backend="jax", **settings).fit(X)
    np.testing.assert_allclose(numba_fit.means_[:, 0], [-2.0, 2.0], atol=0.2)
    np.testing.assert_allclose(numba_fit.means_, jax_fit.means_, atol=0.1)
    np.testing.assert_allclose(numba_fit.weights_, jax_fit.weights_, atol=0.05)
    np.testing.assert_allclose(numba_fit.covariances_.ravel(), jax_fit.covariances_.ravel(), rtol=0.15)
