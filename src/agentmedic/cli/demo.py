"""``agentmedic demo``: the whole loop on a laptop, no cluster needed.

Runs :class:`agentmedic_sandbox.world.World`: the real operator, a real Prometheus and
real notification code against a simulated fleet and either the local Kubernetes control
plane (``--api real``, the default when ``make k8s`` has built its binaries) or the
in-process API emulator (``--api emulated``). A live view
shows each agent's rule state (pending, firing, systemic, disabled, downgraded, no data)
and a feed of what agentmedic does, in plain text; the summary at the end says what was
done and why. Exit status 0 only when every expected remediation happened, so the demo
doubles as a smoke test.

``--keep`` leaves the sandbox running after the summary and prints a kubeconfig for it, so
that ``agentmedic status``, ``agentmedic restore`` and kubectl can be tried on it; Ctrl-C
(or SIGTERM) then stops it, and the exit status is still the self-check's (0 or 1). An
interruption before the summary exits 130.

Every feed line is written in full to the log (``agentmedic-demo.log`` in the temporary
directory); the live view wraps it at words and ellipsizes it at a word when it is longer
than two lines.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from agentmedic.actions.events import COMPONENT
from agentmedic.cli._errors import EXIT_INTERRUPTED, EXIT_USAGE, fail

# Each feed line in full: the screen may ellipsize it, the log never does.
_feed_log = logging.getLogger("agentmedic.demo.feed")

EXPECTED = (
    ("flaky", "one agent disabled for low success"),
    ("spendy", "one agent moved to a cheaper model for budget"),
    ("slow", "one prompt-optimization Job"),
    ("prompt", "its shorter prompt rolled out, p95 back under the threshold, verified"),
    ("systemic", "the provider outage paged once, nobody disabled"),
    ("resolved", "resolved notifications after recovery"),
    ("reverted", "a budget downgrade that hurt quality, reverted"),
)
TEAM_EXPECTED = ("team", "finance's team ceiling (a ClusterAgentBudget, not a policy) reached")


def expected(world: Any) -> tuple[tuple[str, str], ...]:
    """What the self-check waits for: the remediations, and the team ceiling when the
    scenario has finance's budgets."""
    return (*EXPECTED, TEAM_EXPECTED) if getattr(world.scenario, "budgets", None) else EXPECTED


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="watch agentmedic heal a simulated fleet (no cluster needed)",
        description="Start an embedded sandbox on loopback (a Kubernetes API: the local "
        "control plane where `make k8s` has built it, else an in-process emulator; a "
        "simulated fleet instrumented with agentmedic.instrument, a real Prometheus, "
        "Slack/PagerDuty-shaped receivers) and the real operator with the example policies, "
        "time-compressed. Exits 0 when every expected remediation happened, 1 when one "
        "did not, 2 for bad arguments or a missing Prometheus, 130 when interrupted before "
        "the summary.",
    )
    p.add_argument(
        "--duration", type=float, default=150.0, help="seconds the scenario takes (default 150)"
    )
    p.add_argument("--agents", type=int, default=10, help="agents in the fleet (default 10, min 4)")
    p.add_argument(
        "--no-ui", action="store_true", help="plain progress lines instead of a live view"
    )
    p.add_argument("--seed", type=int, default=7, help="random seed of the simulation")
    p.add_argument(
        "--keep",
        action="store_true",
        help="after the summary, keep the sandbox running and print a kubeconfig for it, so "
        "that `agentmedic status`, `agentmedic restore` and kubectl can be tried on it; "
        "Ctrl-C stops it (the exit status stays the self-check's: 0 passed, 1 failed)",
    )
    p.add_argument(
        "--api",
        choices=("real", "emulated"),
        default=None,
        help="the Kubernetes API: 'real' starts kube-apiserver, etcd, the controllers and kwok "
        "on loopback (built by `make k8s`), 'emulated' the in-process emulator (default: real "
        "when the binaries are built, else emulated)",
    )
    p.set_defaults(func=run)


