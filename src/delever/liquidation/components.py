"""Liquidation, backstop and deleveraging components of the account engine (``delever.engine.accounts``).

Each is a frozen dataclass of the venue's parameters (sources: shared/docs/venue-mechanics.md sections 1 and 4, and
the presets in ``delever/venues/presets``), built from a preset by ``delever.venues.components.venue_components``.
Composition, not flags: a venue is the tuple (risk model, liquidation policy, backstop, deleveraging, execution).
The one-instrument fast kernel keeps its own allow-list of venue-rule fields (``delever.engine.fast``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from delever.errors import DeleverInputError


@dataclass(frozen=True)
class LiquidationPolicy:
    """What a margin group below maintenance sends to the book, and when the backstop takes it instead.

    Every open position of a liquidatable margin group gets an order in the same round (cross: the account's
    positions; isolated: the one position).

    Attributes:
        order_limit: ``bankruptcy``: orders are limit orders at each position's bankruptcy price (Binance IOC at the
            bankruptcy price; Hyperliquid market orders, limited there so a fill never leaves the account negative).
        partial_threshold_usd, partial_fraction, partial_cooldown_s: Hyperliquid: positions above the threshold send
            ``partial_fraction`` of their size, then orders within the cooldown are for the whole position.
        step_down_tiers: Binance, Bybit, BitMEX, OKX: a position in tier ``step_down_from_tier`` (1-based) or above
            first gets an order down to the top of the lower tier (``step_down_to = "lower_tier"``) or of the first
            tier (``"first_tier"``, OKX); the liquidation stops if the group is then compliant.
        step_down_order: ``ioc`` (Binance, OKX: what the book holds within the bankruptcy price) or ``fill_or_kill``
            (BitMEX / Bybit: filled in full or not at all).
        step_down_from_tier: 1-based tier from which a position is stepped down (OKX: 3).
        step_down_freeze_s: OKX: a group that got a step-down order is neither looked at again nor taken over for
            this long ("checked again about a minute later").
        close_at_bankruptcy: BitMEX / Bybit: a full-close order is the trader's close at the bankruptcy price: the
            margin a fill frees beyond the share backing the rest goes to the backstop, the rest is taken over
            whatever the margin; a group still deficient after its step-down gets full-close orders first.
        liquidation_taker_fee_rate: Bybit: taker fee of the liquidated order (fill notional, and ``qty x bankruptcy
            price`` on a takeover) paid to the fee pool; the bankruptcy price keeps this fee to close
            (``delever.venues.formulas.bankruptcy_price_with_close_fee``).
        takeover_after_orders: Binance: a group still below maintenance after its orders is closed at bankruptcy
            prices and the backstop takes every remaining position and balance.
        backstop_below_mm_fraction: Hyperliquid: a group whose equity is below this fraction of its maintenance is
            taken over by the backstop at mark with all its balances, without book orders (0 = never).
        clearance_fee_rate: Binance insurance clearance fee on filled liquidation notional, paid to the backstop.
    """

    order_limit: Literal["bankruptcy"] = "bankruptcy"
    partial_threshold_usd: float = 0.0
    partial_fraction: float = 1.0
    partial_cooldown_s: float = 0.0
    step_down_tiers: bool = False
    step_down_order: Literal["ioc", "fill_or_kill"] = "ioc"
    step_down_to: Literal["lower_tier", "first_tier"] = "lower_tier"
    step_down_from_tier: int = 2
    step_down_freeze_s: float = 0.0
    close_at_bankruptcy: bool = False
    liquidation_taker_fee_rate: float = 0.0
    takeover_after_orders: bool = True
    backstop_below_mm_fraction: float = 0.0
    clearance_fee_rate: float = 0.0

    def __post_init__(self) -> None:
        if not (0 < self.partial_fraction <= 1):
            raise DeleverInputError(f"liquidation.partial_fraction {self.partial_fraction!r}: expected in (0, 1]")
        if not (0 <= self.backstop_below_mm_fraction <= 1):
            raise DeleverInputError("liquidation.backstop_below_mm_fraction: expected in [0, 1]")
        if self.step_down_from_tier < 2:
            raise DeleverInputError(f"liquidation.step_down_from_tier {self.step_down_from_tier!r}: expected >= 2")
        if not (0 <= self.liquidation_taker_fee_rate < 0.1):
            raise DeleverInputError("liquidation.liquidation_taker_fee_rate: expected in [0, 0.1)")


@dataclass(frozen=True)
class Backstop:
    """The insurance fund or liquidator vault: cash per asset plus an inventory per instrument.

    Attributes:
        holder: ``insurance_fund`` or ``liquidator_vault`` (ledger party).
        takeover_price: ``bankruptcy`` (Binance: the fund takes positions at their bankruptcy prices) or ``mark``
            (Hyperliquid: the vault takes positions at mark with the account's balances).
        max_net_notional_ratio: Binance: the fund's net position notional (over all instruments) may not exceed this
            multiple of its equity; the excess is deleveraged (0 = no cap).
        adl_loss_fraction: ADL once the backstop's unrealized loss exceeds this fraction of its cash.
        unwind_half_life_s, unwind_max_slippage_pct: how fast the backstop works its inventory into the book.
        adl_drawdown_fraction, adl_drawdown_window_s: OKX "rapid drop": once the backstop's equity is this fraction
            or more below its peak of the last window, its whole inventory is deleveraged (0 = never).
    """

    holder: Literal["insurance_fund", "liquidator_vault"] = "insurance_fund"
    takeover_price: Literal["bankruptcy", "mark"] = "bankruptcy"
    max_net_notional_ratio: float = 0.0
    adl_loss_fraction: float = 1.0
    unwind_half_life_s: float = 60.0
    unwind_max_slippage_pct: float = 1.0
    adl_drawdown_fraction: float = 0.0
    adl_drawdown_window_s: float = 28_800.0


@dataclass(frozen=True)
class Deleveraging:
    """ADL of the backstop's inventory in one instrument against the opposite side, ranked at account level.

    Attributes:
        ranking: ``pnl_pct_x_effective_leverage``, ``pnl_pct_x_margin_ratio`` or ``hyperliquid``
            (``delever.venues.formulas.adl_score``), with the margin group's equity as the account value.
        price: ``bankruptcy`` (the backstop's entry: the bankruptcy price of the taken-over positions),
            ``previous_mark`` (Hyperliquid) or ``mark`` (OKX: the current mark, the bankruptcy price once the
            backstop's equity is below ``bankruptcy_below_fund_fraction`` of its starting balance).
        policy: ``queue`` (highest score first), ``pro_rata``, ``capped_pro_rata``, ``risk_aware_pro_rata``.
        pro_rata_cap_fraction: Cap per position of ``capped_pro_rata``.
        bankruptcy_below_fund_fraction: see ``price = "mark"``.
        adl_maker_fee_rate: Bybit: maker fee on the ADL fill charged to the deleveraged trader (fee pool).
    """

    ranking: str = "pnl_pct_x_effective_leverage"
    price: Literal["bankruptcy", "previous_mark", "mark"] = "bankruptcy"
    policy: str = "queue"
    pro_rata_cap_fraction: float = 0.5
    bankruptcy_below_fund_fraction: float = 0.0
    adl_maker_fee_rate: float = 0.0
