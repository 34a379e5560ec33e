"""Mitigations: each mechanism's rule on hand-checked numbers, the engine honouring it, and conservation
of money and open interest with any combination switched on."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delever.engine.mitigation_rules import (
    CircuitBreaker,
    DutchAuction,
    DynamicMargin,
    LiquidationThrottle,
    MarkSmoothing,
)
from delever.engine.mitigations import (
    AuctionBook,
    NotionalThrottle,
    PriceBreaker,
    SmoothedMark,
    VolatilityMargin,
)
from delever.errors import DeleverInputError
from delever.scenario import load_scenario
from delever.venues import load_venue
from engine_helpers import START, make_book, make_engine

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

mitigation_sets = st.fixed_dictionaries({}, optional={
    "mark_smoothing": st.builds(dict, method=st.sampled_from(["ema", "twap", "book_anchored"]),
                                span_s=st.floats(1.0, 60.0), max_deviation_pct=st.floats(0.1, 5.0)),
    "circuit_breaker": st.builds(dict, kind=st.sampled_from(["halt", "limit_down", "auction"]),
                                 band_pct=st.floats(0.5, 10.0), lookback_s=st.floats(1.0, 30.0),
                                 halt_s=st.floats(1.0, 20.0), levels_pct=st.just([3.0, 6.0, 12.0]),
                                 level_halt_s=st.floats(1.0, 20.0)),
    "dynamic_margin": st.builds(dict, window_s=st.floats(2.0, 60.0), reference_vol_annual=st.floats(0.1, 5.0),
                                max_multiplier=st.floats(1.0, 2.0)),
    "throttle": st.builds(dict, max_notional_usd=st.floats(1e4, 1e7), window_s=st.floats(1.0, 30.0)),
    "dutch_auction": st.builds(dict, buf=st.floats(0.0, 0.05), decay=st.sampled_from(["linear", "exponential",
                                                                                       "stairstep"]),
                               tau_s=st.floats(5.0, 120.0), cut=st.floats(0.5, 0.999), step_s=st.floats(1.0, 10.0),
                               tail_s=st.floats(5.0, 60.0)),
})


@pytest.mark.parametrize("venue", ["binance-usdm", "hyperliquid", "bitmex", "bybit", "okx"])
@SETTINGS
@given(params=st.tuples(st.integers(0, 2**32 - 1), st.integers(2, 60)), move=st.floats(-40.0, 40.0),
       depth=st.floats(2e5, 5e7), fund=st.floats(0.0, 1e7), mit=mitigation_sets)
def test_money_and_open_interest_are_conserved_under_any_mitigations(venue, params, move, depth, fund, mit):
    seed, n = params
    book = make_book(np.random.default_rng(seed), n)
    eng = make_engine(book, venue, move_pct=move, depth_usd=depth, insurance_fund_usd=fund, mitigations=mit)
    eng.run()
    checks = eng.conservation()
    scale = 1.0 + eng.totals.liquidated_long_usd + eng.totals.liquidated_short_usd + eng.totals.adl_notional_usd
    assert abs(checks["ledger_imbalance_usd"]) <= 1e-9 * scale
    assert checks["ledger_reconciliation_usd"] <= 1e-9 * scale
    assert abs(checks["open_interest_mismatch_qty"]) <= 1e-9 * (1.0 + book.qty.sum())
    assert (eng.coll >= -1e-9 * scale).all() and (eng.free >= -1e-9 * scale).all() and (eng.qty >= 0).all()


# ----------------------------------------------------------------------------- mark smoothing
def test_ema_mark_moves_by_one_minus_exp_of_dt_over_span():
    m = SmoothedMark(MarkSmoothing(method="ema", span_s=10.0))
    assert m.value(100.0, 100.0, 100.0, 1.0) == 100.0          # no history: the first mark
    m.commit(100.0, 100.0, 100.0, 1.0)
    assert m.value(90.0, 90.0, 90.0, 10.0) == pytest.approx(100.0 - 10.0 * (1 - math.exp(-1.0)))


def test_twap_mark_weights_time_and_fills_the_window_with_the_first_mark():
    m = SmoothedMark(MarkSmoothing(method="twap", span_s=10.0))
    m.commit(100.0, 100.0, 100.0, 4.0)
    # window: 4 s at 100 (committed) + 4 s at 80 (provisional) + 2 s before the run at the first mark 100
    assert m.value(80.0, 80.0, 80.0, 4.0) == pytest.approx((4 * 100.0 + 4 * 80.0 + 2 * 100.0) / 10.0)
    m.commit(80.0, 80.0, 80.0, 4.0)
    m.commit(60.0, 60.0, 60.0, 4.0)   # the first sample now lies partly outside the window
    assert m.value(60.0, 60.0, 60.0, 4.0) == pytest.approx((4 * 60.0 + 4 * 60.0 + 2 * 80.0) / 10.0)


def test_book_anchored_mark_stays_within_the_band_around_the_index():
    m = SmoothedMark(MarkSmoothing(method="book_anchored", max_deviation_pct=1.0))
    assert m.value(0.0, 100.0, 90.0, 1.0) == pytest.approx(99.0)
    assert m.value(0.0, 100.0, 100.5, 1.0) == pytest.approx(100.5)


# ----------------------------------------------------------------------------- circuit breakers
def test_halt_triggers_on_a_band_move_lasts_halt_s_and_restarts_the_band():
    b = PriceBreaker(CircuitBreaker(kind="halt", band_pct=5.0, lookback_s=60.0, halt_s=30.0), 100.0)
    assert not b.update(0.0, 100.0, 10.0).halted
    assert not b.update(10.0, 96.0, 10.0).halted             # -4 %: inside the band
    assert b.update(20.0, 94.0, 10.0).halted                 # -6 % vs 60 s ago
    assert b.update(40.0, 80.0, 10.0).halted
    assert not b.update(50.0, 80.0, 10.0).halted             # reopens; the band restarts at 80
    assert not b.update(60.0, 77.0, 10.0).halted             # -3.75 % vs 80
    assert b.update(70.0, 75.0, 10.0).halted
    assert b.halts == 2 and b.halted_s == 30.0   # three halted steps of 10 s were seen


def test_auction_extends_while_the_price_stays_outside_the_trigger_band():
    b = PriceBreaker(CircuitBreaker(kind="auction", band_pct=5.0, lookback_s=60.0, halt_s=20.0, max_extensions=1),
                     100.0)
    b.update(0.0, 100.0, 10.0)
    assert b.update(10.0, 90.0, 10.0).halted                 # auction until t=30 (reference 100)
    assert b.update(30.0, 91.0, 10.0).halted                 # still -9 %: extended once, until 50
    assert not b.update(50.0, 91.0, 10.0).halted             # extensions used up: uncross
    assert b.halts == 1


def test_limit_down_pauses_at_the_lower_levels_and_holds_the_last():
    b = PriceBreaker(CircuitBreaker(kind="limit_down", levels_pct=[7.0, 13.0, 20.0], level_halt_s=900.0), 100.0)
    s = b.update(0.0, 95.0, 60.0)
    assert not s.halted and s.floor_price == pytest.approx(80.0) and s.cap_price == pytest.approx(120.0)
    assert b.update(60.0, 92.0, 60.0).halted                 # -8 %: level 1, 15-minute pause
    assert b.update(960.0, 85.0, 60.0).halted                # -15 % after the pause: level 2
    s = b.update(1900.0, 70.0, 60.0)
    assert not s.halted and b.limit_hit and b.halts == 2


def test_engine_makes_no_fill_while_halted_and_none_beyond_the_limit():
    book = make_book(np.random.default_rng(3), 200)
    eng = make_engine(book, move_pct=-15.0, mitigations={"circuit_breaker": {"kind": "halt", "band_pct": 2.0,
                                                                             "lookback_s": 5.0, "halt_s": 10.0}})
    eng.run()
    steps = eng.step_rows.to_table()
    halted = np.asarray(steps["halted"])
    assert halted.any() and (np.asarray(steps["liquidations"])[halted] == 0).all()
    eng2 = make_engine(book, move_pct=-15.0, mitigations={"circuit_breaker": {"kind": "limit_down",
                                                                              "levels_pct": [10.0]}})
    eng2.run()
    liq = eng2.liq_rows.to_table()
    sells = np.asarray(liq["side"]) > 0
    assert liq.num_rows and (np.asarray(liq["price"])[sells] >= 0.9 * START * (1 - 1e-12)).all()
    assert (np.asarray(eng2.step_rows.to_table()["mark_price"]) >= 0.9 * START * (1 - 1e-12)).all()


# ----------------------------------------------------------------------------- dynamic margin
def test_volatility_multiplier_is_realized_over_reference_vol_clipped():
    tiers = load_venue("binance-usdm").tiers_for("BTCUSDT")
    vm = VolatilityMargin(DynamicMargin(window_s=100.0, reference_vol_annual=1.0, max_multiplier=2.0), tiers)
    assert not vm.update(100.0, 10.0) and vm.multiplier == 1.0
    r = 0.002   # one 10 s log return of 0.2 %: annualized vol = r / sqrt(10 s) * sqrt(year)
    vm.update(100.0 * math.exp(r), 10.0)
    expect = min(max(r / math.sqrt(10.0) * math.sqrt(365 * 86400.0) / 1.0, 1.0), 2.0)
    assert vm.multiplier == pytest.approx(expect)
    assert np.allclose(vm.tiers().maintenance_margin(np.array([1e6, 3e7])),
                       expect * tiers.maintenance_margin(np.array([1e6, 3e7])))


def test_dynamic_margin_that_pushes_mmr_above_one_is_refused():
    tiers = load_venue("binance-usdm").tiers_for("BTCUSDT")   # top bracket MMR 50 %
    with pytest.raises(DeleverInputError, match="mitigations.dynamic_margin.max_multiplier"):
        VolatilityMargin(DynamicMargin(max_multiplier=3.0), tiers)


def test_higher_margin_in_a_volatile_path_liquidates_no_less():
    book = make_book(np.random.default_rng(5), 300)
    base = make_engine(book, move_pct=-8.0)
    base.run()
    dyn = make_engine(book, move_pct=-8.0, mitigations={"dynamic_margin": {"window_s": 10.0,
                                                                           "reference_vol_annual": 0.01,
                                                                           "max_multiplier": 2.0}})
    dyn.run()
    assert dyn.mit.margin.max_seen == 2.0
    assert dyn.totals.liquidations >= base.totals.liquidations


# ----------------------------------------------------------------------------- throttle
def test_throttle_window_sums_and_oversized_first_order():
    th = NotionalThrottle(LiquidationThrottle(max_notional_usd=100.0, window_s=10.0))
    assert th.select(0.0, np.array([60.0, 30.0, 20.0])).tolist() == [True, True, False]
    th.record(0.0, 90.0)
    assert th.select(5.0, np.array([20.0])).tolist() == [False]
    assert th.select(10.0, np.array([20.0])).tolist() == [True]      # the 0 s record left the window
    fresh = NotionalThrottle(LiquidationThrottle(max_notional_usd=100.0, window_s=10.0))
    assert fresh.select(0.0, np.array([500.0])).tolist() == [True]   # bigger than the cap: goes alone


def test_engine_liquidates_at_most_the_cap_per_window():
    book = make_book(np.random.default_rng(9), 400)
    cap, window = 2e5, 5.0
    eng = make_engine(book, move_pct=-20.0, mitigations={"throttle": {"max_notional_usd": cap, "window_s": window}})
    eng.run()
    liq = eng.liq_rows.to_table()
    # the cap is on liquidated quantity valued at the mark price of the round
    t, notional = np.asarray(liq["t_s"]), np.asarray(liq["qty"]) * np.asarray(liq["mark_price"])
    assert liq.num_rows > 5
    biggest = notional.max()
    for t0 in np.unique(t):
        inside = (t > t0 - window) & (t <= t0)
        assert notional[inside].sum() <= max(cap, biggest) * (1 + 1e-9) + 1e-6


# ----------------------------------------------------------------------------- Dutch auction
def test_auction_price_curves_follow_abaci():
    ab = AuctionBook(DutchAuction(buf=0.1, decay="stairstep", cut=0.9, step_s=10.0, tail_s=100.0), 2)
    ab.open(np.array([0, 1]), 0.0, 100.0)
    px, past = ab.price(np.array([0, 1]), np.array([1, -1]), 25.0)
    assert px[0] == pytest.approx(110.0 * 0.81) and px[1] == pytest.approx(90.0 * (2 - 0.81))
    assert not past.any()
    lin = AuctionBook(DutchAuction(buf=0.0, decay="linear", tau_s=100.0), 1)
    lin.open(np.array([0]), 0.0, 100.0)
    assert lin.price(np.array([0]), np.array([1]), 25.0)[0][0] == pytest.approx(75.0)


def test_auction_fills_at_the_auction_price_never_through_bankruptcy():
    book = make_book(np.random.default_rng(2), 300)
    eng = make_engine(book, move_pct=-12.0, mitigations={"dutch_auction": {"buf": 0.01, "decay": "exponential",
                                                                           "cut": 0.99, "step_s": 1.0,
                                                                           "tail_s": 20.0}})
    eng.run()
    liq = eng.liq_rows.to_table()
    kind = np.asarray(liq["kind"])
    auction = kind == "auction"
    assert auction.any()
    price, bp = np.asarray(liq["price"])[auction], np.asarray(liq["bankruptcy_price"])[auction]
    side = np.asarray(liq["side"])[auction]
    assert (side * (price - bp) >= -1e-9 * START).all()
    # the price paid is the auction curve's: at most mark at auction start * (1 + buf) for sells
    assert (price[side > 0] <= START * 1.01 * (1 + 1e-12)).all()


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("setting, field", [
    ('mitigations.circuit_breaker={band_pct=0.0}', "mitigations.circuit_breaker.band_pct"),
    ('mitigations.circuit_breaker={band_pct=150.0}', "mitigations.circuit_breaker.band_pct"),
    ('mitigations.throttle={max_notional_usd=0.0}', "mitigations.throttle.max_notional_usd"),
    ('mitigations.circuit_breaker={kind="limit_down",levels_pct=[13.0,7.0]}', "mitigations.circuit_breaker"),
    ('mitigations.mark_smoothing={method="median"}', "mitigations.mark_smoothing.method"),
    ('mitigations.dutch_auction={cut=1.5}', "mitigations.dutch_auction.cut"),
    ('mitigations.surge_pricing={}', "mitigations.surge_pricing"),
])
def test_bad_mitigation_options_name_the_field(setting, field):
    with pytest.raises(DeleverInputError, match=field.replace(".", r"\.")):
        load_scenario(None, [setting])


@pytest.mark.parametrize("venue, mitigation", [("drift", "throttle"), ("dydx-v4", "dutch_auction"),
                                               ("drift", "dynamic_margin")])
def test_mitigations_a_venue_path_cannot_apply_are_refused(venue, mitigation):
    cfg = {"throttle": {"max_notional_usd": 1e6}, "dutch_auction": {}, "dynamic_margin": {"max_multiplier": 1.5}}
    with pytest.raises(DeleverInputError, match=f"mitigations.{mitigation}: not applicable to venue {venue}"):
        make_engine(make_book(np.random.default_rng(0), 10), venue, mitigations={mitigation: cfg[mitigation]})
