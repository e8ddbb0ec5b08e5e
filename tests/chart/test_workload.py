"""The operator's pods: hardened, highly available, observable, and reachable only as needed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .support import (
    NAMESPACE,
    RELEASE,
    VALUE_SETS,
    env_of,
    merged,
    operator_container,
    render_set,
    render_values,
)


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_pods_meet_the_restricted_pod_security_standard(value_set: str) -> None:
    for deployment in render_set(value_set).of_kind("Deployment"):
        pod = pod_spec(deployment)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert "hostNetwork" not in pod
        assert "hostPID" not in pod
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc.get("privileged", False) is False


def test_the_read_only_root_leaves_tmp_writable_as_an_emptydir() -> None:
    deployment = render_set("default").one("Deployment")
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in operator_container(deployment)["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert env_of(operator_container(deployment))["PYTHONDONTWRITEBYTECODE"] == "1"


def test_the_container_has_requests_limits_and_health_probes() -> None:
    container = operator_container(render_set("default").one("Deployment"))
    assert set(container["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_the_operator_runs_agentmedic_run_configured_by_its_config_file() -> None:
    container = operator_container(render_set("default").one("Deployment"))
    assert container["command"] == ["agentmedic", "run"]
    assert "args" not in container
    settings_env = {k for k in env_of(container) if k.startswith("AGENTMEDIC_")}
    # The Lease's namespace is the pod's own, which only the downward API knows.
    assert settings_env == {"AGENTMEDIC_CONFIG", "AGENTMEDIC_LEASE_NAMESPACE"}
    assert container["image"] == "ghcr.io/agentmedic/agentmedic:0.1.0"


def test_an_image_digest_pins_the_image() -> None:
    digest = "sha256:" + "ab" * 32
    rendered = render_values(
        merged("default", image={"repository": "registry.local/am", "digest": digest})
    )
    assert operator_container(rendered.one("Deployment"))["image"] == f"registry.local/am@{digest}"


def test_two_replicas_spread_over_nodes_and_zones_with_a_disruption_budget() -> None:
    rendered = render_set("default")
    deployment = rendered.one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = pod_spec(deployment)
    labels = pod_labels(deployment)
    keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for constraint in pod["topologySpreadConstraints"]:
        assert selects(constraint["labelSelector"]["matchLabels"], labels)
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["podAffinityTerm"]["labelSelector"]["matchLabels"], labels)
    pdb = rendered.one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_a_hard_spread_can_be_required() -> None:
    rendered = render_values(
        merged("default", topologySpread={"enabled": True, "whenUnsatisfiable": "DoNotSchedule"})
    )
    constraints = pod_spec(rendered.one("Deployment"))["topologySpreadConstraints"]
    assert {c["whenUnsatisfiable"] for c in constraints} == {"DoNotSchedule"}


def test_shards_are_separate_deployments_whose_selectors_never_overlap() -> None:
    rendered = render_set("sharded")
    deployments = rendered.of_kind("Deployment")
    assert [d["metadata"]["name"] for d in deployments] == [
        f"{RELEASE}-shard-{i}" for i in range(3)
    ]
    for d in deployments:
        for other in deployments:
            overlap = selects(d["spec"]["selector"]["matchLabels"], pod_labels(other))
            assert overlap == (d is other), "a Deployment would adopt another shard's pods"
    pdbs = rendered.of_kind("PodDisruptionBudget")
    assert sorted(p["spec"]["selector"]["matchLabels"]["agentmedic.io/shard"] for p in pdbs) == [
        "0",
        "1",
        "2",
    ]
    service = rendered.one("Service")
    assert all(selects(service["spec"]["selector"], pod_labels(d)) for d in deployments)


def test_a_config_change_rolls_the_pods() -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = render_values(values).one("Deployment")
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/config"])

    assert checksum(VALUE_SETS["default"]) != checksum(merged("default", dryRun=True))
    assert checksum(VALUE_SETS["default"]) == checksum(VALUE_SETS["default"])


def test_the_metrics_service_reaches_the_operator_metrics_port() -> None:
    rendered = render_set("default")
    service = rendered.one("Service", f"{RELEASE}-metrics")
    (port,) = service["spec"]["ports"]
    assert port == {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    assert selects(service["spec"]["selector"], pod_labels(rendered.one("Deployment")))


def test_the_service_monitor_scrapes_the_metrics_service() -> None:
    rendered = render_set("all-optional")
    monitor = rendered.one("ServiceMonitor")
    service = rendered.one("Service")
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def egress_ports(policy: dict[str, Any]) -> list[set[tuple[int, str]]]:
    rules = policy["spec"]["egress"]
    return [{(p["port"], p["protocol"]) for p in rule["ports"]} for rule in rules]


def test_network_policy_allows_dns_api_server_backend_and_notifications_only() -> None:
    policy = render_set("all-optional").one("NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert egress_ports(policy) == [
        {(53, "UDP"), (53, "TCP")},
        {(443, "TCP"), (6443, "TCP")},
        {(9090, "TCP")},  # the port of prometheus.url
        {(443, "TCP")},
    ]
    api, backend = policy["spec"]["egress"][1], policy["spec"]["egress"][2]
    assert api["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    assert backend["to"] == VALUE_SETS["all-optional"]["networkPolicy"]["metricsBackend"]["to"]
    ingress_ports = [{p["port"] for p in rule["ports"]} for rule in policy["spec"]["ingress"]]
    assert ingress_ports == [{"metrics"}, {"health"}]
    assert (
        policy["spec"]["ingress"][0]["from"]
        == VALUE_SETS["all-optional"]["networkPolicy"]["metricsFrom"]
    )


@pytest.mark.parametrize(
    ("url", "ports", "expected"),
    [
        ("https://mimir.example.com/prometheus", [], {(443, "TCP")}),
        ("http://vmselect.vm:8481/select/0/prometheus", [], {(8481, "TCP")}),
        ("http://thanos-query.monitoring", [], {(80, "TCP")}),
        ("http://prometheus.monitoring:80", [9090], {(9090, "TCP")}),
    ],
)
def test_network_policy_opens_the_backend_port_of_the_url_or_the_given_pod_port(
    url: str, ports: list[int], expected: set[tuple[int, str]]
) -> None:
    values = merged(
        "default",
        prometheus={"url": url},
        networkPolicy={"enabled": True, "metricsBackend": {"to": [], "ports": ports}},
    )
    policy = render_values(values).one("NetworkPolicy")
    assert egress_ports(policy)[2] == expected


def test_the_dashboard_configmap_is_found_by_grafanas_sidecar() -> None:
    rendered = render_set("all-optional")
    configmap = rendered.one("ConfigMap", f"{RELEASE}-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["labels"]["grafana_folder"] == "agents"
    (document,) = configmap["data"].values()
    dashboard = json.loads(document)
    titles = {p["title"] for p in dashboard["panels"]}
    for wanted in (
        "Fleet cost, last 24h",
        "Cost by agent",
        "Success rate",
        "Success rate by agent",
        "p95 latency by agent",
        "Agents by state",
        "Actions over time",
    ):
        assert wanted in titles


def test_optional_parts_are_off_by_default() -> None:
    kinds = {m["kind"] for m in render_set("default").manifests}
    assert kinds == {
        "ServiceAccount",
        "ConfigMap",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "Role",  # the leader-election Lease, in the release namespace
        "RoleBinding",
    }


def test_notes_tell_the_user_what_to_do_next() -> None:
    notes = render_set("default").notes
    for hint in (
        "crds/examples/dry-run.yaml",
        "kubectl get agentpolicies",
        "kubectl get ap",
        "agentmedic status",
        f"logs deploy/{RELEASE}",
        f"port-forward svc/{RELEASE}-metrics 8080",
        "http://prometheus-operated.monitoring:9090",
    ):
        assert hint in notes
    assert "DRY RUN" in render_set("all-optional").notes
