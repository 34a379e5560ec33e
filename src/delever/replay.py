"""Historical replay: a venue and a position book driven along a real price path, liquidations per minute.

:func:`replay` runs the scenario's venue rules and position book along an observed price history in
**replay mode** (``HistoricalDriver(mode="replay")``): the history is taken as the observed mark
price, which already contains the impact of whatever was liquidated that day, so the engine adds no
impact (forced orders still walk the depth curve for their fill prices, but never move the price).
What comes out is an *estimate* of the liquidations that history implies for the stated book, per
minute, long and short, not a measurement: venues publish no position books, so the book is
synthesized from the scenario's stated assumptions (open interest, long/short account ratio,
leverage mix, entry prices, account sizes; ``delever.synthesize``) or loaded from a file.

**Price history.** The scenario's historical driver (``price_driver.path``, ``start``, ``end``,
``intrabar``), or ``klines`` given to :func:`replay` (then with its own price level). Two file
kinds are read (:func:`read_bars`):

* Binance Vision klines (``delever.data.klines``), every bar present;
* 1-minute bars built from trades (``shared/data/oct10-2025-coins`` group B: spot files with
  ``volume, quote_volume, taker_buy_volume, taker_sell_volume`` in coin units, COIN-M perp files with
  ``volume_contracts, taker_buy_contracts, taker_sell_contracts``). A minute without trades has no
  price; it is **dropped, not filled**: the path has no point in it (the engine's next step simply
  comes later), and the per-minute table shows it with empty prices and no liquidations. COIN-M
  contract volumes are not converted to coin units (10 USD per contract is stated by Binance but not
  verified per symbol), so such a path carries no taker volume.

The path is built as in ``delever.paths.historical_path``: with ``intrabar = "ohlc"`` (the default)
each 1-minute bar is four 15-second sub-steps (the extreme nearer the open, the other extreme, the
close, the close), so the engine's time grid is 15 s and the order of high and low inside a minute
is a convention, not an observation.

**Per-minute table.** Minute ``m`` covers the engine steps whose time lies in ``(m I, (m + 1) I]``
after the first bar's open (``I`` the bar interval; step 0, the first open, belongs to minute 0), so
a minute holds exactly the sub-steps of its own bar. Per minute and side: liquidated notional (fills
at their price, backstop takeovers at the takeover price: the engine's ``liquidated_*_usd``), base
units, and liquidation events (distinct account per liquidation round: a Binance IOC fill and the
insurance-fund takeover of its remainder are one event); the part sent to the market as orders
(``kind`` market/partial, i.e. not taken over by the backstop) is reported separately, because only
that part can appear in traded volume; ADL notional and fills; the backstop's equity at the end of
the minute; and the observed bar (OHLC, taker-sell volume).

**Ensemble bands.** With ``ensemble = K > 0``, ``K`` perturbed books are drawn exactly as the
liquidation heatmap draws them (``delever.heatmap.perturbed_scenario``: open interest, long/short
ratio, leverage-mix weights, entry dispersion and book seed around the stated values; member ``k``
uses ``np.random.SeedSequence(seed).spawn(K)[k]``), each replayed along the same history; the 5/50/95 %
quantiles per minute (``np.percentile``, linear) are the bands. The base row values come from the
scenario's own (unperturbed) book.

Outputs (:func:`write_replay`): ``minutes.parquet`` (one row per minute), ``summary.json``,
``replay.html`` (plotly.js from ``<out_dir>/plotly-<version>.min.js``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import typer

from delever.cli_options import (
    DataDirOpt,
    EnsembleOpt,
    EntrySigmaSigmaOpt,
    JsonOpt,
    LeverageConcentrationOpt,
    LongShortSigmaOpt,
    NoWriteOpt,
    OpenInterestSigmaOpt,
    SetOpt,
)
from delever.data.klines import Klines, format_utc_ms, parse_utc_ms
from delever.data.trade_bars import TRADE_BAR_COINM_COLUMNS, TRADE_BAR_SPOT_COLUMNS, read_bars
from delever.errors import DeleverInputError
from delever.heatmap import QUANTILES, EnsembleSpread, _run_jobs, perturbed_scenario
from delever.paths import PricePath, historical_path
from delever.runfolder import atomic_run_folder, run_folder_name
from delever.runner import Prepared, make_engine, path_metrics, prepare
from delever.scenario import HistoricalDriver, Scenario, config_hash, resolve_path, with_klines_driver

__all__ = [
    "TRADE_BAR_SPOT_COLUMNS",
    "TRADE_BAR_COINM_COLUMNS",
    "ReplayResult",
    "read_bars",
    "replay_inputs",
    "prepare_replay",
    "run_replay_once",
    "per_minute",
    "replay",
    "write_replay",
    "replay_command",
]

_REL = 1e-9


def replay_inputs(scenario: Scenario, data_dir: Path,
                  klines: Path | str | None = None) -> tuple[Scenario, Klines, list[str]]:
    """The scenario in replay mode and the bars it replays.

    Args:
        scenario: Validated scenario; its price driver must be historical unless ``klines`` is given.
        data_dir: Data directory (relative price paths resolve against it).
        klines: Optional price file (absolute, relative to the working directory, or to ``data_dir``)
            replacing the scenario's price driver (``intrabar = "ohlc"``, its own price level).

    Returns:
        ``(scenario, bars, notes)``: the scenario with ``price_driver.mode = "replay"``, the bars of
        its window, and remarks.

    Raises:
        DeleverInputError: no price history, file missing or invalid, window outside the file.
    """
    scenario.require_one_instrument("replay")
    notes: list[str] = []
    if klines is not None:
        scenario = with_klines_driver(scenario, klines, data_dir, "replay")
        notes.append(f"price history from --klines {klines} (replay, intrabar ohlc, its own price level)")
    drv = scenario.price_driver
    if not isinstance(drv, HistoricalDriver):
        raise DeleverInputError("price_driver: replay needs a real price path (price_driver.kind = 'historical', "
                                "or --klines)")
    if drv.mode != "replay":
        notes.append("price driver switched from stress to replay mode (observed mark, no impact added)")
        scenario = scenario.model_copy(update={"price_driver": drv.model_copy(update={"mode": "replay"})})
        drv = scenario.price_driver
    bars, bar_notes = read_bars(resolve_path(drv.path, data_dir, "price_driver.path"))
    notes.extend(bar_notes)
    if drv.start is not None or drv.end is not None:
        s = parse_utc_ms(drv.start, "price_driver.start") if drv.start is not None else None
        e = parse_utc_ms(drv.end, "price_driver.end") if drv.end is not None else None
        try:
            bars = bars.select(s, e)
        except DeleverInputError as exc:
            raise DeleverInputError(f"price_driver.start/end: {exc}") from None
    return scenario, bars, notes


def prepare_replay(scenario: Scenario, data_dir: Path, bars: Klines) -> Prepared:
    """``runner.prepare`` for a replay on ``bars`` (which may be trade-built bars ``prepare`` cannot read).

    The venue, depth and book are prepared by ``runner.prepare`` from a copy of the scenario whose
    price driver is a zero move at the first observed price (so the book is built at exactly the
    start price the path begins with; entry prices from a history use the bars' start as ``before``
    unless the scenario sets it); the path is then the replay path of ``bars``. The returned
    ``Prepared`` carries the replay scenario and its own config hash.
    """
    drv = scenario.price_driver
    if not isinstance(drv, HistoricalDriver):  # pragma: no cover - replay_inputs guarantees it
        raise DeleverInputError("price_driver: replay needs price_driver.kind = 'historical'")
    path = historical_path(bars, drv.intrabar, "replay", scenario.market.start_price)
    dump = scenario.model_dump(mode="json")
    dump["price_driver"] = {"kind": "shock", "move_pct": 0.0, "duration_s": 0.0, "hold_s": 0.0}
    dump["market"]["start_price"] = float(path.price[0])
    entry = dump["book"]["synthesize"]["entry"]
    if scenario.book.source == "synthesize" and entry["source"] == "history" and entry["before"] is None:
        entry["before"] = format_utc_ms(int(bars.open_time_ms[0]))
    proxy = Scenario.model_validate(dump)
    prep = prepare(proxy, data_dir)
    return dataclasses.replace(prep, scenario=scenario, path=path, config_hash=config_hash(scenario, prep.venue))


# --------------------------------------------------------------------------- per-minute aggregation
def _minute_of_step(t_s: np.ndarray, interval_s: float) -> np.ndarray:
    """Minute index of each step: steps in ``(m I, (m + 1) I]`` -> ``m``; step 0 (t = 0) -> 0."""
    return np.maximum(np.ceil(t_s / interval_s - _REL).astype(np.int64) - 1, 0)


def per_minute(eng, path: PricePath, n_minutes: int, interval_s: float) -> dict[str, np.ndarray]:
    """Aggregate one finished engine run to the minutes of the history.

    Args:
        eng: Finished ``CascadeEngine``.
        path: Its price path (``t_s`` from the first bar's open).
        n_minutes: Minutes from the first bar's open to the last bar's end.
        interval_s: Bar interval, seconds.

    Returns:
        float64 / int64 arrays ``(n_minutes,)``: ``long_liq_usd``, ``short_liq_usd``, ``long_liq_qty``,
        ``short_liq_qty``, ``long_liq_count``, ``short_liq_count`` (events), ``long_market_qty``,
        ``short_market_qty`` (the part sent to the market, not taken over), ``adl_usd``, ``adl_count``,
        ``backstop_equity_usd`` (end of minute; carried over minutes without a step), ``bad_debt_usd``
        (cumulative, end of minute), ``steps`` (engine steps in the minute).
    """
    n = int(n_minutes)
    step_min = _minute_of_step(path.t_s, interval_s)
    lr = eng.liq_rows
    out: dict[str, np.ndarray] = {}
    step = lr.column("step").astype(np.int64)
    side = lr.column("side")
    qty = lr.column("qty")
    notional = lr.column("notional_usd")
    kinds = np.asarray(lr.column("kind"), dtype=object)
    minute = step_min[step] if step.size else np.zeros(0, dtype=np.int64)
    market = np.isin(kinds, ["market", "partial"]) if kinds.size else np.zeros(0, dtype=bool)
    for name, sgn in (("long", 1), ("short", -1)):
        m = side == sgn
        out[f"{name}_liq_usd"] = np.bincount(minute[m], weights=notional[m], minlength=n)[:n]
        out[f"{name}_liq_qty"] = np.bincount(minute[m], weights=qty[m], minlength=n)[:n]
        mk = m & market
        out[f"{name}_market_qty"] = np.bincount(minute[mk], weights=qty[mk], minlength=n)[:n]
        if m.any():
            key = np.stack([step[m], lr.column("round")[m].astype(np.int64), lr.column("account")[m]], axis=1)
            _, first = np.unique(key, axis=0, return_index=True)
            out[f"{name}_liq_count"] = np.bincount(minute[m][first], minlength=n)[:n].astype(np.int64)
        else:
            out[f"{name}_liq_count"] = np.zeros(n, dtype=np.int64)
    ar = eng.adl_rows
    a_step = ar.column("step").astype(np.int64)
    a_min = step_min[a_step] if a_step.size else np.zeros(0, dtype=np.int64)
    out["adl_usd"] = np.bincount(a_min, weights=ar.column("notional_usd"), minlength=n)[:n]
    out["adl_count"] = np.bincount(a_min, minlength=n)[:n].astype(np.int64)
    sr = eng.step_rows
    equity = sr.column("insurance_fund_equity_usd")
    bad = sr.column("bad_debt_usd")
    last = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last, step_min, np.arange(step_min.size))
    carried = np.maximum.accumulate(last)  # minutes without a step carry the previous minute's state
    out["backstop_equity_usd"] = np.where(carried >= 0, equity[np.maximum(carried, 0)], np.nan)
    out["bad_debt_usd"] = np.where(carried >= 0, bad[np.maximum(carried, 0)], np.nan)
    out["steps"] = np.bincount(step_min, minlength=n)[:n].astype(np.int64)
    return out


def _event_times(eng, path: PricePath) -> dict[str, float | None]:
    """Seconds after the first bar's open of the first liquidation and of the first ADL (None if none)."""
    lt = eng.liq_rows.column("t_s")
    at = eng.adl_rows.column("t_s")
    return {"first_liquidation_s": float(lt.min()) if lt.size else None,
            "first_adl_s": float(at.min()) if at.size else None}


def run_replay_once(prep: Prepared, bars: Klines) -> tuple[dict[str, np.ndarray], dict[str, object], Any]:
    """Run the engine for ``prep`` along its replay path and aggregate it per minute.

    Returns:
        ``(minutes, metrics, engine)``: the :func:`per_minute` arrays, ``runner.path_metrics`` plus the
        first liquidation / ADL times, and the finished engine (for its tables).
    """
    eng = make_engine(prep)
    eng.run()
    interval_s = bars.interval_ms / 1000.0
    n = int((bars.end_time_ms - int(bars.open_time_ms[0])) // bars.interval_ms)
    minutes = per_minute(eng, prep.path, n, interval_s)
    metrics = path_metrics(eng, prep.scenario.insurance_fund.initial_usd)
    metrics.update(_event_times(eng, prep.path))
    return minutes, metrics, eng


# --------------------------------------------------------------------------- replay
BAND_COLUMNS = ("long_liq_usd", "short_liq_usd", "adl_usd", "long_liq_qty", "long_market_qty")
"""Per-minute columns that get 5/50/95 % ensemble bands."""

TOTAL_KEYS = ("liquidated_long_usd", "liquidated_short_usd", "liquidation_count", "adl_notional_usd", "adl_count",
              "bad_debt_usd", "insurance_fund_end_usd", "first_liquidation_s", "first_adl_s")


@dataclass
class ReplayResult:
    """A finished replay; ``summary`` is the ``--json`` object.

    Attributes:
        prepared: The base run's inputs (replay scenario, venue, book, path).
        bars: The observed bars replayed.
        minutes: Per-minute table (see :func:`write_replay`).
        metrics: The base run's ``path_metrics`` plus first liquidation / ADL times (s after the first open).
        tables: The base run's engine tables (``steps``, ``liquidations``, ``adl``).
        member_minutes: Per member, the per-minute arrays of :data:`BAND_COLUMNS`.
        member_metrics: Per member, the drawn parameters and the totals of :data:`TOTAL_KEYS`.
        summary: JSON-serializable summary.
        wall_s: Seconds.
    """

    prepared: Prepared
    bars: Klines
    minutes: pa.Table
    metrics: dict[str, object]
    tables: dict[str, pa.Table]
    member_minutes: list[dict[str, np.ndarray]] = field(default_factory=list)
    member_metrics: list[dict[str, object]] = field(default_factory=list)
    summary: dict[str, object] = field(default_factory=dict)
    wall_s: float = 0.0


def _member_job(args: tuple) -> dict[str, object]:
    scenario, data_dir, bars, seed_seq, spread = args
    member, params = perturbed_scenario(scenario, seed_seq, spread)
    prep = prepare_replay(member, data_dir, bars)
    minutes, metrics, _ = run_replay_once(prep, bars)
    return {"params": params, "minutes": {k: minutes[k] for k in BAND_COLUMNS},
            "totals": {k: metrics[k] for k in TOTAL_KEYS}}


def _float(v: object) -> float | None:
    if v is None:
        return None
    f = float(v)  # type: ignore[arg-type]
    return f if math.isfinite(f) else None


def _utc(ms: float | int | None) -> str | None:
    return None if ms is None else format_utc_ms(int(round(ms))).replace(" ", "T") + "Z"


def replay(scenario: Scenario, data_dir: Path, ensemble: int = 20, spread: EnsembleSpread | None = None,
           seed: int | None = None, workers: int = 1, klines: Path | str | None = None) -> ReplayResult:
    """Replay the scenario's book and venue along its real price path; liquidations per minute with bands.

    Args:
        scenario: Validated scenario with a historical price driver (switched to replay mode), or any
            scenario when ``klines`` is given.
        data_dir: Data directory.
        ensemble: Perturbed books for the 5/50/95 % bands, 0..1000 (0: none; needs a synthesized book).
        spread: Spreads of the perturbation (``heatmap.EnsembleSpread`` defaults when None).
        seed: Root seed of the ensemble (default: the scenario seed).
        workers: Processes for the ensemble members (spawned; 1 = in this process).
        klines: Optional price file replacing the scenario's price driver (see :func:`replay_inputs`).

    Returns:
        :class:`ReplayResult`.

    Raises:
        DeleverInputError: bad option, no historical price path, missing or invalid file.
    """
    t0 = time.perf_counter()
    if not (isinstance(ensemble, int) and 0 <= ensemble <= 1000):
        raise DeleverInputError(f"--ensemble: expected a number of books in [0, 1000], got {ensemble!r}")
    if not (isinstance(workers, int) and 1 <= workers <= 256):
        raise DeleverInputError(f"--workers: expected 1..256 processes, got {workers!r}")
    spread = (spread or EnsembleSpread()).validate()
    sc, bars, notes = replay_inputs(scenario, data_dir, klines)
    prep = prepare_replay(sc, data_dir, bars)
    minutes, metrics, eng = run_replay_once(prep, bars)
    tables = {"steps": eng.step_rows.to_table(), "liquidations": eng.liq_rows.to_table(),
              "adl": eng.adl_rows.to_table()}
    members: list[dict[str, object]] = []
    if ensemble > 0:
        if sc.book.source != "synthesize":
            notes.append("ensemble skipped: the book is loaded from a file (nothing to perturb)")
        else:
            children = np.random.SeedSequence(sc.seed if seed is None else seed).spawn(ensemble)
            members = _run_jobs(_member_job, [(sc, data_dir, bars, c, spread) for c in children], workers)
            if sc.book.synthesize.entry.source != "lognormal":
                notes.append("ensemble: entry prices come from a price history, so entry.sigma is not perturbed")
    table = _minutes_table(bars, minutes, [m["minutes"] for m in members])
    result = ReplayResult(prep, bars, table, metrics, tables,
                          member_minutes=[m["minutes"] for m in members],
                          member_metrics=[{"params": m["params"], **m["totals"]} for m in members])
    result.wall_s = time.perf_counter() - t0
    result.summary = _summary(result, spread, notes)
    return result


def _observed_minutes(bars: Klines, n: int) -> dict[str, np.ndarray]:
    first = int(bars.open_time_ms[0])
    idx = ((bars.open_time_ms - first) // bars.interval_ms).astype(np.int64)
    out = {k: np.full(n, np.nan) for k in ("open", "high", "low", "close", "taker_sell_volume")}
    for k in ("open", "high", "low", "close"):
        out[k][idx] = getattr(bars, k)
    if np.any(bars.volume > 0):
        out["taker_sell_volume"][idx] = bars.taker_sell_volume
    has = np.zeros(n, dtype=bool)
    has[idx] = True
    out["has_bar"] = has
    out["time_utc_ms"] = first + np.arange(n, dtype=np.int64) * bars.interval_ms
    return out


def _bands(rows: list[np.ndarray], n: int) -> np.ndarray:
    if not rows:
        return np.full((len(QUANTILES), n), np.nan)
    return np.percentile(np.vstack(rows), QUANTILES, axis=0)


def _minutes_table(bars: Klines, minutes: dict[str, np.ndarray], members: list[dict[str, np.ndarray]]) -> pa.Table:
    n = minutes["long_liq_usd"].size
    obs = _observed_minutes(bars, n)
    cols: dict[str, object] = {
        "minute": np.arange(n, dtype=np.int64),
        "time_utc": pa.array(obs["time_utc_ms"], pa.timestamp("ms", tz="UTC")),
        "has_bar": obs["has_bar"],
        **{k: obs[k] for k in ("open", "high", "low", "close", "taker_sell_volume")},
        **minutes,
    }
    for name in BAND_COLUMNS:
        b = _bands([m[name] for m in members], n)
        base = name.removesuffix("_usd").removesuffix("_qty")
        unit = "usd" if name.endswith("_usd") else "qty"
        for i, q in enumerate(QUANTILES):
            cols[f"{base}_p{int(q):02d}_{unit}"] = b[i]
    return pa.table(cols)


def _band_of(values: list[float | None]) -> list[float | None] | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return [float(x) for x in np.percentile(np.asarray(vals, dtype=np.float64), QUANTILES)]


def _summary(result: ReplayResult, spread: EnsembleSpread, notes: list[str]) -> dict[str, object]:
    prep, bars, m = result.prepared, result.bars, result.metrics
    sc = prep.scenario
    tbl = result.minutes
    first_ms = int(bars.open_time_ms[0])
    long_usd = np.asarray(tbl.column("long_liq_usd"))
    short_usd = np.asarray(tbl.column("short_liq_usd"))
    t_ms = first_ms + np.arange(long_usd.size) * bars.interval_ms

    def peak(arr: np.ndarray) -> dict[str, object] | None:
        if arr.size == 0 or arr.max() <= 0:
            return None
        i = int(np.argmax(arr))
        return {"minute_utc": _utc(t_ms[i]), "usd": float(arr[i])}

    def at(s: object) -> str | None:
        return None if s is None else _utc(first_ms + float(s) * 1000.0)  # type: ignore[arg-type]

    totals = {k: (_float(m[k]) if k not in ("liquidation_count", "adl_count") else int(m[k])) for k in TOTAL_KEYS}
    totals["first_liquidation_utc"] = at(m["first_liquidation_s"])
    totals["first_adl_utc"] = at(m["first_adl_s"])
    ens = None
    if result.member_metrics:
        ens = {"members": len(result.member_metrics), "quantiles_pct": list(QUANTILES),
               "spread": dataclasses.asdict(spread),
               "totals_band": {k: _band_of([_float(mm[k]) for mm in result.member_metrics])
                               for k in TOTAL_KEYS}}
    return {
        "scenario": sc.name, "config_hash": prep.config_hash, "seed": sc.seed, "venue": prep.venue.name,
        "instrument": sc.market.instrument, "mode": "replay", "price_driver": prep.path.label,
        "window_utc": [_utc(first_ms), _utc(bars.end_time_ms)], "minutes": int(long_usd.size),
        "minutes_with_price": int(len(bars)), "steps": int(prep.path.t_s.size),
        "positions": len(prep.book), "book_source": prep.book_source, "book_assumptions": prep.book_assumptions,
        "start_price_usd": float(prep.path.price[0]),
        "totals": totals,
        "peak_long_minute": peak(long_usd), "peak_short_minute": peak(short_usd),
        "conservation": {k: _float(m[k]) for k in ("ledger_imbalance_usd", "ledger_reconciliation_usd",
                                                    "open_interest_mismatch_qty")},
        "ensemble": ens,
        "wall_s": round(result.wall_s, 3),
        "notes": [*prep.notes, *notes,
                  "replay mode: the history is the observed mark; forced orders walk the depth for their fill prices "
                  "but add no impact",
                  "the book is synthesized from stated assumptions (book_assumptions), not observed: the figures are "
                  "estimates for that book"
                  if prep.book_source == "synthesized" else f"book loaded from {prep.book_source}"],
    }


# --------------------------------------------------------------------------- outputs
def _figure(result: ReplayResult):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    t = result.minutes
    x = [datetime.fromtimestamp(v.timestamp(), tz=UTC).strftime("%Y-%m-%d %H:%M")
         for v in t.column("time_utc").to_pylist()]
    col = {k: np.asarray(t.column(k)) for k in t.column_names if k not in ("time_utc",)}
    has_taker = bool(np.isfinite(col["taker_sell_volume"]).any())
    rows = 3 if has_taker else 2
    titles = ["Observed price (close, low-high)", "Estimated liquidations per minute (USD), 5-95 % ensemble band"]
    if has_taker:
        titles.append("Observed taker-sell volume vs estimated forced sells to the market (base units)")
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, subplot_titles=titles, vertical_spacing=0.07)
    fig.add_trace(go.Scatter(x=x, y=col["high"], mode="lines", line=dict(width=0), showlegend=False,
                             hoverinfo="skip", connectgaps=False), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=col["low"], mode="lines", line=dict(width=0), fill="tonexty",
                             fillcolor="rgba(0,188,212,0.25)", name="low-high"), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=col["close"], mode="lines", line=dict(color="#00838f"), name="close"),
                  row=1, col=1)
    for side, color, rgba in (("long", "#d62728", "rgba(214,39,40,0.2)"), ("short", "#1f77b4", "rgba(31,119,180,0.2)")):
        fig.add_trace(go.Bar(x=x, y=col[f"{side}_liq_usd"], marker_color=color, name=f"{side}s liquidated"),
                      row=2, col=1)
        hi, lo = col[f"{side}_liq_p95_usd"], col[f"{side}_liq_p05_usd"]
        if np.isfinite(hi).any():
            fig.add_trace(go.Scatter(x=x, y=hi, mode="lines", line=dict(width=0), showlegend=False,
                                     hoverinfo="skip"), row=2, col=1)
            fig.add_trace(go.Scatter(x=x, y=lo, mode="lines", line=dict(width=0), fill="tonexty", fillcolor=rgba,
                                     name=f"{side}s 5-95 %"), row=2, col=1)
    if col["adl_usd"].any():
        fig.add_trace(go.Scatter(x=x, y=col["adl_usd"], mode="lines+markers", line=dict(color="#9467bd"),
                                 name="ADL notional"), row=2, col=1)
    if has_taker:
        fig.add_trace(go.Bar(x=x, y=col["taker_sell_volume"], marker_color="#7f7f7f", name="observed taker sells"),
                      row=3, col=1)
        fig.add_trace(go.Scatter(x=x, y=col["long_market_qty"], mode="lines", line=dict(color="#d62728"),
                                 name="estimated forced sells (market orders)"), row=3, col=1)
    fig.update_layout(barmode="overlay", template="plotly_white", height=300 * rows + 120,
                      title=f"Replay: {result.summary['scenario']} on {result.summary['venue']}")
    return fig


