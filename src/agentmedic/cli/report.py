"""``agentmedic report``: reports for people outside on-call; ``cost`` is the chargeback."""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from agentmedic.cli._backend import (
    add_backend_arguments,
    add_namespace_arguments,
    backend_config,
    input_problem,
    query_backend,
)
from agentmedic.cli._errors import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, CliError, fail
from agentmedic.cli._finance import add_price_arguments, namespace_teams, price_book
from agentmedic.cli._output import add_output_argument, emit_report

EXIT_FAILED = EXIT_FINDINGS
"""The backend could not answer, or no series of the source exist in the period."""

COST_DESCRIPTION = """\
Spend per team, namespace, agent or model over an exact calendar period, for the
monthly close. Exact to the sample: the raw counter samples of the period are read
(plus each series' last sample before it) and every increase between two samples is
counted in the period holding the later sample; a drop is a counter reset. Groups add
up to the total exactly (each group rounded half to even to six decimal places, or
to the cent with --round cent). See docs/cost-report.md.

Cost sources (--cost-source): reported (agent_cost_usd_total, the agents' own
figure), priceList (agent_tokens_total x a price list) or both, flagging groups whose
two figures differ by more than --threshold. Prices: --price-list FILE (a
ModelPriceList), --prices FILE, the cluster's ModelPriceList with --kubeconfig or
--context, else the SDK's table. See docs/chargeback.md for the monthly close.
"""

