"""scikit-learn's own mixture tests that a drop-in should pass, rewritten for bayesmix.

Each test names the scikit-learn test (``sklearn/mixture/tests/test_gaussian_mixture.py``,
``test_bayesian_mixture.py``, ``test_mixture.py``) whose behaviour it checks. The ArviZ
surface (posterior predictive, ``az.plot_ppc``, ``az.loo``, ``az.compare`` on every
estimator) is checked at the end. Fits are tiny (``FAST``, jax) and shared by module
fixtures.

scikit-learn tests that cannot apply, and why:

- ``n_iter_``, ``lower_bound_``, ``lower_bounds_``, ``test_monotonic_likelihood``,
  ``test_gaussian_mixture_n_iter``: there are no EM or variational iterations and no
  bound that increases with them; NUTS draws from the posterior (``convergence_`` holds
  R-hat, ESS and divergences instead).
- ``warm_start`` (``test_warm_start``, ``test_convergence_detected_with_warm_start``):
  every fit samples afresh from data-driven starting points; a refit replaces the
  previous posterior (``test_refit_replaces_the_previous_fit`` below).
- ``init_params``, ``weights_init``, ``means_init``, ``precisions_init``
  (``test_init``, ``test_check_weights``, ``test_check_means``, ``test_check_precisions``,
  ``test_means_for_all_inits``, ``test_init_means_not_duplicated``, the
  ``precisions_init`` tests, ``test_max_iter_zero``): chains start from weighted
  k-means internally; what a user sets are priors (``mean_prior``, ``scale_prior`` ...).
- ``tol``, ``max_iter``, ``n_init``, ``reg_covar`` (``test_regularisation``,
  ``test_multiple_init``, ``test_*_fit_predict_n_init``, ``test_*_best_params``):
  EM's controls. The Gamma(2, .) prior on standard deviations does ``reg_covar``'s
  job; ``chains`` play ``n_init``'s part, but all are kept.
- ``verbose`` (``test_gaussian_mixture_verbose``): ``progressbar`` instead.
- ``aic``, ``bic``, ``_n_parameters`` (``test_bic_1d_1component``,
  ``test_gaussian_mixture_aic_bic``, ``test_gaussian_mixture_n_parameters``): K is
  compared by PSIS-LOO or K-fold CV (``select_k``), which ``az.compare`` below uses.
- ``weight_concentration_``, ``mean_precision_``, ``degrees_of_freedom_``,
  ``covariance_prior`` (``test_bayesian_mixture_*_prior_initialisation``, the weight
  formula of ``test_bayesian_mixture_weights``, ``test_compare_covar_type``): the
  parameters of a variational posterior and of Normal-Wishart priors; here the posterior
  is the draws in ``idata_`` and the priors are reported as ``*_prior_`` attributes.
- The private EM helpers (sufficient statistics, ``_compute_log_det_cholesky``,
  ``_estimate_log_prob_resp``, ``_log_dirichlet_norm``, ``_log_wishart_norm``).
- float32 preservation (``global_dtype``) and the array API tests: computations are in
  float64 NumPy.
"""

import copy
import warnings

import arviz as az
import matplotlib
import numpy as np
import pytest
from conftest import FAST, FAST_JAX
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score

import bayesmix
from bayesmix import BayesianGaussianMixture, BayesianMixtureRegression, MarginalMixture
from bayesmix import _base

matplotlib.use("Agg")

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
# Two clusters and K=2, as scikit-learn's RandomData; tests/test_gaussian.py compiles
# the same four structures, so the whole suite compiles them once.
TRUE_MEANS = np.array([[-4.0, 0.0], [4.0, 2.0]])
TRUE_WEIGHTS = np.array([0.6, 0.4])


def _two_clusters(seed=0, n=200):
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], (TRUE_WEIGHTS * n).astype(int))
    scales = np.array([[1.0, 0.6], [0.7, 1.2]])[labels]
    return TRUE_MEANS[labels] + scales * rng.standard_normal((labels.size, 2)), labels


X, Y = _two_clusters()


@pytest.fixture(scope="module")
def fits():
    """One K=2 fit of the two clusters per covariance type."""
    return {cov: BayesianGaussianMixture(2, covariance_type=cov, **FAST).fit(X) for cov in COVARIANCE_TYPES}


def _by_first_feature(est):
    return np.argsort(est.means_[:, 0])


# ------------------------------------------------------------- attributes


