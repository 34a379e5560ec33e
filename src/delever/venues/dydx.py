"""dYdX v4 liquidation and deleveraging formulas (dydxprotocol/v4-chain, venue-mechanics.md §5).

Everything is vectorized over positions: float64 arrays (or scalars), USD for quote amounts and base
units for quantities. dYdX computes in integer quantums (quote: USDC, atomic resolution -6) and
subticks with explicit rounding; where the rounding decides a result the functions take an optional
``quote_quantum`` (USD per quote quantum, 1e-6 for USDC) and round as the Go code does, so the
repository's test tables are reproduced to the quantum. Without it the values are exact reals.

Sources (paths in dydxprotocol/v4-chain, reference commit 84d4664b per venue-mechanics.md; the
tables in ``tests/test_venue_dydx.py`` name the stored commit each vector was read from):

* ``protocol/lib/margin/risk.go``: ``IsLiquidatable = TMMR > 0 and TNC < TMMR``.
* ``protocol/x/perpetuals/types/liquidity_tier.go``: OI-scaled IMF, IMR rounded up;
  MMR = IMF_base x maintenance fraction (``GetMaintenanceMarginPpm``; no OI scaling).
* ``protocol/x/clob/keeper/liquidations.go``: ``GetFillablePrice``, ``GetBankruptcyPriceInQuoteQuantums``,
  ``GetLiquidationInsuranceFundDelta``, ``GetMaxAndMinPositionNotionalLiquidatable``,
  ``GetLiquidatablePositionSizeDelta``, ``GetSubaccountMaxNotionalLiquidatable`` /
  ``GetSubaccountMaxInsuranceLost``, ``ConvertFillablePriceToSubticks``.
* ``protocol/x/subaccounts/lib/updates.go``: ``IsValidStateTransitionForUndercollateralizedSubaccount``
  (why deleveraging skips pairs whose bankruptcy prices do not overlap).
"""

from __future__ import annotations

import numpy as np

PPM = 1_000_000
USDC_QUANTUM = 1e-6   # USD per quote quantum (USDC atomic resolution -6)
MAX_UINT64 = 2**64 - 1


