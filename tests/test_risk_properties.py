"""Properties every risk model must have, on random multi-instrument, multi-collateral books.

For each model (TieredRisk as Binance / OKX, MultiAssetsRisk, HyperliquidRisk, UnifiedAccountRisk, DydxRisk,
DriftRisk, InverseRiskLimitRisk): equity and requirements do not depend on the order of the positions; an isolated
group's risk does not depend on other groups; equity = collateral value + the sum of unrealized PnL at the model's
margin price (mark; the oracle for dYdX and Drift); at a liquidation price equity equals maintenance (relative to
the group's notional); requirements are non-negative and non-decreasing in |qty|. Plus the factory's mapping.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delever.model import AccountBook, Asset, AssetRegistry, Instrument, InstrumentRegistry
from delever.risk import (
    DriftRisk,
    DydxRisk,
    HyperliquidRisk,
    InverseRiskLimitRisk,
    MultiAssetsRisk,
    Prices,
    RiskModel,
    TieredRisk,
    UnifiedAccountRisk,
    collateral_value_usd,
    group_sum,
    risk_model_for,
    whole_position_tiers,
)
from delever.risk.unified import BYBIT_EXAMPLE_TIERS
from delever.venues import load_venue

LINEAR = InstrumentRegistry(
    tuple(Instrument(f"{b}USDT", "linear_perp", b, "USDT") for b in ("BTC", "ETH", "SOL")),
    AssetRegistry((Asset("USDT"), Asset("BTC", price_from="BTCUSDT"))))
INVERSE = InstrumentRegistry(
    (Instrument("XBTUSD", "inverse_perp", "XBT", "XBT", 1.0), Instrument("XBTZ25", "inverse_future", "XBT", "XBT", 1.0)),
    AssetRegistry((Asset("XBT", price_from="XBTUSD"),)))
BIN = load_venue("binance-usdm").tiers_for("BTCUSDT")
HL = load_venue("hyperliquid")
HL_TIERS = (HL.tiers_for("BTC"), HL.tiers_for("ETH"), HL.tiers_for("SOL"))
OKX_T = whole_position_tiers(load_venue("okx").tiers_for("BTC-USDT-SWAP"))

MODELS: dict[str, tuple[RiskModel, InstrumentRegistry, str, object]] = {
    # name: (model, registry, margin price, expected collateral value (book, prices) -> (G,))
    "binance": (TieredRisk((BIN, BIN, BIN)), LINEAR, "mark", None),
    "binance-haircut": (TieredRisk((BIN, BIN, BIN), haircut=np.array([0.0, 0.05])), LINEAR, "mark", None),
    "multi-assets": (MultiAssetsRisk((BIN, BIN, BIN), haircut=np.array([0.0, 0.05])), LINEAR, "mark", None),
    "okx": (TieredRisk((OKX_T, OKX_T, OKX_T)), LINEAR, "mark", None),
    "hyperliquid": (HyperliquidRisk(HL_TIERS), LINEAR, "mark", None),
    "bybit": (UnifiedAccountRisk((BIN, BIN, BIN), collateral_tiers=(BYBIT_EXAMPLE_TIERS["USDT"], BYBIT_EXAMPLE_TIERS["BTC"])),
              LINEAR, "mark", "model"),
    "dydx": (DydxRisk(np.array([0.05, 0.1, 0.2]), np.array([0.6, 0.5, 0.5]), np.array([0.0, 2e6, 5e5]),
                      np.array([0.0, 5e6, 1e6]), open_interest_usd=np.array([0.0, 3e6, 2e6])), LINEAR, "index", None),
    "drift": (DriftRisk(np.array([0.1, 0.1, 0.2]), np.array([0.05, 0.05, 0.1]), np.array([0.0005, 0.001, 0.003])),
              LINEAR, "index", None),
    "bitmex": (InverseRiskLimitRisk.xbtusd(2), INVERSE, "mark", None),
}
HAIRCUT = {"binance-haircut": np.array([0.0, 0.05]), "multi-assets": np.array([0.0, 0.05])}


@st.composite
def books(draw, reg: InstrumentRegistry):
    """A random book: 1-4 accounts, each with cross positions in distinct instruments and isolated positions."""
    n_ins = len(reg)
    linear = not reg.inverse.any()
    rows = []
    for acc in range(draw(st.integers(1, 4))):
        cross = draw(st.lists(st.integers(0, n_ins - 1), min_size=0, max_size=n_ins, unique=True))
        iso = draw(st.lists(st.integers(0, n_ins - 1), min_size=0, max_size=2))
        if not cross and not iso:
            iso = [0]
        for ins in cross:
            rows.append((acc, ins, False))
        for ins in iso:
            rows.append((acc, ins, True))
    qty_abs = st.floats(0.01, 50.0) if linear else st.floats(1_000.0, 5_000_000.0)
    qty = [draw(qty_abs) * draw(st.sampled_from([-1.0, 1.0])) for _ in rows]
    base = [40_000.0, 2_500.0, 150.0] if linear else [40_000.0, 41_000.0]
    entry = [base[r[1]] * draw(st.floats(0.8, 1.2)) for r in rows]
    amount = st.floats(1.0, 500_000.0) if linear else st.floats(0.01, 50.0)
    wallet = {acc: draw(amount) for acc in {r[0] for r in rows}}      # one cross wallet per account
    coll = [draw(amount) if r[2] else wallet[r[0]] for r in rows]
    book = AccountBook.from_rows(reg, [r[0] for r in rows], [r[1] for r in rows], qty, entry, [r[2] for r in rows],
                                 coll, [0] * len(rows))
    if len(reg.assets) > 1:   # extra collateral (BTC) on the cross groups, sometimes a USDT debt
        cross_g = ~book.group_isolated
        book.balance[cross_g, 1] = draw(st.floats(0.0, 30.0))
        if draw(st.booleans()):
            book.balance[cross_g, 0] = -draw(st.floats(0.0, 100_000.0))
    moves = [draw(st.floats(0.7, 1.3)) for _ in range(n_ins)]
    mark = np.array(base) * np.array(moves)
    index = mark * draw(st.floats(0.98, 1.02))
    asset_usd = np.array([draw(st.floats(0.97, 1.01)), mark[0]]) if len(reg.assets) > 1 else np.array([mark[0]])
    return book, Prices(mark, index, asset_usd)


def _expected_collateral(name, model, book, prices):
    if name == "bybit":
        return model.collateral_usd(book, prices)
    return collateral_value_usd(book, prices, HAIRCUT.get(name))


def _scale(book) -> np.ndarray:
    """float64 ``(G,)`` a group's notional plus |collateral| in USD-ish units, for relative tolerances."""
    n = group_sum(book, np.abs(book.pos_qty) * book.pos_entry_price)
    return n + np.abs(book.balance).sum(axis=1) * 50_000 + 1.0


SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", list(MODELS))
@SETTINGS
@given(data=st.data())
def test_order_of_positions_does_not_matter(name, data):
    model, reg, _, _ = MODELS[name]
    book, prices = data.draw(books(reg))
    perm = np.array(data.draw(st.permutations(range(book.n_positions))))
    shuffled = AccountBook(reg, book.account_id, book.group_account, book.group_isolated, book.pos_group[perm],
                           book.pos_instrument[perm], book.pos_qty[perm], book.pos_entry_price[perm], book.balance)
    a, b = model.evaluate(book, prices), model.evaluate(shuffled, prices)
    tol = 1e-12 * _scale(book)
    for f in ("equity_usd", "maint_usd", "initial_usd"):
        np.testing.assert_allclose(getattr(b, f), getattr(a, f), rtol=0, atol=tol.max())
    np.testing.assert_allclose(b.pos_maint_usd, a.pos_maint_usd[perm], rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("name", list(MODELS))
@SETTINGS
@given(data=st.data())
def test_isolated_group_ignores_other_groups(name, data):
    model, reg, _, _ = MODELS[name]
    book, prices = data.draw(books(reg))
    iso = np.flatnonzero(book.group_isolated)
    if iso.size == 0:
        return
    g = int(iso[0])
    other = book.copy()
    mine = other.pos_group == g
    other.pos_qty[~mine] *= data.draw(st.floats(0.1, 10.0))
    other.pos_entry_price[~mine] *= data.draw(st.floats(0.5, 2.0))
    keep = np.arange(other.n_groups) != g
    other.balance[keep] *= data.draw(st.floats(0.0, 3.0))
    a, b = model.evaluate(book, prices), model.evaluate(other, prices)
    for f in ("equity_usd", "maint_usd", "initial_usd"):
        assert getattr(b, f)[g] == pytest.approx(getattr(a, f)[g], rel=1e-12, abs=1e-9)


@pytest.mark.parametrize("name", list(MODELS))
@SETTINGS
@given(data=st.data())
def test_equity_is_collateral_plus_upnl_at_the_margin_price(name, data):
    model, reg, price_kind, _ = MODELS[name]
    book, prices = data.draw(books(reg))
    r = model.evaluate(book, prices)
    px = (prices.mark if price_kind == "mark" else prices.index)[book.pos_instrument]
    upnl = reg.pnl_settle(book.pos_instrument, book.pos_qty, book.pos_entry_price, px) * \
        prices.asset_usd[reg.settle_code[book.pos_instrument]]
    np.testing.assert_allclose(r.pos_upnl_usd, upnl, rtol=1e-12, atol=1e-9)
    expected = _expected_collateral(name, model, book, prices) + group_sum(book, upnl)
    np.testing.assert_allclose(r.equity_usd, expected, rtol=0, atol=(1e-12 * _scale(book)).max())
    np.testing.assert_allclose(r.maint_usd, group_sum(book, r.pos_maint_usd), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("name", [n for n, m in MODELS.items() if hasattr(m[0], "liquidation_price")])
@SETTINGS
@given(data=st.data())
def test_equity_equals_maintenance_at_the_liquidation_price(name, data):
    model, reg, _, _ = MODELS[name]
    book, prices = data.draw(books(reg))
    lp = model.liquidation_price(book, prices)
    for p in np.flatnonzero(np.isfinite(lp)):
        moved = Prices(prices.mark.copy(), prices.index.copy(), prices.asset_usd)
        moved.mark[book.pos_instrument[p]] = lp[p]
        r = model.evaluate(book, moved)
        g = book.pos_group[p]
        notional = float(group_sum(book, r.pos_notional_usd)[g]) + float(np.abs(r.pos_upnl_usd[book.pos_group == g]).sum())
        assert float(r.equity_usd[g]) == pytest.approx(float(r.maint_usd[g]), abs=1e-9 * (notional + 1.0))


@pytest.mark.parametrize("name", list(MODELS))
@SETTINGS
@given(data=st.data())
def test_requirements_non_negative_and_monotone_in_size(name, data):
    model, reg, _, _ = MODELS[name]
    n = len(reg)
    ins = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=6)), dtype=np.int32)
    lo, hi = (0.001, 5_000.0) if not reg.inverse.any() else (1.0, 1e9)
    q = np.array([data.draw(st.floats(lo, hi)) * data.draw(st.sampled_from([-1.0, 1.0])) for _ in ins])
    price = np.array([data.draw(st.floats(10.0, 100_000.0)) for _ in ins])
    grow = np.array([data.draw(st.floats(1.0, 5.0)) for _ in ins])
    mm1, im1 = model.position_requirement(ins, q, price)
    mm2, im2 = model.position_requirement(ins, q * grow, price)
    assert (mm1 >= 0).all() and (im1 >= 0).all()
    assert (mm2 >= mm1 * (1 - 1e-12)).all() and (im2 >= im1 * (1 - 1e-12)).all()
    assert (im1 >= mm1 * (1 - 1e-12)).all()


