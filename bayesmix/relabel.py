"""Label-switching (relabelling) algorithms for posterior draws of mixtures.

The likelihood of a finite mixture is invariant under permutations of the
component labels, so MCMC draws may visit several labellings (within or
across chains).  This module computes, for every posterior draw, the
permutation of component labels that brings all draws to a common labelling,
and applies it.

Permutation convention
----------------------
All functions use the same convention.  ``perms`` is an integer array of
shape ``(n_samples, K)`` and, for each draw ``s``, ``perms[s, j]`` is the
**old** component index that becomes **new** component ``j``::

    new[s, j] = old[s, perms[s, j]]

The identity permutation is ``np.arange(K)``.  :func:`relabel` returns
permutations of shape ``(n_chains, n_draws, K)`` with the same meaning.

Algorithms
----------
* :func:`sort_permutations` -- identifiability constraint (order by a
  per-component statistic such as the means).
* :func:`stephens_permutations` -- Stephens (2000) Kullback-Leibler
  algorithm on per-draw classification probabilities.
* :func:`ecr_permutations` / :func:`ecr_permutations_from_probs` --
  Papastamoulis & Iliopoulos (2010) equivalence-classes-representatives
  algorithm on per-draw allocations.
* :func:`relabel` -- apply one of the above to an ``arviz.InferenceData``
  posterior; :func:`relabel_diagnostics` summarises the effect.

References
----------
Stephens, M. (2000). Dealing with label switching in mixture models.
JRSS B, 62(4), 795-809.

Papastamoulis, P. and Iliopoulos, G. (2010). An artificial allocations based
solution to the label switching problem in Bayesian analysis of mixtures of
distributions. JCGS, 19(2), 313-331.
"""

import copy
import warnings

import numba
import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import norm

from .diagnostics import max_rhat

__all__ = [
    "apply_permutations",
    "ecr_permutations",
    "ecr_permutations_from_probs",
    "relabel",
    "relabel_diagnostics",
    "sort_permutations",
    "stephens_permutations",
]

_METHODS = ("stephens", "ecr", "sort", "none", None)
_WEIGHT_NAMES = ("weights", "w")
_MEAN_NAMES = ("means", "mu")
_SIGMA_NAMES = ("sigmas", "sigma")


# ---------------------------------------------------------------------------
# Array-level algorithms
# ---------------------------------------------------------------------------
def sort_permutations(values):
    """Permutations that sort each draw's component values in ascending order.

    Parameters
    ----------
    values : array_like, shape (n_samples, K)
        A per-component statistic for every draw (e.g. the means).

    Returns
    -------
    perms : ndarray of int, shape (n_samples, K)
        ``perms[s]`` is ``argsort(values[s])`` (stable sort), so that
        ``apply_permutations(values, perms, axis=1)`` is sorted per row.
    """
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(
            f"values must have shape (n_samples, K), got shape {values.shape}"
        )
    return np.argsort(values, axis=1, kind="stable")


def apply_permutations(array, perms, axis=1):
    """Permute the component axis of an array of draws.

    Parameters
    ----------
    array : array_like, shape (n_samples, ...)
        Draws; the first axis is the (flattened) sample axis.  Any number of
        other dimensions is allowed, e.g. ``(n_samples, K, D, D)``.
    perms : array_like of int, shape (n_samples, K)
        Permutations in the module convention:
        ``new[s, j] = old[s, perms[s, j]]`` along ``axis``.
    axis : int, default 1
        The component axis of ``array`` (negative values allowed; it must not
        be the sample axis 0).

    Returns
    -------
    ndarray
        A permuted copy of ``array`` with the same shape.
    """
    array = np.asarray(array)
    perms = np.asarray(perms)
    if array.ndim < 2:
        raise ValueError("array must have a sample axis and a component axis")
    if not -array.ndim <= axis < array.ndim:
        raise ValueError(f"axis {axis} is out of bounds for {array.ndim}-d array")
    axis = axis % array.ndim
    if axis == 0:
        raise ValueError("axis 0 is the sample axis, not a component axis")
    n_samples, n_comp = array.shape[0], array.shape[axis]
    if perms.shape != (n_samples, n_comp):
        raise ValueError(
            f"perms must have shape {(n_samples, n_comp)}, got {perms.shape}"
        )
    moved = np.moveaxis(array, axis, 1)
    idx = perms.astype(np.intp).reshape(perms.shape + (1,) * (moved.ndim - 2))
    out = np.take_along_axis(moved, idx, axis=1)
    return np.moveaxis(out, 1, axis)


