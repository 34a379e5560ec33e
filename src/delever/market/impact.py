"""Execution of forced orders into a depth curve, with transient and permanent impact.

A forced sell walks the bid curve from the displacement left by earlier forced orders and fills at
the VWAP of the depth it consumes (``delever.market.depth.walk``). Of each new displacement, a
``permanent_fraction`` moves the reference price for good; the rest is transient and decays with
the resilience half-life (the book refills). This is the transient/permanent split of
Obizhaeva-Wang style limit-order-book models with an exponential resilience kernel.

In ``replay`` mode the observed price already contains the real impact: fills still walk the
depth (and consume it), but the price is not moved.
"""

from __future__ import annotations

import numpy as np

from delever.market.depth import DepthCurve, walk


class Impact:
    """Impact state of one instrument.

    Args:
        depth: Depth curve (bid and ask sides), quantities in base units.
        permanent_fraction: Share of each displacement that stays (0..1).
        resilience_half_life_s: Half-life of the transient displacement, seconds.
        max_walk_pct: Deepest displacement an order may reach, percent of the reference price.
        move_price: False in replay mode (observed price is not moved by simulated orders).
    """

    def __init__(self, depth: DepthCurve, permanent_fraction: float, resilience_half_life_s: float,
                 max_walk_pct: float, move_price: bool = True) -> None:
        self.depth = depth
        self.phi = float(permanent_fraction)
        self.half_life_s = float(resilience_half_life_s)
        self.max_x = float(max_walk_pct) / 100.0
        self.move_price = move_price
        self.permanent = 1.0  # multiplicative permanent impact on the exogenous price
        self.d_bid = 0.0      # transient displacement of the bid side (fraction of reference)
        self.d_ask = 0.0
        self.extrapolated_qty = 0.0  # filled beyond the curve's last knot (extrapolated depth)

    def reference(self, exogenous_price: float) -> float:
        """Reference (index) price: exogenous price with permanent impact (USD)."""
        return exogenous_price * self.permanent if self.move_price else exogenous_price

    def last(self, exogenous_price: float) -> float:
        """Traded price: reference displaced by the transient impact of both sides (USD)."""
        if not self.move_price:
            return exogenous_price
        return self.reference(exogenous_price) * (1.0 - self.d_bid + self.d_ask)

    def _execute(self, sign: int, exogenous_price: float, qty: np.ndarray, limit_price: np.ndarray,
                 fok: np.ndarray | None = None):
        n = qty.size
        fill_qty = np.zeros(n)
        notional = np.zeros(n)
        if n == 0 or not (qty > 0).any():
            return fill_qty, notional
        ref = self.reference(exogenous_price)
        side_curve = self.depth.bid if sign < 0 else self.depth.ask
        with np.errstate(divide="ignore", invalid="ignore"):
            limit_x = (1.0 - limit_price / ref) if sign < 0 else (limit_price / ref - 1.0)
        limit_x = np.where(np.isnan(limit_x), np.inf, limit_x)
        order = np.argsort(limit_x, kind="stable")
        d0 = self.d_bid if sign < 0 else self.d_ask
        q = qty[order]
        if fok is not None and np.any(fok):
            q = self._kill_partial(side_curve, d0, q, limit_x[order], np.asarray(fok, bool)[order])
        fq, factor, d1 = walk(side_curve, d0, q, limit_x[order], self.max_x)
        fill_qty[order] = fq
        notional[order] = ref * factor
        beyond = max(0.0, float(side_curve.qty_within(d1)) - max(float(side_curve.qty_within(d0)), float(side_curve.cum_qty[-1])))
        self.extrapolated_qty += beyond
        delta = d1 - d0
        if self.move_price and delta > 0:
            self.permanent *= (1.0 - self.phi * delta) if sign < 0 else (1.0 + self.phi * delta)
            d_new = d0 + (1.0 - self.phi) * delta
        else:
            d_new = d1
        if sign < 0:
            self.d_bid = d_new
        else:
            self.d_ask = d_new
        return fill_qty, notional

    def _kill_partial(self, side_curve, d0: float, q: np.ndarray, limit_x: np.ndarray, fok: np.ndarray) -> np.ndarray:
        """Sizes after cancelling fill-or-kill orders the book cannot fill in full (orders in walk order).

        Orders fill in sequence, so the first fill-or-kill order that would fill only in part is killed
        and the walk is redone (the depth it would have taken is left to the orders behind it).
        """
        q = q.copy()
        while True:
            fq, _, _ = walk(side_curve, d0, q, limit_x, self.max_x)
            short = np.flatnonzero(fok & (q > 0) & (fq < q * (1.0 - 1e-12)))
            if short.size == 0:
                return q
            q[short[0]] = 0.0

    def sell(self, exogenous_price: float, qty: np.ndarray, limit_price: np.ndarray, fok: np.ndarray | None = None):
        """Fill sell orders (any order; they walk the bids in order of their limits, least aggressive first).

        Args:
            exogenous_price: Current exogenous price (USD).
            qty: float64 ``(N,)`` order sizes, base units.
            limit_price: float64 ``(N,)`` lowest acceptable price (USD); ``-inf`` or 0 for a market order.
            fok: bool ``(N,)`` fill-or-kill orders (filled in full or not at all; BitMEX / Bybit step-down
                orders), or None (all immediate-or-cancel).

        Returns:
            ``(fill_qty, fill_notional_usd)``, float64 ``(N,)`` each.
        """
        return self._execute(-1, exogenous_price, np.asarray(qty, np.float64), np.asarray(limit_price, np.float64), fok)

    def buy(self, exogenous_price: float, qty: np.ndarray, limit_price: np.ndarray, fok: np.ndarray | None = None):
        """Fill buy orders against the asks; ``limit_price`` is the highest acceptable price (``inf`` for market)."""
        return self._execute(+1, exogenous_price, np.asarray(qty, np.float64), np.asarray(limit_price, np.float64), fok)

    def decay(self, dt_s: float) -> None:
        """Resilience: the transient displacement decays by ``2**(-dt/half_life)``."""
        k = 0.5 ** (dt_s / self.half_life_s)
        self.d_bid *= k
        self.d_ask *= k
