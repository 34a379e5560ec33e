"""Readers for the StableSims ETH crash-day feeds: 10-minute OHLCV, Uniswap v2 ETH/DAI reserves, gas.

Source: ``shared/data/eth-10min-defi-crash-days-stablesims/`` (PROVENANCE.md there), from
``BerkeleyBlockchain/stablesims`` ``feeds/{eth,eth_dai_liquidity,gas}/<MM-DD-YYYY>.json`` (gzipped).
Days: 2020-03-12, 2020-09-05, 2021-01-11, 2021-01-21, 2021-02-22, 2021-05-19, 2021-06-21 (no
liquidity file for 2020-03-12). One file = one UTC day of 144 ten-minute buckets.

* ``eth_ohlcv_10min/<MM-DD-YYYY>.json.gz`` -> :func:`read_eth_ohlcv_10min`: a JSON list of CoinAPI
  OHLCV records ``time_period_start/end``, ``time_open/close`` (ISO-8601 UTC, 7 fractional digits),
  ``price_open/high/low/close`` (USD), ``volume_traded`` (ETH), ``trades_count``.
* ``uniswap_v2_eth_dai_reserves_10min/<MM-DD-YYYY>.json.gz`` -> :func:`read_uniswap_v2_reserves`: a
  JSON list of ``{"DAI": ..., "WETH": ...}`` reserves of pair ``0xa478...eb11``; element ``i`` is the
  first block in ``[00:00 + 600 i s, +600 s)`` of that day (the day comes from the file name).
* ``eth_gas/<MM-DD-YYYY>.json.gz`` -> :func:`read_eth_gas_10min`: a pandas "table" JSON (``schema`` +
  ``data``) with ``timestamp`` (bucket start, ISO UTC), ``doc_count`` (transactions),
  ``avgGasDay``, ``30.0 Perc``, ``60.0 Perc``, ``90.0 Perc``, ``100.0 Perc`` (gas price, wei). The
  ``datetime`` field is a 12-hour-clock string and is ignored (PROVENANCE.md).

Structural errors raise :class:`~delever.errors.DeleverInputError` naming file, 1-based record and
field. Quirks are detected and reported in ``notes``, never repaired:

* ``eth_ohlcv_10min/09-05-2020``: the 00:20 bucket appears 3 times (records 1-3, identical) and the
  00:00 and 00:10 buckets are missing (documented in PROVENANCE.md). Identical repeated buckets are
  kept and reported (:meth:`EthOhlcv10m.without_exact_duplicates` removes them on request, with a
  note); a repeated bucket whose values differ is an error.
* ``eth_gas/02-22-2021``: every timestamp is on 2020-02-22, a year before the file name's date (gas
  5-16 gwei, a 2020 level; not documented upstream). Any file whose buckets are not on its named
  day is reported.
* Missing buckets (gaps) are listed; a day with fewer than 144 buckets is reported.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from delever.errors import DeleverInputError

__all__ = [
    "BUCKET_MS",
    "EthGas10m",
    "EthOhlcv10m",
    "StableSimsDay",
    "UniswapV2Reserves10m",
    "read_eth_gas_10min",
    "read_eth_ohlcv_10min",
    "read_stablesims_day",
    "read_uniswap_v2_reserves",
]

BUCKET_MS = 600_000
DAY_MS = 86_400_000
_NAME_DAY = re.compile(r"^(\d{2})-(\d{2})-(\d{4})\.json(\.gz)?$")


def _load_json(path: Path, what: str) -> Any:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DeleverInputError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise DeleverInputError(f"{path}: expected a {what}, got a directory") from None
    if path.name.lower().endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DeleverInputError(f"{path}: not a valid gzip file ({exc})") from None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DeleverInputError(f"{path}: not valid JSON ({exc})") from None


def _day_from_name(path: Path) -> int | None:
    """Epoch ms of 00:00 UTC of the ``MM-DD-YYYY.json[.gz]`` file name's day; None if not so named."""
    m = _NAME_DAY.match(path.name)
    if not m:
        return None
    mm, dd, yyyy = (int(g) for g in m.groups()[:3])
    try:
        return int(datetime(yyyy, mm, dd, tzinfo=UTC).timestamp()) * 1000
    except ValueError:
        return None


