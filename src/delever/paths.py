"""Price drivers: the exogenous (or observed) price series a run steps through.

Two drivers are built from a scenario's ``price_driver`` section:

* :class:`~delever.scenario.ShockDriver`: a deterministic move of ``move_pct`` over ``duration_s``
  (linear ramp or immediate step), then a hold, on a uniform grid of ``engine.dt_s``.
* :class:`~delever.scenario.HistoricalDriver`: Binance klines (see :mod:`delever.data.klines`),
  one point per bar close (``intrabar = "close"``) or four points per bar along an O-H-L-C path
  (``intrabar = "ohlc"``).

``mode`` tells the engine how to use the series: ``"stress"`` means the series is the exogenous
(fundamental) component and the engine adds the impact of forced orders on top; ``"replay"``
means the series is the observed mark price, which already contains that impact, so none is added.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from delever.data.klines import Klines, format_utc_ms, parse_utc_ms, read_klines
from delever.errors import DeleverInputError

if TYPE_CHECKING:  # the config layer is needed only by build_price_path, imported there
    from delever.scenario import HistoricalDriver, ShockDriver
from delever.market.price_path import PricePath

__all__ = ["PricePath", "build_price_path", "historical_path", "shock_path"]

# Relative tolerance when deciding whether a duration is a whole number of steps (float noise).
_STEP_TOL = 1e-9


def _n_steps(span_s: float, dt_s: float) -> int:
    """Whole steps of ``dt_s`` needed to cover ``span_s`` (ceil, ignoring float noise)."""
    ratio = span_s / dt_s
    near = round(ratio)
    if abs(ratio - near) <= _STEP_TOL * max(1.0, abs(ratio)):
        return int(near)
    return math.ceil(ratio)


def shock_path(driver: ShockDriver, start_price: float | None, dt_s: float) -> PricePath:
    """Deterministic shock on the grid ``t = 0, dt, 2 dt, ...`` (seconds).

    The move takes ``n = ceil(duration_s / dt_s)`` steps (at least 1) and the hold
    ``h = ceil(hold_s / dt_s)`` more, so ``T = 1 + n + h`` points and the last is at
    ``(n + h) * dt_s``. With ``target = start_price * (1 + move_pct / 100)``:

    * ``linear``: ``price(t) = start + (target - start) * min(t / duration_s, 1)``: the slope is
      the configured one; when ``duration_s`` is not a multiple of ``dt_s`` the last move step lands
      past ``duration_s`` and is exactly ``target`` (clamped). ``duration_s = 0`` acts as ``step``.
    * ``step``: ``price = target`` from ``t = dt_s`` on (same grid as ``linear``, so both shapes
      cover the same horizon and can be compared step by step).

    Args:
        driver: the shock section of the scenario.
        start_price: USD, > 0 (``market.start_price``; required for a shock).
        dt_s: step in seconds, > 0 (``engine.dt_s``).

    Returns:
        :class:`PricePath` with ``mode = "stress"`` and no volume.

    Raises:
        DeleverInputError: ``start_price`` missing or not > 0, or ``dt_s`` not > 0.
    """
    if start_price is None:
        raise DeleverInputError(
            "market.start_price: required with a shock price driver (the shock needs a price to move from; "
            "market.start_price_by_instrument has no entry for the instrument)"
        )
    if not (math.isfinite(start_price) and start_price > 0):
        raise DeleverInputError(f"market.start_price: expected a price > 0, got {start_price!r}")
    if not (math.isfinite(dt_s) and dt_s > 0):
        raise DeleverInputError(f"engine.dt_s: expected a step > 0 seconds, got {dt_s!r}")
    n_move = max(1, _n_steps(driver.duration_s, dt_s))
    n_hold = _n_steps(driver.hold_s, dt_s)
    k = np.arange(1 + n_move + n_hold, dtype=np.int64)
    t_s = k.astype(np.float64) * float(dt_s)
    start = float(start_price)
    target = start * (1.0 + driver.move_pct / 100.0)
    if driver.shape == "step" or driver.duration_s == 0:
        frac = np.where(k >= 1, 1.0, 0.0)
    else:
        frac = np.minimum(t_s / driver.duration_s, 1.0)
        frac[k >= n_move] = 1.0  # exact target from the last move step on, whatever the float noise
    price = start + (target - start) * frac
    price[frac == 1.0] = target
    price[0] = start
    label = (
        f"shock {driver.shape} {driver.move_pct:+g}% over {driver.duration_s:g} s, hold {driver.hold_s:g} s, "
        f"from {start:g} USD, dt {dt_s:g} s"
    )
    return PricePath(
        t_s=t_s, price=price.astype(np.float64), mode=driver.mode, label=label, start_time_utc=None
    )


def historical_path(klines: Klines, intrabar: str, mode: str, start_price: float | None = None) -> PricePath:
    """Turn consecutive klines into a price path (bar grid; ``engine.dt_s`` is not used).

    With bar ``k`` opening at ``k * I`` seconds after the first bar's open (``I`` the interval):

    * ``close``: ``price[0] = open[0]`` at ``t = 0``, then ``close[k]`` at ``t = (k + 1) I``
      (``T = K + 1`` points for ``K`` bars).
    * ``ohlc``: ``price[0] = open[0]`` at ``t = 0``, then four points per bar on a uniform ``I/4``
      grid: ``k I + I/4`` the extreme nearer the open (high if ``|high - open| <= |low - open|``,
      else low), ``k I + I/2`` the other extreme, ``k I + 3I/4`` the close, ``(k + 1) I`` the close
      again (held to the bar's end, so bar closes sit at the same times as in ``close`` mode).
      ``T = 4K + 1``. Only observed prices appear (no interpolation). The open of bar ``k >= 1`` is
      represented by the previous close at ``k I`` (they differ by about a tick on Binance).

    Ordering the intrabar path O -> nearer extreme -> farther extreme -> C is the standard
    convention of bar-based backtesting when the true order of high and low is unknown (e.g.
    NautilusTrader bar execution, which walks O-H-L-C or, with adaptive ordering, visits the extreme
    closer to the open first: https://nautilustrader.io/docs/latest/concepts/backtesting/bar-execution/).
    It keeps every bar's full range, so liquidation prices between close and low are crossed.

    ``taker_sell_volume`` is ``volume - taker_buy_volume`` of each bar, all on the bar's close point
    (``close``) or split equally over its four sub-steps (``ohlc``); step 0 gets 0. It is None when
    every bar has zero volume (mark/index price klines carry no trades).

    Args:
        klines: validated consecutive bars (T >= 1).
        intrabar: ``"close"`` or ``"ohlc"``.
        mode: ``"stress"`` or ``"replay"``, passed through.
        start_price: if given (USD, > 0), the whole path is multiplied by
            ``start_price / price[0]`` (shape kept, level moved); the label says so.

    Returns:
        :class:`PricePath` with ``start_time_utc`` the first bar's open time.

    Raises:
        DeleverInputError: unknown ``intrabar``/``mode``, or ``start_price`` not > 0.
    """
    if intrabar not in ("close", "ohlc"):
        raise DeleverInputError(f"price_driver.intrabar: expected 'close' or 'ohlc', got {intrabar!r}")
    if mode not in ("stress", "replay"):
        raise DeleverInputError(f"price_driver.mode: expected 'stress' or 'replay', got {mode!r}")
    n_bars = len(klines)
    interval_s = klines.interval_ms / 1000.0
    bar_t0 = (klines.open_time_ms - klines.open_time_ms[0]).astype(np.float64) / 1000.0
    sell = klines.taker_sell_volume
    if intrabar == "close":
        t_s = np.concatenate([[0.0], bar_t0 + interval_s])
        price = np.concatenate([[klines.open[0]], klines.close])
        vol = np.concatenate([[0.0], sell])
    else:
        near_high = np.abs(klines.high - klines.open) <= np.abs(klines.low - klines.open)
        first = np.where(near_high, klines.high, klines.low)
        second = np.where(near_high, klines.low, klines.high)
        sub = np.stack([first, second, klines.close, klines.close], axis=1)  # (K, 4)
        offs = np.array([0.25, 0.5, 0.75, 1.0]) * interval_s
        t_s = np.concatenate([[0.0], (bar_t0[:, None] + offs[None, :]).ravel()])
        price = np.concatenate([[klines.open[0]], sub.ravel()])
        vol = np.concatenate([[0.0], np.repeat(sell / 4.0, 4)])
    price = np.ascontiguousarray(price, dtype=np.float64)
    t_s = np.ascontiguousarray(t_s, dtype=np.float64)
    first_ms, end_ms = int(klines.open_time_ms[0]), klines.end_time_ms
    label = (
        f"historical {Path(klines.path.split(' + ')[0]).name}{' (+more)' if ' + ' in klines.path else ''} "
        f"{format_utc_ms(first_ms)} to {format_utc_ms(end_ms)} UTC, {n_bars} x {interval_s:g} s bars, "
        f"intrabar {intrabar}, {mode}"
    )
    if start_price is not None:
        if not (math.isfinite(start_price) and start_price > 0):
            raise DeleverInputError(f"market.start_price: expected a price > 0, got {start_price!r}")
        observed = float(price[0])
        factor = float(start_price) / observed
        price = price * factor
        label += f", rescaled x{factor:.6g} to start_price {float(start_price):g} USD (observed start {observed:g})"
    has_volume = bool(np.any(klines.volume > 0))
    iso = format_utc_ms(first_ms).replace(" ", "T") + "Z"
    return PricePath(
        t_s=t_s,
        price=price,
        mode=mode,
        label=label,
        start_time_utc=iso,
        taker_sell_volume=np.ascontiguousarray(vol, dtype=np.float64) if has_volume else None,
    )


def build_price_path(
    driver: ShockDriver | HistoricalDriver, start_price: float | None, dt_s: float, data_dir: Path
) -> PricePath:
    """Build the run's price driver from the scenario's ``price_driver`` section.

    Args:
        driver: :class:`~delever.scenario.ShockDriver` or :class:`~delever.scenario.HistoricalDriver`.
        start_price: ``market.start_price`` (USD) or None. Required for a shock; for a historical
            driver it rescales the series so that ``price[0] == start_price``.
        dt_s: ``engine.dt_s`` (seconds), the grid of a shock; historical drivers use the bar grid.
        data_dir: data directory against which a relative ``driver.path`` is resolved.

    Returns:
        :class:`PricePath` (see :func:`shock_path` and :func:`historical_path` for the exact grids).

    Raises:
        DeleverInputError: missing ``market.start_price`` for a shock; kline file missing or invalid;
            ``price_driver.start``/``end`` malformed or outside the file (the message names the
            field or the file and row).
    """
    from delever.scenario import HistoricalDriver, ShockDriver, resolve_path

    if isinstance(driver, ShockDriver):
        return shock_path(driver, start_price, dt_s)
    if isinstance(driver, HistoricalDriver):
        path = resolve_path(driver.path, data_dir, "price_driver.path")
        start_ms = parse_utc_ms(driver.start, "price_driver.start") if driver.start is not None else None
        end_ms = parse_utc_ms(driver.end, "price_driver.end") if driver.end is not None else None
        full = read_klines(path)
        try:
            klines = full.select(start_ms, end_ms)
        except DeleverInputError as exc:
            raise DeleverInputError(f"price_driver.start/end: {exc}") from None
        return historical_path(klines, driver.intrabar, driver.mode, start_price)
    raise DeleverInputError(f"price_driver: unsupported driver {type(driver).__name__}")
