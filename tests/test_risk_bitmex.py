"""BitMEX inverse XBT contracts, isolated and cross (``InverseRiskLimitRisk``).

Sources: bitmex.com/app/liquidationExamples "A trader goes long 1 contract at $100.00, with a liquidation price of
$99.50 and a bankruptcy price of $99.00" (1 % initial, 0.5 % maintenance margin); riskLimitsExamples "A trader has a
XBTUSD position worth 180 XBT. The current maintenance margin requirement is 0.50% (0.90 XBT) ... increase his
position to 230 XBT ... 1.00% and 1.50%" (as in tests/test_venue_bitmex.py, here through an inverse book in XBT).
BitMEX's examples are isolated; the cross cases check cross = "all available balance is margin": one position
under cross with wallet W liquidates where the isolated one with margin W does, and two positions share the wallet.
"""

from __future__ import annotations

import numpy as np
import pytest

from delever.model import AccountBook, Asset, AssetRegistry, Instrument, InstrumentRegistry
from delever.risk import Prices
from delever.risk.bitmex import InverseRiskLimitRisk

REG = InstrumentRegistry(
    (Instrument("XBTUSD", "inverse_perp", "XBT", "XBT", 1.0), Instrument("XBTZ25", "inverse_future", "XBT", "XBT", 1.0)),
    AssetRegistry((Asset("XBT", price_from="XBTUSD"),)))
RISK = InverseRiskLimitRisk.xbtusd(n_instruments=2)


def _book(qty, entry, isolated, collateral):
    n = len(qty)
    return AccountBook.from_rows(REG, account=[1] * n, instrument=list(range(n)), qty=list(qty), entry_price=list(entry),
                                 isolated=list(isolated), collateral=list(collateral), collateral_asset=[0] * n)


def _prices(mark, xbt_usd):
    mark = np.asarray(mark, dtype=np.float64)
    return Prices(mark.copy(), mark.copy(), np.array([xbt_usd]))


def test_liquidation_example_long_at_100_liquidates_at_99_50():
    # 10,000 USD of contracts at 100.00 = 100 XBT of value; 1 % initial margin = 1 XBT; maintenance 0.5 % = 0.5 XBT.
    book = _book([10_000.0], [100.0], [True], [1.0])
    lp = RISK.liquidation_price(book, _prices([100.0, 100.0], 100.0))
    assert round(float(lp[0]), 2) == 99.50
    r = RISK.evaluate(book, _prices([lp[0], 100.0], 100.0))
    assert float(r.equity_usd[0]) == pytest.approx(float(r.maint_usd[0]), rel=1e-12)
    # at the bankruptcy mark (inverse: 1/P = 1/100 + 1/10,000 -> 99.0099) the margin is gone; the page's 99.00 is its
    # linear rounding
    r = RISK.evaluate(book, _prices([100.0 / 1.01, 100.0], 100.0))
    assert float(r.equity_usd[0]) == pytest.approx(0.0, abs=1e-12)


def test_risk_limit_steps_in_xbt_value():
    # 180 XBT of value at 50,000: MM 0.90 XBT at 0.50 %; 230 XBT: one step -> MM 1.00 %, IM 1.50 %.
    xbt = 50_000.0
    for value, mm_xbt, im_xbt in ((180.0, 0.90, 1.80), (230.0, 2.30, 3.45)):
        book = _book([value * xbt], [xbt], [True], [10.0])
        r = RISK.evaluate(book, _prices([xbt, xbt], xbt))
        assert round(float(r.maint_usd[0]) / xbt, 8) == mm_xbt and round(float(r.initial_usd[0]) / xbt, 8) == im_xbt
        assert float(r.pos_notional_usd[0]) == pytest.approx(value * xbt)   # face value in USD


def test_cross_one_position_equals_isolated_with_the_whole_wallet():
    wallet = 3.0
    iso = RISK.liquidation_price(_book([1_000_000.0], [50_000.0], [True], [wallet]), _prices([48_000.0, 0.0], 48_000))
    cross = RISK.liquidation_price(_book([1_000_000.0], [50_000.0], [False], [wallet]), _prices([48_000.0, 0.0], 48_000))
    assert cross[0] == pytest.approx(iso[0], rel=1e-15)
    # 20 XBT of value, 3 XBT of margin, MM 0.1 XBT: 1/P = 1/50,000 + 2.9 / 1,000,000
    assert iso[0] == pytest.approx(1.0 / (1 / 50_000 + 2.9 / 1_000_000), rel=1e-12)


def test_cross_two_contracts_share_the_wallet():
    # XBTUSD long 1,000,000 USD at 50,000 and XBTZ25 short 400,000 USD at 52,000 on one 3 XBT cross wallet.
    book = _book([1_000_000.0, -400_000.0], [50_000.0, 52_000.0], [False, False], [3.0, 3.0])
    prices = _prices([49_000.0, 51_500.0], 49_000.0)
    r = RISK.evaluate(book, prices)
    upnl_xbt = 1_000_000 * (1 / 50_000 - 1 / 49_000) - 400_000 * (1 / 52_000 - 1 / 51_500)
    assert float(r.equity_usd[0]) / 49_000 == pytest.approx(3.0 + upnl_xbt, rel=1e-12)
    assert float(r.maint_usd[0]) / 49_000 == pytest.approx(0.005 * (20.0 + 400_000 / 52_000), rel=1e-12)
    lp = RISK.liquidation_price(book, prices)
    for i in range(2):
        mark = prices.mark.copy()
        mark[i] = lp[i]
        moved = _prices(mark, 49_000.0)      # the XBT/USD rate is held fixed: both sides are in XBT
        ri = RISK.evaluate(book, moved)
        assert float(ri.equity_usd[0]) == pytest.approx(float(ri.maint_usd[0]), rel=1e-10)
    # long: W' = 3 + short's uPnL - total MM (XBT); P = q / (W' + q / entry)
    w = 3.0 - 400_000 * (1 / 52_000 - 1 / 51_500) - 0.005 * (20.0 + 400_000 / 52_000)
    assert lp[0] == pytest.approx(1_000_000 / (w + 1_000_000 / 50_000), rel=1e-12)


def test_short_covered_by_its_margin_is_never_liquidated():
    # an inverse short loses at most its entry value: 20 XBT of margin on a 20 XBT short has no liquidation price
    book = _book([-1_000_000.0], [50_000.0], [True], [21.0])
    assert np.isnan(RISK.liquidation_price(book, _prices([50_000.0, 0.0], 50_000))[0])
