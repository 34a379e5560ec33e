"""The Numba fast path (engine/kernels.py, engine/fast.py) against the general engine and the Python references.

The kernel must take the general engine's decisions and reproduce its numbers: every per-path output of
``run_paths_fast`` is compared with ``runner.run_path`` on the same book and price path (both venue
presets, every mark method, round caps, GBM-like paths with jumps and sharp shocks, ties in the depth
walk, one-sided books), auto-deleveraging included (small funds and net-notional caps so that ADL
triggers often; every ADL policy, ranking and fill price the kernel runs; account ids out of book
order so ranking ties are broken by account). The kernel's own money and open-interest checks must be
0 up to round-off on every path.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delever.book import PositionBook
from delever.engine import kernel_adl as KA
from delever.engine import kernels as K
from delever.engine.core import _top_ranked, adl_allocation
from delever.engine.fast import (
    BOOL_OUTPUTS,
    FLOAT_OUTPUTS,
    INT_OUTPUTS,
    MITIGATION_FIELDS,
    VENUE_FIELDS,
    build_fast_book,
    fast_kernel_support,
    run_paths_fast,
    unsupported_fields,
    walk_fast,
)
from delever.market.depth import SideCurve, parametric_curve, walk, walk_reference
from delever.paths import PricePath
from delever.runner import Prepared, make_engine, run_path
from delever.scenario import Mitigations, Scenario
from delever.venues import load_venue
from delever.venues.formulas import adl_score, liquidation_price_binance
from engine_helpers import START, make_book

VENUES = ["binance-usdm", "hyperliquid"]
INSTRUMENT = {"binance-usdm": "BTCUSDT", "hyperliquid": "BTC"}
MARKS = ["median_basis_ma", "median_basis_ema", "last", "index"]


# --------------------------------------------------------------------------- builders
def make_prep(book: PositionBook, venue: str = "binance-usdm", depth_usd: float = 2e6, fund: float = 1e9,
              permanent_fraction: float = 0.3, half_life_s: float = 30.0, max_walk_pct: float = 50.0,
              max_rounds: int = 50, overrides: dict | None = None, depth=None) -> Prepared:
    """A ``Prepared`` around an in-memory book (no files), for both ``run_path`` and the fast kernel."""
    overrides = overrides or {}
    sc = Scenario.model_validate({
        "venue": {"preset": venue, "overrides": overrides},
        "market": {"instrument": book.instrument, "start_price": START,
                   "impact": {"permanent_fraction": permanent_fraction, "resilience_half_life_s": half_life_s,
                              "max_walk_pct": max_walk_pct}},
        "engine": {"max_rounds": max_rounds},
        "insurance_fund": {"initial_usd": fund},
    })
    rules = load_venue(venue, overrides)
    depth = depth if depth is not None else parametric_curve("sqrt", depth_usd, START)
    path = PricePath(np.array([0.0, 1.0]), np.array([START, START]), "stress", "test", None)
    return Prepared(sc, rules, rules.tiers_for(book.instrument), path, depth, book, "test", "test")


def random_paths(rng: np.random.Generator, n_paths: int, t_s: np.ndarray, sigma: float, jump_std: float = 0.0,
                 shocks: bool = True) -> np.ndarray:
    """GBM-like paths from START (``sigma`` per sqrt(second), relative), optional jumps and step shocks."""
    dt = np.diff(t_s)
    z = rng.normal(size=(n_paths, dt.size)) * sigma * np.sqrt(dt)
    if jump_std > 0:
        z += (rng.random(z.shape) < 0.05) * rng.normal(0.0, jump_std, z.shape)
    logp = np.concatenate([np.zeros((n_paths, 1)), np.cumsum(z, axis=1)], axis=1)
    prices = START * np.exp(logp)
    if shocks and t_s.size > 1:
        for p in range(0, n_paths, 3):  # a sharp gap on every third path
            prices[p, rng.integers(1, t_s.size):] *= np.exp(rng.normal(0.0, 0.12))
    return prices


def shuffle_accounts(rng: np.random.Generator, book: PositionBook) -> PositionBook:
    """The book with its account ids permuted (ADL ranking ties then differ from book order)."""
    return PositionBook(book.instrument, rng.permutation(book.account) * 7 + 3, book.side, book.qty,
                        book.entry_price, book.collateral_usd, book.cross)


def duplicate_rows(book: PositionBook, k: int) -> PositionBook:
    """The book plus copies of its first ``k`` positions (identical limits: ties in the depth walk)."""
    def cat(a):
        return np.concatenate([a, a[:k]])
    return PositionBook(book.instrument, np.arange(len(book) + k), cat(book.side), cat(book.qty),
                        cat(book.entry_price), cat(book.collateral_usd), cat(book.cross))


CHECKS = ("ledger_imbalance_usd", "open_interest_mismatch_qty")


def assert_agrees(prep: Prepared, t_s: np.ndarray, prices: np.ndarray) -> dict[str, int]:
    """Every output of the fast kernel equals ``run_path``; its money and open-interest checks are ~0."""
    out = run_paths_fast(build_fast_book(prep), t_s, prices, parallel=False)
    seen = {"paths": 0, "adl": 0, "liquidations": 0, "cap_hits": 0, "bad_debt": 0, "shortfall": 0,
            "trader_loss": 0}
    book = prep.book
    money_scale = float(book.collateral_usd.sum()) + prep.scenario.insurance_fund.initial_usd
    qty_scale = float(book.qty.sum())
    for p in range(prices.shape[0]):
        ref = run_path(prep, PricePath(t_s, prices[p].copy(), "stress", "test", None))
        seen["paths"] += 1
        for name in FLOAT_OUTPUTS:
            if name in CHECKS:
                continue
            want = np.nan if ref[name] is None else float(ref[name])
            got = float(out[name][p])
            if np.isnan(want):
                assert np.isnan(got), f"path {p} {name}: {got} vs None"
                continue
            atol = 1e-6 if name.endswith("_usd") else 1e-9
            assert abs(got - want) <= 1e-9 * abs(want) + atol, f"path {p} {name}: {got!r} vs {want!r}"
        for name in INT_OUTPUTS:
            assert int(out[name][p]) == int(ref[name]), f"path {p} {name}: {out[name][p]} vs {ref[name]}"
        assert bool(out["insurance_depleted"][p]) == bool(ref["insurance_depleted"]), f"path {p} insurance_depleted"
        # the checks are the kernel's own sums (0 up to round-off), not copies of the engine's
        scale = money_scale + float(ref["liquidated_notional_usd"]) + float(ref["adl_notional_usd"])
        assert abs(out["ledger_imbalance_usd"][p]) <= 1e-9 * scale, f"path {p}: {out['ledger_imbalance_usd'][p]}"
        assert abs(out["open_interest_mismatch_qty"][p]) <= 1e-9 * qty_scale + 1e-9, f"path {p} open interest"
        seen["adl"] += int(ref["adl_count"] > 0)
        seen["liquidations"] += int(ref["liquidation_count"] > 0)
        seen["cap_hits"] += int(ref["round_cap_hits"] > 0)
        seen["bad_debt"] += int(ref["bad_debt_usd"] > 0)
        seen["shortfall"] += int(ref["adl_shortfall_qty"] > 0)
        seen["trader_loss"] += int(ref["trader_liquidation_loss_usd"] > 0)
    return seen


# --------------------------------------------------------------------------- the walk and small kernels
@st.composite
def walks(draw):
    k = draw(st.integers(2, 7))
    dx = draw(st.lists(st.floats(1e-4, 0.05), min_size=k - 1, max_size=k - 1))
    dq = draw(st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 50.0)), min_size=k - 1, max_size=k - 1))
    side = SideCurve(np.concatenate(([0.0], np.cumsum(dx))), np.concatenate(([0.0], np.cumsum(dq))),
                     draw(st.sampled_from([-1, 1])))
    n = draw(st.integers(0, 10))
    qty = np.array(draw(st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 30.0)), min_size=n, max_size=n)))
    lim_el = st.one_of(st.just(np.inf), st.floats(-0.01, side.x_max * 1.5), st.sampled_from(list(side.x)))
    limits = np.sort(np.array(draw(st.lists(lim_el, min_size=n, max_size=n)), dtype=np.float64))
    d0 = draw(st.one_of(st.just(0.0), st.floats(0.0, side.x_max * 1.2), st.sampled_from(list(side.x))))
    max_x = draw(st.one_of(st.floats(0.0, side.x_max * 2.0), st.just(0.5)))
    return side, d0, qty, limits, max_x


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(walks())
def test_numba_walk_is_walk_bit_for_bit_and_matches_reference(case):
    side, d0, qty, limits, max_x = case
    fill, factor, d1 = walk_fast(side, d0, qty, limits, max_x)
    w_fill, w_factor, w_d1 = walk(side, d0, qty, limits, max_x)
    np.testing.assert_array_equal(fill, w_fill)
    np.testing.assert_array_equal(factor, w_factor)
    assert d1 == w_d1
    r_fill, r_factor, r_d1 = walk_reference(side, d0, qty, limits, max_x)
    tol = 1e-12 * (float(side.cum_qty[-1]) + float(qty.sum()) + 1.0)
    np.testing.assert_allclose(fill, r_fill, rtol=1e-9, atol=tol)
    np.testing.assert_allclose(factor, r_factor, rtol=1e-9, atol=tol)
    np.testing.assert_allclose(side.qty_within(d1), side.qty_within(r_d1), rtol=1e-9, atol=tol)


def test_numba_walk_on_parametric_curve_and_bad_arguments():
    side = parametric_curve("sqrt", 2e8, START).bid
    qty = np.array([0.5, 3.0, 40.0, 2000.0, 1e5])
    limits = np.array([0.001, 0.004, 0.02, 0.3, np.inf])
    for d0 in (0.0, 0.0031, 0.4, 0.7):  # 0.7: beyond the last knot, extrapolated depth
        got = walk_fast(side, d0, qty, limits, 0.6)
        want = walk(side, d0, qty, limits, 0.6)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="non-decreasing"):
        walk_fast(side, 0.0, np.array([1.0, 1.0]), np.array([0.02, 0.01]), 0.5)
    with pytest.raises(ValueError):
        walk_fast(side, -0.1, np.array([1.0]), np.array([0.01]), 0.5)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 700), st.integers(0, 5), st.integers(0, 2**32 - 1))
def test_pairwise_sum_is_numpy_sum(n, lo, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n + lo) * 10.0 ** rng.uniform(-6, 9, n + lo)
    assert K.pairwise_sum(a, lo, n) == float(np.sum(a[lo:lo + n]))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([0.0, -1.5, 2.0, np.inf, -np.inf, 3.25, 1e-300]), max_size=70))
def test_argsort_stable_is_numpy_stable_argsort(values):
    key = np.array(values, dtype=np.float64)
    np.testing.assert_array_equal(K.argsort_stable(key), np.argsort(key, kind="stable"))


@pytest.mark.parametrize("venue", VENUES)
def test_scalar_liquidation_price_and_margin_match_the_venue_formulas(venue):
    rng = np.random.default_rng(3)
    book = make_book(rng, 400, INSTRUMENT[venue], max_lev=125.0 if venue == "binance-usdm" else 40.0)
    tiers = load_venue(venue).tiers_for(book.instrument)
    qty = book.qty * np.exp(rng.normal(0, 3, len(book)))  # spans every bracket
    coll = book.collateral_usd * rng.choice([0.2, 1.0, 3.0, 1e3], len(book))  # 1e3: longs never liquidated
    want = liquidation_price_binance(book.side, qty, book.entry_price, coll, tiers)
    want = np.where(np.isnan(want), np.where(book.side > 0, -np.inf, np.inf), want)
    packed = np.stack([tiers.floor_usd, tiers.mmr, tiers.maint_amount_usd])
    got = np.array([K.liquidation_price(float(s), q, e, c, packed)
                    for s, q, e, c in zip(book.side, qty, book.entry_price, coll, strict=True)])
    np.testing.assert_array_equal(got, want)
    assert np.isinf(got).any() and np.isfinite(got).any()
    notional = qty * START
    mm = np.array([K.maintenance_margin(x, packed) for x in notional])
    np.testing.assert_array_equal(mm, tiers.maintenance_margin(notional))


# --------------------------------------------------------------------------- agreement with the general engine
case_params = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "n": st.integers(2, 250),
    "mark": st.sampled_from([None, *MARKS]),
    "window": st.sampled_from([5.0, 30.0, 150.0]),
    "fund": st.sampled_from([0.0, 1e4, 3e5, 1e6, 1e12]),
    "net_ratio": st.sampled_from([None, 0.0, 0.2, 1.0, 5.0]),   # None: the preset's
    "loss_fraction": st.sampled_from([None, 0.3]),
    "adl_price": st.sampled_from([None, "bankruptcy", "previous_mark", "mark"]),
    "below_fund": st.sampled_from([0.0, 0.5]),
    "ranking": st.sampled_from([None, "pnl_pct_x_effective_leverage", "pnl_pct_x_margin_ratio", "hyperliquid"]),
    "maker_fee": st.sampled_from([0.0, 2e-4]),
    "shuffle": st.booleans(),
    "depth": st.floats(2e5, 3e7),
    "phi": st.floats(0.0, 1.0),
    "half_life": st.floats(1.0, 120.0),
    "max_rounds": st.sampled_from([1, 2, 50]),
    "steps": st.integers(1, 60),
    "dt": st.sampled_from([1.0, 5.0, 60.0, -1.0]),  # -1: irregular grid
    "sigma": st.floats(1e-4, 3e-3),
    "jump": st.sampled_from([0.0, 0.03]),
    "dups": st.booleans(),
    "adl_policy": st.sampled_from(["queue", "pro_rata", "capped_pro_rata", "risk_aware_pro_rata"]),
})


def _case(venue: str, c: dict) -> tuple[Prepared, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(c["seed"])
    book = make_book(rng, c["n"], INSTRUMENT[venue], max_lev=100.0 if venue == "binance-usdm" else 40.0)
    if c["dups"]:
        book = duplicate_rows(book, max(1, c["n"] // 3))
    if c["shuffle"]:
        book = shuffle_accounts(rng, book)
    adl = {"policy": c["adl_policy"], "bankruptcy_below_fund_fraction": c["below_fund"],
           "adl_maker_fee_rate": c["maker_fee"]}
    if c["adl_price"]:
        adl["price"] = c["adl_price"]
    if c["ranking"]:
        adl["ranking"] = c["ranking"]
    backstop = {}
    if c["net_ratio"] is not None:
        backstop["max_net_notional_ratio"] = c["net_ratio"]
    if c["loss_fraction"] is not None:
        backstop["adl_loss_fraction"] = c["loss_fraction"]
    overrides: dict = {"adl": adl, "backstop": backstop}
    if c["mark"]:
        overrides["mark"] = {"method": c["mark"], "basis_window_s": c["window"]}
    prep = make_prep(book, venue, depth_usd=c["depth"], fund=c["fund"], permanent_fraction=c["phi"],
                     half_life_s=c["half_life"], max_rounds=c["max_rounds"], overrides=overrides)
    if c["dt"] > 0:
        t_s = np.arange(c["steps"] + 1) * c["dt"]
    else:
        t_s = np.concatenate(([0.0], np.cumsum(rng.uniform(0.25, 10.0, c["steps"]))))
    return prep, t_s, random_paths(rng, 6, t_s, c["sigma"], c["jump"])


@pytest.mark.parametrize("venue", VENUES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c=case_params)
def test_every_output_matches_the_general_engine(venue, c):
    prep, t_s, prices = _case(venue, c)
    assert_agrees(prep, t_s, prices)


@pytest.mark.parametrize("venue", VENUES)
@pytest.mark.parametrize("policy", ["queue", "pro_rata", "capped_pro_rata", "risk_aware_pro_rata"])
def test_agreement_covers_adl_caps_bad_debt_and_shortfalls(venue, policy):
    """Fixed cases that must exercise every branch the comparison is meant to guard, ADL included."""
    total: dict[str, int] = {}
    for seed, fund, max_rounds, one_sided in ((1, 1e12, 2, False), (2, 1e4, 50, False), (3, 0.0, 50, True),
                                               (4, 3e5, 1, False)):
        rng = np.random.default_rng(seed)
        book = shuffle_accounts(rng, make_book(rng, 150, INSTRUMENT[venue],
                                               max_lev=100.0 if venue == "binance-usdm" else 40.0))
        if one_sided:  # longs only: a long inventory finds no ADL counterparty (a shortfall)
            keep = book.side > 0
            book = PositionBook(book.instrument, book.account[keep], book.side[keep], book.qty[keep],
                                book.entry_price[keep], book.collateral_usd[keep], book.cross[keep])
        prep = make_prep(book, venue, depth_usd=1e6, fund=fund, max_rounds=max_rounds,
                         overrides={"adl": {"policy": policy}})
        t_s = np.arange(41) * 5.0
        prices = random_paths(rng, 8, t_s, 1.5e-3, 0.03)
        prices[0] = START * np.linspace(1.0, 0.85, t_s.size)  # a crash
        prices[1] = START * np.linspace(1.0, 1.15, t_s.size)  # a squeeze
        for k, v in assert_agrees(prep, t_s, prices).items():
            total[k] = total.get(k, 0) + v
    assert total["adl"] > 0 and total["adl"] < total["paths"]
    assert total["liquidations"] > 0 and total["cap_hits"] > 0
    assert total["bad_debt"] > 0 and total["shortfall"] > 0 and total["trader_loss"] > 0


def test_binance_step_down_and_hyperliquid_partials_with_cooldown():
    """One large position each: Binance reduces it bracket by bracket, Hyperliquid sends 20 % chunks."""
    t_s = np.arange(31) * 2.0
    ramp = START * np.linspace(1.0, 0.93, t_s.size)[None, :]
    for venue, qty, lev in (("binance-usdm", 30.0, 20.0), ("hyperliquid", 8.0, 40.0)):
        book = PositionBook(INSTRUMENT[venue], np.array([5]), np.array([1], np.int8), np.array([qty]),
                            np.array([START]), np.array([qty * START / lev + 1000.0]), np.array([True]))
        prep = make_prep(book, venue, depth_usd=1e9, fund=1e9)
        seen = assert_agrees(prep, t_s, ramp)
        out = run_paths_fast(build_fast_book(prep), t_s, ramp, parallel=False)
        assert seen["liquidations"] == 1
        assert out["liquidation_count"][0] >= 2  # more than one liquidation event for a single position


def test_default_like_scenario_agrees_bit_for_bit():
    """A synthesized book as the default scenario's, smaller; GBM paths of the stress generator."""
    from pathlib import Path

    from delever.pathgen import generate_paths, path_seeds, prepare_generator
    from delever.runner import prepare
    from delever.scenario import load_scenario

    sc = load_scenario(None, ["book.synthesize.positions=3000", "book.synthesize.open_interest_usd=5e8",
                              "stress.horizon_s=1800"])
    prep = prepare(sc, Path("."))
    n_steps = int(round(sc.stress.horizon_s / sc.stress.dt_s))
    gen = prepare_generator(sc.stress.generator, Path("."))
    prices = generate_paths(gen, float(prep.path.price[0]), n_steps, sc.stress.dt_s, path_seeds(sc.seed, 6))
    t_s = np.arange(n_steps + 1) * sc.stress.dt_s
    out = run_paths_fast(build_fast_book(prep), t_s, prices, parallel=False)
    for p in range(prices.shape[0]):
        ref = run_path(prep, PricePath(t_s, prices[p].copy(), "stress", "test", None))
        for name in FLOAT_OUTPUTS:
            if name in CHECKS:   # the kernel's own sums, ~0 (assert_agrees bounds them)
                continue
            want = np.nan if ref[name] is None else float(ref[name])
            np.testing.assert_equal(float(out[name][p]), want, err_msg=f"path {p} {name}")
        for name in (*INT_OUTPUTS, "insurance_depleted"):
            assert out[name][p] == ref[name], f"path {p} {name}"
    assert (out["liquidation_count"] > 0).any()


