"""A whole agentmedic installation on loopback: the sandbox ``agentmedic demo`` runs.

Only the cluster and the agents are simulated; everything else is the product's real code:

- a Kubernetes API holding the agents' Deployments, Secrets, a CronJob and the
  AgentPolicies: the in-process API emulator (:mod:`agentmedic_sandbox.emulator`,
  ``api="emulated"``) or the real control plane (:mod:`agentmedic_sandbox.cluster`,
  ``api="real"``: kube-apiserver with controllers and kwok's fake nodes running the pods);
- a simulated fleet recording executions through :mod:`agentmedic.instrument`
  (:mod:`agentmedic_sandbox.fleet_sim`), each agent serving ``/metrics``;
- a real Prometheus (Debian's ``prometheus``) scraping them every second;
- Slack- and PagerDuty-shaped receivers (:mod:`agentmedic_sandbox.receivers`);
- a Chat Completions server on loopback and the real ``agentmedic optimize-prompt`` run for
  each prompt-optimization Job, the sandbox playing its container
  (:mod:`agentmedic_sandbox.prompt_jobs`);
- the real operator (kopf, APScheduler, the engine, actions, notifications), in a thread of
  this process or as an ``agentmedic run`` subprocess.

The policies are the examples in ``crds/examples/`` with time compressed
(:func:`compress_policy`): a window of 5m becomes 10s, so a scenario that takes hours in a
real fleet plays out in two minutes. The end-to-end tests drive the same world.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from agentmedic.actions.prompt_record import PROMPT_TEMPLATE_ANNOTATION
from agentmedic.actions.record import STATE_PREFIX
from agentmedic.api.durations import TIME_COMPRESSION_ENV, format_duration
from agentmedic.api.types import API_VERSION, KIND
from agentmedic.engine.state import AgentState as EngineAgentState
from agentmedic_sandbox.cluster import LocalCluster
from agentmedic_sandbox.emulator import ApiEmulator
from agentmedic_sandbox.fleet_sim import (
    AgentSpec,
    AgentState,
    Behaviour,
    BudgetBurn,
    ErrorRamp,
    FleetSimulator,
    LatencySpike,
    Outage,
    ToolProfile,
)
from agentmedic_sandbox.policies import compress_policy, example_policies, finance_team_budget
from agentmedic_sandbox.prometheus import PrometheusServer
from agentmedic_sandbox.prompt_jobs import (
    API_KEY_SECRET,
    PROMPT_KEY,
    PromptJobRunner,
    latency_factor,
    prompt_config_map,
)
from agentmedic_sandbox.prompt_jobs import cron_job as prompt_cron_job
from agentmedic_sandbox.receivers import NotificationReceivers, ReceiverKind

__all__ = [
    "ROLES",
    "AgentView",
    "Scenario",
    "World",
    "compress_policy",
    "demo_scenario",
    "example_policies",
]

NAMESPACE = "agents"
SANDBOX_MODEL_KEY = "sk-sandbox-model-key"
"""The loopback model server's API key (it accepts any)."""
MODEL_ENV = "OPENAI_MODEL"
CONTAINER = "agent"
AGENT_LABELS = {
    "app.kubernetes.io/part-of": "support-bot",
    "agentmedic.io/managed": "true",
    "agentmedic.io/tier": "interactive",
}

ROLES = {
    "flaky": "error rate climbs until success collapses: scaled to zero pending review",
    "slow": "p95 latency spikes: one prompt-optimization Job",
    "spendy": "burns its budget on the dearest model: moved one tier cheaper",
    "healthy": "healthy",
    "picky": "burns its budget; the cheaper tier hurts its answers: switched, then reverted",
}
PICKY_LABELS = {"app.kubernetes.io/part-of": "research-bot"}
"""picky-bot's labels: only the verified-budget policy selects it."""


# ---------------------------------------------------------------------- the scenario


@dataclass(frozen=True)
class AgentView:
    """One agent's workload as read from the API server (:meth:`World.agent_view`)."""

    replicas: int
    model: str | None
    states: dict[str, EngineAgentState]
    """The engine's memory of this agent, by policy (the annotation's key suffix)."""


