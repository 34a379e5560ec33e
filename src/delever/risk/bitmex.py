"""BitMEX cross and isolated margin on inverse (coin-margined) contracts with risk-limit steps.

Sources (stored copies; venue-mechanics.md section 2, formulas in :mod:`delever.venues.bitmex`):

* bitmex.com/app/riskLimitsExamples: "At each step, the maintenance and initial margin are raised by the base
  maintenance margin" -- XBTUSD base MM 0.50 %, IM 1.00 %, base risk limit 200 XBT, step 150 XBT
  (:data:`XBTUSD_RISK_LIMIT`; ``venues.bitmex.risk_limit_margins``).
* Inverse contracts (BitMEX "Inverse contracts"; ``model.instruments``): margin, PnL and risk limits in XBT; position
  value ``|qty| x contract size / price`` XBT, PnL ``qty x contract size x (1/entry - 1/mark)`` XBT.
* Maintenance margin on the position's entry value: "For the XBTUSD contract the maintenance margin can be
  calculated using the following equation: 0.5% * Order Value + (Taker Fee * Order Value) + ..." (BitMEX staff
  on r/BitMEX, 2020-03-09); support.bitmex.com 18589433891997: "Position Margin = Entry Value / Leverage +
  Unrealised PnL ... Unrealised losses are deducted from position margin until only the maintenance margin
  remains". The risk-limit step is taken at the same entry value [U]. ``taker_fee_rate`` adds the fee reserve.
* bitmex.com/app/liquidationExamples: long at 100.00, 1 % initial / 0.5 % maintenance margin -> liquidation 99.50.
  Cross margin: the whole available balance backs the account's positions ("all available balance" is margin).

Isolated = a margin group with one position and its own XBT; cross = the account's group over its positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delever.errors import DeleverInputError
from delever.model.accounts import AccountBook
from delever.risk.base import (
    GroupRisk,
    Prices,
    collateral_value_usd,
    group_sum,
    position_notional_usd,
    position_upnl_usd,
)
from delever.venues.bitmex import risk_limit_margins

# riskLimitsExamples (~2021 page): base MM 0.50 %, base IM 1.00 %, base risk limit 200 XBT, step 150 XBT.
XBTUSD_RISK_LIMIT = {"base_mmr": 0.005, "base_imr": 0.01, "base_risk_limit": 200.0, "risk_step": 150.0}


@dataclass
class InverseRiskLimitRisk:
    """Risk-limit steps per instrument, margins in the settlement coin on entry value.

    Args:
        base_mmr, base_imr: float64 ``(I,)`` base maintenance / initial margin rates.
        base_risk_limit, risk_step: float64 ``(I,)`` in settlement-coin value (XBT).
        taker_fee_rate: fee reserve added to the maintenance rate (0 in the liquidationExamples).
        name: Model name.
    """

    base_mmr: np.ndarray
    base_imr: np.ndarray
    base_risk_limit: np.ndarray
    risk_step: np.ndarray
    taker_fee_rate: float = 0.0
    name: str = "bitmex"

    def __post_init__(self) -> None:
        for f in ("base_mmr", "base_imr", "base_risk_limit", "risk_step"):
            setattr(self, f, np.atleast_1d(np.asarray(getattr(self, f), dtype=np.float64)))
        n = self.base_mmr.size
        if any(getattr(self, f).shape != (n,) for f in ("base_imr", "base_risk_limit", "risk_step")):
            raise DeleverInputError("bitmex risk model: one base MM, base IM, base risk limit and step per instrument")
        if (self.base_mmr <= 0).any() or (self.base_imr < self.base_mmr).any() or (self.risk_step <= 0).any():
            raise DeleverInputError("bitmex risk model: need 0 < base MM <= base IM and a risk step > 0")

    @classmethod
    def xbtusd(cls, n_instruments: int = 1, taker_fee_rate: float = 0.0) -> InverseRiskLimitRisk:
        """Every instrument on the XBTUSD risk limits of :data:`XBTUSD_RISK_LIMIT`."""
        v = XBTUSD_RISK_LIMIT
        return cls(*(np.full(n_instruments, v[k]) for k in ("base_mmr", "base_imr", "base_risk_limit", "risk_step")),
                   taker_fee_rate=taker_fee_rate)

    def position_requirement(self, instrument: np.ndarray, qty: np.ndarray, price: np.ndarray,
                             contract_size: np.ndarray | float = 1.0, inverse: np.ndarray | bool = True,
                             asset_usd: np.ndarray | float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """``(maintenance, initial)`` requirement of positions valued at ``price`` (their entry), in USD.

        Args:
            instrument: int32 ``(P,)``. qty: float64 ``(P,)`` contracts. price: float64 ``(P,)`` entry price.
            contract_size: USD face value per contract (inverse) or base units (linear).
            inverse: whether each position is inverse (value ``|q| cs / price`` coin) or linear (``|q| cs price``).
            asset_usd: USD price of the settlement coin (1 returns coin units).
        """
        ins = np.asarray(instrument)
        q = np.abs(np.asarray(qty, dtype=np.float64)) * contract_size
        p = np.asarray(price, dtype=np.float64)
        value = np.where(inverse, q / p, q * p)
        mmr, imr, _ = risk_limit_margins(value, self.base_mmr[ins], self.base_imr[ins], self.base_risk_limit[ins],
                                         self.risk_step[ins])
        scale = np.asarray(asset_usd, dtype=np.float64)
        return value * (mmr + self.taker_fee_rate) * scale, value * imr * scale

    def evaluate(self, book: AccountBook, prices: Prices) -> GroupRisk:
        """Margin balance (collateral + uPnL at mark) and entry-value requirements per margin group, USD."""
        reg = book.registry
        ins = book.pos_instrument
        settle_usd = prices.asset_usd[reg.settle_code[ins]]
        mm, im = self.position_requirement(ins, book.pos_qty, book.pos_entry_price, reg.contract_size[ins],
                                           reg.inverse[ins], settle_usd)
        upnl = position_upnl_usd(book, prices)
        equity = collateral_value_usd(book, prices) + group_sum(book, upnl)
        return GroupRisk(equity, group_sum(book, mm), group_sum(book, im), upnl, mm, position_notional_usd(book, prices))

    def liquidation_price(self, book: AccountBook, prices: Prices) -> np.ndarray:
        """Mark of each inverse position at which its group's margin balance reaches maintenance, others fixed.

        With MM on entry value the requirement does not move with the mark; in the settlement coin
        ``W' + q cs (1/entry - 1/P) = MM`` gives ``P = q cs / (W' - MM + q cs / entry)`` where ``W'`` is the group's
        margin balance less this position's uPnL, in that coin (the coin's USD price held fixed). NaN where no
        positive price reaches maintenance (a short whose margin covers its whole value) and for linear positions.

        Returns:
            float64 ``(P,)``.
        """
        reg = book.registry
        ins = book.pos_instrument
        r = self.evaluate(book, prices)
        coin_usd = prices.asset_usd[reg.settle_code[ins]]
        g = book.pos_group
        w = (r.equity_usd[g] - r.pos_upnl_usd - r.maint_usd[g]) / coin_usd
        qcs = book.pos_qty * reg.contract_size[ins]
        den = w + qcs / book.pos_entry_price
        with np.errstate(divide="ignore", invalid="ignore"):
            lp = qcs / den
        ok = reg.inverse[ins] & (qcs != 0) & np.isfinite(lp) & (lp > 0)
        return np.where(ok, lp, np.nan)
