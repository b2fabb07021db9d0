"""The models under simulation-based calibration: a prior simulator and a fit for each.

Every estimator gets explicit priors, so that the simulated truths are draws from exactly
the prior the model uses; the default priors are derived from the data and would make
simulation-based calibration meaningless. Where an estimator's prior cannot be made
independent of the data through its parameters, the case says how it gets around that.
"""

import dataclasses
import warnings

import numpy as np
import pymc as pm

from calibration import Case

#: Sampler settings of every calibration fit (chains one after the other, on one core).
SAMPLER = {"draws": 1000, "tune": 1000, "chains": 2, "cores": 1, "backend": "numba"}
# The cases draw their weights from Dirichlet(1, ..., 1) and fit with that prior (the
# estimators' default was 1 when the report was made; it is now 1 / n_components).
WEIGHT_CONCENTRATION = 1.0

# Gaussian mixture priors (user scale).
MEAN_PRIOR, MEAN_SCALE, SCALE_PRIOR = 0.0, 3.0, 1.0
# Regression priors: Normal(0, .) on intercept and slope, Gamma(2, 2 / .) on the noise sd.
COEF_SCALE, NOISE_SCALE, X_RANGE = (3.0, 1.0), 1.0, 3.0
# Poisson mixture prior on the rates.
RATE_LOG_MEAN, RATE_LOG_SD = np.log(5.0), 1.0


def _fitted(est, fit_args):
    """Fit quietly; return the flattened posterior and the convergence diagnostics."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(*fit_args)
    posterior = est.idata_.posterior
    draws = {name: var.values.reshape(-1, *var.shape[2:]) for name, var in posterior.data_vars.items()}
    return draws, {**est.convergence_, "converged": bool(est.converged_)}


# ------------------------------------------------------------------ Gaussian


def simulate_gaussian(rng, n_rows, n_features, n_components=2):
    """Weights, means and standard deviations from the prior; rows from the mixture."""
    weights = rng.dirichlet(np.full(n_components, WEIGHT_CONCENTRATION))
    means = rng.normal(MEAN_PRIOR, MEAN_SCALE, size=(n_components, n_features))
    sigmas = rng.gamma(2.0, SCALE_PRIOR / 2.0, size=(n_components, n_features))
    labels = rng.choice(n_components, size=n_rows, p=weights)
    X = means[labels] + sigmas[labels] * rng.standard_normal((n_rows, n_features))
    return {"weights": weights, "means": means, "sigmas": sigmas}, (X,)


def fit_gaussian(data, seed, sampler, n_components=2, **options):
    from bayesmix import BayesianGaussianMixture

    (X,) = data
    n_features = X.shape[1]
    est = BayesianGaussianMixture(
        n_components,
        covariance_type="diag",
        weight_concentration_prior=WEIGHT_CONCENTRATION,
        **options,
        mean_prior=np.full(n_features, MEAN_PRIOR),
        mean_prior_scale=MEAN_SCALE,
        scale_prior=SCALE_PRIOR,
        random_state=seed,
        **sampler,
    )
    draws, diagnostics = _fitted(est, (X,))
    draws["sigmas"] = draws["sigmas"].reshape(draws["means"].shape)  # 1-D: (S, K) -> (S, K, 1)
    return draws, diagnostics


def simulate_gaussian_1d(rng, n_rows):
    return simulate_gaussian(rng, n_rows, 1)


def simulate_gaussian_2d(rng, n_rows):
    return simulate_gaussian(rng, n_rows, 2)


_GAUSSIAN_PRIORS = (
    f"weights ~ Dirichlet(1, 1), means ~ Normal({MEAN_PRIOR:g}, {MEAN_SCALE:g}) per feature, "
    f"standard deviations ~ Gamma(2, 2/{SCALE_PRIOR:g}) per feature"
)

GAUSSIAN_1D = Case(
    title="BayesianGaussianMixture, 1-D, K=2",
    slug="sbc_gaussian_1d",
    simulate=simulate_gaussian_1d,
    fit=fit_gaussian,
    sort_by="means",
    description=(
        f"Priors: {_GAUSSIAN_PRIORS}; the estimator sorts every draw by the means "
        "(`relabel=\"auto\"`, i.e. `\"sort\"`), and the truth is sorted the same way."
    ),
)

GAUSSIAN_2D = Case(
    title="BayesianGaussianMixture, 2-D, diagonal covariances, K=2",
    slug="sbc_gaussian_2d",
    simulate=simulate_gaussian_2d,
    fit=fit_gaussian,
    sort_by="means",
    description=(
        f"Priors: {_GAUSSIAN_PRIORS}. The estimator relabels by Stephens' algorithm; truth "
        "and draws are compared with components sorted by the first feature's mean."
    ),
)


# ---------------------------------------------------------------- regression


def simulate_regression(rng, n_rows, n_components=2):
    """Lines, noise and weights from the prior; ``x ~ Uniform(-3, 3)`` and responses."""
    weights = rng.dirichlet(np.full(n_components, WEIGHT_CONCENTRATION))
    intercept = rng.normal(0.0, COEF_SCALE[0], size=n_components)
    slope = rng.normal(0.0, COEF_SCALE[1], size=n_components)
    sigma = rng.gamma(2.0, NOISE_SCALE / 2.0, size=n_components)
    x = rng.uniform(-X_RANGE, X_RANGE, size=n_rows)
    labels = rng.choice(n_components, size=n_rows, p=weights)
    y = intercept[labels] + slope[labels] * x + sigma[labels] * rng.standard_normal(n_rows)
    truth = {"weights": weights, "intercept": intercept, "slope": slope, "sigma": sigma}
    return truth, (np.column_stack([np.ones(n_rows), x]), y)


def fit_regression(data, seed, sampler, n_components=2, **priors):
    """Fit with the intercept as a column of ones; ``priors`` replace the normal case's."""
    from bayesmix import BayesianMixtureRegression

    X, y = data
    priors = priors or {"coef_prior_scale": np.array(COEF_SCALE), "scale_prior": NOISE_SCALE}
    est = BayesianMixtureRegression(
        n_components, fit_intercept=False, weight_concentration_prior=WEIGHT_CONCENTRATION, **priors,
        random_state=seed, **sampler,
    )
    draws, diagnostics = _fitted(est, (X, y))
    coef = draws.pop("coef")
    draws["intercept"], draws["slope"] = coef[..., 0], coef[..., 1]
    return draws, diagnostics


