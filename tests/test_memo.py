"""nfpf.core.memo.Memo: reuse across calls, and one computation when workers ask at once.

No clocks: the concurrent case is staged with events, so that the second worker asks for
the entry while the first one is computing it, whatever the load of the machine.
"""

from __future__ import annotations

import threading

import numpy as np
from filelock import FileLock

import nfpf.core.memo
from nfpf.core.memo import Memo


def _sum(data: np.ndarray, scale: float, calls: list) -> float:
    calls.append(1)
    return float(data.sum() * scale)


def test_second_call_is_a_hit_and_another_parameter_a_miss(tmp_path):
    data = np.arange(12.0).reshape(3, 4)
    calls: list = []
    memo = Memo(str(tmp_path))
    assert memo.call("sum", _sum, data, {"scale": 2.0}, calls=calls) == 132.0
    assert memo.call("sum", _sum, data, {"scale": 2.0}, calls=calls) == 132.0
    assert memo.call("sum", _sum, data, {"scale": 3.0}, calls=calls) == 198.0
    assert len(calls) == 2 and memo.hits == ["sum"]


def test_concurrent_requests_for_one_entry_compute_it_once(tmp_path, monkeypatch):
    """The first worker's computation lasts until the second worker has asked for the entry
    (its lock request is seen); the second must then wait and reuse, not compute."""
    second_asked = threading.Event()
    asking = threading.local()

    class SeenLock(FileLock):
        def acquire(self, *args, **kwargs):
            if getattr(asking, "second", False):
                second_asked.set()
            return super().acquire(*args, **kwargs)

    monkeypatch.setattr(nfpf.core.memo, "FileLock", SeenLock)
    first_computing = threading.Event()
    calls: list = []

    def computed_while_the_second_asks(data: np.ndarray, scale: float) -> float:
        calls.append(1)
        if getattr(asking, "second", False):  # no lock kept the second out: a failure
            second_asked.set()
            return float(data.sum() * scale)
        first_computing.set()
        second_asked.wait()
        return float(data.sum() * scale)

    data = np.ones((4, 3))
    memos = {"first": Memo(str(tmp_path)), "second": Memo(str(tmp_path))}
    results: dict[str, float] = {}

    def ask(who: str) -> None:
        asking.second = who == "second"
        results[who] = memos[who].call("sum", computed_while_the_second_asks, data,
                                       {"scale": 1.0})

    first = threading.Thread(target=ask, args=("first",))
    first.start()
    first_computing.wait()
    second = threading.Thread(target=ask, args=("second",))
    second.start()
    first.join()
    second.join()
    assert results == {"first": 12.0, "second": 12.0}
    assert len(calls) == 1
    assert memos["first"].hits == [] and memos["second"].hits == ["sum"]
