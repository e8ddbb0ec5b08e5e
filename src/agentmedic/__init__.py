"""agentmedic: a self-healing control plane for AI agents on Kubernetes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agentmedic")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
