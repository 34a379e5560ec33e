"""Reader for 1-minute bars built from real trades (``shared/data/oct10-2025-coins`` group B).

Two headers (``oct10-2025-coins/PROVENANCE.md``, group B: per minute, O = first trade price, H/L = max/min,
C = last, from Tardis.dev normalized trade files):

* spot files: ``open_time, open, high, low, close, volume, close_time, quote_volume, count,
  taker_buy_volume, taker_sell_volume, first_trade_ts_us, last_trade_ts_us`` (volumes in coin units);
* Binance COIN-M perp files: ``open_time, open, high, low, close, volume_contracts, close_time, count,
  taker_buy_contracts, taker_sell_contracts, first_trade_ts_us, last_trade_ts_us`` (volumes in contracts).

Every minute of the window has a row; a minute without trades has ``count`` 0 and empty prices. Such a
minute has no price: it is **dropped, not filled** (and reported). COIN-M contract volumes are not
converted to coin units (10 USD per altcoin contract is stated by Binance but not verified per symbol),
so such bars carry no taker volume. Any other file goes to :func:`delever.data.klines.read_klines`.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from delever.data.klines import Klines, read_klines
from delever.errors import DeleverInputError

__all__ = [
    "MINUTE_MS",
    "TRADE_BAR_COINM_COLUMNS",
    "TRADE_BAR_SPOT_COLUMNS",
    "read_bars",
    "read_bars_with_empty",
]

TRADE_BAR_SPOT_COLUMNS: tuple[str, ...] = (
    "open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "count",
    "taker_buy_volume", "taker_sell_volume", "first_trade_ts_us", "last_trade_ts_us",
)
"""Header of the spot 1-minute bars built from trades (``oct10-2025-coins`` group B)."""

TRADE_BAR_COINM_COLUMNS: tuple[str, ...] = (
    "open_time", "open", "high", "low", "close", "volume_contracts", "close_time", "count",
    "taker_buy_contracts", "taker_sell_contracts", "first_trade_ts_us", "last_trade_ts_us",
)
"""Header of the COIN-M perp 1-minute bars built from trades (volumes in contracts)."""

MINUTE_MS = 60_000


def _trade_bars(
    path: Path, header: list[str], rows: list[list[str]]
) -> tuple[Klines, list[str], list[tuple[int, int]]]:
    """Validate group-B trade-built 1-minute bars; the minutes with trades, notes, the empty minutes."""
    coinm = tuple(header) == TRADE_BAR_COINM_COLUMNS
    cols = TRADE_BAR_COINM_COLUMNS if coinm else TRADE_BAR_SPOT_COLUMNS
    col = {name: i for i, name in enumerate(cols)}

    def bad(r: int, name: str, value: object, expected: str) -> DeleverInputError:
        return DeleverInputError(f"{path}: row {r}: field '{name}' = {value!r}, expected {expected}")

    def num(r: int, row: list[str], name: str, kind=float) -> float:
        text = row[col[name]].strip()
        try:
            v = kind(text)
        except ValueError:
            raise bad(r, name, text, "a number") from None
        if not math.isfinite(v):
            raise bad(r, name, text, "a finite number")
        return v

    if not rows:
        raise DeleverInputError(f"{path}: no data rows")
    vol_names = (("volume_contracts", "taker_buy_contracts", "taker_sell_contracts") if coinm
                 else ("volume", "taker_buy_volume", "taker_sell_volume"))
    keep: dict[str, list[float]] = {k: [] for k in ("t", "o", "h", "l", "c", "v", "q", "b")}
    empty: list[tuple[int, int]] = []  # (1-based data row, open_time ms) of minutes without trades
    prev_t: int | None = None
    for r, row in enumerate(rows, start=1):
        if len(row) != len(cols):
            raise DeleverInputError(f"{path}: row {r}: expected {len(cols)} columns, got {len(row)}")
        t = int(num(r, row, "open_time", int))
        if prev_t is not None and t != prev_t + MINUTE_MS:
            raise bad(r, "open_time", t, f"{prev_t + MINUTE_MS} (consecutive minutes; a minute without trades "
                                         "is a row with count 0)")
        prev_t = t
        if int(num(r, row, "close_time", int)) != t + MINUTE_MS - 1:
            raise bad(r, "close_time", row[col["close_time"]], f"{t + MINUTE_MS - 1} (open_time + 59999)")
        count = int(num(r, row, "count", int))
        ohlc_text = [row[col[k]].strip() for k in ("open", "high", "low", "close")]
        if count == 0:
            if any(ohlc_text):
                raise bad(r, "open", ohlc_text[0], "empty prices in a minute with count 0")
            empty.append((r, t))
            continue
        if count < 0:
            raise bad(r, "count", count, "a trade count >= 0")
        o, h, lo, c = (num(r, row, k) for k in ("open", "high", "low", "close"))
        if min(o, h, lo, c) <= 0:
            raise bad(r, "low", lo, "prices > 0")
        if not (lo <= min(o, c) and max(o, c) <= h):
            raise bad(r, "high", h, f"low <= open, close <= high (open {o}, low {lo}, close {c})")
        v, buy, sell = (num(r, row, k) for k in vol_names)
        if min(v, buy, sell) < 0:
            raise bad(r, vol_names[0], v, "volumes >= 0")
        if abs(buy + sell - v) > 1e-9 * max(1.0, v):
            raise bad(r, vol_names[0], v, f"taker buy + taker sell = {buy + sell}")
        keep["t"].append(t)
        for k, val in zip("ohlc", (o, h, lo, c), strict=True):
            keep[k].append(val)
        keep["v"].append(0.0 if coinm else v)
        keep["q"].append(0.0 if coinm else num(r, row, "quote_volume"))
        keep["b"].append(0.0 if coinm else buy)
    if not keep["t"]:
        raise DeleverInputError(f"{path}: every minute is empty (no trades)")
    notes = []
    if empty:
        notes.append(f"{path.name}: {len(empty)} minute(s) without trades have no price and are skipped, not filled")
    if coinm:
        notes.append(f"{path.name}: COIN-M volumes are in contracts and are not converted to coin units "
                     "(no taker volume on this path)")
    kl = Klines(
        open_time_ms=np.asarray(keep["t"], dtype=np.int64), open=np.asarray(keep["o"]), high=np.asarray(keep["h"]),
        low=np.asarray(keep["l"]), close=np.asarray(keep["c"]), volume=np.asarray(keep["v"]),
        quote_volume=np.asarray(keep["q"]), taker_buy_volume=np.asarray(keep["b"]), interval_ms=MINUTE_MS,
        path=str(path),
    )
    return kl, notes, empty


def read_bars(path: Path | str) -> tuple[Klines, list[str]]:
    """Read a price history: Binance Vision klines, or 1-minute bars built from trades.

    A plain ``.csv`` whose header is :data:`TRADE_BAR_SPOT_COLUMNS` or :data:`TRADE_BAR_COINM_COLUMNS`
    is read as trade-built bars (validated: consecutive minutes, ``close_time = open_time + 59999``,
    empty prices exactly where ``count`` is 0, ``low <= open, close <= high``, taker buy + sell =
    total); minutes without trades are dropped (not filled). Anything else goes to
    :func:`delever.data.klines.read_klines`.

    Returns:
        ``(bars, notes)``: :class:`~delever.data.klines.Klines` (only minutes with a price; the open
        times may then skip minutes) and remarks for the run record.

    Raises:
        DeleverInputError: unreadable file or invalid row (file, 1-based data row and field named).
    """
    bars, notes, _ = read_bars_with_empty(path)
    return bars, notes


def read_bars_with_empty(path: Path | str) -> tuple[Klines, list[str], list[tuple[int, int]]]:
    """:func:`read_bars`, also naming the minutes without trades that were dropped.

    Returns:
        ``(bars, notes, empty)``: as :func:`read_bars`, and ``empty`` the ``(1-based data row, open_time
        ms)`` of each minute without trades (always empty for Binance klines, whose reader refuses gaps).

    Raises:
        DeleverInputError: as :func:`read_bars`.
    """
    p = Path(path)
    if p.suffix.lower() == ".csv" and p.is_file():
        with p.open(newline="", encoding="utf-8", errors="replace") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            if tuple(header) in (TRADE_BAR_SPOT_COLUMNS, TRADE_BAR_COINM_COLUMNS):
                return _trade_bars(p, header, [row for row in reader if row])
    return read_klines(p), [], []
