"""The AgentPolicy API: examples, broken policies, durations and the CRD as Kubernetes sees it."""

from __future__ import annotations

import contextlib
import copy
import io
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from agentmedic.api.crd import crd_manifest
from agentmedic.api.durations import format_duration, parse_duration
from agentmedic.api.types import AgentPolicy
from agentmedic.api.validation import check_promql, validate_policy
from agentmedic.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
ALL_EXAMPLES = sorted((ROOT / "crds" / "examples").glob("*.yaml"))
# The example files holding AgentPolicies; finance's kinds are tested in test_budget_api.py.
EXAMPLES = [p for p in ALL_EXAMPLES if "kind: AgentPolicy" in p.read_text(encoding="utf-8")]
BROKEN = sorted((ROOT / "tests" / "data" / "broken_policies").glob("*.yaml"))


def agentmedic(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in-process (fast); one test below runs the real console entry point."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def test_the_console_entry_point_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agentmedic.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.startswith("agentmedic ")


def policies(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "AgentPolicy"]


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_policy_is_valid(path: Path) -> None:
    docs = policies(path)
    assert docs, f"{path} holds no AgentPolicy"
    for doc in docs:
        policy, problems = validate_policy(doc)
        assert problems == []
        assert policy is not None


def test_examples_cover_the_documented_scenarios() -> None:
    specs = [AgentPolicy.model_validate(d).spec for p in EXAMPLES for d in policies(p)]
    actions = {a.kind for s in specs for r in s.rules for a in r.actions}
    assert {"scaleToZero", "notify", "promptOptimization"} <= actions
    assert any(s.budget and s.budget.soft and s.budget.hard for s in specs)
    assert any(s.guardrails.dry_run for s in specs)
    classic = [
        r
        for s in specs
        for r in s.rules
        if {c.metric for c in r.all_of} == {"error_rate", "latency_p95_ms"}
    ]
    assert classic
    assert classic[0].severity == "high"


def test_validate_cli_accepts_the_examples() -> None:
    result = agentmedic("validate", str(ROOT / "crds" / "examples"))
    assert result.returncode == 0, result.stderr
    assert (
        f"{len(EXAMPLES)} policy, 1 budget, 1 cluster budget and 1 price list document(s) valid"
        in result.stdout
    )


def test_policy_round_trips_through_the_wire_format() -> None:
    doc = policies(ROOT / "crds" / "examples" / "finance-budget.yaml")[0]
    policy = AgentPolicy.model_validate(doc)
    again = AgentPolicy.model_validate(policy.model_dump(mode="json", by_alias=True))
    assert again == policy
    wire = policy.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert wire["spec"]["budget"]["limitUSD"] == 50
    assert wire["spec"]["interval"] == "1m"


# --------------------------------------------------------------------------- broken policies


def _expectation(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: ...'"
    return first.removeprefix("# expect: ")


def test_there_are_at_least_25_kinds_of_mistake() -> None:
    assert len(BROKEN) >= 25


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_each_broken_policy_yields_one_precise_message(path: Path) -> None:
    result = agentmedic("validate", "--quiet", str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if not ln.endswith("policy document(s)")]
    assert len(lines) == 1, result.stderr
    where, what = _expectation(path).split(": ", 1)
    assert f"{where}: " in lines[0], f"expected the field {where!r} in {lines[0]!r}"
    assert what in lines[0], f"expected {what!r} in {lines[0]!r}"


def test_validate_cli_reports_every_broken_file_and_exits_nonzero() -> None:
    result = agentmedic("validate", str(ROOT / "tests" / "data" / "broken_policies"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    for path in BROKEN:
        assert path.name in result.stderr


def test_validate_cli_names_a_missing_path() -> None:
    result = agentmedic("validate", "/nonexistent/policies")
    assert result.returncode == 1
    assert "no such file or directory" in result.stderr


def test_a_multi_document_file_reports_the_document_index(tmp_path: Path) -> None:
    good = policies(EXAMPLES[0])[0]
    bad = copy.deepcopy(good)
    bad["spec"]["interval"] = "soon"
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
    target = tmp_path / "bundle.yaml"
    target.write_text(yaml.safe_dump_all([secret, good, bad]))
    result = agentmedic("validate", str(target))
    assert result.returncode == 1
    # Documents are numbered from 1, as a person counts them (the Secret is #1).
    assert "bundle.yaml#3" in result.stderr
    assert "spec.interval" in result.stderr


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("sum(rate(x[5m])", "unclosed '('"),
        ("sum(rate(x[5m])))", "unbalanced ')'"),
        ('x{a="b}', "unterminated string"),
        ("   ", "is empty"),
        ("rate(x[{{ windw }}])", "unknown placeholder"),
    ],
)
def test_malformed_promql_is_detected(query: str, fragment: str) -> None:
    assert any(fragment in p for p in check_promql(query))


@pytest.mark.parametrize(
    "query",
    [
        "sum by ({{agent_label}}) (rate(x_total{ {{agents}} }[{{window}}]))",
        'sum(rate(x{path=~"/a\\\\(b"}[5m])) # a comment with ( in it',
        "histogram_quantile(0.95, sum by (le, agent) (rate(h_bucket[5m])))",
    ],
)
def test_wellformed_promql_passes(query: str) -> None:
    assert check_promql(query) == []


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(minutes=90)),
        ("1d", timedelta(days=1)),
        ("2w", timedelta(weeks=2)),
        ("250ms", timedelta(milliseconds=250)),
        ("1s500ms", timedelta(milliseconds=1500)),
        ("36h", timedelta(hours=36)),
    ],
)
def test_durations_read_as_written(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "5", "m5", "5 m", "-5m", "5y", "1.5h", "1d12h", "5s5s", "30m1h", "1w2d", "9999999h"],
)
def test_malformed_durations_are_refused_with_a_hint(text: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 30s"):
        parse_duration(text)


def test_a_duration_of_days_and_hours_is_written_in_hours() -> None:
    assert format_duration(timedelta(days=1, hours=2, seconds=1)) == "26h1s"
    assert format_duration(timedelta(days=14)) == "14d"


@given(st.integers(min_value=0, max_value=10**10))
def test_duration_formatting_round_trips(ms: int) -> None:
    value = timedelta(milliseconds=ms)
    assert parse_duration(format_duration(value)) == value


# --------------------------------------------------------------------------- the CRD


def test_crd_passes_kubernetes_schema_validation() -> None:
    version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(crd_manifest(), version, strict=True)


def _walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if "items" in schema:
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}{{}}")


