"""Readers for Hyperliquid data: the 2025-10-10 ADL event tables and the official 2023 files.

2025-10-10 liquidation + auto-deleveraging (ADL) cascade, ``shared/data/hyperliquid-2025-10-10-adl/``
(PROVENANCE.md there; derived by ConejoCapital/HyperReplay and HyperMultiAssetedADL from
Hyperliquid's public ``node_fills``/``misc_events`` archives; non-commercial licence). Event window
21:15:00-21:27:00 UTC; upstream totals 63,637 liquidation fills + 34,983 ADL fills, 162 coins,
19,337 ADL'd users, 2.103 bn USD ADL notional.

* ``adl_by_coin_REALTIME.csv`` -> :func:`read_adl_by_coin` (162 rows).
* ``adl_net_volume_full_12min.csv`` -> :func:`read_adl_net_volume` (162 rows).
* ``adl_by_user_REALTIME.csv.gz`` -> :func:`read_adl_by_user` (19,337 rows).
* ``high_leverage_outliers_analysis.csv.gz`` -> :func:`read_adl_outlier_fills` (480 per-fill rows).
* ``cascade_timing_results.json`` -> :func:`read_cascade_timing` (186 per-second entries, first
  liquidation 21:15:03.127372, first ADL 61.7045 s later).
* ``insurance_fund_results.json``, ``batch_processing_results.json``,
  ``per_asset_isolation_results.json``, ``realtime_analysis_summary.json`` -> the typed readers of the
  same names.
* :func:`read_adl_event` reads the whole folder and cross-checks the totals between files.

Official early-mainnet files (Feb-May 2023), ``shared/data/hyperliquid-2023-official/``:
``liquidations.csv`` (62 rows), ``non_mm_trades.csv.gz`` (35,691), ``non_mm_ledger_updates.csv``
(560) -> :func:`read_hl_liquidations_2023`, :func:`read_hl_trades_2023`, :func:`read_hl_ledger_2023`.

Leverage, account values and equity in the ADL tables are the upstream authors' reconstruction
("cash-only baseline"), not exchange-published; ADL prices and sizes are exchange fills. Nothing is
repaired: a missing or unparsable value raises :class:`~delever.errors.DeleverInputError` naming the
file, the 1-based data row (header not counted) or JSON entry, and the field.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from delever.data.tardis import (
    _bad,
    _col_bool,
    _col_choice,
    _col_float,
    _col_int,
    _col_iso_us,
    _col_str,
    _first,
    _iso_to_us,
    _read_csv_strings,
    _StrTable,
)
from delever.errors import DeleverInputError

__all__ = [
    "AdlByCoin",
    "AdlByUser",
    "AdlEvent",
    "AdlNetVolume",
    "AdlOutlierFills",
    "BatchProcessing",
    "CascadeTiming",
    "HlLedger2023",
    "HlLiquidations2023",
    "HlTrades2023",
    "InsuranceFund",
    "PerAssetIsolation",
    "RealtimeSummary",
    "read_adl_by_coin",
    "read_adl_by_user",
    "read_adl_event",
    "read_adl_net_volume",
    "read_adl_outlier_fills",
    "read_batch_processing",
    "read_cascade_timing",
    "read_hl_ledger_2023",
    "read_hl_liquidations_2023",
    "read_hl_trades_2023",
    "read_insurance_fund",
    "read_per_asset_isolation",
    "read_realtime_summary",
]


def _nonneg(t: _StrTable, name: str, v: np.ndarray) -> np.ndarray:
    neg = v < 0
    if neg.any():
        i = _first(neg)
        raise _bad(t, i, name, t.cell(name, i), "a value >= 0")
    return v


def _positive(t: _StrTable, name: str, v: np.ndarray) -> np.ndarray:
    bad = v <= 0
    if bad.any():
        i = _first(bad)
        raise _bad(t, i, name, t.cell(name, i), "a value > 0")
    return v


def _unique(t: _StrTable, name: str, v: np.ndarray) -> np.ndarray:
    _, idx, counts = np.unique(v, return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = v[idx[counts > 1][0]]
        rows = np.flatnonzero(v == dup)[:2] + 1
        raise DeleverInputError(
            f"{t.path}: row {rows[1]}: field '{name}' = {str(dup)!r} repeats row {rows[0]}, expected one row per {name}"
        )
    return v


# =========================================================================== 2025-10-10 CSV tables
ADL_BY_COIN_COLUMNS = (
    "coin",
    "adl_notional",
    "closed_pnl",
    "leverage_realtime",
    "pnl_percent",
    "is_negative_equity",
    "num_users",
    "num_events",
)


@dataclass
class AdlByCoin:
    """ADL totals per coin (``adl_by_coin_REALTIME.csv``), struct of arrays, C coins.

    Attributes:
        coin: str (C,), Hyperliquid coin name (unique).
        adl_notional_usd: float64 (C,), USD notional of ADL fills.
        closed_pnl_usd: float64 (C,), closed PnL of the ADL'd positions, USD.
        leverage_realtime: float64 (C,), mean reconstructed leverage (heavy-tailed; derived).
        pnl_percent: float64 (C,), closed PnL in percent, as computed upstream.
        negative_equity_count: int64 (C,), ADL'd accounts with negative reconstructed equity.
        num_users: int64 (C,), distinct ADL'd users in that coin.
        num_events: int64 (C,), ADL fills (sum over coins = 34,983).
        path: source file.
    """

    coin: np.ndarray
    adl_notional_usd: np.ndarray
    closed_pnl_usd: np.ndarray
    leverage_realtime: np.ndarray
    pnl_percent: np.ndarray
    negative_equity_count: np.ndarray
    num_users: np.ndarray
    num_events: np.ndarray
    path: str

    def __len__(self) -> int:
        return int(self.coin.shape[0])


def read_adl_by_coin(path: Path | str) -> AdlByCoin:
    """Read ``adl_by_coin_REALTIME.csv``.

    Raises:
        DeleverInputError: wrong header, unparsable value, duplicate coin, negative notional/counts.
    """
    t = _read_csv_strings(Path(path), ADL_BY_COIN_COLUMNS, "HyperReplay adl_by_coin CSV")
    return AdlByCoin(
        coin=_unique(t, "coin", _col_str(t, "coin")),
        adl_notional_usd=_nonneg(t, "adl_notional", _col_float(t, "adl_notional")),
        closed_pnl_usd=_col_float(t, "closed_pnl"),
        leverage_realtime=_col_float(t, "leverage_realtime"),
        pnl_percent=_col_float(t, "pnl_percent"),
        negative_equity_count=_nonneg(t, "is_negative_equity", _col_int(t, "is_negative_equity")),
        num_users=_nonneg(t, "num_users", _col_int(t, "num_users")),
        num_events=_nonneg(t, "num_events", _col_int(t, "num_events")),
        path=str(t.path),
    )


ADL_NET_VOLUME_COLUMNS = (
    "ticker",
    "net_volume",
    "net_notional_usd",
    "total_pnl",
    "num_adl_events",
    "avg_price",
)


@dataclass
class AdlNetVolume:
    """ADL volume per coin over the 12-minute window (``adl_net_volume_full_12min.csv``), C coins.

    Attributes:
        coin: str (C,), unique (upstream column ``ticker``).
        net_volume: float64 (C,), coin units ADL'd.
        net_notional_usd: float64 (C,), USD.
        total_pnl_usd: float64 (C,), closed PnL of ADL'd positions, USD.
        num_adl_events: int64 (C,), ADL fills.
        avg_price: float64 (C,), USD per coin (BTC 106,428; ETH 3,468).
        path: source file.
    """

    coin: np.ndarray
    net_volume: np.ndarray
    net_notional_usd: np.ndarray
    total_pnl_usd: np.ndarray
    num_adl_events: np.ndarray
    avg_price: np.ndarray
    path: str

    def __len__(self) -> int:
        return int(self.coin.shape[0])


def read_adl_net_volume(path: Path | str) -> AdlNetVolume:
    """Read ``adl_net_volume_full_12min.csv``.

    Raises:
        DeleverInputError: wrong header, unparsable value, duplicate ticker, non-positive price,
            negative volume/notional/count.
    """
    t = _read_csv_strings(Path(path), ADL_NET_VOLUME_COLUMNS, "HyperReplay adl_net_volume CSV")
    return AdlNetVolume(
        coin=_unique(t, "ticker", _col_str(t, "ticker")),
        net_volume=_nonneg(t, "net_volume", _col_float(t, "net_volume")),
        net_notional_usd=_nonneg(t, "net_notional_usd", _col_float(t, "net_notional_usd")),
        total_pnl_usd=_col_float(t, "total_pnl"),
        num_adl_events=_nonneg(t, "num_adl_events", _col_int(t, "num_adl_events")),
        avg_price=_positive(t, "avg_price", _col_float(t, "avg_price")),
        path=str(t.path),
    )


ADL_BY_USER_COLUMNS = (
    "user",
    "adl_notional",
    "closed_pnl",
    "leverage_realtime",
    "pnl_percent",
    "account_value_realtime",
    "is_negative_equity",
    "num_adl_events",
)


@dataclass
class AdlByUser:
    """ADL totals per ADL'd user (``adl_by_user_REALTIME.csv.gz``), U users.

    Attributes:
        user: str (U,), 0x address (unique).
        adl_notional_usd: float64 (U,), USD.
        closed_pnl_usd: float64 (U,), USD.
        leverage_realtime: float64 (U,), reconstructed leverage (derived).
        pnl_percent: float64 (U,), as computed upstream.
        account_value_usd: float64 (U,), reconstructed account value (derived), USD.
        is_negative_equity: bool (U,).
        num_adl_events: int64 (U,), ADL fills of that user.
        path: source file.
    """

    user: np.ndarray
    adl_notional_usd: np.ndarray
    closed_pnl_usd: np.ndarray
    leverage_realtime: np.ndarray
    pnl_percent: np.ndarray
    account_value_usd: np.ndarray
    is_negative_equity: np.ndarray
    num_adl_events: np.ndarray
    path: str

    def __len__(self) -> int:
        return int(self.user.shape[0])


def read_adl_by_user(path: Path | str) -> AdlByUser:
    """Read ``adl_by_user_REALTIME.csv(.gz)``.

    Raises:
        DeleverInputError: wrong header, unparsable value, duplicate user, negative notional/count.
    """
    t = _read_csv_strings(Path(path), ADL_BY_USER_COLUMNS, "HyperReplay adl_by_user CSV")
    return AdlByUser(
        user=_unique(t, "user", _col_str(t, "user")),
        adl_notional_usd=_nonneg(t, "adl_notional", _col_float(t, "adl_notional")),
        closed_pnl_usd=_col_float(t, "closed_pnl"),
        leverage_realtime=_col_float(t, "leverage_realtime"),
        pnl_percent=_col_float(t, "pnl_percent"),
        account_value_usd=_col_float(t, "account_value_realtime"),
        is_negative_equity=_col_bool(t, "is_negative_equity"),
        num_adl_events=_nonneg(t, "num_adl_events", _col_int(t, "num_adl_events")),
        path=str(t.path),
    )


ADL_OUTLIER_COLUMNS = (
    "user",
    "coin",
    "time",
    "adl_price",
    "adl_size",
    "adl_notional",
    "closed_pnl",
    "position_size",
    "entry_price",
    "account_value_realtime",
    "total_unrealized_pnl",
    "total_equity",
    "is_negative_equity",
    "leverage_realtime",
    "position_unrealized_pnl",
    "pnl_percent",
    "liquidated_user",
    "timestamp",
    "time_str",
)


@dataclass
class AdlOutlierFills:
    """Per-ADL-fill rows of very high reconstructed leverage (``high_leverage_outliers_analysis``), F fills.

    Attributes:
        user: str (F,), ADL'd (profitable, counterparty) user.
        coin: str (F,).
        time_ms: int64 (F,), fill time, epoch ms UTC (21:16:04.831-21:22:16.308 on 2025-10-10).
        adl_price: float64 (F,), USD per coin (exchange fill).
        adl_size: float64 (F,), coin units, > 0.
        adl_notional_usd: float64 (F,), ``adl_price * adl_size``.
        closed_pnl_usd: float64 (F,).
        position_size: float64 (F,), signed coin units before the fill (negative = short).
        entry_price: float64 (F,), USD.
        account_value_usd: float64 (F,), reconstructed (derived).
        total_unrealized_pnl_usd: float64 (F,), derived.
        total_equity_usd: float64 (F,), derived.
        is_negative_equity: bool (F,).
        leverage_realtime: float64 (F,), derived.
        position_unrealized_pnl_usd: float64 (F,), derived.
        pnl_percent: float64 (F,).
        liquidated_user: str (F,), the counterparty whose bankruptcy triggered the ADL.
        path: source file.
    """

    user: np.ndarray
    coin: np.ndarray
    time_ms: np.ndarray
    adl_price: np.ndarray
    adl_size: np.ndarray
    adl_notional_usd: np.ndarray
    closed_pnl_usd: np.ndarray
    position_size: np.ndarray
    entry_price: np.ndarray
    account_value_usd: np.ndarray
    total_unrealized_pnl_usd: np.ndarray
    total_equity_usd: np.ndarray
    is_negative_equity: np.ndarray
    leverage_realtime: np.ndarray
    position_unrealized_pnl_usd: np.ndarray
    pnl_percent: np.ndarray
    liquidated_user: np.ndarray
    path: str

    def __len__(self) -> int:
        return int(self.time_ms.shape[0])


def read_adl_outlier_fills(path: Path | str) -> AdlOutlierFills:
    """Read ``high_leverage_outliers_analysis.csv(.gz)``.

    The redundant ``timestamp`` (``YYYY-MM-DD HH:MM:SS.fff`` UTC) and ``time_str`` (``HH:MM:SS``)
    columns must agree with ``time`` (epoch ms); a disagreement is an error.

    Raises:
        DeleverInputError: wrong header, unparsable value, non-positive price/size, inconsistent
            time columns.
    """
    t = _read_csv_strings(Path(path), ADL_OUTLIER_COLUMNS, "HyperMultiAssetedADL high_leverage_outliers CSV")
    time_ms = _col_int(t, "time")
    stamp_us = _col_iso_us(t, "timestamp")
    off = stamp_us != time_ms * 1000
    if off.any():
        i = _first(off)
        raise _bad(
            t, i, "timestamp", t.cell("timestamp", i), f"the same instant as time = {int(time_ms[i])} ms"
        )
    for i, (ms, s) in enumerate(zip(time_ms, t.texts("time_str"), strict=True)):
        sec = (int(ms) // 1000) % 86_400
        want = f"{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}"
        if s.strip() != want:
            raise _bad(t, i, "time_str", s, f"{want} (from time = {int(ms)} ms)")
    return AdlOutlierFills(
        user=_col_str(t, "user"),
        coin=_col_str(t, "coin"),
        time_ms=time_ms,
        adl_price=_positive(t, "adl_price", _col_float(t, "adl_price")),
        adl_size=_positive(t, "adl_size", _col_float(t, "adl_size")),
        adl_notional_usd=_positive(t, "adl_notional", _col_float(t, "adl_notional")),
        closed_pnl_usd=_col_float(t, "closed_pnl"),
        position_size=_col_float(t, "position_size"),
        entry_price=_positive(t, "entry_price", _col_float(t, "entry_price")),
        account_value_usd=_col_float(t, "account_value_realtime"),
        total_unrealized_pnl_usd=_col_float(t, "total_unrealized_pnl"),
        total_equity_usd=_col_float(t, "total_equity"),
        is_negative_equity=_col_bool(t, "is_negative_equity"),
        leverage_realtime=_col_float(t, "leverage_realtime"),
        position_unrealized_pnl_usd=_col_float(t, "position_unrealized_pnl"),
        pnl_percent=_col_float(t, "pnl_percent"),
        liquidated_user=_col_str(t, "liquidated_user"),
        path=str(t.path),
    )


# =========================================================================== 2025-10-10 JSON results
class _Json:
    """Typed access to one JSON document with errors naming file and key path."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            raw = self.path.read_bytes()
            if self.path.name.lower().endswith(".gz"):
                raw = gzip.decompress(raw)
            self.doc = json.loads(raw)
        except FileNotFoundError:
            raise DeleverInputError(f"{self.path}: JSON results file not found") from None
        except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DeleverInputError(f"{self.path}: not valid JSON ({exc})") from None
        if not isinstance(self.doc, dict):
            raise DeleverInputError(
                f"{self.path}: expected a JSON object at top level, got {type(self.doc).__name__}"
            )

    def err(self, where: str, value: Any, expected: str) -> DeleverInputError:
        if isinstance(value, np.generic):
            value = value.item()
        return DeleverInputError(f"{self.path}: field '{where}' = {value!r:.80}, expected {expected}")

    def get(self, obj: dict, key: str, where: str) -> Any:
        if not isinstance(obj, dict) or key not in obj:
            raise DeleverInputError(f"{self.path}: field '{where}' is missing")
        return obj[key]

    def num(self, obj: dict, key: str, where: str | None = None) -> float:
        w = where or key
        v = self.get(obj, key, w)
        if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
            raise self.err(w, v, "a finite number")
        return float(v)

    def int_(self, obj: dict, key: str, where: str | None = None, minimum: int = 0) -> int:
        w = where or key
        v = self.get(obj, key, w)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise self.err(w, v, f"an integer >= {minimum}")
        return int(v)

    def str_(self, obj: dict, key: str, where: str | None = None) -> str:
        w = where or key
        v = self.get(obj, key, w)
        if not isinstance(v, str) or not v:
            raise self.err(w, v, "a non-empty string")
        return v

    def time_us(self, obj: dict, key: str, where: str | None = None) -> int:
        w = where or key
        v = self.str_(obj, key, w)
        try:
            return _iso_to_us(v)
        except ValueError:
            raise self.err(w, v, "an ISO-8601 UTC time") from None

    def list_(self, obj: dict, key: str, where: str | None = None) -> list:
        w = where or key
        v = self.get(obj, key, w)
        if not isinstance(v, list):
            raise self.err(w, v, "a list")
        return v


