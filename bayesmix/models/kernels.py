"""Whole log-densities of mixture models as single numba functions.

nutpie's numba backend compiles the PyTensor graph of a model's log-density: about 80
small operations (priors, transforms, Jacobians, their gradients) around the fused
likelihood, which numba compiles one by one for about 20 s for every new model structure
(every K) on a machine. For the model of ``gaussian.build_gaussian_mixture`` with
diagonal, spherical or one-feature scales (``GaussianKernel``) and the mixture of normal
linear regressions of ``regression.build_regression_mixture`` (``RegressionKernel``),
this module computes the same log-density and gradient, in the same unconstrained
coordinates, in one function whose sizes (K, D) are run-time values: numba compiles it
once per machine and every K and D reuses it.

``compile_pymc_model`` (``bayesmix._nutpie_numba``) uses it only after checking it
against PyMC's own log-density and gradient at a starting point; the PyMC model stays
the definition.

Unconstrained coordinates of the weights: the Dirichlet's simplex coordinates ``z``
(K - 1; weights = softmax([z, -sum z])), or the process's stick log-odds ``u`` (K - 1;
sticks = sigmoid(u)). Standard deviations are log-transformed, ordered means are the
first mean and the log gaps (PyMC's transforms).

A kernel object tells ``bayesmix._nutpie_numba.compile_pymc_model`` what it needs:
``logp(x, grad, *flags, *data)`` (returns the log-density, writes the gradient),
``expand(x, *flags, X)`` (a tuple of the constrained values), ``expand_index(name)``
(where in that tuple variable ``name`` is, as source: ``"[0]"``), ``flags``,
``data_names`` (the model's data containers ``logp`` reads, in order; ``np.…``
placeholders where a variant reads none), ``names(shapes)`` (the names nutpie gives
the point's parts and then the constrained variables, given each variable's shape).
"""

import math

import numba
import numpy as np

from bayesmix.models.fused import _BLOCK, _JIT, _exp, _exp_nonpositive, _kernel, _log_positive
from bayesmix.models.fused_mvn import _kernel as _fused_mvn_kernel
from bayesmix.models.special import Z_FAR, half_square
from bayesmix.models.special import digamma as _digamma

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _weights_names(process, n_components):
    """The weights' coordinates and their constrained variable, or none (``process`` None)."""
    if process is None:
        return [], []
    if process and n_components > 1:
        return ["sticks_logodds__"], ["sticks"]
    return ["weights_simplex__"], ["weights"]


class _Kernel:
    """What every kernel shares: its functions, flags and the place of its expanded values."""

    expand_outputs = ()
    # The model data ``expand`` reads after its flags (as ``data_names``).
    expand_data_names = ("X",)

    def __init__(self, logp, expand, flags):
        self.logp, self.expand, self.flags = logp, expand, flags

    def expand_index(self, name):
        return f"[{self.expand_outputs.index(name)}]"

    def expand_parts(self, expanded):
        """Source of the arrays that fill the trace's variables ``expanded``, in order."""
        return [f"values{self.expand_index(name)}" for name in expanded]


class GaussianKernel(_Kernel):
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

    data_names = ("X", "sample_weight", "weight_concentration", "mean_loc", "mean_scale", "scale_prior", "resolution")

    def __init__(self, process=False, ordered=False, tied=False, spherical=False):
        super().__init__(_gaussian_logp, _gaussian_expand, (int(process), int(ordered), int(tied), int(spherical)))
        self.expand_outputs = ("weights", "sticks", "means", "sigma" if tied else "sigmas")

    def names(self, shapes):
        """nutpie's names of the point's parts, then of the constrained variables."""
        process, ordered, tied, _ = self.flags
        K = shapes["weights"][0] if "weights" in shapes else 0
        weights, weights_expanded = _weights_names(process, K)
        scales = "sigma" if tied else "sigmas"
        free = [*weights, "means_ordered__" if ordered else "means", f"{scales}_log__"]
        if process and K > 1:  # the weights are a deterministic of the sticks: last
            return [*free, "sticks", scales, "weights"]
        return [*free, *weights_expanded, *(["means"] if ordered else []), scales]


# Response families of the regression kernel, and the names of their dispersion.
_FAMILY_CODES = {"normal": 0, "poisson": 1, "negative_binomial": 2, "binomial": 3, "bernoulli": 3, "gamma": 4}
_DISPERSION_NAMES = {"normal": "sigma", "negative_binomial": "alpha", "gamma": "shape"}


class RegressionKernel(_Kernel):
    """A mixture of regressions (normal or GLM, see ``bayesmix._glm``) without gating.

    Parameters
    ----------
    process : bool
        Stick-breaking (Dirichlet process) weights instead of a Dirichlet distribution.
    fit_intercept : bool
        Whether the regressions have intercepts.
    family : str
        "normal" or one of ``bayesmix._glm.GLM_FAMILIES``.
    """

    def __init__(self, process=False, fit_intercept=True, family="normal"):
        super().__init__(_regression_logp, _regression_expand, (int(process), int(fit_intercept), _FAMILY_CODES[family]))
        self.dispersion = _DISPERSION_NAMES.get(family)
        self.expand_outputs = ("weights", "sticks", self.dispersion or "dispersion")
        # The data each family's graph reads; a placeholder where it reads none.
        normal = family == "normal"
        self.data_names = (
            "X", "y", "sample_weight", "weight_concentration", "coef_scale", "intercept_loc", "intercept_scale",
            "scale_prior" if normal else "dispersion_prior" if self.dispersion else "np.ones(())",
            "resolution" if normal else "np.zeros(())",
            "np.zeros(1)" if normal else "offset",
            "trials" if family in ("binomial", "bernoulli") else "np.ones(1)",
        )

    def names(self, shapes):
        """nutpie's names of the point's parts, then of the constrained variables."""
        process = self.flags[0]
        K = shapes["coef"][0] if "coef" in shapes else 0
        weights, weights_expanded = _weights_names(process if K > 1 else None, K)
        dispersion = [self.dispersion] if self.dispersion else []
        free = ["coef", *(["intercept"] if self.flags[1] else []), *[f"{d}_log__" for d in dispersion], *weights]
        if process and K > 1:
            return [*free, *dispersion, "sticks", "weights"]
        return [*free, *dispersion, *weights_expanded]


