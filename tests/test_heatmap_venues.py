"""The heatmap's static map under each venue's own risk model (``heatmap.liquidation_prices``).

binance-usdm keeps Binance's formula bit for bit; Drift's prices are where the engine's own margin check
(``engine.drift.DriftLiquidation.requirement``: size premium at the oracle) flips, and differ from Binance's
formula; dYdX's are where the engine's check at the oracle flips.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from delever import heatmap
from delever.book import PositionBook
from delever.heatmap import HeatmapOptions, liquidation_heatmap, liquidation_prices, map_no_feedback
from delever.runner import make_engine, prepare
from delever.scenario import load_scenario, with_klines_driver
from delever.venues.formulas import liquidation_price_binance

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
KLINE_HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
                "taker_buy_quote_volume,ignore")


def _prep(*overrides: str, positions: int = 2000):
    return prepare(load_scenario(None, [f"book.synthesize.positions={positions}", *overrides]), DATA)


def _binance_formula(prep) -> np.ndarray:
    """The static map's liquidation prices before the venue risk models: Binance's formula for every venue."""
    b = prep.book
    return liquidation_price_binance(b.side, b.qty, b.entry_price, b.collateral_usd, prep.tiers)


def test_binance_usdm_levels_are_unchanged():
    prep = _prep()
    assert prep.venue.name == "binance-usdm"
    b = prep.book
    # plus hand-made rows: a long whose collateral covers its notional (never liquidated), a short, a whale
    extra = PositionBook(b.instrument, np.array([10**9, 10**9 + 1, 10**9 + 2]), np.array([1, -1, 1]),
                         np.array([0.5, 2.0, 900.0]), np.array([110_000.0, 118_000.0, 116_000.0]),
                         np.array([60_000.0, 5_000.0, 3e6]), np.array([False, True, True]))
    cat = {f: np.concatenate([getattr(b, f), getattr(extra, f)])
           for f in ("account", "side", "qty", "entry_price", "collateral_usd", "cross")}
    prep = replace(prep, book=PositionBook(b.instrument, **cat))
    new, old = liquidation_prices(prep), _binance_formula(prep)
    assert np.isnan(new[-3]) and np.isfinite(new[:-3]).all()
    np.testing.assert_array_equal(new, old)
    start = float(prep.path.price[0])
    levels = start * (1.0 + np.arange(-30, 31) / 100.0)
    for a, c in zip(map_no_feedback(prep.book.side, prep.book.qty, new, levels),
                    map_no_feedback(prep.book.side, prep.book.qty, old, levels), strict=True):
        np.testing.assert_array_equal(a, c)


@pytest.fixture(scope="module")
def drift():
    return _prep("venue.preset=drift", "market.instrument=SOL-PERP")


def test_drift_prices_are_where_the_engine_margin_check_flips(drift):
    lp = liquidation_prices(drift)
    b = drift.book
    eng = make_engine(drift)
    s = b.side.astype(np.float64)
    ok = np.isfinite(lp)
    assert ok.mean() > 0.9
    # the engine's check at oracle P: collateral + side q (P - entry) < q P mr(q) (size premium)
    eq = b.collateral_usd + s * b.qty * (lp - b.entry_price)
    req = eng.drift.requirement(b.qty, lp)
    assert np.all(np.abs(eq - req)[ok] <= 1e-9 * (b.qty * lp)[ok])
    for k, liquidatable in ((1 - 1e-7, s > 0), (1 + 1e-7, s < 0)):
        p = lp * k
        below = b.collateral_usd + s * b.qty * (p - b.entry_price) < eng.drift.requirement(b.qty, p)
        np.testing.assert_array_equal(below[ok], liquidatable[ok])
    # never-liquidated positions: longs whose collateral covers the position even at a price near 0
    nan = ~ok
    assert (s[nan] > 0).all()
    p0 = np.full(nan.sum(), 1e-9)
    assert (b.collateral_usd[nan] + b.qty[nan] * (p0 - b.entry_price[nan]) >= eng.drift.requirement(b.qty[nan], p0)).all()


def test_drift_prices_differ_from_binance_formula_by_the_size_premium(drift):
    lp, old = liquidation_prices(drift), _binance_formula(drift)
    m = drift.venue.drift.market_for(drift.book.instrument, drift.venue.name)
    premium = 0.8 * m.margin_ratio_maintenance + m.imf_factor * np.sqrt(drift.book.qty) > m.margin_ratio_maintenance
    assert premium.sum() > 10 and (~premium).sum() > 10     # the book has both kinds
    ok = np.isfinite(lp) & np.isfinite(old)
    rel = np.abs(lp / old - 1.0)
    # with the premium a long is liquidated at a higher price, a short at a lower one; without it they agree
    assert (rel[ok & premium] > 1e-6).all()
    closer = np.where(drift.book.side > 0, lp > old, lp < old)
    assert closer[ok & premium].all()
    np.testing.assert_allclose(lp[ok & ~premium], old[ok & ~premium], rtol=1e-9)


def test_dydx_prices_are_where_the_engine_check_at_the_oracle_flips():
    prep = _prep("venue.preset=dydx-v4", "market.instrument=BTC-USD", positions=500)
    lp = liquidation_prices(prep)
    b = prep.book
    s = b.side.astype(np.float64)
    ok = np.isfinite(lp)
    assert ok.all()
    # engine.dydx_path: TNC = collateral + side q (oracle - entry) against tiers.maintenance_margin(q x oracle)
    lt = prep.venue.dydx_tier_for(b.instrument)
    tnc = b.collateral_usd + s * b.qty * (lp - b.entry_price)
    np.testing.assert_allclose(prep.tiers.maintenance_margin(b.qty * lp), b.qty * lp * lt.mmr, rtol=1e-12)
    assert np.all(np.abs(tnc - prep.tiers.maintenance_margin(b.qty * lp)) <= 1e-9 * b.qty * lp)


def _history(tmp_path: Path, start: float, end: float, venue: tuple[str, ...]):
    """A prepared run on a 30-bar 1-minute history from ``start`` to ``end`` (klines written to ``tmp_path``)."""
    closes = np.linspace(start, end, 30)
    rows, prev, t0 = [KLINE_HEADER], closes[0], 1760131200000
    for k, c in enumerate(closes):
        t = t0 + k * 60_000
        rows.append(f"{t},{prev},{max(prev, c)},{min(prev, c)},{c},{10.0 + k},{t + 59_999},{(10.0 + k) * c},42,5.0,"
                    f"{5.0 * c},0")
        prev = c
    path = tmp_path / "klines.csv"
    path.write_text("\n".join(rows) + "\n")
    sc = with_klines_driver(load_scenario(None, ["book.synthesize.positions=500", *venue]), path, DATA, "stress")
    return prepare(sc, DATA)


def _binance_cohorts(prep, typical, side, position_usd, leverage, present):
    """The cohort prices before the venue risk models: Binance's formula, bar by bar."""
    out = np.full((typical.size, side.size), np.nan)
    for k, p in enumerate(typical):
        out[k] = liquidation_price_binance(side, position_usd / p, np.full(side.size, p), position_usd / leverage,
                                           prep.tiers)
    out[:, ~present] = np.nan
    return out


