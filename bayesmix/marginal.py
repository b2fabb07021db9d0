"""MarginalMixture: a univariate mixture of components from several families."""

import copy
import warnings
from numbers import Real

import arviz as az
import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import validate_data

from ._base import (
    _RELABEL_MAX_ROWS,
    RELABEL_METHODS,
    BaseBayesianMixture,
    _flatten_draws,
    check_not_constant,
    responsibilities,
    weighted_loc_scale,
)
from .families import get_family
from .models.marginal import SUMMARIES, build_marginal_mixture, family_groups
from .models.weights import WEIGHT_PRIOR_TYPES, resolve_concentration
from .relabel import (
    apply_permutations,
    ecr_permutations_from_probs,
    sort_permutations,
    stephens_permutations,
)


class MarginalMixture(BaseBayesianMixture):
    """Univariate mixture whose components may come from different families.

    Each component is a registered :class:`~bayesmix.Family` ("normal", "student_t",
    "laplace", "skew_normal", "lognormal", "gamma", "exponential", "poisson",
    "negative_binomial", or one added with :func:`~bayesmix.register_family`), mixed
    freely within one kind of data: continuous families together, count families
    together. The component assignments are summed out (log-sum-exp, as in
    ``pm.Mixture``), so NUTS (nutpie) samples the weights and component parameters::

        weights ~ Dirichlet(weight_concentration_prior * ones(K))  (or stick-breaking)
        theta_k ~ prior of component k's family       (see bayesmix.families)
        x_i ~ sum_k weights[k] f_k(x_i | theta_k)

    The data are brought to unit scale before sampling as the families allow:
    centred and scaled when every family is real-valued, divided by the mean (never
    centred) when a family needs positive data, left alone for counts. The posterior is
    reported on the user's scale.

    Label switching. Components of different families cannot switch labels; only
    components of one family can. ``relabel="auto"`` (= ``"sort"``) orders each
    family's components in every draw by the family's location parameter
    (``normal_mu``, ``gamma_mean``, ``poisson_rate`` ...). ``"stephens"`` and ``"ecr"``
    relabel each family's components from their responsibilities within the family.
    Ordering inside the model (``"ordered"``) is not offered: a family's location
    parameter may be positive or a derived quantity, so an ordered transform cannot be
    applied to every family. ``None`` leaves the draws as sampled.

    Parameters
    ----------
    components : list of str, default=("normal", "normal")
        Family of each component; the number of components is its length.
    weight_concentration_prior_type : {"dirichlet_distribution", "dirichlet_process"}, \
            default="dirichlet_distribution"
        Prior on the weights: ``Dirichlet(c * ones(K))``, or stick-breaking truncated at
        K with ``Beta(1, c)`` sticks (superfluous components are emptied), as in
        scikit-learn's ``BayesianGaussianMixture`` but sampled rather than fitted by
        variational inference; see :class:`~bayesmix.BayesianGaussianMixture`.
    weight_concentration_prior : float, default=None
        The concentration ``c``; ``None`` means 1 for both types (scikit-learn:
        ``1 / n_components``).
    relabel : {"auto", "sort", "stephens", "ecr"} or None, default="auto"
        See "Label switching" above.
    draws : int, default=1000
        Posterior draws kept per chain.
    tune : int, default=500
        Tuning steps discarded per chain (nutpie adapts faster than PyMC's sampler; in
        ``benchmarks/`` 1000 steps gave no more effective draws).
    chains : int, default=4
    cores : int, default=None
        Chains run in parallel; ``None`` uses every available core.
    backend : {"numba", "jax", "pymc"}, default="numba"
    random_state : int, RandomState instance or None, default=None
    progressbar : bool, default=False
    inference : {"nuts", "advi"}, default="nuts"
    advi_steps : int, default=20000
    batch_size : int, default=1000
        Minibatch ADVI instead of NUTS, as in :class:`BayesianGaussianMixture`.

    Attributes
    ----------
    n_components : int
        ``len(components)``.
    weights_ : ndarray of shape (n_components,)
        Posterior mean weights.
    locations_ : ndarray of shape (n_components,)
        Posterior mean of each component's location parameter (its family's
        ``location``), on the user's scale.
    component_params_ : list of dict
        Posterior mean of every parameter of each component, on the user's scale.
    idata_ : arviz.InferenceData
        Relabeled posterior on the user's scale: ``weights`` (dim ``component``) and,
        per family, ``{family}_{param}`` with dim ``{family}_component`` whose
        coordinates are the global component indices of that family's components;
        ``log_likelihood``, ``observed_data``, ``sample_stats``.
    converged_, convergence_, relabel_diagnostics_ :
        As in :class:`~bayesmix.BayesianGaussianMixture`.
    weight_concentration_prior_ : float
    n_features_in_ : int
        Always 1.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesmix import MarginalMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(-2, 1, 400), 3 + rng.standard_t(3, 600)][:, None]
    >>> est = MarginalMixture(["normal", "student_t"], random_state=0).fit(X)  # doctest: +SKIP
    >>> est.locations_.round(1)  # doctest: +SKIP
    array([-2.,  3.])
    """

    # Components of different families are not exchangeable, so a chain that starts
    # with the families' locations swapped can settle in a wrong local mode; nutpie's
    # U(-1, 1) jitter (unit-scale data) does that often enough to matter. The quantile
    # starting points are therefore used as given; weights are still jittered.
    _jitter_initial_values = False

    _parameter_constraints: dict = {
        **{k: v for k, v in BaseBayesianMixture._parameter_constraints.items() if k != "n_components"},
        "components": [list, tuple],
        "relabel": [StrOptions(set(RELABEL_METHODS) - {"ordered"}), None],
        "weight_concentration_prior_type": [StrOptions(set(WEIGHT_PRIOR_TYPES))],
        "weight_concentration_prior": [Interval(Real, 0, None, closed="neither"), None],
    }

    def __init__(
        self,
        components=("normal", "normal"),
        *,
        weight_concentration_prior_type="dirichlet_distribution",
        weight_concentration_prior=None,
        relabel="auto",
        draws=1000,
        tune=500,
        chains=4,
        cores=None,
        backend="numba",
        random_state=None,
        progressbar=False,
        inference="nuts",
        advi_steps=20_000,
        batch_size=1000,
    ):
        # Not super().__init__: ``n_components`` is derived from ``components``.
        self.components = components
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
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

    @property
    def n_components(self):
        """Number of components, ``len(components)``."""
        return len(self.components)

    @n_components.setter
    def n_components(self, value):
        # Assigning resizes ``components``: the first ``value`` families are kept and the
        # last one is repeated to grow (scikit-learn's common checks assign it).
        families = list(self.components) or ["normal"]
        self.components = [families[min(k, len(families) - 1)] for k in range(int(value))]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "density_estimator"
        return tags

    # --------------------------------------------------------------- families

    def _families(self):
        components = self.components
        if isinstance(components, str) or len(components) == 0:
            raise ValueError(
                "components must be a non-empty list of family names, e.g. "
                f"['normal', 'student_t'], got {components!r}."
            )
        return [get_family(name) for name in components]

    def _scaling_kind(self, families):
        discrete = {f.name for f in families if f.discrete}
        continuous = {f.name for f in families if not f.discrete}
        if discrete and continuous:
            raise ValueError(
                f"Cannot mix count families {sorted(discrete)} with continuous families "
                f"{sorted(continuous)} in one mixture: a probability mass and a density "
                "cannot be added. Use only count families or only continuous ones."
            )
        if discrete:
            return "none"
        if any(f.support != "real" for f in families):
            return "scale"
        return "affine"

    def _check_support(self, X):
        families = self._families()
        self._scaling_kind(families)
        for family in dict.fromkeys(families):
            family.check_support(X[:, 0])

    # ----------------------------------------------------------------- hooks

    def _validate_fit_data(self, X, y):
        families = self._families()
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        _check_one_column(X)
        if self._scaling_kind(families) != "none":
            check_not_constant(X, "X")
        self._check_support(X)
        return X, None

    def _validate_predict_data(self, X, y):
        X = validate_data(self, X, reset=False, dtype=np.float64)
        _check_one_column(X)
        self._check_support(X)
        return X, y

    def _standardization(self, X, y, sample_weight):
        kind = self._scaling_kind(self._families())
        x = X[:, 0]
        loc, scale = 0.0, 1.0
        if kind == "affine":
            loc, scale = weighted_loc_scale(x, sample_weight)
        elif kind == "scale":
            scale = np.average(x, weights=sample_weight)
        if not np.isfinite(scale) or scale <= 0:
            scale = 1.0
        return {"x_loc": np.array([loc]), "x_scale": np.array([scale])}

    def _resolve_priors(self, X, y, scaling):
        self.weight_concentration_prior_ = resolve_concentration(self.weight_concentration_prior)

    def _auto_relabel(self, n_features):
        return "sort"

    def _structure(self, n_features, relabel_method):
        # The Family objects themselves (hashed by identity): an id() alone could be reused
        # by a new family once the old one is garbage collected.
        families = tuple((f.name, f) for f in self._families())
        return (families, self.weight_concentration_prior_type)

    def _build_model(self, n_features, relabel_method):
        return build_marginal_mixture(self._families(), self.weight_concentration_prior_type)

    def _model_data(self, Xs, ys, sample_weight, scaling):
        return {
            "X": Xs[:, 0],
            "sample_weight": sample_weight,
            "weight_concentration": self.weight_concentration_prior_,
            **_summaries(Xs[:, 0], sample_weight),
        }

    def _initial_values(self, Xs, ys, sample_weight, relabel_method, rng):
        x = Xs[:, 0]
        K = self.n_components
        # Rows are distinct values weighted by their counts (see ``empirical_distribution``).
        quantiles = np.quantile(x, (np.arange(K) + 0.5) / K, weights=sample_weight, method="inverted_cdf")
        data = _summaries(x, sample_weight)
        values = {}
        for family, idx in family_groups(self._families()):
            values.update(family.initial_values(quantiles[idx], data))
        return values

    def _coords(self, n_features):
        coords = {"component": list(range(self.n_components))}
        for family, idx in family_groups(self._families()):
            coords[family.dim] = idx.tolist()
        return coords

    def _to_user_scale(self, posterior, scaling):
        loc, scale = float(scaling["x_loc"][0]), float(scaling["x_scale"][0])
        arrays = {"weights": posterior["weights"]}
        dims = {"weights": ["component"]}
        for family, _ in family_groups(self._families()):
            for param in family.params:
                name = family.variable(param)
                arrays[name] = family.to_user_scale(param, posterior[name], loc, scale)
                dims[name] = [family.dim]
        return arrays, dims

    def _relabel(self, idata, X, y, method, rng):
        if method is None:
            self.relabel_diagnostics_ = None
            return idata
        posterior = idata.posterior
        n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
        S, K = n_chains * n_draws, self.n_components
        groups = [(f, idx) for f, idx in family_groups(self._families()) if idx.size > 1]
        perms = np.tile(np.arange(K), (S, 1))
        sub_perms = {}
        log_joint = None
        if method in ("stephens", "ecr") and groups:
            rows = np.arange(X.shape[0])
            if rows.size > _RELABEL_MAX_ROWS:
                rows = np.sort(rng.choice(rows, _RELABEL_MAX_ROWS, replace=False))
            log_joint = self._log_joint(X[rows], None, _flatten_draws(posterior))
        for family, idx in groups:
            if method == "sort":
                values = posterior[family.variable(family.location)].values.reshape(S, -1)
                sub = sort_permutations(values)
            else:
                block = log_joint[:, :, idx]
                probs = responsibilities(block)
                sub = stephens_permutations(probs) if method == "stephens" else ecr_permutations_from_probs(probs)
            sub_perms[family.name] = sub
            perms[:, idx] = idx[sub]

        relabeled = copy.deepcopy(idata)
        new = relabeled.posterior
        new["weights"] = _permute(new["weights"], perms, "component")
        for family, _ in groups:
            for param in family.params:
                name = family.variable(param)
                new[name] = _permute(new[name], sub_perms[family.name], family.dim)
        perms = perms.reshape(n_chains, n_draws, K)
        self.relabel_diagnostics_ = {
            "permuted_share": (perms != np.arange(K)).any(axis=2).mean(axis=1),
            "rhat_before": _max_rhat(posterior),
            "rhat_after": _max_rhat(new),
        }
        return relabeled

    # -------------------------------------------------------- predictive maths

    def _log_joint(self, X, y, params):
        x = X[:, 0]
        n_draws = params["weights"].shape[0]
        out = np.empty((n_draws, x.size, self.n_components))
        with np.errstate(divide="ignore"):
            out[:] = np.log(params["weights"])[:, None, :]
        for family, idx in family_groups(self._families()):
            values = {p: params[family.variable(p)][:, None, :] for p in family.params}
            with np.errstate(divide="ignore", invalid="ignore"):
                out[:, :, idx] += np.broadcast_to(
                    family.logpdf(x[None, :, None], **values), (n_draws, x.size, idx.size)
                )
        return out

    def _set_point_estimates(self, params):
        self.weights_ = params["weights"].mean(axis=0)
        self.component_params_ = [{} for _ in range(self.n_components)]
        self.locations_ = np.empty(self.n_components)
        for family, idx in family_groups(self._families()):
            for param in family.params:
                means = params[family.variable(param)].mean(axis=0)
                for j, k in enumerate(idx):
                    self.component_params_[k][param] = float(means[j])
                    if param == family.location:
                        self.locations_[k] = means[j]

    def sample(self, n_samples=1):
        """Draw rows from the posterior predictive distribution.

        Each row comes from a randomly chosen posterior draw: its component from the
        draw's weights, its value from that component.

        Parameters
        ----------
        n_samples : int, default=1

        Returns
        -------
        X : ndarray of shape (n_samples, 1)
        labels : ndarray of shape (n_samples,)
            The component each row came from.
        """
        rng, params, draw, labels = self._draw_components(n_samples)
        return self._component_rows(params, draw, labels, rng), labels

    def _component_rows(self, params, draw, labels, rng):
        X = np.empty(labels.size)
        for family, idx in family_groups(self._families()):
            rows = np.flatnonzero(np.isin(labels, idx))
            if rows.size == 0:
                continue
            local = np.searchsorted(idx, labels[rows])
            values = {p: params[family.variable(p)][draw[rows], local] for p in family.params}
            X[rows] = np.asarray(family.rvs(rng, **values), dtype=float).reshape(rows.size)
        return X[:, None]


