"""Shared notification channels and metrics backends: the models, their CRDs' schemas and
CEL rules, the checks across fields, and the references from policies and budgets."""

from __future__ import annotations

import copy
import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from agentmedic.api.budget import AgentBudgetSpec
from agentmedic.api.crd import crd_manifest
from agentmedic.api.refs import ChannelReference, MetricsBackendRef
from agentmedic.api.shared import (
    SHARED_MODELS,
    ClusterNotificationChannel,
    MetricsBackend,
)
from agentmedic.api.validation import validate_policy, validate_shared
from agentmedic.cli.main import main
from tests.unit.test_api import _as_jsonschema, _cel_failures

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = [
    ROOT / "crds" / "examples" / f for f in ("shared-channels.yaml", "multi-tenant-metrics.yaml")
]


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = crd_manifest(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _admitted(doc: dict[str, Any]) -> list[str]:
    """What the CRD's schema and CEL rules say about ``doc`` ([] when admitted)."""
    schema = _schema(doc["kind"])
    errors = [
        e.message for e in jsonschema.Draft4Validator(_as_jsonschema(schema)).iter_errors(doc)
    ]
    return errors + list(_cel_failures(schema, doc))


def _backend(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "agentmedic.io/v1alpha1",
        "kind": "MetricsBackend",
        "metadata": {"name": "team", "namespace": "payments"},
        "spec": {"url": "https://mimir.example/prometheus", **spec},
    }


def _policy(channel: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "agentmedic.io/v1alpha1",
        "kind": "AgentPolicy",
        "metadata": {"name": "p", "namespace": "payments"},
        "spec": {
            "selector": {"matchLabels": {"app": "bot"}},
            "notifications": {"channels": [{"name": "oncall", **channel}]},
        },
    }


SECRET = {"name": "s", "key": "k"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_the_examples_are_valid_and_admitted_by_their_crds(path: Path) -> None:
    kinds = set()
    for doc in _documents(path):
        kinds.add(doc["kind"])
        assert _admitted(doc) == []
        if doc["kind"] == "AgentPolicy":
            _, problems = validate_policy(doc)
        else:
            _, problems = validate_shared(doc)
        assert problems == []
    assert "AgentPolicy" in kinds
    assert kinds & set(SHARED_MODELS)


def test_the_four_kinds_have_their_scope_and_columns() -> None:
    scopes = {k: crd_manifest(k)["spec"]["scope"] for k in SHARED_MODELS}
    assert scopes == {
        "NotificationChannel": "Namespaced",
        "ClusterNotificationChannel": "Cluster",
        "MetricsBackend": "Namespaced",
        "ClusterMetricsBackend": "Cluster",
    }
    columns = crd_manifest("MetricsBackend")["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [(c["name"], c["jsonPath"]) for c in columns][:2] == [
        ("URL", ".spec.url"),
        ("Tenant", ".spec.tenant"),
    ]


def test_a_policy_entry_names_a_shared_channel_and_a_backend() -> None:
    doc = _policy({"channelRef": {"kind": "ClusterNotificationChannel", "name": "payments-oncall"}})
    doc["spec"]["metricsBackendRef"] = {"kind": "ClusterMetricsBackend", "name": "mimir"}
    policy, problems = validate_policy(doc)
    assert problems == []
    assert policy is not None
    (entry,) = policy.spec.notifications.channels
    assert entry.channel_ref == ChannelReference(
        kind="ClusterNotificationChannel", name="payments-oncall"
    )
    assert str(entry.channel_ref) == "ClusterNotificationChannel payments-oncall"
    assert policy.spec.metrics_backend_ref == MetricsBackendRef(
        kind="ClusterMetricsBackend", name="mimir"
    )
    assert _admitted(doc) == []


def test_a_ref_kind_defaults_to_the_namespaced_one() -> None:
    policy, _ = validate_policy(_policy({"channelRef": {"name": "team"}}))
    assert policy is not None
    ref = policy.spec.notifications.channels[0].channel_ref
    assert ref is not None
    assert ref.kind == "NotificationChannel"
    assert MetricsBackendRef(name="x").kind == "MetricsBackend"


def test_a_channel_ref_beside_inline_settings_is_refused_by_cel_and_validation() -> None:
    doc = _policy({"channelRef": {"name": "team"}, "slack": {"webhookSecretRef": SECRET}})
    assert any(
        "exactly one of slack, pagerduty, webhook, alertmanager and channelRef" in f
        for f in _admitted(doc)
    )
    _, problems = validate_policy(doc)
    assert [str(p) for p in problems] == [
        "spec.notifications.channels[0]: set exactly one of slack, pagerduty, webhook, "
        "alertmanager, channelRef (found slack, channelRef)"
    ]


def test_a_ref_entry_may_not_set_the_shared_channels_limits() -> None:
    _, problems = validate_policy(_policy({"channelRef": {"name": "team"}, "maxPerHour": 5}))
    assert [p.path for p in problems] == ["spec.notifications.channels[0].maxPerHour"]
    assert "set it on NotificationChannel team and remove it here" in problems[0].message


def test_a_wrong_ref_kind_is_refused_naming_the_field() -> None:
    doc = _policy({"channelRef": {"kind": "MetricsBackend", "name": "team"}})
    _, problems = validate_policy(doc)
    assert problems
    assert problems[0].path == "spec.notifications.channels[0].channelRef.kind"
    assert _admitted(doc)


def test_budgets_name_a_metrics_backend_too() -> None:
    spec = AgentBudgetSpec.model_validate(
        {"limitUSD": 100, "metricsBackendRef": {"kind": "ClusterMetricsBackend", "name": "mimir"}}
    )
    assert spec.metrics_backend_ref == MetricsBackendRef(kind="ClusterMetricsBackend", name="mimir")
    for kind in ("AgentBudget", "ClusterAgentBudget"):
        props = _schema(kind)["properties"]["spec"]["properties"]
        assert props["metricsBackendRef"]["properties"]["kind"]["enum"] == [
            "MetricsBackend",
            "ClusterMetricsBackend",
        ]


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        (
            {
                "basicAuth": {"username": "u", "passwordSecretRef": SECRET},
                "bearerTokenSecretRef": SECRET,
            },
            "spec",
            "set at most one of basicAuth and bearerTokenSecretRef",
        ),
        (
            {"caSecretRef": SECRET, "caConfigMapRef": SECRET},
            "spec",
            "set at most one of caSecretRef and caConfigMapRef",
        ),
    ],
)
def test_a_backend_with_two_auths_or_two_cas_is_refused_at_admission_and_by_validation(
    spec: dict[str, Any], path: str, message: str
) -> None:
    doc = _backend(**spec)
    assert any(message in f for f in _admitted(doc))
    _, problems = validate_shared(doc)
    assert [(p.path, p.message) for p in problems] == [(path, message)]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://mimir", "is not an http(s) URL with a host"),
        ("https://u:p@mimir", "must not carry credentials"),
        ("https://mimir/prometheus/api/v1", "must stop before /api/v1"),
        ("https://mimir/?tenant=a", "must not have a query string"),
    ],
)
def test_a_backend_url_is_checked(url: str, message: str) -> None:
    doc = _backend()
    doc["spec"]["url"] = url
    obj, problems = validate_shared(doc)
    assert obj is None
    assert [p.path for p in problems] == ["spec.url"]
    assert message in problems[0].message
    assert "u:p" not in problems[0].message or "credentials" in problems[0].message


