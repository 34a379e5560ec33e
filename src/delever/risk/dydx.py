"""dYdX v4 subaccounts over several markets: TNC and TMMR with per-market liquidity tiers, at the oracle.

Sources (dydxprotocol/v4-chain; formulas in :mod:`delever.venues.dydx`, venue-mechanics.md section 5):

* ``protocol/lib/margin/risk.go``: a subaccount's ``Risk`` is the sum over its assets and perpetual positions of
  net collateral (NC), initial (IMR) and maintenance (MMR) requirements; ``IsLiquidatable = MMR > 0 and NC < MMR``
  (``GroupRisk.liquidatable``).
* ``protocol/x/perpetuals/types/liquidity_tier.go``: per position ``MMR = |notional| x IMF x maintenance fraction``
  and ``IMR = |notional| x IMF_eff`` with the open-interest-scaled IMF (``venues.dydx.initial_margin_usd``).
* ``protocol/x/clob/keeper/liquidations.go``: ``GetBankruptcyPriceInQuoteQuantums`` = ``-DNNV - TNC x |DMMR| /
  TMMR`` (the subaccount's collateral shared among its positions in proportion to their maintenance margin) and
  ``GetFillablePrice`` (``venues.dydx.bankruptcy_quote_usd`` / ``fillable_price``).

Every position is valued at the oracle price (``Prices.index``); there is no separate mark. A subaccount is one
account with one cross margin group; its USDC balance in the book is dYdX's USDC asset position plus ``sum q x
entry`` (so that ``TNC = balance + sum q (oracle - entry)`` is dYdX's ``USDC + sum q x oracle``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delever.errors import DeleverInputError
from delever.model.accounts import AccountBook
from delever.risk.base import GroupRisk, Prices, collateral_value_usd, group_sum, position_upnl_usd
from delever.venues import dydx


@dataclass
class DydxRisk:
    """TNC / TMMR / TIMR per subaccount over all its markets.

    Args:
        initial_margin: float64 ``(I,)`` base IMF per instrument (fraction; ``initial_margin_ppm / 1e6``).
        maintenance_fraction: float64 ``(I,)`` maintenance fraction per instrument (``maintenance_fraction_ppm / 1e6``).
        oi_lower_cap_usd, oi_upper_cap_usd: float64 ``(I,)`` the tiers' open-interest caps (0 upper = no scaling);
            None = no scaling.
        open_interest_usd: float64 ``(I,)`` market open interest at the oracle (USD) for the IMF scaling; None = the
            book's own long open interest at the oracle.
        name: Model name.
    """

    initial_margin: np.ndarray
    maintenance_fraction: np.ndarray
    oi_lower_cap_usd: np.ndarray | None = None
    oi_upper_cap_usd: np.ndarray | None = None
    open_interest_usd: np.ndarray | None = None
    name: str = "dydx-v4"

    def __post_init__(self) -> None:
        self.initial_margin = np.asarray(self.initial_margin, dtype=np.float64)
        self.maintenance_fraction = np.asarray(self.maintenance_fraction, dtype=np.float64)
        n = self.initial_margin.size
        if self.maintenance_fraction.shape != (n,) or n == 0:
            raise DeleverInputError("dydx risk model: initial_margin and maintenance_fraction need one value per instrument")
        bad = ~((self.initial_margin > 0) & (self.initial_margin <= 1) & (self.maintenance_fraction > 0)
                & (self.maintenance_fraction <= 1))
        if bad.any():
            raise DeleverInputError(f"dydx risk model: instrument {int(np.flatnonzero(bad)[0])}: IMF and maintenance "
                                    "fraction must be in (0, 1]")
        zeros = np.zeros(n)
        self.oi_lower_cap_usd = zeros if self.oi_lower_cap_usd is None else np.asarray(self.oi_lower_cap_usd, np.float64)
        self.oi_upper_cap_usd = zeros if self.oi_upper_cap_usd is None else np.asarray(self.oi_upper_cap_usd, np.float64)

    def position_requirement(self, instrument: np.ndarray, qty: np.ndarray, price: np.ndarray,
                             open_interest_usd: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(MMR, IMR)`` in USD of positions at ``price`` (the oracle), linear contracts.

        Args:
            instrument: int32 ``(P,)``. qty: float64 ``(P,)`` signed base units. price: float64 ``(P,)``.
            open_interest_usd: float64 ``(I,)`` market OI for the IMF scaling; default the model's, else none.
        """
        ins = np.asarray(instrument)
        notional = np.abs(np.asarray(qty, dtype=np.float64)) * np.asarray(price, dtype=np.float64)
        imf = self.initial_margin[ins]
        mm = notional * dydx.maintenance_margin_rate(imf, self.maintenance_fraction[ins])
        oi = open_interest_usd if open_interest_usd is not None else self.open_interest_usd
        oi_i = np.zeros(ins.size) if oi is None else np.asarray(oi, dtype=np.float64)[ins]
        im = dydx.initial_margin_usd(notional, imf, oi_i, self.oi_lower_cap_usd[ins], self.oi_upper_cap_usd[ins])
        return mm, im

    def evaluate(self, book: AccountBook, prices: Prices) -> GroupRisk:
        """TNC (``equity_usd``), TMMR (``maint_usd``) and TIMR (``initial_usd``) per subaccount at the oracle."""
        oracle = Prices(prices.index, prices.index, prices.asset_usd)   # dYdX margins at the oracle only
        ins = book.pos_instrument
        oi = self.open_interest_usd
        if oi is None:
            oi = book.open_interest_qty()[:, 0] * prices.index
        mm, im = self.position_requirement(ins, book.pos_qty, prices.index[ins], oi)
        upnl = position_upnl_usd(book, oracle)
        tnc = collateral_value_usd(book, oracle) + group_sum(book, upnl)
        notional = np.abs(book.pos_qty) * prices.index[ins]
        return GroupRisk(tnc, group_sum(book, mm), group_sum(book, im), upnl, mm, notional)

    def bankruptcy_quote_usd(self, book: AccountBook, prices: Prices, delta_qty: np.ndarray,
                             quote_quantum: float | None = None) -> np.ndarray:
        """Quote each position's subaccount must receive for ``delta_qty`` of it to end at zero TNC (signed, USD).

        ``-DNNV - TNC x |DMMR| / TMMR`` with the subaccount's TNC / TMMR over all its positions
        (``GetBankruptcyPriceInQuoteQuantums``); ``DMMR`` = MMR after minus before the delta.

        Args:
            delta_qty: float64 ``(P,)`` signed change of each position (opposite to it, at most its size).
            quote_quantum: USD per quote quantum (1e-6) to round as the Go code does, None for reals.

        Raises:
            DeleverInputError: a delta that does not reduce its position (``ErrInvalidPerpetualPositionSizeDelta``).
        """
        d = np.asarray(delta_qty, dtype=np.float64)
        bad = (d != 0) & ~dydx.valid_position_delta(book.pos_qty, d)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DeleverInputError(f"{self.name}: position {i + 1}: delta {d[i]!r} does not reduce position "
                                    f"{book.pos_qty[i]!r} without flipping it")
        r = self.evaluate(book, prices)
        ins = book.pos_instrument
        p = prices.index[ins]
        mm_after, _ = self.position_requirement(ins, book.pos_qty + d, p)
        g = book.pos_group
        return dydx.bankruptcy_quote_usd(d * p, np.abs(mm_after - r.pos_maint_usd), r.equity_usd[g], r.maint_usd[g],
                                         quote_quantum)

    def bankruptcy_price(self, book: AccountBook, prices: Prices, delta_qty: np.ndarray | None = None,
                         quote_quantum: float | None = None) -> np.ndarray:
        """Bankruptcy price (USD per base unit) of closing ``delta_qty`` (default: each whole position).

        ``-bankruptcy quote / delta``; NaN where the delta is 0.
        """
        d = -book.pos_qty if delta_qty is None else np.asarray(delta_qty, dtype=np.float64)
        quote = self.bankruptcy_quote_usd(book, prices, d, quote_quantum)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(d != 0, -quote / d, np.nan)

    def fillable_price(self, book: AccountBook, prices: Prices, bankruptcy_adjustment: float,
                       spread_to_mmr: float) -> np.ndarray:
        """Fillable price of each position's liquidation order (``GetFillablePrice``), USD per base unit.

        Args:
            bankruptcy_adjustment: BA (``bankruptcy_adjustment_ppm / 1e6``).
            spread_to_mmr: SMMR (``spread_to_maintenance_margin_ratio_ppm / 1e6``).
        """
        r = self.evaluate(book, prices)
        g = book.pos_group
        return dydx.fillable_price(book.pos_qty, prices.index[book.pos_instrument], r.pos_maint_usd, r.equity_usd[g],
                                   r.maint_usd[g], bankruptcy_adjustment, spread_to_mmr)
