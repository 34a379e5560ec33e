"""OKX preset: the forced partial liquidation example, the ADL trigger and ADL price rules.

Sources (stored copies; venue-mechanics.md §3): okx hc 360020411711 "Forced Partial or Full Liquidation";
OKX early-liquidation help page (ouchyi.rocks copy): "a rapid drop is defined as a straight-line decrease of 30%
from the peak value of the risk reserve within 8 hours ... match liquidated positions with high-priority
counterparty accounts in the ADL ranking at the current Mark Price"; OKX API v5 ``adl-warning`` channel (``maxBal``:
"Maximum insurance fund balance in the past eight hours"); okx.com help "Adjustment of Perpetual Swap Tiered
Maintenance Margin Ratio Schedule" (BTC tiers, 2019-05-31). No OKX worked example of the ADL ranking or of a
liquidation price was found in the stored pages.
"""

from __future__ import annotations

import numpy as np
import pytest

from delever.scenario import Scenario
from delever.venues import load_venue
from venue_cex_helpers import engine_for, money_balances, one_level_book

OKX = load_venue("okx")
FACE_USD = 100.0  # BTC-USD-SWAP contract face value


def test_preset_tiers_are_the_2019_btc_schedule_in_usd():
    # "1 | 0~999 | 0.5% | 100; 2 | 1,000~9,999 | 1.0% | 50; 3 | 10,000~14999 | 1.5% | 30; 4 | 15,000~24,999 | 2.0% | 20;
    # 5 | 25,000~49,999 | 2.5% | 15; 6 | 50,000~74,999 | 3.0% | 10; 7 | 75,000~99,999 | 3.5% | 9; 8 | 100,000~109,999 |
    # 4.0% | 8; 9 | 110,000~119,999 | 4.5% | 8; 10 | 120,000~129,999 | 5.0% | 8"
    t = OKX.tiers_for("BTC-USDT-SWAP")
    first_contract = [0, 1_000, 10_000, 15_000, 25_000, 50_000, 75_000, 100_000, 110_000, 120_000]
    np.testing.assert_allclose(t.floor_usd, np.array(first_contract) * FACE_USD)
    np.testing.assert_allclose(t.mmr, np.arange(1, 11) * 0.005)
    np.testing.assert_array_equal(t.max_leverage, [100, 50, 30, 20, 15, 10, 9, 8, 8, 8])


def _partial_example_engine():
    # 360020411711's example schedule: tier 1 up to 2,000 swaps, tier 3 from 12,001, tier-3 MMR 2 % (tier 1-2 MMR
    # [U], not in the example). 15,000 swaps of 100 USD = 150 BTC at 10,000 USD.
    tiers = {"tiers": {"BTC-USDT-SWAP": {"floor_usd": [0, 2_000 * FACE_USD, 12_000 * FACE_USD],
                                         "max_leverage": [100, 66, 50], "mmr": [0.01, 0.015, 0.02]}},
             "mark": {"method": "index"}}
    eng = engine_for("okx", 10_000.0, [1], [150.0], [10_000.0], [20_000.0], overrides=tiers, fund_usd=1e6)
    one_level_book(eng, 9_990.0)
    return eng


def test_forced_partial_liquidation_example():
    # "For position at Tier 3 or above (Number of Swaps>=12,001, e.g. 15,000), Forced Partial Liquidation occurs when
    # the Margin Ratio is lower than the required Maintenance Margin Ratio (2%). The relevant position will be
    # liquidated until it is at Tier 1 ... Number of Swaps to be closed = Number of Swaps held - max Number of Swaps
    # acceptable for Tier 1 = 15,000-2,000=13,000 swaps."
    eng = _partial_example_engine()
    eng._round(0, 0, 0.0, 10_000.0, 10_000.0, 10_000.0)
    rows = eng.liq_rows.to_table().to_pylist()
    assert [r["kind"] for r in rows] == ["partial"]
    assert round(rows[0]["qty"] * 10_000.0 / FACE_USD) == 13_000
    assert round(eng.qty[0] * 10_000.0 / FACE_USD) == 2_000
    money_balances(eng)


def test_partial_liquidation_waits_a_minute_then_liquidates_in_full():
    # "About a minute later, if ... the Margin Ratio of the remaining position [does not reach the requirement] ...
    # The liquidation procedure will start over again"; at tier 1 that is a forced full liquidation.
    eng = _partial_example_engine()
    eng._round(0, 0, 0.0, 10_000.0, 10_000.0, 10_000.0)
    q = eng.qty[0]
    eng.coll[0] = 100.0  # the remaining 20 BTC are now deficient
    eng._refresh_lp(np.array([0]))
    assert not eng._round(1, 0, 30.0, 10_000.0, 10_000.0, 10_000.0)  # frozen: nothing happens
    assert eng.qty[0] == q
    assert eng._round(2, 0, 61.0, 10_000.0, 10_000.0, 10_000.0)
    assert eng.qty[0] == 0.0


