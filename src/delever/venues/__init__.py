"""Venue rules: presets as data (``presets/*.toml``) plus the formulas in ``formulas``."""

from delever.venues.rules import PRESETS, VenueRules, load_venue

__all__ = ["PRESETS", "VenueRules", "load_venue"]
