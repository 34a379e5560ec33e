"""Tiered maintenance margin (Binance leverage brackets, Hyperliquid margin tiers).

Both venues use ``MM = notional * MMR_tier - maint_amount_tier`` where the maintenance amount
(Binance ``cum``, Hyperliquid ``deduction``) makes MM continuous in notional:
``cum_n = cum_{n-1} + floor_n * (MMR_n - MMR_{n-1})``, ``cum_1 = 0``.
Source: ``shared/docs/venue-mechanics.md`` sections 1 and 4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delever.errors import DeleverInputError


@dataclass(frozen=True)
class MarginTiers:
    """Notional brackets with their max leverage and maintenance margin rate.

    Attributes:
        floor_usd: float64 ``(K,)`` ascending notional floors, the first is 0. A notional ``N``
            belongs to the last tier whose floor is strictly below ``N`` (Binance: floor < N <= cap).
        max_leverage: float64 ``(K,)`` max leverage allowed in the tier.
        mmr: float64 ``(K,)`` maintenance margin rate (fraction of notional).
        maint_amount_usd: float64 ``(K,)`` maintenance amount (``cum`` / ``deduction``), USD.
    """

    floor_usd: np.ndarray
    max_leverage: np.ndarray
    mmr: np.ndarray
    maint_amount_usd: np.ndarray

    @classmethod
    def from_floors(cls, floor_usd, max_leverage, mmr, where: str = "tiers") -> MarginTiers:
        """Build tiers and derive the maintenance amounts by the continuity recursion.

        Raises:
            DeleverInputError: floors not starting at 0 or not strictly increasing, or MMR not in (0, 1].
        """
        floor = np.asarray(floor_usd, dtype=np.float64)
        lev = np.asarray(max_leverage, dtype=np.float64)
        rate = np.asarray(mmr, dtype=np.float64)
        if floor.ndim != 1 or floor.size == 0 or floor.shape != lev.shape or floor.shape != rate.shape:
            raise DeleverInputError(f"{where}: floors, max leverages and MMRs must be equal-length lists")
        if floor[0] != 0 or (np.diff(floor) <= 0).any():
            raise DeleverInputError(f"{where}: notional floors must start at 0 and strictly increase, got {floor.tolist()}")
        if ((rate <= 0) | (rate > 1)).any() or (lev <= 0).any():
            raise DeleverInputError(f"{where}: MMR must be in (0, 1] and max leverage > 0")
        cum = np.zeros_like(rate)
        for k in range(1, rate.size):
            cum[k] = cum[k - 1] + floor[k] * (rate[k] - rate[k - 1])
        return cls(floor, lev, rate, cum)

    def tier_index(self, notional_usd: np.ndarray | float) -> np.ndarray:
        """Tier index (0-based, int64) for each notional (USD)."""
        idx = np.searchsorted(self.floor_usd, notional_usd, side="left") - 1
        return np.clip(idx, 0, self.floor_usd.size - 1)

    def maintenance_margin(self, notional_usd: np.ndarray | float) -> np.ndarray:
        """Maintenance margin (USD) of positions with the given absolute notional (USD)."""
        k = self.tier_index(notional_usd)
        return np.asarray(notional_usd, dtype=np.float64) * self.mmr[k] - self.maint_amount_usd[k]

    def scaled(self, multiplier: float) -> MarginTiers:
        """The same brackets with MMR and maintenance amounts times ``multiplier`` (so MM scales by it)."""
        return MarginTiers(self.floor_usd, self.max_leverage, self.mmr * multiplier, self.maint_amount_usd * multiplier)

    def max_leverage_for(self, notional_usd: np.ndarray | float) -> np.ndarray:
        """Max leverage allowed at each notional (USD)."""
        return self.max_leverage[self.tier_index(notional_usd)]
