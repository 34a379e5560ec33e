"""dYdX v4 formulas against the test tables of dydxprotocol/v4-chain.

Every expected number below is copied from the Go test named in the test's docstring (path @ the commit
the stored copy was read from). Units are converted with the tests' atomic resolutions: quote quantums
x 1e-6 = USD (USDC, -6); BTC base quantums x 1e-8, ETH x 1e-9; BTC oracle $50,000 and ETH $3,000
(``keepertest.CreateTestMarkets``). Fillable prices in the Go tables are quote quantums per base quantum:
x 100 gives USD/BTC, x 1000 USD/ETH. Liquidity tiers (``testutil/constants/perpetuals.go``):
``BtcUsd_20PercentInitial_10PercentMaintenance`` = tier 3 (IMF 20 %, MF 50 % -> MMR 10 %),
``BtcUsd_100PercentMarginRequirement`` = tier 0 (IMF 100 %, MF 100 %).
Results are compared to the quantum: ``round(usd / 1e-6)`` equals the Go integer.
"""

from __future__ import annotations

import numpy as np
import pytest

from delever.venues import dydx

Q = dydx.USDC_QUANTUM
BTC, ETH = 1e-8, 1e-9          # base units per base quantum
P = {"BTC": 50_000.0, "ETH": 3_000.0}
MMR_20_10 = 0.1               # tier 3: IMF 0.2 x MF 0.5
LIQ_TEST = "protocol/x/clob/keeper/liquidations_test.go @ 031eadfb229483c17513bc02b301aedde50a8b8d"
DEL_TEST = "protocol/x/clob/keeper/deleveraging_test.go @ 020b8b647d26909061188a6bc0494d6ae0655bbf"
LT_TEST = "protocol/x/perpetuals/types/liquidity_tier_test.go @ 01a48f236c5640df172482db21cd26b8f28ff781"


def qq(usd) -> int:
    """USD -> quote quantums (exact integer)."""
    return int(np.round(np.asarray(usd) / Q))


def risk(usdc: float, positions: dict[str, float], mmr: float = MMR_20_10, imf: float = 0.2):
    """(TNC, TMMR, TIMR) of a subaccount: USDC balance plus perpetual positions (signed base units)."""
    nnv = sum(q * P[c] for c, q in positions.items())
    notional = sum(abs(q) * P[c] for c, q in positions.items())
    return usdc + nnv, notional * mmr, notional * imf


# ----------------------------------------------------------------------------------------- fillable price
FILLABLE = [
    # (usdc, positions, perp, BA, SMMR, expected quote quantums per base quantum as (num, den))
    (-4_501, {"BTC": 0.1}, "BTC", 1.0, 0.1, (49_999, 100)),
    (-4_501, {"BTC": 0.1}, "BTC", 2.0, 0.1, (49_998, 100)),
    (-4_501, {"BTC": 0.1}, "BTC", 1.0, 0.2, (49_998, 100)),
    (5_499, {"BTC": -0.1}, "BTC", 1.0, 0.1, (50_001, 100)),
    (5_499, {"BTC": -0.1}, "BTC", 2.0, 0.1, (50_002, 100)),
    (5_499, {"BTC": -0.1}, "BTC", 1.0, 0.2, (50_002, 100)),
    (-5_000, {"BTC": 0.1}, "BTC", 1.0, 0.1, (495, 1)),          # at the bankruptcy price (also half the position)
    (5_000, {"BTC": -0.1}, "BTC", 1.0, 0.1, (505, 1)),
    (-5_500, {"BTC": 0.1}, "BTC", 1.0, 0.1, (495, 1)),          # below the bankruptcy price: ABR clamps at 1
    (4_500, {"BTC": -0.1}, "BTC", 1.0, 0.1, (505, 1)),
    (-490, {"BTC": 0.004, "ETH": 0.1}, "ETH", 1.0, 0.1, (372, 125)),
    (-4_501, {"BTC": 0.1}, "BTC", 4294.967295, 0.1, (495, 1)),  # BankruptcyAdjustmentPpm = MaxUint32
    (-4_501, {"BTC": 0.1}, "BTC", 1.0, 1e-6, (4_999_999_999, 10_000_000)),
    (-4_501, {"BTC": 0.1}, "BTC", 1.0, 1.0, (49_990, 100)),
]


