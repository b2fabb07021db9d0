"""Choosing the number of mixture components.

Two routes:

* :class:`SelectK` (and :func:`select_k`) fits one mixture per candidate K and compares
  them by expected log predictive density (elpd): PSIS-LOO on each fit's pointwise
  log-likelihood when its Pareto k diagnostics allow, K-fold cross-validation otherwise.
* :func:`posterior_n_components` fits one deliberately overfitted mixture with a sparse
  Dirichlet prior on the weights and reads a posterior over the number of *occupied*
  components from the sampled assignments (Malsiner-Walli, Frühwirth-Schnatter and Grün
  2016, "Model-based clustering based on sparse finite Gaussian mixtures").
"""

from __future__ import annotations

import logging
import time
import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import check_cv
from sklearn.utils import _safe_indexing
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import (
    _check_feature_names,
    _num_features,
    _num_samples,
    check_is_fitted,
    indexable,
)

from . import diagnostics

__all__ = ["SelectK", "posterior_n_components", "select_k"]

_log = logging.getLogger(__name__)

#: PSIS-LOO is trusted when every row's Pareto k is at most this (Vehtari et al. 2017/2024).
PARETO_K_THRESHOLD = 0.7

METHODS = ("auto", "loo", "kfold")

#: ``selection="parsimonious"`` treats elpd differences below this as negligible.
PARSIMONY_ELPD_DIFF = 4.0


def _estimator_has(attr):
    """``available_if`` check: the fitted best estimator (or, before fit, the template) has ``attr``."""

    def check(self):
        target = getattr(self, "best_estimator_", None)
        if target is None:
            target = self.estimator
        getattr(target, attr)
        return True

    return check


