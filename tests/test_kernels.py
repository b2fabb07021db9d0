"""Whole-model numba kernels (bayesmix.models.kernels) against the PyMC models they replace."""

import logging

import numpy as np
import pymc as pm
import pytensor
import pytest
from pytensor.compile.mode import Mode
from scipy import stats

from bayesmix import (
    BayesianGaussianMixture,
    BayesianMixtureRegression,
    MarginalMixture,
    _nutpie_numba,
    _sampling,
)
from bayesmix._nutpie_numba import _agrees_with_pymc, _kernel_model, _model_functions
from bayesmix.families import Family, get_family
from bayesmix.models.gaussian import build_gaussian_mixture
from bayesmix.models.kernels import (
    FullCovarianceKernel,
    GaussianKernel,
    MarginalKernel,
    RegressionKernel,
)
from bayesmix.models.marginal import build_marginal_mixture
from bayesmix.models.regression import build_regression_mixture

VARIANTS = [
    # K, D, covariance type, ordered, weight prior
    (3, 1, "spherical", False, "dirichlet_distribution"),
    (3, 1, "spherical", True, "dirichlet_distribution"),
    (1, 1, "spherical", False, "dirichlet_distribution"),
    (4, 1, "tied", False, "dirichlet_process"),
    (2, 3, "diag", False, "dirichlet_distribution"),
    (4, 3, "diag", False, "dirichlet_process"),
    (3, 4, "spherical", False, "dirichlet_process"),
]


def _kernel_for(D, cov, ordered, prior):
    return GaussianKernel(
        process=prior == "dirichlet_process", ordered=ordered, tied=cov == "tied", spherical=cov == "spherical"
    )


def _random_data(rng, D, n=9):
    return {
        "X": rng.normal(size=(n, D)) * 2.0,
        "sample_weight": rng.uniform(0.2, 3.0, n),
        "weight_concentration": rng.uniform(0.3, 3.0),
        "mean_loc": rng.normal(size=D),
        "mean_scale": rng.uniform(0.5, 3.0, D),
        "scale_prior": rng.uniform(0.3, 2.0, D),
        "resolution": rng.uniform(0.0, 0.8, D),
    }


def _check_against_pymc(model, kernel, data, expanded, rng):
    """Check the kernel against PyMC's model at random points.

    Its log-density, gradient and the values its expand callback writes; ``expanded``
    names the deterministics whose shapes ``kernel.names`` needs.
    """
    value_vars = [model.rvs_to_values[rv] for rv in model.free_RVs]
    shapes = {name: np.shape(value) for name, value in model.initial_point().items()}
    names = [v.name for v in value_vars]
    expected_names = kernel.names(shapes | {name: np.shape(model[name].eval()) for name in expanded})
    assert expected_names[: len(names)] == names
    trace = expected_names[len(names) :]
    logp = model.logp()
    with model:
        pm.set_data(data)
    py = Mode(linker="py", optimizer="fast_compile")
    function = pytensor.function(value_vars, [logp, *pytensor.grad(logp, value_vars)], mode=py)
    constrained = pytensor.function(
        value_vars, model.replace_rvs_by_values([model[name] for name in trace]), mode=py, on_unused_input="ignore"
    )
    sizes = [int(np.prod(shapes[name])) for name in names]
    # Data as floats; ``np.…`` placeholders (a kernel's constants) as they are.
    args = {name: np.asarray(data[name], dtype=float) if name in data else eval(name) for name in kernel.data_names}
    for _ in range(3):
        x = rng.normal(0.0, 1.0, sum(sizes))
        parts = [part.reshape(shapes[name]) for part, name in zip(np.split(x, np.cumsum(sizes)[:-1]), names)]
        expected, *grads = function(*parts)
        grad = np.empty_like(x)
        np.testing.assert_allclose(kernel.logp(x, grad, *kernel.flags, *args.values()), expected, rtol=1e-9)
        np.testing.assert_allclose(grad, np.concatenate([np.ravel(g) for g in grads]), rtol=1e-8, atol=1e-10)
        # The runtime check's finite differences agree within its tolerance (else it would
        # build PyMC's gradient on every first fit).
        difference = _nutpie_numba._finite_difference_gradient(
            lambda at: kernel.logp(at, np.empty_like(at), *kernel.flags, *args.values()), x
        )
        np.testing.assert_allclose(difference, grad, rtol=1e-6, atol=1e-6 * (1.0 + np.abs(grad).max()))
        values = kernel.expand(x, *kernel.flags, *[args[name] for name in kernel.expand_data_names])
        mine = [np.ravel(eval(part, {"values": values})) for part in kernel.expand_parts(trace)]
        theirs = [np.ravel(value) for value in constrained(*parts)]
        np.testing.assert_allclose(np.concatenate(mine), np.concatenate(theirs), rtol=1e-10)


