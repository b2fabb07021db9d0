"""Bad input, reproducibility and predictive-maths properties, for every estimator."""


import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import FAST
from hypothesis import given, settings
from hypothesis import strategies as st

import bayesmix

rng0 = np.random.default_rng(0)
GOOD_X = np.concatenate([rng0.normal(-3, 1, 30), rng0.normal(3, 1, 30)])[:, None]
GOOD_Y = 1.0 + 2.0 * GOOD_X[:, 0] + rng0.normal(0, 0.5, 60)


def make(name, **params):
    if name == "gaussian":
        return bayesmix.BayesianGaussianMixture(**{"n_components": 2, **FAST, **params})
    if name == "marginal":
        return bayesmix.MarginalMixture(**{"components": ["normal", "normal"], **FAST, **params})
    if name == "regression":
        return bayesmix.BayesianMixtureRegression(**{"n_components": 2, **FAST, **params})
    raise AssertionError(name)


ESTIMATORS = ["gaussian", "marginal"] + (["regression"] if hasattr(bayesmix, "BayesianMixtureRegression") else [])


def fit(name, X, y=None, **params):
    est = make(name, **params)
    if name == "regression":
        return est.fit(X, GOOD_Y[: len(X)] if y is None else y)
    return est.fit(X)


BAD_X = {
    "nan": (np.where(np.arange(60)[:, None] == 3, np.nan, GOOD_X), ValueError, "NaN"),
    "inf": (np.where(np.arange(60)[:, None] == 3, np.inf, GOOD_X), ValueError, "infinity"),
    "strings": (np.array([["a"], ["b"], ["c"]]), ValueError, "float|string"),
    "object": (np.array([[1.0], ["x"], [None]], dtype=object), (ValueError, TypeError), "float|string|None"),
    "empty": (np.empty((0, 1)), ValueError, "0 sample"),
    "one-row": (np.array([[1.0]]), ValueError, "sample"),
    "3d": (np.ones((5, 1, 1)), ValueError, "dim 3"),
    "1d": (np.arange(10.0), ValueError, "2D array"),
    "sparse": (sp.csr_matrix(GOOD_X), TypeError, "[Ss]parse"),
    "mixed-frame": (pd.DataFrame({"a": ["x", "y", "z"], "b": [1.0, 2.0, 3.0]}), ValueError, "float|string"),
}


@pytest.mark.parametrize("case", list(BAD_X))
@pytest.mark.parametrize("name", ESTIMATORS)
def test_bad_X_gives_clear_error(name, case):
    X, error, match = BAD_X[case]
    with pytest.raises(error, match=match):
        fit(name, X)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_fewer_rows_than_components(name):
    with pytest.raises(ValueError, match="n_components|component"):
        fit(name, GOOD_X[:3], **({"components": ["normal"] * 4} if name == "marginal" else {"n_components": 4}))


@pytest.mark.parametrize("value", [0, -1, 2.5, "two"])
@pytest.mark.parametrize("name", ["gaussian"] + (["regression"] if "regression" in ESTIMATORS else []))
def test_bad_n_components(name, value):
    with pytest.raises((ValueError, TypeError), match="n_components"):
        fit(name, GOOD_X, n_components=value)


@pytest.mark.parametrize("params", [{"relabel": "magic"}, {"backend": "torch"}, {"draws": 0}, {"chains": -1}])
@pytest.mark.parametrize("name", ESTIMATORS)
def test_unknown_parameter_values(name, params):
    with pytest.raises(ValueError, match=next(iter(params))):
        fit(name, GOOD_X, **params)


@pytest.mark.parametrize("name", ["gaussian", "marginal"])
def test_constant_column_is_a_clear_error(name):
    """Continuous components on identical values have no posterior (unbounded likelihood)."""
    X = np.column_stack([GOOD_X[:40, 0], np.full(40, 7.0)]) if name == "gaussian" else np.full((40, 1), 7.0)
    with pytest.raises(ValueError, match="constant"):
        fit(name, X)


def test_constant_counts_fit_a_count_mixture():
    X = np.full((40, 1), 3.0)
    est = fit("marginal", X, components=["poisson", "poisson"])
    assert np.all(np.isfinite(est.score_samples(X)))


def test_regression_constant_feature_fits_and_constant_y_is_an_error():
    X = np.column_stack([GOOD_X[:, 0], np.full(60, 2.0)])
    est = fit("regression", X)
    assert np.all(np.isfinite(est.score_samples(X, GOOD_Y)))
    with pytest.raises(ValueError, match="constant"):
        fit("regression", GOOD_X, np.full(60, 1.0))


