"""Pieces of the book synthesizers: collateral draws, leverage mix, scaling to open interest under bracket caps,
entry-price history checks and survival-conditioned entry draws.

Shared by the one-instrument synthesizer (:mod:`delever.synthesize`) and the multi-instrument one
(:mod:`delever.synthesize_multi`). Plain parameters only: no import of the config layer. Each step's basis is in
``docs/synthesizer.md``.
"""

from __future__ import annotations

import math

import numpy as np

from delever.errors import DeleverInputError
from delever.venues.tiers import MarginTiers

MAX_ENTRY_ATTEMPTS = 100
"""Redraws of an entry price before the book is declared infeasible."""

TIER_EDGE_RTOL = 1e-10
"""A position capped at a bracket's notional cap is placed this far (relative) below the cap, so
rounding in ``qty * price`` never pushes it into the next bracket."""

OI_RTOL = 1e-12
"""Relative tolerance of the scaling/capping fixed point before the final exact rescale."""

_MAX_SOLVER_ITERATIONS = 200


def pareto_scale_usd(median_usd: float, alpha: float) -> float:
    """Scale ``x_m`` of a Pareto(alpha) whose median is ``median_usd``: ``x_m = median / 2**(1/alpha)``."""
    return median_usd / 2.0 ** (1.0 / alpha)


