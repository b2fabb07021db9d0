"""Convergence checks run after every fit, and the warning they raise."""

import contextlib
import threading
import warnings

import arviz as az
import numpy as np
from scipy.fft import next_fast_len
from scipy.special import ndtri
from sklearn.exceptions import ConvergenceWarning

RHAT_MAX = 1.01
ESS_PER_CHAIN_MIN = 100
# A component whose posterior mean weight is below this is named as nearly empty.
NEARLY_EMPTY_WEIGHT = 0.01

_numba_lock = threading.Lock()
_numba_users = [0, False]  # contexts open, ArviZ's numba flag before the first


@contextlib.contextmanager
def arviz_on_numpy():
    """Run ArviZ's statistics (``summary``'s R-hat and ESS) on NumPy rather than numba.

    ArviZ compiles its numba helpers in every process, without a disk cache: 0.1-0.5 s
    added to the first call, for no speed-up on a posterior's worth of draws. (The fit's
    own checks use :func:`rhat` and :func:`ess_bulk`.) The user's setting comes back when
    the last open block ends (blocks may overlap in threads).
    """
    with _numba_lock:
        if _numba_users[0] == 0:
            _numba_users[1] = az.Numba.numba_flag
            az.Numba.numba_flag = False
        _numba_users[0] += 1
    try:
        yield
    finally:
        with _numba_lock:
            _numba_users[0] -= 1
            if _numba_users[0] == 0:
                az.Numba.numba_flag = _numba_users[1]


def convergence_report(idata, var_names=None, rhat_by_variable=None):
    """Check R-hat, bulk ESS and divergences of a posterior.

    Parameters
    ----------
    idata : arviz.InferenceData
        Needs a ``posterior`` group; divergences are read from ``sample_stats`` when
        present.
    var_names : list of str, optional
        Variables to check; all posterior variables by default.
    rhat_by_variable : dict, optional
        The largest R-hat of some of these variables, already computed on this posterior
        (as ``relabel_diagnostics``' ``"rhat_after"``); the others are computed. Ignored
        with one chain, where R-hat compares the chain's halves.

    Returns
    -------
    dict
        ``rhat_max``, ``ess_bulk_min``, ``n_divergent`` and ``problems``: a list of
        sentences, each naming a failed check and what to change. Empty when the
        posterior passes. With one chain, R-hat is the split R-hat of the chain's two
        halves and ``note`` says what that cannot check.
    """
    posterior = idata.posterior if var_names is None else idata.posterior[var_names]
    n_chains = posterior.sizes["chain"]
    draws = _stacked_draws(posterior)
    with np.errstate(invalid="ignore", divide="ignore"):
        if n_chains == 1:
            worst_rhat = _nan_max(rhat(_halves(draws)))
        else:
            known = rhat_by_variable or {}
            rest = [name for name in posterior.data_vars if name not in known]
            per_variable = [known[name] for name in posterior.data_vars if name in known]
            per_variable += list(max_rhat(posterior[rest]).values()) if rest else []
            worst_rhat = _nan_max(np.array(per_variable, dtype=float))
        worst_ess = _nan_min(ess_bulk(draws))
    n_divergent = 0
    if "sample_stats" in idata.groups() and "diverging" in idata.sample_stats:
        n_divergent = int(idata.sample_stats["diverging"].values.sum())

    problems = []
    if not worst_rhat <= RHAT_MAX:
        what = "the chain's halves disagree" if n_chains == 1 else "chains disagree"
        problems.append(
            f"R-hat is {worst_rhat:.3f} (above {RHAT_MAX}): {what}. Increase `tune` and "
            "`draws`, use more chains, or check whether the components are identifiable "
            "(fewer `n_components`, a different `relabel`)."
        )
    ess_min = ESS_PER_CHAIN_MIN * n_chains
    if not worst_ess >= ess_min:
        # Rounded down: a value just below the threshold must not print as equal to it.
        problems.append(
            f"The smallest bulk effective sample size is {np.floor(worst_ess):.0f} (below "
            f"{ess_min}): increase `draws` (or `chains`)."
        )
    if n_divergent:
        problems.append(
            f"{n_divergent} divergent transitions: the sampler met regions it could not "
            "follow. Increase `tune`, or use fewer `n_components` or stronger priors."
        )
    report = {
        "rhat_max": worst_rhat,
        "ess_bulk_min": worst_ess,
        "n_divergent": n_divergent,
        "problems": problems,
    }
    if n_chains == 1:
        report["note"] = (
            "One chain: R-hat compares the chain's first and second halves (split R-hat), "
            "which detects drift and slow mixing within the chain; it cannot detect a "
            "mode the chain never visited. Use several chains for that."
        )
    return report


