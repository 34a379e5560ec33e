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
from delever.engine.dydx_path import DydxPath
from delever.engine.ledger import BAD_DEBT, INSURANCE_FUND, LIQUIDATOR_VAULT, MARKET, Ledger
from delever.engine.mark import MarkPrice
from delever.engine.tables import TableBuilder
from delever.market.depth import DepthCurve
from delever.market.impact import Impact
from delever.paths import PricePath
from delever.venues.formulas import adl_score, liquidation_price_binance
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
    "open_interest_short_qty": np.float64,
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
        seed: Seed of the venue's pseudo-random choices (dYdX liquidation offsets and deleveraging starts).
    """

    def __init__(self, venue: VenueRules, tiers: MarginTiers, book: PositionBook, depth: DepthCurve, path: PricePath,
                 permanent_fraction: float, resilience_half_life_s: float, max_walk_pct: float, max_rounds: int,
                 insurance_fund_usd: float, seed: int = 0) -> None:
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
        self.mark_rule = MarkPrice(m.method, m.basis_window_s, m.funding_basis)
        party = INSURANCE_FUND if venue.backstop.holder == "insurance_fund" else LIQUIDATOR_VAULT
        self.backstop = Backstop(party, float(insurance_fund_usd))
        self.market_cash = 0.0
        self.bad_debt_cash = 0.0
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
        self._start_money = self._money()
        self._start_inside_net_qty = self._inside_net_qty()
        self._step_acc = np.zeros(5)  # liquidations, long usd, short usd, adl usd, adl count (current step)
        self._dydx_init(seed)         # dYdX venues: liquidation/deleveraging path in engine.dydx_path

    # ------------------------------------------------------------------ accounting helpers
    def _money(self) -> dict[str, float]:
        return {
            "traders": float(self.coll.sum() + self.free.sum()),
            "backstop": self.backstop.cash_usd,
            "market": self.market_cash,
            "bad_debt": self.bad_debt_cash,
        }

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
        if live.any():
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
        if bs.inv_qty == 0:
            return 0.0
        price = bs.inv_entry if self.venue.adl.price == "bankruptcy" else prev_mark
        done = 0.0
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

    # ------------------------------------------------------------------ one round
    def _round(self, step: int, rnd: int, t: float, exo: float, mark: float, prev_mark: float) -> bool:
        """One liquidation round at fixed mark. Returns True if any position or balance changed."""
        self.ledger.at(step, rnd, t)
        if self.dydx is not None:
            return self._dydx_round(step, rnd, t, exo, mark)
        cand = self._candidates(mark)
        q = self.qty[cand]
        eq = self.coll[cand] + self.sidef[cand] * q * (mark - self.entry[cand])
        mm = self.tiers.maintenance_margin(q * mark)
        liq = eq < mm
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
                if self.backstop.cash_usd < 0:
                    self._pay_backstop(0.0, "backstop_pnl")
            L, eqL, mmL = L[~bs_mask], eqL[~bs_mask], mmL[~bs_mask]

        if L.size:
            qL = self.qty[L].copy()
            order = qL.copy()
            planned_partial = np.zeros(L.size, bool)
            if rule.step_down_tiers:
                k = self.tiers.tier_index(qL * mark)
                down = k > 0
                target = self.tiers.floor_usd[k[down]] / mark
                order[down] = qL[down] - target
                planned_partial[down] = True
            if rule.partial_threshold_usd > 0 and rule.partial_fraction < 1:
                big = (qL * mark > rule.partial_threshold_usd) & (self.cooldown_until[L] <= t)
                order[big] = qL[big] * rule.partial_fraction
                planned_partial |= big
                self.cooldown_until[L[big]] = t + rule.partial_cooldown_s
            bp = self.entry[L] - self.sidef[L] * self.coll[L] / qL
            fq = np.zeros(L.size)
            notional = np.zeros(L.size)
            sells = self.side[L] > 0
            if sells.any():
                fq[sells], notional[sells] = self.impact.sell(exo, order[sells], bp[sells])
            if (~sells).any():
                fq[~sells], notional[~sells] = self.impact.buy(exo, order[~sells], bp[~sells])
            filled = fq > 0
            if filled.any():
                F = L[filled]
                realized = self.sidef[F] * (notional[filled] - fq[filled] * self.entry[F])
                self.coll[F] += realized
                self.market_cash -= realized.sum()
                self.ledger.transfer_signed("liquidation_pnl", MARKET, self.account[F], realized)
                fee = np.minimum(rule.clearance_fee_rate * notional[filled], np.maximum(self.coll[F], 0.0))
                self.coll[F] -= fee
                self.backstop.cash_usd += fee.sum()
                self.ledger.transfer_signed("clearance_fee", self.account[F], self.backstop.party, fee)
                self.qty[F] = np.where(fq[filled] >= self.qty[F] - DUST_QTY, 0.0, self.qty[F] - fq[filled])
                self.totals.market_net_bought_qty -= float((self.sidef[F] * fq[filled]).sum())
                kind = np.where(planned_partial[filled] & (self.qty[F] > 0), "partial", "market")
                self._record_liq(step, rnd, t, F, kind, fq[filled], notional[filled] / fq[filled], bp[filled], fee,
                                 mark, eqL[filled], mmL[filled])
                fill_total += fq.sum()
            n_events += L.size if self.venue.backstop.takeover_price == "bankruptcy" else int(filled.sum())

            # Binance: still deficient after the IOC -> closed at bankruptcy price, insurance fund takes over.
            if self.venue.backstop.takeover_price == "bankruptcy":
                rest = self.qty[L] > 0
                R = L[rest]
                if R.size:
                    qr = self.qty[R]
                    eq2 = self.coll[R] + self.sidef[R] * qr * (mark - self.entry[R])
                    deficient = eq2 < self.tiers.maintenance_margin(qr * mark)
                    T, qt = R[deficient], qr[deficient]
                    if T.size:
                        bpt = self.entry[T] - self.sidef[T] * self.coll[T] / qt
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
                        pos = np.searchsorted(L, T)
                        self._record_liq(step, rnd, t, T, "takeover", qt, bpt, bpt, np.zeros(T.size), mark,
                                         eqL[pos], mmL[pos])
                        takeover_total += qt.sum()
            self._close_dust(L)

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
            if self.dydx is not None:
                self._dydx_new_block()
            rounds = 0
            cap_hit = False
            while True:
                index, last = self.impact.reference(exo), self.impact.last(exo)
                mark = exo if self.replay else self.mark_rule.value(index, last, dt)
                if rounds >= self.max_rounds:
                    cap_hit = self._has_liquidatable(mark)
                    break
                if not self._round(step, rounds, t, exo, mark, prev_mark):
                    break
                rounds += 1
            if cap_hit:
                self.totals.round_cap_hits += 1
            self.mark_rule.commit(index, last, dt)
            self.ledger.at(step, rounds, t)
            unwound = self._unwind(exo, mark, dt)
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
                insurance_fund_cash_usd=bs.cash_usd, insurance_fund_equity_usd=bs.equity(mark),
                backstop_inventory_qty=bs.inv_qty, bad_debt_usd=self.totals.bad_debt_usd,
                transient_impact_bid=self.impact.d_bid, transient_impact_ask=self.impact.d_ask,
                permanent_impact_factor=self.impact.permanent,
                open_interest_long_qty=self.oi_qty[1] + max(bs.inv_qty, 0.0),
                open_interest_short_qty=self.oi_qty[-1] + max(-bs.inv_qty, 0.0),
            )
            prev_mark, prev_t = mark, t
        self.final_mark = prev_mark
        if self.dydx is not None and self.dydx.final_settlement_at_end:
            self.final_settlement()

    def _has_liquidatable(self, mark: float) -> bool:
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
        }
        recon = max(abs(change[k] - ledger_by_group[k]) for k in change)
        oi_mismatch = (self._inside_net_qty() - self._start_inside_net_qty) - self.totals.market_net_bought_qty
        return {
            "ledger_imbalance_usd": float(sum(change.values())),
            "ledger_reconciliation_usd": float(recon),
            "open_interest_mismatch_qty": float(oi_mismatch),
        }
