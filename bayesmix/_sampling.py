"""The one module that talks to the samplers (nutpie, and PyMC's own as a fallback).

Compiling a PyMC model for nutpie costs seconds, sampling a small one about as much, so
every model structure is compiled once per process and kept in a cache keyed by the
structure. Everything that changes between fits of one structure (observed data, prior
hyperparameters, sample weights) is a ``pm.Data`` container that is swapped into the
compiled model with ``CompiledModel.with_data``. Data-driven initial points enter through
shared variables that the compiled initial-point function reads at sampling time, so they
too change without recompiling.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path

import arviz as az
import numpy as np
import pytensor

BACKENDS = ("numba", "jax", "pymc")

_cache: dict[Hashable, _CompiledEntry] = {}
_cache_lock = threading.RLock()
_n_compilations = 0
_log = logging.getLogger(__name__)


@dataclass
class _CompiledEntry:
    """A model structure compiled for one backend."""

    model: object
    compiled: object | None
    initial_values: dict[str, object] = field(default_factory=dict)
    data_names: frozenset = frozenset()
    lock: threading.Lock = field(default_factory=threading.Lock)


def compile_count() -> int:
    """Number of model compilations made in this process so far."""
    return _n_compilations


def clear_cache() -> None:
    """Forget every compiled model (the compilation count is kept)."""
    with _cache_lock:
        _cache.clear()


def get_compiled(
    key: Hashable,
    build_model: Callable[[], object],
    initial_values: dict[str, np.ndarray],
    backend: str = "numba",
    jitter_initial_values: bool = True,
    progressbar: bool = False,
    kernel: object | None = None,
    post_fit_functions: tuple = (),
) -> _CompiledEntry:
    """Return the compiled model for ``key``, building and compiling it on first use.

    Parameters
    ----------
    key : hashable
        Describes the model structure completely; two fits with equal keys can share one
        compiled model.
    build_model : callable
        Returns the ``pm.Model``; called only when ``key`` is not cached.
    initial_values : dict
        Example initial values (constrained space) of the free variables whose starting
        points are set per fit; their shapes fix the shared variables.
    backend : {"numba", "jax", "pymc"}
        "numba" and "jax" compile for nutpie; "pymc" keeps the model for ``pm.sample``.
    jitter_initial_values : bool, default=True
        Whether nutpie adds its U(-1, 1) jitter (unconstrained space) to the variables
        in ``initial_values`` too; the other free variables are always jittered.
    progressbar : bool, default=False
        Say on stderr when a model is being compiled (seconds to a minute, once per
        structure and process; the numba backend caches on disk).
    kernel : object, optional
        The model's whole log-density as numba functions, for the numba backend
        (see ``bayesmix._nutpie_numba.compile_pymc_model``).
    post_fit_functions : tuple of (str, str)
        The numba functions (``"module:name"``, argument types) the caller runs after
        sampling, compiled meanwhile by a helper process on a model's first compile
        on a machine (``bayesmix._nutpie_numba._CompileHelper``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    full_key = (backend, key)
    with _cache_lock:
        entry = _cache.get(full_key)
        if entry is None:
            _log.info("compiling a new model structure for the %s backend", backend)
            start = time.perf_counter()
            if progressbar:
                print(f"bayesmix: compiling the model for the {backend} backend ...", file=sys.stderr, flush=True)
            try:
                with _collecting_new_objects_only(), _interrupts_kept():
                    entry = _compile(build_model(), initial_values, backend, jitter_initial_values, kernel, post_fit_functions)
            except BaseException:  # Ctrl-C stops the compile helpers' work too
                from bayesmix._nutpie_numba import stop_helpers

                stop_helpers()
                raise
            _log.info("compiled in %.1f s", time.perf_counter() - start)
            _cache[full_key] = entry
        return entry


@contextlib.contextmanager
def _interrupts_kept():
    """Raise KeyboardInterrupt after the block if a Ctrl-C inside it was lost.

    numba's compiler calls back into Python from LLVM (llvmlite's object cache), and
    Python prints and drops an exception raised in such a ctypes callback: a Ctrl-C
    that arrived there during a first compile was lost, and the fit went on (or
    failed with numba's "no compiled object yet"). Only in the main thread and where
    SIGINT still has Python's default handler.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    interrupted = []

    def note_and_interrupt(signum, frame):
        interrupted.append(signum)
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, note_and_interrupt)
    try:
        yield
    except Exception as error:  # what failed after a dropped one (numba: "no compiled object yet")
        if interrupted:
            raise KeyboardInterrupt from error
        raise
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if interrupted:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _collecting_new_objects_only():
    """Let the garbage collector skip the objects that exist now, for the block.

    Compiling builds and drops hundreds of thousands of objects (graphs, numba's IR),
    which set off full collections, and with PyMC, numba and SciPy loaded each full
    collection walks about 400 000 live objects: 4-5 of them took 0.8-1.0 s of a
    first fit's 6-7 s. The older objects are frozen (``gc.freeze``) and given back to
    the collector afterwards, where its next full collection looks at them as before.
    Nothing is done where something else has frozen objects already.
    """
    if gc.get_freeze_count() or not gc.isenabled():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _compile(
    model, initial_values, backend, jitter_initial_values=True, kernel=None, post_fit_functions=()
) -> _CompiledEntry:
    global _n_compilations
    shared_inits = {
        name: pytensor.shared(np.asarray(value, dtype="float64"), name=f"{name}_init")
        for name, value in initial_values.items()
    }
    compiled = None
    if backend == "jax":
        from bayesmix.models import fused, fused_mvn

        fused.register_jax()
        fused_mvn.register_jax()
    if backend != "pymc":
        jitter_rvs = None
        if not jitter_initial_values:
            jitter_rvs = {rv for rv in model.free_RVs if rv.name not in shared_inits}
        if backend == "numba":
            from bayesmix._nutpie_numba import compile_pymc_model

            compiled = compile_pymc_model(
                model,
                initial_points=shared_inits,
                jitter_rvs=jitter_rvs,
                kernel=kernel,
                post_fit_functions=post_fit_functions,
            )
        else:
            import nutpie

            compiled = nutpie.compile_pymc_model(
                model,
                backend=backend,
                freeze_model=False,
                initial_points=shared_inits,
                jitter_rvs=jitter_rvs,
            )
    _n_compilations += 1
    if compiled is None:
        data_names = frozenset(model.named_vars)
    else:
        # Data the compiled graph does not use (a prior of a variable this structure
        # lacks) is unknown to ``with_data`` and must be left out.
        data_names = frozenset(getattr(compiled, "shared_data", None) or compiled._shared_data)
    return _CompiledEntry(
        model=model, compiled=compiled, initial_values=shared_inits, data_names=data_names
    )


def sample(
    entry: _CompiledEntry,
    data: dict[str, np.ndarray],
    initial_values: dict[str, np.ndarray],
    *,
    draws: int,
    tune: int,
    chains: int,
    cores: int | None,
    seed: int,
    progressbar: bool = False,
    low_rank_mass_matrix: bool = False,
) -> az.InferenceData:
    """Sample a compiled model on new data.

    ``low_rank_mass_matrix`` asks nutpie for its diagonal-plus-low-rank mass matrix
    (``low_rank_modified_mass_matrix``) instead of the diagonal one; PyMC's sampler
    ignores it. Returns an InferenceData with ``posterior`` (the model's own variables
    only) and ``sample_stats`` (with a ``diverging`` variable).
    """
    from bayesmix._nutpie_numba import stop_helpers, wait_for_helpers

    cores = min(chains, cores or _default_cores())
    data = _known_data(entry, data)
    try:
        with entry.lock:
            for name, value in initial_values.items():
                entry.initial_values[name].set_value(np.asarray(value, dtype="float64"))
            if entry.compiled is None:
                idata = _sample_pymc(entry, data, initial_values, draws, tune, chains, cores, seed, progressbar)
                if idata.posterior.sizes["draw"] < draws:  # PyMC stops early on Ctrl-C
                    raise KeyboardInterrupt
            else:
                idata = _sample_nutpie(
                    entry.compiled.with_data(**data), draws, tune, chains, cores, seed, progressbar, low_rank_mass_matrix
                )
    except BaseException:  # Ctrl-C stops the compile helpers' work too
        stop_helpers()
        raise
    wait_for_helpers()  # the numba functions the caller runs next may be a compile helper's
    return _strip(idata)


def _sample_nutpie(compiled, draws, tune, chains, cores, seed, progressbar, low_rank_mass_matrix=False):
    """``nutpie.sample`` that lets Ctrl-C through and turns a Rust panic into an error.

    nutpie answers a KeyboardInterrupt by returning the draws so far (NaN-padded), which
    a fit would summarize as if it were a posterior; here the sampler is stopped and
    the KeyboardInterrupt raised. A panic in nutpie's Rust code surfaces as
    ``pyo3_runtime.PanicException``, a BaseException that ``except Exception`` misses.
    """
    import nutpie

    try:
        sampler = nutpie.sample(
            compiled,
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            seed=seed,
            save_warmup=False,
            progress_bar=progressbar,
            low_rank_modified_mass_matrix=low_rank_mass_matrix,
            blocking=False,
            return_raw_trace=True,
            **(_low_rank_windows(compiled.n_dim) if low_rank_mass_matrix else {}),
        )
        try:
            return _arrow_to_idata(*sampler.wait().get_arrow_trace())
        except BaseException as exc:
            sampler.cancel()
            # Not after Ctrl-C: with this wait there too, the test suite's Ctrl-C run hung
            # twice in CI (cause not found; never alone or locally); without it, never.
            if not isinstance(exc, KeyboardInterrupt):
                _wait_for_nutpie_threads()
            raise
    except BaseException as exc:
        if type(exc).__name__ == "PanicException":
            raise RuntimeError(f"nutpie failed while sampling: {exc}") from exc
        raise


def _arrow_to_idata(draw_batches, stat_batches) -> az.InferenceData:
    """Turn nutpie's raw trace into InferenceData: the model's variables and the statistics.

    ``draw_batches`` and ``stat_batches`` are nutpie's Arrow batches of draws and of
    per-draw sampler statistics, one per chain. nutpie's own conversion passes every
    variable, transformed ones included, and every statistic through ``arviz.from_dict``,
    with empty warm-up groups: 0.17 s of a 0.56 s warm 1-D fit. Here each column becomes
    one NumPy array and each group one ``xarray.Dataset``. Left out, as nutpie leaves
    them out unless asked to store them: the unconstrained (``__``) variables and the
    statistics with a value per parameter (gradients, mass matrix, divergence points).
    Tuning draws, if any, are dropped; a chain shorter than the others (stopped early) is
    padded with NaN.
    """
    import pyarrow
    import xarray as xr

    def is_list(column):
        return pyarrow.types.is_large_list(column.type) or pyarrow.types.is_list(column.type)

    def values(column):
        return pyarrow.array(column).to_numpy(zero_copy_only=False)

    kept = [~values(stats.column("tuning")) for stats in stat_batches]
    n_draws = max(int(keep.sum()) for keep in kept)

    def group(batches, wanted):
        variables = {}
        for name in batches[0].column_names:
            first = pyarrow.array(batches[0].column(name))
            if not wanted(name, first):
                continue
            columns = [first] + [pyarrow.array(batch.column(name)) for batch in batches[1:]]
            meta = batches[0].column(name).field.metadata
            shape = tuple(int(n) for n in meta.get(b"shape", b"").decode().split(",") if n)
            chains = []
            for column, keep in zip(columns, kept, strict=True):
                if is_list(column):
                    column = column.flatten()
                values = column.to_numpy(zero_copy_only=False).reshape((len(keep),) + shape)[keep]
                if len(values) < n_draws:
                    padded = np.full((n_draws,) + shape, np.nan)
                    padded[: len(values)] = values
                    values = padded
                chains.append(values)
            named = meta.get(b"dims", b"").decode().split(",") if meta.get(b"dims") else []
            if len(named) != len(shape):
                named = [f"{name}_dim_{i}" for i in range(len(shape))]
            dims = ("chain", "draw", *named)
            variables[name] = (dims, np.stack(chains))
        return xr.Dataset(
            variables,
            coords={"chain": np.arange(len(batches)), "draw": np.arange(n_draws)},
            attrs=az.data.base.make_attrs(library=None),
        )

    posterior = group(draw_batches, lambda name, column: not name.endswith("__"))
    sample_stats = group(
        stat_batches,
        lambda name, column: name not in ("chain", "draw") and not is_list(column),
    )
    return az.InferenceData(posterior=posterior, sample_stats=sample_stats)


def _low_rank_windows(n_dim):
    """Return nutpie's settings for its low-rank mass matrix on ``n_dim`` parameters.

    Early in warm-up nutpie estimates the mass matrix from a window of the latest draws
    (and gradients) and starts a new window every ``early_window_switch_freq`` draws (10).
    A window of w draws sees at most w directions, so on models with many parameters the
    low-rank part stays poor until the early phase ends: a 5-D full-covariance K=4 fit
    (83 parameters) ran 60-126 leapfrog steps per draw for its first 175 tuning draws and
    7-10 afterwards. Windows of at least a quarter of the parameters cut its warm-up
    steps by 10-20% and those of a 10-D K=2 fit (131 parameters) by 28%; overfitted fits
    changed by -6% to +26%. Models of fewer than 41 parameters keep nutpie's default
    (benchmarks/validation/findings.md, section 6).
    """
    return {"early_window_switch_freq": max(10, -(-n_dim // 4))}


# How long a failed or stopped sampler's threads get to end.
NUTPIE_THREADS_TIMEOUT = 10.0


def _wait_for_nutpie_threads(timeout: float = NUTPIE_THREADS_TIMEOUT) -> None:
    """Wait until nutpie's worker threads have ended (read from ``/proc``; else 1 s).

    nutpie 0.16 reports a failed start ("All initialization points failed") while its
    worker threads are still ending, and no call of its sampler waits for them. An
    interpreter that exits meanwhile crashes (a thread takes the GIL of a finalizing
    interpreter), so a script that caught the error died with SIGSEGV at exit.
    """
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        time.sleep(1.0)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = []
        for task in tasks.iterdir():
            try:
                names.append((task / "comm").read_text())
            except OSError:  # the thread ended while being listed
                pass
        if not any(name.startswith("nutpie-worker") for name in names):
            return
        time.sleep(0.01)
    _log.debug("nutpie's worker threads still run %.0f s after the sampler stopped", timeout)


# Row-aligned data containers, subsampled together by minibatch ADVI.
ROW_DATA = ("X", "y", "sample_weight", "offset", "trials")
# Adam on standardized parameters. ADVI counts as settled when the mean loss of the last
# tenth of the steps is within this relative tolerance of the tenth before.
ADVI_LEARNING_RATE = 0.01
ADVI_TOLERANCE = 1e-3


def fit_advi(
    entry: _CompiledEntry,
    data: dict[str, np.ndarray],
    initial_values: dict[str, np.ndarray],
    *,
    steps: int,
    batch_size: int,
    draws: int,
    seed: int,
    progressbar: bool = False,
) -> tuple[az.InferenceData, dict]:
    """Fit a mean-field normal approximation by minibatch ADVI and draw from it.

    Each step evaluates the log-likelihood on ``batch_size`` rows drawn with replacement,
    their sample weights multiplied by ``n_rows / batch_size`` so that the objective is
    an unbiased estimate of the full-data one. Adam runs all ``steps``.

    Returns
    -------
    idata : InferenceData
        ``posterior`` with one chain of ``draws`` independent draws.
    report : dict
        ``steps``, the mean ``loss`` (negative ELBO) over the last tenth of the steps and
        whether it ``settled`` (changed by at most ``ADVI_TOLERANCE``, relative, from the
        tenth before).
    """
    import pymc as pm

    rng = np.random.default_rng(seed)
    model = entry.model
    data = _known_data(entry, data)
    rows = {name: data.pop(name) for name in ROW_DATA if name in data}
    n_rows = len(rows["sample_weight"])
    batch_size = min(batch_size, n_rows)

    scale = n_rows / batch_size

    def set_batch(*_):
        index = rng.integers(0, n_rows, batch_size)
        for name, value in rows.items():
            model[name].set_value(value[index] * scale if name == "sample_weight" else value[index])

    with entry.lock, model:
        pm.set_data(data)
        set_batch()
        approx = pm.fit(
            steps,
            method="advi",
            start=dict(initial_values),
            random_seed=seed,
            obj_optimizer=pm.adam(learning_rate=ADVI_LEARNING_RATE),
            callbacks=[set_batch],
            progressbar=progressbar,
        )
        if len(approx.hist) < steps:  # PyMC stops early on Ctrl-C and returns what it has
            raise KeyboardInterrupt
        idata = approx.sample(draws, random_seed=seed)
    losses = np.asarray(approx.hist)
    tenth = max(1, losses.size // 10)
    last, before = np.mean(losses[-tenth:]), np.mean(losses[-2 * tenth : -tenth])
    report = {
        "steps": int(losses.size),
        "loss": float(last),
        "settled": bool(abs(last - before) <= ADVI_TOLERANCE * abs(last)),
    }
    return _strip(idata), report


def _known_data(entry: _CompiledEntry, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The data the compiled model uses, as float64 arrays; the rest is left out."""
    return {
        name: np.asarray(value, dtype="float64")
        for name, value in data.items()
        if name in entry.data_names
    }


def _sample_pymc(entry, data, initial_values, draws, tune, chains, cores, seed, progressbar):
    import pymc as pm

    with entry.model:
        pm.set_data(data)
        return pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            random_seed=seed,
            initvals=dict(initial_values),
            progressbar=progressbar,
            compute_convergence_checks=False,
        )


def _strip(idata: az.InferenceData) -> az.InferenceData:
    """Keep only the model's own variables and the groups users expect."""
    posterior = idata.posterior
    posterior = posterior[[v for v in posterior.data_vars if not str(v).endswith("__")]]
    groups = {"posterior": posterior}
    if "sample_stats" in idata.groups():
        groups["sample_stats"] = idata.sample_stats
    return az.InferenceData(**groups)


def _default_cores() -> int:
    import os

    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
