"""A venue preset as a composition of the account engine's components.

``VenueRules`` (the preset's data) -> (:class:`~delever.liquidation.LiquidationPolicy`,
:class:`~delever.liquidation.Backstop`, :class:`~delever.liquidation.Deleveraging`); the risk model comes from the
venue's tiers (:class:`~delever.risk.TieredRisk`). :func:`check_venue` names what the account engine does not run yet.
"""

from __future__ import annotations

from delever.errors import DeleverInputError
from delever.liquidation import Backstop, Deleveraging, LiquidationPolicy
from delever.venues.rules import VenueRules

#: venues whose liquidation path the account engine runs (the others have their own paths; see check_venue)
ACCOUNT_ENGINE_VENUES = ("binance-usdm", "bitmex", "bybit", "hyperliquid", "okx")


def check_venue(venue: VenueRules) -> None:
    """Refuse venue rules the account engine does not run, naming the rule.

    Raises:
        DeleverInputError: Drift or dYdX (their own liquidation paths), the random-walk deleveraging policy or a
            fund that never takes positions (dYdX's). Inverse contracts are refused by the engine
            (``delever.engine.accounts.check_supported``).
    """
    name = venue.name
    adl, bs = venue.adl, venue.backstop
    refused = [
        (venue.drift is not None, "Drift's liquidator takeover and socialized loss"),
        (venue.dydx is not None, "dYdX's block-limited liquidation and deleveraging path"),
        (adl.policy == "random_walk", "random-walk deleveraging"),
        (bs.takeover_price == "none", "a fund that never takes positions"),
    ]
    for bad, what in refused:
        if bad:
            raise DeleverInputError(f"venue {name}: {what} is not run by the multi-instrument account engine yet "
                                    f"(it runs {', '.join(ACCOUNT_ENGINE_VENUES)}); use one [market] instrument")


def venue_components(venue: VenueRules, adl_policy: str | None = None) -> tuple[LiquidationPolicy, Backstop, Deleveraging]:
    """The account engine's components for a venue preset (``venue.liquidation``, ``backstop``, ``adl``)."""
    check_venue(venue)
    L, B, A = venue.liquidation, venue.backstop, venue.adl
    liq = LiquidationPolicy(partial_threshold_usd=L.partial_threshold_usd, partial_fraction=L.partial_fraction,
                            partial_cooldown_s=L.partial_cooldown_s, step_down_tiers=L.step_down_tiers,
                            step_down_order=L.step_down_order, step_down_to=L.step_down_to,
                            step_down_from_tier=L.step_down_from_tier, step_down_freeze_s=L.step_down_freeze_s,
                            close_at_bankruptcy=L.close_at_bankruptcy,
                            liquidation_taker_fee_rate=L.liquidation_taker_fee_rate,
                            takeover_after_orders=B.takeover_price == "bankruptcy",
                            backstop_below_mm_fraction=L.backstop_below_mm_fraction,
                            clearance_fee_rate=L.clearance_fee_rate)
    bs = Backstop(B.holder, B.takeover_price, B.max_net_notional_ratio, B.adl_loss_fraction, B.unwind_half_life_s,
                  B.unwind_max_slippage_pct, B.adl_drawdown_fraction, B.adl_drawdown_window_s)
    dl = Deleveraging(A.ranking, A.price, adl_policy or A.policy, A.pro_rata_cap_fraction,
                      A.bankruptcy_below_fund_fraction, A.adl_maker_fee_rate)
    return liq, bs, dl