@pytest.mark.parametrize("K, D, cov, ordered, prior", VARIANTS)
def test_gaussian_kernel_is_the_models_log_density(K, D, cov, ordered, prior):
    rng = np.random.default_rng(K * 10 + D)
    model = build_gaussian_mixture(K, D, cov, ordered, weight_prior=prior)
    scales = "sigma" if cov == "tied" else "sigmas"
    expanded = ["weights", "means", scales] + (["sticks"] if prior == "dirichlet_process" and K > 1 else [])
    _check_against_pymc(model, _kernel_for(D, cov, ordered, prior), _random_data(rng, D), expanded, rng)


@pytest.mark.parametrize(
    "K, D, fit_intercept, prior, family, n",
    [
        (2, 1, True, "dirichlet_distribution", "normal", 9),
        (1, 2, True, "dirichlet_distribution", "normal", 9),
        (3, 2, False, "dirichlet_process", "normal", 600),
        (2, 2, True, "dirichlet_distribution", "poisson", 600),
        (3, 1, True, "dirichlet_process", "negative_binomial", 300),
        (2, 1, False, "dirichlet_distribution", "binomial", 600),
        (2, 2, True, "dirichlet_distribution", "bernoulli", 9),
        (2, 1, True, "dirichlet_distribution", "gamma", 300),
    ],
)
def test_regression_kernel_is_the_models_log_density(K, D, fit_intercept, prior, family, n):
    """Blocks of 256 rows: 600 rows are two full blocks and a partial one; some rows weigh 0."""
    rng = np.random.default_rng(K * 10 + D)
    model = build_regression_mixture(K, D, fit_intercept=fit_intercept, weight_prior=prior, family=family)
    y = rng.integers(0, 2, n) if family == "bernoulli" else rng.integers(1, 6, n)
    data = {
        "X": rng.normal(size=(n, D)),
        "y": y.astype(float) + (rng.uniform(0.0, 1.0, n) if family in ("normal", "gamma") else 0.0),
        "sample_weight": rng.uniform(0.2, 3.0, n) * (rng.uniform(size=n) > 0.1),
        "weight_concentration": rng.uniform(0.3, 3.0),
        "coef_scale": rng.uniform(0.5, 3.0, D),
        "intercept_loc": rng.normal(),
        "intercept_scale": rng.uniform(0.5, 3.0),
    }
    if family == "normal":
        data |= {"scale_prior": rng.uniform(0.3, 2.0), "resolution": rng.uniform(0.0, 0.8)}
    else:
        data |= {"offset": rng.normal(0.0, 0.3, n), "trials": y + rng.integers(0, 3, n) * (family == "binomial")}
    if family in ("negative_binomial", "gamma"):
        data["dispersion_prior"] = rng.uniform(1.0, 10.0)
    kernel = RegressionKernel(process=prior == "dirichlet_process", fit_intercept=fit_intercept, family=family)
    expanded = ([kernel.dispersion] if kernel.dispersion else []) + (["weights"] if K > 1 else [])
    expanded += ["sticks"] if prior == "dirichlet_process" and K > 1 else []
    _check_against_pymc(model, kernel, data, expanded, rng)


