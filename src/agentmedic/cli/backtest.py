"""``agentmedic backtest FILE...``: what a policy and finance's budgets would have done over
past metrics."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentmedic.cli._backend import (
    add_backend_arguments,
    add_metrics_layout_arguments,
    backend_config,
    input_problem,
)
from agentmedic.cli._errors import CliError, fail
from agentmedic.cli._output import add_output_argument, console, emit
from agentmedic.cli._progress import QueryProgress

if TYPE_CHECKING:
    from agentmedic.api.types import AgentPolicy
    from agentmedic.backtest.budgets import BudgetDoc
    from agentmedic.backtest.history import OnQuery
    from agentmedic.cli._backtest_inputs import Inputs
    from agentmedic.metrics import BackendConfig

EXIT_OK = 0
EXIT_FAILED = 1
"""No data in the range, the backend failed, or the plot could not be written."""
EXIT_USAGE = 2
"""An invalid policy or invalid arguments."""
MAX_EVALUATIONS = 1_000_000
"""Evaluation times a backtest replays at most: a year at a one-minute step fits."""

DESCRIPTION = """\
Try a policy on history before trusting it. The policy's rules and budget are
replayed over the agents' metrics between --from and --to, every --step, with the
same engine the operator runs, and every decision it would have made is reported
with its time, agent, rule, evidence and action, with totals (agents disabled,
model downgrades, jobs, notifications and pages, and what the guardrails
suppressed).

The history is fetched with range queries, one per distinct metric and window for
all agents (batched like the live loop, split in chunks of 11,000 points). A
calendar budget's spend so far is the exact query at each period's first step
plus the per-step spend after it (see the JSON's history.spendCheck for how close
that came to the exact query). The policy's own decisions count as applied for
cooldowns, rate limits and maxDisabledPercent, but the history is what it was:
the backtest shows what the policy would have decided, not what the fleet would
have done under it.

Budgets (AgentBudget and ClusterAgentBudget documents, in the policy's file or
others, with or without a policy) are replayed over the same range: spend so far
per calendar period in the budget's time zone (or rolling), read from the raw
counters since the first period's start, the forecast, and when each stage would
have been reached (on spend or on forecast). costSource priceList budgets price
the token counters with --price-list (a ModelPriceList file) or the SDK's table.
See docs/backtest.md.
"""

EPILOG = """\
times: now, now-7d, now-1h30m, 2024-03-05 (00:00 UTC), 2024-03-05T06:00:00Z, unix seconds
exit codes: 0 done; 1 no data in the range, backend or plot failure; 2 invalid policy/arguments
-o json|yaml follow a JSON Schema (schemaVersion 1): print it with --print-schema

examples:
  agentmedic backtest policy.yaml --prometheus http://prometheus:9090 --from now-7d --to now
  agentmedic backtest policy.yaml --prometheus https://mimir/prometheus --tenant team-a \\
      --bearer-token-file /var/run/secrets/token --from 2024-03-01 --to 2024-03-08 \\
      -o json --plot backtest.html
  agentmedic backtest team-budget.yaml --prometheus http://prometheus:9090 \\
      --from 2026-11-01 --to 2026-12-01 --step 10m --plot budget.png
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "backtest",
        help="replay a policy over past metrics and report what it would have done",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="manifests: one AgentPolicy and/or AgentBudget and ClusterAgentBudget documents",
    )
    p.add_argument("--from", dest="start", metavar="T", help="start of the range (required)")
    p.add_argument("--to", dest="end", metavar="T", default="now", help="end (default: now)")
    p.add_argument("--step", default="1m", help="time between evaluations (default: 1m)")
    p.add_argument(
        "-n",
        "--namespace",
        help="the agents' namespace (default: the policy's; an AgentBudget's without one)",
    )
    p.add_argument(
        "--agents",
        type=lambda v: [s.strip() for s in v.split(",") if s.strip()],
        help="comma-separated agent names (default: every agent with history in the namespace)",
    )
    add_output_argument(p, legacy_format=True, help_suffix="; wide is table")
    p.add_argument("--plot", type=Path, metavar="FILE", help="also draw FILE.png or FILE.html")
    p.add_argument("--policy-name", help="the AgentPolicy to use when the file holds several")
    p.add_argument(
        "--kubeconfig",
        help="list the Namespaces a ClusterAgentBudget's namespaceSelector picks with this "
        "kubeconfig (nothing else is read from the cluster)",
    )
    p.add_argument("--context", help="kubeconfig context (implies reading the cluster)")
    p.add_argument(
        "--price-list",
        type=Path,
        metavar="FILE",
        help="a ModelPriceList file pricing the tokens of costSource priceList budgets "
        "(default: the SDK's table)",
    )
    p.add_argument(
        "--respect-dry-run",
        action="store_true",
        help="replay a dryRun policy as dry run (by default it is replayed as if enabled)",
    )
    add_metrics_layout_arguments(p)
    add_backend_arguments(p, timeout=60.0)
    p.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="range queries in flight at once (default: 4; lower it for a small backend)",
    )
    p.add_argument("--print-schema", action="store_true", help="print the JSON Schema and exit")
    p.set_defaults(func=run)


