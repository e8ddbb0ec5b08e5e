"""Operator configuration: one model, three sources.

Every setting has one name in three spellings, with this precedence (highest first):

1. a command-line flag of ``agentmedic run`` (``--prometheus``),
2. an environment variable (``AGENTMEDIC_PROMETHEUS_URL``),
3. a YAML config file (``--config FILE`` or ``AGENTMEDIC_CONFIG``; key ``prometheusUrl``),
4. the default below.

Lists in the environment are comma-separated (``AGENTMEDIC_NAMESPACES=agents,research``);
mappings are JSON (``AGENTMEDIC_EXTRA_HEADERS='{"X-Team": "ml"}'``). Secrets (bearer
token, basic-auth password) are never values here: they are file paths, mounted from
Kubernetes Secrets, and are read when the backend is built.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from agentmedic.api.types import Model
from agentmedic.api.yamlfile import YAMLInputError, load_file

__all__ = ["LogFormat", "OperatorSettings", "SettingsError", "Shard", "load_settings"]

ENV_PREFIX = "AGENTMEDIC_"


class SettingsError(ValueError):
    """A setting is wrong; the message names it in all three spellings."""


class LogFormat(StrEnum):
    JSON = "json"
    TEXT = "text"


class Shard(BaseModel):
    """This replica evaluates the policies whose UID hashes to ``index`` modulo ``count``."""

    model_config = ConfigDict(frozen=True)
    index: int = Field(ge=0)
    count: int = Field(ge=1)

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            index, count = (int(p) for p in text.split("/"))
        except ValueError:
            raise ValueError(f"{text!r} is not a shard; write INDEX/COUNT such as 0/3") from None
        if not 0 <= index < count:
            raise ValueError(f"{text!r}: INDEX must be in 0..COUNT-1")
        return cls(index=index, count=count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


class OperatorSettings(Model):
    """Everything the operator can be told. Field docstrings are the reference."""

    prometheus_url: str = ""
    """Base URL of the Prometheus-compatible API, including any path prefix (e.g.
    http://vmselect:8481/select/0/prometheus). Required."""
    bearer_token_file: Path | None = None
    """File holding a bearer token sent as `Authorization: Bearer`; re-read on change."""
    basic_auth_username: str | None = None
    """Username for HTTP basic auth."""
    basic_auth_password_file: Path | None = None
    """File holding the basic-auth password."""
    ca_file: Path | None = None
    """PEM bundle to verify the backend's TLS certificate."""
    insecure_skip_verify: bool = False
    """Skip TLS verification. Never in production."""
    tenant: str | None = None
    """Tenant sent as X-Scope-OrgID (Mimir, Cortex, Loki-style multi-tenancy)."""
    extra_headers: dict[str, str] = Field(default_factory=dict)
    """More headers for every query (JSON object in the environment)."""
    query_timeout_seconds: float = Field(default=10.0, gt=0)
    """Timeout of one query attempt, its answer's body included (a server sending slowly
    does not extend it); retries share three times this."""
    cycle_deadline_seconds: float | None = Field(default=None, gt=0)
    """Seconds a cycle's queries may take in all. A cycle that overruns stops fetching and
    evaluates none of the policies it has no answers for (MetricsAvailable=False, Timeout).
    Unset: 80% of the cycle's interval; never more than the interval."""
    max_response_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    """The largest metrics answer read, in bytes; a larger one is refused as TooLarge
    before it can exhaust the operator's memory (the chart's limit is 512Mi)."""
    restore_poll_seconds: float = Field(default=2.0, gt=0, le=60)
    """How often restore requests (the agentmedic.io/restore annotation, a disabled agent
    scaled up by hand) are looked for: independently of the metrics cycles, so a slow
    backend never delays them."""
    namespaces: list[str] = Field(default_factory=list)
    """Namespaces to watch; empty means cluster-wide."""
    read_cluster_kinds: bool = False
    """With namespaces set, still read finance's cluster-scoped kinds (ClusterAgentBudgets,
    ModelPriceLists), for an install whose RBAC grants them; without it a namespaced
    operator leaves them alone (its Roles cannot grant them, and it never asks to be refused).
    A cluster-wide operator always reads them."""
    namespace_label: str = "namespace"
    """The metrics label carrying the agent's namespace, used when agents in several namespaces
    share a name."""
    catalog_overrides_file: Path | None = None
    """YAML mapping of built-in metric names to PromQL templates replacing the defaults."""
    log_format: LogFormat = LogFormat.JSON
    """json (one object per line, the default in-cluster) or text."""
    log_level: str = "INFO"
    """DEBUG, INFO, WARNING or ERROR."""
    dry_run: bool = False
    """Decide and record for every policy; change no workload."""
    shard: Shard | None = None
    """INDEX/COUNT: evaluate only the policies whose UID hashes to this shard."""
    metrics_port: int = Field(default=8080, ge=0, le=65535)
    """Port of the operator's own /metrics endpoint (0 disables it)."""
    health_port: int = Field(default=8081, ge=0, le=65535)
    """Port of the liveness endpoint /healthz (0 disables it)."""
    peering: str | None = "agentmedic"
    """Name of the Lease (coordination.k8s.io) through which replicas elect the one that
    acts; replicas with the same name and lease namespace elect one active. Empty: no
    election, this replica acts alone."""
    lease_namespace: str | None = None
    """Namespace of the Lease; default: the first watched namespace, else `default` (the
    chart sets the operator's own namespace)."""
    lease_duration_seconds: float = Field(default=15.0, gt=0)
    """A standby takes over when the leader has not renewed the Lease for this long (a
    killed leader is replaced within this plus leaseRetrySeconds)."""
    lease_renew_deadline_seconds: float = Field(default=10.0, gt=0)
    """The leader stops acting when it could not renew for this long; less than
    leaseDurationSeconds, so two replicas never act at once."""
    lease_retry_seconds: float = Field(default=2.0, gt=0)
    """How often the leader renews and a standby checks the Lease; a leader that stops
    cleanly hands over within this."""
    max_concurrent_queries: int = Field(default=8, ge=1)
    """Queries in flight at once per cycle."""
    max_concurrent_actions: int = Field(default=4, ge=1, le=64)
    """Workload changes carried out at once per cycle, on different agents (one agent's
    changes always run one after another, in order). 1 carries them out one at a time."""
    status_recent_actions: int = Field(default=10, ge=0, le=20)
    """How many recent actions status keeps."""
    spend_refresh_seconds: float = Field(default=300.0, ge=0)
    """How often at most a policy's status gets a new spend figure when nothing else in its
    status changed: a fleet that only spends costs at most one status write per policy per
    this period. A budget stage that starts or ends, a new budget period, or any other change
    of status writes the current spend at once. 0: every change of the (coarse) spend."""

    @field_validator("shard", mode="before")
    @classmethod
    def _shard(cls, value: Any) -> Any:
        return Shard.parse(value) if isinstance(value, str) and value else value or None

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"{value!r} is not a log level; use DEBUG, INFO, WARNING or ERROR")
        return upper

    def cycle_deadline(self, interval: timedelta) -> float:
        """Seconds the cycle of this interval may spend fetching metrics."""
        seconds = interval.total_seconds()
        if self.cycle_deadline_seconds is None:
            return max(0.8 * seconds, 0.001)
        return max(min(self.cycle_deadline_seconds, seconds), 0.001)

    @model_validator(mode="after")
    def _lease_timing(self) -> OperatorSettings:
        if not (
            self.lease_retry_seconds
            < self.lease_renew_deadline_seconds
            < self.lease_duration_seconds
        ):
            raise ValueError(
                "leaseRetrySeconds < leaseRenewDeadlineSeconds < leaseDurationSeconds must hold"
            )
        return self

    def lease_namespace_or_default(self) -> str:
        """Where the Lease lives."""
        return self.lease_namespace or (self.namespaces[0] if self.namespaces else "default")

    def owns(self, uid: str) -> bool:
        """Whether this replica's shard evaluates the policy with this UID."""
        if self.shard is None:
            return True
        import zlib

        return zlib.crc32(uid.encode()) % self.shard.count == self.shard.index


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, info in OperatorSettings.model_fields.items():
        raw = environ.get(env_name(name))
        if raw is None:
            continue
        annotation = str(info.annotation)
        if "list" in annotation:
            out[name] = [p.strip() for p in raw.split(",") if p.strip()]
        elif "dict" in annotation:
            try:
                out[name] = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise SettingsError(f"{env_name(name)}: not a JSON object ({exc.msg})") from None
        else:
            out[name] = raw
    return out


