"""The chargeback report for machines (JSON, CSV) and for people (a rich table).

JSON schema ``agentmedic.io/cost-report/v1`` (money as decimal strings with six places,
or two with ``--round cent``, so the groups add up to the total exactly in any language;
``null``: not computed)::

    {
      "schema": "agentmedic.io/cost-report/v1",
      "period": {"label": "2026-11", "timeZone": "Europe/Berlin",
                 "start": "2026-11-01T00:00:00+01:00",     # inclusive, ISO 8601 with offset
                 "end": "2026-12-01T00:00:00+01:00"},      # exclusive
      "source": "reported" | "tokens" | "both",
      "by": ["team", "model"],                 # the grouping, in column order
      "labels": {"team": "team", "namespace": "namespace", "agent": "agent", "model": "model"},
      "namespace": str | null,                 # the --namespace filter
      "rule": str,                             # the exactness rule, in words
      "prices": str | null,                    # where token prices came from (tokens, both)
      "threshold": float,                      # --source both: flag above this relative gap
      "groups": [{
        "key": {"team": str, "model": str},    # "" where the series carry no such label
        "reportedUSD": "123.456789" | null,
        "tokensUSD": "120.000000" | null,
        "tokens": {"input": int, "output": int, "cached_input": int},
        "disagreement": float | null,          # (tokens - reported) / reported; null if
                                               # not both, reported is 0, or unpriced
        "flagged": bool,                       # |disagreement| > threshold (or reported 0
                                               # and tokens not)
        "unpricedModels": [str]                # tokens of these models have no price
      }],                                      # dearest first
      "total": {"reportedUSD": str | null, "tokensUSD": str | null,
                "tokens": {"input": int, "output": int, "cached_input": int}},
      "series": int, "bornSeries": int, "resets": int, "queries": int,
      "warnings": [str]
    }

CSV: a header row, one row per group (the ``by`` columns, then the money and token
columns), and a last row whose first column is ``TOTAL``.
"""

from __future__ import annotations

import csv
import io
import math
from decimal import Decimal
from typing import Any

from agentmedic.api.durations import format_duration
from agentmedic.report.cost import TOKEN_TYPES, CostReport, GroupRow, exactness_rule

__all__ = ["SCHEMA", "csv_columns", "to_csv", "to_json_dict", "to_table", "warnings"]

SCHEMA = "agentmedic.io/cost-report/v1"
NONE = "(none)"
"""How the table shows a group whose series lack the label."""


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:f}"


def _wants(report: CostReport) -> tuple[bool, bool]:
    source = report.query.source
    return source in ("reported", "both"), source in ("tokens", "both")


def warnings(report: CostReport) -> list[str]:
    """What a reader of the figures must know: an unfinished period, unpriced models,
    series born in the period."""
    out = []
    if report.unfinished:
        out.append(
            f"the period ends at {report.query.period.end.isoformat()}, after this report: "
            "its figures are to date, not final"
        )
    if report.unpriced_models:
        out.append(
            "no price for model(s) "
            + ", ".join(report.unpriced_models)
            + ": their tokens are not in the tokens cost; add them to the --prices file"
        )
    if report.born_series:
        out.append(
            f"{report.born_series} series had no sample in the "
            f"{format_duration(report.query.lookback)} before their first one in the "
            "period; their first value was counted from zero"
        )
    return out


def _disagreement(row: GroupRow) -> float | None:
    d = row.disagreement
    return None if d is None or math.isinf(d) else d


def to_json_dict(report: CostReport) -> dict[str, Any]:
    """The report as the documented JSON structure (``json.dumps`` it)."""
    q = report.query
    _, tokens = _wants(report)
    return {
        "schema": SCHEMA,
        "period": {
            "label": q.period.label,
            "timeZone": q.period.zone,
            "start": q.period.start.isoformat(),
            "end": q.period.end.isoformat(),
        },
        "source": q.source,
        "by": list(q.by),
        "labels": {d: q.label_of(d) for d in ("team", "namespace", "agent", "model")},
        "namespace": q.namespace,
        "rule": exactness_rule(report.quantum),
        "prices": report.prices_source if tokens else None,
        "threshold": report.threshold,
        "groups": [
            {
                "key": dict(zip(q.by, row.key, strict=True)),
                "reportedUSD": _money(row.reported_usd),
                "tokensUSD": _money(row.tokens_usd),
                "tokens": {t: row.tokens.get(t, 0) for t in TOKEN_TYPES},
                "disagreement": _disagreement(row),
                "flagged": row.flagged,
                "unpricedModels": list(row.unpriced_models),
            }
            for row in report.groups
        ],
        "total": {
            "reportedUSD": _money(report.total_reported_usd),
            "tokensUSD": _money(report.total_tokens_usd),
            "tokens": {t: report.total_tokens.get(t, 0) for t in TOKEN_TYPES},
        },
        "series": report.series,
        "bornSeries": report.born_series,
        "resets": report.resets,
        "queries": report.queries,
        "warnings": warnings(report),
    }


