"""``agentmedic backtest POLICY.yaml``: what a policy would have done over past metrics."""

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
    from agentmedic.backtest.history import OnQuery
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
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "backtest",
        help="replay a policy over past metrics and report what it would have done",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("policy", nargs="?", metavar="POLICY.yaml", help="the AgentPolicy manifest")
    p.add_argument("--from", dest="start", metavar="T", help="start of the range (required)")
    p.add_argument("--to", dest="end", metavar="T", default="now", help="end (default: now)")
    p.add_argument("--step", default="1m", help="time between evaluations (default: 1m)")
    p.add_argument("-n", "--namespace", help="the agents' namespace (default: the policy's)")
    p.add_argument(
        "--agents",
        type=lambda v: [s.strip() for s in v.split(",") if s.strip()],
        help="comma-separated agent names (default: every agent with history in the namespace)",
    )
    add_output_argument(p, legacy_format=True, help_suffix="; wide is table")
    p.add_argument("--plot", type=Path, metavar="FILE", help="also draw FILE.png or FILE.html")
    p.add_argument("--policy-name", help="the AgentPolicy to use when the file holds several")
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


def _load_policy(path: Path, name: str | None) -> tuple[AgentPolicy | None, list[str]]:
    """The one AgentPolicy of ``path`` (or the one named ``name``), and its problems.

    Documents are numbered and named as ``agentmedic validate`` shows them; a file holding
    several policies without ``--policy-name`` is refused with the exact flags to pick one.
    """
    from agentmedic.api.validation import validate_policy
    from agentmedic.api.yamlfile import YAMLInputError, load_documents
    from agentmedic.cli.validate import is_builtin_kubernetes

    try:
        documents = load_documents(path)
    except YAMLInputError as exc:
        return None, [str(exc)]
    numbered = [
        (n, d)
        for n, d in enumerate(documents, start=1)
        if isinstance(d, dict) and d.get("kind") == "AgentPolicy" and not is_builtin_kubernetes(d)
    ]
    multi = len(documents) > 1
    if name is not None:
        numbered = [(n, d) for n, d in numbered if _metadata(d).get("name") == name]
    if not numbered:
        which = f" named {name!r}" if name else ""
        return None, [f"{path}: no AgentPolicy{which} in the file"]
    if len(numbered) > 1:
        listed = ", ".join(f"#{n} ({_metadata(d).get('name')})" for n, d in numbered)
        picks = " or ".join(f"--policy-name {_metadata(d).get('name')}" for _, d in numbered[:3])
        raise CliError(
            f"{path} holds {len(numbered)} AgentPolicies: {listed}; a backtest replays one, "
            f"pick it with {picks}"
        )
    number, document = numbered[0]
    policy, problems = validate_policy(document)
    where = f"{path}#{number}" if multi else str(path)
    label = f"{where} ({_metadata(document).get('name')})"
    return (policy if not problems else None), [f"{label}: {p}" for p in problems]


def _metadata(document: dict[str, Any]) -> dict[str, Any]:
    metadata = document.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def run(args: argparse.Namespace) -> int:
    if args.print_schema:
        from agentmedic.backtest.report import json_schema

        print(json.dumps(json_schema(), indent=2))
        return EXIT_OK
    if not args.policy:
        return _fail("name the policy file: agentmedic backtest POLICY.yaml ...", EXIT_USAGE)
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

    policy, problems = _load_policy(Path(args.policy), args.policy_name)
    if policy is None:
        more = f"{len(problems) - 1} more problem(s); " if len(problems) > 1 else ""
        return _fail(
            f"{problems[0]} ({more}`agentmedic validate {args.policy}` checks the file)",
            EXIT_USAGE,
        )
    from agentmedic.metrics import load_catalog

    try:
        config = backend_config(args)
        catalog = load_catalog(args.catalog_overrides_file)
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
    return _execute(policy, config, options, args)


def _execute(
    policy: AgentPolicy, config: BackendConfig, options: Any, args: argparse.Namespace
) -> int:
    from agentmedic.backtest.history import BacktestDataError
    from agentmedic.backtest.runner import run_backtest
    from agentmedic.metrics import PrometheusBackend

    async def go(progress: OnQuery) -> Any:
        async with PrometheusBackend(config) as backend:
            return await run_backtest(
                policy, backend, options, backend_url=config.url, on_query=progress
            )

    with QueryProgress("fetching history", plain_lines=True) as progress:
        try:
            result = asyncio.run(go(progress.query))
        except BacktestDataError as exc:
            return _fail(str(exc), EXIT_FAILED)
        progress.phase(
            f"replayed {result.history.grid.size} evaluations of {len(result.history.agents)} "
            "agents"
        )
    return _render(result, args)


def _render(result: Any, args: argparse.Namespace) -> int:
    from agentmedic.backtest.plot import PlotError, write_plot
    from agentmedic.backtest.report import to_json

    started = time.perf_counter()
    code = EXIT_OK
    if args.plot is not None:
        try:
            write_plot(result, args.plot)
            print(f"plot written to {args.plot}", file=sys.stderr)
        except PlotError as exc:
            code = _fail(str(exc), EXIT_FAILED)
    result.timings.render = time.perf_counter() - started
    if args.output in ("json", "yaml"):
        emit(to_json(result), args.output)
    else:
        from agentmedic.backtest.table import render_table

        render_table(result, console())
    return code
