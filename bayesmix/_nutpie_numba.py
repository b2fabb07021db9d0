"""Compile a PyMC model for nutpie's numba backend with C callbacks that numba can cache.

nutpie wraps PyTensor's compiled log-density (and its "expand" function, which maps the
unconstrained point to the trace's variables) in ``numba.cfunc`` callbacks for its Rust
sampler. Its wrappers close over the model's shared arrays, which numba freezes into the
code as constants, so they are recompiled in every process: about 10 s of a 13 s cold fit.
PyTensor itself caches the compiled graph on disk under a key derived from the graph.

This module builds the same two callbacks from generated source that reads every shared
array through the pointer table nutpie keeps in ``user_data`` (so ``with_data`` works
unchanged) and registers that source with PyTensor's numba cache under a key made of the
graph's key and the source. A second process with the same model structure loads both
callbacks from disk; every process, the one that compiled them included, runs them as
loaded from disk (``_load_isolated``), so that the same seed gives the same draws. Only
nutpie's private helpers of version 0.16 are used; when they, or the PyTensor cache key,
are missing, ``compile_pymc_model`` falls back to nutpie's own.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import hashlib
import importlib
import json
import logging
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numba
import numpy as np
from numba import carray  # noqa: F401 (used by the generated source)
from numba.core import cgutils, sigutils, types

_log = logging.getLogger(__name__)

_LOGP_SIGNATURE = types.int64(
    types.uint64,
    types.CPointer(types.double),
    types.CPointer(types.double),
    types.CPointer(types.double),
    types.voidptr,
)
_EXPAND_SIGNATURE = types.int64(
    types.uint64,
    types.uint64,
    types.CPointer(types.double),
    types.CPointer(types.double),
    types.voidptr,
)

# Return codes as nutpie's own callbacks give them. The log-density callback has no
# try/except: numba compiles a call inside ``try`` into a 20 s larger function (measured:
# 25 s against 4 s for the 1-D K=3 model on an empty cache). An exception in ``inner``
# (or the kernel) makes numba's cfunc wrapper report it and return 0, so the outputs are
# NaN beforehand: such a point reads as one nutpie cannot use (a divergence), never as a
# good one, and a draw it could not expand as NaN in the trace. The same for ``expand``.
_LOGP_SOURCE = """
def logp_callback(dim, x_, out_, logp_, user_data_):
{check_dim}    table = carray(user_data_, ({n_words},), np.uint64)
    x = carray(x_, ({n_dim},))
    out = carray(out_, ({n_dim},))
    logp = carray(logp_, ())
    logp[()] = np.nan
    out[...] = np.nan
    logp_val = {call}
    logp[()] = logp_val
    if not np.all(np.isfinite(out)):
        return 3
    if not np.isfinite(logp_val):
        return 4
    return 0
"""

_EXPAND_SOURCE = """
def expand_callback(dim, expanded, x_, out_, user_data_):
    if dim != {n_dim}:
        return -1
    if expanded != {n_expanded}:
        return -1
    table = carray(user_data_, ({n_words},), np.uint64)
    x = carray(x_, ({n_dim},))
    out = carray(out_, ({n_expanded},))
    out[...] = np.nan
    (values,) = inner(x, {shared})
    out[...] = values
    return 0
"""

# The expand callback around a whole-model kernel (``kernel`` below): its sizes are the
# arguments ``dim`` and ``expanded`` (as the log-density's), so one serves every K.
_KERNEL_EXPAND_SOURCE = """
def expand_callback(dim, expanded, x_, out_, user_data_):
    table = carray(user_data_, ({n_words},), np.uint64)
    x = carray(x_, (dim,))
    out = carray(out_, (expanded,))
    values = model_expand(x, {flags}, {expand_shared})
    if dim{sizes} != expanded:
        return -1
    out[:dim] = x
    position = dim
{copies}
    return 0
