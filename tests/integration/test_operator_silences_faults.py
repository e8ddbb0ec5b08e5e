"""The evidence rule for silences, on the API emulator (faults and a missing CRD are
emulator-only): a policy whose namespace's silences cannot be read is not evaluated, and
an API server that does not serve AgentSilence at all means no silence can exist."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime
from typing import Any

from agentmedic.operator.app import Operator
from agentmedic_sandbox.emulator import ApiEmulator
from tests.integration.operator_support import in_loop_operator
from tests.integration.test_operator_silences import (
    INTERVAL,
    Clock,
    SickBackend,
    deployment,
    policy,
    replicas,
)

NS = "agents"


async def _operator(emu: ApiEmulator) -> tuple[Operator, dict[str, Any]]:
    emu.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    emu.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hook", "namespace": NS},
            "data": {"url": base64.b64encode(b"http://127.0.0.1:9/slack").decode()},
        }
    )
    emu.create(deployment(NS, "sick-bot"))
    body = emu.create(policy(NS))
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    op = in_loop_operator(
        emu.client_configuration(),
        namespaces=[NS],
        clock=clock,
        backend=SickBackend(NS, ("sick-bot",)),
    )
    await op.start()
    return op, body


async def test_a_policy_waits_while_its_namespaces_silences_cannot_be_listed() -> None:
    with ApiEmulator() as emu:
        emu.inject(method="GET", path_regex="/agentsilences$", status=403, times=1000)
        op, body = await _operator(emu)
        try:
            await op.register(body)
            async with asyncio.timeout(30):
                await op.cache.wait_synced()
            await op.run_cycle(INTERVAL)
            await op.run_cycle(INTERVAL)
            assert replicas(emu, NS, "sick-bot") == 2, "not acted on without knowing silences"
            assert op.parts.silences.silences(NS) is None
            emu.clear_faults()
            async with asyncio.timeout(60):  # the watch lists again, with backoff
                await op.parts.silences.listed(NS)
            await op.run_cycle(INTERVAL)
            assert replicas(emu, NS, "sick-bot") == 0, "acted once the silences were listed"
        finally:
            await op.stop()


async def test_without_the_agentsilence_crd_no_silence_can_exist_and_policies_act() -> None:
    with ApiEmulator() as emu:
        emu.delete(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            "agentsilences.agentmedic.io",
        )
        op, body = await _operator(emu)
        try:
            await op.register(body)
            async with asyncio.timeout(30):
                await op.cache.wait_synced()
            await op.run_cycle(INTERVAL)
            assert op.parts.silences.silences(NS) == ()
            assert replicas(emu, NS, "sick-bot") == 0
        finally:
            await op.stop()
