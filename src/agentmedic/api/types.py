"""The ``AgentPolicy`` resource (``agentmedic.io/v1alpha1``): spec and status.

Data only. Attribute docstrings become the CRD's descriptions and so reach
``kubectl explain``; camelCase on the wire, snake_case in Python. Cross-field checks
live in :mod:`agentmedic.api.validation` so that one policy reports every problem
at once, each with the field path and the fix.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints
from pydantic.alias_generators import to_camel

from agentmedic.api.base import MAX_COUNT as MAX_COUNT
from agentmedic.api.base import MAX_NAME_LENGTH as MAX_NAME_LENGTH
from agentmedic.api.base import NAME_PATTERN as NAME_PATTERN
from agentmedic.api.base import WORKLOAD_PLACEHOLDER as WORKLOAD_PLACEHOLDER
from agentmedic.api.base import Model as Model
from agentmedic.api.base import Name as Name
from agentmedic.api.base import ShortText as ShortText
from agentmedic.api.base import substitute_workload
from agentmedic.api.durations import (
    DURATION_PATTERN,
    Duration,
    duration_bounds,
    duration_bounds_cel,
    format_duration,
)
from agentmedic.api.gitops import OnRevert
from agentmedic.api.prompt import PromptSpec
from agentmedic.api.refs import ChannelReference, MetricsBackendRef
from agentmedic.api.status import (
    ActionOutcome,
    AgentCounts,
    AgentPolicyStatus,
    ConditionStatus,
    RecentAction,
    Spend,
    StatusCondition,
)
from agentmedic.api.verify import Verify

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "WORKLOAD_PLACEHOLDER",
    "Action",
    "ActionOutcome",
    "AgentCounts",
    "AgentPolicy",
    "AgentPolicySpec",
    "AgentPolicyStatus",
    "AlertmanagerBasicAuth",
    "AlertmanagerChannel",
    "Budget",
    "BudgetScope",
    "Condition",
    "ConditionStatus",
    "ConfigMapKeyRef",
    "EnvRef",
    "Guardrails",
    "HardLimit",
    "LabelSelector",
    "LabelSelectorRequirement",
    "Model",
    "ModelSpec",
    "NoData",
    "NoDataMode",
    "NotificationChannel",
    "Notifications",
    "NotifyAction",
    "OnDelete",
    "OnNewPeriod",
    "Op",
    "PagerDutyChannel",
    "PromptOptimizationAction",
    "PromptSpec",
    "QuietHours",
    "RecentAction",
    "Recovery",
    "RecoveryMode",
    "Rule",
    "ScaleToZeroAction",
    "SecretKeyRef",
    "Severity",
    "SlackChannel",
    "SoftLimit",
    "Spend",
    "StatusCondition",
    "SwitchModelAction",
    "WebhookChannel",
    "budget_period_cel",
]

GROUP = "agentmedic.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "AgentPolicy"
PLURAL = "agentpolicies"

# Bounds on what a policy may ask for. The CRD carries the same ones (maxItems, maxLength,
# CEL for durations), so the API server refuses what the models refuse; they also keep the
# CRD's CEL rules within the API server's cost budget, which needs bounded lists.
MAX_RULES = 100
MAX_CONDITIONS = 10
MAX_ACTIONS = 10
MAX_CHANNELS = 50
MAX_CHANNEL_REFS = 10
MAX_TIERS = 20
MAX_QUIET_HOURS = 20
MAX_SELECTOR_TERMS = 20
MAX_SELECTOR_VALUES = 100
MAX_QUERY_LENGTH = 2048

MIN_INTERVAL = timedelta(seconds=10)
MAX_INTERVAL = timedelta(hours=1)
MIN_WINDOW = timedelta(seconds=30)
"""Twice Prometheus' customary 15s scrape interval: rate() needs two samples in a window."""
MAX_WINDOW = timedelta(days=30)
MAX_HOLD = timedelta(days=30)
"""The ceiling of for, recoverFor, cooldown, healthyFor, noData.after and renotifyAfter."""

