"""Shared test configuration. Fixtures for real servers live beside the tests that use them,
except the local control plane, which every folder may use."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from agentmedic_sandbox.cluster import LocalCluster

ROOT = Path(__file__).resolve().parent.parent


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
    test`` sets it): then it fails and says how to build them.
    """
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
    workdir = tmp_path_factory.mktemp("local-cluster")
    cluster = LocalCluster(workdir=workdir)
    cluster.start()
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
