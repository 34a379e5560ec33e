"""Venue rules as data: pydantic models loaded from the TOML presets in ``venues/presets``.

A preset names the mark-price method, the liquidation process, the backstop (insurance fund or
liquidator vault), the ADL ranking and fill price, and margin tiers per instrument. Scenario
``venue.overrides`` are deep-merged into the preset before validation, so an override with an
unknown key or a bad value is an error naming the key.
"""

from __future__ import annotations

import tomllib
from functools import cached_property
from importlib import resources
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from delever.config_types import Fraction, NonNegFloat, PositiveFloat, Strict, format_validation
from delever.errors import DeleverInputError
from delever.venues.funding import FundingRule
from delever.venues.symbols import instrument_candidates
from delever.venues.tiers import MarginTiers

PRESETS = ("binance-usdm", "hyperliquid", "bitmex", "bybit", "okx", "dydx-v4", "drift")


class MarkRule(Strict):
    """Mark price method (see ``delever.engine.mark``).

    ``fair_price`` (BitMEX Fair Price Marking, bitmex.com/app/fairPriceMarking):
    ``index * (1 + funding_rate * time_to_funding / funding_interval_s)``. ``funding_rate`` is the rate
    of the coming funding (fraction per interval); ``time_to_funding_s`` the time from the start of the
    run to that funding (default: a whole interval). A simulation has no later funding rates, so the
    basis decays linearly to 0 at that funding time and stays 0.
    """

    method: Literal["median_basis_ma", "median_basis_ema", "last", "index", "fair_price"]
    basis_window_s: PositiveFloat = 30.0
    funding_basis: float = 0.0
    funding_rate: Annotated[float, Field(gt=-1, lt=1)] = 0.0
    funding_interval_s: PositiveFloat = 28_800.0
    time_to_funding_s: NonNegFloat | None = None

    @model_validator(mode="after")
    def _funding_time(self) -> MarkRule:
        if self.time_to_funding_s is not None and self.time_to_funding_s > self.funding_interval_s:
            raise ValueError(f"mark.time_to_funding_s ({self.time_to_funding_s:g}) must not exceed "
                             f"mark.funding_interval_s ({self.funding_interval_s:g})")
        return self


class LiquidationRule(Strict):
    """How a position below maintenance margin is liquidated.

    Step-down ("laddered") liquidation, ``step_down_tiers``: a position in margin tier
    ``step_down_from_tier`` (1-based) or above first gets an order that brings it down to the top of
    the lower tier (``step_down_to = "lower_tier"``; Binance, BitMEX, Bybit) or of the first tier
    (``"first_tier"``; OKX's historic partial liquidation); positions in lower tiers are closed in full.
    ``step_down_order``: ``ioc`` fills what the book holds within the bankruptcy price (Binance),
    ``fill_or_kill`` fills the whole order or nothing (BitMEX liquidationExamples, Bybit laddered
    liquidation). ``step_down_freeze_s``: after a step-down order the position is neither taken over nor
    liquidated again for this long (OKX: orders are checked again "about a minute later").

    ``close_at_bankruptcy`` (BitMEX, Bybit): a deficient position that is not (or no longer) stepped
    down is closed at its bankruptcy price: the liquidation order is a limit at the bankruptcy price, a
    fill better than it pays the difference to the insurance fund, what does not fill is taken over at
    the bankruptcy price. Otherwise (Binance) a full fill leaves the trader the rest of the margin.

    ``liquidation_taker_fee_rate`` (Bybit): the taker fee of the liquidated order (fraction of the fill
    notional, or of the bankruptcy value on a takeover), paid to the fee pool. The bankruptcy price then
    includes the fee to close (``venues.formulas.bankruptcy_price_with_close_fee``).
    """

    clearance_fee_rate: Annotated[float, Field(ge=0, lt=1)] = 0.0
    step_down_tiers: bool = False
    step_down_order: Literal["ioc", "fill_or_kill"] = "ioc"
    step_down_to: Literal["lower_tier", "first_tier"] = "lower_tier"
    step_down_from_tier: Annotated[int, Field(ge=2)] = 2
    step_down_freeze_s: NonNegFloat = 0.0
    close_at_bankruptcy: bool = False
    liquidation_taker_fee_rate: Annotated[float, Field(ge=0, lt=0.1)] = 0.0
    partial_threshold_usd: NonNegFloat = 0.0
    partial_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0
    partial_cooldown_s: NonNegFloat = 0.0
    backstop_below_mm_fraction: Fraction = 0.0


