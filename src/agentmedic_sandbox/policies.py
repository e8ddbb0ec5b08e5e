"""The example AgentPolicies, and how the sandbox compresses their time.

The demo and the end-to-end tests run the policies of ``crds/examples/`` with every
duration divided by a factor, so that an hour of policy time passes in minutes.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from agentmedic.api.durations import format_duration, parse_duration
from agentmedic.api.types import API_VERSION
from agentmedic.api.yamlfile import load_documents

__all__ = ["compress_policy", "example_policies"]


def _examples_dir() -> Path:
    """crds/examples in a source checkout; the copy shipped in the package otherwise."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "crds" / "examples"
        if candidate.is_dir():
            return candidate
    return Path(str(resources.files("agentmedic_sandbox") / "examples"))


def example_policies() -> dict[str, dict[str, Any]]:
    """The AgentPolicies of ``crds/examples/``, by file stem."""
    out = {}
    for path in sorted(_examples_dir().glob("*.yaml")):
        for doc in load_documents(path):
            if isinstance(doc, dict) and doc.get("kind") == "AgentPolicy":
                out[path.stem] = doc
    return out


_DURATION_KEYS = {
    "window",
    "for",
    "recoverFor",
    "interval",
    "cooldown",
    "healthyFor",
    "after",
    "forecastWindow",
    "renotifyAfter",
    "baselineWindow",
    "rejectFor",
}


def compress_policy(
    doc: dict[str, Any],
    factor: float,
    *,
    min_duration: timedelta = timedelta(seconds=1),
    budget_limit_usd: float | None = None,
    pagerduty_url: str | None = None,
    calendar_budget: bool = False,
) -> dict[str, Any]:
    """A copy of ``doc`` with every duration divided by ``factor`` (not below 1s).

    A calendar budget period becomes a rolling period of the same compressed length (unless
    ``calendar_budget``) and forecasting is switched off (a forecast to midnight would be
    meaningless at this speed);
    ``budget_limit_usd`` replaces the limit; ``pagerduty_url`` points PagerDuty channels at
    a local receiver.
    """
    out = copy.deepcopy(doc)

    def shrink(text: str) -> str:
        value = parse_duration(text) / factor
        if value and value < min_duration:
            value = min_duration
        return format_duration(timedelta(seconds=round(value.total_seconds())))

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in _DURATION_KEYS and isinstance(value, str):
                    node[key] = shrink(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(out["spec"])
    budget = out["spec"].get("budget")
    if budget is not None and not calendar_budget:
        period = {"day": "1d", "week": "7d", "month": "30d"}.get(budget.get("period", "day"))
        budget["period"] = shrink(period or budget["period"])
        if budget.get("soft"):
            budget["soft"]["forecast"] = False
    if budget is not None and budget_limit_usd is not None:
        budget["limitUSD"] = budget_limit_usd
    if pagerduty_url:
        for channel in out["spec"].get("notifications", {}).get("channels", []):
            if "pagerduty" in channel:
                channel["pagerduty"]["url"] = pagerduty_url
    # Every policy interval becomes the same, so one cycle evaluates them all.
    out["spec"]["interval"] = "1s" if factor >= 10 else out["spec"].get("interval", "30s")
    for rule in out["spec"].get("rules", []):
        if rule.get("for") and parse_duration(rule["for"]) < parse_duration(
            out["spec"]["interval"]
        ):
            rule["for"] = out["spec"]["interval"]
    return out


TEAM_BUDGET = "team-support"


def finance_team_budget(namespace: str = "agents") -> dict[str, Any]:
    """Finance's ceiling for the support team's agents, owned by a ClusterAgentBudget (no
    policy of the SREs sets it): $10 a rolling day, told to finance's Slack at 100%."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterAgentBudget",
        "metadata": {"name": TEAM_BUDGET},
        "spec": {
            "namespaces": [namespace],
            "selector": {"matchLabels": {"app.kubernetes.io/part-of": "support-bot"}},
            "period": "24h",
            "limitUSD": 10,
            "stages": [
                {"name": "ceiling", "atPercent": 100, "response": "notify", "channels": ["finance"]}
            ],
            "notifications": {
                "channels": [
                    {
                        "name": "finance",
                        "slack": {"webhookSecretRef": {"name": "slack-webhook", "key": "url"}},
                    }
                ]
            },
        },
    }
