"""The Ready status of shared objects is written once per change, also while the watch
that feeds the cache has not delivered the operator's own write yet."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agentmedic.operator.shared_cache import SharedObject
from agentmedic.operator.shared_status import SharedStatusWriter

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


class FakeKube:
    """Applies status merge patches to one object, bumping its resourceVersion."""

    def __init__(self) -> None:
        self.version = 10
        self.patches: list[dict[str, Any]] = []

    async def arequest(self, what: str, method: str, path: str, **options: Any) -> Any:
        assert method == "PATCH"
        assert path.endswith("/status")
        self.patches.append(options["body"])
        self.version += 1
        return {"metadata": {"resourceVersion": str(self.version)}, **options["body"]}


def shared(version: str, status: dict[str, Any] | None = None) -> SharedObject:
    return SharedObject(
        kind="MetricsBackend",
        namespace="team-a",
        name="mimir",
        resource_version=version,
        body={},
        generation=1,
        status=status or {},
    )


def writer() -> tuple[SharedStatusWriter, FakeKube]:
    kube = FakeKube()
    return SharedStatusWriter(kube, lambda: NOW, lambda: True), kube  # type: ignore[arg-type]


async def test_a_cache_behind_the_operators_own_write_gets_no_second_write() -> None:
    w, kube = writer()
    stale = shared("10")
    await w.ready(stale, True, "Resolved", "ok", ["a1"])
    await w.ready(stale, True, "Resolved", "ok", ["a1"])  # the watch has not caught up
    assert len(kube.patches) == 1
    # The watch delivers the write: the object says it, nothing to write either.
    caught_up = shared("11", kube.patches[0]["status"])
    await w.ready(caught_up, True, "Resolved", "ok", ["a1"])
    assert len(kube.patches) == 1


async def test_a_change_or_someone_elses_write_is_written() -> None:
    w, kube = writer()
    await w.ready(shared("10"), True, "Resolved", "ok", ["a1"])
    # Something new to say, on the stale copy: written.
    await w.ready(shared("10"), True, "Resolved", "ok", ["a1", "a2"])
    assert len(kube.patches) == 2
    assert kube.patches[1]["status"]["usedBy"] == ["a1", "a2"]
    # Someone else replaced the status since (a version the operator did not make):
    # what it holds is compared, and the Ready condition is put back.
    await w.ready(shared("42", {"conditions": []}), True, "Resolved", "ok", ["a1", "a2"])
    assert len(kube.patches) == 3


async def test_two_quick_writes_delivered_late_get_no_third() -> None:
    """Users change twice before the watch delivers either write: when it then delivers the
    first, that version is older than the operator's last write, which says what is
    wanted; the same is not written back."""
    w, kube = writer()
    await w.ready(shared("10"), True, "Resolved", "ok", ["a1"])  # 10 -> 11
    await w.ready(shared("10"), True, "Resolved", "ok", ["a1", "a2"])  # 10 -> 12
    assert len(kube.patches) == 2
    first = shared("11", kube.patches[0]["status"])  # the watch delivers the first write
    await w.ready(first, True, "Resolved", "ok", ["a1", "a2"])
    assert len(kube.patches) == 2
    second = shared("12", kube.patches[1]["status"])
    await w.ready(second, True, "Resolved", "ok", ["a1", "a2"])
    assert len(kube.patches) == 2
    # A version after the operator's writes that says something else is written over.
    await w.ready(shared("13", {"conditions": []}), True, "Resolved", "ok", ["a1", "a2"])
    assert len(kube.patches) == 3
