"""
Choosing the number of components
=================================

:class:`bayesmix.SelectK` (and the function :func:`bayesmix.select_k`) fits one clone of
an estimator for every K in ``k_range`` and compares them by expected log predictive
density (elpd):

- ``method="loo"``: PSIS-LOO (ArviZ ``loo``) on each fit's pointwise log-likelihood; a
  Pareto k above 0.7 means LOO is unreliable for that fit and a warning says to use
  K-fold.
- ``method="kfold"``: K-fold cross-validated log predictive density with any
  scikit-learn splitter (``cv=``).
- ``method="auto"`` (default): LOO while its Pareto k diagnostics are sound, else K-fold;
  ``method_`` and ``method_reason_`` say which was used and why. WAIC is reported beside
  LOO.

``comparison_`` is shaped like ArviZ's ``compare`` (elpd, se, elpd_diff, dse, stacking
weights). By default (``selection="parsimonious"``) ``best_k_`` is the smallest K whose
elpd is within ``max(dse, 4)`` of the best: a mixture with too many components contains
the right one, so their elpd differ by noise only. ``selection="best"`` takes the highest
elpd.

How often this finds the true K of simulated 1-D mixtures (20 data sets of 200 rows per
K in 1-4): every time when neighbouring means are 6 standard deviations apart; when they
are 2 apart it still recognises a single component but seldom more than two, erring
towards fewer components, never more (``benchmarks/validation/report.md`` in the
repository).
"""

# %%
# Lake acidity, K = 1 to 4
# ------------------------
#
# The log acidity index of 155 lakes. Richardson & Green (1997) put most posterior mass on
# K = 2 to 4 for these data; mclust's BIC picks K = 2 with equal variances.

import matplotlib.pyplot as plt

from bayesmix import BayesianGaussianMixture, datasets, select_k
from bayesmix.plotting import plot_comparison, plot_fit

X = datasets.load_acidity()
base = BayesianGaussianMixture(draws=1000, tune=1000, chains=2, backend="jax", random_state=0)
selection = select_k(base, X, k_range=range(1, 5), method="loo")
print("best K:", selection.best_k_, "by", selection.method_)
print(selection.comparison_[["elpd", "se", "elpd_diff", "dse", "weight", "pareto_k_max"]].round(2))
for k, fit in sorted(selection.estimators_.items()):
    report = fit.convergence_
    print(f"K={k}: converged {fit.converged_}, R-hat {report['rhat_max']:.3f}, "
          f"smallest bulk ESS {report['ess_bulk_min']:.0f}, divergences {report['n_divergent']}")

# %%
# Each K's elpd with one standard error, and the chosen fit:

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
plot_comparison(selection, ax=axes[0])
plot_fit(selection.best_estimator_, X, ax=axes[1])
fig.tight_layout()

# %%
# How to read the table. The elpd of K = 2, 3 and 4 lie within a few units of each other,
# small against their standard errors, so the data cannot tell them apart, and the
# parsimonious rule takes the smallest K within ``max(dse, 4)`` of the best. The stacking
# weights (``weight``) answer a different question: which *combination* of the fitted
# models predicts best. Nested mixtures predict almost alike, so stacking puts its
# weight on one or two of them and gives the others weight 0 even when their elpd is as
# good; a weight of 0 is not evidence against a K.
#
# Convergence, said plainly: the lines printed above give each K's checks at these
# settings (1000 draws on 2 chains). K = 1 and the chosen K = 2 pass. The larger K can
# fail narrowly (the ``ConvergenceWarning`` names them): three or four components on 155
# rows can split a group in more than one way, a harder posterior for which 2 chains of
# 1000 draws are not quite enough. Their elpd is then less reliable, which does not change the
# choice here (they are not clearly better than K = 2); with the defaults (4 chains)
# they pass more often. The Pareto k warning says the same about LOO for those fits:
# ``method="kfold"`` (or ``"auto"``) would re-check them by cross-validation.
#
# ``SelectK`` is an estimator too: it goes into a ``Pipeline``, under
# ``cross_val_score``, and runs its fits in parallel with ``n_jobs`` (joblib; also on a
# Dask cluster through joblib's dask backend). Each K compiles once.

# %%
# A posterior over K from one overfitted mixture
# ----------------------------------------------
#
# A mixture with many components and a small Dirichlet concentration empties the
# components it does not need; counting the non-empty components in each posterior draw
# gives a posterior over the number of components. Its fit is not relabeled (counting
# does not depend on the labels), and the empty components' parameters just follow their
# prior, so only the occupied-component count is meant to be read off it.

import numpy as np

from bayesmix import posterior_n_components

probs, fitted = posterior_n_components(base, X, k_max=6)
print(probs.round(3))

# %%
# The overfitted fit is not relabeled and its empty components wander over their prior,
# so its per-parameter R-hat says nothing about the count and its ``ConvergenceWarning``
# (above) is expected; empty components also make the sampler diverge, a sign to read the
# count with care. What has to agree between chains is the count itself:

z = fitted.sample_assignments(X, random_state=0)  # (chains, draws, rows)
occupied = np.stack([[len(np.unique(draw)) for draw in chain] for chain in z])
for chain, counts in enumerate(occupied):
    values, n = np.unique(counts, return_counts=True)
    shares = (n / n.sum()).round(3).tolist()
    print(f"chain {chain}:", dict(zip(values.tolist(), shares, strict=True)))

# %%
# Here the two chains do not agree on the count: both put most of their draws on two or
# three components, but in different shares. So this posterior over K has not converged
# at these settings either; read it as "two, perhaps three components", in line with
# the comparison above and with Richardson & Green, not as exact probabilities. More
# chains and draws (the defaults) narrow the disagreement.

fig, ax = plt.subplots(figsize=(5, 3))
ax.bar(probs.index, probs.values)
ax.set_xlabel("number of occupied components")
ax.set_ylabel("posterior probability")
fig.tight_layout()
