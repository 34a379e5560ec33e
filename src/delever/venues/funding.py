"""Funding of perpetual swaps: premium index, the venues' rate rules, a settlement clock, payments.

A perpetual pays funding between longs and shorts at fixed times. Each venue samples a **premium
index** (how far the book trades from the index), averages the samples over the funding interval,
turns the average into a rate with its own rule, caps it, and charges ``position value x rate``:
longs pay shorts when the rate is positive.

Rules (the parameter values per venue are data in ``venues/presets/*.toml`` ``[funding]``; [U] marks
a value or detail not verified in a venue's own text):

* **Binance USD-M** (binance.com/en/support/faq/360033525031 "Introduction to Binance Futures Funding
  Rates", copy in a public repo; fapi ``GET /fapi/v1/fundingInfo``): premium index
  ``P = [max(0, impact bid - index) - max(0, index - impact ask)] / index`` every 5 s (5,760 points per
  8 h); impact margin notional ``IMN = 200 USDT / initial margin rate at max leverage`` (BTCUSDT 125x,
  0.8 % -> 25,000 USDT); ``F = P_avg + clamp(I - P_avg, -0.05 %, 0.05 %)``, ``I = 0.03 %/day`` scaled to
  the interval (0.01 % per 8 h); capped at ``+-0.75 x MMR`` of the max-leverage bracket unless
  fundingInfo lists an adjusted cap; intervals 8 h, some symbols 4 h or 1 h. Average weights
  ``1, 2, ..., n`` (later samples count more) as in the same formula on Bybit and in a copy of the
  Binance text [U: Binance's own page not read here]; cap ``0.75 x MMR`` [U: equal to
  ``0.75 x (IMR - MMR)`` whenever IMR = 2 MMR, which holds for BTCUSDT].
* **Bybit** (help center "Introduction to Funding Rate", via search snippets; v5 ``instruments-info``
  ``upperFundingRate``): same ``F`` with a fixed +-0.05 % clamp, ``I = 0.03 % / (24 / interval_h)``,
  premium sampled every minute and averaged with weights ``1..n``; cap
  ``min(0.75 x (IMR - MMR), MMR)`` of the lowest risk-limit tier (BTCUSDT: 0.375 %). Since 2025-10-30 a
  rate at its cap switches the symbol to hourly settlement (BTC/ETH exempt); not modelled [U].
* **OKX** (okx.com/help/okx-to-optimize-funding-rate-calculation, 2024-01): ``F = clamp(MA(P - I), floor,
  cap)``, ``I = 0``, ``P = (mid - index) / index`` each minute, simple average; BTC cap +-0.375 %
  (okx.com/help/360053909272). Uniform mid-based premium = impact notional 0.
* **BitMEX** (bitmex.com/app/perpetualContractsGuide, ...GuideExamples): ``P`` and ``I`` every minute,
  8-hour TWAP; ``I = (quote lending rate - base lending rate) / 3`` (0.06 % - 0.03 % per day -> 0.01 %);
  ``F = P + clamp(I - P, +-0.05 %)``; cap ``75 % x (IMR - MMR)`` (XBTUSD: 0.375 %); impact notional
  0.1 XBT / initial margin. BitMEX measures the impact prices against the mark (fair) price, so the
  caller passes the mark as ``index_price`` of :func:`impact_premium_index` [U: denominator].
* **Hyperliquid** (hyperliquid.gitbook.io/hyperliquid-docs/trading/funding, .../contract-specifications):
  ``F_8h = P_avg + clamp(0.01 % - P_avg, +-0.05 %)`` on an 8-hour basis, paid hourly at ``F_8h / 8``,
  premium against the oracle every 5 s, averaged over the hour; cap 4 %/hour; impact notional 20,000
  USDC for BTC and ETH, 6,000 USDC otherwise; payment on the **oracle** price.
* **dYdX v4** (v4-chain ``protocol/x/perpetuals/keeper/perpetual.go`` ``MaybeProcessNewFundingTickEpoch``,
  ``types/genesis.go``): one premium sample a minute (median of validator votes), hourly funding tick,
  8-hour rate ``= average premium + default_funding_ppm`` (0 for BTC-USD at genesis), clamped to
  ``600 % x (IMF - MMF)`` of the liquidity tier; paid ``rate x 1 h / 8 h x oracle price``; impact
  notional ``500 USDC / IMF``. Each sample is the impact-price premium above [U: ``MemClob.GetPricePremium``
  not read]; the clamp of each vote to ``6,000 % x (IMF - MMF)`` and the sample tail removal (0 %) are
  not modelled.
* **Drift** (protocol-v2 ``controller/funding.rs`` ``update_funding_rate``, ``math/constants.rs``,
  ``math/stats.rs``): hourly; spread of the mark TWAP over the oracle TWAP; offset ``1/3333`` per day
  (10.95 %/year); inside a +-0.05 % band the rate is the offset alone; clamped to the contract tier's
  divergence (1/33 for tiers A/B, 1/20 for C, 1/10 below); paid ``spread / 24`` per hour. The TWAP
  is Drift's ``calculate_new_twap`` (weight ``dt / period`` on the new value), applied here to the
  premium ratio rather than to the two prices separately (a first-order approximation). Drift's
  capping of the AMM's side by its fee pool is not modelled.

Payments: ``funding_payments(signed_qty, price, rate) = -signed_qty x price x rate`` per position
(positive = the position receives). Over a balanced book they sum to zero up to float rounding,
and a long and a short of the same size receive exact opposites. The engine routes each position's
amount as one double-entry transfer between the trader and a ``funding`` clearing party, so money
is conserved exactly even when the simulated open interest is not balanced (the clearing party
stands for the rest of the market); its balance after a settlement is ``-sum(payments)``.

Use (one clock per instrument; ``rule = load_venue("hyperliquid").funding.rule_for("BTC")``)::

    clock = FundingClock(rule, start_s=t0, first_funding_s=next_funding_time)
    # every step (t - dt, t]:
    p = impact_premium_index(depth, index_price, rule.impact_notional_usd, reference_price=ref,
                             bid_displacement=d_bid, ask_displacement=d_ask)
    clock.observe(t, dt, p)
    for s in clock.settle(t):          # several if the step crossed several funding times
        amount = funding_payments(signed_qty, mark_or_oracle_price, s.rate)   # per position, USD
        # ledger: trader += amount, "funding" clearing party -= amount
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # depth imports the config layer; funding only needs its duck type
    from delever.market.depth import DepthCurve, SideCurve

__all__ = [
    "METHODS",
    "AVERAGINGS",
    "FundingRule",
    "FundingSettlement",
    "FundingClock",
    "premium_index",
    "impact_price",
    "impact_premium_index",
    "funding_payments",
    "impact_margin_notional",
    "interest_rate_from_lending",
    "binance_funding_cap",
    "bybit_funding_cap",
    "margin_spread_funding_cap",
    "drift_max_price_divergence",
]

METHODS = ("premium_clamp", "premium_plus_interest", "drift")
AVERAGINGS = ("uniform", "linear", "drift_twap")
PAYMENT_PRICES = ("mark", "oracle")
DAY_S = 86_400.0
_EPS = 1e-9  # fraction of a sample slot counted as "on" a sample instant


def _tol_s(t: float) -> float:
    """Slack (seconds) for a float time that should land on a boundary: a few ulps of t, at least 1 ns."""
    return 1e-12 * max(1e3, abs(t))


@dataclass(frozen=True)
class FundingRule:
    """A venue's funding rule for one instrument (all rates are fractions, 0.0001 = 0.01 %).

    The formula works on a rate quoted per ``rate_basis_s`` (8 h on Hyperliquid and dYdX, one day on
    Drift, the interval itself elsewhere); the rate paid at each settlement is that rate times
    ``interval_s / rate_basis_s``, then clamped to ``[floor, cap]`` (per interval).

    Attributes:
        method: ``premium_clamp``: ``F = P + clamp(I - P, -premium_clamp, premium_clamp)`` (Binance,
            Bybit, BitMEX, Hyperliquid); ``premium_plus_interest``: ``F = P + I`` (dYdX, OKX with
            ``I = 0``); ``drift``: ``F = I`` if ``|P| <= premium_clamp`` else ``P + I`` (Drift's dead band).
        averaging: ``uniform`` (mean of the samples), ``linear`` (weights ``1..n`` by sample number in
            the interval: Binance, Bybit), ``drift_twap`` (Drift's running TWAP, not reset at settlement).
        interval_s: Time between settlements, seconds.
        rate_basis_s: Period the formula's rate refers to, seconds.
        interest_rate_per_day: Interest component per day; ``I = interest_rate_per_day x rate_basis_s / 1 day``.
        premium_clamp: Half-width of the clamp (or Drift's band), fraction per ``rate_basis_s``.
        cap: Highest rate paid per interval.
        floor: Lowest rate paid per interval (negative).
        sample_interval_s: Time between premium samples (``uniform`` and ``linear``); the Drift TWAP
            is updated on every observation instead.
        impact_notional_usd: Notional walked into the book for the impact bid/ask (0: best bid/ask).
        payment_price: ``mark`` or ``oracle``: the price the position value is taken at.
        source: Where the parameters come from.

    Raises:
        ValueError: unknown method/averaging/payment price, non-positive times, ``floor > 0`` or
            ``cap < 0``, a negative clamp or impact notional, a non-finite value.
    """

    method: str
    averaging: str
    interval_s: float
    rate_basis_s: float
    interest_rate_per_day: float
    premium_clamp: float
    cap: float
    floor: float
    sample_interval_s: float
    impact_notional_usd: float
    payment_price: str = "mark"
    source: str = ""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"funding method must be one of {METHODS}, got {self.method!r}")
        if self.averaging not in AVERAGINGS:
            raise ValueError(f"funding averaging must be one of {AVERAGINGS}, got {self.averaging!r}")
        if (self.method == "drift") != (self.averaging == "drift_twap"):
            raise ValueError("funding method 'drift' goes with averaging 'drift_twap' (and only with it)")
        if self.payment_price not in PAYMENT_PRICES:
            raise ValueError(f"funding payment_price must be one of {PAYMENT_PRICES}, got {self.payment_price!r}")
        nums = {k: getattr(self, k) for k in ("interval_s", "rate_basis_s", "interest_rate_per_day", "premium_clamp",
                                              "cap", "floor", "sample_interval_s", "impact_notional_usd")}
        for k, v in nums.items():
            if not math.isfinite(v):
                raise ValueError(f"funding {k} must be finite, got {v!r}")
        for k in ("interval_s", "rate_basis_s", "sample_interval_s"):
            if nums[k] <= 0:
                raise ValueError(f"funding {k} must be > 0, got {nums[k]!r}")
        if self.sample_interval_s > self.interval_s:
            raise ValueError(f"funding sample_interval_s ({self.sample_interval_s:g}) exceeds interval_s ({self.interval_s:g})")
        if self.premium_clamp < 0 or self.impact_notional_usd < 0:
            raise ValueError("funding premium_clamp and impact_notional_usd must be >= 0")
        if self.cap < 0 or self.floor > 0:
            raise ValueError(f"funding needs floor <= 0 <= cap, got floor {self.floor!r}, cap {self.cap!r}")

    @property
    def interest_rate(self) -> float:
        """Interest component ``I`` per ``rate_basis_s`` (fraction)."""
        return self.interest_rate_per_day * self.rate_basis_s / DAY_S

    @property
    def interest_rate_per_interval(self) -> float:
        """Interest component as paid per interval (``I x interval_s / rate_basis_s``)."""
        return self.interest_rate * self.interval_s / self.rate_basis_s

    @property
    def samples_per_interval(self) -> int:
        """Number of premium samples in one interval (at ``k x sample_interval_s``, ``k = 1..n``)."""
        return int(math.floor(self.interval_s / self.sample_interval_s + _EPS))

    def basis_rate(self, average_premium):
        """The formula's rate ``F`` per ``rate_basis_s``, before scaling and capping.

        Args:
            average_premium: float or float64 array, averaged premium index (fraction).

        Returns:
            float64 array (or 0-d) of the same shape.
        """
        p = np.asarray(average_premium, dtype=np.float64)
        i, c = self.interest_rate, self.premium_clamp
        if self.method == "premium_clamp":
            return p + np.clip(i - p, -c, c)
        if self.method == "premium_plus_interest":
            return p + i
        return np.where(np.abs(p) <= c, i, p + i)  # drift: band around 0, then offset

    def rate_from_premium(self, average_premium):
        """Rate paid per interval for an averaged premium: ``clamp(F x interval / basis, floor, cap)``.

        Args:
            average_premium: float or float64 array (fraction).

        Returns:
            float64 array (or 0-d) of the same shape, fraction of position value per interval.
        """
        scaled = self.basis_rate(average_premium) * (self.interval_s / self.rate_basis_s)
        return np.clip(scaled, self.floor, self.cap)


@dataclass(frozen=True)
class FundingSettlement:
    """One settlement: the rate paid at ``time_s`` and what produced it.

    Attributes:
        time_s: Settlement time, seconds on the run's clock.
        rate: Rate paid per interval (fraction of position value; > 0: longs pay shorts).
        average_premium: The averaged premium index the rate came from.
        samples: Premium samples (or TWAP updates) that fell in the interval.
    """

    time_s: float
    rate: float
    average_premium: float
    samples: int


class FundingClock:
    """Samples the premium of one instrument and settles funding at the interval boundaries.

    Settlement ``m`` (``m = 0, 1, ...``) is at ``T_m = first_funding_s + m x interval_s`` and covers
    ``(T_m - interval_s, T_m]``; its premium samples are at ``T_m - interval_s + k x sample_interval_s``,
    ``k = 1..n``. An observation ``(t_s - dt_s, t_s]`` with a constant premium gives each sample instant
    in it that premium, so the average does not depend on how a window is cut into steps. A step that
    crosses boundaries is split at them, so a long step settles every interval it spans.

    Args:
        rule: The funding rule.
        start_s: Time the run starts (no observation before it).
        first_funding_s: Time of the first settlement, in ``(start_s, start_s + interval_s]``
            (default: one interval after the start).
        prior_premium_index: Premium assumed for the part of the first interval before the start (and
            the Drift TWAP's starting value); None: only observed samples count (the TWAP starts at the
            first observation).

    Raises:
        ValueError: ``first_funding_s`` outside ``(start_s, start_s + interval_s]``, a non-finite prior.
    """

    def __init__(self, rule: FundingRule, start_s: float = 0.0, first_funding_s: float | None = None,
                 prior_premium_index: float | None = None) -> None:
        self.rule = rule
        self.start_s = float(start_s)
        first = self.start_s + rule.interval_s if first_funding_s is None else float(first_funding_s)
        if not (self.start_s < first <= self.start_s + rule.interval_s + _tol_s(first)):
            raise ValueError(f"first_funding_s ({first!r}) must lie in (start_s, start_s + interval_s] = "
                             f"({self.start_s:g}, {self.start_s + rule.interval_s:g}]")
        self.first_funding_s = first
        self._n = rule.samples_per_interval
        self._acc: dict[int, list[float]] = {}  # m -> [sum of weights, sum of weight x premium, samples]
        self._next_m = 0                         # first settlement not yet paid
        self._t_last = self.start_s              # end of the last observation (or settlement time)
        self._twap: float | None = None
        self._twap_at: dict[int, float] = {}     # Drift: TWAP at the end of interval m
        self.last_rate = 0.0
        if prior_premium_index is not None:
            p0 = float(prior_premium_index)
            if not math.isfinite(p0):
                raise ValueError(f"prior_premium_index must be finite, got {prior_premium_index!r}")
            if rule.averaging == "drift_twap":
                self._twap = p0
            else:
                self._accumulate(0, first - rule.interval_s, self.start_s, p0)

    # ------------------------------------------------------------------ time helpers
    def boundary(self, m: int) -> float:
        """Time of settlement ``m`` (seconds)."""
        return self.first_funding_s + m * self.rule.interval_s

    @property
    def next_funding_s(self) -> float:
        """Time of the next settlement not yet paid (seconds)."""
        return self.boundary(self._next_m)

    def _interval_of(self, t: float, left_open: bool) -> int:
        # Interval m holds (T_m - I, T_m]; a left end exactly on T_m belongs to m + 1.
        tol = _tol_s(t)
        if left_open:
            return int(math.floor((t + tol - self.first_funding_s) / self.rule.interval_s)) + 1
        return int(math.ceil((t - tol - self.first_funding_s) / self.rule.interval_s))

    def _accumulate(self, m: int, lo: float, hi: float, p: float) -> None:
        """Add the samples of interval ``m`` that lie in ``(lo, hi]`` with premium ``p``."""
        dt = self.rule.sample_interval_s
        s = self.boundary(m) - self.rule.interval_s
        k_lo = min(max(int(math.floor((lo + _tol_s(lo) - s) / dt + _EPS)), 0), self._n)
        k_hi = min(max(int(math.floor((hi + _tol_s(hi) - s) / dt + _EPS)), 0), self._n)
        count = k_hi - k_lo
        if count <= 0:
            return
        w = float(count) if self.rule.averaging == "uniform" else (k_hi * (k_hi + 1) - k_lo * (k_lo + 1)) / 2.0
        acc = self._acc.setdefault(m, [0.0, 0.0, 0])
        acc[0] += w
        acc[1] += w * p
        acc[2] += count

    def _twap_update(self, m: int, lo: float, hi: float, p: float) -> None:
        # Drift math/stats.rs calculate_new_twap: weight since_last on the new value and
        # max(1 s, period - since_last) on the old TWAP; period = the funding period.
        since = hi - lo
        if since <= 0:
            return
        if self._twap is None:
            self._twap = p
        else:
            from_start = max(1.0, self.rule.interval_s - since)
            self._twap = (p * since + self._twap * from_start) / (since + from_start)
        acc = self._acc.setdefault(m, [0.0, 0.0, 0])
        acc[2] += 1
        if abs(hi - self.boundary(m)) <= _tol_s(hi):
            self._twap_at[m] = self._twap

    # ------------------------------------------------------------------ public API
    def observe(self, t_s: float, dt_s: float, premium_index: float) -> None:
        """Record a premium index that held over ``(t_s - dt_s, t_s]``.

        Args:
            t_s: End of the step, seconds.
            dt_s: Step length, seconds (>= 0).
            premium_index: Premium index over the step (fraction, e.g. from :func:`impact_premium_index`).

        Raises:
            ValueError: a non-finite value, ``dt_s < 0``, or a step that starts before the end of the
                previous observation (or in an interval already settled).
        """
        t, dt, p = float(t_s), float(dt_s), float(premium_index)
        if not (math.isfinite(t) and math.isfinite(dt) and math.isfinite(p)):
            raise ValueError(f"observe needs finite t_s, dt_s and premium_index, got {t_s!r}, {dt_s!r}, {premium_index!r}")
        if dt < 0:
            raise ValueError(f"observe: dt_s must be >= 0, got {dt_s!r}")
        lo = t - dt
        if lo < self._t_last - _tol_s(lo):
            raise ValueError(f"observe: step ({lo:g}, {t:g}] starts before the last observed or settled time {self._t_last:g}")
        if dt == 0:
            return
        m_lo, m_hi = self._interval_of(lo, left_open=True), self._interval_of(t, left_open=False)
        if m_lo < self._next_m:
            raise ValueError(f"observe: step ({lo:g}, {t:g}] falls in a settled funding interval")
        for m in range(m_lo, m_hi + 1):
            a = max(lo, self.boundary(m) - self.rule.interval_s)
            b = min(t, self.boundary(m))
            if self.rule.averaging == "drift_twap":
                self._twap_update(m, a, b, p)
            else:
                self._accumulate(m, a, b, p)
        self._t_last = t

    def average_premium(self, m: int | None = None) -> float:
        """Averaged premium of interval ``m`` so far (default: the next to settle); 0 without samples.

        dYdX (``MaybeProcessNewFundingTickEpoch``) takes a premium of 0 when an epoch has no samples;
        the same is done here for every venue.
        """
        m = self._next_m if m is None else m
        if self.rule.averaging == "drift_twap":
            twap = self._twap_at.get(m, self._twap)
            return 0.0 if twap is None else float(twap)
        acc = self._acc.get(m)
        return float(acc[1] / acc[0]) if acc and acc[0] > 0 else 0.0

    def estimated_rate(self) -> float:
        """Rate the next settlement would pay with the samples seen so far (fraction per interval)."""
        return float(self.rule.rate_from_premium(self.average_premium()))

    def settle(self, t_s: float) -> list[FundingSettlement]:
        """Settle every interval whose boundary is at or before ``t_s``.

        Args:
            t_s: Current time, seconds.

        Returns:
            One :class:`FundingSettlement` per boundary crossed since the last call, in time order
            (empty if none).

        Raises:
            ValueError: non-finite ``t_s``.
        """
        t = float(t_s)
        if not math.isfinite(t):
            raise ValueError(f"settle: t_s must be finite, got {t_s!r}")
        out: list[FundingSettlement] = []
        while self.boundary(self._next_m) <= t + _tol_s(t):
            m = self._next_m
            avg = self.average_premium(m)
            acc = self._acc.pop(m, None)
            self._twap_at.pop(m, None)
            rate = float(self.rule.rate_from_premium(avg))
            out.append(FundingSettlement(self.boundary(m), rate, avg, int(acc[2]) if acc else 0))
            self.last_rate = rate
            self._next_m += 1
        self._t_last = max(self._t_last, t) if out else self._t_last
        return out


# ---------------------------------------------------------------------- premium from the book
def premium_index(impact_bid, impact_ask, index_price):
    """``P = [max(0, impact bid - index) - max(0, index - impact ask)] / index``.

    Binance FAQ 360033525031; Hyperliquid ``impact_price_difference / oracle_px``; Bybit help center.

    Args:
        impact_bid: float or float64 array, impact bid price(s), USD.
        impact_ask: float or float64 array, impact ask price(s), USD (broadcast).
        index_price: float or float64 array, index (oracle) price(s), USD, > 0.

    Returns:
        float64 array (broadcast shape), fraction; NaN where an impact price is NaN.

    Raises:
        ValueError: a non-positive index price.
    """
    bid = np.asarray(impact_bid, dtype=np.float64)
    ask = np.asarray(impact_ask, dtype=np.float64)
    idx = np.asarray(index_price, dtype=np.float64)
    if not np.all(idx > 0):
        raise ValueError(f"index_price must be > 0, got {idx.ravel()[~(idx.ravel() > 0)][0]!r}")
    return (np.maximum(0.0, bid - idx) - np.maximum(0.0, idx - ask)) / idx


def impact_price(side: SideCurve, reference_price: float, impact_notional_usd: float,
                 displacement: float = 0.0) -> float:
    """Average fill price of a market order of ``impact_notional_usd`` on one side of a depth curve.

    The side's depth ``C(x)`` is relative to ``reference_price``; depth up to ``displacement`` is gone
    (consumed by earlier orders). The order fills ``M x integral (1 + sign x) dC`` of notional from the
    displacement on, so the end point ``x1`` solves ``G(x1) - G(d0) = N / M`` with ``G`` the side's
    price-factor integral (``SideCurve.price_factor_integral``); on each linear segment this is a
    quadratic, solved in closed form. The impact price is ``N / (C(x1) - C(d0))``. With ``N = 0`` it is
    the best price, ``M x (1 + sign x0)`` where depth resumes at or after the displacement.

    Args:
        side: ``delever.market.depth.SideCurve`` (bid: sign -1, ask: +1).
        reference_price: Price the curve's ``x`` is relative to, USD, > 0.
        impact_notional_usd: Notional of the order, USD, >= 0.
        displacement: Current displacement of that side, fraction of the reference, >= 0.

    Returns:
        The impact price (USD); NaN if the side cannot absorb the notional (a bid side reaching
        price 0, or a side whose depth ends with zero density).

    Raises:
        ValueError: non-positive reference price, negative notional or displacement.
    """
    m, n, d0 = float(reference_price), float(impact_notional_usd), float(displacement)
    if not (math.isfinite(m) and m > 0):
        raise ValueError(f"reference_price must be finite and > 0, got {reference_price!r}")
    if not (math.isfinite(n) and n >= 0) or not (math.isfinite(d0) and d0 >= 0):
        raise ValueError(f"impact_notional_usd and displacement must be finite and >= 0, got {n!r}, {d0!r}")
    t = _side_table(side)
    j = t.segment(d0)
    if n == 0.0:  # best price: where depth resumes at or after the displacement
        k = j
        while k < t.last and t.dens[k] == 0.0:
            k += 1
        if k == t.last and t.dens[k] == 0.0:
            return math.nan
        x0 = d0 if k == j else t.xs[k]
        return m * (1.0 + t.sign * x0)
    target = t.g_at(d0, j) + n / m
    k = max(bisect.bisect_right(t.gs, target) - 1, j)
    a, rho = t.xs[k], t.dens[k]
    if rho <= 0.0:
        return math.nan  # flat to the end: the side cannot absorb the notional
    r = target - t.gs[k]
    # rho * (u (1 + s a) + s u^2 / 2) = r, root in stable form (no cancellation when s u is small)
    b = 1.0 + t.sign * a
    disc = b * b + 2.0 * t.sign * r / rho
    if disc < 0.0 or b <= 0.0:
        return math.nan  # a bid walked down to price 0
    x1 = a + (2.0 * r / rho) / (b + math.sqrt(disc))
    if k < t.last:
        x1 = min(x1, t.xs[k + 1])  # round-off at a knot
    qty = t.c_at(x1, k) - t.c_at(d0, j)
    return n / qty if qty > 0.0 else math.nan


class _SideTable:
    """Plain-float copy of a side curve for scalar walks: knots, cumulative depth, densities, and
    ``G`` (``SideCurve.price_factor_integral`` from 0) at the knots; segment ``last`` is the extrapolation."""

    def __init__(self, side: SideCurve) -> None:
        self.sign = float(side.sign)
        self.xs = [float(v) for v in side.x]
        self.cs = [float(v) for v in side.cum_qty]
        self.gs = [float(v) for v in side.price_factor_integral(0.0, side.x)]
        self.dens = [float(v) for v in side.density] + [float(side.density[-1])]
        self.last = len(self.xs) - 1

    def segment(self, x: float) -> int:
        return min(bisect.bisect_right(self.xs, x) - 1, self.last)

    def c_at(self, x: float, k: int) -> float:
        return self.cs[k] + self.dens[k] * (x - self.xs[k])

    def g_at(self, x: float, k: int) -> float:
        dx = x - self.xs[k]
        return self.gs[k] + self.dens[k] * (dx + self.sign * dx * (x + self.xs[k]) / 2.0)


@lru_cache(maxsize=256)
def _side_table(side: SideCurve) -> _SideTable:
    # side curves are immutable and hash by identity: one table per curve
    return _SideTable(side)


def impact_premium_index(depth_curve: DepthCurve, index_price: float, impact_notional_usd: float,
                         reference_price: float | None = None, bid_displacement: float = 0.0,
                         ask_displacement: float = 0.0) -> float:
    """Premium index of a depth curve: impact bid and ask against the index price.

    ``P = [max(0, impact bid - index) - max(0, index - impact ask)] / index`` (:func:`premium_index`)
    with the impact prices from :func:`impact_price`. A book whose impact bid sits above the index
    gives a positive premium (longs pay); one whose impact ask sits below it a negative one.
    ``impact_notional_usd = 0`` uses the best bid and ask (OKX's mid-based premium, Drift's mark).

    Args:
        depth_curve: ``delever.market.depth.DepthCurve``.
        index_price: Index (oracle) price, USD, > 0.
        impact_notional_usd: Impact notional, USD, >= 0 (e.g. :func:`impact_margin_notional`).
        reference_price: Price the curve is relative to (the book's reference / mid), USD; default
            ``depth_curve.ref_price``.
        bid_displacement: Displacement of the bid side (depth already consumed), fraction.
        ask_displacement: Displacement of the ask side, fraction.

    Returns:
        Premium index (fraction); NaN if a side cannot absorb the impact notional.

    Raises:
        ValueError: no reference price (argument None and ``depth_curve.ref_price`` None), bad prices,
            negative notional or displacement.
    """
    ref = depth_curve.ref_price if reference_price is None else reference_price
    if ref is None:
        raise ValueError("impact_premium_index: reference_price is required when the depth curve has no ref_price")
    bid = impact_price(depth_curve.bid, ref, impact_notional_usd, bid_displacement)
    ask = impact_price(depth_curve.ask, ref, impact_notional_usd, ask_displacement)
    return float(premium_index(bid, ask, index_price))


# ---------------------------------------------------------------------- payments
def funding_payments(signed_qty, price, rate) -> np.ndarray:
    """Funding received by each position: ``-signed_qty x price x rate`` (positive = receives).

    Longs (``signed_qty > 0``) pay shorts when the rate is positive. A long and a short of the same
    size receive exact opposites (IEEE negation is exact), so a book of matched pairs sums to zero
    exactly (``math.fsum``) and any balanced book to zero up to rounding. The engine books each
    amount against a ``funding`` clearing party, which keeps money conserved when the simulated
    book is not balanced.

    Args:
        signed_qty: float64 ``(N,)`` (or scalar) position sizes, base units, long > 0.
        price: Price the position value is taken at (the rule's ``payment_price``), USD; scalar or
            ``(N,)``.
        rate: Rate paid this settlement (fraction per interval); scalar or ``(N,)``.

    Returns:
        float64 array of the broadcast shape, USD.

    Raises:
        ValueError: a non-finite input or a non-positive price.
    """
    q = np.asarray(signed_qty, dtype=np.float64)
    p = np.asarray(price, dtype=np.float64)
    r = np.asarray(rate, dtype=np.float64)
    if not (np.isfinite(q).all() and np.isfinite(p).all() and np.isfinite(r).all()):
        raise ValueError("funding_payments: signed_qty, price and rate must be finite")
    if not np.all(p > 0):
        raise ValueError("funding_payments: price must be > 0")
    return np.asarray(-(q * (p * r)), dtype=np.float64)


# ---------------------------------------------------------------------- parameters from margin
def impact_margin_notional(margin_usd: float, initial_margin_rate: float) -> float:
    """Impact notional ``margin / initial margin rate``.

    Binance: 200 USDT / IMR at max leverage (BTCUSDT 125x: 200 / 0.8 % = 25,000 USDT); dYdX v4:
    500 USDC / IMF (``calculateImpactNotional``); BitMEX: 0.1 XBT / initial margin.

    Raises:
        ValueError: non-positive margin rate or negative margin.
    """
    if not (initial_margin_rate > 0 and margin_usd >= 0):
        raise ValueError(f"impact_margin_notional needs margin >= 0 and rate > 0, got {margin_usd!r}, {initial_margin_rate!r}")
    return margin_usd / initial_margin_rate


def interest_rate_from_lending(quote_rate_per_day: float, base_rate_per_day: float,
                               intervals_per_day: float = 3.0) -> float:
    """BitMEX interest component ``I = (quote lending rate - base lending rate) / funding intervals per day``.

    bitmex.com/app/perpetualContractsGuide: USD 0.06 %/day, XBT 0.03 %/day -> 0.01 % per 8 h.
    """
    return (quote_rate_per_day - base_rate_per_day) / intervals_per_day


def binance_funding_cap(maintenance_margin_rate: float) -> float:
    """Binance default cap (floor = -cap): ``0.75 x MMR`` at the symbol's max leverage [U: see module doc]."""
    return 0.75 * maintenance_margin_rate


def bybit_funding_cap(initial_margin_rate: float, maintenance_margin_rate: float) -> float:
    """Bybit cap (floor = -cap): ``min(0.75 x (IMR - MMR), MMR)`` of the lowest risk-limit tier."""
    return min(0.75 * (initial_margin_rate - maintenance_margin_rate), maintenance_margin_rate)


def margin_spread_funding_cap(initial_margin_rate: float, maintenance_margin_rate: float, factor: float) -> float:
    """``factor x (IMR - MMR)``: BitMEX (factor 0.75, per 8 h); dYdX v4 (factor 6 = 600 %, per 8 h,
    ``LiquidityTier.GetMaxAbsFundingClampPpm`` with ``DefaultFundingRateClampFactorPpm``)."""
    return factor * (initial_margin_rate - maintenance_margin_rate)


def drift_max_price_divergence(contract_tier: str) -> float:
    """Drift's funding clamp by contract tier (``get_max_price_divergence_for_funding_rate``):
    1/33 for tiers A and B, 1/20 for C, 1/10 for Speculative, HighlySpeculative and Isolated.

    Raises:
        ValueError: unknown tier.
    """
    table = {"A": 1 / 33, "B": 1 / 33, "C": 1 / 20, "Speculative": 1 / 10, "HighlySpeculative": 1 / 10,
             "Isolated": 1 / 10}
    if contract_tier not in table:
        raise ValueError(f"unknown Drift contract tier {contract_tier!r} (known: {', '.join(table)})")
    return table[contract_tier]
