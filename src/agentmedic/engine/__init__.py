"""The decision engine: pure decisions about a policy's agents, with time as a parameter.

No I/O, no clock, no asyncio: the operator gathers, the engine decides, the actions
layer acts. Typical cycle::

    keys = requirements(spec, now)                     # what to fetch
    samples = await backend.fetch(keys, agents)        # metrics layer
    result = evaluate(policy_input, samples, state, now)
    for d in result.workload_changes: actions.apply(d)
    notify(result.notifications)
    store(result.state)    # only what changed: state.changed_agents(prior), policy_changed

Public API
----------
``requirements(spec, now) -> set[SeriesKey]``
    Every series the policy needs this cycle: each condition's (metric|query, window,
    agent label); ``executions`` over the window of each condition with minSamples; with
    a budget, ``cost_usd`` over the elapsed period (rounded up to whole seconds) and over
    budget.forecastWindow.
``requirements_over(spec, times) -> GridNeeds``
    :func:`requirements` at every moment of a time grid (a backtest's) in one answer:
    the keys that never change, and a calendar budget's spend key per moment.
``evaluate(policy: PolicyInput, samples: Samples, prior: PolicyState | None, now) -> CycleResult``
    One cycle. :class:`CycleResult` holds the new state, the decisions (ranked strongest
    first; ``applies`` says which to carry out), the notifications (firing when an
    episode starts, resolved when it ends), each agent's :class:`AgentStatus`, the
    counts for status and the spend. It runs the stages of :mod:`agentmedic.engine.stages`
    in order over one context (:class:`~agentmedic.engine.context.Cycle`);
    ``evaluate_planned(plan, ...)`` does the same with the spec compiled once by the
    caller (:func:`compile_plan`), as ``replay`` does.
``replay(policy, timeline, initial_state=None, apply=True) -> list[TimelineEntry]``
    ``evaluate`` over timestamped samples, feeding state (and, with ``apply``, the
    effect of the decisions via :func:`apply_decisions`) into the next step.
``strongest_per_agent(decisions) -> list[Decision]``
    Across several policies selecting the same agent, the one change to apply per agent.

State
-----
:class:`PolicyState` is immutable and JSON-compatible (``to_dict``/``from_dict``). Its
per-agent part (:class:`AgentState`) belongs in an annotation on the agent's workload,
the rest with the policy (``policy_to_dict``; reassemble with ``from_parts``).
Unchanged agents keep the very same object across cycles, so ``changed_agents(prior)``
and ``policy_changed(prior)`` tell the operator, cheaply, what to write (nothing in a
steady state).

How the engine learns what was applied
--------------------------------------
By observation, not by being told: each cycle the operator describes every agent's
:class:`AgentInput` (replicas, model, and the record the actions layer wrote in its
``agentmedic.io/*`` annotations). A scale-to-zero or model switch is remembered as a
:class:`~agentmedic.engine.state.Mark` until the record shows it (confirmed); a change
not observed after two intervals is decided again with the same episode key, which the
actions layer turns into a no-op if it did land. A confirmed change whose record
disappears was restored, by a person or by the engine's own restore decision. So the
same inputs after an action was applied yield no new decision, and a crash between
deciding and applying is repaired on the next cycle. A decision the operator chose not
to apply (another policy's change won, see ``strongest_per_agent``) is simply not
observed and comes back after two intervals if it is still warranted. Evaluating the same
cycle twice (same ``now``) decides nothing new: each agent gets at most one change per
``now`` (``AgentState.changed_at``).

Behaviour in short
------------------
- Conditions are BREACH, CLEAR or UNKNOWN (no data, or fewer executions than
  minSamples); ``all``/``any`` use three-valued logic; UNKNOWN never fires and never
  resolves a rule. While firing, conditions compare with recoverValue (hysteresis) and
  a rule resolves only after recoverFor of clear evaluations.
- A rule is idle → pending (breaching, not yet for ``for``) → firing (an episode, keyed
  by policy uid, agent, rule and breach start) → idle. Each firing episode owes each of
  its workload actions once (a scale to zero makes the weaker ones moot); notify actions
  send a firing message when it starts and a resolved one when it ends. Re-notifying a
  long episode is the notify layer's job (per-channel renotifyAfter).
- noData: keep holds every rule; breach counts missing conditions as breaching once data
  has been missing for noData.after; notify (and any mode with noData.channels) sends a
  message after noData.after. Fleet-wide missing data is one message.
- Disabled agents (scaled to zero by any policy) are frozen: they have no executions,
  so their rules are held as they were, they do not count as missing data, and their
  episodes neither resolve nor count against them. A workload at zero replicas without
  a record (scaled down by a person, or idled by KEDA) is held the same way and shows as
  no_data. A person's restore ends nothing: the episode goes on, acted, until it clears.
- Unknown metrics: an agent the operator marks ``AgentInput.metrics_unknown`` (the answer
  was good but its value was NaN, e.g. a ratio over an empty window) is held the same way
  for the cycle: not judged, no noData stance, no change of any kind (restores
  included), its rules kept as they were; it shows as no_data.
  The engine's own restore (auto recovery) ends the episode, so a relapse is new.
- Strength: scaleToZero > switchModel > promptOptimization > notify. At most one
  workload change per agent per cycle; candidates go strongest, most severe and worst
  (furthest past the thresholds) first, across all rules and budget stages.
- Guardrails (a chain of named checks, :mod:`agentmedic.engine.guardrails`): systemic
  outage, quiet hours, cooldown per agent and rule, maxDisabledPercent (counting every
  disabled agent of the policy, dry-run ones included), maxActionsPerHour (restores are
  not counted). A suppressed change is reported once per episode and reason, and tried
  again while the episode lasts and the evidence still holds.
- Systemic: when at least systemicPercent of at least systemicMinAgents non-disabled
  agents breach the same rule in a cycle, one fleet message (severity at least high)
  goes to the rule's notify channels; every breach in it is flagged and acts on nobody,
  and no per-agent message is sent for it. When the outage ends the fleet message
  resolves, and the flagged breaches start over and need a fresh ``for``.
- Model tiers: switchModel steps one tier cheaper (or to ``to``); on the cheapest tier
  or with an unknown current model there is no change and the notification escalates.
- Budgets: calendar UTC day/week (Monday)/month or a rolling duration; scope agent or
  policy; soft at atPercent (or on forecast, with the crossing time), hard at the
  limit; budget changes are restored when the period (or the rolling overspend) ends,
  unless onNewPeriod is keep. Budget stages apply the same guardrails as rules.
- Finance's budgets (AgentBudget, ClusterAgentBudget): ``finance.evaluate_budget`` gives
  each agent a verdict (calendar periods in a time zone); the operator passes them in
  ``AgentInput.budgets``. A stage asking for a downgrade or a stop
  acts like a budget stage of the policy; with the policy's own budget, only the strictest
  source acts and the reason names it.
- Recovery: manual leaves disabled and downgraded agents to people; auto restores a
  disabled agent after healthyFor down, and at least the longest rule window so it is
  never judged on data from before it went down (a probe: a relapse is a new episode),
  and steps a downgraded agent one tier back up after each healthyFor of health (not
  while a budget stage holds it down). Only this policy's changes are restored.
- Probation (spec.verify): a switchModel carries the agent's signals over
  baselineWindow (success and error rate, p95 latency, tokens per execution, quality
  score, executions) into the record the actions layer writes; once verify.window has
  passed the same signals over the window are compared with the tolerances, once per
  change: Verified, Inconclusive (fewer than minExecutions on either side: nothing
  undone; too few after the change is judged again after another window, up to
  maxWindows), or Regressed → onRegression (revert through a restore decision whose
  evidence re-derives the regression, the tier rejected for the agent for rejectFor;
  notify; or scaleToZero within quiet hours and maxDisabledPercent). A regression's page
  resolves once the agent no longer carries the regressed change
  (:mod:`agentmedic.engine.stages.probation_pages`); a prompt-optimization Job not rolled
  out is told once on the rule's channels
  (:mod:`agentmedic.engine.stages.prompt_job_pages`).
- Dry run: decisions are marked ``dry_run`` and change nothing; guardrails, cooldown
  and the blast-radius cap still apply as if they had, so the record is realistic.
- Quiet hours: every workload change (restores included) waits; notifications go out.
- Reverts (:mod:`agentmedic.engine.stages.reverts`): a confirmed change whose record is on
  the workload while the live value is the one from before (replicas back above 0, the
  recorded previous model) was put back by someone else. onRevert tell: one message to the
  rule's channels naming ``AgentInput.managed_by``, not applied again; reapply: decided
  again (``Decision.reapply``) after 1, 2, 4 intervals, 3 times at most, then told.
- Silences (:mod:`agentmedic.engine.silences`, ``PolicyInput.silences``): while an
  AgentSilence covers an agent and rule (or the whole policy), no workload change (restores
  included) and no page for it; the held change (for a notify-only rule, the held page, a
  ``notify`` decision) is recorded once per episode as suppressed (Silenced) with the
  silence's author, reason and end; rule state tracks, and a rule still firing when the
  silence ends acts on the next cycle.
- Across policies: :attr:`Decision.precedence` ranks changes; the operator applies the
  strongest per agent (:func:`strongest_per_agent`).

Names
-----
Engine types are named apart from the other layers' (``actions``, ``notify``, ``api``):
``CycleResult``, ``DecisionReason``, ``AgentInput``, ``DisabledAgent``, ``DowngradedAgent``.
"""

