"""bayesmix: Bayesian mixture models that behave like scikit-learn estimators."""

from . import datasets
from ._sampling import compile_count
from .gaussian import BayesianGaussianMixture
from .regression import BayesianMixtureRegression
from .relabel import relabel

__version__ = "0.1.0"

__all__ = [
    "BayesianGaussianMixture",
    "BayesianMixtureRegression",
    "compile_count",
    "datasets",
    "relabel",
]
