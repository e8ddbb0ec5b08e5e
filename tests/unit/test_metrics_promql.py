"""Escaping and matcher building (the property test against Prometheus is in integration/)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agentmedic.metrics.promql import (
    agent_matcher,
    check_label_name,
    duration,
    escape_regex,
    quote_string,
    substitute,
)


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("plain", '"plain"'),
        ('say "hi"', r'"say \"hi\""'),
        ("back\\slash", r'"back\\slash"'),
        ("two\nlines", r'"two\nlines"'),
        ("tab\there", r'"tab\there"'),
        ("nul\x00", r'"nul\u0000"'),
        ("ünï😀", '"ünï😀"'),
    ],
)
def test_quote_string_escapes_quotes_backslashes_and_control_characters(value, literal):
    assert quote_string(value) == literal


def test_quote_string_refuses_lone_surrogates():
    with pytest.raises(ValueError, match="not valid Unicode"):
        quote_string("a\udc80")


def test_escape_regex_escapes_every_re2_metacharacter_and_nothing_else():
    assert escape_regex(r"a.b*c+d?e(f)g|h[i]j{k}l^m$n\o") == (
        r"a\.b\*c\+d\?e\(f\)g\|h\[i\]j\{k\}l\^m\$n\\o"
    )
    assert escape_regex("bot-1_ü") == "bot-1_ü"


def test_one_agent_gives_an_equality_matcher():
    assert agent_matcher("agent", ["a.b"]) == 'agent="a.b"'


def test_several_agents_give_a_sorted_deduplicated_regex_matcher():
    assert agent_matcher("agent", ["b|c", "a.b", "b|c"]) == r'agent=~"a\\.b|b\\|c"'


def test_same_agent_set_in_any_order_gives_the_same_matcher():
    assert agent_matcher("agent", ["x", "y", "z"]) == agent_matcher("agent", ["z", "x", "y"])


def test_empty_agent_names_are_refused_because_they_would_match_unlabelled_series():
    with pytest.raises(ValueError, match="must not be empty"):
        agent_matcher("agent", ["a", ""])
    with pytest.raises(ValueError, match="at least one"):
        agent_matcher("agent", [])


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", 'a"'])
def test_invalid_label_names_are_refused_with_the_rule(name):
    with pytest.raises(ValueError, match="not a valid Prometheus label name"):
        check_label_name(name)


def test_substitute_replaces_known_placeholders_with_or_without_spaces():
    text = "x{ {{agents}} }[{{ window }}] by ({{agent_label}})"
    out = substitute(text, {"agents": 'agent="a"', "window": "5m", "agent_label": "agent"})
    assert out == 'x{ agent="a" }[5m] by (agent)'


def test_substitute_names_an_unknown_placeholder():
    with pytest.raises(
        ValueError, match=r"unknown placeholder \{\{windw\}\}; known: \{\{window\}\}"
    ):
        substitute("rate(x[{{windw}}])", {"window": "5m"})


def test_duration_renders_prometheus_units():
    assert duration(timedelta(minutes=90)) == "1h30m"
    assert duration(timedelta(milliseconds=1500)) == "1s500ms"
    with pytest.raises(ValueError, match="at least 1ms"):
        duration(timedelta(0))
