"""Test doubles and set-ups shared by the operator's in-process integration tests."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from kubernetes.client import Configuration

from agentmedic.metrics import MetricsBackend, RangeResult
from agentmedic.operator.app import Operator
from agentmedic.operator.settings import load_settings
from agentmedic_sandbox.receivers import NotificationReceivers

NO_PROMETHEUS = "http://127.0.0.1:9"
"""A URL nothing answers on: for operators whose metrics come from a ``backend`` double."""


class ManualScheduler:
    """Stands in for the cycle scheduler: the test runs the cycles itself."""

    def start(self) -> None: ...
    def shutdown(self) -> None: ...
    async def drain(self, seconds: float) -> None: ...
    def sync(self, intervals: set[timedelta]) -> None: ...
    def trigger_now(self, interval: timedelta) -> None: ...


def in_loop_operator(
    configuration: Configuration,
    *,
    namespaces: Iterable[str] = (),
    prometheus_url: str = NO_PROMETHEUS,
    clock: Callable[[], datetime] | None = None,
    backend: MetricsBackend | None = None,
    manual: bool = True,
    **flags: Any,
) -> Operator:
    """An operator in the test's event loop: no peering, no ports, no environment, the
    settings ``flags`` on top; with ``manual`` the test runs its cycles (not started)."""
    settings = load_settings(
        flags={
            "prometheus_url": prometheus_url,
            **({"namespaces": list(namespaces)} if namespaces else {}),
            "peering": "",
            "metrics_port": 0,
            "health_port": 0,
            **flags,
        },
        environ={},
    )
    op = (
        Operator.build(settings, configuration, backend=backend)
        if clock is None
        else Operator.build(settings, configuration, clock=clock, backend=backend)
    )
    if manual:
        op.scheduler = ManualScheduler()  # type: ignore[assignment]
    return op


class InstantBackend:
    """A metrics backend double that answers instant queries only (``query``, in the
    subclass): a range query is a test's mistake."""

    async def query_range(self, *args: Any) -> RangeResult:
        raise AssertionError("not used")

    async def aclose(self) -> None:
        pass


def receivers_secret(
    namespace: str, receivers: NotificationReceivers, name: str = "notify"
) -> dict[str, Any]:
    """The Secret the channels of a test policy name: the loopback receivers' URLs and
    keys (``receivers.secret_data()``), base64-encoded as the API server keeps them."""
    data = {k: base64.b64encode(v.encode()).decode() for k, v in receivers.secret_data().items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }
