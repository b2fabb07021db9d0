"""Behaviour tests for bayesmix.relabel."""

import arviz as az
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp
from scipy.stats import norm

from bayesmix.relabel import (
    apply_permutations,
    ecr_permutations,
    ecr_permutations_from_probs,
    relabel,
    relabel_diagnostics,
    sort_permutations,
    stephens_permutations,
)


def random_perms(rng, n_samples, k):
    return np.array([rng.permutation(k) for _ in range(n_samples)])


# ---------------------------------------------------------------------------
# Array-level properties
# ---------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    n_samples=st.integers(1, 30),
    k=st.integers(2, 5),
    d=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_sort_restores_known_permutation(n_samples, k, d, seed):
    rng = np.random.default_rng(seed)
    # consistently labelled posterior: first feature of the means is sorted
    means = 10.0 * np.arange(k)[None, :, None] + rng.uniform(-1, 1, (n_samples, k, d))
    covs = rng.normal(size=(n_samples, k, d, d))
    coefs = rng.normal(size=(n_samples, k, 4))
    scramble = random_perms(rng, n_samples, k)

    s_means = apply_permutations(means, scramble, axis=1)
    s_covs = apply_permutations(covs, scramble, axis=1)
    s_coefs = apply_permutations(coefs, scramble, axis=-2)

    perms = sort_permutations(s_means[:, :, 0])
    np.testing.assert_array_equal(apply_permutations(s_means, perms, 1), means)
    np.testing.assert_array_equal(apply_permutations(s_covs, perms, 1), covs)
    np.testing.assert_array_equal(apply_permutations(s_coefs, perms, 1), coefs)
    # convention: new[s, j] = old[s, perms[s, j]] = true[s, scramble[s, perms[s, j]]]
    composed = np.take_along_axis(scramble, perms, axis=1)
    np.testing.assert_array_equal(composed, np.tile(np.arange(k), (n_samples, 1)))


def test_apply_permutations_convention():
    old = np.array([[10.0, 20.0, 30.0]])
    perms = np.array([[2, 0, 1]])
    np.testing.assert_array_equal(apply_permutations(old, perms, 1), [[30.0, 10.0, 20.0]])
    with pytest.raises(ValueError):
        apply_permutations(old, perms, axis=0)


def consistent_probs(rng, n_samples, n, k):
    """Responsibilities of a consistently labelled posterior."""
    truth = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])
    logits = rng.normal(0.0, 0.3, (n_samples, n, k))
    logits[:, np.arange(n), truth] += 3.0
    p = np.exp(logits)
    return p / p.sum(axis=2, keepdims=True)


