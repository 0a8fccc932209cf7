"""Exit statuses of the command-line tools (README, "Exit codes"), the wrapper that gives
a Hydra app's main function those statuses, and the record of whether Hydra accepted the
command line (what tells a rejected command line from a failed run)."""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_USAGE", "call_hydra_main",
           "command_line_accepted", "mark_command_line_accepted"]

#: A run failed, or an unexpected error (its traceback is shown).
EXIT_FAILED = 1
#: Bad input: the command line or a config value was rejected (one line on stderr).
EXIT_USAGE = 2
#: Interrupted by Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


_accepted = False


def mark_command_line_accepted() -> None:
    """Record that Hydra accepted this process's command line: a job was entered, or a
    sweep's batch passed validation."""
    global _accepted
    _accepted = True


def command_line_accepted() -> bool:
    """Whether :func:`mark_command_line_accepted` was called in this process."""
    return _accepted


def call_hydra_main(hydra_main: Callable[[], object], interrupted: Callable[[], str]) -> None:
    """Call a ``@hydra.main`` function with the tools' exit statuses.

    Hydra exits 1 for every error it reports itself; before the command line was accepted
    (see :func:`mark_command_line_accepted`) that is a rejected command line,
    :data:`EXIT_USAGE`.

    Parameters
    ----------
    hydra_main : the decorated function (it parses ``sys.argv``).
    interrupted : the one line printed on Ctrl-C (instead of a traceback).
    """
    try:
        hydra_main()
    except KeyboardInterrupt:
        print(interrupted(), file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except SystemExit as stop:
        if stop.code == 1 and not command_line_accepted():
            sys.exit(EXIT_USAGE)
        raise
