"""Parameter checks of the SFLM and the NFPF selectors, on the validators every selector uses
(:func:`nfpf.core.selection.check_param` and :func:`~nfpf.core.selection.check_choice`).

NFPF's configs accept a float with an integer value for a whole number (``5.0`` for ``5``,
the released code's MATLAB-style numbers): :func:`check_count` takes it, and the selection
reads such a parameter through :func:`as_count`.
"""

from __future__ import annotations

import numbers
from collections.abc import Collection
from numbers import Integral
from typing import Any

from nfpf.core.selection import as_whole, check_choice, check_param

__all__ = ["FLAGS", "as_count", "check_count", "check_flag", "is_whole"]

#: The values of a yes/no parameter.
FLAGS = (True, False)


def is_whole(value: Any) -> bool:
    """True for a whole number by the one rule, :func:`nfpf.core.selection.as_whole` (a float
    with an integer value counts; a bool does not)."""
    return isinstance(value, numbers.Real) and as_whole(value) is not None


def check_count(name: str, value: Any, low: int = 1, high: int | None = None, *,
                also: Collection = (), hint: str = "") -> None:
    """Raise a one-line ``ValueError`` unless ``value`` is a whole number in
    ``[low, high]`` or one of ``also``.

    Parameters
    ----------
    name : str
        The parameter, as the user writes it.
    value : object
        Its value: an int, a float with an integer value, or one of ``also``.
    low, high : int, optional
        Bounds, both allowed (``high=None``: no upper bound).
    also : collection
        Other accepted values (e.g. ``(None,)``), named in the message.
    hint : str
        Words appended to the allowed range, e.g. ``" (None: the pool's n_classes)"``.
    """
    check_param(name, int(value) if is_whole(value) else value, Integral, low=low, high=high,
                also=also, hint=hint)


def as_count(value: Any) -> Any:
    """A parameter that :func:`check_count` accepted, as an ``int`` (``5.0`` is ``5``); any
    other accepted value (None, a word such as ``"all"``) is returned unchanged."""
    return int(value) if is_whole(value) else value


def check_flag(name: str, value: Any) -> None:
    """Raise a one-line ``ValueError`` unless ``value`` is True or False."""
    check_choice(name, value, FLAGS)