def _check_one_column(X):
    if X.shape[1] != 1:
        raise ValueError(
            f"MarginalMixture models one variable: X must have exactly one column, got "
            f"{X.shape[1]}. Reshape a 1-D array with X.reshape(-1, 1)."
        )


def _summaries(x, sample_weight):
    """Weighted mean and sd of the data, and of the log of its positive values."""
    w = np.asarray(sample_weight, dtype=float)
    if w.sum() <= 0:
        w = np.ones_like(x)
    mean = np.average(x, weights=w)
    sd = np.sqrt(np.average((x - mean) ** 2, weights=w))
    positive = (x > 0) & (w > 0)
    log_mean, log_sd = 0.0, 1.0
    if positive.any():
        logs = np.log(x[positive])
        log_mean = np.average(logs, weights=w[positive])
        log_sd = np.sqrt(np.average((logs - log_mean) ** 2, weights=w[positive]))
    sd = sd if sd > 0 else 1.0
    log_sd = log_sd if log_sd > 0 else 1.0
    return dict(zip(SUMMARIES, (float(mean), float(sd), float(log_mean), float(log_sd))))


def _permute(da, perms, dim):
    ordered = da.transpose("chain", "draw", dim, ...)
    values = ordered.values.reshape((-1,) + ordered.shape[2:])
    values = apply_permutations(values, perms, axis=1)
    return ordered.copy(data=values.reshape(ordered.shape)).transpose(*da.dims)


def _max_rhat(posterior):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat = az.rhat(posterior)
    return {str(name): float(rhat[name].max()) for name in rhat.data_vars}
