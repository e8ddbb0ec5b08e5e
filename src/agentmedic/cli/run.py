"""``agentmedic run``: start the operator (kopf) with settings from flags, env and a file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from agentmedic.cli._backend import add_kube_arguments, add_prometheus_argument
from agentmedic.cli._errors import EXIT_USAGE, fail


def register(sub: Any) -> None:
    from agentmedic.operator.settings import OperatorSettings, env_name, flag_name

    p = sub.add_parser(
        "run",
        help="run the operator",
        description="Run the agentmedic operator. Every setting can be a flag, an environment "
        "variable (AGENTMEDIC_<NAME>) or a key in the YAML file given by --config; flags win "
        "over the environment, which wins over the file.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, help="YAML settings file (also AGENTMEDIC_CONFIG)")
    add_kube_arguments(p)
    for name, info in OperatorSettings.model_fields.items():
        doc = " ".join((info.description or "").split())
        # argparse expands %-placeholders in help ("80% of" would crash --help).
        help_text = f"{doc} [{env_name(name)}]".replace("%", "%%")
        if name == "prometheus_url":
            # The same flag as fleet, backtest and report cost; the environment is read by
            # the settings loader, so no default here.
            add_prometheus_argument(p, dest=name, env_default=False)
        elif info.annotation is bool:
            p.add_argument(
                flag_name(name),
                dest=name,
                action="store_const",
                const=True,
                default=None,
                help=help_text,
            )
        elif "list" in str(info.annotation):
            p.add_argument(
                flag_name(name),
                dest=name,
                default=None,
                help=help_text + " (comma-separated)",
                type=lambda v: [s.strip() for s in v.split(",") if s.strip()],
            )
        elif "dict" in str(info.annotation):
            import json

            p.add_argument(
                flag_name(name),
                dest=name,
                default=None,
                type=json.loads,
                help=help_text + " (JSON object)",
            )
        else:
            p.add_argument(flag_name(name), dest=name, default=None, help=help_text)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agentmedic.operator.settings import OperatorSettings, SettingsError, load_settings

    flags = {name: getattr(args, name) for name in OperatorSettings.model_fields}
    try:
        settings = load_settings(flags=flags, config_file=args.config)
    except SettingsError as exc:
        return fail("run", str(exc), EXIT_USAGE)
    from agentmedic.operator.main import run_operator

    return run_operator(settings, kubeconfig=args.kubeconfig, context=args.context)
