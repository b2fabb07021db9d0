"""
Performance
===========

Compiling a PyMC model costs seconds; sampling a small one about as much. bayesmix
compiles each model structure once per process and swaps each fit's data, sample weights
and prior values into the compiled model, so refits, cross-validation folds and grid
searches over priors compile nothing.
"""

# %%
# One compile per structure
# -------------------------

import numpy as np
from sklearn.base import clone

import bayesmix

rng = np.random.default_rng(0)
X = np.concatenate([rng.normal(-2, 1, 100), rng.normal(2, 1, 100)])[:, None]
est = bayesmix.BayesianGaussianMixture(
    2, draws=500, tune=500, chains=2, random_state=0
)
before = bayesmix.compile_count()
est.fit(X)
first = bayesmix.compile_count() - before
clone(est).fit(X + 0.5)
print("converged:", est.converged_)
print("compilations by the first fit:", first)
print("compilations by the refit on other data:", bayesmix.compile_count() - before - first)

# %%
# The first fit compiles unless an earlier example of these pages (they run in one
# process) already compiled the same structure, a 1-D two-component mixture; the refit
# on other data compiles nothing either way.
#
# Backends (``backend=``):
#
# - ``"numba"`` (default): nutpie's fastest sampler. The first fit on a machine compiles:
#   7-10 s from process start on two cores for the models with a whole-model kernel (see
#   below), 20-45 s for the others; later processes load the compiled code from disk
#   (about 1 s).
# - ``"jax"``: compiles in 1-4 s, samples several times slower (a Python call per
#   gradient). These pages use it for the models without a whole-model kernel, so that
#   they build quickly on a fresh machine.
# - ``"pymc"``: PyMC's own NUTS, for when nutpie is unavailable.
#
# Where the time goes
# -------------------
#
# For Gaussian mixtures with one feature, or with ``covariance_type="diag"`` or
# ``"spherical"``, the log-likelihood and its gradient are one fused operation: a single
# pass over the rows in compiled numba code, instead of a chain of PyTensor operations
# that walks the rows-by-components table several times. The pass takes the rows 256 at a
# time and computes ``exp`` and ``log`` with polynomials rather than calls into the C
# library, so that LLVM runs every loop on SIMD lanes (numba cannot vectorize library
# calls without Intel's SVML): about 1.3-1.5 ns per row and component at 10,000 rows and
# more, where a plain row-by-row numba kernel of the same mixture needs about 9 ns. The
# whole model (priors and transforms included) then costs about a seventh of that
# hand-written kernel at 100,000 rows and a twenty-fifth of PyMC's ``NormalMixture``
# (table (f) in the benchmark results); at 1,000 rows the roughly 80 small PyTensor
# operations of the priors and transforms cost as much as the likelihood. Full and tied
# covariances have a fused pass of their own (a triangular solve per component, on the
# same blocks of rows).
#
# nutpie samples through two C callbacks around PyTensor's compiled model: the log
# density with its gradient, and the map from the unconstrained point to the trace's
# variables. nutpie's own callbacks hold the model's data as constants, so numba cannot
# cache them and recompiles them in every process (about 10 s here). bayesmix generates
# them instead from source that reads the data through nutpie's pointer table and stores
# them in PyTensor's numba cache under a key of the model graph, so a new process loads
# them from disk (``bayesmix/_nutpie_numba.py``). The Gaussian mixtures, the regressions
# without gating and one-column ``MarginalMixture`` models of normal, Student-t and
# Laplace components skip PyTensor's graph altogether: their whole log-density (priors,
# transforms, likelihood) is one numba function whose sizes are run-time values
# (``bayesmix/models/kernels.py``), compiled once per machine for every K and D and
# checked against PyMC's log-density before it is used. On that first compile a second
# Python process compiles the callbacks' other half and the numba functions run after
# sampling, so that both cores work. A fresh process then fits a small model in under 4 s,
# about 2 s of it importing PyMC, and a refit of a compiled structure takes about half a
# second. After sampling, the Gaussian kernels give relabeling its responsibilities
# already normalized for 500 random rows, the pointwise log-likelihood (which does not
# depend on the labels) is computed in chunks of draws on the second core while
# relabeling runs and on both cores after it, and R-hat and effective sample sizes
# (ArviZ's numbers) are computed for all parameters at once. The SIMD loops run twice as
# many numbers per instruction on a CPU with AVX-512 as on one with AVX2 only; the same
# fits took 2.4-3x as long on the latter.
#
# Very large data: minibatch ADVI
# -------------------------------
#
# Past a few hundred thousand rows NUTS becomes slow, since every gradient visits every
# row. ``inference="advi"`` fits a mean-field normal approximation by stochastic
# optimization on random batches of rows (``batch_size``, default 1000; ``advi_steps``,
# default 20,000) and then draws ``draws`` samples from it. Its cost does not grow with
# the number of rows. Point estimates match NUTS closely, but mean-field ADVI understates
# uncertainty, so its intervals are too narrow; the benchmark's large-data table measures
# by how much. ``convergence_`` then reports whether the loss settled rather than R-hat;
# too few steps leave it unsettled and warn (with 5,000 steps the example below ends with
# its middle components misplaced and ``converged_`` False; with the default 20,000 it
# settles). Above 1e8 draw-by-row cells, fits keep no pointwise log-likelihood (it would
# not fit in memory), so choose K by ``method="kfold"``.

x = np.concatenate([rng.normal(-3, 1, 6000), rng.normal(0, 1, 8000), rng.normal(3, 1, 6000)])
est = bayesmix.BayesianGaussianMixture(3, inference="advi", random_state=0)
est.fit(x[:, None])
print("means:", est.means_.ravel().round(2), "converged:", est.converged_)

# %%
# Benchmarks against hand-written PyMC + nutpie, ``pm.sample`` and scikit-learn are in
# the repository's ``benchmarks/`` (``python3 benchmarks/bench_fit.py``; results in
# ``benchmarks/results/``, one file per section).
