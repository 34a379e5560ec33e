"""Assets and instruments, with the contract arithmetic of each instrument kind.

* **linear perpetual / future** (Binance USD-M, Bybit USDT, Hyperliquid, dYdX v4, Drift): quantity in base units
  (``contract_size`` base units per contract unit, 1 for all venues modelled), margin and PnL in the quote
  (settlement) asset: ``PnL = qty x (price - entry) x contract_size``.
* **inverse perpetual / future** (BitMEX XBTUSD, Binance COIN-M, Bybit inverse): quantity in contracts of
  ``contract_size`` USD face value, margin and PnL in the base coin:
  ``PnL_coin = qty x contract_size x (1/entry - 1/price)``; notional in coin ``|qty| x contract_size / price``
  (BitMEX "Inverse contracts", venue-mechanics.md section 2; Binance COIN-M contract specifications: BTCUSD_PERP
  100 USD, others 10 USD).
* **spot** assets are not traded by the engine; they exist as collateral (Binance Multi-Assets mode, Bybit unified
  account) with a USD price taken from an instrument on the same base.

Quantities are signed (+ long, - short).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from delever.errors import DeleverInputError

InstrumentKind = Literal["linear_perp", "inverse_perp", "linear_future", "inverse_future"]
KIND_CODES: dict[str, int] = {"linear_perp": 0, "inverse_perp": 1, "linear_future": 2, "inverse_future": 3}
STABLE_USD = frozenset({"USD", "USDT", "USDC", "FDUSD", "BUSD", "DAI", "USDE"})


@dataclass(frozen=True)
class Asset:
    """A collateral / settlement asset.

    Attributes:
        symbol: ``"USDT"``, ``"USDC"``, ``"BTC"`` ...
        price_from: Symbol of the instrument whose index price is this asset's USD price, or None for an asset
            valued at a fixed ``usd_price`` (stablecoins at 1 USD unless a depeg is simulated).
        usd_price: Fixed USD price when ``price_from`` is None.
    """

    symbol: str
    price_from: str | None = None
    usd_price: float = 1.0


@dataclass(frozen=True)
class Instrument:
    """One tradable contract.

    Attributes:
        symbol: Venue symbol (``"BTCUSDT"``, ``"XBTUSD"``, ``"BTC"`` on Hyperliquid).
        kind: ``linear_perp``, ``inverse_perp``, ``linear_future`` or ``inverse_future``.
        base: Base asset (``"BTC"``).
        settle: Margin and settlement asset (``"USDT"`` for linear, ``"BTC"`` for inverse).
        contract_size: Linear: base units per unit of quantity; inverse: USD face value per contract.
        expiry_s: Seconds from the run's start to expiry for dated futures, None for perpetuals.
    """

    symbol: str
    kind: InstrumentKind = "linear_perp"
    base: str = "BTC"
    settle: str = "USDT"
    contract_size: float = 1.0
    expiry_s: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KIND_CODES:
            raise DeleverInputError(f"instrument {self.symbol!r}: kind {self.kind!r}, expected one of {list(KIND_CODES)}")
        if not (np.isfinite(self.contract_size) and self.contract_size > 0):
            raise DeleverInputError(f"instrument {self.symbol!r}: contract_size {self.contract_size!r}, expected > 0")
        if self.is_inverse and self.settle != self.base:
            raise DeleverInputError(f"instrument {self.symbol!r}: an inverse contract settles in its base asset "
                                    f"{self.base!r}, not {self.settle!r}")

    @property
    def is_inverse(self) -> bool:
        return self.kind.startswith("inverse")


@dataclass
class AssetRegistry:
    """Assets by integer code (the column of ``AccountBook.balance``)."""

    assets: tuple[Asset, ...]
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.index = {}
        for k, a in enumerate(self.assets):
            if a.symbol in self.index:
                raise DeleverInputError(f"asset {a.symbol!r} is listed twice")
            self.index[a.symbol] = k

    def __len__(self) -> int:
        return len(self.assets)

    def code(self, symbol: str) -> int:
        try:
            return self.index[symbol]
        except KeyError:
            raise DeleverInputError(f"unknown asset {symbol!r} (known: {', '.join(self.index)})") from None

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(a.symbol for a in self.assets)


@dataclass
class InstrumentRegistry:
    """Instruments by integer code (``AccountBook.pos_instrument``) with their assets.

    Attributes:
        instruments: The instruments, code = position in the tuple.
        assets: Every settlement asset, plus extra collateral assets.
        settle_code: int32 ``(I,)`` asset code of each instrument's settlement asset.
        inverse: bool ``(I,)``.
        contract_size: float64 ``(I,)``.
    """

    instruments: tuple[Instrument, ...]
    assets: AssetRegistry
    index: dict[str, int] = field(init=False)
    settle_code: np.ndarray = field(init=False)
    inverse: np.ndarray = field(init=False)
    contract_size: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if not self.instruments:
            raise DeleverInputError("at least one instrument is required")
        self.index = {}
        for i, ins in enumerate(self.instruments):
            if ins.symbol in self.index:
                raise DeleverInputError(f"instrument {ins.symbol!r} is listed twice")
            self.index[ins.symbol] = i
        self.settle_code = np.array([self.assets.code(i.settle) for i in self.instruments], dtype=np.int32)
        self.inverse = np.array([i.is_inverse for i in self.instruments], dtype=bool)
        self.contract_size = np.array([i.contract_size for i in self.instruments], dtype=np.float64)
        for a in self.assets.assets:
            if a.price_from is not None and a.price_from not in self.index:
                raise DeleverInputError(f"asset {a.symbol!r}: price_from {a.price_from!r} is not an instrument of the run")

    @classmethod
    def linear(cls, symbols: list[str] | tuple[str, ...], settle: str = "USDT",
               extra_assets: tuple[Asset, ...] = ()) -> InstrumentRegistry:
        """Linear perpetuals settled in one stable asset (the common case), bases guessed from the symbols."""
        instruments = tuple(Instrument(s, "linear_perp", base_of(s, settle), settle) for s in symbols)
        assets = (Asset(settle),) + tuple(a for a in extra_assets if a.symbol != settle)
        return cls(instruments, AssetRegistry(assets))

    def __len__(self) -> int:
        return len(self.instruments)

    def code(self, symbol: str) -> int:
        try:
            return self.index[symbol]
        except KeyError:
            raise DeleverInputError(f"unknown instrument {symbol!r} (known: {', '.join(self.index)})") from None

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(i.symbol for i in self.instruments)

    # ------------------------------------------------------------------ contract arithmetic
    def pnl_settle(self, instrument: np.ndarray, qty: np.ndarray, entry: np.ndarray, price: np.ndarray) -> np.ndarray:
        """Unrealized PnL in each position's settlement asset at ``price``.

        Args:
            instrument: int32 ``(P,)`` instrument codes.
            qty: float64 ``(P,)`` signed quantity (linear: base units x contract size; inverse: contracts).
            entry: float64 ``(P,)`` entry price, quote per base.
            price: float64 ``(P,)`` price to value at (mark or a fill price), quote per base.

        Returns:
            float64 ``(P,)``: linear ``qty x cs x (price - entry)`` (quote asset); inverse
            ``qty x cs x (1/entry - 1/price)`` (base coin).
        """
        cs = self.contract_size[instrument]
        inv = self.inverse[instrument]
        lin = qty * cs * (price - entry)
        with np.errstate(divide="ignore", invalid="ignore"):
            coin = qty * cs * (1.0 / entry - 1.0 / price)
        return np.where(inv, coin, lin)

    def pnl_from_fill(self, instrument: np.ndarray, qty: np.ndarray, entry: np.ndarray,
                      notional_quote: np.ndarray) -> np.ndarray:
        """PnL (settlement asset) realized by closing ``qty`` (signed: the closed position's sign) for ``notional_quote``.

        Linear: ``sign(qty) x (notional - |qty| x cs x entry)``, the fill's quote value against its entry value, with
        no division by the fill quantity (the VWAP stays implicit). Inverse contracts are not filled through quote
        notional here (NaN).

        Returns:
            float64 ``(P,)``.
        """
        cs = self.contract_size[instrument]
        lin = np.sign(qty) * (notional_quote - np.abs(qty) * cs * entry)
        return np.where(self.inverse[instrument], np.nan, lin)

    def notional_settle(self, instrument: np.ndarray, qty: np.ndarray, price: np.ndarray) -> np.ndarray:
        """Absolute notional in the settlement asset: linear ``|qty| cs price``, inverse ``|qty| cs / price``."""
        cs = self.contract_size[instrument]
        return np.where(self.inverse[instrument], np.abs(qty) * cs / price, np.abs(qty) * cs * price)

    def notional_usd(self, instrument: np.ndarray, qty: np.ndarray, price: np.ndarray) -> np.ndarray:
        """Absolute notional in USD-like quote units: linear ``|qty| cs price``, inverse ``|qty| cs`` (face value)."""
        cs = self.contract_size[instrument]
        return np.where(self.inverse[instrument], np.abs(qty) * cs, np.abs(qty) * cs * price)


def base_of(symbol: str, settle: str) -> str:
    """Base asset of a symbol: ``BTCUSDT`` -> ``BTC``, ``SOL-PERP`` -> ``SOL``, ``BTC-USD`` -> ``BTC``, ``ETH`` -> ``ETH``."""
    s = symbol.upper()
    for suffix in ("-PERP", "_PERP", "-USD", "/USD"):
        if s.endswith(suffix):
            s = s[: -len(suffix)]
    if s.endswith(settle.upper()) and len(s) > len(settle):
        s = s[: -len(settle)]
    for quote in ("USDT", "USDC", "USD"):
        if s.endswith(quote) and len(s) > len(quote):
            return s[: -len(quote)]
    return s