@pytest.mark.parametrize(
    "families, prior",
    [
        (["normal", "student_t"], "dirichlet_distribution"),
        (["laplace", "normal", "laplace"], "dirichlet_process"),
        (["student_t"], "dirichlet_distribution"),
        (["student_t", "normal", "student_t", "laplace"], "dirichlet_process"),
    ],
)
def test_marginal_kernel_is_the_models_log_density(families, prior):
    rng = np.random.default_rng(len(families))
    families = [get_family(name) for name in families]
    model = build_marginal_mixture(families, weight_prior=prior)
    n = 9
    data = {
        "X": rng.normal(size=n) * 2.0,
        "sample_weight": rng.uniform(0.2, 3.0, n) * (rng.uniform(size=n) > 0.2),
        "weight_concentration": rng.uniform(0.3, 3.0),
        "resolution": rng.uniform(0.0, 0.8),
        "mean": rng.normal(),
        "sd": rng.uniform(0.5, 2.0),
        "log_mean": rng.normal(),
        "log_sd": rng.uniform(0.5, 2.0),
    }
    kernel = MarginalKernel(families, process=prior == "dirichlet_process")
    _check_against_pymc(model, kernel, data, ["weights"], rng)


def test_the_marginal_kernel_serves_only_the_built_in_families_it_knows():
    normal = get_family("normal")
    assert MarginalKernel.supports([normal, get_family("student_t"), get_family("laplace")])
    assert not MarginalKernel.supports([normal, get_family("lognormal")])
    lookalike = Family(**{field: getattr(normal, field) for field in normal.__dataclass_fields__})
    assert not MarginalKernel.supports([lookalike])
    assert MarginalMixture(["normal", "laplace"])._model_kernel(1, "sort") is not None
    assert MarginalMixture([lookalike, "normal"])._model_kernel(1, "sort") is None


@pytest.mark.parametrize(
    "K, D, tied, prior, eta, rounded",
    [(2, 2, False, "dirichlet_distribution", 2.0, False), (3, 3, False, "dirichlet_process", 1.0, False),
     (2, 4, True, "dirichlet_distribution", 3.5, False), (1, 2, False, "dirichlet_distribution", 1.0, False),
     (3, 2, False, "dirichlet_distribution", 2.0, True), (2, 3, True, "dirichlet_process", 1.0, True)],
)
def test_full_covariance_kernel_is_the_models_log_density(K, D, tied, prior, eta, rounded):
    rng = np.random.default_rng(K * 10 + D)
    model = build_gaussian_mixture(K, D, "tied" if tied else "full", False, lkj_eta=eta, weight_prior=prior, rounded=rounded)
    kernel = FullCovarianceKernel(process=prior == "dirichlet_process", tied=tied, eta=eta, rounded=rounded)
    data = _random_data(rng, D)
    chols = ["chol"] if tied else [f"chol_{k}" for k in range(K)]
    expanded = ["weights", "covariance" if tied else "covariances"]
    expanded += ["sticks"] if prior == "dirichlet_process" and K > 1 else []
    values_at = {name: kernel.expand_index(name) for name in [*expanded, *chols]}
    assert values_at["weights"] == "[0]"
    _check_against_pymc(model, kernel, data, expanded + chols, rng)


def test_lkj_normalizing_constant_is_exact():
    """Against Lewandowski, Kurowicka and Joe (2009, eq. 16), an independent closed form.

    PyMC's own ``_lkj_normalizing_constant`` is off by up to 8e-7 at 8 features, which the
    agreement check of ``compile_pymc_model`` has to tolerate (see the next test).
    """
    from scipy.special import betaln

    from bayesmix.models.kernels import _lkj_normalizing_constant

    for eta in (1.0, 2.0, 3.5):
        for n in (2, 3, 5, 8):
            log_integral = sum(
                (2 * eta - 2 + n - k) * (n - k) * np.log(2.0) + (n - k) * betaln(eta + (n - k - 1) / 2, eta + (n - k - 1) / 2)
                for k in range(1, n)
            )
            assert _lkj_normalizing_constant(eta, n) == pytest.approx(log_integral, rel=1e-13, abs=1e-13)


