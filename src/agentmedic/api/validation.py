"""Validation of AgentPolicy documents: every problem, each with its field path and the fix.

Two passes. The pydantic models check types, ranges and patterns; then
:func:`check_spec` checks what spans fields (references between rules and
channels, tiers, ``for`` against ``interval``, PromQL shape). Both report
:class:`Problem` values; nothing here raises on bad input.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
import zoneinfo
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel

from agentmedic.api.durations import format_duration, parse_duration
from agentmedic.api.metric_names import BUILTIN_METRICS
from agentmedic.api.shared import SHARED_MODELS, MetricsBackendSpec, SharedObject
from agentmedic.api.types import (
    ALERTMANAGER_LABELS,
    API_VERSION,
    KIND,
    LABEL_NAME_PATTERN,
    MAX_BUDGET_PERIOD,
    MIN_BUDGET_PERIOD,
    WORKLOAD_PLACEHOLDER,
    Action,
    AgentPolicy,
    AgentPolicySpec,
    Budget,
    Condition,
    LabelSelector,
    ModelSpec,
    NotificationChannel,
    Op,
    QuietHours,
    Rule,
)

__all__ = [
    "PLACEHOLDERS",
    "Problem",
    "check_promql",
    "check_spec",
    "did_you_mean",
    "validate_policy",
    "validate_shared",
]

PLACEHOLDERS = ("window", "agents", "agent_label")
"""Placeholders a raw PromQL condition may contain, written ``{{name}}``."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy: where (``spec.rules[0].for``) and what to do."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def validate_policy(document: Any) -> tuple[AgentPolicy | None, list[Problem]]:
    """Parse and check one document; return the policy (if it parsed) and all problems."""
    if not isinstance(document, Mapping):
        kind = type(document).__name__ if document is not None else "an empty document"
        return None, [Problem("", f"expected an AgentPolicy object, found {kind}")]
    problems: list[Problem] = []
    if document.get("apiVersion") != API_VERSION:
        problems.append(
            Problem(
                "apiVersion", f"is {_shown(document.get('apiVersion'))}; set it to {API_VERSION}"
            )
        )
    if document.get("kind") != KIND:
        problems.append(Problem("kind", f"is {_shown(document.get('kind'))}; set it to {KIND}"))
    if problems:
        return None, problems
    try:
        policy = AgentPolicy.model_validate(document)
    except ValidationError as exc:
        return None, list(_from_pydantic(exc))
    return policy, check_spec(policy.spec)


