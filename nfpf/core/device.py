"""Where a selector computes: the ``device`` option shared by NFPF and the baselines.

Every selector with a GPU path takes ``device``:

- ``"cpu"``: the reference path (numpy / scikit-learn / torch on the CPU), whose picks the
  tests pin down;
- ``"cuda"`` or ``"cuda:N"``: the torch kernels of :mod:`nfpf.core.kernels` on that GPU;
- ``"auto"``: ``"cuda"`` when a CUDA GPU is visible, else ``"cpu"``.

:func:`compute_device` turns the option into ``None`` (the CPU reference path) or the
``torch.device`` the kernels run on, and refuses a GPU that is not there before any work.
:func:`out_of_memory_hint` turns a CUDA out-of-memory error into a message that names the
option that bounds the memory.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch

__all__ = ["DEVICES", "GpuMemoryError", "check_device", "compute_device", "gpu_memory_guard"]

#: the values of a selector's ``device`` option (``cuda:N`` names one GPU)
DEVICES = ("auto", "cpu", "cuda")

_CUDA = re.compile(r"^cuda(:\d+)?$")


class GpuMemoryError(MemoryError):
    """A GPU ran out of memory during a selection; the message names the option to lower."""


def check_device(device: str, key: str = "device") -> str:
    """Validate a ``device`` option (``auto``, ``cpu``, ``cuda`` or ``cuda:N``) by its form.

    Availability is checked when the selection starts (:func:`compute_device`), so a config
    written for a GPU machine still composes and validates elsewhere.
    """
    if not isinstance(device, str) or not (device in ("auto", "cpu") or _CUDA.match(device)):
        raise ValueError(f"{key} must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}.")
    return device


def compute_device(device: str, key: str = "device") -> torch.device | None:
    """The GPU a selection runs on, or ``None`` for the CPU reference path.

    Raises
    ------
    ValueError
        ``device`` names a CUDA GPU but none is visible (or not that many).
    """
    check_device(device, key)
    if device == "cpu":
        return None
    available = torch.cuda.is_available()
    if device == "auto":
        return torch.device("cuda") if available else None
    index = int(device.split(":")[1]) if ":" in device else 0
    if not available or index >= torch.cuda.device_count():
        seen = torch.cuda.device_count() if available else 0
        raise ValueError(
            f"{key}={device} but this machine has {seen} visible CUDA GPU(s); use "
            f"{key}=auto (the GPU when there is one) or {key}=cpu."
        )
    return torch.device(device)


@contextlib.contextmanager
def gpu_memory_guard(who: str, option: str) -> Iterator[None]:
    """Re-raise a CUDA out-of-memory error as :class:`GpuMemoryError` naming ``option``
    (e.g. ``"selector.batch_size"``), the setting that bounds the GPU memory of ``who``."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as err:
        torch.cuda.empty_cache()
        raise GpuMemoryError(
            f"{who} ran out of GPU memory ({str(err).splitlines()[0]}). Lower {option}, or "
            f"run it on the CPU with device=cpu."
        ) from err
