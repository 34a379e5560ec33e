"""Funding: premium index from a depth curve, the venues' rate rules, the settlement clock, payments.

Worked examples come from the venues' documents (named at each test); the rest checks the clamp,
cap, floor and interval edges and, with hypothesis, conservation and step-cut invariance.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delever.errors import DeleverInputError
from delever.market.depth import DepthCurve, SideCurve, parametric_curve, walk
from delever.venues import PRESETS, load_venue
from delever.venues.funding import (
    FundingClock,
    FundingRule,
    binance_funding_cap,
    bybit_funding_cap,
    drift_max_price_divergence,
    funding_payments,
    impact_margin_notional,
    impact_premium_index,
    impact_price,
    interest_rate_from_lending,
    margin_spread_funding_cap,
    premium_index,
)

HL = load_venue("hyperliquid").funding.rule_for("BTC")
BINANCE = load_venue("binance-usdm").funding.rule_for("BTCUSDT")
BYBIT = load_venue("bybit").funding.rule_for("BTCUSDT")
BITMEX = load_venue("bitmex").funding.rule_for("XBTUSD")
OKX = load_venue("okx").funding.rule_for("BTC-USDT-SWAP")
DYDX = load_venue("dydx-v4").funding.rule_for("BTC-USD")
DRIFT = load_venue("drift").funding.rule_for("SOL-PERP")


def rule(**kw) -> FundingRule:
    base = dict(method="premium_clamp", averaging="uniform", interval_s=28_800.0, rate_basis_s=28_800.0,
                interest_rate_per_day=0.0003, premium_clamp=0.0005, cap=0.003, floor=-0.003, sample_interval_s=5.0,
                impact_notional_usd=25_000.0)
    base.update(kw)
    return FundingRule(**base)


# --------------------------------------------------------------------------- venue worked examples
def test_hyperliquid_docs_numerical_example():
    # hyperliquid-docs trading/funding "Numerical Example": interest 0.01 %, impact bid 10,100, oracle 10,000:
    # premium 1 %, F = 1 % + clamp(0.01 % - 1 %, -0.05 %, 0.05 %) = 0.95 % (8-hour rate), paid hourly at 1/8.
    p = float(premium_index(10_100.0, 10_150.0, 10_000.0))
    assert p == pytest.approx(0.01, rel=1e-12)
    assert float(HL.basis_rate(p)) == pytest.approx(0.0095, rel=1e-12)
    assert float(HL.rate_from_premium(p)) == pytest.approx(0.0095 / 8, rel=1e-12)


def test_hyperliquid_settled_rates():
    # A settled fundingHistory row (premium -0.0005591732 -> fundingRate -0.0000073966, 10 decimals) quoted in a
    # public reproduction of the formula; and the 0.00125 %/hour baseline of a calm market (docs).
    assert float(HL.rate_from_premium(-0.0005591732)) == pytest.approx(-0.0000073966, abs=1e-10)
    assert float(HL.rate_from_premium(0.0003)) == pytest.approx(0.0000125, rel=1e-12)
    assert float(HL.rate_from_premium(1.0)) == 0.04      # 4 %/hour cap
    assert float(HL.rate_from_premium(-1.0)) == -0.04


def test_binance_impact_notional_interest_and_cap_examples():
    # FAQ 360033525031: BTCUSDT 125x, IMR 0.8 % -> IMN 25,000 USDT; BNBUSDT 20x, IMR 5 % -> 4,000 USDT.
    assert impact_margin_notional(200.0, 0.008) == pytest.approx(25_000.0)
    assert impact_margin_notional(200.0, 0.05) == pytest.approx(4_000.0)
    assert BINANCE.impact_notional_usd == pytest.approx(impact_margin_notional(200.0, 1 / 125))
    # 0.03 %/day = 0.01 % per 8-hour interval; the FAQ's ADAUSDT max-leverage MMR 0.65 % -> cap 0.4875 %.
    assert BINANCE.interest_rate == pytest.approx(0.0001, rel=1e-12)
    assert binance_funding_cap(0.0065) == pytest.approx(0.004875)
    # the preset's BTCUSDT cap from its own 125x bracket (MMR 0.4 %)
    tiers = load_venue("binance-usdm").tiers["BTCUSDT"]
    assert BINANCE.cap == pytest.approx(binance_funding_cap(tiers.mmr[0]))
    assert BINANCE.floor == -BINANCE.cap


def test_binance_four_hour_symbol_scales_interest_not_clamp():
    four = load_venue("binance-usdm").funding.rule_for("LPTUSDT")
    assert four.interval_s == 14_400.0 and four.cap == 0.02
    assert four.interest_rate == pytest.approx(0.00005, rel=1e-12)
    # F = P + clamp(I - P, +-0.05 %): the clamp is not scaled with the interval
    assert float(four.rate_from_premium(0.001)) == pytest.approx(0.0005, rel=1e-12)
    assert float(four.rate_from_premium(0.0004)) == pytest.approx(0.00005, rel=1e-9)


def test_bybit_cap_and_interest_scaling():
    # help center: upper = min(0.75 x (IMR - MMR), MMR); v5 instruments-info example BTCUSDT upperFundingRate 0.00375
    # with the preset's first risk limit (IMR 1 % = 1/100x, MMR 0.5 %).
    t = load_venue("bybit").tiers["BTCUSDT"]
    assert bybit_funding_cap(1 / t.max_leverage[0], t.mmr[0]) == pytest.approx(0.00375)
    assert BYBIT.cap == pytest.approx(0.00375)
    assert bybit_funding_cap(0.10, 0.005) == pytest.approx(0.005)  # MMR binds
    # I = 0.03 % / (24 / interval hours): 8 h 0.01 %, 4 h 0.005 %, 1 h 0.00125 %
    for hours, expected in ((8, 0.0001), (4, 0.00005), (1, 0.0000125)):
        r = rule(interval_s=hours * 3600.0, rate_basis_s=hours * 3600.0)
        assert r.interest_rate == pytest.approx(expected, rel=1e-12)


def test_bitmex_guide_examples():
    # perpetualContractsGuideExamples: quote 1.00 %/day, base 0.25 %/day -> (1.00 % - 0.25 %) / 3 = 0.25 %;
    # long 15,000 XBTUSD at 750 USD = 20 XBT pays 20 x 0.25 % = 0.05 XBT (37.5 USD at 750).
    rate = interest_rate_from_lending(0.01, 0.0025)
    assert rate == pytest.approx(0.0025)
    pay = funding_payments(np.array([20.0, -20.0]), 750.0, rate)
    assert pay[0] == pytest.approx(-37.5) and pay[0] / 750.0 == pytest.approx(-0.05)
    assert pay[1] == -pay[0]
    # default interest (0.06 % - 0.03 %) / 3 = 0.01 %; cap 75 % x (1 % - 0.5 %) = 0.375 %
    assert interest_rate_from_lending(0.0006, 0.0003) == pytest.approx(BITMEX.interest_rate)
    assert margin_spread_funding_cap(0.01, 0.005, 0.75) == pytest.approx(0.00375) == pytest.approx(BITMEX.cap)


def test_okx_rate_is_clamped_average_premium():
    # okx.com/help: funding rate = clamp[MA(premium - 0), -0.375 %, 0.375 %] for BTC
    assert OKX.impact_notional_usd == 0.0 and OKX.interest_rate == 0.0
    assert float(OKX.rate_from_premium(0.0002)) == pytest.approx(0.0002)
    assert float(OKX.rate_from_premium(-0.01)) == pytest.approx(-0.00375)


def test_dydx_rate_cap_and_impact_from_liquidity_tier():
    v = load_venue("dydx-v4")
    lt = v.dydx_tier_for("BTC-USD")
    # |R_8h| <= 600 % x (IMF - MMF); paid per hour at 1/8
    assert DYDX.cap == pytest.approx(margin_spread_funding_cap(lt.imf, lt.mmr, 6.0) / 8)
    assert DYDX.impact_notional_usd == pytest.approx(impact_margin_notional(500.0, lt.imf))
    assert float(DYDX.rate_from_premium(0.0008)) == pytest.approx(0.0001)   # premium + default funding 0, / 8
    assert float(DYDX.rate_from_premium(1.0)) == pytest.approx(DYDX.cap)
    mid = v.funding.rule_for("SOL-USD")
    t = v.dydx.liquidity_tiers["Mid-Cap"]
    assert mid.cap == pytest.approx(margin_spread_funding_cap(t.imf, t.mmr, 6.0) / 8)


def test_drift_offset_band_and_tier_clamp():
    # constants.rs: 1/3333 -> 10.95 % annualized for hourly funding; |spread| <= 1/2000 -> offset only
    base = float(DRIFT.rate_from_premium(0.0))
    assert base == pytest.approx(1 / 3333 / 24, rel=1e-12)
    assert base * 24 * 365 == pytest.approx(0.1095, abs=1e-4)
    assert float(DRIFT.rate_from_premium(0.0005)) == pytest.approx(base, rel=1e-12)
    assert float(DRIFT.rate_from_premium(-0.0005)) == pytest.approx(base, rel=1e-12)
    assert float(DRIFT.rate_from_premium(0.0006)) == pytest.approx((0.0006 + 1 / 3333) / 24, rel=1e-12)
    assert DRIFT.cap == pytest.approx(drift_max_price_divergence("A") / 24)
    assert float(DRIFT.rate_from_premium(0.2)) == pytest.approx(1 / 33 / 24)
    assert drift_max_price_divergence("C") == pytest.approx(0.05)
    with pytest.raises(ValueError):
        drift_max_price_divergence("Z")


def test_drift_twap_is_calculate_new_twap():
    # math/stats.rs: twap' = (p x since + twap x max(1, period - since)) / (since + max(1, period - since))
    clock = FundingClock(DRIFT, prior_premium_index=0.001)
    clock.observe(600.0, 600.0, 0.004)
    assert clock.average_premium() == pytest.approx((0.004 * 600 + 0.001 * 3000) / 3600)
    clock.observe(3600.0, 3000.0, 0.0)
    expected = (0.0 * 3000 + (0.004 * 600 + 0.001 * 3000) / 3600 * 600) / 3600
    (s,) = clock.settle(3600.0)
    assert s.average_premium == pytest.approx(expected)
    assert s.rate == pytest.approx(float(DRIFT.rate_from_premium(expected)))


# --------------------------------------------------------------------------- clamp, cap, floor edges
def test_premium_clamp_edges():
    r = rule(cap=1.0, floor=-1.0)
    i = r.interest_rate
    for p in (i - 0.0005, i + 0.0005, i, i - 0.0004999, i + 0.0004999):
        assert float(r.rate_from_premium(p)) == pytest.approx(i, rel=1e-9)  # inside (and on) the band: F = I
    assert float(r.rate_from_premium(i + 0.0015)) == pytest.approx(i + 0.001, rel=1e-9)
    assert float(r.rate_from_premium(i - 0.0015)) == pytest.approx(i - 0.001, rel=1e-9)
    capped = rule(cap=0.003, floor=-0.002)
    assert float(capped.rate_from_premium(0.0035)) == 0.003      # F = 0.003 exactly at the cap
    assert float(capped.rate_from_premium(0.01)) == 0.003
    assert float(capped.rate_from_premium(-0.01)) == -0.002      # asymmetric floor
    np.testing.assert_allclose(capped.rate_from_premium(np.array([-1.0, 0.0, 1.0])), [-0.002, i, 0.003])


def test_rule_rejects_bad_values():
    with pytest.raises(ValueError):
        rule(method="average")
    with pytest.raises(ValueError):
        rule(cap=-0.001)
    with pytest.raises(ValueError):
        rule(floor=0.001)
    with pytest.raises(ValueError):
        rule(interval_s=0.0)
    with pytest.raises(ValueError):
        rule(sample_interval_s=30_000.0)
    with pytest.raises(ValueError):
        rule(method="drift")          # needs drift_twap averaging
    with pytest.raises(ValueError):
        rule(interest_rate_per_day=math.nan)


def test_preset_override_errors_name_the_field():
    with pytest.raises(DeleverInputError, match="funding"):
        load_venue("binance-usdm", {"funding": {"floor": 0.01}})
    with pytest.raises(DeleverInputError, match="funding"):
        load_venue("binance-usdm", {"funding": {"symbols": {"BTCUSDT": {"interval_s": 1.0}}}})  # < 5 s sample
    with pytest.raises(DeleverInputError, match="funding"):
        load_venue("hyperliquid", {"funding": {"bogus": 1}})


def test_every_preset_has_funding():
    for name in PRESETS:
        f = load_venue(name).funding
        assert f is not None and f.sources
        r = f.rule_for("BTC")
        assert r.floor < 0 < r.cap and r.interval_s in (3600.0, 28_800.0)


# --------------------------------------------------------------------------- clock: averaging and intervals
def test_linear_weights_match_binance_formula():
    # (1 x P1 + 2 x P2 + ... + n x Pn) / (1 + ... + n) over 6 samples of 5 s
    r = rule(averaging="linear", interval_s=30.0, rate_basis_s=30.0, sample_interval_s=5.0, cap=1.0, floor=-1.0)
    ps = [0.001, -0.002, 0.0005, 0.003, 0.0, 0.0011]
    clock = FundingClock(r)
    for k, p in enumerate(ps, start=1):
        clock.observe(5.0 * k, 5.0, p)
    expected = sum(k * p for k, p in enumerate(ps, start=1)) / 21.0
    (s,) = clock.settle(30.0)
    assert s.average_premium == pytest.approx(expected, rel=1e-12) and s.samples == 6
    uniform = FundingClock(rule(interval_s=30.0, rate_basis_s=30.0, cap=1.0, floor=-1.0))
    for k, p in enumerate(ps, start=1):
        uniform.observe(5.0 * k, 5.0, p)
    assert uniform.settle(30.0)[0].average_premium == pytest.approx(sum(ps) / 6, rel=1e-12)


def test_step_shorter_than_sample_interval_counts_only_sample_instants():
    clock = FundingClock(rule(interval_s=60.0, rate_basis_s=60.0, sample_interval_s=30.0, cap=1.0, floor=-1.0))
    clock.observe(10.0, 10.0, 0.5)    # no sample instant in (0, 10]
    clock.observe(30.0, 20.0, 0.002)  # sample at 30
    clock.observe(59.0, 29.0, 0.9)    # none
    clock.observe(60.0, 1.0, 0.004)   # sample at 60
    (s,) = clock.settle(60.0)
    assert s.samples == 2 and s.average_premium == pytest.approx(0.003)


def test_long_step_settles_every_boundary_it_crosses():
    clock = FundingClock(HL, first_funding_s=1800.0)
    clock.observe(1000.0, 1000.0, 0.002)
    clock.observe(1000.0 + 3 * 3600.0, 3 * 3600.0, 0.0001)  # crosses 1800, 5400, 9000
    out = clock.settle(1000.0 + 3 * 3600.0)
    assert [s.time_s for s in out] == [1800.0, 5400.0, 9000.0]
    # first hour: samples (1800-3600, 1800] = 360; observed from 0: 200 at 0.002, 160 at 0.0001
    assert out[0].samples == 360
    assert out[0].average_premium == pytest.approx((200 * 0.002 + 160 * 0.0001) / 360)
    assert out[1].average_premium == pytest.approx(0.0001) and out[1].samples == 720
    assert clock.next_funding_s == 12_600.0 and clock.last_rate == out[-1].rate
    assert clock.settle(12_000.0) == []


def test_prior_premium_fills_the_first_interval():
    clock = FundingClock(BINANCE, start_s=0.0, first_funding_s=3600.0, prior_premium_index=0.002)
    clock.observe(3600.0, 3600.0, 0.002)
    (s,) = clock.settle(3600.0)
    assert s.samples == BINANCE.samples_per_interval == 5760
    assert s.average_premium == pytest.approx(0.002)
    bare = FundingClock(BINANCE, first_funding_s=3600.0)
    bare.observe(3600.0, 3600.0, 0.002)
    assert bare.settle(3600.0)[0].samples == 720


def test_clock_rejects_time_going_back_and_bad_values():
    clock = FundingClock(HL)
    clock.observe(100.0, 100.0, 0.0)
    with pytest.raises(ValueError):
        clock.observe(150.0, 100.0, 0.0)
    with pytest.raises(ValueError):
        clock.observe(200.0, 50.0, math.nan)
    with pytest.raises(ValueError):
        clock.observe(200.0, -1.0, 0.0)
    clock.settle(4000.0)  # nothing observed in (100, 3600]: those samples are missing
    with pytest.raises(ValueError):
        clock.observe(4100.0, 4000.0, 0.0)
    with pytest.raises(ValueError):
        FundingClock(HL, first_funding_s=5000.0)
    with pytest.raises(ValueError):
        FundingClock(HL, first_funding_s=0.0)


def test_empty_interval_settles_at_zero_premium():
    clock = FundingClock(DYDX)
    (s,) = clock.settle(3600.0)
    assert s.samples == 0 and s.average_premium == 0.0 and s.rate == 0.0


@pytest.mark.parametrize("r, hours, step_s", [(HL, 72, 60.0), (BINANCE, 72, 60.0), (DYDX, 30, 7.0), (DRIFT, 48, 30.0),
                                               (BYBIT, 24, 3600.0)])
def test_long_quiet_scenario_settles_expected_number_of_times(r, hours, step_s):
    clock = FundingClock(r)
    premium = 0.0003
    t = 0.0
    out = []
    end = hours * 3600.0
    while t < end - 1e-9:
        dt = min(step_s, end - t)
        t += dt
        clock.observe(t, dt, premium)
        out += clock.settle(t)
    assert len(out) == int(round(end / r.interval_s))
    expected = float(r.rate_from_premium(premium))
    for s in out:
        assert s.rate == pytest.approx(expected, rel=1e-9)
    np.testing.assert_allclose([s.time_s for s in out], r.interval_s * np.arange(1, len(out) + 1))


segments = st.lists(st.tuples(st.floats(0.5, 4000.0), st.floats(-0.01, 0.01)), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(segments, st.integers(0, 2**32 - 1), st.sampled_from(["uniform", "linear"]))
def test_average_does_not_depend_on_how_steps_are_cut(segs, seed, averaging):
    r = rule(averaging=averaging, interval_s=3600.0, rate_basis_s=3600.0, sample_interval_s=5.0, cap=1.0, floor=-1.0)
    rng = random.Random(seed)
    whole, cut = FundingClock(r), FundingClock(r)
    t = 0.0
    for dur, p in segs:
        whole.observe(t + dur, dur, p)
        pieces = sorted(rng.uniform(0, dur) for _ in range(rng.randint(0, 4)))
        prev = 0.0
        for q in [*pieces, dur]:
            cut.observe(t + q, q - prev, p)
            prev = q
        t += dur
    horizon = math.ceil(t / 3600.0) * 3600.0
    a, b = whole.settle(horizon), cut.settle(horizon)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.samples == y.samples
        assert x.average_premium == pytest.approx(y.average_premium, rel=1e-9, abs=1e-15)


# --------------------------------------------------------------------------- impact prices from the depth curve
def test_impact_price_uniform_depth_closed_form():
    # C(x) = a x on the bid: selling N from x = 0 ends at x1 with M a (x1 - x1^2/2) = N; VWAP = N / (a x1)
    a, m, n = 100.0, 50_000.0, 1_000_000.0
    side = SideCurve([0.0, 0.01, 0.05], [0.0, 0.01 * a, 0.05 * a], -1)
    x1 = 1 - math.sqrt(1 - 2 * n / (m * a))
    assert impact_price(side, m, n) == pytest.approx(n / (a * x1), rel=1e-12)
    ask = SideCurve([0.0, 0.01, 0.05], [0.0, 0.01 * a, 0.05 * a], +1)
    x1a = -1 + math.sqrt(1 + 2 * n / (m * a))
    assert impact_price(ask, m, n) == pytest.approx(n / (a * x1a), rel=1e-12)
    assert impact_price(side, m, 0.0) == m and impact_price(side, m, 0.0, displacement=0.002) == pytest.approx(m * 0.998)
    with pytest.raises(ValueError):
        impact_price(side, -1.0, n)


@st.composite
def sides(draw):
    k = draw(st.integers(2, 6))
    steps = draw(st.lists(st.floats(0.001, 0.02), min_size=k, max_size=k))
    dens = draw(st.lists(st.floats(0.0, 500.0), min_size=k, max_size=k))
    dens[-1] = max(dens[-1], 1.0)
    x = np.concatenate(([0.0], np.cumsum(steps)))
    c = np.concatenate(([0.0], np.cumsum(np.array(dens) * np.array(steps))))
    return SideCurve(x, c, draw(st.sampled_from([-1, 1])))


@settings(max_examples=200, deadline=None)
@given(sides(), st.floats(1e3, 5e6), st.floats(0.0, 0.05))
def test_impact_price_agrees_with_walking_the_book(side, notional, d0):
    m = 30_000.0
    px = impact_price(side, m, notional, d0)
    if math.isnan(px):
        return  # a bid that reaches price 0 before the notional fills
    qty = notional / px
    fill, factor, _ = walk(side, d0, np.array([qty]), np.array([np.inf]), np.inf)
    assert fill[0] == pytest.approx(qty, rel=1e-9)
    assert m * factor[0] == pytest.approx(notional, rel=1e-7)


def test_impact_premium_sign_follows_the_book():
    curve = parametric_curve("sqrt", 5e7, 60_000.0)
    # book centred on the index: impact bid below, ask above -> 0
    assert impact_premium_index(curve, 60_000.0, 25_000.0) == 0.0
    # book 1 % above the index: impact bid above it -> positive; below -> negative
    hi = impact_premium_index(curve, 60_000.0, 25_000.0, reference_price=60_600.0)
    lo = impact_premium_index(curve, 60_000.0, 25_000.0, reference_price=59_400.0)
    bid = impact_price(curve.bid, 60_600.0, 25_000.0)
    assert hi == pytest.approx((bid - 60_000.0) / 60_000.0) and hi > 0 > lo
    # forced sells displaced the bid 2 % (ask untouched at the mid): the impact bid falls, premium stays 0;
    # a displaced ask under the index would pull it negative
    assert impact_premium_index(curve, 60_000.0, 25_000.0, bid_displacement=0.02) == 0.0
    assert impact_premium_index(curve, 61_000.0, 25_000.0, reference_price=60_000.0, ask_displacement=0.001) < 0
    with pytest.raises(ValueError):
        impact_premium_index(DepthCurve(curve.bid, curve.ask, "no reference", None), 1.0, 1.0)


def test_premium_index_vectorized():
    p = premium_index(np.array([101.0, 99.0, 98.0]), np.array([102.0, 101.0, 99.5]), 100.0)
    np.testing.assert_allclose(p, [0.01, 0.0, -0.005])
    with pytest.raises(ValueError):
        premium_index(1.0, 1.0, 0.0)


# --------------------------------------------------------------------------- payments
def test_longs_pay_shorts_when_rate_positive():
    pay = funding_payments(np.array([2.0, -1.0, -1.0]), 50_000.0, 0.0001)
    np.testing.assert_allclose(pay, [-10.0, 5.0, 5.0])
    pay = funding_payments(np.array([2.0, -2.0]), 50_000.0, -0.0001)
    assert pay[0] > 0 > pay[1]
    with pytest.raises(ValueError):
        funding_payments(np.array([1.0]), 0.0, 0.001)
    with pytest.raises(ValueError):
        funding_payments(np.array([np.inf]), 1.0, 0.001)


qty = st.floats(1e-6, 1e4, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(qty, min_size=1, max_size=40), st.floats(1.0, 2e5), st.floats(-0.05, 0.05), st.integers(0, 2**32 - 1))
def test_matched_book_sums_to_exactly_zero_and_is_antisymmetric(sizes, price, rate, seed):
    q = np.array(sizes + [-s for s in sizes])
    random.Random(seed).shuffle(q)
    pay = funding_payments(q, price, rate)
    assert math.fsum(pay) == 0.0
    np.testing.assert_array_equal(funding_payments(-q, price, rate), -pay)


@settings(max_examples=200, deadline=None)
@given(st.lists(qty, min_size=1, max_size=30), st.lists(st.floats(0.01, 1.0), min_size=1, max_size=30),
       st.floats(1.0, 2e5), st.floats(-0.05, 0.05))
def test_balanced_book_payments_sum_to_zero(longs, weights, price, rate):
    total = math.fsum(longs)
    w = np.array(weights) / math.fsum(weights)
    shorts = -total * w
    shorts[-1] = -(total + math.fsum(shorts[:-1]))  # balance exactly (up to the last rounding)
    q = np.concatenate((longs, shorts))
    pay = funding_payments(q, price, rate)
    gross = math.fsum(np.abs(pay))
    residue = math.fsum(q) * price * rate
    assert abs(math.fsum(pay) + residue) <= 1e-12 * max(gross, 1e-300)


def test_unix_epoch_times_settle_on_the_utc_grid():
    # Runs on wall-clock seconds: Binance settles at 00:00, 08:00, 16:00 UTC; 0.1 s steps do not sum exactly.
    start = 1_760_054_400.0 + 1234.5          # 2025-10-10 00:20:34.5 UTC
    first = math.ceil(start / 28_800.0) * 28_800.0
    clock = FundingClock(BINANCE, start_s=start, first_funding_s=first, prior_premium_index=0.0001)
    t, out = start, []
    while t < first + 2 * 28_800.0:
        dt = 0.1 if t < start + 30.0 else 60.0
        t += dt
        clock.observe(t, dt, 0.0001)
        out += clock.settle(t)
    assert [s.time_s for s in out] == [first, first + 28_800.0, first + 57_600.0]
    assert all(s.samples == 5760 for s in out)
    clock.observe(t + 5.0, 5.0, 0.0)  # a step starting right at the last settlement is accepted


def test_observe_right_after_a_settlement_at_the_boundary():
    clock = FundingClock(HL)
    clock.observe(3600.0, 3600.0, 0.001)
    assert len(clock.settle(3600.0)) == 1
    clock.observe(3600.0 + 0.1 * 3, 0.1 * 3, 0.001)
    assert clock.average_premium() == 0.0  # (3600, 3600.3] holds no 5-second sample instant
    clock.observe(3605.0, 3605.0 - 3600.3, 0.002)
    assert clock.average_premium() == 0.002


def test_interest_per_interval_and_symbol_interest_override():
    assert HL.interest_rate_per_interval == pytest.approx(0.0000125, rel=1e-12)
    assert BINANCE.interest_rate_per_interval == pytest.approx(0.0001, rel=1e-12)
    v = load_venue("binance-usdm", {"funding": {"symbols": {"BNBUSDT": {"interest_rate_per_day": 0.0}}}})
    assert v.funding.rule_for("BNBUSDT").interest_rate == 0.0    # BNB pairs: 0 % interest (FAQ)
    assert float(v.funding.rule_for("BNBUSDT").rate_from_premium(0.0002)) == pytest.approx(0.0)
