"""MarginalMixture on several columns: latent class / profile analysis, mixed types, NaN."""

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import FAST_JAX as FAST

from bayesmix import MarginalMixture

SETTINGS = {**FAST, "draws": 100, "tune": 100}
MIXED = {"a": "normal", "b": "bernoulli", "c": "categorical", "d": "poisson"}


def _mixed_data(n=300, seed=0, missing=0.1):
    rng = np.random.default_rng(seed)
    z = rng.uniform(size=n) < 0.4
    X = np.column_stack(
        [
            np.where(z, rng.normal(-2, 1, n), rng.normal(2, 1, n)),
            np.where(z, rng.uniform(size=n) < 0.8, rng.uniform(size=n) < 0.2).astype(float),
            np.where(z, rng.choice([1, 2, 3], n, p=[0.7, 0.2, 0.1]), rng.choice([1, 2, 3], n, p=[0.1, 0.2, 0.7])),
            np.where(z, rng.poisson(1, n), rng.poisson(6, n)),
        ]
    ).astype(float)
    X[rng.uniform(size=X.shape) < missing] = np.nan
    return pd.DataFrame(X, columns=list("abcd")), z


@pytest.fixture(scope="module")
def mixed_fit():
    X, z = _mixed_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MarginalMixture([MIXED] * 2, **SETTINGS).fit(X)
    return est, X, z


def test_mixed_types_with_missing_values(mixed_fit):
    est, X, z = mixed_fit
    post = est.idata_.posterior
    assert {"weights", "normal_mu", "normal_sigma", "bernoulli_p", "c_p", "poisson_rate"} == set(post.data_vars)
    assert post["c_p"].dims[2:] == ("component", "c_category")
    assert post["c_category"].values.tolist() == [1.0, 2.0, 3.0]
    np.testing.assert_allclose(post["c_p"].sum("c_category"), 1.0)
    labels = est.predict(X)
    agreement = np.mean(labels == z)
    assert max(agreement, 1 - agreement) > 0.9
    low = int(np.argmin(est.locations_[:, 0]))  # the component with mean -2
    np.testing.assert_allclose(est.locations_[low, [0, 1, 3]], [-2, 0.8, 1.0], atol=0.3)
    assert np.all(np.isfinite(est.score_samples(X)))
    Xs, comp = est.sample(50)
    assert Xs.shape == (50, 4) and set(np.unique(Xs[:, 2])) <= {1.0, 2.0, 3.0}
    assert set(np.unique(Xs[:, 1])) <= {0.0, 1.0} and np.all(Xs[:, 3] == np.round(Xs[:, 3]))


def test_missing_value_contributes_nothing(mixed_fit):
    """A row's density with a missing column is its density over the columns it has."""
    est, X, _ = mixed_fit
    row = pd.DataFrame([[0.5, 1.0, 2.0, np.nan]], columns=list("abcd"))
    params = est._posterior_params()
    with_nan = est._log_joint(row.to_numpy(), None, params)
    complete = row.fillna(3.0).to_numpy()
    full = est._log_joint(complete, None, params)
    from scipy import stats

    rate = params["poisson_rate"][:, :, 0]
    np.testing.assert_allclose(full - with_nan[:, 0:1, :].reshape(full.shape), stats.poisson.logpmf(3, rate)[:, None, :])


def test_unknown_category_and_bad_layouts(mixed_fit):
    est, X, _ = mixed_fit
    with pytest.raises(ValueError, match="not seen in fit"):
        est.predict(pd.DataFrame([[0.0, 1.0, 7.0, 1.0]], columns=list("abcd")))
    with pytest.raises(ValueError, match="other than 0 and 1"):
        est.predict(pd.DataFrame([[0.0, 2.0, 1.0, 1.0]], columns=list("abcd")))
    with pytest.raises(ValueError, match="infinity"):
        est.predict(pd.DataFrame([[np.inf, 1.0, 1.0, 1.0]], columns=list("abcd")))
    with pytest.raises(ValueError, match="name every column"):
        MarginalMixture([{"a": "normal"}] * 2, **FAST).fit(X)
    with pytest.raises(ValueError, match="one family per column"):
        MarginalMixture([["normal", "normal"]] * 2, **FAST).fit(X)
    with pytest.raises(ValueError, match="column names"):
        MarginalMixture([MIXED] * 2, **FAST).fit(X.to_numpy())
    with pytest.raises(ValueError, match="NaN"):
        MarginalMixture(["normal"] * 2, **FAST).fit(X[["a"]])