from agentmedic.engine.conditions import ConditionEvidence, Evidence
from agentmedic.engine.evaluate import NO_DATA_RULE, evaluate, evaluate_planned
from agentmedic.engine.inputs import (
    AgentInput,
    DisabledAgent,
    DowngradedAgent,
    PolicyInput,
    episode_key,
)
from agentmedic.engine.outcome import (
    AgentStatus,
    CycleResult,
    Decision,
    DecisionKind,
    Notification,
    Restore,
    SpendReport,
    strongest_per_agent,
)
from agentmedic.engine.plan import CyclePlan, compile_plan
from agentmedic.engine.reasons import DecisionReason
from agentmedic.engine.replay import TimelineEntry, apply_decisions, replay
from agentmedic.engine.requirements import GridNeeds, requirements, requirements_over
from agentmedic.engine.series import AgentId, Samples, SeriesKey
from agentmedic.engine.silences import Silence
from agentmedic.engine.state import AgentState, Mark, PolicyState, RuleState

__all__ = [
    "NO_DATA_RULE",
    "AgentId",
    "AgentInput",
    "AgentState",
    "AgentStatus",
    "ConditionEvidence",
    "CyclePlan",
    "CycleResult",
    "Decision",
    "DecisionKind",
    "DecisionReason",
    "DisabledAgent",
    "DowngradedAgent",
    "Evidence",
    "GridNeeds",
    "Mark",
    "Notification",
    "PolicyInput",
    "PolicyState",
    "Restore",
    "RuleState",
    "Samples",
    "SeriesKey",
    "Silence",
    "SpendReport",
    "TimelineEntry",
    "apply_decisions",
    "compile_plan",
    "episode_key",
    "evaluate",
    "evaluate_planned",
    "replay",
    "requirements",
    "requirements_over",
    "strongest_per_agent",
]