def _f(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _snap(units: np.ndarray) -> np.ndarray:
    """Counts of a unit that are within float error of an integer become that integer (before floor/ceil)."""
    r = np.round(units)
    tol = 1e-7 + 256 * np.finfo(np.float64).eps * np.abs(units)
    return np.where(np.abs(units - r) <= tol, r, units)


def floor_to(x, unit: float) -> np.ndarray:
    """``x`` rounded toward -inf to a multiple of ``unit`` (Go ``big.Int.Div``, Euclidean for a positive divisor)."""
    return np.floor(_snap(_f(x) / unit)) * unit


def ceil_to(x, unit: float) -> np.ndarray:
    """``x`` rounded toward +inf to a multiple of ``unit``."""
    return np.ceil(_snap(_f(x) / unit)) * unit


# ---------------------------------------------------------------------------------------------- margins
def maintenance_margin_rate(initial_margin, maintenance_fraction) -> np.ndarray:
    """MMR as a fraction of notional: ``IMF_base x maintenance fraction`` (``GetMaintenanceMarginPpm``)."""
    return _f(initial_margin) * _f(maintenance_fraction)


def effective_imf(initial_margin, open_interest_usd, lower_cap_usd, upper_cap_usd) -> np.ndarray:
    """Open-interest-scaled initial margin fraction (``GetInitialMarginQuoteQuantums``).

    ``IMF_eff = min(IMF + max(0, (OI - lower) / (upper - lower)) x (1 - IMF), 1)``; ``upper == 0`` disables
    the scaling, OI at or above a non-zero upper cap gives 1.

    Args:
        initial_margin: base IMF (fraction).
        open_interest_usd: open interest notional at the oracle price (USD).
        lower_cap_usd, upper_cap_usd: the tier's OI caps (USD).

    Returns:
        float64, same broadcast shape.
    """
    imf, oi, lo, hi = _f(initial_margin), _f(open_interest_usd), _f(lower_cap_usd), _f(upper_cap_usd)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(hi > lo, (oi - lo) / (hi - lo), 0.0)
    eff = np.minimum(imf + np.maximum(scale, 0.0) * (1.0 - imf), 1.0)
    eff = np.where(hi == 0, imf, eff)
    return np.where((hi != 0) & (oi >= hi), 1.0, eff)


def effective_imf_ppm(initial_margin_ppm, open_interest_usd, lower_cap_usd, upper_cap_usd) -> np.ndarray:
    """``effective_imf`` in ppm rounded down to an integer (``LiquidityTier.GetAdjustedInitialMarginPpm``)."""
    eff = effective_imf(_f(initial_margin_ppm) / PPM, open_interest_usd, lower_cap_usd, upper_cap_usd)
    return np.floor(_snap(eff * PPM)).astype(np.int64)


def initial_margin_usd(notional_abs_usd, initial_margin, open_interest_usd=0.0, lower_cap_usd=0.0,
                       upper_cap_usd=0.0, quote_quantum: float | None = None) -> np.ndarray:
    """Initial margin requirement ``IMF_eff x |notional|`` (USD), rounded up to the quantum if given, at most the notional."""
    n = _f(notional_abs_usd)
    imr = effective_imf(initial_margin, open_interest_usd, lower_cap_usd, upper_cap_usd) * n
    if quote_quantum is not None:
        imr = ceil_to(imr, quote_quantum)
    return np.minimum(imr, n)


def is_liquidatable(tnc_usd, tmmr_usd) -> np.ndarray:
    """``TMMR > 0 and TNC < TMMR`` (``margin.Risk.IsLiquidatable``)."""
    tmmr = _f(tmmr_usd)
    return (tmmr > 0) & (_f(tnc_usd) < tmmr)


# ---------------------------------------------------------------------------------------------- prices
def adjusted_bankruptcy_rating(tnc_usd, tmmr_usd, bankruptcy_adjustment) -> np.ndarray:
    """``ABR = clamp(BA x (1 - TNC / TMMR), 0, 1)``."""
    return np.clip(_f(bankruptcy_adjustment) * (1.0 - _f(tnc_usd) / _f(tmmr_usd)), 0.0, 1.0)


def fillable_price(position_qty, oracle_price, position_mmr_usd, tnc_usd, tmmr_usd, bankruptcy_adjustment,
                   spread_to_mmr) -> np.ndarray:
    """Fillable price of a liquidation order ``(PNNV - ABR x SMMR x PMMR) / PS`` (USD per base unit).

    Args:
        position_qty: signed position size PS (base units, + long).
        oracle_price: oracle price (USD); ``PNNV = PS x oracle``.
        position_mmr_usd: the position's maintenance margin PMMR (USD).
        tnc_usd, tmmr_usd: the subaccount's total net collateral and maintenance margin (USD).
        bankruptcy_adjustment: BA (fraction, ``bankruptcy_adjustment_ppm / 1e6``).
        spread_to_mmr: SMMR (fraction, ``spread_to_maintenance_margin_ratio_ppm / 1e6``).

    Returns:
        float64: below the oracle for longs, above for shorts, by up to ``SMMR x PMMR / |PS|``.
    """
    ps = _f(position_qty)
    abr = adjusted_bankruptcy_rating(tnc_usd, tmmr_usd, bankruptcy_adjustment)
    return (ps * _f(oracle_price) - abr * _f(spread_to_mmr) * _f(position_mmr_usd)) / ps


def fillable_price_subticks(fillable_price_quote_per_base, is_liquidating_long, subticks_per_tick: int,
                            quantum_conversion_exponent: int) -> np.ndarray:
    """Fillable price as an order price in subticks (``ConvertFillablePriceToSubticks``).

    ``subticks = price[quote quantums / base quantum] x 10^-QCE``, rounded up for sells that close longs
    and down for buys that close shorts, to a multiple of ``subticks_per_tick``, at least one tick.
    Float arithmetic: exact while the result is below 2**53.

    Returns:
        float64 subticks.
    """
    st = _snap(_f(fillable_price_quote_per_base) * 10.0 ** (-quantum_conversion_exponent))
    up = np.asarray(is_liquidating_long, dtype=bool)
    ticks = np.where(up, np.ceil(_snap(np.ceil(st) / subticks_per_tick)), np.floor(np.floor(st) / subticks_per_tick))
    top = float(MAX_UINT64 - MAX_UINT64 % subticks_per_tick)
    return np.clip(ticks * subticks_per_tick, subticks_per_tick, top)


def bankruptcy_quote_usd(delta_nnv_usd, delta_mmr_abs_usd, tnc_usd, tmmr_usd,
                         quote_quantum: float | None = None) -> np.ndarray:
    """Quote the subaccount must receive for a position delta to end at zero equity (signed, USD).

    ``-DNNV - TNC x |DMMR| / TMMR`` (``GetBankruptcyPriceInQuoteQuantums``): the account's collateral is
    shared among positions in proportion to their maintenance margin. With ``quote_quantum`` the
    product term is rounded toward -inf, so the result rounds toward +inf ("closing at the rounded
    bankruptcy price does not require any insurance fund payment").

    Args:
        delta_nnv_usd: change of the position's net notional value, ``NNV(PS + delta) - NNV(PS)`` (USD).
        delta_mmr_abs_usd: |change of the position's maintenance margin| (USD).
        tnc_usd, tmmr_usd: subaccount totals before the delta (USD).

    Returns:
        float64: > 0 when closing a long (quote received), < 0 when closing a short (quote paid).
    """
    share = _f(tnc_usd) * _f(delta_mmr_abs_usd) / _f(tmmr_usd)
    if quote_quantum is not None:
        share = floor_to(share, quote_quantum)
    return -_f(delta_nnv_usd) - share


def fill_quote_usd(fill_qty_abs, price, is_buy, quote_quantum: float | None = None) -> np.ndarray:
    """Signed quote the liquidated subaccount receives for a fill (+ sell, - buy), USD.

    The fill's quote quantums are ``subticks x base quantums x 10^QCE`` truncated (``FillAmountToQuoteQuantums``);
    with ``quote_quantum`` the magnitude is rounded down to it.
    """
    q = _f(fill_qty_abs) * _f(price)
    if quote_quantum is not None:
        q = floor_to(q, quote_quantum)
    return np.where(np.asarray(is_buy, dtype=bool), -q, q)


def insurance_fund_delta_usd(delta_quote_usd, bankruptcy_quote, max_liquidation_fee,
                             quote_quantum: float | None = None) -> np.ndarray:
    """Payment between the liquidated subaccount and the insurance fund for one fill (USD).

    ``delta = fill quote - bankruptcy quote`` (``GetLiquidationInsuranceFundDelta``): if ``delta <= 0`` the
    fund pays ``-delta`` (the result is negative); otherwise the subaccount pays
    ``min(max_liquidation_fee x |fill quote|, delta)`` (the fee is rounded down to the quantum if given).

    Args:
        delta_quote_usd: signed quote the subaccount receives (``fill_quote_usd``).
        bankruptcy_quote: ``bankruptcy_quote_usd`` for the same delta.
        max_liquidation_fee: fraction (``max_liquidation_fee_ppm / 1e6``).

    Returns:
        float64: > 0 fee to the fund, < 0 payout from the fund.
    """
    dq = _f(delta_quote_usd)
    delta = dq - _f(bankruptcy_quote)
    fee = np.abs(dq) * _f(max_liquidation_fee)
    if quote_quantum is not None:
        fee = floor_to(fee, quote_quantum)
    return np.where(delta <= 0, delta, np.minimum(fee, delta))


# ---------------------------------------------------------------------------------------------- sizes
def position_notional_limits(notional_abs_usd, min_notional_usd, max_portion) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) notional of a position that one block may liquidate (``GetMaxAndMinPositionNotionalLiquidatable``).

    ``min = min(min_position_notional_liquidated, |NNV|)``, ``max = max(min, |NNV| x max_portion)``.
    """
    n = _f(notional_abs_usd)
    lo = np.minimum(_f(min_notional_usd), n)
    return lo, np.maximum(lo, n * _f(max_portion))


def subaccount_limits_left(max_notional_usd, max_insurance_lost_usd, notional_liquidated_usd,
                           insurance_lost_usd) -> tuple[np.ndarray, np.ndarray]:
    """What a subaccount may still have liquidated (notional) and cost the fund (loss) in this block.

    ``GetSubaccountMaxNotionalLiquidatable`` / ``GetSubaccountMaxInsuranceLost``: limit minus what the block
    already used (``insurance_lost_usd`` >= 0 is the fund's payout so far).

    Raises:
        ValueError: usage above a limit (the Go code panics: an earlier fill broke the block limit).
    """
    n_left = _f(max_notional_usd) - _f(notional_liquidated_usd)
    i_left = _f(max_insurance_lost_usd) - _f(insurance_lost_usd)
    if (n_left < 0).any() or (i_left < 0).any():
        raise ValueError("subaccount block limits: notional liquidated or insurance lost already exceeds its limit")
    return n_left, i_left


def liquidatable_qty(qty_abs, oracle_price, min_notional_usd, max_portion, subaccount_notional_left_usd,
                     step_qty: float = 0.0) -> np.ndarray:
    """Size of one liquidation order (``GetLiquidatablePositionSizeDelta``), base units >= 0.

    The order is for ``min(position block limit, subaccount block limit)`` of notional at the oracle
    price, rounded down to the step size and clamped to [step, position]; the whole position when its
    notional is within that limit or it is not larger than one step.

    Args:
        qty_abs: |position| (base units).
        oracle_price: USD.
        min_notional_usd, max_portion: position block limits.
        subaccount_notional_left_usd: from ``subaccount_limits_left``.
        step_qty: the CLOB pair's step size (base units); 0 = no rounding.
    """
    q, p = _f(qty_abs), _f(oracle_price)
    notional = q * p
    _, pos_max = position_notional_limits(notional, min_notional_usd, max_portion)
    cap = np.minimum(pos_max, _f(subaccount_notional_left_usd))
    base = cap / p
    if step_qty > 0:
        base = np.maximum(np.floor(_snap(base / step_qty)) * step_qty, step_qty)
    full = (notional <= cap) | (q <= step_qty)
    return np.where(full, q, np.minimum(base, q))


# ---------------------------------------------------------------------------------------------- deleveraging
def is_valid_state_transition(nc_cur, mmr_cur, imr_cur, nc_new, mmr_new, imr_new, rtol: float = 0.0) -> np.ndarray:
    """Whether a subaccount update is allowed for a deleveraging (or any) match.

    Valid if the account is initial-margin collateralized after the update (``NC >= IMR``); otherwise
    only if it ends "less or equally risky" (``IsValidStateTransitionForUndercollateralizedSubaccount``):
    MMR not increasing and ``NC_new / MMR_new >= NC_cur / MMR_cur``; with a zero MMR on either side only
    if both are zero and NC improves. This check is what rejects deleveraging pairs whose bankruptcy
    prices do not overlap. ``rtol`` is a relative slack for float inputs (0 for exact quantum values).

    Returns:
        bool array.
    """
    nc0, m0, nc1, m1 = _f(nc_cur), _f(mmr_cur), _f(nc_new), _f(mmr_new)
    tol = rtol * (np.abs(nc0) + m0 + _f(imr_cur) + np.abs(nc1) + m1 + _f(imr_new))
    collateralized = nc1 >= _f(imr_new) - tol
    zero = (m1 == 0) | (m0 == 0)
    zero_ok = (m1 == 0) & (m0 == 0) & (nc1 > nc0)
    ratio_ok = nc1 * m0 >= nc0 * m1 - tol * (m0 + m1)
    under_ok = (m1 <= m0 + tol) & np.where(zero, zero_ok, ratio_ok)
    return collateralized | under_ok


def valid_position_delta(position_qty, delta_qty) -> np.ndarray:
    """Whether ``delta_qty`` reduces ``position_qty`` without flipping it (opposite sign, not larger, non-zero).

    The check ``GetBankruptcyPriceInQuoteQuantums`` / ``GetFillablePrice`` make before computing
    (``ErrInvalidPerpetualPositionSizeDelta``).
    """
    ps, d = _f(position_qty), _f(delta_qty)
    return (np.sign(ps) * np.sign(d) == -1) & (np.abs(ps) >= np.abs(d))


def deleveraging_walk(need_qty: float, qty, start: int, max_iterate: int, valid) -> np.ndarray:
    """Quantities taken from offsetting positions by one deleveraging attempt (``OffsetSubaccountPerpetualPosition``).

    Positions on the opposite side are visited from index ``start`` (pseudo-random on chain, no ranking),
    wrapping around, at most ``max_iterate`` of them; each gives ``min(remaining, its size)`` if the pair's
    state transitions are valid (``valid``), else it is skipped.

    Args:
        need_qty: size of the position being deleveraged (base units).
        qty: float64 ``(N,)`` sizes of the opposite-side positions, in the venue's list order.
        start: first index visited (``0 <= start < N``).
        max_iterate: ``MaxDeleveragingSubaccountsToIterate``.
        valid: ``valid(idx, take) -> bool array``, vectorized over int64 ``idx`` and float64 ``take``.

    Returns:
        float64 ``(N,)``: quantity taken from each position (0 where skipped or not visited).
    """
    q = _f(qty)
    n = q.size
    take = np.zeros(n)
    if n == 0 or need_qty <= 0:
        return take
    order = (start + np.arange(min(n, max_iterate))) % n
    ok_full = np.asarray(valid(order, q[order]), dtype=bool)
    rem, pos = float(need_qty), 0
    while pos < order.size and rem > 0:
        # Every valid position before the one that covers the rest is closed whole (checked above);
        # the covering one takes part of its size and is checked for that part.
        seg = order[pos:]
        full = np.where(ok_full[pos:], q[seg], 0.0)
        cum = np.cumsum(full)
        k = int(np.searchsorted(cum, rem, side="left"))
        if k >= seg.size:
            take[seg] = full
            break
        take[seg[:k]] = full[:k]
        left = rem - (float(cum[k - 1]) if k else 0.0)
        i = seg[k]
        part = min(left, float(q[i]))
        if part >= q[i] or bool(np.asarray(valid(np.array([i]), np.array([part])))[0]):
            take[i] = part
            break
        rem, pos = left, pos + k + 1
    return take
