"""The OpenAI hook with the real ``openai`` client against a loopback server that answers in
the OpenAI API's shapes: Chat Completions and Responses, plain and streaming, and errors."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
import pytest
from prometheus_client import CollectorRegistry

from agentmedic.instrument import AgentMonitor, ExecutionRecord, instrument_openai

# Models the fake server knows; anything else answers normally.
SLOW = "gpt-4o-mini-slow"  # answers after SERVER_DELAY_S
RATE_LIMITED = "gpt-4o-rate-limited"  # 429
BROKEN = "gpt-4o-broken"  # 500
SERVER_DELAY_S = 0.15


@dataclass
class FakeOpenAI:
    """A loopback HTTP server speaking the OpenAI API's response shapes."""

    base_url: str
    requests: list[dict[str, Any]] = field(default_factory=list)


def chat_completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": f"{model}-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Refunds take 5 days."},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 420,
            "completion_tokens": 37,
            "total_tokens": 457,
            "prompt_tokens_details": {"cached_tokens": 128},
        },
    }


def chat_chunks(model: str, include_usage: bool) -> Iterator[dict[str, Any]]:
    base = {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1_700_000_000}
    for piece in ("Refunds ", "take ", "5 days."):
        yield {
            **base,
            "model": f"{model}-2024-07-18",
            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
        }
    if include_usage:
        yield {
            **base,
            "model": f"{model}-2024-07-18",
            "choices": [],
            "usage": {"prompt_tokens": 300, "completion_tokens": 3, "total_tokens": 303},
        }


def response_object(model: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1_700_000_000,
        "status": status,
        "model": f"{model}-2025-04-14",
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello", "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "temperature": 1.0,
        "top_p": 1.0,
        "usage": {
            "input_tokens": 1_000,
            "input_tokens_details": {"cached_tokens": 600},
            "output_tokens": 250,
            "output_tokens_details": {"reasoning_tokens": 100},
            "total_tokens": 1_250,
        },
    }


