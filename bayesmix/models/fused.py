"""A fused log-likelihood of a diagonal-normal mixture: one pass over the rows.

Written as a chain of PyTensor operations, a mixture's log-likelihood and its gradient
walk the N x K table of component log-densities several times (log-density, logsumexp,
softmax for the gradient, reductions), and compiling that graph for numba takes tens of
seconds. This module computes the value and the gradients with respect to the log-weights,
means and standard deviations in a single loop over the rows instead, as one PyTensor
``Op`` with a numba kernel (nutpie's default backend), a JAX implementation (nutpie's jax
backend) and a NumPy ``perform`` (PyMC's own samplers).
"""

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, grad_undefined
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)
# PyTensor's own numba fastmath flags (no "nnan"/"ninf": -inf log-densities must survive).
_FASTMATH = {"arcp", "contract", "afn", "reassoc", "nsz"}


@numba.njit(inline="always", fastmath=_FASTMATH)
def _offsets(log_weights, sigmas, out):
    """Row-independent part of each component's log-density: log w_k - sum_d log s_kd - D/2 log 2pi."""
    n_components, n_features = sigmas.shape
    for k in range(n_components):
        out[k] = log_weights[k] - n_features * _HALF_LOG_2PI
        for d in range(n_features):
            out[k] -= np.log(sigmas[k, d])


@numba.njit(inline="always", fastmath=_FASTMATH)
def _row_responsibilities(x, offset, means, precision, z, weights):
    """One row: fill ``z`` (standardized residuals) and ``weights`` (unnormalized responsibilities).

    Returns ``(largest, norm)`` with the row's log-density ``largest + log(norm)``, where
    ``weights[k] = exp(log_joint_k - largest)`` and ``norm`` is their sum; ``largest`` is
    -inf when no component gives the row a positive density (then ``weights`` is unset).
    """
    n_components, n_features = means.shape
    largest = -np.inf
    for k in range(n_components):
        quad = 0.0
        for d in range(n_features):
            zkd = (x[d] - means[k, d]) * precision[k, d]
            z[k, d] = zkd
            quad += zkd * zkd
        weights[k] = offset[k] - 0.5 * quad
        largest = max(largest, weights[k])
    norm = 0.0
    if largest > -np.inf:
        for k in range(n_components):
            weights[k] = np.exp(weights[k] - largest)
            norm += weights[k]
    return largest, norm


@numba.njit(cache=True, fastmath=_FASTMATH, nogil=True)
def _kernel(X, sample_weight, log_weights, means, sigmas):
    """Value and gradients of sum_n w_n log sum_k exp(log_weights_k + log N(X_n | means_k, sigmas_k))."""
    n_components, n_features = means.shape
    precision = 1.0 / sigmas
    offset = np.empty(n_components)
    _offsets(log_weights, sigmas, offset)
    grad_log_weights = np.zeros(n_components)
    grad_means = np.zeros((n_components, n_features))
    grad_sigmas = np.zeros((n_components, n_features))
    resp = np.empty(n_components)
    z = np.empty((n_components, n_features))
    total = 0.0
    for n in range(X.shape[0]):
        w = sample_weight[n]
        if w == 0.0:
            continue
        largest, norm = _row_responsibilities(X[n], offset, means, precision, z, resp)
        if largest == -np.inf:
            total = -np.inf
            continue
        total += w * (largest + np.log(norm))
        scale = w / norm
        for k in range(n_components):
            r = resp[k] * scale  # sample weight x responsibility
            grad_log_weights[k] += r
            for d in range(n_features):
                zkd = z[k, d]
                grad_means[k, d] += r * zkd * precision[k, d]
                grad_sigmas[k, d] += r * (zkd * zkd - 1.0) * precision[k, d]
    value = np.empty(())  # PyTensor's numba backend passes scalars as 0-d arrays
    value[()] = total
    return value, grad_log_weights, grad_means, grad_sigmas


@numba.njit(cache=True, fastmath=_FASTMATH, nogil=True)
def row_log_likelihood(X, log_weights, means, sigmas):
    """Per-draw log-density of each row of a diagonal-normal mixture, shape (S, N).

    ``log_weights`` is (S, K), ``means`` and ``sigmas`` are (S, K, D): one row per
    posterior draw. The same single pass as the sampler's kernel, without gradients.
    """
    n_draws, n_components, n_features = means.shape
    out = np.empty((n_draws, X.shape[0]))
    offset = np.empty(n_components)
    resp = np.empty(n_components)
    z = np.empty((n_components, n_features))
    for s in range(n_draws):
        precision = 1.0 / sigmas[s]
        _offsets(log_weights[s], sigmas[s], offset)
        for n in range(X.shape[0]):
            largest, norm = _row_responsibilities(X[n], offset, means[s], precision, z, resp)
            out[s, n] = largest + np.log(norm) if largest > -np.inf else -np.inf
    return out


