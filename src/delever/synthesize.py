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
from delever.scenario import Synthesis
from delever.synthesis_core import (
    MAX_ENTRY_ATTEMPTS,
    OI_RTOL,
    TIER_EDGE_RTOL,
    draw_collateral,
    draw_surviving_bars,
    draw_surviving_entries,
    fit_side_to_open_interest,
    leverage_probabilities,
    long_account_count,
    max_notional_for_collateral,
    pareto_scale_usd,
    path_suffix_extremes,
    validate_history,
)
from delever.venues.tiers import MarginTiers

__all__ = ["MAX_ENTRY_ATTEMPTS", "OI_RTOL", "TIER_EDGE_RTOL", "SynthesisReport", "max_notional_for_collateral",
           "pareto_scale_usd", "synthesize_book"]


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
        entry_bar: int64 ``(N,)`` index into the entry history of each position's entry bar, when
            ``equilibrium_bars`` were given (None otherwise).
    """

    positions: int
    long_positions: int
    short_positions: int
    long_notional_usd: float
    short_notional_usd: float
    leverage_capped: int
    redraws: int
    assumptions: dict[str, object] = field(default_factory=dict)
    entry_bar: np.ndarray | None = None


def _equilibrium_path(bars: tuple[np.ndarray, np.ndarray], hist_prices: np.ndarray | None,
                      start_price: float) -> tuple[np.ndarray, np.ndarray]:
    if hist_prices is None:
        raise DeleverInputError("book.synthesize: equilibrium bars need entry prices from a history (entry.source = "
                                "'history')")
    try:
        low, high = (np.asarray(a, dtype=np.float64) for a in bars)
    except (TypeError, ValueError):
        raise DeleverInputError("equilibrium_bars: expected a (low, high) pair of arrays") from None
    if low.shape != hist_prices.shape or high.shape != hist_prices.shape:
        raise DeleverInputError(f"equilibrium_bars: low and high must have the entry history's shape "
                                f"{hist_prices.shape}, got {low.shape} and {high.shape}")
    bad = ~(np.isfinite(low) & np.isfinite(high) & (low > 0) & (low <= high))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DeleverInputError(f"equilibrium_bars: bar {i + 1}: low {low[i]!r}, high {high[i]!r}; expected "
                                "0 < low <= high")
    return path_suffix_extremes(low, high, start_price)


def synthesize_book(
    params: Synthesis,
    instrument: str,
    start_price: float,
    tiers: MarginTiers,
    rng: np.random.Generator,
    entry_history: tuple[np.ndarray, np.ndarray] | None = None,
    equilibrium_bars: tuple[np.ndarray, np.ndarray] | None = None,
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
       scaling and capping are solved jointly (a fixed point, see ``synthesis_core.fit_side_to_open_interest``). Leverage is
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
        equilibrium_bars: Optional, history entries only, off by default: (low, high) float64 ``(H,)`` of the
            bars ``entry_history`` came from, in time order. Then step 7 checks the whole path: a position drawn
            from bar ``b`` is dead when ``collateral + side*qty*(worst - entry) <= MM(qty*worst)`` at ``worst`` =
            the lowest low (long) / highest high (short) of bars ``b+1 .. H-1`` and the start price, so a replay
            has no start-up liquidation spike (docs/synthesizer.md, "Equilibrium at the start"). Survivors of
            ``MAX_ENTRY_ATTEMPTS`` rounds are drawn from the surviving bars directly.

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
        hist_prices, hist_weights = validate_history(entry_history)
        hist_p = hist_weights / hist_weights.sum()
    else:
        if entry_history is not None:
            raise DeleverInputError(
                "book.synthesize.entry: source is 'lognormal' but an entry_history was given; set entry.source = 'history'"
            )
        hist_prices = hist_p = None

    n = params.positions
    r = params.long_short_ratio
    n_long = long_account_count(n, r)
    n_short = n - n_long

    # 1. sides, sizes, leverage, margin mode (fixed draw order)
    side = np.full(n, SHORT, dtype=np.int8)
    side[:n_long] = LONG
    side = rng.permutation(side)
    sizes = params.account_size
    coll0 = draw_collateral(n, sizes.kind, sizes.median_usd, sizes.sigma, sizes.pareto_alpha, rng)
    lev_values = np.asarray(params.leverage.leverage, dtype=np.float64)
    lev_p = leverage_probabilities(lev_values, params.leverage.weight, params.leverage.basis)
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
        c, nt, cp, f = fit_side_to_open_interest(coll0[m], lev[m], oi, tiers)
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
    path = None if equilibrium_bars is None else _equilibrium_path(equilibrium_bars, hist_prices, start_price)
    bar = np.zeros(n, dtype=np.int64)

    def draw(size: int) -> tuple[np.ndarray, np.ndarray | None]:
        if hist_prices is not None:
            k = rng.choice(hist_prices.size, size=size, p=hist_p)
            return hist_prices[k], k
        return start_price * np.exp(entry_cfg.sigma * rng.standard_normal(size)), None

    def dead(idx: np.ndarray | slice, e: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        if path is None:
            return collateral[idx] + sgn[idx] * qty[idx] * (start_price - e) <= mm[idx]
        # entered in bar b: exposed to bars b+1 .. H-1 and the start, each at its adverse extreme
        worst = np.where(sgn[idx] > 0, path[0][b + 1], path[1][b + 1])
        return collateral[idx] + sgn[idx] * qty[idx] * (worst - e) <= tiers.maintenance_margin(qty[idx] * worst)

    entry, b0 = draw(n)
    if path is not None:
        bar[:] = b0
    bad = dead(slice(None), entry, b0)
    redrawn = bad.copy()
    draws = 0
    attempts = 0
    while bad.any():
        idx = np.flatnonzero(bad)
        if attempts >= MAX_ENTRY_ATTEMPTS:
            # Rejection sampling converges to the entry distribution conditioned on survival; for the
            # rare positions it has not placed yet, draw from that conditional distribution directly.
            if path is None:
                e, ok = draw_surviving_entries(idx, collateral, mm, qty, sgn, start_price, hist_prices, hist_p,
                                                entry_cfg.sigma, rng)
            else:
                b, ok = draw_surviving_bars(collateral[idx], qty[idx], sgn[idx], hist_prices, hist_p, path[0],
                                            path[1], tiers, rng)
                e = hist_prices[b]
                bar[idx[ok]] = b[ok]
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
        e, b = draw(idx.size)
        entry[idx] = e
        if path is not None:
            bar[idx] = b
        bad[idx] = dead(idx, e, b)
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
        **({} if path is None else {
            "equilibrium": "history: also at every bar's adverse extreme from the bar after entry to the start",
            "equilibrium_bars": int(path[0].size - 1),
        }),
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
        entry_bar=None if path is None else bar,
    )
    return book, report
