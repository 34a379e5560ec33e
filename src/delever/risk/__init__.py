"""Risk models: (account book, prices) -> equity, maintenance and initial requirement per margin group.

:class:`~delever.risk.base.RiskModel` is the interface. Models (one module each, sources in their docstrings):

* :class:`~delever.risk.tiered.TieredRisk` -- tiered MMR summed over a group (Binance USD-M cross / isolated, OKX
  with :func:`~delever.risk.tiered.whole_position_tiers`), Binance's cross liquidation price;
* :class:`~delever.risk.multi_assets.MultiAssetsRisk` -- Binance Multi-Assets mode (bid / ask rates, haircuts);
* :class:`~delever.risk.unified.UnifiedAccountRisk` -- Bybit unified account (tiered collateral value ratios);
* :class:`~delever.risk.hyperliquid.HyperliquidRisk` -- Hyperliquid margin tiers and its liquidation-price formula;
* :class:`~delever.risk.dydx.DydxRisk` -- dYdX v4 TNC / TMMR, multi-position bankruptcy and fillable prices;
* :class:`~delever.risk.drift.DriftRisk` -- Drift size-premium margin;
* :class:`~delever.risk.bitmex.InverseRiskLimitRisk` -- BitMEX inverse contracts with risk-limit steps.

:func:`~delever.risk.factory.risk_model_for` picks one from a venue preset;
:func:`~delever.risk.liquidation.liquidation_prices` gives every position's liquidation price under any model (the
model's closed form, else a vectorized root search).
"""

from delever.risk.base import GroupRisk, Prices, RiskModel, collateral_value_usd, group_sum
from delever.risk.bitmex import InverseRiskLimitRisk
from delever.risk.drift import DriftRisk
from delever.risk.dydx import DydxRisk
from delever.risk.factory import risk_model_for
from delever.risk.hyperliquid import HyperliquidRisk
from delever.risk.liquidation import liquidation_prices
from delever.risk.multi_assets import MultiAssetsRisk
from delever.risk.tiered import TieredRisk, whole_position_tiers
from delever.risk.unified import CollateralValueTiers, UnifiedAccountRisk

__all__ = ["CollateralValueTiers", "DriftRisk", "DydxRisk", "GroupRisk", "HyperliquidRisk", "InverseRiskLimitRisk",
           "MultiAssetsRisk", "Prices", "RiskModel", "TieredRisk", "UnifiedAccountRisk", "collateral_value_usd",
           "group_sum", "liquidation_prices", "risk_model_for", "whole_position_tiers"]
