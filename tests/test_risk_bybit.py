"""Bybit Unified Trading Account (``UnifiedAccountRisk``): tiered collateral value ratios and risk-limit MM.

Source: Bybit help "Understanding Collateral Value Ratios in Unified Trading Account" (updated 2025-09-18):
"Assume the tiered value rates of BTC and USDT are shown as follows: BTC | 0 - 10 | 0.98; BTC | >10 - 20 | 0.95;
BTC | >20 - 30 | 0.9; BTC | >30 - 40 | 0.85; BTC | >40 - 50 | 0.8; BTC | >50 | 0; USDT | >0 | 1" and "The Collateral
Value Ratio only applies to assets with a positive balance. For assets with a negative balance default to a 100%
collateral value ratio." The page's own worked numbers are cut in the stored copy; the sums below are ours on its
table. Risk limits: presets/bybit.toml BTCUSDT (v5 /market/risk-limit: 0.5 % up to 2M USDT, 1 % up to 4M).
"""

from __future__ import annotations

import numpy as np
import pytest

from delever.errors import DeleverInputError
from delever.model import AccountBook, Asset, AssetRegistry, Instrument, InstrumentRegistry
from delever.risk import Prices
from delever.risk.unified import BYBIT_EXAMPLE_TIERS, CollateralValueTiers, UnifiedAccountRisk
from delever.venues import load_venue

BTC_T = BYBIT_EXAMPLE_TIERS["BTC"]
REG = InstrumentRegistry((Instrument("BTCUSDT", "linear_perp", "BTC", "USDT"),),
                         AssetRegistry((Asset("USDT"), Asset("BTC", price_from="BTCUSDT"))))
RISK = UnifiedAccountRisk((load_venue("bybit").tiers_for("BTCUSDT"),),
                          collateral_tiers=(BYBIT_EXAMPLE_TIERS["USDT"], BTC_T))


def test_tiered_ratio_applies_per_slice():
    # 25 BTC: 10 x 0.98 + 10 x 0.95 + 5 x 0.9 = 23.8 BTC; 60 BTC: 9.8 + 9.5 + 9 + 8.5 + 8 + 10 x 0 = 44.8 BTC.
    np.testing.assert_allclose(BTC_T.collateral_qty(np.array([5.0, 10.0, 25.0, 60.0])), [4.9, 9.8, 23.8, 44.8],
                               rtol=1e-15)
    # a negative balance (a borrow) counts in full
    assert float(BTC_T.collateral_qty(np.array([-3.0]))[0]) == -3.0


def _book(usdt: float, btc: float, qty: float = 50.0, entry: float = 60_000.0) -> AccountBook:
    book = AccountBook.from_rows(REG, account=[1], instrument=[0], qty=[qty], entry_price=[entry], isolated=[False],
                                 collateral=[max(usdt, 0.0)], collateral_asset=[0])
    book.balance[0] = [usdt, btc]
    return book


def test_margin_balance_is_tiered_wallet_plus_upl_and_mm_is_the_risk_limit():
    # 25 BTC at 60,000 (23.8 BTC of collateral = 1,428,000 USD) + 10,000 USDT; long 50 BTC at 60,000 marked at
    # 59,000: UPL -50,000; value 2,950,000 USDT is in the 2M-4M risk limit: MM = 2,950,000 x 1 % - 10,000.
    book = _book(10_000.0, 25.0)
    prices = Prices(np.array([59_000.0]), np.array([59_000.0]), np.array([1.0, 60_000.0]))
    r = RISK.evaluate(book, prices)
    assert float(r.equity_usd[0]) == pytest.approx(1_428_000.0 + 10_000.0 - 50_000.0, abs=1e-6)
    assert float(r.maint_usd[0]) == pytest.approx(2_950_000 * 0.01 - 2_000_000 * 0.005, abs=1e-6)


def test_borrowed_usdt_counts_in_full():
    book = _book(-400_000.0, 25.0)
    prices = Prices(np.array([60_000.0]), np.array([60_000.0]), np.array([1.0, 60_000.0]))
    assert float(RISK.evaluate(book, prices).equity_usd[0]) == pytest.approx(1_428_000.0 - 400_000.0, abs=1e-6)


def test_liquidation_price_reaches_maintenance():
    book = _book(-400_000.0, 25.0)
    prices = Prices(np.array([60_000.0]), np.array([60_000.0]), np.array([1.0, 60_000.0]))
    lp = RISK.liquidation_price(book, prices)
    moved = Prices(lp.copy(), lp.copy(), prices.asset_usd)     # BTC collateral price held fixed, as the formula does
    r = RISK.evaluate(book, moved)
    assert float(r.equity_usd[0]) == pytest.approx(float(r.maint_usd[0]), rel=1e-9)


def test_bad_tables_are_named():
    with pytest.raises(DeleverInputError, match="within \\[0, 1\\]"):
        CollateralValueTiers.from_lists([0, 10], [1.0, 1.2], "ETH")
    with pytest.raises(DeleverInputError, match="1 collateral tier tables for 2 assets"):
        UnifiedAccountRisk(RISK.tiers, collateral_tiers=(None,)).evaluate(_book(1.0, 1.0), Prices(
            np.array([1.0]), np.array([1.0]), np.array([1.0, 1.0])))
