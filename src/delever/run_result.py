"""What a run is made of and what it gives back: :class:`Prepared` inputs and the :class:`RunResult`."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from delever.book import PositionBook
from delever.market.depth import DepthCurve
from delever.market.price_path import PricePath
from delever.scenario import Scenario
from delever.venues.rules import VenueRules
from delever.venues.tiers import MarginTiers

__all__ = ["Prepared", "RunResult"]


@dataclass
class Prepared:
    """Everything a run needs, resolved from the scenario and the data directory."""

    scenario: Scenario
    venue: VenueRules
    tiers: MarginTiers
    path: PricePath
    depth: DepthCurve
    book: PositionBook
    config_hash: str
    book_source: str
    book_assumptions: dict[str, object] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tier_provenance: dict[str, object] = field(default_factory=dict)


@dataclass
class RunResult:
    """A finished run: the summary (the ``--json`` object), the tables, and the inputs it came from."""

    prepared: Prepared  # or delever.accounts_run.PreparedAccounts for a multi-instrument run
    summary: dict[str, object]
    tables: dict[str, pa.Table]
    wall_s: float