def _fmt(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def _iso_us(text: Any) -> int:
    if not isinstance(text, str):
        raise ValueError("not a string")
    dt = datetime.fromisoformat(text.strip())
    if dt.tzinfo is None or dt.utcoffset() != UTC.utcoffset(None):
        raise ValueError("not UTC")
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class _Records:
    """Field access on a JSON list of objects with errors naming file, 1-based record and field."""

    def __init__(self, path: Path, rows: Any, what: str) -> None:
        if not isinstance(rows, list):
            raise DeleverInputError(
                f"{path}: expected a JSON list of {what} records, got {type(rows).__name__}"
            )
        if not rows:
            raise DeleverInputError(f"{path}: no records (expected {what} records)")
        self.path, self.rows = path, rows
        for i, r in enumerate(rows):
            if not isinstance(r, dict):
                raise DeleverInputError(f"{path}: record {i + 1}: expected an object, got {type(r).__name__}")

    def err(self, i: int, name: str, value: Any, expected: str) -> DeleverInputError:
        if isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, tuple):
            value = tuple(v.item() if isinstance(v, np.generic) else v for v in value)
        return DeleverInputError(
            f"{self.path}: record {i + 1}: field '{name}' = {value!r}, expected {expected}"
        )

    def get(self, i: int, name: str) -> Any:
        if name not in self.rows[i]:
            raise DeleverInputError(f"{self.path}: record {i + 1}: field '{name}' is missing")
        return self.rows[i][name]

    def floats(self, name: str, *, positive: bool = False, nonneg: bool = False) -> np.ndarray:
        out = np.empty(len(self.rows), dtype=np.float64)
        for i in range(len(self.rows)):
            v = self.get(i, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
                raise self.err(i, name, v, "a finite number")
            if positive and v <= 0:
                raise self.err(i, name, v, "a value > 0")
            if nonneg and v < 0:
                raise self.err(i, name, v, "a value >= 0")
            out[i] = v
        return out

    def ints(self, name: str) -> np.ndarray:
        out = np.empty(len(self.rows), dtype=np.int64)
        for i in range(len(self.rows)):
            v = self.get(i, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise self.err(i, name, v, "an integer >= 0")
            out[i] = v
        return out

    def times_us(self, name: str) -> np.ndarray:
        out = np.empty(len(self.rows), dtype=np.int64)
        for i in range(len(self.rows)):
            v = self.get(i, name)
            try:
                out[i] = _iso_us(v)
            except ValueError:
                raise self.err(i, name, v, "an ISO-8601 UTC time like 2020-03-12T00:00:00Z") from None
        return out


def _bucket_notes(path: Path, start_ms: np.ndarray, named_day: int | None) -> list[str]:
    """Notes on the bucket grid: date vs file name, repeated buckets, gaps, count != 144."""
    notes: list[str] = []
    day0 = named_day
    days = np.unique(start_ms // DAY_MS * DAY_MS)
    if named_day is not None and not (days.size == 1 and int(days[0]) == named_day):
        seen = ", ".join(_fmt(int(d))[:10] for d in days)
        notes.append(f"{path}: file name says {_fmt(named_day)[:10]} but the buckets are on {seen}")
        day0 = int(days[0]) if days.size == 1 else None
    if day0 is None:
        day0 = int(days[0])
    step = np.diff(start_ms)
    rep = np.flatnonzero(step == 0)
    if rep.size:
        groups: dict[int, list[int]] = {}
        for k in rep:
            groups.setdefault(int(start_ms[k]), [int(k) + 1]).append(int(k) + 2)
        for t, rows in groups.items():
            notes.append(
                f"{path}: bucket {_fmt(t)} appears {len(rows)} times (records {', '.join(map(str, rows))}, identical); "
                "kept, not de-duplicated"
            )
    grid = np.arange(day0, day0 + DAY_MS, BUCKET_MS, dtype=np.int64)
    missing = np.setdiff1d(grid, start_ms)
    if missing.size:
        listed = ", ".join(_fmt(int(m))[11:] for m in missing[:12]) + (" ..." if missing.size > 12 else "")
        notes.append(
            f"{path}: {missing.size} of the day's 144 ten-minute buckets missing ({listed}); gaps not filled"
        )
    return notes


def _check_grid(recs: _Records, name: str, start_us: np.ndarray) -> None:
    off = start_us % (BUCKET_MS * 1000) != 0
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise recs.err(i, name, recs.rows[i][name], "a bucket start on the 10-minute grid")
    back = np.diff(start_us) < 0
    if back.any():
        i = int(np.flatnonzero(back)[0]) + 1
        raise recs.err(
            i, name, recs.rows[i][name], f"not before record {i}'s bucket (records must be in time order)"
        )


# =========================================================================== OHLCV
_OHLCV_FIELDS = (
    "time_period_start",
    "time_period_end",
    "time_open",
    "time_close",
    "price_open",
    "price_high",
    "price_low",
    "price_close",
    "volume_traded",
    "trades_count",
)


@dataclass
class EthOhlcv10m:
    """ETH/USD 10-minute OHLCV of one day (CoinAPI schema), struct of arrays, T records in file order.

    Attributes:
        start_ms: int64 (T,), bucket start, epoch ms UTC, on the 10-minute grid, non-decreasing.
        time_open_us: int64 (T,), first trade in the bucket, epoch µs UTC.
        time_close_us: int64 (T,), last trade in the bucket, epoch µs UTC.
        open: float64 (T,), USD per ETH.
        high: float64 (T,), USD.
        low: float64 (T,), USD.
        close: float64 (T,), USD.
        volume_eth: float64 (T,), ETH traded, >= 0.
        trades: int64 (T,), trade count, >= 0.
        path: source file.
        notes: reported quirks (repeated buckets, gaps, date mismatch).
    """

    start_ms: np.ndarray
    time_open_us: np.ndarray
    time_close_us: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume_eth: np.ndarray
    trades: np.ndarray
    path: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.start_ms.shape[0])

    def without_exact_duplicates(self) -> EthOhlcv10m:
        """A copy keeping the first of each run of identical repeated buckets; the removal is noted.

        Only records identical in every field are removed (a differing repeat is rejected on read).
        """
        keep = np.ones(len(self), dtype=bool)
        keep[1:] = self.start_ms[1:] != self.start_ms[:-1]
        dropped = np.flatnonzero(~keep) + 1
        if dropped.size == 0:
            return self
        arrays = {
            f: getattr(self, f)[keep]
            for f in (
                "start_ms",
                "time_open_us",
                "time_close_us",
                "open",
                "high",
                "low",
                "close",
                "volume_eth",
                "trades",
            )
        }
        note = f"{self.path}: records {', '.join(map(str, dropped))} removed as exact duplicates on request"
        return replace(self, **arrays, notes=[*self.notes, note])


def read_eth_ohlcv_10min(path: Path | str) -> EthOhlcv10m:
    """Read one StableSims ``eth_ohlcv_10min/<MM-DD-YYYY>.json(.gz)`` file.

    Args:
        path: the file.

    Returns:
        :class:`EthOhlcv10m` with every record (repeats included) and ``notes``.

    Raises:
        DeleverInputError: not a JSON list of objects; a missing or mistyped field; a bucket that is
            not 10 minutes long or not on the 10-minute grid; buckets out of time order; a repeated
            bucket whose fields differ from the first; ``time_open``/``time_close`` outside the
            bucket or reversed; low > open/close > high; a non-positive price; negative volume.
    """
    p = Path(path)
    recs = _Records(p, _load_json(p, "ETH OHLCV file"), "OHLCV")
    for i, r in enumerate(recs.rows):
        extra = set(r) - set(_OHLCV_FIELDS)
        if extra:
            raise DeleverInputError(
                f"{p}: record {i + 1}: unexpected field(s) {sorted(extra)} (expected {', '.join(_OHLCV_FIELDS)})"
            )
    start_us, end_us = recs.times_us("time_period_start"), recs.times_us("time_period_end")
    start_ms = start_us // 1000
    bad_len = end_us - start_us != BUCKET_MS * 1000
    if bad_len.any():
        i = int(np.flatnonzero(bad_len)[0])
        raise recs.err(
            i, "time_period_end", recs.rows[i]["time_period_end"], "time_period_start + 10 minutes"
        )
    _check_grid(recs, "time_period_start", start_us)
    t_open, t_close = recs.times_us("time_open"), recs.times_us("time_close")
    outside = (t_open < start_us) | (t_close >= end_us) | (t_close < t_open)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise recs.err(
            i,
            "time_open/time_close",
            (recs.rows[i]["time_open"], recs.rows[i]["time_close"]),
            "open <= close within the bucket",
        )
    o, h, lo, c = (
        recs.floats(f, positive=True) for f in ("price_open", "price_high", "price_low", "price_close")
    )
    bad = (lo > np.minimum(o, c)) | (h < np.maximum(o, c))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise recs.err(
            i, "price_low/price_high", (lo[i], h[i]), f"low <= open ({o[i]}), close ({c[i]}) <= high"
        )
    vol = recs.floats("volume_traded", nonneg=True)
    trades = recs.ints("trades_count")
    for k in np.flatnonzero(np.diff(start_ms) == 0):
        if recs.rows[k + 1] != recs.rows[k]:
            raise recs.err(
                int(k) + 1,
                "time_period_start",
                recs.rows[k + 1]["time_period_start"],
                f"a new bucket (record {k + 1} has this bucket with different values)",
            )
    return EthOhlcv10m(
        start_ms=start_ms,
        time_open_us=t_open,
        time_close_us=t_close,
        open=o,
        high=h,
        low=lo,
        close=c,
        volume_eth=vol,
        trades=trades,
        path=str(p),
        notes=_bucket_notes(p, start_ms, _day_from_name(p)),
    )


# =========================================================================== Uniswap v2 reserves
@dataclass
class UniswapV2Reserves10m:
    """Uniswap v2 ETH/DAI pool reserves at the first block of each 10-minute bucket of one day.

    Attributes:
        start_ms: int64 (T,), bucket start, epoch ms UTC (day 00:00 + 600 s * index).
        dai: float64 (T,), DAI reserve (token units), > 0.
        weth: float64 (T,), WETH reserve (token units), > 0.
        path: source file.
        notes: reported findings (bucket count other than 144).
    """

    start_ms: np.ndarray
    dai: np.ndarray
    weth: np.ndarray
    path: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.start_ms.shape[0])

    @property
    def spot_price(self) -> np.ndarray:
        """float64 (T,): pool price, DAI per WETH (``dai / weth``)."""
        return self.dai / self.weth

    def sell_weth(self, amount_weth: float | np.ndarray, fee: float = 0.003) -> np.ndarray:
        """DAI received for selling ``amount_weth`` into the pool at each bucket (x*y=k, 0.3 % fee).

        Args:
            amount_weth: WETH sold, scalar or (T,) array, >= 0.
            fee: Uniswap v2 LP fee, fraction.

        Returns:
            float64 (T,): DAI out = ``dai * a (1-fee) / (weth + a (1-fee))``.
        """
        a = np.asarray(amount_weth, dtype=np.float64) * (1.0 - fee)
        return self.dai * a / (self.weth + a)


def read_uniswap_v2_reserves(path: Path | str, day: str | None = None) -> UniswapV2Reserves10m:
    """Read one ``uniswap_v2_eth_dai_reserves_10min/<MM-DD-YYYY>.json(.gz)`` file.

    Args:
        path: the file.
        day: UTC day ``YYYY-MM-DD`` of element 0's bucket; default from the file name.

    Returns:
        :class:`UniswapV2Reserves10m`.

    Raises:
        DeleverInputError: not a list of ``{"DAI", "WETH"}`` objects; a non-positive or non-numeric
            reserve; no day given and none in the file name; more than 144 elements.
    """
    p = Path(path)
    if day is not None:
        try:
            day0 = int(datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()) * 1000
        except ValueError:
            raise DeleverInputError(f"day: expected 'YYYY-MM-DD', got {day!r}") from None
    else:
        named = _day_from_name(p)
        if named is None:
            raise DeleverInputError(f"{p}: file name is not MM-DD-YYYY.json[.gz]; pass day='YYYY-MM-DD'")
        day0 = named
    recs = _Records(p, _load_json(p, "Uniswap v2 reserves file"), "reserve")
    for i, r in enumerate(recs.rows):
        if set(r) != {"DAI", "WETH"}:
            raise DeleverInputError(f"{p}: record {i + 1}: fields {sorted(r)}, expected exactly DAI and WETH")
    n = len(recs.rows)
    if n > 144:
        raise DeleverInputError(f"{p}: {n} records, expected at most 144 ten-minute buckets in a day")
    notes = (
        []
        if n == 144
        else [f"{p}: {n} buckets, expected 144 (the last {144 - n} of the day absent; not filled)"]
    )
    return UniswapV2Reserves10m(
        start_ms=day0 + BUCKET_MS * np.arange(n, dtype=np.int64),
        dai=recs.floats("DAI", positive=True),
        weth=recs.floats("WETH", positive=True),
        path=str(p),
        notes=notes,
    )


# =========================================================================== gas
_GAS_FIELDS = (
    "datetime",
    "timestamp",
    "doc_count",
    "avgGasDay",
    "30.0 Perc",
    "60.0 Perc",
    "90.0 Perc",
    "100.0 Perc",
)


@dataclass
class EthGas10m:
    """Ethereum gas prices per 10-minute bucket of one day (Anyblock Analytics via StableSims).

    Attributes:
        start_ms: int64 (T,), bucket start, epoch ms UTC.
        tx_count: int64 (T,), transactions in the bucket (``doc_count``).
        avg_wei: float64 (T,), mean gas price, wei.
        p30_wei, p60_wei, p90_wei, p100_wei: float64 (T,), gas-price percentiles, wei, non-decreasing.
        path: source file.
        notes: reported findings (date mismatch with the file name, gaps).
    """

    start_ms: np.ndarray
    tx_count: np.ndarray
    avg_wei: np.ndarray
    p30_wei: np.ndarray
    p60_wei: np.ndarray
    p90_wei: np.ndarray
    p100_wei: np.ndarray
    path: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.start_ms.shape[0])

    @property
    def avg_gwei(self) -> np.ndarray:
        """float64 (T,): mean gas price, gwei."""
        return self.avg_wei / 1e9


