"""bayesmix: Bayesian mixture models that behave like scikit-learn estimators.

The estimators and functions below are imported on first use (PEP 562), so that a
process that needs only a part of the package (the compile helper of
``bayesmix._nutpie_numba``, ``python -m bayesmix --help``) does not import PyMC and
ArviZ for nothing.
"""

import gc
import importlib

# The function, not its module: ``bayesmix.relabel(idata, ...)``.
from .relabel import relabel

__version__ = "0.1.0"

_LAZY = {
    "BayesianGaussianMixture": ".gaussian",
    "BayesianMixtureRegression": ".regression",
    "Family": ".families",
    "MarginalMixture": ".marginal",
    "SelectK": ".model_selection",
    "compile_count": "._sampling",
    "datasets": None,
    "load": "._persistence",
    "posterior_n_components": ".model_selection",
    "register_family": ".families",
    "select_k": ".model_selection",
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _LAZY[name]
    # Importing PyMC, ArviZ and scikit-learn creates about 350 000 objects and little
    # garbage; the collector's full passes over them took 0.3-0.5 s of the import.
    collecting = gc.isenabled()
    gc.disable()
    try:
        value = importlib.import_module(f".{name}" if module is None else module, __name__)
    finally:
        if collecting:
            gc.enable()
    if module is not None:
        value = getattr(value, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def estimators():
    """The bayesmix estimator classes."""
    from .gaussian import BayesianGaussianMixture
    from .marginal import MarginalMixture
    from .regression import BayesianMixtureRegression

    return [BayesianGaussianMixture, BayesianMixtureRegression, MarginalMixture]


__all__ = [
    "BayesianGaussianMixture",
    "BayesianMixtureRegression",
    "Family",
    "MarginalMixture",
    "SelectK",
    "compile_count",
    "datasets",
    "estimators",
    "load",
    "posterior_n_components",
    "register_family",
    "relabel",
    "select_k",
]
