"""A fused log-likelihood of a mixture of multivariate normals (full or tied covariance).

The companion of :mod:`bayesmix.models.fused` for correlated components: each component
is given by its mean and the lower Cholesky factor ``L`` of its covariance, and one pass
over the rows (a block of rows at a time, so that the loops run on SIMD lanes) computes
the log-likelihood and its gradients with respect to the log-weights, the means and the
Cholesky factors. Per component and row the only linear algebra is a forward
substitution ``z = L^-1 (x - mean)``; the gradients are built from the weighted sums of
``z`` and ``z z^T`` (the per-row back substitution ``L^-T z`` moves out of the loop over
rows, since it is linear), so a row costs about ``K D^2`` multiply-adds for the value and
as many again for the gradient. Tied covariances are K copies of one factor; PyTensor
sums their gradients.

Like the diagonal kernel, the ``Op`` has a numba kernel (nutpie's default backend), a JAX
implementation (nutpie's jax backend) and a NumPy ``perform`` (PyMC's own samplers), and
the post-fit maths (:func:`log_joint`, :func:`row_log_likelihood`) runs on the same
block pass.
"""

import hashlib
from pathlib import Path

import numba
import numpy as np

from bayesmix.models.fused import (
    _BLOCK,
    _HALF_LOG_2PI,
    _JIT,
    FusedMixtureLogLik,
    _exp_nonpositive,
    _log_positive,
)


@numba.njit(inline="always", **_JIT)
def _offsets(log_weights, chols, out):
    """Row-independent part of each log-density: log w_k - sum_d log L_kdd - D/2 log 2pi."""
    n_components, n_features = chols.shape[:2]
    for k in range(n_components):
        out[k] = log_weights[k] - n_features * _HALF_LOG_2PI
        for d in range(n_features):
            out[k] -= np.log(chols[k, d, d])


@numba.njit(inline="always", **_JIT)
def _block_log_joint(X, start, offset, means, chols, inv_diag, xb, zb, logp):
    """Rows ``start:start + b`` of ``X``, with ``b`` the returned block length.

    Fills ``xb[d, i]`` (the rows, transposed), ``zb[k, d, i]`` (the whitened residuals
    ``L_k^-1 (x_i - mean_k)``) and ``logp[k, i]`` (log w_k + log N(x_i | k)).
    """
    n_components, n_features = means.shape
    b = min(xb.shape[1], X.shape[0] - start)
    for d in range(n_features):
        for i in range(b):
            xb[d, i] = X[start + i, d]
    for k in range(n_components):
        for i in range(b):
            logp[k, i] = offset[k]
        for d in range(n_features):
            mean = means[k, d]
            for i in range(b):
                zb[k, d, i] = xb[d, i] - mean
            for j in range(d):
                c = chols[k, d, j]
                for i in range(b):
                    zb[k, d, i] -= c * zb[k, j, i]
            inv = inv_diag[k, d]
            for i in range(b):
                z = zb[k, d, i] * inv
                zb[k, d, i] = z
                logp[k, i] -= 0.5 * z * z
    return b


@numba.njit(inline="always", **_JIT)
def _block_normalize(b, resp, largest, norm):
    """Turn ``resp[k, i]`` (log joint) into ``exp(resp - largest[i])`` with ``norm[i]`` their sum.

    Returns whether some row has no component of positive density (``largest`` -inf;
    its ``resp`` become 0 and its ``norm`` 1).
    """
    n_components = resp.shape[0]
    for i in range(b):
        largest[i] = -np.inf
        norm[i] = 0.0
    for k in range(n_components):
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
    return n_impossible > 0


@numba.njit(inline="always")
def _block_buffers(n_components, n_features):
    """Scratch arrays: ``xb``, ``zb``, ``resp``, ``largest``, ``norm``."""
    return (
        np.empty((n_features, _BLOCK)),
        np.empty((n_components, n_features, _BLOCK)),
        np.empty((n_components, _BLOCK)),
        np.empty(_BLOCK),
        np.empty(_BLOCK),
    )


@numba.njit(inline="always", **_JIT)
def _inverse_diagonals(chols):
    n_components, n_features = chols.shape[:2]
    out = np.empty((n_components, n_features))
    for k in range(n_components):
        for d in range(n_features):
            out[k, d] = 1.0 / chols[k, d, d]
    return out


