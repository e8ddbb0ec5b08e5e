"""``agentmedic validate FILE|DIR...``: check AgentPolicy manifests before applying them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentmedic.api.metric_names import BUILTIN_METRICS
from agentmedic.cli._errors import EXIT_FINDINGS, EXIT_OK, fail, line

EPILOG = "built-in metrics:\n" + "\n".join(
    f"  {m.name:<22} {m.description} [{m.unit}]" for m in BUILTIN_METRICS.values()
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "validate",
        help="check AgentPolicy YAML files or directories",
        description="Check AgentPolicy manifests: structure, ranges, references between rules "
        "and channels, model tiers, PromQL shape, input limits (1 MiB, 64 levels, 100 "
        "aliases per file). Prints every problem on stderr as FILE[#DOC]: FIELD: MESSAGE, "
        "one per line, and exits 1 if there is any.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="FILE|DIR", help="YAML files or directories")
    p.add_argument("-q", "--quiet", action="store_true", help="print problems only")
    p.set_defaults(func=run)


@dataclass(frozen=True)
class Finding:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def _files(paths: list[str]) -> Iterator[Path | Finding]:
    for raw in paths:
        path = Path(raw)
        try:
            if path.is_dir():
                found = sorted(
                    p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
                )
                if not found:
                    yield Finding(raw, "no .yaml or .yml files in this directory")
                yield from found
            elif path.is_file():
                yield path
            elif path.exists():
                yield Finding(raw, "is not a regular file; name a YAML file or a directory")
            else:
                yield Finding(raw, "no such file or directory")
        except OSError as exc:  # an unreadable directory on the way
            yield Finding(raw, f"cannot read: {exc.strerror or exc}")


def _name(doc: Any) -> str | None:
    metadata = doc.get("metadata") if isinstance(doc, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) else None


def check_file(path: Path) -> tuple[int, list[Finding]]:
    """Validate every AgentPolicy in a file; return (policies seen, findings)."""
    from agentmedic.api.validation import validate_policy
    from agentmedic.api.yamlfile import YAMLInputError, load_documents

    try:
        documents = load_documents(path)
    except YAMLInputError as exc:
        return 0, [Finding(exc.source, exc.problem)]
    findings: list[Finding] = []
    seen = 0
    multi = len(documents) > 1
    for index, doc in enumerate(documents):
        where = f"{path}#{index}" if multi else str(path)
        if doc is None:
            continue
        if isinstance(doc, dict) and doc.get("kind") not in (None, "AgentPolicy"):
            continue  # other manifests (Secrets, CronJobs) may sit beside policies
        seen += 1
        _, problems = validate_policy(doc)
        name = _name(doc)
        label = f"{where} ({name})" if name is not None else where
        findings.extend(Finding(label, line(str(p))) for p in problems)
    return seen, findings


def run(args: argparse.Namespace) -> int:
    findings: list[Finding] = []
    policies = 0
    for item in _files(args.paths):
        if isinstance(item, Finding):
            findings.append(item)
            continue
        seen, found = check_file(item)
        policies += seen
        findings.extend(found)
    for finding in findings:
        print(finding, file=sys.stderr)
    if findings:
        if not args.quiet:
            print(f"{len(findings)} problem(s) in {policies} policy document(s)")
        return EXIT_FINDINGS
    if policies == 0:
        return fail("validate", "no AgentPolicy documents found", EXIT_FINDINGS)
    if not args.quiet:
        print(f"{policies} policy document(s) valid")
    return EXIT_OK
