"""The account engine equals the one-instrument engine on one-instrument books, decision for decision.

Until every venue runs on the account engine, ``engine.core.CascadeEngine`` is the reference: on binance-usdm,
hyperliquid, bybit, okx and bitmex (the venues the account engine runs), the same book and path give the same
liquidations, ADL, bad debt, fund and fee pool. OKX's tiers are those of BTC-USDT-SWAP; the shock starts at
BTCUSDT's default start price for every venue. A fund of 1e5 makes OKX's rapid-drop ADL (at mark) happen.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delever.accounts_run import account_engine_for
from delever.runner import make_engine, prepare
from delever.scenario import load_scenario, resolve_data_dir

VENUES = {"binance-usdm": "BTCUSDT", "hyperliquid": "BTC", "bybit": "BTCUSDT", "okx": "BTC-USDT-SWAP", "bitmex": "XBTUSD"}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(venue=st.sampled_from(sorted(VENUES)), move=st.floats(-25, 25).filter(lambda x: abs(x) > 1),
       fund=st.sampled_from([0.0, 1e5, 1e6, 1e7, 5e8]), policy=st.sampled_from(["queue", "pro_rata", "capped_pro_rata"]),
       seed=st.integers(0, 1000), depth=st.sampled_from([5e6, 5e7]))
def test_account_engine_equals_position_engine(venue, move, fund, policy, seed, depth):
    sets = [f'venue.preset="{venue}"', f'market.instrument="{VENUES[venue]}"', "market.start_price=117000.0", f"price_driver.move_pct={move}",
            f"insurance_fund.initial_usd={fund}", "book.synthesize.positions=800", f"seed={seed}",
            f'venue.overrides.adl.policy="{policy}"', f"market.depth.depth_usd_at_1pct={depth}",
            "price_driver.hold_s=40"]
    prep = prepare(load_scenario(None, sets), resolve_data_dir())
    old = make_engine(prep)
    old.run()
    new = account_engine_for(prep)
    new.run()
    T = old.totals
    assert int(new.per.liquidation_count.sum()) == T.liquidations
    assert new.per.liquidated_long_usd.sum() == pytest.approx(T.liquidated_long_usd, rel=1e-9, abs=1e-6)
    assert new.per.liquidated_short_usd.sum() == pytest.approx(T.liquidated_short_usd, rel=1e-9, abs=1e-6)
    assert int(new.per.adl_count.sum()) == T.adl_count
    assert new.per.adl_notional_usd.sum() == pytest.approx(T.adl_notional_usd, rel=1e-9, abs=1e-6)
    assert new.totals.bad_debt_usd == pytest.approx(T.bad_debt_usd, rel=1e-9, abs=1e-3)
    assert new.backstop_equity_usd() == pytest.approx(old.backstop.equity(old.final_mark), rel=1e-9, abs=1e-3)
    assert new.totals.trader_liquidation_loss_usd == pytest.approx(T.trader_liquidation_loss_usd, rel=1e-9, abs=1e-3)
    assert new.fee_pool_cash.sum() == pytest.approx(old.fee_pool_cash, rel=1e-9, abs=1e-3)
