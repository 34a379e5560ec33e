"""Mitigation parameters layered on a venue's rules (the scenario's ``[mitigations]`` tables).

Pydantic models (strict, frozen) the engine reads directly (``delever.engine.mitigations``); the scenario
embeds :class:`Mitigations`. They live on the engine side so that the engine does not import the scenario.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from delever.config_types import PositiveFloat, Strict


class MarkSmoothing(Strict):
    """Mark-price smoothing applied on top of the venue's mark (``mitigations.mark_smoothing``).

    ``ema``: exponential moving average of the venue mark with time constant ``span_s``; ``twap``:
    time-weighted average over the last ``span_s`` seconds; ``book_anchored``: the book's traded price
    limited to ``index * (1 +/- max_deviation_pct/100)`` (the index-anchored marks of venue-mechanics.md
    §8: Binance price protection, Drift's TWAP guard). History before the run counts as the first mark.
    """

    method: Literal["ema", "twap", "book_anchored"] = "ema"
    span_s: PositiveFloat = 300.0
    max_deviation_pct: Annotated[float, Field(gt=0, lt=100)] = 0.5


class CircuitBreaker(Strict):
    """Price bands and trading halts (``mitigations.circuit_breaker``; venue-mechanics.md §8).

    ``halt``: when the index has moved more than ``band_pct`` from its value ``lookback_s`` ago, trading
    stops for ``halt_s`` (no liquidation fills, mark frozen); the band restarts from the reopening price.
    ``limit_down`` (CME equity index futures): static levels ``levels_pct`` from the start price; touching
    one of the lower levels pauses trading for ``level_halt_s``; the last level is a hard limit: the mark
    and every fill stay within it for the rest of the run. ``auction`` (Vega price monitoring): a move
    beyond the band starts an auction of ``halt_s`` with no continuous trading, extended by ``halt_s`` up
    to ``max_extensions`` times while the price is still outside the band of the trigger's reference;
    orders then execute against the book as it has refilled.
    """

    kind: Literal["halt", "limit_down", "auction"] = "halt"
    band_pct: Annotated[float, Field(gt=0, lt=100)] = 5.0
    lookback_s: PositiveFloat = 300.0
    halt_s: PositiveFloat = 300.0
    max_extensions: Annotated[int, Field(ge=0, le=100)] = 3
    levels_pct: list[Annotated[float, Field(gt=0, lt=100)]] = [7.0, 13.0, 20.0]
    level_halt_s: PositiveFloat = 900.0

    @model_validator(mode="after")
    def _levels(self) -> CircuitBreaker:
        lv = self.levels_pct
        if not lv or any(b <= a for a, b in zip(lv, lv[1:], strict=False)):
            raise ValueError(f"levels_pct must be a non-empty, strictly increasing list, got {lv}")
        return self


class DynamicMargin(Strict):
    """Maintenance margin scaled by realized volatility (``mitigations.dynamic_margin``).

    ``multiplier = clip(realized_vol / reference_vol_annual, 1, max_multiplier)`` with the realized
    volatility of the index's log returns over the trailing ``window_s`` seconds (annualized over
    365 x 86,400 s); every tier's MMR and maintenance amount are multiplied by it, so ``MM`` scales.
    """

    window_s: PositiveFloat = 3600.0
    reference_vol_annual: PositiveFloat = 0.5
    max_multiplier: Annotated[float, Field(ge=1, le=100)] = 2.0


class LiquidationThrottle(Strict):
    """Cap on liquidated notional per rolling window (``mitigations.throttle``): the liquidation rate limiter
    of Synthetix perps v3 (synthetix-v3 markets/perps-market ``PerpsMarketConfiguration``: at most
    ``(makerFee + takerFee) x skewScale x maxLiquidationLimitAccumulationMultiplier`` per
    ``maxSecondsInLiquidationWindow``, the rest liquidated in later windows; SIP-358). Notional is quantity x the round's mark price; the most under-margined
    positions go first, the others wait for room (a position larger than the cap goes alone into an
    empty window). On venues that take over at the bankruptcy price the whole position counts, since
    what the book does not take is taken over in the same round."""

    max_notional_usd: PositiveFloat
    window_s: PositiveFloat = 60.0


class DutchAuction(Strict):
    """Liquidation by descending-price auction (``mitigations.dutch_auction``; MakerDAO Liquidations 2.0,
    dss ``clip.sol`` / ``abaci.sol``). The auction of a long's position starts at ``mark * (1 + buf)``
    and decays (``linear``: to 0 over ``tau_s``; ``exponential``: ``cut`` per ``step_s``, continuous;
    ``stairstep``: ``cut`` every ``step_s``); a short's auction mirrors it upward. Keepers buy whatever the
    book can absorb at or beyond the auction price; the position receives the auction price. The auction
    ends (backstop takeover) when the price passes the bankruptcy price or after ``tail_s``.
    """

    buf: Annotated[float, Field(ge=0, lt=1)] = 0.02
    decay: Literal["linear", "exponential", "stairstep"] = "exponential"
    tau_s: PositiveFloat = 3600.0
    cut: Annotated[float, Field(gt=0, lt=1)] = 0.99
    step_s: PositiveFloat = 10.0
    tail_s: PositiveFloat = 1800.0


class Mitigations(Strict):
    """Mitigations layered on the venue's rules; each is off unless its table is present."""

    mark_smoothing: MarkSmoothing | None = None
    circuit_breaker: CircuitBreaker | None = None
    dynamic_margin: DynamicMargin | None = None
    throttle: LiquidationThrottle | None = None
    dutch_auction: DutchAuction | None = None

    def active(self) -> list[str]:
        """Names of the mitigations that are on."""
        return [k for k in type(self).model_fields if getattr(self, k) is not None]