# --------------------------------------------------------------------------- API
def test_threads_agree_and_adl_paths_run_in_the_kernel():
    rng = np.random.default_rng(11)
    book = make_book(rng, 200, "BTCUSDT", max_lev=100.0)
    prep = make_prep(book, "binance-usdm", depth_usd=1e6, fund=3e6)  # most paths deleverage, some do not
    t_s = np.arange(31) * 5.0
    prices = random_paths(rng, 40, t_s, 1.5e-3, 0.03)
    fb = build_fast_book(prep)
    serial = run_paths_fast(fb, t_s, prices, parallel=False)
    threaded = run_paths_fast(pickle.loads(pickle.dumps(fb)), t_s, prices, parallel=True)
    for name in (*FLOAT_OUTPUTS, *INT_OUTPUTS, *BOOL_OUTPUTS):
        np.testing.assert_array_equal(serial[name], threaded[name])
    adl = np.flatnonzero(serial["adl_count"] > 0)
    assert 0 < adl.size < prices.shape[0]
    assert (serial["adl_notional_usd"][adl] > 0).all()
    for p in adl[:3]:
        ref = run_path(prep, PricePath(t_s, prices[p].copy(), "stress", "adl", None))
        assert serial["adl_count"][p] == ref["adl_count"]
        assert serial["liquidated_notional_usd"][p] == ref["liquidated_notional_usd"]
        assert serial["adl_notional_usd"][p] == pytest.approx(ref["adl_notional_usd"], rel=1e-12)