class BackstopRule(Strict):
    """Who takes over positions the book cannot absorb, and when ADL starts.

    ADL triggers: the backstop's loss beyond ``adl_loss_fraction`` x its cash, its net position above
    ``max_net_notional_ratio`` x its equity, and (OKX, ``adl_drawdown_fraction`` > 0) a "rapid drop":
    its equity at least that fraction below its peak of the last ``adl_drawdown_window_s`` seconds
    (OKX early-liquidation help page: -30 % within 8 h; API ``adl-warning`` channel: ``maxBal`` over
    the past eight hours, ``decRate``, ``adlRate``). While the drop lasts its whole inventory is
    deleveraged.
    """

    holder: Literal["insurance_fund", "liquidator_vault"]
    takeover_price: Literal["bankruptcy", "mark", "none"]   # none: the fund never takes positions (dYdX)
    max_net_notional_ratio: NonNegFloat = 0.0
    adl_loss_fraction: Annotated[float, Field(gt=0)] = 1.0
    adl_drawdown_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.0
    adl_drawdown_window_s: PositiveFloat = 28_800.0
    unwind_half_life_s: PositiveFloat = 60.0
    unwind_max_slippage_pct: Annotated[float, Field(gt=0, lt=100)] = 1.0


class AdlRule(Strict):
    """Auto-deleveraging: who is closed (``policy``, ``ranking``) and at what price.

    ``policy``: ``queue`` (the venue's: highest ``ranking`` score first until the quantity is covered),
    ``pro_rata`` (every eligible opposite position reduced by the same fraction), ``capped_pro_rata``
    (pro rata, but no position loses more than ``pro_rata_cap_fraction`` of its size while others have
    room), ``risk_aware_pro_rata`` (pro rata weighted by effective leverage, so the most levered give
    up most). The alternatives are the ADL designs compared in the literature on the 2025-10-10 event.

    ``price``: ``bankruptcy`` (of the liquidated order: the backstop's entry), ``previous_mark``
    (Hyperliquid) or ``mark`` (OKX), which switches to the bankruptcy price while the backstop's
    equity is below ``bankruptcy_below_fund_fraction`` of its starting balance (OKX: "nearly
    depleted" [U: threshold not published]). ``adl_maker_fee_rate`` (Bybit): maker fee charged to
    the deleveraged trader on the ADL fill notional, paid to the fee pool.
    ``random_walk`` (dYdX deleveraging, ranking ``none``): an unfilled negative-equity account's whole
    position is offset against opposite positions visited from a pseudo-random start (``DydxRule``).
    """

    ranking: Literal["pnl_pct_x_effective_leverage", "pnl_pct_x_margin_ratio", "hyperliquid", "none"]
    price: Literal["bankruptcy", "previous_mark", "mark"]
    policy: Literal["queue", "pro_rata", "capped_pro_rata", "risk_aware_pro_rata", "random_walk"] = "queue"
    pro_rata_cap_fraction: Annotated[float, Field(gt=0, le=1)] = 0.5
    bankruptcy_below_fund_fraction: Fraction = 0.0
    adl_maker_fee_rate: Annotated[float, Field(ge=0, lt=0.1)] = 0.0


class DriftMarket(Strict):
    """One Drift perp market's risk parameters (``state/perp_market.rs`` ``PerpMarket``), as fractions / USD."""

    margin_ratio_initial: Annotated[float, Field(gt=0, le=1)]
    margin_ratio_maintenance: Annotated[float, Field(gt=0, le=1)]
    imf_factor: NonNegFloat = 0.0                 # size premium per sqrt(base unit)
    liquidator_fee: Annotated[float, Field(ge=0, lt=1)]
    if_liquidation_fee: Annotated[float, Field(ge=0, lt=1)]
    quote_max_insurance_usd: NonNegFloat          # insurance_claim.quote_max_insurance (contract-tier cap)
    fee_pool_usd: NonNegFloat = 0.0               # amm.fee_pool balance at the start

    @model_validator(mode="after")
    def _ratios(self) -> DriftMarket:
        if self.margin_ratio_maintenance > self.margin_ratio_initial:
            raise ValueError("margin_ratio_maintenance must not exceed margin_ratio_initial")
        if self.liquidator_fee >= self.margin_ratio_maintenance:
            raise ValueError("liquidator_fee must be below margin_ratio_maintenance (Drift returns u64::MAX otherwise)")
        return self


