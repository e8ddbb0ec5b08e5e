"""One convention for every command (issue 18, findings 2 and 3, and status of finding 5).

Every command's ``--help``; each output format of each command that prints results, on
fixtures (a canned metrics backend in place of Prometheus, a canned cluster answer for
``status``); full-width tables off a terminal; hidden old spellings; kubectl references;
exit codes for a missing kubeconfig and a closed pipe; shell completion; NO_COLOR.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentmedic.cli import _output
from agentmedic.cli.main import COMMANDS, build_parser, main
from agentmedic.cli.restore import parse_target
from agentmedic.metrics import QueryResult, Sample
from agentmedic.metrics.backend import RangeResult, RangeSeries

ROOT = Path(__file__).resolve().parents[2]
PROM = ("--prometheus", "http://127.0.0.1:9")
HOUR = ("--from", "2026-11-03T09:00:00Z", "--to", "2026-11-03T10:00:00Z")
LONG = "an-agent-with-a-name-long-enough-to-push-any-table-past-eighty-columns"
AGENTS = ("alpha", "beta", LONG)


@pytest.fixture(autouse=True)
def no_ambient_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in list(os.environ):
        if name.startswith("AGENTMEDIC_") or name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST"):
            monkeypatch.delenv(name)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


# ----------------------------------------------------------------------------- --help


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


HELP = list(_parsers(build_parser()))


def test_the_help_walk_reaches_every_command_and_report_cost() -> None:
    assert {p[0] for p in HELP if p} == set(COMMANDS)
    assert ("report", "cost") in HELP


@pytest.mark.parametrize("path", HELP, ids=lambda p: " ".join(p) or "agentmedic")
def test_every_command_prints_its_help(path: tuple[str, ...]) -> None:
    code, out, err = run(*path, "--help")
    assert code == 0, err
    assert out.startswith(f"usage: {' '.join(('agentmedic', *path))}")
    assert err == ""


@pytest.mark.parametrize("path", [("run",), ("fleet",), ("backtest",), ("report", "cost")])
def test_every_metrics_command_takes_the_same_prometheus_flag(path: tuple[str, ...]) -> None:
    _, out, _ = run(*path, "--help")
    assert "--prometheus URL" in out
    assert "--bearer-token-file" in out
    assert "--prometheus-url" not in out  # the old spelling is hidden


def test_old_spellings_still_parse_for_one_release() -> None:
    parser = build_parser()
    assert parser.parse_args(["run", "--prometheus-url", "http://p"]).prometheus_url == "http://p"
    assert parser.parse_args(["run", "--prometheus", "http://p"]).prometheus_url == "http://p"
    assert parser.parse_args(["fleet", "--format", "json"]).output == "json"
    assert parser.parse_args(["backtest", "p.yaml", "--format", "json"]).output == "json"
    assert parser.parse_args(["fleet", "--prometheus-url", "http://p"]).prometheus == "http://p"
    _, out, _ = run("fleet", "--help")
    assert "--format" not in out


@pytest.mark.parametrize(
    "path",
    [("status",), ("fleet",), ("backtest", "p.yaml"), ("report", "cost"), ("validate", "x")],
)
def test_every_results_command_takes_o_with_kubectls_formats(path: tuple[str, ...]) -> None:
    parser = build_parser()
    for output in _output.FORMATS:
        assert parser.parse_args([*path, "-o", output]).output == output


# ----------------------------------------------------------------------------- fixtures


def _labels(promql: str, agent: str) -> dict[str, str]:
    labels = {"agent": agent, "namespace": "agents"}
    if "tool" in promql:
        labels["tool"] = "search"
    if "model" in promql or "agent_info" in promql:
        labels["model"] = "gpt-4o"
    if "team" in promql:
        labels["team"] = "support"
    return labels


class CannedBackend:
    """Stands in for PrometheusBackend: every query answers for the same three agents."""

    def __init__(self, config: Any) -> None:
        self.config = config

    async def __aenter__(self) -> CannedBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        pass

    async def query(self, promql: str, at: datetime) -> QueryResult:
        t = at.timestamp()
        if promql.rstrip().endswith("]"):  # raw samples (report cost)
            series = tuple(
                RangeSeries(_labels(promql, a), ((t - 120, 1.0), (t - 60, 2.0 + i)))
                for i, a in enumerate(AGENTS)
            )
            return QueryResult("matrix", series=series)
        samples = tuple(Sample(_labels(promql, a), 0.25 * (i + 1)) for i, a in enumerate(AGENTS))
        return QueryResult("vector", samples=samples)

    async def query_range(
        self, promql: str, start: datetime, end: datetime, step: timedelta
    ) -> RangeResult:
        n = int((end - start) / step) + 1
        points = tuple(
            (start.timestamp() + k * step.total_seconds(), 0.9 if k > n // 2 else 0.1)
            for k in range(n)
        )
        return RangeResult(series=tuple(RangeSeries(_labels(promql, a), points) for a in AGENTS))


@pytest.fixture
def canned_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    import agentmedic.metrics

    monkeypatch.setattr(agentmedic.metrics, "PrometheusBackend", CannedBackend)


POLICY = """\
apiVersion: agentmedic.io/v1alpha1
kind: AgentPolicy
metadata: {name: quality, namespace: agents}
spec:
  selector: {matchLabels: {team: a}}
  rules:
  - name: errors
    all: [{metric: error_rate, op: ">", value: 0.5}]
    for: 2m
    actions: [{scaleToZero: {}}, {notify: {channels: [oncall]}}]
  guardrails: {maxDisabledPercent: 100}
  notifications:
    channels: [{name: oncall, slack: {webhookSecretRef: {name: s, key: url}}}]
