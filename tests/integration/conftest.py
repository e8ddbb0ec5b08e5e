"""Fixtures for integration tests: real Prometheus servers on loopback.

``prometheus_factory`` (function scope) and ``prometheus_module_factory`` (module scope)
start :class:`~agentmedic.sandbox.prometheus.PrometheusServer` instances and stop them at
teardown::

    def test_x(prometheus_factory):
        prom = prometheus_factory(backfill=openmetrics_text(series))
        ...

    @pytest.fixture(scope="module")
    def history(prometheus_module_factory):
        return prometheus_module_factory(backfill=TEXT)   # one server for the module

Without the binaries the tests are skipped, except in CI (``CI`` set), where they fail:
CI must never pass by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agentmedic.sandbox.prometheus import (
    INSTALL_HINT,
    PrometheusNotInstalledError,
    PrometheusServer,
    ScrapeTarget,
)

PrometheusFactory = Callable[..., PrometheusServer]


def _start(servers: list[PrometheusServer], kwargs: dict[str, Any]) -> PrometheusServer:
    scrape = kwargs.pop("scrape", None)
    if scrape is not None:
        kwargs["scrape_targets"] = [
            t if isinstance(t, ScrapeTarget) else ScrapeTarget(t) for t in scrape
        ]
    try:
        server = PrometheusServer(**kwargs)
    except PrometheusNotInstalledError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI must not skip the Prometheus tests)")
        pytest.skip(f"{exc}; or run `make deps` ({INSTALL_HINT})")
    servers.append(server)
    return server.start()


@pytest.fixture
def prometheus_factory() -> Iterator[PrometheusFactory]:
    """Start Prometheus servers for one test: ``factory(backfill=text, scrape=[...], ...)``.

    Keyword arguments are :class:`PrometheusServer`'s; ``scrape`` takes ``ScrapeTarget``
    values or ``"host:port"`` strings.
    """
    servers: list[PrometheusServer] = []
    yield lambda **kwargs: _start(servers, kwargs)
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def prometheus_module_factory() -> Iterator[PrometheusFactory]:
    """Like ``prometheus_factory``, but the servers live for the whole test module."""
    servers: list[PrometheusServer] = []
    yield lambda **kwargs: _start(servers, kwargs)
    for server in servers:
        server.stop()
