"""Keeping Python's cyclic garbage collector out of the cycle's hot path.

A cycle decodes tens of thousands of small objects; each allocation burst triggers young
collections, and every so often a full one walks the whole heap: the workload cache, the
policies, the engine's memory, all long-lived. :func:`gc.freeze` moves what exists at a
quiet moment into a permanent generation the collector no longer walks.

- after start-up, and after each cycle's set-up (gather: the cache and the policies as the
  cycle sees them), the heap is frozen;
- objects frozen that die by reference counting are freed as usual; reference cycles among
  them would be kept, so every ``sweep_every`` cycles, after the cycle's report (off the
  hot path), the heap is unfrozen, collected once in full, and frozen again.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["HeapKeeper"]

log = logging.getLogger(__name__)


class HeapKeeper:
    """When to freeze the heap and when to sweep it."""

    def __init__(self, *, enabled: bool = True, sweep_every: int = 20) -> None:
        self.enabled = enabled
        self.sweep_every = max(1, sweep_every)
        self._cycles = 0

    def started(self) -> None:
        """After start-up: collect what start-up left behind, freeze the rest."""
        if self.enabled:
            gc.collect()
            gc.freeze()

    def set_up(self) -> None:
        """After a cycle's set-up: what it gathered lives for the whole cycle."""
        if self.enabled:
            gc.freeze()

    def cycle_done(self) -> None:
        """After a cycle's report: now and then, reclaim cycles among frozen objects."""
        if not self.enabled:
            return
        self._cycles += 1
        if self._cycles % self.sweep_every == 0:
            self.sweep()

    def sweep(self) -> None:
        """Unfreeze, collect in full, freeze again."""
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        log.debug("full collection between cycles reclaimed %d objects", found)
