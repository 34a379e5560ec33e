"""The cascade engine: one time step at a time, liquidation rounds to a fixed point.

Per step: exogenous price -> index and traded price (with impact) -> mark price -> rounds of
{margin check -> liquidation orders into depth -> clearance fee -> backstop takeover (insurance
fund / liquidator vault) -> ADL when the backstop cannot absorb} until no account changes (or the
round cap, reported) -> backstop unwinds part of its inventory -> resilience.

Venue behaviour comes from ``VenueRules`` (presets in ``venues/presets``):

* Binance USD-M (venue-mechanics.md §1; Binance Liquidation Protocol): liquidation orders are IOC
  limit orders at the bankruptcy price; a position above the first bracket is first reduced to the
  lower bracket and the liquidation stops if it is then margin-compliant after the realized loss and
  the clearance fee; otherwise the rest is closed at the bankruptcy price and the insurance fund
  takes it over. The fund's net position notional may not exceed ``max_net_notional_ratio`` x its
  equity; the excess, and the whole inventory once its unrealized loss exceeds the fund's balance,
  is auto-deleveraged against the top-ranked opposite positions at the bankruptcy price.
* Hyperliquid (venue-mechanics.md §4): market liquidation orders for the whole position, or 20 %
  of positions above 100k USDC with a 30 s cooldown during which orders are for the whole position;
  equity below 2/3 of maintenance margin -> the liquidator vault takes the position and its
  collateral at mark; ADL of the vault's inventory at the previous mark price when its loss exceeds
  its balance. Liquidation orders here carry a limit at the bankruptcy price so that a fill never
  leaves the account negative; what the book cannot take waits for the backstop.
* BitMEX / Bybit (venue-mechanics.md §2-§3): laddered liquidation, a FillOrKill order down to the
  lower risk tier, else (and on the lowest tier) the position is closed at its bankruptcy price: a
  limit order there whose surplus goes to the insurance fund, the rest taken over. Bybit charges the
  taker fee to the liquidated order and the maker fee to the ADL'd trader (fee pool party).
* OKX (§3): historic partial liquidation down to tier 1 with a one-minute freeze; ADL at the mark
  price (bankruptcy price when the fund is nearly depleted), also when the fund drops fast.

* Drift protocol-v2 (venue-mechanics.md §6; any venue with a ``drift`` section): no book orders; a
  liquidator takes positions over at the oracle with a fee, in amounts capped by a time ramp, and
  bankrupt balances are paid by the insurance fund, the fee pool, then socialized over open
  positions instead of ADL (``delever.engine.drift``).
* dYdX v4 (venue-mechanics.md §5): ``engine.dydx_path`` -- IOC orders at the fillable price under
  per-block limits, the insurance fund pays deficits but never takes positions, random-start
  deleveraging of unfilled negative-equity accounts, final settlement.

Money moves only through paired updates that are also written to the ``Ledger``; the run reports
the sum of all balance changes (``ledger_imbalance_usd``) and the worst per-party mismatch between
state and ledger.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delever.book import PositionBook
from delever.engine.drawdown import PeakDrawdown
from delever.engine.drift import DriftLiquidation
from delever.engine.dydx_path import DydxPath
from delever.engine.ledger import BAD_DEBT, FEE_POOL, INSURANCE_FUND, LIQUIDATOR_VAULT, MARKET, Ledger
from delever.engine.mark import MarkPrice
from delever.engine.mitigation_rules import Mitigations
from delever.engine.mitigations import MitigationSet
from delever.engine.tables import TableBuilder
from delever.errors import DeleverInputError
from delever.market.depth import DepthCurve
from delever.market.impact import Impact
from delever.market.price_path import PricePath
from delever.venues.formulas import adl_score, bankruptcy_price_with_close_fee, liquidation_price_binance
from delever.venues.rules import VenueRules
from delever.venues.tiers import MarginTiers

DUST_QTY = 1e-12  # base units below which a position counts as closed (float residue of partial fills)

LIQ_SCHEMA = {
    "step": np.int32, "round": np.int32, "t_s": np.float64, "account": np.int64, "side": np.int8, "kind": str,
    "qty": np.float64, "price": np.float64, "notional_usd": np.float64, "bankruptcy_price": np.float64,
    "fee_usd": np.float64, "mark_price": np.float64, "equity_usd": np.float64, "maint_margin_usd": np.float64,
}
ADL_SCHEMA = {
    "step": np.int32, "round": np.int32, "t_s": np.float64, "account": np.int64, "side": np.int8,
    "qty": np.float64, "price": np.float64, "notional_usd": np.float64, "rank": np.int32, "score": np.float64,
    "realized_pnl_usd": np.float64, "haircut_usd": np.float64, "trigger": str,
}
ROUND_SCHEMA = {
    "step": np.int32, "round": np.int32, "t_s": np.float64, "mark_price": np.float64, "last_price": np.float64,
    "liquidations": np.int32, "liquidated_notional_usd": np.float64, "market_fill_qty": np.float64,
    "takeover_qty": np.float64, "adl_qty": np.float64,
}
STEP_SCHEMA = {
    "step": np.int32, "t_s": np.float64, "exogenous_price": np.float64, "index_price": np.float64,
    "last_price": np.float64, "mark_price": np.float64, "rounds": np.int32, "round_cap_hit": np.bool_,
    "liquidations": np.int32, "liquidated_notional_usd": np.float64, "liquidated_long_usd": np.float64,
    "liquidated_short_usd": np.float64, "adl_notional_usd": np.float64, "adl_count": np.int32,
    "unwind_qty": np.float64, "insurance_fund_cash_usd": np.float64, "insurance_fund_equity_usd": np.float64,
    "backstop_inventory_qty": np.float64, "bad_debt_usd": np.float64, "transient_impact_bid": np.float64,
    "transient_impact_ask": np.float64, "permanent_impact_factor": np.float64, "open_interest_long_qty": np.float64,
    "open_interest_short_qty": np.float64, "halted": np.bool_, "margin_multiplier": np.float64,
}


def _top_ranked(score: np.ndarray, account: np.ndarray, qty: np.ndarray, need_qty: float) -> np.ndarray:
    """Indices of the highest scores (ties: lower account first) whose quantities cover ``need_qty``.

    Same order as a full ``lexsort((account, -score))`` truncated where the cumulative quantity reaches
    ``need_qty``, but only the top of the queue is sorted: an ADL usually needs a few counterparties
    out of many.
    """
    n = score.size
    m = min(n, 256)
    while True:
        if m < n:
            cutoff = np.partition(score, n - m)[n - m]
            top = np.flatnonzero(score >= cutoff)  # every tie at the cutoff is kept, so the order is exact
        else:
            top = np.arange(n)
        top = top[np.lexsort((account[top], -score[top]))]
        if m >= n or qty[top].sum() >= need_qty:
            return top
        m = min(n, m * 8)


def _water_fill(need: float, weight: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Split ``need`` in proportion to ``weight`` without exceeding ``cap`` (excess goes to the others)."""
    take = np.zeros(weight.size)
    free = (weight > 0) & (cap > 0)
    left = need
    while left > DUST_QTY and free.any():
        share = left * weight[free] / weight[free].sum()
        room = cap[free] - take[free]
        hit = share >= room
        if not hit.any():
            take[free] += share
            break
        idx = np.flatnonzero(free)[hit]
        take[idx] = cap[idx]
        left = need - take.sum()
        free[idx] = False
    return take