def test_many_features_full_covariance_runs_on_its_kernel(caplog):
    # With 5 features PyMC's log-density differed from the kernel's by 1.6e-9 relative
    # (its LKJ constant), and the check's first tolerance sent the model to the graph.
    X = np.random.default_rng(8).normal(size=(120, 6))
    _sampling.clear_cache()
    with caplog.at_level(logging.DEBUG, logger="bayesmix._nutpie_numba"):
        BayesianGaussianMixture(2, covariance_type="full", backend="numba", draws=20, tune=20, chains=1).fit(X)
    assert "callbacks around the model kernel FullCovarianceKernel" in caplog.text
    assert "disagrees" not in caplog.text


def test_a_kernel_of_another_model_is_refused_and_named_in_a_warning(caplog):
    # A diagonal model checked against the spherical kernel: same variable names, other
    # sizes, so the comparison with PyMC's log-density must catch it.
    model = build_gaussian_mixture(2, 3, "diag", False)
    functions = _model_functions(model, {}, None)
    shape_info = functions[-1]
    wrong = GaussianKernel(spherical=True)
    with caplog.at_level(logging.WARNING, logger="bayesmix._nutpie_numba"):
        assert _kernel_model(model, wrong, functions) is None
    assert "disagrees with PyMC" in caplog.text
    right = GaussianKernel()
    assert _agrees_with_pymc(model, _kernel_model(model, right, functions), right, shape_info)
    # Variables the kernel does not know: no kernel model at all.
    assert _kernel_model(model, GaussianKernel(ordered=True), functions) is None
    assert _kernel_model(model, RegressionKernel(), functions) is None


def test_the_numba_backend_samples_through_the_kernel_and_agrees_with_jax(caplog):
    rng = np.random.default_rng(3)
    X = np.r_[rng.normal(-2.0, 0.5, 150), rng.normal(2.0, 0.8, 250)][:, None]
    settings = {"n_components": 2, "draws": 300, "tune": 300, "chains": 2, "random_state": 1}
    _sampling.clear_cache()  # compile here, whatever other tests compiled before
    with caplog.at_level(logging.DEBUG, logger="bayesmix._nutpie_numba"):
        numba_fit = BayesianGaussianMixture(backend="numba", **settings).fit(X)
    assert "callbacks around the model kernel" in caplog.text
    jax_fit = BayesianGaussianMixture(backend="jax", **settings).fit(X)
    np.testing.assert_allclose(numba_fit.means_[:, 0], [-2.0, 2.0], atol=0.2)
    np.testing.assert_allclose(numba_fit.means_, jax_fit.means_, atol=0.1)
    np.testing.assert_allclose(numba_fit.weights_, jax_fit.weights_, atol=0.05)
    np.testing.assert_allclose(numba_fit.covariances_.ravel(), jax_fit.covariances_.ravel(), rtol=0.15)


def test_a_marginal_mixture_samples_through_its_kernel_and_agrees_with_jax(caplog):
    rng = np.random.default_rng(4)
    X = np.r_[rng.normal(-3.0, 0.7, 200), 2.0 + 1.5 * rng.standard_t(3.0, 300)][:, None]
    settings = {"draws": 300, "tune": 300, "chains": 2, "random_state": 1}
    families = ["normal", "student_t"]  # starts at increasing quantiles, in this order
    _sampling.clear_cache()
    with caplog.at_level(logging.DEBUG, logger="bayesmix._nutpie_numba"):
        numba_fit = MarginalMixture(families, backend="numba", **settings).fit(X)
    assert "callbacks around the model kernel MarginalKernel" in caplog.text
    jax_fit = MarginalMixture(families, backend="jax", **settings).fit(X)
    for fit in (numba_fit, jax_fit):
        posterior = fit.idata_.posterior
        np.testing.assert_allclose(posterior["normal_mu"].mean(), -3.0, atol=0.2)
        np.testing.assert_allclose(posterior["student_t_mu"].mean(), 2.0, atol=0.3)
    np.testing.assert_allclose(numba_fit.weights_, jax_fit.weights_, atol=0.05)
    for name in ("normal_sigma", "student_t_sigma", "student_t_nu"):
        ours, theirs = (fit.idata_.posterior[name].median().item() for fit in (numba_fit, jax_fit))
        np.testing.assert_allclose(ours, theirs, rtol=0.25, err_msg=name)


