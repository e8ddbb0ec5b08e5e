"""Where the credentials come from: a kubeconfig, or the in-cluster ServiceAccount.

The loaders of the ``kubernetes`` library, behind this layer; their failures become one
:class:`ConfigurationError` whose text names what to fix and never quotes a credential.
"""

from __future__ import annotations

import os

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from agentmedic.kube.errors import scrub_credentials

__all__ = ["ConfigurationError", "load_configuration", "operator_configuration"]

_LOADER_ERRORS = (
    k8s_config.ConfigException,
    OSError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
)


class ConfigurationError(Exception):
    """No usable credentials: the kubeconfig is missing or broken, or there is none and
    this is not a Pod."""


def _fail(exc: BaseException) -> ConfigurationError:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return ConfigurationError(scrub_credentials(text))


def operator_configuration(
    kubeconfig: str | None = None, context: str | None = None
) -> k8s.Configuration:
    """The operator's credentials: an explicit kubeconfig or context, else in-cluster,
    else ``$KUBECONFIG`` or ``~/.kube/config``."""
    conf = k8s.Configuration()
    try:
        if kubeconfig is None and context is None:
            try:
                k8s_config.load_incluster_config(client_configuration=conf)  # type: ignore[no-untyped-call]
                return conf
            except k8s_config.ConfigException:
                pass
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=conf
        )
    except _LOADER_ERRORS as exc:
        raise _fail(exc) from None
    return conf


def load_configuration(kubeconfig: str | None, context: str | None) -> k8s.Configuration:
    """A command-line tool's credentials: ``--kubeconfig``, else ``$KUBECONFIG``, else
    ``~/.kube/config``, else in-cluster when running in a Pod."""
    if kubeconfig and not os.path.exists(kubeconfig):
        raise ConfigurationError(f"--kubeconfig {kubeconfig}: no such file")
    configuration = k8s.Configuration()
    explicit = kubeconfig or os.environ.get("KUBECONFIG")
    default = os.path.expanduser("~/.kube/config")
    try:
        if (
            not explicit
            and not os.path.exists(default)
            and os.environ.get("KUBERNETES_SERVICE_HOST")
        ):
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return configuration
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
    except _LOADER_ERRORS as exc:
        raise _fail(exc) from None
    return configuration
