"""The agent-side SDK: every execution becomes a JSON-line record and Prometheus metrics.

::

    from agentmedic.instrument import AgentMonitor, instrument_openai

    monitor = AgentMonitor(agent="support-bot", model="gpt-4o")
    client = instrument_openai(openai.OpenAI(), monitor)

    with monitor.execution(session_id="s-42") as ex:
        with ex.tool("search_knowledge_base"):
            ...
        ex.decision(1, "needs the refund policy", "search_knowledge_base")
        client.chat.completions.create(model="gpt-4o", messages=[...])  # usage recorded

Serve the metrics as usual with prometheus_client (``start_http_server(9100)``, or the
ASGI/WSGI apps); the operator's catalog queries the series listed in
:mod:`agentmedic.instrument.series`. Records go to the ``agentmedic.execution`` logger
(:mod:`agentmedic.instrument.record` documents the schema); costs come from
:mod:`agentmedic.instrument.prices`.

This package imports neither the operator side nor ``openai``: it costs an agent about
as much as importing prometheus_client.
"""

from agentmedic.instrument.monitor import AgentMonitor, Execution, ToolSpan, current_execution
from agentmedic.instrument.openai_hook import instrument_openai
from agentmedic.instrument.prices import DEFAULT_PRICES, PRICES_AS_OF, ModelPrice, PriceTable
from agentmedic.instrument.record import (
    ExecutionRecord,
    LLMCall,
    Status,
    ToolCallRecord,
)

__all__ = [
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
