"""First-fit benchmark: one fit of a new model structure on a machine with empty compile caches.

Usage: ``python benchmarks/bench_first_fit.py --out DIR [--repeats 3] [--only 1d,full,...]``;
``--refresh`` instead of ``--out DIR`` rewrites ``benchmarks/results/first_fit.md``.

Each measurement runs in a fresh ``python3`` process whose ``PYTENSOR_FLAGS`` names a new, empty
``base_compiledir`` and whose ``NUMBA_CACHE_DIR`` is a new, empty folder: what a user sees the
first time a structure is fitted on a fresh machine. The figure is the parent's wall time of the
whole process (interpreter start-up and imports included); beside it the child's own clock of
the fit call alone (after the imports). A second fresh process on the same,
now filled caches gives the "warm caches" column. Both caches are deleted after each repeat.

Every structure is fitted by bayesmix at its defaults (numba backend, 4 chains x (500 tune +
1000 draws), random_state=0) and by the PyMC model a user would write by hand, sampled with
``nutpie.sample(nutpie.compile_pymc_model(model), draws=1000, tune=500, chains=4)`` (numba
backend; the 1-D model's ordered means get spread starting points); the ratio bayesmix /
hand-written is taken in the same run. The case ``cli`` is the README's first command,
``python3 -m bayesmix fit --k 1-3``, which has no hand-written peer.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine_info import describe

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SAMPLE = """nutpie.sample(nutpie.compile_pymc_model(model, initial_points=INIT),
              draws=1000, tune=500, chains=4, seed=0, progress_bar=False)"""

# Each case: (description, data code, bayesmix code, hand-written code). The data code makes
# ``X`` (and ``y``); the fit code starts with its imports and ends with the fit.
CASES = {
    "1d": (
        "1-D Gaussian, K=3, N=1000",
        """
rng = np.random.default_rng(0)
X = np.concatenate([rng.normal(-3, 1, 300), rng.normal(0, 1, 400), rng.normal(3, 1, 300)])[:, None]
""",
        """
from bayesmix import BayesianGaussianMixture
MARK()
BayesianGaussianMixture(3, random_state=0).fit(X)
""",
        f"""
import nutpie, pymc as pm
MARK()
with pm.Model() as model:
    w = pm.Dirichlet("w", np.ones(3))
    mu = pm.Normal("mu", 0, 10, shape=3, transform=pm.distributions.transforms.ordered)
    sigma = pm.HalfNormal("sigma", 5, shape=3)
    pm.NormalMixture("x", w=w, mu=mu, sigma=sigma, observed=X[:, 0])
# Ordered means cannot start equal (PyMC's default start): spread them.
INIT = {{"mu": np.array([-2.0, 0.0, 2.0])}}
{SAMPLE}
""",
    ),
    "full": (
        "2-D Gaussian, full covariance, K=3, N=900",
        """
rng = np.random.default_rng(0)
cov = np.array([[1.0, 0.5], [0.5, 1.0]])
X = np.concatenate([rng.multivariate_normal(c, cov, 300) for c in ([-3, 0], [0, 3], [3, 0])])
""",
        """
from bayesmix import BayesianGaussianMixture
MARK()
BayesianGaussianMixture(3, covariance_type="full", random_state=0).fit(X)
""",
        f"""
import nutpie, pymc as pm
MARK()
with pm.Model() as model:
    w = pm.Dirichlet("w", np.ones(3))
    components = []
    for k in range(3):
        mu = pm.Normal(f"mu{{k}}", 0, 10, shape=2)
        chol, _, _ = pm.LKJCholeskyCov(f"chol{{k}}", n=2, eta=2.0, compute_corr=True,
                                       sd_dist=pm.HalfNormal.dist(5, shape=2))
        components.append(pm.MvNormal.dist(mu=mu, chol=chol))
    pm.Mixture("x", w=w, comp_dists=components, observed=X)
{SAMPLE}
""",
    ),
    "diag": (
        "5-D Gaussian, diagonal covariance, K=4, N=1000",
        """
