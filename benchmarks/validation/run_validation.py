"""Statistical validation of bayesmix: writes ``report.md`` and its figures to a folder.

Usage (from the repository root, after ``pip install -e ".[test]"``, which brings jax and
matplotlib)::

    python benchmarks/validation/run_validation.py --out DIR          # the full report
    python benchmarks/validation/run_validation.py --out DIR --quick  # a smoke run
    python benchmarks/validation/run_validation.py --refresh          # rewrite the tracked report

``--refresh`` rewrites the tracked ``report.md`` and figures beside this file.

The bayesmix of this checkout is imported, whatever is installed.

The report has four parts:

1. Simulation-based calibration (Talts et al. 2018) of ``BayesianGaussianMixture`` (1-D,
   2-D diagonal and 2-D full covariances), ``BayesianMixtureRegression`` (normal and
   Poisson) and ``MarginalMixture`` (Poisson; count + binary + categorical columns),
   ``--cases`` choosing among them: parameters drawn from
   the prior, data from the model, a fit, and the rank of the truth among posterior draws;
   rank histograms and a uniformity test per parameter (``calibration.py``, ``cases.py``).
2. Coverage of central 50/90/95% posterior intervals over the same fits.
3. How often ``select_k`` finds the true K of simulated mixtures (``choosing_k.py``), also
   on the same sets rounded to a quarter of the smallest component sd; how often the mode
   of ``posterior_n_components`` is the true K (``posterior_k.py``).
4. Every published result of the reference data sets, side by side with the reference
   numbers (``published.py``).
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parents[1]))

import calibration  # noqa: E402
import cases  # noqa: E402
import choosing_k  # noqa: E402
import posterior_k  # noqa: E402
import published  # noqa: E402
from benchmarks.machine_info import describe  # noqa: E402

COMMAND = "python benchmarks/validation/run_validation.py"


def machine():
    """One line on the hardware and software the report was made on."""
    return describe(("bayesmix", "pymc", "nutpie", "numba", "jax", "numpy", "arviz", "scikit-learn"))


def git_revision():
    try:
        out = subprocess.run(["git", "-C", str(HERE), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def calibration_section(args, out):
    """Run every calibration case; return the report lines and the per-case summaries."""
    sampler = {**cases.SAMPLER, "backend": args.backend}
    lines = [
        "## Simulation-based calibration and coverage",
        "",
        "For each replication, parameters are drawn from the prior the estimator is given "
        "(explicitly, on the user's scale), data from the model, and the estimator is fitted "
        f"(sampler {sampler}). The rank of each true value among "
        f"{calibration.N_THIN} evenly spaced posterior draws (0-{calibration.N_THIN}) is uniform "
        "when the posterior is right: a chi-square test on "
        f"{calibration.N_BINS} bins per parameter, rejected when p < 1% divided by the number of "
        "the model's parameters (Bonferroni). The grey band in each histogram is where a bin of "
        "uniform ranks falls with 99% probability. Coverage: the share of fits whose central "
        "50/90/95% posterior interval contains the truth, over all fits and over the fits that "
        "passed the convergence checks. Components are compared in a canonical order (see "
        "`calibration.py`), so label switching cannot affect the ranks.",
        "",
    ]
    summaries = {}
    for key, (name, case) in enumerate(cases.CASES.items()):
        n_reps = args.sbc if name == "gaussian_1d" else args.sbc_other
        if not n_reps or (args.cases and name not in args.cases):
            continue
        reps, seconds = calibration.run_case(case, n_reps, args.rows, args.jobs, key, sampler)
        figure = f"{case.slug}.png"
        calibration.rank_histograms(reps, out / figure, case.title)
        section, summaries[name] = calibration.markdown(case, reps, seconds, figure)
        lines += section + [""]
        print(f"{case.title}: {seconds:.0f} s", flush=True)
    return lines, summaries


def checks_table(summaries, selection, rounded=(), k_modes=None):
    """The issue's acceptance checks, each with its measured value."""
    lines = ["## Checks", "", "| check | measured | passed |", "|---|---|---|"]
    for name, s in summaries.items():
        title = cases.CASES[name].title
        rejected = [p for p in s["names"] if s["pvalue"][p] < s["threshold"]]
        cover = [s["coverage"][0.9][p] for p in s["names"]]
        lines.append(
            f"| {title}: no SBC rejection at 1% (Bonferroni) | {len(rejected)} rejected, smallest p "
            f"{min(s['pvalue'].values()):.3f} | {'yes' if not rejected else '**no**'} |"
        )
        ok = all(0.85 <= c <= 0.95 for c in cover)
        lines.append(
            f"| {title}: 90% intervals cover in 85-95% of fits | {min(cover):.1%} - {max(cover):.1%} "
            f"| {'yes' if ok else '**no**'} |"
        )
    if selection:
        rows = [r for r in selection if r["separation"] == choosing_k.SEPARATIONS["well-separated"]]
        rate = sum(r["best_k"] == r["true_k"] for r in rows) / len(rows)
        lines.append(
            f"| `select_k` finds the true K in >= 90% of well-separated sets | {rate:.1%} | "
            f"{'yes' if rate >= 0.9 else '**no**'} |"
        )
    if rounded:
        rate = sum(r["best_k"] == r["true_k"] for r in rounded) / len(rounded)
        lines.append(
            f"| `select_k` on rounded data finds the true K in >= 90% of well-separated sets | "
            f"{rate:.1%} | {'yes' if rate >= 0.9 else '**no**'} |"
        )
    if k_modes is not None:
        lines.append(
            f"| `posterior_n_components`: mode at the true K in >= 80% of well-separated sets | "
            f"{k_modes:.1%} | {'yes' if k_modes >= 0.8 else '**no**'} |"
        )
    return lines + [""]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sbc", type=int, default=200, help="replications of the 1-D Gaussian case (200)")
    parser.add_argument("--sbc-other", type=int, default=200, help="replications of every other case (200)")
    parser.add_argument("--cases", nargs="+", choices=list(cases.CASES), metavar="CASE",
                        help=f"calibration cases to run (default: all of {', '.join(cases.CASES)})")
    parser.add_argument("--sets", type=int, default=20, help="select_k data sets per true K and regime (20)")
    parser.add_argument("--rounded-sets", type=int, default=20,
                        help="select_k data sets per true K on rounded well-separated data (20)")
    parser.add_argument("--k-posterior-sets", type=int, default=20,
                        help="posterior_n_components data sets per true K (20)")
    parser.add_argument("--rows", type=int, default=200, help="rows per simulated data set (200)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel worker processes (1)")
    parser.add_argument("--backend", default="numba", choices=("numba", "jax"),
                        help="nutpie backend (numba: compiles once per model structure, samples fastest)")
    parser.add_argument("--no-published", action="store_true", help="skip the published results")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 8 replications, 1 set per K")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="folder for this run's report and figures")
    where.add_argument("--refresh", action="store_true",
                       help="rewrite the tracked report.md and figures beside this script")
    args = parser.parse_args(argv)
    if args.refresh and args.quick:
        parser.error("a --quick run does not replace the tracked report; use --out DIR")
    if args.quick:
        args.sbc, args.sbc_other, args.sets = min(args.sbc, 8), min(args.sbc_other, 8), min(args.sets, 1)
        args.rounded_sets, args.k_posterior_sets = min(args.rounded_sets, 1), min(args.k_posterior_sets, 1)
    out = HERE if args.refresh else args.out
    out.mkdir(parents=True, exist_ok=True)

    revision = git_revision()  # before this run rewrites the tracked figures
    start = time.perf_counter()
    sbc_lines, summaries = calibration_section(args, out)
    selection, k_lines = [], []
    if args.sets:
        selection, seconds = choosing_k.run(args.sets, args.jobs, args.backend)
        k_lines = choosing_k.markdown(selection, seconds, args.backend) + [""]
        print(f"select_k: {seconds:.0f} s", flush=True)
    rounded, k_modes = [], None
    if args.rounded_sets:
        rounded, seconds = choosing_k.run(
            args.rounded_sets, args.jobs, args.backend, rounded=True,
            separations=[choosing_k.SEPARATIONS["well-separated"]],
        )
        k_lines += choosing_k.markdown(rounded, seconds, args.backend, rounded=True) + [""]
        print(f"select_k on rounded data: {seconds:.0f} s", flush=True)
    if args.k_posterior_sets:
        start_k = time.perf_counter()
        lines_k, k_modes = posterior_k.simulated(args.k_posterior_sets, posterior_k.SWEEPS)
        k_lines += lines_k + [""]
        print(f"posterior over K: {time.perf_counter() - start_k:.0f} s", flush=True)
    pub_lines = []
    if not args.no_published:
        pub_lines, seconds = published.markdown(args.backend)
        pub_lines += ["", f"Published results: {seconds:.0f} s."]
        print(f"published results: {seconds:.0f} s", flush=True)
    total = time.perf_counter() - start

    options = " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# bayesmix validation report",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `{COMMAND}{' ' + options if options else ''}` "
        f"at revision `{revision}` in **{total / 60:.0f} min** ({total:.0f} s) with "
        f"{args.jobs} worker process{'es' if args.jobs > 1 else ''}.",
        "",
        f"Machine: {machine()}.",
        "",
        "What the validation found along the way, and what was changed because of it: "
        f"[findings.md]({Path(os.path.relpath(HERE / 'findings.md', out.resolve())).as_posix()}).",
        "",
        *checks_table(summaries, selection, rounded, k_modes),
        *sbc_lines,
        *k_lines,
        *pub_lines,
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'report.md'} in {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
