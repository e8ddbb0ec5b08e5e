"""The control loop: gather → fetch (batched) → evaluate (pure) → act → notify → record.

One :class:`Operator` per process. kopf's handlers call :meth:`Operator.register` and
:meth:`Operator.unregister`; APScheduler calls :meth:`Operator.run_cycle` once per
distinct interval, evaluating every policy with that interval together so identical
queries are sent once.

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
  announced (see :mod:`agentmedic.operator.persistence`);
- what people read: ``status`` of the AgentPolicy and Events, written only on change.

With leader election (:mod:`agentmedic.operator.leader`) only the Lease holder evaluates
and writes; a replica that gains or loses the Lease forgets everything it held in memory
and reads it again from the API server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes

from agentmedic.actions import (
    ActionError,
    ActionExecutor,
    ActionRecord,
    ActionResult,
    Kube,
    PolicyRef,
    WorkloadRef,
    label_selector_string,
    parse_disabled,
    parse_downgraded,
)
from agentmedic.actions import Outcome as ActionOutcome
from agentmedic.actions import record as rec
from agentmedic.api.durations import format_duration
from agentmedic.api.types import (
    GROUP,
    AgentPolicy,
    AgentPolicySpec,
    AgentPolicyStatus,
    ConditionStatus,
    OnDelete,
    RecentAction,
    Severity,
    Spend,
)
from agentmedic.api.types import (
    ActionOutcome as StatusOutcome,
)
from agentmedic.api.validation import validate_policy
from agentmedic.engine import (
    AgentId,
    Decision,
    DecisionKind,
    Notification,
    Outcome,
    PolicyInput,
    PolicyState,
    evaluate,
    requirements,
    strongest_per_agent,
)
from agentmedic.engine import DisabledRecord as EngineDisabled
from agentmedic.engine import DowngradedRecord as EngineDowngraded
from agentmedic.engine import Workload as EngineWorkload
from agentmedic.metrics import (
    DEFAULT_CATALOG,
    BackendConfig,
    Catalog,
    FetchStats,
    MetricsBackend,
    MetricsError,
    MetricsUnavailable,
    PrometheusBackend,
    UnavailableReason,
    backend_config_from_files,
    fetch_samples,
    load_catalog,
    merge_needs,
)
from agentmedic.notify import (
    ChannelConfigError,
    Evidence,
    Message,
    MessageState,
    Notifier,
    ResolvedChannel,
    resolve_channel,
)
from agentmedic.notify.ledger import Admission
from agentmedic.notify.report import Outcome as DeliveryOutcome
from agentmedic.operator.leader import LeaderElector, LeaseConfig
from agentmedic.operator.persistence import (
    NOTIFICATIONS_ANNOTATION,
    PolicyStore,
    Snapshot,
    StoreError,
    SupersededError,
)
from agentmedic.operator.scheduler import CycleScheduler
from agentmedic.operator.settings import OperatorSettings
from agentmedic.operator.status import ConditionType, Reason, build_status, status_patch
from agentmedic.operator.telemetry import Telemetry
from agentmedic.operator.watch import KubeHttp, Workload, WorkloadCache

__all__ = ["POLICY_STATE_ANNOTATION", "Operator", "PolicyEntry"]

log = logging.getLogger(__name__)

POLICY_STATE_ANNOTATION = f"{GROUP}/state"
METRICS_RULE = "metricsUnavailable"


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

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def ref(self) -> PolicyRef:
        return PolicyRef(self.namespace, self.name, self.uid)

    @property
    def spec(self) -> AgentPolicySpec:
        assert self.policy is not None
        return self.policy.spec


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Operator:
    """The running control plane: policies, the workload cache, the loop."""

    settings: OperatorSettings
    kube_configuration: kubernetes.client.Configuration
    telemetry: Telemetry = field(default_factory=Telemetry)
    clock: Callable[[], datetime] = _now
    backend: MetricsBackend | None = None
    """Injected in tests; built from settings otherwise."""
    entries: dict[tuple[str, str], PolicyEntry] = field(default_factory=dict)
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}@{os.getpid()}")
    peering_priority: int = 0

    def __post_init__(self) -> None:
        self.catalog: Catalog = DEFAULT_CATALOG
        self.kube: Kube | None = None
        self.executor: ActionExecutor | None = None
        self.http: KubeHttp | None = None
        self.cache: WorkloadCache | None = None
        self.notifier: Notifier | None = None
        self.scheduler = CycleScheduler(self.run_cycle, self.telemetry)
        self.cycles_completed = 0
        self.last_cycle_at: datetime | None = None
        self._custom: Any = None
        self._notify_tasks: set[asyncio.Task[None]] = set()
        self._restore_task: asyncio.Task[None] | None = None
        self.leader: LeaderElector | None = None
        self.store: PolicyStore | None = None
        self._in_flight: set[tuple[str, str, str]] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.catalog = load_catalog(self.settings.catalog_overrides_file)
        self.kube = Kube.from_configuration(self.kube_configuration)
        self.executor = ActionExecutor(self.kube)
        self.http = KubeHttp(self.kube_configuration)
        methods = {
            "GET": "get",
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }
        self.kube.observe = lambda method, _path: self.telemetry.api_requests.labels(
            methods.get(method.upper(), method.lower())
        ).inc()
        self.http.observe = lambda verb, _path: self.telemetry.api_requests.labels(verb).inc()
        self.cache = WorkloadCache(self.http)
        self.notifier = Notifier()
        if self.backend is None:
            self.backend = PrometheusBackend(_backend_config(self.settings))
        self._custom = kubernetes.client.CustomObjectsApi(self.kube.api_client)
        self.store = PolicyStore(
            self._custom,
            observe=lambda verb: self.telemetry.api_requests.labels(verb).inc(),
            fence=self.leading,
        )
        if self.settings.peering:
            s = self.settings
            self.leader = LeaderElector(
                kubernetes.client.CoordinationV1Api(self.kube.api_client),
                LeaseConfig(
                    namespace=s.lease_namespace_or_default(),
                    name=self.settings.peering,
                    identity=self.identity,
                    duration=s.lease_duration_seconds,
                    renew_deadline=s.lease_renew_deadline_seconds,
                    retry=s.lease_retry_seconds,
                ),
                on_change=self._leadership_changed,
            )
            self.leader.start()
        self.scheduler.start()
        self._restore_task = asyncio.get_running_loop().create_task(self._restore_loop())
        log.info("operator started", extra={"identity": self.identity})

    async def stop(self) -> None:
        self.scheduler.shutdown()
        if self._restore_task is not None:
            self._restore_task.cancel()
            await asyncio.wait({self._restore_task})
            self._restore_task = None
        # Let messages in flight finish and settle, within reason, before the Lease goes: a
        # cycle still running may spawn more, so wait until none is left.
        deadline = time.monotonic() + 10
        while self._notify_tasks and (left := deadline - time.monotonic()) > 0:
            await asyncio.wait(set(self._notify_tasks), timeout=left)
        if self.leader is not None:
            await self.leader.stop()  # hands the Lease over at once
        if self.cache is not None:
            await self.cache.aclose()
        if self.http is not None:
            await self.http.aclose()
        if self.notifier is not None:
            await self.notifier.aclose()
        if self.backend is not None:
            await self.backend.aclose()
        if self.kube is not None:
            self.kube.close()

    def health(self) -> dict[str, Any]:
        return {
            "policies": len(self.entries),
            "cyclesCompleted": self.cycles_completed,
            "lastCycle": self.last_cycle_at.isoformat() if self.last_cycle_at else None,
        }

    # ------------------------------------------------------------------ registration

    async def register(self, body: Mapping[str, Any]) -> None:
        """A policy was created, changed or seen at start: validate, (re)schedule."""
        meta = body.get("metadata", {})
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        uid, generation = meta.get("uid", ""), int(meta.get("generation") or 0)
        old = self.entries.get((namespace, name))
        policy, problems = validate_policy(_without_runtime_fields(body))
        status = _parse_status(body.get("status"))
        entry = PolicyEntry(
            namespace=namespace,
            name=name,
            uid=uid,
            generation=generation,
            policy=policy if not problems else None,
            problems=[str(p) for p in problems],
            status=old.status if old is not None else status,
        )
        if old is not None and old.uid == uid:
            entry.state = old.state
            entry.stored_policy_state = old.stored_policy_state
            entry.snapshot, entry.fresh, entry.outbox = old.snapshot, old.fresh, old.outbox
            entry.lock = old.lock
        else:
            raw = (meta.get("annotations") or {}).get(POLICY_STATE_ANNOTATION)
            entry.stored_policy_state = _loads(raw)
            # Writes before the first cycle (an invalid spec's status) are conditional too;
            # the first cycle reads the policy again (fresh stays False).
            entry.snapshot = Snapshot.of(body, (POLICY_STATE_ANNOTATION, NOTIFICATIONS_ANNOTATION))
        self.entries[entry.key] = entry
        assert self.cache is not None
        self.cache.unsubscribe(_user(entry))
        if entry.policy is None:
            self.telemetry.errors.labels("invalid_policy").inc()
            message = "; ".join(entry.problems[:5])
            if len(entry.problems) > 5:
                message += f"; and {len(entry.problems) - 5} more (agentmedic validate shows all)"
            log.warning("policy %s/%s is invalid: %s", namespace, name, message)
            if self.settings.owns(uid) and self.leading():
                await self._write_status(
                    entry,
                    conditions=[
                        (ConditionType.READY, ConditionStatus.FALSE, Reason.INVALID_SPEC, message)
                    ],
                )
                await self._policy_event(entry, Reason.INVALID_SPEC, message, warning=True)
        else:
            entry.selector = label_selector_string(entry.spec.selector)
            env_names = (
                [entry.spec.model.env.name] if entry.spec.model and entry.spec.model.env else []
            )
            if self.settings.owns(uid):
                self.cache.subscribe(_user(entry), namespace, entry.selector, env_names)
        self._sync_schedule()
        if entry.policy is not None and self.settings.owns(uid):
            self.scheduler.trigger_now(entry.spec.interval)
            task = asyncio.get_running_loop().create_task(self._first_cycle(entry))
            self._notify_tasks.add(task)
            task.add_done_callback(self._notify_tasks.discard)
        self._policy_gauge()

    async def _first_cycle(self, entry: PolicyEntry) -> None:
        """Evaluate a new policy as soon as its workloads are listed, not a whole interval
        later: the cycle its registration triggered ran before the watch had listed."""
        assert self.cache is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.entries.get(entry.key) is entry:
            if self.cache.workloads(entry.namespace, entry.selector) is not None:
                self.scheduler.trigger_now(entry.spec.interval)
                return
            await asyncio.sleep(0.2)

    async def unregister(self, body: Mapping[str, Any]) -> None:
        """A policy is being deleted: keep (annotated) or restore what it changed."""
        meta = body.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        entry = self.entries.pop(key, None)
        if entry is None:
            return
        assert self.cache is not None
        assert self.executor is not None
        workloads = (
            self.cache.workloads(entry.namespace, entry.selector) if entry.selector else None
        )
        self.cache.unsubscribe(_user(entry))
        self._sync_schedule()
        self._policy_gauge()
        if workloads is None or entry.policy is None or not self.settings.owns(entry.uid):
            return
        if not self.leading():
            return
        restore = entry.spec.recovery.on_delete is OnDelete.RESTORE
        for w in workloads:
            changed_by_us = w.annotations.get(rec.POLICY) == f"{entry.namespace}/{entry.name}"
            ref = WorkloadRef(w.kind, w.namespace, w.name)  # type: ignore[arg-type]
            try:
                if changed_by_us and restore:
                    await asyncio.to_thread(
                        self.executor.restore, ref, f"policy {entry.namespace}/{entry.name} deleted"
                    )
                elif changed_by_us:
                    await asyncio.to_thread(self.executor.mark_policy_deleted, ref, entry.ref)
                if rec.state_key(entry.name) in w.annotations:
                    await asyncio.to_thread(self.executor.write_agent_state, ref, entry.name, None)
            except ActionError as exc:
                log.warning("cleaning up %s after policy deletion failed: %s", ref, exc)

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

    # ------------------------------------------------------------------ the cycle

    async def run_cycle(self, interval: timedelta) -> None:
        """Evaluate every policy with this interval; never raises (errors are counted)."""
        label = format_duration(interval)
        started = time.monotonic()
        try:
            if await self._active():
                await self._refresh(interval)
                await self._cycle(interval)
        except Exception:
            self.telemetry.errors.labels("cycle").inc()
            log.exception("evaluation cycle %s failed", label)
        finally:
            self.telemetry.cycles.labels(label).inc()
            self.telemetry.cycle_duration.labels(label).observe(time.monotonic() - started)
            self.cycles_completed += 1
            self.last_cycle_at = self.clock()

    def leading(self) -> bool:
        """The fence: without election this replica acts alone; with it, only while it
        holds the Lease."""
        return self.leader is None or self.leader.is_leader()

    async def _active(self) -> bool:
        return self.leading()

    async def _leadership_changed(self, leading: bool) -> None:
        """A new term starts from the API server, never from memory of an earlier one:
        another replica may have acted in between."""
        for task in list(self._notify_tasks):
            task.cancel()  # what they had reserved is in the outbox for the next leader
        for entry in self.entries.values():
            self._forget(entry)
        if leading:
            for interval in {e.spec.interval for e in self.entries.values() if e.policy}:
                self.scheduler.trigger_now(interval)

    def _forget(self, entry: PolicyEntry) -> None:
        entry.state = None
        entry.stored_policy_state = None
        entry.status = None
        entry.snapshot = Snapshot()
        entry.fresh = False
        entry.outbox = {}
        entry.due = []
        entry.metrics_down_since = None
        entry.metrics_down_notified = False
        if self.notifier is not None:
            self.notifier.ledger.import_policy(entry.namespace, entry.name, None)

    async def _refresh(self, interval: timedelta) -> None:
        """Read the policies of this interval that this term has not read yet."""
        for entry in list(self.entries.values()):
            if entry.fresh or entry.policy is None or entry.spec.interval != interval:
                continue
            if self.settings.owns(entry.uid):
                await self._load(entry)

    async def _load(self, entry: PolicyEntry) -> None:
        """Memory of one policy from the API server: the engine's policy state, the
        delivery ledger, status, and the outbox, whose reserved sends go out again."""
        assert self.store is not None
        assert self.notifier is not None
        try:
            obj = await self.store.get(entry.namespace, entry.name)
        except StoreError as exc:
            log.warning("cannot read %s/%s: %s", entry.namespace, entry.name, exc)
            return
        self._forget(entry)
        if obj is None:
            return
        entry.snapshot = Snapshot.of(obj, (POLICY_STATE_ANNOTATION, NOTIFICATIONS_ANNOTATION))
        entry.stored_policy_state = _loads(entry.snapshot.annotations.get(POLICY_STATE_ANNOTATION))
        entry.status = _parse_status(obj.get("status"))
        notes = _loads(entry.snapshot.annotations.get(NOTIFICATIONS_ANNOTATION)) or {}
        try:
            ledger = notes.get("ledger")
            self.notifier.ledger.import_policy(
                entry.namespace, entry.name, ledger if isinstance(ledger, dict) else None
            )
        except ValueError as exc:
            log.warning("ignoring the delivery ledger of %s/%s: %s", *entry.key, exc)
        outbox = notes.get("outbox")
        entry.outbox = dict(outbox) if isinstance(outbox, dict) else {}
        entry.fresh = True
        # A send of this process still in flight settles its own item.
        pending = [
            i for i in entry.outbox if (entry.namespace, entry.name, i) not in self._in_flight
        ]
        if pending:
            log.info(
                "%d message(s) of %s/%s were reserved by an earlier term; sending them",
                len(pending),
                *entry.key,
            )
            self._spawn(self._send_outbox(entry, pending))

    async def _cycle(self, interval: timedelta) -> None:
        assert self.cache is not None
        assert self.backend is not None
        now = self.clock()
        prepared: list[tuple[PolicyEntry, PolicyInput, dict[AgentId, Workload]]] = []
        needs = []
        needs_by_entry: dict[tuple[str, str], set[Any]] = {}
        # A ConfigMap that holds the model is read once a cycle, however many agents and
        # policies read it.
        config_models: dict[tuple[str, str, str], str | None] = {}
        for entry in list(self.entries.values()):
            if entry.policy is None or entry.spec.interval != interval:
                continue
            if not self.settings.owns(entry.uid):
                continue
            if not entry.fresh:
                continue  # not read from the API server in this term (see _refresh)
            workloads = self.cache.workloads(entry.namespace, entry.selector)
            if workloads is None:
                continue  # the watch has not listed yet
            agents: dict[AgentId, Workload] = {}
            for w in workloads:
                agents.setdefault(AgentId(entry.namespace, w.agent), w)
            if entry.state is None:
                entry.state = _rebuild_state(entry, agents)
            spec = entry.spec
            if self.settings.dry_run and not spec.guardrails.dry_run:
                spec = spec.model_copy(
                    update={"guardrails": spec.guardrails.model_copy(update={"dry_run": True})}
                )
            policy_input = PolicyInput(
                spec=spec,
                namespace=entry.namespace,
                name=entry.name,
                uid=entry.uid,
                agents={
                    a: await self._engine_workload(w, spec, config_models)
                    for a, w in agents.items()
                },
            )
            prepared.append((entry, policy_input, agents))
            keys = requirements(spec, now)
            needs_by_entry[entry.key] = keys
            needs.append({key: set(agents) for key in keys})

        if not prepared:
            return
        samples, stats, unavailable = await self._fetch(merge_needs(*needs), now, interval)
        self.telemetry.queries.inc(stats.queries)
        self.telemetry.metrics_available.set(0 if unavailable or stats.errors else 1)

        outcomes: list[tuple[PolicyEntry, PolicyInput, dict[AgentId, Workload], Outcome]] = []
        for entry, policy_input, agents in prepared:
            # The evidence rule: a policy is evaluated only on good answers to every query
            # it needs. Any failed query (unavailable, malformed, refused as wrong PromQL)
            # holds the whole policy this cycle, state untouched: evaluating it without the
            # series would read the failure as the agents' missing data (noData stances).
            needed = needs_by_entry[entry.key]
            if unavailable is not None:
                await self._metrics_unavailable(entry, unavailable, now)
                continue
            failed = next(((k, e) for k, e in stats.errors.items() if k in needed), None)
            if failed is not None:
                await self._metrics_unavailable(entry, failed[1], now, key=f"{failed[0]}: ")
                continue
            await self._metrics_back(entry, now)
            assert entry.state is not None
            undefined = _undefined_agents(stats, needed, agents)
            if undefined:
                policy_input = _held(policy_input, undefined)
            outcome = evaluate(policy_input, samples, entry.state, now)
            if undefined:
                outcome = _without_decisions_for(outcome, undefined)
            outcomes.append((entry, policy_input, agents, outcome))

        # One workload change per agent per cycle, across every policy that selects it.
        winners = {id(d) for d in strongest_per_agent(d for *_, o in outcomes for d in o.decisions)}
        for entry, policy_input, agents, outcome in outcomes:
            recent: list[RecentAction] = []
            for decision in outcome.decisions:
                overruled = decision.applies and id(decision) not in winners
                recent.append(
                    await self._carry_out(entry, policy_input.spec, decision, agents, overruled)
                )
            self._spawn_notifications(entry, outcome.notifications, now)
            await self._persist(entry, outcome.state, agents)
            errors = [
                f"{k}: {e}" for k, e in stats.errors.items() if k in needs_by_entry[entry.key]
            ]
            await self._report(entry, outcome, recent, errors, len(agents), now)

    async def _fetch(
        self, merged: dict[Any, set[AgentId]], now: datetime, interval: timedelta
    ) -> tuple[dict[AgentId, dict[Any, float | None]], FetchStats, MetricsError | None]:
        """This cycle's samples, or why there are none. The fetch has a deadline of its own
        (``cycle_deadline_seconds``, below the interval): a backend that answers slowly
        ends this cycle's fetching rather than delaying the next cycle."""
        assert self.backend is not None
        if not merged:
            return {}, FetchStats(), None
        deadline = self.settings.cycle_deadline(interval)
        try:
            async with asyncio.timeout(deadline):
                samples, stats = await fetch_samples(
                    self.backend,
                    merged,
                    now,
                    self.catalog,
                    namespace_label=self.settings.namespace_label,
                    max_concurrency=self.settings.max_concurrent_queries,
                )
        except TimeoutError:
            return (
                {},
                FetchStats(),
                MetricsUnavailable(
                    UnavailableReason.TIMEOUT,
                    f"the cycle's queries did not all answer within its deadline of "
                    f"{deadline:g}s (cycleDeadlineSeconds)",
                ),
            )
        except MetricsError as exc:
            return {}, FetchStats(), exc
        return samples, stats, None

    # ------------------------------------------------------------------ restore requests

    async def _restore_loop(self) -> None:
        """Restore requests are served on their own short period, never inside a metrics
        cycle: a person bringing an agent back must not wait for a slow backend."""
        while True:
            await asyncio.sleep(self.settings.restore_poll_seconds)
            try:
                await self.handle_restore_requests()
            except Exception:
                self.telemetry.errors.labels("restore").inc()
                log.exception("serving restore requests failed")

    async def handle_restore_requests(self) -> int:
        """Serve every pending restore request of the policies this replica owns; how many
        restores were attempted. Reads the watch cache only, so it costs nothing when no
        one asked."""
        assert self.cache is not None
        pending: list[tuple[Workload, str, bool]] = []
        for entry in list(self.entries.values()):
            if entry.policy is None or not self.settings.owns(entry.uid):
                continue
            workloads = self.cache.workloads(entry.namespace, entry.selector)
            if workloads:
                pending.extend(self._restore_requests(entry, workloads))
        if not pending or not await self._active():
            return 0
        for w, by, model in pending:
            await self._restore(w, by, model)
        return len(pending)

    def _restore_requests(
        self, entry: PolicyEntry, workloads: list[Workload]
    ) -> list[tuple[Workload, str, bool]]:
        """A person puts an agent back: with ``agentmedic.io/restore: "true"`` on the
        workload, or by scaling a workload agentmedic disabled back up by hand (``kubectl
        scale``). The latter is taken as a restore of the replicas, keeping the count the
        person chose: the record goes, and the agent's rules are watched again instead of
        held for an agent that no longer is disabled. Not in dry run, which writes nothing
        of its own."""
        dry_run = self.settings.dry_run or entry.spec.guardrails.dry_run
        out = []
        for w in workloads:
            if w.annotations.get(rec.RESTORE_REQUEST, "").lower() == "true":
                out.append((w, "annotation", True))
            elif not dry_run and _scaled_up_by_hand(w):
                by = f"a person: scaled to {w.replicas} replica(s) by hand while disabled"
                out.append((w, by, False))  # a downgrade is not undone by a kubectl scale
        return out

    async def _restore(self, w: Workload, by: str, model: bool) -> None:
        assert self.executor is not None
        ref = WorkloadRef(w.kind, w.namespace, w.name)  # type: ignore[arg-type]
        try:
            result = await asyncio.to_thread(self.executor.restore, ref, by, model=model)
            self.telemetry.decisions.labels("restore", str(result.outcome)).inc()
            log.info("restored %s (%s): %s", ref, by, result.message)
        except ActionError as exc:
            log.warning("restore of %s (%s) failed: %s", ref, by, exc)

    async def _engine_workload(
        self,
        w: Workload,
        spec: AgentPolicySpec,
        config_models: dict[tuple[str, str, str], str | None],
    ) -> EngineWorkload:
        """The engine's view of a workload. ``config_models`` holds the models read from
        ConfigMaps this cycle, (namespace, ConfigMap, key) → value, and is filled here."""
        disabled = parse_disabled(w.annotations)
        downgraded = parse_downgraded(w.annotations)
        model: str | None = None
        if spec.model is not None and spec.model.env is not None:
            model = w.env.get((spec.model.env.container, spec.model.env.name))
        elif spec.model is not None and spec.model.config_map_key is not None:
            assert self.executor is not None
            ref = spec.model.config_map_key
            where = (w.namespace, ref.config_map_for(w.name), ref.key)
            if where in config_models:
                model = config_models[where]
            else:
                try:
                    model = await asyncio.to_thread(
                        self.executor.current_model,
                        {"metadata": {"namespace": w.namespace, "name": w.name}},
                        spec.model,
                    )
                except ActionError:
                    model = None
                config_models[where] = model
        return EngineWorkload(
            kind=w.kind,
            name=w.name,
            replicas=w.replicas,
            model=model,
            disabled=None
            if disabled is None
            else EngineDisabled(
                episode=disabled.episode,
                rule=disabled.rule,
                at=_parse_time(disabled.at),
                previous_replicas=disabled.replicas,
            ),
            downgraded=None
            if downgraded is None
            else EngineDowngraded(
                episode=downgraded.episode,
                rule=downgraded.rule,
                at=_parse_time(downgraded.at),
                previous_model=downgraded.model,
            ),
        )

    async def _carry_out(
        self,
        entry: PolicyEntry,
        spec: AgentPolicySpec,
        d: Decision,
        agents: Mapping[AgentId, Workload],
        overruled: bool,
    ) -> RecentAction:
        """Apply one decision (or record why not) and describe it for status."""
        assert self.executor is not None
        kind = str(d.kind)
        w = agents.get(d.agent)
        if d.suppressed_by is not None or overruled:
            why = "another policy acts on this agent this cycle" if overruled else d.suppressed_by
            self.telemetry.decisions.labels(kind, "Suppressed").inc()
            await self._policy_event(
                entry, "ActionSuppressed", f"{kind} on {d.agent} suppressed ({why}): {d.reason}"
            )
            return _recent(d, StatusOutcome.SUPPRESSED, f"suppressed ({why}): {d.reason}")
        if w is None:
            return _recent(d, StatusOutcome.FAILED, "the agent's workload is gone")
        ref = WorkloadRef(w.kind, w.namespace, w.name)  # type: ignore[arg-type]
        record = ActionRecord(
            policy=entry.ref,
            rule=d.rule,
            episode=d.episode,
            reason=d.reason,
            evidence=d.evidence.describe(),
            at=d.at,
            dry_run=d.dry_run,
        )
        try:
            result = await asyncio.to_thread(self._execute, spec, d, ref, record)
        except ActionError as exc:  # transient or a lost race: the engine decides it again
            self.telemetry.errors.labels("kubernetes").inc()
            self.telemetry.decisions.labels(kind, "Failed").inc()
            log.warning("%s on %s failed, will retry: %s", kind, ref, exc)
            return _recent(d, StatusOutcome.FAILED, f"{exc}; retried next cycle")
        outcome = _status_outcome(result, d)
        self.telemetry.decisions.labels(kind, str(outcome)).inc()
        return _recent(d, outcome, result.message or d.reason)

    def _execute(
        self, spec: AgentPolicySpec, d: Decision, ref: WorkloadRef, record: ActionRecord
    ) -> ActionResult:
        assert self.executor is not None
        if d.kind is DecisionKind.SCALE_TO_ZERO:
            return self.executor.scale_to_zero(ref, record)
        if d.kind is DecisionKind.SWITCH_MODEL:
            assert spec.model is not None
            assert d.to_model is not None
            return self.executor.switch_model(ref, spec.model, d.to_model, record)
        if d.kind is DecisionKind.PROMPT_OPTIMIZATION:
            assert d.prompt_optimization is not None
            evidence = {
                "rule": d.rule,
                "summary": d.evidence.describe(),
                "conditions": [
                    {
                        "metric": c.metric,
                        "query": c.query,
                        "window": format_duration(c.window),
                        "op": str(c.op),
                        "threshold": c.threshold,
                        "observed": c.observed,
                    }
                    for c in d.evidence.conditions
                ],
            }
            return self.executor.start_prompt_job(
                ref, record.policy, d.prompt_optimization, record, evidence
            )
        restore = d.restore
        assert restore is not None
        by = "auto-recovery" if not d.rule.startswith("budget") else "budget period ended"
        if restore.model is not None and not restore.complete and spec.model is not None:
            return self.executor.switch_model(ref, spec.model, restore.model, record)
        return self.executor.restore(
            ref,
            by,
            replicas=restore.replicas,
            model=restore.complete,
            dry_run=d.dry_run,
        )

    # ------------------------------------------------------------------ notifications

    async def _channels(self, entry: PolicyEntry, names: set[str]) -> list[ResolvedChannel]:
        assert self.executor is not None
        out = []
        for channel in entry.spec.notifications.channels:
            if channel.name not in names:
                continue

            def lookup(secret: str, key: str) -> str:
                assert self.executor is not None
                return self.executor.read_secret_value(entry.namespace, secret, key)

            try:
                out.append(await asyncio.to_thread(resolve_channel, channel, lookup))
            except ChannelConfigError as exc:
                self.telemetry.errors.labels("notify").inc()
                await self._policy_event(entry, "ChannelMisconfigured", str(exc), warning=True)
        return out

    def _spawn_notifications(
        self, entry: PolicyEntry, notifications: list[Notification], now: datetime
    ) -> None:
        """Hold this cycle's messages until :meth:`_persist` has stored the state that
        announces them together with the reservation of each send (the outbox): a message
        is never sent before a crash could no longer forget it was due."""
        entry.due = list(notifications)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._notify_tasks.add(task)
        task.add_done_callback(self._notify_tasks.discard)

    async def _reserve(
        self, entry: PolicyEntry, due: list[Notification], now: datetime
    ) -> tuple[list[str], dict[str, ResolvedChannel]]:
        """Ask the ledger which channel gets which message; put the admitted sends in the
        outbox (not yet persisted). Returns their ids and the channels resolved."""
        assert self.notifier is not None
        if not due:
            return [], {}
        names = {c for n in due for c in n.channels}
        channels = {c.name: c for c in await self._channels(entry, names)}
        ids: list[str] = []
        for n in due:
            targets = [channels[c] for c in n.channels if c in channels]
            if not targets:
                continue
            message = _message(entry, n, now)
            admitted, suppressed = self.notifier.reserve(message, targets)
            for result in suppressed:
                self.telemetry.notifications.labels(result.channel, str(result.outcome)).inc()
            for channel, admission in admitted:
                state = admission.state.value
                key = f"{channel.name}|{admission.episode}|{state}|{admission.sent_ts}"
                entry.outbox[key] = {
                    "channel": channel.name,
                    "message": message.to_json(),
                    "admission": admission.to_json(),
                }
                ids.append(key)
        return ids, channels

    def _notes(self, entry: PolicyEntry) -> str:
        assert self.notifier is not None
        ledger = self.notifier.ledger.export_policy(entry.namespace, entry.name, self.clock())
        return _dumps({"ledger": ledger, "outbox": entry.outbox})

    async def _send_outbox(
        self,
        entry: PolicyEntry,
        ids: list[str],
        channels: dict[str, ResolvedChannel] | None = None,
    ) -> None:
        """Send reserved messages, then settle each in the ledger and the stored outbox.

        A crash between a receiver's answer and that write sends the message again from
        the next term: at least once. The repeat carries the same PagerDuty dedup_key and
        the same webhook delivery id, so those receivers drop it; a Slack webhook has no
        such key and may show it twice (see docs/architecture.md)."""
        items = [(i, entry.outbox[i]) for i in ids if i in entry.outbox]
        if not items:
            return
        if channels is None:
            channels = {
                c.name: c
                for c in await self._channels(entry, {str(item["channel"]) for _, item in items})
            }

        async def one(item_id: str, item: dict[str, Any]) -> None:
            assert self.notifier is not None
            marker = (entry.namespace, entry.name, item_id)
            self._in_flight.add(marker)
            try:
                try:
                    message = Message.from_json(item["message"])
                    admission = Admission.from_json(item["admission"])
                except (KeyError, TypeError, ValueError):
                    log.warning("dropping an unreadable reserved message of %s/%s", *entry.key)
                else:
                    channel = channels.get(str(item.get("channel")))
                    if not self.leading():
                        return  # the next leader sends it
                    if channel is None:  # the channel left the spec meanwhile
                        self.notifier.settle(admission, delivered=False)
                    else:
                        result = await self.notifier.send_reserved(channel, message, admission)
                        self.telemetry.notifications.labels(
                            result.channel, str(result.outcome)
                        ).inc()
                        if result.outcome is not DeliveryOutcome.SENT:
                            log.warning(
                                "episode %s (%s) not delivered to %s: %s",
                                message.episode,
                                message.state.value,
                                channel.name,
                                result.detail,
                            )
                async with entry.lock:
                    entry.outbox.pop(item_id, None)
                    await self._write_annotations(
                        entry, {NOTIFICATIONS_ANNOTATION: self._notes(entry)}
                    )
            finally:
                self._in_flight.discard(marker)

        await asyncio.gather(*(one(i, item) for i, item in items))

    async def _write_annotations(self, entry: PolicyEntry, wanted: dict[str, str | None]) -> bool:
        assert self.store is not None
        try:
            entry.snapshot = await self.store.write_annotations(
                entry.namespace, entry.name, entry.snapshot, wanted
            )
            return True
        except SupersededError:
            log.warning(
                "the state of %s/%s was changed by another replica; reading it again",
                *entry.key,
            )
            entry.fresh = False
        except StoreError as exc:
            self.telemetry.errors.labels("status").inc()
            log.warning("cannot store the state of %s/%s: %s", entry.namespace, entry.name, exc)
        return False

    async def _fleet_message(
        self, entry: PolicyEntry, state: MessageState, summary: str, since: datetime, now: datetime
    ) -> None:
        if not entry.spec.no_data.channels:
            return
        assert self.notifier is not None
        channels = await self._channels(entry, set(entry.spec.no_data.channels))
        if not channels:
            return
        message = Message(
            episode=f"{entry.uid}:*:{METRICS_RULE}:{int(since.timestamp())}",
            policy_namespace=entry.namespace,
            policy_name=entry.name,
            agent=None,
            rule=METRICS_RULE,
            severity=Severity.HIGH,
            state=state,
            summary=summary,
            time=now,
        )
        await self.notifier.notify(message, channels)

    # ------------------------------------------------------------------ metrics outage

    async def _metrics_unavailable(
        self, entry: PolicyEntry, exc: MetricsError, now: datetime, *, key: str = ""
    ) -> None:
        """No evidence: no remediation, the policy not evaluated (its state kept), a
        condition whose reason names the fault, a message if it lasts. ``key`` names the
        failed query's series when one query failed."""
        self.telemetry.errors.labels("metrics").inc()
        what = key + (str(exc) if isinstance(exc, MetricsUnavailable) else f"{exc.reason}: {exc}")
        if entry.metrics_down_since is None:
            entry.metrics_down_since = now
            log.warning("policy %s/%s not evaluated: %s", entry.namespace, entry.name, what[:500])
        since = entry.metrics_down_since
        if not entry.metrics_down_notified and now - since >= entry.spec.no_data.after:
            entry.metrics_down_notified = True
            lasted = format_duration(now - since)
            await self._policy_event(
                entry,
                str(exc.reason),
                f"no usable metrics for {lasted}: {what[:500]}; no action until they return",
                warning=True,
            )
            await self._fleet_message(
                entry,
                MessageState.FIRING,
                f"metrics backend unavailable for {lasted}: {what}; "
                "agentmedic takes no action until it returns",
                since,
                now,
            )
        await self._write_status(
            entry,
            conditions=[
                (ConditionType.READY, ConditionStatus.TRUE, Reason.EVALUATING, "policy accepted"),
                (
                    ConditionType.METRICS_AVAILABLE,
                    ConditionStatus.FALSE,
                    str(exc.reason),
                    f"{what[:800]} (since {since.isoformat(timespec='seconds')}); no "
                    "remediation until metrics return",
                ),
            ],
        )

    async def _metrics_back(self, entry: PolicyEntry, now: datetime) -> None:
        since = entry.metrics_down_since
        if since is None:
            return
        entry.metrics_down_since = None
        log.info(
            "policy %s/%s has metrics again after %s",
            entry.namespace,
            entry.name,
            format_duration(now - since),
        )
        if entry.metrics_down_notified:
            entry.metrics_down_notified = False
            await self._fleet_message(
                entry,
                MessageState.RESOLVED,
                f"metrics backend available again after {format_duration(now - since)}",
                since,
                now,
            )

    # ------------------------------------------------------------------ persistence

    async def _persist(
        self, entry: PolicyEntry, state: PolicyState, agents: Mapping[AgentId, Workload]
    ) -> None:
        """Write the engine's memory where it belongs, only the parts that changed."""
        assert self.executor is not None
        if not self.leading():
            # The term ended during this cycle: what it decided is not stored or sent; the
            # next leader decides again from the API server.
            entry.due = []
            entry.state = None
            entry.fresh = False
            return
        prior = entry.state or PolicyState()
        entry.state = state
        for agent in state.changed_agents(prior):
            w = agents.get(agent)
            if w is None:
                continue
            ref = WorkloadRef(w.kind, w.namespace, w.name)  # type: ignore[arg-type]
            agent_state = state.agents.get(agent)
            payload = None if agent_state is None or agent_state.empty else agent_state.to_dict()
            try:
                await asyncio.to_thread(
                    self.executor.write_agent_state,
                    ref,
                    entry.name,
                    payload,
                    annotations=w.annotations,
                )
            except ActionError as exc:
                log.warning("cannot store state on %s: %s", ref, exc)
        due, entry.due = entry.due, []
        async with entry.lock:
            ids, channels = await self._reserve(entry, due, self.clock())
            policy_part = state.policy_to_dict()
            wanted: dict[str, str | None] = {}
            if policy_part != entry.stored_policy_state:
                wanted[POLICY_STATE_ANNOTATION] = _dumps(policy_part)
            if ids:
                wanted[NOTIFICATIONS_ANNOTATION] = self._notes(entry)
            if not wanted:
                return
            if await self._write_annotations(entry, wanted):
                entry.stored_policy_state = policy_part
            else:
                # Not stored, so not sent: the next cycle decides again from what the API
                # server holds, and announces it then.
                assert self.notifier is not None
                for i in ids:
                    item = entry.outbox.pop(i)
                    self.notifier.settle(Admission.from_json(item["admission"]), delivered=False)
                entry.state = None
                entry.fresh = False
                return
        if ids:
            self._spawn(self._send_outbox(entry, ids, channels))

    async def _report(
        self,
        entry: PolicyEntry,
        outcome: Outcome,
        recent: list[RecentAction],
        query_errors: list[str],
        selected: int,
        now: datetime,
    ) -> None:
        counts = outcome.counts
        for state_name, value in counts.model_dump().items():
            if state_name != "total":
                self.telemetry.agents.labels(entry.namespace, entry.name, state_name).set(value)
        if selected == 0:
            ready = (
                ConditionType.READY,
                ConditionStatus.TRUE,
                Reason.NO_AGENTS,
                f"no Deployment or StatefulSet matches {entry.selector}",
            )
        else:
            ready = (
                ConditionType.READY,
                ConditionStatus.TRUE,
                Reason.EVALUATING,
                f"evaluating {selected} agent(s) every {format_duration(entry.spec.interval)}",
            )
        if query_errors:
            metrics = (
                ConditionType.METRICS_AVAILABLE,
                ConditionStatus.FALSE,
                Reason.QUERY_ERROR,
                "; ".join(query_errors)[:1000],
            )
        else:
            metrics = (
                ConditionType.METRICS_AVAILABLE,
                ConditionStatus.TRUE,
                Reason.METRICS_OK,
                "all queries answered",
            )
        acted = counts.disabled + counts.downgraded
        if acted:
            remediating = (
                ConditionType.REMEDIATING,
                ConditionStatus.TRUE,
                Reason.AGENTS_REMEDIATED,
                f"{counts.disabled} disabled, {counts.downgraded} on a cheaper model",
            )
        elif counts.breaching:
            remediating = (
                ConditionType.REMEDIATING,
                ConditionStatus.TRUE,
                Reason.AGENTS_BREACHING,
                f"{counts.breaching} agent(s) breaching a rule",
            )
        else:
            remediating = (
                ConditionType.REMEDIATING,
                ConditionStatus.FALSE,
                Reason.AGENTS_HEALTHY,
                "no agent is being remediated",
            )
        await self._write_status(
            entry,
            conditions=[ready, metrics, remediating],
            counts=counts,
            spend=_coarse_spend(
                outcome.spend.to_status(),
                entry.status.spend if entry.status else None,
                agents=len(outcome.spend.per_agent)
                if entry.spec.budget is not None and entry.spec.budget.scope == "agent"
                else 1,
            )
            if outcome.spend is not None
            else None,
            recent=recent,
        )

    async def _write_status(
        self,
        entry: PolicyEntry,
        *,
        conditions: list[tuple[str, ConditionStatus, str, str]],
        counts: Any = None,
        spend: Any = None,
        recent: list[RecentAction] | None = None,
    ) -> None:
        now = self.clock()
        new = build_status(
            entry.status,
            now=now,
            generation=entry.generation,
            conditions=conditions,
            agents=counts,
            spend=spend,
            new_actions=recent or [],
            max_actions=self.settings.status_recent_actions,
        )
        if self.store is None:
            return

        def build(base: dict[str, Any] | None) -> dict[str, Any] | None:
            old = entry.status if base is None else _parse_status(base)
            return status_patch(
                old,
                new
                if base is None
                else build_status(
                    old,
                    now=now,
                    generation=entry.generation,
                    conditions=conditions,
                    agents=counts,
                    spend=spend,
                    new_actions=recent or [],
                    max_actions=self.settings.status_recent_actions,
                ),
                now=now,
            )

        try:
            snapshot, patch = await self.store.write_status(
                entry.namespace, entry.name, entry.snapshot, build
            )
        except StoreError as exc:
            self.telemetry.errors.labels("status").inc()
            log.warning("cannot write status of %s/%s: %s", entry.namespace, entry.name, exc)
            return
        entry.snapshot = snapshot
        if patch is not None:
            entry.status = AgentPolicyStatus.model_validate(patch)

    async def _policy_event(
        self, entry: PolicyEntry, reason: str, message: str, *, warning: bool = False
    ) -> None:
        if self.executor is None:
            return
        try:
            await asyncio.to_thread(
                self.executor.emit_event,
                entry.ref.object_reference(),
                reason,
                message,
                "Warning" if warning else "Normal",
            )
        except ActionError as exc:
            log.warning("cannot post Event on %s/%s: %s", entry.namespace, entry.name, exc)


