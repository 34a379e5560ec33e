"""ADL policies: the venue queue and the pro-rata alternatives allocate the same need differently."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delever.engine.core import adl_allocation
from engine_helpers import make_book, make_engine

POLICIES = ["pro_rata", "capped_pro_rata", "risk_aware_pro_rata"]
positions = st.lists(st.tuples(st.floats(0.01, 50.0), st.floats(1.0, 100.0)), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(pos=positions, share=st.floats(0.0, 1.5), policy=st.sampled_from(POLICIES), cap=st.floats(0.05, 1.0))
def test_allocation_covers_the_need_within_each_position(pos, share, policy, cap):
    qty = np.array([p[0] for p in pos])
    lev = np.array([p[1] for p in pos])
    notional = qty * 100.0
    equity = notional / lev
    need = share * qty.sum()
    take = adl_allocation(policy, need, qty, notional, equity, cap)
    assert (take >= -1e-12).all() and (take <= qty * (1 + 1e-12)).all()
    assert take.sum() == pytest.approx(min(need, qty.sum()), rel=1e-9, abs=1e-9)


def test_pro_rata_cuts_everyone_by_the_same_fraction():
    qty = np.array([1.0, 2.0, 5.0])
    take = adl_allocation("pro_rata", 4.0, qty, qty * 100, qty * 10, 0.5)
    np.testing.assert_allclose(take / qty, 0.5)


def test_capped_pro_rata_spreads_the_excess_to_those_with_room():
    qty = np.array([10.0, 1.0, 1.0])
    take = adl_allocation("capped_pro_rata", 6.0, qty, qty * 100, qty * 10, 0.5)
    # plain pro rata would take 5 from the big one; the cap keeps it at 5 anyway, smaller ones give 0.5 each
    np.testing.assert_allclose(take, [5.0, 0.5, 0.5])
    # beyond the caps' capacity (6), the rest (1) is spread pro rata over what each still holds (5, .5, .5)
    take = adl_allocation("capped_pro_rata", 7.0, qty, qty * 100, qty * 10, 0.5)
    np.testing.assert_allclose(take, [5.0 + 5 / 6, 0.5 + 0.5 / 6, 0.5 + 0.5 / 6])


def test_risk_aware_takes_more_from_the_more_levered():
    qty = np.array([1.0, 1.0])
    notional = np.array([100.0, 100.0])
    equity = np.array([50.0, 5.0])  # 2x and 20x
    take = adl_allocation("risk_aware_pro_rata", 0.5, qty, notional, equity, 0.5)
    assert take[1] == pytest.approx(10 * take[0])


@pytest.mark.parametrize("policy", ["queue", *POLICIES])
def test_every_policy_conserves_money(policy):
    book = make_book(np.random.default_rng(5), 400, max_lev=100)
    eng = make_engine(book, "binance-usdm", move_pct=-15.0, depth_usd=5e5, insurance_fund_usd=0.0,
                      overrides={"adl": {"policy": policy}})
    eng.run()
    assert eng.totals.adl_count > 0
    checks = eng.conservation()
    scale = 1 + eng.totals.liquidated_long_usd + eng.totals.adl_notional_usd
    assert abs(checks["ledger_imbalance_usd"]) < 1e-9 * scale
    assert abs(checks["open_interest_mismatch_qty"]) < 1e-9 * (1 + book.qty.sum())
    adl = eng.adl_rows.to_table()
    # haircut = what a counterparty gives up against closing at mark (negative when the bankruptcy price is better)
    haircut = adl["haircut_usd"].to_numpy()
    assert haircut.size == adl.num_rows and np.isfinite(haircut).all()
    # every ADL'd counterparty sits opposite the backstop's inventory: Binance takes over longs in a crash
    assert set(adl["side"].to_numpy().tolist()) == {-1}
