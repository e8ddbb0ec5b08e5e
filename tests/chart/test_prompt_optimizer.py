"""The chart's reference prompt optimizer: a suspended CronJob per agents' namespace whose
Job runs ``agentmedic optimize-prompt`` with the API key from a Secret, under a
ServiceAccount that may only get and patch ConfigMaps; a Job agentmedic builds from it is
valid and told where the prompt is."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import latest_version

from agentmedic.actions.jobs import build_job
from agentmedic.actions.record import PolicyRef
from agentmedic.cli.main import build_parser

from .support import Rendered, merged, render_values
from .test_schema import rejection

OPTIMIZER = {
    "enabled": True,
    "model": "gpt-4o-mini",
    "apiKeySecret": {"name": "openai", "key": "api-key"},
    "args": ["--min-reduction", "0.2", "--keep", "Never share card numbers."],
}


def _render(**overrides: Any) -> Rendered:
    return render_values(merged("namespaced", promptOptimizer={**OPTIMIZER, **overrides}))


def _of_optimizer(rendered: Rendered, kind: str) -> list[dict[str, Any]]:
    return [
        m
        for m in rendered.of_kind(kind)
        if m["metadata"]["labels"].get("app.kubernetes.io/component") == "prompt-optimizer"
    ]


def test_each_watched_namespace_gets_the_cron_job_its_account_and_role() -> None:
    rendered = _render()
    for kind in ("CronJob", "ServiceAccount", "Role", "RoleBinding"):
        placed = sorted(m["metadata"]["namespace"] for m in _of_optimizer(rendered, kind))
        assert placed == ["agents", "research"], kind
    version = latest_version()
    for kind in ("CronJob", "ServiceAccount", "Role", "RoleBinding"):
        for manifest in _of_optimizer(rendered, kind):
            kubernetes_validate.validate(manifest, version, strict=True)


def test_the_job_runs_optimize_prompt_with_the_key_from_the_secret_and_is_not_retried() -> None:
    (cron,) = [
        c for c in _of_optimizer(_render(), "CronJob") if c["metadata"]["namespace"] == "agents"
    ]
    assert cron["metadata"]["name"] == "prompt-optimizer"
    assert cron["spec"]["suspend"] is True, "only agentmedic starts it"
    job = cron["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0
    pod = job["template"]["spec"]
    assert pod["serviceAccountName"] == "prompt-optimizer"
    (container,) = pod["containers"]
    assert container["command"] == ["agentmedic", "optimize-prompt"]
    assert container["args"] == OPTIMIZER["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["OPENAI_MODEL"]["value"] == "gpt-4o-mini"
    assert env["OPENAI_BASE_URL"]["value"] == "https://api.openai.com/v1"
    assert env["OPENAI_API_KEY"] == {
        "name": "OPENAI_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "openai", "key": "api-key"}},
    }
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # The arguments the chart passes are ones the command accepts.
    args = build_parser().parse_args(["optimize-prompt", *container["args"]])
    assert (args.min_reduction, args.keep) == (0.2, ["Never share card numbers."])


def test_the_role_only_gets_and_patches_config_maps() -> None:
    for role in _of_optimizer(_render(), "Role"):
        assert role["rules"] == [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch"]}
        ]
    for binding in _of_optimizer(_render(), "RoleBinding"):
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": "prompt-optimizer",
                "namespace": binding["metadata"]["namespace"],
            }
        ]


def test_a_job_agentmedic_builds_from_the_cron_job_is_valid_and_knows_the_prompt() -> None:
    (cron,) = [
        c for c in _of_optimizer(_render(), "CronJob") if c["metadata"]["namespace"] == "agents"
    ]
    job = build_job(
        template=cron["spec"]["jobTemplate"],
        name="support-bot-prompt-opt-1a2b3c4d",
        namespace="agents",
        policy=PolicyRef("agents", "latency", uid="5f1e8c1a-0000-4000-8000-000000000001"),
        agent="support-bot",
        rule="latency-spike",
        episode="agents/latency/support-bot/latency-spike/2026-12-03T10:00:00Z",
        evidence={"p95": 9100},
        ttl_seconds_after_finished=7200,
        from_cron_job="prompt-optimizer",
        prompt=("support-bot-prompt", "system"),
    )
    kubernetes_validate.validate(job, latest_version(), strict=True)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["AGENTMEDIC_PROMPT_CONFIGMAP"] == "support-bot-prompt"
    assert env["AGENTMEDIC_PROMPT_KEY"] == "system"
    assert env["AGENTMEDIC_JOB"] == "support-bot-prompt-opt-1a2b3c4d"
    assert env["AGENTMEDIC_NAMESPACE"] == "agents"


def test_it_is_off_by_default() -> None:
    assert not _of_optimizer(render_values(merged("namespaced")), "CronJob")


@pytest.mark.parametrize(
    ("values", "says"),
    [
        (merged("default", promptOptimizer=OPTIMIZER), "promptOptimizer.namespaces"),
        (
            merged("namespaced", promptOptimizer={**OPTIMIZER, "apiKeySecret": {"name": ""}}),
            "promptOptimizer.apiKeySecret.name",
        ),
        (merged("namespaced", promptOptimizer={**OPTIMIZER, "baseURL": "api"}), "baseURL"),
    ],
)
def test_an_unusable_setting_is_refused_naming_it(values: dict[str, Any], says: str) -> None:
    assert says in rejection(values)
