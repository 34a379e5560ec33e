"""Which margin-tier table a run uses: the preset's packaged ``tiers`` or the venue's data-dir ``tier_file``.

Config layer: it resolves the tier file against the data directory and records the provenance (table,
date, source) that the run folder's ``config.json`` and the summary notes carry. The domain reader is
``delever.venues.ccxt_tiers``; the tiers themselves are ``delever.venues.tiers.MarginTiers``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from delever.errors import DeleverInputError
from delever.scenario import resolve_path
from delever.venues.ccxt_tiers import LeverageBrackets, exchange_symbol, read_ccxt_leverage_tiers
from delever.venues.rules import VenueRules
from delever.venues.tiers import MarginTiers


@dataclass(frozen=True)
class TierSource:
    """Margin tiers of one instrument and where they come from.

    Attributes:
        tiers: the brackets (USD notional).
        instrument: the scenario's instrument.
        table: ``preset <venue> tiers.<key>`` or the tier file's path.
        symbol: the table's key or the file's exchange symbol.
        as_of: date of the brackets (None when the preset does not say).
        source: where the numbers come from (None when the preset does not say).
    """

    tiers: MarginTiers
    instrument: str
    table: str
    symbol: str
    as_of: str | None
    source: str | None

    def provenance(self) -> dict[str, object]:
        """JSON-ready provenance with the resolved table (floors, max leverage, MMR, maintenance amount)."""
        t = self.tiers
        return {"instrument": self.instrument, "table": self.table, "symbol": self.symbol, "as_of": self.as_of,
                "source": self.source, "floor_usd": t.floor_usd.tolist(), "max_leverage": t.max_leverage.tolist(),
                "mmr": t.mmr.tolist(), "maint_amount_usd": t.maint_amount_usd.tolist()}

    def note(self) -> str:
        """One line for the run's notes."""
        when = f", as of {self.as_of}" if self.as_of else ""
        return f"margin tiers: {self.symbol} from {self.table}{when} ({self.tiers.floor_usd.size} brackets)"


def tier_file_table(venue: VenueRules, data_dir: Path) -> tuple[Path, dict[str, LeverageBrackets]]:
    """The venue's tier file (resolved against ``data_dir``) and its brackets by exchange symbol.

    Raises:
        DeleverInputError: the venue has no ``tier_file``; the file is missing or invalid.
    """
    if venue.tier_file is None:
        raise DeleverInputError(f"venue {venue.name}: no tier_file (margin tiers only from the preset)")
    path = resolve_path(venue.tier_file.path, data_dir, f"venue {venue.name} tier_file.path")
    return path, read_ccxt_leverage_tiers(path)


def resolve_tiers(venue: VenueRules, instrument: str, data_dir: Path) -> TierSource:
    """Margin tiers of ``instrument``: the preset's table if it names it, else the venue's tier file.

    Args:
        venue: resolved venue rules.
        instrument: ``market.instrument`` (exchange symbol ``ETHUSDT`` or ccxt ``ETH/USDT:USDT``).
        data_dir: data directory against which ``tier_file.path`` is resolved.

    Raises:
        DeleverInputError: the instrument is in neither (one line saying how to list the known ones); the
            tier file is missing or invalid; its brackets are not in a USD stablecoin (``tier_file.currencies``).
    """
    key = venue.packaged_tier_key(instrument)
    if key is not None or venue.tier_file is None:
        tiers = venue.tiers_for(instrument)  # raises for an unknown instrument of a venue without a tier file
        t = venue.tiers[key]
        return TierSource(tiers, instrument, f"preset {venue.name} tiers.{key}", key, t.as_of, t.source)
    tf = venue.tier_file
    path, table = tier_file_table(venue, data_dir)
    symbol = exchange_symbol(instrument) if "/" in instrument else instrument
    if symbol not in table:
        raise DeleverInputError(
            f"market.instrument: venue {venue.name} has no margin tiers for {instrument!r}: not in the preset "
            f"({', '.join(sorted(venue.tiers))}) nor among the {len(table)} symbols of {tf.path} (as of {tf.as_of}); "
            f"`delever venues --symbols` lists them")
    b = table[symbol]
    if b.currency not in tf.currencies:
        raise DeleverInputError(
            f"market.instrument: {symbol} brackets in {tf.path} are in {b.currency} notional; delever's notionals "
            f"are USD (tier_file.currencies: {', '.join(tf.currencies)})")
    return TierSource(b.tiers, instrument, str(path), symbol, tf.as_of, tf.source)
