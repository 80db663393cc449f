"""Prices: our cached per-token rates agree with genai-prices to the micro-dollar."""

from __future__ import annotations

from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price

from guardian.amounts import micro_usd
from guardian.pricing import PriceOverride, Pricer, TokenUsage

USAGES = [
    TokenUsage(input_tokens=1, output_tokens=1),
    TokenUsage(input_tokens=12_345, output_tokens=678, cache_read_tokens=2_000, cache_write_tokens=300),
    TokenUsage(input_tokens=250_000, output_tokens=4_000, cache_read_tokens=200_000),
    TokenUsage(input_tokens=900, output_tokens=3_000, reasoning_tokens=2_500),
]


@pytest.mark.parametrize(
    ("provider", "model", "genai_provider"),
    [
        ("openai", "gpt-4o-mini", "openai"),
        ("openai", "gpt-4.1", "openai"),
        ("openai", "gpt-5", "openai"),
        ("anthropic", "claude-sonnet-4-5", "anthropic"),
        ("anthropic", "claude-3-5-haiku-latest", "anthropic"),
        ("google_genai", "gemini-2.5-pro", "google"),
        ("google_genai", "gemini-2.5-flash", "google"),
    ],
)
def test_cost_matches_genai_prices(provider: str, model: str, genai_provider: str) -> None:
    """For flat and tiered models alike, the charge is genai-prices' price rounded up to a micro-dollar."""
    pricer = Pricer()
    for usage in USAGES:
        expected = calc_price(
            Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
            ),
            model,
            provider_id=genai_provider,
        ).total_price
        assert pricer.cost(provider, model, usage) == micro_usd(expected), usage


def test_unknown_models_have_no_price() -> None:
    """A model genai-prices does not know is None, never $0."""
    assert Pricer().cost("openai", "definitely-not-a-model-xyz", TokenUsage(input_tokens=10)) is None


def test_overrides_win_and_default_cache_rates_to_input() -> None:
    """A policy price beats genai-prices; unset cache rates fall back to the input rate."""
    pricer = Pricer({"gpt-4o-mini": PriceOverride(Decimal("1"), Decimal("2"), None, None)})
    usage = TokenUsage(input_tokens=1_000, output_tokens=100, cache_read_tokens=400)
    assert pricer.cost("openai", "gpt-4o-mini", usage) == 1_000 * 1 + 100 * 2


def test_prices_are_looked_up_again_after_a_day() -> None:
    """Cached rates expire, so a long-lived process picks up price changes."""
    now = [0.0]
    pricer = Pricer(clock=lambda: now[0])
    pricer.cost("openai", "gpt-4o-mini", TokenUsage(input_tokens=1))
    first = pricer._cache[("openai", "gpt-4o-mini")][0]
    now[0] = 90_000.0
    pricer.cost("openai", "gpt-4o-mini", TokenUsage(input_tokens=1))
    assert pricer._cache[("openai", "gpt-4o-mini")][0] == 90_000.0 != first
