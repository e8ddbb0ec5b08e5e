"""The agent-side monitor: executions, tool calls, decisions, usage → record and metrics.

::

    monitor = AgentMonitor(agent="support-bot", model="gpt-4o")

    with monitor.execution(session_id=request.id) as ex:       # or: async with
        ex.decision(1, "the user asks about billing", "search_knowledge_base")
        with ex.tool("search_knowledge_base"):                  # or: async with
            hits = kb.search(query)
        ex.usage(input_tokens=812, output_tokens=164)
        if not hits:
            ex.set_status("error", error_type="no_answer")
        ex.score("groundedness", grade(answer))                 # a quality score in [0, 1]

An exception escaping the ``with`` block marks the execution failed (``error_type`` is
the exception's class name) and is re-raised; an exception escaping a ``tool`` block marks
that tool call failed. Nothing the monitor does raises into the agent: a failure while
recording is logged (``agentmedic.instrument``) and swallowed.

The current execution is held in a :mod:`contextvars` variable, so the OpenAI hook (and
:func:`current_execution`) find it from anywhere in the same thread or asyncio task.
Work handed to another thread does not inherit it; pass ``contextvars.copy_context()``
along (``loop.run_in_executor`` does not, ``asyncio.to_thread`` does).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar, Token
from typing import Any, Self

from prometheus_client import CollectorRegistry

from agentmedic.api import metric_names as names
from agentmedic.instrument.prices import PriceTable
from agentmedic.instrument.record import (
    DecisionEntry,
    ExecutionRecord,
    LLMCall,
    Status,
    ToolCallRecord,
)
from agentmedic.instrument.series import SeriesStore, store_for

__all__ = ["AgentMonitor", "Execution", "ToolSpan", "current_execution"]

_log = logging.getLogger("agentmedic.instrument")
EXECUTION_LOGGER = "agentmedic.execution"
UNKNOWN_MODEL = "unknown"

_current: ContextVar[Execution | None] = ContextVar("agentmedic_execution", default=None)

_default_prices: PriceTable | None = None
# Built once: json.dumps with options constructs a new encoder on every call.
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def current_execution() -> Execution | None:
    """The execution open in this thread or task, if any (the innermost when nested)."""
    return _current.get()


def _shared_default_prices() -> PriceTable:
    # One default table per process, so "unknown model" warns once, not once per agent.
    global _default_prices
    if _default_prices is None:
        _default_prices = PriceTable()
    return _default_prices


# The second-resolution part of the timestamp, cached: executions arrive many per second
# and strftime is a measurable share of the per-execution cost. A tuple read and replaced
# whole, so concurrent threads never pair one second with another's text.
_last_second: tuple[int, str] = (-1, "")


def _rfc3339(epoch: float) -> str:
    global _last_second
    seconds = int(epoch)
    micros = round((epoch - seconds) * 1_000_000)
    if micros == 1_000_000:
        seconds, micros = seconds + 1, 0
    cached = _last_second
    if cached[0] != seconds:
        cached = _last_second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{cached[1]}.{micros:06d}Z"


def check_score(name: str, value: float) -> float:
    """``value`` as a float when it is a quality score (finite, in [0, 1]) under a
    non-empty ``name``; ``ValueError`` naming what is wrong otherwise."""
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"score name must be a non-empty string such as 'groundedness', not {name!r}"
        )
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"score {name!r}: value must be a number in [0, 1], not {value!r}")
    value = float(value)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(
            f"score {name!r}: value {value!r} is outside [0, 1]; scale it first "
            "(a rating of 4 out of 5 is 0.8)"
        )
    return value


class _ModelSeries:
    """The cells of one (agent, model), resolved once per model rather than per execution."""

    __slots__ = ("cost", "duration", "error", "success", "tokens_cached", "tokens_in", "tokens_out")

    def __init__(self, store: SeriesStore, agent: str, model: str) -> None:
        self.success = store.counter(names.EXECUTIONS_TOTAL, (agent, model, "success"))
        self.error = store.counter(names.EXECUTIONS_TOTAL, (agent, model, "error"))
        self.duration = store.histogram(names.EXECUTION_DURATION_SECONDS, (agent, model))
        self.tokens_in = store.counter(names.TOKENS_TOTAL, (agent, model, "input"))
        self.tokens_out = store.counter(names.TOKENS_TOTAL, (agent, model, "output"))
        # Created on the first priced execution: a model without a price must show no cost
        # series at all (unknown), not a cost of 0.
        self.cost: Any = None
        # Created on the first cached token: agents without prompt caching keep one
        # series fewer per model.
        self.tokens_cached: Any = None


class _ToolSeries:
    __slots__ = ("duration", "error", "success")

    def __init__(self, store: SeriesStore, agent: str, tool: str) -> None:
        self.success = store.counter(names.TOOL_CALLS_TOTAL, (agent, tool, "success"))
        self.error = store.counter(names.TOOL_CALLS_TOTAL, (agent, tool, "error"))
        self.duration = store.histogram(names.TOOL_DURATION_SECONDS, (agent, tool))


class _CallSeries:
    """The GenAI histograms of one (operation, provider, request model, response model)."""

    __slots__ = ("_labels", "_store", "durations", "input", "output")

    def __init__(self, store: SeriesStore, labels: tuple[str, ...]) -> None:
        self._store = store
        self._labels = labels
        self.input = store.histogram(names.GEN_AI_TOKEN_USAGE, (*labels, "input"))
        self.output = store.histogram(names.GEN_AI_TOKEN_USAGE, (*labels, "output"))
        self.durations: dict[str, Any] = {}

    def duration(self, error_type: str) -> Any:
        cell = self.durations.get(error_type)
        if cell is None:
            cell = self.durations[error_type] = self._store.histogram(
                names.GEN_AI_OPERATION_DURATION, (*self._labels, error_type)
            )
        return cell


class AgentMonitor:
    """Records one agent's executions as JSON-line records and Prometheus metrics.

    :param agent: the agent's name, the ``agent`` label of every series.
    :param registry: the prometheus_client registry to register in; the default
        registry when ``None``. Monitors sharing a registry share its series store.
    :param model: the model the agent runs with, used when an execution names none;
        exported as ``agent_info{agent, model} 1``. Call :meth:`set_model` when it changes.
        Without one, ``agent_info`` shows the model of the latest execution.
    :param provider: ``gen_ai.provider.name`` for LLM calls (``openai``, ``azure.ai.openai``…).
    :param prices: the price table; the defaults of :mod:`agentmedic.instrument.prices`
        when ``None``.
    :param logger: where records go; ``logging.getLogger("agentmedic.execution")`` by default.
    :param on_record: called with each finished :class:`ExecutionRecord` (in the thread
        that finished it); an exception it raises is logged, not propagated.
    """

    def __init__(
        self,
        agent: str,
        registry: CollectorRegistry | None = None,
        *,
        model: str | None = None,
        provider: str = "openai",
        prices: PriceTable | None = None,
        logger: logging.Logger | None = None,
        on_record: Callable[[ExecutionRecord], None] | None = None,
    ) -> None:
        if not agent:
            raise ValueError("agent must be a non-empty name")
        self.agent = agent
        self.provider = provider
        self.prices = _shared_default_prices() if prices is None else prices
        self.logger = logging.getLogger(EXECUTION_LOGGER) if logger is None else logger
        self.on_record = on_record
        self._store = store_for(registry)
        self._models: dict[str, _ModelSeries] = {}
        self._tools: dict[str, _ToolSeries] = {}
        self._calls: dict[tuple[str, str, str, str], _CallSeries] = {}
        self._scores: dict[tuple[str, str], Any] = {}
        self._info_model: str | None = None
        self._info_lock = threading.Lock()
        self._model: str | None = None
        if model:
            self.set_model(model)

    # -- public API -------------------------------------------------------------------

    @property
    def model(self) -> str | None:
        """The agent's current default model."""
        return self._model

    def set_model(self, model: str) -> None:
        """Change the default model (e.g. after the operator switched the agent's tier);
        ``agent_info`` follows."""
        self._model = model
        self._update_info(model)

    def execution(self, session_id: str | None = None, model: str | None = None) -> Execution:
        """A new execution, to be used as a ``with`` or ``async with`` block.

        ``model`` defaults to the monitor's model, then to the request model of the first
        LLM call the OpenAI hook sees, then to ``"unknown"``.
        """
        return Execution(self, session_id, model)

    def record_execution(
        self,
        *,
        latency_s: float,
        status: Status = "success",
        model: str | None = None,
        session_id: str | None = None,
        error_type: str | None = None,
        llm_calls: Sequence[LLMCall] = (),
        tools: Sequence[ToolCallRecord] = (),
        decisions: Sequence[DecisionEntry] = (),
        timestamp: float | None = None,
        scores: Iterable[tuple[str, float]] = (),
    ) -> ExecutionRecord:
        """Record an execution that already happened, in one call: the simulated fleet and
        importers of existing logs use this instead of the context managers. Observes every
        series the context managers would (tool and LLM-call series included) and returns
        the record. ``timestamp`` is the start in epoch seconds (default: now - latency);
        ``scores`` are ``(name, value)`` pairs as :meth:`Execution.score` takes them."""
        checked = [(name, check_score(name, value)) for name, value in scores] if scores else None
        for call in llm_calls:
            self._observe_llm_call(call, model or self._model)
        for tool in tools:
            self._observe_tool(tool.name, tool.duration_s, tool.success)
        start = time.time() - latency_s if timestamp is None else timestamp
        return self._finish(
            session_id=session_id,
            model=model,
            status=status,
            error_type=error_type,
            calls=llm_calls,
            tools=tools,
            decisions=decisions,
            latency_s=latency_s,
            wall_start=start,
            scores=checked,
        )

    # -- internals shared by Execution and record_execution ----------------------------

    def _update_info(self, model: str) -> None:
        if model == self._info_model:
            return
        with self._info_lock:
            previous, self._info_model = self._info_model, model
            if previous is not None:
                self._store.set_gauge(names.AGENT_INFO, (self.agent, previous), None)
            self._store.set_gauge(names.AGENT_INFO, (self.agent, model), 1.0)

    def _model_series(self, model: str) -> _ModelSeries:
        series = self._models.get(model)
        if series is None:
            series = self._models[model] = _ModelSeries(self._store, self.agent, model)
        return series

    def _observe_tool(self, name: str, duration_s: float, success: bool) -> None:
        series = self._tools.get(name)
        if series is None:
            series = self._tools[name] = _ToolSeries(self._store, self.agent, name)
        with self._store.lock:
            (series.success if success else series.error).add(1)
            series.duration.observe(duration_s)

    def _observe_llm_call(self, call: LLMCall, fallback_model: str | None) -> None:
        key = (
            call.operation,
            call.provider or self.provider,
            call.request_model or fallback_model or "",
            call.response_model or "",
        )
        series = self._calls.get(key)
        if series is None:
            series = self._calls[key] = _CallSeries(self._store, (self.agent, *key))
        duration = series.duration(call.error_type or "") if call.duration_s is not None else None
        with self._store.lock:
            if call.input_tokens is not None:
                series.input.observe(call.input_tokens)
            if call.output_tokens is not None:
                series.output.observe(call.output_tokens)
            if duration is not None:
                duration.observe(call.duration_s)

    def _price(self, call: LLMCall, model: str) -> float | None:
        # The response model is what was billed; the request model is the fallback (an
        # alias the table knows when the dated response model is new); calls that name no
        # model (ex.usage) are priced at the execution's model.
        lookup = self.prices.lookup
        name = call.response_model or call.request_model or model
        price = lookup(name)
        if price is None and call.response_model and call.request_model:
            price = lookup(call.request_model)
        if price is None:
            self.prices.warn_unknown(name)
            return None
        return price.cost(call.input_tokens or 0, call.output_tokens or 0, call.cached_input_tokens)

    def _finish(
        self,
        *,
        session_id: str | None,
        model: str | None,
        status: Status,
        error_type: str | None,
        calls: Sequence[LLMCall],
        tools: Sequence[ToolCallRecord],
        decisions: Sequence[DecisionEntry],
        latency_s: float,
        wall_start: float,
        scores: Sequence[tuple[str, float]] | None = None,
    ) -> ExecutionRecord:
        if model is None:
            model = self._model
            if model is None:
                model = next((c.request_model for c in calls if c.request_model), UNKNOWN_MODEL)
        input_tokens, output_tokens, cached, spent, cost_known = self._usage(calls, model)
        self._count(model, status, latency_s, input_tokens, output_tokens, cached, spent)
        if scores:
            self._count_scores(model, scores)
        if self._model is None and model != self._info_model and model != UNKNOWN_MODEL:
            # Without a model of its own the monitor takes the latest execution's as the
            # agent's current one; with one, a side call on another model (a cheap
            # classifier, say) must not make agent_info flicker.
            self._update_info(model)
        record: ExecutionRecord = {
            "session_id": session_id,
            "agent": self.agent,
            "model": model,
            "timestamp": _rfc3339(wall_start),
            "status": status,
            "error_type": error_type if status == "error" else None,
            "tokens": {
                "input": input_tokens,
                "output": output_tokens,
                "total": input_tokens + output_tokens,
                "cached_input": cached,
            },
            "latency_ms": round(latency_s * 1000, 3),
            "tools_called": [
                {"name": t.name, "duration_ms": round(t.duration_s * 1000, 3), "success": t.success}
                for t in tools
            ],
            "decision_log": list(decisions),
            "cost_usd": round(spent, 12) if cost_known else None,
            "llm_calls": len(calls),
        }
        self._emit(record)
        return record

    def _usage(self, calls: Sequence[LLMCall], model: str) -> tuple[int, int, int, float, bool]:
        """Input, output and cached tokens, the known spend, and whether all of it is
        known (every call that reported usage had a price)."""
        input_tokens = output_tokens = cached = 0
        spent = 0.0
        cost_known = True
        for call in calls:
            if call.input_tokens is None and call.output_tokens is None:
                continue  # no usage reported: nothing to count or price
            input_tokens += call.input_tokens or 0
            output_tokens += call.output_tokens or 0
            cached += call.cached_input_tokens
            cost = self._price(call, model)
            if cost is None:
                cost_known = False
            else:
                spent += cost
        return input_tokens, output_tokens, cached, spent, cost_known

    def _count(
        self,
        model: str,
        status: Status,
        latency_s: float,
        input_tokens: int,
        output_tokens: int,
        cached: int,
        spent: float,
    ) -> None:
        """The execution's per-model series: outcome, duration, tokens and spend."""
        series = self._model_series(model)
        if spent > 0 and series.cost is None:
            series.cost = self._store.counter(names.COST_USD_TOTAL, (self.agent, model))
        if cached and series.tokens_cached is None:
            series.tokens_cached = self._store.counter(
                names.TOKENS_TOTAL, (self.agent, model, "cached_input")
            )
        with self._store.lock:
            (series.success if status == "success" else series.error).add(1)
            series.duration.observe(latency_s)
            if input_tokens:
                series.tokens_in.add(input_tokens)
            if output_tokens:
                series.tokens_out.add(output_tokens)
            if cached:
                series.tokens_cached.add(cached)
            if spent > 0:
                # Known spend is counted even when part of the execution is unpriced:
                # budgets must not lose real spend, and the warning says what is missing.
                series.cost.add(spent)

    def _count_scores(self, model: str, scores: Sequence[tuple[str, float]]) -> None:
        """The execution's quality scores, by (model, name)."""
        cells = []
        for name, value in scores:
            cell = self._scores.get((model, name))
            if cell is None:
                cell = self._scores[(model, name)] = self._store.summary(
                    names.QUALITY_SCORE, (self.agent, model, name)
                )
            cells.append((cell, value))
        with self._store.lock:
            for cell, value in cells:
                cell.observe(value)

    def _emit(self, record: ExecutionRecord) -> None:
        """The record to the JSON logger (when enabled) and to ``on_record``."""
        logger = self.logger
        if logger.isEnabledFor(logging.INFO):
            # makeRecord + handle instead of logger.info: the same filters and handlers, but
            # without the stack walk that finds the caller's file and line (always this
            # function here), which costs as much as updating all the metrics.
            log_record = logger.makeRecord(
                logger.name,
                logging.INFO,
                __file__,
                0,
                _encode_json(record),
                (),
                None,
                extra={"execution": record},
            )
            logger.handle(log_record)
        if self.on_record is not None:
            try:
                self.on_record(record)
            except Exception:
                _log.exception("on_record callback failed for agent %s", self.agent)


