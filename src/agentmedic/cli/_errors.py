"""How every ``agentmedic`` command ends: one line on stderr and a documented exit code.

==========  ===========================================================================
exit code   meaning
==========  ===========================================================================
0           done (validate: every policy valid; restore: restored or nothing to restore)
1           findings or a failed check: invalid policies (validate), no data or a backend
            failure (fleet, backtest, report), a refused or failed restore, an
            unreachable cluster, a demo whose expectations were not all met; warnings
            too with ``validate --strict``
2           usage or environment: bad arguments, unreadable, binary, oversized or
            malformed input files, missing credentials or kubeconfig (every command
            that talks to a cluster), an invalid policy handed to a command that needs a
            valid one (backtest), a missing Prometheus (demo)
130         interrupted (Ctrl-C)
141         the reader of the output went away (``| head``): 128 + SIGPIPE, as a shell
            reports for a tool killed by a closed pipe; nothing is printed
==========  ===========================================================================

A command reports a problem it knows how to name by raising :class:`CliError` (or
returning after :func:`fail`); :func:`agentmedic.cli.main.main` turns it, and the input
errors of the shared YAML loader, into that one line. Anything else is a bug: it too is
reported on one line (``unexpected error``), with the traceback only when
``AGENTMEDIC_DEBUG=1``.
"""

from __future__ import annotations

import sys

__all__ = [
    "EXIT_FINDINGS",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PIPE",
    "EXIT_USAGE",
    "CliError",
    "fail",
    "line",
]

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_PIPE = 141

_MAX_LINE = 400


class CliError(Exception):
    """A problem a command reports as ``agentmedic COMMAND: message`` and exits with."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def line(text: str) -> str:
    """``text`` on one line of bounded length, whatever it quotes."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= _MAX_LINE else flat[: _MAX_LINE - 1] + "…"


def fail(command: str, message: str, code: int = EXIT_USAGE) -> int:
    """Print ``agentmedic COMMAND: message`` on stderr as one line; return ``code``."""
    print(f"agentmedic {command}: {line(message)}", file=sys.stderr)
    return code
