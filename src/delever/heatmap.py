"""Liquidation map and liquidation heatmap, without and with cascade feedback, with ensemble bands.

The liquidation maps and heatmaps that are most used in crypto show where leveraged positions would
be liquidated. Their makers say the levels are relative, that leverage is assumed fixed, and that
the price impact of the liquidations is never fed back. This module gives absolute USD numbers from
a scenario's position book (synthesized or loaded), states every assumption, draws uncertainty
bands from the synthesizer's assumptions, and measures what the feedback adds.

**Liquidation map** (:func:`liquidation_map`), at the start price ``S`` of the scenario, on the price
levels ``L = S * (1 + m / 100)`` for ``m`` in ``-range_pct .. +range_pct`` by ``step_pct``:

* *no feedback*: a position is liquidated at a level when the level is at or beyond its liquidation
  price ``LP`` under the venue's risk model (:func:`liquidation_prices`: Binance's formula on binance-usdm,
  the venue's tiers elsewhere, Drift's size premium and dYdX's requirement at the oracle; for those two the
  levels are oracle prices). ``long_usd(L) = sum(qty * LP)`` over longs with ``LP >= L``, ``short_usd(L) =
  sum(qty * LP)`` over shorts with ``LP <= L``: cumulative notional valued at each position's
  liquidation price. This is the usual map: full liquidation at ``LP``, no impact.
* *feedback*: for each level of a coarser grid (``feedback_step_pct``), the engine runs the book on
  an exogenous price that moves linearly from ``S`` to ``L`` over ``duration_s`` and holds for
  ``hold_s`` (stress mode: the forced orders walk the depth and move the price). A position counts
  when the engine liquidates any part of it (its liquidation was triggered), valued like the
  no-feedback map at ``qty * LP``, so both variants share one unit and the difference is the
  cascade: the positions reached only because the liquidations pushed the price past ``L``. Forced
  orders only push the engine's mark price further in the direction of the move, so the mark reaches
  ``L`` and every position of the no-feedback map is triggered too: *feedback >= no feedback* at every
  level; with a very deep book the difference goes to 0 (both tested). Not on Drift: there the
  liquidator's capital (initial margin on what it takes over) and the time ramp can leave a position past
  its price untouched within the run. The notional the engine actually executed (fills at their
  prices, takeovers at the bankruptcy price; venue step-downs leave part of a position open) is
  reported beside it (``*_feedback_fill_usd``), with the extreme mark price the cascade reached.

**Ensemble bands** (:func:`ensemble_bands`): the synthesizer's assumptions become distributions.
Member ``k`` of ``K`` draws, with a generator seeded by ``np.random.SeedSequence(seed).spawn(K)[k]``:
``open_interest_usd * exp(open_interest_sigma * Z)``, ``long_short_ratio * exp(long_short_sigma *
Z)``, leverage-mix weights from ``Dirichlet(leverage_concentration * w / sum(w))`` (positive weights
only; mean = the given weights), ``entry.sigma * exp(entry_sigma_sigma * Z)`` (lognormal entries
only), and its own book seed. The perturbed scenario is validated from a modified dump and built by
``runner.prepare``; the 5/50/95 % quantiles of the members' maps are the bands (feedback bands on
``ensemble_feedback_step_pct``, coarser again, because they cost ``K`` engine runs per level).

**Liquidation heatmap** (:func:`liquidation_heatmap`, price x time) over a price history (the
scenario's historical driver, or klines given by path), on time buckets (default: the bar) and
uniform USD price buckets (``price_step_pct`` of ``S``), plus one open-ended bucket below and one
above the grid so that every sum is complete:

* ``standing_*_usd``, the common heatmap: positions are opened along the history. Stated assumptions:
  each side opens, over the history, the book's notional on that side (= ``open_interest_usd`` for a
  synthesized book), split over bars in proportion to bar volume (equally if the bars have no
  volume); a bar's positions enter at its typical price ``(high + low + close) / 3``; their leverage
  follows the book's own: the side's positions sorted by leverage form ``LEVERAGE_CLASSES`` classes of
  about equal notional, each entering with its share of the bar's notional as an isolated position of
  the class's aggregate leverage (notional / collateral) and mean position notional (which sets the
  bracket; a leverage above the bracket's maximum is capped). A cohort's liquidation level comes
  from the venue's risk model like the map's (all bars' cohorts solved at once). Each
  cohort's liquidation level is alive from the bar after its opening bar until the first bar whose
  low (long) or high (short) reaches it, then it is removed (``touched_*_usd``). Positions are never
  closed otherwise. Values are notional at the liquidation price.
* ``liquidated_usd``: the scenario's book without feedback: each position is liquidated (``qty * LP``)
  at the first step of the exogenous path that reaches its ``LP``.
* ``liquidated_feedback_usd``: the engine run of the same book along the history in stress mode; the
  liquidation fills table binned by fill time and fill price (fill notional).

Outputs (:func:`write_heatmap`): ``levels.parquet``, ``heatmap.parquet``, ``heatmap.html`` (plotly.js
from ``<out_dir>/plotly-<version>.min.js``) and ``heatmap.png`` (matplotlib).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import typer
from pydantic import ValidationError

from delever.book import PositionBook
from delever.book_io import account_book_from_positions
from delever.cli_options import (
    DataDirOpt,
    EnsembleOpt,
    EntrySigmaSigmaOpt,
    JsonOpt,
    LeverageConcentrationOpt,
    LongShortSigmaOpt,
    NoWriteOpt,
    OpenInterestSigmaOpt,
    ScenarioOpt,
    SetOpt,
)
from delever.errors import DeleverInputError
from delever.risk import DriftRisk, Prices, risk_model_for
from delever.risk.liquidation import liquidation_prices as risk_liquidation_prices
from delever.runfolder import atomic_run_folder, run_folder_name
from delever.runner import Prepared, make_engine, path_metrics, prepare
from delever.scenario import HistoricalDriver, Scenario, ShockDriver, resolve_path, with_klines_driver

__all__ = [
    "EnsembleSpread",
    "HeatmapOptions",
    "LevelMap",
    "Bands",
    "LiquidationHeatmap",
    "HeatmapResult",
    "liquidation_prices",
    "level_grid",
    "map_no_feedback",
    "feedback_level",
    "liquidation_map",
    "perturbed_scenario",
    "ensemble_bands",
    "liquidation_heatmap",
    "build_heatmap",
    "write_heatmap",
    "heatmap_command",
]

QUANTILES = (5.0, 50.0, 95.0)
"""Percentiles of the ensemble bands."""

LEVERAGE_CLASSES = 16
"""Leverage classes (about equal notional) per side for the heatmap's cohorts."""

MAX_LEVELS = 10_001
MAX_PRICE_BUCKETS = 20_000
_REL = 1e-9


# --------------------------------------------------------------------------- options
@dataclass(frozen=True)
class EnsembleSpread:
    """Spreads of the synthesizer assumptions in the ensemble (defaults are assumptions, not data).

    Attributes:
        open_interest_sigma: Log-std of the open-interest factor (median 1). 0.2: venues publish open
            interest, but it moves by tens of percent within a day.
        long_short_sigma: Log-std of the long/short account-ratio factor (median 1).
        leverage_concentration: Dirichlet concentration ``kappa`` of the leverage-mix weights
            (``alpha = kappa * w / sum(w)``); larger is tighter. 50: a weight of 0.2 has a std of ~0.056.
        entry_sigma_sigma: Log-std of the ``entry.sigma`` factor (lognormal entries only).
    """

    open_interest_sigma: float = 0.2
    long_short_sigma: float = 0.15
    leverage_concentration: float = 50.0
    entry_sigma_sigma: float = 0.3

    def validate(self) -> EnsembleSpread:
        for name in ("open_interest_sigma", "long_short_sigma", "entry_sigma_sigma"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 <= v <= 3):
                raise DeleverInputError(f"--{name.replace('_', '-')}: expected a log-std in [0, 3], got {v!r}")
        k = self.leverage_concentration
        if not (math.isfinite(k) and k > 0):
            raise DeleverInputError(f"--leverage-concentration: expected a Dirichlet concentration > 0, got {k!r}")
        return self