@pytest.mark.parametrize(("usdc", "positions", "perp", "ba", "smmr", "expected"), FILLABLE)
def test_fillable_price_matches_go_table(usdc, positions, perp, ba, smmr, expected):
    """TestGetFillablePrice, liquidations_test.go (LIQ_TEST)."""
    tnc, tmmr, _ = risk(usdc, positions)
    ps = positions[perp]
    fp = dydx.fillable_price(ps, P[perp], abs(ps) * P[perp] * MMR_20_10, tnc, tmmr, ba, smmr)
    usd_per_unit = (1e-6 / (BTC if perp == "BTC" else ETH))  # quote quantums per base quantum -> USD per unit
    assert fp == pytest.approx(expected[0] / expected[1] * usd_per_unit, rel=1e-13)


@pytest.mark.parametrize(("fp", "long", "spt", "qce", "expected"), [
    (5_000_000_000.0, True, 5, -8, 500_000_000_000_000_000),   # ClobPair_Btc: SubticksPerTick 5, QCE -8
    (5_000_000_000.0, False, 5, -8, 500_000_000_000_000_000),
    (7.0, True, 100, 1, 100),     # rounds up
    (197.0, True, 100, 1, 100),   # 19.7 -> 20 subticks -> up to one tick
    (0.0, True, 100, 1, 100),     # lower bounded at SubticksPerTick
])
def test_fillable_price_to_subticks_matches_go_table(fp, long, spt, qce, expected):
    """TestConvertFillablePriceToSubticks, liquidations_test.go (LIQ_TEST). The MaxUint64 clamp case needs
    exact integers beyond float precision and is not reproduced."""
    assert int(dydx.fillable_price_subticks(fp, long, spt, qce)) == expected


# ----------------------------------------------------------------------------------------- bankruptcy price
BANKRUPTCY = [
    # (usdc, positions, perp, delta base units, expected quote quantums)
    (-4_501, {"BTC": 0.1}, "BTC", -0.1, 4_501_000_000),
    (5_499, {"BTC": -0.1}, "BTC", 0.1, -5_499_000_000),
    (-5_000, {"BTC": 0.1}, "BTC", -0.1, 5_000_000_000),
    (-5_000, {"BTC": 0.1}, "BTC", -0.05, 2_500_000_000),
    (5_000, {"BTC": -0.1}, "BTC", 0.05, -2_500_000_000),
    (5_000, {"BTC": -0.1}, "BTC", 0.1, -5_000_000_000),
    (-5_100, {"BTC": 0.1}, "BTC", -0.1, 5_100_000_000),
    (4_900, {"BTC": -0.1}, "BTC", 0.1, -4_900_000_000),
    (-490, {"BTC": 0.004, "ETH": 0.1}, "ETH", -0.1, 294_000_000),
    (510, {"BTC": -0.004, "ETH": -0.1}, "ETH", 0.1, -306_000_000),
    (110, {"BTC": 0.004, "ETH": -0.1}, "ETH", 0.1, -306_000_000),
    (-13, {"BTC": 1.0}, "BTC", -21_347 * BTC, 2_776),       # rounded up from 2,775.11
    (13, {"BTC": -1.0}, "BTC", 21_347 * BTC, -2_775),       # rounded toward +inf from -2,775.11
    (1, {"BTC": 1.0}, "BTC", -1.0, -1_000_000),             # negative bankruptcy price
]