@dataclass
class Tracker:
    """What the demo has seen so far: the feed, and which expectations are met."""

    world: Any
    feed: list[str] = field(default_factory=list)
    seen_events: set[str] = field(default_factory=set)
    seen_messages: int = 0
    met: dict[str, str] = field(default_factory=dict)
    p95_checked: float = 0.0

    def poll(self) -> list[str]:
        """New feed lines since the last poll, in full and in plain text (also logged)."""
        new: list[str] = []
        w = self.world
        for event in sorted(w.events(), key=lambda e: e["metadata"].get("creationTimestamp", "")):
            uid = event["metadata"].get("uid") or event["metadata"]["name"]
            if uid in self.seen_events:
                continue
            self.seen_events.add(uid)
            involved = event["involvedObject"]
            if involved.get("kind") == "AgentPolicy":
                continue  # the same story is on the workload
            if event.get("reportingComponent") != COMPONENT:
                continue  # a real cluster's controllers tell their own story
            new.append(f"{_clock(w)} {event['reason']}: {event['message']}")
        received = w.receivers.accepted()
        for r in received[self.seen_messages :]:
            new.append(f"{_clock(w)} → {r.kind.value}: {w.receivers.describe(r)}")
        self.seen_messages = len(received)
        for line in new:
            _feed_log.info("%s", line)
        self.feed.extend(new)
        self._check()
        return new

    def _check(self) -> None:
        w = self.world
        roles = {role: name for name, role in w.scenario.roles.items()}
        if "flaky" not in self.met and w.replicas(roles["flaky"]) == 0:
            self.met["flaky"] = f"{roles['flaky']} scaled to zero (low success), pending review"
        if "spendy" not in self.met and w.model(roles["spendy"]) != _spec(w, roles["spendy"]).model:
            self.met["spendy"] = (
                f"{roles['spendy']} moved {_spec(w, roles['spendy']).model} → "
                f"{w.model(roles['spendy'])} (budget)"
            )
        jobs = w.jobs()
        if "slow" not in self.met and jobs:
            self.met["slow"] = f"Job {jobs[0]['metadata']['name']} for {roles['slow']}"
        if "slow" in self.met and "prompt" not in self.met:
            self._check_prompt(roles["slow"])
        systemic = [p for p in w.pages() if ":*:" in p.get("dedup_key", "")]
        triggers = {p["dedup_key"] for p in systemic if p["event_action"] == "trigger"}
        disabled = [n for n, r in w.scenario.roles.items() if r != "flaky" and w.replicas(n) == 0]
        if "systemic" not in self.met and len(triggers) == 1 and not disabled:
            self.met["systemic"] = "outage paged once for the fleet; nobody disabled"
        if "resolved" not in self.met and any(p["event_action"] == "resolve" for p in systemic):
            self.met["resolved"] = "resolved sent when the outage ended"
        if disabled:
            self.met.pop("systemic", None)
        if "reverted" not in self.met and "picky" in roles:
            line = reverted_line(w, roles["picky"])
            if line is not None:
                self.met["reverted"] = line
        for budget in getattr(w.scenario, "budgets", None) or []:
            name = budget["metadata"]["name"]
            status = w.cluster_budget(name).get("status") or {}
            if "team" not in self.met and status.get("stage"):
                spent = status.get("spendUSD", 0.0)
                self.met["team"] = (
                    f"ClusterAgentBudget {name} reached stage {status['stage']}: "
                    f"${spent:,.2f} of ${budget['spec']['limitUSD']:,.2f}; finance told on Slack"
                )

    def _check_prompt(self, agent: str) -> None:
        """Met when agentmedic rolled the slow agent's shorter prompt out and its p95
        (asked of Prometheus at most every 2 s) is back under the rule's threshold."""
        from agentmedic.actions.prompt_record import parse_prompt
        from agentmedic.api.units import format_latency_ms

        w = self.world
        rolled = parse_prompt(w.deployment(agent)["metadata"].get("annotations") or {})
        if rolled is None or time.monotonic() - self.p95_checked < 2:
            return
        self.p95_checked = time.monotonic()
        threshold = _latency_threshold(w)
        p95 = _metrics(w).get(agent, {}).get("p95")
        if p95 is None or threshold is None or p95 >= threshold:
            return
        cm = (
            w.emulator.get(
                "v1", "ConfigMap", w.deployment(agent)["metadata"]["namespace"], rolled.config_map
            )
            or {}
        )
        data = cm.get("data") or {}
        sizes = f"{len(data.get(rolled.previous, ''))} → {len(data.get(rolled.key, ''))} characters"
        status = w.policy("latency-spike").get("status") or {}
        verified = any(
            a["outcome"] == "Verified" and a["agent"].endswith(f"/{agent}")
            for a in status.get("recentActions", [])
        )
        if not verified:
            return
        self.met["prompt"] = (
            f"{agent} runs {rolled.version} ({sizes}); p95 {format_latency_ms(p95)}, under "
            f"{format_latency_ms(threshold)}; verified on probation"
        )


