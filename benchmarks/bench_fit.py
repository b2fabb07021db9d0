"""Fit-time benchmark: bayesmix side by side with what a user would otherwise run.

Usage: ``python benchmarks/bench_fit.py --out DIR [--repeats 3] [--quick] [--only fit,...]``;
``--refresh`` instead of ``--out DIR`` rewrites the tracked tables in ``benchmarks/results/``.

Data: 1-D, K=3, N=1000 (three Gaussians), 4 chains. bayesmix runs at its defaults (500 tune +
1000 draws per chain), hand-written code and ``pm.sample`` at PyMC's (1000 + 1000).
Every measurement that includes compilation runs in a fresh Python process, so "cold" means
cold for the process (PyTensor's on-disk cache of numba code is warm after the first run on
a machine). Sections: ``fit`` (one fit, cold and warm, against hand-written PyMC + nutpie,
``pm.sample`` and scikit-learn), ``gradient`` (one log-density-and-gradient evaluation
against a hand-written numba kernel), ``select_k`` (K = 1..6 x 5 folds) and ``large``
(100,000 rows; minibatch ADVI at 1,000,000). Each prints its table and writes it, with the
machine's description, to ``<DIR>/<section>.md``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine_info import describe

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

DATA = """
import numpy as np
rng = np.random.default_rng(0)
x = np.concatenate([rng.normal(-3, 1, 300), rng.normal(0, 1, 400), rng.normal(3, 1, 300)])
"""

ESS = """
def min_ess(idata, names):
    import arviz as az
    ess = az.ess(idata.posterior[names], method="bulk")
    return float(min(float(ess[v].min()) for v in names))
"""

HAND_MODEL = """
def hand_model(x):
    # What a user would write by hand: PyMC's NormalMixture with ordered means.
    import pymc as pm
    with pm.Model() as model:
        w = pm.Dirichlet("w", np.ones(3))
        mu = pm.Normal("mu", 0, 10, shape=3, transform=pm.distributions.transforms.ordered)
        sigma = pm.HalfNormal("sigma", 5, shape=3)
        pm.NormalMixture("x", w=w, mu=mu, sigma=sigma, observed=x)
    return model
"""

CASES = {
    "hand-written PyMC + nutpie (numba)": DATA + ESS + HAND_MODEL + """
import time
start = time.perf_counter()
import nutpie, pymc as pm
model = hand_model(x)
compiled = nutpie.compile_pymc_model(model, initial_points={"mu": np.array([-2.0, 0.0, 2.0])})
mid = time.perf_counter()
idata = nutpie.sample(compiled, draws=1000, tune=1000, chains=4, seed=1, progress_bar=False)
end = time.perf_counter()
result = {"total": end - start, "sample": end - mid, "ess": min_ess(idata, ["w", "mu", "sigma"])}
""",
    "PyMC default pm.sample": DATA + ESS + """
import time
start = time.perf_counter()
import pymc as pm
with pm.Model() as model:
    w = pm.Dirichlet("w", np.ones(3))
    mu = pm.Normal("mu", 0, 10, shape=3, transform=pm.distributions.transforms.ordered,
                   initval=np.array([-2.0, 0.0, 2.0]))
    sigma = pm.HalfNormal("sigma", 5, shape=3)
    pm.NormalMixture("x", w=w, mu=mu, sigma=sigma, observed=x)
    idata = pm.sample(1000, tune=1000, chains=4, random_seed=1, progressbar=False,
                      compute_convergence_checks=False)
end = time.perf_counter()
result = {"total": end - start, "sample": float(idata.sample_stats.attrs["sampling_time"]),
          "ess": min_ess(idata, ["w", "mu", "sigma"])}
""",
    "bayesmix BayesianGaussianMixture (numba)": DATA + ESS + """
import time
start = time.perf_counter()
from bayesmix import BayesianGaussianMixture
imported = time.perf_counter()
est = BayesianGaussianMixture(3, random_state=1).fit(x[:, None])
cold = time.perf_counter() - start
fit_only = time.perf_counter() - imported
warm_start = time.perf_counter()
est = BayesianGaussianMixture(3, random_state=2).fit(x[::-1, None])
warm = time.perf_counter() - warm_start
result = {"total": cold, "sample": warm, "fit": fit_only,
          "ess": min_ess(est.idata_, ["weights", "means", "sigmas"])}
