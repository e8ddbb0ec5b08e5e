"""Record OpenAI calls without touching the agent's code: ``instrument_openai(client, monitor)``.

What is wrapped, on the given client instance only (other clients and copies made by
``client.with_options()`` are untouched):

- ``client.chat.completions.create`` and ``.parse`` (``gen_ai.operation.name`` = ``chat``,
  usage from ``prompt_tokens``/``completion_tokens``/``prompt_tokens_details.cached_tokens``);
- ``client.responses.create`` and ``.parse`` (also ``chat``, as the GenAI conventions name
  the Responses API; usage from ``input_tokens``/``output_tokens``/``cached_tokens``).

Streaming (``stream=True``) returns a thin proxy around the SDK's ``Stream``/``AsyncStream``
that behaves the same (iteration, ``with``, ``close()``, ``response``), watches the events
go by and records the call when the stream ends, fails or is closed: usage comes from the
final chunk (Chat Completions) or the ``response.completed``/``response.incomplete``/
``response.failed`` event (Responses). For Chat Completions the hook sets
``stream_options={"include_usage": True}`` when the caller did not say otherwise, so the
stream ends with one extra chunk whose ``choices`` is empty; a caller that sets
``include_usage`` to false gets no token counts. The call's duration runs from the request
until the stream ends.

Attribution: a call made while an execution is open (``with monitor.execution(...)``,
found through :mod:`contextvars` at the time of the call) becomes part of that execution:
its tokens, cost and model count in the execution's record. A call made with no execution
open is recorded as a **standalone execution** of one LLM call (status from the call, model
from the request), so an agent that only installs the hook still reports executions,
success rate, latency, tokens and spend.

Errors: a call that raises is recorded with ``error.type`` = the exception's class name
(``RateLimitError``, ``InternalServerError``, ``APITimeoutError``, ``APIConnectionError``…)
and the exception propagates unchanged. A Responses API response with status ``failed``
is recorded with ``error.type`` = its error code.

Not covered: the ``.stream()`` helper managers and ``with_streaming_response`` (record
those calls with :meth:`Execution.record_llm_call`), embeddings and other endpoints.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from agentmedic.instrument.monitor import AgentMonitor, Execution, current_execution
from agentmedic.instrument.record import LLMCall

__all__ = ["instrument_openai"]

_log = logging.getLogger("agentmedic.instrument")
_MARK = "__agentmedic_instrumented__"

ClientT = TypeVar("ClientT")


def instrument_openai(client: ClientT, monitor: AgentMonitor) -> ClientT:
    """Wrap ``client`` (``openai.OpenAI`` or ``openai.AsyncOpenAI``) so its chat-completion
    and Responses API calls are recorded by ``monitor``; returns the same client.
    Calling it twice on one client is harmless."""
    # The client exists, so openai is already imported: these imports cost nothing and
    # keep `import agentmedic.instrument` free of openai.
    from openai import AsyncStream, Stream

    stream_types = (Stream, AsyncStream)
    targets: list[tuple[Any, str, str]] = []
    chat = getattr(getattr(client, "chat", None), "completions", None)
    responses = getattr(client, "responses", None)
    if chat is None and responses is None:
        raise TypeError(f"{type(client).__name__} is not an OpenAI client")
    for resource, api in ((chat, "chat_completions"), (responses, "responses")):
        if resource is None:
            continue
        for method in ("create", "parse"):
            if callable(getattr(resource, method, None)):
                targets.append((resource, method, api))
    for resource, method, api in targets:
        original = getattr(resource, method)
        if getattr(original, _MARK, False):
            continue
        # The SDK decorates its async methods with sync wrappers: look beneath them.
        if inspect.iscoroutinefunction(inspect.unwrap(original)):
            wrapper: Callable[..., Any] = _wrap_async(original, monitor, api, stream_types)
        else:
            wrapper = _wrap_sync(original, monitor, api, stream_types)
        setattr(wrapper, _MARK, True)
        setattr(resource, method, wrapper)
    return client


class _Call:
    """What one request has told us so far; records itself exactly once."""

    __slots__ = (
        "api",
        "cached_input_tokens",
        "done",
        "error_type",
        "execution",
        "input_tokens",
        "monitor",
        "output_tokens",
        "request_model",
        "response_model",
        "start",
        "wall_start",
    )

    def __init__(self, monitor: AgentMonitor, api: str, kwargs: dict[str, Any]) -> None:
        self.monitor = monitor
        # Captured now, not when a stream ends: the call belongs to the execution that
        # made it.
        self.execution: Execution | None = current_execution()
        self.api = api
        model = kwargs.get("model")
        self.request_model = model if isinstance(model, str) else None
        self.response_model: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cached_input_tokens = 0
        self.error_type: str | None = None
        self.wall_start = time.time()
        self.start = time.perf_counter()
        self.done = False

    def fail(self, exc: BaseException) -> None:
        self.error_type = type(exc).__qualname__

    def see_response(self, response: Any) -> None:
        """A whole ChatCompletion or Response (Responses API)."""
        self._see_model_and_usage(response)
        if getattr(response, "status", None) == "failed":
            error = getattr(response, "error", None)
            code = getattr(error, "code", None)
            self.error_type = str(code) if code else "response_failed"

    def _see_model_and_usage(self, answer: Any) -> None:
        """The model and the token counts of a response or chunk, where it carries them."""
        model = getattr(answer, "model", None)
        if isinstance(model, str) and model:
            self.response_model = model
        usage = getattr(answer, "usage", None)
        if usage is not None:
            self._see_usage(usage)

    def _see_usage(self, usage: Any) -> None:
        if self.api == "chat_completions":
            inp = getattr(usage, "prompt_tokens", None)
            out = getattr(usage, "completion_tokens", None)
            details = getattr(usage, "prompt_tokens_details", None)
        else:
            inp = getattr(usage, "input_tokens", None)
            out = getattr(usage, "output_tokens", None)
            details = getattr(usage, "input_tokens_details", None)
        if isinstance(inp, int):
            self.input_tokens = inp
        if isinstance(out, int):
            self.output_tokens = out
        cached = getattr(details, "cached_tokens", None) if details is not None else None
        if isinstance(cached, int):
            self.cached_input_tokens = cached

    def see_event(self, item: Any) -> None:
        """One streamed chunk (Chat Completions) or event (Responses)."""
        if self.api == "chat_completions":
            self._see_model_and_usage(item)
            return
        kind = getattr(item, "type", None)
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            self.see_response(getattr(item, "response", None))
        elif kind == "response.created":
            model = getattr(getattr(item, "response", None), "model", None)
            if isinstance(model, str) and model:
                self.response_model = model
        elif kind == "error":
            code = getattr(item, "code", None)
            self.error_type = str(code) if code else "error"

    def abort(self, exc: BaseException) -> None:
        """The request raised: record the call as failed."""
        self.fail(exc)
        self.finish()

    @contextlib.contextmanager
    def aborting(self) -> Iterator[None]:
        """Around the request: if it raises, the call is recorded as failed."""
        try:
            yield
        except BaseException as exc:
            self.abort(exc)
            raise

    def answer(
        self, result: Any, stream_types: tuple[type, ...], stream: Callable[[Any, _Call], Any]
    ) -> Any:
        """What the wrapper returns: a recording stand-in for a stream, else the response."""
        if isinstance(result, stream_types):
            return stream(result, self)
        return self.settle(result)

    def settle(self, response: Any) -> Any:
        """A complete (not streamed) response: record the call; return the response."""
        self.see_response(response)
        self.finish()
        return response

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            self._record(time.perf_counter() - self.start)
        except Exception:
            _log.exception("recording an OpenAI call failed")

    def _record(self, duration: float) -> None:
        call = LLMCall(
            request_model=self.request_model,
            response_model=self.response_model,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cached_input_tokens=self.cached_input_tokens,
            duration_s=duration,
            error_type=self.error_type,
            operation="chat",
        )
        execution = self.execution
        if execution is not None and execution.record is None:
            execution.record_llm_call(call)
            return
        self.monitor.record_execution(
            latency_s=duration,
            status="error" if self.error_type else "success",
            model=self.request_model or self.response_model,
            error_type=self.error_type,
            llm_calls=[call],
            timestamp=self.wall_start,
        )


def _prepare(api: str, kwargs: dict[str, Any]) -> bool:
    """Whether the request streams; asks chat streams to end with a usage chunk."""
    streaming = kwargs.get("stream") is True
    if streaming and api == "chat_completions":
        options = kwargs.get("stream_options")
        if not isinstance(options, dict):
            kwargs["stream_options"] = {"include_usage": True}
        elif "include_usage" not in options:
            kwargs["stream_options"] = {**options, "include_usage": True}
    return streaming


def _wrap_sync(
    original: Callable[..., Any], monitor: AgentMonitor, api: str, stream_types: tuple[type, ...]
) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _prepare(api, kwargs)
        call = _Call(monitor, api, kwargs)
        with call.aborting():
            result = original(*args, **kwargs)
        return call.answer(result, stream_types, _SyncStream)

    return wrapper


def _wrap_async(
    original: Callable[..., Any], monitor: AgentMonitor, api: str, stream_types: tuple[type, ...]
) -> Callable[..., Any]:
    @functools.wraps(original)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        _prepare(api, kwargs)
        call = _Call(monitor, api, kwargs)
        with call.aborting():
            result = await original(*args, **kwargs)
        return call.answer(result, stream_types, _AsyncStream)

    return wrapper


class _Recording:
    """What both stream stand-ins share: the wrapped stream's other attributes pass
    through, and a stream dropped without being read or closed is still a call that
    happened."""

    def __init__(self, stream: Any, call: _Call) -> None:
        self._stream = stream
        self._call = call

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[_Call]:
        """Around reading the stream: a failure is recorded, and the call finishes either way."""
        call = self._call
        try:
            yield call
        except Exception as exc:
            call.fail(exc)
            raise
        finally:
            call.finish()

    def __del__(self) -> None:
        call = self.__dict__.get("_call")
        if call is not None:
            call.finish()


class _SyncStream(_Recording):
    """Stands in for ``openai.Stream``: same iteration and closing, plus recording."""

    def __init__(self, stream: Any, call: _Call) -> None:
        super().__init__(stream, call)
        self._iterator = self._observe()

    def _observe(self) -> Iterator[Any]:
        with self._reading() as call:
            for item in self._stream:
                call.see_event(item)
                yield item

    def __iter__(self) -> Iterator[Any]:
        return self._iterator

    def __next__(self) -> Any:
        return next(self._iterator)

    def __enter__(self) -> _SyncStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP response; the call is recorded with what was seen so far."""
        try:
            self._stream.close()
        finally:
            self._call.finish()


class _AsyncStream(_Recording):
    """Stands in for ``openai.AsyncStream``: same iteration and closing, plus recording."""

    def __init__(self, stream: Any, call: _Call) -> None:
        super().__init__(stream, call)
        self._iterator = self._observe()

    async def _observe(self) -> AsyncIterator[Any]:
        with self._reading() as call:
            async for item in self._stream:
                call.see_event(item)
                yield item

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterator

    async def __anext__(self) -> Any:
        return await self._iterator.__anext__()

    async def __aenter__(self) -> _AsyncStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP response; the call is recorded with what was seen so far."""
        try:
            await self._stream.close()
        finally:
            self._call.finish()
