"""What tokens cost: a price table in USD per million tokens, and the cost of a call.

The defaults are OpenAI's standard-tier list prices **as of 2025-08-15** (text tokens,
no Batch or Flex discount, no regional uplift). Prices change; override them with
:meth:`PriceTable.with_overrides` or :meth:`PriceTable.from_file` rather than trusting
these numbers for invoicing.

A model the table does not know has an unknown cost: :meth:`PriceTable.cost` returns
``None`` and logs one warning per model. It never guesses from a similar name, because a
wrong price silently breaks budgets, while an unknown price is visible.

Dated snapshots (``gpt-4o-2024-08-06``) are priced as their base model unless the table
names the snapshot itself (``gpt-4o-2024-05-13`` has its own, higher price).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_PRICES", "PRICES_AS_OF", "ModelPrice", "PriceTable"]

PRICES_AS_OF = "2025-08-15"
"""The date the default prices were copied from OpenAI's published pricing."""

_log = logging.getLogger("agentmedic.instrument")

# "-2024-08-06" at the end of a model id: a dated snapshot of the base model.
_SNAPSHOT_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per one million tokens of each kind for one model."""

    input: float
    output: float
    cached_input: float | None = None
    """Price of input tokens served from the provider's prompt cache; ``None`` when the model
    has no cache discount, in which case cached tokens cost the full input price."""

    def cost(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> float:
        """Cost in USD. ``cached_input_tokens`` is the part of ``input_tokens`` that was
        served from cache (OpenAI reports it that way: cached tokens are included in
        ``prompt_tokens``/``input_tokens``)."""
        if cached_input_tokens <= 0 or self.cached_input is None:
            return (input_tokens * self.input + output_tokens * self.output) / 1_000_000
        cached = min(cached_input_tokens, input_tokens)
        return (
            (input_tokens - cached) * self.input
            + cached * self.cached_input
            + output_tokens * self.output
        ) / 1_000_000


DEFAULT_PRICES: Mapping[str, ModelPrice] = {
    # GPT-5 family
    "gpt-5": ModelPrice(input=1.25, cached_input=0.125, output=10.00),
    "gpt-5-mini": ModelPrice(input=0.25, cached_input=0.025, output=2.00),
    "gpt-5-nano": ModelPrice(input=0.05, cached_input=0.005, output=0.40),
    # GPT-4.1 family
    "gpt-4.1": ModelPrice(input=2.00, cached_input=0.50, output=8.00),
    "gpt-4.1-mini": ModelPrice(input=0.40, cached_input=0.10, output=1.60),
    "gpt-4.1-nano": ModelPrice(input=0.10, cached_input=0.025, output=0.40),
    # GPT-4o family; the first gpt-4o snapshot kept its launch price
    "gpt-4o": ModelPrice(input=2.50, cached_input=1.25, output=10.00),
    "gpt-4o-2024-05-13": ModelPrice(input=5.00, output=15.00),
    "gpt-4o-mini": ModelPrice(input=0.15, cached_input=0.075, output=0.60),
    # reasoning models (reasoning tokens are billed, and reported, as output tokens)
    "o1": ModelPrice(input=15.00, cached_input=7.50, output=60.00),
    "o1-mini": ModelPrice(input=1.10, cached_input=0.55, output=4.40),
    "o3": ModelPrice(input=2.00, cached_input=0.50, output=8.00),
    "o3-mini": ModelPrice(input=1.10, cached_input=0.55, output=4.40),
    "o4-mini": ModelPrice(input=1.10, cached_input=0.275, output=4.40),
    # older models still found in fleets
    "gpt-4-turbo": ModelPrice(input=10.00, output=30.00),
    "gpt-4": ModelPrice(input=30.00, output=60.00),
    "gpt-3.5-turbo": ModelPrice(input=0.50, output=1.50),
}
"""OpenAI standard-tier prices, USD per 1M tokens, as of :data:`PRICES_AS_OF`."""


class PriceTable:
    """Model name → :class:`ModelPrice`, with snapshot-aware lookup and warn-once for
    unknown models. Immutable; the ``with_*``/``from_*`` constructors return new tables.

    >>> table = PriceTable().with_overrides({"my-finetune": {"input": 3, "output": 12}})
    >>> table.cost("gpt-4o-mini", input_tokens=1_000_000, output_tokens=0)
    0.15
    """

    __slots__ = ("_lock", "_prices", "_resolved", "_warned")

    def __init__(self, prices: Mapping[str, ModelPrice] | None = None) -> None:
        self._prices: dict[str, ModelPrice] = dict(DEFAULT_PRICES if prices is None else prices)
        # Memoized lookups, including misses (None): a hot path calls lookup per execution.
        self._resolved: dict[str, ModelPrice | None] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    @property
    def prices(self) -> Mapping[str, ModelPrice]:
        """The table's entries (a copy)."""
        return dict(self._prices)

    def with_overrides(self, overrides: Mapping[str, ModelPrice | Mapping[str, Any]]) -> PriceTable:
        """A new table with these entries added or replaced. Values are :class:`ModelPrice`
        or mappings with ``input``, ``output`` and optional ``cached_input`` (USD per 1M)."""
        merged = dict(self._prices)
        for model, value in overrides.items():
            merged[str(model)] = _parse_price(str(model), value)
        return PriceTable(merged)

    @classmethod
    def from_file(cls, path: str | Path, *, replace: bool = False) -> PriceTable:
        """Load overrides from a JSON or YAML file (by extension) that maps model names to
        ``{input, output, cached_input}``; merged over the defaults unless ``replace``.

        A top-level ``prices:`` key is also accepted, so the file can carry other
        metadata such as ``asOf``.
        """
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml  # only files need YAML; keep the SDK's import light

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
        if isinstance(data, Mapping) and isinstance(data.get("prices"), Mapping):
            data = data["prices"]
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: expected a mapping of model name to prices")
        base = cls({}) if replace else cls()
        return base.with_overrides(data)

    def lookup(self, model: str) -> ModelPrice | None:
        """The price of ``model``: exact name first, then its base model when ``model`` is
        a dated snapshot. ``None`` when unknown (no warning; see :meth:`cost`)."""
        try:
            return self._resolved[model]
        except KeyError:
            pass
        price = self._prices.get(model)
        if price is None:
            base = _SNAPSHOT_SUFFIX.sub("", model)
            price = self._prices.get(base)
        self._resolved[model] = price
        return price

    def cost(
        self, model: str, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0
    ) -> float | None:
        """Cost in USD of one call, or ``None`` (with a one-time warning) if the model is
        not in the table."""
        price = self.lookup(model)
        if price is None:
            self.warn_unknown(model)
            return None
        return price.cost(input_tokens, output_tokens, cached_input_tokens)

    def warn_unknown(self, model: str) -> None:
        """Log once per model that its cost is unknown."""
        if model in self._warned:
            return
        with self._lock:
            if model in self._warned:
                return
            self._warned.add(model)
        _log.warning(
            "no price for model %r: its cost is recorded as unknown; add it to the price "
            "table (PriceTable.with_overrides or PriceTable.from_file)",
            model,
        )


def _parse_price(model: str, value: ModelPrice | Mapping[str, Any]) -> ModelPrice:
    if isinstance(value, ModelPrice):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"price for {model!r}: expected a mapping with input and output")
    unknown = set(value) - {"input", "output", "cached_input", "cachedInput"}
    if unknown:
        raise ValueError(f"price for {model!r}: unknown keys {sorted(unknown)}")
    try:
        cached = value.get("cached_input", value.get("cachedInput"))
        price = ModelPrice(
            input=float(value["input"]),
            output=float(value["output"]),
            cached_input=None if cached is None else float(cached),
        )
    except KeyError as exc:
        raise ValueError(f"price for {model!r}: missing {exc.args[0]!r}") from None
    except (TypeError, ValueError):
        raise ValueError(f"price for {model!r}: prices must be numbers (USD per 1M)") from None
    if min(price.input, price.output, price.cached_input or 0.0) < 0:
        raise ValueError(f"price for {model!r}: prices cannot be negative")
    return price