def adl_allocation(policy: str, need_qty: float, qty: np.ndarray, notional_usd: np.ndarray, equity_usd: np.ndarray,
                   cap_fraction: float) -> np.ndarray:
    """Quantity each eligible counterparty gives up under a pro-rata ADL ``policy`` (float64, same shape).

    ``pro_rata``: in proportion to size. ``capped_pro_rata``: in proportion to size, at most
    ``cap_fraction`` of each position while others have room, then pro rata on what is left.
    ``risk_aware_pro_rata``: in proportion to size x effective leverage (notional / equity).
    The total never exceeds ``need_qty`` nor the sum of sizes.
    """
    need = min(need_qty, float(qty.sum()))
    if policy == "pro_rata":
        return _water_fill(need, qty, qty)
    if policy == "capped_pro_rata":
        first = _water_fill(need, qty, cap_fraction * qty)
        rest = need - first.sum()
        return first + (_water_fill(rest, qty - first, qty - first) if rest > DUST_QTY else 0.0)
    if policy == "risk_aware_pro_rata":
        return _water_fill(need, qty * notional_usd / equity_usd, qty)
    raise ValueError(f"unknown ADL policy {policy!r}")


@dataclass
class Backstop:
    """The insurance fund or liquidator vault: cash plus an inventory of taken-over positions."""

    party: int
    cash_usd: float
    inv_qty: float = 0.0          # signed, + long
    inv_entry: float = 0.0        # average entry of the inventory (USD)

    def equity(self, mark: float) -> float:
        return self.cash_usd + self.inv_qty * (mark - self.inv_entry)


@dataclass
class Totals:
    liquidations: int = 0
    liquidated_long_usd: float = 0.0
    liquidated_short_usd: float = 0.0
    adl_notional_usd: float = 0.0
    adl_count: int = 0
    bad_debt_usd: float = 0.0
    round_cap_hits: int = 0
    rounds_max: int = 0
    adl_shortfall_qty: float = 0.0
    adl_for_loss: int = 0   # ADL rounds triggered by the backstop's loss beyond its balance (not by its size cap)
    takeover_pnl_usd: float = 0.0  # backstop's result on what it took over: collateral handed + inventory PnL
    adl_haircut_usd: float = 0.0   # losses passed to ADL counterparties (closing price worse than mark)
    market_net_bought_qty: float = 0.0   # inside parties' net purchases from the outside market
    # Drift (venue ``drift`` section): fees and bankruptcy resolution instead of ADL
    liquidator_fee_usd: float = 0.0
    if_fee_usd: float = 0.0
    bankruptcy_loss_usd: float = 0.0       # negative balances of bankrupt accounts (losses beyond collateral)
    insurance_fund_bankruptcy_usd: float = 0.0
    fee_pool_bankruptcy_usd: float = 0.0
    socialized_loss_usd: float = 0.0       # charged to open positions pro rata by size
    price_band_refusals: int = 0           # rounds refused by PriceBandsBreached
    # What liquidated traders lose to the liquidation process itself: fees, fill slippage versus mark (adverse
    # side only) and equity at mark surrendered on a takeover by the backstop.
    trader_liquidation_loss_usd: float = 0.0


