"""Small shared helpers: ordered_map (threads, results in item order, bounded memory) and
single_threaded (scoped thread limits). No clocks: the order in which the workers finish,
and how many run at once, are staged with events and a barrier."""

from __future__ import annotations

import threading

import pytest
import torch

from nfpf.core.resources import ordered_map, single_threaded


def test_ordered_map_keeps_item_order_whatever_finishes_first():
    # items in groups of three (as many as the workers): the first of a group finishes only
    # after the second, the second only after the third
    n_jobs, n_items = 3, 21
    finished = [threading.Event() for _ in range(n_items)]
    order: list[int] = []
    lock = threading.Lock()

    def later_items_first(i):
        if i % n_jobs != n_jobs - 1:
            finished[i + 1].wait()
        with lock:
            order.append(i)
        finished[i].set()
        return i * i

    assert list(ordered_map(later_items_first, range(n_items), n_jobs)) == \
        [i * i for i in range(n_items)]
    assert order == [g + j for g in range(0, n_items, n_jobs) for j in reversed(range(n_jobs))]


def test_ordered_map_runs_at_most_n_jobs_at_once_and_bounds_what_waits():
    lock = threading.Lock()
    running, peak, pulled = [0], [0], []
    all_three_in = threading.Barrier(3)  # each item waits until three run side by side

    def work(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        all_three_in.wait()
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
    assert peak[0] == 3


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
