"""Component families of :class:`~bayesmix.MarginalMixture`, and their registry.

A :class:`Family` describes one kind of univariate component completely: its support,
its parameters, their priors (on the scale the model samples on), its log-density in
pytensor (for the model) and in numpy/scipy (for the predictive maths after the fit), a
random sampler, the parameter that orders its components, and how each parameter moves
from the sampling scale back to the user's scale.

Scaling. ``MarginalMixture.fit`` brings the data to unit scale before sampling, in the
way every family of the mixture allows:

* only ``"real"`` families: centred and divided by the standard deviation;
* any ``"positive"``/``"nonnegative"`` family: divided by the mean, not centred (the
  support must stay where it is);
* ``"nonnegative_integer"`` (count) families: not scaled at all. Counts cannot be mixed
  with continuous families (a mass and a density cannot be added).

Each parameter declares how it maps back (``param_scaling``): ``"location"``
(``v * scale + loc``), ``"scale"`` (``v * scale``), ``"log_location"``
(``v + log(scale)``, a location on the log scale) or ``"none"``.

Priors are written as unregistered PyMC distributions (``pm.Normal.dist(...)``) of shape
``(K,)`` for the family's ``K`` components; they may use the data summaries passed in
(pytensor scalars computed from the weighted, scaled data: ``mean``, ``sd``,
``log_mean`` and ``log_sd``, the last two on the positive values only), so one compiled
model serves every data set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy import stats

from ._base import normal_logpdf
from .resolution import sheppard_sd

__all__ = ["Family", "SUPPORTS", "get_family", "register_family", "registered_families"]

SUPPORTS = ("real", "positive", "nonnegative", "nonnegative_integer", "binary", "categorical")
PARAM_SCALINGS = ("location", "scale", "log_location", "none")


@dataclass(frozen=True, eq=False)
class Family:
    """One kind of mixture component.

    Parameters
    ----------
    name : str
        Registry name, also the prefix of the posterior variables (``{name}_{param}``).
    support : {"real", "positive", "nonnegative", "nonnegative_integer", "binary", "categorical"}
        Values the family gives positive density (or mass) to. "categorical" columns
        reach the family as codes 0..C-1 (the estimator maps the values it saw in ``fit``),
        and its priors get ``data["n_categories"]``, the number C, as a Python int.
    params : tuple of str
        Parameter names.
    priors : callable ``(K, data) -> dict``
        Returns, for every parameter, an unregistered PyMC distribution of shape
        ``(K,)`` (``pm.Normal.dist(..., shape=K)``). ``data`` maps ``"mean"``, ``"sd"``,
        ``"log_mean"``, ``"log_sd"`` to pytensor scalars: summaries of the data on the
        scale the model samples on (see the module docstring).
    logp : callable ``(x, **params) -> tensor``
        Pytensor log-density; ``x`` has shape ``(N, 1)``, each parameter ``(K,)``; the
        result has shape ``(N, K)``.
    logpdf : callable ``(x, **params) -> ndarray``
        The same log-density in numpy, broadcasting ``x`` against the parameters.
    rvs : callable ``(rng, **params) -> ndarray``
        Draws one value per element of the (equal-shape) parameter arrays; ``rng`` is a
        ``numpy.random.RandomState``.
    location : str
        The parameter that orders the family's components when relabeling (a location
        or mean: larger means "further right").
    param_scaling : dict, optional
        Parameter -> ``"location"``, ``"scale"``, ``"log_location"`` or ``"none"``
        (the default for parameters not listed).
    init : callable ``(q, data) -> dict``, optional
        Starting values (constrained space, sampling scale) from ``q``, increasing data
        quantiles (one per component of the family), and ``data``, the summaries as
        floats. The default starts ``location`` at ``q`` and leaves the other parameters
        at PyMC's default starting point.
    rounding : callable ``(x, h, **params) -> dict``, optional
        For data rounded to a step ``h`` (see :mod:`bayesmix.resolution`): the
        parameters whose density stands for a value recorded as ``x``, that is for the
        probability of ``[x - h/2, x + h/2]`` divided by ``h``, given the component's
        parameters. The built-in continuous families widen the component by the
        rounding's variance ``h**2 / 12`` (Sheppard's correction), which bounds the
        density of a tied value by a few times ``1 / h`` (normal 1.4, Laplace 2.4).
        Written with arithmetic only, it serves PyTensor tensors and NumPy arrays alike;
        ``h = 0`` must return the parameters unchanged. A continuous family without it
        ignores the resolution.
    """

    name: str
    support: str
    params: tuple
    priors: Callable
    logp: Callable
    logpdf: Callable
    rvs: Callable
    location: str
    param_scaling: Mapping = field(default_factory=dict)
    init: Callable | None = None
    rounding: Callable | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"Family name must be a valid identifier, got {self.name!r}.")
        if self.support not in SUPPORTS:
            raise ValueError(
                f"Family {self.name!r}: support must be one of {SUPPORTS}, got {self.support!r}."
            )
        object.__setattr__(self, "params", tuple(self.params))
        if not self.params:
            raise ValueError(f"Family {self.name!r} needs at least one parameter.")
        if self.location not in self.params:
            raise ValueError(
                f"Family {self.name!r}: location {self.location!r} is not one of its "
                f"parameters {self.params}."
            )
        for param, how in self.param_scaling.items():
            if param not in self.params or how not in PARAM_SCALINGS:
                raise ValueError(
                    f"Family {self.name!r}: param_scaling[{param!r}]={how!r} must name a "
                    f"parameter and be one of {PARAM_SCALINGS}."
                )
        for attr in ("priors", "logp", "logpdf", "rvs"):
            if not callable(getattr(self, attr)):
                raise ValueError(f"Family {self.name!r}: {attr} must be callable.")
        if self.rounding is not None and (self.discrete or not callable(self.rounding)):
            raise ValueError(
                f"Family {self.name!r}: rounding must be callable, and only a continuous "
                "family has one."
            )

    def rounded(self, x, h, params):
        """The parameters for values ``x`` recorded at resolution ``h`` (``params`` if no rule)."""
        return params if self.rounding is None else self.rounding(x, h, **params)

    @property
    def discrete(self):
        """Whether the family is a probability mass (counts, binary or categorical values)."""
        return self.support in ("nonnegative_integer", "binary", "categorical")

    def variable(self, param):
        """Name of a parameter's posterior variable."""
        return f"{self.name}_{param}"

    @property
    def dim(self):
        """Name of the posterior dimension over this family's components."""
        return f"{self.name}_component"

    def check_support(self, x, what="X"):
        """Raise ``ValueError`` naming the family when a value of ``x`` (called ``what`` in
        the message) is outside the support."""
        problem = None
        if self.support == "positive" and np.any(x <= 0):
            problem = f"has {int(np.sum(x <= 0))} value(s) <= 0 (min {x.min():g})"
        elif self.support in ("nonnegative", "nonnegative_integer") and np.any(x < 0):
            problem = f"has {int(np.sum(x < 0))} negative value(s) (min {x.min():g})"
        elif self.support == "nonnegative_integer" and np.any(x != np.round(x)):
            bad = x[x != np.round(x)]
            problem = f"has {bad.size} non-integer value(s) (e.g. {bad[0]:g})"
        elif self.support == "binary" and np.any((x != 0) & (x != 1)):
            bad = x[(x != 0) & (x != 1)]
            problem = f"has {bad.size} value(s) other than 0 and 1 (e.g. {bad[0]:g})"
        if problem is not None:
            raise ValueError(
                f"{what} {problem}, outside the support ({self.support}) of component family "
                f"{self.name!r}."
            )

    def to_user_scale(self, param, values, loc, scale):
        """Map a parameter's draws from the sampling scale to the user's scale."""
        how = self.param_scaling.get(param, "none")
        if how == "location":
            return values * scale + loc
        if how == "scale":
            return values * scale
        if how == "log_location":
            return values + np.log(scale)
        return values

    def initial_values(self, q, data):
        """Starting values for this family's components (keys are variable names)."""
        values = self.init(q, data) if self.init is not None else {self.location: q}
        return {self.variable(p): np.asarray(v, dtype=float) for p, v in values.items()}