@numba.njit(cache=True, nogil=True, **_JIT)
def _kernel(X, sample_weight, log_weights, means, chols):
    """Value and gradients of sum_n w_n log sum_k exp(log_weights_k + log N(X_n | means_k, L_k L_k^T))."""
    n_components, n_features = means.shape
    D = n_features
    inv_diag = _inverse_diagonals(chols)
    offset = np.empty(n_components)
    _offsets(log_weights, chols, offset)
    mass = np.zeros(n_components)  # sum_n w_n r_nk
    sum_z = np.zeros((n_components, D))  # sum_n w_n r_nk z_nk
    sum_zz = np.zeros((n_components, D, D))  # sum_n w_n r_nk z_nk z_nk^T (lower triangle)
    xb, zb, resp, largest, scale = _block_buffers(n_components, D)
    rz = np.empty(_BLOCK)
    total = 0.0
    for start in range(0, X.shape[0], _BLOCK):
        b = _block_log_joint(X, start, offset, means, chols, inv_diag, xb, zb, resp)
        if _block_normalize(b, resp, largest, scale):
            for i in range(b):
                if not largest[i] > -np.inf:
                    for k in range(n_components):
                        for d in range(D):
                            zb[k, d, i] = 0.0  # zero times an infinite residual would make the gradient NaN
        for i in range(b):
            w = sample_weight[start + i]
            # Rows of weight 0 count for nothing, even where their density is 0.
            total += w * (largest[i] + _log_positive(scale[i])) if w != 0.0 else 0.0
            scale[i] = w / scale[i]
        for k in range(n_components):
            m = 0.0
            for i in range(b):
                resp[k, i] *= scale[i]  # sample weight x responsibility
                m += resp[k, i]
            mass[k] += m
            for d in range(D):
                s = 0.0
                for i in range(b):
                    rz[i] = resp[k, i] * zb[k, d, i]
                    s += rz[i]
                sum_z[k, d] += s
                for j in range(d + 1):
                    s = 0.0
                    for i in range(b):
                        s += rz[i] * zb[k, j, i]
                    sum_zz[k, d, j] += s
    grad_log_weights = mass
    grad_means = np.zeros((n_components, D))
    grad_chols = np.zeros((n_components, D, D))
    for k in range(n_components):
        L = chols[k]
        # d/d mean = L^-T sum r z;  d/d L = tril(L^-T sum r z z^T) - diag(sum r / L_dd)
        for d in range(D - 1, -1, -1):
            s = sum_z[k, d]
            for j in range(d + 1, D):
                s -= L[j, d] * grad_means[k, j]
            grad_means[k, d] = s * inv_diag[k, d]
        for c in range(D):
            for d in range(D - 1, -1, -1):
                s = sum_zz[k, max(d, c), min(d, c)]
                for j in range(d + 1, D):
                    s -= L[j, d] * grad_chols[k, j, c]
                grad_chols[k, d, c] = s * inv_diag[k, d]
        for d in range(D):
            for c in range(d + 1, D):
                grad_chols[k, d, c] = 0.0
            grad_chols[k, d, d] -= mass[k] * inv_diag[k, d]
    value = np.empty(())  # PyTensor's numba backend passes scalars as 0-d arrays
    value[()] = total
    return value, grad_log_weights, grad_means, grad_chols


# What ``_per_draw`` writes for each draw and row.
_LOG_JOINT, _PROBABILITIES, _ROW_LOG_DENSITY = 0, 1, 2


@numba.njit(inline="always")
def _per_draw(X, log_weights, means, chols, what, out):
    """The block pass for every posterior draw; ``what`` (a constant) chooses the output.

    ``_LOG_JOINT``: ``out[s, i, k] = log w_k + log N(row i | k)``; ``_PROBABILITIES``: the
    membership probabilities (NaN for a row of zero density under every component);
    ``_ROW_LOG_DENSITY``: the row's log-density, in ``out[s, i, 0]``.
    """
    n_components, n_features = means.shape[1:]
    offset = np.empty(n_components)
    xb, zb, logp, largest, norm = _block_buffers(n_components, n_features)
    for s in range(means.shape[0]):
        inv_diag = _inverse_diagonals(chols[s])
        _offsets(log_weights[s], chols[s], offset)
        for start in range(0, X.shape[0], _BLOCK):
            b = _block_log_joint(X, start, offset, means[s], chols[s], inv_diag, xb, zb, logp)
            if what != _LOG_JOINT:
                _block_normalize(b, logp, largest, norm)
            for i in range(b):
                if what == _ROW_LOG_DENSITY:
                    out[s, start + i, 0] = largest[i] + _log_positive(norm[i])
                    continue
                scale = 1.0
                if what == _PROBABILITIES:
                    scale = 1.0 / norm[i] if largest[i] > -np.inf else np.nan
                for k in range(n_components):
                    out[s, start + i, k] = logp[k, i] * scale


@numba.njit(cache=True, nogil=True, **_JIT)
def log_joint(X, log_weights, means, chols):
    """Per-draw log w_k + log N(row | component k), shape (S, N, K).

    ``log_weights`` is (S, K), ``means`` (S, K, D) and ``chols`` (S, K, D, D), the lower
    Cholesky factors of the covariances: one row per posterior draw.
    """
    out = np.empty((means.shape[0], X.shape[0], means.shape[1]))
    _per_draw(X, log_weights, means, chols, _LOG_JOINT, out)
    return out


@numba.njit(cache=True, nogil=True, **_JIT)
def row_log_likelihood(X, log_weights, means, chols):
    """Per-draw log-density of each row, shape (S, N); arguments as for :func:`log_joint`."""
    out = np.empty((means.shape[0], X.shape[0], 1))
    _per_draw(X, log_weights, means, chols, _ROW_LOG_DENSITY, out)
    return out.reshape(means.shape[0], X.shape[0])


