"""What a request cost: xAI's own figure when it states one, else tokens x the price table.

The table holds xAI's /language-models prices, overridable by MODEL_PRICES. It prices
tokens only: server-side tools and Live Search sources are billed per use, and only xAI's
stated cost (`cost_in_usd_ticks`) includes them (docs/teams.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from grok_proxy.calls.usage import TICKS_PER_NANO

log = logging.getLogger("grok_proxy.teams")

# xAI quotes prices in USD cents per 100 million tokens; a tenth of that is billionths of
# a dollar (nanos) per token, the unit usage is summed in.
NANOS_PER_PRICE_UNIT = 0.1
NANOS_PER_DOLLAR = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """Nanos (1e-9 USD) per token: prompt, cached prompt, completion (reasoning included)."""

    prompt: float
    cached: float
    completion: float

    def cost(self, usage: dict[str, int]) -> int:
        """Nanos for one request's normalized usage (grok_proxy.calls.usage's shape)."""
        cached = min(usage.get("cached", 0), usage.get("prompt", 0))
        uncached = usage.get("prompt", 0) - cached
        # xAI does not count reasoning tokens in completion_tokens but bills them as output.
        output = usage.get("completion", 0) + usage.get("reasoning", 0)
        return round(uncached * self.prompt + cached * self.cached + output * self.completion)


def overrides(prices: dict[str, tuple[float, float, float]]) -> dict[str, Price]:
    """MODEL_PRICES (dollars per million tokens, config.parse_prices) as nanos per token."""
    return {
        model: Price(prompt * 1000, cached * 1000, completion * 1000)
        for model, (prompt, cached, completion) in prices.items()
    }


def from_language_models(data: Any) -> dict[str, Price]:
    """Prices out of a /language-models answer, under each model's id and aliases."""
    prices: dict[str, Price] = {}
    models = data.get("models") if isinstance(data, dict) else None
    for model in models if isinstance(models, list) else []:
        if not isinstance(model, dict) or not isinstance(model.get("id"), str):
            continue

        def unit(name: str, fallback: float, model: dict[str, Any] = model) -> float:
            value = model.get(name)
            return value * NANOS_PER_PRICE_UNIT if isinstance(value, int | float) else fallback

        prompt = unit("prompt_text_token_price", 0.0)
        price = Price(
            prompt,
            unit("cached_prompt_text_token_price", prompt),
            unit("completion_text_token_price", 0.0),
        )
        for name in [model["id"], *(model.get("aliases") or [])]:
            if isinstance(name, str):
                prices[name] = price
    return prices


class Prices:
    """The price list in use: overrides win over what xAI publishes."""

    def __init__(self, overrides: dict[str, Price]) -> None:
        self.overrides = overrides
        self.published: dict[str, Price] = {}
        self.unpriced: set[str] = set()

    def cost(self, model: str, usage: dict[str, int]) -> int:
        """Nanos for this usage: xAI's stated cost, else the table's (0, logged once per
        model, when the model has no price)."""
        ticks = usage.get("cost_ticks")
        if ticks is not None:
            return round(ticks / TICKS_PER_NANO)
        price = self.overrides.get(model) or self.published.get(model)
        if price is None:
            if model not in self.unpriced and any(usage.values()):
                self.unpriced.add(model)
                log.warning("no price known for model %s: its cost counts as 0", model)
            return 0
        return price.cost(usage)
