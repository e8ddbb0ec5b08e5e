"""``agentmedic silence add|list|expire`` against both API servers (ids ``emulated`` and
``real``), as an on-call engineer types them; and its usage errors, which need no cluster."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentmedic.cli.main import main
from agentmedic_sandbox.emulator import ApiEmulator
from tests.integration.kube_servers import (
    REAL,
    SERVERS,
    KubeServer,
    create_namespace,
    drop_namespace,
    is_real,
)

API = "agentmedic.io/v1alpha1"
_namespaces = itertools.count(1)
_RUN = uuid.uuid4().hex[:6]


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[KubeServer]:
    if request.param == REAL:
        yield request.getfixturevalue("real_server")
        return
    with ApiEmulator() as emu:
        yield emu


_KUBECONFIG: list[str] = []


@pytest.fixture
def where(server: KubeServer, tmp_path: Path) -> Iterator[str]:
    """A namespace of the test's own with a workload whose agent is named by its label;
    the admin's kubeconfig for :func:`cli`."""
    _KUBECONFIG[:] = [str(server.write_kubeconfig(tmp_path / "kubeconfig"))]
    ns = create_namespace(server, f"silences-{next(_namespaces)}-{_RUN}")
    server.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "support-bot-v2",
                "namespace": ns,
                "labels": {"agentmedic.io/agent": "support-bot"},
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "support-bot"}},
                "template": {
                    "metadata": {"labels": {"app": "support-bot"}},
                    "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
                },
            },
        }
    )
    yield ns
    drop_namespace(server, ns)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def cli(*argv: str) -> tuple[int, str, str]:
    """:func:`run` with the test's kubeconfig (passed as a flag: the kubernetes client reads
    KUBECONFIG once, when it is first imported)."""
    return run(*argv, "--kubeconfig", _KUBECONFIG[0])


def silences(server: KubeServer, ns: str) -> list[dict[str, Any]]:
    return server.list(API, "AgentSilence", ns)


def test_add_list_and_expire_an_agents_silence(server: KubeServer, where: str) -> None:
    ns = where
    before = datetime.now(UTC).replace(microsecond=0)
    code, out, err = cli(
        "silence", "add", f"{ns}/support-bot", "--rule", "low-success",
        "--for", "2h", "--reason", "INC-42: provider incident",
    )  # fmt: skip
    assert code == 0, err
    assert err == ""
    (stored,) = silences(server, ns)
    spec = stored["spec"]
    assert (spec["agent"], spec["rule"], spec["reason"]) == (
        "support-bot",
        "low-success",
        "INC-42: provider incident",
    )
    assert "policy" not in spec
    ends = datetime.fromisoformat(spec["endsAt"].replace("Z", "+00:00"))
    assert before + timedelta(hours=2) <= ends <= datetime.now(UTC) + timedelta(hours=2)
    if is_real(server):
        # The API server's own word for who the caller is (SelfSubjectReview).
        assert spec["createdBy"]
        assert "(unverified)" not in spec["createdBy"]
    else:
        assert spec["createdBy"].endswith("(unverified)")
    name = stored["metadata"]["name"]
    assert name.startswith("support-bot-")
    assert f"silenced agent support-bot, rule low-success in {ns} until" in out
    assert f"agentmedic silence expire {name} -n {ns}" in out

    code, out, _ = cli("silence", "list", "-n", ns)
    assert code == 0
    assert name in out
    assert "active" in out
    assert "INC-42: provider incident" in out

    code, wide, _ = cli("silence", "list", "-n", ns, "-o", "wide")
    assert code == 0
    assert "STARTS" in wide
    assert "CREATED" in wide
    assert "STARTS" not in out

    code, out, _ = cli("silence", "list", "-n", ns, "-o", "json")
    (row,) = json.loads(out)["silences"]
    assert (row["id"], row["state"], row["agent"], row["rule"]) == (
        name,
        "active",
        "support-bot",
        "low-success",
    )
    code, out_yaml, _ = cli("silence", "list", "-n", ns, "-o", "yaml")
    assert yaml.safe_load(out_yaml) == json.loads(out)

    code, out, err = cli("silence", "expire", name, "-n", ns)
    assert code == 0, err
    assert err == ""
    assert f"expired {ns}/{name}" in out
    (stored,) = silences(server, ns)
    ended = datetime.fromisoformat(stored["spec"]["endsAt"].replace("Z", "+00:00"))
    assert ended <= datetime.now(UTC)
    code, out, _ = cli("silence", "list", "-n", ns, "-o", "json")
    assert [r["state"] for r in json.loads(out)["silences"]] == ["expired"]
    code, out, _ = cli("silence", "list", "-n", ns, "--active", "-o", "json")
    assert json.loads(out)["silences"] == []
    code, out, _ = cli("silence", "expire", name, "-n", ns)
    assert code == 0
    assert "already expired" in out