def test_parameters_are_kept_as_given():
    # test_gaussian_mixture_attributes: fit leaves the constructor parameters alone.
    params = dict(n_components=2, covariance_type="diag", weight_concentration_prior=0.5, lkj_eta=3.0)
    est = BayesianGaussianMixture(**params, **FAST).fit(X[:60])
    assert {k: est.get_params()[k] for k in params} == params
    assert est.weight_concentration_prior_ == 0.5 and est.n_features_in_ == 2


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_attribute_shapes_per_covariance_type(fits, cov):
    # The shapes documented for GaussianMixture's fitted attributes.
    shape = {"full": (2, 2, 2), "tied": (2, 2), "diag": (2, 2), "spherical": (2,)}[cov]
    est = fits[cov]
    assert est.weights_.shape == (2,)
    assert est.means_.shape == (2, 2)
    assert est.covariances_.shape == shape
    assert est.precisions_.shape == shape
    assert est.precisions_cholesky_.shape == shape


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_precisions_invert_covariances(fits, cov):
    # test_fitted_precision_covariance_concistency, test_check_covariance_precision.
    est = fits[cov]
    prec, chol, covs = est.precisions_, est.precisions_cholesky_, est.covariances_
    if cov in ("full", "tied"):
        np.testing.assert_allclose(prec @ covs, np.broadcast_to(np.eye(2), covs.shape), atol=1e-10)
        np.testing.assert_allclose(chol @ np.swapaxes(chol, -1, -2), prec, rtol=1e-10)
        np.testing.assert_array_equal(np.tril(chol, -1), 0.0)  # upper triangular, as scikit-learn's
    else:
        np.testing.assert_allclose(prec * covs, 1.0, rtol=1e-12)
        np.testing.assert_allclose(chol**2, prec, rtol=1e-12)


def test_precision_cholesky_matches_scikit_learn():
    # The same factor as GaussianMixture's for the same covariances.
    from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky

    from bayesmix.gaussian import _precision_cholesky

    rng = np.random.default_rng(1)
    A = rng.normal(size=(3, 4, 4))
    covs = A @ np.swapaxes(A, 1, 2) + np.eye(4)
    variances = np.diagonal(covs, axis1=1, axis2=2)
    for cov, value in [("full", covs), ("tied", covs[0]), ("diag", variances), ("spherical", variances[:, 0])]:
        np.testing.assert_allclose(_precision_cholesky(value, cov), _compute_precision_cholesky(value, cov))


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_recovers_well_separated_clusters(fits, cov):
    # test_gaussian_mixture_fit, test_*_predict_predict_proba: means, weights, labels.
    est = fits[cov]
    order = _by_first_feature(est)
    np.testing.assert_allclose(est.means_[order], TRUE_MEANS, atol=0.5)
    np.testing.assert_allclose(est.weights_[order], TRUE_WEIGHTS, atol=0.07)
    np.testing.assert_allclose(est.weights_.sum(), 1.0)
    labels = est.predict(X)
    np.testing.assert_array_equal(labels, est.predict_proba(X).argmax(axis=1))
    assert adjusted_rand_score(Y, labels) > 0.95


# ------------------------------------------------------------ fit / predict


def test_fit_predict_equals_fit_then_predict():
    # test_gaussian_mixture_fit_predict, test_bayesian_mixture_fit_predict.
    est = BayesianGaussianMixture(2, covariance_type="diag", **FAST)
    twin = copy.deepcopy(est)
    np.testing.assert_array_equal(est.fit_predict(X), twin.fit(X).predict(X))


def test_score_is_the_mean_of_score_samples(fits):
    # test_score, test_score_samples.
    est = fits["full"]
    samples = est.score_samples(X)
    assert samples.shape == (X.shape[0],)
    assert est.score(X) == pytest.approx(samples.mean())
    # The fitted mixture explains its data better than the same data moved away.
    assert est.score(X) > est.score(X + 5.0)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score", "score_samples", "sample_posterior_predictive"])
def test_methods_need_a_fit(method):
    # test_bayesian_mixture_check_is_fitted, the NotFittedError parts of the others.
    est = BayesianGaussianMixture(2)
    args = () if method == "sample_posterior_predictive" else (X,)
    with pytest.raises(NotFittedError, match="This BayesianGaussianMixture instance is not fitted yet"):
        getattr(est, method)(*args)
    with pytest.raises(NotFittedError, match="not fitted"):
        est.sample(10)


@pytest.mark.parametrize(
    "params",
    [
        {"n_components": 0},
        {"covariance_type": "bogus"},
        {"weight_concentration_prior": -1.0},
        {"weight_concentration_prior_type": "pitman_yor"},
        {"mean_prior": [0.0, 0.0, 0.0]},
        {"scale_prior": -1.0},
    ],
)
def test_bad_parameters_are_refused(params):
    # The parameter checks of test_check_weights / test_check_means / _parameter_constraints.
    with pytest.raises(ValueError, match="|".join(params)):
        BayesianGaussianMixture(**{"n_components": 2, **params, **FAST}).fit(X)


