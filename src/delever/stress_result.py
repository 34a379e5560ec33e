"""The result of a Monte Carlo stress run (``delever.stress.run_stress``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

__all__ = ["StressResult"]


@dataclass
class StressResult:
    """A finished stress run.

    Attributes:
        summary: the summary (the CLI's ``--json`` object, ``summary.json``).
        paths: per-path metrics, one row per path ordered by ``path``.
        fan: price quantile bands per step: ``{"t_s": [...], "paths": k, "quantiles": {"p01": [...], ...}}``.
        run_folder: the run folder, or None when nothing was written (``out_dir=None``).
    """

    summary: dict[str, Any]
    paths: pa.Table
    fan: dict[str, Any]
    run_folder: Path | None = None
    notes: list[str] = field(default_factory=list)