@pytest.mark.parametrize(("usdc", "positions", "perp", "delta", "expected"), BANKRUPTCY)
def test_bankruptcy_quote_matches_go_table(usdc, positions, perp, delta, expected):
    """TestGetBankruptcyPriceInQuoteQuantums, liquidations_test.go (LIQ_TEST)."""
    tnc, tmmr, _ = risk(usdc, positions)
    got = dydx.bankruptcy_quote_usd(delta * P[perp], abs(delta) * P[perp] * MMR_20_10, tnc, tmmr, quote_quantum=Q)
    assert qq(got) == expected


@pytest.mark.parametrize(("position", "delta", "ok"), [
    (1.0, 0.0, False),        # "Returns error when deltaQuantums is zero"
    (0.0, -0.1, False),       # "... does not have an open position"
    (1.0, 0.1, False),        # "... delta quantums and perpetual position have the same sign"
    (1.0, -1.00000001, False),  # "... abs delta quantums is greater than position size"
    (1.0, -1.0, True),
])
def test_position_delta_validation_matches_go_error_cases(position, delta, ok):
    """Error cases of TestGetBankruptcyPriceInQuoteQuantums / TestGetFillablePrice (LIQ_TEST)."""
    assert bool(dydx.valid_position_delta(position, delta)) is ok


# ----------------------------------------------------------------------------------------- insurance fund delta
IF_DELTA = [
    # (usdc, position BTC, is_buy, subticks, max fee, expected quote quantums)
    (-5_100, 0.1, False, 56_100_000_000, 0.005, 28_050_000),
    (-5_100, 0.1, False, 56_100_000_000, 0.025, 140_250_000),
    (-5_100, 0.1, False, 56_100_000_000, 1.0, 510_000_000),
    (4_900, -0.1, True, 44_100_000_000, 0.005, 22_050_000),
    (4_900, -0.1, True, 44_100_000_000, 0.025, 110_250_000),
    (4_900, -0.1, True, 44_100_000_000, 1.0, 490_000_000),
    (-5_100, 0.1, False, 51_051_000_000, 0.005, 5_100_000),
    (4_900, -0.1, True, 48_951_000_000, 0.005, 4_900_000),
    (-5_100, 0.1, False, 51_000_000_000, 0.005, 0),
    (4_900, -0.1, True, 49_000_000_000, 0.005, 0),
    (-5_100, 0.1, False, 50_490_000_000, 0.005, -51_000_000),
    (4_900, -0.1, True, 49_490_000_000, 0.005, -49_000_000),
    (4_900, -0.1, True, 1, 0.005, 0),   # "Succeeds when delta quote quantums is zero" (0.1 quantum truncated)
]


@pytest.mark.parametrize(("usdc", "pos", "is_buy", "subticks", "fee", "expected"), IF_DELTA)
def test_insurance_fund_delta_matches_go_table(usdc, pos, is_buy, subticks, fee, expected):
    """TestGetLiquidationInsuranceFundDelta, liquidations_test.go (LIQ_TEST). ClobPair_Btc QCE -8, so
    USD/BTC = subticks x 1e-8 (QCE) x 1e-6 (quote) / 1e-8 (base) = subticks x 1e-6."""
    tnc, tmmr, _ = risk(usdc, {"BTC": pos})
    delta = -pos
    bq = dydx.bankruptcy_quote_usd(delta * P["BTC"], abs(delta) * P["BTC"] * MMR_20_10, tnc, tmmr, quote_quantum=Q)
    fill = dydx.fill_quote_usd(abs(pos), subticks * 1e-6, is_buy, quote_quantum=Q)
    assert qq(dydx.insurance_fund_delta_usd(fill, bq, fee, quote_quantum=Q)) == expected