class SelectK(MetaEstimatorMixin, BaseEstimator):
    """Select the number of mixture components by estimated out-of-sample predictive density.

    For every K in ``k_range`` a clone of ``estimator`` with ``param_name=K`` is fitted,
    and the fits are compared by their expected log pointwise predictive density (elpd,
    higher is better):

    * ``"loo"``: Pareto-smoothed importance-sampling leave-one-out (``arviz.loo``) on
      each full-data fit's ``idata_.log_likelihood`` group. Costs one fit per K. Warns
      when some row's Pareto k exceeds 0.7, where the estimate is unreliable.
    * ``"kfold"``: K-fold cross-validation with the splitter from ``cv``; each fold's
      fit scores the held-out rows with ``score_samples`` (log posterior predictive
      density), which gives one elpd term per row. Costs ``n_splits`` fits per K.
    * ``"auto"``: LOO when every fit's Pareto k is at most 0.7. Otherwise, when the rows
      above 0.7 are fewer than K-fold's fits, LOO where each of those rows gets an exact
      refit without it (the update of ``arviz.reloo``; Vehtari, Gelman and Gabry 2017),
      and K-fold when they are not. ``method_`` and ``method_reason_`` record which and
      why.

    Parameters
    ----------
    estimator : estimator object
        A bayesmix estimator (or any estimator with ``fit`` and ``score_samples``; for
        LOO it also needs an ``idata_`` with a ``log_likelihood`` group after fitting).
    k_range : iterable of int, default=range(1, 7)
        Candidate numbers of components.
    method : {"auto", "loo", "kfold"}, default="auto"
        How the elpd of each K is estimated (see above).
    cv : int, cross-validation generator or iterable, default=5
        Splitter for K-fold, as in scikit-learn (``check_cv``): an int gives an
        *unshuffled* ``KFold``, so pass e.g. ``KFold(5, shuffle=True, random_state=0)``
        when the rows are ordered.
    n_jobs : int, default=None
        Fits run in parallel with joblib over (K, fold) tasks; ``None`` means 1 unless in
        a ``joblib.parallel_config`` context (which also selects the backend, e.g. dask).
        Every task gets a clone of ``estimator`` with its own ``random_state``, so the
        results do not depend on ``n_jobs`` or the backend. A worker process compiles
        each model structure it meets once.
    refit : bool, default=True
        Keep a fit on all the data for every K (``estimators_``) and expose the best as
        ``best_estimator_``. LOO needs the full-data fits anyway, so for LOO they are
        always kept; with ``method="kfold"`` and ``refit=False`` no full-data fit is made
        and the predictive methods are unavailable.
    param_name : str, default="n_components"
        The parameter of ``estimator`` that sets K.
    retune : int, default=1
        A fit that fails its convergence checks (``converged_`` false) is fitted once
        more with ``tune`` multiplied by ``retune`` (and the same seed) when ``retune``
        exceeds 1 and the estimator has a ``tune`` parameter; 1 never re-fits. The
        checks of the fit kept are those reported in ``comparison_``.
    selection : {"parsimonious", "best"}, default="parsimonious"
        How ``best_k_`` is read off the comparison. "best": the K with the highest elpd.
        "parsimonious": the smallest K whose elpd is not clearly below the highest, that
        is ``elpd_diff <= max(dse, 4)`` (within one standard error of the difference, or
        within 4, below which differences are small and their standard errors
        unreliable; Sivula, Magnusson and Vehtari 2022). Mixtures with too many
        components nest the right one (the extra components empty out or split one),
        so their elpd differs from it by noise alone and "best" picks too large a K
        about as often as not.

    Attributes
    ----------
    comparison_ : pandas.DataFrame
        One row per K (index ``K``), best first, with the columns of
        ``arviz.compare``: ``rank``, ``elpd``, ``p`` (effective number of parameters:
        ``p_loo``, or for K-fold the full-data lppd minus the K-fold elpd; NaN without
        a full-data fit), ``elpd_diff`` (from the best), ``weight`` (stacking weights),
        ``se``, ``dse`` (standard error of the difference from the best), ``warning``
        (for LOO: some Pareto k above 0.7), ``pareto_k_max`` and ``waic`` (elpd by WAIC,
        a secondary check, present whenever full-data fits exist); and whether the fits
        behind each row passed their checks: ``converged`` (the full-data fit and, for
        K-fold, every fold's fit), ``max_rhat`` (largest R-hat over those fits),
        ``divergences`` (their divergent transitions, summed) and ``max_pareto_k`` (the
        full-data fit's worst Pareto k; NaN without one).
    reliable_ : bool
        Whether every fit the choice rests on passed its convergence checks: the fits of
        ``best_k_``, of every smaller K (which the choice passed over) and of every K
        with a higher elpd. When not, a ``ConvergenceWarning`` names them.
    reliability_ : str
        Why the comparison is, or is not, reliable.
    pointwise_ : pandas.DataFrame of shape (n_samples, n_k)
        Each row's elpd term (``loo_i`` or held-out log predictive density) per K.
    method_ : {"loo", "kfold"}
        The method used.
    method_reason_ : str
        Why that method was used.
    pareto_k_ : dict or None
        K -> largest Pareto k of that K's full-data fit (None when there are no
        full-data fits).
    best_k_ : int
        The selected K (see ``selection``); ``comparison_`` is sorted by elpd, so with
        ``selection="parsimonious"`` it need not be the first row.
    estimators_ : dict
        K -> estimator fitted on all the data (empty for K-fold with ``refit=False``).
    best_estimator_ : estimator
        ``estimators_[best_k_]``; absent for K-fold with ``refit=False``.
    n_features_in_ : int
    feature_names_in_ : ndarray
        Defined only when ``X`` has string feature names.

    Examples
    --------
    >>> from bayesmix import BayesianGaussianMixture, SelectK, datasets
    >>> X = datasets.load_faithful()[["waiting"]]
    >>> sel = SelectK(BayesianGaussianMixture(random_state=0), range(1, 5))  # doctest: +SKIP
    >>> sel.fit(X).best_k_  # doctest: +SKIP
    2
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit"])],
        "k_range": ["array-like"],
        "method": [StrOptions(set(METHODS))],
        "cv": ["cv_object"],
        "n_jobs": [Integral, None],
        "refit": ["boolean"],
        "param_name": [str],
        "retune": [Interval(Integral, 1, None, closed="left")],
        "selection": [StrOptions({"parsimonious", "best"})],
    }

    def __init__(
        self,
        estimator,
        k_range=range(1, 7),
        *,
        method="auto",
        cv=5,
        n_jobs=None,
        refit=True,
        param_name="n_components",
        retune=1,
        selection="parsimonious",
    ):
        self.estimator = estimator
        self.k_range = k_range
        self.method = method
        self.cv = cv
        self.n_jobs = n_jobs
        self.refit = refit
        self.param_name = param_name
        self.retune = retune
        self.selection = selection

    # ------------------------------------------------------------------- fit

    def _check_k_range(self):
        ks = []
        for k in self.k_range:
            if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
                raise ValueError(f"k_range must hold positive integers, got {k!r}.")
            ks.append(int(k))
        ks = sorted(set(ks))
        if not ks:
            raise ValueError("k_range is empty.")
        return ks

    def fit(self, X, y=None, **fit_params):
        """Fit one estimator per K and compare them.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), optional
            Response, for estimators that model one (passed to their ``fit`` and
            ``score_samples``).
        **fit_params
            Passed to every ``fit`` except ``groups``, which goes to the splitter's
            ``split``; per-row arrays (length ``n_samples``, e.g.
            ``sample_weight``) are split with the rows for K-fold.

        Returns
        -------
        self : object
        """
        self._validate_params()
        ks = self._check_k_range()
        if not _sets_k(self.estimator, self.param_name):
            raise ValueError(
                f"{type(self.estimator).__name__} has no parameter {self.param_name!r}; "
                "set param_name to the parameter that fixes the number of components."
            )
        fit_params = dict(fit_params)
        groups = fit_params.pop("groups", None)
        X, y = indexable(X, y)
        _check_feature_names(self, X, reset=True)
        self.n_features_in_ = _num_features(X)
        n_samples = _num_samples(X)

        full_fits = {}
        if self.method in ("loo", "auto") or self.refit:
            full_fits = self._run(ks, X, y, fit_params, folds=None)

        loo = waic = None
        self.pareto_k_ = None
        if full_fits:
            loo, waic = self._loo_waic(full_fits)
            self.pareto_k_ = {k: float(np.max(loo[k].pareto_k.values)) for k in ks}
        bad = sorted(k for k, v in (self.pareto_k_ or {}).items() if v > PARETO_K_THRESHOLD)
        refit_rows = None

        if self.method == "loo":
            self.method_ = "loo"
            self.method_reason_ = "method='loo' was requested."
            if bad:
                warnings.warn(
                    "PSIS-LOO may be unreliable for the fits "
                    + ", ".join(f"K={k} (max Pareto k {self.pareto_k_[k]:.2f})" for k in bad)
                    + f": Pareto k above {PARETO_K_THRESHOLD}. Consider method='kfold' "
                    "(or method='auto', which switches to it).",
                    UserWarning,
                    stacklevel=2,
                )
        elif self.method == "kfold":
            self.method_ = "kfold"
            self.method_reason_ = "method='kfold' was requested."
        elif bad:
            cv = check_cv(self.cv, y, classifier=False)
            n_kfold_fits = cv.get_n_splits(X, y, groups) * len(ks)
            rows = {k: np.flatnonzero(loo[k].pareto_k.values > PARETO_K_THRESHOLD) for k in bad}
            n_refits = sum(len(idx) for idx in rows.values())
            unreliable = (
                f"PSIS-LOO is unreliable for {_rows(n_refits)} with Pareto k above "
                f"{PARETO_K_THRESHOLD}: "
                + ", ".join(f"K={k} ({_rows(len(rows[k]))}, max {self.pareto_k_[k]:.2f})" for k in bad)
            )
            if n_refits <= n_kfold_fits:
                self.method_, refit_rows = "loo", rows
                self.method_reason_ = (
                    f"{unreliable}; each was left out of an exact refit (as arviz.reloo "
                    f"does), {n_refits} fits against {n_kfold_fits} for K-fold."
                )
            else:
                self.method_ = "kfold"
                self.method_reason_ = (
                    f"{unreliable}; exact refits would take more fits than K-fold "
                    f"({n_kfold_fits}), so K-fold cross-validation was used instead."
                )
        else:
            self.method_ = "loo"
            self.method_reason_ = (
                f"Every fit's Pareto k is at most {PARETO_K_THRESHOLD} "
                f"(largest {max(self.pareto_k_.values()):.2f}), so PSIS-LOO is reliable."
            )

        checks = {k: [_fit_checks(est)] for k, est in full_fits.items()}
        if refit_rows:
            self._refit_rows(loo, refit_rows, X, y, fit_params, checks)
        if self.method_ == "loo":
            table, pointwise = _loo_table(loo, self.pareto_k_)
        else:
            cv = check_cv(self.cv, y, classifier=False)
            splits = list(cv.split(X, y, groups))
            pointwise = self._kfold_pointwise(ks, X, y, fit_params, splits, n_samples, checks)
            lppd = {k: _lppd(est) for k, est in full_fits.items()} if full_fits else None
            table = _kfold_table(pointwise, lppd)
            if self.pareto_k_ is not None:
                table["pareto_k_max"] = pd.Series(self.pareto_k_)
        if waic is not None:
            table["waic"] = pd.Series({k: float(w.elpd_waic) for k, w in waic.items()})
        table.index.name = "K"
        _add_checks(table, checks, self.pareto_k_)
        self.comparison_ = table
        self.pointwise_ = pointwise
        if self.selection == "best":
            self.best_k_ = int(table.index[0])
        else:
            tolerance = np.maximum(table["dse"], PARSIMONY_ELPD_DIFF)
            within = table.index[table["elpd_diff"] <= tolerance]
            self.best_k_ = int(min(within))
        self._check_reliability(table)
        self.estimators_ = full_fits
        if full_fits:
            self.best_estimator_ = full_fits[self.best_k_]
        elif hasattr(self, "best_estimator_"):
            del self.best_estimator_
        return self

    def _check_reliability(self, table):
        """Set ``reliable_``/``reliability_``; warn when the choice rests on a failed fit."""
        best_elpd = table.loc[self.best_k_, "elpd"]
        rests_on = [k for k in table.index if k <= self.best_k_ or table.loc[k, "elpd"] > best_elpd]
        failed = sorted(int(k) for k in rests_on if not table.loc[k, "converged"])
        self.reliable_ = not failed
        if not failed:
            self.reliability_ = (
                f"The fits of K={self.best_k_}, of every smaller K and of every K with a "
                "higher elpd passed their convergence checks."
            )
            return
        details = ", ".join(
            f"K={k} (max R-hat {table.loc[k, 'max_rhat']:.3f}, "
            f"{int(table.loc[k, 'divergences'])} divergences)"
            for k in failed
        )
        self.reliability_ = (
            f"The choice K={self.best_k_} rests on fits that failed their convergence "
            f"checks: {details}. Their elpd may be wrong; increase `tune` and `draws` "
            "(or set retune=2), or narrow k_range."
        )
        warnings.warn(
            f"SelectK: the comparison is not reliable. {self.reliability_}",
            ConvergenceWarning,
            stacklevel=3,
        )

    def _run(self, ks, X, y, fit_params, folds):
        """Fit every (K, fold) task in parallel; ``folds=None`` means full-data fits."""
        if folds is None:
            return dict(zip(ks, self._run_tasks([(k, None, "on all the data") for k in ks], X, y, fit_params)))
        tasks = [(k, i) for k in ks for i in range(len(folds))]
        jobs = [(k, folds[i], f"on fold {i + 1} of {len(folds)}") for k, i in tasks]
        return dict(zip(tasks, self._run_tasks(jobs, X, y, fit_params)))

    def _run_tasks(self, jobs, X, y, fit_params):
        """Run ``(K, split or None, description)`` fit jobs in parallel; results in order."""
        return Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_task)(clone(self.estimator), self.param_name, k, X, y, fit_params, split, where, self.retune)
            for k, split, where in jobs
        )

    def _refit_rows(self, loo, rows, X, y, fit_params, checks):
        """Exact leave-one-out for the rows PSIS cannot handle (``arviz.reloo``'s update).

        ``rows`` maps K to the rows whose Pareto k exceeds the threshold; each is left
        out of one fit of that K and its elpd term becomes the log predictive density of
        that fit. ``loo[K]`` is updated in place (``loo_i``, ``elpd_loo``, ``se``,
        ``p_loo``); the Pareto k of a refitted row is set to 0.
        """
        n_samples = _num_samples(X)
        everything = np.arange(n_samples)
        jobs = [
            (k, (np.delete(everything, i), np.array([i])), f"without row {i}")
            for k, idx in rows.items()
            for i in idx
        ]
        results = iter(self._run_tasks(jobs, X, y, fit_params))
        for k, idx in rows.items():
            elpd = loo[k]
            lppd = elpd.p_loo + elpd.elpd_loo
            for i in idx:
                scores, fit_checks = next(results)
                elpd.loo_i[i] = scores[0]
                elpd.pareto_k[i] = 0.0
                checks[k].append(fit_checks)
            elpd["elpd_loo"] = float(elpd.loo_i.values.sum())
            elpd["se"] = float(np.sqrt(n_samples * np.var(elpd.loo_i.values)))
            elpd["p_loo"] = float(lppd - elpd.elpd_loo)

    def _kfold_pointwise(self, ks, X, y, fit_params, splits, n_samples, checks):
        """Held-out elpd terms (rows x K); each fold fit's checks are appended to ``checks``."""
        results = self._run(ks, X, y, fit_params, folds=splits)
        pointwise = np.full((n_samples, len(ks)), np.nan)
        for j, k in enumerate(ks):
            for i, (_, test) in enumerate(splits):
                scores, fold_checks = results[(k, i)]
                pointwise[test, j] = scores
                checks.setdefault(k, []).append(fold_checks)
        if np.isnan(pointwise).any():
            raise ValueError(
                "The cross-validation splits do not hold out every row exactly once; "
                "K-fold elpd needs a partition of the rows (e.g. KFold)."
            )
        return pd.DataFrame(pointwise, columns=pd.Index(ks, name="K"))

    @staticmethod
    def _loo_waic(full_fits):
        loo, waic = {}, {}
        for k, est in full_fits.items():
            idata = getattr(est, "idata_", None)
            if idata is None or "log_likelihood" not in idata.groups():
                raise ValueError(
                    f"PSIS-LOO needs the fitted estimator's idata_ with a log_likelihood "
                    f"group; {type(est).__name__} (K={k}) has none (it is left out above 1e8 "
                    "draw x row cells). Use method='kfold'."
                )
            # arviz.loo and arviz.waic's numbers, without their warnings: SelectK reports
            # unreliable Pareto k itself, with the fits named.
            var_name = _log_lik_var(idata)
            loo[k], waic[k] = diagnostics.loo_and_waic(idata, var_name)
        return loo, waic

    # ------------------------------------------------------------- delegation

    def _best(self):
        check_is_fitted(self, "comparison_")
        if not hasattr(self, "best_estimator_"):
            raise AttributeError(
                "SelectK has no best_estimator_: with method='kfold' and refit=False no "
                "estimator is fitted on all the data. Use refit=True."
            )
        return self.best_estimator_

    @available_if(_estimator_has("predict"))
    def predict(self, X, y=None):
        """``best_estimator_.predict``."""
        return _call(self._best().predict, X, y)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X, y=None):
        """``best_estimator_.predict_proba``."""
        return _call(self._best().predict_proba, X, y)

    @available_if(_estimator_has("score_samples"))
    def score_samples(self, X, y=None):
        """``best_estimator_.score_samples``: each row's log posterior predictive density."""
        return _call(self._best().score_samples, X, y)

    @available_if(_estimator_has("score"))
    def score(self, X, y=None):
        """``best_estimator_.score``: mean log posterior predictive density."""
        return _call(self._best().score, X, y)

    @available_if(_estimator_has("sample"))
    def sample(self, n_samples=1):
        """``best_estimator_.sample``: draws from the posterior predictive distribution."""
        return self._best().sample(n_samples)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = self.estimator.__sklearn_tags__()
        tags.estimator_type = inner.estimator_type
        tags.input_tags = inner.input_tags
        tags.target_tags = inner.target_tags
        tags.non_deterministic = inner.non_deterministic
        return tags


