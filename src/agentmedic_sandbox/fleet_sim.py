"""A simulated fleet of agents for ``agentmedic demo`` and the end-to-end tests.

Each simulated agent has its own :class:`~agentmedic.instrument.AgentMonitor` on its own
``CollectorRegistry``, so its series look exactly like a real agent's. Executions are
*recorded*, not performed: latencies are drawn from the agent's current behaviour and
observed into the histograms without sleeping, so one thread simulates a whole fleet at
tens of executions per second per agent.

Scripting a scenario
--------------------
An agent is an :class:`AgentSpec`: a name, a namespace, a model, a rate, a baseline
:class:`Behaviour` and a list of *effects*, each active over a window of simulated time
(seconds since the start). Fleet-wide effects (an :class:`Outage`) go to
:class:`FleetSimulator` and apply to every agent. An effect that ends is a recovery::

    from agentmedic_sandbox.fleet_sim import (
        AgentSpec, Behaviour, BudgetBurn, ErrorRamp, FleetSimulator, LatencySpike, Outage,
        ToolProfile, ToolSlowdown,
    )

    tools = (ToolProfile("search_kb", latency_s=0.3), ToolProfile("crm", latency_s=0.8))
    base = Behaviour(latency_s=2.5, error_rate=0.02, tools=tools)
    agents = [AgentSpec(f"helper-{i}", "agents", "gpt-4o-mini", base=base) for i in range(6)]
    agents += [
        # fails more and more from minute 2, fixed at minute 12
        AgentSpec("support-bot", "agents", "gpt-4o", base=base,
                  effects=[ErrorRamp(start=120, ramp=180, to=0.45, end=720)]),
        # slow for five minutes
        AgentSpec("research-bot", "agents", "gpt-4.1", base=base,
                  effects=[LatencySpike(start=60, end=360, latency_s=14.0)]),
        # burns money: the dearest model and eight times the tokens, for good
        AgentSpec("summarizer", "agents", "gpt-4o", base=base,
                  effects=[BudgetBurn(start=0, token_factor=8.0)]),
        # one of its tools crawls
        AgentSpec("triage", "agents", "gpt-4o-mini", base=base,
                  effects=[ToolSlowdown("crm", start=200, end=500, latency_s=9.0)]),
    ]
    sim = FleetSimulator(agents, seed=7, fleet_effects=[Outage(start=900, end=960)],
                         state=lambda ns, name: operator_view.get((ns, name)))
    sim.serve()                # /metrics/<namespace>/<agent> on 127.0.0.1
    targets = sim.scrape_targets()   # for PrometheusServer(scrape_targets=...)
    sim.start(speed=1.0)       # a background thread; sim.stop() ends it
    ...
    sim.stop(); sim.close()

``state(namespace, name)`` returns the agent's current :class:`AgentState` (model and
replicas, as the operator left them) or ``None`` to keep the spec's; it is asked once per
agent per tick. With 0 replicas the agent executes nothing; with another model its
executions are labelled and priced with that model (a cheaper tier is cheaper per token)
and run at that model's latency factor (:attr:`Behaviour.model_latency`).

Time and determinism
--------------------
Execution *k* of an agent happens at simulated second ``(k + phase) / rate``, and its
outcome, latency, tokens and tool calls are drawn from the agent's own ``random.Random``
seeded from ``seed`` and the agent's position; so, for the same state answers, the same
seed yields the same executions however the simulated time is cut into ticks.
:meth:`FleetSimulator.advance_to` moves simulated time by hand (tests, histories);
:meth:`FleetSimulator.start` follows the wall clock times ``speed``.
:meth:`FleetSimulator.history` runs simulated time from a past instant and returns the
series snapshots for a Prometheus backfill.

Cost: one simulated execution takes some 20-50 µs of CPU (the SDK's own cost plus the
draws), all in the simulator's thread. Keep ``agents x rate x speed`` under a few thousand
executions per second, or simulated time falls behind the wall clock (``sim.now`` shows
how far it got) and the simulator competes with the operator for the interpreter.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import unquote

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from agentmedic.instrument import AgentMonitor, LLMCall, ToolCallRecord
from agentmedic_sandbox.prometheus import ScrapeTarget, Series

__all__ = [
    "AgentSpec",
    "AgentState",
    "AgentTotals",
    "Behaviour",
    "BudgetBurn",
    "Effect",
    "ErrorRamp",
    "FleetSimulator",
    "LatencySpike",
    "Outage",
    "ToolProfile",
    "ToolSlowdown",
    "registry_series",
]

_log = logging.getLogger(__name__)
RECORD_LOGGER = "agentmedic_sandbox.fleet_sim.records"


@dataclass(frozen=True)
class ToolProfile:
    """A tool an agent calls."""

    name: str
    latency_s: float = 0.2
    """Median duration of one call."""
    error_rate: float = 0.01
    probability: float = 1.0
    """Chance that an execution calls this tool at all."""


@dataclass(frozen=True)
class Behaviour:
    """How an agent's executions turn out at one moment."""

    error_rate: float = 0.02
    latency_s: float = 2.0
    """Median execution latency; draws are log-normal around it."""
    latency_sigma: float = 0.35
    """Log-normal spread of the latency (0: every execution takes ``latency_s``)."""
    input_tokens: int = 900
    output_tokens: int = 220
    token_jitter: float = 0.2
    """Token counts vary uniformly by ± this share."""
    cached_share: float = 0.0
    """Share of input tokens served from the prompt cache."""
    error_type: str = "ToolError"
    """``error_type`` of failed executions."""
    tools: tuple[ToolProfile, ...] = (ToolProfile("search_knowledge_base"),)
    model_latency: Mapping[str, float] = field(default_factory=dict)
    """Latency factor per model, e.g. ``{"gpt-4o-mini": 0.6}``; 1 for unlisted models."""
    quality: Mapping[str, float] = field(default_factory=dict)
    """Mean quality score per model (``ex.score("answer_quality", ...)``, 0..1, spread
    ±0.05); an execution on an unlisted model gives no score."""