""",
}


GRADIENT = HAND_MODEL + """
import time, numpy as np, numba, pymc as pm
from nutpie.compile_pymc import _make_functions
from pymc.initial_point import make_initial_point_fn
from bayesmix.models.gaussian import build_gaussian_mixture

@numba.njit(fastmath=True)
def hand_kernel(x, w, mu, sigma):
    # The reference: one pass over the rows, value and gradient of a 1-D normal mixture.
    K = w.shape[0]
    logw = np.log(w) - np.log(sigma) - 0.5 * np.log(2 * np.pi)
    inv = 1.0 / sigma
    gw = np.zeros(K); gmu = np.zeros(K); gs = np.zeros(K); lp = np.empty(K); z = np.empty(K)
    total = 0.0
    for n in range(x.shape[0]):
        m = -np.inf
        for k in range(K):
            z[k] = (x[n] - mu[k]) * inv[k]
            lp[k] = logw[k] - 0.5 * z[k] * z[k]
            m = max(m, lp[k])
        s = 0.0
        for k in range(K):
            lp[k] = np.exp(lp[k] - m)
            s += lp[k]
        total += m + np.log(s)
        for k in range(K):
            r = lp[k] / s
            gw[k] += r / w[k]
            gmu[k] += r * z[k] * inv[k]
            gs[k] += r * (z[k] * z[k] - 1.0) * inv[k]
    return total, gw, gmu, gs

def ours(x):
    model = build_gaussian_mixture(3, 1, "full", True)
    with model:
        pm.set_data({"X": x[:, None], "sample_weight": np.ones(x.size)})
    return model

def kernel_logp(x):
    # What the sampler calls since the whole-model kernels: one numba function.
    from bayesmix.models.kernels import GaussianKernel
    kernel = GaussianKernel(ordered=True, spherical=True)
    data = [x[:, None], np.ones(x.size), np.asarray(1.0), np.zeros(1), np.ones(1), np.ones(1), np.zeros(1)]
    point = np.random.default_rng(0).normal(size=8) * 0.1
    grad = np.empty(8)
    return lambda: kernel.logp(point, grad, *kernel.flags, *data)

def nutpie_logp(model):
    # What nutpie's numba backend evaluates: value and gradient on the unconstrained vector.
    init = make_initial_point_fn(model=model, return_transformed=True)
    n_dim, _, fn, *_ = _make_functions(model, mode="NUMBA", compute_grad=True, join_expanded=False,
                                       pymc_initial_point_fn=init)
    shared = [np.asarray(v.get_value()) for v in fn.get_shared()]
    point = np.random.default_rng(0).normal(size=n_dim) * 0.1
    return lambda: fn.vm.jit_fn(point, *shared)

def per_call(f, budget=0.5):
    f()
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            f()
        elapsed = time.perf_counter() - start
        if elapsed > budget:
            return elapsed / n
        n *= 2

