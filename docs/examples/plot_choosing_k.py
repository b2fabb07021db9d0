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
base = BayesianGaussianMixture(draws=500, tune=500, chains=2, backend="jax", random_state=0)
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
# How to read the table. The elpd of K = 2, 3 and 4 differ by less than their standard
# errors (``dse``), so the data cannot tell them apart, and the parsimonious rule takes
# the smallest of them. The stacking weights (``weight``) answer a different question:
# which *combination* of the fitted models predicts best. Nested mixtures predict
# almost alike, so stacking puts its weight on one or two of them and gives the others
# weight 0 even when their elpd is as good; a weight of 0 is not evidence against a K.
#
# The fits with more components than the data support can fail their convergence checks
# at these short settings (a superfluous component has no data to pin it down, so its
# chains wander); the ``ConvergenceWarning`` above then names them, and their elpd is
# less reliable. The chosen fit's own checks are printed above.
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

from bayesmix import posterior_n_components

probs, fitted = posterior_n_components(base, X, k_max=6)
print(probs.round(3))
print("converged:", fitted.converged_)

fig, ax = plt.subplots(figsize=(5, 3))
ax.bar(probs.index, probs.values)
ax.set_xlabel("number of occupied components")
ax.set_ylabel("posterior probability")
fig.tight_layout()
