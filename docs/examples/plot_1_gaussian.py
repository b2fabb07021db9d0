"""
Gaussian mixtures
=================

:class:`bayesmix.BayesianGaussianMixture` is the Bayesian counterpart of scikit-learn's
``GaussianMixture``: the same ``covariance_type`` options ("full", "tied", "diag",
"spherical") and fitted attribute shapes, but fitted by sampling the posterior instead of
by EM or variational inference. ``weights_``, ``means_`` and ``covariances_`` are posterior
means; ``precisions_`` (and ``precisions_cholesky_``) are the inverses of ``covariances_``,
as scikit-learn computes them from its point estimate, not the posterior mean of the
precision (which is larger); compute that from ``idata_`` if you need it.
"""

# %%
# Old Faithful waiting times
# --------------------------
#
# Two components on the 272 waiting times between eruptions of the Old Faithful geyser.
# Small sampler settings keep the page quick to build; the convergence checks below say
# whether they were enough.

import matplotlib.pyplot as plt

from bayesmix import BayesianGaussianMixture, datasets
from bayesmix.plotting import plot_fit, plot_ppc

faithful = datasets.load_faithful()
X = faithful[["waiting"]]
est = BayesianGaussianMixture(
    2, draws=500, tune=500, chains=2, random_state=0
).fit(X)
print("weights", est.weights_.round(3))
print("means", est.means_.ravel().round(2))
report = est.convergence_
print(f"converged: {est.converged_} (largest R-hat {report['rhat_max']:.3f}, smallest bulk "
      f"ESS {report['ess_bulk_min']:.0f}, {report['n_divergent']} divergences)")
print(est.summary()[["mean", "hdi_5%", "hdi_95%", "r_hat", "ess_bulk"]].round(3))

# %%
# The published maximum-likelihood fit (mixtools ``normalmixEM``, equal variances) has
# weights 0.361 / 0.639 and means 54.61 / 80.09; the posterior means agree, and the
# posterior adds their uncertainty.
#
# The fitted density with a band holding 90% of the per-draw densities, and a posterior
# predictive check: 50 replicated data sets drawn with ``est.sample`` against the data.

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
plot_fit(est, X, ax=axes[0])
plot_ppc(est, X, ax=axes[1])
fig.tight_layout()

# %%
# The posterior itself is an ArviZ ``InferenceData`` in ``est.idata_`` (already
# relabeled), so every ArviZ plot applies:

import arviz as az

az.plot_trace(est.idata_, var_names=["weights", "means"], compact=True, figsize=(11, 4))
plt.tight_layout()

# %%
# ``est.sample_posterior_predictive()`` adds a ``posterior_predictive`` group to
# ``idata_``: for every posterior draw, one replicate of the training data (each row's
# component drawn from that draw's weights, its value from that component). It has the
# variable and dimensions of ``observed_data``, so ArviZ's own posterior predictive check
# works on it, as in PyMC's mixture examples:

est.sample_posterior_predictive(random_state=0)
print(est.idata_.posterior_predictive["X"].shape)  # (chain, draw, X_row, feature)
az.plot_ppc(est.idata_, num_pp_samples=50, random_seed=0, figsize=(6, 3))
plt.tight_layout()

# %%
# Two features, predictions and samples
# -------------------------------------
#
# Both columns, three components sharing one full covariance matrix (``"tied"``; mclust's
# BIC picks this model, see :doc:`plot_6_comparison`).

est2 = BayesianGaussianMixture(
    3, covariance_type="tied", draws=500, tune=500, chains=2, random_state=0
).fit(faithful)
print("converged:", est2.converged_)
proba = est2.predict_proba(faithful)  # averaged over posterior draws
print(proba[:3].round(3), proba.sum(axis=1)[:3])
X_new, labels = est2.sample(5)  # posterior predictive rows
print(X_new.round(2), labels)
print("mean log predictive density", round(est2.score(faithful), 3))

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
plot_fit(est2, faithful, ax=axes[0])
replicated, _ = est2.sample(len(faithful))
axes[1].scatter(faithful["eruptions"], faithful["waiting"], s=8, color="k", label="data")
axes[1].scatter(replicated[:, 0], replicated[:, 1], s=8, alpha=0.5, label="one replicate")
axes[1].set_xlabel("eruptions")
axes[1].set_title("posterior predictive check")
axes[1].legend()
fig.tight_layout()

# %%
# Priors
# ------
#
# The model runs on standardized data; the defaults are stated on your scale and, after
# fitting, stored in the ``*_prior_`` attributes:
#
# ====================================  ====================================  ====================
# parameter                             prior                                 default
# ====================================  ====================================  ====================
# ``weight_concentration_prior``        weights ~ Dirichlet(a, ..., a)        a = 1 / n_components
# ``mean_prior``, ``mean_prior_scale``  each mean ~ Normal(m, s) per feature  mean, 2 x sd of data
# ``scale_prior``                       each sd ~ Gamma(2, 2 / scale)         0.5 x sd of data
# ``lkj_eta``                           correlations ~ LKJ(eta)               2
# ====================================  ====================================  ====================
#
# The sd prior has mean ``scale``; the LKJ prior applies to "full" and "tied".
#
# ``weight_concentration_prior_type`` and ``weight_concentration_prior`` carry
# scikit-learn's names. ``"dirichlet_distribution"`` (the default here) treats every
# component alike; ``"dirichlet_process"`` (scikit-learn's default) is stick-breaking
# truncated at ``n_components``, ``Beta(1, a)`` sticks whose expected weights shrink
# geometrically, so an overfitted K leaves the superfluous components nearly empty.
# Either way the weights are sampled, not fitted by variational inference. By default
# ``a = 1 / n_components`` for the distribution, as in scikit-learn: below 1 the
# components the data do not need empty out, which is what lets an overfitted K converge;
# the process keeps ``a = 1`` (uniform sticks; ``Beta(1, 1/K)`` sticks are hard to sample).
#
# The Gamma(2, .) prior has zero density at zero, so a component cannot collapse onto a
# single point (the degenerate maxima of a mixture likelihood).

print(est.mean_prior_, est.mean_prior_scale_, est.scale_prior_)

# %%
# Saving
# ------
#
# ``est.save`` writes a netCDF file with the posterior, the parameters and the bayesmix
# version; :func:`bayesmix.load` reads it back.

import os
import tempfile

import bayesmix

path = os.path.join(tempfile.mkdtemp(), "faithful.nc")
est.save(path)
again = bayesmix.load(path)
print((again.predict_proba(X) == est.predict_proba(X)).all())
