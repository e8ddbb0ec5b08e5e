"""``agentmedic crd``: print the AgentPolicy CRD generated from the API models."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "crd",
        help="print the AgentPolicy CustomResourceDefinition",
        description="Print the AgentPolicy CRD rendered from the API models "
        "(the content of crds/agentpolicy.yaml). "
        "Apply it with: agentmedic crd | kubectl apply -f -",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agentmedic.api.crd import render_crd

    sys.stdout.write(render_crd())
    return 0
