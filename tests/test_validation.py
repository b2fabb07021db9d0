"""The validation machinery (benchmarks/validation/calibration.py) on exact posteriors."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "validation"))
calibration = pytest.importorskip("calibration")


def _simulate(rng, n_rows):
    means = rng.normal(0.0, 1.0, size=2)
    return {"means": means[:, None]}, (means[0] + rng.standard_normal(n_rows),
                                       means[1] + rng.standard_normal(n_rows))


def _exact_fit(width):
    """Conjugate posterior draws of both means (unit noise, N(0, 1) priors), ``width`` times as wide.

    Each draw's labels are then swapped at random, as label switching would; comparing
    sorted truth with sorted draws must not care.
    """

    def fit(data, seed, sampler):
        rng = np.random.default_rng(seed)
        draws = []
        for x in data:
            precision = 1.0 + len(x)
            draws.append(rng.normal(x.sum() / precision, width / np.sqrt(precision), size=1000))
        draws = np.stack(draws, axis=1)
        flip = rng.random(1000) < 0.5
        draws[flip] = draws[flip, ::-1]
        return {"means": draws[:, :, None]}, {"converged": True, "rhat_max": 1.0,
                                                "ess_bulk_min": 1000.0, "n_divergent": 0}

    return fit


def _case(width):
    return calibration.Case("exact", "exact", _simulate, _exact_fit(width), sort_by="means")


def test_canonical_sorts_every_draw_and_drops_the_last_weight():
    params = {"weights": np.array([[0.3, 0.7], [0.6, 0.4]]), "means": np.array([[[2.0], [1.0]], [[0.0], [5.0]]])}
    out = calibration.canonical(params, "means")
    assert sorted(out) == ["means[0,0]", "means[1,0]", "weights[0]"]
    np.testing.assert_array_equal(out["means[0,0]"], [1.0, 0.0])
    np.testing.assert_array_equal(out["weights[0]"], [0.7, 0.6])


def test_exact_posterior_passes_and_too_narrow_one_fails():
    good = calibration.summarize([calibration.replicate(_case(1.0), rep, 5, 0, {}) for rep in range(300)])
    bad = calibration.summarize([calibration.replicate(_case(0.5), rep, 5, 0, {}) for rep in range(300)])
    assert min(good["pvalue"].values()) > good["threshold"]
    assert all(0.85 <= c <= 0.95 for c in good["coverage"][0.9].values())
    assert max(bad["pvalue"].values()) < bad["threshold"]
    assert all(c < 0.75 for c in bad["coverage"][0.9].values())
