"""Rendering the chart with Helm's own engine (helm-python-sdk) and reading the result.

The value sets below are the installs the chart tests care about; every test that renders
takes one by name, so a new install shape is one entry here.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "agentmedic"
RELEASE = "agentmedic"
NAMESPACE = "agentmedic"
BACKEND_URL = "http://prometheus-operated.monitoring:9090"
MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
LITELLM_SPEND = "sum by ({{by}}) (increase(litellm_spend_metric_total{ {{agents}} }[{{window}}]))"

VALUE_SETS: dict[str, dict[str, Any]] = {
    # The defaults with the one required value.
    "default": {"prometheus": {"url": BACKEND_URL}},
    # Watching a namespace list: Roles per namespace, KopfPeering per namespace.
    "namespaced": {
        "prometheus": {"url": BACKEND_URL},
        "namespaces": ["agents", "research"],
    },
    # Every optional part on.
    "all-optional": {
        "prometheus": {"url": BACKEND_URL},
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [MONITORING],
            "apiServer": {"cidrs": ["10.0.0.1/32"]},
            "metricsBackend": {"to": [MONITORING]},
        },
        "dashboard": {"enabled": True, "labels": {"grafana_folder": "agents"}},
        "catalogOverrides": {"cost_usd": LITELLM_SPEND},
        "dryRun": True,
        "logFormat": "text",
        "logLevel": "DEBUG",
    },
    # Three shards of two replicas each.
    "sharded": {"prometheus": {"url": BACKEND_URL}, "sharding": {"count": 3}},
    # Mimir behind TLS with a tenant, a bearer token from a Secret and a private CA.
    "custom-backend": {
        "prometheus": {
            "url": "https://mimir.example.com/prometheus",
            "tenant": "team-ml",
            "extraHeaders": {"X-Team": "ml"},
            "queryTimeoutSeconds": 20,
            "maxConcurrentQueries": 4,
            "bearerToken": {"secretName": "mimir-token", "key": "token"},
            "tls": {"caConfigMapName": "corp-ca", "caKey": "bundle.pem"},
        },
        "networkPolicy": {"enabled": True},
    },
    # VictoriaMetrics cluster with basic auth, a CA from a Secret, one standalone replica.
    "basic-auth-standalone": {
        "prometheus": {
            "url": "http://vmselect.vm:8481/select/0/prometheus",
            "basicAuth": {"username": "agentmedic", "passwordSecretName": "vm-auth"},
            "tls": {"caSecretName": "vm-ca"},
        },
        "peering": {"enabled": False},
        "replicaCount": 1,
        "namespaces": ["agents"],
    },
}


def merged(base: str, **overrides: Any) -> dict[str, Any]:
    """A value set with some top-level keys replaced (deep-copied, never shared)."""
    values = copy.deepcopy(VALUE_SETS[base])
    values.update(copy.deepcopy(overrides))
    return values


@cache
def chart() -> helm.Chart:
    """The chart, loaded once per process (helm-python charts are immutable)."""
    return helm.Chart.load(CHART_DIR)


@dataclass(frozen=True)
class Rendered:
    """One render: the manifests by kind and name, and NOTES.txt."""

    manifests: list[dict[str, Any]]
    notes: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.manifests if m["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [m for m in self.of_kind(kind) if name is None or m["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def config(self) -> dict[str, Any]:
        """The operator's config file from the ConfigMap, parsed."""
        data = self.one("ConfigMap", RELEASE)["data"]
        loaded = yaml.safe_load(data["config.yaml"])
        assert isinstance(loaded, dict)
        return loaded


def render_values(values: Mapping[str, Any] | None) -> Rendered:
    """Render with Helm's engine as `helm install agentmedic -n agentmedic` would."""
    out = chart().render(
        dict(values) if values is not None else None,
        name=RELEASE,
        namespace=NAMESPACE,
        is_install=True,
    )
    manifests: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                manifests.append(doc)
    return Rendered(manifests, notes)


@cache
def _render_set(name: str) -> Rendered:
    return render_values(VALUE_SETS[name])


def render_set(name: str) -> Rendered:
    """A named value set's render (cached: several tests read the same one)."""
    return _render_set(name)


def containers(deployment: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(deployment["spec"]["template"]["spec"]["containers"])


def operator_container(deployment: Mapping[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in containers(deployment) if c["name"] == "operator"]
    return container


def env_of(container: Mapping[str, Any]) -> dict[str, Any]:
    """name → value (plain values) or the valueFrom mapping."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def walk(node: Any) -> Iterator[Any]:
    """Every value in a nested structure, depth first."""
    yield node
    if isinstance(node, Mapping):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)