def test_adl_reaches_untouched_and_pooled_positions_that_are_liquidated_later():
    """A deleveraged position keeps its collateral: its liquidation price moves, and the cursor and heaps follow.

    Shorts far from liquidation are deleveraged on the way down (untouched: beyond the cursor), then a
    squeeze liquidates what is left of them; the kernel must see their new liquidation prices.
    """
    rng = np.random.default_rng(5)
    book = shuffle_accounts(rng, make_book(rng, 300, "BTCUSDT", max_lev=100.0))
    t_s = np.arange(81) * 5.0
    down = np.linspace(1.0, 0.86, 41)
    prices = START * np.concatenate([down, np.linspace(0.86, 1.2, 41)[1:]])[None, :]
    prices = np.vstack([prices, prices[:, ::-1] * prices[0, 0] / prices[0, -1]])
    for policy in ("queue", "pro_rata"):
        prep = make_prep(book, "binance-usdm", depth_usd=5e5, fund=2e4, overrides={"adl": {"policy": policy}})
        seen = assert_agrees(prep, t_s, prices)
        assert seen["adl"] == 2 and seen["liquidations"] == 2
        # the case exercises what it is meant to: deleveraged positions liquidated later by the squeeze
        eng = make_engine(prep, PricePath(t_s, prices[0].copy(), "stress", "test", None))
        eng.run()
        adl, liq = eng.adl_rows.to_table(), eng.liq_rows.to_table()
        first_adl: dict[int, int] = {}
        for a, step in zip(adl.column("account").to_pylist(), adl.column("step").to_pylist(), strict=True):
            first_adl.setdefault(a, step)
        assert any(a in first_adl and step > first_adl[a]
                   for a, step in zip(liq.column("account").to_pylist(), liq.column("step").to_pylist(), strict=True))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 700), st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2]), st.floats(0.0, 2.0))
