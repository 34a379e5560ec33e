"""The engine's dYdX v4 path: per-block limits, insurance-fund caps, deleveraging walk, final settlement.

Expected values follow from the rules in ``dydx-v4.toml`` (liquidations.go / deleveraging.go semantics);
the books are built so that each rule decides the outcome. Oracle fixed at $50,000 (no permanent impact),
BTC-USD in the Large-Cap tier (MMR 1.2 %).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delever.book import PositionBook
from delever.engine.core import CascadeEngine
from delever.engine.fast import fast_kernel_support
from delever.market.depth import parametric_curve
from delever.paths import PricePath
from delever.venues import load_venue
from engine_helpers import make_book, make_engine
from test_fast_kernel import make_prep

P = 50_000.0


def engine(rows, steps: int = 3, fund: float = 1e6, depth_usd: float = 5e8, overrides: dict | None = None,
           seed: int = 0, prices=None) -> CascadeEngine:
    """Engine over positions ``rows`` = [(side, qty, entry, collateral)], flat oracle unless ``prices``."""
    side, qty, entry, coll = (np.array(c) for c in zip(*rows, strict=True))
    n = len(rows)
    book = PositionBook("BTC-USD", np.arange(n), side.astype(np.int8), qty.astype(float), entry.astype(float),
                        coll.astype(float), np.ones(n, bool))
    rules = load_venue("dydx-v4", overrides)
    px = np.full(steps, P) if prices is None else np.asarray(prices, float)
    path = PricePath(np.arange(px.size, dtype=float), px, "stress", "test", None)
    return CascadeEngine(rules, rules.tiers_for("BTC-USD"), book, parametric_curve("sqrt", depth_usd, P), path,
                         0.0, 30.0, 50.0, 50, fund, seed=seed)


def table(rows) -> dict[str, np.ndarray]:
    t = rows.to_table()
    return {c: t[c].to_numpy(zero_copy_only=False) for c in t.column_names}


def assert_conserved(eng: CascadeEngine) -> None:
    c = eng.conservation()
    assert abs(c["ledger_imbalance_usd"]) < 1e-6 and c["ledger_reconciliation_usd"] < 1e-6
    assert abs(c["open_interest_mismatch_qty"]) < 1e-9


def test_block_limits_size_each_order_and_fee_takes_the_surplus_up_to_the_max():
    # 1,000 BTC long, TNC 500k < MMR 600k: 10 % of $50M is above the $100k subaccount cap -> 2 BTC per block.
    eng = engine([(1, 1000.0, P, 500_000.0)], steps=4)
    eng.run()
    liq = table(eng.liq_rows)
    assert liq["step"].tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(liq["qty"] * P, 100_000.0, rtol=1e-12)
    surplus = liq["qty"] * (liq["price"] - liq["bankruptcy_price"])
    np.testing.assert_allclose(liq["fee_usd"], np.minimum(0.015 * liq["notional_usd"], surplus), rtol=1e-12)
    assert eng.backstop.cash_usd == pytest.approx(1e6 + liq["fee_usd"].sum(), rel=1e-12)
    assert_conserved(eng)


def test_position_block_limit_when_below_the_subaccount_cap():
    # $500k position: 10 % = $50k per block (below the $100k cap); a $5k position: at least $1,000 per block.
    eng = engine([(1, 10.0, P, 5_000.0), (1, 0.1, P, 50.0)], steps=1)
    eng.run()
    liq = table(eng.liq_rows)
    by_acc = dict(zip(liq["account"].tolist(), (liq["qty"] * P).tolist(), strict=True))
    assert by_acc[0] == pytest.approx(50_000.0, rel=1e-12) and by_acc[1] == pytest.approx(1_000.0, rel=1e-12)


def test_attempts_per_block_are_capped_and_the_offset_is_seeded():
    rows = [(1, 0.1, P, 50.0)] * 60            # all liquidatable (TNC 50 < MMR 60)
    picked = []
    for seed in (0, 0, 1):
        eng = engine(rows, steps=1, seed=seed)
        eng.run()
        liq = table(eng.liq_rows)
        assert liq["account"].size == 50      # MaxLiquidationAttemptsPerBlock
        picked.append(sorted(liq["account"].tolist()))
    assert picked[0] == picked[1] and picked[0] != picked[2]


def test_fund_loss_per_block_is_capped_by_the_subaccount_limit():
    # Long 10 BTC, entry 52k, TNC -10k: bankruptcy 51k; fills near 50k need ~$1k/BTC from the fund.
    eng = engine([(1, 10.0, 52_000.0, 10_000.0), (-1, 30.0, P, 1e6)], steps=3,
                 overrides={"dydx": {"subaccount_max_insurance_lost_usd": 300.0}})
    eng.run()
    led = eng.ledger.to_table().to_pandas()
    cover = led[led["kind"] == "insurance_fund_cover"].groupby("step")["amount_usd"].sum()
    assert len(cover) == 3 and (cover <= 300.0 + 1e-9).all() and (cover > 299.0).all()
    liq = table(eng.liq_rows)
    assert (liq["qty"] < 1.0).all()            # orders (1 BTC = 10 %) cut to stay within the cap
    assert_conserved(eng)


def test_a_fill_that_would_overdraw_the_fund_is_not_made_and_the_account_is_deleveraged():
    # Fund empty: no fill below bankruptcy is allowed -> 0 filled, TNC < 0 -> whole position deleveraged at 51k.
    rows = [(1, 10.0, 52_000.0, 10_000.0),
            (-1, 4.0, P, 100_000.0),           # healthy shorts
            (-1, 1.0, P, 600.0),               # TNC = MMR: buying at 51k leaves it with -400 and no position
            (-1, 8.0, P, 200_000.0)]
    eng = engine(rows, steps=1, fund=0.0)
    eng.run()
    assert eng.backstop.cash_usd == 0.0 and eng.qty[0] == 0.0
    adl = table(eng.adl_rows)
    np.testing.assert_allclose(adl["price"], 51_000.0, rtol=1e-12)
    assert 2 not in adl["account"].tolist()                       # non-overlapping bankruptcy prices: skipped
    assert adl["qty"].sum() == pytest.approx(10.0, rel=1e-12)
    np.testing.assert_allclose(adl["haircut_usd"], adl["qty"] * 1_000.0, rtol=1e-9)
    assert eng.totals.adl_haircut_usd == pytest.approx(10_000.0, rel=1e-9)
    again = engine(rows, steps=1, fund=0.0)
    again.run()
    assert table(again.adl_rows)["account"].tolist() == adl["account"].tolist()   # same seed, same walk
    assert_conserved(eng)


def test_zero_tnc_is_not_deleveraged():
    # TNC exactly 0 (bankruptcy = oracle): the order cannot fill without the fund, and TNC < 0 is required.
    eng = engine([(1, 10.0, 51_000.0, 10_000.0), (-1, 20.0, P, 1e6)], steps=2, fund=0.0)
    eng.run()
    assert eng.qty[0] == 10.0 and table(eng.adl_rows)["qty"].size == 0


def test_deleveraging_attempts_per_block():
    rows = [(1, 1.0, 52_000.0, 1_000.0)] * 4 + [(-1, 100.0, P, 1e7)]
    eng = engine(rows, steps=1, fund=0.0, overrides={"dydx": {"max_deleveraging_attempts_per_block": 3}})
    eng.run()
    assert int((eng.qty[:4] == 0).sum()) == 3
    two = engine(rows, steps=2, fund=0.0, overrides={"dydx": {"max_deleveraging_attempts_per_block": 3}})
    two.run()
    assert (two.qty[:4] == 0).all()


def test_final_settlement_closes_everything_at_oracle_or_bankruptcy():
    rows = [(1, 2.0, 48_000.0, 10_000.0),      # TNC 14k >= 0 -> oracle
            (1, 1.0, 52_000.0, 1_000.0),       # TNC -1k -> bankruptcy 51k
            (-1, 1.5, 49_000.0, 30_000.0),
            (-1, 0.5, 51_000.0, 10_000.0),
            (-1, 5.0, 50_500.0, 100_000.0)]    # more shorts than longs: the rest goes to the outside market
    eng = engine(rows, steps=1, fund=0.0, overrides={"dydx": {"max_liquidation_attempts_per_block": 1,
                                                              "max_deleveraging_attempts_per_block": 0}})
    eng.run()
    q_before = eng.qty.copy()
    out = eng.final_settlement()
    assert (eng.qty == 0).all()
    liq = table(eng.liq_rows)
    fs = liq["kind"] == "final_settlement"
    prices = dict(zip(liq["account"][fs].tolist(), liq["price"][fs].tolist(), strict=True))
    assert prices[0] == pytest.approx(P) and prices[1] == pytest.approx(51_000.0)
    # each deleveraging closes the same quantity on both sides; the rest is settled with the outside market
    assert 2 * out["deleveraged_qty"] + out["market_settled_qty"] == pytest.approx(q_before.sum())
    assert_conserved(eng)


def test_final_settlement_can_be_triggered_by_the_preset_flag():
    rows = [(1, 2.0, 48_000.0, 10_000.0), (-1, 2.0, 49_000.0, 30_000.0)]
    eng = engine(rows, steps=2, overrides={"dydx": {"final_settlement_at_end": True}})
    eng.run()
    assert (eng.qty == 0).all() and eng.totals.adl_notional_usd == pytest.approx(2 * P)
    assert_conserved(eng)


def test_rules_validate_dydx_parameters():
    from delever.errors import DeleverInputError

    with pytest.raises(DeleverInputError, match="max_liquidation_fee_ppm"):
        load_venue("dydx-v4", {"dydx": {"max_liquidation_fee_ppm": 1_000_001}})
    with pytest.raises(DeleverInputError, match="spread_to_maintenance_margin_ratio_ppm"):
        load_venue("dydx-v4", {"dydx": {"spread_to_maintenance_margin_ratio_ppm": -1}})
    with pytest.raises(DeleverInputError, match="random_walk"):
        load_venue("hyperliquid", {"adl": {"policy": "random_walk"}})
    with pytest.raises(DeleverInputError, match="open_interest_lower_cap_usd"):
        load_venue("dydx-v4", {"dydx": {"liquidity_tiers": {"Mid-Cap": {"open_interest_lower_cap_usd": 2e8}}}})
    v = load_venue("dydx-v4")
    assert v.tiers_for("BTC-USD").mmr.tolist() == [pytest.approx(0.012)]
    assert v.dydx_tier_for("ETH-USD").initial_margin_ppm == 20_000


def test_fast_kernel_declines_dydx():
    rng = np.random.default_rng(0)
    book = PositionBook("BTC-USD", np.arange(4), np.array([1, -1, 1, -1], np.int8), rng.uniform(0.1, 1, 4),
                        np.full(4, 100_000.0), np.full(4, 10_000.0), np.ones(4, bool))
    ok, why = fast_kernel_support(make_prep(book, "dydx-v4"))
    assert not ok and "dYdX" in why


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 60), move=st.floats(-40.0, 40.0), fund=st.floats(0.0, 1e4),
       depth=st.floats(2e5, 5e7))
def test_money_is_conserved_through_deleveraging_and_final_settlement(seed, n, move, fund, depth):
    book = make_book(np.random.default_rng(seed), n)
    eng = make_engine(book, "dydx-v4", move_pct=move, depth_usd=depth, insurance_fund_usd=fund,
                      overrides={"dydx": {"final_settlement_at_end": True}})
    eng.run()
    c = eng.conservation()
    scale = 1.0 + eng.totals.liquidated_long_usd + eng.totals.liquidated_short_usd + eng.totals.adl_notional_usd
    assert abs(c["ledger_imbalance_usd"]) <= 1e-9 * scale and c["ledger_reconciliation_usd"] <= 1e-9 * scale
    assert abs(c["open_interest_mismatch_qty"]) <= 1e-9 * (1.0 + book.qty.sum())
    assert (eng.qty == 0).all() and eng.backstop.inv_qty == 0.0
    assert eng.backstop.cash_usd >= -1e-9 * scale and eng.bad_debt_cash == 0.0   # the fund is never overdrawn
