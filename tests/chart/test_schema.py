"""Wrong values fail at install time, before anything reaches the cluster, naming the field.

Helm validates the values against values.schema.json when it renders (install, upgrade,
template, lint); the tests render with Helm's engine and read its message.
"""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import pytest

from .support import CHART_DIR, NAMESPACE, chart, merged, render_values


def rejection(values: dict[str, Any] | None) -> str:
    with pytest.raises(helm.HelmError) as caught:
        render_values(values)
    return str(caught.value)


def test_installing_without_a_backend_url_names_prometheus_url() -> None:
    message = rejection(None)
    assert "at '/prometheus/url'" in message
    assert "minLength: got 0, want 1" in message


def test_lint_reports_the_missing_backend_url_as_an_error() -> None:
    report = helm.lint(CHART_DIR, None, strict=True, namespace=NAMESPACE)
    errors = [m["error"] for m in report["messages"] if m["severity"] == 3]
    assert any("/prometheus/url" in e for e in errors), errors


def _with_prometheus(**fields: Any) -> dict[str, Any]:
    values = merged("default")
    values["prometheus"].update(fields)
    return values


INVALID = [
    pytest.param(_with_prometheus(url="prometheus:9090"), "at '/prometheus/url'", id="not a URL"),
    pytest.param(
        _with_prometheus(url="https://user:pw@mimir.example.com/prometheus"),
        "at '/prometheus/url'",
        id="credentials in the URL",
    ),
    pytest.param(
        _with_prometheus(queryTimeoutSeconds=-5), "queryTimeoutSeconds", id="negative query timeout"
    ),
    pytest.param(
        _with_prometheus(maxConcurrentQueries=0), "maxConcurrentQueries", id="zero concurrency"
    ),
    pytest.param(merged("default", logFormat="xml"), "at '/logFormat'", id="unknown log format"),
    pytest.param(merged("default", logLevel="TRACE"), "at '/logLevel'", id="unknown log level"),
    pytest.param(
        merged("default", metricsPort=-1), "at '/metricsPort'", id="negative metrics port"
    ),
    pytest.param(merged("default", healthPort=70000), "at '/healthPort'", id="port above 65535"),
    pytest.param(merged("default", metricsPort="http"), "at '/metricsPort'", id="port as text"),
    pytest.param(
        merged("default", sharding={"count": 0}), "at '/sharding/count'", id="zero shards"
    ),
    pytest.param(
        merged("default", sharding={"count": 1.5}), "at '/sharding/count'", id="fractional shards"
    ),
    pytest.param(merged("default", replicaCount=0), "at '/replicaCount'", id="zero replicas"),
    pytest.param(
        merged("default", serviceMonitor={"interval": "-30s"}),
        "at '/serviceMonitor/interval'",
        id="negative scrape interval",
    ),
    pytest.param(
        merged("default", statusRecentActions=50), "statusRecentActions", id="status ring too long"
    ),
    pytest.param(merged("default", dryRun="yes"), "at '/dryRun'", id="dry run as text"),
    pytest.param(
        merged("default", namespaces=["Agents_Prod"]),
        "at '/namespaces/0'",
        id="namespace not a DNS label",
    ),
    pytest.param(
        merged("default", replicas=3),
        "additional properties 'replicas'",
        id="typo in a top-level key",
    ),
    pytest.param(
        _with_prometheus(tennant="x"), "additional properties 'tennant'", id="typo in the backend"
    ),
    pytest.param(
        merged("default", catalogOverrides={"p99": "x"}),
        "at '/catalogOverrides'",
        id="override of an unknown metric",
    ),
    pytest.param(
        _with_prometheus(extraHeaders={"Authorization": "Bearer x"}),
        "at '/prometheus/extraHeaders/Authorization'",
        id="Authorization in extraHeaders",
    ),
    pytest.param(
        _with_prometheus(basicAuth={"username": "u", "passwordSecretName": ""}),
        "at '/prometheus/basicAuth/passwordSecretName'",
        id="basic auth without its password",
    ),
    pytest.param(
        _with_prometheus(tls={"caSecretName": "a", "caConfigMapName": "b"}),
        "at '/prometheus/tls'",
        id="two CA sources",
    ),
    pytest.param(
        merged("default", peering={"enabled": False}, replicaCount=2),
        "at '/replicaCount'",
        id="replicas without peering",
    ),
    pytest.param(
        merged("default", prometheusRule={"disabled": ["Nope"]}),
        "at '/prometheusRule/disabled/0'",
        id="unknown alert to disable",
    ),
]


@pytest.mark.parametrize(("values", "field"), INVALID)
def test_invalid_values_are_refused_naming_the_field(values: dict[str, Any], field: str) -> None:
    assert field in rejection(values)


def test_equal_metrics_and_health_ports_are_refused_by_the_templates() -> None:
    message = rejection(merged("default", metricsPort=9000, healthPort=9000))
    assert "metricsPort and healthPort must differ" in message


def test_every_default_value_passes_the_schema() -> None:
    # The defaults of values.yaml plus the one required value render.
    assert render_values(merged("default")).manifests


# Kubernetes objects passed through verbatim; their block comment names the object type.
PASSTHROUGH = {"resources", "podSecurityContext", "securityContext"}


def test_values_yaml_documents_every_chart_field() -> None:
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    parent = ""
    undocumented = []
    for number, line in enumerate(lines, start=1):
        match = re.match(r"^( *)([A-Za-z]\w*):", line)
        if not match:
            continue
        depth = len(match.group(1)) // 2
        if depth == 0:
            parent = match.group(2)
        elif depth > 1 or parent in PASSTHROUGH:
            continue
        if not lines[number - 2].lstrip().startswith("#"):
            undocumented.append(f"values.yaml:{number}: {line.strip()}")
    assert not undocumented, "fields without a comment:\n" + "\n".join(undocumented)


def test_the_schema_describes_exactly_the_values_fields() -> None:
    schema = chart().schema
    assert schema is not None
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) - {"global"} == set(chart().values)
