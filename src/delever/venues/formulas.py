"""Venue formulas: liquidation and bankruptcy prices, ADL ranking scores.

All functions are vectorized over positions (arrays of shape ``(N,)``, float64; ``side`` int8 +/-1).
Sources are cited per function; ``venue-mechanics.md`` is ``shared/docs/venue-mechanics.md``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from delever.venues.tiers import MarginTiers


def bankruptcy_price(side: np.ndarray, qty: np.ndarray, entry_price: np.ndarray, collateral_usd: np.ndarray) -> np.ndarray:
    """Price at which the position's equity is zero: ``entry - side * collateral / qty`` (USD).

    For a long this is where the collateral is fully consumed; for a short the price above entry.
    Fees are not included (Binance and BitMEX define the bankruptcy price on margin alone;
    venue-mechanics.md §1, §2). May be <= 0 for a long with collateral >= notional (unlevered).
    """
    return entry_price - side * collateral_usd / qty


def bankruptcy_price_with_close_fee(
    side: np.ndarray, qty: np.ndarray, entry_price: np.ndarray, collateral_usd: np.ndarray, taker_fee_rate: float
) -> np.ndarray:
    """Bankruptcy price when the margin also pays the taker fee to close at that price (USD).

    Solves ``collateral + side*Q*(BP - entry) = Q*BP*fee``: ``BP = (entry - side*collateral/Q) / (1 - side*fee)``.
    Bybit USDT contracts reserve the "fee to close = Qty x Bankruptcy Price x Taker Fee Rate" in the
    position margin (help.bybit.com 900000169703 "Order Cost (USDT Contract)"): a 1 BTC long at 50,000
    with 10x holds 5,000 + 27 USDT and goes bankrupt at 45,000 = 50,000 x (10 - 1)/10. With
    ``taker_fee_rate = 0`` this is :func:`bankruptcy_price`.
    """
    side_f = np.asarray(side, dtype=np.float64)
    return (entry_price - side_f * collateral_usd / qty) / (1.0 - side_f * taker_fee_rate)


def liquidation_price_entry_mm(
    side: np.ndarray, entry_price: np.ndarray, leverage: np.ndarray, mmr: np.ndarray | float,
    extra_margin_usd: np.ndarray | float = 0.0, qty: np.ndarray | float = 1.0,
) -> np.ndarray:
    """Isolated-margin liquidation price with the maintenance margin taken on the entry value (USD).

    ``LP = entry * (1 - side * (1/leverage - MMR)) - side * extra_margin / Q``: the price at which the
    loss has eaten the initial margin down to ``MMR x entry value``. This is the published form of
    Bybit USDT contracts (help.bybit.com 900000181046 "Liquidation Price (USDT Contract)") and of the
    BitMEX liquidation example (bitmex.com/app/liquidationExamples: long at 100, 1 % initial and 0.5 %
    maintenance margin -> liquidation 99.50, bankruptcy 99.00). The engine itself checks
    ``equity < MM(notional at mark)`` (:func:`liquidation_price_binance`), which for these venues
    lands within MMR x (entry - LP) of this price.
    """
    side_f = np.asarray(side, dtype=np.float64)
    return entry_price * (1.0 - side_f * (1.0 / np.asarray(leverage, dtype=np.float64) - mmr)) - side_f * np.asarray(
        extra_margin_usd) / np.asarray(qty)


def liquidation_price_binance(
    side: np.ndarray,
    qty: np.ndarray,
    entry_price: np.ndarray,
    wallet_balance_usd: np.ndarray,
    tiers: MarginTiers,
    other_maint_margin_usd: np.ndarray | float = 0.0,
    other_upnl_usd: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Binance USD-M liquidation price, one-way mode, one position.

    ``LP = (WB - TMM' + uPnL' + cum - side*Q*EP) / (Q*MMR - side*Q)`` with the bracket (MMR, cum)
    taken at the liquidation notional ``Q*LP``: the formula is evaluated for every bracket and the
    bracket that contains its own result is kept, as Binance says to recompute "if LP falls in a
    different bracket" (venue-mechanics.md §1; Binance FAQ b3c689c1f50a liquidation-price variables).
    For isolated margin ``WB`` is the isolated margin and the ``other_*`` terms are 0.

    Returns:
        float64 ``(N,)`` liquidation price (USD); ``nan`` where no bracket is self-consistent
        (e.g. a long that can never be liquidated because its collateral covers the whole notional).
    """
    q = np.ascontiguousarray(qty, dtype=np.float64)
    n = q.size
    return _lp_tiers(
        np.ascontiguousarray(side, dtype=np.float64), q, np.ascontiguousarray(entry_price, dtype=np.float64),
        np.ascontiguousarray(wallet_balance_usd, dtype=np.float64),
        np.ascontiguousarray(np.broadcast_to(np.asarray(other_maint_margin_usd, dtype=np.float64), (n,))),
        np.ascontiguousarray(np.broadcast_to(np.asarray(other_upnl_usd, dtype=np.float64), (n,))),
        tiers.floor_usd, tiers.mmr, tiers.maint_amount_usd)


