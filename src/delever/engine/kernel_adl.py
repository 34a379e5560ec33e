"""Numba pieces of auto-deleveraging for the fast kernel: ranking score, queue order, pro-rata allocation.

Scalar and array ports of what :class:`delever.engine.core.CascadeEngine._adl` computes with NumPy
(``venues.formulas.adl_score``, ``core._top_ranked``, ``core.adl_allocation``), with the same
floating-point operations in the same order, so the kernel picks the same counterparties and closes
the same quantities to the last bit. Sums over positions are NumPy's pairwise sums
(:func:`delever.engine.kernel_arrays.pairwise_sum`) over arrays in the order NumPy sums them.

The rules are the venues' (``shared/docs/venue-mechanics.md`` §1 Binance: ADL queue by PnL% x
effective leverage at the bankruptcy price; §4 Hyperliquid: ranking by mark/entry x leverage at the
previous mark) and the pro-rata alternatives of ``AdlRule.policy``.

The layout-free helpers live here; :func:`delever.engine.kernels.adl` gathers the counterparties from a
path's pool and the untouched sorted book, calls these, and applies the result.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from delever.engine.kernel_arrays import argsort_stable, pairwise_sum

DUST_QTY = 1e-12  # same as delever.engine.core.DUST_QTY

POLICY_QUEUE = 0
POLICY_PRO_RATA = 1
POLICY_CAPPED_PRO_RATA = 2
POLICY_RISK_AWARE_PRO_RATA = 3

_JIT = {"cache": True, "error_model": "numpy"}


@njit(**_JIT)
def adl_score(ranking, s, q, e, c, mark, mm):
    """``venues.formulas.adl_score`` for one position (``-inf`` when its equity at mark is <= 0).

    Args:
        ranking: 0 ``pnl_pct_x_effective_leverage``, 1 ``pnl_pct_x_margin_ratio``, 2 ``hyperliquid``.
        s: Side as a float (+1 long, -1 short).
        q, e, c: Size (base), entry (USD), collateral (USD).
        mark: Mark price (USD).
        mm: Maintenance margin at mark (USD), used by ranking 1 only.
    """
    notional = q * mark
    upnl = s * q * (mark - e)
    equity = c + upnl
    if not (equity > 0):
        return -np.inf
    if ranking == 0:
        pnl_pct = s * (mark - e) / e
        eff_lev = notional / equity
        return pnl_pct * eff_lev if pnl_pct > 0 else pnl_pct / eff_lev
    if ranking == 1:
        return max(0.0, upnl) / max(1.0, c) * (mm / equity)
    ratio = mark / e if s > 0 else e / mark   # (mark/entry)^side, as venues.formulas evaluates it
    return ratio * notional / equity


@njit(**_JIT)
def scores_pnl_x_leverage(q, e, c, lo, n, s, mark, price, out, at):
    """Ranking ``pnl_pct_x_effective_leverage`` of positions ``lo .. lo+n-1`` into ``out[at ..]``.

    The values of :func:`adl_score` (ranking 0), ``-inf`` where ``CascadeEngine._adl`` skips the
    position (equity at ``price`` or at mark <= 0, or no finite score). Written without branches so
    that the divisions run as vector instructions: this loop scores the whole untouched side.

    Args:
        q, e, c: float64 size (base), entry (USD), collateral (USD) arrays of one side.
        lo, n: First position and count.
        s: The side as a float (+1 long, -1 short).
        mark, price: Mark and ADL fill price (USD).
        out: float64 output; ``at``: its first index.
    """
    for i in range(n):
        qi = q[lo + i]
        ei = e[lo + i]
        ci = c[lo + i]
        d = mark - ei
        equity = ci + s * qi * d
        pnl_pct = s * d / ei
        eff_lev = qi * mark / equity
        v = pnl_pct * eff_lev if pnl_pct > 0 else pnl_pct / eff_lev
        good = (ci + s * qi * (price - ei) > 0) & (equity > 0) & (v - v == 0.0)   # v - v: NaN unless finite
        out[at + i] = v if good else -np.inf


@njit(**_JIT)
def _stable_by(idx, key):
    """Reorder ``idx`` (in place) stably by ``key[idx]`` ascending."""
    k = np.empty(idx.size)
    for i in range(idx.size):
        k[i] = key[idx[i]]
    o = argsort_stable(k)
    tmp = idx.copy()
    for i in range(idx.size):
        idx[i] = tmp[o[i]]


@njit(**_JIT)
def rank_order(idx, score, acct, pos):
    """Sort the candidate indices ``idx`` (int64, in place) into ADL queue order.

    The order of ``np.lexsort((account, -score))`` over candidates in ascending book row (the general
    engine's): score descending, account ascending, book row ascending. Built as ``lexsort`` does,
    from stable sorts by the last key first.
    """
    _stable_by(idx, pos)
    _stable_by(idx, acct)
    neg = np.empty(score.size)
    for i in range(idx.size):
        neg[idx[i]] = -score[idx[i]]
    _stable_by(idx, neg)


@njit(**_JIT)
def kth_largest(a, n, m):
    """``np.partition(a[:n], n - m)[n - m]``: the m-th largest of ``a[:n]`` (``1 <= m <= n``).

    One pass with a min-heap of the m largest seen so far: most values fall below its top and cost
    one comparison.
    """
    h = np.empty(m)
    for i in range(m):  # heapify the first m
        v = a[i]
        j = i
        while j > 0:
            parent = (j - 1) >> 1
            if h[parent] <= v:
                break
            h[j] = h[parent]
            j = parent
        h[j] = v
    for i in range(m, n):
        v = a[i]
        if v > h[0]:
            j = 0
            while True:
                c = 2 * j + 1
                if c >= m:
                    break
                if c + 1 < m and h[c + 1] < h[c]:
                    c += 1
                if h[c] >= v:
                    break
                h[j] = h[c]
                j = c
            h[j] = v
    return h[0]


@njit(**_JIT)
def _at_least(score, n, cutoff):
    """Indices ``i < n`` with ``score[i] >= cutoff``, ascending (int64)."""
    cnt = 0
    for i in range(n):
        if score[i] >= cutoff:
            cnt += 1
    out = np.empty(cnt, dtype=np.int64)
    cnt = 0
    for i in range(n):
        if score[i] >= cutoff:
            out[cnt] = i
            cnt += 1
    return out


@njit(**_JIT)
def eligible(score, n):
    """Indices ``i < n`` with a finite score (``> -inf``), ascending (int64)."""
    return _at_least(score, n, -np.finfo(np.float64).max)


@njit(**_JIT)
def top_ranked(score, acct, pos, qty, n, n_eligible, need_qty):
    """``core._top_ranked``: the head of the ADL queue whose quantities cover ``need_qty``, in queue order.

    The general engine sorts the candidates whose score is at least the m-th largest (every tie kept),
    m = 256, 2048, ... (x8) until their quantity, summed pairwise in queue order, reaches ``need_qty``
    or all are sorted. The same sets here: a heap selection finds the cutoff.

    Args:
        score, acct, pos, qty: float64 ``(>= n,)`` candidates' score (``-inf``: not eligible), account,
            book row and size (base).
        n: Number of entries.
        n_eligible: Number of entries with a finite score (the engine's candidates).
        need_qty: Quantity to cover (base).

    Returns:
        int64 entry indices in queue order (the prefix the engine uses).
    """
    m = min(n_eligible, 256)
    while True:
        if m < n_eligible:
            # more eligible entries than m: the m-th largest of all entries is the m-th largest eligible one
            top = _at_least(score, n, kth_largest(score, n, m))
        else:
            top = eligible(score, n)
        rank_order(top, score, acct, pos)
        if m >= n_eligible:
            return top
        qs = np.empty(top.size)
        for i in range(top.size):
            qs[i] = qty[top[i]]
        if pairwise_sum(qs, 0, qs.size) >= need_qty:
            return top
        m = min(n_eligible, m * 8)


@njit(**_JIT)
def queue_take(q, need_qty):
    """Quantities the queue closes: ``np.clip(need - (np.cumsum(q) - q), 0, q)`` (float64, same shape)."""
    take = np.empty(q.size)
    cs = 0.0
    for i in range(q.size):
        cs = q[i] if i == 0 else cs + q[i]
        before = cs - q[i]
        take[i] = min(max(need_qty - before, 0.0), q[i])
    return take


@njit(**_JIT)
def water_fill(need, weight, cap):
    """``core._water_fill``: split ``need`` in proportion to ``weight``, capped by ``cap`` (same arithmetic)."""
    n = weight.size
    take = np.zeros(n)
    free = np.empty(n, dtype=np.bool_)
    hit = np.zeros(n, dtype=np.bool_)
    any_free = False
    for i in range(n):
        free[i] = weight[i] > 0 and cap[i] > 0
        any_free = any_free or free[i]
    buf = np.empty(n)
    left = need
    while left > DUST_QTY and any_free:
        nf = 0
        for i in range(n):
            if free[i]:
                buf[nf] = weight[i]
                nf += 1
        total = pairwise_sum(buf, 0, nf)
        hit_any = False
        for i in range(n):
            hit[i] = free[i] and left * weight[i] / total >= cap[i] - take[i]
            hit_any = hit_any or hit[i]
        if not hit_any:
            for i in range(n):
                if free[i]:
                    take[i] += left * weight[i] / total
            break
        any_free = False
        for i in range(n):
            if hit[i]:
                take[i] = cap[i]
                free[i] = False
            any_free = any_free or free[i]
        left = need - pairwise_sum(take, 0, n)
    return take


@njit(**_JIT)
def pro_rata_take(policy, need_qty, q, equity, mark, cap_fraction):
    """``core.adl_allocation`` for the pro-rata policies over candidates in queue order.

    Args:
        policy: ``POLICY_PRO_RATA``, ``POLICY_CAPPED_PRO_RATA`` or ``POLICY_RISK_AWARE_PRO_RATA``.
        need_qty: Quantity to deleverage (base).
        q: float64 ``(n,)`` sizes (base), queue order.
        equity: float64 ``(n,)`` equity at mark (USD), floored at 1e-12 as the engine passes it.
        mark: Mark price (USD).
        cap_fraction: ``pro_rata_cap_fraction``.

    Returns:
        float64 ``(n,)`` quantity each gives up.
    """
    n = q.size
    need = min(need_qty, pairwise_sum(q, 0, n))
    if policy == POLICY_PRO_RATA:
        return water_fill(need, q, q)
    if policy == POLICY_CAPPED_PRO_RATA:
        cap = np.empty(n)
        for i in range(n):
            cap[i] = cap_fraction * q[i]
        first = water_fill(need, q, cap)
        rest = need - pairwise_sum(first, 0, n)
        if rest > DUST_QTY:
            room = np.empty(n)
            for i in range(n):
                room[i] = q[i] - first[i]
            second = water_fill(rest, room, room)
            for i in range(n):
                first[i] = first[i] + second[i]
        return first
    weight = np.empty(n)
    for i in range(n):
        weight[i] = q[i] * (q[i] * mark) / equity[i]
    return water_fill(need, weight, q)
