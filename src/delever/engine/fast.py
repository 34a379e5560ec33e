"""Fast Monte Carlo path: one fixed book and venue over many exogenous price paths (Numba kernels).

The stress runner runs the same book on many paths. The general engine
(:class:`delever.engine.core.CascadeEngine`) scans every position each round; with the positions fixed,
this module sorts the starting liquidation prices once per side (NumPy, outside compiled code), ships
the sorted arrays to the workers once (:class:`FastBook` is a plain picklable dataclass), and each
path only advances a cursor as its mark moves (see :mod:`delever.engine.kernels` for the data layout
and the cost per step).

Semantics: those of the general engine, decision for decision (``runner.run_path``), for stress-mode
paths, auto-deleveraging included (queue and pro-rata policies, every ranking and ADL price of the
presets it runs). Which venue rules it runs is an allow-list: every field of ``VenueRules`` and of the
scenario's ``Mitigations`` has an entry in :data:`VENUE_FIELDS` / :data:`MITIGATION_FIELDS` saying
whether the kernel supports its value; a field without an entry is refused, so a new rule cannot be
ignored by the kernel unnoticed.

Typical use::

    ok, why = fast_kernel_support(prep)
    fb = build_fast_book(prep)                      # once per book; send to each worker once
    out = run_paths_fast(fb, t_s, prices)           # dict of per-path arrays
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from pydantic import BaseModel

from delever.engine import kernel_adl as KA
from delever.engine import kernels as K
from delever.market.depth import SideCurve, _check_walk_args
from delever.venues.formulas import liquidation_price_binance

__all__ = [
    "FastBook",
    "FLOAT_OUTPUTS",
    "INT_OUTPUTS",
    "BOOL_OUTPUTS",
    "VENUE_FIELDS",
    "MITIGATION_FIELDS",
    "fast_kernel_support",
    "build_fast_book",
    "run_paths_fast",
    "walk_fast",
]

MARK_METHODS = {"median_basis_ma": 0, "median_basis_ema": 1, "last": 2, "index": 3}
ADL_RANKINGS = {"pnl_pct_x_effective_leverage": 0, "pnl_pct_x_margin_ratio": 1, "hyperliquid": 2}
ADL_PRICES = {"bankruptcy": 0, "previous_mark": 1, "mark": 2}
ADL_POLICIES = {"queue": KA.POLICY_QUEUE, "pro_rata": KA.POLICY_PRO_RATA, "capped_pro_rata": KA.POLICY_CAPPED_PRO_RATA,
                "risk_aware_pro_rata": KA.POLICY_RISK_AWARE_PRO_RATA}

# Output names, in the kernels' column order (names and meaning of ``runner.path_metrics``).
FLOAT_OUTPUTS: tuple[str, ...] = (
    "exogenous_move_pct", "final_move_pct", "end_move_pct", "amplification", "liquidated_notional_usd",
    "liquidated_long_usd", "liquidated_short_usd", "insurance_fund_start_usd", "insurance_fund_end_usd",
    "insurance_fund_end_cash_usd", "backstop_inventory_qty", "bad_debt_usd", "bad_debt_realized_usd",
    "adl_notional_usd", "adl_shortfall_qty", "bad_debt_unrecovered_usd", "trader_liquidation_loss_usd",
    "ledger_imbalance_usd", "open_interest_mismatch_qty",
)
INT_OUTPUTS: tuple[str, ...] = ("liquidation_count", "rounds_max", "round_cap_hits", "adl_count")
BOOL_OUTPUTS: tuple[str, ...] = ("insurance_depleted",)
assert len(FLOAT_OUTPUTS) == K.N_FOUT and len(INT_OUTPUTS) == K.N_IOUT and len(BOOL_OUTPUTS) == K.N_BOUT


@dataclass
class FastBook:
    """A book prepared for the fast kernel: per-side sorted arrays, tiers, depth knots and parameters.

    Built once per (book, venue, depth, impact settings) by :func:`build_fast_book`; plain NumPy arrays
    and floats, so it pickles cheaply to workers.

    Attributes:
        n_positions: Positions in the book.
        longs: float64 ``(6, NL)`` longs sorted by descending starting liquidation price; rows
            (``kernels.R_*``): liquidation price (USD; ``-inf`` if never), row in the original book (the
            depth walk breaks ties by it, as the general engine does), qty (base), entry (USD),
            collateral (USD), account id (ADL ranking ties).
        shorts: float64 ``(6, NS)`` shorts sorted by ascending liquidation price (``+inf`` if never).
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


