"""Rounded data: the resolution of each column and what it does to a continuous component.

Real data are usually rounded (minutes, ages, an instrument's last digit). A value
recorded as ``x`` at resolution ``h`` stands for the interval ``[x - h/2, x + h/2]``, and
its likelihood is that interval's probability. Treating it as a point instead lets a
continuous component shrink onto a repeated value, where its density, and the
likelihood, grow without bound; mixtures then "find" one component per tied value.

For Gaussian components bayesmix uses Sheppard's correction: the interval probability
divided by ``h`` is the component's density convolved with Uniform(-h/2, h/2), which is
close to a normal density with ``h**2 / 12`` added to the variance. That keeps the fused
Gaussian kernels unchanged (only the standard deviations they receive grow), bounds the
density of a value by ``sqrt(12 / (2 pi)) / h = 1.38 / h`` (the exact interval
probability gives ``1 / h``), and is within 1% of the exact interval log-probability once
a component's standard deviation exceeds ``h`` (see the user guide's "Choosing the number
of components" page). The posterior's standard deviations stay those of the underlying
continuous components.
"""

from numbers import Real

import numpy as np

__all__ = ["detect_resolution", "resolve_resolution", "sheppard_sd"]

# A column is on a grid of step h when every distinct value is within this many steps of
# a grid point.
_GRID_TOLERANCE = 1e-6
# Grid steps tried: the smallest spacing of distinct values divided by 1 .. this.
_MAX_DIVISOR = 10


def detect_resolution(values):
    """The resolution of each column: the step of the grid its values lie on, else 0.

    A column looks rounded when it has at least three distinct values and all of them lie
    on a grid ``x0 + h * integer`` whose step ``h`` is the smallest spacing between
    distinct values, or that spacing divided by a small integer (up to 10: values
    rounded to 0.1 whose closest pair is 0.2 apart). Continuous data (no such grid)
    get 0. A column of exactly two distinct values (a binary column, or a measurement
    that only ever took two values) gets their spacing: among more than two rows its
    values are tied, and without a resolution a continuous component could shrink onto
    one of them, where its density has no bound.

    Parameters
    ----------
    values : array-like of shape (n_samples,) or (n_samples, n_features)

    Returns
    -------
    ndarray of shape (n_features,)
        The grid step per column (0 where the column is not on a grid).
    """
    values = np.asarray(values, dtype=float)
    values = values.reshape(len(values), -1)
    out = np.zeros(values.shape[1])
    for j in range(values.shape[1]):
        column = values[:, j]
        distinct = np.unique(column[np.isfinite(column)])
        if distinct.size == 2:
            out[j] = distinct[1] - distinct[0]
            continue
        if distinct.size < 3:
            continue
        offsets = distinct - distinct[0]
        spacing = float(np.min(np.diff(distinct)))
        for divisor in range(1, _MAX_DIVISOR + 1):
            step = spacing / divisor
            units = offsets / step
            if np.all(np.abs(units - np.round(units)) <= _GRID_TOLERANCE * max(1.0, units[-1] * 1e-3)):
                out[j] = step
                break
    return out


def resolve_resolution(resolution, values, name="X"):
    """The resolution per column from the estimator's ``resolution`` parameter.

    Parameters
    ----------
    resolution : "auto", float, array-like or None
        ``"auto"``: :func:`detect_resolution`. A non-negative float: every column. An
        array: one value per column. ``None`` or 0: no rounding.
    values : ndarray of shape (n_samples,) or (n_samples, n_features)
        The data (user scale).
    name : str
        How the data are named in error messages.

    Returns
    -------
    ndarray of shape (n_features,)
        Non-negative resolutions on the user's scale.
    """
    values = np.asarray(values, dtype=float)
    n_features = 1 if values.ndim == 1 else values.shape[1]
    if isinstance(resolution, str):
        if resolution != "auto":
            raise ValueError(f"resolution must be 'auto', a number, an array or None, got {resolution!r}.")
        return detect_resolution(values)
    if resolution is None:
        return np.zeros(n_features)
    if isinstance(resolution, Real) and not isinstance(resolution, bool):
        array = np.full(n_features, float(resolution))
    else:
        array = np.asarray(resolution, dtype=float).ravel()
        if array.shape != (n_features,):
            raise ValueError(
                f"resolution must be a scalar or have one value per column of {name} "
                f"({n_features}), got shape {np.shape(resolution)}."
            )
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(
            f"resolution must be finite and non-negative (0 or None: the data are not "
            f"rounded), got {resolution!r}."
        )
    return array


def sheppard_sd(sd, resolution):
    """Standard deviation of a normal component observed at ``resolution``.

    ``sqrt(sd**2 + resolution**2 / 12)``; works on numpy arrays and pytensor tensors.
    NumPy values go through ``hypot``, whose squares neither underflow (data near 1e-200)
    nor overflow (near 1e300); the model sees standardized values.
    """
    if isinstance(sd, (np.ndarray, np.floating, float)):
        return np.hypot(sd, np.asarray(resolution) / np.sqrt(12.0))
    return (sd**2 + resolution**2 / 12.0) ** 0.5