class Effect(Protocol):
    """Changes an agent's behaviour while active; :meth:`apply` returns it unchanged
    outside its window."""

    def apply(self, behaviour: Behaviour, t: float) -> Behaviour:
        """The behaviour at simulated second ``t``."""
        ...


def _active(t: float, start: float, end: float | None) -> bool:
    return t >= start and (end is None or t < end)


@dataclass(frozen=True)
class ErrorRamp:
    """The error rate climbs linearly from the baseline to ``to`` over ``ramp`` seconds from
    ``start``, holds, and returns to the baseline at ``end`` (never when ``None``)."""

    start: float
    ramp: float
    to: float
    end: float | None = None

    def apply(self, behaviour: Behaviour, t: float) -> Behaviour:
        if not _active(t, self.start, self.end):
            return behaviour
        share = 1.0 if self.ramp <= 0 else min(1.0, (t - self.start) / self.ramp)
        rate = behaviour.error_rate + (self.to - behaviour.error_rate) * share
        return dataclasses.replace(behaviour, error_rate=rate)


@dataclass(frozen=True)
class LatencySpike:
    """Executions take ``latency_s`` (median) between ``start`` and ``end``."""

    start: float
    end: float | None
    latency_s: float

    def apply(self, behaviour: Behaviour, t: float) -> Behaviour:
        if not _active(t, self.start, self.end):
            return behaviour
        return dataclasses.replace(behaviour, latency_s=self.latency_s)


