"""Mitigations layered on a venue's rules: the engine-side state of each ``mitigations.*`` table.

Each class holds the state one mitigation needs along a path and answers the engine's questions
(what is the mark, is trading halted, how much may be liquidated now, what does the auction pay).
The schemas, with the sources of each mechanism, are in :mod:`delever.scenario`
(``MarkSmoothing``, ``CircuitBreaker``, ``DynamicMargin``, ``LiquidationThrottle``, ``DutchAuction``).
In-step rounds see provisional values; ``commit`` at the end of a step makes them history, as
:class:`delever.engine.mark.MarkPrice` does.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from delever.engine.mark import window_pop
from delever.engine.mitigation_rules import (
    CircuitBreaker,
    DutchAuction,
    DynamicMargin,
    LiquidationThrottle,
    MarkSmoothing,
    Mitigations,
)
from delever.errors import DeleverInputError
from delever.venues.tiers import MarginTiers

SECONDS_PER_YEAR = 365.0 * 86_400.0


class SmoothedMark:
    """The venue's mark passed through an EMA, a TWAP or an index band (``MarkSmoothing``)."""

    def __init__(self, cfg: MarkSmoothing) -> None:
        self.cfg = cfg
        self._ema: float | None = None
        self._samples: deque[tuple[float, float]] = deque()

    def value(self, raw_mark: float, index: float, last: float, dt_s: float) -> float:
        """Smoothed mark (USD) for the current step; this step's ``raw_mark`` is provisional."""
        c = self.cfg
        if c.method == "book_anchored":
            band = c.max_deviation_pct / 100.0
            return min(max(last, index * (1.0 - band)), index * (1.0 + band))
        if c.method == "ema":
            if self._ema is None:
                return raw_mark
            alpha = 1.0 - math.exp(-dt_s / c.span_s)
            return self._ema + alpha * (raw_mark - self._ema)
        # twap: time-weighted over the last span_s seconds; history before the run = the first mark
        dt = min(dt_s, c.span_s)
        total, span = dt * raw_mark, dt
        for dur, m in reversed(self._samples):
            if span >= c.span_s:
                break
            take = min(dur, c.span_s - span)
            total += take * m
            span += take
        first = self._samples[0][1] if self._samples else raw_mark
        return (total + (c.span_s - span) * first) / c.span_s

    def commit(self, raw_mark: float, index: float, last: float, dt_s: float) -> None:
        """Record the step's final raw mark."""
        if self.cfg.method == "ema":
            self._ema = raw_mark if self._ema is None else self.value(raw_mark, index, last, dt_s)
        elif self.cfg.method == "twap":
            self._samples.append((dt_s, raw_mark))
            window_pop(self._samples, self.cfg.span_s)


@dataclass
class BreakerState:
    """What the circuit breaker allows in the current step."""

    halted: bool = False
    floor_price: float = 0.0          # no fill or mark below (limit-down)
    cap_price: float = math.inf       # no fill or mark above (limit-up)