@dataclass(frozen=True)
class HeatmapOptions:
    """What to compute (CLI flags in brackets).

    Attributes:
        range_pct: Levels span ``+-range_pct`` % around the start price [--range-pct], in (0, 99).
        step_pct: Spacing of the no-feedback map's levels, % of the start price [--step-pct].
        feedback_step_pct: Spacing of the feedback runs, a multiple of ``step_pct``; 0 = none
            [--feedback-step-pct].
        duration_s: Seconds of the linear move to each level in a feedback run [--duration-s].
        hold_s: Seconds the level is held after the move [--hold-s].
        ensemble: Number of perturbed books ``K``; 0 = no bands [--ensemble].
        ensemble_feedback_step_pct: Spacing of the members' feedback runs (multiple of ``step_pct``);
            0 = no feedback bands [--ensemble-feedback-step-pct].
        spread: Ensemble spreads.
        heatmap: Compute the price x time heatmap when a price history is available.
        price_step_pct: Heatmap price bucket, % of the start price [--price-step-pct].
        time_bucket_s: Heatmap time bucket in seconds (default: the bar interval) [--time-bucket-s].
        workers: Processes for the engine runs [--workers]; 1 runs everything in this process. Workers
            are spawned (no fork of a threaded process), so a script calling this with ``workers > 1``
            needs the usual ``if __name__ == "__main__":`` guard; results do not depend on ``workers``.
    """

    range_pct: float = 25.0
    step_pct: float = 0.5
    feedback_step_pct: float = 2.5
    duration_s: float = 60.0
    hold_s: float = 120.0
    ensemble: int = 20
    ensemble_feedback_step_pct: float = 5.0
    spread: EnsembleSpread = field(default_factory=EnsembleSpread)
    heatmap: bool = True
    price_step_pct: float = 0.25
    time_bucket_s: float | None = None
    workers: int = 1

    def validate(self) -> HeatmapOptions:
        """Check every option; raises :class:`DeleverInputError` naming the flag."""
        r, s = self.range_pct, self.step_pct
        if not (math.isfinite(r) and 0 < r < 99):
            raise DeleverInputError(f"--range-pct: expected a percentage in (0, 99), got {r!r}")
        if not (math.isfinite(s) and 0 < s <= r):
            raise DeleverInputError(f"--step-pct: expected a step in (0, range-pct = {r:g}], got {s!r}")
        if 2 * math.floor(r / s + _REL) + 1 > MAX_LEVELS:
            raise DeleverInputError(f"--step-pct: {s:g} gives more than {MAX_LEVELS} levels over +-{r:g} %")
        for flag, v in (("--feedback-step-pct", self.feedback_step_pct),
                        ("--ensemble-feedback-step-pct", self.ensemble_feedback_step_pct)):
            _multiple(flag, v, s)
        for flag, v in (("--duration-s", self.duration_s), ("--hold-s", self.hold_s)):
            if not (math.isfinite(v) and 0 <= v <= 86_400):
                raise DeleverInputError(f"{flag}: expected seconds in [0, 86400], got {v!r}")
        if not (isinstance(self.ensemble, int) and 0 <= self.ensemble <= 1000):
            raise DeleverInputError(f"--ensemble: expected a number of books in [0, 1000], got {self.ensemble!r}")
        if not (math.isfinite(self.price_step_pct) and 0.001 <= self.price_step_pct <= 50):
            raise DeleverInputError(f"--price-step-pct: expected a bucket in [0.001, 50] %, got {self.price_step_pct!r}")
        tb = self.time_bucket_s
        if tb is not None and not (math.isfinite(tb) and tb > 0):
            raise DeleverInputError(f"--time-bucket-s: expected seconds > 0, got {tb!r}")
        if not (isinstance(self.workers, int) and 1 <= self.workers <= 256):
            raise DeleverInputError(f"--workers: expected 1..256 processes, got {self.workers!r}")
        self.spread.validate()
        return self


def _multiple(flag: str, value: float, step: float) -> int:
    """``value / step`` as an int (0 for 0); raises unless ``value`` is a non-negative multiple of ``step``."""
    if not (math.isfinite(value) and value >= 0):
        raise DeleverInputError(f"{flag}: expected a step >= 0 (0 = none), got {value!r}")
    if value == 0:
        return 0
    ratio = value / step
    m = round(ratio)
    if m < 1 or abs(ratio - m) > 1e-9 * max(1.0, ratio):
        raise DeleverInputError(f"{flag}: {value:g} must be a multiple of --step-pct {step:g}")
    return int(m)


# --------------------------------------------------------------------------- results
@dataclass
class LevelMap:
    """The liquidation map of one book. All arrays float64 ``(L,)`` over the levels unless stated.

    Attributes:
        start_price: USD.
        move_pct: Level as a move from the start price, %.
        price: Level price, USD.
        long_usd: Cumulative long notional liquidated if the price falls to the level, no feedback
            (``sum(qty * LP)``, USD).
        short_usd: Same for shorts if the price rises to the level, USD.
        feedback: bool ``(L,)``, True on the levels with a feedback run.
        long_feedback_usd: Longs whose liquidation the engine triggered, valued at ``qty * LP`` (USD);
            NaN without a run. Same for ``short_feedback_usd``.
        long_feedback_fill_usd: Long notional the engine executed (fills at fill price, takeovers at
            the bankruptcy price), USD; NaN without a run. Same for ``short_feedback_fill_usd``.
        feedback_extreme_mark_usd: Lowest (down levels) or highest (up levels) mark price of the run.
        feedback_bad_debt_usd: Bad debt of the run, USD.
        feedback_adl_usd: Auto-deleveraged notional of the run, USD.
        run_s: Seconds spent in the feedback runs (sum over runs).
    """

    start_price: float
    move_pct: np.ndarray
    price: np.ndarray
    long_usd: np.ndarray
    short_usd: np.ndarray
    feedback: np.ndarray
    long_feedback_usd: np.ndarray
    short_feedback_usd: np.ndarray
    long_feedback_fill_usd: np.ndarray
    short_feedback_fill_usd: np.ndarray
    feedback_extreme_mark_usd: np.ndarray
    feedback_bad_debt_usd: np.ndarray
    feedback_adl_usd: np.ndarray
    run_s: float = 0.0


@dataclass
class Bands:
    """Ensemble quantiles. Arrays float64 ``(3, L)``: rows are the 5, 50 and 95 % quantiles (USD).

    Feedback rows are NaN on levels without member runs. ``members`` lists each member's drawn
    parameters; ``run_s`` is the summed time of the members (prepare, map and engine runs).
    """

    k: int
    long_usd: np.ndarray
    short_usd: np.ndarray
    long_feedback_usd: np.ndarray
    short_feedback_usd: np.ndarray
    feedback: np.ndarray
    members: list[dict[str, object]]
    run_s: float = 0.0


@dataclass
class LiquidationHeatmap:
    """Price x time grids, float64 ``(T, P)`` in USD; price bucket 0 is ``[0, edge_0)`` and bucket
    ``P - 1`` is ``[edge_last, inf)`` (open-ended, so sums are complete).

    Attributes:
        t0_s, t1_s: float64 ``(T,)`` bucket bounds, seconds after the history's first bar opens.
        time_utc_ms: int64 ``(T,)`` bucket start, epoch ms UTC.
        price_lo, price_hi: float64 ``(P,)`` bucket bounds, USD.
        open, low, high, close: float64 ``(T,)`` the history's price in each time bucket, USD.
        standing_long_usd, standing_short_usd: cohort levels alive at the end of the bucket.
        touched_long_usd, touched_short_usd: cohort levels removed in the bucket (the price reached
            them), at their price.
        liquidated_usd: the book without feedback, ``qty * LP`` at the first touch.
        liquidated_feedback_usd: the engine's fills (fill notional at fill time and price).
        opened_usd: float64 ``(T,)`` cohort notional (at liquidation price) opened in the bucket.
        totals: sums and the engine run's metrics.
        notes: stated assumptions and remarks.
    """

    t0_s: np.ndarray
    t1_s: np.ndarray
    time_utc_ms: np.ndarray
    price_lo: np.ndarray
    price_hi: np.ndarray
    open: np.ndarray
    low: np.ndarray
    high: np.ndarray
    close: np.ndarray
    standing_long_usd: np.ndarray
    standing_short_usd: np.ndarray
    touched_long_usd: np.ndarray
    touched_short_usd: np.ndarray
    liquidated_usd: np.ndarray
    liquidated_feedback_usd: np.ndarray
    opened_usd: np.ndarray
    totals: dict[str, object]
    notes: list[str]
    run_s: float = 0.0


@dataclass
class HeatmapResult:
    """Everything ``delever heatmap`` computes; ``summary`` is the ``--json`` object."""

    prepared: Prepared
    options: HeatmapOptions
    levels: LevelMap
    bands: Bands | None
    heatmap: LiquidationHeatmap | None
    summary: dict[str, object]
    wall_s: float


# --------------------------------------------------------------------------- the map
def liquidation_prices(prep: Prepared) -> np.ndarray:
    """Liquidation price of every position of the prepared book at its start state, under the venue's risk model.

    The book becomes an account book (``book_io.account_book_from_positions``: each row its own account and margin
    group, USDT at 1 USD) and the venue's model comes from ``risk.risk_model_for`` on the prepared venue rules, with
    the prepared tier table for the instrument (so a data-dir bracket source is kept). The price is the one the
    venue margins at: the mark for the tiered venues, the oracle for Drift and dYdX (the map's levels are then
    oracle prices; at the start mark = index = oracle = the start price, no basis). Closed forms where the model has
    one (Binance's formula for binance-usdm, Hyperliquid's tiers, OKX's whole-position tiers, Bybit's risk limits),
    else ``risk.liquidation.liquidation_prices``' root search (Drift's size premium, dYdX's MMR at the oracle).
    Drift's margin ratio is the real-valued size-premium formula, as the engine's own margin check
    (``engine.drift.DriftLiquidation.requirement``) uses it.

    Returns:
        float64 ``(N,)`` USD; NaN where a position can never be liquidated (e.g. a long whose collateral
        covers its notional).
    """
    return _venue_liquidation_prices(prep, prep.book)


