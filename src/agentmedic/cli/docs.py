"""``agentmedic docs reference|budget-reference|configuration``: print the generated pages.

``docs/policy-reference.md`` comes from the API models (:mod:`agentmedic.docsgen.reference`),
``docs/budget-reference.md`` from finance's models
(:mod:`agentmedic.docsgen.budget_reference`), ``docs/configuration.md`` from
:class:`~agentmedic.operator.settings.OperatorSettings` (:mod:`agentmedic.docsgen.configuration`).
``make docs`` writes them; tests in ``tests/docs`` fail when a committed page differs
from what these commands print.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

PAGES = {
    "reference": "docs/policy-reference.md",
    "budget-reference": "docs/budget-reference.md",
    "configuration": "docs/configuration.md",
}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "docs",
        help="print the documentation pages generated from the code",
        description="Print a documentation page generated from the code: `reference` is "
        "docs/policy-reference.md (from the AgentPolicy models), `budget-reference` is "
        "docs/budget-reference.md (AgentBudget, ClusterAgentBudget, ModelPriceList), "
        "`configuration` is docs/configuration.md (from the operator's settings). `make "
        "docs` writes them all.",
    )
    p.add_argument("page", choices=sorted(PAGES), help="which page to print")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.page == "reference":
        from agentmedic.docsgen.reference import render_reference

        sys.stdout.write(render_reference())
    elif args.page == "budget-reference":
        from agentmedic.docsgen.budget_reference import render_budget_reference

        sys.stdout.write(render_budget_reference())
    else:
        from agentmedic.docsgen.configuration import render_configuration

        sys.stdout.write(render_configuration())
    return 0
