"""Mark price methods.

``median_basis_ma`` (Binance USD-M): ``median(P1, P2, last)`` with ``P1 = index*(1+funding basis)``
and ``P2 = index + MA(basis)``, basis = last - index sampled each second, MA over ``basis_window_s``
(30 one-second samples since 2025-09-18; venue-mechanics.md §1).
``median_basis_ema`` (Hyperliquid): ``median(index + EMA(last - index), last, index)`` — the three
inputs of Hyperliquid's mark (oracle + 150 s EMA of the book basis, the book's own price, and CEX
perp mids, which a one-market simulation takes at the index; venue-mechanics.md §4).
``fair_price`` (BitMEX Fair Price Marking): ``index * (1 + funding_rate * time_to_funding /
funding_interval)`` (``delever.venues.bitmex.fair_price``); with no funding data after the coming
funding, the basis decays linearly to 0 at that time and stays 0.
``last`` and ``index`` are the two extremes, for what-if runs.

In-step rounds see the step's basis sample provisionally; ``commit`` makes it part of the history.
"""

from __future__ import annotations

import math
from collections import deque

from delever.venues.bitmex import fair_price


def window_pop(samples: deque, window_s: float) -> None:
    """Drop the oldest ``(duration_s, value)`` samples that lie wholly outside the last ``window_s`` seconds."""
    span = sum(d for d, _ in samples)
    while samples and span - samples[0][0] >= window_s:
        span -= samples.popleft()[0]


class MarkPrice:
    """Stateful mark price for one instrument.

    Args:
        method: One of ``median_basis_ma``, ``median_basis_ema``, ``last``, ``index``, ``fair_price``.
        basis_window_s: MA window, or EMA time constant, seconds.
        funding_basis: Funding basis term of P1 (fraction), 0 by default.
        funding_rate: ``fair_price``: rate of the coming funding (fraction per interval).
        funding_interval_s: ``fair_price``: funding interval, seconds.
        time_to_funding_s: ``fair_price``: seconds from t = 0 to the coming funding (None: one interval).
    """

    def __init__(self, method: str, basis_window_s: float, funding_basis: float = 0.0, funding_rate: float = 0.0,
                 funding_interval_s: float = 28_800.0, time_to_funding_s: float | None = None) -> None:
        self.method = method
        self.window_s = float(basis_window_s)
        self.funding_basis = float(funding_basis)
        self.funding_rate = float(funding_rate)
        self.funding_interval_s = float(funding_interval_s)
        self.funding_at_s = self.funding_interval_s if time_to_funding_s is None else float(time_to_funding_s)
        self._samples: deque[tuple[float, float]] = deque()  # (duration_s, basis) of committed steps
        self._ema = 0.0

    def _ma_with(self, dt_s: float, basis: float) -> float:
        # Time-weighted MA over the last window_s seconds; history before the run counts as basis 0.
        dt = min(dt_s, self.window_s)
        need = self.window_s - dt
        total, span = dt * basis, dt
        for dur, b in reversed(self._samples):
            if span - dt >= need:
                break
            take = min(dur, need - (span - dt))
            total += take * b
            span += take
        return total / self.window_s

    def _ema_with(self, dt_s: float, basis: float) -> float:
        alpha = 1.0 - math.exp(-dt_s / self.window_s)
        return self._ema + alpha * (basis - self._ema)

    def value(self, index: float, last: float, dt_s: float, t_s: float = 0.0) -> float:
        """Mark price (USD) for the current step (time ``t_s``), with this step's basis ``last - index`` provisional."""
        if self.method == "last":
            return last
        if self.method == "index":
            return index
        if self.method == "fair_price":
            return fair_price(index, self.funding_rate, self.funding_at_s - t_s, self.funding_interval_s)
        basis = last - index
        if self.method == "median_basis_ma":
            p1 = index * (1.0 + self.funding_basis)
            p2 = index + self._ma_with(dt_s, basis)
            return sorted((p1, p2, last))[1]
        if self.method == "median_basis_ema":
            return sorted((index + self._ema_with(dt_s, basis), last, index))[1]
        raise ValueError(f"unknown mark method {self.method!r}")

    def commit(self, index: float, last: float, dt_s: float) -> None:
        """Record the step's final basis sample into the history."""
        basis = last - index
        self._ema = self._ema_with(dt_s, basis)
        self._samples.append((dt_s, basis))
        window_pop(self._samples, self.window_s)
