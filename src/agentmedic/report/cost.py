"""The chargeback report: spend per team, namespace, agent or model over an exact period.

Two steps, as for the fleet report: :func:`gather` reads the raw counter samples of the
period from the metrics backend (one query per metric and chunk of time, for the whole
fleet), then :func:`build_report`, a pure function, turns them into a :class:`CostReport`.

**Exactness rule.** Prometheus' ``increase()`` extrapolates to the window's edges, so two
adjacent months never add up to the two-month figure. Here spend is computed from the
samples themselves:

- a period is the half-open interval ``[start, end)`` of two instants (calendar days, ISO
  weeks and months start at local midnight in the report's time zone);
- each series' spend is the sum of the increases between consecutive samples, each
  increase counted in the period that holds the *later* sample of the pair (so a pair that
  straddles midnight of the 1st belongs to the new month, and every pair belongs to exactly
  one period: consecutive periods add up to the period they cover);
- a drop between two samples is a counter reset (the process restarted): the increase is
  the new value (the counter started again from zero);
- the pair that enters the period starts at the series' last sample before ``start``
  (searched ``lookback`` back); a series with no sample in the lookback before its first
  sample of the period was born in the period, and its first value counts from zero (the
  SDK's counters start at zero, and its cost series appears with the first priced call).

Groups are summed per series and rounded once, half to even, to :data:`QUANTUM` USD (a
millionth) or, with ``--round cent``, to :data:`CENT`; the total is the sum of the rounded
groups, so the rows always add up to the printed total exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import ROUND_HALF_EVEN, Decimal
from functools import partial
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agentmedic.api.metric_names import COST_USD_TOTAL, TOKENS_TOTAL
from agentmedic.metrics import MetricsBackend, promql
from agentmedic.metrics.pricing import PriceBook
from agentmedic.report._queries import ProgressCallback, bounded

__all__ = [
    "CENT",
    "DIMENSIONS",
    "EXACTNESS_RULE",
    "QUANTUM",
    "CostQuery",
    "CostReport",
    "GroupRow",
    "Period",
    "Samples",
    "build_report",
    "exactness_rule",
    "explicit_period",
    "gather",
    "increase",
    "parse_period",
    "parse_zone",
]

Dimension = Literal["team", "namespace", "agent", "model"]
DIMENSIONS: tuple[Dimension, ...] = ("team", "namespace", "agent", "model")
Source = Literal["reported", "tokens", "both"]

QUANTUM = Decimal("0.000001")
"""Money is rounded once per group to a millionth of a dollar (half to even)..."""
CENT = Decimal("0.01")
"""... or, for an invoice, to a cent."""

EXACTNESS_RULE = (
    "spend is the sum of increases between consecutive raw samples of each series, each "
    "increase counted in the period [start, end) holding the later sample of the pair; a "
    "drop is a counter reset and counts the new value; the first pair starts at the last "
    "sample before start (within the lookback), and a series with none was born in the "
    "period and counts its first value from zero; groups are rounded half to even to "
    "{quantum} USD and the total is the sum of the rounded groups"
)


def exactness_rule(quantum: Decimal = QUANTUM) -> str:
    """The rule in words, with the rounding used."""
    return EXACTNESS_RULE.format(quantum=f"{quantum:f}")


TOKEN_TYPES = ("input", "output", "cached_input")
"""``agent_tokens_total`` types read by the tokens source. The SDK exports input (cached
input included, as providers report it) and output; a ``cached_input`` type, where a
team's own metrics have one, is the cached part of input and is priced at the cached
price."""


# -- periods ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """The half-open interval ``[start, end)``; both are aware datetimes in ``zone``."""

    start: datetime
    end: datetime
    label: str
    """What was asked for: ``2026-11``, ``2026-W45``, ``2026-11-03`` or ``FROM..TO``."""
    zone: str

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(
                f"the period ends ({self.end.isoformat()}) before it starts "
                f"({self.start.isoformat()}); --to must be after --from"
            )

    @property
    def start_ms(self) -> int:
        return _ms(self.start)

    @property
    def end_ms(self) -> int:
        return _ms(self.end)


_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$", re.IGNORECASE)
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
PERIOD_FORMS = "2026-11 (a month), 2026-W45 (an ISO week) or 2026-11-03 (a day)"


def parse_zone(name: str) -> tzinfo:
    """The IANA time zone ``name`` (``UTC``, ``Europe/Berlin``); ``ValueError`` otherwise."""
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"--time-zone {name!r} is not a known time zone; use an IANA name such as UTC, "
            "Europe/Berlin or America/New_York"
        ) from None


def _midnight(day: date, zone: tzinfo) -> datetime:
    # A local midnight skipped by a DST change does not exist; fromtimestamp of the
    # round-tripped instant gives the first existing local time after it.
    naive = datetime(day.year, day.month, day.day, tzinfo=zone)
    return datetime.fromtimestamp(naive.timestamp(), zone)


def parse_period(text: str, zone_name: str = "UTC") -> Period:
    """A calendar period (month, ISO week or day) in ``zone_name``."""
    zone = parse_zone(zone_name)
    raw = text.strip()
    try:
        if m := _MONTH.match(raw):
            year, month = int(m[1]), int(m[2])
            first = date(year, month, 1)
            following = date(year + month // 12, month % 12 + 1, 1)
        elif m := _WEEK.match(raw):
            first = date.fromisocalendar(int(m[1]), int(m[2]), 1)
            following = first + timedelta(days=7)
            raw = f"{m[1]}-W{m[2]}"
        elif m := _DAY.match(raw):
            first = date(int(m[1]), int(m[2]), int(m[3]))
            following = first + timedelta(days=1)
        else:
            raise ValueError("unknown form")
    except ValueError:
        raise ValueError(f"--period {text!r} is not a period; write {PERIOD_FORMS}") from None
    return Period(_midnight(first, zone), _midnight(following, zone), raw, zone_name)


def _moment(text: str, zone: tzinfo, flag: str) -> datetime:
    raw = text.strip()
    try:
        if _DAY.match(raw):
            return _midnight(date.fromisoformat(raw), zone)
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(
            f"{flag} {text!r} is not a time; write 2026-11-03, 2026-11-03T08:00 (in --time-zone) "
            "or 2026-11-03T08:00:00+01:00"
        ) from None
    if moment.tzinfo is None:
        moment = datetime.fromtimestamp(moment.replace(tzinfo=zone).timestamp(), zone)
    return moment.astimezone(zone)


def explicit_period(start: str, end: str, zone_name: str = "UTC") -> Period:
    """``[--from, --to)``: dates are local midnights in ``zone_name``, times without an
    offset are local times there."""
    zone = parse_zone(zone_name)
    first, last = _moment(start, zone, "--from"), _moment(end, zone, "--to")
    return Period(first, last, f"{start.strip()}..{end.strip()}", zone_name)


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


# -- the exact increase -------------------------------------------------------------------------


def increase(
    points: Sequence[tuple[int, float]],
    start_ms: int,
    end_ms: int,
    *,
    previous: float | None,
) -> tuple[float, bool]:
    """The spend of one series in ``[start_ms, end_ms)`` by the exactness rule.

    ``points`` are ``(timestamp_ms, value)`` in time order (others are ignored);
    ``previous`` is the series' last value before ``start_ms``, ``None`` when it has none
    in the lookback. Returns the increase and whether the series was born in the period
    (its first value counted from zero).
    """
    total = 0.0
    last = previous
    born = False
    for ts, value in points:
        if ts < start_ms or ts >= end_ms:
            continue
        if last is None:
            born = True
            total += value
        elif value >= last:
            total += value - last
        else:
            total += value
        last = value
    return total, born


# -- the query ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostQuery:
    """What to read: which period, grouped how, from which source."""

    period: Period
    by: tuple[Dimension, ...] = ("team",)
    source: Source = "reported"
    team_label: str = "team"
    agent_label: str = "agent"
    namespace_label: str = "namespace"
    namespace: str | None = None
    """Only series whose namespace label has this value; all when ``None``."""
    lookback: timedelta = timedelta(days=1)
    """How far before ``start`` the last sample of each series is searched."""
    chunk: timedelta = timedelta(hours=6)
    """Raw samples are read this much at a time, to keep each answer small."""
    namespace_teams: Mapping[str, str] = field(default_factory=dict, compare=False)
    """Namespace → team, from the Namespaces' labels (``--kubeconfig``): the team of a
    series without a team label of its own."""

    def group_of(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        """The values of the ``by`` labels of a series ("" where it has none); a series
        without a team label takes its namespace's team."""
        out = []
        for dimension in self.by:
            value = labels.get(self.label_of(dimension), "")
            if dimension == "team" and not value:
                value = self.namespace_teams.get(labels.get(self.namespace_label, ""), "")
            out.append(value)
        return tuple(out)

    def label_of(self, dimension: Dimension) -> str:
        return {
            "team": self.team_label,
            "namespace": self.namespace_label,
            "agent": self.agent_label,
            "model": "model",
        }[dimension]

    def metrics(self) -> tuple[str, ...]:
        """The counters read, as named in :mod:`agentmedic.api.metric_names`."""
        if self.source == "reported":
            return (COST_USD_TOTAL,)
        if self.source == "tokens":
            return (TOKENS_TOTAL,)
        return (COST_USD_TOTAL, TOKENS_TOTAL)

    def selector(self, metric: str) -> str:
        """The series selector of ``metric``; label names checked, values quoted."""
        for dimension in DIMENSIONS:
            promql.check_label_name(self.label_of(dimension), f"--{dimension}-label")
        agent = promql.check_label_name(self.agent_label, "--agent-label")
        matchers = [f'{agent}!=""']
        if self.namespace is not None:
            label = promql.check_label_name(self.namespace_label, "--namespace-label")
            matchers.append(f"{label}={promql.quote_string(self.namespace)}")
        if metric == TOKENS_TOTAL:
            types = "|".join(promql.escape_regex(t) for t in TOKEN_TYPES)
            matchers.append(f"type=~{promql.quote_string(types)}")
        return f"{metric}{{{', '.join(matchers)}}}"

    def requests(self) -> list[tuple[str, str, datetime]]:
        """Every request sent: ``(metric, promql, evaluation instant)``.

        Per metric: the last value before the period (``last_over_time`` over the lookback,
        evaluated 1 ms before ``start``), then the raw samples chunk by chunk. Each chunk
        reaches one second further back than its length, so a chunk never misses a sample
        at its lower edge whatever the backend's range semantics (left-closed in Prometheus
        2, left-open in 3); samples read twice are merged by timestamp.
        """
        start, end = self.period.start_ms, self.period.end_ms
        chunk_ms = max(1000, round(self.chunk.total_seconds() * 1000))
        overlap = promql.duration(self.chunk + timedelta(seconds=1))
        out: list[tuple[str, str, datetime]] = []
        for metric in self.metrics():
            selector = self.selector(metric)
            out.append(
                (
                    metric,
                    f"last_over_time({selector}[{promql.duration(self.lookback)}])",
                    _at(start - 1),
                )
            )
            edge = start
            while edge < end:
                edge = min(edge + chunk_ms, end)
                out.append((metric, f"{selector}[{overlap}]", _at(edge - 1)))
        return out


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