rng = np.random.default_rng(0)
X = np.concatenate([rng.normal(rng.normal(0, 4, 5), 1, (250, 5)) for _ in range(4)])
""",
        """
from bayesmix import BayesianGaussianMixture
MARK()
BayesianGaussianMixture(4, covariance_type="diag", random_state=0).fit(X)
""",
        f"""
import nutpie, pymc as pm
MARK()
with pm.Model() as model:
    w = pm.Dirichlet("w", np.ones(4))
    mu = pm.Normal("mu", 0, 10, shape=(4, 5))
    sigma = pm.HalfNormal("sigma", 5, shape=(4, 5))
    # log p(x_n) = logsumexp_k [log w_k + sum_d log N(x_nd | mu_kd, sigma_kd)]
    per_component = pm.logp(pm.Normal.dist(mu, sigma), X[:, None, :]).sum(axis=-1)
    pm.Potential("x", pm.math.logsumexp(pm.math.log(w) + per_component, axis=1).sum())
{SAMPLE}
""",
    ),
    "regression": (
        "mixture of 2 linear regressions, 1 feature, N=500",
        """
rng = np.random.default_rng(0)
x = rng.uniform(-2, 2, 500)
y = np.where(rng.random(500) < 0.5, 1 + 2 * x, -1 - x) + rng.normal(0, 0.5, 500)
X = x[:, None]
""",
        """
from bayesmix import BayesianMixtureRegression
MARK()
BayesianMixtureRegression(n_components=2, random_state=0).fit(X, y)
""",
        f"""
import nutpie, pymc as pm
MARK()
with pm.Model() as model:
    w = pm.Dirichlet("w", np.ones(2))
    a = pm.Normal("a", 0, 10, shape=2)
    b = pm.Normal("b", 0, 10, shape=2)
    sigma = pm.HalfNormal("sigma", 5, shape=2)
    pm.NormalMixture("y", w=w, mu=a + b * X, sigma=sigma, observed=y)
{SAMPLE}
""",
    ),
    "marginal": (
        "normal + Student-t mixture, 1-D, N=500",
        """
rng = np.random.default_rng(0)
X = np.concatenate([rng.normal(-2, 1, 250), 3 + rng.standard_t(3, 250)])[:, None]
""",
        """
from bayesmix import MarginalMixture
MARK()
MarginalMixture(["normal", "student_t"], random_state=0).fit(X)
""",
        f"""
import nutpie, pymc as pm
MARK()
with pm.Model() as model:
    w = pm.Dirichlet("w", np.ones(2))
    mu = pm.Normal("mu", 0, 10, shape=2)
    sigma = pm.HalfNormal("sigma", 5, shape=2)
    nu = pm.Gamma("nu", 2.0, 0.1)
    components = [pm.Normal.dist(mu[0], sigma[0]),
                  pm.StudentT.dist(nu=nu, mu=mu[1], sigma=sigma[1])]
    pm.Mixture("x", w=w, comp_dists=components, observed=X[:, 0])
{SAMPLE}
""",
    ),
    "cli": ("README command 1: `python3 -m bayesmix fit --k 1-3`", None, None, None),
}
CLI = [sys.executable, "-m", "bayesmix", "fit", "--k", "1-3"]


def child_script(data, fit):
    """Make the script a child runs; ``MARK()`` after its imports starts the fit call's clock."""
    return ("import time\nimport numpy as np\n" + data
            + "INIT = None\n_marks = []\nMARK = lambda: _marks.append(time.perf_counter())\n" + fit
            + "_end = time.perf_counter()\nimport json\n"
            + "print('RESULT' + json.dumps({'fit': _end - _marks[0]}))\n")


