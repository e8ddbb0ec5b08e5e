"""The records on each workload are parsed once per version of it (operator/configmaps.py)."""

from __future__ import annotations

import json
from typing import Any

from agentmedic.actions.record import DISABLED
from agentmedic.operator.configmaps import RecordCache
from agentmedic.operator.watch import workload_from_object


def deployment(name: str, version: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": "agents",
            "uid": f"uid-{name}",
            "resourceVersion": version,
            "annotations": annotations,
        },
        "spec": {"replicas": 0},
    }


def disabled(episode: str) -> dict[str, str]:
    record = {
        "replicas": 2,
        "policy": "agents/p",
        "rule": "low-success",
        "episode": episode,
        "reason": "why",
        "at": "2026-12-03T12:00:00Z",
    }
    return {DISABLED: json.dumps(record)}


def test_the_same_version_is_parsed_once_and_a_new_one_again() -> None:
    cache = RecordCache()
    w1 = workload_from_object(deployment("a", "1", disabled("e1")))
    first = cache.records(w1)
    assert first.disabled is not None
    assert first.disabled.episode == "e1"
    assert cache.records(w1) is first  # not parsed again
    w2 = workload_from_object(deployment("a", "2", disabled("e2")))
    second = cache.records(w2)
    assert second.disabled is not None
    assert second.disabled.episode == "e2"
    restored = workload_from_object(deployment("a", "3", {}))
    assert cache.records(restored).disabled is None
    assert len(cache) == 1


def test_workloads_no_cycle_reads_are_forgotten() -> None:
    cache = RecordCache()
    kept = workload_from_object(deployment("kept", "1", {}))
    gone = workload_from_object(deployment("gone", "1", disabled("e1")))
    cache.next_cycle()
    cache.records(kept)
    cache.records(gone)
    for _ in range(25):
        cache.next_cycle()
        cache.records(kept)
    assert len(cache) == 1