# ----------------------------------------------------------------------------------------- sizes and block limits
SIZE = [
    # (position BTC, min notional USD, max portion, subaccount notional left USD, step base units, expected BTC)
    (0.1, 1e-6, 1.0, np.inf, 5 * BTC, 0.1),             # LiquidationsConfig_No_Limit
    (0.1, 10_000.0, 1.0, np.inf, 5 * BTC, 0.1),         # MinPositionNotionalLiquidated > position
    (0.1, 0.001, 0.5, np.inf, 5 * BTC, 0.05),           # MaxPositionPortionLiquidatedPpm 500,000
    (0.1, 1e-6, 1.0, 10_000.0, 5 * BTC, 0.1),           # position smaller than the subaccount limit
    (0.1, 1e-6, 1.0, 2_500.0, 5 * BTC, 0.05),           # capped at the subaccount limit
    (0.1, 0.001, 0.5, 2_000.0, 5 * BTC, 0.04),          # subaccount limit below the position limit
    (0.1, 0.001, 0.4, 2_500.0, 5 * BTC, 0.04),          # position limit below the subaccount limit
    (21 * BTC, 0.001, 0.5, np.inf, 3 * BTC, 9 * BTC),   # rounded down to the step size (3)
    (1.0, 1e-6, 1.0, np.inf, 5 * BTC, 1.0),             # short cases: same sizes
]


@pytest.mark.parametrize(("pos", "min_n", "portion", "sub_left", "step", "expected"), SIZE)
def test_liquidatable_size_matches_go_table(pos, min_n, portion, sub_left, step, expected):
    """TestGetPerpetualPositionToLiquidate, liquidations_test.go (LIQ_TEST); ClobPair_Btc StepBaseQuantums 5
    (testutil/constants/clob_pair.go)."""
    got = dydx.liquidatable_qty(pos, P["BTC"], min_n, portion, sub_left, step_qty=step)
    assert int(np.round(got / BTC)) == int(np.round(expected / BTC))


@pytest.mark.parametrize(("pos_quantums", "min_q", "portion", "exp_min", "exp_max"), [
    (100_000_000, 100, 1.0, 100, 50_000_000_000),
    (100_000_000, 100, 0.5, 100, 25_000_000_000),
    (10_000, 10_000_000, 1.0, 5_000_000, 5_000_000),   # both overridden by the $5 position
])
def test_position_notional_limits_match_go_table(pos_quantums, min_q, portion, exp_min, exp_max):
    """TestGetMaxAndMinPositionNotionalLiquidatable, liquidations_test.go (LIQ_TEST)."""
    lo, hi = dydx.position_notional_limits(pos_quantums * BTC * P["BTC"], min_q * Q, portion)
    assert (qq(lo), qq(hi)) == (exp_min, exp_max)


def test_subaccount_block_limits_match_go_table():
    """TestGetMaxLiquidatableNotionalAndInsuranceLost, liquidations_test.go (LIQ_TEST): limits 150/150 quantums,
    100 already liquidated and 100 lost (insurance delta -100) -> 50 / 50; above a limit the Go code panics."""
    n_left, i_left = dydx.subaccount_limits_left(150 * Q, 150 * Q, 100 * Q, 100 * Q)
    assert (qq(n_left), qq(i_left)) == (50, 50)
    with pytest.raises(ValueError, match="exceeds"):
        dydx.subaccount_limits_left(50 * Q, np.inf, 100 * Q, 100 * Q)
    with pytest.raises(ValueError, match="exceeds"):
        dydx.subaccount_limits_left(np.inf, 50 * Q, 100 * Q, 100 * Q)


