"""Sending a report's queries: a bounded number at a time, with progress after each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

__all__ = ["ProgressCallback", "bounded"]

ProgressCallback = Callable[[int, int, str], None]
"""``(done, total, what)`` after each query."""

T = TypeVar("T")


async def bounded(
    calls: Sequence[tuple[str, Callable[[], Awaitable[T]]]],
    *,
    max_concurrency: int,
    on_progress: ProgressCallback | None = None,
) -> list[T]:
    """Await each ``(what, call)``, at most ``max_concurrency`` at a time; the answers in
    the order of ``calls``. An exception raised by a call propagates."""
    limit = asyncio.Semaphore(max_concurrency)
    done = 0

    async def one(what: str, call: Callable[[], Awaitable[T]]) -> T:
        nonlocal done
        async with limit:
            answer = await call()
        done += 1
        if on_progress is not None:
            on_progress(done, len(calls), what)
        return answer

    return list(await asyncio.gather(*(one(what, call) for what, call in calls)))