@numba.njit(inline="always")
def _softplus(u):
    return max(u, 0.0) + math.log1p(math.exp(-abs(u)))


@numba.njit(inline="always")
def _log_weights(x, start, K, process, log_w):
    """Fill ``log_w`` (K,) from the weights' coordinates ``x[start:start + K - 1]``."""
    if process:
        remaining = 0.0  # log of the stick left before component k
        for k in range(K - 1):
            u = x[start + k]
            log_w[k] = remaining - _softplus(-u)
            remaining -= _softplus(u)
        log_w[K - 1] = remaining
    else:
        last = 0.0
        for k in range(K - 1):
            last -= x[start + k]
        largest = last
        for k in range(K - 1):
            largest = max(largest, x[start + k])
        total = math.exp(last - largest)
        for k in range(K - 1):
            total += math.exp(x[start + k] - largest)
        lse = largest + math.log(total)
        for k in range(K - 1):
            log_w[k] = x[start + k] - lse
        log_w[K - 1] = last - lse


@numba.njit(inline="always")
def _weights_prior(x, start, K, process, c, log_w, g_log_w, grad):
    """Log prior and Jacobian of the weights' coordinates; their gradient to ``grad``.

    ``g_log_w`` is the likelihood's gradient with respect to the log-weights.
    """
    total = 0.0
    if process and K > 1:
        tail = 0.0  # the likelihood's pull on the components after k
        for k in range(K - 1, -1, -1):
            if k < K - 1:
                u = x[start + k]
                s = 1.0 / (1.0 + math.exp(-u))
                # Beta(1, c) and the log-odds Jacobian: log c + c log(1 - s) + log s.
                total += math.log(c) - c * _softplus(u) - _softplus(-u)
                grad[start + k] = (1.0 + g_log_w[k]) * (1.0 - s) - (c + tail) * s
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
            grad[start + k] = (c + g_log_w[k]) - math.exp(log_w[k]) * coef_sum - g_last
    return total


@numba.njit(inline="always")
def _sticks(x, start, K):
    sticks = np.empty(K - 1)
    for k in range(K - 1):
        sticks[k] = 1.0 / (1.0 + math.exp(-x[start + k]))
    return sticks


@numba.njit(inline="always")
def _scale_prior(v, scale):
    """Gamma(2, 2 / scale) on exp(v) with the log Jacobian, and its derivative in v."""
    beta = 2.0 / scale
    return 2.0 * math.log(beta) + 2.0 * v - beta * math.exp(v), 2.0 - beta * math.exp(v)


@numba.njit(inline="always")
def _normal_prior(value, loc, scale):
    """log Normal(value | loc, scale) and its derivative in value."""
    z = (value - loc) / scale
    return -0.5 * z * z - math.log(scale) - _HALF_LOG_2PI, -z / scale


@numba.njit(inline="always")
def _gaussian_sizes(dim, n_features, tied, spherical):
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
def _means(x, start, K, D, ordered, means):
    for k in range(K):
        for d in range(D):
            if not ordered:
                means[k, d] = x[start + k * D + d]
            elif k == 0:
                means[0, 0] = x[start]
            else:
                means[k, 0] = means[k - 1, 0] + math.exp(x[start + k])


# Not cached on their own: the callbacks that link them in are (their machine code once).
@numba.njit(nogil=True, **_JIT)
def _gaussian_logp(x, grad, process, ordered, tied, spherical, X, sample_weight, concentration, mean_loc, mean_scale, scale_prior, resolution):
    """Log-density of the Gaussian mixture at the point ``x``; its gradient goes to ``grad``.

    The point: weights' coordinates (K - 1), means (K x D, or first mean and log gaps),
    log standard deviations (K x D, K x 1 spherical, 1 tied).
    """
    D = X.shape[1]
    K, rows, columns = _gaussian_sizes(x.shape[0], D, tied, spherical)
    if K < 0:
        return np.nan
    log_w = np.empty(K)
    _log_weights(x, 0, K, process, log_w)
    mean_start = K - 1
    means = np.empty((K, D))
    _means(x, mean_start, K, D, ordered, means)
    scale_start = mean_start + K * D
    sigmas = np.empty((K, D))
    for k in range(K):
        for d in range(D):
            v = x[scale_start + (k if rows > 1 else 0) * columns + (d if columns > 1 else 0)]
            # Rounding: the likelihood sees sqrt(sd^2 + h^2 / 12).
            sigmas[k, d] = math.sqrt(math.exp(2.0 * v) + resolution[d] ** 2 / 12.0)
    total_, g_log_w, g_means, g_sigmas = _kernel(X, sample_weight, log_w, means, sigmas)
    total = total_[()] + _weights_prior(x, 0, K, process, concentration[()], log_w, g_log_w, grad)

    for k in range(K):
        for d in range(D):
            value, slope = _normal_prior(means[k, d], mean_loc[d], mean_scale[d])
            total += value
            g_means[k, d] += slope
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

    prior_mean = 0.0
    for d in range(D):
        prior_mean += scale_prior[d] / D
    for i in range(rows * columns):
        grad[scale_start + i] = 0.0
    for k in range(K):
        for d in range(D):
            i = (k if rows > 1 else 0) * columns + (d if columns > 1 else 0)
            sd = math.exp(x[scale_start + i])
            grad[scale_start + i] += g_sigmas[k, d] * sd * sd / sigmas[k, d]
    for i in range(rows * columns):
        value, slope = _scale_prior(x[scale_start + i], scale_prior[i % columns] if columns == D else prior_mean)
        total += value
        grad[scale_start + i] += slope
    return total


