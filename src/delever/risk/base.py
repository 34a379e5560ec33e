"""The risk-model interface: (account book, prices) -> equity and requirements per margin group.

Every venue's margin rule is one :class:`RiskModel`. The engine only asks it for:

* ``equity_usd`` per margin group: collateral value (after the venue's haircuts / collateral value ratios) plus
  unrealized PnL at mark, in USD (Binance "margin balance", Hyperliquid "account value", dYdX TNC, Drift "total
  collateral");
* ``maint_usd`` / ``initial_usd`` per margin group: the sum of the positions' requirements (tiered MMR, size
  premium, OI-scaled IMF ...), in USD;
* per position, its own maintenance requirement and unrealized PnL (liquidation order, ADL ranking,
  bankruptcy prices), and a liquidation price where one exists (holding every other price fixed).

Units: prices are quote per base unit; asset prices USD per asset unit. A margin group is liquidatable when
``equity_usd < maint_usd`` (venue-mechanics.md: Binance ``WB + uPnL < MM``; Hyperliquid account value < MM; dYdX
``TNC < TMMR``; Drift total collateral < maintenance margin requirement).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from delever.model.accounts import AccountBook


@dataclass
class Prices:
    """Prices the risk model values a book at.

    Attributes:
        mark: float64 ``(I,)`` mark price per instrument (the venue's margin price: mark, or oracle on dYdX / Drift).
        index: float64 ``(I,)`` index / oracle price per instrument.
        asset_usd: float64 ``(K,)`` USD price of each asset (1 for USD stablecoins unless depegged).
    """

    mark: np.ndarray
    index: np.ndarray
    asset_usd: np.ndarray


@dataclass
class GroupRisk:
    """A risk model's answer for one book at one set of prices.

    Attributes:
        equity_usd: float64 ``(G,)`` margin balance (collateral value + unrealized PnL), USD.
        maint_usd: float64 ``(G,)`` maintenance requirement, USD.
        initial_usd: float64 ``(G,)`` initial requirement, USD.
        pos_upnl_usd: float64 ``(P,)`` unrealized PnL of each position at mark, USD.
        pos_maint_usd: float64 ``(P,)`` maintenance requirement of each position, USD (sums to ``maint_usd``).
        pos_notional_usd: float64 ``(P,)`` absolute notional at mark, USD.
        collateral_usd: float64 ``(G,)`` collateral value (after haircuts) without unrealized PnL, USD, when the
            model separates it (``equity_usd - sum of pos_upnl_usd`` otherwise).
    """

    equity_usd: np.ndarray
    maint_usd: np.ndarray
    initial_usd: np.ndarray
    pos_upnl_usd: np.ndarray
    pos_maint_usd: np.ndarray
    pos_notional_usd: np.ndarray
    collateral_usd: np.ndarray | None = None

    @property
    def liquidatable(self) -> np.ndarray:
        """bool ``(G,)``: equity below maintenance and at least one requirement (an empty group is never liquidated)."""
        return (self.equity_usd < self.maint_usd) & (self.maint_usd > 0)


@runtime_checkable
class RiskModel(Protocol):
    """What every venue's margin rule answers (see the module docstring)."""

    name: str

    def evaluate(self, book: AccountBook, prices: Prices) -> GroupRisk:
        """Equity and requirements of every margin group of ``book`` at ``prices``."""
        ...

    def position_requirement(self, instrument: np.ndarray, qty: np.ndarray, price: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Maintenance and initial requirement (USD) of positions ``qty`` (signed) of ``instrument`` at ``price``.

        Returns:
            ``(maint_usd, initial_usd)``, float64 ``(P,)`` each.
        """
        ...


def group_sum(book: AccountBook, per_position: np.ndarray) -> np.ndarray:
    """Sum a per-position quantity over margin groups: float64 ``(G,)``."""
    return np.bincount(book.pos_group, weights=per_position, minlength=book.n_groups)


def position_upnl_usd(book: AccountBook, prices: Prices) -> np.ndarray:
    """Unrealized PnL of every position at mark, in USD (settlement-asset PnL x the asset's USD price)."""
    reg = book.registry
    ins = book.pos_instrument
    pnl = reg.pnl_settle(ins, book.pos_qty, book.pos_entry_price, prices.mark[ins])
    return pnl * prices.asset_usd[reg.settle_code[ins]]


def position_notional_usd(book: AccountBook, prices: Prices) -> np.ndarray:
    """Absolute notional of every position at mark, USD."""
    reg = book.registry
    ins = book.pos_instrument
    n_settle = reg.notional_settle(ins, book.pos_qty, prices.mark[ins])
    return n_settle * prices.asset_usd[reg.settle_code[ins]]


def collateral_value_usd(book: AccountBook, prices: Prices, haircut: np.ndarray | None = None) -> np.ndarray:
    """Value of each margin group's balances in USD: ``sum_k balance[g, k] x price_k x (1 - haircut_k)``.

    A haircut applies to positive balances only; a debt (negative balance) counts in full.

    Args:
        haircut: float64 ``(K,)`` haircut per asset (0 = full value), or None for none.
    """
    value = book.balance * prices.asset_usd[None, :]
    if haircut is not None:
        value = np.where(value > 0, value * (1.0 - haircut[None, :]), value)
    return value.sum(axis=1)