Interval = Annotated[Duration, duration_bounds(MIN_INTERVAL, MAX_INTERVAL, compressible=True)]
Window = Annotated[Duration, duration_bounds(MIN_WINDOW, MAX_WINDOW, compressible=True)]
Hold = Annotated[Duration, duration_bounds(timedelta(0), MAX_HOLD)]
Renotify = Annotated[Duration, duration_bounds(timedelta(minutes=1), MAX_HOLD)]

LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=317)]
"""A qualified label key: an optional DNS-subdomain prefix (253), a slash and a name (63)."""
ChannelRef = Annotated[str, StringConstraints(min_length=1, max_length=63)]


# --------------------------------------------------------------------------- selection


class LabelSelectorRequirement(Model):
    key: LabelKey
    """The label key the requirement applies to."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the key relates to the values: In, NotIn, Exists or DoesNotExist."""
    values: list[ShortText] = Field(default_factory=list, max_length=MAX_SELECTOR_VALUES)
    """Values for In and NotIn; must be empty for Exists and DoesNotExist."""


class LabelSelector(Model):
    match_labels: dict[LabelKey, ShortText] = Field(
        default_factory=dict, max_length=MAX_SELECTOR_TERMS
    )
    """Labels a workload must carry, all of them, to be one of this policy's agents."""
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=MAX_SELECTOR_TERMS
    )
    """Set-based requirements, all of which must hold."""


# --------------------------------------------------------------------------- rules


class Op(StrEnum):
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    EQ = "=="
    NE = "!="


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Condition(Model):
    metric: str | None = Field(default=None, max_length=63)
    """A built-in metric (see `agentmedic validate --help` for the list), e.g. error_rate,
    latency_p95_ms, cost_usd. Set exactly one of metric and query."""
    query: str | None = Field(default=None, max_length=MAX_QUERY_LENGTH)
    """Raw PromQL returning one sample per agent, labelled with the agent label. It must
    select the policy's agents with `{{agents}}` inside each series selector's braces
    (`my_metric_total{ {{agents}} }`), which becomes the agent label matcher and the
    namespace matcher of this policy's agents; `{{window}}` is replaced by the window and
    `{{agent_label}}` by the agent label. Set exactly one of metric and query."""
    window: Window = timedelta(minutes=5)
    """The range the metric is computed over, from 30s (two scrapes at Prometheus' usual
    15s) to 30d. Defaults to 5m."""
    op: Op
    """Comparison of the measured value with `value`: >, >=, <, <=, == or !=."""
    value: float = Field(allow_inf_nan=False)
    """The threshold. Ratios are 0..1 (0.15 means 15%), latencies in milliseconds."""
    min_samples: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    """Fewer executions than this in the window means insufficient data, neither healthy nor
    breaching. Recommended for ratios and quantiles."""
    recover_value: float | None = Field(default=None, allow_inf_nan=False)
    """Hysteresis: once firing, the condition counts as recovered only when the value is on
    the healthy side of this threshold (for op > it must drop below recoverValue). Defaults
    to `value`."""


class ScaleToZeroAction(Model):
    """Scale the agent's workload to zero replicas pending review (KEDA: pause it)."""


class SwitchModelAction(Model):
    to: Name | None = None
    """A specific tier from spec.model.tiers to move to. Defaults to one tier cheaper than
    the agent's current model."""


class PromptOptimizationAction(Model):
    from_cron_job: Name | None = None
    """Create the Job from this CronJob's jobTemplate in the agent's namespace, like
    `kubectl create job --from=cronjob/NAME`. Set exactly one of fromCronJob and jobTemplate."""
    job_template: dict[str, Any] | None = None
    """An inline Job template: {metadata, spec} as in a CronJob's jobTemplate. Set exactly
    one of fromCronJob and jobTemplate."""
    ttl_seconds_after_finished: int = Field(default=86_400, ge=0, le=30 * 86_400)
    """How long a finished Job is kept before Kubernetes deletes it, at most 30 days.
    Defaults to one day."""


class NotifyAction(Model):
    channels: list[ChannelRef] = Field(min_length=1, max_length=MAX_CHANNEL_REFS)
    """Names of channels defined in spec.notifications.channels."""