SeriesKey = frozenset[tuple[str, str]]


@dataclass
class Samples:
    """Raw samples per metric and series, and each series' last value before the period."""

    points: dict[str, dict[SeriesKey, dict[int, float]]] = field(default_factory=dict)
    previous: dict[str, dict[SeriesKey, float]] = field(default_factory=dict)
    queries: int = 0

    def add_points(
        self, metric: str, labels: Mapping[str, str], pts: Iterable[tuple[float, float]]
    ) -> None:
        key = _key(labels)
        series = self.points.setdefault(metric, {}).setdefault(key, {})
        for ts, value in pts:
            series[round(ts * 1000)] = value

    def add_previous(self, metric: str, labels: Mapping[str, str], value: float) -> None:
        self.previous.setdefault(metric, {})[_key(labels)] = value


def _key(labels: Mapping[str, str]) -> SeriesKey:
    return frozenset((k, v) for k, v in labels.items() if k != "__name__")


async def gather(
    backend: MetricsBackend,
    query: CostQuery,
    *,
    max_concurrency: int = 4,
    on_progress: ProgressCallback | None = None,
) -> Samples:
    """Send :meth:`CostQuery.requests`; any failure raises the backend's ``MetricsError``
    (a chargeback with a hole in it is worse than none)."""
    requests = query.requests()
    samples = Samples(queries=len(requests))
    answers = await bounded(
        [
            (f"{metric} at {at.isoformat()}", partial(backend.query, text, at))
            for metric, text, at in requests
        ],
        max_concurrency=max_concurrency,
        on_progress=on_progress,
    )
    for (metric, text, _), answer in zip(requests, answers, strict=True):
        if text.startswith("last_over_time("):
            for sample in answer.samples:
                if math.isfinite(sample.value):
                    samples.add_previous(metric, sample.labels, sample.value)
        else:
            for series in answer.series:
                samples.add_points(metric, series.labels, series.points)
    return samples