"""

# Bump when the generated source changes meaning without changing its text.
_WRAPPER_VERSION = 6


def _register_digamma():
    """Give PyTensor's numba backend a digamma it can cache.

    Its own goes through scipy's fused Cython ``psi``, which it cannot wrap: the
    graph then calls Python for every value (holding the GIL) and cannot be cached,
    so every model with a Student-t, Gamma or Beta shape parameter (whose gradient is a
    digamma) compiled again in every process.
    """
    try:
        from pytensor.link.numba.dispatch.basic import register_funcify_and_cache_key
        from pytensor.scalar.math import Psi
    except ImportError:
        return

    from bayesmix.models.special import digamma

    @register_funcify_and_cache_key(Psi)
    def _numba_funcify_psi(op, node, **kwargs):
        return digamma, "bayesmix_digamma_1"


_register_digamma()


@numba.njit(inline="always")
def _store_gradient(logp_and_grad, out):
    """The log-density of PyTensor's (logp, grad) pair, its gradient written to ``out``."""
    logp_val, grad = logp_and_grad
    out[...] = grad
    return logp_val


@numba.extending.intrinsic
def _as_pointer(typingctx, address):
    """The ``void*`` at an integer address."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


def compile_pymc_model(model, *, initial_points, jitter_rvs=None, kernel=None, post_fit_functions=()):
    """``nutpie.compile_pymc_model(model, backend="numba", ...)`` with cached callbacks.

    Parameters
    ----------
    model : pymc.Model
    initial_points : dict
        Passed to PyMC's initial-point function, as nutpie does.
    jitter_rvs : set of random variables, optional
        Variables that get nutpie's U(-1, 1) jitter; ``None`` jitters every free variable.
    kernel : object, optional
        The model's whole log-density as numba functions whose sizes are run-time
        values (see ``bayesmix.models.kernels``). Used when the model's variables are
        the ones it expects and it agrees with PyMC's log-density and gradient at a
        random point; otherwise the callbacks are built from PyTensor's graph.
    post_fit_functions : sequence of (str, str)
        numba functions (``"module:name"``, argument types) that the caller runs after
        sampling; when the kernel's callbacks are not yet in the disk cache, a helper
        process compiles them there meanwhile (see ``_CompileHelper``).

    Returns
    -------
    nutpie.compile_pymc.CompiledPyMCModel
    """
    try:
        # nutpie's private helpers used here and in the functions below.
        from nutpie.compile_pymc import (  # noqa: F401
            _make_functions,
            _rv_dict_to_flat_array_wrapper,
            make_user_data,
        )
        from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS
    except ImportError:
        return _nutpie_compile(model, initial_points, jitter_rvs)

    if kernel is not None:
        functions = _kernel_functions(model, initial_points, jitter_rvs)
        compiled = None if functions is None else _kernel_model(model, kernel, functions, post_fit_functions)
        if compiled is not None:
            _log.debug("callbacks around the model kernel %s", type(kernel).__name__)
            return compiled

    functions = _model_functions(model, initial_points, jitter_rvs)
    n_dim, n_expanded, logp_fn, expand_fn, _, shape_info = functions

    callbacks_to_build = [
        (_LOGP_SOURCE, _LOGP_SIGNATURE, logp_fn),
        (_EXPAND_SOURCE, _EXPAND_SIGNATURE, expand_fn),
    ]
    graph_keys = [CACHED_SRC_FUNCTIONS.get(fn.vm.jit_fn.py_func) for _, _, fn in callbacks_to_build]
    if None in graph_keys:  # PyTensor could not cache a graph: nutpie's own path
        return _nutpie_compile(model, initial_points, jitter_rvs)

    shared_data, shared_vars = _shared([*logp_fn.get_shared(), *expand_fn.get_shared()])
    user_data = make_user_data(shared_vars, shared_data)

    # PyTensor's key of a rewritten graph can change from process to process (the order
    # in which it fuses elementwise operations), so that every new process compiled the
    # callbacks again; the model's graph before rewriting is printed the same each time.
    model_key = _model_cache_key(model)
    callbacks = []
    for source, signature, function in callbacks_to_build:
        shared = [
            _read_shared(user_data.dtype, var.name, shared_data[var.name])
            for var in function.get_shared()
        ]
        text = source.format(
            n_dim=n_dim,
            n_expanded=n_expanded,
            n_words=user_data.dtype.itemsize // 8,
            shared=", ".join(shared),
            check_dim=f"    if dim != {n_dim}:\n        return -1\n",
            call=f"_store_gradient(inner(x, {', '.join(shared)}), out)",
        )
        key = f"{model_key}\n{text}"
        callbacks.append(_cached_cfunc(text, signature, {"inner": _inner(function)}, key))
    return _compiled_model(model, functions, callbacks, shared_data, user_data)


def _model_cache_key(model):
    """What fixes callbacks built from PyTensor's graph.

    The model's graph (log-density and trace variables) before PyTensor rewrites it,
    with ``_installation_key``.
    """
    import io

    import pytensor

    graph = io.StringIO()
    pytensor.dprint([model.logp(), *model.unobserved_value_vars], file=graph, print_type=True)
    return f"{hashlib.sha256(graph.getvalue().encode()).hexdigest()}\n{_installation_key()}"


@functools.cache
def _installation_key():
    """What every compiled callback changes with.

    The versions, PyTensor's numba flags and bayesmix's source (the numba code of its
    own operations and kernels); computed once per process.
    """
    from importlib.metadata import version

    import pytensor

    import bayesmix

    sources = hashlib.sha256()
    for path in sorted(Path(bayesmix.__file__).parent.rglob("*.py")):
        sources.update(path.read_bytes())
    versions = [version(name) for name in ("pymc", "pytensor", "nutpie", "numba", "numpy")]
    flags = (pytensor.config.floatX, pytensor.config.numba__fastmath)
    return f"{versions}\n{flags}\n{sources.hexdigest()}"


def _pymc_initial_point_fn(model, initial_points, jitter_rvs):
    """PyMC's starting-point function as nutpie makes it (seed -> dict of values)."""
    from nutpie.compile_pymc import _wrap_with_lock
    from pymc.initial_point import make_initial_point_fn

    return _wrap_with_lock(
        make_initial_point_fn(
            model=model,
            overrides=initial_points,
            default_strategy="support_point",
            jitter_rvs=set(model.free_RVs) if jitter_rvs is None else jitter_rvs,
            return_transformed=True,
        )
    )


