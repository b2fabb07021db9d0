"""Behaviour tests for MarginalMixture and the family registry."""

import warnings

import numpy as np
import pymc as pm
import pytest
from scipy import stats
from sklearn.utils.estimator_checks import parametrize_with_checks

from bayesmix import Family, MarginalMixture, compile_count, register_family
from bayesmix.families import registered_families

from conftest import FAST_JAX as FAST

# Enough sampling for the accuracy checks, still a few seconds each.
ACCURATE = {**FAST, "draws": 300, "tune": 300, "chains": 2}


def fit_quietly(est, X, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of the tiny FAST runs
        return est.fit(X, **kwargs)


def normal_t_data(n=1000, seed=1):
    rng = np.random.default_rng(seed)
    z = rng.uniform(size=n) < 0.4
    return np.where(z, rng.normal(-2, 1, n), 3 + rng.standard_t(3, n))[:, None]


# ------------------------------------------------------------------ recovery


def test_normal_student_t_recovery():
    est = fit_quietly(MarginalMixture(["normal", "student_t"], **ACCURATE), normal_t_data())
    post = est.idata_.posterior
    assert set(post.data_vars) == {
        "weights", "normal_mu", "normal_sigma", "student_t_mu", "student_t_sigma", "student_t_nu"
    }
    assert post["normal_mu"].dims == ("chain", "draw", "normal_component")
    assert post["student_t_component"].values.tolist() == [1]
    assert abs(est.locations_[0] - (-2)) < 0.2
    assert abs(est.locations_[1] - 3) < 0.2
    np.testing.assert_allclose(est.weights_, [0.4, 0.6], atol=0.05)
    assert est.component_params_[1].keys() == {"mu", "sigma", "nu"}


def test_poisson_recovery():
    rng = np.random.default_rng(2)
    n = 1000
    x = np.where(rng.uniform(size=n) < 0.5, rng.poisson(2, n), rng.poisson(10, n))
    est = fit_quietly(MarginalMixture(["poisson", "poisson"], **ACCURATE), x[:, None])
    rates = est.idata_.posterior["poisson_rate"].mean(("chain", "draw")).values
    np.testing.assert_allclose(rates, [2, 10], rtol=0.1)
    # The sort relabeling orders the rates in every draw.
    assert np.all(np.diff(est.idata_.posterior["poisson_rate"].values, axis=-1) > 0)


def test_gamma_recovery():
    rng = np.random.default_rng(3)
    n = 1000
    z = rng.uniform(size=n) < 0.5
    x = np.where(z, rng.gamma(4.0, 2.0 / 4.0, n), rng.gamma(20.0, 10.0 / 20.0, n))
    est = fit_quietly(MarginalMixture(["gamma", "gamma"], **ACCURATE), x[:, None])
    np.testing.assert_allclose(est.locations_, [2.0, 10.0], rtol=0.1)
    # Positive families are only divided by a scale: shapes are scale-free.
    assert np.all(est.idata_.posterior["gamma_shape"].values > 0)


# ------------------------------------------------------------ user families


def _gumbel_family(name):
    return Family(
        name=name,
        support="real",
        params=("mu", "beta"),
        priors=lambda K, d: {
            "mu": pm.Normal.dist(d["mean"], 2 * d["sd"], shape=K),
            "beta": pm.Gamma.dist(2.0, 2.0 / (0.5 * d["sd"]), shape=K),
        },
        logp=lambda x, mu, beta: pm.logp(pm.Gumbel.dist(mu=mu, beta=beta), x),
        logpdf=lambda x, mu, beta: stats.gumbel_r.logpdf(x, mu, beta),
        rvs=lambda rng, mu, beta: rng.gumbel(mu, beta),
        location="mu",
        param_scaling={"mu": "location", "beta": "scale"},
    )


def test_user_family_end_to_end():
    register_family(_gumbel_family("test_gumbel"), overwrite=True)
    assert "test_gumbel" in registered_families()
    rng = np.random.default_rng(4)
    X = np.r_[rng.gumbel(-3, 1, 150), rng.normal(4, 1, 150)][:, None]
    est = fit_quietly(MarginalMixture(["test_gumbel", "normal"], **FAST), X)
    assert est.idata_.posterior["test_gumbel_mu"].dims[-1] == "test_gumbel_component"
    proba = est.predict_proba(X)
    assert proba.shape == (300, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    assert np.isfinite(est.score(X))
    Xs, labels = est.sample(50)
    assert Xs.shape == (50, 1) and labels.shape == (50,)
    assert set(labels) <= {0, 1}
    with pytest.raises(ValueError, match="already registered"):
        register_family(_gumbel_family("test_gumbel"))


def test_family_validation():
    with pytest.raises(ValueError, match="support"):
        Family("bad", "circle", ("mu",), None, None, None, None, "mu")
    with pytest.raises(ValueError, match="location"):
        Family("bad", "real", ("mu",), print, print, print, print, "sigma")


# ------------------------------------------------------------ sklearn & API


# Checks that cannot pass, each with its reason (none: weighted and repeated rows give
# bit-identical fits, since fit works on the weighted distinct rows).
EXPECTED_FAILED_CHECKS = {}


@parametrize_with_checks(
    [MarginalMixture(["normal", "normal"], **FAST)],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)


def test_one_column_sklearn_behaviour():
    """What the multi-column sklearn checks test, on one column."""
    import pickle

    X = normal_t_data(120, seed=7)
    est = fit_quietly(MarginalMixture(["normal", "normal"], **FAST), X)
    again = fit_quietly(MarginalMixture(["normal", "normal"], **FAST), X)
    np.testing.assert_array_equal(est.weights_, again.weights_)  # idempotent, seeded
    restored = pickle.loads(pickle.dumps(est))
    np.testing.assert_allclose(restored.score_samples(X), est.score_samples(X))
    proba = est.predict_proba(X)
    np.testing.assert_allclose(est.predict_proba(X[:30]), proba[:30])
    np.testing.assert_allclose(est.predict_proba(X[::-1]), proba[::-1])
    with pytest.raises(ValueError, match="features"):
        est.predict(np.ones((3, 2)))
    # Integer weights count rows: weight 2 on a row is that row twice (same posterior
    # target, so the fitted weights agree closely even with the tiny FAST run).
    w = np.ones(120)
    w[:60] = 2
    weighted = fit_quietly(MarginalMixture(["normal", "normal"], **FAST), X, sample_weight=w)
    assert weighted.idata_.log_likelihood["X"].shape[-1] == 120
    with pytest.raises(ValueError, match="non-negative"):
        est.fit(X, sample_weight=-w)


def test_impossible_combination_raises():
    X = np.arange(10.0)[:, None]
    with pytest.raises(ValueError, match="Cannot mix count families"):
        MarginalMixture(["poisson", "normal"], **FAST).fit(X)


@pytest.mark.parametrize(
    "components, X, match",
    [
        (["gamma", "gamma"], np.r_[-1.0, np.arange(1.0, 10.0)], r"value\(s\) <= 0.*'gamma'"),
        (["poisson", "poisson"], np.r_[0.5, np.arange(9.0)], r"non-integer.*'poisson'"),
        (["negative_binomial"] * 2, np.r_[-2.0, np.arange(9.0)], r"negative.*'negative_binomial'"),
        (["normal", "lognormal"], np.r_[0.0, np.arange(1.0, 10.0)], r"<= 0.*'lognormal'"),
    ],
)
def test_out_of_support_raises(components, X, match):
    with pytest.raises(ValueError, match=match):
        MarginalMixture(components, **FAST).fit(X[:, None])


def test_unknown_family_and_bad_components():
    with pytest.raises(ValueError, match=r"Unknown component family 'weibul'.*'normal'"):
        MarginalMixture(["normal", "weibul"], **FAST).fit(np.arange(10.0)[:, None])
    with pytest.raises(ValueError, match="non-empty"):
        MarginalMixture([], **FAST).fit(np.arange(10.0)[:, None])
    with pytest.raises(ValueError, match="same family in each column"):
        MarginalMixture([["normal", "normal"], ["normal", "laplace"]], **FAST).fit(np.random.rand(10, 2))
    with pytest.raises(ValueError, match="Expected 2D array"):
        MarginalMixture(**FAST).fit(np.arange(10.0))
    with pytest.raises(ValueError, match="relabel"):
        MarginalMixture(relabel="ordered", **FAST).fit(np.arange(10.0)[:, None])


def test_n_components_follows_components():
    est = MarginalMixture(["normal", "laplace", "normal"])
    assert est.n_components == 3
    assert "n_components" not in est.get_params()


def test_sample_assignments_and_refit_without_compiling():
    X = normal_t_data(200, seed=5)
    est = fit_quietly(MarginalMixture(["normal", "student_t", "normal"], **FAST), X)
    z = est.sample_assignments(X, random_state=0)
    assert z.shape == (FAST["chains"], FAST["draws"], 200)
    assert np.issubdtype(z.dtype, np.integer)
    assert z.min() >= 0 and z.max() < 3
    # The two normal components are ordered by their means in every draw.
    assert np.all(np.diff(est.idata_.posterior["normal_mu"].values, axis=-1) >= 0)
    assert est.idata_.posterior["normal_component"].values.tolist() == [0, 2]
    before = compile_count()
    fit_quietly(MarginalMixture(["normal", "student_t", "normal"], **FAST), X[:150] + 1.0)
    assert compile_count() == before


@pytest.mark.parametrize(
    "components, make",
    [
        (["lognormal", "exponential"], lambda rng: rng.lognormal(1.0, 0.5, 200)),
        (["negative_binomial", "poisson"], lambda rng: rng.poisson(4, 200).astype(float)),
        (["laplace", "skew_normal"], lambda rng: rng.normal(0, 1, 200)),
    ],
)
def test_every_family_fits(components, make):
    X = make(np.random.default_rng(6))[:, None]
    for relabel in ("auto", "stephens"):
        est = fit_quietly(MarginalMixture(components, relabel=relabel, **FAST), X)
        assert np.all(np.isfinite(est.score_samples(X)))
        Xs, labels = est.sample(20)
        assert Xs.shape == (20, 1)
        if components[0] in ("poisson", "negative_binomial"):
            assert np.all(Xs == np.round(Xs))
