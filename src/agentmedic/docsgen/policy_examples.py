"""The hand-written parts of the reference page: examples and the checks across fields.

The examples of the main objects and the minimal policy are validated against their models
by :func:`check_examples` while the page renders, so a model change that breaks one fails
the generator instead of shipping a wrong example.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import yaml
from pydantic import BaseModel

from agentmedic.api.types import (
    Action,
    AgentPolicyStatus,
    Budget,
    Condition,
    Guardrails,
    LabelSelector,
    ModelSpec,
    NoData,
    NotificationChannel,
    PromptOptimizationAction,
    Recovery,
    Rule,
)
from agentmedic.api.validation import validate_policy

__all__ = [
    "CROSS_FIELD_CHECKS",
    "EXAMPLES",
    "MINIMAL_POLICY",
    "PLACEHOLDER_MEANINGS",
    "CrossFieldCheck",
    "check_examples",
]


@dataclass(frozen=True)
class CrossFieldCheck:
    """A check :func:`agentmedic.api.validation.check_spec` makes across fields."""

    path: str
    """The field path the problem is reported at (``[]`` for any index)."""
    rule: str


CROSS_FIELD_CHECKS: tuple[CrossFieldCheck, ...] = (
    CrossFieldCheck(
        "spec.selector",
        "must not be empty: an empty selector would select every workload in the namespace.",
    ),
    CrossFieldCheck(
        "spec.selector.matchExpressions[].values",
        "must not be empty for `In` and `NotIn`; must be empty for `Exists` and `DoesNotExist`.",
    ),
    CrossFieldCheck("spec.rules", "rule names are unique."),
    CrossFieldCheck("spec.rules[].all", "a rule has at least one condition, in `all` or `any`."),
    CrossFieldCheck("spec.rules[]", "a rule sets `all` (AND) or `any` (OR), not both."),
    CrossFieldCheck(
        "spec.rules[].for", "is `0s` (fire on the first breach) or at least `spec.interval`."
    ),
    CrossFieldCheck(
        "spec.rules[].all[]",
        "sets exactly one of `metric` and `query` (the same for `any[]`).",
    ),
    CrossFieldCheck(
        "spec.rules[].all[].metric", "is one of the [built-in metrics](#built-in-metrics)."
    ),
    CrossFieldCheck(
        "spec.rules[].all[].query",
        "is well-formed as far as can be told without a server: not empty, brackets balanced, "
        "strings closed, only the [known placeholders](#raw-promql-conditions); and it selects "
        "the policy's agents with `{{agents}}` inside a selector's braces.",
    ),
    CrossFieldCheck(
        "spec.rules[].all[].recoverValue",
        "lies on the healthy side of `value` (for `>` and `>=` not above it, for `<` and `<=` "
        "not below it) and is not used with `==` or `!=`.",
    ),
    CrossFieldCheck(
        "spec.rules[].actions[]",
        "sets exactly one of `scaleToZero`, `switchModel`, `promptOptimization` and `notify` "
        "(also in `spec.budget.soft.actions` and `spec.budget.hard.actions`).",
    ),
    CrossFieldCheck("spec.rules[].actions[].switchModel", "needs `spec.model`."),
    CrossFieldCheck("spec.rules[].actions[].switchModel.to", "is one of `spec.model.tiers`."),
    CrossFieldCheck(
        "spec.rules[].actions[].promptOptimization",
        "sets exactly one of `fromCronJob` and `jobTemplate`.",
    ),
    CrossFieldCheck(
        "spec.rules[].actions[].promptOptimization.jobTemplate.spec",
        "is present: the Job's spec with `template.spec.containers`.",
    ),
    CrossFieldCheck(
        "spec.rules[].actions[].notify.channels[]",
        "names a channel defined in `spec.notifications.channels`.",
    ),
    CrossFieldCheck(
        "spec.budget.period",
        "is `day`, `week`, `month` or a duration from `1m` to `366d`.",
    ),
    CrossFieldCheck("spec.budget", "has `soft`, `hard` or both."),
    CrossFieldCheck("spec.model", "sets exactly one of `env` and `configMapKey`."),
    CrossFieldCheck("spec.model.tiers", "tier names are unique."),
    CrossFieldCheck(
        "spec.guardrails.quietHours[].timeZone",
        "is an IANA time zone (`UTC`, `Europe/Berlin`).",
    ),
    CrossFieldCheck("spec.guardrails.quietHours[].end", "differs from `start`."),
    CrossFieldCheck("spec.notifications.channels", "channel names are unique."),
    CrossFieldCheck(
        "spec.notifications.channels[]",
        "sets exactly one of `slack`, `pagerduty` and `webhook`.",
    ),
    CrossFieldCheck(
        "spec.noData.channels[]", "names a channel defined in `spec.notifications.channels`."
    ),
)
"""What :mod:`agentmedic.api.validation` checks beyond the schema; a test proves each."""

PLACEHOLDER_MEANINGS: Mapping[str, str] = {
    "window": "the condition's `window` as a PromQL duration, e.g. `5m`",
    "agents": "required: the label matchers selecting this policy's agents, by name and by "
    'namespace, e.g. `agent=~"a|b", namespace="agents"` (the agent matcher alone when the '
    "metrics carry no namespace label); write it inside each selector's braces: "
    "`my_metric_total{ {{agents}} }`. Without it a query would read the agents of every "
    "namespace",
    "agent_label": "the label carrying the agent name (`spec.agentLabel`, default `agent`)",
}

MINIMAL_POLICY = """\
apiVersion: agentmedic.io/v1alpha1
kind: AgentPolicy
metadata:
  name: support-bot
  namespace: agents
