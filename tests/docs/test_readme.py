"""The README works as written: its commands run here, its Python snippet runs.

Every shell line of the README is either run (against what this machine has: the CLI, the
API emulator standing in for a cluster, a real `make demo`) or listed in CANNOT_RUN_HERE
with the reason. A new command fails the test until it is one or the other.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

from agentmedic_sandbox.emulator import ApiEmulator
from tests.integration.test_openai_hook import _Handler, _Server

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent

CANNOT_RUN_HERE = {
    "make test": "it is the command that runs this test",
    "helm install": "needs a cluster; tests/chart renders the chart with Helm's engine",
    "kubectl": "needs a cluster and kubectl; what it shows is tested against the emulator",
    "agentmedic backtest": "needs a week of history; tests/integration/test_backtest*.py run it",
}


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _shell_lines() -> list[str]:
    lines = []
    for block in _blocks("sh"):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                lines.append(line)
    return lines


def _classify(line: str) -> str:
    for prefix in CANNOT_RUN_HERE:
        if line.startswith(prefix):
            return prefix
    return "run"


def test_quick_start_is_exactly_two_commands() -> None:
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = [
        ln for b in re.findall(r"```sh\n(.*?)```", quick, flags=re.S) for ln in b.splitlines()
    ]
    assert [c.split("#")[0].strip() for c in commands] == ["make demo", "make test"]


def test_every_shell_line_is_run_here_or_says_why_not() -> None:
    runnable = {
        "make demo",
        "agentmedic validate crds/examples/dry-run.yaml",
        "agentmedic status -n research",
    }
    for line in _shell_lines():
        kind = _classify(line)
        assert kind != "run" or line in runnable, f"README line not covered by a test: {line!r}"


def test_validate_as_in_the_readme() -> None:
    line = next(ln for ln in _shell_lines() if ln.startswith("agentmedic validate"))
    result = subprocess.run(
        [str(BIN / "agentmedic"), *shlex.split(line)[1:]], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "1 policy document(s) valid" in result.stdout


def test_status_as_in_the_readme_against_the_emulator(tmp_path: Path) -> None:
    line = next(ln for ln in _shell_lines() if ln.startswith("agentmedic status"))
    policy = yaml.safe_load((ROOT / "crds/examples/dry-run.yaml").read_text())
    with ApiEmulator() as emu:
        emu.create(policy)
        kubeconfig = emu.write_kubeconfig(tmp_path / "kubeconfig")
        result = subprocess.run(
            [str(BIN / "agentmedic"), *shlex.split(line)[1:], "--kubeconfig", str(kubeconfig)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
    assert result.returncode == 0, result.stderr
    assert "research-agents-dry-run" in result.stdout


def test_restore_commands_in_the_readme_parse() -> None:
    from agentmedic.cli.main import build_parser

    spans = re.findall(r"`(agentmedic restore [^`]+)`", README)
    assert spans
    for span in spans:
        args = build_parser().parse_args(shlex.split(span)[1:])
        assert args.command == "restore"


@pytest.fixture
def fake_openai() -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_the_sdk_snippet_runs_and_records_the_call(
    fake_openai: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (snippet,) = _blocks("python")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai)  # loopback, shaped like the OpenAI API
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    probe = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    free_port = probe.server_port
    probe.server_close()
    code = snippet.replace("start_http_server(9464)", f"start_http_server({free_port})")
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    executions = REGISTRY.get_sample_value(
        "agent_executions_total",
        {"agent": "support-bot", "model": "gpt-4o-mini", "status": "success"},
    )
    assert executions == 1.0
    tokens = REGISTRY.get_sample_value(
        "agent_tokens_total", {"agent": "support-bot", "model": "gpt-4o-mini", "type": "output"}
    )
    assert tokens == 37.0
    rating = {"agent": "support-bot", "model": "gpt-4o-mini", "name": "user_rating"}
    assert REGISTRY.get_sample_value("agent_quality_score_sum", rating) == 0.8


@pytest.mark.timeout(400)
def test_make_demo_passes() -> None:
    """The first quick-start command, exactly as written (about two minutes)."""
    proc = subprocess.Popen(
        ["make", "demo"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a timeout takes the sandbox's servers down with it
    )
    try:
        stdout, stderr = proc.communicate(timeout=380)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert "demo passed" in stdout
