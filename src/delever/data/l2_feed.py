"""Rebuild an L2 order book from an hftbacktest-style feed capture and turn it into a depth curve.

Capture format (``nkaz001/hftbacktest`` collector; ``shared/data/orderbook-l2-hftbacktest/PROVENANCE.md``):
gzip text (plain text accepted too), one message per line, ``<local_receive_ts_ns> <raw JSON>``.
Local receive timestamps must not decrease. Recognized messages:

* Binance USD-M / COIN-M futures REST depth snapshot: ``{"lastUpdateId", "bids", "asks", ...}``
  (COIN-M snapshots also carry ``"pair"``).
* Binance diff-depth stream: ``{"stream": "<sym>@depth...", "data": {"e": "depthUpdate", "U", "u",
  "pu", "b", "a", ...}}`` (COIN-M diffs carry ``"ps"``). Levels are ``[price, qty]`` strings, the
  quantity absolute; ``0`` deletes the level.
* Hyperliquid ``{"channel": "l2Book", "data": {"coin", "time", "levels": [[bids], [asks]]}}`` with
  levels ``{"px", "sz", "n"}``: every message is a full (top-20) snapshot.
* Skipped without parsing: Binance ``@trade``, ``@aggTrade``, ``@bookTicker``, ``@markPrice``,
  ``@forceOrder`` streams and Hyperliquid ``trades`` / ``subscriptionResponse`` channels. Any other
  line is an error.

Binance rebuild rules, from "How to manage a local order book correctly" (developers.binance.com,
USDⓈ-M and COIN-M futures, WebSocket market streams): buffer diffs; take the REST snapshot; drop
diffs with ``u < lastUpdateId``; the first applied diff must have ``U <= lastUpdateId <= u`` (the spot
rule ``U <= lastUpdateId + 1 <= u`` is accepted as well: both mean no update is missing); each
later diff must have ``pu`` equal to the previous diff's ``u``. A break in that chain is a gap: it is
reported in the notes and the book is out of sync until a later snapshot in the file resyncs it;
asking for a time inside an out-of-sync stretch raises.

Quantities: USD-M and Hyperliquid sizes are base units (BTC). COIN-M sizes are contracts of
``contract_size_usd`` USD each (100 for BTCUSD_PERP, Binance COIN-M contract specifications), so the
base quantity of a level is ``contracts * contract_size_usd / price``.

Coverage: a Binance REST snapshot lists only the best 1000 levels per side. Levels beyond the
snapshot's deepest bid/ask are known only if a diff touched them after the snapshot, so cumulative
depth beyond that price is a lower bound; the curve's notes say where that starts.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from delever.data.book_depth import parse_utc_ns
from delever.errors import DeleverInputError
from delever.market.depth import DepthCurve, SideCurve

__all__ = ["L2Book", "rebuild_l2_book", "depth_curve_from_l2", "format_utc_ns"]

_SKIP_RE = re.compile(rb'@(?:trade|aggTrade|bookTicker|markPrice|forceOrder)\b|"channel": ?"(?:trades|subscriptionResponse)"')


def format_utc_ns(ns: int) -> str:
    """Epoch ns -> ``'YYYY-MM-DD HH:MM:SS.ffffff'`` UTC (microseconds)."""
    ns = int(ns)
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S") + \
        f".{(ns % 1_000_000_000) // 1000:06d}"


@dataclass(frozen=True, eq=False)
class L2Book:
    """A rebuilt order book at one instant, struct of arrays, quantities in base units.

    Attributes:
        venue: ``"binance-usdm"``, ``"binance-coinm"`` or ``"hyperliquid"``.
        time_ns: Local receive time (epoch ns UTC) of the last message included.
        bid_px: float64 ``(B,)`` bid prices, strictly decreasing, USD per base unit.
        bid_qty: float64 ``(B,)`` base quantity at each bid price (> 0).
        ask_px: float64 ``(A,)`` ask prices, strictly increasing.
        ask_qty: float64 ``(A,)`` base quantity at each ask price (> 0).
        coverage_bid_px: Deepest bid of the REST snapshot the book was built from (Binance), below
            which only diff-updated levels are known; None for full-snapshot feeds (Hyperliquid).
        coverage_ask_px: Same for asks (highest snapshot ask).
        notes: Gaps, resyncs and caveats met while rebuilding.
        stats: Counts (lines read, diffs applied / dropped, snapshots used), the line of the
            snapshot used and, for Binance, ``last_update_id`` (``u`` of the last diff applied).
        symbol: The instrument the messages name (Binance ``s``, Hyperliquid ``coin``), upper case; None if
            none does.
    """

    venue: str
    time_ns: int
    bid_px: np.ndarray
    bid_qty: np.ndarray
    ask_px: np.ndarray
    ask_qty: np.ndarray
    coverage_bid_px: float | None
    coverage_ask_px: float | None
    notes: tuple[str, ...] = ()
    stats: dict = field(default_factory=dict)
    symbol: str | None = None

    @property
    def mid(self) -> float:
        """``(best bid + best ask) / 2``, USD."""
        return (float(self.bid_px[0]) + float(self.ask_px[0])) / 2.0

    def notional_within_usd(self, frac: float) -> tuple[float, float]:
        """Resting notional (sum of price * base qty, USD) within ``frac`` of mid: ``(bid, ask)``.

        Bids with price ``>= mid * (1 - frac)`` and asks with price ``<= mid * (1 + frac)``.
        """
        m = self.mid
        b = self.bid_px >= m * (1.0 - frac)
        a = self.ask_px <= m * (1.0 + frac)
        return float(np.sum(self.bid_px[b] * self.bid_qty[b])), float(np.sum(self.ask_px[a] * self.ask_qty[a]))


# --------------------------------------------------------------------------- parsing helpers
class _Lines:
    """Iterate ``(line_no, ts_ns, payload)`` of a capture, with errors naming file and line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "rb") as fh:
            magic = fh.read(2)
        self.gz = magic == b"\x1f\x8b"
        self.line_no = 0

    def __iter__(self):
        opener = gzip.open if self.gz else open
        prev = -1
        try:
            with opener(self.path, "rb") as fh:
                for line in fh:
                    self.line_no += 1
                    ts_txt, sep, payload = line.partition(b" ")
                    if not sep or not ts_txt.isdigit():
                        if not line.strip():
                            raise self.error("empty line, expected '<local_receive_ts_ns> <json>'")
                        raise self.error(f"expected '<local_receive_ts_ns> <json>', got {line[:60].decode(errors='replace')!r}")
                    ts = int(ts_txt)
                    if ts < prev:
                        raise self.error(f"local receive timestamp {ts} is before the previous line's {prev}")
                    prev = ts
                    yield self.line_no, ts, payload
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise DeleverInputError(
                f"{self.path}: line {self.line_no + 1}: cannot read past here, file truncated or corrupt "
                f"({type(exc).__name__}: {exc})"
            ) from None

    def error(self, msg: str, line_no: int | None = None) -> DeleverInputError:
        return DeleverInputError(f"{self.path}: line {line_no or self.line_no}: {msg}")


