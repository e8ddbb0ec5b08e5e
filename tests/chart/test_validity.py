"""Every install shape renders with Helm's engine, lints clean and is valid Kubernetes.

Built-in kinds are validated by kubernetes-validate (strict: unknown fields fail) against
the newest Kubernetes it knows. The Prometheus Operator's kinds are not in its schemas:
they are checked against small pinned schemas of the fields the chart uses
(tests/chart/schemas/, from the prometheus-operator CRDs of v0.75).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from agentmedic.api.crd import CrdKind, all_kinds, render_crd

from .support import CHART_DIR, NAMESPACE, VALUE_SETS, chart, render_set

SCHEMAS = Path(__file__).parent / "schemas"
KUBERNETES_VERSION = latest_version()
PINNED = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.json",
}


@cache
def _pinned(filename: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / filename).read_text())
    return loaded


@cache
def _shipped_crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) → the openAPIV3Schema of each CRD in the chart's crds/."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in chart().crds:
        for crd in filter(None, yaml.safe_load_all(entry["data"])):
            spec = crd["spec"]
            for version in spec["versions"]:
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                out[key] = version["schema"]["openAPIV3Schema"]
    return out


def _validate(manifest: dict[str, Any]) -> str:
    """Validate one manifest; returns what it was validated against."""
    key = (manifest["apiVersion"], manifest["kind"])
    if key in PINNED:
        jsonschema.validate(manifest, _pinned(PINNED[key]))
        return f"pinned schema {PINNED[key]}"
    if key in _shipped_crd_schemas():
        assert set(manifest) <= {"apiVersion", "kind", "metadata", "spec", "status"}
        jsonschema.validate(manifest, _shipped_crd_schemas()[key])
        return "the chart's CRD"
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    return f"Kubernetes {KUBERNETES_VERSION}"


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_rendered_manifest_is_valid_for_current_kubernetes(value_set: str) -> None:
    rendered = render_set(value_set)
    assert rendered.manifests, "nothing rendered"
    for manifest in rendered.manifests:
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        try:
            _validate(manifest)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{value_set}: {where} invalid at {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(f"{value_set}: {where}: {exc.message}")


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_namespaced_objects_land_in_the_release_or_watched_namespaces(value_set: str) -> None:
    rendered = render_set(value_set)
    watched = set(VALUE_SETS[value_set].get("namespaces", []))
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding"}
    for manifest in rendered.manifests:
        namespace = manifest["metadata"].get("namespace")
        if manifest["kind"] in cluster_scoped:
            assert namespace is None, f"{manifest['kind']} is cluster-scoped"
        elif manifest["kind"] in {"Role", "RoleBinding"}:
            # the leader-election Role is in the release namespace, the others where watched
            assert namespace in watched | {NAMESPACE}
        else:
            assert namespace == NAMESPACE, f"{manifest['kind']} in {namespace}"


def test_the_chart_crds_are_valid_apiextensions_objects() -> None:
    names = set()
    for entry in chart().crds:
        for doc in filter(None, yaml.safe_load_all(entry["data"])):
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            names.add(doc["metadata"]["name"])
    assert names == {k.name for k in all_kinds()}


@pytest.mark.parametrize("kind", all_kinds(), ids=lambda k: k.kind)
def test_the_chart_ships_the_crd_generated_from_the_models(kind: CrdKind) -> None:
    (entry,) = [e for e in chart().crds if e["filename"].rsplit("/", 1)[-1] == kind.file]
    assert entry["data"] == render_crd(kind), "run `make crd` to refresh the chart's CRD"


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_helm_lint_strict_reports_no_warning_or_error(value_set: str) -> None:
    report = helm.lint(
        CHART_DIR, VALUE_SETS[value_set], strict=True, namespace=NAMESPACE, quiet=False
    )
    assert report["total_charts_linted"] == 1
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems, problems
    assert not report["errors"], report["errors"]