class DriftLiquidationRule(Strict):
    """Drift protocol-v2 perp liquidation: a liquidator takes over base at oracle -/+ liquidator fee, the user
    pays an IF fee; amount cures the shortage incl. buffer, capped by a time ramp; bankrupt users are
    resolved by insurance fund -> fee pool -> socialized loss (``delever.venues.drift``).

    The engine uses these mechanics whenever this section is present (whatever the preset's name).
    """

    liquidation_margin_buffer_ratio: Fraction              # State.liquidation_margin_buffer_ratio (fraction of notional)
    initial_pct_to_liquidate: Fraction                     # State.initial_pct_to_liquidate
    liquidation_duration_slots: NonNegFloat                # State.liquidation_duration
    slot_time_s: PositiveFloat = 0.4                       # Solana slot time assumed by the ramp
    max_oracle_twap_5min_divergence: Annotated[float, Field(gt=0)] = 0.5   # PriceBandsBreached threshold
    oracle_twap_window_s: PositiveFloat = 300.0
    liquidator_capital_usd: NonNegFloat                    # liquidators' capital (initial margin on takeovers)
    markets: dict[str, DriftMarket]

    def market_for(self, instrument: str, venue: str) -> DriftMarket:
        """Market parameters of ``instrument`` (exact key, else without its quote suffix).

        Raises:
            DeleverInputError: no Drift market for the instrument.
        """
        for c in instrument_candidates(instrument):
            if c in self.markets:
                return self.markets[c]
        raise DeleverInputError(
            f"venue {venue}: no drift.markets entry for instrument {instrument!r} (known: {', '.join(sorted(self.markets))})"
        )


class TierTable(Strict):
    """Margin tiers of one instrument (or a group of coins). ``mmr`` defaults to 1/(2 max leverage) (Hyperliquid)."""

    floor_usd: list[NonNegFloat]
    max_leverage: list[PositiveFloat]
    mmr: list[PositiveFloat] | None = None
    coins: list[str] = Field(default_factory=list)
    as_of: str | None = None      # date the brackets were in force / published (provenance)
    source: str | None = None     # where the numbers come from (provenance)

    @model_validator(mode="after")
    def _lengths(self) -> TierTable:
        n = len(self.floor_usd)
        if n == 0 or len(self.max_leverage) != n or (self.mmr is not None and len(self.mmr) != n):
            raise ValueError("floor_usd, max_leverage (and mmr) must have the same non-zero length")
        return self

    def margin_tiers(self, where: str) -> MarginTiers:
        mmr = self.mmr if self.mmr is not None else [1.0 / (2.0 * lev) for lev in self.max_leverage]
        return MarginTiers.from_floors(self.floor_usd, self.max_leverage, mmr, where=where)


class TierFile(Strict):
    """Brackets of every other symbol, read from a data file at run time (not packaged: see its license).

    ``path`` is relative to the data directory (``--data-dir``, ``$DELEVER_DATA_DIR``); ``format``
    ``ccxt_leverage_tiers`` is ccxt ``LeverageTier`` JSON (``delever.venues.ccxt_tiers``). A preset's own
    ``tiers`` tables take precedence; the file serves instruments they do not name. ``as_of`` and
    ``source`` go into the run's provenance.
    """

    path: str
    format: Literal["ccxt_leverage_tiers"] = "ccxt_leverage_tiers"
    as_of: str
    source: str
    currencies: list[str] = Field(default_factory=lambda: ["USDT", "USDC"])   # notional currencies read as USD


Ppm = Annotated[int, Field(ge=0, le=1_000_000)]


class DydxLiquidityTier(Strict):
    """A dYdX liquidity tier (``x/perpetuals/types/liquidity_tier.go``): IMF, maintenance fraction, OI caps."""

    initial_margin_ppm: Annotated[int, Field(gt=0, le=1_000_000)]
    maintenance_fraction_ppm: Annotated[int, Field(gt=0, le=1_000_000)]
    open_interest_lower_cap_usd: NonNegFloat = 0.0
    open_interest_upper_cap_usd: NonNegFloat = 0.0   # 0 disables OI scaling of the IMF
    coins: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _caps(self) -> DydxLiquidityTier:
        if self.open_interest_lower_cap_usd > self.open_interest_upper_cap_usd > 0:
            raise ValueError("open_interest_lower_cap_usd must not exceed open_interest_upper_cap_usd")
        return self

    @property
    def imf(self) -> float:
        return self.initial_margin_ppm / 1e6

    @property
    def mmr(self) -> float:
        return self.initial_margin_ppm * self.maintenance_fraction_ppm / 1e12


