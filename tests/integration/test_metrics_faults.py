"""PrometheusBackend against a misbehaving HTTP server on loopback.

Each fault ends in the right error, after the right number of attempts, within the
configured time budget, and no credential reaches the error or the logs (DEBUG included).
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agentmedic.metrics import (
    BackendConfig,
    MetricsUnavailable,
    PrometheusBackend,
    QueryError,
    UnavailableReason,
)

TOKEN = "tok-9f8e7d6c5b4a-SECRET"
PASSWORD = "pw-1a2b3c-SECRET"
HEADER_SECRET = "hdr-77aa-SECRET"
SECRETS = (TOKEN, PASSWORD, HEADER_SECRET)
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
OK_BODY = {
    "status": "success",
    "data": {"resultType": "vector", "result": [{"metric": {"agent": "a"}, "value": [1, "2"]}]},
}


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=lambda: OK_BODY)
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


class FaultServer:
    """A loopback HTTP server answering from a script of replies (the last one repeats)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.script: list[Reply] = [Reply()]
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                server.requests.append((self.command, self.path, dict(self.headers)))
                reply = server.script[min(len(server.requests), len(server.script)) - 1]
                if reply.hang:
                    server.release.wait(10)
                    return
                body = (
                    reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                )
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}/prefix/prometheus"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[FaultServer]:
    s = FaultServer()
    yield s
    s.close()


def config(url: str, **kw: Any) -> BackendConfig:
    base: dict[str, Any] = {
        "url": url,
        "bearer_token": TOKEN,
        "headers": {"X-Api-Key": HEADER_SECRET},
        "tenant": "team-1",
        "timeout": 0.5,
        "deadline": 5.0,
        "retries": 2,
        "backoff_base": 0.05,
        "backoff_cap": 0.1,
    }
    return BackendConfig(**(base | kw))


async def run(cfg: BackendConfig, caplog) -> tuple[BaseException | None, float]:
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    async with PrometheusBackend(cfg) as backend:
        try:
            await backend.query("sum by (agent) (rate(x[5m]))", NOW)
        except Exception as exc:
            return exc, time.monotonic() - started
    return None, time.monotonic() - started


def assert_no_secrets(error: BaseException | None, caplog) -> None:
    texts = [str(error), repr(error), caplog.text]
    if error is not None and error.__cause__ is not None:
        texts.append(str(error.__cause__))
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


