"""Logging for the operator: one JSON object per line in-cluster, plain text on a terminal."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from agentmedic.operator.settings import LogFormat

__all__ = ["JsonFormatter", "configure_logging"]

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
# kopf's per-object loggers attach these to every record: the operator's whole settings object
# (some 2.5 KB of repr, once per line) and whether to post the line as an Event. Its own JSON
# formatter leaves them out as well; the object's reference is kept, as an object.
_KOPF_INTERNAL = {"settings", "k8s_skip"}
_KOPF_REF = "k8s_ref"


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...extra}``, one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in _STANDARD or key in _KOPF_INTERNAL or key.startswith("_"):
                continue
            if key == _KOPF_REF and isinstance(value, dict):
                out["object"] = {k: str(v) for k, v in value.items()}
            else:
                out[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(fmt: LogFormat, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt is LogFormat.JSON:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Client libraries log request URLs at INFO/DEBUG; URLs may carry webhook tokens.
    for noisy in ("httpx", "httpcore", "urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    # APScheduler logs every run at INFO. Its warnings stay: a cycle never overlaps itself
    # by design (operator/scheduler.py), so "maximum number of running instances" does not
    # occur, and a missed run (the event loop was blocked) is worth a line.
    for chatty in ("apscheduler.scheduler", "apscheduler.executors"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
