"""Binance USD-M Multi-Assets mode: one cross wallet over several margin assets, valued at bid / ask rates.

Sources (Binance FAQ, stored copies):

* c983a9268cfa4e70a4916c276bb3b7bc "How to Calculate Margin Ratio in the Multi-Assets Mode?" (2022-07-06):
  ``Account Equity = sum min(assetEquity x bidRate, assetEquity x askRate)``; ``Account Maintenance Margin`` = sum
  of the cross positions' maintenance margin in USD, each converted at its margin asset's **ask** rate (the worked
  example: ``0.5 x 20,000 x 0.008 x 0.99495 + 20 x 600 x 0.01 x 1 = 199.596``); ``Margin Ratio = Account MM /
  Account Equity``, liquidation of all positions at 100 %. ``bidRate = index x (1 - bid buffer)``, ``askRate =
  index x (1 + ask buffer)`` (USDTUSD index 0.99, buffers 0.01 / 0.005 -> 0.9801 / 0.99495).
* 29b45c485d664028b9ca1cdf90b24f6f "What Is Multi-Assets Mode" (2021-05-28): the collateral value ratio table
  (:data:`COLLATERAL_VALUE_RATIO_2021_05_28`): "BTC, ETH, and BNB used as margin in multi-asset mode will receive a
  5% value haircut. XRP, DOT, and ADA ... 10%". Only Cross Margin mode. Current ratios are on Binance's
  Multi-Assets Info page and change [U: not verified after 2021-05-28].

``assetEquity`` is the asset's wallet balance plus the unrealized PnL of the positions settled in it, so a
position's loss eats its margin asset before the haircut applies; a negative asset equity (a debt) is valued at the
ask rate, i.e. in full and more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from delever.errors import DeleverInputError
from delever.model.accounts import AccountBook
from delever.model.instruments import AssetRegistry
from delever.risk.base import GroupRisk, Prices, group_sum, position_notional_usd
from delever.risk.tiered import TieredRisk

# "Collateral Value Ratio" column of the 2021-05-28 FAQ table (fraction of the index value counted as margin).
COLLATERAL_VALUE_RATIO_2021_05_28: dict[str, float] = {
    "BTC": 0.95, "ETH": 0.95, "BNB": 0.95, "XRP": 0.90, "ADA": 0.90, "DOT": 0.90, "SOL": 0.90,
    "USDT": 0.9999, "BUSD": 1.0, "USDC": 0.9999,
}


def haircuts_from_ratios(assets: AssetRegistry, ratios: Mapping[str, float], source: str = "collateral ratios") -> np.ndarray:
    """Haircut ``1 - ratio`` per asset code: float64 ``(K,)``.

    Raises:
        DeleverInputError: an asset of the registry has no ratio, or a ratio is outside [0, 1].
    """
    out = np.empty(len(assets))
    for k, sym in enumerate(assets.symbols):
        if sym not in ratios:
            raise DeleverInputError(f"{source}: no collateral value ratio for asset {sym!r} (known: {', '.join(ratios)})")
        r = float(ratios[sym])
        if not 0.0 <= r <= 1.0:
            raise DeleverInputError(f"{source}: collateral value ratio of {sym!r} is {r!r}, expected within [0, 1]")
        out[k] = 1.0 - r
    return out


@dataclass
class MultiAssetsRisk(TieredRisk):
    """Binance Multi-Assets mode: tiered MM per position (``TieredRisk``), account equity at bid / ask rates.

    Args:
        tiers: One ``MarginTiers`` per instrument (notional in the settlement asset).
        haircut: float64 ``(K,)`` index bid buffer per asset (``1 - collateral value ratio``); None = 0.
        ask_buffer: float64 ``(K,)`` index ask buffer per asset; None = 0.
        name: Model name.

    ``Prices.asset_usd`` is each asset's index (USDTUSD 0.99 in the FAQ example). Unrealized PnL per position is
    reported at the index; the group's equity applies the rates to asset equity.
    """

    ask_buffer: np.ndarray | None = None
    name: str = "binance-multi-assets"

    def _rates(self, prices: Prices) -> tuple[np.ndarray, np.ndarray]:
        k = prices.asset_usd.size
        bid_buf = np.zeros(k) if self.haircut is None else np.asarray(self.haircut, dtype=np.float64)
        ask_buf = np.zeros(k) if self.ask_buffer is None else np.asarray(self.ask_buffer, dtype=np.float64)
        return prices.asset_usd * (1.0 - bid_buf), prices.asset_usd * (1.0 + ask_buf)

    def asset_equity(self, book: AccountBook, prices: Prices) -> np.ndarray:
        """float64 ``(G, K)``: wallet balance plus unrealized PnL of the positions settled in each asset (asset units)."""
        reg = book.registry
        ins = book.pos_instrument
        pnl = reg.pnl_settle(ins, book.pos_qty, book.pos_entry_price, prices.mark[ins])
        eq = book.balance.copy()
        np.add.at(eq, (book.pos_group, reg.settle_code[ins]), pnl)
        return eq

    def evaluate(self, book: AccountBook, prices: Prices) -> GroupRisk:
        """Account equity ``sum_k min(e_k bid_k, e_k ask_k)``; MM and IM per position at the settle asset's ask rate."""
        reg = book.registry
        ins = book.pos_instrument
        settle = reg.settle_code[ins]
        bid, ask = self._rates(prices)
        mm, im = self.position_requirement(ins, book.pos_qty, prices.mark[ins], ask[settle])
        closed = book.pos_qty == 0
        mm[closed] = 0.0
        im[closed] = 0.0
        eq = self.asset_equity(book, prices)
        equity = np.minimum(eq * bid[None, :], eq * ask[None, :]).sum(axis=1)
        upnl = reg.pnl_settle(ins, book.pos_qty, book.pos_entry_price, prices.mark[ins]) * prices.asset_usd[settle]
        return GroupRisk(equity, group_sum(book, mm), group_sum(book, im), upnl, mm, position_notional_usd(book, prices))

    def margin_ratio(self, book: AccountBook, prices: Prices) -> np.ndarray:
        """float64 ``(G,)`` ``Account Maintenance Margin / Account Equity`` (inf where equity <= 0); 1 = liquidation."""
        r = self.evaluate(book, prices)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(r.equity_usd > 0, r.maint_usd / r.equity_usd, np.inf)

    def liquidation_price(self, book: AccountBook, prices: Prices) -> np.ndarray:
        """Mark of each position's instrument at which its group's margin ratio reaches 100 %, others fixed.

        Account equity is piecewise linear in the mark (the rate of the settle asset switches from bid to ask where
        its asset equity changes sign) and MM is piecewise linear by bracket; each (bracket, rate) piece is solved
        and the piece that contains its own solution is kept. Linear contracts. NaN where none does.

        Returns:
            float64 ``(P,)``.
        """
        reg = book.registry
        ins = book.pos_instrument
        settle = reg.settle_code[ins]
        bid, ask = self._rates(prices)
        r = self.evaluate(book, prices)
        eq = self.asset_equity(book, prices)
        q = np.abs(book.pos_qty)
        side = np.sign(book.pos_qty)
        m0 = prices.mark[ins]
        e_s = eq[book.pos_group, settle]                       # settle-asset equity at the current mark
        v_s = np.minimum(e_s * bid[settle], e_s * ask[settle])
        rest = r.equity_usd[book.pos_group] - v_s              # the group's other assets, fixed
        mm_other = r.maint_usd[book.pos_group] - r.pos_maint_usd
        a_s = ask[settle]
        lp = np.full(q.size, np.nan)
        for code in np.unique(ins):
            t = self.tiers[int(code)]
            for rate in (bid, ask):
                for k in range(t.mmr.size):
                    m = (ins == code) & (q > 0) & np.isnan(lp)
                    if not m.any():
                        break
                    b = rate[settle[m]]
                    # rest + b (e_s + side q (P - m0)) = mm_other + a_s (q P mmr_k - cum_k)
                    den = b * side[m] * q[m] - a_s[m] * q[m] * t.mmr[k]
                    num = mm_other[m] - a_s[m] * t.maint_amount_usd[k] - rest[m] - b * (e_s[m] - side[m] * q[m] * m0[m])
                    with np.errstate(divide="ignore", invalid="ignore"):
                        p = num / den
                    e_at = e_s[m] + side[m] * q[m] * (p - m0[m])
                    same_rate = (e_at >= 0) if rate is bid else (e_at <= 0)
                    n = q[m] * p
                    hi = t.floor_usd[k + 1] if k + 1 < t.floor_usd.size else np.inf
                    ok = np.isfinite(p) & (p > 0) & same_rate & (n <= hi * (1 + 1e-12)) & (n >= t.floor_usd[k] * (1 - 1e-12))
                    idx = np.flatnonzero(m)[ok]
                    lp[idx] = p[ok]
        return lp
