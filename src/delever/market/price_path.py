"""The price series a run steps through (built by ``delever.paths`` from a scenario's ``price_driver``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PricePath:
    """Price driver of a run, struct of arrays.

    Attributes:
        t_s: float64 (T,), seconds since the start; ``t_s[0] == 0``, strictly increasing.
        price: float64 (T,), USD, > 0; ``price[0]`` is the start (pre-shock) price.
        mode: ``"stress"`` (exogenous component; the engine adds impact) or ``"replay"`` (observed
            mark; no impact added).
        label: human-readable description of the source.
        start_time_utc: ISO 8601 UTC time of ``t_s == 0`` for historical drivers (``...Z``), else None.
        taker_sell_volume: float64 (T,), base units sold by takers attributed to each step
            (historical drivers with traded volume only; step 0 gets 0), else None.
    """

    t_s: np.ndarray
    price: np.ndarray
    mode: str
    label: str
    start_time_utc: str | None
    taker_sell_volume: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.t_s.shape[0])