class Action(Model):
    """One remediation. Set exactly one of its fields."""

    scale_to_zero: ScaleToZeroAction | None = None
    """Scale the workload to zero replicas pending review; the previous count is recorded."""
    switch_model: SwitchModelAction | None = None
    """Move the agent one model tier cheaper (needs spec.model)."""
    prompt_optimization: PromptOptimizationAction | None = None
    """Start a prompt-optimization Job for the agent, once per episode."""
    notify: NotifyAction | None = None
    """Tell people on the named channels, deduplicated per episode."""

    @property
    def kind(self) -> str:
        """The wire name of the action that is set (``scaleToZero``, ``notify``, …)."""
        for field, wire in _ACTION_FIELDS:
            if getattr(self, field) is not None:
                return wire
        return ""


_ACTION_FIELDS = tuple((name, to_camel(name)) for name in Action.model_fields)
"""(field, wire name) of each kind of action: :attr:`Action.kind` runs in the engine's loop."""


class Rule(Model):
    name: str = Field(pattern=NAME_PATTERN, max_length=63)
    """A name unique in this policy (lowercase letters, digits and dashes)."""
    all_of: list[Condition] = Field(default_factory=list, alias="all", max_length=MAX_CONDITIONS)
    """Conditions that must all hold (AND). Set all or any."""
    any_of: list[Condition] = Field(default_factory=list, alias="any", max_length=MAX_CONDITIONS)
    """Conditions of which one must hold (OR). Set all or any."""
    for_: Hold = Field(default=timedelta(0), alias="for")
    """How long the conditions must hold before the rule fires, e.g. 5m. Zero fires on the
    first breaching evaluation. Must be 0 or at least spec.interval, and at most 30d."""
    recover_for: Hold = timedelta(0)
    """How long the conditions must stay clear before a firing rule resolves, so that it
    does not flap; at most 30d. Defaults to 0 (resolve on the first clear evaluation)."""
    severity: Severity = Severity.MEDIUM
    """info, low, medium, high or critical; mapped onto PagerDuty's severities."""
    actions: list[Action] = Field(default_factory=list, max_length=MAX_ACTIONS)
    """What to do when the rule fires. Without actions the rule only appears in status."""


# --------------------------------------------------------------------------- budget


class BudgetScope(StrEnum):
    AGENT = "agent"
    POLICY = "policy"


class OnNewPeriod(StrEnum):
    RESTORE = "restore"
    KEEP = "keep"


class SoftLimit(Model):
    at_percent: float = Field(default=80, gt=0, le=100, allow_inf_nan=False)
    """Fire when spend reaches this share of limitUSD. Defaults to 80."""
    forecast: bool = False
    """Also fire when spend so far plus the recent burn rate, projected to the period's end,
    reaches the limit."""
    actions: list[Action] = Field(default_factory=list, max_length=MAX_ACTIONS)
    """What to do at the soft limit, typically switchModel and notify."""


class HardLimit(Model):
    actions: list[Action] = Field(default_factory=list, max_length=MAX_ACTIONS)
    """What to do when spend reaches limitUSD, typically scaleToZero and notify."""


MIN_BUDGET_PERIOD = timedelta(minutes=1)
MAX_BUDGET_PERIOD = timedelta(days=366)


def budget_period_cel() -> dict[str, Any]:
    """The CEL rule of a budget's period: day, week, month or a bounded rolling duration."""
    bounds = duration_bounds_cel(MIN_BUDGET_PERIOD, MAX_BUDGET_PERIOD)
    return {
        "rule": f"self in ['day', 'week', 'month'] || "
        f"(self.matches('{DURATION_PATTERN}') && ({bounds['rule']}))",
        "message": "use day, week, month or a rolling duration between "
        f"{format_duration(MIN_BUDGET_PERIOD)} and {format_duration(MAX_BUDGET_PERIOD)}",
    }


class Budget(Model):
    period: str = Field(
        default="day",
        max_length=32,
        json_schema_extra={"x-kubernetes-validations": [budget_period_cel()]},
    )
    """day, week (from Monday) or month, calendar periods in UTC; or a rolling duration
    from 1m to 366d such as 24h or 7d. Defaults to day."""
    limit_usd: float = Field(alias="limitUSD", gt=0, allow_inf_nan=False)
    """The ceiling in US dollars for one period."""
    scope: BudgetScope = BudgetScope.AGENT
    """agent: each agent has its own ceiling; policy: the selected agents share it."""
    soft: SoftLimit | None = None
    """An early warning below the limit."""
    hard: HardLimit | None = None
    """What happens at the limit."""
    forecast_window: Window = timedelta(hours=1)
    """The recent window whose burn rate the forecast projects, from 30s to 30d. Defaults
    to 1h."""
    on_new_period: OnNewPeriod = OnNewPeriod.RESTORE
    """restore: agents paused or downgraded by the budget are restored when a new period
    starts; keep: they stay until a person restores them."""


