"""BitMEX preset: worked examples of BitMEX's own pages reproduced to the cent.

Pages (stored copies, see venue-mechanics.md §2): bitmex.com/app/riskLimitsExamples,
/liquidationExamples, /autoDeleveraging, /autoDeleveragingExamples, /fairPriceMarking.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delever.market.depth import parametric_curve
from delever.market.impact import Impact
from delever.venues import load_venue
from delever.venues.bitmex import adl_indicator_quintile, fair_price, risk_limit_margins, risk_limit_tiers
from delever.venues.formulas import adl_score, bankruptcy_price, liquidation_price_entry_mm
from venue_cex_helpers import engine_for, money_balances, one_level_book

BITMEX = load_venue("bitmex")


# --------------------------------------------------------------------------- riskLimitsExamples
def test_risk_limit_table_base_200_step_150():
    # riskLimitsExamples: "with XBTUSD the base maintenance and initial margin are 0.50% and 1.00%";
    # "< 200 XBT 0.50% 1.00% | < 350 XBT 1.00% 1.50% | < 500 XBT 1.50% 2.00% | < 650 XBT 2.00% 2.50%".
    mmr, imr, steps = risk_limit_margins(np.array([199.0, 349.0, 499.0, 649.0]), 0.005, 0.01, 200.0, 150.0)
    np.testing.assert_allclose(mmr, [0.005, 0.010, 0.015, 0.020], atol=1e-15)
    np.testing.assert_allclose(imr, [0.010, 0.015, 0.020, 0.025], atol=1e-15)
    np.testing.assert_array_equal(steps, [0, 1, 2, 3])


def test_risk_limit_trade_example():
    # "A trader has a XBTUSD position worth 180 XBT. The current maintenance margin requirement is 0.50%
    # (0.90 XBT) ... a new order of 50 XBT ... would increase his position to 230 XBT ... 1 step above the
    # Base Risk Limit of 200 XBT ... increases their maintenance and initial margin to ... 1.00% and 1.50%".
    mmr, imr, _ = risk_limit_margins(180.0, 0.005, 0.01, 200.0, 150.0)
    assert round(180.0 * float(mmr), 2) == 0.90 and float(imr) == 0.01
    mmr, imr, steps = risk_limit_margins(230.0, 0.005, 0.01, 200.0, 150.0)
    assert (float(mmr), float(imr), int(steps)) == (0.01, 0.015, 1)


def test_risk_limit_older_page_base_100_step_50():
    # Older riskLimitsExamples copy: base MM 0.50 %, IM 2.00 %, base limit 100 XBT, step 50 XBT: "< 100 XBT 0.50%
    # 2.00% | < 150 XBT 1.00% 2.50% | < 200 XBT 1.50% 3.00% | < 250 XBT 2.00% 3.50%"; "a XBTUSD position worth 80 XBT
    # ... 0.5% (0.4 XBT) ... 2.00% (50x leverage)", then 130 XBT -> "1% and 2.50%".
    mmr, imr, _ = risk_limit_margins(np.array([99.0, 149.0, 199.0, 249.0]), 0.005, 0.02, 100.0, 50.0)
    np.testing.assert_allclose(mmr, [0.005, 0.010, 0.015, 0.020], atol=1e-15)
    np.testing.assert_allclose(imr, [0.020, 0.025, 0.030, 0.035], atol=1e-15)
    mmr, imr, _ = risk_limit_margins(80.0, 0.005, 0.02, 100.0, 50.0)
    assert round(80.0 * float(mmr), 2) == 0.40 and 1.0 / float(imr) == 50.0
    mmr, imr, _ = risk_limit_margins(130.0, 0.005, 0.02, 100.0, 50.0)
    assert (float(mmr), float(imr)) == (0.01, 0.025)


def test_preset_tiers_are_the_risk_limit_steps_at_the_stated_price():
    # The preset converts the 200 / 150 XBT steps at 50,000 USD/XBT (comment in bitmex.toml).
    floors, mmr, lev = risk_limit_tiers(0.005, 0.01, 200.0, 150.0, 10, 50_000.0)
    t = BITMEX.tiers_for("XBTUSD")
    np.testing.assert_allclose(t.floor_usd, floors, rtol=0, atol=1e-6)
    np.testing.assert_allclose(t.mmr, mmr, rtol=0, atol=1e-15)
    np.testing.assert_allclose(t.max_leverage, lev, rtol=1e-12)
    assert BITMEX.tiers_for("BTCUSDT") is not None  # default scenario instrument maps to XBTUSD


# --------------------------------------------------------------------------- liquidationExamples
def test_liquidation_example_prices():
    # "A trader goes long 1 contract at $100.00, with a liquidation price of $99.50 and a bankruptcy price of $99.00"
    # (1 % initial margin = 100x, 0.5 % maintenance margin).
    assert float(bankruptcy_price(np.array([1]), np.array([1.0]), np.array([100.0]), np.array([1.0]))[0]) == 99.00
    lp = liquidation_price_entry_mm(np.array([1]), np.array([100.0]), np.array([100.0]), 0.005)
    assert round(float(lp[0]), 2) == 99.50


def _lowest_tier_long(bid: float, fund: float):
    # 1 "contract" of the example as 1 base unit at 100 USD with 1.00 USD of margin (bankruptcy price 99.00).
    eng = engine_for("bitmex", 100.0, [1], [1.0], [100.0], [1.0], fund_usd=fund,
                     overrides={"mark": {"method": "index"}})
    one_level_book(eng, bid)
    eng._round(0, 0, 0.0, 100.0, 99.40, 99.40)  # mark below the liquidation price
    return eng


def test_liquidation_example_fill_better_than_bankruptcy_goes_to_the_insurance_fund():
    # "... places a limit sell order with a limit price of $99.00 (bankruptcy price). The liquidation order is filled at
    # $99.25. The extra $0.25 goes into the Insurance Fund." (sat.is copy of the BitMEX example; the BitMEX page text is
    # cut after "limit pric" in the stored copy.)
    eng = _lowest_tier_long(99.25, 0.0)
    assert eng.qty[0] == 0.0
    assert round(eng.backstop.cash_usd, 2) == 0.25
    assert eng.coll[0] + eng.free[0] == 0.0  # the trader loses the whole margin, maintenance margin included
    money_balances(eng)


def test_liquidation_example_fill_worse_than_bankruptcy_uses_the_insurance_fund():
    # "Later on, Trader B ... If this order is filled at $98.75, the available Insurance Fund of $0.25 is utilized to
    # compensate for the loss. ADL is prevented and the Insurance Fund is left with $0."
    eng = _lowest_tier_long(98.75, 0.25)
    assert eng.qty[0] == 0.0 and eng.backstop.inv_qty == 1.0 and eng.backstop.inv_entry == 99.0  # taken over at 99
    eng._unwind(100.0, 99.40, 1.0)  # the fund aggresses the book: fills at 98.75
    assert eng.backstop.inv_qty == 0.0
    assert round(eng.backstop.cash_usd, 2) == 0.00
    assert eng.totals.adl_count == 0 and eng.totals.bad_debt_usd == 0.0  # the fund covered it
    assert eng.totals.takeover_pnl_usd == pytest.approx(-0.25)  # the loss beyond the bankruptcy price
    money_balances(eng)


def test_higher_tier_fill_or_kill_then_full_takeover():
    # "a FillOrKill order, of a size to bring the position value below a lower tier Risk Limit ... If either the
    # FillOrKill order is not executed ... the entire position is taken over by the system with a limit order placed
    # at the bankruptcy price." Position: 300 BTC at 50,000 (15M USD, tier 2 of the preset, floor 10M).
    qty, entry, coll = 300.0, 50_000.0, 300.0 * 50_000.0 * 0.02
    eng = engine_for("bitmex", entry, [1], [qty], [entry], [coll], overrides={"mark": {"method": "index"}})
    mark = 49_200.0
    step_down = qty - 10_000_000.0 / mark
    bp = entry - coll / qty  # 49,000
    one_level_book(eng, 49_100.0, bid_qty=step_down - 1.0)  # the book holds 1 BTC less than the FOK order
    eng._round(0, 0, 0.0, entry, mark, mark)
    rows = eng.liq_rows.to_table().to_pylist()
    # FOK killed; the full limit order at the bankruptcy price fills what the level holds, the rest is taken over.
    assert [r["kind"] for r in rows] == ["market", "takeover"]
    assert rows[0]["qty"] == pytest.approx(step_down - 1.0) and rows[0]["bankruptcy_price"] == pytest.approx(bp)
    assert rows[1]["qty"] == pytest.approx(qty - step_down + 1.0) and rows[1]["price"] == pytest.approx(bp)
    # The fill at 49,100 beat the bankruptcy price by 100 USD per BTC: that surplus is the fund's.
    assert eng.backstop.cash_usd == pytest.approx(100.0 * (step_down - 1.0))
    assert eng.coll[0] + eng.free[0] == pytest.approx(0.0, abs=1e-6)
    money_balances(eng)


def test_higher_tier_fill_or_kill_success_keeps_the_rest():
    qty, entry, coll = 300.0, 50_000.0, 300.0 * 50_000.0 * 0.02
    eng = engine_for("bitmex", entry, [1], [qty], [entry], [coll], overrides={"mark": {"method": "index"}})
    mark = 49_200.0
    one_level_book(eng, 49_150.0)
    eng._round(0, 0, 0.0, entry, mark, mark)
    rows = eng.liq_rows.to_table().to_pylist()
    assert [r["kind"] for r in rows] == ["partial"]
    assert eng.qty[0] * mark == pytest.approx(10_000_000.0)  # down to the top of the lower risk limit
    assert eng.backstop.cash_usd == 0.0  # a step-down fill is the trader's own
    money_balances(eng)


def test_fill_or_kill_orders_fill_in_full_or_not_at_all():
    depth = parametric_curve("sqrt", 1e6, 100.0)
    a, b = Impact(depth, 0.0, 30.0, 50.0), Impact(depth, 0.0, 30.0, 50.0)
    qty = np.array([5e4, 10.0])
    limit = np.array([99.0, 90.0])  # the first walks first; it cannot fill in full within 1 %
    ioc, _ = a.sell(100.0, qty, limit)
    fok, _ = b.sell(100.0, qty, limit, np.array([True, True]))
    assert 0 < ioc[0] < qty[0]
    assert fok[0] == 0.0 and fok[1] == 10.0


# --------------------------------------------------------------------------- autoDeleveraging(Examples)
def test_adl_example_queue_and_quintiles():
    # autoDeleveragingExamples: six longs, "Account | Quantity | PNL Ranking": 1|10|3, 2|10|6, 3|20|1, 4|30|4, 5|20|5,
    # 6|10|2 -> ranked 2, 5, 4, 1, 6, 3 with percentiles 20 %, 40 %, 60 %, 80 %, 80 %, 100 %. "a short position that
    # has been liquidated with size 20 and bankruptcy price of USD 650. Accounts 2 and 5 will be deleveraged at the
    # bankruptcy price of USD 650. Account 2 will have their entire position of 10 contracts closed, while the
    # remaining 10 contracts ... assigned to account 5. Account 5 will thus have 10 contracts remaining (from 20)."
    qty = np.array([10.0, 10.0, 20.0, 30.0, 20.0, 10.0])
    doc_rank = np.array([3.0, 6.0, 1.0, 4.0, 5.0, 2.0])
    np.testing.assert_array_equal(adl_indicator_quintile(doc_rank, qty), [4, 1, 5, 3, 2, 4])  # x 20 %

    # Positions whose PnL% x effective leverage order is the page's ranking (lower entry = higher score at mark 700).
    entry = np.array([{6: 400.0, 5: 450.0, 4: 500.0, 3: 550.0, 2: 600.0, 1: 640.0}[int(r)] for r in doc_rank])
    coll = 100.0 * qty
    mark = 700.0
    score = adl_score("pnl_pct_x_effective_leverage", np.ones(6, np.int8), qty, entry, coll, mark, np.zeros(6))
    np.testing.assert_array_equal(np.argsort(-score), np.argsort(-doc_rank))

    eng = engine_for("bitmex", mark, np.ones(6), qty, entry, coll)
    eng.backstop.inv_qty, eng.backstop.inv_entry = -20.0, 650.0  # the liquidated short, taken over at 650
    done = eng._adl(20.0, 650.0, mark, "example", 0, 0, 0.0)
    adl = eng.adl_rows.to_table().to_pylist()
    assert done == 20.0
    assert [(r["account"], r["qty"], r["price"]) for r in adl] == [(2, 10.0, 650.0), (5, 10.0, 650.0)]
    assert eng.qty[4] == 10.0 and eng.qty[1] == 0.0
    money_balances(eng)


@settings(max_examples=200, deadline=None)
@given(side=st.sampled_from([1, -1]), qty=st.floats(1e-3, 1e3), entry=st.floats(10.0, 1e5),
       lev=st.floats(1.1, 100.0), move=st.floats(-0.5, 0.5))
def test_ranking_is_bitmex_definition_with_position_values(side, qty, entry, lev, move):
    # autoDeleveraging: "Effective Leverage = abs(Mark Value) / (Mark Value - Bankrupt Value); PNL percentage =
    # (Mark Value - Avg Entry Value) / abs(Avg Entry Value)", values = signed position value at each price.
    coll = qty * entry / lev
    mark = entry * (1.0 + move)
    s = np.array([side], np.int8)
    bp = float(bankruptcy_price(s, np.array([qty]), np.array([entry]), np.array([coll]))[0])
    mv, bv, ev = side * qty * mark, side * qty * bp, side * qty * entry
    if mv - bv <= 0:
        return  # bankrupt at this mark: not a counterparty
    eff_lev = abs(mv) / (mv - bv)
    pnl = (mv - ev) / abs(ev)
    want = pnl * eff_lev if pnl > 0 else pnl / eff_lev
    got = adl_score("pnl_pct_x_effective_leverage", s, np.array([qty]), np.array([entry]), np.array([coll]), mark,
                    np.zeros(1))
    assert got[0] == pytest.approx(want, rel=1e-9, abs=1e-12)


# --------------------------------------------------------------------------- fairPriceMarking
def test_fair_price_decays_to_index_at_the_funding_time():
    # "Funding Basis = Funding Rate * (Time Until Funding / Funding Interval); Fair Price = Index Price * (1 + Funding
    # Basis)". The page has no worked numbers; these are the formula's values, then 0 basis after the funding.
    assert fair_price(50_000.0, 0.0001, 28_800.0, 28_800.0) == pytest.approx(50_005.0)
    assert fair_price(50_000.0, 0.0001, 14_400.0, 28_800.0) == pytest.approx(50_002.5)
    assert fair_price(50_000.0, 0.0001, -60.0, 28_800.0) == 50_000.0


def test_engine_marks_at_fair_price():
    eng = engine_for("bitmex", 50_000.0, [1], [1.0], [50_000.0], [5_000.0],
                     overrides={"mark": {"funding_rate": 0.0003, "time_to_funding_s": 3_600.0}})
    eng.run()
    marks = eng.step_rows.to_table()["mark_price"].to_numpy()
    t = eng.step_rows.to_table()["t_s"].to_numpy()
    np.testing.assert_allclose(marks, 50_000.0 * (1 + 0.0003 * (3_600.0 - t) / 28_800.0), rtol=1e-12)


def test_fair_price_rejects_time_beyond_the_interval():
    from delever.errors import DeleverInputError

    with pytest.raises(DeleverInputError, match="time_to_funding_s"):
        load_venue("bitmex", {"mark": {"time_to_funding_s": 30_000.0}})
