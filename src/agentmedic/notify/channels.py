"""Channels with their secrets resolved: what a sender needs to reach Slack, PagerDuty, a
webhook or Alertmanager.

The policy names Secret keys (:class:`agentmedic.api.types.NotificationChannel`); the
operator reads them and :func:`resolve_channel` turns the pair into a
:class:`ResolvedChannel` whose credentials are :class:`~agentmedic.notify.secrets.Secret`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

import httpx

from agentmedic.api.types import (
    AlertmanagerChannel,
    NotificationChannel,
    SecretKeyRef,
    Severity,
)
from agentmedic.notify.alertmanager import alerts_url
from agentmedic.notify.errors import ChannelConfigError
from agentmedic.notify.secrets import Secret, SecretText

__all__ = ["ChannelKind", "ResolvedChannel", "SecretLookup", "resolve_channel"]

SecretLookup = Callable[[str, str], str]
"""``lookup(secret_name, key) -> value``: reads a key of a Secret in the policy's namespace.
Raises (any exception) when the Secret or the key does not exist."""

# Errors from a lookup are quoted in ChannelConfigError up to this length.
_MAX_LOOKUP_ERROR = 200


class ChannelKind(StrEnum):
    """Where a channel delivers."""

    SLACK = "slack"
    PAGERDUTY = "pagerduty"
    WEBHOOK = "webhook"
    ALERTMANAGER = "alertmanager"


@dataclass(frozen=True, slots=True)
class ResolvedChannel:
    """A channel ready to send: its kind, its credentials and its delivery limits.

    ``url`` is where messages are POSTed: the Slack incoming-webhook URL, the PagerDuty
    Events API v2 endpoint, the webhook URL, or Alertmanager's ``/api/v2/alerts``.
    ``routing_key`` is set for PagerDuty only, ``hmac_key`` for a signed webhook only;
    ``authorization`` and the fields after it for Alertmanager only.
    """

    name: str
    """The channel's name in the policy."""
    kind: ChannelKind
    """slack, pagerduty, webhook or alertmanager."""
    url: Secret
    """Where messages are POSTed (a credential for Slack and webhooks)."""
    routing_key: Secret | None = None
    """PagerDuty's integration (routing) key."""
    hmac_key: Secret | None = None
    """The key a webhook body is signed with (HMAC-SHA256)."""
    max_per_hour: int = 30
    """At most this many firing messages per hour; the rest are counted and summarised."""
    renotify_after: timedelta = timedelta(hours=4)
    """A still-firing episode is repeated after this long."""
    min_severity: Severity = Severity.INFO
    """Messages below this severity are not sent."""
    authorization: Secret | None = None
    """The Authorization header's value (``Basic ...`` or ``Bearer ...``)."""
    credential: Secret | None = None
    """The password or token inside ``authorization``, so that it is redacted on its own."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Further request headers that are not secret (the tenant's X-Scope-OrgID)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Static labels added to every alert."""
    generator_url: str | None = None
    """Each alert's generatorURL."""
    repost_interval: timedelta | None = None
    """Set for channels whose receiver forgets a firing message unless it is said again
    (Alertmanager): the episode is re-posted this often while it fires, past the rate
    limit, and ``renotify_after`` equals it."""
    shared_key: str | None = None
    """Set for a shared channel (a channelRef): one key per NotificationChannel or
    ClusterNotificationChannel, whose ``max_per_hour`` counts every policy's sends."""

    def __post_init__(self) -> None:
        if self.kind is ChannelKind.PAGERDUTY and self.routing_key is None:
            raise ChannelConfigError(self.name, "a PagerDuty channel needs a routing key")
        if self.max_per_hour < 1:
            raise ChannelConfigError(self.name, "maxPerHour must be at least 1")

    def secret_fragments(self) -> Iterator[SecretText]:
        """Everything that must never appear in a log: the credentials themselves (as
        :class:`Secret`, hidden even when short) and the URL's parts (as text)."""
        # PagerDuty's events URL and Alertmanager's are public configuration
        # (spec.notifications), not secrets.
        public = self.kind in (ChannelKind.PAGERDUTY, ChannelKind.ALERTMANAGER)
        url = None if public else self.url
        for secret in (self.authorization, self.credential):
            if secret is not None:
                yield secret
        for secret in (url, self.routing_key, self.hmac_key):
            if secret is None:
                continue
            value = secret.reveal()
            yield secret
            # httpx prints its normalised form of a URL; its path alone is the Slack token.
            try:
                parsed = httpx.URL(value)
            except (httpx.InvalidURL, TypeError):
                continue
            yield str(parsed)
            yield parsed.raw_path.decode("ascii", "replace")
            if parsed.path != "/":
                yield parsed.path
            # A receiver may echo just the token: Slack's and Discord's are the last path
            # segment, others travel as a query parameter or a password.
            yield parsed.path.rstrip("/").rsplit("/", 1)[-1]
            yield from (value for _, value in parsed.params.multi_items())
            if parsed.password:
                yield Secret(parsed.password)


