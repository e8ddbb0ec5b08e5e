"""The execution record: what one agent execution did, as SREs read it.

Each finished execution yields one :class:`ExecutionRecord`, written as one JSON line
through the ``agentmedic.execution`` logger (level INFO; the message is the JSON text,
so ``logging.basicConfig(level=logging.INFO, format="%(message)s")`` prints JSON lines).
The record also travels as ``record.execution`` on the :class:`logging.LogRecord` for
structured handlers.

Schema (keys always present, in this order)::

    {
      "session_id":   str | null,      # as passed to monitor.execution()
      "agent":        str,
      "model":        str,             # "unknown" when never given nor seen in an LLM call
      "timestamp":    str,             # start, RFC 3339 UTC, e.g. "2025-08-15T09:30:00.123456Z"
      "status":       "success" | "error",
      "error_type":   str | null,      # exception class or the value given to set_status()
      "tokens":       {"input": int, "output": int, "total": int, "cached_input": int},
      "latency_ms":   float,
      "tools_called": [{"name": str, "duration_ms": float, "success": bool}],
      "decision_log": [{"step": int | str, "reasoning": str, "tool_selected": str | null}],
      "cost_usd":     float | null,    # null when any LLM call's model has no price
      "llm_calls":    int
    }
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, TypedDict

__all__ = [
    "DecisionEntry",
    "ExecutionRecord",
    "LLMCall",
    "Status",
    "TokenCounts",
    "ToolCallEntry",
    "ToolCallRecord",
]

Status = Literal["success", "error"]


@dataclass(slots=True)
class LLMCall:
    """One call to a model, as the OpenAI hook or :meth:`Execution.record_llm_call` saw it.

    Token counts are ``None`` when the provider reported no usage (a failed call, a
    stream closed early); such a call adds no tokens and no cost.
    """

    request_model: str | None = None
    response_model: str | None = None
    input_tokens: int | None = None
    """Input tokens including cached ones."""
    output_tokens: int | None = None
    cached_input_tokens: int = 0
    """The part of ``input_tokens`` served from the provider's prompt cache."""
    duration_s: float | None = None
    """Client-side duration; ``None`` when unknown (then no operation-duration sample)."""
    error_type: str | None = None
    operation: str = "chat"
    """``gen_ai.operation.name``: ``chat`` for Chat Completions and the Responses API."""
    provider: str | None = None
    """``gen_ai.provider.name``; ``None`` means the monitor's provider."""


class ToolCallRecord(NamedTuple):
    """One finished tool call. (A named tuple: one is built per tool call, and a tuple is
    the cheapest immutable record Python has.)"""

    name: str
    duration_s: float
    success: bool = True
    error_type: str | None = None


class TokenCounts(TypedDict):
    input: int
    output: int
    total: int
    cached_input: int


class ToolCallEntry(TypedDict):
    name: str
    duration_ms: float
    success: bool


class DecisionEntry(TypedDict):
    step: int | str
    reasoning: str
    tool_selected: str | None


class ExecutionRecord(TypedDict):
    """The JSON-line record of one execution; see the module docstring for the schema."""

    session_id: str | None
    agent: str
    model: str
    timestamp: str
    status: Status
    error_type: str | None
    tokens: TokenCounts
    latency_ms: float
    tools_called: list[ToolCallEntry]
    decision_log: list[DecisionEntry]
    cost_usd: float | None
    llm_calls: int
