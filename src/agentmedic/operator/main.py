"""Start the operator: logging, Kubernetes credentials, the metrics endpoint, then kopf."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

import kopf
from prometheus_client import start_http_server

from agentmedic.kube import Configuration, ConfigurationError, operator_configuration
from agentmedic.operator.logs import configure_logging
from agentmedic.operator.settings import OperatorSettings
from agentmedic.operator.telemetry import Telemetry

__all__ = ["OperatorThread", "kube_configuration", "run_operator"]

log = logging.getLogger(__name__)


def kube_configuration(kubeconfig: str | None = None, context: str | None = None) -> Configuration:
    """Credentials: an explicit kubeconfig, else in-cluster, else ~/.kube/config
    (:class:`~agentmedic.kube.ConfigurationError` names what is missing)."""
    return operator_configuration(kubeconfig, context)


def _kopf_options(settings: OperatorSettings, liveness: bool, memo: kopf.Memo) -> dict[str, Any]:
    # kopf runs standalone on every replica, so every replica knows every policy; which one
    # acts is decided by the Lease (operator/leader.py), not by kopf's peering, which
    # freezes the handlers of the replicas it pauses and left no replica, or two, active.
    options: dict[str, Any] = {"standalone": True, "identity": memo.identity}
    if settings.namespaces:
        options["namespaces"] = list(settings.namespaces)
    else:
        options["clusterwide"] = True
    if liveness and settings.health_port:
        options["liveness_endpoint"] = f"http://0.0.0.0:{settings.health_port}/healthz"
    return options


def _memo(settings: OperatorSettings, conf: Configuration, telemetry: Telemetry) -> kopf.Memo:
    return kopf.Memo(
        settings=settings,
        kube_configuration=conf,
        telemetry=telemetry,
        identity=f"{socket.gethostname()}@{os.getpid()}",
    )


def run_operator(
    settings: OperatorSettings, *, kubeconfig: str | None = None, context: str | None = None
) -> int:
    """Run until SIGTERM/SIGINT (``agentmedic run``)."""
    from agentmedic.operator.handlers import REGISTRY

    configure_logging(settings.log_format, settings.log_level)
    try:
        conf = kube_configuration(kubeconfig, context)
    except ConfigurationError as exc:
        log.error("no Kubernetes credentials: %s", exc)
        return 2
    telemetry = Telemetry()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, registry=telemetry.registry)
    log.info(
        "starting agentmedic operator",
        extra={
            "namespaces": ",".join(settings.namespaces) or "*",
            "shard": str(settings.shard or ""),
            "dry_run": settings.dry_run,
        },
    )
    memo = _memo(settings, conf, telemetry)
    kopf.run(registry=REGISTRY, memo=memo, **_kopf_options(settings, liveness=True, memo=memo))
    return 0


@dataclass
class OperatorThread:
    """The real operator in a background thread with its own event loop (tests, the demo)."""

    settings: OperatorSettings
    configuration: Configuration
    telemetry: Telemetry = field(default_factory=Telemetry)
    memo: kopf.Memo | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def start(self, timeout: float = 30.0) -> None:
        from agentmedic.operator.handlers import REGISTRY

        memo = _memo(self.settings, self.configuration, self.telemetry)
        self.memo = memo

        def target() -> None:
            loop = asyncio.new_event_loop()
            try:
                kopf.run(
                    loop=loop,
                    registry=REGISTRY,
                    memo=memo,
                    stop_flag=self._stop,
                    ready_flag=self._ready,
                    **_kopf_options(self.settings, liveness=False, memo=memo),
                )
            except BaseException as exc:  # reported to the caller of start()/stop()
                self.error = exc
                self._ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=target, name="agentmedic-operator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the operator did not start in time")
        if self.error is not None:
            raise RuntimeError("the operator failed to start") from self.error

    @property
    def operator(self) -> Any:
        return getattr(self.memo, "operator", None)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
