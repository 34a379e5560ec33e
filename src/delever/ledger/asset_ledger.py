"""Append-only double-entry record of transfers in asset units, with USD valuations kept beside them.

Parties are int64 ids: traders use their account id (>= 0); the venue's own parties are the negative constants of
:mod:`delever.ledger.parties` (market, insurance fund, liquidator vault, bad debt, fee pool). Amounts are in units of
the transfer's asset and always >= 0; direction is ``from_party -> to_party``. The engine keeps balances in its own
state; the ledger is the independent record the run is reconciled against, per asset.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from delever.ledger.parties import party_name

__all__ = ["AssetLedger"]


class AssetLedger:
    """Transfers of several assets, stored in array chunks (no Python object per transfer).

    Args:
        assets: Asset symbols; a transfer's ``asset`` is an index into this tuple.
    """

    def __init__(self, assets: tuple[str, ...]) -> None:
        self.assets = tuple(assets)
        self._chunks: list[tuple[int, int, float, str, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.step = 0
        self.round = 0
        self.t_s = 0.0

    def asset_code(self, symbol: str) -> int:
        """Index of asset ``symbol``, appended to ``assets`` when it first appears (lending books meet tokens as
        they are used)."""
        if symbol not in self.assets:
            self.assets = (*self.assets, symbol)
        return self.assets.index(symbol)

    def at(self, step: int, round_: int, t_s: float) -> None:
        """Set the time stamp of the following records."""
        self.step, self.round, self.t_s = step, round_, t_s

    def transfer(self, kind: str, asset: int, payer, payee, amount, usd_price: float) -> None:
        """Record transfers ``payer -> payee`` of ``amount`` units of ``asset``; a negative amount flows the other way.

        Args:
            kind: What the transfer is for (``liquidation_pnl``, ``clearance_fee``, ``funding`` ...).
            asset: Asset index.
            payer, payee: int party id or int64 array ``(n,)``.
            amount: float or float64 array ``(n,)`` in asset units; zeros are not recorded.
            usd_price: USD per asset unit at the time (the valuation kept beside the amount); NaN when unknown.
        """
        amt = np.atleast_1d(np.asarray(amount, dtype=np.float64))
        n = amt.size
        payer = np.broadcast_to(np.asarray(payer, dtype=np.int64), (n,))
        payee = np.broadcast_to(np.asarray(payee, dtype=np.int64), (n,))
        keep = amt != 0
        if not keep.any():
            return
        amt, payer, payee = amt[keep], payer[keep], payee[keep]
        neg = amt < 0
        src = np.where(neg, payee, payer)
        dst = np.where(neg, payer, payee)
        a = np.abs(amt)
        self._chunks.append((self.step, self.round, self.t_s, kind, int(asset), src, dst, a, a * float(usd_price)))

    def __len__(self) -> int:
        return sum(c[5].size for c in self._chunks)

    def net_flows(self) -> dict[tuple[int, int], float]:
        """Net amount received by each (party, asset), in asset units: inflows minus outflows."""
        if not self._chunks:
            return {}
        src = np.concatenate([c[5] for c in self._chunks])
        dst = np.concatenate([c[6] for c in self._chunks])
        amt = np.concatenate([c[7] for c in self._chunks])
        asset = np.concatenate([np.full(c[5].size, c[4], np.int64) for c in self._chunks])
        parties = np.concatenate([src, dst])
        assets2 = np.concatenate([asset, asset])
        keys, inv = np.unique(np.stack([parties, assets2], axis=1), axis=0, return_inverse=True)
        inv = inv.ravel()
        signed = np.concatenate([-amt, amt])
        order = np.argsort(inv, kind="stable")
        bounds = np.searchsorted(inv[order], np.arange(keys.shape[0] + 1))
        vals = signed[order]
        # exact sums per (party, asset): a party's flows can reach 1e10 USD, where running float sums drift
        return {(int(p), int(k)): math.fsum(vals[bounds[j]:bounds[j + 1]].tolist())
                for j, (p, k) in enumerate(keys)}

    def imbalance_by_asset(self) -> dict[str, float]:
        """Sum of net flows per asset (0 by construction of double entry; a check of the records themselves)."""
        per: dict[int, list[float]] = {k: [] for k in range(len(self.assets))}
        for (_, k), v in self.net_flows().items():
            per[k].append(v)
        return {self.assets[k]: math.fsum(v) for k, v in per.items()}

    def to_table(self) -> pa.Table:
        """Transfers: seq, step, round, t_s, kind, asset, from_party, to_party, from_name, to_name, amount, value_usd."""
        if not self._chunks:
            z = np.zeros(0)
            zi = np.zeros(0, np.int64)
            return pa.table({"seq": zi, "step": zi.astype(np.int32), "round": zi.astype(np.int32), "t_s": z,
                             "kind": pa.array([], pa.string()), "asset": pa.array([], pa.string()),
                             "from_party": zi, "to_party": zi, "from_name": pa.array([], pa.string()),
                             "to_name": pa.array([], pa.string()), "amount": z, "value_usd": z})
        sizes = [c[5].size for c in self._chunks]
        src = np.concatenate([c[5] for c in self._chunks])
        dst = np.concatenate([c[6] for c in self._chunks])
        names = {p: party_name(p) for p in np.unique(np.concatenate([src, dst])).tolist()}
        return pa.table({
            "seq": np.arange(src.size, dtype=np.int64),
            "step": np.repeat([c[0] for c in self._chunks], sizes).astype(np.int32),
            "round": np.repeat([c[1] for c in self._chunks], sizes).astype(np.int32),
            "t_s": np.repeat([c[2] for c in self._chunks], sizes).astype(np.float64),
            "kind": pa.array([c[3] for c, s in zip(self._chunks, sizes, strict=True) for _ in range(s)],
                             pa.string()).dictionary_encode(),
            "asset": pa.array([self.assets[c[4]] for c, s in zip(self._chunks, sizes, strict=True) for _ in range(s)],
                              pa.string()).dictionary_encode(),
            "from_party": src,
            "to_party": dst,
            "from_name": pa.array([names[p] for p in src.tolist()], pa.string()).dictionary_encode(),
            "to_name": pa.array([names[p] for p in dst.tolist()], pa.string()).dictionary_encode(),
            "amount": np.concatenate([c[7] for c in self._chunks]),
            "value_usd": np.concatenate([c[8] for c in self._chunks]),
        })
