"""The backtest plot's reference pictures in docs/images, from real Prometheus history.

Three scripted fleets (:mod:`agentmedic.backtest.scenario`) are backfilled into one
Prometheus on loopback, each in its own namespace, and ``agentmedic backtest ... --plot``
draws each with its policy::

    .venv/bin/python -m tests.docs.backtest_images docs/images

- ``backtest-quality.png``: error rate AND p95 latency; ``support-2`` degrades on both and
  is scaled to zero, ``support-4`` degrades the same way later and is held by
  ``maxDisabledPercent`` (``support-5`` is only slow: the rule needs both);
- ``backtest-outage.png``: ``billing`` fails alone and is scaled to zero; then a provider
  outage fails everyone: a systemic episode, one fleet page, nobody disabled;
- ``backtest-budget.png``: ``spender`` burns $0.40 a minute against a $50 daily budget;
  the soft stage (80%) switches its model, the hard stage scales it to zero, and the
  history after the switch (to $288 by noon) is what it spent without the policy.
"""

from __future__ import annotations

import sys
import tempfile
import textwrap
from contextlib import redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

from agentmedic.backtest.scenario import SLOW_LATENCY, Phase, Scenario, ScriptedAgent, splice
from agentmedic.cli.main import main
from agentmedic_sandbox.prometheus import PrometheusServer, Series, openmetrics_text

START = datetime(2024, 3, 5, 0, 0, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)

_CHANNELS = """\
  notifications:
    channels:
      - {name: oncall-slack, slack: {webhookSecretRef: {name: slack, key: url}}}
      - {name: pagerduty, pagerduty: {routingKeySecretRef: {name: pd, key: key}}}
      - {name: finance, webhook: {urlSecretRef: {name: fin, key: url}}}
"""


@dataclass(frozen=True)
class Picture:
    """One reference picture: its file, policy, fleet and range."""

    file: str
    policy: str
    scenario: Scenario

    @property
    def range(self) -> tuple[datetime, datetime]:
        return self.scenario.start, self.scenario.end


def _quality() -> Picture:
    ns = "quality"
    sick = {"error_ratio": 0.3, "latency": SLOW_LATENCY}
    agents = [ScriptedAgent(f"support-{i}", (Phase(),), ns) for i in (1, 3, 6)]
    agents += [
        ScriptedAgent("support-2", (Phase(), Phase(at=H, **sick)), ns),  # type: ignore[arg-type]
        ScriptedAgent("support-4", (Phase(), Phase(at=2 * H, **sick)), ns),  # type: ignore[arg-type]
        ScriptedAgent(
            "support-5", (Phase(), Phase(at=90 * M, latency=SLOW_LATENCY), Phase(at=3 * H)), ns
        ),
    ]
    policy = f"""\
apiVersion: agentmedic.io/v1alpha1
kind: AgentPolicy
metadata: {{name: support-quality, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{team: support}}}}
  interval: 1m
  rules:
    - name: quality-degradation
      all:
        - {{metric: error_rate, window: 5m, op: ">", value: 0.15, minSamples: 20}}
        - {{metric: latency_p95_ms, window: 5m, op: ">", value: 10000}}
      for: 5m
      severity: high
      actions: [{{scaleToZero: {{}}}}, {{notify: {{channels: [oncall-slack]}}}}]
  guardrails: {{cooldown: 15m, maxDisabledPercent: 20}}
{_CHANNELS}"""
    return Picture("backtest-quality.png", policy, Scenario(START, 4 * H, tuple(agents)))


def _outage() -> Picture:
    ns = "outage"
    outage = (150 * M, 175 * M)

    def story(*phases: Phase, failing: float = 0.9) -> tuple[Phase, ...]:
        return splice(phases, *outage, error_ratio=failing)

    agents = [
        ScriptedAgent("chat", story(Phase()), ns),
        ScriptedAgent("search", story(Phase(), failing=0.8), ns),
        ScriptedAgent("triage", story(Phase(), failing=0.7), ns),
        ScriptedAgent("billing", story(Phase(), Phase(at=45 * M, error_ratio=0.4)), ns),
        ScriptedAgent("summary", story(Phase(executions_per_minute=8.0), failing=0.6), ns),
    ]
    policy = f"""\
apiVersion: agentmedic.io/v1alpha1
kind: AgentPolicy
metadata: {{name: provider-errors, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{team: support}}}}
  interval: 1m
  rules:
    - name: high-errors
      all: [{{metric: error_rate, window: 5m, op: ">", value: 0.2, minSamples: 20}}]
      for: 5m
      severity: critical
      actions: [{{scaleToZero: {{}}}}, {{notify: {{channels: [pagerduty]}}}}]
  guardrails: {{cooldown: 15m, maxDisabledPercent: 50, systemicPercent: 60}}
{_CHANNELS}"""
    return Picture("backtest-outage.png", policy, Scenario(START, 4 * H, tuple(agents)))


def _budget() -> Picture:
    ns = "budget"
    agents = [
        ScriptedAgent("spender", (Phase(cost_per_execution=0.02),), ns),
        ScriptedAgent("helper", (Phase(cost_per_execution=0.0015),), ns, model="gpt-4o-mini"),
        ScriptedAgent("writer", (Phase(cost_per_execution=0.003),), ns),
    ]
    policy = f"""\
apiVersion: agentmedic.io/v1alpha1
kind: AgentPolicy
metadata: {{name: daily-budget, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{team: support}}}}
  interval: 1m
  budget:
    period: day
    limitUSD: 50
    scope: agent
    soft: {{atPercent: 80, actions: [{{switchModel: {{}}}}, {{notify: {{channels: [finance]}}}}]}}
    hard: {{actions: [{{scaleToZero: {{}}}}, {{notify: {{channels: [finance]}}}}]}}
  model:
    env: {{container: agent, name: OPENAI_MODEL}}
    tiers: [gpt-4o, gpt-4o-mini, gpt-4.1-nano]
{_CHANNELS}"""
    return Picture("backtest-budget.png", policy, Scenario(START, 12 * H, tuple(agents)))


def pictures() -> list[Picture]:
    """The reference pictures, in the order the docs show them."""
    return [_quality(), _outage(), _budget()]


def history(items: list[Picture]) -> str:
    """Every picture's fleet as one OpenMetrics text (each in its own namespace)."""
    return openmetrics_text(Series(*s) for p in items for s in p.scenario.series())


def render(url: str, picture: Picture, out: Path) -> int:
    """``agentmedic backtest`` with ``--plot`` for one picture; the command's exit code."""
    start, end = picture.range
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(textwrap.dedent(picture.policy))
        with redirect_stdout(StringIO()):
            return main(
                [
                    "backtest",
                    str(policy),
                    "--prometheus",
                    url,
                    "--from",
                    start.isoformat(),
                    "--to",
                    end.isoformat(),
                    "--plot",
                    str(out / picture.file),
                ]
            )


def main_(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path("docs/images")
    out.mkdir(parents=True, exist_ok=True)
    items = pictures()
    with PrometheusServer(backfill=history(items)) as prom:
        for picture in items:
            code = render(prom.url, picture, out)
            if code != 0:
                print(f"{picture.file}: agentmedic backtest exited {code}", file=sys.stderr)
                return code
            print(out / picture.file)
    return 0


if __name__ == "__main__":
    sys.exit(main_(sys.argv[1:]))
