"""What the validations share: the Hyperliquid 2025-10-10 assumptions and the observed-vs-simulated rows.

Imported by :mod:`delever.validate` (one-coin and Binance-window validations) and :mod:`delever.validate_multi`
(the multi-coin run), so neither imports the other's module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from delever.data.klines import format_utc_ms
from delever.heatmap import QUANTILES
from delever.multipath import OCT10_2025_COINS


@dataclass(frozen=True)
class HlCoin:
    """A coin of the Hyperliquid 2025-10-10 replay: its price path and its assumed open interest.

    Attributes:
        coin: Hyperliquid coin name.
        file: 1-minute price file relative to the data directory.
        source: What the path is (venue and market).
        open_interest_usd: Assumed Hyperliquid open interest of the coin before the crash (USD).
    """

    coin: str
    file: str
    source: str
    open_interest_usd: float


HL_VENUE_OPEN_INTEREST_USD = 13.8e9
"""Hyperliquid open interest before the crash, about 13.8 bn USD (reported in the news after the event,
e.g. Catenaa and Phemex, October 2025: 'from 13.8 billion to nearly half'); the per-coin split is ours."""

_HL_OPEN_INTEREST_USD: dict[str, float] = {
    "BTC": 5.0e9, "ETH": 3.5e9, "SOL": 1.0e9, "XRP": 4.0e8, "DOGE": 2.5e8, "ENA": 1.5e8, "AVAX": 1.2e8,
    "LINK": 1.0e8, "ADA": 8.0e7, "AAVE": 8.0e7, "LTC": 6.0e7, "WLD": 6.0e7, "TRX": 2.0e7,
}
_PATH_OF = {c.coin: c for c in OCT10_2025_COINS}
HL_COINS: tuple[HlCoin, ...] = tuple(
    HlCoin(coin, _PATH_OF[coin].file, _PATH_OF[coin].source, oi) for coin, oi in _HL_OPEN_INTEREST_USD.items()
)
"""Open interest per coin: assumption [U]. The venue total (``HL_VENUE_OPEN_INTEREST_USD``) is split by the
usual ranking of Hyperliquid markets (BTC > ETH > SOL > XRP > large alts); these 13 coins get 10.8 bn of
the 13.8 bn, HYPE and about 150 other coins the rest. Not fitted to the ADL tables."""

HL_BOOK: dict[str, Any] = {
    "long_short_ratio": 1.5,
    "cross_share": 0.7,
    "leverage_fraction_of_max": [0.1, 0.2, 0.3, 0.5, 0.75, 1.0],
    "leverage_weight": [0.15, 0.20, 0.20, 0.20, 0.15, 0.10],
    "entry_sigma": 0.04,
    "mean_position_usd": 1.0e5,
    "positions_min": 500,
    "positions_max": 100_000,
    "depth_fraction_of_oi_at_1pct": 0.01,
    "vault_fraction_of_oi": 0.02,
    "seed": 1010,
}
"""Book assumptions shared by every Hyperliquid coin [U]:

* ``long_short_ratio`` 1.5 long accounts per short (a long-crowded market before the crash);
* ``cross_share`` 0.7 of accounts in cross margin (as in examples/hyperliquid-btc-2025-10-10.toml);
* leverage: the coin's first-tier max leverage times ``leverage_fraction_of_max``, with
  ``leverage_weight`` (share of open interest), e.g. BTC (40x) 4/8/12/20/30/40x, a 10x alt 1/2/3/5/7.5/10x;
* entry prices lognormal around the 20:30 UTC price, log-std ``entry_sigma``;
* positions = 2 x open interest / ``mean_position_usd`` (both sides), clipped to
  [``positions_min``, ``positions_max``]; simulated counts scale with this number;
* depth: square-root impact, ``depth_fraction_of_oi_at_1pct`` x open interest within 1 % (only fill prices
  and fills-vs-backstop depend on it in replay mode);
* liquidator vault capital per coin ``vault_fraction_of_oi`` x open interest (2 %: 50M on 2.5 bn, as in the
  BTC example); the vault is per coin here, as the observed ADL was (no cross-asset ADL upstream).
"""

def _band(values: list[float | None]) -> list[float] | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None
    return [float(v) for v in np.percentile(np.asarray(vals), QUANTILES)]


def _level(metric: str, observed: float | None, simulated: float | None, unit: str, note: str = "",
           band: list[float] | None = None) -> dict[str, object]:
    """One observed-vs-simulated row: error = simulated - observed, rel_error = simulated / observed - 1."""
    err = rel = None
    if observed is not None and simulated is not None:
        err = float(simulated) - float(observed)
        rel = float(simulated) / float(observed) - 1.0 if observed != 0 else None
    return {"metric": metric, "observed": observed, "simulated": simulated, "band": band, "error": err,
            "rel_error": rel, "unit": unit, "note": note}


def _stat(statistic: str, value: float | None, reading: str, band: list[float] | None = None) -> dict[str, object]:
    return {"statistic": statistic, "value": value, "band": band, "reading": reading}


def _utc(ms: float | None) -> str | None:
    return None if ms is None else format_utc_ms(int(round(ms))).replace(" ", "T") + "Z"


def _fmt(v: object, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if unit == "epoch s":
            return _utc(v * 1000.0) or "n/a"
        if unit in ("hour", "minute index") and v == int(v):
            return str(int(v))
        if unit == "USD" or abs(v) >= 1e3:
            return f"{v:,.0f}"
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