# ----------------------------------------------------------------------------------------- liquidity tiers
@pytest.mark.parametrize(("imf_ppm", "lower", "upper", "oi", "quote", "expected"), [
    (200_000, 0, 0, 0, 500_000, 100_000),
    (500_000, 0, 0, 0, 1_000_000, 500_000),
    (100_000, 0, 0, 0, 1, 1),                       # rounds up
    (567_243, 0, 0, 0, 123_456, 70_030),
    (200_000, 0, 0, 1_500_000_000_000, 500_000, 100_000),
    (200_000, 1_000_000_000_000, 2_000_000_000_000, 1_500_000_000_000, 500_000, 300_000),
    (200_000, 25_000_000_000_000, 50_000_000_000_000, 80_000_000_000_000, 500_000, 500_000),
    (200_000, 25_000_000_000_000, 50_000_000_000_000, 25_000_000_000_000, 500_000, 100_000),
    (200_000, 25_000_000_000_000, 60_000_000_000_000, 28_123_456_789_123, 500_000, 135_697),
])
def test_initial_margin_matches_go_table(imf_ppm, lower, upper, oi, quote, expected):
    """TestGetInitialMarginQuoteQuantums, liquidity_tier_test.go (LT_TEST); all amounts in quote quantums."""
    got = dydx.initial_margin_usd(quote * Q, imf_ppm / 1e6, oi * Q, lower * Q, upper * Q, quote_quantum=Q)
    assert qq(got) == expected


@pytest.mark.parametrize(("oi", "lower", "upper", "expected"), [
    (0, 1_000_000, 2_000_000, 200_000), (1_500_000, 1_000_000, 2_000_000, 600_000),
    (1_234_567, 1_000_000, 2_000_000, 387_653), (1_000_000, 1_000_000, 2_000_000, 200_000),
    (2_000_000, 1_000_000, 2_000_000, 1_000_000), (2_500_000, 1_000_000, 2_000_000, 1_000_000),
    (1_500_000, 0, 0, 200_000),
])
def test_adjusted_initial_margin_ppm_matches_go_table(oi, lower, upper, expected):
    """TestGetAdjustedInitialMarginPpm, liquidity_tier_test.go (LT_TEST); base IMF 200,000 ppm."""
    assert int(dydx.effective_imf_ppm(200_000, oi * Q, lower * Q, upper * Q)) == expected


# ----------------------------------------------------------------------------------------- deleveraging
def _process(liq: tuple[float, float], off: tuple[float, float], delta: float, at_oracle: bool = False):
    """ProcessDeleveraging on two one-BTC-position subaccounts (usdc, signed BTC) in tier 3 (20 % / 10 %).

    Returns (ok, liquidated usdc after, offsetting usdc after)."""
    (lu, lq), (ou, oq) = liq, off
    ltnc, ltmmr, ltimr = risk(lu, {"BTC": lq})
    if at_oracle:
        quote = -delta * P["BTC"]
    else:
        quote = float(dydx.bankruptcy_quote_usd(delta * P["BTC"], abs(delta) * P["BTC"] * MMR_20_10, ltnc, ltmmr, Q))
    ok = bool(dydx.valid_position_delta(lq, delta) & dydx.valid_position_delta(oq, -delta))
    states = []
    for usdc, q, d, dq in ((lu, lq, delta, quote), (ou, oq, -delta, -quote)):
        cur, new = risk(usdc, {"BTC": q}), risk(usdc + dq, {"BTC": q + d})
        states.append(bool(dydx.is_valid_state_transition(*cur, *new, rtol=1e-12)))  # float USD inputs
    return ok and all(states), lu + quote, ou - quote


CARL = {"54999": (54_999.0, -1.0), "50000": (50_000.0, -1.0), "49999": (49_999.0, -1.0), "100000": (100_000.0, -1.0)}
DAVE = {"50000": (50_000.0, 1.0), "-45001": (-45_001.0, 1.0), "-50000": (-50_000.0, 1.0), "-50001": (-50_001.0, 1.0)}


