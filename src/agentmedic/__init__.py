"""agentmedic: a self-healing control plane for AI agents on Kubernetes."""

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    # Resolved on first use: importlib.metadata costs agents ~90 ms at import time.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("agentmedic")
        except PackageNotFoundError:  # a source tree without install
            return "0.0.0"
    raise AttributeError(f"module 'agentmedic' has no attribute {name!r}")