@numba.njit(nogil=True)
def _gaussian_expand(x, process, ordered, tied, spherical, X):
    """Weights (K,), sticks (K - 1,), means (K, D) and standard deviations at ``x``."""
    n_features = X.shape[1]
    K, rows, columns = _gaussian_sizes(x.shape[0], n_features, tied, spherical)
    K = max(K, 1)
    log_w = np.empty(K)
    _log_weights(x, 0, K, process, log_w)
    means = np.empty((K, n_features))
    _means(x, K - 1, K, n_features, ordered, means)
    start = K - 1 + K * n_features
    return np.exp(log_w), _sticks(x, 0, K), means, np.exp(x[start : start + rows * columns])


@numba.njit(inline="always")
def _regression_sizes(dim, n_features, fit_intercept, has_dispersion):
    """K from the length of the point (coef, intercept, log dispersion, weights); -1 if none fits."""
    per_component = n_features + fit_intercept + has_dispersion
    if dim == per_component:
        return 1
    K, rest = divmod(dim + 1, per_component + 1)
    return K if rest == 0 and K > 1 else -1


# log(n!) of the counts most data hold, so that a count's costs a load, not a lgamma.
_LOG_FACTORIALS = np.array([math.lgamma(n + 1.0) for n in range(4096)])


@numba.njit(inline="always")
def _log_factorial(v):
    if 0.0 <= v < 4096.0 and v == math.floor(v):
        return _LOG_FACTORIALS[int(v)]
    return math.lgamma(v + 1.0)


@numba.njit(inline="always")
def _response_constant(family, y, trials):
    """The part of a row's log-density that is the same in every component."""
    if family == 0:
        return -_HALF_LOG_2PI
    if family == 3:
        return _log_factorial(trials) - _log_factorial(y) - _log_factorial(trials - y)
    if family == 4:
        return -math.log(y)
    return -_log_factorial(y)


@numba.njit(inline="always")
def _response_logp(family, y, eta, trials, dispersion, log_dispersion):
    """log p(y | eta) of one family, less ``_response_constant``, and its derivatives
    in eta and in the dispersion.

    The dispersion is the normal's standard deviation, the negative binomial's alpha or
    the gamma's shape; the densities are PyMC's.
    """
    if family == 0:  # normal, identity link
        z = (y - eta) / dispersion
        return -0.5 * z * z - log_dispersion, z / dispersion, (z * z - 1.0) / dispersion
    if family == 1:  # poisson, log link
        rate = math.exp(eta)
        return y * eta - rate, y - rate, 0.0
    if family == 3:  # binomial, logit link
        return y * eta - trials * _softplus(eta), y - trials / (1.0 + math.exp(-eta)), 0.0
    mean = math.exp(eta)
    a = dispersion
    if family == 2:  # negative binomial: log(mean + alpha) by log-add-exp
        top = max(eta, log_dispersion)
        log_total = top + math.log1p(math.exp(-abs(eta - log_dispersion)))
        value = math.lgamma(y + a) - math.lgamma(a) + y * (eta - log_total) + a * (log_dispersion - log_total)
        share = 1.0 / (1.0 + math.exp(eta - log_dispersion))  # alpha / (mean + alpha)
        d_a = _digamma(y + a) - _digamma(a) + (log_dispersion - log_total) + (mean - y) * share / a
        return value, (y - mean) * share, d_a
    # gamma with mean exp(eta) and shape a
    log_y = math.log(y)
    ratio = y * math.exp(-eta)
    value = a * (log_dispersion - eta) - math.lgamma(a) + a * log_y - a * ratio
    return value, a * (ratio - 1.0), (log_dispersion - eta) + 1.0 - _digamma(a) + log_y - ratio


@numba.njit(inline="always", **_JIT)
def _response_block(family, k, b, eta, yb, nb, dispersion, log_dispersion, joint, d_eta, d_dispersion):
    """``_response_logp`` of component ``k`` for a block of ``b`` rows, into row ``k`` of
    ``joint``, ``d_eta`` and ``d_dispersion``; the normal, Poisson and binomial families in
    arithmetic that runs on SIMD lanes, the others one row at a time."""
    if family == 0:
        inverse = 1.0 / dispersion[k]
        for i in range(b):
            z = (yb[i] - eta[i]) * inverse
            joint[k, i] = -0.5 * z * z - log_dispersion[k]
            d_eta[k, i] = z * inverse
            d_dispersion[k, i] = (z * z - 1.0) * inverse
    elif family == 1:
        for i in range(b):
            rate = _exp(eta[i])
            joint[k, i] = yb[i] * eta[i] - rate
            d_eta[k, i] = yb[i] - rate
    elif family == 3:
        for i in range(b):
            e = _exp_nonpositive(-abs(eta[i]))
            softplus = max(eta[i], 0.0) + _log_positive(1.0 + e)
            p = (1.0 if eta[i] >= 0.0 else e) / (1.0 + e)  # 1 / (1 + exp(-eta))
            joint[k, i] = yb[i] * eta[i] - nb[i] * softplus
            d_eta[k, i] = yb[i] - nb[i] * p
    else:
        for i in range(b):
            joint[k, i], d_eta[k, i], d_dispersion[k, i] = _response_logp(
                family, yb[i], eta[i], nb[i], dispersion[k], log_dispersion[k]
            )


@numba.njit(inline="always")
def _regression_buffers(K, D):
    """Scratch arrays of ``_block_log_joint``: xb, yb, nb, eta, largest, joint, d_eta, d_dispersion."""
    return (
        np.empty((D, _BLOCK)), np.empty(_BLOCK), np.empty(_BLOCK), np.empty(_BLOCK), np.empty(_BLOCK),
        np.empty((K, _BLOCK)), np.empty((K, _BLOCK)), np.zeros((K, _BLOCK)),
    )


