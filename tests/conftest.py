"""Shared test settings: tiny sampler runs on the default numba backend.

Its model kernels take their sizes at run time, so each structure compiles once per
machine whatever K and D, and sampling runs 10-100x faster than on jax (nutpie calls
back into Python for every jax gradient): on a two-core AVX2 machine the suite took
33 min with these runs on jax. Tests of the jax backend name it.
"""

import pathlib

import numpy as np
import pytest

# Few draws, one chain: enough to exercise every code path. Statistical checks that need
# real posteriors set their own sizes (and carry the `slow` marker when they are long).
FAST = {"draws": 40, "tune": 40, "chains": 1, "backend": "numba", "random_state": 0}
# MarginalMixture's and the GLM regressions' models are compiled per combination of
# families on numba (20-60 s each on a fresh machine), so their many small tests sample
# on jax, which compiles in seconds.
FAST_JAX = {**FAST, "backend": "jax"}

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def rng():
    return np.random.default_rng(0)