def _from_pydantic(exc: ValidationError, root: type[BaseModel] = AgentPolicy) -> Iterator[Problem]:
    """Each pydantic error as a Problem; ``root`` is the model validated (for the field
    names a misspelt one is compared with)."""
    for error in exc.errors(include_url=False):
        path = _path(error["loc"])
        kind = error["type"]
        msg = error["msg"]
        if kind == "extra_forbidden":
            hint = did_you_mean(str(error["loc"][-1]), _known_fields(error["loc"][:-1], root))
            yield Problem(
                path,
                "is not a known field; " + (hint or "check its spelling (fields are camelCase)"),
            )
        elif kind == "missing":
            yield Problem(path, "is required")
        elif kind == "literal_error":
            expected = error.get("ctx", {}).get("expected", "")
            yield Problem(path, f"is {_shown(error.get('input'))}; use {expected}")
        elif kind == "enum":
            expected = error.get("ctx", {}).get("expected", "")
            yield Problem(path, f"is {_shown(error.get('input'))}; use one of {expected}")
        elif kind == "string_pattern_mismatch" and path.endswith("name"):
            yield Problem(
                path,
                f"{_shown(error.get('input'))} is not a valid name; use lowercase letters, "
                "digits and dashes, starting and ending with a letter or digit",
            )
        elif kind == "string_pattern_mismatch" and path.endswith(("start", "end")):
            yield Problem(
                path, f"{_shown(error.get('input'))} is not a time; write HH:MM (00:00-23:59)"
            )
        elif kind == "value_error":
            yield Problem(path, msg.removeprefix("Value error, "))
        elif kind == "too_long":
            ctx = error.get("ctx", {})
            yield Problem(
                path,
                f"has {ctx.get('actual_length')} entries; at most {ctx.get('max_length')} "
                "are allowed",
            )
        elif kind in ("dict_type", "model_type", "model_attributes_type"):
            yield Problem(path, f"must be a mapping (key: value), not {_kind(error.get('input'))}")
        elif kind == "list_type":
            yield Problem(path, f"must be a list, not {_kind(error.get('input'))}")
        elif kind == "finite_number":
            yield Problem(path, f"is {_shown(error.get('input'))}; use a finite number")
        elif kind == "string_too_long":
            limit = error.get("ctx", {}).get("max_length")
            yield Problem(path, f"is longer than {limit} characters; shorten it")
        else:
            yield Problem(path, f"{msg} (got {_shown(error.get('input'))})")


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``did you mean 'x'?`` for the closest of ``known`` to a misspelt ``name``, or ``""``."""
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    if not match:
        lowered = {k.lower(): k for k in known}
        match = [lowered[name.lower()]] if name.lower() in lowered else []
    return f"did you mean {match[0]!r}?" if match else ""


def _known_fields(loc: Iterable[int | str], root: type[BaseModel] = AgentPolicy) -> list[str]:
    """The field names (as written in YAML) of the model at ``loc`` inside ``root``."""
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        fields = model.model_fields
        info = next(
            (f for n, f in fields.items() if part in (n, f.alias)),
            None,
        )
        if info is None:
            return []
        inner = _model_in(info.annotation)
        if inner is None:
            return []
        model = inner
    return [info.alias or name for name, info in model.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``X``, ``X | None``, ``list[X]`` or ``Annotated[X, ...]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is None and not isinstance(annotation, types.UnionType):
        return None
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _shown(value: Any) -> str:
    """A value quoted in a message: never more than a line, whatever was submitted."""
    text = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


_MAX_SHOWN = 60


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, str | int | float | bool):
        return f"{type(value).__name__} {_shown(value)}"
    return type(value).__name__


def _path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def check_spec(spec: AgentPolicySpec) -> list[Problem]:
    """Cross-field checks of a structurally valid spec."""
    return list(_check_spec(spec))


def _check_spec(spec: AgentPolicySpec) -> Iterator[Problem]:
    yield from _check_selector(spec.selector)
    channels = [c.name for c in spec.notifications.channels]
    yield from _check_channels(spec.notifications.channels, channels, spec.interval)
    known_channels = set(channels)
    yield from _duplicates("spec.rules", [r.name for r in spec.rules], "rule")
    for i, rule in enumerate(spec.rules):
        yield from _check_rule(f"spec.rules[{i}]", rule, spec, known_channels)
    if spec.budget is not None:
        yield from _check_budget(spec.budget, spec, known_channels)
    if spec.model is not None:
        yield from _check_model(spec.model)
    if spec.prompt is not None:
        name = spec.prompt.config_map_key.name
        yield from _check_config_map_name(name, "spec.prompt.configMapKey.name")
    yield from _check_quiet_hours(spec.guardrails.quiet_hours)
    if spec.verify is not None and spec.verify.window < spec.interval:
        yield Problem(
            "spec.verify.window",
            f"{format_duration(spec.verify.window)} is shorter than spec.interval "
            f"({format_duration(spec.interval)}); a verdict needs at least one evaluation "
            "after the change: make it at least the interval",
        )
    for j, name in enumerate(spec.no_data.channels):
        if name not in known_channels:
            yield _unknown_channel(f"spec.noData.channels[{j}]", name, known_channels)


def _check_selector(sel: LabelSelector) -> Iterator[Problem]:
    if not sel.match_labels and not sel.match_expressions:
        yield Problem(
            "spec.selector",
            "is empty and would select every workload in the namespace; set matchLabels",
        )
    for i, req in enumerate(sel.match_expressions):
        p = f"spec.selector.matchExpressions[{i}]"
        if req.operator in ("In", "NotIn") and not req.values:
            yield Problem(f"{p}.values", f"must not be empty for operator {req.operator}")
        if req.operator in ("Exists", "DoesNotExist") and req.values:
            yield Problem(f"{p}.values", f"must be empty for operator {req.operator}")


def _check_channels(
    channels: Iterable[NotificationChannel], names: list[str], interval: timedelta
) -> Iterator[Problem]:
    yield from _duplicates("spec.notifications.channels", names, "channel")
    for i, ch in enumerate(channels):
        kinds = [
            k
            for k in ("slack", "pagerduty", "webhook", "alertmanager", "channel_ref")
            if getattr(ch, k) is not None
        ]
        if len(kinds) != 1:
            found = ", ".join(kinds).replace("channel_ref", "channelRef") if kinds else "none"
            yield Problem(
                f"spec.notifications.channels[{i}]",
                "set exactly one of slack, pagerduty, webhook, alertmanager, channelRef "
                f"(found {found})",
            )
        if ch.channel_ref is not None:
            yield from _ref_entry_problems(f"spec.notifications.channels[{i}]", ch)
        if ch.alertmanager is not None:
            yield from _alertmanager_problems(f"spec.notifications.channels[{i}]", ch, interval)


def _check_rule(
    p: str, rule: Rule, spec: AgentPolicySpec, known_channels: set[str]
) -> Iterator[Problem]:
    if not rule.all_of and not rule.any_of:
        yield Problem(f"{p}.all", "the rule has no conditions; add at least one to all or any")
    if rule.all_of and rule.any_of:
        yield Problem(p, "set either all (AND) or any (OR), not both")
    if rule.for_ and rule.for_ < spec.interval:
        yield Problem(
            f"{p}.for",
            f"is shorter than spec.interval ({_fmt(rule.for_)} < {_fmt(spec.interval)}); "
            "use 0s to fire at once or at least the interval",
        )
    for key, conds in (("all", rule.all_of), ("any", rule.any_of)):
        for j, cond in enumerate(conds):
            yield from _check_condition(f"{p}.{key}[{j}]", cond)
    yield from _check_actions(f"{p}.actions", rule.actions, spec, known_channels)


def _check_budget(b: Budget, spec: AgentPolicySpec, known_channels: set[str]) -> Iterator[Problem]:
    if b.period not in ("day", "week", "month"):
        yield from _check_rolling_period(b.period)
    if b.soft is None and b.hard is None:
        yield Problem("spec.budget", "has neither soft nor hard; add at least one")
    if b.soft is not None:
        yield from _check_actions("spec.budget.soft.actions", b.soft.actions, spec, known_channels)
    if b.hard is not None:
        yield from _check_actions("spec.budget.hard.actions", b.hard.actions, spec, known_channels)


def _check_rolling_period(text: str) -> Iterator[Problem]:
    try:
        period = parse_duration(text)
    except ValueError:
        yield Problem(
            "spec.budget.period",
            f"{text!r} is neither day, week, month nor a duration such as 24h or 7d",
        )
        return
    if not MIN_BUDGET_PERIOD <= period <= MAX_BUDGET_PERIOD:
        yield Problem(
            "spec.budget.period",
            f"is {_fmt(period)}; a rolling period must be between "
            f"{_fmt(MIN_BUDGET_PERIOD)} and {_fmt(MAX_BUDGET_PERIOD)}",
        )


def _check_model(m: ModelSpec) -> Iterator[Problem]:
    if (m.env is None) == (m.config_map_key is None):
        yield Problem("spec.model", "set exactly one of env and configMapKey")
    if m.config_map_key is not None:
        yield from _check_config_map_name(m.config_map_key.name)
    yield from _duplicates("spec.model.tiers", m.tiers, "tier")


def _check_quiet_hours(windows: Iterable[QuietHours]) -> Iterator[Problem]:
    for i, qh in enumerate(windows):
        try:
            zoneinfo.ZoneInfo(qh.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            yield Problem(
                f"spec.guardrails.quietHours[{i}].timeZone",
                f"{qh.time_zone!r} is not an IANA time zone; use e.g. UTC or Europe/Berlin",
            )
        if qh.start == qh.end:
            yield Problem(
                f"spec.guardrails.quietHours[{i}].end", "equals start; the window is empty"
            )


def _check_condition(p: str, cond: Condition) -> Iterator[Problem]:
    if (cond.metric is None) == (cond.query is None):
        yield Problem(p, "set exactly one of metric (a built-in name) and query (raw PromQL)")
        return
    if cond.metric is not None and cond.metric not in BUILTIN_METRICS:
        known = ", ".join(sorted(BUILTIN_METRICS))
        hint = did_you_mean(cond.metric, BUILTIN_METRICS)
        yield Problem(
            f"{p}.metric",
            f"unknown metric {cond.metric!r}; "
            + (f"{hint} " if hint else "")
            + f"known metrics: {known}",
        )
    if cond.query is not None:
        problems = check_promql(cond.query)
        for message in problems:
            yield Problem(f"{p}.query", message)
        if not problems and "agents" not in _PLACEHOLDER.findall(cond.query):
            yield Problem(
                f"{p}.query",
                "does not select the policy's agents; put {{agents}} in the braces of each "
                "series selector, e.g. sum by (agent) (rate(my_metric_total{ {{agents}} }"
                "[{{window}}]))",
            )
    if cond.recover_value is not None:
        wrong_side = {
            Op.GT: cond.recover_value > cond.value,
            Op.GE: cond.recover_value > cond.value,
            Op.LT: cond.recover_value < cond.value,
            Op.LE: cond.recover_value < cond.value,
        }.get(cond.op, False)
        if wrong_side:
            yield Problem(
                f"{p}.recoverValue",
                f"is on the breaching side of value ({cond.recover_value} vs {cond.op} "
                f"{cond.value}); it must be on the healthy side",
            )
        if cond.op in (Op.EQ, Op.NE):
            yield Problem(f"{p}.recoverValue", f"has no meaning with op {cond.op}; remove it")


def _check_actions(
    p: str, actions: list[Action], spec: AgentPolicySpec, channels: set[str]
) -> Iterator[Problem]:
    for i, action in enumerate(actions):
        set_fields = [name for name, value in action if value is not None]
        if len(set_fields) != 1:
            yield Problem(
                f"{p}[{i}]",
                "set exactly one of scaleToZero, switchModel, promptOptimization, notify",
            )
            continue
        if action.switch_model is not None:
            if spec.model is None:
                yield Problem(
                    f"{p}[{i}].switchModel",
                    "needs spec.model (where the model is set and its tiers); add it",
                )
            elif (
                action.switch_model.to is not None
                and action.switch_model.to not in spec.model.tiers
            ):
                yield Problem(
                    f"{p}[{i}].switchModel.to",
                    f"{action.switch_model.to!r} is not one of spec.model.tiers "
                    f"({', '.join(spec.model.tiers)})",
                )
        if action.prompt_optimization is not None:
            po = action.prompt_optimization
            if (po.from_cron_job is None) == (po.job_template is None):
                yield Problem(
                    f"{p}[{i}].promptOptimization", "set exactly one of fromCronJob and jobTemplate"
                )
            if po.job_template is not None and not isinstance(po.job_template.get("spec"), dict):
                yield Problem(
                    f"{p}[{i}].promptOptimization.jobTemplate.spec",
                    "is required: the Job's spec with template.spec.containers",
                )
        if action.notify is not None:
            for j, name in enumerate(action.notify.channels):
                if name not in channels:
                    yield _unknown_channel(f"{p}[{i}].notify.channels[{j}]", name, channels)


def _alertmanager_problems(
    p: str, ch: NotificationChannel, interval: timedelta
) -> Iterator[Problem]:
    am = ch.alertmanager
    assert am is not None
    p = f"{p}.alertmanager"
    for where, url in (("url", am.url), ("generatorUrl", am.generator_url)):
        if url is None:
            continue
        parsed = urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            yield Problem(f"{p}.{where}", f"{url!r} is not an http(s) URL with a host")
        elif where == "url" and (parsed.username or parsed.password):
            yield Problem(
                f"{p}.url",
                "must not carry credentials; put them in basicAuth.passwordSecretRef "
                "(and the URL without them here)",
            )
    if am.basic_auth is not None and am.bearer_token_secret_ref is not None:
        yield Problem(p, "set at most one of basicAuth and bearerTokenSecretRef")
    for label in sorted(am.labels):
        if not re.match(LABEL_NAME_PATTERN, label):
            yield Problem(
                f"{p}.labels",
                f"{label!r} is not a label name: letters, digits and underscores, not "
                "starting with a digit",
            )
    for label in sorted(set(am.labels) & set(ALERTMANAGER_LABELS)):
        yield Problem(
            f"{p}.labels.{label}",
            f"{label} is set by agentmedic on every alert; choose another label name",
        )
    if am.repost_interval < interval:
        yield Problem(
            f"{p}.repostInterval",
            f"{format_duration(am.repost_interval)} is shorter than spec.interval "
            f"({format_duration(interval)}): alerts are re-posted once a cycle at most, and "
            "each stays valid for four repost intervals; set it to at least spec.interval",
        )
    if "renotify_after" in ch.model_fields_set:
        yield Problem(
            f"{p[: -len('.alertmanager')]}.renotifyAfter",
            "has no effect on an alertmanager channel: Alertmanager's repeat_interval "
            "decides reminders, and alertmanager.repostInterval how often the alert is "
            "posted again; remove it",
        )


def _ref_entry_problems(p: str, ch: NotificationChannel) -> Iterator[Problem]:
    """A channelRef entry takes its limits from the shared channel."""
    for field in sorted({"max_per_hour", "renotify_after", "min_severity"} & ch.model_fields_set):
        wire = to_camel(field)
        yield Problem(
            f"{p}.{wire}",
            f"the shared channel's {wire} applies to an entry with channelRef; set it on "
            f"{ch.channel_ref} and remove it here",
        )


def validate_shared(document: Any) -> tuple[SharedObject | None, list[Problem]]:
    """Parse and check a NotificationChannel, ClusterNotificationChannel, MetricsBackend or
    ClusterMetricsBackend document; return the object (if it is valid) and all problems."""
    if not isinstance(document, Mapping):
        return None, [Problem("", f"expected an object, found {type(document).__name__}")]
    kind = document.get("kind")
    model = SHARED_MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        return None, [Problem("kind", f"is {_shown(kind)}; use one of {', '.join(SHARED_MODELS)}")]
    if document.get("apiVersion") != API_VERSION:
        shown = _shown(document.get("apiVersion"))
        return None, [Problem("apiVersion", f"is {shown}; set it to {API_VERSION}")]
    try:
        obj = model.model_validate({k: v for k, v in document.items() if k != "status"})
    except ValidationError as exc:
        return None, list(_from_pydantic(exc))
    if isinstance(obj.spec, MetricsBackendSpec):
        problems = list(_backend_problems(obj.spec))
    else:
        problems = list(_shared_channel_problems(obj.spec.as_channel("shared")))
    return (obj if not problems else None), problems


def _shared_channel_problems(ch: NotificationChannel) -> Iterator[Problem]:
    kinds = [k for k in ("slack", "pagerduty", "webhook", "alertmanager") if getattr(ch, k)]
    if len(kinds) != 1:
        found = ", ".join(kinds) if kinds else "none"
        yield Problem(
            "spec", f"set exactly one of slack, pagerduty, webhook, alertmanager (found {found})"
        )
    if ch.alertmanager is not None:
        where = "spec.notifications.channels[0]"
        for x in _alertmanager_problems(where, ch, timedelta(0)):
            yield Problem(x.path.replace(where, "spec"), x.message)


_RESERVED_HEADERS = {"authorization", "x-scope-orgid", "content-type"}


def _backend_problems(spec: MetricsBackendSpec) -> Iterator[Problem]:
    parsed = urlsplit(spec.url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        yield Problem("spec.url", f"{spec.url!r} is not an http(s) URL with a host")
    elif parsed.username or parsed.password:
        yield Problem(
            "spec.url",
            "must not carry credentials; use basicAuth or "
            "bearerTokenSecretRef (and the URL without them here)",
        )
    elif parsed.query or parsed.fragment:
        yield Problem("spec.url", "must not have a query string or fragment")
    elif parsed.path.rstrip("/").endswith("/api/v1"):
        yield Problem("spec.url", "must stop before /api/v1 (it is appended per request)")
    if spec.basic_auth is not None and spec.bearer_token_secret_ref is not None:
        yield Problem("spec", "set at most one of basicAuth and bearerTokenSecretRef")
    if spec.ca_secret_ref is not None and spec.ca_config_map_ref is not None:
        yield Problem("spec", "set at most one of caSecretRef and caConfigMapRef")
    names = [h.name.lower() for h in spec.headers]
    yield from _duplicates("spec.headers", names, "header")
    for i, header in enumerate(spec.headers):
        if header.name.lower() in _RESERVED_HEADERS:
            yield Problem(
                f"spec.headers[{i}].name",
                f"{header.name} is set by agentmedic; use tenant for X-Scope-OrgID and "
                "basicAuth or bearerTokenSecretRef for Authorization",
            )


def _unknown_channel(path: str, name: str, channels: set[str]) -> Problem:
    defined = ", ".join(sorted(channels)) if channels else "none are defined"
    hint = did_you_mean(name, channels)
    return Problem(
        path,
        f"channel {name!r} is not defined in spec.notifications.channels "
        + (f"({hint} defined: {defined})" if hint else f"(defined: {defined})"),
    )


_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _check_config_map_name(
    name: str, path: str = "spec.model.configMapKey.name"
) -> Iterator[Problem]:
    unknown = [p for p in _PLACEHOLDER.findall(name) if p != "workload"]
    if unknown:
        yield Problem(
            path,
            f"unknown placeholder {{{{{unknown[0]}}}}}; the only one is {WORKLOAD_PLACEHOLDER} "
            "(the workload's name)",
        )
        return
    example = _PLACEHOLDER.sub("agent", name)
    if len(example) > 253 or not _DNS_SUBDOMAIN.match(example):
        yield Problem(
            path,
            f"{name!r} is not a ConfigMap name: lowercase letters, digits, '-' and '.', "
            f"starting and ending with a letter or digit (optionally with {WORKLOAD_PLACEHOLDER})",
        )


def _duplicates(path: str, names: list[str], what: str) -> Iterator[Problem]:
    for name, count in Counter(names).items():
        if count > 1:
            yield Problem(path, f"{what} name {name!r} is used {count} times; names must be unique")


_PLACEHOLDER = re.compile(r"\{\{\s*([^}]*?)\s*\}\}")
_AGENTS_MARK = "\x00"
_PAIRS = {")": "(", "]": "[", "}": "{"}


def check_promql(query: str) -> list[str]:
    """Detect what is knowably wrong in a PromQL expression without a server."""
    if not query.strip():
        return ["is empty; write a PromQL expression"]
    problems = [
        f"unknown placeholder {{{{{name}}}}}; known: "
        + ", ".join(f"{{{{{p}}}}}" for p in PLACEHOLDERS)
        for name in _PLACEHOLDER.findall(query)
        if name not in PLACEHOLDERS
    ]
    # {{agents}} becomes label matchers, so it is only meaningful inside a selector's braces.
    text = _PLACEHOLDER.sub(lambda m: _AGENTS_MARK if m.group(1) == "agents" else "x", query)
    stack: list[tuple[str, int]] = []
    quote: str | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\" and quote != "`":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'`":
            quote = ch
        elif ch == _AGENTS_MARK and (not stack or stack[-1][0] != "{"):
            problems.append(
                "{{agents}} stands outside a selector's braces; write it as "
                "my_metric_total{ {{agents}} }"
            )
        elif ch == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
        elif ch in "([{":
            stack.append((ch, i))
        elif ch in ")]}":
            if not stack or stack[-1][0] != _PAIRS[ch]:
                problems.append(f"unbalanced {ch!r} at character {i + 1}")
                return problems
            stack.pop()
        i += 1
    if quote:
        problems.append(f"unterminated string literal (missing {quote})")
    elif stack:
        ch, pos = stack[-1]
        problems.append(f"unclosed {ch!r} opened at character {pos + 1}")
    return problems


def _fmt(value: Any) -> str:
    return format_duration(value)
