"""Shared test configuration. Fixtures for real servers live beside the tests that use them,
except the local control plane, which every folder may use.

Parallel runs (``pytest -n 4 --dist loadgroup``, as ``make test`` does): every test gets an
``xdist_group`` naming its scheduling unit, so tests that share a module's fixtures run on
one worker: by default the whole module, split by API server (``emulated``/``real``) where
a module runs on both, and a test marked ``schedule_alone`` on its own. Each worker is a
separate process with its own session fixtures (its own local control plane), its own
temporary folder (pytest's ``popen-gwN``, where the control plane keeps its etcd and kwok
data) and its own loopback ports (each server binds a port the kernel gives it; see
``local_cluster`` for the one race that leaves). The slowest units are handed out first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from agentmedic.sandbox.cluster import LocalCluster

ROOT = Path(__file__).resolve().parent.parent

SERVER_IDS = ("emulated", "real")
"""The ids of the two API servers (tests/integration/kube_servers.py): a module that runs on
both is two scheduling units, one per server, so the two halves can run side by side."""

_E2E = "tests/integration/test_operator_e2e.py"
_SIGKILL = "test_sigkill_at_random_points_never_repeats_or_loses_an_action"
_STEADY = "test_steady_state_costs_no_api_writes"
SLOW_UNITS: dict[str, float] = {
    f"{_E2E}:real:{_SIGKILL}": 170,
    "tests/e2e_cluster/test_rbac_e2e.py": 155,
    "tests/docs/test_readme.py": 140,  # `make demo`, exactly as the README says
    "tests/integration/test_failover_matrix.py": 105,
    "tests/integration/test_cost_report.py": 100,  # promtool backfills its history
    f"{_E2E}:real": 80,
    f"{_E2E}:emulated:{_SIGKILL}": 70,
    f"{_E2E}:emulated": 65,
    "tests/integration/test_fault_matrix.py": 60,
    f"{_E2E}:real:{_STEADY}": 45,
    f"{_E2E}:emulated:{_STEADY}": 45,
    "tests/e2e_cluster/test_controllers_e2e.py": 40,
    "tests/integration/test_backtest.py": 35,
    "tests/unit/test_cli_bad_input.py": 30,
}
"""Seconds a scheduling unit took (``--durations``, 2026-12-03, a shared 2-core machine under
load): these are handed out first, slowest first, so the longest units start at once
instead of last. Units not named here follow in collection order."""


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist registers it too; declared here so a run without xdist still collects
    config.addinivalue_line("markers", "xdist_group(name): the scheduling unit of a parallel run")
    config.addinivalue_line(
        "markers",
        "schedule_alone: shares no module fixture with its neighbours; a parallel run "
        "schedules it (per API server) on its own, beside the rest of its module",
    )


def scheduling_unit(item: pytest.Item) -> str:
    """The ``xdist_group`` of ``item``: its module, per API server, or the test alone.

    No brackets: xdist reads the group after the last ``@`` of a node id only when no ``]``
    follows it, and would make every test its own unit."""
    unit = item.nodeid.split("::", 1)[0]
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        servers = [v for v in callspec.params.values() if isinstance(v, str) and v in SERVER_IDS]
        if servers:
            unit = f"{unit}:{servers[0]}"
    if item.get_closest_marker("schedule_alone") is not None:
        unit = f"{unit}:{getattr(item, 'originalname', item.name)}"
    return unit


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    units: dict[int, str] = {}
    for index, item in enumerate(items):
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(scheduling_unit(item)))
        units[index] = scheduling_unit(item)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Every worker collects the same order, which the scheduler then hands out.
        order = sorted(range(len(items)), key=lambda i: -SLOW_UNITS.get(units[i], 0.0))
        items[:] = [items[i] for i in order]


@pytest.fixture(scope="session")
def local_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    """A real control plane on loopback (etcd, kube-apiserver, kube-controller-manager,
    kube-scheduler, kwok with one fake node), shared by the whole session.

    Skips when the binaries are not built, unless ``AGENTMEDIC_REQUIRE_K8S=1`` (``make
    test`` sets it): then it fails and says how to build them.
    """
    from agentmedic.sandbox.cluster import LocalCluster, k8s_bin_dir, missing_binaries

    missing = missing_binaries()
    if missing:
        reason = (
            f"the local control plane is not built ({', '.join(missing)} missing in "
            f"{k8s_bin_dir()}); build it with `make k8s`"
        )
        if os.environ.get("AGENTMEDIC_REQUIRE_K8S") == "1":
            pytest.fail(f"AGENTMEDIC_REQUIRE_K8S=1 and {reason}", pytrace=False)
        pytest.skip(reason)
    from agentmedic.sandbox.cluster import ClusterStartError

    # Its ports are probed free and then bound by the child processes; on a busy machine
    # (parallel workers, other runs) another process can take one in between. That, and
    # only that, is worth a second start.
    for attempt in (1, 2):
        workdir = tmp_path_factory.mktemp("local-cluster")
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
