"""Shared test configuration. Fixtures for real servers live beside the tests that use them,
except the local control plane, which every folder may use.

Parallel runs (``pytest -n 4 --dist loadgroup``, as ``make test`` does): every test has a
scheduling unit, handed to one worker whole, so tests that share a module's fixtures run on
one worker: by default the whole module, split by API server (``emulated``/``real``) where
a module runs on both, and a test marked ``schedule_alone`` on its own. Each worker is a
separate process with its own session fixtures (its own local control plane), its own
temporary folder (pytest's ``popen-gwN``, where the control plane keeps its etcd and kwok
data) and its own loopback ports (each server binds a port the kernel gives it; see
``local_cluster`` for the one race that leaves). The slowest units are handed out first.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from agentmedic_sandbox.cluster import LocalCluster

ROOT = Path(__file__).resolve().parent.parent

SERVER_IDS = ("emulated", "real")
"""The ids of the two API servers (tests/integration/kube_servers.py): a module that runs on
both is two scheduling units, one per server, so the two halves can run side by side."""

_E2E = "tests/integration/test_operator_e2e.py"
_E2E_CLUSTER = "tests/e2e_cluster"
_SIGKILL = "test_sigkill_at_random_points_never_repeats_or_loses_an_action"
_STEADY = "test_steady_state_costs_no_api_writes"
_RBAC = "tests/e2e_cluster/test_rbac_e2e.py"
_FAILOVER = "tests/integration/test_failover_matrix.py"
_BENCHES = "tests/integration/test_benches.py"
SLOW_UNITS: dict[str, float] = {
    # First, so that each starts on a worker of its own: the three real-server worlds use the
    # fixed namespace "agents", and a second world on the same control plane waits until the
    # first one's namespace is deleted (minutes on a loaded machine).
    f"{_E2E}:real:{_SIGKILL}": 1000 + 145,
    f"{_E2E}:real": 1000 + 86,
    f"{_E2E}:real:{_STEADY}": 1000 + 67,
    "tests/docs/test_readme.py": 148,  # `make demo`, exactly as the README says
    "tests/integration/test_demo_keep.py:real": 138,  # `agentmedic demo --keep` until Ctrl-C
    f"{_E2E}:emulated:{_SIGKILL}": 131,
    f"{_FAILOVER}:test_every_cell_of_the_failover_matrix_pages_once_and_resolves_once": 109,
    "tests/integration/test_fault_matrix.py": 80,
    f"{_E2E}:emulated": 67,
    f"{_RBAC}:test_the_charts_rbac_lets_the_operator_heal_and_restore_without_one_403": 55,
    f"{_RBAC}:test_without_the_jobs_rule_the_refusal_is_an_action_failed_event": 50,
    f"{_FAILOVER}": 46,
    f"{_E2E}:emulated:{_STEADY}": 40,
    "tests/integration/test_notify_alertmanager.py": 53,
    f"{_E2E_CLUSTER}:1": 70,
    f"{_E2E_CLUSTER}:2": 75,
    "tests/integration/test_actions_threads.py:real": 35,
    f"{_BENCHES}:test_a_tiny_operator_run_prints_its_figures": 34,
    "tests/unit/test_benches.py": 31,
    "tests/integration/test_operator_budgets.py:real": 30,
    f"{_BENCHES}:test_a_tiny_latency_run_acts_on_every_breaching_agent": 28,
    "tests/integration/test_cost_report.py": 29,
    "tests/integration/test_operator_lifecycle.py:emulated": 29,
    "tests/integration/test_actions_prompt_rollout.py:real": 26,
    "tests/integration/test_operator_lifecycle.py:real": 24,
    "tests/integration/test_backtest.py": 23,
    f"{_BENCHES}:test_a_tiny_backtest_run_prints_seconds": 21,
}
"""Seconds a scheduling unit took (``--durations`` with six workers, 2026-12-03 19:14 UTC,
the 2-core machine loaded by the run itself): these are handed out first, highest first, so
that the longest units start at once instead of last. Units not named here follow in
collection order. A unit's tests are known by name here only for a test that is a unit of
its own (``schedule_alone``): the key is then the module, the API server if any, and the
test's name."""

SLOW_AT = 30.0
"""A unit named in :data:`SLOW_UNITS` with at least this many seconds is one that a worker
should not queue a second long unit behind (see ``UnitScheduling``)."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "schedule_alone: shares no module fixture with its neighbours; a parallel run "
        "schedules it (per API server) on its own, beside the rest of its module",
    )


E2E_CLUSTER_UNITS = {
    f"{_E2E_CLUSTER}/test_controllers_e2e.py": f"{_E2E_CLUSTER}:1",
    f"{_E2E_CLUSTER}/test_crd_on_the_api_server.py": f"{_E2E_CLUSTER}:1",
    f"{_E2E_CLUSTER}/test_rbac_split.py": f"{_E2E_CLUSTER}:1",
    f"{_E2E_CLUSTER}/test_local_cluster.py": f"{_E2E_CLUSTER}:2",
    f"{_E2E_CLUSTER}/test_actions_e2e.py": f"{_E2E_CLUSTER}:2",
    f"{_E2E_CLUSTER}/test_shared_kinds_on_the_api_server.py": f"{_E2E_CLUSTER}:2",
}
"""The modules of tests/e2e_cluster that share its session control plane, in two units of
about 70 s each: a worker that runs any of them starts that control plane (some 4 s of CPU,
then 2 % of a core while it idles), so spread over six workers they cost six of them. The
RBAC scenarios start their own and are units of their own."""


def scheduling_unit(item: pytest.Item) -> str:
    """The scheduling unit of ``item``: its module (or its group in
    :data:`E2E_CLUSTER_UNITS`), per API server, or the test alone."""
    module = item.nodeid.split("::", 1)[0]
    unit = module
    if item.get_closest_marker("schedule_alone") is None:
        unit = E2E_CLUSTER_UNITS.get(module, module)
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        servers = [v for v in callspec.params.values() if isinstance(v, str) and v in SERVER_IDS]
        if servers:
            unit = f"{unit}:{servers[0]}"
    if item.get_closest_marker("schedule_alone") is not None:
        unit = f"{unit}:{getattr(item, 'originalname', item.name)}"
    return unit


# The units are computed where the tests are collected (the workers: markers and parameters
# are known there) and handed to the controller's scheduler in a file. xdist's own
# `xdist_group` cannot carry them: with pytest 9 the group it appends to a node id is lost,
# so --dist loadgroup alone would spread a module's tests over all workers.
_UNITS_FILE = "agentmedic_units_file"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Controller: tell each worker where to write the units."""
    node.workerinput[_UNITS_FILE] = str(_units_path(node.config))


