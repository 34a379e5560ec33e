"""Book synthesizer: aggregates, bracket caps, survivorship, determinism, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from delever.book import LONG, SHORT
from delever.errors import DeleverInputError
from delever.scenario import Synthesis
from delever.synthesize import (
    MAX_ENTRY_ATTEMPTS,
    TIER_EDGE_RTOL,
    max_notional_for_collateral,
    pareto_scale_usd,
    synthesize_book,
)
from delever.venues.tiers import MarginTiers

START = 60_000.0

# Binance USD-M BTCUSDT brackets effective 2021-03-18 (shared/data/risk-params)
BINANCE = MarginTiers.from_floors(
    [0, 5e4, 2.5e5, 1e6, 1e7, 2e7, 5e7, 1e8, 2e8, 3e8],
    [125, 100, 50, 20, 10, 5, 4, 3, 2, 1],
    [0.004, 0.005, 0.01, 0.025, 0.05, 0.1, 0.125, 0.15, 0.25, 0.5],
)
# Hyperliquid BTC: 40x up to 150M USDC, then 20x; MMR = 1 / (2 max lev)
HYPERLIQUID = MarginTiers.from_floors([0, 1.5e8], [40, 20], [1 / 80, 1 / 40])


def synth(tiers=BINANCE, seed=0, history=None, **kw):
    return synthesize_book(
        Synthesis.model_validate(kw), "BTCUSDT", START, tiers, np.random.default_rng(seed), history
    )


def leverage(book, price=START):
    return book.qty * price / book.collateral_usd


def assert_invariants(book, rep, tiers, oi):
    notional = book.qty * START
    long = book.side == LONG
    assert abs(notional[long].sum() / oi - 1) <= 1e-9
    assert abs(notional[~long].sum() / oi - 1) <= 1e-9
    assert abs(rep.long_notional_usd / oi - 1) <= 1e-9 and abs(rep.short_notional_usd / oi - 1) <= 1e-9
    # leverage within the bracket max at the position's notional (to float rounding)
    assert (leverage(book) <= tiers.max_leverage_for(notional) * (1 + 1e-12)).all()
    # nobody is liquidatable at the start price
    equity = book.collateral_usd + book.side * book.qty * (START - book.entry_price)
    assert (equity > tiers.maintenance_margin(notional)).all()
    np.testing.assert_array_equal(book.account, np.arange(len(book)))
    assert book.account.dtype == np.int64 and book.qty.dtype == np.float64 and book.side.dtype == np.int8


@pytest.mark.parametrize("kind", ["lognormal", "pareto"])
@pytest.mark.parametrize("tiers", [BINANCE, HYPERLIQUID], ids=["binance", "hyperliquid"])
def test_aggregates_and_invariants(kind, tiers):
    book, rep = synth(tiers, seed=7, positions=20_000, account_size={"kind": kind})
    assert_invariants(book, rep, tiers, 8.0e9)
    assert rep.positions == len(book) == 20_000
    assert rep.long_positions == rep.short_positions == 10_000
    assert rep.leverage_capped > 0  # default mix has 125x, above both venues' caps at size
    assert rep.redraws > 0
    json.dumps(rep.assumptions)  # goes into the run record


def test_account_ratio_sets_side_counts_and_average_size():
    book, rep = synth(positions=3_000, long_short_ratio=2.0, open_interest_usd=1e9)
    long = book.side == LONG
    assert int(long.sum()) == rep.long_positions == 2_000
    assert int((book.side == SHORT).sum()) == rep.short_positions == 1_000
    assert_invariants(book, rep, BINANCE, 1e9)
    # equal OI per side: twice the long accounts, half the average long notional
    assert book.qty[long].mean() / book.qty[~long].mean() == pytest.approx(0.5, rel=1e-9)


@pytest.mark.parametrize(("ratio", "n_long"), [(1e6, 99), (1e-6, 1), (1.0, 50), (0.25, 20)])
def test_ratio_extremes_keep_one_account_per_side(ratio, n_long):
    book, rep = synth(positions=100, long_short_ratio=ratio, open_interest_usd=1e8)
    assert rep.long_positions == n_long and int((book.side == LONG).sum()) == n_long
    assert_invariants(book, rep, BINANCE, 1e8)


def test_whales_pushed_into_top_brackets():
    # 8e9 USD per side over 5 accounts: positions reach the 1x bracket (floor 3e8)
    book, rep = synth(positions=10, seed=3)
    assert_invariants(book, rep, BINANCE, 8.0e9)
    notional = book.qty * START
    assert notional.max() > 3e8
    assert leverage(book)[notional > 3e8] == pytest.approx(1.0, rel=1e-12)


def test_capped_positions_get_the_largest_allowed_leverage():
    book, rep = synth(positions=20_000, seed=11, leverage={"leverage": [125], "weight": [1]})
    lev = leverage(book)
    notional = book.qty * START
    capped = lev < 125 * (1 - 1e-9)
    assert rep.leverage_capped == int(capped.sum()) > 100
    # a capped position sits at its bracket's max leverage or just under the bracket's notional cap
    k = BINANCE.tier_index(notional[capped])
    at_max = np.isclose(lev[capped], BINANCE.max_leverage[k], rtol=1e-12)
    cap = np.append(BINANCE.floor_usd[1:], np.inf)[k]
    at_ceiling = np.isclose(notional[capped], cap * (1 - TIER_EDGE_RTOL), rtol=1e-12)
    assert (at_max | at_ceiling).all() and at_ceiling.any() and at_max.any()
    # more leverage would need a higher bracket with a lower max: 1% more notional must be infeasible
    bigger = notional[capped] * 1.01
    assert (bigger / book.collateral_usd[capped] > BINANCE.max_leverage_for(bigger)).all()


def test_same_seed_same_book_other_seed_other_book():
    a, ra = synth(seed=42, positions=5_000)
    b, rb = synth(seed=42, positions=5_000)
    c, _ = synth(seed=43, positions=5_000)
    for name in ("account", "side", "qty", "entry_price", "collateral_usd", "cross"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert ra == rb
    assert not np.array_equal(a.entry_price, c.entry_price)


def test_cross_share_is_exact():
    book, rep = synth(positions=1_001, cross_share=0.3)
    assert int(book.cross.sum()) == 300 == rep.assumptions["cross_accounts"]
    assert not synth(positions=50, cross_share=0.0)[0].cross.any()
    assert synth(positions=50, cross_share=1.0)[0].cross.all()


def test_lognormal_entries_without_survivorship():
    # at 2x nobody is near maintenance margin, so entries are the plain lognormal
    book, rep = synth(positions=40_000, leverage={"leverage": [2], "weight": [1]}, entry={"sigma": 0.05})
    assert rep.redraws == 0 and rep.leverage_capped == 0
    z = np.log(book.entry_price / START)
    assert abs(np.median(z)) < 0.002
    assert z.std() == pytest.approx(0.05, rel=0.03)


def test_survivorship_biases_high_leverage_entries():
    book, rep = synth(positions=20_000, leverage={"leverage": [125], "weight": [1]})
    long = book.side == LONG
    full = leverage(book) > 125 * (1 - 1e-9)  # uncapped 125x, bracket 1 (MMR 0.4 %)
    assert rep.redraws > 1_000
    # a 125x long survives only if it entered below start * (1 + 1/125 - 0.004), a short above the mirror
    assert (book.entry_price[long & full] < START * 1.004).all()
    assert (book.entry_price[~long & full] > START * 0.996).all()
    assert np.median(book.entry_price[long & full]) < START < np.median(book.entry_price[~long & full])


def test_history_entries_come_from_history():
    prices = np.array([59_000.0, 59_500.0, 60_100.0, 61_000.0, 58_000.0])
    weights = np.array([1.0, 2.0, 3.0, 0.0, 4.0])
    book, rep = synth(
        positions=20_000,
        history=(prices, weights),
        entry={"source": "history", "path": "klines.csv"},
        leverage={"leverage": [3], "weight": [1]},
    )
    assert np.isin(book.entry_price, prices).all()
    assert not (book.entry_price == 61_000.0).any()  # zero-weight bar never drawn
    share = np.array([(book.entry_price == p).mean() for p in prices])
    np.testing.assert_allclose(share, weights / weights.sum(), atol=0.015)
    assert rep.assumptions["entry_history_bars"] == 5
    assert_invariants(book, rep, BINANCE, 8.0e9)


def test_infeasible_history_raises_with_parameters():
    prices = np.array([90_000.0, 95_000.0])  # every long entered 50 % above start
    with pytest.raises(DeleverInputError, match=rf"after {MAX_ENTRY_ATTEMPTS} entry redraws.*entry history"):
        synth(
            positions=200,
            history=(prices, np.ones(2)),
            entry={"source": "history", "path": "k.csv"},
            leverage={"leverage": [10], "weight": [1]},
        )


def test_tiers_where_max_leverage_position_is_liquidatable():
    bad = MarginTiers.from_floors([0, 1e6], [125, 20], [0.01, 0.025])  # 125x needs MMR < 0.8 %
    with pytest.raises(DeleverInputError, match=r"bracket 1 has MMR 0\.01 >= 1 / max leverage 125"):
        synth(bad, positions=100)


@pytest.mark.parametrize(
    ("history", "entry", "pattern"),
    [
        (None, {"source": "history", "path": "k.csv"}, "no price history was given"),
        ((np.ones(3) * START, np.ones(3)), {"source": "lognormal"}, "but an entry_history was given"),
        ((np.ones(3), np.ones(2)), {"source": "history", "path": "k"}, "equal-length"),
        ((np.array([1.0, np.nan]), np.ones(2)), {"source": "history", "path": "k"}, "price 2 is nan"),
        ((np.ones(2) * START, np.array([1.0, -1.0])), {"source": "history", "path": "k"}, "weight 2 is -1.0"),
        ((np.ones(2) * START, np.zeros(2)), {"source": "history", "path": "k"}, "weights sum to 0"),
        ((np.ones(2),), {"source": "history", "path": "k"}, r"\(prices, weights\) pair"),
    ],
)
def test_bad_entry_history(history, entry, pattern):
    with pytest.raises(DeleverInputError, match=pattern):
        synth(positions=10, history=history, entry=entry)


@pytest.mark.parametrize("price", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_start_price(price):
    with pytest.raises(DeleverInputError, match="start_price"):
        synthesize_book(Synthesis(positions=10), "BTCUSDT", price, BINANCE, np.random.default_rng(0))


def test_pareto_scale_keeps_the_median():
    xm = pareto_scale_usd(2_000.0, 1.3)
    draws = xm * (1 + np.random.default_rng(0).pareto(1.3, 200_001))
    assert np.median(draws) == pytest.approx(2_000.0, rel=0.02)


def _brute_max_notional(c, tiers):
    """Reference: largest feasible notional on a fine grid (leverage feasible iff L <= maxlev(N))."""
    grid = np.geomspace(1e-3, 1e12, 200_001)  # step ratio 1.00017
    out = np.empty_like(c)
    for i, ci in enumerate(c):
        out[i] = grid[grid / ci <= tiers.max_leverage_for(grid)].max()
    return out


@pytest.mark.parametrize(
    "tiers",
    [BINANCE, HYPERLIQUID, MarginTiers.from_floors([0, 1e4, 1e6], [10, 50, 5], [0.02, 0.005, 0.05])],
    ids=["binance", "hyperliquid", "non-monotone"],
)
def test_max_notional_matches_brute_force(tiers):
    c = np.geomspace(1.0, 1e9, 37)
    n_max, _ = max_notional_for_collateral(c, tiers)
    assert (n_max / c <= tiers.max_leverage_for(n_max) * (1 + 1e-12)).all()  # feasible
    bigger = n_max * (1 + 1e-6)
    assert (bigger / c > tiers.max_leverage_for(bigger)).all()  # and maximal
    brute = _brute_max_notional(c, tiers)
    assert (brute <= n_max * (1 + 2 * TIER_EDGE_RTOL)).all() and (n_max <= brute * 1.0002).all()
