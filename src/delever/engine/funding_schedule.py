"""Funding in the account engine: each instrument's venue funding clock fed by its own book.

Per step and instrument the premium index is read from the instrument's depth curve as the engine's impact state
leaves it (impact bid and ask at the venue's impact notional against the index; ``delever.venues.funding``), plus a
scenario basis ``basis_pct`` (the perp trading that far above the index for the whole run, the lever of a multi-day
funding scenario). The venue's clock averages the samples over its interval and settles the clamped, capped rate
at each boundary (``FundingClock``); the engine pays ``rate x notional`` at the venue's payment price, longs paying
when the rate is positive.
"""

from __future__ import annotations

import numpy as np

from delever.venues.funding import FundingClock, FundingRule, impact_premium_index


class VenueFunding:
    """Funding clocks of every instrument of a run.

    Args:
        rules: One ``FundingRule`` per instrument code (``VenueRules.funding.rule_for(symbol)``).
        basis_pct: float64 ``(I,)`` perp premium over the index assumed by the scenario, percent (0: the book alone);
            also the premium assumed for the part of the first interval before the run.
        start_epoch_s: UTC epoch seconds of ``t = 0`` for a historical run, so fundings fall on the venue's UTC grid
            (Binance 00:00 / 08:00 / 16:00, Hyperliquid on the hour); None: the first funding one interval in.

    Attributes:
        payment_on_index: bool ``(I,)``: the venue pays funding on the oracle / index price (Hyperliquid, dYdX,
            Drift) rather than on the mark.
        settlements: ``(t_s, instrument, rate)`` of every funding settled so far.
    """

    def __init__(self, rules: list[FundingRule], basis_pct: np.ndarray | None = None,
                 start_epoch_s: float | None = None) -> None:
        self.rules = list(rules)
        n = len(self.rules)
        self.basis = np.zeros(n) if basis_pct is None else np.asarray(basis_pct, dtype=np.float64) / 100.0
        self.clocks = []
        for r, b in zip(self.rules, self.basis, strict=True):
            first = None
            if start_epoch_s is not None:
                first = r.interval_s - (float(start_epoch_s) % r.interval_s) or r.interval_s
            self.clocks.append(FundingClock(r, 0.0, first, prior_premium_index=float(b)))
        self.payment_on_index = np.array([r.payment_price == "oracle" for r in self.rules], dtype=bool)
        self.settlements: list[tuple[float, int, float]] = []

    def premium(self, i: int, index: float, market) -> float:
        """Premium index of instrument ``i`` now: its book's impact prices against ``index``, plus the basis."""
        imp = market.impact
        p = impact_premium_index(imp.depth, index, self.rules[i].impact_notional_usd,
                                 reference_price=index * (1.0 + self.basis[i]),
                                 bid_displacement=imp.d_bid, ask_displacement=imp.d_ask)
        return 0.0 if not np.isfinite(p) else float(p)

    def rates_due(self, t_s: float, dt_s: float, index: np.ndarray, markets: list) -> np.ndarray | None:
        """Observe this step's premium per instrument; the summed rates of the fundings that settle in it, or None."""
        if dt_s <= 0:
            return None
        rates = np.zeros(len(self.clocks))
        any_due = False
        for i, clock in enumerate(self.clocks):
            clock.observe(t_s, dt_s, self.premium(i, float(index[i]), markets[i]))
            for s in clock.settle(t_s):
                rates[i] += s.rate
                self.settlements.append((s.time_s, i, s.rate))
                any_due = True
        return rates if any_due else None
