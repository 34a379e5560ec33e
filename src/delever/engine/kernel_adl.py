"""Numba pieces of auto-deleveraging for the fast kernel: ranking score, queue order, pro-rata allocation.

Scalar and array ports of what :class:`delever.engine.core.CascadeEngine._adl` computes with NumPy
(``venues.formulas.adl_score``, ``core._top_ranked``, ``core.adl_allocation``), with the same
floating-point operations in the same order, so the kernel picks the same counterparties and closes
the same quantities to the last bit. Sums over positions are NumPy's pairwise sums
(:func:`delever.engine.kernel_arrays.pairwise_sum`) over arrays in the order NumPy sums them.

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
def kth_smallest(a, n, k):
    """``np.partition(a[:n], k)[k]``: the k-th smallest of ``a[:n]`` (0-based), ``a`` reordered in place.

    Three-way quickselect (many equal scores, e.g. zeros of losing positions, stay linear).
    """
    lo = 0
    hi = n - 1
    while True:
        if lo >= hi:
            return a[lo]
        mid = (lo + hi) >> 1
        x, y, z = a[lo], a[mid], a[hi]
        pivot = max(min(x, y), min(max(x, y), z))  # median of three
        lt = lo
        gt = hi
        i = lo
        while i <= gt:
            v = a[i]
            if v < pivot:
                a[i] = a[lt]
                a[lt] = v
                lt += 1
                i += 1
            elif v > pivot:
                a[i] = a[gt]
                a[gt] = v
                gt -= 1
            else:
                i += 1
        if k < lt:
            hi = lt - 1
        elif k > gt:
            lo = gt + 1
        else:
            return pivot


@njit(**_JIT)
def top_ranked(score, acct, pos, qty, n, need_qty):
    """``core._top_ranked``: the head of the ADL queue whose quantities cover ``need_qty``, in queue order.

    The general engine sorts the candidates whose score is at least the m-th largest (every tie kept),
    m = 256, 2048, ... (x8) until their quantity, summed pairwise in queue order, reaches ``need_qty``
    or all ``n`` are sorted. The same sets here: a quickselect finds the cutoff.

    Args:
        score, acct, pos, qty: float64 ``(>= n,)`` candidates' score, account, book row and size (base).
        n: Number of candidates.
        need_qty: Quantity to cover (base).

    Returns:
        int64 candidate indices in queue order (the prefix the engine uses).
    """
    m = min(n, 256)
    scratch = np.empty(n)
    while True:
        if m < n:
            for i in range(n):
                scratch[i] = score[i]
            cutoff = kth_smallest(scratch, n, n - m)
            cnt = 0
            for i in range(n):
                if score[i] >= cutoff:
                    cnt += 1
            top = np.empty(cnt, dtype=np.int64)
            cnt = 0
            for i in range(n):
                if score[i] >= cutoff:
                    top[cnt] = i
                    cnt += 1
        else:
            top = np.arange(n)
        rank_order(top, score, acct, pos)
        if m >= n:
            return top
        qs = np.empty(top.size)
        for i in range(top.size):
            qs[i] = qty[top[i]]
        if pairwise_sum(qs, 0, qs.size) >= need_qty:
            return top
        m = min(n, m * 8)


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
