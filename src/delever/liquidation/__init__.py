"""Liquidation components a venue preset composes: what to close and how (:class:`LiquidationPolicy`), who takes
what the book cannot (:class:`Backstop`), and who is deleveraged when the backstop cannot carry it
(:class:`Deleveraging`). Plain frozen dataclasses: the config layer builds them from a venue preset."""

from delever.liquidation.components import Backstop, Deleveraging, LiquidationPolicy

__all__ = ["Backstop", "Deleveraging", "LiquidationPolicy"]