def test_more_components_than_samples_is_refused():
    # test_mixture_n_components_greater_than_n_samples_error.
    with pytest.raises(ValueError, match="Expected n_samples >= n_components"):
        BayesianGaussianMixture(12, **FAST).fit(X[:10])


def test_predict_with_wrong_n_features(fits):
    est = fits["diag"]
    for method in (est.predict, est.predict_proba, est.score_samples):
        with pytest.raises(ValueError, match="X has 3 features, but BayesianGaussianMixture is expecting 2"):
            method(np.zeros((5, 3)))


# ---------------------------------------------------------------- sample


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_sample(fits, cov):
    # test_sample: shapes, labels, and rows that follow each component.
    est = fits[cov]
    with pytest.raises(ValueError, match="Invalid value for 'n_samples'"):
        est.sample(0)
    for n in (1, 2, 17):
        X_s, labels = est.sample(n)
        assert X_s.shape == (n, 2) and labels.shape == (n,)
    X_s, labels = est.sample(20_000)
    assert set(np.unique(labels)) == {0, 1}
    covs = est._covariance_matrices(est._posterior_params()).mean(axis=0)  # (K, D, D)
    for k in range(2):
        rows = X_s[labels == k]
        np.testing.assert_allclose(rows.mean(axis=0), est.means_[k], atol=0.1)
        # Posterior predictive rows: the component's covariance plus the (small)
        # posterior spread of its mean.
        np.testing.assert_allclose(np.cov(rows.T), covs[k], atol=0.15)


def test_single_component_on_three_rows_samples():
    # test_gaussian_mixture_single_component_stable.
    rows = np.random.default_rng(0).normal(size=(3, 2))
    est = BayesianGaussianMixture(1, covariance_type="diag", **FAST).fit(rows)
    assert est.sample()[0].shape == (1, 2)


# ---------------------------------------------------------- refit, translation


def test_refit_replaces_the_previous_fit(fits):
    # What warm_start=False means: a second fit starts from scratch, and the same
    # data and seed give the same posterior, without compiling again.
    est = clone(fits["diag"]).fit(X[:, :1] * 10.0)
    assert est.n_features_in_ == 1 and est.means_.shape == (2, 1)
    before = bayesmix.compile_count()
    est.fit(X)
    assert bayesmix.compile_count() == before
    assert est.n_features_in_ == 2
    np.testing.assert_array_equal(est.means_, fits["diag"].means_)


def test_translation_moves_only_the_means(fits):
    # test_invariant_translation: the data are standardized, so a shift changes nothing
    # but the means.
    shifted = clone(fits["diag"]).fit(X + 100.0)
    est = fits["diag"]
    np.testing.assert_allclose(shifted.means_ - 100.0, est.means_, atol=1e-6)
    np.testing.assert_allclose(shifted.weights_, est.weights_, atol=1e-6)
    np.testing.assert_allclose(shifted.covariances_, est.covariances_, rtol=1e-6)


# ------------------------------------------------------ the Dirichlet process


@pytest.fixture(scope="module")
def process_fit():
    return BayesianGaussianMixture(
        4, covariance_type="diag", weight_concentration_prior_type="dirichlet_process", **FAST
    ).fit(X)


def test_dirichlet_process_is_a_structure_and_its_concentration_data(process_fit):
    # The prior type changes the graph; the concentration is swapped into it.
    est = process_fit
    assert "sticks" not in est.idata_.posterior  # relabeled away; weights are kept
    np.testing.assert_allclose(est.idata_.posterior["weights"].sum("component"), 1.0)
    before = bayesmix.compile_count()
    refit = clone(est).set_params(weight_concentration_prior=0.2).fit(X)
    assert bayesmix.compile_count() == before
    assert refit.weight_concentration_prior_ == 0.2
    assert not np.allclose(refit.weights_, est.weights_)


def test_stick_breaking_prior_density_and_weights():
    import pymc as pm
    import pytensor
    from scipy import stats
    from scipy.special import logit

    from bayesmix.models.weights import mixture_weights

    with pm.Model() as model:
        mixture_weights(4, "dirichlet_process", pm.Data("concentration", 2.0))
    sticks = np.array([0.3, 0.5, 0.2])
    point = {"sticks_logodds__": logit(sticks)}
    logp = model.compile_logp(jacobian=False)(point)
    np.testing.assert_allclose(logp, stats.beta(1, 2).logpdf(sticks).sum())
    (weights,) = model.replace_rvs_by_values([model["weights"]])
    weights = pytensor.function(model.value_vars, weights)(logit(sticks))
    np.testing.assert_allclose(weights, [0.3, 0.35, 0.07, 0.28])


def test_dirichlet_process_refuses_ordered_means():
    est = BayesianGaussianMixture(2, weight_concentration_prior_type="dirichlet_process", relabel="ordered", **FAST)
    with pytest.raises(ValueError, match="not exchangeable"):
        est.fit(X[:, :1])


