"""bayesmix: Bayesian mixture models that behave like scikit-learn estimators."""

from . import datasets
from ._sampling import compile_count
from .gaussian import BayesianGaussianMixture
from .model_selection import SelectK, posterior_n_components, select_k
from .relabel import relabel

__version__ = "0.1.0"

__all__ = [
    "BayesianGaussianMixture",
    "SelectK",
    "compile_count",
    "datasets",
    "posterior_n_components",
    "relabel",
    "select_k",
]
