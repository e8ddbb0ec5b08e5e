"""``agentmedic fleet``: which agents are expensive, unreliable, slow or stuck on a slow tool."""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from agentmedic.cli._backend import (
    add_backend_arguments,
    add_metrics_layout_arguments,
    add_namespace_arguments,
    backend_config,
    input_problem,
    query_backend,
)
from agentmedic.cli._errors import CliError, fail
from agentmedic.cli._finance import add_price_arguments, namespace_teams, parse_by, price_book
from agentmedic.cli._output import add_output_argument, emit_report

EXIT_OK = 0
EXIT_FAILED = 1
"""The backend could not answer, or no agent has metrics in the window."""
EXIT_USAGE = 2

DESCRIPTION = """\
A report on every agent with metrics in the window: its spend and share of the
fleet's, executions, success rate, p95 latency, tokens per execution, current model,
a performance tier (fast / normal / slow: natural breaks in the p95s, only at gaps of
25%), its slowest and most error-prone tools, and flags for agents far above
the fleet in cost per execution, error rate, latency or tokens (robust z-score above
3.5 and 25% above the median; agents with fewer than --min-executions executions are not
ranked).

Ten instant queries answer it for the whole fleet, whatever its size: the metric
catalog's built-in metrics grouped by agent and namespace, agent_info for the model,
and the tool series grouped by tool.

Two more check the agents' cost sources: each agent's reported cost
(agent_cost_usd_total) against its tokens x a price list (agent_tokens_total); agents
whose two figures differ by more than --cost-threshold percent of the reported one are
listed with both. --by team|namespace|agent|model adds the spend per group, grouped as
`agentmedic report cost` does (over the rolling window, with Prometheus' increase();
for invoices over calendar periods use report cost).
"""

