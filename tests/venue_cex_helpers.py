"""Small engines for the BitMEX / Bybit / OKX worked examples: one-level books, hand-built positions."""

from __future__ import annotations

import numpy as np

from delever.book import PositionBook
from delever.engine.core import CascadeEngine
from delever.market.depth import parametric_curve
from delever.paths import shock_path
from delever.scenario import ShockDriver
from delever.venues import load_venue


def engine_for(venue: str, price: float, side, qty, entry, collateral, overrides: dict | None = None,
               fund_usd: float = 0.0, instrument: str = "BTCUSDT", depth_usd: float = 1e9) -> CascadeEngine:
    """An engine on a flat path at ``price`` holding the given positions (accounts 1..N)."""
    n = len(qty)
    book = PositionBook(instrument, np.arange(1, n + 1), np.asarray(side, np.int8), np.asarray(qty, float),
                        np.asarray(entry, float), np.asarray(collateral, float), np.zeros(n, bool))
    rules = load_venue(venue, overrides)
    path = shock_path(ShockDriver(move_pct=0.0, duration_s=1.0, hold_s=1.0), price, 1.0)
    return CascadeEngine(rules, rules.tiers_for(instrument), book, parametric_curve("sqrt", depth_usd, price), path,
                         0.0, 30.0, 50.0, 50, fund_usd)


def one_level_book(engine: CascadeEngine, bid: float, bid_qty: float = np.inf) -> None:
    """Replace the engine's sell side by a single bid level: ``bid_qty`` base units at ``bid`` (USD).

    Orders fill in the given sequence; a sell fills only if its limit is at or below the bid, a
    fill-or-kill order only if the level still holds all of it.
    """
    left = [float(bid_qty)]

    def sell(exo, qty, limit, fok=None):
        qty = np.asarray(qty, float)
        fill = np.zeros(qty.size)
        for i in range(qty.size):
            if np.asarray(limit)[i] > bid:
                continue
            want = qty[i]
            if fok is not None and fok[i] and want > left[0]:
                continue
            fill[i] = min(want, left[0])
            left[0] -= fill[i]
        return fill, fill * bid

    engine.impact.sell = sell


def money_balances(engine: CascadeEngine) -> None:
    """Money is conserved and the ledger reconciles with the state (to the cent and beyond)."""
    checks = engine.conservation()
    assert abs(checks["ledger_imbalance_usd"]) < 1e-9
    assert checks["ledger_reconciliation_usd"] < 1e-9
