"""The central price list's arithmetic: defaults, a ModelPriceList over them, spend."""

from __future__ import annotations

import pytest

from agentmedic.api.budget import ModelPriceListSpec, PriceEntry
from agentmedic.instrument.prices import DEFAULT_PRICES, ModelPrice
from agentmedic.metrics.pricing import PriceBook


def _spec(*entries: PriceEntry, include_defaults: bool = True) -> ModelPriceListSpec:
    return ModelPriceListSpec(prices=list(entries), include_defaults=include_defaults)


def test_default_book_is_the_sdk_table() -> None:
    book = PriceBook.default()
    assert dict(book.prices) == dict(DEFAULT_PRICES)
    assert book.price("gpt-4o-mini") == DEFAULT_PRICES["gpt-4o-mini"]
    assert book.cost("gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)


def test_a_list_entry_replaces_the_default_of_the_same_model_and_keeps_the_others() -> None:
    book = PriceBook.from_spec(
        _spec(
            PriceEntry(model="gpt-4o", input=1.0, output=4.0),
            PriceEntry(model="house", input=3, output=9),
        )
    )
    assert book.price("gpt-4o") == ModelPrice(input=1.0, output=4.0, cached_input=None)
    assert book.price("house") == ModelPrice(input=3.0, output=9.0)
    assert book.price("gpt-4.1") == DEFAULT_PRICES["gpt-4.1"]
    assert len(book) == len(DEFAULT_PRICES) + 1


def test_without_defaults_only_the_listed_models_are_priced() -> None:
    book = PriceBook.from_spec(
        _spec(PriceEntry(model="house", input=3, output=9), include_defaults=False)
    )
    assert list(book) == ["house"]
    assert book.price("gpt-4o-mini") is None
    assert book.cost("gpt-4o-mini", 10, 10) is None


def test_dated_snapshots_follow_the_sdk_rule() -> None:
    book = PriceBook.from_spec(_spec(PriceEntry(model="gpt-4o", input=1.0, output=4.0)))
    # a snapshot without its own entry takes its base model's (replaced) price
    assert book.price("gpt-4o-2024-08-06") == ModelPrice(input=1.0, output=4.0)
    # the named launch snapshot keeps its own entry
    assert book.price("gpt-4o-2024-05-13") == DEFAULT_PRICES["gpt-4o-2024-05-13"]
    assert book.price("gpt-4o-ish") is None


def test_cost_prices_cached_input_at_its_discount_and_in_full_without_one() -> None:
    book = PriceBook.from_spec(
        _spec(
            PriceEntry(model="cached", input=2.0, output=8.0, cached_input=0.5),
            PriceEntry(model="plain", input=2.0, output=8.0),
            include_defaults=False,
        )
    )
    # 1,000 input of which 400 cached: 600 at 2.0, 400 at 0.5; 100 output at 8.0
    assert book.cost("cached", 1_000, 100, 400) == pytest.approx((600 * 2 + 400 * 0.5 + 800) / 1e6)
    assert book.cost("plain", 1_000, 100, 400) == pytest.approx((1_000 * 2 + 800) / 1e6)
    # cached tokens never exceed the input they are part of
    assert book.cost("cached", 100, 0, 1_000) == pytest.approx(100 * 0.5 / 1e6)


def test_cost_agrees_with_the_sdk_per_call_cost() -> None:
    book = PriceBook.default()
    for model, price in DEFAULT_PRICES.items():
        assert book.cost(model, 12_345, 678, 2_000) == pytest.approx(price.cost(12_345, 678, 2_000))


def test_spend_sums_models_and_types_and_names_the_unpriced() -> None:
    book = PriceBook.from_spec(
        _spec(
            PriceEntry(model="a", input=1.0, output=10.0, cached_input=0.1),
            PriceEntry(model="b", input=5.0, output=15.0),
            include_defaults=False,
        )
    )
    usd, unpriced = book.spend(
        {
            ("a", "input"): 2_000_000,
            ("a", "cached_input"): 1_000_000,
            ("a", "output"): 100_000,
            ("b", "input"): 200_000,
            ("b", "output"): 0,
            ("mystery", "input"): 5_000,
            ("silent", "input"): 0,  # no tokens: nothing unknown to report
            ("b", "reasoning_summary"): 1e9,  # not a billable type
        }
    )
    # a: 1M at 1.0 + 1M cached at 0.1 + 0.1M out at 10 = 1 + 0.1 + 1 = 2.1
    # b: 0.2M at 5 = 1.0
    assert usd == pytest.approx(3.1)
    assert unpriced == frozenset({"mystery"})


def test_spend_of_nothing_is_zero() -> None:
    assert PriceBook.default().spend({}) == (0.0, frozenset())
