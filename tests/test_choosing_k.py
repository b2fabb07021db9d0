"""Rounded data (``resolution``), convergence columns of ``comparison_``, the posterior on K."""

import numpy as np
import pytest
from conftest import FAST, FAST_JAX
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold

import bayesmix
from bayesmix import BayesianGaussianMixture, BayesianMixtureRegression, SelectK
from bayesmix.resolution import detect_resolution, resolve_resolution, sheppard_sd


# ------------------------------------------------------------------ resolution


def test_detect_resolution():
    rng = np.random.default_rng(0)
    continuous = rng.normal(size=(200, 2))
    assert np.all(detect_resolution(continuous) == 0)
    rounded = np.column_stack([np.round(continuous[:, 0], 1), np.round(continuous[:, 1] * 4) / 4])
    assert np.allclose(detect_resolution(rounded), [0.1, 0.25])
    # Closest pair 0.2 apart but on a 0.1 grid; a shifted, scaled integer grid.
    assert np.isclose(detect_resolution(np.array([0.0, 0.2, 0.5, 0.9, 1.2]))[0], 0.1)
    assert np.isclose(detect_resolution(3.7 + 0.37 * rng.integers(0, 50, 300))[0], 0.37)
    # Too few distinct values to call a grid.
    assert detect_resolution(np.array([1.0, 1.0, 1.0]))[0] == 0
    # Two values: tied, so a component could shrink onto one; their spacing bounds it.
    assert detect_resolution(np.array([[1.0, 0.0], [2.5, 1.0], [1.0, 1.0]])).tolist() == [1.5, 1.0]
    faithful = bayesmix.datasets.load_faithful()
    assert detect_resolution(faithful[["waiting"]])[0] == 1.0


def test_resolve_resolution_checks():
    X = np.arange(10.0).reshape(5, 2)
    assert np.all(resolve_resolution(None, X) == 0)
    assert np.allclose(resolve_resolution(0.5, X), [0.5, 0.5])
    assert np.allclose(resolve_resolution([1, 2], X), [1, 2])
    with pytest.raises(ValueError, match="one value per column"):
        resolve_resolution([1, 2, 3], X)
    with pytest.raises(ValueError, match="non-negative"):
        resolve_resolution([-1, 2], X)
    with pytest.raises(ValueError, match="non-negative"):
        BayesianGaussianMixture(resolution=[np.nan], **FAST).fit(np.arange(20.0)[:, None])


def test_sheppard_matches_interval_probability():
    """Sheppard's h^2/12 against the exact interval probability of a rounded normal value."""
    from scipy import stats

    h, x = 1.0, np.linspace(-3, 3, 61)
    for sd in (1.0, 2.0, 5.0):
        exact = np.log((stats.norm.cdf(x + h / 2, 0, sd) - stats.norm.cdf(x - h / 2, 0, sd)) / h)
        approx = stats.norm.logpdf(x, 0, sheppard_sd(sd, h))
        assert np.max(np.abs(approx - exact)) < 0.02 * sd**-2 + 1e-3
    # The density of a value stays bounded however narrow the component.
    assert stats.norm.logpdf(0, 0, sheppard_sd(1e-9, h)) < np.log(1.4 / h)


def test_resolution_enters_the_model_and_the_predictive_density():
    rng = np.random.default_rng(1)
    X = np.round(np.concatenate([rng.normal(0, 1.5, 60), rng.normal(8, 1.5, 60)]))[:, None]
    auto = BayesianGaussianMixture(2, **FAST).fit(X)
    off = BayesianGaussianMixture(2, resolution=None, **FAST).fit(X)
    assert auto.resolution_.tolist() == [1.0] and off.resolution_.tolist() == [0.0]
    # The same compiled model serves both: the resolution is data, not structure.
    assert auto._structure(1, "sort") == off._structure(1, "sort")
    params = auto._posterior_params()
    sds = sheppard_sd(params["sigmas"], 1.0)
    expected = np.log(
        np.mean(
            np.sum(
                params["weights"][:, None, :]
                * np.exp(-0.5 * ((X - params["means"][:, None, :, 0]) / sds[:, None]) ** 2)
                / (np.sqrt(2 * np.pi) * sds[:, None]),
                axis=2,
            ),
            axis=0,
        )
    )
    assert np.allclose(auto.score_samples(X), expected)
    assert np.allclose(auto.idata_.log_likelihood["X"].values.reshape(-1, len(X)).shape, (40, len(X)))
    # Full covariances take it on their diagonal.
    X2 = np.column_stack([X[:, 0], np.round(rng.normal(0, 2, len(X)))])
    full = BayesianGaussianMixture(1, covariance_type="full", **FAST).fit(X2)
    assert full.resolution_.tolist() == [1.0, 1.0]
    assert np.all(np.isfinite(full.score_samples(X2)))


