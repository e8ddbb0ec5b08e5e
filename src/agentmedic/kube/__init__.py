"""The one layer that talks to the Kubernetes API server.

Everything else in agentmedic reads and writes Kubernetes objects through this package,
never through the ``kubernetes`` client library or hand-built requests (an import-linter
contract in ``pyproject.toml`` says so). It gives

- :class:`Kube`, the sync client over the ``kubernetes`` library's transport (the actions
  run it in worker threads), with :meth:`Kube.arequest` for coroutines; its typed readers
  and writers cover workloads, ConfigMaps, Secrets, Events, Jobs, CronJobs, HPAs, KEDA
  ScaledObjects and custom objects;
- :class:`CustomObjects`, async reads and optimistic writes of custom objects, their
  status and their annotations, and :class:`Leases` for leader election;
- :class:`AsyncKube`, the ``httpx`` client for label-selected lists and watches, with a
  connection pool for watches apart from the one for requests;
- one :class:`RetryPolicy` (bounded, capped exponential backoff with full jitter,
  ``Retry-After`` honoured) for all of them;
- one error type, :class:`KubeError`, whose ``reason`` says what went wrong (the tree is
  drawn in :mod:`agentmedic.kube.errors`); its text never carries a credential;
- explicit PATCH content types (:class:`PatchType`) and resourceVersion preconditions
  (:func:`with_resource_version`);
- credentials from a kubeconfig or in-cluster (:mod:`agentmedic.kube.config`).
"""

from agentmedic.kube.aio import AsyncKube, authorization
from agentmedic.kube.client import Configuration, Kube, translate
from agentmedic.kube.config import ConfigurationError, load_configuration, operator_configuration
from agentmedic.kube.errors import (
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    KubeError,
    KubeReason,
    NotFound,
    Unavailable,
    scrub_credentials,
)
from agentmedic.kube.objects import CustomObjects, Leases
from agentmedic.kube.patch import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    PatchType,
    with_resource_version,
)
from agentmedic.kube.paths import KEDA_API, KEDA_SCALED_OBJECTS, WORKLOAD_KINDS
from agentmedic.kube.retry import NO_RETRY, RetryPolicy

__all__ = [
    "APPLY_PATCH",
    "JSON_PATCH",
    "KEDA_API",
    "KEDA_SCALED_OBJECTS",
    "MERGE_PATCH",
    "NO_RETRY",
    "STRATEGIC_MERGE_PATCH",
    "WORKLOAD_KINDS",
    "AsyncKube",
    "Configuration",
    "ConfigurationError",
    "Conflict",
    "CustomObjects",
    "Forbidden",
    "Gone",
    "Invalid",
    "Kube",
    "KubeError",
    "KubeReason",
    "Leases",
    "NotFound",
    "PatchType",
    "RetryPolicy",
    "Unavailable",
    "authorization",
    "load_configuration",
    "operator_configuration",
    "scrub_credentials",
    "translate",
    "with_resource_version",
]
