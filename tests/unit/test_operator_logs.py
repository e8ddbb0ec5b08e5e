"""The operator's JSON log lines: one object per line, kopf's internals left out."""

from __future__ import annotations

import json
import logging

import kopf

from agentmedic.operator.logs import JsonFormatter


def _line(**extra: object) -> dict[str, object]:
    record = logging.makeLogRecord(
        {"name": "kopf.objects", "levelno": logging.INFO, "levelname": "INFO", "msg": "done"}
    )
    for key, value in extra.items():
        setattr(record, key, value)
    parsed: dict[str, object] = json.loads(JsonFormatter().format(record))
    return parsed


def test_a_kopf_object_line_names_its_object_and_leaves_out_the_operators_settings() -> None:
    ref = {"apiVersion": "agentmedic.io/v1alpha1", "kind": "AgentPolicy", "name": "p"}
    line = _line(settings=kopf.OperatorSettings(), k8s_skip=False, k8s_ref=ref)
    assert line["message"] == "done"
    assert line["object"] == ref
    assert "settings" not in line
    assert "k8s_skip" not in line
    assert len(json.dumps(line)) < 400


def test_other_extras_are_kept_as_json_scalars_or_text() -> None:
    line = _line(policy="agents/p", cycles=3, ratio=0.5, ok=True, spans=[1, 2])
    assert line["policy"] == "agents/p"
    assert line["cycles"] == 3
    assert line["ratio"] == 0.5
    assert line["ok"] is True
    assert line["spans"] == "[1, 2]"
