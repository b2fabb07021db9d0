"""bayesmix: Bayesian mixture models that behave like scikit-learn estimators."""

from . import datasets
from ._persistence import load
from ._sampling import compile_count
from .gaussian import BayesianGaussianMixture
from .relabel import relabel

__version__ = "0.1.0"


def estimators():
    """The bayesmix estimator classes."""
    return [BayesianGaussianMixture]


__all__ = [
    "BayesianGaussianMixture",
    "compile_count",
    "datasets",
    "estimators",
    "load",
    "relabel",
]
