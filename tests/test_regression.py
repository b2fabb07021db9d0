"""BayesianMixtureRegression: published fits, gating, scikit-learn compatibility."""

import warnings

import numpy as np
import pytest
from conftest import FAST
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PolynomialFeatures
from sklearn.utils.estimator_checks import parametrize_with_checks

import bayesmix
from bayesmix import BayesianMixtureRegression, datasets

# Enough draws for posterior means to settle; still a few seconds per fit on jax.
ACCURATE = {"draws": 300, "tune": 300, "chains": 2, "backend": "numba", "random_state": 0}

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _fit(X, y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return BayesianMixtureRegression(**kwargs).fit(X, y)


# ------------------------------------------------------------ published results


def test_npreg_matches_flexmix():
    data = datasets.load_npreg()
    X = np.column_stack([data["x"], data["x"] ** 2])
    est = _fit(X, data["yn"], n_components=2, **ACCURATE)
    order = np.argsort(est.intercept_)
    fitted = np.column_stack([est.intercept_, est.coef_])[order]
    flexmix = np.array([[-0.2087, 4.8161, 0.0363], [14.7176, 9.8456, -0.9682]])
    # Within 10% of each value, or within an effect of 0.5 on y at x = 10 (sigma is
    # 3.5) for the near-zero intercept and x^2 term of component 1, whose 10% would be
    # far below their posterior standard deviations.
    tolerance = np.maximum(0.1 * np.abs(flexmix), 0.5 / np.array([1.0, 10.0, 100.0]))
    np.testing.assert_array_less(np.abs(fitted - flexmix), tolerance)
    np.testing.assert_allclose(est.sigma_[order], [3.475, 3.481], rtol=0.1)
    np.testing.assert_allclose(est.weights_[order], [0.494, 0.506], atol=0.05)

    labels = est.predict(X, data["yn"])
    agreement = np.mean(labels == data["class"].to_numpy() - 1)
    assert max(agreement, 1 - agreement) >= 0.93


def test_co2data_slopes():
    data = datasets.load_co2data()
    est = _fit(data[["GNP"]], data["CO2"], n_components=2, **{**ACCURATE, "draws": 500, "tune": 500})
    slopes = np.sort(est.coef_[:, 0])
    np.testing.assert_allclose(slopes, [-0.023344, 0.676596], atol=0.1)
    assert list(est.idata_.posterior.coef.coords["feature"].values) == ["GNP"]


def test_tonedata_avoids_degenerate_optimum():
    data = datasets.load_tonedata()
    est = _fit(data[["stretchratio"]], data["tuned"], n_components=2, **ACCURATE)
    assert np.all(est.sigma_ > 0.02)
    # The published multi-start EM optimum: a flat line and the diagonal.
    order = np.argsort(est.coef_[:, 0])
    np.testing.assert_allclose(est.coef_[order, 0], [0.0425, 0.9923], atol=0.05)
    np.testing.assert_allclose(est.sigma_[order], [0.046, 0.133], rtol=0.25)


# --------------------------------------------------------------------- gating


def test_gating_covers_true_gate():
    rng = np.random.default_rng(1)
    n = 300
    x = rng.uniform(-2, 2, n)
    true_gate = 2.0  # log-odds of line 1 against line 0 grow by 2 per unit of x
    p1 = 1 / (1 + np.exp(-(0.5 + true_gate * x)))
    z = rng.uniform(size=n) < p1
    y = np.where(z, 3.0 - 1.0 * x, 0.0 + 2.0 * x) + rng.normal(0, 0.3, n)
    # jax: the gated model has no numba kernel, and numba compiles its graph for 40-60 s
    # on an empty cache (jax: 2-4 s; the whole test 11 s against 58 s)
    est = _fit(x[:, None], y, n_components=2, gating=True, **{**ACCURATE, "backend": "jax"})

    post = est.idata_.posterior
    assert "weights" not in post and {"gate_intercept", "gate_coef"} <= set(post.data_vars)
    np.testing.assert_array_equal(post.gate_coef.sel(component=0).values, 0.0)
    line1 = int(np.argmax(est.intercept_))  # the line with intercept 3
    sign = 1.0 if line1 == 1 else -1.0  # log-odds of line 1 against the reference
    draws = sign * post.gate_coef.sel(component=1).values.ravel()
    low, high = np.quantile(draws, [0.05, 0.95])
    assert low < true_gate < high
    # Gated weights vary with x and average to the training share.
    proba = est.predict_proba(np.array([[-2.0], [2.0]]))
    assert proba[1, line1] > 0.9 > 0.1 > proba[0, line1]
    assert abs(est.weights_[line1] - z.mean()) < 0.1


# ------------------------------------------------------------- API behaviour


def test_predict_sample_score_shapes():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    y = X @ [1.0, -1.0] + rng.normal(0, 0.2, 40)
    est = _fit(X, y, n_components=2, **FAST)
    assert est.coef_.shape == (2, 2) and est.intercept_.shape == (2,) and est.sigma_.shape == (2,)
    assert est.predict(X).shape == (40,)
    assert set(np.unique(est.predict(X, y))) <= {0, 1}
    np.testing.assert_allclose(est.predict_proba(X).sum(axis=1), 1.0)
    np.testing.assert_allclose(est.predict_proba(X[:3]), np.tile(est.weights_, (3, 1)), atol=1e-12)
    assert est.sample(X[:5], n_samples=3).shape == (3, 5)
    assert est.score_samples(X, y).shape == (40,)
    assert np.isfinite(est.score(X, y))
    assert {"coef", "intercept", "sigma", "weights"} <= set(est.idata_.posterior.data_vars)
    assert est.idata_.log_likelihood["y"].shape[-1] == 40


@pytest.mark.parametrize(
    "y_bad, message",
    [
        ("short", "inconsistent numbers of samples"),
        ("nan", "NaN"),
        ("2d", "1d array"),
        (None, "requires y"),
    ],
)
def test_bad_targets(y_bad, message):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 1))
    y = {
        "short": np.ones(19),
        "nan": np.r_[np.nan, np.ones(19)],
        "2d": np.ones((20, 2)),
        None: None,
    }[y_bad]
    with pytest.raises(ValueError, match=message):
        BayesianMixtureRegression(**FAST).fit(X, y)


