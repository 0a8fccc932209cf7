"""Whole-number parameters of the SFLM and the NFPF selectors, checked by
:func:`nfpf.core.selection.check_param` (the check every selector uses)."""

from __future__ import annotations

import numbers
from numbers import Integral
from typing import Any

from nfpf.core.selection import check_param

__all__ = ["check_count", "is_whole"]


def is_whole(value: Any) -> bool:
    """True for an integer (a float with an integer value counts; a bool does not)."""
    return (not isinstance(value, bool) and isinstance(value, numbers.Real)
            and float(value).is_integer())


def check_count(value: Any, name: str, minimum: int = 1, *, none: str | None = None
                ) -> int | None:
    """``value`` as an int ``>= minimum``, or None where ``none`` says what None means.

    Parameters
    ----------
    value : int, float with an integer value, or None
    name : str
        The parameter's name, for the error message.
    minimum : int, default=1
    none : str, optional
        What None stands for (e.g. ``"the pool's n_classes"``); None is refused when not given.

    Returns
    -------
    count : int or None

    Raises
    ------
    ValueError
        One line naming the parameter and what it accepts.
    """
    if value is None and none is not None:
        return None
    # NFPF's configs accept 5.0 for 5 (the released code's MATLAB-style numbers); the check
    # itself is the one every selector uses
    count = int(value) if is_whole(value) else value
    check_param(name, count, Integral, low=minimum,
                hint=f" or None ({none})" if none is not None else "")
    return count
