"""Special functions in numba for the kernels and for PyTensor's numba backend."""

import math

import numba
import numpy as np

# Beyond this many standard deviations ``-z**2 / 2`` would overflow to -inf.
Z_FAR = 1e150


@numba.njit(inline="always")
def half_square(z):
    """``-z**2 / 2``, kept finite for every finite ``z``: NumPy's ``_base.half_square`` for one value."""
    z = abs(z)
    if z > Z_FAR:
        return Z_FAR * Z_FAR * (-0.5 - math.log(z / Z_FAR))
    return -0.5 * z * z


@numba.njit(cache=True)
def digamma(x):
    """The digamma function for real ``x``, to about 1e-15 relative (as scipy's psi).

    Recurrence up to x >= 10, then the asymptotic series; reflection below 0.
    """
    if x <= 0.0 and x == np.floor(x):
        return -np.inf if x == 0.0 else np.nan
    result = 0.0
    if x < 0.0:
        # psi(x) = psi(1 - x) - pi / tan(pi x)
        result -= np.pi / np.tan(np.pi * x)
        x = 1.0 - x
    while x < 10.0:
        result -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    series = f * (1.0 / 12 - f * (1.0 / 120 - f * (1.0 / 252 - f * (1.0 / 240 - f * (1.0 / 132 - f * 691.0 / 32760)))))
    return result + np.log(x) - 0.5 / x - series
