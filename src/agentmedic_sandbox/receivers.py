"""Loopback stand-ins for Slack incoming webhooks, PagerDuty Events API v2 and a webhook sink.

One HTTP server on ``127.0.0.1`` (a free port) in a background thread, so sync and
async callers alike can use it, records every request it gets and answers the way the
real service does:

- **Slack** (``POST /services/T…/B…/<token>``): ``200 ok``; ``400 invalid_payload`` for a
  body that is not a JSON object, ``400 no_text`` without text or blocks, ``400
  invalid_blocks`` when a block breaks a Block Kit limit (header plain_text > 150
  characters, section text > 3000, more than 10 fields or one > 2000, context with 0 or
  more than 10 elements, more than 50 blocks); ``404 no_service`` for a wrong token.
  (Slack's messages: "Improving error conditions for Incoming Webhooks", api.slack.com
  changelog 2016-05; limits: docs.slack.dev/reference/block-kit/blocks.)
- **PagerDuty** (``POST /v2/enqueue``): ``202 {"status": "success", "dedup_key": …}``;
  ``400 {"status": "invalid event", "errors": […]}`` for a wrong routing key, an
  unknown ``event_action``, a ``dedup_key`` over 255 characters or missing on
  acknowledge/resolve, or a trigger whose ``payload`` lacks ``summary`` (≤ 1024),
  ``source`` or a ``severity`` among critical, error, warning, info.
- **Webhook** (``POST /hooks/<token>``): ``200``; when built with an HMAC key it checks
  ``X-Agentmedic-Signature: sha256=<hex>`` over the raw body (independently of the
  sender's code) and, if ``require_signature``, answers 401 to a missing or wrong one.

Failure injection: :meth:`NotificationReceivers.fail_next` answers a status (500, 429
with Retry-After, ...) to the next N requests of a kind; :meth:`hold` keeps requests of
a kind waiting until :meth:`release` (a receiver that hangs). Wait helpers take a
deadline (``within`` seconds) and raise ``TimeoutError`` when it passes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import string
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypedDict, Unpack

from agentmedic.notify.slack import plain_text
from agentmedic_sandbox._lifecycle import Lifecycle

__all__ = [
    "NotificationReceivers",
    "Received",
    "ReceiverKind",
    "WaitOptions",
    "pagerduty_event_problems",
    "slack_block_problems",
]

_MAX_BODY = 1 << 20
# A held request is released after this even if nobody calls release(), so that a
# forgotten hold cannot keep a server thread alive forever.
_MAX_HOLD_SECONDS = 60.0
_PAGERDUTY_SEVERITIES = frozenset({"critical", "error", "warning", "info"})
_PAGERDUTY_ACTIONS = frozenset({"trigger", "acknowledge", "resolve"})


class ReceiverKind(StrEnum):
    """Which service a request was addressed to."""

    SLACK = "slack"
    PAGERDUTY = "pagerduty"
    WEBHOOK = "webhook"


@dataclass(frozen=True, slots=True)
class Received:
    """One request as received, and how it was answered."""

    kind: ReceiverKind | None
    """The service addressed; ``None`` for a path none of them serves."""
    method: str
    path: str
    headers: Mapping[str, str]
    """Header names in lower case."""
    body: bytes
    status: int
    """The status the receiver answered."""
    at: float
    """``time.monotonic()`` when it arrived."""
    problems: tuple[str, ...] = ()
    """What the receiver found wrong with the request (why it answered 4xx)."""
    signature_valid: bool | None = None
    """Webhook only, with an HMAC key: whether the signature matched the raw body."""
    injected: bool = False
    """The answer came from :meth:`NotificationReceivers.fail_next`."""

    @property
    def accepted(self) -> bool:
        """The receiver answered 2xx."""
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body parsed as JSON (``ValueError`` if it is not JSON)."""
        return json.loads(self.body)