class DydxRule(Strict):
    """dYdX v4 liquidation, deleveraging and final-settlement parameters (venue-mechanics.md §5).

    ``LiquidationsConfig`` (``x/clob/types``) and the CLOB flags (``x/clob/flags/flags.go``); ppm values
    are integers in [0, 1e6] except the two fillable-price ratios, which may exceed 1 (``>= 0``).
    One engine step is one block.
    """

    max_liquidation_fee_ppm: Ppm
    bankruptcy_adjustment_ppm: Annotated[int, Field(ge=0)]
    spread_to_maintenance_margin_ratio_ppm: Annotated[int, Field(ge=0)]
    min_position_notional_liquidated_usd: NonNegFloat
    max_position_portion_liquidated_ppm: Annotated[int, Field(gt=0, le=1_000_000)]
    subaccount_max_notional_liquidated_usd: PositiveFloat
    subaccount_max_insurance_lost_usd: NonNegFloat
    max_liquidation_attempts_per_block: Annotated[int, Field(ge=1)]
    max_deleveraging_attempts_per_block: Annotated[int, Field(ge=0)]
    max_deleveraging_subaccounts_to_iterate: Annotated[int, Field(ge=1)]
    final_settlement_at_end: bool = False
    liquidity_tiers: dict[str, DydxLiquidityTier]


class FundingSection(Strict):
    """Funding of the venue's perpetuals (``delever.venues.funding``, which cites each rule's source).

    The top-level values apply to every instrument; ``symbols`` overrides them per instrument (same
    lookup as the margin tiers: exact key, then the coin without its quote suffix), e.g. Binance's
    4-hour symbols and their adjusted caps. ``cap`` and ``floor`` are per interval, the clamp per
    ``rate_basis_s`` (default: the interval). [U] in a preset marks a value not verified.
    """

    class Override(Strict):
        """Per-instrument values; None keeps the section's."""

        interval_s: PositiveFloat | None = None
        cap: NonNegFloat | None = None
        floor: Annotated[float, Field(le=0, allow_inf_nan=False)] | None = None
        impact_notional_usd: NonNegFloat | None = None
        interest_rate_per_day: Annotated[float, Field(gt=-1, lt=1)] | None = None

    method: Literal["premium_clamp", "premium_plus_interest", "drift"]
    averaging: Literal["uniform", "linear", "drift_twap"]
    interval_s: PositiveFloat
    rate_basis_s: PositiveFloat | None = None
    interest_rate_per_day: Annotated[float, Field(gt=-1, lt=1)]
    premium_clamp: NonNegFloat = 0.0
    cap: NonNegFloat
    floor: Annotated[float, Field(le=0, allow_inf_nan=False)]
    sample_interval_s: PositiveFloat
    impact_notional_usd: NonNegFloat = 0.0
    payment_price: Literal["mark", "oracle"] = "mark"
    sources: list[str] = Field(default_factory=list)
    symbols: dict[str, Override] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _rules_valid(self) -> FundingSection:
        for key in [None, *self.symbols]:
            try:
                self._rule(key)
            except ValueError as exc:
                raise ValueError(f"funding{'' if key is None else '.symbols.' + key}: {exc}") from None
        return self

    def _rule(self, key: str | None) -> FundingRule:
        o = self.symbols[key] if key is not None else FundingSection.Override()

        def pick(name: str):
            v = getattr(o, name)
            return getattr(self, name) if v is None else v

        interval = pick("interval_s")
        return FundingRule(method=self.method, averaging=self.averaging, interval_s=interval,
                           rate_basis_s=self.rate_basis_s if self.rate_basis_s is not None else interval,
                           interest_rate_per_day=pick("interest_rate_per_day"), premium_clamp=self.premium_clamp,
                           cap=pick("cap"), floor=pick("floor"), sample_interval_s=self.sample_interval_s,
                           impact_notional_usd=pick("impact_notional_usd"), payment_price=self.payment_price,
                           source="; ".join(self.sources))

    def rule_for(self, instrument: str) -> FundingRule:
        """The funding rule of ``instrument``: the section's values with its ``symbols`` override, if any."""
        for c in instrument_candidates(instrument):
            if c in self.symbols:
                return self._rule(c)
        return self._rule(None)


