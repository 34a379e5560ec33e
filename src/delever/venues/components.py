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
ACCOUNT_ENGINE_VENUES = ("binance-usdm", "hyperliquid")


def check_venue(venue: VenueRules) -> None:
    """Refuse venue rules the account engine does not run, naming the rule.

    Raises:
        DeleverInputError: Drift or dYdX (their own liquidation paths), laddered variants (fill-or-kill, first tier,
            freeze), closing at the bankruptcy price with the surplus to the fund, liquidation taker fees, ADL at
            mark or on a fund drawdown, or a pro-rata ADL policy of the random-walk kind.
    """
    name = venue.name
    liq, adl, bs = venue.liquidation, venue.adl, venue.backstop
    refused = [
        (venue.drift is not None, "Drift's liquidator takeover and socialized loss"),
        (venue.dydx is not None, "dYdX's block-limited liquidation and deleveraging path"),
        (liq.step_down_tiers and (liq.step_down_order != "ioc" or liq.step_down_to != "lower_tier"
                                  or liq.step_down_freeze_s > 0), "step-down variants (fill-or-kill, to the first tier, freeze)"),
        (liq.close_at_bankruptcy, "closing at the bankruptcy price with the surplus to the fund"),
        (liq.liquidation_taker_fee_rate > 0, "taker fees on liquidation orders"),
        (adl.price == "mark", "ADL at the mark price"),
        (bs.adl_drawdown_fraction > 0, "ADL on a fund drawdown"),
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
                            takeover_after_orders=B.takeover_price == "bankruptcy",
                            backstop_below_mm_fraction=L.backstop_below_mm_fraction,
                            clearance_fee_rate=L.clearance_fee_rate)
    bs = Backstop(B.holder, B.takeover_price, B.max_net_notional_ratio, B.adl_loss_fraction, B.unwind_half_life_s,
                  B.unwind_max_slippage_pct)
    dl = Deleveraging(A.ranking, A.price, adl_policy or A.policy, A.pro_rata_cap_fraction)
    return liq, bs, dl


