"""agentmedic: a self-healing control plane for AI agents on Kubernetes."""

import sys
from typing import Any

__all__ = ["__version__"]

# httpx imports its own command-line client (click, rich, pygments: about 10 MiB) whenever
# those are installed, and they are here (rich draws agentmedic's tables). Nothing of
# agentmedic runs httpx's client, so its module is marked absent (Python then raises
# ImportError for it, which httpx handles with a stub). Only when httpx is not loaded yet.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def __getattr__(name: str) -> Any:
    # Resolved on first use: importlib.metadata costs agents ~90 ms at import time.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("agentmedic")
        except PackageNotFoundError:  # a source tree without install
            return "0.0.0"
    raise AttributeError(f"module 'agentmedic' has no attribute {name!r}")
