# PYTHON_ARGCOMPLETE_OK
"""The ``agentmedic`` command.

Each subcommand lives in its own module under :mod:`agentmedic.cli` with a
``register(subparsers)`` function; modules are imported only to build the parser, so
``agentmedic --help`` stays fast and a subcommand's heavy imports happen in its ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from agentmedic import __version__
from agentmedic.api.yamlfile import YAMLInputError
from agentmedic.cli._errors import (
    EXIT_FINDINGS,
    EXIT_INTERRUPTED,
    EXIT_PIPE,
    EXIT_USAGE,
    CliError,
    fail,
    line,
)

# Subcommands in the order --help lists them.
COMMANDS = [
    "demo",
    "run",
    "status",
    "restore",
    "silence",
    "optimize-prompt",
    "validate",
    "crd",
    "fleet",
    "backtest",
    "report",
    "docs",
    "completion",
]

DESCRIPTION = """\
agentmedic heals and budgets AI agents on Kubernetes. AgentPolicy resources say
which agents to watch, which rules over their metrics matter, and what to do when a
rule holds: scale to zero, switch to a cheaper model, start a prompt-optimization
Job, notify. Every action is recorded on the workload and can be undone.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line (the usage itself is in --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="agentmedic",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"agentmedic {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in COMMANDS:
        importlib.import_module(f"agentmedic.cli.{name.replace('-', '_')}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (docs/cli.md)."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # a reader that went away is noticed here, not at exit
    except BrokenPipeError:
        return _closed_pipe()
    return code


def _closed_pipe() -> int:
    """The reader of stdout went away (``| head``): stop quietly, as a killed C tool would.

    Python's documented remedy: point stdout at /dev/null, so the interpreter's own flush
    at exit does not raise a second time.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a file (captured)
        pass
    return EXIT_PIPE


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions (agentmedic completion)
        import argcomplete

        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        print("agentmedic: name a command (see agentmedic --help)", file=sys.stderr)
        return EXIT_USAGE
    command = f"agentmedic {args.command}"
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise
    except CliError as exc:
        return fail(args.command, exc.message, exc.code)
    except YAMLInputError as exc:
        return fail(args.command, str(exc), EXIT_USAGE)
    except Exception as exc:
        if os.environ.get("AGENTMEDIC_DEBUG") == "1":
            raise
        # A bug: still one line, and how to get the traceback for a report.
        print(
            f"{command}: unexpected error ({type(exc).__name__}: {line(str(exc))[:200]}); "
            "set AGENTMEDIC_DEBUG=1 for the traceback and report it",
            file=sys.stderr,
        )
        return EXIT_FINDINGS
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