def reverted_line(world: Any, name: str) -> str | None:
    """The summary line once the agent's budget downgrade was reverted on probation and
    finance was told (the verified-budget policy's status and its webhook channel)."""
    import re

    status = world.policy("verified-budget").get("status") or {}
    lines = [a for a in status.get("recentActions", []) if a["agent"].endswith(f"/{name}")]
    if not any(a["outcome"] == "Reverted" for a in lines):
        return None
    told = [r for r in world.receivers.accepted("webhook") if b"reverted" in r.body]
    if not told:
        return None
    regressed = next((a["reason"] for a in lines if a["outcome"] == "Regressed"), "")
    found = re.search(r"quality_score \S+ → \S+", regressed)
    why = f" ({found.group(0)})" if found else ""
    return (
        f"{name} moved to a cheaper tier for budget, its answers got worse{why}: "
        "reverted, finance told"
    )


def _latency_threshold(world: Any) -> float | None:
    """The threshold of the latency rule that starts prompt optimization, in ms."""
    for policy in world.scenario.policies:
        for rule in policy["spec"].get("rules", []):
            if any("promptOptimization" in a for a in rule.get("actions", [])):
                for condition in rule.get("all", []) + rule.get("any", []):
                    if condition.get("metric") == "latency_p95_ms":
                        return float(condition["value"])
    return None


def _spec(world: Any, name: str) -> Any:
    return next(a for a in world.scenario.agents if a.name == name)


def _clock(world: Any) -> str:
    return f"[{world.elapsed():5.1f}s]"


def _metrics(world: Any) -> dict[str, dict[str, float | None]]:
    """success rate, p95 latency and cost per agent, through the product's metrics layer."""
    import asyncio

    from agentmedic.engine.series import AgentId, SeriesKey
    from agentmedic.metrics import BackendConfig, PrometheusBackend, fetch_samples

    agents = [AgentId(a.namespace, a.name) for a in world.scenario.agents]
    keys = {
        "success": SeriesKey("success_rate", None, timedelta(seconds=30)),
        "p95": SeriesKey("latency_p95_ms", None, timedelta(seconds=20)),
        "cost": SeriesKey("cost_usd", None, timedelta(hours=1)),
    }

    async def fetch() -> Any:
        async with PrometheusBackend(BackendConfig(url=world.prometheus.url, retries=0)) as backend:
            table, _ = await fetch_samples(backend, {k: agents for k in keys.values()}, _now())
            return table

    try:
        table = asyncio.run(fetch())
    except Exception:
        return {}
    return {a.name: {n: table.get(a, {}).get(k) for n, k in keys.items()} for a in agents}


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


# What each role's script does (the outage hits every agent): the column says what was
# scripted, the rule state what the operator made of it.
_SCRIPTED = {
    "flaky": "errors ramp up",
    "slow": "latency spike",
    "spendy": "burns budget",
    "healthy": "no fault",
    "picky": "budget; worse on cheaper tier",
}


