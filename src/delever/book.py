"""Position book: one leveraged position per account and instrument, as a struct of arrays.

delever models one-way position mode (one net position per account and instrument, as Binance's
default mode and Hyperliquid), so a row is both a position and the account holding it.
``collateral_usd`` is the isolated margin of an isolated position, or the cross wallet balance
backing a cross position; with one instrument both back exactly one position, and the margin mode
matters for how a backstop takes the account over (see ``venues``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delever.errors import DeleverInputError

LONG = 1
SHORT = -1


@dataclass
class PositionBook:
    """Leveraged positions of one instrument, struct of arrays (all shape ``(N,)``).

    Attributes:
        instrument: Instrument symbol, e.g. ``"BTCUSDT"``.
        account: int64 account ids, unique (one-way mode).
        side: int8, +1 long / -1 short.
        qty: float64 position size in base units (BTC), > 0.
        entry_price: float64 average entry price, USD per base unit, > 0.
        collateral_usd: float64 isolated margin or cross wallet balance, USD, >= 0.
        cross: bool, True for cross margin, False for isolated.
    """

    instrument: str
    account: np.ndarray
    side: np.ndarray
    qty: np.ndarray
    entry_price: np.ndarray
    collateral_usd: np.ndarray
    cross: np.ndarray

    def __post_init__(self) -> None:
        self.account = np.ascontiguousarray(self.account, dtype=np.int64)
        self.side = np.ascontiguousarray(self.side, dtype=np.int8)
        self.qty = np.ascontiguousarray(self.qty, dtype=np.float64)
        self.entry_price = np.ascontiguousarray(self.entry_price, dtype=np.float64)
        self.collateral_usd = np.ascontiguousarray(self.collateral_usd, dtype=np.float64)
        self.cross = np.ascontiguousarray(self.cross, dtype=bool)

    def __len__(self) -> int:
        return int(self.qty.shape[0])

    def validate(self, source: str = "position book") -> PositionBook:
        """Check shapes and values; raise on the first bad row.

        Args:
            source: Name of the file or generator, used in the error message.

        Returns:
            self, for chaining.

        Raises:
            DeleverInputError: empty book, mismatched lengths, NaN or non-positive quantity or
                price, negative collateral, side not +/-1, or a duplicated account.
        """
        n = len(self)
        if n == 0:
            raise DeleverInputError(f"{source}: the position book is empty (expected at least one position)")
        for name in ("account", "side", "entry_price", "collateral_usd", "cross"):
            if getattr(self, name).shape != (n,):
                raise DeleverInputError(f"{source}: column {name!r} has {getattr(self, name).shape[0]} rows, expected {n}")
        checks = (
            ("qty", ~(np.isfinite(self.qty) & (self.qty > 0)), "a finite quantity > 0"),
            ("entry_price", ~(np.isfinite(self.entry_price) & (self.entry_price > 0)), "a finite price > 0"),
            ("collateral_usd", ~(np.isfinite(self.collateral_usd) & (self.collateral_usd >= 0)), "a finite amount >= 0"),
            ("side", ~np.isin(self.side, (LONG, SHORT)), "+1 (long) or -1 (short)"),
        )
        for name, bad, expected in checks:
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise DeleverInputError(
                    f"{source}: row {i + 1}: field {name!r} is {getattr(self, name)[i].item()!r}, expected {expected}"
                )
        uniq, counts = np.unique(self.account, return_counts=True)
        if (counts > 1).any():
            acct = int(uniq[np.argmax(counts > 1)])
            raise DeleverInputError(
                f"{source}: account {acct} has {int(counts.max())} positions in {self.instrument}; delever models "
                "one-way mode (one net position per account and instrument)"
            )
        return self

    def notional_usd(self, price: float) -> np.ndarray:
        """Position notional at ``price`` (USD), float64 ``(N,)``."""
        return self.qty * price

    def copy(self) -> PositionBook:
        """Deep copy (the engine mutates its own copy)."""
        return PositionBook(
            self.instrument, self.account.copy(), self.side.copy(), self.qty.copy(),
            self.entry_price.copy(), self.collateral_usd.copy(), self.cross.copy(),
        )
