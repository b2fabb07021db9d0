"""The fit skeleton every bayesmix estimator shares.

``BaseBayesianMixture.fit`` runs the same steps for every model (validate, standardize,
resolve priors, get the compiled model, sample, move to the user's scale, relabel,
summarize); subclasses fill in a few hooks, in the manner of scikit-learn's
``BaseMixture``. Every predictive method derives from one hook, ``_log_joint``: the
per-draw log of weight times component density for each row and component. A subclass
with a faster pass may also override ``_responsibilities`` and ``_row_log_likelihood``
(their normalization and sum over components), as the Gaussian mixture does with its
kernels.
"""

import math
import threading
import warnings
from abc import ABCMeta, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral

import arviz as az
import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _sampling
from .diagnostics import (
    advi_convergence,
    arviz_on_numpy,
    convergence_report,
    nearly_empty_components,
    warn_if_not_converged,
)
from .models.special import Z_FAR
from .relabel import relabel as relabel_posterior
from .relabel import relabel_diagnostics, softmax_rows

RELABEL_METHODS = ("auto", "ordered", "sort", "stephens", "ecr")
# Rows and draws are processed in chunks of about this many (draw, row, component) cells,
# which bounds memory for large data.
_CHUNK_CELLS = 2_000_000
# The pointwise log-likelihood (for PSIS-LOO) is kept only up to this many
# (draw, row) cells, 800 MB; beyond it ``idata_`` has no log_likelihood group.
_LOG_LIKELIHOOD_MAX_CELLS = 100_000_000
# Stephens and ECR find permutations from at most this many rows (a random subset).
# 500 rather than 1000 halves their cost (about 0.05 s of a 0.4 s fit) and gave the same
# permutation for every draw on six test posteriors, among them overlapping clusters and
# a 2% component; only draws that swap two empty components of an overfitted fit differ
# (benchmarks/validation/findings.md, section 6).
_RELABEL_MAX_ROWS = 500
#: Smallest eigenvalue, relative to the largest, of the standardized data's scatter matrix
#: under which columns count as linearly dependent (``dependent_columns``): columns
#: this close to dependence need correlations within about 1e-10 of 1.
DEPENDENT_COLUMNS = 1e-10
# A posterior predictive group holds at most this many values (400 MB); beyond it
# ``sample_posterior_predictive`` keeps every n-th draw.
_PREDICTIVE_MAX_VALUES = 50_000_000


