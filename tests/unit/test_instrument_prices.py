"""The price table: defaults, snapshots, overrides from dicts and files, unknown models."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from agentmedic.instrument.prices import DEFAULT_PRICES, PRICES_AS_OF, ModelPrice, PriceTable


def test_defaults_cover_the_common_openai_models_and_state_their_date() -> None:
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3"):
        assert model in DEFAULT_PRICES
    assert "o4-mini" in DEFAULT_PRICES
    assert PRICES_AS_OF.count("-") == 2  # an ISO date, not a vague "recently"


def test_cost_is_tokens_times_price_per_million() -> None:
    table = PriceTable()
    assert table.cost("gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)
    assert table.cost("gpt-4o", 2_000, 500) == pytest.approx(2_000 * 2.5e-6 + 500 * 10e-6)


def test_cached_input_tokens_are_part_of_input_and_get_the_cache_price() -> None:
    price = ModelPrice(input=2.0, cached_input=0.5, output=8.0)
    # 1,000 input of which 400 cached: 600 at full price, 400 at the cache price.
    assert price.cost(1_000, 100, cached_input_tokens=400) == pytest.approx(
        (600 * 2.0 + 400 * 0.5 + 100 * 8.0) / 1e6
    )


def test_a_model_without_cache_discount_charges_cached_tokens_in_full() -> None:
    price = ModelPrice(input=10.0, output=30.0)
    assert price.cost(1_000, 0, cached_input_tokens=1_000) == pytest.approx(0.01)


def test_dated_snapshot_is_priced_as_its_base_model_unless_named() -> None:
    table = PriceTable()
    assert table.lookup("gpt-4o-2024-08-06") == DEFAULT_PRICES["gpt-4o"]
    assert table.lookup("gpt-4.1-mini-2025-04-14") == DEFAULT_PRICES["gpt-4.1-mini"]
    # The first gpt-4o snapshot kept its higher launch price: the exact name wins.
    assert table.lookup("gpt-4o-2024-05-13") == ModelPrice(input=5.0, output=15.0)


def test_unknown_model_has_unknown_cost_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    table = PriceTable()
    with caplog.at_level(logging.WARNING, logger="agentmedic.instrument"):
        assert table.cost("my-finetune", 100, 100) is None
        assert table.cost("my-finetune", 100, 100) is None
        assert table.cost("gpt-4o-mini-ish", 1, 1) is None  # no guessing from a similar name
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert "my-finetune" in warnings[0]


def test_overrides_from_a_dict_add_and_replace_entries() -> None:
    table = PriceTable().with_overrides(
        {
            "my-finetune": {"input": 3, "output": 12, "cached_input": 1.5},
            "gpt-4o": ModelPrice(input=1.0, output=2.0),
        }
    )
    assert table.lookup("my-finetune") == ModelPrice(input=3.0, output=12.0, cached_input=1.5)
    assert table.cost("gpt-4o", 1_000_000, 1_000_000) == pytest.approx(3.0)
    assert PriceTable().lookup("gpt-4o") == DEFAULT_PRICES["gpt-4o"]  # the original is untouched


def test_overrides_load_from_json_and_yaml_files(tmp_path: Path) -> None:
    json_file = tmp_path / "prices.json"
    json_file.write_text(json.dumps({"house-model": {"input": 1, "output": 2}}))
    yaml_file = tmp_path / "prices.yaml"
    yaml_file.write_text(
        "asOf: 2026-01-01\nprices:\n  house-model:\n    input: 4\n    output: 5\n"
        "    cachedInput: 0.4\n"
    )
    from_json = PriceTable.from_file(json_file)
    assert from_json.lookup("house-model") == ModelPrice(input=1.0, output=2.0)
    assert from_json.lookup("gpt-4o") is not None  # merged over the defaults
    from_yaml = PriceTable.from_file(yaml_file, replace=True)
    assert from_yaml.lookup("house-model") == ModelPrice(input=4.0, output=5.0, cached_input=0.4)
    assert from_yaml.lookup("gpt-4o") is None  # replace drops the defaults


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"input": 1}, "missing 'output'"),
        ({"input": "cheap", "output": 1}, "must be numbers"),
        ({"input": 1, "output": -1}, "negative"),
        ({"input": 1, "output": 1, "outptu": 2}, "unknown keys"),
        (3.5, "expected a mapping"),
    ],
)
def test_invalid_override_names_the_model_and_the_problem(entry: object, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        PriceTable().with_overrides({"bad-model": entry})  # type: ignore[dict-item]
    assert "bad-model" in str(info.value)