class NormalMixtureLogLik(Op):
    """Outputs (log-likelihood, d/d log_weights, d/d means, d/d sigmas) of a normal mixture.

    Inputs are ``X`` (N, D), ``sample_weight`` (N,), ``log_weights`` (K,), ``means`` (K, D)
    and ``sigmas`` (K, D). Only the first output is meant for users; the others are what
    ``grad`` returns, so that PyTensor merges the gradient into the same single pass.
    """

    __props__ = ()

    def make_node(self, X, sample_weight, log_weights, means, sigmas):
        inputs = [
            pt.as_tensor_variable(X, ndim=2).astype("float64"),
            pt.as_tensor_variable(sample_weight, ndim=1).astype("float64"),
            pt.as_tensor_variable(log_weights, ndim=1).astype("float64"),
            pt.as_tensor_variable(means, ndim=2).astype("float64"),
            pt.as_tensor_variable(sigmas, ndim=2).astype("float64"),
        ]
        outputs = [pt.dscalar(), pt.dvector(), pt.dmatrix(), pt.dmatrix()]
        return Apply(self, inputs, outputs)

    def perform(self, node, inputs, output_storage):
        results = _numpy_value_and_grad(*inputs)
        for storage, value in zip(output_storage, results):
            storage[0] = np.asarray(value, dtype="float64")

    def infer_shape(self, fgraph, node, input_shapes):
        _, _, log_weights_shape, means_shape, sigmas_shape = input_shapes
        return [(), log_weights_shape, means_shape, sigmas_shape]

    def grad(self, inputs, output_grads):
        if any(not isinstance(g.type, DisconnectedType) for g in output_grads[1:]):
            raise NotImplementedError("Second derivatives of the fused mixture log-likelihood are not implemented.")
        _, grad_log_weights, grad_means, grad_sigmas = self(*inputs)
        upstream = output_grads[0]
        return [
            grad_undefined(self, 0, inputs[0], "The data are not differentiated."),
            grad_undefined(self, 1, inputs[1], "The sample weights are not differentiated."),
            upstream * grad_log_weights,
            upstream * grad_means,
            upstream * grad_sigmas,
        ]


def _log_joint(xp, X, log_weights, means, sigmas):
    """Standardized residuals (N, K, D) and log w_k + log N(row | component k) (N, K).

    ``xp`` is the array module: ``numpy`` for ``perform``, ``jax.numpy`` for the JAX backend.
    """
    z = (X[:, None, :] - means[None]) / sigmas[None]
    log_joint = log_weights - xp.log(sigmas).sum(axis=1) - X.shape[1] * _HALF_LOG_2PI - 0.5 * (z**2).sum(axis=2)
    return z, log_joint


def _numpy_value_and_grad(X, sample_weight, log_weights, means, sigmas):
    z, log_joint = _log_joint(np, X, log_weights, means, sigmas)
    largest = log_joint.max(axis=1, keepdims=True)
    resp = np.exp(log_joint - largest)
    norm = resp.sum(axis=1, keepdims=True)
    row = (largest + np.log(norm))[:, 0]
    weighted = resp / norm * sample_weight[:, None]
    return (
        np.sum(sample_weight * row),
        weighted.sum(axis=0),
        np.einsum("nk,nkd->kd", weighted, z) / sigmas,
        np.einsum("nk,nkd->kd", weighted, z**2 - 1.0) / sigmas,
    )


normal_mixture_op = NormalMixtureLogLik()


def normal_mixture_loglik(X, sample_weight, log_weights, means, sigmas):
    """Sum over rows of ``sample_weight`` x log sum_k w_k N(row | means_k, diag(sigmas_k^2))."""
    return normal_mixture_op(X, sample_weight, log_weights, means, sigmas)[0]


def _register_numba():
    from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

    @register_funcify_default_op_cache_key(NormalMixtureLogLik)
    def _numba_funcify(op, node=None, **kwargs):
        return _kernel, 3  # bump the integer when the kernel changes


_jax_registered = False


def register_jax():
    """Teach PyTensor's JAX backend the fused op (imports jax, so only on demand)."""
    global _jax_registered
    if _jax_registered:
        return
    import jax
    import jax.numpy as jnp
    from pytensor.link.jax.dispatch import jax_funcify

    def value(X, sample_weight, log_weights, means, sigmas):
        _, log_joint = _log_joint(jnp, X, log_weights, means, sigmas)
        return jnp.sum(sample_weight * jax.nn.logsumexp(log_joint, axis=1))

    value_and_grad = jax.value_and_grad(value, argnums=(2, 3, 4))

    @jax_funcify.register(NormalMixtureLogLik)
    def _jax_funcify(op, **kwargs):
        def normal_mixture(X, sample_weight, log_weights, means, sigmas):
            total, grads = value_and_grad(X, sample_weight, log_weights, means, sigmas)
            return (total, *grads)

        return normal_mixture

    _jax_registered = True


_register_numba()