@dataclass
class Scenario:
    """Agents, their scripted behaviour, and the policies to apply."""

    agents: list[AgentSpec]
    roles: dict[str, str]
    policies: list[dict[str, Any]]
    fleet_effects: list[Any] = field(default_factory=list)
    duration: float = 150.0
    """Simulated seconds the scenario needs to play out."""
    outage: tuple[float, float] | None = None
    time_compression: float = 30.0
    """How many times faster than written the policies run: their minimum interval and window
    are divided by it (``AGENTMEDIC_TIME_COMPRESSION``) while the world runs."""
    budgets: list[dict[str, Any]] = field(default_factory=list)
    """Finance's ClusterAgentBudgets and AgentBudgets, applied after the policies."""


def demo_scenario(
    *,
    agents: int = 10,
    duration: float = 150.0,
    factor: float = 30.0,
    pagerduty_url: str | None = None,
    team_budget: bool = False,
) -> Scenario:
    """The demo's fleet: one agent failing, one slow, one burning money, the rest healthy;
    a provider outage for everyone near the end, then recovery.

    Times are simulated seconds; the policies are the examples compressed ``factor`` times
    (5m → 10s). ``duration`` stretches or shrinks the script proportionally. With
    ``team_budget``, finance's ceiling for the whole team (:func:`finance_team_budget`) is set too.
    """
    if agents < 4:
        raise ValueError("the demo needs at least 4 agents (one of each role and one healthy)")
    k = duration / 150.0
    tools = (ToolProfile("search_knowledge_base", latency_s=0.3), ToolProfile("crm", latency_s=0.6))
    base = Behaviour(
        latency_s=2.0, error_rate=0.02, tools=tools, model_latency={"gpt-4o-mini": 0.7}
    )
    specs: list[AgentSpec] = []
    roles: dict[str, str] = {}

    def add(
        name: str,
        role: str,
        model: str = "gpt-4o-mini",
        effects: Iterable[Any] = (),
        behaviour: Behaviour = base,
        labels: dict[str, str] | None = None,
    ) -> None:
        specs.append(
            AgentSpec(
                name,
                NAMESPACE,
                model,
                rate=10.0,
                base=behaviour,
                effects=list(effects),
                replicas=2,
                labels=labels,
            )
        )
        roles[name] = role

    add("flaky-bot", "flaky", "gpt-4o", [ErrorRamp(start=8 * k, ramp=8 * k, to=0.7)])
    add("slow-bot", "slow", "gpt-4o", [LatencySpike(start=8 * k, end=70 * k, latency_s=14.0)])
    add("spendy-bot", "spendy", "gpt-4o", [BudgetBurn(start=0, token_factor=8.0)])
    for i in range(agents - 3):
        add(f"helper-{i + 1}", "healthy")
    # Answers well on gpt-4o, poorly on gpt-4o-mini: its budget downgrade is reverted.
    picky = dataclasses.replace(base, quality={"gpt-4o": 0.9, "gpt-4o-mini": 0.55})
    add(
        "picky-bot", "picky", "gpt-4o", [BudgetBurn(start=0, token_factor=8.0)], picky, PICKY_LABELS
    )
    outage = (80 * k, 100 * k)
    examples = example_policies()
    policies = [
        compress_policy(examples["auto-disable"], factor),
        compress_policy(examples["latency-prompt-optimization"], factor),
        compress_policy(examples["finance-budget"], factor, budget_limit_usd=20.0),
        compress_policy(examples["quality-degradation"], factor, pagerduty_url=pagerduty_url),
        compress_policy(examples["verified-budget"], factor, budget_limit_usd=20.0),
    ]
    return Scenario(
        agents=specs,
        roles=roles,
        policies=policies,
        fleet_effects=[Outage(start=outage[0], end=outage[1])],
        duration=duration,
        outage=outage,
        time_compression=factor,
        budgets=[finance_team_budget(NAMESPACE)] if team_budget else [],
    )


# ---------------------------------------------------------------------- the world


