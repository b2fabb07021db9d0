"""
Label switching
===============

A mixture's likelihood does not change when its components swap labels, so chains (and
draws within a chain) can land in different labelings. Summaries of the components are
meaningless until the labels are made consistent. Every estimator does this after
fitting, through its ``relabel=`` parameter:

==============  ==========================================================================
method          what it does
==============  ==========================================================================
``"ordered"``   orders the means inside the model (1-D Gaussian mixtures)
``"sort"``      orders every draw by a parameter (the means, first feature); the default
                for 1-D Gaussian mixtures
``"stephens"``  Stephens (2000): per draw, the permutation closest (KL) to the average
                classification probabilities
``"ecr"``       Papastamoulis & Iliopoulos (2010): per draw, the permutation that best
                matches a pivot allocation
``"auto"``      a sensible choice per model
==============  ==========================================================================
"""

# %%
# Stephens' method on three components
# ------------------------------------
#
# Four chains on three components. ``relabel_diagnostics_`` says how many draws of each
# chain had to be permuted and what R-hat was before and after: a chain that switched
# labels shows a share above 0 and an R-hat before that is far above 1. With components
# this well separated the sampler rarely switches, and the shares may well be 0; the
# relabeling then costs nothing and changes nothing, which is what it should do.

import arviz as az
import matplotlib.pyplot as plt
import numpy as np

from bayesmix import BayesianGaussianMixture

rng = np.random.default_rng(3)
X = np.concatenate([rng.normal(m, 1.0, 120) for m in (-5, 0, 5)])[:, None]
est = BayesianGaussianMixture(
    3, relabel="stephens", draws=500, tune=500, chains=4, random_state=2
).fit(X)
print("converged:", est.converged_)
diag = est.relabel_diagnostics_
print("share of draws permuted per chain", diag["permuted_share"])
print("R-hat before", {k: round(v, 3) for k, v in diag["rhat_before"].items()})
print("R-hat after", {k: round(v, 3) for k, v in diag["rhat_after"].items()})

# %%
# The relabeled means, one colour per chain:

az.plot_trace(est.idata_, var_names=["means"], figsize=(11, 3))
plt.tight_layout()

# %%
# Any posterior
# -------------
#
# :func:`bayesmix.relabel` works on any ArviZ posterior, also one you sampled with PyMC
# yourself; for "stephens" and "ecr" it computes responsibilities for a 1-D normal mixture
# (weights, means, sigmas) or takes yours as ``log_resp``.

from bayesmix import relabel

relabeled, perms = relabel(est.idata_, method="sort", by="means")
print(perms.shape)