def test_adl_queue_and_allocation_equal_the_engine_functions(n, seed, ties, need_frac):
    """The kernel's queue head, queue quantities and pro-rata splits equal ``core``'s, bit for bit."""
    rng = np.random.default_rng(seed)
    score = rng.normal(size=n)
    if ties == 1:
        score = np.round(score, 1)        # many ties: broken by account
    elif ties == 2:
        score = np.where(rng.random(n) < 0.5, 0.0, score)   # zero scores of losing positions
    account = rng.permutation(n).astype(np.float64)
    pos = np.arange(n, dtype=np.float64)
    qty = rng.lognormal(0.0, 1.5, n)
    need = need_frac * float(qty.sum())
    # the kernel's entries include ineligible ones (score -inf) among the engine's candidates
    full = n + n // 3
    at = np.sort(rng.choice(full, n, replace=False))
    score_f, acct_f, pos_f, qty_f = (np.full(full, v) for v in (-np.inf, -1.0, -1.0, 1.0))
    score_f[at], acct_f[at], pos_f[at], qty_f[at] = score, account, pos, qty
    top = _top_ranked(score, account.astype(np.int64), qty, need)
    np.testing.assert_array_equal(KA.top_ranked(score_f, acct_f, pos_f, qty_f, full, n, need), at[top])
    q = qty[top]
    np.testing.assert_array_equal(KA.queue_take(q, need), np.clip(need - (np.cumsum(q) - q), 0.0, q))
    order = np.arange(n)
    KA.rank_order(order, score, account, pos)
    np.testing.assert_array_equal(order, np.lexsort((account, -score)))
    equity = np.maximum(rng.lognormal(8.0, 1.0, n), 1e-12)
    for name, code in (("pro_rata", KA.POLICY_PRO_RATA), ("capped_pro_rata", KA.POLICY_CAPPED_PRO_RATA),
                       ("risk_aware_pro_rata", KA.POLICY_RISK_AWARE_PRO_RATA)):
        got = KA.pro_rata_take(code, need, qty, equity, START, 0.3)
        want = adl_allocation(name, need, qty, qty * START, equity, 0.3)
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_scalar_adl_score_is_the_venue_formula():
    rng = np.random.default_rng(8)
    book = make_book(rng, 300)
    tiers = load_venue("binance-usdm").tiers_for(book.instrument)
    coll = book.collateral_usd * rng.choice([0.01, 1.0], len(book))   # some with equity <= 0 at mark
    skipped = 0
    for mark in (START * 0.9, START * 1.07):
        mm = tiers.maintenance_margin(book.qty * mark)
        for code, ranking in enumerate(("pnl_pct_x_effective_leverage", "pnl_pct_x_margin_ratio", "hyperliquid")):
            want = adl_score(ranking, book.side, book.qty, book.entry_price, coll, mark, mm)
            got = np.array([KA.adl_score(code, float(s), q, e, c, mark, m) for s, q, e, c, m in
                            zip(book.side, book.qty, book.entry_price, coll, mm, strict=True)])
            np.testing.assert_array_equal(got, want, err_msg=ranking)
            assert np.isneginf(got).any() and np.isfinite(got).any()
        # the vectorized loop over one side: the score, -inf where _adl skips the position
        for side in (1, -1):
            i = np.flatnonzero(book.side == side)
            q, e, c = book.qty[i], book.entry_price[i], coll[i]
            price = mark * 0.97
            want = adl_score("pnl_pct_x_effective_leverage", book.side[i], q, e, c, mark, mm[i])
            want = np.where((c + side * q * (price - e) > 0) & np.isfinite(want), want, -np.inf)
            got = np.full(i.size + 1, 7.0)
            KA.scores_pnl_x_leverage(q, e, c, 1, i.size - 1, float(side), mark, price, got, 2)
            np.testing.assert_array_equal(got[2:], want[1:])
            assert (got[:2] == 7.0).all()
            skipped += int(np.isneginf(got).sum())
    assert skipped > 0


