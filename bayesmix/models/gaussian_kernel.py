"""The whole log-density of the diagonal Gaussian mixture model as one numba function.

nutpie's numba backend compiles the PyTensor graph of a model's log-density: about 80
small operations (priors, transforms, Jacobians, their gradients) around the fused
likelihood, which numba compiles one by one for about 20 s for every new model structure
(every K) on a machine. For the model of ``gaussian.build_gaussian_mixture`` with
diagonal, spherical or one-feature scales, this module computes the same log-density and
gradient, in the same unconstrained coordinates, in one function whose sizes (K, D) are
run-time values: numba compiles it once per machine and every K and D reuses it.

``compile_pymc_model`` (``bayesmix._nutpie_numba``) uses it only after checking it
against PyMC's own log-density and gradient at a starting point; the PyMC model stays
the definition.

Unconstrained coordinates ``x``, in the order of the model's free variables:

- weights: the Dirichlet's simplex coordinates ``z`` (K - 1; weights = softmax([z,
  -sum z])), or the process's stick log-odds ``u`` (K - 1; sticks = sigmoid(u));
- means: (K, D) as they are, or for ``ordered`` the first mean and the log gaps;
- scales: log standard deviations, (K, D), (K, 1) for spherical or (1, 1) tied.
"""

import hashlib
import math
from pathlib import Path

import numba
import numpy as np

from bayesmix.models import fused
from bayesmix.models.fused import _JIT, _kernel

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class GaussianKernel:
    """A variant of the diagonal Gaussian mixture model: which priors and transforms.

    Parameters
    ----------
    process : bool
        Stick-breaking (Dirichlet process) weights instead of a Dirichlet distribution.
    ordered : bool
        Means ordered by PyMC's ``ordered`` transform (one feature).
    tied : bool
        One standard deviation for every component (one feature).
    spherical : bool
        One standard deviation per component for every feature.
    """

    def __init__(self, process=False, ordered=False, tied=False, spherical=False):
        self.flags = (int(process), int(ordered), int(tied), int(spherical))
        # What ``expand`` returns, by the model's variable names.
        self.expand_outputs = ("weights", "sticks", "means", "sigma" if tied else "sigmas")

    # The model's data containers the kernel reads, in its arguments' order.
    data_names = (
        "X",
        "sample_weight",
        "weight_concentration",
        "mean_loc",
        "mean_scale",
        "scale_prior",
        "resolution",
    )
    # Changes with the numba code the callbacks link in (their disk cache key).
    source_key = hashlib.sha256(
        b"".join(Path(module).read_bytes() for module in (__file__, fused.__file__))
    ).hexdigest()

    def free_names(self, n_components):
        """The free variables' names, as nutpie orders the unconstrained point."""
        process, ordered, tied, _ = self.flags
        weights = "sticks_logodds__" if process and n_components > 1 else "weights_simplex__"
        return [weights, "means_ordered__" if ordered else "means", "sigma_log__" if tied else "sigmas_log__"]

    def expanded_names(self, n_components):
        """Names of the constrained variables ``expand`` writes after the point, in order."""
        process, ordered, tied, _ = self.flags
        scales = "sigma" if tied else "sigmas"
        if process and n_components > 1:
            return ["sticks", scales, "weights"]
        return ["weights", *(["means"] if ordered else []), scales]


@numba.njit(inline="always")
def _sizes(dim, n_features, tied, spherical):
    """(K, rows, columns of the scales) from the length of the point; K = -1 if none fits."""
    columns = 1 if spherical else n_features
    if tied:
        K, rest = divmod(dim + 1 - columns, 1 + n_features)
        rows = 1
    else:
        K, rest = divmod(dim + 1, 1 + n_features + columns)
        rows = K
    if rest != 0 or K < 1:
        return -1, rows, columns
    return K, rows, columns


@numba.njit(inline="always")
def _softplus(u):
    return max(u, 0.0) + math.log1p(math.exp(-abs(u)))


@numba.njit(inline="always")
def _log_weights(x, K, process, log_w):
    """Fill ``log_w`` (K,) from the weights' coordinates ``x[:K - 1]``."""
    if process:
        remaining = 0.0  # log of the stick left before component k
        for k in range(K - 1):
            log_w[k] = remaining - _softplus(-x[k])
            remaining -= _softplus(x[k])
        log_w[K - 1] = remaining
    else:
        last = 0.0
        largest = 0.0
        for k in range(K - 1):
            last -= x[k]
        largest = last
        for k in range(K - 1):
            largest = max(largest, x[k])
        total = math.exp(last - largest)
        for k in range(K - 1):
            total += math.exp(x[k] - largest)
        lse = largest + math.log(total)
        for k in range(K - 1):
            log_w[k] = x[k] - lse
        log_w[K - 1] = last - lse


@numba.njit(inline="always")
def _means(x, start, K, D, ordered, means):
    for k in range(K):
        for d in range(D):
            if not ordered:
                means[k, d] = x[start + k * D + d]
            elif k == 0:
                means[0, 0] = x[start]
            else:
                means[k, 0] = means[k - 1, 0] + math.exp(x[start + k])


