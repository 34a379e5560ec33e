"""Numba kernels of the fast Monte Carlo path: the cascade engine over many price paths of one fixed book.

Every function here is a ``@njit(cache=True)`` free function over arrays and plain floats; the Python
side (eligibility, precomputation, threads, output assembly) is :mod:`delever.engine.fast`. The
semantics are those of :class:`delever.engine.core.CascadeEngine` (the general engine), reproduced
decision for decision with the same floating-point formulas in the same order, so the per-path
metrics agree with ``runner.run_path`` to round-off (sums are sequential here and pairwise in NumPy).

Data layout (built once per book by :func:`delever.engine.fast.build_fast_book`):

* Per side, positions sorted by their starting liquidation price in the order a moving mark reaches
  them: longs by descending LP, shorts by ascending LP (arrays ``(6, N_side)``: rows ``lp, pos, qty,
  entry, coll, account``). A path keeps one cursor per side; the positions before the cursor have been passed
  by the mark at least once. The general engine's prefilter (``lp > mark - 1e-9 mark`` for longs,
  ``lp < mark + 1e-9 mark`` for shorts) selects a prefix of the untouched positions, so advancing the
  cursor finds every new candidate in O(new).
* Once passed, a position moves into the path's own pool (a row ``pos, side, qty, entry, collateral,
  lp, cooldown_until``) and onto a binary heap per side keyed on its current liquidation price
  (max-heap of ``lp`` for longs, of ``-lp`` for shorts; each slot knows its heap index). A round pops every pooled position that
  passes the prefilter, applies the exact ``equity < maintenance margin`` test, liquidates,
  recomputes the liquidation price of what stays open (step-down and chunk remainders, unfilled
  orders, cooldowns) and pushes it back. Closed positions leave the heaps for good. Nothing of size N
  is allocated or reset per path: the pool grows (doubling) with the positions the path reaches.

A path-step without liquidations costs O(1) (two cursor comparisons and two heap tops); liquidating
``k`` positions costs O(k log k + k log D) plus the depth walk, ``D`` the pool size.

ADL (:func:`adl`, ``CascadeEngine._adl``) runs here too. Its counterparties are all open opposite
positions, ranked by their current PnL and leverage: an ADL gathers the pooled ones and the untouched
ones beyond the cursor (static values, scored by a branch-free loop that vectorizes), and sorts only
the head of the queue (a heap selection finds the same cutoff as the engine's partition;
:mod:`delever.engine.kernel_adl`); the pro-rata policies sort them all. A deleveraged position (smaller, collateral plus the realized PnL)
has a new liquidation price: a pooled one changes its key in place on its heap (or leaves it when
closed), an untouched one joins the pool and its cursor skips it later (``early``, allocated on the
first such ADL of a path). ADL costs O(n) in the opposite side's size, and only when it triggers.

Money is counted as the engine counts it (``CascadeEngine._money``): traders' collateral, backstop
cash, the market, bad debt and the fee pool; each path reports the sum of all balance changes
(``ledger_imbalance_usd``) and the open-interest mismatch, both 0 up to round-off.

Compile time matters (tests compile from scratch): arguments are packed into few arrays, each
callee has one or two call sites, and sorting is written out (Numba's ``np.argsort`` alone costs
seconds to compile). Paths are spread over threads by the caller (``nogil``), not ``prange``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from delever.engine import kernel_adl as KA
from delever.engine.kernel_arrays import argsort_stable, pairwise_sum

DUST_QTY = 1e-12  # same as delever.engine.core.DUST_QTY

# --------------------------------------------------------------------------- parameter vector (float64)
P_MARK_METHOD = 0          # 0 median_basis_ma, 1 median_basis_ema, 2 last, 3 index
P_BASIS_WINDOW_S = 1
P_FUNDING_BASIS = 2
P_FEE_RATE = 3             # clearance fee rate (fraction of fill notional)
P_STEP_DOWN = 4            # 1.0: Binance step-down to the lower bracket
P_PARTIAL_THRESHOLD_USD = 5
P_PARTIAL_FRACTION = 6
P_PARTIAL_COOLDOWN_S = 7
P_BACKSTOP_BELOW_MM = 8    # Hyperliquid: equity < fraction x MM -> vault takes over at mark
P_TAKEOVER_BANKRUPTCY = 9  # 1.0: Binance takeover of deficient remainders at the bankruptcy price
P_MAX_NET_RATIO = 10
P_ADL_LOSS_FRACTION = 11
P_UNWIND_HALF_LIFE_S = 12
P_UNWIND_SLIP_PCT = 13
P_ADL_RANKING = 14         # 0 pnl_pct_x_effective_leverage, 1 pnl_pct_x_margin_ratio, 2 hyperliquid
P_ADL_PRICE = 15           # ADL fill price: 0 bankruptcy (inventory entry), 1 previous mark, 2 mark (OKX)
P_PERMANENT_FRACTION = 16
P_RESILIENCE_HALF_LIFE_S = 17
P_MAX_X = 18               # max_walk_pct / 100
P_MAX_ROUNDS = 19
P_FUND_USD = 20
P_ADL_POLICY = 21          # kernel_adl.POLICY_*: queue, pro_rata, capped_pro_rata, risk_aware_pro_rata
P_PRO_RATA_CAP = 22        # pro_rata_cap_fraction
P_ADL_BANKRUPTCY_BELOW = 23  # price "mark": bankruptcy price while fund equity < this x starting fund
P_ADL_MAKER_FEE = 24       # maker fee rate charged to the deleveraged trader (fee pool)
N_PARAMS = 25

# --------------------------------------------------------------------------- packed inputs
# tiers (3, K): floor_usd, mmr, maint_amount_usd
T_FLOOR = 0
T_MMR = 1
T_MAINT = 2
# static side arrays (5, N_side)
R_LP = 0
R_POS = 1
R_QTY = 2
R_ENTRY = 3
R_COLL = 4
R_ACCT = 5       # account id (ties of the ADL ranking are broken by account, as the general engine does)
N_ROWS = 6
# depth curve (4, K): knots x, cumulative qty, density (row 2; its last entry holds the last segment's
# density, the extrapolation beyond the last knot), primitive G at the knots
V_X = 0
V_CUM = 1
V_DENS = 2
V_G = 3

# --------------------------------------------------------------------------- per-path state
# float64 state vector
S_PERM = 0       # permanent impact factor
S_DBID = 1       # transient displacement of the bid side
S_DASK = 2
S_CASH = 3       # backstop cash (USD)
S_INV = 4        # backstop inventory (signed base qty)
S_INVE = 5       # backstop inventory entry (USD)
S_BAD = 6        # realized bad debt (USD)
S_SHORTFALL = 7  # ADL shortfall (base qty) of triggers that found no counterparty
S_ACC_LONG = 8   # liquidated long notional of the current step (USD)
S_ACC_SHORT = 9
S_EMA = 10       # EMA of the basis (mark method median_basis_ema)
S_LOSS_TRIG = 11  # ADL triggers for a loss beyond the backstop's balance (depletion, as Totals.adl_for_loss)
S_TKPNL = 12     # backstop's result on what it took over: collateral handed + inventory PnL (Totals.takeover_pnl_usd)
S_TLOSS = 13     # liquidated traders' loss to the process: fees, slippage vs mark, equity surrendered (Totals)
S_MARKET = 14    # the outside market's cash (USD; realized PnL paid out is negative), as CascadeEngine.market_cash
S_MKT_NET = 15   # inside parties' net purchases from the market (base), Totals.market_net_bought_qty
S_FEE_POOL = 16  # fee pool cash (USD): ADL maker fees
S_HAIRCUT = 17   # Totals.adl_haircut_usd
S_ADL_NOTIONAL = 18
S_ADL_COUNT = 19
N_STATE = 20
# int64 state vector
K_HL = 0         # long heap size
K_HS = 1         # short heap size
K_NPOOL = 2      # pool rows in use
K_CL = 3         # long cursor
K_CS = 4         # short cursor
K_ACC_N = 5      # liquidation events of the current step
K_FRESH = 6      # positions just admitted from the cursors: candidates at the head of work[W_CAND], on no heap
N_ISTATE = 7
# pool columns (cap, 7)
C_POS = 0
C_SIDE = 1
C_QTY = 2
C_ENTRY = 3
C_COLL = 4
C_LP = 5
C_COOL = 6
C_SIDX = 7       # column in the side's static arrays (start size and collateral, account)
N_COLS = 8
# work rows (5, cap): heaps (keys, slots) and the candidate buffer; slots are stored as floats
W_LKEY = 0
W_LSLOT = 1
W_SKEY = 2
W_SSLOT = 3
W_CAND = 4
W_HPOS = 5       # per pool slot: its index in its side's heap (ADL updates the key of a position on a heap)
N_WORK = 6

# --------------------------------------------------------------------------- outputs
F_EXO_MOVE = 0
F_FINAL_MOVE = 1
F_END_MOVE = 2
F_AMPLIFICATION = 3
F_LIQ_NOTIONAL = 4
F_LIQ_LONG = 5
F_LIQ_SHORT = 6
F_FUND_START = 7
F_FUND_END = 8
F_FUND_END_CASH = 9
F_INVENTORY = 10
F_BAD_DEBT = 11
F_BAD_DEBT_REALIZED = 12
F_ADL_NOTIONAL = 13
F_ADL_SHORTFALL = 14
F_BAD_DEBT_UNRECOVERED = 15
F_TRADER_LOSS = 16
F_LEDGER_IMBALANCE = 17  # sum of all parties' balance changes (USD), CascadeEngine.conservation
F_OI_MISMATCH = 18       # inside net position change minus net purchases from the market (base)
N_FOUT = 19
I_LIQ_COUNT = 0
I_ROUNDS_MAX = 1
I_CAP_HITS = 2
I_ADL_COUNT = 3
N_IOUT = 4
B_DEPLETED = 0
N_BOUT = 1

RET_NONE = 0      # no position below maintenance margin
RET_PROGRESS = 1  # liquidations with a fill or a takeover (check_only: a liquidatable position is left)
RET_STUCK = 2     # positions below maintenance margin, but nothing filled or taken over

_JIT = {"cache": True, "error_model": "numpy"}


# =========================================================================== depth curve
@njit(**_JIT)
def search_right(a, v):
    """``np.searchsorted(a, v, side="right")`` for a sorted float64 array ``a`` and a scalar ``v``."""
    lo = 0
    hi = a.size
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] <= v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(**_JIT)
def interp1(x, xp, fp):
    """``np.interp(x, xp, fp)`` for a scalar, with NumPy's arithmetic (``compiled_base.c``: ``arr_interp``).

    Args:
        x: Abscissa (not NaN).
        xp: float64 ``(K,)`` strictly increasing knots, ``K >= 2``.
        fp: float64 ``(K,)`` values at the knots.

    Returns:
        The interpolated value; ``fp[0]`` left of ``xp[0]``, ``fp[-1]`` right of ``xp[-1]``.
    """
    n = xp.size
    if x < xp[0]:
        return fp[0]
    if x > xp[n - 1]:
        return fp[n - 1]
    j = search_right(xp, x) - 1
    if j >= n - 1:
        return fp[n - 1]
    if xp[j] == x:
        return fp[j]
    slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    r = slope * (x - xp[j]) + fp[j]
    if math.isnan(r):
        r = slope * (x - xp[j + 1]) + fp[j + 1]
        if math.isnan(r) and fp[j] == fp[j + 1]:
            r = fp[j]
    return r


@njit(**_JIT)
def qty_within(x, cv):
    """``SideCurve.qty_within`` for a scalar ``x >= 0`` on a packed curve ``cv`` (4, K)."""
    k1 = cv.shape[1] - 1
    out = interp1(x, cv[V_X], cv[V_CUM])
    rho_last = cv[V_DENS, k1]
    if rho_last > 0 and x > cv[V_X, k1]:
        out = cv[V_CUM, k1] + rho_last * (x - cv[V_X, k1])
    return out


@njit(**_JIT)
def x_for_qty(q, cv):
    """``SideCurve.x_for_qty`` for a scalar ``q >= 0``: ``sup {x : C(x) <= q}`` (``inf`` past a flat end)."""
    last = cv.shape[1] - 1
    k = search_right(cv[V_CUM], q) - 1
    if k < last:
        return cv[V_X, k] + (q - cv[V_CUM, k]) / cv[V_DENS, k]
    rho_last = cv[V_DENS, last]
    if rho_last > 0:
        return cv[V_X, last] + (q - cv[V_CUM, last]) / rho_last
    return np.inf


@njit(**_JIT)
def primitive(x, cv, s):
    """``SideCurve._primitive``: ``G(x) = integral_0^x (1 + s t) dC(t)`` for a scalar ``x >= 0``."""
    last = cv.shape[1] - 1
    k = search_right(cv[V_X], x) - 1
    if k < last:
        dx = x - cv[V_X, k]
        return cv[V_G, k] + cv[V_DENS, k] * (dx + s * dx * (x + cv[V_X, k]) / 2.0)
    rho_last = cv[V_DENS, last]
    if rho_last > 0:
        dxl = x - cv[V_X, last]
        return cv[V_G, last] + rho_last * (dxl + s * dxl * (x + cv[V_X, last]) / 2.0)
    return cv[V_G, last]


@njit(**_JIT)
def walk_kernel(cv, s, d0, q, lim, max_x, fill, factor):
    """Port of :func:`delever.market.depth.walk` (same recursion and arithmetic, in one pass).

    Args:
        cv: float64 ``(4, K)`` packed side curve (knots, cumulative qty, densities with the last
            segment's density at ``[2, K-1]``, primitive at the knots).
        s: The curve's sign as a float (-1 bid, +1 ask).
        d0: Current displacement (fraction of the reference, finite, >= 0).
        q: float64 ``(N,)`` order sizes (base units, >= 0), ``N >= 1``.
        lim: float64 ``(N,)`` limits as displacements, non-decreasing (``inf`` for market orders).
        max_x: Deepest displacement (fraction of the reference).
        fill: float64 ``(N,)`` output, filled quantity (base units).
        factor: float64 ``(N,)`` output, ``integral (1 + s x) dC`` over the depth each order consumed.

    Returns:
        ``d1``, the displacement after the walk.
    """
    n = q.size
    c0 = qty_within(d0, cv)
    cl = np.empty(n)
    sc = np.empty(n)
    qcum = np.empty(n)
    srun = 0.0
    run = 0.0
    j = 0
    prev = c0
    for i in range(n):
        e = min(lim[i], max_x)
        cli = max(qty_within(max(e, d0), cv), c0)
        cl[i] = cli
        srun = q[i] if i == 0 else srun + q[i]
        sc[i] = srun
        v = cli - srun
        run = v if i == 0 else min(run, v)
        if v <= run:
            j = i  # latest index attaining the running minimum
        bound = run <= c0
        if bound:
            qc = cl[j] + (srun - sc[j])
        else:
            qc = c0 + srun
        qc = max(min(qc, cli), c0)
        if i > 0:
            qc = max(qcum[i - 1], qc)
        qcum[i] = qc
        if bound and j == i:
            fill[i] = min(qc - prev, q[i])
        else:
            fill[i] = q[i]
        prev = qc
    e_cap = max(min(lim[n - 1], max_x), d0)
    gprev = primitive(d0, cv, s)
    x = d0
    for i in range(n):
        x = min(x_for_qty(qcum[i], cv), e_cap)
        gi = primitive(x, cv, s)
        factor[i] = gi - gprev
        gprev = gi
    if qcum[n - 1] <= c0:
        return d0
    return x


# =========================================================================== venue formulas
@njit(**_JIT)
def tier_index(notional, tiers):
    """``MarginTiers.tier_index`` for a scalar: the last tier whose floor is strictly below ``notional``."""
    k = 0
    for i in range(tiers.shape[1]):
        if tiers[T_FLOOR, i] < notional:
            k = i
        else:
            break
    return k


@njit(**_JIT)
def maintenance_margin(notional, tiers):
    """``MarginTiers.maintenance_margin`` for a scalar notional (USD); ``tiers`` is (3, K)."""
    k = tier_index(notional, tiers)
    return notional * tiers[T_MMR, k] - tiers[T_MAINT, k]


@njit(**_JIT)
def liquidation_price(side, q, ep, wb, tiers):
    """``venues.formulas.liquidation_price_binance`` for one position (isolated terms 0), same arithmetic.

    Returns:
        The liquidation price (USD), or -inf (long) / +inf (short) when no bracket is self-consistent
        or the position is closed (``q <= 0``), as ``CascadeEngine._refresh_lp`` stores it.
    """
    if q > 0:
        nk = tiers.shape[1]
        for k in range(nk):
            lp = (wb - 0.0 + 0.0 + tiers[T_MAINT, k] - side * q * ep) / (q * tiers[T_MMR, k] - side * q)
            lo = tiers[T_FLOOR, k] * (1.0 - 1e-12)
            hi = (tiers[T_FLOOR, k + 1] if k + 1 < nk else np.inf) * (1.0 + 1e-12)
            notional = q * lp
            if notional >= lo and notional <= hi and lp > 0:
                return lp
    return -np.inf if side > 0 else np.inf


# =========================================================================== sums, sorting and heaps
@njit(**_JIT)
def _sift_up(hk, hs, hp, i, slot, key):
    """Move the hole at ``i`` up until ``key`` fits; place ``slot`` there (``hp`` tracks every slot's index)."""
    while i > 0:
        parent = (i - 1) >> 1
        if hk[parent] >= key:
            break
        hk[i] = hk[parent]
        hs[i] = hs[parent]
        hp[int(hs[i])] = i
        i = parent
    hk[i] = key
    hs[i] = slot
    hp[slot] = i


@njit(**_JIT)
def _sift_down(hk, hs, hp, n, i, slot, key):
    """Move the hole at ``i`` of a heap of size ``n`` down until ``key`` fits; place ``slot`` there."""
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and hk[c + 1] > hk[c]:
            c += 1
        if hk[c] <= key:
            break
        hk[i] = hk[c]
        hs[i] = hs[c]
        hp[int(hs[i])] = i
        i = c
    hk[i] = key
    hs[i] = slot
    hp[slot] = i


@njit(**_JIT)
def heap_push(hk, hs, hp, n, slot, key):
    """Push ``slot`` with ``key`` on the max-heap ``(hk, hs)`` of size ``n``; returns the new size.

    ``hp[slot]`` holds each slot's index in the heap, so a key can be changed in place (:func:`heap_update`).
    """
    _sift_up(hk, hs, hp, n, slot, key)
    return n + 1


@njit(**_JIT)
def heap_pop(hk, hs, hp, n):
    """Remove the top of the max-heap of size ``n`` (read it first at index 0); returns the new size."""
    n -= 1
    if n == 0:
        return 0
    _sift_down(hk, hs, hp, n, 0, int(hs[n]), hk[n])
    return n


@njit(**_JIT)
def heap_update(hk, hs, hp, n, i, key):
    """Change the key at heap index ``i`` (size ``n``) to ``key``, restoring the heap order."""
    slot = int(hs[i])
    if i > 0 and hk[(i - 1) >> 1] < key:
        _sift_up(hk, hs, hp, i, slot, key)
    else:
        _sift_down(hk, hs, hp, n, i, slot, key)


@njit(**_JIT)
def heap_remove(hk, hs, hp, n, i):
    """Remove heap index ``i`` from a heap of size ``n``; returns the new size."""
    n -= 1
    if i < n:  # the last entry fills the hole, then moves up or down
        slot = int(hs[n])
        key = hk[n]
        if i > 0 and hk[(i - 1) >> 1] < key:
            _sift_up(hk, hs, hp, i, slot, key)
        else:
            _sift_down(hk, hs, hp, n, i, slot, key)
    return n


@njit(**_JIT)
def _push_pooled(r, pool, work, ist):
    lp = pool[r, C_LP]
    if pool[r, C_SIDE] > 0:
        ist[K_HL] = heap_push(work[W_LKEY], work[W_LSLOT], work[W_HPOS], ist[K_HL], r, lp)
    else:
        ist[K_HS] = heap_push(work[W_SKEY], work[W_SSLOT], work[W_HPOS], ist[K_HS], r, -lp)


@njit(**_JIT)
def _rekey_pooled(r, pool, work, ist):
    """After ADL changed pooled position ``r`` (on its heap): move it to its new key, or off the heap if closed."""
    h = 0 if pool[r, C_SIDE] > 0 else 1
    kr = W_LKEY if h == 0 else W_SKEY
    i = int(work[W_HPOS, r])
    if pool[r, C_QTY] > 0:
        lp = pool[r, C_LP]
        heap_update(work[kr], work[kr + 1], work[W_HPOS], ist[K_HL + h], i, lp if h == 0 else -lp)
    else:
        ist[K_HL + h] = heap_remove(work[kr], work[kr + 1], work[W_HPOS], ist[K_HL + h], i)


@njit(**_JIT)
def _pop_candidates(mark, work, ist):
    """Pop every pooled position past its liquidation price (1e-9 relative slack) into ``work[W_CAND]``.

    The positions the cursors just admitted are already there (``ist[K_FRESH]`` of them, on no heap):
    they passed the same test against the same mark.

    Returns:
        The number of candidates (fresh ones included); the caller pushes back the ones left open.
    """
    slack = 1e-9 * mark
    thr = (mark - slack, -(mark + slack))  # long: lp > mark - slack; short: -lp > -(mark + slack)
    nc = ist[K_FRESH]
    ist[K_FRESH] = 0
    for h in range(2):
        kr = W_LKEY if h == 0 else W_SKEY
        n = ist[K_HL + h]
        while n > 0 and work[kr, 0] > thr[h]:
            work[W_CAND, nc] = work[kr + 1, 0]
            nc += 1
            n = heap_pop(work[kr], work[kr + 1], work[W_HPOS], n)
        ist[K_HL + h] = n
    return nc


# =========================================================================== mark price
@njit(**_JIT)
def _median3(a, b, c):
    return max(min(a, b), min(max(a, b), c))


@njit(**_JIT)
def _ema_with(dt_s, basis, window, ema):
    alpha = 1.0 - math.exp(-dt_s / window)
    return ema + alpha * (basis - ema)


@njit(**_JIT)
def mark_value(prm, index, last, dt_s, ema, mring, m0, m1):
    """``MarkPrice.value``: the mark with this step's basis sample provisional.

    Args:
        prm: Parameter vector (method, window, funding basis).
        index, last: Index and traded price (USD).
        dt_s: The step's duration (s).
        ema: Committed EMA of the basis (USD).
        mring: float64 ``(2, T)`` committed samples (durations s, basis USD), live in ``[m0, m1)``.
    """
    method = prm[P_MARK_METHOD]
    if method == 2:
        return last
    if method == 3:
        return index
    window = prm[P_BASIS_WINDOW_S]
    basis = last - index
    if method == 1:
        return _median3(index + _ema_with(dt_s, basis, window, ema), last, index)
    # median_basis_ma: time-weighted MA over the window, history before the run counts as basis 0
    dt = min(dt_s, window)
    need = window - dt
    total = dt * basis
    span = dt
    i = m1 - 1
    while i >= m0:
        if span - dt >= need:
            break
        take = min(mring[0, i], need - (span - dt))
        total += take * mring[1, i]
        span += take
        i -= 1
    p1 = index * (1.0 + prm[P_FUNDING_BASIS])
    p2 = index + total / window
    return _median3(p1, p2, last)


# =========================================================================== impact and backstop
@njit(**_JIT)
def execute(sign, exo, qty, limit_price, st, prm, cv, fq_out, notional_out):
    """``Impact._execute``: walk the bid (``sign < 0``, sells) or ask curve; update the impact state in ``st``.

    Args:
        sign: -1 sell into the bids, +1 buy from the asks.
        exo: Exogenous price (USD).
        qty: float64 ``(N,)`` order sizes (base units), ``N >= 1``.
        limit_price: float64 ``(N,)`` worst acceptable prices (USD).
        st: Path state (permanent factor and displacements are read and written).
        prm: Parameter vector.
        cv: float64 ``(4, K)`` the side curve walked.
        fq_out, notional_out: float64 ``(N,)`` outputs, filled quantity and notional (USD).
    """
    n = qty.size
    anyq = False
    for i in range(n):
        fq_out[i] = 0.0
        notional_out[i] = 0.0
        if qty[i] > 0:
            anyq = True
    if not anyq:
        return
    ref = exo * st[S_PERM]
    limit_x = np.empty(n)
    for i in range(n):
        if sign < 0:
            lx = 1.0 - limit_price[i] / ref
        else:
            lx = limit_price[i] / ref - 1.0
        limit_x[i] = np.inf if math.isnan(lx) else lx
    order = argsort_stable(limit_x)
    qo = np.empty(n)
    lo = np.empty(n)
    for i in range(n):
        qo[i] = qty[order[i]]
        lo[i] = limit_x[order[i]]
    fill = np.empty(n)
    factor = np.empty(n)
    dk = S_DBID if sign < 0 else S_DASK
    d0 = st[dk]
    d1 = walk_kernel(cv, float(sign), d0, qo, lo, prm[P_MAX_X], fill, factor)
    for i in range(n):
        fq_out[order[i]] = fill[i]
        notional_out[order[i]] = ref * factor[i]
    delta = d1 - d0
    phi = prm[P_PERMANENT_FRACTION]
    if delta > 0:
        if sign < 0:
            st[S_PERM] *= 1.0 - phi * delta
        else:
            st[S_PERM] *= 1.0 + phi * delta
        st[dk] = d0 + (1.0 - phi) * delta
    else:
        st[dk] = d1


@njit(**_JIT)
def pay_backstop(st, realized):
    """``CascadeEngine._pay_backstop``: signed PnL to the backstop; a negative balance becomes bad debt."""
    st[S_CASH] += realized
    st[S_MARKET] -= realized
    if st[S_CASH] < 0:
        deficit = -st[S_CASH]
        st[S_CASH] = 0.0
        st[S_BAD] += deficit


@njit(**_JIT)
def backstop_trade(st, side, qty, price):
    """``CascadeEngine._backstop_trade``: the backstop opens or reduces inventory at ``price``."""
    if qty <= 0:
        return
    inv = st[S_INV]
    if inv == 0 or np.sign(inv) == side:
        total = abs(inv) + qty
        st[S_INVE] = (abs(inv) * st[S_INVE] + qty * price) / total
        st[S_INV] = inv + side * qty
        return
    close = min(abs(inv), qty)
    realized = np.sign(inv) * close * (price - st[S_INVE])
    st[S_TKPNL] += realized
    pay_backstop(st, realized)
    st[S_INV] += side * close
    rest = qty - close
    if abs(st[S_INV]) <= DUST_QTY:
        st[S_INV] = 0.0
    if rest > DUST_QTY:
        st[S_INV] = side * rest
        st[S_INVE] = price


@njit(**_JIT)
def _grow(pool, work, need):
    """The pool and work arrays with room for ``need`` rows (doubled when full; contents kept)."""
    cap = pool.shape[0]
    if need <= cap:
        return pool, work
    cap = max(2 * cap, need)
    pool2 = np.empty((cap, N_COLS))
    work2 = np.empty((N_WORK, cap))
    for i in range(pool.shape[0]):  # explicit loops: slice assignment costs seconds of compile time
        for c in range(N_COLS):
            pool2[i, c] = pool[i, c]
    for w in range(N_WORK):
        for i in range(pool.shape[0]):
            work2[w, i] = work[w, i]
    return pool2, work2


@njit(**_JIT)
def _pool_static(S, i, side, pool, ist):
    """Copy column ``i`` of the static side array ``S`` into a new pool row; returns the row."""
    r = ist[K_NPOOL]
    pool[r, C_POS] = S[R_POS, i]
    pool[r, C_SIDE] = side
    pool[r, C_QTY] = S[R_QTY, i]
    pool[r, C_ENTRY] = S[R_ENTRY, i]
    pool[r, C_COLL] = S[R_COLL, i]
    pool[r, C_LP] = S[R_LP, i]
    pool[r, C_COOL] = -np.inf
    pool[r, C_SIDX] = i
    ist[K_NPOOL] = r + 1
    return r


@njit(**_JIT)
def _adl_candidate_score(ranking, s, q, e, c, mark, price, tiers):
    """The ranking score of an open position as an ADL counterparty, ``-inf`` when ``_adl`` skips it.

    Skipped: closed beyond its own bankruptcy price at the ADL ``price``, or no finite score (equity <= 0).
    """
    if not (c + s * q * (price - e) > 0):
        return -np.inf
    mm = maintenance_margin(q * mark, tiers) if ranking == 1 else 0.0
    score = KA.adl_score(ranking, s, q, e, c, mark, mm)
    return score if np.isfinite(score) else -np.inf


@njit(**_JIT)
def adl(qty, price, mark, st, prm, tiers, pool, work, ist, Ls, Ss, early):
    """``CascadeEngine._adl``: close ``qty`` of the backstop inventory against opposite positions at ``price``.

    The counterparties are every open opposite position: the path's pool and the untouched positions
    beyond the side's cursor (static). Eligible ones (solvent at ``price``, finite ranking score) are
    ranked (``kernel_adl``); the queue closes the head of the ranking, the pro-rata policies spread the
    quantity. Each counterparty realizes PnL at ``price``, pays the maker fee if any, and gets a new
    liquidation price: a pooled position moves on its heap (or leaves it when closed), an untouched one
    joins the pool and ``early`` (per static column over both sides, longs first: its pool row, -1
    otherwise; allocated at the first such ADL) so that its cursor skips it.

    Returns:
        ``(done, pool, work, early)``: the quantity deleveraged (less than ``qty`` when too few
        counterparties are left, the rest adds to the shortfall) and the (possibly grown) arrays.
    """
    inv = st[S_INV]
    if qty <= DUST_QTY or inv == 0:
        return 0.0, pool, work, early
    inv_side = 1.0 if inv > 0 else -1.0
    opp = -inv_side
    h = 0 if opp > 0 else 1
    S = Ls if h == 0 else Ss
    off = 0 if h == 0 else Ls.shape[1]
    cur = ist[K_CL + h]
    nst = S.shape[1] - cur
    # candidates k: the pooled open opposite positions (rows prow[k]), then the static columns cur + k - npo
    npool = ist[K_NPOOL]
    prow = np.empty(npool, dtype=np.int64)
    npo = 0
    for r in range(npool):
        if pool[r, C_SIDE] == opp and pool[r, C_QTY] > 0:
            prow[npo] = r
            npo += 1
    ntot = npo + nst
    score = np.empty(ntot)  # -inf: not eligible (beyond its bankruptcy price at the ADL price, or no finite score)
    cq = np.empty(ntot)
    acct = np.empty(ntot)
    pos = np.empty(ntot)
    ranking = int(prm[P_ADL_RANKING])
    for k in range(npo):
        r = prow[k]
        col = int(pool[r, C_SIDX])
        cq[k] = pool[r, C_QTY]
        acct[k] = S[R_ACCT, col]
        pos[k] = S[R_POS, col]
        score[k] = _adl_candidate_score(ranking, opp, cq[k], pool[r, C_ENTRY], pool[r, C_COLL], mark, price, tiers)
    sq, se, sc, sa, sp = S[R_QTY], S[R_ENTRY], S[R_COLL], S[R_ACCT], S[R_POS]
    for i in range(nst):  # the bulk: untouched positions, contiguous rows of the static array
        cq[npo + i] = sq[cur + i]
        acct[npo + i] = sa[cur + i]
        pos[npo + i] = sp[cur + i]
    if ranking == 0:
        KA.scores_pnl_x_leverage(sq, se, sc, cur, nst, opp, mark, price, score, npo)
    else:
        for i in range(nst):
            col = cur + i
            score[npo + i] = _adl_candidate_score(ranking, opp, sq[col], se[col], sc[col], mark, price, tiers)
    n_open = ntot
    if early.size:
        for i in range(nst):
            if early[off + cur + i] >= 0:  # in the pool already (counted there when open)
                score[npo + i] = -np.inf
                n_open -= 1
    if n_open == 0:
        st[S_SHORTFALL] += qty
        return 0.0, pool, work, early
    n_eligible = 0
    for k in range(ntot):
        if score[k] > -np.inf:
            n_eligible += 1
    policy = int(prm[P_ADL_POLICY])
    if policy == KA.POLICY_QUEUE:
        order = KA.top_ranked(score, acct, pos, cq, ntot, n_eligible, qty)
    else:
        order = KA.eligible(score, ntot)
        KA.rank_order(order, score, acct, pos)
    m = order.size
    qs = np.empty(m)
    for j in range(m):
        qs[j] = cq[order[j]]
    if policy == KA.POLICY_QUEUE:
        take = KA.queue_take(qs, qty)
    else:
        eqs = np.empty(m)
        for j in range(m):
            k = order[j]
            if k < npo:
                e, c = pool[prow[k], C_ENTRY], pool[prow[k], C_COLL]
            else:
                e, c = se[cur + k - npo], sc[cur + k - npo]
            eqs[j] = max(c + opp * qs[j] * (mark - e), 1e-12)
        take = KA.pro_rata_take(policy, qty, qs, eqs, mark, prm[P_PRO_RATA_CAP])
    nh = 0
    n_static = 0
    for j in range(m):
        if take[j] > 0:
            nh += 1
            if order[j] >= npo:
                n_static += 1
    if nh == 0:
        st[S_SHORTFALL] += qty
        return 0.0, pool, work, early
    if n_static:
        pool, work = _grow(pool, work, ist[K_NPOOL] + n_static)
        if early.size == 0:
            early = np.full(Ls.shape[1] + Ss.shape[1], -1, dtype=np.int64)
    th = np.empty(nh)
    realized = np.empty(nh)
    fee = np.empty(nh)
    notional = np.empty(nh)
    haircut = np.empty(nh)
    rate = prm[P_ADL_MAKER_FEE]
    i = 0
    for j in range(m):
        t = take[j]
        if not t > 0:
            continue
        k = order[j]
        pooled = k < npo
        if pooled:
            r = prow[k]
        else:
            col = cur + k - npo
            r = _pool_static(S, col, opp, pool, ist)
            early[off + col] = r
        th[i] = t
        realized[i] = opp * t * (price - pool[r, C_ENTRY])
        pool[r, C_COLL] += realized[i]
        pool[r, C_QTY] -= t
        fee[i] = 0.0
        if rate > 0:  # the deleveraged trader pays the maker fee on the ADL fill (Bybit)
            fee[i] = min(rate * t * abs(price), max(pool[r, C_COLL], 0.0))
            pool[r, C_COLL] -= fee[i]
        notional[i] = t * price
        haircut[i] = max(opp * t * (mark - price), 0.0)
        if pool[r, C_QTY] <= DUST_QTY:
            pool[r, C_QTY] = 0.0   # closed: its collateral is the trader's free balance (kept in C_COLL)
        pool[r, C_LP] = liquidation_price(opp, pool[r, C_QTY], pool[r, C_ENTRY], pool[r, C_COLL], tiers)
        if pooled:
            _rekey_pooled(r, pool, work, ist)
        elif pool[r, C_QTY] > 0:
            _push_pooled(r, pool, work, ist)
        i += 1
    done = pairwise_sum(th, 0, nh)
    st[S_MARKET] -= pairwise_sum(realized, 0, nh)
    if rate > 0:
        st[S_FEE_POOL] += pairwise_sum(fee, 0, nh)
    backstop_trade(st, -inv_side, done, price)
    st[S_HAIRCUT] += pairwise_sum(haircut, 0, nh)
    st[S_ADL_NOTIONAL] += pairwise_sum(notional, 0, nh)
    st[S_ADL_COUNT] += nh
    if done < qty - DUST_QTY:
        st[S_SHORTFALL] += qty - done
    return done, pool, work, early


@njit(**_JIT)
def backstop_checks(mark, prev_mark, st, prm, tiers, pool, work, ist, Ls, Ss, early):
    """``CascadeEngine._backstop_checks``: ADL when the backstop cannot accept its inventory.

    Triggers and quantities as the general engine's: a loss beyond ``adl_loss_fraction`` x cash asks for
    the least quantity that brings the loss on the rest back within it; else the excess over the
    net-notional cap (``max_net_notional_ratio`` x equity at mark). The fill price is the inventory's
    entry (the liquidated orders' bankruptcy price), the previous mark, or the mark (bankruptcy price
    while the fund's equity is below ``bankruptcy_below_fund_fraction`` of its start).

    Returns:
        ``(done, pool, work, early)`` as :func:`adl` (``done`` 0 when nothing was deleveraged).
    """
    inv = st[S_INV]
    if inv == 0:
        return 0.0, pool, work, early
    mode = prm[P_ADL_PRICE]
    if mode == 0:
        price = st[S_INVE]
    elif mode == 1:
        price = prev_mark
    elif st[S_CASH] + inv * (mark - st[S_INVE]) < prm[P_ADL_BANKRUPTCY_BELOW] * prm[P_FUND_USD]:
        price = st[S_INVE]
    else:
        price = mark
    upnl = inv * (mark - st[S_INVE])
    cash = max(st[S_CASH], 0.0)
    f = prm[P_ADL_LOSS_FRACTION]
    if -upnl > f * cash:
        st[S_LOSS_TRIG] += 1.0
        # only what the backstop cannot carry: the least q with (|inv| - q) * loss <= f * (cash + q * realized)
        inv_side = 1.0 if inv > 0 else -1.0
        size = abs(inv)
        loss = -inv_side * (mark - st[S_INVE])
        realized = inv_side * (price - st[S_INVE])
        denom = loss + f * realized
        need = size if denom <= 0 else min(size, (size * loss - f * cash) / denom * (1.0 + 1e-9))
        return adl(need, price, mark, st, prm, tiers, pool, work, ist, Ls, Ss, early)
    if prm[P_MAX_NET_RATIO] > 0:
        equity = st[S_CASH] + inv * (mark - st[S_INVE])
        cap_usd = prm[P_MAX_NET_RATIO] * max(equity, 0.0)
        excess = abs(inv) - cap_usd / mark
        if excess > DUST_QTY:
            return adl(excess, price, mark, st, prm, tiers, pool, work, ist, Ls, Ss, early)
    return 0.0, pool, work, early


@njit(**_JIT)
def unwind(exo, mark, dt_s, st, prm, bid, ask):
    """``CascadeEngine._unwind``: the backstop works part of its inventory into the book."""
    inv = st[S_INV]
    if inv == 0:
        return
    qty = abs(inv) * (1.0 - 0.5 ** (dt_s / prm[P_UNWIND_HALF_LIFE_S]))
    if abs(inv) * mark < 100.0:
        qty = abs(inv)
    slip = prm[P_UNWIND_SLIP_PCT] / 100.0
    buf = np.empty(4)
    buf[0] = qty
    sign = -1 if inv > 0 else 1
    buf[1] = mark * (1 - slip) if inv > 0 else mark * (1 + slip)
    execute(sign, exo, buf[0:1], buf[1:2], st, prm, bid if inv > 0 else ask, buf[2:3], buf[3:4])
    if buf[2] <= 0:
        return
    st[S_MKT_NET] += sign * buf[2]
    backstop_trade(st, float(sign), buf[2], buf[3] / buf[2])  # a sale (sign -1) reduces a long inventory


# =========================================================================== one round
@njit(**_JIT)
def liquidation_round(t, exo, mark, st, ist, prm, tiers, bid, ask, pool, work, check_only):
    """``CascadeEngine._round`` at a fixed mark over the pooled candidates, up to its backstop checks.

    With ``check_only`` it is ``CascadeEngine._has_liquidatable`` instead: no state changes, and the
    return value is ``RET_PROGRESS`` if any candidate is below its maintenance margin, else ``RET_NONE``.

    Returns:
        ``RET_NONE`` (no position below maintenance margin: the engine's round ends before its backstop
        checks), ``RET_PROGRESS`` (a fill or a takeover) or ``RET_STUCK`` (neither); after the last two
        the caller runs :func:`backstop_checks`, whose ADL also counts as progress.
    """
    nc = _pop_candidates(mark, work, ist)
    if nc == 0:
        return RET_NONE
    cand = np.empty(nc, dtype=np.int64)
    posv = np.empty(nc)
    for i in range(nc):
        cand[i] = int(work[W_CAND, i])
        posv[i] = pool[cand[i], C_POS]
    by_pos = argsort_stable(posv)
    # exact margin check, in ascending book index (the general engine's order)
    Lr = np.empty(nc, dtype=np.int64)
    eqL = np.empty(nc)
    mmL = np.empty(nc)
    nl = 0
    for ii in range(nc):
        r = cand[by_pos[ii]]
        q = pool[r, C_QTY]
        eq = pool[r, C_COLL] + pool[r, C_SIDE] * q * (mark - pool[r, C_ENTRY])
        mm = maintenance_margin(q * mark, tiers)
        if eq < mm:
            Lr[nl] = r
            eqL[nl] = eq
            mmL[nl] = mm
            nl += 1
    if nl == 0 or check_only:
        for i in range(nc):
            _push_pooled(cand[i], pool, work, ist)
        return RET_PROGRESS if nl > 0 else RET_NONE

    fill_total = 0.0
    takeover_total = 0.0
    n_events = 0
    # Sums over positions are NumPy's pairwise sums over the same arrays in the same (book index) order
    # as the general engine's ``.sum()`` calls: some decisions hinge on them to the last bit (a backstop
    # with zero cash deleverages on any loss, and its inventory entry is a quotient of such sums).
    sb = np.empty((5, nl))
    lb = np.empty(nl)  # per-position trader losses of one kind, summed as the general engine sums them
    # ---- Hyperliquid backstop: equity below a fraction of MM -> the vault takes position and collateral at mark
    frac = prm[P_BACKSTOP_BELOW_MM]
    M = np.empty(nl, dtype=np.int64)  # the rest get market liquidation orders
    nm = 0
    nb = 0
    nbl = 0
    nbs = 0
    for i in range(nl):
        r = Lr[i]
        if frac > 0 and eqL[i] < frac * mmL[i]:
            s = pool[r, C_SIDE]
            qb = pool[r, C_QTY]
            realized = s * qb * (mark - pool[r, C_ENTRY])  # realized at mark
            pool[r, C_COLL] += realized
            st[S_MARKET] -= realized
            sb[0, nb] = pool[r, C_COLL]  # handed to the vault (the account's equity, may be negative)
            lb[nb] = max(pool[r, C_COLL], 0.0)
            nb += 1
            pool[r, C_COLL] = 0.0
            pool[r, C_QTY] = 0.0
            if s > 0:
                sb[1, nbl] = qb
                sb[2, nbl] = qb * mark
                nbl += 1
            else:
                sb[3, nbs] = qb
                sb[4, nbs] = qb * mark
                nbs += 1
        else:
            M[nm] = r
            nm += 1
    if nb:
        handed = pairwise_sum(sb[0], 0, nb)
        st[S_CASH] += handed
        st[S_TKPNL] += handed
        st[S_TLOSS] += pairwise_sum(lb, 0, nb)
        qb_long = pairwise_sum(sb[1], 0, nbl)
        qb_short = pairwise_sum(sb[3], 0, nbs)
        if nbl:
            backstop_trade(st, 1.0, qb_long, mark)
        if nbs:
            backstop_trade(st, -1.0, qb_short, mark)
        st[S_ACC_LONG] += pairwise_sum(sb[2], 0, nbl)
        st[S_ACC_SHORT] += pairwise_sum(sb[4], 0, nbs)
        takeover_total += qb_long + qb_short
        n_events += nb
        if st[S_CASH] < 0:
            pay_backstop(st, 0.0)
    # ---- market liquidation orders: sells walk the bids first, then buys the asks
    if nm:
        orders = np.empty(nm)
        bp = np.empty(nm)
        n_sell = 0
        step_down = prm[P_STEP_DOWN] > 0
        thr = prm[P_PARTIAL_THRESHOLD_USD]
        pfrac = prm[P_PARTIAL_FRACTION]
        chunks = thr > 0 and pfrac < 1
        for i in range(nm):
            r = M[i]
            qL = pool[r, C_QTY]
            o = qL
            if step_down:
                k = tier_index(qL * mark, tiers)
                if k > 0:
                    o = qL - tiers[T_FLOOR, k] / mark
            if chunks and qL * mark > thr and pool[r, C_COOL] <= t:
                o = qL * pfrac
                pool[r, C_COOL] = t + prm[P_PARTIAL_COOLDOWN_S]
            orders[i] = o
            bp[i] = pool[r, C_ENTRY] - pool[r, C_SIDE] * pool[r, C_COLL] / qL
            if pool[r, C_SIDE] > 0:
                n_sell += 1
        fq = np.zeros(nm)
        notional = np.zeros(nm)
        for h in range(2):
            want = 1.0 if h == 0 else -1.0  # longs sell, shorts buy
            n_side = n_sell if h == 0 else nm - n_sell
            if n_side == 0:
                continue
            buf = np.empty((4, n_side))
            m = 0
            for i in range(nm):
                if pool[M[i], C_SIDE] == want:
                    buf[0, m] = orders[i]
                    buf[1, m] = bp[i]
                    m += 1
            execute(-1 if h == 0 else 1, exo, buf[0], buf[1], st, prm, bid if h == 0 else ask, buf[2], buf[3])
            m = 0
            for i in range(nm):
                if pool[M[i], C_SIDE] == want:
                    fq[i] = buf[2, m]
                    notional[i] = buf[3, m]
                    m += 1
        rate = prm[P_FEE_RATE]
        n_filled = 0
        nfl = 0
        nfs = 0
        for i in range(nm):
            fill_total += fq[i]
            if fq[i] > 0:
                r = M[i]
                s = pool[r, C_SIDE]
                realized = s * (notional[i] - fq[i] * pool[r, C_ENTRY])  # realized PnL
                pool[r, C_COLL] += realized
                st[S_MARKET] -= realized
                st[S_MKT_NET] -= s * fq[i]
                fee = min(rate * notional[i], max(pool[r, C_COLL], 0.0))     # clearance fee, capped
                pool[r, C_COLL] -= fee
                sb[0, n_filled] = fee
                lb[n_filled] = fee + max(s * (fq[i] * mark - notional[i]), 0.0)  # fee + adverse slippage vs mark
                n_filled += 1
                qr = pool[r, C_QTY]
                pool[r, C_QTY] = 0.0 if fq[i] >= qr - DUST_QTY else qr - fq[i]
                rec = fq[i] * (notional[i] / fq[i])  # qty x VWAP, as the liquidation table records it
                if s > 0:
                    sb[1, nfl] = rec
                    nfl += 1
                else:
                    sb[2, nfs] = rec
                    nfs += 1
        if n_filled:
            st[S_CASH] += pairwise_sum(sb[0], 0, n_filled)
            st[S_TLOSS] += pairwise_sum(lb, 0, n_filled)
            st[S_ACC_LONG] += pairwise_sum(sb[1], 0, nfl)
            st[S_ACC_SHORT] += pairwise_sum(sb[2], 0, nfs)
        bankruptcy_takeover = prm[P_TAKEOVER_BANKRUPTCY] > 0
        n_events += nm if bankruptcy_takeover else n_filled
        # ---- Binance: still deficient after the IOC -> closed at bankruptcy price, the fund takes over
        if bankruptcy_takeover:
            ntl = 0
            nts = 0
            for i in range(nm):
                r = M[i]
                qr = pool[r, C_QTY]
                if qr > 0:
                    s = pool[r, C_SIDE]
                    e = pool[r, C_ENTRY]
                    eq2 = pool[r, C_COLL] + s * qr * (mark - e)
                    if eq2 < maintenance_margin(qr * mark, tiers):
                        lb[ntl + nts] = max(eq2, 0.0)  # equity at mark surrendered to the fund
                        bpt = e - s * pool[r, C_COLL] / qr
                        st[S_MARKET] += pool[r, C_COLL]  # the collateral left covers the loss to the bankruptcy price
                        pool[r, C_COLL] = 0.0
                        pool[r, C_QTY] = 0.0
                        if s > 0:
                            sb[0, ntl] = qr
                            sb[1, ntl] = qr * bpt
                            ntl += 1
                        else:
                            sb[2, nts] = qr
                            sb[3, nts] = qr * bpt
                            nts += 1
            if ntl + nts:
                st[S_TLOSS] += pairwise_sum(lb, 0, ntl + nts)
            for h in range(2):
                n_side = ntl if h == 0 else nts
                if n_side:
                    tq = pairwise_sum(sb[2 * h], 0, n_side)
                    tn = pairwise_sum(sb[2 * h + 1], 0, n_side)
                    backstop_trade(st, 1.0 if h == 0 else -1.0, tq, tn / tq)
                    st[S_ACC_LONG + h] += tn
                    takeover_total += tq
        for i in range(nm):  # dust
            r = M[i]
            if pool[r, C_QTY] <= DUST_QTY:
                pool[r, C_QTY] = 0.0
    # ---- new liquidation prices of touched positions; open candidates go back on their heaps
    for i in range(nl):
        r = Lr[i]
        pool[r, C_LP] = liquidation_price(pool[r, C_SIDE], pool[r, C_QTY], pool[r, C_ENTRY], pool[r, C_COLL], tiers)
    for i in range(nc):
        r = cand[i]
        if pool[r, C_QTY] > 0:
            _push_pooled(r, pool, work, ist)
    ist[K_ACC_N] += n_events
    if fill_total > 0 or takeover_total > 0:
        return RET_PROGRESS
    return RET_STUCK


# =========================================================================== one path
@njit(**_JIT)
def _admit(mark, Ls, Ss, pool, work, ist, early):
    """Advance both cursors: static positions past the prefilter join the pool as the next round's
    first candidates (``work[W_CAND]``, ``ist[K_FRESH]``); the round puts the ones left open on a heap.
    Positions an ADL already moved into the pool (``early``) are on their heap and are skipped.

    Returns:
        ``(pool, work)``, reallocated (doubled) when the pool was full.
    """
    slack = 1e-9 * mark
    thr_l = mark - slack
    thr_s = mark + slack
    cl = ist[K_CL]
    while cl < Ls.shape[1] and Ls[R_LP, cl] > thr_l:
        cl += 1
    cs = ist[K_CS]
    while cs < Ss.shape[1] and Ss[R_LP, cs] < thr_s:
        cs += 1
    pool, work = _grow(pool, work, ist[K_NPOOL] + (cl - ist[K_CL]) + (cs - ist[K_CS]))
    for h in range(2):
        S = Ls if h == 0 else Ss
        end = cl if h == 0 else cs
        off = 0 if h == 0 else Ls.shape[1]
        for i in range(ist[K_CL + h], end):
            if early.size and early[off + i] >= 0:
                continue
            r = _pool_static(S, i, 1.0 if h == 0 else -1.0, pool, ist)
            work[W_CAND, ist[K_FRESH]] = r  # a candidate of the coming round (no heap round trip)
            ist[K_FRESH] += 1
    ist[K_CL] = cl
    ist[K_CS] = cs
    return pool, work


@njit(**_JIT)
def _money_checks(st, prm, pool, ist, Ls, Ss):
    """``CascadeEngine.conservation`` without the ledger: ``(ledger_imbalance_usd, open_interest_mismatch_qty)``.

    The balance change of every party: traders (collateral and free balances of the positions the
    path touched: the others did not move), backstop cash, the market, bad debt (the party's balance
    is minus the realized bad debt) and the fee pool; and the inside net position change (traders and
    backstop inventory) minus the net purchases from the market.
    """
    traders = 0.0
    net_qty = 0.0
    for r in range(ist[K_NPOOL]):
        S = Ls if pool[r, C_SIDE] > 0 else Ss
        col = int(pool[r, C_SIDX])
        traders += pool[r, C_COLL] - S[R_COLL, col]
        net_qty += pool[r, C_SIDE] * (pool[r, C_QTY] - S[R_QTY, col])
    imbalance = traders + (st[S_CASH] - prm[P_FUND_USD]) + st[S_MARKET] - st[S_BAD] + st[S_FEE_POOL]
    return imbalance, net_qty + st[S_INV] - st[S_MKT_NET]


@njit(cache=True, error_model="numpy", nogil=True)
def run_block(t_s, prices, prm, tiers, Ls, Ss, bid, ask, out_f, out_i, out_b, p0, p1):
    """Run exogenous price paths ``p0 <= p < p1`` through the cascade (``CascadeEngine.run``), one by one.

    Each path has its own scratch (state vectors, pool, heaps) and writes only its own output row, so
    disjoint row ranges may run in parallel threads on the same arrays (the function releases the GIL).
    One function for the whole step loop: every extra level of calls costs compile time.

    Args:
        t_s: float64 ``(T,)`` seconds since the start.
        prices: float64 ``(P, T)`` exogenous prices (USD), column 0 the start of each path.
        prm: float64 ``(N_PARAMS,)`` venue and engine parameters.
        tiers: float64 ``(3, K)`` margin tiers (floors USD, rates, maintenance amounts USD).
        Ls: float64 ``(6, NL)`` longs by descending starting liquidation price (rows ``lp`` USD, ``pos``
            book index, ``qty`` base, ``entry`` USD, ``coll`` USD, ``account``); ``Ss`` shorts by ascending LP.
        bid, ask: float64 ``(4, K)`` packed depth curves.
        out_f, out_i, out_b: float64 ``(P, N_FOUT)``, int64 ``(P, N_IOUT)``, bool ``(P, N_BOUT)`` outputs.
        p0, p1: Rows to run.
    """
    n_t = t_s.size
    for p in range(p0, p1):
        price = prices[p]
        start = price[0]
        # exogenous move: the direction of the larger excursion (runner.path_metrics)
        mn = price[0] / start - 1.0
        mx = mn
        for k in range(1, n_t):
            mv = price[k] / start - 1.0
            mn = min(mn, mv)
            mx = max(mx, mv)
        direction = -1.0 if abs(mn) >= abs(mx) else 1.0
        exo_move = (mn if direction < 0 else mx) * 100.0
        out_f[p, F_EXO_MOVE] = exo_move

        st = np.zeros(N_STATE)
        st[S_PERM] = 1.0
        st[S_CASH] = prm[P_FUND_USD]
        ist = np.zeros(N_ISTATE, dtype=np.int64)
        pool = np.empty((64, N_COLS))
        work = np.empty((N_WORK, 64))
        early = np.empty(0, dtype=np.int64)  # allocated when an ADL first reaches an untouched position
        mring = np.empty((2, n_t))
        m0 = 0
        m1 = 0
        window = prm[P_BASIS_WINDOW_S]
        max_rounds = int(prm[P_MAX_ROUNDS])

        liq_n = 0
        liq_long = 0.0
        liq_short = 0.0
        rounds_max = 0
        cap_hits = 0
        sim_min = 0.0
        sim_max = 0.0
        last = start
        prev_mark = price[0]
        prev_t = 0.0
        for step in range(n_t):
            t = t_s[step]
            if step:
                dt = t - prev_t
                kdec = 0.5 ** (dt / prm[P_RESILIENCE_HALF_LIFE_S])
                st[S_DBID] *= kdec
                st[S_DASK] *= kdec
            else:
                dt = t_s[1] - t_s[0] if n_t > 1 else 1.0
            exo = price[step]
            st[S_ACC_LONG] = 0.0
            st[S_ACC_SHORT] = 0.0
            ist[K_ACC_N] = 0
            rounds = 0
            cap_hit = False
            index = exo
            mark = exo
            while True:
                index = exo * st[S_PERM]
                last = index * (1.0 - st[S_DBID] + st[S_DASK])
                mark = mark_value(prm, index, last, dt, st[S_EMA], mring, m0, m1)
                pool, work = _admit(mark, Ls, Ss, pool, work, ist, early)
                at_cap = rounds >= max_rounds
                ret = liquidation_round(t, exo, mark, st, ist, prm, tiers, bid, ask, pool, work, at_cap)
                if at_cap:  # the round cap: only whether a liquidatable position is left
                    cap_hit = ret == RET_PROGRESS
                    break
                if ret == RET_NONE:
                    break
                done, pool, work, early = backstop_checks(mark, prev_mark, st, prm, tiers, pool, work, ist, Ls, Ss,
                                                          early)
                if ret == RET_STUCK and not done > 0:
                    break
                rounds += 1
            if cap_hit:
                cap_hits += 1
            # MarkPrice.commit: the step's final basis sample joins the history
            basis = last - index
            st[S_EMA] = _ema_with(dt, basis, window, st[S_EMA])
            mring[0, m1] = dt
            mring[1, m1] = basis
            m1 += 1
            span = 0.0
            for k in range(m0, m1):
                span += mring[0, k]
            while m1 > m0 and span - mring[0, m0] >= window:
                span -= mring[0, m0]
                m0 += 1
            unwind(exo, mark, dt, st, prm, bid, ask)
            _, pool, work, early = backstop_checks(mark, prev_mark, st, prm, tiers, pool, work, ist, Ls, Ss, early)
            rounds_max = max(rounds_max, rounds)
            liq_n += ist[K_ACC_N]
            liq_long += st[S_ACC_LONG]
            liq_short += st[S_ACC_SHORT]
            mv = last / start - 1.0
            sim_min = mv if step == 0 else min(sim_min, mv)
            sim_max = mv if step == 0 else max(sim_max, mv)
            prev_mark = mark
            prev_t = t

        final_move = (sim_min if direction < 0 else sim_max) * 100.0
        end_unrealized = st[S_INV] * (prev_mark - st[S_INVE])
        end_equity = st[S_CASH] + end_unrealized  # at the final mark
        unrecovered = st[S_BAD] + max(0.0, -end_equity)
        out_f[p, F_FINAL_MOVE] = final_move
        out_f[p, F_END_MOVE] = (last / start - 1.0) * 100.0
        out_f[p, F_AMPLIFICATION] = final_move / exo_move if exo_move != 0 else np.nan
        out_f[p, F_LIQ_NOTIONAL] = liq_long + liq_short
        out_f[p, F_LIQ_LONG] = liq_long
        out_f[p, F_LIQ_SHORT] = liq_short
        out_f[p, F_FUND_START] = prm[P_FUND_USD]
        out_f[p, F_FUND_END] = end_equity
        out_f[p, F_FUND_END_CASH] = st[S_CASH]
        out_f[p, F_INVENTORY] = st[S_INV]
        out_f[p, F_BAD_DEBT] = max(0.0, -(st[S_TKPNL] + end_unrealized)) + st[S_HAIRCUT]
        out_f[p, F_BAD_DEBT_REALIZED] = st[S_BAD]
        out_f[p, F_BAD_DEBT_UNRECOVERED] = unrecovered
        out_f[p, F_ADL_NOTIONAL] = st[S_ADL_NOTIONAL]
        out_f[p, F_ADL_SHORTFALL] = st[S_SHORTFALL]
        out_f[p, F_TRADER_LOSS] = st[S_TLOSS]
        out_i[p, I_LIQ_COUNT] = liq_n
        out_i[p, I_ROUNDS_MAX] = rounds_max
        out_i[p, I_CAP_HITS] = cap_hits
        out_i[p, I_ADL_COUNT] = int(st[S_ADL_COUNT])
        out_f[p, F_LEDGER_IMBALANCE], out_f[p, F_OI_MISMATCH] = _money_checks(st, prm, pool, ist, Ls, Ss)
        out_b[p, B_DEPLETED] = unrecovered > 0 or end_equity <= 0 or st[S_LOSS_TRIG] > 0
