"""``agentmedic validate FILE|DIR...``: lint agentmedic manifests before applying them.

AgentPolicy, AgentBudget, ClusterAgentBudget and ModelPriceList documents (:data:`KINDS`).
Two kinds of finding. Errors: what the API server or the operator would refuse
(:func:`agentmedic.api.validation.validate_policy`,
:func:`agentmedic.api.budget_validation.validate_budget`), a document of no known kind,
and what :func:`agentmedic.api.lint.lint_policy` calls wrong (a ratio threshold written as
a percentage). Warnings: a resource that is accepted but cannot act as written
(``lint_policy``, :func:`agentmedic.api.budget_lint.lint_finance`); they leave the exit
code at 0 unless ``--strict``.

Documents are numbered from 1 within their file and named by ``metadata.name``:
``policies.yaml#2 (support-bot)``; ``backtest`` names them the same way.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from dataclasses import field as dataclass_field
from datetime import timedelta
from pathlib import Path
from typing import Any

from agentmedic.api.metric_names import BUILTIN_METRICS
from agentmedic.cli._errors import EXIT_FINDINGS, EXIT_OK, CliError, fail, line
from agentmedic.cli._output import add_output_argument, emit

SCHEMA = "agentmedic.io/validate/v1"

KINDS = {
    "AgentPolicy": "policy",
    "AgentBudget": "budget",
    "ClusterAgentBudget": "cluster budget",
    "ModelPriceList": "price list",
}
"""The kinds of agentmedic.io/v1alpha1 validate checks, and how the summary counts them."""
KNOWN = ", ".join(KINDS)

EPILOG = (
    "built-in metrics:\n"
    + "\n".join(f"  {m.name:<22} {m.description} [{m.unit}]" for m in BUILTIN_METRICS.values())
    + """

kinds: AgentPolicy, AgentBudget, ClusterAgentBudget, ModelPriceList (agentmedic.io/v1alpha1)

exit codes: 0 every document valid (warnings allowed unless --strict); 1 errors, or warnings
with --strict; 2 usage error
-o json|yaml: schema agentmedic.io/validate/v1, documented in docs/cli.md

examples:
  agentmedic validate crds/examples/
  agentmedic validate policies.yaml --fleet-size 4 --strict
  agentmedic validate policies.yaml -o json
"""
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "validate",
        help="check AgentPolicy, AgentBudget and ModelPriceList YAML files or directories",
        description="Check AgentPolicy, AgentBudget, ClusterAgentBudget and ModelPriceList "
        "manifests: structure, ranges, references between rules or stages and channels, "
        "model tiers, PromQL shape, time zones, input limits (1 MiB, 64 levels, 100 "
        "aliases per file), documents of no known kind, ratio thresholds outside "
        "0..1; and warn about resources that cannot act as written (a maxDisabledPercent "
        "that rounds to no agent, `for` or windows too short for the scrape interval, "
        "scaleToZero without a notification, a budget stage after its stop, a zero price). "
        "With -o table every finding is one line on stderr: "
        "FILE[#DOC] (NAME): [warning: ]FIELD: MESSAGE.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="FILE|DIR", help="YAML files or directories")
    p.add_argument("-q", "--quiet", action="store_true", help="print findings only")
    p.add_argument("--strict", action="store_true", help="treat warnings as errors (exit 1)")
    p.add_argument(
        "--fleet-size",
        type=int,
        metavar="N",
        help="agents each policy selects, to check that maxDisabledPercent allows one",
    )
    p.add_argument(
        "--scrape-interval",
        default="30s",
        metavar="DURATION",
        help="how often the agents' metrics are scraped (default: 30s)",
    )
    add_output_argument(p, help_suffix="; wide adds each finding's code and fix")
    p.set_defaults(func=run)


@dataclass(frozen=True)
class Finding:
    """One finding of a file or document, in the shape ``-o json`` prints."""

    file: str
    document: int | None
    """Position of the document in its file, from 1 (None for a problem of the file)."""
    name: str | None
    """The document's metadata.name, when it has one."""
    kind: str | None
    """The document's kind, when it has one (None for a problem of the file)."""
    severity: str
    code: str
    field: str
    message: str
    fix: str | None = None
    numbered: bool = dataclass_field(default=True, compare=False)
    """Whether the text form shows ``#N`` (not for a file holding one document)."""

    @property
    def where(self) -> str:
        shown = self.document is not None and self.numbered
        where = f"{self.file}#{self.document}" if shown else self.file
        return f"{where} ({self.name})" if self.name is not None else where

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["numbered"]
        return out

    def text(self, *, wide: bool = False) -> str:
        head = "warning: " if self.severity == "warning" else ""
        field = f"{self.field}: " if self.field else ""
        fix = f"; {self.fix}" if self.fix else ""
        code = f" [{self.code}]" if wide else ""
        return line(f"{self.where}: {head}{field}{self.message}{fix}{code}")