def run_fresh(command, cache):
    """Run ``command`` in a fresh process on the caches under ``cache``; return its times (s)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(HERE.parent),
           "PYTENSOR_FLAGS": ",".join(filter(None, [os.environ.get("PYTENSOR_FLAGS"),
                                                     f"base_compiledir={cache / 'pytensor'}"])),
           "NUMBA_CACHE_DIR": str(cache / "numba")}
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=HERE.parent,
                         check=False)
    times = {"process": time.perf_counter() - start}
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])}... failed:\n{out.stderr[-3000:]}")
    for line in out.stdout.splitlines():
        if line.startswith("RESULT"):
            times.update(json.loads(line[len("RESULT"):]))
    return times


def measure(command, repeats):
    """Medians over ``repeats`` of a run on empty caches and a second one on the same caches."""
    runs = []
    for _ in range(repeats):
        cache = Path(tempfile.mkdtemp(prefix="bench_first_fit_"))
        try:
            first = run_fresh(command, cache)
            first["warm"] = run_fresh(command, cache)["process"]
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        runs.append(first)
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def main(argv=None):
    """Run the chosen cases, print the table and write it to ``first_fit.md``."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="folder for this run's table (created if needed)")
    where.add_argument("--refresh", action="store_true",
                       help=f"rewrite {RESULTS.relative_to(HERE.parent)}/first_fit.md")
    parser.add_argument("--repeats", type=int, default=3,
                        help="repeats per measurement (default: 3)")
    parser.add_argument("--only", default=",".join(CASES),
                        help=f"comma-separated cases out of {tuple(CASES)} (default: all)")
    args = parser.parse_args(argv)
    chosen = [name for name in args.only.split(",") if name]
    unknown = set(chosen) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {tuple(CASES)}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    start = time.perf_counter()
    rows = []
    for name in chosen:
        label, data, ours, hand = CASES[name]
        if data is None:
            cli = measure(CLI, args.repeats)
            rows.append(f"| {label} | {cli['process']:.1f} | | {cli['warm']:.1f} | | | |")
        else:
            a = measure([sys.executable, "-c", child_script(data, ours)], args.repeats)
            b = measure([sys.executable, "-c", child_script(data, hand)], args.repeats)
            rows.append(f"| {label} | {a['process']:.1f} | {a['fit']:.1f} | {a['warm']:.1f} "
                        f"| {b['process']:.1f} | {b['fit']:.1f} | {b['warm']:.1f} "
                        f"| {a['process'] / b['process']:.2f} |")
        print(f"done: {name}", file=sys.stderr, flush=True)

    command = "python benchmarks/bench_first_fit.py"
    if set(chosen) != set(CASES):
        command += f" --only {args.only}"
    text = "\n".join([
        "# Benchmark: first fit on empty compile caches", "",
        f"Machine: {describe(('pymc', 'pytensor', 'nutpie', 'numba'))}. "
        f"Run {time.strftime('%Y-%m-%d')} "
        f"with `{command} --repeats {args.repeats}` in {time.perf_counter() - start:.0f} s.", "",
        f"Seconds, medians over {args.repeats} repeats. \"first\": a fresh `python3` process on "
        "new, empty PyTensor and numba caches, from process start (imports included) to the end "
        "of the fit, as the parent clocks it; \"fit call\": the same run from after the imports; "
        "\"warm caches\": a second fresh process on the caches the first one filled. bayesmix at "
        "its defaults (numba, 4 chains x (500 tune + 1000 draws)); hand-written: the PyMC model "
        "sampled by nutpie (numba) with the same draws. Ratio: bayesmix first / hand-written "
        "first. The machine may have been shared with other work.", "",
        "| structure | bayesmix first | bayesmix fit call | bayesmix warm caches "
        "| hand-written first | hand-written fit call | hand-written warm caches | ratio |",
        "|---|---|---|---|---|---|---|---|",
        *rows, ""])
    print(text)
    out = RESULTS if args.refresh else args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "first_fit.md").write_text(text)
    print(f"wrote {out / 'first_fit.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
