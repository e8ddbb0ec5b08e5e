"""``agentmedic crd``: print (or write, or check) the CRDs generated from the API models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from agentmedic.cli._errors import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE


def register(sub: Any) -> None:
    p = sub.add_parser(
        "crd",
        help="print agentmedic's CustomResourceDefinitions",
        description="Print the CRDs rendered from the API models (the content of crds/*.yaml), "
        "all of them as one multi-document YAML unless --kind picks one. "
        "Install them with: agentmedic crd | kubectl apply -f -",
    )
    p.add_argument("--kind", help="only this kind (kind, plural or short name)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--write", metavar="DIR", type=Path, help="write crds/<kind>.yaml files into DIR"
    )
    mode.add_argument(
        "--check",
        metavar="DIR",
        type=Path,
        help="exit 1 naming each file in DIR that differs from the models",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agentmedic.api.crd import all_kinds, crd_kind, render_crd

    try:
        kinds = [crd_kind(args.kind)] if args.kind else all_kinds()
    except LookupError as exc:
        print(f"agentmedic crd: --kind: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.write is not None:
        args.write.mkdir(parents=True, exist_ok=True)
        for kind in kinds:
            (args.write / kind.file).write_text(render_crd(kind))
        return EXIT_OK
    if args.check is not None:
        drifted = [
            kind.file
            for kind in kinds
            if not (args.check / kind.file).is_file()
            or (args.check / kind.file).read_text() != render_crd(kind)
        ]
        for name in drifted:
            print(f"{args.check / name} drifted from the models: run 'make crd'", file=sys.stderr)
        return EXIT_FINDINGS if drifted else EXIT_OK
    sys.stdout.write("---\n".join(render_crd(kind) for kind in kinds))
    return EXIT_OK
