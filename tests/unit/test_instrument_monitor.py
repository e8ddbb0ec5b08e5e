"""AgentMonitor: the execution record, the Prometheus series, status and tool outcomes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agentmedic.instrument import (
    AgentMonitor,
    ExecutionRecord,
    LLMCall,
    ModelPrice,
    PriceTable,
    ToolCallRecord,
    current_execution,
)

RECORD_KEYS = [
    "session_id",
    "agent",
    "model",
    "timestamp",
    "status",
    "error_type",
    "tokens",
    "latency_ms",
    "tools_called",
    "decision_log",
    "cost_usd",
    "llm_calls",
]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def records() -> list[ExecutionRecord]:
    return []


@pytest.fixture
def monitor(registry: CollectorRegistry, records: list[ExecutionRecord]) -> AgentMonitor:
    return AgentMonitor("support-bot", registry, model="gpt-4o", on_record=records.append)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def parse_timestamp(text: str) -> datetime:
    assert text.endswith("Z")
    return datetime.fromisoformat(text[:-1] + "+00:00")


class BoomError(Exception):
    pass


def test_successful_execution_writes_every_record_field(
    monitor: AgentMonitor, records: list[ExecutionRecord]
) -> None:
    before = datetime.now(UTC)
    with monitor.execution(session_id="s-1") as ex:
        ex.decision(1, "user asks about refunds", "search_knowledge_base")
        with ex.tool("search_knowledge_base"):
            pass
        ex.decision(2, "enough context to answer", None)
        ex.usage(input_tokens=1_200, output_tokens=300, cached_input_tokens=200)
    (record,) = records
    assert list(record) == RECORD_KEYS
    assert record["session_id"] == "s-1"
    assert record["agent"] == "support-bot"
    assert record["model"] == "gpt-4o"
    assert before <= parse_timestamp(record["timestamp"]) <= datetime.now(UTC)
    assert record["status"] == "success"
    assert record["error_type"] is None
    assert record["tokens"] == {"input": 1_200, "output": 300, "total": 1_500, "cached_input": 200}
    assert record["latency_ms"] >= 0
    assert [(t["name"], t["success"]) for t in record["tools_called"]] == [
        ("search_knowledge_base", True)
    ]
    assert record["tools_called"][0]["duration_ms"] >= 0
    assert record["decision_log"] == [
        {
            "step": 1,
            "reasoning": "user asks about refunds",
            "tool_selected": "search_knowledge_base",
        },
        {"step": 2, "reasoning": "enough context to answer", "tool_selected": None},
    ]
    # gpt-4o: 1,000 input at 2.50, 200 cached at 1.25, 300 output at 10.00 per 1M
    assert record["cost_usd"] == pytest.approx((1_000 * 2.5 + 200 * 1.25 + 300 * 10) / 1e6)
    assert record["llm_calls"] == 1
    assert ex.record == record


def test_escaping_exception_fails_the_execution_and_propagates(
    monitor: AgentMonitor, registry: CollectorRegistry, records: list[ExecutionRecord]
) -> None:
    def run() -> None:
        with monitor.execution(session_id="s-2") as ex:
            ex.usage(100, 10)
            raise BoomError("model returned garbage")

    with pytest.raises(BoomError):
        run()
    (record,) = records
    assert list(record) == RECORD_KEYS
    assert record["status"] == "error"
    assert record["error_type"] == "BoomError"
    assert record["tokens"]["total"] == 110
    assert record["cost_usd"] is not None  # a failed execution still spent money
    labels = {"agent": "support-bot", "model": "gpt-4o"}
    assert value(registry, "agent_executions_total", **labels, status="error") == 1
    assert value(registry, "agent_executions_total", **labels, status="success") == 0


def test_status_set_explicitly_is_recorded_and_exceptions_win(
    monitor: AgentMonitor, records: list[ExecutionRecord]
) -> None:
    with monitor.execution() as ex:
        ex.set_status("error", error_type="no_answer")

    def run() -> None:
        with monitor.execution() as ex:
            ex.set_status("success")
            raise BoomError

    with pytest.raises(BoomError):
        run()
    with monitor.execution() as ex:
        ex.set_status("error")
        ex.set_status("success")
    assert [(r["status"], r["error_type"]) for r in records] == [
        ("error", "no_answer"),
        ("error", "BoomError"),
        ("success", None),
    ]
    with pytest.raises(ValueError, match="status"), monitor.execution() as ex:
        ex.set_status("timeout")  # type: ignore[arg-type]


def test_tool_outcome_comes_from_its_block(
    monitor: AgentMonitor, registry: CollectorRegistry, records: list[ExecutionRecord]
) -> None:
    with monitor.execution() as ex:
        with ex.tool("search"):
            pass
        try:
            with ex.tool("crm_lookup"):
                raise TimeoutError("crm down")
        except TimeoutError:
            pass  # the agent recovers; the execution still succeeds
        with ex.tool("search") as span:
            span.fail("empty_result")
    (record,) = records
    assert record["status"] == "success"
    assert [(t["name"], t["success"]) for t in record["tools_called"]] == [
        ("search", True),
        ("crm_lookup", False),
        ("search", False),
    ]
    tool = {"agent": "support-bot"}
    assert value(registry, "agent_tool_calls_total", **tool, tool="search", status="success") == 1
    assert value(registry, "agent_tool_calls_total", **tool, tool="search", status="error") == 1
    assert value(registry, "agent_tool_calls_total", **tool, tool="crm_lookup", status="error") == 1
    assert value(registry, "agent_tool_duration_seconds_count", **tool, tool="search") == 2


async def test_async_execution_and_tool_blocks_record_like_sync_ones(
    monitor: AgentMonitor, records: list[ExecutionRecord]
) -> None:
    async with monitor.execution(session_id="a-1") as ex:
        assert current_execution() is ex
        async with ex.tool("fetch"):
            pass
        with pytest.raises(BoomError):
            async with ex.tool("parse"):
                raise BoomError
        ex.usage(10, 5)
    with pytest.raises(BoomError):
        async with monitor.execution(session_id="a-2"):
            raise BoomError
    assert current_execution() is None
    assert [(r["session_id"], r["status"]) for r in records] == [
        ("a-1", "success"),
        ("a-2", "error"),
    ]
    assert [t["success"] for t in records[0]["tools_called"]] == [True, False]
    assert records[0]["tokens"]["total"] == 15


def test_metrics_carry_the_design_names_and_labels(
    monitor: AgentMonitor, registry: CollectorRegistry
) -> None:
    for i in range(3):
        with monitor.execution() as ex:
            ex.usage(1_000, 100)
            if i == 2:
                ex.set_status("error")
    labels = {"agent": "support-bot", "model": "gpt-4o"}
    assert value(registry, "agent_executions_total", **labels, status="success") == 2
    assert value(registry, "agent_executions_total", **labels, status="error") == 1
    assert value(registry, "agent_execution_duration_seconds_count", **labels) == 3
    assert value(registry, "agent_execution_duration_seconds_bucket", **labels, le="120.0") == 3
    assert value(registry, "agent_tokens_total", **labels, type="input") == 3_000
    assert value(registry, "agent_tokens_total", **labels, type="output") == 300
    assert value(registry, "agent_cost_usd_total", **labels) == pytest.approx(
        3 * (1_000 * 2.5 + 100 * 10) / 1e6
    )
    assert value(registry, "agent_info", **labels) == 1
    gen_ai = {
        "agent": "support-bot",
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "gpt-4o",
        "gen_ai_response_model": "",
    }
    assert value(
        registry, "gen_ai_client_token_usage_sum", **gen_ai, gen_ai_token_type="input"
    ) == (3_000)
    assert (
        value(
            registry,
            "gen_ai_client_token_usage_bucket",
            **gen_ai,
            gen_ai_token_type="output",
            le="256.0",
        )
        == 3
    )


def test_llm_calls_feed_the_opentelemetry_genai_histograms(
    monitor: AgentMonitor, registry: CollectorRegistry, records: list[ExecutionRecord]
) -> None:
    with monitor.execution() as ex:
        ex.record_llm_call(
            LLMCall(
                request_model="gpt-4.1-mini",
                response_model="gpt-4.1-mini-2025-04-14",
                input_tokens=500,
                output_tokens=50,
                duration_s=1.5,
            )
        )
        ex.record_llm_call(
            LLMCall(request_model="gpt-4.1-mini", duration_s=0.3, error_type="RateLimitError")
        )
    common = {
        "agent": "support-bot",
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "gpt-4.1-mini",
    }
    ok = {**common, "gen_ai_response_model": "gpt-4.1-mini-2025-04-14", "error_type": ""}
    failed = {**common, "gen_ai_response_model": "", "error_type": "RateLimitError"}
    assert value(registry, "gen_ai_client_operation_duration_seconds_sum", **ok) == 1.5
    assert value(registry, "gen_ai_client_operation_duration_seconds_bucket", **ok, le="2.56") == 1
    assert value(registry, "gen_ai_client_operation_duration_seconds_bucket", **ok, le="1.28") == 0
    assert value(registry, "gen_ai_client_operation_duration_seconds_count", **failed) == 1
    tokens = {**common, "gen_ai_response_model": "gpt-4.1-mini-2025-04-14"}
    assert (
        value(registry, "gen_ai_client_token_usage_sum", **tokens, gen_ai_token_type="input") == 500
    )
    # the failed call reported no usage: no token sample, no cost, but it counts as a call
    (record,) = records
    assert record["llm_calls"] == 2
    assert record["tokens"]["total"] == 550
    # priced as the dated snapshot's base model, at the execution's own model label
    assert record["cost_usd"] == pytest.approx((500 * 0.4 + 50 * 1.6) / 1e6)


def test_unknown_model_leaves_cost_unknown_and_creates_no_cost_series(
    registry: CollectorRegistry, records: list[ExecutionRecord], caplog: pytest.LogCaptureFixture
) -> None:
    monitor = AgentMonitor("lab", registry, prices=PriceTable(), on_record=records.append)
    with caplog.at_level(logging.WARNING, logger="agentmedic.instrument"):
        for _ in range(3):
            with monitor.execution(model="house-llm-7b") as ex:
                ex.usage(100, 100)
    assert [r["cost_usd"] for r in records] == [None, None, None]
    assert value(registry, "agent_cost_usd_total", agent="lab", model="house-llm-7b") is None
    assert (
        value(registry, "agent_tokens_total", agent="lab", model="house-llm-7b", type="input")
        == 300
    )
    assert sum("house-llm-7b" in r.getMessage() for r in caplog.records) == 1


def test_partly_unpriced_execution_has_unknown_cost_but_counts_known_spend(
    monitor: AgentMonitor, registry: CollectorRegistry, records: list[ExecutionRecord]
) -> None:
    with monitor.execution() as ex:
        ex.record_llm_call(
            LLMCall(request_model="gpt-4o-mini", input_tokens=1_000_000, output_tokens=0)
        )
        ex.record_llm_call(LLMCall(request_model="house-router", input_tokens=10, output_tokens=1))
    assert records[0]["cost_usd"] is None
    assert value(registry, "agent_cost_usd_total", agent="support-bot", model="gpt-4o") == (
        pytest.approx(0.15)
    )


def test_execution_without_llm_calls_costs_nothing(
    monitor: AgentMonitor, records: list[ExecutionRecord]
) -> None:
    with monitor.execution():
        pass
    assert records[0]["cost_usd"] == 0
    assert records[0]["tokens"] == {"input": 0, "output": 0, "total": 0, "cached_input": 0}


def test_model_defaults_to_the_first_llm_call_then_unknown(
    registry: CollectorRegistry, records: list[ExecutionRecord]
) -> None:
    monitor = AgentMonitor("router", registry, on_record=records.append)
    with monitor.execution() as ex:
        ex.record_llm_call(LLMCall(request_model="o4-mini", input_tokens=1, output_tokens=1))
    with monitor.execution():
        pass
    assert [r["model"] for r in records] == ["o4-mini", "unknown"]
    assert value(registry, "agent_info", agent="router", model="o4-mini") == 1


def test_agent_info_follows_the_current_model(
    monitor: AgentMonitor, registry: CollectorRegistry
) -> None:
    assert value(registry, "agent_info", agent="support-bot", model="gpt-4o") == 1
    monitor.set_model("gpt-4o-mini")
    assert value(registry, "agent_info", agent="support-bot", model="gpt-4o") is None
    assert value(registry, "agent_info", agent="support-bot", model="gpt-4o-mini") == 1
    with monitor.execution():
        pass
    assert value(registry, "agent_executions_total", agent="support-bot", model="gpt-4o-mini",
                 status="success") == 1  # fmt: skip
    # A side call on another model does not change what the agent runs with.
    with monitor.execution(model="gpt-4.1-nano"):
        pass
    assert value(registry, "agent_info", agent="support-bot", model="gpt-4.1-nano") is None
    assert value(registry, "agent_info", agent="support-bot", model="gpt-4o-mini") == 1


def test_without_a_model_of_its_own_agent_info_shows_the_latest_executions(
    registry: CollectorRegistry,
) -> None:
    monitor = AgentMonitor("configless", registry)
    for model in ("gpt-4o", "o3"):
        with monitor.execution(model=model):
            pass
    assert value(registry, "agent_info", agent="configless", model="o3") == 1
    assert value(registry, "agent_info", agent="configless", model="gpt-4o") is None


def test_record_is_one_json_line_on_the_execution_logger(
    monitor: AgentMonitor, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="agentmedic.execution"):
        with monitor.execution(session_id="log-1") as ex:
            ex.decision("plan", "résumé in French", None)
        with pytest.raises(BoomError), monitor.execution(session_id="log-2"):
            raise BoomError
    lines = [r for r in caplog.records if r.name == "agentmedic.execution"]
    assert len(lines) == 2
    for log_record in lines:
        message = log_record.getMessage()
        assert "\n" not in message
        parsed = json.loads(message)
        assert list(parsed) == RECORD_KEYS
        assert parsed == log_record.execution  # type: ignore[attr-defined]
    assert json.loads(lines[0].getMessage())["decision_log"][0]["reasoning"] == "résumé in French"
    assert json.loads(lines[1].getMessage())["status"] == "error"


def test_record_execution_replays_a_finished_execution(
    monitor: AgentMonitor, registry: CollectorRegistry
) -> None:
    record = monitor.record_execution(
        latency_s=12.5,
        status="error",
        error_type="timeout",
        session_id="r-1",
        model="gpt-4.1",
        llm_calls=[
            LLMCall(request_model="gpt-4.1", input_tokens=2_000, output_tokens=100, duration_s=11.0)
        ],
        tools=[ToolCallRecord("search", 0.8), ToolCallRecord("crm", 0.4, success=False)],
        decisions=[{"step": 1, "reasoning": "r", "tool_selected": "search"}],
        timestamp=1_700_000_000.25,
    )
    assert record["timestamp"] == "2023-11-14T22:13:20.250000Z"
    assert record["latency_ms"] == 12_500
    assert record["status"] == "error"
    assert record["error_type"] == "timeout"
    assert record["cost_usd"] == pytest.approx((2_000 * 2.0 + 100 * 8.0) / 1e6)
    assert [t["duration_ms"] for t in record["tools_called"]] == [800, 400]
    labels = {"agent": "support-bot", "model": "gpt-4.1"}
    assert value(registry, "agent_execution_duration_seconds_bucket", **labels, le="12.0") == 0
    assert value(registry, "agent_execution_duration_seconds_bucket", **labels, le="15.0") == 1
    assert (
        value(registry, "agent_tool_calls_total", agent="support-bot", tool="crm", status="error")
        == 1
    )


def test_monitors_sharing_a_registry_share_families(registry: CollectorRegistry) -> None:
    a = AgentMonitor("a", registry, model="gpt-4o-mini")
    b = AgentMonitor("b", registry, model="gpt-4o-mini")
    with a.execution(), b.execution():
        pass
    for agent in ("a", "b"):
        assert value(registry, "agent_executions_total", agent=agent, model="gpt-4o-mini",
                     status="success") == 1  # fmt: skip


def test_nested_executions_restore_the_outer_one(monitor: AgentMonitor) -> None:
    assert current_execution() is None
    with monitor.execution(session_id="outer") as outer:
        with monitor.execution(session_id="inner") as inner:
            assert current_execution() is inner
        assert current_execution() is outer
    assert current_execution() is None
    with pytest.raises(RuntimeError, match="once"), outer:
        pass


def test_a_failing_record_callback_never_breaks_the_agent(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(record: Any) -> None:
        raise RuntimeError("sink down")

    monitor = AgentMonitor("x", registry, model="gpt-4o", on_record=broken)
    with caplog.at_level(logging.ERROR, logger="agentmedic.instrument"), monitor.execution() as ex:
        pass
    assert ex.record is not None
    assert any("on_record" in r.getMessage() for r in caplog.records)


def test_custom_prices_apply_to_the_record_and_the_counter(registry: CollectorRegistry) -> None:
    prices = PriceTable().with_overrides({"gpt-4o": ModelPrice(input=1.0, output=1.0)})
    monitor = AgentMonitor("c", registry, model="gpt-4o", prices=prices)
    with monitor.execution() as ex:
        ex.usage(500_000, 500_000)
    assert ex.record is not None
    assert ex.record["cost_usd"] == pytest.approx(1.0)
    assert value(registry, "agent_cost_usd_total", agent="c", model="gpt-4o") == pytest.approx(1.0)


def test_importing_the_sdk_pulls_in_neither_openai_nor_the_operator() -> None:
    code = (
        "import sys, agentmedic.instrument\n"
        "bad = [m for m in ('openai', 'kopf', 'kubernetes', 'httpx', 'agentmedic.operator',"
        " 'agentmedic.metrics', 'agentmedic.engine', 'pydantic') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _scripted(monitor: AgentMonitor) -> None:
    # Explicit durations everywhere: the two runs must be identical, wall clock aside.
    for i in range(30):
        monitor.record_execution(
            latency_s=[0.05, 0.1, 2.5, 7.0, 119.0, 200.0][i % 6],
            status="error" if i % 7 == 0 else "success",
            model="gpt-4o" if i % 3 else "gpt-4o-mini",
            llm_calls=[
                LLMCall(
                    request_model="gpt-4o",
                    input_tokens=100 * i,
                    output_tokens=i,
                    duration_s=0.01 * i,
                    error_type="Timeout" if i % 5 == 0 else None,
                )
            ],
            tools=[ToolCallRecord("search", 0.005 * i, success=i % 4 != 0)],
        )


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_fast_series_store_exposes_what_prometheus_client_objects_would() -> None:
    from agentmedic.instrument import series

    fast_registry, client_registry = CollectorRegistry(), CollectorRegistry()
    series._by_registry[client_registry] = series._ClientStore(client_registry)
    _scripted(AgentMonitor("twin", fast_registry, model="gpt-4o"))
    _scripted(AgentMonitor("twin", client_registry, model="gpt-4o"))
    fast, client = _samples(fast_registry), _samples(client_registry)
    assert fast.keys() == client.keys()
    for key, v in fast.items():
        assert v == pytest.approx(client[key], rel=1e-12), key
    assert ("agent_execution_duration_seconds_bucket", (("agent", "twin"), ("le", "+Inf"),
            ("model", "gpt-4o"))) in fast  # fmt: skip


def test_multiprocess_mode_records_into_prometheus_client_shared_files(tmp_path: Any) -> None:
    code = (
        "from prometheus_client import CollectorRegistry, multiprocess\n"
        "from agentmedic.instrument import AgentMonitor\n"
        "m = AgentMonitor('worker-bot', model='gpt-4o')\n"
        "with m.execution() as ex:\n"
        "    ex.usage(1000, 10)\n"
        "r = CollectorRegistry()\n"
        "multiprocess.MultiProcessCollector(r)\n"
        "print(r.get_sample_value('agent_executions_total',"
        " {'agent': 'worker-bot', 'model': 'gpt-4o', 'status': 'success'}))\n"
        "print(r.get_sample_value('agent_info', {'agent': 'worker-bot', 'model': 'gpt-4o'}))\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split() == ["1.0", "1.0"]
    assert any(tmp_path.iterdir())  # the values live in the shared files


def test_public_api_is_exported_from_the_package() -> None:
    import agentmedic.instrument as sdk

    assert sorted(sdk.__all__) == sorted(
        [
            "DEFAULT_PRICES",
            "PRICES_AS_OF",
            "AgentMonitor",
            "Execution",
            "ExecutionRecord",
            "LLMCall",
            "ModelPrice",
            "PriceTable",
            "Status",
            "ToolCallRecord",
            "ToolSpan",
            "current_execution",
            "instrument_openai",
        ]
    )
    for name in sdk.__all__:
        assert getattr(sdk, name) is not None