def _assignment_rows(cost):
    """Solve one K x K minimum-cost assignment per draw.

    ``cost[s, j, k]`` is the cost of putting old component ``k`` at new
    position ``j``; returns ``perms[s, j] = k``.
    """
    perms = np.empty(cost.shape[:2], dtype=np.intp)
    for s in range(cost.shape[0]):
        _, cols = linear_sum_assignment(cost[s])
        perms[s] = cols
    return perms


# The two loops below are numba kernels because NumPy's reductions over a last axis of
# K = 2-6 entries took most of a warm fit's relabeling (0.9 s of 1.4 s on 4000 draws of
# 2000 rows, K=3); these take one pass each. ``softmax_rows`` also serves the
# estimators' ``responsibilities``.


@numba.njit(cache=True)
def _confidence(p):
    """``sum_i log max_k p[s, i, k]`` per draw ``s``."""
    tiny = np.finfo(np.float64).tiny
    score = np.zeros(p.shape[0])
    for s in range(p.shape[0]):
        total = 0.0
        for i in range(p.shape[1]):
            top = p[s, i, 0]
            for k in range(1, p.shape[2]):
                top = max(top, p[s, i, k])
            total += np.log(max(top, tiny))
        score[s] = total
    return score


@numba.njit(cache=True, error_model="numpy")
def softmax_rows(log_resp, out):
    """``out[r] = exp(log_resp[r]) / sum(exp(log_resp[r]))`` per row, stably (a row
    with no finite entry gives NaN)."""
    for r in range(log_resp.shape[0]):
        peak = log_resp[r, 0]
        for k in range(1, log_resp.shape[1]):
            peak = max(peak, log_resp[r, k])
        if not np.isfinite(peak):
            peak = 0.0
        total = 0.0
        for k in range(log_resp.shape[1]):
            out[r, k] = np.exp(log_resp[r, k] - peak)
            total += out[r, k]
        for k in range(log_resp.shape[1]):
            out[r, k] /= total


# The numba functions of relabeling by membership probabilities ("stephens", "ecr"),
# with the argument types the estimators pass (see their ``_post_fit_functions``).
CONFIDENCE_FUNCTION = ("bayesmix.relabel:_confidence", "(float64[:, :, ::1],)")
PROBABILITY_FUNCTIONS = (("bayesmix.relabel:softmax_rows", "(float64[:, ::1], float64[:, ::1])"), CONFIDENCE_FUNCTION)


def _most_confident_draw(p):
    """Index of the draw maximising ``sum_i log max_k p[s, i, k]``."""
    return int(np.argmax(_confidence(np.ascontiguousarray(p, dtype=float))))


def _stephens_costs(p, log_q):
    """``cost[s, j, k] = -sum_i p[s, i, k] log_q[i, j]`` for every draw ``s``.

    Up to K = 5, one matrix product of ``p`` as (S, N*K) with a block matrix that holds
    ``log_q`` once per component (N*K, K*K), 4x faster at K = 3 than NumPy's loop of S
    small (K, N) x (N, K) products; beyond, the block matrix's K^4 work outgrows it.
    """
    n_rows, n_comp = log_q.shape
    if n_comp > 5:
        return -np.matmul(log_q.T, p)
    blocks = np.zeros((n_rows, n_comp, n_comp, n_comp))  # [i, k, j, k] = log_q[i, j]
    for k in range(n_comp):
        blocks[:, k, :, k] = log_q
    flat = p.reshape(len(p), n_rows * n_comp)
    return -(flat @ blocks.reshape(n_rows * n_comp, -1)).reshape(-1, n_comp, n_comp)