_REGISTRY: dict[str, Family] = {}


def register_family(family, *, overwrite=False):
    """Make a :class:`Family` available to :class:`~bayesmix.MarginalMixture` by name.

    Parameters
    ----------
    family : Family
    overwrite : bool, default=False
        Replace a family already registered under the same name.

    Returns
    -------
    Family
        The family, so that this can be used as a decorator-like one-liner.
    """
    if not isinstance(family, Family):
        raise TypeError(f"register_family expects a Family, got {type(family).__name__}.")
    if family.name in _REGISTRY and not overwrite and _REGISTRY[family.name] is not family:
        raise ValueError(
            f"A family named {family.name!r} is already registered; pass overwrite=True "
            "to replace it."
        )
    _REGISTRY[family.name] = family
    return family


def registered_families():
    """Names of the registered families, sorted."""
    return sorted(_REGISTRY)


def get_family(name):
    """The registered family called ``name``; ``ValueError`` listing the known ones."""
    if isinstance(name, Family):
        return name
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown component family {name!r}; registered families are "
            f"{registered_families()} (add one with bayesmix.register_family)."
        ) from None


# ----------------------------------------------------------------- built-in families
# Priors on the sampling scale. Scale parameters get Gamma(2, 2 / s) priors (mean s,
# zero density at zero), which keeps components from collapsing onto single points.


