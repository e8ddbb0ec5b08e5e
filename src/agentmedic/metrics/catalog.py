"""Built-in metric names → PromQL templates over the series ``agentmedic.instrument`` exports.

The catalog is data. Each template computes one value per agent and may use:

``{{window}}``       the condition's window as a PromQL duration (``5m``)
``{{agents}}``       a label matcher selecting the cycle's agents (``agent=~"a|b"``)
``{{agent_label}}``  the label carrying the agent name (``agent``)
``{{by}}``           the grouping labels: the agent label, plus the namespace label when
                     namespaces are matched (``agent, namespace``)

Operators override templates with :meth:`Catalog.with_overrides`, e.g. to take spend from
LiteLLM's proxy (with the policies' ``agentLabel`` set to the LiteLLM label that names the
agent, such as ``end_user``). Its series carry the proxy's namespace rather than the
agent's, hence a grouping by the agent label alone::

    catalog = DEFAULT_CATALOG.with_overrides({
        "cost_usd": 'sum by ({{agent_label}}) '
                    '(increase(litellm_spend_metric_total{ {{agents}} }[{{window}}]))',
    })

Conventions of the built-in templates: latencies are in milliseconds; ratios are 0..1 and
are NaN (no data) when nothing happened in the window; an agent that ran but never failed
has an error rate of 0, not "no data" (a labelled child that was never incremented is never
exported, hence the ``or 0 * ...`` terms), and likewise 0 tokens when it ran without LLM
calls; ``error_rate`` counts every status other than ``success``, so ``success_rate +
error_rate = 1``. ``quality_score`` is the mean of the scores agents gave with
``ex.score`` (a summary's sum over its count) and has no data when no execution in the
window gave one: a missing score is not a bad one. Spend has no such default: an agent
without a cost series (its model has no price in the SDK's table) has no data for
``cost_usd``, because an unknown cost is not 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType

from agentmedic.api.metric_names import (
    BUILTIN_METRICS,
    COST_USD_TOTAL,
    EXECUTION_DURATION_SECONDS,
    EXECUTIONS_TOTAL,
    QUALITY_SCORE,
    TOKENS_TOTAL,
    TOOL_CALLS_TOTAL,
    TOOL_DURATION_SECONDS,
)
from agentmedic.api.validation import check_promql
from agentmedic.engine.series import SeriesKey
from agentmedic.metrics import promql

__all__ = [
    "DEFAULT_CATALOG",
    "EXECUTIONS",
    "SERIES",
    "TEMPLATE_PLACEHOLDERS",
    "Catalog",
    "executions_key",
]

SERIES = MappingProxyType(
    {
        "executions": EXECUTIONS_TOTAL,
        "execution_duration": EXECUTION_DURATION_SECONDS,
        "tokens": TOKENS_TOTAL,
        "cost": COST_USD_TOTAL,
        "tool_calls": TOOL_CALLS_TOTAL,
        "tool_duration": TOOL_DURATION_SECONDS,
        "quality_score": QUALITY_SCORE,
    }
)
"""The series the built-in templates read, by role; their names are defined once in
:mod:`agentmedic.api.metric_names`, which ``agentmedic.instrument`` exports from (DESIGN.md §4).
Counters are named as queried (with ``_total``), histograms by their base."""

TEMPLATE_PLACEHOLDERS = ("window", "agents", "agent_label", "by")
"""Placeholders a catalog template may use."""

EXECUTIONS = "executions"
"""The metric counting executions in a window: the denominator ``minSamples`` is checked on."""

_EXEC = SERIES["executions"]


def _increase(series: str, extra: str = "") -> str:
    return f"sum by ({{{{by}}}}) (increase({series}{{ {{{{agents}}}}{extra} }}[{{{{window}}}}]))"


def _ratio_of(series: str, extra: str) -> str:
    # part / all, where "part" is 0 (not absent) for agents that never had such an event.
    part, whole = _increase(series, extra), _increase(series)
    return f"({part} or 0 * {whole}) / {whole}"


def _quantile(q: float, histogram: str) -> str:
    return (
        f"1000 * histogram_quantile({q}, sum by ({{{{by}}}}, le) "
        f"(rate({histogram}_bucket{{ {{{{agents}}}} }}[{{{{window}}}}])))"
    )


def _total_or_zero(series: str, extra: str = "") -> str:
    # Zero, not absent, for an agent that ran without ever touching this counter.
    return f"({_increase(series, extra)} or 0 * {_increase(_EXEC)})"


_TOKENS = _total_or_zero(SERIES["tokens"], ', type=~"input|output"')
# The mean score: no data (absent, never NaN) when no execution gave a score in the window.
_QUALITY = (
    f"{_increase(SERIES['quality_score'] + '_sum')} / "
    f"({_increase(SERIES['quality_score'] + '_count')} > 0)"
)
# No "or 0" for spend: the SDK exports no cost series for a model without a price, and an
# unknown cost must read as no data, never as a spend of 0 that keeps a budget quiet.
_COST = _increase(SERIES["cost"])

DEFAULT_TEMPLATES: Mapping[str, str] = MappingProxyType(
    {
        "executions": _increase(_EXEC),
        "success_rate": _ratio_of(_EXEC, ', status="success"'),
        "error_rate": _ratio_of(_EXEC, ', status!="success"'),
        "latency_p50_ms": _quantile(0.5, SERIES["execution_duration"]),
        "latency_p95_ms": _quantile(0.95, SERIES["execution_duration"]),
        "latency_p99_ms": _quantile(0.99, SERIES["execution_duration"]),
        "tokens": _TOKENS,
        "tokens_per_execution": f"{_TOKENS} / {_increase(_EXEC)}",
        "cost_usd": _COST,
        "cost_per_execution": f"{_COST} / {_increase(_EXEC)}",
        "tool_error_rate": _ratio_of(SERIES["tool_calls"], ', status!="success"'),
        "tool_latency_p95_ms": _quantile(0.95, SERIES["tool_duration"]),
        "quality_score": _QUALITY,
    }
)


@dataclass(frozen=True)
class Catalog:
    """Metric name → PromQL template. Build variants with :meth:`with_overrides`."""

    templates: Mapping[str, str]

    def __post_init__(self) -> None:
        for name, template in self.templates.items():
            _check_template(name, template)

    def with_overrides(self, overrides: Mapping[str, str]) -> Catalog:
        """A catalog with some templates replaced; each name must be a built-in metric.

        Raises ``ValueError`` naming the metric and the problem (unknown name, unknown
        placeholder, unbalanced brackets).
        """
        unknown = sorted(set(overrides) - set(BUILTIN_METRICS))
        if unknown:
            known = ", ".join(sorted(BUILTIN_METRICS))
            raise ValueError(
                f"cannot override unknown metric(s) {', '.join(unknown)}; known: {known}"
            )
        return Catalog(MappingProxyType({**self.templates, **overrides}))

    def render(
        self,
        metric: str,
        *,
        window: timedelta,
        agents: str,
        agent_label: str = "agent",
        by: str | None = None,
    ) -> str:
        """The PromQL for ``metric``; ``agents`` is a matcher from :func:`promql.agent_matcher`.

        ``by`` defaults to the agent label alone.
        """
        try:
            template = self.templates[metric]
        except KeyError:
            known = ", ".join(sorted(self.templates))
            raise KeyError(f"unknown metric {metric!r}; known: {known}") from None
        return promql.substitute(
            template,
            {
                "window": promql.duration(window),
                "agents": agents,
                "agent_label": promql.check_label_name(agent_label, "agent label"),
                "by": by if by is not None else agent_label,
            },
        )


def _check_template(name: str, template: str) -> None:
    try:
        text = promql.substitute(template, {p: "x" for p in TEMPLATE_PLACEHOLDERS})
    except ValueError as exc:
        raise ValueError(f"metric {name!r}: {exc}") from None
    problems = check_promql(text)
    if problems:
        raise ValueError(f"metric {name!r}: template {'; '.join(problems)}")


DEFAULT_CATALOG = Catalog(DEFAULT_TEMPLATES)
"""The built-in templates over :data:`SERIES`."""


def executions_key(window: timedelta, agent_label: str = "agent") -> SeriesKey:
    """The series holding executions in ``window``, against which ``minSamples`` is checked."""
    return SeriesKey(metric=EXECUTIONS, query=None, window=window, agent_label=agent_label)


def load_catalog(overrides_file: Path | None) -> Catalog:
    """The default catalog, with the templates of a YAML overrides file (``run``'s
    ``catalogOverridesFile``, ``fleet``'s and ``backtest``'s ``--catalog-overrides-file``).

    Raises ``ValueError`` naming the file when it is not a mapping of metric names to PromQL,
    or an override is wrong (see :meth:`Catalog.with_overrides`).
    """
    if overrides_file is None:
        return DEFAULT_CATALOG
    from agentmedic.api.yamlfile import load_file

    overrides = load_file(overrides_file) or {}  # YAMLInputError is a ValueError
    if not isinstance(overrides, dict):
        raise ValueError(
            f"{overrides_file}: expected a mapping of metric names to PromQL templates"
        )
    try:
        return DEFAULT_CATALOG.with_overrides({str(k): str(v) for k, v in overrides.items()})
    except ValueError as exc:
        raise ValueError(f"{overrides_file}: {exc}") from None
