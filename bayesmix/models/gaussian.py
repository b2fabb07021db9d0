"""PyMC model of a Gaussian mixture on standardized data."""

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayesmix.models.fused import normal_mixture_loglik
from bayesmix.models.weights import mixture_weights
from bayesmix.models.fused_mvn import mvnormal_mixture_loglik
from bayesmix.resolution import sheppard_sd


def component_scale_prior(name, scale, shape):
    """Gamma(2, 2 / scale) on a standard deviation: prior mean ``scale``, zero density at 0.

    The zero-avoiding shape keeps the posterior away from the degenerate optimum of a
    mixture likelihood where one component collapses onto a single point.
    """
    return pm.Gamma(name, alpha=2.0, beta=2.0 / scale, shape=shape)


def build_gaussian_mixture(
    n_components,
    n_features,
    covariance_type,
    ordered,
    lkj_eta=2.0,
    weight_prior="dirichlet_distribution",
    rounded=False,
):
    """Build a Gaussian mixture model whose data and priors are ``pm.Data``.

    Parameters
    ----------
    n_components, n_features : int
        Fix the parameter shapes.
    covariance_type : {"full", "tied", "diag", "spherical"}
        With one feature, "full", "diag" and "spherical" are one model: a standard
        deviation per component.
    ordered : bool
        Order the means (one feature only) so that labels cannot switch.
    lkj_eta : float
        Concentration of the LKJ prior on correlations ("full" and "tied"); PyMC needs it
        constant, so it is part of the structure.
    weight_prior : {"dirichlet_distribution", "dirichlet_process"}
        The weights prior (``bayesmix.models.weights``).
    rounded : bool
        Whether full or tied covariances get the data's rounding added ("diag" and
        "spherical" always read ``resolution``; for full covariances it costs a
        Cholesky factorization per component, so it is part of the structure).

    Returns
    -------
    pm.Model
        Free variables ``weights``, ``means`` and the scale parameters; data containers
        ``X``, ``sample_weight``, ``weight_concentration``, ``mean_loc``, ``mean_scale``,
        ``scale_prior`` and ``resolution`` (per feature; the data's rounding, which adds
        ``resolution**2 / 12`` to each component's variance, see ``bayesmix.resolution``).
        The log-likelihood is a potential over the
        rows, each marginalized over components and multiplied by its sample weight.
    """
    K, D = n_components, n_features
    univariate = D == 1
    with pm.Model() as model:
        X = pm.Data("X", np.zeros((2, D)), shape=(None, D))
        sample_weight = pm.Data("sample_weight", np.ones(2))
        concentration = pm.Data("weight_concentration", 1.0)
        mean_loc = pm.Data("mean_loc", np.zeros(D), shape=(D,))
        mean_scale = pm.Data("mean_scale", np.ones(D), shape=(D,))
        scale_prior = pm.Data("scale_prior", np.ones(D), shape=(D,))
        resolution = pm.Data("resolution", np.zeros(D), shape=(D,))

        weights = mixture_weights(K, weight_prior, concentration)
        if univariate:
            kwargs = {"transform": pm.distributions.transforms.ordered} if ordered else {}
            means = pm.Normal("means", mu=mean_loc[0], sigma=mean_scale[0], shape=K, **kwargs)
            if covariance_type == "tied":
                sigma = component_scale_prior("sigma", scale_prior[0], shape=())
                sigmas = pt.ones(K) * sigma
            else:
                sigmas = component_scale_prior("sigmas", scale_prior[0], shape=K)
            sigmas = sheppard_sd(sigmas, resolution[0])
            loglik = normal_mixture_loglik(X, sample_weight, pt.log(weights), means[:, None], sigmas[:, None])
        else:
            means = pm.Normal("means", mu=mean_loc, sigma=mean_scale, shape=(K, D))
            if covariance_type in ("diag", "spherical"):
                shape = (K, D) if covariance_type == "diag" else (K, 1)
                sigmas = component_scale_prior("sigmas", scale_prior if covariance_type == "diag" else scale_prior.mean(), shape=shape)
                if covariance_type == "spherical":
                    sigmas = pt.broadcast_to(sigmas, (K, D))
                sigmas = sheppard_sd(sigmas, resolution[None, :])
                loglik = normal_mixture_loglik(X, sample_weight, pt.log(weights), means, sigmas)
            else:
                sd_dist = pm.Gamma.dist(alpha=2.0, beta=2.0 / scale_prior, shape=D)
                if covariance_type == "tied":
                    chol = pm.LKJCholeskyCov("chol", n=D, eta=lkj_eta, sd_dist=sd_dist, compute_corr=False)
                    chol = pm.expand_packed_triangular(D, chol, lower=True)
                    pm.Deterministic("covariance", chol @ chol.T)
                    chols = pt.broadcast_to(chol, (K, D, D))
                else:
                    chols = []
                    for k in range(K):
                        packed = pm.LKJCholeskyCov(f"chol_{k}", n=D, eta=lkj_eta, sd_dist=sd_dist, compute_corr=False)
                        chols.append(pm.expand_packed_triangular(D, packed, lower=True))
                    chols = pt.stack(chols)
                    pm.Deterministic("covariances", chols @ pt.swapaxes(chols, 1, 2))
                if rounded:
                    # Rounding adds resolution**2 / 12 to each variance (Sheppard).
                    covs = chols @ pt.swapaxes(chols, 1, 2) + pt.diag(resolution**2 / 12.0)
                    chols = pt.linalg.cholesky(covs)
                loglik = mvnormal_mixture_loglik(X, sample_weight, pt.log(weights), means, chols)
        pm.Potential("log_likelihood", loglik)
    return model