# ---------------------------------------------------------------------- helpers


def _user(entry: PolicyEntry) -> str:
    return f"{entry.namespace}/{entry.name}"


def _without_runtime_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "status"}


def _parse_status(raw: Any) -> AgentPolicyStatus | None:
    if not isinstance(raw, dict) or not raw:
        return None
    try:
        return AgentPolicyStatus.model_validate(raw)
    except ValueError:
        return None  # written by another version: rewrite it


def _loads(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _undefined_agents(
    stats: FetchStats, needed: set[Any], agents: Mapping[AgentId, Workload]
) -> set[AgentId]:
    """The policy's agents with a NaN among the values it needs."""
    out: set[AgentId] = set()
    for key, undefined in stats.undefined.items():
        if key in needed:
            out.update(a for a in undefined if a in agents)
    return out


def _held(policy_input: PolicyInput, agents: set[AgentId]) -> PolicyInput:
    """The policy as the engine sees it, with ``agents`` held this cycle. A NaN (0/0: a
    ratio over an empty window) is not evidence that the agent is healthy, breaching or
    gone, so the agent is neither judged nor given a noData stance: it is presented as
    not running, which the engine holds as it is (rules kept, no candidate, counted as
    no data)."""
    return dataclasses.replace(
        policy_input,
        agents={
            a: dataclasses.replace(w, replicas=0) if a in agents else w
            for a, w in policy_input.agents.items()
        },
    )


def _without_decisions_for(outcome: Outcome, agents: set[AgentId]) -> Outcome:
    """No change of any kind to an agent without evidence this cycle (a held agent's
    timed recovery waits for a cycle that has its numbers)."""
    kept = [d for d in outcome.decisions if d.agent not in agents]
    if len(kept) == len(outcome.decisions):
        return outcome
    return dataclasses.replace(outcome, decisions=kept)


def _scaled_up_by_hand(w: Workload) -> bool:
    """The workload carries agentmedic's disabled record yet has replicas: a person scaled
    it back up. Not for a KEDA-managed agent (KEDA's pause holds it at 0, and a count
    between agentmedic's two writes there is KEDA's, not a person's)."""
    if w.replicas <= 0:
        return False
    disabled = parse_disabled(w.annotations)
    return disabled is not None and disabled.keda_scaled_object is None


def _parse_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.fromtimestamp(0, UTC)


def _rebuild_state(entry: PolicyEntry, agents: Mapping[AgentId, Workload]) -> PolicyState:
    """The engine's memory after a restart: the policy's annotation plus each workload's."""
    key = rec.state_key(entry.name)
    parts = {a: v for a, w in agents.items() if (v := _loads(w.annotations.get(key))) is not None}
    return PolicyState.from_parts(entry.stored_policy_state, parts)


def _recent(d: Decision, outcome: StatusOutcome, reason: str) -> RecentAction:
    if d.dry_run and outcome is StatusOutcome.APPLIED:
        outcome = StatusOutcome.DRY_RUN
    return RecentAction(
        time=d.at,
        agent=str(d.agent),
        rule=d.rule,
        action=str(d.kind),
        outcome=outcome,
        reason=reason[:500],
        episode=d.episode,
    )


def _status_outcome(result: ActionResult, d: Decision) -> StatusOutcome:
    if result.outcome is ActionOutcome.DRY_RUN or d.dry_run:
        return StatusOutcome.DRY_RUN
    if result.outcome in (ActionOutcome.APPLIED, ActionOutcome.UNCHANGED):
        return StatusOutcome.RESTORED if d.kind is DecisionKind.RESTORE else StatusOutcome.APPLIED
    if result.outcome is ActionOutcome.REFUSED:
        return StatusOutcome.SUPPRESSED
    return StatusOutcome.FAILED


def _coarse_spend(spend: Spend, shown: Spend | None = None, *, agents: int = 1) -> Spend:
    """Spend in steps of 0.5% of the limit, the forecast (an estimate that moves with every
    sample) in steps of 5% and only once it has moved by more than a step from what status
    shows, a rolling period's start to the minute: live numbers would otherwise rewrite
    status on every cycle. With ``scope: agent`` the spend is the sum over ``agents`` agents
    each with its own limit, so the steps scale with them."""
    ceiling = spend.limit_usd * max(agents, 1)

    def q(value: float | None, step: float) -> float | None:
        step = max(step, 0.01)
        return None if value is None else round(math.floor(value / step) * step, 4)

    start = spend.period_start.replace(second=0, microsecond=0)
    forecast = q(spend.forecast_usd, ceiling / 20)
    if (
        shown is not None
        and forecast is not None
        and shown.forecast_usd is not None
        and spend.forecast_usd is not None
        and abs(spend.forecast_usd - shown.forecast_usd) <= ceiling / 20
    ):
        forecast = shown.forecast_usd
    return spend.model_copy(
        update={
            "usd": q(spend.usd, ceiling / 200),
            "forecast_usd": forecast,
            "period_start": start,
        }
    )


def _message(entry: PolicyEntry, n: Notification, now: datetime) -> Message:
    evidence: tuple[Evidence, ...] = ()
    if n.evidence is not None:
        evidence = tuple(
            Evidence(
                condition=f"{c.metric or 'query'} {c.op.value} {c.threshold:g}",
                value=c.observed,
                threshold=c.threshold,
                window=c.window,
            )
            for c in n.evidence.conditions
        )
    return Message(
        episode=n.episode,
        policy_namespace=entry.namespace,
        policy_name=entry.name,
        agent=n.agent,
        rule=n.rule,
        severity=n.severity,
        state=MessageState(n.state),
        summary=n.summary,
        time=n.at or now,
        evidence=evidence,
        action=n.action,
        undo=n.undo,
        dry_run=n.dry_run,
    )


def _backend_config(settings: OperatorSettings) -> BackendConfig:
    return backend_config_from_files(
        settings.prometheus_url,
        bearer_token_file=settings.bearer_token_file,
        basic_auth_username=settings.basic_auth_username,
        basic_auth_password_file=settings.basic_auth_password_file,
        ca_file=settings.ca_file,
        insecure_skip_verify=settings.insecure_skip_verify,
        tenant=settings.tenant,
        headers=settings.extra_headers,
        timeout=settings.query_timeout_seconds,
        max_response_bytes=settings.max_response_bytes,
    )