def _units_path(config: pytest.Config) -> Path:
    return Path(tempfile.gettempdir()) / f"agentmedic-test-units-{os.getpid()}.json"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None or _UNITS_FILE not in workerinput:
        return
    units = [scheduling_unit(item) for item in items]
    path = Path(workerinput[_UNITS_FILE])
    part = path.with_name(f"{path.name}.{workerinput.get('workerid', 'gw')}")
    part.write_text(json.dumps({i.nodeid: u for i, u in zip(items, units, strict=True)}))
    part.replace(path)  # every worker writes the same map; each replace is whole
    # Every worker collects the same order, which the scheduler then hands out.
    order = sorted(range(len(items)), key=lambda i: -SLOW_UNITS.get(units[i], 0.0))
    items[:] = [items[i] for i in order]


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Controller, ``--dist loadgroup``: whole units to one worker, slowest first."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    path = _units_path(config)
    config.option.loadscopereorder = False  # keep the workers' slowest-first order

    class UnitScheduling(LoadScopeScheduling):  # type: ignore[misc]
        units: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.units is None:
                self.units = json.loads(path.read_text())
            return self.units.get(nodeid) or nodeid.split("::", 1)[0]

        def _assign_work_unit(self, node: Any) -> None:
            """A worker holds back the last test it was given until it has the next (it must
            know what follows to tear down), so xdist hands a worker that starts a unit a
            second one at once. Behind a long unit that second one would be the next long
            unit, waiting there while other workers go idle: it gets the last (quickest)
            unit of the queue instead, and the next long one goes to whoever asks first."""
            busy = any(
                SLOW_UNITS.get(scope, 0.0) >= SLOW_AT and not all(tests.values())
                for scope, tests in self.assigned_work.get(node, {}).items()
            )
            if busy and len(self.workqueue) > 1:
                # xdist takes the head of the queue; the tail (short units) goes first.
                self.workqueue.move_to_end(next(reversed(self.workqueue)), last=False)
            super()._assign_work_unit(node)

    config.add_cleanup(lambda: path.unlink(missing_ok=True))
    return UnitScheduling(config, log)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def local_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    """A real control plane on loopback (etcd, kube-apiserver, kube-controller-manager,
    kube-scheduler, kwok with one fake node), shared by the whole session.

    Skips when the binaries are not built, unless ``AGENTMEDIC_REQUIRE_K8S=1`` (``make
    test`` sets it): then it fails and says how to build them. tests/e2e_cluster has one
    of its own (its tests install the CRD as generated, the integration tests a
    time-compressed one), so neither depends on which ran first.
    """
    yield from run_local_cluster(request, tmp_path_factory, "local-cluster")


def require_control_plane_binaries() -> None:
    """Skip when the local control plane's binaries are not built; fail instead under
    ``AGENTMEDIC_REQUIRE_K8S=1`` (``make test``), saying how to build them."""
    from agentmedic_sandbox.cluster import k8s_bin_dir, missing_binaries

    missing = missing_binaries()
    if missing:
        reason = (
            f"the local control plane is not built ({', '.join(missing)} missing in "
            f"{k8s_bin_dir()}); build it with `make k8s`"
        )
        if os.environ.get("AGENTMEDIC_REQUIRE_K8S") == "1":
            pytest.fail(f"AGENTMEDIC_REQUIRE_K8S=1 and {reason}", pytrace=False)
        pytest.skip(reason)


def run_local_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[LocalCluster]:
    """Start a local control plane in a temporary folder called ``name``, yield it, stop it."""
    require_control_plane_binaries()
    from agentmedic_sandbox.cluster import ClusterStartError, LocalCluster

    # Its ports are probed free and then bound by the child processes; on a busy machine
    # (parallel workers, other runs) another process can take one in between. That, and
    # only that, is worth a second start.
    for attempt in (1, 2):
        workdir = tmp_path_factory.mktemp(name)
        cluster = LocalCluster(workdir=workdir)
        try:
            cluster.start()
            break
        except ClusterStartError as exc:
            if attempt == 2 or "address already in use" not in str(exc):
                raise
    _say(
        request,
        f"local control plane up in {cluster.startup_seconds:.1f} s at {cluster.url} "
        f"(logs in {workdir})",
    )
    try:
        yield cluster
    finally:
        cluster.stop()


def _say(request: pytest.FixtureRequest, text: str) -> None:
    """Print past pytest's capture, so the figure shows without ``-s``."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    if capture is None or reporter is None:
        print(text)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"\n{text}")
