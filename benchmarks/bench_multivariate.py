"""Multivariate Gaussian mixtures: bayesmix side by side with scikit-learn, NumPyro and a hand kernel.

Usage::

    python benchmarks/bench_multivariate.py --out DIR [--quick] [--repeats 3]
        [--only gradient,fit,overfit,cli,warmup]

Sections (each prints its table and writes it, with the machine's description, to
``DIR/<section>.md``; nothing under ``benchmarks/results`` is touched unless ``--out``
names it):

- ``gradient``: one evaluation of the model's log-density and gradient (numba, with the
  LKJ transforms) against a hand-written single-pass numba kernel for the same mixture
  (value and gradient with respect to log-weights, means and Cholesky factors), D = 2 and
  5, K = 3, N = 1e3 / 1e4 / 1e5; median over repeats of the mean time of a loop of calls.
- ``fit``: warm ``fit`` at the defaults (4 chains x 1000 draws, 500 tune) on 2-D full
  K=3 N=1e3 and 1e4, 5-D full K=4 N=5e3, 10-D diag K=5 N=1e4, 2-D full K=3 N=1e5, with
  the share of ``fit`` spent after sampling, R-hat and ESS per second; scikit-learn's
  ``GaussianMixture`` (EM) and ``BayesianGaussianMixture`` (VI) on the same data; NumPyro
  NUTS on the same marginalized model and priors (warm, jitted) when ``numpyro`` is
  installed (``pip install numpyro``).
- ``overfit``: 2-D full, 3 well-separated clusters, 2000 rows, K = 3..6, on the data sets
  ``--data-seeds`` (2 and 12 unless told): leapfrog steps per draw, R-hat, divergences, time
  and its ratio to the K=3 fit, and a summary per K.
- ``cli``: the command line on the same data sets with ``--k 1-6``, caches filled (whole process).
- ``warmup``: nutpie's default early mass-matrix window (10 draws) against the package's
  (``_sampling._low_rank_windows``: at least a quarter of the parameters), alternating in
  one process, on 5-D full K=4 (5000 rows), 10-D full K=2 (2000 rows) and an overfitted
  3-D full K=6 (2000 rows, 3 clusters): warm-up leapfrog steps, steps per draw afterwards
  and fit time, ``--repeats`` fits each (random_state 0, 1, ...).

``--quick`` runs only the smallest cases with fewer draws (for a shared machine).
"""

import argparse
import contextlib
import statistics
import sys
import time
import warnings
from pathlib import Path

import numba
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine_info import describe  # noqa: E402

SECTIONS = ("gradient", "fit", "overfit", "cli", "warmup")


