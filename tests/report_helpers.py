"""Checks shared by the report tests: small HTML pages that load plotly.js from the output root."""

from __future__ import annotations

import re
from pathlib import Path

from delever.plotly_asset import plotly_asset_name

MAX_REPORT_BYTES = 1_000_000


def entries(root: Path) -> list[str]:
    """Names in ``root`` other than the shared plotly.js asset."""
    return [p.name for p in root.iterdir() if p.name != plotly_asset_name()]


def check_report(report: Path, root: Path) -> Path:
    """Assert ``report`` is under 1 MB, loads plotly.js once by a relative path before its first plot,
    and that the path resolves (from the report's folder) to ``root``'s asset; return the asset path."""
    assert report.stat().st_size < MAX_REPORT_BYTES
    html = report.read_text(encoding="utf-8")
    assert "plotly.js v" not in html  # the library is not inlined
    srcs = re.findall(r'<script[^>]*\bsrc="([^"]+)"', html)
    assert srcs == [srcs[0]] and srcs[0].endswith(plotly_asset_name())
    assert not srcs[0].startswith(("/", "http"))  # relative: the folder can be moved with its root
    assert html.index(f'src="{srcs[0]}"') < html.index("Plotly.newPlot")
    asset = (report.parent / srcs[0]).resolve()
    assert asset == (root / plotly_asset_name()).resolve() and asset.is_file()
    assert asset.stat().st_size > 1_000_000 and b"plotly" in asset.read_bytes()[:2000].lower()
    return asset
