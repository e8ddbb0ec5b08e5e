"""The optimizer's pure parts: which placeholders and lines a candidate must keep, the
checks it must pass, and how long a Retry-After asks to wait."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentmedic.optimize.checks import (
    Limits,
    check_candidate,
    clean_answer,
    placeholders,
    required_lines,
)
from agentmedic.optimize.model import _header_seconds, instructions

PROMPT = (
    "Hello {name}, your order {{ order_id }} ships to ${city}.\n"
    "Price: $price (not {{price}}).\n"
    "Never share card numbers. [required]\n"
    "Filler filler filler filler filler filler filler filler filler filler filler.\n"
)


def test_every_kind_of_placeholder_is_found_once_in_order() -> None:
    assert placeholders(PROMPT) == [
        "{name}",
        "{{ order_id }}",
        "${city}",
        "$price",
        "{{price}}",
    ]
    assert placeholders("costs $5 or {} or { spaced }") == []


def test_required_lines_are_the_tagged_ones_then_the_kept_texts() -> None:
    assert required_lines(PROMPT, ["Be brief.", ""]) == [
        "Never share card numbers. [required]",
        "Be brief.",
    ]


def _good() -> str:
    return (
        "Hello {name}: order {{ order_id }} to ${city}, $price ({{price}}).\n"
        "Never share card numbers. [required]"
    )


def test_a_candidate_that_keeps_everything_and_is_shorter_passes() -> None:
    assert check_candidate(PROMPT, _good(), Limits()) is None


@pytest.mark.parametrize(
    ("candidate", "says"),
    [
        ("   ", "empty prompt"),
        (_good().replace("${city}", "the city"), "drops placeholder(s) ${city}"),
        (_good() + " {extra}", "adds placeholder(s) {extra}"),
        (_good().replace(" [required]", ""), "drops the required line"),
        (PROMPT.replace("Filler", "F"), "not shorter by 10%"),
        (_good(), "more than the limit of 50"),
    ],
)
def test_a_candidate_failing_a_check_is_rejected_with_the_reason(candidate: str, says: str) -> None:
    limits = Limits(max_chars=50) if "limit of 50" in says else Limits()
    reason = check_candidate(PROMPT, candidate, limits)
    assert reason is not None
    assert says in reason


def test_a_candidate_cut_too_short_and_a_missing_kept_text_are_rejected() -> None:
    long_prompt = "{a} " + "word " * 200
    assert "looks cut off" in (check_candidate(long_prompt, "{a} word", Limits()) or "")
    reason = check_candidate(PROMPT, _good(), Limits(), keep=["Escalate refunds."])
    assert reason is not None
    assert "Escalate refunds." in reason


def test_limits_refuse_impossible_shares() -> None:
    with pytest.raises(ValueError, match="min_reduction"):
        Limits(min_reduction=1.2)
    with pytest.raises(ValueError, match="min_share"):
        Limits(min_reduction=0.5, min_share=0.6)


def test_one_enclosing_code_fence_is_removed_from_the_answer() -> None:
    assert clean_answer("```text\nShort {a}.\n```\n") == "Short {a}."
    assert clean_answer("  plain  ") == "plain"


def test_the_instructions_name_what_to_keep() -> None:
    text = instructions(["{a}", "$b"], ["Line. [required]"])
    assert "{a}, $b" in text
    assert "Line. [required]" in text


def test_retry_after_is_read_in_seconds_milliseconds_or_as_a_date() -> None:
    now = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
    assert _header_seconds({"retry-after": "7"}, lambda: now) == 7.0
    assert _header_seconds({"retry-after-ms": "1500"}, lambda: now) == 1.5
    date = "Thu, 03 Dec 2026 12:00:30 GMT"
    assert _header_seconds({"retry-after": date}, lambda: now) == 30.0
    assert _header_seconds({"retry-after": "soon"}, lambda: now) is None
    assert _header_seconds({}, lambda: now) is None
