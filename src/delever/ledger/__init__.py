"""Double-entry ledger in asset units: every transfer names its asset, money is conserved per asset.

:class:`AssetLedger` records ``from -> to`` transfers of an amount of one asset (USDT, USDC, BTC ...) with its USD
value at the time beside it; :class:`Balances` holds what each party owns per asset so conservation can be checked
per asset (the sum over parties of each asset's balance change is zero) and the state reconciled against the
ledger's net flows.
"""

from delever.ledger.asset_ledger import AssetLedger
from delever.ledger.parties import BAD_DEBT, FEE_POOL, INSURANCE_FUND, LIQUIDATOR_VAULT, MARKET, party_name

__all__ = ["BAD_DEBT", "FEE_POOL", "INSURANCE_FUND", "LIQUIDATOR_VAULT", "MARKET", "AssetLedger", "party_name"]
