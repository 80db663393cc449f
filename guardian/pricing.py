"""Usage to micro-dollars, with genai-prices' data and the policy's per-model overrides.

genai-prices' ``calc_price`` costs ~130 us a call (a lookup over every provider), more than
our whole per-call budget, so each model's price is looked up once a day and cached; flat
per-token prices are then applied here, and anything richer (tiered by context size) is
handed back to genai-prices' own calculation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

from genai_prices import Usage
from genai_prices.data_snapshot import get_snapshot


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """A policy's own price for a model: micro-USD per token (the same number as USD per 1M tokens)."""

    input: Decimal
    output: Decimal
    cache_read: Decimal | None
    cache_write: Decimal | None


__all__ = ["PriceOverride", "Pricer", "TokenUsage"]

# LangChain's ls_provider names that genai-prices knows by another id.
_PROVIDER_ALIASES = {
    "google_genai": "google",
    "google_vertexai": "google",
    "google_anthropic_vertex": "anthropic",
    "amazon_bedrock": "aws",
    "bedrock": "aws",
    "azure": "azure",
    "mistralai": "mistral",
    "fireworks": "fireworks",
    "together": "together",
}
_FLAT_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")
# Price units that apply to a plain text call but that the flat formula does not cover. Units we never
# report (searches, audio, images, video, documents, 1h cache writes) cost nothing for our usage.
_NEEDS_GENAI_PRICES = (
    "requests_kcount",
    "input_mchars",
    "output_reasoning_mtok",
    "input_text_messages_kcount",
)
_REFRESH_S = 86_400.0
_PICO_PER_MICRO = 1_000_000


@dataclass(slots=True)
class TokenUsage:
    """What one model call used. ``input_tokens`` includes cache reads and writes, as LangChain reports it."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0  # part of output_tokens; priced as output

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class _Rate:
    """Micro-USD per token (equal to USD per 1M tokens); ``exact`` set when only genai-prices can price it."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    exact: Any = None  # genai_prices ModelPrice with tiers
    # The same rates in pico-USD per token as ints, when that is exact (it is for every published price):
    # integer arithmetic is several times faster than Decimal on every model call.
    scaled: tuple[int, int, int, int] | None = None

    @classmethod
    def of(cls, input: Decimal, output: Decimal, cache_read: Decimal, cache_write: Decimal) -> _Rate:
        pico = [r * _PICO_PER_MICRO for r in (input, output, cache_read, cache_write)]
        exact_ints = all(p == p.to_integral_value() for p in pico)
        scaled = (int(pico[0]), int(pico[1]), int(pico[2]), int(pico[3])) if exact_ints else None
        return cls(input, output, cache_read, cache_write, scaled=scaled)

    def cost(self, usage: TokenUsage) -> int:
        uncached = max(0, usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens)
        if self.scaled is not None:
            i, o, r, w = self.scaled
            pico = uncached * i + usage.cache_read_tokens * r + usage.cache_write_tokens * w + usage.output_tokens * o
            return -(-pico // _PICO_PER_MICRO)  # ceiling division
        if self.exact is not None:
            calc = self.exact.calc_price(
                Usage(
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cache_read_tokens=usage.cache_read_tokens,
                    cache_write_tokens=usage.cache_write_tokens,
                )
            )
            return _ceil(calc["total_price"] * 1_000_000)
        total = (
            uncached * self.input
            + usage.cache_read_tokens * self.cache_read
            + usage.cache_write_tokens * self.cache_write
            + usage.output_tokens * self.output
        )
        return _ceil(total)


class Pricer:
    """Thread-safe; ``clock`` decides when cached prices are looked up again."""

    def __init__(self, overrides: Mapping[str, PriceOverride] | None = None, clock: Callable[[], float] | None = None):
        import time

        self._overrides = dict(overrides or {})
        self._clock = clock or time.time
        self._cache: dict[tuple[str | None, str], tuple[float, _Rate | None]] = {}
        self._lock = threading.Lock()

    def known(self, provider: str | None, model: str) -> bool:
        return self._rate(provider, model) is not None

    def cost(self, provider: str | None, model: str, usage: TokenUsage) -> int | None:
        """Micro-USD, rounded up; None when no price is known for the model."""
        rate = self._rate(provider, model)
        return None if rate is None else rate.cost(usage)

    def _rate(self, provider: str | None, model: str) -> _Rate | None:
        key = (provider, model)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < _REFRESH_S:
            return cached[1]
        rate = self._lookup(provider, model, now)
        with self._lock:
            self._cache[key] = (now, rate)
        return rate

    def _lookup(self, provider: str | None, model: str, now: float) -> _Rate | None:
        override = self._overrides.get(model) or (self._overrides.get(f"{provider}/{model}") if provider else None)
        if override is not None:
            return _Rate.of(
                override.input,
                override.output,
                override.input if override.cache_read is None else override.cache_read,
                override.input if override.cache_write is None else override.cache_write,
            )
        snapshot = get_snapshot()
        provider_id = _PROVIDER_ALIASES.get(provider, provider) if provider else None
        for candidate in (provider_id, None) if provider_id else (None,):
            try:
                _, info = snapshot.find_provider_model(model, None, candidate, None)
            except LookupError:
                continue
            price = info.get_prices(datetime.fromtimestamp(now, UTC))
            return _rate_of(price)
        return None


def _rate_of(price: Any) -> _Rate:
    values = {k: getattr(price, k) for k in _FLAT_KEYS}
    tiered = not all(v is None or isinstance(v, Decimal) for v in values.values())
    if tiered or any(getattr(price, k) is not None for k in _NEEDS_GENAI_PRICES):
        zero = Decimal(0)
        return _Rate(zero, zero, zero, zero, exact=price)
    base = values["input_mtok"] or Decimal(0)
    return _Rate.of(
        base,
        values["output_mtok"] or Decimal(0),
        base if values["cache_read_mtok"] is None else values["cache_read_mtok"],
        base if values["cache_write_mtok"] is None else values["cache_write_mtok"],
    )


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))