def test_a_backend_header_may_not_replace_what_agentmedic_sets() -> None:
    doc = _backend(headers=[{"name": "X-Scope-OrgID", "valueSecretRef": SECRET}])
    _, problems = validate_shared(doc)
    assert [p.path for p in problems] == ["spec.headers[0].name"]
    assert "use tenant for X-Scope-OrgID" in problems[0].message


def test_a_backend_parses_with_defaults() -> None:
    obj, problems = validate_shared(_backend(tenant="payments"))
    assert problems == []
    assert isinstance(obj, MetricsBackend)
    assert obj.spec.timeout.total_seconds() == 10
    assert obj.spec.tenant == "payments"


def test_a_shared_channel_needs_exactly_one_kind_and_keeps_alertmanagers_checks() -> None:
    doc = {
        "apiVersion": "agentmedic.io/v1alpha1",
        "kind": "ClusterNotificationChannel",
        "metadata": {"name": "oncall"},
        "spec": {},
    }
    assert any(
        "exactly one of slack, pagerduty, webhook and alertmanager" in f for f in _admitted(doc)
    )
    _, problems = validate_shared(doc)
    assert [str(p) for p in problems] == [
        "spec: set exactly one of slack, pagerduty, webhook, alertmanager (found none)"
    ]
    am = copy.deepcopy(doc)
    am["spec"] = {"alertmanager": {"url": "http://am:9093", "labels": {"severity": "x"}}}
    _, problems = validate_shared(am)
    assert [p.path for p in problems] == ["spec.alertmanager.labels.severity"]


def test_a_shared_channel_becomes_the_entry_a_policy_would_define() -> None:
    obj, _ = validate_shared(_documents(EXAMPLES[0])[0])
    assert isinstance(obj, ClusterNotificationChannel)
    entry = obj.spec.as_channel("oncall")
    assert entry.name == "oncall"
    assert entry.slack is not None
    assert entry.max_per_hour == 20
    assert entry.min_severity.value == "medium"


def test_validate_checks_shared_documents_and_does_not_count_them_as_policies(
    tmp_path: Path,
) -> None:
    bad = _backend(caSecretRef=SECRET, caConfigMapRef=SECRET)
    path = tmp_path / "team.yaml"
    path.write_text(yaml.safe_dump_all([bad, _policy({"channelRef": {"name": "team"}})]))
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["validate", str(path)])
    assert code == 1
    assert "set at most one of caSecretRef and caConfigMapRef" in err.getvalue()
    assert "1 problem(s) in 1 policy and 1 metrics backend document(s)" in out.getvalue()
