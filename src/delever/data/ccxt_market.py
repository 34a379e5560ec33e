"""Readers for ccxt unified market structures saved as JSON: trades, OHLCV, order books, liquidations.

Structures (source: the ccxt Manual, "Unified API"; ``python/ccxt/base/types.py``):

* trade (``fetchTrades``): ``{info, id, order, timestamp, datetime, symbol, type, side,
  takerOrMaker, price, amount, cost, fee: {cost, currency, rate?}}`` -- ``timestamp`` epoch ms,
  ``datetime`` its ISO-8601 form, ``side`` ``buy``/``sell`` (taker side for public trades),
  ``amount`` in base currency or contracts, ``price`` in quote currency.
* OHLCV (``fetchOHLCV``): a list ``[timestamp_ms, open, high, low, close, volume]`` per candle.
* order book (``fetchOrderBook``): ``{symbol, bids: [[price, amount], ...], asks: [...], timestamp,
  datetime, nonce}`` -- bids best (highest) first, asks best (lowest) first; an entry may carry a
  third element (order count) which is ignored.
* liquidation (``fetchLiquidations``/``fetchMyLiquidations``): ``{info, symbol, contracts,
  contractSize, price, side, baseValue, quoteValue, timestamp, datetime}`` -- ``baseValue`` = value
  in base currency, ``quoteValue`` = value in quote currency (``baseValue * price``), ``side``
  ``long``/``short`` (the liquidated position) or, from some exchanges, the liquidation order side
  ``buy``/``sell`` (buy = a short was liquidated).

A file is a JSON array of structures (an order-book file may also be a single object), or JSON
Lines (``.jsonl``/``.ndjson``: one structure per line), optionally gzipped. Numbers may be JSON
numbers or numeric strings (ccxt's string-precision mode); ``null`` is "not provided". Errors raise
:class:`~delever.errors.DeleverInputError` naming the file, the 1-based record and the field; a
``datetime`` that disagrees with ``timestamp`` is an error. Gaps in an OHLCV series are reported in
``notes``, not filled.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from delever.errors import DeleverInputError

__all__ = [
    "CcxtLiquidations",
    "CcxtOhlcv",
    "CcxtOrderBooks",
    "CcxtTrades",
    "read_ccxt_liquidations",
    "read_ccxt_ohlcv",
    "read_ccxt_order_books",
    "read_ccxt_trades",
]

_MS_MIN, _MS_MAX = 10**11, 10**14  # epoch ms band: 1973-03 .. 5138


def _load(path: Path | str, what: str, *, single_object_ok: bool = False) -> tuple[Path, list[Any]]:
    """Records of a JSON array / JSON Lines file (optionally gzipped)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DeleverInputError(f"{p}: {what} file not found") from None
    except IsADirectoryError:
        raise DeleverInputError(f"{p}: expected a {what} file, got a directory") from None
    name = p.name.lower()
    if name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DeleverInputError(f"{p}: not a valid gzip file ({exc})") from None
        name = name[:-3]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DeleverInputError(f"{p}: not UTF-8 text (expected {what} JSON)") from None
    if name.endswith((".jsonl", ".ndjson")):
        lines = text.split("\n")
        if lines and lines[-1].strip() == "":
            lines.pop()  # the final line end
        out = []
        for k, line in enumerate(lines):
            if not line.strip():
                raise DeleverInputError(f"{p}: line {k + 1}: blank line, expected one JSON {what} per line")
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DeleverInputError(f"{p}: line {k + 1}: not valid JSON ({exc.msg})") from None
        return p, out
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DeleverInputError(f"{p}: not valid JSON ({exc})") from None
    if isinstance(doc, dict) and single_object_ok:
        return p, [doc]
    if not isinstance(doc, list):
        raise DeleverInputError(f"{p}: expected a JSON array of {what} records, got {type(doc).__name__}")
    return p, doc


