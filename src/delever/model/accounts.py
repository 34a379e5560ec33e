"""The account book: accounts, margin groups, positions and balances as a struct of arrays.

Structure (venue-mechanics.md: "Cross = account level; isolated = per position"):

* an **account** (``A`` rows) is one user / subaccount;
* a **margin group** (``G`` rows) is what a venue checks against maintenance margin: the account's cross wallet
  (every cross position of the account, and its cross collateral) or one isolated position with its own margin;
  dYdX v4 subaccounts and Drift users are accounts with one cross group;
* a **position** (``P`` rows) is one net position (one-way mode) of a margin group in an instrument, signed;
* a **balance** is a margin group's amount of an asset (``(G, K)``): collateral when positive, a debt when negative
  (room for borrow-enabled unified accounts and lending loans).

Arrays are owned by the book and mutated in place by the engine's own copy (:meth:`AccountBook.copy`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delever.errors import DeleverInputError
from delever.model.instruments import InstrumentRegistry


@dataclass
class AccountBook:
    """Accounts with several instruments and collaterals.

    Attributes:
        registry: Instruments and assets (codes used below).
        account_id: int64 ``(A,)`` external account ids, unique.
        group_account: int64 ``(G,)`` row of the owning account.
        group_isolated: bool ``(G,)`` True for an isolated margin group (exactly one position).
        pos_group: int64 ``(P,)`` row of the position's margin group.
        pos_instrument: int32 ``(P,)`` instrument code.
        pos_qty: float64 ``(P,)`` signed quantity (+ long): base units (linear) or contracts (inverse).
        pos_entry_price: float64 ``(P,)`` average entry price, quote per base unit.
        balance: float64 ``(G, K)`` amount of each asset held by each margin group, asset units.
    """

    registry: InstrumentRegistry
    account_id: np.ndarray
    group_account: np.ndarray
    group_isolated: np.ndarray
    pos_group: np.ndarray
    pos_instrument: np.ndarray
    pos_qty: np.ndarray
    pos_entry_price: np.ndarray
    balance: np.ndarray

    def __post_init__(self) -> None:
        self.account_id = np.ascontiguousarray(self.account_id, dtype=np.int64)
        self.group_account = np.ascontiguousarray(self.group_account, dtype=np.int64)
        self.group_isolated = np.ascontiguousarray(self.group_isolated, dtype=bool)
        self.pos_group = np.ascontiguousarray(self.pos_group, dtype=np.int64)
        self.pos_instrument = np.ascontiguousarray(self.pos_instrument, dtype=np.int32)
        self.pos_qty = np.ascontiguousarray(self.pos_qty, dtype=np.float64)
        self.pos_entry_price = np.ascontiguousarray(self.pos_entry_price, dtype=np.float64)
        self.balance = np.ascontiguousarray(np.asarray(self.balance, dtype=np.float64).reshape(
            self.group_account.size, len(self.registry.assets)))

    # ------------------------------------------------------------------ shape
    @property
    def n_accounts(self) -> int:
        return int(self.account_id.size)

    @property
    def n_groups(self) -> int:
        return int(self.group_account.size)

    @property
    def n_positions(self) -> int:
        return int(self.pos_qty.size)

    @property
    def pos_account(self) -> np.ndarray:
        """int64 ``(P,)`` account row of each position."""
        return self.group_account[self.pos_group]

    def instruments_per_account(self) -> np.ndarray:
        """int64 ``(A,)`` number of distinct instruments an account holds open positions in."""
        open_ = self.pos_qty != 0
        key = np.unique(self.pos_account[open_] * len(self.registry) + self.pos_instrument[open_])
        return np.bincount(key // len(self.registry), minlength=self.n_accounts)

    def open_interest_qty(self) -> np.ndarray:
        """float64 ``(I, 2)``: long and short open interest per instrument (quantity units)."""
        n = len(self.registry)
        q = self.pos_qty
        long_ = np.bincount(self.pos_instrument, weights=np.maximum(q, 0.0), minlength=n)
        short = np.bincount(self.pos_instrument, weights=np.maximum(-q, 0.0), minlength=n)
        return np.stack([long_, short], axis=1)

    # ------------------------------------------------------------------ checks
    def validate(self, source: str = "account book") -> AccountBook:
        """Check shapes, references and values; raise on the first bad row.

        Raises:
            DeleverInputError: empty book, mismatched lengths, a position or group pointing at no group / account,
                an unknown instrument code, a NaN or non-positive entry price, a zero or non-finite quantity, a
                non-finite balance, a duplicated account id, an isolated group with other than one position, or
                two positions of one margin group in the same instrument (one-way mode).
        """
        A, G, P = self.n_accounts, self.n_groups, self.n_positions
        if P == 0:
            raise DeleverInputError(f"{source}: the book has no positions (expected at least one)")
        for name, n in (("group_isolated", G), ("pos_instrument", P), ("pos_qty", P), ("pos_entry_price", P)):
            if getattr(self, name).shape != (n,):
                raise DeleverInputError(f"{source}: column {name!r} has {getattr(self, name).shape[0]} rows, expected {n}")
        checks = (
            ("group_account", (self.group_account < 0) | (self.group_account >= A), f"an account row in [0, {A})"),
            ("pos_group", (self.pos_group < 0) | (self.pos_group >= G), f"a margin group row in [0, {G})"),
            ("pos_instrument", (self.pos_instrument < 0) | (self.pos_instrument >= len(self.registry)),
             f"an instrument code in [0, {len(self.registry)})"),
            ("pos_qty", ~(np.isfinite(self.pos_qty) & (self.pos_qty != 0)), "a finite non-zero signed quantity"),
            ("pos_entry_price", ~(np.isfinite(self.pos_entry_price) & (self.pos_entry_price > 0)), "a finite price > 0"),
        )
        for name, bad, expected in checks:
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise DeleverInputError(f"{source}: row {i + 1}: field {name!r} is {getattr(self, name)[i].item()!r}, "
                                        f"expected {expected}")
        if not np.isfinite(self.balance).all():
            g = int(np.flatnonzero(~np.isfinite(self.balance).all(axis=1))[0])
            raise DeleverInputError(f"{source}: margin group {g + 1}: a balance is not finite")
        uniq, counts = np.unique(self.account_id, return_counts=True)
        if (counts > 1).any():
            raise DeleverInputError(f"{source}: account id {int(uniq[np.argmax(counts > 1)])} is listed twice")
        per_group = np.bincount(self.pos_group, minlength=G)
        bad_iso = self.group_isolated & (per_group != 1)
        if bad_iso.any():
            g = int(np.flatnonzero(bad_iso)[0])
            raise DeleverInputError(f"{source}: isolated margin group {g + 1} of account "
                                    f"{int(self.account_id[self.group_account[g]])} holds {int(per_group[g])} positions, "
                                    "expected exactly 1")
        key = self.pos_group * len(self.registry) + self.pos_instrument
        uk, kc = np.unique(key, return_counts=True)
        if (kc > 1).any():
            k = int(uk[np.argmax(kc > 1)])
            g, i = divmod(k, len(self.registry))
            raise DeleverInputError(f"{source}: account {int(self.account_id[self.group_account[g]])} has "
                                    f"{int(kc.max())} positions in {self.registry.symbols[i]} in one margin group; "
                                    "delever models one-way mode (one net position per margin group and instrument)")
        return self

    def copy(self) -> AccountBook:
        """Deep copy of every array (the engine mutates its own copy); the registry is shared (immutable)."""
        return AccountBook(self.registry, self.account_id.copy(), self.group_account.copy(), self.group_isolated.copy(),
                           self.pos_group.copy(), self.pos_instrument.copy(), self.pos_qty.copy(),
                           self.pos_entry_price.copy(), self.balance.copy())

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_rows(cls, registry: InstrumentRegistry, account: np.ndarray, instrument: np.ndarray, qty: np.ndarray,
                  entry_price: np.ndarray, isolated: np.ndarray, collateral: np.ndarray, collateral_asset: np.ndarray,
                  source: str = "account book") -> AccountBook:
        """Build a book from one row per position (the CSV / Parquet / ccxt layout).

        Cross rows of one account share the account's cross group; their ``collateral`` values are the account's
        cross balance in ``collateral_asset`` and must agree (the same wallet repeated on each row), or be given on
        one row and 0 on the others. Isolated rows get a group each with their own margin.

        Args:
            registry: Instruments and assets.
            account: int64 ``(R,)`` external account id.
            instrument: int32 ``(R,)`` instrument code.
            qty: float64 ``(R,)`` signed quantity.
            entry_price: float64 ``(R,)``.
            isolated: bool ``(R,)``.
            collateral: float64 ``(R,)`` isolated margin, or the account's cross balance, in ``collateral_asset``.
            collateral_asset: int32 ``(R,)`` asset code of ``collateral``.
            source: Name used in errors.

        Raises:
            DeleverInputError: conflicting cross balances for one account and asset, negative collateral, or any
                check of :meth:`validate`.
        """
        account = np.asarray(account, dtype=np.int64)
        R = account.size
        isolated = np.asarray(isolated, dtype=bool)
        collateral = np.asarray(collateral, dtype=np.float64)
        collateral_asset = np.asarray(collateral_asset, dtype=np.int32)
        bad = ~(np.isfinite(collateral) & (collateral >= 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DeleverInputError(f"{source}: row {i + 1}: field 'collateral' is {collateral[i]!r}, expected a finite "
                                    "amount >= 0")
        acc_ids, acc_row = np.unique(account, return_inverse=True)
        # group ids: cross groups first (one per account with a cross row), then one per isolated row
        cross_acc = np.unique(acc_row[~isolated])
        cross_group_of = np.full(acc_ids.size, -1, dtype=np.int64)
        cross_group_of[cross_acc] = np.arange(cross_acc.size)
        n_iso = int(isolated.sum())
        group = np.empty(R, dtype=np.int64)
        group[~isolated] = cross_group_of[acc_row[~isolated]]
        group[isolated] = cross_acc.size + np.arange(n_iso)
        group_account = np.concatenate([cross_acc, acc_row[isolated]]).astype(np.int64)
        group_isolated = np.concatenate([np.zeros(cross_acc.size, bool), np.ones(n_iso, bool)])
        K = len(registry.assets)
        balance = np.zeros((group_account.size, K))
        iso_rows = np.flatnonzero(isolated)
        balance[group[iso_rows], collateral_asset[iso_rows]] = collateral[iso_rows]
        cross_rows = np.flatnonzero(~isolated)
        if cross_rows.size:
            g, a, c = group[cross_rows], collateral_asset[cross_rows], collateral[cross_rows]
            np.maximum.at(balance, (g, a), c)
            given = c > 0
            mismatch = given & ~np.isclose(c, balance[g, a], rtol=1e-12, atol=0.0)
            if mismatch.any():
                r = int(cross_rows[np.flatnonzero(mismatch)[0]])
                raise DeleverInputError(
                    f"{source}: row {r + 1}: account {int(account[r])} gives cross collateral {collateral[r]!r} in "
                    f"{registry.assets.symbols[collateral_asset[r]]} but another row of the account gives "
                    f"{balance[group[r], collateral_asset[r]]!r}; the cross wallet is one balance per account and asset")
        return cls(registry, acc_ids, group_account, group_isolated, group, np.asarray(instrument, np.int32),
                   np.asarray(qty, np.float64), np.asarray(entry_price, np.float64), balance).validate(source)
