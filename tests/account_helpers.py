"""Random multi-instrument books and account engines for the account-engine tests."""

from __future__ import annotations

import numpy as np

from delever.engine.accounts import AccountEngine, InstrumentMarket
from delever.engine.mark import MarkPrice
from delever.market.depth import parametric_curve
from delever.market.impact import Impact
from delever.model import AccountBook, InstrumentRegistry
from delever.risk import TieredRisk
from delever.venues.components import venue_components
from delever.venues.rules import load_venue
from delever.venues.tiers import MarginTiers

VENUE_SYMBOLS = {"binance-usdm": "BTCUSDT", "hyperliquid": "BTC", "bybit": "BTCUSDT", "okx": "BTC-USDT-SWAP",
                 "bitmex": "XBTUSD"}


def components(venue: str, policy: str | None = None):
    v = load_venue(venue)
    return (v, *venue_components(v, policy))


def random_book(rng: np.random.Generator, n_instruments: int, n_rows: int, start: np.ndarray,
                iso_share: float = 0.3, lev_choices=(2, 5, 10, 20, 50)) -> AccountBook:
    syms = [f"C{i}USDT" for i in range(n_instruments)]
    reg = InstrumentRegistry.linear(syms)
    acc = rng.integers(0, max(1, n_rows // 2), n_rows)
    ins = rng.integers(0, n_instruments, n_rows).astype(np.int32)
    iso = rng.random(n_rows) < iso_share
    key = acc * (2 * n_instruments) + ins * 2 + iso
    _, first = np.unique(key, return_index=True)
    acc, ins, iso = acc[first], ins[first], iso[first]
    # an account's isolated and cross positions in one instrument would be two groups; keep one of them
    k2 = acc * n_instruments + ins
    _, first2 = np.unique(k2, return_index=True)
    acc, ins, iso = acc[first2], ins[first2], iso[first2]
    n = acc.size
    side = rng.choice([1.0, -1.0], n)
    notional = rng.lognormal(np.log(20_000), 1.2, n)
    lev = rng.choice(np.asarray(lev_choices, float), n)
    qty = side * notional / start[ins]
    entry = start[ins] * np.exp(rng.normal(0, 0.02, n))
    margin = notional / lev
    cross_sum = np.bincount(acc, weights=np.where(iso, 0.0, margin), minlength=int(acc.max()) + 1)
    coll = np.where(iso, margin, cross_sum[acc])
    return AccountBook.from_rows(reg, acc, ins, qty, entry, iso, coll, np.zeros(n, np.int32))


def make_engine(book: AccountBook, venue: str, price: np.ndarray, fund_usd: float, depth_usd_at_1pct: float = 5e6,
                policy: str | None = None, mark_method: str | None = None, tiers: MarginTiers | None = None,
                replay: bool = False) -> AccountEngine:
    v, liq, bs, dl = components(venue, policy)
    t = v.tiers_for(VENUE_SYMBOLS[venue]) if tiers is None else tiers
    n = len(book.registry)
    start = price[0]
    markets = [InstrumentMarket(Impact(parametric_curve("sqrt", depth_usd_at_1pct, float(start[i])), 0.3, 60.0, 50.0,
                                       move_price=not replay),
                                MarkPrice(mark_method or v.mark.method, v.mark.basis_window_s, v.mark.funding_basis,
                                          v.mark.funding_rate, v.mark.funding_interval_s, v.mark.time_to_funding_s))
               for i in range(n)]
    t_s = np.arange(price.shape[0], dtype=float) * 10.0
    return AccountEngine(book, TieredRisk((t,) * n), markets, t_s, price, liq, bs, dl, fund_usd, replay=replay)
