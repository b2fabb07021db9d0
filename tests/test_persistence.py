"""save() and load(); the memory bound of score_samples.

Atomic writes, parameters of every legal kind, files checked on load.
"""

import copy
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import bayesmix
from bayesmix import _base, _persistence
from bayesmix._persistence import FORMAT_KEY
from bayesmix.families import get_family
from tests.conftest import FAST, FAST_JAX

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    return np.r_[rng.normal(-4, 1, 40), rng.normal(4, 1, 40)][:, None]


@pytest.fixture(scope="module")
def gmm(data):
    """A full-covariance mixture (the generic predictive path) seeded by a RandomState."""
    params = {**FAST, "random_state": np.random.RandomState(0)}
    return bayesmix.BayesianGaussianMixture(2, covariance_type="full", **params).fit(data)


@pytest.fixture(scope="module")
def marginal(data):
    """A mixture whose ``components`` holds a Family object next to a family name."""
    return bayesmix.MarginalMixture([get_family("normal"), "normal"], **FAST_JAX).fit(data)


def _files(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def test_random_state_instance_round_trips(gmm, data, tmp_path):
    loaded = bayesmix.load(gmm.save(tmp_path / "gmm.nc"))
    state, saved = loaded.random_state.get_state(), gmm.random_state.get_state()
    assert isinstance(loaded.random_state, np.random.RandomState)
    np.testing.assert_array_equal(state[1], saved[1])
    assert state[2:] == saved[2:]
    np.testing.assert_array_equal(loaded.score_samples(data), gmm.score_samples(data))
    np.testing.assert_array_equal(loaded.covariances_, gmm.covariances_)


def test_family_object_in_components_round_trips(marginal, data, tmp_path):
    loaded = bayesmix.load(marginal.save(tmp_path / "marginal.nc"))
    assert loaded.components[0] is get_family("normal")
    assert loaded.components[1] == "normal"
    assert loaded.component_params_ == marginal.component_params_
    np.testing.assert_array_equal(loaded.predict_proba(data), marginal.predict_proba(data))


def test_unregistered_family_is_a_clear_error(marginal, tmp_path):
    stranger = dataclasses.replace(get_family("normal"), name="unregistered_normal")
    est = copy.deepcopy(marginal)
    est.components = [stranger, "normal"]
    with pytest.raises(ValueError, match="register_family"):
        est.save(tmp_path / "x.nc")
    assert _files(tmp_path) == []


def test_unsupported_parameter_value_is_a_clear_error(gmm, tmp_path):
    est = copy.deepcopy(gmm)
    est.mean_prior = object()
    with pytest.raises(TypeError, match="mean_prior"):
        est.save(tmp_path / "x.nc")
    assert _files(tmp_path) == []


def test_load_then_save_to_the_same_path(gmm, data, tmp_path):
    path = tmp_path / "gmm.nc"
    gmm.save(path)
    bayesmix.load(path).save(path)
    again = bayesmix.load(path)
    np.testing.assert_array_equal(again.predict_proba(data), gmm.predict_proba(data))
    assert _files(tmp_path) == ["gmm.nc"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_load_leaves_no_file_open(gmm, tmp_path):
    path = gmm.save(tmp_path / "gmm.nc")
    bayesmix.load(path)

    def open_files():
        targets = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                targets.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                pass
        return targets

    assert str(path) not in open_files()


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(gmm, tmp_path, monkeypatch):
    path = gmm.save(tmp_path / "gmm.nc")
    before = path.read_bytes()
    real_open = open

    class FullDisk:
        """A file whose write stores half the bytes, then fails as a full disk does."""

        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(bytes(data)[: len(data) // 2])
            raise OSError(28, "No space left on device")

    def failing_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return FullDisk(handle) if "x" in mode else handle

    monkeypatch.setattr(_persistence, "open", failing_open, raising=False)
    with pytest.raises(OSError, match="No space left"):
        gmm.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _files(tmp_path) == ["gmm.nc"]
    bayesmix.load(path)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")
def test_write_past_the_file_size_limit_raises_and_keeps_the_old_file(gmm, tmp_path):
    # A real failed write: the process may write at most 4 kB per file.
    path = gmm.save(tmp_path / "gmm.nc")
    before = path.read_bytes()
    script = textwrap.dedent(
        f"""
        import resource, signal, bayesmix
        est = bayesmix.load({str(path)!r})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
        try:
            est.save({str(path)!r})
        except OSError as error:
            print("OSError", error.errno)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "OSError 27" in done.stdout
    assert path.read_bytes() == before
    assert _files(tmp_path) == ["gmm.nc"]


def _rewrite(path, out, edit):
    """Copy a saved file with its bayesmix metadata changed by ``edit(meta)``."""
    import arviz as az

    with az.rc_context({"data.load": "eager"}):
        idata = az.from_netcdf(str(path))
    meta = json.loads(idata.posterior.attrs[FORMAT_KEY])
    edit(meta)
    idata.posterior.attrs[FORMAT_KEY] = json.dumps(meta)
    tree = xr.DataTree.from_dict({f"/{g}": idata[g] for g in idata.groups()})
    tree.to_netcdf(out, engine="h5netcdf")
    return out


@pytest.fixture(scope="module")
def saved(gmm, tmp_path_factory):
    return gmm.save(tmp_path_factory.mktemp("saved") / "gmm.nc")


def _set_fitted(name, value):
    return lambda meta: meta["fitted"].__setitem__(name, value)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda meta: meta.pop("version"), "without \\['version'\\]"),
        (lambda meta: meta.pop("fitted"), "without \\['fitted'\\]"),
        (_set_fitted("predict", 1), "'predict' is not a fitted attribute"),
        (_set_fitted("fit", 1), "'fit' is not a fitted attribute"),
        (_set_fitted("_secret", 1), "not a fitted attribute"),
        (_set_fitted("n_components", 5), "not a fitted attribute"),
        (_set_fitted("weights_", [0.9, 0.1]), "weights_ differs from the posterior"),
        (lambda meta: meta["params"].__setitem__("n_components", 3), "posterior has 2 components"),
    ],
)
def test_load_checks_the_file(saved, tmp_path, edit, message):
    path = _rewrite(saved, tmp_path / "edited.nc", edit)
    with pytest.raises(ValueError, match=message):
        bayesmix.load(path)


def test_load_keeps_stored_attributes_equal_to_the_posterior(saved, gmm):
    loaded = bayesmix.load(saved)
    for name in ("weights_", "means_", "covariances_", "n_features_in_", "converged_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(gmm, name))


# ------------------------------------------------------------------ memory of score


def test_score_samples_memory_is_bounded_by_the_chunk_size(gmm, monkeypatch):
    # 40 draws x 50,000 rows: unchunked, the (draw, row) log-likelihood alone is 16 MB and
    # the (draw, row, component) block 32 MB; in chunks of 4,000 cells it stays small.
    X = np.random.default_rng(1).normal(0, 4, (50_000, 1))
    expected = gmm.score_samples(X[:2000])
    monkeypatch.setattr(_base, "_CHUNK_CELLS", 4_000)
    tracemalloc.start()
    try:
        scores = gmm.score_samples(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3_000_000, f"score_samples peaked at {peak / 1e6:.1f} MB"
    np.testing.assert_allclose(scores[:2000], expected, rtol=1e-12)
    assert np.isclose(gmm.score(X), scores.mean())
