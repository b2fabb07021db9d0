"""
Mixtures of regressions
=======================

:class:`bayesmix.BayesianMixtureRegression` fits K linear regressions,
``y = intercept_k + X @ coef_k + noise_k`` with probability ``w_k``, what R's flexmix and
mixtools fit by EM. With ``gating=True`` the mixing weights depend on ``X`` through a
softmax (a mixture of experts); with ``family=`` each component is a generalized linear
model for counts, binary or positive responses.
"""

# %%
# Tone perception
# ---------------
#
# 150 judgements of a tone's pitch against the stretch ratio of its harmonics (Cohen 1980):
# some listeners follow the fundamental (a flat line near 2), others the stretched
# harmonics (a line of slope about 1).

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bayesmix import BayesianMixtureRegression, datasets

tone = datasets.load_tonedata()
X, y = tone[["stretchratio"]], tone["tuned"]
est = BayesianMixtureRegression(2, random_state=0).fit(X, y)
print("converged:", est.converged_)
order = np.argsort(est.intercept_)
print("intercepts", est.intercept_[order].round(3))
print("slopes", est.coef_[order, 0].round(3))
print("sigmas", est.sigma_[order].round(3))
print("weights", est.weights_[order].round(3))

# %%
# The published fit (multi-start EM): weights 0.698 / 0.302, lines 1.9164 + 0.0425 x
# (sigma 0.046) and -0.0193 + 0.9923 x (sigma 0.133). A spurious optimum with sigma near
# 0.005 has a higher likelihood; the zero-avoiding prior on the sigmas keeps the posterior
# away from it.
#
# The lines of 100 posterior draws over the data, coloured by the most probable
# component, and a posterior predictive check: responses drawn with ``est.sample(X)`` at
# the observed stretch ratios.

post = est.idata_.posterior
intercepts = post["intercept"].values.reshape(-1, 2)
slopes = post["coef"].values.reshape(-1, 2)
grid = np.linspace(X["stretchratio"].min(), X["stretchratio"].max(), 2)
labels = est.predict_proba(X, y).argmax(axis=1)

fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
axes[0].scatter(X["stretchratio"], y, c=labels, cmap="tab10", vmin=0, vmax=9, s=12)
for i in np.random.default_rng(0).choice(len(intercepts), 100, replace=False):
    for k in range(2):
        axes[0].plot(grid, intercepts[i, k] + slopes[i, k] * grid, color=f"C{k}", alpha=0.05)
axes[0].set_xlabel("stretch ratio")
axes[0].set_ylabel("tuned")
axes[0].set_title("posterior lines")
replicated = est.sample(X, n_samples=20, random_state=1)  # (20, n_rows)
for rep in replicated:
    axes[1].scatter(X["stretchratio"], rep, s=3, color="C0", alpha=0.1)
axes[1].scatter(X["stretchratio"], y, s=8, color="k", label="data")
axes[1].set_xlabel("stretch ratio")
axes[1].set_title("posterior predictive check (20 replicates)")
axes[1].legend()
fig.tight_layout()

# %%
# Predictions
# -----------
#
# - ``predict(X)``: posterior mean of E[y | X].
# - ``predict_proba(X, y)``: membership given both; ``predict_proba(X)``: the mixing
#   weights.
# - ``score(X, y)``: mean log predictive density of y given X (R² is one
#   ``sklearn.metrics`` call away).
# - ``sample(X, n_samples)``: posterior predictive draws of y.

print(est.predict(X[:3]).round(3))
print(est.predict_proba(X[:3], y[:3]).round(3))
print(round(est.score(X, y), 3))

# %%
# In a pipeline
# -------------
#
# flexmix's ``NPreg`` data: two quadratic regressions. ``PolynomialFeatures`` makes the
# square, and ``GridSearchCV`` compares K = 1 and 2 by held-out log predictive density
# (``score``), then refits the better K on all rows. The search refits the same model
# structure on every fold, so each K compiles once. Every fold's fit runs the
# convergence checks, so any fit that fails them warns here, by name and K. (The
# ``RuntimeWarning`` from ArviZ about an invalid divide, if shown, comes from K = 1,
# whose single weight is the constant 1 and has no R-hat.)

