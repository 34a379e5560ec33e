"""Readers for Tardis.dev downloadable CSV files: trades, liquidations, book snapshots, derivative ticker.

Format (source: https://docs.tardis.dev/downloadable-csv-files/data-types, "CSV format details"):
comma-separated, LF line ends, ``.`` decimal mark, one header line, gzip-compressed as served
(``.csv.gz``; plain ``.csv`` is accepted too). Every time is **microseconds since the Unix epoch,
UTC**. ``timestamp`` is the exchange's time, ``local_timestamp`` the arrival time at Tardis; files
are ordered by ``local_timestamp``. A cell is empty when the exchange gave no value (e.g. no trade
id), and a day without data is an empty gzip file.

Columns, by data type:

* ``trades``: ``exchange, symbol, timestamp, local_timestamp, id, side, price, amount`` -- ``side``
  is the liquidity taker side (``buy``, ``sell`` or ``unknown``), ``amount`` in the exchange's
  quantity units (base currency or contracts).
* ``liquidations``: the same eight columns; ``side`` is the liquidation order's side: ``buy`` means a
  short position was liquidated, ``sell`` a long one.
* ``book_snapshot_25`` (and ``book_snapshot_5``): ``exchange, symbol, timestamp, local_timestamp``
  then for each level ``i`` = 0..L-1 ``asks[i].price, asks[i].amount, bids[i].price,
  bids[i].amount`` (level 0 = best); levels the book did not have are empty.
* ``derivative_ticker``: ``exchange, symbol, timestamp, local_timestamp, funding_timestamp,
  funding_rate, predicted_funding_rate, open_interest, last_price, index_price, mark_price``; any
  of the last seven may be empty (the exchange did not send it in that message).

Validation raises :class:`~delever.errors.DeleverInputError` naming the file, the 1-based data row
(header not counted) and the field: wrong header, wrong column count, a value that does not parse,
a time that is not epoch microseconds, ``local_timestamp`` going backwards, a side outside the
documented words, a non-positive price or negative amount, book levels out of price order or with a
hole (an empty level followed by a filled one). A crossed book (best bid >= best ask) is real data
on some venues; it is reported in ``notes``, not raised.

This module also holds the small CSV helpers (``_read_csv_strings`` and the ``_col_*`` converters)
that the other readers of this package (Hyperliquid, Aave) share.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from delever.data.files import open_bytes
from delever.errors import DeleverInputError

__all__ = [
    "DERIVATIVE_TICKER_COLUMNS",
    "TRADE_COLUMNS",
    "TardisBookSnapshots",
    "TardisDerivativeTicker",
    "TardisLiquidations",
    "TardisTrades",
    "book_snapshot_columns",
    "read_tardis_book_snapshots",
    "read_tardis_derivative_ticker",
    "read_tardis_liquidations",
    "read_tardis_trades",
]

TRADE_COLUMNS: tuple[str, ...] = (
    "exchange",
    "symbol",
    "timestamp",
    "local_timestamp",
    "id",
    "side",
    "price",
    "amount",
)
DERIVATIVE_TICKER_COLUMNS: tuple[str, ...] = (
    "exchange",
    "symbol",
    "timestamp",
    "local_timestamp",
    "funding_timestamp",
    "funding_rate",
    "predicted_funding_rate",
    "open_interest",
    "last_price",
    "index_price",
    "mark_price",
)
# Epoch-microsecond band accepted for Tardis times: 1973-03 .. 5138 (ms values are 1000x smaller).
_US_MIN, _US_MAX = 10**14, 10**17


def book_snapshot_columns(levels: int) -> tuple[str, ...]:
    """Header of a Tardis ``book_snapshot_<levels>`` CSV file (``levels`` = 25 or 5)."""
    cols = ["exchange", "symbol", "timestamp", "local_timestamp"]
    for i in range(levels):
        cols += [f"asks[{i}].price", f"asks[{i}].amount", f"bids[{i}].price", f"bids[{i}].amount"]
    return tuple(cols)


# =========================================================================== shared CSV helpers
def _first(mask: np.ndarray) -> int:
    """Index of the first True in a boolean array (caller knows there is one)."""
    return int(np.flatnonzero(mask)[0])


@dataclass
class _StrTable:
    """A CSV file read with every column as text (no value converted yet); columns stay Arrow arrays."""

    path: Path
    header: tuple[str, ...]
    n: int
    cols: dict[str, pa.ChunkedArray]
    _lists: dict[str, list[str]] = field(default_factory=dict)

    def texts(self, name: str) -> list[str]:
        """The column as a Python list of str (cached; for small files and error location)."""
        if name not in self._lists:
            self._lists[name] = self.cols[name].to_pylist()
        return self._lists[name]

    def cell(self, name: str, i: int) -> str:
        """Text of one cell (0-based data row ``i``)."""
        return self.cols[name][i].as_py()


def _read_csv_strings(
    path: Path,
    expected: Sequence[str],
    what: str,
    *,
    any_order: bool = False,
    raw: bytes | None = None,
) -> _StrTable:
    """Read a CSV with a header line into text columns, checking the header and column count.

    Args:
        path: file (plain, ``.gz`` or one-file ``.zip``).
        expected: the documented column names.
        what: name of the format for error messages (e.g. "Tardis trades CSV").
        any_order: accept the expected columns in any order (still exactly that set).
        raw: already decompressed content (``path`` is then used for messages only).

    Returns:
        :class:`_StrTable`; ``n`` may be 0 (header only).

    Raises:
        DeleverInputError: empty file, wrong header, a row with a different column count (blank
            lines included), or undecodable text.
    """
    data = open_bytes(path, what) if raw is None else raw
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not first.strip():
        raise DeleverInputError(f"{path}: empty file (expected a {what} with header {','.join(expected)})")
    try:
        header = tuple(next(csv.reader([first.decode("utf-8")])))
    except UnicodeDecodeError:
        raise DeleverInputError(f"{path}: header line is not UTF-8 text (expected a {what})") from None
    header = tuple(h.strip() for h in header)
    ok = sorted(header) == sorted(expected) if any_order else header == tuple(expected)
    if not ok or len(set(header)) != len(header):
        raise DeleverInputError(
            f"{path}: header is not the {what} header ({','.join(expected)}); got {first.decode('utf-8', 'replace')[:200]!r}"
        )
    bad: list[tuple[int | None, int, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad.append((row.number, row.actual_columns, row.text))
        return "skip"  # recorded and raised below: nothing is dropped silently

    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(column_names=list(header), skip_rows=1, use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise DeleverInputError(f"{path}: could not parse as a {what}: {exc}") from None
    if bad:
        line, ncols, text = bad[0]
        where = f"row {line - 1}" if line is not None else "a row"
        raise DeleverInputError(
            f"{path}: {where}: expected {len(header)} comma-separated columns, got {ncols} ({text[:80]!r})"
        )
    cols = {h: table[h] for h in header}
    if len(header) > 1 and table.num_rows:
        blank = np.ones(table.num_rows, dtype=bool)
        for h in header:
            blank &= np.asarray(pc.equal(table[h], "").to_numpy(zero_copy_only=False), dtype=bool)
        if blank.any():
            i = _first(blank)
            raise DeleverInputError(
                f"{path}: row {i + 1}: blank line, expected {len(header)} comma-separated columns"
            )
    return _StrTable(path=path, header=header, n=table.num_rows, cols=cols)


def _bad(t: _StrTable, i: int, name: str, value: object, expected: str) -> DeleverInputError:
    if isinstance(value, np.generic):
        value = value.item()
    return DeleverInputError(f"{t.path}: row {i + 1}: field '{name}' = {value!r}, expected {expected}")


def _col_str(t: _StrTable, name: str, *, allow_empty: bool = False) -> np.ndarray:
    """Text column (surrounding spaces removed) as a NumPy unicode array; empty cells are an error
    unless ``allow_empty``."""
    col = pc.utf8_trim_whitespace(t.cols[name])
    if not allow_empty and t.n:
        empty = np.asarray(pc.equal(col, "").to_numpy(zero_copy_only=False), dtype=bool)
        if empty.any():
            i = _first(empty)
            raise _bad(t, i, name, t.cell(name, i), "a non-empty value")
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.str_) if t.n else np.zeros(0, dtype="<U1")


def _empty_mask(t: _StrTable, name: str) -> np.ndarray:
    return np.asarray(pc.equal(t.cols[name], "").to_numpy(zero_copy_only=False), dtype=bool)


def _cast(
    t: _StrTable, name: str, kind: pa.DataType, allow_empty: bool, expected: str
) -> tuple[np.ndarray, np.ndarray]:
    """Cast a text column to ``kind``; returns (values, empty mask). Locates the first bad cell on failure."""
    col = t.cols[name]
    empty = _empty_mask(t, name) if t.n else np.zeros(0, dtype=bool)
    if empty.any() and not allow_empty:
        i = _first(empty)
        raise _bad(t, i, name, "", expected)
    if allow_empty:
        col = pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)
    try:
        out = pc.cast(col, kind)
    except pa.ArrowInvalid:
        conv = int if kind == pa.int64() else float
        for i, v in enumerate(t.texts(name)):
            if allow_empty and v == "":
                continue
            try:
                conv(v)
                if conv is int and v != v.strip():
                    raise ValueError
            except (ValueError, OverflowError):
                raise _bad(t, i, name, v, expected) from None
        raise DeleverInputError(f"{t.path}: field '{name}': values do not parse as {expected}") from None
    return out, empty


def _col_float(t: _StrTable, name: str, *, allow_empty: bool = False, finite: bool = True) -> np.ndarray:
    """Column as float64; empty cells become NaN when ``allow_empty`` (error otherwise)."""
    arr, empty = _cast(t, name, pa.float64(), allow_empty, "a number")
    out = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)
    if finite:
        nonfinite = ~empty & ~np.isfinite(out)
        if nonfinite.any():
            i = _first(nonfinite)
            raise _bad(t, i, name, t.cell(name, i), "a finite number")
    return out


def _col_int(t: _StrTable, name: str, *, allow_empty: bool = False, empty: int = -1) -> np.ndarray:
    """Column as int64 (decimal integers only); empty cells become ``empty`` when allowed."""
    arr, _ = _cast(t, name, pa.int64(), allow_empty, "an integer")
    if allow_empty:
        arr = pc.fill_null(arr, empty)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.int64)


def _col_choice(
    t: _StrTable, name: str, mapping: dict[str, int], expected: str, *, lower: bool = False
) -> np.ndarray:
    """Text column mapped through ``mapping`` (exact match, or case-insensitive if ``lower``) to int8."""
    col = pc.utf8_trim_whitespace(t.cols[name])
    if lower:
        col = pc.utf8_lower(col)
    out = np.zeros(t.n, dtype=np.int8)
    seen = np.zeros(t.n, dtype=bool)
    for key, val in mapping.items():
        hit = np.asarray(pc.equal(col, key).to_numpy(zero_copy_only=False), dtype=bool)
        out[hit] = val
        seen |= hit
    if not seen.all():
        i = _first(~seen)
        raise _bad(t, i, name, t.cell(name, i), expected)
    return out


def _col_bool(t: _StrTable, name: str) -> np.ndarray:
    """Column of ``True``/``False`` (any case) or ``1``/``0`` as a bool array."""
    v = _col_choice(t, name, {"true": 1, "1": 1, "false": 0, "0": 0}, "true or false", lower=True)
    return v.astype(bool)


def _iso_to_us(text: str) -> int:
    """ISO-8601 UTC time (``Z``, ``+00:00`` or no offset = UTC) -> epoch microseconds.

    Raises:
        ValueError: not ISO-8601, or an offset other than UTC.
    """
    dt = datetime.fromisoformat(text.strip())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    elif dt.utcoffset() != UTC.utcoffset(None):
        raise ValueError("offset is not UTC")
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _col_iso_us(t: _StrTable, name: str) -> np.ndarray:
    """Column of ISO-8601 UTC times as int64 epoch microseconds."""
    vals = t.texts(name)
    out = np.empty(len(vals), dtype=np.int64)
    for i, v in enumerate(vals):
        try:
            out[i] = _iso_to_us(v)
        except ValueError:
            raise _bad(t, i, name, v, "an ISO-8601 UTC time like 2023-02-28T21:10:23Z") from None
    return out


def _check_epoch_us(t: _StrTable, name: str, values: np.ndarray, present: np.ndarray | None = None) -> None:
    """Raise unless every (present) value lies in the epoch-microsecond band."""
    bad = (values < _US_MIN) | (values >= _US_MAX)
    if present is not None:
        bad &= present
    if bad.any():
        i = _first(bad)
        raise _bad(t, i, name, int(values[i]), "epoch microseconds (Tardis times are µs since 1970, UTC)")


# =========================================================================== Tardis results
@dataclass
class TardisTrades:
    """Tardis ``trades`` rows, struct of arrays (N rows, file order = ``local_timestamp`` order).

    Attributes:
        exchange: str (N,), Tardis exchange id (e.g. ``binance-futures``).
        symbol: str (N,), instrument as named by the exchange (e.g. ``BTCUSDT``).
        timestamp_us: int64 (N,), exchange time, epoch µs UTC.
        local_timestamp_us: int64 (N,), arrival time at Tardis, epoch µs UTC, non-decreasing.
        id: str (N,), trade id ("" when the exchange gives none).
        side: int8 (N,), taker side: +1 buy, -1 sell, 0 unknown.
        price: float64 (N,), quote currency per unit, > 0.
        amount: float64 (N,), exchange quantity units (base or contracts), >= 0.
        path: source file.
        notes: reported, non-fatal findings (e.g. an empty file).
    """

    exchange: np.ndarray
    symbol: np.ndarray
    timestamp_us: np.ndarray
    local_timestamp_us: np.ndarray
    id: np.ndarray
    side: np.ndarray
    price: np.ndarray
    amount: np.ndarray
    path: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.timestamp_us.shape[0])


@dataclass
class TardisLiquidations(TardisTrades):
    """Tardis ``liquidations`` rows; same arrays as :class:`TardisTrades`.

    ``side`` is the liquidation order side: +1 buy (a short position was liquidated), -1 sell (a
    long position was liquidated), 0 unknown.
    """

    @property
    def liquidated_position(self) -> np.ndarray:
        """int8 (N,): +1 a long was liquidated, -1 a short was, 0 unknown (``-side``)."""
        return (-self.side).astype(np.int8)


@dataclass
class TardisBookSnapshots:
    """Tardis ``book_snapshot_<L>`` rows, struct of arrays; level 0 is the best price.

    Attributes:
        exchange: str (N,).
        symbol: str (N,).
        timestamp_us: int64 (N,), exchange time, epoch µs UTC.
        local_timestamp_us: int64 (N,), arrival time, epoch µs UTC, non-decreasing.
        bid_price: float64 (N, L), NaN where the book had fewer than L bid levels; strictly decreasing.
        bid_amount: float64 (N, L), NaN where absent.
        ask_price: float64 (N, L), NaN where absent; strictly increasing.
        ask_amount: float64 (N, L), NaN where absent.
        levels: L (25 for ``book_snapshot_25``, 5 for ``book_snapshot_5``).
        path: source file.
        notes: reported findings (crossed books, empty file).
    """

    exchange: np.ndarray
    symbol: np.ndarray
    timestamp_us: np.ndarray
    local_timestamp_us: np.ndarray
    bid_price: np.ndarray
    bid_amount: np.ndarray
    ask_price: np.ndarray
    ask_amount: np.ndarray
    levels: int
    path: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.timestamp_us.shape[0])

    @property
    def mid_price(self) -> np.ndarray:
        """float64 (N,): (best bid + best ask) / 2, NaN when a side is empty."""
        return 0.5 * (self.bid_price[:, 0] + self.ask_price[:, 0])


@dataclass
class TardisDerivativeTicker:
    """Tardis ``derivative_ticker`` rows, struct of arrays; NaN marks a value the message lacked.

    Attributes:
        exchange: str (N,).
        symbol: str (N,).
        timestamp_us: int64 (N,), exchange time, epoch µs UTC.
        local_timestamp_us: int64 (N,), arrival time, epoch µs UTC, non-decreasing.
        funding_timestamp_us: int64 (N,), next funding time, epoch µs UTC; -1 where empty.
        funding_rate: float64 (N,), current funding rate per funding interval (fraction).
        predicted_funding_rate: float64 (N,), fraction.
        open_interest: float64 (N,), exchange units (contracts or base).
        last_price: float64 (N,), quote currency.
        index_price: float64 (N,), quote currency.
        mark_price: float64 (N,), quote currency.
        path: source file.
        notes: reported findings.
    """

    exchange: np.ndarray
    symbol: np.ndarray
    timestamp_us: np.ndarray
    local_timestamp_us: np.ndarray
    funding_timestamp_us: np.ndarray
    funding_rate: np.ndarray
    predicted_funding_rate: np.ndarray
    open_interest: np.ndarray
    last_price: np.ndarray
    index_price: np.ndarray
    mark_price: np.ndarray
    path: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.timestamp_us.shape[0])


# =========================================================================== readers
def _load(path: Path | str, expected: Sequence[str], what: str) -> tuple[_StrTable | None, Path, list[str]]:
    """Read a Tardis CSV; an empty (gzip) file means "no data that day" and returns None + a note."""
    p = Path(path)
    raw = open_bytes(p, what)
    if not raw.strip():
        return None, p, [f"{p}: empty file (Tardis publishes an empty file for a day without data); 0 rows"]
    return _read_csv_strings(p, expected, what, raw=raw), p, []


def _times(t: _StrTable) -> tuple[np.ndarray, np.ndarray]:
    ts = _col_int(t, "timestamp")
    local = _col_int(t, "local_timestamp")
    _check_epoch_us(t, "timestamp", ts)
    _check_epoch_us(t, "local_timestamp", local)
    back = np.diff(local) < 0
    if back.any():
        i = _first(back) + 1
        raise _bad(
            t,
            i,
            "local_timestamp",
            int(local[i]),
            f">= row {i} ({int(local[i - 1])}); Tardis files are ordered by local_timestamp",
        )
    return ts, local


_SIDES = {"buy": 1, "sell": -1, "unknown": 0}


def _trade_like(path: Path | str, what: str, cls: type[TardisTrades]) -> TardisTrades:
    t, p, notes = _load(path, TRADE_COLUMNS, what)
    if t is None or t.n == 0:
        if t is not None:
            notes.append(f"{p}: header only, 0 rows")
        empty_s = np.zeros(0, dtype="<U1")
        return cls(
            exchange=empty_s, symbol=empty_s, timestamp_us=np.zeros(0, np.int64),
            local_timestamp_us=np.zeros(0, np.int64), id=empty_s, side=np.zeros(0, np.int8),
            price=np.zeros(0), amount=np.zeros(0), path=str(p), notes=notes,
        )  # fmt: skip
    ts, local = _times(t)
    side = _col_choice(t, "side", _SIDES, "buy, sell or unknown", lower=True)
    price = _col_float(t, "price")
    amount = _col_float(t, "amount")
    nonpos = price <= 0
    if nonpos.any():
        i = _first(nonpos)
        raise _bad(t, i, "price", t.cell("price", i), "a price > 0")
    neg = amount < 0
    if neg.any():
        i = _first(neg)
        raise _bad(t, i, "amount", t.cell("amount", i), "an amount >= 0")
    return cls(
        exchange=_col_str(t, "exchange"),
        symbol=_col_str(t, "symbol"),
        timestamp_us=ts,
        local_timestamp_us=local,
        id=_col_str(t, "id", allow_empty=True),
        side=side,
        price=price,
        amount=amount,
        path=str(p),
        notes=notes,
    )


def read_tardis_trades(path: Path | str) -> TardisTrades:
    """Read a Tardis ``trades`` CSV (``.csv.gz`` as downloaded, or ``.csv``).

    Args:
        path: the file.

    Returns:
        :class:`TardisTrades` (0 rows, with a note, for an empty day file).

    Raises:
        DeleverInputError: see the module docstring; the message names file, row and field.
    """
    return _trade_like(path, "Tardis trades CSV", TardisTrades)


def read_tardis_liquidations(path: Path | str) -> TardisLiquidations:
    """Read a Tardis ``liquidations`` CSV; ``side`` buy = short liquidated, sell = long liquidated.

    Args:
        path: the file.

    Returns:
        :class:`TardisLiquidations`.

    Raises:
        DeleverInputError: see the module docstring.
    """
    return cast(TardisLiquidations, _trade_like(path, "Tardis liquidations CSV", TardisLiquidations))


_LEVEL_RE = re.compile(r"^asks\[(\d+)\]\.price$")


def read_tardis_book_snapshots(path: Path | str) -> TardisBookSnapshots:
    """Read a Tardis ``book_snapshot_25`` (or ``book_snapshot_5``) CSV.

    The number of levels L is taken from the header, which must be exactly
    :func:`book_snapshot_columns` (L).

    Args:
        path: the file.

    Returns:
        :class:`TardisBookSnapshots` with (N, L) level arrays.

    Raises:
        DeleverInputError: wrong header; an unparsable or non-positive price; a negative amount; a
            price without its amount or the reverse; a filled level after an empty one; bids not
            strictly decreasing or asks not strictly increasing; times not in µs; local_timestamp
            going backwards.
    """
    p = Path(path)
    what = "Tardis book_snapshot CSV"
    raw = open_bytes(p, what)
    if not raw.strip():
        empty2 = np.zeros((0, 0))
        return TardisBookSnapshots(
            exchange=np.zeros(0, "<U1"), symbol=np.zeros(0, "<U1"), timestamp_us=np.zeros(0, np.int64),
            local_timestamp_us=np.zeros(0, np.int64), bid_price=empty2, bid_amount=empty2,
            ask_price=empty2, ask_amount=empty2, levels=0, path=str(p),
            notes=[f"{p}: empty file (Tardis publishes an empty file for a day without data); 0 rows"],
        )  # fmt: skip
    first = raw.lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0].decode("utf-8", "replace")
    levels = sum(1 for c in first.strip().split(",") if _LEVEL_RE.match(c.strip()))
    expected = book_snapshot_columns(max(levels, 1))
    t = _read_csv_strings(p, expected, f"{what} ({max(levels, 1)} levels)", raw=raw)
    ts, local = _times(t) if t.n else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    L = levels
    arrs: dict[str, np.ndarray] = {}
    for side in ("bids", "asks"):
        for q in ("price", "amount"):
            m = np.empty((t.n, L), dtype=np.float64)
            for j in range(L):
                m[:, j] = _col_float(t, f"{side}[{j}].{q}", allow_empty=True)
            arrs[f"{side}.{q}"] = m
    for side in ("bids", "asks"):
        pr, am = arrs[f"{side}.price"], arrs[f"{side}.amount"]
        half = np.isnan(pr) != np.isnan(am)
        if half.any():
            i, j = np.argwhere(half)[0]
            raise _bad(t, int(i), f"{side}[{j}].price/amount", "", "both price and amount, or neither")
        nonpos = pr <= 0
        if nonpos.any():
            i, j = np.argwhere(nonpos)[0]
            raise _bad(t, int(i), f"{side}[{j}].price", pr[i, j], "a price > 0")
        neg = am < 0
        if neg.any():
            i, j = np.argwhere(neg)[0]
            raise _bad(t, int(i), f"{side}[{j}].amount", am[i, j], "an amount >= 0")
        present = ~np.isnan(pr)
        hole = ~present[:, :-1] & present[:, 1:]
        if hole.any():
            i, j = np.argwhere(hole)[0]
            raise _bad(
                t, int(i), f"{side}[{j + 1}].price", pr[i, j + 1], f"empty, because level {j} is empty"
            )
        both = present[:, :-1] & present[:, 1:]
        step = np.diff(pr, axis=1)
        wrong = both & ((step >= 0) if side == "bids" else (step <= 0))
        if wrong.any():
            i, j = np.argwhere(wrong)[0]
            order = "below" if side == "bids" else "above"
            raise _bad(
                t,
                int(i),
                f"{side}[{j + 1}].price",
                pr[i, j + 1],
                f"a price strictly {order} level {j} ({pr[i, j]})",
            )
    notes: list[str] = []
    if t.n == 0:
        notes.append(f"{p}: header only, 0 rows")
    crossed = arrs["bids.price"][:, 0] >= arrs["asks.price"][:, 0] if L else np.zeros(t.n, bool)
    if crossed.any():
        rows = np.flatnonzero(crossed) + 1
        notes.append(
            f"{p}: {rows.size} crossed snapshot(s) (best bid >= best ask), rows {', '.join(map(str, rows[:10]))}"
            + (" ..." if rows.size > 10 else "")
        )
    return TardisBookSnapshots(
        exchange=_col_str(t, "exchange"),
        symbol=_col_str(t, "symbol"),
        timestamp_us=ts,
        local_timestamp_us=local,
        bid_price=arrs["bids.price"],
        bid_amount=arrs["bids.amount"],
        ask_price=arrs["asks.price"],
        ask_amount=arrs["asks.amount"],
        levels=L,
        path=str(p),
        notes=notes,
    )


def read_tardis_derivative_ticker(path: Path | str) -> TardisDerivativeTicker:
    """Read a Tardis ``derivative_ticker`` CSV (funding, open interest, last/index/mark price).

    Args:
        path: the file.

    Returns:
        :class:`TardisDerivativeTicker`; empty cells are NaN (``funding_timestamp_us``: -1).

    Raises:
        DeleverInputError: wrong header or column count, unparsable value, times not in µs,
            local_timestamp going backwards, a non-positive price or negative open interest.
    """
    t, p, notes = _load(path, DERIVATIVE_TICKER_COLUMNS, "Tardis derivative_ticker CSV")
    if t is None:
        z, zi, zs = np.zeros(0), np.zeros(0, np.int64), np.zeros(0, "<U1")
        return TardisDerivativeTicker(zs, zs, zi, zi, zi, z, z, z, z, z, z, path=str(p), notes=notes)
    ts, local = _times(t) if t.n else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    fts = _col_int(t, "funding_timestamp", allow_empty=True, empty=-1)
    _check_epoch_us(t, "funding_timestamp", fts, present=fts != -1)
    vals = {c: _col_float(t, c, allow_empty=True) for c in DERIVATIVE_TICKER_COLUMNS[5:]}
    for c in ("last_price", "index_price", "mark_price"):
        bad = vals[c] <= 0
        if bad.any():
            i = _first(bad)
            raise _bad(t, i, c, t.cell(c, i), "a price > 0 (or empty)")
    neg = vals["open_interest"] < 0
    if neg.any():
        i = _first(neg)
        raise _bad(t, i, "open_interest", t.cell("open_interest", i), "a value >= 0 (or empty)")
    if t.n == 0:
        notes.append(f"{p}: header only, 0 rows")
    return TardisDerivativeTicker(
        exchange=_col_str(t, "exchange"),
        symbol=_col_str(t, "symbol"),
        timestamp_us=ts,
        local_timestamp_us=local,
        funding_timestamp_us=fts,
        funding_rate=vals["funding_rate"],
        predicted_funding_rate=vals["predicted_funding_rate"],
        open_interest=vals["open_interest"],
        last_price=vals["last_price"],
        index_price=vals["index_price"],
        mark_price=vals["mark_price"],
        path=str(p),
        notes=notes,
    )