def test_regression_resolution():
    rng = np.random.default_rng(2)
    X = rng.uniform(0, 10, (80, 1))
    y = np.round(1 + 2 * X[:, 0] + rng.normal(0, 1, 80))
    reg = BayesianMixtureRegression(1, **FAST).fit(X, y)
    assert reg.resolution_ == 1.0
    assert BayesianMixtureRegression(1, resolution=None, **FAST).fit(X, y).resolution_ == 0.0


@pytest.mark.parametrize(
    "name, x, params, narrow",
    [
        ("normal", 3.0, {"mu": 3.0, "sigma": 2.0}, {"sigma": 1e-9}),
        ("student_t", 3.0, {"mu": 3.0, "sigma": 2.0, "nu": 4.0}, {"sigma": 1e-9}),
        ("laplace", 3.0, {"mu": 3.0, "b": 2.0}, {"b": 1e-9}),
        ("skew_normal", 3.0, {"mu": 3.0, "sigma": 2.0, "alpha": 2.0}, {"sigma": 1e-9}),
        ("lognormal", 3.0, {"mu": np.log(3.0), "sigma": 0.4}, {"sigma": 1e-9}),
        ("gamma", 3.0, {"mean": 3.0, "shape": 4.0}, {"shape": 1e12}),
    ],
)
def test_family_rounding_rules(name, x, params, narrow):
    """Each continuous family's rule: no change at h = 0, the interval probability of a
    wide component, a bounded density for a component narrowed onto the value, and the
    same numbers in the PyMC model as in NumPy."""
    import pytensor.tensor as pt
    from scipy import integrate

    from bayesmix.families import get_family

    family, h = get_family(name), 0.5
    assert family.rounded(x, 0.0, params) == pytest.approx(params)
    # A scale of 2 (0.4 on the log scale) is 4 (3.5) steps: within 3% (skew normal 2%,
    # log-normal 1.4%, normal far less); at the Laplace density's cusp the rule is 6% high.
    for value in (x - 1.0, x + 1.0):
        widened = family.rounded(value, h, params)
        exact = integrate.quad(lambda v: np.exp(family.logpdf(v, **params)), value - h / 2, value + h / 2)[0] / h
        assert np.exp(family.logpdf(value, **widened)) == pytest.approx(exact, rel=0.03)
    spike = family.rounded(x, h, {**params, **narrow})
    assert np.exp(family.logpdf(x, **spike)) < 2.5 / h  # the interval probability: 1 / h
    tensors = {p: pt.as_tensor_variable(np.float64(v)) for p, v in spike.items()}
    graph = family.logp(pt.as_tensor_variable(np.full((1, 1), x)), **tensors)
    assert float(graph.eval().ravel()[0]) == pytest.approx(family.logpdf(x, **spike))


