"""Every published result of the reference data sets, refitted with the default priors.

The references (``shared/data/README.md``, copied into ``bayesmix.datasets``) are maximum
likelihood fits; bayesmix reports posterior means, so agreement is expected within the
posterior's spread, not to the last digit. Log-likelihoods are given at the posterior
mean of the parameters and at the best posterior draw; both should sit a little below the
maximum.
"""

import time
import warnings

import numpy as np

#: Sampler settings: the estimators' defaults (4 chains of 1000 draws) but PyMC's 1000
#: tuning steps, chains one after the other.
SAMPLER = {"cores": 1, "random_state": 0, "tune": 1000}


def _fit(est, X, y=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


def loglik(est, X, y=None):
    """Log-likelihood at the posterior mean of the parameters and at the best draw."""
    posterior = est.idata_.posterior
    means = {name: var.mean(("chain", "draw")).values[None] for name, var in posterior.data_vars.items()}
    X = np.asarray(X, dtype=float)
    y = None if y is None else np.asarray(y, dtype=float)
    at_mean = float(est._row_log_likelihood(X, y, means).sum())
    log_lik = est.idata_.log_likelihood
    per_draw = log_lik[next(iter(log_lik.data_vars))].sum(dim=[d for d in log_lik.dims if d.endswith("_row")])
    return at_mean, float(per_draw.max())


def _f(values, digits):
    return " / ".join(f"{v:.{digits}f}" for v in np.ravel(values))


def _ll_row(reference, est, X, y=None):
    at_mean, best = loglik(est, X, y)
    return ("log-likelihood (posterior mean; best draw)", f"{reference}", f"{at_mean:.3f}; {best:.3f}")


def faithful_waiting(backend):
    from bayesmix import BayesianGaussianMixture, datasets

    X = datasets.load_faithful()[["waiting"]]
    est = _fit(BayesianGaussianMixture(2, covariance_type="tied", backend=backend, **SAMPLER), X)
    return "faithful `waiting`, K=2, equal sd (mixtools `normalmixEM`)", [
        ("weights", "0.361 / 0.639", _f(est.weights_, 3)),
        ("means", "54.614 / 80.090", _f(est.means_, 3)),
        ("sd", "5.869", _f(np.sqrt(est.covariances_), 3)),
        _ll_row("-1034.002", est, X),
    ]


def faithful_2d(backend):
    from bayesmix import BayesianGaussianMixture, datasets, select_k

    # LKJ covariance models take minutes per K to compile for numba, seconds for jax.
    backend = "jax"
    X = datasets.load_faithful()[["eruptions", "waiting"]]
    est = _fit(BayesianGaussianMixture(3, covariance_type="tied", backend=backend, **SAMPLER), X)
    quantity, _, ours = _ll_row("", est, X)
    # Choosing K: shorter runs (2 chains of 500 draws) for the five candidate fits.
    template = BayesianGaussianMixture(covariance_type="tied", backend=backend,
                                       **{**SAMPLER, "draws": 500, "tune": 500, "chains": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel = select_k(template, X, k_range=range(1, 6))
    return "faithful 2-D, common full covariance (mclust; K chosen by BIC; jax backend)", [
        (f"K=3: {quantity}", "-1126.326", ours),
        ("K chosen by `select_k` (K in 1-5; 2 chains x 500 draws)", "3", f"{sel.best_k_} ({sel.method_})"),
    ]


def _regression_rows(est, X, y, reference, order):
    return [
        ("weights", reference["weights"], _f(est.weights_[order], 3)),
        ("intercepts", reference["intercepts"], _f(est.intercept_[order], 3)),
        *[
            (f"coefficients of {name}", ref, _f(est.coef_[order, j], 4))
            for j, (name, ref) in enumerate(reference["coefs"])
        ],
        ("sigmas", reference["sigmas"], _f(est.sigma_[order], 3)),
        _ll_row(reference["loglik"], est, X, y),
    ]


def co2data(backend):
    from bayesmix import BayesianMixtureRegression, datasets

    data = datasets.load_co2data()
    X, y = data[["GNP"]], data["CO2"]
    est = _fit(BayesianMixtureRegression(2, backend=backend, **SAMPLER), X, y)
    return "co2data, CO2 on GNP, K=2 (mixtools `regmixEM`)", _regression_rows(est, X, y, {
        "weights": "0.755 / 0.245", "intercepts": "8.679 / 1.415",
        "coefs": [("GNP", "-0.0233 / 0.6766")], "sigmas": "2.049 / 0.809", "loglik": "-66.940",
    }, order=np.argsort(-est.weights_))


def npreg(backend):
    from bayesmix import BayesianMixtureRegression, datasets

    data = datasets.load_npreg()
    X = np.column_stack([data["x"], data["x"] ** 2])
    y = data["yn"].to_numpy()
    est = _fit(BayesianMixtureRegression(2, backend=backend, **SAMPLER), X, y)
    rows = _regression_rows(est, X, y, {
        "weights": "0.506 / 0.494", "intercepts": "14.718 / -0.209",
        "coefs": [("x", "9.8456 / 4.8161"), ("x^2", "-0.9682 / 0.0363")],
        "sigmas": "3.481 / 3.475", "loglik": "-642.545",
    }, order=np.argsort(-est.intercept_))
    labels = est.predict(X, y)
    truth = data["class"].to_numpy()
    agreement = max(np.mean(labels == (truth == c)) for c in np.unique(truth))
    rows.append(("agreement with `class`", "95%", f"{agreement:.1%}"))
    return "npreg, `yn ~ x + x^2`, K=2 (flexmix)", rows


def tonedata(backend):
    from bayesmix import BayesianMixtureRegression, datasets

    data = datasets.load_tonedata()
    X, y = data[["stretchratio"]], data["tuned"]
    est = _fit(BayesianMixtureRegression(2, backend=backend, **SAMPLER), X, y)
    rows = _regression_rows(est, X, y, {
        "weights": "0.698 / 0.302", "intercepts": "1.9164 / -0.0193",
        "coefs": [("stretchratio", "0.0425 / 0.9923")], "sigmas": "0.046 / 0.133", "loglik": "141.198",
    }, order=np.argsort(-est.weights_))
    smallest = float(est.idata_.posterior["sigma"].min())
    rows.append(("smallest sigma in any draw (spurious optimum: ~0.005, log-lik 145.4)", "> 0.005", f"{smallest:.4f}"))
    return "tonedata, `tuned ~ stretchratio`, K=2 (multi-start EM)", rows


def patent(backend):
    from bayesmix import BayesianMixtureRegression, datasets

    data = datasets.load_patent()
    X, y = data[["lgRD"]], data["Patents"]
    est = _fit(BayesianMixtureRegression(3, family="poisson", relabel="sort", backend=backend, **SAMPLER), X, y)
    order = np.argsort(est.intercept_)
    return "patent, `Patents ~ lgRD`, Poisson, K=3 (flexmix `FLXMRglm`, 30 EM starts)", [
        ("weights", "0.240 / 0.576 / 0.183", _f(est.weights_[order], 3)),
        ("intercepts", "-2.3250 / 0.5833 / 1.9761", _f(est.intercept_[order], 4)),
        ("coefficients of lgRD", "1.5224 / 0.8655 / 0.6691", _f(est.coef_[order, 0], 4)),
        # The model's own form of y (GLM: with offsets and trials) for its log-likelihood.
        _ll_row("-203.533", est, X, est._pack(y.to_numpy(dtype=float), None, None)),
    ]


def _k_posterior(est_template, X):
    from bayesmix import posterior_n_components

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probs, _ = posterior_n_components(est_template, X, k_max=10)
    shown = probs[probs >= 0.005]
    text = ", ".join(f"{k}: {p:.2f}" for k, p in shown.items())
    return int(probs.idxmax()), text


def acidity(backend):
    from bayesmix import BayesianGaussianMixture, datasets

    X = datasets.load_acidity()
    est = _fit(BayesianGaussianMixture(2, covariance_type="tied", backend=backend, **SAMPLER), X)
    mode, text = _k_posterior(BayesianGaussianMixture(backend=backend, **SAMPLER), X)
    return "acidity, K=2, equal variance (mclust); K (Richardson & Green)", [
        ("weights", "0.623 / 0.377", _f(est.weights_, 3)),
        ("means", "4.371 / 6.320", _f(est.means_, 3)),
        ("sd", "0.4317", _f(np.sqrt(est.covariances_), 4)),
        _ll_row("-185.949", est, X),
        ("P(K) (`posterior_n_components`, K <= 10)", "most mass on K = 2-4", f"mode {mode}; {text}"),
    ]


def enzyme(backend):
    from bayesmix import BayesianGaussianMixture, datasets

    X = datasets.load_enzyme()
    mode, text = _k_posterior(BayesianGaussianMixture(backend=backend, **SAMPLER), X)
    return "enzyme, number of components (Richardson & Green)", [
        ("P(K) (`posterior_n_components`, K <= 10)", "mode at K = 3 or 4", f"mode {mode}; {text}"),
    ]


REPRODUCTIONS = (faithful_waiting, faithful_2d, co2data, npreg, tonedata, patent, acidity, enzyme)


def markdown(backend):
    """The published-results section; returns its lines and the seconds taken."""
    start = time.perf_counter()
    lines = [
        "## Published results",
        "",
        "Default priors and sampler settings, except 1000 tuning steps (4 chains x 1000 "
        "draws after 1000 tuning steps). References are maximum-likelihood fits (`shared/data/README.md`); bayesmix "
        "gives posterior means, and log-likelihoods at the posterior mean and at the best "
        "posterior draw, which should lie a little below the maximum. Components are listed "
        "in the reference's order.",
        "",
        "| data, model | quantity | reference | bayesmix |",
        "|---|---|---|---|",
    ]
    for reproduce in REPRODUCTIONS:
        title, rows = reproduce(backend)
        for i, (quantity, reference, ours) in enumerate(rows):
            lines.append(f"| {title if i == 0 else ''} | {quantity} | {reference} | {ours} |")
    return lines, time.perf_counter() - start