class _Block:
    """``async with`` as ``with``: a block's own work never awaits, so the async forms
    only call the sync ones."""

    __slots__ = ()

    def __enter__(self) -> Self:
        raise NotImplementedError

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class ToolSpan(_Block):
    """One tool call inside an execution: ``with ex.tool("search"):`` (or ``async with``).

    The call fails when an exception escapes the block or :meth:`fail` was called; its
    duration is the block's wall-clock time. Recorded when the block ends.
    """

    __slots__ = ("_execution", "_start", "duration_s", "error_type", "name", "success")

    def __init__(self, execution: Execution, name: str) -> None:
        self._execution = execution
        self.name = name
        self.success = True
        self.error_type: str | None = None
        self.duration_s: float | None = None
        self._start = 0.0

    def fail(self, error_type: str = "error") -> None:
        """Mark the call failed without raising (e.g. the tool returned an error value)."""
        self.success = False
        self.error_type = error_type

    def __enter__(self) -> ToolSpan:
        self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        duration = time.perf_counter() - self._start
        self.duration_s = duration
        if exc_type is not None:
            self.success = False
            self.error_type = exc_type.__qualname__
        ex = self._execution
        try:
            ex._tools.append(ToolCallRecord(self.name, duration, self.success, self.error_type))
            ex.monitor._observe_tool(self.name, duration, self.success)
        except Exception:
            _log.exception("recording tool call %s failed", self.name)


