"""Instrument symbols: the coin behind a venue's symbol (``BTCUSDT``, ``BTC-PERP``, ``ETH-USD`` -> ``BTC``, ``ETH``)."""

from __future__ import annotations

QUOTE_SUFFIXES = ("USDT", "USDC", "-USD", "USD", "-PERP", "_PERP")


def instrument_candidates(instrument: str) -> list[str]:
    """The instrument, then the coin with each known quote suffix removed (``BTCUSDT`` -> ``[BTCUSDT, BTC]``)."""
    out = [instrument]
    for suf in QUOTE_SUFFIXES:
        if instrument.endswith(suf) and len(instrument) > len(suf):
            out.append(instrument[: -len(suf)])
    return out
