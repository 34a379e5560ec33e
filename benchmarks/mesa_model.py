"""The cascade as a researcher would write it in Mesa: one agent per position, Python per agent.

Same rules as ``delever.engine.core.CascadeEngine`` for Binance USD-M (IOC at the bankruptcy price,
step-down to the lower bracket, clearance fee, insurance-fund takeover, fund unwinding), sharing the
depth/impact and mark-price code, so its liquidation totals must equal the engine's on the same case.
It stops with an error if the fund would need ADL (the benchmark case keeps the fund large).
Used only by ``benchmarks/run.py`` (``pip install -e .[bench]``).
"""

from __future__ import annotations

import math

import mesa
import numpy as np

from delever.engine.core import DUST_QTY
from delever.engine.mark import MarkPrice
from delever.market.impact import Impact


class PositionAgent(mesa.Agent):
    """One leveraged position (isolated or cross, one instrument)."""

    def __init__(self, model: CascadeModel, index: int, side: int, qty: float, entry: float, collateral: float):
        super().__init__(model)
        self.index, self.side, self.qty, self.entry, self.coll = index, side, qty, entry, collateral

    def equity(self, mark: float) -> float:
        return self.coll + self.side * self.qty * (mark - self.entry)

    def maintenance_margin(self, mark: float) -> float:
        return float(self.model.tiers.maintenance_margin(self.qty * mark))

    def check(self, mark: float) -> None:
        if self.qty > 0 and self.equity(mark) < self.maintenance_margin(mark):
            self.model.liquidatable.append(self)