class Execution(_Block):
    """One agent execution; created by :meth:`AgentMonitor.execution`.

    Use it once, as ``with`` or ``async with``. When the block ends it writes the
    :class:`ExecutionRecord` (also kept in :attr:`record`) and updates the metrics.
    """

    __slots__ = (
        "_calls",
        "_decisions",
        "_error_type",
        "_scores",
        "_start",
        "_status",
        "_token",
        "_tools",
        "_wall_start",
        "model",
        "monitor",
        "record",
        "session_id",
    )

    def __init__(self, monitor: AgentMonitor, session_id: str | None, model: str | None) -> None:
        self.monitor = monitor
        self.session_id = session_id
        self.model = model
        """The execution's model; may be set inside the block. See
        :meth:`AgentMonitor.execution` for the default."""
        self._status: Status | None = None
        self._error_type: str | None = None
        self._calls: list[LLMCall] = []
        self._tools: list[ToolCallRecord] = []
        self._decisions: list[DecisionEntry] = []
        self._scores: list[tuple[str, float]] | None = None
        self._start = 0.0
        self._wall_start = 0.0
        self._token: Token[Execution | None] | None = None
        self.record: ExecutionRecord | None = None
        """The finished record; ``None`` until the block ends."""

    # -- what the agent calls inside the block ------------------------------------------

    def tool(self, name: str) -> ToolSpan:
        """A tool call: ``with ex.tool("search_knowledge_base"):`` (or ``async with``)."""
        return ToolSpan(self, name)

    def decision(self, step: int | str, reasoning: str, tool_selected: str | None = None) -> None:
        """Append to the decision log: which step, why, and which tool was chosen (if any)."""
        self._decisions.append(
            {"step": step, "reasoning": reasoning, "tool_selected": tool_selected}
        )

    def usage(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> None:
        """Add the token usage of one LLM call made without the OpenAI hook.

        ``input_tokens`` includes ``cached_input_tokens`` (the provider's convention). It
        is priced at the execution's model when the execution ends.
        """
        self.record_llm_call(
            LLMCall(
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cached_input_tokens=cached_input_tokens,
            )
        )

    def record_llm_call(self, call: LLMCall) -> None:
        """Add one LLM call (the OpenAI hook uses this; so can hooks for other providers).
        Its ``gen_ai_*`` samples are observed now; tokens and cost count at the end."""
        self._calls.append(call)
        try:
            self.monitor._observe_llm_call(call, self.model or self.monitor.model)
        except Exception:
            _log.exception("recording an LLM call failed")

    def score(self, name: str, value: float) -> None:
        """A quality score for this execution: ``value`` in [0, 1] (an eval's grade, a
        user's rating scaled to 0..1), under ``name`` (``groundedness``, ``user_rating``).

        Exported when the block ends as ``agent_quality_score`` (a summary by agent,
        model and name), whose mean over a window is the built-in metric
        ``quality_score``: rules can use it and agentmedic compares it before and after
        a change it made. Several scores per execution (other names, or the same one
        again) all count. Raises ``ValueError`` for a value outside [0, 1] or an empty
        name.
        """
        checked = check_score(name, value)
        if self._scores is None:
            self._scores = [(name, checked)]
        else:
            self._scores.append((name, checked))

    def set_status(self, status: Status, error_type: str | None = None) -> None:
        """Set the outcome explicitly. An exception escaping the block still wins."""
        if status not in ("success", "error"):
            raise ValueError(f"status must be 'success' or 'error', not {status!r}")
        self._status = status
        self._error_type = error_type if status == "error" else None

    @property
    def status(self) -> Status:
        """``success`` unless set otherwise or an exception escaped the block."""
        return self._status or "success"

    @property
    def error_type(self) -> str | None:
        """Why the execution failed, when it did."""
        return self._error_type

    @property
    def llm_calls(self) -> Sequence[LLMCall]:
        """The LLM calls recorded so far."""
        return tuple(self._calls)

    # -- the block -----------------------------------------------------------------------

    def __enter__(self) -> Execution:
        if self._token is not None or self.record is not None:
            raise RuntimeError("an Execution can be entered only once")
        self._wall_start = time.time()
        self._token = _current.set(self)
        self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        latency = time.perf_counter() - self._start
        if self._token is not None:
            _current.reset(self._token)
        if exc_type is not None:
            self._status = "error"
            self._error_type = exc_type.__qualname__
        try:
            self.record = self.monitor._finish(
                session_id=self.session_id,
                model=self.model,
                status=self.status,
                error_type=self._error_type or ("error" if self._status == "error" else None),
                calls=self._calls,
                tools=self._tools,
                decisions=self._decisions,
                latency_s=latency,
                wall_start=self._wall_start,
                scores=self._scores,
            )
        except Exception:
            _log.exception("recording the execution of agent %s failed", self.monitor.agent)
