"""The rendered configuration is what the operator's own settings loader accepts.

For each install the ConfigMap's config.yaml and the Deployment's environment are fed to
``agentmedic.operator.settings.load_settings`` exactly as the pod would (AGENTMEDIC_CONFIG
naming the file, AGENTMEDIC_* variables winning over it). Files the config names (token,
password, CA, catalog overrides) must be mounted at those paths from the right source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agentmedic.api.metric_names import BUILTIN_METRICS
from agentmedic.metrics.catalog import DEFAULT_CATALOG
from agentmedic.operator.settings import OperatorSettings, Shard, load_settings

from .support import (
    RELEASE,
    VALUE_SETS,
    Rendered,
    chart,
    env_of,
    merged,
    operator_container,
    render_set,
    render_values,
)


def settings_of(rendered: Rendered, deployment: dict[str, Any], tmp_path: Path) -> OperatorSettings:
    """The settings one Deployment's pods would run with."""
    config = tmp_path / "config.yaml"
    config.write_text(rendered.one("ConfigMap", RELEASE)["data"]["config.yaml"])
    env = env_of(operator_container(deployment))
    assert env.pop("AGENTMEDIC_CONFIG") == "/etc/agentmedic/config.yaml"
    environ = {k: v for k, v in env.items() if isinstance(v, str)}
    environ["AGENTMEDIC_CONFIG"] = str(config)
    return load_settings(environ=environ)


def mounted_file(deployment: dict[str, Any], path: str) -> tuple[str, str, str]:
    """(volume kind, source name, key) of the file at ``path`` in the operator container."""
    spec = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    for mount in operator_container(deployment)["volumeMounts"]:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        assert mount.get("readOnly") is True, f"{mount['name']} must be read-only"
        relative = path.removeprefix(prefix)
        volume = volumes[mount["name"]]
        kind = "secret" if "secret" in volume else "configMap"
        source = volume[kind]
        name = source.get("secretName", source.get("name"))
        for item in source.get("items", []):
            if item["path"] == relative:
                return kind, name, item["key"]
        return kind, name, relative
    raise AssertionError(f"{path} is not mounted")


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_deployment_starts_with_settings_the_operator_accepts(
    value_set: str, tmp_path: Path
) -> None:
    rendered = render_set(value_set)
    values = VALUE_SETS[value_set]
    for deployment in rendered.of_kind("Deployment"):
        settings = settings_of(rendered, deployment, tmp_path)
        assert settings.prometheus_url == values["prometheus"]["url"]
        assert settings.namespaces == values.get("namespaces", [])
        assert settings.metrics_port == 8080
        assert settings.health_port == 8081


def test_defaults_give_an_ha_cluster_wide_json_logging_operator(tmp_path: Path) -> None:
    rendered = render_set("default")
    settings = settings_of(rendered, rendered.one("Deployment"), tmp_path)
    assert settings.peering == RELEASE
    assert settings.shard is None
    assert settings.namespaces == []
    assert settings.log_format == "json"
    assert settings.dry_run is False
    assert settings.bearer_token_file is None
    assert settings.tenant is None


def test_each_shard_evaluates_its_own_share_and_peers_only_with_its_replicas(
    tmp_path: Path,
) -> None:
    rendered = render_set("sharded")
    deployments = rendered.of_kind("Deployment")
    shards = [settings_of(rendered, d, tmp_path) for d in deployments]
    assert [s.shard for s in shards] == [Shard(index=i, count=3) for i in range(3)]
    assert len({s.peering for s in shards}) == 3  # a Lease of its own per shard
    for d in deployments:  # each elects in the release namespace, where its Role grants it
        lease_ns = env_of(operator_container(d))["AGENTMEDIC_LEASE_NAMESPACE"]
        assert lease_ns == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    # Together the shards own every policy exactly once.
    uids = [f"uid-{n}" for n in range(200)]
    assert sorted(u for s in shards for u in uids if s.owns(u)) == sorted(uids)


def test_a_standalone_install_runs_without_peering(tmp_path: Path) -> None:
    rendered = render_set("basic-auth-standalone")
    settings = settings_of(rendered, rendered.one("Deployment"), tmp_path)
    assert settings.peering is None or settings.peering == ""
    assert not [r for r in rendered.of_kind("Role") if "leader-election" in r["metadata"]["name"]]
    assert not rendered.of_kind("PodDisruptionBudget"), "a PDB of 1 would block node drains"