def _model_functions(model, initial_points, jitter_rvs):
    """nutpie's ``_make_functions`` of the model: (n_dim, n_expanded, logp_fn, expand_fn,
    initial_point_fn, shape_info); the PyTensor functions are compiled for numba lazily.
    """
    from nutpie.compile_pymc import _make_functions

    return _make_functions(
        model,
        mode="NUMBA",
        compute_grad=True,
        join_expanded=True,
        pymc_initial_point_fn=_pymc_initial_point_fn(model, initial_points, jitter_rvs),
    )


def _kernel_functions(model, initial_points, jitter_rvs):
    """``_model_functions``' tuple for callbacks around a kernel, without compiling.

    Such callbacks never call PyTensor's log-density and expand functions: those two are
    None, and the shapes are the variables' static ones. Rewriting and compiling the two
    graphs took 3-5 s per model structure in every process, caches filled or not. None
    when a trace variable has no static shape.
    """
    from nutpie.compile_pymc import _rv_dict_to_flat_array_wrapper

    free = [model.rvs_to_values[rv] for rv in model.free_RVs]
    free_names = [var.name for var in free]
    trace = free + [var for var in model.unobserved_value_vars if var.name not in free_names]
    shapes = [tuple(var.type.shape) for var in trace]
    if any(size is None for shape in shapes for size in shape):
        return None
    ends = np.cumsum([int(np.prod(shape)) for shape in shapes])
    slices = [slice(int(end - np.prod(shape)), int(end)) for end, shape in zip(ends, shapes)]
    n_dim = int(ends[len(free) - 1])
    initial_point_fn = _rv_dict_to_flat_array_wrapper(
        _pymc_initial_point_fn(model, initial_points, jitter_rvs), names=free_names, shapes=shapes[: len(free)]
    )
    return n_dim, int(ends[-1]), None, None, initial_point_fn, ([var.name for var in trace], slices, shapes)


def _compiled_model(model, functions, callbacks, shared_data, user_data):
    """nutpie's compiled model from ``_model_functions``' output and the two callbacks."""
    from nutpie.compile_pymc import CompiledPyMCModel, _prepare_dims_and_coords

    n_dim, n_expanded, logp_fn, expand_fn, initial_point_fn, shape_info = functions
    dims, coords = _prepare_dims_and_coords(model, shape_info)
    return CompiledPyMCModel(
        _n_dim=n_dim,
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info)},
        compiled_logp_func=callbacks[0],
        compiled_expand_func=callbacks[1],
        initial_point_func=initial_point_fn,
        shared_data=shared_data,
        user_data=user_data,
        n_expanded=n_expanded,
        shape_info=shape_info,
        logp_func=logp_fn,
        expand_func=expand_fn,
    )


