"""Argument checks shared by every package: one wording and one rule per kind of argument.

The rule, everywhere: an argument of the wrong *type* raises ``TypeError``, one of the right
type with a wrong *value* (out of range, not finite, wrong shape, unknown name) raises
``ValueError``; both name the argument, what was expected and what was received.  ``bool``
is never accepted as a number.  ``threads`` has one meaning in the whole package: None is
the package default (``tomofuse._core.default_threads()``, OpenMP's unless set), an int
``n >= 1`` is exactly ``n``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Sequence

import numpy as np

__all__ = ["angles", "callback", "choice", "default_threads", "energy_kev", "flag", "integer", "number",
           "ints", "positive_length", "positive_number", "seed", "threads"]


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def number(value, name: str, *, unit: str = "", minimum: Optional[float] = None, maximum: Optional[float] = None,
           exclusive_minimum: bool = False, exclusive_maximum: bool = False) -> float:
    """``value`` as a finite float within ``[minimum, maximum]`` (either bound open or absent).

    Raises
    ------
    TypeError
        If ``value`` is not a real number (bools included).
    ValueError
        If it is not finite or out of range.
    """
    where = f" ({unit})" if unit else ""
    if not _is_real(value):
        raise TypeError(f"{name} must be a real number{where}, got {value!r}")
    v = float(value)
    low_ok = minimum is None or (v > minimum if exclusive_minimum else v >= minimum)
    high_ok = maximum is None or (v < maximum if exclusive_maximum else v <= maximum)
    if not (math.isfinite(v) and low_ok and high_ok):
        lo = "" if minimum is None else f"{'(' if exclusive_minimum else '['}{minimum:g}"
        hi = "" if maximum is None else f"{maximum:g}{')' if exclusive_maximum else ']'}"
        if lo and hi:
            span = f" in {lo}, {hi}"
        elif lo:
            span = f" {'>' if exclusive_minimum else '>='} {minimum:g}"
        elif hi:
            span = f" {'<' if exclusive_maximum else '<='} {maximum:g}"
        else:
            span = ""
        raise ValueError(f"{name} must be finite{span}{where}, got {value!r}")
    return v


def positive_number(value, name: str, unit: str, *, allow_zero: bool = False) -> float:
    """``value`` as a float if it is a finite number > 0 (>= 0 with ``allow_zero``) in ``unit``.

    Raises
    ------
    TypeError
        If ``value`` is not a real number (bools included).
    ValueError
        If it is not finite, or negative, or zero without ``allow_zero``.
    """
    if not _is_real(value):
        raise TypeError(f"{name} must be a number in {unit}, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'} and finite ({unit}), "
                         f"got {value!r}")
    return v


def positive_length(value, name: str) -> float:
    """``value`` as a float if it is a positive, finite length in meters.

    Raises
    ------
    TypeError
        If ``value`` is not a real number (bools included).
    ValueError
        If it is not finite and positive.
    """
    if not _is_real(value):
        raise TypeError(f"{name} must be a number in meters, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive length in meters, got {value!r}")
    return v


def integer(value, name: str, *, minimum: Optional[int] = None, maximum: Optional[int] = None,
            unit: str = "") -> int:
    """``value`` as an int within ``[minimum, maximum]``.

    Raises
    ------
    TypeError
        If ``value`` is not an integer (bools and floats included, even whole ones).
    ValueError
        If it is out of range.
    """
    where = f" ({unit})" if unit else ""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int{where}, got {value!r}")
    v = int(value)
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        if minimum is not None and maximum is not None:
            span = f" in [{minimum}, {maximum}]"
        elif minimum is not None:
            span = f" >= {minimum}"
        else:
            span = f" <= {maximum}"
        raise ValueError(f"{name} must be an int{span}{where}, got {value!r}")
    return v


def default_threads() -> int:
    """The package default thread count (``tomofuse._core.default_threads()``)."""
    from . import _core

    return int(_core.default_threads())


def threads(value, name: str = "threads") -> int:
    """The thread count ``value`` means: None = the package default, an int ``n >= 1`` = exactly ``n``.

    Returns
    -------
    int
        ``>= 1``.

    Raises
    ------
    TypeError
        If ``value`` is neither None nor an int.
    ValueError
        If it is an int below 1.
    """
    if value is None:
        return default_threads()
    if not _is_int(value):
        raise TypeError(f"{name} must be None (the package default) or an int >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be None (the package default) or an int >= 1, got {value!r}")
    return int(value)


def seed(value, name: str = "seed") -> int:
    """A random seed: an int >= 0.

    Raises
    ------
    TypeError
        If ``value`` is not an int.
    ValueError
        If it is negative.
    """
    return integer(value, name, minimum=0)


def flag(value, name: str) -> bool:
    """``value`` if it is True or False (NumPy bools too).

    Raises
    ------
    TypeError
        For anything else (0 and 1 included).
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def choice(value, name: str, options: Sequence[Any]):
    """``value`` if it is one of ``options``.

    Raises
    ------
    ValueError
        Otherwise (an unknown name is a wrong value of the right kind).
    """
    try:
        ok = value in options
    except TypeError:  # unhashable against a set
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")
    return value


def callback(value, name: str = "callback"):
    """``value`` if it is None or callable.

    Raises
    ------
    TypeError
        Otherwise.
    """
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {type(value).__name__}")
    return value


def angles(value, n: Optional[int] = None, name: str = "angles") -> np.ndarray:
    """Rotation angles as a C-contiguous 1-D float64 array of finite radians (``n`` of them if given).

    Raises
    ------
    TypeError
        If ``value`` cannot be read as numbers.
    ValueError
        If it is empty, not finite, or not ``n`` long.
    """
    try:
        a = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of radians, got {type(value).__name__}") from None
    if a.size == 0:
        raise ValueError(f"{name} must not be empty")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite (radians)")
    if n is not None and a.size != n:
        raise ValueError(f"{name}: expected {n} angles (one per projection), got {a.size}")
    return np.ascontiguousarray(a)


def energy_kev(value, name: str = "energy_kev") -> float:
    """A photon energy in keV within xraylib's tables, [0.1, 200] keV.

    Raises
    ------
    TypeError
        If ``value`` is not a real number.
    ValueError
        If it is not finite or outside [0.1, 200] keV.
    """
    return number(value, name, unit="keV", minimum=0.1, maximum=200.0)


def ints(value, name: str, *, length: Optional[int] = None, minimum: Optional[int] = None,
         expected: str = "a sequence of ints") -> tuple[int, ...]:
    """``value`` as a tuple of ints (``length`` of them, each ``>= minimum``), e.g. a shape.

    Raises
    ------
    TypeError
        If ``value`` is not a sequence of ints (bools and floats included).
    ValueError
        If it has another length or an entry below ``minimum``.
    """
    try:
        items = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be {expected}, got {value!r}") from None
    if not all(_is_int(v) for v in items):
        raise TypeError(f"{name} must be {expected}, got {value!r}")
    if (length is not None and len(items) != length) or (minimum is not None and any(v < minimum for v in items)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return tuple(int(v) for v in items)