def test_rapid_drop_window():
    # Decline from the peak of the last 8 hours: 25 % -> no ADL, 31 % -> ADL; a peak older than 8 h is forgotten.
    eng = engine_for("okx", 50_000.0, [1], [1.0], [50_000.0], [5_000.0], fund_usd=100.0)
    assert not eng._fund_drawdown.dropped(0.0, 100.0)
    assert not eng._fund_drawdown.dropped(3_600.0, 75.0)
    assert eng._fund_drawdown.dropped(7_200.0, 69.0)
    assert not eng._fund_drawdown.dropped(30_000.0, 69.0)  # peak within [1,200 s, 30,000 s] is 75


def _fund_with_long_inventory(mark: float):
    eng = engine_for("okx", 50_000.0, [-1], [20.0], [50_000.0], [20_000.0], fund_usd=100_000.0)
    eng._backstop_checks(50_000.0, 50_000.0, 0, 0, 0.0)  # the fund's peak: 100,000
    eng.backstop.inv_qty, eng.backstop.inv_entry = 10.0, 50_000.0  # a liquidated long taken over at 50,000
    eng._backstop_checks(mark, mark, 1, 0, 1.0)
    return eng


def test_rapid_drop_deleverages_at_the_mark_price():
    # 40,000 USD loss on the inventory: within the fund's balance (no loss trigger) but a 40 % drop from the peak.
    eng = _fund_with_long_inventory(46_000.0)
    adl = eng.adl_rows.to_table().to_pylist()
    assert [(r["account"], r["qty"], r["price"], r["trigger"]) for r in adl] == [(1, 10.0, 46_000.0, "fund_drawdown")]
    assert eng.backstop.inv_qty == 0.0 and round(eng.backstop.cash_usd, 2) == 60_000.00
    money_balances(eng)


def test_nearly_depleted_fund_deleverages_at_the_bankruptcy_price():
    # Equity 0 < 5 % of the starting balance [U threshold]: ADL at the bankruptcy price of the liquidated order.
    eng = _fund_with_long_inventory(40_000.0)
    adl = eng.adl_rows.to_table().to_pylist()
    assert [(r["qty"], r["price"]) for r in adl] == [(10.0, 50_000.0)]
    assert round(eng.backstop.cash_usd, 2) == 100_000.00
    money_balances(eng)


def test_fast_kernel_declines_the_new_mechanics():
    from delever.engine.fast import fast_kernel_support
    from delever.runner import Prepared

    for name, reason in (("bitmex", "mark method 'fair_price'"), ("bybit", "step-down order 'fill_or_kill'"),
                         ("okx", "step-down target 'first_tier'")):
        venue = load_venue(name)
        prep = Prepared(Scenario(), venue, venue.tiers_for("BTCUSDT"), None, None, [1], "", "")
        ok, why = fast_kernel_support(prep)
        assert not ok and reason in why
    for overrides, reason in (({"liquidation": {"step_down_tiers": False, "close_at_bankruptcy": True}},
                               "bankruptcy price with the surplus"),
                              ({"liquidation": {"liquidation_taker_fee_rate": 0.0005}}, "taker fees"),
                              ({"backstop": {"adl_drawdown_fraction": 0.3}}, "fund-drawdown")):
        venue = load_venue("binance-usdm", {**overrides, "liquidation": {**overrides.get("liquidation", {}),
                                                                         "step_down_tiers": False}})
        prep = Prepared(Scenario(), venue, venue.tiers_for("BTCUSDT"), None, None, [1], "", "")
        ok, why = fast_kernel_support(prep)
        assert not ok and reason in why, why
    # OKX's ADL at the mark price (bankruptcy price when the fund is nearly depleted) runs in the kernel
    venue = load_venue("binance-usdm", {"adl": {"price": "mark", "bankruptcy_below_fund_fraction": 0.2}})
    assert fast_kernel_support(Prepared(Scenario(), venue, venue.tiers_for("BTCUSDT"), None, None, [1], "", ""))[0]


@pytest.mark.parametrize("bad, key", [({"liquidation": {"step_down_from_tier": 1}}, "step_down_from_tier"),
                                      ({"backstop": {"adl_drawdown_fraction": 1.2}}, "adl_drawdown_fraction"),
                                      ({"adl": {"price": "last"}}, "price")])
def test_bad_rule_values_name_the_option(bad, key):
    from delever.errors import DeleverInputError

    with pytest.raises(DeleverInputError, match=key):
        load_venue("okx", bad)
