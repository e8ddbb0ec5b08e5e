"""What a candidate prompt must keep, and the checks it must pass (pure).

- Placeholders: ``{{name}}`` (Jinja, Mustache), ``${name}`` and ``$name`` (shell, string
  templates), ``{name}`` (Python ``str.format``). Every one in the prompt must appear in the
  candidate, and the candidate must bring none of its own: the agent fills exactly the
  placeholders it knows.
- Required lines: a line of the prompt carrying the marker ``[required]`` must appear in
  the candidate as it is (marker included, so the next optimization keeps it too), and any
  text given with ``--keep`` must appear verbatim.
- Length: the candidate must be shorter than the prompt by at least ``min_reduction``
  (a share), no shorter than ``min_share`` of it (a shorter one is more likely cut off
  than optimized), and at most ``max_chars`` characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "REQUIRED_MARKER",
    "Limits",
    "check_candidate",
    "clean_answer",
    "placeholders",
    "required_lines",
]

REQUIRED_MARKER = "[required]"
"""Tags a line of a prompt that a candidate must keep verbatim."""

_PLACEHOLDER = re.compile(
    r"\{\{\s*[A-Za-z_][\w.\-]*\s*\}\}"  # {{name}}
    r"|\$\{[A-Za-z_][\w.]*\}"  # ${name}
    r"|\{[A-Za-z_][\w.]*\}"  # {name}
    r"|\$[A-Za-z_]\w*"  # $name
)
_FENCE = re.compile(r"^```[\w-]*\n(?P<body>.*)\n```$", re.DOTALL)


@dataclass(frozen=True)
class Limits:
    """The bounds a candidate must respect."""

    min_reduction: float = 0.10
    """The candidate is at least this share shorter than the prompt (0.10: 10%)."""
    min_share: float = 0.20
    """The candidate keeps at least this share of the prompt's length."""
    max_chars: int = 32_768
    """The longest prompt read or candidate written, in characters."""

    def __post_init__(self) -> None:
        if not 0 < self.min_reduction < 1:
            raise ValueError("min_reduction must be between 0 and 1 (exclusive)")
        if not 0 <= self.min_share < 1 - self.min_reduction:
            raise ValueError("min_share must be at least 0 and below 1 - min_reduction")
        if self.max_chars < 1:
            raise ValueError("max_chars must be at least 1")


def placeholders(text: str) -> list[str]:
    """The distinct placeholders of ``text``, in order of first appearance."""
    return list(dict.fromkeys(m.group(0) for m in _PLACEHOLDER.finditer(text)))


def required_lines(text: str, keep: Iterable[str] = ()) -> list[str]:
    """The lines tagged ``[required]`` (stripped), then the ``--keep`` texts."""
    tagged = [ln.strip() for ln in text.splitlines() if REQUIRED_MARKER in ln.lower()]
    return list(dict.fromkeys([*tagged, *(k for k in keep if k)]))


def clean_answer(answer: str) -> str:
    """The model's answer without surrounding whitespace or one enclosing code fence."""
    text = answer.strip()
    fenced = _FENCE.match(text)
    return fenced.group("body").strip() if fenced else text


def check_candidate(
    prompt: str, candidate: str, limits: Limits, keep: Sequence[str] = ()
) -> str | None:
    """Why ``candidate`` may not replace ``prompt`` (one line), or None when it may."""
    before, after = len(prompt), len(candidate)
    if not candidate.strip():
        return "the model answered with an empty prompt"
    wanted = placeholders(prompt)
    got = set(placeholders(candidate))
    missing = [p for p in wanted if p not in got]
    if missing:
        return f"the candidate drops placeholder(s) {', '.join(missing[:5])}"
    added = [p for p in placeholders(candidate) if p not in set(wanted)]
    if added:
        return f"the candidate adds placeholder(s) {', '.join(added[:5])} the agent does not fill"
    lines = {ln.strip() for ln in candidate.splitlines()}
    for need in required_lines(prompt):
        if need not in lines:
            return f"the candidate drops the required line {need[:80]!r}"
    for text in keep:
        if text and text not in candidate:
            return f"the candidate drops the text to keep {text[:80]!r} (--keep)"
    if after > limits.max_chars:
        return f"the candidate has {after} characters, more than the limit of {limits.max_chars}"
    if after > before * (1 - limits.min_reduction):
        return (
            f"the candidate is not shorter by {limits.min_reduction:.0%} "
            f"({before} → {after} characters)"
        )
    if after < before * limits.min_share:
        return (
            f"the candidate keeps less than {limits.min_share:.0%} of the prompt "
            f"({before} → {after} characters); it looks cut off"
        )
    return None