REGRESSION = Case(
    title="BayesianMixtureRegression, one feature, K=2",
    slug="sbc_regression",
    simulate=simulate_regression,
    fit=fit_regression,
    sort_by="intercept",
    description=(
        f"Priors: weights ~ Dirichlet(1, 1), intercepts ~ Normal(0, {COEF_SCALE[0]:g}), "
        f"slopes ~ Normal(0, {COEF_SCALE[1]:g}), noise sd ~ Gamma(2, 2/{NOISE_SCALE:g}); "
        f"x ~ Uniform(-{X_RANGE:g}, {X_RANGE:g}). With `fit_intercept=True` the estimator "
        "centres the intercepts' prior on the mean response (a prior that depends on the "
        "data, which simulation-based calibration cannot check), so the intercept enters as "
        "a column of ones with `fit_intercept=False`, where every prior is as stated. "
        "Relabeling: Stephens; compared with components sorted by intercept."
    ),
)


# ------------------------------------------------------------------ marginal


def _poisson_fixed_prior():
    """The built-in Poisson family with a fixed LogNormal prior on the rates.

    The built-in families centre their priors on summaries of the data (an empirical
    Bayes choice); simulation-based calibration needs a prior that is fixed in advance.
    Count data are not rescaled, so a fixed prior on the sampling scale is fixed on the
    user's scale too.
    """
    from bayesmix.families import get_family

    return dataclasses.replace(
        get_family("poisson"),
        name="poisson_fixed",
        priors=lambda K, data: {"rate": pm.LogNormal.dist(mu=RATE_LOG_MEAN, sigma=RATE_LOG_SD, shape=K)},
    )


# One Family object: MarginalMixture keys its compiled models by the families' identity.
POISSON_FIXED = _poisson_fixed_prior()


def simulate_poisson(rng, n_rows, n_components=2):
    weights = rng.dirichlet(np.full(n_components, WEIGHT_CONCENTRATION))
    rate = rng.lognormal(RATE_LOG_MEAN, RATE_LOG_SD, size=n_components)
    labels = rng.choice(n_components, size=n_rows, p=weights)
    X = rng.poisson(rate[labels]).astype(float)[:, None]
    return {"weights": weights, "rate": rate}, (X,)