# -- the report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupRow:
    """One group's spend. ``None`` is "not computed" (the other source only)."""

    key: tuple[str, ...]
    """The values of the ``by`` labels, in order ("" where a series has no such label)."""
    reported_usd: Decimal | None
    tokens_usd: Decimal | None
    tokens: Mapping[str, int]
    """Tokens by type (input, output, cached_input) in the period."""
    unpriced_models: tuple[str, ...] = ()
    """Models with tokens but no price: their tokens are not in ``tokens_usd``."""
    disagreement: float | None = None
    """``(tokens - reported) / reported`` with ``--source both``; ``inf`` when reported is 0."""
    flagged: bool = False


@dataclass(frozen=True)
class CostReport:
    query: CostQuery
    groups: tuple[GroupRow, ...]
    total_reported_usd: Decimal | None
    total_tokens_usd: Decimal | None
    total_tokens: Mapping[str, int]
    threshold: float
    series: int
    """Series that contributed samples in the period."""
    born_series: int
    """Of them, series with no sample in the lookback: their first value counted from 0."""
    resets: int
    unpriced_models: tuple[str, ...]
    queries: int
    prices_source: str
    unfinished: bool = False
    """The period had not ended when the report was made: its figures are to date."""
    quantum: Decimal = QUANTUM
    """What each group was rounded to (half to even)."""