@pytest.mark.parametrize("scale", [1e12, 1e-12])
@pytest.mark.parametrize("name", ESTIMATORS)
def test_extreme_scales_fit(name, scale):
    X = GOOD_X * scale
    y = GOOD_Y * scale if name == "regression" else None
    est = fit(name, X, y)
    score = est.score_samples(X) if name != "regression" else est.score_samples(X, y)
    assert np.all(np.isfinite(score))


@pytest.mark.parametrize("name", ESTIMATORS)
def test_same_random_state_identical_outputs(name):
    a, b = fit(name, GOOD_X), fit(name, GOOD_X)
    for var in a.idata_.posterior.data_vars:
        np.testing.assert_array_equal(a.idata_.posterior[var], b.idata_.posterior[var])
    args = (GOOD_X, GOOD_Y) if name == "regression" else (GOOD_X,)
    np.testing.assert_array_equal(a.predict_proba(*args), b.predict_proba(*args))
    sample_args = (GOOD_X[:5],) if name == "regression" else ()
    np.testing.assert_array_equal(np.asarray(a.sample(*sample_args)[0] if name != "regression" else a.sample(*sample_args)),
                                  np.asarray(b.sample(*sample_args)[0] if name != "regression" else b.sample(*sample_args)))


@pytest.fixture(scope="module")
def fitted_gaussian():
    return make("gaussian").fit(GOOD_X)


finite_rows = st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=30)


@settings(max_examples=40, deadline=None)
@given(values=finite_rows)
def test_predictive_maths_properties(fitted_gaussian, values):
    X = np.asarray(values)[:, None]
    proba = fitted_gaussian.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.all((proba >= 0) & (proba <= 1))
    scores = fitted_gaussian.score_samples(X)
    assert np.all(np.isfinite(scores))
    order = np.random.default_rng(len(values)).permutation(len(values))
    np.testing.assert_allclose(fitted_gaussian.score_samples(X[order]), scores[order])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_density_invariant_to_component_permutation(fitted_gaussian, seed):
    """Permuting the component labels of every draw leaves the predictive density unchanged."""
    from bayesmix.relabel import apply_permutations

    params = fitted_gaussian._posterior_params()
    rng = np.random.default_rng(seed)
    perms = np.array([rng.permutation(2) for _ in range(params["weights"].shape[0])])
    permuted = {name: apply_permutations(v, perms, axis=1) if v.ndim > 1 else v for name, v in params.items()}
    X = np.linspace(-6, 6, 25)[:, None]
    np.testing.assert_allclose(
        fitted_gaussian._row_log_likelihood(X, None, permuted),
        fitted_gaussian._row_log_likelihood(X, None, params),
    )


def test_draws_do_not_depend_on_the_number_of_cores():
    settings = {**FAST, "chains": 2}
    one = make("gaussian", cores=1, **settings).fit(GOOD_X)
    two = make("gaussian", cores=2, **settings).fit(GOOD_X)
    np.testing.assert_array_equal(one.idata_.posterior["means"], two.idata_.posterior["means"])


@pytest.mark.parametrize("name", ESTIMATORS)
def test_sample_weight_two_equals_duplicating_rows(name):
    """Weights of 2 give the posterior of the data with every row twice (Monte Carlo error)."""
    settings = {**FAST, "draws": 300, "tune": 300, "chains": 2}
    X2, y2 = np.repeat(GOOD_X, 2, axis=0), np.repeat(GOOD_Y, 2)
    weighted, duplicated = make(name, **settings), make(name, **settings)
    if name == "regression":
        weighted.fit(GOOD_X, GOOD_Y, sample_weight=np.full(60, 2.0))
        duplicated.fit(X2, y2)
    else:
        weighted.fit(GOOD_X, sample_weight=np.full(60, 2.0))
        duplicated.fit(X2)
    for var in ("weights",) + (("coef", "intercept") if name == "regression" else ()):
        a = weighted.idata_.posterior[var].mean(("chain", "draw")).values
        b = duplicated.idata_.posterior[var].mean(("chain", "draw")).values
        sd = duplicated.idata_.posterior[var].std(("chain", "draw")).values
        assert np.all(np.abs(a - b) <= 0.5 * sd + 1e-9), (var, a, b, sd)
    proba_args = (GOOD_X, GOOD_Y) if name == "regression" else (GOOD_X,)
    np.testing.assert_allclose(weighted.predict_proba(*proba_args), duplicated.predict_proba(*proba_args), atol=0.05)
