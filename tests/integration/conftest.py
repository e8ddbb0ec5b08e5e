"""Fixtures for integration tests: real Prometheus servers on loopback, and the two
Kubernetes API servers of the conformance suite.

``real_server`` (session scope) is the real control plane (``local_cluster``) behind
:class:`~tests.integration.kube_servers.RealServer`, with every agentmedic CRD (and a
minimal KEDA ScaledObject CRD) installed and Established. Modules run on both servers
through a fixture parametrized with :data:`~tests.integration.kube_servers.SERVERS` (ids
``emulated`` and ``real``); a test marked ``emulator_only("why")`` runs on the emulator
alone, its real variant deselected.

``prometheus_factory`` (function scope) and ``prometheus_module_factory`` (module scope)
start :class:`~agentmedic_sandbox.prometheus.PrometheusServer` instances and stop them at
teardown::

    def test_x(prometheus_factory):
        prom = prometheus_factory(backfill=openmetrics_text(series))
        ...

    @pytest.fixture(scope="module")
    def history(prometheus_module_factory):
        return prometheus_module_factory(backfill=TEXT)   # one server for the module

Without the binaries the tests are skipped, except in CI (``CI`` set), where they fail:
CI must never pass by skipping.

A backfill through the factories is cached: promtool turns the same OpenMetrics text into
the same TSDB blocks every run, and for the larger histories that is a minute and more of
CPU. The blocks are built once per (text, promtool version) under
``${AGENTMEDIC_CACHE:-~/.cache/agentmedic}/promtool-blocks`` and copied into each server's
own data folder before it starts, as a fresh backfill would be. Entries unused for a week
are removed. A text promtool refuses is not cached: the server backfills it itself and
reports the error as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentmedic.api.crd import crd_manifest, crd_manifests
from agentmedic.api.durations import TIME_COMPRESSION_ENV
from agentmedic_sandbox.prometheus import (
    INSTALL_HINT,
    PrometheusNotInstalledError,
    PrometheusServer,
    ScrapeTarget,
)
from tests.integration.kube_servers import REAL, RealServer

ROOT = Path(__file__).resolve().parents[2]

# KEDA is not part of a control plane: its ScaledObject CRD, reduced to what agentmedic reads
# and writes (metadata and an opaque spec), so the KEDA paths run on the real server too.
SCALED_OBJECT_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "scaledobjects.keda.sh"},
    "spec": {
        "group": "keda.sh",
        "scope": "Namespaced",
        "names": {
            "plural": "scaledobjects",
            "singular": "scaledobject",
            "kind": "ScaledObject",
            "listKind": "ScaledObjectList",
            "shortNames": ["so"],
        },
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "emulator_only(reason): needs what only the API emulator has (fault injection, "
        "request history); the real-server variant is deselected",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        marker = item.get_closest_marker("emulator_only")
        callspec = getattr(item, "callspec", None)
        on_real = callspec is not None and REAL in callspec.params.values()
        if marker is not None and not marker.args:
            raise pytest.UsageError(f"{item.nodeid}: emulator_only needs its reason")
        (dropped if marker is not None and on_real else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def real_server(request: pytest.FixtureRequest) -> Iterator[RealServer]:
    """The real control plane with every agentmedic CRD installed, rendered with the sandbox's
    time compression as the emulator serves them (skips without binaries). Every kind is
    there from the start, as on the emulator, so no test depends on which ran before it."""
    cluster = request.getfixturevalue("local_cluster")
    server = RealServer(cluster)
    for crd in compressed_crds():
        server.install_crd(crd)
    server.install_crd(SCALED_OBJECT_CRD)
    yield server
    server.close()


def agent_policy_crd() -> dict[str, Any]:
    """crds/agentpolicy.yaml as generated."""
    crd: dict[str, Any] = yaml.safe_load((ROOT / "crds" / "agentpolicy.yaml").read_text())
    return crd


# The sandbox's scenarios run a policy's hours in minutes (World's default speed-up is 30):
# the real server admits them with the CRD rendered for that compression, as the emulator
# does. The CRD's uncompressed bounds are proven on the real server by e2e_cluster's tests.
REAL_SERVER_TIME_COMPRESSION = "30"


def compressed_agent_policy_crd() -> dict[str, Any]:
    """The AgentPolicy CRD generated from the models with the sandbox's time compression."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(TIME_COMPRESSION_ENV, REAL_SERVER_TIME_COMPRESSION)
        return crd_manifest()


