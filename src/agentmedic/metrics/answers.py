"""The declared shape of the Prometheus API's answers, and their decoding.

Every 200 answer is decoded against msgspec structs in one pass, in C: a value of the wrong
type anywhere (a JSON true for a number, a string for the labels, a list where a
``[time, value]`` pair belongs) fails the decode and the answer is ``InvalidResponse``,
never a crash further on. Sample values are JSON strings (``"0.25"``, ``"NaN"``,
``"+Inf"``); the fast decoders read them as floats in C (``strict=False``), which refuses
Go's ``"+Inf"`` (and a JSON true or false): such an answer takes the exact decoder, which
keeps the string and parses it with ``float()``.

Three readers:

- :func:`decode_agent_vector`, the operator's hot path: an instant vector read straight into
  ``namespace → agent name → value`` maps. Its structs hold only the agent and namespace
  labels and are not tracked by the garbage collector (``gc=False``: they hold strings and
  floats only), so 10,000 samples allocate no per-sample dict, tuple or list. Anything it
  is not sure of (another label, a missing agent label, a duplicate, an infinity, a
  histogram, another result type, a malformed answer) yields ``None``, and the caller
  takes the general path, which keeps every message and fault reason as they were.
- :func:`decode_query` and :func:`decode_range`: any instant or range answer, into
  :class:`~agentmedic.metrics.backend.Sample` and
  :class:`~agentmedic.metrics.backend.RangeSeries`.
- :func:`decode_exact`: the general path behind both, which says where an answer is
  malformed (:class:`MalformedAnswerError`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter
from typing import Any, Literal

import msgspec

from agentmedic.metrics.backend import AgentValues, RangeSeries, Sample

__all__ = [
    "AgentVector",
    "Decoded",
    "MalformedAnswerError",
    "decode_agent_vector",
    "decode_exact",
    "decode_query",
    "decode_range",
    "server_seconds",
    "snippet",
]

MAX_BODY_IN_MESSAGE = 300


class MalformedAnswerError(Exception):
    """A 200 answer that is not a well-formed successful answer of the API."""


def snippet(body: bytes) -> str:
    """The start of a body, printable, for a message."""
    text = body[: MAX_BODY_IN_MESSAGE * 4].decode("utf-8", "replace").strip().replace("\n", " ")
    if len(text) > MAX_BODY_IN_MESSAGE:
        text = text[:MAX_BODY_IN_MESSAGE] + "..."
    return repr(text) if text else "an empty body"


_NO_RAW = msgspec.Raw()


def _given(raw: msgspec.Raw) -> bool:
    return bool(raw) and bytes(raw) != b"null"


class _Timings(msgspec.Struct):
    execTotalTime: float | None = None  # noqa: N815


class _Stats(msgspec.Struct):
    timings: _Timings | None = None


def server_seconds(stats: _Stats | None) -> float | None:
    """The backend's own evaluation time, when it reported one."""
    if stats is None or stats.timings is None:
        return None
    return stats.timings.execTotalTime


# -- the operator's hot path: an instant vector by agent


class _Point(msgspec.Struct, array_like=True, gc=False, forbid_unknown_fields=True):
    """``[time, "value"]``; exactly two elements."""

    time: float
    value: float


@lru_cache(maxsize=64)
def _agent_vector_decoder(agent_label: str, namespace_label: str | None) -> Any:
    """A decoder of answers whose labels are the agent label and the namespace label only.

    The label struct forbids other labels: an answer carrying any other label (a raw query
    not aggregated by agent) fails here and is read by the general path, which checks it
    all. Absent labels are ``UNSET``, so a JSON null is refused rather than taken for absence.
    """
    fields: list[tuple[str, Any, Any]] = [("name", str | msgspec.UnsetType, msgspec.UNSET)]
    rename = {"name": agent_label}
    if namespace_label is not None:
        fields.append(("namespace", str | msgspec.UnsetType, msgspec.UNSET))
        rename["namespace"] = namespace_label
    labels = msgspec.defstruct(
        "_AgentLabels", fields, rename=rename, gc=False, forbid_unknown_fields=True
    )
    item = msgspec.defstruct(
        "_AgentSample",
        [("metric", labels), ("value", _Point | None, None), ("histogram", msgspec.Raw, _NO_RAW)],
        gc=False,
    )
    data = msgspec.defstruct(
        "_AgentVectorData",
        [("resultType", str), ("result", list[item]), ("stats", _Stats | None, None)],  # type: ignore[valid-type]
    )
    answer = msgspec.defstruct(
        "_AgentVectorAnswer",
        [("status", str), ("data", data), ("warnings", list[str] | None, None)],
    )
    return msgspec.json.Decoder(answer, strict=False)