def _openapi_schema() -> dict[str, Any]:
    return crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def test_every_field_has_a_description_for_kubectl_explain() -> None:
    spec = _openapi_schema()["properties"]["spec"]
    missing = [
        p
        for p, node in _walk(spec, "spec")
        if not p.endswith(("[]", "{}")) and p != "spec" and "description" not in node
    ]
    assert missing == []


def test_crd_schema_is_structural() -> None:
    for path, node in _walk(_openapi_schema()):
        assert "$ref" not in node, path
        assert "anyOf" not in node, path
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        assert not ("properties" in node and "additionalProperties" in node), path


def test_conditions_are_a_list_map_keyed_by_type() -> None:
    conditions = _openapi_schema()["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_printer_columns_show_the_fleet_at_a_glance() -> None:
    columns = crd_manifest()["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == [
        "Agents",
        "Breaching",
        "Disabled",
        "Spend",
        "Ready",
        "Age",
    ]


def _as_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0 as Kubernetes reads it → JSON Schema draft 4 (nullable → null type)."""
    if isinstance(node, list):
        return [_as_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _as_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
    if node.get("nullable"):
        out.pop("nullable")
        out["type"] = [node["type"], "null"]
    return out


def _cel_failures(schema: dict[str, Any], value: Any, path: str = "") -> Iterator[str]:
    """Evaluate the CRD's CEL rules over an object, as the API server does at admission."""
    if value is None:
        return
    for rule in schema.get("x-kubernetes-validations", []):
        env = celpy.Environment()
        program = env.program(env.compile(rule["rule"]))
        if not program.evaluate({"self": celpy.json_to_cel(value)}):
            yield f"{path}: {rule['message']}"
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                yield from _cel_failures(sub, value[name], f"{path}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            yield from _cel_failures(schema["items"], item, f"{path}[{i}]")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_pass_the_crd_schema_and_its_cel_rules(path: Path) -> None:
    schema = _openapi_schema()
    for doc in policies(path):
        jsonschema.Draft4Validator(_as_jsonschema(schema)).validate(doc)
        assert list(_cel_failures(schema, doc)) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("01-no-conditions", "exactly one of all (AND) and any (OR)"),
        ("13-metric-and-query", "exactly one of metric and query"),
        ("16-empty-selector", "spec.selector must not be empty"),
        ("19-two-action-kinds", "exactly one of scaleToZero"),
        ("20-prompt-opt-without-source", "exactly one of fromCronJob and jobTemplate"),
        ("21-channel-without-kind", "exactly one of slack, pagerduty, webhook and alertmanager"),
        ("25-model-both-locations", "exactly one of env and configMapKey"),
        ("34-both-all-and-any", "exactly one of all (AND) and any (OR)"),
        ("06-duplicate-rule", "rule names must be unique"),
    ],
)
def test_admission_cel_rules_refuse_structural_mistakes(name: str, message: str) -> None:
    doc = policies(ROOT / "tests" / "data" / "broken_policies" / f"{name}.yaml")[0]
    failures = list(_cel_failures(_openapi_schema(), doc))
    assert any(message in f for f in failures), failures


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("bot-config", None),
        ("{{workload}}-config", None),
        ("models.{{ workload }}", None),
        ("Bot_Config", "is not a ConfigMap name"),
        ("{{workload}}-", "is not a ConfigMap name"),
        ("{{namespace}}-config", "unknown placeholder {{namespace}}"),
    ],
)
def test_a_config_map_name_may_name_the_workload_and_must_be_a_valid_name(
    name: str, problem: str | None
) -> None:
    path = ROOT / "tests" / "data" / "broken_policies" / "41-config-map-unknown-placeholder.yaml"
    doc = policies(path)[0]
    doc["spec"]["model"]["configMapKey"]["name"] = name
    policy, problems = validate_policy(doc)
    messages = [str(p) for p in problems]
    if problem is None:
        assert messages == []
        assert policy is not None
        cm = policy.spec.model.config_map_key  # type: ignore[union-attr]
        assert cm is not None
        assert cm.config_map_for("bot") in ("bot-config", "models.bot")
    else:
        assert len(messages) == 1
        assert messages[0].startswith("spec.model.configMapKey.name: ")
        assert problem in messages[0]


