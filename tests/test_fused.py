"""The fused normal-mixture log-likelihood agrees with the plain PyTensor graph."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from bayesmix.models.fused import normal_mixture_loglik


def _reference(X, sample_weight, log_weights, means, sigmas):
    z = (X[:, None, :] - means[None]) / sigmas[None]
    log_joint = log_weights - pt.log(sigmas).sum(axis=1) - 0.5 * X.shape[1] * np.log(2 * np.pi) - 0.5 * (z**2).sum(axis=2)
    return (sample_weight * pt.logsumexp(log_joint, axis=1)).sum()


@pytest.mark.parametrize("mode", ["NUMBA", "JAX", "FAST_COMPILE"])
@pytest.mark.parametrize("n_features", [1, 3])
def test_value_and_gradient_match_plain_graph(mode, n_features):
    if mode == "JAX":
        pytest.importorskip("jax")
        from bayesmix.models.fused import register_jax

        register_jax()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, n_features)) * 3
    sample_weight = rng.uniform(0, 2, 200)
    sample_weight[:10] = 0.0  # zero weights are skipped, not multiplied by a NaN
    log_weights, means, sigmas = pt.dvector(), pt.dmatrix(), pt.dmatrix()
    values = [np.log([0.2, 0.3, 0.5]), rng.normal(size=(3, n_features)), rng.uniform(0.3, 2, (3, n_features))]
    params = [log_weights, means, sigmas]
    outputs = []
    for loglik, fn_mode in [(normal_mixture_loglik, mode), (_reference, "FAST_COMPILE")]:
        value = loglik(X, sample_weight, *params)
        fn = pytensor.function(params, [value, *pt.grad(value, params)], mode=fn_mode)
        outputs.append(fn(*values))
    for fused, plain in zip(*outputs):
        np.testing.assert_allclose(fused, plain, rtol=1e-9, atol=1e-9)


def test_far_outlier_gives_finite_value():
    value = normal_mixture_loglik(np.array([[0.0], [1e6]]), np.ones(2), np.log([0.5, 0.5]), np.zeros((2, 1)), np.ones((2, 1)))
    assert np.isfinite(pytensor.function([], value, mode="NUMBA")())


def test_row_log_likelihood_matches_numpy():
    from scipy.special import logsumexp
    from scipy.stats import norm

    from bayesmix.models.fused import row_log_likelihood

    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 2))
    log_w = np.log(rng.dirichlet(np.ones(3), size=4))
    means, sigmas = rng.normal(size=(4, 3, 2)), rng.uniform(0.5, 2, (4, 3, 2))
    expected = logsumexp(
        log_w[:, None, :] + norm.logpdf(X[None, :, None, :], means[:, None], sigmas[:, None]).sum(-1), axis=2
    )
    np.testing.assert_allclose(row_log_likelihood(X, log_w, means, sigmas), expected, rtol=1e-10)
