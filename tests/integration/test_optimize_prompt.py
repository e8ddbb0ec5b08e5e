"""``agentmedic optimize-prompt`` end to end: the real ``openai`` client against a loopback
Chat Completions server, the ConfigMap on both API servers (the emulator and the real
control plane), the command run as a Job runs it (options from the environment)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentmedic.api.prompt import RESULT_ANNOTATION, VERSIONS_ANNOTATION
from agentmedic.cli.main import main
from agentmedic_sandbox.model_server import ModelServer, Reply
from tests.integration import actions_support as support
from tests.integration.actions_support import fetch
from tests.integration.kube_servers import KubeServer

api = support.api
ns = support.ns

API_KEY = "sk-test-0123456789abcdef-SECRET"
PROMPT = """You are the support assistant of {company}.
Answer the customer {{customer_name}} about order ${order_id}.
Example: a customer asks where the parcel is; you look it up.
Example: a customer asks for a refund; you explain the policy.
Always be polite and brief.
Always be polite and brief.
Never promise a delivery date. [required]
Sign as $agent_name.
"""


@pytest.fixture
def model() -> Iterator[ModelServer]:
    with ModelServer() as server:
        yield server


def _config_map(api: KubeServer, namespace: str) -> None:
    api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "bot-prompt", "namespace": namespace},
            "data": {"system": PROMPT, "other": "x"},
        }
    )


def _run(
    api: KubeServer,
    namespace: str,
    model: ModelServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *extra: str,
) -> tuple[int, dict[str, Any]]:
    """The command as the Job runs it: everything from the environment the Job sets."""
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    log = tmp_path / "termination-log"
    env = {
        "AGENTMEDIC_NAMESPACE": namespace,
        "AGENTMEDIC_PROMPT_CONFIGMAP": "bot-prompt",
        "AGENTMEDIC_PROMPT_KEY": "system",
        "AGENTMEDIC_JOB": "bot-prompt-opt-1a2b3c4d",
        "AGENTMEDIC_AGENT": "bot",
        "AGENTMEDIC_TERMINATION_LOG": str(log),
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_MODEL": "gpt-4o-mini",
        "OPENAI_API_KEY": API_KEY,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(["optimize-prompt", "--kubeconfig", str(kubeconfig), *extra])
    return code, json.loads(log.read_text())


def _stored(api: KubeServer, namespace: str) -> dict[str, Any]:
    cm = fetch(api, "v1", "ConfigMap", namespace, "bot-prompt")
    return {"data": cm["data"], "annotations": cm["metadata"].get("annotations") or {}}


def test_a_good_answer_is_written_as_the_next_version(
    api: KubeServer,
    ns: str,
    model: ModelServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _config_map(api, ns)
    code, result = _run(api, ns, model, tmp_path, monkeypatch)
    assert code == 0
    assert result["status"] == "Succeeded"
    assert result["candidateKey"] == "system.v1"
    assert result["previousKey"] == "system"
    assert result["job"] == "bot-prompt-opt-1a2b3c4d"
    assert result["lengthBefore"] == len(PROMPT)
    stored = _stored(api, ns)
    candidate = stored["data"]["system.v1"]
    assert result["lengthAfter"] == len(candidate) < len(PROMPT) * 0.9
    for holder in ("{company}", "{{customer_name}}", "${order_id}", "$agent_name"):
        assert holder in candidate
    assert "Never promise a delivery date. [required]" in candidate
    assert "Example" not in candidate
    assert stored["data"]["system"] == PROMPT, "the live key is agentmedic's to change"
    assert json.loads(stored["annotations"][RESULT_ANNOTATION]) == result
    versions = json.loads(stored["annotations"][VERSIONS_ANNOTATION])
    assert versions["system.v1"]["previousKey"] == "system"
    # What the model was asked: the placeholders and the required line, named.
    system = model.requests[0]["messages"][0]["content"]
    assert "{{customer_name}}" in system
    assert "Never promise a delivery date." in system
    assert model.authorizations == [f"Bearer {API_KEY}"]
    out = capsys.readouterr()
    assert out.out.startswith(f"Succeeded: agent bot: {ns}/bot-prompt system.v1: ")
    assert API_KEY not in out.out + out.err + json.dumps(stored)

    # A second run takes the next version and leaves the first as it is.
    code, again = _run(api, ns, model, tmp_path, monkeypatch)
    assert (code, again["candidateKey"]) == (0, "system.v2")
    assert _stored(api, ns)["data"]["system.v1"] == candidate


def test_an_answer_that_drops_a_placeholder_is_rejected_and_nothing_written(
    api: KubeServer,
    ns: str,
    model: ModelServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _config_map(api, ns)
    model.script.append(
        Reply(
            answer="Support assistant of {company}. Be brief. Never promise a delivery "
            "date. [required] Sign as $agent_name, order ${order_id}."
        )
    )
    code, result = _run(api, ns, model, tmp_path, monkeypatch)
    assert code == 1
    assert result["status"] == "Rejected"
    assert "{{customer_name}}" in result["reason"]
    assert "candidateKey" not in result
    stored = _stored(api, ns)
    assert sorted(stored["data"]) == ["other", "system"]
    assert json.loads(stored["annotations"][RESULT_ANNOTATION])["status"] == "Rejected"
    assert VERSIONS_ANNOTATION not in stored["annotations"]
    out = capsys.readouterr()
    assert out.out.startswith("Rejected:")
    assert API_KEY not in out.out + out.err
