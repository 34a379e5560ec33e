"""Liquidation price of every position under any risk model: closed form where the model has one, else a root search.

A position's liquidation price is the price of its instrument at which its margin group's equity equals the group's
maintenance requirement, every other price held fixed (venue-mechanics.md section 1: Binance "LP" with the group's
other positions as ``TMM'`` / ``uPnL'``; section 4: Hyperliquid ``liq_price``; section 5 / 6: dYdX ``TNC = TMMR``,
Drift total collateral = maintenance requirement). "The price of its instrument" is the model's margin price: the
mark for mark-margined models, the oracle (``Prices.index``) for :class:`~delever.risk.drift.DriftRisk` and
:class:`~delever.risk.dydx.DydxRisk`; moving it means mark and index both sit at that price.

Several positions of one group are solved one at a time, the others held at their current state (their uPnL and
requirement at the current prices), as the closed forms do (Binance's ``TMM'`` and ``uPnL'``).

* Closed forms: :class:`~delever.risk.tiered.TieredRisk` and its subclasses (Binance / OKX tiers,
  :class:`~delever.risk.hyperliquid.HyperliquidRisk`, :class:`~delever.risk.unified.UnifiedAccountRisk`,
  :class:`~delever.risk.multi_assets.MultiAssetsRisk`) for linear instruments, and
  :class:`~delever.risk.bitmex.InverseRiskLimitRisk` for inverse instruments (requirement on entry value, so equity
  alone moves).
* Root search (:func:`liquidation_prices_by_search`) for every other model and position, and where a closed form
  finds no price (it is NaN; the search also gives NaN unless the requirement jumps across 0 margin excess): a vectorized bracketing
  search over all positions at once on ``f(P) = base + uPnL(P) - MM(P)``, where ``base`` is the group's equity
  minus maintenance at the current prices less this position's own share, ``uPnL(P)`` comes from the instrument
  registry's contract arithmetic and ``MM(P)`` from the model's own ``position_requirement``. The search needs
  that split (group equity = collateral + the positions' uPnL, maintenance = the sum of the positions' own
  requirements), which holds for every model here except Multi-Assets' bid / ask valuation of asset equity (it has
  its own closed form); the split is checked against the model's ``evaluate`` at the current prices.
"""

from __future__ import annotations

import numpy as np

from delever.model.accounts import AccountBook
from delever.risk.base import Prices, RiskModel
from delever.risk.bitmex import InverseRiskLimitRisk
from delever.risk.drift import DriftRisk
from delever.risk.dydx import DydxRisk
from delever.risk.multi_assets import MultiAssetsRisk
from delever.risk.tiered import TieredRisk

__all__ = ["liquidation_prices", "liquidation_prices_by_search", "margin_price"]

RTOL = 1e-12
"""Default relative tolerance of the root search on the price (the bracket's width over its upper end)."""

_EXPANSIONS = 10
"""Bracket expansion steps: the search reaches ``P0 x 2^(+-512)`` (``2^(2^k)`` per step k)."""

_MAX_ITER = 400
"""Cap on root-refinement iterations (regula falsi, Illinois variant, with every 4th step a log-space bisection)."""


def margin_price(model: RiskModel, book: AccountBook, prices: Prices) -> np.ndarray:
    """float64 ``(P,)`` the price each position is margined at: the oracle for dYdX / Drift, else the mark."""
    px = prices.index if isinstance(model, DriftRisk | DydxRisk) else prices.mark
    return np.asarray(px, dtype=np.float64)[book.pos_instrument]


def _closed_form(model: RiskModel, book: AccountBook, prices: Prices) -> tuple[np.ndarray, np.ndarray] | None:
    """``(lp, covered)``: the model's own liquidation price and the positions it covers, or None."""
    if isinstance(model, InverseRiskLimitRisk):   # its formula is for inverse contracts; linear ones are searched
        return model.liquidation_price(book, prices), book.registry.inverse[book.pos_instrument]
    if isinstance(model, TieredRisk):   # Binance's formula (and the subclasses' own): linear contracts only
        return model.liquidation_price(book, prices), ~book.registry.inverse[book.pos_instrument]
    return None


