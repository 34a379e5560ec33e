"""Drift protocol-v2 liquidation path of the cascade engine (used when ``VenueRules.drift`` is set).

Per round at the oracle price ``P`` (the engine's ``index``; venue mark method ``index``), following
``controller/liquidation.rs`` ``liquidate_perp`` and ``resolve_perp_bankruptcy`` (drift-labs/protocol-v2
@ e88cc473; formulas in :mod:`delever.venues.drift`):

1. Margin check: requirement ``q P mr(q)`` with size premium; an account is liquidatable when equity
   < requirement, and stays "being liquidated" until equity >= requirement + ``q P buffer``.
2. ``PriceBandsBreached``: no liquidation while ``|P - twap_5min| / twap_5min >= max divergence``.
3. The liquidator (the engine's backstop, party ``LIQUIDATOR_VAULT``) takes over base at ``P``; the
   user pays the liquidator fee to the liquidator and the IF fee to the insurance fund. Amount = base
   curing the shortage incl. buffer, times the time ramp (slots since entering liquidation =
   seconds / slot time), the whole position when worth <= $50; capped by what the liquidator can
   carry at its initial margin (Drift: ``meets_initial_margin_requirement`` after the takeover).
4. Bankruptcy (no position left, negative balance): the insurance fund pays ``min(loss, IF - 1,
   quote_max_insurance - settled)``, then the market's fee pool, then the rest is socialized over
   every open position (book and liquidator inventory, longs and shorts alike) in proportion to size,
   Drift's cumulative-funding delta ``loss / (base_long + |base_short|)`` paid at once.

Simplifications: continuous sizes (no order step rounding), one market, no open orders, the
liquidator fee does not rise after the 1,500-slot grace period (``get_liquidation_fee``).
"""

from __future__ import annotations

import numpy as np

from delever.engine.ledger import BAD_DEBT, FEE_POOL, INSURANCE_FUND, MARKET
from delever.engine.tables import TableBuilder
from delever.venues import drift as dm
from delever.venues.rules import DriftLiquidationRule, DriftMarket

BANKRUPTCY_SCHEMA = {
    "step": np.int32, "round": np.int32, "t_s": np.float64, "account": np.int64, "loss_usd": np.float64,
    "insurance_fund_usd": np.float64, "fee_pool_usd": np.float64, "socialized_usd": np.float64,
    "funding_delta_usd_per_base": np.float64, "unrecovered_usd": np.float64,
}