@dataclass(frozen=True)
class BudgetBurn:
    """Token usage times ``token_factor`` from ``start`` to ``end``: with a dear model, the
    spend climbs fast."""

    start: float
    token_factor: float
    end: float | None = None

    def apply(self, behaviour: Behaviour, t: float) -> Behaviour:
        if not _active(t, self.start, self.end):
            return behaviour
        return dataclasses.replace(
            behaviour,
            input_tokens=round(behaviour.input_tokens * self.token_factor),
            output_tokens=round(behaviour.output_tokens * self.token_factor),
        )


@dataclass(frozen=True)
class ToolSlowdown:
    """One tool takes ``latency_s`` (median) between ``start`` and ``end``."""

    tool: str
    start: float
    end: float | None
    latency_s: float
    error_rate: float | None = None
    """The tool's error rate meanwhile; unchanged when ``None``."""

    def apply(self, behaviour: Behaviour, t: float) -> Behaviour:
        if not _active(t, self.start, self.end):
            return behaviour
        tools = tuple(
            dataclasses.replace(
                p,
                latency_s=self.latency_s,
                error_rate=p.error_rate if self.error_rate is None else self.error_rate,
            )
            if p.name == self.tool
            else p
            for p in behaviour.tools
        )
        return dataclasses.replace(behaviour, tools=tools)


@dataclass(frozen=True)
class Outage:
    """The provider is down: every execution fails with ``error_type`` between ``start``
    and ``end``. Meant as a fleet-wide effect; fine on one agent too."""

    start: float
    end: float | None
    error_type: str = "APIConnectionError"
    latency_s: float | None = 1.0
    """Median latency of the failing executions (fast failures by default); ``None``
    keeps the agent's."""

    def apply(self, behaviour: Behaviour, t: float) -> Behaviour:
        if not _active(t, self.start, self.end):
            return behaviour
        return dataclasses.replace(
            behaviour,
            error_rate=1.0,
            error_type=self.error_type,
            latency_s=behaviour.latency_s if self.latency_s is None else self.latency_s,
            input_tokens=0,
            output_tokens=0,
        )


@dataclass(frozen=True)
class AgentSpec:
    """One simulated agent."""

    name: str
    namespace: str
    model: str
    rate: float = 20.0
    """Executions per simulated second while it has replicas."""
    base: Behaviour = field(default_factory=Behaviour)
    effects: Sequence[Effect] = ()
    replicas: int = 1
    labels: Mapping[str, str] | None = None
    """The Deployment's labels instead of the sandbox's usual ones (other policies select
    the agent by those)."""


@dataclass(frozen=True)
class AgentState:
    """What the operator has done to an agent: its current model and replicas."""

    model: str
    replicas: int
    latency_factor: float = 1.0
    """Its executions' latency times this (a shorter prompt rolled out makes it faster)."""


