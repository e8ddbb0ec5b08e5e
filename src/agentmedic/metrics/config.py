"""How to reach a Prometheus-compatible query API: :class:`BackendConfig`.

Secrets are :class:`~pydantic.SecretStr`; :func:`backend_config_from_files` builds a config
whose secrets live in files (mounted Secrets).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Self

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "BackendConfig", "backend_config_from_files"]

DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class BackendConfig(BaseModel):
    """How to reach a Prometheus-compatible query API.

    Secrets are :class:`~pydantic.SecretStr` and never appear in ``repr``, messages or logs;
    a validation error does not echo the input either.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", hide_input_in_errors=True, use_attribute_docstrings=True
    )

    url: str
    """Base URL up to, not including, ``/api/v1``; a path prefix is kept, e.g.
    ``http://vmselect:8481/select/0/prometheus`` or ``https://mimir/prometheus``."""
    bearer_token: SecretStr | None = None
    """Sent as ``Authorization: Bearer ...``."""
    bearer_token_file: Path | None = None
    """A file holding the bearer token, re-read when it changes (projected service-account
    tokens rotate)."""
    basic_auth_username: str | None = None
    """Basic auth user; needs ``basic_auth_password``."""
    basic_auth_password: SecretStr | None = None
    """Basic auth password."""
    ca_file: Path | None = None
    """PEM bundle of the CAs that sign the backend's certificate."""
    ca_data: str | None = None
    """The same bundle as text (read from a Secret or ConfigMap); set at most one of
    ``ca_file`` and ``ca_data``."""
    insecure_skip_verify: bool = False
    """Skip TLS certificate verification. For experiments only."""
    tenant: str | None = None
    """Tenant or org id, sent in ``tenant_header`` (Mimir, Cortex, Loki-style multi-tenancy)."""
    tenant_header: str = "X-Scope-OrgID"
    """The header that carries ``tenant``."""
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Extra request headers; values are treated as secrets."""
    timeout: float = Field(default=10.0, gt=0)
    """Seconds one HTTP attempt may take (also sent to the backend as its query timeout)."""
    deadline: float = Field(default=30.0, gt=0)
    """Seconds one call may take in all, retries and back-off included."""
    retries: int = Field(default=2, ge=0, le=10)
    """Retries after the first attempt for connection errors, timeouts, 429 and 5xx."""
    backoff_base: float = Field(default=0.25, ge=0)
    """First back-off ceiling in seconds; doubles per retry (full jitter below it)."""
    backoff_cap: float = Field(default=5.0, ge=0)
    """Largest back-off in seconds."""
    max_retry_after: float = Field(default=30.0, ge=0)
    """A 429 whose ``Retry-After`` exceeds this (or the time left) fails at once."""
    post_threshold: int = Field(default=2048, ge=0)
    """Encoded parameters longer than this many bytes are sent by POST (URLs have limits)."""
    query_stats: bool = False
    """Ask for the backend's own timings (Prometheus ``stats=all``) to report server time."""
    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, ge=1024)
    """The largest answer read, in bytes (decompressed); a larger one fails as TooLarge
    without being read further. The default, 64 MiB, is about 300,000 vector samples and
    stays well under the chart's memory limit."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value.strip())
        except httpx.InvalidURL as exc:
            raise ValueError(f"url is not a valid URL ({exc})") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("url must start with http:// or https:// and name a host")
        if url.userinfo:
            raise ValueError(
                "url must not contain credentials; set basic_auth_username and "
                "basic_auth_password (or bearer_token) instead"
            )
        if url.query or url.fragment:
            raise ValueError("url must not have a query string or fragment")
        if url.path.rstrip("/").endswith("/api/v1"):
            raise ValueError("url must stop before /api/v1 (it is appended per request)")
        return str(url).rstrip("/")

    @model_validator(mode="after")
    def _check_auth(self) -> Self:
        if self.bearer_token is not None and self.bearer_token_file is not None:
            raise ValueError("set either bearer_token or bearer_token_file, not both")
        if (self.basic_auth_username is None) != (self.basic_auth_password is None):
            raise ValueError("basic auth needs both basic_auth_username and basic_auth_password")
        bearer = self.bearer_token is not None or self.bearer_token_file is not None
        if bearer and self.basic_auth_username is not None:
            raise ValueError("set either a bearer token or basic auth, not both")
        if self.ca_file is not None and self.ca_data is not None:
            raise ValueError("set either ca_file or ca_data, not both")
        if self.insecure_skip_verify and self.ca_file is not None:
            raise ValueError("set either ca_file or insecure_skip_verify, not both")
        return self


def backend_config_from_files(
    url: str,
    *,
    bearer_token_file: Path | None = None,
    basic_auth_username: str | None = None,
    basic_auth_password_file: Path | None = None,
    ca_file: Path | None = None,
    insecure_skip_verify: bool = False,
    tenant: str | None = None,
    tenant_header: str = "X-Scope-OrgID",
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    deadline: float | None = None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> BackendConfig:
    """A :class:`BackendConfig` whose secrets live in files (mounted Secrets), as the operator's
    settings and the ``fleet``/``backtest`` flags give them. The password file is read here;
    the bearer-token file is re-read by the backend when it changes."""
    password = None
    if basic_auth_password_file is not None:
        password = SecretStr(basic_auth_password_file.read_text(encoding="utf-8").strip())
    return BackendConfig(
        url=url,
        bearer_token_file=bearer_token_file,
        basic_auth_username=basic_auth_username,
        basic_auth_password=password,
        ca_file=ca_file,
        insecure_skip_verify=insecure_skip_verify,
        tenant=tenant,
        tenant_header=tenant_header,
        headers={k: SecretStr(v) for k, v in (headers or {}).items()},
        timeout=timeout,
        deadline=deadline if deadline is not None else 3 * timeout,
        max_response_bytes=max_response_bytes,
    )
