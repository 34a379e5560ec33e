"""Multi-instrument synthesizer: targets, equilibrium at the start against real klines, seeds, bad input."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delever.data.klines import parse_utc_ms, read_klines
from delever.errors import DeleverInputError
from delever.model.accounts import AccountBook
from delever.model.instruments import InstrumentRegistry
from delever.risk.base import Prices
from delever.risk.tiered import TieredRisk
from delever.synthesize_multi import (
    LeverageMixParams,
    MultiSynthesisParams,
    PriceBars,
    liquidated_before_start,
    synthesize_accounts,
)
from delever.venues.tiers import MarginTiers

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
COINS = ("BTC", "SOL", "XRP", "DOGE", "ADA", "LTC", "TRX", "AVAX", "LINK")
OI = (8e9, 2e9, 1.5e9, 8e8, 4e8, 2e8, 1.5e8, 2e8, 3e8)

pytestmark = pytest.mark.skipif(not (DATA / "oct10-2025-coins").is_dir(), reason="shared data not mounted")


def _binance_tiers(coin: str) -> MarginTiers:
    """Binance USD-M brackets of ``coin`` (risk-params/binance_usdm_leverage_tiers_ccxt_2024-10-24.json.gz)."""
    raw = json.loads(gzip.open(DATA / "risk-params" / "binance_usdm_leverage_tiers_ccxt_2024-10-24.json.gz").read())
    t = raw[f"{coin}/USDT:USDT"]
    return MarginTiers.from_floors([x["minNotional"] for x in t], [x["maxLeverage"] for x in t],
                                   [x["maintenanceMarginRate"] for x in t], where=coin)


@pytest.fixture(scope="module")
def nine():
    """Registry, risk, and a loader of the 2025-10-10 bars before a start time (bars, start prices = start bar open)."""
    reg = InstrumentRegistry.linear([c + "USDT" for c in COINS])
    risk = TieredRisk(tuple(_binance_tiers(c) for c in COINS))
    klines = [read_klines(DATA / "oct10-2025-coins" / f"{c}USDT-1m-2025-10-10-window.csv") for c in COINS]

    def before(start: str):
        end = parse_utc_ms(start, "start")
        bars = tuple(PriceBars.from_klines(k.select(None, end)) for k in klines)
        sp = np.array([float(k.open[k.open_time_ms == end][0]) for k in klines])
        return bars, sp

    return reg, risk, before


def _reference_liquidated(book: AccountBook, risk: TieredRisk, bars, start_prices, entry_bar,
                          groups: int | None = None) -> np.ndarray:
    """Slow reference: every group (the first ``groups`` of them), every bar, the risk model's own ``evaluate`` on a
    one-group book at the bar's adverse prices (long -> low, short -> high), positions open from the bar after their
    entry bar."""
    H = bars[0].close.size if bars is not None else 0
    out = np.zeros(book.n_groups, dtype=bool)
    asset_usd = np.ones(len(book.registry.assets))
    for g in range(book.n_groups if groups is None else groups):
        rows = np.flatnonzero(book.pos_group == g)
        opened = np.array([H if entry_bar[r] < 0 else entry_bar[r] + 1 for r in rows])
        for t in range(int(opened.min()), H + 1):
            live = rows[opened <= t]
            mark = start_prices.copy() if t == H else np.array([b.close[t] for b in bars])
            for r in live:
                i = book.pos_instrument[r]
                if t < H:
                    mark[i] = bars[i].low[t] if book.pos_qty[r] > 0 else bars[i].high[t]
            sub = AccountBook(book.registry, np.array([0]), np.array([0]), np.array([book.group_isolated[g]]),
                              np.zeros(live.size, dtype=np.int64), book.pos_instrument[live], book.pos_qty[live],
                              book.pos_entry_price[live], book.balance[g][None, :])
            if risk.evaluate(sub, Prices(mark, mark, asset_usd)).liquidatable[0]:
                out[g] = True
                break
    return out


def test_targets_met_on_nine_coins(nine):
    reg, risk, before = nine
    bars, sp = before("2025-10-10 21:10")
    share = (0.5, 0.25, 0.15, 0.1)
    ratio = (1.0, 1.2, 0.8, 1.5, 1.0, 1.0, 0.7, 1.0, 2.0)
    A = 60_000
    p = MultiSynthesisParams(open_interest_usd=OI, accounts=A, long_short_ratio=ratio,
                             instruments_per_account_share=share, side_correlation=0.6, cross_share=0.4)
    book, rep = synthesize_accounts(p, reg, sp, bars, np.random.default_rng(11), risk)
    # open interest exact per instrument and side, and what the book holds agrees with the report
    np.testing.assert_allclose(rep.open_interest_usd, np.repeat(np.array(OI)[:, None], 2, axis=1), rtol=1e-9)
    np.testing.assert_allclose(book.open_interest_qty() * sp[:, None], rep.open_interest_usd, rtol=1e-12)
    # instruments per account within 5 binomial standard errors
    want = np.zeros(len(COINS))
    want[:4] = share
    se = np.sqrt(want * (1 - want) / A)
    assert np.all(np.abs(rep.instruments_per_account_share - want) <= 5 * se + 1e-12)
    np.testing.assert_array_equal(np.bincount(book.instruments_per_account(), minlength=10)[1:] / A,
                                  rep.instruments_per_account_share)
    # long share per instrument
    p_long = np.array(ratio) / (1 + np.array(ratio))
    n = rep.positions_per_instrument
    assert np.all(np.abs(rep.long_share - p_long) <= 5 * np.sqrt(p_long * (1 - p_long) / n))
    # cross accounts: exact count; one group per cross account, one per isolated position
    assert rep.cross_accounts == round(0.4 * A)
    cross_groups = ~book.group_isolated
    assert cross_groups.sum() == rep.cross_accounts
    assert book.n_groups == rep.cross_accounts + int(book.group_isolated.sum())
    # every group's wallet is the sum of its positions' margins, each at a leverage of the mix (2x .. 125x)
    assert book.balance.shape == (book.n_groups, 1)
    notional = np.bincount(book.pos_group, weights=np.abs(book.pos_qty) * sp[book.pos_instrument])
    lev = notional / book.balance[:, 0]
    assert lev.min() >= 2.0 * (1 - 1e-9) and lev.max() <= 125.0 * (1 + 1e-9)


def test_side_correlation_is_the_phi_coefficient(nine):
    reg, risk, before = nine
    bars, sp = before("2025-10-10 21:10")
    for rho in (0.0, 0.5, 0.9):
        p = MultiSynthesisParams(open_interest_usd=OI, accounts=40_000, side_correlation=rho,
                                 instruments_per_account_share=(0.0, 0.5, 0.5), equilibrium="none")
        _, rep = synthesize_accounts(p, reg, sp, bars, np.random.default_rng(3), risk)
        # equal long shares (ratio 1): the expected phi is rho; ~60k pairs give a standard error below 0.01
        assert abs(rep.side_correlation - rho) < 0.03


def test_equilibrium_filter_removes_exactly_what_the_history_liquidates(nine):
    reg, risk, before = nine
    bars, sp = before("2025-10-10 22:00")  # 90 bars before the start, the 21:20 crash among them
    kw = dict(open_interest_usd=tuple(x / 2e4 for x in OI), accounts=250, cross_share=0.6,
              instruments_per_account_share=(0.4, 0.3, 0.3))
    raw, rep0 = synthesize_accounts(MultiSynthesisParams(**kw, equilibrium="none"), reg, sp, bars,
                                    np.random.default_rng(5), risk)
    ref = _reference_liquidated(raw, risk, bars, sp, rep0.pos_entry_bar)
    fast = liquidated_before_start(raw, risk, sp, bars, rep0.pos_entry_bar)
    assert ref.sum() > 20 and (~raw.group_isolated[ref]).sum() > 5  # cross groups of several positions too
    np.testing.assert_array_equal(fast, ref)
    book, rep = synthesize_accounts(MultiSynthesisParams(**kw, equilibrium="history"), reg, sp, bars,
                                    np.random.default_rng(5), risk)
    # the same draws before the filter: the positions replaced are those of the groups the reference flags
    np.testing.assert_array_equal(rep.pos_removed, ref[raw.pos_group])
    assert rep.removed_positions == int(ref[raw.pos_group].sum()) and rep.removed_groups == int(ref.sum())
    # sizes untouched, entries replaced only where removed; nothing left that the history liquidates
    np.testing.assert_array_equal(book.pos_qty, raw.pos_qty)
    np.testing.assert_array_equal(book.balance, raw.balance)
    kept = ~rep.pos_removed
    np.testing.assert_array_equal(book.pos_entry_price[kept], raw.pos_entry_price[kept])
    assert not _reference_liquidated(book, risk, bars, sp, rep.pos_entry_bar).any()


def test_equilibrium_on_the_binance_btc_crash_windows():
    """One instrument, Binance BTCUSDT 1m bars of 2020-03-13 (entry history) and the 2021-03-18 brackets."""
    reg = InstrumentRegistry.linear(["BTCUSDT"])
    risk = TieredRisk((_binance_tiers("BTC"),))
    kl = read_klines(DATA / "binance-um-btcusdt-1m-crash-windows" / "BTCUSDT-1m-2020-03-13-window.csv")
    start_ms = int(kl.open_time_ms[-1])
    bars = (PriceBars.from_klines(kl.select(None, start_ms)),)
    sp = np.array([float(kl.open[-1])])
    p = MultiSynthesisParams(open_interest_usd=(3e8,), accounts=800, equilibrium="history")
    book, rep = synthesize_accounts(p, reg, sp, bars, np.random.default_rng(2), risk)
    assert rep.removed_positions > 50  # the crash liquidates many of the drawn positions
    # one instrument: every group holds one position, so every removed one is placed by the conditional draw
    assert rep.conditional_draws == rep.removed_positions and rep.entry_redraw_rounds == 1
    assert not liquidated_before_start(book, risk, sp, bars, rep.pos_entry_bar).any()
    assert not _reference_liquidated(book, risk, bars, sp, rep.pos_entry_bar, groups=250).any()
    np.testing.assert_allclose(rep.open_interest_usd, [[3e8, 3e8]], rtol=1e-9)
    # start-only equilibrium (the one-instrument rule) leaves groups that the path would have liquidated
    p0 = MultiSynthesisParams(open_interest_usd=(3e8,), accounts=800, equilibrium="start")
    b0, r0 = synthesize_accounts(p0, reg, sp, bars, np.random.default_rng(2), risk)
    assert liquidated_before_start(b0, risk, sp, bars, r0.pos_entry_bar).sum() > 50
    assert not liquidated_before_start(b0, risk, sp, None, None).any()


def test_lognormal_entries_survive_the_start(nine):
    reg, risk, before = nine
    _, sp = before("2025-10-10 21:10")
    p = MultiSynthesisParams(open_interest_usd=OI, accounts=20_000, entry_source="lognormal", entry_sigma=0.05,
                             equilibrium="start")
    book, rep = synthesize_accounts(p, reg, sp, None, np.random.default_rng(9), risk)
    assert rep.removed_positions > 0 and rep.conditional_draws > 0
    assert (rep.pos_entry_bar == -1).all()
    assert not liquidated_before_start(book, risk, sp, None, None).any()


def test_seed_reproducible(nine):
    reg, risk, before = nine
    bars, sp = before("2025-10-10 21:30")
    p = MultiSynthesisParams(open_interest_usd=OI, accounts=5_000)
    a, ra = synthesize_accounts(p, reg, sp, bars, np.random.default_rng(42), risk)
    b, rb = synthesize_accounts(p, reg, sp, bars, np.random.default_rng(42), risk)
    c, _ = synthesize_accounts(p, reg, sp, bars, np.random.default_rng(43), risk)
    for name in ("account_id", "group_account", "group_isolated", "pos_group", "pos_instrument", "pos_qty",
                 "pos_entry_price", "balance"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(ra.pos_entry_bar, rb.pos_entry_bar)
    assert ra.removed_positions == rb.removed_positions > 0
    assert a.n_positions != c.n_positions or not np.array_equal(a.pos_qty, c.pos_qty)


def test_shares_beyond_the_instrument_count_go_to_all_instruments(nine):
    reg, risk, before = nine
    bars, sp = before("2025-10-10 21:10")
    reg3 = InstrumentRegistry.linear(list(reg.symbols[:3]))
    risk3 = TieredRisk(risk.tiers[:3])
    p = MultiSynthesisParams(open_interest_usd=OI[:3], accounts=20_000, instruments_per_account_share=(0.5, 0.2, 0.2, 0.1))
    _, rep = synthesize_accounts(p, reg3, sp[:3], bars[:3], np.random.default_rng(1), risk3)
    assert rep.assumptions["instruments_per_account_share_applied"] == pytest.approx([0.5, 0.2, 0.3])
    assert abs(rep.instruments_per_account_share[2] - 0.3) < 5 * math.sqrt(0.21 / 20_000)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(side_correlation=1.5), "side_correlation"),
        (dict(cross_share=-0.1), "cross_share"),
        (dict(accounts=1), "accounts"),
        (dict(open_interest_usd=(1e9, 2e9)), "open_interest_usd has 2 values"),
        (dict(long_short_ratio=(1.0,) * 8 + (0.0,)), r"long_short_ratio\[8\]"),
        (dict(instruments_per_account_share=(0.0, -1.0)), "instruments_per_account_share"),
        (dict(entry_source="lognormal"), "equilibrium 'history' needs entry times"),
        (dict(margin_split_concentration=0.0), "margin_split_concentration"),
    ],
)
def test_bad_parameters_refused(nine, change, match):
    reg, risk, before = nine
    bars, sp = before("2025-10-10 21:10")
    p = MultiSynthesisParams(**{**dict(open_interest_usd=OI, accounts=1_000), **change})
    with pytest.raises(DeleverInputError, match=match):
        synthesize_accounts(p, reg, sp, bars, np.random.default_rng(0), risk)


def test_bad_history_refused(nine):
    reg, risk, before = nine
    bars, sp = before("2025-10-10 21:10")
    p = MultiSynthesisParams(open_interest_usd=OI, accounts=1_000)
    with pytest.raises(DeleverInputError, match="no entry history"):
        synthesize_accounts(p, reg, sp, None, np.random.default_rng(0), risk)
    shifted = list(bars)
    b = bars[3]
    shifted[3] = PriceBars(b.open_time_ms + 60_000, b.high, b.low, b.close, b.volume)
    with pytest.raises(DeleverInputError, match="instrument 4: bar times differ"):
        synthesize_accounts(p, reg, sp, shifted, np.random.default_rng(0), risk)
    bad = list(bars)
    low = b.low.copy()
    low[7] = np.nan
    bad[3] = PriceBars(b.open_time_ms, b.high, low, b.close, b.volume)
    with pytest.raises(DeleverInputError, match="instrument 4: bar 8: 'low'"):
        synthesize_accounts(p, reg, sp, bad, np.random.default_rng(0), risk)
    with pytest.raises(DeleverInputError, match="start_prices"):
        synthesize_accounts(p, reg, sp[:3], bars, np.random.default_rng(0), risk)


def test_infeasible_history_is_named():
    """A 125x long cannot survive a history that fell 5 % after every bar: the error names what to change."""
    reg = InstrumentRegistry.linear(["BTCUSDT"])
    risk = TieredRisk((_binance_tiers("BTC"),))
    H = 30
    close = 100_000.0 * 0.95 ** np.arange(H)
    bars = (PriceBars(np.arange(H, dtype=np.int64) * 60_000, close * 1.001, close * 0.999, close, np.ones(H)),)
    sp = np.array([close[-1] * 0.9])
    p = MultiSynthesisParams(open_interest_usd=(1e8,), accounts=500, leverage=LeverageMixParams((125.0,), (1.0,)))
    with pytest.raises(DeleverInputError, match="no entry in the history lets a long BTCUSDT position"):
        synthesize_accounts(p, reg, sp, bars, np.random.default_rng(0), risk)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_liquidation_check_matches_reference_on_hedged_cross_books(nine, seed):
    """Cross accounts long some coins and short others, entered at random bars of the 2025-10-10 crash, with
    wallets near their requirement: the fast check (bound, confirmation, bar-by-bar blocks) equals the reference."""
    reg, risk, before = nine
    bars, sp = before("2025-10-10 21:40")
    rng = np.random.default_rng(seed)
    A, k = 70, 3
    account = np.repeat(np.arange(A), k)
    ins = np.concatenate([rng.choice(len(COINS), size=k, replace=False) for _ in range(A)]).astype(np.int32)
    sign = np.where(rng.random(A * k) < 0.5, 1.0, -1.0)
    bar = rng.integers(-1, bars[0].close.size, size=A * k)
    entry = np.array([sp[i] if b < 0 else bars[i].close[b] for i, b in zip(ins, bar, strict=True)])
    notional = 10 ** rng.uniform(3, 6, size=A * k)
    qty = sign * notional / entry
    wallet = np.bincount(account, weights=notional, minlength=A) * rng.uniform(0.005, 0.2, size=A)
    isolated = rng.random(A * k) < 0.3  # from_rows puts cross groups first: positions not sorted by group
    book = AccountBook.from_rows(reg, account, ins, qty, entry, isolated, wallet[account], np.zeros(A * k, np.int32))
    assert (np.diff(book.pos_group) < 0).any()
    ref = _reference_liquidated(book, risk, bars, sp, bar)
    assert 0 < ref.sum() < book.n_groups
    np.testing.assert_array_equal(liquidated_before_start(book, risk, sp, bars, bar), ref)


def test_cross_group_liquidated_at_the_first_bar_after_an_entry():
    """Long X entered at the close of bar 4 (100) loses 5 at bar 5's low; short Y (entered at 100 at bar 0) loses 3
    at bar 5's high and 6 at bar 8's. Wallet 7: equity 7 - 8 = -1 at bar 5 (liquidated), 7 - 6 = 1 > maintenance
    0.82 at bar 8. Neither the per-position bound nor the worst-position column decides it: bar by bar does."""
    reg = InstrumentRegistry.linear(["XUSDT", "YUSDT"])
    tiers = _binance_tiers("BTC")  # 0.4 % MMR below 50k notional
    risk = TieredRisk((tiers, tiers))
    H = 10
    close = np.full(H, 100.0)
    x_low = close.copy()
    x_low[5] = 95.0
    y_high = close.copy()
    y_high[5], y_high[8] = 103.0, 106.0
    t = np.arange(H, dtype=np.int64) * 60_000
    bars = (PriceBars(t, close, x_low, close, np.ones(H)), PriceBars(t, y_high, close, close, np.ones(H)))
    sp = np.array([100.0, 100.0])

    def book(wallet: float) -> AccountBook:
        return AccountBook.from_rows(reg, np.array([1, 1]), np.array([0, 1]), np.array([1.0, -1.0]),
                                     np.array([100.0, 100.0]), np.array([False, False]), np.array([wallet, wallet]),
                                     np.array([0, 0]))

    entry_bar = np.array([4, 0])
    assert liquidated_before_start(book(7.0), risk, sp, bars, entry_bar).tolist() == [True]
    assert _reference_liquidated(book(7.0), risk, bars, sp, entry_bar).tolist() == [True]
    # entered one bar later, X misses the drop: the group survives (bar 8 alone is not enough)
    assert liquidated_before_start(book(7.0), risk, sp, bars, np.array([5, 0])).tolist() == [False]
    assert _reference_liquidated(book(7.0), risk, bars, sp, np.array([5, 0])).tolist() == [False]
    # a wallet of 8.9 survives bar 5 (equity 0.9 > maintenance 0.792)
    assert liquidated_before_start(book(8.9), risk, sp, bars, entry_bar).tolist() == [False]


def test_one_instrument_synthesizer_equilibrium_option():
    """synthesize_book with equilibrium_bars: no position the 2020-03-13 bars before the start would have
    liquidated (checked with the multi-instrument check on the converted book); without it, many."""
    from delever.book_io import account_book_from_positions
    from delever.scenario import EntryPrices, Synthesis
    from delever.synthesize import synthesize_book

    tiers = _binance_tiers("BTC")
    kl = read_klines(DATA / "binance-um-btcusdt-1m-crash-windows" / "BTCUSDT-1m-2020-03-13-window.csv")
    hist = kl.select(None, int(kl.open_time_ms[-1]))
    start = float(kl.open[-1])
    prices = (hist.high + hist.low + hist.close) / 3.0  # the runner's entry prices (typical price, volume weights)
    params = Synthesis(positions=4_000, open_interest_usd=3e8, entry=EntryPrices(source="history", path="x"))
    bars = (PriceBars.from_klines(hist),)
    risk = TieredRisk((tiers,))
    book, rep = synthesize_book(params, "BTCUSDT", start, tiers, np.random.default_rng(8), (prices, hist.volume),
                                equilibrium_bars=(hist.low, hist.high))
    assert rep.entry_bar is not None and rep.assumptions["equilibrium_bars"] == len(hist)
    np.testing.assert_array_equal(book.entry_price, prices[rep.entry_bar])
    ab = account_book_from_positions(book)
    assert not liquidated_before_start(ab, risk, np.array([start]), bars, rep.entry_bar).any()
    # the default (start price only) leaves positions that the crash bars would already have liquidated
    plain, rp = synthesize_book(params, "BTCUSDT", start, tiers, np.random.default_rng(8), (prices, hist.volume))
    assert rp.entry_bar is None and "equilibrium" not in rp.assumptions
    # entry bar unknown there: take the last bar with that price (the least exposure, so a lower bound)
    last_bar = np.array([int(np.flatnonzero(prices == e)[-1]) for e in plain.entry_price])
    assert liquidated_before_start(account_book_from_positions(plain), risk, np.array([start]), bars,
                                   last_bar).sum() > 100
    assert rep.redraws > rp.redraws
    np.testing.assert_allclose([rep.long_notional_usd, rep.short_notional_usd], [3e8, 3e8], rtol=1e-9)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    oi=st.lists(st.floats(1e6, 1e10), min_size=3, max_size=3),
    ratio=st.floats(0.3, 3.0),
    rho=st.floats(0.0, 1.0),
    cross=st.floats(0.0, 1.0),
    conc=st.floats(0.2, 20.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_open_interest_conserved_and_no_group_starts_liquidatable(oi, ratio, rho, cross, conc, seed):
    """Whatever the parameters: open interest exact per instrument and side, the wallets back the positions, and
    no margin group is liquidatable at the start (lognormal entries, start-price equilibrium)."""
    reg = InstrumentRegistry.linear(["BTCUSDT", "SOLUSDT", "DOGEUSDT"])
    tiers = MarginTiers.from_floors([0, 5e4, 2.5e5, 1e6, 1e7], [125, 100, 50, 20, 10], [0.004, 0.005, 0.01, 0.025, 0.05])
    risk = TieredRisk((tiers,) * 3)
    sp = np.array([60_000.0, 150.0, 0.2])
    p = MultiSynthesisParams(open_interest_usd=tuple(oi), accounts=600, long_short_ratio=ratio, side_correlation=rho,
                             cross_share=cross, margin_split_concentration=conc, entry_source="lognormal",
                             entry_sigma=0.05, equilibrium="start", instruments_per_account_share=(0.5, 0.3, 0.2))
    book, rep = synthesize_accounts(p, reg, sp, None, np.random.default_rng(seed), risk)
    np.testing.assert_allclose(rep.open_interest_usd, np.repeat(np.array(oi)[:, None], 2, axis=1), rtol=1e-9)
    np.testing.assert_allclose(book.open_interest_qty() * sp[:, None], rep.open_interest_usd, rtol=1e-12)
    assert rep.positions == book.n_positions == int(book.instruments_per_account().sum())
    assert (book.balance > 0).all()
    r = risk.evaluate(book, Prices(sp, sp, np.ones(1)))
    assert not r.liquidatable.any()
    assert not liquidated_before_start(book, risk, sp, None, None).any()
