"""Generic liquidation prices (``delever.risk.liquidation``): the root search against every closed form, the
equity = maintenance condition at the searched prices of Drift and dYdX (and the side just inside / outside), and
the speed on 1e5 positions.

Books come from ``test_risk_properties.books``: 1-4 accounts with cross positions in distinct instruments and
isolated positions, several collateral assets, mark != index.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from delever.model import AccountBook, InstrumentRegistry
from delever.risk import DriftRisk, DydxRisk, MultiAssetsRisk, Prices, group_sum
from delever.risk.liquidation import liquidation_prices, liquidation_prices_by_search, margin_price
from test_risk_properties import MODELS, SETTINGS, books

CLOSED_FORM = ["binance", "binance-haircut", "multi-assets", "okx", "hyperliquid", "bybit", "bitmex"]


@pytest.mark.parametrize("name", CLOSED_FORM)
@SETTINGS
@given(data=st.data())
def test_search_equals_the_closed_form(name, data):
    model, reg, _, _ = MODELS[name]
    book, prices = data.draw(books(reg))
    own = model.liquidation_price(book, prices)
    closed = liquidation_prices(model, book, prices)
    searched = liquidation_prices_by_search(model, book, prices)
    np.testing.assert_array_equal(np.isnan(closed), np.isnan(searched))
    ok = np.isfinite(own)
    np.testing.assert_array_equal(closed[ok], own[ok])       # the closed form itself where it has a price
    if name != "okx":
        np.testing.assert_allclose(searched, closed, rtol=1e-9, atol=0)
        assert np.isfinite(closed[~ok & (reg.inverse[book.pos_instrument] == (name == "bitmex"))]).sum() == 0
        return
    # OKX whole-position tiers: MM jumps at each floor, so a group can cross maintenance at a jump (no bracket holds
    # its own solution: the closed form is NaN) or more than once (the closed form takes the lowest bracket's, the
    # search the crossing in the first bracket it finds). Either way the searched price is a boundary: the group is
    # on opposite sides just below and just above it.
    for p in np.flatnonzero(np.isfinite(searched)):
        ins, g = int(book.pos_instrument[p]), book.pos_group[p]
        sides = [model.evaluate(book, _moved(prices, ins, searched[p] * k)) for k in (1 - 1e-9, 1 + 1e-9)]
        assert (sides[0].equity_usd[g] < sides[0].maint_usd[g]) != (sides[1].equity_usd[g] < sides[1].maint_usd[g])


@SETTINGS
@given(data=st.data())
def test_multi_assets_with_ask_buffers_keeps_its_closed_form(data):
    """Bid / ask rates make equity non-separable per position: the closed form alone answers, NaN included."""
    _, reg, _, _ = MODELS["multi-assets"]
    bin_ = MODELS["binance"][0].tiers
    model = MultiAssetsRisk(bin_, haircut=np.array([0.01, 0.05]), ask_buffer=np.array([0.005, 0.01]))
    book, prices = data.draw(books(reg))
    np.testing.assert_array_equal(liquidation_prices(model, book, prices), model.liquidation_price(book, prices))


def _moved(prices: Prices, instrument: int, price: float) -> Prices:
    """``prices`` with one instrument's mark and index at ``price``."""
    out = Prices(prices.mark.copy(), prices.index.copy(), prices.asset_usd)
    out.mark[instrument] = out.index[instrument] = price
    return out


@pytest.mark.parametrize("name", ["drift", "dydx"])
@SETTINGS
@given(data=st.data())
def test_searched_price_is_where_equity_meets_maintenance(name, data):
    model, reg, _, _ = MODELS[name]
    book, prices = data.draw(books(reg))
    lp = liquidation_prices(model, book, prices)
    side = np.sign(book.pos_qty)
    for p in range(book.n_positions):
        g, ins = book.pos_group[p], int(book.pos_instrument[p])
        if not np.isfinite(lp[p]):
            # no crossing: the group is on the same side near 0 and far above (a long that stays safe, or a group
            # whose other positions keep it below maintenance wherever this one's price goes)
            lo, hi = (model.evaluate(book, _moved(prices, ins, k * prices.index[ins])) for k in (1e-9, 1e9))
            assert (lo.equity_usd[g] < lo.maint_usd[g]) == (hi.equity_usd[g] < hi.maint_usd[g])
            continue
        at = model.evaluate(book, _moved(prices, ins, lp[p]))
        scale = float(group_sum(book, at.pos_notional_usd)[g] + np.abs(at.pos_upnl_usd[book.pos_group == g]).sum())
        assert at.equity_usd[g] == pytest.approx(at.maint_usd[g], abs=1e-9 * scale + 1e-9)
        # a long is liquidatable just below its price and safe just above; a short the other way round
        for k, liquidatable in ((1.0 - 1e-6, side[p] > 0), (1.0 + 1e-6, side[p] < 0)):
            r = model.evaluate(book, _moved(prices, ins, lp[p] * k))
            assert bool(r.equity_usd[g] < r.maint_usd[g]) == liquidatable