def test_custom_backend_secrets_reach_the_operator_as_mounted_files(tmp_path: Path) -> None:
    rendered = render_set("custom-backend")
    deployment = rendered.one("Deployment")
    settings = settings_of(rendered, deployment, tmp_path)
    assert settings.tenant == "team-ml"
    assert settings.extra_headers == {"X-Team": "ml"}
    assert settings.query_timeout_seconds == 20
    assert settings.max_concurrent_queries == 4
    assert settings.bearer_token_file is not None
    assert mounted_file(deployment, str(settings.bearer_token_file)) == (
        "secret",
        "mimir-token",
        "token",
    )
    assert settings.ca_file is not None
    assert mounted_file(deployment, str(settings.ca_file)) == ("configMap", "corp-ca", "bundle.pem")


def test_basic_auth_password_and_ca_come_from_their_secrets(tmp_path: Path) -> None:
    rendered = render_set("basic-auth-standalone")
    deployment = rendered.one("Deployment")
    settings = settings_of(rendered, deployment, tmp_path)
    assert settings.basic_auth_username == "agentmedic"
    assert settings.basic_auth_password_file is not None
    assert mounted_file(deployment, str(settings.basic_auth_password_file)) == (
        "secret",
        "vm-auth",
        "password",
    )
    assert settings.ca_file is not None
    assert mounted_file(deployment, str(settings.ca_file)) == ("secret", "vm-ca", "ca.crt")


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_no_secret_is_rendered_and_the_configmap_holds_no_credentials(value_set: str) -> None:
    rendered = render_set(value_set)
    assert not rendered.of_kind("Secret")
    config = rendered.config()
    for key in config:
        if any(word in key.lower() for word in ("token", "password", "secret")):
            assert key.endswith("File"), f"{key} would put a credential in a ConfigMap"


def test_catalog_overrides_are_mounted_where_the_config_points(tmp_path: Path) -> None:
    rendered = render_set("all-optional")
    deployment = rendered.one("Deployment")
    settings = settings_of(rendered, deployment, tmp_path)
    assert settings.catalog_overrides_file is not None
    kind, name, key = mounted_file(deployment, str(settings.catalog_overrides_file))
    assert (kind, name) == ("configMap", RELEASE)
    overrides = yaml.safe_load(rendered.one("ConfigMap", RELEASE)["data"][key])
    assert overrides == VALUE_SETS["all-optional"]["catalogOverrides"]
    catalog = DEFAULT_CATALOG.with_overrides(overrides)  # what the operator does with it
    assert catalog.templates["cost_usd"] == overrides["cost_usd"]
    assert settings.dry_run is True
    assert settings.log_format == "text"
    assert settings.log_level == "DEBUG"


def test_the_values_schema_knows_exactly_the_builtin_metrics_for_overrides() -> None:
    schema = chart().schema
    assert schema is not None
    overridable = schema["properties"]["catalogOverrides"]["properties"]
    assert set(overridable) == set(BUILTIN_METRICS)


def test_every_operator_setting_can_be_set_through_the_chart(tmp_path: Path) -> None:
    """A setting added to OperatorSettings fails here until the chart can set it."""
    everything = merged(
        "custom-backend",
        namespaces=["agents"],
        catalogOverrides={"cost_usd": "sum by ({{by}}) (x{ {{agents}} }[{{window}}])"},
        sharding={"count": 2},
    )
    everything["prometheus"]["basicAuth"] = {"username": "u", "passwordSecretName": "pw"}
    rendered = render_values(everything)
    deployment = rendered.of_kind("Deployment")[0]
    settings_of(rendered, deployment, tmp_path)  # valid together
    aliases = {info.alias or name: name for name, info in OperatorSettings.model_fields.items()}
    reached = {aliases[key] for key in rendered.config()}
    env = env_of(operator_container(deployment))
    reached |= {
        name for name in OperatorSettings.model_fields if f"AGENTMEDIC_{name.upper()}" in env
    }
    assert reached == set(OperatorSettings.model_fields)
