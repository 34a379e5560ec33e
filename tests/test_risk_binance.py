"""Binance USD-M cross margin over several symbols: the FAQ's two-symbol example through ``TieredRisk``.

Source: Binance FAQ b3c689c1f50a44cabb3a84e663b81d93 "How to Calculate Liquidation Price of USDⓈ-M Futures
Contracts" (2020-08-14), cross margin mode: ``LP1 = (WB - TMM1 + UPNL1 + cumB - Side1 x Position1 x EP1) /
(Position1 x MMR - Side1 x Position1)`` with TMM1 / UPNL1 the maintenance margin / unrealized PnL "of all other
contracts, excluding Contract 1". The example's numbers (the FAQ's body is an image in the stored copies) are the
ones freqtrade's Binance test quotes "From calc example" (freqtrade tests/exchange/test_binance.py,
``test_liquidation_price_binance``): wallet balance 1,535,443.01 USDT; BTCUSDT long 109.488 @ 32,481.98, mark
31,967.27, MMR 2.5 %, maintenance amount 16,300 -> LP 26,316.89; ETHUSDT long 3,683.979 @ 1,456.84, mark 1,335.18,
MMR 10 %, maintenance amount 135,365 -> LP 1,153.26.

Brackets: the example states (MMR, cum) only. BTCUSDT's (2.5 %, 16,300) is the 1M-10M bracket of the 2021-03-18
table (venue-mechanics.md §1, presets/binance-usdm.toml). ETHUSDT's (10 %, 135,365) follows by the FAQ's
"Maintenance Amount formula" (cum_n = cum_{n-1} + floor_n x (MMR_n - MMR_{n-1})) from the ETHUSDT brackets below
(floors 0 / 10k / 100k / 500k / 1M / 2M / 5M / 10M / 20M USDT, MMR 0.5 / 0.65 / 1 / 2 / 5 / 10 / 12.5 / 15 / 25 %);
the test checks that recursion lands on the example's 135,365. [U: ETHUSDT max leverages; they do not enter MM.]
"""

from __future__ import annotations

import numpy as np
import pytest

from delever.model import AccountBook, InstrumentRegistry
from delever.risk import Prices, TieredRisk
from delever.venues import load_venue
from delever.venues.formulas import liquidation_price_binance
from delever.venues.tiers import MarginTiers

BTC_TIERS = load_venue("binance-usdm").tiers_for("BTCUSDT")
ETH_TIERS = MarginTiers.from_floors(
    [0, 10_000, 100_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000, 20_000_000],
    [100, 75, 50, 25, 10, 5, 4, 3, 2],
    [0.005, 0.0065, 0.01, 0.02, 0.05, 0.10, 0.125, 0.15, 0.25], where="ETHUSDT")
WB = 1_535_443.01
MARK = np.array([31_967.27, 1_335.18])


def _example_book(isolated: bool = False) -> AccountBook:
    reg = InstrumentRegistry.linear(["BTCUSDT", "ETHUSDT"])
    return AccountBook.from_rows(reg, account=[1, 1], instrument=[0, 1], qty=[109.488, 3_683.979],
                                 entry_price=[32_481.98, 1_456.84], isolated=[isolated] * 2,
                                 collateral=[WB, WB], collateral_asset=[0, 0])


def _prices() -> Prices:
    return Prices(mark=MARK.copy(), index=MARK.copy(), asset_usd=np.array([1.0]))


def test_brackets_are_the_ones_the_example_states():
    # BTCUSDT: MMR 2.5 %, cum 16,300 at the 1M-10M bracket; ETHUSDT: MMR 10 %, cum 135,365 at 2M-5M.
    assert BTC_TIERS.mmr[3] == 0.025 and BTC_TIERS.maint_amount_usd[3] == pytest.approx(16_300.0, abs=1e-9)
    assert ETH_TIERS.mmr[5] == 0.10 and ETH_TIERS.maint_amount_usd[5] == pytest.approx(135_365.0, abs=1e-9)


