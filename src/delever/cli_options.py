"""Command-line options shared by several commands (typer ``Annotated`` aliases), defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ScenarioOpt = Annotated[Path | None, typer.Option("--scenario", "-s", help="Scenario TOML; default: the embedded default")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a key: key.path=value (TOML value)")]
DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", help="Root of data paths [env DELEVER_DATA_DIR; default ../shared/data]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object (the summary) on stdout")]
EnsembleOpt = Annotated[int, typer.Option("--ensemble", help="Perturbed books for the 5/50/95 % bands (0: none)")]
OpenInterestSigmaOpt = Annotated[float, typer.Option("--open-interest-sigma", help="Ensemble: log-std of open interest")]
LongShortSigmaOpt = Annotated[float, typer.Option("--long-short-sigma", help="Ensemble: log-std of the long/short ratio")]
LeverageConcentrationOpt = Annotated[float, typer.Option(
    "--leverage-concentration", help="Ensemble: Dirichlet concentration of the leverage mix")]
EntrySigmaSigmaOpt = Annotated[float, typer.Option("--entry-sigma-sigma", help="Ensemble: log-std of entry.sigma")]
NoWriteOpt = Annotated[bool, typer.Option("--no-write", help="Do not write a folder")]
# Monte Carlo runs (stress, compare, frontier)
PathsOpt = Annotated[int | None, typer.Option("--paths", help="Number of price paths (overrides stress.paths)")]
ExecutorOpt = Annotated[str, typer.Option("--executor", help="inprocess | processes | dask")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="Worker processes; default: CPU count")]
SchedulerOpt = Annotated[str | None, typer.Option(
    "--scheduler", help="Address of an existing Dask scheduler (--executor dask)")]
BlockSizeOpt = Annotated[int | None, typer.Option("--block-size", help="Paths per block (overrides stress.block_size)")]
OutOpt = Annotated[Path, typer.Option("--out", help="Folder that receives the run folder")]
NoProgressOpt = Annotated[bool, typer.Option("--no-progress", help="No progress bar")]
EngineOpt = Annotated[str, typer.Option("--engine", help="auto | fast | general (same numbers; fast when supported)")]