@dataclass(frozen=True, slots=True)
class AgentVector:
    """An instant vector of one sample per agent, keyed by namespace and agent name."""

    values: AgentValues
    warnings: tuple[str, ...] = ()
    server: float | None = None


def decode_agent_vector(
    body: bytes, agent_label: str, namespace_label: str | None
) -> AgentVector | None:
    """The answer as :class:`AgentVector`, or ``None`` when the general path must read it.

    ``None`` for anything but a successful vector of finite-or-NaN values, each carrying the
    agent label, at most one per (namespace, agent), with no other label; the general path
    then either reads it or says exactly what is wrong with it. The columns are pulled out
    of the decoded structs by C loops (``map`` over ``attrgetter``), not Python ones.
    """
    try:
        answer = _agent_vector_decoder(agent_label, namespace_label).decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    data = answer.data
    if answer.status != "success" or data.resultType != "vector":
        return None
    items = data.result
    points = list(map(_VALUE, items))
    if None in points:
        return None  # a native histogram, or a sample without a value
    names = list(map(_NAME, items))
    values = list(map(_VALUE, points))
    if msgspec.UNSET in names or math.inf in values or -math.inf in values:
        return None  # no agent label, or an infinity: the general path says which
    if namespace_label is None:
        namespaces: list[Any] = [None]
    else:
        namespaces = list(map(_NAMESPACE, items))
    distinct = set(namespaces) if items else set()
    if not distinct:
        by_namespace: AgentValues = {}
    elif len(distinct) == 1:
        only = distinct.pop()
        by_name = dict(zip(names, values, strict=True))
        if len(by_name) != len(names):
            return None  # several series for one agent
        by_namespace = {None if only is msgspec.UNSET else only: by_name}
    else:
        grouped = _by_namespace(namespaces, names, values)
        if grouped is None:
            return None
        by_namespace = grouped
    return AgentVector(by_namespace, tuple(answer.warnings or ()), server_seconds(data.stats))


_VALUE = attrgetter("value")
_NAME = attrgetter("metric.name")
_NAMESPACE = attrgetter("metric.namespace")


def _by_namespace(
    namespaces: list[Any], names: list[str], values: list[float]
) -> AgentValues | None:
    """Samples of several namespaces grouped; ``None`` on a duplicate."""
    out: AgentValues = {}
    for namespace, name, value in zip(namespaces, names, values, strict=True):
        key = None if namespace is msgspec.UNSET else namespace
        group = out.get(key)
        if group is None:
            group = out[key] = {}
        elif name in group:
            return None
        group[name] = value
    return out


# -- any answer


class _VectorItemFast(msgspec.Struct):
    metric: dict[str, str]
    value: tuple[float, float] | None = None
    histogram: msgspec.Raw = _NO_RAW


class _VectorItem(msgspec.Struct):
    metric: dict[str, str]
    value: tuple[float, str] | None = None
    histogram: msgspec.Raw = _NO_RAW


class _SeriesFast(msgspec.Struct):
    metric: dict[str, str]
    values: tuple[tuple[float, float], ...] = ()
    histograms: msgspec.Raw = _NO_RAW


class _Series(msgspec.Struct):
    metric: dict[str, str]
    values: tuple[tuple[float, str], ...] = ()
    histograms: msgspec.Raw = _NO_RAW


class _VectorDataFast(msgspec.Struct):
    resultType: str  # noqa: N815
    result: list[_VectorItemFast]
    stats: _Stats | None = None


class _MatrixDataFast(msgspec.Struct):
    resultType: str  # noqa: N815
    result: list[_SeriesFast]
    stats: _Stats | None = None


class _VectorAnswerFast(msgspec.Struct):
    status: str
    data: _VectorDataFast
    warnings: list[str] | None = None


class _MatrixAnswerFast(msgspec.Struct):
    status: str
    data: _MatrixDataFast
    warnings: list[str] | None = None


class _Data(msgspec.Struct):
    resultType: Literal["vector", "matrix", "scalar", "string"]  # noqa: N815
    result: msgspec.Raw
    stats: _Stats | None = None


class _Answer(msgspec.Struct):
    status: Literal["success", "error"]
    data: _Data | None = None
    warnings: list[str] | None = None
    errorType: str | None = None  # noqa: N815
    error: str | None = None