def stephens_permutations(probs, max_iter=100):
    """Stephens (2000) Kullback-Leibler relabelling algorithm.

    Starting from identity permutations, alternate between

    (a) ``Q = mean_s p_perm[s]``, the average of the permuted classification
        probabilities, and
    (b) for each draw, the permutation minimising
        ``sum_i sum_j p_perm[i, j] * log(p_perm[i, j] / Q[i, j])``,

    until the permutations stop changing.  For the very first step (b), ``Q``
    is not the average of the (unrelabelled) draws but the probabilities of
    the most confident draw, the one with the highest
    ``sum_i log max_k probs[s, i, k]``: averaging draws that are in different
    labellings gives a nearly flat ``Q`` (e.g. two draws with swapped labels
    average to 0.5 everywhere) from which the iteration can stall at a wrong
    fixed point.  Step (b) is an assignment problem
    on the K x K cost ``cost[j_new, k_old] = -sum_i p[i, k_old] log Q[i, j_new]``
    (the entropy term does not depend on the permutation), solved with
    :func:`scipy.optimize.linear_sum_assignment`.

    Parameters
    ----------
    probs : array_like, shape (n_samples, N, K)
        Per-draw classification probabilities (responsibilities) of the
        ``N`` observations.
    max_iter : int, default 100
        Maximum number of iterations; a ``RuntimeWarning`` is issued if the
        permutations have not converged by then.

    Returns
    -------
    perms : ndarray of int, shape (n_samples, K)
        Permutations in the module convention.
    """
    p = np.ascontiguousarray(probs, dtype=float)
    if p.ndim != 3:
        raise ValueError(f"probs must have shape (n_samples, N, K), got {p.shape}")
    n_samples, n_rows, n_comp = p.shape
    # Both steps are matrix products on the draws as they lie, (S, N, K), without the
    # permuted copy of them that each iteration would otherwise allocate (hundreds of
    # MB). Q: with flat = p as (S, N*K) and onehot[s, k, j] = [perms[s, j] == k] / S,
    # (flat.T @ onehot)[(i, k), (k, j)] summed over k. Costs: log(Q).T @ p[s] per draw.
    flat = p.reshape(n_samples, n_rows * n_comp)
    tiny = np.finfo(float).tiny
    perms = np.tile(np.arange(n_comp), (n_samples, 1))
    onehot = np.zeros((n_samples, n_comp, n_comp))
    q = p[_most_confident_draw(p)]
    for it in range(max_iter):
        if it > 0:
            onehot[:] = 0.0
            onehot[np.arange(n_samples)[:, None], perms, np.arange(n_comp)] = 1.0 / n_samples
            blocks = (flat.T @ onehot.reshape(n_samples, -1)).reshape(n_rows, n_comp, n_comp, n_comp)
            q = np.einsum("ikkj->ij", blocks)
        log_q = np.log(np.maximum(q, tiny))
        new = _assignment_rows(_stephens_costs(p, log_q))
        if np.array_equal(new, perms):
            return perms
        perms = new
    warnings.warn(
        f"stephens_permutations did not converge in {max_iter} iterations",
        RuntimeWarning,
        stacklevel=2,
    )
    return perms


