"""Runs of several instruments: scenario -> account book, risk model, markets, price paths -> account engine.

The multi-instrument counterpart of :mod:`delever.runner` (a scenario with ``[[instruments]]``): it resolves the
venue's components (:func:`venue_components`), one depth curve and mark rule per instrument, one price path per
instrument (real klines on one time grid, or a shock), and the synthesized (or loaded) account book, then runs
:class:`delever.engine.accounts.AccountEngine` and assembles the summary: the one-instrument keys over the whole
run, plus ``instruments``, ``per_instrument``, ``accounts_liquidated_multi_instrument``, ``funding_paid_usd`` and
``ledger_imbalance_by_asset``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from delever.data.klines import format_utc_ms, parse_utc_ms
from delever.depth_source import build_depth_curve
from delever.engine.accounts import AccountEngine, FundingSchedule, InstrumentMarket
from delever.engine.funding_schedule import VenueFunding
from delever.engine.mark import MarkPrice
from delever.errors import DeleverInputError
from delever.market.depth import DepthCurve
from delever.market.impact import Impact
from delever.model import AccountBook, InstrumentRegistry
from delever.multipath import MultiPricePath, load_bars_multi, load_historical_multi
from delever.paths import shock_path
from delever.risk import RiskModel, TieredRisk
from delever.scenario import Scenario, ShockDriver, config_hash, resolve_path
from delever.synthesize_multi import (
    AccountSizeParams,
    LeverageMixParams,
    MultiSynthesisParams,
    PriceBars,
    synthesize_accounts,
)
from delever.tier_source import resolve_tiers
from delever.venues import VenueRules, load_venue
from delever.venues.components import check_venue, venue_components
from delever.venues.tiers import MarginTiers


@dataclass
class PreparedAccounts:
    """Everything a multi-instrument run needs, resolved from the scenario and the data directory."""

    scenario: Scenario
    venue: VenueRules
    registry: InstrumentRegistry
    tiers: tuple[MarginTiers, ...]
    path: MultiPricePath
    depths: tuple[DepthCurve, ...]
    book: AccountBook
    config_hash: str
    book_source: str
    book_assumptions: dict[str, object] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tier_provenance: dict[str, object] = field(default_factory=dict)


def _shock_path(scenario: Scenario) -> MultiPricePath:
    """Every instrument's shock on one grid: the one-instrument shock (:func:`delever.paths.shock_path`) per column."""
    d = scenario.multi_driver
    if (d.duration_s + d.hold_s) / d.dt_s > 5_000_000:
        raise DeleverInputError(f"multi_driver: {(d.duration_s + d.hold_s) / d.dt_s:.0f} steps (duration_s + hold_s "
                                "over dt_s); at most 5,000,000")
    cols, moves = [], []
    for ins in scenario.instruments:
        if ins.start_price is None:
            raise DeleverInputError(f"instruments.{ins.symbol}.start_price: required for a shock multi_driver")
        move = d.move_pct if ins.move_pct is None else ins.move_pct
        moves.append(move)
        cols.append(shock_path(ShockDriver(move_pct=move, duration_s=d.duration_s, hold_s=d.hold_s), ins.start_price,
                               d.dt_s))
    label = ", ".join(f"{i.symbol} {m:+g} %" for i, m in zip(scenario.instruments, moves, strict=True))
    return MultiPricePath(tuple(i.symbol for i in scenario.instruments), cols[0].t_s,
                          np.stack([c.price for c in cols], axis=1), d.mode,
                          labels=tuple(f"shock {m:+g} % over {d.duration_s:g} s" for m in moves),
                          notes=(f"shock: {label}",))


def build_multi_path(scenario: Scenario, data_dir: Path) -> MultiPricePath:
    """The scenario's price paths, one per instrument, on one time grid.

    Raises:
        DeleverInputError: a missing or misaligned file, a gap, or a shock without start prices.
    """
    d = scenario.multi_driver
    if d.kind == "shock":
        return _shock_path(scenario)
    files = {i.symbol: resolve_path(i.path, data_dir, f"instruments.{i.symbol}.path") for i in scenario.instruments}
    return load_historical_multi(files, d.start, d.end, d.intrabar, d.mode, empty_bars=d.empty_bars)