def response_events(model: str) -> Iterator[dict[str, Any]]:
    created = {**response_object(model), "status": "in_progress", "usage": None, "output": []}
    yield {"type": "response.created", "sequence_number": 0, "response": created}
    yield {
        "type": "response.output_text.delta",
        "sequence_number": 1,
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": "Hello",
        "logprobs": [],
    }
    yield {"type": "response.completed", "sequence_number": 2, "response": response_object(model)}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _sse(self, events: Iterator[dict[str, Any]], named: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for event in events:
            prefix = f"event: {event['type']}\n" if named else ""
            self.wfile.write(f"{prefix}data: {json.dumps(event)}\n\n".encode())
        if not named:
            self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, **body})
        model = body.get("model", "")
        if model == SLOW:
            time.sleep(SERVER_DELAY_S)  # the simulated model latency under test
        if model == RATE_LIMITED:
            error = {"message": "Rate limit reached", "type": "requests", "code": "rate_limit"}
            return self._json(429, {"error": error})
        if model == BROKEN:
            return self._json(500, {"error": {"message": "boom", "type": "server_error"}})
        streaming = bool(body.get("stream"))
        if self.path.endswith("/chat/completions"):
            if streaming:
                usage = bool((body.get("stream_options") or {}).get("include_usage"))
                return self._sse(chat_chunks(model, usage), named=False)
            return self._json(200, chat_completion(model))
        if self.path.endswith("/responses"):
            if streaming:
                return self._sse(response_events(model), named=True)
            return self._json(200, response_object(model))
        return self._json(404, {"error": {"message": "no such route"}})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[dict[str, Any]]


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield FakeOpenAI(f"http://127.0.0.1:{server.server_port}/v1", server.requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class Setup:
    monitor: AgentMonitor
    registry: CollectorRegistry
    records: list[ExecutionRecord]
    client: openai.OpenAI
    aclient: openai.AsyncOpenAI

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def gen_ai(self, name: str, request: str, response: str, **extra: str) -> float | None:
        labels = {
            "agent": "support-bot",
            "gen_ai_operation_name": "chat",
            "gen_ai_provider_name": "openai",
            "gen_ai_request_model": request,
            "gen_ai_response_model": response,
            **extra,
        }
        return self.value(name, **labels)


@pytest.fixture
def setup(fake_openai: FakeOpenAI) -> Iterator[Setup]:
    registry = CollectorRegistry()
    records: list[ExecutionRecord] = []
    monitor = AgentMonitor("support-bot", registry, model="gpt-4o-mini", on_record=records.append)
    client = openai.OpenAI(api_key="test", base_url=fake_openai.base_url, max_retries=0)
    aclient = openai.AsyncOpenAI(api_key="test", base_url=fake_openai.base_url, max_retries=0)
    instrument_openai(client, monitor)
    instrument_openai(aclient, monitor)
    fake_openai.requests.clear()
    yield Setup(monitor, registry, records, client, aclient)
    client.close()


MESSAGES: list[Any] = [{"role": "user", "content": "How long do refunds take?"}]


def test_chat_completion_usage_model_and_latency_go_to_the_open_execution(
    setup: Setup,
) -> None:
    with setup.monitor.execution(session_id="s-1"):
        reply = setup.client.chat.completions.create(model=SLOW, messages=MESSAGES)
    assert reply.choices[0].message.content == "Refunds take 5 days."  # caller's result intact
    (record,) = setup.records
    assert record["llm_calls"] == 1
    assert record["tokens"] == {"input": 420, "output": 37, "total": 457, "cached_input": 128}
    assert record["latency_ms"] >= SERVER_DELAY_S * 1000
    # SLOW is a made-up model with no price: its cost is unknown, not guessed.
    assert record["cost_usd"] is None
    response = f"{SLOW}-2024-07-18"
    duration = setup.gen_ai(
        "gen_ai_client_operation_duration_seconds_sum", SLOW, response, error_type=""
    )
    assert duration is not None
    assert duration >= SERVER_DELAY_S
    assert (
        setup.gen_ai("gen_ai_client_token_usage_sum", SLOW, response, gen_ai_token_type="input")
        == 420
    )
    assert (
        setup.gen_ai("gen_ai_client_token_usage_sum", SLOW, response, gen_ai_token_type="output")
        == 37
    )


def test_chat_completion_is_priced_from_the_response_model(setup: Setup) -> None:
    with setup.monitor.execution():
        setup.client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    (record,) = setup.records
    # gpt-4o-mini-2024-07-18 → gpt-4o-mini: 292 input, 128 cached, 37 output
    expected = (292 * 0.15 + 128 * 0.075 + 37 * 0.60) / 1e6
    assert record["cost_usd"] == pytest.approx(expected)
    assert setup.value("agent_cost_usd_total", agent="support-bot", model="gpt-4o-mini") == (
        pytest.approx(expected)
    )


def test_chat_stream_gets_usage_from_the_final_chunk_the_hook_asked_for(
    setup: Setup, fake_openai: FakeOpenAI
) -> None:
    with setup.monitor.execution(session_id="stream"):
        stream = setup.client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Refunds take 5 days."
    assert fake_openai.requests[-1]["stream_options"] == {"include_usage": True}
    (record,) = setup.records
    assert record["tokens"]["input"] == 300
    assert record["tokens"]["output"] == 3
    assert record["cost_usd"] == pytest.approx((300 * 2.5 + 3 * 10.0) / 1e6)
    assert (
        setup.gen_ai(
            "gen_ai_client_operation_duration_seconds_count",
            "gpt-4o",
            "gpt-4o-2024-07-18",
            error_type="",
        )
        == 1
    )


def test_chat_stream_keeps_the_callers_stream_options(
    setup: Setup, fake_openai: FakeOpenAI
) -> None:
    stream = setup.client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_obfuscation": False},
    )
    with stream:
        chunks = list(stream)
    assert fake_openai.requests[-1]["stream_options"] == {
        "include_obfuscation": False,
        "include_usage": True,
    }
    assert chunks[-1].usage is not None
    stream = setup.client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": False}
    )
    assert all(c.usage is None for c in stream)
    # No usage asked for: the call still counts, its tokens are unknown rather than zero.
    assert [r["tokens"]["total"] for r in setup.records] == [303, 0]
    assert [r["llm_calls"] for r in setup.records] == [1, 1]


async def test_async_chat_stream_is_recorded(setup: Setup) -> None:
    async with setup.monitor.execution(session_id="async-stream"):
        stream = await setup.aclient.chat.completions.create(
            model="gpt-4.1-nano", messages=MESSAGES, stream=True
        )
        pieces = [c.choices[0].delta.content async for c in stream if c.choices]
    assert "".join(p or "" for p in pieces) == "Refunds take 5 days."
    (record,) = setup.records
    assert record["tokens"]["total"] == 303
    assert record["cost_usd"] == pytest.approx((300 * 0.10 + 3 * 0.40) / 1e6)
    await setup.aclient.close()


async def test_async_chat_completion_outside_an_execution_is_a_standalone_execution(
    setup: Setup,
) -> None:
    reply = await setup.aclient.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    assert reply.usage is not None
    (record,) = setup.records
    assert record["session_id"] is None
    assert record["model"] == "gpt-4.1"
    assert record["status"] == "success"
    assert record["tokens"]["total"] == 457
    assert (
        setup.value(
            "agent_executions_total", agent="support-bot", model="gpt-4.1", status="success"
        )
        == 1
    )
    await setup.aclient.close()


