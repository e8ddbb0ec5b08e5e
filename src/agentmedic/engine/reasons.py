"""Reasons: CamelCase constants for every verdict, suppression, restore and resolution.

They reach status (``RecentAction.reason``), Events and notifications, so a person can
grep for them and a test can assert on them instead of on prose.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DecisionReason"]


class DecisionReason(StrEnum):
    """Why the engine did (or did not do) something."""

    # Verdicts of a condition or rule.
    BREACHING = "Breaching"
    """The comparison holds on the observed value."""
    HEALTHY = "Healthy"
    """The comparison does not hold."""
    INSUFFICIENT_SAMPLES = "InsufficientSamples"
    """Fewer executions in the window than the condition's minSamples: not health, not sickness."""
    NO_DATA = "NoData"
    """The series has no value for the agent."""
    NO_DATA_BREACH = "NoDataBreach"
    """Data has been missing longer than noData.after and noData.mode is breach."""

    # Why a workload change was decided.
    RULE_FIRING = "RuleFiring"
    """A rule's conditions held for its `for` duration."""
    BUDGET_SOFT_LIMIT = "BudgetSoftLimit"
    """Spend (or its forecast) reached the soft limit."""
    BUDGET_HARD_LIMIT = "BudgetHardLimit"
    """Spend reached limitUSD."""
    BUDGET_STAGE = "BudgetStage"
    """A stage of an AgentBudget or ClusterAgentBudget was reached (the reason names it)."""
    NOT_YET_APPLIED = "NotYetApplied"
    """A change decided earlier was not observed on the workload; it is decided again with the
    same episode key (the actions layer makes the repeat a no-op if it did land)."""

    # Why a workload change was not made (Decision.suppressed_by).
    SILENCED = "Silenced"
    """An AgentSilence covers the agent and rule: no change, no page, until it ends."""
    DRY_RUN = "DryRun"
    """spec.guardrails.dryRun: the decision is recorded, nothing is changed."""
    QUIET_HOURS = "QuietHours"
    """Inside a quiet-hours window: only notifications; the change waits."""
    COOLDOWN = "Cooldown"
    """The same agent and rule acted less than guardrails.cooldown ago."""
    RATE_LIMITED = "RateLimited"
    """The policy made guardrails.maxActionsPerHour changes in the last hour."""
    MAX_DISABLED = "MaxDisabled"
    """Disabling the agent would exceed guardrails.maxDisabledPercent; worse agents went first."""
    SYSTEMIC_OUTAGE = "SystemicOutage"
    """Most of the fleet breaches the same rule: a shared dependency is down; page, don't act."""
    UNKNOWN_MODEL = "UnknownModel"
    """The agent's current model is unknown or not one of spec.model.tiers: no switch."""
    ALREADY_CHEAPEST = "AlreadyCheapest"
    """The agent already runs the cheapest tier (or the requested one): no switch; escalate."""
    NO_MODEL_TIERS = "NoModelTiers"
    """switchModel without spec.model: nothing to switch between."""
    TIER_REJECTED = "TierRejected"
    """The tier switchModel would move to regressed on probation for this agent and is held
    back for verify.rejectFor: no switch; a person decides."""

    REVERTED = "Reverted"
    """Someone else (e.g. a GitOps sync) put back the value agentmedic changed; the record
    still says agentmedic's change (spec.guardrails.onRevert)."""

    # Why a workload was restored.
    AUTO_RECOVERY = "AutoRecovery"
    """recovery.mode auto: healthy (or down) for recovery.healthyFor."""
    BUDGET_PERIOD_ENDED = "BudgetPeriodEnded"
    """A new budget period began and budget.onNewPeriod is restore."""
    PROBATION_REGRESSED = "ProbationRegressed"
    """A change on probation (spec.verify) made the agent worse than its baseline beyond a
    tolerance; verify.onRegression is revert (or scaleToZero)."""

    PROMPT_JOB_NOT_ROLLED_OUT = "PromptJobNotRolledOut"
    """A prompt-optimization Job failed, timed out, was rejected or left no result to
    trust: the prompt is unchanged; told once on the rule's channels."""

    # Why a notification episode ended.
    RESOLVED = "Resolved"
    """The rule's conditions stayed clear for recoverFor."""
    RESTORED = "Restored"
    """The agent was restored; the episode that disabled it is over."""
    AGENT_GONE = "AgentGone"
    """The agent is no longer selected by the policy."""
    DATA_RETURNED = "DataReturned"
    """Metrics for the agent are back."""
    OUTAGE_OVER = "OutageOver"
    """Fewer agents than systemicPercent breach the rule now."""
    PERIOD_ENDED = "PeriodEnded"
    """The budget period (or the rolling overspend) ended."""