@pytest.mark.parametrize(("venue", "symbols", "settle", "cls"), [
    ("binance-usdm", ["BTCUSDT"], "USDT", TieredRisk), ("hyperliquid", ["BTC", "ETH"], "USDC", HyperliquidRisk),
    ("bybit", ["BTCUSDT"], "USDT", UnifiedAccountRisk), ("okx", ["BTC-USDT-SWAP"], "USDT", TieredRisk),
    ("bitmex", ["XBTUSD"], "USD", TieredRisk), ("dydx-v4", ["BTC-USD", "ETH-USD"], "USDC", DydxRisk),
    ("drift", ["SOL-PERP", "BTC-PERP"], "USDC", DriftRisk),
])
def test_factory_maps_every_preset(venue, symbols, settle, cls):
    model = risk_model_for(load_venue(venue), InstrumentRegistry.linear(symbols, settle=settle))
    assert type(model) is cls and isinstance(model, RiskModel)


def test_factory_variants():
    assert isinstance(risk_model_for(load_venue("bitmex"), INVERSE), InverseRiskLimitRisk)
    multi = risk_model_for(load_venue("binance-usdm"), InstrumentRegistry.linear(["BTCUSDT"]),
                           collateral_haircut=np.array([0.0001]))
    assert isinstance(multi, MultiAssetsRisk)
    okx = risk_model_for(load_venue("okx"), InstrumentRegistry.linear(["BTC-USDT-SWAP"]))
    assert (okx.tiers[0].maint_amount_usd == 0).all()
    dy = risk_model_for(load_venue("dydx-v4"), InstrumentRegistry.linear(["BTC-USD"], settle="USDC"))
    assert dy.initial_margin.tolist() == [0.02] and dy.maintenance_fraction.tolist() == [0.6]
    dr = risk_model_for(load_venue("drift"), InstrumentRegistry.linear(["SOL-PERP"], settle="USDC"))
    assert dr.margin_ratio_maintenance.tolist() == [0.03] and dr.imf_factor.tolist() == [0.0005]