def test_marginal_mixture_resolution():
    from bayesmix import MarginalMixture
    from bayesmix.families import get_family

    rng = np.random.default_rng(4)
    x = np.round(np.concatenate([rng.normal(50, 5, 60), rng.normal(75, 5, 60)]))[:, None]
    auto = MarginalMixture(["normal", "gamma"], **FAST_JAX).fit(x)
    off = MarginalMixture(["normal", "gamma"], resolution=None, **FAST_JAX).fit(x)
    assert auto.resolution_.tolist() == [1.0] and off.resolution_.tolist() == [0.0]
    assert auto._structure(1, "sort") == off._structure(1, "sort")  # data, not structure
    params = auto._posterior_params()
    normal, gamma = get_family("normal"), get_family("gamma")
    mu, sigma = params["normal_mu"][:, 0], params["normal_sigma"][:, 0]
    mean, shape = params["gamma_mean"][:, 0], params["gamma_shape"][:, 0]
    density = params["weights"][:, [0]] * np.exp(
        normal.logpdf(x[:, 0], **normal.rounded(x[:, 0], 1.0, {"mu": mu[:, None], "sigma": sigma[:, None]}))
    ) + params["weights"][:, [1]] * np.exp(
        gamma.logpdf(x[:, 0], **gamma.rounded(x[:, 0], 1.0, {"mean": mean[:, None], "shape": shape[:, None]}))
    )
    assert np.allclose(auto.score_samples(x), np.log(density.mean(axis=0)))
    # Counts are not rounded; a continuous column beside them is.
    X2 = np.column_stack([rng.poisson(3, 120), x[:, 0]]).astype(float)
    both = MarginalMixture([["poisson", "normal"]] * 2, **FAST_JAX).fit(X2)
    assert both.resolution_.tolist() == [0.0, 1.0]
    assert np.all(np.isfinite(both.score_samples(X2)))


def test_rounded_data_no_longer_pick_many_components():
    """A faithful-like set rounded to 2.5 (component sd 6). With ``resolution=None`` K-fold
    picks K=5 here (elpd -589 against -777 for K=2: components collapse onto heaps of
    tied values); with the detected resolution, the two clusters."""
    rng = np.random.default_rng(3)
    X = 2.5 * np.round(np.concatenate([rng.normal(55, 6, 70), rng.normal(80, 6, 130)]) / 2.5)[:, None]
    est = BayesianGaussianMixture(draws=100, tune=150, chains=2, backend="numba", random_state=0)
    cv = KFold(3, shuffle=True, random_state=0)
    sel = SelectK(est, k_range=[1, 2, 5], method="kfold", cv=cv, refit=False).fit(X)
    assert sel.best_k_ == 2, sel.comparison_


# -------------------------------------------------- convergence in comparison_


def test_comparison_reports_convergence_and_flags_failed_fits():
    rng = np.random.default_rng(4)
    X = np.concatenate([rng.normal(-4, 1, 60), rng.normal(4, 1, 60)])[:, None]
    bad = BayesianGaussianMixture(tune=5, draws=20, chains=2, backend="jax", random_state=0)
    with pytest.warns(ConvergenceWarning, match="comparison is not reliable"):
        sel = SelectK(bad, k_range=[1, 2], method="kfold", cv=2).fit(X)
    table = sel.comparison_
    for column in ("converged", "max_rhat", "divergences", "max_pareto_k"):
        assert column in table.columns
    assert table["converged"].dtype == bool and not table["converged"].all()
    assert sel.reliable_ is False and "failed their convergence checks" in sel.reliability_
    assert not table["max_pareto_k"].isna().any()  # full-data fits exist (refit=True)
    # LOO carries the same columns; retune re-fits a failing fit with more tuning.
    with pytest.warns(ConvergenceWarning):
        loo = SelectK(bad, k_range=[1], method="loo", retune=3).fit(X)
    assert loo.best_estimator_.tune == 15
    assert {"converged", "max_rhat", "divergences", "max_pareto_k"} <= set(loo.comparison_.columns)


# ----------------------------------------------------------- posterior over K


def _three_clusters(seed=0, n_per=80):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(8.0 * m, 1.0, n_per) for m in range(3)])[:, None]


