"""BayesianMixtureRegression with GLM components: every family, offsets, trials, support."""

import warnings

import numpy as np
import pytest
from conftest import FAST_JAX as FAST
from scipy import stats
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from bayesmix import BayesianMixtureRegression, datasets

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N = 300


def _fit(X, y, fit_kwargs=None, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return BayesianMixtureRegression(**kwargs).fit(X, y, **(fit_kwargs or {}))


def _simulate(family, rng, n=N):
    """Two components with distinct lines on the link scale; returns X, y, fit kwargs."""
    x = rng.normal(size=n)
    z = rng.uniform(size=n) < 0.4
    eta = np.where(z, -1.0 + 1.0 * x, 1.0 - 0.5 * x)
    if family == "poisson":
        return x[:, None], rng.poisson(np.exp(eta)).astype(float), {}
    if family == "negative_binomial":
        mu = np.exp(eta + 1.0)
        return x[:, None], rng.negative_binomial(5.0, 5.0 / (mu + 5.0)).astype(float), {}
    if family == "gamma":
        return x[:, None], rng.gamma(8.0, np.exp(eta) / 8.0), {}
    p = 1 / (1 + np.exp(-2 * eta))
    if family == "bernoulli":
        return x[:, None], (rng.uniform(size=n) < p).astype(float), {}
    trials = rng.integers(1, 8, n)
    return x[:, None], rng.binomial(trials, p).astype(float), {"trials": trials}


FAMILIES = ["poisson", "negative_binomial", "binomial", "bernoulli", "gamma"]


@pytest.fixture(scope="module", params=FAMILIES)
def fitted(request):
    family = request.param
    X, y, kwargs = _simulate(family, np.random.default_rng(FAMILIES.index(family)))
    return family, X, y, kwargs, _fit(X, y, kwargs, n_components=2, family=family, **FAST)


def test_every_family_api(fitted):
    family, X, y, kwargs, est = fitted
    post = est.idata_.posterior
    assert "sigma" not in post and not hasattr(est, "sigma_")
    if family in ("negative_binomial", "gamma"):
        name = "alpha" if family == "negative_binomial" else "shape"
        assert post[name].dims[-1] == "component" and np.all(post[name].values > 0)
        assert est.dispersion_.shape == (2,)
    mean = est.predict(X, **kwargs)
    assert mean.shape == (N,) and np.all(mean >= 0)
    if family in ("binomial", "bernoulli"):
        assert np.all(mean <= kwargs.get("trials", 1))
    labels = est.predict(X, y, **kwargs)
    assert set(np.unique(labels)) <= {0, 1}
    proba = est.predict_proba(X, y, **kwargs)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.all(np.isfinite(est.score_samples(X, y, **kwargs)))
    draws = est.sample(X[:20], n_samples=3, **{k: v[:20] for k, v in kwargs.items()})
    assert draws.shape == (3, 20)
    if family == "gamma":
        assert np.all(draws > 0)
    else:
        assert np.all(draws >= 0) and np.all(draws == np.round(draws))
    if family == "bernoulli":
        assert set(np.unique(draws)) <= {0.0, 1.0}
    if family == "binomial":
        assert np.all(draws <= kwargs["trials"][:20])
    assert est.idata_.log_likelihood["y"].shape[-1] == N
    # The stored log-likelihood is the family's: for a one-draw check, recompute it.
    assert np.all(est.idata_.log_likelihood["y"].values <= (0 if family != "gamma" else np.inf))


def test_score_is_the_family_density(fitted):
    """score_samples = log mean over draws of the mixture of the family's densities."""
    family, X, y, kwargs, est = fitted
    post = est.idata_.posterior
    S = post.sizes["chain"] * post.sizes["draw"]
    coef = post["coef"].values.reshape(S, 2, 1)
    intercept = post["intercept"].values.reshape(S, 2)
    weights = post["weights"].values.reshape(S, 2)
    eta = intercept[:, None, :] + X[None, :, :1] * coef[:, None, :, 0]
    yy = y[None, :, None]
    if family == "poisson":
        dens = stats.poisson.logpmf(yy, np.exp(eta))
    elif family == "negative_binomial":
        alpha = post["alpha"].values.reshape(S, 1, 2)
        dens = stats.nbinom.logpmf(yy, alpha, alpha / (np.exp(eta) + alpha))
    elif family == "gamma":
        shape = post["shape"].values.reshape(S, 1, 2)
        dens = stats.gamma.logpdf(yy, shape, scale=np.exp(eta) / shape)
    else:
        n = kwargs.get("trials", np.ones(N))[None, :, None]
        dens = stats.binom.logpmf(yy, n, 1 / (1 + np.exp(-eta)))
    expected = np.log(np.mean(np.sum(weights[:, None, :] * np.exp(dens), axis=2), axis=0))
    np.testing.assert_allclose(est.score_samples(X, y, **kwargs), expected, rtol=1e-6, atol=1e-8)


def test_poisson_offset_recovers_rates():
    """With exposure, the coefficients are rates per unit exposure."""
    rng = np.random.default_rng(11)
    n = 400
    x = rng.normal(size=n)
    exposure = rng.uniform(0.5, 10.0, n)
    z = rng.uniform(size=n) < 0.5
    eta = np.where(z, -1.0 + 0.8 * x, 1.0 - 0.5 * x)
    y = rng.poisson(exposure * np.exp(eta))
    settings = {**FAST, "draws": 200, "tune": 200}
    est = _fit(x[:, None], y, {"offset": np.log(exposure)}, n_components=2, family="poisson", **settings)
    order = np.argsort(est.intercept_)
    np.testing.assert_allclose(est.intercept_[order], [-1.0, 1.0], atol=0.25)
    np.testing.assert_allclose(est.coef_[order, 0], [0.8, -0.5], atol=0.25)
    # Doubling the exposure doubles the predicted mean.
    base = est.predict(x[:5, None], offset=np.log(exposure[:5]))
    np.testing.assert_allclose(est.predict(x[:5, None], offset=np.log(2 * exposure[:5])), 2 * base)
    with pytest.raises(ValueError, match="offset must be"):
        est.predict(x[:5, None], offset=np.zeros(4))
    # fit_predict passes the offsets on to predict: memberships follow the true classes.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = clone(est).fit_predict(x[:, None], y, offset=np.log(exposure))
    agreement = np.mean(labels == z)
    assert max(agreement, 1 - agreement) > 0.8


def test_gating_and_sample_weight_with_glm():
    rng = np.random.default_rng(5)
    x = rng.uniform(-2, 2, N)
    z = rng.uniform(size=N) < 1 / (1 + np.exp(-3 * x))
    y = rng.poisson(np.where(z, 10.0, 1.0)).astype(float)
    est = _fit(x[:, None], y, n_components=2, family="poisson", gating=True, **FAST)
    assert {"gate_intercept", "gate_coef"} <= set(est.idata_.posterior.data_vars)
    high = int(np.argmax(est.intercept_))
    proba = est.predict_proba(np.array([[-2.0], [2.0]]))
    assert proba[1, high] > proba[0, high]
    # A weight of 0 removes a row: wild counts with weight 0 leave the fit as without them.
    y_bad = y.copy()
    y_bad[:30] = 500
    w = np.r_[np.zeros(30), np.ones(N - 30)]
    weighted = BayesianMixtureRegression(2, family="poisson", gating=True, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted.fit(x[:, None], y_bad, sample_weight=w)
    assert np.exp(weighted.intercept_).max() < 50


@pytest.mark.parametrize(
    "family, y, kwargs, match",
    [
        ("poisson", [-1, 2, 3, 4], {}, "^y has 1 negative"),
        ("poisson", [0.5, 2, 3, 4], {}, "^y has 1 non-integer"),
        ("negative_binomial", [-1, 2, 3, 4], {}, "^y has 1 negative"),
        ("bernoulli", [0, 1, 2, 1], {}, "0 or 1"),
        ("binomial", [0, 1, 2, 1], {}, "needs the number of trials"),
        ("binomial", [0, 1, 5, 1], {"trials": 3}, "exceeds trials"),
        ("binomial", [0, 1, 2, 1], {"trials": [3, 3, 3, -1]}, "trials must be"),
        ("gamma", [0.0, 1, 2, 3], {}, "^y has 1 value.* <= 0"),
        ("poisson", [1, 2, 3, 4], {"trials": 3}, "trials is for"),
        ("normal", [1, 2, 3, 4], {"offset": 1.0}, "offset and trials are for the GLM"),
        ("poisson", [1, 2, 3, 4], {"offset": [0, 0, np.nan, 0]}, "NaN"),
    ],
)
def test_out_of_support_raises(family, y, kwargs, match):
    X = np.arange(4.0)[:, None]
    with pytest.raises(ValueError, match=match):
        BayesianMixtureRegression(2, family=family, **FAST).fit(X, np.asarray(y, float), **kwargs)


def test_unknown_family():
    with pytest.raises(ValueError, match="family"):
        BayesianMixtureRegression(family="weibull", **FAST).fit(np.ones((4, 1)), np.arange(4.0))


def test_npreg_poisson_and_binomial_columns():
    """flexmix's NPreg has a Poisson (yp) and a Bernoulli (yb) response on x."""
    data = datasets.load_npreg()
    est = _fit(data[["x"]], data["yp"], n_components=2, family="poisson", **FAST)
    assert est.predict(data[["x"]]).shape == (200,)
    with pytest.raises(ValueError, match="0 or 1"):
        est.set_params(family="bernoulli").fit(data[["x"]], data["yp"])
