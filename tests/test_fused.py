"""The fused normal-mixture log-likelihood agrees with the plain PyTensor graph."""

import numba
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
@pytest.mark.parametrize("n_rows", [200, 600])  # one partial block; blocks of 256 and a remainder
def test_value_and_gradient_match_plain_graph(mode, n_features, n_rows):
    if mode == "JAX":
        pytest.importorskip("jax")
        from bayesmix.models.fused import register_jax

        register_jax()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_rows, n_features)) * 3
    sample_weight = rng.uniform(0, 2, n_rows)
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


def _numba_value_and_grad(X, sample_weight, log_weights):
    params = [pt.dvector(), pt.dmatrix(), pt.dmatrix()]
    value = normal_mixture_loglik(X, sample_weight, *params)
    fn = pytensor.function(params, [value, *pt.grad(value, params)], mode="NUMBA")
    return fn(log_weights, np.zeros((len(log_weights), X.shape[1])), np.ones((len(log_weights), X.shape[1])))


def test_empty_component_and_impossible_rows():
    X = np.linspace(-3, 3, 300)[:, None]
    value, grad_log_weights, grad_means, _ = _numba_value_and_grad(X, np.ones(300), np.array([-np.inf, 0.0]))
    assert np.isfinite(value) and np.all(np.isfinite(grad_means))
    assert grad_log_weights[0] == 0.0 and grad_means[0, 0] == 0.0
    X[5] = 1e200  # no component gives this row a positive density
    weights = np.ones(300)
    assert _numba_value_and_grad(X, weights, np.log([0.5, 0.5]))[0] == -np.inf
    weights[5] = 0.0  # ... unless the row counts for nothing
    zero_weight = _numba_value_and_grad(X, weights, np.log([0.5, 0.5]))
    without_row = _numba_value_and_grad(np.delete(X, 5, axis=0), np.ones(299), np.log([0.5, 0.5]))
    for a, b in zip(zero_weight, without_row):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_vectorizable_exp_and_log_match_numpy():
    from bayesmix.models.fused import _exp_nonpositive, _log_positive

    @numba.njit
    def exp(x):
        return np.array([_exp_nonpositive(v) for v in x])

    @numba.njit
    def log(y):
        return np.array([_log_positive(v) for v in y])

    x = np.concatenate([-np.geomspace(1e-12, 700, 10_000), [0.0, -720.0, -np.inf]])
    np.testing.assert_allclose(exp(x), np.exp(x), rtol=1e-13, atol=1e-300)
    y = np.geomspace(1e-300, 1e300, 10_000)
    np.testing.assert_allclose(log(y), np.log(y), rtol=1e-15, atol=2e-16)


def test_row_log_likelihood_matches_numpy():
    from scipy.special import logsumexp
    from scipy.stats import norm

    from bayesmix.models.fused import row_log_likelihood

    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 2))
    X[7] = 1e200  # density 0 under every component
    log_w = np.log(rng.dirichlet(np.ones(3), size=4))
    means, sigmas = rng.normal(size=(4, 3, 2)), rng.uniform(0.5, 2, (4, 3, 2))
    with np.errstate(over="ignore"):
        expected = logsumexp(
            log_w[:, None, :] + norm.logpdf(X[None, :, None, :], means[:, None], sigmas[:, None]).sum(-1), axis=2
        )
    np.testing.assert_allclose(row_log_likelihood(X, log_w, means, sigmas), expected, rtol=1e-10)
