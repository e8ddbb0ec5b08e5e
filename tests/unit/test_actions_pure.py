"""The pure parts of the actions layer: names, selectors, patches, records, errors, permissions."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.client import ApiException

import agentmedic.actions as actions
from agentmedic.actions import (
    REQUIRED_PERMISSIONS,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Permission,
    PolicyRef,
    RetryPolicy,
    Transient,
    WorkloadRef,
    build_job,
    job_name,
    label_selector_string,
    parse_disabled,
    parse_downgraded,
    permission_for_request,
    scrub,
    state_key,
)
from agentmedic.actions import record as rec
from agentmedic.actions.errors import CorruptRecordError
from agentmedic.actions.jobs import job_finished, label_value
from agentmedic.actions.objects import annotation_ops
from agentmedic.api.types import LabelSelector, LabelSelectorRequirement
from agentmedic.kube import translate

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
QUALIFIED_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
POLICY = PolicyRef("agents", "support-policy", "uid-1")


def test_the_public_api_exports_what_it_lists() -> None:
    for name in actions.__all__:
        assert hasattr(actions, name), name
    assert len(set(actions.__all__)) == len(actions.__all__)


# --------------------------------------------------------------------------- selectors


def test_label_selectors_render_in_the_api_query_syntax() -> None:
    selector = LabelSelector(
        match_labels={"team": "support", "app.kubernetes.io/part-of": "bots"},
        match_expressions=[
            LabelSelectorRequirement(key="tier", operator="NotIn", values=["free", "trial"]),
            LabelSelectorRequirement(key="env", operator="In", values=["prod", "canary"]),
            LabelSelectorRequirement(key="agentmedic.io/ignore", operator="DoesNotExist"),
            LabelSelectorRequirement(key="owner", operator="Exists"),
        ],
    )

    assert label_selector_string(selector) == (
        "app.kubernetes.io/part-of=bots,team=support,"
        "!agentmedic.io/ignore,env in (canary,prod),owner,tier notin (free,trial)"
    )


def test_an_empty_selector_selects_everything() -> None:
    assert label_selector_string(LabelSelector()) == ""


# --------------------------------------------------------------------------- names


def test_job_names_are_deterministic_per_episode() -> None:
    assert job_name("support-bot", "ep-1") == job_name("support-bot", "ep-1")
    assert job_name("support-bot", "ep-1") != job_name("support-bot", "ep-2")
    assert job_name("support-bot", "ep-1").startswith("support-bot-prompt-opt-")


@given(agent=st.text(min_size=0, max_size=300), episode=st.text(max_size=200))
def test_job_names_are_dns_labels_of_at_most_63_characters(agent: str, episode: str) -> None:
    name = job_name(agent, episode)
    assert len(name) <= 63
    assert DNS_LABEL.match(name), name
    assert name.endswith(rec.episode_hash(episode))


@given(text=st.text(max_size=300))
def test_label_values_are_always_valid(text: str) -> None:
    value = label_value(text)
    assert len(value) <= 63
    assert LABEL_VALUE.match(value), value


def test_valid_label_values_are_kept_as_they_are() -> None:
    assert label_value("support-bot_v2.1") == "support-bot_v2.1"


@given(key=st.text(min_size=1, max_size=300))
def test_state_keys_are_valid_annotation_keys(key: str) -> None:
    full = state_key(key)
    prefix, _, name = full.partition("/")
    assert prefix == "agentmedic.io"
    assert len(name) <= 63
    assert QUALIFIED_NAME.match(name), name


def test_distinct_policy_keys_never_share_a_state_key() -> None:
    keys = ["agents/support", "agents-support", "agents.support", "a" * 80, "a" * 81]
    assert len({state_key(k) for k in keys}) == len(keys)
    assert state_key("support-policy") == "agentmedic.io/state.support-policy"


# --------------------------------------------------------------------------- jobs


def _template() -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "opt"}, "annotations": {INSTANTIATE: "scheduled"}},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "a",
                            "image": "i",
                            "env": [{"name": "AGENTMEDIC_RULE", "value": "x"}],
                        },
                        {"name": "b", "image": "i"},
                    ]
                }
            }
        },
    }


INSTANTIATE = "cronjob.kubernetes.io/instantiate"


def test_a_job_built_from_a_template_leaves_the_template_alone() -> None:
    template = _template()
    snapshot = json.dumps(template, sort_keys=True)

    job = build_job(
        template=template,
        name="bot-prompt-opt-abc",
        namespace="agents",
        policy=POLICY,
        agent="bot",
        rule="latency-spike",
        episode="e1",
        evidence={"p95": 9000},
        ttl_seconds_after_finished=60,
        from_cron_job="prompt-optimizer",
    )

    assert json.dumps(template, sort_keys=True) == snapshot
    # like kubectl: the template's own annotations win over the marker; the rule and the
    # episode are agentmedic's, to record the Job's outcome with the episode that started it
    assert job["metadata"]["annotations"] == {
        INSTANTIATE: "scheduled",
        "agentmedic.io/rule": "latency-spike",
        "agentmedic.io/episode": "e1",
    }
    containers = job["spec"]["template"]["spec"]["containers"]
    for c in containers:
        names = [e["name"] for e in c["env"]]
        assert len(names) == len(set(names)), "no duplicate env names"
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env["AGENTMEDIC_RULE"] == "latency-spike"
        assert json.loads(env["AGENTMEDIC_EVIDENCE"]) == {"p95": 9000}
        assert env["AGENTMEDIC_JOB"] == "bot-prompt-opt-abc"
        assert "AGENTMEDIC_PROMPT_KEY" not in env, "only with the policy's spec.prompt"


def test_a_job_is_told_where_the_live_prompt_is() -> None:
    job = build_job(
        template=_template(),
        name="bot-prompt-opt-abc",
        namespace="agents",
        policy=POLICY,
        agent="bot",
        rule="latency-spike",
        episode="e1",
        evidence={},
        ttl_seconds_after_finished=60,
        prompt=("bot-prompt", "system"),
    )
    for c in job["spec"]["template"]["spec"]["containers"]:
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env["AGENTMEDIC_PROMPT_CONFIGMAP"] == "bot-prompt"
        assert env["AGENTMEDIC_PROMPT_KEY"] == "system"


def test_an_owner_reference_needs_the_policy_uid() -> None:
    with pytest.raises(ValueError, match=r"metadata\.uid"):
        PolicyRef("agents", "p").owner_reference()


@pytest.mark.parametrize(
    ("status", "finished"),
    [
        (None, False),
        ({"active": 1}, False),
        ({"conditions": [{"type": "Complete", "status": "True"}]}, True),
        ({"conditions": [{"type": "Failed", "status": "True"}]}, True),
        ({"conditions": [{"type": "Suspended", "status": "True"}]}, False),
        ({"conditions": [{"type": "Complete", "status": "False"}]}, False),
    ],
)
def test_a_job_is_finished_only_with_a_true_complete_or_failed_condition(
    status: dict[str, Any] | None,
    finished: bool,
) -> None:
    job = {"metadata": {"name": "j"}} if status is None else {"status": status}
    assert job_finished(job) is finished


# --------------------------------------------------------------------------- patches


def test_annotation_ops_touch_single_keys_with_escaped_pointers() -> None:
    obj = {"metadata": {"resourceVersion": "7", "annotations": {"a": "1", rec.RULE: "old"}}}

    ops = annotation_ops(obj, {rec.DISABLED: "{}"}, (rec.RULE, rec.EPISODE))

    assert ops == [
        {"op": "add", "path": "/metadata/annotations/agentmedic.io~1disabled", "value": "{}"},
        {"op": "remove", "path": "/metadata/annotations/agentmedic.io~1rule"},
    ]


def test_adding_the_first_annotations_is_guarded_by_the_resource_version() -> None:
    obj = {"metadata": {"resourceVersion": "7"}}

    ops = annotation_ops(obj, {rec.RULE: "r"})

    assert ops == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
        {"op": "add", "path": "/metadata/annotations", "value": {rec.RULE: "r"}},
    ]


def test_json_pointers_escape_tilde_and_slash() -> None:
    assert rec.json_pointer("metadata", "annotations", "a~b/c") == "/metadata/annotations/a~0b~1c"


# --------------------------------------------------------------------------- the record


def test_the_record_round_trips_through_annotations() -> None:
    record = rec.ActionRecord(
        policy=POLICY,
        rule="low-success",
        episode="ep",
        reason="why",
        evidence="x" * 5000,
        at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    value = {"replicas": 3, "keda": {"scaledObject": "so", "pausedReplicas": "2"}, "hpa": ["h"]}
    annotations = {rec.DISABLED: rec.canonical_json({**value, **record.who_why_when()})}

    disabled = parse_disabled(annotations)

    assert disabled is not None
    assert (disabled.replicas, disabled.keda_scaled_object) == (3, "so")
    assert disabled.keda_previous_paused_replicas == "2"
    assert disabled.hpas == ("h",)
    assert disabled.at == "2025-01-02T03:04:05Z"
    assert len(disabled.raw["evidence"]) <= 1024


@pytest.mark.parametrize("raw", ["", "not json", "[]", '{"replicas": "three"}', "{}"])
def test_an_unreadable_record_reads_as_none(raw: str) -> None:
    assert parse_disabled({rec.DISABLED: raw}) is None
    assert parse_downgraded({rec.DOWNGRADED: raw}) is None


def test_the_strict_readers_accept_what_the_executor_writes() -> None:
    disabled = {"replicas": 3, "keda": {"scaledObject": "so", "pausedReplicas": None}}
    downgraded = {
        "model": "claude-3-5-sonnet@20240620",
        "to": "meta-llama/Llama-3-8b",
        "source": {"env": {"container": "agent", "name": "MODEL"}},
    }
    annotations = {rec.DISABLED: json.dumps(disabled), rec.DOWNGRADED: json.dumps(downgraded)}
    assert rec.read_disabled(annotations) == parse_disabled(annotations)
    assert rec.read_downgraded(annotations) == parse_downgraded(annotations)
    assert rec.read_disabled({}) is None
    assert rec.read_downgraded({}) is None


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("not json", "is not valid JSON"),
        ("", "is not valid JSON"),
        ("[3]", "holds a JSON list, not an object"),
        ('{"replicas": 1000000000000}', "outside 0..2147483647"),
        ('{"replicas": 2147483648}', "outside 0..2147483647"),
        ('{"replicas": -1}', "outside 0..2147483647"),
        ('{"replicas": 2.5}', "not an integer"),
        ('{"replicas": "3"}', "not an integer"),
        ('{"replicas": true}', "not an integer"),
        ("{}", "replicas missing, not an integer"),
        ('{"replicas": 3, "keda": "so"}', "keda entry"),
        ('{"replicas": 3, "hpa": [1]}', "hpa entry"),
    ],
)
def test_restore_refuses_a_disabled_record_that_is_corrupt_or_implausible(
    raw: str, problem: str
) -> None:
    with pytest.raises(CorruptRecordError, match=re.escape(problem)) as caught:
        rec.read_disabled({rec.DISABLED: raw})
    assert caught.value.annotation == rec.DISABLED
    assert caught.value.message.startswith(f"annotation {rec.DISABLED} ")


def test_a_configured_replica_ceiling_refuses_a_larger_record() -> None:
    annotations = {rec.DISABLED: '{"replicas": 1001}'}
    with pytest.raises(CorruptRecordError, match=r"replicas 1001, outside 0\.\.1000"):
        rec.read_disabled(annotations, max_replicas=1000)
    assert rec.read_disabled(annotations, max_replicas=2000) is not None


_ENV = '"source": {"env": {"container": "agent", "name": "MODEL"}}'


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("{not json", "is not valid JSON"),
        ('"gpt-4o"', "holds a JSON str, not an object"),
        ('{"model": 42, "to": "gpt-4o-mini", ' + _ENV + "}", "model 42, which is not a model"),
        ('{"model": "", "to": "gpt-4o-mini", ' + _ENV + "}", 'model "", which is not a model'),
        ('{"model": "gpt 4o; rm -rf", "to": "x", ' + _ENV + "}", "which is not a model name"),
        ('{"model": "' + "g" * 300 + '", "to": "x", ' + _ENV + "}", "which is not a model name"),
        ('{"model": "gpt-4o", ' + _ENV + "}", "has to missing"),
        ('{"model": "gpt-4o", "to": "gpt-4o-mini"}', "has a source that is neither"),
        ('{"model": "gpt-4o", "to": "m", "source": {"env": {"name": "M"}}}', "neither env"),
    ],
)
def test_restore_refuses_a_downgraded_record_that_is_corrupt_or_implausible(
    raw: str, problem: str
) -> None:
    with pytest.raises(CorruptRecordError, match=re.escape(problem)) as caught:
        rec.read_downgraded({rec.DOWNGRADED: raw})
    assert caught.value.annotation == rec.DOWNGRADED


def test_workload_refs_accept_only_deployments_and_statefulsets() -> None:
    with pytest.raises(ValueError, match="Deployment or StatefulSet"):
        WorkloadRef("DaemonSet", "agents", "x")  # type: ignore[arg-type]
    assert str(WorkloadRef("StatefulSet", "agents", "idx")) == "statefulset/idx in agents"


# --------------------------------------------------------------------------- scrubbing


@pytest.mark.parametrize(
    "text",
    [
        "posting to https://hooks.slack.com/services/T0/B0/SECRET failed",
        "https://user:SECRET@example.com/path",
        "Authorization: Bearer SECRETSECRETSECRET",
        "key sk-proj-SECRETSECRETSECRET",
        "token xoxb-1234-SECRETSECRET",
        "routing_key=SECRET123 api_key: SECRET456 password=SECRET",
    ],
)
def test_scrub_masks_credentials(text: str) -> None:
    assert "SECRET" not in scrub(text)


def test_scrub_keeps_ordinary_evidence_and_clips_long_messages() -> None:
    text = "error_rate 0.31 > 0.15 over 5m (412 executions)"
    assert scrub(text) == text
    assert len(scrub("x" * 5000)) == 1024


# --------------------------------------------------------------------------- errors


def _api_exception(
    status: int, reason: str = "", headers: dict[str, str] | None = None
) -> ApiException:
    exc = ApiException(status=status, reason="Reason")
    exc.body = json.dumps({"kind": "Status", "message": f"the message {status}", "reason": reason})
    exc.headers = headers
    return exc


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (404, NotFound),
        (409, Conflict),
        (422, Invalid),
        (400, Invalid),
        (403, Forbidden),
        (401, Forbidden),
        (429, Transient),
        (500, Transient),
        (503, Transient),
    ],
)
def test_api_errors_translate_into_the_projects_errors(status: int, error: type[Exception]) -> None:
    translated = translate(_api_exception(status), "patch Deployment agents/bot")
    assert type(translated) is error
    assert translated.status == status
    assert translated.message.startswith("patch Deployment agents/bot: the message")


def test_already_exists_is_a_distinguishable_conflict() -> None:
    exc = translate(_api_exception(409, "AlreadyExists"), "create Job")
    assert isinstance(exc, Conflict)
    assert exc.already_exists
    plain = translate(_api_exception(409, "Conflict"), "patch")
    assert isinstance(plain, Conflict)
    assert not plain.already_exists


def test_retry_after_is_read_from_the_response() -> None:
    exc = translate(_api_exception(429, headers={"Retry-After": "7"}), "get")
    assert isinstance(exc, Transient)
    assert exc.retry_after == 7.0


def test_backoff_grows_is_capped_and_honours_retry_after_up_to_a_limit() -> None:
    policy = RetryPolicy(base=0.5, cap=4.0, max_retry_after=10.0)
    rng = random.Random(7)
    for retry in range(10):
        assert 0.0 <= policy.delay(retry, rng) <= min(4.0, 0.5 * 2**retry)
    assert policy.delay(0, rng, retry_after=3.0) == 3.0
    assert policy.delay(0, rng, retry_after=600.0) == 10.0


# --------------------------------------------------------------------------- permissions


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/apis/apps/v1/namespaces/a/deployments", ("apps", "deployments", "list")),
        (
            "GET",
            "/apis/apps/v1/namespaces/a/deployments?watch=true",
            ("apps", "deployments", "watch"),
        ),
        ("GET", "/apis/apps/v1/namespaces/a/deployments/bot", ("apps", "deployments", "get")),
        ("PATCH", "/apis/apps/v1/namespaces/a/statefulsets/x", ("apps", "statefulsets", "patch")),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/a/deployments/x/scale",
            ("apps", "deployments/scale", "patch"),
        ),
        ("POST", "/api/v1/namespaces/a/events", ("", "events", "create")),
        ("GET", "/api/v1/namespaces/a/secrets/s", ("", "secrets", "get")),
        ("GET", "/api/v1/namespaces", ("", "namespaces", "list")),
        ("DELETE", "/apis/batch/v1/namespaces/a/jobs", ("batch", "jobs", "deletecollection")),
        (
            "PATCH",
            "/apis/keda.sh/v1alpha1/namespaces/a/scaledobjects/so",
            ("keda.sh", "scaledobjects", "patch"),
        ),
    ],
)
def test_requests_map_to_rbac_permissions(
    method: str, path: str, expected: tuple[str, str, str]
) -> None:
    assert permission_for_request(method, path) == Permission(*expected)


def test_discovery_paths_are_not_resource_requests() -> None:
    with pytest.raises(ValueError, match="not a resource request"):
        permission_for_request("GET", "/version")


def test_required_permissions_are_tuples_comparable_with_the_operators() -> None:
    assert ("apps", "deployments", "patch") in REQUIRED_PERMISSIONS
    assert all(isinstance(p, tuple) and len(p) == 3 for p in REQUIRED_PERMISSIONS)
    assert str(Permission("", "events", "create")) == "create events.core"
