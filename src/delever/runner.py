"""Build a run from a scenario, execute the engine, assemble the result, write the run folder.

This is the one path every front door (CLI, Python API, later the stress runner and the web
service) goes through: ``prepare`` -> ``CascadeEngine.run`` -> ``RunResult``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from delever.depth_source import build_depth_curve
from delever.engine.core import CascadeEngine
from delever.engine.drift import BANKRUPTCY_SCHEMA
from delever.engine.tables import TableBuilder
from delever.errors import DeleverInputError
from delever.paths import PricePath, build_price_path
from delever.run_result import Prepared, RunResult
from delever.runfolder import atomic_run_folder, run_folder_name
from delever.scenario import Scenario, config_hash, resolve_path
from delever.tier_source import resolve_tiers
from delever.venues import load_venue


def _entry_history(scenario: Scenario, data_dir: Path, start_time_utc: str | None):
    from delever.data.klines import read_klines_many

    entry = scenario.book.synthesize.entry
    paths = [resolve_path(p, data_dir, "book.synthesize.entry.path") for p in [entry.path, *entry.extra_paths]]
    before = entry.before or (start_time_utc.replace("T", " ").removesuffix("Z") if start_time_utc else None)
    kl = read_klines_many(paths)
    if before is not None:
        from delever.data.klines import parse_utc_ms

        end_ms = parse_utc_ms(before, "book.synthesize.entry.before")
        kl = kl.select(end_ms - int(entry.lookback_hours * 3_600_000), end_ms)
    if len(kl) == 0:
        raise DeleverInputError("book.synthesize.entry: the price history has no bars in the lookback window")
    prices = (kl.high + kl.low + kl.close) / 3.0
    weights = kl.volume if kl.volume.sum() > 0 else np.ones_like(prices)
    return prices, weights, (kl.low, kl.high), f"{len(kl)} bars from {', '.join(p.name for p in paths)}"


def prepare(scenario: Scenario, data_dir: Path) -> Prepared:
    """Resolve venue, price path, depth and book for ``scenario``.

    Raises:
        DeleverInputError: any bad or missing input, named by file/field.
    """
    scenario.require_one_instrument("this command")
    venue = load_venue(scenario.venue.preset, scenario.venue.overrides)
    tier_src = resolve_tiers(venue, scenario.market.instrument, data_dir)
    tiers = tier_src.tiers
    path = build_price_path(scenario.price_driver, scenario.market.start_price, scenario.engine.dt_s, data_dir)
    start_price = float(path.price[0])
    depth = build_depth_curve(scenario.market.depth, data_dir, start_price, scenario.market.instrument)
    notes = [tier_src.note(), f"depth: {depth.source}", *[f"depth: {n}" for n in depth.notes]]
    assumptions: dict[str, object] = {}
    if scenario.book.source == "file":
        from delever.book_io import load_book

        book_path = resolve_path(scenario.book.path, data_dir, "book.path")
        book = load_book(book_path, scenario.market.instrument)
        book_source = str(book_path)
    else:
        from delever.synthesize import synthesize_book

        rng = np.random.default_rng(np.random.SeedSequence(scenario.seed))
        history = equilibrium = None
        if scenario.book.synthesize.entry.source == "history":
            prices, weights, bars, desc = _entry_history(scenario, data_dir, path.start_time_utc)
            history = (prices, weights)
            notes.append(f"book: entry prices drawn from {desc}")
            if scenario.book.synthesize.entry.equilibrium == "history":
                equilibrium = bars
                notes.append("book: in equilibrium at the start (positions the bars since their entry would have "
                             "liquidated are redrawn)")
        book, report = synthesize_book(scenario.book.synthesize, scenario.market.instrument, start_price, tiers, rng,
                                       history, equilibrium)
        assumptions = dict(report.assumptions)
        assumptions.update(positions=report.positions, long_positions=report.long_positions,
                           short_positions=report.short_positions, leverage_capped=report.leverage_capped,
                           redraws=report.redraws)
        book_source = "synthesized"
    book.validate(book_source)
    venue_hash = config_hash(scenario, venue)
    return Prepared(scenario, venue, tiers, path, depth, book, venue_hash, book_source, assumptions, notes,
                    tier_src.provenance())


def _extreme_move_pct(prices: np.ndarray, start: float, direction: float) -> float:
    moves = prices / start - 1.0
    return float((moves.min() if direction < 0 else moves.max()) * 100.0)


def make_engine(prep: Prepared, path: PricePath | None = None) -> CascadeEngine:
    """A fresh engine for ``prep`` on ``path`` (default: the scenario's own price driver)."""
    sc = prep.scenario
    return CascadeEngine(prep.venue, prep.tiers, prep.book, prep.depth, path if path is not None else prep.path,
                         sc.market.impact.permanent_fraction, sc.market.impact.resilience_half_life_s,
                         sc.market.impact.max_walk_pct, sc.engine.max_rounds, sc.insurance_fund.initial_usd,
                         sc.mitigations, seed=sc.seed)


def path_metrics(eng: CascadeEngine, initial_fund_usd: float) -> dict[str, object]:
    """Numeric outcome of one finished engine run (the per-path row of a stress run).

    ``insurance_depleted`` is True when the backstop could not absorb what it was handed: its loss went
    beyond its balance (which triggers ADL), any bad debt, or equity at or below zero at the end. ADL
    because the fund's position hit its size cap (Binance: net notional <= 100 % of the fund) is a
    capacity limit, not depletion; it counts in ``p_adl``.
    """
    exo = eng.path.price
    start = float(exo[0])
    raw = exo / start - 1.0
    direction = -1.0 if abs(raw.min()) >= abs(raw.max()) else 1.0
    exo_move = _extreme_move_pct(exo, start, direction)
    simulated = np.asarray(eng.step_rows.column("mark_price" if eng.replay else "last_price"))
    final_move = _extreme_move_pct(simulated, start, direction)
    t, bs = eng.totals, eng.backstop
    end_unrealized = bs.inv_qty * (eng.final_mark - bs.inv_entry)
    end_equity = bs.cash_usd + end_unrealized
    unrecovered = t.bad_debt_usd + max(0.0, -end_equity)
    # Bad debt: losses beyond the bankruptcy prices, i.e. what the liquidated accounts' collateral did not
    # cover — the backstop's net loss on what it took over, plus what ADL passed to counterparties.
    bad_debt = max(0.0, -(t.takeover_pnl_usd + end_unrealized)) + t.adl_haircut_usd
    fund_end, fund_cash = end_equity, bs.cash_usd
    if eng.drift is not None:
        # Drift: the backstop is the liquidator; the insurance fund is separate and bankrupt balances are the bad
        # debt (paid by the fund, the fee pool, then socialized over open positions).
        unrecovered = t.bad_debt_usd
        bad_debt = t.bankruptcy_loss_usd
        fund_end = fund_cash = eng.drift.if_cash
    checks = eng.conservation()
    return {
        "exogenous_move_pct": exo_move,
        "final_move_pct": final_move,
        "end_move_pct": float((simulated[-1] / start - 1.0) * 100.0),
        "amplification": (final_move / exo_move) if exo_move != 0 else None,
        "liquidated_notional_usd": t.liquidated_long_usd + t.liquidated_short_usd,
        "liquidated_long_usd": t.liquidated_long_usd,
        "liquidated_short_usd": t.liquidated_short_usd,
        "liquidation_count": t.liquidations,
        "rounds_max": t.rounds_max,
        "round_cap_hits": t.round_cap_hits,
        "insurance_fund_start_usd": initial_fund_usd,
        "insurance_fund_end_usd": fund_end,
        "insurance_fund_end_cash_usd": fund_cash,
        "backstop_inventory_qty": bs.inv_qty,
        "bad_debt_usd": bad_debt,
        "bad_debt_unrecovered_usd": unrecovered,
        "bad_debt_realized_usd": t.bad_debt_usd,
        "adl_notional_usd": t.adl_notional_usd,
        "adl_count": t.adl_count,
        "adl_shortfall_qty": t.adl_shortfall_qty,
        "socialized_loss_usd": t.socialized_loss_usd,
        "trader_liquidation_loss_usd": t.trader_liquidation_loss_usd,
        "insurance_depleted": bool(t.adl_for_loss > 0 or unrecovered > 0 or t.socialized_loss_usd > 0
                                   or fund_end <= 0),
        **checks,
        **_mitigation_metrics(eng),
    }


def _mitigation_metrics(eng: CascadeEngine) -> dict[str, object]:
    """Per-path figures of the mitigations that are on (none for the venue's own rules)."""
    m, out = eng.mit, {}
    if m.breaker is not None:
        out.update(halts=m.breaker.halts, halted_s=m.breaker.halted_s, limit_hit=m.breaker.limit_hit)
    if m.margin is not None:
        out["margin_multiplier_max"] = m.margin.max_seen
    if m.throttle is not None:
        out["throttle_deferred_orders"] = m.throttle.deferred
    return out


def run_path(prep: Prepared, path: PricePath) -> dict[str, object]:
    """Run the general engine for ``prep`` on one price path and return its metrics (no tables kept)."""
    eng = make_engine(prep, path)
    eng.run()
    return path_metrics(eng, prep.scenario.insurance_fund.initial_usd)


def execute(prep: Prepared) -> RunResult:
    """Run the engine on prepared inputs and assemble the summary and tables."""
    t0 = time.perf_counter()
    sc = prep.scenario
    eng = make_engine(prep)
    eng.run()
    tables = {
        "steps": eng.step_rows.to_table(),
        "rounds": eng.round_rows.to_table(),
        "liquidations": eng.liq_rows.to_table(),
        "adl": eng.adl_rows.to_table(),
        "ledger": eng.ledger.to_table(),
        "bankruptcies": (eng.drift.rows if eng.drift is not None else TableBuilder(BANKRUPTCY_SCHEMA)).to_table(),
    }
    metrics = path_metrics(eng, sc.insurance_fund.initial_usd)
    summary: dict[str, object] = {
        "scenario": sc.name,
        "config_hash": prep.config_hash,
        "seed": sc.seed,
        "venue": prep.venue.name,
        "instrument": sc.market.instrument,
        "mode": prep.path.mode,
        "price_driver": prep.path.label,
        "positions": len(prep.book),
        "steps": int(tables["steps"].num_rows),
        "backstop": prep.venue.backstop.holder,
        **metrics,
        "ledger_transfers": len(eng.ledger),
        "depth_source": prep.depth.source,
        "depth_extrapolated_qty": eng.impact.extrapolated_qty,
        "book_source": prep.book_source,
        "notes": prep.notes,
    }
    return RunResult(prep, summary, tables, time.perf_counter() - t0)


def run_scenario(scenario: Scenario, data_dir: Path) -> RunResult:
    """Prepare and execute ``scenario`` (the library entry point).

    A scenario with ``[[instruments]]`` runs on the account engine (:mod:`delever.accounts_run`).
    """
    if scenario.is_multi:
        from delever.accounts_run import execute_accounts, prepare_accounts

        prep = prepare_accounts(scenario, data_dir)
        summary, tables, wall = execute_accounts(prep)
        return RunResult(prep, summary, tables, wall)
    return execute(prepare(scenario, data_dir))


def write_run(result: RunResult, out_dir: Path, html: bool = True) -> Path:
    """Write the run folder atomically: tables as Parquet, config, summary, and the HTML report.

    The folder is built under a temporary name in ``out_dir`` and renamed when complete; on any error
    the temporary folder is removed, so no partial run folder is left behind.

    Returns:
        The run folder ``<out_dir>/<scenario>-<config_hash>-<UTC time>``.
    """
    prep = result.prepared
    folder_name = run_folder_name(f"{prep.scenario.name}-{prep.config_hash}")
    with atomic_run_folder(out_dir, folder_name) as tmp:
        for name, table in result.tables.items():
            pq.write_table(table, tmp / f"{name}.parquet")
        config = {
            "config_hash": prep.config_hash,
            "seed": prep.scenario.seed,
            "scenario": prep.scenario.model_dump(mode="json"),
            "venue_rules": prep.venue.model_dump(mode="json"),
            "margin_tiers": prep.tier_provenance,
            "book_assumptions": prep.book_assumptions,
        }
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
        (tmp / "summary.json").write_text(json.dumps(result.summary, indent=2, default=str))
        if html and getattr(prep.scenario, "is_multi", False):
            from delever.report_accounts import write_accounts_report

            write_accounts_report(result, tmp / "report.html", out_dir)
        elif html:
            from delever.report import write_html_report

            write_html_report(result, tmp / "report.html", asset_root=out_dir)
    return out_dir / folder_name