# --------------------------------------------------------------------------- bounds


def _crd_refusals(doc: dict[str, Any]) -> list[str]:
    """What the API server would say about ``doc``: schema errors, then CEL failures."""
    schema = _openapi_schema()
    errors = [
        e.message for e in jsonschema.Draft4Validator(_as_jsonschema(schema)).iter_errors(doc)
    ]
    return errors + list(_cel_failures(schema, doc))


BOUNDS = [
    ("42-interval-zero", "must be between 10s and 1h"),
    ("43-window-shorter-than-two-scrapes", "must be between 30s and 30d"),
    ("44-cooldown-too-long", "must be between 0s and 30d"),
    ("45-too-many-tiers", "is too long"),
    ("46-raw-query-without-agents", "put {{agents}} in the braces"),
    ("47-days-with-hours", "does not match"),
    ("48-secret-name-too-long", "is too long"),
    ("49-budget-period-too-long", "between 1m and 366d"),
    ("50-too-many-notify-channels", "is too long"),
]


@pytest.mark.parametrize(("name", "message"), BOUNDS)
def test_the_crd_refuses_at_admission_what_the_models_refuse(name: str, message: str) -> None:
    doc = policies(ROOT / "tests" / "data" / "broken_policies" / f"{name}.yaml")[0]
    assert validate_policy(doc)[1], "the models must refuse it too"
    refusals = _crd_refusals(doc)
    assert any(message in r for r in refusals), refusals


