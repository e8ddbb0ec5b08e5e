"""``agentmedic demo``: the whole loop on a laptop, no cluster needed.

Runs :class:`agentmedic_sandbox.world.World`: the real operator, a real Prometheus and
real notification code against a simulated fleet and either the local Kubernetes control
plane (``--api real``, the default when ``make k8s`` has built its binaries) or the
in-process API emulator (``--api emulated``). A live view
shows each agent's state and a feed of what agentmedic does; the summary at the end says
what was done and why. Exit status 0 only when every expected remediation happened, so
the demo doubles as a smoke test.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from agentmedic.actions.events import COMPONENT
from agentmedic.cli._errors import EXIT_USAGE, fail

EXPECTED = (
    ("flaky", "one agent disabled for low success"),
    ("spendy", "one agent moved to a cheaper model for budget"),
    ("slow", "one prompt-optimization Job"),
    ("systemic", "the provider outage paged once, nobody disabled"),
    ("resolved", "resolved notifications after recovery"),
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="watch agentmedic heal a simulated fleet (no cluster needed)",
        description="Start an embedded sandbox on loopback (an emulated Kubernetes API, a "
        "simulated fleet instrumented with agentmedic.instrument, a real Prometheus, "
        "Slack/PagerDuty-shaped receivers) and the real operator with the example policies, "
        "time-compressed. Exits 0 when every expected remediation happened, 1 when one "
        "did not, 2 for bad arguments or a missing Prometheus.",
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

    def poll(self) -> list[str]:
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
            new.append(f"{_clock(w)} {event['reason']}: {event['message'][:160]}")
        received = w.receivers.accepted()
        for r in received[self.seen_messages :]:
            body = r.json()
            if "event_action" in body:
                text = f"{body['event_action']} {body.get('payload', {}).get('summary', '')}"
            elif "text" in body:
                text = body["text"]
            else:
                text = body.get("summary") or body.get("state", "")
            new.append(f"{_clock(w)} → {r.kind.value}: {str(text)[:150]}")
        self.seen_messages = len(received)
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
        systemic = [p for p in w.pages() if ":*:" in p.get("dedup_key", "")]
        triggers = {p["dedup_key"] for p in systemic if p["event_action"] == "trigger"}
        disabled = [n for n, r in w.scenario.roles.items() if r != "flaky" and w.replicas(n) == 0]
        if "systemic" not in self.met and len(triggers) == 1 and not disabled:
            self.met["systemic"] = "outage paged once for the fleet; nobody disabled"
        if "resolved" not in self.met and any(p["event_action"] == "resolve" for p in systemic):
            self.met["resolved"] = "resolved sent when the outage ended"
        if disabled:
            self.met.pop("systemic", None)


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


def _agent_table(world: Any, metrics: dict[str, dict[str, float | None]]) -> Any:
    from rich.table import Table

    table = Table(expand=True, title="agents (namespace agents)")
    for col in ("agent", "scripted as", "replicas", "model", "success", "p95", "spend", "state"):
        table.add_column(col)

    def show(value: float | None, fmt: str, scale: float = 1.0) -> str:
        return "-" if value is None else format(value / scale, fmt)

    for spec in world.scenario.agents:
        m = metrics.get(spec.name, {})
        replicas = world.replicas(spec.name)
        model = world.model(spec.name) or "?"
        state = "[green]healthy[/green]"
        if replicas == 0:
            state = "[red]disabled[/red]"
        elif model != spec.model:
            state = "[yellow]downgraded[/yellow]"
        table.add_row(
            spec.name,
            world.scenario.roles.get(spec.name, ""),
            str(replicas),
            model,
            show(m.get("success"), ".0%"),
            show(m.get("p95"), ".1f", 1000) + ("s" if m.get("p95") is not None else ""),
            ("$" if m.get("cost") is not None else "") + show(m.get("cost"), ".2f"),
            state,
        )
    return table


def _view(world: Any, tracker: Tracker, metrics: dict[str, dict[str, float | None]]) -> Any:
    from rich.console import Group
    from rich.panel import Panel

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
        for key, label in EXPECTED
    )
    feed = "\n".join(tracker.feed[-12:]) or "(waiting for the first evaluation)"
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
    import logging
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
    handler = logging.FileHandler(log_path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    scenario = demo_scenario(agents=args.agents, duration=args.duration)
    ui = not args.no_ui and sys.stdout.isatty()
    lines: list[str] = []
    world = World(scenario, seed=args.seed, log=(lines.append if ui else _print), api=api)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
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
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        world.stop()
        return 130
    finally:
        world.stop()
    code = _summary(world, tracker)
    print(f"operator log: {log_path}")
    return code


def _finished(world: Any, tracker: Tracker, deadline: float) -> bool:
    return len(tracker.met) == len(EXPECTED) or world.elapsed() > deadline


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
            live.update(_view(world, tracker, metrics))
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
            states = ", ".join(
                f"{a.name}={world.replicas(a.name)}x{world.model(a.name)}"
                for a in world.scenario.agents[:4]
            )
            _print(
                f"{_clock(world)} progress: {len(tracker.met)}/{len(EXPECTED)} expected; "
                f"{states}, …"
            )
        time.sleep(0.5)


def _summary(world: Any, tracker: Tracker) -> int:
    from rich.console import Console

    console = Console()
    console.print("\n[bold]What agentmedic did[/bold]")
    for key, label in EXPECTED:
        if key in tracker.met:
            console.print(f"  [green]✔[/green] {label}: {tracker.met[key]}")
        else:
            console.print(f"  [red]✘[/red] {label}: did not happen")
    ok = len(tracker.met) == len(EXPECTED)
    console.print(
        "\nEvery remediation is recorded on the workload (agentmedic.io/* annotations) and "
        "undone with `agentmedic restore NAMESPACE/NAME`."
    )
    console.print("[green]demo passed[/green]" if ok else "[red]demo failed[/red]")
    return 0 if ok else 1
