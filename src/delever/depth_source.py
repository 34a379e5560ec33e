"""The depth curve a scenario's ``market.depth`` section describes (config layer: resolves data paths).

Dispatches to the readers of :mod:`delever.data.book_depth` and :mod:`delever.data.l2_feed` and to
:func:`delever.market.depth.parametric_curve`.
"""

from __future__ import annotations

from pathlib import Path

from delever.data.book_depth import depth_curve_from_book_depth
from delever.data.l2_feed import depth_curve_from_l2
from delever.errors import DeleverInputError
from delever.market.depth import DepthCurve, parametric_curve
from delever.scenario import BookDepthSource, L2Source, ParametricDepth, resolve_path

__all__ = ["build_depth_curve"]


def build_depth_curve(cfg, data_dir: Path, ref_price: float) -> DepthCurve:
    """Build the depth curve a scenario's ``market.depth`` section describes.

    Args:
        cfg: ``delever.scenario.BookDepthSource``, ``L2Source`` or ``ParametricDepth``.
        data_dir: Directory relative paths are resolved against
            (``delever.scenario.resolve_path(cfg.path, data_dir, "market.depth.path")``).
        ref_price: Reference price (USD) used by parametric curves; data-based curves carry the mid
            of their own capture instead.

    Returns:
        DepthCurve.

    Raises:
        DeleverInputError: missing data file, bad file content, an anomalous snapshot, bad parameters.
    """
    if isinstance(cfg, ParametricDepth):
        return parametric_curve(cfg.kind, cfg.depth_usd_at_1pct, ref_price, cfg.impact_exponent)
    if isinstance(cfg, BookDepthSource):
        return depth_curve_from_book_depth(resolve_path(cfg.path, data_dir, "market.depth.path"), cfg.at)
    if isinstance(cfg, L2Source):
        return depth_curve_from_l2(resolve_path(cfg.path, data_dir, "market.depth.path"), cfg.at,
                                   cfg.contract_size_usd)
    raise DeleverInputError(f"market.depth: unsupported depth source {type(cfg).__name__}")
