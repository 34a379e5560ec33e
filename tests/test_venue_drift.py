"""Drift protocol-v2: formulas against Drift's own Rust unit tests, and the engine's Drift liquidation path.

Expected numbers are quoted from the Rust tests (file path @ commit, test fn name), in Drift's units:
price/quote 1e6, base 1e9, margin 1e4, liquidation fee 1e6, liquidation pct 1e4, funding 1e9.
The drift-labs copy of ``math/liquidation/tests.rs`` in the index (@ f01db28d) predates the tests of
``calculate_perp_if_fee``, ``calculate_max_pct_to_liquidate`` and ``get_liquidation_fee``; those are quoted
from the Drift fork velocity-exchange/velocity-v1 ``programs/drift/src/math/liquidation/tests.rs`` @ 771d93dd.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from delever.book import PositionBook
from delever.cli import app
from delever.engine.core import CascadeEngine
from delever.engine.ledger import FEE_POOL, INSURANCE_FUND, LIQUIDATOR_VAULT, party_name
from delever.errors import DeleverInputError
from delever.market.depth import parametric_curve
from delever.paths import PricePath
from delever.scenario import VenueSection
from delever.venues import PRESETS, load_venue
from delever.venues import drift as dm

Q = dm.QUOTE_PRECISION
P6 = dm.PRICE_PRECISION
B9 = dm.BASE_PRECISION
LF = dm.LIQUIDATION_FEE_PRECISION
MP = dm.MARGIN_PRECISION
PCT = dm.LIQUIDATION_PCT_PRECISION


# =========================================================================== formulas vs Rust unit tests
class TestBaseToCoverMarginShortage:
    """drift-labs/protocol-v2 programs/drift/src/math/liquidation/tests.rs @ f01db28d,
    mod calculate_base_asset_amount_to_cover_margin_shortage."""

    def test_zero_percent_liquidation_fee(self):
        assert dm.base_to_cover_margin_shortage_int(10 * Q, MP // 10, 0, 0, 100 * P6, P6) == B9  # must lose 1 base

    def test_usdc_not_one(self):
        assert dm.base_to_cover_margin_shortage_int(10 * Q, MP // 10, 0, 0, 100 * P6, 99 * 10000) == 1010101010
        assert dm.base_to_cover_margin_shortage_int(10 * Q, MP // 10, 0, 0, 100 * P6, 101 * 10000) == 990099009

    def test_one_percent_liquidation_fee(self):
        base = dm.base_to_cover_margin_shortage_int(10 * Q, MP // 10, LF // 100, 0, 100 * P6, P6)
        assert base == B9 * 10 // 9
        freed = base * 100 * P6 // P6 // 1000 * (MP // 10) // MP
        negative_pnl = base * 100 * P6 // P6 // 1000 * (LF // 100) // LF
        assert freed - negative_pnl == 10000000

    def test_one_percent_liquidation_fee_and_one_percent_if_liquidation_fee(self):
        base = dm.base_to_cover_margin_shortage_int(10 * Q, MP // 10, LF // 100, LF // 100, 100 * P6, P6)
        assert base == 1250000000
        value = base * 100 * P6 // P6 // 1000
        assert value * (MP // 10) // MP - value * (LF // 100) // LF - value * (LF // 100) // LF == 10000000

    def test_fee_eating_the_margin_ratio_gives_u64_max(self):
        # `if oracle_price == 0 || margin_ratio <= liquidation_fee { return Ok(u64::MAX) }` (liquidation.rs)
        assert dm.base_to_cover_margin_shortage_int(10 * Q, 100, LF // 100, 0, 100 * P6) == dm.U64_MAX


def test_calculate_perp_if_fee():
    """velocity-v1 (Drift fork) math/liquidation/tests.rs @ 771d93dd, mod calculate_perp_if_fee, fn test."""
    kw = dict(user_base=10 * B9, margin_ratio=MP // 20, liquidator_fee=LF // 100, oracle_price=100 * P6,
              quote_oracle_price=P6, max_if_liquidation_fee=LF // 20)
    assert dm.perp_if_fee_int(20 * Q, **kw) == 19000            # 2% * .95
    assert dm.perp_if_fee_int(Q, **kw) == 37050                 # 3.9% * .95
    assert dm.perp_if_fee_int(1000 * Q, **kw) == 0
    assert dm.perp_if_fee_int(20 * Q, **{**kw, "liquidator_fee": LF // 10}) == 0
    assert dm.perp_if_fee_int(20 * Q, **{**kw, "oracle_price": 0}) == 0
    assert dm.perp_if_fee_int(20 * Q, **{**kw, "quote_oracle_price": 0}) == 0
    assert dm.perp_if_fee_int(20 * Q, **{**kw, "user_base": 0}) == 0


def test_calculate_max_pct_to_liquidate_small_shortage_is_full():
    """velocity-v1 @ 771d93dd, mod calculate_max_pct_to_liquidate, fn test: $49 shortage -> 100 %."""
    assert dm.max_pct_to_liquidate_int(49 * Q, 1, PCT // 10, 10) == PCT


def test_calculate_max_pct_to_liquidate_ramp():
    # Documented in liquidation.rs: pct = slots * 1e4 / duration + initial, capped at 100 %, "~ 1 minute if per
    # slot is 400ms" (duration 150). 75 slots of 150 after 10 % initial -> 60 % of a $1000 shortage.
    assert dm.max_pct_to_liquidate_int(1000 * Q, 75, PCT // 10, 150) == 6000
    assert dm.max_pct_to_liquidate_int(1000 * Q, 10**6, PCT // 10, 150) == PCT
    assert dm.max_pct_to_liquidate_int(1000 * Q, 5, PCT // 10, 0) == PCT   # "if divide by zero, default to 100%"
    # $100 already freed of a $1000 total: at 10 % nothing more may be freed now.
    assert dm.max_pct_to_liquidate_int(900 * Q, 0, PCT // 10, 150, liquidation_margin_freed=100 * Q) == 0


def test_get_liquidation_fee():
    """velocity-v1 @ 771d93dd, mod get_liquidation_fee, fn test."""
    base, top = 2 * LF // 100, 5 * LF // 100
    assert dm.liquidation_fee_after_grace_int(base, top, 100000) == top
    assert dm.liquidation_fee_after_grace_int(base, top, 10) == base
    assert dm.liquidation_fee_after_grace_int(base, top, 10000) == 3 * LF // 100


def test_funding_rate_deltas_to_resolve_bankruptcy():
    """drift-labs math/liquidation/tests.rs @ f01db28d, mod calculate_funding_rate_deltas_to_resolve_bankruptcy."""
    assert dm.funding_rate_delta_to_resolve_bankruptcy_int(-100 * Q, 7 * B9, -4 * B9) == 9090910000
    with pytest.raises(ValueError, match="total base asset amount is 0"):   # total_base_asset_amount_is_zero
        dm.funding_rate_delta_to_resolve_bankruptcy_int(-Q, 0, 0)


def test_size_premium_margin_requirement_whale():
    """drift-labs controller/liquidation/tests.rs @ 49d8db7a, successful_liquidation_long_perp_whale_imf_factor:
    10000 base + 1 open bid at $100, maintenance 500, imf 1000 -> 140014010000, imf 10000 -> 1040104010000
    (each includes Drift's $0.01 OPEN_ORDER_MARGIN_REQUIREMENT for the one open order)."""
    open_order = Q // 100
    assert dm.margin_requirement_int(10001 * B9, 100 * P6, 500, 1000) + open_order == 140014010000
    assert dm.margin_requirement_int(10001 * B9, 100 * P6, 500, 10000) + open_order == 1040104010000


def test_if_payment_bounds():
    # resolve_perp_bankruptcy (controller/liquidation.rs @ e88cc473): min(|loss|, vault - 1, max - settled)
    assert dm.if_payment_int(-100 * Q, 1000 * Q, 10**9 * Q, 0) == 100 * Q
    assert dm.if_payment_int(-100 * Q, 50 * Q, 10**9 * Q, 0) == 50 * Q - 1
    assert dm.if_payment_int(-100 * Q, 1000 * Q, 100 * Q, 70 * Q) == 30 * Q


def test_vectorized_forms_agree_with_the_exact_ones():
    base = dm.base_to_cover_margin_shortage(10.0, 0.1, 0.01, 0.01, 100.0)
    assert base == pytest.approx(1250000000 / B9, rel=1e-12)
    fee = dm.perp_if_fee(np.array([20.0, 1.0, 1000.0]), 10.0, 0.05, 0.01, 100.0, 0.05)
    np.testing.assert_allclose(fee, np.array([19000, 37050, 0]) / LF, rtol=1e-12)
    mr = dm.margin_ratio(10000.0, 0.05, 0.01)   # 0.8 x 5 % + 0.01 x 100 = 104 % (Rust: 10400 / 1e4)
    assert mr == pytest.approx(1.04)
    pct = dm.max_pct_to_liquidate(np.array([49.0, 1000.0]), np.array([1.0, 75.0]), 0.1, 150.0)
    np.testing.assert_allclose(pct, [1.0, 0.6])


# =========================================================================== engine
def _market(**kw) -> dict:
    m = dict(margin_ratio_initial=0.1, margin_ratio_maintenance=0.05, imf_factor=0.0, liquidator_fee=0.01,
             if_liquidation_fee=0.01, quote_max_insurance_usd=1e12, fee_pool_usd=0.0)
    m.update(kw)
    return m


def _engine(side, qty, entry, coll, prices, market=None, insurance_fund_usd=0.0, **drift_kw) -> CascadeEngine:
    """Engine on the drift preset with a test market ``BTC`` and a replayed oracle path (dt 1 s, no impact)."""
    market = market or _market()
    rule = dict(liquidation_margin_buffer_ratio=0.02, initial_pct_to_liquidate=1.0, liquidation_duration_slots=150,
                liquidator_capital_usd=1e6)
    rule.update(drift_kw)
    rule["markets"] = {"BTC": market}
    venue = load_venue("drift", {"drift": rule, "backstop": {"unwind_half_life_s": 1e12},
                                 "tiers": {"BTC": {"mmr": [market["margin_ratio_maintenance"]]}}})
    n = len(side)
    book = PositionBook("BTC-PERP", np.arange(n), np.asarray(side, np.int8), np.asarray(qty, float),
                        np.asarray(entry, float), np.asarray(coll, float), np.ones(n, bool))
    prices = np.asarray(prices, float)
    path = PricePath(np.arange(prices.size, dtype=float), prices, "replay", "test", None)
    depth = parametric_curve("sqrt", 1e12, float(prices[0]))
    return CascadeEngine(venue, venue.tiers_for("BTC"), book, depth, path, 0.0, 30.0, 50.0, 50, insurance_fund_usd)


def _balanced(eng: CascadeEngine) -> None:
    c = eng.conservation()
    tol = 1e-12 * (1.0 + sum(abs(v) for v in eng._start_money.values()))   # float residue of large balances
    assert abs(c["ledger_imbalance_usd"]) < tol and c["ledger_reconciliation_usd"] < tol
    assert abs(c["open_interest_mismatch_qty"]) < 1e-9


def test_engine_reproduces_successful_liquidation_to_cover_margin_shortage():
    """drift-labs controller/liquidation/tests.rs @ 49d8db7a, liquidate_perp::successful_liquidation_to_cover_margin_shortage.

    User: 2 base long, quote -200 (entry 100), $5 deposit; oracle 100; MR 500, buffer 200, fees 1 % / 1 %.
    Rust: user base 200000000, quote -23600000 (balance 5 - 23.6 + 0.2 x 100 = 1.4 USD); liquidator base
    1800000000, quote -178200000 (1.8 USD fee); total_liquidation_fee 1800000; user margin ratio after 700.
    """
    eng = _engine([1], [2.0], [100.0], [5.0], [100.0], initial_pct_to_liquidate=1.0)
    eng.run()
    assert eng.qty[0] == pytest.approx(200000000 / B9, abs=1e-12)
    assert eng.coll[0] + eng.qty[0] * (100.0 - 100.0) == pytest.approx(5.0 - 23.6 + 20.0, abs=1e-9)
    liq = eng.liq_rows.to_table()
    assert liq["qty"].to_pylist() == pytest.approx([1800000000 / B9])
    assert eng.totals.liquidator_fee_usd == pytest.approx((-178200000 + 180 * Q) / Q)
    assert eng.totals.if_fee_usd == pytest.approx(1800000 / Q)
    assert eng.coll[0] / (eng.qty[0] * 100.0) * MP == pytest.approx(700)
    assert not eng.drift.being[0]                      # shortage cured incl. buffer: out of liquidation
    _balanced(eng)


def test_engine_reproduces_successful_liquidation_long_perp_then_socializes_the_bankruptcy():
    """drift-labs controller/liquidation/tests.rs @ 49d8db7a, liquidate_perp::successful_liquidation_long_perp.

    User: 1 base long at quote -150, no deposit; oracle 100; buffer 10 (0.1 %). Rust: user base 0, quote
    -51000000; liquidator base 1e9, quote -99000000 (1 USD fee); total_liquidation_fee 0. The user is then
    bankrupt by 51 USD: with an empty insurance fund and fee pool, the liquidator (the only open position)
    pays it all through the socialized funding delta (51 USD per base).
    """
    eng = _engine([1], [1.0], [150.0], [0.0], [100.0], liquidation_margin_buffer_ratio=0.001)
    eng.run()
    assert eng.qty[0] == 0.0
    assert eng.totals.liquidator_fee_usd == pytest.approx((-99 * Q + 100 * Q) / Q)
    assert eng.totals.if_fee_usd == 0.0
    b = eng.drift.rows.to_table().to_pylist()
    assert len(b) == 1 and b[0]["loss_usd"] == pytest.approx(51.0)
    assert b[0]["insurance_fund_usd"] == 0.0 and b[0]["fee_pool_usd"] == 0.0
    assert b[0]["socialized_usd"] == pytest.approx(51.0) and b[0]["funding_delta_usd_per_base"] == pytest.approx(51.0)
    assert eng.coll[0] == 0.0 and eng.free[0] == 0.0
    _balanced(eng)


def test_bankruptcy_order_insurance_fund_then_fee_pool_then_socialized():
    # A: 10 long from 100 with $1 at oracle 80 -> taken over whole (initial pct 100 %); balance 1 - 200 - 8 (1 %
    # liquidator fee on 800; IF fee 0: no room) = -207. IF $51 pays 50 (vault - 1), fee pool $100 pays 100, the
    # remaining 57 is socialized over B (5 long), C (15 short) and the liquidator's 10: 1.9 USD per base.
    eng = _engine([1, 1, -1], [10.0, 5.0, 15.0], [100.0, 80.0, 80.0], [1.0, 1000.0, 1000.0], [80.0],
                  market=_market(fee_pool_usd=100.0), insurance_fund_usd=51.0)
    eng.run()
    rows = eng.drift.rows.to_table().to_pylist()
    assert [r["account"] for r in rows] == [0]
    r = rows[0]
    assert r["loss_usd"] == pytest.approx(207.0)
    assert (r["insurance_fund_usd"], r["fee_pool_usd"]) == pytest.approx((50.0, 100.0))
    assert r["socialized_usd"] == pytest.approx(57.0) and r["funding_delta_usd_per_base"] == pytest.approx(1.9)
    np.testing.assert_allclose(eng.coll[1:], [1000.0 - 5 * 1.9, 1000.0 - 15 * 1.9])
    assert eng.drift.if_cash == pytest.approx(1.0) and eng.drift.fee_pool_cash == 0.0
    assert eng.totals.socialized_loss_usd == pytest.approx(57.0)
    ledger = eng.ledger.to_table().to_pylist()
    social = [x for x in ledger if x["kind"] == "socialized_loss"]
    assert {x["from_party"] for x in social} == {1, 2, LIQUIDATOR_VAULT}
    assert sum(x["amount_usd"] for x in social) == pytest.approx(57.0)
    kinds = [x["kind"] for x in ledger if x["to_party"] == 0 and x["kind"].startswith("bankruptcy")]
    assert kinds == ["bankruptcy_insurance_fund", "bankruptcy_fee_pool"]
    assert party_name(FEE_POOL) == "fee_pool" and FEE_POOL == -5
    _balanced(eng)


def test_insurance_fund_payment_is_capped_by_the_market_max_insurance():
    eng = _engine([1, -1], [10.0, 15.0], [100.0, 80.0], [1.0, 1000.0], [80.0],
                  market=_market(quote_max_insurance_usd=20.0), insurance_fund_usd=1e6)
    eng.run()
    r = eng.drift.rows.to_table().to_pylist()[0]
    assert r["insurance_fund_usd"] == pytest.approx(20.0) and eng.drift.settled_insurance == pytest.approx(20.0)
    assert r["socialized_usd"] == pytest.approx(207.0 - 20.0)
    _balanced(eng)


def test_time_ramp_and_buffer_exit():
    # 100 long from 100 with $600 at oracle 96: equity 200, requirement 480, buffer 192 -> shortage 472 (>= $50,
    # so the ramp applies). IF fee at its 0.1 % cap, so each base frees 96 x (7 % - 1 % - 0.1 %) = 5.664 USD and
    # curing needs 472 / 5.664 = 83.33 base. The ramp allows 10 % + slots/150 of it, slots = seconds / 0.4.
    steps = 61
    eng = _engine([1], [100.0], [100.0], [600.0], np.full(steps, 96.0),
                  market=_market(if_liquidation_fee=0.001), initial_pct_to_liquidate=0.1)
    eng.run()
    liq = eng.liq_rows.to_table()
    t, qty = liq["t_s"].to_numpy(), liq["qty"].to_numpy()
    cover = 472.0 / 5.664
    for k in (0, 10, 30, 47):
        assert qty[t <= k].sum() == pytest.approx(min(0.1 + k * 2.5 / 150, 1.0) * cover, rel=1e-9)
    assert qty.sum() == pytest.approx(cover, rel=1e-9)
    # At 48 s the ramp reaches 90 %: the shortage left, 472 x 10 % = 47.2 USD, is below $50 -> the rest at once.
    assert t.max() == 48 and (t == 48).sum() == 2
    # Liquidation continued while equity was back above maintenance: the buffer keeps the account in.
    eq, mm = liq["equity_usd"].to_numpy(), liq["maint_margin_usd"].to_numpy()
    assert (eq >= mm).any()
    q = eng.qty[0]
    assert eng.coll[0] + q * (96.0 - 100.0) == pytest.approx(q * 96.0 * (0.05 + 0.02), rel=1e-9)
    assert not eng.drift.being[0]
    _balanced(eng)


def test_price_bands_breached_refuses_liquidation():
    # Oracle jumps 100 -> 40: |40 - twap| / twap >= 50 % on the jump step, so no liquidation then; the TWAP
    # catches up over the 5-min window and the liquidation happens once the divergence is below 50 %.
    prices = np.r_[100.0, np.full(200, 40.0)]
    eng = _engine([1, -1], [1.0, 1.0], [100.0, 100.0], [61.0, 1000.0], prices)
    eng.run()
    liq = eng.liq_rows.to_table()
    assert eng.totals.price_band_refusals > 0
    first = liq["t_s"].to_numpy().min()
    twap = 100.0
    for _ in range(int(first)):
        twap = (twap * 299 + 40.0) / 300
    assert abs(40.0 - twap) / twap < 0.5
    twap_before = (twap - 40.0 / 300) * 300 / 299
    assert abs(40.0 - twap_before) / twap_before >= 0.5
    _balanced(eng)


def test_liquidator_capacity_limits_takeovers():
    # Liquidator capital $9 at 10 % initial margin, 1 % fee received: 9 + 1 x = 10 x -> 1 base of a 5 base long.
    eng = _engine([1], [5.0], [100.0], [1.0], [100.0], liquidator_capital_usd=9.0)
    eng.run()
    assert eng.liq_rows.to_table()["qty"].to_pylist() == pytest.approx([1.0], rel=1e-12)
    assert eng.drift.being[0]
    _balanced(eng)


# =========================================================================== rules, kernel, CLI
def test_preset_loads_and_is_listed():
    assert "drift" in PRESETS
    v = load_venue("drift")
    assert v.drift is not None and v.mark.method == "index" and v.backstop.holder == "liquidator_vault"
    assert v.drift.market_for("SOL-PERP", "drift").margin_ratio_maintenance == v.tiers_for("SOL-PERP").mmr[0]
    with pytest.raises(DeleverInputError, match="no drift.markets entry for instrument 'ETH-PERP'"):
        v.drift.market_for("ETH-PERP", "drift")


def test_bad_drift_rules_are_named():
    with pytest.raises(DeleverInputError, match="liquidator_fee must be below margin_ratio_maintenance"):
        load_venue("drift", {"drift": {"markets": {"SOL": {"liquidator_fee": 0.05}}}})
    with pytest.raises(DeleverInputError, match=r"drift.markets.SOL: needs tiers.SOL"):
        load_venue("drift", {"tiers": {"SOL": {"mmr": [0.04]}}})
    with pytest.raises(DeleverInputError, match="initial_pct_to_liquidate"):
        load_venue("drift", {"drift": {"initial_pct_to_liquidate": 1.5}})


def test_scenario_preset_validated_against_presets():
    assert VenueSection(preset="drift").preset == "drift"
    with pytest.raises(ValueError, match=r"unknown venue 'nope' \(known: .*drift"):
        VenueSection(preset="nope")


def test_fast_kernel_declines_drift():
    from types import SimpleNamespace

    from delever.engine.fast import fast_kernel_support
    from delever.scenario import Scenario

    ok, why = fast_kernel_support(SimpleNamespace(venue=load_venue("drift"), book=[1], scenario=Scenario()))
    assert not ok and "Drift" in why


def test_cli_run_on_drift_balances():
    result = CliRunner().invoke(app, ["run", "--json", "--no-write", "--set", "venue.preset=drift", "--set",
                                      "market.instrument=SOL-PERP", "--set", "book.synthesize.positions=2000"])
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout.strip().splitlines()[-1])
    assert s["venue"] == "drift" and s["liquidation_count"] > 0 and "socialized_loss_usd" in s
    assert abs(s["ledger_imbalance_usd"]) <= 1e-9 * max(s["liquidated_notional_usd"], 1.0) * 1e3
    assert s["ledger_reconciliation_usd"] <= 1e-6 * max(s["liquidated_notional_usd"], 1.0)


SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 40), move=st.floats(-45.0, 45.0),
       fund=st.floats(0.0, 1e5), pool=st.floats(0.0, 1e4), capital=st.floats(0.0, 1e7))
def test_drift_money_is_conserved(seed, n, move, fund, pool, capital):
    rng = np.random.default_rng(seed)
    side = rng.choice(np.array([1, -1], np.int8), n)
    qty = rng.lognormal(0.0, 1.0, n) + 1e-3
    entry = 100.0 * np.exp(rng.normal(0.0, 0.03, n))
    coll = qty * 100.0 / rng.uniform(1.5, 18.0, n)
    steps = 40
    prices = 100.0 * (1 + move / 100 * np.minimum(np.arange(steps) / 10, 1.0))
    eng = _engine(side, qty, entry, coll, prices, market=_market(fee_pool_usd=pool, imf_factor=0.001),
                  insurance_fund_usd=fund, initial_pct_to_liquidate=0.1, liquidator_capital_usd=capital)
    eng.run()
    scale = 1.0 + float((qty * 100.0).sum())
    c = eng.conservation()
    assert abs(c["ledger_imbalance_usd"]) <= 1e-9 * scale and c["ledger_reconciliation_usd"] <= 1e-9 * scale
    assert abs(c["open_interest_mismatch_qty"]) <= 1e-9 * (1.0 + qty.sum())
    closed = eng.qty <= 0
    assert (eng.coll[closed] == 0).all() and (eng.free >= -1e-9 * scale).all()   # bankruptcies resolved
    assert (eng.qty >= 0).all()
    assert eng.drift.if_cash >= -1e-9 * scale and eng.drift.fee_pool_cash >= -1e-9 * scale   # round-off of the flows
    party_flows = eng.ledger.net_flows()
    assert party_flows.get(INSURANCE_FUND, 0.0) == pytest.approx(eng.drift.if_cash - fund, abs=1e-9 * scale)
