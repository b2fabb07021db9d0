"""bayesmix: Bayesian mixture models that behave like scikit-learn estimators."""

from . import datasets
from ._sampling import compile_count
from .gaussian import BayesianGaussianMixture
from .relabel import relabel

__version__ = "0.1.0"

__all__ = [
    "BayesianGaussianMixture",
    "compile_count",
    "datasets",
    "relabel",
]
