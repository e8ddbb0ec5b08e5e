"""The AgentPolicy CRD as kube-apiserver enforces it: what only a real API server proves.

- the CRD as generated is refused by the server (CEL cost budget), pinned below until the
  API models bound their lists; everything else installs the bounded stop-gap;
- every broken policy in tests/data/broken_policies is caught by one of two layers: the
  API server (OpenAPI schema or CEL, the message naming the field) or, once accepted, the
  operator (``Ready=False`` with reason ``InvalidSpec``). The table in tests/README.md says
  which, and a test fails when a run disagrees with it;
- printer columns as ``kubectl get`` reads them (the Table format);
- the published OpenAPI v3, which ``kubectl explain`` reads, carries the field descriptions.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from agentmedic.api.crd import crd_manifest
from agentmedic.api.validation import validate_policy
from agentmedic_sandbox.cluster import LocalCluster
from tests.e2e_cluster.conftest import eventually

pytestmark = pytest.mark.e2e_cluster

ROOT = Path(__file__).resolve().parents[2]
BROKEN_DIR = ROOT / "tests" / "data" / "broken_policies"
# Not YAML at all: no client gets as far as sending it, so it has no place here.
NOT_YAML = {"40-yaml-syntax.yaml"}
BROKEN = [p for p in sorted(BROKEN_DIR.glob("*.yaml")) if p.name not in NOT_YAML]
README = ROOT / "tests" / "README.md"
TABLE_START = "<!-- broken-policies-table:start -->"
TABLE_END = "<!-- broken-policies-table:end -->"
API_SERVER = "API server"
OPERATOR = "operator"
# JSON has no NaN or Infinity: no client can send such a policy to any API server, and
# `agentmedic validate` (the same models the operator runs) refuses it.
CLIENT = "client (not JSON)"
NOBODY = "nobody"
GROUP_PATH = "/apis/agentmedic.io/v1alpha1"


def _expect(path: Path) -> tuple[str, str]:
    line = next(x for x in path.read_text().splitlines() if x.startswith("# expect:"))
    field, _, what = line.removeprefix("# expect:").strip().partition(": ")
    return field, what


def _policy(path: Path, namespace: str) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    doc["metadata"]["namespace"] = namespace
    doc["metadata"]["name"] = path.stem[:3] + "p"  # unique per file: "05-p"
    return dict(doc)


def _segments(field: str) -> list[str]:
    return re.sub(r"\[\d+\]", "", field).split(".")


def _names_field(message: str, field: str) -> bool:
    """The message names ``field`` or one of its parents below ``spec`` (the API server
    reports a CEL rule on the object that holds the offending field)."""
    plain = re.sub(r"\[\d+\]", "", message)
    parts = _segments(field)
    if len(parts) == 1:
        return parts[0] in plain
    return any(".".join(parts[:n]) in plain for n in range(len(parts), 1, -1))


@pytest.fixture(scope="module")
def crd_installed(local_cluster: LocalCluster) -> LocalCluster:
    local_cluster.install_crd()
    return local_cluster


@pytest.fixture(scope="module")
def namespace(crd_installed: LocalCluster) -> Iterator[str]:
    name = f"crd-{uuid.uuid4().hex[:6]}"
    crd_installed.ensure_namespace(name)
    yield name
    crd_installed.request("DELETE", f"/api/v1/namespaces/{name}")


@pytest.fixture(scope="module")
def operator(crd_installed: LocalCluster, namespace: str) -> Iterator[Any]:
    """The operator watching ``namespace``; no Prometheus is needed to judge a spec."""
    from agentmedic.operator.main import OperatorThread
    from agentmedic.operator.settings import load_settings

    settings = load_settings(
        flags={
            "prometheus_url": "http://127.0.0.1:9",  # discard port: nothing answers
            "namespaces": [namespace],
            "peering": "",
            "metrics_port": 0,
            "health_port": 0,
            "log_format": "text",
        },
        environ={},
    )
    thread = OperatorThread(settings, crd_installed.client_configuration())
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture(scope="module")
def outcomes(
    crd_installed: LocalCluster, namespace: str, operator: Any
) -> dict[str, tuple[str, str]]:
    """For each broken policy: the layer that caught it and what it said."""
    cluster = crd_installed
    found: dict[str, tuple[str, str]] = {}
    accepted: dict[str, str] = {}
    for path in BROKEN:
        doc = _policy(path, namespace)
        api_version = doc.get("apiVersion", "")
        url = f"/apis/{api_version}/namespaces/{namespace}/agentpolicies"
        try:
            json.dumps(doc, allow_nan=False)
        except ValueError as exc:
            found[path.name] = (CLIENT, str(exc))
            continue
        try:
            # as kubectl sends it (--validate=strict is its default since 1.27)
            cluster.request("POST", url, doc, params={"fieldValidation": "Strict"})
        except httpx.HTTPStatusError as exc:
            try:
                message = str(exc.response.json().get("message"))
            except ValueError:  # an unknown API version gets a plain-text 404
                message = f"{exc.response.status_code} {exc.response.text.strip()}"
            found[path.name] = (API_SERVER, message)
            continue
        accepted[path.name] = doc["metadata"]["name"]

    def judged() -> bool:
        for file, name in accepted.items():
            if file in found:
                continue
            obj = cluster.request(
                "GET", f"{GROUP_PATH}/namespaces/{namespace}/agentpolicies/{name}"
            )
            for c in (obj.get("status") or {}).get("conditions") or []:
                if c["type"] == "Ready" and c["status"] == "False":
                    found[file] = (f"{OPERATOR} ({c.get('reason')})", c.get("message", ""))
        return len(found) == len(BROKEN)

    deadline = time.monotonic() + 90
    while not judged() and time.monotonic() < deadline:
        time.sleep(0.5)  # the operator judges each policy as its watch delivers it
    for file in accepted:
        found.setdefault(file, (NOBODY, "accepted by the API server, Ready never False"))
    return found


def test_the_generated_crd_is_accepted_and_established_with_its_cel_rules(
    crd_installed: LocalCluster,
) -> None:
    # The lists the CEL rules iterate are bounded by the models (maxItems), which keeps the
    # rules' estimated cost within the API server's budget: an unbounded list is refused.
    crd = crd_installed.request(
        "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/agentpolicies.agentmedic.io"
    )
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    served = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    generated = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"
    ]
    assert served["properties"]["rules"]["maxItems"] == generated["properties"]["rules"]["maxItems"]
    assert served["x-kubernetes-validations"] == generated["x-kubernetes-validations"]


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_a_broken_policy_is_refused_by_the_api_server_or_marked_invalid_by_the_operator(
    outcomes: dict[str, tuple[str, str]], path: Path
) -> None:
    layer, message = outcomes[path.name]
    field, _ = _expect(path)
    if layer == CLIENT:
        _, problems = validate_policy(_policy(path, "agents"))
        assert any(field in str(p) for p in problems), f"{problems} do not name {field}"
    elif layer == API_SERVER:
        if field == "apiVersion":  # no such API: the server has nothing to validate against
            assert message.startswith("404")
        else:
            assert _names_field(message, field), f"{message!r} does not name {field}"
    else:
        assert layer == f"{OPERATOR} (InvalidSpec)"
        assert field in message, f"{message!r} does not name {field}"


def test_without_strict_field_validation_an_unknown_field_is_pruned_with_a_warning_only(
    crd_installed: LocalCluster, namespace: str
) -> None:
    # The gap strict validation closes: a client that does not ask for it (an older
    # kubectl, a library's default) gets its typo dropped and the policy runs without it.
    doc = _policy(BROKEN_DIR / "14-unknown-field.yaml", namespace)
    doc["metadata"]["name"] = "lenient"
    response = crd_installed._raw("POST", f"{GROUP_PATH}/namespaces/{namespace}/agentpolicies", doc)
    assert response.status_code == 201
    warning = response.headers.get("warning", "")
    assert "unknown field" in warning
    assert "spec.rules[0].thresholdd" in warning
    stored = response.json()["spec"]["rules"][0]
    assert "thresholdd" not in stored


def _table(outcomes: dict[str, tuple[str, str]]) -> str:
    rows = ["| policy | expected problem | caught by |", "| --- | --- | --- |"]
    for path in BROKEN:
        field, what = _expect(path)
        layer, _ = outcomes[path.name]
        rows.append(f"| `{path.name}` | `{field}`: {what} | {layer} |")
    return "\n".join(rows)


def test_the_readme_table_of_which_layer_catches_what_matches_this_run(
    outcomes: dict[str, tuple[str, str]],
) -> None:
    text = README.read_text()
    current = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip()
    generated = _table(outcomes)
    assert current == generated, (
        f"tests/README.md's table is out of date; between the markers it should read:\n{generated}"
    )


def test_printer_columns_come_back_in_the_table_format_kubectl_get_reads(
    crd_installed: LocalCluster, namespace: str
) -> None:
    example = next(
        d
        for d in yaml.safe_load_all((ROOT / "crds/examples/auto-disable.yaml").read_text())
        if d and d.get("kind") == "AgentPolicy"
    )
    example["metadata"] = {"name": "shown", "namespace": namespace}
    crd_installed.apply(example)

    table = crd_installed.request(
        "GET",
        f"{GROUP_PATH}/namespaces/{namespace}/agentpolicies",
        params={"fieldSelector": "metadata.name=shown"},
        headers={"Accept": "application/json;as=Table;g=meta.k8s.io;v=v1"},
    )

    assert table["kind"] == "Table"
    columns = [c["name"] for c in table["columnDefinitions"]]
    declared = crd_manifest()["spec"]["versions"][0]["additionalPrinterColumns"]
    assert columns == ["Name", *[c["name"] for c in declared]]
    [row] = table["rows"]
    assert row["cells"][0] == "shown"
    assert len(row["cells"]) == len(columns)


def test_the_published_openapi_carries_the_field_descriptions_kubectl_explain_shows(
    crd_installed: LocalCluster,
) -> None:
    def published() -> dict[str, Any] | None:
        doc = crd_installed.request("GET", "/openapi/v3/apis/agentmedic.io/v1alpha1")
        schemas = doc.get("components", {}).get("schemas", {})
        return schemas.get("io.agentmedic.v1alpha1.AgentPolicy")

    schema = eventually(published, timeout=60, interval=0.5, what="the CRD in /openapi/v3")
    ours = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec, served = ours["properties"]["spec"], schema["properties"]["spec"]
    assert served["description"] == spec["description"]
    described = [k for k, v in spec["properties"].items() if v.get("description")]
    assert len(described) > 5
    for key in described:
        assert served["properties"][key]["description"] == spec["properties"][key]["description"]
    rule = spec["properties"]["rules"]["items"]["properties"]["name"]
    assert (
        served["properties"]["rules"]["items"]["properties"]["name"]["description"]
        == rule["description"]
    )
