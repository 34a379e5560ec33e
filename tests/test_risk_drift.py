"""Drift cross margin (``DriftRisk``): size premium per market summed over a user's positions.

Source: drift-labs protocol-v2 controller/liquidation/tests.rs @ 49d8db7a,
``successful_liquidation_long_perp_whale_imf_factor``: "10000 base + 1 open bid at $100, maintenance 500, imf 1000 ->
140014010000, imf 10000 -> 1040104010000" (quote 1e-6; each includes Drift's $0.01 open-order margin for the one
open bid, which the book does not hold). Also tests/test_venue_drift.py::test_size_premium_margin_requirement_whale.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delever.model import AccountBook, InstrumentRegistry
from delever.risk import Prices
from delever.risk.drift import DriftRisk
from delever.venues import drift as dm

REG = InstrumentRegistry.linear(["SOL-PERP", "BTC-PERP"], settle="USDC")
WHALE = 10_001.0   # 10,000 base + the 1-base open bid counted as position


def _user(qty, price=(100.0, 100.0), usdc=0.0):
    book = AccountBook.from_rows(REG, account=[1, 1], instrument=[0, 1], qty=list(qty), entry_price=list(price),
                                 isolated=[False, False], collateral=[usdc, usdc], collateral_asset=[0, 0])
    return book, Prices(np.array(price), np.array(price), np.array([1.0]))


def test_whale_requirements_of_two_markets_sum_to_the_cent():
    # Market 0: mr 5 %, imf 0.001 -> 140,014.00; market 1: mr 5 %, imf 0.01 -> 1,040,104.00 (Rust, less $0.01 each).
    risk = DriftRisk(np.array([0.1, 0.1]), np.array([0.05, 0.05]), np.array([0.001, 0.01]))
    book, prices = _user([WHALE, -WHALE], usdc=2_000_000.0)
    r = risk.evaluate(book, prices)
    assert np.round(r.pos_maint_usd, 2).tolist() == [140_014.00, 1_040_104.00]
    assert round(float(r.maint_usd[0]), 2) == 1_180_118.00
    # the real-valued formula is off by the integer rounding (14.00050 % vs 14.00 %)
    loose = DriftRisk(risk.margin_ratio_initial, risk.margin_ratio_maintenance, risk.imf_factor, exact=False)
    assert float(loose.evaluate(book, prices).pos_maint_usd[0]) == pytest.approx(1_000_100 * (0.04 + 0.001 * np.sqrt(WHALE)), rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 10**16), price=st.integers(1, 10**9), mr=st.integers(1, 5000), imf=st.integers(0, 10**5))
def test_exact_ratio_matches_drift_integer_function(size, price, mr, imf):
    got = dm.margin_ratio(np.array([size / 1e9]), mr / 1e4, imf / 1e6, exact=True)[0]
    assert round(got * 1e4) == dm.size_premium_margin_ratio_int(size, imf, mr)


def test_total_collateral_and_buffer_at_the_oracle():
    risk = DriftRisk(np.array([0.05, 0.05]), np.array([0.03, 0.03]), np.array([0.0, 0.0]))
    book, prices = _user([10.0, -2.0], price=(100.0, 50_000.0), usdc=5_000.0)
    moved = Prices(np.array([1e9, 1e9]), np.array([90.0, 51_000.0]), prices.asset_usd)   # mark is ignored
    r = risk.evaluate(book, moved)
    assert float(r.equity_usd[0]) == pytest.approx(5_000.0 - 100.0 - 2_000.0)
    assert float(r.maint_usd[0]) == pytest.approx(0.03 * (900.0 + 102_000.0))
    assert float(risk.maint_plus_buffer_usd(book, moved, 0.02)[0]) == pytest.approx(0.05 * 102_900.0)