def _deployment(spec: AgentSpec) -> dict[str, Any]:
    own = spec.labels if spec.labels is not None else AGENT_LABELS
    labels = {"app": spec.name, "agent": spec.name, **own}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels},
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": {"app": spec.name}},
            "template": {
                "metadata": {"labels": {"app": spec.name}},
                "spec": {
                    "containers": [
                        {
                            "name": CONTAINER,
                            "image": "ghcr.io/example/agent:1.0",
                            "env": [
                                {"name": MODEL_ENV, "value": spec.model},
                                {"name": "AGENT_NAME", "value": spec.name},
                                {"name": "LOG_LEVEL", "value": "info"},
                            ],
                        },
                        {"name": "log-shipper", "image": "fluent/fluent-bit:3"},
                    ]
                },
            },
        },
    }


def _secrets(namespace: str, receivers: NotificationReceivers) -> list[dict[str, Any]]:
    data = receivers.secret_data()

    def secret(name: str, values: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque",
            "data": {k: _b64(v) for k, v in values.items()},
        }

    return [
        secret("slack-webhook", {"url": data["slack-url"]}),
        secret("pagerduty", {"routing-key": data["pagerduty-routing-key"]}),
        secret("finance-hook", {"url": data["webhook-url"]}),
        secret("team-hook", {"url": data["webhook-url"], "hmac": "sandbox-hmac-key"}),
        secret(API_KEY_SECRET, {"api-key": SANDBOX_MODEL_KEY}),
    ]


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


