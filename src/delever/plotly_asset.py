"""plotly.js written once per output root; the HTML reports reference it by a relative path.

Inlining plotly.js made every report 4-6 MB. Instead the library is written once as
``<root>/plotly-<plotly.js version>.min.js`` (content from :func:`plotly.offline.get_plotlyjs`, the
copy bundled with the installed plotly package, so the reports still work offline) and each report
passes the relative path to ``plotly.io.to_html(include_plotlyjs=<path ending in .js>)``, which
emits ``<script src="<path>">`` before its first plot.

Run folders are built under a temporary name inside the root and renamed (:mod:`delever.runfolder`);
the relative path (``../plotly-<version>.min.js``) is the same before and after the rename.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def plotly_asset_name() -> str:
    """``plotly-<version>.min.js`` for the plotly.js bundled with the installed plotly package."""
    from plotly.offline import get_plotlyjs_version

    return f"plotly-{get_plotlyjs_version()}.min.js"


def ensure_plotly_asset(root: Path) -> Path:
    """Write ``root / plotly_asset_name()`` if absent and return its path.

    The file is written to a unique temporary name in ``root`` and renamed (``os.replace``), so a
    reader never sees a partial file and concurrent writers leave one complete copy.

    Args:
        root: output root that holds the run folders (created if missing).

    Returns:
        The asset's path.
    """
    from plotly.offline import get_plotlyjs

    root.mkdir(parents=True, exist_ok=True)
    asset = root / plotly_asset_name()
    if asset.is_file():
        return asset
    tmp = root / f".{asset.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.write_text(get_plotlyjs(), encoding="utf-8")
        os.replace(tmp, asset)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return asset


def plotly_script_src(report_path: Path, root: Path | None = None) -> str:
    """Ensure the asset in ``root`` and return its path relative to ``report_path``'s folder.

    Pass the result as ``include_plotlyjs`` of the report's first ``plotly.io.to_html`` call.

    Args:
        report_path: the HTML file being written (its folder may be a temporary run folder in ``root``).
        root: the output root (``--out``); None: the report's own folder (the asset goes next to it).

    Returns:
        A POSIX relative path ending in ``.js``, e.g. ``../plotly-3.0.1.min.js``.
    """
    folder = Path(report_path).absolute().parent
    asset = ensure_plotly_asset(folder if root is None else Path(root).absolute())
    return Path(os.path.relpath(asset, folder)).as_posix()