# Not cached on its own: the callbacks that link it in are (compiling the machine code once).
@numba.njit(nogil=True, **_JIT)
def _logp(x, grad, process, ordered, tied, spherical, X, sample_weight, concentration, mean_loc, mean_scale, scale_prior, resolution):
    """Log-density at the unconstrained point ``x``; its gradient goes to ``grad``."""
    D = X.shape[1]
    K, rows, columns = _sizes(x.shape[0], D, tied, spherical)
    if K < 0:
        return np.nan
    c = concentration[()]
    log_w = np.empty(K)
    _log_weights(x, K, process, log_w)
    mean_start = K - 1
    means = np.empty((K, D))
    _means(x, mean_start, K, D, ordered, means)
    scale_start = mean_start + K * D
    sigmas = np.empty((K, D))
    for k in range(K):
        for d in range(D):
            v = x[scale_start + (k if rows > 1 else 0) * columns + (d if columns > 1 else 0)]
            sigmas[k, d] = math.sqrt(math.exp(2.0 * v) + resolution[d] ** 2 / 12.0)
    total_, g_log_w, g_means, g_sigmas = _kernel(X, sample_weight, log_w, means, sigmas)
    total = total_[()]

    # Weights: prior, Jacobian and the likelihood's pull, as sum_k coef_k log w_k.
    if process and K > 1:
        tail = 0.0  # sum of the likelihood's coefficients of the components after k
        for k in range(K - 1, -1, -1):
            if k < K - 1:
                u = x[k]
                s = 1.0 / (1.0 + math.exp(-u))
                log_s, log_1ms = -_softplus(-u), -_softplus(u)
                # Beta(1, c) and the log-odds Jacobian: log c + c log(1 - s) + log s.
                total += math.log(c) + c * log_1ms + log_s
                grad[k] = (1.0 + g_log_w[k]) * (1.0 - s) - (c + tail) * s
            tail += g_log_w[k]
    else:
        # Dirichlet(c) and the simplex Jacobian: lgamma(Kc) - K lgamma(c) + log K + c sum log w.
        total += math.lgamma(K * c) - K * math.lgamma(c) + math.log(K)
        coef_sum = 0.0
        for k in range(K):
            total += c * log_w[k]
            coef_sum += c + g_log_w[k]
        g_last = (c + g_log_w[K - 1]) - math.exp(log_w[K - 1]) * coef_sum
        for k in range(K - 1):
            grad[k] = (c + g_log_w[k]) - math.exp(log_w[k]) * coef_sum - g_last

    # Means: Normal(mean_loc, mean_scale) prior.
    for k in range(K):
        for d in range(D):
            z = (means[k, d] - mean_loc[d]) / mean_scale[d]
            total -= 0.5 * z * z + math.log(mean_scale[d]) + _HALF_LOG_2PI
            g_means[k, d] -= z / mean_scale[d]
    if ordered:
        after = 0.0  # d logp / d means_j summed over j >= k
        for k in range(K - 1, 0, -1):
            after += g_means[k, 0]
            total += x[mean_start + k]  # Jacobian of the gaps
            grad[mean_start + k] = math.exp(x[mean_start + k]) * after + 1.0
        grad[mean_start] = after + g_means[0, 0]
    else:
        for k in range(K):
            for d in range(D):
                grad[mean_start + k * D + d] = g_means[k, d]

    # Scales: Gamma(2, 2 / scale_prior) on each standard deviation, log-transformed.
    prior_mean = 0.0
    for d in range(D):
        prior_mean += scale_prior[d] / D
    for i in range(rows * columns):
        grad[scale_start + i] = 0.0
    for k in range(K):
        for d in range(D):
            i = (k if rows > 1 else 0) * columns + (d if columns > 1 else 0)
            sd = math.exp(x[scale_start + i])
            # Rounding: the likelihood sees sqrt(sd^2 + h^2 / 12).
            grad[scale_start + i] += g_sigmas[k, d] * sd * sd / sigmas[k, d]
    for i in range(rows * columns):
        v = x[scale_start + i]
        beta = 2.0 / (scale_prior[i % columns] if columns == D else prior_mean)
        total += 2.0 * math.log(beta) + 2.0 * v - beta * math.exp(v)
        grad[scale_start + i] += 2.0 - beta * math.exp(v)
    return total


@numba.njit(nogil=True)
def _expand(x, process, ordered, tied, spherical, n_features):
    """The constrained values at ``x``: weights (K,), sticks (K - 1,), means (K, D), scales."""
    K, rows, columns = _sizes(x.shape[0], n_features, tied, spherical)
    K = max(K, 1)
    log_w = np.empty(K)
    _log_weights(x, K, process, log_w)
    sticks = np.empty(K - 1)
    for k in range(K - 1):
        sticks[k] = 1.0 / (1.0 + math.exp(-x[k]))
    means = np.empty((K, n_features))
    _means(x, K - 1, K, n_features, ordered, means)
    start = K - 1 + K * n_features
    scales = np.empty(rows * columns)
    for i in range(rows * columns):
        scales[i] = math.exp(x[start + i])
    return np.exp(log_w), sticks, means, scales


GaussianKernel.logp = staticmethod(_logp)
GaussianKernel.expand = staticmethod(_expand)