def test_latent_class_analysis_recovers_classes():
    """All-categorical columns (latent class analysis), relabeled as one layout."""
    rng = np.random.default_rng(3)
    n, D = 400, 5
    z = rng.uniform(size=n) < 0.3
    p = np.where(z[:, None], 0.85, 0.15)
    X = (rng.uniform(size=(n, D)) < p).astype(float) + 1  # categories 1 / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MarginalMixture(["categorical"] * 2, **SETTINGS).fit(X)
    small = int(np.argmin(est.weights_))
    assert abs(est.weights_[small] - 0.3) < 0.08
    second = np.array([est.component_params_[small][f"x{j}_p"][1] for j in range(D)])
    np.testing.assert_allclose(second, 0.85, atol=0.1)


def test_one_column_categorical_and_bernoulli():
    rng = np.random.default_rng(4)
    z = rng.uniform(size=300) < 0.5
    x = np.where(z, rng.choice([0, 5, 9], 300, p=[0.8, 0.1, 0.1]), rng.choice([0, 5, 9], 300, p=[0.1, 0.1, 0.8]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MarginalMixture(["categorical"] * 2, relabel="sort", **SETTINGS).fit(x[:, None].astype(float))
    p = est.idata_.posterior["categorical_p"]
    assert p.dims[2:] == ("categorical_component", "category") and p["category"].values.tolist() == [0, 5, 9]
    # "sort" orders the components by the first category's probability in every draw.
    assert np.all(np.diff(p.values[..., 0], axis=-1) >= 0)
    Xs, _ = est.sample(20)
    assert set(np.unique(Xs)) <= {0.0, 5.0, 9.0}
    with pytest.raises(ValueError, match="not seen in fit"):
        est.predict(np.array([[3.0]]))
    with pytest.raises(ValueError, match="other than 0 and 1"):
        MarginalMixture(["bernoulli"] * 2, **FAST).fit(x[:, None].astype(float))


def test_listed_categories_include_ones_the_data_lack():
    """``categories`` as in OneHotEncoder: a listed category absent from the data keeps a
    probability (small, from the Dirichlet prior alone) and may be predicted on."""
    rng = np.random.default_rng(5)
    z = rng.uniform(size=200) < 0.5
    X = np.column_stack([np.where(z, rng.choice([1, 2], 200, p=[0.9, 0.1]), rng.choice([1, 2], 200, p=[0.1, 0.9])),
                         (rng.uniform(size=200) < np.where(z, 0.8, 0.2)).astype(float)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MarginalMixture([["categorical", "bernoulli"]] * 2, categories=[[1, 2, 3], None],
                              **SETTINGS).fit(X)
    assert est.categories_[0].tolist() == [1.0, 2.0, 3.0] and est.categories_[1] is None
    p3 = est.idata_.posterior["x0_p"].sel(x0_category=3.0).mean(("chain", "draw")).values
    # Dirichlet(1, 1, 1) posterior with about 100 rows per component: E p3 ~ 1 / 103.
    assert np.all((p3 > 0.002) & (p3 < 0.03))
    assert np.isfinite(est.score_samples([[3.0, 1.0]])).all()
    with pytest.raises(ValueError, match="not listed in categories"):
        MarginalMixture([["categorical", "bernoulli"]] * 2, categories=[[1, 3], None], **FAST).fit(X)
    with pytest.raises(ValueError, match="one entry per column"):
        MarginalMixture([["categorical", "bernoulli"]] * 2, categories=[[1, 2]], **FAST).fit(X)
    with pytest.raises(ValueError, match="not categorical"):
        MarginalMixture([["categorical", "bernoulli"]] * 2, categories=[[1, 2], [0, 1]], **FAST).fit(X)
    with pytest.raises(ValueError, match="two distinct"):
        MarginalMixture([["categorical", "bernoulli"]] * 2, categories=[[1, 1, 2], None], **FAST).fit(X)
