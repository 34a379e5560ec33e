"""Drift protocol-v2 perp liquidation and bankruptcy formulas.

Two forms of each formula:

* exact integer functions (``*_int``) in Drift's fixed-point units, with its rounding (floor division
  unless noted), used to reproduce the Rust unit tests to the unit;
* vectorized float64 functions in natural units (fractions, USD, base), used by the engine.

Precisions (``programs/drift/src/math/constants.rs`` @ 72f6a47b): PRICE 1e6, BASE (AMM reserve) 1e9,
QUOTE 1e6, MARGIN 1e4, LIQUIDATION_FEE 1e6 (= PERCENTAGE), SPOT_IMF 1e6, LIQUIDATION_PCT 1e4,
FUNDING_RATE 1e9 (price x 1e3 buffer).

Sources (drift-labs/protocol-v2; the index holds these commits, not 0ae3e3b1 itself):

* ``math/liquidation.rs`` @ 0fd8f61c: ``calculate_base_asset_amount_to_cover_margin_shortage``,
  ``calculate_max_pct_to_liquidate``, ``calculate_perp_if_fee``,
  ``calculate_funding_rate_deltas_to_resolve_bankruptcy`` (ceil division).
* ``math/margin.rs`` @ 1c28629c: ``calculate_size_premium_liability_weight``; ``state/perp_market.rs``
  ``get_margin_ratio`` = max(default, size premium).
* ``state/margin_calculation.rs``: in liquidation mode the requirement plus buffer adds
  ``liability_value x buffer_ratio / MARGIN_PRECISION``.
* ``controller/liquidation.rs`` @ e88cc473: ``liquidate_perp`` (flow, $50 full-liquidation floor),
  ``resolve_perp_bankruptcy`` (IF -> fee pool -> socialized funding delta).
* The ``$50 -> 100 %`` early exit of ``calculate_max_pct_to_liquidate``, the 95 % factor of
  ``calculate_perp_if_fee`` and ``get_liquidation_fee`` are newer than 0fd8f61c; the index holds them in
  the Drift fork velocity-exchange/velocity-v1 (``programs/drift/src/math/liquidation.rs`` @ f86250e4,
  tests @ 771d93dd) and venue-mechanics.md §6 reports them for drift-labs @ 0ae3e3b1.
"""

from __future__ import annotations

from math import isqrt

import numpy as np