def test_the_regression_samples_through_its_kernel(caplog):
    rng = np.random.default_rng(4)
    x = rng.uniform(-2.0, 2.0, 300)
    first = rng.random(300) < 0.4
    y = np.where(first, 1.0 + 2.0 * x, -1.0 - x) + rng.normal(0.0, 0.3, 300)
    _sampling.clear_cache()  # compile here, whatever other tests compiled before
    with caplog.at_level(logging.DEBUG, logger="bayesmix._nutpie_numba"):
        fit = BayesianMixtureRegression(2, backend="numba", draws=300, tune=300, chains=2, random_state=0).fit(x[:, None], y)
    assert "callbacks around the model kernel RegressionKernel" in caplog.text
    order = np.argsort(fit.coef_[:, 0])
    np.testing.assert_allclose(fit.coef_[order, 0], [-1.0, 2.0], atol=0.15)
    np.testing.assert_allclose(fit.intercept_[order], [-1.0, 1.0], atol=0.15)
    np.testing.assert_allclose(fit.weights_[order], [0.6, 0.4], atol=0.08)


def test_a_poisson_regression_samples_through_its_kernel(caplog):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(400, 1))
    first = rng.random(400) < 0.4
    y = rng.poisson(np.exp(np.where(first, 0.5 + 0.8 * X[:, 0], 2.0 - 0.5 * X[:, 0]))).astype(float)
    _sampling.clear_cache()  # compile here, whatever other tests compiled before
    with caplog.at_level(logging.DEBUG, logger="bayesmix._nutpie_numba"):
        fit = BayesianMixtureRegression(
            2, family="poisson", backend="numba", draws=300, tune=300, chains=2, random_state=0
        ).fit(X, y)
    assert "callbacks around the model kernel RegressionKernel" in caplog.text
    order = np.argsort(fit.intercept_)
    np.testing.assert_allclose(fit.intercept_[order], [0.5, 2.0], atol=0.25)
    np.testing.assert_allclose(fit.coef_[order, 0], [0.8, -0.5], atol=0.25)


def test_negligible_rounding_is_left_out_of_full_covariances(caplog):
    # Recorded to three decimals, every CSV is "rounded"; below a thousandth of a
    # feature's scale the rounding is left out (sparing a Cholesky factorization per
    # component and gradient). Both run on the kernel.
    from conftest import FAST

    X = np.random.default_rng(6).normal(size=(60, 2)) * [5.0, 50.0]
    fine = BayesianGaussianMixture(2, covariance_type="full", **FAST).fit(np.round(X, 3))
    assert fine.resolution_[0] == pytest.approx(0.001)  # detected, and negligible
    assert not fine._rounded_covariance(2)
    _sampling.clear_cache()
    with caplog.at_level(logging.DEBUG, logger="bayesmix._nutpie_numba"):
        coarse = BayesianGaussianMixture(2, covariance_type="full", **(FAST | {"backend": "numba"})).fit(np.round(X))
    assert coarse._rounded_covariance(2)
    assert "callbacks around the model kernel FullCovarianceKernel" in caplog.text
    assert "disagrees" not in caplog.text