def _entry_history(scenario: Scenario, data_dir: Path) -> tuple[PriceBars, ...]:
    """Each instrument's bars in the ``history_minutes`` before the run's start, on one grid."""
    d, a = scenario.multi_driver, scenario.accounts
    if d.kind != "historical" or d.start is None:
        raise DeleverInputError("accounts.entry_source = 'history' needs a historical multi_driver with a start time")
    start_ms = parse_utc_ms(d.start, "multi_driver.start")
    begin = format_utc_ms(start_ms - a.history_minutes * 60_000)
    files = {i.symbol: resolve_path(i.path, data_dir, f"instruments.{i.symbol}.path") for i in scenario.instruments}
    bars = load_bars_multi(files, begin, d.start, d.empty_bars)
    return tuple(PriceBars.from_klines(bars[i.symbol]) for i in scenario.instruments)


def _book(scenario: Scenario, registry: InstrumentRegistry, start: np.ndarray, tiers: tuple[MarginTiers, ...],
          data_dir: Path) -> tuple[AccountBook, str, dict[str, object]]:
    if scenario.book.source == "file":
        from delever.book_io import load_account_book

        p = resolve_path(scenario.book.path, data_dir, "book.path")
        return load_account_book(p, registry), str(p), {}
    a = scenario.accounts
    params = MultiSynthesisParams(
        open_interest_usd=tuple(i.open_interest_usd for i in scenario.instruments), accounts=a.accounts,
        long_short_ratio=tuple(i.long_short_ratio for i in scenario.instruments),
        instruments_per_account_share=tuple(a.instruments_per_account_share), side_correlation=a.side_correlation,
        cross_share=a.cross_share, margin_split_concentration=a.margin_split_concentration,
        leverage=LeverageMixParams(tuple(a.leverage.leverage), tuple(a.leverage.weight), a.leverage.basis),
        account_size=AccountSizeParams(a.account_size.kind, a.account_size.median_usd, a.account_size.sigma,
                                       a.account_size.pareto_alpha),
        entry_source=a.entry_source, entry_sigma=a.entry_sigma, equilibrium=a.equilibrium)
    history = _entry_history(scenario, data_dir) if a.entry_source == "history" else None
    rng = np.random.default_rng(np.random.SeedSequence(scenario.seed))
    book, report = synthesize_accounts(params, registry, start, history, rng, TieredRisk(tiers))
    summary = {k: v for k, v in vars(report).items() if k not in ("pos_entry_bar", "pos_removed")}
    return book, "synthesized", {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in summary.items()}


def prepare_accounts(scenario: Scenario, data_dir: Path) -> PreparedAccounts:
    """Resolve venue, instruments, price paths, depths and the account book of a multi-instrument scenario.

    Raises:
        DeleverInputError: any bad or missing input, named by file/field; a venue the engine does not run; a
            mitigation (the account engine does not apply them yet, and a silently ignored one would mislead).
    """
    active = scenario.mitigations.active()
    if active:
        raise DeleverInputError(f"mitigations.{active[0]}: mitigations are not applied by the multi-instrument account "
                                "engine yet; run them on one instrument (the market section)")
    venue = load_venue(scenario.venue.preset, scenario.venue.overrides)
    check_venue(venue)
    symbols = [i.symbol for i in scenario.instruments]
    registry = InstrumentRegistry.linear(symbols, settle=venue.settle)
    sources = [resolve_tiers(venue, s, data_dir) for s in symbols]
    tiers = tuple(t.tiers for t in sources)
    path = build_multi_path(scenario, data_dir)
    start = path.price[0].copy()
    depths = tuple(build_depth_curve(i.depth, data_dir, float(start[k]), i.symbol, f"instruments.{k}.depth")
                   for k, i in enumerate(scenario.instruments))
    notes = [*path.notes, *[f"depth {s}: {d.source}" for s, d in zip(symbols, depths, strict=True)],
             *[t.note() for t in sources]]
    book, source, assumptions = _book(scenario, registry, start, tiers, data_dir)
    return PreparedAccounts(scenario, venue, registry, tiers, path, depths, book, config_hash(scenario, venue), source,
                            assumptions, notes, {t.instrument: t.provenance() for t in sources})


def _start_epoch_s(path: MultiPricePath) -> float | None:
    if path.start_time_utc is None:
        return None
    return parse_utc_ms(path.start_time_utc.replace("T", " ").rstrip("Z"), "start time") / 1000.0