def fit_poisson(data, seed, sampler, n_components=2):
    from bayesmix import MarginalMixture

    (X,) = data
    est = MarginalMixture(
        [POISSON_FIXED] * n_components, weight_concentration_prior=WEIGHT_CONCENTRATION, random_state=seed, **sampler
    )
    draws, diagnostics = _fitted(est, (X,))
    return {"weights": draws["weights"], "rate": draws["poisson_fixed_rate"]}, diagnostics


POISSON = Case(
    title="MarginalMixture, Poisson + Poisson",
    slug="sbc_marginal_poisson",
    simulate=simulate_poisson,
    fit=fit_poisson,
    sort_by="rate",
    description=(
        f"Priors: weights ~ Dirichlet(1, 1), rates ~ LogNormal(log 5, {RATE_LOG_SD:g}). The "
        "built-in families centre their priors on summaries of the data, so this case uses "
        "the built-in Poisson family with that fixed prior (`dataclasses.replace` on "
        "`get_family(\"poisson\")`); everything else is `MarginalMixture` as shipped. "
        "Relabeling: sorted by rate (the default)."
    ),
)


# ----------------------------------------------------- full covariances (issue 16)

LKJ_ETA = 2.0


def simulate_gaussian_full(rng, n_rows, n_components=2, n_features=2):
    """As ``simulate_gaussian``, with a correlation per component from LKJ(2).

    In two dimensions LKJ(eta) makes ``(1 + r) / 2`` a Beta(eta, eta) variable.
    """
    weights = rng.dirichlet(np.full(n_components, WEIGHT_CONCENTRATION))
    means = rng.normal(MEAN_PRIOR, MEAN_SCALE, size=(n_components, n_features))
    sds = rng.gamma(2.0, SCALE_PRIOR / 2.0, size=(n_components, n_features))
    corr = 2.0 * rng.beta(LKJ_ETA, LKJ_ETA, size=n_components) - 1.0
    labels = rng.choice(n_components, size=n_rows, p=weights)
    z = rng.standard_normal((n_rows, 2))
    z[:, 1] = corr[labels] * z[:, 0] + np.sqrt(1.0 - corr[labels] ** 2) * z[:, 1]
    X = means[labels] + sds[labels] * z
    return {"weights": weights, "means": means, "sds": sds, "corr": corr}, (X,)


def fit_gaussian_full(data, seed, sampler, n_components=2):
    from bayesmix import BayesianGaussianMixture

    (X,) = data
    est = BayesianGaussianMixture(
        n_components,
        covariance_type="full",
        weight_concentration_prior=WEIGHT_CONCENTRATION,
        lkj_eta=LKJ_ETA,
        mean_prior=np.full(X.shape[1], MEAN_PRIOR),
        mean_prior_scale=MEAN_SCALE,
        scale_prior=SCALE_PRIOR,
        random_state=seed,
        **sampler,
    )
    draws, diagnostics = _fitted(est, (X,))
    cov = draws.pop("covariances")
    sds = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    draws["sds"], draws["corr"] = sds, cov[..., 0, 1] / (sds[..., 0] * sds[..., 1])
    return draws, diagnostics


GAUSSIAN_FULL = Case(
    title="BayesianGaussianMixture, 2-D, full covariances, K=2",
    slug="sbc_gaussian_full",
    simulate=simulate_gaussian_full,
    fit=fit_gaussian_full,
    sort_by="means",
    description=(
        f"Priors: {_GAUSSIAN_PRIORS}, correlation ~ LKJ({LKJ_ETA:g}) per component (in 2-D, "
        "(1 + r) / 2 ~ Beta(2, 2)). Each component's covariance is checked as its two "
        "standard deviations and its correlation. Relabeling: Stephens; compared with "
        "components sorted by the first feature's mean."
    ),
)


# -------------------------------------------- GLM and mixed-type mixtures (issue 19)

# Poisson regression priors (log link): Normal(0, .) on intercept and slope.
GLM_COEF_SCALE, GLM_X_RANGE = (1.5, 0.5), 2.0


