"""Reader for leverage brackets as ccxt ``LeverageTier`` JSON (``fetch_leverage_tiers`` output).

The file maps ccxt symbols (``ETH/USDT:USDT``, dated futures ``BTC/USDT:USDT-250328``) to a list of
tiers; each tier holds ccxt's unified fields (``tier``, ``currency``, ``minNotional``, ``maxNotional``,
``maintenanceMarginRate``, ``maxLeverage``) and the venue's raw answer in ``info`` (Binance
``/fapi/v1/leverageBracket``: ``bracket``, ``initialLeverage``, ``notionalFloor``, ``notionalCap``,
``maintMarginRatio``, ``cum``). Sources: ccxt ``LeverageTier`` structure (docs.ccxt.com "Leverage Tiers
Structure"); Binance USD-M "Notional and Leverage Brackets" (``GET /fapi/v1/leverageBracket``).

Every field is checked; the unified fields must equal their ``info`` counterparts, the brackets must
be contiguous (``minNotional`` of tier n = ``maxNotional`` of tier n-1, the first 0), and Binance's
maintenance amount ``cum`` must equal the continuity recursion of :mod:`delever.venues.tiers`
(``cum_n = cum_{n-1} + floor_n * (MMR_n - MMR_{n-1})``); a file that disagrees is refused.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from delever.errors import DeleverInputError
from delever.venues.tiers import MarginTiers

# BASE/QUOTE:SETTLE with an optional -YYMMDD expiry (ccxt unified market symbol).
_CCXT_SYMBOL = re.compile(r"^([A-Za-z0-9]+)/([A-Za-z0-9]+):([A-Za-z0-9]+)(?:-(\d{6}))?$")
_UNIFIED = ("tier", "minNotional", "maxNotional", "maintenanceMarginRate", "maxLeverage")
# ccxt unified field -> the raw Binance field it was parsed from
_INFO_OF = {"tier": "bracket", "minNotional": "notionalFloor", "maxNotional": "notionalCap",
            "maintenanceMarginRate": "maintMarginRatio", "maxLeverage": "initialLeverage"}
# cum is published rounded; the recursion in float64 agrees to ~1e-12 relative, 1e-9 leaves room.
CUM_RTOL = 1e-9


@dataclass(frozen=True)
class LeverageBrackets:
    """One symbol's brackets from a ccxt ``LeverageTier`` file.

    Attributes:
        symbol: exchange symbol (``ETHUSDT``; dated futures ``BTCUSDT_250328``).
        ccxt_symbol: the file's key (``ETH/USDT:USDT``).
        currency: notional currency of the floors and caps (``USDT``, ``USDC``; ``BTC`` for ``ETH/BTC:BTC``).
        tiers: floors, max leverage, MMR and the maintenance amount ``cum`` as published (in ``currency``;
            equal to the continuity recursion within ``CUM_RTOL``).
        max_notional: notional cap of the last tier (largest position allowed), in ``currency``.
    """

    symbol: str
    ccxt_symbol: str
    currency: str
    tiers: MarginTiers
    max_notional: float


def exchange_symbol(ccxt_symbol: str) -> str:
    """Binance symbol of a ccxt unified symbol: ``ETH/USDT:USDT`` -> ``ETHUSDT``, ``BTC/USDT:USDT-250328`` ->
    ``BTCUSDT_250328``.

    Raises:
        DeleverInputError: not of the form ``BASE/QUOTE:SETTLE[-YYMMDD]``.
    """
    m = _CCXT_SYMBOL.match(ccxt_symbol)
    if m is None:
        raise DeleverInputError(f"ccxt symbol {ccxt_symbol!r}: expected BASE/QUOTE:SETTLE[-YYMMDD]")
    base, quote, _, expiry = m.groups()
    return f"{base}{quote}" + (f"_{expiry}" if expiry else "")


def _number(value: Any, where: str) -> float:
    # ccxt's unified fields are numbers, the raw info fields strings; both must be finite.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise DeleverInputError(f"{where}: expected a number, got {value!r}")
    try:
        x = float(value)
    except ValueError:
        raise DeleverInputError(f"{where}: expected a number, got {value!r}") from None
    if not math.isfinite(x):
        raise DeleverInputError(f"{where}: expected a finite number, got {value!r}")
    return x


def _parse_symbol(path: Path, key: str, rows: Any) -> LeverageBrackets:
    where = f"{path}: {key}"
    symbol = exchange_symbol(key) if _CCXT_SYMBOL.match(key) else None
    if symbol is None:
        raise DeleverInputError(f"{where}: key is not a ccxt symbol BASE/QUOTE:SETTLE[-YYMMDD]")
    if not isinstance(rows, list) or not rows:
        raise DeleverInputError(f"{where}: expected a non-empty list of LeverageTier objects")
    cols: dict[str, list[float]] = {f: [] for f in (*_UNIFIED, "cum")}
    currency = None
    for i, row in enumerate(rows):
        at = f"{where} tier {i + 1}"
        if not isinstance(row, dict):
            raise DeleverInputError(f"{at}: expected a LeverageTier object, got {type(row).__name__}")
        info = row.get("info")
        if not isinstance(info, dict):
            raise DeleverInputError(f"{at}: field 'info': expected the venue's raw bracket object")
        for f in _UNIFIED:
            if f not in row:
                raise DeleverInputError(f"{at}: field '{f}' missing")
            if _INFO_OF[f] not in info:
                raise DeleverInputError(f"{at}: field 'info.{_INFO_OF[f]}' missing")
            x = _number(row[f], f"{at}: field '{f}'")
            raw = _number(info[_INFO_OF[f]], f"{at}: field 'info.{_INFO_OF[f]}'")
            if x != raw:
                raise DeleverInputError(f"{at}: field '{f}' = {x!r} differs from info.{_INFO_OF[f]} = {raw!r}")
            cols[f].append(x)
        if "cum" not in info:
            raise DeleverInputError(f"{at}: field 'info.cum' missing")
        cols["cum"].append(_number(info["cum"], f"{at}: field 'info.cum'"))
        cur = row.get("currency")
        if not isinstance(cur, str) or not cur:
            raise DeleverInputError(f"{at}: field 'currency': expected a currency code, got {cur!r}")
        if currency is not None and cur != currency:
            raise DeleverInputError(f"{at}: field 'currency' = {cur!r} differs from tier 1 ({currency!r})")
        currency = cur
        if cols["tier"][-1] != i + 1:
            raise DeleverInputError(f"{at}: field 'tier' = {cols['tier'][-1]:g}, expected {i + 1} (tiers in order)")
        if not 0 < cols["maintenanceMarginRate"][-1] <= 1:
            raise DeleverInputError(f"{at}: field 'maintenanceMarginRate' = {cols['maintenanceMarginRate'][-1]!r}, "
                                    "expected in (0, 1]")
        if cols["maxLeverage"][-1] <= 0:
            raise DeleverInputError(f"{at}: field 'maxLeverage' = {cols['maxLeverage'][-1]!r}, expected > 0")
        lo, hi = cols["minNotional"][-1], cols["maxNotional"][-1]
        expect_lo = 0.0 if i == 0 else cols["maxNotional"][-2]
        if lo != expect_lo:
            raise DeleverInputError(f"{at}: field 'minNotional' = {lo!r}, expected {expect_lo!r} "
                                    f"({'the first floor is 0' if i == 0 else 'the previous maxNotional: contiguous'})")
        if hi <= lo:
            raise DeleverInputError(f"{at}: field 'maxNotional' = {hi!r}, expected above minNotional {lo!r}")
    tiers = MarginTiers.from_floors(cols["minNotional"], cols["maxLeverage"], cols["maintenanceMarginRate"], where=where)
    cum = np.asarray(cols["cum"])
    tol = CUM_RTOL * np.maximum(tiers.floor_usd * tiers.mmr, 1.0)
    bad = np.flatnonzero(np.abs(cum - tiers.maint_amount_usd) > tol)
    if bad.size:
        k = int(bad[0])
        raise DeleverInputError(
            f"{where} tier {k + 1}: field 'info.cum' = {float(cum[k])!r} differs from the continuity recursion "
            f"cum_n = cum_(n-1) + floor_n * (MMR_n - MMR_(n-1)) = {float(tiers.maint_amount_usd[k]):.10g}")
    # The venue's published cum (checked above) rather than the float recursion: Binance's own numbers.
    tiers = MarginTiers(tiers.floor_usd, tiers.max_leverage, tiers.mmr, cum)
    return LeverageBrackets(symbol, key, currency, tiers, cols["maxNotional"][-1])


@lru_cache(maxsize=4)
def _read_cached(path: Path, mtime_ns: int, size: int) -> dict[str, LeverageBrackets]:
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            raw = json.load(fh)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DeleverInputError(f"{path}: cannot read ccxt leverage tiers ({exc})") from None
    except json.JSONDecodeError as exc:
        raise DeleverInputError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(raw, dict) or not raw:
        raise DeleverInputError(f"{path}: expected a JSON object mapping ccxt symbols to lists of LeverageTier")
    out: dict[str, LeverageBrackets] = {}
    for key, rows in raw.items():
        b = _parse_symbol(path, key, rows)
        if b.symbol in out:
            raise DeleverInputError(f"{path}: {key}: exchange symbol {b.symbol} also from {out[b.symbol].ccxt_symbol}")
        out[b.symbol] = b
    return out


def read_ccxt_leverage_tiers(path: str | Path) -> dict[str, LeverageBrackets]:
    """Read and check every symbol of a ccxt ``LeverageTier`` JSON file (plain or ``.gz``).

    Args:
        path: the file. Parsed once per (path, modification time, size); later calls reuse the result.

    Returns:
        Brackets by exchange symbol (``ETHUSDT``), in file order.

    Raises:
        DeleverInputError: unreadable file or bad JSON; a key that is not a ccxt symbol; a missing or
            non-finite field; a unified field that differs from its ``info`` field; tiers out of order,
            not contiguous or not starting at 0; MMR outside (0, 1]; max leverage <= 0; ``info.cum``
            that differs from the continuity recursion. The message names the file, symbol, tier and field.
    """
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError:
        raise DeleverInputError(f"{p}: ccxt leverage tier file not found") from None
    return _read_cached(p, st.st_mtime_ns, st.st_size)


def ccxt_margin_tiers(path: str | Path, symbol: str) -> MarginTiers:
    """The :class:`MarginTiers` of one exchange symbol (``ETHUSDT``) or ccxt symbol (``ETH/USDT:USDT``).

    Raises:
        DeleverInputError: any problem of :func:`read_ccxt_leverage_tiers`, or the symbol is not in the file.
    """
    table = read_ccxt_leverage_tiers(path)
    key = exchange_symbol(symbol) if _CCXT_SYMBOL.match(symbol) else symbol
    if key not in table:
        raise DeleverInputError(f"{path}: no brackets for symbol {symbol!r} ({len(table)} symbols in the file)")
    return table[key].tiers
