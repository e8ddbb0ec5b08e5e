"""docs/cli.md says what the code does: every command, the exit codes, the input limits."""

from __future__ import annotations

import re

from agentmedic.api import yamlfile
from agentmedic.cli import _errors
from agentmedic.cli.main import COMMANDS

from .markdown import ROOT

PAGE = (ROOT / "docs" / "cli.md").read_text()


def _section(title: str) -> str:
    return PAGE.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_every_command_has_a_row() -> None:
    rows = re.findall(r"^\| `agentmedic ([\w-]+)", PAGE, re.M)
    assert rows == COMMANDS


def test_the_exit_codes_are_the_ones_the_commands_use() -> None:
    codes = [int(c) for c in re.findall(r"^\| (\d+) \|", _section("Exit codes"), re.M)]
    assert codes == [
        _errors.EXIT_OK,
        _errors.EXIT_FINDINGS,
        _errors.EXIT_USAGE,
        _errors.EXIT_INTERRUPTED,
        _errors.EXIT_PIPE,
    ]


def test_the_input_limits_are_the_loaders() -> None:
    limits = _section("Input limits")
    assert f"larger than {yamlfile.MAX_BYTES // (1024 * 1024)} MiB" in limits
    assert f"deeper than {yamlfile.MAX_DEPTH} levels" in limits
    assert f"more than {yamlfile.MAX_ALIASES} aliases" in limits
    assert f"more than\n  {yamlfile.MAX_EXPANDED_NODES:,} nodes" in limits