@pytest.mark.parametrize(("carl", "dave", "delta", "carl_after", "dave_after"), [
    # Subaccount names: Carl_Num0_1BTC_Short_<usdc>USD, Dave_Num0_1BTC_Long_<usdc>USD[_Short: negative usdc].
    ("54999", "50000", 1.0, 0.0, 50_000 + 54_999),
    ("54999", "-45001", 1.0, 0.0, -45_001 + 54_999),
    ("54999", "-50000", 1.0, 0.0, -50_000 + 54_999),
    ("54999", "-50001", 1.0, 0.0, -50_001 + 54_999),
    ("50000", "50000", 1.0, 0.0, 50_000 + 50_000),
    ("50000", "-45001", 1.0, 0.0, -45_001 + 50_000),
    ("50000", "-50000", 1.0, 0.0, 0.0),
    ("50000", "-50001", 1.0, None, None),       # non-overlapping bankruptcy prices
    ("49999", "50000", 1.0, 0.0, 50_000 + 49_999),
    ("49999", "-45001", 1.0, 0.0, -45_001 + 49_999),
    ("49999", "-50000", 1.0, None, None),
    ("49999", "-50001", 1.0, None, None),
    ("54999", "50000", 0.1, 54_999 - 5_499.9, 50_000 + 5_499.9),   # partial: bankruptcy price of 0.1 BTC
    ("49999", "-50001", 0.1, None, None),
    ("54999", "50000", -1.0, None, None),       # delta on the wrong side of the liquidated position
    ("54999", "50000", 5.0, None, None),        # delta larger than the position
])
def test_process_deleveraging_matches_go_table(carl, dave, delta, carl_after, dave_after):
    """TestProcessDeleveraging, deleveraging_test.go (DEL_TEST): liquidated Carl (short), offsetting Dave (long)."""
    ok, c, d = _process(CARL[carl], DAVE[dave], delta)
    assert ok is (carl_after is not None)
    if ok:
        assert (qq(c), qq(d)) == (qq(carl_after), qq(dave_after))


def test_process_deleveraging_multiple_positions_matches_go_table():
    """TestProcessDeleveraging "... can deleverage when there are multiple positions" (DEL_TEST): TNC $800,
    MMR(BTC) $5,000, MMR(ETH) $3,000 -> the bankruptcy price to close 1 BTC short is $50,500."""
    tnc, tmmr, _ = risk(80_800.0, {"BTC": -1.0, "ETH": -10.0})
    bq = dydx.bankruptcy_quote_usd(1.0 * P["BTC"], P["BTC"] * MMR_20_10, tnc, tmmr, Q)
    assert qq(bq) == -50_500_000_000


@pytest.mark.parametrize(("liq", "off", "delta", "liq_after", "off_after"), [
    (CARL["100000"], DAVE["50000"], 1.0, 50_000.0, 100_000.0),
    (DAVE["50000"], CARL["54999"], -1.0, 100_000.0, 4_999.0),
    (CARL["100000"], DAVE["-50000"], 1.0, 50_000.0, 0.0),
    (CARL["100000"], DAVE["-50001"], 1.0, None, None),   # negative-TNC account closing at oracle price
    (CARL["54999"], DAVE["50000"], 1.0, 4_999.0, 100_000.0),
    (CARL["50000"], DAVE["-50001"], 1.0, None, None),
    (CARL["49999"], DAVE["-45001"], 1.0, None, None),
    (CARL["49999"], DAVE["50000"], 1.0, None, None),
])
def test_final_settlement_deleveraging_at_oracle_matches_go_table(liq, off, delta, liq_after, off_after):
    """TestProcessDeleveragingAtOraclePrice, deleveraging_test.go (DEL_TEST)."""
    ok, a, b = _process(liq, off, delta, at_oracle=True)
    assert ok is (liq_after is not None)
    if ok:
        assert (qq(a), qq(b)) == (qq(liq_after), qq(off_after))


