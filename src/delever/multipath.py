"""Price drivers of several instruments at once, on one time grid (cross-margined accounts).

:class:`MultiPricePath` is the multi-instrument counterpart of :class:`delever.paths.PricePath`: one time
grid ``t_s`` (T,) and one exogenous (``"stress"``) or observed mark (``"replay"``) price per instrument,
``price`` (T, I). :meth:`MultiPricePath.column` hands one instrument back as a ``PricePath``, so the
one-instrument engine can still run it.

Historical paths (:func:`load_historical_multi`) are built per instrument exactly as a one-instrument
historical driver is (:func:`delever.paths.historical_path`: ``close`` or four ``ohlc`` sub-steps per
bar), from files read by the existing readers (Binance Vision klines, :mod:`delever.data.klines`; bars
built from trades, :mod:`delever.data.trade_bars`). The instruments must share the same bars: the same
interval and the same open times over the window, with no missing bar. A window where they do not, a
minute without trades (no price) or a gap is refused, naming the file and row; nothing is filled.

For estimating dependence, :func:`minute_log_returns_multi` gives the 1-minute close-to-close log
returns of all instruments on the minutes where every instrument traded in both bars (complete cases);
the minutes left out are listed per instrument in the result, never silently dropped.

:data:`OCT10_2025_COINS` is the catalogue of the 13 coins of the 2025-10-10 crash with a real 1-minute
path in ``shared/data/oct10-2025-coins`` (see its PROVENANCE.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from delever.data.klines import Klines, format_utc_ms, parse_utc_ms
from delever.data.trade_bars import read_bars_with_empty
from delever.errors import DeleverInputError
from delever.paths import PricePath, historical_path

__all__ = [
    "OCT10_2025_COINS",
    "OCT10_2025_DIR",
    "CoinPath",
    "MultiPricePath",
    "MultiReturns",
    "load_bars_multi",
    "load_historical_multi",
    "minute_log_returns_multi",
    "oct10_2025_paths",
]


# --------------------------------------------------------------------------- the path type
@dataclass
class MultiPricePath:
    """Price driver of a multi-instrument run, struct of arrays.

    Attributes:
        instruments: instrument names, I >= 1, unique (column order of ``price``).
        t_s: float64 (T,), seconds since the start; ``t_s[0] == 0``, strictly increasing.
        price: float64 (T, I), USD, finite and > 0; row 0 is each instrument's start price.
        mode: ``"stress"`` (exogenous/index component; the engine adds impact) or ``"replay"``
            (observed mark; no impact added), as for :class:`~delever.paths.PricePath`.
        start_time_utc: ISO 8601 UTC time of ``t_s == 0`` (``...Z``) for historical paths, else None.
        labels: one human-readable source description per instrument (``""`` when none).
        taker_sell_volume: one float64 (T,) array per instrument (base units sold by takers per step,
            as ``PricePath.taker_sell_volume``) or None where the source has no taker volume; or None.
        notes: remarks for the run record (e.g. COIN-M volumes not converted).

    Raises:
        DeleverInputError: (at construction) shapes that disagree, duplicate instruments, a time grid
            that does not start at 0 or is not increasing, a non-finite or non-positive price, or an
            unknown mode.
    """

    instruments: tuple[str, ...]
    t_s: np.ndarray
    price: np.ndarray
    mode: str
    start_time_utc: str | None = None
    labels: tuple[str, ...] = ()
    taker_sell_volume: tuple[np.ndarray | None, ...] | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        self.instruments = tuple(str(x) for x in self.instruments)
        self.t_s = np.ascontiguousarray(self.t_s, dtype=np.float64)
        self.price = np.ascontiguousarray(self.price, dtype=np.float64)
        n_inst = len(self.instruments)
        if n_inst == 0:
            raise DeleverInputError("MultiPricePath.instruments: expected at least one instrument, got none")
        if len(set(self.instruments)) != n_inst:
            dup = next(x for x in self.instruments if self.instruments.count(x) > 1)
            raise DeleverInputError(f"MultiPricePath.instruments: {dup!r} appears twice, expected unique names")
        if self.mode not in ("stress", "replay"):
            raise DeleverInputError(f"MultiPricePath.mode: expected 'stress' or 'replay', got {self.mode!r}")
        if self.t_s.ndim != 1 or self.t_s.size == 0:
            raise DeleverInputError(f"MultiPricePath.t_s: expected a non-empty 1-d array, got shape {self.t_s.shape}")
        if self.price.shape != (self.t_s.size, n_inst):
            raise DeleverInputError(
                f"MultiPricePath.price: expected shape (T, I) = ({self.t_s.size}, {n_inst}), got {self.price.shape}"
            )
        if self.t_s[0] != 0.0 or np.any(np.diff(self.t_s) <= 0) or not np.all(np.isfinite(self.t_s)):
            raise DeleverInputError("MultiPricePath.t_s: expected t_s[0] == 0 and strictly increasing finite times")
        bad = ~(np.isfinite(self.price) & (self.price > 0))
        if bad.any():
            k, i = np.argwhere(bad)[0]
            raise DeleverInputError(
                f"MultiPricePath.price: step {k}, instrument {self.instruments[i]}: {self.price[k, i]!r}, "
                "expected a finite price > 0"
            )
        if not self.labels:
            self.labels = ("",) * n_inst
        if len(self.labels) != n_inst:
            raise DeleverInputError(f"MultiPricePath.labels: expected {n_inst} labels, got {len(self.labels)}")
        if self.taker_sell_volume is not None and len(self.taker_sell_volume) != n_inst:
            raise DeleverInputError(
                f"MultiPricePath.taker_sell_volume: expected {n_inst} entries, got {len(self.taker_sell_volume)}"
            )

    def __len__(self) -> int:
        return int(self.t_s.shape[0])

    @property
    def n_instruments(self) -> int:
        """I, the number of instruments."""
        return len(self.instruments)

    def index(self, instrument: str) -> int:
        """Column of ``instrument`` in ``price``.

        Raises:
            DeleverInputError: unknown instrument.
        """
        try:
            return self.instruments.index(instrument)
        except ValueError:
            raise DeleverInputError(
                f"instrument {instrument!r}: not in this path (instruments: {', '.join(self.instruments)})"
            ) from None

    def column(self, instrument: str | int) -> PricePath:
        """One instrument as a one-instrument :class:`~delever.paths.PricePath` (arrays copied).

        Args:
            instrument: name or column index.

        Returns:
            ``PricePath`` with this path's ``t_s``, ``mode`` and ``start_time_utc``, the instrument's
            price column and taker-sell volume (if any).

        Raises:
            DeleverInputError: unknown name or index out of range.
        """
        if isinstance(instrument, str):
            i = self.index(instrument)
        else:
            i = int(instrument)
            if not 0 <= i < self.n_instruments:
                raise DeleverInputError(
                    f"instrument index {instrument!r}: expected 0..{self.n_instruments - 1}"
                )
        vol = self.taker_sell_volume[i] if self.taker_sell_volume is not None else None
        return PricePath(
            t_s=self.t_s.copy(),
            price=self.price[:, i].copy(),
            mode=self.mode,
            label=self.labels[i] or self.instruments[i],
            start_time_utc=self.start_time_utc,
            taker_sell_volume=None if vol is None else vol.copy(),
        )

    def log_returns(self) -> np.ndarray:
        """float64 (T - 1, I): ``ln(price[k] / price[k - 1])`` per step.

        On a historical path built with ``intrabar = "close"`` these are the bar close-to-close
        returns (the first from the first open); with ``"ohlc"`` they are sub-step moves along the
        conventional O-H-L-C walk and are not returns to estimate a model on.
        """
        return np.diff(np.log(self.price), axis=0)


# --------------------------------------------------------------------------- catalogue
OCT10_2025_DIR = "oct10-2025-coins"


@dataclass(frozen=True)
class CoinPath:
    """Where a coin's 1-minute path of 2025-10-10 20:30-22:30 UTC comes from.

    Attributes:
        coin: coin name as on Hyperliquid (``BTC``, ``ETH`` ...).
        file: file relative to the data directory.
        source: venue and market in words.
        market: ``"usdm_perp"`` (Binance USD-M perp klines, group A), ``"coinm_perp"`` (Binance COIN-M
            perp, 1m bars built from trades, group B) or ``"spot"`` (spot, 1m bars from trades, group B).
    """

    coin: str
    file: str
    source: str
    market: str


OCT10_2025_COINS: tuple[CoinPath, ...] = (
    CoinPath("BTC", f"{OCT10_2025_DIR}/BTCUSDT-1m-2025-10-10-window.csv", "Binance USD-M perp klines", "usdm_perp"),
    CoinPath("ETH", f"{OCT10_2025_DIR}/ETHUSD-gemini-spot-1m-from-trades-2025-10-10-window.csv",
             "Gemini spot, 1m bars from trades (the only ETH path; thin)", "spot"),
    CoinPath("SOL", f"{OCT10_2025_DIR}/SOLUSDT-1m-2025-10-10-window.csv", "Binance USD-M perp klines", "usdm_perp"),
    CoinPath("XRP", f"{OCT10_2025_DIR}/XRPUSDT-1m-2025-10-10-window.csv", "Binance USD-M perp klines", "usdm_perp"),
    CoinPath("DOGE", f"{OCT10_2025_DIR}/DOGEUSDT-1m-2025-10-10-window.csv", "Binance USD-M perp klines", "usdm_perp"),
    CoinPath("ADA", f"{OCT10_2025_DIR}/ADAUSDT-1m-2025-10-10-window.csv", "Binance USD-M perp klines", "usdm_perp"),
    CoinPath("LTC", f"{OCT10_2025_DIR}/LTCUSDT-1m-2025-10-10-window.csv", "Binance USD-M perp klines", "usdm_perp"),
    CoinPath("TRX", f"{OCT10_2025_DIR}/TRXUSDT-1m-2025-10-10-window.csv", "Binance USD-M perp klines", "usdm_perp"),
    CoinPath("AVAX", f"{OCT10_2025_DIR}/AVAXUSDT-1m-2025-10-10-window.csv", "Binance USD-M perp klines", "usdm_perp"),
    CoinPath("LINK", f"{OCT10_2025_DIR}/LINKUSDT-1m-2025-10-10-window.csv", "Binance USD-M perp klines", "usdm_perp"),
    CoinPath("AAVE", f"{OCT10_2025_DIR}/AAVEUSD_PERP-binance-coinm-perp-1m-from-trades-2025-10-10-window.csv",
             "Binance COIN-M perp, 1m bars from trades", "coinm_perp"),
    CoinPath("WLD", f"{OCT10_2025_DIR}/WLDUSD_PERP-binance-coinm-perp-1m-from-trades-2025-10-10-window.csv",
             "Binance COIN-M perp, 1m bars from trades", "coinm_perp"),
    CoinPath("ENA", f"{OCT10_2025_DIR}/ENA-USD-coinbase-spot-1m-from-trades-2025-10-10-window.csv",
             "Coinbase spot, 1m bars from trades (the only ENA path)", "spot"),
)
"""The 13 coins of 2025-10-10 with a real 1-minute path, 20:30-22:30 UTC (``oct10-2025-coins/PROVENANCE.md``).

