"""Moments as people type them on a command line: ``now-7d``, ``2024-03-05``, RFC 3339.

Accepted forms (``now`` is a parameter, so callers and tests control the clock):

- ``now``, ``now-7d``, ``now-1h30m``, ``now+15m``: relative to ``now``, with the policy
  duration syntax (units ms, s, m, h, d, w);
- ``2024-03-05``: that date at 00:00 UTC;
- ``2024-03-05T06:00:00Z``, ``2024-03-05T08:00:00+02:00``, ``2024-03-05 06:00``: RFC 3339
  (a space instead of ``T`` is accepted; a time without an offset is UTC);
- ``1709618400``: seconds since the epoch, as Prometheus accepts them.

The result is always a timezone-aware UTC :class:`~datetime.datetime`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from agentmedic.api.durations import parse_duration

__all__ = ["parse_time"]

_RELATIVE = re.compile(r"^now\s*(?:(?P<sign>[+-])\s*(?P<amount>\S+))?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EPOCH = re.compile(r"^\d{9,10}(\.\d+)?$")

FORMS = "now, now-7d, now-1h30m, 2024-03-05, 2024-03-05T06:00:00Z or unix seconds"
"""The accepted forms, for error messages and --help."""


def parse_time(text: str, now: datetime) -> datetime:
    """Parse ``text`` into an aware UTC datetime; ``ValueError`` names the accepted forms."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    raw = text.strip()
    lowered = raw.lower()
    relative = _RELATIVE.match(lowered)
    if relative is not None:
        base = now.astimezone(UTC)
        if relative.group("sign") is None:
            return base
        try:
            offset = parse_duration(relative.group("amount"))
        except ValueError:
            raise ValueError(
                f"{text!r}: {relative.group('amount')!r} is not a duration; write e.g. "
                "now-7d, now-6h or now-1h30m (units: ms, s, m, h, d, w)"
            ) from None
        return base - offset if relative.group("sign") == "-" else base + offset
    if _DATE.match(raw):
        try:
            day = date.fromisoformat(raw)
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a valid date: {exc}") from None
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    if _EPOCH.match(raw):
        return datetime.fromtimestamp(float(raw), UTC)
    try:
        # Python 3.11 reads RFC 3339 including a trailing Z and a space separator.
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{text!r} is not a time; use one of: {FORMS}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