def load_settings(
    *,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    require_backend: bool = True,
) -> OperatorSettings:
    """Merge the sources (flags > environment > file > defaults) and validate."""
    environ = os.environ if environ is None else environ
    merged: dict[str, Any] = {}
    path = config_file or (
        Path(environ[f"{ENV_PREFIX}CONFIG"]) if f"{ENV_PREFIX}CONFIG" in environ else None
    )
    if path is not None:
        try:
            loaded = load_file(path) or {}
        except YAMLInputError as exc:
            raise SettingsError(f"config file {exc}") from None
        if not isinstance(loaded, dict):
            raise SettingsError(f"config file {path}: expected a mapping of settings")
        by_alias = {(info.alias or n): n for n, info in OperatorSettings.model_fields.items()}
        for key, value in loaded.items():
            merged[by_alias.get(str(key), str(key))] = value
    merged.update(_from_env(environ))
    merged.update({k: v for k, v in (flags or {}).items() if v is not None})
    try:
        settings = OperatorSettings.model_validate(merged)
    except ValidationError as exc:
        raise SettingsError(_explain(exc)) from None
    if require_backend and not settings.prometheus_url:
        raise SettingsError(
            "prometheusUrl is required: pass --prometheus, set AGENTMEDIC_PROMETHEUS_URL, "
            "or put prometheusUrl in the config file"
        )
    return settings


def _explain(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        info = OperatorSettings.model_fields.get(field)
        names = f"{flag_name(field)} / {env_name(field)} / {info.alias or field}" if info else field
        if error["type"] == "extra_forbidden":
            lines.append(f"{field}: unknown setting")
        else:
            lines.append(f"{names}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(lines)
