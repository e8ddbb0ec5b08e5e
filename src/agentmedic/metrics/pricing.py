"""The central price list's arithmetic: what tokens cost, fleet-wide.

A :class:`PriceBook` is the operator-side view of a ``ModelPriceList``: the SDK's built-in
table (:mod:`agentmedic.instrument.prices`, dated there) with the list's entries replacing
the built-in entry of the same model, or only the list's entries when ``includeDefaults`` is
false. Lookups follow the SDK's rule: the exact model id first, then — for a dated snapshot
such as ``gpt-4o-2024-08-06`` — its base model.

Token counts follow the SDK's series ``agent_tokens_total{model, type}``: ``input`` counts
every prompt token *including* the ones served from the provider's cache, ``cached_input``
counts those cached ones again (a subset of ``input``), ``output`` the completion tokens
(reasoning included). Cached tokens are priced at the model's ``cachedInput`` price, the
rest of the input at the input price; a model without a cache price charges cached tokens
in full. Other ``type`` values are not billable token kinds and are ignored.

A model the book cannot price is never guessed: :meth:`PriceBook.cost` returns ``None`` and
:meth:`PriceBook.spend` names it, so callers can say which part of a figure is unknown.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping

from agentmedic.api.budget import ModelPriceListSpec
from agentmedic.instrument.prices import DEFAULT_PRICES, PRICES_AS_OF, ModelPrice, PriceTable

__all__ = ["PRICES_AS_OF", "TOKEN_TYPES", "ModelPrice", "PriceBook"]

TOKEN_TYPES = frozenset({"input", "output", "cached_input"})
"""The values of the token series' ``type`` label that carry a price."""


class PriceBook:
    """Model id → :class:`ModelPrice`, immutable, with the SDK's snapshot rule.

    >>> book = PriceBook.default()
    >>> book.cost("gpt-4o-mini", input_tokens=1_000_000, output_tokens=0)
    0.15
    """

    __slots__ = ("_table",)

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._table = PriceTable(prices)

    @classmethod
    def default(cls) -> PriceBook:
        """The SDK's built-in table (prices as of :data:`PRICES_AS_OF`)."""
        return cls(DEFAULT_PRICES)

    @classmethod
    def from_spec(cls, spec: ModelPriceListSpec) -> PriceBook:
        """A ModelPriceList's prices: its entries replace the built-in entry of the same
        model; with ``includeDefaults: false`` only its entries are priced."""
        prices: dict[str, ModelPrice] = dict(DEFAULT_PRICES) if spec.include_defaults else {}
        for entry in spec.prices:
            prices[entry.model] = ModelPrice(
                input=entry.input, output=entry.output, cached_input=entry.cached_input
            )
        return cls(prices)

    @property
    def prices(self) -> Mapping[str, ModelPrice]:
        """The book's entries (a copy)."""
        return self._table.prices

    def __len__(self) -> int:
        return len(self._table.prices)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._table.prices))

    def price(self, model: str) -> ModelPrice | None:
        """The price of ``model``: its own entry, else its base model's when it is a dated
        snapshot; ``None`` when the book does not price it."""
        return self._table.lookup(model)

    def cost(
        self, model: str, input_tokens: float, output_tokens: float, cached_input_tokens: float = 0
    ) -> float | None:
        """USD for these tokens of ``model`` (``cached_input_tokens`` is the part of
        ``input_tokens`` served from cache), or ``None`` when the model has no price."""
        price = self.price(model)
        if price is None:
            return None
        return _cost(price, input_tokens, output_tokens, cached_input_tokens)

    def spend(self, tokens: Mapping[tuple[str, str], float]) -> tuple[float, frozenset[str]]:
        """USD for token counts keyed by ``(model, type)``, and the models with tokens that
        the book cannot price (their tokens add nothing to the figure)."""
        per_model: dict[str, dict[str, float]] = defaultdict(dict)
        for (model, kind), count in tokens.items():
            if kind in TOKEN_TYPES:
                bucket = per_model[model]
                bucket[kind] = bucket.get(kind, 0.0) + float(count)
        total = 0.0
        unpriced: set[str] = set()
        for model, counts in per_model.items():
            if not any(value > 0 for value in counts.values()):
                continue
            cost = self.cost(
                model,
                counts.get("input", 0.0),
                counts.get("output", 0.0),
                counts.get("cached_input", 0.0),
            )
            if cost is None:
                unpriced.add(model)
            else:
                total += cost
        return total, frozenset(unpriced)


def _cost(price: ModelPrice, input_tokens: float, output_tokens: float, cached: float) -> float:
    # The SDK's ModelPrice.cost arithmetic, for the float counts that queries return.
    cached = max(0.0, min(cached, input_tokens))
    cached_price = price.input if price.cached_input is None else price.cached_input
    return (
        (input_tokens - cached) * price.input + cached * cached_price + output_tokens * price.output
    ) / 1_000_000