def test_a_workload_reference_silences_its_agent_and_policy_wide_needs_no_agent(
    server: KubeServer, where: str
) -> None:
    ns = where
    code, _, err = cli(
        "silence", "add", "deployment/support-bot-v2", "-n", ns, "--for", "30m", "--reason", "x"
    )
    assert code == 0, err
    assert err == ""
    code, out, err = cli(
        "silence", "add", "--policy", f"{ns}/heal-all", "--for", "1h", "--reason", "migration"
    )
    assert code == 0, err
    assert err == ""
    assert "every agent of policy heal-all" in out
    specs = {(s["spec"].get("agent"), s["spec"].get("policy")) for s in silences(server, ns)}
    assert specs == {(None, "heal-all"), ("support-bot", None)}


def test_missing_things_are_one_line_errors_with_exit_1(server: KubeServer, where: str) -> None:
    ns = where
    code, _, err = cli("silence", "expire", "no-such-silence", "-n", ns)
    assert code == 1
    assert err.count("\n") == 1
    assert "no silence no-such-silence" in err
    code, _, err = cli(
        "silence", "add", "deployment/ghost", "-n", ns, "--for", "1h", "--reason", "x"
    )
    assert code == 1
    assert f"no Deployment {ns}/ghost" in err
    assert silences(server, ns) == []


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["agents/bot", "--for", "8d", "--reason", "r"], "--for must be from 1m to 7d"),
        (["agents/bot", "--for", "30s", "--reason", "r"], "--for must be from 1m to 7d"),
        (["agents/bot", "--for", "soon", "--reason", "r"], "--for: 'soon' is not a duration"),
        (["agents/bot", "--for", "1h", "--reason", "  "], "--reason is empty"),
        (["--for", "1h", "--reason", "r"], "name an agent"),
        (["a/b/c", "--for", "1h", "--reason", "r"], "is not NAMESPACE/AGENT nor KIND/NAME"),
        (["x/bot", "-n", "y", "--for", "1h", "--reason", "r"], "but -n (or --policy) says"),
        (["agents/bot", "--for", "1h"], "the following arguments are required: --reason"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    argv: list[str], says: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    code, _, err = run("silence", "add", *argv)
    assert code == 2
    assert says in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_status_shows_silenced_agents_until_when_and_a_changed_workloads_manager(
    server: KubeServer, where: str
) -> None:
    from agentmedic.actions.record import DISABLED, POLICY

    ns = where
    record = {
        "replicas": 3,
        "policy": f"{ns}/heal",
        "policyUid": "uid-1",
        "rule": "low-success",
        "episode": f"uid-1:{ns}/argo-bot:low-success:1700000000",
        "reason": "success_rate below 0.8",
        "evidence": "success_rate[30s] = 0.4 < 0.8",
        "at": "2026-11-27T12:00:00Z",
    }
    server.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "argo-bot",
                "namespace": ns,
                "annotations": {
                    DISABLED: json.dumps(record),
                    POLICY: f"{ns}/heal",
                    "argocd.argoproj.io/tracking-id": f"bots:apps/Deployment:{ns}/argo-bot",
                },
            },
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "argo-bot"}},
                "template": {
                    "metadata": {"labels": {"app": "argo-bot"}},
                    "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
                },
            },
        }
    )
    code, _, err = cli("silence", "add", f"{ns}/support-bot", "--for", "90m", "--reason", "INC-7")
    assert code == 0, err

    code, out, err = cli("status", "-n", ns)
    assert code == 0, err
    assert "Silenced (agentmedic neither acts nor pages)" in out
    assert "agent support-bot" in out
    assert "INC-7" in out
    assert "MANAGED BY" in out
    assert "Argo CD Application bots" in out

    code, out, _ = cli("status", "-n", ns, "-o", "json")
    document = json.loads(out)
    (silenced,) = document["silences"]
    assert (silenced["agent"], silenced["state"], silenced["reason"]) == (
        "support-bot",
        "active",
        "INC-7",
    )
    (changed,) = document["remediated"]
    assert changed["managedBy"] == "Argo CD Application bots"


def test_an_agent_named_by_a_label_value_gets_a_valid_silence_name(
    server: KubeServer, where: str
) -> None:
    ns = where
    code, _, err = cli("silence", "add", f"{ns}/Support_Bot.v2", "--for", "1h", "--reason", "x")
    assert code == 0, err
    (stored,) = silences(server, ns)
    assert stored["spec"]["agent"] == "Support_Bot.v2"
    assert stored["metadata"]["name"].startswith("support-bot.v2-")
