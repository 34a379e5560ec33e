"""The account engine: cascades over several instruments, cross-margined accounts and balances per asset.

Per step, for every instrument: exogenous price -> index and traded price (its own depth and impact) -> mark price
(the venue's method) ; funding settles when an interval ends; then rounds of
{risk model: equity and maintenance per margin group -> the backstop takes groups below its threshold (Hyperliquid)
-> groups in a step-down freeze wait (OKX) -> every position of a liquidatable group sends an order into its
instrument's depth, limited at its bankruptcy price (IOC or fill-or-kill step-downs, partial chunks, full closes)
-> a group still below maintenance (BitMEX / Bybit: also every group whose orders were full closes) is closed at
bankruptcy prices and the backstop takes its positions and balances -> ADL per instrument when the backstop cannot
carry its inventory or its equity dropped fast (OKX)} until no group changes (or the round cap) -> the backstop
unwinds part of each inventory -> resilience. The order of events within a round is that of
``delever.engine.core.CascadeEngine._round``, which the account engine equals on one-instrument books.

Bankruptcy prices in a cross group (several positions share one equity ``E``): the group's equity is allotted to its
positions pro rata to their maintenance requirement, ``bp_j = mark_j - side_j E (mm_j / MM) / |q_j|`` (the dYdX v4
convention, venue-mechanics.md section 5, ``-DNNV - TNC |DMMR| / TMMR``); closing every position at its ``bp_j``
realizes exactly ``-E``. With one position (isolated) it is the classic ``entry - side x collateral / qty``.

Money moves only through paired updates of the state that are also written to the :class:`AssetLedger` in asset
units; the engine checks conservation per asset and reconciles each party's state with the ledger.

Scope of this engine (the rest is refused by :func:`check_supported` and ``delever.venues.components.check_venue``
with the reason): linear contracts settled in one USD-valued asset per instrument; the Binance USD-M, Hyperliquid,
Bybit, OKX and BitMEX liquidation paths (IOC / market orders at the bankruptcy limit, fill-or-kill step-down to the
lower tier or to the first tier with a freeze, partial orders with cooldown, close at the bankruptcy price with the
surplus to the fund, fund takeover at bankruptcy, vault takeover at mark below 2/3 MM, clearance fee, liquidation
taker fee with the fee-inclusive bankruptcy price, net-notional cap, ADL by the venue's ranking at the bankruptcy
price, the previous mark or the mark, on the backstop's loss or a rapid drop of its equity, with a maker fee; queue
and pro-rata policies). Not run: Drift and dYdX (their own paths in the one-instrument engine), inverse contracts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from delever.engine.core import DUST_QTY, _top_ranked, adl_allocation
from delever.engine.drawdown import PeakDrawdown
from delever.engine.mark import MarkPrice
from delever.engine.tables import TableBuilder
from delever.errors import DeleverInputError
from delever.ledger import BAD_DEBT, FEE_POOL, INSURANCE_FUND, LIQUIDATOR_VAULT, MARKET, AssetLedger
from delever.liquidation import Backstop, Deleveraging, LiquidationPolicy
from delever.market.impact import Impact
from delever.model.accounts import AccountBook
from delever.risk.base import GroupRisk, Prices, RiskModel
from delever.risk.tiered import TieredRisk
from delever.venues.formulas import adl_score

FUNDING = MARKET   # funding is paid to / received from the outside holders of the other side (the market party)

LIQ_SCHEMA = {
    "step": np.int32, "round": np.int32, "t_s": np.float64, "account": np.int64, "group": np.int64,
    "instrument": str, "side": np.int8, "kind": str, "qty": np.float64, "price": np.float64,
    "notional_usd": np.float64, "bankruptcy_price": np.float64, "fee_usd": np.float64, "surplus_usd": np.float64,
    "mark_price": np.float64, "group_equity_usd": np.float64, "group_maint_usd": np.float64,
}
ADL_SCHEMA = {
    "step": np.int32, "round": np.int32, "t_s": np.float64, "account": np.int64, "instrument": str, "side": np.int8,
    "qty": np.float64, "price": np.float64, "notional_usd": np.float64, "rank": np.int32, "score": np.float64,
    "realized_pnl_usd": np.float64, "haircut_usd": np.float64, "fee_usd": np.float64, "trigger": str,
}
STEP_SCHEMA = {
    "step": np.int32, "t_s": np.float64, "instrument": str, "exogenous_price": np.float64, "index_price": np.float64,
    "last_price": np.float64, "mark_price": np.float64, "rounds": np.int32, "liquidations": np.int32,
    "liquidated_notional_usd": np.float64, "adl_notional_usd": np.float64, "adl_count": np.int32,
    "funding_rate": np.float64, "backstop_inventory_qty": np.float64, "backstop_equity_usd": np.float64,
    "open_interest_long_qty": np.float64, "open_interest_short_qty": np.float64,
}


@dataclass
class InstrumentMarket:
    """Execution and mark price of one instrument: its depth with impact, its mark rule."""

    impact: Impact
    mark: MarkPrice


@dataclass
class PerInstrument:
    """Totals per instrument, float64 / int64 ``(I,)``."""

    liquidated_long_usd: np.ndarray
    liquidated_short_usd: np.ndarray
    liquidation_count: np.ndarray
    adl_notional_usd: np.ndarray
    adl_count: np.ndarray
    funding_paid_usd: np.ndarray          # paid by traders (net, positive = traders paid the market)
    funding_longs_usd: np.ndarray         # paid by long positions (negative when longs received)
    market_net_bought_qty: np.ndarray     # inside parties' net purchases from the outside market

    @classmethod
    def zeros(cls, n: int) -> PerInstrument:
        f = lambda: np.zeros(n)  # noqa: E731
        return cls(f(), f(), np.zeros(n, np.int64), f(), np.zeros(n, np.int64), f(), f(), f())


@dataclass
class AccountTotals:
    """Run totals over every instrument."""

    bad_debt_usd: float = 0.0
    takeover_pnl_usd: float = 0.0
    adl_haircut_usd: float = 0.0
    adl_shortfall_qty: float = 0.0
    adl_for_loss: int = 0
    rounds_max: int = 0
    round_cap_hits: int = 0
    trader_liquidation_loss_usd: float = 0.0
    liquidated_accounts: set[int] = field(default_factory=set)
    instruments_liquidated: dict[int, set[int]] = field(default_factory=dict)   # account row -> instrument codes


class FundingSchedule:
    """No funding: what the engine asks of a funding component (``delever.engine.funding_schedule.VenueFunding``)."""

    payment_on_index: np.ndarray | None = None

    def rates_due(self, t_s: float, dt_s: float, index: np.ndarray, markets: list) -> np.ndarray | None:
        """Funding rate per instrument settling in this step (fraction of notional, + = longs pay), or None."""
        return None


class AccountEngine:
    """Runs one cascade of an account book along one price path per instrument.

    Args:
        book: Accounts, margin groups, positions and balances (copied).
        risk: The venue's risk model.
        markets: One :class:`InstrumentMarket` per instrument code.
        t_s: float64 ``(T,)`` step times, seconds from the start.
        price: float64 ``(T, I)`` exogenous (index) price per step and instrument; in replay mode the observed mark.
        liquidation, backstop, deleveraging: The venue's components.
        insurance_fund_usd: Starting cash of the backstop, in ``fund_asset``.
        fund_asset: Asset code of the backstop's cash (the venue's settlement asset).
        max_rounds: Round cap per step.
        replay: True when ``price`` is the observed mark (no added impact).
        funding: Funding schedule (None: no funding).

    Raises:
        DeleverInputError: shapes that do not match, or what :func:`check_supported` refuses.
    """

    def __init__(self, book: AccountBook, risk: RiskModel, markets: list[InstrumentMarket], t_s: np.ndarray,
                 price: np.ndarray, liquidation: LiquidationPolicy, backstop: Backstop, deleveraging: Deleveraging,
                 insurance_fund_usd: float, fund_asset: int = 0, max_rounds: int = 50, replay: bool = False,
                 funding: FundingSchedule | None = None) -> None:
        self.b = book.copy()
        reg = self.b.registry
        self.reg = reg
        self.n_ins = len(reg)
        check_supported(self.b)
        price = np.asarray(price, dtype=np.float64)
        if price.ndim != 2 or price.shape[1] != self.n_ins or price.shape[0] != np.size(t_s) or len(markets) != self.n_ins:
            raise DeleverInputError(f"price path of shape {price.shape} and {len(markets)} markets for "
                                    f"{np.size(t_s)} steps x {self.n_ins} instruments")
        self.t_s, self.price = np.asarray(t_s, np.float64), price
        self.risk, self.markets = risk, markets
        self.liq, self.bs_rule, self.adl_rule = liquidation, backstop, deleveraging
        self.max_rounds, self.replay = int(max_rounds), bool(replay)
        self.funding = funding or FundingSchedule()
        K = len(reg.assets)
        self.asset_usd = np.array([a.usd_price for a in reg.assets.assets], dtype=np.float64)
        # collateral assets priced by an instrument of the run follow its index (Binance Multi-Assets: index price)
        self._asset_from = [(k, reg.code(a.price_from)) for k, a in enumerate(reg.assets.assets)
                            if a.price_from is not None]
        self.party = INSURANCE_FUND if backstop.holder == "insurance_fund" else LIQUIDATOR_VAULT
        self.bs_cash = np.zeros(K)
        self.bs_cash[fund_asset] = float(insurance_fund_usd)
        self.inv_qty = np.zeros(self.n_ins)       # signed
        self.inv_entry = np.zeros(self.n_ins)
        self.market_cash = np.zeros(K)
        self.bad_debt_cash = np.zeros(K)
        self.fee_pool_cash = np.zeros(K)
        # every change of the venue's own parties, kept exactly (summed with math.fsum in conservation())
        self._party_log: dict[str, list[list[np.ndarray]]] = {p: [[] for _ in range(K)] for p in
                                                              ("traders", "backstop", "market", "bad_debt", "fee_pool")}
        self._party_start = {"traders": np.array([math.fsum(self.b.balance[:, k]) for k in range(K)]),
                             "backstop": self.bs_cash.copy(), "market": np.zeros(K), "bad_debt": np.zeros(K),
                             "fee_pool": np.zeros(K)}
        self.cooldown_until = np.full(self.b.n_positions, -np.inf)
        self.frozen_until = np.full(self.b.n_groups, -np.inf)      # OKX: step-down freeze per margin group
        self._fund_drawdown = PeakDrawdown(backstop.adl_drawdown_fraction, backstop.adl_drawdown_window_s)
        self.ledger = AssetLedger(reg.assets.symbols)
        self.per = PerInstrument.zeros(self.n_ins)
        self.totals = AccountTotals()
        self.liq_rows = TableBuilder(LIQ_SCHEMA)
        self.adl_rows = TableBuilder(ADL_SCHEMA)
        self.step_rows = TableBuilder(STEP_SCHEMA)
        self.settle = reg.settle_code[self.b.pos_instrument]
        self.fund_start_usd = float(insurance_fund_usd)
        self._start_net_qty = self._inside_net_qty()
        # the engine's risk arrays (filled group by group, see _evaluate_groups) and the margin-check prefilter
        G, P = self.b.n_groups, self.b.n_positions
        self._risk = GroupRisk(np.zeros(G), np.zeros(G), np.zeros(G), np.zeros(P), np.zeros(P), np.zeros(P),
                               np.zeros(G))
        self._upnl_g = np.zeros(G)
        self._coll_g = np.zeros(G)
        self._gpos_order = np.argsort(self.b.pos_group, kind="stable")
        self._gpos_start = np.searchsorted(self.b.pos_group[self._gpos_order], np.arange(G + 1))
        self._dirty = np.ones(G, dtype=bool)
        self._dirty_list: list[np.ndarray] = []
        self._trigger_order: np.ndarray | None = None
        self._trigger_f = np.zeros(G)
        self._trigger_sorted = np.zeros(0)
        self._ref_mark = price[0].copy()
        self._ref_asset_usd = np.ones(K)
        self._move_weight = None
        # the bound holds for the tiered rule itself (subclasses that revalue collateral or margin are checked fully)
        if (isinstance(risk, TieredRisk) and type(risk).evaluate is TieredRisk.evaluate
                and type(risk).collateral_usd is TieredRisk.collateral_usd
                and type(risk).position_requirement is TieredRisk.position_requirement):
            mmr_max = risk._mmr.max(axis=1)
            cs = reg.contract_size[self.b.pos_instrument]
            self._move_weight = cs * (1.0 + mmr_max[self.b.pos_instrument])   # x |qty| x |price move|
        self.mark = price[0].copy()
        self.prev_mark = price[0].copy()
        self.index = price[0].copy()
        self.last = price[0].copy()
        for k, i in self._asset_from:
            self.asset_usd[k] = self.index[i]

    # ------------------------------------------------------------------ state helpers
    def _prices(self) -> Prices:
        return Prices(self.mark, self.index, self.asset_usd)

    # ------------------------------------------------------------------ margin checks
    def _positions_of(self, groups: np.ndarray) -> np.ndarray:
        """Positions (ascending) of margin ``groups``: int64 (group -> positions index built once)."""
        if groups.size == 0:
            return np.zeros(0, np.int64)
        lo, hi = self._gpos_start[groups], self._gpos_start[groups + 1]
        n = hi - lo
        idx = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(int(n.sum()))
        return np.sort(self._gpos_order[idx])

    def _evaluate_groups(self, groups: np.ndarray) -> GroupRisk:
        """Evaluate margin ``groups`` (ascending, unique) exactly and store their figures in the engine's risk arrays.

        The model sees a book of just these groups (renumbered), so its cost is that of their positions; each
        group's sums run over its positions in the same order as in the whole book, so the figures are those a
        full check gives. Returns the engine's :class:`GroupRisk` (arrays of the whole book; entries of groups not
        evaluated since keep older values and must not be read).
        """
        b = self.b
        if groups.size == b.n_groups:   # the whole book: no renumbering, no copies
            pos, local, sub = slice(None), b.pos_group, b
        else:
            pos = self._positions_of(groups)
            local = np.searchsorted(groups, b.pos_group[pos])
            sub = AccountBook(b.registry, b.account_id, b.group_account[groups], b.group_isolated[groups], local,
                              b.pos_instrument[pos], b.pos_qty[pos], b.pos_entry_price[pos], b.balance[groups])
        rs = self.risk.evaluate(sub, self._prices())
        r = self._risk
        r.equity_usd[groups], r.maint_usd[groups], r.initial_usd[groups] = rs.equity_usd, rs.maint_usd, rs.initial_usd
        r.pos_upnl_usd[pos], r.pos_maint_usd[pos], r.pos_notional_usd[pos] = (rs.pos_upnl_usd, rs.pos_maint_usd,
                                                                             rs.pos_notional_usd)
        self._upnl_g[groups] = np.bincount(local, weights=rs.pos_upnl_usd, minlength=groups.size)
        self._coll_g[groups] = (rs.collateral_usd if rs.collateral_usd is not None
                                else rs.equity_usd - self._upnl_g[groups])
        return r

    def _evaluate_all(self) -> GroupRisk:
        """A full margin check; resets the prefilter (cushions, reference prices, touched groups)."""
        groups = np.arange(self.b.n_groups)
        r = self._evaluate_groups(groups)
        if self._move_weight is not None:
            b = self.b
            exposure = np.bincount(b.pos_group, weights=np.abs(b.pos_qty) * self._move_weight
                                   * self.mark[b.pos_instrument], minlength=b.n_groups)
            if self._asset_from:
                exposure += np.abs(b.balance) @ self.asset_usd
            cushion = r.equity_usd - r.maint_usd
            with np.errstate(divide="ignore", invalid="ignore"):
                f = np.where(exposure > 0, cushion / exposure, np.where(cushion > 0, np.inf, -np.inf))
            self._trigger_f = f
            self._trigger_order = np.argsort(f, kind="stable")
            self._trigger_sorted = f[self._trigger_order]
            self._ref_mark = self.mark.copy()
            self._ref_asset_usd = self.asset_usd.copy()
        self._dirty[:] = False
        self._dirty_list = []
        return r

    def _liquidatable_now(self) -> tuple[GroupRisk, np.ndarray]:
        """The risk arrays and the margin groups below maintenance now (ascending).

        Prefilter (tiered models): since the last full check, a group's ``equity - maintenance`` has fallen by at
        most ``M x exposure``, with ``M`` the largest relative move of any mark (and priced collateral asset) and
        ``exposure = sum_j |q_j| cs (1 + max MMR) mark_ref + sum_k |balance_k| price_ref``; groups whose cushion /
        exposure exceeds ``M`` (kept sorted) and that no transfer touched cannot be liquidatable and are not
        evaluated. A full check runs when half the book is a candidate.
        """
        b = self.b
        if self._move_weight is None or self._trigger_order is None:
            r = self._evaluate_all()
            return r, np.flatnonzero((r.equity_usd < r.maint_usd) & (r.maint_usd > 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            m = float(np.max(np.abs(self.mark / self._ref_mark - 1.0)))
            if self._asset_from:
                k = [a for a, _ in self._asset_from]
                m = max(m, float(np.max(np.abs(self.asset_usd[k] / self._ref_asset_usd[k] - 1.0))))
        n = int(np.searchsorted(self._trigger_sorted, m, side="right"))
        cand = self._trigger_order[:n]
        if self._dirty_list:
            touched = np.concatenate(self._dirty_list)       # unique: a group enters the list once
            cand = np.concatenate([cand, touched[self._trigger_f[touched] > m]])
        cand = np.sort(cand)
        if cand.size > 0.5 * b.n_groups:
            r = self._evaluate_all()
            return r, np.flatnonzero((r.equity_usd < r.maint_usd) & (r.maint_usd > 0))
        r = self._evaluate_groups(cand)
        liq = (r.equity_usd[cand] < r.maint_usd[cand]) & (r.maint_usd[cand] > 0)
        return r, cand[liq]

    def _money(self) -> dict[str, np.ndarray]:
        """Each party group's holdings per asset as its start plus every logged change, summed exactly (math.fsum),
        so the conservation check measures the engine's transfers, not the rounding of large running sums; how far
        the float state has drifted from these exact sums is :meth:`state_drift`."""
        K = self.bs_cash.size
        out = {}
        for party, log in self._party_log.items():
            out[party] = np.array([math.fsum([self._party_start[party][k], *(x for a in log[k] for x in a.tolist())])
                                   for k in range(K)])
        return out

    def state_drift(self) -> float:
        """Worst difference, over party groups and assets, between the float state and its exact logged sum."""
        exact = self._money()
        K = self.bs_cash.size
        state = {"traders": np.array([math.fsum(self.b.balance[:, k]) for k in range(K)]), "backstop": self.bs_cash,
                 "market": self.market_cash, "bad_debt": self.bad_debt_cash, "fee_pool": self.fee_pool_cash}
        return max(float(np.abs(state[p] - exact[p]).max()) for p in exact)

    def _move(self, party: str, asset: int, amount) -> None:
        """Change a venue party's cash by ``amount`` (float or array of transfers, asset units), logged exactly."""
        amt = np.atleast_1d(np.asarray(amount, dtype=np.float64))
        self._party_log[party][asset].append(amt.copy())
        cash = {"backstop": self.bs_cash, "market": self.market_cash, "bad_debt": self.bad_debt_cash,
                "fee_pool": self.fee_pool_cash}[party]
        cash[asset] += amt.sum()

    def _inside_net_qty(self) -> np.ndarray:
        net = np.bincount(self.b.pos_instrument, weights=self.b.pos_qty, minlength=self.n_ins)
        return net + self.inv_qty

    def _account_of(self, pos: np.ndarray) -> np.ndarray:
        return self.b.account_id[self.b.group_account[self.b.pos_group[pos]]]

    def _touch(self, groups: np.ndarray) -> None:
        """Margin groups whose balances or positions changed: checked again whatever the prices do."""
        new = groups[~self._dirty[groups]]
        if new.size:
            new = _unique(new)
            self._dirty[new] = True
            self._dirty_list.append(new)

    def _credit(self, kind: str, pos: np.ndarray, amount: np.ndarray, payer: int) -> None:
        """``payer`` pays ``amount`` (settlement-asset units, signed) to the groups of positions ``pos``."""
        if pos.size == 0:
            return
        g = self.b.pos_group[pos]
        k = self.settle[pos]
        np.add.at(self.b.balance, (g, k), amount)
        self._touch(g)
        for a in np.unique(k):
            m = k == a
            self._party_log["traders"][int(a)].append(np.array(amount[m], dtype=np.float64))
            self._move({MARKET: "market", FEE_POOL: "fee_pool"}.get(payer, "backstop"), int(a), -amount[m])
            self.ledger.transfer(kind, int(a), payer, self._account_of(pos[m]), amount[m], self.asset_usd[a])

    def backstop_equity_usd(self) -> float:
        return float((self.bs_cash * self.asset_usd).sum() + (self.inv_qty * (self.mark - self.inv_entry)).sum())

    # ------------------------------------------------------------------ bankruptcy prices
    def bankruptcy_prices(self, pos: np.ndarray, r: GroupRisk, close_fee_rate: float = 0.0) -> np.ndarray:
        """Bankruptcy price of positions ``pos``: the group's equity allotted pro rata to maintenance.

        ``bp_j = mark_j - side_j E_g w_j / |q_j|`` with ``w_j = mm_j / MM_g`` (module docstring), computed as
        ``entry_j - side_j A_j / |q_j|`` with the position's collateral share ``A_j`` (:meth:`collateral_share`),
        which is the classic ``entry - side x collateral / qty`` to the last bit for a group of one position.
        With ``close_fee_rate`` (Bybit's taker fee) the share also pays the fee to close at that price:
        ``bp_j = (entry_j - side_j A_j / |q_j|) / (1 - side_j fee)``
        (``delever.venues.formulas.bankruptcy_price_with_close_fee``, same float order). float64 ``(len(pos),)``.
        """
        b = self.b
        q = b.pos_qty[pos]
        s = np.sign(q)
        with np.errstate(divide="ignore", invalid="ignore"):
            bp = b.pos_entry_price[pos] - s * self.collateral_share(pos, r) / np.abs(q)
            return bp if close_fee_rate == 0 else bp / (1.0 - s * close_fee_rate)

    def collateral_share(self, pos: np.ndarray, r: GroupRisk) -> np.ndarray:
        """The part of its group's collateral that backs each position of ``pos`` at its bankruptcy price (USD).

        ``A_j = C_g w_j + (U_g - u_j) w_j - u_j (1 - w_j)`` (``C`` collateral, ``U`` the group's unrealized PnL,
        ``u_j`` the position's, ``w_j = mm_j / MM_g``): the equity share ``E_g w_j`` less the position's own PnL.
        Equal to the group's collateral, to the last bit, for a group of one position. float64 ``(len(pos),)``.
        """
        b = self.b
        g = b.pos_group[pos]
        mm_g = r.maint_usd[g]
        w = np.where(mm_g > 0, r.pos_maint_usd[pos] / np.where(mm_g > 0, mm_g, 1.0), 0.0)
        if r is self._risk:
            upnl_g, coll = self._upnl_g, self._coll_g
        else:   # figures from outside the engine (a whole-book GroupRisk)
            upnl_g = np.bincount(b.pos_group, weights=r.pos_upnl_usd, minlength=b.n_groups)
            coll = r.collateral_usd if r.collateral_usd is not None else r.equity_usd - upnl_g
        u = r.pos_upnl_usd[pos]
        return coll[g] * w + (upnl_g[g] - u) * w - u * (1.0 - w)

    def _bankruptcy(self, pos: np.ndarray, r: GroupRisk) -> np.ndarray:
        """The venue's bankruptcy prices: with the liquidation taker fee to close when it charges one."""
        return self.bankruptcy_prices(pos, r, self.liq.liquidation_taker_fee_rate)

    # ------------------------------------------------------------------ backstop
    def _backstop_trade(self, ins: int, signed_qty: float, price: float, kind: str) -> None:
        """The backstop buys (+) or sells (-) ``signed_qty`` of instrument ``ins`` at ``price``; reductions realize PnL."""
        if signed_qty == 0:
            return
        inv = self.inv_qty[ins]
        if inv == 0 or np.sign(inv) == np.sign(signed_qty):
            total = abs(inv) + abs(signed_qty)
            self.inv_entry[ins] = (abs(inv) * self.inv_entry[ins] + abs(signed_qty) * price) / total
            self.inv_qty[ins] = inv + signed_qty
            return
        close = min(abs(inv), abs(signed_qty))
        realized = np.sign(inv) * close * (price - self.inv_entry[ins])
        self.totals.takeover_pnl_usd += realized
        self._pay_backstop(realized, kind, int(self.reg.settle_code[ins]))
        self.inv_qty[ins] = inv + np.sign(signed_qty) * close
        rest = abs(signed_qty) - close
        if abs(self.inv_qty[ins]) <= DUST_QTY:
            self.inv_qty[ins] = 0.0
        if rest > DUST_QTY:
            self.inv_qty[ins], self.inv_entry[ins] = np.sign(signed_qty) * rest, price

    def _pay_backstop(self, realized: float, kind: str, asset: int) -> None:
        """Market pays the backstop ``realized``; a negative cash balance is made whole by bad debt."""
        self._move("backstop", asset, realized)
        self._move("market", asset, -realized)
        self.ledger.transfer(kind, asset, MARKET, self.party, realized, self.asset_usd[asset])
        if self.bs_cash[asset] < 0:
            deficit = -self.bs_cash[asset]
            self._move("backstop", asset, deficit)
            self.bs_cash[asset] = 0.0
            self._move("bad_debt", asset, -deficit)
            self.totals.bad_debt_usd += deficit * self.asset_usd[asset]
            self.ledger.transfer("bad_debt", asset, BAD_DEBT, self.party, deficit, self.asset_usd[asset])

    def _take_balances(self, groups: np.ndarray, kind: str) -> None:
        """Every balance (any sign, every asset) of ``groups`` goes to the backstop."""
        for a in range(self.bs_cash.size):
            amt = self.b.balance[groups, a]
            if not amt.any():
                continue
            self._move("backstop", a, amt)
            self._party_log["traders"][a].append(-amt)
            self.b.balance[groups, a] = 0.0
            self._touch(groups)
            self.ledger.transfer(kind, a, self.b.account_id[self.b.group_account[groups]], self.party, amt,
                                 self.asset_usd[a])
            if self.bs_cash[a] < 0:
                self._pay_backstop(0.0, kind, a)

    def _takeover(self, step, rnd, t, groups: np.ndarray, r: GroupRisk, at_mark: bool) -> int:
        """The backstop takes every open position of ``groups`` (at bankruptcy prices or at mark) and their balances."""
        b = self.b
        pos = self._positions_of(groups)
        pos = pos[b.pos_qty[pos] != 0]
        if pos.size == 0:
            return 0
        q = b.pos_qty[pos].copy()
        ins = b.pos_instrument[pos]
        bp = self._bankruptcy(pos, r)
        px = self.mark[ins] if at_mark else bp
        # what the trader surrenders: the group's equity at mark
        self.totals.trader_liquidation_loss_usd += float(np.maximum(r.equity_usd[groups], 0.0).sum())
        fee = np.zeros(pos.size)
        if not at_mark and self.liq.liquidation_taker_fee_rate > 0:
            # Bybit: the closing order's taker fee at the bankruptcy price, out of the wallet before the takeover
            fee = self._wallet_fee(pos, self.liq.liquidation_taker_fee_rate * np.abs(q) * np.abs(bp))
            self._credit("liquidation_taker_fee", pos, -fee, FEE_POOL)
        realized = self.reg.pnl_settle(ins, q, b.pos_entry_price[pos], px)
        self._credit("takeover_pnl", pos, realized, MARKET)
        b.pos_qty[pos] = 0.0
        for i in np.unique(ins):
            for sgn in (1.0, -1.0):   # longs and shorts of one instrument land in the inventory at their own prices
                s = (ins == i) & (np.sign(q) == sgn)
                if s.any():
                    price = self.mark[i] if at_mark else float((np.abs(q[s]) * px[s]).sum() / np.abs(q[s]).sum())
                    self._backstop_trade(int(i), float(q[s].sum()), float(price), "takeover_pnl")
        self._take_balances(groups, "backstop_collateral" if at_mark else "takeover_loss")
        self._record_liq(step, rnd, t, pos, "backstop" if at_mark else "takeover", np.abs(q), px, bp, fee, r,
                         np.sign(q).astype(np.int8))
        return int(pos.size)

    # ------------------------------------------------------------------ liquidation orders
    def _record_liq(self, step, rnd, t, pos, kind, qty, price, bp, fee, r: GroupRisk, sides: np.ndarray,
                    surplus: np.ndarray | float = 0.0) -> None:
        """Liquidation rows and per-instrument totals; ``sides`` int8 is each position's side before the fill.
        ``fee`` is what the trader paid in fees (taker and clearance; on a takeover, part of the equity surrendered),
        ``surplus`` what a close at the bankruptcy price handed the backstop."""
        b = self.b
        ins = b.pos_instrument[pos]
        g = b.pos_group[pos]
        notional = self.reg.notional_usd(ins, qty, price)
        self.liq_rows.add(step=step, round=rnd, t_s=t, account=self._account_of(pos), group=g,
                          instrument=np.array(self.reg.symbols, dtype=object)[ins], side=sides, kind=kind, qty=qty,
                          price=price, notional_usd=notional, bankruptcy_price=bp, fee_usd=fee,
                          surplus_usd=surplus, mark_price=self.mark[ins], group_equity_usd=r.equity_usd[g], group_maint_usd=r.maint_usd[g])
        longs = sides > 0
        np.add.at(self.per.liquidated_long_usd, ins[longs], notional[longs])
        np.add.at(self.per.liquidated_short_usd, ins[~longs], notional[~longs])
        self._round_liquidated.append(pos)
        accts = b.group_account[g]
        for a, i in zip(accts.tolist(), ins.tolist(), strict=True):
            self.totals.instruments_liquidated.setdefault(a, set()).add(i)

    def _orders(self, pos: np.ndarray, r: GroupRisk, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Order size (positive, quantity units) of each position of the liquidatable groups, whether the
        order is a planned partial (step-down or partial chunk) rather than a full close, and whether it is a
        step-down order. Starts the step-down freeze of the groups that get one."""
        b, rule = self.b, self.liq
        q = np.abs(b.pos_qty[pos])
        order = q.copy()
        planned = np.zeros(pos.size, bool)
        step_down = np.zeros(pos.size, bool)
        ins = b.pos_instrument[pos]
        notional = self.reg.notional_usd(ins, q, self.mark[ins])
        if rule.step_down_tiers:
            tiers = getattr(self.risk, "tiers", None)
            if tiers is not None:
                for i in np.unique(ins):
                    m = ins == i
                    tt = tiers[int(i)]
                    k = tt.tier_index(notional[m])
                    down = k >= rule.step_down_from_tier - 1
                    idx = np.flatnonzero(m)[down]
                    top = k[down] if rule.step_down_to == "lower_tier" else 1   # floor of tier k = top of tier k-1
                    order[idx] = q[idx] - tt.floor_usd[top] / self.mark[i]
                    planned[idx] = True
                    step_down[idx] = True
            if rule.step_down_freeze_s > 0:
                self.frozen_until[b.pos_group[pos[step_down]]] = t + rule.step_down_freeze_s
        if rule.partial_threshold_usd > 0 and rule.partial_fraction < 1:
            big = (notional > rule.partial_threshold_usd) & (self.cooldown_until[pos] <= t)
            order[big] = q[big] * rule.partial_fraction
            planned |= big
            self.cooldown_until[pos[big]] = t + rule.partial_cooldown_s
        return np.clip(order, 0.0, q), planned, step_down

    def _wallet_fee(self, F: np.ndarray, want: np.ndarray) -> np.ndarray:
        """Fees ``want`` (settlement-asset units) of positions ``F`` as their wallets can pay them: out of the
        group's settlement-asset balance, never below zero; positions of one group take in order what the earlier
        ones left. float64 ``(len(F),)``."""
        b = self.b
        room = np.maximum(b.balance[b.pos_group[F], self.settle[F]], 0.0)
        g = b.pos_group[F]
        o = np.lexsort((np.arange(F.size), g))
        cum = np.cumsum(want[o])
        first = np.r_[True, g[o][1:] != g[o][:-1]]
        before = cum - want[o]
        before -= before[np.flatnonzero(first)][np.cumsum(first) - 1]
        fee = np.empty(F.size)
        fee[o] = np.clip(room[o] - before, 0.0, want[o])
        return fee

    def _fill_orders(self, step, rnd, t, pos: np.ndarray, order: np.ndarray, planned: np.ndarray, r: GroupRisk,
                     fok: np.ndarray | None = None) -> float:
        """Send the orders into each instrument's depth at the bankruptcy limit; realize PnL, charge the fees.

        ``fok`` (bool per order or None): fill-or-kill orders. Fees out of the fill: the liquidation taker fee
        (fee pool), then the clearance fee (backstop). With ``close_at_bankruptcy`` a full-close order is the
        trader's close at the bankruptcy price: what the fill frees beyond the collateral share backing the rest
        (``A_j x rest / size``) goes to the backstop (``delever.engine.core.CascadeEngine._liquidation_fills``).
        """
        b, rule = self.b, self.liq
        bp = self._bankruptcy(pos, r)
        share = self.collateral_share(pos, r) if rule.close_at_bankruptcy else None
        q_before = np.abs(b.pos_qty[pos])
        ins = b.pos_instrument[pos]
        fq = np.zeros(pos.size)
        notional = np.zeros(pos.size)
        sells = b.pos_qty[pos] > 0
        for i in np.unique(ins):
            imp = self.markets[int(i)].impact
            exo = float(self.price_now[i])
            for m_side, fill in ((sells, imp.sell), (~sells, imp.buy)):
                m = (ins == i) & m_side
                if m.any():
                    fq[m], notional[m] = fill(exo, order[m], bp[m], None if fok is None else fok[m])
        filled = fq > 0
        if not filled.any():
            return 0.0
        F = pos[filled]
        fqf, nf = fq[filled], notional[filled]
        sgn = np.sign(b.pos_qty[F])
        px = nf / fqf
        realized = self.reg.pnl_from_fill(b.pos_instrument[F], sgn * fqf, b.pos_entry_price[F], nf)
        self._credit("liquidation_pnl", F, realized, MARKET)
        tfee = np.zeros(F.size)
        if rule.liquidation_taker_fee_rate > 0:
            tfee = self._wallet_fee(F, rule.liquidation_taker_fee_rate * nf)
            self._credit("liquidation_taker_fee", F, -tfee, FEE_POOL)
        cfee = np.zeros(F.size)
        if rule.clearance_fee_rate > 0:
            # out of the wallet (settlement-asset balance) after the realized PnL, never below zero
            cfee = self._wallet_fee(F, rule.clearance_fee_rate * nf)
            self._credit("clearance_fee", F, -cfee, self.party)
        b.pos_qty[F] = np.where(fqf >= np.abs(b.pos_qty[F]) - DUST_QTY, 0.0, b.pos_qty[F] - sgn * fqf)
        fee = tfee + cfee
        surplus = np.zeros(F.size)
        if rule.close_at_bankruptcy:
            # margin is linear in size at a fixed bankruptcy price: the rest keeps A x (rest / size)
            A = share[filled]
            left = ((A + realized) - tfee) - cfee       # the position's collateral after the fill, as the old engine
            surplus = np.where(~planned[filled], np.maximum(left - A * np.abs(b.pos_qty[F]) / q_before[filled], 0.0),
                               0.0)
            self._credit("liquidation_surplus", F, -surplus, self.party)
        np.add.at(self.per.market_net_bought_qty, b.pos_instrument[F], -sgn * fqf)
        slip = np.maximum(sgn * (fqf * self.mark[b.pos_instrument[F]] - nf), 0.0)
        self.totals.trader_liquidation_loss_usd += float((fee + slip).sum()) + float(surplus.sum())
        kind = np.where(planned[filled] & (b.pos_qty[F] != 0), "partial", "market")
        self._record_liq(step, rnd, t, F, kind, fqf, px, bp[filled], fee, r, sgn.astype(np.int8), surplus)
        return float(fqf.sum())

    # ------------------------------------------------------------------ ADL
    def _adl(self, ins: int, need: float, price: float, trigger: str, step: int, rnd: int, t: float) -> float:
        """Close ``need`` of the backstop's inventory in ``ins`` against top-ranked opposite positions at ``price``."""
        b, rule = self.b, self.adl_rule
        inv = self.inv_qty[ins]
        if need <= DUST_QTY or inv == 0:
            return 0.0
        inv_side = 1.0 if inv > 0 else -1.0
        cand = np.flatnonzero((b.pos_instrument == ins) & (np.sign(b.pos_qty) == -inv_side))
        if cand.size == 0:
            self.totals.adl_shortfall_qty += need
            return 0.0
        r = self._evaluate_groups(_unique(b.pos_group[cand]))
        q = np.abs(b.pos_qty[cand])
        e = b.pos_entry_price[cand]
        s = np.sign(b.pos_qty[cand])
        g = b.pos_group[cand]
        # the account's wallet as this position sees it: collateral plus the other positions' PnL
        wallet = self._coll_g[g] + (self._upnl_g[g] - r.pos_upnl_usd[cand])
        ok = wallet + s * q * (price - e) > 0        # never closed beyond its own bankruptcy
        score = adl_score(rule.ranking, s.astype(np.int8), q, e, wallet, self.mark[ins], r.pos_maint_usd[cand])
        ok &= np.isfinite(score)
        cand, q, e, s, score, wallet = cand[ok], q[ok], e[ok], s[ok], score[ok], wallet[ok]
        acct = self._account_of(cand)
        if rule.policy == "queue":
            order = _top_ranked(score, acct, q, need)
            cand, q, e, s, score = cand[order], q[order], e[order], s[order], score[order]
            before = np.cumsum(q) - q
            take = np.clip(need - before, 0.0, q)
        else:
            order = np.lexsort((acct, -score))
            cand, q, e, s, score, wallet = cand[order], q[order], e[order], s[order], score[order], wallet[order]
            equity = wallet + s * q * (self.mark[ins] - e)
            take = adl_allocation(rule.policy, need, q, q * self.mark[ins], np.maximum(equity, 1e-12),
                                  rule.pro_rata_cap_fraction)
        hit = take > 0
        cand, take, e, s, score = cand[hit], take[hit], e[hit], s[hit], score[hit]
        done = float(take.sum())
        if done <= 0:
            self.totals.adl_shortfall_qty += need
            return 0.0
        realized = self.reg.pnl_settle(np.full(cand.size, ins, np.int32), s * take, e, np.full(cand.size, price))
        self._credit("adl_pnl", cand, realized, MARKET)
        afee = np.zeros(cand.size)
        if rule.adl_maker_fee_rate > 0:   # Bybit: the deleveraged trader pays the maker fee on the ADL fill
            afee = np.minimum(rule.adl_maker_fee_rate * take * abs(price),
                              np.maximum(b.balance[b.pos_group[cand], self.settle[cand]], 0.0))
            self._credit("adl_maker_fee", cand, -afee, FEE_POOL)
        b.pos_qty[cand] -= s * take
        b.pos_qty[cand[np.abs(b.pos_qty[cand]) <= DUST_QTY]] = 0.0
        self._backstop_trade(ins, -inv_side * done, price, "adl_pnl")
        notional = take * price
        haircut = s * take * (self.mark[ins] - price)
        self.totals.adl_haircut_usd += float(np.maximum(haircut, 0.0).sum())
        self.adl_rows.add(step=step, round=rnd, t_s=t, account=self._account_of(cand), instrument=self.reg.symbols[ins],
                          side=s.astype(np.int8), qty=take, price=price, notional_usd=notional,
                          rank=np.arange(1, cand.size + 1), score=score, realized_pnl_usd=realized, haircut_usd=haircut,
                          fee_usd=afee, trigger=trigger)
        self.per.adl_notional_usd[ins] += notional.sum()
        self.per.adl_count[ins] += cand.size
        if done < need - DUST_QTY:
            self.totals.adl_shortfall_qty += need - done
        return done

    def _adl_price(self, ins: int) -> float:
        """ADL fill price: the backstop's entry (bankruptcy price of what it took over), the previous mark, or
        (OKX) the mark, the entry once the backstop's equity is below ``bankruptcy_below_fund_fraction`` of its start."""
        rule = self.adl_rule
        if rule.price == "bankruptcy":
            return float(self.inv_entry[ins])
        if rule.price == "previous_mark":
            return float(self.prev_mark[ins])
        if self.backstop_equity_usd() < rule.bankruptcy_below_fund_fraction * self.fund_start_usd:
            return float(self.inv_entry[ins])
        return float(self.mark[ins])

    def _backstop_checks(self, step: int, rnd: int, t: float) -> float:
        """ADL when the backstop cannot carry its inventory: a rapid drop of its equity (OKX; every inventory),
        loss beyond its cash, or net notional above its cap."""
        rule = self.bs_rule
        done = 0.0
        # the peak is observed on every check, inventory or not (as the one-instrument engine does)
        dropped = rule.adl_drawdown_fraction > 0 and self._fund_drawdown.dropped(t, self.backstop_equity_usd())
        live = np.flatnonzero(self.inv_qty != 0)
        if live.size == 0:
            return 0.0
        if dropped:
            for i in live:
                done += self._adl(int(i), abs(float(self.inv_qty[i])), self._adl_price(int(i)), "fund_drawdown",
                                  step, rnd, t)
            return done
        upnl = self.inv_qty * (self.mark - self.inv_entry)
        cash = max(float((self.bs_cash * self.asset_usd).sum()), 0.0)
        f = rule.adl_loss_fraction
        if -upnl[live].sum() > f * cash:
            # instruments with the largest loss first; each deleverages the least that brings the loss within f x cash
            self.totals.adl_for_loss += 1
            for i in live[np.argsort(upnl[live])]:
                upnl = self.inv_qty * (self.mark - self.inv_entry)
                cash = max(float((self.bs_cash * self.asset_usd).sum()), 0.0)
                other_loss = -np.minimum(np.delete(upnl, i), 0.0).sum()
                room = f * cash - other_loss
                side = 1.0 if self.inv_qty[i] > 0 else -1.0
                size = abs(self.inv_qty[i])
                loss = -side * (self.mark[i] - self.inv_entry[i])
                if size == 0 or size * loss <= room:
                    continue
                price = self._adl_price(int(i))
                realized = side * (price - self.inv_entry[i])
                denom = loss + f * realized
                need = size if denom <= 0 else min(size, (size * loss - room) / denom * (1.0 + 1e-9))
                done += self._adl(int(i), need, price, "backstop_loss", step, rnd, t)
        elif rule.max_net_notional_ratio > 0:
            cap_usd = rule.max_net_notional_ratio * max(self.backstop_equity_usd(), 0.0)
            notional = np.abs(self.inv_qty) * self.mark
            total = notional.sum()
            if total > cap_usd * (1 + 1e-12):
                cut = 1.0 - cap_usd / total   # every instrument gives up the same share of its inventory
                for i in live:
                    excess = abs(self.inv_qty[i]) * cut
                    if excess > DUST_QTY:
                        done += self._adl(int(i), excess, self._adl_price(int(i)), "net_notional_cap", step, rnd, t)
        return done

    # ------------------------------------------------------------------ one round
    def _round(self, step: int, rnd: int, t: float) -> bool:
        """One liquidation round at fixed marks. Returns True if anything changed."""
        self.ledger.at(step, rnd, t)
        b = self.b
        r, liq_groups = self._liquidatable_now()
        progress = 0.0
        self._round_liquidated: list[np.ndarray] = []
        if liq_groups.size == 0:   # nothing to liquidate: the backstop is checked again at the end of the step
            return False
        if liq_groups.size:
            self.totals.liquidated_accounts.update(b.group_account[liq_groups].tolist())
            if self.liq.backstop_below_mm_fraction > 0:
                deep = liq_groups[r.equity_usd[liq_groups] < self.liq.backstop_below_mm_fraction * r.maint_usd[liq_groups]]
                if deep.size:
                    progress += self._takeover(step, rnd, t, deep, r, at_mark=True)
                    liq_groups = np.setdiff1d(liq_groups, deep, assume_unique=True)
            if liq_groups.size and self.liq.step_down_freeze_s > 0:
                # OKX: a group that got a step-down order waits out the freeze before it is looked at again
                liq_groups = liq_groups[self.frozen_until[liq_groups] <= t]
            if liq_groups.size:
                progress += self._liquidate(step, rnd, t, liq_groups, r)
        if self._round_liquidated:   # one liquidation event per position per round (an order and its takeover)
            done = np.unique(np.concatenate(self._round_liquidated))
            np.add.at(self.per.liquidation_count, b.pos_instrument[done], 1)
        progress += self._backstop_checks(step, rnd, t)
        return progress > 0

    def _liquidate(self, step: int, rnd: int, t: float, groups: np.ndarray, r: GroupRisk) -> float:
        """Orders for every position of liquidatable ``groups``, then the takeover of what the venue hands the
        backstop. Event order of ``delever.engine.core.CascadeEngine._round``: orders (step-down, partial or full
        close; FOK step-downs) -> groups still below maintenance (not frozen) -> with ``close_at_bankruptcy``, full-close
        orders at the bankruptcy price for the deficient groups that were stepped down, and the takeover of every
        full-close group's rest whatever its margin -> takeover at bankruptcy prices. Returns the progress made."""
        b, rule = self.b, self.liq
        pos = self._positions_of(groups)
        pos = pos[b.pos_qty[pos] != 0]
        order, planned, step_down = self._orders(pos, r, t)
        fok = step_down if rule.step_down_order == "fill_or_kill" else None
        progress = self._fill_orders(step, rnd, t, pos, order, planned, r, fok)
        if not rule.takeover_after_orders:
            return progress
        self._round_liquidated.append(pos)   # every position that got an order is a liquidation event
        cand = groups
        if rule.step_down_freeze_s > 0:   # a stepped-down group is not taken over during its freeze
            cand = np.setdiff1d(cand, b.pos_group[pos[step_down]], assume_unique=False)
        if cand.size == 0:
            return progress
        r2 = self._evaluate_groups(cand)
        live = r2.maint_usd[cand] > 0
        deficient = (r2.equity_usd[cand] < r2.maint_usd[cand]) & live
        if rule.close_at_bankruptcy:
            full = ~np.isin(cand, b.pos_group[pos[planned]]) & live
            second = cand[deficient & ~full]
            if second.size:
                sp = self._positions_of(second)
                sp = sp[b.pos_qty[sp] != 0]
                progress += self._fill_orders(step, rnd, t, sp, np.abs(b.pos_qty[sp]), np.zeros(sp.size, bool), r2)
                r2 = self._evaluate_groups(cand)
                live = r2.maint_usd[cand] > 0
            deficient = (deficient | full) & live
        still = cand[deficient]
        if still.size:
            progress += self._takeover(step, rnd, t, still, r2, at_mark=self.bs_rule.takeover_price == "mark")
        return progress

    # ------------------------------------------------------------------ unwinding
    def _unwind(self, dt_s: float) -> None:
        rule = self.bs_rule
        for i in np.flatnonzero(self.inv_qty != 0):
            inv = self.inv_qty[i]
            mark = self.mark[i]
            qty = abs(inv) * (1.0 - 0.5 ** (dt_s / rule.unwind_half_life_s))
            if abs(inv) * mark < 100.0:
                qty = abs(inv)
            slip = rule.unwind_max_slippage_pct / 100.0
            imp = self.markets[i].impact
            exo = float(self.price_now[i])
            if inv > 0:
                fq, notional = imp.sell(exo, np.array([qty]), np.array([mark * (1 - slip)]))
            else:
                fq, notional = imp.buy(exo, np.array([qty]), np.array([mark * (1 + slip)]))
            if fq[0] <= 0:
                continue
            sgn = -1.0 if inv > 0 else 1.0
            self.per.market_net_bought_qty[i] += sgn * fq[0]
            self._backstop_trade(int(i), sgn * float(fq[0]), float(notional[0] / fq[0]), "unwind_pnl")

    # ------------------------------------------------------------------ funding
    def _pay_funding(self, rates: np.ndarray) -> None:
        """Each open position pays ``rate x notional at mark`` (longs pay when the rate is positive) to the market."""
        b = self.b
        open_ = np.flatnonzero(b.pos_qty != 0)
        if open_.size == 0:
            return
        ins = b.pos_instrument[open_]
        on_index = self.funding.payment_on_index
        price = self.mark if on_index is None else np.where(on_index, self.index, self.mark)
        pay = rates[ins] * b.pos_qty[open_] * self.reg.contract_size[ins] * price[ins]
        self._credit("funding", open_, -pay, FUNDING)
        np.add.at(self.per.funding_paid_usd, ins, pay)
        longs = b.pos_qty[open_] > 0
        np.add.at(self.per.funding_longs_usd, ins[longs], pay[longs])

    # ------------------------------------------------------------------ the run
    def run(self) -> None:
        """Run every step. Results: ``per``, ``totals``, the table builders and ``ledger``."""
        prev_t = 0.0
        T = self.t_s.size
        for step in range(T):
            t = float(self.t_s[step])
            dt = t - prev_t if step else (float(self.t_s[1] - self.t_s[0]) if T > 1 else 1.0)
            self.price_now = self.price[step]
            for i, m in enumerate(self.markets):
                if step:
                    m.impact.decay(dt)
                exo = float(self.price_now[i])
                self.index[i], self.last[i] = m.impact.reference(exo), m.impact.last(exo)
                self.mark[i] = exo if self.replay else m.mark.value(self.index[i], self.last[i], dt, t)
            for k, i in self._asset_from:
                self.asset_usd[k] = self.index[i]
            self.ledger.at(step, 0, t)
            rates = self.funding.rates_due(t, dt, self.index, self.markets) if step else None
            if rates is not None:
                self._pay_funding(np.asarray(rates, np.float64))
            liq_before = self.per.liquidation_count.copy()
            adl_before = self.per.adl_notional_usd.copy()
            adl_n_before = self.per.adl_count.copy()
            notional_before = self.per.liquidated_long_usd + self.per.liquidated_short_usd
            rounds = 0
            while True:
                if rounds >= self.max_rounds:
                    if self._liquidatable_now()[1].size:
                        self.totals.round_cap_hits += 1
                    break
                if not self._round(step, rounds, t):
                    break
                rounds += 1
                for i, m in enumerate(self.markets):   # fills moved the traded price: the mark follows
                    exo = float(self.price_now[i])
                    self.index[i], self.last[i] = m.impact.reference(exo), m.impact.last(exo)
                    if not self.replay:
                        self.mark[i] = m.mark.value(self.index[i], self.last[i], dt, t)
            for i, m in enumerate(self.markets):
                m.mark.commit(self.index[i], self.last[i], dt)
            self.ledger.at(step, rounds, t)
            self._unwind(dt)
            self._backstop_checks(step, rounds, t)
            self.totals.rounds_max = max(self.totals.rounds_max, rounds)
            oi = self.b.open_interest_qty()
            self.step_rows.add(
                step=step, t_s=t, instrument=np.array(self.reg.symbols, dtype=object),
                exogenous_price=self.price_now, index_price=self.index.copy(), last_price=self.last.copy(),
                mark_price=self.mark.copy(), rounds=rounds,
                liquidations=(self.per.liquidation_count - liq_before).astype(np.int32),
                liquidated_notional_usd=self.per.liquidated_long_usd + self.per.liquidated_short_usd - notional_before,
                adl_notional_usd=self.per.adl_notional_usd - adl_before,
                adl_count=(self.per.adl_count - adl_n_before).astype(np.int32),
                funding_rate=np.zeros(self.n_ins) if rates is None else np.asarray(rates, np.float64),
                backstop_inventory_qty=self.inv_qty.copy(), backstop_equity_usd=self.backstop_equity_usd(),
                open_interest_long_qty=oi[:, 0] + np.maximum(self.inv_qty, 0.0),
                open_interest_short_qty=oi[:, 1] + np.maximum(-self.inv_qty, 0.0),
            )
            self.prev_mark = self.mark.copy()
            prev_t = t

    # ------------------------------------------------------------------ checks
    def conservation(self) -> dict[str, object]:
        """Money per asset, state against ledger, and open interest per instrument.

        Returns:
            ``ledger_imbalance_by_asset``: asset -> sum over parties of their balance change (0 when conserved);
            ``ledger_reconciliation_max``: worst |logged change - ledger net flow| over party groups and assets;
            ``state_drift_max``: worst |float state - exact sum of its logged changes| (the rounding of the running
            balances; traders' balances summed with math.fsum);
            ``open_interest_mismatch_qty``: instrument -> inside net position change minus net purchases from
            the market (0 when open interest changes only through market trades).
        """
        K = self.bs_cash.size
        logged = {p: [[x for a in log[k] for x in a.tolist()] for k in range(K)] for p, log in self._party_log.items()}
        # every change is logged on both sides, so the exact sum of all changes of an asset is its imbalance
        imbalance = [math.fsum(x for p in logged for x in logged[p][k]) for k in range(K)]
        names = {MARKET: "market", self.party: "backstop", BAD_DEBT: "bad_debt"}
        led: dict[str, list[list[float]]] = {p: [[] for _ in range(K)] for p in logged}
        for (p, a), v in self.ledger.net_flows().items():
            led["traders" if p >= 0 else names.get(p, "fee_pool")][a].append(v)
        recon = max(abs(math.fsum(logged[p][k]) - math.fsum(led[p][k])) for p in logged for k in range(K))
        drift = self.state_drift()
        oi = self._inside_net_qty() - self._start_net_qty - self.per.market_net_bought_qty
        return {
            "ledger_imbalance_by_asset": {s: imbalance[k] for k, s in enumerate(self.reg.assets.symbols)},
            "ledger_reconciliation_max": recon,
            "state_drift_max": drift,
            "open_interest_mismatch_qty": {s: float(oi[i]) for i, s in enumerate(self.reg.symbols)},
        }


def _unique(x: np.ndarray) -> np.ndarray:
    """Sorted unique values of an int array (a sort, no hashing: faster for the engine's small group lists)."""
    s = np.sort(x)
    return s[np.r_[True, s[1:] != s[:-1]]] if s.size else s


def check_supported(book: AccountBook) -> None:
    """Refuse what the account engine does not model yet (inverse contracts), with the reason.

    Raises:
        DeleverInputError: an inverse or dated instrument in the book.
    """
    for ins in book.registry.instruments:
        if ins.kind != "linear_perp":
            raise DeleverInputError(f"instrument {ins.symbol!r}: {ins.kind} contracts are not modelled by the account "
                                    "engine yet (linear perpetuals only)")
