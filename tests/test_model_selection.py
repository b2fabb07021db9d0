"""SelectK, select_k, posterior_n_components and plot_comparison."""

import sys

import numpy as np
import pandas as pd
import pytest
from conftest import FAST, FAST_JAX
from sklearn.base import clone
from sklearn.model_selection import KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import bayesmix
from bayesmix import BayesianGaussianMixture, SelectK, select_k
from bayesmix import model_selection as ms

# Enough draws for the selection to be right, small enough for the whole file to run in
# a few minutes on two cores.
ACCURATE = {"draws": 100, "tune": 150, "chains": 2, "backend": "numba", "random_state": 0}
# Enough draws for PSIS-LOO's Pareto k to be small on easy data.
MEDIUM = {**ACCURATE, "tune": 100}


def separated(n_clusters, n_per=100, seed=0):
    """1-D data: clusters at 0, 8, 16, ... with sd 1, rows shuffled."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(8.0 * m, 1.0, n_per) for m in range(n_clusters)])
    rng.shuffle(X)
    return X[:, None]


@pytest.fixture(scope="module")
def small_fit():
    """A cheap fitted SelectK shared by the API tests."""
    X = separated(2, n_per=60)
    return SelectK(BayesianGaussianMixture(**MEDIUM), k_range=(1, 2), method="loo").fit(X), X


# ------------------------------------------------------------- selection accuracy


@pytest.mark.parametrize("n_clusters", [1, 2, 3])
def test_picks_true_k(n_clusters):
    X = separated(n_clusters, n_per=80)
    est = BayesianGaussianMixture(**ACCURATE)
    loo = SelectK(est, k_range=range(1, 5), method="loo").fit(X)
    assert loo.method_ == "loo"
    assert loo.best_k_ == n_clusters, loo.comparison_
    kfold = SelectK(est, k_range=range(1, 5), method="kfold", cv=3, refit=False).fit(X)
    assert kfold.method_ == "kfold"
    assert kfold.best_k_ == n_clusters, kfold.comparison_
    for table in (loo.comparison_, kfold.comparison_):
        assert list(table.index) == sorted(table.index, key=lambda k: -table.loc[k, "elpd"])
        assert table["rank"].tolist() == list(range(4))
        assert np.isclose(table["weight"].sum(), 1.0)
        assert table["elpd_diff"].iloc[0] == 0.0
    assert {"rank", "elpd", "p", "elpd_diff", "weight", "se", "dse", "warning", "waic"} <= set(
        loo.comparison_.columns
    )
    assert set(loo.estimators_) == {1, 2, 3, 4}
    assert loo.best_estimator_ is loo.estimators_[n_clusters]
    assert kfold.estimators_ == {} and not hasattr(kfold, "best_estimator_")
    with pytest.raises(AttributeError, match="refit"):
        kfold.predict(X)


def test_auto_uses_loo_when_pareto_k_is_fine(small_fit):
    sel, X = small_fit
    auto = SelectK(BayesianGaussianMixture(**MEDIUM), k_range=(1, 2), selection="best").fit(X)
    assert auto.method_ == "loo"
    assert auto.best_k_ == auto.comparison_.index[0]
    assert "Pareto k" in auto.method_reason_
    pd.testing.assert_frame_equal(auto.comparison_, sel.comparison_)


def test_auto_falls_back_to_kfold_and_loo_warns(monkeypatch):
    # Every fit counts as unreliable when the threshold is below any Pareto k.
    monkeypatch.setattr(ms, "PARETO_K_THRESHOLD", -np.inf)
    X = separated(2, n_per=40)
    est = BayesianGaussianMixture(**FAST)
    auto = SelectK(est, k_range=(1, 2), cv=KFold(2, shuffle=True, random_state=0)).fit(X)
    assert auto.method_ == "kfold"
    assert "K=1" in auto.method_reason_ and "K=2" in auto.method_reason_
    assert {"p", "waic", "pareto_k_max"} <= set(auto.comparison_.columns)
    assert auto.pointwise_.shape == (80, 2)
    with pytest.warns(UserWarning, match=r"K=1.*K=2.*method='kfold'"):
        SelectK(est, k_range=(1, 2), method="loo").fit(X)


def test_auto_refits_the_few_rows_psis_cannot_handle(monkeypatch):
    # Mark two rows of the K=2 fit as beyond PSIS (Pareto k 5): each must be left out
    # of an exact refit, its elpd term becoming the refit's log predictive density.
    bad_rows = [3, 17]
    loo_waic = SelectK._loo_waic

    def with_bad_rows(full_fits):
        loo, waic = loo_waic(full_fits)
        for elpd in loo.values():
            elpd.pareto_k[:] = 0.1
        loo[2].pareto_k[bad_rows] = 5.0
        return loo, waic

    monkeypatch.setattr(SelectK, "_loo_waic", staticmethod(with_bad_rows))
    X = separated(2, n_per=30)
    est = BayesianGaussianMixture(**FAST)
    auto = SelectK(est, k_range=(1, 2), cv=3).fit(X)
    assert auto.method_ == "loo"
    assert "K=2 (2 rows, max 5.00)" in auto.method_reason_ and "2 fits against 6" in auto.method_reason_
    assert auto.pareto_k_[2] == 5.0 and not auto.comparison_["warning"].any()
    for row in bad_rows:
        alone = clone(est).set_params(n_components=2).fit(np.delete(X, row, axis=0))
        assert auto.pointwise_.loc[row, 2] == pytest.approx(alone.score_samples(X[[row]])[0])
    assert auto.comparison_.loc[2, "elpd"] == pytest.approx(auto.pointwise_[2].sum())
    # More such rows than K-fold has fits: K-fold instead.
    bad_rows = list(range(7))
    assert SelectK(est, k_range=(1, 2), cv=3).fit(X).method_ == "kfold"


# -------------------------------------------------------------- compilation


def test_compiles_once_per_k():
    # Start from an empty cache so that structures other tests compiled do not count.
    from bayesmix import _sampling

    _sampling.clear_cache()
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(0, 1, (40, 2)), rng.normal(6, 1, (40, 2))])
    est = BayesianGaussianMixture(covariance_type="diag", **FAST)
    before = bayesmix.compile_count()
    SelectK(est, k_range=(1, 2), method="kfold", cv=2, refit=True).fit(X)
    assert bayesmix.compile_count() - before == 2
    before = bayesmix.compile_count()
    SelectK(est, k_range=(2, 1), method="auto").fit(X[:60])
    assert bayesmix.compile_count() == before


# ---------------------------------------------------------------- parallelism


def _parallel_case():
    X = separated(2, n_per=40, seed=3)
    sel = SelectK(
        BayesianGaussianMixture(**FAST),
        k_range=(1, 2),
        method="kfold",
        cv=KFold(2, shuffle=True, random_state=0),
    )
    return sel, X


@pytest.fixture(scope="module")
def serial_table():
    sel, X = _parallel_case()
    return sel.set_params(n_jobs=1).fit(X).comparison_


def test_n_jobs_gives_same_table(serial_table):
    sel, X = _parallel_case()
    parallel = sel.set_params(n_jobs=2).fit(X)
    pd.testing.assert_frame_equal(parallel.comparison_, serial_table, rtol=1e-10)


def test_dask_backend_gives_same_table(serial_table):
    pytest.importorskip("dask")
    distributed = pytest.importorskip("dask.distributed")
    import joblib

    sel, X = _parallel_case()
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster):
        with joblib.parallel_config(backend="dask"):
            fitted = sel.set_params(n_jobs=-1).fit(X)
    pd.testing.assert_frame_equal(fitted.comparison_, serial_table, rtol=1e-10)


class FailsAtThree(BayesianGaussianMixture):
    """Raises in ``fit`` for three components."""

    def fit(self, X, y=None, sample_weight=None):
        if self.n_components == 3:
            raise FloatingPointError("boom")
        return super().fit(X, y, sample_weight=sample_weight)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_worker_error_names_k(n_jobs):
    # Workers must unpickle the test-module class: ship it by value.
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        sel = SelectK(FailsAtThree(**FAST), k_range=(1, 3), method="loo", n_jobs=n_jobs)
        with pytest.raises(RuntimeError, match=r"K=3 .*failed: FloatingPointError: boom"):
            sel.fit(separated(2, n_per=30))
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_kfold_error_names_k_and_fold():
    X = separated(1, n_per=6)
    sel = SelectK(BayesianGaussianMixture(**FAST), k_range=(1, 5), method="kfold", cv=2)
    with pytest.raises(RuntimeError, match=r"K=5 .*n_samples=3 should be >= n_components=5"):
        sel.fit(X)


# ------------------------------------------------------- scikit-learn plumbing


def test_params_and_clone():
    sel = SelectK(BayesianGaussianMixture(draws=10), k_range=(1, 2))
    params = sel.get_params(deep=True)
    assert params["estimator__draws"] == 10
    assert params["method"] == "auto" and params["param_name"] == "n_components"
    sel.set_params(estimator__draws=20, cv=3)
    assert sel.estimator.draws == 20
    assert clone(sel).get_params()["estimator__draws"] == 20


def test_bad_arguments():
    X = separated(1, n_per=20)
    with pytest.raises(ValueError, match="no parameter 'components'"):
        SelectK(BayesianGaussianMixture(**FAST), (1,), param_name="components").fit(X)
    with pytest.raises(ValueError, match="positive integers"):
        SelectK(BayesianGaussianMixture(**FAST), (0, 1)).fit(X)


def test_delegation(small_fit):
    sel, X = small_fit
    best = sel.best_estimator_
    assert sel.n_features_in_ == 1
    np.testing.assert_array_equal(sel.predict(X), best.predict(X))
    np.testing.assert_allclose(sel.predict_proba(X), best.predict_proba(X))
    np.testing.assert_allclose(sel.score_samples(X), best.score_samples(X))
    assert sel.score(X) == best.score(X)
    rows, labels = sel.sample(5)
    assert rows.shape == (5, 1) and labels.shape == (5,)
    assert sel.pointwise_.shape == (X.shape[0], 2)


@pytest.mark.filterwarnings("ignore:PSIS-LOO may be unreliable")
def test_pipeline_and_cross_val_score():
    X = separated(2, n_per=40, seed=5)
    pipe = make_pipeline(
        StandardScaler(), SelectK(BayesianGaussianMixture(**FAST), k_range=(1, 2), method="loo")
    )
    pipe.fit(X)
    assert pipe[-1].best_k_ in (1, 2)
    assert np.isfinite(pipe.score(X))
    scores = cross_val_score(pipe, X, cv=KFold(2, shuffle=True, random_state=0))
    assert scores.shape == (2,) and np.all(np.isfinite(scores))


@pytest.mark.filterwarnings("ignore:PSIS-LOO may be unreliable")
def test_select_k_function():
    X = separated(1, n_per=30)
    sel = select_k(BayesianGaussianMixture(**FAST), X, k_range=(1,), method="loo")
    assert isinstance(sel, SelectK) and sel.best_k_ == 1


def test_stacking_weights():
    rng = np.random.default_rng(0)
    lpd = rng.normal(size=(50, 3))
    lpd[:, 2] -= 5.0
    w = ms.stacking_weights(lpd)
    assert w.shape == (3,) and np.isclose(w.sum(), 1) and np.all(w >= 0)
    assert w[2] < 1e-3
    # Optimal: no other point of the simplex does better.
    def objective(weights):
        return np.sum(np.log(np.exp(lpd) @ weights))

    for trial in rng.dirichlet(np.ones(3), size=50):
        assert objective(w) >= objective(trial) - 1e-6


def test_plot_comparison(small_fit):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from bayesmix.plotting import plot_comparison

    sel, _ = small_fit
    ax = plot_comparison(sel)
    assert ax.get_xlabel() == "number of components K"
    assert f"selected K={sel.best_k_}" in [t.get_text() for t in ax.get_legend().get_texts()]
    import matplotlib.pyplot as plt

    plt.close(ax.figure)


# ------------------------------------------------ sparse overfitted mixture


def test_posterior_n_components():
    X = separated(3)
    est = BayesianGaussianMixture(draws=150, tune=150, chains=2, backend="numba", random_state=0)
    probs, fitted = bayesmix.posterior_n_components(est, X, k_max=6, concentration=0.01, method="nuts")
    assert list(probs.index) == list(range(1, 7))
    assert np.isclose(probs.sum(), 1.0)
    assert probs.idxmax() == 3, probs
    assert fitted.n_components == 6 and fitted.relabel is None
    assert fitted.weight_concentration_prior == 0.01
    assert probs.attrs["method"] == "nuts" and 0 <= probs.attrs["divergent_share"] <= 1
    assert probs.attrs["chain_probabilities"].shape == (2, 6)


# ------------------------------------------------------------- real data sets


@pytest.mark.slow
def test_faithful():
    X = bayesmix.datasets.load_faithful()
    est = BayesianGaussianMixture(**ACCURATE)
    sel = SelectK(est, k_range=range(1, 5)).fit(X)
    assert sel.best_k_ in (2, 3), sel.comparison_


@pytest.mark.slow
def test_acidity():
    X = bayesmix.datasets.load_acidity()
    est = BayesianGaussianMixture(**ACCURATE)
    sel = SelectK(est, k_range=range(1, 5), cv=KFold(5, shuffle=True, random_state=0)).fit(X)
    assert sel.best_k_ in (2, 3), sel.comparison_


# ------------------------------------------------------- the other estimators


def test_selectk_works_for_regression_and_marginal_mixtures():
    from bayesmix import BayesianMixtureRegression, MarginalMixture

    rng = np.random.default_rng(0)
    X = rng.uniform(0, 10, (200, 1))
    line = np.where(rng.random(200) < 0.5, 1 + 2 * X[:, 0], 20 - X[:, 0])
    y = line + rng.normal(0, 0.5, 200)
    reg = SelectK(BayesianMixtureRegression(**FAST), k_range=[1, 2], method="kfold", cv=2).fit(X, y)
    assert reg.best_k_ == 2
    assert np.isfinite(reg.score(X, y))

    x = np.concatenate([rng.normal(-4, 1, 100), rng.normal(4, 1, 100)])[:, None]
    marg = SelectK(MarginalMixture(["student_t"], **FAST_JAX), k_range=[1, 2], method="kfold", cv=2).fit(x)
    assert marg.best_k_ == 2
    assert marg.best_estimator_.components == ["student_t", "student_t"]
