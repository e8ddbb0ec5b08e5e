"""What the sandbox's servers share: started by ``start()``, stopped by ``stop()``, and
usable in a ``with`` (or ``async with``) block that stops them however it ends."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

__all__ = ["Lifecycle"]


class Lifecycle:
    """A server with ``start()`` and an idempotent ``stop()``; ``with`` starts and stops it."""

    def start(self) -> object:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)