class World:
    """Everything of :mod:`agentmedic_sandbox.world` started together; :meth:`stop` ends it.

    ``operator`` is ``"thread"`` (the operator in this process), ``"process"`` (an
    ``agentmedic run`` subprocess that :meth:`kill_operator` can SIGKILL and
    :meth:`start_operator` start again) or ``"none"``.

    ``api`` is ``"emulated"`` (an :class:`ApiEmulator`), ``"real"`` (a
    :class:`LocalCluster` started and stopped with the world), a started
    :class:`LocalCluster` to use and leave running, or another server offering the
    emulator's ``start``/``stop``, ``create``/``get``/``list``, ``client_configuration`` and
    ``write_kubeconfig``, started and stopped with the world. ``operator_kubeconfig``
    replaces the admin kubeconfig the operator subprocess gets (e.g. a ServiceAccount
    token's).
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        operator: str = "thread",
        speed: float = 1.0,
        seed: int = 7,
        scrape_interval: timedelta = timedelta(seconds=1),
        operator_env: dict[str, str] | None = None,
        log: Callable[[str], None] | None = None,
        api: Any = "emulated",
        operator_kubeconfig: Path | None = None,
    ) -> None:
        self.scenario = scenario
        self.operator_mode = operator
        self.speed = speed
        self.seed = seed
        self.scrape_interval = scrape_interval
        self.operator_env = operator_env or {}
        self.log = log or (lambda _msg: None)
        # ``emulator`` keeps its name for the tests written against the emulator; another
        # API server offers the same direct-access calls (create/get/url/kubeconfig).
        self.emulator: Any
        self._own_api = True
        if api is None or (isinstance(api, str) and api == "emulated"):
            self.emulator = ApiEmulator(history_limit=2000)
        elif isinstance(api, str) and api == "real":
            self.emulator = LocalCluster()
        elif isinstance(api, LocalCluster):
            self.emulator = api
            self._own_api = False
        elif isinstance(api, str):
            raise ValueError(f"api must be 'emulated', 'real' or a server, not {api!r}")
        else:
            self.emulator = api
        self.real_api = not isinstance(self.emulator, ApiEmulator)
        self.operator_kubeconfig = operator_kubeconfig
        self.receivers = NotificationReceivers()
        self.prometheus: PrometheusServer | None = None
        self.sim: FleetSimulator | None = None
        self._operator_thread: Any = None
        self._operator_proc: subprocess.Popen[bytes] | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="agentmedic-sandbox-")
        self.operator_log = Path(self._tmp.name) / "operator.log"
        self.started_at: float | None = None
        self._stopped = threading.Event()
        self._saved_compression: str | None = None
        self.prompt_jobs: PromptJobRunner | None = None
        self._prompt_factors: dict[tuple[str, str, str], float] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> World:
        # Compressed policies (a 1s interval) must pass the operator's validation and the
        # API server's admission, whose CRD is rendered again with the compressed bounds.
        self._saved_compression = os.environ.get(TIME_COMPRESSION_ENV)
        os.environ[TIME_COMPRESSION_ENV] = f"{self.scenario.time_compression:g}"
        if self._own_api:
            self.emulator.start()
        if isinstance(self.emulator, ApiEmulator):
            self.emulator.apply_crd()
        self.receivers.start()
        namespaces = sorted(
            {a.namespace for a in self.scenario.agents}
            | {p["metadata"]["namespace"] for p in self.scenario.policies}
        )
        if isinstance(self.emulator, LocalCluster):
            self.emulator.install_crd()
            for ns in namespaces:
                self.emulator.ensure_namespace(ns)
            self._wait_for_policy_cache(self.emulator, namespaces[0])
        self.prompt_jobs = PromptJobRunner(
            self.emulator,
            namespaces,
            lambda: self.emulator.write_kubeconfig(Path(self._tmp.name) / "prompt-jobs.kubeconfig"),
            SANDBOX_MODEL_KEY,
            real=self.real_api,
            log=self.log,
        ).start()
        for ns in namespaces:
            for obj in _secrets(ns, self.receivers):
                self.emulator.create(obj)
            self.emulator.create(prompt_cron_job(ns, self.prompt_jobs.base_url))
        for spec in self.scenario.agents:
            self.emulator.create(_deployment(spec))
            self.emulator.create(prompt_config_map(spec.namespace, spec.name))
        what = "Kubernetes control plane" if self.real_api else "API emulator"
        self.log(f"{what} on {self.emulator.url}: {len(self.scenario.agents)} agent Deployments")
        self.sim = FleetSimulator(
            self.scenario.agents,
            seed=self.seed,
            fleet_effects=self.scenario.fleet_effects,
            state=self._agent_state,
        )
        targets = self.sim.scrape_targets()
        self.prometheus = PrometheusServer(
            scrape_targets=targets, scrape_interval=self.scrape_interval
        ).start()
        self.log(
            f"Prometheus {self.prometheus.url} scraping {len(targets)} agents every "
            f"{format_duration(self.scrape_interval)}"
        )
        self.sim.start(speed=self.speed)
        self.started_at = time.monotonic()
        if self.operator_mode != "none":
            self.start_operator()
        for policy in self.scenario.policies:
            self.emulator.create(self._local_channels(policy))
        self.log(f"applied {len(self.scenario.policies)} AgentPolicies")
        for budget in self.scenario.budgets:
            self.emulator.create(budget)
        if self.scenario.budgets:
            self.log(f"applied {len(self.scenario.budgets)} budgets of finance's")
        return self

    @staticmethod
    def _wait_for_policy_cache(cluster: LocalCluster, namespace: str, timeout: float = 30) -> None:
        """Wait until the API server serves AgentPolicies from its watch cache.

        A CRD is Established before its watch cache is: a watch in between is answered 429
        "storage is (re)initializing", which kopf retries but logs at ERROR. A list with
        ``resourceVersion=0`` is served by the same cache, so its 200 says a watch will be.
        """
        path = cluster.resource_path(API_VERSION, KIND, namespace)
        deadline = time.monotonic() + timeout
        while True:
            try:
                cluster.request("GET", path, params={"resourceVersion": "0", "limit": "1"})
                return
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 429 or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)

    def _local_channels(self, policy: dict[str, Any]) -> dict[str, Any]:
        """Point every PagerDuty channel at the local receiver: nothing leaves loopback."""
        out = copy.deepcopy(policy)
        for channel in out["spec"].get("notifications", {}).get("channels", []):
            if "pagerduty" in channel:
                channel["pagerduty"]["url"] = self.receivers.url_for(ReceiverKind.PAGERDUTY)
        return out

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.stop_operator()
        if self.prompt_jobs is not None:
            self.prompt_jobs.stop()
        if self.sim is not None:
            self.sim.close()
        if self.prometheus is not None:
            self.prometheus.stop()
        self.receivers.stop()
        if self._own_api:
            self.emulator.stop()
        self._tmp.cleanup()
        if self._saved_compression is None:
            os.environ.pop(TIME_COMPRESSION_ENV, None)
        else:
            os.environ[TIME_COMPRESSION_ENV] = self._saved_compression

    def __enter__(self) -> World:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ the operator

    def operator_settings(self) -> dict[str, Any]:
        assert self.prometheus is not None
        namespaces = sorted({p["metadata"]["namespace"] for p in self.scenario.policies})
        return {
            "prometheus_url": self.prometheus.url,
            "namespaces": namespaces,
            # a scenario with finance's budgets has a ClusterAgentBudget (the team ceiling)
            "read_cluster_kinds": bool(self.scenario.budgets),
            "peering": "",
            "metrics_port": 0,
            "health_port": 0,
            "log_format": "text",
        }

    def start_operator(self) -> None:
        from agentmedic.operator.settings import load_settings

        flags = self.operator_settings()
        if self.operator_mode == "thread":
            from agentmedic.operator.main import OperatorThread

            settings = load_settings(flags=flags, environ=self.operator_env)
            self._operator_thread = OperatorThread(settings, self.emulator.client_configuration())
            self._operator_thread.start()
        elif self.operator_mode == "process":
            kubeconfig = self.operator_kubeconfig or self.emulator.write_kubeconfig(
                Path(self._tmp.name) / "kubeconfig"
            )
            args = [
                sys.executable,
                "-m",
                "agentmedic.cli",
                "run",
                "--kubeconfig",
                str(kubeconfig),
                "--prometheus",
                flags["prometheus_url"],
                "--namespaces",
                ",".join(flags["namespaces"]),
                *(["--read-cluster-kinds"] if flags.get("read_cluster_kinds") else []),
                "--peering",
                "",
                "--metrics-port",
                "0",
                "--health-port",
                "0",
                "--log-format",
                "text",
            ]
            env = {**os.environ, **self.operator_env}
            with self.operator_log.open("ab") as out:
                self._operator_proc = subprocess.Popen(args, stdout=out, stderr=out, env=env)
        self.log(f"operator started ({self.operator_mode})")

    def kill_operator(self) -> None:
        """SIGKILL the operator subprocess (crash tests)."""
        if self._operator_proc is not None:
            self._operator_proc.kill()
            self._operator_proc.wait()
            self._operator_proc = None

    def stop_operator(self) -> None:
        if self._operator_thread is not None:
            self._operator_thread.stop()
            self._operator_thread = None
        if self._operator_proc is not None:
            self._operator_proc.terminate()
            try:
                self._operator_proc.wait(10)
            except subprocess.TimeoutExpired:
                self._operator_proc.kill()
                self._operator_proc.wait()
            self._operator_proc = None

    @property
    def operator(self) -> Any:
        """The in-process :class:`~agentmedic.operator.app.Operator` (thread mode)."""
        return None if self._operator_thread is None else self._operator_thread.operator

    # ------------------------------------------------------------------ what is there

    def cluster_budget(self, name: str) -> dict[str, Any]:
        """A ClusterAgentBudget as the API server has it ({} when absent)."""
        obj: dict[str, Any] | None = self.emulator.get(
            API_VERSION, "ClusterAgentBudget", None, name
        )
        return obj or {}

    def elapsed(self) -> float:
        return 0.0 if self.started_at is None else (time.monotonic() - self.started_at) * self.speed

    def deployment(self, name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
        obj: dict[str, Any] | None = self.emulator.get("apps/v1", "Deployment", namespace, name)
        assert obj is not None, f"deployment {namespace}/{name} is gone"
        return obj

    def replicas(self, name: str, namespace: str = NAMESPACE) -> int:
        return int(self.deployment(name, namespace)["spec"].get("replicas", 1))

    def model(self, name: str, namespace: str = NAMESPACE) -> str | None:
        for container in self.deployment(name, namespace)["spec"]["template"]["spec"]["containers"]:
            if container["name"] == CONTAINER:
                for var in container.get("env", []):
                    if var["name"] == MODEL_ENV:
                        return str(var.get("value"))
        return None

    def agent_view(self, name: str, namespace: str = NAMESPACE) -> AgentView:
        """The agent's workload as the operator left it, read once: replicas, model and the
        engine's memory per policy (the ``agentmedic.io/state.*`` annotations)."""
        obj = self.deployment(name, namespace)
        model = _model_env(obj)
        states: dict[str, EngineAgentState] = {}
        for key, raw in (obj["metadata"].get("annotations") or {}).items():
            if not key.startswith(STATE_PREFIX):
                continue
            try:
                states[key.removeprefix(STATE_PREFIX)] = EngineAgentState.from_dict(json.loads(raw))
            except (ValueError, TypeError, KeyError, AttributeError):
                continue  # a half-written or foreign annotation says nothing about rules
        return AgentView(
            replicas=int(obj["spec"].get("replicas", 1)),
            model=None if model is None else str(model),
            states=states,
        )

    def write_kubeconfig(self, path: Path | None = None) -> Path:
        """A kubeconfig for this world's API server (namespace ``agents``), readable only by
        its owner; by default in the world's own directory, removed by :meth:`stop`."""
        target = path or Path(self._tmp.name) / "kubeconfig"
        if isinstance(self.emulator, ApiEmulator):
            config = self.emulator.kubeconfig_dict(namespace=NAMESPACE)
        else:
            config = self.emulator.kubeconfig_dict()
            for context in config.get("contexts", []):
                context.setdefault("context", {})["namespace"] = NAMESPACE
        target.touch(mode=0o600)
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        return target

    def _list(self, api_version: str, kind: str, namespace: str) -> list[dict[str, Any]]:
        if isinstance(self.emulator, LocalCluster):
            return self.emulator.list_objects(api_version, kind, namespace)
        return list(self.emulator.list(api_version, kind, namespace))

    def jobs(self, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
        return self._list("batch/v1", "Job", namespace)

    def events(self, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
        return self._list("v1", "Event", namespace)

    def policy(self, name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
        obj: dict[str, Any] | None = self.emulator.get(
            "agentmedic.io/v1alpha1", "AgentPolicy", namespace, name
        )
        assert obj is not None
        return obj

    def pages(self, state: str | None = None) -> list[dict[str, Any]]:
        """PagerDuty events received (``trigger``/``resolve``)."""
        out = [r.json() for r in self.receivers.accepted(ReceiverKind.PAGERDUTY)]
        return [e for e in out if state is None or e.get("event_action") == state]

    def slack_messages(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.receivers.accepted(ReceiverKind.SLACK)]

    def wait_until(
        self, predicate: Callable[[], bool], *, timeout: float, what: str, poll: float = 0.5
    ) -> None:
        """Poll ``predicate`` until true; raise ``TimeoutError`` naming ``what`` otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(poll)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")

    def _agent_state(self, namespace: str, name: str) -> AgentState | None:
        obj = self.emulator.get("apps/v1", "Deployment", namespace, name)
        if obj is None:
            return AgentState(model="", replicas=0)
        model = _model_env(obj)
        return AgentState(
            model=str(model or ""),
            replicas=int(obj["spec"].get("replicas", 1)),
            latency_factor=self._prompt_factor(obj),
        )

    def _prompt_factor(self, deployment: dict[str, Any]) -> float:
        """The agent's speed-up from its live prompt, read again only when agentmedic's pod
        template stamp (``agentmedic.io/prompt-version``) changes."""
        meta = deployment["metadata"]
        template = deployment["spec"]["template"].get("metadata") or {}
        version = (template.get("annotations") or {}).get(PROMPT_TEMPLATE_ANNOTATION, "")
        key = (meta["namespace"], meta["name"], version)
        if key not in self._prompt_factors:
            cm = self.emulator.get("v1", "ConfigMap", meta["namespace"], f"{meta['name']}-prompt")
            prompt = ((cm or {}).get("data") or {}).get(PROMPT_KEY)
            self._prompt_factors[key] = latency_factor(deployment, prompt)
        return self._prompt_factors[key]


def _model_env(deployment: dict[str, Any]) -> Any:
    """The agent container's model variable as written (the last one, if set twice)."""
    model = None
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        if container["name"] == CONTAINER:
            for var in container.get("env", []):
                if var["name"] == MODEL_ENV:
                    model = var.get("value")
    return model
