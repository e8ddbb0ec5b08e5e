"""``agentmedic validate FILE|DIR...``: lint AgentPolicy manifests before applying them.

Two kinds of finding. Errors: what the API server or the operator would refuse
(:func:`agentmedic.api.validation.validate_policy`), a document that is not an AgentPolicy
of a known version, and what :func:`agentmedic.api.lint.lint_policy` calls wrong (a ratio
threshold written as a percentage). Warnings: a policy that is accepted but cannot act as
written (``lint_policy``); they leave the exit code at 0 unless ``--strict``.

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

EPILOG = (
    "built-in metrics:\n"
    + "\n".join(f"  {m.name:<22} {m.description} [{m.unit}]" for m in BUILTIN_METRICS.values())
    + """

exit codes: 0 every policy valid (warnings allowed unless --strict); 1 errors, or warnings
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
        help="check AgentPolicy YAML files or directories",
        description="Check AgentPolicy manifests: structure, ranges, references between rules "
        "and channels, model tiers, PromQL shape, input limits (1 MiB, 64 levels, 100 "
        "aliases per file), shared channels and metrics backends (NotificationChannel, "
        "MetricsBackend and their Cluster kinds) beside the policies, other documents that "
        "are not AgentPolicies, ratio thresholds outside "
        "0..1; and warn about policies that cannot act as written (a maxDisabledPercent that "
        "rounds to no agent, `for` or windows too short for the scrape interval, scaleToZero "
        "without a notification). With -o table every finding is one line on stderr: "
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
    return Finding(file, None, None, "error", "UnreadableFile", "", message)


def document_name(doc: Any) -> str | None:
    metadata = doc.get("metadata") if isinstance(doc, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) else None


def is_builtin_kubernetes(doc: Any) -> bool:
    """A manifest of a Kubernetes API group (``v1``, ``apps/v1``, ``*.k8s.io``) that may
    sit beside policies (a Secret, a CronJob): not checked, not an error. Never a document
    whose kind is (or looks like) AgentPolicy, whatever its apiVersion."""
    from agentmedic.api.types import KIND
    from agentmedic.api.validation import did_you_mean

    if not isinstance(doc, dict):
        return False
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not kind:
        return False
    if kind == KIND or did_you_mean(kind, [KIND]):
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
        return [], [Finding(exc.source, None, None, "error", "UnreadableFile", "", exc.problem)]
    seen: list[Document] = []
    findings: list[Finding] = []
    multi = len(documents) > 1
    for index, doc in enumerate(documents, start=1):
        if doc is None or is_builtin_kubernetes(doc):
            continue
        name = document_name(doc)
        shared = _shared_findings(str(path), index if multi else None, name, doc)
        if shared is not None:  # a shared channel or backend: checked, not a policy
            findings.extend(shared)
            continue
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
    from agentmedic.api.lint import lint_policy
    from agentmedic.api.types import API_VERSION, KIND
    from agentmedic.api.validation import did_you_mean, validate_policy

    kind = doc.get("kind") if isinstance(doc, dict) else None
    if isinstance(kind, str) and kind != KIND:
        if doc.get("apiVersion") == API_VERSION:
            hint = did_you_mean(kind, [KIND])
            return [
                _unknown_kind(
                    source,
                    index,
                    name,
                    f"{kind!r} is not a kind of {API_VERSION}",
                    hint or f"set it to {KIND}",
                )
            ]
        if not did_you_mean(kind, [KIND]):
            return [
                _unknown_kind(
                    source,
                    index,
                    name,
                    f"{doc.get('apiVersion')!s}/{kind} is not an AgentPolicy ({API_VERSION}) "
                    "nor a Kubernetes built-in",
                    "move it to another file, or correct apiVersion and kind",
                )
            ]
    policy, problems = validate_policy(doc)
    found = [
        Finding(source, index, name, "error", "InvalidSpec", p.path, p.message) for p in problems
    ]
    if policy is not None and not problems:
        found.extend(
            Finding(
                source,
                index,
                name,
                item.severity.value,
                item.code,
                item.path,
                item.message,
                item.fix,
            )
            for item in lint_policy(policy.spec, options.fleet_size, options.scrape_interval)
        )
    return found


def _shared_findings(
    source: str, index: int | None, name: str | None, doc: Any
) -> list[Finding] | None:
    """The findings of a NotificationChannel, ClusterNotificationChannel, MetricsBackend or
    ClusterMetricsBackend document; None for any other document."""
    from agentmedic.api.shared import SHARED_MODELS
    from agentmedic.api.types import API_VERSION
    from agentmedic.api.validation import validate_shared

    if not isinstance(doc, dict) or doc.get("apiVersion") != API_VERSION:
        return None
    if doc.get("kind") not in SHARED_MODELS:
        return None
    _, problems = validate_shared(doc)
    found = [
        Finding(source, index or 1, name, "error", "InvalidSpec", p.path, p.message)
        for p in problems
    ]
    return found if index is not None else [replace(f, numbered=False) for f in found]


def _unknown_kind(source: str, index: int, name: str | None, message: str, fix: str) -> Finding:
    return Finding(source, index, name, "error", "UnknownKind", "kind", message, fix)


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
        if args.output not in ("json", "yaml"):
            return fail("validate", "no AgentPolicy documents found", EXIT_FINDINGS)
        findings.append(_file_problem(", ".join(args.paths), "no AgentPolicy documents found"))
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
                    "policies": len(documents),
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
        counted = f"{len(documents)} policy document(s)"
        warned = f", {warnings} warning(s)" if warnings else ""
        if errors:
            print(f"{errors} problem(s){warned} in {counted}")
        elif failed:
            print(f"{warnings} warning(s) in {counted} (--strict)")
        else:
            print(f"{counted} valid{warned}")
    return code
