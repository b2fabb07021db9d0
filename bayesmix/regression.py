"""BayesianMixtureRegression: a mixture of linear regressions sampled by NUTS."""

import warnings
from collections import namedtuple
from numbers import Real

import numpy as np
from sklearn.cluster import KMeans
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils._tags import RegressorTags
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from ._base import (
    BaseBayesianMixture,
    check_n_samples,
    check_not_constant,
    dependent_columns,
    draw_categorical,
    logsumexp,
    normal_logpdf,
    weighted_loc_scale,
    weighted_rms,
)
from . import _glm
from .gaussian import _per_feature
from .models.regression import build_regression_mixture
from .models.kernels import (
    _FAMILY_CODES,
    RegressionKernel,
    for_family,
    regression_log_joint,
    regression_row_log_likelihood,
)
from .models.weights import WEIGHT_PRIOR_TYPES, initial_weights, resolve_concentration
from .relabel import PROBABILITY_FUNCTIONS
from .resolution import resolve_resolution, sheppard_sd


# A response passed to a predictive method with its offsets and numbers of trials.
_Response = namedtuple("_Response", "y offset trials")


class BayesianMixtureRegression(BaseBayesianMixture):
    """Mixture of K regressions (linear or GLM) with a full posterior, sampled by NUTS (nutpie).

    Each row's response comes from one of K regression lines (what flexmix or mixtools'
    ``regmixEM`` fit by EM)::

        y = intercept[k] + X @ coef[k] + Normal(0, sigma[k])   with probability w_k(X)

    ``w_k`` is a constant weight, or with ``gating=True`` (a mixture of experts)
    ``softmax_k(gate_intercept + X @ gate_coef.T)`` with component 0 as the reference
    (its gate parameters are 0).

    The model is sampled on standardized data (each feature and ``y`` centred and divided
    by its standard deviation; without an intercept only divided by their root mean
    square), with the priors::

        coef[k, d] ~ Normal(0, coef_prior_scale[d])
        intercept[k] ~ Normal(., intercept_prior_scale)  (mean response at the feature means)
        sigma[k] ~ Gamma(2, 2 / scale_prior)
        weights ~ Dirichlet(weight_concentration_prior * ones(K))  (or stick-breaking)
        gate_intercept[k], gate_coef[k, d] ~ Normal(0, gating_prior_scale)  (standardized)

    Every prior except the gating one is stated and reported on the user's scale. The
    Gamma(2, .) prior on the noise standard deviations has zero density at zero, which
    keeps the posterior away from the degenerate optima of a mixture likelihood where one
    line passes through a handful of points with vanishing noise.

    Generalized linear models. With ``family`` other than "normal" each component is a
    GLM (flexmix's ``FLXMRglm``) with linear predictor
    ``eta = intercept[k] + X @ coef[k] + offset``:

    ============================  ========  ====================  =========================
    family                        link      mean                  variance
    ============================  ========  ====================  =========================
    ``"poisson"``                 log       ``exp(eta)``          ``mean``
    ``"negative_binomial"``       log       ``exp(eta)``          ``mean + mean**2 / alpha``
    ``"binomial"``                logit     ``trials * p``        ``trials * p * (1 - p)``
    ``"bernoulli"``               logit     ``p``                 ``p * (1 - p)``
    ``"gamma"``                   log       ``exp(eta)``          ``mean**2 / shape``
    ============================  ========  ====================  =========================

    with ``p = 1 / (1 + exp(-eta))``. Only ``X`` is standardized (``y`` keeps its
    scale), and the priors, on the link scale, are::

        coef[k, d] ~ Normal(0, coef_prior_scale[d])      (default 2.5 / sd of feature d)
        intercept[k] ~ Normal(link(mean response), intercept_prior_scale)  (default 2.5)
        alpha[k] or shape[k] ~ Gamma(2, 2 / dispersion_prior)  (default mean 10)

    ``offset`` (``fit(X, y, offset=np.log(exposure))``) is added to the linear
    predictor of every component: the log of each row's exposure for count data.
    ``trials`` (binomial) is each row's number of trials; "bernoulli" is the binomial
    with one trial and ``y`` in {0, 1}. Every predictive method takes the same
    ``offset`` and ``trials`` keywords for its rows. Responses outside the family's
    support (negative or non-integer counts, ``y > trials``, non-positive values for
    "gamma") raise a ``ValueError``. The posterior has no ``sigma``; "negative_binomial"
    and "gamma" have ``alpha`` or ``shape`` (component) instead.

    Sampling starts from an EM fit (noise floored at a tenth of the prior scale) begun at
    the best of several splits of the rows: bands of ordinary least-squares residuals and
    k-means clusters of ``(X, y)``.

    Parameters
    ----------
    n_components : int, default=2
        Number of regression lines K.
    fit_intercept : bool, default=True
        Whether each line has an intercept. Without one, ``X`` and ``y`` are scaled but
        not centred, and ``intercept_`` is 0.
    family : {"normal", "poisson", "negative_binomial", "binomial", "bernoulli", "gamma"}, default="normal"
        The response distribution of each component (see "Generalized linear models").
    gating : bool, default=False
        Let the weights depend on ``X`` (mixture of experts). The posterior then has
        ``gate_intercept`` and ``gate_coef`` instead of ``weights``.
    weight_concentration_prior_type : {"dirichlet_distribution", "dirichlet_process"}, \
            default="dirichlet_distribution"
        Prior on the weights: ``Dirichlet(c * ones(K))``, or stick-breaking truncated at
        K with ``Beta(1, c)`` sticks (superfluous components are emptied), as in
        scikit-learn's ``BayesianGaussianMixture`` but sampled rather than fitted by
        variational inference; see :class:`~bayesmix.BayesianGaussianMixture`. Not used with gating.
    weight_concentration_prior : float, default=None
        The concentration ``c``; ``None`` means ``1 / n_components`` for the distribution
        (scikit-learn's default) and 1 for the process (see ``BayesianGaussianMixture``).
    coef_prior_scale : float or array-like of shape (n_features,), default=None
        Prior standard deviation of the slopes; ``None`` means 2.5 standard deviations of
        ``y`` per standard deviation of the feature.
    intercept_prior_scale : float, default=None
        Prior standard deviation of each line's value at the feature means (centred on the
        mean of ``y``); ``None`` means 2.5 standard deviations of ``y``.
    scale_prior : float, default=None
        Prior mean of the noise standard deviations; ``None`` means half the standard
        deviation of ``y``.
    gating_prior_scale : float, default=None
        Prior standard deviation of the gate's log-odds: of the intercepts (at the
        feature means) and of the coefficients per standard deviation of each feature.
        ``None`` means 2.5.
    resolution : "auto", float or None, default="auto"
        The rounding of ``y``: a response recorded as ``y`` stands for
        ``[y - h/2, y + h/2]``, and each line's noise variance gets ``h**2 / 12`` added in
        the likelihood and the predictive densities (Sheppard's correction), so lines
        cannot collapse onto tied responses. "auto" detects ``h`` as the step of the grid
        the responses lie on (0 for continuous data); 0 or ``None`` switches it off.
        The value used is ``resolution_``.
    dispersion_prior : float, default=None
        Prior mean of each component's ``alpha`` ("negative_binomial") or ``shape``
        ("gamma"); ``None`` means 10. Not used by the other families.
    relabel : {"auto", "sort", "stephens", "ecr"} or None, default="auto"
        How label switching is undone. "auto" is "stephens": draws are relabeled from
        their responsibilities (which use ``y``), which does not depend on one
        coefficient separating the lines. "sort" orders every draw by the intercepts
        (by the first slope without an intercept). ``None`` leaves draws as sampled.
        "ordered" is not available and means no relabeling.
    draws : int, default=1000
        Posterior draws kept per chain.
    tune : int, default=500
        Tuning steps discarded per chain (nutpie adapts faster than PyMC's sampler; in
        ``benchmarks/`` 1000 steps gave no more effective draws).
    chains : int, default=4
        Number of chains.
    cores : int, default=None
        Chains run in parallel; ``None`` uses every available core.
    backend : {"numba", "jax", "pymc"}, default="numba"
        "numba" and "jax" compile the model for nutpie; "pymc" uses PyMC's own NUTS.
    random_state : int, RandomState instance or None, default=None
        Seeds the starting points and the sampler; one value gives identical draws.
    progressbar : bool, default=False
        Show the sampler's progress bar.
    inference : {"nuts", "advi"}, default="nuts"
        "nuts" samples the posterior with NUTS. "advi" fits a mean-field normal
        approximation by minibatch ADVI (``advi_steps`` steps on random batches of
        ``batch_size`` rows) and draws ``draws`` samples from it: for data too large to
        sample (about 1e6 rows and beyond); fast, but its intervals are too narrow
        (see the benchmarks' large-data table) and ``chains``, ``tune`` and ``backend``
        are not used.
    advi_steps : int, default=20000
        Optimization steps of ``inference="advi"``.
    batch_size : int, default=1000
        Rows per step of ``inference="advi"`` (all rows when there are fewer).

    Attributes
    ----------
    coef_ : ndarray of shape (n_components, n_features)
        Posterior mean slopes.
    intercept_ : ndarray of shape (n_components,)
        Posterior mean intercepts (zeros without ``fit_intercept``).
    sigma_ : ndarray of shape (n_components,)
        Posterior mean noise standard deviations ("normal" only).
    resolution_ : float
        The rounding of ``y`` used (0: not rounded).
    dispersion_ : ndarray of shape (n_components,)
        Posterior mean ``alpha`` or ``shape`` ("negative_binomial", "gamma" only).
    weights_ : ndarray of shape (n_components,)
        Posterior mean weights; with gating, the gated weights averaged over the
        training rows and the draws.
    gate_intercept_, gate_coef_ : ndarray of shape (n_components,), (n_components, n_features)
        Posterior mean gate parameters (gating only; component 0 is the reference).
    idata_ : arviz.InferenceData
        Relabeled posterior on the user's scale: ``coef`` (component, feature), ``sigma``
        (component), ``intercept`` (component; with ``fit_intercept``), and ``weights``
        (component) or ``gate_intercept`` (component) and ``gate_coef`` (component,
        feature); also ``log_likelihood`` (each row's log density of ``y``),
        ``observed_data`` (``y``), ``constant_data`` (``X``) and ``sample_stats``.
    converged_ : bool
        Whether R-hat, ESS and divergence checks passed.
    convergence_ : dict
        The checks' values and, for failures, what to change.
    relabel_diagnostics_ : dict or None
        Share of draws permuted per chain, R-hat before and after relabeling.
    weight_concentration_prior_, coef_prior_scale_, intercept_prior_scale_, scale_prior_, gating_prior_scale_, dispersion_prior_ :
        The priors used, resolved from the data where left as ``None`` (``scale_prior_``
        is None for GLM families, ``dispersion_prior_`` for families without dispersion).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Defined only when ``X`` has string feature names.

    Notes
    -----
    The estimator is tagged as a regressor and ``predict(X)`` returns the posterior mean
    of ``E[y | X]``, but ``score`` is the mean log posterior predictive density of ``y``
    (higher is better), which, unlike R², sees the multimodal noise of a mixture. For R²
    use ``sklearn.metrics.r2_score(y, est.predict(X))``. Given ``y``, ``predict(X, y)``
    and ``predict_proba(X, y)`` return the component memberships instead.

    Examples
    --------
    >>> from bayesmix import BayesianMixtureRegression, datasets
    >>> co2 = datasets.load_co2data()
    >>> est = BayesianMixtureRegression(2, random_state=0)  # doctest: +SKIP
    >>> est.fit(co2[["GNP"]], co2["CO2"]).coef_.ravel().round(2)  # doctest: +SKIP
    array([-0.02,  0.68])
    """

    _parameter_constraints: dict = {
        **BaseBayesianMixture._parameter_constraints,
        "family": [StrOptions(set(_glm.RESPONSE_FAMILIES))],
        "fit_intercept": ["boolean"],
        "gating": ["boolean"],
        "weight_concentration_prior_type": [StrOptions(set(WEIGHT_PRIOR_TYPES))],
        "weight_concentration_prior": [Interval(Real, 0, None, closed="neither"), None],
        "coef_prior_scale": [Interval(Real, 0, None, closed="neither"), "array-like", None],
        "intercept_prior_scale": [Interval(Real, 0, None, closed="neither"), None],
        "scale_prior": [Interval(Real, 0, None, closed="neither"), None],
        "gating_prior_scale": [Interval(Real, 0, None, closed="neither"), None],
        "resolution": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left"), None],
        "dispersion_prior": [Interval(Real, 0, None, closed="neither"), None],
    }

    def __init__(
        self,
        n_components=2,
        *,
        family="normal",
        fit_intercept=True,
        gating=False,
        weight_concentration_prior_type="dirichlet_distribution",
        weight_concentration_prior=None,
        coef_prior_scale=None,
        intercept_prior_scale=None,
        scale_prior=None,
        gating_prior_scale=None,
        resolution="auto",
        dispersion_prior=None,
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
        super().__init__(
            n_components,
            relabel=relabel,
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            backend=backend,
            random_state=random_state,
            progressbar=progressbar,
            inference=inference,
            advi_steps=advi_steps,
            batch_size=batch_size,
        )
        self.family = family
        self.fit_intercept = fit_intercept
        self.gating = gating
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.coef_prior_scale = coef_prior_scale
        self.intercept_prior_scale = intercept_prior_scale
        self.scale_prior = scale_prior
        self.gating_prior_scale = gating_prior_scale
        self.resolution = resolution
        self.dispersion_prior = dispersion_prior

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "regressor"
        # ``score`` is a log predictive density, not R²: scikit-learn's check that a
        # regressor's score exceeds 0.5 (an R² threshold) does not apply to it.
        tags.regressor_tags = RegressorTags(poor_score=True)
        tags.target_tags.required = True
        return tags

    # ----------------------------------------------------------------- hooks

    def fit(self, X, y=None, sample_weight=None, *, offset=None, trials=None):
        """Sample the posterior of the mixture given the data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
            Each row's log-likelihood is multiplied by its weight.
        offset : float or array-like of shape (n_samples,), optional
            Added to every component's linear predictor (GLM families; for counts the
            log of each row's exposure). Default 0.
        trials : int or array-like of shape (n_samples,), optional
            Number of trials of each row ("binomial" only, where it is required).

        Returns
        -------
        self : object
        """
        self._fit_extras = (offset, trials)
        try:
            return super().fit(X, y, sample_weight=sample_weight)
        finally:
            del self._fit_extras

    def fit_predict(self, X, y=None, sample_weight=None, *, offset=None, trials=None):
        """Fit, then return the most probable component of each training row."""
        self.fit(X, y, sample_weight=sample_weight, offset=offset, trials=trials)
        return self.predict(X, y, offset=offset, trials=trials)

    def _validate_fit_data(self, X, y):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        y = _numeric_target(y)
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64, ensure_min_samples=2)
        offset, trials = getattr(self, "_fit_extras", (None, None))
        if self.family == "normal":
            check_not_constant(y, "y")
        self._warn_if_dependent_columns(X)
        return X, self._pack(y, offset, trials)

    def _warn_if_dependent_columns(self, X):
        """Warn before sampling when some columns of X are linear combinations of others.

        Their coefficients are then identified only through the prior, along a ridge that
        NUTS crosses slowly (a copied column: 160 leapfrog steps per draw against 5).
        Constant columns are left to the intercept.
        """
        varying = np.flatnonzero(np.ptp(X, axis=0) > 0)
        if varying.size < 2 or len(np.unique(X[:, varying], axis=0)) <= varying.size:
            return
        involved = varying[dependent_columns(X[:, varying], X[:, varying].std(axis=0))]
        if involved.size:
            warnings.warn(
                f"X columns {self._feature_labels(involved)} are linearly dependent (one is, to rounding error, a linear "
                "combination of the others): their coefficients are identified only by the prior, "
                "and sampling is slow. Drop the redundant column(s).",
                UserWarning,
                stacklevel=3,
            )

    def _validate_predict_data(self, X, y):
        X = validate_data(self, X, reset=False, dtype=np.float64)
        if y is not None:
            y, offset, trials = y if isinstance(y, _Response) else (y, None, None)
            y = self._pack(_check_target(y, X.shape[0]), offset, trials)
        return X, y

    def _pack(self, y, offset, trials):
        """The response as the model sees it: ``y``, or (GLM) columns y, offset, trials."""
        if self.family == "normal":
            if offset is not None or trials is not None:
                raise ValueError(
                    "offset and trials are for the GLM families; with family='normal' "
                    "subtract an offset from y instead."
                )
            return y
        offset, trials = self._extras(offset, trials, y.shape[0])
        _glm.check_response(self.family, y, trials)
        return np.column_stack([y, offset, trials])

    def _extras(self, offset, trials, n_rows):
        """Validated per-row ``offset`` and ``trials`` arrays of a GLM family."""
        if trials is not None and self.family != "binomial":
            raise ValueError(f"trials is for family='binomial', not family={self.family!r}.")
        if trials is None and self.family == "binomial":
            raise ValueError(
                "family='binomial' needs the number of trials of each row: pass "
                "trials=... (an int or one value per row); for 0/1 data use family='bernoulli'."
            )
        out = []
        for name, value, default in (("offset", offset, 0.0), ("trials", trials, 1.0)):
            value = np.full(n_rows, default) if value is None else np.asarray(value, dtype=np.float64)
            if value.ndim == 0:
                value = np.full(n_rows, float(value))
            if value.shape != (n_rows,):
                raise ValueError(f"{name} must be a scalar or have one value per row ({n_rows}), got shape {value.shape}.")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{name} contains NaN or infinity.")
            out.append(value)
        return out

    def _gated(self):
        return bool(self.gating) and self.n_components > 1

    def _standardization(self, X, y, sample_weight):
        if self.family != "normal":  # y keeps its scale (and its support)
            if self.fit_intercept:
                x_loc, x_scale = weighted_loc_scale(X, sample_weight)
            else:
                x_loc, x_scale = np.zeros(X.shape[1]), weighted_rms(X, sample_weight)
            # Where the intercepts' prior is centred: the link of the mean response.
            link_loc = _glm.intercept_location(self.family, y[:, 0], y[:, 1], y[:, 2], sample_weight)
            return {
                "x_loc": x_loc, "x_scale": x_scale, "y_loc": np.zeros(3), "y_scale": np.ones(3),
                "intercept_loc": link_loc,
            }
        if self.fit_intercept:
            x_loc, x_scale = weighted_loc_scale(X, sample_weight)
            y_loc, y_scale = weighted_loc_scale(y, sample_weight)
        else:
            x_loc, y_loc = np.zeros(X.shape[1]), 0.0
            x_scale = weighted_rms(X, sample_weight)
            y_scale = float(weighted_rms(y[:, None], sample_weight)[0])
        return {"x_loc": x_loc, "x_scale": x_scale, "y_loc": float(y_loc), "y_scale": float(y_scale)}

    def _resolve_priors(self, X, y, scaling):
        D = X.shape[1]
        x_scale, y_scale = scaling["x_scale"], scaling["y_scale"]
        self.weight_concentration_prior_ = resolve_concentration(
            self.weight_concentration_prior, self.n_components, self.weight_concentration_prior_type
        )
        # The rounding of y matters to normal noise only.
        self.resolution_ = (
            float(resolve_resolution(self.resolution, y, name="y")[0]) if self.family == "normal" else 0.0
        )
        self.gating_prior_scale_ = _scalar(self.gating_prior_scale, 2.5)
        self.dispersion_prior_ = (
            _scalar(self.dispersion_prior, 10.0) if self.family in _glm.DISPERSION else None
        )
        if self.family != "normal":  # priors on the link scale
            self.coef_prior_scale_ = _per_feature(
                self.coef_prior_scale, 2.5 / x_scale, D, "coef_prior_scale", positive=True
            )
            self.intercept_prior_scale_ = _scalar(self.intercept_prior_scale, 2.5)
            self.scale_prior_ = None
            return
        self.coef_prior_scale_ = _per_feature(
            self.coef_prior_scale, 2.5 * y_scale / x_scale, D, "coef_prior_scale", positive=True
        )
        self.intercept_prior_scale_ = _scalar(self.intercept_prior_scale, 2.5 * y_scale)
        self.scale_prior_ = _scalar(self.scale_prior, 0.5 * y_scale)
        # Noise floor of the EM starting point, standardized scale.
        self._sigma_floor = 0.1 * self.scale_prior_ / y_scale

    def _weight_prior(self):
        """The weights prior's type, or None when gating replaces the weights."""
        return None if self._gated() else self.weight_concentration_prior_type

    def _structure(self, n_features, relabel_method):
        return (
            self.n_components, n_features, bool(self.fit_intercept), self._gated(), self._weight_prior(), self.family,
        )

    def _build_model(self, n_features, relabel_method):
        return build_regression_mixture(
            self.n_components,
            n_features,
            fit_intercept=bool(self.fit_intercept),
            gating=self._gated(),
            weight_prior=self._weight_prior() or "dirichlet_distribution",
            family=self.family,
        )

    def _model_kernel(self, n_features, relabel_method):
        if self._gated():
            return None
        return RegressionKernel(
            process=self._weight_prior() == "dirichlet_process", fit_intercept=bool(self.fit_intercept), family=self.family
        )

    def _model_data(self, Xs, ys, sample_weight, scaling):
        x_scale, y_scale = scaling["x_scale"], scaling["y_scale"]
        if self.family != "normal":
            return {
                "X": Xs,
                "y": ys[:, 0],
                "offset": ys[:, 1],
                "trials": ys[:, 2],
                "sample_weight": sample_weight,
                "weight_concentration": self.weight_concentration_prior_,
                "coef_scale": self.coef_prior_scale_ * x_scale,
                "intercept_scale": self.intercept_prior_scale_,
                "intercept_loc": scaling["intercept_loc"],
                "dispersion_prior": self.dispersion_prior_ or 1.0,
                "gating_scale": self.gating_prior_scale_,
            }
        return {
            "X": Xs,
            "y": ys,
            "sample_weight": sample_weight,
            "weight_concentration": self.weight_concentration_prior_,
            "coef_scale": self.coef_prior_scale_ * x_scale / y_scale,
            "intercept_scale": self.intercept_prior_scale_ / y_scale,
            "scale_prior": self.scale_prior_ / y_scale,
            "gating_scale": self.gating_prior_scale_,
            "resolution": self.resolution_ / y_scale,
        }

    def _initial_values(self, Xs, ys, sample_weight, relabel_method, rng):
        K = self.n_components
        if self.family != "normal":
            A = np.column_stack([np.ones(len(Xs)), Xs]) if self.fit_intercept else Xs
            betas, dispersion, weights = _glm.em_start(
                self.family, A, ys[:, 0], ys[:, 1], ys[:, 2], K, self.dispersion_prior_ or 1.0,
                rng, intercept=bool(self.fit_intercept),
            )
            intercept, coef = (betas[:, 0], betas[:, 1:]) if self.fit_intercept else (None, betas)
            start = {"coef": coef}
            if dispersion is not None:
                start[_glm.DISPERSION[self.family]] = dispersion
        else:
            coef, intercept, sigma, weights = _em_start(
                Xs, ys, sample_weight, K, bool(self.fit_intercept), self._sigma_floor, rng
            )
            start = {"coef": coef, "sigma": sigma}
        if self.fit_intercept:
            start["intercept"] = intercept
        if K > 1 and self._gated():
            start["gate_intercept"] = np.log(weights[1:] / weights[0])
            start["gate_coef"] = np.zeros((K - 1, Xs.shape[1]))
        elif K > 1:
            start.update(initial_weights(weights, self.weight_concentration_prior_type))
        return start

    def _post_fit_functions(self, n_features, relabel_method):
        # (family, X, y, offset, trials, log-weights, intercepts, coefficients, dispersion, out);
        # with gating the memberships depend on X, and NumPy does the maths.
        # The family is a constant (``for_family``).
        family = f"literal({_FAMILY_CODES[self.family]}), "
        arguments = family + "float64[:, ::1], " + "float64[::1], " * 3 + "float64[:, ::1], " * 2 + "float64[:, :, ::1], float64[:, ::1]"
        functions = []
        if not self._gated():
            functions.append(("bayesmix.models.kernels:regression_row_log_likelihood", f"({arguments}, float64[:, ::1])"))
        if relabel_method in ("stephens", "ecr") and self.n_components > 1:
            if not self._gated():
                functions.append(("bayesmix.models.kernels:regression_log_joint", f"({arguments}, float64[:, :, ::1])"))
            functions += PROBABILITY_FUNCTIONS
        return tuple(functions)

    def _auto_relabel(self, n_features):
        return "stephens"

    def _sort_by(self):
        return "intercept" if self.fit_intercept else "coef"

    def _relabel(self, idata, X, y, method, rng):
        if method == "ordered":  # not available: there is no ordered transform here
            method = None
        idata = super()._relabel(idata, X, y, method, rng)
        if "gate_intercept" in idata.posterior:
            # Relabeling moves the reference; make component 0 the reference again (the
            # gated weights are unchanged by a common shift of the log-odds).
            post = idata.posterior
            for name in ("gate_intercept", "gate_coef"):
                post[name] = post[name] - post[name].isel(component=0)
        return idata

    def _to_user_scale(self, posterior, scaling):
        x_loc, x_scale = scaling["x_loc"], scaling["x_scale"]
        K = self.n_components
        coef_s = posterior["coef"]  # (chain, draw, K, D)
        lead = coef_s.shape[:2]
        if self.family == "normal":
            y_loc, y_scale = scaling["y_loc"], scaling["y_scale"]
            noise = "sigma"
            arrays = {"sigma": posterior["sigma"] * y_scale}
        else:  # the response was not scaled; dispersion parameters are scale-free
            y_loc, y_scale = 0.0, 1.0
            noise = _glm.DISPERSION.get(self.family)
            arrays = {noise: posterior[noise]} if noise else {}
        arrays["coef"] = coef_s * y_scale / x_scale
        dims = {"coef": ["component", "feature"]}
        if noise:
            dims[noise] = ["component"]
        if self.fit_intercept:
            shift = (coef_s * (x_loc / x_scale)).sum(axis=-1)
            arrays["intercept"] = y_loc + y_scale * (posterior["intercept"] - shift)
            dims["intercept"] = ["component"]
        if self._gated():
            zeros = np.zeros(lead + (1,))
            gi = np.concatenate([zeros, posterior["gate_intercept"]], axis=-1)
            gc = np.concatenate([zeros[..., None] * np.ones(x_loc.size), posterior["gate_coef"]], axis=-2)
            arrays["gate_coef"] = gc / x_scale
            arrays["gate_intercept"] = gi - (gc * (x_loc / x_scale)).sum(axis=-1)
            dims["gate_coef"] = ["component", "feature"]
            dims["gate_intercept"] = ["component"]
        else:
            arrays["weights"] = posterior["weights"] if K > 1 else np.ones(lead + (1,))
            dims["weights"] = ["component"]
        return arrays, dims

    # -------------------------------------------------------- predictive maths

    @staticmethod
    def _line_means(X, params):
        """Each line's mean response per draw, row and component: (S, N, K)."""
        mu = np.einsum("nd,skd->snk", X, params["coef"])
        if "intercept" in params:
            mu = mu + params["intercept"][:, None, :]
        return mu

    @staticmethod
    def _log_weights(X, params):
        """Log mixing weights per draw, row and component: (S, N, K)."""
        if "gate_intercept" in params:
            eta = params["gate_intercept"][:, None, :] + np.einsum("nd,skd->snk", X, params["gate_coef"])
            return eta - logsumexp(eta, axis=2, keepdims=True)
        log_w = np.log(params["weights"])[:, None, :]
        return np.broadcast_to(log_w, (log_w.shape[0], X.shape[0], log_w.shape[2]))

    def _kernel_arguments(self, X, y, params):
        """The arguments of the numba kernels of ``models.kernels`` (constant weights)."""
        n_draws, K = params["weights"].shape
        if self.family == "normal":
            response, offset, trials = y, np.zeros(len(y)), np.ones(len(y))
            dispersion = sheppard_sd(params["sigma"], self.resolution_)
        else:
            response, offset, trials = y[:, 0], y[:, 1], y[:, 2]
            name = _glm.DISPERSION.get(self.family)
            dispersion = params[name] if name else np.ones((n_draws, K))
        intercept = params["intercept"] if "intercept" in params else np.zeros((n_draws, K))
        with np.errstate(divide="ignore"):
            log_weights = np.log(params["weights"])
        arrays = (X, response, offset, trials, log_weights, intercept, params["coef"], dispersion)
        return (_FAMILY_CODES[self.family], *(np.ascontiguousarray(a, dtype=float) for a in arrays))

    def _row_log_likelihood(self, X, y, params):
        if y is None or self._gated():
            return super()._row_log_likelihood(X, y, params)
        out = np.empty((params["weights"].shape[0], X.shape[0]))
        for_family(regression_row_log_likelihood, *self._kernel_arguments(X, y, params), out)
        return out

    def _log_joint(self, X, y, params):
        if y is not None and not self._gated():
            out = np.empty((params["weights"].shape[0], X.shape[0], self.n_components))
            for_family(regression_log_joint, *self._kernel_arguments(X, y, params), out)
            return out
        log_w = self._log_weights(X, params)
        if y is None:  # no response: the prior membership probabilities w_k(x)
            return np.array(log_w)
        mu = self._line_means(X, params)
        if self.family == "normal":
            sigma = sheppard_sd(params["sigma"], self.resolution_)
            return log_w + normal_logpdf(y[None, :, None], mu, sigma[:, None, :], finite_tails=True)
        eta = mu + y[None, :, 1, None]
        dispersion = params.get(_glm.DISPERSION.get(self.family))
        if dispersion is not None:
            dispersion = dispersion[:, None, :]
        with np.errstate(over="ignore"):
            return log_w + _glm.logpdf(self.family, y[None, :, 0, None], eta, y[None, :, 2, None], dispersion)

    def _set_point_estimates(self, params):
        self.coef_ = params["coef"].mean(axis=0)
        if "sigma" in params:
            self.sigma_ = params["sigma"].mean(axis=0)
        if self.family in _glm.DISPERSION:
            self.dispersion_ = params[_glm.DISPERSION[self.family]].mean(axis=0)
        if "intercept" in params:
            self.intercept_ = params["intercept"].mean(axis=0)
        else:
            self.intercept_ = np.zeros(self.n_components)
        if "gate_intercept" in params:
            self.gate_intercept_ = params["gate_intercept"].mean(axis=0)
            self.gate_coef_ = params["gate_coef"].mean(axis=0)
            X = self.idata_.constant_data["X"].values
            self.weights_ = self._mean_weights(X, params).mean(axis=0)
        else:
            self.weights_ = params["weights"].mean(axis=0)

    def _data_groups(self, X, y):
        if self.family == "normal":
            return super()._data_groups(X, y)
        observed, constant = super()._data_groups(X, y[:, 0])
        constant["offset"] = (("y_row",), y[:, 1])
        constant["trials"] = (("y_row",), y[:, 2])
        return observed, constant

    def _mean_weights(self, X, params):
        n_draws = params["coef"].shape[0]
        out = np.empty((X.shape[0], self.n_components))
        for rows in self._chunks(n_draws, X.shape[0]):
            out[rows] = np.exp(self._log_weights(X[rows], params)).mean(axis=0)
        return out

    # ------------------------------------------------------------ public API

    def predict(self, X, y=None, *, offset=None, trials=None):
        """Posterior mean of ``E[y | X]``; or, given ``y``, each row's component.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), optional
            When given, return the most probable component of each ``(x, y)`` row
            (argmax of ``predict_proba(X, y)``) instead of a prediction.
        offset, trials : array-like of shape (n_samples,), optional
            The rows' offsets and numbers of trials (GLM families; see ``fit``).

        Returns
        -------
        ndarray of shape (n_samples,)
            ``mean_s sum_k w_k(x) mean_k(x)``, with ``mean_k(x)`` the inverse link of
            ``intercept_k + x @ coef_k + offset`` (times ``trials`` for "binomial");
            integer labels when ``y`` is given.
        """
        if y is not None:
            return self.predict_proba(X, y, offset=offset, trials=trials).argmax(axis=1)
        check_is_fitted(self)
        X, _ = self._validate_predict_data(X, None)
        offset, trials = self._predict_extras(offset, trials, X.shape[0])
        params = self._posterior_params()
        n_draws = params["coef"].shape[0]
        out = np.empty(X.shape[0])
        for rows in self._chunks(n_draws, X.shape[0]):
            w = np.exp(self._log_weights(X[rows], params))
            means = self._line_means(X[rows], params)
            if self.family != "normal":
                means = _glm.mean(self.family, means + offset[None, rows, None], trials[None, rows, None])
            out[rows] = (w * means).sum(axis=2).mean(axis=0)
        return out

    def _predict_extras(self, offset, trials, n_rows):
        if self.family == "normal":
            self._pack(None, offset, trials)  # raises when either is given
            return None, None
        return self._extras(offset, trials, n_rows)

    def predict_proba(self, X, y=None, *, offset=None, trials=None):
        """Posterior probability of each component for each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), optional
            With ``y``: the responsibilities ``p(component | x, y)`` of every draw,
            averaged over draws. Without: the mixing weights ``w_k(x)`` (the same for
            every row unless ``gating=True``), averaged over draws.
        offset, trials : array-like of shape (n_samples,), optional
            The rows' offsets and numbers of trials (GLM families; see ``fit``).

        Returns
        -------
        ndarray of shape (n_samples, n_components)
            Rows sum to 1.
        """
        return super().predict_proba(X, _response(y, offset, trials))

    def sample_assignments(self, X, y=None, random_state=None, *, offset=None, trials=None):
        """Draw each row's component under every posterior draw (see the base class).

        ``offset`` and ``trials`` are the rows' offsets and numbers of trials (GLM
        families; see ``fit``).
        """
        return super().sample_assignments(X, _response(y, offset, trials), random_state)

    def score_samples(self, X, y=None, *, offset=None, trials=None):
        """Log posterior predictive density of each row's ``y`` given its ``X``.

        ``log mean_s sum_k w_k(x) p_k(y | x)``, with ``p_k`` component k's density
        (for "normal", ``Normal(y | intercept_k + x @ coef_k, sigma_k)``; a probability
        mass for the count families).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Required.
        offset, trials : array-like of shape (n_samples,), optional
            The rows' offsets and numbers of trials (GLM families; see ``fit``).

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        if y is None:
            raise ValueError("score_samples needs y: it is the log predictive density of y given X.")
        return super().score_samples(X, _response(y, offset, trials))

    def score(self, X, y=None, sample_weight=None, *, offset=None, trials=None):
        """Mean log posterior predictive density of ``y`` given ``X`` (higher is better).

        Not R²: for that, ``sklearn.metrics.r2_score(y, self.predict(X))``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Required.
        sample_weight : array-like of shape (n_samples,), optional
            Weights of the rows in the mean.
        offset, trials : array-like of shape (n_samples,), optional
            The rows' offsets and numbers of trials (GLM families; see ``fit``).

        Returns
        -------
        float
        """
        if y is None:
            raise ValueError("score needs y: it is the mean log predictive density of y given X.")
        scores = self.score_samples(X, y, offset=offset, trials=trials)
        return float(np.average(scores, weights=sample_weight))

    def sample(self, X, n_samples=1, random_state=None, *, offset=None, trials=None):
        """Draw responses from the posterior predictive distribution given ``X``.

        Each draw of a row picks a random posterior draw, a component from that draw's
        weights ``w_k(x)``, and draws the response from that component (for "normal",
        adds its noise to its line).

        Parameters
        ----------
        X : array-like of shape (n_rows, n_features)
        n_samples : int, default=1
            Draws per row.
        random_state : int, RandomState instance or None
            Defaults to the estimator's ``random_state``.
        offset, trials : array-like of shape (n_rows,), optional
            The rows' offsets and numbers of trials (GLM families; see ``fit``).

        Returns
        -------
        ndarray of shape (n_samples, n_rows)
        """
        check_is_fitted(self)
        X, _ = self._validate_predict_data(X, None)
        # Each sample holds a response per row and, per row, a (draw, component) table.
        check_n_samples(n_samples, X.shape[0] * (2 + self.n_components))
        offset, trials = self._predict_extras(offset, trials, X.shape[0])
        rng = check_random_state(self.random_state if random_state is None else random_state)
        params = self._posterior_params()
        n_draws = params["coef"].shape[0]
        draw = rng.randint(n_draws, size=n_samples)
        picked = {name: value[draw] for name, value in params.items()}
        return self._replicate(X, picked, rng, offset=offset, trials=trials)

    def _replicate(self, X, picked, rng, training_rows=None, offset=None, trials=None):
        if training_rows is not None and self.family != "normal":
            constant = self.idata_.constant_data
            offset = constant["offset"].values[training_rows]
            trials = constant["trials"].values[training_rows]
        weights = np.exp(self._log_weights(X, picked))  # (n_draws, n_rows, K)
        labels = draw_categorical(weights, rng)
        mu = np.take_along_axis(self._line_means(X, picked), labels[..., None], axis=2)[..., 0]
        if self.family != "normal":
            name = _glm.DISPERSION.get(self.family)
            dispersion = None if name is None else np.take_along_axis(picked[name], labels, axis=1)
            trials = np.broadcast_to(trials, mu.shape)
            return _glm.rvs(self.family, rng, mu + offset, trials, dispersion)
        sd = np.take_along_axis(picked["sigma"], labels, axis=1)
        return mu + sd * rng.standard_normal(mu.shape)


# ------------------------------------------------------------------ helpers


def _numeric_target(y):
    """``y`` as float64 (booleans as 0 and 1, numeric strings parsed), or a clear error."""
    try:
        return np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"y must be numeric (the response of a regression), but it could not be "
            f"converted to float: {exc}. Encode text responses as numbers first."
        ) from None
def _response(y, offset, trials):
    """``y`` for the base class's predictive methods, carrying offsets and trials along."""
    if y is None or (offset is None and trials is None):
        return y
    return _Response(y, offset, trials)


