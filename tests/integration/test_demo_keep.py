"""``agentmedic demo --keep``: the sandbox stays up after the summary so that the CLI can be
tried on it, and Ctrl-C ends it cleanly (issue #18, finding 4).

The demo runs as a subprocess (4 agents, the demo's own 150 s), exactly as a person would
start it, with its temporary directory (and so its log) in the test's own directory, on the
real control plane (`--api real`, the default where `make k8s` has built it), where
`agentmedic status` and kubectl read what a real kube-apiserver serves.

On the API emulator (`--api emulated`, the demo where the control plane is not built) a
shorter test starts the demo and interrupts it once the operator evaluates: the world the
demo builds there is the one test_operator_e2e runs whole on the emulator (the same
``World`` and ``demo_scenario``), so a whole second run here proved nothing more and cost
two and a half minutes of the suite.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agentmedic_sandbox.prometheus import INSTALL_HINT

ROOT = Path(__file__).resolve().parents[2]
# The scenario takes 90 s, plus the servers' start and the remediations' settling time.
SUMMARY_WITHIN = {"emulated": 240.0, "real": 420.0}


def _require_prometheus() -> None:
    if shutil.which("prometheus") or Path("/usr/bin/prometheus").is_file():
        return
    why = f"prometheus is not installed; {INSTALL_HINT}"
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI must not skip the Prometheus tests)")
    pytest.skip(why)


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str | None]:
    out: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.put(line.rstrip("\n"))
        out.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return out


def _require_api(api: str) -> None:
    if api != "real":
        return
    from agentmedic_sandbox.cluster import k8s_bin_dir, missing_binaries

    missing = missing_binaries()
    if not missing:
        return
    why = f"the local control plane is not built ({', '.join(missing)} in {k8s_bin_dir()})"
    if os.environ.get("AGENTMEDIC_REQUIRE_K8S") == "1":
        pytest.fail(f"AGENTMEDIC_REQUIRE_K8S=1 and {why}; build it with `make k8s`")
    pytest.skip(f"{why}; build it with `make k8s`")


def _agentmedic(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentmedic.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


@pytest.mark.parametrize("api", ["real"])
def test_demo_keep_serves_status_until_ctrl_c_and_exits_cleanly(tmp_path: Path, api: str) -> None:
    _require_prometheus()
    _require_api(api)
    env = {**os.environ, "TMPDIR": str(tmp_path), "NO_COLOR": "1"}
    args = ["demo", "--keep", "--no-ui", "--api", api, "--agents", "4"]
    proc = subprocess.Popen(
        # The demo's own length: the prompt Job takes the same wall time in a shorter run,
        # and on a loaded machine its probation window then reaches into the outage.
        [sys.executable, "-m", "agentmedic.cli", *args, "--duration", "150"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
        start_new_session=True,  # its control plane and Prometheus go with its group
    )
    seen: list[str] = []
    try:
        lines = _lines(proc)
        kubeconfig: Path | None = None
        deadline = time.monotonic() + SUMMARY_WITHIN[api]
        while kubeconfig is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                continue
            if line is None:
                break
            seen.append(line)
            if line.startswith("kubeconfig: "):
                kubeconfig = Path(line.removeprefix("kubeconfig: "))
        assert kubeconfig is not None, "no kubeconfig printed:\n" + "\n".join(seen)
        assert "demo passed" in seen, "\n".join(seen)
        assert kubeconfig.is_file()

        status = _agentmedic("status", "--kubeconfig", str(kubeconfig), env=env)
        assert status.returncode == 0, status.stderr
        assert "auto-disable" in status.stdout
        assert "flaky-bot" in status.stdout  # the disabled agent, with its undo command
        assert "Traceback" not in status.stderr

        as_json = _agentmedic("status", "--kubeconfig", str(kubeconfig), "-o", "json", env=env)
        assert as_json.returncode == 0, as_json.stderr
        assert '"remediated"' in as_json.stdout

        if api == "real" and shutil.which("kubectl"):
            # kubectl reads the real API server's tables, printer columns included.
            got = subprocess.run(
                ["kubectl", "--kubeconfig", str(kubeconfig), "get", "agentpolicies", "-A"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert got.returncode == 0, got.stderr
            assert "auto-disable" in got.stdout
            assert "BREACHING" in got.stdout.splitlines()[0]

        # The undo command the demo and status print works on the kept sandbox.
        undo = _agentmedic(
            "restore",
            "deployment/flaky-bot",
            "-n",
            "agents",
            "--kubeconfig",
            str(kubeconfig),
            env=env,
        )
        assert undo.returncode == 0, undo.stdout + undo.stderr
        assert "flaky-bot" in undo.stdout
        after = _agentmedic("status", "--kubeconfig", str(kubeconfig), "-o", "json", env=env)
        assert after.returncode == 0, after.stderr

        # Ctrl-C ends the kept sandbox; the exit status stays the self-check's.
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=90)
        while (line := lines.get(timeout=10)) is not None:
            seen.append(line)
    finally:
        if proc.poll() is None:
            # A failed check: stop the sandbox as Ctrl-C does, and whatever of it is left
            # with its process group (a SIGKILL of the demo alone would orphan its servers).
            proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    output = "\n".join(seen)
    assert rc == 0, output
    assert "Traceback" not in output
    assert not kubeconfig.exists(), "the sandbox's kubeconfig outlived it"
    log = (tmp_path / "agentmedic-demo.log").read_text()
    assert "sandbox stopped" in log
    bad = [ln for ln in log.splitlines() if " ERROR " in ln or "Traceback" in ln]
    assert bad == [], "\n".join(bad[:20])
    assert "maximum number of running instances" not in log


def test_demo_on_the_emulator_interrupted_before_its_summary_exits_130_and_cleans_up(
    tmp_path: Path,
) -> None:
    """Ctrl-C while the scenario runs: exit status 130 (documented in ``demo --help``), one
    line saying so, every server stopped, no traceback."""
    _require_prometheus()
    env = {**os.environ, "TMPDIR": str(tmp_path), "NO_COLOR": "1"}
    args = ["demo", "--no-ui", "--api", "emulated", "--agents", "4"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentmedic.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    log = tmp_path / "agentmedic-demo.log"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if log.exists() and "first evaluation cycle done" in log.read_text(errors="replace"):
                break
            time.sleep(0.5)
        assert proc.poll() is None, "the demo ended by itself"
        assert "first evaluation cycle done" in log.read_text(errors="replace")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 130, stdout[-2000:] + stderr[-2000:]
    assert "interrupted; cleaning up" in stderr
    assert "Traceback" not in stdout + stderr
    text = log.read_text()
    assert "sandbox stopped" in text
    bad = [ln for ln in text.splitlines() if " ERROR " in ln or "Traceback" in ln]
    assert bad == [], "\n".join(bad[:20])
