"""Binance Multi-Assets mode (``MultiAssetsRisk``) against the FAQ's worked example and haircut table.

FAQ c983a9268cfa4e70a4916c276bb3b7bc "How to Calculate Margin Ratio in the Multi-Assets Mode?" (2022-07-06):
"USDTUSD | 0.99 | 0.01 | 0.005 | 0.9801 | 0.99495 ; USDCUSD | 1 | 0 | 0 | 1 | 1" (index, bid buffer, ask buffer,
bid rate, ask rate); BTCUSDT and ETHUSDC "with 100x and 50x leverage ... Maintenance Margin Ratio will be 0.8% and 1%";
wallet balances 200 USDT / 220 USDC; positions 0.5 @ 20,000 USDT and 20 @ 600 USDC at mark = entry.
"Account Equity = sum min(assetEquity*bidRate, assetEquity*askRate) = 200 * 0.9801 + 220 * 1 = 416.02";
"uniAvailableForOrder = ... 416.02 - (0.5 * 20,000 * 0.01 * 0.99495 + 20 * 600 * 0.02 * 1) = 76.525";
"Margin Ratio = Account Maintenance Margin / Account Equity = 199.596 / 416.02 = 0.47977 = 47.98%".
"""

from __future__ import annotations

import numpy as np
import pytest

from delever.errors import DeleverInputError
from delever.model import AccountBook, Asset, AssetRegistry, Instrument, InstrumentRegistry
from delever.risk import Prices
from delever.risk.multi_assets import COLLATERAL_VALUE_RATIO_2021_05_28, MultiAssetsRisk, haircuts_from_ratios
from delever.venues.tiers import MarginTiers

REG = InstrumentRegistry(
    (Instrument("BTCUSDT", "linear_perp", "BTC", "USDT"), Instrument("ETHUSDC", "linear_perp", "ETH", "USDC")),
    AssetRegistry((Asset("USDT"), Asset("USDC"), Asset("BNB", price_from=None), Asset("ADA"))))
TIERS = (MarginTiers.from_floors([0], [100], [0.008]), MarginTiers.from_floors([0], [50], [0.01]))
RISK = MultiAssetsRisk(TIERS, haircut=np.array([0.01, 0.0, 0.05, 0.10]), ask_buffer=np.array([0.005, 0.0, 0.0, 0.0]))


def _book(qty=(0.5, 20.0), mark=(20_000.0, 600.0), extra=(0.0, 0.0)):
    book = AccountBook.from_rows(REG, account=[7, 7], instrument=[0, 1], qty=list(qty), entry_price=[20_000.0, 600.0],
                                 isolated=[False, False], collateral=[200.0, 220.0], collateral_asset=[0, 1])
    book.balance[0, 2:] = extra
    prices = Prices(mark=np.array(mark), index=np.array(mark), asset_usd=np.array([0.99, 1.0, 1.0, 1.0]))
    return book, prices


def test_faq_example_account_equity_maintenance_and_margin_ratio():
    book, prices = _book()
    r = RISK.evaluate(book, prices)
    assert round(float(r.equity_usd[0]), 2) == 416.02
    assert round(float(r.maint_usd[0]), 3) == 199.596
    ratio = float(RISK.margin_ratio(book, prices)[0])
    assert round(ratio * 100, 2) == 47.98 and int(ratio * 1e5) == 47_977   # the FAQ truncates 0.4797750 to 0.47977
    assert round(float(r.equity_usd[0] - r.initial_usd[0]), 3) == 76.525       # uniAvailableForOrder


def test_faq_example_without_positions_is_the_bid_valued_wallet():
    book, prices = _book()
    book.pos_qty[:] = 0.0
    r = RISK.evaluate(book, prices)
    assert round(float(r.equity_usd[0]), 2) == 416.02 and r.maint_usd[0] == 0.0


def test_haircut_table_2021_05_28():
    # "BNB with a market value of $1000 will be valued at $950 and ADA with a market value of $1,000 will be valued
    # at $900 when used as margin in multi-assets mode" (FAQ 29b45c485d664028b9ca1cdf90b24f6f, 2021-05-28).
    h = haircuts_from_ratios(REG.assets, COLLATERAL_VALUE_RATIO_2021_05_28)
    np.testing.assert_allclose(h, [0.0001, 0.0001, 0.05, 0.10], atol=1e-15)
    risk = MultiAssetsRisk(TIERS, haircut=h)
    book, prices = _book(extra=(1_000.0, 1_000.0))
    book.pos_qty[:] = 0.0          # closed positions (the engine zeroes them in place)
    book.balance[0, :2] = 0.0
    assert float(risk.evaluate(book, prices).equity_usd[0]) == pytest.approx(950.0 + 900.0, abs=1e-9)
    with pytest.raises(DeleverInputError, match="no collateral value ratio for asset 'ADA'"):
        haircuts_from_ratios(REG.assets, {"USDT": 1.0, "USDC": 1.0, "BNB": 0.95})


def test_loss_beyond_the_wallet_is_a_debt_at_the_ask_rate():
    # BTCUSDT loses 300 USDT > its 200 USDT wallet: USDT equity -100 counts at the ask rate 0.99495.
    book, prices = _book(mark=(19_400.0, 600.0))
    r = RISK.evaluate(book, prices)
    assert float(r.equity_usd[0]) == pytest.approx(-100 * 0.99495 + 220.0, rel=1e-12)


def test_liquidation_price_reaches_margin_ratio_one():
    book, prices = _book(extra=(2.0, 0.0))   # 2 BNB at 1 USD as extra collateral
    lp = RISK.liquidation_price(book, prices)
    assert lp[0] < 20_000.0 and lp[1] < 600.0
    for i in range(2):
        _, moved = _book(extra=(2.0, 0.0))
        moved.mark[i] = lp[i]
        assert float(RISK.margin_ratio(book, moved)[0]) == pytest.approx(1.0, rel=1e-9)
