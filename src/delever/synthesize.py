"""Synthesize a realistic position book from aggregate market statistics.

Venues publish aggregates (open interest, the account long/short ratio, leverage brackets), not
positions. :func:`synthesize_book` turns those aggregates, plus stated distributional assumptions,
into a :class:`~delever.book.PositionBook`. Every assumption and its default (from
``delever.scenario.Synthesis``) is listed in ``docs/synthesizer.md`` and in the docstring of
:func:`synthesize_book`; every parameter used is returned in ``SynthesisReport.assumptions`` for
the run record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from delever.book import LONG, SHORT, PositionBook
from delever.errors import DeleverInputError
from delever.scenario import AccountSizes, Synthesis
from delever.venues.tiers import MarginTiers

MAX_ENTRY_ATTEMPTS = 100
"""Redraws of an entry price before the book is declared infeasible."""

TIER_EDGE_RTOL = 1e-10
"""A position capped at a bracket's notional cap is placed this far (relative) below the cap, so
rounding in ``qty * price`` never pushes it into the next bracket."""

OI_RTOL = 1e-12
"""Relative tolerance of the scaling/capping fixed point before the final exact rescale."""

_MAX_SOLVER_ITERATIONS = 200


@dataclass
class SynthesisReport:
    """What the synthesizer did, for the run record.

    Attributes:
        positions: Number of positions (= accounts) in the book.
        long_positions: Long accounts.
        short_positions: Short accounts.
        long_notional_usd: Sum of long notionals at the start price (= open interest).
        short_notional_usd: Sum of short notionals at the start price (= open interest).
        leverage_capped: Positions whose drawn leverage exceeded the bracket max leverage at their
            notional and were given the largest leverage the brackets allow instead.
        redraws: Positions whose entry price was redrawn (at least once) because they were at or
            below maintenance margin at the start price.
        assumptions: Every parameter used (JSON-serializable).
    """

    positions: int
    long_positions: int
    short_positions: int
    long_notional_usd: float
    short_notional_usd: float
    leverage_capped: int
    redraws: int
    assumptions: dict[str, object] = field(default_factory=dict)


# --------------------------------------------------------------------------- pieces
def pareto_scale_usd(median_usd: float, alpha: float) -> float:
    """Scale ``x_m`` of a Pareto(alpha) whose median is ``median_usd``: ``x_m = median / 2**(1/alpha)``."""
    return median_usd / 2.0 ** (1.0 / alpha)


def _draw_collateral(n: int, sizes: AccountSizes, rng: np.random.Generator) -> np.ndarray:
    if sizes.kind == "lognormal":
        return sizes.median_usd * np.exp(sizes.sigma * rng.standard_normal(n))
    # numpy's pareto() is Lomax (Pareto II); 1 + Lomax is the classical Pareto with x_m = 1.
    return pareto_scale_usd(sizes.median_usd, sizes.pareto_alpha) * (1.0 + rng.pareto(sizes.pareto_alpha, n))


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


def _fit_side(
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


def _validate_history(entry_history: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
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


# --------------------------------------------------------------------------- main

def _draw_surviving_entries(idx, collateral, mm, qty, sgn, start_price, hist_prices, hist_p, sigma, rng):
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


def synthesize_book(
    params: Synthesis,
    instrument: str,
    start_price: float,
    tiers: MarginTiers,
    rng: np.random.Generator,
    entry_history: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[PositionBook, SynthesisReport]:
    """Build a position book whose aggregates match the scenario's synthesis parameters.

    Model (defaults from ``delever.scenario.Synthesis``; full statement in ``docs/synthesizer.md``):

    1. **Open interest** (``open_interest_usd``, default 8e9 USD). In a closed perpetual market
       every long faces a short, so long OI = short OI = ``open_interest_usd``, as notional at
       ``start_price``. Each side's notionals sum to it (relative error ~1e-15).
    2. **Accounts** (``positions``, default 50,000; ``long_short_ratio``, default 1.0). The ratio is
       of long to short *accounts* (Binance's published account long/short ratio):
       ``n_long = round(positions * r / (1 + r))`` clamped to ``[1, positions - 1]``. With equal OI
       per side, more long accounts means smaller average long positions. Sides are assigned to
       accounts ``0..N-1`` in random order. One position per account (one-way mode).
    3. **Account size** (``account_size``): collateral before scaling is lognormal with median
       ``median_usd`` (2,000) and log-std ``sigma`` (1.6), or Pareto with tail index
       ``pareto_alpha`` (1.3) and scale ``x_m = median_usd / 2**(1/alpha)`` (same median).
    4. **Leverage** (``leverage``): drawn from the discrete mix (default 2..125x, weights
       normalized), independent of size. Notional = collateral x leverage.
    5. **Scaling and bracket caps**: each side's collaterals are multiplied by one factor so the
       side's notional equals OI. A leverage above the bracket max at the position's notional
       (``tiers.max_leverage_for``) cannot be opened on the venue, so such a position gets the
       largest leverage the brackets allow for its collateral (counted in ``leverage_capped``);
       scaling and capping are solved jointly (a fixed point, see ``_fit_side``). Leverage is
       measured as notional at ``start_price`` / collateral.
    6. **Entry prices** (``entry``): lognormal with median ``start_price`` and log-std ``sigma``
       (0.03), or drawn (with replacement, probability proportional to weight) from
       ``entry_history`` = (prices float64 ``(H,)``, weights float64 ``(H,)``), e.g. kline closes
       weighted by bar volume. Entry prices are independent of side, size and leverage.
    7. **Survivorship**: a position with ``collateral + side * qty * (start - entry) <=
       tiers.maintenance_margin(qty * start)`` would already have been liquidated; its entry price
       is redrawn (up to ``MAX_ENTRY_ATTEMPTS`` = 100 times; counted in ``redraws``).
    8. **Margin mode**: ``round(cross_share * positions)`` accounts (default share 0.5), chosen at
       random, are cross; their ``collateral_usd`` is the cross wallet balance, assumed equal to
       the margin at the drawn leverage (no idle balance). The rest are isolated.

    Deterministic for a given ``rng`` state (draws in a fixed order: sides, collateral, leverage,
    margin mode, entry prices, redraws). Vectorized NumPy; about 0.3 s per 1e6 positions.

    Args:
        params: Synthesis parameters (``scenario.book.synthesize``).
        instrument: Instrument symbol for the book, e.g. ``"BTCUSDT"``.
        start_price: Price at the start of the run, USD per base unit, finite > 0.
        tiers: Venue margin brackets (max leverage and MMR by notional).
        rng: Random generator (seeded from the scenario seed by the caller).
        entry_history: Required when ``params.entry.source == "history"`` and only then:
            (prices float64 ``(H,)`` USD > 0, weights float64 ``(H,)`` >= 0 with positive sum).

    Returns:
        ``(book, report)``: a validated :class:`PositionBook` of ``params.positions`` rows
        (accounts int64 ``0..N-1``) and a :class:`SynthesisReport`.

    Raises:
        DeleverInputError: bad ``start_price`` or ``instrument``, ``entry_history`` missing, not
            expected or malformed, brackets whose MMR is not below 1 / max leverage (a position at
            max leverage would be liquidatable at its own entry), or entry prices that leave some
            position liquidatable after ``MAX_ENTRY_ATTEMPTS`` redraws (message names the
            parameters to change).
    """
    if not isinstance(instrument, str) or not instrument:
        raise DeleverInputError(f"synthesize: instrument must be a non-empty symbol, got {instrument!r}")
    if not (isinstance(start_price, (int, float)) and math.isfinite(start_price) and start_price > 0):
        raise DeleverInputError(
            f"synthesize: start_price is {start_price!r}, expected a finite price > 0 (USD)"
        )
    start_price = float(start_price)
    entry_cfg = params.entry
    if entry_cfg.source == "history":
        if entry_history is None:
            raise DeleverInputError(
                "book.synthesize.entry: source is 'history' but no price history was given (entry_history)"
            )
        hist_prices, hist_weights = _validate_history(entry_history)
        hist_p = hist_weights / hist_weights.sum()
    else:
        if entry_history is not None:
            raise DeleverInputError(
                "book.synthesize.entry: source is 'lognormal' but an entry_history was given; set entry.source = 'history'"
            )
        hist_prices = hist_p = None

    n = params.positions
    r = params.long_short_ratio
    n_long = min(max(int(math.floor(n * r / (1.0 + r) + 0.5)), 1), n - 1)
    n_short = n - n_long

    # 1. sides, sizes, leverage, margin mode (fixed draw order)
    side = np.full(n, SHORT, dtype=np.int8)
    side[:n_long] = LONG
    side = rng.permutation(side)
    coll0 = _draw_collateral(n, params.account_size, rng)
    lev_values = np.asarray(params.leverage.leverage, dtype=np.float64)
    lev_w = np.asarray(params.leverage.weight, dtype=np.float64)
    if params.leverage.basis == "notional":
        # Weights are shares of open interest; collateral is independent of leverage, so an account at
        # leverage L carries L times the expected notional: account probability ~ weight / L.
        lev_w = lev_w / lev_values
    lev_p = lev_w / lev_w.sum()
    lev = lev_values[rng.choice(lev_values.size, size=n, p=lev_p)]
    n_cross = int(math.floor(params.cross_share * n + 0.5))
    cross = np.zeros(n, dtype=bool)
    cross[rng.choice(n, size=n_cross, replace=False)] = True

    # 2. scale each side to OI with bracket caps
    oi = params.open_interest_usd
    collateral = np.empty(n, dtype=np.float64)
    notional = np.empty(n, dtype=np.float64)
    capped = np.empty(n, dtype=bool)
    scale: dict[str, float] = {}
    for name, s_val in (("long", LONG), ("short", SHORT)):
        m = side == s_val
        c, nt, cp, f = _fit_side(coll0[m], lev[m], oi, tiers)
        collateral[m], notional[m], capped[m] = c, nt, cp
        scale[name] = f
    qty = notional / start_price
    mm = tiers.maintenance_margin(qty * start_price)
    sgn = side.astype(np.float64)

    k_bad = tiers.mmr * tiers.max_leverage >= 1.0
    if (collateral <= mm).any() or k_bad.any():
        k = (
            int(np.flatnonzero(k_bad)[0])
            if k_bad.any()
            else int(tiers.tier_index(notional[collateral <= mm][0]))
        )
        raise DeleverInputError(
            f"venue tiers: bracket {k + 1} has MMR {tiers.mmr[k]} >= 1 / max leverage {tiers.max_leverage[k]}; a "
            "position at the bracket max leverage would be liquidatable at its own entry price"
        )

    # 3. entry prices with survivorship redraws (exact conditional draws after MAX_ENTRY_ATTEMPTS)
    def draw(size: int) -> np.ndarray:
        if hist_prices is not None:
            return hist_prices[rng.choice(hist_prices.size, size=size, p=hist_p)]
        return start_price * np.exp(entry_cfg.sigma * rng.standard_normal(size))

    def dead(idx: np.ndarray | slice, e: np.ndarray) -> np.ndarray:
        return collateral[idx] + sgn[idx] * qty[idx] * (start_price - e) <= mm[idx]

    entry = draw(n)
    bad = dead(slice(None), entry)
    redrawn = bad.copy()
    draws = 0
    attempts = 0
    while bad.any():
        idx = np.flatnonzero(bad)
        if attempts >= MAX_ENTRY_ATTEMPTS:
            # Rejection sampling converges to the entry distribution conditioned on survival; for the
            # rare positions it has not placed yet, draw from that conditional distribution directly.
            e, ok = _draw_surviving_entries(idx, collateral, mm, qty, sgn, start_price, hist_prices, hist_p,
                                            entry_cfg.sigma, rng)
            entry[idx[ok]] = e[ok]
            bad[idx[ok]] = False
            draws += int(ok.sum())
            idx = idx[~ok]
            if idx.size == 0:
                break
            n_l = int((side[idx] == LONG).sum())
            src = (
                f"entry history (prices {hist_prices.min():.6g}..{hist_prices.max():.6g})"
                if hist_prices is not None
                else f"entry.sigma = {entry_cfg.sigma}"
            )
            raise DeleverInputError(
                f"book.synthesize: {idx.size} positions ({n_l} long, {idx.size - n_l} short; leverage up to "
                f"{float((notional[idx] / collateral[idx]).max()):.4g}x) are still at or below maintenance margin at "
                f"start_price {start_price:.6g} after {MAX_ENTRY_ATTEMPTS} entry redraws: the {src} puts entries too far "
                "on the losing side for the leverage mix; lower the leverage mix, narrow entry.sigma, or use a "
                "history ending nearer the start price"
            )
        e = draw(idx.size)
        entry[idx] = e
        bad[idx] = dead(idx, e)
        draws += idx.size
        attempts += 1

    book = PositionBook(
        instrument,
        np.arange(n, dtype=np.int64),
        side,
        qty,
        entry,
        collateral,
        cross,
    ).validate("synthesizer")

    is_long = side == LONG
    assumptions: dict[str, object] = {
        "instrument": instrument,
        "start_price_usd": start_price,
        "open_interest_usd_per_side": oi,
        "open_interest_rule": "closed market: long OI = short OI = open_interest_usd (notional at start price)",
        "positions": n,
        "long_short_ratio": r,
        "long_short_ratio_meaning": "long accounts / short accounts",
        "long_accounts": n_long,
        "short_accounts": n_short,
        "account_size": params.account_size.model_dump(),
        "account_size_pareto_scale_usd": (
            pareto_scale_usd(params.account_size.median_usd, params.account_size.pareto_alpha)
            if params.account_size.kind == "pareto"
            else None
        ),
        "collateral_scale_long": scale["long"],
        "collateral_scale_short": scale["short"],
        "leverage_mix": {"leverage": lev_values.tolist(), "probability": lev_p.tolist()},
        "leverage_definition": "notional at start price / collateral",
        "leverage_cap": "largest leverage the brackets allow for the position's collateral (venue entry check)",
        "tiers": {
            "floor_usd": tiers.floor_usd.tolist(),
            "max_leverage": tiers.max_leverage.tolist(),
            "mmr": tiers.mmr.tolist(),
            "maint_amount_usd": tiers.maint_amount_usd.tolist(),
        },
        "tier_edge_rtol": TIER_EDGE_RTOL,
        "entry": entry_cfg.model_dump(),
        "entry_history_bars": None if hist_prices is None else int(hist_prices.size),
        "entry_history_range_usd": None
        if hist_prices is None
        else [float(hist_prices.min()), float(hist_prices.max())],
        "survivorship": "entry redrawn while collateral + side*qty*(start-entry) <= maintenance margin",
        "max_entry_attempts": MAX_ENTRY_ATTEMPTS,
        "entry_redraw_draws": draws,
        "entry_redraw_rounds": attempts,
        "cross_share": params.cross_share,
        "cross_accounts": n_cross,
        "cross_wallet_rule": "cross wallet balance = margin at drawn leverage (no idle balance)",
    }
    report = SynthesisReport(
        positions=n,
        long_positions=n_long,
        short_positions=n_short,
        long_notional_usd=float(notional[is_long].sum()),
        short_notional_usd=float(notional[~is_long].sum()),
        leverage_capped=int(capped.sum()),
        redraws=int(redrawn.sum()),
        assumptions=assumptions,
    )
    return book, report