def draw_collateral(n: int, kind: str, median_usd: float, sigma: float, pareto_alpha: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Collateral before scaling to open interest, float64 ``(n,)`` USD (docs/synthesizer.md step 3).

    ``kind = "lognormal"``: ``median_usd * exp(sigma * Z)``; ``"pareto"``: classical Pareto with tail index
    ``pareto_alpha`` and scale ``median_usd / 2**(1/alpha)`` (same median).
    """
    if kind == "lognormal":
        return median_usd * np.exp(sigma * rng.standard_normal(n))
    # numpy's pareto() is Lomax (Pareto II); 1 + Lomax is the classical Pareto with x_m = 1.
    return pareto_scale_usd(median_usd, pareto_alpha) * (1.0 + rng.pareto(pareto_alpha, n))


def leverage_probabilities(leverage: np.ndarray, weight: np.ndarray, basis: str) -> np.ndarray:
    """Probability that an account draws each leverage of the mix (docs/synthesizer.md step 4).

    ``basis = "notional"``: weights are shares of open interest; collateral is independent of leverage, so an
    account at leverage ``L`` carries ``L`` times the expected notional and draws ``L`` with probability
    ``~ weight / L``. ``basis = "accounts"``: the weights are account probabilities.
    """
    lev_w = np.asarray(weight, dtype=np.float64)
    if basis == "notional":
        lev_w = lev_w / np.asarray(leverage, dtype=np.float64)
    return lev_w / lev_w.sum()


def long_account_count(n: int, long_short_ratio: float) -> int:
    """Long accounts among ``n`` for an account long/short ratio ``r``: ``round(n r / (1 + r))`` in ``[1, n-1]``."""
    r = long_short_ratio
    return min(max(int(math.floor(n * r / (1.0 + r) + 0.5)), 1), n - 1)


def max_notional_for_collateral(
    collateral_usd: np.ndarray, tiers: MarginTiers
) -> tuple[np.ndarray, np.ndarray]:
    """Largest notional the brackets allow for each collateral (USD).

    A notional ``N`` in bracket ``k`` (``floor_k < N <= floor_{k+1}``) needs
    ``collateral >= N / max_leverage_k``. Since max leverage falls with notional, the feasible
    notionals for a collateral ``c`` form an interval ``(0, N_max(c)]`` with
    ``N_max(c) = max_k min(max_leverage_k * c, floor_{k+1})`` over the brackets where that value
    exceeds ``floor_k``. Caps at a bracket ceiling are placed ``TIER_EDGE_RTOL`` below it.

    Args:
        collateral_usd: float64 ``(M,)`` collateral, USD, > 0.
        tiers: Bracket table.

    Returns:
        ``(n_max, at_ceiling)``: float64 ``(M,)`` max notional (USD), and bool ``(M,)`` True where it
        is a bracket ceiling (independent of collateral) rather than ``max_leverage * c``.
    """
    floor = tiers.floor_usd
    lev_max = tiers.max_leverage
    k_count = floor.size
    ceiling = np.append(floor[1:] * (1.0 - TIER_EDGE_RTOL), np.inf)
    # Bracket k is reachable iff max_leverage_k * c > floor_k, i.e. c > floor_k / max_leverage_k;
    # a reachable bracket's best notional exceeds every lower bracket's ceiling, so the highest
    # reachable bracket wins. With max leverage non-increasing these thresholds increase and one
    # searchsorted finds it; otherwise take the max over brackets.
    threshold = floor / lev_max
    if np.all(np.diff(threshold) > 0) and np.all(ceiling > floor):
        k = np.searchsorted(threshold, collateral_usd, side="left") - 1
        lin = lev_max[k] * collateral_usd
        cap = ceiling[k]
        return np.minimum(lin, cap), lin > cap
    best = np.zeros_like(collateral_usd)
    at_ceiling = np.zeros(collateral_usd.shape, dtype=bool)
    for k in range(k_count):
        lin = lev_max[k] * collateral_usd
        cand = np.minimum(lin, ceiling[k])
        better = (cand > floor[k]) & (cand > best)
        best = np.where(better, cand, best)
        at_ceiling = np.where(better, lin > ceiling[k], at_ceiling)
    return best, at_ceiling



def fit_side_to_open_interest(
    coll0: np.ndarray, lev: np.ndarray, target_usd: float, tiers: MarginTiers
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Scale one side's collaterals by one factor ``s`` so capped notionals sum to ``target_usd``.

    Total notional ``T(s) = sum_i min(s c_i L_i, N_max(s c_i))`` is continuous and non-decreasing
    in ``s`` and piecewise linear; a safeguarded Newton step on the current linear piece (bisection
    when it leaves the bracket ``[lo, hi]``) finds ``T(s) = target`` to ``OI_RTOL``; a final common
    rescale of collateral and notional (leverage unchanged) makes the sum exact to rounding.

    Returns:
        ``(collateral, notional, capped, s)``.
    """
    base = coll0 * lev
    s = target_usd / float(base.sum())  # uncapped solution; capping only lowers T, so T(s) <= target
    lo, hi = 0.0, math.inf
    for _ in range(_MAX_SOLVER_ITERATIONS):
        coll = s * coll0
        n_max, at_ceiling = max_notional_for_collateral(coll, tiers)
        want = lev * coll  # same operation order as max_leverage * coll, so L == max exactly is not 'capped'
        capped = want > n_max
        notional = np.where(capped, n_max, want)
        total = float(notional.sum())
        if abs(total / target_usd - 1.0) <= OI_RTOL:
            break
        if total < target_usd:
            lo = s
        else:
            hi = s
        fixed = capped & at_ceiling
        fixed_sum = float(notional[fixed].sum())
        slope = (total - fixed_sum) / s
        s_new = (target_usd - fixed_sum) / slope if slope > 0 else math.nan
        if not lo < s_new < hi:
            s_new = 0.5 * (lo + hi) if math.isfinite(hi) else 2.0 * s
        if s_new == s:
            break
        s = s_new
    else:  # pragma: no cover - the piecewise-linear Newton converges in a handful of steps
        raise RuntimeError(
            f"synthesizer: scaling to open interest did not converge (T/OI - 1 = {total / target_usd - 1:.3e})"
        )
    if abs(total / target_usd - 1.0) > 1e-9:  # pragma: no cover
        raise RuntimeError(
            f"synthesizer: scaling to open interest stalled (T/OI - 1 = {total / target_usd - 1:.3e})"
        )
    f = target_usd / total
    return coll * f, notional * f, capped, s * f



def validate_history(entry_history: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    try:
        prices, weights = entry_history
    except (TypeError, ValueError):
        raise DeleverInputError("entry_history: expected a (prices, weights) pair of arrays") from None
    prices = np.asarray(prices, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if prices.ndim != 1 or prices.size == 0 or weights.shape != prices.shape:
        raise DeleverInputError(
            f"entry_history: prices and weights must be equal-length non-empty 1-D arrays, got shapes "
            f"{prices.shape} and {weights.shape}"
        )
    bad = ~(np.isfinite(prices) & (prices > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DeleverInputError(
            f"entry_history: price {i + 1} is {float(prices[i])!r}, expected a finite price > 0"
        )
    bad = ~(np.isfinite(weights) & (weights >= 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DeleverInputError(
            f"entry_history: weight {i + 1} is {float(weights[i])!r}, expected a finite weight >= 0"
        )
    if weights.sum() <= 0:
        raise DeleverInputError("entry_history: weights sum to 0 (expected bar volumes or uniform weights)")
    return prices, weights



def draw_surviving_entries(idx, collateral, mm, qty, sgn, start_price, hist_prices, hist_p, sigma, rng):
    """Entry prices drawn from the entry distribution conditioned on the position surviving at start.

    A position survives when ``collateral + side*qty*(start - entry) > mm``, i.e. a long's entry is
    below ``start + (collateral - mm)/qty`` and a short's above ``start - (collateral - mm)/qty``.
    History: the history's prices inside that bound, with their weights. Lognormal: the truncated
    lognormal by inverse CDF (scipy.special). Returns ``(entries, ok)``; ``ok`` is False where no
    entry can survive (no history price inside the bound).
    """
    from scipy.special import ndtr, ndtri

    bound = start_price + sgn[idx] * (collateral[idx] - mm[idx]) / qty[idx]
    # Strictly inside the bound: shrink by a relative 1e-12 so rounding cannot land on it.
    bound = bound - sgn[idx] * np.abs(bound) * 1e-12
    longs = sgn[idx] > 0
    out = np.empty(idx.size)
    ok = np.ones(idx.size, dtype=bool)
    if hist_prices is not None:
        order = np.argsort(hist_prices)
        sp, cw = hist_prices[order], np.cumsum(hist_p[order])
        cw_lo = np.concatenate(([0.0], cw))
        # longs: prices < bound; shorts: prices > bound
        k = np.searchsorted(sp, bound, side="left")
        k_hi = np.searchsorted(sp, bound, side="right")
        lo_mass = np.where(longs, 0.0, cw_lo[k_hi])
        hi_mass = np.where(longs, cw_lo[k], cw_lo[-1])
        ok = hi_mass - lo_mass > 0
        u = lo_mass + rng.random(idx.size) * (hi_mass - lo_mass)
        pick = np.clip(np.searchsorted(cw, u, side="right"), 0, sp.size - 1)
        out = sp[pick]
        return out, ok & (np.where(longs, out < bound, out > bound))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log(np.maximum(bound, 0.0) / start_price) / sigma
    p_bound = ndtr(z)
    u = rng.random(idx.size)
    p = np.where(longs, u * p_bound, p_bound + u * (1.0 - p_bound))
    out = start_price * np.exp(sigma * ndtri(np.clip(p, 1e-300, 1 - 1e-16)))
    ok = np.where(longs, bound > 0, True) & np.where(longs, out < bound, out > bound)
    return out, ok




def path_suffix_extremes(low: np.ndarray, high: np.ndarray, start_price: float) -> tuple[np.ndarray, np.ndarray]:
    """Lowest low and highest high from each bar to the start: float64 ``(H + 1,)`` each, the start price last.

    ``suffix_low[t] = min(low[t:], start)``; a position entered in bar ``b`` meets its adverse extreme at
    ``suffix_low[b + 1]`` (long) or ``suffix_high[b + 1]`` (short).
    """
    low_ext = np.append(np.asarray(low, dtype=np.float64), start_price)
    high_ext = np.append(np.asarray(high, dtype=np.float64), start_price)
    return np.minimum.accumulate(low_ext[::-1])[::-1], np.maximum.accumulate(high_ext[::-1])[::-1]


def draw_surviving_bars(collateral: np.ndarray, qty: np.ndarray, sgn: np.ndarray, bar_prices: np.ndarray,
                        bar_p: np.ndarray, suffix_low: np.ndarray, suffix_high: np.ndarray, tiers: MarginTiers,
                        rng: np.random.Generator, block_cells: int = 2_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Entry bars drawn from the bar weights restricted to bars from which a position survives the path.

    A position entered at ``bar_prices[b]`` survives when ``collateral + sgn*qty*(worst - entry) > MM(qty*worst)``
    with ``worst = suffix_low[b + 1]`` (long) or ``suffix_high[b + 1]`` (short) (:func:`path_suffix_extremes`).

    Args:
        collateral, qty, sgn: float64 ``(M,)`` margin (USD), size (base units, > 0), side (+1 / -1).
        bar_prices: float64 ``(H,)`` entry price of each bar. bar_p: float64 ``(H,)`` bar probabilities.
        suffix_low, suffix_high: float64 ``(H + 1,)``.
        tiers: Brackets for the maintenance margin.

    Returns:
        ``(bars, ok)``: int64 ``(M,)`` and bool ``(M,)`` (False where no bar lets the position survive).
    """
    H = bar_prices.size
    bars = np.zeros(collateral.size, dtype=np.int64)
    ok = np.zeros(collateral.size, dtype=bool)
    step = max(1, block_cells // H)
    for a in range(0, collateral.size, step):
        sl = slice(a, a + step)
        worst = np.where(sgn[sl, None] > 0, suffix_low[None, 1:], suffix_high[None, 1:])
        mm = tiers.maintenance_margin(qty[sl, None] * worst)
        alive = collateral[sl, None] + sgn[sl, None] * qty[sl, None] * (worst - bar_prices[None, :]) > mm
        cw = np.cumsum(np.where(alive, bar_p[None, :], 0.0), axis=1)
        u = rng.random(cw.shape[0]) * cw[:, -1]
        pick = np.minimum((cw <= u[:, None]).sum(axis=1), H - 1)
        bars[sl] = pick
        ok[sl] = (cw[:, -1] > 0) & alive[np.arange(cw.shape[0]), pick]
    return bars, ok