@settings(max_examples=30, deadline=None)
@given(
    n_samples=st.integers(1, 40),
    n=st.integers(10, 40),
    k=st.integers(2, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_stephens_and_ecr_undo_known_permutation(n_samples, n, k, seed):
    rng = np.random.default_rng(seed)
    probs = consistent_probs(rng, n_samples, n, k)
    scramble = random_perms(rng, n_samples, k)
    scrambled = apply_permutations(probs, scramble, axis=2)

    for perms in (
        stephens_permutations(scrambled),
        ecr_permutations_from_probs(scrambled),
    ):
        composed = np.take_along_axis(scramble, perms, axis=1)
        # the same global relabelling for every draw
        assert (composed == composed[0]).all()
        recovered = apply_permutations(scrambled, perms, axis=2)
        np.testing.assert_allclose(recovered, probs[:, :, composed[0]])


def test_ecr_permutations_simple():
    pivot = np.array([0, 0, 1, 1, 2, 2])
    z = np.array([[2, 2, 0, 0, 1, 1], [0, 0, 1, 1, 2, 2]])
    perms = ecr_permutations(z, pivot, 3)
    np.testing.assert_array_equal(perms, [[2, 0, 1], [0, 1, 2]])


def test_stephens_is_fast_enough():
    import time

    rng = np.random.default_rng(0)
    probs = consistent_probs(rng, 4000, 300, 3)
    scrambled = apply_permutations(probs, random_perms(rng, 4000, 3), axis=2)
    t0 = time.perf_counter()
    stephens_permutations(scrambled)
    assert time.perf_counter() - t0 < 3.0


# ---------------------------------------------------------------------------
# InferenceData level
# ---------------------------------------------------------------------------
def make_idata(weights, means, sigmas, y, dim="component", extra=None):
    k = weights.shape[-1]
    posterior = {"weights": weights, "means": means, "sigmas": sigmas}
    dims = {name: [dim] for name in posterior}
    if extra:
        posterior.update(extra)
        dims.update({name: [dim] for name in extra})
    return az.from_dict(
        posterior=posterior,
        observed_data={"y": y},
        coords={dim: [f"c{i}" for i in range(k)]},
        dims=dims,
    )


def test_equal_means_different_sigmas():
    rng = np.random.default_rng(1)
    n_chain, n_draw = 2, 200
    y = np.where(rng.random(500) < 0.5, rng.normal(0, 1, 500), rng.normal(0, 5, 500))
    shape = (n_chain, n_draw)
    w = np.stack([0.5 + rng.normal(0, 0.02, shape)] * 2, -1)
    w[..., 1] = 1 - w[..., 0]
    mu = rng.normal(0, 0.1, shape + (2,))
    sd = np.stack([1 + rng.normal(0, 0.05, shape), 5 + rng.normal(0, 0.2, shape)], -1)
    swap = rng.random(shape) < 0.5  # random label swap per draw
    w[swap], mu[swap], sd[swap] = w[swap][:, ::-1], mu[swap][:, ::-1], sd[swap][:, ::-1]
    idata = make_idata(w, mu, sd, y)

    def separated(new):
        s = new.posterior["sigmas"].values.reshape(-1, 2)
        small = int(np.argmin(s.mean(axis=0)))
        return bool((s[:, small] < 2.5).all() and (s[:, 1 - small] > 2.5).all())

    sorted_idata, _ = relabel(idata, "sort", by="means")
    assert not separated(sorted_idata)
    for method in ("stephens", "ecr"):
        new, perms = relabel(idata, method)
        assert perms.shape == (n_chain, n_draw, 2)
        assert separated(new), method


def symmetric_mixture_idata(rng, dim="component"):
    """K=3 mixture, 4 chains, each chain stuck in a different labelling."""
    n_chain, n_draw, k = 4, 500, 3
    true_mu = np.array([-5.0, 0.0, 5.0])
    z = rng.integers(0, k, 300)
    y = rng.normal(true_mu[z], 1.0)
    shape = (n_chain, n_draw, k)
    w = rng.dirichlet([100.0] * k, size=(n_chain, n_draw))
    mu = true_mu + rng.normal(0, 0.1, shape)
    sd = 1.0 + rng.normal(0, 0.05, shape)
    chain_perms = np.array([[0, 1, 2], [2, 0, 1], [1, 2, 0], [2, 1, 0]])
    p = np.broadcast_to(chain_perms[:, None, :], shape).reshape(-1, k)
    w, mu, sd = (apply_permutations(a.reshape(-1, k), p, 1).reshape(shape) for a in (w, mu, sd))
    extra = {"sigmas_log__": np.log(sd)}
    return make_idata(w, mu, sd, y, dim=dim, extra=extra), chain_perms


@pytest.mark.parametrize("method", ["stephens", "ecr", "sort"])
def test_relabel_fixes_rhat(method):
    rng = np.random.default_rng(2)
    idata, _ = symmetric_mixture_idata(rng, dim="cluster")
    kwargs = {"by": "means"} if method == "sort" else {}
    new, perms = relabel(idata, method, dim="cluster", **kwargs)
    assert perms.shape == (4, 500, 3)
    diag = relabel_diagnostics(idata, new, perms, dim="cluster")
    # weights and sigmas are exchangeable here; the means expose the switching
    assert diag["rhat_before"]["means"] > 1.5
    for name in ("weights", "means", "sigmas"):
        assert diag["rhat_after"][name] <= 1.01
    assert "sigmas_log__" not in diag["rhat_after"]
    share = diag["permuted_share"]
    assert share.shape == (4,)
    assert set(np.unique(share)) <= {0.0, 1.0}
    assert (share == 1.0).sum() >= 3  # at least three chains were relabelled
    if method == "sort":
        np.testing.assert_array_equal(share, [0.0, 1.0, 1.0, 1.0])
    # coordinates kept, unconstrained copy and other groups untouched
    assert list(new.posterior["cluster"].values) == ["c0", "c1", "c2"]
    np.testing.assert_array_equal(
        new.posterior["sigmas_log__"].values, idata.posterior["sigmas_log__"].values
    )
    np.testing.assert_array_equal(new.observed_data["y"].values, idata.observed_data["y"].values)
    assert new is not idata


def test_relabel_with_log_resp_and_none():
    rng = np.random.default_rng(3)
    idata, _ = symmetric_mixture_idata(rng)
    post = idata.posterior
    y = idata.observed_data["y"].values
    log_resp = np.log(post["weights"].values)[:, :, None, :] + norm.logpdf(
        y[None, None, :, None],
        post["means"].values[:, :, None, :],
        post["sigmas"].values[:, :, None, :],
    )
    kept = log_resp.copy()
    new, perms = relabel(idata, "stephens", log_resp=log_resp, var_names=["means"])
    np.testing.assert_array_equal(log_resp, kept)  # the caller's array is left alone
    assert az.rhat(new.posterior)["means"].max() <= 1.01
    # overwrite_log_resp: the same permutations, normalized in the caller's array
    _, again = relabel(idata, "stephens", log_resp=log_resp, var_names=["means"], overwrite_log_resp=True)
    np.testing.assert_array_equal(again, perms)
    np.testing.assert_allclose(log_resp.sum(axis=-1), 1.0)
    # weights not in var_names: left as they were
    np.testing.assert_array_equal(new.posterior["weights"].values, post["weights"].values)

    # The responsibilities themselves: the same permutations
    probs = np.exp(kept - logsumexp(kept, axis=-1, keepdims=True))
    _, from_probs = relabel(idata, "stephens", resp=probs, var_names=["means"])
    np.testing.assert_array_equal(from_probs, perms)
    with pytest.raises(ValueError, match="either log_resp or resp"):
        relabel(idata, "stephens", resp=probs, log_resp=kept)

    same, ident = relabel(idata, None)
    np.testing.assert_array_equal(ident, np.broadcast_to(np.arange(3), (4, 500, 3)))
    np.testing.assert_array_equal(same.posterior["means"].values, post["means"].values)


def test_diagnostics_of_one_permutation_for_every_draw_are_those_after():
    rng = np.random.default_rng(4)
    idata, _ = symmetric_mixture_idata(rng)
    new, perms = relabel(idata, "stephens")
    diag = relabel_diagnostics(idata, new, perms)
    assert diag["rhat_before"]["means"] > 1.5
    # Reordering the relabeled components the same way in every draw changes no
    # variable's largest R-hat: "before" is "after".
    one = np.broadcast_to([2, 0, 1], perms.shape)
    moved = new.copy()
    for name in ("weights", "means", "sigmas"):
        moved.posterior[name] = new.posterior[name].copy(data=new.posterior[name].values[..., [2, 0, 1]])
    diag = relabel_diagnostics(new, moved, one)
    assert diag["rhat_before"] == diag["rhat_after"]
    assert diag["rhat_after"]["means"] <= 1.01


def test_sort_by_multivariate_means_uses_first_feature():
    rng = np.random.default_rng(4)
    n_chain, n_draw, k, d = 2, 50, 3, 2
    means = np.array([[0.0, 9.0], [5.0, 0.0], [10.0, 4.0]]) + rng.normal(0, 0.1, (n_chain, n_draw, k, d))
    scramble = random_perms(rng, n_chain * n_draw, k)
    scrambled = apply_permutations(means.reshape(-1, k, d), scramble, 1).reshape(means.shape)
    idata = az.from_dict(
        posterior={"means": scrambled},
        dims={"means": ["component", "feature"]},
    )
    new, _ = relabel(idata, "sort", by="means")
    np.testing.assert_array_equal(new.posterior["means"].values, means)


def test_errors():
    rng = np.random.default_rng(5)
    idata, _ = symmetric_mixture_idata(rng)
    with pytest.raises(ValueError, match="stephens"):
        relabel(idata, "bogus")
    with pytest.raises(ValueError, match="by"):
        relabel(idata, "sort")
    no_obs = az.from_dict(
        posterior={"means": idata.posterior["means"].values},
        dims={"means": ["component"]},
    )
    with pytest.raises(ValueError, match="log_resp"):
        relabel(no_obs, "stephens")
    with pytest.raises(ValueError, match="log_resp"):
        relabel(no_obs, "ecr")
    with pytest.raises(ValueError):
        relabel(idata, "stephens", log_resp=np.zeros((4, 500, 10, 2)))
