"""The series names are defined once and the SDK still stands alone.

:mod:`agentmedic.api.metric_names` holds the names of the series the SDK exports; the SDK,
the metric catalog and the reports read them there. The SDK imports that module and no
operator dependency, so an agent can import it without them.
"""

from __future__ import annotations

import subprocess
import sys

from agentmedic.api import metric_names
from agentmedic.instrument.series import FAMILIES
from agentmedic.metrics.catalog import SERIES

SERIES_NAMES = {
    value for name, value in vars(metric_names).items() if name.isupper() and isinstance(value, str)
}


def test_the_sdk_exports_exactly_the_named_series() -> None:
    assert {family.name for family in FAMILIES} == SERIES_NAMES


def test_the_catalog_reads_only_named_series() -> None:
    assert set(SERIES.values()) <= SERIES_NAMES
    assert set(SERIES.values()) < {family.name for family in FAMILIES}


def test_the_sdk_imports_without_the_operators_dependencies() -> None:
    # Each of these made unimportable: the SDK and its series must still load.
    blocked = ["pydantic", "httpx", "kubernetes", "kopf", "apscheduler", "msgspec", "yaml"]
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "import agentmedic.instrument, agentmedic.instrument.series\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('agentmedic.')\n"
        "                and not m.startswith('agentmedic.instrument'))\n"
        "print(','.join(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "agentmedic.api,agentmedic.api.metric_names"
