"""PrometheusServer scraping a live target: what ``agentmedic demo`` and end-to-end tests use.

Prometheus 2.42 applies scrape targets only about 5 s after start, so this module holds a
single test that waits for the target (with a deadline) rather than for a fixed time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from agentmedic.engine.series import AgentId, SeriesKey
from agentmedic.metrics import BackendConfig, PrometheusBackend, fetch_samples
from agentmedic_sandbox.prometheus import ScrapeTarget

pytestmark = pytest.mark.prometheus


@pytest.fixture
def exporter() -> Iterator[tuple[str, Counter]]:
    registry = CollectorRegistry()
    executions = Counter("agent_executions", "", ["agent", "model", "status"], registry=registry)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}", executions
    httpd.shutdown()
    httpd.server_close()


async def test_scraped_series_carry_the_target_labels_and_reach_fetch_samples(
    prometheus_factory, exporter
):
    address, executions = exporter
    executions.labels(agent="bot", model="m", status="success").inc(7)
    prom = prometheus_factory(
        scrape=[ScrapeTarget(address, labels={"namespace": "agents"})],
        scrape_interval=timedelta(seconds=1),
    )
    prom.wait_for_targets(timeout=30)

    raw = SeriesKey(
        None,
        "max by ({{agent_label}}, namespace) (agent_executions_total{ {{agents}} })",
        timedelta(minutes=1),
    )
    agent = AgentId("agents", "bot")
    async with PrometheusBackend(BackendConfig(url=prom.url)) as backend:
        table, stats = await fetch_samples(backend, {raw: [agent]}, datetime.now(UTC))
    assert not stats.errors
    assert table[agent][raw] == 7.0
