"""dYdX v4 liquidation path of the cascade engine (venue-mechanics.md §5; dydxprotocol/v4-chain @ 84d4664b).

Used when the venue has a ``[dydx]`` section (``VenueRules.dydx``); one engine step is one block:

* Margin is checked at the oracle (the engine's index, mark method ``index``): ``TNC < TMMR``.
* Up to ``max_liquidation_attempts_per_block`` liquidatable accounts, taken from a pseudo-random
  offset in account order, each at most once per block; their orders are sorted by
  ``|fillable - oracle| / oracle`` then notional, descending (``LiquidateSubaccountsAgainstOrderbook``,
  ``SortLiquidationOrders``).
* Order size: ``min(position block limit, subaccount notional left this block)``; IOC at the
  fillable price (``GetLiquidatablePositionSizeDelta``, ``GetFillablePrice``).
* Per fill: surplus over the bankruptcy quote -> fee ``min(max fee x notional, surplus)`` to the
  insurance fund; a deficit is paid by the fund. A fill whose deficit would overdraw the fund or the
  account's per-block insurance-loss limit is not made: the order is cut to the largest size that
  stays within both (``validateMatchedLiquidation``; the book is continuous here, so the cut is exact
  rather than at a maker order's boundary).
* The fund never takes positions. An order that fills nothing, from an account with TNC < 0, goes
  to deleveraging (up to ``max_deleveraging_attempts_per_block``): the whole position is offset
  against opposite positions visited from a pseudo-random start (seeded), each giving
  ``min(remaining, its size)`` at the deleveraged account's bankruptcy price, skipping pairs whose
  state transition is invalid (non-overlapping bankruptcy prices), at most
  ``max_deleveraging_subaccounts_to_iterate`` visited (``OffsetSubaccountPerpetualPosition``).
* ``final_settlement``: every open position is closed by deleveraging, at the oracle price if the
  account's TNC >= 0, else at its bankruptcy price (``CanDeleverageSubaccount``,
  ``getDeleveragingQuoteQuantumsDelta``).

Single-market simplifications: an account's TNC/TMMR are its one position's; the bankruptcy price
per unit is then ``entry - side x collateral / qty`` for any delta; open interest for the IMF's OI
scaling is the simulated book's long open interest at the oracle.
"""

from __future__ import annotations

import copy

import numpy as np

from delever.engine.ledger import MARKET
from delever.venues import dydx as dx

DUST = 1e-12


