"""Depth curves: cumulative liquidity by distance from the reference price, and walking them.

A side of the book is described by ``C(x)``, the cumulative base quantity resting within a
fractional distance ``x`` of the reference (mid) price (``x = 0.01`` is 1 %). ``C`` is piecewise
linear between knots, so the depth density ``dC/dx`` is constant on each segment; beyond the last
knot it is extrapolated with the last segment's density. A forced **sell** consumes the **bid**
curve and each unit of depth at distance ``x`` fills at ``ref * (1 - x)``; a forced **buy**
consumes the **ask** curve at ``ref * (1 + x)``. The depth between 0 and the current displacement
``d0`` has already been consumed by earlier forced orders (and not yet replenished), so a walk
starts at ``d0``.

Sources of curves (dispatched from a scenario by :func:`delever.depth_source.build_depth_curve`):

* Binance Vision ``bookDepth`` +-1..5 % bands (:mod:`delever.data.book_depth`),
* a rebuilt L2 book (:mod:`delever.data.l2_feed`),
* a parametric law (:func:`parametric_curve`): linear, square-root or power-law impact.

Formulas: the walk is the price-time-free "walk the book" of a market order with a limit; the
vectorized cumulative-fill recursion is derived in :func:`walk`. Design:
``shared/docs/design.md`` ("The engine, precisely": forced orders walk a depth curve).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np

from delever.errors import DeleverInputError

__all__ = [
    "SideCurve",
    "DepthCurve",
    "walk",
    "walk_reference",
    "parametric_curve",
]

_PCT1 = 0.01  # x of the 1 % band


def _as_nonneg(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(arr >= 0):  # also catches NaN
        bad = arr[~(arr >= 0)].ravel()[0]
        raise ValueError(f"{name} must be >= 0 (and not NaN), got {bad!r}")
    return arr


@dataclass(frozen=True, eq=False)
class SideCurve:
    """One side of the book as a piecewise-linear cumulative depth curve ``C(x)``.

    Instances are immutable (the arrays are copied and made read-only) and compare by identity.

    Attributes:
        x: float64 ``(K,)``, ``K >= 2``, knots as a fraction of the reference price;
            ``x[0] == 0``, strictly increasing, finite.
        cum_qty: float64 ``(K,)``, cumulative base quantity (e.g. BTC) within ``x``;
            ``cum_qty[0] == 0``, non-decreasing, finite.
        sign: -1 for the bid side (fills at ``ref * (1 - x)``), +1 for the ask side
            (fills at ``ref * (1 + x)``).

    Raises:
        ValueError: on construction, if the knots violate the rules above.
    """

    x: np.ndarray
    cum_qty: np.ndarray
    sign: int
    _density: np.ndarray = field(init=False, repr=False)
    _g: np.ndarray = field(init=False, repr=False)
    _rho_last: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        x = np.array(self.x, dtype=np.float64, copy=True).ravel()
        c = np.array(self.cum_qty, dtype=np.float64, copy=True).ravel()
        if self.sign not in (-1, 1):
            raise ValueError(f"sign must be -1 (bid) or +1 (ask), got {self.sign!r}")
        if x.shape != c.shape or x.size < 2:
            raise ValueError(f"x and cum_qty must have the same length >= 2, got {x.size} and {c.size}")
        if not (np.isfinite(x).all() and np.isfinite(c).all()):
            raise ValueError("x and cum_qty must be finite")
        if x[0] != 0.0 or c[0] != 0.0:
            raise ValueError(f"the first knot must be (0, 0), got ({x[0]!r}, {c[0]!r})")
        if not (np.diff(x) > 0).all():
            raise ValueError("x must be strictly increasing")
        if not (np.diff(c) >= 0).all():
            raise ValueError("cum_qty must be non-decreasing")
        dens = np.diff(c) / np.diff(x)
        s = float(self.sign)
        # G(x_k) = integral_0^{x_k} (1 + s*t) dC(t): primitive of the price factor at the knots.
        seg = dens * (np.diff(x) + s * np.diff(x) * (x[1:] + x[:-1]) / 2.0)
        g = np.concatenate(([0.0], np.cumsum(seg)))
        for arr in (x, c, dens, g):
            arr.flags.writeable = False
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "cum_qty", c)
        object.__setattr__(self, "sign", int(self.sign))
        object.__setattr__(self, "_density", dens)
        object.__setattr__(self, "_g", g)
        object.__setattr__(self, "_rho_last", float(dens[-1]))

    @property
    def x_max(self) -> float:
        """Last knot (fraction of the reference price); beyond it depth is extrapolated."""
        return float(self.x[-1])

    @property
    def density(self) -> np.ndarray:
        """float64 ``(K-1,)`` depth density of each segment, base units per unit of ``x``."""
        return self._density

    def qty_within(self, x) -> np.ndarray:
        """Cumulative quantity ``C(x)`` within distance ``x`` of the reference.

        Piecewise linear between knots; beyond ``x_max`` extrapolated with the last segment's
        density (``C(inf) = inf`` unless that density is 0).

        Args:
            x: float64 array (any shape) or scalar, fraction of the reference price, ``>= 0``.

        Returns:
            float64 array of the same shape as ``x``, base units.

        Raises:
            ValueError: a negative or NaN ``x``.
        """
        xv = _as_nonneg(x, "x")
        out = np.interp(xv, self.x, self.cum_qty)
        if self._rho_last > 0:
            beyond = xv > self.x[-1]
            if np.any(beyond):
                out = np.where(beyond, self.cum_qty[-1] + self._rho_last * (xv - self.x[-1]), out)
        return np.asarray(out, dtype=np.float64)

    def x_for_qty(self, q) -> np.ndarray:
        """Inverse of :meth:`qty_within`: ``sup {x >= 0 : C(x) <= q}``.

        Where ``C`` is flat (a zero-density segment, i.e. a price gap) the end of the flat stretch
        is returned, i.e. the distance at which depth resumes. Beyond ``cum_qty[-1]`` the
        extrapolation is inverted; if the last segment has zero density, ``inf`` is returned for
        ``q >= cum_qty[-1]`` (the book holds no more depth).

        Args:
            q: float64 array (any shape) or scalar, cumulative base quantity, ``>= 0``.

        Returns:
            float64 array of the same shape as ``q``, fraction of the reference price.

        Raises:
            ValueError: a negative or NaN ``q``.
        """
        qv = _as_nonneg(q, "q")
        knots_x, c, dens = self.x, self.cum_qty, self._density
        last = c.size - 1
        k = np.searchsorted(c, qv, side="right") - 1  # last knot with C <= q, in 0..last
        kk = np.minimum(k, last - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            inner = knots_x[kk] + (qv - c[kk]) / dens[kk]  # dens[kk] > 0 wherever k < last
            if self._rho_last > 0:
                outer = knots_x[-1] + (qv - c[-1]) / self._rho_last
            else:
                outer = np.full_like(qv, np.inf)
        return np.asarray(np.where(k < last, inner, outer), dtype=np.float64)

    def _primitive(self, x: np.ndarray) -> np.ndarray:
        """``G(x) = integral_0^x (1 + sign*t) dC(t)`` (exact for piecewise-linear ``C``)."""
        knots_x, dens, g = self.x, self._density, self._g
        last = knots_x.size - 1
        k = np.searchsorted(knots_x, x, side="right") - 1  # 0..last (x >= 0 = x[0])
        kk = np.minimum(k, last - 1)
        s = float(self.sign)
        dx = x - knots_x[kk]
        inner = g[kk] + dens[kk] * (dx + s * dx * (x + knots_x[kk]) / 2.0)
        if self._rho_last > 0:
            dxl = x - knots_x[-1]
            with np.errstate(invalid="ignore"):
                outer = g[-1] + self._rho_last * (dxl + s * dxl * (x + knots_x[-1]) / 2.0)
        else:
            outer = np.full_like(x, g[-1])
        return np.where(k < last, inner, outer)

    def price_factor_integral(self, x0, x1) -> np.ndarray:
        """``integral_{x0}^{x1} (1 + sign*x) dC(x)``, exact for piecewise-linear ``C``.

        For depth consumed between displacements ``x0 <= x1`` the fill notional is
        ``ref_price * factor`` (USD) and the VWAP is ``ref_price * factor / (C(x1) - C(x0))``.
        Segment ``k`` contributes ``rho_k * ((b - a) + sign * (b**2 - a**2) / 2)`` over ``[a, b]``.

        Args:
            x0: float64 array or scalar, start displacement(s), ``>= 0``.
            x1: float64 array or scalar, end displacement(s), ``>= 0`` (broadcast with ``x0``);
                ``x1 < x0`` gives the negated integral.

        Returns:
            float64 array (broadcast shape), base units times price factor (dimension of qty).

        Raises:
            ValueError: a negative or NaN bound.
        """
        a = _as_nonneg(x0, "x0")
        b = _as_nonneg(x1, "x1")
        a, b = np.broadcast_arrays(a, b)
        return np.asarray(self._primitive(b) - self._primitive(a), dtype=np.float64)


@dataclass(frozen=True, eq=False)
class DepthCurve:
    """Both sides of the book plus where the curve came from.

    Attributes:
        bid: Bid side (``sign == -1``): what forced sells consume.
        ask: Ask side (``sign == +1``): what forced buys consume.
        source: Human-readable origin, e.g. ``"bookDepth BTCUSDT-bookDepth-2025-10-10.csv.gz @ ..."``.
        ref_price: Mid price at capture (USD per base unit) if known, else None.
        notes: Anomalies or caveats found in the source, reported with the run.

    Raises:
        ValueError: ``bid.sign != -1`` or ``ask.sign != +1``.
    """

    bid: SideCurve
    ask: SideCurve
    source: str
    ref_price: float | None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.bid.sign != -1 or self.ask.sign != 1:
            raise ValueError("DepthCurve needs bid.sign == -1 and ask.sign == +1")
        object.__setattr__(self, "notes", tuple(self.notes))


# --------------------------------------------------------------------------- walking
def _check_walk_args(d0, qty, limit_x, max_x) -> tuple[float, np.ndarray, np.ndarray, float]:
    q = np.asarray(qty, dtype=np.float64)
    lim = np.asarray(limit_x, dtype=np.float64)
    if q.ndim != 1 or lim.shape != q.shape:
        raise ValueError(f"qty and limit_x must be 1-D of the same length, got shapes {q.shape} and {lim.shape}")
    if not (np.isfinite(q).all() and (q >= 0).all()):
        raise ValueError("qty must be finite and >= 0")
    if np.isnan(lim).any():
        raise ValueError("limit_x must not be NaN (use np.inf for a market order)")
    if (lim[1:] < lim[:-1]).any():
        raise ValueError("limit_x must be non-decreasing (orders walk in order of their limits)")
    d0f = float(d0)
    if not (math.isfinite(d0f) and d0f >= 0):
        raise ValueError(f"d0 must be finite and >= 0, got {d0!r}")
    mx = float(max_x)
    if not mx >= 0:
        raise ValueError(f"max_x must be >= 0, got {max_x!r}")
    return d0f, q, lim, mx


def walk(side: SideCurve, d0: float, qty: np.ndarray, limit_x: np.ndarray,
         max_x: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Fill orders, in the given order, against one side of the book starting at displacement ``d0``.

    Order ``i`` fills ``min(qty_i, depth left between the current displacement and its effective
    limit e_i = min(limit_x_i, max_x))``; an order whose limit is already passed fills 0. With
    ``A_i = C(max(e_i, d0)) - C(d0)`` (depth reachable by order ``i``, non-decreasing in ``i``
    because limits are) and ``S_i = cumsum(qty)``, the cumulative fills ``F_i = min(F_{i-1} + q_i, A_i)``
    unroll to ``F_i = S_i + min(0, min_{j<=i}(A_j - S_j))``. The computation keeps the index ``j``
    attaining that running minimum so that a limit-bound order lands exactly on ``C(e_j)``
    (no round-off across a price gap).

    Displacements: after order ``i`` the walk stands at ``X_i = min(x_for_qty(C(d0) + F_i), e_N)``
    (flat stretches of ``C`` are crossed: depth resumes at their end, but never beyond the last
    order's effective limit ``e_N``). The factor of order ``i`` is
    ``price_factor_integral(X_{i-1}, X_i)`` with ``X_{-1} = d0``.

    Args:
        side: The curve to consume (bid for sells, ask for buys).
        d0: Current displacement (fraction of reference, ``>= 0``): depth in ``[0, d0]`` is gone.
        qty: float64 ``(N,)`` order sizes, base units, ``>= 0``.
        limit_x: float64 ``(N,)`` worst displacement each order accepts (its limit price as ``x``;
            ``np.inf`` for a market order), non-decreasing.
        max_x: Deepest displacement any order may reach (e.g. ``max_walk_pct / 100``).

    Returns:
        ``(fill_qty, fill_price_factor, d1)``: ``fill_qty`` float64 ``(N,)`` base units;
        ``fill_price_factor`` float64 ``(N,)`` = ``integral (1 + sign*x) dC`` over the depth the order
        consumed (fill notional = ``ref_price * factor`` USD, VWAP = ``ref_price * factor / fill_qty``);
        ``d1`` the displacement after all fills (``d0`` if nothing filled, else ``X_{N-1}``).

    Raises:
        ValueError: shapes differ, ``qty`` negative or not finite, ``limit_x`` NaN or decreasing,
            ``d0`` negative or not finite, ``max_x`` negative or NaN.
    """
    d0, q, lim, mx = _check_walk_args(d0, qty, limit_x, max_x)
    n = q.size
    if n == 0:
        return np.zeros(0), np.zeros(0), d0
    e = np.minimum(lim, mx)
    c0 = float(side.qty_within(d0))
    cl = np.maximum(side.qty_within(np.maximum(e, d0)), c0)  # C at each effective limit, >= C(d0)
    s = np.cumsum(q)
    v = cl - s
    run = np.minimum.accumulate(v)
    idx = np.arange(n)
    j = np.maximum.accumulate(np.where(v <= run, idx, 0))  # latest index attaining the running min
    bound = run <= c0
    # Q_i = C(d0) + F_i, cumulative depth consumed (from x = 0) after order i.
    qcum = np.where(bound, cl[j] + (s - s[j]), c0 + s)
    qcum = np.maximum.accumulate(np.maximum(np.minimum(qcum, cl), c0))
    prev = np.concatenate(([c0], qcum[:-1]))
    partial = bound & (j == idx)  # order i is the one stopped by its own limit
    fill = np.where(partial, np.minimum(qcum - prev, q), q)
    e_cap = max(float(e[-1]), d0)
    xs = np.minimum(side.x_for_qty(qcum), e_cap)
    g = side._primitive(np.concatenate(([d0], xs)))
    factor = np.diff(g)
    d1 = d0 if qcum[-1] <= c0 else float(xs[-1])
    return fill.astype(np.float64), factor.astype(np.float64), d1


