"""``agentmedic fleet``: which agents are expensive, unreliable, slow or stuck on a slow tool."""

from __future__ import annotations

import argparse
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
from agentmedic.cli._errors import fail
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
"""

EPILOG = """\
times (--at): now, now-1h, 2024-03-05T06:00:00Z or unix seconds
exit codes: 0 done; 1 backend failure or no agents; 2 invalid arguments or input files
-o json|yaml: schema agentmedic.io/fleet-report/v1, documented in agentmedic.report.render

examples:
  agentmedic fleet --prometheus http://prometheus:9090
  agentmedic fleet --prometheus https://mimir/prometheus --tenant team-a \\
      --bearer-token-file /var/run/secrets/token -n agents --window 7d -o json
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
    from agentmedic.report.fleet import FleetQuery, analyse, gather, sort_rows
    from agentmedic.report.render import to_csv, to_json_dict, to_table

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
    emit_report(
        args.output,
        document=lambda: to_json_dict(report),
        csv=lambda: to_csv(report),
        table=lambda: to_table(
            report,
            rows=sort_rows(report.agents, args.sort),
            limit=args.limit,
            wide=args.output == "wide",
        ),
    )
    return EXIT_OK