def _json(lines: _Lines, line_no: int, payload: bytes) -> dict:
    try:
        obj = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise lines.error(f"invalid JSON ({exc})", line_no) from None
    if not isinstance(obj, dict):
        raise lines.error("expected a JSON object", line_no)
    return obj


def _levels(lines: _Lines, line_no: int, raw, what: str) -> list[tuple[float, float]]:
    """``[[price, qty], ...]`` strings -> float pairs; price > 0, qty >= 0, all finite."""
    if not isinstance(raw, list):
        raise lines.error(f"{what}: expected a list of [price, qty] levels", line_no)
    try:
        out = [(float(px), float(qty)) for px, qty in raw]
    except (TypeError, ValueError):
        out = None
    if out:
        px_all, qty_all = zip(*out, strict=True)
        if math.isfinite(sum(px_all) + sum(qty_all)) and min(px_all) > 0 and min(qty_all) >= 0:
            return out
    elif out is not None:
        return out
    for lvl in raw:  # slow path: name the offending level
        try:
            px, qty = float(lvl[0]), float(lvl[1])
            ok = len(lvl) == 2 and math.isfinite(px) and px > 0 and math.isfinite(qty) and qty >= 0
        except (TypeError, ValueError, IndexError, KeyError):
            ok = False
        if not ok:
            raise lines.error(f"{what}: level {lvl!r}, expected [price > 0, qty >= 0] finite numbers", line_no)
    raise lines.error(f"{what}: levels not understood", line_no)  # pragma: no cover - defensive


def _int_field(lines: _Lines, line_no: int, obj: dict, key: str) -> int:
    val = obj.get(key)
    if not isinstance(val, int) or isinstance(val, bool):
        raise lines.error(f"field {key!r} is {val!r}, expected an integer update id", line_no)
    return val