def _shared(variables):
    """nutpie's ``shared_data`` (read-only copies of the values) and ``shared_vars``."""
    shared_data, shared_vars = {}, {}
    for var in variables:
        if var.name in shared_vars and shared_vars[var.name] is not var:
            raise ValueError(f"Shared variables must have unique names: {var.name}")
        value = np.array(var.get_value(), order="C", copy=True)
        value.flags.writeable = False
        shared_data[var.name], shared_vars[var.name] = value, var
    return shared_data, shared_vars


def _kernel_model(model, kernel, functions, post_fit_functions=()):
    """The compiled model with callbacks around ``kernel``, or None.

    None when the model's variables are not the kernel's or the kernel disagrees with
    PyMC's log-density (``_agrees_with_pymc``).
    """
    from nutpie.compile_pymc import make_user_data

    n_dim, _, _, _, _, (names, slices, shapes) = functions
    expected = kernel.names(dict(zip(names, shapes)))
    shared = {name: model[name] for name in _data_names(kernel) if name in model.named_vars}
    if list(names) != expected or not set(_data_names(kernel)) <= set(shared):
        _log.debug("model variables %s are not the kernel's %s: PyTensor's callbacks", names, expected)
        return None
    shared_data, shared_vars = _shared([shared[name] for name in _data_names(kernel)])
    user_data = make_user_data(shared_vars, shared_data)

    def arguments(data_names):  # placeholders (``np.…`` source) stay as they are
        return ", ".join(
            _read_shared(user_data.dtype, name, shared_data[name]) if name in shared_data else name
            for name in data_names
        )

    fields = {
        "n_dim": "dim",
        "check_dim": "",
        "n_words": user_data.dtype.itemsize // 8,
        "flags": ", ".join(str(flag) for flag in kernel.flags),
        "shared": arguments(kernel.data_names),
        "expand_shared": arguments(kernel.expand_data_names),
    }
    expanded = [name for name, slice_ in zip(names, slices) if slice_.start >= n_dim]
    parts = kernel.expand_parts(expanded)
    fields["call"] = f"model_logp(x, out, {fields['flags']}, {fields['shared']})"
    fields["sizes"] = "".join(f" + {part}.size" for part in parts)
    fields["copies"] = "\n".join(
        f"    out[position:position + {part}.size] = {part}.ravel()\n    position += {part}.size" for part in parts
    )
    env = {"model_logp": kernel.logp, "model_expand": kernel.expand}
    env_paths = {name: _numba_path(function) for name, function in env.items()}
    logp_source, expand_source = _LOGP_SOURCE.format(**fields), _KERNEL_EXPAND_SOURCE.format(**fields)
    # The source names the kernel's functions only as ``model_logp`` and ``model_expand``.
    functions_key = ", ".join(env_paths.values())
    logp_key, expand_key = (f"{_installation_key()}\n{functions_key}\n{source}" for source in (logp_source, expand_source))
    expand_callback = _load_isolated(_callback_function(expand_source, env, expand_key), _EXPAND_SIGNATURE)
    helper = None
    if expand_callback is None:  # a first compile on this machine
        helper = _CompileHelper.start([(expand_source, "expand", env_paths, expand_key)], post_fit_functions)
    try:
        logp_callback = _cached_cfunc(logp_source, _LOGP_SIGNATURE, env, logp_key)
        # The check needs the log-density only: it runs while the helper compiles the expand callback.
        checked = _compiled_model(model, functions, [logp_callback, None], shared_data, user_data)
        if not _checked_once(_agrees_with_pymc, model, checked, kernel, functions[-1]):
            return None
        if expand_callback is None:
            if helper is not None:
                helper.wait_for_callbacks()
            expand_callback = _cached_cfunc(expand_source, _EXPAND_SIGNATURE, env, expand_key)
        callbacks = [logp_callback, expand_callback]
    except BaseException:
        if helper is not None:
            helper.stop()
        raise
    return _compiled_model(model, functions, callbacks, shared_data, user_data)


