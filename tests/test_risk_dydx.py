"""dYdX v4 subaccounts over several markets (``DydxRisk``) against the v4-chain test tables.

The tables are the ones tests/test_venue_dydx.py copies from dydxprotocol/v4-chain (``TestGetBankruptcyPriceIn
QuoteQuantums`` and ``TestGetFillablePrice``, protocol/x/clob/keeper/liquidations_test.go @ 031eadfb; ``TestProcess
Deleveraging`` "can deleverage when there are multiple positions", deleveraging_test.go @ 020b8b64); here each
subaccount is an ``AccountBook`` account and TNC / TMMR come from ``DydxRisk.evaluate`` over all its positions,
not from the test's own sum. Markets: BTC oracle $50,000, ETH $3,000, both liquidity tier
``20PercentInitial_10PercentMaintenance`` (IMF 20 %, maintenance fraction 50 %).
"""

from __future__ import annotations

import numpy as np
import pytest

from delever.errors import DeleverInputError
from delever.model import AccountBook, InstrumentRegistry
from delever.risk import GroupRisk, Prices
from delever.risk.dydx import DydxRisk
from delever.venues import dydx
from test_venue_dydx import BANKRUPTCY, BTC, ETH, FILLABLE, LT_TEST, P, Q, qq

REG = InstrumentRegistry.linear(["BTC-USD", "ETH-USD"], settle="USDC")
CODE = {"BTC": 0, "ETH": 1}
ORACLE = Prices(np.array([P["BTC"], P["ETH"]]), np.array([P["BTC"], P["ETH"]]), np.array([1.0]))
RISK = DydxRisk(np.array([0.2, 0.2]), np.array([0.5, 0.5]))


def subaccount(usdc: float, positions: dict[str, float]) -> AccountBook:
    """One subaccount: dYdX USDC asset position ``usdc`` and perpetual positions opened at the oracle."""
    coins = list(positions)
    book = AccountBook.from_rows(REG, account=[0] * len(coins), instrument=[CODE[c] for c in coins],
                                 qty=[positions[c] for c in coins], entry_price=[P[c] for c in coins],
                                 isolated=[False] * len(coins), collateral=[0.0] * len(coins),
                                 collateral_asset=[0] * len(coins))
    book.balance[0, 0] = usdc + sum(q * P[c] for c, q in positions.items())
    return book


def _row(book: AccountBook, coin: str) -> int:
    return int(np.flatnonzero(book.pos_instrument == CODE[coin])[0])


@pytest.mark.parametrize(("usdc", "positions", "perp", "delta", "expected"), BANKRUPTCY)
def test_bankruptcy_quote_over_the_subaccount_matches_go_table(usdc, positions, perp, delta, expected):
    book = subaccount(usdc, positions)
    d = np.zeros(book.n_positions)
    d[_row(book, perp)] = delta
    got = RISK.bankruptcy_quote_usd(book, ORACLE, d, quote_quantum=Q)
    assert qq(got[_row(book, perp)]) == expected


def test_multi_position_rows_are_in_the_table():
    # the rows with two markets (BTC 0.004 / ETH 0.1 and the signs flipped): TNC and TMMR sum over both
    book = subaccount(-490, {"BTC": 0.004, "ETH": 0.1})
    r = RISK.evaluate(book, ORACLE)
    assert float(r.equity_usd[0]) == pytest.approx(10.0, abs=1e-9)            # -490 + 200 + 300
    assert float(r.maint_usd[0]) == pytest.approx(50.0, abs=1e-9)             # 10 % of 500
    assert bool(r.liquidatable[0]) and float(r.initial_usd[0]) == pytest.approx(100.0)


@pytest.mark.parametrize(("usdc", "positions", "perp", "ba", "smmr", "expected"), FILLABLE)
def test_fillable_price_over_the_subaccount_matches_go_table(usdc, positions, perp, ba, smmr, expected):
    book = subaccount(usdc, positions)
    fp = RISK.fillable_price(book, ORACLE, ba, smmr)[_row(book, perp)]
    usd_per_unit = 1e-6 / (BTC if perp == "BTC" else ETH)
    assert fp == pytest.approx(expected[0] / expected[1] * usd_per_unit, rel=1e-13)


def test_deleveraging_with_multiple_positions_bankruptcy_price():
    # "can deleverage when there are multiple positions": USDC 80,800, BTC -1, ETH -10: TNC $800, MMR(BTC) $5,000,
    # MMR(ETH) $3,000 -> closing the 1 BTC short costs $50,500 (-50,500,000,000 quote quantums).
    book = subaccount(80_800.0, {"BTC": -1.0, "ETH": -10.0})
    bp = RISK.bankruptcy_price(book, ORACLE, quote_quantum=Q)
    assert qq(bp[_row(book, "BTC")]) == 50_500_000_000
    # the ETH short's share: 3,000 + 800 x 3,000 / 8,000 / 10
    assert bp[_row(book, "ETH")] == pytest.approx(3_000.0 + 800 * 3_000 / 8_000 / 10, rel=1e-12)


def test_closing_every_position_at_its_bankruptcy_price_leaves_zero_tnc():
    book = subaccount(-490, {"BTC": 0.004, "ETH": 0.1})
    quote = RISK.bankruptcy_quote_usd(book, ORACLE, -book.pos_qty)
    # TNC after = TNC + quote received - NNV given up: the shares sum to TNC, so nothing is left
    r = RISK.evaluate(book, ORACLE)
    nnv = book.pos_qty * ORACLE.index[book.pos_instrument]
    assert float(r.equity_usd[0] + (quote - nnv).sum()) == pytest.approx(0.0, abs=1e-9)


def test_invalid_delta_is_refused():
    book = subaccount(-490, {"BTC": 0.004, "ETH": 0.1})
    with pytest.raises(DeleverInputError, match="does not reduce position"):
        RISK.bankruptcy_quote_usd(book, ORACLE, np.array([0.004, 0.0]))


def test_initial_margin_is_oi_scaled():
    # LT_TEST rows: IMF 20 %, caps 1M / 2M (USD), OI 1.5M -> IMF 60 %; the model takes the market OI it is given.
    risk = DydxRisk(np.array([0.2, 0.2]), np.array([0.5, 0.5]), np.array([1e6, 1e6]), np.array([2e6, 2e6]),
                    open_interest_usd=np.array([1.5e6, 0.0]))
    mm, im = risk.position_requirement(np.array([0, 1]), np.array([1.0, 1.0]), np.array([1_000.0, 1_000.0]))
    np.testing.assert_allclose(im, [600.0, 200.0])
    np.testing.assert_allclose(mm, [100.0, 100.0])   # MMR ignores the OI scaling (x/perpetuals/lib)
    assert float(dydx.effective_imf(0.2, 1.5e6, 1e6, 2e6)) == pytest.approx(0.6), LT_TEST


@pytest.mark.parametrize(("nc", "mmr", "expected"), [
    (100, 0, False), (0, 100, True), (0, 0, False), (-100, 100, True), (-100, 0, False),
    (75, 100, True), (100, 100, False), (125, 100, False),
])
def test_liquidatable_matches_risk_go_table(nc, mmr, expected):
    """TestRisk_IsLiquidatable, protocol/lib/margin/risk_test.go @ 3c7fd6dd: ``MMR > 0 and NC < MMR``."""
    r = GroupRisk(np.array([float(nc)]), np.array([float(mmr)]), np.zeros(1), np.zeros(0), np.zeros(0), np.zeros(0))
    assert bool(r.liquidatable[0]) is expected
