"""BayesianGaussianMixture: a Gaussian mixture sampled by NUTS."""

import warnings
from numbers import Real

import numpy as np
from sklearn.cluster import KMeans
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import validate_data
from threadpoolctl import threadpool_limits

from ._base import (
    BaseBayesianMixture,
    check_not_constant,
    check_rows_within_reach,
    dependent_columns,
    logsumexp,
    weighted_loc_scale,
)
from .models import fused_mvn
from .models.fused import row_log_likelihood
from .models.gaussian import build_gaussian_mixture
from .models.kernels import FullCovarianceKernel, GaussianKernel
from .models.weights import WEIGHT_PRIOR_TYPES, initial_weights, resolve_concentration
from .relabel import CONFIDENCE_FUNCTION
from .resolution import resolve_resolution, sheppard_sd

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


# Rounding below this fraction of a feature's scale is left out of full and tied models.
NEGLIGIBLE_ROUNDING = 1e-3


# k-means runs the start is chosen from, by the mixture likelihood of their clusters.
# k-means' own choice, the run of least inertia, may split one long cluster and merge two
# round ones: chains started there left that basin slowly or never (R-hat 1.54 at the true
# K; benchmarks/validation/findings.md, section 6, session 18).
KMEANS_RUNS = 8


def _likeliest_kmeans(Xs, n_clusters, sample_weight, covariance_type, prior, rng):
    """Labels and centres of the k-means run whose clusters, as a mixture, fit ``Xs`` best.

    Each cluster is a component with the cluster's share of the weight, its centre and
    its covariance of ``covariance_type``, shrunk towards ``prior`` (a scatter matrix
    worth D + 2 rows) as the starting Cholesky factors are.
    """
    best = (-np.inf, None, None)
    # One thread: OpenMP's pool costs more than it saves here, most of all while the
    # previous fit's sampler threads are still winding down.
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        for _ in range(KMEANS_RUNS):
            kmeans = KMeans(n_clusters, n_init=1, max_iter=100, random_state=rng.randint(2**31 - 1))
            labels = kmeans.fit_predict(Xs, sample_weight=sample_weight)
            score = _clusters_log_likelihood(Xs, labels, kmeans.cluster_centers_, sample_weight, covariance_type, prior)
            if score > best[0] or best[1] is None:
                best = (score, labels, kmeans.cluster_centers_)
    return best[1], best[2]


def _clusters_log_likelihood(Xs, labels, centers, sample_weight, covariance_type, prior):
    """Weighted log-likelihood of ``Xs`` under the mixture that the clusters make."""
    n_clusters, D = centers.shape
    resid = [Xs - center for center in centers]
    members = [labels == k for k in range(n_clusters)]
    mass = np.array([sample_weight[m].sum() for m in members])
    scatter = np.array([
        (r[m] * sample_weight[m, None]).T @ r[m] + prior for r, m in zip(resid, members)
    ])
    if covariance_type == "tied":
        scatter[:] = scatter.sum(axis=0) - (n_clusters - 1) * prior
        covs = scatter / (mass.sum() + D + 2.0)
    else:
        covs = scatter / (mass + D + 2.0)[:, None, None]
        if covariance_type in ("diag", "spherical"):
            variances = np.diagonal(covs, axis1=1, axis2=2)
            if covariance_type == "spherical":
                variances = np.repeat(variances.mean(axis=1, keepdims=True), D, axis=1)
            covs = variances[:, :, None] * np.eye(D)
    chols = np.linalg.cholesky(covs)
    log_joint = np.empty((len(Xs), n_clusters))
    with np.errstate(divide="ignore"):
        log_weights = np.log(mass / mass.sum())
    for k, r in enumerate(resid):
        z = r @ np.linalg.inv(chols[k]).T
        log_joint[:, k] = log_weights[k] - np.log(np.diag(chols[k])).sum() - 0.5 * (z * z).sum(axis=1)
    row_log_density = logsumexp(log_joint, axis=1)
    return float(sample_weight @ row_log_density) - 0.5 * D * np.log(2 * np.pi) * sample_weight.sum()


