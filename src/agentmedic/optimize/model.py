"""Asking an OpenAI-compatible model for a shorter prompt, with the ``openai`` client.

One chat completion per attempt, with the client's own retries off so that this module
bounds them: a timeout, a lost connection, a 429 or a 5xx is retried at most
``max_attempts`` times in all, waiting what the server's ``Retry-After`` asks (capped by
``max_wait``: a server asking for longer fails the run at once) or else an exponential
backoff; any other refusal (400, 401, 403, 404) fails at once. The API key never appears
in a message: the server's own text is not quoted for a refused key, and every message is
scrubbed of the key in case a server echoes it.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["ModelError", "ModelSettings", "ask_for_shorter", "instructions"]


class ModelError(Exception):
    """The model gave no usable answer; ``message`` is one line, free of the API key."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ModelSettings:
    """Where the model is and how long to try. ``api_key`` is never shown."""

    base_url: str
    model: str
    api_key: str = field(repr=False)
    timeout: float = 60.0
    """Seconds per request."""
    max_attempts: int = 4
    """Requests in all, retries included."""
    backoff: float = 1.0
    """The first pause without Retry-After, doubled per retry (capped by max_wait)."""
    max_wait: float = 60.0
    """The longest pause before a retry; a Retry-After above it fails the run."""


def instructions(holders: Sequence[str], required: Sequence[str]) -> str:
    """The system message: what to do and what to keep."""
    parts = [
        "You rewrite the system prompt of an AI agent so that it is shorter and the agent "
        "answers faster, with the same behaviour. Remove repetition, filler and examples "
        "that add nothing; keep every rule and constraint.",
    ]
    if holders:
        parts.append(
            "Keep each of these placeholders exactly as written, and add no other: "
            + ", ".join(holders)
        )
    if required:
        parts.append("Keep each of these lines exactly as written:\n" + "\n".join(required))
    parts.append("Answer with the rewritten prompt only, without comments or code fences.")
    return "\n\n".join(parts)


def ask_for_shorter(
    settings: ModelSettings,
    prompt: str,
    holders: Sequence[str],
    required: Sequence[str],
    *,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> str:
    """The model's answer (raw text). Raises :class:`ModelError` when there is none."""
    try:
        import openai
    except ImportError:  # pragma: no cover - the image and [openai] extra carry it
        raise ModelError(
            "the openai package is not installed; install agentmedic[openai]"
        ) from None
    client = openai.OpenAI(
        base_url=settings.base_url,
        api_key=settings.api_key,
        timeout=settings.timeout,
        max_retries=0,
    )
    messages: list[Any] = [
        {"role": "system", "content": instructions(holders, required)},
        {"role": "user", "content": prompt},
    ]
    try:
        for attempt in range(1, settings.max_attempts + 1):
            try:
                answer = client.chat.completions.create(
                    model=settings.model, messages=messages, temperature=0
                )
            except openai.APIError as exc:
                wait, why = _retry_after(exc, settings, attempt, now)
                if wait is None or attempt == settings.max_attempts:
                    raise ModelError(_scrub(why, settings.api_key)) from None
                sleep(wait)
                continue
            return _text(answer)
    finally:
        client.close()
    raise ModelError("no attempt was made (max_attempts is 0)")


def _text(answer: Any) -> str:
    choices = getattr(answer, "choices", None) or []
    content = choices[0].message.content if choices else None
    if not isinstance(content, str) or not content.strip():
        raise ModelError("the model answered without text")
    return content


def _retry_after(
    exc: Exception, settings: ModelSettings, attempt: int, now: Callable[[], datetime]
) -> tuple[float | None, str]:
    """(seconds to wait before the next attempt, or None to stop; what went wrong)."""
    import openai

    tries = f"after {attempt} attempt(s)"
    where = f"the model server at {settings.base_url}"
    if isinstance(exc, openai.APITimeoutError):
        return _backoff(settings, attempt), (
            f"{where} did not answer within {settings.timeout:g}s {tries}; raise --timeout"
        )
    if isinstance(exc, openai.APIConnectionError):
        return _backoff(settings, attempt), f"cannot reach {where} {tries}; check --base-url"
    if not isinstance(exc, openai.APIStatusError):
        return None, f"{where} answered something that is not a chat completion"
    code = exc.status_code
    if code in (401, 403):
        return None, (
            f"{where} refused the API key ({code}); check the Secret that feeds OPENAI_API_KEY"
        )
    if code == 429 or code >= 500:
        asked = _header_seconds(exc.response.headers, now)
        if asked is not None and asked > settings.max_wait:
            return None, (
                f"{where} asks to wait {asked:.0f}s ({code}), longer than --max-wait "
                f"{settings.max_wait:g}s"
            )
        what = "is rate limiting (429)" if code == 429 else f"failed ({code})"
        wait = asked if asked is not None else _backoff(settings, attempt)
        return wait, f"{where} {what} {tries}"
    return None, f"{where} refused the request ({code}): {_short(exc)}; check --model"


def _backoff(settings: ModelSettings, attempt: int) -> float:
    return float(min(settings.backoff * 2 ** (attempt - 1), settings.max_wait))


def _header_seconds(headers: Any, now: Callable[[], datetime]) -> float | None:
    """Retry-After (or retry-after-ms) in seconds, or None when absent or unreadable."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now()).total_seconds())


def _short(exc: Exception) -> str:
    text = " ".join(str(getattr(exc, "message", "") or exc).split())
    return text[:160]


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text
