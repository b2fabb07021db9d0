"""The prior on mixing weights, shared by every model with constant weights.

Two priors, named as in scikit-learn's ``BayesianGaussianMixture``:

``"dirichlet_distribution"``
    ``weights ~ Dirichlet(concentration * ones(K))``: exchangeable components.
``"dirichlet_process"``
    Stick-breaking truncated at K: ``sticks[k] ~ Beta(1, concentration)`` for
    ``k < K - 1``, ``weights[k] = sticks[k] * prod_{j<k} (1 - sticks[j])`` and the last
    component takes what is left. Component k's expected weight shrinks geometrically
    with k, so superfluous components are emptied; the prior is not exchangeable.

The concentration enters as ``pm.Data`` (swapped between fits), the prior type fixes the
graph (it is part of every estimator's structure key).
"""

import numpy as np
import pymc as pm
import pytensor.tensor as pt

WEIGHT_PRIOR_TYPES = ("dirichlet_distribution", "dirichlet_process")


def resolve_concentration(value, n_components, prior_type):
    """The concentration used for ``weight_concentration_prior=value``.

    ``None`` means scikit-learn's default, ``1 / n_components``, for the Dirichlet
    distribution, and 1 (uniform sticks) for the process: a process's concentration
    should not depend on where it is truncated, and ``Beta(1, 1/K)`` sticks have an
    unbounded density at 1, which NUTS samples badly.

    A concentration below 1 lets components the data do not need empty out
    (Rousseau and Mengersen 2011; Malsiner-Walli, Fruehwirth-Schnatter and Gruen 2016).
    With 1 (uniform on the simplex, the default until 2026-12) such components kept
    passing between "empty" and "sharing a cluster": overfitted 2-D full-covariance fits
    reached R-hat 1.05-1.06 with 33-44 leapfrog steps per draw, against 1.004 and 16-17
    with ``1 / K`` (``benchmarks/validation/findings.md``, section 6).
    """
    if value is not None:
        return float(value)
    return 1.0 / n_components if prior_type == "dirichlet_distribution" else 1.0


def mixture_weights(n_components, prior_type, concentration):
    """Add the weights prior to the current model; return the weights (K,).

    Parameters
    ----------
    n_components : int
    prior_type : {"dirichlet_distribution", "dirichlet_process"}
    concentration : scalar tensor
        The ``weight_concentration`` data container.

    Returns
    -------
    TensorVariable
        ``weights``, a free variable (Dirichlet) or a deterministic of the free
        ``sticks`` (process); either way the posterior holds ``weights``.
    """
    K = n_components
    if prior_type == "dirichlet_distribution" or K == 1:
        return pm.Dirichlet("weights", a=concentration * pt.ones(K))
    if prior_type != "dirichlet_process":
        raise ValueError(f"weight prior type must be one of {WEIGHT_PRIOR_TYPES}, got {prior_type!r}.")
    sticks = pm.Beta("sticks", alpha=1.0, beta=concentration, shape=K - 1)
    remaining = pt.concatenate([pt.ones(1), pt.cumprod(1.0 - sticks)])
    return pm.Deterministic("weights", pt.concatenate([sticks, pt.ones(1)]) * remaining)


def initial_weights(weights, prior_type):
    """Starting point of the weights prior's free variable from starting weights (K,).

    Returns ``{"weights": weights}`` for the Dirichlet distribution and the sticks that
    give ``weights`` for the process (clipped inside (0, 1)).
    """
    weights = np.asarray(weights, dtype=float)
    weights = weights / weights.sum()
    if prior_type == "dirichlet_distribution" or weights.size == 1:
        return {"weights": weights}
    remaining = 1.0 - np.concatenate([[0.0], np.cumsum(weights)[:-2]])
    return {"sticks": np.clip(weights[:-1] / np.maximum(remaining, 1e-12), 1e-6, 1 - 1e-6)}