PRICE_PRECISION = 1_000_000
BASE_PRECISION = 1_000_000_000
QUOTE_PRECISION = 1_000_000
MARGIN_PRECISION = 10_000
LIQUIDATION_FEE_PRECISION = 1_000_000
SPOT_IMF_PRECISION = 1_000_000
LIQUIDATION_PCT_PRECISION = 10_000
FUNDING_RATE_BUFFER = 1_000
LIQUIDATION_FEE_TO_MARGIN_PRECISION_RATIO = LIQUIDATION_FEE_PRECISION // MARGIN_PRECISION   # 100
PRICE_TIMES_AMM_TO_QUOTE_PRECISION_RATIO = PRICE_PRECISION * (BASE_PRECISION // QUOTE_PRECISION)  # 1e9
FUNDING_RATE_TO_QUOTE_PRECISION_PRECISION_RATIO = PRICE_PRECISION * FUNDING_RATE_BUFFER // QUOTE_PRECISION  # 1e3
LIQUIDATION_FEE_ADJUST_GRACE_PERIOD_SLOTS = 1_500
LIQUIDATION_FEE_INCREASE_PER_SLOT = 1   # LIQUIDATION_FEE_PRECISION units (0.01 bp) per slot after the grace period
FULL_LIQUIDATION_SHORTAGE_USD = 50.0    # shortage below $50 (or position value <= $50): no time ramp
IF_FEE_ROOM_FRACTION = 0.95             # IF fee takes at most 95 % of the implied room (19/20)
U64_MAX = 2**64 - 1


# ----------------------------------------------------------------------------- exact (Drift units)
def size_premium_margin_ratio_int(size_base: int, imf_factor: int, margin_ratio: int) -> int:
    """``calculate_size_premium_liability_weight`` with MARGIN_PRECISION: ``max(mr, mr - mr/5 + isqrt(10 size + 1) imf / 1e7)``.

    Args:
        size_base: |base| in BASE_PRECISION (1e9).
        imf_factor: SPOT_IMF_PRECISION (1e6).
        margin_ratio: MARGIN_PRECISION (1e4).
    """
    if imf_factor == 0:
        return margin_ratio
    size_sqrt = isqrt(size_base * 10 + 1)  # 1e9 -> 1e10 -> 1e5
    premium = margin_ratio - margin_ratio // 5 + size_sqrt * imf_factor // (100_000 * SPOT_IMF_PRECISION // MARGIN_PRECISION)
    return max(margin_ratio, premium)


def margin_requirement_int(size_base: int, oracle_price: int, margin_ratio: int, imf_factor: int) -> int:
    """Perp margin requirement (QUOTE_PRECISION) of ``size_base`` at ``oracle_price`` (``math/margin.rs``).

    Base value = size x price / (BASE/QUOTE x PRICE) (``calculate_base_asset_value_with_oracle_price``, floor);
    requirement = value x margin ratio (with size premium) / MARGIN_PRECISION. Open-order add-ons excluded.
    """
    value = size_base * oracle_price // PRICE_TIMES_AMM_TO_QUOTE_PRECISION_RATIO
    return value * size_premium_margin_ratio_int(size_base, imf_factor, margin_ratio) // MARGIN_PRECISION


def base_to_cover_margin_shortage_int(margin_shortage: int, margin_ratio: int, liquidation_fee: int,
                                      if_liquidation_fee: int, oracle_price: int,
                                      quote_oracle_price: int = PRICE_PRECISION) -> int:
    """``calculate_base_asset_amount_to_cover_margin_shortage`` (base in 1e9; ``u64::MAX`` when the fee eats the ratio).

    ``shortage x 1e9 / (P x Pq/1e6 x (MR x 100 - liqFee) / 1e6 - P x ifFee / 1e6)``, each division floored.
    """
    mr = margin_ratio * LIQUIDATION_FEE_TO_MARGIN_PRECISION_RATIO
    if oracle_price == 0 or mr <= liquidation_fee:
        return U64_MAX
    denom = (oracle_price * quote_oracle_price // PRICE_PRECISION * (mr - liquidation_fee) // LIQUIDATION_FEE_PRECISION
             - oracle_price * if_liquidation_fee // LIQUIDATION_FEE_PRECISION)
    return margin_shortage * PRICE_TIMES_AMM_TO_QUOTE_PRECISION_RATIO // denom


def perp_if_fee_int(margin_shortage: int, user_base: int, margin_ratio: int, liquidator_fee: int, oracle_price: int,
                    quote_oracle_price: int, max_if_liquidation_fee: int) -> int:
    """``calculate_perp_if_fee``: ``min(max_if, 95 % x (MR x 100 - liqFee - shortage/(base x price)))``, 0 if degenerate."""
    mr = margin_ratio * LIQUIDATION_FEE_TO_MARGIN_PRECISION_RATIO
    if oracle_price == 0 or quote_oracle_price == 0 or mr <= liquidator_fee or user_base == 0:
        return 0
    price = oracle_price * quote_oracle_price // PRICE_PRECISION
    shortage_share = margin_shortage * BASE_PRECISION // user_base * PRICE_PRECISION // price
    shortage_share = min(shortage_share, 2**32 - 1)   # cast::<u32>().unwrap_or(u32::MAX)
    implied = max(mr - liquidator_fee, 0)
    implied = max(implied - shortage_share, 0) * 19 // 20
    return min(max_if_liquidation_fee, implied)


def max_pct_to_liquidate_int(margin_shortage: int, slots_elapsed: int, initial_pct: int, liquidation_duration: int,
                             liquidation_margin_freed: int = 0) -> int:
    """``calculate_max_pct_to_liquidate`` (LIQUIDATION_PCT_PRECISION): the time ramp of a liquidation.

    Shortage < $50 -> 100 %. Else ``pct = min(elapsed/duration + initial, 100 %)`` of the shortage at
    entry (current shortage + margin already freed), minus what was freed, as a share of the current shortage.
    """
    if margin_shortage < 50 * QUOTE_PRECISION:
        return LIQUIDATION_PCT_PRECISION
    if liquidation_duration == 0:
        pct = LIQUIDATION_PCT_PRECISION
    else:
        pct = slots_elapsed * LIQUIDATION_PCT_PRECISION // liquidation_duration
    pct = min(pct + initial_pct, LIQUIDATION_PCT_PRECISION)
    total = margin_shortage + liquidation_margin_freed
    freeable = max(total * pct // LIQUIDATION_PCT_PRECISION - liquidation_margin_freed, 0)
    return freeable * LIQUIDATION_PCT_PRECISION // margin_shortage


def liquidation_fee_after_grace_int(base_fee: int, max_fee: int, slots_elapsed: int) -> int:
    """``get_liquidation_fee``: the base fee, rising by 1 unit/slot after a 1,500-slot grace period, capped."""
    if slots_elapsed < LIQUIDATION_FEE_ADJUST_GRACE_PERIOD_SLOTS:
        return base_fee
    return min(base_fee + slots_elapsed * LIQUIDATION_FEE_INCREASE_PER_SLOT, max_fee)


def funding_rate_delta_to_resolve_bankruptcy_int(loss: int, base_long: int, base_short: int) -> int:
    """``calculate_funding_rate_deltas_to_resolve_bankruptcy`` (FUNDING_RATE_PRECISION per base unit).

    ``ceil(|loss| x 1e9 / (|long| + |short|)) x 1e3``.

    Raises:
        ValueError: no open base left (Drift: ``CantResolvePerpBankruptcy``).
    """
    total = abs(base_long) + abs(base_short)
    if total == 0:
        raise ValueError("cannot resolve perp bankruptcy when total base asset amount is 0")
    return -(-abs(loss) * BASE_PRECISION // total) * FUNDING_RATE_TO_QUOTE_PRECISION_PRECISION_RATIO


def if_payment_int(loss: int, if_vault_balance: int, quote_max_insurance: int, quote_settled_insurance: int) -> int:
    """``resolve_perp_bankruptcy``: the IF pays ``min(|loss|, vault - 1, max_insurance - settled)``."""
    return max(min(abs(loss), max(if_vault_balance - 1, 0), quote_max_insurance - quote_settled_insurance), 0)


# ----------------------------------------------------------------------------- vectorized (natural units)
def margin_ratio(size_base, margin_ratio_base: float, imf_factor: float, exact: bool = False) -> np.ndarray:
    """Margin ratio with size premium: ``max(mr, 0.8 mr + imf x sqrt(size))`` (fractions; size in base units).

    With ``exact`` the ratio is Drift's integer result (:func:`size_premium_margin_ratio_int`, vectorized): size
    in BASE_PRECISION units (rounded), ``isqrt(10 size + 1)``, ``mr / 5`` and the premium floored, the ratio a multiple of
    1 / MARGIN_PRECISION (a 10,001-base whale at imf 0.001 and mr 5 % gets 14.00 %, not 14.0005 %).
    """
    size = np.asarray(size_base, dtype=np.float64)
    if imf_factor == 0:
        return np.full(size.shape, margin_ratio_base)
    if not exact:
        return np.maximum(margin_ratio_base, 0.8 * margin_ratio_base + imf_factor * np.sqrt(size))
    mr = int(round(margin_ratio_base * MARGIN_PRECISION))
    imf = int(round(imf_factor * SPOT_IMF_PRECISION))
    x = np.floor(size * BASE_PRECISION + 0.5).astype(np.int64) * 10 + 1
    sq = np.floor(np.sqrt(x.astype(np.float64))).astype(np.int64)
    sq -= (sq * sq > x).astype(np.int64)                 # float sqrt can be one off near a perfect square
    sq += ((sq + 1) * (sq + 1) <= x).astype(np.int64)
    premium = mr - mr // 5 + sq * imf // (100_000 * SPOT_IMF_PRECISION // MARGIN_PRECISION)
    return np.maximum(mr, premium) / MARGIN_PRECISION


def base_to_cover_margin_shortage(shortage_usd, margin_ratio_with_buffer, liquidator_fee: float, if_fee, price: float):
    """Base to transfer so the shortage is cured: ``shortage / (P (MR + buffer - liqFee) - P ifFee)`` (inf if <= 0)."""
    denom = price * (np.asarray(margin_ratio_with_buffer) - liquidator_fee - np.asarray(if_fee))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, np.asarray(shortage_usd, dtype=np.float64) / denom, np.inf)


def perp_if_fee(shortage_usd, user_base, margin_ratio_with_buffer, liquidator_fee: float, price: float,
                max_if_fee: float) -> np.ndarray:
    """IF fee rate: ``min(max_if, 95 % x max(MR + buffer - liqFee - shortage/(base x P), 0))`` (fraction)."""
    base = np.asarray(user_base, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(base > 0, np.asarray(shortage_usd) / (base * price), np.inf)
    room = np.maximum(np.asarray(margin_ratio_with_buffer) - liquidator_fee - share, 0.0)
    return np.where(base > 0, np.minimum(max_if_fee, IF_FEE_ROOM_FRACTION * room), 0.0)


def max_pct_to_liquidate(shortage_usd, slots_elapsed, initial_pct: float, duration_slots: float,
                         margin_freed_usd=0.0) -> np.ndarray:
    """Share (0..1) of the shortage-curing base a liquidation may transfer now (time ramp; < $50 -> 1)."""
    shortage = np.asarray(shortage_usd, dtype=np.float64)
    ramp = np.asarray(slots_elapsed, dtype=np.float64) / duration_slots if duration_slots > 0 else np.inf
    pct = np.minimum(ramp + initial_pct, 1.0)
    freed = np.asarray(margin_freed_usd, dtype=np.float64)
    total = shortage + freed
    freeable = total * pct - freed
    # Drift rounds transfers to the order step size; float residue of a used-up ramp is no transfer.
    freeable = np.where(freeable > 1e-9 * total, freeable, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(shortage > 0, freeable / shortage, 1.0)
    return np.where(shortage < FULL_LIQUIDATION_SHORTAGE_USD, 1.0, share)


def oracle_twap_too_divergent(oracle: float, twap: float, max_divergence: float) -> bool:
    """``is_oracle_too_divergent_with_twap_5min``: ``|oracle - twap| / |twap| >= max`` (liquidations refused)."""
    return twap != 0 and abs(oracle - twap) / abs(twap) >= max_divergence
