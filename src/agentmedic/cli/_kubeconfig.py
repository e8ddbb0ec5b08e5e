"""The kubeconfig files ``restore`` and ``status`` read, checked by the bounded YAML loader.

The Kubernetes client would read them with PyYAML itself and fail with a traceback on a
binary file, a list, or nesting deep enough to overflow the stack; checking them here
first turns each of those into one line naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from agentmedic.api.yamlfile import YAMLInputError, load_file
from agentmedic.cli._errors import CliError

__all__ = ["check_kubeconfig"]


def check_kubeconfig(explicit: str | None) -> None:
    """Refuse an unusable ``--kubeconfig`` (or ``$KUBECONFIG`` / ``~/.kube/config`` file)."""
    if explicit:
        candidates = [(Path(explicit), "--kubeconfig ")]
    elif os.environ.get("KUBECONFIG"):
        # kubectl skips entries of $KUBECONFIG that do not exist; so does the client.
        candidates = [
            (Path(p), "KUBECONFIG: ")
            for p in os.environ["KUBECONFIG"].split(os.pathsep)
            if p and Path(p).exists()
        ]
    else:
        default = Path("~/.kube/config").expanduser()
        candidates = [(default, "")] if default.exists() else []
    for path, origin in candidates:
        try:
            document = load_file(path)
        except YAMLInputError as exc:
            raise CliError(f"{origin}{exc}") from None
        if not isinstance(document, dict):
            raise CliError(
                f"{origin}{path}: not a kubeconfig (a mapping with clusters, contexts and users)"
            )
