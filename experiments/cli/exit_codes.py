"""Exit statuses of the command-line tools (README, "Exit codes"), and the wrapper that gives
a Hydra app's main function those statuses."""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_USAGE", "call_hydra_main"]

#: A run failed, or an unexpected error (its traceback is shown).
EXIT_FAILED = 1
#: Bad input: the command line or a config value was rejected (one line on stderr).
EXIT_USAGE = 2
#: Interrupted by Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


def call_hydra_main(hydra_main: Callable[[], object], accepted: Callable[[], bool],
                    interrupted: Callable[[], str]) -> None:
    """Call a ``@hydra.main`` function with the tools' exit statuses.

    Parameters
    ----------
    hydra_main : the decorated function (it parses ``sys.argv``).
    accepted : whether Hydra accepted the command line (a job was entered). Hydra exits 1 for
        every error it reports itself; before that point it is a rejected command line,
        :data:`EXIT_USAGE`.
    interrupted : the one line printed on Ctrl-C (instead of a traceback).
    """
    try:
        hydra_main()
    except KeyboardInterrupt:
        print(interrupted(), file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except SystemExit as stop:
        if stop.code == 1 and not accepted():
            sys.exit(EXIT_USAGE)
        raise
