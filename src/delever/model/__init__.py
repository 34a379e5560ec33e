"""Accounts, not positions: the data model of a multi-instrument, multi-collateral venue.

* :mod:`delever.model.instruments` -- assets and instruments (linear and inverse perpetuals, dated futures, spot
  assets used as collateral) in registries that map symbols to the integer codes the arrays use;
* :mod:`delever.model.accounts` -- :class:`AccountBook`, accounts, margin groups (isolated = one position, cross =
  the account), positions (margin group x instrument, signed quantity, entry) and balances (margin group x asset;
  a negative balance is a debt, the room lending protocols and borrow-enabled unified accounts use).

Struct-of-arrays with fixed dtypes; units in names. No import of the config layer.
"""

from delever.model.accounts import AccountBook
from delever.model.instruments import Asset, AssetRegistry, Instrument, InstrumentRegistry

__all__ = ["AccountBook", "Asset", "AssetRegistry", "Instrument", "InstrumentRegistry"]
