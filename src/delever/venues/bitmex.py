"""BitMEX formulas: Fair Price Marking, risk-limit steps, the ADL queue indicator.

Sources (stored copies of BitMEX's pages; ``venue-mechanics.md`` §2):
    bitmex.com/app/fairPriceMarking, /riskLimitsExamples, /autoDeleveragingExamples.
"""

from __future__ import annotations

import numpy as np


def funding_basis(funding_rate: float, time_to_funding_s: float, funding_interval_s: float) -> float:
    """``Funding Basis = Funding Rate * (Time Until Funding / Funding Interval)`` (fraction).

    ``time_to_funding_s`` below 0 (past the funding time, when the next rate is unknown) counts as 0.
    """
    return funding_rate * max(time_to_funding_s, 0.0) / funding_interval_s


def fair_price(index_price: float, funding_rate: float, time_to_funding_s: float, funding_interval_s: float) -> float:
    """BitMEX perpetual Fair Price ``Index * (1 + Funding Basis)`` (USD), the mark price.

    Args:
        index_price: Index price (USD).
        funding_rate: Rate of the coming funding, fraction per interval (e.g. 0.0001 = 0.01 %).
        time_to_funding_s: Seconds until that funding.
        funding_interval_s: Funding interval, seconds (8 h = 28,800 on XBTUSD; BitMEX may shorten it to 2 h).
    """
    return index_price * (1.0 + funding_basis(funding_rate, time_to_funding_s, funding_interval_s))


def risk_limit_margins(position_value: np.ndarray | float, base_mmr: float, base_imr: float, base_risk_limit: float,
                       risk_step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maintenance and initial margin rates of BitMEX risk limits at a position value.

    "At each step, the maintenance and initial margin are raised by the base maintenance margin":
    ``steps = ceil((value - base limit) / step)`` (0 up to the base limit), ``MM = base MM + steps x
    base MM``, ``IM = base IM + steps x base MM``; the rates apply to the whole position value
    (riskLimitsExamples: XBTUSD base MM 0.50 %, IM 1.00 %, base limit 200 XBT, step 150 XBT ->
    < 200 XBT 0.50 % / 1.00 %, < 350 XBT 1.00 % / 1.50 %, < 500 XBT 1.50 % / 2.00 %).

    Args:
        position_value: Position value(s), in the unit of the limits (XBT on XBTUSD).
        base_mmr, base_imr: Base maintenance / initial margin rates (fractions).
        base_risk_limit, risk_step: Base risk limit and risk step, same unit as ``position_value``.

    Returns:
        ``(mmr, imr, steps)``: float64, float64, int64 arrays shaped like ``position_value``.
    """
    v = np.asarray(position_value, dtype=np.float64)
    steps = np.maximum(np.ceil((v - base_risk_limit) / risk_step), 0.0).astype(np.int64)
    return base_mmr * (1 + steps), base_imr + steps * base_mmr, steps


def risk_limit_tiers(base_mmr: float, base_imr: float, base_risk_limit: float, risk_step: float, n_tiers: int,
                     unit_price_usd: float) -> tuple[list[float], list[float], list[float]]:
    """Risk-limit steps as notional tiers (USD): ``(floor_usd, mmr, max_leverage)`` lists of ``n_tiers``.

    Tier ``k`` (0-based) holds values in ``(base + (k-1) step, base + k step]`` (tier 0: up to the base
    limit), converted to USD at ``unit_price_usd`` per unit of the limits (XBT). Max leverage is 1/IM.
    """
    floors = [0.0] + [(base_risk_limit + k * risk_step) * unit_price_usd for k in range(n_tiers - 1)]
    mmr = [base_mmr * (1 + k) for k in range(n_tiers)]
    lev = [1.0 / (base_imr + k * base_mmr) for k in range(n_tiers)]
    return floors, mmr, lev


def adl_indicator_quintile(score: np.ndarray, qty: np.ndarray) -> np.ndarray:
    """ADL queue indicator of each position: the quintile (1..5) of its place in the queue.

    Positions are ranked by score, highest first; a position's percentile is the cumulative quantity
    up to and including it over the side's total, rounded up to the next 20 %. This reproduces
    BitMEX's autoDeleveragingExamples table (quantities 10, 20, 30, 10, 10, 20 in ranking order ->
    percentiles 20 %, 40 %, 60 %, 80 %, 80 %, 100 %); the page shows it as 5 lights, all lit = top 20 %.

    Args:
        score: float64 ``(N,)`` ranking scores of one side (ties: earlier index first).
        qty: float64 ``(N,)`` position quantities (> 0).

    Returns:
        int64 ``(N,)`` quintile, 1 = first 20 % of the queue (deleveraged first).
    """
    s = np.asarray(score, dtype=np.float64)
    q = np.asarray(qty, dtype=np.float64)
    order = np.lexsort((np.arange(s.size), -s))
    share = np.cumsum(q[order]) / q.sum()
    out = np.empty(s.size, dtype=np.int64)
    out[order] = np.clip(np.ceil(np.round(share * 5.0, 9)), 1, 5).astype(np.int64)
    return out
