"""Ledger: every transfer of money between parties, recorded as it happens.

Parties are int64 ids: traders use their account id (>= 0); the others are the negative constants
below. Amounts are USD and always >= 0; direction is ``from_party -> to_party``. The engine keeps
balances in its own state; the ledger is the independent record the run is reconciled against.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from delever.ledger.parties import (  # noqa: F401  (re-exported: the engine's party ids)
    BAD_DEBT,
    FEE_POOL,
    INSURANCE_FUND,
    LIQUIDATOR_VAULT,
    MARKET,
    PARTY_NAMES,
    party_name,
)


class Ledger:
    """Append-only record of transfers, stored in array chunks (no Python object per transfer)."""

    def __init__(self) -> None:
        self._chunks: list[tuple[int, int, float, str, np.ndarray, np.ndarray, np.ndarray]] = []
        self.step = 0
        self.round = 0
        self.t_s = 0.0

    def at(self, step: int, round_: int, t_s: float) -> None:
        """Set the time stamp of the following records."""
        self.step, self.round, self.t_s = step, round_, t_s

    def transfer_signed(self, kind: str, payer, payee, amount_usd) -> None:
        """Record transfers ``payer -> payee`` of ``amount_usd``; a negative amount flows the other way.

        Args:
            kind: What the transfer is for (``liquidation_pnl``, ``clearance_fee`` ...).
            payer: int party id or int64 array ``(K,)``.
            payee: int party id or int64 array ``(K,)``.
            amount_usd: float or float64 array ``(K,)``; zeros are not recorded.
        """
        amount = np.atleast_1d(np.asarray(amount_usd, dtype=np.float64))
        n = amount.size
        payer = np.broadcast_to(np.asarray(payer, dtype=np.int64), (n,))
        payee = np.broadcast_to(np.asarray(payee, dtype=np.int64), (n,))
        keep = amount != 0
        if not keep.any():
            return
        amount, payer, payee = amount[keep], payer[keep], payee[keep]
        neg = amount < 0
        src = np.where(neg, payee, payer)
        dst = np.where(neg, payer, payee)
        self._chunks.append((self.step, self.round, self.t_s, kind, src, dst, np.abs(amount)))

    def __len__(self) -> int:
        return sum(c[4].size for c in self._chunks)

    def net_flows(self) -> dict[int, float]:
        """Net amount received by each party (USD): inflows minus outflows."""
        if not self._chunks:
            return {}
        src = np.concatenate([c[4] for c in self._chunks])
        dst = np.concatenate([c[5] for c in self._chunks])
        amt = np.concatenate([c[6] for c in self._chunks])
        parties, inv = np.unique(np.concatenate([src, dst]), return_inverse=True)
        net = np.bincount(inv, weights=np.concatenate([-amt, amt]), minlength=parties.size)
        return {int(p): float(v) for p, v in zip(parties, net, strict=True)}

    def to_table(self) -> pa.Table:
        """All transfers as a table: seq, step, round, t_s, kind, from_party, to_party, from_name, to_name, amount_usd."""
        if not self._chunks:
            src = dst = np.zeros(0, np.int64)
            amt = np.zeros(0)
            step = rnd = np.zeros(0, np.int32)
            t = np.zeros(0)
            kinds: list[str] = []
        else:
            sizes = [c[4].size for c in self._chunks]
            step = np.repeat([c[0] for c in self._chunks], sizes).astype(np.int32)
            rnd = np.repeat([c[1] for c in self._chunks], sizes).astype(np.int32)
            t = np.repeat([c[2] for c in self._chunks], sizes).astype(np.float64)
            kinds = [c[3] for c, s in zip(self._chunks, sizes, strict=True) for _ in range(s)]
            src = np.concatenate([c[4] for c in self._chunks])
            dst = np.concatenate([c[5] for c in self._chunks])
            amt = np.concatenate([c[6] for c in self._chunks])
        names = {p: party_name(p) for p in np.unique(np.concatenate([src, dst])).tolist()}
        return pa.table({
            "seq": np.arange(src.size, dtype=np.int64),
            "step": step,
            "round": rnd,
            "t_s": t,
            "kind": pa.array(kinds, pa.string()).dictionary_encode(),
            "from_party": src,
            "to_party": dst,
            "from_name": pa.array([names[p] for p in src.tolist()], pa.string()).dictionary_encode(),
            "to_name": pa.array([names[p] for p in dst.tolist()], pa.string()).dictionary_encode(),
            "amount_usd": amt,
        })