class DriftLiquidation:
    """State and round logic of Drift's perp liquidation for one engine.

    Args:
        rule: The venue's ``drift`` section.
        market: The instrument's Drift market parameters.
        n: Number of positions in the book.
        insurance_fund_usd: Insurance fund vault balance at the start (USD).
    """

    def __init__(self, rule: DriftLiquidationRule, market: DriftMarket, n: int, insurance_fund_usd: float) -> None:
        self.rule, self.market = rule, market
        self.if_cash = float(insurance_fund_usd)
        self.fee_pool_cash = float(market.fee_pool_usd)
        self.settled_insurance = 0.0
        self.being = np.zeros(n, bool)
        self.entered_slot = np.zeros(n)
        self.margin_freed = np.zeros(n)
        self.twap: float | None = None
        self.rows = TableBuilder(BANKRUPTCY_SCHEMA)

    # ------------------------------------------------------------------ oracle TWAP (price bands)
    def observe(self, oracle: float, dt_s: float) -> None:
        """Update the 5-min oracle TWAP with the step's oracle price (time-weighted, window ``oracle_twap_window_s``)."""
        if self.twap is None:
            self.twap = oracle
            return
        w = min(max(dt_s, 0.0), self.rule.oracle_twap_window_s)
        self.twap = (self.twap * (self.rule.oracle_twap_window_s - w) + oracle * w) / self.rule.oracle_twap_window_s

    # ------------------------------------------------------------------ margin
    def requirement(self, q: np.ndarray, price: float, initial: bool = False) -> np.ndarray:
        """Margin requirement (USD) of sizes ``q`` at ``price`` (maintenance, or initial)."""
        m = self.market
        base = m.margin_ratio_initial if initial else m.margin_ratio_maintenance
        return q * price * dm.margin_ratio(q, base, m.imf_factor)

    # ------------------------------------------------------------------ one round
    def round(self, eng, step: int, rnd: int, t: float, exo: float, price: float) -> bool:
        """One liquidation round at oracle ``price`` (``exo``: the step's exogenous price, for the book's last price). Returns True if any position or balance changed."""
        cand = eng._candidates(price)
        cand = cand[eng.qty[cand] > 0]
        q = eng.qty[cand]
        eq = eng.coll[cand] + eng.sidef[cand] * q * (price - eng.entry[cand])
        req = self.requirement(q, price)
        buf = q * price * self.rule.liquidation_margin_buffer_ratio
        being = self.being[cand]
        leave = being & (eq >= req + buf)
        self.being[cand[leave]] = False
        self.margin_freed[cand[leave]] = 0.0
        act = (eq < req) | (being & ~leave)
        if not act.any():
            return False
        if self.twap is not None and dm.oracle_twap_too_divergent(price, self.twap, self.rule.max_oracle_twap_5min_divergence):
            eng.totals.price_band_refusals += 1
            return False
        L, q, eqL, reqL, bufL = cand[act], q[act], eq[act], req[act], buf[act]
        slot = t / self.rule.slot_time_s
        new = ~self.being[L]
        self.being[L[new]] = True
        self.entered_slot[L[new]] = slot
        self.margin_freed[L[new]] = 0.0

        m = self.market
        shortage = reqL + bufL - eqL
        mr_buf = dm.margin_ratio(q, m.margin_ratio_maintenance, m.imf_factor) + self.rule.liquidation_margin_buffer_ratio
        if_rate = dm.perp_if_fee(shortage, q, mr_buf, m.liquidator_fee, price, m.if_liquidation_fee)
        cover = dm.base_to_cover_margin_shortage(shortage, mr_buf, m.liquidator_fee, if_rate, price)
        pct = dm.max_pct_to_liquidate(shortage, slot - self.entered_slot[L], self.rule.initial_pct_to_liquidate,
                                      self.rule.liquidation_duration_slots, self.margin_freed[L])
        allowed = np.minimum(cover, 1e300) * pct
        small = q * price <= dm.FULL_LIQUIDATION_SHORTAGE_USD   # "if position is less than $50, liquidator can liq all"
        take = np.minimum(q, np.maximum(allowed, np.where(small, q, 0.0)))
        take = self._cap_by_liquidator(eng, L, take, price)
        hit = take > 1e-9 * q   # float residue of a used-up ramp or capacity is no transfer (Drift: order step size)
        if not hit.any():
            return False
        L, q, take, eqL, reqL, shortage, if_rate, cover = (
            L[hit], q[hit], take[hit], eqL[hit], reqL[hit], shortage[hit], if_rate[hit], cover[hit])
        s, e = eng.sidef[L], eng.entry[L]
        bp = e - s * eng.coll[L] / q
        q_before = q.copy()

        realized = s * take * (price - e)          # the user's position is valued at the oracle
        eng.coll[L] += realized
        eng.market_cash -= realized.sum()
        eng.ledger.transfer_signed("liquidation_pnl", MARKET, eng.account[L], realized)
        value = take * price
        liq_fee = value * m.liquidator_fee
        if_fee = value * if_rate
        eng.coll[L] -= liq_fee + if_fee
        eng.backstop.cash_usd += liq_fee.sum()
        self.if_cash += if_fee.sum()
        eng.ledger.transfer_signed("liquidator_fee", eng.account[L], eng.backstop.party, liq_fee)
        eng.ledger.transfer_signed("if_liquidation_fee", eng.account[L], INSURANCE_FUND, if_fee)
        eng.totals.liquidator_fee_usd += float(liq_fee.sum())
        eng.totals.if_fee_usd += float(if_fee.sum())
        eng.totals.trader_liquidation_loss_usd += float((liq_fee + if_fee).sum())   # takeover at the oracle: no slippage
        eng.qty[L] = np.where(take >= q - dm_dust(q), 0.0, q - take)
        for sd in (1, -1):
            mask = eng.side[L] == sd
            if mask.any():
                eng._backstop_trade(sd, float(take[mask].sum()), price, "liquidator_pnl")

        q_after = eng.qty[L]
        eq_after = eng.coll[L] + s * q_after * (price - e)
        short_after = np.maximum(self.requirement(q_after, price) + q_after * price * self.rule.liquidation_margin_buffer_ratio
                                 - eq_after, 0.0)
        self.margin_freed[L] += np.maximum(shortage - short_after, 0.0)
        done = (take >= cover * (1 - 1e-12)) | (q_after <= 0)
        self.being[L[done]] = False
        self.margin_freed[L[done]] = 0.0
        kind = np.where(q_after > 0, "partial", "takeover")
        eng._record_liq(step, rnd, t, L, kind, take, np.full(L.size, price), bp, liq_fee + if_fee, price, eqL, reqL)
        eng._step_acc[0] += L.size

        bankrupt = L[(q_after <= 0) & (eng.coll[L] < 0)]
        if bankrupt.size:
            self._resolve_bankruptcy(eng, bankrupt, step, rnd, t)
        eng._close_dust(L)
        eng._track_oi(L, q_before)
        eng._refresh_lp(L)
        if eng.backstop.cash_usd < 0:
            eng._pay_backstop(0.0, "liquidator_pnl")
        eng.round_rows.add(step=step, round=rnd, t_s=t, mark_price=price, last_price=eng.impact.last(exo),
                           liquidations=int(L.size), liquidated_notional_usd=float(value.sum()), market_fill_qty=0.0,
                           takeover_qty=float(take.sum()), adl_qty=0.0)
        return True

    def _cap_by_liquidator(self, eng, L: np.ndarray, take: np.ndarray, price: float) -> np.ndarray:
        """Limit takeovers (in account order) to what the liquidator can carry at its initial margin.

        Drift requires the liquidator to meet its initial margin after the takeover, fee received:
        ``equity + f P x >= imr P (I + x)`` for exposure ``I`` on the taken side, so
        ``x <= (equity - imr P I) / (P (imr - f))``. The size premium is taken at the no-premium bound of the
        resulting size; the ratio only grows with size, so the bound never breaks the margin.
        """
        m = self.market
        equity = eng.backstop.equity(price)
        inv = eng.backstop.inv_qty
        out = take.copy()
        for sd in (1, -1):   # longs taken over make the liquidator long
            mask = eng.side[L] == sd
            if not mask.any():
                continue
            exposure = sd * inv
            base_room = max((equity - m.margin_ratio_initial * price * exposure)
                            / (price * (m.margin_ratio_initial - m.liquidator_fee)), 0.0)
            imr = float(dm.margin_ratio(max(exposure + base_room, 0.0), m.margin_ratio_initial, m.imf_factor))
            room = max((equity - imr * price * exposure) / (price * (imr - m.liquidator_fee)), 0.0)
            t = out[mask]
            before = np.cumsum(t) - t
            t = np.clip(room - before, 0.0, t)
            out[mask] = t
            inv += sd * float(t.sum())
            equity += m.liquidator_fee * price * float(t.sum())
        return out

    # ------------------------------------------------------------------ bankruptcy
    def _resolve_bankruptcy(self, eng, idx: np.ndarray, step: int, rnd: int, t: float) -> None:
        """Bring bankrupt accounts (no position, negative balance) to zero: IF, then fee pool, then socialized."""
        m = self.market
        for a in idx.tolist():
            loss = -float(eng.coll[a])
            if loss <= 0:
                continue
            if_pay = max(min(loss, self.if_cash - 1.0, m.quote_max_insurance_usd - self.settled_insurance), 0.0)
            self.if_cash -= if_pay
            self.settled_insurance += if_pay
            eng.ledger.transfer_signed("bankruptcy_insurance_fund", INSURANCE_FUND, eng.account[a], if_pay)
            rest = loss - if_pay
            fee_pay = min(rest, self.fee_pool_cash)
            self.fee_pool_cash -= fee_pay
            eng.ledger.transfer_signed("bankruptcy_fee_pool", FEE_POOL, eng.account[a], fee_pay)
            social = rest - fee_pay
            delta, unrecovered = self._socialize(eng, a, social) if social > 0 else (0.0, 0.0)
            eng.coll[a] = 0.0
            eng.totals.bankruptcy_loss_usd += loss
            eng.totals.insurance_fund_bankruptcy_usd += if_pay
            eng.totals.fee_pool_bankruptcy_usd += fee_pay
            eng.totals.socialized_loss_usd += social - unrecovered
            self.rows.add(step=step, round=rnd, t_s=t, account=eng.account[[a]], loss_usd=loss,
                          insurance_fund_usd=if_pay, fee_pool_usd=fee_pay, socialized_usd=social - unrecovered,
                          funding_delta_usd_per_base=delta, unrecovered_usd=unrecovered)

    def _socialize(self, eng, account_row: int, loss: float) -> tuple[float, float]:
        """Charge ``loss`` to every open position pro rata by size. Returns (per-base delta, unrecovered)."""
        payers = np.flatnonzero(eng.qty > 0)
        inv = abs(eng.backstop.inv_qty)
        total = float(eng.qty[payers].sum()) + inv
        if total <= 0:   # Drift: CantResolvePerpBankruptcy; nobody left to charge -> bad debt
            eng.bad_debt_cash -= loss
            eng.totals.bad_debt_usd += loss
            eng.ledger.transfer_signed("bad_debt", BAD_DEBT, eng.account[account_row], loss)
            return 0.0, loss
        delta = loss / total
        charge = eng.qty[payers] * delta
        eng.coll[payers] -= charge
        eng.ledger.transfer_signed("socialized_loss", eng.account[payers], eng.account[account_row], charge)
        if inv > 0:
            eng.backstop.cash_usd -= inv * delta
            eng.ledger.transfer_signed("socialized_loss", eng.backstop.party, eng.account[account_row], inv * delta)
        eng._refresh_lp(payers)
        return delta, 0.0


def dm_dust(q: np.ndarray) -> np.ndarray:
    """Relative float slack under which a takeover counts as the whole position."""
    return 1e-12 * q