@dataclass(frozen=True)
class Document:
    """A policy document as ``-o json`` lists it."""

    file: str
    document: int
    """Position in its file, from 1."""
    name: str | None
    kind: str | None
    errors: int
    warnings: int


@dataclass
class Options:
    fleet_size: int | None
    scrape_interval: timedelta


def _files(paths: list[str]) -> Iterator[Path | Finding]:
    for raw in paths:
        path = Path(raw)
        try:
            if path.is_dir():
                found = sorted(
                    p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
                )
                if not found:
                    yield _file_problem(raw, "no .yaml or .yml files in this directory")
                yield from found
            elif path.is_file():
                yield path
            elif path.exists():
                yield _file_problem(raw, "is not a regular file; name a YAML file or a directory")
            else:
                yield _file_problem(raw, "no such file or directory")
        except OSError as exc:  # an unreadable directory on the way
            yield _file_problem(raw, f"cannot read: {exc.strerror or exc}")


def _file_problem(file: str, message: str) -> Finding:
    return Finding(file, None, None, None, "error", "UnreadableFile", "", message)


def document_name(doc: Any) -> str | None:
    metadata = doc.get("metadata") if isinstance(doc, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) else None


def is_builtin_kubernetes(doc: Any) -> bool:
    """A manifest of a Kubernetes API group (``v1``, ``apps/v1``, ``*.k8s.io``) that may
    sit beside policies (a Secret, a CronJob): not checked, not an error. Never a document
    whose kind is (or looks like) one of :data:`KINDS`, whatever its apiVersion."""
    from agentmedic.api.validation import did_you_mean

    if not isinstance(doc, dict):
        return False
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not kind:
        return False
    if kind in KINDS or did_you_mean(kind, KINDS):
        return False
    group, sep, version = api_version.rpartition("/")
    if not version.startswith("v"):
        return False
    return not sep or "." not in group or group.endswith(".k8s.io")


def check_file(path: Path, options: Options | None = None) -> tuple[list[Document], list[Finding]]:
    """Lint every document in a file; return the policy documents seen and the findings."""
    from agentmedic.api.yamlfile import YAMLInputError, load_documents

    options = options or Options(None, timedelta(seconds=30))
    try:
        documents = load_documents(path)
    except YAMLInputError as exc:
        return [], [
            Finding(exc.source, None, None, None, "error", "UnreadableFile", "", exc.problem)
        ]
    seen: list[Document] = []
    findings: list[Finding] = []
    multi = len(documents) > 1
    for index, doc in enumerate(documents, start=1):
        if doc is None or is_builtin_kubernetes(doc):
            continue
        name = document_name(doc)
        kind = doc.get("kind") if isinstance(doc, dict) else None
        found = _check_document(str(path), index, name, doc, options)
        if not multi:
            found = [replace(f, numbered=False) for f in found]
        seen.append(
            Document(
                str(path),
                index,
                name,
                kind if isinstance(kind, str) else None,
                sum(f.severity == "error" for f in found),
                sum(f.severity == "warning" for f in found),
            )
        )
        findings.extend(found)
    return seen, findings


