"""Convergence checks run after every fit, and the warning they raise."""

import contextlib
import threading
import warnings

import arviz as az
import numpy as np
import xarray as xr
from sklearn.exceptions import ConvergenceWarning

RHAT_MAX = 1.01
ESS_PER_CHAIN_MIN = 100

_numba_lock = threading.Lock()
_numba_users = [0, False]  # contexts open, ArviZ's numba flag before the first


@contextlib.contextmanager
def arviz_on_numpy():
    """Run ArviZ's statistics (R-hat, ESS) on NumPy rather than numba inside the block.

    ArviZ compiles its numba helpers in every process, without a disk cache: 0.1-0.5 s
    added to every fit, for no speed-up on a posterior's worth of draws. The user's
    setting comes back when the last open block ends (blocks may overlap in threads).
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


def convergence_report(idata, var_names=None):
    """Check R-hat, bulk ESS and divergences of a posterior.

    Parameters
    ----------
    idata : arviz.InferenceData
        Needs a ``posterior`` group; divergences are read from ``sample_stats`` when
        present.
    var_names : list of str, optional
        Variables to check; all posterior variables by default.

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
    with warnings.catch_warnings(), arviz_on_numpy():
        warnings.simplefilter("ignore")
        rhat = _max(az.rhat(_halves(posterior) if n_chains == 1 else posterior))
        ess = _min(az.ess(posterior, method="bulk"))
    n_divergent = 0
    if "sample_stats" in idata.groups() and "diverging" in idata.sample_stats:
        n_divergent = int(idata.sample_stats["diverging"].values.sum())

    problems = []
    if not rhat <= RHAT_MAX:
        what = "the chain's halves disagree" if n_chains == 1 else "chains disagree"
        problems.append(
            f"R-hat is {rhat:.3f} (above {RHAT_MAX}): {what}. Increase `tune` and "
            "`draws`, use more chains, or check whether the components are identifiable "
            "(fewer `n_components`, a different `relabel`)."
        )
    ess_min = ESS_PER_CHAIN_MIN * n_chains
    if not ess >= ess_min:
        # Rounded down: a value just below the threshold must not print as equal to it.
        problems.append(
            f"The smallest bulk effective sample size is {np.floor(ess):.0f} (below "
            f"{ess_min}): increase `draws` (or `chains`)."
        )
    if n_divergent:
        problems.append(
            f"{n_divergent} divergent transitions: the sampler met regions it could not "
            "follow. Increase `tune`, or use fewer `n_components` or stronger priors."
        )
    report = {
        "rhat_max": rhat,
        "ess_bulk_min": ess,
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


def _halves(posterior):
    """One chain as two chains, its first and second halves (odd last draw dropped)."""
    half = posterior.sizes["draw"] // 2
    first = posterior.isel(chain=0, draw=slice(0, half))
    second = posterior.isel(chain=0, draw=slice(half, 2 * half))
    second = second.assign_coords(draw=first.draw)
    return xr.concat([first, second], dim="chain")


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


def warn_if_not_converged(report, estimator_name):
    """Raise a ``ConvergenceWarning`` listing the failed checks of ``report``."""
    if report["problems"]:
        warnings.warn(
            f"{estimator_name} may not have converged. " + " ".join(report["problems"]),
            ConvergenceWarning,
            stacklevel=3,
        )


def _finite_values(dataset):
    """All finite values of a dataset; a constant variable's R-hat is NaN and says nothing."""
    values = [np.ravel(v.values) for v in dataset.data_vars.values()]
    values = np.concatenate(values) if values else np.empty(0)
    return values[np.isfinite(values)]


def _max(dataset):
    values = _finite_values(dataset)
    return float(values.max()) if values.size else float("nan")


def _min(dataset):
    values = _finite_values(dataset)
    return float(values.min()) if values.size else float("nan")
