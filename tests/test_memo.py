"""nfpf.core.memo.Memo: reuse across calls, and one computation when workers ask at once."""

from __future__ import annotations

import threading
import time

import numpy as np

from nfpf.core.memo import Memo


def _slow_sum(data: np.ndarray, scale: float, calls: list) -> float:
    calls.append(1)
    time.sleep(0.5)
    return float(data.sum() * scale)


def test_second_call_is_a_hit_and_another_parameter_a_miss(tmp_path):
    data = np.arange(12.0).reshape(3, 4)
    calls: list = []
    memo = Memo(str(tmp_path))
    assert memo.call("sum", _slow_sum, data, {"scale": 2.0}, calls=calls) == 132.0
    assert memo.call("sum", _slow_sum, data, {"scale": 2.0}, calls=calls) == 132.0
    assert memo.call("sum", _slow_sum, data, {"scale": 3.0}, calls=calls) == 198.0
    assert len(calls) == 2 and memo.hits == ["sum"]


def test_concurrent_requests_for_one_entry_compute_it_once(tmp_path):
    data = np.ones((4, 3))
    calls: list = []
    results: list = []
    memos = [Memo(str(tmp_path)) for _ in range(2)]

    def ask(memo: Memo) -> None:
        results.append(memo.call("sum", _slow_sum, data, {"scale": 1.0}, calls=calls))

    threads = [threading.Thread(target=ask, args=(m,)) for m in memos]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [12.0, 12.0]
    assert len(calls) == 1
    assert sorted(len(m.hits) for m in memos) == [0, 1]