def advi_convergence(report):
    """Convergence report of a minibatch ADVI fit (see ``_sampling.fit_advi``).

    ADVI has no R-hat or effective sample size: its draws are independent draws from the
    approximation. The check is whether the loss settled by the end of ``advi_steps``.
    """
    problems = []
    if not report["settled"]:
        problems.append(
            f"The ADVI loss was still changing after {report['steps']} steps: "
            "increase `advi_steps`."
        )
    return {**report, "method": "advi", "problems": problems}


def nearly_empty_components(weights, threshold=NEARLY_EMPTY_WEIGHT):
    """A sentence naming the components of posterior mean weight below ``threshold``.

    Superfluous components of an overfitted mixture hold almost no weight, and sampling
    them is what makes such fits slow and their chains disagree
    (``benchmarks/validation/findings.md``, section 6), so a fit that fails its checks
    says which components they are and how many remain. Returns None when no component,
    or every component, is that small.
    """
    weights = np.asarray(weights, dtype=float)
    small = np.flatnonzero(weights < threshold)
    if small.size == 0 or small.size == weights.size:
        return None
    several = small.size > 1
    return (
        f"Component{'s' if several else ''} {', '.join(map(str, small))} "
        f"hold{'' if several else 's'} {', '.join(f'{weights[k]:.2%}' for k in small)} of the "
        f"weight: the data may hold fewer components, and nearly empty ones make sampling "
        f"slow and chains disagree. Try `n_components={weights.size - small.size}`, or "
        "compare numbers of components with `bayesmix.SelectK`."
    )


def warn_if_not_converged(report, estimator_name):
    """Raise a ``ConvergenceWarning`` listing the failed checks of ``report``."""
    if report["problems"]:
        warnings.warn(
            f"{estimator_name} may not have converged. " + " ".join(report["problems"]),
            ConvergenceWarning,
            stacklevel=3,
        )


def _stacked_draws(posterior):
    """All variables' draws as one (chain, draw, element) array."""
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    columns = [
        var.transpose("chain", "draw", ...).values.reshape(n_chains, n_draws, -1)
        for var in posterior.data_vars.values()
    ]
    return np.concatenate(columns, axis=2) if columns else np.empty((n_chains, n_draws, 0))


def _halves(draws):
    """One chain (1, draw, element) as two chains, its halves (odd last draw dropped)."""
    half = draws.shape[1] // 2
    return np.concatenate([draws[:, :half], draws[:, half : 2 * half]], axis=0)


