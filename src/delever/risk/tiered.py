"""Tiered maintenance margin over several instruments: Binance USD-M cross, Hyperliquid cross, Bybit / OKX tiers.

Per position ``MM = notional x MMR_tier - maint_amount_tier`` with the instrument's own brackets
(``delever.venues.tiers.MarginTiers``; Binance leverage brackets, Hyperliquid margin tiers with
``MMR = 1 / (2 x max leverage)``); the margin group's requirement is the sum over its positions and its equity the
collateral value plus every position's unrealized PnL at mark (venue-mechanics.md section 1: "Cross = account level;
isolated = per position"; section 4: Hyperliquid "Account equity (cross) or isolated margin + uPnL < MM").
Initial margin is ``notional / max leverage of the tier``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delever.errors import DeleverInputError
from delever.model.accounts import AccountBook
from delever.risk.base import (
    GroupRisk,
    Prices,
    collateral_value_usd,
    group_sum,
    position_notional_usd,
    position_upnl_usd,
)
from delever.venues.formulas import liquidation_price_binance
from delever.venues.tiers import MarginTiers


@dataclass
class TieredRisk:
    """Tiered MMR per instrument, summed over each margin group.

    Args:
        tiers: One ``MarginTiers`` per instrument code (notional floors in USD).
        haircut: float64 ``(K,)`` collateral haircut per asset (Binance Multi-Assets mode), None for none.
        name: Model name for reports.
    """

    tiers: tuple[MarginTiers, ...]
    haircut: np.ndarray | None = None
    name: str = "tiered"

    def __post_init__(self) -> None:
        if not self.tiers:
            raise DeleverInputError("tiered risk model: one tier table per instrument is required")
        # every instrument's brackets padded into (I, K) tables: one vectorized lookup for all positions
        k = max(t.floor_usd.size for t in self.tiers)
        n = len(self.tiers)
        self._floor = np.full((n, k), np.inf)
        self._mmr = np.zeros((n, k))
        self._cum = np.zeros((n, k))
        self._lev = np.ones((n, k))
        for i, t in enumerate(self.tiers):
            m = t.floor_usd.size
            self._floor[i, :m], self._mmr[i, :m], self._cum[i, :m], self._lev[i, :m] = (
                t.floor_usd, t.mmr, t.maint_amount_usd, t.max_leverage)

    def position_requirement(self, instrument: np.ndarray, qty: np.ndarray, price: np.ndarray,
                             asset_usd: np.ndarray | float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Maintenance and initial requirement (USD) of positions at ``price`` (linear contracts).

        The bracket of a notional is the last whose floor lies strictly below it (``MarginTiers.tier_index``), and
        ``MM = notional x MMR - maintenance amount``, ``IM = notional / max leverage`` of that bracket, computed for
        every instrument at once.

        Args:
            instrument: int32 ``(P,)``. qty: float64 ``(P,)`` signed base units. price: float64 ``(P,)``.
            asset_usd: USD price of the settlement asset (scalar or ``(P,)``).
        """
        notional = np.abs(qty) * price
        floors = self._floor[instrument]
        k = np.maximum((notional[:, None] > floors).sum(axis=1) - 1, 0)
        mm = notional * self._mmr[instrument, k] - self._cum[instrument, k]
        im = notional / self._lev[instrument, k]
        scale = np.asarray(asset_usd, dtype=np.float64)
        return mm * scale, im * scale

    def evaluate(self, book: AccountBook, prices: Prices) -> GroupRisk:
        """Equity and requirements per margin group; see the module docstring."""
        ins = book.pos_instrument
        settle_usd = prices.asset_usd[book.registry.settle_code[ins]]
        mm, im = self.position_requirement(ins, book.pos_qty, prices.mark[ins], settle_usd)
        closed = book.pos_qty == 0
        mm[closed] = 0.0
        im[closed] = 0.0
        upnl = position_upnl_usd(book, prices)
        collateral = self.collateral_usd(book, prices)
        return GroupRisk(collateral + group_sum(book, upnl), group_sum(book, mm), group_sum(book, im), upnl, mm,
                         position_notional_usd(book, prices), collateral)

    def collateral_usd(self, book: AccountBook, prices: Prices) -> np.ndarray:
        """float64 ``(G,)`` value of each margin group's balances, USD (after ``haircut``; debts in full).

        The hook venues with other collateral rules override (Bybit tiered collateral value ratios).
        """
        return collateral_value_usd(book, prices, self.haircut)

    def liquidation_price(self, book: AccountBook, prices: Prices) -> np.ndarray:
        """Price of each position's instrument at which its margin group reaches maintenance, others fixed.

        Binance's cross formula (venue-mechanics.md section 1):
        ``LP = (WB - TMM' + uPnL' + cum - side Q EP) / (Q MMR - side Q)`` where ``TMM'`` and ``uPnL'`` belong to
        the group's *other* positions; recomputed with the bracket the price lands in. NaN where no price in
        ``(0, inf)`` reaches maintenance (a long that cannot be liquidated, a closed position). Linear
        contracts; the other terms are converted to the settlement asset at its USD price (held fixed).

        Returns:
            float64 ``(P,)``.
        """
        r = self.evaluate(book, prices)
        q = np.abs(book.pos_qty)
        side = np.sign(book.pos_qty)
        ep = book.pos_entry_price
        settle_usd = prices.asset_usd[book.registry.settle_code[book.pos_instrument]]
        g = book.pos_group
        # collateral + the other positions' uPnL, summed without this position's own term: a one-position group
        # gives exactly its collateral (no round trip through equity - uPnL)
        others = (r.collateral_usd[g] + (group_sum(book, r.pos_upnl_usd)[g] - r.pos_upnl_usd)
                  - (r.maint_usd[g] - r.pos_maint_usd)) / settle_usd
        lp = np.full(q.size, np.nan)
        for code in np.unique(book.pos_instrument):
            m = (book.pos_instrument == code) & (q > 0)
            if m.any():
                # WB - TMM' + uPnL' of the formula is the group as this position sees it: ``others``
                lp[m] = liquidation_price_binance(side[m], q[m], ep[m], others[m], self.tiers[int(code)])
        return lp


def whole_position_tiers(tiers: MarginTiers) -> MarginTiers:
    """The same brackets with no maintenance amount: the tier's MMR applies to the whole position value.

    OKX position tiers publish MMR and minimum initial margin per tier without a deduction ("Tiered Maintenance
    Margin Ratio", okx.com/help/tier; API v5 ``public/position-tiers`` has no deduction field), so MM jumps at each
    tier floor, unlike Binance's ``cum`` / Hyperliquid's deduction / Bybit's ``mmDeduction``.
    """
    return MarginTiers(tiers.floor_usd, tiers.max_leverage, tiers.mmr, np.zeros_like(tiers.mmr))