COST_EPILOG = """\
periods: --period 2026-11 (month), 2026-W45 (ISO week), 2026-11-03 (day), or
  --from 2026-11-01 --to 2026-11-16 (--to exclusive; dates are local midnights in
  --time-zone)
teams: the series' --team-label; with --kubeconfig/--context, a series without one
  takes its Namespace's --team-label label
exit codes: 0 done; 1 backend failure or no series; 2 invalid arguments
-o json|yaml: schema agentmedic.io/cost-report/v1, documented in agentmedic.report.cost_render

examples:
  agentmedic report cost --prometheus http://prometheus:9090 --period 2026-11 --by team
  agentmedic report cost --prometheus http://prometheus:9090 --period 2026-11 \\
      --time-zone Europe/Berlin --by team,model --cost-source both -o csv
  agentmedic report cost --prometheus http://prometheus:9090 --period 2026-11 \\
      --cost-source priceList --price-list prices.yaml --by model
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="reports for finance: spend per team over a calendar period",
        description="Reports over the agents' metrics. `report cost` is the chargeback.",
    )
    reports = p.add_subparsers(dest="report", metavar="REPORT", title="reports")
    p.set_defaults(func=lambda args: _usage(p, args))
    cost = reports.add_parser(
        "cost",
        help="spend per team, namespace, agent or model over an exact period",
        description=COST_DESCRIPTION,
        epilog=COST_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    when = cost.add_argument_group("period (one of --period or --from/--to)")
    when.add_argument("--period", help="2026-11, 2026-W45 or 2026-11-03")
    when.add_argument("--from", dest="start", metavar="T", help="start (inclusive)")
    when.add_argument("--to", dest="end", metavar="T", help="end (exclusive)")
    when.add_argument(
        "--time-zone",
        "--tz",
        dest="tz",
        default="UTC",
        metavar="ZONE",
        help="IANA time zone of the period, e.g. Europe/Berlin (default: UTC)",
    )
    cost.add_argument(
        "--by",
        default="team",
        help="group by team, namespace, agent and/or model, comma-separated (default: team)",
    )
    cost.add_argument(
        "--cost-source",
        dest="source",
        choices=["reported", "priceList", "both"],
        default="reported",
        help="reported: the agents' cost counters; priceList: their tokens x the price "
        "list; both: both, compared (default: reported)",
    )
    # The first spelling, with tokens for priceList; kept hidden for one release.
    cost.add_argument(
        "--source",
        dest="source",
        choices=["reported", "tokens", "both"],
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )
    add_price_arguments(cost)
    cost.add_argument(
        "--threshold",
        type=float,
        default=5.0,
        metavar="PERCENT",
        help="--source both: flag groups whose figures differ by more (default: 5)",
    )
    cost.add_argument(
        "--round",
        choices=["micro", "cent"],
        default="micro",
        help="round each group half to even to a millionth of a dollar or to a cent; the "
        "total is the sum of the rounded groups (default: micro)",
    )
    add_output_argument(cost, extra=("csv",), help_suffix="; wide is table")
    cost.add_argument("--team-label", default="team", help="the series label with the team")
    cost.add_argument("--agent-label", default="agent", help="the series label with the agent")
    cost.add_argument(
        "--namespace-label", default="namespace", help="the series label with the namespace"
    )
    add_namespace_arguments(cost, "series")
    cost.add_argument(
        "--kubeconfig",
        help="read the cluster's ModelPriceList and the Namespaces' team labels with this "
        "kubeconfig",
    )
    cost.add_argument("--context", help="kubeconfig context (implies reading the cluster)")
    cost.add_argument(
        "--lookback",
        default="1d",
        help="how far before the period each series' last sample is searched (default: 1d)",
    )
    cost.add_argument(
        "--chunk", default="6h", help="raw samples are read this much at a time (default: 6h)"
    )
    cost.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_backend_arguments(cost)
    cost.set_defaults(func=run_cost)


def _usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    parser.print_help()
    return fail("report", "name a report, e.g. agentmedic report cost --period 2026-11")


def _fail(message: str, code: int) -> int:
    return fail("report cost", message, code)


def _query(args: argparse.Namespace) -> Any:
    from agentmedic.api.durations import parse_duration
    from agentmedic.report.cost import DIMENSIONS, CostQuery, explicit_period, parse_period

    if args.period and (args.start or args.end):
        raise ValueError("give --period or --from/--to, not both")
    if args.period:
        period = parse_period(args.period, args.tz)
    elif args.start and args.end:
        period = explicit_period(args.start, args.end, args.tz)
    else:
        raise ValueError("give --period 2026-11 (or 2026-W45, 2026-11-03) or both --from and --to")
    by = tuple(part.strip() for part in args.by.split(",") if part.strip())
    unknown = [b for b in by if b not in DIMENSIONS]
    if unknown or not by:
        raise ValueError(
            f"--by {args.by!r}: use team, namespace, agent or model, comma-separated "
            "(e.g. --by team,model)"
        )
    if len(set(by)) != len(by):
        raise ValueError(f"--by {args.by!r} names a dimension twice")
    if not 0 <= args.threshold < 1e6:
        raise ValueError(f"--threshold {args.threshold:g} must be a percentage of 0 or more")
    durations: dict[str, timedelta] = {}
    for flag in ("lookback", "chunk"):
        try:
            durations[flag] = parse_duration(getattr(args, flag))
        except ValueError:
            raise ValueError(
                f"--{flag} {getattr(args, flag)!r} is not a duration; write e.g. 1d, 6h, 30m"
            ) from None
        if durations[flag] <= timedelta(0):
            raise ValueError(f"--{flag} must be positive")
    query = CostQuery(
        period=period,
        by=by,
        source="tokens" if args.source == "priceList" else args.source,
        team_label=args.team_label,
        agent_label=args.agent_label,
        namespace_label=args.namespace_label,
        namespace=args.namespace,
        lookback=durations["lookback"],
        chunk=durations["chunk"],
    )
    query.requests()  # label names checked before any request
    return query


def run_cost(args: argparse.Namespace) -> int:
    if not args.prometheus:
        return _fail("--prometheus URL is required (or set AGENTMEDIC_PROMETHEUS_URL)", EXIT_USAGE)
    from agentmedic.metrics import MetricsError
    from agentmedic.metrics.pricing import PriceBook
    from agentmedic.report.cost import CENT, QUANTUM, build_report, gather
    from agentmedic.report.cost_render import to_csv, to_json_dict, to_table

    try:
        query = _query(args)
        # Price flags are checked even for reported cost; the cluster is read only when
        # tokens are priced.
        priced = query.source != "reported" or args.price_list or args.prices
        prices, prices_source = price_book(args) if priced else (None, "")
        if "team" in query.by:
            query = replace(query, namespace_teams=namespace_teams(args, query.team_label))
        config = backend_config(args)
    except CliError as exc:
        return _fail(exc.message, exc.code)
    except ValueError as exc:
        return _fail(input_problem(exc), EXIT_USAGE)

    try:
        samples = query_backend(
            config, "reading counters", gather, query, progress=not args.no_progress
        )
    except MetricsError as exc:
        return _fail(str(exc), EXIT_FAILED)
    report = build_report(
        samples,
        query,
        prices=prices or PriceBook.default(),
        prices_source=prices_source,
        threshold=args.threshold / 100,
        now=datetime.now(UTC),
        quantum=CENT if args.round == "cent" else QUANTUM,
    )
    if not report.series:
        metrics = " and ".join(query.metrics())
        return _fail(
            f"no {metrics} series with a {query.agent_label!r} label have samples in "
            f"[{query.period.start.isoformat()}, {query.period.end.isoformat()})",
            EXIT_FAILED,
        )
    emit_report(
        args.output,
        document=lambda: to_json_dict(report),
        csv=lambda: to_csv(report),
        table=lambda: to_table(report),
    )
    return EXIT_OK