async def test_connection_refused_is_unavailable_after_all_retries(caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed at once: nothing listens there
    error, elapsed = await run(config(f"http://127.0.0.1:{port}"), caplog)
    assert isinstance(error, MetricsUnavailable)
    assert error.reason == UnavailableReason.CONNECTION_FAILED
    assert "3 attempts" in str(error)
    assert elapsed < 2.0  # 3 refused connects and two back-offs of at most 0.1 s
    assert_no_secrets(error, caplog)


async def test_server_that_never_answers_times_out_within_the_budget(server, caplog):
    server.script = [Reply(hang=True)]
    error, elapsed = await run(config(server.url, timeout=0.3, retries=1), caplog)
    assert isinstance(error, MetricsUnavailable)
    assert error.reason == UnavailableReason.TIMEOUT
    assert len(server.requests) == 2
    assert elapsed < 0.3 * 2 + 0.1 + 1.0  # two attempts, one back-off, slack
    assert_no_secrets(error, caplog)


async def test_deadline_caps_the_whole_call_whatever_the_retries(server, caplog):
    server.script = [Reply(hang=True)]
    error, elapsed = await run(config(server.url, timeout=0.3, retries=10, deadline=0.8), caplog)
    assert isinstance(error, MetricsUnavailable)
    assert error.reason == UnavailableReason.TIMEOUT
    assert "deadline 0.8s" in str(error)
    assert elapsed < 0.8 + 0.5


async def test_http_500_is_retried_then_reported_with_prometheus_message(server, caplog):
    server.script = [Reply(500, {"status": "error", "errorType": "internal", "error": "boom"})]
    error, _ = await run(config(server.url), caplog)
    assert isinstance(error, MetricsUnavailable)
    assert error.reason == UnavailableReason.SERVER_ERROR
    assert "boom" in str(error)
    assert len(server.requests) == 3
    assert_no_secrets(error, caplog)


async def test_a_transient_503_is_retried_and_the_query_succeeds(server, caplog):
    server.script = [Reply(503, b"unavailable"), Reply()]
    error, _ = await run(config(server.url), caplog)
    assert error is None
    assert len(server.requests) == 2


async def test_429_waits_for_retry_after_then_succeeds(server, caplog):
    server.script = [Reply(429, b"slow down", {"Retry-After": "1"}), Reply()]
    error, elapsed = await run(config(server.url), caplog)
    assert error is None
    assert len(server.requests) == 2
    assert elapsed >= 1.0  # honoured Retry-After, not the 0.1 s back-off


async def test_429_with_retry_after_beyond_the_limit_fails_at_once(server, caplog):
    server.script = [Reply(429, b"slow down", {"Retry-After": "120"})]
    error, elapsed = await run(config(server.url), caplog)
    assert isinstance(error, MetricsUnavailable)
    assert error.reason == UnavailableReason.RATE_LIMITED
    assert "Retry-After 120s" in str(error)
    assert len(server.requests) == 1
    assert elapsed < 1.0
    assert_no_secrets(error, caplog)


async def test_invalid_json_is_an_invalid_response_and_not_retried(server, caplog):
    server.script = [Reply(200, b"<html>login</html>")]
    error, _ = await run(config(server.url), caplog)
    assert isinstance(error, MetricsUnavailable)
    assert error.reason == UnavailableReason.INVALID_RESPONSE
    assert "not JSON" in str(error)
    assert len(server.requests) == 1
    assert_no_secrets(error, caplog)


async def test_status_error_is_a_query_error_with_prometheus_message_and_no_retry(server, caplog):
    message = 'invalid parameter "query": 1:15: parse error: unclosed left parenthesis'
    server.script = [Reply(400, {"status": "error", "errorType": "bad_data", "error": message})]
    error, _ = await run(config(server.url), caplog)
    assert isinstance(error, QueryError)
    assert error.message == message
    assert error.error_type == "bad_data"
    assert len(server.requests) == 1
    assert_no_secrets(error, caplog)


async def test_unauthorized_is_reported_without_retry(server, caplog):
    server.script = [Reply(401, b"no")]
    error, _ = await run(config(server.url), caplog)
    assert isinstance(error, MetricsUnavailable)
    assert error.reason == UnavailableReason.UNAUTHORIZED
    assert len(server.requests) == 1
    assert_no_secrets(error, caplog)


async def test_a_server_echoing_credentials_in_its_error_gets_them_redacted(server, caplog):
    server.script = [Reply(502, f"bad auth header Bearer {TOKEN} key {HEADER_SECRET}".encode())]
    error, _ = await run(config(server.url, retries=0), caplog)
    assert isinstance(error, MetricsUnavailable)
    assert "<redacted>" in str(error)
    assert_no_secrets(error, caplog)


async def test_credentials_tenant_and_prefix_reach_the_server(server, caplog):
    error, _ = await run(config(server.url), caplog)
    assert error is None
    method, path, headers = server.requests[0]
    assert method == "GET"
    assert path.startswith("/prefix/prometheus/api/v1/query?")
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["X-Api-Key"] == HEADER_SECRET
    assert headers["X-Scope-OrgID"] == "team-1"
    assert_no_secrets(error, caplog)


async def test_basic_auth_password_never_leaks(server, caplog):
    server.script = [Reply(500, b"down")]
    cfg = config(
        server.url, bearer_token=None, basic_auth_username="u", basic_auth_password=PASSWORD
    )
    error, _ = await run(cfg, caplog)
    assert isinstance(error, MetricsUnavailable)
    assert server.requests[0][2]["Authorization"].startswith("Basic ")
    assert_no_secrets(error, caplog)
    assert PASSWORD not in repr(cfg)
    assert TOKEN not in repr(config(server.url))


# --- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    key, cert = directory / "key.pem", directory / "cert.pem"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
    except FileNotFoundError:
        pytest.skip("openssl is not installed")
    return key, cert


@pytest.fixture
def tls_server(certificate) -> Iterator[FaultServer]:
    key, cert = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    s = FaultServer(tls=context)
    yield s
    s.close()


async def test_tls_with_unknown_ca_fails_at_once_and_says_so(tls_server, caplog):
    error, _ = await run(config(tls_server.url), caplog)
    assert isinstance(error, MetricsUnavailable)
    assert error.reason == UnavailableReason.TLS_ERROR
    assert "ca_file" in str(error)


async def test_tls_with_the_ca_file_verifies_the_server(tls_server, certificate, caplog):
    error, _ = await run(config(tls_server.url, ca_file=certificate[1]), caplog)
    assert error is None
    assert tls_server.requests[0][2]["Authorization"] == f"Bearer {TOKEN}"


async def test_tls_verification_can_be_skipped_explicitly(tls_server, caplog):
    error, _ = await run(config(tls_server.url, insecure_skip_verify=True), caplog)
    assert error is None
