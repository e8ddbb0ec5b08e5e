"""Operator settings (flags > environment > file > defaults) and the status helper."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentmedic.api.types import AgentCounts, AgentPolicyStatus, ConditionStatus
from agentmedic.operator.settings import LogFormat, SettingsError, Shard, load_settings
from agentmedic.operator.status import ConditionType, Reason, build_status, status_patch

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def test_flags_beat_environment_which_beats_the_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "prometheusUrl: http://from-file:9090\ntenant: file-tenant\nlogFormat: text\n"
        "namespaces: [a, b]\n"
    )
    settings = load_settings(
        flags={"prometheus_url": "http://from-flag:9090"},
        environ={"AGENTMEDIC_TENANT": "env-tenant", "AGENTMEDIC_NAMESPACES": "x, y"},
        config_file=config,
    )
    assert settings.prometheus_url == "http://from-flag:9090"
    assert settings.tenant == "env-tenant"
    assert settings.namespaces == ["x", "y"]
    assert settings.log_format is LogFormat.TEXT


def test_the_config_file_can_come_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("prometheusUrl: http://p:9090\nshard: 1/3\ndryRun: true\n")
    settings = load_settings(environ={"AGENTMEDIC_CONFIG": str(config)})
    assert settings.shard == Shard(index=1, count=3)
    assert settings.dry_run is True


def test_missing_backend_url_says_every_way_to_set_it() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(environ={})
    message = str(err.value)
    assert "--prometheus" in message
    assert "AGENTMEDIC_PROMETHEUS_URL" in message
    assert "prometheusUrl" in message


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"AGENTMEDIC_LOG_FORMAT": "xml"}, "--log-format / AGENTMEDIC_LOG_FORMAT / logFormat"),
        ({"AGENTMEDIC_SHARD": "3/3"}, "INDEX must be in 0..COUNT-1"),
        ({"AGENTMEDIC_SHARD": "half"}, "write INDEX/COUNT"),
        ({"AGENTMEDIC_LOG_LEVEL": "loud"}, "not a log level"),
        ({"AGENTMEDIC_EXTRA_HEADERS": "{nope"}, "AGENTMEDIC_EXTRA_HEADERS: not a JSON object"),
        ({"AGENTMEDIC_METRICS_PORT": "-1"}, "--metrics-port"),
    ],
)
def test_bad_settings_name_the_setting(environ: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(environ={"AGENTMEDIC_PROMETHEUS_URL": "http://p", **environ})
    assert fragment in str(err.value)


def test_unknown_keys_in_the_config_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("prometheusURL: http://p\n")
    with pytest.raises(SettingsError, match="prometheusURL: unknown setting"):
        load_settings(environ={}, config_file=config)


def test_shards_partition_policies_without_overlap() -> None:
    uids = [f"uid-{i}" for i in range(300)]
    base = {"AGENTMEDIC_PROMETHEUS_URL": "http://p"}
    shards = [load_settings(environ={**base, "AGENTMEDIC_SHARD": f"{i}/3"}) for i in range(3)]
    owners = [[s.owns(u) for s in shards].count(True) for u in uids]
    assert owners == [1] * len(uids)
    assert all(sum(s.owns(u) for u in uids) > 50 for s in shards)


def _ready(status: AgentPolicyStatus) -> tuple[str, str, datetime]:
    cond = next(c for c in status.conditions if c.type == ConditionType.READY)
    return cond.status, cond.reason, cond.last_transition_time


def test_condition_keeps_its_transition_time_until_the_status_flips() -> None:
    ok = [(ConditionType.READY, ConditionStatus.TRUE, Reason.EVALUATING, "")]
    first = build_status(None, now=T0, generation=1, conditions=ok)
    later = build_status(first, now=T0 + timedelta(minutes=5), generation=2, conditions=ok)
    assert _ready(later)[2] == T0
    assert later.conditions[0].observed_generation == 2
    bad = [(ConditionType.READY, ConditionStatus.FALSE, Reason.INVALID_SPEC, "spec.rules: x")]
    flipped = build_status(later, now=T0 + timedelta(minutes=9), generation=3, conditions=bad)
    assert _ready(flipped) == ("False", "InvalidSpec", T0 + timedelta(minutes=9))


def test_unchanged_status_needs_no_write() -> None:
    conds = [
        (ConditionType.READY, ConditionStatus.TRUE, Reason.EVALUATING, ""),
        (ConditionType.METRICS_AVAILABLE, ConditionStatus.TRUE, Reason.METRICS_OK, ""),
    ]
    counts = AgentCounts(total=3, healthy=3)
    first = build_status(None, now=T0, generation=1, conditions=conds, agents=counts)
    patch = status_patch(None, first, now=T0)
    assert patch is not None
    assert patch["lastEvaluationTime"].startswith("2026-11-27T12:00")
    written = AgentPolicyStatus.model_validate(patch)
    again = build_status(
        written, now=T0 + timedelta(minutes=1), generation=1, conditions=conds, agents=counts
    )
    assert status_patch(written, again, now=T0 + timedelta(minutes=1)) is None
    changed = build_status(
        written,
        now=T0 + timedelta(minutes=2),
        generation=1,
        conditions=conds,
        agents=AgentCounts(total=3, healthy=2, breaching=1),
    )
    assert status_patch(written, changed, now=T0 + timedelta(minutes=2)) is not None


def test_conditions_are_listed_in_a_stable_order() -> None:
    conds = [
        (ConditionType.REMEDIATING, ConditionStatus.FALSE, Reason.AGENTS_HEALTHY, ""),
        (ConditionType.METRICS_AVAILABLE, ConditionStatus.TRUE, Reason.METRICS_OK, ""),
        (ConditionType.READY, ConditionStatus.TRUE, Reason.EVALUATING, ""),
    ]
    status = build_status(None, now=T0, generation=1, conditions=conds)
    assert [c.type for c in status.conditions] == ["Ready", "MetricsAvailable", "Remediating"]


def test_apschedulers_chatter_is_hidden_and_its_warnings_and_errors_are_kept(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import logging

    from agentmedic.operator.logs import configure_logging

    names = ("", "apscheduler.scheduler", "apscheduler.executors", "httpx")
    saved = {n: logging.getLogger(n).level for n in names}
    handlers = logging.getLogger().handlers[:]
    try:
        configure_logging(LogFormat.TEXT, "INFO")
        logging.getLogger("apscheduler.executors.default").info('Running job "cycle-10s"')
        logging.getLogger("apscheduler.executors.default").warning("Run time of job was missed")
        logging.getLogger("agentmedic.operator.scheduler").warning(
            "evaluation cycle 10s skipped: the previous one is still running"
        )
        logging.getLogger("apscheduler.scheduler").error("Error submitting job")
    finally:
        logging.getLogger().handlers[:] = handlers
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)
    err = capsys.readouterr().err
    assert "evaluation cycle 10s skipped" in err
    assert "Error submitting job" in err
    assert "was missed" in err
    assert "Running job" not in err
