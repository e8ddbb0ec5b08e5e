"""``docs/configuration.md``, generated from the operator's settings.

Each field of :class:`~agentmedic.operator.settings.OperatorSettings` becomes a row: the
config key, the flag, the environment variable, the type and bounds, the default and the
description (the field's docstring). The examples are validated against the settings while
rendering. ``agentmedic docs configuration`` prints the page (``make docs`` writes it) and a
test fails when the committed file differs.
"""

from __future__ import annotations

import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from pydantic.fields import FieldInfo

from agentmedic.operator.settings import OperatorSettings, env_name, flag_name

__all__ = ["BACKEND_EXAMPLES", "CONFIG_EXAMPLE", "render_configuration"]

CONFIG_EXAMPLE = """\
prometheusUrl: https://mimir.example.com/prometheus
tenant: agents-prod
bearerTokenFile: /var/run/secrets/agentmedic/token
caFile: /etc/agentmedic/ca/ca.crt
queryTimeoutSeconds: 15
namespaces: [agents, research]
catalogOverridesFile: /etc/agentmedic/catalog-overrides.yaml
logFormat: json
shard: 0/2
"""

BACKEND_EXAMPLES: tuple[tuple[str, str, str], ...] = (
    (
        "Prometheus",
        "The server's base URL.",
        "prometheusUrl: http://prometheus-operated.monitoring:9090\n",
    ),
    (
        "Thanos",
        "The Querier (or Query Frontend). When the Querier enforces tenancy "
        "(`--query.enforce-tenancy`), send the tenant in its tenant header (`THANOS-TENANT` "
        "unless `--query.tenant-header` says otherwise) through `extraHeaders`.",
        "prometheusUrl: http://thanos-query-frontend.monitoring:9090\n"
        "extraHeaders: {THANOS-TENANT: agents-prod}\n",
    ),
    (
        "Grafana Mimir / Cortex",
        "The query path's prefix (`/prometheus` by default) is part of the URL; `tenant` is "
        "sent as `X-Scope-OrgID`.",
        "prometheusUrl: http://mimir-query-frontend.mimir:8080/prometheus\ntenant: agents-prod\n",
    ),
    (
        "VictoriaMetrics (single node)",
        "The server's base URL.",
        "prometheusUrl: http://victoria-metrics.vm:8428\n",
    ),
    (
        "VictoriaMetrics (cluster)",
        "`vmselect` with the tenant (account id, optionally `:project`) in the path.",
        "prometheusUrl: http://vmselect.vm:8481/select/42/prometheus\n",
    ),
)


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _kind(annotation: Any) -> str:
    tp, _ = _strip_optional(annotation)
    origin = typing.get_origin(tp)
    if origin is list:
        return "list"
    if origin is dict:
        return "map"
    if isinstance(tp, type) and issubclass(tp, Enum):
        return "enum"
    if tp is Path:
        return "path"
    if tp is bool:
        return "bool"
    if getattr(tp, "__name__", "") == "Shard":
        return "shard"
    return {str: "string", int: "integer", float: "number"}.get(tp, "string")


def _type(annotation: Any) -> str:
    tp, _ = _strip_optional(annotation)
    kind = _kind(annotation)
    if kind == "enum":
        return "one of " + ", ".join(f"`{m.value}`" for m in tp)
    return {
        "list": "list of strings",
        "map": "map of string to string",
        "path": "file path",
        "bool": "boolean",
        "shard": "`INDEX/COUNT`",
    }.get(kind, kind)


def _flag(name: str, info: FieldInfo) -> str:
    # prometheusUrl's flag is --prometheus, as for fleet, backtest and report cost.
    flag = "--prometheus" if name == "prometheus_url" else flag_name(name)
    value = {
        "bool": "",
        "list": " A,B",
        "map": " JSON",
        "path": " FILE",
        "shard": " INDEX/COUNT",
        "integer": " N",
        "number": " N",
    }.get(_kind(info.annotation), " VALUE")
    return f"`{flag}{value}`"


def _default(info: FieldInfo) -> str:
    factory = info.default_factory
    value = factory() if factory is not None else info.default  # type: ignore[call-arg]
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, Enum):
        return f"`{value.value}`"
    if value in ("", [], {}):
        return "empty"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def _bounds(info: FieldInfo) -> str:
    out = []
    for item in info.metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            value = getattr(item, attr, None)
            if value is not None:
                out.append(f"`{sign} {value}`")
    return ", ".join(out)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _settings_rows() -> list[str]:
    """One table row per setting."""
    rows = []
    for name, info in OperatorSettings.model_fields.items():
        kind_text = _type(info.annotation)
        bounds = _bounds(info)
        if bounds:
            kind_text += f" ({bounds})"
        rows.append(
            "| "
            + " | ".join(
                [
                    f"`{info.alias or name}`",
                    _flag(name, info),
                    f"`{env_name(name)}`",
                    kind_text,
                    _default(info),
                    _cell(info.description or ""),
                ]
            )
            + " |"
        )
    return rows


