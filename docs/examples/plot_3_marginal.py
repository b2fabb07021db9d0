"""
Mixtures of any families
========================

:class:`bayesmix.MarginalMixture` mixes components from different families (normal,
student_t, laplace, skew_normal, lognormal, gamma, exponential, poisson,
negative_binomial, or your own), with the component assignments summed out so that NUTS
can sample the model.
"""

# %%
# A normal and a heavy-tailed component
# -------------------------------------

import matplotlib.pyplot as plt
import numpy as np

from bayesmix import MarginalMixture

rng = np.random.default_rng(0)
x = np.concatenate([rng.normal(-2, 1, 400), 3 + rng.standard_t(3, 600)])[:, None]
est = MarginalMixture(
    ["normal", "student_t"], draws=500, tune=500, chains=2, backend="jax", random_state=0
).fit(x)
print("converged:", est.converged_)
print("weights", est.weights_.round(3), "(true 0.4 / 0.6)")
print("locations", np.round(est.locations_, 3), "(true -2 / 3)")

# %%
# The posterior predictive density over the data (log scale, to show the heavy tail), and
# a posterior predictive check with replicated data sets from ``est.sample``.

grid = np.linspace(x.min(), x.max(), 400)[:, None]
replicated, _ = est.sample(20 * len(x))
bins = np.histogram_bin_edges(x, bins=60)
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
axes[0].hist(x[:, 0], bins=bins, density=True, color="0.8", label="data")
axes[0].plot(grid[:, 0], np.exp(est.score_samples(grid)), lw=2, label="posterior predictive")
axes[0].set_yscale("log")
axes[0].legend()
for rep in replicated[:, 0].reshape(20, len(x)):
    axes[1].hist(rep, bins=bins, density=True, histtype="step", color="C0", alpha=0.3)
axes[1].hist(x[:, 0], bins=bins, density=True, histtype="step", color="k", lw=2, label="data")
axes[1].set_title("posterior predictive check")
axes[1].legend()
fig.tight_layout()

# %%
# Counts
# ------
#
# Counts mix with counts:

counts = np.concatenate([rng.poisson(2, 500), rng.poisson(10, 500)])[:, None]
est = MarginalMixture(
    ["poisson", "poisson"], draws=500, tune=500, chains=2, backend="jax", random_state=0
).fit(counts)
print("converged:", est.converged_)
print(est.component_params_)

# %%
# Mixing counts with real-valued families, or data outside a family's support (negative
# values for gamma, non-integers for poisson), is a ``ValueError`` that says which:

try:
    MarginalMixture(["poisson", "poisson"]).fit(counts + 0.5)
except ValueError as error:
    print(error)

# %%
# Each posterior draw's component assignments, as a Gibbs sampler would give them, are
# one call away on every estimator:

z = est.sample_assignments(counts)  # (chains, draws, rows)
print(z.shape, np.bincount(z[0, 0]))

# %%
# Register your own family with ``bayesmix.register_family(bayesmix.Family(...))``; see
# :class:`bayesmix.Family` for the fields.