def test_binance_usdm_standing_heatmap_is_unchanged(tmp_path, monkeypatch):
    prep = _history(tmp_path, 100_000.0, 75_000.0, ())
    opts = HeatmapOptions(range_pct=10, step_pct=1, feedback_step_pct=0, ensemble=0, price_step_pct=0.5).validate()
    new = liquidation_heatmap(prep, DATA, opts)
    monkeypatch.setattr(heatmap, "_cohort_liquidation_prices", _binance_cohorts)
    old = liquidation_heatmap(prep, DATA, opts)
    assert new.standing_long_usd.sum() > 0 and new.touched_long_usd.sum() > 0 and new.standing_short_usd.sum() > 0
    for f in ("standing_long_usd", "standing_short_usd", "touched_long_usd", "touched_short_usd", "opened_usd",
              "liquidated_usd"):
        np.testing.assert_array_equal(getattr(new, f), getattr(old, f))


def test_drift_cohorts_use_the_size_premium(tmp_path):
    prep = _history(tmp_path, 200.0, 180.0, ("venue.preset=drift", "market.instrument=SOL-PERP"))
    typical = np.array([200.0, 190.0])
    side = np.array([1, 1, -1], np.int8)
    rep = np.array([2_000.0, 2e6, 2e6])        # 10 SOL (no premium) and 10,000 SOL (premium) at 200
    lev = np.array([10.0, 10.0, 10.0])
    lp = heatmap._cohort_liquidation_prices(prep, typical, side, rep, lev, np.array([True, True, True]))
    old = _binance_cohorts(prep, typical, side, rep, lev, np.ones(3, bool))
    np.testing.assert_allclose(lp[:, 0], old[:, 0], rtol=1e-9)
    assert (lp[:, 1] > old[:, 1] * (1 + 1e-3)).all() and (lp[:, 2] < old[:, 2] * (1 - 1e-3)).all()
    eng = make_engine(prep)
    q = rep[None, :] / typical[:, None]
    eq = rep[None, :] / lev[None, :] + side[None, :] * q * (lp - typical[:, None])
    np.testing.assert_allclose(eq, eng.drift.requirement(q.ravel(), lp.ravel()).reshape(q.shape), rtol=1e-9)
