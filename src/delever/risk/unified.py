"""Bybit Unified Trading Account (cross margin): tiered collateral value ratios, risk-limit MM per position.

Sources (Bybit help center, stored copies):

* "Understanding Collateral Value Ratios in Unified Trading Account" (Assets-Collateral-Value-Ratio-List-UTA,
  updated 2025-09-18): "Margin Balance = Wallet Balance + Perp & Future Unrealized Profit/Loss (UPL)";
  "Total Wallet Balance (in USD) = Sum (Asset 1 x USD Index Price x Collateral Value Ratio + ...)"; "The Collateral
  Value Ratio only applies to assets with a positive balance. For assets with a negative balance default to a 100%
  collateral value ratio". The ratio is tiered by quantity, e.g. "BTC | 0 - 10 | 0.98; >10 - 20 | 0.95; >20 - 30 |
  0.9; >30 - 40 | 0.85; >40 - 50 | 0.8; >50 | 0; USDT | >0 | 1" (:data:`BYBIT_EXAMPLE_TIERS`); each tier's ratio
  applies to the quantity within it (as Bitget's and Binance's tiered collateral ratios do) [U: the page's own
  worked numbers are cut in the stored copy].
* "Key Terms and Formulas in Unified Trading Account" (Glossary, 2025-09-02): "Total Maintenance Margin = sum
  Maintenance Margin on Borrowed Asset + sum Maintenance Margin for Open Positions + ..."; liquidation when the
  account MM rate reaches 100 %.
* Risk limits per instrument as in presets/bybit.toml (``TieredRisk`` tiers: MM = value x MMR - mmDeduction).

Not modelled: maintenance margin on borrowed assets (spot margin borrowing), order margin, haircut loss of spot
orders, options.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delever.errors import DeleverInputError
from delever.model.accounts import AccountBook
from delever.risk.base import Prices
from delever.risk.tiered import TieredRisk


@dataclass(frozen=True)
class CollateralValueTiers:
    """Tiered collateral value ratio of one asset, by quantity held.

    Attributes:
        floor_qty: float64 ``(T,)`` ascending quantity floors (asset units), the first 0.
        ratio: float64 ``(T,)`` collateral value ratio of the quantity in ``(floor_t, floor_{t+1}]``, in [0, 1].
    """

    floor_qty: np.ndarray
    ratio: np.ndarray

    @classmethod
    def from_lists(cls, floor_qty, ratio, where: str = "collateral tiers") -> CollateralValueTiers:
        """Validated tiers.

        Raises:
            DeleverInputError: unequal lengths, floors not starting at 0 / not increasing, a ratio outside [0, 1].
        """
        f = np.asarray(floor_qty, dtype=np.float64)
        r = np.asarray(ratio, dtype=np.float64)
        if f.ndim != 1 or f.size == 0 or f.shape != r.shape:
            raise DeleverInputError(f"{where}: floor_qty and ratio must be equal-length non-empty lists")
        if f[0] != 0 or (np.diff(f) <= 0).any():
            raise DeleverInputError(f"{where}: quantity floors must start at 0 and strictly increase, got {f.tolist()}")
        if ((r < 0) | (r > 1)).any():
            raise DeleverInputError(f"{where}: collateral value ratios must be within [0, 1], got {r.tolist()}")
        return cls(f, r)

    def collateral_qty(self, amount: np.ndarray) -> np.ndarray:
        """Quantity counted as collateral: each tier's slice of a positive amount times its ratio; debts in full.

        Args:
            amount: float64 ``(N,)`` signed balances (asset units).

        Returns:
            float64 ``(N,)``.
        """
        a = np.asarray(amount, dtype=np.float64)
        width = np.append(np.diff(self.floor_qty), np.inf)
        slices = np.clip(np.maximum(a, 0.0)[:, None] - self.floor_qty[None, :], 0.0, width[None, :])
        return slices @ self.ratio + np.minimum(a, 0.0)


# The help page's illustration ("Assume the tiered value rates of BTC and USDT are shown as follows").
BYBIT_EXAMPLE_TIERS: dict[str, CollateralValueTiers] = {
    "BTC": CollateralValueTiers.from_lists([0, 10, 20, 30, 40, 50], [0.98, 0.95, 0.9, 0.85, 0.8, 0.0], "BTC"),
    "USDT": CollateralValueTiers.from_lists([0], [1.0], "USDT"),
}


@dataclass
class UnifiedAccountRisk(TieredRisk):
    """Bybit UTA cross margin: equity = sum of tiered collateral values + uPnL; MM = sum of risk-limit MM.

    Args:
        tiers: One ``MarginTiers`` (risk limits) per instrument.
        collateral_tiers: One ``CollateralValueTiers`` or None (ratio 1) per asset code.
        name: Model name.
    """

    collateral_tiers: tuple[CollateralValueTiers | None, ...] = ()
    name: str = "bybit-unified"

    def collateral_usd(self, book: AccountBook, prices: Prices) -> np.ndarray:
        """float64 ``(G,)``: ``sum_k tiered(balance_k) x USD index price_k`` (negative balances in full)."""
        if self.collateral_tiers and len(self.collateral_tiers) != book.balance.shape[1]:
            raise DeleverInputError(f"{self.name}: {len(self.collateral_tiers)} collateral tier tables for "
                                    f"{book.balance.shape[1]} assets")
        qty = book.balance.copy()
        for k, t in enumerate(self.collateral_tiers):
            if t is not None:
                qty[:, k] = t.collateral_qty(book.balance[:, k])
        return qty @ prices.asset_usd