class _Rec:
    """Typed field access with errors naming file, 1-based record and field."""

    def __init__(self, path: Path, i: int, obj: Any, what: str) -> None:
        if not isinstance(obj, dict):
            raise DeleverInputError(
                f"{path}: record {i + 1}: expected a {what} object, got {type(obj).__name__}"
            )
        self.path, self.i, self.obj = path, i, obj

    def err(self, name: str, value: Any, expected: str) -> DeleverInputError:
        if isinstance(value, np.generic):
            value = value.item()
        return DeleverInputError(
            f"{self.path}: record {self.i + 1}: field '{name}' = {value!r:.80}, expected {expected}"
        )

    def num(self, name: str, *, required: bool = True, positive: bool = False, nonneg: bool = False) -> float:
        v = self.obj.get(name)
        if v is None:
            if required:
                raise self.err(name, v, "a number")
            return float("nan")
        x = _number(v)
        if x is None:
            raise self.err(name, v, "a number")
        if positive and not x > 0:
            raise self.err(name, v, "a value > 0")
        if nonneg and not x >= 0:
            raise self.err(name, v, "a value >= 0")
        return x

    def text(self, name: str, *, required: bool = False, choices: tuple[str, ...] | None = None) -> str:
        v = self.obj.get(name)
        if v is None:
            if required:
                raise self.err(name, v, "a string")
            return ""
        if isinstance(v, int | float) and not isinstance(v, bool):
            v = str(v)  # ids are sometimes numbers
        if not isinstance(v, str):
            raise self.err(name, v, "a string")
        if choices is not None and v not in choices:
            raise self.err(name, v, " or ".join(choices))
        return v

    def timestamp(self, *, required: bool = True) -> int:
        v = self.obj.get("timestamp")
        if v is None and not required:
            return -1
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or not _MS_MIN <= v < _MS_MAX:
            raise self.err("timestamp", v, "epoch milliseconds (an integer)")
        dt = self.obj.get("datetime")
        if dt is not None:
            try:
                parsed = datetime.fromisoformat(str(dt))
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=UTC)
                ms = round(parsed.timestamp() * 1000)
            except ValueError:
                raise self.err("datetime", dt, "an ISO-8601 time") from None
            if ms != v:
                raise self.err("datetime", dt, f"the same instant as timestamp {v}")
        return v


