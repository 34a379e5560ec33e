"""Risk models: (account book, prices) -> equity, maintenance and initial requirement per margin group.

:class:`~delever.risk.base.RiskModel` is the interface; :class:`~delever.risk.tiered.TieredRisk` covers the tiered
venues (Binance USD-M, Hyperliquid, Bybit, OKX) over several instruments, cross or isolated.
"""

from delever.risk.base import GroupRisk, Prices, RiskModel, collateral_value_usd, group_sum
from delever.risk.tiered import TieredRisk

__all__ = ["GroupRisk", "Prices", "RiskModel", "TieredRisk", "collateral_value_usd", "group_sum"]
