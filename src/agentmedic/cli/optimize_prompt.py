"""``agentmedic optimize-prompt``: the reference prompt optimizer a prompt-optimization Job runs.

Reads the agent's prompt from a ConfigMap key, asks an OpenAI-compatible model for a
shorter version that keeps every placeholder and required line, checks it and writes it as
``<key>.v<N>`` beside the live key, reporting the result (see
docs/prompt-optimization.md). The logic is in :mod:`agentmedic.optimize`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from agentmedic.cli._backend import add_kube_arguments
from agentmedic.cli._errors import EXIT_USAGE, CliError, line
from agentmedic.cli._output import emit

TERMINATION_LOG = "/dev/termination-log"

EPILOG = """\
every option has an environment variable, which the Job agentmedic starts sets:
  --namespace AGENTMEDIC_NAMESPACE    --config-map AGENTMEDIC_PROMPT_CONFIGMAP
  --key AGENTMEDIC_PROMPT_KEY         --job AGENTMEDIC_JOB
  --base-url OPENAI_BASE_URL          --model OPENAI_MODEL
The API key is read from OPENAI_API_KEY only (feed it from a Secret); it is never printed.

a line of the prompt containing [required] is kept verbatim, as is each --keep TEXT.

examples:
  agentmedic optimize-prompt -n agents --config-map support-bot-prompt --key system
  agentmedic optimize-prompt -n agents --config-map bot-prompt --key system \\
      --keep "Never reveal internal ticket ids." --min-reduction 0.2 -o json

exit codes: 0 Succeeded (candidate written); 1 Rejected or Failed (nothing written but the
result: the model's answer failed a check, or the model or the cluster could not be
reached); 2 usage or environment: a missing option or API key, a ConfigMap or key that does
not exist, no kubeconfig.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "optimize-prompt",
        help="shorten an agent's prompt with a model; write it as a new ConfigMap key",
        description="Read the prompt from a ConfigMap key, ask an OpenAI-compatible model "
        "for a shorter version keeping every placeholder and required line, check it and "
        "write it as <key>.v<N> in the same ConfigMap. The result goes to the termination "
        "message and the ConfigMap's agentmedic.io/prompt-optimization annotation.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    env = os.environ.get
    p.add_argument("-n", "--namespace", default=env("AGENTMEDIC_NAMESPACE"), help="namespace")
    p.add_argument(
        "--config-map", default=env("AGENTMEDIC_PROMPT_CONFIGMAP"), help="the prompt's ConfigMap"
    )
    p.add_argument("--key", default=env("AGENTMEDIC_PROMPT_KEY"), help="the live prompt's key")
    p.add_argument(
        "--agent", default=env("AGENTMEDIC_AGENT", ""), help="the agent (named in the output)"
    )
    p.add_argument("--job", default=env("AGENTMEDIC_JOB", ""), help="this Job's name (result)")
    p.add_argument("--base-url", default=env("OPENAI_BASE_URL"), help="the model server's URL")
    p.add_argument("--model", default=env("OPENAI_MODEL"), help="the model to ask")
    p.add_argument(
        "--keep", action="append", default=[], metavar="TEXT", help="text to keep verbatim"
    )
    _add_check_and_retry_arguments(p)
    p.add_argument(
        "--termination-log",
        default=env("AGENTMEDIC_TERMINATION_LOG"),
        metavar="PATH",
        help=f"where to write the result (default {TERMINATION_LOG} when it exists; '' for none)",
    )
    add_kube_arguments(p)
    p.add_argument(
        "-o",
        "--output",
        choices=["table", "json"],
        default="table",
        metavar="FORMAT",
        help="table (one line) or json (the result)",
    )
    p.set_defaults(func=run)