# --------------------------------------------------------------------------- model tiers


class EnvRef(Model):
    container: Name
    """The container in the pod template whose environment sets the model."""
    name: Name
    """The environment variable holding the model name, e.g. OPENAI_MODEL."""


class ConfigMapKeyRef(Model):
    name: Name
    """The ConfigMap, in the agent's namespace. `{{workload}}` in the name stands for the
    workload's name (`{{workload}}-config`): one ConfigMap per agent. Without it every agent
    of the policy reads the same ConfigMap, and switching one agent's model switches them
    all."""
    key: Name
    """The key holding the model name."""

    def config_map_for(self, workload: str) -> str:
        """The ConfigMap of the workload named ``workload``."""
        return substitute_workload(self.name, workload)


class ModelSpec(Model):
    env: EnvRef | None = None
    """The model is set by an environment variable of a container. Set env or configMapKey."""
    config_map_key: ConfigMapKeyRef | None = None
    """The model is set by a ConfigMap key. Set env or configMapKey."""
    tiers: list[Name] = Field(min_length=1, max_length=MAX_TIERS)
    """Model names, dearest first; switchModel steps one tier towards the end."""


# --------------------------------------------------------------------------- guardrails


class QuietHours(Model):
    start: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", max_length=5)
    """Start of the window, HH:MM in timeZone."""
    end: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", max_length=5)
    """End of the window, HH:MM in timeZone; earlier than start means it ends the next day."""
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=list, max_length=7
    )
    """Days on which the window starts; empty means every day."""
    time_zone: str = Field(default="UTC", min_length=1, max_length=64)
    """An IANA time zone such as Europe/Berlin. Defaults to UTC."""


class Guardrails(Model):
    cooldown: Hold = timedelta(minutes=15)
    """No second action on the same agent and rule within this; at most 30d. Defaults to
    15m."""
    max_disabled_percent: float = Field(default=50, ge=0, le=100, allow_inf_nan=False)
    """Never disable more than this share of the policy's agents; the worst go first and the
    rest are notified. The count is rounded down: at 50, a policy over one agent disables
    none (use 100 to let it). Defaults to 50."""
    systemic_percent: float = Field(default=60, gt=0, le=100, allow_inf_nan=False)
    """When at least this share of agents breach the same rule at once, treat it as an outage
    of a shared dependency: page once for the fleet and disable nobody. Defaults to 60."""
    systemic_min_agents: int = Field(default=3, ge=1, le=MAX_COUNT)
    """Systemic detection applies only to fleets of at least this many agents. Defaults to 3."""
    max_actions_per_hour: int = Field(default=20, ge=0, le=MAX_COUNT)
    """Workload changes this policy may make per hour across all agents. Defaults to 20."""
    dry_run: bool = False
    """Decide and record what would happen; change nothing and send only notifications
    marked as dry run."""
    quiet_hours: list[QuietHours] = Field(default_factory=list, max_length=MAX_QUIET_HOURS)
    """Windows in which only notifications happen; workload changes wait."""
    on_revert: OnRevert = OnRevert.TELL
    """When someone else (e.g. Argo CD, Flux) puts back agentmedic's change: tell (say so once,
    do not apply again) or reapply (after 1, 2, 4 intervals, 3 times at most). Default tell."""


class RecoveryMode(StrEnum):
    MANUAL = "manual"
    AUTO = "auto"


class OnDelete(StrEnum):
    KEEP = "keep"
    RESTORE = "restore"


