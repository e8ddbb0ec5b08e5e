"""A loopback server answering OpenAI's Chat Completions API, for the prompt optimizer.

The tests script its replies (an answer, a status with headers such as ``Retry-After``, a
delay); without a script it answers with :func:`shorten`, a deterministic stand-in for a
model that drops a prompt's examples and repeated lines, which is what the demo runs
``agentmedic optimize-prompt`` against. It records every request (the body, and whether an
``Authorization`` header came), so a test can check what the optimizer sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = ["ModelServer", "Reply", "shorten"]


@dataclass(frozen=True)
class Reply:
    """One scripted answer: ``answer`` as the assistant's message with status 200, or
    ``status`` with ``headers`` and an OpenAI-shaped error; after ``delay`` seconds."""

    answer: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def shorten(system: str, prompt: str) -> str:
    """The prompt without lines starting with ``Example``, repeated lines or blank runs."""
    seen: set[str] = set()
    out: list[str] = []
    for raw in prompt.splitlines():
        text = raw.strip()
        if text.lower().startswith("example") or (text and text in seen):
            continue
        if not text and (not out or not out[-1]):
            continue
        seen.add(text)
        out.append(raw.rstrip())
    return "\n".join(out).strip()


class ModelServer:
    """Chat Completions on ``http://127.0.0.1:PORT/v1`` (:attr:`base_url`)."""

    def __init__(self, answer: Callable[[str, str], str] = shorten) -> None:
        self.answer = answer
        self.script: deque[Reply] = deque()
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next(self, body: dict[str, Any], authorization: str) -> Reply:
        with self._lock:
            self.requests.append(body)
            self.authorizations.append(authorization)
            if self.script:
                return self.script.popleft()
        messages = body.get("messages") or [{}, {}]
        system = str(messages[0].get("content", ""))
        prompt = str(messages[-1].get("content", ""))
        return Reply(answer=self.answer(system, prompt))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                reply = server._next(body, self.headers.get("Authorization", ""))
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.status == 200:
                    payload = _completion(str(body.get("model", "")), reply.answer or "")
                else:
                    payload = {"error": {"message": f"status {reply.status}", "type": "error"}}
                data = json.dumps(payload).encode()
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and went away

        return Handler


def _completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-sandbox",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
    }