def _data_names(kernel):
    """The model data the kernel reads (its other arguments are placeholders: ``np.…``)."""
    return [name for name in kernel.data_names if not name.startswith("np.")]


def _checked_once(check, model, compiled, kernel, shape_info):
    """``check(model, compiled, kernel, shape_info)``, remembered on disk once it passed.

    The check is deterministic (a seeded point and seeded data), so its outcome is fixed
    by the model (``_model_text``), the kernel and the installation (versions and
    bayesmix's source); a pass is recorded under a hash of the three in PyTensor's
    compile folder, beside the cached callbacks, and not repeated (it took 1.7-2.4 s per
    model structure in every process).
    """
    # The callbacks' source follows from the kernel's type and flags and the model.
    kernel_key = f"{type(kernel).__name__}{tuple(kernel.flags)}"
    key = hashlib.sha256(f"{_model_text(model)}\n{kernel_key}\n{_installation_key()}".encode()).hexdigest()
    record = _check_records() / key
    if record.exists():
        return True
    if not check(model, compiled, kernel, shape_info):
        return False
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        partial = record.with_suffix(f".{os.getpid()}")
        partial.write_text("passed\n")
        os.replace(partial, record)
    except OSError:  # a read-only cache: check again next time
        pass
    return True


def _model_text(model):
    """The model as text: its random variables' graph (types included), transforms and
    observed variables, which with PyMC's version fix its log-density graph.

    Printing the variables takes 3 ms; building and printing the log-density graph took
    0.35 s in every process.
    """
    import io

    import pytensor

    graph = io.StringIO()
    pytensor.dprint([*model.basic_RVs, *model.potentials], file=graph, print_type=True)
    transforms = [
        (rv.name, type(transform).__name__, sorted((k, str(v)) for k, v in vars(transform).items() if k != "__doc__"))
        for rv, transform in model.rvs_to_transforms.items()
        if transform is not None
    ]
    text = f"{graph.getvalue()}\n{transforms}\n{sorted(rv.name for rv in model.observed_RVs)}"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)  # random generators' addresses


def _check_records():
    """The folder of ``_checked_once``'s records."""
    import pytensor

    return Path(pytensor.config.compiledir) / "bayesmix_kernel_checks"


