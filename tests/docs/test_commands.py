"""Every command the docs show exists as written: `agentmedic ...` parses, `make X` is a target.

Commands are read from shell code blocks and from inline code spans. Each `agentmedic`
command line is given to the real parser (``agentmedic.cli.main.build_parser``), so a
renamed subcommand, a removed flag or a missing argument fails here. Nothing is run.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentmedic.cli.main import build_parser

from .markdown import ROOT, blocks, code_spans, doc_files, rel

SHELL = ("sh", "bash", "shell", "console", "")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_PUNCTUATION = set("();<>|&")


def _commands(text: str) -> Iterator[list[str]]:
    """Each simple command of a shell line, as words (pipes, ;, && and redirections split)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote: not a shell line
        return
    words: list[str] = []
    redirect = False
    for token in [*tokens, ";"]:
        if set(token) <= _PUNCTUATION:
            if words:
                yield words
            words = []
            redirect = ">" in token or "<" in token
            continue
        if redirect:  # the file name after > or <
            redirect = False
            continue
        if not words and _ASSIGNMENT.match(token):
            continue  # VAR=value before the command
        words.append(token)


def _shell_lines() -> list[tuple[str, str]]:
    """(where, line) of every shell line in code blocks and every inline code span."""
    out: list[tuple[str, str]] = []
    for page in doc_files():
        for block in blocks(page):
            if block.lang not in SHELL:
                continue
            joined = re.sub(r"\\\n\s*", " ", block.text)
            for line in joined.splitlines():
                line = line.strip().removeprefix("$ ")
                if line:
                    out.append((str(block), line))
        out += [(f"{rel(page)}:{n}", text) for n, text in code_spans(page)]
    return out


def _invocations(program: str) -> list[tuple[str, list[str]]]:
    out = []
    for where, line in _shell_lines():
        for words in _commands(line):
            first = words[0]
            if not first.endswith("/") and Path(first).name == program and len(words) > 1:
                out.append((where, words[1:]))
    return out


AGENTMEDIC = _invocations("agentmedic")
MAKE = _invocations("make")


def test_the_docs_show_agentmedic_commands() -> None:
    subcommands = {args[0] for _, args in AGENTMEDIC}
    assert {"restore", "status", "validate", "backtest", "run", "docs"} <= subcommands


@pytest.mark.parametrize(("where", "args"), AGENTMEDIC, ids=lambda v: str(v)[:70])
def test_an_agentmedic_command_in_the_docs_parses(where: str, args: list[str]) -> None:
    parser = build_parser()
    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            parsed = parser.parse_args(args)
        except SystemExit as exc:  # --help exits 0, a usage error 2
            code = exc.code
    shown = f"{where}: `agentmedic {shlex.join(args)}`"
    if code is not None:
        assert code == 0, f"{shown}: {err.getvalue()}"
        return
    assert getattr(parsed, "command", None), shown


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {m.group(1) for m in re.finditer(r"^([A-Za-z0-9_-]+):", text, re.M)}


@pytest.mark.parametrize(("where", "args"), MAKE, ids=lambda v: str(v)[:70])
def test_a_make_target_in_the_docs_exists(where: str, args: list[str]) -> None:
    targets = [a for a in args if not a.startswith("-") and not _ASSIGNMENT.match(a)]
    missing = [t for t in targets if t not in _make_targets()]
    assert not missing, f"{where}: no Makefile target {missing}"


def test_every_python_block_compiles() -> None:
    for page in doc_files():
        for block in blocks(page):
            if block.lang in ("python", "py"):
                compile(block.text, str(block), "exec")


# ----------------------------------------------------------------- architecture


def test_the_architecture_page_names_every_import_contract_module() -> None:
    """docs/architecture.md describes the layers of pyproject.toml's import-linter contracts."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    modules: set[str] = set()
    for contract in config["tool"]["importlinter"]["contracts"]:
        for layer in contract.get("layers", []):
            modules |= {m.strip() for m in layer.split("|")}
        modules |= set(contract.get("source_modules", []))
        modules |= set(contract.get("forbidden_modules", []))
    missing = sorted(m for m in modules if f"`{m}`" not in page)
    assert not missing, f"docs/architecture.md does not mention {missing}"