# --------------------------------------------------------------------------- the allow-list
def _field_paths(model: type, prefix: str, table: dict) -> list[str]:
    """Dotted paths of every field of a pydantic model class, down to the fields ``table`` lists whole."""
    import typing

    from pydantic import BaseModel

    def models_in(annotation) -> list[type]:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return [annotation]
        return [m for arg in typing.get_args(annotation) for m in models_in(arg)]

    out = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        subs = models_in(info.annotation)
        if path in table or not subs:
            out.append(path)
        else:
            for sub in subs:
                out.extend(_field_paths(sub, f"{path}.", table))
    return out


def test_every_rule_and_mitigation_field_is_supported_or_refused_by_the_kernel():
    """A new VenueRules or Mitigations field must get an entry (passed to the kernel, or refused with a reason)."""
    from delever.venues.rules import VenueRules

    venue_paths = _field_paths(VenueRules, "", VENUE_FIELDS)
    mitigation_paths = _field_paths(Mitigations, "", MITIGATION_FIELDS)
    missing = [p for p in venue_paths if p not in VENUE_FIELDS]
    missing += [f"mitigations.{p}" for p in mitigation_paths if p not in MITIGATION_FIELDS]
    assert not missing, f"fields neither supported nor refused by the fast kernel: {missing}"
    assert not set(VENUE_FIELDS) - set(venue_paths), "entries for fields that do not exist"
    assert not set(MITIGATION_FIELDS) - set(mitigation_paths)
    assert len(venue_paths) >= 39 and "adl.policy" in venue_paths and "liquidation.partial_fraction" in venue_paths