# Not inlined: its vectorized loops are compiled once and linked into the three kernels
# that call it (inlined, they cost 5.7 s more compiling on an empty cache; same speed).
# Cached: the post-fit kernels, compiled per family (``for_family``), load the sampler's copy.
@numba.njit(cache=True, **_JIT)
def _block_log_joint(
    family, start, X, y, offset, trials, log_w, intercept, coef, dispersion, log_dispersion,
    xb, yb, nb, eta, largest, joint, d_eta, d_dispersion,
):
    """Rows ``start:start + b`` (``b`` returned): ``joint[k, i]`` = log w_k + log p(y | eta_k)
    less ``_response_constant``, with derivatives ``d_eta`` and ``d_dispersion``; ``largest[i]``
    the largest over k; ``xb`` the rows transposed, ``yb`` the responses, ``nb`` the trials."""
    K, D = coef.shape
    b = min(_BLOCK, X.shape[0] - start)
    has_offset = family != 0
    has_trials = family == 3
    for d in range(D):
        for i in range(b):
            xb[d, i] = X[start + i, d]
    for i in range(b):
        yb[i] = y[start + i]
        nb[i] = trials[start + i] if has_trials else 1.0
        largest[i] = -np.inf
    for k in range(K):
        for i in range(b):
            eta[i] = intercept[k] + offset[start + i] if has_offset else intercept[k]
        for d in range(D):
            c = coef[k, d]
            for i in range(b):
                eta[i] += c * xb[d, i]
        _response_block(family, k, b, eta, yb, nb, dispersion, log_dispersion, joint, d_eta, d_dispersion)
        for i in range(b):
            joint[k, i] += log_w[k]
            largest[i] = max(largest[i], joint[k, i])
    return b


@numba.njit(inline="always", **_JIT)
def _block_normalize(K, b, largest, joint, norm):
    """``joint[k, i]`` becomes exp(joint - largest) and ``norm[i]`` their sum over k."""
    for i in range(b):
        norm[i] = 0.0
    for k in range(K):
        for i in range(b):
            shift = largest[i] if largest[i] > -np.inf else 0.0
            joint[k, i] = _exp_nonpositive(joint[k, i] - shift)
            norm[i] += joint[k, i]


@numba.njit(inline="always", **_JIT)
def _regression_rows(
    family, X, y, sample_weight, offset, trials, log_w, intercept, coef, dispersion, log_dispersion,
    g_coef, g_intercept, g_log_w, g_dispersion,
):
    """Sum over rows of sample weight x log sum_k w_k p(y | eta_k), a block of rows at a time.

    Adds the gradient in the coefficients (K, D), intercepts, log-weights and dispersion
    to ``g_coef``, ``g_intercept``, ``g_log_w`` and ``g_dispersion``. A row no component
    gives positive density contributes -inf and no gradient.
    """
    K, D = coef.shape
    xb, yb, nb, eta, largest, joint, d_eta, d_dispersion = _regression_buffers(K, D)
    scale = np.empty(_BLOCK)
    total = 0.0
    for start in range(0, X.shape[0], _BLOCK):
        b = _block_log_joint(
            family, start, X, y, offset, trials, log_w, intercept, coef, dispersion, log_dispersion,
            xb, yb, nb, eta, largest, joint, d_eta, d_dispersion,
        )
        _block_normalize(K, b, largest, joint, scale)
        for i in range(b):
            w = sample_weight[start + i]
            possible = largest[i] > -np.inf
            # Rows of weight 0 count for nothing, even where their density is 0.
            if w != 0.0:
                total += w * (largest[i] + _log_positive(scale[i]) if possible else -np.inf)
                total += w * _response_constant(family, yb[i], nb[i])
            scale[i] = w / scale[i] if possible else 0.0
        for k in range(K):
            g_w = 0.0
            g_i = 0.0
            g_a = 0.0
            for i in range(b):
                r = joint[k, i] * scale[i]  # sample weight x responsibility
                g_w += r
                eta[i] = r * d_eta[k, i] if r != 0.0 else 0.0  # d/d eta_k, reusing eta
                g_i += eta[i]
                g_a += r * d_dispersion[k, i] if r != 0.0 else 0.0
            g_log_w[k] += g_w
            g_intercept[k] += g_i
            g_dispersion[k] += g_a
            for d in range(D):
                acc = 0.0
                for i in range(b):
                    acc += eta[i] * xb[d, i]
                g_coef[k, d] += acc
    return total


@numba.njit(nogil=True, **_JIT)
def _regression_logp(
    x, grad, process, fit_intercept, family,
    X, y, sample_weight, concentration, coef_scale, intercept_loc, intercept_scale,
    dispersion_prior, resolution, offset, trials,
):
    """Log-density of the mixture of regressions at ``x``; its gradient goes to ``grad``.

    The point: coef (K x D), intercepts (K, with ``fit_intercept``), log dispersion
    (K; not for poisson and binomial), weights' coordinates (K - 1, for K > 1).
    """
    D = X.shape[1]
    has_dispersion = family in (0, 2, 4)
    K = _regression_sizes(x.shape[0], D, fit_intercept, has_dispersion)
    if K < 0:
        return np.nan
    intercept_start = K * D
    dispersion_start = intercept_start + K * fit_intercept
    weight_start = dispersion_start + K * has_dispersion
    log_w = np.zeros(K)
    if K > 1:
        _log_weights(x, weight_start, K, process, log_w)
    dispersion = np.ones(K)
    log_dispersion = np.zeros(K)
    slope_dispersion = np.zeros(K)  # d dispersion / d its coordinate
    if has_dispersion:
        noise = resolution[()] ** 2 / 12.0 if family == 0 else 0.0
        for k in range(K):
            sd = math.exp(x[dispersion_start + k])
            # Rounding (normal only): the likelihood sees sqrt(sd^2 + h^2 / 12).
            dispersion[k] = math.sqrt(sd * sd + noise) if family == 0 else sd
            log_dispersion[k] = math.log(dispersion[k])
            slope_dispersion[k] = sd * sd / dispersion[k]
    for i in range(x.shape[0]):
        grad[i] = 0.0
    g_log_w = np.zeros(K)
    g_dispersion = np.zeros(K)
    coef = x[: K * D].reshape((K, D))
    intercept = x[intercept_start:dispersion_start] if fit_intercept else np.zeros(K)
    g_coef = grad[: K * D].reshape((K, D))
    g_intercept = grad[intercept_start:dispersion_start] if fit_intercept else np.zeros(K)
    total = _regression_rows(
        family, X, y, sample_weight, offset, trials, log_w, intercept, coef, dispersion, log_dispersion,
        g_coef, g_intercept, g_log_w, g_dispersion,
    )
    for k in range(K):
        for d in range(D):
            value, slope = _normal_prior(x[k * D + d], 0.0, coef_scale[d])
            total += value
            grad[k * D + d] += slope
        if fit_intercept:
            value, slope = _normal_prior(x[intercept_start + k], intercept_loc[()], intercept_scale[()])
            total += value
            grad[intercept_start + k] += slope
        if has_dispersion:
            value, slope = _scale_prior(x[dispersion_start + k], dispersion_prior[()])
            total += value
            grad[dispersion_start + k] = g_dispersion[k] * slope_dispersion[k] + slope
    if K > 1:
        total += _weights_prior(x, weight_start, K, process, concentration[()], log_w, g_log_w, grad)
    return total


