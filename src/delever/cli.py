"""Command line: ``delever run``, ``delever stress``, ``delever venues``.

Bad input exits with code 2 and one line on stderr naming the file, row or field.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from delever.cli_options import DataDirOpt, JsonOpt, ScenarioOpt, SetOpt
from delever.errors import DeleverInputError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Simulate and measure deleveraging cascades: liquidations, insurance fund, ADL.")
err = Console(stderr=True)


def _fail(exc: Exception) -> None:
    err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


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


@app.command()
def stress(
    scenario: ScenarioOpt = None,
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
    paths: Annotated[int | None, typer.Option("--paths", help="Number of price paths (overrides stress.paths)")] = None,
    executor: Annotated[str, typer.Option("--executor", help="inprocess | processes | dask")] = "processes",
    workers: Annotated[int | None, typer.Option("--workers", help="Worker processes; default: CPU count")] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="Address of an existing Dask scheduler (--executor dask)")] = None,
    block_size: Annotated[int | None, typer.Option("--block-size", help="Paths per block (overrides stress.block_size)")] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder that receives the run folder")] = Path("runs"),
    resume: Annotated[Path | None, typer.Option("--resume", help="Resume an interrupted stress run folder")] = None,
    as_json: JsonOpt = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar")] = False,
    engine: Annotated[str, typer.Option("--engine", help="auto | fast | general (same numbers; fast when supported)")] = "auto",
) -> None:
    """Monte Carlo stress: many generated price paths on one book; LaR, bad-debt VaR/ES, P(ADL), critical shock."""
    from delever.scenario import load_scenario, resolve_data_dir
    from delever.stress import StressError, run_stress

    try:
        if paths is not None and paths < 1:
            raise DeleverInputError(f"--paths: expected a whole number of paths >= 1, got {paths}")
        if block_size is not None and block_size < 1:
            raise DeleverInputError(f"--block-size: expected a whole number of paths per block >= 1, got {block_size}")
        overrides = [*(set_ or []), *([f"stress.paths={paths}"] if paths is not None else [])]
        sc = load_scenario(scenario, overrides)
        result = run_stress(sc, resolve_data_dir(data_dir), executor=executor, workers=workers, scheduler=scheduler,
                            block_size=block_size, out_dir=out, resume=resume, progress=not no_progress,
                            engine=engine)
    except DeleverInputError as exc:
        _fail(exc)
        return
    except StressError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None
    if as_json:
        sys.stdout.write(json.dumps(result.summary, default=str) + "\n")
    else:
        from delever.stress_report import print_stress_summary

        print_stress_summary(result.summary, Console())


@app.command()
def venues() -> None:
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
            out.print(f"  backstop: {v.backstop.holder}, takeover at {v.backstop.takeover_price} price; "
                      f"ADL ranked by {v.adl.ranking}, filled at the {v.adl.price} price")
        names = [f"{k} ({' '.join(t.coins)})" if t.coins else k for k, t in v.tiers.items()]
        out.print(f"  instruments: {', '.join(names)}")
        for src in v.sources:
            out.print(f"  source: {src}")


def _register_commands() -> None:
    from delever.heatmap import heatmap_command
    from delever.replay import replay_command
    from delever.validate import validate_command

    app.command("heatmap", help="Liquidation map and heatmap, with and without cascade feedback, with ensemble bands.")(
        heatmap_command)
    app.command("replay", help="Replay a real price path: estimated liquidations per minute with ensemble bands.")(
        replay_command)
    app.command("validate", help="Validate against real crashes (Binance BTCUSDT, Hyperliquid 2025-10-10, Aave "
                "2021-05-19).")(validate_command)


_register_commands()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
