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
callbacks from disk. Only nutpie's private helpers of version 0.16 are used; when they, or
the PyTensor cache key, are missing, ``compile_pymc_model`` falls back to nutpie's own.
"""

from __future__ import annotations

import hashlib

import numba
import numpy as np
from numba import carray  # noqa: F401 (used by the generated source)
from numba.core import cgutils, types

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
# makes numba's cfunc wrapper report it and return 0, so the outputs are NaN beforehand
# and such a point reads as one nutpie cannot use (a divergence), never as a good one.
_LOGP_SOURCE = """
def logp_callback(dim, x_, out_, logp_, user_data_):
    if dim != {n_dim}:
        return -1
    table = carray(user_data_, ({n_words},), np.uint64)
    x = carray(x_, ({n_dim},))
    out = carray(out_, ({n_dim},))
    logp = carray(logp_, ())
    logp[()] = np.nan
    out[...] = np.nan
    logp_val, grad = inner(x, {shared})
    logp[()] = logp_val
    out[...] = grad
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
    try:
        table = carray(user_data_, ({n_words},), np.uint64)
        x = carray(x_, ({n_dim},))
        out = carray(out_, ({n_expanded},))
        (values,) = inner(x, {shared})
        out[...] = values
    except Exception:
        return -2
    return 0
"""

# Bump when the generated source changes meaning without changing its text.
_WRAPPER_VERSION = 3


@numba.extending.intrinsic
def _as_pointer(typingctx, address):
    """The ``void*`` at an integer address."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


def compile_pymc_model(model, *, initial_points, jitter_rvs=None):
    """``nutpie.compile_pymc_model(model, backend="numba", ...)`` with cached callbacks.

    Parameters
    ----------
    model : pymc.Model
    initial_points : dict
        Passed to PyMC's initial-point function, as nutpie does.
    jitter_rvs : set of random variables, optional
        Variables that get nutpie's U(-1, 1) jitter; ``None`` jitters every free variable.

    Returns
    -------
    nutpie.compile_pymc.CompiledPyMCModel
    """
    try:
        from nutpie.compile_pymc import (
            CompiledPyMCModel,
            _make_functions,
            _prepare_dims_and_coords,
            _wrap_with_lock,
            make_user_data,
        )
        from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS
    except ImportError:
        return _nutpie_compile(model, initial_points, jitter_rvs)
    from pymc.initial_point import make_initial_point_fn

    pymc_initial_point_fn = _wrap_with_lock(
        make_initial_point_fn(
            model=model,
            overrides=initial_points,
            default_strategy="support_point",
            jitter_rvs=set(model.free_RVs) if jitter_rvs is None else jitter_rvs,
            return_transformed=True,
        )
    )
    n_dim, n_expanded, logp_fn, expand_fn, initial_point_fn, shape_info = _make_functions(
        model,
        mode="NUMBA",
        compute_grad=True,
        join_expanded=True,
        pymc_initial_point_fn=pymc_initial_point_fn,
    )
    callbacks_to_build = [
        (_LOGP_SOURCE, _LOGP_SIGNATURE, logp_fn),
        (_EXPAND_SOURCE, _EXPAND_SIGNATURE, expand_fn),
    ]
    graph_keys = [CACHED_SRC_FUNCTIONS.get(fn.vm.jit_fn.py_func) for _, _, fn in callbacks_to_build]
    if None in graph_keys:  # PyTensor could not cache a graph: nutpie's own path
        return _nutpie_compile(model, initial_points, jitter_rvs)

    shared_data, shared_vars = {}, {}
    for var in [*logp_fn.get_shared(), *expand_fn.get_shared()]:
        if var.name in shared_vars and shared_vars[var.name] is not var:
            raise ValueError(f"Shared variables must have unique names: {var.name}")
        value = np.array(var.get_value(), order="C", copy=True)
        value.flags.writeable = False
        shared_data[var.name], shared_vars[var.name] = value, var
    user_data = make_user_data(shared_vars, shared_data)

    callbacks = []
    for (source, signature, function), graph_key in zip(callbacks_to_build, graph_keys):
        shared = [
            _read_shared(user_data.dtype, var.name, shared_data[var.name])
            for var in function.get_shared()
        ]
        text = source.format(
            n_dim=n_dim,
            n_expanded=n_expanded,
            n_words=user_data.dtype.itemsize // 8,
            shared=", ".join(shared),
        )
        callbacks.append(_cached_cfunc(text, signature, _inner(function), graph_key))

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


def _cached_cfunc(source, signature, inner, graph_key):
    from pytensor.link.numba.cache import compile_numba_function_src

    name = source.split("def ", 1)[1].split("(", 1)[0]
    key = hashlib.sha256(f"{_WRAPPER_VERSION}\n{graph_key}\n{source}".encode()).hexdigest()
    function = compile_numba_function_src(
        source,
        name,
        # This module's globals (with its ``__name__``) let numba rebuild the callback's
        # environment when it loads the callback from the cache in another process.
        global_env=globals() | {"inner": inner},
        cache_key=f"bayesmix_nutpie_{key}",
    )
    return numba.cfunc(signature, cache=True)(function)
