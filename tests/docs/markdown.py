"""Just enough Markdown reading to test the docs: code blocks, code spans, links, anchors."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def doc_files() -> list[Path]:
    """Every page the tests hold to their word: docs/**, CONTRIBUTING.md and README.md."""
    pages = sorted((ROOT / "docs").rglob("*.md"))
    pages += [p for p in (ROOT / "CONTRIBUTING.md", ROOT / "README.md") if p.exists()]
    return pages


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@dataclass(frozen=True)
class Block:
    """A fenced code block."""

    page: Path
    line: int
    lang: str
    text: str
    marker: str | None
    """The ``<!-- include: PATH -->`` comment right above the block, if any."""

    def __str__(self) -> str:
        return f"{rel(self.page)}:{self.line}"


_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_INCLUDE = re.compile(r"^\s*<!--\s*include:\s*(?P<path>\S+)\s*-->\s*$")


def blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m.group("fence"), len(m.group("indent"))
        lang = m.group("info").strip().split(" ")[0].lower()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
            i += 1
        prev = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
        inc = _INCLUDE.match(prev)
        text = textwrap.dedent("\n".join(body)) + ("\n" if body else "")
        out.append(Block(page, start + 1, lang, text, inc.group("path") if inc else None))
        i += 1
    return out


def prose(page: Path) -> str:
    """The page without its fenced code blocks (lines kept, so numbers stay right)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out: list[str] = []
    fence: str | None = None
    for line in lines:
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group("fence")
            out.append("")
        elif fence is not None and line.strip().startswith(fence):
            fence = None
            out.append("")
        else:
            out.append("" if fence is not None else line)
    return "\n".join(out)


_SPAN = re.compile(r"(?<!`)(`+)(?!`)(?P<code>(?:(?!\n\s*\n).)+?)(?<!`)\1(?!`)", re.S)


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def code_spans(page: Path) -> list[tuple[int, str]]:
    """(line, text) of every inline code span outside code blocks; a span may wrap lines."""
    text = prose(page)
    return [
        (_line(text, m.start()), " ".join(m.group("code").split())) for m in _SPAN.finditer(text)
    ]


_LINK = re.compile(r"(?<!\!)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")


def links(page: Path) -> list[tuple[int, str]]:
    """(line, target) of every inline link outside code."""
    text = prose(page)
    # Blank out code spans, keeping offsets, so `[x](y)` inside code is not a link.
    masked = _SPAN.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    return [(_line(masked, m.start()), m.group("target")) for m in _LINK.finditer(masked)]


_HEADING = re.compile(r"^#{1,6}\s+(?P<text>.+?)\s*#*\s*$")
_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"(?P<id>[^\"]+)\"")


def slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"<[^>]+>", "", heading).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = prose(page)
    found = {m.group("id") for m in _ANCHOR.finditer(text)}
    seen: dict[str, int] = {}
    for line in text.splitlines():
        m = _HEADING.match(line)
        if not m:
            continue
        base = slug(m.group("text"))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found