@numba.njit(nogil=True, cache=True, **_JIT)
def regression_row_log_likelihood(family, X, y, offset, trials, log_weights, intercept, coef, dispersion, out):
    """Each row's log-density per draw, summed over components: ``out`` (S, N).

    Constant weights (no gating); ``family`` a code of ``_FAMILY_CODES``. Per draw ``s``:
    ``log_weights`` (S, K), ``intercept`` (S, K), ``coef`` (S, K, D) and ``dispersion``
    (S, K: the normal's standard deviation, rounding included, the negative binomial's
    alpha or the gamma's shape; ignored by the other families). ``offset`` is added to
    the linear predictor of the GLM families. The sampler's pass over the rows, without
    gradients.
    """
    n_draws, K = log_weights.shape
    xb, yb, nb, eta, largest, joint, d_eta, d_dispersion = _regression_buffers(K, X.shape[1])
    norm = np.empty(_BLOCK)
    for s in range(n_draws):
        log_dispersion = np.log(dispersion[s])
        for start in range(0, X.shape[0], _BLOCK):
            b = _block_log_joint(
                family, start, X, y, offset, trials, log_weights[s], intercept[s], coef[s], dispersion[s],
                log_dispersion, xb, yb, nb, eta, largest, joint, d_eta, d_dispersion,
            )
            _block_normalize(K, b, largest, joint, norm)
            for i in range(b):
                constant = _response_constant(family, yb[i], nb[i])
                possible = largest[i] > -np.inf
                out[s, start + i] = largest[i] + _log_positive(norm[i]) + constant if possible else -np.inf


@numba.njit(nogil=True, cache=True, **_JIT)
def regression_log_joint(family, X, y, offset, trials, log_weights, intercept, coef, dispersion, out):
    """log w_k + log p(y_n | component k) per draw, row and component: ``out`` (S, N, K).

    The arguments are those of ``regression_row_log_likelihood``. The normal family's
    terms stay finite for every finite row (``special.half_square``): a row far from
    every line gets component probabilities rather than NaN.
    """
    n_draws, K = log_weights.shape
    xb, yb, nb, eta, largest, joint, d_eta, d_dispersion = _regression_buffers(K, X.shape[1])
    for s in range(n_draws):
        log_dispersion = np.log(dispersion[s])
        for start in range(0, X.shape[0], _BLOCK):
            b = _block_log_joint(
                family, start, X, y, offset, trials, log_weights[s], intercept[s], coef[s], dispersion[s],
                log_dispersion, xb, yb, nb, eta, largest, joint, d_eta, d_dispersion,
            )
            for i in range(b):
                constant = _response_constant(family, yb[i], nb[i])
                for k in range(K):
                    value = joint[k, i]
                    if family == 0 and value < -0.4 * Z_FAR * Z_FAR:  # |z| near or past Z_FAR
                        line = intercept[s, k]
                        for d in range(X.shape[1]):
                            line += coef[s, k, d] * X[start + i, d]
                        z = (yb[i] - line) / dispersion[s, k]
                        value = half_square(z) - log_dispersion[k] + log_weights[s, k]
                    out[s, start + i, k] = value + constant


def for_family(kernel, family, *args):
    """``kernel(family, *args)`` compiled with ``family`` a constant, as in the sampler.

    For ``regression_row_log_likelihood`` and ``regression_log_joint``: compiled for
    one family they share the sampler's cached pass over the rows (``_block_log_joint``)
    and leave the other families' code out. ``family`` is a code of ``_FAMILY_CODES``.
    """
    signature = (numba.types.literal(family), *(numba.typeof(a) for a in args))
    return kernel.compile(signature)(family, *args)


@numba.njit(nogil=True)
def _regression_expand(x, process, fit_intercept, family, X):
    """Weights (K,), sticks (K - 1,) and the dispersion (K,; empty without) at ``x``."""
    D = X.shape[1]
    has_dispersion = family in (0, 2, 4)
    K = max(_regression_sizes(x.shape[0], D, fit_intercept, has_dispersion), 1)
    dispersion_start = K * D + K * fit_intercept
    weight_start = dispersion_start + K * has_dispersion
    log_w = np.zeros(K)
    if K > 1:
        _log_weights(x, weight_start, K, process, log_w)
    return np.exp(log_w), _sticks(x, weight_start, K), np.exp(x[dispersion_start:weight_start])