@dataclass
class AgentTotals:
    """What a simulated agent has done so far (for assertions and the demo's narration)."""

    executions: int = 0
    errors: int = 0
    skipped: int = 0
    """Executions not served because the agent had 0 replicas."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    by_model: dict[str, int] = field(default_factory=dict)


StateCallback = Callable[[str, str], AgentState | None]


class _Agent:
    """The moving parts of one simulated agent."""

    def __init__(self, spec: AgentSpec, index: int, seed: int, log_records: bool) -> None:
        self.spec = spec
        self.registry = CollectorRegistry()
        record_logger = logging.getLogger(RECORD_LOGGER)
        self.monitor = AgentMonitor(
            spec.name,
            self.registry,
            model=spec.model,
            logger=record_logger if log_records else _QUIET,
        )
        self.rng = random.Random(f"{seed}:{index}:{spec.namespace}/{spec.name}")
        # Agents do not all tick in step: each gets its own phase within one period.
        self.phase = self.rng.random()
        self.next_index = 0
        self.totals = AgentTotals()
        self.state = AgentState(spec.model, spec.replicas)

    def due(self, until: float) -> int:
        """How many executions are scheduled up to simulated second ``until``."""
        rate = self.spec.rate
        if rate <= 0:
            return self.next_index
        return max(0, math.floor(until * rate - self.phase) + 1)

    def time_of(self, k: int) -> float:
        return (k + self.phase) / self.spec.rate


class _QuietLogger(logging.Logger):
    """A logger that is never enabled: simulated records are not worth encoding by default."""

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's own name
        return False


_QUIET = _QuietLogger(RECORD_LOGGER + ".quiet")


class FleetSimulator:
    """Simulated agents recording executions; see the module docstring for the scenario API.

    :param agents: the agents.
    :param seed: makes the run reproducible.
    :param fleet_effects: effects applied to every agent (after its own).
    :param state: ``state(namespace, name)`` → current :class:`AgentState` or ``None``.
    :param epoch: the wall-clock time (epoch seconds) of simulated second 0; the start of
        :meth:`start` when ``None``.
    :param log_records: write each execution's JSON record to the
        ``agentmedic_sandbox.fleet_sim.records`` logger (off: the demo would drown in them).
    """

    def __init__(
        self,
        agents: Sequence[AgentSpec],
        *,
        seed: int = 0,
        fleet_effects: Sequence[Effect] = (),
        state: StateCallback | None = None,
        epoch: float | None = None,
        log_records: bool = False,
    ) -> None:
        keys = [(a.namespace, a.name) for a in agents]
        if len(set(keys)) != len(keys):
            raise ValueError("agent (namespace, name) pairs must be unique")
        self._agents = [_Agent(spec, i, seed, log_records) for i, spec in enumerate(agents)]
        self._by_key = {(a.spec.namespace, a.spec.name): a for a in self._agents}
        self.fleet_effects = list(fleet_effects)
        self._state = state
        self.epoch = epoch
        self.now = 0.0
        """Simulated seconds since the start."""
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._server_thread: threading.Thread | None = None

    # -- what the simulation shows ---------------------------------------------------------

    @property
    def agents(self) -> list[AgentSpec]:
        return [a.spec for a in self._agents]

    def registry(self, namespace: str, name: str) -> CollectorRegistry:
        """The registry holding this agent's series."""
        return self._by_key[(namespace, name)].registry

    def monitor(self, namespace: str, name: str) -> AgentMonitor:
        return self._by_key[(namespace, name)].monitor

    def totals(self, namespace: str, name: str) -> AgentTotals:
        """A copy of what the agent has done so far."""
        with self._lock:
            t = self._by_key[(namespace, name)].totals
            return dataclasses.replace(t, by_model=dict(t.by_model))

    def behaviour(self, namespace: str, name: str, t: float | None = None) -> Behaviour:
        """The agent's behaviour at simulated second ``t`` (now by default)."""
        return self._behaviour(self._by_key[(namespace, name)], self.now if t is None else t)

    # -- moving time -------------------------------------------------------------------------

    def advance_to(self, t: float) -> int:
        """Record every execution scheduled up to simulated second ``t``; returns how many
        were recorded. Asks ``state`` once per agent first."""
        recorded = 0
        with self._lock:
            if t < self.now:
                raise ValueError(f"simulated time cannot go back ({t} < {self.now})")
            epoch = self.epoch if self.epoch is not None else time.time() - t
            if self.epoch is None:
                self.epoch = epoch
            for agent in self._agents:
                self._refresh_state(agent)
                recorded += self._run_agent(agent, t, epoch)
            self.now = t
        return recorded

    def history(
        self, start: float, end: float, step: float, *, names: Iterable[str] | None = None
    ) -> list[Series]:
        """Run simulated time from epoch second ``start`` to ``end`` (both absolute, epoch
        seconds) and return every agent's series sampled each ``step`` seconds, as a scrape
        would have seen them, labelled with ``namespace``: ready for
        :func:`agentmedic_sandbox.prometheus.openmetrics_text`. ``names`` limits the sample
        names kept (e.g. to the catalog's series, for a smaller backfill)."""
        if self.now != 0.0 or (self.epoch is not None and self.epoch != start):
            raise RuntimeError("history() needs a fresh simulator (or epoch == start)")
        self.epoch = start
        keep = set(names) if names is not None else None
        points: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = {}
        steps = round((end - start) / step)
        for i in range(steps + 1):
            at = start + i * step
            self.advance_to(at - start)
            for agent in self._agents:
                extra = {"namespace": agent.spec.namespace}
                for s in registry_series(agent.registry, at, extra, names=keep):
                    key = (s.name, tuple(sorted(s.labels.items())))
                    points.setdefault(key, []).extend(s.points)
        return [Series(name, dict(labels), pts) for (name, labels), pts in points.items()]

    def start(self, *, speed: float = 1.0, tick: float = 0.25) -> None:
        """Follow the wall clock (times ``speed``) in a background thread, recording what
        is due every ``tick`` real seconds, until :meth:`stop`."""
        if self._thread is not None:
            raise RuntimeError("the simulator is already running")
        if speed <= 0 or tick <= 0:
            raise ValueError("speed and tick must be positive")
        self._stop.clear()
        origin_real = time.monotonic()
        origin_sim = self.now
        if self.epoch is None:
            self.epoch = time.time() - origin_sim

        def loop() -> None:
            while not self._stop.is_set():
                target = origin_sim + (time.monotonic() - origin_real) * speed
                try:
                    self.advance_to(max(target, self.now))
                except Exception:
                    _log.exception("fleet simulator tick failed")
                self._stop.wait(tick)

        self._thread = threading.Thread(target=loop, name="fleet-sim", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread (if running) and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    # -- serving -----------------------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve every agent's metrics at ``/metrics/<namespace>/<agent>``; returns the
        ``host:port`` address. Idempotent."""
        if self._server is None:
            sim = self

            class Handler(BaseHTTPRequestHandler):
                def log_message(self, format: str, *args: object) -> None:
                    pass

                def do_GET(self) -> None:
                    parts = [unquote(p) for p in self.path.split("?")[0].split("/") if p]
                    agent = (
                        sim._by_key.get((parts[1], parts[2]))
                        if len(parts) == 3 and parts[0] == "metrics"
                        else None
                    )
                    if agent is None:
                        self.send_error(404, "no such agent; use /metrics/<namespace>/<agent>")
                        return
                    body = generate_latest(agent.registry)
                    self.send_response(200)
                    self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            server = _MetricsServer((host, port), Handler)
            self._server = server
            self._server_thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
            )
            self._server_thread.start()
        return f"{host}:{self._server.server_port}"

    def scrape_targets(self) -> list[ScrapeTarget]:
        """One scrape target per agent, labelled with its ``namespace`` (the ``agent`` label
        is in the series already: a target label of the same name would make Prometheus
        rename the scraped one to ``exported_agent``). Starts serving if needed."""
        address = self.serve()
        return [
            ScrapeTarget(
                address,
                labels={"namespace": a.spec.namespace},
                metrics_path=f"/metrics/{a.spec.namespace}/{a.spec.name}",
            )
            for a in self._agents
        ]

    def close(self) -> None:
        """Stop the thread and the HTTP server."""
        self.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._server_thread is not None:
            self._server_thread.join()
            self._server_thread = None

    def __enter__(self) -> FleetSimulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _refresh_state(self, agent: _Agent) -> None:
        if self._state is None:
            return
        try:
            state = self._state(agent.spec.namespace, agent.spec.name)
        except Exception:
            _log.exception("state callback failed for %s/%s", agent.spec.namespace, agent.spec.name)
            return
        if state is None:
            state = AgentState(agent.spec.model, agent.spec.replicas)
        if state.model != agent.state.model:
            agent.monitor.set_model(state.model)
        agent.state = state

    def _behaviour(self, agent: _Agent, t: float) -> Behaviour:
        behaviour = agent.spec.base
        for effect in agent.spec.effects:
            behaviour = effect.apply(behaviour, t)
        for effect in self.fleet_effects:
            behaviour = effect.apply(behaviour, t)
        return behaviour

    def _run_agent(self, agent: _Agent, until: float, epoch: float) -> int:
        due = agent.due(until)
        if due <= agent.next_index:
            return 0
        model, replicas = agent.state.model, agent.state.replicas
        if replicas <= 0:
            agent.totals.skipped += due - agent.next_index
            agent.next_index = due
            return 0
        for k in range(agent.next_index, due):
            self._execute(agent, agent.time_of(k), epoch, model)
        recorded = due - agent.next_index
        agent.next_index = due
        return recorded

    def _execute(self, agent: _Agent, t: float, epoch: float, model: str) -> None:
        b = self._behaviour(agent, t)
        rng = agent.rng
        failed = rng.random() < b.error_rate
        median = b.latency_s * b.model_latency.get(model, 1.0) * agent.state.latency_factor
        latency = median * math.exp(rng.gauss(0.0, b.latency_sigma)) if b.latency_sigma else median
        jitter = 1.0 + b.token_jitter * (2.0 * rng.random() - 1.0)
        input_tokens = round(b.input_tokens * jitter)
        output_tokens = round(b.output_tokens * jitter)
        tools = []
        for profile in b.tools:
            if profile.probability < 1.0 and rng.random() >= profile.probability:
                continue
            duration = profile.latency_s * math.exp(rng.gauss(0.0, 0.3))
            ok = rng.random() >= profile.error_rate
            tools.append(ToolCallRecord(profile.name, duration, ok, None if ok else "ToolError"))
        calls = []
        if input_tokens or output_tokens:
            calls.append(
                LLMCall(
                    request_model=model,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    cached_input_tokens=round(input_tokens * b.cached_share),
                )
            )
        mean = b.quality.get(model)
        scores: tuple[tuple[str, float], ...] = ()
        if mean is not None:
            value = min(1.0, max(0.0, mean + 0.05 * (2.0 * rng.random() - 1.0)))
            scores = (("answer_quality", value),)
        record = agent.monitor.record_execution(
            latency_s=latency,
            status="error" if failed else "success",
            error_type=b.error_type if failed else None,
            model=model,
            llm_calls=calls,
            tools=tools,
            timestamp=epoch + t - latency,
            scores=scores,
        )
        totals = agent.totals
        totals.executions += 1
        totals.errors += failed
        totals.input_tokens += input_tokens
        totals.output_tokens += output_tokens
        totals.cost_usd += record["cost_usd"] or 0.0
        totals.by_model[model] = totals.by_model.get(model, 0) + 1


def registry_series(
    registry: CollectorRegistry,
    at: float,
    extra_labels: Mapping[str, str] | None = None,
    *,
    names: set[str] | None = None,
) -> list[Series]:
    """Every sample in ``registry`` as a one-point :class:`Series` at epoch second ``at``,
    with ``extra_labels`` added (what a scrape config's target labels would add).
    ``*_created`` samples are left out (Prometheus ignores them in the text format too);
    ``names`` keeps only samples whose metric family (or sample) name is listed."""
    extra = dict(extra_labels or {})
    out: list[Series] = []
    for family in registry.collect():
        # Counter families are named without "_total", histogram families without their
        # sample suffixes: match either name.
        family_keep = names is None or family.name in names
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            if not family_keep and (names is None or sample.name not in names):
                continue
            out.append(Series(sample.name, {**sample.labels, **extra}, [(at, sample.value)]))
    return out


class _MetricsServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A scraper that gave up on an answer (Prometheus' scrape timeout, its shutdown)
        # closes the connection while it is written: expected, not worth a traceback on
        # the demo's screen. Anything else is still reported.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)