class CascadeEngine(DydxPath):
    """Runs one cascade of a position book along a price path.

    Args:
        venue: Venue rules.
        tiers: Margin tiers of the instrument.
        book: Positions (copied; the caller's book is not modified).
        depth: Depth curve of the instrument.
        path: Price driver output; ``mode`` 'stress' adds impact, 'replay' uses the price as observed mark.
        permanent_fraction, resilience_half_life_s, max_walk_pct: impact parameters.
        max_rounds: Round cap per step.
        insurance_fund_usd: Starting balance of the backstop (insurance fund or liquidator vault).
        mitigations: Scenario ``mitigations`` (mark smoothing, circuit breaker, dynamic margin,
            liquidation throttle, Dutch auction); None or all off = the venue's own rules.

        seed: Seed of the venue's pseudo-random choices (dYdX liquidation offsets and deleveraging starts).

    Raises:
        DeleverInputError: a mitigation contradicts the venue (see ``MitigationSet.build``).
    """

    def __init__(self, venue: VenueRules, tiers: MarginTiers, book: PositionBook, depth: DepthCurve, path: PricePath,
                 permanent_fraction: float, resilience_half_life_s: float, max_walk_pct: float, max_rounds: int,
                 insurance_fund_usd: float, mitigations: Mitigations | None = None, seed: int = 0) -> None:
        self.venue, self.tiers, self.path, self.max_rounds = venue, tiers, path, int(max_rounds)
        self.replay = path.mode == "replay"
        b = book.copy()
        self.instrument = b.instrument
        self.account, self.side, self.qty, self.entry = b.account, b.side, b.qty, b.entry_price
        self.sidef = self.side.astype(np.float64)
        self.coll = b.collateral_usd          # collateral backing the open position
        self.free = np.zeros_like(self.coll)  # trader money no longer backing a position
        self.cooldown_until = np.full(self.qty.size, -np.inf)
        self.impact = Impact(depth, permanent_fraction, resilience_half_life_s, max_walk_pct, move_price=not self.replay)
        m = venue.mark
        self.mark_rule = MarkPrice(m.method, m.basis_window_s, m.funding_basis, m.funding_rate, m.funding_interval_s,
                                   m.time_to_funding_s)
        party = INSURANCE_FUND if venue.backstop.holder == "insurance_fund" else LIQUIDATOR_VAULT
        self.drift: DriftLiquidation | None = None
        if venue.drift is not None:
            # Drift: the backstop is the liquidator (its own capital); the insurance fund is a separate party.
            market = venue.drift.market_for(b.instrument, venue.name)
            self.drift = DriftLiquidation(venue.drift, market, self.qty.size, insurance_fund_usd)
            self.backstop = Backstop(LIQUIDATOR_VAULT, float(venue.drift.liquidator_capital_usd))
        else:
            self.backstop = Backstop(party, float(insurance_fund_usd))
        self.fund_start_usd = float(insurance_fund_usd)
        self._fund_drawdown = PeakDrawdown(venue.backstop.adl_drawdown_fraction, venue.backstop.adl_drawdown_window_s)
        self.frozen_until = np.full(self.qty.size, -np.inf)      # OKX step-down freeze
        self.market_cash = 0.0
        self.bad_debt_cash = 0.0
        self.fee_pool_cash = 0.0
        self.ledger = Ledger()
        self.totals = Totals()
        self.liq_rows = TableBuilder(LIQ_SCHEMA)
        self.adl_rows = TableBuilder(ADL_SCHEMA)
        self.round_rows = TableBuilder(ROUND_SCHEMA)
        self.step_rows = TableBuilder(STEP_SCHEMA)
        self.lp = np.empty_like(self.qty)       # liquidation price, the prefilter of the margin check
        # Per-side index arrays and liquidation prices: the margin check scans each side once per round.
        self.side_idx = {1: np.flatnonzero(self.side > 0), -1: np.flatnonzero(self.side < 0)}
        self.side_pos = np.empty(self.qty.size, dtype=np.int64)
        for ix in self.side_idx.values():
            self.side_pos[ix] = np.arange(ix.size)
        self.side_lp = {1: np.empty(self.side_idx[1].size), -1: np.empty(self.side_idx[-1].size)}
        self._refresh_lp(np.arange(self.qty.size))
        self.oi_qty = {1: float(self.qty[self.side > 0].sum()), -1: float(self.qty[self.side < 0].sum())}
        self.mit = MitigationSet.build(mitigations, tiers, float(path.price[0]), self.qty.size)
        own_path = "Drift's liquidator takeover" if venue.drift is not None else (
            "dYdX's block-limited liquidation path" if venue.dydx is not None else None)
        if own_path is not None:
            # these venues have their own margin formula and order path: nothing there to scale, throttle or auction
            m = self.mit
            clash = [k for k, on in (("dynamic_margin", m.margin), ("throttle", m.throttle), ("dutch_auction", m.auction))
                     if on is not None]
            if clash:
                raise DeleverInputError(f"mitigations.{clash[0]}: not applicable to venue {venue.name} ({own_path}); "
                                        "use mark_smoothing or circuit_breaker")
        self.halted_steps = 0
        self._floor_price, self._cap_price = 0.0, np.inf   # limit-down / limit-up band of the step
        self._start_money = self._money()
        self._start_inside_net_qty = self._inside_net_qty()
        self._step_acc = np.zeros(5)  # liquidations, long usd, short usd, adl usd, adl count (current step)
        self._dydx_init(seed)         # dYdX venues: liquidation/deleveraging path in engine.dydx_path

    # ------------------------------------------------------------------ accounting helpers
    def _money(self) -> dict[str, float]:
        money = {
            "traders": float(self.coll.sum() + self.free.sum()),
            "backstop": self.backstop.cash_usd,
            "market": self.market_cash,
            "bad_debt": self.bad_debt_cash,
            "fee_pool": self.fee_pool_cash,
        }
        if self.drift is not None:
            money["insurance_fund"] = self.drift.if_cash
            money["fee_pool"] += self.drift.fee_pool_cash   # Drift's AMM fee pool is the same ledger party
        return money

    def _inside_net_qty(self) -> float:
        return float((self.sidef * self.qty).sum() + self.backstop.inv_qty)

    def _refresh_lp(self, idx: np.ndarray) -> None:
        """Recompute the liquidation price of positions whose size or collateral changed.

        ``eq - MM`` is monotone in price for a fixed position, so ``eq < MM`` holds exactly beyond the
        liquidation price; the margin check uses the price as a prefilter (with a relative 1e-9
        slack) and decides on the exact inequality. Closed positions, and longs that can never be
        liquidated, get -inf (long) / +inf (short).
        """
        if idx.size == 0:
            return
        q = self.qty[idx]
        lp = np.full(idx.size, np.nan)
        live = q > 0
        if self.drift is not None:
            # The size premium is not of the tier form: every open position is a candidate, the check is exact.
            lp[live] = np.where(self.side[idx[live]] > 0, np.inf, -np.inf)
        elif live.any():
            i = idx[live]
            lp[live] = liquidation_price_binance(self.side[i], q[live], self.entry[i], self.coll[i], self.tiers)
        never = np.where(self.side[idx] > 0, -np.inf, np.inf)
        lp = np.where(np.isnan(lp), never, lp)
        self.lp[idx] = lp
        longs = self.side[idx] > 0
        self.side_lp[1][self.side_pos[idx[longs]]] = lp[longs]
        self.side_lp[-1][self.side_pos[idx[~longs]]] = lp[~longs]

    def _track_oi(self, idx: np.ndarray, qty_before: np.ndarray) -> None:
        delta = self.qty[idx] - qty_before
        longs = self.side[idx] > 0
        self.oi_qty[1] += float(delta[longs].sum())
        self.oi_qty[-1] += float(delta[~longs].sum())

    def _candidates(self, mark: float) -> np.ndarray:
        """Open positions past (or within 1e-9 of) their liquidation price, ascending index."""
        slack = 1e-9 * mark
        longs = self.side_idx[1][self.side_lp[1] > mark - slack]
        shorts = self.side_idx[-1][self.side_lp[-1] < mark + slack]
        if shorts.size == 0:
            return longs
        if longs.size == 0:
            return shorts
        return np.sort(np.concatenate((longs, shorts)))

    def _close_dust(self, idx: np.ndarray) -> None:
        """Positions at zero size release their collateral to the trader's free balance (same party)."""
        done = idx[self.qty[idx] <= DUST_QTY]
        if done.size:
            self.qty[done] = 0.0
            self.free[done] += self.coll[done]
            self.coll[done] = 0.0

    def _backstop_trade(self, side: int, qty: float, price: float, kind: str) -> None:
        """The backstop opens or reduces inventory at ``price``; reductions realize PnL against the market."""
        if qty <= 0:
            return
        bs = self.backstop
        signed = side * qty
        if bs.inv_qty == 0 or np.sign(bs.inv_qty) == side:
            total = abs(bs.inv_qty) + qty
            bs.inv_entry = (abs(bs.inv_qty) * bs.inv_entry + qty * price) / total
            bs.inv_qty += signed
            return
        close = min(abs(bs.inv_qty), qty)
        realized = np.sign(bs.inv_qty) * close * (price - bs.inv_entry)
        self.totals.takeover_pnl_usd += realized
        self._pay_backstop(realized, kind)
        bs.inv_qty += side * close
        rest = qty - close
        if abs(bs.inv_qty) <= DUST_QTY:
            bs.inv_qty = 0.0
        if rest > DUST_QTY:
            bs.inv_qty, bs.inv_entry = side * rest, price

    def _pay_backstop(self, realized: float, kind: str) -> None:
        """Market pays the backstop ``realized`` (signed); a negative cash balance is made whole by bad debt."""
        bs = self.backstop
        bs.cash_usd += realized
        self.market_cash -= realized
        self.ledger.transfer_signed(kind, MARKET, bs.party, realized)
        if bs.cash_usd < 0:
            deficit = -bs.cash_usd
            bs.cash_usd = 0.0
            self.bad_debt_cash -= deficit
            self.totals.bad_debt_usd += deficit
            self.ledger.transfer_signed("bad_debt", BAD_DEBT, bs.party, deficit)

    def _record_liq(self, step, rnd, t, idx, kind, qty, price, bp, fee, mark, eq, mm) -> None:
        notional = qty * price
        self.liq_rows.add(step=step, round=rnd, t_s=t, account=self.account[idx], side=self.side[idx], kind=kind,
                          qty=qty, price=price, notional_usd=notional, bankruptcy_price=bp, fee_usd=fee,
                          mark_price=mark, equity_usd=eq, maint_margin_usd=mm)
        longs = self.side[idx] > 0
        self._step_acc[1] += notional[longs].sum()
        self._step_acc[2] += notional[~longs].sum()

    # ------------------------------------------------------------------ liquidation orders
    def _bankruptcy(self, idx: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Bankruptcy price (USD) of positions ``idx`` at size ``q``, with the taker fee to close if the venue charges one."""
        r = self.venue.liquidation.liquidation_taker_fee_rate
        if r > 0:
            return bankruptcy_price_with_close_fee(self.sidef[idx], q, self.entry[idx], self.coll[idx], r)
        return self.entry[idx] - self.sidef[idx] * self.coll[idx] / q

    def _liquidation_fills(self, step, rnd, t, exo, mark, L, order, planned_partial, fok, eqL, mmL,
                           limit=None) -> np.ndarray:
        """Send liquidation orders ``order`` (base qty) of positions ``L`` into the book, limit at the bankruptcy price.

        ``fok`` (bool mask or None) marks fill-or-kill orders; ``limit`` (float64 ``(len(L),)``, default the
        bankruptcy price) is the orders' limit price — with a Dutch auction, the auction price, which is
        also what the position receives (keepers keep the book's VWAP beyond it). Fills realize PnL against the market; the
        taker fee (fee pool) and the clearance fee (backstop) come out of the fill. With
        ``close_at_bankruptcy`` a full-close order is the trader's close at the bankruptcy price: the
        margin freed beyond the share backing the rest goes to the backstop.

        Returns:
            float64 ``(len(L),)`` filled quantity.
        """
        rule = self.venue.liquidation
        qL = self.qty[L].copy()
        coll_before = self.coll[L].copy()
        bp = self._bankruptcy(L, qL)
        auction = limit is not None and self.mit.auction is not None
        lim = bp if limit is None else limit
        fq = np.zeros(L.size)
        notional = np.zeros(L.size)
        sells = self.side[L] > 0
        for m, fill in ((sells, self.impact.sell), (~sells, self.impact.buy)):
            if m.any():
                fq[m], notional[m] = fill(exo, order[m], lim[m], None if fok is None else fok[m])
        if auction:
            notional = fq * lim
        filled = fq > 0
        if filled.any():
            F = L[filled]
            realized = self.sidef[F] * (notional[filled] - fq[filled] * self.entry[F])
            self.coll[F] += realized
            self.market_cash -= realized.sum()
            self.ledger.transfer_signed("liquidation_pnl", MARKET, self.account[F], realized)
            fee = np.zeros(F.size)
            if rule.liquidation_taker_fee_rate > 0:
                fee = np.minimum(rule.liquidation_taker_fee_rate * notional[filled], np.maximum(self.coll[F], 0.0))
                self.coll[F] -= fee
                self.fee_pool_cash += fee.sum()
                self.ledger.transfer_signed("liquidation_taker_fee", self.account[F], FEE_POOL, fee)
            cfee = np.minimum(rule.clearance_fee_rate * notional[filled], np.maximum(self.coll[F], 0.0))
            self.coll[F] -= cfee
            self.backstop.cash_usd += cfee.sum()
            self.ledger.transfer_signed("clearance_fee", self.account[F], self.backstop.party, cfee)
            self.qty[F] = np.where(fq[filled] >= self.qty[F] - DUST_QTY, 0.0, self.qty[F] - fq[filled])
            if rule.close_at_bankruptcy:
                # Margin is linear in size at a fixed bankruptcy price: the rest keeps coll x (rest / size).
                closing = ~planned_partial[filled]
                surplus = np.where(closing, np.maximum(self.coll[F] - coll_before[filled] * self.qty[F] / qL[filled],
                                                       0.0), 0.0)
                self.coll[F] -= surplus
                self.backstop.cash_usd += surplus.sum()
                self.ledger.transfer_signed("liquidation_surplus", self.account[F], self.backstop.party, surplus)
            self.totals.market_net_bought_qty -= float((self.sidef[F] * fq[filled]).sum())
            slip = np.maximum(self.sidef[F] * (fq[filled] * mark - notional[filled]), 0.0)   # adverse vs mark only
            self.totals.trader_liquidation_loss_usd += float((fee + cfee + slip).sum())
            if rule.close_at_bankruptcy:
                self.totals.trader_liquidation_loss_usd += float(surplus.sum())
            kind = np.where(planned_partial[filled] & (self.qty[F] > 0), "partial", "auction" if auction else "market")
            self._record_liq(step, rnd, t, F, kind, fq[filled], notional[filled] / fq[filled], bp[filled], fee + cfee,
                             mark, eqL[filled], mmL[filled])
        return fq

    def _takeover(self, step, rnd, t, mark, T, eqT, mmT) -> float:
        """Close positions ``T`` at their bankruptcy price; the backstop takes them over. Returns the quantity."""
        qt = self.qty[T].copy()
        bpt = self._bankruptcy(T, qt)
        # what the trader surrenders: the equity at mark (fees included), not the price move
        self.totals.trader_liquidation_loss_usd += float(
            np.maximum(self.coll[T] + self.sidef[T] * qt * (mark - self.entry[T]), 0.0).sum())
        fee = np.zeros(T.size)
        r = self.venue.liquidation.liquidation_taker_fee_rate
        if r > 0:
            fee = np.minimum(r * qt * np.abs(bpt), np.maximum(self.coll[T], 0.0))
            self.coll[T] -= fee
            self.fee_pool_cash += fee.sum()
            self.ledger.transfer_signed("liquidation_taker_fee", self.account[T], FEE_POOL, fee)
        lost = self.coll[T].copy()
        self.market_cash += lost.sum()
        self.ledger.transfer_signed("takeover_loss", self.account[T], MARKET, lost)
        self.coll[T] = 0.0
        self.qty[T] = 0.0
        for sd in (1, -1):
            m = self.side[T] == sd
            if m.any():
                tq = float(qt[m].sum())
                self._backstop_trade(sd, tq, float((qt[m] * bpt[m]).sum() / tq), "takeover_pnl")
        self._record_liq(step, rnd, t, T, "takeover", qt, bpt, bpt, fee, mark, eqT, mmT)
        return float(qt.sum())

    # ------------------------------------------------------------------ ADL
    def _adl(self, qty: float, price: float, mark: float, trigger: str, step: int, rnd: int, t: float) -> float:
        """Close ``qty`` of the backstop inventory against top-ranked opposite positions at ``price``.

        Returns the quantity deleveraged (less than ``qty`` if too few counterparties are left).
        """
        bs = self.backstop
        if qty <= DUST_QTY or bs.inv_qty == 0:
            return 0.0
        inv_side = 1 if bs.inv_qty > 0 else -1
        opp = self.side_idx[-inv_side]
        cand = opp[self.qty[opp] > 0]
        if cand.size == 0:
            self.totals.adl_shortfall_qty += qty
            return 0.0
        q, e, c = self.qty[cand], self.entry[cand], self.coll[cand]
        s = self.sidef[cand]
        # Counterparties closed at a price beyond their own bankruptcy are skipped (no pair overlap).
        ok = c + s * q * (price - e) > 0
        mm = self.tiers.maintenance_margin(q * mark)
        score = adl_score(self.venue.adl.ranking, self.side[cand], q, e, c, mark, mm)
        ok &= np.isfinite(score)
        cand, q, e, s, score = cand[ok], q[ok], e[ok], s[ok], score[ok]
        rule = self.venue.adl
        if rule.policy == "queue":
            order = _top_ranked(score, self.account[cand], q, qty)
            cand, q, e, s, score = cand[order], q[order], e[order], s[order], score[order]
            before = np.cumsum(q) - q
            take = np.clip(qty - before, 0.0, q)
        else:
            order = np.lexsort((self.account[cand], -score))
            cand, q, e, s, score = cand[order], q[order], e[order], s[order], score[order]
            equity = self.coll[cand] + s * q * (mark - e)
            take = adl_allocation(rule.policy, qty, q, q * mark, np.maximum(equity, 1e-12), rule.pro_rata_cap_fraction)
        hit = take > 0
        cand, take, e, s, score = cand[hit], take[hit], e[hit], s[hit], score[hit]
        done = float(take.sum())
        if done <= 0:
            self.totals.adl_shortfall_qty += qty
            return 0.0
        realized = s * take * (price - e)
        q_before = self.qty[cand].copy()
        self.coll[cand] += realized
        self.qty[cand] -= take
        self.market_cash -= realized.sum()
        self.ledger.transfer_signed("adl_pnl", MARKET, self.account[cand], realized)
        if rule.adl_maker_fee_rate > 0:  # Bybit: the deleveraged trader pays the maker fee on the ADL fill
            afee = np.minimum(rule.adl_maker_fee_rate * take * abs(price), np.maximum(self.coll[cand], 0.0))
            self.coll[cand] -= afee
            self.fee_pool_cash += afee.sum()
            self.ledger.transfer_signed("adl_maker_fee", self.account[cand], FEE_POOL, afee)
        self._close_dust(cand)
        self._track_oi(cand, q_before)
        self._refresh_lp(cand)
        self._backstop_trade(-inv_side, done, price, "adl_pnl")
        notional = take * price
        haircut = s * take * (mark - price)
        self.totals.adl_haircut_usd += float(np.maximum(haircut, 0.0).sum())
        self.adl_rows.add(step=step, round=rnd, t_s=t, account=self.account[cand], side=self.side[cand], qty=take,
                          price=price, notional_usd=notional, rank=np.arange(1, cand.size + 1), score=score,
                          realized_pnl_usd=realized, haircut_usd=haircut, trigger=trigger)
        self.totals.adl_notional_usd += notional.sum()
        self.totals.adl_count += int(cand.size)
        self._step_acc[3] += notional.sum()
        self._step_acc[4] += cand.size
        if done < qty - DUST_QTY:
            self.totals.adl_shortfall_qty += qty - done
        return done

    def _backstop_checks(self, mark: float, prev_mark: float, step: int, rnd: int, t: float) -> float:
        """ADL when the backstop cannot accept its inventory: net-notional cap or loss beyond its balance."""
        bs, rule = self.backstop, self.venue.backstop
        dropped = rule.adl_drawdown_fraction > 0 and self._fund_drawdown.dropped(t, bs.equity(mark))
        if bs.inv_qty == 0:
            return 0.0
        price = self._adl_price(mark, prev_mark)
        done = 0.0
        if dropped:
            # OKX: during a rapid drop of the fund, liquidated positions go straight to ADL.
            return self._adl(abs(bs.inv_qty), price, mark, "fund_drawdown", step, rnd, t)
        upnl = bs.inv_qty * (mark - bs.inv_entry)
        cash, f = max(bs.cash_usd, 0.0), rule.adl_loss_fraction
        if -upnl > f * cash:
            # Deleverage only what the backstop cannot carry: the least quantity q after which the loss
            # on the rest is within f x its cash again, ((|inv|-q)*l <= f*(cash + q*r)), where l is the
            # loss per unit at mark and r the PnL per unit realized at the ADL price.
            inv_side = 1.0 if bs.inv_qty > 0 else -1.0
            size = abs(bs.inv_qty)
            loss = -inv_side * (mark - bs.inv_entry)
            realized = inv_side * (price - bs.inv_entry)
            denom = loss + f * realized
            need = size if denom <= 0 else min(size, (size * loss - f * cash) / denom * (1.0 + 1e-9))
            self.totals.adl_for_loss += 1
            done += self._adl(need, price, mark, "backstop_loss", step, rnd, t)
        elif rule.max_net_notional_ratio > 0:
            cap_usd = rule.max_net_notional_ratio * max(bs.equity(mark), 0.0)
            excess = abs(bs.inv_qty) - cap_usd / mark
            if excess > DUST_QTY:
                done += self._adl(excess, price, mark, "net_notional_cap", step, rnd, t)
        return done

    def _adl_price(self, mark: float, prev_mark: float) -> float:
        """ADL fill price: the backstop's entry (bankruptcy price of the liquidated orders), previous mark or mark."""
        adl, bs = self.venue.adl, self.backstop
        if adl.price == "bankruptcy":
            return bs.inv_entry
        if adl.price == "previous_mark":
            return prev_mark
        # OKX: mark price, bankruptcy price once the fund is nearly depleted.
        if bs.equity(mark) < adl.bankruptcy_below_fund_fraction * self.fund_start_usd:
            return bs.inv_entry
        return mark

    # ------------------------------------------------------------------ one round
    def _round(self, step: int, rnd: int, t: float, exo: float, mark: float, prev_mark: float) -> bool:
        """One liquidation round at fixed mark. Returns True if any position or balance changed."""
        self.ledger.at(step, rnd, t)
        if self.drift is not None:
            return self.drift.round(self, step, rnd, t, exo, mark)
        if self.dydx is not None:
            return self._dydx_round(step, rnd, t, exo, mark)
        cand = self._candidates(mark)
        q = self.qty[cand]
        eq = self.coll[cand] + self.sidef[cand] * q * (mark - self.entry[cand])
        mm = self.tiers.maintenance_margin(q * mark)
        liq = eq < mm
        auction = self.mit.auction
        if auction is not None:
            auction.open(cand[liq], t, mark)
            running = auction.running()
            running = running[self.qty[running] > 0]
            extra = np.setdiff1d(running, cand[liq], assume_unique=True)
            if extra.size:   # auctions keep selling after the account recovers (dss clip.sol semantics)
                qx = self.qty[extra]
                cand = np.concatenate((cand, extra))
                eq = np.concatenate((eq, self.coll[extra] + self.sidef[extra] * qx * (mark - self.entry[extra])))
                mm = np.concatenate((mm, self.tiers.maintenance_margin(qx * mark)))
                liq = np.concatenate((liq, np.ones(extra.size, bool)))
                o = np.argsort(cand, kind="stable")
                cand, eq, mm, liq = cand[o], eq[o], mm[o], liq[o]
        if not liq.any():
            return False
        L, eqL, mmL = cand[liq], eq[liq], mm[liq]
        touched, q_touched = L, self.qty[L].copy()
        rule = self.venue.liquidation
        fill_total = takeover_total = 0.0
        n_events = 0
        notional_before = self._step_acc[1] + self._step_acc[2]

        # Hyperliquid backstop: equity below a fraction of MM -> the vault takes position and collateral at mark.
        if rule.backstop_below_mm_fraction > 0:
            bs_mask = eqL < rule.backstop_below_mm_fraction * mmL
            B = L[bs_mask]
            if B.size:
                qb = self.qty[B]
                bp = self.entry[B] - self.sidef[B] * self.coll[B] / qb
                realized = self.sidef[B] * qb * (mark - self.entry[B])
                self.coll[B] += realized
                self.market_cash -= realized.sum()
                self.ledger.transfer_signed("backstop_pnl", MARKET, self.account[B], realized)
                handed = self.coll[B].copy()   # the account's equity at mark, may be negative
                self.totals.trader_liquidation_loss_usd += np.maximum(handed, 0.0).sum()
                self.backstop.cash_usd += handed.sum()
                self.totals.takeover_pnl_usd += handed.sum()
                self.ledger.transfer_signed("backstop_collateral", self.account[B], self.backstop.party, handed)
                self.coll[B] = 0.0
                self.qty[B] = 0.0
                for sd in (1, -1):
                    m = self.side[B] == sd
                    if m.any():
                        self._backstop_trade(sd, float(qb[m].sum()), mark, "backstop_pnl")
                self._record_liq(step, rnd, t, B, "backstop", qb, np.full(B.size, mark), bp, np.zeros(B.size), mark,
                                 eqL[bs_mask], mmL[bs_mask])
                takeover_total += qb.sum()
                n_events += B.size
                if self.mit.auction is not None:
                    self.mit.auction.close(B)
                if self.backstop.cash_usd < 0:
                    self._pay_backstop(0.0, "backstop_pnl")
            L, eqL, mmL = L[~bs_mask], eqL[~bs_mask], mmL[~bs_mask]

        if L.size and rule.step_down_freeze_s > 0:
            # OKX: a position that got a step-down order waits out the freeze before it is looked at again.
            awake = self.frozen_until[L] <= t
            L, eqL, mmL = L[awake], eqL[awake], mmL[awake]

        if L.size:
            took_qty = 0.0
            qL = self.qty[L].copy()
            order = qL.copy()
            planned_partial = np.zeros(L.size, bool)
            step_down = np.zeros(L.size, bool)
            if rule.step_down_tiers:
                k = self.tiers.tier_index(qL * mark)
                step_down = k >= rule.step_down_from_tier - 1
                top = k[step_down] if rule.step_down_to == "lower_tier" else 1  # floor of tier k = top of tier k-1
                order[step_down] = qL[step_down] - self.tiers.floor_usd[top] / mark
                planned_partial |= step_down
                self.frozen_until[L[step_down]] = t + rule.step_down_freeze_s
            if rule.partial_threshold_usd > 0 and rule.partial_fraction < 1:
                big = (qL * mark > rule.partial_threshold_usd) & (self.cooldown_until[L] <= t)
                order[big] = qL[big] * rule.partial_fraction
                planned_partial |= big
                self.cooldown_until[L[big]] = t + rule.partial_cooldown_s
            bp = self._bankruptcy(L, qL)
            sells = self.side[L] > 0
            limit, waiting, ended = self._mitigated_orders(L, qL, order, planned_partial, bp, eqL, mmL, sells, mark, t)
            fok = step_down if rule.step_down_order == "fill_or_kill" else None
            fq = self._liquidation_fills(step, rnd, t, exo, mark, L, order, planned_partial, fok, eqL, mmL, limit)
            fill_total += fq.sum()
            n_events += int((~waiting).sum()) if self.venue.backstop.takeover_price == "bankruptcy" \
                else int((fq > 0).sum())

            # Binance: still deficient after the IOC -> closed at bankruptcy price, insurance fund takes over.
            # BitMEX / Bybit (close_at_bankruptcy): a full-close order's rest is taken over whatever the margin;
            # a deficient position after its step-down first gets the full limit order at the bankruptcy price.
            if self.venue.backstop.takeover_price == "bankruptcy":
                rest = (self.qty[L] > 0) & ~(step_down & (rule.step_down_freeze_s > 0))
                R = L[rest]
                if R.size:
                    qr = self.qty[R]
                    eq2 = self.coll[R] + self.sidef[R] * qr * (mark - self.entry[R])
                    deficient = (eq2 < self.tiers.maintenance_margin(qr * mark)) & ~waiting[rest] | ended[rest]
                    if rule.close_at_bankruptcy:
                        full = ~planned_partial[rest] & ~waiting[rest]
                        second = deficient & ~full
                        if second.any():
                            S = R[second]
                            pos = np.searchsorted(L, S)
                            fill_total += self._liquidation_fills(step, rnd, t, exo, mark, S, self.qty[S].copy(),
                                                                  np.zeros(S.size, bool), None, eqL[pos], mmL[pos]).sum()
                        deficient |= full
                    T = R[deficient & (self.qty[R] > 0)]
                    if T.size:
                        took = self._takeover(step, rnd, t, mark, T, eqL[np.searchsorted(L, T)],
                                              mmL[np.searchsorted(L, T)])
                        takeover_total += took
                        took_qty += took
            self._close_dust(L)
            if self.mit.throttle is not None:
                self.mit.throttle.record(t, (float(fill_total) + took_qty) * mark)
            if self.mit.auction is not None:
                self.mit.auction.close(L[(self.qty[L] <= 0) | ended])

        self._track_oi(touched, q_touched)
        self._refresh_lp(touched)
        adl_qty = self._backstop_checks(mark, prev_mark, step, rnd, t)
        progress = fill_total > 0 or takeover_total > 0 or adl_qty > 0
        self._step_acc[0] += n_events
        if progress:
            self.round_rows.add(step=step, round=rnd, t_s=t, mark_price=mark, last_price=self.impact.last(exo),
                                liquidations=n_events,
                                liquidated_notional_usd=self._step_acc[1] + self._step_acc[2] - notional_before,
                                market_fill_qty=fill_total, takeover_qty=takeover_total, adl_qty=adl_qty)
        return progress

    def _mitigated_orders(self, L, qL, order, planned_partial, bp, eqL, mmL, sells, mark, t):
        """Limit prices of this round's liquidation orders after the mitigations, and which orders wait.

        Returns ``(limit, waiting, ended)``: float64 limit price per order (the bankruptcy price, or the
        Dutch-auction price, held inside a limit-down band); bool, orders held back this round (throttle,
        running auction) that must not be taken over; bool, auctions that ended (price through the
        bankruptcy price or past ``tail_s``), whose rest goes to the backstop. ``order`` is edited in place.
        """
        limit = bp.copy()
        waiting = np.zeros(L.size, bool)
        ended = np.zeros(L.size, bool)
        auction = self.mit.auction
        if auction is not None:
            order[:] = qL          # the auction sells the whole position
            planned_partial[:] = False
            px, past_tail = auction.price(L, self.side[L], t)
            ended = past_tail | np.where(sells, px < bp, px > bp)
            limit = np.where(ended, bp, px)
            order[ended] = 0.0
            waiting = ~ended
        limit = np.where(sells, np.maximum(limit, self._floor_price), np.minimum(limit, self._cap_price))
        if self.mit.throttle is not None:
            prio = np.lexsort((L, eqL / mmL))   # most under-margined first
            # valued at mark: what may leave the account this round (the rest may be taken over at bankruptcy)
            at_stake = (qL if self.venue.backstop.takeover_price == "bankruptcy" else order) * mark
            keep = np.empty(L.size, bool)
            keep[prio] = self.mit.throttle.select(t, at_stake[prio])
            order[~keep] = 0.0
            waiting |= ~keep
            ended &= keep
        return limit, waiting, ended

    # ------------------------------------------------------------------ unwinding
    def _unwind(self, exo: float, mark: float, dt_s: float) -> float:
        """The backstop works part of its inventory into the book (limit ``unwind_max_slippage_pct`` from mark)."""
        bs, rule = self.backstop, self.venue.backstop
        if bs.inv_qty == 0:
            return 0.0
        qty = abs(bs.inv_qty) * (1.0 - 0.5 ** (dt_s / rule.unwind_half_life_s))
        if abs(bs.inv_qty) * mark < 100.0:  # close the last dust at once
            qty = abs(bs.inv_qty)
        slip = rule.unwind_max_slippage_pct / 100.0
        if bs.inv_qty > 0:
            fq, notional = self.impact.sell(exo, np.array([qty]), np.array([mark * (1 - slip)]))
        else:
            fq, notional = self.impact.buy(exo, np.array([qty]), np.array([mark * (1 + slip)]))
        if fq[0] <= 0:
            return 0.0
        side = -1 if bs.inv_qty > 0 else 1
        self.totals.market_net_bought_qty += side * fq[0]
        self._backstop_trade(side, float(fq[0]), float(notional[0] / fq[0]), "unwind_pnl")
        return float(fq[0])

    # ------------------------------------------------------------------ the run
    def run(self) -> None:
        """Run every step of the price path. Results are in the table builders, ``totals`` and ``ledger``."""
        path = self.path
        prev_mark = float(path.price[0])
        prev_t = 0.0
        for step in range(path.t_s.size):
            t = float(path.t_s[step])
            dt = t - prev_t if step else (float(path.t_s[1] - path.t_s[0]) if path.t_s.size > 1 else 1.0)
            if step:
                self.impact.decay(dt)
            exo = float(path.price[step])
            self._step_acc[:] = 0
            if self.drift is not None:
                self.drift.observe(self.impact.reference(exo), dt)
            if self.dydx is not None:
                self._dydx_new_block()
            rounds = 0
            cap_hit = False
            halted = self._mitigation_step(t, self.impact.reference(exo), dt)
            while True:
                index, last = self.impact.reference(exo), self.impact.last(exo)
                raw_mark = exo if self.replay else self.mark_rule.value(index, last, dt, t)
                mark = self._mitigated_mark(raw_mark, index, last, dt)
                if halted:   # no trading: no liquidation fills, no ADL, no unwinding
                    break
                if rounds >= self.max_rounds:
                    cap_hit = self._has_liquidatable(mark)
                    break
                if not self._round(step, rounds, t, exo, mark, prev_mark):
                    break
                rounds += 1
            if cap_hit:
                self.totals.round_cap_hits += 1
            self.mark_rule.commit(index, last, dt)
            if self.mit.mark is not None:
                self.mit.mark.commit(raw_mark, index, last, dt)
            self.ledger.at(step, rounds, t)
            unwound = 0.0
            if not halted:
                unwound = self._unwind(exo, mark, dt)
            if not halted and self.drift is None:   # Drift socializes bankrupt losses instead of ADL
                self._backstop_checks(mark, prev_mark, step, rounds, t)
            self.totals.rounds_max = max(self.totals.rounds_max, rounds)
            self.totals.liquidations += int(self._step_acc[0])
            self.totals.liquidated_long_usd += self._step_acc[1]
            self.totals.liquidated_short_usd += self._step_acc[2]
            bs = self.backstop
            self.step_rows.add(
                step=step, t_s=t, exogenous_price=exo, index_price=index, last_price=last, mark_price=mark,
                rounds=rounds, round_cap_hit=cap_hit, liquidations=int(self._step_acc[0]),
                liquidated_notional_usd=self._step_acc[1] + self._step_acc[2],
                liquidated_long_usd=self._step_acc[1], liquidated_short_usd=self._step_acc[2],
                adl_notional_usd=self._step_acc[3], adl_count=int(self._step_acc[4]), unwind_qty=unwound,
                insurance_fund_cash_usd=self.drift.if_cash if self.drift else bs.cash_usd,
                insurance_fund_equity_usd=self.drift.if_cash if self.drift else bs.equity(mark),
                backstop_inventory_qty=bs.inv_qty, bad_debt_usd=self.totals.bad_debt_usd,
                transient_impact_bid=self.impact.d_bid, transient_impact_ask=self.impact.d_ask,
                permanent_impact_factor=self.impact.permanent,
                open_interest_long_qty=self.oi_qty[1] + max(bs.inv_qty, 0.0),
                open_interest_short_qty=self.oi_qty[-1] + max(-bs.inv_qty, 0.0), halted=halted,
                margin_multiplier=self.mit.margin.multiplier if self.mit.margin is not None else 1.0,
            )
            prev_mark, prev_t = mark, t
        self.final_mark = prev_mark
        if self.dydx is not None and self.dydx.final_settlement_at_end:
            self.final_settlement()

    def _mitigation_step(self, t: float, index: float, dt_s: float) -> bool:
        """Start-of-step mitigation updates: circuit-breaker state and volatility-scaled margin.

        Returns True when trading is halted for this step.
        """
        m = self.mit
        if m.margin is not None and m.margin.update(index, dt_s):
            self.tiers = m.margin.tiers()
            self._refresh_lp(np.flatnonzero(self.qty > 0))
        if m.breaker is None:
            return False
        state = m.breaker.update(t, index, dt_s)
        self._floor_price, self._cap_price = state.floor_price, state.cap_price
        if state.halted:
            self.halted_steps += 1
        return state.halted

    def _mitigated_mark(self, raw_mark: float, index: float, last: float, dt_s: float) -> float:
        """The venue's mark after smoothing, held inside a limit-down / limit-up band."""
        mark = raw_mark if self.mit.mark is None else self.mit.mark.value(raw_mark, index, last, dt_s)
        return min(max(mark, self._floor_price), self._cap_price)

    def _has_liquidatable(self, mark: float) -> bool:
        if self.drift is not None:   # below maintenance, or being liquidated and below maintenance + buffer
            i = np.flatnonzero(self.qty > 0)
            q = self.qty[i]
            eq = self.coll[i] + self.sidef[i] * q * (mark - self.entry[i])
            req = self.drift.requirement(q, mark)
            buf = q * mark * self.venue.drift.liquidation_margin_buffer_ratio
            return bool(((eq < req) | (self.drift.being[i] & (eq < req + buf))).any())
        open_idx = self._candidates(mark)
        q = self.qty[open_idx]
        eq = self.coll[open_idx] + self.sidef[open_idx] * q * (mark - self.entry[open_idx])
        return bool((eq < self.tiers.maintenance_margin(q * mark)).any())

    # ------------------------------------------------------------------ checks
    def conservation(self) -> dict[str, float]:
        """Money and open-interest checks.

        Returns:
            ``ledger_imbalance_usd``: sum over all parties of their balance change (0 if money is conserved);
            ``ledger_reconciliation_usd``: worst |state change - ledger net flow| over the party groups;
            ``open_interest_mismatch_qty``: inside net position change minus net purchases from the market.
        """
        end, start = self._money(), self._start_money
        change = {k: end[k] - start[k] for k in end}
        flows = self.ledger.net_flows()
        traders = sum(v for p, v in flows.items() if p >= 0)
        ledger_by_group = {
            "traders": traders,
            "backstop": flows.get(self.backstop.party, 0.0),
            "market": flows.get(MARKET, 0.0),
            "bad_debt": flows.get(BAD_DEBT, 0.0),
            "fee_pool": flows.get(FEE_POOL, 0.0),
        }
        if self.drift is not None:
            ledger_by_group["insurance_fund"] = flows.get(INSURANCE_FUND, 0.0)
        recon = max(abs(change[k] - ledger_by_group[k]) for k in change)
        oi_mismatch = (self._inside_net_qty() - self._start_inside_net_qty) - self.totals.market_net_bought_qty
        return {
            "ledger_imbalance_usd": float(sum(change.values())),
            "ledger_reconciliation_usd": float(recon),
            "open_interest_mismatch_qty": float(oi_mismatch),
        }