def _scale_prior(s, K):
    return pm.Gamma.dist(alpha=2.0, beta=2.0 / s, shape=K)


def _location_prior(data, K):
    return pm.Normal.dist(mu=data["mean"], sigma=2.0 * data["sd"], shape=K)


def _positive_location_prior(data, K):
    # Log-normal around the data's geometric mean; wide enough for components a factor
    # of e^(2 log_sd + 1) apart.
    return pm.LogNormal.dist(mu=data["log_mean"], sigma=2.0 * data["log_sd"] + 1.0, shape=K)


def _count_location_prior(data, K):
    return pm.LogNormal.dist(mu=pt.log(pt.maximum(data["mean"], 0.1)), sigma=1.5, shape=K)


def _shape_prior(K):
    # Gamma(2, 0.2): mean 10, most mass between 1 and 30.
    return pm.Gamma.dist(alpha=2.0, beta=0.2, shape=K)


def _spread(q, data, K):
    return np.full(K, data["sd"] / (2.0 * K) + 1e-3)


def _count_start(q):
    return np.maximum(q, 0.5) + 1e-3 * np.arange(q.size)


def _positive_start(q, data):
    return np.maximum(q, 1e-2 * data["mean"]) * (1.0 + 1e-3 * np.arange(q.size))


def _categorical_logpmf(x, p):
    """``log p[..., x]``: codes ``x`` broadcast against ``p``'s leading axes (last: categories)."""
    log_p = np.log(p)
    shape = np.broadcast_shapes(np.shape(x), log_p.shape[:-1])
    log_p = np.broadcast_to(log_p, shape + log_p.shape[-1:])
    codes = np.broadcast_to(np.asarray(x).astype(np.int64), shape)[..., None]
    return np.take_along_axis(log_p, codes, axis=-1)[..., 0]


def _draw_categories(p, rng):
    cdf = np.cumsum(p, axis=-1)
    u = rng.uniform(size=cdf.shape[:-1] + (1,))
    return np.minimum((u > cdf).sum(axis=-1), p.shape[-1] - 1).astype(float)