Choice per coin: a perp path is preferred to a spot path, Binance USD-M perp klines (group A, complete
Binance Vision rows) first, else Binance COIN-M perp bars built from trades, else spot bars built from
trades. Why: the leveraged crowd that was liquidated traded perps, and perp venues fell further than
spot that evening (after 21:15 Binance USD-M alts traded 3-18 % below Coinbase/Gemini spot; PROVENANCE.md,
"Real dislocation"). The same choice as the Hyperliquid validation (``delever.validate.HL_COINS`` is
built from this catalogue). Per coin:

* BTC, SOL, XRP, DOGE, ADA, LTC, TRX, AVAX, LINK: Binance USD-M perp klines. (AVAX and TRX also have a
  COIN-M series; USD-M is preferred: AVAX COIN-M traded ~65 % under USD-M at 21:27-21:30, illiquid.)
* AAVE, WLD: no USD-M file; Binance COIN-M perp bars built from trades (volumes in contracts, so these
  paths carry no taker volume).
* ETH: no perp series was found; Gemini spot bars (thin: 5,574 trades, 3 minutes without trades).
* ENA: no perp series was found; Coinbase spot bars (1 minute without trades, 22:22).

ETH and ENA have minutes without trades, so a window containing one of them is refused by
:func:`load_historical_multi` (never filled); :func:`minute_log_returns_multi` leaves those minutes'
returns out and says so. No Hyperliquid prices exist per minute for any coin (PROVENANCE.md, "Not found").
"""


def oct10_2025_paths(data_dir: Path | str, coins: tuple[str, ...] | list[str] | None = None) -> dict[str, Path]:
    """Files of :data:`OCT10_2025_COINS` under ``data_dir``, in catalogue (or ``coins``) order.

    Args:
        data_dir: the shared data directory (holding ``oct10-2025-coins/``).
        coins: coin names to keep (default: all 13).

    Returns:
        ``{coin: path}``, ready for :func:`load_historical_multi`.

    Raises:
        DeleverInputError: a coin not in the catalogue.
    """
    by_coin = {c.coin: c for c in OCT10_2025_COINS}
    names = list(by_coin) if coins is None else [str(c) for c in coins]
    unknown = [c for c in names if c not in by_coin]
    if unknown:
        raise DeleverInputError(
            f"coins: {', '.join(unknown)} not in the 2025-10-10 catalogue (known: {', '.join(by_coin)})"
        )
    return {c: Path(data_dir) / by_coin[c].file for c in names}


# --------------------------------------------------------------------------- reading
@dataclass
class _Bars:
    """One instrument's bars over the window, and where each minute sits in its file."""

    instrument: str
    path: Path
    bars: Klines
    notes: list[str]
    empty: list[tuple[int, int]]  # (1-based data row, open_time ms) of minutes without trades
    first_row_ms: int  # open time of the file's first data row

    def row_of(self, open_ms: int) -> int:
        """1-based data row of the bar opening at ``open_ms`` (files hold consecutive bars)."""
        return (int(open_ms) - self.first_row_ms) // self.bars.interval_ms + 1


