"""Ledger parties: traders by account id (>= 0), the venue's own parties by the negative ids below."""

from __future__ import annotations

MARKET = -1           # the outside market: counterparties reached through the order book
INSURANCE_FUND = -2
LIQUIDATOR_VAULT = -3
BAD_DEBT = -4         # unrecovered losses: pays out what no one else could
FEE_POOL = -5         # the venue's fee pool: trading fees (Bybit: taker fee of liquidation orders, maker fee of
                      # ADL fills); Drift: the market's AMM fee pool, which pays bankruptcies after the insurance fund

PARTY_NAMES = {MARKET: "market", INSURANCE_FUND: "insurance_fund", LIQUIDATOR_VAULT: "liquidator_vault", BAD_DEBT: "bad_debt",
               FEE_POOL: "fee_pool"}


def party_name(party: int) -> str:
    """Readable party name: ``trader:<account>`` or the special party's name."""
    return PARTY_NAMES.get(int(party), f"trader:{int(party)}")