def clusters(n_rows, n_features, n_clusters, seed=0, separation=6.0):
    """Well-separated correlated Gaussian clusters."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, n_features)) * separation
    labels = rng.integers(n_clusters, size=n_rows)
    mixing = rng.normal(size=(n_clusters, n_features, n_features)) * 0.4 + np.eye(n_features)
    return centers[labels] + np.einsum("nij,nj->ni", mixing[labels], rng.normal(size=(n_rows, n_features)))


@numba.njit(cache=True, fastmath=True)
def hand_kernel(X, log_weights, means, chols):
    """What one would write by hand: row by row, forward substitution, log-sum-exp."""
    N, D = X.shape
    K = means.shape[0]
    offset = np.empty(K)
    for k in range(K):
        offset[k] = log_weights[k] - 0.5 * D * np.log(2 * np.pi)
        for d in range(D):
            offset[k] -= np.log(chols[k, d, d])
    z = np.empty((K, D))
    lp = np.empty(K)
    mass = np.zeros(K)
    sz = np.zeros((K, D))
    szz = np.zeros((K, D, D))
    total = 0.0
    for n in range(N):
        for k in range(K):
            q = 0.0
            for d in range(D):
                s = X[n, d] - means[k, d]
                for j in range(d):
                    s -= chols[k, d, j] * z[k, j]
                z[k, d] = s / chols[k, d, d]
                q += z[k, d] * z[k, d]
            lp[k] = offset[k] - 0.5 * q
        m = lp.max()
        norm = 0.0
        for k in range(K):
            lp[k] = np.exp(lp[k] - m)
            norm += lp[k]
        total += m + np.log(norm)
        for k in range(K):
            r = lp[k] / norm
            mass[k] += r
            for d in range(D):
                sz[k, d] += r * z[k, d]
                for j in range(d + 1):
                    szz[k, d, j] += r * z[k, d] * z[k, j]
    grad_means = np.zeros((K, D))
    grad_chols = np.zeros((K, D, D))
    for k in range(K):
        for d in range(D - 1, -1, -1):
            s = sz[k, d]
            for j in range(d + 1, D):
                s -= chols[k, j, d] * grad_means[k, j]
            grad_means[k, d] = s / chols[k, d, d]
        for c in range(D):
            for d in range(D - 1, -1, -1):
                s = szz[k, max(d, c), min(d, c)]
                for j in range(d + 1, D):
                    s -= chols[k, j, d] * grad_chols[k, j, c]
                grad_chols[k, d, c] = s / chols[k, d, d]
        for d in range(D):
            for c in range(d + 1, D):
                grad_chols[k, d, c] = 0.0
            grad_chols[k, d, d] -= mass[k] / chols[k, d, d]
    return total, mass, grad_means, grad_chols


def time_call(fn, repeats, min_time=0.2):
    """Median over ``repeats`` of the mean seconds per call in a loop of about ``min_time``."""
    fn()
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed > min_time / 4:
            break
        n *= 4
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - start) / n)
    return statistics.median(times)


def model_value_and_grad(n_features, n_components, X):
    """The fitted model's numba log-density and gradient (unconstrained space) and a point."""
    import pymc as pm
    import pytensor

    from bayesmix.models.gaussian import build_gaussian_mixture

    model = build_gaussian_mixture(n_components, n_features, "full", ordered=False)
    with model:
        pm.set_data({"X": X, "sample_weight": np.ones(len(X))})
    point = model.initial_point()
    inputs = model.value_vars
    fn = pytensor.function(inputs, [model.logp(), *pytensor.grad(model.logp(), inputs)], mode="NUMBA")
    fn.trust_input = True
    args = [np.asarray(point[v.name]) for v in inputs]
    return lambda: fn(*args)


def section_gradient(args):
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    rows = []
    K = 3
    for D in (2, 5):
        for N in sizes:
            X = clusters(N, D, K)
            X = (X - X.mean(0)) / X.std(0)
            rng = np.random.default_rng(1)
            chols = np.tril(rng.normal(size=(K, D, D)) * 0.2) + np.eye(D)
            log_w, means = np.log(np.full(K, 1 / K)), rng.normal(size=(K, D))
            hand = time_call(lambda: hand_kernel(X, log_w, means, chols), args.repeats)
            ours = time_call(model_value_and_grad(D, K, X), args.repeats)
            rows.append((D, N, ours * 1e6, hand * 1e6, ours / hand))
    header = "| D | rows | bayesmix model logp+grad (us) | hand-written numba kernel (us) | ratio |\n|---|---|---|---|---|\n"
    table = header + "".join(f"| {D} | {N} | {o:.1f} | {h:.1f} | {r:.2f}x |\n" for D, N, o, h, r in rows)
    return table


FIT_CASES = [
    ("2-D full K=3", 2, 3, 1_000, "full"),
    ("2-D full K=3", 2, 3, 10_000, "full"),
    ("5-D full K=4", 5, 4, 5_000, "full"),
    ("10-D diag K=5", 10, 5, 10_000, "diag"),
    ("2-D full K=3", 2, 3, 100_000, "full"),
]


def fit_bayesmix(X, K, cov, draws, tune, seed):
    from bayesmix import BayesianGaussianMixture

    est = BayesianGaussianMixture(K, covariance_type=cov, draws=draws, tune=tune, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X)
    return est


