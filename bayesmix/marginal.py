"""MarginalMixture: a mixture of components from several families, on one or several columns."""

import copy
import warnings
from collections.abc import Mapping
from numbers import Real

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
from .diagnostics import max_rhat
from .families import Family, get_family
from .models.kernels import MarginalKernel
from .models.marginal import (
    SUMMARIES,
    build_marginal_mixture,
    build_multivariate_mixture,
    family_groups,
    raw_name,
)
from .models.weights import WEIGHT_PRIOR_TYPES, resolve_concentration
from .relabel import (
    apply_permutations,
    ecr_permutations_from_probs,
    sort_permutations,
    stephens_permutations,
)
from .resolution import resolve_resolution


class MarginalMixture(BaseBayesianMixture):
    """Mixture whose components may come from different families, on one or several columns.

    Each component is a registered :class:`~bayesmix.Family` ("normal", "student_t",
    "laplace", "skew_normal", "lognormal", "gamma", "exponential", "poisson",
    "negative_binomial", "bernoulli", "categorical", or one added with
    :func:`~bayesmix.register_family`), mixed
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

    Several columns (latent profile / latent class analysis, mixed data). With ``X`` of
    D > 1 columns, each column has one family, the same in every component, and the
    columns are independent within a component::

        x_i ~ sum_k weights[k] prod_j f_j(x_ij | theta_kj)

    Each ``components`` entry is then a family name for every column ("normal" for a
    latent profile analysis, "categorical" for a latent class analysis), a list of D
    names, or a mapping column name -> family (``X`` a DataFrame). Each column is scaled
    as its family allows. "bernoulli" columns hold 0/1; "categorical" columns hold any
    numeric codes, whose distinct values in ``fit`` are the categories (``categories_``;
    an unseen value at predict time is a ``ValueError``). Missing values (NaN) are
    marginalized out: a row contributes the columns it has. The posterior has
    ``{family}_{param}`` with dims (``component``, ``{family}_feature``) per family and
    ``{column}_p`` with dims (``component``, ``{column}_category``) per categorical
    column. All components share one layout, so they are relabeled together;
    ``relabel="auto"`` is then ``"stephens"``.

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
    components : list, default=("normal", "normal")
        Family of each component; the number of components is its length. With
        several columns an entry may be a list of families (one per column) or a
        mapping column -> family (see "Several columns").
    weight_concentration_prior_type : {"dirichlet_distribution", "dirichlet_process"}, \
            default="dirichlet_distribution"
        Prior on the weights: ``Dirichlet(c * ones(K))``, or stick-breaking truncated at
        K with ``Beta(1, c)`` sticks (superfluous components are emptied), as in
        scikit-learn's ``BayesianGaussianMixture`` but sampled rather than fitted by
        variational inference; see :class:`~bayesmix.BayesianGaussianMixture`.
    weight_concentration_prior : float, default=None
        The concentration ``c``; ``None`` means ``1 / n_components`` for the distribution
        (scikit-learn's default) and 1 for the process (see ``BayesianGaussianMixture``).
    categories : "auto" or list, default="auto"
        Categories of the "categorical" columns, as in scikit-learn's ``OneHotEncoder``:
        "auto" takes each such column's distinct values in ``fit``; a list has one entry
        per column of ``X``, the column's category values (a category the data happen
        not to contain still gets its probability) or "auto"; entries of columns of
        other families must be "auto" or None.
    resolution : "auto", float, array-like of shape (n_features,) or None, default="auto"
        The data's rounding: a value recorded as ``x`` stands for ``[x - h/2, x + h/2]``.
        Continuous components are widened by the rounding's variance ``h**2 / 12`` in
        the likelihood and the predictive densities (each family's ``rounding`` rule:
        the scale of "normal", "student_t", "laplace" and "skew_normal", the log-scale
        sd of "lognormal" by ``h / x``, the shape of "gamma" at the same mean), so that
        components cannot collapse onto tied values. "exponential" has no such rule (its
        density is at most ``1 / mean``); count and categorical columns are not
        rounded. "auto" detects ``h`` per column as the step of the grid its values lie
        on (:func:`bayesmix.resolution.detect_resolution`); a number or array sets it;
        0 or ``None`` switches it off. The values used are in ``resolution_``.
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
    resolution_ : ndarray of shape (n_features,)
        The resolution used per column (user scale; 0: not rounded, and for count and
        categorical columns).
    n_features_in_ : int
    categories_ : list
        For each column, its categories (sorted; from ``categories`` or the values seen
        in ``fit``) if its family is "categorical", else None.
    locations_ : with several columns, ndarray of shape (n_components, n_features)
        Each column's location parameter (NaN for categorical columns).

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
        "resolution": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left"), "array-like", None],
        "categories": [StrOptions({"auto"}), list],
    }

    def __init__(
        self,
        components=("normal", "normal"),
        *,
        weight_concentration_prior_type="dirichlet_distribution",
        weight_concentration_prior=None,
        categories="auto",
        resolution="auto",
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
        self.categories = categories
        self.resolution = resolution
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
        # Missing values in X are marginalized out (several columns).
        tags.input_tags.allow_nan = True
        return tags

    # --------------------------------------------------------------- families

    def _multi(self):
        return getattr(self, "n_features_in_", 1) > 1

    def _layouts(self, n_columns):
        """Each component's tuple of column families, from the ``components`` entries."""
        components = self.components
        if isinstance(components, str) or len(components) == 0:
            raise ValueError(
                "components must be a non-empty list of family names, e.g. "
                f"['normal', 'student_t'], got {components!r}."
            )
        names = getattr(self, "feature_names_in_", None)
        layouts = []
        for entry in components:
            if isinstance(entry, (str, Family)):
                entry = [entry] * n_columns
            elif isinstance(entry, Mapping):
                if names is None and n_columns > 1:
                    raise ValueError(
                        "A components entry that maps columns to families needs X with column "
                        "names (a pandas DataFrame); otherwise give a list, one family per column."
                    )
                columns = list(names) if names is not None else list(entry)[:1]
                if set(map(str, entry)) != set(map(str, columns)):
                    raise ValueError(
                        f"components entry {entry!r} must name every column of X exactly once; "
                        f"X has columns {columns}."
                    )
                by_name = {str(k): v for k, v in entry.items()}
                entry = [by_name[str(c)] for c in columns]
            else:
                entry = list(entry)
                if len(entry) != n_columns:
                    raise ValueError(
                        f"components entry {entry!r} gives {len(entry)} families but X has "
                        f"{n_columns} column(s): give one family per column (or one name for all)."
                    )
            layouts.append(tuple(get_family(name) for name in entry))
        return layouts

    def _families(self):
        """The family of each component (one column)."""
        return [layout[0] for layout in self._layouts(1)]

    def _column_families(self):
        """The family of each column, the same in every component (several columns)."""
        layouts = self._layouts(self.n_features_in_)
        if len({tuple(f.name for f in layout) for layout in layouts}) > 1:
            raise ValueError(
                "With several columns every component must have the same family in each "
                "column (a family per column; columns are independent within a component). "
                f"Got {[[f.name for f in layout] for layout in layouts]}."
            )
        return layouts[0]

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
        if len({f.support == "categorical" for f in families}) > 1:
            raise ValueError("A categorical component cannot be mixed with other families in one column.")

    # ----------------------------------------------------------------- hooks

    def _validate_fit_data(self, X, y):
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2, ensure_all_finite="allow-nan")
        _check_finite_or_nan(X)
        if not self._multi():
            _check_no_nan_one_column(X)
            families = self._families()
            if self._scaling_kind(families) != "none":
                check_not_constant(X, "X")
            self._check_support(X)
            if families[0].support == "categorical" and any(f.support != "categorical" for f in families):
                raise ValueError("A categorical component cannot be mixed with other families in one column.")
            self.categories_ = [self._fit_categories(X[:, 0], 0, families[0], 1)]
            return X, None
        families = self._column_families()
        self.categories_ = []
        for j, family in enumerate(families):
            x = X[:, j][~np.isnan(X[:, j])]
            if x.size == 0:
                raise ValueError(f"Column {j} of X has no observed values; drop it.")
            family.check_support(x, f"Column {j} of X")
            if not family.discrete and np.ptp(x) == 0:
                check_not_constant(x, f"Column {j} of X")
            self.categories_.append(self._fit_categories(x, j, family, X.shape[1]))
        return X, None

    def _fit_categories(self, x, column, family, n_columns):
        """Column ``column``'s categories (None unless its family is categorical)."""
        given = self.categories
        if not _is_auto(given):
            if len(given) != n_columns:
                raise ValueError(
                    f"categories has {len(given)} entries but X has {n_columns} column(s): give "
                    "one entry per column (None or \"auto\" for columns that are not categorical)."
                )
            given = given[column]
        auto = given is None or _is_auto(given)
        if family.support != "categorical":
            if not auto:
                raise ValueError(
                    f"categories[{column}] is {given!r} but column {column}'s family is "
                    f"{family.name!r}, not categorical; use None there."
                )
            return None
        if auto:
            return _categories(x)
        try:
            listed = np.asarray(given, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise TypeError(
                f"categories[{column}] must hold numbers (the codes in X), got {given!r}."
            ) from None
        categories = np.unique(listed)
        if categories.size != listed.size or categories.size < 2 or not np.all(np.isfinite(categories)):
            raise ValueError(
                f"categories[{column}] must list at least two distinct finite values, got {given!r}."
            )
        _check_known_categories(x, categories, column, "listed in categories")
        return categories

    def _validate_predict_data(self, X, y):
        X = validate_data(self, X, reset=False, dtype=np.float64, ensure_all_finite="allow-nan")
        _check_finite_or_nan(X)
        if not self._multi():
            _check_no_nan_one_column(X)
            self._check_support(X)
            _check_known_categories(X[:, 0], self.categories_[0], 0)
            return X, y
        for j, family in enumerate(self._column_families()):
            x = X[:, j][~np.isnan(X[:, j])]
            family.check_support(x, f"Column {j} of X")
            _check_known_categories(x, self.categories_[j], j)
        return X, y

    def _standardization(self, X, y, sample_weight):
        if self._multi():
            scalings = [
                _column_scaling(X[:, j], sample_weight, self._scaling_kind([family]))
                for j, family in enumerate(self._column_families())
            ]
            loc, scale = np.array(scalings).T
            return {"x_loc": loc, "x_scale": scale}
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
        self.weight_concentration_prior_ = resolve_concentration(
            self.weight_concentration_prior, self.n_components, self.weight_concentration_prior_type
        )
        families = self._column_families() if self._multi() else self._families()[:1]
        discrete = np.array([family.discrete for family in families])
        self.resolution_ = np.where(discrete, 0.0, resolve_resolution(self.resolution, X))

    def _column_resolution(self, j):
        """Column ``j``'s resolution (0 for a model saved before resolution existed)."""
        resolution = getattr(self, "resolution_", None)
        return 0.0 if resolution is None else float(resolution[j])

    def _auto_relabel(self, n_features):
        # Several columns: responsibilities see every column; one column: sort by location.
        if n_features > 1 or self._families()[0].support == "categorical":
            return "stephens"
        return "sort"

    def _n_categories(self):
        return tuple(0 if c is None else len(c) for c in self.categories_)

    def _structure(self, n_features, relabel_method):
        # The Family objects themselves (hashed by identity): an id() alone could be reused
        # by a new family once the old one is garbage collected.
        prior = self.weight_concentration_prior_type
        if n_features > 1:
            columns = tuple((f.name, f) for f in self._column_families())
            return ("columns", self.n_components, columns, self._n_categories(), prior)
        return tuple((f.name, f) for f in self._families()) + self._n_categories() + (prior,)

    def _build_model(self, n_features, relabel_method):
        prior = self.weight_concentration_prior_type
        if n_features > 1:
            return build_multivariate_mixture(self.n_components, self._column_families(), self._n_categories(), prior)
        return build_marginal_mixture(self._families(), self._n_categories()[0], prior)

    def _model_kernel(self, n_features, relabel_method):
        if n_features > 1 or not MarginalKernel.supports(families := self._families()):
            return None
        return MarginalKernel(families, process=self.weight_concentration_prior_type == "dirichlet_process")

    def _model_data(self, Xs, ys, sample_weight, scaling):
        if self._multi():
            filled, mask = self._filled_codes(Xs)
            data = {
                "X": filled,
                "mask": mask,
                "sample_weight": sample_weight,
                "weight_concentration": self.weight_concentration_prior_,
                "resolution": self.resolution_ / scaling["x_scale"],
            }
            columns = [_summaries(filled[mask[:, j] > 0, j], sample_weight[mask[:, j] > 0]) for j in range(Xs.shape[1])]
            data.update({name: np.array([c[name] for c in columns]) for name in SUMMARIES})
            return data
        Xs = self._filled_codes(Xs)[0]
        return {
            "X": Xs[:, 0],
            "sample_weight": sample_weight,
            "weight_concentration": self.weight_concentration_prior_,
            "resolution": self.resolution_[0] / scaling["x_scale"][0],
            **_summaries(Xs[:, 0], sample_weight),
        }

    def _initial_values(self, Xs, ys, sample_weight, relabel_method, rng):
        K = self.n_components
        if self._multi():
            return self._multivariate_start(Xs, rng)
        x = self._filled_codes(Xs)[0][:, 0]
        family0 = self._families()[0]
        if family0.support == "categorical":
            resp = _random_split(x.size, K, rng)
            return {family0.variable("p"): _category_start(x, resp, self._n_categories()[0])}
        # Rows are distinct values weighted by their counts (see ``empirical_distribution``).
        quantiles = np.quantile(x, (np.arange(K) + 0.5) / K, weights=sample_weight, method="inverted_cdf")
        data = _summaries(x, sample_weight)
        values = {}
        for family, idx in family_groups(self._families()):
            values.update(family.initial_values(quantiles[idx], data))
        return values

    def _multivariate_start(self, Xs, rng):
        """Starting values from a k-means split of the (filled, standardized) rows."""
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits

        K = self.n_components
        filled, mask = self._filled_codes(Xs)
        features = (filled - filled.mean(axis=0)) / np.where(filled.std(axis=0) > 0, filled.std(axis=0), 1.0)
        if K > 1:
            with warnings.catch_warnings(), threadpool_limits(1):
                warnings.simplefilter("ignore")
                labels = KMeans(K, n_init=3, random_state=rng.randint(2**31 - 1)).fit_predict(features)
        else:
            labels = np.zeros(len(filled), dtype=int)
        resp = np.eye(K)[labels] * 0.9 + 0.1 / K
        # The weights are left to nutpie's jitter: equal starting weights on symmetric
        # data can give an exactly zero gradient, where nutpie cannot start.
        values = {}
        for j, family in enumerate(self._column_families()):
            seen = mask[:, j] > 0
            x, r = filled[seen, j], resp[seen]
            if family.support == "categorical":
                starts = {family.variable("p"): _category_start(x, r, self._n_categories()[j])}
            else:
                q = (r * x[:, None]).sum(axis=0) / r.sum(axis=0)
                # Apart by a hair: a location exactly at the data's (weighted) mean, in
                # two components alike, gives an exactly zero gradient (nutpie cannot start).
                q = q + 1e-2 * (np.arange(K) + 1) * (np.std(x) + 1e-3) / K
                starts = family.initial_values(q, _summaries(x, np.ones_like(x)))
            values.update({f"{name}__x{j}": value for name, value in starts.items()})
        return values

    def _filled_codes(self, X):
        """X with categories as codes 0..C-1 and missing values filled; and the 0/1 mask."""
        mask = ~np.isnan(X)
        filled = np.array(X, dtype=float)
        for j in range(X.shape[1]):
            categories = self.categories_[j]
            if categories is not None:
                filled[mask[:, j], j] = np.searchsorted(categories, X[mask[:, j], j])
            # A value in the support, multiplied by a mask of 0 in the model.
            filled[~mask[:, j], j] = filled[mask[:, j], j][0] if mask[:, j].any() else 0.0
        return filled, mask.astype(float)

    def _coords(self, n_features):
        coords = {"component": list(range(self.n_components))}
        if n_features > 1:
            labels = self._column_labels()
            for family, columns in self._family_columns().items():
                if family.support == "categorical":
                    for j in columns:
                        coords[f"{labels[j]}_category"] = self.categories_[j].tolist()
                else:
                    coords[f"{family.name}_feature"] = [labels[j] for j in columns]
            return coords
        for family, idx in family_groups(self._families()):
            coords[family.dim] = idx.tolist()
        if self.categories_[0] is not None:
            coords["category"] = self.categories_[0].tolist()
        return coords

    def _column_labels(self):
        names = getattr(self, "feature_names_in_", None)
        return [str(n) for n in names] if names is not None else [f"x{j}" for j in range(self.n_features_in_)]

    def _family_columns(self):
        """Each family of the columns, with the indices of its columns."""
        groups = {}
        for j, family in enumerate(self._column_families()):
            groups.setdefault(family, []).append(j)
        return groups

    def _multivariate_variables(self):
        """(user-facing name, family, param, columns): stacked per family, per column if categorical."""
        labels = self._column_labels()
        out = []
        for family, columns in self._family_columns().items():
            for param in family.params:
                if family.support == "categorical":
                    out.extend((f"{labels[j]}_{param}", family, param, [j]) for j in columns)
                else:
                    out.append((family.variable(param), family, param, columns))
        return out

    def _to_user_scale(self, posterior, scaling):
        if self._multi():
            arrays = {"weights": posterior["weights"]}
            dims = {"weights": ["component"]}
            labels = self._column_labels()
            for name, family, param, columns in self._multivariate_variables():
                parts = [
                    family.to_user_scale(
                        param, posterior[raw_name(family, param, j)], scaling["x_loc"][j], scaling["x_scale"][j]
                    )
                    for j in columns
                ]
                if family.support == "categorical":
                    arrays[name] = parts[0]
                    dims[name] = ["component", f"{labels[columns[0]]}_category"]
                else:
                    arrays[name] = np.stack(parts, axis=-1)
                    dims[name] = ["component", f"{family.name}_feature"]
            return arrays, dims
        loc, scale = float(scaling["x_loc"][0]), float(scaling["x_scale"][0])
        arrays = {"weights": posterior["weights"]}
        dims = {"weights": ["component"]}
        for family, _ in family_groups(self._families()):
            for param in family.params:
                name = family.variable(param)
                arrays[name] = family.to_user_scale(param, posterior[name], loc, scale)
                dims[name] = [family.dim] + (["category"] if family.support == "categorical" else [])
        return arrays, dims

    def _sort_by(self):
        name, family, param, _ = next(
            v for v in self._multivariate_variables() if v[2] == v[1].location
        )
        return name

    def _relabel(self, idata, X, y, method, rng):
        if self._multi():  # one layout: every variable has the component dimension
            return super()._relabel(idata, X, y, method, rng)
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
                # Category probabilities: ordered by the first category's.
                values = posterior[family.variable(family.location)].values.reshape(S, idx.size, -1)[..., 0]
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
            "rhat_before": max_rhat(posterior),
            "rhat_after": max_rhat(new),
        }
        return relabeled

    # -------------------------------------------------------- predictive maths

    def _log_joint(self, X, y, params):
        if self._multi():
            return self._multivariate_log_joint(X, params)
        x = self._filled_codes(X)[0][:, 0]
        n_draws = params["weights"].shape[0]
        out = np.empty((n_draws, x.size, self.n_components))
        with np.errstate(divide="ignore"):
            out[:] = np.log(params["weights"])[:, None, :]
        h = self._column_resolution(0)
        for family, idx in family_groups(self._families()):
            values = {p: params[family.variable(p)][:, None, :] for p in family.params}
            with np.errstate(divide="ignore", invalid="ignore"):
                values = family.rounded(x[None, :, None], h, values)
                out[:, :, idx] += np.broadcast_to(
                    family.logpdf(x[None, :, None], **values), (n_draws, x.size, idx.size)
                )
        return out

    def _multivariate_log_joint(self, X, params):
        filled, mask = self._filled_codes(X)
        labels = self._column_labels()
        with np.errstate(divide="ignore"):
            out = np.log(params["weights"])[:, None, :] + np.zeros((1, X.shape[0], 1))
        for family, columns in self._family_columns().items():
            for m, j in enumerate(columns):
                if family.support == "categorical":
                    values = {p: params[f"{labels[j]}_{p}"][:, None] for p in family.params}
                else:
                    values = {p: params[family.variable(p)][:, None, :, m] for p in family.params}
                with np.errstate(divide="ignore", invalid="ignore"):
                    x = filled[None, :, j, None]
                    lp = family.logpdf(x, **family.rounded(x, self._column_resolution(j), values))
                out += np.where(mask[None, :, j, None] > 0, lp, 0.0)
        return out

    def _set_point_estimates(self, params):
        self.weights_ = params["weights"].mean(axis=0)
        if self._multi():
            self.component_params_ = [
                {name: params[name][:, k].mean(axis=0) for name, *_ in self._multivariate_variables()}
                for k in range(self.n_components)
            ]
            self.locations_ = np.full((self.n_components, self.n_features_in_), np.nan)
            for name, family, param, columns in self._multivariate_variables():
                if param == family.location and family.support != "categorical":
                    self.locations_[:, columns] = params[name].mean(axis=0)
            return
        self.component_params_ = [{} for _ in range(self.n_components)]
        self.locations_ = np.empty(self.n_components)
        for family, idx in family_groups(self._families()):
            for param in family.params:
                means = params[family.variable(param)].mean(axis=0)
                for j, k in enumerate(idx):
                    self.component_params_[k][param] = means[j] if means.ndim > 1 else float(means[j])
                    if param == family.location:
                        self.locations_[k] = means[j] if means.ndim == 1 else np.nan

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
        if self._multi():
            return self._multivariate_sample(rng, params, draw, labels)
        X = np.empty(labels.size)
        for family, idx in family_groups(self._families()):
            rows = np.flatnonzero(np.isin(labels, idx))
            if rows.size == 0:
                continue
            local = np.searchsorted(idx, labels[rows])
            values = {p: params[family.variable(p)][draw[rows], local] for p in family.params}
            X[rows] = np.asarray(family.rvs(rng, **values), dtype=float).reshape(rows.size)
        if self.categories_[0] is not None:
            X = self.categories_[0][X.astype(int)]
        return X[:, None]

    def _multivariate_sample(self, rng, params, draw, labels):
        labels_of = self._column_labels()
        X = np.empty((labels.size, self.n_features_in_))
        for family, columns in self._family_columns().items():
            for m, j in enumerate(columns):
                if family.support == "categorical":
                    values = {p: params[f"{labels_of[j]}_{p}"][draw, labels] for p in family.params}
                    codes = np.asarray(family.rvs(rng, **values)).astype(int)
                    X[:, j] = self.categories_[j][codes]
                else:
                    values = {p: params[family.variable(p)][draw, labels, m] for p in family.params}
                    X[:, j] = np.asarray(family.rvs(rng, **values), dtype=float).reshape(labels.size)
        return X