def select_k(estimator, X, y=None, *, fit_params=None, **kwargs):
    """Fit :class:`SelectK` and return it.

    Parameters
    ----------
    estimator : estimator object
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,), optional
    fit_params : dict, optional
        Passed to ``SelectK.fit``.
    **kwargs
        ``SelectK`` parameters (``k_range``, ``method``, ``cv``, ``n_jobs``, ...).

    Returns
    -------
    SelectK
        Fitted; see ``comparison_``, ``best_k_`` and ``best_estimator_``.
    """
    return SelectK(estimator, **kwargs).fit(X, y, **(fit_params or {}))


# ------------------------------------------------------------------ workers


def _call(method, X, y):
    return method(X) if y is None else method(X, y)


def _sets_k(estimator, param_name):
    """Whether ``_k_params`` can set the number of components of ``estimator``."""
    params = estimator.get_params(deep=False)
    return param_name in params or (param_name == "n_components" and "components" in params)


def _k_params(estimator, param_name, k):
    """Parameters giving ``estimator`` K components.

    An estimator whose components are a list of families (``MarginalMixture``) gets K
    copies of its first family when asked for ``n_components``.
    """
    params = estimator.get_params(deep=False)
    if param_name not in params and param_name == "n_components" and "components" in params:
        return {"components": [list(params["components"])[0]] * int(k)}
    return {param_name: k}