class PriceBreaker:
    """Trading halts, CME-style limit-down levels and Vega-style price-monitoring auctions (``CircuitBreaker``)."""

    def __init__(self, cfg: CircuitBreaker, start_price: float) -> None:
        self.cfg = cfg
        self.start_price = float(start_price)
        self._history: deque[tuple[float, float]] = deque()   # (t_s, index) for the rolling reference
        self.halted_until = -math.inf
        self._auction_ref = 0.0
        self._extensions = 0
        self._next_level = 0
        self.halts = 0
        self.halted_s = 0.0
        self.limit_hit = False

    def _reference(self, t: float) -> float:
        while len(self._history) > 1 and self._history[1][0] <= t - self.cfg.lookback_s:
            self._history.popleft()
        return self._history[0][1] if self._history else math.nan

    def _start_halt(self, t: float, duration_s: float) -> None:
        self.halted_until = t + duration_s
        self.halts += 1

    def update(self, t: float, index: float, dt_s: float) -> BreakerState:
        """The breaker's state at step time ``t_s`` given the step's index price (USD)."""
        c = self.cfg
        state = BreakerState()
        if c.kind == "limit_down":
            levels = c.levels_pct
            move = abs(index / self.start_price - 1.0) * 100.0
            while self._next_level < len(levels) - 1 and move >= levels[self._next_level]:
                self._next_level += 1
                self._start_halt(t, c.level_halt_s)
            limit = levels[-1] / 100.0
            state.floor_price, state.cap_price = self.start_price * (1.0 - limit), self.start_price * (1.0 + limit)
            self.limit_hit |= index <= state.floor_price or index >= state.cap_price
        else:
            if t < self.halted_until:
                pass
            elif c.kind == "auction" and self._auction_ref > 0:
                # end of an auction period: extend while the price is still outside the trigger's band
                outside = abs(index / self._auction_ref - 1.0) * 100.0 > c.band_pct
                if outside and self._extensions < c.max_extensions:
                    self._extensions += 1
                    self.halted_until = t + c.halt_s
                else:
                    self._auction_ref, self._extensions = 0.0, 0
                    self._history.clear()
            else:
                ref = self._reference(t)
                if ref == ref and abs(index / ref - 1.0) * 100.0 > c.band_pct:
                    self._start_halt(t, c.halt_s)
                    self._history.clear()
                    if c.kind == "auction":
                        self._auction_ref = ref
            if t >= self.halted_until:
                self._history.append((t, index))
        state.halted = t < self.halted_until
        if state.halted:
            self.halted_s += dt_s
        return state


class VolatilityMargin:
    """Maintenance-margin multiplier from realized volatility (``DynamicMargin``)."""

    def __init__(self, cfg: DynamicMargin, tiers: MarginTiers, where: str = "mitigations.dynamic_margin") -> None:
        top = float(tiers.mmr.max())
        if top * cfg.max_multiplier > 1.0:
            raise DeleverInputError(
                f"{where}.max_multiplier: {cfg.max_multiplier:g} x the venue's highest MMR {top:g} = "
                f"{top * cfg.max_multiplier:g} > 1 (maintenance margin above notional); lower it to <= {1.0 / top:g}")
        self.cfg, self.base = cfg, tiers
        self._returns: deque[tuple[float, float]] = deque()   # (dt_s, squared log return)
        self._last_index: float | None = None
        self.multiplier = 1.0
        self.max_seen = 1.0

    def update(self, index: float, dt_s: float) -> bool:
        """Add the step's index; return True when the multiplier changed (the tiers must be rescaled)."""
        if self._last_index is not None and index > 0 and self._last_index > 0:
            self._returns.append((dt_s, math.log(index / self._last_index) ** 2))
            window_pop(self._returns, self.cfg.window_s)
        self._last_index = index
        span = sum(d for d, _ in self._returns)
        vol = math.sqrt(sum(r for _, r in self._returns) / span * SECONDS_PER_YEAR) if span > 0 else 0.0
        m = min(max(vol / self.cfg.reference_vol_annual, 1.0), self.cfg.max_multiplier)
        changed = m != self.multiplier
        self.multiplier = m
        self.max_seen = max(self.max_seen, m)
        return changed

    def tiers(self) -> MarginTiers:
        """The venue's tiers with MMR and maintenance amounts scaled by the current multiplier."""
        return self.base.scaled(self.multiplier)


