"""Checks of whole-number parameters, shared by the SFLM and the NFPF selectors."""

from __future__ import annotations

import numbers
from typing import Any

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
    if not is_whole(value) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        accepted = f"{kind} or None ({none})" if none is not None else kind
        raise ValueError(f"{name} must be {accepted}; got {value!r}.")
    return int(value)