def rule_state(view: Any, spec_model: str, metrics: dict[str, float | None]) -> tuple[str, str]:
    """What the operator thinks of one agent, from its workload (replicas, model, the
    engine's memory per policy): ``(text, rich style)``.

    Disabled and downgraded first, then each rule that is systemic (part of a fleet-wide
    outage: paged, nobody disabled), firing or pending. An agent none of whose rules
    breaches reads ``clear``, or ``no data`` when its rules are held for lack of numbers.
    """
    parts: list[str] = []
    style = "green"
    shown_rules: set[str] = set()
    states = list(view.states.values())
    disabled = next((s.disabled for s in states if s.disabled is not None), None)
    if disabled is not None and disabled.dry_run:
        parts.append(f"would disable ({disabled.rule}, dry run)")
        style = "yellow"
    elif view.replicas == 0:
        parts.append(f"disabled ({disabled.rule})" if disabled is not None else "disabled")
        style = "red"
    if disabled is not None:
        shown_rules.add(disabled.rule)
    downgraded = next((s.downgraded for s in states if s.downgraded is not None), None)
    if view.model is not None and view.model != spec_model:
        why = f", {downgraded.rule}" if downgraded is not None else ""
        parts.append(f"downgraded ({spec_model} → {view.model}{why})")
        style = "yellow" if style == "green" else style
        if downgraded is not None:
            shown_rules.add(downgraded.rule)
    for state in states:
        for name, rs in sorted(state.rules.items()):
            if name in shown_rules or not (rs.pending or rs.firing):
                continue
            shown_rules.add(name)
            if rs.systemic:
                parts.append(f"systemic: {name}")
                style = "magenta" if style in ("green", "yellow") else style
            elif rs.firing:
                parts.append(f"firing: {name}")
                style = "red"
            else:
                parts.append(f"pending: {name}")
                style = "yellow" if style == "green" else style
    if parts:
        return " · ".join(parts), style
    if any(s.no_data_since is not None for s in states) or (
        metrics and all(v is None for v in metrics.values())
    ):
        return "no data (rules held)", "dim"
    return "clear", "green"


def _agent_table(world: Any, metrics: dict[str, dict[str, float | None]]) -> Any:
    from rich.table import Table
    from rich.text import Text

    from agentmedic.api.units import format_latency_ms, format_percent, format_usd

    table = Table(expand=True, title="agents (namespace agents)")
    for col in ("agent", "scripted as", "replicas", "model", "success", "p95", "spend"):
        table.add_column(col, no_wrap=True)
    table.add_column("rule state", ratio=1)

    def show(value: float | None, fmt: Any) -> str:
        return "-" if value is None else str(fmt(value))

    for spec in world.scenario.agents:
        m = metrics.get(spec.name, {})
        view = world.agent_view(spec.name)
        text, style = rule_state(view, spec.model, m)
        if not m and text == "clear":
            text, style = "waiting for metrics", "dim"  # nothing fetched yet
        role = world.scenario.roles.get(spec.name, "")
        table.add_row(
            spec.name,
            _SCRIPTED.get(role, role),
            str(view.replicas),
            view.model or "?",
            show(m.get("success"), format_percent),
            show(m.get("p95"), format_latency_ms),
            show(m.get("cost"), format_usd),
            Text(text, style=style),
        )
    return table


