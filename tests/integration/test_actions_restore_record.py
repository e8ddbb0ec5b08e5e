"""Restore trusts a record only when its values are plausible: the executor and the CLI.

A hand-edited or corrupted ``agentmedic.io/*`` annotation must never be written back to a
workload (a trillion replicas, a model name nobody wrote), and a record that is not valid
JSON is an error naming the annotation, not "nothing to restore".
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from agentmedic.actions import ActionExecutor, ExecutionOutcome
from agentmedic.actions import record as rec
from agentmedic.cli.main import main
from agentmedic_sandbox.emulator import ApiEmulator
from tests.integration import actions_support as support
from tests.integration.actions_support import event_reasons, get, ref, workload, writes

api = support.api
ns = support.ns
executor = support.executor
sleeps = support.sleeps


def _disabled(replicas: object) -> str:
    return json.dumps({"replicas": replicas, "policy": "agents/p", "rule": "r", "episode": "e"})


def _cli(api: ApiEmulator, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["restore", *args, "--kubeconfig", str(kubeconfig)])
    return code, out.getvalue(), err.getvalue()


def test_the_executor_refuses_to_restore_a_trillion_replicas_and_changes_nothing(
    api: ApiEmulator, ns: str, executor: ActionExecutor
) -> None:
    created = api.create(workload(ns, replicas=0, annotations={rec.DISABLED: _disabled(10**12)}))
    if isinstance(api, ApiEmulator):
        api.clear_requests()

    result = executor.restore(ref(ns), by="annotation")

    assert result.outcome is ExecutionOutcome.REFUSED
    assert rec.DISABLED in result.message
    assert "outside 0..2147483647" in result.message
    obj = get(api, ns)
    assert obj["spec"]["replicas"] == 0
    assert obj["metadata"]["annotations"][rec.DISABLED] == _disabled(10**12)
    # No write of agentmedic's: the spec is as created (a real server's controllers may
    # still write status, which leaves the generation alone).
    assert obj["metadata"]["generation"] == created["metadata"]["generation"]
    if isinstance(api, ApiEmulator):
        assert writes(api) == []
    assert event_reasons(api, ns, "Deployment") == ["ActionRefused"]


def test_the_executor_refuses_a_record_that_is_not_json(
    api: ApiEmulator, ns: str, executor: ActionExecutor
) -> None:
    api.create(workload(ns, replicas=0, annotations={rec.DISABLED: "{replicas: 3"}))

    result = executor.restore(ref(ns), by="auto-recovery")

    assert result.outcome is ExecutionOutcome.REFUSED
    assert f"annotation {rec.DISABLED} is not valid JSON" in result.message
    assert get(api, ns)["metadata"]["annotations"][rec.DISABLED] == "{replicas: 3"


@pytest.mark.parametrize("dry_run", [False, True], ids=["restore", "dry-run"])
def test_the_cli_reports_a_corrupt_record_naming_the_annotation_and_exits_1(
    api: ApiEmulator, ns: str, tmp_path: Path, dry_run: bool
) -> None:
    api.create(workload(ns, replicas=0, annotations={rec.DISABLED: "not json"}))

    code, out, err = _cli(api, tmp_path, f"{ns}/bot", *(["--dry-run"] if dry_run else []))

    assert code == 1
    assert "nothing to restore" not in out
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("agentmedic restore: ")
    assert f"annotation {rec.DISABLED} is not valid JSON" in lines[0]
    assert get(api, ns)["spec"]["replicas"] == 0


def test_the_cli_refuses_replicas_above_its_ceiling_unless_raised(
    api: ApiEmulator, ns: str, tmp_path: Path
) -> None:
    api.create(workload(ns, replicas=0, annotations={rec.DISABLED: _disabled(5000)}))

    code, _, err = _cli(api, tmp_path, f"{ns}/bot")
    assert code == 1
    assert "replicas 5000, outside 0..1000" in err
    assert get(api, ns)["spec"]["replicas"] == 0

    code, out, err = _cli(api, tmp_path, f"{ns}/bot", "--max-replicas", "5000")
    assert (code, err) == (0, "")
    assert "replicas 0 → 5000" in out
    assert get(api, ns)["spec"]["replicas"] == 5000
