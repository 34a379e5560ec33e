"""Hyperliquid cross margin over several assets (``HyperliquidRisk``, presets/hyperliquid.toml tiers).

hyperliquid-docs trading/liquidations: "liq_price = price - side * margin_available / position_size / (1 - l *
side)", "l = 1 / MAINTENANCE_LEVERAGE", margin_available = account value - maintenance margin (cross) (venue-mechanics
.md section 4); trading/margin-tiers: BTC 40x -> MMR 1.25 %, ETH 25x -> 2 %, above 150M / 100M USDC 20x / 15x.
"""

from __future__ import annotations

import numpy as np
import pytest

from delever.model import AccountBook, InstrumentRegistry
from delever.risk import Prices
from delever.risk.hyperliquid import HyperliquidRisk
from delever.venues import load_venue

HL = load_venue("hyperliquid")
REG = InstrumentRegistry.linear(["BTC", "ETH"], settle="USDC")
RISK = HyperliquidRisk((HL.tiers_for("BTC"), HL.tiers_for("ETH")))


def _book(qty=(2.0, -40.0), isolated=(False, False), collateral=(30_000.0, 30_000.0)):
    return AccountBook.from_rows(REG, account=[1, 1], instrument=[0, 1], qty=list(qty),
                                 entry_price=[100_000.0, 3_500.0], isolated=list(isolated),
                                 collateral=list(collateral), collateral_asset=[0, 0])


PRICES = Prices(np.array([98_000.0, 3_600.0]), np.array([98_000.0, 3_600.0]), np.array([1.0]))


def test_preset_mmr_is_half_the_initial_margin_at_max_leverage():
    assert RISK.tiers[0].mmr.tolist() == [0.0125, 0.025] and RISK.tiers[1].mmr.tolist() == [0.02, 1 / 30]
    # deduction 150M x (2.5 % - 1.25 %) = 1,875,000 (margin-tiers table)
    assert RISK.tiers[0].maint_amount_usd[1] == pytest.approx(1_875_000.0)


def test_cross_two_positions_docs_formula_equals_the_cross_solution():
    # BTC long 2 and ETH short 40 share 30,000 USDC: account value = 30,000 - 4,000 - 4,000 = 22,000;
    # MM = 196,000 x 1.25 % + 144,000 x 2 % = 5,330; margin_available = 16,670.
    book = _book()
    r = RISK.evaluate(book, PRICES)
    assert float(r.equity_usd[0]) == pytest.approx(22_000.0) and float(r.maint_usd[0]) == pytest.approx(5_330.0)
    docs = RISK.displayed_liquidation_price(book, PRICES)
    # BTC: 98,000 - 16,670 / 2 / (1 - 0.0125); ETH: 3,600 + 16,670 / 40 / (1 + 0.02)
    np.testing.assert_allclose(docs, [98_000.0 - 16_670 / 2 / 0.9875, 3_600.0 + 16_670 / 40 / 1.02], rtol=1e-14)
    np.testing.assert_allclose(RISK.liquidation_price(book, PRICES), docs, rtol=1e-12)


def test_isolated_positions_use_their_own_margin():
    book = _book(isolated=(True, True), collateral=(10_000.0, 20_000.0))
    docs = RISK.displayed_liquidation_price(book, PRICES)
    # BTC: 10,000 - 4,000 - 2,450 = 3,550 available; ETH: 20,000 - 4,000 - 2,880 = 13,120
    np.testing.assert_allclose(docs, [98_000.0 - 3_550 / 2 / 0.9875, 3_600.0 + 13_120 / 40 / 1.02], rtol=1e-14)
    np.testing.assert_allclose(RISK.liquidation_price(book, PRICES), docs, rtol=1e-12)


def test_docs_formula_is_exact_only_within_the_tier():
    # A 2,000 BTC long (196M USDC notional, tier 2 at 20x) liquidated below 150M notional crosses into tier 1:
    # the docs' formula (tier-2 slope) and the cross solution differ, and the cross solution reaches MM.
    book = _book(qty=(2_000.0, -40.0), collateral=(60_000_000.0, 60_000_000.0))
    lp = RISK.liquidation_price(book, PRICES)
    docs = RISK.displayed_liquidation_price(book, PRICES)
    assert lp[0] * 2_000 < 150_000_000 and abs(docs[0] - lp[0]) > 1.0
    moved = Prices(np.array([lp[0], 3_600.0]), PRICES.index, PRICES.asset_usd)
    r = RISK.evaluate(book, moved)
    assert float(r.equity_usd[0]) == pytest.approx(float(r.maint_usd[0]), rel=1e-9)