def max_rhat(posterior):
    """Largest R-hat of each variable of a posterior dataset (``arviz.rhat``'s numbers)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            str(name): _nan_max(rhat(_stacked_draws(posterior[[name]])))
            for name in posterior.data_vars
        }


# R-hat and bulk ESS as ArviZ 0.23 computes them (Vehtari et al. 2021: rank-normalized
# split chains), for every element at once: arviz.rhat and arviz.ess loop over the
# elements in Python, which took 0.06 s of a 0.4 s fit. Tests compare them with ArviZ's.


def rhat(draws):
    """Rank-normalized split R-hat (``arviz.rhat``'s default) of each element.

    Parameters
    ----------
    draws : ndarray of shape (n_chains, n_draws, ...)

    Returns
    -------
    ndarray of shape ``draws.shape[2:]``
        NaN where an element has a NaN draw or is constant, and everywhere with fewer
        than 2 chains or 4 draws.
    """
    draws, shape = _columns(draws)
    n_chains, n_draws, _ = draws.shape
    if n_chains < 2 or n_draws < 4:
        return np.full(shape, np.nan)
    split = _split_chains(draws)
    folded = np.abs(split - np.median(split.reshape(-1, split.shape[2]), axis=0))
    both = np.maximum(_plain_rhat(_z_scale(split)), _plain_rhat(_z_scale(folded)))
    return both.reshape(shape)


def ess_bulk(draws):
    """Bulk effective sample size (``arviz.ess``'s default) of each element.

    Takes and returns arrays shaped as :func:`rhat` does; NaN where an element has a NaN
    draw, and everywhere with fewer than 4 draws.
    """
    draws, shape = _columns(draws)
    if draws.shape[1] < 4:
        return np.full(shape, np.nan)
    split = _split_chains(draws)
    return _split_ess(split, _z_scale(split)).reshape(shape)


def ess_mean(draws):
    """Effective sample size of the mean (``arviz.ess(method="mean")``) of each element.

    Takes and returns arrays shaped as :func:`rhat` does.
    """
    draws, shape = _columns(draws)
    if draws.shape[1] < 4:
        return np.full(shape, np.nan)
    split = _split_chains(draws)
    return _split_ess(split, split).reshape(shape)


def _split_ess(split, values):
    """ESS of each column of ``values``, the split chains ``split`` or a transform of them."""
    n_columns = split.shape[2]
    n_chains, n_draws = values.shape[:2]
    out = np.empty(n_columns)
    spread = np.ptp(split.reshape(-1, n_columns), axis=0)  # ArviZ's test, on the split draws
    constant = spread < np.finfo(float).resolution
    out[constant] = n_chains * n_draws
    out[np.isnan(spread)] = np.nan
    columns = np.flatnonzero(~constant & ~np.isnan(spread))
    if columns.size == 0:
        return out
    z = values[:, :, columns]
    # Autocovariance of each chain through the FFT (arviz.stats.stats_utils.autocov).
    centred = z - z.mean(axis=1, keepdims=True)
    size = next_fast_len(2 * n_draws)
    spectrum = np.fft.rfft(centred, n=size, axis=1)
    acov = np.fft.irfft(spectrum * np.conjugate(spectrum), n=size, axis=1)[:, :n_draws] / n_draws
    mean_var = acov[:, 0].mean(axis=0) * n_draws / (n_draws - 1.0)
    var_plus = mean_var * (n_draws - 1.0) / n_draws
    if n_chains > 1:
        var_plus = var_plus + np.var(z.mean(axis=1), axis=0, ddof=1)
    rho = 1.0 - (mean_var - acov.mean(axis=0)) / var_plus  # (lag, column)
    for j, column in enumerate(columns):
        out[column] = _geyer_ess(rho[:, j], n_chains * n_draws)
    return out


# PSIS-LOO and WAIC as ArviZ 0.23 computes them, every row at once: arviz.loo smooths each
# row's importance ratios in a Python call of its own, 1.9 s for 2000 rows and 4000 draws,
# which was 11 of the 57 s of ``python -m bayesmix fit data.csv --k 1-6``. Tests compare
# the numbers with ArviZ's.

_GPD_PRIOR_B, _GPD_PRIOR_K = 3, 10  # arviz.stats.stats._gpdfit's weakly informative prior
_ROW_BLOCK_CELLS = 2**21  # rows smoothed at once: a few 16 MB temporaries


def loo(idata, var_name):
    """PSIS-LOO, as ``arviz.loo(idata, pointwise=True, var_name=var_name)`` returns it.

    Parameters
    ----------
    idata : arviz.InferenceData
        With ``posterior`` (for the relative efficiency of the draws) and
        ``log_likelihood`` groups.
    var_name : str
        The ``log_likelihood`` variable.

    Returns
    -------
    arviz.ELPDData
        ``elpd_loo``, ``se``, ``p_loo``, ``n_samples``, ``n_data_points``, ``warning``,
        ``loo_i``, ``pareto_k``, ``scale`` ("log") and ``good_k``, as ArviZ's.
    """
    return _loo(idata, *_pointwise(idata, var_name))


def waic(idata, var_name):
    """WAIC, as ``arviz.waic(idata, pointwise=True, var_name=var_name)`` returns it."""
    return _waic(*_pointwise(idata, var_name))


def loo_and_waic(idata, var_name):
    """``(loo(idata, var_name), waic(idata, var_name))``, reading the log-likelihood once."""
    pointwise = _pointwise(idata, var_name)
    return _loo(idata, *pointwise), _waic(*pointwise)


def _loo(idata, rows, template, n_chains, lppd_i):
    n_obs, n_samples = rows.shape
    if n_chains == 1:
        reff = 1.0
    else:
        reff = ess_mean(_stacked_draws(idata.posterior)).mean() / n_samples
    loo_i, pareto_k = np.empty(n_obs), np.empty(n_obs)
    step = max(1, _ROW_BLOCK_CELLS // n_samples)
    for start in range(0, n_obs, step):
        block = rows[start : start + step]
        log_weights, pareto_k[start : start + step] = psis_log_weights(-block, reff)
        loo_i[start : start + step] = _logsumexp_rows(log_weights + block)
    lppd = lppd_i.sum()
    elpd = loo_i.sum()
    good_k = min(1 - 1 / np.log10(n_samples), 0.7)
    return az.ELPDData(
        data=[
            elpd,
            (n_obs * np.var(loo_i)) ** 0.5,
            lppd - elpd,
            n_samples,
            n_obs,
            bool(np.any(pareto_k > good_k)),
            template.copy(data=loo_i.reshape(template.shape)).rename("loo_i"),
            template.copy(data=pareto_k.reshape(template.shape)).rename("pareto_shape"),
            "log",
            good_k,
        ],
        index=["elpd_loo", "se", "p_loo", "n_samples", "n_data_points", "warning", "loo_i",
               "pareto_k", "scale", "good_k"],
    )


def _waic(rows, template, n_chains, lppd_i):
    n_obs, n_samples = rows.shape
    variances = rows.var(axis=1)
    waic_i = lppd_i - variances
    return az.ELPDData(
        data=[
            waic_i.sum(),
            (n_obs * np.var(waic_i)) ** 0.5,
            variances.sum(),
            n_samples,
            n_obs,
            bool(np.any(variances > 0.4)),
            template.copy(data=waic_i.reshape(template.shape)).rename("waic_i"),
            "log",
        ],
        index=["elpd_waic", "se", "p_waic", "n_samples", "n_data_points", "warning", "waic_i",
               "scale"],
    )


def psis_log_weights(log_ratios, reff=1.0):
    """Pareto-smoothed log importance weights of each row (``arviz.psislw``, normalized).

    Parameters
    ----------
    log_ratios : ndarray of shape (n_rows, n_samples)
    reff : float
        Relative efficiency of the draws; sets the length of the smoothed tail.

    Returns
    -------
    log_weights : ndarray of shape (n_rows, n_samples)
    pareto_k : ndarray of shape (n_rows,)
    """
    from arviz.stats.stats import _psislw

    log_ratios = np.asarray(log_ratios, dtype=float)
    n_rows, n = log_ratios.shape
    n_top = int(np.ceil(min(n / 5.0, 3 * (n / reff) ** 0.5))) + 1  # the tail and its cutoff
    cutoff_min = np.log(np.finfo(float).tiny)
    x = log_ratios - log_ratios.max(axis=1, keepdims=True)
    pareto_k = np.full(n_rows, np.nan)
    smoothed = np.zeros(n_rows, dtype=bool)
    if 5 < n_top <= n:
        top_at = np.argpartition(x, n - n_top, axis=1)[:, n - n_top :]
        top = np.take_along_axis(x, top_at, axis=1)
        order = np.argsort(top, axis=1)
        top_at = np.take_along_axis(top_at, order, axis=1)[:, 1:]
        top = np.take_along_axis(top, order, axis=1)
        cutoff = np.maximum(top[:, 0], cutoff_min)
        top = top[:, 1:]
        # The usual case: the tail is exactly the draws above the cutoff draw (no ties).
        rows = np.flatnonzero((top > cutoff[:, None]).all(axis=1))
        tail_len = n_top - 1
        exp_cutoff = np.exp(cutoff[rows])[:, None]
        k, sigma, fitted = _gpd_fit_rows(np.exp(top[rows]) - exp_cutoff)
        fitted &= np.isfinite(k) & (sigma > 0)
        rows, k, sigma, exp_cutoff = rows[fitted], k[fitted], sigma[fitted], exp_cutoff[fitted]
        probs = np.arange(0.5, tail_len) / tail_len
        with np.errstate(divide="ignore", invalid="ignore"):
            quantiles = np.where(
                np.abs(k[:, None]) < np.finfo(float).eps,
                -np.log1p(-probs),
                np.expm1(-k[:, None] * np.log1p(-probs)) / k[:, None],
            )
        x[rows[:, None], top_at[rows]] = np.log(quantiles * sigma[:, None] + exp_cutoff)
        pareto_k[rows] = k
        smoothed[rows] = True
        np.minimum(x, 0.0, out=x)
    x -= _logsumexp_rows(x)[:, None]
    # Ties at the cutoff, tails too short or too odd to fit: ArviZ's own code, row by row.
    for i in np.flatnonzero(~smoothed):
        x[i], pareto_k[i] = _psislw(log_ratios[i].copy(), -n_top, cutoff_min, True)
    return x, pareto_k


def _gpd_fit_rows(tails):
    """``arviz.stats.stats._gpdfit`` (Zhang and Stephens 2009) for each row of sorted tails.

    Returns the shape and scale of each row's generalized Pareto fit and whether any of
    its grid weights was above ArviZ's negligible level.
    """
    n = tails.shape[1]
    m = 30 + int(n**0.5)
    b = 1 - np.sqrt(m / (np.arange(1, m + 1, dtype=float) - 0.5))
    b = b / (_GPD_PRIOR_B * tails[:, int(n / 4 + 0.5) - 1, None]) + 1 / tails[:, -1, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        k_b = np.log1p(-b[:, :, None] * tails[:, None, :]).mean(axis=2)
        len_scale = n * (np.log(-(b / k_b)) - k_b - 1)
        weights = 1 / np.exp(len_scale[:, None, :] - len_scale[:, :, None]).sum(axis=2)
        kept = weights >= 10 * np.finfo(float).eps
        weights = np.where(kept, weights, 0.0)
        weights /= weights.sum(axis=1, keepdims=True)
        b_post = (b * weights).sum(axis=1)
        k = np.log1p(-b_post[:, None] * tails).mean(axis=1)
        sigma = -k / b_post
    k = (n * k + _GPD_PRIOR_K * 0.5) / (n + _GPD_PRIOR_K)
    return k, sigma, kept.any(axis=1)


def _pointwise(idata, var_name):
    """The log-likelihood as (row, draw) values, a DataArray shaped as one draw, the number
    of chains, and each row's log predictive density (log of its mean likelihood)."""
    values = idata.log_likelihood[var_name]
    obs_dims = [d for d in values.dims if d not in ("chain", "draw")]
    values = values.transpose("chain", "draw", *obs_dims)
    n_chains, n_draws = values.shape[:2]
    rows = np.ascontiguousarray(values.values.reshape(n_chains * n_draws, -1).T, dtype=float)
    lppd_i = _logsumexp_rows(rows) - np.log(n_chains * n_draws)
    return rows, values.isel(chain=0, draw=0, drop=True), n_chains, lppd_i


def _logsumexp_rows(a):
    from ._base import logsumexp  # _base imports this module

    return logsumexp(a, axis=1)


def _columns(draws):
    """``draws`` (chain, draw, ...) as floats (chain, draw, element), and the element shape."""
    draws = np.asarray(draws, dtype=float)
    return draws.reshape(*draws.shape[:2], -1), draws.shape[2:]


def _geyer_ess(rho, n_total):
    """ESS from one column's autocorrelations by Geyer's initial monotone sequence."""
    n_draws = rho.size
    kept = np.zeros(n_draws)
    kept[0], kept[1] = 1.0, rho[1]
    # Initial positive sequence: pairs (rho[t+1], rho[t+2]), t = 1, 3, ..., while the
    # previous pair's sum is positive.
    t, even, odd = 1, 1.0, rho[1]
    while t < n_draws - 3 and even + odd > 0.0:
        even, odd = rho[t + 1], rho[t + 2]
        if even + odd >= 0:
            kept[t + 1], kept[t + 2] = even, odd
        t += 2
    max_t = t - 2
    if even > 0:
        kept[max_t + 1] = even
    # Initial monotone sequence: no pair sums to more than the pair before it.
    t = 1
    while t <= max_t - 2:
        if kept[t + 1] + kept[t + 2] > kept[t - 1] + kept[t]:
            kept[t + 1] = kept[t + 2] = (kept[t - 1] + kept[t]) / 2.0
        t += 2
    tau = -1.0 + 2.0 * np.sum(kept[: max_t + 1]) + np.sum(kept[max_t + 1 : max_t + 2])
    tau = max(tau, 1 / np.log10(n_total))
    return np.nan if np.isnan(kept).any() else n_total / tau


def _split_chains(draws):
    """Split each chain into its first and last halves (an odd count drops the middle draw)."""
    half = draws.shape[1] // 2
    return np.concatenate([draws[:, :half], draws[:, -half:]], axis=0)


def _z_scale(draws):
    """Turn each column into normal scores of its pooled ranks (NaN columns become NaN)."""
    n_columns = draws.shape[2]
    columns = np.ascontiguousarray(draws.reshape(-1, n_columns).T)
    ranks = _average_ranks(columns)
    ranks[np.isnan(columns).any(axis=1)] = np.nan
    z = ndtri((ranks - 3 / 8) / (columns.shape[1] + 1 / 4))
    return z.T.reshape(draws.shape)


def _average_ranks(rows):
    """Ranks (from 1, ties averaged) within each row of a 2-D array, as scipy's rankdata.

    One argsort of all rows: scipy.stats.rankdata along an axis took 5x as long.
    """
    n_rows, n = rows.shape
    order = np.argsort(rows, axis=1)
    ordered = np.take_along_axis(rows, order, axis=1)
    starts = np.ones((n_rows, n), dtype=bool)  # where a run of equal values starts
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    start_at = np.flatnonzero(starts)
    run_length = np.diff(start_at, append=starts.size)
    middle = start_at + (run_length - 1) / 2  # flat position of each run's middle
    rank_of_ordered = np.repeat(middle, run_length).reshape(n_rows, n)
    rank_of_ordered -= np.arange(n_rows)[:, None] * n - 1
    ranks = np.empty((n_rows, n))
    np.put_along_axis(ranks, order, rank_of_ordered, axis=1)
    return ranks


def _plain_rhat(z):
    """Gelman-Rubin R-hat of each column of (chain, draw, element) values."""
    n_draws = z.shape[1]
    between = n_draws * np.var(z.mean(axis=1), axis=0, ddof=1)
    within = np.var(z, axis=1, ddof=1).mean(axis=0)
    return np.sqrt((between / within + n_draws - 1) / n_draws)


def _nan_max(values):
    """Largest value ignoring NaN (a constant element's R-hat is NaN and says nothing)."""
    values = np.ravel(values)
    values = values[~np.isnan(values)]
    return float(values.max()) if values.size else float("nan")


def _nan_min(values):
    values = np.ravel(values)
    values = values[~np.isnan(values)]
    return float(values.min()) if values.size else float("nan")