def _fit_task(estimator, param_name, k, X, y, fit_params, split, where, retune=1):
    """One parallel task: fit on all rows (``split`` None; returns the estimator) or on a
    split's training rows (returns the held-out rows' log predictive densities and the
    fit's convergence checks). ``where`` describes the rows for the log and errors.
    """
    start = time.perf_counter()
    try:
        estimator.set_params(**_k_params(estimator, param_name, k))
        if split is None:
            _fit_checked(estimator, retune, X, y, **fit_params)
            converged = getattr(estimator, "converged_", None)
            status = "" if converged is None else ("; converged" if converged else "; NOT converged")
            _log.info("K=%d fitted %s in %.1f s%s", k, where, time.perf_counter() - start, status)
            return estimator
        train, test = split
        n_samples = _num_samples(X)
        X_train, X_test = _safe_indexing(X, train), _safe_indexing(X, test)
        y_train = None if y is None else _safe_indexing(y, train)
        y_test = None if y is None else _safe_indexing(y, test)
        params = {
            name: _safe_indexing(value, train) if _is_per_row(value, n_samples) else value
            for name, value in fit_params.items()
        }
        _fit_checked(estimator, retune, X_train, y_train, **params)
        _log.info("K=%d fitted %s in %.1f s", k, where, time.perf_counter() - start)
        scores = np.asarray(_call(estimator.score_samples, X_test, y_test), dtype=float)
        return scores, _fit_checks(estimator)
    except Exception as exc:
        raise RuntimeError(
            f"SelectK: fitting K={k} ({type(estimator).__name__} with {param_name}={k}) "
            f"{where} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _fit_checked(estimator, retune, X, y, **fit_params):
    """Fit; when the fit fails its convergence checks and ``retune > 1``, fit once more
    with ``tune`` multiplied by ``retune`` (the first attempt's warning is dropped).
    """
    if retune <= 1 or "tune" not in estimator.get_params(deep=False):
        return estimator.fit(X, y, **fit_params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(X, y, **fit_params)
    if getattr(estimator, "converged_", True):
        return estimator
    estimator.set_params(tune=estimator.get_params()["tune"] * retune)
    return estimator.fit(X, y, **fit_params)


def _fit_checks(estimator):
    """A fitted estimator's convergence checks: converged, max R-hat, divergences."""
    report = getattr(estimator, "convergence_", None) or {}
    return {
        "converged": bool(getattr(estimator, "converged_", True)),
        "max_rhat": float(report.get("rhat_max", np.nan)),
        "divergences": int(report.get("n_divergent", 0)),
    }


def _add_checks(table, checks, pareto_k):
    """Add the per-K convergence columns of ``comparison_`` (over every fit of that K)."""
    ks = table.index
    table["converged"] = [all(c["converged"] for c in checks[k]) for k in ks]
    table["max_rhat"] = [np.nanmax([c["max_rhat"] for c in checks[k]] + [-np.inf]) for k in ks]
    table["max_rhat"] = table["max_rhat"].replace(-np.inf, np.nan)
    table["divergences"] = [sum(c["divergences"] for c in checks[k]) for k in ks]
    table["max_pareto_k"] = [np.nan if pareto_k is None else pareto_k[k] for k in ks]


def _rows(n):
    return f"{n} row" if n == 1 else f"{n} rows"


def _is_per_row(value, n_samples):
    if value is None or isinstance(value, (str, bytes)) or np.isscalar(value):
        return False
    try:
        return _num_samples(value) == n_samples
    except TypeError:
        return False


# ------------------------------------------------------------------ tables


def _log_lik_var(idata):
    names = [str(v) for v in idata.log_likelihood.data_vars]
    if len(names) == 1:
        return names[0]
    for name in ("y", "X"):
        if name in names:
            return name
    raise ValueError(f"Ambiguous log_likelihood variables {names}.")


def _lppd(estimator):
    """Log pointwise predictive density of the training rows, from ``idata_``."""
    idata = getattr(estimator, "idata_", None)
    if idata is None or "log_likelihood" not in idata.groups():
        return None
    ll = idata.log_likelihood[_log_lik_var(idata)].values
    ll = ll.reshape(-1, ll.shape[-1])
    return float(np.sum(logsumexp(ll, axis=0) - np.log(ll.shape[0])))


def _loo_table(loo, pareto_k):
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.compare(loo, ic="loo", method="stacking", scale="log")
    table = table.rename(columns={"elpd_loo": "elpd", "p_loo": "p"}).drop(columns="scale")
    # After exact refits (``SelectK._refit_rows``) the refitted rows' Pareto k are 0.
    table["warning"] = [bool(np.any(loo[k].pareto_k.values > PARETO_K_THRESHOLD)) for k in table.index]
    table["pareto_k_max"] = [pareto_k[k] for k in table.index]
    ks = sorted(loo)
    pointwise = pd.DataFrame(
        np.column_stack([np.asarray(loo[k].loo_i).ravel() for k in ks]),
        columns=pd.Index(ks, name="K"),
    )
    table.index = table.index.astype(int)
    return table, pointwise


def _kfold_table(pointwise, lppd=None):
    """An ``arviz.compare``-shaped table from a (rows x K) matrix of elpd terms."""
    values = pointwise.to_numpy()
    ks = list(pointwise.columns)
    n = values.shape[0]
    elpd = values.sum(axis=0)
    se = np.sqrt(n * values.var(axis=0))
    order = np.argsort(-elpd, kind="stable")
    best = order[0]
    dse = np.sqrt(n * (values[:, [best]] - values).var(axis=0))
    p = np.array([np.nan if not lppd or lppd.get(k) is None else lppd[k] - e for k, e in zip(ks, elpd)])
    table = pd.DataFrame(
        {
            "rank": np.empty(len(ks), dtype=int),
            "elpd": elpd,
            "p": p,
            "elpd_diff": elpd[best] - elpd,
            "weight": stacking_weights(values),
            "se": se,
            "dse": dse,
            "warning": np.zeros(len(ks), dtype=bool),
        },
        index=pd.Index(ks, name="K"),
    )
    table = table.iloc[order]
    table["rank"] = np.arange(len(ks))
    return table


def stacking_weights(lpd):
    """Stacking weights from pointwise log predictive densities.

    Maximizes ``sum_i log(sum_k w_k exp(lpd[i, k]))`` over the simplex (Yao, Vehtari,
    Simpson and Gelman 2018), through a softmax parametrization.

    Parameters
    ----------
    lpd : ndarray of shape (n_samples, n_models)

    Returns
    -------
    ndarray of shape (n_models,)
    """
    lpd = np.asarray(lpd, dtype=float)
    n, m = lpd.shape
    if m == 1:
        return np.ones(1)
    dens = np.exp(lpd - lpd.max(axis=1, keepdims=True))

    def objective(z):
        w = softmax(z)
        mix = dens @ w
        grad_w = -(dens / mix[:, None]).sum(axis=0)
        return -np.sum(np.log(mix)), w * (grad_w + n)

    result = minimize(objective, np.zeros(m), jac=True, method="L-BFGS-B")
    w = softmax(result.x)
    return w / w.sum()


# --------------------------------------------------- sparse overfitted mixture


def posterior_n_components(
    estimator,
    X,
    y=None,
    *,
    k_max=10,
    concentration=0.01,
    threshold=1,
    method="auto",
    n_sweeps=60000,
    n_burn=2000,
    param_name="n_components",
    concentration_param="weight_concentration_prior",
    random_state=None,
    **fit_params,
):
    """Posterior over the number of occupied components of a sparse overfitted mixture.

    One mixture with ``k_max`` components and a small Dirichlet concentration ``e0`` on
    the weights empties the components the data do not need (Rousseau and Mengersen
    2011; Malsiner-Walli, Frühwirth-Schnatter and Grün 2016); the share of posterior
    draws with k occupied components estimates P(K = k | data).

    * ``method="gibbs"`` (Gaussian mixtures with diagonal covariances or one feature): a
      Gibbs sampler over the assignments (:mod:`bayesmix._gibbs`): the sparse finite
      mixture of Malsiner-Walli et al. with ``e0 = concentration`` (or their prior
      ``e0 ~ Gamma(10, 10 k_max)`` with ``concentration="gamma"``) and Richardson and
      Green's (1997) component priors (means
      ``Normal(midrange, range)``, precisions ``Gamma(2, beta)``, ``beta ~ Gamma(0.2,
      10 / range^2)``), per feature. Rounded data (the estimator's ``resolution``) are
      handled exactly by data augmentation. ``chains`` chains (the estimator's) of
      ``n_sweeps`` sweeps after ``n_burn``.
    * ``method="nuts"``: the estimator itself, fitted with NUTS, ``k_max`` components and
      ``concentration_param=concentration`` (default 0.01); each draw's assignments are
      drawn from its responsibilities. NUTS meets a funnel where a weight approaches 0,
      so expect divergent transitions and chains that disagree about K; both are
      reported and warned about.
    * ``"auto"``: "gibbs" where it applies, "nuts" otherwise.

    Parameters
    ----------
    estimator : bayesmix estimator
        Template. For "nuts" it is cloned with ``param_name=k_max``,
        ``concentration_param=concentration`` and (when it has one) ``relabel=None``.
        For "gibbs" only its ``chains``, ``random_state`` and ``resolution`` are used.
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,), optional
    k_max : int, default=10
        Components of the overfitted mixture; should exceed the plausible K.
    concentration : float or "gamma", default=0.01
        Dirichlet concentration ``e0`` of the weights. Values well below 1 / 2 (the
        boundary of Rousseau and Mengersen's result for Gaussian components) empty the
        extra components; 0.01 (Malsiner-Walli et al.'s fixed choice) puts prior mass
        on few occupied components (for 200 rows and k_max=10, P(K+ = 1, 2, 3) = 0.59,
        0.33, 0.07). "gamma" ("gibbs" only): ``e0 ~ Gamma(10, 10 k_max)``, whose prior
        on K+ centres on 4 and which finds too many components in simulations.
    threshold : int, default=1
        Least number of rows for a component to count as occupied ("nuts" only; the
        Gibbs sampler counts components with at least one row).
    method : {"auto", "gibbs", "nuts"}, default="auto"
    n_sweeps, n_burn : int, default=60000, 2000
        Gibbs sweeps kept and discarded per chain. The number of occupied components
        moves slowly (on galaxy about 2% of the sweeps are effectively independent),
        so P(K) needs many sweeps: with 4 chains of 60000, P(K = k) differed by at most
        0.025, 0.023 and 0.031 between 5 seeds on enzyme, galaxy and acidity (20000
        sweeps: up to 0.074 on enzyme), in 13, 4.5 and 5 s per call (245, 82 and 155
        rows; the time grows with rows times ``k_max``).
    param_name : str, default="n_components"
    concentration_param : str or None, default="weight_concentration_prior"
        The estimator's parameter for the Dirichlet concentration ("nuts"); None to leave
        the estimator's prior as it is.
    random_state : int, RandomState or None
        Seeds the sampler ("gibbs") or the assignment draws ("nuts"); defaults to the
        estimator's ``random_state``.
    **fit_params
        Passed to ``fit`` ("nuts").

    Returns
    -------
    probabilities : pandas.Series
        P(K = k) for k = 1 .. k_max (index ``K``). Its ``attrs`` hold the checks:
        ``method``, ``divergent_share`` (share of divergent transitions; 0 for Gibbs),
        ``chain_probabilities`` (a DataFrame, P(K) per chain), ``chain_disagreement``
        (largest difference between one chain's P(K = k) and the pooled one), ``rhat``
        (R-hat of the number of occupied components) and ``reliable`` (divergent share
        at most 1%, chain disagreement at most 0.1, R-hat at most 1.05). A
        ``ConvergenceWarning`` is raised when not reliable.
    fitted : estimator or dict
        "nuts": the fitted overfitted mixture (draws not relabeled). "gibbs": a dict with
        ``k_occupied`` (chains, sweeps), ``e0`` (chains, sweeps) and ``e0_acceptance``.
    """
    from ._gibbs import gibbs_chains

    if not isinstance(k_max, Integral) or k_max < 1:
        raise ValueError(f"k_max must be a positive integer, got {k_max!r}.")
    if not isinstance(threshold, Real) or threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold!r}.")
    if method not in ("auto", "gibbs", "nuts"):
        raise ValueError(f"method must be 'auto', 'gibbs' or 'nuts', got {method!r}.")
    if not (concentration == "gamma" or (isinstance(concentration, Real) and concentration > 0)):
        raise ValueError(f"concentration must be a positive number or 'gamma', got {concentration!r}.")
    gibbs_ok = _gibbs_applies(estimator, X, y)
    if method == "gibbs" and not gibbs_ok:
        raise ValueError(
            "method='gibbs' needs a BayesianGaussianMixture with one feature or "
            "covariance_type 'diag' or 'spherical' (and no y); use method='nuts'."
        )
    seed_source = estimator.get_params().get("random_state") if random_state is None else random_state
    if concentration == "gamma" and not (method == "gibbs" or (method == "auto" and gibbs_ok)):
        raise ValueError("concentration='gamma' needs the Gibbs sampler (method='gibbs').")
    if method == "gibbs" or (method == "auto" and gibbs_ok):
        from sklearn.utils import check_random_state

        from .resolution import resolve_resolution

        X = np.asarray(X, dtype=float).reshape(_num_samples(X), -1)
        resolution = resolve_resolution(estimator.get_params().get("resolution", None), X)
        chains = int(estimator.get_params().get("chains", 4))
        seed = check_random_state(seed_source).randint(np.iinfo(np.int32).max)
        fitted = gibbs_chains(
            X, k_max, chains, n_sweeps, n_burn, np.random.default_rng(seed),
            resolution=resolution, e0=None if concentration == "gamma" else concentration,
        )
        return _k_posterior(fitted["k_occupied"], k_max, "gibbs", 0.0), fitted

    est = clone(estimator)
    params = est.get_params(deep=False)
    if concentration_param is not None and params.get("weight_concentration_prior_type") == "dirichlet_process":
        raise ValueError(
            f"posterior_n_components sets a Dirichlet concentration of {concentration}, but the "
            "estimator's weights have a stick-breaking prior, where a small concentration puts "
            "nearly all weight on the first component. Use weight_concentration_prior_type="
            "'dirichlet_distribution', or keep the process's own concentration with "
            "concentration_param=None."
        )
    new = _k_params(est, param_name, int(k_max))
    if concentration_param is not None:
        new[concentration_param] = concentration
    if "relabel" in params:
        new["relabel"] = None
    est.set_params(**new)
    est.fit(X, y, **fit_params)
    if y is None:
        z = est.sample_assignments(X, random_state=seed_source)
    else:
        z = est.sample_assignments(X, y, random_state=seed_source)
    n_chains, n_draws = z.shape[:2]
    z = z.reshape(n_chains * n_draws, -1)
    offsets = (k_max * np.arange(z.shape[0]))[:, None]
    counts = np.bincount((z + offsets).ravel(), minlength=z.shape[0] * k_max).reshape(-1, k_max)
    occupied = (counts >= threshold).sum(axis=1).reshape(n_chains, n_draws)
    divergent = 0.0
    stats = getattr(est, "idata_", None)
    if stats is not None and "sample_stats" in stats.groups() and "diverging" in stats.sample_stats:
        divergent = float(stats.sample_stats["diverging"].values.mean())
    return _k_posterior(occupied, k_max, "nuts", divergent), est


#: posterior_n_components: thresholds of its ``reliable`` check.
K_POSTERIOR_MAX_DIVERGENT = 0.01
K_POSTERIOR_MAX_CHAIN_DISAGREEMENT = 0.1
K_POSTERIOR_MAX_RHAT = 1.05


def _gibbs_applies(estimator, X, y):
    from .gaussian import BayesianGaussianMixture

    if y is not None or not isinstance(estimator, BayesianGaussianMixture):
        return False
    return _num_features(X) == 1 or estimator.covariance_type in ("diag", "spherical")


def _k_posterior(occupied, k_max, method, divergent_share):
    """P(K) from (chains, draws) occupied counts, with the checks in ``attrs``; warns."""
    from .diagnostics import rhat

    index = pd.Index(np.arange(1, k_max + 1), name="K")
    per_chain = np.stack([np.bincount(c, minlength=k_max + 1)[1:] / c.size for c in occupied])
    pooled = np.bincount(occupied.ravel(), minlength=k_max + 1)[1:] / occupied.size
    series = pd.Series(pooled, index=index, name="P(K=k)")
    disagreement = float(np.max(np.abs(per_chain - pooled))) if len(per_chain) > 1 else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        occupied_rhat = float(rhat(occupied[:, :, None])[0])
    reliable = (
        divergent_share <= K_POSTERIOR_MAX_DIVERGENT
        and not disagreement > K_POSTERIOR_MAX_CHAIN_DISAGREEMENT
        and not occupied_rhat > K_POSTERIOR_MAX_RHAT
    )
    series.attrs = {
        "method": method,
        "divergent_share": divergent_share,
        "chain_probabilities": pd.DataFrame(per_chain, columns=index),
        "chain_disagreement": disagreement,
        "rhat": occupied_rhat,
        "reliable": bool(reliable),
    }
    if not reliable:
        warnings.warn(
            f"posterior_n_components ({method}): the posterior over K is not reliable: "
            f"{divergent_share:.1%} divergent transitions, chains differ by up to "
            f"{disagreement:.2f} in P(K = k), R-hat of K {occupied_rhat:.3f}. "
            + ("Use method='gibbs' where it applies, or " if method == "nuts" else "")
            + "run longer (n_sweeps, draws).",
            ConvergenceWarning,
            stacklevel=3,
        )
    return series
