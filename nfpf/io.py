"""The one home of file I/O shared by every layer: atomic writes, JSON, hashing, cache root.

Every file a run, a cache or ``nfpf-select`` writes goes through :func:`atomic_write`: written
to a temporary name in the same directory and renamed into place, so a killed process never
leaves a file that looks complete. This module imports nothing else of nfpf.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "CACHE_DIR_ENV",
    "atomic_write",
    "cache_root",
    "config_hash",
    "hash_bytes",
    "json_default",
    "read_json",
    "remove_stale_temporaries",
    "write_json_atomic",
    "write_npy_atomic",
]

#: Random bytes in a temporary file's name (hex-encoded: twice as many characters).
_TOKEN_BYTES = 6
#: Environment variable for the cache root (unpacked archives, decoded images, selections).
CACHE_DIR_ENV = "NFPF_CACHE_DIR"


def cache_root() -> Path:
    """``$NFPF_CACHE_DIR`` if set, else ``~/.cache/nfpf``."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nfpf"


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Create ``path`` (and its parents) by calling ``write(handle)`` on a binary handle of a
    temporary file in the same directory, then renaming it into place; on any error the
    temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: it creates files 0600 whatever the umask, and results and caches
    # on a shared disk must be readable by the umask's choice of users, like any other file.
    tmp = path.parent / f".{path.name}.{secrets.token_hex(_TOKEN_BYTES)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files :func:`atomic_write` left in ``directory`` (not below it)
    when its process was killed mid-write, and return their paths.

    Call it only while no other process writes into ``directory`` (a run holds its lock):
    a live writer's temporary file looks the same.
    """
    pattern = re.compile(rf"\..+\.[0-9a-f]{{{2 * _TOKEN_BYTES}}}\.tmp")
    stale = [path for path in Path(directory).glob(".*.tmp") if pattern.fullmatch(path.name)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def json_default(obj: Any) -> Any:
    """``json.dumps``'s ``default``: numpy scalars and arrays as Python numbers and lists,
    paths as strings; anything else is refused."""
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` via :func:`atomic_write` (mode follows the umask)."""
    data = json.dumps(obj, indent=2, sort_keys=False, default=json_default).encode()
    atomic_write(path, lambda handle: handle.write(data))


def write_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as .npy to ``path`` via :func:`atomic_write`."""
    atomic_write(path, lambda handle: np.save(handle, np.asarray(array)))


def read_json(path: str | os.PathLike) -> Any:
    """The JSON document at ``path``."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def hash_bytes(*chunks: bytes, length: int = 16) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``chunks`` concatenated."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()[:length]


def config_hash(config: Any, length: int = 16) -> str:
    """A short stable hash of a plain (resolved) config: its sorted-key JSON's SHA-256."""
    return hash_bytes(json.dumps(config, sort_keys=True, default=json_default).encode(),
                      length=length)