# --------------------------------------------------------------------------- what the kernel runs
# A check gets a field's value and the whole VenueRules and returns "" when the kernel runs that value
# (it is passed to the kernel, or has no effect on what the kernel runs), else why not.
FieldCheck = Callable[[Any, Any], str]


def _runs(_value: Any, _venue: Any) -> str:
    return ""


def _one_of(allowed: Any, what: str) -> FieldCheck:
    def check(value: Any, _venue: Any) -> str:
        return "" if value in allowed else f"{what} {value!r} is not ported to the fast kernel"
    return check


def _only(expected: Any, why: str) -> FieldCheck:
    def check(value: Any, _venue: Any) -> str:
        return "" if value == expected else why
    return check


def _step_down(expected: Any, what: str) -> FieldCheck:
    def check(value: Any, venue: Any) -> str:
        if not venue.liquidation.step_down_tiers or value == expected:
            return ""
        return f"step-down {what} {value!r} is not ported to the fast kernel (it runs {expected!r})"
    return check


VENUE_FIELDS: dict[str, FieldCheck] = {
    # labels
    "name": _runs, "title": _runs, "settle": _runs, "sources": _runs,
    # mark price
    "mark.method": _one_of(MARK_METHODS, "mark method"),
    "mark.basis_window_s": _runs,
    "mark.funding_basis": _runs,
    "mark.funding_rate": _runs,            # read by the fair_price mark only, which mark.method refuses
    "mark.funding_interval_s": _runs,      # idem
    "mark.time_to_funding_s": _runs,       # idem
    # liquidation orders
    "liquidation.clearance_fee_rate": _runs,
    "liquidation.step_down_tiers": _runs,
    "liquidation.step_down_order": _step_down("ioc", "order"),
    "liquidation.step_down_to": _step_down("lower_tier", "target"),
    "liquidation.step_down_from_tier": _step_down(2, "from tier"),
    "liquidation.step_down_freeze_s": _only(0.0, "the step-down freeze (OKX) is not ported to the fast kernel"),
    "liquidation.close_at_bankruptcy": _only(False, "closing at the bankruptcy price with the surplus to the "
                                                    "backstop is not ported to the fast kernel"),
    "liquidation.liquidation_taker_fee_rate": _only(0.0, "taker fees on liquidation fills are not ported to the "
                                                         "fast kernel"),
    "liquidation.partial_threshold_usd": _runs,
    "liquidation.partial_fraction": _runs,
    "liquidation.partial_cooldown_s": _runs,
    "liquidation.backstop_below_mm_fraction": _runs,
    # backstop and ADL triggers
    "backstop.holder": _runs,              # the ledger party's name only
    "backstop.takeover_price": _one_of(("bankruptcy", "mark"), "takeover price"),
    "backstop.max_net_notional_ratio": _runs,
    "backstop.adl_loss_fraction": _runs,
    "backstop.adl_drawdown_fraction": _only(0.0, "the fund-drawdown ADL trigger (OKX) is not ported to the fast "
                                                 "kernel"),
    "backstop.adl_drawdown_window_s": _runs,  # read only with adl_drawdown_fraction > 0, refused above
    "backstop.unwind_half_life_s": _runs,
    "backstop.unwind_max_slippage_pct": _runs,
    # ADL
    "adl.ranking": _one_of(ADL_RANKINGS, "ADL ranking"),
    "adl.price": _one_of(ADL_PRICES, "ADL price"),
    "adl.policy": _one_of(ADL_POLICIES, "ADL policy"),
    "adl.pro_rata_cap_fraction": _runs,
    "adl.bankruptcy_below_fund_fraction": _runs,
    "adl.adl_maker_fee_rate": _runs,
    # margin tiers: the instrument's table is passed (prep.tiers, resolved from tiers or the tier file)
    "tiers": _runs,
    "tier_file": _runs,
    # funding payments: the account engine's (engine.accounts); the single-book cascade never reads them
    "funding": _runs,
    # other liquidation paths
    "drift": _only(None, "Drift liquidation (liquidator takeover with time ramp, bankruptcy socialization) is not "
                         "ported to the fast kernel"),
    "dydx": _only(None, "the dYdX liquidation path (fillable price, block limits, deleveraging) is not ported to "
                        "the fast kernel"),
}
"""Every ``VenueRules`` field (dotted path; a section listed whole covers its fields) -> its check."""

