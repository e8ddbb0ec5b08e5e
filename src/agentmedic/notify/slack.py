"""Slack incoming webhooks: a :class:`Message` as a Block Kit message.

Layout: a header (what and where), the summary, a fields section (agent, rule,
severity, state), the evidence, the action taken, and a context block with the exact
undo command, the policy and the episode. ``text`` is the plain fallback Slack shows in
notifications and in clients that do not render blocks.

Limits enforced here, from Slack's Block Kit reference (docs.slack.dev/reference/block-kit):
a header's plain_text at most 150 characters; a section's text at most 3000; at most 10
fields per section, each at most 2000; at most 10 elements in a context block; at most 50
blocks in a message. Text that comes from outside (names, summaries) is escaped for
mrkdwn (``&``, ``<``, ``>``) so it cannot form links or mentions.
"""

from __future__ import annotations

import re
from typing import Any, Final

from agentmedic.notify.message import Delivery, Message, MessageState, format_time

__all__ = [
    "CONTEXT_MAX_ELEMENTS",
    "FIELDS_MAX",
    "FIELD_MAX_CHARS",
    "HEADER_MAX_CHARS",
    "MESSAGE_MAX_BLOCKS",
    "SECTION_MAX_CHARS",
    "TEXT_MAX_CHARS",
    "clip",
    "escape",
    "plain_text",
    "slack_payload",
]

HEADER_MAX_CHARS: Final = 150
SECTION_MAX_CHARS: Final = 3000
FIELDS_MAX: Final = 10
FIELD_MAX_CHARS: Final = 2000
CONTEXT_MAX_ELEMENTS: Final = 10
MESSAGE_MAX_BLOCKS: Final = 50
TEXT_MAX_CHARS: Final = 3000
"""Our cap on the fallback ``text``: Slack accepts far more, notifications show far less."""

# Evidence lines beyond this are counted, not listed: the message is read on a phone.
_MAX_EVIDENCE_LINES = 10
# Ten lines of this length and the "…and N more" line fit in one section's 3000 characters.
_MAX_EVIDENCE_CHARS = 280

_ICON = {MessageState.FIRING: ":rotating_light:", MessageState.RESOLVED: ":white_check_mark:"}


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Slack's link and mention syntax: <https://x|label>, <https://x>, <@U123>, <#C1|name>.
_LINK = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")


def plain_text(mrkdwn: str) -> str:
    """Slack mrkdwn as a terminal shows it: the inverse of :func:`escape` (so ``&lt;``
    reads ``<`` again) and links as their label (or their target when they have none)."""
    text = _LINK.sub(lambda m: m.group(2) if m.group(2) else m.group(1), mrkdwn)
    # &amp; last: "&amp;lt;" is the text "&lt;", not "<".
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _mrkdwn(text: str, limit: int) -> dict[str, str]:
    return {"type": "mrkdwn", "text": clip(text, limit)}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text, SECTION_MAX_CHARS)}


def _code(text: str) -> str:
    # A backtick inside inline code would end it early.
    return "`" + escape(text).replace("`", "'") + "`"


def slack_payload(message: Message, delivery: Delivery) -> dict[str, Any]:
    """The JSON body to POST to a Slack incoming-webhook URL."""
    state = "Resolved" if message.state is MessageState.RESOLVED else "Firing"
    if delivery.repeat:
        state = "Still firing"
    dry = "[DRY RUN] " if message.dry_run else ""
    header = f"{dry}{state}: {message.rule} on {message.subject}"

    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": clip(header, HEADER_MAX_CHARS), "emoji": True},
        },
        _section(f"{_ICON[message.state]} {escape(message.summary)}"),
        {
            "type": "section",
            "fields": [
                _mrkdwn(f"*{name}*\n{escape(value)}", FIELD_MAX_CHARS)
                for name, value in (
                    ("Agent", str(message.agent) if message.agent else "whole fleet"),
                    ("Rule", message.rule),
                    ("Severity", message.severity.value),
                    ("State", message.state.value + (" (dry run)" if message.dry_run else "")),
                    ("Policy", message.policy),
                    ("Since", format_time(message.time)),
                )
            ][:FIELDS_MAX],
        },
    ]
    if message.evidence:
        lines = [
            f"• {clip(escape(str(e)), _MAX_EVIDENCE_CHARS)}"
            for e in message.evidence[:_MAX_EVIDENCE_LINES]
        ]
        if len(message.evidence) > _MAX_EVIDENCE_LINES:
            lines.append(f"• …and {len(message.evidence) - _MAX_EVIDENCE_LINES} more")
        blocks.append(_section("*Evidence*\n" + "\n".join(lines)))
    if message.action:
        verb = "*Action (dry run: nothing was changed)*" if message.dry_run else "*Action taken*"
        blocks.append(_section(f"{verb}\n{escape(message.action)}"))

    context: list[dict[str, str]] = []
    if message.undo:
        context.append(_mrkdwn(f"Undo: {_code(message.undo)}", SECTION_MAX_CHARS))
    context.extend(_mrkdwn(escape(note), SECTION_MAX_CHARS) for note in delivery.notes)
    context.append(
        _mrkdwn(
            f"policy {escape(message.policy)} · episode {_code(message.episode)}",
            SECTION_MAX_CHARS,
        )
    )
    blocks.append({"type": "context", "elements": context[:CONTEXT_MAX_ELEMENTS]})

    if message.summary.startswith(f"{message.subject}: "):
        # The operator's summaries name their subject and rule already: say it once.
        fallback = f"{dry}{state} ({message.severity.value}): {message.summary}"
    else:
        fallback = f"{dry}{state}: {message.rule} on {message.subject} ({message.severity.value})"
        fallback += f" - {message.summary}"
    if message.undo:
        fallback += f" Undo: {message.undo}"
    return {"text": clip(escape(fallback), TEXT_MAX_CHARS), "blocks": blocks[:MESSAGE_MAX_BLOCKS]}