"""


def _policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


NOTIFY_ONLY = {
    "metadata": {"namespace": "agents", "name": "notify-only"},
    "spec": {"rules": [{"name": "r", "actions": [{"notify": {"channels": ["c"]}}]}]},
    "status": {"agents": {"total": 4, "healthy": 3, "disabled": 1, "downgraded": 0}},
}
DISABLING = {
    "metadata": {"namespace": "agents", "name": "disabling"},
    "spec": {
        "interval": "1m",
        "rules": [{"name": "low-success", "actions": [{"scaleToZero": {}}]}],
    },
    "status": {
        "agents": {"total": 4, "healthy": 3, "disabled": 1},
        "conditions": [{"type": "Ready", "status": "True", "reason": "Valid", "message": "ok"}],
        "recentActions": [
            {
                "time": "2026-11-03T10:00:00.123456Z",
                "agent": f"agents/{LONG}",
                "rule": "low-success",
                "action": action,
                "outcome": "Applied",
                "reason": "success_rate[15m] = 0.3 < 0.8 (n=150)",
            }
            for action in ("scaleToZero", "notify")
        ],
    },
}
WORKLOAD_NS = "agents-production-europe-west-with-a-long-name"


def _workload() -> dict[str, Any]:
    from agentmedic.cli.status import undo_command

    return {
        "kind": "Deployment",
        "namespace": WORKLOAD_NS,
        "name": LONG,
        "changes": ["scaled to 0 (was 3)"],
        "policy": "disabling",
        "rule": "low-success",
        "reason": "success_rate[15m] = 0.3 < 0.8",
        "at": "2026-11-03T10:00:00Z",
        "policyDeleted": None,
        "undo": undo_command("Deployment", WORKLOAD_NS, LONG),
    }


@pytest.fixture
def canned_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A kubeconfig for a server nobody calls: the cluster's answers are canned."""
    import agentmedic.cli.status as status

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    monkeypatch.setattr(status, "_policies", lambda api, ns: [NOTIFY_ONLY, DISABLING])
    monkeypatch.setattr(status, "_remediated", lambda apps, ns: [_workload()])
    monkeypatch.setattr(status, "_silences", lambda kube, ns: [])
    return kubeconfig


# ----------------------------------------------------------------------------- formats


def _argv(command: str, tmp_path: Path, kubeconfig: Path | None) -> list[str]:
    return {
        "status": ["status", "--kubeconfig", str(kubeconfig)],
        "fleet": ["fleet", *PROM, "--no-progress"],
        "backtest": ["backtest", str(_policy_file(tmp_path)), *PROM, *HOUR],
        "report cost": ["report", "cost", *PROM, "--period", "2026-11", "--no-progress"],
        "validate": ["validate", str(_policy_file(tmp_path))],
    }[command]


FORMATS = [
    (command, output)
    for command, extra in [
        ("status", ()),
        ("fleet", ("csv",)),
        ("backtest", ()),
        ("report cost", ("csv",)),
        ("validate", ()),
    ]
    for output in (*_output.FORMATS, *extra)
]


