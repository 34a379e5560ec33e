"""Named policy sets (``delever compare --policies``): scenario overrides shipped as TOML package data."""
