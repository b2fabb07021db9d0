"""The fused multivariate-normal mixture log-likelihood agrees with the plain PyTensor graph."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayesmix.models.fused_mvn import log_joint, mvnormal_mixture_loglik, responsibilities, row_log_likelihood

K = 3


def _reference(X, sample_weight, log_weights, means, chols):
    z = pt.linalg.solve_triangular(chols, X.T[None] - means[:, :, None], lower=True)  # (K, D, N)
    log_det = pt.log(pt.diagonal(chols, axis1=1, axis2=2)).sum(axis=1)
    log_joint = log_weights - log_det - 0.5 * X.shape[1] * np.log(2 * np.pi) - 0.5 * (z**2).sum(axis=1).T
    return (sample_weight * pt.logsumexp(log_joint, axis=1)).sum()


def _problem(n_rows, n_features, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_features)) * 2
    sample_weight = rng.uniform(0, 2, n_rows)
    sample_weight[:10] = 0.0
    chols = np.tril(rng.normal(size=(K, n_features, n_features)) * 0.3)
    idx = np.arange(n_features)
    chols[:, idx, idx] = rng.uniform(0.5, 2.0, (K, n_features))
    return X, sample_weight, [np.log([0.2, 0.3, 0.5]), rng.normal(size=(K, n_features)), chols]


def _value_and_grads(loglik, mode, X, sample_weight, tied=False):
    params = [pt.dvector(), pt.dmatrix(), pt.dtensor3() if not tied else pt.dmatrix()]
    chols = pt.broadcast_to(params[2], (K, *[params[2].shape[-1]] * 2)) if tied else params[2]
    value = loglik(X, sample_weight, params[0], params[1], chols)
    return pytensor.function(params, [value, *pt.grad(value, params)], mode=mode)


@pytest.mark.parametrize("mode", ["NUMBA", "JAX", "FAST_COMPILE"])
@pytest.mark.parametrize(("n_rows", "n_features"), [(600, 2), (300, 5), (100, 10)])
def test_value_and_gradient_match_plain_graph(mode, n_rows, n_features):
    if mode == "JAX":
        pytest.importorskip("jax")
        from bayesmix.models.fused_mvn import register_jax

        register_jax()
    X, sample_weight, values = _problem(n_rows, n_features)
    outputs = [
        _value_and_grads(loglik, fn_mode, X, sample_weight)(*values)
        for loglik, fn_mode in [(mvnormal_mixture_loglik, mode), (_reference, "FAST_COMPILE")]
    ]
    for fused, plain in zip(*outputs):
        np.testing.assert_allclose(fused, plain, rtol=1e-9, atol=1e-9)
    assert np.all(np.triu(outputs[0][3], 1) == 0)  # the upper triangle is not a parameter


def test_tied_gradient_sums_over_components():
    X, sample_weight, values = _problem(520, 3, seed=1)
    values[2] = values[2][0]
    outputs = [
        _value_and_grads(loglik, mode, X, sample_weight, tied=True)(*values)
        for loglik, mode in [(mvnormal_mixture_loglik, "NUMBA"), (_reference, "FAST_COMPILE")]
    ]
    for fused, plain in zip(*outputs):
        np.testing.assert_allclose(fused, plain, rtol=1e-9, atol=1e-9)


def test_zero_weight_rows_count_for_nothing():
    X, _, values = _problem(300, 2, seed=2)
    X[5] = 1e200  # no component gives this row a positive density
    weights = np.ones(300)
    fn = _value_and_grads(mvnormal_mixture_loglik, "NUMBA", X, weights)
    assert fn(*values)[0] == -np.inf
    weights[5] = 0.0
    zero_weight = _value_and_grads(mvnormal_mixture_loglik, "NUMBA", X, weights)(*values)
    without_row = _value_and_grads(mvnormal_mixture_loglik, "NUMBA", np.delete(X, 5, axis=0), np.ones(299))(*values)
    for a, b in zip(zero_weight, without_row):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_post_fit_functions_match_scipy():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 3))
    log_w = np.log(rng.dirichlet(np.ones(K), size=2))
    means = rng.normal(size=(2, K, 3))
    chols = np.stack([_problem(1, 3, seed=s)[2][2] for s in (4, 5)])
    expected = np.stack(
        [
            np.stack([multivariate_normal(means[s, k], chols[s, k] @ chols[s, k].T).logpdf(X) for k in range(K)], axis=1)
            + log_w[s]
            for s in range(2)
        ]
    )
    np.testing.assert_allclose(log_joint(X, log_w, means, chols), expected, rtol=1e-10)
    np.testing.assert_allclose(row_log_likelihood(X, log_w, means, chols), logsumexp(expected, axis=2), rtol=1e-10)
    probs = np.exp(expected - logsumexp(expected, axis=2, keepdims=True))
    np.testing.assert_allclose(responsibilities(X, log_w, means, chols), probs, rtol=1e-10, atol=1e-300)
    # A row beyond every component's reach has no probabilities: NaN, not zeros.
    far = np.vstack([X[:2], [[1e200, 0.0, 0.0]]])
    assert np.isnan(responsibilities(far, log_w, means, chols)[:, 2]).all()
    assert np.isfinite(responsibilities(far, log_w, means, chols)[:, :2]).all()


def test_overparametrized_model_is_warned_about_before_sampling():
    import warnings

    from bayesmix import BayesianGaussianMixture

    with pytest.warns(UserWarning, match="covariance_type='tied' or 'diag' or 'spherical'"):
        BayesianGaussianMixture(2, covariance_type="full")._warn_if_overparametrized(300, 50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BayesianGaussianMixture(2, covariance_type="diag")._warn_if_overparametrized(300, 50)
        BayesianGaussianMixture(3, covariance_type="full")._warn_if_overparametrized(2000, 2)
