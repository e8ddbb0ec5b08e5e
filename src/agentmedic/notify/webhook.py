"""A generic JSON webhook: the :class:`Message` as camelCase JSON, optionally signed.

When the channel has an HMAC key, the exact body bytes are signed with HMAC-SHA256 and
the hex digest is sent as ``X-Agentmedic-Signature: sha256=<hex>`` (the scheme GitHub
uses for its webhooks). The body carries ``sentAt`` and the request carries
``X-Agentmedic-Timestamp`` (Unix seconds), so a receiver can reject old deliveries;
``X-Agentmedic-Delivery`` names the delivery so a receiver can drop a retried one.

To verify, a receiver computes ``hmac.new(key, raw_body, sha256).hexdigest()`` over the
bytes it received, before parsing them, and compares with :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from typing import Any, Final

from agentmedic.notify.message import Delivery, Message, format_time

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "SIGNATURE_PREFIX",
    "TIMESTAMP_HEADER",
    "encode_body",
    "sign_body",
    "webhook_body",
]

SIGNATURE_HEADER: Final = "X-Agentmedic-Signature"
SIGNATURE_PREFIX: Final = "sha256="
TIMESTAMP_HEADER: Final = "X-Agentmedic-Timestamp"
DELIVERY_HEADER: Final = "X-Agentmedic-Delivery"
SCHEMA_VERSION: Final = 1


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def webhook_body(message: Message, delivery: Delivery) -> dict[str, Any]:
    """The JSON document POSTed to a webhook."""
    return {
        "kind": "agentmedic.notification",
        "version": SCHEMA_VERSION,
        "episode": message.episode,
        "state": message.state.value,
        "severity": message.severity.value,
        "policy": {"namespace": message.policy_namespace, "name": message.policy_name},
        "agent": (
            {"namespace": message.agent.namespace, "name": message.agent.name}
            if message.agent
            else None
        ),
        "rule": message.rule,
        "summary": message.summary,
        "evidence": [
            {
                "condition": e.condition,
                "value": _finite(e.value),
                "threshold": _finite(e.threshold),
                "windowSeconds": e.window.total_seconds() if e.window is not None else None,
                "text": str(e),
            }
            for e in message.evidence
        ],
        "action": message.action,
        "undo": message.undo,
        "dryRun": message.dry_run,
        "time": format_time(message.time),
        "sentAt": format_time(delivery.sent_at),
        "repeat": delivery.repeat,
        "rateLimited": (
            {"count": delivery.overflow.count, "since": format_time(delivery.overflow.since)}
            if delivery.overflow
            else None
        ),
        "notes": list(delivery.notes),
    }


def encode_body(document: dict[str, Any] | list[Any]) -> bytes:
    """Compact, key-sorted UTF-8 JSON: the bytes that are signed and sent."""
    # NaN and infinities are not JSON; a receiver's parser would reject the whole body.
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def sign_body(body: bytes, key: str) -> str:
    """The signature header's value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return SIGNATURE_PREFIX + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