class BaseBayesianMixture(BaseEstimator, metaclass=ABCMeta):
    """Base class of the bayesmix estimators; not for direct use."""

    # Whether nutpie jitters the data-driven starting points of ``_initial_values``
    # (the other free variables are jittered either way).
    _jitter_initial_values = True

    def _low_rank_mass_matrix(self, n_features):
        """Whether nutpie adapts a diagonal-plus-low-rank mass matrix (default: diagonal)."""
        return False

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "relabel": [StrOptions(set(RELABEL_METHODS)), None],
        "draws": [Interval(Integral, 1, None, closed="left")],
        # nutpie needs at least one tuning step (it panics on zero).
        "tune": [Interval(Integral, 1, None, closed="left")],
        "chains": [Interval(Integral, 1, None, closed="left")],
        "cores": [Interval(Integral, 1, None, closed="left"), None],
        "backend": [StrOptions(set(_sampling.BACKENDS))],
        "random_state": ["random_state"],
        "progressbar": ["boolean"],
        "inference": [StrOptions({"nuts", "advi"})],
        "advi_steps": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        n_components,
        *,
        relabel,
        draws,
        tune,
        chains,
        cores,
        backend,
        random_state,
        progressbar,
        inference,
        advi_steps,
        batch_size,
    ):
        self.n_components = n_components
        self.relabel = relabel
        self.draws = draws
        self.tune = tune
        self.chains = chains
        self.cores = cores
        self.backend = backend
        self.random_state = random_state
        self.progressbar = progressbar
        self.inference = inference
        self.advi_steps = advi_steps
        self.batch_size = batch_size

    # ------------------------------------------------------------------ hooks

    @abstractmethod
    def _validate_fit_data(self, X, y):
        """Validate fit inputs; return ``(X, y)`` as float arrays (``y`` may be None)."""

    @abstractmethod
    def _standardization(self, X, y, sample_weight):
        """Return the location and scale that take the data to unit scale."""

    @abstractmethod
    def _resolve_priors(self, X, y, scaling):
        """Set the ``*_prior_`` attributes (user scale) from the data and its scaling."""

    @abstractmethod
    def _structure(self, n_features, relabel_method):
        """Return the hashable key that fixes the compiled model's structure."""

    @abstractmethod
    def _build_model(self, n_features, relabel_method):
        """Return the ``pm.Model`` for this structure (standardized scale)."""

    def _model_kernel(self, n_features, relabel_method):
        """The model's whole log-density as numba functions, or None to compile PyMC's graph.

        See ``bayesmix.models.kernels``: such a kernel is compiled once per machine
        for every K instead of once per structure.
        """
        return None

    def _post_fit_functions(self, n_features, relabel_method):
        """The numba functions ``fit`` runs after sampling: ("module:name", argument types).

        A model's first compile on a machine hands them to a helper process (see
        ``bayesmix._nutpie_numba._CompileHelper``); none by default.
        """
        return ()

    @abstractmethod
    def _model_data(self, Xs, ys, sample_weight, scaling):
        """Return the ``pm.Data`` values for this fit (standardized scale)."""

    @abstractmethod
    def _initial_values(self, Xs, ys, sample_weight, relabel_method, rng):
        """Return data-driven starting points (standardized, constrained space)."""

    @abstractmethod
    def _to_user_scale(self, posterior, scaling):
        """Map standardized draws (name -> array) to user-scale ``(arrays, dims)``."""

    @abstractmethod
    def _log_joint(self, X, y, params):
        """Per-draw ``log w_k + log p(row | component k)``, shape (n_draws, n_rows, K)."""

    @abstractmethod
    def _set_point_estimates(self, params):
        """Set the fitted summary attributes (``weights_`` ...) from the draws."""

    def _auto_relabel(self, n_features):
        """The relabeling method that ``relabel="auto"`` stands for."""
        return "stephens"

    def _sort_by(self):
        """Posterior variable that ``relabel="sort"`` orders by."""
        return "means"

    def _validate_predict_data(self, X, y):
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X, y

    # ------------------------------------------------------------------- fit

    def fit(self, X, y=None, sample_weight=None):
        """Sample the posterior of the mixture given the data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,), optional
            Response, for estimators that model one; ignored otherwise.
        sample_weight : array-like of shape (n_samples,), optional
            Each row's log-likelihood is multiplied by its weight, so a weight of 2
            counts a row twice. The fit sees the weighted distinct rows (zero weights
            dropped, identical rows merged, rows sorted), so weights and repeated
            rows give identical results; ``idata_.log_likelihood`` keeps one entry
            per row given.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._validate_params()
        X, y = self._validate_fit_data(X, y)
        n_samples = X.shape[0]
        if n_samples < max(2, self.n_components):
            raise ValueError(
                f"Expected n_samples >= n_components: n_samples={n_samples} should be >= "
                f"n_components={self.n_components} "
                "and at least 2: a mixture needs at least one row per component."
            )
        sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        if np.any(sample_weight < 0):
            raise ValueError("sample_weight must be non-negative.")
        # The posterior depends on the data only through its weighted empirical
        # distribution, and so does everything below (standardization, priors, k-means,
        # sampling): weighted rows and repeated rows give bit-identical inputs.
        Xw, yw, weights = empirical_distribution(X, y, sample_weight)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))

        scaling = self._standardization(Xw, yw, weights)
        self._resolve_priors(Xw, yw, scaling)
        Xs, ys = _apply_scaling(Xw, yw, scaling)
        method = self.relabel if self.relabel != "auto" else self._auto_relabel(X.shape[1])

        n_features = X.shape[1]
        initial_values = self._initial_values(Xs, ys, weights, method, rng)
        entry = _sampling.get_compiled(
            (type(self).__name__, self._structure(n_features, method)),
            lambda: self._build_model(n_features, method),
            initial_values,
            # ADVI runs on PyMC's own compiled functions: no nutpie compilation needed.
            backend=self.backend if self.inference == "nuts" else "pymc",
            jitter_initial_values=self._jitter_initial_values,
            progressbar=self.progressbar,
            kernel=self._model_kernel(n_features, method),
            post_fit_functions=self._post_fit_functions(n_features, method),
        )
        model_data = self._model_data(Xs, ys, weights, scaling)
        if self.inference == "advi":
            raw, advi_report = _sampling.fit_advi(
                entry,
                model_data,
                initial_values,
                steps=self.advi_steps,
                batch_size=self.batch_size,
                draws=self.draws,
                seed=seed,
                progressbar=self.progressbar,
            )
        else:
            raw = _sampling.sample(
                entry,
                model_data,
                initial_values,
                draws=self.draws,
                tune=self.tune,
                chains=self.chains,
                cores=self.cores,
                seed=seed,
                progressbar=self.progressbar,
                low_rank_mass_matrix=self._low_rank_mass_matrix(n_features),
            )
        arrays, dims = self._to_user_scale(
            {name: raw.posterior[name].values for name in raw.posterior.data_vars}, scaling
        )
        idata = az.from_dict(posterior=arrays, dims=dims, coords=self._coords(n_features))
        if "sample_stats" in raw.groups():
            idata.add_groups(sample_stats=raw.sample_stats)
        shape = (idata.posterior.sizes["chain"], idata.posterior.sizes["draw"], n_samples)
        row_loglik = None
        with ThreadPoolExecutor(1) as pool:
            # A row's log-likelihood sums over the components, so it does not depend on
            # their labels: its (nogil) kernel runs on the second core while relabeling
            # runs, and on both once relabeling is done.
            if np.prod(shape) <= _LOG_LIKELIHOOD_MAX_CELLS:
                row_loglik = _DrawChunks(lambda params: self._row_log_likelihood(X, y, params), _flatten_draws(idata.posterior))
                helper = pool.submit(row_loglik.work)
            try:
                idata = self._relabel(idata, Xw, yw, method, rng)
            except BaseException:  # Ctrl-C too: the helper stops after its chunk
                if row_loglik is not None:
                    row_loglik.stop()
                raise
            if row_loglik is not None:
                row_loglik.work()
                helper.result()

        params = _flatten_draws(idata.posterior)
        if row_loglik is not None:
            name = "y" if y is not None else "X"
            idata.add_groups(
                log_likelihood=xr.Dataset(
                    {name: (("chain", "draw", f"{name}_row"), row_loglik.out.reshape(shape))},
                    coords={"chain": idata.posterior.chain, "draw": idata.posterior.draw},
                )
            )
        observed, constant = self._data_groups(X, y)
        idata.add_groups(observed_data=xr.Dataset(observed))
        if constant:
            idata.add_groups(constant_data=xr.Dataset(constant))
        self.idata_ = idata
        self._set_point_estimates(params)
        if self.inference == "advi":
            self.convergence_ = advi_convergence(advi_report)
        else:
            # R-hat after relabeling is already known for the relabeled variables.
            known = (self.relabel_diagnostics_ or {}).get("rhat_after")
            self.convergence_ = convergence_report(idata, rhat_by_variable=known)
            hint = nearly_empty_components(self.weights_) if self.convergence_["problems"] else None
            if hint:
                self.convergence_["problems"].append(hint)
        self.converged_ = not self.convergence_["problems"]
        warn_if_not_converged(
            self.convergence_, f"{type(self).__name__}(n_components={self.n_components})"
        )
        return self

    def _relabel(self, idata, X, y, method, rng):
        if method in (None, "ordered") or self.n_components == 1:  # one component: no labels to switch
            self.relabel_diagnostics_ = None
            return idata
        resp = None
        if method in ("stephens", "ecr"):
            rows = np.arange(X.shape[0])
            if rows.size > _RELABEL_MAX_ROWS:
                rows = np.sort(rng.choice(rows, _RELABEL_MAX_ROWS, replace=False))
            params = _flatten_draws(idata.posterior)
            resp = self._responsibilities(X[rows], None if y is None else y[rows], params)
            n_chains, n_draws = idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]
            resp = resp.reshape(n_chains, n_draws, *resp.shape[1:])
        relabeled, perms = relabel_posterior(idata, method=method, resp=resp, by=self._sort_by(), dim="component")
        self.relabel_diagnostics_ = relabel_diagnostics(idata, relabeled, perms)
        return relabeled

    def _data_groups(self, X, y):
        """Variables (name -> (dims, values)) of the ``observed_data`` and ``constant_data`` groups.

        ArviZ's layout: the modelled variable is observed data, covariates constant data
        (so that az.plot_ppc pairs ``y`` with its replicates, not ``X``).
        """
        X_data = {"X": (("X_row", "feature"), X)}
        if y is None:
            return X_data, {}
        return {"y": (("y_row",), y)}, X_data

    def _coords(self, n_features):
        return {"component": list(range(self.n_components)), "feature": self._feature_labels(range(n_features))}

    def _feature_labels(self, columns):
        """The user's names of the columns at these indices (``feature_names_in_``), else the indices."""
        names = getattr(self, "feature_names_in_", None)
        return [names[j] for j in columns] if names is not None else [int(j) for j in columns]

    # ------------------------------------------------------ predictive maths

    def _chunks(self, n_draws, n_rows):
        """Yield row slices small enough that a (draw, row, component) block stays bounded."""
        cells_per_row = n_draws * self.n_components
        rows_per_chunk = max(1, _CHUNK_CELLS // max(cells_per_row, 1))
        for start in range(0, n_rows, rows_per_chunk):
            yield slice(start, min(start + rows_per_chunk, n_rows))

    def _responsibilities(self, X, y, params):
        """Per-draw membership probabilities (S, N, K), from ``_log_joint``."""
        return responsibilities(self._log_joint(X, y, params), overwrite=True)

    def _row_log_likelihood(self, X, y, params):
        """Per-draw log-density of each row, marginalized over components: (S, N)."""
        n_draws = next(iter(params.values())).shape[0]
        out = np.empty((n_draws, X.shape[0]))
        for rows in self._chunks(n_draws, X.shape[0]):
            log_joint = self._log_joint(X[rows], None if y is None else y[rows], params)
            out[:, rows] = logsumexp(log_joint, axis=2)
        return out

    def _posterior_params(self):
        return _flatten_draws(self.idata_.posterior)

    def predict_proba(self, X, y=None):
        """Posterior probability of each component for each row.

        The responsibilities of every posterior draw, averaged over draws.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_components)
            Rows sum to 1.
        """
        check_is_fitted(self)
        X, y = self._validate_predict_data(X, y)
        params = self._posterior_params()
        n_draws = next(iter(params.values())).shape[0]
        out = np.empty((X.shape[0], self.n_components))
        for rows in self._chunks(n_draws, X.shape[0]):
            out[rows] = self._responsibilities(X[rows], None if y is None else y[rows], params).mean(axis=0)
        return out / out.sum(axis=1, keepdims=True)

    def predict(self, X, y=None):
        """Most probable component of each row (argmax of ``predict_proba``)."""
        return self.predict_proba(X, y).argmax(axis=1)

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return the most probable component of each training row."""
        return self.fit(X, y, sample_weight=sample_weight).predict(X, y)

    def score_samples(self, X, y=None):
        """Log posterior predictive density of each row.

        ``log mean_s p(row | theta_s)``, the density averaged over posterior draws.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X, y = self._validate_predict_data(X, y)
        params = self._posterior_params()
        n_draws = next(iter(params.values())).shape[0]
        out = np.empty(X.shape[0])
        for rows in self._chunks(n_draws, X.shape[0]):
            row_loglik = self._row_log_likelihood(X[rows], None if y is None else y[rows], params)
            out[rows] = logsumexp(row_loglik, axis=0)
        return out - np.log(n_draws)

    def score(self, X, y=None):
        """Mean log posterior predictive density of the rows (higher is better)."""
        return float(np.mean(self.score_samples(X, y)))

    def sample_assignments(self, X, y=None, random_state=None):
        """Draw each row's component under every posterior draw.

        What a Gibbs sampler over the discrete assignments would give: for each posterior
        draw, each row's component is drawn from its responsibilities under that draw.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        random_state : int, RandomState instance or None
            Defaults to the estimator's ``random_state``.

        Returns
        -------
        ndarray of int, shape (n_chains, n_draws, n_samples)
        """
        check_is_fitted(self)
        X, y = self._validate_predict_data(X, y)
        rng = check_random_state(self.random_state if random_state is None else random_state)
        params = self._posterior_params()
        n_draws = next(iter(params.values())).shape[0]
        out = np.empty((n_draws, X.shape[0]), dtype=int)
        for rows in self._chunks(n_draws, X.shape[0]):
            probs = self._responsibilities(X[rows], None if y is None else y[rows], params)
            out[:, rows] = draw_categorical(probs, rng)
        posterior = self.idata_.posterior
        return out.reshape(posterior.sizes["chain"], posterior.sizes["draw"], -1)

    def save(self, path):
        """Write the fitted estimator to a netCDF file; read it back with ``bayesmix.load``.

        The file holds ``idata_`` (posterior, log-likelihood, observed data, sampler
        statistics) and, in its attributes, the parameters, the other fitted attributes
        and the bayesmix version.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        path
        """
        from ._persistence import save

        check_is_fitted(self)
        return save(self, path)

    def _draw_components(self, n_samples):
        """For posterior-predictive rows: a random posterior draw and a component for each.

        Returns ``(rng, params, draw, labels)``: the estimator's random state, the flattened
        posterior, and for each of the ``n_samples`` rows its draw index and component.
        """
        check_is_fitted(self)
        check_n_samples(n_samples, self.n_features_in_)
        rng = check_random_state(self.random_state)
        params = self._posterior_params()
        draw = rng.randint(params["weights"].shape[0], size=n_samples)
        return rng, params, draw, draw_categorical(params["weights"][draw], rng)

    def _component_rows(self, params, draw, labels, rng):
        """One value from component ``labels[i]`` of posterior draw ``draw[i]`` for each i.

        Returns an array of shape (n, n_features); the density estimators define it.
        """
        raise NotImplementedError

    def _replicate(self, X, params, rng, training_rows=None):
        """A replicate of the observed rows ``X`` under every draw: (n_draws, n_rows, ...).

        Density estimators draw each row's component from the draw's weights and its
        value from that component; the regression overrides this (rows depend on ``X``).
        """
        n_draws, n_rows = params["weights"].shape[0], X.shape[0]
        weights = np.broadcast_to(params["weights"][:, None, :], (n_draws, n_rows, self.n_components))
        labels = draw_categorical(weights, rng).ravel()
        draw = np.repeat(np.arange(n_draws), n_rows)
        return self._component_rows(params, draw, labels, rng).reshape(n_draws, n_rows, -1)

    def sample_posterior_predictive(self, random_state=None, thin=None):
        """Add a ``posterior_predictive`` group to ``idata_``: replicates of the data.

        For every kept posterior draw, one replicate of the observed data set: each
        training row's component is drawn from that draw's weights (given the row's
        ``X`` for the regression) and its value from that component. The group's
        variable and row dimension are those of ``observed_data`` (``X`` with dims
        ``(chain, draw, X_row, feature)`` for the density estimators, ``y`` with dims
        ``(chain, draw, y_row)`` for the regression), so that ``az.plot_ppc(est.idata_)``
        compares them with the data, as in PyMC's mixture guide. A previous group is
        replaced. Sample weights of the fit are not used: each row is replicated once.

        Parameters
        ----------
        random_state : int, RandomState instance or None
            Defaults to the estimator's ``random_state``.
        thin : int, optional
            Keep every ``thin``-th draw of each chain. ``None`` keeps all of them unless
            the group would exceed 5e7 values (400 MB); then draws are thinned to fit,
            with a warning.

        Returns
        -------
        arviz.InferenceData
            ``idata_`` itself, with the new group.
        """
        check_is_fitted(self)
        observed = self.idata_.observed_data
        name = "y" if "y" in observed else "X"
        target = observed[name]
        posterior = self.idata_.posterior
        n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
        size = n_chains * n_draws * target.size
        if thin is None:
            thin = max(1, math.ceil(size / _PREDICTIVE_MAX_VALUES))
            if thin > 1:
                warnings.warn(
                    f"A posterior predictive of every draw would hold {size:.3g} values "
                    f"({8 * size / 1e9:.1f} GB); keeping every {thin}-th draw of each chain. "
                    "Pass thin= to choose.",
                    UserWarning,
                    stacklevel=2,
                )
        if not isinstance(thin, (int, np.integer)) or isinstance(thin, bool) or thin < 1:
            raise ValueError(f"thin must be a positive integer, got {thin!r}.")
        posterior = posterior.isel(draw=slice(None, None, thin))
        kept = posterior.sizes["draw"]
        if n_chains * kept * target.size > _PREDICTIVE_MAX_VALUES:
            raise ValueError(
                f"One draw per chain already gives {n_chains * target.size:.3g} values, more "
                f"than the {_PREDICTIVE_MAX_VALUES:.0e} a posterior predictive group may hold: "
                "fit on fewer rows, or draw replicates of a subset with sample()."
            )
        rng = check_random_state(self.random_state if random_state is None else random_state)
        params = _flatten_draws(posterior)
        X = (observed if name == "X" else self.idata_.constant_data)["X"].values
        out = np.empty((n_chains * kept,) + target.shape)
        for rows in self._chunks(n_chains * kept, X.shape[0]):
            replicates = self._replicate(X[rows], params, rng, training_rows=rows)
            out[:, rows] = replicates.reshape(out[:, rows].shape)
        group = xr.Dataset(
            {name: (("chain", "draw", *target.dims), out.reshape(n_chains, kept, *target.shape))},
            coords={"chain": posterior.chain, "draw": posterior.draw},
        )
        if "posterior_predictive" in self.idata_.groups():
            del self.idata_.posterior_predictive
        self.idata_.add_groups(posterior_predictive=group)
        return self.idata_

    def summary(self, hdi_prob=0.9):
        """Tidy table of the relabeled posterior.

        Parameters
        ----------
        hdi_prob : float, default=0.9
            Probability mass of the highest-density intervals.

        Returns
        -------
        pandas.DataFrame
            One row per parameter element: mean, sd, interval bounds, R-hat and bulk and
            tail ESS (``arviz.summary``), plus ``separated``: for component-indexed
            parameters, whether this element's interval overlaps no other component's
            interval for the same element (are the components really distinct?).
        """
        check_is_fitted(self)
        posterior = self.idata_.posterior
        with arviz_on_numpy():
            table = az.summary(self.idata_, hdi_prob=hdi_prob, kind="all", round_to="none")
        lower, upper = table.columns[2], table.columns[3]
        separated = {}
        for name, var in posterior.data_vars.items():
            if "component" not in var.dims or var.sizes["component"] < 2:
                continue
            rows = table.loc[[i for i in table.index if i == name or i.startswith(f"{name}[")]]
            bounds = rows[[lower, upper]].to_numpy().reshape(
                *[var.sizes[d] for d in var.dims[2:]], 2
            )
            bounds = np.moveaxis(bounds, var.dims[2:].index("component"), 0)
            for idx, label in enumerate(rows.index):
                flat = np.unravel_index(idx, bounds.shape[:-1])
                k, rest = flat[var.dims[2:].index("component")], list(flat)
                rest.pop(var.dims[2:].index("component"))
                others = np.delete(bounds[(slice(None), *rest)], k, axis=0)
                lo, hi = bounds[(k, *rest)]
                separated[label] = bool(np.all((others[:, 0] > hi) | (others[:, 1] < lo)))
        table["separated"] = [separated.get(i, np.nan) for i in table.index]
        return table

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


# ``sample`` refuses to return more than this many values (800 MB of float64).
_MAX_SAMPLE_VALUES = 100_000_000


def check_n_samples(n_samples, values_per_sample):
    """Check the ``n_samples`` of a ``sample`` call: a positive int of bounded size."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)):
        raise TypeError(f"n_samples must be an int, got {type(n_samples).__name__} {n_samples!r}.")
    if n_samples < 1:
        raise ValueError(f"Invalid value for 'n_samples': it must be a positive integer, got {n_samples!r}.")
    if n_samples * values_per_sample > _MAX_SAMPLE_VALUES:
        raise ValueError(
            f"n_samples={n_samples} asks for {n_samples * values_per_sample:.3g} values "
            f"({8 * n_samples * values_per_sample / 1e9:.3g} GB), more than "
            f"{_MAX_SAMPLE_VALUES:.0e}: call sample several times with fewer samples."
        )


def _apply_scaling(X, y, scaling):
    Xs = (X - scaling["x_loc"]) / scaling["x_scale"]
    ys = None if y is None else (y - scaling["y_loc"]) / scaling["y_scale"]
    return Xs, ys


_LOG_SQRT_2PI = 0.5 * np.log(2 * np.pi)


def normal_logpdf(x, mu, sigma, finite_tails=False):
    """Normal log-density, broadcasting; several times faster than ``scipy.stats.norm``.

    With ``finite_tails``, finite wherever ``(x - mu) / sigma`` is (see ``half_square``):
    for mixtures whose components are all normal, where it keeps far rows' component
    probabilities right. Mixed with other families' densities, which underflow to -inf,
    the plain form must be used.
    """
    z = (x - mu) / sigma
    square = half_square(z) if finite_tails else -0.5 * z * z
    return square - np.log(sigma) - _LOG_SQRT_2PI


def half_square(z):
    """``-z**2 / 2``, kept finite for every finite ``z``.

    Beyond ``|z| = 1e150`` (where the square overflows) it goes on decreasing as
    ``-1e300 * log|z|``, so that a row far from every component still has finite
    log-densities, ordered as its distances are, and gets probabilities rather than NaN.
    ``models.special.half_square`` is the same for one value, in numba.
    """
    z = np.abs(z)
    if not np.any(z > Z_FAR):
        return -0.5 * z * z
    with np.errstate(divide="ignore", over="ignore"):
        far = Z_FAR * Z_FAR * (-0.5 - np.log(z / Z_FAR))
        return np.where(z > Z_FAR, far, -0.5 * z * z)


def logsumexp(a, axis, keepdims=False):
    """``log(sum(exp(a)))`` along ``axis``, stable; leaner than ``scipy.special.logsumexp``."""
    peak = np.max(a, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):  # a sum of zero densities is log 0 = -inf
        out = np.log(np.sum(np.exp(a - peak), axis=axis, keepdims=True)) + peak
    return out if keepdims else np.squeeze(out, axis=axis)


def responsibilities(log_joint, overwrite=False):
    """Normalize per-component log joint densities (last axis) into probabilities.

    Raises a ``ValueError`` for a row whose density is 0 in every component (it
    underflowed): its probabilities are undefined. With ``overwrite`` the probabilities
    replace ``log_joint`` where it is a C-contiguous float64 array (saving an array as
    large), and a NaN in it counts as such a row too.
    """
    log_joint = np.ascontiguousarray(log_joint, dtype=float)
    probs = log_joint if overwrite else np.empty_like(log_joint)
    softmax_rows(log_joint.reshape(-1, log_joint.shape[-1]), probs.reshape(-1, probs.shape[-1]))
    undefined = np.isnan(probs[..., 0])
    if undefined.any():  # without overwrite, a NaN input gives NaN probabilities
        check_rows_within_reach(undefined if overwrite else undefined & np.isneginf(log_joint).all(axis=-1))
    return probs


def check_rows_within_reach(underflow):
    """Raise a ``ValueError`` naming the rows (last axis of ``underflow``) whose density
    is 0 in every component, so that their membership probabilities are undefined."""
    if underflow.any():
        rows = np.unique(np.nonzero(underflow)[-1])
        raise ValueError(
            f"Row(s) {rows[:10].tolist()} lie so far from every component that their "
            "density is 0 in float64: their component probabilities are undefined. "
            "Check these rows for errors in units or scale."
        )


def draw_categorical(probs, rng):
    """One category per row of ``probs`` (..., K), whose last axis sums to 1."""
    cdf = np.cumsum(probs, axis=-1)
    u = rng.uniform(size=cdf.shape[:-1] + (1,))
    return np.minimum((u > cdf).sum(axis=-1), probs.shape[-1] - 1)


def dependent_columns(X, scale):
    """Columns of ``X`` that are, to rounding error, linearly dependent: an array of indices.

    ``X`` centred and divided by ``scale`` (positive, per column) is tested for a
    direction of (relative) variance below ``DEPENDENT_COLUMNS``; the columns with a
    share of it are returned, or none.
    """
    Z = (X - X.mean(axis=0)) / scale
    values, vectors = np.linalg.eigh(Z.T @ Z)
    if values[0] > DEPENDENT_COLUMNS * values[-1]:
        return np.array([], dtype=int)
    null = np.abs(vectors[:, 0])
    return np.flatnonzero(null > 0.1 * null.max())


def check_not_constant(values, what):
    """Raise a ``ValueError`` when a column of ``values`` holds one value only.

    A continuous component fitted to identical values has an unbounded likelihood as its
    scale goes to zero, so the posterior does not exist.
    """
    values = np.asarray(values)
    values = values.reshape(len(values), -1)
    constant = np.flatnonzero(np.ptp(values, axis=0) == 0)
    if constant.size:
        raise ValueError(
            f"{what} is constant (column(s) {constant.tolist()} hold a single value): a "
            "continuous mixture needs varying data. Drop the constant column(s)."
        )


def empirical_distribution(X, y, sample_weight):
    """The distinct rows of ``(X, y)`` with positive weight, sorted, with summed weights.

    Rows with zero weight are dropped and identical rows are merged into one row whose
    weight is the sum of theirs; the rows come in lexicographic order. Data weighted by
    counts and the same data with repeated rows, in any order, give identical output.

    Returns
    -------
    X : ndarray of shape (n_distinct, n_features)
    y : ndarray of shape (n_distinct, ...) or None
    weights : ndarray of shape (n_distinct,)
    """
    with np.errstate(over="ignore"):
        total = float(np.sum(sample_weight))
    if not np.isfinite(total):
        raise ValueError(
            "sample_weight sums to infinity in float64 (largest weight "
            f"{np.max(sample_weight):.3g}): weights count rows, so divide them by a "
            "common factor to keep their sum below about 1e300."
        )
    keep = sample_weight > 0
    # y may carry extra columns per row (a GLM's offsets and trials): they merge with it.
    rows = X[keep] if y is None else np.column_stack([X[keep], y[keep].reshape(int(keep.sum()), -1)])
    # -0.0 and 0.0 are one value.
    rows = rows + 0.0
    unique, inverse = np.unique(rows, axis=0, return_inverse=True)
    varying = np.ptp(X, axis=0).any() or (y is not None and np.ptp(y) > 0)
    if unique.shape[0] < 2 and varying:
        raise ValueError(
            f"sample_weight is positive on {unique.shape[0]} distinct row(s) only: a "
            "mixture needs at least two distinct rows with positive weight. Give more "
            "rows a positive weight."
        )
    weights = np.bincount(inverse.ravel(), weights=sample_weight[keep], minlength=unique.shape[0])
    if y is None:
        return unique, None, weights
    D = X.shape[1]
    return unique[:, :D], unique[:, D:].reshape(-1, *y.shape[1:]), weights


def weighted_loc_scale(values, sample_weight):
    """Weighted mean and standard deviation along axis 0; a zero scale becomes 1.

    Computed on values divided by their largest magnitude, so that squares neither
    underflow (data near 1e-200) nor overflow (near 1e300).
    """
    loc = _peak(values) * np.average(values / _peak(values), axis=0, weights=sample_weight)
    scale = weighted_rms(values - loc, sample_weight)
    return loc, scale


def weighted_rms(values, sample_weight):
    """Weighted root mean square along axis 0 (without under- or overflow); 0 becomes 1."""
    peak = _peak(values)
    rms = peak * np.sqrt(np.average((values / peak) ** 2, axis=0, weights=sample_weight))
    return np.where(rms > 0, rms, 1.0)


def _peak(values):
    peak = np.max(np.abs(values), axis=0)
    return np.where(peak > 0, peak, 1.0)


class _DrawChunks:
    """Per-draw work (S, ...) done in chunks of draws by whichever threads call ``work``.

    ``function`` maps a dict of per-draw arrays (leading axis S) to an array with the
    same leading axis; its results fill ``out`` once every ``work`` call has returned.
    """

    def __init__(self, function, params, n_chunks=16):
        self._function = function
        self._params = params
        self._n_draws = len(next(iter(params.values())))
        bounds = np.linspace(0, self._n_draws, min(n_chunks, self._n_draws) + 1).astype(int)
        self._chunks = iter([slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])])
        self._lock = threading.Lock()
        self.out = None

    def work(self):
        """Take chunks until none is left (or ``stop``); an exception here stops the others too."""
        while True:
            with self._lock:
                rows = next(self._chunks, None)
            if rows is None:
                return
            try:
                part = self._function({name: value[rows] for name, value in self._params.items()})
                with self._lock:
                    if self.out is None:
                        self.out = np.empty((self._n_draws, *part.shape[1:]), dtype=part.dtype)
                self.out[rows] = part
            except BaseException:
                self.stop()
                raise

    def stop(self):
        """Leave the chunks not yet taken undone."""
        with self._lock:
            self._chunks = iter(())


def _flatten_draws(posterior):
    """Posterior variables as arrays with chain and draw merged into one leading axis."""
    return {
        str(name): var.values.reshape(-1, *var.shape[2:])
        for name, var in posterior.data_vars.items()
    }