def make_account_engine(prep: PreparedAccounts, price: np.ndarray | None = None, risk: RiskModel | None = None,
                        funding: FundingSchedule | None = None) -> AccountEngine:
    """A fresh account engine for ``prep`` (on ``price``, float64 ``(T, I)``, default the scenario's paths)."""
    sc = prep.scenario
    imp = sc.market.impact
    replay = prep.path.mode == "replay"
    m = prep.venue.mark
    markets = [InstrumentMarket(Impact(d, imp.permanent_fraction, imp.resilience_half_life_s, imp.max_walk_pct,
                                       move_price=not replay),
                                MarkPrice(m.method, m.basis_window_s, m.funding_basis, m.funding_rate,
                                          m.funding_interval_s, m.time_to_funding_s)) for d in prep.depths]
    liq, bs, dl = venue_components(prep.venue)
    if funding is None and sc.engine.funding and prep.venue.funding is not None:
        funding = VenueFunding([prep.venue.funding.rule_for(s) for s in prep.registry.symbols],
                               np.array([i.basis_pct for i in sc.instruments]), _start_epoch_s(prep.path))
    return AccountEngine(prep.book, risk or TieredRisk(prep.tiers), markets, prep.path.t_s,
                         prep.path.price if price is None else price, liq, bs, dl, sc.insurance_fund.initial_usd,
                         fund_asset=0, max_rounds=sc.engine.max_rounds, replay=replay, funding=funding)


def _move_pct(prices: np.ndarray, start: float, direction: float) -> float:
    moves = prices / start - 1.0
    return float((moves.min() if direction < 0 else moves.max()) * 100.0)


def account_metrics(prep: PreparedAccounts, eng: AccountEngine) -> dict[str, object]:
    """Summary metrics of a finished account-engine run (the ``--json`` keys; see the module docstring)."""
    per = eng.per
    steps = eng.step_rows.to_table()
    marks = np.asarray(steps.column("mark_price").to_numpy()).reshape(-1, eng.n_ins)
    lasts = np.asarray(steps.column("last_price").to_numpy()).reshape(-1, eng.n_ins)
    exo = prep.path.price
    start = exo[0]
    oi0 = prep.book.open_interest_qty().sum(axis=1) * start
    w = oi0 / oi0.sum() if oi0.sum() > 0 else np.full(eng.n_ins, 1.0 / eng.n_ins)
    per_instrument = []
    exo_moves, final_moves = [], []
    for i, sym in enumerate(prep.registry.symbols):
        direction = -1.0 if exo[:, i].min() / start[i] - 1.0 <= -(exo[:, i].max() / start[i] - 1.0) else 1.0
        sim = marks[:, i] if prep.path.mode == "replay" else lasts[:, i]
        em, fm = _move_pct(exo[:, i], start[i], direction), _move_pct(sim, start[i], direction)
        exo_moves.append(em)
        final_moves.append(fm)
        per_instrument.append({
            "instrument": sym,
            "open_interest_start_usd": float(oi0[i]),
            "liquidated_notional_usd": float(per.liquidated_long_usd[i] + per.liquidated_short_usd[i]),
            "liquidated_long_usd": float(per.liquidated_long_usd[i]),
            "liquidated_short_usd": float(per.liquidated_short_usd[i]),
            "liquidation_count": int(per.liquidation_count[i]),
            "adl_notional_usd": float(per.adl_notional_usd[i]),
            "adl_count": int(per.adl_count[i]),
            "funding_paid_usd": float(per.funding_paid_usd[i]),
            "funding_paid_by_longs_usd": float(per.funding_longs_usd[i]),
            "exogenous_move_pct": em,
            "final_move_pct": fm,
            "backstop_inventory_end_qty": float(eng.inv_qty[i]),
        })
    exo_move = float(np.dot(w, exo_moves))
    final_move = float(np.dot(w, final_moves))
    cons = eng.conservation()
    multi = sum(1 for s in eng.totals.instruments_liquidated.values() if len(s) > 1)
    adl_accounts = eng.adl_rows.column("account")
    return {
        "exogenous_move_pct": exo_move,
        "final_move_pct": final_move,
        "amplification": final_move / exo_move if abs(exo_move) > 1e-12 else None,
        "liquidated_notional_usd": float((per.liquidated_long_usd + per.liquidated_short_usd).sum()),
        "liquidated_long_usd": float(per.liquidated_long_usd.sum()),
        "liquidated_short_usd": float(per.liquidated_short_usd.sum()),
        "liquidation_count": int(per.liquidation_count.sum()),
        "rounds_max": int(eng.totals.rounds_max),
        "round_cap_hits": int(eng.totals.round_cap_hits),
        "insurance_fund_start_usd": eng.fund_start_usd,
        "insurance_fund_end_usd": eng.backstop_equity_usd(),
        "bad_debt_usd": float(eng.totals.bad_debt_usd),
        "fee_pool_usd": float((eng.fee_pool_cash * eng.asset_usd).sum()),   # liquidation taker and ADL maker fees
        "adl_notional_usd": float(per.adl_notional_usd.sum()),
        "adl_count": int(per.adl_count.sum()),
        "adl_accounts": int(np.unique(adl_accounts).size),
        "trader_liquidation_loss_usd": float(eng.totals.trader_liquidation_loss_usd),
        "accounts_liquidated": len(eng.totals.instruments_liquidated),
        "accounts_liquidated_multi_instrument": int(multi),
        "funding_paid_usd": float(per.funding_paid_usd.sum()),
        "funding_paid_by_longs_usd": float(per.funding_longs_usd.sum()),
        "ledger_imbalance_usd": float(sum(v * eng.asset_usd[k] for k, v in
                                          enumerate(cons["ledger_imbalance_by_asset"].values()))),
        "ledger_imbalance_by_asset": cons["ledger_imbalance_by_asset"],
        "ledger_reconciliation_usd": cons["ledger_reconciliation_max"],
        "ledger_state_drift_usd": cons["state_drift_max"],
        "open_interest_mismatch_qty": cons["open_interest_mismatch_qty"],
        "instruments": list(prep.registry.symbols),
        "per_instrument": per_instrument,
    }