def _add_check_and_retry_arguments(p: Any) -> None:
    """The candidate's bounds and the retries of the model's requests."""
    p.add_argument(
        "--min-reduction",
        type=float,
        default=0.10,
        metavar="SHARE",
        help="shorter by at least this share (default 0.10)",
    )
    p.add_argument(
        "--min-share",
        type=float,
        default=0.20,
        metavar="SHARE",
        help="keep at least this share of the length (default 0.20)",
    )
    p.add_argument(
        "--max-chars",
        type=int,
        default=32_768,
        metavar="N",
        help="the longest prompt or candidate (default 32768)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="per request to the model (default 60)",
    )
    p.add_argument(
        "--max-attempts",
        type=int,
        default=4,
        metavar="N",
        help="requests in all, retries of timeouts, 429 and 5xx included (default 4)",
    )
    p.add_argument(
        "--backoff",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="first pause without Retry-After, doubled per retry (default 1)",
    )
    p.add_argument(
        "--max-wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="longest pause; a longer Retry-After fails the run (default 60)",
    )


def _settings(args: argparse.Namespace) -> Any:
    from agentmedic.optimize import Limits, ModelSettings, OptimizeSettings
    from agentmedic.optimize.run import key_problem

    missing = [
        f"{flag} ({var})"
        for flag, var, value in (
            ("--namespace", "AGENTMEDIC_NAMESPACE", args.namespace),
            ("--config-map", "AGENTMEDIC_PROMPT_CONFIGMAP", args.config_map),
            ("--key", "AGENTMEDIC_PROMPT_KEY", args.key),
            ("--base-url", "OPENAI_BASE_URL", args.base_url),
            ("--model", "OPENAI_MODEL", args.model),
        )
        if not value
    ]
    if missing:
        raise CliError(f"missing {', '.join(missing)}: pass the option or set the variable")
    problem = key_problem(args.key)
    if problem:
        raise CliError(problem)
    if args.max_attempts < 1 or args.timeout <= 0 or args.backoff < 0 or args.max_wait < 0:
        raise CliError(
            "--max-attempts must be at least 1, --timeout above 0, --backoff and --max-wait "
            "at least 0"
        )
    try:
        limits = Limits(args.min_reduction, args.min_share, args.max_chars)
    except ValueError as exc:
        raise CliError(f"--{str(exc).split()[0].replace('_', '-')}: {exc}") from None
    api_key = os.environ.get("OPENAI_API_KEY", "")
    if not api_key:
        raise CliError("OPENAI_API_KEY is not set; feed it from a Secret (secretKeyRef)")
    model = ModelSettings(
        base_url=args.base_url,
        model=args.model,
        api_key=api_key,
        timeout=args.timeout,
        max_attempts=args.max_attempts,
        backoff=args.backoff,
        max_wait=args.max_wait,
    )
    log_path = args.termination_log
    if log_path is None:
        log_path = TERMINATION_LOG if Path(TERMINATION_LOG).exists() else ""
    settings = OptimizeSettings(
        namespace=args.namespace,
        config_map=args.config_map,
        key=args.key,
        model=model,
        limits=limits,
        keep=tuple(args.keep),
        job=args.job,
        termination_log=Path(log_path) if log_path else None,
    )
    return settings


def run(args: argparse.Namespace) -> int:
    from agentmedic.cli._kubeconfig import ConfigurationError, client_configuration
    from agentmedic.kube import Kube
    from agentmedic.optimize import optimize

    settings = _settings(args)
    try:
        configuration = client_configuration(args.kubeconfig, args.context, in_cluster_first=True)
    except ConfigurationError as exc:
        raise CliError(
            f"cannot load the cluster configuration ({line(str(exc))}); run in a pod with a "
            "service account, or pass --kubeconfig/--context",
            EXIT_USAGE,
        ) from None
    kube = Kube.from_configuration(configuration)
    try:
        result, code = optimize(kube, settings)
    finally:
        kube.close()
    if args.output == "json":
        emit(result.model_dump(mode="json", by_alias=True, exclude_none=True), "json")
    else:
        where = f"{settings.namespace}/{settings.config_map}"
        if args.agent:
            where = f"agent {args.agent}: {where}"
        key = result.candidate_key or settings.key
        print(line(f"{result.status.value}: {where} {key}: {result.reason}"))
    return code