def _check_finite_or_nan(X):
    if np.isinf(X).any():
        raise ValueError("Input X contains infinity; missing values (NaN) are allowed, infinity is not.")


def _check_no_nan_one_column(X):
    if np.isnan(X).any():
        raise ValueError(
            "Input X contains NaN: with one column a missing value leaves nothing of the row; "
            "drop those rows (missing values are marginalized out only with several columns)."
        )


def _is_auto(entry):
    return isinstance(entry, str) and entry == "auto"


def _categories(x):
    """The sorted distinct values of a categorical column."""
    return np.unique(x[~np.isnan(x)])


def _check_known_categories(x, categories, column, known_as="seen in fit"):
    if categories is None:
        return
    unknown = np.setdiff1d(x[~np.isnan(x)], categories)
    if unknown.size:
        raise ValueError(
            f"Column {column} of X has categories {unknown[:5].tolist()} not {known_as} "
            f"(known: {categories.tolist()}); a categorical component has no probability for them."
        )


def _column_scaling(x, sample_weight, kind):
    """Location and scale of one column (observed values) for the scaling kind."""
    seen = ~np.isnan(x)
    x, w = x[seen], sample_weight[seen]
    if w.sum() <= 0:
        w = np.ones_like(x)
    loc, scale = 0.0, 1.0
    if kind == "affine":
        loc = np.average(x, weights=w)
        scale = np.sqrt(np.average((x - loc) ** 2, weights=w))
    elif kind == "scale":
        scale = np.average(x, weights=w)
    if not np.isfinite(scale) or scale <= 0:
        scale = 1.0
    return float(loc), float(scale)


def _random_split(n_rows, K, rng):
    return rng.dirichlet(np.ones(K), size=n_rows)


def _category_start(codes, resp, n_categories):
    """Each component's category frequencies under soft assignments ``resp`` (smoothed)."""
    counts = resp.T @ np.eye(n_categories)[codes.astype(int)] + 1.0
    counts[:, 0] += 1e-2 * np.arange(1, counts.shape[0] + 1)  # never two rows alike
    return counts / counts.sum(axis=1, keepdims=True)


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

