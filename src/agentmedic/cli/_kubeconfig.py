"""The kubeconfig files ``restore`` and ``status`` read, checked by the bounded YAML loader.

The Kubernetes client would read them with PyYAML itself and fail with a traceback on a
binary file, a list, or nesting deep enough to overflow the stack; checking them here
first turns each of those into one line naming the file. :func:`client_configuration`
then loads the credentials through :mod:`agentmedic.kube.config`.
"""

from __future__ import annotations

import os
from pathlib import Path

from agentmedic.api.yamlfile import YAMLInputError, load_file
from agentmedic.cli._errors import CliError
from agentmedic.kube import Configuration, ConfigurationError

__all__ = ["ConfigurationError", "check_kubeconfig", "client_configuration"]


def client_configuration(
    kubeconfig: str | None, context: str | None, *, in_cluster_first: bool = False
) -> Configuration:
    """The checked kubeconfig's credentials (``in_cluster_first``: the operator's order,
    in-cluster before ``~/.kube/config`` when neither option is given).

    Raises :class:`CliError` for an unusable file and
    :class:`~agentmedic.kube.ConfigurationError` when no credentials load.
    """
    from agentmedic.kube import load_configuration, operator_configuration

    check_kubeconfig(kubeconfig)
    if in_cluster_first:
        return operator_configuration(kubeconfig, context)
    return load_configuration(kubeconfig, context)


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
