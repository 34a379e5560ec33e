"""Ledger: every transfer of money between parties, recorded as it happens.

Parties are int64 ids: traders use their account id (>= 0); the others are the negative constants
below. Amounts are USD and always >= 0; direction is ``from_party -> to_party``. The engine keeps
balances in its own state; the ledger is the independent record the run is reconciled against.
"""

from __future__ import annotations

import pyarrow as pa

from delever.ledger.asset_ledger import AssetLedger
from delever.ledger.parties import (  # noqa: F401  (re-exported: the engine's party ids)
    BAD_DEBT,
    FEE_POOL,
    INSURANCE_FUND,
    LIQUIDATOR_VAULT,
    MARKET,
    PARTY_NAMES,
    party_name,
)


class Ledger(AssetLedger):
    """The USD ledger of the one-instrument engines: an :class:`~delever.ledger.AssetLedger` of one asset, ``USD``,
    with the ``amount_usd`` table of the run folder."""

    def __init__(self) -> None:
        super().__init__(("USD",))

    def transfer_signed(self, kind: str, payer, payee, amount_usd) -> None:
        """Record transfers ``payer -> payee`` of ``amount_usd`` (float or float64 ``(K,)``; negative: reversed)."""
        self.transfer(kind, 0, payer, payee, amount_usd, 1.0)

    def net_flows(self) -> dict[int, float]:  # type: ignore[override]
        """Net USD received by each party: inflows minus outflows."""
        return {p: v for (p, _), v in super().net_flows().items()}

    def to_table(self) -> pa.Table:
        """All transfers: seq, step, round, t_s, kind, from_party, to_party, from_name, to_name, amount_usd."""
        t = super().to_table()
        cols = ("seq", "step", "round", "t_s", "kind", "from_party", "to_party", "from_name", "to_name")
        return pa.table({**{c: t.column(c) for c in cols}, "amount_usd": t.column("amount")})
