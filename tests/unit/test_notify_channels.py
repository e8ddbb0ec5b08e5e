"""Resolving a policy's channels with their Secrets, and keeping the secrets unprintable."""

from __future__ import annotations

import logging
import pickle
from datetime import timedelta
from typing import Any

import pytest

import agentmedic.notify as notify
from agentmedic.api.types import NotificationChannel, Severity
from agentmedic.notify import (
    ChannelConfigError,
    ChannelKind,
    ResolvedChannel,
    Secret,
    resolve_channel,
)
from agentmedic.notify.secrets import guard_http_logs, redact

SLACK_URL = "https://hooks.slack.com/services/T000/B000/xoxSLACKtoken123"
ROUTING_KEY = "0123456789abcdef0123456789abcdef"
HOOK_URL = "https://finance.example/hooks/hookTOKEN987"
HMAC_KEY = "hmac-key-that-must-not-leak"

SECRETS = {
    ("slack-webhook", "url"): SLACK_URL + "\n",  # as `echo ... | kubectl create secret` leaves it
    ("pagerduty", "routing-key"): ROUTING_KEY,
    ("finance-hook", "url"): HOOK_URL,
    ("finance-hook", "hmac"): HMAC_KEY,
    ("broken", "url"): "hooks.slack.com/services/T000/B000/notAURLtoken",
    ("blank", "url"): "  \n",
}


def lookup(name: str, key: str) -> str:
    try:
        return SECRETS[(name, key)]
    except KeyError:
        raise KeyError(f"secret {name} has no key {key}") from None


def channel(**spec: Any) -> NotificationChannel:
    return NotificationChannel.model_validate({"name": "ch", **spec})


def test_slack_channel_gets_its_webhook_url_trimmed_and_its_limits() -> None:
    resolved = resolve_channel(
        channel(
            slack={"webhookSecretRef": {"name": "slack-webhook", "key": "url"}},
            maxPerHour=5,
            renotifyAfter="30m",
            minSeverity="high",
        ),
        lookup,
    )

    assert resolved.kind is ChannelKind.SLACK
    assert resolved.url.reveal() == SLACK_URL
    assert (resolved.max_per_hour, resolved.renotify_after, resolved.min_severity) == (
        5,
        timedelta(minutes=30),
        Severity.HIGH,
    )


def test_pagerduty_channel_gets_its_routing_key_and_the_default_events_url() -> None:
    resolved = resolve_channel(
        channel(pagerduty={"routingKeySecretRef": {"name": "pagerduty", "key": "routing-key"}}),
        lookup,
    )

    assert resolved.kind is ChannelKind.PAGERDUTY
    assert resolved.routing_key == Secret(ROUTING_KEY)
    assert resolved.url.reveal() == "https://events.pagerduty.com/v2/enqueue"


def test_webhook_channel_gets_its_url_and_hmac_key() -> None:
    resolved = resolve_channel(
        channel(
            webhook={
                "urlSecretRef": {"name": "finance-hook", "key": "url"},
                "hmacSecretRef": {"name": "finance-hook", "key": "hmac"},
            }
        ),
        lookup,
    )

    assert resolved.kind is ChannelKind.WEBHOOK
    assert resolved.hmac_key == Secret(HMAC_KEY)


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        (
            {"slack": {"webhookSecretRef": {"name": "missing", "key": "url"}}},
            ["'missing'", "'url'"],
        ),
        ({"slack": {"webhookSecretRef": {"name": "broken", "key": "url"}}}, ["'broken'", "URL"]),
        ({"webhook": {"urlSecretRef": {"name": "blank", "key": "url"}}}, ["'blank'", "empty"]),
        (
            {
                "webhook": {
                    "urlSecretRef": {"name": "finance-hook", "key": "url"},
                    "hmacSecretRef": {"name": "finance-hook", "key": "nope"},
                }
            },
            ["'finance-hook'", "'nope'", "HMAC"],
        ),
    ],
)
def test_an_unusable_secret_is_named_in_the_error_and_its_value_is_not(
    spec: dict[str, Any], names: list[str]
) -> None:
    with pytest.raises(ChannelConfigError) as caught:
        resolve_channel(channel(**spec), lookup)

    text = str(caught.value)
    assert text.startswith("channel ch: ")
    for name in names:
        assert name in text
    for value in ("notAURLtoken", SLACK_URL, HOOK_URL, HMAC_KEY):
        assert value not in text


def test_resolved_channels_and_secrets_print_without_their_values() -> None:
    resolved = ResolvedChannel(
        "hook", ChannelKind.WEBHOOK, Secret(HOOK_URL), hmac_key=Secret(HMAC_KEY)
    )

    for text in (repr(resolved), str(resolved), repr(resolved.url), f"{resolved.hmac_key}"):
        assert "hookTOKEN987" not in text
        assert HMAC_KEY not in text
    with pytest.raises(TypeError):
        pickle.dumps(resolved.hmac_key)