def resolve_channel(channel: NotificationChannel, secret_lookup: SecretLookup) -> ResolvedChannel:
    """Read the channel's Secret keys through ``secret_lookup`` and check them.

    Raises :class:`ChannelConfigError` naming the Secret and key when a value is missing,
    empty or not an http(s) URL; the message never contains the value.
    """

    def read(ref: SecretKeyRef, what: str) -> Secret:
        try:
            value = secret_lookup(ref.name, ref.key)
        except Exception as exc:
            detail = str(exc)[:_MAX_LOOKUP_ERROR]
            raise ChannelConfigError(
                channel.name,
                f"cannot read {what} from key {ref.key!r} of Secret {ref.name!r}: "
                f"{type(exc).__name__}{': ' + detail if detail else ''}",
            ) from None
        # Secrets written with `echo` end in a newline; a URL or key never does.
        value = value.strip() if isinstance(value, str) else ""
        if not value:
            raise ChannelConfigError(
                channel.name, f"key {ref.key!r} of Secret {ref.name!r} ({what}) is empty"
            )
        return Secret(value)

    routing_key: Secret | None = None
    hmac_key: Secret | None = None
    am = channel.alertmanager
    authorization: Secret | None = None
    credential: Secret | None = None
    renotify_after = channel.renotify_after
    if channel.slack is not None:
        kind = ChannelKind.SLACK
        ref = channel.slack.webhook_secret_ref
        where = f"key {ref.key!r} of Secret {ref.name!r}"
        url = _checked_url(channel.name, read(ref, "the Slack webhook URL"), where)
    elif channel.pagerduty is not None:
        kind = ChannelKind.PAGERDUTY
        routing_key = read(channel.pagerduty.routing_key_secret_ref, "the PagerDuty routing key")
        url = _checked_url(channel.name, Secret(channel.pagerduty.url), "pagerduty.url")
    elif channel.webhook is not None:
        kind = ChannelKind.WEBHOOK
        ref = channel.webhook.url_secret_ref
        url = _checked_url(
            channel.name, read(ref, "the webhook URL"), f"key {ref.key!r} of Secret {ref.name!r}"
        )
        if channel.webhook.hmac_secret_ref is not None:
            hmac_key = read(channel.webhook.hmac_secret_ref, "the webhook HMAC key")
    elif am is not None:
        kind = ChannelKind.ALERTMANAGER
        base = _checked_url(channel.name, Secret(am.url), "alertmanager.url")
        if httpx.URL(base.reveal()).userinfo:
            raise ChannelConfigError(
                channel.name,
                "alertmanager.url carries credentials; put them in alertmanager.basicAuth "
                "(value not shown)",
            )
        url = Secret(alerts_url(base.reveal()))
        authorization, credential = _alertmanager_auth(channel.name, am, read)
        renotify_after = am.repost_interval
    else:
        raise ChannelConfigError(
            channel.name, "set exactly one of slack, pagerduty, webhook and alertmanager"
        )
    return ResolvedChannel(
        name=channel.name,
        kind=kind,
        url=url,
        routing_key=routing_key,
        hmac_key=hmac_key,
        max_per_hour=channel.max_per_hour,
        renotify_after=renotify_after,
        min_severity=channel.min_severity,
        authorization=authorization,
        credential=credential,
        headers={"X-Scope-OrgID": am.tenant} if am is not None and am.tenant else {},
        labels=dict(am.labels) if am is not None else {},
        generator_url=am.generator_url if am is not None else None,
        repost_interval=am.repost_interval if am is not None else None,
    )


def _checked_url(channel: str, secret: Secret, where: str) -> Secret:
    """``secret`` if it is an http(s) URL with a host; the error names ``where``, not the value."""
    try:
        url = httpx.URL(secret.reveal())
    except (httpx.InvalidURL, TypeError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ChannelConfigError(
            channel, f"{where} is not an http(s) URL with a host (value not shown)"
        )
    return secret


def _alertmanager_auth(
    channel: str, am: AlertmanagerChannel, read: Callable[[SecretKeyRef, str], Secret]
) -> tuple[Secret | None, Secret | None]:
    """The Authorization header for Alertmanager and the credential in it, if any."""
    if am.basic_auth is not None and am.bearer_token_secret_ref is not None:
        raise ChannelConfigError(
            channel, "set at most one of alertmanager.basicAuth and bearerTokenSecretRef"
        )
    if am.basic_auth is not None:
        credential = read(am.basic_auth.password_secret_ref, "the Alertmanager password")
        pair = f"{am.basic_auth.username}:{credential.reveal()}".encode()
        return Secret("Basic " + base64.b64encode(pair).decode("ascii")), credential
    if am.bearer_token_secret_ref is not None:
        credential = read(am.bearer_token_secret_ref, "the Alertmanager bearer token")
        return Secret("Bearer " + credential.reveal()), credential
    return None, None
