"""One optimization: read, ask, check, write, report.

Every run ends with a :class:`~agentmedic.api.prompt.PromptOptimizationResult` written to
the termination message file (``/dev/termination-log``, which Kubernetes shows as the
container's ``terminated.message``) and, when the ConfigMap can be written, to its
annotation ``agentmedic.io/prompt-optimization``: that annotation is what agentmedic reads.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agentmedic.api.prompt import OptimizationStatus, PromptOptimizationResult
from agentmedic.kube import Kube
from agentmedic.optimize.checks import (
    Limits,
    check_candidate,
    clean_answer,
    placeholders,
    required_lines,
)
from agentmedic.optimize.model import ModelError, ModelSettings, ask_for_shorter
from agentmedic.optimize.store import StoreError, read_prompt, write_candidate, write_result

__all__ = [
    "EXIT_NOT_DONE",
    "EXIT_OK",
    "EXIT_USAGE",
    "OptimizeSettings",
    "key_problem",
    "optimize",
]

log = logging.getLogger(__name__)

EXIT_OK = 0
"""Succeeded: the candidate was written."""
EXIT_NOT_DONE = 1
"""Rejected or Failed: no candidate written (the result says why)."""
EXIT_USAGE = 2
"""The ConfigMap or key named does not exist (the result says which)."""

_CONFIG_MAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
MAX_REASON = 400


@dataclass(frozen=True)
class OptimizeSettings:
    """What to optimize and where to report it."""

    namespace: str
    config_map: str
    key: str
    model: ModelSettings
    limits: Limits = field(default_factory=Limits)
    keep: Sequence[str] = ()
    job: str = ""
    termination_log: Path | None = Path("/dev/termination-log")

    def problem(self) -> str | None:
        """What is wrong with the settings (one line naming the flag), or None."""
        return key_problem(self.key)


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot be the live prompt's key (one line naming --key), or None."""
    if not _CONFIG_MAP_KEY.match(key) or len(key) > 240:
        return (
            f"--key {key!r} is not a ConfigMap key: letters, digits, '-', '_' and '.', "
            "at most 240 characters (room for the .vN suffix)"
        )
    return None


def optimize(
    kube: Kube,
    settings: OptimizeSettings,
    *,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> tuple[PromptOptimizationResult, int]:
    """Run one optimization; (the result as reported, the exit code)."""
    base = PromptOptimizationResult(
        status=OptimizationStatus.FAILED, previous_key=settings.key, job=settings.job
    )
    try:
        prompt, _ = read_prompt(kube, settings.namespace, settings.config_map, settings.key)
    except StoreError as exc:
        result = base.model_copy(update={"reason": exc.message[:MAX_REASON]})
        _report(kube, settings, result, annotate=not exc.usage)
        return result, EXIT_USAGE if exc.usage else EXIT_NOT_DONE
    before = len(prompt)
    base = base.model_copy(update={"length_before": before})
    if before > settings.limits.max_chars:
        reason = (
            f"the prompt has {before} characters, more than --max-chars {settings.limits.max_chars}"
        )
        return _finish(kube, settings, base.model_copy(update={"reason": reason}))
    holders = placeholders(prompt)
    required = required_lines(prompt, settings.keep)
    try:
        answer = ask_for_shorter(settings.model, prompt, holders, required, sleep=sleep, now=now)
    except ModelError as exc:
        return _finish(kube, settings, base.model_copy(update={"reason": exc.message}))
    candidate = clean_answer(answer)
    measured = base.model_copy(update={"length_after": len(candidate)})
    why_not = check_candidate(prompt, candidate, settings.limits, settings.keep)
    if why_not is not None:
        rejected = measured.model_copy(
            update={"status": OptimizationStatus.REJECTED, "reason": why_not[:MAX_REASON]}
        )
        return _finish(kube, settings, rejected)
    saved = 1 - len(candidate) / before
    succeeded = measured.model_copy(
        update={
            "status": OptimizationStatus.SUCCEEDED,
            "reason": f"{before} → {len(candidate)} characters ({saved:.0%} shorter); "
            f"{len(holders)} placeholder(s) and {len(required)} required line(s) kept",
        }
    )
    try:
        written = write_candidate(
            kube,
            settings.namespace,
            settings.config_map,
            settings.key,
            candidate,
            succeeded,
            now(),
        )
    except StoreError as exc:
        failed = succeeded.model_copy(
            update={"status": OptimizationStatus.FAILED, "reason": exc.message[:MAX_REASON]}
        )
        _report(kube, settings, failed, annotate=False)
        return failed, EXIT_NOT_DONE
    _report(kube, settings, written, annotate=False)  # the write carried the annotation
    return written, EXIT_OK


def _finish(
    kube: Kube, settings: OptimizeSettings, result: PromptOptimizationResult
) -> tuple[PromptOptimizationResult, int]:
    _report(kube, settings, result, annotate=True)
    return result, EXIT_NOT_DONE


def _report(
    kube: Kube, settings: OptimizeSettings, result: PromptOptimizationResult, *, annotate: bool
) -> None:
    """The result to the termination message and (``annotate``) the ConfigMap; a failure
    to write either is logged, the other is still written."""
    if annotate:
        try:
            write_result(kube, settings.namespace, settings.config_map, result)
        except StoreError as exc:
            log.warning("%s", exc.message)
    if settings.termination_log is not None:
        try:
            settings.termination_log.write_text(result.to_json() + "\n", encoding="utf-8")
        except OSError as exc:
            log.warning("cannot write the termination message: %s", exc)
