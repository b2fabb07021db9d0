"""A fused log-likelihood of a diagonal-normal mixture: one pass over the rows.

Written as a chain of PyTensor operations, a mixture's log-likelihood and its gradient
walk the N x K table of component log-densities several times (log-density, logsumexp,
softmax for the gradient, reductions), and compiling that graph for numba takes tens of
seconds. This module computes the value and the gradients with respect to the log-weights,
means and standard deviations in a single pass over the rows instead (a block of rows at
a time, so that the loops run on SIMD lanes), as one PyTensor ``Op`` with a numba kernel
(nutpie's default backend), a JAX implementation (nutpie's jax backend) and a NumPy
``perform`` (PyMC's own samplers).
"""

import hashlib
import math
from pathlib import Path

import numba
import numpy as np
import pytensor.tensor as pt
from numba.core import types
from numba.extending import intrinsic
from pytensor.gradient import DisconnectedType, grad_undefined
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)
# PyTensor's own numba fastmath flags (no "nnan"/"ninf": -inf log-densities must survive).
_FASTMATH = {"arcp", "contract", "afn", "reassoc", "nsz"}
# NumPy's error model lets numba skip the division-by-zero check that blocks vectorization.
_JIT = {"fastmath": _FASTMATH, "error_model": "numpy"}
# Rows processed together: the inner loops run over a block so that LLVM vectorizes them.
_BLOCK = 256

_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453
_LN2_HI = 0.6931471803691238  # Cody-Waite split of log(2): _LN2_HI + _LN2_LO
_LN2_LO = 1.9082149292705877e-10
_SQRT2 = 1.4142135623730951


