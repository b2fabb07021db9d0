"""Fit-time benchmark: bayesmix side by side with what a user would otherwise run.

Usage: ``python benchmarks/bench_fit.py [--repeats 3] [--quick]``

Data: 1-D, K=3, N=1000 (three Gaussians), 4 chains x (1000 tune + 1000 draws) unless said.
Every measurement that includes compilation runs in a fresh Python process, so "cold" means
cold for the process (PyTensor's on-disk cache of numba code is warm after the first run on
a machine; the first run of each case is reported separately). Prints a table and writes it,
with the machine's description, to ``benchmarks/results/fit.md``.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

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

CASES = {
    "hand-written PyMC + nutpie (numba)": DATA + ESS + """
import time, nutpie, pymc as pm
start = time.perf_counter()
with pm.Model() as model:
    w = pm.Dirichlet("w", np.ones(3))
    mu = pm.Normal("mu", 0, 10, shape=3, transform=pm.distributions.transforms.ordered)
    sigma = pm.HalfNormal("sigma", 5, shape=3)
    pm.NormalMixture("x", w=w, mu=mu, sigma=sigma, observed=x)
compiled = nutpie.compile_pymc_model(model, initial_points={"mu": np.array([-2.0, 0.0, 2.0])})
mid = time.perf_counter()
idata = nutpie.sample(compiled, draws=1000, tune=1000, chains=4, seed=1, progress_bar=False)
end = time.perf_counter()
result = {"total": end - start, "sample": end - mid, "ess": min_ess(idata, ["w", "mu", "sigma"])}
""",
    "PyMC default pm.sample": DATA + ESS + """
import time, pymc as pm
start = time.perf_counter()
with pm.Model() as model:
    w = pm.Dirichlet("w", np.ones(3))
    mu = pm.Normal("mu", 0, 10, shape=3, transform=pm.distributions.transforms.ordered,
                   initval=np.array([-2.0, 0.0, 2.0]))
    sigma = pm.HalfNormal("sigma", 5, shape=3)
    pm.NormalMixture("x", w=w, mu=mu, sigma=sigma, observed=x)
    idata = pm.sample(1000, tune=1000, chains=4, random_seed=1, progressbar=False,
                      compute_convergence_checks=False)
end = time.perf_counter()
result = {"total": end - start, "sample": float("nan"), "ess": min_ess(idata, ["w", "mu", "sigma"])}
""",
    "bayesmix BayesianGaussianMixture (numba)": DATA + ESS + """
import time
start = time.perf_counter()
from bayesmix import BayesianGaussianMixture
est = BayesianGaussianMixture(3, random_state=1).fit(x[:, None])
cold = time.perf_counter() - start
warm_start = time.perf_counter()
est = BayesianGaussianMixture(3, random_state=2).fit(x[::-1, None])
warm = time.perf_counter() - warm_start
result = {"total": cold, "sample": warm, "ess": min_ess(est.idata_, ["weights", "means", "sigmas"])}
""",
}


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


def machine():
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.platform()}, {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="skip PyMC's pm.sample")
    args = parser.parse_args(argv)

    rows = {}
    for name, code in CASES.items():
        if args.quick and "pm.sample" in name:
            continue
        runs = [run_case(code) for _ in range(args.repeats if "pm.sample" not in name else 1)]
        rows[name] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(f"done: {name}", file=sys.stderr)
    rows.update(sklearn_times(args.repeats))

    hand = rows["hand-written PyMC + nutpie (numba)"]
    ours = rows["bayesmix BayesianGaussianMixture (numba)"]
    lines = [
        "# Fit benchmark",
        "",
        f"Machine: {machine()}. Medians over {args.repeats} fresh processes "
        f"({time.strftime('%Y-%m-%d')}). 1-D, K=3, N=1000, 4 chains x (1000 tune + 1000 draws).",
        "",
        "| what | fit incl. compile (s) | sampling only / warm refit (s) | min bulk ESS | ESS/s |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        seconds = row["sample"] if row["sample"] == row["sample"] else row["total"]
        ess_rate = row["ess"] / seconds if row["ess"] == row["ess"] else float("nan")
        lines.append(f"| {name} | {row['total']:.2f} | {row['sample']:.2f} | {row['ess']:.0f} "
                     f"| {ess_rate:.0f} |")
    lines += [
        "",
        "For bayesmix the second column is a warm refit (same structure, new data, no compile).",
        "",
        f"Ratios from this run: bayesmix cold / hand-written cold = "
        f"{ours['total'] / hand['total']:.2f}; bayesmix warm refit / hand-written sampling only = "
        f"{ours['sample'] / hand['sample']:.2f}.",
    ]
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fit.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
