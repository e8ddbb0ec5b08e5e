"""The stages of one cycle, in the order :func:`~agentmedic.engine.evaluate.evaluate` runs them.

Each stage is a module of short functions over the cycle's one context object
(:class:`~agentmedic.engine.context.Cycle`):

1. :mod:`.reconcile`: what the workloads show against what the engine decided (per agent);
2. :mod:`.rules`: each agent's verdict per rule, its state machine and the noData stance;
3. :mod:`.budgets`: spend, forecast and the soft/hard stages;
4. :mod:`.systemic`: rules breached by enough of the fleet become one fleet episode;
5. :mod:`.remediation`: the changes firing episodes owe, through the guardrail chain
   (:mod:`agentmedic.engine.guardrails`);
6. :mod:`.recovery`: auto recovery and the end of a budget episode;
7. :mod:`.status`: each agent's status and the counts;
8. :mod:`.notices`: firing and resolved notifications;
9. :mod:`.memory`: the state to remember.
"""