def _fail(message: str, code: int) -> int:
    return fail("backtest", message, code)


def run(args: argparse.Namespace) -> int:
    if args.print_schema:
        from agentmedic.backtest.report import json_schema

        print(json.dumps(json_schema(), indent=2))
        return EXIT_OK
    if not args.files:
        return _fail(
            "name the policy or budget file(s): agentmedic backtest POLICY.yaml [BUDGET.yaml ...]",
            EXIT_USAGE,
        )
    if not args.prometheus:
        return _fail("--prometheus URL is required (or set AGENTMEDIC_PROMETHEUS_URL)", EXIT_USAGE)
    if not args.start:
        return _fail("--from is required, e.g. --from now-7d", EXIT_USAGE)
    if args.plot is not None and args.plot.suffix.lower() not in (".png", ".html", ".htm"):
        return _fail(f"--plot {args.plot}: use a file name ending in .png or .html", EXIT_USAGE)

    from agentmedic.api.durations import parse_duration
    from agentmedic.backtest.timeparse import parse_time

    now = datetime.now(UTC)
    try:
        start = parse_time(args.start, now)
        end = parse_time(args.end, now)
        step = parse_duration(args.step)
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if step <= timedelta(0):
        return _fail("--step must be positive, e.g. 1m", EXIT_USAGE)
    if not 1 <= args.concurrency <= 64:
        return _fail("--concurrency must be between 1 and 64", EXIT_USAGE)
    if end <= start:
        return _fail(
            f"--to ({end.isoformat()}) must be after --from ({start.isoformat()})", EXIT_USAGE
        )
    if (end - start) / step > MAX_EVALUATIONS:
        return _fail(
            f"--from/--to/--step ask for {int((end - start) / step):,} evaluations (at most "
            f"{MAX_EVALUATIONS:,}); use a larger --step or a shorter range",
            EXIT_USAGE,
        )

    inputs = _inputs(args)
    if isinstance(inputs, int):
        return inputs
    from agentmedic.cli._backtest_inputs import resolve_namespace_selectors
    from agentmedic.cli._finance import cluster_given
    from agentmedic.metrics import load_catalog

    try:
        config = backend_config(args)
        catalog = load_catalog(args.catalog_overrides_file)
        prices = _prices(args) if inputs.budgets else None
        if cluster_given(args):
            inputs.budgets = resolve_namespace_selectors(inputs.budgets, args)
    except CliError as exc:
        return _fail(exc.message, exc.code)
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except OSError as exc:
        return _fail(input_problem(exc), EXIT_USAGE)

    from agentmedic.backtest.runner import BacktestOptions

    options = BacktestOptions(
        start=start,
        end=end,
        step=step,
        namespace=args.namespace,
        agents=args.agents,
        namespace_label=args.namespace_label or None,
        respect_dry_run=args.respect_dry_run,
        catalog=catalog,
        max_concurrency=args.concurrency,
    )
    return _execute(inputs.policy, inputs.budgets, config, options, prices, args)


