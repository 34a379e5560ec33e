"""DeFi lending: Aave loan books, health factor, liquidation calls, liquidators selling into AMMs.

``aave``: the engine (v2 / v3.0-3.2 / v3.3+ rules, exact integer reference, synthesizer);
``validate_aave``: the 2021-05-19 Aave v2 validation against the real LiquidationCall events.
"""

from delever.lending import aave
from delever.lending.aave import *  # noqa: F403 - the package re-exports the engine's public names

__all__ = list(aave.__all__)