def ellipsize(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else cut at the last word that fits and
    ended with `` …`` (a single word longer than the limit is cut where it must be)."""
    if len(text) <= limit:
        return text
    room = max(limit - 2, 1)
    cut = text.rfind(" ", 0, room + 1)
    head = text[:cut] if cut > 0 else text[:room]
    return head.rstrip(" ,;:—-") + " …"


def _view(
    world: Any,
    tracker: Tracker,
    metrics: dict[str, dict[str, float | None]],
    console_width: int | None = None,
) -> Any:
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    outage = world.scenario.outage
    phase = ""
    if outage and outage[0] <= world.elapsed() < outage[1]:
        phase = "  [bold red]provider outage in progress[/bold red]"
    header = (
        f"[bold]agentmedic demo[/bold] — {'real' if world.real_api else 'simulated'} "
        "Kubernetes API, simulated agents; real operator, "
        f"Prometheus and notifications · {world.elapsed():.0f}s / {world.scenario.duration:.0f}s"
        f"{phase}"
    )
    done = "\n".join(
        f"{'[green]✔[/green]' if key in tracker.met else '[dim]…[/dim]'} {label}"
        for key, label in expected(world)
    )
    # Two lines of the panel per entry at most; rich wraps them at words.
    width = max(40, (console_width or 100) - 4)
    feed = Text("\n".join(ellipsize(line, 2 * width) for line in tracker.feed[-12:]))
    if not tracker.feed:
        feed = Text("(waiting for the first evaluation)")
    return Group(
        header,
        _agent_table(world, metrics),
        Panel(feed, title="actions and notifications"),
        Panel(done, title="expected"),
    )


SANDBOX_MISSING = (
    "the sandbox is not installed ({missing}); from a source checkout, "
    "`pip install -e '.[sandbox]'` (or `make demo`) installs it"
)
"""The one line ``agentmedic demo`` prints where agentmedic_sandbox cannot be imported (the
operator's image leaves it out)."""


def run(args: argparse.Namespace) -> int:
    if not 4 <= args.agents <= 200:
        return fail("demo", "--agents must be between 4 and 200", EXIT_USAGE)
    if not 90 <= args.duration <= 3600:
        return fail("demo", "--duration must be between 90 and 3600 seconds", EXIT_USAGE)
    import tempfile
    from pathlib import Path

    # The only place the operator's package imports the sandbox (a contract in pyproject.toml).
    try:
        from agentmedic_sandbox.cluster import ClusterStartError, k8s_bin_dir, k8s_binaries_built
        from agentmedic_sandbox.prometheus import PrometheusNotInstalledError
        from agentmedic_sandbox.world import World, demo_scenario
    except ImportError as exc:
        return fail("demo", SANDBOX_MISSING.format(missing=exc), EXIT_USAGE)

    api = args.api or ("real" if k8s_binaries_built() else "emulated")
    if api == "real" and not k8s_binaries_built():
        print(
            f"agentmedic demo: --api real needs the control-plane binaries in {k8s_bin_dir()}; "
            "build them with `make k8s` or use --api emulated",
            file=sys.stderr,
        )
        return 2

    # The operator's own log goes to a file: the screen is for the story.
    log_path = Path(tempfile.gettempdir()) / "agentmedic-demo.log"
    _log_to(log_path)
    scenario = demo_scenario(agents=args.agents, duration=args.duration, team_budget=True)
    ui = not args.no_ui and sys.stdout.isatty()
    lines: list[str] = []
    world = World(scenario, seed=args.seed, log=(lines.append if ui else _print), api=api)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    code: int | None = None
    try:
        try:
            world.start()
        except ClusterStartError as exc:
            return fail(
                "demo",
                f"the local control plane did not start ({exc}); "
                "`agentmedic demo --api emulated` runs without it",
                EXIT_USAGE,
            )
        except PrometheusNotInstalledError as exc:
            return fail(
                "demo",
                f"{exc} Then run `make demo` again (it installs it on Debian/Ubuntu).",
                EXIT_USAGE,
            )
        tracker = Tracker(world)
        deadline = scenario.duration + 30
        if ui:
            _run_live(world, tracker, deadline)
        else:
            _run_plain(world, tracker, deadline)
        code = _summary(world, tracker)
        if args.keep:
            _keep(world, tracker)
    except KeyboardInterrupt:
        if code is None:
            print("interrupted; cleaning up", file=sys.stderr)
    finally:
        # A second Ctrl-C while the servers stop would leave them half-stopped.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        world.stop()
        logging.getLogger(__name__).info("sandbox stopped")
    print(f"operator log: {log_path}", flush=True)
    return EXIT_INTERRUPTED if code is None else code


def _log_to(path: Any) -> None:
    """Everything the operator and the sandbox log, to ``path``; the screen is for the story.

    Client libraries log every request at INFO (the Kubernetes API is polled many times a
    second, and a request URL may carry a webhook's token), and APScheduler warns of each
    run it skips while a cycle still runs, which the operator already counts and reports
    itself (``configure_logging`` quiets the same loggers for ``agentmedic run``).
    """
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    for noisy in ("httpx", "httpcore", "urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for noisy in ("apscheduler.scheduler", "apscheduler.executors"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _keep(world: Any, tracker: Tracker) -> None:
    """Leave the sandbox running, with a kubeconfig to try the CLI and kubectl on it,
    printing what the operator does meanwhile, until Ctrl-C (KeyboardInterrupt)."""
    import shutil

    kubeconfig = world.write_kubeconfig()
    roles = {role: name for name, role in world.scenario.roles.items()}
    disabled = roles.get("flaky", "NAME")
    _print("")
    _print("The sandbox keeps running; Ctrl-C stops it.")
    _print(f"kubeconfig: {kubeconfig}")
    _print("Try:")
    _print(f"  agentmedic status --kubeconfig {kubeconfig}")
    _print(f"  agentmedic restore deployment/{disabled} -n agents --kubeconfig {kubeconfig}")
    kubectl = "kubectl" if shutil.which("kubectl") else "kubectl (not installed here)"
    _print(f"  {kubectl} --kubeconfig {kubeconfig} get agentpolicies,deployments -n agents")
    while True:
        for line in tracker.poll():
            _print(line)
        time.sleep(1.0)


def _finished(world: Any, tracker: Tracker, deadline: float) -> bool:
    return len(tracker.met) == len(expected(world)) or world.elapsed() > deadline


def _run_live(world: Any, tracker: Tracker, deadline: float) -> None:
    from rich.live import Live

    metrics: dict[str, dict[str, float | None]] = {}
    with Live(_view(world, tracker, metrics), refresh_per_second=2, screen=False) as live:
        last = 0.0
        while not _finished(world, tracker, deadline):
            tracker.poll()
            if time.monotonic() - last > 2:
                metrics = _metrics(world)
                last = time.monotonic()
            live.update(_view(world, tracker, metrics, live.console.width))
            time.sleep(0.5)


def _print(text: str) -> None:
    print(text, flush=True)


def _run_plain(world: Any, tracker: Tracker, deadline: float) -> None:
    cluster = (
        "a real Kubernetes control plane with kwok's fake nodes"
        if world.real_api
        else "an emulated Kubernetes API"
    )
    _print(
        f"agentmedic demo: {cluster} and simulated agents; the operator, Prometheus and "
        "notifications are real"
    )
    last_status = 0.0
    while not _finished(world, tracker, deadline):
        for line in tracker.poll():
            _print(line)
        if world.elapsed() - last_status >= 15:
            last_status = world.elapsed()
            _print(
                f"{_clock(world)} progress: {len(tracker.met)}/{len(expected(world))} expected; "
                f"{_states(world)}"
            )
        time.sleep(0.5)


def _states(world: Any) -> str:
    """Agents grouped by rule state, those with one first: ``flaky-bot: disabled
    (low-success); 8 agents systemic: low-success (slow-bot, helper-1, …); 1 clear``."""
    groups: dict[str, list[str]] = {}
    for spec in world.scenario.agents:
        text, _ = rule_state(world.agent_view(spec.name), spec.model, {})
        groups.setdefault(text, []).append(spec.name)
    clear = groups.pop("clear", [])
    shown: list[str] = []
    for text, names in groups.items():
        if len(names) == 1:
            shown.append(f"{names[0]}: {text}")
        else:
            listed = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
            shown.append(f"{len(names)} agents {text} ({listed})")
    if clear:
        shown.append(f"{len(clear)} clear" if shown else f"all {len(clear)} agents clear")
    return "; ".join(shown)


def _summary(world: Any, tracker: Tracker) -> int:
    from rich.console import Console

    # soft_wrap: a line longer than the terminal (or than 80 columns in a pipe) is never
    # broken in the middle by the console; the terminal wraps it.
    console = Console(soft_wrap=True)
    console.print("\n[bold]What agentmedic did[/bold]")
    for key, label in expected(world):
        if key in tracker.met:
            console.print(f"  [green]✔[/green] {label}: {tracker.met[key]}")
        else:
            console.print(f"  [red]✘[/red] {label}: did not happen")
    ok = len(tracker.met) == len(expected(world))
    console.print(
        "\nEvery remediation is recorded on the workload (agentmedic.io/* annotations) and "
        "undone with `agentmedic restore deployment/NAME -n NAMESPACE`."
    )
    console.print("[green]demo passed[/green]" if ok else "[red]demo failed[/red]")
    return 0 if ok else 1
