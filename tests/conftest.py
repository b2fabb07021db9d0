"""Shared test settings: tiny sampler runs on the jax backend, which compiles in seconds."""

import pathlib

import numpy as np
import pytest

# Few draws, one chain: enough to exercise every code path. Statistical checks that need
# real posteriors set their own sizes (and carry the `slow` marker when they are long).
FAST = {"draws": 40, "tune": 40, "chains": 1, "backend": "jax", "random_state": 0}

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def rng():
    return np.random.default_rng(0)
