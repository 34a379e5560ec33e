"""Position-book files: load and save CSV / gzip CSV / Parquet, load ccxt positions JSON.

Table format (CSV, ``.csv.gz`` or Parquet), one row per position (= account, one-way mode):

=================  ===========================================================================
column             meaning
=================  ===========================================================================
``account``        integer account id (int64), unique
``side``           ``long`` / ``short`` (case-insensitive), or ``+1`` / ``1`` / ``-1``
``qty``            position size in base units (BTC for BTCUSDT), finite, > 0
``entry_price``    average entry price, USD per base unit, finite, > 0
``collateral_usd`` isolated margin, or the cross wallet balance backing the position, >= 0
``margin_mode``    ``isolated`` / ``cross`` (case-insensitive)
``instrument``     optional; every row must name the instrument being loaded
=================  ===========================================================================

Any other column, a missing column, an empty or unparsable cell, NaN, a negative value, an unknown
side or margin mode, a duplicated account, or rows of another instrument raise
:class:`~delever.errors.DeleverInputError` with one line naming the file, the 1-based data row
(header not counted) and the field. Nothing is dropped or clipped.

ccxt JSON: see :func:`load_ccxt_positions`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from delever.book import LONG, SHORT, PositionBook
from delever.errors import DeleverInputError
from delever.model.accounts import AccountBook
from delever.model.instruments import (
    STABLE_USD,
    Asset,
    AssetRegistry,
    Instrument,
    InstrumentRegistry,
    base_of,
)

REQUIRED_COLUMNS: tuple[str, ...] = ("account", "side", "qty", "entry_price", "collateral_usd", "margin_mode")
OPTIONAL_COLUMNS: tuple[str, ...] = ("instrument",)
_ALL_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

_LONG_WORDS = ("long", "1", "+1", "1.0", "+1.0")
_SHORT_WORDS = ("short", "-1", "-1.0")


# --------------------------------------------------------------------------- suffixes
def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".csv.gz"):
        return "csv.gz"
    for suffix in (".csv", ".parquet", ".json"):
        if name.endswith(suffix):
            return suffix[1:]
    return ""


def _source_kind(path: Path, what: str) -> str:
    """Reader for ``path`` by suffix; the file must exist."""
    kind = _kind(path)
    if not kind:
        raise DeleverInputError(
            f"{path}: unsupported {what} file type (expected .csv, .csv.gz, .parquet or ccxt .json)"
        )
    if not path.is_file():
        raise DeleverInputError(f"{path}: {what} file not found")
    return kind


def _destination_kind(path: Path, what: str) -> str:
    """Writer for ``path`` by suffix; its directory must exist."""
    kind = _kind(path)
    if kind not in ("csv", "csv.gz", "parquet"):
        raise DeleverInputError(f"{path}: cannot save {what} there (expected .csv, .csv.gz or .parquet)")
    if not path.parent.is_dir():
        raise DeleverInputError(f"{path}: destination directory {path.parent} does not exist")
    return kind


# --------------------------------------------------------------------------- public API
def load_book(path: Path, instrument: str) -> PositionBook:
    """Load a position book, choosing the reader by file suffix.

    Args:
        path: ``.csv``, ``.csv.gz`` or ``.parquet`` table (columns in the module docstring), or a
            ``.json`` list of ccxt unified position structures (see :func:`load_ccxt_positions`).
        instrument: Instrument being simulated, e.g. ``"BTCUSDT"``; an ``instrument`` column (or the
            ccxt symbols) must match it on every row.

    Returns:
        A validated :class:`~delever.book.PositionBook` of ``N`` rows: ``account`` int64,
        ``side`` int8 (+1/-1), ``qty`` float64 (base units), ``entry_price`` float64 (USD),
        ``collateral_usd`` float64 (USD), ``cross`` bool; rows in file order.

    Raises:
        DeleverInputError: missing file, unsupported suffix, unreadable file, missing or unknown
            column, empty/unparsable/NaN/negative value, bad side or margin mode, duplicated
            account, or rows of another instrument. The message names the file, the 1-based data
            row and the field.
    """
    path = Path(path)
    kind = _source_kind(path, "position-book")
    if kind == "json":
        return load_ccxt_positions(path, instrument)
    table = _read_table(path, kind)
    return _book_from_table(table, path, instrument)


def save_book(book: PositionBook, path: Path) -> None:
    """Write a position book as CSV (``.csv``, ``.csv.gz``) or Parquet, atomically.

    The file is written to a temporary file in the destination directory and moved into place with
    ``os.replace``, so readers never see a half-written book. Columns: ``account``, ``side``
    (``long``/``short``), ``qty``, ``entry_price``, ``collateral_usd``, ``margin_mode``
    (``isolated``/``cross``), ``instrument``. Floats are written in shortest round-trip form, so
    ``load_book(save_book(b))`` reproduces ``b`` exactly.

    Args:
        book: The book to write; it is validated first.
        path: Destination file; its suffix picks the format.

    Raises:
        DeleverInputError: unsupported suffix, missing destination directory, or an invalid book.
    """
    path = Path(path)
    kind = _destination_kind(path, "a position book")
    book.validate(f"{path} (book to save)")
    n = len(book)
    table = pa.table(
        {
            "account": pa.array(book.account, type=pa.int64()),
            "side": pa.array(np.where(book.side == LONG, "long", "short")),
            "qty": pa.array(book.qty, type=pa.float64()),
            "entry_price": pa.array(book.entry_price, type=pa.float64()),
            "collateral_usd": pa.array(book.collateral_usd, type=pa.float64()),
            "margin_mode": pa.array(np.where(book.cross, "cross", "isolated")),
            "instrument": pa.array([book.instrument] * n, type=pa.string()),
        }
    )
    _write_table_atomic(table, path, kind)


def _write_table_atomic(table: pa.Table, path: Path, kind: str) -> None:
    """Write ``table`` to a temporary file beside ``path`` and move it into place (readers never see half a file)."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if kind == "parquet":
            pq.write_table(table, tmp)
        elif kind == "csv.gz":
            with pa.CompressedOutputStream(str(tmp), "gzip") as out:
                pacsv.write_csv(table, out)
        else:
            pacsv.write_csv(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ccxt_symbol_to_instrument(symbol: str) -> str:
    """Map a ccxt unified symbol to a venue-style instrument name.

    Rule: ``BASE/QUOTE:SETTLE`` -> ``BASE + QUOTE`` (the ``/`` and the ``:SETTLE`` part removed),
    so ``BTC/USDT:USDT`` -> ``BTCUSDT`` and ``ETH/USDC:USDC`` -> ``ETHUSDC``. A dated future
    ``BTC/USDT:USDT-250328`` -> ``BTCUSDT_250328`` (Binance's naming), so it never matches the
    perpetual. Options (``BASE/QUOTE:SETTLE-EXPIRY-STRIKE-C``) keep their suffix the same way.

    Raises:
        DeleverInputError: not of the form ``BASE/QUOTE:SETTLE``, or an inverse contract
            (settle currency = base, e.g. ``BTC/USD:BTC``), whose ``contractSize`` is in quote
            currency so ``contracts * contractSize`` would not be base units.
    """
    base, slash, rest = symbol.partition("/")
    quote, colon, settle_part = rest.partition(":")
    if not slash or not base or not quote or not colon or not settle_part:
        raise DeleverInputError(f"ccxt symbol {symbol!r}: expected a derivative symbol BASE/QUOTE:SETTLE")
    settle, dash, expiry = settle_part.partition("-")
    if settle == base:
        raise DeleverInputError(
            f"ccxt symbol {symbol!r}: inverse contract (settled in {base}); delever books hold linear "
            "contracts with quantities in base units"
        )
    name = base + quote
    return f"{name}_{expiry.replace('-', '_')}" if dash else name


def load_ccxt_positions(path: Path, instrument: str) -> PositionBook:
    """Load positions exported from ccxt ``fetchPositions`` (unified position structures).

    Accepted JSON layouts: a list of positions (the account of each is its ``account`` field, else
    ``info["account"]``; when no position carries one, the 0-based position index is the account),
    or an object mapping integer account id -> list of positions. Fields read per position
    (ccxt Manual, "Position Structure"):

    - ``symbol``: mapped by :func:`ccxt_symbol_to_instrument` (``BTC/USDT:USDT`` -> ``BTCUSDT``);
      every position must map to ``instrument``.
    - ``side``: ``long`` / ``short``.
    - ``contracts`` (> 0) and ``contractSize`` (> 0, default 1 when absent or null):
      ``qty = contracts * contractSize`` (base units for linear contracts).
    - ``entryPrice`` (> 0).
    - ``collateral``, or ``initialMargin`` when ``collateral`` is absent or null (>= 0, USD): taken
      as the position's isolated margin or the cross wallet balance, excluding unrealized PnL.
    - ``marginMode``: ``cross`` / ``isolated``; when absent or null, the boolean ``isolated``.

    Numbers may be JSON numbers or numeric strings. Flat positions (``contracts == 0``, which
    ``fetchPositions`` returns on some venues) are an error, not skipped: remove them upstream.

    Args:
        path: JSON file.
        instrument: Instrument being simulated, e.g. ``"BTCUSDT"``.

    Returns:
        A validated :class:`~delever.book.PositionBook` in file order.

    Raises:
        DeleverInputError: unreadable JSON, wrong layout, missing or bad field, inverse contract,
            positions of other instruments, non-integer account id, some positions with an account
            and others without, or a duplicated account (hedge mode is not modelled). The message
            names the file, the position and the field.
    """
    path = Path(path)
    src = str(path)
    account, side, qty, entry, coll, cross, inst, _ = _ccxt_rows(path)
    n = qty.size
    others: dict[str, int] = {}
    for name in inst:
        if name != instrument:
            others[name] = others.get(name, 0) + 1
    if others:
        listed = ", ".join(f"{k} ({v})" for k, v in sorted(others.items()))
        raise DeleverInputError(
            f"{src}: {sum(others.values())} of {n} positions are for other instruments: {listed}; expected only "
            f"{instrument} (split the file per instrument)"
        )
    return PositionBook(instrument, account, side, qty, entry, coll, cross).validate(src)


def _ccxt_rows(path: Path):
    """Every position of a ccxt positions file as arrays: account int64, side int8, qty, entry price, collateral
    float64, cross bool (each ``(n,)``), and the instrument and settlement currency of each row (lists)."""
    src = str(path)
    entries = _ccxt_entries(path)
    n = len(entries)
    account = np.empty(n, dtype=np.int64)
    side = np.empty(n, dtype=np.int8)
    qty = np.empty(n, dtype=np.float64)
    entry = np.empty(n, dtype=np.float64)
    coll = np.empty(n, dtype=np.float64)
    cross = np.empty(n, dtype=bool)
    inst: list[str] = []
    settle: list[str] = []
    for i, (where, pos, acct) in enumerate(entries):
        name, cur = _ccxt_instrument(pos, src, where)
        inst.append(name)
        settle.append(cur)
        account[i] = _ccxt_account(acct, src, where)
        side[i], qty[i], entry[i], coll[i], cross[i] = _ccxt_position(pos, src, where)
    return account, side, qty, entry, coll, cross, inst, settle


def _ccxt_entries(path: Path) -> list[tuple[str, dict[str, Any], Any]]:
    """Read a ccxt positions file: ``(where, position, account or None)`` per position, in file order.

    Layouts: a list of positions (account from ``account`` or ``info["account"]``; none anywhere: the 0-based
    position index), or an object account id -> list of positions.
    """
    src = str(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise DeleverInputError(f"{src}: ccxt positions file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DeleverInputError(f"{src}: not valid JSON: {exc}") from None

    entries: list[tuple[str, dict[str, Any], Any]] = []  # (where, position, account or None)
    if isinstance(doc, list):
        for i, pos in enumerate(doc):
            where = f"position {i + 1}"
            if not isinstance(pos, dict):
                raise DeleverInputError(
                    f"{src}: {where}: expected a ccxt position object, got {type(pos).__name__}"
                )
            acct = pos.get("account")
            if acct is None and isinstance(pos.get("info"), dict):
                acct = pos["info"].get("account")
            entries.append((where, pos, acct))
        have = [a is not None for _, _, a in entries]
        if any(have) and not all(have):
            i = have.index(not have[0])
            raise DeleverInputError(
                f"{src}: position {i + 1}: field 'account' is {'missing' if have[0] else 'present'} while position 1 "
                f"{'has' if have[0] else 'lacks'} one; give every position an account or none"
            )
        if not any(have):
            entries = [(w, p, i) for i, (w, p, _) in enumerate(entries)]
    elif isinstance(doc, dict):
        if "symbol" in doc:
            raise DeleverInputError(
                f"{src}: expected a list of ccxt positions (or account -> list), got one position"
            )
        for key, plist in doc.items():
            if not isinstance(plist, list):
                raise DeleverInputError(
                    f"{src}: account {key!r}: expected a list of positions, got {type(plist).__name__}"
                )
            for j, pos in enumerate(plist):
                where = f"account {key!r} position {j + 1}"
                if not isinstance(pos, dict):
                    raise DeleverInputError(
                        f"{src}: {where}: expected a ccxt position object, got {type(pos).__name__}"
                    )
                own = pos.get("account")
                if own is not None and str(own) != str(key):
                    raise DeleverInputError(
                        f"{src}: {where}: field 'account' is {own!r}, expected {key!r} (its key)"
                    )
                entries.append((where, pos, key))
    else:
        raise DeleverInputError(
            f"{src}: expected a list of ccxt positions or an object account -> list of positions"
        )
    if not entries:
        raise DeleverInputError(f"{src}: no positions (expected at least one)")
    return entries


def _ccxt_instrument(pos: dict[str, Any], src: str, where: str) -> tuple[str, str]:
    """``(instrument, settlement currency)`` of a ccxt position's ``symbol``."""
    sym = pos.get("symbol")
    if not isinstance(sym, str):
        raise DeleverInputError(
            f"{src}: {where}: field 'symbol' is {sym!r}, expected a ccxt symbol like 'BTC/USDT:USDT'"
        )
    try:
        inst = ccxt_symbol_to_instrument(sym)
    except DeleverInputError as exc:
        raise DeleverInputError(f"{src}: {where}: {exc}") from None
    return inst, sym.partition(":")[2].partition("-")[0]


def _ccxt_position(pos: dict[str, Any], src: str, where: str) -> tuple[int, float, float, float, bool]:
    """``(side, qty, entry_price, collateral, cross)`` of one ccxt position (fields of :func:`load_ccxt_positions`)."""
    s = pos.get("side")
    s_l = s.strip().lower() if isinstance(s, str) else s
    if s_l not in ("long", "short"):
        raise DeleverInputError(f"{src}: {where}: field 'side' is {s!r}, expected 'long' or 'short'")
    contracts = _ccxt_number(pos, "contracts", src, where, positive=True)
    size = (
        1.0
        if pos.get("contractSize") is None
        else _ccxt_number(pos, "contractSize", src, where, positive=True)
    )
    entry = _ccxt_number(pos, "entryPrice", src, where, positive=True)
    key = "collateral" if pos.get("collateral") is not None else "initialMargin"
    if pos.get(key) is None:
        raise DeleverInputError(
            f"{src}: {where}: needs field 'collateral' or 'initialMargin' (USD), both missing"
        )
    coll = _ccxt_number(pos, key, src, where, positive=False)
    return (LONG if s_l == "long" else SHORT), contracts * size, entry, coll, _ccxt_cross(pos, src, where)


# --------------------------------------------------------------------------- ccxt helpers
def _ccxt_number(pos: dict[str, Any], key: str, src: str, where: str, positive: bool) -> float:
    v = pos.get(key)
    want = "a finite number > 0" if positive else "a finite number >= 0"
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise DeleverInputError(f"{src}: {where}: field {key!r} is {v!r}, expected {want}")
    try:
        x = float(v)
    except ValueError:
        raise DeleverInputError(f"{src}: {where}: field {key!r} is {v!r}, expected {want}") from None
    if not math.isfinite(x) or (x <= 0 if positive else x < 0):
        raise DeleverInputError(f"{src}: {where}: field {key!r} is {v!r}, expected {want}")
    return x


def _ccxt_account(acct: Any, src: str, where: str) -> int:
    if isinstance(acct, bool):
        acct = None
    if isinstance(acct, int):
        return acct
    if isinstance(acct, str):
        try:
            return int(acct.strip())
        except ValueError:
            pass
    raise DeleverInputError(
        f"{src}: {where}: account id {acct!r} is not an integer (delever account ids are int64)"
    )


def _ccxt_cross(pos: dict[str, Any], src: str, where: str) -> bool:
    mode = pos.get("marginMode")
    if mode is not None:
        m = mode.strip().lower() if isinstance(mode, str) else mode
        if m not in ("cross", "isolated"):
            raise DeleverInputError(
                f"{src}: {where}: field 'marginMode' is {mode!r}, expected 'cross' or 'isolated'"
            )
        return m == "cross"
    iso = pos.get("isolated")
    if isinstance(iso, bool):
        return not iso
    raise DeleverInputError(f"{src}: {where}: field 'marginMode' is missing, expected 'cross' or 'isolated'")


# --------------------------------------------------------------------------- table reading
def _read_table(path: Path, kind: str, columns: tuple[str, ...] = _ALL_COLUMNS) -> pa.Table:
    try:
        if kind == "parquet":
            return pq.read_table(path)
        return pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in columns}, strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, OSError, EOFError) as exc:
        msg = " ".join(str(exc).split())
        raise DeleverInputError(f"{path}: cannot read as {kind}: {msg}") from None


def _first_failing(arr: pa.Array, fn: Callable[[pa.Array], object]) -> int:
    """Index of the first element on which ``fn`` raises (bisection over slices)."""
    lo, hi = 0, len(arr)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            fn(arr.slice(lo, mid - lo))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            hi = mid
        else:
            lo = mid
    return lo


def _column(table: pa.Table, name: str, src: Path) -> pa.Array:
    arr = table.column(name).combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if arr.null_count:
        i = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise DeleverInputError(f"{src}: row {i + 1}: field {name!r} is empty, expected a value")
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr = pc.utf8_trim_whitespace(arr)
    return arr


def _numeric(arr: pa.Array, name: str, src: Path, target: pa.DataType, expected: str) -> np.ndarray:
    def conv(a: pa.Array) -> pa.Array:
        return pc.cast(a, target, safe=True)

    try:
        out = conv(arr)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        i = _first_failing(arr, conv)
        raise DeleverInputError(
            f"{src}: row {i + 1}: field {name!r} is {arr[i].as_py()!r}, expected {expected}"
        ) from None
    return out.to_numpy(zero_copy_only=False)


def _words(arr: pa.Array, words: tuple[str, ...]) -> np.ndarray:
    return pc.is_in(arr, value_set=pa.array(words)).to_numpy(zero_copy_only=False)


def _book_from_table(table: pa.Table, src: Path, instrument: str) -> PositionBook:
    names = table.column_names
    for name in names:
        if name not in _ALL_COLUMNS:
            raise DeleverInputError(
                f"{src}: unknown column {name!r} (expected columns: {', '.join(_ALL_COLUMNS)}; 'instrument' optional)"
            )
    if len(set(names)) != len(names):
        dup = next(c for c in names if names.count(c) > 1)
        raise DeleverInputError(f"{src}: column {dup!r} appears more than once")
    for name in REQUIRED_COLUMNS:
        if name not in names:
            raise DeleverInputError(
                f"{src}: missing column {name!r} (expected columns: {', '.join(REQUIRED_COLUMNS)})"
            )
    if table.num_rows == 0:
        raise DeleverInputError(f"{src}: the position book has no rows (expected at least one position)")

    if "instrument" in names:
        inst = _column(table, "instrument", src)
        if not (pa.types.is_string(inst.type) or pa.types.is_large_string(inst.type)):
            inst = pc.cast(inst, pa.string())
        other = ~pc.equal(inst, pa.scalar(instrument)).to_numpy(zero_copy_only=False)
        if other.any():
            counts = pc.value_counts(inst.filter(pa.array(other)))
            listed = ", ".join(
                f"{v['values']} ({v['counts']})"
                for v in sorted(counts.to_pylist(), key=lambda d: str(d["values"]))
            )
            first = int(np.flatnonzero(other)[0])
            raise DeleverInputError(
                f"{src}: {int(other.sum())} of {table.num_rows} rows are for other instruments: {listed} "
                f"(first at row {first + 1}); expected only {instrument}"
            )

    account = _numeric(_column(table, "account", src), "account", src, pa.int64(), "an integer account id")
    qty = _numeric(_column(table, "qty", src), "qty", src, pa.float64(), "a number > 0 (base units)")
    entry = _numeric(
        _column(table, "entry_price", src), "entry_price", src, pa.float64(), "a price > 0 (USD)"
    )
    coll = _numeric(
        _column(table, "collateral_usd", src), "collateral_usd", src, pa.float64(), "an amount >= 0 (USD)"
    )

    side_col = _column(table, "side", src)
    if not (pa.types.is_string(side_col.type) or pa.types.is_large_string(side_col.type)):
        side_col = pc.cast(side_col, pa.string())
    side_l = pc.utf8_lower(side_col)
    is_long = _words(side_l, _LONG_WORDS)
    is_short = _words(side_l, _SHORT_WORDS)
    bad = ~(is_long | is_short)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DeleverInputError(
            f"{src}: row {i + 1}: field 'side' is {side_col[i].as_py()!r}, expected 'long', 'short', +1 or -1"
        )
    side = np.where(is_long, LONG, SHORT).astype(np.int8)

    mode_col = _column(table, "margin_mode", src)
    if not (pa.types.is_string(mode_col.type) or pa.types.is_large_string(mode_col.type)):
        raise DeleverInputError(
            f"{src}: field 'margin_mode' has type {mode_col.type}, expected 'isolated' or 'cross' text"
        )
    cross = _cross_rows(mode_col, src)

    return PositionBook(instrument, account, side, qty, entry, coll, cross).validate(str(src))


# --------------------------------------------------------------------------- account books (several instruments)
ACCOUNT_REQUIRED_COLUMNS: tuple[str, ...] = (
    "account", "instrument", "qty", "entry_price", "collateral", "collateral_asset", "margin_mode",
)
ACCOUNT_OPTIONAL_COLUMNS: tuple[str, ...] = ("side",)
_ACCOUNT_COLUMNS = ACCOUNT_REQUIRED_COLUMNS + ACCOUNT_OPTIONAL_COLUMNS
CrossCollateral = Literal["wallet", "per_position"]


def account_book_from_positions(book: PositionBook, registry: InstrumentRegistry | None = None) -> AccountBook:
    """A one-instrument position book as an account book: each row one account, a cross row one cross group.

    Args:
        book: One-instrument book (``collateral_usd`` in USD).
        registry: Registry holding ``book.instrument``; None: ``InstrumentRegistry.linear([book.instrument])``
            (settled in USDT at 1 USD, so ``collateral_usd`` becomes a USDT balance).

    Returns:
        :class:`AccountBook` with ``A = G = P = len(book)``; positions in row order, signed ``side x qty``.

    Raises:
        DeleverInputError: the registry lacks the instrument, or any check of ``AccountBook.from_rows``.
    """
    reg = InstrumentRegistry.linear([book.instrument]) if registry is None else registry
    code = reg.code(book.instrument)
    n = len(book)
    settle = reg.settle_code[code]
    return AccountBook.from_rows(reg, book.account, np.full(n, code, np.int32), book.side * book.qty,
                                 book.entry_price, ~book.cross, book.collateral_usd, np.full(n, settle, np.int32),
                                 source=f"position book {book.instrument}")


def load_account_book(path: Path, registry: InstrumentRegistry | None = None,
                      cross_collateral: CrossCollateral = "wallet") -> AccountBook:
    """Load a book with several positions per account, choosing the reader by file suffix.

    Table format (``.csv``, ``.csv.gz``, ``.parquet``), one row per position:

    ====================  ======================================================================================
    column                meaning
    ====================  ======================================================================================
    ``account``           integer account id (int64); an account may have several rows
    ``instrument``        instrument symbol of the registry (``BTCUSDT``)
    ``side``              optional: ``long`` / ``short`` / ``+1`` / ``-1``; then ``qty`` > 0
    ``qty``               quantity in base units; signed (+ long) when there is no ``side`` column, never 0
    ``entry_price``       average entry price, quote per base unit, > 0
    ``collateral``        isolated margin of the row, or the account's cross wallet in ``collateral_asset``, >= 0
    ``collateral_asset``  asset symbol of ``collateral`` (``USDT``)
    ``margin_mode``       ``isolated`` / ``cross``
    ====================  ======================================================================================

    The cross wallet of an account is repeated on each of its cross rows, or given on one row (and 0 on the
    others); ``cross_collateral = "per_position"`` reads each cross row's ``collateral`` as that position's share
    and sums them into the wallet instead. A file in the one-instrument layout (``collateral_usd``, see
    :func:`load_book`) is read as such and converted by :func:`account_book_from_positions`. ccxt JSON: see
    :func:`load_ccxt_account_book`.

    Args:
        path: Book file.
        registry: Instruments and assets; None: linear perpetuals named in the file, each settled in the stablecoin
            its symbol ends with (``BTCUSDT`` -> USDT), collateral assets stablecoins at 1 USD.
        cross_collateral: ``"wallet"`` or ``"per_position"`` (above).

    Returns:
        A validated :class:`AccountBook`; positions in file order (``AccountBook.from_rows``).

    Raises:
        DeleverInputError: missing file, unsupported suffix, unreadable file, missing / unknown / duplicated column,
            an empty, unparsable, NaN, zero or negative value where not allowed, unknown instrument, asset, side or
            margin mode, conflicting cross wallets, two rows of one account in one instrument and margin group.
            The message names the file, the 1-based data row and the field.
    """
    path = Path(path)
    kind = _source_kind(path, "account-book")
    if cross_collateral not in ("wallet", "per_position"):
        raise DeleverInputError(f"cross_collateral is {cross_collateral!r}, expected 'wallet' or 'per_position'")
    if kind == "json":
        return load_ccxt_account_book(path, registry, cross_collateral)
    table = _read_table(path, kind, _ACCOUNT_COLUMNS + ("collateral_usd",))
    if "collateral_usd" in table.column_names:
        return account_book_from_positions(_one_instrument_table(table, path, registry), registry)
    return _account_book_from_table(table, path, registry, cross_collateral)


def save_account_book(book: AccountBook, path: Path) -> None:
    """Write an account book as CSV (``.csv``, ``.csv.gz``) or Parquet, atomically; :func:`load_account_book`
    reads it back to the same accounts, groups, positions and balances.

    Columns: ``account``, ``instrument``, ``qty`` (signed), ``entry_price``, ``collateral``, ``collateral_asset``,
    ``margin_mode``. An isolated row carries its group's balance; a cross group's balances in its assets go on its
    rows in turn (first row: first asset held ...), the remaining rows repeat the first asset's wallet. Floats are
    written in shortest round-trip form.

    Raises:
        DeleverInputError: unsupported suffix, missing directory, an invalid book, a negative balance (a debt has
            no row form), an isolated group holding two assets, or a cross group holding more assets than
            positions.
    """
    path = Path(path)
    kind = _destination_kind(path, "an account book")
    book.validate(f"{path} (book to save)")
    reg = book.registry
    bal = book.balance
    if (bal < 0).any():
        g = int(np.flatnonzero((bal < 0).any(axis=1))[0])
        raise DeleverInputError(f"{path}: margin group {g + 1} has a negative balance (a debt), which the row "
                                "format cannot hold")
    held = bal > 0
    n_held = held.sum(axis=1)
    order = np.argsort(~held, axis=1, kind="stable")  # assets held first, in asset order
    pos_group = book.pos_group
    n_pos = np.bincount(pos_group, minlength=book.n_groups)
    too_many = n_held > np.maximum(n_pos, 1)
    if too_many.any():
        g = int(np.flatnonzero(too_many)[0])
        raise DeleverInputError(f"{path}: margin group {g + 1} holds {int(n_held[g])} assets but {int(n_pos[g])} "
                                "position(s); each row carries one collateral asset")
    # rank of each position inside its group, in position order
    by_group = np.argsort(pos_group, kind="stable")
    first_in_group = np.concatenate([[0], np.cumsum(n_pos)[:-1]])
    rank = np.empty(book.n_positions, dtype=np.int64)
    rank[by_group] = np.arange(book.n_positions) - first_in_group[pos_group[by_group]]
    use = np.where(rank < n_held[pos_group], rank, 0)
    asset = np.where(n_held[pos_group] > 0, order[pos_group, use], reg.settle_code[book.pos_instrument])
    collateral = bal[pos_group, asset]
    table = pa.table(
        {
            "account": pa.array(book.account_id[book.group_account[pos_group]], type=pa.int64()),
            "instrument": pa.array(np.asarray(reg.symbols, dtype=object)[book.pos_instrument], type=pa.string()),
            "qty": pa.array(book.pos_qty, type=pa.float64()),
            "entry_price": pa.array(book.pos_entry_price, type=pa.float64()),
            "collateral": pa.array(collateral, type=pa.float64()),
            "collateral_asset": pa.array(np.asarray(reg.assets.symbols, dtype=object)[asset], type=pa.string()),
            "margin_mode": pa.array(np.where(book.group_isolated[pos_group], "isolated", "cross")),
        }
    )
    _write_table_atomic(table, path, kind)


def load_ccxt_account_book(path: Path, registry: InstrumentRegistry | None = None,
                           cross_collateral: CrossCollateral = "wallet") -> AccountBook:
    """Load ccxt ``fetchPositions`` output with several positions per account (ccxt Manual, "Position Structure").

    Layouts and fields as :func:`load_ccxt_positions` (``symbol``, ``side``, ``contracts`` x ``contractSize``,
    ``entryPrice``, ``collateral`` or ``initialMargin``, ``marginMode`` or ``isolated``, account from ``account`` /
    ``info["account"]`` / the object key, else the position index); positions of every instrument are kept. The
    instrument is ``BASE + QUOTE`` (:func:`ccxt_symbol_to_instrument`), the collateral asset the symbol's
    settlement currency (``BTC/USDT:USDT`` -> USDT). ``cross_collateral``: ``"wallet"`` (a cross position's
    ``collateral`` is the account's cross wallet, repeated or given once) or ``"per_position"`` (each cross
    position's ``collateral`` is its own margin; the wallet is their sum).

    Args:
        path: JSON file.
        registry: Instruments and assets; None: linear perpetuals in order of first appearance, settled in their
            ccxt settlement currency (stablecoins at 1 USD).
        cross_collateral: See above.

    Raises:
        DeleverInputError: any error of :func:`load_ccxt_positions` but other instruments, an instrument or asset
            not in ``registry``, a settlement currency that is not a USD stablecoin when no registry is given,
            conflicting cross wallets, or two positions of one account in one instrument and margin group.
    """
    path = Path(path)
    src = str(path)
    account, side, qty, entry, coll, cross, inst, settle = _ccxt_rows(path)
    qty = qty * side
    names, inst_row = _encode(inst)
    assets, asset_row = _encode(settle)
    if registry is None:
        registry = _registry_for(names, inst_row, [settle[int(np.flatnonzero(inst_row == k)[0])] for k in
                                                   range(len(names))], assets, asset_row, src, "position")
    return _rows_to_account_book(registry, account, names, inst_row, assets, asset_row, qty, entry, ~cross, coll,
                                 src, "position", cross_collateral)


# --------------------------------------------------------------------------- account-book helpers
def _encode(values) -> tuple[list[str], np.ndarray]:
    """Distinct values in order of first appearance and each row's index into them (int64)."""
    if isinstance(values, pa.Array):
        enc = pc.dictionary_encode(values)
        return [str(v) for v in enc.dictionary.to_pylist()], enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    seen: dict[str, int] = {}
    idx = np.array([seen.setdefault(str(v), len(seen)) for v in values], dtype=np.int64)
    return list(seen), idx


def _registry_for(inst: list[str], inst_row: np.ndarray, settle: list[str], asset: list[str], asset_row: np.ndarray,
                  src: str, unit: str) -> InstrumentRegistry:
    """Linear perpetuals ``inst`` settled in ``settle`` (one per instrument); assets: the settlements, then the
    collateral assets of the rows; every one a USD stablecoin at 1 USD."""
    for k, cur in enumerate(settle):
        if cur.upper() not in STABLE_USD:
            r = int(np.flatnonzero(inst_row == k)[0])
            raise DeleverInputError(f"{src}: {unit} {r + 1}: instrument {inst[k]!r} settles in {cur!r}, not a USD "
                                    "stablecoin; pass an instrument registry that names how to price it")
    for k, a in enumerate(asset):
        if a.upper() not in STABLE_USD:
            r = int(np.flatnonzero(asset_row == k)[0])
            raise DeleverInputError(f"{src}: {unit} {r + 1}: field 'collateral_asset' is {a!r}, not a USD stablecoin; "
                                    "pass an instrument registry that says how to price it")
    instruments = tuple(Instrument(v, "linear_perp", base_of(v, c), c) for v, c in zip(inst, settle, strict=True))
    assets = tuple(Asset(a) for a in dict.fromkeys([*settle, *asset]))
    return InstrumentRegistry(instruments, AssetRegistry(assets))


def _rows_to_account_book(reg: InstrumentRegistry, account: np.ndarray, inst: list[str], inst_row: np.ndarray,
                          asset: list[str], asset_row: np.ndarray, qty: np.ndarray, entry: np.ndarray,
                          isolated: np.ndarray, coll: np.ndarray, src: str, unit: str,
                          cross_collateral: str) -> AccountBook:
    """Map names to registry codes (unknown ones refused with the first row) and build with ``from_rows``."""
    codes_i = np.empty(len(inst), dtype=np.int32)
    for k, name in enumerate(inst):
        if name not in reg.index:
            r = int(np.flatnonzero(inst_row == k)[0])
            raise DeleverInputError(f"{src}: {unit} {r + 1}: field 'instrument' is {name!r}, not an instrument of the "
                                    f"run (known: {', '.join(reg.symbols)})")
        codes_i[k] = reg.index[name]
    codes_a = np.empty(len(asset), dtype=np.int32)
    for k, name in enumerate(asset):
        if name not in reg.assets.index:
            r = int(np.flatnonzero(asset_row == k)[0])
            raise DeleverInputError(f"{src}: {unit} {r + 1}: field 'collateral_asset' is {name!r}, not an asset of "
                                    f"the run (known: {', '.join(reg.assets.symbols)})")
        codes_a[k] = reg.assets.index[name]
    asset_code = codes_a[asset_row]
    if cross_collateral == "per_position":
        # the wallet of (account, asset) is the sum of its cross rows, given on the first of them
        cr = np.flatnonzero(~isolated)
        key = np.stack([account[cr], asset_code[cr].astype(np.int64)], axis=1)
        _, first, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
        total = np.bincount(inv.ravel(), weights=coll[cr])
        coll = coll.copy()
        coll[cr] = 0.0
        coll[cr[first]] = total
    return AccountBook.from_rows(reg, account, codes_i[inst_row], qty, entry, isolated, coll, asset_code, source=src)


def _table_header(table: pa.Table, src: Path, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    names = table.column_names
    allowed = required + optional
    for name in names:
        if name not in allowed:
            raise DeleverInputError(f"{src}: unknown column {name!r} (expected columns: {', '.join(required)}"
                                    + (f"; optional: {', '.join(optional)})" if optional else ")"))
    if len(set(names)) != len(names):
        dup = next(c for c in names if names.count(c) > 1)
        raise DeleverInputError(f"{src}: column {dup!r} appears more than once")
    for name in required:
        if name not in names:
            raise DeleverInputError(f"{src}: missing column {name!r} (expected columns: {', '.join(required)})")
    if table.num_rows == 0:
        raise DeleverInputError(f"{src}: the book has no rows (expected at least one position)")


def _text(table: pa.Table, name: str, src: Path) -> pa.Array:
    col = _column(table, name, src)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = pc.cast(col, pa.string())
    return col


def _cross_rows(mode_col: pa.Array, src) -> np.ndarray:
    """bool per row: ``margin_mode`` is cross (case-insensitive); anything but cross / isolated is refused."""
    mode_l = pc.utf8_lower(mode_col)
    cross = _words(mode_l, ("cross",))
    bad = ~(cross | _words(mode_l, ("isolated",)))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DeleverInputError(
            f"{src}: row {i + 1}: field 'margin_mode' is {mode_col[i].as_py()!r}, expected 'isolated' or 'cross'"
        )
    return cross


def _first_bad(bad: np.ndarray, values: np.ndarray, name: str, src: Path, expected: str) -> None:
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DeleverInputError(f"{src}: row {i + 1}: field {name!r} is {values[i].item()!r}, expected {expected}")


def _account_book_from_table(table: pa.Table, src: Path, registry: InstrumentRegistry | None,
                             cross_collateral: str) -> AccountBook:
    _table_header(table, src, ACCOUNT_REQUIRED_COLUMNS, ACCOUNT_OPTIONAL_COLUMNS)
    account = _numeric(_column(table, "account", src), "account", src, pa.int64(), "an integer account id")
    inst, inst_row = _encode(_text(table, "instrument", src))
    asset, asset_row = _encode(_text(table, "collateral_asset", src))
    for names, rows, field in ((inst, inst_row, "instrument"), (asset, asset_row, "collateral_asset")):
        if "" in names:
            r = int(np.flatnonzero(rows == names.index(""))[0])
            raise DeleverInputError(f"{src}: row {r + 1}: field {field!r} is empty, expected a symbol")
    qty = _numeric(_column(table, "qty", src), "qty", src, pa.float64(), "a number (base units)")
    entry = _numeric(_column(table, "entry_price", src), "entry_price", src, pa.float64(), "a price > 0")
    coll = _numeric(_column(table, "collateral", src), "collateral", src, pa.float64(), "an amount >= 0")
    if "side" in table.column_names:
        _first_bad(~(np.isfinite(qty) & (qty > 0)), qty, "qty", src, "a finite quantity > 0 (the side is in 'side')")
        side_col = _text(table, "side", src)
        side_l = pc.utf8_lower(side_col)
        is_long = _words(side_l, _LONG_WORDS)
        bad = ~(is_long | _words(side_l, _SHORT_WORDS))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DeleverInputError(
                f"{src}: row {i + 1}: field 'side' is {side_col[i].as_py()!r}, expected 'long', 'short', +1 or -1"
            )
        qty = np.where(is_long, qty, -qty)
    else:
        _first_bad(~(np.isfinite(qty) & (qty != 0)), qty, "qty", src, "a finite signed quantity != 0 (+ long)")
    _first_bad(~(np.isfinite(entry) & (entry > 0)), entry, "entry_price", src, "a finite price > 0")
    _first_bad(~(np.isfinite(coll) & (coll >= 0)), coll, "collateral", src, "a finite amount >= 0")
    mode_col = _text(table, "margin_mode", src)
    cross = _cross_rows(mode_col, src)
    if registry is None:
        settle = [_stable_suffix(v) for v in inst]
        if "" in settle:
            k = settle.index("")
            r = int(np.flatnonzero(inst_row == k)[0])
            raise DeleverInputError(f"{src}: row {r + 1}: instrument {inst[k]!r} does not end with a USD stablecoin; "
                                    "pass an instrument registry that names its settlement asset")
        registry = _registry_for(inst, inst_row, settle, asset, asset_row, str(src), "row")
    return _rows_to_account_book(registry, account, inst, inst_row, asset, asset_row, qty, entry, ~cross, coll,
                                 str(src), "row", cross_collateral)


def _stable_suffix(symbol: str) -> str:
    for q in sorted(STABLE_USD, key=len, reverse=True):
        if symbol.upper().endswith(q) and len(symbol) > len(q):
            return q
    return ""


def _one_instrument_table(table: pa.Table, src: Path, registry: InstrumentRegistry | None) -> PositionBook:
    """A one-instrument table (``collateral_usd``) read by the one-instrument rules, for the registry's instrument
    or the file's single ``instrument`` value."""
    if registry is not None and len(registry) == 1:
        return _book_from_table(table, src, registry.symbols[0])
    if "instrument" in table.column_names:
        names = pc.unique(_text(table, "instrument", src)).to_pylist()
        if len(names) == 1:
            return _book_from_table(table, src, names[0])
    raise DeleverInputError(f"{src}: a one-instrument book (column 'collateral_usd') needs its instrument: one value "
                            "in an 'instrument' column, or a registry of one instrument")
