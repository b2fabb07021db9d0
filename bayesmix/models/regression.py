"""PyMC model of a mixture of linear regressions on standardized data."""

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from .. import _glm
from ..resolution import sheppard_sd
from .gaussian import component_scale_prior
from .weights import mixture_weights


def build_regression_mixture(
    n_components,
    n_features,
    fit_intercept=True,
    gating=False,
    family="normal",
    weight_prior="dirichlet_distribution",
):
    """Build a mixture of K regressions (linear or GLM) whose data and priors are ``pm.Data``.

    The model, on standardized ``X`` and ``y``::

        coef[k, d] ~ Normal(0, coef_scale[d])
        intercept[k] ~ Normal(0, intercept_scale)            (fit_intercept only)
        sigma[k] ~ Gamma(2, 2 / scale_prior)                 (zero density at 0)
        weights ~ Dirichlet(weight_concentration * ones(K))  (no gating)
        gate_intercept[k], gate_coef[k, d] ~ Normal(0, gating_scale), k = 1..K-1
        w_k(x) = softmax_k(gate_intercept + x @ gate_coef.T) (gating; component 0 is 0)
        y_i ~ sum_k w_k(x_i) Normal(intercept[k] + x_i @ coef[k], sigma[k])

    For a GLM ``family`` (see ``bayesmix._glm``) the intercepts' prior is centred on
    ``intercept_loc``, there is no ``sigma``, and ``y_i`` has the family's density with
    linear predictor ``intercept[k] + x_i @ coef[k] + offset_i``; the negative binomial
    and gamma families have a dispersion parameter per component (``alpha`` or
    ``shape``) with the prior ``Gamma(2, 2 / dispersion_prior)``.

    Parameters
    ----------
    n_components, n_features : int
        Fix the parameter shapes.
    fit_intercept : bool
        Whether the regressions have intercepts.
    gating : bool
        Mixture of experts: the weights depend on ``x`` through a multinomial logit.
        Ignored for one component.
    family : str
        "normal" or one of ``bayesmix._glm.GLM_FAMILIES``.
    weight_prior : {"dirichlet_distribution", "dirichlet_process"}
        The weights prior without gating (``bayesmix.models.weights``).

    Returns
    -------
    pm.Model
        Free variables ``coef``, ``sigma`` and, as the options ask, ``intercept``,
        ``weights`` (K > 1, no gating), ``gate_intercept`` and ``gate_coef`` (K > 1,
        gating; K - 1 rows each). Data containers ``X``, ``y``, ``sample_weight``,
        ``weight_concentration``, ``coef_scale``, ``intercept_scale``, ``scale_prior`` and
        ``gating_scale``, ``intercept_loc``; "normal" adds ``resolution`` (the rounding of ``y``);
        GLM families add ``offset``, ``trials`` and
        ``dispersion_prior``. The log-likelihood is a potential over the rows, each
        marginalized over components and multiplied by its sample weight.
    """
    K, D = n_components, n_features
    with pm.Model() as model:
        X = pm.Data("X", np.zeros((2, D)), shape=(None, D))
        y = pm.Data("y", np.zeros(2), shape=(None,))
        sample_weight = pm.Data("sample_weight", np.ones(2), shape=(None,))
        concentration = pm.Data("weight_concentration", 1.0)
        coef_scale = pm.Data("coef_scale", np.ones(D), shape=(D,))
        intercept_scale = pm.Data("intercept_scale", 1.0)
        scale_prior = pm.Data("scale_prior", 1.0)
        gating_scale = pm.Data("gating_scale", 1.0)
        intercept_loc = pm.Data("intercept_loc", 0.0)

        coef = pm.Normal("coef", mu=0.0, sigma=pt.ones((K, 1)) * coef_scale[None, :], shape=(K, D))
        mu = X @ coef.T  # (N, K)
        if fit_intercept:
            intercept = pm.Normal("intercept", mu=intercept_loc, sigma=intercept_scale, shape=K)
            mu = mu + intercept[None, :]
        if family == "normal":
            sigma = component_scale_prior("sigma", scale_prior, shape=K)
            # Rounded responses: resolution**2 / 12 added to the noise variance (Sheppard).
            resolution = pm.Data("resolution", 0.0)
            observed_sigma = sheppard_sd(sigma, resolution)
            component_logp = pm.logp(pm.Normal.dist(mu, observed_sigma[None, :]), y[:, None])
        else:
            offset = pm.Data("offset", np.zeros(2), shape=(None,))
            trials = pm.Data("trials", np.ones(2), shape=(None,))
            dispersion = None
            if family in _glm.DISPERSION:
                dispersion_prior = pm.Data("dispersion_prior", 10.0)
                dispersion = component_scale_prior(_glm.DISPERSION[family], dispersion_prior, shape=K)
            component_logp = _glm.logp(family, y, mu + offset[:, None], trials, dispersion)

        if K == 1:
            log_w = pt.zeros((1, 1))
        elif gating:
            gate_intercept = pm.Normal("gate_intercept", mu=0.0, sigma=gating_scale, shape=K - 1)
            gate_coef = pm.Normal("gate_coef", mu=0.0, sigma=gating_scale, shape=(K - 1, D))
            eta = gate_intercept[None, :] + X @ gate_coef.T  # (N, K - 1)
            eta = pt.concatenate([pt.zeros((eta.shape[0], 1)), eta], axis=1)
            log_w = eta - pt.logsumexp(eta, axis=1, keepdims=True)
        else:
            weights = mixture_weights(K, weight_prior, concentration)
            log_w = pt.log(weights)[None, :]

        row_loglik = pt.logsumexp(log_w + component_logp, axis=1)
        pm.Potential("log_likelihood", (sample_weight * row_loglik).sum())
    return model
