"""The reconciler: policies registered by kopf, evaluated in cycles of short named steps.

One :class:`Operator` per process, built by :meth:`Operator.build` from the settings with
every collaborator complete (:func:`~agentmedic.operator.wiring.wire`). kopf's handlers
call :meth:`Operator.register` and :meth:`Operator.unregister`; the scheduler calls
:meth:`Operator.run_cycle` once per distinct interval, evaluating every policy with that
interval together so identical queries are sent once. The cycle's steps live in
:mod:`agentmedic.operator.cycle`: gather → fetch → decide → act → persist → report.

Where state lives (so a restarted operator neither forgets nor repeats):

- what was changed on a workload and from what: the actions layer's ``agentmedic.io/*``
  record on the workload;
- the engine's per-agent memory (pending since, episodes, cooldowns): the annotation
  ``agentmedic.io/state.<policy>`` on the agent's workload, written only when it changed;
- the engine's per-policy memory (actions in the last hour, systemic episodes, budget
  stages, notifications sent): the annotation ``agentmedic.io/state`` on the AgentPolicy;
- what each channel was told, and the messages reserved but not yet settled (the outbox):
  the annotation ``agentmedic.io/notifications`` on the AgentPolicy, written in the same
  optimistic PATCH as ``agentmedic.io/state`` and before any message is sent, so a
  replica that takes over sends what its predecessor only reserved and resolves what it
  announced (see :mod:`agentmedic.operator.memory`);
- what people read: ``status`` of the AgentPolicy and Events, written only on change.

With leader election (:mod:`agentmedic.operator.peering`) only the Lease holder evaluates
and writes; a replica that gains or loses the Lease forgets everything it held in memory
and reads it again from the API server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agentmedic.actions import ActionError, WorkloadRef, label_selector_string
from agentmedic.actions import record as rec
from agentmedic.api import lint
from agentmedic.api.durations import format_duration
from agentmedic.api.types import OnDelete
from agentmedic.api.validation import validate_policy
from agentmedic.kube import Configuration
from agentmedic.metrics import MetricsBackend
from agentmedic.operator import cycle
from agentmedic.operator.configmaps import ModelReads, RecordCache
from agentmedic.operator.entry import (
    OWNED_ANNOTATIONS,
    POLICY_STATE_ANNOTATION,
    PolicyEntry,
    loads,
    parse_status,
)
from agentmedic.operator.heap import HeapKeeper
from agentmedic.operator.persistence import Snapshot
from agentmedic.operator.prompt_jobs import PromptJobs
from agentmedic.operator.refs import refs_of
from agentmedic.operator.routing import fetch_per_backend
from agentmedic.operator.scheduler import CycleScheduler
from agentmedic.operator.settings import OperatorSettings
from agentmedic.operator.shared_sweep import SharedSweep, shared_users
from agentmedic.operator.status import Reason, invalid_conditions
from agentmedic.operator.telemetry import Telemetry
from agentmedic.operator.watch import CachedWorkload, WorkloadCache
from agentmedic.operator.wiring import Parts, close, wire

__all__ = ["POLICY_STATE_ANNOTATION", "Operator", "PolicyEntry"]

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def _identity() -> str:
    return f"{socket.gethostname()}@{os.getpid()}"


@dataclass
class Operator:
    """The running control plane: policies, their schedule, the loop."""

    settings: OperatorSettings
    parts: Parts
    telemetry: Telemetry
    clock: Callable[[], datetime] = _now
    identity: str = field(default_factory=_identity)
    entries: dict[tuple[str, str], PolicyEntry] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scheduler = CycleScheduler(self.run_cycle, self.telemetry)
        self.heap = HeapKeeper()
        self.cycles_completed = 0
        self.last_cycle_at: datetime | None = None
        self._created = time.monotonic()
        self._records = RecordCache()
        """agentmedic's records on the workloads, parsed once per version of each."""
        self._evaluated_once = False
        self._background: set[asyncio.Task[None]] = set()
        self.parts.refs.cache.on_change = self._shared_changed
        self.shared = SharedSweep(
            self.parts.refs,
            lambda: shared_users(self.entries.values(), self.parts.budgets.book.entries.values()),
            self.leading,
        )
        self.prompt_jobs = PromptJobs(self.parts.executor, dry_run=self.settings.dry_run)

    @classmethod
    def build(
        cls,
        settings: OperatorSettings,
        kube_configuration: Configuration,
        *,
        telemetry: Telemetry | None = None,
        clock: Callable[[], datetime] = _now,
        backend: MetricsBackend | None = None,
        identity: str | None = None,
    ) -> Operator:
        """The operator with every collaborator wired; ``backend`` replaces the
        Prometheus client (tests)."""
        built: list[Operator] = []

        async def leadership(leading: bool) -> None:
            await built[0].leadership_changed(leading)

        telemetry = telemetry or Telemetry()
        identity = identity or _identity()
        parts = wire(
            settings,
            kube_configuration,
            telemetry,
            clock,
            identity=identity,
            on_leadership=leadership,
            backend=backend,
        )
        built.append(cls(settings, parts, telemetry, clock=clock, identity=identity))
        return built[0]

    @property
    def cache(self) -> WorkloadCache:
        """The label-selected watch of the agents' workloads."""
        return self.parts.cache

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        # The blocking client's requests (actions, status and annotation writes, several at
        # once) run in the loop's default executor, which also resolves the address of every
        # new connection: its default size (CPUs + 4) let a few slow writes hold up every
        # watch's reconnection.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="agentmedic-io")
        )
        self.parts.peering.start()
        self.scheduler.start()
        self._spawn(self.parts.restores.loop(lambda: self.entries.values()))
        self.parts.budgets.start()
        self._spawn(self.parts.budgets.loop(self._owned, self.cache))
        self.parts.refs.cache.want_all()  # every shared object gets its status on sight
        self._spawn(self.shared.loop())
        self.heap.started()
        log.info("operator started", extra={"identity": self.identity})

    async def stop(self) -> None:
        self.scheduler.shutdown()
        # A cycle that runs finishes (within reason) before its clients close under it.
        await self.scheduler.drain(10)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        # Let messages in flight finish and settle, within reason, before the Lease goes.
        await self.parts.deliveries.drain(10)
        await self.parts.peering.stop()  # hands the Lease over at once
        await close(self.parts)

    def health(self) -> dict[str, Any]:
        return {
            "policies": len(self.entries),
            "cyclesCompleted": self.cycles_completed,
            "lastCycle": self.last_cycle_at.isoformat() if self.last_cycle_at else None,
        }

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ registration

    async def register(self, body: Mapping[str, Any]) -> None:
        """A policy was created, changed or seen at start: validate, (re)schedule."""
        entry = self._entry(body)
        self.cache.unsubscribe(entry.user)
        owned = self.settings.owns(entry.uid)
        if entry.policy is None:
            await self._refuse(entry)
        else:
            entry.selector = label_selector_string(entry.spec.selector)
            model = entry.spec.model
            env_names = [model.env.name] if model and model.env else []
            if owned:
                self.cache.subscribe(entry.user, entry.namespace, entry.selector, env_names)
                self.parts.refs.subscribe(entry.spec)
                self.parts.silences.silences(entry.namespace)  # starts its watch
        self._sync_schedule()
        self.shared.poke()
        if entry.policy is not None and owned:
            self.scheduler.trigger_now(entry.spec.interval)
            self.parts.deliveries.spawn(self._first_cycle(entry))
        self._policy_gauge()

    def _entry(self, body: Mapping[str, Any]) -> PolicyEntry:
        """The policy as registered, keeping what this replica knew of the same object."""
        meta = body.get("metadata", {})
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        uid = meta.get("uid", "")
        old = self.entries.get((namespace, name))
        policy, problems = validate_policy({k: v for k, v in body.items() if k != "status"})
        refused = [str(p) for p in problems]
        if policy is not None and not problems:
            # What `agentmedic validate` calls an error (a ratio threshold outside 0..1 that
            # always or never holds) is refused here too; warnings go to Ready's message.
            scrape = lint.operator_scrape_interval()
            refused = [str(f) for f in lint.errors(lint.lint_policy(policy.spec, None, scrape))]
        entry = PolicyEntry(
            namespace=namespace,
            name=name,
            uid=uid,
            generation=int(meta.get("generation") or 0),
            policy=policy if not refused else None,
            problems=refused,
            status=old.status if old is not None else parse_status(body.get("status")),
        )
        if old is not None and old.uid == uid:
            entry.adopt(old)
        else:
            raw = (meta.get("annotations") or {}).get(POLICY_STATE_ANNOTATION)
            entry.stored_policy_state = loads(raw)
            # Writes before the first cycle (an invalid spec's status) are conditional too;
            # the first cycle reads the policy again (fresh stays False).
            entry.snapshot = Snapshot.of(body, OWNED_ANNOTATIONS)
        self.entries[entry.key] = entry
        return entry

    async def _refuse(self, entry: PolicyEntry) -> None:
        """An invalid policy: counted, logged, and (by the leader) reported on it."""
        self.telemetry.errors.labels("invalid_policy").inc()
        message = "; ".join(entry.problems[:5])
        if len(entry.problems) > 5:
            message += f"; and {len(entry.problems) - 5} more (agentmedic validate shows all)"
        log.warning("policy %s/%s is invalid: %s", entry.namespace, entry.name, message)
        if self.settings.owns(entry.uid) and self.leading():
            await self.parts.writer.status(entry, conditions=invalid_conditions(message))
            await self.parts.writer.event(entry, Reason.INVALID_SPEC, message, warning=True)

    async def _first_cycle(self, entry: PolicyEntry) -> None:
        """Evaluate a new policy as soon as its workloads are listed, not a whole interval
        later: the cycle its registration triggered may have run before the watch listed
        (a trigger during a running cycle is queued, so this one is never lost)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.entries.get(entry.key) is entry:
            if self.cache.workloads(entry.namespace, entry.selector) is not None:
                self.scheduler.trigger_now(entry.spec.interval)
                return
            await asyncio.sleep(0.2)

    async def unregister(self, body: Mapping[str, Any]) -> None:
        """A policy is being deleted: keep (annotated) or restore what it changed."""
        meta = body.get("metadata", {})
        entry = self.entries.pop((meta.get("namespace", ""), meta.get("name", "")), None)
        if entry is None:
            return
        workloads = (
            self.cache.workloads(entry.namespace, entry.selector) if entry.selector else None
        )
        self.cache.unsubscribe(entry.user)
        self.parts.gate.forget(entry.key)
        self.shared.poke()
        self._sync_schedule()
        self._policy_gauge()
        if workloads is None or entry.policy is None or not self.settings.owns(entry.uid):
            return
        if self.leading():
            for w in workloads:
                await self._release(entry, w)

    async def _release(self, entry: PolicyEntry, w: CachedWorkload) -> None:
        """Restore or mark one workload of a deleted policy, and drop its state."""
        executor = self.parts.executor
        restore = entry.spec.recovery.on_delete is OnDelete.RESTORE
        changed_by_us = w.annotations.get(rec.POLICY) == f"{entry.namespace}/{entry.name}"
        ref = WorkloadRef(w.kind, w.namespace, w.name)  # type: ignore[arg-type]
        try:
            if changed_by_us and restore:
                why = f"policy {entry.namespace}/{entry.name} deleted"
                await asyncio.to_thread(executor.restore, ref, why)
            elif changed_by_us:
                await asyncio.to_thread(executor.mark_policy_deleted, ref, entry.ref)
            if rec.state_key(entry.name) in w.annotations:
                await asyncio.to_thread(executor.write_agent_state, ref, entry.name, None)
        except ActionError as exc:
            log.warning("cleaning up %s after policy deletion failed: %s", ref, exc)

    def _shared_changed(self, kind: str) -> None:
        """A shared channel or backend was listed or changed: evaluate at once the
        policies that refer to its kind (a policy waiting for the first list, or one
        whose reference now resolves), and check the shared objects again."""
        self.shared.poke()
        for e in self.entries.values():
            if e.policy is not None and any(r.kind == kind for r in refs_of(e.spec)):
                self.scheduler.trigger_now(e.spec.interval)

    def _sync_schedule(self) -> None:
        intervals = {
            e.spec.interval
            for e in self.entries.values()
            if e.policy is not None and self.settings.owns(e.uid)
        }
        self.scheduler.sync(intervals)

    def _policy_gauge(self) -> None:
        valid = sum(1 for e in self.entries.values() if e.policy is not None)
        self.telemetry.policies.labels("true").set(valid)
        self.telemetry.policies.labels("false").set(len(self.entries) - valid)

    # ------------------------------------------------------------------ leadership

    def leading(self) -> bool:
        """The fence: without election this replica acts alone; with it, only while it
        holds the Lease."""
        return self.parts.peering.leading()

    async def leadership_changed(self, leading: bool) -> None:
        """A new term starts from the API server, never from memory of an earlier one:
        another replica may have acted in between."""
        self.parts.deliveries.cancel_all()  # what they reserved is in the outbox
        for entry in self.entries.values():
            self.parts.memory.forget(entry)
        self.parts.budgets.leadership_changed(leading)
        if leading:
            self.shared.poke()
            for interval in {e.spec.interval for e in self.entries.values() if e.policy}:
                self.scheduler.trigger_now(interval)

    # ------------------------------------------------------------------ the cycle

    async def handle_restore_requests(self) -> int:
        """Serve every pending restore request now; how many restores were attempted."""
        return await self.parts.restores.serve(self.entries.values())

    async def run_cycle(self, interval: timedelta) -> None:
        """Evaluate every policy with this interval; never raises (errors are counted)."""
        label = format_duration(interval)
        started = time.monotonic()
        try:
            if self.leading():
                await self._refresh(interval)
                await self._cycle(interval)
                if not self._evaluated_once:
                    self._evaluated_once = True
                    log.info(
                        "first evaluation cycle done %.1f s after start-up (%d policies)",
                        time.monotonic() - self._created,
                        len(self._due(interval)),
                    )
                self.shared.poke()  # the budgets' references may be new
        except Exception:
            self.telemetry.errors.labels("cycle").inc()
            log.exception("evaluation cycle %s failed", label)
        finally:
            self.telemetry.cycles.labels(label).inc()
            self.telemetry.cycle_duration.labels(label).observe(time.monotonic() - started)
            self.cycles_completed += 1
            self.last_cycle_at = self.clock()

    def _owned(self) -> list[PolicyEntry]:
        """The valid policies this replica's shard evaluates (budgets act through them)."""
        return [e for e in list(self.entries.values()) if e.policy and self.settings.owns(e.uid)]

    def _due(self, interval: timedelta) -> list[PolicyEntry]:
        """The valid policies of this interval that this replica's shard evaluates."""
        return [
            e
            for e in list(self.entries.values())
            if e.policy is not None and e.spec.interval == interval and self.settings.owns(e.uid)
        ]

    async def _refresh(self, interval: timedelta) -> None:
        """Read the policies of this interval that this term has not read yet (a few at
        once: at start-up that is every policy)."""
        stale = [e for e in self._due(interval) if not e.fresh]
        await _bounded(self.parts.memory.load(e) for e in stale)

    async def _cycle(self, interval: timedelta) -> None:
        """gather → fetch (per metrics backend) → decide → act → persist → report."""
        p, now = self.parts, self.clock()
        self._records.next_cycle()
        reads = ModelReads(p.executor, self._records)
        due = self._due(interval)
        routes = await p.gate.route(due)
        ready = [e for e in due if e.key in routes]
        book = p.budgets.book
        gathered = await cycle.gather(
            ready,
            p.cache,
            reads,
            self.settings,
            now,
            book.verdicts_for,
            budgets_known=book.published,
            silences=p.silences.read,
        )
        if not gathered:
            return
        self.heap.set_up()
        batches = await fetch_per_backend(gathered, routes, p.catalog, self.settings, now, interval)
        evaluated: list[cycle.Evaluated] = []
        errors: dict[tuple[str, str], list[str]] = {}
        available = True
        for batch in batches:
            fetched = batch.fetched
            assert fetched is not None
            stats = fetched.stats
            self.telemetry.queries.inc(stats.queries)
            available = available and not (fetched.unavailable or stats.errors)
            for g in batch.gathered:
                errors[g.entry.key] = [f"{k}: {x}" for k, x in stats.errors.items() if k in g.needs]
            evaluated += await cycle.decide(batch.gathered, fetched, p.outage, now)
        self.telemetry.metrics_available.set(1 if available else 0)
        recent = await cycle.act(p.dispatcher, evaluated)
        for key, lines in (await self.prompt_jobs.settle(evaluated, now)).items():
            recent[key] = lines + recent[key]

        async def persist_and_report(e: cycle.Evaluated) -> None:
            e.entry.due = list(e.outcome.notifications)
            await p.memory.persist(e.entry, e.outcome.state, e.gathered.agents)
            await p.reporter.report(
                e.entry,
                e.outcome,
                recent[e.entry.key],
                errors[e.entry.key],
                selected=len(e.gathered.agents),
                budget_changed=e.budget_changed,
                now=now,
            )

        # Policy by policy, a few policies at once (each one's writes in order).
        await _bounded(persist_and_report(e) for e in evaluated)
        self.heap.cycle_done()


IO_THREADS = 32
"""Threads of the loop's default executor (``asyncio.to_thread``)."""

POLICY_WRITES_AT_ONCE = 8
"""Policies whose reads or writes a cycle sends at once: at start-up every policy is read
and written (a thousand policies one after another took minutes)."""


async def _bounded(steps: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run ``steps`` at most :data:`POLICY_WRITES_AT_ONCE` at a time; the first exception
    is raised once all have ended."""
    gate = asyncio.Semaphore(POLICY_WRITES_AT_ONCE)

    async def one(step: Coroutine[Any, Any, None]) -> None:
        async with gate:
            await step

    results = await asyncio.gather(*(one(s) for s in steps), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