class DydxPath:
    """Mixin of ``CascadeEngine``: the dYdX liquidation, deleveraging and final-settlement steps."""

    def _dydx_init(self, seed: int) -> None:
        rule = self.venue.dydx
        self.dydx = rule
        if rule is None:
            return
        lt = self.venue.dydx_tier_for(self.instrument)
        self._dx_tier = lt
        self._dx_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x64596458]))
        n = self.qty.size
        self._dx_tried = np.zeros(n, bool)
        self._dx_notional_left = np.zeros(n)
        self._dx_if_left = np.zeros(n)
        self._dx_queue: list[int] = []
        self._dydx_new_block()

    def _dydx_new_block(self) -> None:
        """Per-block state: attempts, subaccount block limits, the deleveraging queue."""
        r = self.dydx
        self._dx_tried[:] = False
        self._dx_attempts_left = r.max_liquidation_attempts_per_block
        self._dx_delev_left = r.max_deleveraging_attempts_per_block
        self._dx_notional_left[:] = r.subaccount_max_notional_liquidated_usd
        self._dx_if_left[:] = r.subaccount_max_insurance_lost_usd
        self._dx_queue.clear()

    def _dx_imf(self, oracle: float) -> float:
        lt = self._dx_tier
        return float(dx.effective_imf(lt.imf, self.oi_qty[1] * oracle, lt.open_interest_lower_cap_usd,
                                      lt.open_interest_upper_cap_usd))

    def _dx_bankruptcy(self, i) -> np.ndarray:
        return self.entry[i] - self.sidef[i] * self.coll[i] / self.qty[i]

    # ------------------------------------------------------------------ one round (part of a block)
    def _dydx_round(self, step: int, rnd: int, t: float, exo: float, oracle: float) -> bool:
        """Liquidation orders for accounts not yet tried this block, then deleveraging. True if anything moved."""
        r = self.dydx
        cand = self._candidates(oracle)
        cand = cand[~self._dx_tried[cand]]
        q = self.qty[cand]
        eq = self.coll[cand] + self.sidef[cand] * q * (oracle - self.entry[cand])
        mm = self.tiers.maintenance_margin(q * oracle)
        liq = dx.is_liquidatable(eq, mm)
        L, eqL, mmL = cand[liq], eq[liq], mm[liq]
        progress = False
        n_events = 0
        fill_total = 0.0
        notional_before = self._step_acc[1] + self._step_acc[2]
        if L.size and self._dx_attempts_left > 0:
            k = min(L.size, self._dx_attempts_left)
            pick = (int(self._dx_rng.integers(L.size)) + np.arange(k)) % L.size
            P, eqP, mmP = L[pick], eqL[pick], mmL[pick]
            self._dx_attempts_left -= k
            self._dx_tried[P] = True
            qP = self.qty[P]
            size = dx.liquidatable_qty(qP, oracle, r.min_position_notional_liquidated_usd,
                                       r.max_position_portion_liquidated_ppm / dx.PPM, self._dx_notional_left[P])
            fp = dx.fillable_price(self.sidef[P] * qP, oracle, mmP, eqP, mmP, r.bankruptcy_adjustment_ppm / dx.PPM,
                                   r.spread_to_maintenance_margin_ratio_ppm / dx.PPM)
            order = np.lexsort((self.account[P], -size * oracle, -np.abs(fp - oracle) / oracle))
            for j in order:
                filled = self._dydx_liquidate(int(P[j]), float(size[j]), float(fp[j]), exo, oracle, float(eqP[j]),
                                              float(mmP[j]), step, rnd, t)
                fill_total += filled
                n_events += 1
                if filled <= 0:
                    self._dx_queue.append(int(P[j]))
            progress = fill_total > 0
        delev_qty = self._dydx_deleverage_queue(oracle, step, rnd, t)
        progress |= delev_qty > 0
        self._step_acc[0] += n_events
        if progress:
            self.round_rows.add(step=step, round=rnd, t_s=t, mark_price=oracle, last_price=self.impact.last(exo),
                                liquidations=n_events,
                                liquidated_notional_usd=self._step_acc[1] + self._step_acc[2] - notional_before,
                                market_fill_qty=fill_total, takeover_qty=0.0,
                                adl_qty=delev_qty)
        return progress

    def _dx_quote(self, side: int, exo: float, qty: float, limit: float) -> tuple[float, float]:
        """Fill of an IOC order on a copy of the impact state (the real book is not touched)."""
        trial = copy.copy(self.impact)
        fq, notional = (trial.sell if side > 0 else trial.buy)(exo, np.array([qty]), np.array([limit]))
        return float(fq[0]), float(notional[0])

    def _dydx_liquidate(self, i: int, size: float, fp: float, exo: float, oracle: float, eq: float, mm: float,
                        step: int, rnd: int, t: float) -> float:
        """One IOC liquidation order of account ``i`` at the fillable price ``fp``. Returns the filled quantity."""
        if size <= DUST:
            return 0.0
        s = int(self.side[i])
        bp = float(self._dx_bankruptcy(i))
        allowed = max(0.0, min(self.backstop.cash_usd, self._dx_if_left[i]))
        fq, notional = self._dx_quote(s, exo, size, fp)
        if fq <= 0:
            return 0.0
        order_qty = size
        if s * (notional - fq * bp) < -allowed:
            # The deficit grows with size (later fills are worse): keep the largest order within the fund.
            lo, hi = 0.0, fq
            for _ in range(60):
                mid = 0.5 * (lo + hi)
                f2, n2 = self._dx_quote(s, exo, mid, fp)
                if s * (n2 - f2 * bp) >= -allowed:
                    lo = mid
                else:
                    hi = mid
            if lo <= DUST:
                return 0.0
            order_qty = lo
        fqa, na = (self.impact.sell if s > 0 else self.impact.buy)(exo, np.array([order_qty]), np.array([fp]))
        fq, notional = float(fqa[0]), float(na[0])
        if fq <= 0:
            return 0.0
        q_before = self.qty[[i]].copy()
        realized = s * (notional - fq * self.entry[i])
        self.coll[i] += realized
        self.market_cash -= realized
        self.ledger.transfer_signed("liquidation_pnl", MARKET, self.account[i], realized)
        delta = s * (notional - fq * bp)           # insurance fund delta before the fee cap
        if delta > 0:
            paid = min(self.dydx.max_liquidation_fee_ppm / dx.PPM * notional, delta)
            self.ledger.transfer_signed("liquidation_fee", self.account[i], self.backstop.party, paid)
        else:
            paid = delta                           # < 0: the fund pays the deficit
            self.ledger.transfer_signed("insurance_fund_cover", self.backstop.party, self.account[i], -paid)
            self._dx_if_left[i] += paid
            self.totals.takeover_pnl_usd += paid
        self.coll[i] -= paid
        self.backstop.cash_usd += paid
        # traders' liquidation loss: the fee plus the fill's slippage versus the oracle (adverse side only)
        self.totals.trader_liquidation_loss_usd += max(paid, 0.0) + max(s * (fq * oracle - notional), 0.0)
        self._dx_notional_left[i] -= fq * oracle
        self.qty[i] = 0.0 if fq >= self.qty[i] - DUST else self.qty[i] - fq
        self.totals.market_net_bought_qty -= s * fq
        kind = "partial" if self.qty[i] > 0 else "market"
        idx = np.array([i])
        self._record_liq(step, rnd, t, idx, kind, np.array([fq]), np.array([notional / fq]), np.array([bp]),
                         np.array([paid]), oracle, np.array([eq]), np.array([mm]))
        self._close_dust(idx)
        self._track_oi(idx, q_before)
        self._refresh_lp(idx)
        return fq

    # ------------------------------------------------------------------ deleveraging
    def _dydx_deleverage_queue(self, oracle: float, step: int, rnd: int, t: float) -> float:
        """Deleverage unfilled liquidations with TNC < 0, at most ``max_deleveraging_attempts_per_block``."""
        done = 0.0
        while self._dx_queue and self._dx_delev_left > 0:
            i = self._dx_queue.pop(0)
            self._dx_delev_left -= 1
            q = self.qty[i]
            if q <= 0:
                continue
            tnc = self.coll[i] + self.sidef[i] * q * (oracle - self.entry[i])
            if tnc >= 0:
                continue
            got = self._dydx_offset(i, float(self._dx_bankruptcy(i)), oracle, "deleveraging", step, rnd, t)
            if got > 0:
                self.totals.adl_for_loss += 1
            done += got
        return done

    def _dydx_offset(self, i: int, price: float, oracle: float, trigger: str, step: int, rnd: int, t: float) -> float:
        """Offset the whole position of account ``i`` at ``price`` against opposite positions (random start).

        Returns the quantity offset (less than the position if too few valid counterparties were visited).
        """
        r = self.dydx
        need = float(self.qty[i])
        s = int(self.side[i])
        opp = self.side_idx[-s]
        cand = opp[self.qty[opp] > 0]
        if cand.size == 0:
            self.totals.adl_shortfall_qty += need
            return 0.0
        start = int(self._dx_rng.integers(cand.size))
        qc, sc, ec = self.qty[cand], self.sidef[cand], self.entry[cand]
        nc = self.coll[cand] + sc * qc * (oracle - ec)
        imf = self._dx_imf(oracle)

        def valid(idx: np.ndarray, take: np.ndarray) -> np.ndarray:
            q0 = qc[idx]
            q1 = q0 - take
            return dx.is_valid_state_transition(
                nc[idx], self.tiers.maintenance_margin(q0 * oracle), q0 * oracle * imf,
                nc[idx] + sc[idx] * take * (price - oracle), self.tiers.maintenance_margin(q1 * oracle),
                q1 * oracle * imf, rtol=1e-12)

        take = dx.deleveraging_walk(need, qc, start, r.max_deleveraging_subaccounts_to_iterate, valid)
        hit = np.flatnonzero(take > 0)
        if hit.size == 0:
            self.totals.adl_shortfall_qty += need
            return 0.0
        rank = (hit - start) % cand.size + 1          # visiting order
        C, tk = cand[hit], take[hit]
        done = float(tk.sum())
        self._settle_pair(i, C, tk, price, oracle, trigger, rank, step, rnd, t)
        if done < need - DUST:
            self.totals.adl_shortfall_qty += need - done
        return done

    def _settle_pair(self, i: int, C: np.ndarray, tk: np.ndarray, price: float, oracle: float, trigger: str,
                     rank: np.ndarray, step: int, rnd: int, t: float) -> None:
        """Close ``tk`` of each counterparty ``C`` and their sum of account ``i`` at ``price``; both realize against entry."""
        done = float(tk.sum())
        idx = np.append(C, i)
        q_before = self.qty[idx].copy()
        eq_i = float(self.coll[i] + self.sidef[i] * self.qty[i] * (oracle - self.entry[i]))
        mm_i = float(self.tiers.maintenance_margin(self.qty[i] * oracle))
        bp_i = float(self._dx_bankruptcy(i))
        amounts = np.append(tk, done)
        realized = self.sidef[idx] * amounts * (price - self.entry[idx])
        self.coll[idx] += realized
        self.market_cash -= realized.sum()
        self.ledger.transfer_signed(f"{trigger}_pnl", MARKET, self.account[idx], realized)
        self.qty[C] -= tk
        self.qty[i] = 0.0 if done >= self.qty[i] - DUST else self.qty[i] - done
        sc = self.sidef[C]
        haircut = sc * tk * (oracle - price)          # counterparty's loss against the oracle
        self.totals.adl_haircut_usd += float(np.maximum(haircut, 0.0).sum())
        notional = tk * price
        self.adl_rows.add(step=step, round=rnd, t_s=t, account=self.account[C], side=self.side[C], qty=tk,
                          price=np.full(C.size, price), notional_usd=notional, rank=rank,
                          score=np.full(C.size, np.nan), realized_pnl_usd=realized[:-1], haircut_usd=haircut,
                          trigger=trigger)
        self.totals.adl_notional_usd += float(notional.sum())
        self.totals.adl_count += int(C.size)
        self._step_acc[3] += notional.sum()
        self._step_acc[4] += C.size
        self._record_liq(step, rnd, t, np.array([i]), trigger, np.array([done]), np.array([price]), np.array([bp_i]),
                         np.zeros(1), oracle, np.array([eq_i]), np.array([mm_i]))
        self._close_dust(idx)
        self._track_oi(idx, q_before)
        self._refresh_lp(idx)

    # ------------------------------------------------------------------ final settlement
    def final_settlement(self, oracle: float | None = None) -> dict[str, float]:
        """Close every open position as dYdX does when a market goes to FINAL_SETTLEMENT.

        Accounts are taken in order, ``max_deleveraging_attempts_per_block`` per block (round robin, so an
        account that cannot be offset does not block the rest): TNC >= 0 -> deleveraged at the oracle
        price, TNC < 0 -> at its bankruptcy price, against opposite positions from a random start. The
        simulated book holds only part of the market: positions left once a full pass makes no progress
        are settled against the outside market (``MARKET``) at the same prices.

        Args:
            oracle: settlement oracle price (USD); default the last mark of the run.

        Returns:
            ``{"blocks", "deleveraged_qty", "market_settled_qty"}``.

        Raises:
            ValueError: the venue has no ``[dydx]`` section.
        """
        if self.dydx is None:
            raise ValueError(f"final_settlement: venue {self.venue.name} has no [dydx] section")
        px = float(self.final_mark if oracle is None else oracle)
        step = int(self.path.t_s.size)
        t = float(self.path.t_s[-1]) if self.path.t_s.size else 0.0
        per_block = max(1, self.dydx.max_deleveraging_attempts_per_block)
        blocks, deleveraged, idle = 0, 0.0, 0
        cursor = 0
        while True:
            open_ = np.flatnonzero(self.qty > 0)
            if open_.size == 0 or idle >= open_.size:
                break
            chunk = open_[(cursor + np.arange(min(per_block, open_.size))) % open_.size]
            cursor = (cursor + chunk.size) % max(open_.size, 1)
            self.ledger.at(step, blocks, t)
            moved = 0.0
            for i in chunk:
                if self.qty[i] <= 0:
                    continue
                tnc = self.coll[i] + self.sidef[i] * self.qty[i] * (px - self.entry[i])
                price = px if tnc >= 0 else float(self._dx_bankruptcy(i))
                moved += self._dydx_offset(int(i), price, px, "final_settlement", step, blocks, t)
            blocks += 1
            deleveraged += moved
            idle = 0 if moved > 0 else idle + chunk.size
        rest = np.flatnonzero(self.qty > 0)
        settled = float(self.qty[rest].sum())
        if rest.size:
            self.ledger.at(step, blocks, t)
            q, s = self.qty[rest].copy(), self.sidef[rest]
            tnc = self.coll[rest] + s * q * (px - self.entry[rest])
            bp = self._dx_bankruptcy(rest)
            price = np.where(tnc >= 0, px, bp)
            realized = s * q * (price - self.entry[rest])
            self.coll[rest] += realized
            self.market_cash -= realized.sum()
            self.ledger.transfer_signed("final_settlement_pnl", MARKET, self.account[rest], realized)
            self.totals.adl_haircut_usd += float(np.maximum(s * q * (price - px), 0.0).sum())
            self.totals.market_net_bought_qty -= float((s * q).sum())
            self.qty[rest] = 0.0
            self._record_liq(step, blocks, t, rest, "final_settlement_market", q, price, bp, np.zeros(rest.size), px,
                             tnc, self.tiers.maintenance_margin(q * px))
            self._close_dust(rest)
            self._track_oi(rest, q)
            self._refresh_lp(rest)
        return {"blocks": float(blocks), "deleveraged_qty": deleveraged, "market_settled_qty": settled}