def _write_html(result: ReplayResult, path: Path, asset_root: Path | None = None) -> None:
    import html

    import plotly.io as pio

    from delever.plotly_asset import plotly_script_src

    s = result.summary
    part = pio.to_html(_figure(result), full_html=False, include_plotlyjs=plotly_script_src(path, asset_root))
    notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in s.get("notes", []))
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>delever replay {html.escape(str(s['scenario']))}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}pre{{background:#f6f6f6;padding:1em;white-space:pre-wrap}}</style></head><body>
<h1>delever replay: {html.escape(str(s['scenario']))}</h1>
<p>config hash <code>{html.escape(str(s['config_hash']))}</code>, seed {s['seed']}, venue <b>{html.escape(str(s['venue']))}</b>,
{s['positions']:,} positions ({html.escape(str(s['book_source']))}), window {html.escape(str(s['window_utc'][0]))} to
{html.escape(str(s['window_utc'][1]))}. Estimated liquidations of the stated book along the observed price (replay mode: no impact added).</p>
{part}
<h2>Notes</h2><ul>{notes}</ul>
<h2>Method and assumptions</h2><pre>{html.escape((__doc__ or '').strip())}</pre>
<h2>Summary</h2><pre>{html.escape(json.dumps(s, indent=2, default=str))}</pre>
</body></html>"""
    path.write_text(doc, encoding="utf-8")


def write_replay(result: ReplayResult, out_dir: Path, html: bool = True) -> Path:
    """Write the replay folder atomically (temporary folder in ``out_dir``, renamed when complete).

    Files: ``minutes.parquet`` (one row per minute: ``minute``, ``time_utc``, ``has_bar``, observed
    ``open/high/low/close`` and ``taker_sell_volume`` (NaN where absent), the :func:`per_minute`
    columns, and the bands ``<col>_p05/_p50/_p95_<usd|qty>`` for :data:`BAND_COLUMNS`, NaN without an
    ensemble), ``summary.json``, ``replay.html`` (plotly.js from ``<out_dir>/plotly-<version>.min.js``).

    Returns:
        ``<out_dir>/<scenario>-replay-<config_hash>-<UTC time>``.
    """
    prep = result.prepared
    folder_name = run_folder_name(f"{prep.scenario.name}-replay-{prep.config_hash}")
    with atomic_run_folder(out_dir, folder_name) as tmp:
        pq.write_table(result.minutes, tmp / "minutes.parquet")
        (tmp / "summary.json").write_text(json.dumps(result.summary, indent=2, default=str))
        if html:
            _write_html(result, tmp / "replay.html", out_dir)
    return out_dir / folder_name


# --------------------------------------------------------------------------- CLI
def replay_command(
    scenario: Annotated[Path | None, typer.Option("--scenario", "-s", help="Scenario TOML with a historical price driver")] = None,
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
    klines: Annotated[Path | None, typer.Option("--klines", help="Price file to replay (Binance klines or trade-built 1m bars); replaces the scenario's price driver")] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder that receives the replay folder")] = Path("runs"),
    as_json: JsonOpt = False,
    ensemble: EnsembleOpt = 20,
    open_interest_sigma: OpenInterestSigmaOpt = 0.2,
    long_short_sigma: LongShortSigmaOpt = 0.15,
    leverage_concentration: LeverageConcentrationOpt = 50.0,
    entry_sigma_sigma: EntrySigmaSigmaOpt = 0.3,
    workers: Annotated[int | None, typer.Option("--workers", help="Processes for the ensemble [default: CPU count, at most 8]")] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip replay.html")] = False,
    no_write: NoWriteOpt = False,
) -> None:
    """Replay a real price path: estimated liquidations per minute (long, short) with ensemble bands."""
    from rich.console import Console

    from delever.scenario import load_scenario, resolve_data_dir

    try:
        if scenario is None and klines is None:
            raise DeleverInputError("--scenario: replay needs a scenario with a historical price driver, or --klines")
        sc = load_scenario(scenario, set_ or [])
        spread = EnsembleSpread(open_interest_sigma, long_short_sigma, leverage_concentration, entry_sigma_sigma)
        result = replay(sc, resolve_data_dir(data_dir), ensemble=ensemble, spread=spread,
                        workers=workers if workers is not None else min(os.cpu_count() or 1, 8), klines=klines)
        folder = None if no_write else write_replay(result, out, html=not no_report)
    except DeleverInputError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    summary = dict(result.summary)
    summary["folder"] = str(folder) if folder else None
    if as_json:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
        return
    _print_summary(summary, result, Console(soft_wrap=True, highlight=False))


def _print_summary(s: dict[str, Any], result: ReplayResult, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = s["totals"]
    console.print(f"[bold]delever replay[/]: {s['scenario']} (config {s['config_hash']}, seed {s['seed']}), {s['venue']} "
                  f"{s['instrument']}, {s['positions']:,} positions, {s['window_utc'][0]} to {s['window_utc'][1]}")
    band = (s.get("ensemble") or {}).get("totals_band") or {}

    def fmt(key: str) -> str:
        v = t.get(key)
        b = band.get(key)
        txt = "n/a" if v is None else f"{v / 1e6:,.1f}"
        return txt + (f" ({b[0] / 1e6:,.1f}-{b[2] / 1e6:,.1f})" if b else "")

    console.print(f"liquidated longs {fmt('liquidated_long_usd')} M USD, shorts {fmt('liquidated_short_usd')} M USD, "
                  f"ADL {fmt('adl_notional_usd')} M USD (5-95 % over the ensemble in brackets)")
    tbl = result.minutes
    long_usd = np.asarray(tbl.column("long_liq_usd"))
    short_usd = np.asarray(tbl.column("short_liq_usd"))
    top = np.argsort(-(long_usd + short_usd), kind="stable")[:8]
    table = Table(title="Busiest minutes (million USD)")
    for c in ("minute (UTC)", "close", "longs", "5-95 %", "shorts", "ADL"):
        table.add_column(c, justify="right")
    times = tbl.column("time_utc").to_pylist()
    close = np.asarray(tbl.column("close"))
    lo, hi = np.asarray(tbl.column("long_liq_p05_usd")), np.asarray(tbl.column("long_liq_p95_usd"))
    adl = np.asarray(tbl.column("adl_usd"))
    for i in sorted(top.tolist()):
        if long_usd[i] + short_usd[i] <= 0:
            continue
        b = f"{lo[i] / 1e6:,.1f}-{hi[i] / 1e6:,.1f}" if np.isfinite(lo[i]) else ""
        table.add_row(times[i].strftime("%Y-%m-%d %H:%M"), f"{close[i]:,.6g}", f"{long_usd[i] / 1e6:,.1f}", b,
                      f"{short_usd[i] / 1e6:,.1f}", f"{adl[i] / 1e6:,.1f}")
    console.print(table)
    for n in s.get("notes", []):
        console.print(f"[dim]- {escape(str(n))}[/]")
    console.print(f"folder: {s.get('folder')} ({s['wall_s']} s)")