class FullCovarianceKernel(_Kernel):
    """The Gaussian mixture with full (or tied) covariances under LKJ Cholesky priors.

    Each Cholesky factor is PyMC's ``LKJCholeskyCov`` (packed rows, log-transformed
    diagonal) with ``Gamma(2, 2 / scale_prior)`` standard deviations and LKJ
    concentration ``eta``.

    Parameters
    ----------
    process : bool
        Stick-breaking (Dirichlet process) weights instead of a Dirichlet distribution.
    tied : bool
        One covariance for every component.
    eta : float
        The LKJ concentration.
    rounded : bool
        The likelihood adds Sheppard's ``resolution**2 / 12`` to the covariances'
        diagonals (the model's ``rounded``).
    """

    data_names = ("X", "sample_weight", "weight_concentration", "mean_loc", "mean_scale", "scale_prior", "resolution")

    def __init__(self, process=False, tied=False, eta=2.0, rounded=False):
        super().__init__(_full_logp, _full_expand, (int(process), int(tied), float(eta), int(rounded)))

    def names(self, shapes):
        process, tied, _, _ = self.flags
        K = shapes["weights"][0] if "weights" in shapes else 0
        weights, weights_expanded = _weights_names(process, K)
        chols = ["chol"] if tied else [f"chol_{k}" for k in range(K)]
        free = [*weights, "means", *[f"{chol}_cholesky-cov-packed__" for chol in chols]]
        covariances = "covariance" if tied else "covariances"
        if process and K > 1:
            return [*free, "sticks", *chols, "weights", covariances]
        return [*free, *weights_expanded, *chols, covariances]

    def expand_index(self, name):
        if name.startswith("chol"):
            return "[2][0]" if name == "chol" else f"[2][{int(name.rsplit('_', 1)[1])}]"
        return {"weights": "[0]", "sticks": "[1]", "covariances": "[3]", "covariance": "[3][0]"}[name]

    def expand_parts(self, expanded):
        """The factors' packed rows as one array: the callback's source is the same for every K.

        The trace holds ``chol_0, ..., chol_{K-1}`` (or ``chol``) one after the other, as
        ``_full_expand`` stacks their rows.
        """
        parts = []
        for name in expanded:
            if name.startswith("chol"):
                part = "values[2]"
            elif name.startswith("covariance"):
                part = "values[3]"
            else:
                part = f"values{self.expand_index(name)}"
            if not parts or parts[-1] != part:
                parts.append(part)
        return parts


@numba.njit(inline="always")
def _full_sizes(dim, D, tied):
    """(K, number of Cholesky factors) from the length of the point; K = -1 if none fits."""
    packed = D * (D + 1) // 2
    if tied:
        K, rest = divmod(dim + 1 - packed, 1 + D)
        factors = 1
    else:
        K, rest = divmod(dim + 1, 1 + D + packed)
        factors = K
    return (K if rest == 0 and K >= 1 else -1), factors