def ecr_permutations(z, pivot, K):
    """Papastamoulis & Iliopoulos (2010) ECR relabelling algorithm.

    For each draw, find the permutation of its allocations that maximises
    the number of observations allocated as in the pivot allocation.

    Parameters
    ----------
    z : array_like of int, shape (n_samples, N)
        Allocation (component index in ``0..K-1``) of every observation in
        every draw.
    pivot : array_like of int, shape (N,)
        Reference allocation.
    K : int
        Number of components.

    Returns
    -------
    perms : ndarray of int, shape (n_samples, K)
        Permutations in the module convention: old component ``perms[s, j]``
        of draw ``s`` is the one matched to pivot component ``j``.
    """
    z = np.asarray(z)
    pivot = np.asarray(pivot)
    K = int(K)
    if z.ndim != 2 or pivot.shape != (z.shape[1],):
        raise ValueError(
            f"z must be (n_samples, N) and pivot (N,), got {z.shape} and {pivot.shape}"
        )
    if (z.size and (z.min() < 0 or z.max() >= K)) or (
        pivot.size and (pivot.min() < 0 or pivot.max() >= K)
    ):
        raise ValueError(f"allocations must lie in 0..{K - 1}")
    n_samples = z.shape[0]
    # counts[s, j, k] = #{i : pivot_i == j and z[s, i] == k}
    flat = (np.arange(n_samples)[:, None] * K + pivot[None, :]) * K + z
    counts = np.bincount(flat.ravel(), minlength=n_samples * K * K)
    counts = counts.reshape(n_samples, K, K)
    return _assignment_rows(-counts)


def ecr_permutations_from_probs(probs, pivot=None):
    """ECR relabelling from per-draw classification probabilities.

    The allocations of each draw are the MAP allocations
    ``z[s, i] = argmax_k probs[s, i, k]``.

    Parameters
    ----------
    probs : array_like, shape (n_samples, N, K)
        Per-draw classification probabilities (responsibilities).
    pivot : array_like of int, shape (N,), optional
        Reference allocation.  By default the allocation of the draw with the
        highest ``sum_i log max_k probs[s, i, k]`` (the most confident
        classification) is used.

    Returns
    -------
    perms : ndarray of int, shape (n_samples, K)
        Permutations in the module convention.
    """
    p = np.asarray(probs, dtype=float)
    if p.ndim != 3:
        raise ValueError(f"probs must have shape (n_samples, N, K), got {p.shape}")
    z = np.argmax(p, axis=2)
    if pivot is None:
        pivot = z[_most_confident_draw(p)]
    return ecr_permutations(z, pivot, p.shape[2])


# ---------------------------------------------------------------------------
# InferenceData level
# ---------------------------------------------------------------------------
def _component_vars(posterior, dim, var_names):
    if dim not in posterior.dims:
        raise ValueError(f"posterior has no dimension named {dim!r}")
    names = [
        name
        for name, da in posterior.data_vars.items()
        if dim in da.dims and not str(name).endswith("__")
    ]
    if var_names is not None:
        var_names = [var_names] if isinstance(var_names, str) else list(var_names)
        missing = [v for v in var_names if v not in names]
        if missing:
            raise ValueError(
                f"var_names {missing} are not component-indexed posterior "
                f"variables (with dimension {dim!r})"
            )
        names = var_names
    return names


def _samples(da, dim):
    """Values as (n_samples, K, rest...) with chain and draw flattened."""
    da = da.transpose("chain", "draw", dim, ...)
    return da.values.reshape((-1,) + da.shape[2:])


def _find(posterior, candidates, dim, allow_shared=False):
    for name in candidates:
        if name in posterior.data_vars:
            dims = set(posterior[name].dims)
            if dims == {"chain", "draw", dim}:
                return name
            if allow_shared and dims == {"chain", "draw"}:
                return name
    return None


def _normal_log_resp(idata, dim):
    """Unnormalised log responsibilities of a 1-D normal mixture posterior."""
    posterior = idata.posterior
    w = _find(posterior, _WEIGHT_NAMES, dim)
    mu = _find(posterior, _MEAN_NAMES, dim)
    sd = _find(posterior, _SIGMA_NAMES, dim, allow_shared=True)
    observed = idata.observed_data if "observed_data" in idata.groups() else None
    if (w is None or mu is None or sd is None or observed is None
            or len(observed.data_vars) != 1):
        raise ValueError(
            "Cannot compute per-draw responsibilities: the posterior is not a "
            "1-D normal mixture with weights in "
            f"{_WEIGHT_NAMES}, means in {_MEAN_NAMES} and sigmas in "
            f"{_SIGMA_NAMES} over dimension {dim!r} plus exactly one "
            "observed_data variable. Pass log_resp of shape "
            "(chain, draw, N, K) instead."
        )
    y = np.asarray(next(iter(observed.data_vars.values())).values, dtype=float).ravel()
    log_w = np.log(posterior[w].transpose("chain", "draw", dim).values)
    loc = posterior[mu].transpose("chain", "draw", dim).values
    sd_da = posterior[sd]
    if dim in sd_da.dims:
        scale = sd_da.transpose("chain", "draw", dim).values
    else:
        scale = sd_da.transpose("chain", "draw").values[..., None]
    return log_w[:, :, None, :] + norm.logpdf(
        y[None, None, :, None], loc[:, :, None, :], scale[:, :, None, :]
    )


