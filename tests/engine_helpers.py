"""Builders for engine tests: small books, parametric depth and shock paths without files."""

from __future__ import annotations

import numpy as np

from delever.book import PositionBook
from delever.engine.core import CascadeEngine
from delever.engine.mitigation_rules import Mitigations
from delever.market.depth import parametric_curve
from delever.paths import shock_path
from delever.scenario import ShockDriver
from delever.venues import load_venue

START = 100_000.0


def make_book(rng: np.random.Generator, n: int, instrument: str = "BTCUSDT", max_lev: float = 50.0) -> PositionBook:
    """A healthy random book around ``START``: each position at most ``max_lev`` leverage at the start price."""
    side = rng.choice(np.array([1, -1], np.int8), n)
    qty = rng.lognormal(-1.0, 1.5, n) + 1e-3
    entry = START * np.exp(rng.normal(0.0, 0.02, n))
    lev = rng.uniform(1.5, max_lev, n)
    collateral = qty * START / lev
    upnl = side * qty * (START - entry)
    collateral = np.maximum(collateral - upnl, qty * START / max_lev) + 1.0  # healthy at START
    return PositionBook(instrument, np.arange(n), side, qty, entry, collateral, rng.random(n) < 0.5)


def make_engine(book: PositionBook, venue: str = "binance-usdm", move_pct: float = -10.0, depth_usd: float = 5e6,
                insurance_fund_usd: float = 1e5, duration_s: float = 20.0, hold_s: float = 30.0,
                overrides: dict | None = None, max_rounds: int = 50, permanent_fraction: float = 0.3,
                mitigations: dict | None = None) -> CascadeEngine:
    rules = load_venue(venue, overrides)
    tiers = rules.tiers_for(book.instrument)
    path = shock_path(ShockDriver(move_pct=move_pct, duration_s=duration_s, hold_s=hold_s), START, 1.0)
    depth = parametric_curve("sqrt", depth_usd, START)
    return CascadeEngine(rules, tiers, book, depth, path, permanent_fraction, 30.0, 50.0, max_rounds,
                         insurance_fund_usd, Mitigations.model_validate(mitigations or {}))


def liquidated_qty(engine: CascadeEngine) -> float:
    table = engine.liq_rows.to_table()
    return float(np.sum(table["qty"].to_numpy())) if table.num_rows else 0.0
