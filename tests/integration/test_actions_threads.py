"""One client, many threads: the actions carried out at once, as the operator's dispatcher
does with ``maxConcurrentActions`` above 1 (each action in a worker thread of
``asyncio.to_thread``, all of them through the operator's one :class:`Kube` client).

More threads than the client's connection pool holds (:data:`agentmedic.kube.client.MIN_POOL`,
32): urllib3 opens extra connections past the pool and drops them afterwards, which must
change no outcome. Run on both API servers; the assertions read the server's state.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from agentmedic.actions import ActionExecutor, ExecutionOutcome, WorkloadRef
from agentmedic.actions import record as rec
from agentmedic.kube import MERGE_PATCH
from tests.integration import actions_support as support
from tests.integration.actions_support import events, get, record, workload
from tests.integration.kube_servers import KubeServer

api = support.api
ns = support.ns
executor = support.executor
sleeps = support.sleeps

THREADS = 40
AGENTS = 48


def test_actions_on_different_agents_from_many_threads_through_one_client(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    names = [f"bot-{i:02d}" for i in range(AGENTS)]
    for i, name in enumerate(names):
        api.create(workload(ns, name, replicas=1 + i % 4))

    def disable(name: str) -> ExecutionOutcome:
        ref = WorkloadRef("Deployment", ns, name)
        episode = f"support-policy/{name}/low-success/2025-03-14T09:00:00Z"
        return executor.scale_to_zero(ref, record(ns, episode=episode)).outcome

    def put_back(name: str) -> ExecutionOutcome:
        return executor.restore(WorkloadRef("Deployment", ns, name), "a test").outcome

    with ThreadPoolExecutor(THREADS) as pool:
        disabled = list(pool.map(disable, names))
        after_disable = {name: get(api, ns, name) for name in names}
        restored = list(pool.map(put_back, names))

    assert disabled == [ExecutionOutcome.APPLIED] * AGENTS
    assert restored == [ExecutionOutcome.APPLIED] * AGENTS
    for i, name in enumerate(names):
        before = after_disable[name]
        assert before["spec"]["replicas"] == 0
        recorded = json.loads(before["metadata"]["annotations"][rec.DISABLED])
        assert recorded["replicas"] == 1 + i % 4, name  # each record is its own agent's
        assert recorded["episode"].split("/")[1] == name
        now = get(api, ns, name)
        assert now["spec"]["replicas"] == 1 + i % 4, name
        assert rec.DISABLED not in (now["metadata"].get("annotations") or {})
    per_agent = Counter(
        e["involvedObject"]["name"]
        for e in events(api, ns)
        if e["involvedObject"]["kind"] == "Deployment"
    )
    assert sorted(per_agent) == names
    assert len(set(per_agent.values())) == 1, per_agent  # as many Events for every agent


def test_many_threads_patching_one_object_through_one_client_lose_no_write(
    api: KubeServer, ns: str, executor: ActionExecutor
) -> None:
    kube = executor.kube
    api.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m", "namespace": ns}}
    )

    def write(i: int) -> str:
        kube.patch_config_map(ns, "m", {"data": {f"k{i:03d}": str(i)}}, MERGE_PATCH)
        return str(kube.get_config_map(ns, "m")["data"][f"k{i:03d}"])

    with ThreadPoolExecutor(THREADS) as pool:
        read_back = list(pool.map(write, range(120)))

    assert read_back == [str(i) for i in range(120)]
    data = kube.get_config_map(ns, "m")["data"]
    assert data == {f"k{i:03d}": str(i) for i in range(120)}