def test_score_needs_y():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 1))
    est = _fit(X, X[:, 0], **FAST)
    with pytest.raises(ValueError, match="needs y"):
        est.score(X)
    with pytest.raises(ValueError, match="rows"):
        est.score(X, np.ones(19))


def test_grid_search_in_pipeline():
    data = datasets.load_npreg()
    pipe = Pipeline(
        [("poly", PolynomialFeatures(2, include_bias=False)), ("m", BayesianMixtureRegression(**FAST))]
    )
    search = GridSearchCV(pipe, {"m__n_components": [1, 2]}, cv=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(data[["x"]], data["yn"])
    assert search.best_params_["m__n_components"] in (1, 2)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


def test_refit_compiles_nothing():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    est = _fit(X, X[:, 0] + rng.normal(size=30), n_components=2, **FAST)
    before = bayesmix.compile_count()
    X2 = rng.normal(size=(50, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clone(est).set_params(scale_prior=0.3).fit(X2, X2[:, 1] + rng.normal(size=50))
    assert bayesmix.compile_count() == before


def test_sample_weight_counts_rows():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 1))
    y = 2 * X[:, 0] + rng.normal(0, 0.1, 30)
    weights = np.r_[np.zeros(10), np.ones(20)]
    est = _fit(X, y, n_components=1, **FAST)
    weighted = _fit(X, y + np.r_[np.full(10, 100.0), np.zeros(20)], n_components=1, **FAST)
    zeroed = BayesianMixtureRegression(1, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        zeroed.fit(X, y + np.r_[np.full(10, 100.0), np.zeros(20)], sample_weight=weights)
    # Rows with weight 0 (here: wild outliers) do not move the fit.
    assert abs(zeroed.coef_[0, 0] - 2) < 0.2
    assert abs(weighted.coef_[0, 0] - 2) > abs(zeroed.coef_[0, 0] - 2)
    assert abs(est.coef_[0, 0] - 2) < 0.2


def test_no_intercept():
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 3, size=(60, 1))
    y = np.where(rng.uniform(size=60) < 0.5, 0.5, 2.0) * X[:, 0] + rng.normal(0, 0.05, 60)
    est = _fit(X, y, n_components=2, fit_intercept=False, **ACCURATE)
    assert "intercept" not in est.idata_.posterior
    np.testing.assert_array_equal(est.intercept_, 0.0)
    np.testing.assert_allclose(np.sort(est.coef_[:, 0]), [0.5, 2.0], atol=0.1)


# --------------------------------------------------------- scikit-learn checks

EXPECTED_FAILED_CHECKS = {
    "check_regressors_no_decision_function": (
        "predict_proba gives component memberships, which a mixture of regressions has."
    ),
    "check_sample_weight_equivalence_on_dense_data": (
        "MCMC draws on weighted data and on repeated rows are different random draws; "
        "they agree in distribution, not to 1e-7."
    ),
    "check_methods_sample_order_invariance": (
        "The check calls score_samples(X) without y; it is the density of y given X."
    ),
    "check_methods_subset_invariance": (
        "The check calls score_samples(X) without y; it is the density of y given X."
    ),
}


def _check_name(check):
    while hasattr(check, "func"):
        check = check.func
    return check.__name__


@parametrize_with_checks(
    [BayesianMixtureRegression(n_components=2, **FAST)],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible(estimator, check):
    name = _check_name(check)
    if name in EXPECTED_FAILED_CHECKS:
        # Marked xfail by parametrize_with_checks; stop here rather than spend a dozen
        # sampler runs on a known failure.
        pytest.xfail(EXPECTED_FAILED_CHECKS[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_linearly_dependent_predictors_are_warned_about_before_sampling(rng):
    """A copied column leaves its coefficients to the prior: 160 leapfrog steps per draw
    against 5. The warning names the columns; a constant column is the intercept's."""
    import pandas as pd

    x = rng.normal(size=(60, 2))
    y = x[:, 0] + 0.1 * rng.normal(size=60)
    X = pd.DataFrame(np.c_[x, x[:, 1] * 2.0 - 1.0, np.ones(60)], columns=["a", "b", "c", "d"])
    est = BayesianMixtureRegression(2)
    with pytest.warns(UserWarning, match=r"X columns \['b', 'c'\] are linearly dependent"):
        est._validate_fit_data(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est._validate_fit_data(X[["a", "b", "d"]], y)