def test_support_refuses_rules_it_does_not_run_with_a_reason():
    book = make_book(np.random.default_rng(0), 20)
    for overrides, word in (({"backstop": {"adl_drawdown_fraction": 0.3}}, "drawdown"),
                            ({"liquidation": {"close_at_bankruptcy": True}}, "bankruptcy price"),
                            ({"liquidation": {"step_down_order": "fill_or_kill"}}, "fill_or_kill"),
                            ({"mark": {"method": "fair_price"}}, "fair_price")):
        ok, why = fast_kernel_support(make_prep(book, overrides=overrides))
        assert not ok and word in why, (overrides, why)
    # a step-down variant is irrelevant without step-down orders
    ok, _ = fast_kernel_support(make_prep(book, overrides={"liquidation": {"step_down_tiers": False,
                                                                           "step_down_order": "fill_or_kill"}}))
    assert ok
    # a field the allow-list does not know is refused, not ignored
    venue = load_venue("binance-usdm")
    table = {k: v for k, v in VENUE_FIELDS.items() if k != "adl.policy"}
    assert unsupported_fields(venue, table, venue, "venue rule ") == ["venue rule adl.policy is not known to the "
                                                                       "fast kernel"]
    assert unsupported_fields(venue, VENUE_FIELDS, venue) == []


