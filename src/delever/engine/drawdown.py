"""The backstop's drawdown from its recent peak (OKX "rapid drop" ADL trigger).

Source: venue-mechanics.md section 3 (OKX); OKX help "What is the meaning and purpose of the early liquidation
mechanism?" (a drop of 30 % below the fund's peak within 8 hours) and the OKX API v5 ``adl-warning`` channel
(``maxBal``: maximum fund balance of the past 8 hours). Parameters: ``backstop.adl_drawdown_fraction`` and
``adl_drawdown_window_s`` of the venue preset.
"""

from __future__ import annotations

from collections import deque


class PeakDrawdown:
    """Sliding-window peak of the backstop's equity and whether it has dropped a given fraction below it.

    The peak is a sliding-window maximum (deque of decreasing values), so each observation is O(1) amortized.

    Args:
        fraction: Drop below the peak, as a fraction of the peak, that counts as a rapid drop (in (0, 1)).
        window_s: Length of the window over which the peak is taken, seconds.
    """

    def __init__(self, fraction: float, window_s: float) -> None:
        self.fraction = float(fraction)
        self.window_s = float(window_s)
        self._peaks: deque[tuple[float, float]] = deque()   # (t_s, equity), decreasing equity

    def dropped(self, t_s: float, equity_usd: float) -> bool:
        """Record the equity (floored at 0) at ``t_s``; True if it is ``fraction`` or more below the window's peak."""
        value = max(equity_usd, 0.0)
        peaks = self._peaks
        while peaks and peaks[-1][1] <= value:
            peaks.pop()
        peaks.append((t_s, value))
        while peaks[0][0] < t_s - self.window_s:
            peaks.popleft()
        peak = peaks[0][1]
        return peak > 0 and (peak - value) >= self.fraction * peak