@numba.njit(cache=True, nogil=True, **_JIT)
def responsibilities(X, log_weights, means, chols):
    """Per-draw membership probabilities of each row, shape (S, N, K); arguments as for
    :func:`log_joint`. A row of zero density under every component gets NaN."""
    out = np.empty((means.shape[0], X.shape[0], means.shape[1]))
    _per_draw(X, log_weights, means, chols, _PROBABILITIES, out)
    return out


class MvNormalMixtureLogLik(FusedMixtureLogLik):
    """The fused Op for full covariances: the scales are ``chols`` (K, D, D), lower Cholesky
    factors of the covariances (the upper triangle is ignored and gets a zero gradient)."""

    scale_ndim = 3

    @staticmethod
    def value_and_grad(X, sample_weight, log_weights, means, chols):
        return _numpy_value_and_grad(X, sample_weight, log_weights, means, chols)


def _whiten(xp, solve_triangular, X, log_weights, means, chols):
    """Whitened residuals z (K, D, N) and log w_k + log N(row | component k) (N, K)."""
    chols = xp.tril(chols)
    diff = X.T[None] - means[:, :, None]  # (K, D, N)
    z = solve_triangular(chols, diff, lower=True)
    log_det = xp.log(xp.diagonal(chols, axis1=1, axis2=2)).sum(axis=1)
    log_joint = log_weights - log_det - X.shape[1] * _HALF_LOG_2PI - 0.5 * (z**2).sum(axis=1).T
    return z, log_joint


def _numpy_value_and_grad(X, sample_weight, log_weights, means, chols):
    from scipy.linalg import solve_triangular

    def solve(a, b, lower):
        return np.stack([solve_triangular(a[k], b[k], lower=lower) for k in range(len(a))])

    z, log_joint = _whiten(np, solve, X, log_weights, means, chols)
    largest = log_joint.max(axis=1, keepdims=True)
    shift = np.where(np.isfinite(largest), largest, 0.0)
    resp = np.exp(log_joint - shift)
    norm = resp.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        row = (shift + np.log(norm))[:, 0]
    weighted = resp / np.where(norm > 0, norm, 1.0) * sample_weight[:, None]  # (N, K)
    z = np.where(np.isfinite(z), z, 0.0)
    sum_z = np.einsum("nk,kdn->kd", weighted, z)
    sum_zz = np.einsum("nk,kdn,ken->kde", weighted, z, z)
    lower_t = np.swapaxes(np.tril(chols), 1, 2)
    grad_means = solve(lower_t, sum_z[:, :, None], lower=False)[:, :, 0]
    grad_chols = np.tril(solve(lower_t, sum_zz, lower=False))
    mass = weighted.sum(axis=0)
    grad_chols -= mass[:, None, None] * np.eye(X.shape[1]) / np.diagonal(chols, axis1=1, axis2=2)[:, :, None]
    value = np.sum(np.where(sample_weight != 0, sample_weight * row, 0.0))
    return value, mass, grad_means, grad_chols


mvnormal_mixture_op = MvNormalMixtureLogLik()


def mvnormal_mixture_loglik(X, sample_weight, log_weights, means, chols):
    """Sum over rows of ``sample_weight`` x log sum_k w_k N(row | means_k, chols_k chols_k^T)."""
    return mvnormal_mixture_op(X, sample_weight, log_weights, means, chols)[0]


def _register_numba():
    from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

    # PyTensor's numba cache keys the compiled op by this; the sources of this module and
    # of the helpers it imports change it.
    sources = b"".join(Path(p).read_bytes() for p in (__file__, Path(__file__).with_name("fused.py")))
    source_key = int.from_bytes(hashlib.sha256(sources).digest()[:8], "little")

    @register_funcify_default_op_cache_key(MvNormalMixtureLogLik)
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
    from jax.scipy.linalg import solve_triangular
    from pytensor.link.jax.dispatch import jax_funcify

    batched_solve = jax.vmap(lambda a, b: solve_triangular(a, b, lower=True))

    def value(X, sample_weight, log_weights, means, chols):
        _, log_joint = _whiten(jnp, lambda a, b, lower: batched_solve(a, b), X, log_weights, means, chols)
        row = jax.nn.logsumexp(log_joint, axis=1)
        return jnp.sum(jnp.where(sample_weight != 0, sample_weight * row, 0.0))

    value_and_grad = jax.value_and_grad(value, argnums=(2, 3, 4))

    @jax_funcify.register(MvNormalMixtureLogLik)
    def _jax_funcify(op, **kwargs):
        def mvnormal_mixture(X, sample_weight, log_weights, means, chols):
            total, grads = value_and_grad(X, sample_weight, log_weights, means, chols)
            return (total, *grads)

        return mvnormal_mixture

    _jax_registered = True


_register_numba()