spec:
  selector:
    matchLabels:
      app.kubernetes.io/part-of: support-bot
  rules:
    - name: low-success
      all:
        - {metric: success_rate, window: 15m, op: "<", value: 0.8, minSamples: 50}
      for: 10m
      actions:
        - notify: {channels: [oncall]}
  notifications:
    channels:
      - name: oncall
        slack: {webhookSecretRef: {name: slack-webhook, key: url}}
"""

EXAMPLES: Mapping[type[BaseModel], str] = {
    LabelSelector: """\
matchLabels:
  app.kubernetes.io/part-of: support-bot
matchExpressions:
  - {key: agentmedic.io/tier, operator: In, values: [interactive, batch]}
""",
    Rule: """\
name: quality-degradation
all:
  - {metric: error_rate, window: 5m, op: ">", value: 0.15, minSamples: 20, recoverValue: 0.05}
  - {metric: latency_p95_ms, window: 5m, op: ">", value: 10000}
for: 5m
recoverFor: 10m
severity: high
actions:
  - notify: {channels: [oncall-slack, pagerduty]}
""",
    Condition: """\
# a built-in metric
metric: error_rate
window: 5m
op: ">"
value: 0.15
minSamples: 20
---
# raw PromQL, one sample per agent
query: 'sum by (agent) (rate(my_tool_timeouts_total{ {{agents}} }[{{window}}]))'
op: ">"
value: 3
""",
    Action: """\
- scaleToZero: {}
- switchModel: {}
- switchModel: {to: gpt-4.1-nano}
- promptOptimization: {fromCronJob: prompt-optimizer, ttlSecondsAfterFinished: 7200}
- notify: {channels: [oncall-slack, pagerduty]}
""",
    PromptOptimizationAction: """\
jobTemplate:
  spec:
    template:
      spec:
        restartPolicy: Never
        containers:
          - name: optimize
            image: registry.example.com/prompt-optimizer:1.4
            args: [--agent, support-bot]
""",
    Budget: """\
period: day
limitUSD: 50
scope: agent
forecastWindow: 1h
onNewPeriod: restore
soft:
  atPercent: 80
  forecast: true
  actions: [{switchModel: {}}, {notify: {channels: [finance]}}]
hard:
  actions: [{scaleToZero: {}}, {notify: {channels: [finance, oncall-slack]}}]
""",
    ModelSpec: """\
env: {container: agent, name: OPENAI_MODEL}
tiers: [gpt-4o, gpt-4o-mini, gpt-4.1-nano]
---
configMapKey: {name: support-bot-config, key: model}
tiers: [claude-sonnet-4, claude-haiku-4]
""",
    Guardrails: """\
cooldown: 15m
maxDisabledPercent: 25
systemicPercent: 60
systemicMinAgents: 3
maxActionsPerHour: 10
dryRun: false
quietHours:
  - {start: "22:00", end: "07:00", timeZone: Europe/Berlin}
  - {start: "00:00", end: "23:59", days: [sat, sun]}
""",
    Recovery: """\
mode: auto
healthyFor: 30m
onDelete: restore
""",
    NoData: """\
mode: notify
after: 15m
channels: [oncall-slack]
""",
    NotificationChannel: """\
name: oncall-slack
slack: {webhookSecretRef: {name: slack-webhook, key: url}}
maxPerHour: 20
renotifyAfter: 2h
---
name: pagerduty
pagerduty: {routingKeySecretRef: {name: pagerduty, key: routing-key}}
minSeverity: high
---
name: finance
webhook:
  urlSecretRef: {name: finance-hook, key: url}
  hmacSecretRef: {name: finance-hook, key: hmac}
""",
    AgentPolicyStatus: """\
observedGeneration: 4
conditions:
  - type: Ready
    status: "True"
    reason: Evaluating
    message: evaluating 12 agent(s) every 30s
    lastTransitionTime: "2025-06-02T08:00:00Z"
    observedGeneration: 4
  - type: MetricsAvailable
    status: "True"
    reason: QueriesSucceeded
    message: all queries answered
    lastTransitionTime: "2025-06-02T08:00:00Z"
    observedGeneration: 4
  - type: Remediating
    status: "True"
    reason: AgentsRemediated
    message: 1 disabled, 0 on a cheaper model
    lastTransitionTime: "2025-06-02T09:14:30Z"
    observedGeneration: 4
agents: {total: 12, healthy: 10, pending: 0, breaching: 1, disabled: 1, downgraded: 0, noData: 0}
spend: {periodStart: "2025-06-02T00:00:00Z", usd: 31.2, forecastUSD: 48.0, limitUSD: 50}
recentActions:
  - time: "2025-06-02T09:14:30Z"
    agent: agents/billing-bot
    rule: low-success
    action: scaleToZero
    outcome: Applied
    reason: "success_rate 0.41 < 0.8 over 15m for 10m"
    episode: "0b7c…:agents/billing-bot:low-success:1748855070"
lastEvaluationTime: "2025-06-02T09:14:30Z"
""",
}
"""Examples of the main objects; each document is validated against its model on render."""


def check_examples() -> None:
    policy, problems = validate_policy(yaml.safe_load(MINIMAL_POLICY))
    if policy is None or problems:
        raise ValueError(f"the minimal policy example is invalid: {problems}")
    for model, text in EXAMPLES.items():
        for document in yaml.safe_load_all(text):
            if model is Action:
                for item in document:
                    Action.model_validate(item)
            else:
                model.model_validate(document)