@dataclass
class CascadeTiming:
    """Per-second liquidation/ADL counts of the 2025-10-10 cascade (``cascade_timing_results.json``).

    Seconds are whole-second offsets from the first liquidation; only seconds with at least one
    event are listed upstream (186 of 0..714), and the listed counts sum to all 63,637 liquidation
    and 34,983 ADL fills, so an absent second had none.

    Attributes:
        event_start_us: epoch µs UTC of ``event_start`` (= first liquidation, 21:15:03.127372).
        first_liquidation_us: epoch µs UTC.
        first_adl_us: epoch µs UTC (21:16:04.831874).
        delay_s: first ADL minus first liquidation, s (61.704502, checked against the two times).
        second: int64 (S,), strictly increasing offsets, s.
        liquidations: int64 (S,), liquidation fills in that second.
        adls: int64 (S,), ADL fills in that second.
        top_burst_second: int64 (B,), the upstream "top bursts" (each checked against the timeline).
        top_burst_liquidations: int64 (B,).
        top_burst_adls: int64 (B,).
        path: source file.
    """

    event_start_us: int
    first_liquidation_us: int
    first_adl_us: int
    delay_s: float
    second: np.ndarray
    liquidations: np.ndarray
    adls: np.ndarray
    top_burst_second: np.ndarray
    top_burst_liquidations: np.ndarray
    top_burst_adls: np.ndarray
    path: str

    def dense_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Counts for every second 0..max(second), int64 (max+1,) each: (liquidations, adls).

        Seconds not listed upstream are 0 (they had no event: the listed counts add up to the totals).
        """
        n = int(self.second[-1]) + 1
        liq = np.bincount(self.second, weights=self.liquidations, minlength=n).astype(np.int64)
        adl = np.bincount(self.second, weights=self.adls, minlength=n).astype(np.int64)
        return liq, adl


def read_cascade_timing(path: Path | str) -> CascadeTiming:
    """Read ``cascade_timing_results.json``.

    Raises:
        DeleverInputError: a missing or mistyped field (named by its JSON path), seconds not strictly
            increasing, negative counts, ``delay_seconds`` not equal to ``first_adl - first_liquidation``
            (to 1 µs), or a top burst that does not match the timeline entry of its second.
    """
    j = _Json(path)
    d = j.doc
    start = j.time_us(d, "event_start")
    first_liq = j.time_us(d, "first_liquidation")
    first_adl = j.time_us(d, "first_adl")
    delay = j.num(d, "delay_seconds")
    if abs((first_adl - first_liq) - delay * 1e6) > 1.0:
        raise j.err(
            "delay_seconds", delay, f"first_adl - first_liquidation = {(first_adl - first_liq) / 1e6} s"
        )
    rows = j.list_(d, "timeline")
    if not rows:
        raise j.err("timeline", rows, "at least one entry")
    sec = np.array([j.int_(r, "second", f"timeline[{i}].second") for i, r in enumerate(rows)], dtype=np.int64)
    liq = np.array(
        [j.int_(r, "liquidations", f"timeline[{i}].liquidations") for i, r in enumerate(rows)], np.int64
    )
    adl = np.array([j.int_(r, "adls", f"timeline[{i}].adls") for i, r in enumerate(rows)], dtype=np.int64)
    back = np.diff(sec) <= 0
    if back.any():
        i = _first(back) + 1
        raise j.err(f"timeline[{i}].second", int(sec[i]), f"> timeline[{i - 1}].second = {int(sec[i - 1])}")
    by_sec = dict(zip(sec.tolist(), zip(liq.tolist(), adl.tolist(), strict=True), strict=True))
    bursts = j.list_(d, "top_bursts")
    bs = np.array(
        [j.int_(b, "second", f"top_bursts[{i}].second") for i, b in enumerate(bursts)], dtype=np.int64
    )
    bl = np.array(
        [j.int_(b, "liquidations", f"top_bursts[{i}].liquidations") for i, b in enumerate(bursts)], np.int64
    )
    ba = np.array([j.int_(b, "adls", f"top_bursts[{i}].adls") for i, b in enumerate(bursts)], dtype=np.int64)
    for i, (s, lq, ad) in enumerate(zip(bs.tolist(), bl.tolist(), ba.tolist(), strict=True)):
        if by_sec.get(s) != (lq, ad):
            raise j.err(f"top_bursts[{i}]", bursts[i], f"the timeline entry of second {s}: {by_sec.get(s)}")
    return CascadeTiming(
        event_start_us=start,
        first_liquidation_us=first_liq,
        first_adl_us=first_adl,
        delay_s=delay,
        second=sec,
        liquidations=liq,
        adls=adl,
        top_burst_second=bs,
        top_burst_liquidations=bl,
        top_burst_adls=ba,
        path=str(j.path),
    )


@dataclass
class InsuranceFund:
    """Underwater (negative-equity) accounts among ADL events (``insurance_fund_results.json``).

    Attributes:
        total_adl_events: ADL fills analysed (34,983).
        underwater_accounts: ADL'd positions whose account had negative reconstructed equity (302).
        underwater_share_percent: ``100 * underwater_accounts / total_adl_events`` (checked, 1e-9).
        total_negative_equity_usd: sum of negative equity, USD (< 0).
        top_user: str (K,), the listed most-underwater accounts.
        top_coin: str (K,).
        top_total_equity_usd: float64 (K,), USD (< 0).
        top_adl_notional_usd: float64 (K,), USD.
        path: source file.
    """

    total_adl_events: int
    underwater_accounts: int
    underwater_share_percent: float
    total_negative_equity_usd: float
    top_user: np.ndarray
    top_coin: np.ndarray
    top_total_equity_usd: np.ndarray
    top_adl_notional_usd: np.ndarray
    path: str


def read_insurance_fund(path: Path | str) -> InsuranceFund:
    """Read ``insurance_fund_results.json``.

    Raises:
        DeleverInputError: missing/mistyped field, share not matching the two counts, non-negative
            total negative equity.
    """
    j = _Json(path)
    d = j.doc
    total = j.int_(d, "total_adl_events")
    under = j.int_(d, "underwater_accounts")
    share = j.num(d, "underwater_share_percent")
    if total == 0 or abs(share - 100.0 * under / total) > 1e-9:
        raise j.err("underwater_share_percent", share, "100 * underwater_accounts / total_adl_events")
    neg = j.num(d, "total_negative_equity")
    if neg > 0:
        raise j.err("total_negative_equity", neg, "a value <= 0")
    top = j.list_(d, "top_underwater_accounts")
    return InsuranceFund(
        total_adl_events=total,
        underwater_accounts=under,
        underwater_share_percent=share,
        total_negative_equity_usd=neg,
        top_user=np.array(
            [j.str_(r, "user", f"top_underwater_accounts[{i}].user") for i, r in enumerate(top)], np.str_
        ),
        top_coin=np.array(
            [j.str_(r, "coin", f"top_underwater_accounts[{i}].coin") for i, r in enumerate(top)], np.str_
        ),
        top_total_equity_usd=np.array(
            [
                j.num(r, "total_equity", f"top_underwater_accounts[{i}].total_equity")
                for i, r in enumerate(top)
            ],
            dtype=np.float64,
        ),
        top_adl_notional_usd=np.array(
            [
                j.num(r, "adl_notional", f"top_underwater_accounts[{i}].adl_notional")
                for i, r in enumerate(top)
            ],
            dtype=np.float64,
        ),
        path=str(j.path),
    )


@dataclass
class BatchProcessing:
    """Timestamps shared by liquidations and ADLs (``batch_processing_results.json``).

    Attributes:
        total_timestamps: distinct event timestamps (224).
        timestamps_with_both: timestamps carrying both liquidations and ADLs (100).
        initial_liquidation_only_seconds: seconds of liquidations before the first ADL (61).
        first_shared_timestamp_us: epoch µs UTC (21:16:04.831874).
        burst_timestamp_us: int64 (B,), the top shared bursts, epoch µs UTC.
        burst_liquidations: int64 (B,).
        burst_adls: int64 (B,).
        path: source file.
    """

    total_timestamps: int
    timestamps_with_both: int
    initial_liquidation_only_seconds: int
    first_shared_timestamp_us: int
    burst_timestamp_us: np.ndarray
    burst_liquidations: np.ndarray
    burst_adls: np.ndarray
    path: str


def read_batch_processing(path: Path | str) -> BatchProcessing:
    """Read ``batch_processing_results.json``.

    Raises:
        DeleverInputError: missing/mistyped field, or more shared timestamps than timestamps.
    """
    j = _Json(path)
    d = j.doc
    total = j.int_(d, "total_timestamps")
    both = j.int_(d, "timestamps_with_both")
    if both > total:
        raise j.err("timestamps_with_both", both, f"<= total_timestamps = {total}")
    bursts = j.list_(d, "top_shared_bursts")
    w = "top_shared_bursts[{}].{}"
    return BatchProcessing(
        total_timestamps=total,
        timestamps_with_both=both,
        initial_liquidation_only_seconds=j.int_(d, "initial_liquidation_only_seconds"),
        first_shared_timestamp_us=j.time_us(d, "first_shared_timestamp"),
        burst_timestamp_us=np.array(
            [j.time_us(b, "timestamp", w.format(i, "timestamp")) for i, b in enumerate(bursts)], np.int64
        ),
        burst_liquidations=np.array(
            [j.int_(b, "liquidations", w.format(i, "liquidations")) for i, b in enumerate(bursts)], np.int64
        ),
        burst_adls=np.array([j.int_(b, "adls", w.format(i, "adls")) for i, b in enumerate(bursts)], np.int64),
        path=str(j.path),
    )


@dataclass
class PerAssetIsolation:
    """Whether liquidations and ADLs at one timestamp touch the same coins (``per_asset_isolation_results.json``).

    Attributes:
        total_timestamps_with_both: 100.
        cross_asset_case_count: timestamps where an ADL hit a coin with no liquidation (0).
        cross_asset_cases: the upstream case list, kept as parsed JSON (empty here).
        jaccard_avg_first_100: mean Jaccard similarity of liquidated vs ADL'd coin sets.
        jaccard_min_first_100: minimum of the same.
        burst_timestamp_us: int64 (B,), largest bursts, epoch µs UTC.
        burst_liquidation_tickers: int64 (B,), coins liquidated in that burst.
        burst_adl_tickers: int64 (B,), coins ADL'd in that burst.
        path: source file.
    """

    total_timestamps_with_both: int
    cross_asset_case_count: int
    cross_asset_cases: list
    jaccard_avg_first_100: float
    jaccard_min_first_100: float
    burst_timestamp_us: np.ndarray
    burst_liquidation_tickers: np.ndarray
    burst_adl_tickers: np.ndarray
    path: str


def read_per_asset_isolation(path: Path | str) -> PerAssetIsolation:
    """Read ``per_asset_isolation_results.json``.

    Raises:
        DeleverInputError: missing/mistyped field, case count not equal to the list length, Jaccard
            values outside [0, 1], or a burst entry not ``[timestamp, {liquidation_tickers, adl_tickers}]``.
    """
    j = _Json(path)
    d = j.doc
    cases = j.list_(d, "cross_asset_cases")
    count = j.int_(d, "cross_asset_case_count")
    if count != len(cases):
        raise j.err("cross_asset_case_count", count, f"len(cross_asset_cases) = {len(cases)}")
    jac = {k: j.num(d, k) for k in ("jaccard_avg_first_100", "jaccard_min_first_100")}
    for k, v in jac.items():
        if not 0.0 <= v <= 1.0:
            raise j.err(k, v, "a Jaccard similarity in [0, 1]")
    ts, lt, at = [], [], []
    for i, b in enumerate(j.list_(d, "largest_bursts")):
        if not (isinstance(b, list) and len(b) == 2 and isinstance(b[0], str) and isinstance(b[1], dict)):
            raise j.err(f"largest_bursts[{i}]", b, "[timestamp, {liquidation_tickers, adl_tickers}]")
        try:
            ts.append(_iso_to_us(b[0]))
        except ValueError:
            raise j.err(f"largest_bursts[{i}][0]", b[0], "an ISO-8601 UTC time") from None
        lt.append(j.int_(b[1], "liquidation_tickers", f"largest_bursts[{i}][1].liquidation_tickers"))
        at.append(j.int_(b[1], "adl_tickers", f"largest_bursts[{i}][1].adl_tickers"))
    return PerAssetIsolation(
        total_timestamps_with_both=j.int_(d, "total_timestamps_with_both"),
        cross_asset_case_count=count,
        cross_asset_cases=cases,
        jaccard_avg_first_100=jac["jaccard_avg_first_100"],
        jaccard_min_first_100=jac["jaccard_min_first_100"],
        burst_timestamp_us=np.array(ts, dtype=np.int64),
        burst_liquidation_tickers=np.array(lt, dtype=np.int64),
        burst_adl_tickers=np.array(at, dtype=np.int64),
        path=str(j.path),
    )


@dataclass
class RealtimeSummary:
    """HyperReplay run summary (``realtime_analysis_summary.json``).

    Attributes:
        analysis_type: upstream label.
        snapshot_time: upstream text, kept as is: it has no offset and appears to be local time
            UTC-5 (PROVENANCE.md), so it is not converted.
        analysis_end: upstream text, same caveat.
        events_processed: 3,239,706.
        adl_events_analyzed: 34,983.
        accounts_tracked: 437,723.
        key_findings: the numeric ``key_findings`` (float values; e.g. ``total_adl_notional`` =
            2,103,111,430.86 USD, ``negative_equity_count`` = 1,147).
        path: source file.
        notes: reported caveats.
    """

    analysis_type: str
    snapshot_time: str
    analysis_end: str
    events_processed: int
    adl_events_analyzed: int
    accounts_tracked: int
    key_findings: dict[str, float]
    path: str
    notes: list[str] = field(default_factory=list)


def read_realtime_summary(path: Path | str) -> RealtimeSummary:
    """Read ``realtime_analysis_summary.json``.

    Raises:
        DeleverInputError: missing/mistyped field, or a non-numeric key finding.
    """
    j = _Json(path)
    d = j.doc
    kf = j.get(d, "key_findings", "key_findings")
    if not isinstance(kf, dict) or not kf:
        raise j.err("key_findings", kf, "an object of numbers")
    findings = {k: j.num(kf, k, f"key_findings.{k}") for k in kf}
    snap, end = j.str_(d, "snapshot_time"), j.str_(d, "analysis_end")
    return RealtimeSummary(
        analysis_type=j.str_(d, "analysis_type"),
        snapshot_time=snap,
        analysis_end=end,
        events_processed=j.int_(d, "events_processed"),
        adl_events_analyzed=j.int_(d, "adl_events_analyzed"),
        accounts_tracked=j.int_(d, "accounts_tracked"),
        key_findings=findings,
        path=str(j.path),
        notes=[
            f"{j.path}: snapshot_time {snap!r} and analysis_end {end!r} carry no UTC offset and appear to be "
            "local time UTC-5 (PROVENANCE.md); kept as text, not converted"
        ],
    )


# =========================================================================== whole folder
@dataclass
class AdlEvent:
    """All 2025-10-10 ADL event tables, cross-checked (see :func:`read_adl_event`)."""

    by_coin: AdlByCoin
    net_volume: AdlNetVolume
    by_user: AdlByUser
    outlier_fills: AdlOutlierFills
    timing: CascadeTiming
    insurance_fund: InsuranceFund
    batch: BatchProcessing
    isolation: PerAssetIsolation
    summary: RealtimeSummary
    notes: list[str] = field(default_factory=list)

    @property
    def total_adl_events(self) -> int:
        """ADL fills in the window (34,983)."""
        return int(self.by_coin.num_events.sum())

    @property
    def total_liquidations(self) -> int:
        """Liquidation fills in the window (63,637, from the per-second timeline)."""
        return int(self.timing.liquidations.sum())


def read_adl_event(folder: Path | str) -> AdlEvent:
    """Read every table of ``hyperliquid-2025-10-10-adl/`` and check their totals agree.

    Checks (each mismatch raises, naming the two files): ADL fills per coin are the same in
    ``adl_by_coin`` and ``adl_net_volume`` (same coin set), and their sum equals the per-user sum,
    the timeline ADL sum, ``total_adl_events`` (insurance fund) and ``adl_events_analyzed`` (summary);
    per-coin ADL notional agrees between the two coin tables (relative 1e-9) and its total equals
    ``key_findings.total_adl_notional`` (relative 1e-9); the negative-equity count per coin sums to
    ``key_findings.negative_equity_count``; the first ADL time equals the first shared timestamp of
    the batch analysis.

    Args:
        folder: the ``hyperliquid-2025-10-10-adl`` directory.

    Returns:
        :class:`AdlEvent`.

    Raises:
        DeleverInputError: any reader error or failed cross-check.
    """
    f = Path(folder)
    ev = AdlEvent(
        by_coin=read_adl_by_coin(f / "adl_by_coin_REALTIME.csv"),
        net_volume=read_adl_net_volume(f / "adl_net_volume_full_12min.csv"),
        by_user=read_adl_by_user(f / "adl_by_user_REALTIME.csv.gz"),
        outlier_fills=read_adl_outlier_fills(f / "high_leverage_outliers_analysis.csv.gz"),
        timing=read_cascade_timing(f / "cascade_timing_results.json"),
        insurance_fund=read_insurance_fund(f / "insurance_fund_results.json"),
        batch=read_batch_processing(f / "batch_processing_results.json"),
        isolation=read_per_asset_isolation(f / "per_asset_isolation_results.json"),
        summary=read_realtime_summary(f / "realtime_analysis_summary.json"),
    )
    ev.notes.extend(ev.summary.notes)

    def mismatch(a: str, b: str, what: str, va: object, vb: object) -> DeleverInputError:
        return DeleverInputError(f"{a} vs {b}: {what} differs ({va} vs {vb})")

    bc, nv = ev.by_coin, ev.net_volume
    order = np.argsort(bc.coin)
    order_nv = np.argsort(nv.coin)
    if not np.array_equal(bc.coin[order], nv.coin[order_nv]):
        only = sorted(set(bc.coin.tolist()) ^ set(nv.coin.tolist()))
        raise mismatch(bc.path, nv.path, "coin set", len(bc), f"{len(nv)}; differing: {only[:5]}")
    diff = bc.num_events[order] != nv.num_adl_events[order_nv]
    if diff.any():
        k = _first(diff)
        c = bc.coin[order][k]
        raise mismatch(
            bc.path, nv.path, f"ADL events of {c}", bc.num_events[order][k], nv.num_adl_events[order_nv][k]
        )
    rel = np.abs(bc.adl_notional_usd[order] - nv.net_notional_usd[order_nv]) > 1e-9 * np.abs(
        nv.net_notional_usd[order_nv]
    )
    if rel.any():
        k = _first(rel)
        raise mismatch(
            bc.path,
            nv.path,
            f"ADL notional of {bc.coin[order][k]}",
            bc.adl_notional_usd[order][k],
            nv.net_notional_usd[order_nv][k],
        )
    total = ev.total_adl_events
    for name, other, val in (
        ("per-user ADL events", ev.by_user.path, int(ev.by_user.num_adl_events.sum())),
        ("timeline ADL fills", ev.timing.path, int(ev.timing.adls.sum())),
        ("total_adl_events", ev.insurance_fund.path, ev.insurance_fund.total_adl_events),
        ("adl_events_analyzed", ev.summary.path, ev.summary.adl_events_analyzed),
    ):
        if val != total:
            raise mismatch(bc.path, other, name, total, val)
    notional = float(bc.adl_notional_usd.sum())
    kf = ev.summary.key_findings
    if "total_adl_notional" in kf and abs(notional - kf["total_adl_notional"]) > 1e-9 * abs(notional):
        raise mismatch(bc.path, ev.summary.path, "total ADL notional", notional, kf["total_adl_notional"])
    neg = int(bc.negative_equity_count.sum())
    if "negative_equity_count" in kf and neg != kf["negative_equity_count"]:
        raise mismatch(bc.path, ev.summary.path, "negative-equity count", neg, kf["negative_equity_count"])
    if ev.timing.first_adl_us != ev.batch.first_shared_timestamp_us:
        raise mismatch(
            ev.timing.path,
            ev.batch.path,
            "first ADL time (µs)",
            ev.timing.first_adl_us,
            ev.batch.first_shared_timestamp_us,
        )
    return ev


# =========================================================================== 2023 official files
@dataclass
class HlLiquidations2023:
    """Hyperliquid early-mainnet liquidations (``liquidations.csv``), N rows in file order.

    Attributes:
        time_ms: int64 (N,), epoch ms UTC.
        user: str (N,), 0x address.
        liquidated_ntl_pos_usd: float64 (N,), USD notional of the liquidated position, > 0.
        liquidated_account_value_usd: float64 (N,), account value at liquidation, USD.
        leverage_type: str (N,), ``Cross`` or ``Isolated``.
        path: source file.
    """

    time_ms: np.ndarray
    user: np.ndarray
    liquidated_ntl_pos_usd: np.ndarray
    liquidated_account_value_usd: np.ndarray
    leverage_type: np.ndarray
    path: str

    def __len__(self) -> int:
        return int(self.time_ms.shape[0])


def _iso_ms(t: _StrTable, name: str) -> np.ndarray:
    us = _col_iso_us(t, name)
    frac = us % 1000 != 0
    if frac.any():
        i = _first(frac)
        raise _bad(t, i, name, t.cell(name, i), "a time with at most millisecond precision")
    return us // 1000


def read_hl_liquidations_2023(path: Path | str) -> HlLiquidations2023:
    """Read the official 2023 ``liquidations.csv`` (columns ``time,user,liquidated_ntl_pos,liquidated_account_value,leverage_type``).

    Raises:
        DeleverInputError: wrong header, unparsable value, non-positive notional, leverage type
            other than Cross/Isolated.
    """
    cols = ("time", "user", "liquidated_ntl_pos", "liquidated_account_value", "leverage_type")
    t = _read_csv_strings(Path(path), cols, "Hyperliquid liquidations CSV")
    lev = _col_str(t, "leverage_type")
    for i, v in enumerate(lev.tolist()):
        if v not in ("Cross", "Isolated"):
            raise _bad(t, i, "leverage_type", v, "Cross or Isolated")
    return HlLiquidations2023(
        time_ms=_iso_ms(t, "time"),
        user=_col_str(t, "user"),
        liquidated_ntl_pos_usd=_positive(t, "liquidated_ntl_pos", _col_float(t, "liquidated_ntl_pos")),
        liquidated_account_value_usd=_col_float(t, "liquidated_account_value"),
        leverage_type=lev,
        path=str(t.path),
    )


@dataclass
class HlTrades2023:
    """Hyperliquid early-mainnet non-market-maker fills (``non_mm_trades.csv.gz``), N rows.

    Attributes:
        time_ms: int64 (N,), epoch ms UTC.
        user: str (N,).
        coin: str (N,), e.g. BTC, ETH, ARB.
        side: int8 (N,), +1 ``Bid`` (buy), -1 ``Ask`` (sell).
        px: float64 (N,), USD per coin, > 0.
        sz: float64 (N,), coin units, > 0.
        crossed: bool (N,), the order removed liquidity (taker).
        path: source file.
    """

    time_ms: np.ndarray
    user: np.ndarray
    coin: np.ndarray
    side: np.ndarray
    px: np.ndarray
    sz: np.ndarray
    crossed: np.ndarray
    path: str

    def __len__(self) -> int:
        return int(self.time_ms.shape[0])

    @property
    def notional_usd(self) -> np.ndarray:
        """float64 (N,): ``px * sz`` (upstream ``ntl``), USD."""
        return self.px * self.sz


def read_hl_trades_2023(path: Path | str) -> HlTrades2023:
    """Read the official 2023 ``non_mm_trades.csv(.gz)`` (``time,user,coin,side,px,sz,crossed``).

    Raises:
        DeleverInputError: wrong header, unparsable value, side other than Bid/Ask, non-positive
            px or sz, ``crossed`` not true/false.
    """
    cols = ("time", "user", "coin", "side", "px", "sz", "crossed")
    t = _read_csv_strings(Path(path), cols, "Hyperliquid non_mm_trades CSV")
    side = _col_choice(t, "side", {"Bid": 1, "Ask": -1}, "Bid or Ask")
    return HlTrades2023(
        time_ms=_iso_ms(t, "time"),
        user=_col_str(t, "user"),
        coin=_col_str(t, "coin"),
        side=side,
        px=_positive(t, "px", _col_float(t, "px")),
        sz=_positive(t, "sz", _col_float(t, "sz")),
        crossed=_col_bool(t, "crossed"),
        path=str(t.path),
    )


@dataclass
class HlLedger2023:
    """Hyperliquid early-mainnet non-MM deposits/withdrawals (``non_mm_ledger_updates.csv``).

    Attributes:
        time_ms: int64 (N,), epoch ms UTC.
        user: str (N,).
        delta_usd: float64 (N,), deposit (+) or withdrawal (-), USD.
        path: source file.
    """

    time_ms: np.ndarray
    user: np.ndarray
    delta_usd: np.ndarray
    path: str

    def __len__(self) -> int:
        return int(self.time_ms.shape[0])


def read_hl_ledger_2023(path: Path | str) -> HlLedger2023:
    """Read the official 2023 ``non_mm_ledger_updates.csv`` (``time,user,delta_usd``).

    Raises:
        DeleverInputError: wrong header or unparsable value.
    """
    t = _read_csv_strings(Path(path), ("time", "user", "delta_usd"), "Hyperliquid ledger updates CSV")
    return HlLedger2023(
        time_ms=_iso_ms(t, "time"),
        user=_col_str(t, "user"),
        delta_usd=_col_float(t, "delta_usd"),
        path=str(t.path),
    )
