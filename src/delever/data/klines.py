"""Reader for Binance Vision kline (candlestick) files.

Format (source: https://github.com/binance/binance-public-data, "Klines" section; files under
``data.binance.vision/data/{spot,futures/um,futures/cm}/{daily,monthly}/{klines,markPriceKlines,
indexPriceKlines}/``): 12 comma-separated columns

    open_time, open, high, low, close, volume, close_time, quote_volume, count,
    taker_buy_volume, taker_buy_quote_volume, ignore

as ``.csv`` (with a header line, as USD-M/COIN-M futures files since 2022 have, or without one, as
older futures files and all spot files), ``.csv.gz``, or a ``.zip`` holding exactly one CSV (the
form Binance Vision publishes). Times are epoch milliseconds UTC, except Binance spot files from
2025-01-01 on, which use microseconds; the unit is detected from the magnitude of ``open_time``
and must be the same on every row. Mark-price and index-price klines use the same 12 columns
with every volume field 0.

Everything is validated and nothing is repaired: a missing value, a non-positive price, a bar whose
open or close lies outside [low, high], a negative volume, a taker-buy volume above the total, a
duplicate or out-of-order ``open_time``, a ``close_time`` that does not end the bar, or a missing
bar (gap) raises :class:`~delever.errors.DeleverInputError` naming the file and the 1-based data
row (the header line, if any, is not counted).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from delever.data.files import open_bytes
from delever.errors import DeleverInputError

__all__ = ["KLINE_COLUMNS", "Klines", "format_utc_ms", "parse_utc_ms", "read_klines", "read_klines_many"]

KLINE_COLUMNS: tuple[str, ...] = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
_PRICE_COLS = ("open", "high", "low", "close")
_VOLUME_COLS = ("volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume")
_COLUMN_TYPES: dict[str, pa.DataType] = {
    "open_time": pa.int64(),
    "close_time": pa.int64(),
    "count": pa.int64(),
    "ignore": pa.string(),
    **{c: pa.float64() for c in _PRICE_COLS + _VOLUME_COLS},
}
# Epoch-time magnitude bands: ms covers 1973-03 .. 5138, µs covers 1973-03 .. 5138 as well.
_MS_MIN, _US_MIN, _US_MAX = 10**11, 10**14, 10**17


@dataclass
class Klines:
    """Consecutive klines of one instrument and interval, struct of arrays.

    Attributes:
        open_time_ms: int64 (T,), bar open time, epoch ms UTC, strictly increasing by ``interval_ms``.
        open: float64 (T,), USD (quote currency) per base unit.
        high: float64 (T,), USD.
        low: float64 (T,), USD.
        close: float64 (T,), USD.
        volume: float64 (T,), traded base units (contracts for COIN-M); 0 for mark/index klines.
        quote_volume: float64 (T,), traded quote units (USD for USD-M, base units for COIN-M).
        taker_buy_volume: float64 (T,), base units bought by takers (taker sell = volume - this).
        interval_ms: bar length in ms.
        path: source file(s) (several joined with ``" + "``).
    """

    open_time_ms: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    quote_volume: np.ndarray
    taker_buy_volume: np.ndarray
    interval_ms: int
    path: str

    def __len__(self) -> int:
        return int(self.open_time_ms.shape[0])

    @property
    def taker_sell_volume(self) -> np.ndarray:
        """float64 (T,): base units sold by takers, ``volume - taker_buy_volume`` (>= 0 by validation)."""
        return self.volume - self.taker_buy_volume

    @property
    def end_time_ms(self) -> int:
        """Epoch ms UTC at which the last bar ends (exclusive)."""
        return int(self.open_time_ms[-1]) + self.interval_ms

    def select(self, start_ms: int | None = None, end_ms: int | None = None) -> Klines:
        """Bars with ``start_ms <= open_time_ms < end_ms`` (either bound optional), as a new ``Klines``.

        Raises:
            DeleverInputError: the window is empty, reversed, or reaches outside the bars held
                (the data are never silently shortened).
        """
        first, end = int(self.open_time_ms[0]), self.end_time_ms
        lo = first if start_ms is None else start_ms
        hi = end if end_ms is None else end_ms
        cover = f"(bars cover {format_utc_ms(first)} to {format_utc_ms(end)})"
        if lo >= hi:
            raise DeleverInputError(
                f"{self.path}: start {format_utc_ms(lo)} must be before end {format_utc_ms(hi)}"
            )
        if lo < first:
            raise DeleverInputError(f"{self.path}: start {format_utc_ms(lo)} is before the first bar {cover}")
        if hi > end:
            raise DeleverInputError(
                f"{self.path}: end {format_utc_ms(hi)} is after the last bar ends {cover}"
            )
        mask = (self.open_time_ms >= lo) & (self.open_time_ms < hi)
        if not mask.any():
            raise DeleverInputError(
                f"{self.path}: no bar opens in [{format_utc_ms(lo)}, {format_utc_ms(hi)}) {cover}"
            )
        return Klines(
            open_time_ms=self.open_time_ms[mask],
            open=self.open[mask],
            high=self.high[mask],
            low=self.low[mask],
            close=self.close[mask],
            volume=self.volume[mask],
            quote_volume=self.quote_volume[mask],
            taker_buy_volume=self.taker_buy_volume[mask],
            interval_ms=self.interval_ms,
            path=self.path,
        )


# --------------------------------------------------------------------------- time helpers
def parse_utc_ms(text: str, field: str) -> int:
    """Parse a UTC time ``'YYYY-MM-DD HH:MM[:SS]'`` (a ``T`` separator is accepted too) to epoch ms.

    Args:
        text: the time string, UTC, no offset.
        field: name used in the error message (a scenario field or argument name).

    Returns:
        Epoch milliseconds, int.

    Raises:
        DeleverInputError: the string is not in that form.
    """
    s = str(text).strip().replace("T", " ")
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"):
        try:
            dt = datetime.strptime(s, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        return int(dt.timestamp()) * 1000
    raise DeleverInputError(f"{field}: expected a UTC time 'YYYY-MM-DD HH:MM[:SS]', got {text!r}")


def format_utc_ms(ms: int) -> str:
    """Epoch ms -> ``'YYYY-MM-DD HH:MM:SS'`` UTC (milliseconds appended only when non-zero)."""
    dt = datetime.fromtimestamp(int(ms) // 1000, tz=UTC)
    frac = int(ms) % 1000
    return dt.strftime("%Y-%m-%d %H:%M:%S") + (f".{frac:03d}" if frac else "")


# --------------------------------------------------------------------------- file reading
def _has_header(first_line: str, path: Path) -> bool:
    """True if the first line is the Binance header; False if it is a data row; error otherwise."""
    fields = [f.strip().lower() for f in first_line.strip().split(",")]
    try:
        int(fields[0])
        return False
    except ValueError:
        pass
    if tuple(fields) != KLINE_COLUMNS:
        raise DeleverInputError(
            f"{path}: header is not the Binance kline header ({','.join(KLINE_COLUMNS)}); got {first_line.strip()!r}"
        )
    return True


def _locate_bad_value(raw: bytes, header: bool, path: Path, exc: Exception) -> DeleverInputError:
    """Find the first row whose value does not parse as its column's type (after a pyarrow failure)."""
    table = pacsv.read_csv(
        pa.py_buffer(raw),
        read_options=pacsv.ReadOptions(column_names=list(KLINE_COLUMNS), skip_rows=int(header)),
        convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(KLINE_COLUMNS, pa.string())),
    )
    for col in KLINE_COLUMNS:
        kind = _COLUMN_TYPES[col]
        if kind == pa.string():
            continue
        conv = int if kind == pa.int64() else float
        for i, v in enumerate(table[col].to_pylist()):
            if v is None or v == "":
                continue  # empty cells are reported by the null check
            try:
                conv(v)
            except ValueError:
                what = "an integer" if conv is int else "a number"
                return DeleverInputError(f"{path}: row {i + 1}: field '{col}' = {v!r}, expected {what}")
    return DeleverInputError(f"{path}: could not parse as Binance klines: {exc}")


