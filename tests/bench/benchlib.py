"""What every bench in this folder prints: a reference line and a final JSON line.

The reference line names the machine (cores, Python, date, load) and the load the bench put
on it (agents, policies, interval, ...), so that figures from different days compare. The
final line of a bench's output is one JSON object of its figures under stable names; tools
and tests read that line (:func:`last_json`).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from typing import Any


def machine() -> dict[str, Any]:
    """The machine as the figures depend on it."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cores": os.cpu_count() or 1,
        "cpu": cpu,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load": round(os.getloadavg()[0], 2),
    }


def reference(load: dict[str, Any]) -> str:
    """The reference line: ``reference: machine ...; load ...``; printed and returned."""
    m = machine()
    what = ", ".join(f"{k} {v}" for k, v in load.items())
    line = (
        f"reference: {m['cores']} cores ({m['cpu']}), {m['python']}, {m['date']}, "
        f"load average {m['load']}; load: {what}"
    )
    print(line, flush=True)
    return line


def emit(figures: dict[str, Any]) -> None:
    """Print the final JSON line (always the last line of the output)."""
    sys.stdout.flush()
    print(json.dumps(figures, sort_keys=False), flush=True)


def last_json(output: str) -> dict[str, Any]:
    """The figures of a bench's output: its last line, parsed."""
    lines = [line for line in output.splitlines() if line.strip()]
    if not lines:
        raise ValueError("the bench printed nothing")
    value = json.loads(lines[-1])
    if not isinstance(value, dict):
        raise ValueError(f"the last line is not a JSON object: {lines[-1][:200]}")
    return value
