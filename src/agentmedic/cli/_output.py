"""How every command prints results: ``-o/--output`` and a console that never cuts a cell.

kubectl's convention: ``-o table`` (the default) for people, ``-o wide`` for the same table
with more columns, ``-o json`` and ``-o yaml`` for programs (the same document in both).
Commands with a CSV form add ``csv``. The old ``--format`` spelling stays as a hidden alias
for one release.

On a terminal, tables fit its width. Off a terminal (a pipe, a file, CI) rich would assume
80 columns and fold or ellipsize cells; :func:`console` gives it no width limit instead, so
a table is as wide as its widest row and an undo command is never cut. Colour follows
rich: none off a terminal, none when ``NO_COLOR`` is set.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["FORMATS", "add_output_argument", "console", "emit", "emit_report"]

FORMATS = ("table", "wide", "json", "yaml")

_UNBOUNDED = 100_000
"""The width off a terminal: wider than any row, so nothing is folded."""


def add_output_argument(
    parser: argparse.ArgumentParser,
    *,
    extra: tuple[str, ...] = (),
    legacy_format: bool = False,
    help_suffix: str = "",
) -> None:
    """``-o/--output table|wide|json|yaml`` (plus ``extra``); ``--format`` hidden if asked."""
    choices = [*FORMATS, *extra]
    parser.add_argument(
        "-o",
        "--output",
        choices=choices,
        default="table",
        metavar="FORMAT",
        help=f"{'|'.join(choices)} (default: table){help_suffix}",
    )
    if legacy_format:
        parser.add_argument(
            "--format",
            dest="output",
            choices=choices,
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
        )


def console(*, stderr: bool = False) -> Console:
    """A rich Console for results: the terminal's width, or no limit off a terminal."""
    from rich.console import Console

    probe = Console(stderr=stderr)
    if probe.is_terminal:
        return probe
    return Console(stderr=stderr, width=_UNBOUNDED)


def emit(document: Any, output: str) -> None:
    """Print ``document`` on stdout as JSON (``json``) or YAML (``yaml``)."""
    if output == "yaml":
        import yaml

        # JSON first: dates, enums and other objects become what the JSON form shows.
        plain = json.loads(json.dumps(document, default=str))
        sys.stdout.write(yaml.safe_dump(plain, sort_keys=False, allow_unicode=True))
        return
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


def emit_report(
    output: str,
    *,
    document: Callable[[], Any],
    csv: Callable[[], str],
    table: Callable[[], Any],
) -> None:
    """A report in the ``-o`` form asked for: the document as JSON or YAML, the CSV text,
    or the rich renderable on the console (``table`` and ``wide``); only that one is built."""
    if output in ("json", "yaml"):
        emit(document(), output)
    elif output == "csv":
        sys.stdout.write(csv())
    else:
        console().print(table())
