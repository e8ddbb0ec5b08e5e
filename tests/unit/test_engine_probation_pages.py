"""A regression's page on probation: sent once, resolved with the same key once the agent
no longer carries what regressed (the revert applied, a person's change or restore)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from agentmedic.api.types import NotificationChannel
from agentmedic.api.validation import check_spec
from agentmedic.engine import PolicyState
from tests.unit.test_engine_builders import SICK, Sim, cond, fleet, policy, rule
from tests.unit.test_engine_probation import (
    GOOD,
    WORSE,
    _prompt_on_probation,
    _rule_spec,
    _run_until_verdict,
    _with_verify,
)


def _page(o: Any, state: str) -> list[Any]:
    return [n for n in o.notifications if n.episode.endswith(":probation") and n.state == state]


def _regressed(sim: Sim, **per_agent: Any) -> Any:
    sim.step(GOOD, a0=SICK, **per_agent)
    o = _run_until_verdict(sim, WORSE, a0=SICK)
    assert o.probation[0].verdict == "Regressed"
    (firing,) = _page(o, "firing")
    return firing


def test_a_reverted_regression_resolves_its_page_once_the_revert_shows() -> None:
    sim = Sim(_rule_spec(), fleet(2))
    firing = _regressed(sim)
    assert sim.workload("a0").model == "gpt-4o"  # reverted with the verdict (applied)
    assert sim.workload("a0").probation is not None
    o = sim.step(WORSE, a0=SICK)
    (resolved,) = _page(o, "resolved")
    assert resolved.episode == firing.episode  # PagerDuty pairs them by dedup_key
    assert resolved.channels == firing.channels
    assert "the revert is applied: the agent runs gpt-4o again" in resolved.summary
    assert "quality_score 90% → 60% (at least 85%)" in resolved.summary
    # Resolved once: never again, however long the agent runs.
    assert not any(_page(x, "resolved") or _page(x, "firing") for x in sim.steps(20, WORSE))


def test_a_revert_not_yet_on_the_workload_keeps_the_page_open() -> None:
    sim = Sim(_rule_spec(), fleet(2))
    sim.step(GOOD, a0=SICK)
    sim.apply = False  # from here the actions fail: the revert never shows
    o = _run_until_verdict(sim, WORSE, a0=SICK)
    (firing,) = _page(o, "firing")
    for x in sim.steps(6, WORSE, a0=SICK):
        assert not _page(x, "resolved")
        assert not _page(x, "firing")  # not said again: the numbers went out once
    sim.apply = True
    resolved = [n for x in sim.steps(6, WORSE, a0=SICK) for n in _page(x, "resolved")]
    assert [n.episode for n in resolved] == [firing.episode]
    assert "the revert is applied" in resolved[0].summary


def test_a_notified_regression_stays_open_until_a_person_changes_the_model() -> None:
    sim = Sim(_rule_spec(onRegression="notify"), fleet(2))
    firing = _regressed(sim)
    for x in sim.steps(10, WORSE, a0=SICK):
        assert not _page(x, "resolved")
    assert sim.state is not None
    # A restart in between: the page owed a resolve is in the stored state.
    sim.state = PolicyState.from_dict(json.loads(json.dumps(sim.state.to_dict())))
    sim.set_workload("a0", dataclasses.replace(sim.workload("a0"), model="gpt-4o"))
    (resolved,) = _page(sim.step(WORSE, a0=SICK), "resolved")
    assert resolved.episode == firing.episode
    assert "the agent runs gpt-4o now, not gpt-4o-mini" in resolved.summary
    assert "quality_score 90% → 60%" in resolved.summary


def test_a_notified_regression_resolves_when_a_person_restores_the_agent() -> None:
    sim = Sim(_rule_spec(onRegression="notify"), fleet(2))
    firing = _regressed(sim)
    w = sim.workload("a0")
    sim.set_workload("a0", dataclasses.replace(w, model="gpt-4o", downgraded=None, probation=None))
    (resolved,) = _page(sim.step(GOOD), "resolved")
    assert resolved.episode == firing.episode
    assert "no longer on the agent" in resolved.summary


def test_a_regression_that_stopped_the_agent_resolves_when_a_person_restores_it() -> None:
    spec = _rule_spec(onRegression="scaleToZero")
    spec = spec.model_copy(
        update={"guardrails": spec.guardrails.model_copy(update={"max_disabled_percent": 100})}
    )
    sim = Sim(spec, fleet(2))
    firing = _regressed(sim)
    assert sim.workload("a0").replicas == 0
    for x in sim.steps(10, WORSE, a0=SICK):
        assert not _page(x, "resolved")
    w = sim.workload("a0")
    # The person's restore brings the replicas back; the model may stay as it was.
    sim.set_workload("a0", dataclasses.replace(w, replicas=2, disabled=None))
    (resolved,) = _page(sim.step(GOOD), "resolved")
    assert resolved.episode == firing.episode
    assert "restored by a person" in resolved.summary


def test_a_revert_marked_on_the_record_but_not_yet_applied_keeps_the_page_open() -> None:
    # The revert writes revertedAt before it acts: the model still being the new one means
    # the revert is not done, whatever the record says.
    sim = Sim(_rule_spec(), fleet(2))
    sim.step(GOOD, a0=SICK)
    switched = sim.workload("a0")
    o = _run_until_verdict(sim, WORSE, a0=SICK)
    (firing,) = _page(o, "firing")
    record = sim.workload("a0").probation
    assert record is not None
    assert record.reverted_at is not None
    sim.set_workload("a0", dataclasses.replace(switched, probation=record))  # restore failed
    sim.apply = False  # and every later attempt fails too
    for x in sim.steps(6, WORSE, a0=SICK):
        assert not _page(x, "resolved")
    sim.set_workload("a0", dataclasses.replace(switched, model="gpt-4o", probation=record))
    (resolved,) = _page(sim.step(WORSE, a0=SICK), "resolved")
    assert resolved.episode == firing.episode


def test_a_reverted_prompt_resolves_its_page_once_the_text_is_back() -> None:
    spec = _with_verify(policy(rule("r", cond(), actions=["promptOptimization"])))
    sim = Sim(spec, fleet(1))
    _prompt_on_probation(sim, "a0")
    o = _run_until_verdict(sim, WORSE)
    (firing,) = _page(o, "firing")
    assert sim.workload("a0").prompt_version is None  # the revert applied
    (resolved,) = _page(sim.step(WORSE), "resolved")
    assert resolved.episode == firing.episode
    assert "the revert is applied: the agent runs the prompt of system.before-v1" in (
        resolved.summary
    )


def test_a_notified_prompt_regression_stays_open_until_a_person_restores_it() -> None:
    spec = _with_verify(
        policy(rule("r", cond(), actions=["promptOptimization"])), onRegression="notify"
    )
    sim = Sim(spec, fleet(1))
    _prompt_on_probation(sim, "a0")
    (firing,) = _page(_run_until_verdict(sim, WORSE), "firing")
    assert not any(_page(x, "resolved") for x in sim.steps(10, WORSE))
    # agentmedic restore puts the kept text back and removes the rollout record.
    sim.set_workload("a0", dataclasses.replace(sim.workload("a0"), prompt_version=None))
    (resolved,) = _page(sim.step(WORSE), "resolved")
    assert resolved.episode == firing.episode
    assert "the prompt system.v1 is no longer live (restored)" in resolved.summary


def test_an_alertmanager_channel_gets_the_open_regression_page_reposted_the_others_not() -> None:
    both = ("oncall", "finance")
    r = rule("r", cond(), actions=["switchModel"], recoverFor="0s", notify=both)
    spec = _with_verify(policy(r), onRegression="notify")
    am = NotificationChannel.model_validate(
        {"name": "oncall", "alertmanager": {"url": "http://am:9093", "repostInterval": "2m"}}
    )
    others = [c for c in spec.notifications.channels if c.name != "oncall"]
    spec = spec.model_copy(
        update={"notifications": spec.notifications.model_copy(update={"channels": [am, *others]})}
    )
    assert not check_spec(spec)
    sim = Sim(spec, fleet(2))
    firing = _regressed(sim)
    assert firing.channels == ("oncall", "finance")
    reposts = [n for x in sim.steps(8, WORSE, a0=SICK) for n in _page(x, "firing")]
    assert len(reposts) == 2  # every 2 minutes, Alertmanager only: it forgets an alert
    assert {n.channels for n in reposts} == {("oncall",)}
    assert all(n.episode == firing.episode for n in reposts)
    assert "still open" in reposts[0].summary
    assert "quality_score 90% → 60%" in reposts[0].summary
    sim.set_workload("a0", dataclasses.replace(sim.workload("a0"), model="gpt-4o"))
    (resolved,) = _page(sim.step(WORSE, a0=SICK), "resolved")
    assert resolved.channels == ("oncall", "finance")  # every channel that was paged