class Recovery(Model):
    mode: RecoveryMode = RecoveryMode.MANUAL
    """manual: disabled agents stay down until a person restores them; auto: restore an agent
    (or step its model back up) once it has been healthy for healthyFor."""
    healthy_for: Hold = timedelta(minutes=30)
    """How long an agent must stay healthy before auto recovery; at most 30d. Defaults to
    30m."""
    on_delete: OnDelete = OnDelete.KEEP
    """When the policy is deleted: keep agents as they are (annotated), or restore them."""


class NoDataMode(StrEnum):
    KEEP = "keep"
    BREACH = "breach"
    NOTIFY = "notify"


class NoData(Model):
    mode: NoDataMode = NoDataMode.KEEP
    """What missing metrics mean. keep: hold every rule's state, act on nothing; breach: after
    `after`, count the missing condition as breaching; notify: after `after`, notify the
    channels and act on nothing. Defaults to keep."""
    after: Hold = timedelta(minutes=10)
    """How long data must be missing (or the backend unavailable) before breach or notify
    applies; at most 30d. Defaults to 10m."""
    channels: list[ChannelRef] = Field(default_factory=list, max_length=MAX_CHANNEL_REFS)
    """Channels told when data is missing for longer than `after`, or when the metrics backend
    is unavailable for that long."""


# --------------------------------------------------------------------------- notifications


class SecretKeyRef(Model):
    name: Name
    """The Secret, in the policy's namespace."""
    key: Name
    """The key within the Secret."""


class SlackChannel(Model):
    webhook_secret_ref: SecretKeyRef
    """The Secret key holding the Slack incoming-webhook URL."""


class PagerDutyChannel(Model):
    routing_key_secret_ref: SecretKeyRef
    """The Secret key holding the Events API v2 integration (routing) key."""
    url: str = Field(default="https://events.pagerduty.com/v2/enqueue", max_length=2048)
    """The Events API v2 endpoint. Defaults to PagerDuty's (EU accounts use events.eu...)."""


class WebhookChannel(Model):
    url_secret_ref: SecretKeyRef
    """The Secret key holding the URL to POST JSON to."""
    hmac_secret_ref: SecretKeyRef | None = None
    """When set, the body is signed with HMAC-SHA256 using this key and the hex digest is
    sent in the X-Agentmedic-Signature header as sha256=<digest>."""


ALERTMANAGER_LABELS = ("alertname", "agent", "namespace", "rule", "severity", "policy")
"""Labels every alert sent to Alertmanager carries; static labels may not replace them."""
MAX_STATIC_LABELS = 20
LABEL_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
"""A Prometheus label name (checked by validation and CEL: a CRD cannot bound map keys)."""
LabelName = Annotated[str, StringConstraints(min_length=1, max_length=63)]
Repost = Annotated[
    Duration, duration_bounds(timedelta(seconds=30), timedelta(minutes=30), compressible=True)
]


class AlertmanagerBasicAuth(Model):
    username: Name
    """The user name."""
    password_secret_ref: SecretKeyRef
    """The Secret key holding the password."""


class AlertmanagerChannel(Model):
    url: str = Field(max_length=2048)
    """Alertmanager's base URL, with any path prefix (--web.route-prefix, or Mimir's
    /alertmanager): alerts are POSTed to <url>/api/v2/alerts."""
    basic_auth: AlertmanagerBasicAuth | None = None
    """HTTP basic authentication. Set at most one of basicAuth and bearerTokenSecretRef."""
    bearer_token_secret_ref: SecretKeyRef | None = None
    """The Secret key holding a bearer token sent as Authorization: Bearer <token>."""
    tenant: ShortText | None = None
    """Sent as the X-Scope-OrgID header, for a multi-tenant Alertmanager (Mimir, Cortex)."""
    labels: dict[LabelName, Annotated[str, StringConstraints(max_length=253)]] = Field(
        default_factory=dict, max_length=MAX_STATIC_LABELS
    )
    """Static labels added to every alert, e.g. team: agents. They may not replace
    alertname, agent, namespace, rule, severity or policy."""
    generator_url: str | None = Field(default=None, max_length=2048)
    """Sent as each alert's generatorURL: a link back, e.g. to a dashboard."""
    repost_interval: Repost = timedelta(minutes=1)
    """A firing alert is posted again this often (30s to 30m) until its episode resolves,
    each time valid for four intervals (endsAt), so Alertmanager keeps it active without
    relying on its resolve_timeout. Replaces renotifyAfter for this channel; Alertmanager's
    own repeat_interval decides reminders. Defaults to 1m."""


