"""A real Prometheus on loopback, for the tests and for ``agentmedic demo``.

:class:`PrometheusServer` runs Debian's ``/usr/bin/prometheus`` on ``127.0.0.1`` at a free
port with a throw-away data directory. History is loaded *before* start with
``promtool tsdb create-blocks-from openmetrics`` (blocks moved into a running server show
up only after ~48 s), live data arrives by scraping targets or through the remote-write
receiver (:meth:`PrometheusServer.remote_write`).

The helpers :func:`counter` and :func:`histogram` describe series from Python data, and
:func:`openmetrics_text` renders them in the form promtool accepts: timestamps in seconds
(milliseconds are accepted silently and land in the year ~58,000, so they are refused
here), samples of a series in time order (out-of-order samples are dropped silently), and
``# EOF`` last.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Self

import httpx

from agentmedic_sandbox._lifecycle import Lifecycle

__all__ = [
    "PrometheusNotInstalledError",
    "PrometheusServer",
    "PrometheusStartError",
    "ScrapeTarget",
    "Series",
    "counter",
    "encode_remote_write",
    "histogram",
    "openmetrics_text",
]

INSTALL_HINT = "sudo apt-get install -y --no-install-recommends prometheus"
_MS_TIMESTAMP_THRESHOLD = 1e11
"""Seconds since 1970 stay below this until the year 5138; milliseconds are far above it."""


class PrometheusNotInstalledError(RuntimeError):
    """The ``prometheus`` or ``promtool`` binary is not on this machine."""


class PrometheusStartError(RuntimeError):
    """Prometheus (or promtool) ran but failed; the message carries the end of its log."""


@dataclass(frozen=True)
class Series:
    """One time series: a metric name, its labels and ``(timestamp_seconds, value)`` points."""

    name: str
    labels: Mapping[str, str]
    points: Sequence[tuple[float, float]]


def counter(name: str, labels: Mapping[str, str], points: Iterable[tuple[float, float]]) -> Series:
    """A counter series; ``name`` is the sample name as queried, e.g. ``agent_cost_usd_total``."""
    return Series(name, dict(labels), list(points))


def histogram(
    name: str,
    labels: Mapping[str, str],
    bounds: Sequence[float],
    points: Iterable[tuple[float, Sequence[float], float]],
) -> list[Series]:
    """The ``_bucket``, ``_sum`` and ``_count`` series of a classic histogram.

    ``bounds`` are the finite upper bounds in increasing order. Each point is
    ``(timestamp_seconds, cumulative_counts, sum)`` where ``cumulative_counts`` has one
    entry per bound and a last one for ``+Inf`` (the total count), as Prometheus exposes them.
    """
    if list(bounds) != sorted(bounds) or len(set(bounds)) != len(bounds):
        raise ValueError(f"histogram {name}: bounds must be strictly increasing, got {bounds}")
    buckets: list[list[tuple[float, float]]] = [[] for _ in range(len(bounds) + 1)]
    sums: list[tuple[float, float]] = []
    counts: list[tuple[float, float]] = []
    for ts, cumulative, total in points:
        if len(cumulative) != len(bounds) + 1:
            raise ValueError(
                f"histogram {name}: each point needs {len(bounds) + 1} cumulative counts "
                f"(one per bound and +Inf), got {len(cumulative)}"
            )
        for i, count in enumerate(cumulative):
            buckets[i].append((ts, count))
        sums.append((ts, total))
        counts.append((ts, cumulative[-1]))
    les = [_format_float(b) for b in bounds] + ["+Inf"]
    out = [
        Series(f"{name}_bucket", {**labels, "le": le}, pts)
        for le, pts in zip(les, buckets, strict=True)
    ]
    out.append(Series(f"{name}_sum", dict(labels), sums))
    out.append(Series(f"{name}_count", dict(labels), counts))
    return out


def openmetrics_text(series: Iterable[Series]) -> str:
    """Render series as OpenMetrics text for ``promtool tsdb create-blocks-from openmetrics``.

    Series of one metric name are kept together and each series' points are written in time
    order. Raises ``ValueError`` for timestamps that look like milliseconds.
    """
    by_name: dict[str, list[Series]] = {}
    for s in series:
        by_name.setdefault(s.name, []).append(s)
    lines: list[str] = []
    for name in sorted(by_name):
        for s in by_name[name]:
            head = name + _format_labels(s.labels)
            for ts, value in sorted(s.points, key=lambda p: p[0]):
                if ts > _MS_TIMESTAMP_THRESHOLD:
                    raise ValueError(
                        f"{head}: timestamp {ts} looks like milliseconds; OpenMetrics "
                        "backfill takes seconds since the epoch"
                    )
                lines.append(f"{head} {_format_float(value)} {_format_float(ts)}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _format_labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    parts = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in sorted(labels.items()))
    return "{" + parts + "}"


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


# --- remote write (protobuf + snappy, encoded by hand to avoid two dependencies) -----------


def encode_remote_write(series: Iterable[Series]) -> bytes:
    """Encode series as a snappy-compressed Prometheus remote-write ``WriteRequest``."""
    body = bytearray()
    for s in series:
        ts_msg = bytearray()
        labels = sorted({**s.labels, "__name__": s.name}.items())
        for k, v in labels:
            label = _pb_bytes(1, k.encode()) + _pb_bytes(2, v.encode())
            ts_msg += _pb_bytes(1, label)
        for ts, value in sorted(s.points, key=lambda p: p[0]):
            sample = (
                _pb_key(1, 1)
                + _double(value)
                + _pb_key(2, 0)
                + _varint(_zigzag_free_int64(round(ts * 1000)))
            )
            ts_msg += _pb_bytes(2, sample)
        body += _pb_bytes(1, bytes(ts_msg))
    return _snappy_literal(bytes(body))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _zigzag_free_int64(n: int) -> int:
    # int64 fields use two's complement in 10 varint bytes when negative.
    return n if n >= 0 else n + (1 << 64)


def _pb_key(field_number: int, wire_type: int) -> bytes:
    return _varint(field_number << 3 | wire_type)


def _pb_bytes(field_number: int, payload: bytes) -> bytes:
    return _pb_key(field_number, 2) + _varint(len(payload)) + payload


def _double(value: float) -> bytes:
    return struct.pack("<d", value)


def _snappy_literal(data: bytes) -> bytes:
    """Snappy block format with one literal element: valid, merely uncompressed."""
    out = bytearray(_varint(len(data)))
    if not data:
        return bytes(out)
    n = len(data) - 1
    if n < 60:
        out.append(n << 2)
    else:
        size = (n.bit_length() + 7) // 8
        out.append((59 + size) << 2)
        out += n.to_bytes(size, "little")
    out += data
    return bytes(out)


# --- the server -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScrapeTarget:
    """An HTTP endpoint Prometheus scrapes; ``labels`` are added to every scraped series."""

    address: str
    """``host:port``, e.g. ``127.0.0.1:9464``."""
    labels: Mapping[str, str] = field(default_factory=dict)
    metrics_path: str = "/metrics"


def _find_binary(name: str, explicit: str | None) -> str:
    candidates = [explicit] if explicit else [shutil.which(name), f"/usr/bin/{name}"]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise PrometheusNotInstalledError(
        f"{explicit or name} not found; install Prometheus with `{INSTALL_HINT}` "
        "(Debian/Ubuntu; the package ships both prometheus and promtool)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _yaml_str(value: str) -> str:
    # JSON strings are valid YAML scalars and need no escaping rules of our own.
    return json.dumps(value)


class PrometheusServer(Lifecycle):
    """A Prometheus process on ``127.0.0.1``, started by :meth:`start`, killed by :meth:`stop`.

    Use it as a context manager::

        with PrometheusServer(backfill=openmetrics_text(series)) as prom:
            httpx.get(f"{prom.url}/api/v1/query", params={"query": "up"})

    ``backfill`` (OpenMetrics text) is turned into TSDB blocks before the server starts.
    ``scrape_targets`` are scraped every ``scrape_interval``; Prometheus applies them only
    some seconds after start, see :meth:`wait_for_targets`. ``remote_write_receiver``
    enables ``/api/v1/write``; ``out_of_order_window`` lets it accept older samples.
    """

    def __init__(
        self,
        *,
        backfill: str | None = None,
        scrape_targets: Sequence[ScrapeTarget] = (),
        scrape_interval: timedelta = timedelta(seconds=15),
        remote_write_receiver: bool = False,
        out_of_order_window: timedelta | None = None,
        retention: str = "100y",
        port: int | None = None,
        data_dir: Path | None = None,
        ready_timeout: float = 30.0,
        prometheus_binary: str | None = None,
        promtool_binary: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self._binary = _find_binary("prometheus", prometheus_binary)
        self._promtool = _find_binary("promtool", promtool_binary) if backfill else None
        self.backfill = backfill
        self.scrape_targets = list(scrape_targets)
        self.scrape_interval = scrape_interval
        self.remote_write_receiver = remote_write_receiver
        self.out_of_order_window = out_of_order_window
        self.retention = retention
        self.ready_timeout = ready_timeout
        self.extra_args = list(extra_args)
        self._requested_port = port
        self._port: int | None = None
        self._given_dir = data_dir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[..., PrometheusServer] | None = None
        self._http: httpx.Client | None = None

    # -- properties

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("PrometheusServer is not started; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234`` (the HTTP API is under ``/api/v1``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def directory(self) -> Path:
        """The working directory: ``data/`` (TSDB), ``prometheus.yml``, ``prometheus.log``."""
        if self._dir is None:
            raise RuntimeError("PrometheusServer is not started; call start() first")
        return self._dir

    # -- lifecycle

    def start(self) -> Self:
        """Backfill (if asked), start the process and wait until ``/-/ready`` answers 200."""
        if self._proc is not None:
            raise RuntimeError("PrometheusServer is already started")
        if self._given_dir is not None:
            self._dir = self._given_dir
            self._dir.mkdir(parents=True, exist_ok=True)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="agentmedic-prometheus-")
            self._dir = Path(self._tmp.name)
        data = self._dir / "data"
        data.mkdir(exist_ok=True)
        config = self._dir / "prometheus.yml"
        config.write_text(self._config_yaml())
        if self.backfill is not None:
            try:
                self._run_backfill(data)
            except BaseException:
                self._cleanup_dir()
                raise
        attempts = 1 if self._requested_port else 3
        for attempt in range(attempts):
            self._port = self._requested_port or _free_port()
            try:
                self._launch(config, data)
                break
            except PrometheusStartError as exc:
                self._kill()
                # Another process may grab the free port between our probe and the bind.
                if "address already in use" not in str(exc) or attempt == attempts - 1:
                    self._cleanup_dir()
                    raise
        return self

    def _launch(self, config: Path, data: Path) -> None:
        log_path = self.directory / "prometheus.log"
        args = [
            self._binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=info",
        ]
        if self.remote_write_receiver:
            args.append("--web.enable-remote-write-receiver")
        args += self.extra_args
        with log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self._finalizer = weakref.finalize(self, _terminate, self._proc)
        deadline = time.monotonic() + self.ready_timeout
        with httpx.Client(timeout=2.0, verify=False) as client:
            while True:
                if self._proc.poll() is not None:
                    raise PrometheusStartError(
                        f"prometheus exited with code {self._proc.returncode} before it was "
                        f"ready; log:\n{self.log_tail()}"
                    )
                try:
                    if client.get(f"{self.url}/-/ready").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise PrometheusStartError(
                        f"prometheus was not ready within {self.ready_timeout:.0f}s; "
                        f"log:\n{self.log_tail()}"
                    )
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 10 s) and remove a temporary dir."""
        self._kill()
        self._cleanup_dir()

    def _kill(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._proc = None

    def _cleanup_dir(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self._dir = None

    # -- data

    def _run_backfill(self, data: Path) -> None:
        assert self._promtool is not None
        assert self.backfill is not None
        source = self.directory / "backfill.om"
        source.write_text(self.backfill, encoding="utf-8")
        proc = subprocess.run(
            [self._promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        source.unlink()
        if proc.returncode != 0:
            raise PrometheusStartError(
                f"promtool could not backfill (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
            )

    def remote_write(self, series: Iterable[Series], timeout: float = 10.0) -> None:
        """Push samples through ``/api/v1/write``; needs ``remote_write_receiver=True``.

        Blocking; from async code call it through ``asyncio.to_thread``. Samples older than
        the newest one of their series need ``out_of_order_window``.
        """
        if not self.remote_write_receiver:
            raise RuntimeError("start PrometheusServer with remote_write_receiver=True first")
        if self._http is None:
            # One client for all pushes: building one loads a CA bundle (~50 ms).
            self._http = httpx.Client(verify=False)
        response = self._http.post(
            f"{self.url}/api/v1/write",
            content=encode_remote_write(series),
            headers={
                "Content-Encoding": "snappy",
                "Content-Type": "application/x-protobuf",
                "X-Prometheus-Remote-Write-Version": "0.1.0",
            },
            timeout=timeout,
        )
        if response.status_code >= 300:
            raise RuntimeError(f"remote write failed: HTTP {response.status_code} {response.text}")

    def wait_for_targets(self, timeout: float = 30.0) -> None:
        """Wait until every scrape target has been scraped successfully at least once."""
        want = {t.address for t in self.scrape_targets}
        deadline = time.monotonic() + timeout
        last: object = None
        with httpx.Client(timeout=2.0, verify=False) as client:
            while time.monotonic() < deadline:
                active = client.get(f"{self.url}/api/v1/targets").json()["data"]["activeTargets"]
                up = {t["labels"].get("instance") for t in active if t.get("health") == "up"}
                last = [(t["labels"].get("instance"), t.get("health")) for t in active]
                if want <= up:
                    return
                time.sleep(0.1)
        raise TimeoutError(f"scrape targets not up within {timeout:.0f}s: {last}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log (for error messages)."""
        try:
            text = (self.directory / "prometheus.log").read_text(errors="replace")
        except (OSError, RuntimeError):
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _config_yaml(self) -> str:
        interval = f"{max(1, int(self.scrape_interval.total_seconds()))}s"
        out = [
            "global:",
            f"  scrape_interval: {interval}",
            f"  evaluation_interval: {interval}",
        ]
        if self.out_of_order_window is not None:
            window = f"{int(self.out_of_order_window.total_seconds())}s"
            out += ["storage:", "  tsdb:", f"    out_of_order_time_window: {window}"]
        out.append("scrape_configs:")
        if not self.scrape_targets:
            out.append("  []")
        for i, target in enumerate(self.scrape_targets):
            out += [
                f"  - job_name: target-{i}",
                f"    metrics_path: {_yaml_str(target.metrics_path)}",
                "    static_configs:",
                f"      - targets: [{_yaml_str(target.address)}]",
            ]
            if target.labels:
                out.append("        labels:")
                out += [
                    f"          {_yaml_str(k)}: {_yaml_str(v)}" for k, v in target.labels.items()
                ]
        return "\n".join(out) + "\n"


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
