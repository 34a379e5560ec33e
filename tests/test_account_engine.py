"""Account engine: money conserved per asset, open interest per instrument, and independent invariants.

The invariants a wrong fill cannot satisfy (issue "Accounts, not positions", item 4):
* closing every position of a margin group at its bankruptcy price realizes exactly minus the group's equity;
* at fixed marks, traders' total equity changes only by what each recorded event says: fill slippage against mark,
  fees, the equity surrendered on a takeover, and ADL haircuts.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from account_helpers import components, make_engine, random_book
from delever.risk import Prices, TieredRisk

VENUES = ["binance-usdm", "bitmex", "bybit", "hyperliquid", "okx"]
POLICIES = ["queue", "pro_rata", "capped_pro_rata", "risk_aware_pro_rata"]


def _path(start: np.ndarray, moves: np.ndarray, steps: int = 30) -> np.ndarray:
    frac = np.minimum(np.arange(steps) / (steps // 2), 1.0)
    return start[None, :] * (1.0 + frac[:, None] * moves[None, :])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(venue=st.sampled_from(VENUES), policy=st.sampled_from(POLICIES), seed=st.integers(0, 2**31 - 1),
       n_ins=st.integers(1, 4), rows=st.integers(20, 300),
       moves=st.lists(st.floats(-0.3, 0.3), min_size=4, max_size=4),
       fund=st.sampled_from([0.0, 1e4, 1e6]), depth=st.sampled_from([2e5, 5e6]))
def test_money_and_open_interest_conserved(venue, policy, seed, n_ins, rows, moves, fund, depth):
    rng = np.random.default_rng(seed)
    start = np.array([100_000.0, 4_000.0, 200.0, 1.0])[:n_ins]
    book = random_book(rng, n_ins, rows, start)
    eng = make_engine(book, venue, _path(start, np.array(moves[:n_ins])), fund, depth, policy=policy)
    eng.run()
    c = eng.conservation()
    scale = max(1.0, float(np.abs(book.balance).sum()) + fund + float(
        (np.abs(book.pos_qty) * book.pos_entry_price).sum()))
    for asset, v in c["ledger_imbalance_by_asset"].items():
        assert abs(v) <= 1e-9 * scale, (asset, v)
    assert c["ledger_reconciliation_max"] <= 1e-9 * scale
    assert c["state_drift_max"] <= 1e-9 * scale    # the float balances are their logged transfers, to rounding
    for sym, v in c["open_interest_mismatch_qty"].items():
        assert abs(v) <= 1e-9 * max(1.0, float(np.abs(book.pos_qty).sum())), (sym, v)
    # no trader balance ends below zero in USD value unless the group still holds positions
    r = eng.risk.evaluate(eng.b, eng._prices())
    flat = np.bincount(eng.b.pos_group, weights=np.abs(eng.b.pos_qty), minlength=eng.b.n_groups) == 0
    assert (r.equity_usd[flat] >= -1e-6 * scale).all()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_ins=st.integers(1, 4), rows=st.integers(5, 80),
       moves=st.lists(st.floats(-0.5, 0.5), min_size=4, max_size=4), venue=st.sampled_from(VENUES))
def test_close_at_bankruptcy_realizes_minus_equity(seed, n_ins, rows, moves, venue):
    rng = np.random.default_rng(seed)
    start = np.array([100_000.0, 4_000.0, 200.0, 1.0])[:n_ins]
    book = random_book(rng, n_ins, rows, start)
    eng = make_engine(book, venue, _path(start, np.array(moves[:n_ins]), 2), 0.0)
    mark = start * (1.0 + np.array(moves[:n_ins]))
    eng.mark[:] = mark
    r = eng.risk.evaluate(eng.b, Prices(mark, mark, eng.asset_usd))
    pos = np.arange(book.n_positions)
    bp = eng.bankruptcy_prices(pos, r)
    realized = book.registry.pnl_settle(book.pos_instrument, book.pos_qty, book.pos_entry_price, bp)
    per_group = np.bincount(book.pos_group, weights=realized, minlength=book.n_groups)
    collateral = book.balance.sum(axis=1)
    scale = collateral + np.bincount(book.pos_group, weights=np.abs(book.pos_qty) * mark[book.pos_instrument],
                                     minlength=book.n_groups)
    # measured against the mark, closing at the bankruptcy prices realizes exactly minus the group's equity
    at_mark = np.bincount(book.pos_group, weights=book.pos_qty * (bp - mark[book.pos_instrument]),
                          minlength=book.n_groups)
    assert np.allclose(at_mark, -r.equity_usd, rtol=0, atol=1e-9 * scale.max())
    assert np.allclose(collateral + per_group, 0.0, rtol=0, atol=1e-9 * scale.max())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n_ins=st.integers(1, 3), rows=st.integers(20, 200),
       venue=st.sampled_from(VENUES), policy=st.sampled_from(POLICIES),
       drop=st.floats(0.02, 0.4), fund=st.sampled_from([0.0, 1e5]))
def test_trader_equity_changes_only_by_recorded_costs(seed, n_ins, rows, venue, policy, drop, fund):
    """At fixed marks (mark = index, no impact on the index), every change of traders' equity is explained."""
    rng = np.random.default_rng(seed)
    start = np.array([100_000.0, 4_000.0, 200.0])[:n_ins]
    book = random_book(rng, n_ins, rows, start)
    price = np.repeat((start * (1 - drop))[None, :], 3, axis=0)     # one jump, then flat
    eng = make_engine(book, venue, price, fund, 1e6, policy=policy, mark_method="index", replay=True)
    mark = price[0]
    before = eng.risk.evaluate(eng.b, Prices(mark, mark, eng.asset_usd)).equity_usd.sum()
    eng.run()
    after = eng.risk.evaluate(eng.b, Prices(mark, mark, eng.asset_usd)).equity_usd.sum()
    liq = eng.liq_rows.to_table().to_pandas() if eng.liq_rows.column("qty").size else None
    explained = 0.0
    if liq is not None:
        fills = liq[liq["kind"].isin(["market", "partial"])]
        explained += float((fills["side"] * fills["qty"] * (fills["price"] - fills["mark_price"])).sum())
        explained -= float((fills["fee_usd"] + fills["surplus_usd"]).sum())   # a takeover's fee is in its equity
        took = liq[liq["kind"].isin(["takeover", "backstop"])].drop_duplicates(["step", "round", "group"])
        explained -= float(took["group_equity_usd"].sum())
    adl = eng.adl_rows.to_table().to_pandas() if eng.adl_rows.column("qty").size else None
    if adl is not None:
        explained -= float((adl["haircut_usd"] + adl["fee_usd"]).sum())
    scale = max(1.0, float(np.abs(book.balance).sum()) + float((np.abs(book.pos_qty) * mark[book.pos_instrument]).sum()))
    assert after - before == pytest.approx(explained, abs=1e-9 * scale)


