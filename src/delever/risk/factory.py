"""Pick a venue's risk model from its preset: a thin mapping from ``VenueRules`` to a ``RiskModel``.

| venue (preset)   | model                                                                               |
|------------------|-------------------------------------------------------------------------------------|
| binance-usdm     | ``TieredRisk``; ``MultiAssetsRisk`` when collateral haircuts / ask buffers are given |
| hyperliquid      | ``HyperliquidRisk`` (tiers with MMR = 1 / (2 max leverage))                          |
| bybit            | ``UnifiedAccountRisk`` (risk limits; collateral value ratio tiers when given)       |
| okx              | ``TieredRisk`` on ``whole_position_tiers`` (tier MMR on the whole position)          |
| bitmex           | ``InverseRiskLimitRisk`` (XBTUSD risk limits) for inverse instruments, else the    |
|                  | preset's linear tiers as ``TieredRisk``                                              |
| dydx-v4 ([dydx]) | ``DydxRisk`` from each instrument's liquidity tier                                   |
| drift ([drift])  | ``DriftRisk`` from each instrument's market parameters                               |

Any other preset name falls back to ``TieredRisk`` on its tiers. The ``[dydx]`` / ``[drift]`` sections decide
before the name, as the engine does. ``VenueRules`` is only a type here (the domain does not import the config
layer); it is read by attribute.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from delever.model.instruments import InstrumentRegistry
from delever.risk.base import RiskModel
from delever.risk.bitmex import InverseRiskLimitRisk
from delever.risk.drift import DriftRisk
from delever.risk.dydx import DydxRisk
from delever.risk.hyperliquid import HyperliquidRisk
from delever.risk.multi_assets import MultiAssetsRisk
from delever.risk.tiered import TieredRisk, whole_position_tiers
from delever.risk.unified import CollateralValueTiers, UnifiedAccountRisk
from delever.venues.tiers import MarginTiers

if TYPE_CHECKING:
    from delever.venues.rules import VenueRules


def risk_model_for(venue_rules: VenueRules, instruments: InstrumentRegistry,
                   tiers_by_instrument: Mapping[str, MarginTiers] | None = None, *,
                   collateral_haircut: np.ndarray | None = None, ask_buffer: np.ndarray | None = None,
                   collateral_tiers: tuple[CollateralValueTiers | None, ...] = (),
                   open_interest_usd: np.ndarray | None = None) -> RiskModel:
    """The risk model of ``venue_rules`` for the instruments of a run.

    Args:
        venue_rules: A loaded preset (``delever.venues.load_venue``).
        instruments: The run's instruments (codes = the order of the tier tables built).
        tiers_by_instrument: Margin tiers per instrument symbol; default ``venue_rules.tiers_for(symbol)``.
        collateral_haircut: float64 ``(K,)`` Binance Multi-Assets bid buffers (``1 - collateral value ratio``).
        ask_buffer: float64 ``(K,)`` Binance Multi-Assets ask buffers.
        collateral_tiers: Bybit collateral value ratio tiers per asset code (empty = ratio 1).
        open_interest_usd: float64 ``(I,)`` market open interest for dYdX's IMF scaling (None = the book's own).

    Raises:
        DeleverInputError: an instrument without tiers / liquidity tier / Drift market in the preset.
    """
    symbols = instruments.symbols
    name = venue_rules.name
    if venue_rules.dydx is not None:
        lts = [venue_rules.dydx_tier_for(s) for s in symbols]
        return DydxRisk(np.array([lt.imf for lt in lts]), np.array([lt.maintenance_fraction_ppm / 1e6 for lt in lts]),
                        np.array([lt.open_interest_lower_cap_usd for lt in lts]),
                        np.array([lt.open_interest_upper_cap_usd for lt in lts]), open_interest_usd, name=name)
    if venue_rules.drift is not None:
        ms = [venue_rules.drift.market_for(s, name) for s in symbols]
        return DriftRisk(np.array([m.margin_ratio_initial for m in ms]), np.array([m.margin_ratio_maintenance for m in ms]),
                         np.array([m.imf_factor for m in ms]), name=name)
    if name == "bitmex" and instruments.inverse.any():
        return InverseRiskLimitRisk.xbtusd(len(instruments))
    tiers = tuple((tiers_by_instrument or {}).get(s) or venue_rules.tiers_for(s) for s in symbols)
    if name == "hyperliquid":
        return HyperliquidRisk(tiers)
    if name == "bybit":
        return UnifiedAccountRisk(tiers, collateral_tiers=collateral_tiers)
    if name == "okx":
        return TieredRisk(tuple(whole_position_tiers(t) for t in tiers), name=name)
    if name == "binance-usdm" and (collateral_haircut is not None or ask_buffer is not None):
        return MultiAssetsRisk(tiers, haircut=collateral_haircut, ask_buffer=ask_buffer)
    return TieredRisk(tiers, haircut=collateral_haircut, name=name)