def _window_ms(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    s = parse_utc_ms(start, "start") if start is not None else None
    e = parse_utc_ms(end, "end") if end is not None else None
    return s, e


def _read_window(paths: Mapping[str, Path | str], start: str | None, end: str | None) -> list[_Bars]:
    """Read every file, keep the window; the bars still contain the gaps of minutes without trades."""
    if not paths:
        raise DeleverInputError("paths: expected at least one instrument file, got none")
    s_ms, e_ms = _window_ms(start, end)
    out: list[_Bars] = []
    for inst, p in paths.items():
        path = Path(p)
        full, notes, empty = read_bars_with_empty(path)
        first_row = min([int(full.open_time_ms[0])] + [t for _, t in empty])
        last_end = max([full.end_time_ms] + [t + full.interval_ms for _, t in empty])
        lo = first_row if s_ms is None else s_ms
        hi = last_end if e_ms is None else e_ms
        cover = f"(rows cover {format_utc_ms(first_row)} to {format_utc_ms(last_end)})"
        if lo >= hi:
            raise DeleverInputError(f"{path}: start {format_utc_ms(lo)} must be before end {format_utc_ms(hi)}")
        if lo < first_row or hi > last_end:
            raise DeleverInputError(
                f"{path}: window {format_utc_ms(lo)} to {format_utc_ms(hi)} reaches outside the file {cover}"
            )
        mask = (full.open_time_ms >= lo) & (full.open_time_ms < hi)
        if not mask.any():
            raise DeleverInputError(f"{path}: no bar with a price opens in [{format_utc_ms(lo)}, {format_utc_ms(hi)})")
        if (lo - first_row) % full.interval_ms:
            raise DeleverInputError(
                f"{path}: start {format_utc_ms(lo)} is not on the file's {full.interval_ms} ms bar grid"
            )
        bars = full.select(int(full.open_time_ms[mask][0]), int(full.open_time_ms[mask][-1]) + full.interval_ms)
        inside = [(r, t) for r, t in empty if lo <= t < hi]
        out.append(_Bars(inst, path, bars, notes, inside, first_row))
    return out


def _check_same_grid(parts: list[_Bars], allow_empty: bool) -> np.ndarray:
    """Common open times (int64, ms) of the window; every instrument must hold the same bars."""
    ref = parts[0]
    interval = ref.bars.interval_ms
    for b in parts:
        if b.bars.interval_ms != interval:
            raise DeleverInputError(
                f"{b.path}: bar interval {b.bars.interval_ms} ms differs from {interval} ms in {ref.path}"
            )
        if b.empty and not allow_empty:
            r, t = b.empty[0]
            raise DeleverInputError(
                f"{b.path}: row {r}: minute {format_utc_ms(t)} has no trade (no price) inside the window; "
                f"{len(b.empty)} such minute(s) in the window; gaps are not filled, choose a window without them"
            )
    # Grid of the window: from the earliest first bar (or empty minute) to the latest end, whole bars.
    lo = min(min([int(b.bars.open_time_ms[0])] + [t for _, t in b.empty]) for b in parts)
    hi = max(max([b.bars.end_time_ms] + [t + interval for _, t in b.empty]) for b in parts)
    grid = np.arange(lo, hi, interval, dtype=np.int64)
    for b in parts:
        have = np.union1d(b.bars.open_time_ms, np.array([t for _, t in b.empty], dtype=np.int64))
        if have.size != grid.size or not np.array_equal(have, grid):
            missing = np.setdiff1d(grid, have)
            if missing.size:
                t = int(missing[0])
                first, last = int(have[0]), int(have[-1])
                if t < first:
                    where = f"row {b.row_of(first)}: first bar {format_utc_ms(first)} starts after"
                elif t > last:
                    where = f"row {b.row_of(last)}: last bar {format_utc_ms(last)} ends before"
                else:
                    where = f"row {b.row_of(t)}: no bar at"
                raise DeleverInputError(
                    f"{b.path}: {where} {format_utc_ms(t)}, which other instruments have (window "
                    f"{format_utc_ms(lo)} to {format_utc_ms(hi)}); instruments must share the same timestamps"
                )
            t = int(np.setdiff1d(have, grid)[0])  # off the common grid (e.g. bars opening at :30 s)
            raise DeleverInputError(f"{b.path}: row {b.row_of(t)}: bar {format_utc_ms(t)} outside the common grid")
    return grid


def _flat_bars_at(bars: Klines, open_ms: list[int], path: str) -> Klines:
    """``bars`` with a flat zero-volume bar at each of ``open_ms`` (minutes without trades): O=H=L=C = previous close.

    Raises:
        DeleverInputError: a minute without trades before the window's first bar (no previous trade to hold).
    """
    t = np.concatenate([bars.open_time_ms, np.asarray(open_ms, np.int64)])
    o = np.argsort(t, kind="stable")
    is_new = np.r_[np.zeros(len(bars), bool), np.ones(len(open_ms), bool)][o]
    if is_new[0]:
        raise DeleverInputError(f"{path}: the window opens on a minute without trades; no last trade price to hold")
    close = np.concatenate([bars.close, np.full(len(open_ms), np.nan)])[o]
    idx = np.where(~is_new, np.arange(close.size), 0)
    np.maximum.accumulate(idx, out=idx)
    held = close[idx]
    def col(a: np.ndarray, fill: np.ndarray | float) -> np.ndarray:
        return np.where(is_new, fill, np.concatenate([a, np.zeros(len(open_ms))])[o])
    return Klines(t[o], col(bars.open, held), col(bars.high, held), col(bars.low, held), held, col(bars.volume, 0.0),
                  col(bars.quote_volume, 0.0), col(bars.taker_buy_volume, 0.0), bars.interval_ms, bars.path)


def _aligned_bars(paths: Mapping[str, Path | str], start: str | None, end: str | None,
                  empty_bars: str) -> tuple[list[_Bars], np.ndarray, list[str]]:
    """Every instrument's bars over the window on one grid (see :func:`load_historical_multi`), and the notes of
    minutes held at the last trade."""
    parts = _read_window(paths, start, end)
    if empty_bars not in ("refuse", "last_trade"):
        raise DeleverInputError(f"empty_bars: expected 'refuse' or 'last_trade', got {empty_bars!r}")
    filled: list[str] = []
    if empty_bars == "last_trade":
        for b in parts:
            if b.empty:
                b.bars = _flat_bars_at(b.bars, [t for _, t in b.empty], str(b.path))
                filled.append(f"{b.instrument}: {len(b.empty)} minute(s) without trades held at the last trade price "
                              f"({', '.join(format_utc_ms(t)[11:16] for _, t in b.empty)} UTC, {b.path.name})")
                b.empty = []
    grid = _check_same_grid(parts, allow_empty=False)
    return parts, grid, filled


def load_bars_multi(paths: Mapping[str, Path | str], start: str | None = None, end: str | None = None,
                    empty_bars: str = "refuse") -> dict[str, Klines]:
    """The bars of every instrument over ``[start, end)`` on one time grid, as :class:`Klines` per instrument.

    The same reading, window and alignment rules as :func:`load_historical_multi` (used for entry histories).

    Raises:
        DeleverInputError: as :func:`load_historical_multi`.
    """
    parts, _, _ = _aligned_bars(paths, start, end, empty_bars)
    return {b.instrument: b.bars for b in parts}


def load_historical_multi(
    paths: Mapping[str, Path | str],
    start: str | None = None,
    end: str | None = None,
    intrabar: str = "close",
    mode: str = "replay",
    empty_bars: str = "refuse",
) -> MultiPricePath:
    """Read one kline file per instrument and align them on one time grid (nothing filled unless asked).

    Each file is read by :func:`delever.data.trade_bars.read_bars_with_empty` (Binance Vision klines
    through :func:`delever.data.klines.read_klines`, or group-B bars built from trades) and its path built
    by :func:`delever.paths.historical_path` (the ``close`` or ``ohlc`` grid of the bars). Every
    instrument must hold exactly the same bars over ``[start, end)`` (the whole files when not given):
    same interval, same open times, no missing bar, no minute without trades. The ``ohlc`` walk
    (nearer extreme first) is chosen per instrument, so the instruments' highs and lows may sit at
    different sub-steps of the same minute: their order inside a minute is a convention, not an
    observation.

    Args:
        paths: ``{instrument: file}`` (order kept as the column order); see :func:`oct10_2025_paths`.
        start: UTC ``'YYYY-MM-DD HH:MM[:SS]'``; keep bars with ``open_time >= start``.
        end: UTC ``'YYYY-MM-DD HH:MM[:SS]'``; keep bars with ``open_time < end``.
        intrabar: ``"close"`` or ``"ohlc"`` (see :func:`delever.paths.historical_path`).
        mode: ``"replay"`` (observed mark) or ``"stress"`` (exogenous component).
        empty_bars: ``"refuse"`` (default) or ``"last_trade"``: a minute without trades (bars built from trades)
            becomes a flat bar at the previous close, the last traded price, with zero volume; each such minute is
            listed in the path's ``notes``. Not a price invented between trades: no trade happened.

    Returns:
        :class:`MultiPricePath`, ``T = K + 1`` (close) or ``4 K + 1`` (ohlc) points for ``K`` bars.

    Raises:
        DeleverInputError: no files; any reader error (file and row named); bad ``start``/``end`` or a
            window outside a file; differing intervals; a bar one instrument lacks (file, row, time); a
            minute without trades in the window (file, row); bad ``intrabar``/``mode``.
    """
    parts, grid, filled = _aligned_bars(paths, start, end, empty_bars)
    cols = [historical_path(b.bars, intrabar, mode) for b in parts]
    t_s = cols[0].t_s
    notes = tuple(n for b in parts for n in b.notes) + tuple(filled)
    return MultiPricePath(
        instruments=tuple(b.instrument for b in parts),
        t_s=t_s,
        price=np.stack([c.price for c in cols], axis=1),
        mode=mode,
        start_time_utc=format_utc_ms(int(grid[0])).replace(" ", "T") + "Z",
        labels=tuple(c.label for c in cols),
        taker_sell_volume=tuple(c.taker_sell_volume for c in cols),
        notes=notes,
    )


@dataclass
class MultiReturns:
    """1-bar close-to-close log returns of several instruments on their common complete minutes.

    Attributes:
        instruments: instrument names, I (column order).
        end_open_time_ms: int64 (N,), open time of the bar whose close ends each return (epoch ms UTC).
        log_return: float64 (N, I), ``ln(close_k / close_{k-1})``.
        interval_s: bar length in seconds.
        excluded_open_time_ms: ``{instrument: open times}`` of the returns left out because that
            instrument had no trade in bar ``k`` or ``k - 1`` (an instrument absent here lost none).
    """

    instruments: tuple[str, ...]
    end_open_time_ms: np.ndarray
    log_return: np.ndarray
    interval_s: float
    excluded_open_time_ms: dict[str, tuple[int, ...]]

    @property
    def n_excluded(self) -> int:
        """Returns of the window left out (union over instruments)."""
        return len({t for ts in self.excluded_open_time_ms.values() for t in ts})


def minute_log_returns_multi(
    paths: Mapping[str, Path | str], start: str | None = None, end: str | None = None
) -> MultiReturns:
    """Close-to-close log returns of all instruments on the bars where every instrument traded.

    Complete-case returns for estimating dependence (``delever.pathgen_multi``): ``r_k = ln(close_k /
    close_{k-1})`` for each bar ``k >= 1`` of the common grid where every instrument has a price in
    both bars ``k - 1`` and ``k``. A bar without trades (group-B files) has no close, so the two returns
    that touch it are left out for every instrument (listed in ``excluded_open_time_ms``), never filled
    or bridged (a return over two minutes would have twice the variance). The instruments must otherwise
    share the same grid, as for :func:`load_historical_multi`.

    Args:
        paths: ``{instrument: file}``.
        start: UTC window start (``open_time >= start``), optional.
        end: UTC window end (``open_time < end``), optional.

    Returns:
        :class:`MultiReturns`.

    Raises:
        DeleverInputError: as :func:`load_historical_multi` except for minutes without trades; fewer
            than 2 complete returns.
    """
    parts = _read_window(paths, start, end)
    grid = _check_same_grid(parts, allow_empty=True)
    n = grid.size
    close = np.full((n, len(parts)), np.nan)  # NaN marks "no trade" only inside this function
    for i, b in enumerate(parts):
        pos = (b.bars.open_time_ms - grid[0]) // b.bars.interval_ms
        close[pos, i] = b.bars.close
    has = np.isfinite(close)
    ok = has[1:] & has[:-1]  # (n - 1, I)
    keep = ok.all(axis=1)
    excluded = {
        b.instrument: tuple(int(t) for t in grid[1:][~ok[:, i]]) for i, b in enumerate(parts) if not ok[:, i].all()
    }
    if int(keep.sum()) < 2:
        raise DeleverInputError(
            f"paths: only {int(keep.sum())} return(s) where every instrument traded in both bars; expected at least 2"
        )
    r = np.log(close[1:][keep] / close[:-1][keep])
    return MultiReturns(
        instruments=tuple(b.instrument for b in parts),
        end_open_time_ms=grid[1:][keep],
        log_return=np.ascontiguousarray(r),
        interval_s=parts[0].bars.interval_ms / 1000.0,
        excluded_open_time_ms=excluded,
    )