def test_drift_price_is_the_linear_solution():
    """Drift's requirement is ``|q| P mr(|q|)`` at fixed size, so a one-position group's price is exact algebra."""
    reg = InstrumentRegistry.linear(["SOL-PERP"])
    qty = np.array([120.0, -80.0, 5_000.0, 10.0])
    entry = np.array([150.0, 150.0, 140.0, 100.0])
    coll = np.array([2_000.0, 1_500.0, 90_000.0, 1_500.0])
    book = AccountBook.from_rows(reg, np.arange(4), np.zeros(4, np.int32), qty, entry, np.ones(4, bool), coll,
                                 np.zeros(4, np.int32))
    model = DriftRisk(np.array([0.1]), np.array([0.05]), np.array([0.002]))
    prices = Prices(np.array([150.0]), np.array([149.0]), np.array([1.0]))
    lp = liquidation_prices(model, book, prices)
    s, q = np.sign(qty), np.abs(qty)
    mr = model.position_requirement(np.zeros(4, np.int32), qty, np.ones(4))[0] / q   # the ratio: value 1 per base
    expected = (s * q * entry - coll) / (q * (s - mr))      # coll + s q (P - e) = q P mr
    expected[3] = np.nan                                    # a fully collateralized long
    np.testing.assert_allclose(lp, expected, rtol=1e-11)
    assert mr[2] > 0.05                                     # the whale pays the size premium


def test_searched_dydx_price_on_a_multi_position_subaccount():
    """Two markets in one subaccount: each position's price holds the other market's PnL and MMR fixed."""
    reg = InstrumentRegistry.linear(["BTC-USD", "ETH-USD"])
    model = DydxRisk(np.array([0.05, 0.1]), np.array([0.6, 0.5]))
    book = AccountBook.from_rows(reg, [7, 7], [0, 1], [1.0, -20.0], [60_000.0, 3_000.0], [False, False],
                                 [15_000.0, 15_000.0], [0, 0])
    prices = Prices(np.array([61_000.0, 3_100.0]), np.array([60_500.0, 3_050.0]), np.array([1.0]))
    lp = liquidation_prices(model, book, prices)
    # TNC = 15000 + (P_btc - 60000) - 20 (P_eth - 3000); TMMR = 0.03 P_btc + 0.05 x 20 P_eth
    eth_fixed = 15_000.0 - 20 * (3_050.0 - 3_000.0) - 0.05 * 20 * 3_050.0
    btc_fixed = 15_000.0 + (60_500.0 - 60_000.0) - 0.03 * 60_500.0
    np.testing.assert_allclose(lp, [(60_000.0 - eth_fixed) / 0.97, (btc_fixed + 60_000.0) / 21.0], rtol=1e-11)
    assert (margin_price(model, book, prices) == prices.index).all()


def test_speed_1e5_positions():
    rng = np.random.default_rng(3)
    n = 100_000
    reg = InstrumentRegistry.linear(["BTC-PERP", "ETH-PERP", "SOL-PERP"])
    model = DriftRisk(np.array([0.1, 0.1, 0.2]), np.array([0.05, 0.05, 0.1]), np.array([0.0005, 0.001, 0.003]))
    ins = (np.arange(n) % 3).astype(np.int32)      # cross accounts of 3 positions, one per market (one-way mode)
    px = np.array([60_000.0, 3_000.0, 150.0])
    qty = rng.lognormal(0.0, 1.0, n) * 1_000.0 / px[ins] * rng.choice([-1.0, 1.0], n)
    entry = px[ins] * rng.uniform(0.9, 1.1, n)
    account = np.arange(n) // 3
    wallet = np.bincount(account, np.abs(qty) * entry / rng.uniform(1.5, 15.0, n))
    book = AccountBook.from_rows(reg, account, ins, qty, entry, np.zeros(n, bool), wallet[account],
                                 np.zeros(n, np.int32))
    prices = Prices(px, px, np.array([1.0]))
    t0 = time.perf_counter()
    lp = liquidation_prices(model, book, prices)
    wall = time.perf_counter() - t0
    print(f"1e5 Drift positions: {wall:.2f} s")
    assert np.isfinite(lp).mean() > 0.5
    assert wall < 10.0, wall