def test_cross_loss_on_one_coin_liquidates_the_others():
    """A cross account long BTC and short ETH: BTC's fall alone liquidates the ETH position too."""
    from delever.model import AccountBook, InstrumentRegistry

    reg = InstrumentRegistry.linear(["BTCUSDT", "ETHUSDT"])
    # account 1: cross, long 1 BTC at 100k and short 10 ETH at 4k, 10k USDT wallet
    book = AccountBook.from_rows(reg, [1, 1], [0, 1], [1.0, -10.0], [100_000.0, 4_000.0], [False, False],
                                 [10_000.0, 10_000.0], [0, 0])
    price = np.array([[100_000.0, 4_000.0], [90_000.0, 4_000.0], [90_000.0, 4_000.0]])
    v, *_ = components("binance-usdm")
    eng = make_engine(book, "binance-usdm", price, 1e6, 1e9)
    eng.run()
    rows = eng.liq_rows.to_table().to_pandas()
    assert set(rows["instrument"]) == {"BTCUSDT", "ETHUSDT"}
    assert (eng.b.pos_qty == 0).all()
    assert rows["account"].nunique() == 1
    tiers = v.tiers_for("BTCUSDT")
    r = TieredRisk((tiers, tiers)).evaluate(book, Prices(np.array([90_000.0, 4_000.0]), np.array([90_000.0, 4_000.0]),
                                                         np.ones(1)))
    assert r.liquidatable[0]
    # the ETH position alone (at its entry) was not the cause: equity 10k - 10k BTC loss = 0 < MM
    assert r.equity_usd[0] == pytest.approx(0.0, abs=1e-6)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(venue=st.sampled_from(VENUES), seed=st.integers(0, 2**31 - 1), n_ins=st.integers(1, 3),
       rows=st.integers(20, 200), moves=st.lists(st.floats(-0.4, 0.2), min_size=3, max_size=3),
       coin_share=st.floats(0.0, 1.0), haircut=st.sampled_from([0.0, 0.05, 0.1]), fund=st.sampled_from([0.0, 1e5]))