def test_responses_api_usage_including_cached_input(setup: Setup) -> None:
    with setup.monitor.execution(model="gpt-4.1"):
        response = setup.client.responses.create(model="gpt-4.1", input="hi")
    assert response.output_text == "Hello"
    (record,) = setup.records
    assert record["tokens"] == {"input": 1_000, "output": 250, "total": 1_250, "cached_input": 600}
    # gpt-4.1-2025-04-14 → gpt-4.1: 400 input at 2.00, 600 cached at 0.50, 250 output at 8.00
    assert record["cost_usd"] == pytest.approx((400 * 2.0 + 600 * 0.5 + 250 * 8.0) / 1e6)
    assert (
        setup.gen_ai(
            "gen_ai_client_token_usage_sum",
            "gpt-4.1",
            "gpt-4.1-2025-04-14",
            gen_ai_token_type="output",
        )
        == 250
    )


async def test_responses_api_stream_takes_usage_from_the_completed_event(setup: Setup) -> None:
    async with setup.monitor.execution(model="o4-mini"):
        stream = await setup.aclient.responses.create(model="o4-mini", input="hi", stream=True)
        kinds = [event.type async for event in stream]
    assert kinds == ["response.created", "response.output_text.delta", "response.completed"]
    (record,) = setup.records
    assert record["tokens"]["input"] == 1_000
    assert record["tokens"]["output"] == 250
    assert (
        setup.gen_ai(
            "gen_ai_client_operation_duration_seconds_count",
            "o4-mini",
            "o4-mini-2025-04-14",
            error_type="",
        )
        == 1
    )
    await setup.aclient.close()


def test_sync_responses_stream_is_recorded(setup: Setup) -> None:
    with setup.client.responses.create(model="gpt-4.1-mini", input="hi", stream=True) as stream:
        events = list(stream)
    assert events[-1].type == "response.completed"
    (record,) = setup.records  # standalone: no execution was open
    assert record["model"] == "gpt-4.1-mini"
    assert record["cost_usd"] == pytest.approx((400 * 0.4 + 600 * 0.1 + 250 * 1.6) / 1e6)


def test_rate_limit_error_is_recorded_with_its_type_and_propagates(setup: Setup) -> None:
    def run() -> None:
        with setup.monitor.execution(session_id="limited"):
            setup.client.chat.completions.create(model=RATE_LIMITED, messages=MESSAGES)

    with pytest.raises(openai.RateLimitError):
        run()
    (record,) = setup.records
    assert record["status"] == "error"
    assert record["error_type"] == "RateLimitError"
    assert record["tokens"]["total"] == 0
    assert record["llm_calls"] == 1
    assert (
        setup.gen_ai(
            "gen_ai_client_operation_duration_seconds_count",
            RATE_LIMITED,
            "",
            error_type="RateLimitError",
        )
        == 1
    )


def test_server_error_outside_an_execution_is_a_failed_standalone_execution(
    setup: Setup,
) -> None:
    with pytest.raises(openai.InternalServerError):
        setup.client.responses.create(model=BROKEN, input="hi")
    (record,) = setup.records
    assert record["status"] == "error"
    assert record["error_type"] == "InternalServerError"
    assert record["model"] == BROKEN
    assert (
        setup.value("agent_executions_total", agent="support-bot", model=BROKEN, status="error")
        == 1
    )
    assert (
        setup.gen_ai(
            "gen_ai_client_operation_duration_seconds_count",
            BROKEN,
            "",
            error_type="InternalServerError",
        )
        == 1
    )


async def test_async_error_inside_an_execution_that_recovers_keeps_it_successful(
    setup: Setup,
) -> None:
    async with setup.monitor.execution() as ex:
        try:
            await setup.aclient.chat.completions.create(model=BROKEN, messages=MESSAGES)
        except openai.InternalServerError:
            await setup.aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert [c.error_type for c in ex.llm_calls] == ["InternalServerError", None]
    (record,) = setup.records
    assert record["status"] == "success"
    assert record["llm_calls"] == 2
    assert record["tokens"]["total"] == 457
    await setup.aclient.close()


def test_stream_abandoned_early_is_recorded_once_without_tokens(setup: Setup) -> None:
    with setup.monitor.execution():
        stream = setup.client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True
        )
        for _ in stream:
            break
        stream.close()
    (record,) = setup.records
    assert record["llm_calls"] == 1
    assert record["status"] == "success"
    assert record["tokens"]["total"] == 0


def test_instrumenting_twice_records_each_call_once(setup: Setup) -> None:
    instrument_openai(setup.client, setup.monitor)
    setup.client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(setup.records) == 1
    assert setup.records[0]["llm_calls"] == 1
