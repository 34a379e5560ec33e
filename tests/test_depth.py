"""Depth curves: interpolation, inversion, price-factor integral, walking (vs the reference), parametric."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delever.depth_source import build_depth_curve
from delever.errors import DeleverInputError
from delever.market.depth import (
    DepthCurve,
    SideCurve,
    parametric_curve,
    walk,
    walk_reference,
)
from delever.scenario import BookDepthSource, L2Source, ParametricDepth

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


# --------------------------------------------------------------------------- strategies
@st.composite
def curves(draw, allow_flat: bool = True) -> SideCurve:
    k = draw(st.integers(2, 7))
    dx = draw(st.lists(st.floats(1e-4, 0.05), min_size=k - 1, max_size=k - 1))
    dq_el = st.one_of(st.just(0.0), st.floats(1e-3, 50.0)) if allow_flat else st.floats(1e-3, 50.0)
    dq = draw(st.lists(dq_el, min_size=k - 1, max_size=k - 1))
    x = np.concatenate(([0.0], np.cumsum(dx)))
    c = np.concatenate(([0.0], np.cumsum(dq)))
    return SideCurve(x, c, draw(st.sampled_from([-1, 1])))


@st.composite
def walks(draw, allow_flat: bool = True):
    side = draw(curves(allow_flat))
    n = draw(st.integers(0, 8))
    qty = np.array(draw(st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 30.0)), min_size=n, max_size=n)))
    lim_el = st.one_of(st.just(np.inf), st.floats(-0.01, side.x_max * 1.5), st.sampled_from(list(side.x)))
    limits = np.sort(np.array(draw(st.lists(lim_el, min_size=n, max_size=n)), dtype=np.float64))
    d0 = draw(st.one_of(st.just(0.0), st.floats(0.0, side.x_max * 1.2), st.sampled_from(list(side.x))))
    max_x = draw(st.one_of(st.floats(0.0, side.x_max * 2.0), st.just(0.5)))
    return side, d0, qty, limits, max_x


def _scale(side: SideCurve, qty: np.ndarray) -> float:
    return 1e-12 * (float(side.cum_qty[-1]) + float(qty.sum()) + 1.0)


# --------------------------------------------------------------------------- SideCurve basics
def test_qty_within_interpolates_and_extrapolates_with_last_density():
    side = SideCurve([0.0, 0.01, 0.03], [0.0, 10.0, 20.0], -1)
    np.testing.assert_allclose(side.qty_within([0.0, 0.005, 0.01, 0.02, 0.03]), [0, 5, 10, 15, 20])
    # beyond x_max: last segment density = 10 / 0.02 = 500 per unit x
    np.testing.assert_allclose(side.qty_within([0.05, 0.13]), [30.0, 70.0])
    assert side.x_max == 0.03
    assert side.qty_within(0.02).shape == ()


def test_x_for_qty_flat_segment_returns_segment_end_and_exhausted_book_is_inf():
    side = SideCurve([0.0, 0.01, 0.02, 0.04, 0.05], [0.0, 4.0, 4.0, 8.0, 8.0], 1)
    np.testing.assert_allclose(side.x_for_qty([0.0, 2.0, 4.0, 6.0]), [0.0, 0.005, 0.02, 0.03])
    assert np.isinf(side.x_for_qty(8.0)) and np.isinf(side.x_for_qty(9.0))
    # leading flat stretch (a spread with no depth): q = 0 maps to where depth starts
    gap = SideCurve([0.0, 0.001, 0.01], [0.0, 0.0, 9.0], -1)
    assert float(gap.x_for_qty(0.0)) == 0.001


def test_side_curve_rejects_bad_knots():
    for x, c, s in (([0.0, 0.01], [0.0, 1.0], 0), ([0.001, 0.01], [0.0, 1.0], -1), ([0.0, 0.0], [0.0, 1.0], -1),
                    ([0.0, 0.01], [0.0, -1.0], 1), ([0.0, 0.01, 0.02], [0.0, 2.0, 1.0], 1),
                    ([0.0], [0.0], 1), ([0.0, np.nan], [0.0, 1.0], 1)):
        with pytest.raises(ValueError):
            SideCurve(x, c, s)
    side = SideCurve([0.0, 0.01], [0.0, 1.0], 1)
    with pytest.raises(ValueError):
        side.qty_within(-0.1)
    with pytest.raises(ValueError):
        side.x_for_qty(np.nan)
    assert not side.x.flags.writeable


@settings(max_examples=200, deadline=None)
@given(curves(allow_flat=False), st.lists(st.floats(0.0, 0.3), min_size=1, max_size=20))
def test_x_for_qty_inverts_qty_within(side, xs):
    x = np.array(xs)
    np.testing.assert_allclose(side.x_for_qty(side.qty_within(x)), x, rtol=1e-9, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(curves(), st.lists(st.floats(0.0, 200.0), min_size=1, max_size=20))
def test_qty_within_of_x_for_qty_is_identity_where_finite(side, qs):
    q = np.array(qs)
    x = side.x_for_qty(q)
    fin = np.isfinite(x)
    np.testing.assert_allclose(side.qty_within(x[fin]), q[fin], rtol=1e-9, atol=1e-9)
    assert (~fin <= (q >= side.cum_qty[-1])).all()  # inf only once the (flat-ended) book is exhausted


def test_price_factor_integral_matches_closed_form_on_linear_curve():
    a = 1000.0  # BTC per unit x
    for sign in (-1, 1):
        side = SideCurve([0.0, 0.02, 0.05], [0.0, 0.02 * a, 0.05 * a], sign)
        x0, x1 = 0.013, 0.071  # crosses a knot and the extrapolated region
        expected = a * ((x1 - x0) + sign * (x1**2 - x0**2) / 2.0)
        assert float(side.price_factor_integral(x0, x1)) == pytest.approx(expected, rel=1e-12)
        assert float(side.price_factor_integral(x1, x0)) == pytest.approx(-expected, rel=1e-12)


# --------------------------------------------------------------------------- walk
def test_walk_hand_computed_market_sell():
    side = SideCurve([0.0, 0.01, 0.02], [0.0, 1.0, 2.0], -1)  # 100 BTC per unit x
    fill, factor, d1 = walk(side, 0.0, np.array([0.5]), np.array([np.inf]), 0.5)
    # consumes x in [0, 0.005]: factor = 0.5 - 100 * 0.005**2 / 2
    assert fill[0] == 0.5
    assert factor[0] == pytest.approx(0.49875, rel=1e-12)
    assert d1 == pytest.approx(0.005, rel=1e-12)
    # VWAP = ref * 0.9975: half the final displacement, as expected for uniform depth
    assert factor[0] / fill[0] == pytest.approx(1 - 0.0025)


def test_walk_limits_and_depletion():
    side = SideCurve([0.0, 0.01, 0.02], [0.0, 1.0, 3.0], -1)
    qty = np.array([0.6, 0.6, 5.0, 1.0])
    limits = np.array([0.005, 0.005, 0.015, 0.015])
    fill, factor, d1 = walk(side, 0.001, qty, limits, 0.5)
    # depth 0.1 used up before d0 = 0.001; first order gets C(0.005) - C(0.001) = 0.4
    np.testing.assert_allclose(fill, [0.4, 0.0, 1.5, 0.0], atol=1e-15)
    assert d1 == pytest.approx(0.015)
    assert factor[1] == 0.0 and factor[3] == 0.0
    ref = walk_reference(side, 0.001, qty, limits, 0.5)
    np.testing.assert_allclose(fill, ref[0], atol=1e-15)
    np.testing.assert_allclose(factor, ref[1], atol=1e-15)
    assert d1 == pytest.approx(ref[2])


def test_walk_crosses_gap_and_caps_displacement_at_limit():
    side = SideCurve([0.0, 0.01, 0.03, 0.04], [0.0, 2.0, 2.0, 4.0], -1)
    # exactly exhausts the first segment: the displacement jumps to where depth resumes (3 %)
    _, _, d1 = walk(side, 0.0, np.array([2.0]), np.array([np.inf]), 0.5)
    assert d1 == pytest.approx(0.03)
    # an order limited inside the gap stops at its limit
    fill, _, d1 = walk(side, 0.0, np.array([3.0]), np.array([0.02]), 0.5)
    assert fill[0] == 2.0 and d1 == 0.02
    assert walk_reference(side, 0.0, np.array([3.0]), np.array([0.02]), 0.5)[2] == 0.02
    # book exhausted (flat after the last knot? no: extrapolated) is capped by max_x
    flat_end = SideCurve([0.0, 0.01, 0.02], [0.0, 1.0, 1.0], -1)
    fill, _, d1 = walk(flat_end, 0.0, np.array([5.0]), np.array([np.inf]), 0.3)
    assert fill[0] == 1.0 and d1 == 0.3


def test_walk_nothing_filled_keeps_displacement():
    side = SideCurve([0.0, 0.01], [0.0, 1.0], 1)
    fill, factor, d1 = walk(side, 0.004, np.array([1.0, 0.0]), np.array([0.002, 0.5]), 0.5)
    assert fill.tolist() == [0.0, 0.0] and factor.tolist() == [0.0, 0.0] and d1 == 0.004
    assert walk(side, 0.0, np.zeros(0), np.zeros(0), 0.5)[2] == 0.0


def test_walk_rejects_bad_arguments():
    side = SideCurve([0.0, 0.01], [0.0, 1.0], 1)
    with pytest.raises(ValueError, match="non-decreasing"):
        walk(side, 0.0, np.array([1.0, 1.0]), np.array([0.02, 0.01]), 0.5)
    with pytest.raises(ValueError):
        walk(side, 0.0, np.array([-1.0]), np.array([0.02]), 0.5)
    with pytest.raises(ValueError):
        walk(side, 0.0, np.array([1.0]), np.array([np.nan]), 0.5)
    with pytest.raises(ValueError):
        walk(side, -0.1, np.array([1.0]), np.array([0.01]), 0.5)
    with pytest.raises(ValueError):
        walk_reference(side, 0.0, np.array([1.0, 1.0]), np.array([0.02, 0.01]), 0.5)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(walks())
def test_walk_matches_reference(case):
    side, d0, qty, limits, max_x = case
    fill, factor, d1 = walk(side, d0, qty, limits, max_x)
    r_fill, r_factor, r_d1 = walk_reference(side, d0, qty, limits, max_x)
    tol = _scale(side, qty)
    assert fill.dtype == np.float64 and factor.shape == qty.shape
    np.testing.assert_allclose(fill, r_fill, rtol=1e-9, atol=tol)
    np.testing.assert_allclose(factor, r_factor, rtol=1e-9, atol=tol)
    # d1 is defined up to flat stretches: compare the depth consumed up to it (and d1 itself
    # where the curve has no flat segment)
    if np.isfinite(d1) and np.isfinite(r_d1):
        np.testing.assert_allclose(side.qty_within(d1), side.qty_within(r_d1), rtol=1e-9, atol=tol)
    if (side.density > 0).all():
        assert d1 == pytest.approx(r_d1, rel=1e-9, abs=1e-12)


@settings(max_examples=300, deadline=None)
@given(walks())
def test_walk_conservation_and_limits(case):
    side, d0, qty, limits, max_x = case
    fill, factor, d1 = walk(side, d0, qty, limits, max_x)
    tol = _scale(side, qty) * 10
    assert (fill >= 0).all() and (fill <= qty + tol).all()
    if qty.size:
        reach = max(min(float(limits[-1]), max_x), d0)
        available = float(side.qty_within(reach) - side.qty_within(d0))
        assert fill.sum() <= available + tol
        assert d0 <= d1 <= reach + 1e-15
        # consumed depth equals the depth between d0 and d1
        assert fill.sum() == pytest.approx(float(side.qty_within(d1) - side.qty_within(d0)), rel=1e-9, abs=tol)
    e = np.maximum(np.minimum(limits, max_x), d0)
    ok = fill > 1e-9
    vwap_factor = factor[ok] / fill[ok]
    if side.sign < 0:  # sell: VWAP >= ref * (1 - limit), and no better than where the walk started
        assert (vwap_factor >= 1 - e[ok] - 1e-9).all() and (vwap_factor <= 1 - d0 + 1e-9).all()
    else:  # buy: VWAP <= ref * (1 + limit)
        assert (vwap_factor <= 1 + e[ok] + 1e-9).all() and (vwap_factor >= 1 + d0 - 1e-9).all()


def test_walk_is_fast_on_many_orders():
    import time

    curve = parametric_curve("sqrt", 2e8, 100_000.0)
    rng = np.random.default_rng(0)
    qty = rng.uniform(0, 5, 200_000)
    limits = np.sort(rng.uniform(0, 0.2, qty.size))
    t0 = time.perf_counter()
    fill, _, _ = walk(curve.bid, 0.0, qty, limits, 0.5)
    assert time.perf_counter() - t0 < 1.0
    reach = curve.bid.qty_within(limits)
    cum = 0.0
    for q, a in zip(qty.tolist(), reach.tolist(), strict=True):  # F_i = min(F_{i-1} + q_i, A_i)
        cum = min(cum + q, a)
    assert fill.sum() == pytest.approx(cum, rel=1e-9)


# --------------------------------------------------------------------------- parametric
@pytest.mark.parametrize("kind,beta", [("linear", 1.0), ("sqrt", 0.5), ("power", 0.7), ("power", 2.0)])
def test_parametric_curve_hits_depth_at_1pct_and_follows_the_law(kind, beta):
    ref = 60_000.0
    curve = parametric_curve(kind, 2.0e8, ref, beta if kind == "power" else None)
    assert isinstance(curve, DepthCurve) and curve.ref_price == ref
    for side in (curve.bid, curve.ask):
        assert float(side.qty_within(0.01)) * ref == pytest.approx(2.0e8, rel=1e-12)
        assert side.x_max == 0.5 and side.x.size == 201
    # at knots the law holds exactly; between knots piecewise-linear interpolation is close
    x = np.geomspace(1e-5, 0.5, 500)
    exact = 2.0e8 * (x / 0.01) ** (1 / beta) / ref
    rel_err = np.abs(curve.bid.qty_within(x) / exact - 1)
    assert rel_err.max() < 3e-3
    # the impact of absorbing 4x the 1 % depth: x = 1 % * 4**beta
    assert float(curve.bid.x_for_qty(4 * 2.0e8 / ref)) == pytest.approx(0.01 * 4**beta, rel=3e-3)


def test_parametric_curve_rejects_bad_parameters():
    with pytest.raises(DeleverInputError, match="impact_exponent"):
        parametric_curve("power", 1e8, 1e5)
    with pytest.raises(DeleverInputError, match="impact_exponent"):
        parametric_curve("sqrt", 1e8, 1e5, 0.5)
    with pytest.raises(DeleverInputError, match="kind"):
        parametric_curve("cubic", 1e8, 1e5)
    with pytest.raises(DeleverInputError, match="depth_usd_at_1pct"):
        parametric_curve("sqrt", 0.0, 1e5)
    with pytest.raises(DeleverInputError, match="ref_price"):
        parametric_curve("sqrt", 1e8, float("nan"))


# --------------------------------------------------------------------------- dispatch
def test_build_depth_curve_parametric(tmp_path):
    curve = build_depth_curve(ParametricDepth(kind="linear", depth_usd_at_1pct=1e8), tmp_path, 50_000.0)
    assert float(curve.ask.qty_within(0.02)) == pytest.approx(2 * 1e8 / 50_000.0)
    assert curve.source.startswith("parametric linear")


def test_build_depth_curve_missing_file_names_field(tmp_path):
    with pytest.raises(DeleverInputError, match="market.depth.path"):
        build_depth_curve(BookDepthSource(path="nope.csv", at="2025-10-10 12:00:00"), tmp_path, 1.0)


def test_build_depth_curve_from_real_files():
    if not (DATA / "binance-2025-10-10-crash").is_dir() or not (DATA / "orderbook-l2-hftbacktest").is_dir():
        pytest.skip("shared data not available")
    bd = build_depth_curve(
        BookDepthSource(path="binance-2025-10-10-crash/BTCUSDT-bookDepth-2025-10-10.csv.gz", at="2025-10-10 00:00:30"),
        DATA, 1.0)
    assert bd.bid.cum_qty[1] == 1496.75 and bd.source.endswith("@ 2025-10-10 00:00:07")
    l2 = build_depth_curve(L2Source(path="orderbook-l2-hftbacktest/hyperliquid_btcusd_20250126.jsonl.gz"), DATA, 1.0)
    assert l2.ref_price == pytest.approx(105050.5)