EPILOG = """\
times (--at): now, now-1h, 2024-03-05T06:00:00Z or unix seconds
prices: --price-list FILE (a ModelPriceList), --prices FILE, the cluster's
  ModelPriceList with --kubeconfig or --context, else the SDK's table
teams: the series' --team-label; with --kubeconfig/--context, a series without one
  takes its Namespace's --team-label label
exit codes: 0 done; 1 backend failure or no agents; 2 invalid arguments or input files
-o json|yaml: schema agentmedic.io/fleet-report/v1, documented in agentmedic.report.render

examples:
  agentmedic fleet --prometheus http://prometheus:9090
  agentmedic fleet --prometheus https://mimir/prometheus --tenant team-a \\
      --bearer-token-file /var/run/secrets/token -n agents --window 7d -o json
  agentmedic fleet --prometheus http://prometheus:9090 --window 7d --by team \\
      --price-list prices.yaml --cost-threshold 2
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "fleet",
        help="report cost, reliability and speed of every agent",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_namespace_arguments(p, "agents")
    p.add_argument("--window", default="24h", help="the period reported on (default: 24h)")
    p.add_argument("--at", default="now", metavar="T", help="end of the window (default: now)")
    add_output_argument(
        p,
        extra=("csv",),
        legacy_format=True,
        help_suffix="; wide adds cost, error and tool columns",
    )
    p.add_argument(
        "--sort",
        choices=["cost", "executions", "errors", "latency", "name"],
        default="cost",
        help="table order (default: cost); JSON and CSV are always dearest first",
    )
    p.add_argument("--limit", type=int, default=0, help="table rows to show (default: all)")
    p.add_argument(
        "--min-executions",
        type=int,
        default=20,
        help="executions an agent needs to get a tier and anomaly flags (default: 20)",
    )
    p.add_argument(
        "--min-tool-calls",
        type=int,
        default=10,
        help="calls a tool needs to appear in the fleet's tool rankings (default: 10)",
    )
    p.add_argument("--top", type=int, default=5, help="tools per ranking (default: 5)")
    p.add_argument("--agent-label", default="agent", help="the metrics label with the agent")
    p.add_argument(
        "--by",
        metavar="DIMS",
        help="add the spend per team, namespace, agent and/or model, comma-separated; "
        "-o csv then prints the groups",
    )
    p.add_argument("--team-label", default="team", help="the metrics label with the team")
    p.add_argument(
        "--cost-threshold",
        type=float,
        default=5.0,
        metavar="PERCENT",
        help="list agents whose reported cost and tokens x prices differ by more than this "
        "share of the reported cost (default: 5)",
    )
    add_price_arguments(p)
    p.add_argument(
        "--kubeconfig",
        help="read the cluster's ModelPriceList and the Namespaces' team labels with this "
        "kubeconfig",
    )
    p.add_argument("--context", help="kubeconfig context (implies reading the cluster)")
    add_metrics_layout_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_backend_arguments(p)
    p.set_defaults(func=run)


def _fail(message: str, code: int) -> int:
    return fail("fleet", message, code)


def run(args: argparse.Namespace) -> int:
    if not args.prometheus:
        return _fail("--prometheus URL is required (or set AGENTMEDIC_PROMETHEUS_URL)", EXIT_USAGE)
    from agentmedic.api.durations import parse_duration
    from agentmedic.backtest.timeparse import parse_time
    from agentmedic.metrics import MetricsError, load_catalog
    from agentmedic.report.fleet import FleetQuery, analyse, gather

    try:
        window = parse_duration(args.window)
        if window <= timedelta(0):
            raise ValueError(f"--window {args.window}: must be longer than 0s, e.g. 24h")
        at = parse_time(args.at, datetime.now(UTC))
        catalog = load_catalog(args.catalog_overrides_file)
        config = backend_config(args)
        query = FleetQuery(
            at=at,
            window=window,
            namespace=args.namespace,
            agent_label=args.agent_label,
            namespace_label=args.namespace_label or None,
            catalog=catalog,
        )
        query.queries()  # label names and templates checked before any request
        by = parse_by(args.by) if args.by else ()
        cost_query, prices = _cost_setup(args, at, window, by)
    except CliError as exc:
        return _fail(exc.message, exc.code)
    except (ValueError, KeyError, OSError) as exc:
        return _fail(input_problem(exc), EXIT_USAGE)
    if args.limit < 0 or args.min_executions < 0 or args.min_tool_calls < 0 or args.top < 0:
        return _fail("--limit, --min-executions, --min-tool-calls and --top cannot be negative", 2)

    try:
        data = query_backend(
            config, "querying the fleet", gather, query, progress=not args.no_progress
        )
    except MetricsError as exc:
        return _fail(str(exc), EXIT_FAILED)
    costs = _check_costs(config, cost_query, prices, args.cost_threshold / 100, data.warnings)
    report = analyse(
        data,
        query,
        min_executions=args.min_executions,
        min_tool_calls=args.min_tool_calls,
        top=args.top,
    )
    if not report.agents:
        where = f" in namespace {args.namespace}" if args.namespace else ""
        return _fail(
            f"no agent has metrics{where} in the {args.window} before {at.isoformat()} "
            f"(looked for agent_executions_total with a {args.agent_label!r} label)",
            EXIT_FAILED,
        )
    if by and costs is None:
        why = next(w for w in report.warnings if w.startswith("cost check not done"))
        return _fail(f"--by needs the cost queries, which failed ({why})", EXIT_FAILED)
    _emit(args, report, costs, grouped=bool(by))
    return EXIT_OK


def _cost_setup(
    args: argparse.Namespace, at: datetime, window: timedelta, by: tuple[Any, ...]
) -> tuple[Any, tuple[Any, str]]:
    """The cost-source check's query (teams read when grouping by team) and prices."""
    from agentmedic.report.fleet_cost import FleetCostQuery

    if not 0 <= args.cost_threshold < 1e6:
        raise ValueError(
            f"--cost-threshold {args.cost_threshold:g} must be a percentage of 0 or more"
        )
    query = FleetCostQuery(
        at=at,
        window=window,
        by=by or ("agent",),
        namespace=args.namespace,
        agent_label=args.agent_label,
        namespace_label=args.namespace_label or "namespace",
        team_label=args.team_label,
    )
    query.queries()
    prices = price_book(args)
    if "team" in by:
        query = replace(query, namespace_teams=namespace_teams(args, args.team_label))
    return query, prices


def _check_costs(
    config: Any, query: Any, prices: tuple[Any, str], threshold: float, warnings: list[str]
) -> Any:
    """The check's figures, or None (with a warning) when its queries failed."""
    from agentmedic.metrics import MetricsError
    from agentmedic.report.fleet_cost import analyse_costs, gather_costs

    try:
        data = query_backend(config, "checking cost sources", gather_costs, query, progress=False)
    except MetricsError as exc:
        warnings.append(f"cost check not done: {exc}")
        return None
    book, source = prices
    costs = analyse_costs(data, query, prices=book, prices_source=source, threshold=threshold)
    warnings.extend(costs.warnings)
    return costs


def _emit(args: argparse.Namespace, report: Any, costs: Any, *, grouped: bool) -> None:
    from agentmedic.report.fleet import sort_rows
    from agentmedic.report.fleet_cost_render import groups_csv, table_with_costs, with_costs
    from agentmedic.report.render import to_csv, to_json_dict, to_table

    emit_report(
        args.output,
        document=lambda: with_costs(to_json_dict(report), costs, grouped=grouped),
        csv=lambda: groups_csv(costs) if grouped and costs is not None else to_csv(report),
        table=lambda: table_with_costs(
            to_table(
                report,
                rows=sort_rows(report.agents, args.sort),
                limit=args.limit,
                wide=args.output == "wide",
            ),
            costs,
            grouped=grouped,
        ),
    )