def csv_columns(report: CostReport) -> list[str]:
    reported, tokens = _wants(report)
    columns: list[str] = list(report.query.by)
    if reported:
        columns.append("reported_usd")
    if tokens:
        columns += ["tokens_usd", *(f"{t}_tokens" for t in TOKEN_TYPES)]
    if reported and tokens:
        columns += ["disagreement", "flagged"]
    return columns


def _values(report: CostReport, row: GroupRow | None) -> list[str]:
    reported, tokens = _wants(report)
    if row is None:
        out = ["TOTAL"] + [""] * (len(report.query.by) - 1)
        money = (report.total_reported_usd, report.total_tokens_usd)
        counts = report.total_tokens
    else:
        out = list(row.key)
        money = (row.reported_usd, row.tokens_usd)
        counts = row.tokens
    if reported:
        out.append(_money(money[0]) or "")
    if tokens:
        out += [_money(money[1]) or "", *(str(counts.get(t, 0)) for t in TOKEN_TYPES)]
    if reported and tokens:
        if row is None:
            out += ["", ""]
        else:
            d = _disagreement(row)
            out += ["" if d is None else repr(d), "yes" if row.flagged else ""]
    return out


def to_csv(report: CostReport) -> str:
    """A header row, a row per group, a ``TOTAL`` row last."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(csv_columns(report))
    for row in report.groups:
        writer.writerow(_values(report, row))
    writer.writerow(_values(report, None))
    return buffer.getvalue()


def _usd(value: Decimal | None) -> str:
    return "-" if value is None else f"${value:,f}"


def to_table(report: CostReport) -> Any:
    """A rich renderable: the groups, a TOTAL row, and the notes."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    q = report.query
    reported, tokens = _wants(report)
    title = (
        f"Spend by {', '.join(q.by)}, {q.period.label} "
        f"[{q.period.start.isoformat()}, {q.period.end.isoformat()}) {q.period.zone}"
    )
    table = Table(title=title, title_justify="left", header_style="bold", show_footer=False)
    for dimension in q.by:
        table.add_column(dimension.capitalize(), overflow="fold")
    if reported:
        table.add_column("Reported", justify="right", overflow="fold")
    if tokens:
        table.add_column("Tokens x prices", justify="right", overflow="fold")
        table.add_column("Input tok", justify="right", overflow="fold")
        table.add_column("Output tok", justify="right", overflow="fold")
    if reported and tokens:
        table.add_column("Gap", justify="right", overflow="fold")

    def cells(row: GroupRow | None) -> list[Any]:
        if row is None:
            out: list[Any] = [Text("TOTAL", "bold")] + [""] * (len(q.by) - 1)
            money = (report.total_reported_usd, report.total_tokens_usd)
            counts = report.total_tokens
        else:
            out = [value or NONE for value in row.key]
            money = (row.reported_usd, row.tokens_usd)
            counts = row.tokens
        if reported:
            out.append(_usd(money[0]))
        if tokens:
            out += [_usd(money[1]), f"{counts.get('input', 0):,}", f"{counts.get('output', 0):,}"]
        if reported and tokens:
            if row is None:
                out.append("")
            else:
                d = row.disagreement
                if row.unpriced_models:
                    text = "unpriced"
                elif d is None:
                    text = "-"
                else:
                    text = "no report" if math.isinf(d) else f"{d:+.1%}"
                out.append(Text(text, "bold red" if row.flagged else ""))
        return out

    for row in report.groups:
        table.add_row(*cells(row))
    table.add_section()
    table.add_row(*cells(None))
    parts: list[Any] = [table]
    flagged = [r for r in report.groups if r.flagged]
    if reported and tokens:
        parts.append(
            Text(
                f"{len(flagged)} group(s) where tokens x prices and the reported cost differ "
                f"by more than {report.threshold:.1%} of the reported cost.",
                "bold red" if flagged else "dim",
            )
        )
    parts.append(
        Text(
            f"{report.series} series, {report.resets} counter reset(s), {report.queries} "
            "queries. Exact to the sample: each increase between two samples counts in the "
            "period of the later one; see docs/cost-report.md.",
            "dim",
        )
    )
    parts.extend(Text(f"warning: {w}", "yellow") for w in warnings(report))
    return Group(*parts)