def _inputs(args: argparse.Namespace) -> Inputs | int:
    """The files' policy and budgets, or the exit code of the one-line refusal."""
    from agentmedic.cli._backtest_inputs import load_inputs
    from agentmedic.cli._finance import cluster_given

    inputs = load_inputs(
        [Path(f) for f in args.files], args.policy_name, args.namespace, cluster=cluster_given(args)
    )
    if not inputs.problems:
        return inputs
    problems = inputs.problems
    more = f"{len(problems) - 1} more problem(s); " if len(problems) > 1 else ""
    files = " ".join(args.files)
    return _fail(f"{problems[0]} ({more}`agentmedic validate {files}` checks the file)", EXIT_USAGE)


def _prices(args: argparse.Namespace) -> tuple[Any, str]:
    from agentmedic.cli._finance import price_list_from_file
    from agentmedic.metrics.pricing import PRICES_AS_OF, PriceBook

    if args.price_list is None:
        return PriceBook.default(), f"the SDK's table (as of {PRICES_AS_OF})"
    return price_list_from_file(args.price_list), f"{args.price_list} (ModelPriceList)"


def _execute(
    policy: AgentPolicy | None,
    budgets: list[BudgetDoc],
    config: BackendConfig,
    options: Any,
    prices: tuple[Any, str] | None,
    args: argparse.Namespace,
) -> int:
    from agentmedic.backtest.budget_history import replay_budgets
    from agentmedic.backtest.history import BacktestDataError
    from agentmedic.backtest.runner import run_backtest
    from agentmedic.metrics import PrometheusBackend

    book, source = prices if prices is not None else (None, "")

    async def go(progress: OnQuery) -> tuple[Any, Any]:
        async with PrometheusBackend(config) as backend:
            result = run = None
            if policy is not None:
                result = await run_backtest(
                    policy, backend, options, backend_url=config.url, on_query=progress
                )
            if budgets:
                run = await replay_budgets(
                    backend, budgets, start=options.start, end=options.end, step=options.step,
                    namespace_label=options.namespace_label or "namespace",
                    agents=options.agents, prices=book, prices_source=source, on_query=progress,
                )  # fmt: skip
            return result, run

    with QueryProgress("fetching history", plain_lines=True) as progress:
        try:
            result, run = asyncio.run(go(progress.query))
        except BacktestDataError as exc:
            return _fail(str(exc), EXIT_FAILED)
        if result is not None:
            progress.phase(
                f"replayed {result.history.grid.size} evaluations of "
                f"{len(result.history.agents)} agents"
            )
        if run is not None:
            progress.phase(f"replayed {len(run.replays)} budget(s)")
    if result is None and not any(r.agents for r in run.replays):
        return _fail(
            "no agent in the budgets' namespaces has cost history between "
            f"{options.start.isoformat()} and {options.end.isoformat()}",
            EXIT_FAILED,
        )
    return _render(result, run, args)


def _render(result: Any, run: Any, args: argparse.Namespace) -> int:
    from agentmedic.backtest.plot import PlotError, write_plot

    started = time.perf_counter()
    code = EXIT_OK
    if args.plot is not None:
        try:
            write_plot(result, args.plot, budgets=run)
            print(f"plot written to {args.plot}", file=sys.stderr)
        except PlotError as exc:
            code = _fail(str(exc), EXIT_FAILED)
    if result is not None:
        result.timings.render = time.perf_counter() - started
    if args.output in ("json", "yaml"):
        emit(_document(result, run), args.output)
        return code
    out = console()
    if result is not None:
        from agentmedic.backtest.table import render_table

        render_table(result, out)
    if run is not None:
        from agentmedic.backtest.budget_report import render_budgets

        render_budgets(run, out)
    return code


def _document(result: Any, run: Any) -> dict[str, Any]:
    """The policy's backtest document with ``budgets``, or the budgets' alone."""
    from agentmedic.api.durations import format_duration
    from agentmedic.backtest.budget_report import budgets_json
    from agentmedic.backtest.report import SCHEMA_VERSION, to_json

    if result is not None:
        document = to_json(result)
    else:
        grid = run.grid
        document = {
            "schemaVersion": SCHEMA_VERSION,
            "range": {
                "from": grid.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "to": grid.last.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "step": format_duration(grid.step),
                "steps": grid.size,
            },
        }
    if run is not None:
        document["budgets"] = budgets_json(run)
    return document