result = {}
rng = np.random.default_rng(0)
for n_rows in (1000, 10000, 100000):
    x = np.concatenate([rng.normal(-3, 1, n_rows // 3), rng.normal(0, 1, n_rows - 2 * (n_rows // 3)),
                        rng.normal(3, 1, n_rows // 3)])
    w, mu, sigma = np.ones(3) / 3, np.array([-3.0, 0.0, 3.0]), np.ones(3)
    result[n_rows] = {
        "hand-written numba kernel": per_call(lambda: hand_kernel(x, w, mu, sigma)),
        "bayesmix whole-model kernel (what nutpie calls)": per_call(kernel_logp(x)),
        "bayesmix PyMC model graph (nutpie numba)": per_call(nutpie_logp(ours(x))),
        "hand-written PyMC NormalMixture (nutpie numba)": per_call(nutpie_logp(hand_model(x))),
    }
"""

SELECT_K = DATA + """
import time
start = time.perf_counter()
from sklearn.model_selection import KFold
from bayesmix import BayesianGaussianMixture, compile_count, select_k
# Shuffled folds: the rows are sorted by cluster, and unshuffled folds would hold out whole clusters.
search = select_k(BayesianGaussianMixture(random_state=0, **SETTINGS), x[:, None], k_range=range(1, 7),
                  method="kfold", cv=KFold(5, shuffle=True, random_state=0), refit=REFIT)
result = {"total": time.perf_counter() - start, "compilations": compile_count(),
          "best_k": int(search.best_k_)}
"""

LARGE = ESS + HAND_MODEL + """
import time, numpy as np
rng = np.random.default_rng(1)
x = np.concatenate([rng.normal(-3, 1, 3 * N // 10), rng.normal(0, 1, 4 * N // 10), rng.normal(3, 1, 3 * N // 10)])

def rhat(idata, names):
    import arviz as az
    r = az.rhat(idata.posterior[names])
    return float(max(float(r[v].max()) for v in names))

if WHICH == "hand":
    import nutpie, pymc as pm
    start = time.perf_counter()
    model = hand_model(x)
    compiled = nutpie.compile_pymc_model(model, initial_points={"mu": np.array([-2.0, 0.0, 2.0])})
    idata = nutpie.sample(compiled, chains=4, seed=1, progress_bar=False)  # nutpie's defaults
    names = ["w", "mu", "sigma"]
else:
    from bayesmix import BayesianGaussianMixture
    start = time.perf_counter()
    idata = BayesianGaussianMixture(3, random_state=1, inference=WHICH).fit(x[:, None]).idata_
    names = ["weights", "means", "sigmas"]
post = idata.posterior
result = {"total": time.perf_counter() - start, "ess": min_ess(idata, names), "rhat": rhat(idata, names),
          "mean": [float(v) for v in post[names[1]].mean(("chain", "draw")).values.ravel()],
          "sd": [float(v) for v in post[names[1]].std(("chain", "draw")).values.ravel()]}
"""


def run_case(code):
    """Run one case in a fresh interpreter; return its ``result`` dict."""
    script = code + "\nimport json, sys\nprint('RESULT' + json.dumps(result))\n"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         cwd=HERE.parent, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[len("RESULT"):])
    raise RuntimeError(f"case failed:\n{out.stderr[-3000:]}")


def sklearn_times(repeats):
    import warnings

    import numpy as np
    from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

    namespace = {}
    exec(DATA, namespace)
    X = namespace["x"][:, None]
    rows = {}
    for name, make in [("scikit-learn GaussianMixture (EM)", lambda: GaussianMixture(3, random_state=0)),
                       ("scikit-learn BayesianGaussianMixture (VI)",
                        lambda: BayesianGaussianMixture(n_components=3, random_state=0))]:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                make().fit(X)
            times.append(time.perf_counter() - start)
        rows[name] = {"total": statistics.median(times), "sample": float("nan"), "ess": float("nan")}
    del np
    return rows


def fit_section(repeats, quick):
    """(a)-(d), (g): one fit of the 1-D K=3 N=1000 mixture, cold and warm."""
    rows = {}
    for name, code in CASES.items():
        if quick and "pm.sample" in name:
            continue
        runs = [run_case(code) for _ in range(repeats if "pm.sample" not in name else 1)]
        rows[name] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(f"done: {name}", file=sys.stderr)
    rows.update(sklearn_times(repeats))

    hand = rows["hand-written PyMC + nutpie (numba)"]
    ours = rows["bayesmix BayesianGaussianMixture (numba)"]
    pm_sample = rows.get("PyMC default pm.sample")
    lines = [
        "## One fit: 1-D, K=3, N=1000, 4 chains",
        "",
        f"Medians over {repeats} fresh processes (pm.sample: one). bayesmix at its defaults "
        "(500 tune + 1000 draws per chain); hand-written and pm.sample at PyMC's (1000 + 1000).",
        "",
        "| what | whole fit incl. import and compile (s) | sampling only / warm refit (s) "
        "| min bulk ESS | ESS/s, whole fit | ESS/s, sampling only |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['total']:.2f} | {row['sample']:.2f} | {row['ess']:.0f} "
                     f"| {row['ess'] / row['total']:.0f} | {row['ess'] / row['sample']:.0f} |")
    lines += [
        "",
        "For bayesmix the third column is a warm refit (same structure, new data, no compile): "
        "the whole of `fit`, k-means start, relabeling and pointwise log-likelihood included. "
        "The hand-written code's is `nutpie.sample` alone, pm.sample's its own `sampling_time` "
        "(tuning and draws, after compiling). bayesmix's cold fit call alone, "
        f"after `import bayesmix`: {ours['fit']:.2f} s.",
        "",
        f"Ratios from this run: bayesmix cold / hand-written cold = "
        f"{ours['total'] / hand['total']:.2f}; bayesmix warm refit / hand-written sampling only = "
        f"{ours['sample'] / hand['sample']:.2f}; ESS/s bayesmix (warm) / hand-written (sampling "
        f"only) = {(ours['ess'] / ours['sample']) / (hand['ess'] / hand['sample']):.2f}.",
    ]
    if pm_sample is not None:
        lines.append(
            f"ESS/s against pm.sample: whole fit, import and compile included for both, "
            f"{(ours['ess'] / ours['total']) / (pm_sample['ess'] / pm_sample['total']):.1f}x; "
            f"bayesmix's warm refit against pm.sample's sampling time (its `sampling_time`), "
            f"{(ours['ess'] / ours['sample']) / (pm_sample['ess'] / pm_sample['sample']):.1f}x."
        )
    return lines


def gradient_section(repeats):
    """(f): one log-density-and-gradient evaluation at N = 1e3, 1e4, 1e5."""
    runs = [run_case(GRADIENT) for _ in range(repeats)]
    lines = [
        "## Cost of one log-density and gradient evaluation (1-D, K=3)",
        "",
        f"Microseconds per call, medians over {repeats} fresh processes; the ratio column is "
        "against the hand-written single-pass numba kernel of the same run. Every row but the "
        "hand-written kernel is the whole model (priors, transforms, likelihood): bayesmix's "
        "numba kernel, which the sampler calls, and the PyMC graphs as nutpie's numba backend "
        "compiles them.",
        "",
        "| rows | what | us per call | ns per row per component | ratio to hand-written kernel |",
        "|---|---|---|---|---|",
    ]
    for n_rows in runs[0]:
        reference = statistics.median(r[n_rows]["hand-written numba kernel"] for r in runs)
        for name in runs[0][n_rows]:
            cost = statistics.median(r[n_rows][name] for r in runs)
            lines.append(f"| {int(n_rows):,} | {name} | {cost * 1e6:.1f} | "
                         f"{cost / int(n_rows) / 3 * 1e9:.1f} | {cost / reference:.2f} |")
    return lines


# label -> (estimator settings, refit)
SELECT_K_SETTINGS = {
    "bayesmix's defaults: 4 chains x (500 tune + 1000 draws); 30 fold fits + 6 full-data fits": ({}, True),
    "the same, `refit=False`: the 30 fold fits only": ({}, False),
    "lighter: 2 chains x (250 tune + 250 draws); 30 + 6 fits": ({"chains": 2, "tune": 250, "draws": 250}, True),
}


def select_k_section():
    """(e): select_k over K = 1..6 with 5-fold cross-validation, in a fresh process."""
    lines = [
        "## select_k: K = 1..6 x 5 folds (1-D, N=1000)",
        "",
        "Fresh process per row, numba backend, `method=\"kfold\"` with a shuffled KFold(5). "
        "Times from process start, imports included. As for the cold fit, the structures have "
        "been compiled on this machine before (an untimed run first fills the disk cache); "
        "each process still builds its 6 models and loads their code from the cache.",
        "",
        "| sampler settings per fit | time (s) | compilations | chosen K |",
        "|---|---|---|---|",
    ]
    warm_up = {"chains": 1, "tune": 20, "draws": 20}
    run_case(f"SETTINGS, REFIT = {warm_up!r}, False\n" + SELECT_K)
    for label, (settings, refit) in SELECT_K_SETTINGS.items():
        row = run_case(f"SETTINGS, REFIT = {settings!r}, {refit!r}\n" + SELECT_K)
        lines.append(f"| {label} | {row['total']:.1f} | {row['compilations']} | {row['best_k']} |")
    return lines


def large_section():
    """Large data: a 1e5-row fit against hand-written PyMC + nutpie, and ADVI at 1e5 and 1e6."""
    runs = {
        "hand-written PyMC + nutpie (NUTS)": run_case("N, WHICH = 100_000, 'hand'\n" + LARGE),
        "bayesmix (NUTS)": run_case("N, WHICH = 100_000, 'nuts'\n" + LARGE),
        "bayesmix (minibatch ADVI)": run_case("N, WHICH = 100_000, 'advi'\n" + LARGE),
    }
    big = run_case("N, WHICH = 1_000_000, 'advi'\n" + LARGE)
    hand, nuts, advi = runs.values()
    lines = [
        "## Large data (1-D, K=3; true means -3, 0, 3, sds 1, weights 0.3 / 0.4 / 0.3)",
        "",
        "100,000 rows. Hand-written: PyMC `NormalMixture` with ordered means compiled and sampled "
        "by nutpie with its defaults (4 chains x (300 tune + 1000 draws)). bayesmix NUTS: its "
        "defaults (4 chains x (500 tune + 1000 draws)); ADVI: 20,000 Adam steps on batches "
        "of 1,000 rows, 1,000 draws from the approximation.",
        "",
        "| what | time incl. compile (s) | max R-hat | min bulk ESS | posterior means of the "
        "means | posterior sds of the means |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in runs.items():
        lines.append(f"| {name} | {row['total']:.1f} | {row['rhat']:.3f} | {row['ess']:.0f} | "
                     + " / ".join(f"{v:.3f}" for v in row["mean"]) + " | "
                     + " / ".join(f"{v:.4f}" for v in row["sd"]) + " |")
    shift = max(abs(a - n) / s for a, n, s in zip(advi["mean"], nuts["mean"], nuts["sd"]))
    width = [a / n for a, n in zip(advi["sd"], nuts["sd"])]
    lines += [
        "",
        f"NUTS speed-up over the hand-written code: {hand['total'] / nuts['total']:.2f}x "
        f"(ESS/s ratio {(nuts['ess'] / nuts['total']) / (hand['ess'] / hand['total']):.2f}).",
        "",
        f"ADVI against NUTS at 100,000 rows: {nuts['total'] / advi['total']:.1f}x faster; its "
        f"posterior means of the means lie within {shift:.1f} NUTS posterior sds of NUTS's; its "
        "posterior sds are " + " / ".join(f"{w:.2f}" for w in width) + " times NUTS's "
        "(mean-field ADVI is known to understate uncertainty: its intervals are too narrow).",
        "",
        f"ADVI at 1,000,000 rows: {big['total']:.1f} s; posterior means of the means "
        + " / ".join(f"{v:.3f}" for v in big["mean"]) + " (truth -3 / 0 / 3), posterior sds "
        + " / ".join(f"{v:.4f}" for v in big["sd"]) + ".",
    ]
    return lines


SECTIONS = ("fit", "gradient", "select_k", "large")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="folder for this run's tables (created if needed)")
    where.add_argument("--refresh", action="store_true",
                       help=f"rewrite the tracked tables in {RESULTS.relative_to(HERE.parent)}/")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per measurement (default: 3)")
    parser.add_argument("--quick", action="store_true", help="skip PyMC's pm.sample")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections out of {SECTIONS} (default: all)")
    args = parser.parse_args(argv)
    chosen = [name for name in args.only.split(",") if name]
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    if args.refresh and args.quick:
        parser.error("--quick skips pm.sample, which the tracked tables report; use --out DIR")

    out = RESULTS if args.refresh else args.out
    out.mkdir(parents=True, exist_ok=True)
    for name in chosen:
        start = time.perf_counter()
        section = {"fit": lambda: fit_section(args.repeats, args.quick),
                   "gradient": lambda: gradient_section(args.repeats),
                   "select_k": select_k_section,
                   "large": large_section}[name]()
        text = "\n".join([
            f"# Benchmark: {name}", "",
            f"Machine: {describe()}. Run {time.strftime('%Y-%m-%d')} with "
            f"`python benchmarks/bench_fit.py --only {name}{' --quick' if args.quick else ''}` "
            f"in {time.perf_counter() - start:.0f} s.",
            "", *section, ""])
        print(text)
        (out / f"{name}.md").write_text(text)
        print(f"wrote {out / f'{name}.md'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