def simulate_poisson_regression(rng, n_rows, n_components=2):
    """Log-linear rates from the prior; ``x ~ Uniform(-2, 2)`` and counts."""
    weights = rng.dirichlet(np.full(n_components, WEIGHT_CONCENTRATION))
    intercept = rng.normal(0.0, GLM_COEF_SCALE[0], size=n_components)
    slope = rng.normal(0.0, GLM_COEF_SCALE[1], size=n_components)
    x = rng.uniform(-GLM_X_RANGE, GLM_X_RANGE, size=n_rows)
    labels = rng.choice(n_components, size=n_rows, p=weights)
    y = rng.poisson(np.exp(intercept[labels] + slope[labels] * x)).astype(float)
    truth = {"weights": weights, "intercept": intercept, "slope": slope}
    return truth, (np.column_stack([np.ones(n_rows), x]), y)


def fit_poisson_regression(data, seed, sampler, n_components=2):
    return fit_regression(
        data, seed, sampler, n_components, family="poisson", coef_prior_scale=np.array(GLM_COEF_SCALE)
    )


POISSON_REGRESSION = Case(
    title="BayesianMixtureRegression, Poisson family, one feature, K=2",
    slug="sbc_poisson_regression",
    simulate=simulate_poisson_regression,
    fit=fit_poisson_regression,
    sort_by="intercept",
    description=(
        f"Log link. Priors: weights ~ Dirichlet(1, 1), intercepts ~ Normal(0, "
        f"{GLM_COEF_SCALE[0]:g}), slopes ~ Normal(0, {GLM_COEF_SCALE[1]:g}); x ~ Uniform("
        f"-{GLM_X_RANGE:g}, {GLM_X_RANGE:g}); y ~ Poisson(exp(intercept + slope x)). The "
        "intercept is a column of ones with `fit_intercept=False`, as in the Gaussian "
        "regression case. Relabeling: Stephens; compared with components sorted by intercept."
    ),
)

N_CATEGORIES = 3


def simulate_mixed(rng, n_rows, n_components=2):
    """A count, a binary and a three-category column, independent within a component."""
    weights = rng.dirichlet(np.full(n_components, WEIGHT_CONCENTRATION))
    rate = rng.lognormal(RATE_LOG_MEAN, RATE_LOG_SD, size=n_components)
    p = rng.beta(1.0, 1.0, size=n_components)
    probs = rng.dirichlet(np.ones(N_CATEGORIES), size=n_components)
    labels = rng.choice(n_components, size=n_rows, p=weights)
    categories = (rng.uniform(size=(n_rows, 1)) > np.cumsum(probs[labels], axis=1)).sum(axis=1)
    X = np.column_stack([rng.poisson(rate[labels]), rng.uniform(size=n_rows) < p[labels], categories])
    return {"weights": weights, "rate": rate, "p": p, "probs": probs}, (X.astype(float),)


def fit_mixed(data, seed, sampler, n_components=2):
    from bayesmix import MarginalMixture

    (X,) = data
    est = MarginalMixture(
        [[POISSON_FIXED, "bernoulli", "categorical"]] * n_components,
        weight_concentration_prior=WEIGHT_CONCENTRATION,
        categories=[None, None, list(range(N_CATEGORIES))],
        random_state=seed,
        **sampler,
    )
    draws, diagnostics = _fitted(est, (X,))
    return {"weights": draws["weights"], "rate": draws["poisson_fixed_rate"][..., 0],
            "p": draws["bernoulli_p"][..., 0], "probs": draws["x2_p"]}, diagnostics


MIXED = Case(
    title="MarginalMixture, count + binary + categorical columns, K=2",
    slug="sbc_marginal_mixed",
    simulate=simulate_mixed,
    fit=fit_mixed,
    sort_by="rate",
    description=(
        f"Three columns, independent within a component: a count (Poisson, rate ~ LogNormal("
        f"log 5, {RATE_LOG_SD:g}), the fixed-prior family of the case above), a 0/1 column "
        f"(Bernoulli, p ~ Beta(1, 1)) and a categorical column with {N_CATEGORIES} categories "
        "(probabilities ~ Dirichlet(1, 1, 1), listed with `categories=` so that a category "
        "the data happen to lack keeps its place); weights ~ Dirichlet(1, 1). Relabeling: "
        "Stephens over all columns (the default); compared with components sorted by rate."
    ),
)

CASES = {
    "gaussian_1d": GAUSSIAN_1D,
    "gaussian_2d": GAUSSIAN_2D,
    "regression": REGRESSION,
    "poisson": POISSON,
    "gaussian_full": GAUSSIAN_FULL,
    "poisson_regression": POISSON_REGRESSION,
    "mixed": MIXED,
}