def _check_document(
    source: str, index: int, name: str | None, doc: Any, options: Options
) -> list[Finding]:
    """One document's findings: a kind that is not ours, or validation errors, or lint."""
    from agentmedic.api.budget_lint import lint_finance
    from agentmedic.api.budget_validation import validate_budget
    from agentmedic.api.lint import Finding as LintFinding
    from agentmedic.api.lint import lint_policy
    from agentmedic.api.types import API_VERSION, KIND
    from agentmedic.api.validation import Problem, did_you_mean, validate_policy

    kind = doc.get("kind") if isinstance(doc, dict) else None
    shown_kind = kind if isinstance(kind, str) else None
    if isinstance(kind, str) and kind not in KINDS:
        hint = did_you_mean(kind, KINDS)
        if doc.get("apiVersion") == API_VERSION:
            return [
                _unknown_kind(
                    source,
                    index,
                    name,
                    kind,
                    f"{kind!r} is not a kind of {API_VERSION} (known: {KNOWN})",
                    hint or "set kind to one of them",
                )
            ]
        if not hint:
            return [
                _unknown_kind(
                    source,
                    index,
                    name,
                    kind,
                    f"{doc.get('apiVersion')!s}/{kind} is not a kind of {API_VERSION} "
                    f"({KNOWN}) nor a Kubernetes built-in",
                    "move it to another file, or correct apiVersion and kind",
                )
            ]
    problems: list[Problem]
    lint: list[LintFinding] = []
    if kind in KINDS and kind != KIND:
        resource, problems = validate_budget(doc)
        if resource is not None and not problems:
            lint = lint_finance(resource)
    else:
        policy, problems = validate_policy(doc)
        if policy is not None and not problems:
            lint = lint_policy(policy.spec, options.fleet_size, options.scrape_interval)
    found = [
        Finding(source, index, name, shown_kind, "error", "InvalidSpec", p.path, p.message)
        for p in problems
    ]
    found.extend(
        Finding(
            source,
            index,
            name,
            shown_kind,
            item.severity.value,
            item.code,
            item.path,
            item.message,
            item.fix,
        )
        for item in lint
    )
    return found


def _unknown_kind(
    source: str, index: int, name: str | None, kind: str, message: str, fix: str
) -> Finding:
    return Finding(source, index, name, kind, "error", "UnknownKind", "kind", message, fix)


def _options(args: argparse.Namespace) -> Options:
    from agentmedic.api.durations import parse_duration

    if args.fleet_size is not None and not 1 <= args.fleet_size <= 1_000_000:
        raise CliError("--fleet-size must be between 1 and 1000000")
    try:
        scrape = parse_duration(args.scrape_interval)
    except ValueError:
        raise CliError(
            f"--scrape-interval {args.scrape_interval!r} is not a duration; write e.g. 15s or 1m"
        ) from None
    if scrape <= timedelta(0):
        raise CliError("--scrape-interval must be positive, e.g. 30s")
    return Options(args.fleet_size, scrape)


def run(args: argparse.Namespace) -> int:
    options = _options(args)
    findings: list[Finding] = []
    documents: list[Document] = []
    for item in _files(args.paths):
        if isinstance(item, Finding):
            findings.append(item)
            continue
        seen, found = check_file(item, options)
        documents.extend(seen)
        findings.extend(found)
    if not documents and not findings:
        nothing = f"no agentmedic documents found ({KNOWN})"
        if args.output not in ("json", "yaml"):
            return fail("validate", nothing, EXIT_FINDINGS)
        findings.append(_file_problem(", ".join(args.paths), nothing))
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    failed = errors > 0 or (args.strict and warnings > 0)
    code = EXIT_FINDINGS if failed else EXIT_OK

    if args.output in ("json", "yaml"):
        emit(
            {
                "schema": SCHEMA,
                "valid": not failed,
                "summary": {
                    "documents": len(documents),
                    "policies": sum(d.kind == "AgentPolicy" for d in documents),
                    "kinds": _kinds(documents),
                    "errors": errors,
                    "warnings": warnings,
                    "strict": bool(args.strict),
                },
                "documents": [asdict(d) for d in documents],
                "findings": [f.as_dict() for f in findings],
            },
            args.output,
        )
        return code

    for finding in findings:
        print(finding.text(wide=args.output == "wide"), file=sys.stderr)
    if not args.quiet:
        counted = _counted(documents)
        warned = f", {warnings} warning(s)" if warnings else ""
        if errors:
            print(f"{errors} problem(s){warned} in {counted}")
        elif failed:
            print(f"{warnings} warning(s) in {counted} (--strict)")
        else:
            print(f"{counted} valid{warned}")
    return code


def _kinds(documents: list[Document]) -> dict[str, int]:
    """Documents per kind, in the order of :data:`KINDS` (others after, by name)."""
    counts: dict[str, int] = {}
    for doc in documents:
        key = doc.kind or ""
        counts[key] = counts.get(key, 0) + 1
    order = [*KINDS, *sorted(k for k in counts if k not in KINDS)]
    return {k: counts[k] for k in order if k in counts}


def _counted(documents: list[Document]) -> str:
    """``7 policy document(s)``; ``7 policy, 1 budget and 1 price list document(s)``."""
    counts = _kinds(documents)
    parts = [f"{n} {KINDS.get(kind, 'other')}" for kind, n in counts.items()]
    if not parts:
        return "0 policy document(s)"
    head = ", ".join(parts[:-1])
    return (f"{head} and {parts[-1]}" if head else parts[-1]) + " document(s)"