def _parse_table(path: Path) -> pa.Table:
    raw = open_bytes(path, "kline file")
    first_line = raw.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace")
    if not first_line.strip():
        raise DeleverInputError(f"{path}: empty file (expected Binance kline rows)")
    header = _has_header(first_line, path)
    bad: list[tuple[int | None, int, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad.append((row.number, row.actual_columns, row.text))
        return "skip"  # recorded and raised below: nothing is dropped silently

    table: pa.Table | None = None
    try:
        table = pacsv.read_csv(
            pa.py_buffer(raw),
            read_options=pacsv.ReadOptions(
                column_names=list(KLINE_COLUMNS), skip_rows=int(header), use_threads=False
            ),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types=_COLUMN_TYPES, strings_can_be_null=False),
        )
    except pa.ArrowInvalid as exc:
        if not bad:  # a value that does not parse; a column-count problem is reported below
            raise _locate_bad_value(raw, header, path, exc) from None
    if bad:
        line, ncols, text = bad[0]
        where = f"row {line - int(header)}" if line is not None else "a row"
        raise DeleverInputError(
            f"{path}: {where}: expected {len(KLINE_COLUMNS)} comma-separated columns, got {ncols} ({text[:80]!r})"
        )
    if table is None or table.num_rows == 0:
        raise DeleverInputError(f"{path}: no data rows (expected Binance kline rows)")
    return table


def _first_true(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _to_ms(values: np.ndarray, column: str, path: Path) -> tuple[np.ndarray, int]:
    """Detect ms vs µs from magnitude (whole file, one unit) and return (ms values, units per ms)."""
    in_ms = (values >= _MS_MIN) & (values < _US_MIN)
    in_us = (values >= _US_MIN) & (values < _US_MAX)
    neither = ~(in_ms | in_us)
    if neither.any():
        i = _first_true(neither)
        raise DeleverInputError(
            f"{path}: row {i + 1}: {column} {int(values[i])} is neither epoch milliseconds nor microseconds"
        )
    unit_us = bool(in_us[0])
    other = in_ms if unit_us else in_us
    if other.any():
        i = _first_true(other)
        first, this = ("µs", "ms") if unit_us else ("ms", "µs")
        raise DeleverInputError(
            f"{path}: row {i + 1}: {column} {int(values[i])} is in {this} but row 1 is in {first} "
            "(mixed time units in one file)"
        )
    per_ms = 1000 if unit_us else 1
    if per_ms > 1:
        off = values % per_ms != 0
        if off.any():
            i = _first_true(off)
            raise DeleverInputError(
                f"{path}: row {i + 1}: {column} {int(values[i])} µs is not a whole millisecond"
            )
    return values // per_ms, per_ms


def _validate_and_build(table: pa.Table, path: Path) -> Klines:
    cols: dict[str, np.ndarray] = {}
    blank = np.ones(table.num_rows, dtype=bool)
    for name in KLINE_COLUMNS[:-1]:
        blank &= np.asarray(table[name].is_null().to_numpy(zero_copy_only=False))
    if blank.any():
        i = _first_true(blank)
        raise DeleverInputError(
            f"{path}: row {i + 1}: blank line, expected {len(KLINE_COLUMNS)} comma-separated columns"
        )
    for name in KLINE_COLUMNS:
        if name == "ignore":
            continue
        col = table[name]
        if col.null_count:
            i = _first_true(np.asarray(col.is_null().to_numpy(zero_copy_only=False)))
            raise DeleverInputError(f"{path}: row {i + 1}: field '{name}' is empty or NaN, expected a value")
        dtype = np.int64 if _COLUMN_TYPES[name] == pa.int64() else np.float64
        cols[name] = np.ascontiguousarray(col.to_numpy(zero_copy_only=False), dtype=dtype)

    for name in _PRICE_COLS + _VOLUME_COLS:
        bad = ~np.isfinite(cols[name])
        if bad.any():
            i = _first_true(bad)
            raise DeleverInputError(
                f"{path}: row {i + 1}: field '{name}' = {cols[name][i]}, expected a finite number"
            )

    # --- time: unit, order, interval, gaps, close_time
    open_ms, per_ms = _to_ms(cols["open_time"], "open_time", path)
    step = np.diff(open_ms)
    back = step <= 0
    if back.any():
        i = _first_true(back)
        kind = "duplicate" if step[i] == 0 else "out of order"
        raise DeleverInputError(
            f"{path}: row {i + 2}: open_time {format_utc_ms(open_ms[i + 1])} is not after row {i + 1} "
            f"({format_utc_ms(open_ms[i])}): {kind} bar"
        )
    span_native = cols["close_time"] - cols["open_time"] + 1  # Binance: close_time = open + interval - 1 unit
    if step.size:
        # Lower median: an observed step, robust to a minority of gaps (which only lengthen steps).
        interval_ms = int(np.sort(step)[(step.size - 1) // 2])
    else:
        if span_native[0] <= 0 or span_native[0] % per_ms:
            raise DeleverInputError(
                f"{path}: row 1: close_time {int(cols['close_time'][0])} does not end the bar opened at "
                f"{int(cols['open_time'][0])}"
            )
        interval_ms = int(span_native[0] // per_ms)
    off_grid = step != interval_ms
    if off_grid.any():
        i = _first_true(off_grid)
        s = int(step[i])
        detail = (
            f"{s // interval_ms - 1} bar(s) missing"
            if s % interval_ms == 0
            else f"not a multiple of the {interval_ms} ms interval"
        )
        raise DeleverInputError(
            f"{path}: gap between row {i + 1} ({format_utc_ms(open_ms[i])}) and row {i + 2} "
            f"({format_utc_ms(open_ms[i + 1])}): step {s} ms, expected {interval_ms} ms ({detail}); gaps are not filled"
        )
    bad_close = span_native != interval_ms * per_ms
    if bad_close.any():
        i = _first_true(bad_close)
        raise DeleverInputError(
            f"{path}: row {i + 1}: close_time {int(cols['close_time'][i])} is not open_time + interval - 1 "
            f"(open_time {int(cols['open_time'][i])}, interval {interval_ms} ms)"
        )

    # --- prices
    o, h, lo, c = cols["open"], cols["high"], cols["low"], cols["close"]
    for name in _PRICE_COLS:
        nonpos = cols[name] <= 0
        if nonpos.any():
            i = _first_true(nonpos)
            raise DeleverInputError(f"{path}: row {i + 1}: {name} = {cols[name][i]}, expected a price > 0")
    bad = (lo > o) | (lo > c) | (h < o) | (h < c)
    if bad.any():
        i = _first_true(bad)
        raise DeleverInputError(
            f"{path}: row {i + 1}: expected low <= open, close <= high, got open {o[i]}, high {h[i]}, "
            f"low {lo[i]}, close {c[i]}"
        )

    # --- volumes
    for name in _VOLUME_COLS:
        neg = cols[name] < 0
        if neg.any():
            i = _first_true(neg)
            raise DeleverInputError(f"{path}: row {i + 1}: {name} = {cols[name][i]}, expected >= 0")
    over = cols["taker_buy_volume"] > cols["volume"]
    if over.any():
        i = _first_true(over)
        raise DeleverInputError(
            f"{path}: row {i + 1}: taker_buy_volume {cols['taker_buy_volume'][i]} exceeds volume {cols['volume'][i]}"
        )

    return Klines(
        open_time_ms=open_ms.astype(np.int64),
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=cols["volume"],
        quote_volume=cols["quote_volume"],
        taker_buy_volume=cols["taker_buy_volume"],
        interval_ms=interval_ms,
        path=str(path),
    )


def _window(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    s = parse_utc_ms(start, "start") if start is not None else None
    e = parse_utc_ms(end, "end") if end is not None else None
    return s, e


def read_klines(path: Path | str, start: str | None = None, end: str | None = None) -> Klines:
    """Read and validate one Binance Vision kline file; optionally keep a time window.

    The whole file is validated (see the module docstring) before the window is applied.

    Args:
        path: ``.csv`` (header optional), ``.csv.gz`` or ``.zip`` holding one CSV.
        start: UTC ``'YYYY-MM-DD HH:MM[:SS]'``; keep bars with ``open_time >= start``.
        end: UTC ``'YYYY-MM-DD HH:MM[:SS]'``; keep bars with ``open_time < end``.

    Returns:
        :class:`Klines`, T >= 1 bars, times in ms whatever the file's unit.

    Raises:
        DeleverInputError: unreadable file, wrong column count, unparsable or missing value, mixed
            time units, duplicate/unsorted/missing bars, inconsistent ``close_time``, bad prices or
            volumes (message names the file and 1-based data row); bad ``start``/``end``, or a
            window that is empty or reaches outside the file.
    """
    p = Path(path)
    s, e = _window(start, end)
    kl = _validate_and_build(_parse_table(p), p)
    return kl if s is None and e is None else kl.select(s, e)


def read_klines_many(
    paths: list[Path] | list[str], start: str | None = None, end: str | None = None
) -> Klines:
    """Read several kline files of one instrument and interval and join them in time order.

    Files are ordered by their first bar (the order given does not matter). Adjacent files must
    continue each other exactly: an overlap, a duplicated bar or a gap between two files is an error,
    as is a different interval.

    Args:
        paths: kline files as accepted by :func:`read_klines` (at least one).
        start: UTC ``'YYYY-MM-DD HH:MM[:SS]'``, applied to the joined series.
        end: UTC ``'YYYY-MM-DD HH:MM[:SS]'``, applied to the joined series.

    Returns:
        :class:`Klines` with ``path`` listing the files joined by ``" + "`` in time order.

    Raises:
        DeleverInputError: no paths; any error of :func:`read_klines`; differing intervals;
            overlapping, duplicate or missing bars between files; bad or uncovered window.
    """
    if not paths:
        raise DeleverInputError("read_klines_many: expected at least one kline file, got none")
    s, e = _window(start, end)
    parts = sorted(
        (_validate_and_build(_parse_table(Path(p)), Path(p)) for p in paths),
        key=lambda k: int(k.open_time_ms[0]),
    )
    interval = parts[0].interval_ms
    for prev, nxt in zip(parts, parts[1:], strict=False):
        if nxt.interval_ms != interval:
            raise DeleverInputError(
                f"{nxt.path}: interval {nxt.interval_ms} ms differs from {interval} ms in {parts[0].path}"
            )
        first_next, end_prev = int(nxt.open_time_ms[0]), prev.end_time_ms
        if first_next < end_prev:
            raise DeleverInputError(
                f"{nxt.path}: row 1 ({format_utc_ms(first_next)}) overlaps {prev.path}, whose last bar opens at "
                f"{format_utc_ms(int(prev.open_time_ms[-1]))} (duplicate or overlapping bars)"
            )
        if first_next > end_prev:
            missing = (first_next - end_prev) // interval
            raise DeleverInputError(
                f"{nxt.path}: row 1 ({format_utc_ms(first_next)}) does not continue {prev.path}, whose last bar "
                f"opens at {format_utc_ms(int(prev.open_time_ms[-1]))}: {missing} bar(s) missing; gaps are not filled"
            )
    joined = Klines(
        **{
            f: np.concatenate([getattr(k, f) for k in parts])
            for f in (
                "open_time_ms",
                "open",
                "high",
                "low",
                "close",
                "volume",
                "quote_volume",
                "taker_buy_volume",
            )
        },
        interval_ms=interval,
        path=" + ".join(k.path for k in parts),
    )
    return joined if s is None and e is None else joined.select(s, e)
