"""Bybit preset: Bybit help-center worked examples reproduced to the cent, and its fee rules in the engine.

Articles (stored copies; venue-mechanics.md §3): help.bybit.com 900000181046 "Liquidation Price (USDT Contract)",
testnet.bybit.com help "Liquidation Price (USDT Contract)", help.bybit.com 900000169703 "Order Cost (USDT
Contract)", help.bybit.com 900000031623 (ADL: fees), bybit.com help id=000001098 (liquidation process).
"""

from __future__ import annotations

import numpy as np
import pytest

from delever.engine.ledger import FEE_POOL, party_name
from delever.venues import load_venue
from delever.venues.formulas import bankruptcy_price_with_close_fee, liquidation_price_entry_mm
from venue_cex_helpers import engine_for, money_balances, one_level_book

BYBIT = load_venue("bybit")
LONG, SHORT = np.array([1], np.int8), np.array([-1], np.int8)


def lp(side, entry, lev, mmr=0.005, extra=0.0, qty=1.0) -> float:
    return float(liquidation_price_entry_mm(side, np.array([entry]), np.array([lev]), mmr, extra, qty)[0])


# --------------------------------------------------------------------------- liquidation price
def test_liquidation_price_examples_900000181046():
    # "Trader place a long entry of 1 BTC at 10,000 USDT with 50x leverage ... Liquidation Price = 10,000 USDT *
    # (1 - 2% + 0.5%) = 9,850 USDT"; "a short entry of 1 BTC at 8,000USDT with 40x leverage ... = 8,000 USDT *
    # (1 + 2.5% - 0.5%) = 8160 USDT".
    assert round(lp(LONG, 10_000.0, 50.0), 2) == 9_850.00
    assert round(lp(SHORT, 8_000.0, 40.0), 2) == 8_160.00


def test_liquidation_price_example_testnet_article():
    # "Trader A placed a long entry of 1 BTC at 20,000 USDT with 50x leverage ... MMR is 0.5% ... Initial Margin =
    # 1 x 20,000 USDT / 50 = 400 USDT; Maintenance Margin = 1 x 20,000 x 0.5% - 0 = 100 USDT; LP = 20,000 USDT -
    # (400 - 100) = 19,700 USDT".
    assert round(lp(LONG, 20_000.0, 50.0), 2) == 19_700.00


# --------------------------------------------------------------------------- bankruptcy price with the fee to close
def test_order_cost_example_bankruptcy_price_includes_fee_to_close():
    # 900000169703: "Trader A opens a long position of 1 BTC at 50,000 USDT with 10x leverage. Initial Margin =
    # (50,000 x 1) / 10 = 5,000 USDT; Fee to Open Position = 1 x 50,000 x 0.06% = 30 USDT; Fee to Close Position =
    # 1 x 50,000 x (10 - 1) / 10 x 0.06% = 27 USDT ... order cost = 5,000 + 30 + 27 = 5,057 USDT"; "Bankruptcy Price
    # for Long Position = Order Price x (Leverage - 1) / Leverage"; "Order Quantity = Order Cost x Leverage /
    # [Order Price x (0.0012 x Leverage + 0.9994)] = 5,057 x 10 / [50,000 x (0.0012 x 10 + 0.9994)] = 1 BTC".
    fee = 0.0006
    bp = float(bankruptcy_price_with_close_fee(LONG, np.array([1.0]), np.array([50_000.0]), np.array([5_027.0]),
                                               fee)[0])
    assert round(bp, 2) == 45_000.00
    assert round(1.0 * bp * fee, 2) == 27.00
    assert round(5_000.0 + 1 * 50_000.0 * fee + 1.0 * bp * fee, 2) == 5_057.00
    assert round(5_057.0 * 10 / (50_000.0 * (2 * fee * 10 + 1 - fee)), 6) == 1.0


def test_order_cost_example_at_0075_taker_fee():
    # Older copy of the same article (mobie.io): "1 BTC at a price of 10,000 USD ... 50 times leverage. Initial
    # margin = 200USDT; Opening fee = 7.5USDT; Bankruptcy price = 10000 x (1 - 0.02) = 9800 USD; Closing fee =
    # 1BTC x 9800 x 0.075 % = 7.35USDT; Commission cost = 214.85 USDT".
    bp = float(bankruptcy_price_with_close_fee(LONG, np.array([1.0]), np.array([10_000.0]), np.array([207.35]),
                                               0.00075)[0])
    assert round(bp, 2) == 9_800.00 and round(bp * 0.00075, 2) == 7.35