@pytest.mark.parametrize("family", ["normal", "poisson", "negative_binomial", "binomial", "gamma"])
def test_regression_post_fit_kernels_match_numpy(family):
    """The per-draw log-joint and row log-likelihood (several blocks) against SciPy's densities."""
    from scipy.special import logsumexp

    from bayesmix import _glm
    from bayesmix.models.kernels import (
        _FAMILY_CODES,
        for_family,
        regression_log_joint,
        regression_row_log_likelihood,
    )

    rng = np.random.default_rng(7)
    S, N, K, D = 3, 700, 3, 2
    X = rng.normal(size=(N, D))
    trials = rng.integers(1, 8, N).astype(float) if family == "binomial" else np.ones(N)
    y = {"normal": rng.normal(size=N), "gamma": rng.gamma(2.0, 1.0, N),
         "binomial": np.floor(trials * rng.uniform(size=N))}.get(family, rng.poisson(3.0, N).astype(float))
    offset = rng.normal(0.0, 0.2, N) if family != "normal" else np.zeros(N)
    log_w = np.log(rng.dirichlet(np.ones(K), size=S))
    intercept, coef = rng.normal(size=(S, K)), rng.normal(0.0, 0.5, size=(S, K, D))
    dispersion = rng.uniform(0.5, 3.0, size=(S, K))
    eta = np.einsum("nd,skd->snk", X, coef) + intercept[:, None, :]
    if family == "normal":
        expected = stats.norm.logpdf(y[None, :, None], eta, dispersion[:, None, :])
    else:
        expected = _glm.logpdf(family, y[None, :, None], eta + offset[None, :, None], trials[None, :, None],
                               dispersion[:, None, :])
    expected = expected + log_w[:, None, :]
    args = (_FAMILY_CODES[family], X, y, offset, trials, log_w, intercept, coef, dispersion)
    joint, rows = np.empty((S, N, K)), np.empty((S, N))
    # As the estimator calls them: compiled for the family.
    for_family(regression_log_joint, *args, joint)
    for_family(regression_row_log_likelihood, *args, rows)
    np.testing.assert_allclose(joint, expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(rows, logsumexp(expected, axis=2), rtol=1e-9, atol=1e-9)


def test_regression_log_joint_keeps_far_normal_rows_finite():
    """Rows at 1e200 standard deviations: NumPy's finite tails, not -inf (which gives NaN probabilities)."""
    from bayesmix._base import normal_logpdf
    from bayesmix.models.kernels import _FAMILY_CODES, for_family, regression_log_joint

    S, N, K = 2, 5, 2
    X = np.array([[0.0], [1.0], [2.0], [-1.0], [0.5]])
    y = np.array([0.1, 1e200, -3e152, 9e149, 2.0])  # past, past, past and short of 1e150 sd
    log_w = np.log(np.full((S, K), 0.5))
    intercept, coef = np.array([[0.0, 1.0], [0.5, -1.0]]), np.array([[[1.0], [2.0]], [[1.5], [0.5]]])
    dispersion = np.array([[1.0, 2.0], [0.5, 1.0]])
    joint = np.empty((S, N, K))
    for_family(regression_log_joint, _FAMILY_CODES["normal"], X, y, np.zeros(N), np.ones(N), log_w, intercept, coef,
               dispersion, joint)
    lines = np.einsum("nd,skd->snk", X, coef) + intercept[:, None, :]
    expected = log_w[:, None, :] + normal_logpdf(y[None, :, None], lines, dispersion[:, None, :], finite_tails=True)
    assert np.all(np.isfinite(joint))
    np.testing.assert_allclose(joint, expected, rtol=1e-12)


def test_a_passed_kernel_check_is_recorded_and_a_failed_one_is_not(tmp_path, monkeypatch):
    # A fresh compile folder, so that no record from an earlier run counts.
    monkeypatch.setattr(_nutpie_numba, "_check_records", lambda: tmp_path / "records")
    model = build_gaussian_mixture(2, 3, "diag", False)
    calls = []

    def check(outcome):
        def run(*args):
            calls.append(outcome)
            return outcome

        return run

    kernel = GaussianKernel()
    assert not _nutpie_numba._checked_once(check(False), model, None, kernel, None)
    assert not list(tmp_path.rglob("*"))
    assert not _nutpie_numba._checked_once(check(False), model, None, kernel, None)
    assert _nutpie_numba._checked_once(check(True), model, None, kernel, None)
    assert _nutpie_numba._checked_once(check(False), model, None, kernel, None)  # not run again
    assert calls == [False, False, True]
    # Another model or another kernel is checked on its own.
    assert not _nutpie_numba._checked_once(check(False), build_gaussian_mixture(3, 3, "diag", False), None, kernel, None)
    assert not _nutpie_numba._checked_once(check(False), model, None, GaussianKernel(spherical=True), None)
    assert calls == [False, False, True, False, False]


def test_the_check_records_key_tells_apart_every_model_pymc_tells_apart():
    # The record's key describes the model by its variables (printed in 3 ms) rather than
    # its log-density graph (0.35 s): it must still change whenever that graph changes.
    import io

    def logp_text(model):
        text = io.StringIO()
        pytensor.dprint(model.logp(), file=text, print_type=True)
        return text.getvalue()

    builders = [
        lambda: build_gaussian_mixture(2, 1, "diag", False),
        lambda: build_gaussian_mixture(2, 1, "diag", True),
        lambda: build_gaussian_mixture(3, 1, "diag", False),
        lambda: build_gaussian_mixture(2, 1, "diag", False, weight_prior="dirichlet_process"),
        lambda: build_gaussian_mixture(2, 2, "diag", False),
        lambda: build_gaussian_mixture(2, 2, "spherical", False),
        lambda: build_gaussian_mixture(2, 2, "full", False),
        lambda: build_gaussian_mixture(2, 2, "full", False, lkj_eta=3.0),
        lambda: build_gaussian_mixture(2, 2, "full", False, rounded=True),
        lambda: build_gaussian_mixture(2, 2, "tied", False),
        lambda: build_regression_mixture(2, 1),
        lambda: build_regression_mixture(2, 1, fit_intercept=False),
        lambda: build_regression_mixture(2, 1, family="poisson"),
        lambda: build_regression_mixture(2, 1, family="negative_binomial"),
        lambda: build_marginal_mixture([get_family("normal"), get_family("student_t")]),
        lambda: build_marginal_mixture([get_family("normal"), get_family("laplace")]),
    ]
    keys, graphs = [], []
    for build in builders:
        model = build()
        keys.append(_nutpie_numba._model_text(model))
        graphs.append(logp_text(model))
        assert _nutpie_numba._model_text(build()) == keys[-1]  # new random generators, same key
    assert len(set(graphs)) >= len(builders) - 1  # a test that can tell them apart
    for i in range(len(builders)):
        for j in range(i):
            assert keys[i] != keys[j] or graphs[i] == graphs[j], (i, j)


def test_a_kernel_whose_gradient_is_not_its_log_densitys_is_refused(tmp_path, monkeypatch, caplog):
    # Right log-density, gradient off by 0.1% in one coordinate: the finite differences
    # disagree, and so does PyMC's symbolic gradient, which decides.
    import numba

    monkeypatch.setattr(_nutpie_numba, "_check_records", lambda: tmp_path / "records")
    right = GaussianKernel()
    right_logp = right.logp

    @numba.njit
    def skewed_logp(x, grad, *args):
        value = right_logp(x, grad, *args)
        grad[0] *= 1.001
        return value

    class SkewedKernel(GaussianKernel):
        def __init__(self):
            super().__init__()
            self.logp = skewed_logp

    model = build_gaussian_mixture(2, 1, "diag", False)
    functions = _model_functions(model, {}, None)
    with caplog.at_level(logging.WARNING, logger="bayesmix._nutpie_numba"):
        assert _kernel_model(model, SkewedKernel(), functions) is None
    assert "disagrees with PyMC" in caplog.text
    assert _agrees_with_pymc(model, _kernel_model(model, right, functions), right, functions[-1])