from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PolynomialFeatures

npreg = datasets.load_npreg()
pipe = Pipeline([
    ("poly", PolynomialFeatures(2, include_bias=False)),
    ("mix", BayesianMixtureRegression(random_state=0)),
])
search = GridSearchCV(pipe, {"mix__n_components": [1, 2]}, cv=3).fit(npreg[["x"]], npreg["yn"])
print(search.best_params_, "mean held-out log density per K:",
      search.cv_results_["mean_test_score"].round(3))
mix = search.best_estimator_.named_steps["mix"]
print("converged:", mix.converged_)
print("intercepts", mix.intercept_.round(2))
print("coefficients (x, x^2)", mix.coef_.round(3).tolist())

# %%
# flexmix's published fit: components (-0.2087, 4.8161, 0.0363; sigma 3.475) and
# (14.7176, 9.8456, -0.9682; sigma 3.481), weights 0.494 / 0.506; see
# :doc:`plot_6_comparison` for the whole comparison.
#
# Every fit on this page uses the estimator's defaults (1000 draws on 4 chains, numba
# backend) and passes its convergence checks (``converged_``); a fit that did not would
# say so in a warning.

# %%
# Counts, binary and positive responses (mixtures of GLMs)
# --------------------------------------------------------
#
# ``family=`` makes each component a generalized linear model (flexmix's ``FLXMRglm``):
# ``"poisson"``, ``"negative_binomial"`` (dispersion ``alpha``) and ``"gamma"``
# (``shape``) with a log link, ``"binomial"`` (pass ``trials=``) and ``"bernoulli"`` with
# a logit link. Offsets (the log of each row's exposure) go to
# ``fit(X, y, offset=np.log(exposure))`` and to every predictive method, as do
# ``trials``; ``predict`` is the posterior mean response, ``predict_proba(X, y)`` the
# memberships, ``score`` the mean log predictive density (a probability mass for
# counts) and ``sample(X)`` draws of ``y``. Responses outside the family's support
# (negative or non-integer counts, ``y > trials``) are a ``ValueError``.
#
# flexmix's ``patent`` data: the number of patents of 70 pharmaceutical companies
# against their log R&D spending, two Poisson regressions. flexmix's fit
# (``stepFlexmix(Patents ~ lgRD, model = FLXMRglm(family = "poisson"), k = 2)``):
# intercepts -0.1623 / 1.7009, slopes 1.0262 / 0.7256, weights 0.704 / 0.296,
# log-likelihood -219.637.

patent = datasets.load_patent()
glm = BayesianMixtureRegression(2, family="poisson", tune=1000, random_state=0).fit(
    patent[["lgRD"]], patent["Patents"]
)
print("converged:", glm.converged_)
order = np.argsort(glm.intercept_)
print("intercepts", glm.intercept_[order].round(3))
print("slopes", glm.coef_[order, 0].round(3))
print("weights", glm.weights_[order].round(3))
print("expected patents at lgRD = 0, 2:", glm.predict(pd.DataFrame({"lgRD": [0.0, 2.0]})).round(2))

# %%
# The posterior means lie close to flexmix's maximum-likelihood fit (a posterior mean is
# not an MLE, and with 70 companies the intervals are wide: ``glm.summary()`` gives
# them); at these settings (1000 draws on 2 chains) the fit passes its convergence
# checks. The validation report in the repository (``benchmarks/validation/report.md``)
# compares the three-component fit with flexmix's as well.
#
# With exposures, counts per unit exposure are modelled by an offset, given again to
# every predictive method for its own rows::
#
#     est = BayesianMixtureRegression(2, family="poisson").fit(X, y, offset=np.log(exposure))
#     est.predict(X_new, offset=np.log(exposure_new))  # expected counts at those exposures
#
# and a binomial response takes its numbers of trials the same way
# (``fit(X, successes, trials=n)``). The posterior has no ``sigma`` for these families;
# ``"negative_binomial"`` and ``"gamma"`` have ``alpha`` or ``shape`` per component
# (``dispersion_``).
