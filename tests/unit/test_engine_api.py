"""The engine's public surface: what the operator, the backtest and the demo import."""

from __future__ import annotations

import inspect

import agentmedic.engine as engine


def test_every_public_name_is_exported_and_documented() -> None:
    assert sorted(engine.__all__) == sorted(set(engine.__all__))
    for name in engine.__all__:
        obj = getattr(engine, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"


def test_entry_points_keep_their_documented_signatures() -> None:
    assert list(inspect.signature(engine.requirements).parameters) == ["spec", "now"]
    assert list(inspect.signature(engine.evaluate).parameters) == [
        "policy",
        "samples",
        "prior",
        "now",
    ]
    assert list(inspect.signature(engine.replay).parameters) == [
        "policy",
        "timeline",
        "initial_state",
        "apply",
    ]
    for name in ("requirements", "evaluate", "replay", "strongest_per_agent"):
        assert f"``{name}(" in (engine.__doc__ or ""), f"{name} is missing from the package docs"