def _agrees_with_pymc(model, compiled, kernel, shape_info, seed=0):
    """Whether the kernel's log-density and gradient are PyMC's, on made-up data.

    PyMC's graph is evaluated by PyTensor's Python linker (nothing to compile) at a
    random unconstrained point, with data, prior values and rounding drawn at random,
    so that no term of the log-density is checked only at a value where it vanishes.
    The kernel's gradient is first compared with finite differences of its own
    log-density, which agrees with PyMC's; only when they differ is PyMC's symbolic
    gradient built to decide (building it took 0.33 s of a full-covariance model's
    0.5 s check, on every new structure's first fit).
    """
    import pytensor
    import pytensor.tensor as pt
    from pytensor.compile.mode import Mode

    rng = np.random.default_rng(seed)
    data = {}
    counts = rng.integers(1, 6, 7).astype(float)  # a response in every family's support
    for name in _data_names(kernel):
        value = np.asarray(compiled.shared_data[name])
        if name == "X":
            value = rng.normal(size=(7, *value.shape[1:]))
        elif name in ("y", "trials", "offset"):
            value = {"y": counts, "trials": counts + rng.integers(0, 4, 7), "offset": rng.normal(0.0, 0.3, 7)}[name]
        elif value.ndim == 0:
            value = np.asarray(rng.uniform(0.5, 2.0))
        else:
            value = rng.uniform(0.1, 2.0, size=(7,) if name == "sample_weight" else value.shape)
        data[name] = value
    value_vars = [model.rvs_to_values[rv] for rv in model.free_RVs]
    replacements = {model[name]: pt.constant(value) for name, value in data.items()}
    # Unrewritten: rewriting the graph took longer than evaluating it once (0.6 s against 0.1 s).
    mode = Mode(linker="py", optimizer=None)

    def pymc_function(outputs):
        return pytensor.function(value_vars, pytensor.clone_replace(outputs, replacements), mode=mode)

    logp = model.logp()
    x = rng.normal(0.0, 0.5, compiled.n_dim)  # every unconstrained point is in the support
    names, slices, shapes = shape_info
    point = [x[slice_].reshape(shape) for slice_, shape in zip(slices, shapes[: len(value_vars)])]
    (expected_logp,) = pymc_function([logp])(*point)

    compiled = compiled.with_data(**data)
    pointer = ctypes.POINTER(ctypes.c_double)

    def kernel_logp(at):
        grad, value = np.zeros_like(at), np.zeros(())
        code = compiled.compiled_logp_func.ctypes(
            at.size, at.ctypes.data_as(pointer), grad.ctypes.data_as(pointer), value.ctypes.data_as(pointer),
            compiled.user_data.ctypes.data,
        )
        return code, float(value), grad

    code, logp_value, grad = kernel_logp(x)
    # PyMC's LKJ normalizing constant is off by up to 8e-7 (eta=2, 8 features; against
    # mpmath), the kernel's by 3e-15: a 5-feature full covariance differed by 1.6e-9
    # relative, and the first tolerance here, 1e-9, sent it to the slower graph path.
    agrees = code == 0 and np.isclose(logp_value, expected_logp, rtol=1e-7, atol=1e-9)
    if agrees:
        scale = 1.0 + np.abs(grad).max()
        difference = _finite_difference_gradient(lambda at: kernel_logp(at)[1], x)
        if not np.allclose(grad, difference, rtol=1e-6, atol=1e-6 * scale):
            expected_grad = np.concatenate(
                [np.ravel(g) for g in pymc_function(pytensor.grad(logp, value_vars))(*point)]
            )
            scale = 1.0 + np.abs(expected_grad).max()
            agrees = np.allclose(grad, expected_grad, rtol=1e-7, atol=1e-9 * scale)
    if not agrees:
        _log.warning(
            "the fused model kernel disagrees with PyMC (logp %s against %s): using PyTensor's callbacks",
            logp_value,
            float(expected_logp),
        )
    return bool(agrees)


def _finite_difference_gradient(function, x):
    """The gradient of ``function`` at ``x`` by central differences, Richardson-extrapolated
    (error of order h**4; about 1e-10 relative for the kernels' log-densities)."""

    def central(i, h):
        shift = np.zeros_like(x)
        shift[i] = h
        return (function(x + shift) - function(x - shift)) / (2.0 * h)

    gradient = np.empty_like(x)
    for i in range(x.size):
        step = 1e-3 * max(1.0, abs(x[i]))
        gradient[i] = (4.0 * central(i, step / 2.0) - central(i, step)) / 3.0
    return gradient


def _nutpie_compile(model, initial_points, jitter_rvs):
    import nutpie

    return nutpie.compile_pymc_model(
        model,
        backend="numba",
        freeze_model=False,
        initial_points=initial_points,
        jitter_rvs=jitter_rvs,
    )