def read_eth_gas_10min(path: Path | str) -> EthGas10m:
    """Read one ``eth_gas/<MM-DD-YYYY>.json(.gz)`` pandas-table file.

    Raises:
        DeleverInputError: not a ``{"schema": {"fields": [...]}, "data": [...]}`` document; schema
            fields other than the documented ones; a missing or mistyped value; buckets off the
            10-minute grid or out of order; percentiles decreasing; a non-positive gas price.
    """
    p = Path(path)
    doc = _load_json(p, "gas file")
    try:
        names = tuple(f["name"] for f in doc["schema"]["fields"])
        rows = doc["data"]
    except (TypeError, KeyError):
        raise DeleverInputError(
            f"{p}: expected a pandas table JSON with 'schema.fields' and 'data'"
        ) from None
    if names != _GAS_FIELDS:
        raise DeleverInputError(f"{p}: schema fields {list(names)}, expected {list(_GAS_FIELDS)}")
    recs = _Records(p, rows, "gas")
    for i, r in enumerate(recs.rows):
        if set(r) != set(_GAS_FIELDS):
            raise DeleverInputError(f"{p}: record {i + 1}: fields {sorted(r)}, expected {list(_GAS_FIELDS)}")
    start_us = recs.times_us("timestamp")
    _check_grid(recs, "timestamp", start_us)
    start_ms = start_us // 1000
    dup = np.diff(start_ms) == 0
    if dup.any():
        i = int(np.flatnonzero(dup)[0]) + 1
        raise recs.err(i, "timestamp", recs.rows[i]["timestamp"], "a new bucket (repeated timestamp)")
    pct = [recs.floats(f, positive=True) for f in ("30.0 Perc", "60.0 Perc", "90.0 Perc", "100.0 Perc")]
    for a, b, name in (
        (pct[0], pct[1], "60.0 Perc"),
        (pct[1], pct[2], "90.0 Perc"),
        (pct[2], pct[3], "100.0 Perc"),
    ):
        down = b < a
        if down.any():
            i = int(np.flatnonzero(down)[0])
            raise recs.err(i, name, b[i], f">= the lower percentile ({a[i]})")
    return EthGas10m(
        start_ms=start_ms,
        tx_count=recs.ints("doc_count"),
        avg_wei=recs.floats("avgGasDay", positive=True),
        p30_wei=pct[0],
        p60_wei=pct[1],
        p90_wei=pct[2],
        p100_wei=pct[3],
        path=str(p),
        notes=_bucket_notes(p, start_ms, _day_from_name(p)),
    )