def _money(value: float, quantum: Decimal) -> Decimal:
    return Decimal(repr(value)).quantize(quantum, rounding=ROUND_HALF_EVEN)


def _resets(points: Sequence[tuple[int, float]], start: int, end: int, prev: float | None) -> int:
    count = 0
    last = prev
    for ts, value in points:
        if start <= ts < end:
            if last is not None and value < last:
                count += 1
            last = value
    return count


def _sum(values: Iterable[Decimal | None]) -> Decimal:
    # Decimal addition of values on one quantum is exact: the total is the rows' sum.
    return sum((v for v in values if v is not None), Decimal(0))


def _disagreement(reported: Decimal, tokens: Decimal) -> float:
    """Relative to the reported figure (what the agents themselves say they spent)."""
    if reported == 0:
        return 0.0 if tokens == 0 else math.inf
    return float((tokens - reported) / reported)


def _dearest_first(row: GroupRow) -> tuple[Decimal, tuple[str, ...]]:
    amount = row.reported_usd if row.reported_usd is not None else row.tokens_usd
    return (-(amount or Decimal(0)), row.key)


Group = tuple[str, ...]


@dataclass
class _Tally:
    """The period's increases, summed per group (and per model and token type)."""

    reported: dict[Group, list[float]] = field(default_factory=dict)
    tokens: dict[tuple[Group, str, str], float] = field(default_factory=dict)
    """(group, model, type) → tokens."""
    series: int = 0
    born: int = 0
    resets: int = 0


def _tally(samples: Samples, query: CostQuery) -> _Tally:
    """Each series' increase in the period by the exactness rule, added to its group."""
    start, end = query.period.start_ms, query.period.end_ms
    tally = _Tally()
    for metric, per_series in samples.points.items():
        previous = samples.previous.get(metric, {})
        for key, by_ts in per_series.items():
            points = sorted(by_ts.items())
            prev = previous.get(key)
            amount, born = increase(points, start, end, previous=prev)
            if not any(start <= ts < end for ts, _ in points):
                continue
            tally.series += 1
            tally.born += born
            tally.resets += _resets(points, start, end, prev)
            label_map = dict(key)
            group = query.group_of(label_map)
            if metric == COST_USD_TOTAL:
                tally.reported.setdefault(group, []).append(amount)
            else:
                slot = (group, label_map.get("model", ""), label_map.get("type", ""))
                tally.tokens[slot] = tally.tokens.get(slot, 0.0) + amount
    return tally