def walk_reference(side: SideCurve, d0: float, qty: np.ndarray, limit_x: np.ndarray,
                   max_x: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Plain-Python reference of :func:`walk` (order by order, segment by segment).

    Same arguments, result and errors as :func:`walk`; tests compare the two. Each order walks the
    segments from the current displacement toward its effective limit, taking
    ``rho_k * (b - a)`` of depth and ``rho_k * ((b - a) + sign * (b**2 - a**2) / 2)`` of price factor
    on each piece ``[a, b]``; zero-density pieces are crossed. At the end (if anything filled) the
    walk also crosses any flat stretch it stands in, then is capped at the last order's effective
    limit.
    """
    d0, q, lim, mx = _check_walk_args(d0, qty, limit_x, max_x)
    xs = [float(v) for v in side.x]
    dens = [float(v) for v in side.density]
    rho_last = dens[-1]
    s = float(side.sign)
    last = len(xs) - 1

    def segment(cur: float) -> tuple[float, float]:
        k = bisect.bisect_right(xs, cur) - 1
        if k >= last:
            return math.inf, rho_last
        return xs[k + 1], dens[k]

    cur = d0
    fills: list[float] = []
    factors: list[float] = []
    for i in range(q.size):
        stop = min(float(lim[i]), mx)
        rem = float(q[i])
        got = 0.0
        fac = 0.0
        while rem > 0 and cur < stop:
            seg_end, rho = segment(cur)
            b = min(seg_end, stop)
            if rho == 0.0:
                cur = b
                continue
            avail = rho * (b - cur)
            if rem >= avail:
                take, new = avail, b
            else:
                take, new = rem, cur + rem / rho
            fac += rho * ((new - cur) + s * (new - cur) * (new + cur) / 2.0)
            got += take
            rem -= take
            cur = new
        fills.append(got)
        factors.append(fac)
    if sum(fills) <= 0.0:
        return np.array(fills, dtype=np.float64), np.array(factors, dtype=np.float64), d0
    while True:  # cross flat stretches: depth resumes at their end
        seg_end, rho = segment(cur)
        if rho != 0.0:
            break
        cur = seg_end
        if math.isinf(cur):
            break
    e_cap = max(min(float(lim[-1]), mx), d0) if q.size else d0
    return np.array(fills, dtype=np.float64), np.array(factors, dtype=np.float64), min(cur, e_cap)


# --------------------------------------------------------------------------- parametric
_KIND_BETA = {"linear": 1.0, "sqrt": 0.5}
_X_MIN = 1e-6  # first non-zero knot: ~one price tick of BTC (0.1 USD at 100k USD)


def parametric_curve(kind: str, depth_usd_at_1pct: float, ref_price: float, impact_exponent: float | None = None,
                     x_max: float = 0.5, knots: int = 201) -> DepthCurve:
    """Parametric depth, the same on both sides.

    Cumulative notional within ``x`` of mid: ``D(x) = depth_usd_at_1pct * (x / 0.01) ** (1 / beta)``
    (USD), base quantity ``C(x) = D(x) / ref_price``. ``beta`` is the impact exponent: the price
    move to absorb notional ``D`` is ``x = 0.01 * (D / depth_usd_at_1pct) ** beta``; ``beta = 1`` is
    linear impact, ``beta = 0.5`` the square-root law (Bouchaud et al., "Trades, Quotes and Prices",
    2018, ch. 12; Tóth et al. 2011), any other value a power law. Source of the parametrization:
    ``delever.scenario.ParametricDepth``.

    Knots: ``0`` then ``knots - 1`` geometrically spaced points from ``1e-6`` (about one BTC tick)
    to ``x_max``, with the knot nearest to 0.01 moved onto 0.01 exactly (so ``C(0.01)`` is exact).
    Geometric spacing keeps the relative interpolation error uniform; with the defaults the
    piecewise-linear curve is within 0.2 % of ``C`` for ``beta = 0.5`` (0.06 % for 0.7, 0.02 % for
    2, 0.75 % for 0.3) at ``x`` in ``[1e-6, x_max]``, exact for ``beta = 1`` (``tests/test_depth.py``).

    Args:
        kind: ``"linear"``, ``"sqrt"`` or ``"power"``.
        depth_usd_at_1pct: Cumulative notional within 1 % of mid, USD, > 0.
        ref_price: Mid price, USD per base unit, > 0.
        impact_exponent: ``beta`` for ``kind="power"`` (> 0); must be None otherwise.
        x_max: Last knot (fraction of mid), > 1e-6; the curve is extrapolated linearly beyond it.
        knots: Number of knots (>= 3).

    Returns:
        DepthCurve with ``ref_price`` set and source ``"parametric <kind> ..."``.

    Raises:
        DeleverInputError: unknown kind, missing or superfluous exponent, non-positive values.
    """
    if kind in _KIND_BETA:
        if impact_exponent is not None:
            raise DeleverInputError(f"market.depth.impact_exponent: only allowed for kind='power', got kind={kind!r}")
        beta = _KIND_BETA[kind]
    elif kind == "power":
        if impact_exponent is None or not (math.isfinite(impact_exponent) and impact_exponent > 0):
            raise DeleverInputError(f"market.depth.impact_exponent: expected a number > 0 for kind='power', got {impact_exponent!r}")
        beta = float(impact_exponent)
    else:
        raise DeleverInputError(f"market.depth.kind: expected 'linear', 'sqrt' or 'power', got {kind!r}")
    for name, val in (("depth_usd_at_1pct", depth_usd_at_1pct), ("ref_price", ref_price)):
        if not (math.isfinite(val) and val > 0):
            raise DeleverInputError(f"market.depth.{name}: expected a finite number > 0, got {val!r}")
    if not (math.isfinite(x_max) and x_max > _X_MIN) or int(knots) < 3:
        raise DeleverInputError(f"parametric depth: need x_max > {_X_MIN} and knots >= 3, got {x_max!r}, {knots!r}")
    x = np.concatenate(([0.0], np.geomspace(_X_MIN, x_max, int(knots) - 1)))
    x[-1] = x_max
    if _X_MIN < _PCT1 < x_max:
        interior = x[1:-1]
        moved = x.copy()
        moved[np.argmin(np.abs(np.log(interior / _PCT1))) + 1] = _PCT1
        x = moved if (np.diff(moved) > 0).all() else np.unique(np.append(x, _PCT1))
    notional = depth_usd_at_1pct * (x / _PCT1) ** (1.0 / beta)
    cum = notional / ref_price
    label = kind if kind != "power" else f"power beta={beta:g}"
    source = f"parametric {label}: {depth_usd_at_1pct:,.0f} USD within 1 % of {ref_price:,.2f} USD"
    return DepthCurve(SideCurve(x, cum, -1), SideCurve(x, cum, +1), source, float(ref_price))