def numpyro_fit(X, K, cov, draws, tune):
    """NumPyro NUTS on the same marginalized model and priors (standardized data); warm."""
    try:
        import jax
        import numpyro
        import numpyro.distributions as dist
        from numpyro.infer import MCMC, NUTS
    except ImportError:
        return None
    numpyro.set_host_device_count(4)
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    loc, scale = X.mean(0), X.std(0)
    Xs = jnp.asarray((X - loc) / scale)
    D = X.shape[1]
    scale_prior = 0.5 * np.ones(D)

    def model(x):
        w = numpyro.sample("w", dist.Dirichlet(jnp.ones(K)))
        mu = numpyro.sample("mu", dist.Normal(0.0, 2.0).expand([K, D]).to_event(2))
        if cov == "full":
            chols = []
            for k in range(K):
                sd = numpyro.sample(f"sd_{k}", dist.Gamma(2.0, 2.0 / scale_prior).to_event(1))
                corr = numpyro.sample(f"corr_{k}", dist.LKJCholesky(D, 2.0))
                chols.append(sd[:, None] * corr)
            comp = dist.MultivariateNormal(mu, scale_tril=jnp.stack(chols))
        else:
            sd = numpyro.sample("sd", dist.Gamma(2.0, 2.0 / scale_prior).expand([K, D]).to_event(2))
            comp = dist.Independent(dist.Normal(mu, sd), 1)
        numpyro.factor("ll", jax.nn.logsumexp(jnp.log(w) + comp.log_prob(x[:, None, :]), axis=1).sum())

    mcmc = MCMC(NUTS(model), num_warmup=tune, num_samples=draws, num_chains=4, chain_method="parallel", progress_bar=False)
    key = jax.random.PRNGKey(0)
    mcmc.warmup(key, Xs, collect_warmup=False)  # compiles (and warms) once
    start = time.perf_counter()
    mcmc.run(mcmc.post_warmup_state.rng_key, Xs)
    elapsed = time.perf_counter() - start
    # The means' bulk ESS after sorting each draw's components by the first feature's
    # mean (the clusters are well separated), as bayesmix's relabeled means are compared.
    mu = np.asarray(mcmc.get_samples(group_by_chain=True)["mu"])
    order = np.argsort(mu[..., 0], axis=-1)
    mu = np.take_along_axis(mu, order[..., None], axis=2)
    return elapsed, _min_ess(mu)


def _min_ess(means):
    """Smallest bulk ESS over the elements of ``means`` (chain, draw, K, D)."""
    import arviz as az

    return float(az.ess(az.convert_to_dataset({"means": means})).to_array().min())