def _builtin():
    real_scaling = {"mu": "location", "sigma": "scale"}
    return [
        Family(
            name="normal",
            support="real",
            params=("mu", "sigma"),
            priors=lambda K, d: {"mu": _location_prior(d, K), "sigma": _scale_prior(0.5 * d["sd"], K)},
            logp=lambda x, mu, sigma: pm.logp(pm.Normal.dist(mu, sigma), x),
            logpdf=normal_logpdf,
            rvs=lambda rng, mu, sigma: rng.normal(mu, sigma),
            location="mu",
            param_scaling=real_scaling,
            init=lambda q, d: {"mu": q, "sigma": _spread(q, d, q.size)},
            rounding=lambda x, h, mu, sigma: {"mu": mu, "sigma": sheppard_sd(sigma, h)},
        ),
        Family(
            name="student_t",
            support="real",
            params=("mu", "sigma", "nu"),
            priors=lambda K, d: {
                "mu": _location_prior(d, K),
                "sigma": _scale_prior(0.5 * d["sd"], K),
                # Juarez & Steel (2010): Gamma(2, 0.1), mean 20.
                "nu": pm.Gamma.dist(alpha=2.0, beta=0.1, shape=K),
            },
            logp=lambda x, mu, sigma, nu: pm.logp(pm.StudentT.dist(nu=nu, mu=mu, sigma=sigma), x),
            logpdf=lambda x, mu, sigma, nu: stats.t.logpdf(x, nu, mu, sigma),
            rvs=lambda rng, mu, sigma, nu: mu + sigma * rng.standard_t(nu),
            location="mu",
            param_scaling=real_scaling,
            init=lambda q, d: {"mu": q, "sigma": _spread(q, d, q.size), "nu": np.full(q.size, 10.0)},
            # The scale's variance widened as the normal's (the t's own variance is larger).
            rounding=lambda x, h, mu, sigma, nu: {"mu": mu, "sigma": sheppard_sd(sigma, h), "nu": nu},
        ),
        Family(
            name="laplace",
            support="real",
            params=("mu", "b"),
            priors=lambda K, d: {"mu": _location_prior(d, K), "b": _scale_prior(0.5 * d["sd"], K)},
            logp=lambda x, mu, b: pm.logp(pm.Laplace.dist(mu=mu, b=b), x),
            logpdf=lambda x, mu, b: stats.laplace.logpdf(x, mu, b),
            rvs=lambda rng, mu, b: rng.laplace(mu, b),
            location="mu",
            param_scaling={"mu": "location", "b": "scale"},
            init=lambda q, d: {"mu": q, "b": _spread(q, d, q.size)},
            # Variance 2 b**2, plus h**2 / 12.
            rounding=lambda x, h, mu, b: {"mu": mu, "b": (b**2 + h**2 / 24.0) ** 0.5},
        ),
        Family(
            name="skew_normal",
            support="real",
            params=("mu", "sigma", "alpha"),
            priors=lambda K, d: {
                "mu": _location_prior(d, K),
                "sigma": _scale_prior(0.5 * d["sd"], K),
                "alpha": pm.Normal.dist(0.0, 3.0, shape=K),
            },
            logp=lambda x, mu, sigma, alpha: pm.logp(pm.SkewNormal.dist(mu=mu, sigma=sigma, alpha=alpha), x),
            logpdf=lambda x, mu, sigma, alpha: stats.skewnorm.logpdf(x, alpha, mu, sigma),
            rvs=lambda rng, mu, sigma, alpha: stats.skewnorm.rvs(alpha, mu, sigma, random_state=rng),
            location="mu",
            param_scaling=real_scaling,
            init=lambda q, d: {"mu": q, "sigma": _spread(q, d, q.size), "alpha": np.zeros(q.size)},
            rounding=lambda x, h, mu, sigma, alpha: {
                "mu": mu, "sigma": sheppard_sd(sigma, h), "alpha": alpha
            },
        ),
        Family(
            name="lognormal",
            support="positive",
            params=("mu", "sigma"),
            priors=lambda K, d: {
                "mu": pm.Normal.dist(d["log_mean"], 2.0 * d["log_sd"] + 1.0, shape=K),
                "sigma": _scale_prior(0.5 * d["log_sd"], K),
            },
            logp=lambda x, mu, sigma: pm.logp(pm.LogNormal.dist(mu=mu, sigma=sigma), x),
            logpdf=lambda x, mu, sigma: stats.lognorm.logpdf(x, sigma, scale=np.exp(mu)),
            rvs=lambda rng, mu, sigma: rng.lognormal(mu, sigma),
            location="mu",
            param_scaling={"mu": "log_location"},
            init=lambda q, d: {
                "mu": np.log(_positive_start(q, d)),
                "sigma": np.full(q.size, d["log_sd"] / (2.0 * q.size) + 1e-3),
            },
            # On the log scale the interval around x is h / x wide.
            rounding=lambda x, h, mu, sigma: {
                "mu": mu, "sigma": (sigma**2 + (h / x) ** 2 / 12.0) ** 0.5
            },
        ),
        Family(
            name="gamma",
            support="positive",
            params=("mean", "shape"),
            priors=lambda K, d: {"mean": _positive_location_prior(d, K), "shape": _shape_prior(K)},
            logp=lambda x, mean, shape: pm.logp(pm.Gamma.dist(alpha=shape, beta=shape / mean), x),
            logpdf=lambda x, mean, shape: stats.gamma.logpdf(x, shape, scale=mean / shape),
            rvs=lambda rng, mean, shape: rng.gamma(shape, mean / shape),
            location="mean",
            param_scaling={"mean": "scale"},
            init=lambda q, d: {"mean": _positive_start(q, d), "shape": np.full(q.size, 5.0)},
            # Variance mean**2 / shape, plus h**2 / 12, at the same mean.
            rounding=lambda x, h, mean, shape: {
                "mean": mean, "shape": shape / (1.0 + shape * h**2 / (12.0 * mean**2))
            },
        ),
        Family(
            name="exponential",
            support="nonnegative",
            params=("mean",),
            priors=lambda K, d: {"mean": _positive_location_prior(d, K)},
            logp=lambda x, mean: pm.logp(pm.Exponential.dist(scale=mean), x),
            logpdf=lambda x, mean: stats.expon.logpdf(x, scale=mean),
            rvs=lambda rng, mean: rng.exponential(mean),
            location="mean",
            param_scaling={"mean": "scale"},
            init=lambda q, d: {"mean": _positive_start(q, d)},
        ),
        Family(
            name="poisson",
            support="nonnegative_integer",
            params=("rate",),
            priors=lambda K, d: {"rate": _count_location_prior(d, K)},
            logp=lambda x, rate: pm.logp(pm.Poisson.dist(rate), x),
            logpdf=lambda x, rate: stats.poisson.logpmf(x, rate),
            rvs=lambda rng, rate: rng.poisson(rate),
            location="rate",
            init=lambda q, d: {"rate": _count_start(q)},
        ),
        Family(
            name="negative_binomial",
            support="nonnegative_integer",
            params=("mu", "alpha"),
            priors=lambda K, d: {"mu": _count_location_prior(d, K), "alpha": _shape_prior(K)},
            logp=lambda x, mu, alpha: pm.logp(pm.NegativeBinomial.dist(mu=mu, alpha=alpha), x),
            logpdf=lambda x, mu, alpha: stats.nbinom.logpmf(x, alpha, alpha / (mu + alpha)),
            rvs=lambda rng, mu, alpha: rng.negative_binomial(alpha, alpha / (mu + alpha)),
            location="mu",
            init=lambda q, d: {"mu": _count_start(q), "alpha": np.full(q.size, 5.0)},
        ),
        Family(
            name="bernoulli",
            support="binary",
            params=("p",),
            priors=lambda K, d: {"p": pm.Beta.dist(1.0, 1.0, shape=K)},
            logp=lambda x, p: x * pt.log(p) + (1.0 - x) * pt.log1p(-p),
            logpdf=lambda x, p: x * np.log(p) + (1.0 - x) * np.log1p(-p),
            rvs=lambda rng, p: (rng.uniform(size=np.shape(p)) < p).astype(float),
            location="p",
            init=lambda q, d: {"p": np.clip(q, 0.05, 0.95) + 1e-3 * np.arange(q.size)},
        ),
        Family(
            name="categorical",
            support="categorical",
            params=("p",),
            # Dirichlet(1, ..., 1): uniform on each component's category probabilities.
            priors=lambda K, d: {"p": pm.Dirichlet.dist(pt.ones(d["n_categories"]), shape=(K, d["n_categories"]))},
            logp=lambda x, p: pt.log(p).T[pt.cast(x[:, 0], "int64")],
            logpdf=_categorical_logpmf,
            rvs=lambda rng, p: _draw_categories(np.asarray(p), rng),
            location="p",
        ),
    ]


# The built-in families by name: ``bayesmix.models.kernels.MarginalKernel`` knows these
# objects' densities and priors (a family registered over one of them is another family).
BUILTIN_FAMILIES = {family.name: family for family in _builtin()}
for _family in BUILTIN_FAMILIES.values():
    register_family(_family)