class BayesianGaussianMixture(BaseBayesianMixture):
    """Gaussian mixture with a full posterior, sampled by NUTS (nutpie).

    The model, on data standardized inside ``fit`` (each feature centred and divided by
    its standard deviation; one common scale for ``covariance_type="spherical"``)::

        weights ~ Dirichlet(weight_concentration_prior * ones(K))  (or stick-breaking)
        means[k] ~ Normal(mean_prior, mean_prior_scale)          (per feature)
        sd ~ Gamma(2, 2 / scale_prior)                           (per feature)
        correlations ~ LKJ(lkj_eta)                              ("full", "tied")
        x_i ~ sum_k weights[k] Normal(means[k], covariance[k])

    Every prior is stated and reported on the user's scale. The Gamma(2, .) prior on
    standard deviations has zero density at zero, which keeps the sampler away from the
    degenerate maxima of a mixture likelihood where a component collapses onto one point.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components K.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        As in :class:`sklearn.mixture.GaussianMixture`. With one feature, "full", "diag"
        and "spherical" all mean one standard deviation per component. "full" and "tied"
        refuse (``ValueError``) columns that are linear combinations of others: there,
        unlike scikit-learn's ``reg_covar``, no term keeps a covariance from collapsing
        onto the data, and the posterior does not exist.
    weight_concentration_prior_type : {"dirichlet_distribution", "dirichlet_process"}, \
            default="dirichlet_distribution"
        Prior on the weights, named as in scikit-learn's ``BayesianGaussianMixture``.
        "dirichlet_distribution": ``weights ~ Dirichlet(c * ones(K))``, every component
        alike. "dirichlet_process": stick-breaking truncated at ``n_components``:
        ``sticks[k] ~ Beta(1, c)``, ``weights[k] = sticks[k] * prod_{j<k}(1 - sticks[j])``
        and the last component takes the rest; expected weights shrink geometrically
        with k, so an overfitted ``n_components`` leaves superfluous components nearly
        empty. scikit-learn fits either prior by mean-field variational inference
        (a point estimate of the weights and too narrow a spread); here the posterior is
        sampled, and its ``weights`` are relabeled like every other component parameter
        (the sticks are not kept: after relabeling they no longer belong to the
        components). scikit-learn's default type is the process; here it is the
        distribution. ``relabel="ordered"`` is refused with the process, whose
        components are not exchangeable.
    weight_concentration_prior : float, default=None
        The concentration ``c``; ``None`` means ``1 / n_components`` for the distribution
        (scikit-learn's default) and 1 for the process (uniform sticks: a process's
        concentration should not depend on its truncation, and ``Beta(1, 1/K)`` sticks
        have an unbounded density at 1). Below 1 the distribution lets components the
        data do not need empty out, which is also what lets an overfitted
        ``n_components`` converge (with 1 they kept passing between empty and sharing
        a cluster); smaller values (e.g. 0.05) empty them further.
    mean_prior : array-like of shape (n_features,), default=None
        Prior mean of the component means; ``None`` means the data mean.
    mean_prior_scale : float or array-like of shape (n_features,), default=None
        Prior standard deviation of the component means; ``None`` means twice the data
        standard deviation.
    scale_prior : float or array-like of shape (n_features,), default=None
        Prior mean of each component's standard deviations; ``None`` means half the data
        standard deviation.
    lkj_eta : float, default=2.0
        LKJ concentration of the correlation matrices ("full" and "tied"); 1 is uniform,
        larger values favour weak correlations.
    resolution : "auto", float, array-like of shape (n_features,) or None, default="auto"
        The data's rounding: a value recorded as ``x`` stands for ``[x - h/2, x + h/2]``.
        Each component's variance gets ``h**2 / 12`` added in the likelihood and the
        predictive densities (Sheppard's correction of the interval probability), so
        components cannot collapse onto tied values. "auto" detects ``h`` per feature as
        the step of the grid the values lie on (0 for continuous data, see
        :func:`bayesmix.resolution.detect_resolution`); a number or array sets it; 0 or
        ``None`` switches it off. The resolved values are in ``resolution_``. Full and
        tied covariances leave out in the model a rounding below a thousandth of the
        feature's scale (it changes a variance by less than 1e-7 of itself).
    relabel : {"auto", "ordered", "sort", "stephens", "ecr"} or None, default="auto"
        How label switching is undone. "ordered" orders the means inside the model (one
        feature only); "sort" orders every draw by the means (first feature);
        "stephens" and "ecr" relabel after sampling from the responsibilities. "auto"
        is "sort" for one feature, "stephens" otherwise. ``None`` leaves draws as
        sampled.
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
        numba compiles slowest (cached on disk across processes) and samples fastest.
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
    weights_ : ndarray of shape (n_components,)
        Posterior mean weights.
    means_ : ndarray of shape (n_components, n_features)
        Posterior mean component means.
    covariances_ : ndarray
        Posterior mean covariances; shape as in ``GaussianMixture`` for the
        ``covariance_type``.
    precisions_ : ndarray
        Inverses of ``covariances_`` (shapes as they), so ``precisions_ @ covariances_``
        is the identity, as in scikit-learn, whose ``BayesianGaussianMixture`` also
        inverts its point estimate of the covariances. This is not the posterior mean
        of the precision, which is larger (Jensen's inequality); compute that from
        ``idata_`` if needed.
    precisions_cholesky_ : ndarray
        Upper-triangular factors ``U`` with ``U @ U.T = precisions_`` ("full", "tied"),
        or ``1 / sqrt(covariances_)`` ("diag", "spherical"), as in ``GaussianMixture``.
    idata_ : arviz.InferenceData
        Relabeled posterior on the user's scale (``weights``, ``means`` and the scale
        parameters ``sigmas``/``sigma``/``covariances``/``covariance``), ``log_likelihood``
        (each row's log density, marginalized over components), ``observed_data`` and
        ``sample_stats``.
    converged_ : bool
        Whether R-hat, ESS and divergence checks passed.
    convergence_ : dict
        The checks' values and, for failures, what to change.
    relabel_diagnostics_ : dict or None
        Share of draws permuted per chain, R-hat before and after relabeling.
    weight_concentration_prior_, mean_prior_, mean_prior_scale_, scale_prior_ :
        The priors used, resolved from the data where left as ``None``.
    resolution_ : ndarray of shape (n_features,)
        The resolution used per feature (user scale; 0: not rounded).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Defined only when ``X`` has string feature names.

    Examples
    --------
    >>> from bayesmix import BayesianGaussianMixture, datasets
    >>> X = datasets.load_faithful()[["waiting"]]
    >>> est = BayesianGaussianMixture(n_components=2, random_state=0).fit(X)  # doctest: +SKIP
    >>> est.means_.ravel().round()  # doctest: +SKIP
    array([55., 80.])
    """

    # Chains start at the k-means clusters as they are: nutpie's U(-1, 1) jitter
    # (unconstrained space, unit-scale data) can throw a chain into a minor mode whose
    # basin it never leaves.
    _jitter_initial_values = False

    def _low_rank_mass_matrix(self, n_features):
        # The Cholesky factors' coordinates are correlated with each other and with the
        # means, and the more so in components the data leave (nearly) empty: with the
        # diagonal mass matrix a 5-D full K=4 fit took 73 leapfrog steps per draw and a
        # 2-D full K=6 fit on three clusters 57, against 7 and 31 with the low-rank
        # correction (benchmarks/validation/findings.md, section 6). Diagonal and 1-D
        # fits gained nothing from it.
        return n_features > 1 and self.covariance_type in ("full", "tied")

    _parameter_constraints: dict = {
        **BaseBayesianMixture._parameter_constraints,
        "covariance_type": [StrOptions(set(COVARIANCE_TYPES))],
        "weight_concentration_prior_type": [StrOptions(set(WEIGHT_PRIOR_TYPES))],
        "weight_concentration_prior": [Interval(Real, 0, None, closed="neither"), None],
        "mean_prior": ["array-like", None],
        "mean_prior_scale": [Interval(Real, 0, None, closed="neither"), "array-like", None],
        "scale_prior": [Interval(Real, 0, None, closed="neither"), "array-like", None],
        "lkj_eta": [Interval(Real, 0, None, closed="neither")],
        "resolution": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left"), "array-like", None],
    }

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        weight_concentration_prior_type="dirichlet_distribution",
        weight_concentration_prior=None,
        mean_prior=None,
        mean_prior_scale=None,
        scale_prior=None,
        lkj_eta=2.0,
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
        self.covariance_type = covariance_type
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_prior = mean_prior
        self.mean_prior_scale = mean_prior_scale
        self.scale_prior = scale_prior
        self.lkj_eta = lkj_eta
        self.resolution = resolution

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "density_estimator"
        return tags

    # ----------------------------------------------------------------- hooks

    def _validate_fit_data(self, X, y):
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        check_not_constant(X, "X")
        self._warn_if_overparametrized(*X.shape)
        return X, None

    def _warn_if_overparametrized(self, n_samples, n_features):
        """Warn before sampling when a component has more parameters than rows to fit them."""
        K, D = self.n_components, n_features
        cov = self._effective_covariance_type(D)
        per_component = D + {"full": D * (D + 1) // 2, "tied": D * (D + 1) // (2 * K), "diag": D, "spherical": 1}[cov]
        if per_component <= n_samples / K:
            return
        cheaper = [c for c in ("tied", "diag", "spherical") if COVARIANCE_TYPES.index(c) > COVARIANCE_TYPES.index(cov)]
        hint = f"use covariance_type={' or '.join(repr(c) for c in cheaper)}, " if cheaper else ""
        warnings.warn(
            f"covariance_type={cov!r} with {D} features gives each of the {K} components "
            f"{per_component} parameters but there are only {n_samples / K:.0f} rows per "
            f"component: the posterior is mostly prior, and sampling it is slow. {hint.capitalize()}"
            "fewer components or fewer features (e.g. PCA) for a model the data can carry.",
            UserWarning,
            stacklevel=3,
        )

    def _standardization(self, X, y, sample_weight):
        loc, scale = weighted_loc_scale(X, sample_weight)
        # Covariances are squares of the data's scale, which float64 holds only
        # between about 1e-154 and 1e154.
        bad = np.flatnonzero((scale < 1e-150) | (scale > 1e150))
        if bad.size:
            raise ValueError(
                f"X column(s) {bad.tolist()} spread over {scale[bad[0]]:.3g}: their "
                "variances lie outside what float64 can hold (1e-300 to 1e300), so no "
                "covariance can be reported. Rescale X (e.g. StandardScaler) first."
            )
        if self.covariance_type == "spherical":
            peak = scale.max()
            scale = np.full_like(scale, peak * np.sqrt(np.mean((scale / peak) ** 2)))
        return {"x_loc": loc, "x_scale": scale}

    def _resolve_priors(self, X, y, scaling):
        D = X.shape[1]
        loc, scale = scaling["x_loc"], scaling["x_scale"]
        self.weight_concentration_prior_ = resolve_concentration(
            self.weight_concentration_prior, self.n_components, self.weight_concentration_prior_type
        )
        self.mean_prior_ = _per_feature(self.mean_prior, loc, D, "mean_prior")
        self.mean_prior_scale_ = _per_feature(self.mean_prior_scale, 2.0 * scale, D, "mean_prior_scale", positive=True)
        self.scale_prior_ = _per_feature(self.scale_prior, 0.5 * scale, D, "scale_prior", positive=True)
        self.resolution_ = resolve_resolution(self.resolution, X)
        self._warn_if_two_valued(X)
        self._feature_scale = np.asarray(scale, dtype=float)
        # Least starting standard deviation, standardized scale.
        self._sigma_floor = 0.1 * float(np.min(self.scale_prior_ / scale))
        self._check_columns_independent(X, scale)

    def _warn_if_two_valued(self, X):
        """Say so when "auto" treats a column of two values as rounded to their spacing."""
        if not (isinstance(self.resolution, str) and self.resolution == "auto"):
            return
        rounded = np.flatnonzero(self.resolution_ > 0)
        two_valued = [j for j in rounded if np.unique(X[:, j]).size == 2]
        if not two_valued:
            return
        labels = ", ".join(str(label) for label in self._feature_labels(two_valued))
        warnings.warn(
            f"Column(s) {labels} of X take only two values. A Gaussian component can shrink "
            "onto one of them, where its density has no bound and chains disagree, so they "
            "are treated as rounded to the step between the two values (`resolution_`). For "
            "a binary column, MarginalMixture with a 'bernoulli' family models it as one; "
            "pass `resolution` yourself to change this.",
            UserWarning,
            stacklevel=4,
        )

    def _check_columns_independent(self, X, scale):
        """Refuse full or tied covariances of rows that span fewer dimensions than columns.

        If some column is a linear combination of others, every component can shrink its
        covariance to zero across the data: the likelihood grows without bound and the
        posterior does not exist. The sampler finds that collapse, and its draws are
        singular covariances. Rounded data are exempt: the rounding's variance keeps every
        covariance positive definite. So are data with no more distinct rows than columns,
        which ``_warn_if_overparametrized`` has warned about (scikit-learn's checks fit 30
        columns on 9 rows).
        """
        D = X.shape[1]
        if D == 1 or len(X) <= D or self._rounded_covariance(D):
            return
        if self._effective_covariance_type(D) not in ("full", "tied"):
            return
        involved = dependent_columns(X, scale)
        if not involved.size:
            return
        raise ValueError(
            f"covariance_type={self.covariance_type!r} needs rows that vary in every direction, "
            f"but columns {self._feature_labels(involved)} are linearly dependent (one is, to "
            "rounding error, a linear combination of the others): each component's covariance "
            "could shrink to zero across the data, so the posterior does not exist. Drop the "
            "redundant column(s) (or reduce X with PCA), or use covariance_type='diag' or "
            "'spherical'."
        )

    def _effective_covariance_type(self, n_features):
        if n_features == 1 and self.covariance_type != "tied":
            return "spherical"
        return self.covariance_type

    def _structure(self, n_features, relabel_method):
        cov = self._effective_covariance_type(n_features)
        eta = float(self.lkj_eta) if cov in ("full", "tied") else None
        ordered = relabel_method == "ordered"
        return (
            self.n_components, n_features, cov, ordered, eta, self.weight_concentration_prior_type, self._rounded_covariance(n_features),
        )

    def _rounded_covariance(self, n_features):
        """Whether full or tied covariances get the data's rounding added in the model.

        Rounding finer than ``NEGLIGIBLE_ROUNDING`` of a feature's scale changes its
        variance by less than 1e-7 of itself; leaving it out spares a Cholesky
        factorization per component in every gradient.
        """
        cov = self._effective_covariance_type(n_features)
        relevant = self.resolution_ > NEGLIGIBLE_ROUNDING * self._feature_scale
        return cov in ("full", "tied") and n_features > 1 and bool(np.any(relevant))

    def _build_model(self, n_features, relabel_method):
        if relabel_method == "ordered" and n_features > 1:
            raise ValueError(
                "relabel='ordered' needs one feature; use 'stephens', 'ecr' or 'sort' "
                f"for {n_features} features."
            )
        if relabel_method == "ordered" and self.weight_concentration_prior_type == "dirichlet_process":
            raise ValueError(
                "relabel='ordered' cannot be combined with weight_concentration_prior_type="
                "'dirichlet_process': the stick-breaking prior is not exchangeable, so ordering "
                "the means inside the model would change the model (the first, largest stick "
                "would belong to the smallest mean). Use relabel='sort' or 'auto'."
            )
        return build_gaussian_mixture(
            self.n_components,
            n_features,
            self._effective_covariance_type(n_features),
            ordered=relabel_method == "ordered",
            lkj_eta=float(self.lkj_eta),
            weight_prior=self.weight_concentration_prior_type,
            rounded=self._rounded_covariance(n_features),
        )

    def _model_kernel(self, n_features, relabel_method):
        cov = self._effective_covariance_type(n_features)
        process = self.weight_concentration_prior_type == "dirichlet_process"
        if cov in ("full", "tied") and n_features > 1:
            return FullCovarianceKernel(
                process=process, tied=cov == "tied", eta=float(self.lkj_eta), rounded=self._rounded_covariance(n_features)
            )
        return GaussianKernel(
            process=process,
            ordered=relabel_method == "ordered",
            tied=cov == "tied",
            spherical=cov == "spherical",
        )

    def _model_data(self, Xs, ys, sample_weight, scaling):
        loc, scale = scaling["x_loc"], scaling["x_scale"]
        return {
            "X": Xs,
            "sample_weight": sample_weight,
            "weight_concentration": self.weight_concentration_prior_,
            "mean_loc": (self.mean_prior_ - loc) / scale,
            "mean_scale": self.mean_prior_scale_ / scale,
            "scale_prior": self.scale_prior_ / scale,
            "resolution": self.resolution_ / scale,
        }

    def _initial_values(self, Xs, ys, sample_weight, relabel_method, rng):
        """Starting points from weighted k-means clusters: each one's mean, share and spread.

        The clusters are those of the k-means run (of ``KMEANS_RUNS``) that fits the data
        best as a mixture of the model's covariance type.

        Means, weights and (where the model has them as free variables) standard
        deviations all start from the clusters. Starting only the means (at data
        quantiles), with weights and scales at the prior and nutpie's jitter on top, let
        a chain settle in a minor mode (one wide component covering a small, distant
        cluster, the other component split over the main one) when the weights were
        unequal; such chains disagree and the fit fails its R-hat check.
        """
        K, D = self.n_components, Xs.shape[1]
        cov = self._effective_covariance_type(D)
        # The prior's scales as D + 2 rows: shrinks each cluster's covariance towards them,
        # so that a cluster of a few points still has a positive-definite one.
        prior = np.diag((self.scale_prior_ / self._feature_scale) ** 2) * (D + 2.0)
        # Rows are distinct (see ``empirical_distribution``), so there may be fewer of
        # them than components; the last cluster then starts the extra ones.
        labels, centers = _likeliest_kmeans(Xs, min(K, len(Xs)), sample_weight, cov, prior, rng)
        # Clusters in order of their first feature: k-means' own labels are arbitrary.
        order = np.argsort(centers[:, 0], kind="stable")
        order = np.r_[order, np.full(K - order.size, order[-1])]
        member = (labels[:, None] == order[None, :]) * sample_weight[:, None]  # (N, K)
        mass = member.sum(axis=0)
        means = centers[order]
        resid2 = (Xs[:, None, :] - means[None]) ** 2  # (N, K, D)
        spread = np.einsum("nk,nkd->kd", member, resid2)  # weighted sums of squares (K, D)
        start = {}
        # nutpie cannot start where a gradient entry is exactly 0, and the k-means
        # clusters are a stationary point of the likelihood when they are well
        # separated (a centred cluster is one of the prior too): every start is moved
        # a small step off it.
        step = 1e-3 * (np.arange(K) + 1.0)
        if D == 1:
            start["means"] = means[:, 0] + step
            if relabel_method == "ordered" and K > 1:
                # Increasing means: the ordered transform fails on equal means.
                start["means"] = np.maximum.accumulate(means[:, 0]) + step
                self._check_ordered_start(start["means"])
        else:
            start["means"] = means + step[:, None]
        if K > 1:
            # (mass + 1) / (sum + K) is the weights' mode in the sampler's unconstrained
            # space when the clusters are well separated, so it is tilted away from it.
            weights = (mass + 1.0) * (1.0 + 0.1 * step / step[-1])
            start.update(initial_weights(weights, self.weight_concentration_prior_type))
        # A cluster of one point has no spread: no standard deviation starts below a
        # tenth of the prior scale.
        floor = self._sigma_floor
        if cov == "tied" and D == 1:
            start["sigma"] = max(np.sqrt(spread.sum() / mass.sum()), floor)
        elif cov in ("diag", "spherical"):
            variances = spread / np.maximum(mass, 1e-12)[:, None]
            if cov == "spherical":
                variances = variances.mean(axis=1, keepdims=True)
            sigmas = np.maximum(np.sqrt(variances), floor)
            start["sigmas"] = sigmas[:, 0] if D == 1 else sigmas
        else:
            # Cholesky factors from the clusters' pooled covariance, shrunk towards the
            # prior's scales. At PyMC's default point plus nutpie's U(-1, 1) jitter, one
            # chain in four sometimes settled in a minor mode at the true K
            # (benchmarks/validation/findings.md, section 6).
            scatter = np.einsum("nk,nkd,nke->kde", member, Xs[:, None, :] - means[None], Xs[:, None, :] - means[None])
            rows = np.tril_indices(D)
            pooled = np.linalg.cholesky((scatter.sum(axis=0) + prior) / (mass.sum() + D + 2.0))[rows]
            if cov == "tied":
                start["chol"] = pooled
            else:
                for k in range(K):
                    start[f"chol_{k}"] = pooled
        return start

    @staticmethod
    def _check_ordered_start(means):
        if not np.all(np.diff(means) > 0):
            raise ValueError("Could not find distinct starting means for the ordered model.")

    def _post_fit_functions(self, n_features, relabel_method):
        matrices = "(float64[:, ::1], float64[:, ::1], float64[:, :, ::1], float64[:, :, :, ::1])"
        functions = []
        if self._effective_covariance_type(n_features) in ("full", "tied") and n_features > 1:
            functions.append(("bayesmix.models.fused_mvn:row_log_likelihood", matrices))
        else:
            sds = "(float64[:, ::1], float64[:, ::1], float64[:, :, ::1], float64[:, :, ::1])"
            functions.append(("bayesmix.models.fused:row_log_likelihood", sds))
        if relabel_method in ("stephens", "ecr") and self.n_components > 1:
            # The responsibilities come straight from the kernel, normalized.
            functions += [("bayesmix.models.fused_mvn:responsibilities", matrices), CONFIDENCE_FUNCTION]
        return tuple(functions)

    def _auto_relabel(self, n_features):
        # One feature: sorting the draws of the unordered model targets the same posterior as
        # ordering the means inside the model, but its chains can pass between modes that
        # differ only in which component is the wide one (benchmarks/validation/findings.md).
        return "sort" if n_features == 1 else "stephens"

    def _to_user_scale(self, posterior, scaling):
        loc, scale = scaling["x_loc"], scaling["x_scale"]
        means = posterior["means"]
        if means.ndim == 3:  # one feature: (chain, draw, K)
            means = means[..., None]
        arrays = {"weights": posterior["weights"], "means": means * scale + loc}
        dims = {"weights": ["component"], "means": ["component", "feature"]}
        D = scale.size
        cov = self._effective_covariance_type(D)
        if D == 1 and cov == "tied":
            arrays["sigma"], dims["sigma"] = posterior["sigma"] * scale[0], []
        elif D == 1 or cov == "spherical":
            sigmas = posterior["sigmas"].reshape(means.shape[:3])
            arrays["sigmas"], dims["sigmas"] = sigmas * scale[0], ["component"]
        elif cov == "diag":
            arrays["sigmas"], dims["sigmas"] = posterior["sigmas"] * scale, ["component", "feature"]
        else:
            outer = scale[:, None] * scale[None, :]
            name = "covariance" if cov == "tied" else "covariances"
            arrays[name] = posterior[name] * outer
            dims[name] = (["component"] if cov == "full" else []) + ["feature", "feature_bis"]
        return arrays, dims

    def _coords(self, n_features):
        coords = super()._coords(n_features)
        coords["feature_bis"] = coords["feature"]
        return coords

    # -------------------------------------------------------- predictive maths

    @staticmethod
    def _diagonal_sds(params, n_draws, K, D):
        """Standard deviations (S, K, D) when every covariance is diagonal, else None."""
        if "sigma" in params:
            return np.broadcast_to(params["sigma"].reshape(n_draws, 1, 1), (n_draws, K, D))
        if "sigmas" in params:
            sigmas = params["sigmas"]
            return np.broadcast_to(sigmas.reshape(n_draws, K, -1), (n_draws, K, D))
        return None

    def _covariance_matrices(self, params):
        """Covariance matrices of every draw and component, (S, K, D, D)."""
        n_draws, K, D = params["means"].shape
        sds = self._diagonal_sds(params, n_draws, K, D)
        if sds is not None:
            return sds[..., None] * np.eye(D) * sds[..., None, :]
        if "covariance" in params:
            return np.broadcast_to(params["covariance"][:, None], (n_draws, K, D, D))
        return params["covariances"]

    def _observed_sds(self, params):
        """Standard deviations (S, K, D) of the rounded observations, or None (not diagonal)."""
        sds = self._diagonal_sds(params, *params["means"].shape)
        return None if sds is None else sheppard_sd(sds, self.resolution_)

    def _log_joint(self, X, y, params):
        return fused_mvn.log_joint(*self._mvn_arguments(X, params))

    def _responsibilities(self, X, y, params):
        probs = fused_mvn.responsibilities(*self._mvn_arguments(X, params))
        check_rows_within_reach(np.isnan(probs[..., 0]))
        return probs

    def _mvn_arguments(self, X, params):
        """Rows, log-weights, means and Cholesky factors (S, K, D, D) for ``fused_mvn``."""
        means = params["means"]
        sds = self._observed_sds(params)
        if sds is None:
            rounding = np.diag(self.resolution_**2 / 12.0)  # Sheppard, as in the model
            try:
                chol = np.linalg.cholesky(self._covariance_matrices(params) + rounding)
            except np.linalg.LinAlgError:
                raise ValueError(
                    "A sampled covariance matrix is singular to float64 precision, so densities under "
                    "it are undefined: the rows of a component lie (nearly) on a lower-dimensional "
                    "subspace. Drop columns that are (nearly) linear combinations of others within a "
                    "cluster, or use covariance_type='diag' or 'spherical'."
                ) from None
        else:
            chol = sds[..., None] * np.eye(means.shape[2])
        return (
            np.ascontiguousarray(X),
            np.ascontiguousarray(np.log(params["weights"])),
            np.ascontiguousarray(means),
            np.ascontiguousarray(chol),
        )

    def _row_log_likelihood(self, X, y, params):
        means = params["means"]
        sds = self._observed_sds(params)
        if sds is None:
            return fused_mvn.row_log_likelihood(*self._mvn_arguments(X, params))
        log_w = np.log(params["weights"])
        return row_log_likelihood(np.ascontiguousarray(X), log_w, np.ascontiguousarray(means), np.ascontiguousarray(sds))

    def _set_point_estimates(self, params):
        self.weights_ = params["weights"].mean(axis=0)
        self.means_ = params["means"].mean(axis=0)
        covs = self._covariance_matrices(params).mean(axis=0)
        cov = self.covariance_type
        if cov == "full":
            self.covariances_ = covs
        elif cov == "tied":
            self.covariances_ = covs[0]
        elif cov == "diag":
            self.covariances_ = np.diagonal(covs, axis1=1, axis2=2).copy()
        else:
            self.covariances_ = np.diagonal(covs, axis1=1, axis2=2).mean(axis=1)
        self.precisions_cholesky_ = _precision_cholesky(self.covariances_, cov)
        if cov in ("full", "tied"):
            self.precisions_ = self.precisions_cholesky_ @ np.swapaxes(self.precisions_cholesky_, -1, -2)
        else:
            self.precisions_ = self.precisions_cholesky_**2

    def sample(self, n_samples=1):
        """Draw rows from the posterior predictive distribution.

        Each row comes from a randomly chosen posterior draw: its component from the
        draw's weights, its value from that component.

        Parameters
        ----------
        n_samples : int, default=1

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        labels : ndarray of shape (n_samples,)
            The component each row came from.
        """
        rng, params, draw, labels = self._draw_components(n_samples)
        return self._component_rows(params, draw, labels, rng), labels

    def _component_rows(self, params, draw, labels, rng):
        means = params["means"][draw, labels]
        chol = np.linalg.cholesky(self._covariance_matrices(params)[draw, labels])
        noise = rng.standard_normal(means.shape)
        return means + np.einsum("nij,nj->ni", chol, noise)


def _precision_cholesky(covariances, covariance_type):
    """``precisions_cholesky_`` as scikit-learn's ``GaussianMixture`` defines it.

    For "full" and "tied", the upper-triangular ``U = inv(L).T`` of each covariance's
    Cholesky factor ``L``, so that ``U @ U.T`` is the precision; for "diag" and
    "spherical", ``1 / sqrt(covariances)``.
    """
    if covariance_type not in ("full", "tied"):
        return 1.0 / np.sqrt(covariances)
    chol = np.linalg.cholesky(covariances)
    eye = np.broadcast_to(np.eye(covariances.shape[-1]), covariances.shape)
    return np.swapaxes(np.linalg.solve(chol, eye), -1, -2)


def _per_feature(value, default, n_features, name, positive=False):
    """Resolve a per-feature prior: ``None`` gives ``default``; scalars are broadcast."""
    if value is None:
        return np.asarray(default, dtype=float)
    array = np.asarray(value, dtype=float)
    if array.ndim == 0:
        array = np.full(n_features, float(array))
    if array.shape != (n_features,):
        raise ValueError(f"{name} must be a scalar or have shape ({n_features},), got {array.shape}.")
    if not np.all(np.isfinite(array)) or (positive and np.any(array <= 0)):
        raise ValueError(f"{name} must be finite{' and positive' if positive else ''}.")
    return array
