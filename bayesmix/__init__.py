"""bayesmix: Bayesian mixture models that behave like scikit-learn estimators."""

from . import datasets
from ._persistence import load
from ._sampling import compile_count
from .families import Family, register_family
from .gaussian import BayesianGaussianMixture
from .marginal import MarginalMixture
from .model_selection import SelectK, posterior_n_components, select_k
from .regression import BayesianMixtureRegression
from .relabel import relabel

__version__ = "0.1.0"


def estimators():
    """The bayesmix estimator classes."""
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