def _venue_liquidation_prices(prep: Prepared, book: PositionBook) -> np.ndarray:
    """Liquidation prices of a one-instrument ``book`` under ``prep``'s venue risk model (:func:`liquidation_prices`)."""
    accounts = account_book_from_positions(book)
    model = risk_model_for(prep.venue, accounts.registry, {book.instrument: prep.tiers})
    if isinstance(model, DriftRisk):
        model = replace(model, exact=False)
    # every other price is fixed at the start (one instrument, USDT at 1 USD); the result does not depend on it
    start = np.array([float(prep.path.price[0])])
    return risk_liquidation_prices(model, accounts, Prices(start, start.copy(), np.ones(len(accounts.registry.assets))))


def level_grid(start_price: float, range_pct: float, step_pct: float) -> tuple[np.ndarray, np.ndarray]:
    """Levels ``move_pct = i * step_pct`` for ``|i * step_pct| <= range_pct``, and their prices.

    Returns:
        ``(move_pct, price)``: float64 ``(L,)`` in %, and USD (``start * (1 + move / 100)``; the
        ``move_pct = 0`` level is exactly the start price).
    """
    n = int(math.floor(range_pct / step_pct + _REL))
    move = np.arange(-n, n + 1, dtype=np.float64) * step_pct
    move[n] = 0.0
    price = start_price * (1.0 + move / 100.0)
    price[n] = start_price
    return move, price


