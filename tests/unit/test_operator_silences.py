"""Reading AgentSilences for the engine, and the policy's Silenced condition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from agentmedic.api.types import ConditionStatus
from agentmedic.engine import Silence
from agentmedic.operator.silences import silence_from_object, silenced_condition

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def obj(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "agentmedic.io/v1alpha1",
        "kind": "AgentSilence",
        "metadata": {
            "name": "s1",
            "namespace": "agents",
            "creationTimestamp": "2026-12-03T12:00:00Z",
        },
        "spec": {"agent": "bot", "endsAt": "2026-12-03T14:00:00Z", "reason": "INC-1", **spec},
        "status": {"conditions": []},
    }


def test_a_silence_is_read_with_its_author_and_times() -> None:
    s = silence_from_object(obj(createdBy="alice", rule="errors", policy="heal"))
    assert s == Silence(
        name="s1",
        namespace="agents",
        ends_at=T0 + timedelta(hours=2),
        reason="INC-1",
        created_by="alice",
        starts_at=None,
        agent="bot",
        policy="heal",
        rule="errors",
    )


def test_a_silence_lasts_at_most_seven_days_from_its_start_or_creation() -> None:
    long = silence_from_object(obj(endsAt="2027-01-01T00:00:00Z"))
    assert long is not None
    assert long.ends_at == T0 + timedelta(days=7)
    started = silence_from_object(
        obj(startsAt="2026-12-05T00:00:00Z", endsAt="2027-01-01T00:00:00Z")
    )
    assert started is not None
    assert started.ends_at == datetime(2026, 12, 12, tzinfo=UTC)


def test_an_invalid_silence_is_ignored() -> None:
    assert silence_from_object(obj(endsAt="not a time")) is None
    assert silence_from_object(obj(reason="")) is None


def test_the_silenced_condition_names_what_is_silenced_until_when_and_by_whom() -> None:
    s = silence_from_object(obj(createdBy="alice"))
    assert s is not None
    kind, status, reason, message = silenced_condition([s])
    assert (kind, status, reason) == ("Silenced", ConditionStatus.TRUE, "SilenceActive")
    assert message == (
        "1 silence(s) in force: agent bot until 2026-12-03 14:00Z by alice (agentsilence/s1)"
    )
    assert silenced_condition([])[1] == ConditionStatus.FALSE