def _check_target(y, n_rows):
    """Validate a response given to a predictive method."""
    y = _numeric_target(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"y should be a 1d array, got an array of shape {y.shape} instead.")
    if y.shape[0] != n_rows:
        raise ValueError(f"y has {y.shape[0]} rows but X has {n_rows}: they must match.")
    if not np.all(np.isfinite(y)):
        raise ValueError("Input y contains NaN or infinity.")
    return y


def _scalar(value, default):
    return float(default) if value is None else float(value)


def _em_start(Xs, ys, w, K, fit_intercept, sigma_floor, rng, n_iter=100):
    """Weighted EM fit of a K-line mixture from the best of a few starting splits.

    Returns ``(coef (K, D), intercept (K,), sigma (K,), weights (K,))`` on the
    standardized scale. Noise standard deviations are floored at ``sigma_floor`` so that
    EM cannot run into a degenerate line; components are ordered by intercept.
    """
    N, D = Xs.shape
    A = np.column_stack([np.ones(N), Xs]) if fit_intercept else Xs
    ridge = 1e-3 * np.eye(A.shape[1])

    def m_step(resp):
        betas, sigmas = [], []
        for k in range(K):
            r = w * (resp[:, k] + 1e-8)
            Ar = A * r[:, None]
            beta = np.linalg.solve(A.T @ Ar + ridge, Ar.T @ ys)
            resid = ys - A @ beta
            betas.append(beta)
            sigmas.append(np.sqrt((r * resid**2).sum() / r.sum()))
        weights = np.clip(w @ resp / w.sum(), 1e-3, None)
        return np.array(betas), np.maximum(np.array(sigmas), sigma_floor), weights / weights.sum()

    def e_step(betas, sigmas, weights):
        log_joint = np.log(weights) + normal_logpdf(ys[:, None], A @ betas.T, sigmas)
        total = logsumexp(log_joint, axis=1, keepdims=True)
        return np.exp(log_joint - total), float(w @ total[:, 0])

    starts = []
    root_w = np.sqrt(w)
    beta_ols = np.linalg.lstsq(A * root_w[:, None], ys * root_w, rcond=None)[0]
    order = np.argsort(ys - A @ beta_ols, kind="stable")
    bands = np.empty(N, dtype=int)
    bands[order] = np.minimum((np.cumsum(w[order]) - 0.5 * w[order]) * K // w.sum(), K - 1)
    starts.append(np.eye(K)[bands])
    if K > 1:
        with warnings.catch_warnings(), threadpool_limits(1):  # see BayesianGaussianMixture
            warnings.simplefilter("ignore")
            # Rows are distinct, so there may be fewer of them than lines.
            kmeans = KMeans(min(K, N), n_init=1, max_iter=50, random_state=rng.randint(2**31 - 1))
            labels = kmeans.fit_predict(np.column_stack([Xs, ys]), sample_weight=w)
        starts.append(np.eye(K)[labels])  # lines beyond the clusters start empty
        starts.append(rng.dirichlet(np.ones(K), size=N))
    best = None
    for resp in starts:
        params = m_step(resp)
        loglik = -np.inf
        for _ in range(n_iter if K > 1 else 1):
            resp, new_loglik = e_step(*params)
            params = m_step(resp)
            if abs(new_loglik - loglik) < 1e-6 * w.sum():
                break
            loglik = new_loglik
        _, loglik = e_step(*params)
        if best is None or loglik > best[0]:
            best = (loglik, params)
    betas, sigmas, weights = best[1]
    if fit_intercept:
        intercept, coef = betas[:, 0], betas[:, 1:]
    else:
        intercept, coef = np.zeros(K), betas
    order = np.argsort(intercept if fit_intercept else coef[:, 0], kind="stable")
    return coef[order], intercept[order], sigmas[order], weights[order]
