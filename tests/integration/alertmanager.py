"""A real Alertmanager on loopback for the notify tests, and the webhook receiver it sends to.

:class:`AlertmanagerServer` runs Debian's ``prometheus-alertmanager`` (upstream's
``alertmanager`` binary is found too) with a temporary config and storage directory,
clustering off, on a free loopback port; :meth:`AlertmanagerServer.stop` kills it by PID.
:class:`HookReceiver` is the webhook receiver its route delivers to: it records every
notification Alertmanager POSTs.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import httpx
import yaml

__all__ = [
    "BINARIES",
    "AlertmanagerNotInstalledError",
    "AlertmanagerServer",
    "HookReceiver",
    "find_binary",
    "free_port",
]

BINARIES = ("prometheus-alertmanager", "alertmanager")
INSTALL_HINT = "apt-get install -y --no-install-recommends prometheus-alertmanager"


class AlertmanagerNotInstalledError(RuntimeError):
    """Neither prometheus-alertmanager nor alertmanager is on PATH."""


def find_binary() -> str:
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path
    raise AlertmanagerNotInstalledError(
        f"no Alertmanager binary ({' or '.join(BINARIES)}) on PATH; {INSTALL_HINT}"
    )


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class HookReceiver:
    """Records the JSON bodies Alertmanager's webhook_configs POST to ``url``."""

    def __init__(self) -> None:
        self.deliveries: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.deliveries.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.deliveries)

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15.0
    ) -> dict[str, Any]:
        """The first delivery for which ``predicate`` holds; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for delivery in self.received():
                if predicate(delivery):
                    return delivery
            time.sleep(0.1)
        raise AssertionError(f"no matching webhook delivery in {timeout}s: {self.received()}")


class AlertmanagerServer:
    """One Alertmanager on ``127.0.0.1`` with ``config`` (a dict written as its YAML)."""

    def __init__(self, config: dict[str, Any], ready_timeout: float = 20.0) -> None:
        self.binary = find_binary()
        self.config = config
        self.ready_timeout = ready_timeout
        self.port = 0
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._dir = tempfile.TemporaryDirectory(prefix="agentmedic-am-")
        root = Path(self._dir.name)
        (root / "alertmanager.yml").write_text(yaml.safe_dump(self.config))
        (root / "data").mkdir()
        self.port = free_port()
        log = (root / "log").open("wb")
        self._proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={root / 'alertmanager.yml'}",
                f"--storage.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + self.ready_timeout
        with httpx.Client(timeout=2) as client:
            while True:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"alertmanager exited; log:\n{self.log_tail()}")
                try:
                    if client.get(f"{self.url}/-/ready").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("alertmanager was not ready in time")
                time.sleep(0.05)

    def log_tail(self) -> str:
        if self._dir is None:
            return ""
        path = Path(self._dir.name) / "log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=10)
            self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ API

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts``; ``filters`` become ``filter=name="value"`` matchers."""
        params = [("filter", f'{k}="{v}"') for k, v in filters.items()]
        response = httpx.get(f"{self.url}/api/v2/alerts", params=params, timeout=5)
        response.raise_for_status()
        out: list[dict[str, Any]] = response.json()
        return out

    def silence(self, matchers: dict[str, str], *, hours: float = 1.0) -> str:
        """``POST /api/v2/silences`` with equality matchers; returns the silence's id."""
        now = time.time()
        body = {
            "matchers": [
                {"name": k, "value": v, "isRegex": False, "isEqual": True}
                for k, v in matchers.items()
            ],
            "startsAt": _iso(now - 1),
            "endsAt": _iso(now + hours * 3600),
            "createdBy": "agentmedic-tests",
            "comment": "silenced by a test",
        }
        response = httpx.post(f"{self.url}/api/v2/silences", json=body, timeout=5)
        response.raise_for_status()
        silence_id: str = response.json()["silenceID"]
        return silence_id


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
