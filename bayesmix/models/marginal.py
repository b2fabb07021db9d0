"""PyMC model of a univariate mixture of components from several families."""

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from .weights import mixture_weights

SUMMARIES = ("mean", "sd", "log_mean", "log_sd")


def family_groups(families):
    """Families in order of first appearance, each with its global component indices."""
    groups = {}
    for k, family in enumerate(families):
        groups.setdefault(family.name, (family, []))[1].append(k)
    return [(family, np.asarray(idx)) for family, idx in groups.values()]


def build_marginal_mixture(families, weight_prior="dirichlet_distribution"):
    """Build the mixture model; assignments are marginalized by log-sum-exp.

    Parameters
    ----------
    families : sequence of Family
        One per component, in component order.
    weight_prior : {"dirichlet_distribution", "dirichlet_process"}
        The weights prior (``bayesmix.models.weights``).

    Returns
    -------
    pm.Model
        Free variables ``weights`` (K) and ``{family}_{param}`` (one entry per component
        of that family, in order of appearance); data containers ``X`` (N,),
        ``sample_weight`` (N,), ``weight_concentration`` and the data summaries
        ``mean``, ``sd``, ``log_mean``, ``log_sd``. The log-likelihood is a potential:
        each row's log mixture density times its sample weight.
    """
    K = len(families)
    groups = family_groups(families)
    with pm.Model() as model:
        X = pm.Data("X", np.ones(2), shape=(None,))
        sample_weight = pm.Data("sample_weight", np.ones(2), shape=(None,))
        concentration = pm.Data("weight_concentration", 1.0)
        data = {name: pm.Data(name, 1.0 if "sd" in name else 0.0) for name in SUMMARIES}

        weights = mixture_weights(K, weight_prior, concentration)
        blocks, order = [], []
        for family, idx in groups:
            dists = family.priors(len(idx), data)
            missing = set(family.params) - set(dists)
            if missing:
                raise ValueError(f"Family {family.name!r}: priors gave no prior for {sorted(missing)}.")
            params = {p: model.register_rv(dists[p], family.variable(p)) for p in family.params}
            logp = family.logp(X[:, None], **params)
            blocks.append(logp)
            order.extend(idx.tolist())
        # Columns in family-group order; the weights are put in the same order (indexing
        # the (K,) weights rather than the (N, K) block keeps every shape static for JAX).
        component_logp = pt.concatenate(blocks, axis=1)
        row_loglik = pt.logsumexp(pt.log(weights)[np.asarray(order)] + component_logp, axis=1)
        pm.Potential("log_likelihood", (sample_weight * row_loglik).sum())
    return model
