"""The progress of a command's queries: a transient rich bar on a terminal's stderr."""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["QueryProgress"]


class QueryProgress:
    """A transient rich progress bar of queries (done of planned, elapsed, the last one
    answered) on a terminal's stderr.

    Off a terminal it prints a plain line per query and per :meth:`phase` when
    ``plain_lines`` is set (CI logs of a long command), and nothing otherwise (so that
    piped JSON or CSV stays clean). ``enabled=False`` silences it everywhere.
    """

    def __init__(self, title: str, *, enabled: bool = True, plain_lines: bool = False) -> None:
        self.title = title
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.plain_lines = plain_lines
        self._bar: Any = None
        self._task: Any = None
        self._started = time.monotonic()

    def __enter__(self) -> QueryProgress:
        if self.enabled and self.tty:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn(self.title),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=Console(stderr=True),
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None

    def phase(self, what: str) -> None:
        """A step of the command worth a line in a log (nothing on a terminal)."""
        if self.enabled and not self.tty and self.plain_lines:
            print(f"{what} ({time.monotonic() - self._started:.1f}s)", file=sys.stderr, flush=True)

    def query(self, done: int, total: int, what: str) -> None:
        """``done`` of ``total`` queries answered, ``what`` the last one."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total, description=what)
        elif self.plain_lines:
            print(f"fetched {done}/{total}: {what}", file=sys.stderr, flush=True)

    __call__ = query