def test_money_conserved_per_asset_with_coin_collateral(venue, seed, n_ins, rows, moves, coin_share, haircut, fund):
    """Accounts margined partly in the first instrument's coin (Multi-Assets style, valued at its index after a
    haircut): every asset is conserved on its own, and the coin's USD price follows its instrument's index."""
    from delever.model import AccountBook, Asset, AssetRegistry, Instrument, InstrumentRegistry
    from delever.model.instruments import base_of
    from delever.risk import TieredRisk

    rng = np.random.default_rng(seed)
    start = np.array([100_000.0, 4_000.0, 200.0])[:n_ins]
    usd_book = random_book(rng, n_ins, rows, start)
    syms = usd_book.registry.symbols
    coin = base_of(syms[0], "USDT")
    reg = InstrumentRegistry(tuple(Instrument(s, "linear_perp", base_of(s, "USDT"), "USDT") for s in syms),
                             AssetRegistry((Asset("USDT"), Asset(coin, price_from=syms[0]))))
    b = usd_book
    in_coin = rng.random(b.n_groups) < coin_share
    balance = np.zeros((b.n_groups, 2))
    balance[~in_coin, 0] = b.balance[~in_coin, 0]
    balance[in_coin, 1] = b.balance[in_coin, 0] / start[0]
    book = AccountBook(reg, b.account_id, b.group_account, b.group_isolated, b.pos_group, b.pos_instrument, b.pos_qty,
                       b.pos_entry_price, balance).validate()
    eng = make_engine(book, venue, _path(start, np.array(moves[:n_ins])), fund, 1e6)
    eng.risk = TieredRisk(eng.risk.tiers, haircut=np.array([0.0, haircut]))
    eng.run()
    assert eng.asset_usd[1] == eng.index[0]
    c = eng.conservation()
    assert set(c["ledger_imbalance_by_asset"]) == {"USDT", coin}
    scale = max(1.0, float((np.abs(book.balance) * np.array([1.0, start[0]])).sum()) + fund
                + float((np.abs(book.pos_qty) * book.pos_entry_price).sum()))
    for asset, v in c["ledger_imbalance_by_asset"].items():
        assert abs(v) <= 1e-9 * scale, (asset, v)
    assert c["state_drift_max"] <= 1e-9 * scale
    for v in c["open_interest_mismatch_qty"].values():
        assert abs(v) <= 1e-9 * max(1.0, float(np.abs(book.pos_qty).sum()))


def test_check_venue_runs_the_order_book_venues_and_refuses_the_others():
    """The account engine runs every order-book venue preset; Drift's and dYdX's own paths are refused by name."""
    from delever.errors import DeleverInputError
    from delever.venues.components import ACCOUNT_ENGINE_VENUES, check_venue, venue_components
    from delever.venues.rules import load_venue

    for name in ACCOUNT_ENGINE_VENUES:
        liq, bs, dl = venue_components(load_venue(name))
        assert liq.takeover_after_orders == (name != "hyperliquid")
    bybit = venue_components(load_venue("bybit"))
    assert bybit[0].step_down_order == "fill_or_kill" and bybit[0].close_at_bankruptcy
    assert bybit[0].liquidation_taker_fee_rate > 0 and bybit[2].adl_maker_fee_rate > 0
    okx = venue_components(load_venue("okx"))
    assert okx[0].step_down_to == "first_tier" and okx[0].step_down_freeze_s > 0 and okx[0].step_down_from_tier == 3
    assert okx[1].adl_drawdown_fraction > 0 and okx[2].price == "mark"
    for name, why in (("drift", "Drift"), ("dydx-v4", "dYdX")):
        with pytest.raises(DeleverInputError, match=why):
            check_venue(load_venue(name))


def test_fee_inclusive_bankruptcy_price_bybit_example():
    """Bybit's order-cost example (help.bybit.com 900000169703): a 1 BTC long at 50,000 with 10x holds 5,000 + 27
    USDT (the fee to close at 0.06 %) and goes bankrupt at 45,000; for a one-position group the account engine's
    price is ``bankruptcy_price_with_close_fee`` to the last bit, and a short mirrors it."""
    from delever.model import AccountBook, InstrumentRegistry
    from delever.venues.formulas import bankruptcy_price_with_close_fee

    reg = InstrumentRegistry.linear(["BTCUSDT"])
    book = AccountBook.from_rows(reg, [1, 2], [0, 0], [1.0, -2.0], [50_000.0, 50_000.0], [True, True],
                                 [5_027.0, 9_000.0], [0, 0])
    eng = make_engine(book, "bybit", np.full((2, 1), 48_000.0), 0.0)
    pos = np.arange(2)
    r = eng._evaluate_all()
    bp = eng.bankruptcy_prices(pos, r, 0.0006)
    assert bp[0] == pytest.approx(45_000.0, rel=1e-12)
    ref = bankruptcy_price_with_close_fee(np.array([1, -1]), np.array([1.0, 2.0]), np.array([50_000.0, 50_000.0]),
                                          np.array([5_027.0, 9_000.0]), 0.0006)
    assert (bp == ref).all()
    # closing at it leaves exactly the fee to close (qty x bankruptcy price x rate) in the wallet
    left = book.balance[:, 0] + book.registry.pnl_settle(book.pos_instrument, book.pos_qty, book.pos_entry_price, bp)
    assert left == pytest.approx(0.0006 * np.abs(book.pos_qty) * bp, rel=1e-9)
