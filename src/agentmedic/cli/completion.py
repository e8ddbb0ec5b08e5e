"""``agentmedic completion bash|zsh|fish``: the shell code that completes ``agentmedic``.

The script is argcomplete's: the shell calls ``agentmedic`` itself to ask for completions,
so they always match the installed version's commands, flags and choices.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

SHELLS = ("bash", "zsh", "fish")

EPILOG = """\
install:
  bash   agentmedic completion bash > ~/.local/share/bash-completion/completions/agentmedic
  zsh    agentmedic completion zsh > "${fpath[1]}/_agentmedic"
  fish   agentmedic completion fish > ~/.config/fish/completions/agentmedic.fish
or for the current shell only (bash, zsh):
  source <(agentmedic completion bash)
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "completion",
        help="print the shell completion script for bash, zsh or fish",
        description="Print the script that makes SHELL complete agentmedic's commands, flags "
        "and their values.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from argcomplete.shell_integration import shellcode

    sys.stdout.write(shellcode(["agentmedic"], shell=args.shell))
    return 0
