"""What the operator holds for one AgentPolicy between cycles, and how it is read.

A :class:`PolicyEntry` is created by registration (kopf's handlers) and carries the
validated spec, the engine's memory once rebuilt, what was last read or written of the
object on the API server (:class:`~agentmedic.operator.persistence.Snapshot`), the outbox
of messages reserved and not yet settled, and the metrics-outage bookkeeping.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agentmedic.actions import PolicyRef
from agentmedic.api.types import GROUP, AgentPolicy, AgentPolicySpec, AgentPolicyStatus
from agentmedic.engine import AgentId, Notification, PolicyState
from agentmedic.operator.persistence import NOTIFICATIONS_ANNOTATION, Snapshot

__all__ = [
    "OWNED_ANNOTATIONS",
    "POLICY_STATE_ANNOTATION",
    "PolicyEntry",
    "dumps",
    "loads",
    "parse_status",
]

POLICY_STATE_ANNOTATION = f"{GROUP}/state"
OWNED_ANNOTATIONS = (POLICY_STATE_ANNOTATION, NOTIFICATIONS_ANNOTATION)
"""The annotations of an AgentPolicy that this operator writes."""


@dataclass
class PolicyEntry:
    """What the operator holds for one AgentPolicy."""

    namespace: str
    name: str
    uid: str
    generation: int
    policy: AgentPolicy | None
    problems: list[str]
    selector: str = ""
    status: AgentPolicyStatus | None = None
    """The status last written (or read at registration)."""
    stored_policy_state: dict[str, Any] | None = None
    """The policy part of the engine state as last written (or read at registration)."""
    state: PolicyState | None = None
    """The engine's memory; None until the first cycle rebuilds it from annotations."""
    metrics_down_since: datetime | None = None
    metrics_down_notified: bool = False
    metrics_down_posted: datetime | None = None
    """When the metrics-outage message was last sent (its first post or a re-post)."""
    spend_written_at: datetime | None = None
    """When status last received a fresh spend (None: the next write refreshes it)."""
    lint: tuple[tuple[int, int], str] | None = None
    """The linter's warnings as one line, for (generation, selected agents): the spec and the
    fleet size rarely change, so a cycle does not lint again."""
    snapshot: Snapshot = field(default_factory=Snapshot)
    """resourceVersion, owned annotations and status as last read or written."""
    fresh: bool = False
    """Whether this replica's memory of the policy was read from the API server in its
    current term as leader (else the next cycle reads it first)."""
    outbox: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Sends reserved and persisted, not yet settled: id → channel, message, admission."""
    due: list[Notification] = field(default_factory=list)
    """This cycle's notifications, sent once the state that announces them is stored."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Serialises this policy's writes of its annotations (the cycle and its sends)."""
    agent_writes: dict[AgentId, tuple[str | None, dict[str, Any] | None]] = field(
        default_factory=dict
    )
    """This replica's writes of agents' state in a cycle whose policy state was not stored:
    per agent, the annotation it replaced and what it wrote. The cycle after rebuilds the
    engine's memory from the workload cache, which may not show them yet (see
    :func:`~agentmedic.operator.memory.rebuild_state`)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def user(self) -> str:
        """The name under which the policy subscribes to the workload cache."""
        return f"{self.namespace}/{self.name}"

    @property
    def ref(self) -> PolicyRef:
        return PolicyRef(self.namespace, self.name, self.uid)

    @property
    def spec(self) -> AgentPolicySpec:
        assert self.policy is not None
        return self.policy.spec

    def forget(self) -> None:
        """Drop every memory of the API server's copy: the next cycle reads it again."""
        self.state = None
        self.stored_policy_state = None
        self.status = None
        self.snapshot = Snapshot()
        self.fresh = False
        self.outbox = {}
        self.due = []
        self.metrics_down_since = None
        self.metrics_down_notified = False
        self.metrics_down_posted = None
        self.spend_written_at = None

    def adopt(self, old: PolicyEntry) -> None:
        """Keep what a re-registration of the same object must not lose."""
        self.state = old.state
        self.stored_policy_state = old.stored_policy_state
        self.snapshot, self.fresh, self.outbox = old.snapshot, old.fresh, old.outbox
        self.spend_written_at = old.spend_written_at
        self.lock = old.lock
        self.agent_writes = old.agent_writes


def parse_status(raw: Any) -> AgentPolicyStatus | None:
    """The status as stored, or None when absent or written by another version."""
    if not isinstance(raw, dict) or not raw:
        return None
    try:
        return AgentPolicyStatus.model_validate(raw)
    except ValueError:
        return None  # written by another version: rewrite it


def loads(raw: str | None) -> dict[str, Any] | None:
    """A JSON object stored in an annotation; None when absent or unreadable."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def dumps(value: Mapping[str, Any]) -> str:
    """The stable JSON form of an annotation's value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
