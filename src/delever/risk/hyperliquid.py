"""Hyperliquid cross and isolated margin: margin tiers with ``MMR = 1 / (2 x max leverage)`` over several assets.

Source: hyperliquid-docs trading/margin-tiers ("maintenance margin ... half of the initial margin at max leverage",
deductions that keep MM continuous) and trading/liquidations ("liq_price = price - side * margin_available /
position_size / (1 - l * side)", ``l = 1 / MAINTENANCE_LEVERAGE``; "margin_available = account_value -
maintenance_margin_required" for cross, isolated margin for isolated positions); venue-mechanics.md section 4.
The tiers come from presets/hyperliquid.toml (``TierTable`` without ``mmr``: 1/(2 max leverage)).

:class:`HyperliquidRisk` is :class:`~delever.risk.tiered.TieredRisk` (account value = USDC + uPnL at mark, MM summed
over the cross positions) plus the venue's own liquidation-price formula,
:func:`delever.venues.formulas.liquidation_price_hyperliquid`, which is exact while the position stays in its tier
(MM moves by ``l x Q`` per unit of price there); ``liquidation_price`` (inherited) solves across tiers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delever.model.accounts import AccountBook
from delever.risk.base import Prices
from delever.risk.tiered import TieredRisk
from delever.venues.formulas import liquidation_price_hyperliquid


@dataclass
class HyperliquidRisk(TieredRisk):
    """Hyperliquid margin tiers per asset, cross (account) or isolated (one position) groups."""

    name: str = "hyperliquid"

    def displayed_liquidation_price(self, book: AccountBook, prices: Prices) -> np.ndarray:
        """The docs' ``liq_price = mark - side x margin_available / Q / (1 - l x side)`` per position, others fixed.

        ``margin_available`` = the group's account value (or isolated margin + uPnL) minus its maintenance margin at
        the current marks; ``l`` = the MMR of the position's current tier.

        Returns:
            float64 ``(P,)``; NaN for closed positions. May be <= 0 (a long that cannot be liquidated).
        """
        r = self.evaluate(book, prices)
        ins = book.pos_instrument
        mark = prices.mark[ins]
        mmr = np.empty(ins.size)
        for code in np.unique(ins):
            m = ins == code
            t = self.tiers[int(code)]
            mmr[m] = t.mmr[t.tier_index(r.pos_notional_usd[m])]
        available = (r.equity_usd - r.maint_usd)[book.pos_group]
        q = np.abs(book.pos_qty)
        with np.errstate(divide="ignore", invalid="ignore"):
            lp = liquidation_price_hyperliquid(np.sign(book.pos_qty), q, mark, available, mmr)
        return np.where(q > 0, lp, np.nan)