@pytest.mark.parametrize(("command", "output"), FORMATS, ids=lambda v: str(v))
def test_each_output_format_of_each_command(
    command: str,
    output: str,
    tmp_path: Path,
    canned_metrics: None,
    canned_cluster: Path,
) -> None:
    code, out, err = run(*_argv(command, tmp_path, canned_cluster), "-o", output)

    assert code == 0, err
    assert "Traceback" not in err
    if output == "json":
        document = json.loads(out)
        assert isinstance(document, dict)
        assert document
    elif output == "yaml":
        document = yaml.safe_load(out)
        # The same document as -o json.
        _, again, _ = run(*_argv(command, tmp_path, canned_cluster), "-o", "json")
        assert _drop_times(document) == _drop_times(json.loads(again))
    elif output == "csv":
        rows = list(csv.reader(io.StringIO(out)))
        assert len(rows) >= 2
        assert len(set(map(len, rows))) == 1
    else:
        assert out.strip()
        assert "…" not in out, "off a terminal no cell is cut"


def _drop_times(document: Any) -> Any:
    """The document with what differs between two runs a moment apart (times, timings)
    reduced to its type; everything else as it is."""
    if isinstance(document, dict):
        return {k: _drop_times(v) for k, v in document.items()}
    if isinstance(document, list):
        return [_drop_times(v) for v in document]
    if isinstance(document, str) and document[:2] == "20" and document[4:5] == "-":
        return "a time"
    if isinstance(document, float):
        return "a number"
    return document


def test_wide_adds_columns_to_status_and_fleet(
    tmp_path: Path, canned_metrics: None, canned_cluster: Path
) -> None:
    for command, added in [("status", "MESSAGE"), ("fleet", "Most errors")]:
        _, table, _ = run(*_argv(command, tmp_path, canned_cluster))
        _, wide, _ = run(*_argv(command, tmp_path, canned_cluster), "-o", "wide")
        assert added not in table
        assert added in wide


def test_fleet_headers_are_whole_when_written_to_a_file(
    tmp_path: Path, canned_metrics: None
) -> None:
    _, out, _ = run("fleet", *PROM, "--no-progress")
    header = next(line for line in out.splitlines() if "Agent" in line)
    for column in ("Model", "Share", "Success", "Tok/exec", "Slowest tool"):
        assert column in header
    assert f"agents/{LONG}" in out


# ----------------------------------------------------------------------------- status


def test_status_never_cuts_the_undo_command_off_a_terminal(canned_cluster: Path) -> None:
    code, out, _ = run("status", "--kubeconfig", str(canned_cluster))
    assert code == 0
    undo = f"agentmedic restore deployment/{LONG} -n {WORKLOAD_NS}"
    assert len(undo) > 80
    assert any(undo in line for line in out.splitlines())


def test_status_on_a_narrow_terminal_folds_cells_and_keeps_the_undo_whole() -> None:
    from rich.console import Console

    from agentmedic.cli.status import render

    screen = Console(width=60, force_terminal=True, color_system=None, record=True)
    render([NOTIFY_ONLY, DISABLING], [_workload()], screen)
    text = screen.export_text()
    assert "…" not in text
    undo = f"agentmedic restore deployment/{LONG} -n {WORKLOAD_NS}"
    # One logical line, wrapped by the terminal itself rather than cut by the layout.
    assert undo in text.replace("\n", "")
    assert any(line.strip().startswith("agentmedic restore") for line in text.splitlines())


def test_status_undo_is_a_command_restore_accepts(canned_cluster: Path) -> None:
    _, out, _ = run("status", "--kubeconfig", str(canned_cluster), "-o", "json")
    undo = json.loads(out)["remediated"][0]["undo"].split()
    assert undo[:2] == ["agentmedic", "restore"]
    assert build_parser().parse_args(undo[1:]).command == "restore"
    assert parse_target(undo[2], WORKLOAD_NS, None) == ("Deployment", WORKLOAD_NS, LONG)


def test_status_counts_disabled_only_for_policies_that_can_disable(
    canned_cluster: Path,
) -> None:
    from agentmedic.cli.status import policy_row

    notify_only = policy_row(NOTIFY_ONLY)
    disabling = policy_row(DISABLING)
    # AGENTS HEALTHY BREACHING DISABLED DOWNGRADED NO DATA
    assert notify_only[2:8] == ["4", "3", "0", "-", "-", "0"]
    assert disabling[2:8] == ["4", "3", "0", "1", "-", "0"]