def _read_shared(record_dtype, name, value):
    """Source that rebuilds shared array ``name`` from nutpie's pointer table ``table``.

    ``record_dtype`` is nutpie's ``user_data`` layout, all 8-byte words: per shared
    variable its data address, its size and its shape.
    """
    table = record_dtype["shared"]
    base = record_dtype.fields["shared"][1]

    def word(field, index=0):
        offset = base + table.fields[field][1] + table[field].fields[name][1]
        return (offset // 8) + index

    shape = ", ".join(f"np.intp(table[{word('shape', i)}])" for i in range(value.ndim))
    dtype = "bool_" if value.dtype == np.bool_ else value.dtype.name
    shape += "," if value.ndim == 1 else ""
    return f"carray(_as_pointer(table[{word('data')}]), ({shape}), np.{dtype})"


def _inner(function):
    """The numba function of a PyTensor function, compiled only as a callee.

    PyTensor's own dispatcher is a cached entry point: numba would generate its machine
    code for it and then again for the callback that links it in.
    """
    from pytensor.link.numba.dispatch.basic import numba_njit

    return numba_njit(function.vm.jit_fn.py_func)


def _cached_cfunc(source, signature, env, key):
    """Compile ``source`` as a C callback cached on disk under ``key``; load it on its own.

    ``env`` holds the numba functions the source calls. On a cache miss numba compiles
    the callback (and the functions it calls) into its process-wide code and writes it
    to the cache; either way the callback that is used comes from the cache, loaded
    by ``_load_isolated``, so a process that compiles and one that loads run the same
    machine code.
    """
    function = _callback_function(source, env, key)
    callback = _load_isolated(function, signature)
    if callback is None:
        compiled = numba.cfunc(signature, cache=True)(function)
        callback = _load_isolated(function, signature)
        if callback is None:  # the cache could not be written
            _log.debug("callback %s not cached: using numba's process-wide copy", function.__name__)
            return compiled
    return callback


def _callback_function(source, env, key):
    """The Python function of a callback's ``source``, registered with numba's cache under ``key``."""
    from pytensor.link.numba.cache import compile_numba_function_src

    name = source.split("def ", 1)[1].split("(", 1)[0]
    key = hashlib.sha256(f"{_WRAPPER_VERSION}\n{key}".encode()).hexdigest()
    return compile_numba_function_src(
        source,
        name,
        # This module's globals (with its ``__name__``) let numba rebuild the callback's
        # environment when it loads the callback from the cache in another process.
        global_env=globals() | env,
        cache_key=f"bayesmix_nutpie_{key}",
    )


class _Callback:
    """A C callback loaded by ``_load_isolated``: its ``address`` and a ``ctypes`` caller."""

    def __init__(self, address, signature, keep_alive):
        from numba.core.typing.ctypes_utils import to_ctypes

        types_ = [to_ctypes(t) for t in (signature.return_type, *signature.args)]
        self.address = address
        self.ctypes = ctypes.CFUNCTYPE(*types_)(address)
        self._keep_alive = keep_alive


def _load_isolated(function, signature):
    """The cached C callback of ``function``, loaded into a numba code generator of its own.

    numba keeps the functions a callback calls in the callback's machine code as weak
    symbols, which a linker binds to the copy loaded first: in numba's process-wide
    code that is the copy compiled on its own before the callback (or linked into
    another callback). Those copies were optimized apart from this callback, so their
    floating-point results can differ in the last bits: the same seed gave other draws
    in a process that compiled the callback than in one that loaded it from the cache.
    Loaded here, the callback links only to itself and to numba's runtime (a code
    generator costs about 1 ms). None if the callback is not in the cache.
    """
    from numba.core.caching import FunctionCache
    from numba.core.codegen import JITCPUCodegen
    from numba.core.registry import cpu_target

    cpu_target.target_context.refresh()
    codegen = JITCPUCodegen("bayesmix_callback")
    cache = FunctionCache(function)
    data = cache._cache_file.load(cache._index_key(signature, codegen))
    if data is None:
        return None
    # As numba's ``CompileResult._rebuild``, with the callback's own code generator.
    libdata, fndesc, env, _, _, _, _, reload_init, referenced_envs = data
    for init in reload_init:
        init()
    library = codegen.unserialize_library(libdata)
    address = library.get_pointer_to_function(fndesc.llvm_cfunc_wrapper_name)
    for referenced in referenced_envs:
        codegen.set_env(referenced.env_name, referenced)
    return _Callback(address, signature, (codegen, library, env, referenced_envs))


def _numba_path(function):
    """``"module:name"`` of a numba function: ``_resolve`` finds a module-level one by it.

    The qualified name, so that functions of one name defined in other scopes differ.
    """
    return f"{function.py_func.__module__}:{function.py_func.__qualname__}"


def _resolve(path):
    """The object at ``"module:name"``."""
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


_SIGNATURES = {"logp": _LOGP_SIGNATURE, "expand": _EXPAND_SIGNATURE}
_helpers: list[_CompileHelper] = []
_exiting: list[subprocess.Popen] = []  # helpers done compiling, maybe still shutting down
_helpers_lock = threading.Lock()


class _CompileHelper:
    """A second Python process that compiles into numba's disk cache while this one compiles.

    The first fit of a model structure on a machine compiles the sampler's log-density
    and expand callbacks and the numba functions ``fit`` runs after sampling (for the
    1-D model about 3.8, 2.1 and 0.9 s, one after the other: numba compiles one
    function at a time and holds the GIL). The helper compiles the expand callback and
    the post-fit functions on the machine's other core while this process compiles the
    log-density; this process then loads them from the cache. Whatever the helper does
    not deliver (it failed to start or to compile, the cache is read-only) this process
    compiles itself, as it would without a helper.
    """

    def __init__(self, process, n_callbacks):
        self.process, self.n_callbacks = process, n_callbacks

    @classmethod
    def start(cls, callbacks, functions):
        """Start a helper; None if it cannot start.

        It compiles ``callbacks`` ((source, "logp" or "expand", the paths of its
        environment's functions, key)) in order, writing a line to its standard output
        after each, and then ``functions`` (("module:name", argument types)).
        """
        import pytensor

        import bayesmix

        if not sys.executable:  # an embedded Python: nothing to start
            return None
        # The helper imports this bayesmix (first on its path, before the working
        # folder) and writes where this process reads.
        env = dict(os.environ)
        env["PYTENSOR_FLAGS"] = f"{env.get('PYTENSOR_FLAGS', '')},compiledir={pytensor.config.compiledir}"
        if numba.config.CACHE_DIR:
            env["NUMBA_CACHE_DIR"] = numba.config.CACHE_DIR
        code = (
            f"import sys; sys.path.insert(0, {str(Path(bayesmix.__file__).parents[1])!r}); "
            "import gc; gc.disable(); import bayesmix._nutpie_numba as m; m._helper_main()"
        )
        command = [sys.executable, "-c", code]
        try:
            process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True
            )
        except OSError as error:  # no interpreter to start: compile here
            _log.debug("no compile helper: %s", error)
            return None
        try:
            orders = {"installation": _installation_key(), "callbacks": callbacks, "functions": list(functions)}
            process.stdin.write(json.dumps(orders))
            process.stdin.close()
        except OSError as error:  # it died at once
            _log.debug("compile helper failed: %s", error)
            process.kill()
            process.wait()
            return None
        helper = cls(process, len(callbacks))
        with _helpers_lock:
            _helpers.append(helper)
        return helper

    def wait_for_callbacks(self):
        """Wait until the helper has compiled its callbacks (or has stopped)."""
        for _ in range(self.n_callbacks):
            if not self.process.stdout.readline():
                break

    def wait(self):
        """Wait until the helper has compiled everything (or has stopped).

        Not for it to exit: its interpreter's shutdown took 0.3 s more, which this
        process need not wait for; ``_take_helpers`` reaps it later.
        """
        for line in self.process.stdout:
            if line.strip() == "done":
                break
        self.process.stdout.close()
        with _helpers_lock:
            _exiting.append(self.process)

    def stop(self):
        """Kill the helper."""
        self.process.kill()
        self.process.wait()


