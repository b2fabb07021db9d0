"""Save a fitted estimator to netCDF and load it back.

The file is the estimator's ``idata_`` written by ArviZ; the posterior group's attributes
carry the estimator's class, its parameters, its other fitted attributes and the bayesmix
version that wrote it. Loading refuses a file from another minor version, since the
model behind the posterior may have changed.

Saving writes a temporary file beside the target and renames it over the target only
once it is complete, so a failed write (a full disk, an interrupt) leaves any earlier
file at that path as it was, and no temporary file.
"""

import json
import os
import uuid
from pathlib import Path

import arviz as az
import numpy as np
import xarray as xr

from .families import Family, get_family

FORMAT_KEY = "bayesmix"
_META_KEYS = ("version", "class", "params", "fitted")


def _encode(value, name):
    """JSON-ready form of a parameter or fitted attribute; ``name`` is for the error."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {"__dict__": [[_encode(k, name), _encode(v, name)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, name) for v in value]}
    if isinstance(value, list):
        return [_encode(v, name) for v in value]
    if isinstance(value, range):
        return list(value)
    if isinstance(value, np.random.RandomState):
        return {"__random_state__": _encode(value.get_state(), name)}
    if isinstance(value, Family):
        # A family's functions cannot go into a file: it is stored by name, which must
        # find this very family when the file is loaded.
        try:
            registered = get_family(value.name)
        except ValueError:
            registered = None
        if registered is not value:
            raise ValueError(
                f"Cannot save {name}: it holds the Family {value.name!r}, which is not "
                "registered; the file stores families by name, so call "
                "bayesmix.register_family(family) before save() (and before load() in a "
                "new process)."
            )
        return {"__family__": value.name}
    raise TypeError(
        f"Cannot save {name}: values of type {type(value).__name__} cannot be written to "
        "the file. Use numbers, strings, lists, dicts, arrays, None, registered families "
        "or, for random_state, an int or a numpy RandomState."
    )


def _decode(value):
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.asarray(value["__ndarray__"], dtype=value["dtype"])
        if "__dict__" in value:
            return {_decode(k): _decode(v) for k, v in value["__dict__"]}
        if "__tuple__" in value:
            return tuple(_decode(v) for v in value["__tuple__"])
        if "__random_state__" in value:
            state = np.random.RandomState()
            state.set_state(tuple(_decode(value["__random_state__"])))
            return state
        if "__family__" in value:
            try:
                return get_family(value["__family__"])
            except ValueError:
                raise ValueError(
                    f"The file uses the component family {value['__family__']!r}, which is "
                    "not registered in this process: register it with "
                    "bayesmix.register_family before load()."
                ) from None
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _compatible(written, running):
    return written.split(".")[:2] == running.split(".")[:2]


def _fitted_names(cls, names, params):
    """Raise unless every name is a fitted attribute's name for ``cls``.

    That is ``name_``, and not a method, property, parameter or private name.
    """
    for name in names:
        if (
            not isinstance(name, str)
            or not name.isidentifier()
            or not name.endswith("_")
            or name.startswith("_")
            or name == "idata_"
            or name in params
            or hasattr(cls, name)
        ):
            raise ValueError(f"{name!r} is not a fitted attribute of {cls.__name__}.")


def save(est, path):
    """Write a fitted estimator to a netCDF file (see :meth:`BaseBayesianMixture.save`)."""
    from . import __version__

    fitted = {
        name: value
        for name, value in vars(est).items()
        if name.endswith("_") and not name.startswith("_") and name != "idata_"
    }
    params = est.get_params(deep=False)
    meta = json.dumps(
        {
            "version": __version__,
            "class": type(est).__name__,
            "params": {k: _encode(v, f"parameter {k}") for k, v in params.items()},
            "fitted": {k: _encode(v, f"attribute {k}") for k, v in fitted.items()},
        }
    )
    idata = est.idata_.copy()
    idata.posterior.attrs[FORMAT_KEY] = meta

    target = Path(path)
    if not target.parent.is_dir():
        raise FileNotFoundError(f"Cannot save to {target}: folder {target.parent} does not exist.")
    # The file is built in memory and written with plain file calls: HDF5 crashes the
    # process when one of its own writes fails (a full disk), a Python write raises OSError.
    tree = xr.DataTree.from_dict({f"/{group}": idata[group] for group in idata.groups()})
    image = tree.to_netcdf(None, engine="h5netcdf")
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(temporary, "xb") as handle:
            handle.write(image)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def load(path):
    """Read an estimator written by ``est.save(path)``.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    estimator
        Fitted, with the same posterior and parameters: its predictions equal the saved
        estimator's.

    Raises
    ------
    ValueError
        If the file was not written by bayesmix, by an incompatible version, or its
        fitted attributes disagree with its posterior.
    """
    from . import __version__, estimators
    from ._base import _flatten_draws

    # Eager: the data are read now and the file is closed, so it can be overwritten.
    with az.rc_context({"data.load": "eager"}):
        idata = az.from_netcdf(str(path))
    try:
        meta = json.loads(idata.posterior.attrs[FORMAT_KEY])
    except (KeyError, AttributeError, ValueError):
        raise ValueError(f"{path} was not written by bayesmix's save().") from None
    missing = [key for key in _META_KEYS if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise ValueError(
            f"{path} has bayesmix metadata without {missing}: it was not written by "
            "bayesmix's save() or has been altered; refit and save the model again."
        )
    if not _compatible(str(meta["version"]), __version__):
        raise ValueError(
            f"{path} was written by bayesmix {meta['version']}, which is not compatible "
            f"with this bayesmix {__version__}; refit the model with this version."
        )
    classes = {cls.__name__: cls for cls in estimators()}
    if meta["class"] not in classes:
        raise ValueError(f"{path} holds an unknown estimator class {meta['class']!r}.")
    cls = classes[meta["class"]]
    del idata.posterior.attrs[FORMAT_KEY]
    params = {k: _decode(v) for k, v in meta["params"].items()}
    fitted = {k: _decode(v) for k, v in meta["fitted"].items()}
    try:
        est = cls(**params)
        _fitted_names(cls, fitted, params)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path} holds an invalid {cls.__name__}: {error}") from None

    n_components = idata.posterior.sizes.get("component")
    if n_components != est.n_components:
        raise ValueError(
            f"{path} is inconsistent: its posterior has {n_components} components, its "
            f"parameters say {est.n_components}."
        )
    est.idata_ = idata
    # The point estimates are recomputed from the posterior and must equal the stored ones.
    try:
        est._set_point_estimates(_flatten_draws(idata.posterior))
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(
            f"{path} is inconsistent: its posterior does not fit a {cls.__name__} with its "
            f"parameters ({type(error).__name__}: {error})."
        ) from None
    for name, value in fitted.items():
        if name in vars(est) and not _equal(value, vars(est)[name]):
            raise ValueError(
                f"{path} is inconsistent: its {name} differs from the posterior's; the file "
                "has been altered."
            )
        setattr(est, name, value)
    return est


def _equal(a, b):
    """Whether two fitted values agree (arrays to rounding, containers item by item)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    try:
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    except (TypeError, ValueError):
        return False
    return a.shape == b.shape and np.allclose(a, b, rtol=1e-12, atol=0, equal_nan=True)
