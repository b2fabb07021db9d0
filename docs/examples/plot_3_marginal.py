"""
Mixtures of any families
========================

:class:`bayesmix.MarginalMixture` mixes components from different families (normal,
student_t, laplace, skew_normal, lognormal, gamma, exponential, poisson,
negative_binomial, bernoulli, categorical, or your own), on one column or several, with
the component assignments summed out so that NUTS can sample the model.
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
# Several columns: latent class and latent profile analysis, mixed data
# ---------------------------------------------------------------------
#
# With several columns, each column has one family (the same in every component) and the
# columns are independent within a component. Give each component a family for every
# column (``MarginalMixture(["categorical"] * 3)`` is a three-class latent class
# analysis, ``["normal"] * 3`` a latent profile analysis), a list with one family per
# column, or a mapping from column names to families. ``"bernoulli"`` columns hold 0/1;
# ``"categorical"`` columns hold any numeric codes, whose distinct values in ``fit`` are
# the categories (``categories_``; an unseen code at predict time is a ``ValueError``),
# unless ``categories=`` lists them per column as in scikit-learn's ``OneHotEncoder``
# (a survey answer nobody gave still gets its probability).
# Missing values (NaN) are marginalized out: a row contributes the columns it has.
#
# Two groups of 300 people with a real-valued, a yes/no, a three-level and a count
# column, and 10% of all values missing:

import pandas as pd

rng = np.random.default_rng(1)
n = 300
group = rng.uniform(size=n) < 0.4
people = pd.DataFrame({
    "age": np.where(group, rng.normal(35, 5, n), rng.normal(60, 8, n)),
    "smoker": np.where(group, rng.uniform(size=n) < 0.7, rng.uniform(size=n) < 0.2).astype(float),
    "diet": np.where(group, rng.choice([1, 2, 3], n, p=[0.7, 0.2, 0.1]),
                     rng.choice([1, 2, 3], n, p=[0.1, 0.3, 0.6])).astype(float),
    "visits": np.where(group, rng.poisson(1, n), rng.poisson(5, n)).astype(float),
})
people = people.mask(rng.uniform(size=people.shape) < 0.1)
print(people.head())

families = {"age": "normal", "smoker": "bernoulli", "diet": "categorical", "visits": "poisson"}
mixed = MarginalMixture(
    [families] * 2, draws=500, tune=500, chains=2, backend="jax", random_state=0
).fit(people)
print("converged:", mixed.converged_)
print("weights", mixed.weights_.round(3), "(true 0.4 / 0.6)")
for k, params in enumerate(mixed.component_params_):
    print(f"component {k}:", {name: np.round(value, 2).tolist() for name, value in params.items()})
labels = mixed.predict(people)
agreement = np.mean(labels == group)
print("agreement with the true groups:", round(max(agreement, 1 - agreement), 3))

# %%
# The posterior holds each family's parameters with a ``{family}_feature`` dimension
# (``normal_mu``, ``bernoulli_p``, ``poisson_rate`` ...) and each categorical column's
# category probabilities as ``{column}_p`` (here ``diet_p``, over ``diet_category``).
# All components share one layout of families, so they are relabeled together
# (``relabel="auto"`` is then ``"stephens"``).

print(list(mixed.idata_.posterior.data_vars))

# %%
# Register your own family with ``bayesmix.register_family(bayesmix.Family(...))``; see
# :class:`bayesmix.Family` for the fields.
