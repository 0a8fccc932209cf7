"""nfpf.io: atomic writes leave nothing half-written; stale temporaries are cleaned."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from nfpf.io import (
    atomic_write,
    config_hash,
    hash_bytes,
    read_json,
    remove_stale_temporaries,
    write_json_atomic,
    write_npy_atomic,
)


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    path = tmp_path / "result.json"
    write_json_atomic(path, {"a": 1})

    def broken(handle) -> None:
        handle.write(b"{half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert read_json(path) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_numpy_values_and_arrays_round_trip(tmp_path) -> None:
    write_json_atomic(tmp_path / "x.json", {"i": np.int64(3), "f": np.float32(0.5),
                                            "a": np.arange(3), "p": tmp_path})
    assert read_json(tmp_path / "x.json") == {"i": 3, "f": 0.5, "a": [0, 1, 2],
                                              "p": str(tmp_path)}
    write_npy_atomic(tmp_path / "x.npy", np.arange(5))
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), np.arange(5))


def test_hashes_are_sha256_of_the_sorted_json() -> None:
    config = {"b": 1, "a": [1, 2]}
    expected = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    assert config_hash(config) == expected[:16]
    assert config_hash({"a": [1, 2], "b": 1}) == config_hash(config)
    assert hash_bytes(b"ab", b"c", length=64) == hashlib.sha256(b"abc").hexdigest()


def test_stale_temporaries_of_a_killed_write_are_removed(tmp_path) -> None:
    """Only the names atomic_write makes, only in that folder."""
    stale = [tmp_path / ".result.json.0123456789ab.tmp", tmp_path / ".indices.npy.abcdef012345.tmp"]
    kept = [tmp_path / "result.json", tmp_path / ".notes.tmp", tmp_path / "x.0123456789ab.tmp",
            tmp_path / "sub" / ".result.json.0123456789ab.tmp"]
    for path in stale + kept:
        path.parent.mkdir(exist_ok=True)
        path.write_text("x")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)
