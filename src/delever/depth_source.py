"""The depth curve a scenario's ``market.depth`` section describes (config layer: resolves data paths).

Dispatches to the readers of :mod:`delever.data.book_depth` and :mod:`delever.data.l2_feed` and to
:func:`delever.market.depth.parametric_curve`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from delever.data.book_depth import depth_curve_from_book_depth
from delever.data.l2_feed import depth_curve_from_l2
from delever.errors import DeleverInputError
from delever.market.depth import DepthCurve, parametric_curve
from delever.model.instruments import base_of
from delever.scenario import BookDepthSource, L2Source, ParametricDepth, resolve_path

__all__ = ["build_depth_curve"]


MAX_PRICE_GAP = 0.2
"""A captured book may be used at most 20 % away from its own mid: beyond, its base quantities at those distances
describe another market (fill notionals and impact would be off by the price ratio)."""


def build_depth_curve(cfg, data_dir: Path, ref_price: float, instrument: str | None = None,
                      field: str = "market.depth") -> DepthCurve:
    """Build the depth curve a scenario's ``market.depth`` section describes.

    Args:
        cfg: ``delever.scenario.BookDepthSource``, ``L2Source`` or ``ParametricDepth``.
        data_dir: Directory relative paths are resolved against
            (``delever.scenario.resolve_path(cfg.path, data_dir, "market.depth.path")``).
        ref_price: Reference price (USD) used by parametric curves; data-based curves carry the mid
            of their own capture instead, which must lie within ``MAX_PRICE_GAP`` of it.
        instrument: The scenario's instrument; a captured book naming another base asset is refused.
        field: The scenario key named in errors.

    Returns:
        DepthCurve.

    Raises:
        DeleverInputError: missing data file, bad file content, an anomalous snapshot, bad parameters, a capture
            of another instrument or of another price level.
    """
    if isinstance(cfg, ParametricDepth):
        return parametric_curve(cfg.kind, cfg.depth_usd_at_1pct, ref_price, cfg.impact_exponent)
    if isinstance(cfg, BookDepthSource):
        path = resolve_path(cfg.path, data_dir, f"{field}.path")
        curve = depth_curve_from_book_depth(path, cfg.at)
        if curve.symbol is None and "-bookDepth" in path.name:
            curve = replace(curve, symbol=path.name.split("-bookDepth")[0].upper())
    elif isinstance(cfg, L2Source):
        curve = depth_curve_from_l2(resolve_path(cfg.path, data_dir, f"{field}.path"), cfg.at, cfg.contract_size_usd)
    else:
        raise DeleverInputError(f"{field}: unsupported depth source {type(cfg).__name__}")
    _check_matches(curve, instrument, ref_price, field)
    return curve


def _check_matches(curve: DepthCurve, instrument: str | None, ref_price: float, field: str) -> None:
    if instrument is not None and curve.symbol is not None:
        want = base_of(instrument, "USDT")
        got = base_of(curve.symbol.split("_")[0], "USDT")
        if want != got:
            raise DeleverInputError(f"{field}: the captured book is {curve.symbol} ({got}), the instrument is "
                                    f"{instrument} ({want}); use a capture of the instrument or a parametric depth")
    if curve.ref_price is not None and ref_price > 0 and abs(ref_price / curve.ref_price - 1.0) > MAX_PRICE_GAP:
        raise DeleverInputError(
            f"{field}: the captured book's mid is {curve.ref_price:,.2f} USD but the run starts at {ref_price:,.2f} "
            f"USD ({ref_price / curve.ref_price - 1:+.0%}); a book may be used within {MAX_PRICE_GAP:.0%} of its own "
            "price level: set market.start_price near it, or use a parametric depth")