# --------------------------------------------------------------------------- rebuild
def rebuild_l2_book(path: str | Path, at: str | None = None, contract_size_usd: float | None = None) -> L2Book:
    """Rebuild the book as of ``at`` (local receive time) from a capture.

    Args:
        path: Capture file (gzip or plain text), see the module docstring.
        at: UTC ``'YYYY-MM-DD HH:MM:SS[.fff]'``, compared with the local receive timestamps; None for
            the end of the capture. Messages received at or before ``at`` are applied.
        contract_size_usd: Required for a Binance COIN-M capture (USD per contract), refused otherwise.

    Returns:
        L2Book with quantities in base units.

    Raises:
        DeleverInputError: missing or unreadable file, malformed line (named by line), unknown message,
            no snapshot at or before ``at``, ``at`` inside an out-of-sync stretch after a gap, an empty
            or crossed book (best bid >= best ask), COIN-M without ``contract_size_usd`` or a contract
            size given for another venue.
    """
    path = Path(path)
    if not path.is_file():
        raise DeleverInputError(f"{path}: L2 capture file not found")
    at_ns = parse_utc_ns(at, "market.depth.at") if at is not None else None
    lines = _Lines(path)

    venue: str | None = None
    coin_m = False
    bids: dict[float, float] | None = None  # None: not synced
    asks: dict[float, float] = {}
    pending: list[tuple[int, int, bytes]] = []  # diffs received while not synced (raw, parsed lazily)
    snap_id = 0
    snap_line = 0
    cover_bid = cover_ask = None
    need_first = False
    last_u = 0
    notes: list[str] = []
    gap_txt: str | None = None
    stats = {"lines": 0, "diffs_applied": 0, "diffs_dropped_before_snapshot": 0, "snapshots_used": 0}
    hl_last: tuple[int, int, bytes] | None = None
    last_ts = None
    first_ts = None

    def set_venue(v: str, line_no: int) -> None:
        nonlocal venue
        if venue is None:
            venue = v
        elif venue != v and not {venue, v} <= {"binance-usdm", "binance-coinm"}:
            raise lines.error(f"{v} message in a {venue} capture (one venue per file expected)", line_no)

    symbols: dict[str, int] = {}   # symbol -> first line naming it

    def note_symbol(sym: object, line_no: int) -> None:
        if isinstance(sym, str) and sym:
            symbols.setdefault(sym.upper(), line_no)
            if len(symbols) > 1:
                a, b = list(symbols)[:2]
                raise lines.error(f"capture mixes symbols {a} (line {symbols[a]}) and {b}: one instrument per file "
                                  "expected", line_no)

    def apply_diff(line_no: int, ts: int, payload: bytes) -> None:
        """Apply one diff while synced, following Binance's sequencing rules."""
        nonlocal need_first, last_u, bids, gap_txt, coin_m
        obj = _json(lines, line_no, payload)
        data = obj.get("data", obj)
        note_symbol(data.get("s") if isinstance(data, dict) else None, line_no)
        if "ps" in data:
            coin_m = True
        big_u = _int_field(lines, line_no, data, "U")
        u = _int_field(lines, line_no, data, "u")
        pu = _int_field(lines, line_no, data, "pu")
        if need_first:
            if u < snap_id:
                stats["diffs_dropped_before_snapshot"] += 1
                return
            if big_u > snap_id + 1:
                gap_txt = (f"line {line_no}: first diff after the snapshot (line {snap_line}, lastUpdateId {snap_id}) "
                           f"starts at U={big_u} > lastUpdateId+1: updates missing")
                notes.append(f"gap at {gap_txt}")
                bids = None
                return
            need_first = False
        elif pu != last_u:
            gap_txt = f"line {line_no}: diff pu={pu} does not chain to the previous diff's u={last_u}"
            notes.append(f"gap at {gap_txt}; book out of sync until a later snapshot")
            bids = None
            return
        for px, qty in _levels(lines, line_no, data.get("b"), "b"):
            if qty == 0:
                bids.pop(px, None)
            else:
                bids[px] = qty
        for px, qty in _levels(lines, line_no, data.get("a"), "a"):
            if qty == 0:
                asks.pop(px, None)
            else:
                asks[px] = qty
        last_u = u
        stats["diffs_applied"] += 1

    for line_no, ts, payload in lines:
        if at_ns is not None and ts > at_ns:
            break
        stats["lines"] = line_no
        if first_ts is None:
            first_ts = ts
        if b'"depthUpdate"' in payload:
            set_venue("binance-usdm", line_no)
            last_ts = ts
            if bids is None:
                pending.append((line_no, ts, payload))
            else:
                apply_diff(line_no, ts, payload)
                if bids is None:  # a gap just happened: keep diffs for a possible resync
                    pending = [(line_no, ts, payload)]
        elif b'"lastUpdateId"' in payload:
            set_venue("binance-usdm", line_no)
            last_ts = ts
            if bids is not None:
                notes.append(f"line {line_no}: extra REST snapshot ignored (book already in sync)")
                continue
            obj = _json(lines, line_no, payload)
            snap_id = _int_field(lines, line_no, obj, "lastUpdateId")
            snap_line = line_no
            coin_m = coin_m or "pair" in obj
            b_lv = _levels(lines, line_no, obj.get("bids"), "bids")
            a_lv = _levels(lines, line_no, obj.get("asks"), "asks")
            bids = {px: q for px, q in b_lv if q > 0}
            asks = {px: q for px, q in a_lv if q > 0}
            if not bids or not asks:
                raise lines.error("REST snapshot with an empty side", line_no)
            cover_bid, cover_ask = min(bids), max(asks)
            need_first = True
            stats["snapshots_used"] += 1
            if gap_txt is not None:
                notes.append(f"line {line_no}: resynced from a new REST snapshot (lastUpdateId {snap_id})")
                gap_txt = None
            todo, pending = pending, []
            for p_line, p_ts, p_payload in todo:
                if bids is None:
                    pending.append((p_line, p_ts, p_payload))
                else:
                    apply_diff(p_line, p_ts, p_payload)
                    if bids is None:
                        pending = [(p_line, p_ts, p_payload)]
        elif b'"l2Book"' in payload:
            set_venue("hyperliquid", line_no)
            hl_last = (line_no, ts, payload)
            last_ts = ts
        elif _SKIP_RE.search(payload):
            continue
        else:
            raise lines.error(f"unrecognized message {payload.strip()[:80].decode(errors='replace')!r}: expected a depth snapshot, "
                              "depthUpdate or l2Book line (or a known trade/ticker stream)", line_no)

    when = f"market.depth.at {at}" if at is not None else "the end of the capture"
    if venue is None:
        raise DeleverInputError(f"{path}: no order-book message at or before {when}")
    if venue == "binance-usdm" and coin_m:
        venue = "binance-coinm"
    if venue == "binance-coinm":
        if contract_size_usd is None:
            raise DeleverInputError(
                f"{path}: COIN-M capture (quantities in contracts): set market.depth.contract_size_usd "
                "(100 USD for BTCUSD_PERP)"
            )
        if not (math.isfinite(contract_size_usd) and contract_size_usd > 0):
            raise DeleverInputError(f"{path}: market.depth.contract_size_usd must be > 0, got {contract_size_usd!r}")
    elif contract_size_usd is not None:
        raise DeleverInputError(
            f"{path}: market.depth.contract_size_usd is only for COIN-M captures; this one is {venue} "
            "(quantities already in base units)"
        )

    if venue == "hyperliquid":
        if hl_last is None:
            raise DeleverInputError(f"{path}: no l2Book snapshot at or before {when}")
        line_no, ts, payload = hl_last
        data = _json(lines, line_no, payload).get("data")
        note_symbol(data.get("coin") if isinstance(data, dict) else None, line_no)
        levels = data.get("levels") if isinstance(data, dict) else None
        if not isinstance(levels, list) or len(levels) != 2:
            raise lines.error("l2Book: expected data.levels = [[bids], [asks]]", line_no)
        sides = []
        for name, lv in zip(("bids", "asks"), levels, strict=True):
            if not isinstance(lv, list):
                raise lines.error(f"l2Book {name}: expected a list of levels", line_no)
            try:
                raw = [[d["px"], d["sz"]] for d in lv]
            except (TypeError, KeyError):
                raise lines.error(f"l2Book {name}: expected levels with 'px' and 'sz'", line_no) from None
            sides.append({px: q for px, q in _levels(lines, line_no, raw, f"l2Book {name}") if q > 0})
        book_bids, book_asks = sides
        time_ns, cover = ts, (None, None)
        stats["snapshot_line"] = line_no
    else:
        if bids is None:
            if gap_txt is not None:
                raise DeleverInputError(
                    f"{path}: book out of sync at {when}: gap at {gap_txt}, and no later REST snapshot resyncs it"
                )
            first = pending[0][0] if pending else stats["lines"]
            raise DeleverInputError(
                f"{path}: no REST depth snapshot (lastUpdateId) at or before {when} (diffs start at line {first})"
            )
        if need_first:
            raise DeleverInputError(
                f"{path}: at {when} no diff has yet bridged the REST snapshot of line {snap_line} "
                f"(need U <= {snap_id + 1} and u >= {snap_id})"
            )
        book_bids, book_asks = bids, asks
        time_ns, cover = last_ts, (cover_bid, cover_ask)
        stats["snapshot_line"] = snap_line
        stats["last_update_id"] = last_u

    bid_px = np.array(sorted(book_bids, reverse=True), dtype=np.float64)
    ask_px = np.array(sorted(book_asks), dtype=np.float64)
    if bid_px.size == 0 or ask_px.size == 0:
        raise DeleverInputError(f"{path}: rebuilt book at {when} has an empty side (bids {bid_px.size}, asks {ask_px.size})")
    bid_qty = np.array([book_bids[p] for p in bid_px], dtype=np.float64)
    ask_qty = np.array([book_asks[p] for p in ask_px], dtype=np.float64)
    if venue == "binance-coinm":
        bid_qty = bid_qty * contract_size_usd / bid_px
        ask_qty = ask_qty * contract_size_usd / ask_px
    if bid_px[0] >= ask_px[0]:
        raise DeleverInputError(
            f"{path}: crossed book at {format_utc_ns(time_ns)} (line {stats['lines']}): best bid {bid_px[0]:,.2f} "
            f">= best ask {ask_px[0]:,.2f}"
        )
    return L2Book(venue, int(time_ns), bid_px, bid_qty, ask_px, ask_qty, cover[0], cover[1], tuple(notes), stats,
                  next(iter(symbols), None))