@numba.njit(inline="always")
def _lkj_normalizing_constant(eta, n):
    """PyMC's ``_lkj_normalizing_constant(eta, n)``."""
    if eta == 1.0:
        result = 0.0
        for j in range(1, (n - 1) // 2 + 1):
            result += math.lgamma(2.0 * j)
        if n % 2 == 1:
            result += 0.25 * (n**2 - 1) * math.log(math.pi) - 0.25 * (n - 1) ** 2 * math.log(2.0)
            result -= (n - 1) * math.lgamma((n + 1) // 2)
        else:
            result += 0.25 * n * (n - 2) * math.log(math.pi) + 0.25 * (3 * n**2 - 4 * n) * math.log(2.0)
            result += n * math.lgamma(n / 2) - (n - 1) * math.lgamma(n)
        return result
    result = -(n - 1) * math.lgamma(eta + 0.5 * (n - 1))
    for k in range(1, n):
        result += 0.5 * k * math.log(math.pi) + math.lgamma(eta + 0.5 * (n - 1 - k))
    return result


@numba.njit(inline="always")
def _unpack_cholesky(x, start, D, L):
    """The lower-triangular factor from its packed rows, the diagonal log-transformed."""
    p = start
    for i in range(D):
        for j in range(D):
            L[i, j] = 0.0
        for j in range(i + 1):
            L[i, j] = math.exp(x[p]) if j == i else x[p]
            p += 1


@numba.njit(inline="always")
def _add_rounding(L, resolution, out):
    """``out``: the Cholesky factor of ``L L^T + diag(resolution**2 / 12)`` (Sheppard)."""
    D = L.shape[0]
    cov = L @ L.T
    for d in range(D):
        cov[d, d] += resolution[d] ** 2 / 12.0
    out[:] = np.linalg.cholesky(cov)


@numba.njit(inline="always")
def _cholesky_backward(M, g_M, L):
    """Gradient with respect to ``L`` of ``f(M)``, ``M = chol(L L^T + R)`` for a constant
    ``R``, from ``g_M`` (lower), the gradient of ``f`` with respect to ``M``.

    With ``S = M^-T Phi(M^T g_M) M^-1`` (``Phi``: the lower triangle, diagonal halved),
    ``df = tr(S^T dSigma)`` (Murray 2016, "Differentiation of the Cholesky
    decomposition"), and ``dSigma = dL L^T + L dL^T`` gives ``(S + S^T) L``.
    """
    D = M.shape[0]
    C = M.T @ np.tril(g_M)
    for i in range(D):
        C[i, i] *= 0.5
        for j in range(i + 1, D):
            C[i, j] = 0.0
    M_inv = np.linalg.inv(M)
    S = M_inv.T @ C @ M_inv
    return np.tril((S + S.T) @ L)


@numba.njit(nogil=True, **_JIT)
def _full_logp(x, grad, process, tied, eta, rounded, X, sample_weight, concentration, mean_loc, mean_scale, scale_prior, resolution):
    """Log-density of the full- or tied-covariance mixture at ``x``; gradient to ``grad``.

    The point: weights' coordinates (K - 1), means (K x D), then each Cholesky factor's
    packed rows (D (D + 1) / 2, diagonal on the log scale), one factor if ``tied``.
    """
    D = X.shape[1]
    K, factors = _full_sizes(x.shape[0], D, tied)
    if K < 0:
        return np.nan
    packed = D * (D + 1) // 2
    log_w = np.empty(K)
    _log_weights(x, 0, K, process, log_w)
    mean_start = K - 1
    chol_start = mean_start + K * D
    means = np.empty((K, D))
    for k in range(K):
        for d in range(D):
            means[k, d] = x[mean_start + k * D + d]
    chols = np.empty((K, D, D))
    for k in range(K):
        _unpack_cholesky(x, chol_start + (0 if tied else k * packed), D, chols[k])
    observed = chols  # the factors of the rounded observations' covariances
    if rounded:
        observed = np.empty((K, D, D))
        for k in range(K):
            _add_rounding(chols[k], resolution, observed[k])
    total_, g_log_w, g_means, g_chols = _fused_mvn_kernel(X, sample_weight, log_w, means, observed)
    total = total_[()] + _weights_prior(x, 0, K, process, concentration[()], log_w, g_log_w, grad)
    for k in range(K):
        for d in range(D):
            value, slope = _normal_prior(means[k, d], mean_loc[d], mean_scale[d])
            total += value
            grad[mean_start + k * D + d] = g_means[k, d] + slope
    # LKJCholeskyCov: per row i of a factor, with sd_i its norm and log L_ii = u_ii,
    # (2 eta - 1 + D - i) u_ii + (3 - 2 eta - D) log sd_i - beta_i sd_i + 2 log beta_i.
    norm = _lkj_normalizing_constant(eta, D)
    for f in range(factors):
        L = chols[f]
        g_L = g_chols[f].copy()
        if tied:
            for k in range(1, K):
                for i in range(D):
                    for j in range(i + 1):
                        g_L[i, j] += g_chols[k, i, j]
        if rounded:
            g_L = _cholesky_backward(observed[f], g_L, L)
        total += norm
        p = chol_start + f * packed
        for i in range(D):
            sd2 = 0.0
            for j in range(i + 1):
                sd2 += L[i, j] * L[i, j]
            sd = math.sqrt(sd2)
            beta = 2.0 / scale_prior[i]
            c = 2.0 * eta - 1.0 + D - i
            u_ii = x[p + i]
            total += c * u_ii + (3.0 - 2.0 * eta - D) * math.log(sd) - beta * sd + 2.0 * math.log(beta)
            pull = (3.0 - 2.0 * eta - D) / sd2 - beta / sd  # d (sd terms) / d L_ij, over L_ij
            for j in range(i):
                grad[p + j] = g_L[i, j] + pull * L[i, j]
            grad[p + i] = c + (g_L[i, i] + pull * L[i, i]) * L[i, i]
            p += i + 1
    return total


@numba.njit(nogil=True)
def _full_expand(x, process, tied, eta, rounded, X):
    """Weights (K,), sticks (K - 1,), packed factors (F, P) and covariances (F, D, D)."""
    D = X.shape[1]
    K, factors = _full_sizes(x.shape[0], D, tied)
    K = max(K, 1)
    packed = D * (D + 1) // 2
    log_w = np.empty(K)
    _log_weights(x, 0, K, process, log_w)
    chol_start = K - 1 + K * D
    rows = np.empty((factors, packed))
    covariances = np.empty((factors, D, D))
    L = np.empty((D, D))
    for f in range(factors):
        _unpack_cholesky(x, chol_start + f * packed, D, L)
        p = 0
        for i in range(D):
            for j in range(i + 1):
                rows[f, p] = L[i, j]
                p += 1
        for i in range(D):
            for j in range(D):
                s = 0.0
                for m in range(min(i, j) + 1):
                    s += L[i, m] * L[j, m]
                covariances[f, i, j] = s
    return np.exp(log_w), _sticks(x, 0, K), rows, covariances


# Codes of the families ``MarginalKernel`` knows; its arithmetic takes their parameters
# in their ``Family.params`` order: the location, the scale, (Student-t) the degrees of freedom.
_MARGINAL_FAMILIES = {"normal": 0, "student_t": 1, "laplace": 2}


class MarginalKernel(_Kernel):
    """A one-column ``MarginalMixture`` of normal, Student-t and Laplace components.

    The model of ``marginal.build_marginal_mixture`` with the built-in families'
    priors: locations Normal(mean, 2 sd), scales Gamma(2, 4 / sd) and Student-t degrees
    of freedom Gamma(2, 0.1) (both log-transformed), on the data summaries ``mean``
    and ``sd``; each scale widened by the data's rounding as the families' ``rounding``
    does. The components' layout is an array in the callbacks' source: one compiled
    kernel serves every combination of families and every K.

    Parameters
    ----------
    families : sequence of Family
        Each component's family, in component order (see ``supports``).
    process : bool
        Stick-breaking (Dirichlet process) weights instead of a Dirichlet distribution.
    """

    def __init__(self, families, process=False):
        from bayesmix.models.marginal import family_groups

        super().__init__(_marginal_logp, _marginal_expand, (int(process),))
        self.groups = family_groups(families)  # the model's order of families and parameters
        # One row per component in that order: family code, index of its weight.
        layout = [[_MARGINAL_FAMILIES[family.name], int(k)] for family, components in self.groups for k in components]
        layout_source = f"np.array({layout}, dtype=np.int64)"
        self.data_names = ("X", "sample_weight", "weight_concentration", "resolution", "mean", "sd", layout_source)
        self.expand_data_names = (layout_source,)

    @staticmethod
    def supports(families):
        """Whether the kernel knows every one of ``families`` (``Family`` objects)."""
        from bayesmix.families import BUILTIN_FAMILIES

        return all(family.name in _MARGINAL_FAMILIES and BUILTIN_FAMILIES.get(family.name) is family for family in families)

    def names(self, shapes):
        """nutpie's names of the point's parts, then of the constrained variables."""
        process = self.flags[0]
        K = sum(len(components) for _, components in self.groups)
        weights, weights_expanded = _weights_names(process, K)
        free, positive = [], []
        for family, _ in self.groups:
            location, *others = family.params
            free.append(family.variable(location))
            for param in others:
                free.append(f"{family.variable(param)}_log__")
                positive.append(family.variable(param))
        if process and K > 1:
            return [*weights, *free, "sticks", *positive, "weights"]
        return [*weights, *free, *weights_expanded, *positive]

    def expand_parts(self, expanded):
        """One array: ``_marginal_expand`` returns the values in the trace's order."""
        return ["values"]


@numba.njit(inline="always")
def _marginal_positions(x, layout, positions):
    """Fill ``positions`` (K, 3) with each component's places in ``x``.

    Its location, log scale and log degrees of freedom (-1 if none); False if ``x`` is
    not as long as the layout says.
    """
    K = layout.shape[0]
    start = K - 1
    j = 0
    while j < K:
        code = layout[j, 0]
        n = 0
        while j + n < K and layout[j + n, 0] == code:
            n += 1
        for i in range(n):
            positions[j + i, 0] = start + i
            positions[j + i, 1] = start + n + i
            positions[j + i, 2] = start + 2 * n + i if code == 1 else -1
        start += (3 if code == 1 else 2) * n
        j += n
    return start == x.shape[0]


@numba.njit(nogil=True, **_JIT)
def _marginal_logp(x, grad, process, X, sample_weight, concentration, resolution, mean, sd, layout):
    """Log-density of the ``MarginalKernel`` model at ``x``; its gradient goes to ``grad``.

    The point: weights' coordinates (K - 1), then per family group its locations, log
    scales and (Student-t) log degrees of freedom.
    """
    K = layout.shape[0]
    positions = np.empty((K, 3), dtype=np.int64)
    if not _marginal_positions(x, layout, positions):
        return np.nan
    log_w = np.empty(K)
    _log_weights(x, 0, K, process, log_w)
    h2 = resolution[()] ** 2
    mu, scale, nu = np.empty(K), np.empty(K), np.ones(K)
    constant = np.empty(K)  # log weight plus the row-free part of the log-density
    d_constant_nu = np.zeros(K)
    for j in range(K):
        code = layout[j, 0]
        mu[j] = x[positions[j, 0]]
        raw = math.exp(x[positions[j, 1]])
        # Sheppard's correction: variance h^2 / 12 (the Laplace's variance is 2 b^2).
        scale[j] = math.sqrt(raw * raw + h2 / (24.0 if code == 2 else 12.0))
        if code == 0:
            constant[j] = -math.log(scale[j]) - _HALF_LOG_2PI
        elif code == 1:
            nu[j] = math.exp(x[positions[j, 2]])
            half = 0.5 * nu[j]
            constant[j] = math.lgamma(half + 0.5) - math.lgamma(half) - 0.5 * math.log(nu[j] * math.pi) - math.log(scale[j])
            d_constant_nu[j] = 0.5 * (_digamma(half + 0.5) - _digamma(half)) - 0.5 / nu[j]
        else:
            constant[j] = -math.log(2.0 * scale[j])
        constant[j] += log_w[layout[j, 1]]

    total = 0.0
    g_log_w, g_mu, g_scale, g_nu, mass = np.zeros(K), np.zeros(K), np.zeros(K), np.zeros(K), np.zeros(K)
    a, d_mu, d_scale, d_nu = np.empty(K), np.empty(K), np.empty(K), np.empty(K)
    for n in range(X.shape[0]):
        w = sample_weight[n]
        if w == 0.0:  # rows of weight 0 count for nothing
            continue
        largest = -np.inf
        for j in range(K):
            code = layout[j, 0]
            s = scale[j]
            z = (X[n] - mu[j]) / s
            if code == 0:
                a[j] = constant[j] - 0.5 * z * z
                d_mu[j] = z / s
                d_scale[j] = z * z / s
            elif code == 1:
                q = z * z / nu[j]
                a[j] = constant[j] - 0.5 * (nu[j] + 1.0) * math.log1p(q)
                ratio = (nu[j] + 1.0) / (nu[j] + z * z)
                d_mu[j] = ratio * z / s
                d_scale[j] = ratio * z * z / s
                d_nu[j] = -0.5 * math.log1p(q) + 0.5 * ratio * z * z / nu[j]
            else:
                a[j] = constant[j] - abs(z)
                d_mu[j] = (1.0 if z > 0.0 else (-1.0 if z < 0.0 else 0.0)) / s
                d_scale[j] = abs(z) / s
            largest = max(largest, a[j])
        norm = 0.0
        for j in range(K):
            a[j] = math.exp(a[j] - largest)
            norm += a[j]
        total += w * (largest + math.log(norm))
        for j in range(K):
            r = w * a[j] / norm
            mass[j] += r
            g_mu[j] += r * d_mu[j]
            g_scale[j] += r * d_scale[j]
            if layout[j, 0] == 1:
                g_nu[j] += r * d_nu[j]
    for j in range(K):
        g_log_w[layout[j, 1]] += mass[j]
    total += _weights_prior(x, 0, K, process, concentration[()], log_w, g_log_w, grad)

    for j in range(K):
        value, slope = _normal_prior(mu[j], mean[()], 2.0 * sd[()])
        total += value
        grad[positions[j, 0]] = g_mu[j] + slope
        v = x[positions[j, 1]]
        raw = math.exp(v)
        value, slope = _scale_prior(v, 0.5 * sd[()])
        total += value
        # d scale / d v = raw^2 / scale; the constant's -log(scale) pulls with the mass.
        grad[positions[j, 1]] = (g_scale[j] - mass[j] / scale[j]) * raw * raw / scale[j] + slope
        if layout[j, 0] == 1:
            value, slope = _scale_prior(x[positions[j, 2]], 20.0)  # Gamma(2, 0.1)
            total += value
            grad[positions[j, 2]] = (g_nu[j] + mass[j] * d_constant_nu[j]) * nu[j] + slope
    return total


@numba.njit(nogil=True)
def _marginal_expand(x, process, layout):
    """The trace's constrained values at ``x``, in its order.

    The weights (or the sticks), each family group's scales and degrees of freedom,
    then (process) the weights.
    """
    K = layout.shape[0]
    positions = np.empty((K, 3), dtype=np.int64)
    _marginal_positions(x, layout, positions)
    log_w = np.empty(K)
    _log_weights(x, 0, K, process, log_w)
    sticks = process and K > 1
    # The weights (K) or sticks (K - 1) and weights, and all but the locations past them.
    out = np.empty((K + K - 1 if sticks else K) + x.shape[0] - (K - 1) - K)
    position = 0
    if sticks:
        for k in range(K - 1):
            out[k] = 1.0 / (1.0 + math.exp(-x[k]))
        position = K - 1
    else:
        for k in range(K):
            out[k] = math.exp(log_w[k])
        position = K
    j = 0
    for i in range(K - 1, x.shape[0]):  # the point past the weights: all but the locations positive
        if j < K and i == positions[j, 0]:
            j += 1
        else:
            out[position] = math.exp(x[i])
            position += 1
    if sticks:
        for k in range(K):
            out[position + k] = math.exp(log_w[k])
    return out
