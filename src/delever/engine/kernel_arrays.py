"""NumPy array primitives in Numba, bit for bit: pairwise summation (``np.sum``) and stable argsort.

The fast kernel reproduces the general engine's ``.sum()`` and sort calls exactly: some decisions (a
backstop with zero cash deleverages on any loss, the ADL queue's cutoff) hinge on the last bit of
such sums, and ties in sorts must be broken the same way.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_JIT = {"cache": True, "error_model": "numpy"}


@njit(**_JIT)
def _block_sum(a, lo, n):
    """NumPy's pairwise-sum leaf (``n <= 128``): sequential below 8, else 8 accumulators."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = lo + 8
    end8 = lo + n - n % 8
    while i < end8:
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < lo + n:
        res += a[i]
        i += 1
    return res


@njit(**_JIT)
def pairwise_sum(a, lo, n):
    """``np.sum(a[lo:lo + n])`` bit for bit: NumPy's pairwise summation (``loops_utils.h``).

    Blocks of up to 128 are summed by :func:`_block_sum`; a longer range is the sum of its two
    halves, the first rounded down to a multiple of 8. The recursion runs on an explicit stack
    (a recursive ``njit`` function does not survive Numba's cache).
    """
    if n <= 128:
        return _block_sum(a, lo, n)
    los = np.empty(64, dtype=np.int64)
    ns = np.empty(64, dtype=np.int64)
    left = np.empty(64)
    stage = np.zeros(64, dtype=np.int64)  # 0: not expanded, 1: left half running, 2: right half running
    top = 0
    los[0] = lo
    ns[0] = n
    result = 0.0
    while top >= 0:
        m = ns[top]
        if m > 128 and stage[top] == 0:
            stage[top] = 1
            n2 = m // 2
            n2 -= n2 % 8
            top += 1
            los[top] = los[top - 1]
            ns[top] = n2
            stage[top] = 0
            continue
        v = _block_sum(a, los[top], m)
        top -= 1
        while top >= 0:  # hand v up: a left half waits for its sibling, a right half completes the sum
            if stage[top] == 1:
                left[top] = v
                stage[top] = 2
                n2 = ns[top] // 2
                n2 -= n2 % 8
                top += 1
                los[top] = los[top - 1] + n2
                ns[top] = ns[top - 1] - n2
                stage[top] = 0
                break
            v = left[top] + v
            top -= 1
        if top < 0:
            result = v
    return result


@njit(**_JIT)
def argsort_stable(key):
    """Stable ascending argsort of a float64 array without NaN (``np.argsort(key, kind="stable")``).

    Bottom-up merge sort over insertion-sorted runs of 16, written out because Numba's own
    ``np.argsort`` costs seconds of compile time.
    """
    n = key.size
    idx = np.empty(n, dtype=np.int64)
    for i in range(n):
        idx[i] = i
    run = 16
    for lo in range(0, n, run):
        hi = min(lo + run, n)
        for i in range(lo + 1, hi):
            v = idx[i]
            kv = key[v]
            j = i - 1
            while j >= lo and key[idx[j]] > kv:
                idx[j + 1] = idx[j]
                j -= 1
            idx[j + 1] = v
    buf = np.empty(n, dtype=np.int64)
    width = run
    while width < n:
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i = lo
            j = mid
            k = lo
            while i < mid and j < hi:
                if key[idx[j]] < key[idx[i]]:
                    buf[k] = idx[j]
                    j += 1
                else:
                    buf[k] = idx[i]
                    i += 1
                k += 1
            while i < mid:
                buf[k] = idx[i]
                i += 1
                k += 1
            while j < hi:
                buf[k] = idx[j]
                j += 1
                k += 1
        idx, buf = buf, idx
        width *= 2
    return idx