def map_no_feedback(side: np.ndarray, qty: np.ndarray, lp: np.ndarray,
                    levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative notional at liquidation price liquidated at each level, no feedback.

    Args:
        side: int8 ``(N,)`` +1 long / -1 short.
        qty: float64 ``(N,)`` base units.
        lp: float64 ``(N,)`` liquidation prices, USD (NaN: never liquidated).
        levels: float64 ``(L,)`` price levels, USD.

    Returns:
        ``(long_usd, short_usd)``, float64 ``(L,)``: ``sum(qty * lp)`` over longs with ``lp >= level``
        and over shorts with ``lp <= level``. Each is a masked ``np.sum`` over the book in its own order,
        so a level beyond every liquidation price gives exactly ``np.sum`` of that side's values.
    """
    value = qty * lp
    finite = np.isfinite(lp)
    lv, lpl = value[(side > 0) & finite], lp[(side > 0) & finite]
    sv, lps = value[(side < 0) & finite], lp[(side < 0) & finite]
    long_usd = np.array([lv[lpl >= x].sum() for x in levels], dtype=np.float64)
    short_usd = np.array([sv[lps <= x].sum() for x in levels], dtype=np.float64)
    return long_usd, short_usd


def _level_path(prep: Prepared, move_pct: float, duration_s: float, hold_s: float):
    from delever.paths import shock_path

    start = float(prep.path.price[0])
    driver = ShockDriver(move_pct=move_pct, duration_s=duration_s, hold_s=hold_s, shape="linear")
    return shock_path(driver, start, prep.scenario.engine.dt_s)


def feedback_level(prep: Prepared, lp: np.ndarray, move_pct: float, duration_s: float,
                   hold_s: float) -> dict[str, float]:
    """Run the engine on a linear move to ``start * (1 + move_pct / 100)`` and hold (stress mode).

    Args:
        prep: Prepared run (book, venue, depth; its own price driver is replaced).
        lp: float64 ``(N,)`` start liquidation prices of ``prep.book`` (:func:`liquidation_prices`).
        move_pct: Level, % from the start price (> -99).
        duration_s: Seconds of the linear move; ``hold_s``: seconds held after it.

    Returns:
        ``long_usd``/``short_usd``: positions with any liquidation, ``sum(qty * LP)`` (a position with
        no finite LP is valued at its first liquidation's mark price); ``long_fill_usd``/
        ``short_fill_usd``: the engine's executed notional; ``extreme_mark_usd``; ``bad_debt_usd``;
        ``adl_notional_usd``; ``run_s``.
    """
    t0 = time.perf_counter()
    path = _level_path(prep, move_pct, duration_s, hold_s)
    eng = make_engine(prep, path)
    eng.run()
    metrics = path_metrics(eng, prep.scenario.insurance_fund.initial_usd)
    book = prep.book
    acc = eng.liq_rows.column("account")
    long_usd = short_usd = 0.0
    if acc.size:
        order = np.argsort(book.account, kind="stable")
        first_row = np.unique(acc, return_index=True)[1]
        pos = order[np.searchsorted(book.account, acc[first_row], sorter=order)]
        mark = eng.liq_rows.column("mark_price")[first_row]
        price = np.where(np.isfinite(lp[pos]), lp[pos], mark)
        value = book.qty[pos] * price
        longs = book.side[pos] > 0
        long_usd, short_usd = float(value[longs].sum()), float(value[~longs].sum())
    marks = eng.step_rows.column("mark_price")
    return {
        "long_usd": long_usd,
        "short_usd": short_usd,
        "long_fill_usd": float(metrics["liquidated_long_usd"]),
        "short_fill_usd": float(metrics["liquidated_short_usd"]),
        "extreme_mark_usd": float(marks.min() if move_pct <= 0 else marks.max()),
        "bad_debt_usd": float(metrics["bad_debt_usd"]),
        "adl_notional_usd": float(metrics["adl_notional_usd"]),
        "run_s": time.perf_counter() - t0,
    }


def _feedback_job(args: tuple) -> dict[str, float]:
    prep, lp, move, duration_s, hold_s = args
    return feedback_level(prep, lp, move, duration_s, hold_s)


def _run_jobs(fn, jobs: list, workers: int) -> list:
    """``[fn(j) for j in jobs]``, in worker processes (spawned, so no forked threads) if ``workers > 1``."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(j) for j in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
        return list(pool.map(fn, jobs))


def liquidation_map(prep: Prepared, opts: HeatmapOptions, lp: np.ndarray | None = None) -> LevelMap:
    """The liquidation map of ``prep.book`` at its start price, without and with feedback.

    Args:
        prep: Prepared run.
        opts: Grid, feedback-run and worker options (validated).
        lp: Start liquidation prices (computed when None).

    Returns:
        :class:`LevelMap` (feedback columns NaN off the ``feedback_step_pct`` grid).
    """
    lp = liquidation_prices(prep) if lp is None else lp
    start = float(prep.path.price[0])
    move, price = level_grid(start, opts.range_pct, opts.step_pct)
    long_usd, short_usd = map_no_feedback(prep.book.side, prep.book.qty, lp, price)
    fb = _grid_mask(move.size, _multiple("--feedback-step-pct", opts.feedback_step_pct, opts.step_pct))
    runs = _run_jobs(_feedback_job, [(prep, lp, float(m), opts.duration_s, opts.hold_s) for m in move[fb]],
                     opts.workers)
    cols = {k: np.full(move.size, np.nan) for k in ("long_usd", "short_usd", "long_fill_usd", "short_fill_usd",
                                                     "extreme_mark_usd", "bad_debt_usd", "adl_notional_usd")}
    for k, arr in cols.items():
        arr[fb] = [r[k] for r in runs]
    return LevelMap(start, move, price, long_usd, short_usd, fb, cols["long_usd"], cols["short_usd"],
                    cols["long_fill_usd"], cols["short_fill_usd"], cols["extreme_mark_usd"], cols["bad_debt_usd"],
                    cols["adl_notional_usd"], float(sum(r["run_s"] for r in runs)))


def _grid_mask(n_levels: int, every: int) -> np.ndarray:
    """Levels whose index from the centre is a multiple of ``every`` (none for 0)."""
    mask = np.zeros(n_levels, dtype=bool)
    if every > 0:
        centre = n_levels // 2
        mask[(np.arange(n_levels) - centre) % every == 0] = True
    return mask


# --------------------------------------------------------------------------- ensemble
def perturbed_scenario(scenario: Scenario, seed_seq: np.random.SeedSequence,
                       spread: EnsembleSpread) -> tuple[Scenario, dict[str, object]]:
    """One ensemble member: the scenario with its synthesis assumptions drawn around the given values.

    Draw order (one generator from ``seed_seq``): open-interest factor, long/short factor, leverage
    weights, entry-sigma factor, book seed (uint32).

    Returns:
        ``(scenario, params)``: the validated member scenario and the drawn values.

    Raises:
        DeleverInputError: the book is not synthesized, or the member does not validate.
    """
    if scenario.book.source != "synthesize":
        raise DeleverInputError("--ensemble: needs book.source = 'synthesize' (a loaded book has nothing to perturb)")
    rng = np.random.default_rng(seed_seq)
    syn = scenario.book.synthesize
    oi = syn.open_interest_usd * math.exp(spread.open_interest_sigma * rng.standard_normal())
    ls = syn.long_short_ratio * math.exp(spread.long_short_sigma * rng.standard_normal())
    w = np.asarray(syn.leverage.weight, dtype=np.float64)
    pos = w > 0
    weights = np.zeros_like(w)
    weights[pos] = rng.dirichlet(spread.leverage_concentration * w[pos] / w[pos].sum())
    # Dirichlet draws can underflow to exactly 0 for tiny alphas; keep the mix valid.
    weights[pos] = np.maximum(weights[pos], 1e-12)
    weights = weights / weights.sum()
    entry_sigma = syn.entry.sigma * math.exp(spread.entry_sigma_sigma * rng.standard_normal())
    book_seed = int(rng.integers(0, 2**32))
    dump = scenario.model_dump(mode="json")
    s = dump["book"]["synthesize"]
    s["open_interest_usd"] = oi
    s["long_short_ratio"] = ls
    s["leverage"]["weight"] = weights.tolist()
    if syn.entry.source == "lognormal":
        s["entry"]["sigma"] = entry_sigma
    dump["seed"] = book_seed
    try:
        member = Scenario.model_validate(dump)
    except ValidationError as exc:  # pragma: no cover - every draw is in range by construction
        raise DeleverInputError(f"--ensemble: a perturbed scenario is invalid: {exc.errors()[0]['msg']}") from None
    params: dict[str, object] = {
        "open_interest_usd": oi, "long_short_ratio": ls, "leverage_weight": weights.tolist(),
        "entry_sigma": entry_sigma if syn.entry.source == "lognormal" else None, "book_seed": book_seed,
    }
    return member, params


def _member_job(args: tuple) -> dict[str, object]:
    scenario, data_dir, seed_seq, spread, levels, fb_moves, duration_s, hold_s = args
    t0 = time.perf_counter()
    member, params = perturbed_scenario(scenario, seed_seq, spread)
    prep = prepare(member, data_dir)
    lp = liquidation_prices(prep)
    long_usd, short_usd = map_no_feedback(prep.book.side, prep.book.qty, lp, levels)
    runs = [feedback_level(prep, lp, float(m), duration_s, hold_s) for m in fb_moves]
    return {"params": params, "long_usd": long_usd, "short_usd": short_usd,
            "long_feedback_usd": np.array([r["long_usd"] for r in runs]),
            "short_feedback_usd": np.array([r["short_usd"] for r in runs]),
            "run_s": time.perf_counter() - t0}


def ensemble_bands(scenario: Scenario, data_dir: Path, levels: LevelMap, opts: HeatmapOptions,
                   seed: int | None = None) -> Bands:
    """5/50/95 % bands of the map over ``opts.ensemble`` perturbed books.

    Member ``k`` uses ``np.random.SeedSequence(seed).spawn(K)[k]`` (``seed`` default: the scenario
    seed), see :func:`perturbed_scenario`; it is built by ``runner.prepare`` and mapped on the
    levels of ``levels``; its feedback runs are on ``opts.ensemble_feedback_step_pct``.

    Returns:
        :class:`Bands`; quantiles by ``np.percentile`` (linear), so 5 % <= 50 % <= 95 % everywhere.
    """
    k = opts.ensemble
    children = np.random.SeedSequence(scenario.seed if seed is None else seed).spawn(k)
    fb = _grid_mask(levels.move_pct.size,
                    _multiple("--ensemble-feedback-step-pct", opts.ensemble_feedback_step_pct, opts.step_pct))
    jobs = [(scenario, data_dir, c, opts.spread, levels.price, levels.move_pct[fb], opts.duration_s, opts.hold_s)
            for c in children]
    out = _run_jobs(_member_job, jobs, opts.workers)

    def q(rows: list[np.ndarray], mask: np.ndarray | None = None) -> np.ndarray:
        res = np.full((len(QUANTILES), levels.move_pct.size), np.nan)
        if rows and (mask is None or mask.any()):
            vals = np.percentile(np.vstack(rows), QUANTILES, axis=0)
            if mask is None:
                res[:] = vals
            else:
                res[:, mask] = vals
        return res

    return Bands(
        k=k,
        long_usd=q([o["long_usd"] for o in out]),
        short_usd=q([o["short_usd"] for o in out]),
        long_feedback_usd=q([o["long_feedback_usd"] for o in out], fb),
        short_feedback_usd=q([o["short_feedback_usd"] for o in out], fb),
        feedback=fb,
        members=[o["params"] for o in out],
        run_s=float(sum(o["run_s"] for o in out)),
    )


# --------------------------------------------------------------------------- heatmap
def _history_bars(prep: Prepared, data_dir: Path):
    """Bars of the prepared historical driver, rescaled like the path (``market.start_price``)."""
    from delever.data.klines import parse_utc_ms, read_klines

    drv = prep.scenario.price_driver
    kl = read_klines(resolve_path(drv.path, data_dir, "price_driver.path"))
    s = parse_utc_ms(drv.start, "price_driver.start") if drv.start is not None else None
    e = parse_utc_ms(drv.end, "price_driver.end") if drv.end is not None else None
    if s is not None or e is not None:
        kl = kl.select(s, e)
    factor = float(prep.path.price[0]) / float(kl.open[0])
    return kl, factor


def _leverage_classes(book, start: float, side: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One side's positions in ``n`` leverage classes of about equal notional.

    Positions are sorted by leverage (notional at ``start`` / collateral); a position belongs to the
    class holding the midpoint of its cumulative notional. Per class: aggregate leverage (class
    notional / class collateral), mean position notional (class notional / positions) and notional.

    Returns:
        ``(leverage, position_usd, notional_usd)``, float64 ``(n,)``; empty classes have notional 0.
    """
    m = book.side == side
    notional = book.qty[m] * start
    coll = book.collateral_usd[m]
    with np.errstate(divide="ignore"):
        lev = np.where(coll > 0, notional / coll, np.inf)
    order = np.argsort(lev, kind="stable")
    cum = np.cumsum(notional[order])
    mid = (cum - 0.5 * notional[order]) / cum[-1]
    cls = np.minimum((mid * n).astype(np.int64), n - 1)
    cls_notional = np.bincount(cls, weights=notional[order], minlength=n)
    cls_coll = np.bincount(cls, weights=coll[order], minlength=n)
    count = np.bincount(cls, minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        leverage = np.where(cls_coll > 0, cls_notional / cls_coll, np.inf)
        position = np.where(count > 0, cls_notional / np.maximum(count, 1), 1.0)
    return leverage, position, cls_notional


def _cohort_liquidation_prices(prep: Prepared, typical: np.ndarray, side: np.ndarray, position_usd: np.ndarray,
                               leverage: np.ndarray, present: np.ndarray) -> np.ndarray:
    """float64 ``(B, C)``: liquidation price of each bar's cohorts under the venue's risk model.

    Cohort ``c`` of bar ``k`` is an isolated position of ``position_usd[c] / typical[k]`` base entered at
    ``typical[k]`` with margin ``position_usd[c] / leverage[c]``; absent cohorts (``present`` False) are NaN. All
    bars are solved at once (one account book of ``B x C`` isolated positions).
    """
    n_b, n_c = typical.size, side.size
    out = np.full((n_b, n_c), np.nan)
    cols = np.flatnonzero(present)
    if cols.size == 0 or n_b == 0:
        return out
    entry = np.repeat(typical, cols.size)
    rep = np.tile(position_usd[cols], n_b)
    cohorts = PositionBook(prep.book.instrument, np.arange(entry.size), np.tile(side[cols], n_b), rep / entry, entry,
                           rep / np.tile(leverage[cols], n_b), np.zeros(entry.size, bool))
    out[:, cols] = _venue_liquidation_prices(prep, cohorts).reshape(n_b, cols.size)
    return out


def _first_touch_after(k: int, lp: np.ndarray, low: np.ndarray, high: np.ndarray, side: np.ndarray) -> np.ndarray:
    """First bar ``j > k`` whose low (long) / high (short) reaches ``lp``; ``len(low)`` if none (or NaN lp)."""
    n_bars = low.size
    out = np.full(lp.size, n_bars, dtype=np.int64)
    if k + 1 >= n_bars:
        return out
    rmin = np.minimum.accumulate(low[k + 1:])
    rmax = np.maximum.accumulate(high[k + 1:])
    finite = np.isfinite(lp)
    lg = (side > 0) & finite
    sh = (side < 0) & finite
    out[lg] = k + 1 + np.searchsorted(-rmin, -lp[lg], side="left")
    out[sh] = k + 1 + np.searchsorted(rmax, lp[sh], side="left")
    return out


def liquidation_heatmap(prep: Prepared, data_dir: Path, opts: HeatmapOptions,
                        lp: np.ndarray | None = None) -> LiquidationHeatmap:
    """Price x time heatmap over the prepared historical price driver (see the module docstring).

    Args:
        prep: Prepared run whose ``price_driver`` is historical in stress mode.
        data_dir: Data directory (to read the driver's bars with their volume).
        opts: ``price_step_pct``, ``range_pct`` (grid margin beyond the history's range),
            ``time_bucket_s``.
        lp: Start liquidation prices of ``prep.book`` (computed when None).

    Returns:
        :class:`LiquidationHeatmap`.

    Raises:
        DeleverInputError: the driver is not historical, a time bucket shorter than a bar, or too
            many price buckets.
    """
    t_start = time.perf_counter()
    if not isinstance(prep.scenario.price_driver, HistoricalDriver):
        raise DeleverInputError("heatmap: needs a price history (price_driver.kind = 'historical' or --klines)")
    lp = liquidation_prices(prep) if lp is None else lp
    kl, factor = _history_bars(prep, data_dir)
    n_bars = len(kl)
    interval_s = kl.interval_ms / 1000.0
    bucket_s = interval_s if opts.time_bucket_s is None else float(opts.time_bucket_s)
    if bucket_s < interval_s * (1 - _REL):
        raise DeleverInputError(f"--time-bucket-s: {bucket_s:g} s is shorter than a bar ({interval_s:g} s)")
    bar_t0 = (kl.open_time_ms - kl.open_time_ms[0]).astype(np.float64) / 1000.0
    bar_bucket = np.floor(bar_t0 / bucket_s + _REL).astype(np.int64)
    n_t = int(bar_bucket[-1]) + 1
    o, h, lo_, c = kl.open * factor, kl.high * factor, kl.low * factor, kl.close * factor
    start = float(prep.path.price[0])

    # price buckets: uniform in USD, margin range_pct beyond the history's range, plus open ends
    width = opts.price_step_pct / 100.0 * start
    p_lo = float(lo_.min()) * (1.0 - opts.range_pct / 100.0)
    p_hi = float(h.max()) * (1.0 + opts.range_pct / 100.0)
    n_in = int(math.ceil((p_hi - p_lo) / width))
    if n_in + 2 > MAX_PRICE_BUCKETS:
        raise DeleverInputError(f"--price-step-pct: {opts.price_step_pct:g} gives {n_in} price buckets "
                                f"(more than {MAX_PRICE_BUCKETS}); use a coarser bucket")
    edges = math.floor(p_lo / width) * width + width * np.arange(n_in + 2, dtype=np.float64)
    n_p = edges.size + 1
    price_lo = np.concatenate([[0.0], edges])
    price_hi = np.concatenate([edges, [np.inf]])

    def pbin(p: np.ndarray) -> np.ndarray:
        return np.searchsorted(edges, p, side="right")

    # --- cohorts opened along the history (the common heatmap)
    vol = kl.volume
    wts = vol / vol.sum() if vol.sum() > 0 else np.full(n_bars, 1.0 / n_bars)
    typical = (h + lo_ + c) / 3.0
    book = prep.book
    ncls = LEVERAGE_CLASSES
    standing = {1: np.zeros((n_t + 1, n_p)), -1: np.zeros((n_t + 1, n_p))}
    touched = {1: np.zeros((n_t, n_p)), -1: np.zeros((n_t, n_p))}
    opened = np.zeros(n_t)
    notes: list[str] = []
    never_usd = 0.0
    cls_info: dict[str, object] = {}
    side_arr = np.concatenate([np.ones(ncls, np.int8), -np.ones(ncls, np.int8)])
    lev_all, rep_all, share_all = [], [], []
    for sd in (1, -1):
        if not (book.side == sd).any():
            lev_all.append(np.full(ncls, np.nan))
            rep_all.append(np.full(ncls, 1.0))
            share_all.append(np.zeros(ncls))
            continue
        lev, rep, cls_notional = _leverage_classes(book, start, sd, ncls)
        capped = np.minimum(lev, prep.tiers.max_leverage_for(rep))
        lev_all.append(capped)
        rep_all.append(rep)
        share_all.append(cls_notional)
        cls_info["long" if sd > 0 else "short"] = {
            "leverage": capped.tolist(), "position_usd": rep.tolist(), "notional_usd": cls_notional.tolist()}
    lev_c = np.concatenate(lev_all)
    rep_c = np.concatenate(rep_all)
    share_c = np.concatenate(share_all)
    lp_bars = _cohort_liquidation_prices(prep, typical, side_arr, rep_c, lev_c, share_c > 0)
    for k in range(n_bars):
        p = float(typical[k])
        lpc = lp_bars[k]
        value = share_c * wts[k] * lpc / p  # cohort notional at its liquidation price
        ok = np.isfinite(lpc) & (share_c > 0)
        never_usd += float((share_c * wts[k])[~ok & (share_c > 0)].sum())
        if not ok.any():
            continue
        lpc, value, sd = lpc[ok], value[ok], side_arr[ok]
        tb = int(bar_bucket[k])
        b = pbin(lpc)
        opened[tb] += value.sum()
        touch = _first_touch_after(k, lpc, lo_, h, sd)
        for s_ in (1, -1):
            m = sd == s_
            np.add.at(standing[s_][tb], b[m], value[m])
            hit = m & (touch < n_bars)
            if hit.any():
                tt = bar_bucket[touch[hit]]
                np.add.at(standing[s_], (tt, b[hit]), -value[hit])
                np.add.at(touched[s_], (tt, b[hit]), value[hit])
    standing_long = np.cumsum(standing[1], axis=0)[:n_t]
    standing_short = np.cumsum(standing[-1], axis=0)[:n_t]
    # float residue of add-then-remove: clip to exactly 0 below a relative 1e-9 of the largest cell
    tiny = 1e-9 * max(float(np.abs(standing_long).max(initial=0.0)), float(np.abs(standing_short).max(initial=0.0)), 1.0)
    standing_long[np.abs(standing_long) < tiny] = 0.0
    standing_short[np.abs(standing_short) < tiny] = 0.0

    # --- the book without feedback: first touch of each LP on the exogenous path
    path = prep.path
    step_bar = np.maximum(np.ceil(path.t_s / interval_s - _REL).astype(np.int64) - 1, 0)
    step_bucket = bar_bucket[np.minimum(step_bar, n_bars - 1)]
    rmin = np.minimum.accumulate(path.price)
    rmax = np.maximum.accumulate(path.price)
    finite = np.isfinite(lp)
    step = np.full(lp.size, path.price.size, dtype=np.int64)
    lg, sh = (book.side > 0) & finite, (book.side < 0) & finite
    step[lg] = np.searchsorted(-rmin, -lp[lg], side="left")
    step[sh] = np.searchsorted(rmax, lp[sh], side="left")
    hit = step < path.price.size
    liquidated = np.zeros((n_t, n_p))
    np.add.at(liquidated, (step_bucket[step[hit]], pbin(lp[hit])), book.qty[hit] * lp[hit])

    # --- the engine along the history (stress mode)
    eng = make_engine(prep)
    eng.run()
    metrics = path_metrics(eng, prep.scenario.insurance_fund.initial_usd)
    liq_fb = np.zeros((n_t, n_p))
    steps = eng.liq_rows.column("step")
    if steps.size:
        np.add.at(liq_fb, (step_bucket[steps], pbin(eng.liq_rows.column("price"))),
                  eng.liq_rows.column("notional_usd"))

    # --- per-bucket history summary
    t0_s = np.arange(n_t, dtype=np.float64) * bucket_s
    first_bar = np.searchsorted(bar_bucket, np.arange(n_t), side="left")
    last_bar = np.searchsorted(bar_bucket, np.arange(n_t), side="right") - 1
    has = last_bar >= first_bar
    b_open = np.where(has, o[np.minimum(first_bar, n_bars - 1)], np.nan)
    b_close = np.where(has, c[np.maximum(last_bar, 0)], np.nan)
    b_low = np.full(n_t, np.nan)
    b_high = np.full(n_t, np.nan)
    np.fmin.at(b_low, bar_bucket, lo_)
    np.fmax.at(b_high, bar_bucket, h)

    notes.append(f"heatmap cohorts: each side opens the book's notional over {n_bars} bars in proportion to "
                 f"{'bar volume' if vol.sum() > 0 else 'time (no volume in the bars)'}, at each bar's typical price, "
                 f"{ncls} leverage classes of about equal notional from the book (aggregate leverage, mean position "
                 "notional, isolated); levels alive from the next bar until the price reaches them; no other closes")
    if factor != 1.0:
        notes.append(f"heatmap: bars rescaled x{factor:.6g} like the price driver (market.start_price)")
    totals: dict[str, object] = {
        "time_buckets": n_t, "price_buckets": n_p, "time_bucket_s": bucket_s, "bars": n_bars,
        "price_bucket_usd": width,
        "opened_usd": float(opened.sum()),
        "standing_end_usd": float(standing_long[-1].sum() + standing_short[-1].sum()),
        "touched_usd": float(touched[1].sum() + touched[-1].sum()),
        "never_liquidatable_usd": never_usd,
        "liquidated_usd": float(liquidated.sum()),
        "liquidated_feedback_usd": float(liq_fb.sum()),
        "outside_grid_usd": {
            "standing_end": float(standing_long[-1][[0, -1]].sum() + standing_short[-1][[0, -1]].sum()),
            "touched": float(touched[1][:, [0, -1]].sum() + touched[-1][:, [0, -1]].sum()),
            "liquidated": float(liquidated[:, [0, -1]].sum()),
            "liquidated_feedback": float(liq_fb[:, [0, -1]].sum()),
        },
        "cohort_classes": cls_info,
        "engine": {k: metrics[k] for k in ("exogenous_move_pct", "final_move_pct", "liquidated_long_usd",
                                           "liquidated_short_usd", "bad_debt_usd", "adl_notional_usd",
                                           "insurance_depleted")},
    }
    return LiquidationHeatmap(
        t0_s=t0_s, t1_s=t0_s + bucket_s, time_utc_ms=int(kl.open_time_ms[0]) + (t0_s * 1000).astype(np.int64),
        price_lo=price_lo, price_hi=price_hi, open=b_open, low=b_low, high=b_high, close=b_close,
        standing_long_usd=standing_long, standing_short_usd=standing_short, touched_long_usd=touched[1],
        touched_short_usd=touched[-1],
        liquidated_usd=liquidated, liquidated_feedback_usd=liq_fb, opened_usd=opened, totals=totals, notes=notes,
        run_s=time.perf_counter() - t_start,
    )


# --------------------------------------------------------------------------- driver
def _heatmap_scenario(scenario: Scenario, klines: Path | str | None, data_dir: Path, notes: list[str]) -> Scenario:
    """The scenario with the history to use: ``klines`` as a stress historical driver, or replay -> stress."""
    if klines is not None:
        notes.append(f"price history from --klines {klines} (stress, intrabar ohlc, its own price level)")
        return with_klines_driver(scenario, klines, data_dir, "stress")
    drv = scenario.price_driver
    if isinstance(drv, HistoricalDriver) and drv.mode == "replay":
        notes.append("price driver switched from replay to stress mode (the feedback runs add impact)")
        return scenario.model_copy(update={"price_driver": drv.model_copy(update={"mode": "stress"})})
    return scenario


def build_heatmap(scenario: Scenario, data_dir: Path, opts: HeatmapOptions | None = None,
                  klines: Path | str | None = None) -> HeatmapResult:
    """Prepare the scenario and compute the map, the bands and the heatmap (the library entry point).

    Args:
        scenario: Validated scenario.
        data_dir: Data directory.
        opts: Options (defaults when None).
        klines: Optional kline file for the heatmap's price history (absolute, relative to the
            working directory, or to the data dir); replaces the scenario's price driver and start price.

    Raises:
        DeleverInputError: bad options or inputs, named by flag, file or field.
    """
    scenario.require_one_instrument("heatmap")
    t0 = time.perf_counter()
    opts = (opts or HeatmapOptions()).validate()
    notes: list[str] = []
    sc = _heatmap_scenario(scenario, klines, data_dir, notes)
    prep = prepare(sc, data_dir)
    lp = liquidation_prices(prep)
    t_map = time.perf_counter()
    levels = liquidation_map(prep, opts, lp)
    map_wall = time.perf_counter() - t_map
    bands = None
    t_ens = time.perf_counter()
    if opts.ensemble > 0:
        if sc.book.source == "synthesize":
            bands = ensemble_bands(sc, data_dir, levels, opts)
            if sc.book.synthesize.entry.source != "lognormal":
                notes.append("ensemble: entry prices come from a price history, so entry.sigma is not perturbed")
        else:
            notes.append("ensemble skipped: the book is loaded from a file (nothing to perturb)")
    ens_wall = time.perf_counter() - t_ens
    hm = None
    t_hm = time.perf_counter()
    if opts.heatmap:
        if isinstance(sc.price_driver, HistoricalDriver):
            hm = liquidation_heatmap(prep, data_dir, opts, lp)
            notes.extend(hm.notes)
        else:
            notes.append("heatmap skipped: it needs a price history (a historical price_driver, or --klines)")
    hm_wall = time.perf_counter() - t_hm
    wall = time.perf_counter() - t0
    summary = _summary(prep, opts, levels, bands, hm, lp, notes,
                       {"map_s": map_wall, "ensemble_s": ens_wall, "heatmap_s": hm_wall, "total_s": wall})
    return HeatmapResult(prep, opts, levels, bands, hm, summary, wall)


def _at(levels: LevelMap, move: float, arr: np.ndarray) -> float | None:
    i = int(np.argmin(np.abs(levels.move_pct - move)))
    if abs(levels.move_pct[i] - move) > 1e-9 or not np.isfinite(arr[i]):
        return None
    return float(arr[i])


def _summary(prep: Prepared, opts: HeatmapOptions, levels: LevelMap, bands: Bands | None,
             hm: LiquidationHeatmap | None, lp: np.ndarray, notes: list[str], timing: dict[str, float]) -> dict:
    sc, book = prep.scenario, prep.book
    finite = np.isfinite(lp)
    at_start = int((finite & np.where(book.side > 0, lp >= levels.start_price, lp <= levels.start_price)).sum())
    if at_start:
        # e.g. a book synthesized on the tier table is not in equilibrium with Drift's size premium
        notes = [*notes, f"{at_start} positions are at or below maintenance at the start price under the venue's risk "
                         f"model ({prep.venue.name}); the map counts them at every level on their side"]
    value = book.qty * lp
    down = levels.move_pct < 0
    side_nofb = np.where(down, levels.long_usd, levels.short_usd)
    side_fb = np.where(down, levels.long_feedback_usd, levels.short_feedback_usd)
    extra = side_fb - side_nofb
    key: list[dict[str, object]] = []
    for m in (-25, -20, -15, -10, -5, -2.5, 2.5, 5, 10, 15, 20, 25):
        nofb = _at(levels, m, side_nofb)
        if nofb is None:
            continue
        row: dict[str, object] = {"move_pct": m, "side": "long" if m < 0 else "short", "no_feedback_usd": nofb,
                                  "feedback_usd": _at(levels, m, side_fb)}
        fill = levels.long_feedback_fill_usd if m < 0 else levels.short_feedback_fill_usd
        row["feedback_fill_usd"] = _at(levels, m, fill)
        row["feedback_extreme_mark_usd"] = _at(levels, m, levels.feedback_extreme_mark_usd)
        if bands is not None:
            b = bands.long_usd if m < 0 else bands.short_usd
            bf = bands.long_feedback_usd if m < 0 else bands.short_feedback_usd
            row["no_feedback_band_usd"] = [_at(levels, m, b[i]) for i in range(3)]
            row["feedback_band_usd"] = [_at(levels, m, bf[i]) for i in range(3)]
        key.append(row)
    out: dict[str, object] = {
        "scenario": sc.name, "config_hash": prep.config_hash, "seed": sc.seed, "venue": prep.venue.name,
        "instrument": sc.market.instrument, "start_price_usd": levels.start_price, "positions": len(book),
        "book_source": prep.book_source, "price_driver": prep.path.label,
        "map": {
            "levels": int(levels.move_pct.size), "range_pct": opts.range_pct, "step_pct": opts.step_pct,
            "feedback_levels": int(levels.feedback.sum()), "feedback_step_pct": opts.feedback_step_pct,
            "feedback_path": f"linear move over {opts.duration_s:g} s, hold {opts.hold_s:g} s, dt "
                             f"{sc.engine.dt_s:g} s, stress mode",
            "long_total_usd": float(value[(book.side > 0) & finite].sum()),
            "short_total_usd": float(value[(book.side < 0) & finite].sum()),
            "never_liquidatable_positions": int((~finite).sum()),
            "below_maintenance_at_start_positions": at_start,
            "feedback_extra_max_usd": float(np.nanmax(extra)) if levels.feedback.any() else None,
            "feedback_extra_max_at_move_pct": float(levels.move_pct[int(np.nanargmax(extra))])
            if levels.feedback.any() else None,
            "key_levels": key,
        },
        "ensemble": None if bands is None else {
            "members": bands.k, "quantiles_pct": list(QUANTILES), "spread": asdict(opts.spread),
            "feedback_step_pct": opts.ensemble_feedback_step_pct, "feedback_levels": int(bands.feedback.sum()),
        },
        "heatmap": None if hm is None else hm.totals,
        "timing_s": {**{k: round(v, 3) for k, v in timing.items()}, "feedback_runs_cpu_s": round(levels.run_s, 3),
                     "ensemble_cpu_s": round(bands.run_s, 3) if bands else 0.0,
                     "workers": opts.workers},
        "notes": [*prep.notes, *notes],
    }
    return out


# --------------------------------------------------------------------------- outputs
def _levels_table(result: HeatmapResult) -> pa.Table:
    lv, b = result.levels, result.bands
    cols: dict[str, object] = {
        "move_pct": lv.move_pct, "price_usd": lv.price, "long_usd": lv.long_usd, "short_usd": lv.short_usd,
        "feedback_run": lv.feedback, "long_feedback_usd": lv.long_feedback_usd,
        "short_feedback_usd": lv.short_feedback_usd, "long_feedback_fill_usd": lv.long_feedback_fill_usd,
        "short_feedback_fill_usd": lv.short_feedback_fill_usd,
        "feedback_extreme_mark_usd": lv.feedback_extreme_mark_usd, "feedback_bad_debt_usd": lv.feedback_bad_debt_usd,
        "feedback_adl_usd": lv.feedback_adl_usd,
    }
    nan = np.full(lv.move_pct.size, np.nan)
    for name in ("long", "short", "long_feedback", "short_feedback"):
        arr = getattr(b, f"{name}_usd") if b is not None else None
        for i, qv in enumerate(QUANTILES):
            cols[f"{name}_p{int(qv):02d}_usd"] = arr[i] if arr is not None else nan
    return pa.table(cols)


def _heatmap_table(hm: LiquidationHeatmap) -> pa.Table:
    n_t, n_p = hm.standing_long_usd.shape
    ti = np.repeat(np.arange(n_t), n_p)
    pi = np.tile(np.arange(n_p), n_t)
    lo, hi = hm.price_lo[pi], hm.price_hi[pi]
    mid = np.where(np.isfinite(hi) & (lo > 0), 0.5 * (lo + hi), np.nan)
    return pa.table({
        "t0_s": hm.t0_s[ti], "t1_s": hm.t1_s[ti],
        "time_utc": pa.array(hm.time_utc_ms[ti], pa.timestamp("ms", tz="UTC")),
        "price_lo_usd": lo, "price_hi_usd": hi, "price_mid_usd": mid,
        "standing_long_usd": hm.standing_long_usd.ravel(), "standing_short_usd": hm.standing_short_usd.ravel(),
        "touched_long_usd": hm.touched_long_usd.ravel(), "touched_short_usd": hm.touched_short_usd.ravel(),
        "liquidated_usd": hm.liquidated_usd.ravel(),
        "liquidated_feedback_usd": hm.liquidated_feedback_usd.ravel(),
    })


def _figures(result: HeatmapResult):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    lv, b = result.levels, result.bands
    figs = []
    m = go.Figure()
    colors = {"long": "#d62728", "short": "#1f77b4"}
    for side in ("long", "short"):
        col = colors[side]
        part = lv.price <= lv.start_price if side == "long" else lv.price >= lv.start_price
        x = lv.price[part]
        if b is not None:
            band = getattr(b, f"{side}_usd")[:, part]
            m.add_trace(go.Scatter(x=x, y=band[2], mode="lines", line=dict(width=0), showlegend=False,
                                   hoverinfo="skip"))
            m.add_trace(go.Scatter(x=x, y=band[0], mode="lines", line=dict(width=0), fill="tonexty",
                                   fillcolor=_rgba(col, 0.15), name=f"{side}s no feedback 5-95 %"))
        m.add_trace(go.Scatter(x=x, y=getattr(lv, f"{side}_usd")[part], mode="lines", line=dict(color=col),
                               name=f"{side}s, no feedback"))
        fbm = part & lv.feedback
        if b is not None and b.feedback[part].any():
            bm = part & b.feedback
            bandf = getattr(b, f"{side}_feedback_usd")[:, bm]
            m.add_trace(go.Scatter(x=lv.price[bm], y=bandf[2], mode="lines", line=dict(width=0),
                                   showlegend=False, hoverinfo="skip"))
            m.add_trace(go.Scatter(x=lv.price[bm], y=bandf[0], mode="lines", line=dict(width=0), fill="tonexty",
                                   fillcolor=_rgba(col, 0.30), name=f"{side}s with feedback 5-95 %"))
        if fbm.any():
            m.add_trace(go.Scatter(x=lv.price[fbm], y=getattr(lv, f"{side}_feedback_usd")[fbm], mode="lines+markers",
                                   line=dict(color=col, dash="dash"), name=f"{side}s, with cascade feedback"))
    m.add_vline(x=lv.start_price, line=dict(color="grey", dash="dot"))
    m.update_layout(title="Liquidation map: cumulative notional liquidated if the price moves to each level "
                          "(USD at liquidation price)", xaxis_title="price level (USD)",
                    yaxis_title="cumulative notional (USD)")
    figs.append(m)

    if lv.feedback.any():
        fb = lv.feedback
        down = lv.move_pct[fb] < 0
        nofb = np.where(down, lv.long_usd[fb], lv.short_usd[fb])
        withfb = np.where(down, lv.long_feedback_usd[fb], lv.short_feedback_usd[fb])
        d = go.Figure()
        d.add_trace(go.Bar(x=lv.move_pct[fb], y=withfb - nofb, name="extra from the cascade",
                           marker_color=np.where(down, colors["long"], colors["short"]).tolist()))
        d.add_trace(go.Scatter(x=lv.move_pct[fb], y=lv.feedback_extreme_mark_usd[fb] / lv.start_price * 100 - 100,
                               mode="lines+markers", name="extreme mark move with feedback (%)", yaxis="y2"))
        d.update_layout(title="What the feedback adds: feedback minus no feedback, per level",
                        xaxis_title="exogenous move to the level (%)", yaxis_title="USD",
                        yaxis2=dict(title="move (%)", overlaying="y", side="right"))
        figs.append(d)

    hm = result.heatmap
    if hm is not None:
        x = [datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M") for ms in hm.time_utc_ms]
        y = 0.5 * (hm.price_lo[1:-1] + hm.price_hi[1:-1])
        standing = (hm.standing_long_usd + hm.standing_short_usd)[:, 1:-1].T
        h = go.Figure()
        # float32 colour grids: 7 significant digits are plenty for a colour scale and halve the page
        # (heatmap.parquet keeps float64)
        h.add_trace(go.Heatmap(x=x, y=y, z=np.where(standing > 0, standing, np.nan).astype(np.float32), colorscale="Inferno",
                               colorbar=dict(title="USD"), name="standing levels"))
        _price_lines(h, x, hm, go)
        h.update_layout(title="Liquidation heatmap: notional whose liquidation level sits at each price "
                              "(positions opened along the history, no feedback)",
                        xaxis_title="time (UTC)", yaxis_title="price (USD)")
        figs.append(h)
        g = make_subplots(rows=1, cols=2, shared_yaxes=True,
                          subplot_titles=("Liquidations of the book, no feedback (USD at LP)",
                                          "Liquidations of the book, engine with feedback (fills)"))
        zmax = float(max(hm.liquidated_usd.max(initial=0.0), hm.liquidated_feedback_usd.max(initial=0.0))) or 1.0
        for i, z in enumerate((hm.liquidated_usd, hm.liquidated_feedback_usd)):
            zz = z[:, 1:-1].T
            g.add_trace(go.Heatmap(x=x, y=y, z=np.where(zz > 0, zz, np.nan).astype(np.float32), colorscale="Inferno",
                                   zmin=0, zmax=zmax,
                                   showscale=i == 1, colorbar=dict(title="USD")), row=1, col=i + 1)
            g.add_trace(go.Scatter(x=x, y=hm.close, mode="lines", line=dict(color="#1f77b4"), name="close",
                                   showlegend=i == 0), row=1, col=i + 1)
        g.update_layout(title="Liquidations by time and price", yaxis_title="price (USD)")
        figs.append(g)
    return figs


def _price_lines(fig, x, hm: LiquidationHeatmap, go) -> None:
    fig.add_trace(go.Scatter(x=x, y=hm.close, mode="lines", line=dict(color="#00bcd4"), name="close"))
    fig.add_trace(go.Scatter(x=x, y=hm.low, mode="lines", line=dict(color="#00bcd4", width=0.5, dash="dot"),
                             name="low"))
    fig.add_trace(go.Scatter(x=x, y=hm.high, mode="lines", line=dict(color="#00bcd4", width=0.5, dash="dot"),
                             name="high"))


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _write_html(result: HeatmapResult, path: Path, asset_root: Path | None = None) -> None:
    import html

    import plotly.io as pio

    from delever.plotly_asset import plotly_script_src

    s = result.summary
    src = plotly_script_src(path, asset_root)
    parts = []
    for i, fig in enumerate(_figures(result)):
        fig.update_layout(template="plotly_white", height=480)
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=src if i == 0 else False))
    notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in s.get("notes", []))
    doc_lines = (__doc__ or "").strip()
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>delever heatmap {html.escape(str(s['scenario']))}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}pre{{background:#f6f6f6;padding:1em;white-space:pre-wrap}}</style></head><body>
<h1>delever liquidation map and heatmap: {html.escape(str(s['scenario']))}</h1>
<p>config hash <code>{html.escape(str(s['config_hash']))}</code>, seed {s['seed']}, venue <b>{html.escape(str(s['venue']))}</b>,
{s['positions']:,} positions ({html.escape(str(s['book_source']))}), start price {s['start_price_usd']:,.2f} USD.
Values are absolute USD notional at each position's liquidation price; feedback runs: {html.escape(str(s['map']['feedback_path']))}.</p>
{''.join(parts)}
<h2>Notes</h2><ul>{notes}</ul>
<h2>Definitions and assumptions</h2><pre>{html.escape(doc_lines)}</pre>
<h2>Summary</h2><pre>{html.escape(json.dumps(s, indent=2, default=str))}</pre>
</body></html>"""
    path.write_text(doc, encoding="utf-8")


def _write_png(result: HeatmapResult, path: Path) -> str | None:
    """Write the map (with bands) and the heatmap as one PNG with matplotlib (no browser needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lv, b, hm = result.levels, result.bands, result.heatmap
    ncols = 2 if hm is not None else 1
    fig, axes = plt.subplots(1, ncols, figsize=(8 * ncols, 6), squeeze=False)
    ax = axes[0, 0]
    for side, color in (("long", "#d62728"), ("short", "#1f77b4")):
        part = lv.price <= lv.start_price if side == "long" else lv.price >= lv.start_price
        x = lv.price[part]
        if b is not None:
            band = getattr(b, f"{side}_usd")[:, part]
            ax.fill_between(x, band[0], band[2], color=color, alpha=0.15, label=f"{side}s no feedback 5-95 %")
        ax.plot(x, getattr(lv, f"{side}_usd")[part], color=color, label=f"{side}s, no feedback")
        fbm = part & lv.feedback
        if fbm.any():
            ax.plot(lv.price[fbm], getattr(lv, f"{side}_feedback_usd")[fbm], color=color, linestyle="--",
                    marker="o", markersize=3, label=f"{side}s, with cascade feedback")
    ax.axvline(lv.start_price, color="grey", linewidth=0.8)
    ax.set_xlabel("price level (USD)")
    ax.set_ylabel("cumulative notional liquidated (USD)")
    ax.set_title("Liquidation map")
    ax.legend(fontsize=8)
    if hm is not None:
        ax = axes[0, 1]
        grid = hm.standing_long_usd + hm.standing_short_usd
        edges_t = np.append(hm.t0_s, hm.t1_s[-1]) / 60.0
        lo = np.where(np.isfinite(hm.price_lo), hm.price_lo, np.nan)
        hi = np.where(np.isfinite(hm.price_hi), hm.price_hi, np.nan)
        inner = np.isfinite(lo) & np.isfinite(hi) & (lo > 0)
        edges_p = np.append(lo[inner], hi[inner][-1])
        mesh = ax.pcolormesh(edges_t, edges_p, grid[:, inner].T, cmap="magma", shading="flat")
        ax.plot((hm.t0_s + hm.t1_s) / 120.0, hm.close, color="#00bcd4", linewidth=1.0, label="close")
        fig.colorbar(mesh, ax=ax, label="liquidation levels standing (USD)")
        ax.set_xlabel("minutes from the start of the history")
        ax.set_ylabel("price (USD)")
        ax.set_title("Liquidation heatmap (no feedback)")
        ax.legend(fontsize=8)
    fig.suptitle(f"delever heatmap: {result.summary['scenario']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write_heatmap(result: HeatmapResult, out_dir: Path, html: bool = True) -> Path:
    """Write the heatmap folder atomically (temporary folder in ``out_dir``, renamed when complete).

    Files: ``levels.parquet`` (one row per level: no-feedback and feedback notionals, fills, bands),
    ``heatmap.parquet`` (one row per time x price bucket, when a history was given),
    ``heatmap.html`` (plotly.js from ``<out_dir>/plotly-<version>.min.js``), ``heatmap.png`` (matplotlib), ``summary.json``.

    Returns:
        ``<out_dir>/<scenario>-heatmap-<config_hash>-<UTC time>``.
    """
    prep = result.prepared
    folder_name = run_folder_name(f"{prep.scenario.name}-heatmap-{prep.config_hash}")
    with atomic_run_folder(out_dir, folder_name) as tmp:
        pq.write_table(_levels_table(result), tmp / "levels.parquet")
        if result.heatmap is not None:
            pq.write_table(_heatmap_table(result.heatmap), tmp / "heatmap.parquet")
        if html:
            _write_html(result, tmp / "heatmap.html", out_dir)
            note = _write_png(result, tmp / "heatmap.png")
            result.summary["png"] = None if note else "heatmap.png"
            if note:
                result.summary["png_note"] = note
        (tmp / "summary.json").write_text(json.dumps(result.summary, indent=2, default=str))
    return out_dir / folder_name


# --------------------------------------------------------------------------- CLI
def heatmap_command(
    scenario: ScenarioOpt = None,
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Folder that receives the heatmap folder")] = Path("runs"),
    as_json: JsonOpt = False,
    ensemble: EnsembleOpt = 20,
    klines: Annotated[Path | None, typer.Option("--klines", help="Kline file for the heatmap's price history (replaces the scenario's price driver)")] = None,
    range_pct: Annotated[float, typer.Option("--range-pct", help="Levels span +- this % around the start price")] = 25.0,
    step_pct: Annotated[float, typer.Option("--step-pct", help="Level spacing of the map, %")] = 0.5,
    feedback_step_pct: Annotated[float, typer.Option("--feedback-step-pct", help="Level spacing of the engine runs (multiple of --step-pct; 0: none)")] = 2.5,
    ensemble_feedback_step_pct: Annotated[float, typer.Option("--ensemble-feedback-step-pct", help="Level spacing of the members' engine runs (0: no feedback bands)")] = 5.0,
    duration_s: Annotated[float, typer.Option("--duration-s", help="Seconds of the linear move to each level")] = 60.0,
    hold_s: Annotated[float, typer.Option("--hold-s", help="Seconds the level is held")] = 120.0,
    price_step_pct: Annotated[float, typer.Option("--price-step-pct", help="Heatmap price bucket, % of the start price")] = 0.25,
    time_bucket_s: Annotated[float | None, typer.Option("--time-bucket-s", help="Heatmap time bucket, s (default: the bar)")] = None,
    open_interest_sigma: OpenInterestSigmaOpt = 0.2,
    long_short_sigma: LongShortSigmaOpt = 0.15,
    leverage_concentration: LeverageConcentrationOpt = 50.0,
    entry_sigma_sigma: EntrySigmaSigmaOpt = 0.3,
    workers: Annotated[int | None, typer.Option("--workers", help="Processes for the engine runs [default: CPU count, at most 8]")] = None,
    no_heatmap: Annotated[bool, typer.Option("--no-heatmap", help="Skip the price x time heatmap")] = False,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip heatmap.html and heatmap.png")] = False,
    no_write: NoWriteOpt = False,
) -> None:
    """Liquidation map (with and without cascade feedback, ensemble bands) and liquidation heatmap."""
    from rich.console import Console

    from delever.scenario import load_scenario, resolve_data_dir

    opts = HeatmapOptions(
        range_pct=range_pct, step_pct=step_pct, feedback_step_pct=feedback_step_pct, duration_s=duration_s,
        hold_s=hold_s, ensemble=ensemble, ensemble_feedback_step_pct=ensemble_feedback_step_pct,
        spread=EnsembleSpread(open_interest_sigma, long_short_sigma, leverage_concentration, entry_sigma_sigma),
        heatmap=not no_heatmap, price_step_pct=price_step_pct, time_bucket_s=time_bucket_s,
        workers=workers if workers is not None else min(os.cpu_count() or 1, 8))
    try:
        sc = load_scenario(scenario, set_ or [])
        result = build_heatmap(sc, resolve_data_dir(data_dir), opts, klines)
        folder = None if no_write else write_heatmap(result, out, html=not no_report)
    except DeleverInputError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    summary = dict(result.summary)
    summary["folder"] = str(folder) if folder else None
    if as_json:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
        return
    _print_summary(summary, Console(soft_wrap=True, highlight=False))


def _usd(v: object) -> str:
    return "n/a" if v is None else f"${v:,.0f}"


def _musd(v: object) -> str:
    return "n/a" if v is None else f"{v / 1e6:,.0f}"


def _print_summary(s: dict[str, Any], console) -> None:
    from rich.markup import escape
    from rich.table import Table

    mp = s["map"]
    console.print(f"[bold]delever heatmap[/]: {s['scenario']} (config {s['config_hash']}, seed {s['seed']}), {s['venue']}, "
                  f"{s['positions']:,} positions, start {s['start_price_usd']:,.2f} USD")
    table = Table(title="Liquidation map (million USD at liquidation price)")
    for col in ("move", "side", "no feedback", "5-95 %", "feedback", "5-95 %", "fills"):
        table.add_column(col, justify="right")
    for r in mp["key_levels"]:
        bands = [r.get("no_feedback_band_usd"), r.get("feedback_band_usd")]
        b_nofb, b_fb = (f"{_musd(b[0])}-{_musd(b[2])}" if b and b[0] is not None else "" for b in bands)
        table.add_row(f"{r['move_pct']:+g} %", r["side"], _musd(r["no_feedback_usd"]), b_nofb,
                      _musd(r["feedback_usd"]), b_fb, _musd(r["feedback_fill_usd"]))
    console.print(table)
    console.print(f"all longs liquidated below every LP: {_usd(mp['long_total_usd'])}; all shorts: "
                  f"{_usd(mp['short_total_usd'])}; largest extra from feedback {_usd(mp['feedback_extra_max_usd'])} "
                  f"at {mp['feedback_extra_max_at_move_pct']} %")
    if s.get("heatmap"):
        h = s["heatmap"]
        console.print(f"heatmap: {h['time_buckets']} x {h['price_buckets']} buckets; liquidated without feedback "
                      f"{_usd(h['liquidated_usd'])}, with feedback {_usd(h['liquidated_feedback_usd'])}")
    for n in s.get("notes", []):
        console.print(f"[dim]- {escape(str(n))}[/]")
    if s.get("png_note"):
        console.print(f"[dim]- {escape(s['png_note'])}[/]")
    console.print(f"folder: {s.get('folder')} ({s['timing_s']['total_s']} s)")