@dataclass(slots=True)
class _Injected:
    status: int
    remaining: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _token(length: int = 24, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


class WaitOptions(TypedDict, total=False):
    """What :meth:`NotificationReceivers.wait_for` waits for, besides the count."""

    kind: ReceiverKind | str | None
    """Only requests to this receiver (any by default)."""
    accepted_only: bool
    """Only requests that were answered with success (the default)."""
    within: float
    """Seconds to wait at most (5 by default)."""


class NotificationReceivers(Lifecycle):
    """Slack, PagerDuty and webhook receivers on one loopback port (a context manager)."""

    def __init__(
        self, *, webhook_hmac_key: str | None = None, require_signature: bool = False
    ) -> None:
        """``webhook_hmac_key``: verify webhook signatures with this key;
        ``require_signature``: answer 401 when that verification fails."""
        self.slack_token = _token()
        """The secret last segment of the Slack URL."""
        self.pagerduty_routing_key = _token(32, string.ascii_lowercase + string.digits)
        """The routing key the PagerDuty receiver accepts (32 characters, like PagerDuty's)."""
        self.webhook_token = _token()
        """The secret last segment of the webhook URL."""
        self.webhook_hmac_key = webhook_hmac_key
        self.require_signature = require_signature
        self._lock = threading.Condition()
        self._received: list[Received] = []
        self._injected: dict[ReceiverKind, deque[_Injected]] = {k: deque() for k in ReceiverKind}
        self._holds: dict[ReceiverKind, threading.Event] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> NotificationReceivers:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="notification-receivers",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release held requests, stop serving and close the port."""
        with self._lock:
            for event in self._holds.values():
                event.set()
            self._holds.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    # ------------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        """The port bound (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("the receivers are not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def url_for(self, kind: ReceiverKind | str) -> str:
        """The URL a sender of this kind posts to (the Slack and webhook URLs hold tokens)."""
        kind = ReceiverKind(kind)
        if kind is ReceiverKind.SLACK:
            return f"{self.base_url}/services/T0AGENTMD/B0AGENTMD/{self.slack_token}"
        if kind is ReceiverKind.PAGERDUTY:
            return f"{self.base_url}/v2/enqueue"
        return f"{self.base_url}/hooks/{self.webhook_token}"

    def secret_data(self) -> dict[str, str]:
        """Values to put into Kubernetes Secrets so that channels reach these receivers."""
        data = {
            "slack-url": self.url_for(ReceiverKind.SLACK),
            "pagerduty-routing-key": self.pagerduty_routing_key,
            "webhook-url": self.url_for(ReceiverKind.WEBHOOK),
        }
        if self.webhook_hmac_key is not None:
            data["webhook-hmac-key"] = self.webhook_hmac_key
        return data

    # ------------------------------------------------------------------ what arrived

    @property
    def received(self) -> list[Received]:
        """Every request so far, oldest first (a copy)."""
        with self._lock:
            return list(self._received)

    def accepted(self, kind: ReceiverKind | str | None = None) -> list[Received]:
        """Requests answered 2xx, optionally of one kind."""
        wanted = ReceiverKind(kind) if kind is not None else None
        return [r for r in self.received if r.accepted and (wanted is None or r.kind is wanted)]

    def describe(self, received: Received) -> str:
        """One request as a person reads it on a terminal: plain text, never Slack's markup.

        Slack: the message's text with ``&lt;`` read back as ``<``. PagerDuty: the action,
        the ``dedup_key`` and the summary; a resolve carries no summary on the wire, so it
        shows its trigger's (the earlier trigger with the same ``dedup_key``). Webhook: the
        state and the summary.
        """
        try:
            body = received.json()
        except ValueError:
            return f"{len(received.body)} bytes that are not JSON"
        if not isinstance(body, dict):
            return "a JSON body that is not an object"
        if received.kind is ReceiverKind.SLACK:
            return plain_text(str(body.get("text") or ""))
        if received.kind is ReceiverKind.PAGERDUTY:
            action = str(body.get("event_action", "?"))
            key = str(body.get("dedup_key") or "")
            summary = _pagerduty_summary(body)
            if not summary and key:
                summary = self._trigger_summary(key, before=received)
            text = f"{action} {key}" if key else action
            return f"{text}: {summary}" if summary else f"{text} (no trigger seen for this key)"
        state = body.get("state")
        summary = body.get("summary") or ""
        return f"{state}: {summary}" if state else str(summary)

    def _trigger_summary(self, key: str, *, before: Received) -> str:
        summary = ""
        for r in self.accepted(ReceiverKind.PAGERDUTY):
            if r is before:
                break
            try:
                body = r.json()
            except ValueError:
                continue
            if isinstance(body, dict) and body.get("dedup_key") == key:
                summary = _pagerduty_summary(body) or summary
        return summary

    def clear(self) -> None:
        """Forget what was received (injected failures and holds stay)."""
        with self._lock:
            self._received.clear()

    def wait_for(
        self,
        count: int,
        *,
        kind: ReceiverKind | str | None = None,
        accepted_only: bool = True,
        within: float = 5.0,
    ) -> list[Received]:
        """Block until ``count`` matching requests have arrived; return them.

        Raises ``TimeoutError`` (saying what did arrive) when ``within`` seconds pass first.
        """
        wanted = ReceiverKind(kind) if kind is not None else None

        def matching() -> list[Received]:
            return [
                r
                for r in self._received
                if (wanted is None or r.kind is wanted) and (r.accepted or not accepted_only)
            ]

        deadline = time.monotonic() + within
        with self._lock:
            while len(found := matching()) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(r.kind, r.status) for r in self._received]
                    raise TimeoutError(
                        f"expected {count} {'accepted ' if accepted_only else ''}"
                        f"{wanted or 'any'} request(s) within {within}s, got {len(found)}; "
                        f"all received: {seen}"
                    )
                self._lock.wait(remaining)
            return found[:count]

    async def wait_for_async(self, count: int, **options: Unpack[WaitOptions]) -> list[Received]:
        """:meth:`wait_for` without blocking the event loop."""
        return await asyncio.to_thread(self.wait_for, count, **options)

    # ------------------------------------------------------------------ failure injection

    def fail_next(
        self,
        kind: ReceiverKind | str,
        status: int = 500,
        *,
        times: int = 1,
        retry_after: float | str | None = None,
        body: str | None = None,
    ) -> None:
        """Answer ``status`` to the next ``times`` requests of ``kind`` (queued after earlier
        injections), with a Retry-After header when given."""
        if times < 1:
            raise ValueError("times must be at least 1")
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        text = body if body is not None else HTTPStatus(status).phrase
        with self._lock:
            self._injected[ReceiverKind(kind)].append(
                _Injected(status, times, text.encode(), headers)
            )

    def hold(self, kind: ReceiverKind | str) -> None:
        """Keep requests of ``kind`` waiting, unanswered, until :meth:`release` (or stop)."""
        with self._lock:
            self._holds.setdefault(ReceiverKind(kind), threading.Event())

    def release(self, kind: ReceiverKind | str) -> None:
        """Let held requests of ``kind`` be answered."""
        with self._lock:
            event = self._holds.pop(ReceiverKind(kind), None)
        if event is not None:
            event.set()

    # ------------------------------------------------------------------ request handling

    def _take_injection(self, kind: ReceiverKind) -> _Injected | None:
        with self._lock:
            queue = self._injected[kind]
            if not queue:
                return None
            head = queue[0]
            head.remaining -= 1
            if head.remaining <= 0:
                queue.popleft()
            return head

    def _record(self, received: Received) -> None:
        with self._lock:
            self._received.append(received)
            self._lock.notify_all()

    def _handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        kind = self._route(path)
        if kind is not None:
            with self._lock:
                hold = self._holds.get(kind)
            if hold is not None:
                hold.wait(_MAX_HOLD_SECONDS)
        at = time.monotonic()
        if kind is None:
            self._record(Received(None, method, path, headers, body, 404, at, ("no route",)))
            return 404, {}, b"not found"

        injected = self._take_injection(kind)
        if injected is not None:
            self._record(
                Received(kind, method, path, headers, body, injected.status, at, injected=True)
            )
            return injected.status, injected.headers, injected.body

        signature_valid: bool | None = None
        if kind is ReceiverKind.SLACK:
            status, content_type, out, problems = self._slack(path, body)
        elif kind is ReceiverKind.PAGERDUTY:
            status, content_type, out, problems = self._pagerduty(body)
        else:
            signature_valid = self._signature_valid(headers, body)
            status, content_type, out, problems = self._webhook(path, body, signature_valid)
        self._record(
            Received(kind, method, path, headers, body, status, at, problems, signature_valid)
        )
        return status, {"Content-Type": content_type}, out

    def _route(self, path: str) -> ReceiverKind | None:
        if path.startswith("/services/"):
            return ReceiverKind.SLACK
        if path == "/v2/enqueue":
            return ReceiverKind.PAGERDUTY
        if path.startswith("/hooks/"):
            return ReceiverKind.WEBHOOK
        return None

    def _slack(self, path: str, body: bytes) -> tuple[int, str, bytes, tuple[str, ...]]:
        plain = "text/plain; charset=utf-8"
        if not hmac.compare_digest(path.rsplit("/", 1)[-1], self.slack_token):
            return 404, plain, b"no_service", ("wrong webhook token",)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return 400, plain, b"invalid_payload", ("body is not a JSON object",)
        if not payload.get("text") and not payload.get("blocks"):
            return 400, plain, b"no_text", ("neither text nor blocks",)
        problems = tuple(slack_block_problems(payload.get("blocks", [])))
        if problems:
            return 400, plain, b"invalid_blocks", problems
        return 200, plain, b"ok", ()

    def _pagerduty(self, body: bytes) -> tuple[int, str, bytes, tuple[str, ...]]:
        try:
            event = json.loads(body)
        except ValueError:
            event = None
        problems = (
            tuple(pagerduty_event_problems(event, self.pagerduty_routing_key))
            if isinstance(event, dict)
            else ("body is not a JSON object",)
        )
        if problems:
            answer: dict[str, Any] = {
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": list(problems),
            }
            return 400, "application/json", json.dumps(answer).encode(), problems
        dedup = event.get("dedup_key") or _token(32, string.hexdigits.lower())
        answer = {"status": "success", "message": "Event processed", "dedup_key": dedup}
        return 202, "application/json", json.dumps(answer).encode(), ()

    def _signature_valid(self, headers: Mapping[str, str], body: bytes) -> bool | None:
        if self.webhook_hmac_key is None:
            return None
        given = headers.get("x-agentmedic-signature", "")
        digest = hmac.new(self.webhook_hmac_key.encode(), body, hashlib.sha256).hexdigest()
        expected = "sha256=" + digest
        return hmac.compare_digest(given, expected)

    def _webhook(
        self, path: str, body: bytes, signature_valid: bool | None
    ) -> tuple[int, str, bytes, tuple[str, ...]]:
        as_json = "application/json"
        if not hmac.compare_digest(path.rsplit("/", 1)[-1], self.webhook_token):
            return 404, as_json, b'{"error":"unknown hook"}', ("wrong webhook token",)
        if self.require_signature and not signature_valid:
            return 401, as_json, b'{"error":"bad signature"}', ("signature missing or wrong",)
        try:
            json.loads(body)
        except ValueError:
            return 400, as_json, b'{"error":"not JSON"}', ("body is not JSON",)
        return 200, as_json, b'{"ok":true}', ()


def _pagerduty_summary(event: Mapping[str, Any]) -> str:
    payload = event.get("payload")
    return str(payload.get("summary") or "") if isinstance(payload, dict) else ""


def _text(obj: Any) -> str:
    """The ``text`` of a Block Kit text object, or "" when it is not one."""
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        return str(obj["text"])
    return ""


def slack_block_problems(blocks: Any) -> list[str]:
    """Block Kit limits a message breaks (empty when it keeps them all)."""
    if not isinstance(blocks, list):
        return ["blocks is not a list"]
    problems = []
    if len(blocks) > 50:
        problems.append(f"{len(blocks)} blocks (at most 50)")
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(block, dict):
            problems.append(f"{where} is not an object")
            continue
        kind = block.get("type")
        if kind == "header":
            text = block.get("text")
            if not isinstance(text, dict) or text.get("type") != "plain_text":
                problems.append(f"{where}: a header's text must be plain_text")
            if not 1 <= len(_text(text)) <= 150:
                problems.append(f"{where}: header text must have 1-150 characters")
        elif kind == "section":
            text, fields = block.get("text"), block.get("fields")
            if text is None and not fields:
                problems.append(f"{where}: a section needs text or fields")
            if text is not None and not 1 <= len(_text(text)) <= 3000:
                problems.append(f"{where}: section text must have 1-3000 characters")
            if fields is not None:
                if not isinstance(fields, list) or len(fields) > 10:
                    problems.append(f"{where}: fields must be a list of at most 10")
                    fields = []
                for j, f in enumerate(fields):
                    if not 1 <= len(_text(f)) <= 2000:
                        problems.append(f"{where}.fields[{j}] must have 1-2000 characters")
        elif kind == "context":
            elements = block.get("elements")
            count = len(elements) if isinstance(elements, list) else 0
            if not 1 <= count <= 10:
                problems.append(f"{where}: a context needs 1-10 elements, has {count}")
        elif kind not in ("divider", "image", "actions", "rich_text"):
            problems.append(f"{where}: unknown block type {kind!r}")
    return problems


def pagerduty_event_problems(event: Mapping[str, Any], routing_key: str) -> list[str]:
    """Ways an Events API v2 alert event breaks PagerDuty's documented shape."""
    problems = []
    if not isinstance(event.get("routing_key"), str) or not hmac.compare_digest(
        event["routing_key"], routing_key
    ):
        problems.append("routing_key is missing or not this integration's key")
    action = event.get("event_action")
    if action not in _PAGERDUTY_ACTIONS:
        problems.append(f"event_action must be one of {sorted(_PAGERDUTY_ACTIONS)}")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
        problems.append("dedup_key must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and not dedup:
        problems.append(f"dedup_key is required to {action}")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            problems.append("payload is required for trigger")
        else:
            summary = payload.get("summary")
            if not isinstance(summary, str) or not 1 <= len(summary) <= 1024:
                problems.append("payload.summary must have 1-1024 characters")
            if not isinstance(payload.get("source"), str) or not payload["source"]:
                problems.append("payload.source is required")
            if payload.get("severity") not in _PAGERDUTY_SEVERITIES:
                problems.append(f"payload.severity must be one of {sorted(_PAGERDUTY_SEVERITIES)}")
            details = payload.get("custom_details")
            if details is not None and not isinstance(details, dict):
                problems.append("payload.custom_details must be an object")
    return problems


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout) while its request was held is expected here.
        pass


def _handler_for(receivers: NotificationReceivers) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so stopping never waits on idle keep-alives.
        protocol_version = "HTTP/1.0"
        server_version = "agentmedic-receivers"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, _MAX_BODY))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, out_headers, out = receivers._handle("POST", self.path, headers, body)
            self.send_response(status)
            for name, value in out_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, format: str, *args: Any) -> None:
            # The default writes each request line, token included, to stderr.
            pass

    return Handler