class VenueRules(Strict):
    """A venue's rules. Every parameter is data from a preset; formulas live in ``venues.formulas`` and the engine."""

    name: str
    title: str
    settle: str
    sources: list[str]
    mark: MarkRule
    liquidation: LiquidationRule
    backstop: BackstopRule
    adl: AdlRule
    tiers: dict[str, TierTable] = Field(default_factory=dict)
    tier_file: TierFile | None = None
    drift: DriftLiquidationRule | None = None
    dydx: DydxRule | None = None
    funding: FundingSection | None = None

    @model_validator(mode="after")
    def _drift_tiers(self) -> VenueRules:
        # The tier table feeds the book synthesizer and the CLI; it must agree with the Drift market it stands for.
        if self.drift is not None:
            for key, m in self.drift.markets.items():
                t = self.tiers.get(key)
                if t is None or t.mmr is None or abs(t.mmr[0] - m.margin_ratio_maintenance) > 1e-12:
                    raise ValueError(f"drift.markets.{key}: needs tiers.{key} with mmr[0] = margin_ratio_maintenance")
        return self

    @model_validator(mode="after")
    def _dydx_consistent(self) -> VenueRules:
        dydx = self.dydx is not None
        if dydx != (self.adl.policy == "random_walk") or dydx != (self.backstop.takeover_price == "none"):
            raise ValueError("adl.policy 'random_walk' and backstop.takeover_price 'none' go with a [dydx] section "
                             "(and only with it)")
        if dydx:
            for key, lt in self.dydx.liquidity_tiers.items():
                # MM = notional x IMF x MF, one tier; max leverage from the base IMF.
                self.tiers.setdefault(key, TierTable(floor_usd=[0.0], max_leverage=[1.0 / lt.imf], mmr=[lt.mmr],
                                                     coins=lt.coins))
        if not self.tiers:
            raise ValueError("tiers: at least one margin tier table is required")
        return self

    def dydx_tier_for(self, instrument: str) -> DydxLiquidityTier:
        """The dYdX liquidity tier of ``instrument`` (same lookup as ``tiers_for``).

        Raises:
            DeleverInputError: not a dYdX venue, or no tier for the instrument.
        """
        if self.dydx is None:
            raise DeleverInputError(f"venue {self.name}: no [dydx] section")
        key = self._tier_key(instrument)
        if key not in self.dydx.liquidity_tiers:
            raise DeleverInputError(f"venue {self.name}: tiers.{key} is not a dydx.liquidity_tiers entry")
        return self.dydx.liquidity_tiers[key]

    def tiers_for(self, instrument: str) -> MarginTiers:
        """Margin tiers of ``instrument`` (exact key, else the coin with its quote suffix removed, else a coin group).

        Raises:
            DeleverInputError: the venue has no tiers for the instrument.
        """
        return self._tier_cache(instrument)

    @cached_property
    def _tier_lookup(self) -> dict[str, str]:
        table: dict[str, str] = {}
        for key, t in self.tiers.items():
            table[key] = key
            for coin in t.coins:
                table[coin] = key
        return table

    def _tier_cache(self, instrument: str) -> MarginTiers:
        key = self._tier_key(instrument)
        return self.tiers[key].margin_tiers(f"venue {self.name} tiers.{key}")

    def packaged_tier_key(self, instrument: str) -> str | None:
        """The ``tiers`` key that serves ``instrument`` (same lookup as ``tiers_for``), or None."""
        for c in instrument_candidates(instrument):
            if c in self._tier_lookup:
                return self._tier_lookup[c]
        return None

    def _tier_key(self, instrument: str) -> str:
        key = self.packaged_tier_key(instrument)
        if key is not None:
            return key
        more = (f"; other symbols' brackets come from tier_file {self.tier_file.path} in the data directory "
                "(delever.tier_source.resolve_tiers)" if self.tier_file is not None else "")
        raise DeleverInputError(
            f"venue {self.name}: no margin tiers for instrument {instrument!r} "
            f"(known: {', '.join(sorted(self._tier_lookup))}{more})"
        )


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def preset_raw(name: str) -> dict[str, Any]:
    """The preset TOML as a dict.

    Raises:
        DeleverInputError: unknown preset name.
    """
    if name not in PRESETS:
        raise DeleverInputError(f"venue.preset: unknown venue {name!r} (known: {', '.join(PRESETS)})")
    text = resources.files("delever.venues").joinpath("presets", f"{name}.toml").read_text()
    return tomllib.loads(text)


def load_venue(name: str, overrides: dict[str, Any] | None = None) -> VenueRules:
    """Load a preset and apply ``overrides`` (nested dict, deep-merged).

    Raises:
        DeleverInputError: unknown preset, unknown override key or bad value (named as ``venue.overrides.<key>``).
    """
    raw = _deep_merge(preset_raw(name), overrides or {})
    try:
        return VenueRules.model_validate(raw)
    except ValidationError as exc:
        raise DeleverInputError(format_validation(exc, f"venue {name} (venue.overrides)")) from None