@intrinsic
def _bits_to_float(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return types.float64(types.int64), codegen


@intrinsic
def _float_to_bits(typingctx, value):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return types.int64(types.float64), codegen


# Polynomial coefficients, highest power first: exp(r) to r**12 / 12!, and
# atanh(s) / s = 1 + s**2 / 3 + ... + s**20 / 21.
_EXP_TAYLOR = tuple(1.0 / math.factorial(n) for n in range(12, -1, -1))
_ATANH_SERIES = tuple(1.0 / n for n in range(21, 0, -2))


# Conversions between floats and integers go through int32: AVX2 converts int32 and
# double vectors into each other but has no instruction for int64 (AVX-512 does), so with
# int64 casts the loops of ``_exp`` and ``_log_positive`` do not vectorize there.
@numba.njit(inline="always", **_JIT)
def _power_of_two(n):
    """2**n for an integer-valued float n in [-1022, 1023]."""
    return _bits_to_float((np.int64(np.int32(n)) + 1023) << 52)


@numba.njit(inline="always", **_JIT)
def _int_to_float(i):
    """An int64 in the int32 range as a float."""
    return np.float64(np.int32(i))


@numba.njit(inline="always", **_JIT)
def _horner(x, coefficients):
    """The polynomial with ``coefficients`` (highest power first) at ``x``."""
    p = 0.0
    for c in coefficients:
        p = p * x + c
    return p


# libm's exp and log are calls that LLVM cannot vectorize (numba has no SVML here); these
# two are plain arithmetic, so a loop of them runs on SIMD lanes (about 10x faster).
@numba.njit(inline="always", **_JIT)
def _exp_nonpositive(x):
    """exp(x) for x <= 0 to about 1e-14 relative; 0 below -708 (and for -inf, NaN)."""
    clamped = max(x, -708.0)
    n = np.floor(clamped * _LOG2E + 0.5)
    r = clamped - n * _LN2_HI - n * _LN2_LO  # |r| <= log(2)/2
    p = _horner(r, _EXP_TAYLOR)
    result = p * _power_of_two(n)
    return result if x > -708.0 else 0.0


@numba.njit(inline="always", **_JIT)
def _exp(x):
    """exp(x) to about 1e-14 relative, as SIMD-friendly arithmetic; inf above 709 (exp
    itself overflows at 709.78), 0 below -708, NaN for NaN."""
    clamped = min(max(x, -708.0), 709.0)
    n = np.floor(clamped * _LOG2E + 0.5)
    r = clamped - n * _LN2_HI - n * _LN2_LO
    result = _horner(r, _EXP_TAYLOR) * _power_of_two(n)
    if -708.0 < x <= 709.0:
        return result
    return 0.0 if x <= -708.0 else (np.inf if x > 709.0 else x)


@numba.njit(inline="always", **_JIT)
def _log_positive(y):
    """log(y) for a positive normal float, to about 1e-16 absolute near 1."""
    # y = m * 2**e with m in [1/sqrt(2), sqrt(2)): e is the exponent of y * sqrt(2).
    e = (_float_to_bits(y * _SQRT2) >> 52) - 1023
    m = _bits_to_float(_float_to_bits(y) - (e << 52))
    s = (m - 1.0) / (m + 1.0)  # log(m) = 2 atanh(s), |s| < 0.172
    p = _horner(s * s, _ATANH_SERIES)
    return _int_to_float(e) * _LN2 + 2.0 * s * p


@numba.njit(inline="always", **_JIT)
def _offsets(log_weights, sigmas, out):
    """Row-independent part of each component's log-density: log w_k - sum_d log s_kd - D/2 log 2pi."""
    n_components, n_features = sigmas.shape
    for k in range(n_components):
        out[k] = log_weights[k] - n_features * _HALF_LOG_2PI
        for d in range(n_features):
            out[k] -= np.log(sigmas[k, d])


@numba.njit(inline="always", **_JIT)
def _block_responsibilities(X, start, offset, means, precision, xb, resp, largest, norm):
    """Rows ``start:start + b`` of ``X``, with ``b`` the returned block length.

    Fills ``xb[d, i]`` (the rows, transposed), ``largest[i]`` (the largest log w_k +
    log N(row | k)), ``resp[k, i] = exp(log w_k + log N(row | k) - largest[i])`` and
    ``norm[i]`` (their sum), so that the row's log-density is ``largest + log(norm)``.
    A row no component gives a positive density has ``largest`` -inf, ``resp`` 0,
    ``norm`` 1 and ``xb`` 0.
    """
    n_components, n_features = means.shape
    b = min(xb.shape[1], X.shape[0] - start)
    for d in range(n_features):
        for i in range(b):
            xb[d, i] = X[start + i, d]
    for i in range(b):
        largest[i] = -np.inf
        norm[i] = 0.0
    for k in range(n_components):
        for i in range(b):
            resp[k, i] = offset[k]
        for d in range(n_features):
            mean, prec = means[k, d], precision[k, d]
            for i in range(b):
                z = (xb[d, i] - mean) * prec
                resp[k, i] -= 0.5 * z * z
        for i in range(b):
            largest[i] = max(largest[i], resp[k, i])
    for k in range(n_components):
        for i in range(b):
            shift = largest[i] if largest[i] > -np.inf else 0.0
            resp[k, i] = _exp_nonpositive(resp[k, i] - shift)
            norm[i] += resp[k, i]
    n_impossible = 0
    for i in range(b):
        n_impossible += not largest[i] > -np.inf
    if n_impossible:
        for i in range(b):
            if not largest[i] > -np.inf:
                norm[i] = 1.0
                for d in range(n_features):
                    xb[d, i] = 0.0  # zero times an infinite residual would make the gradient NaN
    return b


@numba.njit(inline="always")
def _block_buffers(n_components, n_features):
    """Scratch arrays for ``_block_responsibilities``: ``xb``, ``resp``, ``largest``, ``norm``."""
    return (
        np.empty((n_features, _BLOCK)),
        np.empty((n_components, _BLOCK)),
        np.empty(_BLOCK),
        np.empty(_BLOCK),
    )


@numba.njit(cache=True, nogil=True, **_JIT)
def _kernel(X, sample_weight, log_weights, means, sigmas):
    """Value and gradients of sum_n w_n log sum_k exp(log_weights_k + log N(X_n | means_k, sigmas_k))."""
    n_components, n_features = means.shape
    precision = 1.0 / sigmas
    offset = np.empty(n_components)
    _offsets(log_weights, sigmas, offset)
    grad_log_weights = np.zeros(n_components)
    grad_means = np.zeros((n_components, n_features))
    grad_sigmas = np.zeros((n_components, n_features))
    xb, resp, largest, scale = _block_buffers(n_components, n_features)
    total = 0.0
    for start in range(0, X.shape[0], _BLOCK):
        b = _block_responsibilities(X, start, offset, means, precision, xb, resp, largest, scale)
        for i in range(b):
            w = sample_weight[start + i]
            # Rows of weight 0 count for nothing, even where their density is 0.
            total += w * (largest[i] + _log_positive(scale[i])) if w != 0.0 else 0.0
            scale[i] = w / scale[i]
        for k in range(n_components):
            grad = 0.0
            for i in range(b):
                resp[k, i] *= scale[i]  # sample weight x responsibility
                grad += resp[k, i]
            grad_log_weights[k] += grad
            for d in range(n_features):
                mean, prec = means[k, d], precision[k, d]
                grad_mean = 0.0
                grad_sigma = 0.0
                for i in range(b):
                    z = (xb[d, i] - mean) * prec
                    grad_mean += resp[k, i] * z
                    grad_sigma += resp[k, i] * (z * z - 1.0)
                grad_means[k, d] += grad_mean * prec
                grad_sigmas[k, d] += grad_sigma * prec
    value = np.empty(())  # PyTensor's numba backend passes scalars as 0-d arrays
    value[()] = total
    return value, grad_log_weights, grad_means, grad_sigmas


@numba.njit(cache=True, nogil=True, **_JIT)
def row_log_likelihood(X, log_weights, means, sigmas):
    """Per-draw log-density of each row of a diagonal-normal mixture, shape (S, N).

    ``log_weights`` is (S, K), ``means`` and ``sigmas`` are (S, K, D): one row per
    posterior draw. The same pass over the rows as the sampler's kernel, without gradients.
    """
    n_draws, n_components, n_features = means.shape
    out = np.empty((n_draws, X.shape[0]))
    offset = np.empty(n_components)
    xb, resp, largest, norm = _block_buffers(n_components, n_features)
    for s in range(n_draws):
        precision = 1.0 / sigmas[s]
        _offsets(log_weights[s], sigmas[s], offset)
        for start in range(0, X.shape[0], _BLOCK):
            b = _block_responsibilities(X, start, offset, means[s], precision, xb, resp, largest, norm)
            for i in range(b):
                out[s, start + i] = largest[i] + _log_positive(norm[i])
    return out


class FusedMixtureLogLik(Op):
    """Outputs (log-likelihood, d/d log_weights, d/d means, d/d scales) of a normal mixture.

    Inputs are ``X`` (N, D), ``sample_weight`` (N,), ``log_weights`` (K,), ``means`` (K, D)
    and the components' scales, an array of ``scale_ndim`` dimensions. Only the first
    output is meant for users; the others are what ``grad`` returns, so that PyTensor
    merges the gradient into the same single pass. Subclasses set ``scale_ndim`` and
    ``value_and_grad`` (the NumPy computation of all four outputs, for ``perform``).
    """

    __props__ = ()
    scale_ndim = 2

    @staticmethod
    def value_and_grad(X, sample_weight, log_weights, means, scales):
        raise NotImplementedError

    def make_node(self, X, sample_weight, log_weights, means, scales):
        inputs = [
            pt.as_tensor_variable(X, ndim=2).astype("float64"),
            pt.as_tensor_variable(sample_weight, ndim=1).astype("float64"),
            pt.as_tensor_variable(log_weights, ndim=1).astype("float64"),
            pt.as_tensor_variable(means, ndim=2).astype("float64"),
            pt.as_tensor_variable(scales, ndim=self.scale_ndim).astype("float64"),
        ]
        outputs = [pt.dscalar(), pt.dvector(), pt.dmatrix(), pt.tensor(dtype="float64", shape=(None,) * self.scale_ndim)]
        return Apply(self, inputs, outputs)

    def perform(self, node, inputs, output_storage):
        results = self.value_and_grad(*inputs)
        for storage, value in zip(output_storage, results):
            storage[0] = np.asarray(value, dtype="float64")

    def infer_shape(self, fgraph, node, input_shapes):
        _, _, log_weights_shape, means_shape, scales_shape = input_shapes
        return [(), log_weights_shape, means_shape, scales_shape]

    def grad(self, inputs, output_grads):
        if any(not isinstance(g.type, DisconnectedType) for g in output_grads[1:]):
            raise NotImplementedError("Second derivatives of the fused mixture log-likelihood are not implemented.")
        _, grad_log_weights, grad_means, grad_scales = self(*inputs)
        upstream = output_grads[0]
        return [
            grad_undefined(self, 0, inputs[0], "The data are not differentiated."),
            grad_undefined(self, 1, inputs[1], "The sample weights are not differentiated."),
            upstream * grad_log_weights,
            upstream * grad_means,
            upstream * grad_scales,
        ]


class NormalMixtureLogLik(FusedMixtureLogLik):
    """The fused Op for diagonal normals: the scales are ``sigmas`` (K, D)."""

    scale_ndim = 2

    @staticmethod
    def value_and_grad(X, sample_weight, log_weights, means, sigmas):
        return _numpy_value_and_grad(X, sample_weight, log_weights, means, sigmas)


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

    # PyTensor's numba cache keys the compiled op by this; the module's source changes it.
    source_key = int.from_bytes(hashlib.sha256(Path(__file__).read_bytes()).digest()[:8], "little")

    @register_funcify_default_op_cache_key(NormalMixtureLogLik)
    def _numba_funcify(op, node=None, **kwargs):
        return _kernel, source_key


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