def _driver_label(prep: PreparedAccounts) -> str:
    d = prep.scenario.multi_driver
    p = prep.path
    if d.kind == "shock":
        return "; ".join(p.labels)
    t = p.start_time_utc or ""
    return (f"historical: {len(p.instruments)} per-instrument kline files from {t.replace('T', ' ').rstrip('Z')} UTC, "
            f"{p.t_s.size} steps over {p.t_s[-1]:g} s, intrabar {d.intrabar}, {p.mode}")


def execute_accounts(prep: PreparedAccounts) -> tuple[dict[str, object], dict[str, object], float]:
    """Run the account engine on prepared inputs.

    Returns:
        ``(summary, tables, wall_s)``: the ``--json`` object, the result tables (pyarrow) by name, seconds taken.
    """
    t0 = time.perf_counter()
    sc = prep.scenario
    eng = make_account_engine(prep)
    eng.run()
    tables = {
        "steps": eng.step_rows.to_table(),
        "liquidations": eng.liq_rows.to_table(),
        "adl": eng.adl_rows.to_table(),
        "ledger": eng.ledger.to_table(),
    }
    summary: dict[str, object] = {
        "scenario": sc.name,
        "config_hash": prep.config_hash,
        "seed": sc.seed,
        "venue": prep.venue.name,
        "engine": "accounts",
        "mode": prep.path.mode,
        "price_driver": _driver_label(prep),
        "accounts": prep.book.n_accounts,
        "positions": prep.book.n_positions,
        "steps": int(prep.path.t_s.size),
        "backstop": prep.venue.backstop.holder,
        **account_metrics(prep, eng),
        "ledger_transfers": len(eng.ledger),
        "book_source": prep.book_source,
        "notes": prep.notes,
    }
    return summary, tables, time.perf_counter() - t0


def account_engine_for(prep) -> AccountEngine:
    """The account engine on a one-instrument prepared run (``delever.runner.prepare``): every position its own
    account with one isolated margin group, the same depth, mark rule, path, fund and round cap. It gives the
    one-instrument engine's decisions (``tests/test_account_parity.py``) on the venues the account engine runs.

    Raises:
        DeleverInputError: a venue the account engine does not run (``check_venue``).
    """
    sc, b = prep.scenario, prep.book
    reg = InstrumentRegistry.linear([b.instrument], settle=prep.venue.settle)
    book = AccountBook.from_rows(reg, b.account, np.zeros(len(b), np.int32), b.side * b.qty, b.entry_price,
                                 np.ones(len(b), bool), b.collateral_usd, np.zeros(len(b), np.int32))
    imp, m = sc.market.impact, prep.venue.mark
    market = InstrumentMarket(Impact(prep.depth, imp.permanent_fraction, imp.resilience_half_life_s, imp.max_walk_pct,
                                     move_price=prep.path.mode != "replay"),
                              MarkPrice(m.method, m.basis_window_s, m.funding_basis, m.funding_rate,
                                        m.funding_interval_s, m.time_to_funding_s))
    liq, bs, dl = venue_components(prep.venue)
    return AccountEngine(book, TieredRisk((prep.tiers,)), [market], prep.path.t_s, prep.path.price[:, None], liq, bs,
                         dl, sc.insurance_fund.initial_usd, max_rounds=sc.engine.max_rounds,
                         replay=prep.path.mode == "replay")