def compressed_crds() -> list[dict[str, Any]]:
    """Every agentmedic CRD rendered with the sandbox's time compression (AgentPolicy first).
    Compression only lowers the minimum durations, so these admit every object the CRDs as
    generated admit."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(TIME_COMPRESSION_ENV, REAL_SERVER_TIME_COMPRESSION)
        return crd_manifests()


PrometheusFactory = Callable[..., PrometheusServer]


BLOCKS_UNUSED_FOR = 7 * 24 * 3600.0
"""Seconds after which a cached backfill nobody used is removed."""


def _blocks_cache() -> Path:
    root = os.environ.get("AGENTMEDIC_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(xdg) / "agentmedic")
    return Path(root) / "promtool-blocks"


@cache
def _promtool() -> tuple[str, str] | None:
    """promtool's path and version, or None when it is not installed."""
    path = shutil.which("promtool")
    if path is None:
        return None
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return path, (out.stdout or out.stderr).strip()


@cache
def _prune_blocks_cache() -> None:
    """Remove the entries unused for a week (once per session and worker)."""
    folder = _blocks_cache()
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        try:
            if time.time() - entry.stat().st_mtime > BLOCKS_UNUSED_FOR:
                shutil.rmtree(entry, ignore_errors=True)
        except FileNotFoundError:
            pass  # another worker removed it


def _cached_blocks(text: str) -> Path | None:
    """TSDB blocks promtool makes of ``text``, built once; None if promtool refuses it."""
    tool = _promtool()
    if tool is None:
        return None
    _prune_blocks_cache()
    key = hashlib.sha256(f"{tool[1]}\n{text}".encode()).hexdigest()[:32]
    entry = _blocks_cache() / key
    if entry.is_dir():
        os.utime(entry)  # in use: keep it from pruning
        return entry
    entry.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the entry and renamed into place, so another worker never sees a part.
    building = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=entry.parent))
    source = building / "backfill.om"
    source.write_text(text, encoding="utf-8")
    blocks = building / "blocks"
    done = subprocess.run(
        [tool[0], "tsdb", "create-blocks-from", "openmetrics", str(source), str(blocks)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0 or not blocks.is_dir():
        shutil.rmtree(building, ignore_errors=True)
        return None
    with contextlib.suppress(OSError):  # another worker was first: its blocks are the same
        blocks.rename(entry)
    shutil.rmtree(building, ignore_errors=True)
    return entry


def _start(
    servers: list[PrometheusServer], folders: list[Path], kwargs: dict[str, Any]
) -> PrometheusServer:
    scrape = kwargs.pop("scrape", None)
    if scrape is not None:
        kwargs["scrape_targets"] = [
            t if isinstance(t, ScrapeTarget) else ScrapeTarget(t) for t in scrape
        ]
    text = kwargs.get("backfill")
    blocks = _cached_blocks(text) if text is not None and "data_dir" not in kwargs else None
    if blocks is not None:
        folder = Path(tempfile.mkdtemp(prefix="agentmedic-prometheus-"))
        folders.append(folder)
        shutil.copytree(blocks, folder / "data")
        kwargs = {**kwargs, "backfill": None, "data_dir": folder}
    try:
        server = PrometheusServer(**kwargs)
    except PrometheusNotInstalledError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI must not skip the Prometheus tests)")
        pytest.skip(f"{exc}; or run `make deps` ({INSTALL_HINT})")
    servers.append(server)
    return server.start()


def _stop(servers: list[PrometheusServer], folders: list[Path]) -> None:
    for server in servers:
        server.stop()
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def prometheus_factory() -> Iterator[PrometheusFactory]:
    """Start Prometheus servers for one test: ``factory(backfill=text, scrape=[...], ...)``.

    Keyword arguments are :class:`PrometheusServer`'s; ``scrape`` takes ``ScrapeTarget``
    values or ``"host:port"`` strings.
    """
    servers: list[PrometheusServer] = []
    folders: list[Path] = []
    yield lambda **kwargs: _start(servers, folders, kwargs)
    _stop(servers, folders)


@pytest.fixture(scope="module")
def prometheus_module_factory() -> Iterator[PrometheusFactory]:
    """Like ``prometheus_factory``, but the servers live for the whole test module."""
    servers: list[PrometheusServer] = []
    folders: list[Path] = []
    yield lambda **kwargs: _start(servers, folders, kwargs)
    _stop(servers, folders)
