"""Tests without clocks: no test sleeps or reads the time, so none can flake on a loaded
machine; what must happen in an order is staged with events (tests/test_memo.py,
tests/test_utils.py) or read from a process as it writes (tests/test_pipeline.py)."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CLOCK = re.compile(r"\btime\.sleep\(|\btime\.time\(\)|\bperf_counter\(|\bmonotonic\(")
#: Files that still read a clock, and why; no file may join this list.
STILL_CLOCKED = {
    # records how long each selector took (printed), asserts nothing about time
    "golden_picks.py",
    # poll external services (a SLURM cluster, a Label Studio server) that give no event;
    # neither runs on a machine without them
    "test_slurm.py", "test_label_studio.py",
    # owned by the command-line work: waits for worker processes to exit
    "test_cli.py",
}


def test_no_test_sleeps_or_reads_the_time():
    clocked = {path.name for path in TESTS.glob("*.py")
               if CLOCK.search(path.read_text(encoding="utf-8"))}
    assert clocked - STILL_CLOCKED == set()
