"""Save a fitted estimator to netCDF and load it back.

The file is the estimator's ``idata_`` written by ArviZ; the posterior group's attributes
carry the estimator's class, its parameters, its other fitted attributes and the bayesmix
version that wrote it. Loading refuses a file from another minor version, since the
model behind the posterior may have changed.
"""

import json

import arviz as az
import numpy as np

FORMAT_KEY = "bayesmix"


def _encode(value):
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {"__dict__": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, range):
        return list(value)
    return value


def _decode(value):
    if isinstance(value, dict) and "__ndarray__" in value:
        return np.asarray(value["__ndarray__"], dtype=value["dtype"])
    if isinstance(value, dict) and "__dict__" in value:
        return {_decode(k): _decode(v) for k, v in value["__dict__"]}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _compatible(written, running):
    return written.split(".")[:2] == running.split(".")[:2]


def save(est, path):
    """Write a fitted estimator to a netCDF file (see :meth:`BaseBayesianMixture.save`)."""
    from . import __version__

    fitted = {
        name: value
        for name, value in vars(est).items()
        if name.endswith("_") and not name.startswith("_") and name != "idata_"
    }
    idata = est.idata_.copy()
    idata.posterior.attrs[FORMAT_KEY] = json.dumps(
        {
            "version": __version__,
            "class": type(est).__name__,
            "params": _encode(est.get_params(deep=False)),
            "fitted": _encode(fitted),
        }
    )
    idata.to_netcdf(str(path))
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
        If the file was not written by bayesmix, or by an incompatible version.
    """
    from . import __version__, estimators

    idata = az.from_netcdf(str(path))
    try:
        meta = json.loads(idata.posterior.attrs[FORMAT_KEY])
    except (KeyError, AttributeError, ValueError):
        raise ValueError(f"{path} was not written by bayesmix's save().") from None
    if not _compatible(meta["version"], __version__):
        raise ValueError(
            f"{path} was written by bayesmix {meta['version']}, which is not compatible "
            f"with this bayesmix {__version__}; refit the model with this version."
        )
    classes = {cls.__name__: cls for cls in estimators()}
    if meta["class"] not in classes:
        raise ValueError(f"{path} holds an unknown estimator class {meta['class']!r}.")
    del idata.posterior.attrs[FORMAT_KEY]
    est = classes[meta["class"]](**_decode(meta["params"]))
    for name, value in _decode(meta["fitted"]).items():
        setattr(est, name, value)
    est.idata_ = idata
    return est
