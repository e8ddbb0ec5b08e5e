"""The kopf handlers: thin. They validate, register with the control loop, and report.

Decisions live in the engine, effects in the actions layer, the loop in
:mod:`agentmedic.operator.app`. Handlers are registered on :data:`REGISTRY` (not kopf's
global one) so that tests and the demo can run several operators in one process.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from agentmedic.api.types import GROUP, PLURAL, VERSION
from agentmedic.operator.app import Operator
from agentmedic.operator.watch import authorization

__all__ = ["REGISTRY"]

REGISTRY = kopf.OperatorRegistry()
RESOURCE = (GROUP, VERSION, PLURAL)

log = logging.getLogger(__name__)


def _operator(memo: Any) -> Operator:
    op: Operator = memo.operator
    return op


@kopf.on.login(registry=REGISTRY)
def login(memo: Any, **_: Any) -> kopf.ConnectionInfo:
    """Use the same credentials as the kubernetes client (kubeconfig or service account)."""
    conf = memo.kube_configuration
    token = authorization(conf)
    scheme, _sep, token_value = (token or "").partition(" ")
    return kopf.ConnectionInfo(
        server=conf.host,
        ca_path=conf.ssl_ca_cert or None,
        insecure=not conf.verify_ssl,
        certificate_path=conf.cert_file or None,
        private_key_path=conf.key_file or None,
        scheme=scheme or None,
        token=token_value or None,
        username=conf.username or None,
        password=conf.password or None,
    )


@kopf.on.startup(registry=REGISTRY)
async def startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    # Our own Events carry the policy's story; kopf's per-handler Events would only add noise.
    settings.posting.level = logging.WARNING
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.watching.server_timeout = 300
    # The CRD is installed before the operator (Helm's crds/); the namespaces are named, not
    # globbed: kopf need not list namespaces or CRDs (which narrows its RBAC too).
    settings.scanning.disabled = True
    settings.networking.request_timeout = 30
    op = Operator.build(
        memo.settings,
        memo.kube_configuration,
        telemetry=memo.telemetry,
        identity=memo.identity,
    )
    memo.operator = op
    await op.start()


@kopf.on.cleanup(registry=REGISTRY)
async def cleanup(memo: Any, **_: Any) -> None:
    op = getattr(memo, "operator", None)
    if op is not None:
        await op.stop()


@kopf.on.resume(*RESOURCE, registry=REGISTRY)
@kopf.on.create(*RESOURCE, registry=REGISTRY)
@kopf.on.update(*RESOURCE, field="spec", registry=REGISTRY)
async def register(body: kopf.Body, memo: Any, **_: Any) -> None:
    """Validate and (re)register the policy; an invalid spec is reported, not retried."""
    await _operator(memo).register(dict(body))


@kopf.on.delete(*RESOURCE, registry=REGISTRY)
async def unregister(body: kopf.Body, memo: Any, **_: Any) -> None:
    """Forget the policy; leave or restore its agents as spec.recovery.onDelete says."""
    op = _operator(memo)
    if not op.leading():
        # Every replica's kopf holds the finalizer; a standby must not let it go before the
        # leader has restored (or marked) the policy's agents.
        raise kopf.TemporaryError("not the leader; the leader handles the deletion", delay=5)
    await op.unregister(dict(body))


@kopf.on.probe(id="cycles", registry=REGISTRY)
def cycles_probe(memo: Any, **_: Any) -> dict[str, Any]:
    op = getattr(memo, "operator", None)
    return op.health() if op is not None else {"starting": True}
