"""The prompt optimizer when the model server misbehaves: timeouts, 429 with Retry-After,
refused keys. The real ``openai`` client against the loopback server; the ConfigMap on the
API emulator (what these tests check is the model side)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentmedic.api.prompt import RESULT_ANNOTATION
from agentmedic.cli.main import main
from agentmedic.kube import Kube
from agentmedic.optimize import Limits, ModelSettings, OptimizeSettings, optimize
from agentmedic_sandbox.emulator import ApiEmulator
from agentmedic_sandbox.model_server import ModelServer, Reply
from tests.integration.kube_servers import create_namespace

API_KEY = "sk-fault-test-key-DO-NOT-PRINT"
PROMPT = "Help {user}.\nExample: one.\nExample: two.\nExample: three.\nBe brief.\nBe brief.\n"
_names = itertools.count(1)


@pytest.fixture(scope="module")
def emulator() -> Iterator[ApiEmulator]:
    with ApiEmulator() as server:
        yield server


@pytest.fixture
def namespace(emulator: ApiEmulator) -> str:
    name = create_namespace(emulator, f"opt{next(_names)}")
    emulator.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "bot-prompt", "namespace": name},
            "data": {"system": PROMPT},
        }
    )
    return name


@pytest.fixture
def model() -> Iterator[ModelServer]:
    with ModelServer() as server:
        yield server


@pytest.fixture
def kube(emulator: ApiEmulator) -> Iterator[Kube]:
    client = Kube.from_configuration(emulator.client_configuration())
    yield client
    client.close()


def _settings(
    namespace: str, model: ModelServer, tmp_path: Path, **model_options: float
) -> OptimizeSettings:
    return OptimizeSettings(
        namespace=namespace,
        config_map="bot-prompt",
        key="system",
        model=ModelSettings(
            base_url=model.base_url,
            model="m",
            api_key=API_KEY,
            **model_options,  # type: ignore[arg-type]
        ),
        limits=Limits(),
        termination_log=tmp_path / "termination-log",
    )


def _stored_result(emulator: ApiEmulator, namespace: str) -> dict[str, object]:
    cm = emulator.get("v1", "ConfigMap", namespace, "bot-prompt") or {}
    return dict(json.loads(cm["metadata"]["annotations"][RESULT_ANNOTATION]))


def test_429_then_an_answer_waits_what_retry_after_asks_then_succeeds(
    emulator: ApiEmulator, namespace: str, model: ModelServer, kube: Kube, tmp_path: Path
) -> None:
    model.script.append(Reply(status=429, headers={"Retry-After": "7"}))
    sleeps: list[float] = []
    result, code = optimize(kube, _settings(namespace, model, tmp_path), sleep=sleeps.append)
    assert (code, result.status.value, result.candidate_key) == (0, "Succeeded", "system.v1")
    assert sleeps == [7.0]
    assert len(model.requests) == 2
    stored = emulator.get("v1", "ConfigMap", namespace, "bot-prompt") or {}
    assert stored["data"]["system.v1"] == "Help {user}.\nBe brief."


def test_429_forever_fails_after_the_bounded_attempts(
    emulator: ApiEmulator, namespace: str, model: ModelServer, kube: Kube, tmp_path: Path
) -> None:
    model.script.extend(Reply(status=429, headers={"retry-after-ms": "1500"}) for _ in range(5))
    sleeps: list[float] = []
    settings = _settings(namespace, model, tmp_path, max_attempts=3)
    result, code = optimize(kube, settings, sleep=sleeps.append)
    assert (code, result.status.value) == (1, "Failed")
    assert "rate limiting (429) after 3 attempt(s)" in result.reason
    assert sleeps == [1.5, 1.5]
    assert len(model.requests) == 3
    assert _stored_result(emulator, namespace)["status"] == "Failed"
    written = json.loads((tmp_path / "termination-log").read_text())
    assert written["status"] == "Failed"
    assert written["reason"] == result.reason
    stored = emulator.get("v1", "ConfigMap", namespace, "bot-prompt") or {}
    assert sorted(stored["data"]) == ["system"]


def test_a_retry_after_beyond_max_wait_fails_at_once(
    namespace: str, model: ModelServer, kube: Kube, tmp_path: Path
) -> None:
    model.script.append(Reply(status=429, headers={"Retry-After": "3600"}))
    sleeps: list[float] = []
    result, code = optimize(kube, _settings(namespace, model, tmp_path), sleep=sleeps.append)
    assert (code, result.status.value) == (1, "Failed")
    assert "asks to wait 3600s" in result.reason
    assert "--max-wait" in result.reason
    assert sleeps == []
    assert len(model.requests) == 1


def test_5xx_without_retry_after_backs_off_exponentially(
    namespace: str, model: ModelServer, kube: Kube, tmp_path: Path
) -> None:
    model.script.extend([Reply(status=503), Reply(status=500)])
    sleeps: list[float] = []
    settings = _settings(namespace, model, tmp_path, backoff=0.5)
    result, code = optimize(kube, settings, sleep=sleeps.append)
    assert (code, result.status.value) == (0, "Succeeded")
    assert sleeps == [0.5, 1.0]


def test_a_timeout_fails_the_run_with_a_one_line_reason(
    emulator: ApiEmulator,
    namespace: str,
    model: ModelServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model.script.extend(Reply(answer="Help {user}.", delay=2.0) for _ in range(2))
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    log = tmp_path / "termination-log"
    code = main(
        [
            "optimize-prompt",
            *("-n", namespace, "--config-map", "bot-prompt", "--key", "system"),
            *("--base-url", model.base_url, "--model", "m", "--kubeconfig", str(kubeconfig)),
            *("--timeout", "0.3", "--max-attempts", "2", "--backoff", "0"),
            *("--termination-log", str(log)),
        ]
    )
    assert code == 1
    out = capsys.readouterr()
    assert out.out.startswith("Failed:")
    assert "did not answer within 0.3s" in out.out
    assert len(out.out.strip().splitlines()) == 1
    assert len(model.requests) == 2
    assert json.loads(log.read_text())["status"] == "Failed"
    assert _stored_result(emulator, namespace)["status"] == "Failed"
    assert API_KEY not in out.out + out.err + log.read_text()


def test_a_refused_key_fails_at_once_without_showing_it(
    namespace: str, model: ModelServer, kube: Kube, tmp_path: Path
) -> None:
    model.script.append(Reply(status=401))
    result, code = optimize(kube, _settings(namespace, model, tmp_path), sleep=lambda s: None)
    assert (code, result.status.value) == (1, "Failed")
    assert "refused the API key (401)" in result.reason
    assert API_KEY not in result.to_json()
    assert len(model.requests) == 1


def test_bad_input_is_one_line_with_exit_code_2(
    emulator: ApiEmulator,
    namespace: str,
    model: ModelServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kubeconfig = str(emulator.write_kubeconfig(tmp_path / "kubeconfig"))
    base = ["optimize-prompt", "-n", namespace, "--base-url", model.base_url, "--model", "m"]
    base += ["--kubeconfig", kubeconfig, "--termination-log", str(tmp_path / "log")]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main([*base, "--config-map", "bot-prompt", "--key", "system"]) == 2
    assert "OPENAI_API_KEY is not set" in capsys.readouterr().err
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    assert main([*base, "--config-map", "nope", "--key", "system"]) == 2
    err = capsys.readouterr()
    assert "ConfigMap" in err.out
    assert "not found" in err.out
    assert "--config-map" in err.out
    assert json.loads((tmp_path / "log").read_text())["status"] == "Failed"
    assert main([*base, "--config-map", "bot-prompt", "--key", "absent"]) == 2
    assert "has no key 'absent'" in capsys.readouterr().out
    assert main([*base, "--config-map", "bot-prompt", "--key", "bad/key"]) == 2
    assert "--key 'bad/key' is not a ConfigMap key" in capsys.readouterr().err
    assert (
        main([*base, "--config-map", "bot-prompt", "--key", "system", "--min-reduction", "1.5"])
        == 2
    )
    assert "min-reduction" in capsys.readouterr().err
    assert model.requests == [], "bad input never reaches the model"
