"""`agentmedic fleet` and `agentmedic backtest` against a backend that answers badly: one
line on stderr naming the fault and exit code 1 (documented in their epilogs as a backend
failure), never a traceback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agentmedic.cli.main import main

POLICY = """\
apiVersion: agentmedic.io/v1alpha1
kind: AgentPolicy
metadata: {name: p, namespace: agents}
spec:
  selector: {matchLabels: {team: a}}
  rules:
    - name: errors
      all: [{metric: error_rate, window: 5m, op: ">", value: 0.2}]
      actions: [{scaleToZero: {}}]
"""


def _vector(item: Any) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": [item]}}


def _matrix(item: Any) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "matrix", "result": [item]}}


ANSWERS: dict[str, tuple[int, bytes]] = {
    "metric null": (200, json.dumps(_vector({"metric": None, "value": [1, "2"]})).encode()),
    "metric a string": (200, json.dumps(_vector({"metric": "a", "value": [1, "2"]})).encode()),
    "value true": (
        200,
        json.dumps(_vector({"metric": {"agent": "a"}, "value": [1, True]})).encode(),
    ),
    "warnings a number": (200, json.dumps({**_vector({"metric": {}}), "warnings": 5}).encode()),
    "series metric a list": (
        200,
        json.dumps(_matrix({"metric": ["agent"], "values": [[1, "2"]]})).encode(),
    ),
    "stats timings a string": (
        200,
        json.dumps(
            {
                "status": "success",
                "data": {"resultType": "matrix", "result": [], "stats": {"timings": "x"}},
            }
        ).encode(),
    ),
    "status error with 200": (200, b'{"status": "error", "error": "proxy"}'),
    "html": (200, b"<html>sign in</html>"),
    "redirect": (302, b""),
    "forbidden": (403, b"no"),
}


class Server:
    """Answers every request with one fixed status and body."""

    def __init__(self) -> None:
        self.answer = (200, b"")
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, body = server.answer
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", "https://sso.example/login")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._reply()

            def do_POST(self) -> None:
                self._reply()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/tenant-7/prometheus"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def assert_one_line(err: str, command: str) -> None:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("agentmedic ")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"agentmedic {command}: ")
    assert "tenant-7" not in err, "the URL's path (a tenant) stays out of messages"


@pytest.mark.parametrize("answer", list(ANSWERS))
def test_fleet_reports_a_bad_answer_in_one_line_with_exit_code_1(
    answer: str, server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    server.answer = ANSWERS[answer]
    code = main(["fleet", "--prometheus", server.url, "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 1
    assert_one_line(err, "fleet")


@pytest.mark.parametrize("answer", list(ANSWERS))
def test_backtest_reports_a_bad_answer_in_one_line_with_exit_code_1(
    answer: str, server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.answer = ANSWERS[answer]
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    args = ["--prometheus", server.url, "--from", "2024-05-01T00:00:00Z"]
    code = main(["backtest", str(path), *args, "--to", "2024-05-01T01:00:00Z"])
    _, err = capsys.readouterr()
    assert code == 1
    assert_one_line(err, "backtest")