class CascadeModel(mesa.Model):
    """Binance USD-M cascade on a fixed book along one price path."""

    def __init__(self, venue, tiers, book, depth, path, permanent_fraction, half_life_s, max_walk_pct, max_rounds,
                 fund_usd):
        super().__init__(seed=0)
        if venue.liquidation.backstop_below_mm_fraction > 0 or venue.liquidation.partial_fraction < 1:
            raise ValueError("the Mesa benchmark model implements the binance-usdm rules only")
        self.venue, self.tiers, self.path, self.max_rounds = venue, tiers, path, max_rounds
        self.impact = Impact(depth, permanent_fraction, half_life_s, max_walk_pct, move_price=True)
        self.mark_rule = MarkPrice(venue.mark.method, venue.mark.basis_window_s, venue.mark.funding_basis)
        self.fund_cash, self.inv_qty, self.inv_entry = float(fund_usd), 0.0, 0.0
        self.positions = [PositionAgent(self, i, int(book.side[i]), float(book.qty[i]), float(book.entry_price[i]),
                                        float(book.collateral_usd[i])) for i in range(len(book))]
        self.liquidated_long_usd = self.liquidated_short_usd = 0.0
        self.liquidations = 0
        self.liquidatable: list[PositionAgent] = []

    def _fund_trade(self, side: int, qty: float, price: float) -> None:
        if qty <= 0:
            return
        if self.inv_qty == 0 or math.copysign(1, self.inv_qty) == side:
            total = abs(self.inv_qty) + qty
            self.inv_entry = (abs(self.inv_qty) * self.inv_entry + qty * price) / total
            self.inv_qty += side * qty
            return
        close = min(abs(self.inv_qty), qty)
        self.fund_cash += math.copysign(1, self.inv_qty) * close * (price - self.inv_entry)
        self.inv_qty += side * close
        rest = qty - close
        if abs(self.inv_qty) <= DUST_QTY:
            self.inv_qty = 0.0
        if rest > DUST_QTY:
            self.inv_qty, self.inv_entry = side * rest, price

    def _check_fund(self, mark: float) -> None:
        rule = self.venue.backstop
        upnl = self.inv_qty * (mark - self.inv_entry)
        equity = self.fund_cash + upnl
        over_cap = rule.max_net_notional_ratio > 0 and abs(self.inv_qty) - rule.max_net_notional_ratio * max(equity, 0) / mark > DUST_QTY
        if self.inv_qty != 0 and (-upnl > rule.adl_loss_fraction * max(self.fund_cash, 0.0) or over_cap):
            raise RuntimeError("the fund would need ADL; the Mesa benchmark case must keep it solvent")

    def _round(self, exo: float, mark: float) -> bool:
        self.liquidatable = []
        for agent in self.positions:
            agent.check(mark)
        if not self.liquidatable:
            return False
        L = sorted(self.liquidatable, key=lambda a: a.index)
        rule = self.venue.liquidation
        orders, limits = [], []
        for a in L:
            order = a.qty
            notional = a.qty * mark
            k = int(self.tiers.tier_index(notional))
            if rule.step_down_tiers and k > 0:
                order = a.qty - self.tiers.floor_usd[k] / mark
            orders.append(order)
            limits.append(a.entry - a.side * a.coll / a.qty)
        fills = [0.0] * len(L)
        notionals = [0.0] * len(L)
        for side, fn in ((1, self.impact.sell), (-1, self.impact.buy)):
            ix = [i for i, a in enumerate(L) if a.side == side]
            if ix:
                fq, nt = fn(exo, np.array([orders[i] for i in ix]), np.array([limits[i] for i in ix]))
                for j, i in enumerate(ix):
                    fills[i], notionals[i] = float(fq[j]), float(nt[j])
        progress = False
        takeovers: dict[int, list[tuple[float, float]]] = {1: [], -1: []}
        for a, fq, nt in zip(L, fills, notionals, strict=True):
            self.liquidations += 1
            if fq > 0:
                progress = True
                a.coll += a.side * (nt - fq * a.entry)
                fee = min(rule.clearance_fee_rate * nt, max(a.coll, 0.0))
                a.coll -= fee
                self.fund_cash += fee
                a.qty = 0.0 if fq >= a.qty - DUST_QTY else a.qty - fq
                self._count(a.side, nt)
            if a.qty > 0 and a.equity(mark) < a.maintenance_margin(mark):
                bp = a.entry - a.side * a.coll / a.qty
                takeovers[a.side].append((a.qty, bp))
                self._count(a.side, a.qty * bp)
                a.qty, a.coll = 0.0, 0.0
                progress = True
            if a.qty <= DUST_QTY:
                a.qty, a.coll = 0.0, 0.0
        for side, lots in takeovers.items():
            if lots:
                tq = sum(q for q, _ in lots)
                self._fund_trade(side, tq, sum(q * p for q, p in lots) / tq)
        self._check_fund(mark)
        return progress

    def _count(self, side: int, notional: float) -> None:
        if side > 0:
            self.liquidated_long_usd += notional
        else:
            self.liquidated_short_usd += notional

    def run_path(self) -> None:
        t_s, price = self.path.t_s, self.path.price
        prev_t = 0.0
        for step in range(t_s.size):
            t = float(t_s[step])
            dt = t - prev_t if step else (float(t_s[1] - t_s[0]) if t_s.size > 1 else 1.0)
            if step:
                self.impact.decay(dt)
            exo = float(price[step])
            rounds = 0
            while True:
                index, last = self.impact.reference(exo), self.impact.last(exo)
                mark = self.mark_rule.value(index, last, dt)
                if rounds >= self.max_rounds or not self._round(exo, mark):
                    break
                rounds += 1
            self.mark_rule.commit(index, last, dt)
            self._unwind(exo, mark, dt)
            self._check_fund(mark)
            prev_t = t

    def _unwind(self, exo: float, mark: float, dt: float) -> None:
        rule = self.venue.backstop
        if self.inv_qty == 0:
            return
        qty = abs(self.inv_qty) * (1.0 - 0.5 ** (dt / rule.unwind_half_life_s))
        if abs(self.inv_qty) * mark < 100.0:
            qty = abs(self.inv_qty)
        slip = rule.unwind_max_slippage_pct / 100.0
        if self.inv_qty > 0:
            fq, nt = self.impact.sell(exo, np.array([qty]), np.array([mark * (1 - slip)]))
        else:
            fq, nt = self.impact.buy(exo, np.array([qty]), np.array([mark * (1 + slip)]))
        if fq[0] > 0:
            self._fund_trade(-1 if self.inv_qty > 0 else 1, float(fq[0]), float(nt[0] / fq[0]))