def _introduction() -> list[str]:
    """The note, the three spellings of a setting and where they come from."""
    return [
        "<!-- Generated by `agentmedic docs configuration` from "
        "src/agentmedic/operator/settings.py; do not edit. Run `make docs`. -->",
        "",
        "# Operator configuration",
        "",
        "`agentmedic run` starts the operator. Each setting has one name in three spellings "
        "and is taken from the first of these that sets it:",
        "",
        "1. a flag of `agentmedic run` (`--prometheus`, the flag of every command that reads "
        "metrics);",
        "2. an environment variable (`AGENTMEDIC_PROMETHEUS_URL`);",
        "3. a YAML config file named by `--config FILE` or `AGENTMEDIC_CONFIG` (key "
        "`prometheusUrl`);",
        "4. the default.",
        "",
        "In flags and the environment, lists are comma-separated "
        "(`AGENTMEDIC_NAMESPACES=agents,research`) and maps are JSON "
        '(`AGENTMEDIC_EXTRA_HEADERS=\'{"X-Team": "ml"}\'`). A boolean flag takes no value '
        "and sets `true`; set `false` through the environment or the file. Secrets are never "
        "values: the bearer token, the basic-auth password and the CA bundle are files "
        "(mounted from Kubernetes Secrets), named by the settings ending in `File`. A wrong "
        "setting stops `agentmedic run` with exit status 2 and a message naming it in all "
        "three spellings.",
        "",
        "The Helm chart (`charts/agentmedic`) renders these settings into a config file in a "
        "ConfigMap; each value in `charts/agentmedic/values.yaml` names the setting it feeds "
        "in brackets, e.g. `[prometheusUrl]`.",
        "",
        "Besides the settings, `agentmedic run` takes `--config FILE`, `--kubeconfig FILE` "
        "and `--context NAME` (the default is the in-cluster service account, then "
        "`~/.kube/config`).",
        "",
    ]


def _examples_and_backends() -> list[str]:
    """A config file, the same from the command line, the metrics backends."""
    out = [
        "",
        "## A config file",
        "",
        "```yaml",
        CONFIG_EXAMPLE.rstrip("\n"),
        "```",
        "",
        "The same from the command line:",
        "",
        "```sh",
        "AGENTMEDIC_TENANT=agents-prod agentmedic run \\",
        "  --prometheus https://mimir.example.com/prometheus \\",
        "  --bearer-token-file /var/run/secrets/agentmedic/token \\",
        "  --namespaces agents,research --shard 0/2",
        "```",
        "",
        "## Metrics backends",
        "",
        "Any server of the Prometheus HTTP API (`/api/v1/query`, `/api/v1/query_range`) "
        "serves. `prometheusUrl` is the base URL up to, not including, `/api/v1`, with any "
        "path prefix; it must not carry credentials, a query string or a fragment.",
        "",
    ]
    for title, text, example in BACKEND_EXAMPLES:
        out += [f"**{title}.** {text}", "", "```yaml", example.rstrip("\n"), "```", ""]
    out += [
        "Authentication: `bearerTokenFile` (re-read when the file changes, so projected "
        "service-account tokens can rotate) or `basicAuthUsername` with "
        "`basicAuthPasswordFile`; `caFile` for a private CA. Every query is retried with "
        "back-off on connection errors, timeouts, 5xx and 429 (honouring `Retry-After`); a "
        "4xx answer means the query is wrong and is not retried.",
        "",
    ]
    return out


def render_configuration() -> str:
    """The whole of ``docs/configuration.md``."""
    OperatorSettings.model_validate(yaml.safe_load(CONFIG_EXAMPLE))
    for _title, _text, example in BACKEND_EXAMPLES:
        OperatorSettings.model_validate(yaml.safe_load(example))

    out = [
        *_introduction(),
        "## Settings",
        "",
        "| Config key | Flag | Environment variable | Type | Default | Description |",
        "|---|---|---|---|---|---|",
        *_settings_rows(),
        *_examples_and_backends(),
    ]
    return "\n".join(out)
