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


def build_marginal_mixture(families, n_categories=0, weight_prior="dirichlet_distribution"):
    """Build the mixture model; assignments are marginalized by log-sum-exp.

    Parameters
    ----------
    families : sequence of Family
        One per component, in component order.
    n_categories : int
        Number of categories (codes 0..C-1) when the families are "categorical".
    weight_prior : {"dirichlet_distribution", "dirichlet_process"}
        The weights prior (``bayesmix.models.weights``).

    Returns
    -------
    pm.Model
        Free variables ``weights`` (K) and ``{family}_{param}`` (one entry per component
        of that family, in order of appearance); data containers ``X`` (N,),
        ``sample_weight`` (N,), ``weight_concentration``, ``resolution`` (the data's
        rounding step, see ``Family.rounding``) and the data summaries ``mean``, ``sd``,
        ``log_mean``, ``log_sd``. The log-likelihood is a potential:
        each row's log mixture density times its sample weight.
    """
    K = len(families)
    groups = family_groups(families)
    with pm.Model() as model:
        X = pm.Data("X", np.ones(2), shape=(None,))
        sample_weight = pm.Data("sample_weight", np.ones(2), shape=(None,))
        concentration = pm.Data("weight_concentration", 1.0)
        resolution = pm.Data("resolution", 0.0)
        data = {name: pm.Data(name, 1.0 if "sd" in name else 0.0) for name in SUMMARIES}

        weights = mixture_weights(K, weight_prior, concentration)
        blocks, order = [], []
        for family, idx in groups:
            dists = family.priors(len(idx), {**data, "n_categories": int(n_categories)})
            missing = set(family.params) - set(dists)
            if missing:
                raise ValueError(f"Family {family.name!r}: priors gave no prior for {sorted(missing)}.")
            params = {p: model.register_rv(dists[p], family.variable(p)) for p in family.params}
            logp = family.logp(X[:, None], **family.rounded(X[:, None], resolution, params))
            blocks.append(logp)
            order.extend(idx.tolist())
        # Columns in family-group order; the weights are put in the same order (indexing
        # the (K,) weights rather than the (N, K) block keeps every shape static for JAX).
        component_logp = pt.concatenate(blocks, axis=1)
        row_loglik = pt.logsumexp(pt.log(weights)[np.asarray(order)] + component_logp, axis=1)
        pm.Potential("log_likelihood", (sample_weight * row_loglik).sum())
    return model


def raw_name(family, param, column):
    """Name of column ``column``'s parameter in the multivariate model (before stacking)."""
    return f"{family.variable(param)}__x{column}"


def build_multivariate_mixture(n_components, column_families, n_categories, weight_prior="dirichlet_distribution"):
    """Build a mixture of K components over D conditionally independent columns.

    Parameters
    ----------
    n_components : int
    column_families : sequence of Family
        The family of each column (the same in every component).
    n_categories : sequence of int
        Number of categories of each "categorical" column (0 for the others).
    weight_prior : {"dirichlet_distribution", "dirichlet_process"}
        The weights prior (``bayesmix.models.weights``).

    Returns
    -------
    pm.Model
        Free variables ``weights`` (K) and, per column ``j``, ``{family}_{param}__x{j}``
        (K, or (K, C) for category probabilities); data containers ``X`` (N, D; missing
        values filled with a value in the support), ``mask`` (N, D; 1 where observed),
        ``sample_weight`` (N,), ``weight_concentration``, ``resolution`` (D,) and the
        per-column summaries ``mean``, ``sd``, ``log_mean``, ``log_sd`` (D,). Each row's
        log-likelihood sums the columns it has (missing values are marginalized out)
        inside each component.
    """
    K, D = n_components, len(column_families)
    with pm.Model() as model:
        X = pm.Data("X", np.ones((2, D)), shape=(None, D))
        mask = pm.Data("mask", np.ones((2, D)), shape=(None, D))
        sample_weight = pm.Data("sample_weight", np.ones(2), shape=(None,))
        concentration = pm.Data("weight_concentration", 1.0)
        resolution = pm.Data("resolution", np.zeros(D), shape=(D,))
        summaries = {
            name: pm.Data(name, np.full(D, 1.0 if "sd" in name else 0.0), shape=(D,)) for name in SUMMARIES
        }
        weights = mixture_weights(K, weight_prior, concentration)
        joint = pt.log(weights)[None, :]
        for j, family in enumerate(column_families):
            data = {name: value[j] for name, value in summaries.items()}
            data["n_categories"] = int(n_categories[j])
            dists = family.priors(K, data)
            params = {p: model.register_rv(dists[p], raw_name(family, p, j)) for p in family.params}
            x = X[:, j : j + 1]
            joint = joint + mask[:, j : j + 1] * family.logp(x, **family.rounded(x, resolution[j], params))
        row_loglik = pt.logsumexp(joint, axis=1)
        pm.Potential("log_likelihood", (sample_weight * row_loglik).sum())
    return model