def test_short_fee_to_close_formula():
    # Formula check (no worked short example found): "Fee to Close (Sell order) = Contract Quantity x Order Price x
    # [1 + 1 / Leverage] x Taker Fee Rate": 1 BTC short at 50,000, 10x, 0.06 % -> bankruptcy 55,000, fee 33.
    bp = float(bankruptcy_price_with_close_fee(SHORT, np.array([1.0]), np.array([50_000.0]), np.array([5_033.0]),
                                               0.0006)[0])
    assert round(bp, 2) == 55_000.00


# --------------------------------------------------------------------------- fees in the engine
def _liquidated_long(bid: float):
    # The order-cost position: 1 BTC long at 50,000, 10x, margin = 5,000 + fee to close 27 (0.06 % taker fee).
    eng = engine_for("bybit", 50_000.0, [1], [1.0], [50_000.0], [5_027.0],
                     overrides={"liquidation": {"liquidation_taker_fee_rate": 0.0006}, "mark": {"method": "index"}})
    one_level_book(eng, bid)
    eng._round(0, 0, 0.0, 50_000.0, 45_100.0, 45_100.0)  # mark below the liquidation price (~45,199)
    return eng


def test_liquidated_order_pays_the_taker_fee_at_the_bankruptcy_price():
    # Filled exactly at the bankruptcy price 45,000: the reserved fee to close (27 USDT) is the taker fee.
    eng = _liquidated_long(45_000.0)
    assert eng.qty[0] == 0.0
    assert round(eng.fee_pool_cash, 2) == 27.00
    assert round(eng.backstop.cash_usd, 2) == 0.00
    assert eng.coll[0] + eng.free[0] == pytest.approx(0.0, abs=1e-9)
    assert party_name(FEE_POOL) == "fee_pool"
    money_balances(eng)


def test_fill_better_than_bankruptcy_after_fee_goes_to_the_insurance_fund():
    # Filled at 45,500: taker fee 45,500 x 0.06 % = 27.30; the rest of the margin, 5,027 - 4,500 - 27.30 = 499.70,
    # is the insurance fund's ("the remaining position margin will contribute to the insurance fund").
    eng = _liquidated_long(45_500.0)
    assert round(eng.fee_pool_cash, 2) == 27.30
    assert round(eng.backstop.cash_usd, 2) == 499.70
    money_balances(eng)


def test_takeover_at_the_fee_inclusive_bankruptcy_price():
    # The book bids below the bankruptcy price: taken over at 45,000, the trader pays the 27 USDT fee to close.
    eng = _liquidated_long(44_000.0)
    assert eng.backstop.inv_qty == 1.0 and round(eng.backstop.inv_entry, 2) == 45_000.00
    assert round(eng.fee_pool_cash, 2) == 27.00
    assert eng.liq_rows.to_table()["kind"].to_pylist() == ["takeover"]
    money_balances(eng)


def test_adl_counterparty_pays_the_maker_fee():
    # 900000031623: the maker fee is charged to the ADL'd trader. Preset rate 0.02 % [U].
    eng = engine_for("bybit", 60_000.0, [-1], [2.0], [65_000.0], [20_000.0])
    eng.backstop.inv_qty, eng.backstop.inv_entry = 1.5, 59_000.0  # a liquidated long, taken over at 59,000
    before = eng.coll[0]
    eng._adl(1.5, 59_000.0, 60_000.0, "test", 0, 0, 0.0)
    fee = 0.0002 * 1.5 * 59_000.0
    assert round(eng.fee_pool_cash, 2) == round(fee, 2) == 17.70
    assert eng.coll[0] == pytest.approx(before + 1.5 * (65_000.0 - 59_000.0) - fee)
    money_balances(eng)


def test_preset_tiers_from_the_risk_limit_api():
    # v5 /market/risk-limit BTCUSDT (testnet output): limits 2M / 4M / 6M USDT, MMR 0.5 / 1 / 1.5 %, max leverage
    # 100 / 57.14 / 40.
    t = BYBIT.tiers_for("BTCUSDT")
    np.testing.assert_allclose(t.floor_usd[:3], [0, 2e6, 4e6])
    np.testing.assert_allclose(t.mmr[:3], [0.005, 0.01, 0.015])
    np.testing.assert_allclose(t.max_leverage[:3], [100, 57.14, 40])
    assert t.maint_amount_usd[1] == pytest.approx(10_000.0)  # 2M x (1 % - 0.5 %)