def _offset(liq_usdc: float, liq_btc: float, others: list[tuple[float, float]], extra: dict[str, float] | None = None):
    """OffsetSubaccountPerpetualPosition for the liquidated BTC position against ``others`` (usdc, BTC), 100 % tier."""
    positions = {"BTC": liq_btc, **(extra or {})}
    tnc, tmmr, _ = risk(liq_usdc, positions, mmr=1.0, imf=1.0)
    bp_per_unit = float(dydx.bankruptcy_quote_usd(-liq_btc * P["BTC"], abs(liq_btc) * P["BTC"], tnc, tmmr)) / liq_btc
    opp = np.array([i for i, (_, q) in enumerate(others) if np.sign(q) == -np.sign(liq_btc)])
    qty = np.array([abs(others[i][1]) for i in opp])

    def valid(idx, take):
        out = []
        for i, t in zip(idx, take, strict=True):
            usdc, q = others[opp[i]]
            d = -np.sign(q) * t
            cur = risk(usdc, {"BTC": q}, 1.0, 1.0)
            new = risk(usdc + np.sign(q) * t * bp_per_unit, {"BTC": q + d}, 1.0, 1.0)  # long sells / short buys at bp
            out.append(bool(dydx.is_valid_state_transition(*cur, *new)))
        return np.array(out)

    take = dydx.deleveraging_walk(abs(liq_btc), qty, 0, 500, valid)
    return {int(opp[i]): take[i] for i in range(opp.size) if take[i] > 0}, abs(liq_btc) - take.sum(), bp_per_unit


def test_offset_subaccount_position_matches_go_table():
    """TestOffsetSubaccountPerpetualPosition, deleveraging_test.go (DEL_TEST); BtcUsd_100PercentMarginRequirement,
    the walk started at the first subaccount."""
    fills, rem, bp = _offset(54_999.0, -1.0, [(50_000.0, 1.0)])
    assert fills == {0: 1.0} and rem == 0 and qq(bp) == qq(54_999.0)
    fills, rem, bp = _offset(-54_999.0, 1.0, [(100_000.0, -1.0)])      # deleveraged long
    assert fills == {0: 1.0} and rem == 0 and qq(bp) == qq(54_999.0)
    fills, rem, bp = _offset(54_999.0, -1.0, [(50_000.0, 0.5), (50_000.0, 0.5)])
    assert fills == {0: 0.5, 1: 0.5} and rem == 0 and qq(0.5 * bp) == qq(27_499.5)
    fills, rem, _ = _offset(54_999.0, -1.0, [(0.0, -1.0), (50_000.0, 1.0)])  # same side skipped
    assert fills == {1: 1.0} and rem == 0
    fills, rem, bp = _offset(50_000.0, -1.0, [(-50_001.0, 1.0), (50_000.0, 1.0)])  # non-overlapping skipped
    assert fills == {1: 1.0} and rem == 0 and qq(bp) == qq(50_000.0)
    fills, rem, _ = _offset(50_000.0, -1.0, [(-50_001.0, 1.0)])        # not enough: the whole size remains
    assert fills == {} and rem == 1.0
    fills, rem, bp = _offset(47_000.0, -1.0, [(50_000.0, 1.0)], extra={"ETH": 1.0})  # TNC 0 with an ETH long
    assert fills == {0: 1.0} and qq(47_000.0 - bp) == qq(-3_000.0)


def test_walk_respects_the_iteration_cap_and_start():
    """MaxDeleveragingSubaccountsToIterate bounds the visited positions; the walk wraps from ``start``."""
    qty = np.array([1.0, 1.0, 1.0, 1.0])
    allow = lambda idx, take: np.ones(len(idx), bool)  # noqa: E731
    assert dydx.deleveraging_walk(3.0, qty, 2, 2, allow).tolist() == [0.0, 0.0, 1.0, 1.0]
    assert dydx.deleveraging_walk(2.5, qty, 3, 500, allow).tolist() == [1.0, 0.5, 0.0, 1.0]
    only_full = lambda idx, take: take >= 1.0  # noqa: E731  (partial offsets rejected -> next one tried)
    assert dydx.deleveraging_walk(1.5, qty, 0, 500, only_full).tolist() == [1.0, 0.0, 0.0, 0.0]
