"""A change of agentmedic's put back by someone else (a GitOps sync): told once, or applied
again with backoff (spec.guardrails.onRevert); detected from the record vs the live value."""

from __future__ import annotations

from dataclasses import replace

from agentmedic.engine import AgentInput, DecisionReason
from agentmedic.engine.state import Mark
from tests.unit.test_engine_builders import SICK, Sim, agent, fleet, kinds, policy, rule


def revert(sim: Sim, name: str, **live: object) -> None:
    """Someone else puts the live value back; agentmedic's record stays on the workload."""
    agents = dict(sim.input.agents)
    agents[agent(name)] = replace(agents[agent(name)], **live)  # type: ignore[arg-type]
    sim.input = replace(sim.input, agents=agents)


def managed(agents: dict, name: str) -> dict:  # type: ignore[type-arg]
    agents[agent(name)] = replace(agents[agent(name)], managed_by="Argo CD Application bots")
    return agents


def disabled_mark(sim: Sim, name: str) -> Mark:
    assert sim.state is not None
    m = sim.state.agents[agent(name)].disabled
    assert m is not None
    return m


def test_a_reverted_scale_to_zero_is_told_once_naming_the_manager_and_not_reapplied() -> None:
    sim = Sim(policy(rule("r", actions=["scaleToZero"])), managed(fleet(4), "a1"))
    (acted,) = sim.step(a1=SICK).notifications
    assert "managed by Argo CD Application bots: its sync may put it back" in (acted.action or "")
    sim.step(a1=SICK)  # the record is confirmed
    assert sim.workload("a1").replicas == 0
    revert(sim, "a1", replicas=2)
    told = sim.step(a1=SICK)
    assert not told.workload_changes, "tell: not applied again"
    (note,) = told.notifications
    assert note.reason_code == DecisionReason.REVERTED
    assert "likely by Argo CD Application bots" in note.summary
    assert "replicas are 2 again (agentmedic set 0)" in note.summary
    assert note.undo == "agentmedic restore deployment/a1 -n agents"
    assert told.reverts[agent("a1")].new
    for o in sim.steps(5, a1=SICK):
        assert not o.workload_changes
        assert not o.notifications, "said once"
        assert not o.reverts[agent("a1")].new
    assert disabled_mark(sim, "a1").reverts == 1


def test_a_change_that_holds_is_no_revert_and_an_unmanaged_one_says_someone_else() -> None:
    sim = Sim(policy(rule("r", actions=["scaleToZero"])), fleet(4))
    sim.step(a1=SICK)
    for o in sim.steps(3, a1=SICK):
        assert not o.reverts
    revert(sim, "a1", replicas=1)
    (note,) = sim.step(a1=SICK).notifications
    assert "by someone else (no GitOps marks on it)" in note.summary


def test_a_reverted_model_switch_is_detected_from_the_recorded_previous_model() -> None:
    spec = policy(rule("r", actions=["switchModel"]))
    sim = Sim(spec, fleet(4))
    sim.step(a1=SICK)
    sim.step(a1=SICK)
    assert sim.workload("a1").model == "gpt-4o-mini"
    revert(sim, "a1", model="gpt-4o")
    o = sim.step(a1=SICK)
    assert o.reverts[agent("a1")].kind == "switchModel"
    assert "the model is gpt-4o again (agentmedic set gpt-4o-mini)" in o.notifications[0].summary


def test_an_agentmedic_restore_is_not_a_revert() -> None:
    sim = Sim(policy(rule("r", actions=["scaleToZero"])), fleet(4))
    sim.step(a1=SICK)
    sim.step()
    # A person's restore: replicas back and the record gone, in one write.
    revert(sim, "a1", replicas=2, disabled=None)
    assert not sim.step().reverts


def test_reapply_applies_again_after_1_2_4_intervals_then_tells() -> None:
    spec = policy(rule("r", actions=["scaleToZero"]), guardrails={"onRevert": "reapply"})
    sim = Sim(spec, fleet(4))
    sim.step(a1=SICK)
    sim.step(a1=SICK)
    waits = []
    for _ in range(3):
        revert(sim, "a1", replicas=2)
        seen = sim.step(a1=SICK)
        assert not seen.notifications, "reapply: not told while it retries"
        cycles = 0
        while (not kinds(sim.history[-1]) or cycles == 0) and cycles < 20:
            cycles += 1
            sim.step(a1=SICK)
        waits.append(cycles)
        (again,) = sim.history[-1].workload_changes
        assert (again.kind.value, again.reason_code) == ("scaleToZero", DecisionReason.REVERTED)
        assert again.reapply
        assert sim.workload("a1").replicas == 0
    assert waits == [1, 2, 4]
    revert(sim, "a1", replicas=2)
    told = sim.step(a1=SICK)
    assert "after 3 re-applies" in told.notifications[0].summary
    assert not [o for o in sim.steps(10, a1=SICK) if o.workload_changes]


def test_state_round_trips_the_revert_memory() -> None:
    sim = Sim(policy(rule("r", actions=["scaleToZero"])), fleet(4))
    sim.step(a1=SICK)
    sim.step(a1=SICK)
    revert(sim, "a1", replicas=2)
    sim.step(a1=SICK)
    assert sim.state is not None
    again = type(sim.state).from_dict(sim.state.to_dict())
    m = again.agents[agent("a1")].disabled
    assert m is not None
    assert (m.reverts, m.reverted_at) == (1, disabled_mark(sim, "a1").reverted_at)


def test_a_revert_during_a_silence_is_told_when_the_silence_ends() -> None:
    from datetime import timedelta

    from agentmedic.engine import Silence
    from tests.unit.test_engine_builders import NS, T0

    sim = Sim(policy(rule("r", actions=["scaleToZero"])), fleet(4))
    sim.step(a1=SICK)
    sim.step(a1=SICK)
    quiet = Silence("s", NS, T0 + timedelta(minutes=2), "INC-9", "bob", agent="a1")
    sim.input = replace(sim.input, silences=(quiet,))
    revert(sim, "a1", replicas=2)
    held = sim.steps(2, a1=SICK)
    assert not [n for o in held for n in o.notifications]
    assert held[-1].reverts[agent("a1")].what.startswith("replicas are 2 again")
    told = [n for o in sim.steps(4, a1=SICK) for n in o.notifications]
    assert [n.reason_code for n in told] == [DecisionReason.REVERTED]


def test_agent_input_carries_the_manager() -> None:
    assert AgentInput(managed_by="Flux Kustomization flux-system/apps").managed_by


def test_a_switch_reverted_before_it_was_seen_to_land_keeps_its_target() -> None:
    spec = policy(rule("r", actions=["switchModel"]), guardrails={"onRevert": "reapply"})
    sim = Sim(spec, fleet(4))
    sim.step(a1=SICK)
    revert(sim, "a1", model="gpt-4o")  # before the next cycle confirms the switch
    seen = sim.step(a1=SICK)
    assert "agentmedic set gpt-4o-mini" in seen.reverts[agent("a1")].what
    (again,) = sim.step(a1=SICK).workload_changes
    assert (again.to_model, again.reapply) == ("gpt-4o-mini", True)