def test_cross_two_symbol_example_liquidation_prices_to_the_cent():
    # "From calc example": BTCUSDT LP 26,316.89, ETHUSDT LP 1,153.26.
    risk = TieredRisk((BTC_TIERS, ETH_TIERS), name="binance-usdm")
    lp = risk.liquidation_price(_example_book(), _prices())
    assert np.round(lp, 2).tolist() == [26_316.89, 1_153.26]
    # each lands in the bracket the example uses
    notional = np.array([109.488, 3_683.979]) * lp
    assert BTC_TIERS.tier_index(notional[0]) == 3 and ETH_TIERS.tier_index(notional[1]) == 5


def test_cross_example_other_contract_terms():
    # The example's TMM1 / UPNL1 for ETHUSDT (= BTCUSDT's MM and uPnL at mark): 71,200.81144 and -56,354.57;
    # for BTCUSDT (= ETHUSDT's): 356,512.508 and -448,192.89 (freqtrade's copy of the example's inputs).
    r = TieredRisk((BTC_TIERS, ETH_TIERS)).evaluate(_example_book(), _prices())
    np.testing.assert_allclose(r.pos_maint_usd, [71_200.81144, 356_512.508], atol=5e-4)
    np.testing.assert_allclose(np.round(r.pos_upnl_usd, 2), [-56_354.57, -448_192.89], atol=0)
    assert r.equity_usd[0] == pytest.approx(WB + r.pos_upnl_usd.sum(), rel=1e-15)
    assert r.maint_usd[0] == pytest.approx(r.pos_maint_usd.sum(), rel=1e-15)


def test_cross_lp_agrees_with_the_one_position_formula_given_the_other_terms():
    # venues.formulas.liquidation_price_binance with TMM' / uPnL' of the other symbol gives the same prices.
    risk = TieredRisk((BTC_TIERS, ETH_TIERS))
    book, prices = _example_book(), _prices()
    r = risk.evaluate(book, prices)
    lp = risk.liquidation_price(book, prices)
    for i, tiers in enumerate((BTC_TIERS, ETH_TIERS)):
        j = 1 - i
        one = liquidation_price_binance(np.array([1.0]), book.pos_qty[i:i + 1], book.pos_entry_price[i:i + 1],
                                        np.array([WB]), tiers, r.pos_maint_usd[j], r.pos_upnl_usd[j])
        assert lp[i] == pytest.approx(float(one[0]), rel=1e-12)


def test_evaluating_at_the_liquidation_price_reaches_maintenance():
    risk = TieredRisk((BTC_TIERS, ETH_TIERS))
    book, prices = _example_book(), _prices()
    lp = risk.liquidation_price(book, prices)
    for i in range(2):
        moved = _prices()
        moved.mark[i] = lp[i]
        r = risk.evaluate(book, moved)
        assert r.equity_usd[0] == pytest.approx(r.maint_usd[0], rel=1e-9)


def test_isolated_example_uses_only_its_own_margin():
    # Isolated: TMM = 0, UPNL = 0, WB = the isolated wallet. freqtrade's isolated rows of the same example give
    # 1,114.78 (ETHUSDT) and 18,778.73 (BTCUSDT) with WB = 1,535,443.01 each.
    risk = TieredRisk((BTC_TIERS, ETH_TIERS))
    lp = risk.liquidation_price(_example_book(isolated=True), _prices())
    assert np.round(lp, 2).tolist() == [18_778.73, 1_114.78]


def test_liquidation_price_with_a_settlement_asset_off_one_usd():
    # USDT at 0.98 USD: requirement and equity both scale by it; the price where they meet is unchanged
    # when the wallet is in USDT, and evaluating there reaches maintenance.
    risk = TieredRisk((BTC_TIERS, ETH_TIERS))
    book = _example_book()
    prices = _prices()
    prices.asset_usd = np.array([0.98])
    lp = risk.liquidation_price(book, prices)
    assert np.round(lp, 2).tolist() == [26_316.89, 1_153.26]
    moved = Prices(np.array([lp[0], MARK[1]]), MARK.copy(), prices.asset_usd)
    r = risk.evaluate(book, moved)
    assert r.equity_usd[0] == pytest.approx(r.maint_usd[0], rel=1e-9)