def liquidation_prices(model: RiskModel, book: AccountBook, prices: Prices, *, rtol: float = RTOL) -> np.ndarray:
    """Liquidation price of every position of ``book`` under ``model``, every other price fixed.

    The model's closed form where it has one and finds a price (see the module docstring), the root search
    (:func:`liquidation_prices_by_search`) for the other positions.

    Args:
        model: Any :class:`~delever.risk.base.RiskModel`.
        book: Account book (``P`` positions).
        prices: Current prices (the search starts from each position's margin price).
        rtol: Relative tolerance of the root search on the price.

    Returns:
        float64 ``(P,)`` price (quote per base unit); NaN where no price in ``(0, inf)`` brings the group to its
        maintenance requirement (a long that cannot be liquidated, a closed position).

    Raises:
        ValueError: the model's ``position_requirement`` / uPnL do not reproduce its ``evaluate`` per position (the
            root search cannot hold the group's other positions fixed).
    """
    closed = _closed_form(model, book, prices)
    if closed is None:
        return liquidation_prices_by_search(model, book, prices, rtol=rtol)
    lp, covered = closed
    # a closed form that finds no price is searched too: with tiers whose requirement jumps at a floor (OKX whole-
    # position tiers) no bracket may hold its own solution while the group still crosses maintenance at the jump.
    # Not Multi-Assets: its equity (bid / ask rates on asset equity) does not split per position.
    unsolved = np.isnan(lp) & (not isinstance(model, MultiAssetsRisk))
    rest = np.flatnonzero(~covered | unsolved)
    if rest.size:
        lp = lp.copy()
        lp[rest] = liquidation_prices_by_search(model, book, prices, rtol=rtol, positions=rest)
    return lp


def _own_margin_usd(model: RiskModel, book: AccountBook, prices: Prices, idx: np.ndarray,
                    price: np.ndarray) -> np.ndarray:
    """float64 ``(n,)`` uPnL minus maintenance requirement (USD) of positions ``idx`` with their instrument at ``price``."""
    reg = book.registry
    ins = book.pos_instrument[idx]
    qty = book.pos_qty[idx]
    entry = book.pos_entry_price[idx]
    settle_usd = prices.asset_usd[reg.settle_code[ins]]
    upnl = reg.pnl_settle(ins, qty, entry, price) * settle_usd
    if isinstance(model, InverseRiskLimitRisk):    # requirement on the entry value: does not move with the price
        mm = model.position_requirement(ins, qty, entry, reg.contract_size[ins], reg.inverse[ins], settle_usd)[0]
    elif isinstance(model, TieredRisk):            # notional in the settlement asset, converted at its USD price
        mm = model.position_requirement(ins, qty, price, settle_usd)[0]
    else:
        mm = model.position_requirement(ins, qty, price)[0]
    return upnl - np.where(qty == 0, 0.0, mm)


def liquidation_prices_by_search(model: RiskModel, book: AccountBook, prices: Prices, *, rtol: float = RTOL,
                                 positions: np.ndarray | None = None) -> np.ndarray:
    """Liquidation prices by a vectorized bracketing root search, for any model whose margin splits per position.

    For each position ``p`` with margin price ``P0`` and group margin excess ``E = equity - maintenance`` (the model's
    ``evaluate`` at ``prices``), ``f(P) = E - own(P0) + own(P)`` with ``own(P) = uPnL(P) - MM(P)`` of ``p`` alone.
    ``f`` is monotone in ``P`` for one position (a long gains, a short loses, faster than its requirement grows), so
    the root lies downward from ``P0`` when ``f(P0)`` has the sign a long has while safe, upward otherwise. The
    bracket grows geometrically (``P0 x 2^(+-2^k)``, ``k < 10``), then shrinks by regula falsi with the Illinois
    weight halving, every 4th step a bisection in log price, until its width is ``<= rtol x`` its upper end; the
    answer is the bracket's midpoint (or a point where ``f`` is exactly 0). Where ``f`` jumps (a requirement with
    steps, e.g. OKX whole-position tiers) the answer can be the jump; where such jumps make ``f`` cross 0 more than
    once, it is a crossing inside the first bracket found, not necessarily the one nearest the current price.

    Args:
        model: Risk model (``evaluate`` and ``position_requirement`` of the :class:`~delever.risk.base.RiskModel`
            protocol).
        book: Account book.
        prices: Current prices.
        rtol: Relative tolerance on the price (> 0).
        positions: int ``(n,)`` indices of the positions to solve (default all).

    Returns:
        float64 ``(n,)`` (``(P,)`` by default); NaN for closed positions and where ``f`` keeps its sign over
        ``[P0 2^-512, P0 2^512]``.

    Raises:
        ValueError: ``rtol`` not in (0, 1), or ``own(P0)`` differs from the model's ``evaluate`` per position.
    """
    if not 0.0 < rtol < 1.0:
        raise ValueError(f"liquidation price search: rtol must be in (0, 1), got {rtol!r}")
    idx = np.arange(book.n_positions) if positions is None else np.asarray(positions, dtype=np.int64)
    out = np.full(idx.size, np.nan)
    r = model.evaluate(book, prices)
    p0 = margin_price(model, book, prices)[idx]
    own0 = _own_margin_usd(model, book, prices, idx, p0)
    expected = r.pos_upnl_usd[idx] - r.pos_maint_usd[idx]
    scale = np.abs(r.pos_upnl_usd[idx]) + np.abs(r.pos_maint_usd[idx]) + r.pos_notional_usd[idx]
    bad = np.abs(own0 - expected) > 1e-9 * scale + 1e-12
    if bad.any():
        p = int(idx[np.flatnonzero(bad)[0]])
        raise ValueError(f"liquidation price search: model {model.name!r}: position {p}: uPnL - requirement "
                         f"{own0[np.flatnonzero(bad)[0]]!r} from position_requirement differs from evaluate's "
                         f"{expected[np.flatnonzero(bad)[0]]!r}; the model needs its own liquidation price")
    g = book.pos_group[idx]
    base = (r.equity_usd - r.maint_usd)[g] - own0
    live = (book.pos_qty[idx] != 0) & np.isfinite(p0) & (p0 > 0) & np.isfinite(base)
    sel = np.flatnonzero(live)
    if sel.size == 0:
        return out

    def f(k: np.ndarray, price: np.ndarray) -> np.ndarray:
        return base[k] + _own_margin_usd(model, book, prices, idx[k], price)

    f0 = base[sel] + own0[sel]
    at_root = f0 == 0
    out[sel[at_root]] = p0[sel[at_root]]
    sel, f0 = sel[~at_root], f0[~at_root]
    side = np.sign(book.pos_qty[idx[sel]])
    up = np.where(f0 > 0, -side, side) > 0          # a safe long is liquidated below, a safe short above
    a, b, fa, fb, found = _bracket(f, sel, p0[sel], f0, up)
    sel, a, b, fa, fb = sel[found], a[found], b[found], fa[found], fb[found]
    out[sel] = _refine(f, sel, a, b, fa, fb, rtol)
    return out


