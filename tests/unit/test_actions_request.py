"""The actions' boundary: an engine decision becomes an ActionRequest, a result becomes
the status line the policy shows, and the executor dispatches each request by its kind."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from agentmedic.actions import (
    ActionExecutor,
    ActionKind,
    ActionRecord,
    ActionRequest,
    ActionResult,
    ExecutionOutcome,
    PolicyRef,
    WorkloadRef,
    recent_action,
    unexecuted_recent_action,
)
from agentmedic.api.types import ActionOutcome, PromptOptimizationAction, Severity
from agentmedic.engine import Decision, DecisionKind, DecisionReason, Evidence
from agentmedic.engine.outcome import Restore
from tests.unit.test_engine_builders import T0, agent, policy

POLICY = PolicyRef("agents", "p", "uid-1")
REF = WorkloadRef("Deployment", "agents", "bot")


def _decision(kind: DecisionKind, **kw: Any) -> Decision:
    return Decision(
        kind=kind,
        agent=agent("bot"),
        workload="Deployment/bot",
        rule=kw.pop("rule", "quality"),
        severity=Severity.HIGH,
        episode="ep-1",
        reason_code=DecisionReason.RULE_FIRING,
        reason="error rate too high",
        evidence=Evidence("all", (), T0, timedelta(0), T0),
        at=T0,
        **kw,
    )


def test_a_decision_becomes_a_request_carrying_its_record() -> None:
    spec = policy({"name": "quality", "all": [{"metric": "error_rate", "op": ">", "value": 1}]})
    request = ActionRequest.from_decision(
        _decision(DecisionKind.SWITCH_MODEL, to_model="gpt-4o-mini"), POLICY, REF, spec
    )
    assert request.kind is ActionKind.SWITCH_MODEL
    assert request.to_model == "gpt-4o-mini"
    assert request.model_spec == spec.model
    assert request.agent == str(agent("bot"))
    record = request.record
    assert (record.policy, record.rule, record.episode, record.at) == (
        POLICY,
        "quality",
        "ep-1",
        T0,
    )
    assert not request.dry_run


def test_a_partial_restore_steps_the_model_back_and_a_budget_restore_says_why() -> None:
    spec = policy()
    step = ActionRequest.from_decision(
        _decision(DecisionKind.RESTORE, restore=Restore(model="gpt-4o-mini")), POLICY, REF, spec
    )
    assert step.step_back_to == "gpt-4o-mini"
    full = ActionRequest.from_decision(
        _decision(
            DecisionKind.RESTORE,
            rule="budget.hard",
            restore=Restore(replicas=True, model="gpt-4o", complete=True),
        ),
        POLICY,
        REF,
        spec,
    )
    assert full.step_back_to is None
    assert (full.restore_replicas, full.restore_model) == (True, True)
    assert full.restored_by == "budget period ended"


def test_a_prompt_job_request_hands_the_evidence_to_the_job() -> None:
    action = PromptOptimizationAction.model_validate({"fromCronJob": "opt"})
    request = ActionRequest.from_decision(
        _decision(DecisionKind.PROMPT_OPTIMIZATION, prompt_optimization=action),
        POLICY,
        REF,
        policy(),
    )
    assert request.prompt_optimization == action
    assert request.job_evidence["rule"] == "quality"
    assert request.job_evidence["conditions"] == []


def test_an_incomplete_request_is_refused_at_construction() -> None:
    record = ActionRecord(POLICY, "r", "e", "why")
    with pytest.raises(ValueError, match=r"needs the policy's spec\.model"):
        ActionRequest(ActionKind.SWITCH_MODEL, REF, record, "agents/bot")
    with pytest.raises(ValueError, match="needs its action"):
        ActionRequest(ActionKind.PROMPT_OPTIMIZATION, REF, record, "agents/bot")


@pytest.mark.parametrize(
    ("kind", "outcome", "dry_run", "shown"),
    [
        (ActionKind.SCALE_TO_ZERO, ExecutionOutcome.APPLIED, False, ActionOutcome.APPLIED),
        (ActionKind.SCALE_TO_ZERO, ExecutionOutcome.UNCHANGED, False, ActionOutcome.APPLIED),
        (ActionKind.RESTORE, ExecutionOutcome.APPLIED, False, ActionOutcome.RESTORED),
        (ActionKind.SCALE_TO_ZERO, ExecutionOutcome.DRY_RUN, True, ActionOutcome.DRY_RUN),
        (ActionKind.SCALE_TO_ZERO, ExecutionOutcome.REFUSED, False, ActionOutcome.SUPPRESSED),
        (ActionKind.SCALE_TO_ZERO, ExecutionOutcome.NOT_FOUND, False, ActionOutcome.FAILED),
        (ActionKind.SCALE_TO_ZERO, ExecutionOutcome.FAILED, False, ActionOutcome.FAILED),
    ],
)
def test_a_result_becomes_the_status_line_with_the_status_outcome(
    kind: ActionKind, outcome: ExecutionOutcome, dry_run: bool, shown: ActionOutcome
) -> None:
    record = ActionRecord(POLICY, "quality", "ep-1", "too many errors", at=T0, dry_run=dry_run)
    request = ActionRequest(kind, REF, record, "agents/bot")
    line = recent_action(request, ActionResult(kind, REF, outcome, "x" * 600))
    assert line.outcome is shown
    assert (line.agent, line.rule, line.action, line.episode) == (
        "agents/bot",
        "quality",
        str(kind),
        "ep-1",
    )
    assert line.reason == "x" * 500
    silent = recent_action(request, ActionResult(kind, REF, outcome, ""))
    assert silent.reason == "too many errors"


def test_an_unexecuted_decision_keeps_its_outcome_unless_it_was_a_dry_run() -> None:
    suppressed = unexecuted_recent_action(
        _decision(DecisionKind.SCALE_TO_ZERO), ActionOutcome.SUPPRESSED, "cooldown"
    )
    assert (suppressed.outcome, suppressed.reason) == (ActionOutcome.SUPPRESSED, "cooldown")
    dry = unexecuted_recent_action(
        _decision(DecisionKind.SCALE_TO_ZERO, dry_run=True), ActionOutcome.APPLIED, "r"
    )
    assert dry.outcome is ActionOutcome.DRY_RUN


def test_the_executor_dispatches_each_kind_to_its_action(monkeypatch: pytest.MonkeyPatch) -> None:
    import agentmedic.actions.executor as executor_module

    calls: list[str] = []

    def fake(name: str) -> Any:
        def run(*args: Any, **kwargs: Any) -> ActionResult:
            calls.append(name)
            return ActionResult(ActionKind.RESTORE, REF, ExecutionOutcome.UNCHANGED, name)

        return run

    monkeypatch.setattr(executor_module.scale, "scale_to_zero", fake("scale"))
    monkeypatch.setattr(executor_module.model_action, "switch_model", fake("switch"))
    monkeypatch.setattr(executor_module.prompt_job, "start_prompt_job", fake("job"))
    monkeypatch.setattr(executor_module.restore_action, "restore", fake("restore"))
    spec = policy()
    executor = ActionExecutor(kube=None)  # type: ignore[arg-type]  # no action reaches it
    action = PromptOptimizationAction.model_validate({"fromCronJob": "opt"})
    for decision in (
        _decision(DecisionKind.SCALE_TO_ZERO),
        _decision(DecisionKind.SWITCH_MODEL, to_model="gpt-4o-mini"),
        _decision(DecisionKind.PROMPT_OPTIMIZATION, prompt_optimization=action),
        _decision(DecisionKind.RESTORE, restore=Restore(model="gpt-4o-mini")),
        _decision(DecisionKind.RESTORE, restore=Restore(replicas=True)),
    ):
        executor.execute(ActionRequest.from_decision(decision, POLICY, REF, spec))
    assert calls == ["scale", "switch", "job", "switch", "restore"]