def relabel(idata, method="stephens", *, log_resp=None, by=None,
            dim="component", var_names=None, overwrite_log_resp=False, resp=None):
    """Undo label switching in the posterior of an ``InferenceData``.

    Parameters
    ----------
    idata : arviz.InferenceData
        Must have a ``posterior`` group with dims ``(chain, draw, ...)``.
        Posterior variables carrying dimension ``dim`` are component-indexed
        and get permuted; names ending in ``"__"`` (unconstrained copies) are
        skipped.
    method : {"stephens", "ecr", "sort", "none", None}, default "stephens"
        ``"sort"`` orders each draw by the posterior variable ``by``;
        ``"stephens"`` uses :func:`stephens_permutations` and ``"ecr"``
        :func:`ecr_permutations_from_probs` on per-draw responsibilities;
        ``"none"``/``None`` returns an unchanged copy and identity
        permutations.
    log_resp : array_like, shape (chain, draw, N, K), optional
        Per-draw log responsibilities (need not be normalised) for
        ``"stephens"`` and ``"ecr"``.  If omitted they are computed for a 1-D
        normal mixture: weights named ``"weights"`` or ``"w"``, locations
        ``"means"`` or ``"mu"`` and scales ``"sigmas"`` or ``"sigma"`` (a
        scale without ``dim`` is treated as shared), with exactly one
        ``observed_data`` variable.  Otherwise a ``ValueError`` is raised.
    by : str, optional
        Posterior variable to sort by (required for ``"sort"``).  If it has
        dimensions beyond ``dim`` (e.g. means with shape ``(K, D)``), draws
        are sorted by its first element along those dimensions (the first
        feature).  With ``"stephens"`` and ``"ecr"``, which align the draws
        but leave the order of the aligned components to chance, the aligned
        components are ordered by the posterior mean of that element.
    dim : str, default "component"
        Name of the component dimension.  Its coordinate values are kept.
    var_names : str or list of str, optional
        Restrict permuting to these component-indexed variables.
    overwrite_log_resp : bool, default False
        Allow the responsibilities to be normalized in ``log_resp``'s own memory (a
        C-contiguous float64 array), as scipy's ``overwrite_a``: saves an array as
        large as ``log_resp``.
    resp : array_like, shape (chain, draw, N, K), optional
        The responsibilities themselves (each row summing to 1), instead of
        ``log_resp``, where they are at hand.

    Returns
    -------
    new_idata : arviz.InferenceData
        Deep copy of ``idata`` with the permuted posterior; other groups are
        untouched.
    perms : ndarray of int, shape (chain, draw, K)
        Permutations in the module convention
        (``new[c, d, j] = old[c, d, perms[c, d, j]]``).
    """
    if method not in _METHODS:
        raise ValueError(
            f"Unknown relabelling method {method!r}; allowed: "
            "'stephens', 'ecr', 'sort', 'none' or None"
        )
    posterior = idata.posterior
    names = _component_vars(posterior, dim, var_names)
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    n_comp = posterior.sizes[dim]
    n_samples = n_chain * n_draw

    if method in ("none", None):
        perms = np.tile(np.arange(n_comp), (n_samples, 1))
    elif method == "sort":
        if by is None:
            raise ValueError("method='sort' requires `by`, a posterior variable name")
        perms = sort_permutations(_first_elements(posterior, by, dim))
    else:
        if resp is not None and log_resp is not None:
            raise ValueError("Pass either log_resp or resp, not both.")
        given, name = (log_resp, "log_resp") if resp is None else (resp, "resp")
        if given is None:
            given = _normal_log_resp(idata, dim)
        given = np.ascontiguousarray(given, dtype=float)
        if given.ndim != 4 or given.shape[:2] != (n_chain, n_draw) \
                or given.shape[3] != n_comp:
            raise ValueError(
                f"{name} must have shape (chain, draw, N, K) = "
                f"({n_chain}, {n_draw}, N, {n_comp}), got {given.shape}"
            )
        if resp is None:
            # scipy's logsumexp took seconds on (4000, 1000, K) arrays.
            probs = given if overwrite_log_resp else np.empty_like(given)
            softmax_rows(given.reshape(-1, n_comp), probs.reshape(-1, n_comp))
        else:
            probs = given
        probs = probs.reshape(n_samples, given.shape[2], n_comp)
        if method == "stephens":
            perms = stephens_permutations(probs)
        else:
            perms = ecr_permutations_from_probs(probs)
        if by is not None:
            # The draws are aligned with each other; the order of the aligned
            # components is left to chance: order them by the posterior mean of ``by``.
            first = _first_elements(posterior, by, dim)
            key = np.take_along_axis(first, perms, axis=1).mean(axis=0)
            perms = perms[:, np.argsort(key, kind="stable")]

    new_idata = copy.deepcopy(idata)
    new_post = new_idata.posterior
    for name in names:
        da = new_post[name]
        ordered = da.transpose("chain", "draw", dim, ...)
        vals = apply_permutations(_samples(da, dim), perms, axis=1)
        ordered = ordered.copy(data=vals.reshape(ordered.shape))
        new_post[name] = ordered.transpose(*da.dims)
    return new_idata, perms.reshape(n_chain, n_draw, n_comp)


