"""Silences: an on-call engineer's time-limited "hands off", as the engine sees them.

The operator reads the ``AgentSilence`` resources of a policy's namespace and hands them to
the engine in :attr:`PolicyInput.silences <agentmedic.engine.inputs.PolicyInput.silences>`.
A silence covers an agent (optionally one rule of it), or every agent of a policy
(``agent`` unset), and holds from ``starts_at`` (inclusive) to ``ends_at`` (exclusive).

While one covers an agent and rule:

- no workload change is made for it (the ``silenced`` guardrail, first in the chain;
  restores of the agent wait too), and the decision it stops is recorded once per episode
  as suppressed, with the silence's author, reason and end;
- no firing message (nor a reminder) is sent for its episode; a page sent before the
  silence began stays open, and resolves as usual when the episode ends; an agent's page
  it holds, when no held change already records the episode (a notify-only rule), is
  recorded once per episode as a suppressed ``notify`` decision;
- rule state tracks as usual. When the silence ends, the first cycle after it acts on a
  rule that still fires on present evidence, and pages for it: the silence held the
  change back, it did not cancel it.

Pure: time is a parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from agentmedic.engine.series import AgentId

__all__ = ["Silence", "active_silences", "find_silence"]


@dataclass(frozen=True, slots=True)
class Silence:
    """One silence, as the operator read it from the API server."""

    name: str
    """The AgentSilence's name (its id for ``agentmedic silence expire``)."""
    namespace: str
    ends_at: datetime
    reason: str
    created_by: str = ""
    starts_at: datetime | None = None
    """None: in force since it was made."""
    agent: str | None = None
    """The agent's name; None: every agent of ``policy``."""
    policy: str | None = None
    """Only this policy; None: every policy selecting the agent."""
    rule: str | None = None
    """Only this rule or budget stage; None: all of them."""

    def active(self, now: datetime) -> bool:
        """In force at ``now``: started, and not yet ended."""
        if self.starts_at is not None and now < self.starts_at:
            return False
        return now < self.ends_at

    def covers(self, policy: str, agent: AgentId | None, rule: str) -> bool:
        """Whether it covers ``rule`` of ``agent`` (None: the fleet's messages) under
        ``policy``. An agent's silence never covers the fleet."""
        if self.policy is not None and self.policy != policy:
            return False
        if self.agent is not None and (
            agent is None or agent.name != self.agent or agent.namespace != self.namespace
        ):
            return False
        return self.rule is None or self.rule == rule

    @property
    def scope(self) -> str:
        """What it covers, in words: ``agent support-bot, rule errors``."""
        parts = []
        if self.agent is not None:
            parts.append(f"agent {self.agent}")
        if self.policy is not None:
            parts.append(f"policy {self.policy}")
        if self.rule is not None:
            parts.append(f"rule {self.rule}")
        return ", ".join(parts)

    def describe(self) -> str:
        """``silenced by alice until 2026-12-03 14:00Z (agentsilence/x): the reason``."""
        by = self.created_by or "unknown"
        end = self.ends_at.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")
        return f"silenced by {by} until {end} (agentsilence/{self.name}): {self.reason}"


def active_silences(silences: Iterable[Silence], policy: str, now: datetime) -> tuple[Silence, ...]:
    """The silences in force at ``now`` that can apply to ``policy``, earliest end first."""
    return tuple(
        sorted(
            (s for s in silences if s.active(now) and s.policy in (None, policy)),
            key=lambda s: (s.ends_at, s.name),
        )
    )


def find_silence(
    silences: Iterable[Silence], policy: str, agent: AgentId | None, rule: str
) -> Silence | None:
    """The silence that covers ``rule`` of ``agent`` under ``policy`` and lasts longest."""
    best: Silence | None = None
    for s in silences:
        if s.covers(policy, agent, rule) and (best is None or s.ends_at > best.ends_at):
            best = s
    return best
