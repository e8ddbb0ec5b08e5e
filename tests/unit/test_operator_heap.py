"""The heap keeper: long-lived objects frozen out of the collector's walks, and reference
cycles among them reclaimed by a sweep between cycles."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from agentmedic.operator.heap import HeapKeeper


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector can free it


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_start_up_freezes_what_exists() -> None:
    HeapKeeper().started()
    assert gc.get_freeze_count() > 0


def test_a_frozen_object_is_not_walked_until_the_sweep_reclaims_it() -> None:
    keeper = HeapKeeper(sweep_every=2)
    node = Node()
    ref = weakref.ref(node)
    keeper.set_up()  # the cycle's set-up: node is frozen
    del node
    gc.collect()
    assert ref() is not None, "a frozen object is out of the collector's walks"
    keeper.cycle_done()
    assert ref() is not None, "no sweep before sweep_every cycles"
    keeper.cycle_done()
    assert ref() is None, "the sweep reclaims cycles among frozen objects"
    assert gc.get_freeze_count() > 0, "and freezes the survivors again"


def test_a_disabled_keeper_freezes_nothing() -> None:
    keeper = HeapKeeper(enabled=False)
    keeper.started()
    keeper.set_up()
    assert gc.get_freeze_count() == 0