class NotificationChannel(Model):
    name: str = Field(pattern=NAME_PATTERN, max_length=63)
    """A name rules refer to, unique in this policy."""
    slack: SlackChannel | None = None
    """A Slack incoming webhook. Set exactly one of slack, pagerduty, webhook, alertmanager
    and channelRef."""
    pagerduty: PagerDutyChannel | None = None
    """PagerDuty Events API v2. Set exactly one of slack, pagerduty, webhook, alertmanager
    and channelRef."""
    webhook: WebhookChannel | None = None
    """A generic JSON webhook. Set exactly one of slack, pagerduty, webhook, alertmanager and
    channelRef."""
    alertmanager: AlertmanagerChannel | None = None
    """Alerts posted to Alertmanager's v2 API (see docs/alertmanager.md). Set exactly one of
    slack, pagerduty, webhook, alertmanager and channelRef."""
    channel_ref: ChannelReference | None = None
    """A channel defined once in a NotificationChannel or ClusterNotificationChannel (see
    docs/shared-channels.md); its maxPerHour, renotifyAfter and minSeverity apply, not this
    entry's. Set exactly one of slack, pagerduty, webhook, alertmanager and channelRef."""
    max_per_hour: int = Field(default=30, ge=1, le=MAX_COUNT)
    """At most this many messages per hour on this channel; the rest are counted and
    summarised. Defaults to 30."""
    renotify_after: Renotify = timedelta(hours=4)
    """Repeat a still-firing episode after this long, from 1m to 30d. Defaults to 4h."""
    min_severity: Severity = Severity.INFO
    """Only episodes at or above this severity reach the channel. Defaults to info."""


class Notifications(Model):
    channels: list[NotificationChannel] = Field(default_factory=list, max_length=MAX_CHANNELS)
    """Where messages go; rules and budgets refer to these by name."""


# --------------------------------------------------------------------------- spec


class AgentPolicySpec(Model):
    selector: LabelSelector
    """Which Deployments and StatefulSets in the policy's namespace are agents."""
    agent_label: str = Field(default="agent", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", max_length=63)
    """The metrics label carrying the agent name (the workload's name, or the value of its
    agentmedic.io/agent label). Defaults to agent."""
    interval: Interval = timedelta(seconds=30)
    """How often to evaluate, from 10s to 1h. Defaults to 30s."""
    rules: list[Rule] = Field(default_factory=list, max_length=MAX_RULES)
    """Health rules, evaluated per agent."""
    budget: Budget | None = None
    """Cost ceilings (finance)."""
    model: ModelSpec | None = None
    """Where the agent's model is set and the tiers switchModel moves between."""
    prompt: PromptSpec | None = None
    """Where the agent's live prompt is (a ConfigMap key): a promptOptimization Job's
    successful candidate is rolled out there, undoably."""
    guardrails: Guardrails = Field(default_factory=Guardrails)
    """Limits on what the operator may do."""
    recovery: Recovery = Field(default_factory=Recovery)
    """How remediated agents come back."""
    no_data: NoData = Field(default_factory=NoData)
    """What missing metrics mean."""
    notifications: Notifications = Field(default_factory=Notifications)
    """Notification channels."""
    metrics_backend_ref: MetricsBackendRef | None = None
    """The MetricsBackend (in this namespace) or ClusterMetricsBackend the agents' metrics
    are read from (see docs/multi-tenant-metrics.md). Defaults to the operator's backend."""
    verify: Verify | None = None
    """Probation after each model switch or prompt rollout; unset: changes are not verified."""


class AgentPolicy(Model):
    """Heal and budget a fleet of AI agents: rules over their metrics and what to do."""

    api_version: Literal["agentmedic.io/v1alpha1"] = "agentmedic.io/v1alpha1"
    """agentmedic.io/v1alpha1"""
    kind: Literal["AgentPolicy"] = "AgentPolicy"
    """AgentPolicy"""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Standard object metadata."""
    spec: AgentPolicySpec
    """What to watch and what to do."""
    status: AgentPolicyStatus | None = None
    """Written by the operator."""