_VECTOR_FAST = msgspec.json.Decoder(_VectorAnswerFast, strict=False)
_MATRIX_FAST = msgspec.json.Decoder(_MatrixAnswerFast, strict=False)
_ANSWER = msgspec.json.Decoder(_Answer)
_VECTOR = msgspec.json.Decoder(list[_VectorItem])
_MATRIX = msgspec.json.Decoder(list[_Series])
_PAIR = msgspec.json.Decoder(tuple[float, str])

ResultType = Literal["vector", "matrix", "scalar", "string"]


@dataclass(frozen=True, slots=True)
class Decoded:
    """Any answer, decoded."""

    kind: ResultType
    samples: tuple[Sample, ...] = ()
    series: tuple[RangeSeries, ...] = ()
    scalar: float | None = None
    warnings: tuple[str, ...] = ()
    server: float | None = None


def decode_query(body: bytes) -> Decoded:
    """An instant query's answer. The common answer, a vector of plain numbers, is read
    by one decoder straight into samples; anything else by :func:`decode_exact`."""
    try:
        fast = _VECTOR_FAST.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return decode_exact(body)
    if fast.status != "success" or fast.data.resultType != "vector":
        return decode_exact(body)
    samples = []
    for item in fast.data.result:
        if item.value is not None:
            samples.append(Sample(item.metric, item.value[1]))
        elif not _given(item.histogram):
            raise MalformedAnswerError("a vector sample has neither a value nor a histogram")
        # A native histogram ("histogram" instead of "value") has no float value.
    return Decoded(
        "vector",
        samples=tuple(samples),
        warnings=tuple(fast.warnings or ()),
        server=server_seconds(fast.data.stats),
    )


def decode_range(body: bytes) -> Decoded:
    """A range query's answer: a week of a hundred agents at a one-minute step is a million
    points per series key, which the fast decoder reads at about 0.4 us a point."""
    try:
        fast = _MATRIX_FAST.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return decode_exact(body)
    if fast.status != "success" or fast.data.resultType != "matrix":
        return decode_exact(body)
    return Decoded(
        "matrix",
        series=tuple(RangeSeries(s.metric, s.values) for s in fast.data.result),
        warnings=tuple(fast.warnings or ()),
        server=server_seconds(fast.data.stats),
    )


def decode_exact(body: bytes) -> Decoded:
    """Any answer, decoded against the API's declared shape; :class:`MalformedAnswerError` says
    where it is not. A ``status: error`` with HTTP 200 is not how Prometheus reports a bad
    query (that is a 400 or 422), so it is not taken for one."""
    try:
        answer = _ANSWER.decode(body)
    except msgspec.ValidationError as exc:  # before DecodeError, its base class
        raise MalformedAnswerError(f"the answer is not a Prometheus API response ({exc})") from None
    except msgspec.DecodeError:
        raise MalformedAnswerError(f"the answer is not JSON ({snippet(body)})") from None
    if answer.status != "success":
        detail = f": {answer.error[:300]}" if answer.error else ""
        raise MalformedAnswerError(f"HTTP 200 with status error{detail}")
    if answer.data is None:
        raise MalformedAnswerError("a successful answer without data")
    kind = answer.data.resultType
    warnings = tuple(answer.warnings or ())
    server = server_seconds(answer.data.stats)
    try:
        return _decode_result(kind, answer.data.result, warnings, server)
    except msgspec.ValidationError as exc:
        raise MalformedAnswerError(f"the {kind} result is malformed ({exc})") from None


def _decode_result(
    kind: ResultType, raw: msgspec.Raw, warnings: tuple[str, ...], server: float | None
) -> Decoded:
    if kind == "vector":
        samples = []
        for item in _VECTOR.decode(raw):
            if item.value is not None:
                samples.append(Sample(item.metric, _number(item.value[1])))
            elif not _given(item.histogram):
                raise MalformedAnswerError("a vector sample has neither a value nor a histogram")
        return Decoded(kind, samples=tuple(samples), warnings=warnings, server=server)
    if kind == "matrix":
        series = tuple(
            RangeSeries(s.metric, tuple((t, _number(v)) for t, v in s.values))
            for s in _MATRIX.decode(raw)
        )
        return Decoded(kind, series=series, warnings=warnings, server=server)
    _, text = _PAIR.decode(raw)
    if kind == "scalar":
        return Decoded(kind, scalar=_number(text), warnings=warnings, server=server)
    try:
        value: float | None = float(text)
    except ValueError:
        value = None  # a string result need not be a number
    return Decoded(kind, scalar=value, warnings=warnings, server=server)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise MalformedAnswerError(f"the sample value {text[:40]!r} is not a number") from None
