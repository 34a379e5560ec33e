"""Venue rules: tiers, maintenance margin, liquidation/bankruptcy prices, ADL scores, preset loading.

Worked examples are reproduced to the cent from the venues' own documents (or public test
vectors taken from them); the source is named at each test.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from delever.errors import DeleverInputError
from delever.venues import PRESETS, load_venue
from delever.venues.formulas import (
    adl_score,
    bankruptcy_price,
    liquidation_price_binance,
    liquidation_price_hyperliquid,
)
from delever.venues.rules import TierTable
from delever.venues.tiers import MarginTiers

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
BINANCE_CSV = DATA / "risk-params" / "binance_usdm_BTCUSDT_leverage_tiers_2021-03-18.csv"
HL_CSV = DATA / "risk-params" / "hyperliquid_margin_tiers_mainnet.csv"

BINANCE = load_venue("binance-usdm")
HYPERLIQUID = load_venue("hyperliquid")
BTCUSDT = BINANCE.tiers_for("BTCUSDT")

# `cum` of the BTCUSDT brackets effective 2021-03-18 (venue-mechanics.md §1; also the table
# reverse-engineered from Binance's front end in gist highfestiva/b71e76f51eed84d56c1be8ebbcc286b5).
BTCUSDT_CUM_2021 = [0, 50, 1_300, 16_300, 266_300, 1_266_300, 2_516_300, 5_016_300, 25_016_300, 100_016_300]


def one(x: float) -> np.ndarray:
    return np.array([float(x)])


def lp_binance(side, qty, entry, wb, tiers=BTCUSDT, tmm=0.0, upnl=0.0) -> float:
    return float(
        liquidation_price_binance(
            np.array([side], dtype=np.int8), one(qty), one(entry), one(wb), tiers, tmm, upnl
        )[0]
    )


def mm(tiers: MarginTiers, notional: float) -> float:
    return float(tiers.maintenance_margin(notional))


def reference_lp_binance(side, qty, entry, wb, tiers, tmm=0.0, upnl=0.0) -> float:
    """Independent solve of ``WB - TMM' + uPnL' + side*Q*(P - EP) = MM(Q*P)``.

    ``f(P) = equity - MM`` is monotone in P (increasing for a long, decreasing for a short), so the
    bracket holding the root is found from the sign of f at the bracket floors, then the linear
    equation of that bracket is solved.
    """

    def f(p: float) -> float:
        return wb - tmm + upnl + side * qty * (p - entry) - mm(tiers, qty * p)

    if side == 1 and f(0.0) >= 0:
        return float("nan")  # a long that can never be liquidated
    floors_px = tiers.floor_usd[1:] / qty
    signs = np.array([f(p) for p in floors_px])
    k = int(np.sum(signs < 0)) if side == 1 else int(np.sum(signs > 0))
    return (wb - tmm + upnl + tiers.maint_amount_usd[k] - side * qty * entry) / (
        qty * tiers.mmr[k] - side * qty
    )


# =========================================================================== tiers
def test_binance_btcusdt_cum_matches_2021_03_18_table():
    np.testing.assert_allclose(BTCUSDT.maint_amount_usd, BTCUSDT_CUM_2021, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(BTCUSDT.max_leverage, [125, 100, 50, 20, 10, 5, 4, 3, 2, 1])
    np.testing.assert_array_equal(
        BTCUSDT.mmr, [0.004, 0.005, 0.01, 0.025, 0.05, 0.10, 0.125, 0.15, 0.25, 0.50]
    )


def test_binance_faq_maintenance_examples():
    # Binance FAQ b3c689c1f50a44cabb3a84e663b81d93 ("How to Calculate Liquidation Price of USDⓈ-M
    # Futures Contracts"): a 264,000 USDT BTCUSDT position has MMR 1 %; a 500,000 USDT position has
    # maintenance amount 1,300; level-3 amount = 250,000 * (1% - 0.5%) + 50 = 1,300.
    assert BTCUSDT.mmr[BTCUSDT.tier_index(264_000.0)] == 0.01
    assert BTCUSDT.maint_amount_usd[BTCUSDT.tier_index(500_000.0)] == pytest.approx(1_300.0, abs=1e-9)
    assert 250_000 * (0.01 - 0.005) + 50 == pytest.approx(BTCUSDT.maint_amount_usd[2], abs=1e-9)
    assert mm(BTCUSDT, 500_000.0) == pytest.approx(500_000 * 0.01 - 1_300, abs=1e-9)  # 3,700


def test_binance_cum_recursion_matches_api_brackets():
    # `cum` values as returned by Binance /fapi/v1/leverageBracket (ccxt fetch_leverage_tiers mock
    # in freqtrade/freqtrade tests/exchange/test_binance.py::test_fill_leverage_tiers_binance).
    ada = MarginTiers.from_floors(
        [0, 1e5, 5e5, 1e6, 2e6, 5e6], [20, 10, 5, 3, 2, 1], [0.025, 0.05, 0.1, 0.15, 0.25, 0.5]
    )
    np.testing.assert_allclose(
        ada.maint_amount_usd, [0, 2_500, 27_500, 77_500, 277_500, 1_527_500], atol=1e-6
    )
    zec = MarginTiers.from_floors(
        [0, 5e4, 1.5e5, 2.5e5, 5e5, 1e6, 2e6],
        [50, 20, 10, 5, 4, 2, 1],
        [0.01, 0.025, 0.05, 0.1, 0.125, 0.25, 0.5],
    )
    np.testing.assert_allclose(
        zec.maint_amount_usd, [0, 750, 4_500, 17_000, 29_500, 154_500, 654_500], atol=1e-6
    )


def test_tier_index_boundary_floor_lt_n_le_cap():
    # Binance brackets are "floor < Position <= cap": 50,000 is tier 1, 50,000.01 is tier 2.
    idx = BTCUSDT.tier_index(np.array([0.0, 1.0, 50_000.0, 50_000.01, 250_000.0, 250_000.01, 5e8, 6e8]))
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, [0, 0, 0, 1, 1, 2, 9, 9])
    assert float(BTCUSDT.max_leverage_for(50_000.0)) == 125
    assert float(BTCUSDT.max_leverage_for(50_000.01)) == 100
    # Hyperliquid "0-150M" / ">150M": 150M exactly is still 40x
    btc = HYPERLIQUID.tiers_for("BTC")
    assert float(btc.max_leverage_for(150e6)) == 40
    assert float(btc.max_leverage_for(150e6 + 1)) == 20


def test_maintenance_margin_continuous_at_every_floor():
    for tiers in (BTCUSDT, HYPERLIQUID.tiers_for("BTC"), HYPERLIQUID.tiers_for("ETH")):
        for k in range(1, tiers.floor_usd.size):
            f = tiers.floor_usd[k]
            below = f * tiers.mmr[k - 1] - tiers.maint_amount_usd[k - 1]
            above = f * tiers.mmr[k] - tiers.maint_amount_usd[k]
            assert below == pytest.approx(above, abs=1e-6)
            assert mm(tiers, f) == pytest.approx(below, abs=1e-6)
            assert mm(tiers, f * (1 + 1e-12)) == pytest.approx(above, rel=1e-9)


def test_maintenance_margin_values():
    np.testing.assert_allclose(
        BTCUSDT.maintenance_margin(np.array([10_000.0, 100_000.0, 2_000_000.0, 400_000_000.0])),
        [40.0, 450.0, 33_700.0, 99_983_700.0],
        atol=1e-6,
    )


def test_margin_tiers_reject_bad_input():
    with pytest.raises(DeleverInputError, match="start at 0"):
        MarginTiers.from_floors([10, 20], [10, 5], [0.05, 0.1], where="t")
    with pytest.raises(DeleverInputError, match="strictly increase"):
        MarginTiers.from_floors([0, 20, 20], [10, 5, 3], [0.05, 0.1, 0.2], where="t")
    with pytest.raises(DeleverInputError, match="MMR"):
        MarginTiers.from_floors([0, 20], [10, 5], [0.05, 1.5], where="t")
    with pytest.raises(DeleverInputError, match="equal-length"):
        MarginTiers.from_floors([0, 20], [10], [0.05, 0.1], where="t")


# ------------------------------------------------------------- hyperliquid tiers
@pytest.mark.parametrize(
    "coin, mmr, deduction",
    [
        ("BTC", [0.0125, 0.025], [0.0, 1_875_000.0]),
        ("ETH", [0.02, 1 / 30], [0.0, 1_333_333.33]),
        ("SOL", [0.025, 0.05], [0.0, 1_750_000.0]),
        ("XRP", [0.025, 0.05], [0.0, 1_000_000.0]),
        ("DOGE", [0.05, 0.10], [0.0, 1_000_000.0]),
        ("HYPE", [0.05, 0.10], [0.0, 1_000_000.0]),
        ("BNB", [0.05, 0.10], [0.0, 150_000.0]),
        ("kSHIB", [0.05, 0.10], [0.0, 150_000.0]),
    ],
)
def test_hyperliquid_deductions_match_docs(coin, mmr, deduction):
    # hyperliquid-docs trading/margin-tiers: MMR = 1/(2 max lev), deduction recursion.
    t = HYPERLIQUID.tiers_for(coin)
    np.testing.assert_allclose(t.mmr, mmr, rtol=1e-12)
    np.testing.assert_allclose(t.maint_amount_usd, deduction, atol=0.005)


def test_hyperliquid_mmr_doc_examples():
    # margin-tiers: "at 20x max leverage, maintenance_margin_rate = 2.5%";
    # liquidations: 1 % for 50x assets, 16.7 % for 3x assets.
    assert TierTable(floor_usd=[0], max_leverage=[20]).margin_tiers("t").mmr[0] == 0.025
    assert TierTable(floor_usd=[0], max_leverage=[50]).margin_tiers("t").mmr[0] == 0.01
    assert round(TierTable(floor_usd=[0], max_leverage=[3]).margin_tiers("t").mmr[0], 3) == 0.167


def test_hyperliquid_btc_mm_above_150m():
    t = HYPERLIQUID.tiers_for("BTC")
    assert mm(t, 100e6) == pytest.approx(1_250_000.0, abs=1e-6)
    assert mm(t, 200e6) == pytest.approx(200e6 * 0.025 - 1_875_000, abs=1e-6)  # 3,125,000


# ----------------------------------------------------------------- shared CSVs
def test_binance_csv_matches_preset():
    if not BINANCE_CSV.exists():
        pytest.skip("shared risk-params data not available")
    with BINANCE_CSV.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == BTCUSDT.floor_usd.size == 10
    for k, r in enumerate(rows):
        assert float(r["notional_floor_usdt"]) == BTCUSDT.floor_usd[k]
        assert float(r["max_leverage"]) == BTCUSDT.max_leverage[k]
        assert float(r["maint_margin_rate"]) == BTCUSDT.mmr[k]
        assert float(r["maint_amount_usdt_DERIVED"]) == pytest.approx(BTCUSDT.maint_amount_usd[k], abs=0.005)
        assert float(r["maint_amount_usdt_DERIVED"]) == BTCUSDT_CUM_2021[k]
        if k + 1 < len(rows):
            assert float(r["notional_cap_usdt"]) == float(rows[k + 1]["notional_floor_usdt"])


def test_hyperliquid_csv_matches_preset():
    if not HL_CSV.exists():
        pytest.skip("shared risk-params data not available")
    with HL_CSV.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12
    seen = set()
    for r in rows:
        k = int(r["tier"])
        for coin in r["assets"].split(";"):
            t = HYPERLIQUID.tiers_for(coin)
            assert t.floor_usd[k] == float(r["lower_bound_usdc"]), coin
            assert t.max_leverage[k] == float(r["max_leverage"]), coin
            assert t.mmr[k] == pytest.approx(float(r["maint_margin_rate_DERIVED"]), abs=5e-7), coin
            assert t.maint_amount_usd[k] == pytest.approx(
                float(r["maint_deduction_usdc_DERIVED"]), abs=0.005
            ), coin
            seen.add(coin)
    assert {"BTC", "ETH", "SOL", "XRP", "DOGE", "FARTCOIN", "OP", "DOT"} <= seen


# =========================================================================== Binance LP
# Binance FAQ b3c689c1f50a44cabb3a84e663b81d93 worked example (cross margin, one-way mode):
# WB 1,535,443.01; ETHUSDT long 3,683.979 @ 1,456.84 (mark 1,335.18, MMR 10 %, cum 135,365);
# BTCUSDT long 109.488 @ 32,481.98 (mark 31,967.27, MMR 2.5 %, cum 16,300); TMM1 71,200.81144,
# UPNL1 -56,354.57. Liquidation prices as reproduced in freqtrade/freqtrade
# tests/exchange/test_binance.py::test_liquidation_price_binance ("From calc example"):
# cross ETH 1,153.26, cross BTC 26,316.89; same inputs without the other position
# (isolated form, TMM = UPNL = 0): ETH 1,114.78, BTC 18,778.73.
WB_EX = 1_535_443.01
ETH_Q, ETH_EP, ETH_MARK = 3_683.979, 1_456.84, 1_335.18
BTC_Q, BTC_EP, BTC_MARK = 109.488, 32_481.98, 31_967.27
# The example states ETHUSDT's bracket (MMR 10 %, cum 135,365) but not the full ETHUSDT table:
ETH_BRACKET = MarginTiers(np.array([0.0]), np.array([5.0]), np.array([0.10]), np.array([135_365.0]))


def test_binance_faq_example_other_position_terms():
    tmm_btc = mm(BTCUSDT, BTC_Q * BTC_MARK)  # bracket picked from the 2021-03-18 table
    assert tmm_btc == pytest.approx(71_200.81144, abs=1e-5)
    assert BTC_Q * (BTC_MARK - BTC_EP) == pytest.approx(-56_354.57, abs=0.005)
    assert mm(ETH_BRACKET, ETH_Q * ETH_MARK) == pytest.approx(356_512.508, abs=1e-3)
    assert ETH_Q * (ETH_MARK - ETH_EP) == pytest.approx(-448_192.89, abs=0.005)


def test_binance_faq_example_cross_eth():
    lp = lp_binance(1, ETH_Q, ETH_EP, WB_EX, ETH_BRACKET, 71_200.81144, -56_354.57)
    assert round(lp, 2) == 1_153.26


def test_binance_faq_example_cross_btc_picks_bracket_4():
    tmm = mm(ETH_BRACKET, ETH_Q * ETH_MARK)
    upnl = ETH_Q * (ETH_MARK - ETH_EP)
    lp = lp_binance(1, BTC_Q, BTC_EP, WB_EX, BTCUSDT, tmm, upnl)
    assert round(lp, 2) == 26_316.89
    assert BTCUSDT.tier_index(BTC_Q * lp) == 3  # 1M < N <= 10M: MMR 2.5 %, cum 16,300
    # self-consistency: equity == MM at the returned price
    equity = WB_EX - tmm + upnl + BTC_Q * (lp - BTC_EP)
    assert equity == pytest.approx(mm(BTCUSDT, BTC_Q * lp), abs=1e-6)


def test_binance_faq_example_isolated_form():
    assert round(lp_binance(1, ETH_Q, ETH_EP, WB_EX, ETH_BRACKET), 2) == 1_114.78
    lp_btc = lp_binance(1, BTC_Q, BTC_EP, WB_EX, BTCUSDT)
    assert round(lp_btc, 2) == 18_778.73
    assert BTC_Q * lp_btc == pytest.approx(2_056_045.14, abs=0.01)
    assert BTCUSDT.tier_index(BTC_Q * lp_btc) == 3  # still bracket 4


def test_binance_isolated_simple_hand_values():
    # 1 BTC long @ 50,000 with 5,000 isolated margin, tier 1 (MMR 0.4 %, cum 0):
    # LP = (5,000 - 50,000) / (0.004 - 1) = 45,180.7228...
    assert lp_binance(1, 1.0, 50_000.0, 5_000.0) == pytest.approx(45_000 / 0.996, abs=1e-9)
    # the same position as a short: its LP notional (~54.8k) is in tier 2 (MMR 0.5 %, cum 50)
    lp_s = lp_binance(-1, 1.0, 50_000.0, 5_000.0)
    assert lp_s == pytest.approx((5_000 + 50 + 50_000) / 1.005, abs=1e-9)  # 54,776.1194...
    assert BTCUSDT.tier_index(lp_s) == 1


def test_binance_lp_recomputes_in_lower_bracket():
    # Entry notional 300k is in bracket 3, but the LP notional falls in bracket 2: Binance says
    # recompute with that bracket's MMR/cum.  Q = 5, EP = 60,000, WB = 60,000.
    lp = lp_binance(1, 5.0, 60_000.0, 60_000.0)
    assert lp == pytest.approx((60_000 + 50 - 300_000) / (5 * (0.005 - 1)), abs=1e-9)  # 48,231.1557...
    assert BTCUSDT.tier_index(5 * lp) == 1
    assert 60_000 + 5 * (lp - 60_000) == pytest.approx(mm(BTCUSDT, 5 * lp), abs=1e-6)


def test_binance_lp_vectorized_and_nan_for_unlevered_long():
    side = np.array([1, -1, 1], dtype=np.int8)
    out = liquidation_price_binance(
        side,
        np.array([1.0, 1.0, 1.0]),
        np.array([50_000.0] * 3),
        np.array([5_000.0, 5_000.0, 60_000.0]),
        BTCUSDT,
    )
    assert out.shape == (3,)
    assert out[0] == pytest.approx(45_000 / 0.996, abs=1e-9)
    assert out[1] == pytest.approx(55_050 / 1.005, abs=1e-9)
    assert np.isnan(out[2])  # collateral > notional: a long that can never be liquidated


ON_FLOOR = [
    (1, 25.0, 2_200.0, 5_200.0, 2_000.0),  # LP notional 50,000 = floor of bracket 2
    (-1, 1.0, 225_000.0, 26_200.0, 250_000.0),  # LP notional 250,000 = floor of bracket 3
]


@pytest.mark.parametrize("side, qty, entry, wb, expected", ON_FLOOR)
def test_reference_solver_on_bracket_floor(side, qty, entry, wb, expected):
    assert reference_lp_binance(side, qty, entry, wb, BTCUSDT) == pytest.approx(expected, rel=1e-12)
    assert wb + side * qty * (expected - entry) == pytest.approx(mm(BTCUSDT, qty * expected), abs=1e-6)


@pytest.mark.parametrize("side, qty, entry, wb, expected", ON_FLOOR)
def test_binance_lp_on_bracket_floor(side, qty, entry, wb, expected):
    assert lp_binance(side, qty, entry, wb) == pytest.approx(expected, rel=1e-9)


@settings(max_examples=300, deadline=None)
@given(
    side=st.sampled_from([1, -1]),
    qty=st.floats(0.001, 3_000.0),
    entry=st.floats(1_000.0, 150_000.0),
    lev=st.floats(1.0, 125.0),
    other=st.floats(-0.5, 0.5),
)
def test_binance_lp_self_consistent(side, qty, entry, lev, other):
    wb = qty * entry / lev
    tmm, upnl = abs(other) * wb * 0.1, other * wb
    ref = reference_lp_binance(side, qty, entry, wb, BTCUSDT, tmm, upnl)
    got = lp_binance(side, qty, entry, wb, BTCUSDT, tmm, upnl)
    if np.isnan(ref):
        assert np.isnan(got)
        return
    # bracket-floor hits are the known nan case above
    assume(np.min(np.abs(qty * ref - BTCUSDT.floor_usd[1:]) / BTCUSDT.floor_usd[1:]) > 1e-9)
    assert got == pytest.approx(ref, rel=1e-9)
    equity = wb - tmm + upnl + side * qty * (got - entry)
    scale = qty * entry + wb
    assert equity == pytest.approx(mm(BTCUSDT, qty * got), abs=1e-6 + 1e-12 * scale)
    # LP sits before bankruptcy (isolated form): the equity at LP is qty * side * (LP - BP) = MM(qty * LP) >= 0, so
    # long LP > BP and short LP < BP by MM / qty. The gap is 0 only where MM is 0: at LP = 0, a long at leverage 1
    # in the first bracket, where LP and BP are both 0 up to the round-off of entry - wb / qty (seen: both 2.2e-13).
    if tmm == 0 and upnl == 0:
        bp = float(bankruptcy_price(np.array([side]), one(qty), one(entry), one(wb))[0])
        gap, tol = side * (got - bp), (1e-6 + 1e-12 * scale) / qty   # the equity tolerance above, per unit of qty
        assert gap == pytest.approx(mm(BTCUSDT, qty * got) / qty, abs=tol)
        if mm(BTCUSDT, qty * got) / qty > tol:
            assert gap > 0


def test_bankruptcy_price():
    bp = bankruptcy_price(
        np.array([1, -1], dtype=np.int8),
        np.array([2.0, 2.0]),
        np.array([50_000.0] * 2),
        np.array([10_000.0, 10_000.0]),
    )
    np.testing.assert_allclose(bp, [45_000.0, 55_000.0], rtol=0, atol=1e-9)
    # equity at the bankruptcy price is exactly zero
    assert 10_000.0 + 2.0 * (bp[0] - 50_000.0) == 0.0


# =========================================================================== Hyperliquid LP
def hl_official_cross_lp(mark, side, account_value, total_ntl_pos, abs_pos, max_lev) -> float:
    """Transcription of getCrossLiquidationPrice in hyperliquid-dex/ts-examples examples/LiquidationPx.tsx."""
    maint_lev = max_lev * 2
    correction = 1 - side / maint_lev
    return mark - side * (account_value - total_ntl_pos / maint_lev) / abs_pos / correction


@pytest.mark.parametrize("side", [1, -1])
def test_hyperliquid_lp_matches_official_example_code(side):
    mark, q, account_value = 100_000.0, 3.0, 30_000.0  # BTC 40x table, MMR 1.25 %
    mmr = 1 / 80
    margin_available = account_value - q * mark * mmr
    got = float(liquidation_price_hyperliquid(np.array([side]), one(q), mark, one(margin_available), mmr)[0])
    assert got == pytest.approx(hl_official_cross_lp(mark, side, account_value, q * mark, q, 40), rel=1e-13)
    # hand values: long 100,000 - 26,250/3/(1 - 1/80) = 91,139.2405...; short /(1 + 1/80) = 108,641.975...
    expected = 91_139.24050632911 if side == 1 else 108_641.97530864198
    assert got == pytest.approx(expected, abs=1e-6)
    # direct solve: account value at LP equals MM at LP
    assert account_value + side * q * (got - mark) == pytest.approx(q * got * mmr, abs=1e-6)


def test_hyperliquid_lp_upper_tier_with_deduction_is_exact():
    # 2,500 BTC at 80,000 = 200M notional (tier >150M, MMR 2.5 %, deduction 1.875M), 20M collateral.
    t = HYPERLIQUID.tiers_for("BTC")
    q, mark, eq = 2_500.0, 80_000.0, 20e6
    k = int(t.tier_index(q * mark))
    assert k == 1
    avail = eq - mm(t, q * mark)
    lp = float(liquidation_price_hyperliquid(np.array([1]), one(q), mark, one(avail), t.mmr[k])[0])
    assert t.tier_index(q * lp) == 1
    assert eq + q * (lp - mark) == pytest.approx(mm(t, q * lp), abs=1e-6)
    assert lp == pytest.approx(mark - avail / q / (1 - 0.025), abs=1e-9)  # 73,794.87...


@settings(max_examples=200, deadline=None)
@given(
    side=st.sampled_from([1, -1]),
    qty=st.floats(0.01, 1_000.0),
    mark=st.floats(1.0, 200_000.0),
    lev=st.floats(1.0, 40.0),
    max_lev=st.sampled_from([3, 5, 10, 20, 25, 40, 50]),
)
def test_hyperliquid_lp_direct_solve(side, qty, mark, lev, max_lev):
    mmr = 1 / (2 * max_lev)
    equity = qty * mark / lev
    avail = equity - mmr * qty * mark
    lp = float(liquidation_price_hyperliquid(np.array([side]), one(qty), mark, one(avail), mmr)[0])
    assert equity + side * qty * (lp - mark) == pytest.approx(mmr * qty * lp, abs=1e-6 + 1e-12 * qty * mark)
    if avail > 1e-9 * qty * mark:  # (at avail ~ 0 the liquidation price is the mark itself, to rounding)
        assert side * (mark - lp) > 0  # liquidation lies on the losing side of the mark


# =========================================================================== ADL
def bitmex_rank(side, qty, entry, collateral, mark) -> float:
    """BitMEX autoDeleveraging page, literally, with signed position values (short = negative)."""
    bk = entry - side * collateral / qty
    mark_value, bankrupt_value, entry_value = side * qty * mark, side * qty * bk, side * qty * entry
    eff_lev = abs(mark_value) / (mark_value - bankrupt_value)
    pnl_pct = (mark_value - entry_value) / abs(entry_value)
    return pnl_pct * eff_lev if pnl_pct > 0 else pnl_pct / eff_lev


def score(ranking, side, qty, entry, coll, mark, mmv=None):
    side = np.asarray(side, dtype=np.int8)
    qty, entry, coll = (np.asarray(a, dtype=np.float64) for a in (qty, entry, coll))
    mmv = np.zeros_like(qty) if mmv is None else np.asarray(mmv, dtype=np.float64)
    return adl_score(ranking, side, qty, entry, coll, mark, mmv)


def test_adl_effective_leverage_hand_values():
    # long 1 @ 50,000, collateral 5,000, mark 55,000: PnL% = 10 %, equity 10,000, EffLev 5.5 -> 0.55
    s = score("pnl_pct_x_effective_leverage", [1], [1.0], [50_000.0], [5_000.0], 55_000.0)
    assert s[0] == pytest.approx(0.55, abs=1e-12)
    # the same short loses 10 %: equity 0 -> being liquidated, -inf
    s = score("pnl_pct_x_effective_leverage", [-1], [1.0], [50_000.0], [5_000.0], 55_000.0)
    assert s[0] == -np.inf
    # short 1 @ 50,000 with 10,000 collateral at mark 55,000: PnL% -10 %, equity 5,000, EffLev 11 -> -1/110
    s = score("pnl_pct_x_effective_leverage", [-1], [1.0], [50_000.0], [10_000.0], 55_000.0)
    assert s[0] == pytest.approx(-0.1 / 11, abs=1e-15)


def test_adl_effective_leverage_matches_bitmex_definition():
    rng = np.random.default_rng(7)
    n = 200
    side = rng.choice([-1, 1], n).astype(np.int8)
    qty = rng.uniform(0.1, 10, n)
    entry = rng.uniform(40_000, 60_000, n)
    coll = qty * entry / rng.uniform(1, 50, n)
    mark = 50_000.0
    got = score("pnl_pct_x_effective_leverage", side, qty, entry, coll, mark)
    for i in range(n):
        equity = coll[i] + side[i] * qty[i] * (mark - entry[i])
        if equity <= 0:
            assert got[i] == -np.inf
        else:
            assert got[i] == pytest.approx(
                bitmex_rank(int(side[i]), qty[i], entry[i], coll[i], mark), rel=1e-12
            )


def test_adl_effective_leverage_ordering():
    # profitable before losing; among profitable, more leverage first; among losers, the more
    # leveraged (smaller |PnL%/EffLev|) rank higher, as BitMEX divides when PnL% < 0.
    side = [1, 1, 1, 1, 1]
    entry = [40_000.0, 40_000.0, 45_000.0, 55_000.0, 55_000.0]
    coll = [40_000.0, 4_000.0, 4_500.0, 55_000.0, 11_000.0]
    s = score("pnl_pct_x_effective_leverage", side, [1.0] * 5, entry, coll, 50_000.0)
    assert list(np.argsort(-s)) == [1, 2, 0, 4, 3]


def test_adl_binance_margin_ratio_forum_example():
    # dev.binance.vision/t/how-to-caculating-leverage-pnl-quantile/17801: uPnL 40.2, WB 4.27,
    # margin ratio 13.42 %  ->  PnL% = 9.41, LeveragePnL = 1.26 (official formula, FAQ 360033525471).
    equity = 4.27 + 40.2
    s = score("pnl_pct_x_margin_ratio", [1], [1.0], [100.0], [4.27], 140.2, [0.1342 * equity])
    assert round(40.2 / 4.27, 2) == 9.41
    assert s[0] == pytest.approx(40.2 / 4.27 * 0.1342, rel=1e-12)
    assert round(float(s[0]), 2) == 1.26


def test_adl_binance_margin_ratio_hand_values():
    # PnL% = max(0,uPnL)/max(1,WB); margin ratio = MM/(WB+uPnL)
    s = score(
        "pnl_pct_x_margin_ratio",
        [1, 1, -1, 1],
        [1.0, 1.0, 1.0, 1.0],
        [100.0, 100.0, 100.0, 100.0],
        [50.0, 0.5, 50.0, 50.0],
        110.0,
        [2.0, 2.0, 2.0, 2.0],
    )
    assert s[0] == pytest.approx(10 / 50 * 2 / 60, abs=1e-15)
    assert s[1] == pytest.approx(10 / 1 * 2 / 10.5, abs=1e-15)  # WB < 1 -> divided by 1
    assert s[2] == 0.0  # a losing short scores 0
    assert s[3] == pytest.approx(s[0])


def test_adl_hyperliquid_long_matches_doc_index():
    # hyperliquid-docs trading/auto-deleveraging: (mark_price / entry_price) * (notional_position / account_value)
    s = score("hyperliquid", [1, 1], [2.0, 2.0], [100.0, 100.0], [20.0, 100.0], 120.0)
    np.testing.assert_allclose(s, [1.2 * 240 / 60, 1.2 * 240 / 140], rtol=1e-12)
    assert s[0] > s[1]


def test_adl_hyperliquid_short_side_adjusted():
    # Our reading [U]: shorts use entry/mark so that profitable shorts rank first (doc gives one formula).
    s = score("hyperliquid", [-1, -1], [1.0, 1.0], [100.0, 100.0], [20.0, 20.0], 80.0)
    assert s[0] == pytest.approx((100 / 80) * 80 / 40, rel=1e-12)
    s2 = score("hyperliquid", [-1, -1], [1.0, 1.0], [100.0, 60.0], [20.0, 20.0], 80.0)
    assert s2[0] > s2[1]  # profitable short (entry 100) before losing short (entry 60)


def test_adl_unknown_ranking_and_bankrupt_positions():
    with pytest.raises(ValueError, match="unknown ADL ranking"):
        score("nope", [1], [1.0], [1.0], [1.0], 1.0)
    for ranking in ("pnl_pct_x_effective_leverage", "pnl_pct_x_margin_ratio", "hyperliquid"):
        s = score(ranking, [1, -1], [1.0, 1.0], [100.0, 100.0], [5.0, 5.0], 90.0, [1.0, 1.0])
        assert s[0] == -np.inf  # long lost 10 with 5 collateral: equity < 0
        assert np.isfinite(s[1])


# =========================================================================== loading
def test_presets_load_with_expected_rules():
    assert {"binance-usdm", "hyperliquid", "bitmex", "bybit", "okx", "dydx-v4", "drift"} <= set(PRESETS)
    assert BINANCE.adl.ranking == "pnl_pct_x_effective_leverage" and BINANCE.adl.price == "bankruptcy"
    assert BINANCE.backstop.holder == "insurance_fund" and BINANCE.backstop.takeover_price == "bankruptcy"
    assert BINANCE.liquidation.clearance_fee_rate == 0.003 and BINANCE.liquidation.step_down_tiers
    assert HYPERLIQUID.adl.ranking == "hyperliquid" and HYPERLIQUID.adl.price == "previous_mark"
    assert HYPERLIQUID.backstop.holder == "liquidator_vault" and HYPERLIQUID.backstop.takeover_price == "mark"
    lq = HYPERLIQUID.liquidation
    assert (lq.partial_threshold_usd, lq.partial_fraction, lq.partial_cooldown_s) == (100_000.0, 0.2, 30.0)
    assert lq.backstop_below_mm_fraction == pytest.approx(2 / 3, abs=1e-15)
    assert HYPERLIQUID.mark.basis_window_s == 150.0 and BINANCE.mark.basis_window_s == 30.0


def test_override_deep_merges():
    v = load_venue(
        "hyperliquid",
        {"liquidation": {"partial_fraction": 0.5}, "tiers": {"BTC": {"max_leverage": [50, 25]}}},
    )
    assert v.liquidation.partial_fraction == 0.5
    assert v.liquidation.partial_threshold_usd == 100_000.0 and v.liquidation.partial_cooldown_s == 30.0
    t = v.tiers_for("BTC")
    np.testing.assert_array_equal(t.floor_usd, [0, 150e6])
    np.testing.assert_allclose(t.mmr, [0.01, 0.02])
    np.testing.assert_allclose(t.maint_amount_usd, [0, 1_500_000.0])
    assert v.tiers_for("ETH").max_leverage[0] == 25  # other tables untouched
    assert load_venue("hyperliquid").liquidation.partial_fraction == 0.2  # preset itself unchanged


def test_override_adds_a_tier_table():
    ada = {
        "floor_usd": [0, 1e5, 5e5, 1e6, 2e6, 5e6],
        "max_leverage": [20, 10, 5, 3, 2, 1],
        "mmr": [0.025, 0.05, 0.1, 0.15, 0.25, 0.5],
    }
    v = load_venue("binance-usdm", {"tiers": {"ADABUSD": ada}})
    np.testing.assert_allclose(
        v.tiers_for("ADABUSD").maint_amount_usd, [0, 2_500, 27_500, 77_500, 277_500, 1_527_500]
    )
    assert v.tiers_for("BTCUSDT").floor_usd.size == 10


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"liquidation": {"foo": 1}}, "liquidation.foo"),
        ({"bogus": 1}, "bogus"),
        ({"liquidation": {"partial_fraction": 0}}, "liquidation.partial_fraction"),
        ({"liquidation": {"clearance_fee_rate": -0.1}}, "liquidation.clearance_fee_rate"),
        ({"liquidation": {"backstop_below_mm_fraction": 1.5}}, "liquidation.backstop_below_mm_fraction"),
        ({"backstop": {"unwind_max_slippage_pct": 100}}, "backstop.unwind_max_slippage_pct"),
        ({"mark": {"basis_window_s": 0}}, "mark.basis_window_s"),
        ({"mark": {"method": "vwap"}}, "mark.method"),
        ({"adl": {"ranking": "xyz"}}, "adl.ranking"),
        ({"tiers": {"BTC": {"max_leverage": [40]}}}, "tiers.BTC"),
        ({"tiers": {"BTC": {"max_leverage": [40, -1]}}}, "tiers.BTC.max_leverage"),
    ],
)
def test_override_errors_name_the_key(overrides, key):
    with pytest.raises(DeleverInputError) as ei:
        load_venue("hyperliquid", overrides)
    assert f"'{key}" in str(ei.value)
    assert "hyperliquid" in str(ei.value)


def test_unknown_override_key_message():
    with pytest.raises(DeleverInputError, match=r"field 'liquidation\.foo': unknown key"):
        load_venue("binance-usdm", {"liquidation": {"foo": 1}})


def test_bad_tier_floors_rejected_by_the_time_tiers_are_used():
    floors = [10, 5e4, 2.5e5, 1e6, 1e7, 2e7, 5e7, 1e8, 2e8, 3e8]
    with pytest.raises(DeleverInputError, match="BTCUSDT"):
        load_venue("binance-usdm", {"tiers": {"BTCUSDT": {"floor_usd": floors}}}).tiers_for("BTCUSDT")


def test_unknown_preset_raises():
    with pytest.raises(DeleverInputError, match="unknown venue 'deribit'.*bitmex, bybit, okx"):
        load_venue("deribit")


@pytest.mark.parametrize(
    "instrument, key",
    [
        ("BTC", "BTC"),
        ("BTCUSDT", "BTC"),
        ("BTCUSDC", "BTC"),
        ("BTC-PERP", "BTC"),
        ("ETHUSD", "ETH"),
        ("DOGE", "alt-10x-20m"),
        ("DOGEUSDT", "alt-10x-20m"),
        ("kPEPE", "alt-10x-20m"),
        ("BNB", "alt-10x-3m"),
        ("alt-10x-3m", "alt-10x-3m"),
    ],
)
def test_tiers_for_mapping(instrument, key):
    got = HYPERLIQUID.tiers_for(instrument)
    want = HYPERLIQUID.tiers[key].margin_tiers("x")
    np.testing.assert_array_equal(got.floor_usd, want.floor_usd)
    np.testing.assert_array_equal(got.max_leverage, want.max_leverage)


def test_tiers_for_unknown_instrument_raises():
    with pytest.raises(DeleverInputError, match="'FOOUSDT'"):
        HYPERLIQUID.tiers_for("FOOUSDT")
    with pytest.raises(DeleverInputError, match="'ETHUSDT'"):
        BINANCE.tiers_for("ETHUSDT")
    with pytest.raises(DeleverInputError):
        HYPERLIQUID.tiers_for("USDT")