@pytest.mark.parametrize(
    "text",
    [
        *("0s", "9s999ms", "10s", "30s", "59m60s", "1h", "1h1ms", "3600s", "1d", "29d", "30d"),
        *("31d", "0d", "4w", "5w", "0w", "720h", "720h1ms", "1m", "90d"),
    ],
)
@pytest.mark.parametrize("field", ["interval", "window", "cooldown", "renotifyAfter"])
def test_duration_bounds_in_cel_agree_with_the_models(field: str, text: str) -> None:
    doc = policies(EXAMPLES[0])[0]
    doc = copy.deepcopy(doc)
    spec = doc["spec"]
    channel = {"name": "c", "slack": {"webhookSecretRef": {"name": "s", "key": "k"}}}
    if field == "interval":
        spec["interval"] = text
        spec["rules"] = [{**r, "for": "0s"} for r in spec.get("rules", [])]
    elif field == "window":
        spec["rules"][0]["all"][0]["window"] = text
    elif field == "cooldown":
        spec.setdefault("guardrails", {})["cooldown"] = text
    else:
        spec.setdefault("notifications", {}).setdefault("channels", []).append(
            {**channel, "renotifyAfter": text}
        )
    model_accepts = not validate_policy(doc)[1]
    assert (not list(_cel_failures(_openapi_schema(), doc))) == model_accepts


def test_a_policy_at_every_list_bound_is_valid_and_one_more_is_refused() -> None:
    doc = policies(EXAMPLES[0])[0]
    rule = doc["spec"]["rules"][0]
    doc["spec"]["rules"] = [{**rule, "name": f"r{i}"} for i in range(100)]
    assert validate_policy(doc)[1] == []
    doc["spec"]["rules"].append({**rule, "name": "r100"})
    problems = [str(p) for p in validate_policy(doc)[1]]
    assert problems == ["spec.rules: has 101 entries; at most 100 are allowed"]
    assert any("is too long" in r for r in _crd_refusals(doc))


def test_a_huge_value_is_quoted_in_a_message_in_a_few_characters() -> None:
    doc = policies(EXAMPLES[0])[0]
    doc["spec"]["rules"][0]["severity"] = "x" * 1_000_000
    doc["spec"]["guardrails"] = {"dryRun": ["lol"] * 100_000}
    problems = [str(p) for p in validate_policy(doc)[1]]
    assert len(problems) == 2
    assert all(len(p) < 300 for p in problems), problems


def _unbounded(node: dict[str, Any], path: str) -> Iterator[str]:
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return  # free-form (a Job template): bounded by the API server's request size
    kind = node.get("type")
    if kind == "array":
        if "maxItems" not in node:
            yield f"{path}: array without maxItems"
        yield from _unbounded(node["items"], f"{path}[]")
    elif kind == "string" and "maxLength" not in node and "enum" not in node:
        yield f"{path}: string without maxLength"
    elif kind == "object":
        if "additionalProperties" in node:
            if "maxProperties" not in node:
                yield f"{path}: map without maxProperties"
            yield from _unbounded(node["additionalProperties"], f"{path}{{}}")
        for name, child in node.get("properties", {}).items():
            yield from _unbounded(child, f"{path}.{name}")


def test_every_list_map_and_string_of_the_spec_is_bounded_in_the_crd() -> None:
    spec = _openapi_schema()["properties"]["spec"]
    assert list(_unbounded(spec, "spec")) == []