def test_support_and_input_checks():
    book = make_book(np.random.default_rng(0), 20)
    prep = make_prep(book)
    assert fast_kernel_support(prep) == (True, "")
    ok, why = fast_kernel_support(prep, mode="replay")
    assert not ok and "replay" in why
    fb = build_fast_book(prep)
    # account ids beyond float precision are ranked: the key orders them as the ids
    big = PositionBook(book.instrument, 2**60 + np.random.default_rng(1).permutation(len(book)) * 3, book.side,
                       book.qty, book.entry_price, book.collateral_usd, book.cross)
    fb_big = build_fast_book(make_prep(big))
    for arr in (fb_big.longs, fb_big.shorts):
        rows = arr[K.R_POS].astype(int)
        np.testing.assert_array_equal(np.argsort(arr[K.R_ACCT]), np.argsort(big.account[rows]))
    assert fb.longs.shape[0] == K.N_ROWS and fb.longs.shape[1] + fb.shorts.shape[1] == len(book)
    assert (np.diff(fb.longs[K.R_LP]) <= 0).all() and (np.diff(fb.shorts[K.R_LP]) >= 0).all()
    t_s = np.arange(3.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        run_paths_fast(fb, np.array([0.0, 1.0, 1.0]), np.full((1, 3), START))
    with pytest.raises(ValueError, match="prices"):
        run_paths_fast(fb, t_s, np.array([[START, -1.0, START]]))
    with pytest.raises(ValueError):
        run_paths_fast(fb, t_s, np.full((2, 4), START))
    empty = run_paths_fast(fb, t_s, np.zeros((0, 3)))
    assert all(v.shape == (0,) for v in empty.values())
