"""Synthesize a multi-instrument account book from per-instrument aggregates.

Venues publish open interest and the account long/short ratio per instrument, not who holds what. This module
builds an :class:`~delever.model.accounts.AccountBook` (accounts, margin groups, signed positions, balances) whose
per-instrument aggregates match given targets, with every structural assumption (instruments per account, side
correlation inside an account, cross share, split of an account's margin over its positions, entry times) a named
parameter of :class:`MultiSynthesisParams`; bases and defaults are in ``docs/synthesizer.md`` ("Multi-instrument
books"). The per-instrument steps reuse the one-instrument synthesizer's pieces (:mod:`delever.synthesis_core`).

**Equilibrium at the start.** A position drawn with an entry time before the start may have been liquidated by the
price path between its entry and the start. :func:`liquidated_before_start` finds the margin groups whose equity fell
below maintenance (the risk model's own rule) at any bar from entry to start, valuing each position at its bar's
adverse extreme (low for longs, high for shorts); :func:`synthesize_accounts` replaces those groups' entries by new
draws until none is left, so a replay starts without a liquidation spike. Sizes, sides and leverage are untouched, so
open interest targets hold exactly without rescaling.

Pure domain: plain parameters and frozen dataclasses; no import of the config layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from delever.errors import DeleverInputError
from delever.model.accounts import AccountBook
from delever.model.instruments import InstrumentRegistry
from delever.risk.base import Prices, collateral_value_usd
from delever.risk.tiered import TieredRisk
from delever.synthesis_core import (
    MAX_ENTRY_ATTEMPTS,
    draw_collateral,
    draw_surviving_entries,
    fit_side_to_open_interest,
    leverage_probabilities,
)

if TYPE_CHECKING:
    from delever.data.klines import Klines

CHECK_BLOCK_CELLS = 2_000_000
"""Position x bar cells evaluated at once by the exact per-bar check (bounds memory to ~100 MB)."""


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class LeverageMixParams:
    """Discrete leverage mix (docs/synthesizer.md step 4; same defaults as the one-instrument synthesizer).

    Attributes:
        leverage: Leverage values.
        weight: Weights (normalized); shares of open interest (``basis = "notional"``) or of positions.
        basis: ``"notional"`` or ``"accounts"`` (here: positions).
    """

    leverage: tuple[float, ...] = (2, 3, 5, 10, 20, 25, 50, 75, 100, 125)
    weight: tuple[float, ...] = (0.20, 0.15, 0.15, 0.20, 0.12, 0.05, 0.08, 0.02, 0.02, 0.01)
    basis: Literal["notional", "accounts"] = "notional"


@dataclass(frozen=True)
class AccountSizeParams:
    """Account collateral before scaling (docs/synthesizer.md step 3; same defaults as one instrument).

    Attributes:
        kind: ``"lognormal"`` or ``"pareto"``.
        median_usd: Median account collateral, USD.
        sigma: Log-std of the lognormal.
        pareto_alpha: Pareto tail index (``kind = "pareto"``).
    """

    kind: Literal["lognormal", "pareto"] = "lognormal"
    median_usd: float = 2_000.0
    sigma: float = 1.6
    pareto_alpha: float = 1.3


@dataclass(frozen=True)
class MultiSynthesisParams:
    """Parameters of a synthesized multi-instrument book (docs/synthesizer.md, "Multi-instrument books").

    Attributes:
        open_interest_usd: Open interest per instrument (registry order), USD notional at the start price, the
            same on the long and the short side (closed market). Required.
        accounts: Number of accounts.
        long_short_ratio: Long / short positions per instrument (Binance's account long/short ratio), one value
            for all instruments or one per instrument.
        instruments_per_account_share: Share of accounts holding ``k = 1, 2, ...`` instruments (normalized).
            Shares beyond the registry's instrument count are given to ``k = I`` (recorded in the report).
        instrument_weight: Relative popularity of each instrument when an account picks its ``k`` instruments
            (weighted sampling without replacement); None: proportional to ``open_interest_usd``.
        side_correlation: Correlation (phi coefficient) of the long indicators of two positions of one account,
            exact when the two instruments have the same long share: with this probability an account is
            "directional" (all its positions use one uniform draw against each instrument's long share), else
            its positions draw their sides independently. In ``[0, 1]``.
        cross_share: Share of accounts in cross margin (all positions in one wallet); the others are isolated
            (one margin group per position). Exactly ``round(cross_share * accounts)`` accounts, at random.
        margin_split_concentration: An account's collateral is split over its positions by a symmetric
            Dirichlet with this concentration (1 = uniform on the simplex; large = equal split).
        leverage: Leverage mix per position.
        account_size: Account collateral distribution before scaling.
        entry_source: ``"history"`` (each position draws an entry bar of its instrument's bars before the start,
            with probability proportional to bar volume, and enters at the bar's close, so the bar's own range
            came before the entry) or ``"lognormal"`` (``start x exp(entry_sigma Z)``, no entry time).
        entry_sigma: Log-std of lognormal entries.
        equilibrium: ``"history"``: remove (redraw) positions whose margin group the bars from entry to start
            would have liquidated; ``"start"``: only at the start price (the one-instrument rule); ``"none"``: no
            check (for diagnostics: the book may hold liquidatable groups).
    """

    open_interest_usd: tuple[float, ...]
    accounts: int = 100_000
    long_short_ratio: float | tuple[float, ...] = 1.0
    instruments_per_account_share: tuple[float, ...] = (0.60, 0.20, 0.10, 0.05, 0.02, 0.01, 0.01, 0.005, 0.005)
    instrument_weight: tuple[float, ...] | None = None
    side_correlation: float = 0.5
    cross_share: float = 0.5
    margin_split_concentration: float = 1.0
    leverage: LeverageMixParams = LeverageMixParams()
    account_size: AccountSizeParams = AccountSizeParams()
    entry_source: Literal["history", "lognormal"] = "history"
    entry_sigma: float = 0.03
    equilibrium: Literal["history", "start", "none"] = "history"


@dataclass(frozen=True)
class PriceBars:
    """One instrument's bars before the start (entry history), in time order.

    Attributes:
        open_time_ms: int64 ``(H,)`` bar open times, epoch ms, strictly increasing.
        high: float64 ``(H,)`` USD per base unit.
        low: float64 ``(H,)``.
        close: float64 ``(H,)``.
        volume: float64 ``(H,)`` traded volume (entry-time weights); all zero: uniform weights.
    """

    open_time_ms: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @classmethod
    def from_klines(cls, klines: Klines) -> PriceBars:
        """From a :class:`delever.data.klines.Klines` (already cut to the window before the start)."""
        return cls(klines.open_time_ms, klines.high, klines.low, klines.close, klines.volume)

    @property
    def weight(self) -> np.ndarray:
        """float64 ``(H,)`` entry-time weights: volume, or uniform when no bar has volume."""
        v = np.asarray(self.volume, dtype=np.float64)
        return v if v.sum() > 0 else np.ones_like(v)


@dataclass
class MultiSynthesisReport:
    """Realized statistics of a synthesized book and every parameter used.

    Attributes:
        accounts: Accounts in the book.
        positions: Positions in the book.
        margin_groups: Margin groups (cross accounts + isolated positions).
        open_interest_usd: float64 ``(I, 2)`` long and short notional at the start price per instrument.
        positions_per_instrument: int64 ``(I,)``.
        long_share: float64 ``(I,)`` share of each instrument's positions that are long.
        instruments_per_account_share: float64 ``(K,)`` realized share of accounts holding ``k = 1..K``.
        side_correlation: Realized phi coefficient of the long indicators over all pairs of positions of one
            account (NaN when no account holds two positions).
        cross_accounts: Accounts in cross margin.
        leverage_capped: Positions whose drawn leverage was above the bracket max at their notional.
        removed_positions: Positions whose entry was replaced because their margin group would already have been
            liquidated (equilibrium filter; counted once however many redraws).
        removed_groups: Margin groups flagged at least once by the filter.
        entry_redraw_rounds: Rounds of the filter (each re-checks the groups redrawn in the round before).
        conditional_draws: Positions of one-position groups placed by the survival-conditioned entry draw (the
            distribution rejection converges to).
        fallback_draws: Positions of several-position groups still liquidated after ``MAX_ENTRY_ATTEMPTS`` rounds,
            drawn to survive on their own margin each (a sufficient condition, slightly stricter than the group's).
        pos_entry_bar: int64 ``(P,)`` entry bar of each position in the common bar grid (-1: lognormal entry).
        pos_removed: bool ``(P,)`` positions whose entry the filter replaced.
        assumptions: Every parameter used (JSON-serializable).
    """

    accounts: int
    positions: int
    margin_groups: int
    open_interest_usd: np.ndarray
    positions_per_instrument: np.ndarray
    long_share: np.ndarray
    instruments_per_account_share: np.ndarray
    side_correlation: float
    cross_accounts: int
    leverage_capped: int
    removed_positions: int
    removed_groups: int
    entry_redraw_rounds: int
    conditional_draws: int
    fallback_draws: int
    pos_entry_bar: np.ndarray
    pos_removed: np.ndarray
    assumptions: dict[str, object] = field(default_factory=dict)


# --------------------------------------------------------------------------- bar grid
@dataclass
class _Path:
    """Adverse extremes per column (bars, then the start price) and their suffix extremes with where they occur."""

    low: np.ndarray  # (I, C) long side: bar lows
    high: np.ndarray  # (I, C) short side: bar highs
    suffix_low: np.ndarray  # (I, C) min of low[:, t:]
    suffix_high: np.ndarray  # (I, C) max of high[:, t:]
    suffix_low_at: np.ndarray  # (I, C) int64 column of that min
    suffix_high_at: np.ndarray  # (I, C)

    @property
    def n_cols(self) -> int:
        return int(self.low.shape[1])


def _path(low: np.ndarray, high: np.ndarray) -> _Path:
    n_cols = low.shape[1]
    lo_at = np.empty(low.shape, dtype=np.int64)
    hi_at = np.empty(high.shape, dtype=np.int64)
    lo_at[:, -1] = hi_at[:, -1] = n_cols - 1
    for t in range(n_cols - 2, -1, -1):
        lo_at[:, t] = np.where(low[:, t] <= low[np.arange(low.shape[0]), lo_at[:, t + 1]], t, lo_at[:, t + 1])
        hi_at[:, t] = np.where(high[:, t] >= high[np.arange(high.shape[0]), hi_at[:, t + 1]], t, hi_at[:, t + 1])
    rows = np.arange(low.shape[0])[:, None]
    return _Path(low, high, low[rows, lo_at], high[rows, hi_at], lo_at, hi_at)


@dataclass
class _Grid:
    """Bars of all instruments on one time grid, with the start appended as column ``H``."""

    entry_price: np.ndarray  # (I, H) bar close: a position drawn at bar b enters at its close
    cum_weight: np.ndarray  # (I, H) cumulative entry weights
    path: _Path  # bars then the start price, H + 1 columns

    @property
    def n_bars(self) -> int:
        return int(self.entry_price.shape[1])


def _grid(history: tuple[PriceBars, ...] | list[PriceBars], start_prices: np.ndarray) -> _Grid:
    n = start_prices.size
    if len(history) != n:
        raise DeleverInputError(f"entry history: {len(history)} bar series given, expected one per instrument ({n})")
    t0 = np.asarray(history[0].open_time_ms, dtype=np.int64)
    if t0.ndim != 1 or t0.size == 0 or (np.diff(t0) <= 0).any():
        raise DeleverInputError("entry history of instrument 1: open times must be a non-empty strictly increasing "
                                "1-D array")
    H = t0.size
    cols = {k: np.empty((n, H)) for k in ("high", "low", "close", "weight")}
    for i, bars in enumerate(history):
        t = np.asarray(bars.open_time_ms, dtype=np.int64)
        if t.shape != t0.shape or (t != t0).any():
            raise DeleverInputError(f"entry history of instrument {i + 1}: bar times differ from instrument 1's; "
                                    "every instrument needs bars on one time grid (cut them to the same window)")
        for k in ("high", "low", "close"):
            a = np.asarray(getattr(bars, k), dtype=np.float64)
            if a.shape != (H,):
                raise DeleverInputError(f"entry history of instrument {i + 1}: {k!r} has shape {a.shape}, expected ({H},)")
            bad = ~(np.isfinite(a) & (a > 0))
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                raise DeleverInputError(f"entry history of instrument {i + 1}: bar {j + 1}: {k!r} is {a[j]!r}, "
                                        "expected a finite price > 0")
            cols[k][i] = a
        w = np.asarray(bars.weight, dtype=np.float64)
        if w.shape != (H,) or not (np.isfinite(w) & (w >= 0)).all():
            raise DeleverInputError(f"entry history of instrument {i + 1}: volumes must be finite and >= 0, shape ({H},)")
        cols["weight"][i] = w
    bad = (cols["low"] > cols["high"]) | (cols["close"] > cols["high"]) | (cols["close"] < cols["low"])
    if bad.any():
        i, j = (int(x[0]) for x in np.nonzero(bad))
        raise DeleverInputError(f"entry history of instrument {i + 1}: bar {j + 1}: expected low <= close <= high")
    path = _path(np.concatenate([cols["low"], start_prices[:, None]], axis=1),
                 np.concatenate([cols["high"], start_prices[:, None]], axis=1))
    return _Grid(cols["close"], np.cumsum(cols["weight"], axis=1), path)


# --------------------------------------------------------------------------- equilibrium check
def _asset_usd(registry: InstrumentRegistry) -> np.ndarray:
    return np.array([a.usd_price for a in registry.assets.assets], dtype=np.float64)


def _adverse_slack(risk: TieredRisk, registry: InstrumentRegistry, ins: np.ndarray, qty: np.ndarray,
                   entry: np.ndarray, price: np.ndarray, settle_usd: np.ndarray) -> np.ndarray:
    """``uPnL - maintenance`` (USD) of positions valued at ``price`` (the risk model's own requirement)."""
    mm, _ = risk.position_requirement(ins, qty, price, settle_usd)
    return registry.pnl_settle(ins, qty, entry, price) * settle_usd - mm


def _group_ranges(pos_group: np.ndarray, n_groups: int) -> np.ndarray:
    """Start offsets ``(G + 1,)`` of each group's positions (positions sorted by group)."""
    return np.concatenate([[0], np.cumsum(np.bincount(pos_group, minlength=n_groups))])


def _liquidated(book: AccountBook, risk: TieredRisk, path: _Path, first_col: np.ndarray, coll_usd: np.ndarray,
                groups: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """bool ``(len(groups),)``: is each of ``groups`` liquidatable at some column ``t >= first_col`` of its positions.

    Positions must be sorted by group. A lower bound (every position at its own worst column) settles most groups;
    groups of several positions that fail it are checked column by column.
    """
    if groups.size == 0:
        return np.zeros(0, dtype=bool)
    reg = book.registry
    asset_usd = _asset_usd(reg)
    n_start = offsets[groups]
    n_len = offsets[groups + 1] - n_start
    pidx = np.repeat(n_start - np.cumsum(np.concatenate([[0], n_len[:-1]])), n_len) + np.arange(int(n_len.sum()))
    ins = book.pos_instrument[pidx]
    qty = book.pos_qty[pidx]
    entry = book.pos_entry_price[pidx]
    fc = first_col[pidx]
    settle_usd = asset_usd[reg.settle_code[ins]]
    longs = qty > 0
    worst = np.where(longs, path.suffix_low[ins, fc], path.suffix_high[ins, fc])
    slack = _adverse_slack(risk, reg, ins, qty, entry, worst, settle_usd)
    local = np.repeat(np.arange(groups.size), n_len)
    lower = coll_usd[groups] + np.bincount(local, weights=np.minimum(slack, 0.0), minlength=groups.size)
    out = lower < 0.0
    # the bound is exact for a group of one position; groups of several are evaluated bar by bar
    need = np.flatnonzero(out & (n_len > 1))
    if need.size == 0:
        return out
    # cheap confirmation: the group at the column where its most-losing position is worst
    local_need = np.zeros(groups.size, dtype=bool)
    local_need[need] = True
    sel = np.flatnonzero(local_need[local])
    order = sel[np.lexsort((slack[sel], local[sel]))]
    lead = order[np.concatenate([[True], local[order][1:] != local[order][:-1]])]
    col_of_group = np.empty(groups.size, dtype=np.int64)
    col_of_group[local[lead]] = np.where(longs[lead], path.suffix_low_at[ins[lead], fc[lead]],
                                         path.suffix_high_at[ins[lead], fc[lead]])
    t = col_of_group[local[sel]]
    price = np.where(longs[sel], path.low[ins[sel], t], path.high[ins[sel], t])
    s_t = np.where(t >= fc[sel], _adverse_slack(risk, reg, ins[sel], qty[sel], entry[sel], price, settle_usd[sel]), 0.0)
    at_t = coll_usd[groups] + np.bincount(local[sel], weights=s_t, minlength=groups.size)
    need = need[at_t[need] >= 0.0]  # confirmed groups stay True
    out[need] = False
    if need.size == 0:
        return out
    n_cols = path.n_cols
    starts = np.concatenate([[0], np.cumsum(n_len)])
    block = max(1, CHECK_BLOCK_CELLS // n_cols)
    k = 0
    while k < need.size:
        # take groups while their positions fit in one block
        tot = np.cumsum(n_len[need[k:]])
        m = max(1, int(np.searchsorted(tot, block, side="right")))
        gs = need[k:k + m]
        rows = np.concatenate([np.arange(starts[g], starts[g + 1]) for g in gs])
        r_ins, r_qty, r_entry, r_fc = ins[rows], qty[rows], entry[rows], fc[rows]
        price = np.where((r_qty > 0)[:, None], path.low[r_ins], path.high[r_ins])
        cols = np.arange(n_cols)[None, :]
        s = _adverse_slack(risk, reg, np.repeat(r_ins, n_cols), np.repeat(r_qty, n_cols),
                           np.repeat(r_entry, n_cols), price.ravel(), np.repeat(settle_usd[rows], n_cols))
        s = np.where(cols >= r_fc[:, None], s.reshape(rows.size, n_cols), 0.0)
        seg = np.concatenate([[0], np.cumsum(n_len[gs])[:-1]])
        total = np.add.reduceat(s, seg, axis=0)
        any_open = np.add.reduceat((cols >= r_fc[:, None]).astype(np.int64), seg, axis=0) > 0
        out[gs] = ((coll_usd[groups[gs], None] + total < 0.0) & any_open).any(axis=1)
        k += m
    return out


def liquidated_before_start(book: AccountBook, risk: TieredRisk, start_prices: np.ndarray,
                            history: tuple[PriceBars, ...] | None, entry_bar: np.ndarray | None) -> np.ndarray:
    """Margin groups that the price path from their positions' entries to the start would have liquidated.

    A position entered at the close of bar ``b`` is open from bar ``b + 1`` on. A group is liquidated when, at some
    bar after the first entry of its positions up to the start (the start price counted as a last bar), its equity
    is below the risk model's maintenance requirement (``TieredRisk``: collateral value after haircut + uPnL < sum
    of tiered maintenance; venue-mechanics.md section 1) with the positions open by then, each valued at the bar's
    adverse extreme: the low for a long, the high for a short (both extremes of different instruments taken in
    the same bar, the conservative reading of one-minute bars). Fast path: the bound "every position at its
    own worst price" decides single-position groups exactly and clears most others; the rest are evaluated bar by
    bar in blocks.

    Args:
        book: The book (linear instruments, collateral in fixed-price assets); positions in any order.
        risk: The venue's tiered risk model (one tier table per instrument code).
        start_prices: float64 ``(I,)`` prices at the start.
        history: One :class:`PriceBars` per instrument on one time grid (``H`` bars), or None: only the start
            price is checked.
        entry_bar: int64 ``(P,)`` bar at whose close each position entered, in ``[-1, H-1]`` (-1: checked at
            the start price only), or None: every position at the start only.

    Returns:
        bool ``(G,)``.

    Raises:
        DeleverInputError: malformed history, entry bars out of range, an inverse instrument, or a balance in an
            asset priced from an instrument.
    """
    start_prices = np.asarray(start_prices, dtype=np.float64)
    reg = book.registry
    if start_prices.shape != (len(reg),):
        raise DeleverInputError(f"start_prices: expected {len(reg)} prices, got shape {start_prices.shape}")
    used = np.unique(book.pos_instrument)
    if reg.inverse[used].any():
        raise DeleverInputError(f"liquidated_before_start: instrument {reg.symbols[int(used[reg.inverse[used]][0])]!r} "
                                "is inverse; the check values linear contracts")
    floating = [k for k, a in enumerate(reg.assets.assets) if a.price_from is not None and (book.balance[:, k] != 0).any()]
    if floating:
        raise DeleverInputError(f"liquidated_before_start: balances in {reg.assets.symbols[floating[0]]!r}, whose price "
                                "moves with an instrument; the check holds collateral at a fixed USD price")
    if entry_bar is not None and np.shape(entry_bar) != (book.n_positions,):
        raise DeleverInputError(f"entry_bar: expected shape ({book.n_positions},), got {np.shape(entry_bar)}")
    if (np.diff(book.pos_group) < 0).any():  # e.g. a book read by from_rows: group the positions first
        order = np.argsort(book.pos_group, kind="stable")
        book = AccountBook(book.registry, book.account_id, book.group_account, book.group_isolated,
                           book.pos_group[order], book.pos_instrument[order], book.pos_qty[order],
                           book.pos_entry_price[order], book.balance)
        entry_bar = None if entry_bar is None else np.asarray(entry_bar)[order]
    if history is None:
        path = _path(start_prices[:, None], start_prices[:, None])
        n_bars = 0
    else:
        g = _grid(history, start_prices)
        path, n_bars = g.path, g.n_bars
    first = np.full(book.n_positions, n_bars, dtype=np.int64)
    if entry_bar is not None:
        eb = np.asarray(entry_bar, dtype=np.int64)
        if eb.shape != (book.n_positions,) or ((eb < -1) | (eb >= max(n_bars, 1))).any():
            raise DeleverInputError(f"entry_bar: expected int64 ({book.n_positions},) in [-1, {max(n_bars, 1) - 1}]")
        first = np.where(eb < 0, n_bars, np.minimum(eb + 1, n_bars))
    coll = collateral_value_usd(book, Prices(start_prices, start_prices, _asset_usd(book.registry)), risk.haircut)
    offsets = _group_ranges(book.pos_group, book.n_groups)
    groups = np.arange(book.n_groups)
    return _liquidated(book, risk, path, first, coll, groups, offsets)


# --------------------------------------------------------------------------- helpers
def _per_instrument(value, n: int, name: str) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.ndim == 0:
        a = np.full(n, float(a))
    if a.shape != (n,):
        raise DeleverInputError(f"multi synthesis: {name} has {a.size} values, expected 1 or one per instrument ({n})")
    bad = ~(np.isfinite(a) & (a > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DeleverInputError(f"multi synthesis: {name}[{i}] is {a[i]!r}, expected a finite value > 0")
    return a


def _check_params(p: MultiSynthesisParams, n_ins: int) -> None:
    if not (isinstance(p.accounts, (int, np.integer)) and p.accounts >= 2):
        raise DeleverInputError(f"multi synthesis: accounts is {p.accounts!r}, expected an integer >= 2")
    for name, v, lo, hi in (("side_correlation", p.side_correlation, 0.0, 1.0), ("cross_share", p.cross_share, 0.0, 1.0)):
        if not (math.isfinite(v) and lo <= v <= hi):
            raise DeleverInputError(f"multi synthesis: {name} is {v!r}, expected a value in [{lo}, {hi}]")
    for name, v in (("margin_split_concentration", p.margin_split_concentration), ("entry_sigma", p.entry_sigma),
                    ("account_size.median_usd", p.account_size.median_usd), ("account_size.sigma", p.account_size.sigma),
                    ("account_size.pareto_alpha", p.account_size.pareto_alpha)):
        if not (math.isfinite(v) and v > 0):
            raise DeleverInputError(f"multi synthesis: {name} is {v!r}, expected a finite value > 0")
    share = np.asarray(p.instruments_per_account_share, dtype=np.float64)
    if share.ndim != 1 or share.size == 0 or not (np.isfinite(share) & (share >= 0)).all() or share.sum() <= 0:
        raise DeleverInputError("multi synthesis: instruments_per_account_share must be non-negative shares over "
                                f"k = 1, 2, ... with a positive sum, got {list(p.instruments_per_account_share)}")
    lev = np.asarray(p.leverage.leverage, dtype=np.float64)
    w = np.asarray(p.leverage.weight, dtype=np.float64)
    if lev.shape != w.shape or lev.size == 0 or (lev <= 0).any() or (w < 0).any() or w.sum() <= 0:
        raise DeleverInputError("multi synthesis: leverage mix needs equal-length leverage (> 0) and weights (>= 0, "
                                "positive sum)")
    if p.account_size.kind not in ("lognormal", "pareto"):
        raise DeleverInputError(f"multi synthesis: account_size.kind is {p.account_size.kind!r}, expected 'lognormal' "
                                "or 'pareto'")
    if p.entry_source not in ("history", "lognormal"):
        raise DeleverInputError(f"multi synthesis: entry_source is {p.entry_source!r}, expected 'history' or 'lognormal'")
    if p.equilibrium not in ("history", "start", "none"):
        raise DeleverInputError(f"multi synthesis: equilibrium is {p.equilibrium!r}, expected 'history', 'start' or "
                                "'none'")
    if p.entry_source == "lognormal" and p.equilibrium == "history":
        raise DeleverInputError("multi synthesis: equilibrium 'history' needs entry times; lognormal entries have none "
                                "(use entry_source 'history' with bars, or equilibrium 'start')")


def _k_shares(share_param: tuple[float, ...], n_ins: int) -> np.ndarray:
    share = np.asarray(share_param, dtype=np.float64)
    k_share = np.zeros(n_ins)
    m = min(share.size, n_ins)
    k_share[:m] = share[:m]
    k_share[n_ins - 1] += share[n_ins:].sum()  # more instruments than exist: held in all of them
    return k_share / k_share.sum()


def _side_phi(account: np.ndarray, is_long: np.ndarray, n_accounts: int) -> float:
    """Phi coefficient of the long indicators over ordered pairs of positions of one account."""
    n = np.bincount(account, minlength=n_accounts).astype(np.float64)
    L = np.bincount(account, weights=is_long.astype(np.float64), minlength=n_accounts)
    pairs = (n * (n - 1)).sum()
    if pairs == 0:
        return math.nan
    m = (L * (n - 1)).sum() / pairs
    both = (L * (L - 1)).sum() / pairs
    return float((both - m * m) / (m * (1 - m))) if 0 < m < 1 else math.nan


def _draw_bars(ins: np.ndarray, grid: _Grid, rng: np.random.Generator) -> np.ndarray:
    """Entry bars by inverse CDF of each instrument's weights (one uniform per position)."""
    u = rng.random(ins.size)
    bar = np.empty(ins.size, dtype=np.int64)
    for i in np.unique(ins):
        m = ins == i
        cw = grid.cum_weight[i]
        bar[m] = np.minimum(np.searchsorted(cw, u[m] * cw[-1], side="right"), cw.size - 1)
    return bar


def _conditional_bars(idx: np.ndarray, ins: np.ndarray, qty: np.ndarray, margin_usd: np.ndarray,
                      settle_usd: np.ndarray, grid: _Grid, suffix_low: np.ndarray, suffix_high: np.ndarray,
                      risk: TieredRisk, rng: np.random.Generator) -> np.ndarray:
    """Entry bars for positions ``idx`` drawn from the weights restricted to bars where the position survives on its
    own margin (``margin + min slack >= 0``); -1 where no bar does. A group whose every position survives on its own
    margin survives as a whole (its collateral is the sum of those margins)."""
    H = grid.n_bars
    out = np.full(idx.size, -1, dtype=np.int64)
    w = np.diff(np.concatenate([np.zeros((grid.cum_weight.shape[0], 1)), grid.cum_weight], axis=1), axis=1)
    u_all = rng.random(idx.size)
    block = max(1, CHECK_BLOCK_CELLS // H)
    for i in np.unique(ins[idx]):
        rows = np.flatnonzero(ins[idx] == i)
        tiers = risk.tiers[int(i)]
        for a in range(0, rows.size, block):
            r = rows[a:a + block]
            j = idx[r]
            q = qty[j][:, None]
            su = settle_usd[j][:, None]
            # entered at the close of bar b: exposed to bars b+1 .. H-1 and the start (suffix column b + 1);
            # the same arithmetic as TieredRisk.position_requirement and InstrumentRegistry.pnl_settle (linear)
            worst = np.where(q > 0, suffix_low[i, 1:][None, :], suffix_high[i, 1:][None, :])
            slack = q * (worst - grid.entry_price[i][None, :]) * su - tiers.maintenance_margin(np.abs(q) * worst) * su
            ok = margin_usd[j, None] + np.minimum(slack, 0.0) >= 0.0
            cw = np.cumsum(np.where(ok, w[i][None, :], 0.0), axis=1)
            tot = cw[:, -1]
            pick = np.minimum((cw <= (u_all[r] * tot)[:, None]).sum(axis=1), H - 1)
            good = (tot > 0) & ok[np.arange(j.size), pick]
            out[r] = np.where(good, pick, -1)
    return out


# --------------------------------------------------------------------------- main
def synthesize_accounts(params: MultiSynthesisParams, registry: InstrumentRegistry, start_prices: np.ndarray,
                        entry_history: tuple[PriceBars, ...] | list[PriceBars] | None, rng: np.random.Generator,
                        risk: TieredRisk) -> tuple[AccountBook, MultiSynthesisReport]:
    """Build a multi-instrument account book whose per-instrument aggregates match ``params``.

    Steps (bases in docs/synthesizer.md, "Multi-instrument books"):

    1. **Instruments per account**: each account draws ``k`` from ``instruments_per_account_share`` and picks
       ``k`` distinct instruments by weighted sampling without replacement (``instrument_weight``; Gumbel top-k).
    2. **Sides**: long with probability ``r_i / (1 + r_i)`` per instrument (``long_short_ratio``); a share
       ``side_correlation`` of accounts use one uniform for all their positions (phi = ``side_correlation``
       between two positions of one account when the long shares are equal).
    3. **Sizes and leverage**: an account's collateral (``account_size``) is split over its positions by a
       symmetric Dirichlet(``margin_split_concentration``); each position draws a leverage from ``leverage``.
    4. **Open interest**: per instrument and side, margins are scaled by one factor so the capped notionals
       (bracket max leverage of the instrument's tiers) sum to ``open_interest_usd[i]`` exactly
       (:func:`delever.synthesis_core.fit_side_to_open_interest`, the one-instrument solver).
    5. **Margin mode**: ``round(cross_share * accounts)`` accounts are cross, their wallet the sum of their
       positions' margins; each isolated position is a margin group with its own margin. Collateral is held in
       each instrument's settlement asset.
    6. **Entries**: history: a bar per position by volume weight, entered at the bar's close; or lognormal.
    7. **Equilibrium**: groups liquidated before the start (:func:`liquidated_before_start`; ``equilibrium``
       chooses the window) get new entry draws for all their positions, round after round (only the redrawn groups
       are re-checked); after ``MAX_ENTRY_ATTEMPTS`` rounds the rest are drawn from the entry distribution
       restricted to entries that survive on each position's own margin. Sizes, sides and leverage never change,
       so open interest stays exact: the result is the drawn book conditioned on having survived to the start.

    Draw order (fixed, so a seed reproduces the book): k per account, instrument keys, directional accounts,
    account uniforms, position uniforms, account collateral, Dirichlet split, leverage, cross accounts, entries,
    redraws. Vectorized NumPy.

    Args:
        params: See :class:`MultiSynthesisParams`.
        registry: Linear instruments (``InstrumentRegistry.linear``) with fixed-USD-price settlement assets.
        start_prices: float64 ``(I,)`` price at the start per instrument, USD per base unit.
        entry_history: One :class:`PriceBars` per instrument on one time grid, ending before the start; required
            for ``entry_source = "history"`` and refused otherwise.
        rng: Random generator.
        risk: Tiered risk model of the venue (``risk.tiers[i]`` for instrument ``i``); caps leverage and decides
            liquidation in the equilibrium check.

    Returns:
        ``(book, report)``: a validated :class:`AccountBook` (accounts ``0..A-1``, positions sorted by account and
        group) and a :class:`MultiSynthesisReport`.

    Raises:
        DeleverInputError: bad parameters, an inverse instrument or floating-price settlement asset, missing or
            unexpected history, an (instrument, side) left without any position, brackets whose MMR is not below
            1 / max leverage, or a position that no entry in the history lets survive.
    """
    n_ins = len(registry)
    start_prices = np.asarray(start_prices, dtype=np.float64)
    if start_prices.shape != (n_ins,) or not (np.isfinite(start_prices) & (start_prices > 0)).all():
        raise DeleverInputError(f"multi synthesis: start_prices must be {n_ins} finite prices > 0, got {start_prices!r}")
    if registry.inverse.any():
        raise DeleverInputError(f"multi synthesis: instrument {registry.symbols[int(np.argmax(registry.inverse))]!r} is "
                                "inverse; the synthesizer builds linear books")
    if (registry.contract_size != 1.0).any():
        raise DeleverInputError("multi synthesis: contract sizes other than 1 base unit are not supported (the tiered "
                                "risk model values quantities in base units)")
    for a in registry.assets.assets:
        if a.price_from is not None:
            raise DeleverInputError(f"multi synthesis: asset {a.symbol!r} takes its price from an instrument; "
                                    "settlement assets must have a fixed USD price")
    if len(risk.tiers) != n_ins:
        raise DeleverInputError(f"multi synthesis: the risk model has {len(risk.tiers)} tier tables, expected {n_ins}")
    _check_params(params, n_ins)
    oi = _per_instrument(params.open_interest_usd, n_ins, "open_interest_usd")
    ratio = _per_instrument(params.long_short_ratio, n_ins, "long_short_ratio")
    ins_w = oi if params.instrument_weight is None else _per_instrument(params.instrument_weight, n_ins, "instrument_weight")
    for i, t in enumerate(risk.tiers):
        bad = t.mmr * t.max_leverage >= 1.0
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise DeleverInputError(f"{registry.symbols[i]} tiers: bracket {k + 1} has MMR {t.mmr[k]} >= 1 / max "
                                    f"leverage {t.max_leverage[k]}; a position at the bracket max leverage would be "
                                    "liquidatable at its own entry price")
    if params.entry_source == "history":
        if entry_history is None:
            raise DeleverInputError("multi synthesis: entry_source is 'history' but no entry history was given")
        grid = _grid(tuple(entry_history), start_prices)
    else:
        if entry_history is not None:
            raise DeleverInputError("multi synthesis: entry_source is 'lognormal' but an entry history was given")
        grid = None

    A = int(params.accounts)
    # 1. instruments per account
    k_share = _k_shares(params.instruments_per_account_share, n_ins)
    k_acc = rng.choice(np.arange(1, n_ins + 1), size=A, p=k_share)
    keys = np.log(ins_w / ins_w.sum())[None, :] + rng.gumbel(size=(A, n_ins))
    order = np.argsort(-keys, axis=1, kind="stable")
    take = np.arange(n_ins)[None, :] < k_acc[:, None]
    held = np.zeros((A, n_ins), dtype=bool)
    np.put_along_axis(held, order, take, axis=1)
    acc, ins = np.nonzero(held)  # account-major, instrument ascending inside an account
    ins = ins.astype(np.int32)
    P = acc.size
    # 2. sides
    directional = rng.random(A) < params.side_correlation
    u_acc = rng.random(A)
    u_pos = rng.random(P)
    u = np.where(directional[acc], u_acc[acc], u_pos)
    p_long = ratio / (1.0 + ratio)
    sgn = np.where(u < p_long[ins], 1.0, -1.0)
    # 3. sizes and leverage
    sz = params.account_size
    acc_coll = draw_collateral(A, sz.kind, sz.median_usd, sz.sigma, sz.pareto_alpha, rng)
    g = rng.standard_gamma(params.margin_split_concentration, size=P)
    g_sum = np.bincount(acc, weights=g, minlength=A)
    coll0 = acc_coll[acc] * g / g_sum[acc]
    lev_values = np.asarray(params.leverage.leverage, dtype=np.float64)
    lev_p = leverage_probabilities(lev_values, params.leverage.weight, params.leverage.basis)
    lev = lev_values[rng.choice(lev_values.size, size=P, p=lev_p)]
    # 4. open interest per instrument and side
    margin = np.empty(P)
    notional = np.empty(P)
    capped = np.zeros(P, dtype=bool)
    scale = np.empty((n_ins, 2))
    for i in range(n_ins):
        for c, s_val in enumerate((1.0, -1.0)):
            m = (ins == i) & (sgn == s_val)
            if not m.any():
                raise DeleverInputError(f"multi synthesis: no {'long' if s_val > 0 else 'short'} position in "
                                        f"{registry.symbols[i]} was drawn; raise accounts or that instrument's weight")
            margin[m], notional[m], capped[m], scale[i, c] = fit_side_to_open_interest(coll0[m], lev[m], oi[i],
                                                                                        risk.tiers[i])
    qty = sgn * notional / start_prices[ins]
    # 5. margin mode and groups
    n_cross = int(math.floor(params.cross_share * A + 0.5))
    cross_acc = np.zeros(A, dtype=bool)
    cross_acc[rng.choice(A, size=n_cross, replace=False)] = True
    new_group = np.ones(P, dtype=bool)
    new_group[1:] = ~(cross_acc[acc[1:]] & (acc[1:] == acc[:-1]))
    pos_group = np.cumsum(new_group) - 1
    G = int(pos_group[-1]) + 1
    group_account = acc[new_group]
    K = len(registry.assets)
    settle = registry.settle_code[ins]
    balance = np.bincount(pos_group * K + settle, weights=margin, minlength=G * K).reshape(G, K)
    # 6. entries
    if grid is not None:
        bar = _draw_bars(ins, grid, rng)
        entry = grid.entry_price[ins, bar]
    else:
        bar = np.full(P, -1, dtype=np.int64)
        entry = start_prices[ins] * np.exp(params.entry_sigma * rng.standard_normal(P))
    book = AccountBook(registry, np.arange(A, dtype=np.int64), group_account, ~cross_acc[group_account], pos_group,
                       ins, qty, entry, balance)

    # 7. equilibrium
    removed = np.zeros(P, dtype=bool)
    flagged_groups = np.zeros(G, dtype=bool)
    rounds = 0
    conditional = 0
    fallback = 0
    if params.equilibrium != "none":
        if grid is not None and params.equilibrium == "history":
            path = grid.path
        else:
            path = _path(start_prices[:, None], start_prices[:, None])
        n_cols = path.n_cols
        first = np.where(bar < 0, n_cols - 1, bar + 1) if n_cols > 1 else np.zeros(P, dtype=np.int64)
        asset_usd = _asset_usd(registry)
        coll_usd = collateral_value_usd(book, Prices(start_prices, start_prices, asset_usd), risk.haircut)
        haircut = np.zeros(K) if risk.haircut is None else np.asarray(risk.haircut, dtype=np.float64)
        margin_usd = margin * asset_usd[settle] * (1.0 - haircut[settle])
        settle_usd = asset_usd[settle]
        offsets = _group_ranges(pos_group, G)
        todo = np.arange(G)

        def members(groups: np.ndarray) -> np.ndarray:
            n_len = offsets[groups + 1] - offsets[groups]
            return np.repeat(offsets[groups], n_len) + (np.arange(int(n_len.sum())) -
                                                        np.repeat(np.cumsum(n_len) - n_len, n_len))

        def place(pidx: np.ndarray) -> None:
            _place_conditional(pidx, book, grid, bar, first, params, start_prices, margin_usd, settle_usd,
                               path, risk, rng)

        while True:
            dead = todo[_liquidated(book, risk, path, first, coll_usd, todo, offsets)]
            if dead.size == 0:
                break
            flagged_groups[dead] = True
            removed[members(dead)] = True
            single = offsets[dead + 1] - offsets[dead] == 1
            if rounds >= MAX_ENTRY_ATTEMPTS:
                # leftovers: every position drawn to survive on its own margin (then its group survives)
                pidx = members(dead)
                fallback += pidx.size
                place(pidx)
                left = dead[_liquidated(book, risk, path, first, coll_usd, dead, offsets)]
                if left.size:  # pragma: no cover - each position survives on its own margin, so its group does
                    raise RuntimeError(f"multi synthesis: {left.size} groups still liquidatable after conditional draws")
                break
            # one-position groups: the survival-conditioned draw is exactly where rejection converges
            pidx = members(dead[single])
            conditional += pidx.size
            if pidx.size:
                place(pidx)
            # several positions: the group's survival is not a per-position condition, so redraw and re-check
            pidx = members(dead[~single])
            if grid is not None:
                bar[pidx] = _draw_bars(ins[pidx], grid, rng)
                book.pos_entry_price[pidx] = grid.entry_price[ins[pidx], bar[pidx]]
                if n_cols > 1:
                    first[pidx] = bar[pidx] + 1
            else:
                book.pos_entry_price[pidx] = start_prices[ins[pidx]] * np.exp(
                    params.entry_sigma * rng.standard_normal(pidx.size))
            rounds += 1
            todo = dead
    book.validate("multi synthesizer")

    k_real = book.instruments_per_account()
    rep_oi = np.stack([np.bincount(ins, weights=np.where(sgn > 0, notional, 0.0), minlength=n_ins),
                       np.bincount(ins, weights=np.where(sgn < 0, notional, 0.0), minlength=n_ins)], axis=1)
    n_per = np.bincount(ins, minlength=n_ins)
    assumptions: dict[str, object] = {
        "instruments": list(registry.symbols),
        "start_prices_usd": start_prices.tolist(),
        "open_interest_usd_per_side": oi.tolist(),
        "open_interest_rule": "closed market: long OI = short OI per instrument (notional at start price)",
        "accounts": A,
        "long_short_ratio": ratio.tolist(),
        "long_short_ratio_meaning": "long positions / short positions per instrument (account ratio)",
        "instruments_per_account_share_applied": k_share.tolist(),
        "instrument_weight": (ins_w / ins_w.sum()).tolist(),
        "instrument_weight_rule": "open interest" if params.instrument_weight is None else "given",
        "side_correlation": params.side_correlation,
        "side_model": "directional accounts (share = side_correlation) use one uniform for all positions",
        "cross_share": params.cross_share,
        "cross_wallet_rule": "cross wallet = sum of the positions' margins at their drawn leverage (no idle balance)",
        "margin_split_concentration": params.margin_split_concentration,
        "account_size": {"kind": sz.kind, "median_usd": sz.median_usd, "sigma": sz.sigma,
                         "pareto_alpha": sz.pareto_alpha},
        "leverage_mix": {"leverage": lev_values.tolist(), "probability": lev_p.tolist(),
                         "basis": params.leverage.basis},
        "collateral_scale": scale.tolist(),
        "entry_source": params.entry_source,
        "entry_sigma": params.entry_sigma if params.entry_source == "lognormal" else None,
        "entry_bars": None if grid is None else grid.n_bars,
        "entry_price_rule": ("close of a bar drawn by volume; open from the next bar" if grid is not None
                             else "start x exp(entry_sigma Z)"),
        "equilibrium": params.equilibrium,
        "equilibrium_rule": "group equity < maintenance (risk model) at any bar from entry to start, positions at "
                            "the bar's adverse extreme (low long / high short) -> redraw entries",
        "max_entry_attempts": MAX_ENTRY_ATTEMPTS,
    }
    report = MultiSynthesisReport(
        accounts=A, positions=P, margin_groups=G, open_interest_usd=rep_oi, positions_per_instrument=n_per,
        long_share=np.bincount(ins, weights=(sgn > 0).astype(np.float64), minlength=n_ins) / np.maximum(n_per, 1),
        instruments_per_account_share=np.bincount(k_real, minlength=n_ins + 1)[1:] / A,
        side_correlation=_side_phi(acc, sgn > 0, A), cross_accounts=n_cross, leverage_capped=int(capped.sum()),
        removed_positions=int(removed.sum()), removed_groups=int(flagged_groups.sum()), entry_redraw_rounds=rounds,
        conditional_draws=conditional, fallback_draws=fallback, pos_entry_bar=bar, pos_removed=removed, assumptions=assumptions)
    return book, report


def _place_conditional(pidx: np.ndarray, book: AccountBook, grid: _Grid | None, bar: np.ndarray, first: np.ndarray,
                       params: MultiSynthesisParams, start_prices: np.ndarray, margin_usd: np.ndarray,
                       settle_usd: np.ndarray, path: _Path,
                       risk: TieredRisk, rng: np.random.Generator) -> None:
    """Draw entries of ``pidx`` from the entry distribution restricted to entries surviving on their own margin."""
    reg = book.registry
    ins = book.pos_instrument
    qty = book.pos_qty
    if grid is not None:
        n_cols = path.n_cols
        sl = path.suffix_low if n_cols > 1 else np.repeat(path.suffix_low, grid.n_bars + 1, axis=1)
        sh = path.suffix_high if n_cols > 1 else np.repeat(path.suffix_high, grid.n_bars + 1, axis=1)
        b = _conditional_bars(pidx, ins, qty, margin_usd, settle_usd, grid, sl, sh, risk, rng)
        ok = b >= 0
        bar[pidx[ok]] = b[ok]
        book.pos_entry_price[pidx[ok]] = grid.entry_price[ins[pidx[ok]], b[ok]]
        if n_cols > 1:
            first[pidx[ok]] = b[ok] + 1
    else:
        ok = np.zeros(pidx.size, dtype=bool)
        for i in np.unique(ins[pidx]):
            sel = np.flatnonzero(ins[pidx] == i)
            j = pidx[sel]
            q = np.abs(qty[j])
            mm, _ = risk.position_requirement(ins[j], q, np.full(j.size, start_prices[i]), settle_usd[j])
            # draw_surviving_entries works on one instrument with arrays indexed by ``idx``
            e, good = draw_surviving_entries(np.arange(j.size), margin_usd[j], mm, q * settle_usd[j],
                                             np.sign(qty[j]), float(start_prices[i]), None, None,
                                             params.entry_sigma, rng)
            book.pos_entry_price[j[good]] = e[good]
            ok[sel] = good
    if not ok.all():
        j = int(pidx[np.flatnonzero(~ok)[0]])
        side = "long" if qty[j] > 0 else "short"
        raise DeleverInputError(
            f"multi synthesis: no entry in the {'history' if grid is not None else 'lognormal distribution'} lets a "
            f"{side} {reg.symbols[ins[j]]} position of margin {margin_usd[j]:.6g} USD and notional "
            f"{abs(qty[j]) * start_prices[ins[j]]:.6g} USD survive to the start; lower the leverage mix or use a "
            "history ending nearer the start prices")
