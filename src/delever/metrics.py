"""Tail metrics over the per-path outcomes of a Monte Carlo stress run, as risk teams publish them.

* **LaR** (Liquidations-at-Risk, Gauntlet): the 95th / 99th percentile of liquidated notional.
* **VaR of bad debt** (Chaos Labs): the 95th percentile of bad debt is the VaR, the 99th the
  "extreme VaR".
* **ES** (expected shortfall): the mean of the outcomes at or beyond the VaR quantile,
  ``ES_a = mean{x_i : x_i >= VaR_a}``.
* **Probabilities** of an event (insurance fund depleted, any ADL, any bad debt) with a Wilson score
  95 % interval.
* **Distribution summaries**: mean, min, max and the 1/5/25/50/75/95/99 % quantiles.

Quantile definition: every quantile here is numpy's default, ``np.quantile(x, q,
method="linear")``: the sorted sample ``x_(0) <= ... <= x_(n-1)`` is interpolated linearly at
position ``h = (n - 1) q`` (Hyndman & Fan type 7, the default of numpy, R and Excel's
``PERCENTILE.INC``). With few paths the 99th percentile therefore lies between the two largest
outcomes; it is not an order statistic. ES uses the same VaR, so ``ES_a >= VaR_a`` always and ES
averages at least one outcome (the largest).

Outcomes are "losses": larger is worse (liquidated notional, bad debt, ADL notional, amplification).
NaN (e.g. an undefined amplification on a path that did not move) is dropped before any statistic and
the count of dropped values is reported by :func:`distribution_summary`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from delever.errors import DeleverInputError

__all__ = [
    "QUANTILES",
    "WILSON_Z95",
    "distribution_summary",
    "expected_shortfall",
    "expected_shortfall_along",
    "liquidations_at_risk",
    "probability",
    "quantile",
    "tail_metrics",
    "value_at_risk",
    "wilson_interval",
]

QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.25, 0.50, 0.75, 0.95, 0.99)
WILSON_Z95 = 1.959963984540054  # two-sided 95 % standard normal quantile


def _clean(values: Iterable[Any] | np.ndarray, name: str) -> np.ndarray:
    """Float64 array of ``values`` with None/NaN dropped; raises if nothing is left or a value is infinite."""
    arr = np.asarray([np.nan if v is None else v for v in values] if not isinstance(values, np.ndarray) else values,
                     dtype=np.float64).ravel()
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        raise DeleverInputError(f"{name}: expected at least one finite outcome, got none")
    if not np.isfinite(arr).all():
        raise DeleverInputError(f"{name}: expected finite outcomes, got an infinite value")
    return arr


def _level(level: float, name: str) -> float:
    if not (isinstance(level, int | float) and 0.0 < float(level) < 1.0):
        raise DeleverInputError(f"{name}: expected a level strictly between 0 and 1, got {level!r}")
    return float(level)


def quantile(values: Iterable[Any] | np.ndarray, q: float, name: str = "values") -> float:
    """The ``q`` quantile of ``values`` (numpy's default linear interpolation, type 7).

    Args:
        values: outcomes; None and NaN are dropped.
        q: level in [0, 1].
        name: what the values are, for error messages.

    Returns:
        The quantile as a Python float.

    Raises:
        DeleverInputError: no finite value, an infinite value, or ``q`` outside [0, 1].
    """
    if not (isinstance(q, int | float) and 0.0 <= float(q) <= 1.0):
        raise DeleverInputError(f"{name}: expected a quantile level in [0, 1], got {q!r}")
    return float(np.quantile(_clean(values, name), float(q)))


def value_at_risk(losses: Iterable[Any] | np.ndarray, level: float = 0.95, name: str = "losses") -> float:
    """VaR at ``level``: the ``level`` quantile of the losses (larger = worse), linear interpolation.

    Raises:
        DeleverInputError: no finite loss, or ``level`` not in (0, 1).
    """
    return float(np.quantile(_clean(losses, name), _level(level, name)))


def expected_shortfall(losses: Iterable[Any] | np.ndarray, level: float = 0.95, name: str = "losses") -> float:
    """ES at ``level``: the mean of the losses at or beyond ``VaR_level`` (``x >= VaR``).

    Raises:
        DeleverInputError: no finite loss, or ``level`` not in (0, 1).
    """
    return float(expected_shortfall_along(_clean(losses, name), _level(level, name)))


def expected_shortfall_along(losses: np.ndarray, level: float, axis: int = -1) -> np.ndarray:
    """ES at ``level`` of each slice along ``axis`` of an array of finite losses (vectorized, no checks).

    The definition of :func:`expected_shortfall` (mean of ``x >= VaR_level``, VaR by linear
    interpolation) for many samples at once, e.g. bootstrap replicates of shape ``(replicates, paths)``.

    Args:
        losses: float64 array, finite (no NaN).
        level: in (0, 1).
        axis: the axis holding one sample.

    Returns:
        float64 array of ``losses``' shape without ``axis``.
    """
    var = np.quantile(losses, level, axis=axis, keepdims=True)
    tail = losses >= var
    return np.where(tail, losses, 0.0).sum(axis=axis) / tail.sum(axis=axis)


def liquidations_at_risk(liquidated_usd: Iterable[Any] | np.ndarray,
                         levels: Sequence[float] = (0.95, 0.99)) -> dict[str, float]:
    """Gauntlet's Liquidations-at-Risk: percentiles of liquidated notional.

    Returns:
        ``{"lar_95_usd": ..., "lar_99_usd": ...}`` (one key per level, named by its percent).
    """
    arr = _clean(liquidated_usd, "liquidated_notional_usd")
    return {f"lar_{_pct(lv)}_usd": float(np.quantile(arr, _level(lv, "LaR level"))) for lv in levels}


def wilson_interval(successes: int, trials: int, z: float = WILSON_Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95 % with the default ``z``).

    ``centre = (p + z^2/2n) / (1 + z^2/n)``, ``half = z / (1 + z^2/n) * sqrt(p(1-p)/n + z^2/4n^2)``.
    Unlike the normal (Wald) interval it stays inside [0, 1] and is not empty at ``p = 0`` or 1,
    which matters for rare events such as a depleted insurance fund.

    Raises:
        DeleverInputError: ``trials < 1`` or ``successes`` outside ``[0, trials]``.
    """
    if trials < 1:
        raise DeleverInputError(f"trials: expected at least 1, got {trials!r}")
    if not 0 <= successes <= trials:
        raise DeleverInputError(f"successes: expected 0..{trials}, got {successes!r}")
    n, p = float(trials), successes / float(trials)
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    if successes == 0:
        lo = 0.0
    if successes == trials:
        hi = 1.0
    return lo, hi


def probability(flags: Iterable[Any] | np.ndarray, name: str = "event") -> dict[str, Any]:
    """Share of paths where an event happened, with its Wilson 95 % interval.

    Returns:
        ``{"p": k/n, "ci95": [lo, hi], "count": k, "paths": n}``.

    Raises:
        DeleverInputError: no paths.
    """
    arr = np.asarray(list(flags) if not isinstance(flags, np.ndarray) else flags, dtype=bool).ravel()
    if arr.size == 0:
        raise DeleverInputError(f"{name}: expected at least one path, got none")
    k, n = int(arr.sum()), int(arr.size)
    lo, hi = wilson_interval(k, n)
    return {"p": k / n, "ci95": [lo, hi], "count": k, "paths": n}


def _pct(q: float) -> str:
    """Percent label: 0.95 -> '95', 0.01 -> '01', 0.5 -> '50', 0.995 -> '99.5'."""
    p = round(q * 100.0, 6)
    return f"{int(p):02d}" if p == int(p) else f"{p:g}"


def distribution_summary(values: Iterable[Any] | np.ndarray, quantiles: Sequence[float] = QUANTILES,
                         name: str = "values") -> dict[str, Any]:
    """Mean, min, max and quantiles (``p01``, ``p05``, ... ``p99``) of the finite values.

    Returns:
        ``{"n": finite count, "dropped": NaN/None count, "mean", "min", "max", "p01", ..., "p99"}``;
        all statistics None when no value is finite.
    """
    raw = np.asarray([np.nan if v is None else v for v in values] if not isinstance(values, np.ndarray) else values,
                     dtype=np.float64).ravel()
    finite = raw[~np.isnan(raw)]
    out: dict[str, Any] = {"n": int(finite.size), "dropped": int(raw.size - finite.size)}
    if finite.size == 0:
        out.update(mean=None, min=None, max=None, **{f"p{_pct(q)}": None for q in quantiles})
        return out
    qs = np.quantile(_clean(finite, name), list(quantiles))
    out.update(mean=float(finite.mean()), min=float(finite.min()), max=float(finite.max()))
    out.update({f"p{_pct(q)}": float(v) for q, v in zip(quantiles, qs, strict=True)})
    return out


def _column(table: Any, name: str) -> np.ndarray:
    """A column of a pyarrow Table or a mapping of arrays as a numpy array (nulls -> NaN / False)."""
    if isinstance(table, Mapping):
        col = table[name]
        return np.asarray([np.nan if v is None else v for v in col], dtype=np.float64) \
            if not isinstance(col, np.ndarray) else col
    col = table.column(name)
    if col.null_count:
        col = col.fill_null(False) if pa.types.is_boolean(col.type) else col.cast(pa.float64()).fill_null(float("nan"))
    return col.to_numpy(zero_copy_only=False)


def tail_metrics(table: Any) -> dict[str, Any]:
    """The stress summary's risk figures from the per-path outcomes.

    Args:
        table: a pyarrow Table (or a mapping of equal-length arrays) with the columns
            ``liquidated_notional_usd``, ``bad_debt_usd``, ``adl_notional_usd``, ``adl_count``,
            ``insurance_depleted`` and ``amplification`` (NaN/null where undefined).

    Returns:
        ``lar_95_usd, lar_99_usd`` (LaR), ``bad_debt_var_95_usd, bad_debt_var_99_usd`` (VaR and
        extreme VaR), ``bad_debt_es_95_usd, bad_debt_es_99_usd``, ``liquidated_es_99_usd``,
        ``p_insurance_depleted, p_adl, p_bad_debt`` with ``*_ci95`` Wilson intervals,
        ``amplification_p50, amplification_p99`` (None if no path has a defined amplification), and
        the distribution summaries ``liquidated_notional_dist, bad_debt_dist, adl_notional_dist,
        amplification_dist``.

    Raises:
        DeleverInputError: an empty table or a missing column.
    """
    needed = ("liquidated_notional_usd", "bad_debt_usd", "adl_notional_usd", "adl_count", "insurance_depleted",
              "amplification")
    names = list(table.keys()) if isinstance(table, Mapping) else table.column_names
    missing = [c for c in needed if c not in names]
    if missing:
        raise DeleverInputError(f"per-path outcomes: missing column(s) {', '.join(missing)}")
    liq = np.asarray(_column(table, "liquidated_notional_usd"), dtype=np.float64)
    bad = np.asarray(_column(table, "bad_debt_usd"), dtype=np.float64)
    adl = np.asarray(_column(table, "adl_notional_usd"), dtype=np.float64)
    amp = np.asarray(_column(table, "amplification"), dtype=np.float64)
    depleted = np.asarray(_column(table, "insurance_depleted"), dtype=bool)
    adl_any = np.asarray(_column(table, "adl_count"), dtype=np.float64) > 0
    if liq.size == 0:
        raise DeleverInputError("per-path outcomes: expected at least one path, got none")
    out: dict[str, Any] = {"paths": int(liq.size)}
    out.update(liquidations_at_risk(liq))
    out["liquidated_es_99_usd"] = expected_shortfall(liq, 0.99, "liquidated_notional_usd")
    for lv in (0.95, 0.99):
        out[f"bad_debt_var_{_pct(lv)}_usd"] = value_at_risk(bad, lv, "bad_debt_usd")
    for lv in (0.95, 0.99):
        out[f"bad_debt_es_{_pct(lv)}_usd"] = expected_shortfall(bad, lv, "bad_debt_usd")
    for key, flags in (("insurance_depleted", depleted), ("adl", adl_any), ("bad_debt", bad > 0)):
        pr = probability(flags, key)
        out[f"p_{key}"] = pr["p"]
        out[f"p_{key}_ci95"] = pr["ci95"]
    amp_dist = distribution_summary(amp, name="amplification")
    out["amplification_p50"] = amp_dist["p50"]
    out["amplification_p99"] = amp_dist["p99"]
    out["liquidated_notional_dist"] = distribution_summary(liq, name="liquidated_notional_usd")
    out["bad_debt_dist"] = distribution_summary(bad, name="bad_debt_usd")
    out["adl_notional_dist"] = distribution_summary(adl, name="adl_notional_usd")
    out["amplification_dist"] = amp_dist
    return out