# =========================================================================== one day, all feeds
@dataclass
class StableSimsDay:
    """The three StableSims feeds of one day; ``reserves`` is None where no file exists (2020-03-12)."""

    day: str
    ohlcv: EthOhlcv10m
    reserves: UniswapV2Reserves10m | None
    gas: EthGas10m
    notes: list[str] = field(default_factory=list)


def read_stablesims_day(folder: Path | str, day: str) -> StableSimsDay:
    """Read the OHLCV, Uniswap reserves and gas files of ``day`` from the StableSims folder.

    Args:
        folder: ``eth-10min-defi-crash-days-stablesims`` directory.
        day: UTC day ``YYYY-MM-DD``.

    Returns:
        :class:`StableSimsDay`; ``notes`` gathers every file's notes plus a note for a missing
        reserves file.

    Raises:
        DeleverInputError: bad ``day``, a missing OHLCV or gas file, or any reader error.
    """
    try:
        d = datetime.strptime(day, "%Y-%m-%d")
    except ValueError:
        raise DeleverInputError(f"day: expected 'YYYY-MM-DD', got {day!r}") from None
    f = Path(folder)
    name = d.strftime("%m-%d-%Y") + ".json.gz"
    ohlcv = read_eth_ohlcv_10min(f / "eth_ohlcv_10min" / name)
    gas = read_eth_gas_10min(f / "eth_gas" / name)
    rp = f / "uniswap_v2_eth_dai_reserves_10min" / name
    reserves = read_uniswap_v2_reserves(rp) if rp.exists() else None
    notes = [
        *ohlcv.notes,
        *gas.notes,
        *(reserves.notes if reserves else [f"{rp}: no Uniswap reserves file for {day}"]),
    ]
    return StableSimsDay(day=day, ohlcv=ohlcv, reserves=reserves, gas=gas, notes=notes)