def _first_elements(posterior, by, dim):
    """Draws (chain x draw, K) of the first element of ``by`` per component."""
    if by not in posterior.data_vars or dim not in posterior[by].dims:
        raise ValueError(f"`by`={by!r} is not a posterior variable with dimension {dim!r}")
    n_samples = posterior.sizes["chain"] * posterior.sizes["draw"]
    return _samples(posterior[by], dim).reshape(n_samples, posterior.sizes[dim], -1)[:, :, 0]


def relabel_diagnostics(before_idata, after_idata, perms, dim="component",
                        var_names=None):
    """Summarise the effect of :func:`relabel`.

    Parameters
    ----------
    before_idata, after_idata : arviz.InferenceData
        Posterior before and after relabelling.
    perms : array_like of int, shape (chain, draw, K)
        Permutations returned by :func:`relabel`.
    dim : str, default "component"
        Name of the component dimension.
    var_names : str or list of str, optional
        Component-indexed variables to report; default all of them.

    Returns
    -------
    dict
        ``"permuted_share"``: ndarray (n_chains,), per-chain share of draws
        whose permutation is not the identity; ``"rhat_before"`` and
        ``"rhat_after"``: dict mapping variable name to the maximum R-hat
        (the numbers of :func:`arviz.rhat`) over that variable's elements.
    """
    perms = np.asarray(perms)
    if perms.ndim != 3:
        raise ValueError(f"perms must have shape (chain, draw, K), got {perms.shape}")
    identity = np.arange(perms.shape[2])
    share = (perms != identity).any(axis=2).mean(axis=1)
    names = _component_vars(before_idata.posterior, dim, var_names)
    after = max_rhat(after_idata.posterior[names])
    # One permutation for every draw moves whole variables' elements around, which
    # leaves each variable's largest R-hat as it was.
    same_for_all = perms.size == 0 or (perms == perms.reshape(-1, perms.shape[2])[0]).all()
    return {
        "permuted_share": share,
        "rhat_before": dict(after) if same_for_all else max_rhat(before_idata.posterior[names]),
        "rhat_after": after,
    }