def _take_helpers():
    with _helpers_lock:
        helpers = list(_helpers)
        _helpers.clear()
        _exiting[:] = [process for process in _exiting if process.poll() is None]  # reap those gone
    return helpers


def wait_for_helpers():
    """Wait for the compile helpers of this process: what ``fit`` runs next may be theirs."""
    helpers = _take_helpers()
    try:
        for helper in helpers:
            helper.wait()
    except BaseException:  # Ctrl-C: stop them too
        for helper in helpers:
            helper.stop()
        raise


def stop_helpers():
    """Kill the compile helpers of this process (after Ctrl-C or an error)."""
    for helper in _take_helpers():
        helper.stop()


def _helper_main():
    """The helper process: compile what ``_CompileHelper.start`` wrote to standard input."""
    # Its imports ran with the garbage collector off; the collector now skips what they
    # made (as ``_sampling._collecting_new_objects_only`` does in the fitting process).
    gc.freeze()
    gc.enable()
    spec = json.load(sys.stdin)
    if spec["installation"] != _installation_key():  # other code would be filed under this one's keys
        sys.exit(1)
    for source, signature, env_paths, key in spec["callbacks"]:
        env = {name: _resolve(path) for name, path in env_paths.items()}
        _cached_cfunc(source, _SIGNATURES[signature], env, key)
        print(signature, flush=True)
    for path, argument_types in spec["functions"]:
        # As a tuple of types: numba files what ``compile`` is given under the string itself.
        _resolve(path).compile(tuple(sigutils.normalize_signature(argument_types)[0]))
    print("done", flush=True)