def _number(v: Any) -> float | None:
    """JSON number or numeric string -> finite float; None if not that."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        x = float(v)
    elif isinstance(v, str):
        try:
            x = float(v)
        except ValueError:
            return None
    else:
        return None
    return x if np.isfinite(x) else None


def _s(values: list[str]) -> np.ndarray:
    return np.asarray(values, dtype=np.str_) if values else np.zeros(0, dtype="<U1")


# =========================================================================== trades
@dataclass
class CcxtTrades:
    """ccxt trade structures, struct of arrays, N records in file order.

    Attributes:
        timestamp_ms: int64 (N,), epoch ms UTC.
        symbol: str (N,), ccxt unified symbol (``BTC/USDT:USDT``).
        id: str (N,), trade id ("" if null).
        order: str (N,), order id ("" if null).
        type: str (N,), order type (``market``/``limit``/"").
        side: int8 (N,), +1 buy, -1 sell.
        taker_or_maker: str (N,), ``taker``/``maker``/"".
        price: float64 (N,), quote currency per unit, > 0.
        amount: float64 (N,), base currency or contracts, > 0.
        cost: float64 (N,), quote currency, NaN if null.
        fee_cost: float64 (N,), NaN if no fee given.
        fee_currency: str (N,), "" if none.
        path: source file.
    """

    timestamp_ms: np.ndarray
    symbol: np.ndarray
    id: np.ndarray
    order: np.ndarray
    type: np.ndarray
    side: np.ndarray
    taker_or_maker: np.ndarray
    price: np.ndarray
    amount: np.ndarray
    cost: np.ndarray
    fee_cost: np.ndarray
    fee_currency: np.ndarray
    path: str

    def __len__(self) -> int:
        return int(self.timestamp_ms.shape[0])


def read_ccxt_trades(path: Path | str) -> CcxtTrades:
    """Read ccxt trade structures (``fetchTrades``/``fetchMyTrades`` output saved as JSON).

    Raises:
        DeleverInputError: not an array/JSON Lines of objects; timestamp missing or not epoch ms;
            ``datetime`` disagreeing with it; side not buy/sell; price or amount missing or <= 0;
            a non-numeric cost or fee.
    """
    p, recs = _load(path, "ccxt trade")
    cols: dict[str, list] = {
        k: [] for k in ("ts", "sym", "id", "ord", "typ", "side", "tom", "px", "amt", "cost", "fc", "fcur")
    }
    for i, obj in enumerate(recs):
        r = _Rec(p, i, obj, "trade")
        cols["ts"].append(r.timestamp())
        cols["sym"].append(r.text("symbol", required=True))
        cols["id"].append(r.text("id"))
        cols["ord"].append(r.text("order"))
        cols["typ"].append(r.text("type"))
        cols["side"].append(1 if r.text("side", required=True, choices=("buy", "sell")) == "buy" else -1)
        cols["tom"].append(r.text("takerOrMaker"))
        cols["px"].append(r.num("price", positive=True))
        cols["amt"].append(r.num("amount", positive=True))
        cols["cost"].append(r.num("cost", required=False))
        fee = obj.get("fee")
        if fee is None:
            cols["fc"].append(float("nan"))
            cols["fcur"].append("")
        else:
            fr = _Rec(p, i, fee, "fee")
            cols["fc"].append(fr.num("cost", required=False))
            cols["fcur"].append(fr.text("currency"))
    return CcxtTrades(
        timestamp_ms=np.asarray(cols["ts"], dtype=np.int64),
        symbol=_s(cols["sym"]),
        id=_s(cols["id"]),
        order=_s(cols["ord"]),
        type=_s(cols["typ"]),
        side=np.asarray(cols["side"], dtype=np.int8),
        taker_or_maker=_s(cols["tom"]),
        price=np.asarray(cols["px"], dtype=np.float64),
        amount=np.asarray(cols["amt"], dtype=np.float64),
        cost=np.asarray(cols["cost"], dtype=np.float64),
        fee_cost=np.asarray(cols["fc"], dtype=np.float64),
        fee_currency=_s(cols["fcur"]),
        path=str(p),
    )


# =========================================================================== OHLCV
@dataclass
class CcxtOhlcv:
    """ccxt OHLCV candles, struct of arrays, T candles strictly increasing in time.

    Attributes:
        timestamp_ms: int64 (T,), candle open time, epoch ms UTC.
        open, high, low, close: float64 (T,), quote currency.
        volume: float64 (T,), base units, NaN where the exchange returned null.
        interval_ms: smallest step between candles (the candle length if there are no gaps); 0 if T = 1.
        path: source file.
        notes: reported gaps (missing candles are not filled).
    """

    timestamp_ms: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    interval_ms: int
    path: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.timestamp_ms.shape[0])


def read_ccxt_ohlcv(path: Path | str, interval_ms: int | None = None) -> CcxtOhlcv:
    """Read a ccxt ``fetchOHLCV`` result: a JSON array of ``[ts, o, h, l, c, v]``.

    Args:
        path: the file.
        interval_ms: the candle length; default the smallest step found. Every step must be a
            multiple of it; longer steps are gaps (reported in ``notes``).

    Raises:
        DeleverInputError: an entry that is not a list of 6; timestamp not epoch ms; times not
            strictly increasing or off the interval grid; low > open/close > high; non-positive
            price; negative volume; an empty file.
    """
    p, recs = _load(path, "ccxt OHLCV")
    if not recs:
        raise DeleverInputError(
            f"{p}: no candles (expected a JSON array of [timestamp, open, high, low, close, volume])"
        )
    ts = np.empty(len(recs), dtype=np.int64)
    vals = np.empty((len(recs), 5), dtype=np.float64)
    names = ("open", "high", "low", "close", "volume")
    for i, c in enumerate(recs):
        if not isinstance(c, list) or len(c) != 6:
            raise DeleverInputError(
                f"{p}: record {i + 1}: expected [timestamp, open, high, low, close, volume], got {c!r:.80}"
            )
        t = c[0]
        if isinstance(t, float) and t.is_integer():
            t = int(t)
        if isinstance(t, bool) or not isinstance(t, int) or not _MS_MIN <= t < _MS_MAX:
            raise DeleverInputError(
                f"{p}: record {i + 1}: field 'timestamp' = {c[0]!r}, expected epoch milliseconds"
            )
        ts[i] = t
        for k, name in enumerate(names):
            x = _number(c[k + 1]) if c[k + 1] is not None or name != "volume" else float("nan")
            if x is None:
                raise DeleverInputError(
                    f"{p}: record {i + 1}: field '{name}' = {c[k + 1]!r}, expected a number"
                )
            if name != "volume" and x <= 0:
                raise DeleverInputError(f"{p}: record {i + 1}: field '{name}' = {x}, expected a price > 0")
            if name == "volume" and x < 0:
                raise DeleverInputError(f"{p}: record {i + 1}: field 'volume' = {x}, expected >= 0")
            vals[i, k] = x
    o, h, lo, cl, v = vals.T
    bad = (lo > np.minimum(o, cl)) | (h < np.maximum(o, cl))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DeleverInputError(
            f"{p}: record {i + 1}: expected low <= open, close <= high, got {recs[i][1:5]}"
        )
    step = np.diff(ts)
    back = step <= 0
    if back.any():
        i = int(np.flatnonzero(back)[0]) + 1
        raise DeleverInputError(
            f"{p}: record {i + 1}: field 'timestamp' = {int(ts[i])}, expected > record {i} ({int(ts[i - 1])})"
        )
    iv = int(interval_ms) if interval_ms is not None else (int(step.min()) if step.size else 0)
    notes: list[str] = []
    if iv > 0 and step.size:
        off = step % iv != 0
        if off.any():
            i = int(np.flatnonzero(off)[0]) + 1
            raise DeleverInputError(
                f"{p}: record {i + 1}: step {int(step[i - 1])} ms is not a multiple of the {iv} ms interval"
            )
        gaps = np.flatnonzero(step > iv)
        if gaps.size:
            missing = int((step[gaps] // iv - 1).sum())
            first = int(gaps[0])
            notes.append(
                f"{p}: {gaps.size} gap(s), {missing} candle(s) missing, first after record {first + 1} "
                f"(timestamp {int(ts[first])}); gaps not filled"
            )
    return CcxtOhlcv(
        timestamp_ms=ts, open=o.copy(), high=h.copy(), low=lo.copy(), close=cl.copy(), volume=v.copy(),
        interval_ms=iv, path=str(p), notes=notes,
    )  # fmt: skip


# =========================================================================== order books
@dataclass
class CcxtOrderBooks:
    """ccxt order-book snapshots, K books padded to L levels (L = deepest side of any book).

    Attributes:
        timestamp_ms: int64 (K,), epoch ms UTC; -1 where the exchange gave none.
        nonce: int64 (K,), exchange sequence number; -1 where none.
        symbol: str (K,).
        bid_price: float64 (K, L), best first, strictly decreasing; NaN beyond the book's depth.
        bid_amount: float64 (K, L), base units (or contracts), > 0; NaN beyond depth.
        ask_price: float64 (K, L), best first, strictly increasing; NaN beyond depth.
        ask_amount: float64 (K, L).
        bid_levels: int64 (K,), bid levels present.
        ask_levels: int64 (K,), ask levels present.
        path: source file.
        notes: reported findings (missing timestamps, crossed books).
    """

    timestamp_ms: np.ndarray
    nonce: np.ndarray
    symbol: np.ndarray
    bid_price: np.ndarray
    bid_amount: np.ndarray
    ask_price: np.ndarray
    ask_amount: np.ndarray
    bid_levels: np.ndarray
    ask_levels: np.ndarray
    path: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.timestamp_ms.shape[0])


def read_ccxt_order_books(path: Path | str) -> CcxtOrderBooks:
    """Read ccxt order books: one ``fetchOrderBook`` object, an array of them, or JSON Lines.

    Raises:
        DeleverInputError: a missing ``bids``/``asks`` list; an entry that is not ``[price, amount]``
            (a third element is allowed); non-positive price or amount; bids not strictly decreasing
            or asks not strictly increasing; a timestamp that is not epoch ms or disagrees with
            ``datetime``; a non-integer nonce.
    """
    p, recs = _load(path, "ccxt order book", single_object_ok=True)
    if not recs:
        raise DeleverInputError(f"{p}: no order books")
    books: list[tuple[np.ndarray, np.ndarray]] = []
    ts, nonce, sym = [], [], []
    for i, obj in enumerate(recs):
        r = _Rec(p, i, obj, "order book")
        ts.append(r.timestamp(required=False))
        nv = obj.get("nonce")
        if nv is not None and (isinstance(nv, bool) or not isinstance(nv, int)):
            raise r.err("nonce", nv, "an integer or null")
        nonce.append(-1 if nv is None else nv)
        sym.append(r.text("symbol"))
        sides = []
        for side in ("bids", "asks"):
            lv = obj.get(side)
            if not isinstance(lv, list):
                raise r.err(side, lv, "a list of [price, amount]")
            arr = np.empty((len(lv), 2), dtype=np.float64)
            for k, e in enumerate(lv):
                if not isinstance(e, list) or len(e) not in (2, 3):
                    raise r.err(f"{side}[{k}]", e, "[price, amount]")
                px, am = _number(e[0]), _number(e[1])
                if px is None or px <= 0:
                    raise r.err(f"{side}[{k}][0]", e[0], "a price > 0")
                if am is None or am <= 0:
                    raise r.err(f"{side}[{k}][1]", e[1], "an amount > 0")
                arr[k] = (px, am)
            step = np.diff(arr[:, 0])
            wrong = step >= 0 if side == "bids" else step <= 0
            if wrong.any():
                k = int(np.flatnonzero(wrong)[0]) + 1
                order = "below" if side == "bids" else "above"
                raise r.err(
                    f"{side}[{k}][0]",
                    arr[k, 0],
                    f"a price strictly {order} {side}[{k - 1}] ({arr[k - 1, 0]})",
                )
            sides.append(arr)
        books.append((sides[0], sides[1]))
    L = max(max(b.shape[0], a.shape[0]) for b, a in books)
    K = len(books)
    out = {k: np.full((K, L), np.nan) for k in ("bp", "ba", "ap", "aa")}
    for i, (b, a) in enumerate(books):
        out["bp"][i, : len(b)], out["ba"][i, : len(b)] = b[:, 0], b[:, 1]
        out["ap"][i, : len(a)], out["aa"][i, : len(a)] = a[:, 0], a[:, 1]
    notes = []
    no_ts = [i + 1 for i, t in enumerate(ts) if t == -1]
    if no_ts:
        notes.append(
            f"{p}: {len(no_ts)} book(s) without a timestamp (records {', '.join(map(str, no_ts[:10]))}); timestamp_ms = -1"
        )
    if L:
        crossed = np.flatnonzero(out["bp"][:, 0] >= out["ap"][:, 0]) + 1
        if crossed.size:
            notes.append(
                f"{p}: {crossed.size} crossed book(s) (best bid >= best ask), records {', '.join(map(str, crossed[:10]))}"
            )
    return CcxtOrderBooks(
        timestamp_ms=np.asarray(ts, dtype=np.int64),
        nonce=np.asarray(nonce, dtype=np.int64),
        symbol=_s(sym),
        bid_price=out["bp"],
        bid_amount=out["ba"],
        ask_price=out["ap"],
        ask_amount=out["aa"],
        bid_levels=np.asarray([len(b) for b, _ in books], dtype=np.int64),
        ask_levels=np.asarray([len(a) for _, a in books], dtype=np.int64),
        path=str(p),
        notes=notes,
    )


# =========================================================================== liquidations
_LIQ_SIDE = {"long": 1, "sell": 1, "short": -1, "buy": -1}


@dataclass
class CcxtLiquidations:
    """ccxt liquidation structures, struct of arrays, N records in file order.

    Attributes:
        timestamp_ms: int64 (N,), epoch ms UTC.
        symbol: str (N,), unified symbol.
        side: str (N,), as given (``long``/``short``/``buy``/``sell``/"" when null).
        liquidated_position: int8 (N,), +1 a long was liquidated (``long`` or order side ``sell``),
            -1 a short (``short`` or ``buy``), 0 unknown.
        price: float64 (N,), average liquidation price, quote currency, > 0.
        contracts: float64 (N,), NaN if null.
        contract_size: float64 (N,), base units per contract, NaN if null.
        base_value: float64 (N,), base currency, NaN if null.
        quote_value: float64 (N,), quote currency, NaN if null; ``base_value * price`` where both given.
        path: source file.
        notes: reported findings (unknown sides).
    """

    timestamp_ms: np.ndarray
    symbol: np.ndarray
    side: np.ndarray
    liquidated_position: np.ndarray
    price: np.ndarray
    contracts: np.ndarray
    contract_size: np.ndarray
    base_value: np.ndarray
    quote_value: np.ndarray
    path: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.timestamp_ms.shape[0])


def read_ccxt_liquidations(path: Path | str) -> CcxtLiquidations:
    """Read ccxt liquidation structures (``fetchLiquidations`` output saved as JSON).

    Raises:
        DeleverInputError: timestamp missing/not epoch ms or disagreeing with ``datetime``; price
            missing or <= 0; negative contracts/sizes/values; a side other than long/short/buy/sell;
            ``quoteValue`` differing from ``baseValue * price`` by more than 1e-6 relative.
    """
    p, recs = _load(path, "ccxt liquidation")
    cols: dict[str, list] = {k: [] for k in ("ts", "sym", "side", "px", "n", "cs", "bv", "qv")}
    for i, obj in enumerate(recs):
        r = _Rec(p, i, obj, "liquidation")
        cols["ts"].append(r.timestamp())
        cols["sym"].append(r.text("symbol", required=True))
        cols["side"].append(r.text("side", choices=tuple(_LIQ_SIDE)) if obj.get("side") is not None else "")
        px = r.num("price", positive=True)
        cols["px"].append(px)
        cols["n"].append(r.num("contracts", required=False, nonneg=True))
        cols["cs"].append(r.num("contractSize", required=False, positive=True))
        bv = r.num("baseValue", required=False, nonneg=True)
        qv = r.num("quoteValue", required=False, nonneg=True)
        if np.isfinite(bv) and np.isfinite(qv) and abs(bv * px - qv) > 1e-6 * max(abs(qv), 1e-12):
            raise r.err("quoteValue", obj.get("quoteValue"), f"baseValue * price = {bv * px}")
        cols["bv"].append(bv)
        cols["qv"].append(qv)
    side = _s(cols["side"])
    unknown = [i + 1 for i, s in enumerate(cols["side"]) if s == ""]
    notes = (
        [
            f"{p}: {len(unknown)} record(s) without side (records {', '.join(map(str, unknown[:10]))}); liquidated_position = 0"
        ]
        if unknown
        else []
    )
    return CcxtLiquidations(
        timestamp_ms=np.asarray(cols["ts"], dtype=np.int64),
        symbol=_s(cols["sym"]),
        side=side,
        liquidated_position=np.asarray([_LIQ_SIDE.get(s, 0) for s in cols["side"]], dtype=np.int8),
        price=np.asarray(cols["px"], dtype=np.float64),
        contracts=np.asarray(cols["n"], dtype=np.float64),
        contract_size=np.asarray(cols["cs"], dtype=np.float64),
        base_value=np.asarray(cols["bv"], dtype=np.float64),
        quote_value=np.asarray(cols["qv"], dtype=np.float64),
        path=str(p),
        notes=notes,
    )
