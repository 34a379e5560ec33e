"""Command line: ``delever run``, ``stress``, ``compare``, ``frontier``, ``venues`` (and heatmap, replay, validate).

Bad input exits with code 2 and one line on stderr naming the file, row or field.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from delever.cli_options import (
    BlockSizeOpt,
    DataDirOpt,
    EngineOpt,
    ExecutorOpt,
    JsonOpt,
    NoProgressOpt,
    NoWriteOpt,
    OutOpt,
    PathsOpt,
    ScenarioOpt,
    SchedulerOpt,
    SetOpt,
    WorkersOpt,
)
from delever.errors import DeleverInputError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Simulate and measure deleveraging cascades: liquidations, insurance fund, ADL.")
err = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("delever")
        except PackageNotFoundError:   # run from a source tree that was never installed
            v = "unknown (not installed)"
        typer.echo(f"delever {v}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                help="Print the installed version and exit")] = False) -> None:
    """Simulate and measure deleveraging cascades: liquidations, insurance fund, ADL."""


def _fail(exc: Exception) -> None:
    # escaped: messages name TOML tables such as [[instruments]], which rich would read as markup
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _stress_call(fn):
    """Run a stress-based command: bad input exits 2 with one line, a failed block exits 1 (blocks kept)."""
    from delever.stress import StressError

    try:
        return fn()
    except DeleverInputError as exc:
        _fail(exc)
    except StressError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None


@app.command()
def run(
    scenario: ScenarioOpt = None,
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Folder that receives the run folder")] = Path("runs"),
    as_json: JsonOpt = False,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip the HTML report")] = False,
    no_write: Annotated[bool, typer.Option("--no-write", help="Do not write a run folder")] = False,
) -> None:
    """Run one cascade: venue rules, position book, depth and price driver from a scenario."""
    from delever.runner import run_scenario, write_run
    from delever.scenario import load_scenario, resolve_data_dir

    try:
        sc = load_scenario(scenario, set_ or [])
        result = run_scenario(sc, resolve_data_dir(data_dir))
        folder = None if no_write else write_run(result, out, html=not no_report)
    except DeleverInputError as exc:
        _fail(exc)
        return
    summary = dict(result.summary)
    summary["run_folder"] = str(folder) if folder else None
    summary["wall_s"] = round(result.wall_s, 3)
    if as_json:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
    else:
        from delever.report import print_summary

        print_summary(summary, Console())


def _run_overrides(set_: list[str] | None, paths: int | None, block_size: int | None) -> list[str]:
    """``--set`` items plus ``stress.paths`` from ``--paths``; checks ``--paths`` and ``--block-size``."""
    if paths is not None and paths < 1:
        raise DeleverInputError(f"--paths: expected a whole number of paths >= 1, got {paths}")
    if block_size is not None and block_size < 1:
        raise DeleverInputError(f"--block-size: expected a whole number of paths per block >= 1, got {block_size}")
    return [*(set_ or []), *([f"stress.paths={paths}"] if paths is not None else [])]


@app.command()
def stress(
    scenario: ScenarioOpt = None,
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
    paths: PathsOpt = None,
    executor: ExecutorOpt = "processes",
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    block_size: BlockSizeOpt = None,
    out: OutOpt = Path("runs"),
    resume: Annotated[Path | None, typer.Option("--resume", help="Resume an interrupted stress run folder")] = None,
    as_json: JsonOpt = False,
    no_progress: NoProgressOpt = False,
    engine: EngineOpt = "auto",
) -> None:
    """Monte Carlo stress: many generated price paths on one book; LaR, bad-debt VaR/ES, P(ADL), critical shock."""
    from delever.scenario import load_scenario, resolve_data_dir
    from delever.stress import run_stress

    def go():
        sc = load_scenario(scenario, _run_overrides(set_, paths, block_size))
        return run_stress(sc, resolve_data_dir(data_dir), executor=executor, workers=workers, scheduler=scheduler,
                          block_size=block_size, out_dir=out, resume=resume, progress=not no_progress, engine=engine)

    result = _stress_call(go)
    if as_json:
        sys.stdout.write(json.dumps(result.summary, default=str) + "\n")
    else:
        from delever.stress_report import print_stress_summary

        print_stress_summary(result.summary, Console())


PoliciesOpt = Annotated[str, typer.Option(
    "--policies", help="Comma-separated policy presets (baseline, partial, mark-ema, circuit-breaker, dynamic-margin, "
                       "pro-rata-adl) or TOML files; a+b combines two")]
ResamplesOpt = Annotated[int, typer.Option("--resamples", help="Bootstrap replicates of the intervals")]
BootstrapSeedOpt = Annotated[int | None, typer.Option(
    "--bootstrap-seed", help="Seed of the bootstrap; default: the scenario's seed")]


def _compare_out(result, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result.summary, default=str) + "\n")
    else:
        from delever.compare_report import print_compare

        print_compare(result.summary, Console())


@app.command()
def compare(
    policies: PoliciesOpt,
    scenario: ScenarioOpt = None,
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
    paths: PathsOpt = None,
    executor: ExecutorOpt = "processes",
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    block_size: BlockSizeOpt = None,
    engine: EngineOpt = "auto",
    resamples: ResamplesOpt = 2000,
    bootstrap_seed: BootstrapSeedOpt = None,
    out: OutOpt = Path("runs"),
    no_write: NoWriteOpt = False,
    as_json: JsonOpt = False,
    no_progress: NoProgressOpt = False,
) -> None:
    """Compare policy sets on the same random paths: LaR, bad debt VaR/ES, P(depleted), P(ADL), ... with intervals."""
    from delever.compare import parse_policies, policy_scenarios, run_compare
    from delever.scenario import resolve_data_dir

    def go():
        pols = parse_policies(policies)
        scenarios = policy_scenarios(scenario, pols, _run_overrides(set_, paths, block_size))
        return run_compare(scenarios, pols, resolve_data_dir(data_dir), executor=executor, workers=workers,
                           scheduler=scheduler, block_size=block_size, engine=engine, progress=not no_progress,
                           out_dir=None if no_write else out, resamples=resamples, bootstrap_seed=bootstrap_seed)

    result = _stress_call(go)
    _compare_out(result, as_json)


@app.command()
def frontier(
    param: Annotated[str, typer.Option("--param", help="Dotted scenario key to sweep, e.g. "
                                                        "mitigations.circuit_breaker.band_pct")],
    values: Annotated[str, typer.Option("--values", help="Comma-separated values (TOML values), at least 2")],
    policy: Annotated[str, typer.Option("--policy", help="Policy the values are applied on (preset or TOML file)")]
    = "baseline",
    scenario: ScenarioOpt = None,
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
    paths: PathsOpt = None,
    executor: ExecutorOpt = "processes",
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    block_size: BlockSizeOpt = None,
    engine: EngineOpt = "auto",
    resamples: ResamplesOpt = 2000,
    bootstrap_seed: BootstrapSeedOpt = None,
    out: OutOpt = Path("runs"),
    no_write: NoWriteOpt = False,
    as_json: JsonOpt = False,
    no_progress: NoProgressOpt = False,
) -> None:
    """Sweep one policy parameter on the same random paths: bad debt against liquidation volume per value."""
    from delever.compare import load_policy, parse_values, run_frontier
    from delever.scenario import resolve_data_dir

    def go():
        vals = parse_values(values)
        if not policy.strip():
            raise DeleverInputError("--policy: expected a policy preset or TOML file, got nothing")
        base = load_policy(policy, option="--policy")
        return run_frontier(scenario, param, vals, base, resolve_data_dir(data_dir),
                            _run_overrides(set_, paths, block_size), executor=executor, workers=workers,
                            scheduler=scheduler, block_size=block_size, engine=engine, progress=not no_progress,
                            out_dir=None if no_write else out, resamples=resamples, bootstrap_seed=bootstrap_seed)

    result = _stress_call(go)
    _compare_out(result, as_json)


@app.command()
def venues(
    symbols: Annotated[bool, typer.Option("--symbols", help="Also list the symbols of each venue's tier file")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """List the venue presets with their mechanics and sources."""
    from delever.venues import PRESETS, load_venue

    out = Console(soft_wrap=True, highlight=False)
    for name in PRESETS:
        v = load_venue(name)
        lq = v.liquidation
        out.print(f"[bold]{name}[/]: {v.title} (settles in {v.settle})")
        out.print(f"  mark: {v.mark.method}, basis window {v.mark.basis_window_s:g} s")
        if v.dydx is not None:
            d = v.dydx
            out.print(f"  liquidation: IOC at the fillable price (SMMR {d.spread_to_maintenance_margin_ratio_ppm / 1e6:g}), "
                      f"fee <= {d.max_liquidation_fee_ppm / 1e4:g}% to the insurance fund; per block: "
                      f"{d.max_position_portion_liquidated_ppm / 1e4:g}% of a position (min "
                      f"{d.min_position_notional_liquidated_usd:,.0f} USD), {d.subaccount_max_notional_liquidated_usd:,.0f} "
                      f"USD and {d.subaccount_max_insurance_lost_usd:,.0f} USD fund loss per account")
            out.print(f"  backstop: {v.backstop.holder} pays fills below bankruptcy, no takeover; deleveraging at the "
                      f"bankruptcy price from a random start ({d.max_deleveraging_attempts_per_block} per block)")
        else:
            out.print(f"  liquidation: clearance fee {lq.clearance_fee_rate:.2%}, step down brackets {lq.step_down_tiers}, "
                      f"partial {lq.partial_fraction:.0%} above {lq.partial_threshold_usd:,.0f} USD "
                      f"(cooldown {lq.partial_cooldown_s:g} s), backstop below {lq.backstop_below_mm_fraction:.3g} x MM")
            if lq.step_down_tiers:
                out.print(f"  step-down: {lq.step_down_order} order from tier {lq.step_down_from_tier} to the "
                          f"{lq.step_down_to.replace('_', ' ')}, freeze {lq.step_down_freeze_s:g} s; "
                          f"close at bankruptcy price {lq.close_at_bankruptcy}")
            if lq.liquidation_taker_fee_rate or v.adl.adl_maker_fee_rate:
                out.print(f"  fees: liquidation taker {lq.liquidation_taker_fee_rate:.3%}, "
                          f"ADL maker {v.adl.adl_maker_fee_rate:.3%} (fee pool)")
            if v.backstop.adl_drawdown_fraction:
                out.print(f"  ADL also when the fund drops {v.backstop.adl_drawdown_fraction:.0%} below its "
                          f"{v.backstop.adl_drawdown_window_s / 3600:g} h peak")
            adl = ("no ADL (bankrupt losses socialized)" if v.drift is not None
                   else f"ADL ranked by {v.adl.ranking}, filled at the {v.adl.price} price")
            out.print(f"  backstop: {v.backstop.holder}, takeover at {v.backstop.takeover_price} price; {adl}")
            if v.drift is not None:
                d = v.drift
                out.print(f"  drift: liquidator takeover at oracle, buffer {d.liquidation_margin_buffer_ratio:.2%}, ramp "
                          f"{d.initial_pct_to_liquidate:.0%} + slots/{d.liquidation_duration_slots:g} "
                          f"({d.slot_time_s:g} s slots); bankruptcy: insurance fund -> fee pool -> socialized loss")
        names = [f"{k} ({' '.join(t.coins)})" if t.coins else k for k, t in v.tiers.items()]
        out.print(f"  instruments: {', '.join(names)}")
        if v.tier_file is not None:
            tf = v.tier_file
            out.print(f"  other instruments: brackets from {tf.path} in the data dir (as of {tf.as_of}; --symbols lists them)")
            if symbols:
                _print_tier_file_symbols(out, v, data_dir)
        for src in v.sources:
            out.print(f"  source: {src}")


def _print_tier_file_symbols(out: Console, venue, data_dir: Path | None) -> None:
    from delever.scenario import resolve_data_dir
    from delever.tier_source import tier_file_table

    try:
        path, table = tier_file_table(venue, resolve_data_dir(data_dir))
    except DeleverInputError as exc:
        _fail(exc)
    out.print(f"  {len(table)} symbols in {path}: {' '.join(table)}")


def _register_commands() -> None:
    from delever.heatmap import heatmap_command
    from delever.replay import replay_command
    from delever.validate import validate_command

    app.command("heatmap", help="Liquidation map and heatmap, with and without cascade feedback, with ensemble bands.")(
        heatmap_command)
    app.command("replay", help="Replay a real price path: estimated liquidations per minute with ensemble bands.")(
        replay_command)
    app.command("validate", help="Validate against real crashes (Binance BTCUSDT, Hyperliquid 2025-10-10, Aave "
                "2021-05-19), or one 1-minute kline window you bring (--window FILE --instrument SYMBOL); "
                "primary statistic: correlation at lag 0.")(validate_command)


_register_commands()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