def depth_curve_from_l2(path: str | Path, at: str | None = None, contract_size_usd: float | None = None) -> DepthCurve:
    """Depth curve of the book rebuilt from an L2 capture at ``at``.

    Knots on each side at every price level's distance from mid, ``x = 1 - px / mid`` (bids) or
    ``px / mid - 1`` (asks), with the cumulative base quantity through that level; a level's
    quantity is spread linearly between the previous level's ``x`` and its own (piecewise-linear
    ``C``), and beyond the deepest level the curve is extrapolated with the last segment's density,
    i.e. that of the single deepest level: treat walks past ``x_max`` as unreliable.

    Args:
        path: Capture file, see :func:`rebuild_l2_book`.
        at: UTC time compared with local receive timestamps; None = end of the capture.
        contract_size_usd: USD per contract for COIN-M captures (100 for BTCUSD_PERP).

    Returns:
        DepthCurve with ``ref_price`` the mid and notes on gaps and on the snapshot's coverage.

    Raises:
        DeleverInputError: see :func:`rebuild_l2_book`.
    """
    path = Path(path)
    book = rebuild_l2_book(path, at, contract_size_usd)
    mid = book.mid
    x_bid = np.concatenate(([0.0], 1.0 - book.bid_px / mid))
    x_ask = np.concatenate(([0.0], book.ask_px / mid - 1.0))
    bid = SideCurve(x_bid, np.concatenate(([0.0], np.cumsum(book.bid_qty))), -1)
    ask = SideCurve(x_ask, np.concatenate(([0.0], np.cumsum(book.ask_qty))), +1)
    notes = list(book.notes)
    if book.coverage_bid_px is not None and book.coverage_ask_px is not None:
        xb = 1.0 - book.coverage_bid_px / mid
        xa = book.coverage_ask_px / mid - 1.0
        outside_b = int(np.sum(book.bid_px < book.coverage_bid_px))
        outside_a = int(np.sum(book.ask_px > book.coverage_ask_px))
        notes.append(
            f"REST snapshot (line {book.stats['snapshot_line']}) covered bids down to {book.coverage_bid_px:,.2f} "
            f"(x={xb * 100:.3f} %) and asks up to {book.coverage_ask_px:,.2f} (x={xa * 100:.3f} %); beyond, only "
            f"levels updated since are known ({outside_b} bid, {outside_a} ask levels): depth there is a lower bound"
        )
    notes.append(
        f"levels reach x={bid.x_max * 100:.3f} % (bid) / {ask.x_max * 100:.3f} % (ask); beyond, depth is "
        f"extrapolated with the deepest level's density ({bid.density[-1] * 0.01:.4g} / {ask.density[-1] * 0.01:.4g} "
        "base units per 1 %)"
    )
    venue_txt = {"binance-usdm": "Binance USD-M", "binance-coinm": "Binance COIN-M",
                 "hyperliquid": "Hyperliquid"}[book.venue]
    how = (f"rebuilt from REST snapshot (line {book.stats['snapshot_line']}) + {book.stats['diffs_applied']} diffs"
           if book.venue != "hyperliquid" else f"l2Book snapshot (line {book.stats['snapshot_line']})")
    source = f"L2 {venue_txt} {path.name} @ {format_utc_ns(book.time_ns)} (local receive time), {how}"
    return DepthCurve(bid, ask, source, mid, tuple(notes), book.symbol)