@dataclass
class _TokenCost:
    totals: dict[Group, dict[str, int]] = field(default_factory=dict)
    """Tokens by type per group."""
    cost: dict[Group, list[float]] = field(default_factory=dict)
    """The priced cost of each of the group's models."""
    unpriced: dict[Group, set[str]] = field(default_factory=dict)
    """Models with tokens but no price, per group."""


def _price_tokens(tokens: Mapping[tuple[Group, str, str], float], prices: PriceBook) -> _TokenCost:
    out = _TokenCost()
    per_model: dict[tuple[Group, str], dict[str, float]] = {}
    for (group, model, kind), count in tokens.items():
        per_model.setdefault((group, model), {})[kind] = count
        totals = out.totals.setdefault(group, {t: 0 for t in TOKEN_TYPES})
        totals[kind] = totals.get(kind, 0) + round(count)
    for (group, model), kinds in per_model.items():
        out.cost.setdefault(group, [])
        cost = prices.cost(
            model,
            round(kinds.get("input", 0.0)),
            round(kinds.get("output", 0.0)),
            round(kinds.get("cached_input", 0.0)),
        )
        if cost is None:
            if any(kinds.values()):
                out.unpriced.setdefault(group, set()).add(model or "(no model label)")
            continue
        out.cost[group].append(cost)
    return out


def _group_row(
    group: Group,
    reported: Decimal | None,
    priced: _TokenCost,
    tokens: Decimal | None,
    threshold: float,
) -> GroupRow:
    disagreement: float | None = None
    flagged = False
    # Tokens without a price make the comparison meaningless, not a disagreement.
    if reported is not None and tokens is not None and group not in priced.unpriced:
        disagreement = _disagreement(reported, tokens)
        flagged = abs(disagreement) > threshold
    return GroupRow(
        key=group,
        reported_usd=reported,
        tokens_usd=tokens,
        tokens=priced.totals.get(group, {t: 0 for t in TOKEN_TYPES}),
        unpriced_models=tuple(sorted(priced.unpriced.get(group, ()))),
        disagreement=disagreement,
        flagged=flagged,
    )


def build_report(
    samples: Samples,
    query: CostQuery,
    *,
    prices: PriceBook,
    prices_source: str = "the SDK's default price table",
    threshold: float = 0.05,
    now: datetime | None = None,
    quantum: Decimal = QUANTUM,
) -> CostReport:
    """Spend per group by the exactness rule (pure; ``now`` only marks an unfinished
    period)."""
    tally = _tally(samples, query)
    priced = _price_tokens(tally.tokens, prices)
    want_reported = query.source in ("reported", "both")
    want_tokens = query.source in ("tokens", "both")
    present: set[Group] = set()
    if want_reported:
        present |= set(tally.reported)
    if want_tokens:
        present |= set(priced.totals)
    rows = [
        _group_row(
            group,
            _money(math.fsum(tally.reported.get(group, [])), quantum) if want_reported else None,
            priced,
            _money(math.fsum(priced.cost.get(group, [])), quantum) if want_tokens else None,
            threshold,
        )
        for group in sorted(present)
    ]
    rows.sort(key=_dearest_first)
    all_tokens = {t: sum(r.tokens.get(t, 0) for r in rows) for t in TOKEN_TYPES}
    return CostReport(
        query=query,
        groups=tuple(rows),
        total_reported_usd=_sum(r.reported_usd for r in rows) if want_reported else None,
        total_tokens_usd=_sum(r.tokens_usd for r in rows) if want_tokens else None,
        total_tokens=all_tokens,
        threshold=threshold,
        series=tally.series,
        born_series=tally.born,
        resets=tally.resets,
        unpriced_models=tuple(sorted({m for s in priced.unpriced.values() for m in s})),
        queries=samples.queries,
        prices_source=prices_source,
        unfinished=now is not None and now < query.period.end,
        quantum=quantum,
    )