MITIGATION_FIELDS: dict[str, FieldCheck] = {
    name: _only(None, f"mitigation {name} is not ported to the fast kernel")
    for name in ("mark_smoothing", "circuit_breaker", "dynamic_margin", "throttle", "dutch_auction")
}
"""Every scenario ``Mitigations`` field -> its check (the kernel runs the venue's own rules only)."""


def unsupported_fields(model: BaseModel, table: dict[str, FieldCheck], venue: Any, label: str = "",
                       prefix: str = "") -> list[str]:
    """Reasons the kernel refuses ``model``'s values, walking its fields recursively (``model_fields``).

    A field listed in ``table`` (keys: dotted paths from ``model``) is checked there (a listed section
    is not walked further); an unlisted sub-model is walked; any other unlisted field is refused as
    unknown to the kernel (named ``label`` + its path).

    Returns:
        One reason per refused field, in field order (empty when the kernel runs everything).
    """
    out: list[str] = []
    for name in type(model).model_fields:
        path = f"{prefix}{name}"
        value = getattr(model, name)
        if path in table:
            why = table[path](value, venue)
            if why:
                out.append(why)
        elif isinstance(value, BaseModel):
            out.extend(unsupported_fields(value, table, venue, label, f"{path}."))
        else:
            out.append(f"{label}{path} is not known to the fast kernel")
    return out


def fast_kernel_support(prep, mode: str = "stress") -> tuple[bool, str]:
    """Whether the fast kernel can run ``prep`` on price paths of ``mode``.

    Every venue rule and mitigation field is checked against :data:`VENUE_FIELDS` and
    :data:`MITIGATION_FIELDS` (an allow-list: a field without an entry is refused).

    Args:
        prep: ``delever.runner.Prepared``.
        mode: Mode of the paths to run (``"stress"``: exogenous paths, impact added; ``"replay"``).

    Returns:
        ``(True, "")`` or ``(False, reason)``; when False use the general engine (``runner.run_path``).
    """
    if mode != "stress":
        return False, f"{mode!r} paths: the fast kernel runs stress-mode (exogenous) paths only"
    venue = prep.venue
    why = unsupported_fields(venue, VENUE_FIELDS, venue, "venue rule ")
    why += unsupported_fields(prep.scenario.mitigations, MITIGATION_FIELDS, venue, "mitigations.")
    if why:
        return False, "; ".join(why)
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
    # ADL ranking ties go to the lower account id, kept as a float: the id itself when that is exact, else its rank
    account = np.asarray(book.account)
    if account.size and np.abs(account).max() >= 2**53:
        account = np.unique(account, return_inverse=True)[1].reshape(-1)

    def sorted_side(mask: np.ndarray, descending: bool) -> np.ndarray:
        idx = np.flatnonzero(mask)
        key = -lp[idx] if descending else lp[idx]
        order = idx[np.argsort(key)]  # ties in liquidation price are ordered by book row inside the kernel
        out = np.empty((K.N_ROWS, order.size))   # row by row: one temporary at a time (peak memory)
        for row, values in ((K.R_LP, lp), (K.R_QTY, qty), (K.R_ENTRY, entry), (K.R_COLL, coll), (K.R_ACCT, account)):
            out[row] = values[order]
        out[K.R_POS] = order
        return out

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
    prm[K.P_ADL_PRICE] = ADL_PRICES[venue.adl.price]
    prm[K.P_ADL_POLICY] = ADL_POLICIES[venue.adl.policy]
    prm[K.P_PRO_RATA_CAP] = venue.adl.pro_rata_cap_fraction
    prm[K.P_ADL_BANKRUPTCY_BELOW] = venue.adl.bankruptcy_below_fund_fraction
    prm[K.P_ADL_MAKER_FEE] = venue.adl.adl_maker_fee_rate
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
        :data:`INT_OUTPUTS`, bool for :data:`BOOL_OUTPUTS`. Every path is complete (ADL included);
        ``ledger_imbalance_usd`` (USD) and ``open_interest_mismatch_qty`` (base) are the path's money
        and open-interest checks (``CascadeEngine.conservation``), 0 up to round-off.

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