@njit(cache=True)
def _lp_tiers(side, q, ep, wb, tmm, upnl, floor, mmr, cum):  # pragma: no cover - compiled
    # For each position, the first bracket whose own formula lands inside it. Bracket k holds notionals
    # in (floor_k, floor_{k+1}]; a relative 1e-12 slack keeps a price that lands exactly on a floor (MM is
    # continuous there, so both neighbours give the same price) from being lost to rounding. One pass,
    # no (N, K) temporaries: the same arithmetic as the vectorized form, per element.
    n, k_n = q.size, floor.size
    out = np.full(n, np.nan)
    for i in range(n):
        for k in range(k_n):
            den = q[i] * mmr[k] - side[i] * q[i]
            if den == 0.0:
                continue
            lp = (wb[i] - tmm[i] + upnl[i] + cum[k] - side[i] * q[i] * ep[i]) / den
            if not lp > 0.0:
                continue
            notional = q[i] * lp
            hi = floor[k + 1] * (1.0 + 1e-12) if k + 1 < k_n else np.inf
            if notional >= floor[k] * (1.0 - 1e-12) and notional <= hi:
                out[i] = lp
                break
    return out


def liquidation_price_hyperliquid(
    side: np.ndarray, qty: np.ndarray, mark_price: np.ndarray | float, margin_available_usd: np.ndarray, mmr: np.ndarray | float
) -> np.ndarray:
    """Hyperliquid liquidation price ``price - side * margin_available / Q / (1 - l * side)``.

    ``l = 1 / maintenance leverage`` (= the tier's MMR), ``margin_available`` = isolated margin (or
    account value) minus maintenance margin at ``mark_price`` (hyperliquid-docs trading/liquidations;
    venue-mechanics.md §4). Exact for a single tier (MM linear in notional).
    """
    side = np.asarray(side, dtype=np.float64)
    return mark_price - side * np.asarray(margin_available_usd) / np.asarray(qty) / (1.0 - np.asarray(mmr) * side)


def adl_score(
    ranking: str,
    side: np.ndarray,
    qty: np.ndarray,
    entry_price: np.ndarray,
    collateral_usd: np.ndarray,
    mark_price: float,
    maint_margin_usd: np.ndarray,
) -> np.ndarray:
    """ADL ranking score (higher = deleveraged first) for candidate counterparties.

    Rankings (venue-mechanics.md §1-§4):
        ``pnl_pct_x_effective_leverage`` (BitMEX / Bybit / OKX, and Binance per its current UI):
            ``PnL% = side*(mark-entry)/entry``, ``EffLev = notional / equity``;
            score ``PnL% * EffLev`` if PnL% > 0 else ``PnL% / EffLev`` (BitMEX autoDeleveraging page).
            This is BitMEX's definition exactly for a linear contract: with the values
            ``MarkValue = side*Q*mark``, ``BankruptValue = side*Q*BP`` and ``BP = entry - side*collateral/Q``,
            ``|MarkValue| / (MarkValue - BankruptValue) = Q*mark / (collateral + uPnL)`` and
            ``(MarkValue - AvgEntryValue) / |AvgEntryValue| = side*(mark - entry)/entry``.
        ``pnl_pct_x_margin_ratio`` (Binance FAQ 360033525471, 2019-20):
            ``max(0, uPnL) / max(1, WB) * MM / (WB + uPnL)`` (0 when the denominator <= 0).
        ``hyperliquid``: ``(mark/entry)^side * notional / account value`` (hyperliquid-docs
            trading/auto-deleveraging; the side exponent, entry/mark for shorts, is our reading so that
            both sides rank profit first [U]).

    Positions with equity <= 0 get ``-inf`` (they are being liquidated, not deleveraged).

    Returns:
        float64 ``(N,)``.
    """
    side_f = side.astype(np.float64)
    notional = qty * mark_price
    upnl = side_f * qty * (mark_price - entry_price)
    equity = collateral_usd + upnl
    with np.errstate(divide="ignore", invalid="ignore"):
        if ranking == "pnl_pct_x_effective_leverage":
            pnl_pct = side_f * (mark_price - entry_price) / entry_price
            eff_lev = notional / equity
            score = np.where(pnl_pct > 0, pnl_pct * eff_lev, pnl_pct / eff_lev)
        elif ranking == "pnl_pct_x_margin_ratio":
            pnl_pct = np.maximum(0.0, upnl) / np.maximum(1.0, collateral_usd)
            margin_ratio = np.where(equity > 0, maint_margin_usd / equity, 0.0)
            score = pnl_pct * margin_ratio
        elif ranking == "hyperliquid":
            # (mark/entry)^side as the ratio itself: a power of -1 is not correctly rounded everywhere
            # (NumPy's and libm's differ in the last bit), the quotient is, so every engine ranks alike
            ratio = np.where(side_f > 0, mark_price / entry_price, entry_price / mark_price)
            score = ratio * notional / equity
        else:
            raise ValueError(f"unknown ADL ranking {ranking!r}")
    return np.where(equity > 0, score, -np.inf)