def section_fit(args):
    from sklearn.mixture import BayesianGaussianMixture as SkVI
    from sklearn.mixture import GaussianMixture

    cases = FIT_CASES[:1] if args.quick else FIT_CASES
    draws, tune = (300, 300) if args.quick else (1000, 500)
    measured = []
    for name, D, K, N, cov in cases:
        X = clusters(N, D, K)
        fit_bayesmix(X, K, cov, draws, tune, 0)  # compile / fill caches
        times, shares = [], []
        for r in range(args.repeats):
            with clock_after_sampling() as sampled:
                start = time.perf_counter()
                est = fit_bayesmix(X, K, cov, draws, tune, r + 1)
                end = time.perf_counter()
            times.append(end - start)
            shares.append((end - sampled[0]) / times[-1])
        t = statistics.median(times)
        ess = _min_ess(est.idata_.posterior["means"].values)
        rhat = est.convergence_["rhat_max"]
        em = time_call(lambda: GaussianMixture(K, covariance_type=cov, random_state=0).fit(X), args.repeats, 0.5)
        vi = time_call(lambda: SkVI(n_components=K, covariance_type=cov, random_state=0).fit(X), args.repeats, 0.5)
        text = (
            f"| {name} | {N} | {t:.2f} | {statistics.median(shares):.0%} | {rhat:.3f} "
            f"| {ess / t:.0f} | {em:.3f} | {vi:.3f} "
        )
        print(text, flush=True)
        measured.append((text, X, K, N, cov))
    # NumPyro only after every bayesmix fit, so that JAX's threads and memory cannot slow
    # them down.
    rows = []
    for text, X, K, N, cov in measured:
        if N > args.numpyro_max_rows:
            peer_text = f"not run (over --numpyro-max-rows {args.numpyro_max_rows})"
        else:
            peer = numpyro_fit(X, K, cov, draws, tune)
            peer_text = "not installed" if peer is None else f"{peer[0]:.2f} s, ESS/s {peer[1] / peer[0]:.0f}"
        rows.append(f"{text}| {peer_text} |\n")
    header = (
        f"Warm fits, {draws} draws + {tune} tune x 4 chains, median of {args.repeats}.\n\n"
        "| case | rows | bayesmix fit (s) | after sampling | R-hat max | means' ESS/s (bulk min, whole fit) "
        "| sklearn EM (s) | sklearn VI (s) | NumPyro NUTS sampling (means' ESS/s) |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    return header + "".join(rows)


@contextlib.contextmanager
def clock_after_sampling():
    """Yield a list that receives the time at which ``fit``'s sampling call returned
    (nutpie's draws converted to ArviZ's form: what ``fit`` does after that is post-fit work)."""
    from bayesmix import _sampling

    sample, returned = _sampling.sample, []

    def timed(*args, **kwargs):
        result = sample(*args, **kwargs)
        returned.append(time.perf_counter())
        return result

    _sampling.sample = timed
    try:
        yield returned
    finally:
        _sampling.sample = sample


def section_overfit(args):
    """Overfitted K: ``--repeats`` fits (random_state 0, 1, ...) per K on each data set,
    then a summary per K over all data sets."""
    draws, tune = (300, 300) if args.quick else (1000, 500)
    rows = []
    by_k = {K: {"ratios": [], "steps": [], "rhats": []} for K in (3, 4, 5, 6)}
    for seed in args.data_seeds:
        X = clusters(2000, 2, 3, seed=seed)
        base = None
        for K in (3, 4, 5, 6):
            fit_bayesmix(X, K, "full", 20, 20, 0)  # compile
            times, steps, rhats, divergences = [], [], [], []
            for random_state in range(args.repeats):
                start = time.perf_counter()
                est = fit_bayesmix(X, K, "full", draws, tune, random_state)
                times.append(time.perf_counter() - start)
                stats = est.idata_.sample_stats
                steps.append(float(stats.n_steps.mean()))
                rhats.append(est.convergence_["rhat_max"])
                divergences.append(int(stats.diverging.sum()))
            elapsed = float(np.median(times))
            base = base or elapsed
            by_k[K]["ratios"].append(elapsed / base)
            by_k[K]["steps"] += steps
            by_k[K]["rhats"] += rhats
            rows.append(
                f"| {seed} | {K} | {np.median(steps):.1f} | {max(rhats):.3f} "
                f"| {sum(r > 1.01 for r in rhats)} of {len(rhats)} | {max(divergences)} "
                f"| {elapsed:.2f} | {elapsed / base:.2f} |\n"
            )
            print(rows[-1], end="", flush=True)
    header = (
        f"2-D full covariance, 3 clusters (`clusters(2000, 2, 3, seed)`), 2000 rows, {draws} draws + "
        f"{tune} tune x 4 chains; {args.repeats} fits per row "
        f"(random_state 0 to {args.repeats - 1}): "
        "median steps and fit time, largest R-hat and divergences.\n\n"
        "| data seed | K | leapfrog steps / draw | R-hat max | fits with R-hat > 1.01 "
        "| divergences (max) | fit (s, median) | fit / K=3 fit |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    summary = (
        f"\nPer K over the {len(args.data_seeds)} data sets (seeds {', '.join(map(str, args.data_seeds))}):\n\n"
        "| K | fits | fits with R-hat > 1.01 | steps / draw (median, max) | fit / K=3 fit (median, max) |\n"
        "|---|---|---|---|---|\n"
    ) + "".join(
        f"| {K} | {len(v['rhats'])} | {sum(r > 1.01 for r in v['rhats'])} "
        f"| {np.median(v['steps']):.1f}, {max(v['steps']):.1f} | {np.median(v['ratios']):.2f}, {max(v['ratios']):.2f} |\n"
        for K, v in by_k.items()
    )
    return header + "".join(rows) + summary


@contextlib.contextmanager
def warmup_steps():
    """Yield a list that receives each nutpie run's warm-up leapfrog steps (all chains)."""
    import nutpie
    import pyarrow

    from bayesmix import _sampling

    sample, convert, steps = nutpie.sample, _sampling._arrow_to_idata, []

    def column(stats, name):
        return pyarrow.array(stats.column(name)).to_numpy(zero_copy_only=False)

    def counting(draw_batches, stat_batches):
        steps.append(sum(int(column(s, "n_steps")[column(s, "tuning")].sum()) for s in stat_batches))
        return convert(draw_batches, stat_batches)

    nutpie.sample = lambda *args, **kwargs: sample(*args, **{**kwargs, "save_warmup": True})
    _sampling._arrow_to_idata = counting
    try:
        yield steps
    finally:
        nutpie.sample, _sampling._arrow_to_idata = sample, convert


def section_warmup(args):
    """The early mass-matrix window: nutpie's default against the package's."""
    from bayesmix import _sampling

    draws, tune = (300, 300) if args.quick else (1000, 500)
    ours = _sampling._low_rank_windows
    settings = {"nutpie's 10": lambda n_dim: {}, "package's": ours}
    rows = []
    for name, (n, D, clusters_, K) in {
        "5-D full K=4": (5000, 5, 4, 4), "10-D full K=2": (2000, 10, 2, 2), "3-D full K=6, 3 clusters": (2000, 3, 3, 6),
    }.items():
        X = clusters(n, D, clusters_, seed=0 if D != 3 else 7)
        fit_bayesmix(X, K, "full", 20, 20, 0)  # compile
        results = {setting: ([], [], []) for setting in settings}
        try:
            with warmup_steps() as warm:
                for random_state in range(args.repeats):
                    for setting, rule in settings.items():
                        _sampling._low_rank_windows = rule
                        start = time.perf_counter()
                        est = fit_bayesmix(X, K, "full", draws, tune, random_state)
                        times, warm_steps, per_draw = results[setting]
                        times.append(time.perf_counter() - start)
                        warm_steps.append(warm[-1])
                        per_draw.append(float(est.idata_.sample_stats.n_steps.mean()))
        finally:
            _sampling._low_rank_windows = ours
        for setting, (times, warm_steps, per_draw) in results.items():
            rows.append(
                f"| {name} | {setting} | {', '.join(f'{w / 1000:.1f}' for w in warm_steps)} "
                f"| {np.median(per_draw):.1f} | {np.median(times):.2f} |\n"
            )
            print(rows[-1], end="", flush=True)
    header = (
        f"Warm fits, {draws} draws + {tune} tune x 4 chains, {args.repeats} per setting (random_state 0 to "
        f"{args.repeats - 1}), the two settings alternating: nutpie's early mass-matrix window of 10 draws "
        "against the package's (at least a quarter of the parameters).\n\n"
        "| case | early window | warm-up steps (thousands, per fit) | steps / draw after warm-up (median) | fit (s, median) |\n"
        "|---|---|---|---|---|\n"
    )
    return header + "".join(rows)


def section_cli(args):
    """``python -m bayesmix fit data.csv --k 1-6`` on 2000 2-D rows, caches filled."""
    import subprocess
    import tempfile

    lines = [
        "`python -m bayesmix fit three.csv --k 1-6` (2000 rows of `clusters(2000, 2, 3, seed)`, 4 "
        "decimals), caches filled by a first run; wall time of the whole process, median of "
        f"{args.repeats}.\n",
        "| data seed | median (s) | runs (s) | chosen |",
        "|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.data_seeds:
            path = Path(folder) / f"three_{seed}.csv"
            np.savetxt(path, clusters(2000, 2, 3, seed=seed), delimiter=",", fmt="%.4f", header="a,b", comments="")
            command = [sys.executable, "-m", "bayesmix", "fit", str(path), "--k", "1-6"]
            subprocess.run(command, capture_output=True, check=True)  # fills the caches
            times, chosen = [], ""
            for _ in range(args.repeats):
                start = time.perf_counter()
                out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                times.append(time.perf_counter() - start)
                chosen = next(line for line in out.splitlines() if line.startswith("Chosen K"))
                print(f"seed {seed}: {times[-1]:.1f} s: {chosen}", flush=True)
            lines.append(
                f"| {seed} | **{statistics.median(times):.1f}** | {', '.join(f'{t:.1f}' for t in times)} "
                f"| {chosen.split(':')[0]} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="folder for the <section>.md tables")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--numpyro-max-rows", type=int, default=10_000,
                        help="largest data set NumPyro is run on in the fit section (%(default)s)")
    parser.add_argument("--quick", action="store_true", help="smallest cases, fewer draws (shared machine)")
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--data-seeds", default="2,12",
                        help="seeds of the 3-cluster data sets of the overfit and cli sections (%(default)s)")
    args = parser.parse_args(argv)
    args.data_seeds = [int(seed) for seed in args.data_seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    functions = {
        "gradient": section_gradient, "fit": section_fit, "overfit": section_overfit, "cli": section_cli,
        "warmup": section_warmup,
    }
    for section in args.only.split(","):
        table = functions[section](args)
        text = f"# {section}{' (--quick)' if args.quick else ''}\n\n{describe()}\n\n{table}"
        print(text)
        (args.out / f"{section}.md").write_text(text)


if __name__ == "__main__":
    main()
