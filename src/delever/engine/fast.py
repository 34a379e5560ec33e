"""Fast Monte Carlo path: one fixed book and venue over many exogenous price paths (Numba kernels).

The stress runner runs the same book on many paths. The general engine
(:class:`delever.engine.core.CascadeEngine`) scans every position each round; with the positions fixed,
this module sorts the starting liquidation prices once per side (NumPy, outside compiled code), ships
the sorted arrays to the workers once (:class:`FastBook` is a plain picklable dataclass), and each
path only advances a cursor as its mark moves (see :mod:`delever.engine.kernels` for the data layout
and the cost per step).

Semantics: those of the general engine, decision for decision (``runner.run_path``), for stress-mode
paths. The kernel does not auto-deleverage: a path on which the backstop would ADL at least one
counterparty stops and is flagged ``needs_general``; ``runner.run_paths`` reruns only those paths with
the general engine ("ADL as a second pass only on paths that need it").

Typical use::

    ok, why = fast_kernel_support(prep)
    fb = build_fast_book(prep)                      # once per book; send to each worker once
    out = run_paths_fast(fb, t_s, prices)           # dict of per-path arrays, flagged paths NaN
    out = runner.run_paths(prep, t_s, prices, fb)   # same, flagged paths filled by the general engine
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np

from delever.engine import kernels as K
from delever.market.depth import SideCurve, _check_walk_args
from delever.venues.formulas import liquidation_price_binance

__all__ = [
    "FastBook",
    "FLOAT_OUTPUTS",
    "INT_OUTPUTS",
    "BOOL_OUTPUTS",
    "fast_kernel_support",
    "build_fast_book",
    "run_paths_fast",
    "walk_fast",
]

MARK_METHODS = {"median_basis_ma": 0, "median_basis_ema": 1, "last": 2, "index": 3}
ADL_RANKINGS = {"pnl_pct_x_effective_leverage": 0, "pnl_pct_x_margin_ratio": 1, "hyperliquid": 2}

# Output names, in the kernels' column order (names and meaning of ``runner.path_metrics``).
FLOAT_OUTPUTS: tuple[str, ...] = (
    "exogenous_move_pct", "final_move_pct", "end_move_pct", "amplification", "liquidated_notional_usd",
    "liquidated_long_usd", "liquidated_short_usd", "insurance_fund_start_usd", "insurance_fund_end_usd",
    "insurance_fund_end_cash_usd", "backstop_inventory_qty", "bad_debt_usd", "bad_debt_realized_usd",
    "adl_notional_usd", "adl_shortfall_qty", "bad_debt_unrecovered_usd", "trader_liquidation_loss_usd",
)
INT_OUTPUTS: tuple[str, ...] = ("liquidation_count", "rounds_max", "round_cap_hits", "adl_count")
BOOL_OUTPUTS: tuple[str, ...] = ("insurance_depleted", "needs_general")
assert len(FLOAT_OUTPUTS) == K.N_FOUT and len(INT_OUTPUTS) == K.N_IOUT and len(BOOL_OUTPUTS) == K.N_BOUT


@dataclass
class FastBook:
    """A book prepared for the fast kernel: per-side sorted arrays, tiers, depth knots and parameters.

    Built once per (book, venue, depth, impact settings) by :func:`build_fast_book`; plain NumPy arrays
    and floats, so it pickles cheaply to workers.

    Attributes:
        n_positions: Positions in the book.
        longs: float64 ``(5, NL)`` longs sorted by descending starting liquidation price; rows
            (``kernels.R_*``): liquidation price (USD; ``-inf`` if never), row in the original book (the
            depth walk breaks ties by it, as the general engine does), qty (base), entry (USD),
            collateral (USD).
        shorts: float64 ``(5, NS)`` shorts sorted by ascending liquidation price (``+inf`` if never).
        tiers: float64 ``(3, K)`` margin tiers: floors (USD), maintenance margin rates, maintenance
            amounts (USD).
        bid, ask: float64 ``(4, K)`` depth curves: knots (fraction of the reference), cumulative base
            qty, segment densities (the last entry holds the last segment's density, used beyond the
            last knot), primitive of the price factor at the knots (``SideCurve`` internals).
        params: float64 ``(kernels.N_PARAMS,)`` venue and engine parameters (``kernels.P_*`` indices).
        venue: Venue preset name (for messages).
    """

    n_positions: int
    longs: np.ndarray
    shorts: np.ndarray
    tiers: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    params: np.ndarray
    venue: str

    @property
    def initial_fund_usd(self) -> float:
        """Starting balance of the backstop (USD)."""
        return float(self.params[K.P_FUND_USD])


def _n_threads() -> int:
    # the configured count (NUMBA_NUM_THREADS, default: CPU count); reading it starts no thread pool
    return max(1, int(numba.config.NUMBA_NUM_THREADS))


def fast_kernel_support(prep, mode: str = "stress") -> tuple[bool, str]:
    """Whether the fast kernel can run ``prep`` on price paths of ``mode``.

    Args:
        prep: ``delever.runner.Prepared``.
        mode: Mode of the paths to run (``"stress"``: exogenous paths, impact added; ``"replay"``).

    Returns:
        ``(True, "")`` or ``(False, reason)``; when False use the general engine (``runner.run_path``).
    """
    if mode != "stress":
        return False, f"{mode!r} paths: the fast kernel runs stress-mode (exogenous) paths only"
    venue = prep.venue
    active = prep.scenario.mitigations.active()
    if active:
        return False, f"mitigations {', '.join(active)} are not ported to the fast kernel"
    if venue.drift is not None:
        return False, ("Drift liquidation (liquidator takeover with time ramp, bankruptcy socialization) is not "
                       "ported to the fast kernel")
    if venue.dydx is not None:
        return False, "dYdX liquidation path (fillable price, block limits, deleveraging) is not ported to the fast kernel"
    if venue.mark.method not in MARK_METHODS:
        return False, f"mark method {venue.mark.method!r} is not ported to the fast kernel"
    if venue.adl.ranking not in ADL_RANKINGS:
        return False, f"ADL ranking {venue.adl.ranking!r} is not ported to the fast kernel"
    if venue.backstop.takeover_price not in ("bankruptcy", "mark"):
        return False, f"takeover price {venue.backstop.takeover_price!r} is not ported to the fast kernel"
    liq = venue.liquidation
    if liq.step_down_tiers and (liq.step_down_order != "ioc" or liq.step_down_to != "lower_tier"
                                or liq.step_down_from_tier != 2 or liq.step_down_freeze_s > 0):
        return False, ("step-down variants (fill-or-kill orders, down to the first tier, from a higher tier, "
                       "freeze) are not ported to the fast kernel")
    if liq.close_at_bankruptcy:
        return False, "closing at the bankruptcy price with the surplus to the backstop is not ported to the fast kernel"
    if liq.liquidation_taker_fee_rate > 0:
        return False, "taker fees on liquidation fills are not ported to the fast kernel"
    if venue.adl.price == "mark":
        return False, "ADL at the mark price is not ported to the fast kernel (it only knows bankruptcy / previous mark)"
    if venue.backstop.adl_drawdown_fraction > 0:
        return False, "the fund-drawdown ADL trigger is not ported to the fast kernel (it would miss those ADL paths)"
    if len(prep.book) == 0:
        return False, "empty book"
    return True, ""


def _pack_curve(curve: SideCurve) -> np.ndarray:
    dens = np.append(curve.density, curve._rho_last)
    return np.ascontiguousarray(np.stack([curve.x, curve.cum_qty, dens, curve._g]), dtype=np.float64)


def build_fast_book(prep) -> FastBook:
    """Precompute the fast kernel's arrays for ``prep`` (once per book).

    Liquidation prices come from ``venues.formulas.liquidation_price_binance``, exactly as
    ``CascadeEngine._refresh_lp`` computes them (``nan`` -> never: ``-inf`` long, ``+inf`` short).

    Args:
        prep: ``delever.runner.Prepared`` (book, venue, tiers, depth, scenario impact/engine/fund settings).

    Returns:
        FastBook.

    Raises:
        ValueError: ``fast_kernel_support(prep)`` is False.
    """
    ok, why = fast_kernel_support(prep)
    if not ok:
        raise ValueError(f"fast kernel not applicable: {why}")
    sc, venue, tiers, book = prep.scenario, prep.venue, prep.tiers, prep.book
    side = np.asarray(book.side)
    qty = np.asarray(book.qty, np.float64)
    entry = np.asarray(book.entry_price, np.float64)
    coll = np.asarray(book.collateral_usd, np.float64)
    lp = liquidation_price_binance(side, qty, entry, coll, tiers)
    lp = np.where(np.isnan(lp), np.where(side > 0, -np.inf, np.inf), lp)

    def sorted_side(mask: np.ndarray, descending: bool) -> np.ndarray:
        idx = np.flatnonzero(mask)
        key = -lp[idx] if descending else lp[idx]
        order = idx[np.argsort(key)]  # ties in liquidation price are ordered by book row inside the kernel
        return np.ascontiguousarray(np.stack([lp[order], order.astype(np.float64), qty[order], entry[order],
                                              coll[order]]))

    liq, bs, imp = venue.liquidation, venue.backstop, sc.market.impact
    prm = np.zeros(K.N_PARAMS)
    prm[K.P_MARK_METHOD] = MARK_METHODS[venue.mark.method]
    prm[K.P_BASIS_WINDOW_S] = venue.mark.basis_window_s
    prm[K.P_FUNDING_BASIS] = venue.mark.funding_basis
    prm[K.P_FEE_RATE] = liq.clearance_fee_rate
    prm[K.P_STEP_DOWN] = 1.0 if liq.step_down_tiers else 0.0
    prm[K.P_PARTIAL_THRESHOLD_USD] = liq.partial_threshold_usd
    prm[K.P_PARTIAL_FRACTION] = liq.partial_fraction
    prm[K.P_PARTIAL_COOLDOWN_S] = liq.partial_cooldown_s
    prm[K.P_BACKSTOP_BELOW_MM] = liq.backstop_below_mm_fraction
    prm[K.P_TAKEOVER_BANKRUPTCY] = 1.0 if bs.takeover_price == "bankruptcy" else 0.0
    prm[K.P_MAX_NET_RATIO] = bs.max_net_notional_ratio
    prm[K.P_ADL_LOSS_FRACTION] = bs.adl_loss_fraction
    prm[K.P_UNWIND_HALF_LIFE_S] = bs.unwind_half_life_s
    prm[K.P_UNWIND_SLIP_PCT] = bs.unwind_max_slippage_pct
    prm[K.P_ADL_RANKING] = ADL_RANKINGS[venue.adl.ranking]
    prm[K.P_ADL_PRICE_BANKRUPTCY] = 1.0 if venue.adl.price == "bankruptcy" else 0.0
    prm[K.P_PERMANENT_FRACTION] = imp.permanent_fraction
    prm[K.P_RESILIENCE_HALF_LIFE_S] = imp.resilience_half_life_s
    prm[K.P_MAX_X] = imp.max_walk_pct / 100.0
    prm[K.P_MAX_ROUNDS] = sc.engine.max_rounds
    prm[K.P_FUND_USD] = sc.insurance_fund.initial_usd
    tier_arr = np.ascontiguousarray(np.stack([tiers.floor_usd, tiers.mmr, tiers.maint_amount_usd]), dtype=np.float64)
    return FastBook(len(book), sorted_side(side > 0, True), sorted_side(side < 0, False), tier_arr,
                    _pack_curve(prep.depth.bid), _pack_curve(prep.depth.ask), prm, venue.name)


def run_paths_fast(fb: FastBook, t_s: np.ndarray, prices: np.ndarray, parallel: bool = True) -> dict[str, np.ndarray]:
    """Run the cascade of ``fb`` on each exogenous price path (stress mode).

    Args:
        fb: The prepared book (:func:`build_fast_book`).
        t_s: float64 ``(T,)`` seconds since the start, strictly increasing (``t_s[0]`` is normally 0).
        prices: float64 ``(P, T)`` exogenous prices (USD, finite, > 0); column 0 is each path's start price.
        parallel: Spread paths over threads (the kernel releases the GIL), as many as
            ``NUMBA_NUM_THREADS`` (default: the CPU count). Use False inside worker processes that
            already use every core.

    Returns:
        Dict of per-path arrays, shape ``(P,)``: float64 for :data:`FLOAT_OUTPUTS` (``amplification``
        NaN where the exogenous move is 0, as ``path_metrics`` returns None), int64 for
        :data:`INT_OUTPUTS`, bool for :data:`BOOL_OUTPUTS`. ``needs_general`` marks paths on which the
        backstop would auto-deleverage: the kernel stopped there, their other outputs are NaN / 0 (except
        ``exogenous_move_pct``) and must come from the general engine (:func:`run_paths` does that).
        ``adl_notional_usd`` and ``adl_count`` are 0 on every other path.

    Raises:
        ValueError: bad shapes, non-finite or non-positive prices, ``t_s`` not strictly increasing.
    """
    t = np.ascontiguousarray(t_s, dtype=np.float64)
    px = np.ascontiguousarray(prices, dtype=np.float64)
    if px.ndim == 1:
        px = px[None, :]
    if t.ndim != 1 or t.size == 0 or px.ndim != 2 or px.shape[1] != t.size:
        raise ValueError(f"t_s must be (T,) and prices (P, T), got {t.shape} and {np.shape(prices)}")
    if not np.isfinite(t).all() or (np.diff(t) <= 0).any():
        raise ValueError("t_s must be finite and strictly increasing")
    if not (np.isfinite(px).all() and (px > 0).all()):
        raise ValueError("prices must be finite and > 0")
    n = px.shape[0]
    out_f = np.zeros((n, K.N_FOUT))
    out_i = np.zeros((n, K.N_IOUT), dtype=np.int64)
    out_b = np.zeros((n, K.N_BOUT), dtype=np.bool_)
    args = (t, px, fb.params, fb.tiers, fb.longs, fb.shorts, fb.bid, fb.ask, out_f, out_i, out_b)
    threads = min(n, _n_threads()) if parallel else 1
    if threads <= 1:
        if n:
            K.run_block(*args, 0, n)
    else:
        # Dynamic chunks over threads (the kernel releases the GIL): paths differ a lot in cost (a crash
        # liquidates thousands of positions, a quiet path none), so many small chunks balance the load.
        chunk = max(1, min(256, n // (8 * threads)))
        bounds = [(a, min(a + chunk, n)) for a in range(0, n, chunk)]
        K.run_block(*args, 0, 0)  # compile or load from the cache once, in this thread
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(lambda b: K.run_block(*args, b[0], b[1]), bounds))
    res: dict[str, np.ndarray] = {}
    for c, name in enumerate(FLOAT_OUTPUTS):
        res[name] = out_f[:, c].copy()
    for c, name in enumerate(INT_OUTPUTS):
        res[name] = out_i[:, c].copy()
    for c, name in enumerate(BOOL_OUTPUTS):
        res[name] = out_b[:, c].copy()
    return res


def walk_fast(side: SideCurve, d0: float, qty: np.ndarray, limit_x: np.ndarray,
              max_x: float) -> tuple[np.ndarray, np.ndarray, float]:
    """:func:`delever.market.depth.walk` through the Numba kernel (same arguments, result and errors).

    Returns:
        ``(fill_qty, fill_price_factor, d1)``: float64 ``(N,)``, float64 ``(N,)``, float.
    """
    d0f, q, lim, mx = _check_walk_args(d0, qty, limit_x, max_x)
    n = q.size
    fill = np.zeros(n)
    factor = np.zeros(n)
    if n == 0:
        return fill, factor, d0f
    d1 = K.walk_kernel(_pack_curve(side), float(side.sign), d0f, np.ascontiguousarray(q),
                       np.ascontiguousarray(lim), mx, fill, factor)
    return fill, factor, float(d1)
