"""Drift protocol-v2 cross margin: per-market margin ratios with size premium, summed over a user's positions.

Sources (drift-labs/protocol-v2; formulas in :mod:`delever.venues.drift`, venue-mechanics.md section 6):

* ``math/margin.rs`` (``calculate_size_premium_liability_weight``) and ``state/perp_market.rs``
  (``get_margin_ratio``): a position's ratio is ``max(mr, 0.8 mr + imf_factor x sqrt(size))`` in Drift's integer
  units (:func:`delever.venues.drift.margin_ratio` with ``exact``); requirement = base value at the oracle x ratio,
  initial with ``margin_ratio_initial``, maintenance with ``margin_ratio_maintenance``.
* ``state/margin_calculation.rs``: total collateral = spot deposits (USDC here, asset weight 1) + perp PnL at the
  oracle; a user is liquidatable when total collateral < the maintenance requirement, and stays "being liquidated"
  until it clears the requirement plus ``liquidation_margin_buffer_ratio`` x notional
  (:meth:`DriftRisk.maint_plus_buffer_usd`).

Not modelled: spot asset / liability weights other than 1 (non-USDC collateral, borrows), open-order margin,
the unrealized-PnL asset weight of the initial check, high-leverage mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delever.errors import DeleverInputError
from delever.model.accounts import AccountBook
from delever.risk.base import GroupRisk, Prices, collateral_value_usd, group_sum, position_upnl_usd
from delever.venues import drift as dm


@dataclass
class DriftRisk:
    """Drift margin per user (one cross group) over its perp markets, at the oracle (``Prices.index``).

    Args:
        margin_ratio_initial: float64 ``(I,)`` per market (fraction).
        margin_ratio_maintenance: float64 ``(I,)`` per market (fraction).
        imf_factor: float64 ``(I,)`` size-premium factor per sqrt(base unit).
        exact: Drift's integer rounding of the ratio (True) or the real-valued formula.
        name: Model name.
    """

    margin_ratio_initial: np.ndarray
    margin_ratio_maintenance: np.ndarray
    imf_factor: np.ndarray
    exact: bool = True
    name: str = "drift"

    def __post_init__(self) -> None:
        self.margin_ratio_initial = np.asarray(self.margin_ratio_initial, dtype=np.float64)
        self.margin_ratio_maintenance = np.asarray(self.margin_ratio_maintenance, dtype=np.float64)
        self.imf_factor = np.asarray(self.imf_factor, dtype=np.float64)
        n = self.margin_ratio_initial.size
        if n == 0 or self.margin_ratio_maintenance.shape != (n,) or self.imf_factor.shape != (n,):
            raise DeleverInputError("drift risk model: one initial / maintenance ratio and imf factor per instrument")
        if (self.margin_ratio_maintenance > self.margin_ratio_initial).any() or (self.margin_ratio_maintenance <= 0).any():
            raise DeleverInputError("drift risk model: need 0 < margin_ratio_maintenance <= margin_ratio_initial")

    def position_requirement(self, instrument: np.ndarray, qty: np.ndarray, price: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(maintenance, initial)`` requirement in USD of positions valued at ``price`` (the oracle)."""
        ins = np.asarray(instrument)
        size = np.abs(np.asarray(qty, dtype=np.float64))
        value = size * np.asarray(price, dtype=np.float64)
        mm = np.zeros(size.size)
        im = np.zeros(size.size)
        for code in np.unique(ins):
            m = ins == code
            c = int(code)
            mm[m] = value[m] * dm.margin_ratio(size[m], self.margin_ratio_maintenance[c], self.imf_factor[c], self.exact)
            im[m] = value[m] * dm.margin_ratio(size[m], self.margin_ratio_initial[c], self.imf_factor[c], self.exact)
        return mm, im

    def evaluate(self, book: AccountBook, prices: Prices) -> GroupRisk:
        """Total collateral (``equity_usd``) and the maintenance / initial requirements per user at the oracle."""
        oracle = Prices(prices.index, prices.index, prices.asset_usd)
        ins = book.pos_instrument
        mm, im = self.position_requirement(ins, book.pos_qty, prices.index[ins])
        upnl = position_upnl_usd(book, oracle)
        equity = collateral_value_usd(book, oracle) + group_sum(book, upnl)
        notional = np.abs(book.pos_qty) * prices.index[ins]
        return GroupRisk(equity, group_sum(book, mm), group_sum(book, im), upnl, mm, notional)

    def maint_plus_buffer_usd(self, book: AccountBook, prices: Prices, buffer_ratio: float) -> np.ndarray:
        """float64 ``(G,)`` maintenance requirement plus ``buffer_ratio`` x notional: what ends a liquidation."""
        r = self.evaluate(book, prices)
        return r.maint_usd + buffer_ratio * group_sum(book, r.pos_notional_usd)