def _bracket(f, sel: np.ndarray, p0: np.ndarray, f0: np.ndarray, up: np.ndarray):
    """Grow ``[a, b]`` from ``p0`` until ``f`` changes sign; ``found`` marks the positions bracketed."""
    n = sel.size
    a, b = p0.copy(), p0.copy()
    fa, fb = f0.copy(), f0.copy()
    found = np.zeros(n, bool)
    prev_p, prev_f = p0.copy(), f0.copy()
    for k in range(_EXPANSIONS):
        todo = np.flatnonzero(~found)
        if todo.size == 0:
            break
        step = 2.0 ** (2.0 ** k)
        trial = np.where(up[todo], p0[todo] * step, p0[todo] / step)
        ft = f(sel[todo], trial)
        hit = np.isfinite(ft) & ((ft == 0) | (np.sign(ft) != np.sign(f0[todo])))
        h = todo[hit]
        lo_is_trial = ~up[h]
        a[h] = np.where(lo_is_trial, trial[hit], prev_p[h])
        fa[h] = np.where(lo_is_trial, ft[hit], prev_f[h])
        b[h] = np.where(lo_is_trial, prev_p[h], trial[hit])
        fb[h] = np.where(lo_is_trial, prev_f[h], ft[hit])
        found[h] = True
        prev_p[todo], prev_f[todo] = trial, ft
    return a, b, fa, fb, found


def _refine(f, sel: np.ndarray, a: np.ndarray, b: np.ndarray, fa: np.ndarray, fb: np.ndarray,
            rtol: float) -> np.ndarray:
    """Shrink the brackets ``[a, b]`` (``f(a)``, ``f(b)`` of opposite signs or 0) to ``rtol``; the roots."""
    root = np.full(sel.size, np.nan)
    last = np.zeros(sel.size, np.int8)   # +1: b was replaced last, -1: a was
    exact_a, exact_b = fa == 0, fb == 0
    root[exact_a] = a[exact_a]
    root[exact_b & ~exact_a] = b[exact_b & ~exact_a]
    for it in range(_MAX_ITER):
        act = np.flatnonzero(np.isnan(root))
        if act.size == 0:
            break
        aa, bb, ffa, ffb = a[act], b[act], fa[act], fb[act]
        narrow = bb - aa <= rtol * bb
        if narrow.any():
            root[act[narrow]] = 0.5 * (aa[narrow] + bb[narrow])
            act, aa, bb, ffa, ffb = act[~narrow], aa[~narrow], bb[~narrow], ffa[~narrow], ffb[~narrow]
            if act.size == 0:
                break
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            c = (aa * ffb - bb * ffa) / (ffb - ffa)
        bisect = ~((c > aa) & (c < bb)) | (it % 4 == 3)
        c = np.where(bisect, np.where(aa > 0, np.sqrt(aa * bb), 0.5 * (aa + bb)), c)
        fc = f(sel[act], c)
        zero = fc == 0
        root[act[zero]] = c[zero]
        # a non-finite f (an inverse contract at a vanishing price) counts with the sign of its end
        like_b = ~zero & (np.sign(fc) == np.sign(ffb))
        like_a = ~zero & ~like_b
        kb, ka = act[like_b], act[like_a]
        fa[kb] = np.where(last[kb] == 1, fa[kb] * 0.5, fa[kb])
        b[kb], fb[kb], last[kb] = c[like_b], fc[like_b], 1
        fb[ka] = np.where(last[ka] == -1, fb[ka] * 0.5, fb[ka])
        a[ka], fa[ka], last[ka] = c[like_a], fc[like_a], -1
    return root