def test_secret_fragments_cover_the_url_path_so_redaction_removes_the_token() -> None:
    resolved = ResolvedChannel("s", ChannelKind.SLACK, Secret(SLACK_URL))

    text = redact(
        f"POST {SLACK_URL} failed; path /services/T000/B000/xoxSLACKtoken123",
        resolved.secret_fragments(),
    )

    assert "xoxSLACKtoken123" not in text
    assert text == "POST *** failed; path ***"


def test_a_pagerduty_channel_without_routing_key_is_refused() -> None:
    with pytest.raises(ChannelConfigError, match="routing key"):
        ResolvedChannel(
            "pd", ChannelKind.PAGERDUTY, Secret("https://events.pagerduty.com/v2/enqueue")
        )


def test_public_api_is_exactly_what_all_lists() -> None:
    """Every name in __all__ exists, and nothing public is left out of it."""
    exported = set(notify.__all__)
    public = {
        name
        for name, value in vars(notify).items()
        if not name.startswith("_")
        and getattr(value, "__module__", "").startswith("agentmedic.notify")
    }

    assert all(hasattr(notify, name) for name in exported)
    assert public - exported == set()


def test_a_token_echoed_alone_or_passed_as_a_query_parameter_is_redacted_too() -> None:
    resolved = ResolvedChannel(
        "hook",
        ChannelKind.WEBHOOK,
        Secret("https://chat.example/v1/spaces/AAA/messages?key=KEYvalue42&token=TOKvalue42"),
    )
    slack = ResolvedChannel("s", ChannelKind.SLACK, Secret(SLACK_URL))

    assert redact("bad key KEYvalue42, token TOKvalue42", resolved.secret_fragments()) == (
        "bad key ***, token ***"
    )
    assert redact("no_service xoxSLACKtoken123", slack.secret_fragments()) == "no_service ***"


def test_a_token_in_another_case_is_redacted() -> None:
    slack = ResolvedChannel("s", ChannelKind.SLACK, Secret(SLACK_URL))

    text = redact("receiver said: unknown token XOXSLACKTOKEN123", slack.secret_fragments())

    assert text == "receiver said: unknown token ***"


def test_a_token_cut_short_by_a_receiver_is_redacted() -> None:
    slack = ResolvedChannel("s", ChannelKind.SLACK, Secret(SLACK_URL))

    for cut in ("invalid_token xoxSLACKtok…", "invalid_token xoxSLACKtok", "id=xoxSLACKtok..."):
        assert "xoxSLACKtok" not in redact(cut, slack.secret_fragments()), cut


def test_a_prefix_shared_with_another_token_is_left_alone() -> None:
    slack = ResolvedChannel("s", ChannelKind.SLACK, Secret(SLACK_URL))

    assert redact("xoxSLACKother99", slack.secret_fragments()) == "xoxSLACKother99"


def test_a_short_routing_key_is_redacted_as_a_whole_token_only() -> None:
    pagerduty = ResolvedChannel(
        "pd",
        ChannelKind.PAGERDUTY,
        Secret("https://events.pagerduty.com/v2/enqueue"),
        routing_key=Secret("Rk42"),
    )

    text = redact(
        "routing key rk42 rejected; Rk420 and park42 are other words", pagerduty.secret_fragments()
    )

    assert text == "routing key *** rejected; Rk420 and park42 are other words"


def test_short_parts_of_a_url_that_are_not_credentials_stay_readable() -> None:
    hook = ResolvedChannel(
        "hook", ChannelKind.WEBHOOK, Secret("https://chat.example/hook?v=1&token=TOKvalue42")
    )

    assert redact("attempt 1 of 3 failed", hook.secret_fragments()) == "attempt 1 of 3 failed"


def test_a_short_password_in_the_webhook_url_is_redacted_as_a_whole_token() -> None:
    hook = ResolvedChannel("hook", ChannelKind.WEBHOOK, Secret("https://bot:pw7@chat.example/in"))

    assert redact("401: bad password pw7 for bot", hook.secret_fragments()) == (
        "401: bad password *** for bot"
    )


def test_the_http_log_filter_redacts_a_token_in_another_case(
    caplog: pytest.LogCaptureFixture,
) -> None:
    slack = ResolvedChannel("s", ChannelKind.SLACK, Secret(SLACK_URL))
    guard_http_logs(slack.secret_fragments())

    with caplog.at_level(logging.INFO, logger="httpx"):
        logging.getLogger("httpx").info("HTTP Request: POST %s", SLACK_URL.upper())

    assert caplog.records
    assert "XOXSLACKTOKEN123" not in caplog.text
    assert "***" in caplog.text


def test_an_http_request_line_shows_only_the_host_even_for_an_unregistered_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard_http_logs([])
    url = "https://bot:pw@hooks.example:8443/services/T1/B1/unregisteredTOKEN?key=abc"

    with caplog.at_level(logging.INFO, logger="httpx"):
        logging.getLogger("httpx").info(
            'HTTP Request: %s %s "%s %d %s"', "POST", url, "HTTP/1.1", 200, "OK"
        )

    assert caplog.messages == ['HTTP Request: POST https://hooks.example:8443/… "HTTP/1.1 200 OK"']