class NotionalThrottle:
    """Rolling-window cap on liquidated notional (``LiquidationThrottle``)."""

    def __init__(self, cfg: LiquidationThrottle) -> None:
        self.cfg = cfg
        self._used: deque[tuple[float, float]] = deque()   # (t_s, notional_usd)
        self.deferred = 0

    def room_usd(self, t: float) -> float:
        """Notional (USD) that may still be liquidated in the window ending at ``t``."""
        while self._used and self._used[0][0] <= t - self.cfg.window_s:
            self._used.popleft()
        return self.cfg.max_notional_usd - sum(n for _, n in self._used)

    def select(self, t: float, notional_usd: np.ndarray) -> np.ndarray:
        """Boolean mask of the orders (in priority order) that fit the room; the first one always may when
        the window is empty, so a position bigger than the cap is not stuck forever."""
        room = self.room_usd(t)
        keep = np.cumsum(notional_usd) <= room + 1e-9 * max(room, 1.0)
        if not keep.any() and notional_usd.size and not self._used:
            keep[0] = True
        self.deferred += int((~keep).sum())
        return keep

    def record(self, t: float, notional_usd: float) -> None:
        if notional_usd > 0:
            self._used.append((t, float(notional_usd)))


class AuctionBook:
    """Dutch-auction state per position (``DutchAuction``; dss ``abaci.sol`` price curves)."""

    def __init__(self, cfg: DutchAuction, n: int) -> None:
        self.cfg = cfg
        self.start_t = np.full(n, np.nan)
        self.top = np.zeros(n)

    def open(self, idx: np.ndarray, t: float, mark: float) -> None:
        """Start auctions for positions in ``idx`` that have none running (top = mark, see ``price``)."""
        new = idx[np.isnan(self.start_t[idx])]
        self.start_t[new] = t
        self.top[new] = mark

    def running(self) -> np.ndarray:
        return np.flatnonzero(~np.isnan(self.start_t))

    def close(self, idx: np.ndarray) -> None:
        self.start_t[idx] = np.nan

    def decay(self, elapsed_s: np.ndarray) -> np.ndarray:
        """Fraction of the top price after ``elapsed_s`` (abaci LinearDecrease / ExponentialDecrease /
        StairstepExponentialDecrease)."""
        c = self.cfg
        if c.decay == "linear":
            return np.maximum(0.0, 1.0 - elapsed_s / c.tau_s)
        if c.decay == "exponential":
            return c.cut ** (elapsed_s / c.step_s)
        return c.cut ** np.floor(elapsed_s / c.step_s)

    def price(self, idx: np.ndarray, side: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Auction price (USD) of each position and whether its auction is past ``tail_s``.

        A long's collateral is sold from ``top * (1 + buf)`` downward; a short's is bought back from
        ``top * (1 - buf)`` upward by the same relative distance.
        """
        elapsed = t - self.start_t[idx]
        d = self.decay(elapsed)
        top = self.top[idx]
        sell = top * (1.0 + self.cfg.buf) * d
        buy = top * (1.0 - self.cfg.buf) * (2.0 - d)
        return np.where(side > 0, sell, buy), elapsed > self.cfg.tail_s


@dataclass
class MitigationSet:
    """The engine-side mitigations of one run (None where off)."""

    mark: SmoothedMark | None = None
    breaker: PriceBreaker | None = None
    margin: VolatilityMargin | None = None
    throttle: NotionalThrottle | None = None
    auction: AuctionBook | None = None

    @classmethod
    def build(cls, cfg: Mitigations | None, tiers: MarginTiers, start_price: float, n_positions: int) -> MitigationSet:
        """Engine state for ``cfg``.

        Raises:
            DeleverInputError: a mitigation contradicts the venue (e.g. a dynamic-margin multiplier that
                pushes an MMR above 100 %).
        """
        if cfg is None:
            return cls()
        return cls(
            mark=SmoothedMark(cfg.mark_smoothing) if cfg.mark_smoothing else None,
            breaker=PriceBreaker(cfg.circuit_breaker, start_price) if cfg.circuit_breaker else None,
            margin=VolatilityMargin(cfg.dynamic_margin, tiers) if cfg.dynamic_margin else None,
            throttle=NotionalThrottle(cfg.throttle) if cfg.throttle else None,
            auction=AuctionBook(cfg.dutch_auction, n_positions) if cfg.dutch_auction else None,
        )
