"""Small shared helpers: ordered_map (threads, results in item order, bounded memory) and
single_threaded (scoped thread limits)."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from nfpf.core.resources import ordered_map, single_threaded


def test_ordered_map_keeps_item_order_whatever_finishes_first():
    def slow_first(i):
        time.sleep(0.002 * (20 - i))  # early items finish last
        return i * i

    assert list(ordered_map(slow_first, range(20), 3)) == [i * i for i in range(20)]


def test_ordered_map_runs_at_most_n_jobs_at_once_and_bounds_what_waits():
    lock = threading.Lock()
    running, peak, pulled = [0], [0], []

    def work(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.003)
        with lock:
            running[0] -= 1
        return i

    def items():
        for i in range(60):
            pulled.append(i)
            yield i

    results = ordered_map(work, items(), 3)
    assert next(results) == 0
    assert len(pulled) <= 3 + 1  # not the whole stream submitted up front
    assert list(results) == list(range(1, 60))
    assert 2 <= peak[0] <= 3


def test_ordered_map_one_job_runs_in_the_calling_thread():
    caller = threading.get_ident()
    assert set(ordered_map(lambda _: threading.get_ident(), range(5), 1)) == {caller}


def test_ordered_map_raises_the_item_error():
    def fail_at_5(i):
        if i == 5:
            raise ValueError("item 5 is bad")
        return i

    with pytest.raises(ValueError, match="item 5"):
        list(ordered_map(fail_at_5, range(10), 2))


def test_single_threaded_limits_and_restores():
    before = torch.get_num_threads()
    with single_threaded():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
