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
_SIGKILL = "test_sigkill_at_random_points_never_repeats_or_loses_an_action"
_STEADY = "test_steady_state_costs_no_api_writes"
SLOW_UNITS: dict[str, float] = {
    # First, so that each starts on a worker of its own: the three real-server worlds use the
    # fixed namespace "agents", and a second world on the same control plane waits until the
    # first one's namespace is deleted (minutes on a loaded machine).
    f"{_E2E}:real:{_SIGKILL}": 1000 + 100,
    f"{_E2E}:real": 1000 + 75,
    f"{_E2E}:real:{_STEADY}": 1000 + 50,
    "tests/e2e_cluster/test_rbac_e2e.py": 155,
    "tests/docs/test_readme.py": 140,  # `make demo`, exactly as the README says
    "tests/integration/test_failover_matrix.py": 105,
    # `agentmedic demo --keep` until Ctrl-C: 94 s on 2026-12-03 12:27 UTC, handed out last
    # until then (it was not named here).
    "tests/integration/test_demo_keep.py": 95,
    f"{_E2E}:emulated:{_SIGKILL}": 87,
    f"{_E2E}:emulated": 65,
    "tests/integration/test_fault_matrix.py": 70,
    f"{_E2E}:emulated:{_STEADY}": 42,
    "tests/e2e_cluster/test_controllers_e2e.py": 40,
    "tests/integration/test_backtest.py": 35,
    "tests/unit/test_cli_bad_input.py": 30,
}
"""Seconds a scheduling unit took (``--durations``, 2026-12-03, a shared 2-core machine under
load): these are handed out first, highest first, so the longest units start at once
instead of last. Units not named here follow in collection order."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "schedule_alone: shares no module fixture with its neighbours; a parallel run "
        "schedules it (per API server) on its own, beside the rest of its module",
    )


def scheduling_unit(item: pytest.Item) -> str:
    """The scheduling unit of ``item``: its module, per API server, or the test alone."""
    unit = item.nodeid.split("::", 1)[0]
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


def run_local_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[LocalCluster]:
    """Start a local control plane in a temporary folder called ``name``, yield it, stop it."""
    from agentmedic_sandbox.cluster import LocalCluster, k8s_bin_dir, missing_binaries

    missing = missing_binaries()
    if missing:
        reason = (
            f"the local control plane is not built ({', '.join(missing)} missing in "
            f"{k8s_bin_dir()}); build it with `make k8s`"
        )
        if os.environ.get("AGENTMEDIC_REQUIRE_K8S") == "1":
            pytest.fail(f"AGENTMEDIC_REQUIRE_K8S=1 and {reason}", pytrace=False)
        pytest.skip(reason)
    from agentmedic_sandbox.cluster import ClusterStartError

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