def test_stick_breaking_starting_point_gives_the_weights():
    from bayesmix.models.weights import initial_weights

    w = np.array([0.5, 0.1, 0.3, 0.1])
    sticks = initial_weights(w, "dirichlet_process")["sticks"]
    rebuilt = np.append(sticks, 1.0) * np.concatenate([[1.0], np.cumprod(1.0 - sticks)])
    np.testing.assert_allclose(rebuilt, w)
    np.testing.assert_allclose(initial_weights(w, "dirichlet_distribution")["weights"], w)


# ----------------------------------------------------------- ArviZ surface


@pytest.fixture(scope="module")
def regression_fit():
    rng = np.random.default_rng(2)
    x = rng.uniform(-3, 3, 120)
    y = np.where(rng.random(120) < 0.5, 1.0 + 2.0 * x, -1.0 - x) + rng.normal(0, 0.3, 120)
    est = BayesianMixtureRegression(2, weight_concentration_prior_type="dirichlet_process", **FAST)
    return est.fit(x[:, None], y)


@pytest.fixture(scope="module")
def marginal_fit():
    rng = np.random.default_rng(3)
    x = np.r_[rng.normal(-2, 1, 80), rng.gamma(9, 0.5, 80)][:, None]
    return MarginalMixture(["normal", "normal"], weight_concentration_prior_type="dirichlet_process", **FAST_JAX).fit(x)


@pytest.fixture(scope="module")
def predictive_fits(fits, regression_fit, marginal_fit):
    return {"gaussian": fits["full"], "regression": regression_fit, "marginal": marginal_fit}


@pytest.mark.parametrize("name", ["gaussian", "regression", "marginal"])
def test_posterior_predictive_matches_observed_data(predictive_fits, name):
    est = predictive_fits[name]
    idata = est.sample_posterior_predictive(random_state=1)
    assert idata is est.idata_
    (var,) = idata.observed_data.data_vars
    observed = idata.observed_data[var]
    replicate = idata.posterior_predictive[var]
    assert replicate.dims == ("chain", "draw", *observed.dims)
    assert replicate.shape == (1, FAST["draws"], *observed.shape)
    assert np.all(np.isfinite(replicate.values))
    # Replicates look like the data: same centre and spread within sampling noise.
    np.testing.assert_allclose(replicate.mean(), observed.mean(), atol=0.25 * float(observed.std()))
    np.testing.assert_allclose(replicate.std(), observed.std(), rtol=0.15)
    again = est.sample_posterior_predictive(random_state=1).posterior_predictive[var]
    np.testing.assert_array_equal(again.values, replicate.values)  # replaced, reproducible


@pytest.mark.parametrize("name", ["gaussian", "regression", "marginal"])
def test_arviz_plot_ppc_loo_compare(predictive_fits, name):
    import matplotlib.pyplot as plt

    est = predictive_fits[name]
    est.sample_posterior_predictive()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pareto k warnings of 40 draws
        axes = az.plot_ppc(est.idata_, num_pp_samples=10)
        loo = az.loo(est.idata_)
        other = clone(est).set_params(random_state=7).fit(*_training_data(est))
        table = az.compare({"a": est.idata_, "b": other.idata_})
    assert np.size(axes) >= 1
    assert np.isfinite(loo.elpd_loo)
    assert list(table.index) != [] and set(table.index) == {"a", "b"}
    plt.close("all")


def _training_data(est):
    idata = est.idata_
    if "y" in idata.observed_data:
        return idata.constant_data["X"].values, idata.observed_data["y"].values
    return (idata.observed_data["X"].values,)


def test_posterior_predictive_memory_bound(fits, monkeypatch):
    est = fits["spherical"]
    monkeypatch.setattr(_base, "_PREDICTIVE_MAX_VALUES", X.size * 10)
    with pytest.warns(UserWarning, match="keeping every 4-th draw"):
        idata = est.sample_posterior_predictive()
    assert idata.posterior_predictive.sizes["draw"] == 10
    np.testing.assert_array_equal(idata.posterior_predictive["draw"], np.arange(0, 40, 4))
    monkeypatch.setattr(_base, "_PREDICTIVE_MAX_VALUES", X.size // 2)
    with pytest.raises(ValueError, match="One draw per chain already"):
        est.sample_posterior_predictive()
    with pytest.raises(ValueError, match="thin must be a positive integer"):
        est.sample_posterior_predictive(thin=0)


def test_posterior_n_components_refuses_a_small_stick_breaking_concentration():
    est = BayesianGaussianMixture(weight_concentration_prior_type="dirichlet_process", **FAST)
    with pytest.raises(ValueError, match="stick-breaking"):
        bayesmix.posterior_n_components(est, X, k_max=4)