def test_status_shows_each_decisions_evidence_once(canned_cluster: Path) -> None:
    _, out, _ = run("status", "--kubeconfig", str(canned_cluster))
    assert out.count("success_rate[15m] = 0.3 < 0.8 (n=150)") == 1
    line = next(x for x in out.splitlines() if "(n=150)" in x)
    assert "scaleToZero Applied, notify Applied" in line
    assert line.strip().startswith("2026-11-03 10:00:00Z  ")  # to the second


def test_namespace_and_all_namespaces_are_exclusive() -> None:
    assert build_parser().parse_args(["status", "-A"]).all_namespaces
    code, _, err = run("status", "-n", "agents", "-A")
    assert code == 2
    assert "not allowed with argument" in err


# ----------------------------------------------------------------------------- references


@pytest.mark.parametrize(
    ("target", "namespace", "kind", "expected"),
    [
        ("deployment/x", "agents", None, ("Deployment", "agents", "x")),
        ("deploy/x", None, None, ("Deployment", None, "x")),
        ("deployments.apps/x", "a", None, ("Deployment", "a", "x")),
        ("statefulset/x", "a", None, ("StatefulSet", "a", "x")),
        ("sts/x", "a", "statefulset", ("StatefulSet", "a", "x")),
        ("agents/x", None, None, ("Deployment", "agents", "x")),
        ("agents/x", "agents", None, ("Deployment", "agents", "x")),
        ("agents/x", None, "statefulset", ("StatefulSet", "agents", "x")),
    ],
)
def test_restore_takes_kubectl_references(
    target: str, namespace: str | None, kind: str | None, expected: tuple[str, ...]
) -> None:
    assert parse_target(target, namespace, kind) == expected


def test_a_reference_without_namespace_uses_the_contexts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentmedic.cli.restore import _context_namespace

    config = tmp_path / "config"
    config.write_text(
        "current-context: b\ncontexts:\n- {name: a, context: {namespace: one}}\n"
        "- {name: b, context: {namespace: two}}\n"
    )
    assert _context_namespace(str(config), None) == "two"
    assert _context_namespace(str(config), "a") == "one"
    assert _context_namespace(str(tmp_path / "none"), None) == "default"


# ----------------------------------------------------------------------------- exit codes


@pytest.mark.parametrize(
    "argv", [("status",), ("restore", "deployment/x", "-n", "agents"), ("restore", "agents/x")]
)
def test_no_kubeconfig_at_all_exits_2(argv: tuple[str, ...]) -> None:
    code, _, err = run(*argv)
    assert code == 2, err
    assert len(err.splitlines()) == 1


def test_run_without_a_kubeconfig_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTMEDIC_", "KUBE"))}
    result = subprocess.run(
        [sys.executable, "-m", "agentmedic.cli", "run", *PROM],
        env={**env, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "no Kubernetes credentials" in result.stderr
    assert "Traceback" not in result.stderr


def _closed_pipe_run(*argv: str) -> subprocess.CompletedProcess[bytes]:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first byte is written
    try:
        return subprocess.run(
            [sys.executable, "-m", "agentmedic.cli", *argv],
            stdout=write,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            check=False,
        )
    finally:
        os.close(write)


def test_a_closed_pipe_ends_quietly_with_141() -> None:
    result = _closed_pipe_run("validate", str(ROOT / "crds" / "examples"), "-o", "json")
    assert result.stderr == b""
    assert result.returncode == 141


# ----------------------------------------------------------------------------- completion


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script_for_each_shell(shell: str) -> None:
    code, out, _ = run("completion", shell)
    assert code == 0
    assert "agentmedic" in out
    assert "_ARGCOMPLETE" in out


def test_the_completion_script_gets_commands_from_agentmedic_itself(tmp_path: Path) -> None:
    answer = tmp_path / "answer"
    line = "agentmedic sta"
    env = {
        **os.environ,
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_IFS": "\n",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_STDOUT_FILENAME": str(answer),
    }
    result = subprocess.run(
        [sys.executable, "-m", "agentmedic.cli"], env=env, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert answer.read_text().split() == ["status"]


# ----------------------------------------------------------------------------- colour


def test_no_color_is_respected(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    _output.console().print("[red]alert[/red]")
    assert "\x1b[31m" in capsys.readouterr().out
    monkeypatch.setenv("NO_COLOR", "1")
    _output.console().print("[red]alert[/red]")
    assert "\x1b[31m" not in capsys.readouterr().out