def test_posterior_n_components_gibbs():
    X = _three_clusters()
    est = BayesianGaussianMixture(chains=2, random_state=0)
    probs, fitted = bayesmix.posterior_n_components(est, X, k_max=6, n_sweeps=400, n_burn=200)
    assert list(probs.index) == list(range(1, 7)) and np.isclose(probs.sum(), 1.0)
    assert probs.idxmax() == 3, probs
    assert probs.attrs["method"] == "gibbs" and probs.attrs["divergent_share"] == 0.0
    assert fitted["k_occupied"].shape == (2, 400) and np.all(fitted["e0"] == 0.01)
    # Same seed, same answer; a fixed concentration is used as given.
    again, _ = bayesmix.posterior_n_components(est, X, k_max=6, n_sweeps=400, n_burn=200)
    assert again.equals(probs)
    _, hyper = bayesmix.posterior_n_components(est, X, k_max=6, n_sweeps=200, n_burn=10, concentration="gamma")
    assert 0 < hyper["e0_acceptance"] < 1 and np.unique(hyper["e0"]).size > 10
    # Rounded to a coarse grid: the unrounded values are drawn inside their intervals.
    rounded, _ = bayesmix.posterior_n_components(est, np.round(X), k_max=6, n_sweeps=400, n_burn=200)
    assert rounded.idxmax() == 3, rounded
    with pytest.raises(ValueError, match="method='gibbs' needs"):
        bayesmix.posterior_n_components(
            BayesianGaussianMixture(covariance_type="full"), np.column_stack([X, X]), method="gibbs"
        )


def test_posterior_n_components_warns_when_chains_disagree():
    from bayesmix.model_selection import _k_posterior

    occupied = np.array([[2] * 50, [5] * 50])
    with pytest.warns(ConvergenceWarning, match="not reliable"):
        probs = _k_posterior(occupied, 6, "nuts", 0.2)
    assert probs.attrs["reliable"] is False and probs.attrs["chain_disagreement"] == 0.5


@pytest.mark.slow
@pytest.mark.parametrize("name", ["galaxy", "enzyme", "acidity"])
def test_posterior_n_components_stable_across_seeds(name):
    # Measured with the Gamma hyperprior on e0 (ranges 0.019-0.025); with the default
    # e0=0.01 enzyme's seeds differ by 0.074 (docs/choosing_k.md).
    X = getattr(bayesmix.datasets, f"load_{name}")()
    runs = [
        bayesmix.posterior_n_components(
            BayesianGaussianMixture(chains=4, random_state=seed), X, concentration="gamma"
        )[0]
        for seed in range(5)
    ]
    table = np.stack([r.to_numpy() for r in runs])
    assert np.max(table.max(axis=0) - table.min(axis=0)) <= 0.05, table.round(3)
    assert all(r.attrs["reliable"] for r in runs)


def test_load_galaxy():
    galaxy = bayesmix.datasets.load_galaxy()
    assert galaxy.shape == (82, 1) and list(galaxy.columns) == ["velocity"]
    assert np.isclose(galaxy["velocity"].iloc[0], 9.172) and np.isclose(galaxy["velocity"].max(), 34.279)


def test_rounded_full_covariance_model_adds_the_rounding_to_its_likelihood():
    # Sheppard's resolution**2 / 12 on the covariance diagonal, inside the likelihood the
    # sampler sees (it once went into a Cholesky factor that nothing used).
    import pymc as pm
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    from bayesmix.models.gaussian import build_gaussian_mixture

    rng = np.random.default_rng(2)
    X = np.round(rng.normal(size=(30, 2)) * 2)
    resolution = np.array([1.0, 0.5])
    logp, point = {}, None
    for rounded in (False, True):
        model = build_gaussian_mixture(2, 2, "full", ordered=False, rounded=rounded)
        with model:
            pm.set_data({"X": X, "sample_weight": np.ones(len(X)), "resolution": resolution})
        if point is None:  # the same point in both models, off PyMC's symmetric default
            point = {name: value + 0.1 * rng.normal(size=value.shape) for name, value in model.initial_point().items()}
        logp[rounded] = model.compile_logp()(point)
        outputs = model.replace_rvs_by_values([model["weights"], model["means"], model["covariances"]])
        params = model.compile_fn(outputs, inputs=model.value_vars, on_unused_input="ignore")(point)
    weights, means, covs = params

    def loglik(extra):
        dens = [multivariate_normal(means[k], covs[k] + extra).logpdf(X) + np.log(weights[k]) for k in range(2)]
        return logsumexp(np.stack(dens, axis=1), axis=1).sum()

    expected = loglik(np.diag(resolution**2 / 12.0)) - loglik(np.zeros((2, 2)))
    assert abs(expected) > 1e-3
    np.testing.assert_allclose(logp[True] - logp[False], expected, rtol=1e-8)
