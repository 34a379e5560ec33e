"""Scenario: the typed, strict description of one run (pydantic models loaded from TOML).

Unknown keys are errors everywhere (``extra="forbid"``); every model is frozen. A scenario is
reproducible from its ``config_hash`` (SHA-256 of the canonical JSON of the resolved scenario,
venue rules included) and its ``seed``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from delever.config_types import Fraction, NonNegFloat, PositiveFloat, Strict, format_validation
from delever.engine.mitigation_rules import Mitigations
from delever.errors import DeleverInputError
from delever.venues.rules import PRESETS
from delever.venues.symbols import instrument_candidates


# --------------------------------------------------------------------------- venue
class VenueSection(Strict):
    """Venue preset name and overrides of its rules (nested keys of ``delever.venues.VenueRules``)."""

    preset: str = "binance-usdm"
    overrides: dict[str, Any] = Field(default_factory=dict)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str) -> str:
        if v not in PRESETS:
            raise ValueError(f"unknown venue {v!r} (known: {', '.join(PRESETS)})")
        return v


# --------------------------------------------------------------------------- market
class BookDepthSource(Strict):
    """Binance Vision ``bookDepth`` file (cumulative depth in +-1..5 % bands), snapshot at ``at``."""

    source: Literal["book_depth"] = "book_depth"
    path: str
    at: str = Field(description="UTC timestamp 'YYYY-MM-DD HH:MM:SS'; the latest snapshot at or before it is used")


class L2Source(Strict):
    """Raw L2 feed (hftbacktest capture: snapshot + diffs, or Hyperliquid l2Book), book rebuilt at ``at``."""

    source: Literal["l2"] = "l2"
    path: str
    at: str | None = Field(default=None, description="UTC timestamp; default: end of the capture")
    contract_size_usd: PositiveFloat | None = Field(
        default=None, description="COIN-M: quantities are contracts of this many USD (100 for BTCUSD_PERP)"
    )


class ParametricDepth(Strict):
    """Parametric depth: cumulative notional within x of mid ``= depth_usd_at_1pct * (x/1%)^(1/impact_exponent)``.

    ``impact_exponent`` 1 is linear impact, 0.5 the square-root law, anything else a power law.
    """

    source: Literal["parametric"] = "parametric"
    kind: Literal["linear", "sqrt", "power"] = "sqrt"
    depth_usd_at_1pct: PositiveFloat = 2.0e8
    impact_exponent: PositiveFloat | None = Field(default=None, description="only for kind='power'")

    @model_validator(mode="after")
    def _exponent(self) -> ParametricDepth:
        if (self.kind == "power") != (self.impact_exponent is not None):
            raise ValueError("impact_exponent is required for kind='power' and only allowed there")
        return self


class ImpactSection(Strict):
    """Price impact of forced orders: what stays (permanent) and how fast the rest decays (resilience)."""

    permanent_fraction: Fraction = 0.3
    resilience_half_life_s: PositiveFloat = 60.0
    max_walk_pct: Annotated[float, Field(gt=0, lt=100)] = 50.0


class MarketSection(Strict):
    """Instrument, start price, depth and impact.

    ``start_price_by_instrument``: start prices of a shock per instrument, used when ``start_price`` is not
    set (the embedded default lists real prices of several coins, so ``--set market.instrument=...`` starts
    the shock at that coin's price rather than at another coin's).
    """

    instrument: str = "BTCUSDT"
    start_price: PositiveFloat | None = Field(default=None, description="USD; default: the price driver's first price")
    start_price_by_instrument: dict[str, PositiveFloat] = Field(default_factory=dict)
    depth: Annotated[BookDepthSource | L2Source | ParametricDepth, Field(discriminator="source")] = ParametricDepth()
    impact: ImpactSection = ImpactSection()


# --------------------------------------------------------------------------- book
class LeverageMix(Strict):
    """Discrete leverage distribution: ``leverage[i]`` with weight ``weight[i]`` (normalized).

    ``basis = "notional"``: weights are shares of open interest held at each leverage (what a risk team
    estimates); ``"accounts"``: shares of accounts. Default: 35 % of open interest at 2-3x (basis and
    market-making books), 35 % at 5-10x, 17 % at 20-25x, 13 % at 50x and above.
    """

    leverage: list[PositiveFloat] = [2, 3, 5, 10, 20, 25, 50, 75, 100, 125]
    weight: list[NonNegFloat] = [0.20, 0.15, 0.15, 0.20, 0.12, 0.05, 0.08, 0.02, 0.02, 0.01]
    basis: Literal["notional", "accounts"] = "notional"

    @model_validator(mode="after")
    def _same_length(self) -> LeverageMix:
        if len(self.leverage) != len(self.weight) or not self.leverage or sum(self.weight) <= 0:
            raise ValueError("leverage and weight must be equal-length, non-empty, with a positive weight sum")
        return self


class EntryPrices(Strict):
    """Where entry prices come from: a kline price history (volume-weighted if it has volume) or a lognormal."""

    source: Literal["lognormal", "history"] = "lognormal"
    sigma: PositiveFloat = Field(default=0.03, description="lognormal: std of log(entry/start)")
    path: str | None = Field(default=None, description="history: Binance kline file(s), relative to the data dir")
    extra_paths: list[str] = Field(default_factory=list)
    before: str | None = Field(default=None, description="history: use bars opening before this UTC time")
    lookback_hours: PositiveFloat = 48.0
    equilibrium: Literal["start", "history"] = Field(default="start", description=(
        "history entries: 'history' also removes positions any bar between entry and start would have liquidated "
        "(no start-up spike in a replay); 'start' checks the start price only"))

    @model_validator(mode="after")
    def _path(self) -> EntryPrices:
        if self.source == "history" and not self.path:
            raise ValueError("entry prices from 'history' need 'path'")
        if self.equilibrium == "history" and self.source != "history":
            raise ValueError("equilibrium = 'history' needs source = 'history' (entry bars to check from)")
        return self


class AccountSizes(Strict):
    """Account collateral distribution (USD) before scaling to open interest."""

    kind: Literal["lognormal", "pareto"] = "lognormal"
    median_usd: PositiveFloat = 2_000.0
    sigma: PositiveFloat = 1.6
    pareto_alpha: PositiveFloat = 1.3


class Synthesis(Strict):
    """Parameters of the synthesized book (see ``delever.synthesize``)."""

    open_interest_usd: PositiveFloat = 8.0e9
    long_short_ratio: PositiveFloat = Field(default=1.0, description="long accounts / short accounts")
    positions: Annotated[int, Field(ge=2, le=50_000_000)] = 50_000
    cross_share: Fraction = 0.5
    leverage: LeverageMix = LeverageMix()
    entry: EntryPrices = EntryPrices()
    account_size: AccountSizes = AccountSizes()


class BookSection(Strict):
    source: Literal["synthesize", "file"] = "synthesize"
    path: str | None = Field(default=None, description="file: CSV, Parquet or ccxt positions JSON")
    synthesize: Synthesis = Synthesis()

    @model_validator(mode="after")
    def _path(self) -> BookSection:
        if self.source == "file" and not self.path:
            raise ValueError("book.source = 'file' needs book.path")
        return self


# --------------------------------------------------------------------------- price driver
class ShockDriver(Strict):
    """Exogenous shock: price moves by ``move_pct`` over ``duration_s``, then holds for ``hold_s``."""

    kind: Literal["shock"] = "shock"
    mode: Literal["stress"] = "stress"
    move_pct: Annotated[float, Field(gt=-99, lt=1000)] = -8.0
    duration_s: NonNegFloat = 60.0
    hold_s: NonNegFloat = 300.0
    shape: Literal["linear", "step"] = "linear"


class HistoricalDriver(Strict):
    """Historical klines as the exogenous price (``stress``: impact added) or observed mark (``replay``)."""

    kind: Literal["historical"] = "historical"
    mode: Literal["stress", "replay"] = "stress"
    path: str
    start: str | None = None
    end: str | None = None
    intrabar: Literal["close", "ohlc"] = Field(
        default="ohlc",
        description="ohlc: each bar becomes 4 sub-steps at quarter intervals: the extreme nearer the open, the other "
        "extreme, the close, the close at the bar's end",
    )


# --------------------------------------------------------------------------- Monte Carlo price paths
class GbmPaths(Strict):
    """Geometric Brownian motion, log returns N((mu - sigma^2/2) dt, sigma^2 dt) with dt in years."""

    kind: Literal["gbm"] = "gbm"
    sigma_annual: PositiveFloat = 0.6
    drift_annual: float = 0.0


class MertonPaths(Strict):
    """Merton jump-diffusion: GBM plus Poisson jumps with normally distributed log sizes."""

    kind: Literal["merton"] = "merton"
    sigma_annual: PositiveFloat = 0.6
    drift_annual: float = 0.0
    jumps_per_day: NonNegFloat = 2.0
    jump_mean: float = Field(default=-0.02, description="mean log jump size")
    jump_std: NonNegFloat = 0.03


class StudentTPaths(Strict):
    """I.i.d. Student-t log returns scaled to the given annual volatility (fat-tailed shocks)."""

    kind: Literal["student_t"] = "student_t"
    sigma_annual: PositiveFloat = 0.6
    dof: Annotated[float, Field(gt=2)] = 3.0


class GarchPaths(Strict):
    """GARCH-family model fitted (``arch``) to real kline returns, simulated forward per path."""

    kind: Literal["garch"] = "garch"
    path: str = "binance-um-btcusdt-1m-crash-windows/BTCUSDT-1m-2025-10-10-window.csv"
    extra_paths: list[str] = Field(default_factory=list)
    model: Literal["GARCH", "GJR-GARCH", "EGARCH"] = "GJR-GARCH"
    dist: Literal["normal", "t", "skewt"] = "t"


class FilteredHistoricalPaths(Strict):
    """Filtered historical simulation: a GARCH filter fitted to real returns, standardized residuals bootstrapped."""

    kind: Literal["fhs"] = "fhs"
    path: str = "binance-um-btcusdt-1m-crash-windows/BTCUSDT-1m-2025-10-10-window.csv"
    extra_paths: list[str] = Field(default_factory=list)
    model: Literal["GARCH", "GJR-GARCH", "EGARCH"] = "GJR-GARCH"


class CrashShapePaths(Strict):
    """A historical crash's shape (cumulative log return from the window start), rescaled so its trough is
    ``depth_pct``; each path draws a depth around it and optional noise."""

    kind: Literal["crash_shape"] = "crash_shape"
    path: str = "binance-um-btcusdt-1m-crash-windows/BTCUSDT-1m-2025-10-10-window.csv"
    start: str | None = None
    end: str | None = None
    depth_pct: Annotated[float, Field(gt=0, lt=99)] = 15.0
    depth_dispersion: NonNegFloat = Field(default=0.25, description="lognormal sigma of each path's depth")
    noise_sigma_annual: NonNegFloat = 0.0


class CorrelatedPaths(Strict):
    """Several instruments (``[[instruments]]`` scenarios): correlated log returns, Gaussian copula or t copula.

    ``dependence = "fitted"``: per-instrument volatilities, the shrunk correlation (``shrinkage``: Ledoit-Wolf or
    OAS, scikit-learn) and, for the t copula, its degrees of freedom are estimated from the 1-minute close-to-close
    log returns of the instruments' own kline files (``instruments[].path``) over ``[fit_start, fit_end)``
    (``delever.pathgen_multi.fit_dependence``). ``"given"``: ``sigma_annual`` (one per instrument) and
    ``correlation`` (I x I) are taken as written. ``dof`` overrides the t copula's fitted degrees of freedom.
    """

    kind: Literal["correlated"] = "correlated"
    copula: Literal["gaussian", "t_copula"] = "gaussian"
    dependence: Literal["fitted", "given"] = "fitted"
    shrinkage: Literal["ledoit_wolf", "oas"] = "ledoit_wolf"
    fit_start: str | None = Field(default=None, description="UTC 'YYYY-MM-DD HH:MM'; default: the files' start")
    fit_end: str | None = Field(default=None, description="UTC, exclusive; default: the files' end")
    sigma_annual: list[NonNegFloat] | None = Field(default=None, description="given: one per instrument")
    correlation: list[list[float]] | None = Field(default=None, description="given: I x I, unit diagonal")
    dof: Annotated[float, Field(gt=2)] | None = Field(default=None, description="t copula degrees of freedom")
    marginal_dof: Annotated[float, Field(gt=2)] | None = Field(default=None, description=(
        "t copula only: Student-t margins with these degrees of freedom (default Gaussian margins)"))
    drift_annual: list[float] | None = Field(default=None, description="one per instrument; default 0")

    @model_validator(mode="after")
    def _dependence(self) -> CorrelatedPaths:
        given = self.sigma_annual is not None or self.correlation is not None
        if self.dependence == "given" and (self.sigma_annual is None or self.correlation is None):
            raise ValueError("dependence = 'given' needs sigma_annual and correlation")
        if self.dependence == "fitted" and given:
            raise ValueError("sigma_annual and correlation are only read with dependence = 'given'")
        if self.dependence == "given" and (self.fit_start is not None or self.fit_end is not None):
            raise ValueError("fit_start/fit_end are only read with dependence = 'fitted'")
        if self.copula == "gaussian" and (self.dof is not None or self.marginal_dof is not None):
            raise ValueError("dof and marginal_dof are only read with copula = 't_copula'")
        if self.copula == "t_copula" and self.dependence == "given" and self.dof is None:
            raise ValueError("copula = 't_copula' with dependence = 'given' needs dof")
        return self


class CommonFactorCrashPaths(Strict):
    """Several instruments: one instrument's real crash shape drives all of them, ``beta_i`` x factor + noise.

    The factor's shape is ``ln(close / open_0)`` of its own kline file (``instruments[].path`` of ``factor``,
    default the first instrument) over ``[start, end)``, rescaled so its trough is ``depth_pct`` % (the observed
    depth when not set), with a lognormal(0, ``depth_dispersion``) depth factor per path. Betas and idiosyncratic
    volatilities are OLS estimates on the 1-minute log returns of every instrument's file over the same window
    (``delever.pathgen_multi.estimate_betas``).
    """

    kind: Literal["common_factor_crash"] = "common_factor_crash"
    factor: str | None = Field(default=None, description="symbol of the factor instrument; default the first")
    start: str | None = None
    end: str | None = None
    depth_pct: Annotated[float, Field(gt=0, lt=99)] | None = Field(default=None, description=(
        "factor trough (percent); default the observed one"))
    depth_dispersion: NonNegFloat = Field(default=0.25, description="lognormal sigma of each path's depth")


SINGLE_GENERATOR_KINDS = ("gbm", "merton", "student_t", "garch", "fhs", "crash_shape")
MULTI_GENERATOR_KINDS = ("correlated", "common_factor_crash")

PathGenerator = Annotated[
    GbmPaths | MertonPaths | StudentTPaths | GarchPaths | FilteredHistoricalPaths | CrashShapePaths
    | CorrelatedPaths | CommonFactorCrashPaths,
    Field(discriminator="kind"),
]


class CriticalShockSection(Strict):
    """Bisection for the smallest exogenous drop that depletes the insurance fund."""

    enabled: bool = True
    tolerance_pct: Annotated[float, Field(gt=0, le=10)] = 0.25
    max_drop_pct: Annotated[float, Field(gt=0, lt=99)] = 60.0
    duration_s: NonNegFloat = 60.0


class StressSection(Strict):
    """Monte Carlo stress: N generated price paths over a horizon, the same book and venue on each."""

    paths: Annotated[int, Field(ge=1, le=10_000_000)] = 1000
    horizon_s: PositiveFloat = 3600.0
    dt_s: PositiveFloat = 60.0
    generator: PathGenerator = GbmPaths()
    block_size: Annotated[int, Field(ge=1)] = 64
    critical_shock: CriticalShockSection = CriticalShockSection()


class EngineSection(Strict):
    dt_s: PositiveFloat = Field(default=1.0, description="time step of generated drivers (s)")
    funding: bool = Field(default=True, description=(
        "account engine: pay funding by the venue's [funding] rules (premium from each instrument's book)"))
    max_rounds: Annotated[int, Field(ge=1, le=10_000)] = 50


class InsuranceFundSection(Strict):
    initial_usd: NonNegFloat = 5.0e8


# --------------------------------------------------------------------------- several instruments (account engine)
class InstrumentSection(Strict):
    """One instrument of a multi-instrument run (``[[instruments]]``): its price source, depth and open interest.

    ``path`` is the instrument's kline file (relative to the data dir) for a historical ``multi_driver``;
    ``move_pct`` its own move under a ``shock`` driver (default: the driver's ``move_pct``).
    ``open_interest_usd`` and ``long_short_ratio`` are the synthesizer's per-instrument targets.
    """

    symbol: str
    path: str | None = None
    start_price: PositiveFloat | None = Field(default=None, description="shock driver: start price (USD)")
    move_pct: Annotated[float, Field(gt=-99, lt=1000)] | None = None
    open_interest_usd: PositiveFloat = 1.0e9
    long_short_ratio: PositiveFloat = 1.0
    depth: Annotated[BookDepthSource | L2Source | ParametricDepth, Field(discriminator="source")] = ParametricDepth()
    basis_pct: Annotated[float, Field(gt=-50, lt=50)] = Field(default=0.0, description=(
        "perp premium over the index held for the run (percent), read by the funding clock"))


class MultiDriver(Strict):
    """Price driver of a multi-instrument run: every instrument's real path (``historical``) or a shock.

    ``historical``: one kline file per instrument (``instruments[].path``) on one time grid; ``empty_bars``
    says what a minute without trades in a bars-from-trades file becomes: ``refuse`` (default) or
    ``last_trade`` (the bar keeps the previous close, the last traded price; listed in the run's notes).
    ``shock``: each instrument moves linearly by its ``move_pct`` over ``duration_s`` and holds for ``hold_s``.
    """

    kind: Literal["historical", "shock"] = "shock"
    mode: Literal["stress", "replay"] = "stress"
    start: str | None = None
    end: str | None = None
    intrabar: Literal["close", "ohlc"] = "close"
    empty_bars: Literal["refuse", "last_trade"] = "refuse"
    move_pct: Annotated[float, Field(gt=-99, lt=1000)] = -8.0
    duration_s: NonNegFloat = 60.0
    hold_s: NonNegFloat = 300.0
    dt_s: PositiveFloat = 1.0


class AccountsSection(Strict):
    """Synthesized multi-instrument book (``[accounts]``; ``delever.synthesize_multi``, docs/synthesizer.md).

    ``instruments_per_account_share[k-1]`` is the share of accounts holding ``k`` instruments (normalized);
    ``side_correlation`` the phi coefficient of the sides of two positions of one account; ``cross_share`` the
    share of accounts in cross margin (the rest isolated, one margin group per position); an account's collateral is
    split over its positions by a symmetric Dirichlet(``margin_split_concentration``). Entries: ``history`` draws
    each position's entry bar (by volume) from its instrument's bars in the ``history_minutes`` before the run's
    start (a historical ``multi_driver`` whose files reach back that far), ``lognormal`` around the start price.
    ``equilibrium``: ``history`` replaces positions the bars from entry to start would already have liquidated
    (no start-up spike), ``start`` only those liquidatable at the start, ``none`` keeps every draw.
    Per-instrument open interest and long/short ratio are in ``[[instruments]]``.
    """

    accounts: Annotated[int, Field(ge=1, le=20_000_000)] = 50_000
    instruments_per_account_share: list[NonNegFloat] = [0.60, 0.20, 0.10, 0.05, 0.02, 0.01, 0.01, 0.005, 0.005]
    side_correlation: Fraction = 0.5
    cross_share: Fraction = 0.5
    margin_split_concentration: PositiveFloat = 1.0
    leverage: LeverageMix = LeverageMix()
    account_size: AccountSizes = AccountSizes()
    entry_source: Literal["history", "lognormal"] = "lognormal"
    history_minutes: Annotated[int, Field(ge=1, le=1_000_000)] = 30
    entry_sigma: PositiveFloat = Field(default=0.03, description="lognormal std of log(entry / start)")
    equilibrium: Literal["history", "start", "none"] = "start"

    @model_validator(mode="after")
    def _shares(self) -> AccountsSection:
        if not self.instruments_per_account_share or sum(self.instruments_per_account_share) <= 0:
            raise ValueError("instruments_per_account_share must be non-empty with a positive sum")
        if self.equilibrium == "history" and self.entry_source != "history":
            raise ValueError("equilibrium = 'history' needs entry_source = 'history' (entry bars to check from)")
        return self


class Scenario(Strict):
    """One run: venue, market, book, price driver, engine settings, insurance fund, seed."""

    name: str = "default"
    description: str = ""
    seed: Annotated[int, Field(ge=0)] = 0
    venue: VenueSection = VenueSection()
    market: MarketSection = MarketSection()
    book: BookSection = BookSection()
    price_driver: Annotated[ShockDriver | HistoricalDriver, Field(discriminator="kind")] = ShockDriver()
    engine: EngineSection = EngineSection()
    insurance_fund: InsuranceFundSection = InsuranceFundSection()
    stress: StressSection = StressSection()
    mitigations: Mitigations = Mitigations()
    instruments: list[InstrumentSection] = Field(default_factory=list, description=(
        "several instruments: the account engine runs them with cross-margined accounts (replaces market, "
        "book.synthesize and price_driver)"))
    multi_driver: MultiDriver = MultiDriver()
    accounts: AccountsSection = AccountsSection()

    @model_validator(mode="after")
    def _multi(self) -> Scenario:
        syms = [i.symbol for i in self.instruments]
        if len(set(syms)) != len(syms):
            raise ValueError(f"instruments: a symbol is listed twice ({syms})")
        if self.instruments and self.multi_driver.kind == "historical":
            missing = [i.symbol for i in self.instruments if i.path is None]
            if missing:
                raise ValueError(f"instruments: {', '.join(missing)} need a path for the historical multi_driver")
        return self

    @property
    def is_multi(self) -> bool:
        """True when the run has an ``[[instruments]]`` list (the account engine)."""
        return bool(self.instruments)

    def require_one_instrument(self, command: str) -> None:
        """Refuse a scenario with ``[[instruments]]`` in a command that runs one instrument (one line, no guess).

        Raises:
            DeleverInputError: the scenario lists instruments.
        """
        if self.instruments:
            raise DeleverInputError(f"instruments: {command} runs one instrument (the market section); this scenario "
                                    f"lists {len(self.instruments)} instruments (run, stress, compare and frontier "
                                    "take them)")

    @model_validator(mode="before")
    @classmethod
    def _shock_start_price(cls, raw: Any) -> Any:
        # A shock without market.start_price starts at the instrument's entry of start_price_by_instrument.
        if not isinstance(raw, dict) or not isinstance(raw.get("market"), dict):
            return raw
        market, driver = raw["market"], raw.get("price_driver")
        table = market.get("start_price_by_instrument")
        shock = not isinstance(driver, dict) or driver.get("kind", "shock") == "shock"
        if not table or not shock or market.get("start_price") is not None or not isinstance(table, dict):
            return raw
        instrument = market.get("instrument", MarketSection.model_fields["instrument"].default)
        if not isinstance(instrument, str):
            return raw
        # exact symbol first, then by coin (BTC, BTC-PERP and BTCUSDC take BTCUSDT's price)
        coin = {c: k for k in table for c in instrument_candidates(k)[::-1]}
        key = next((coin[c] for c in instrument_candidates(instrument) if c in coin), None)
        if key is None:  # no entry: a shock without market.start_price is refused when the path is built
            return raw
        return {**raw, "market": {**market, "start_price": table[key]}}


# --------------------------------------------------------------------------- loading
DEFAULT_SCENARIO = Path(__file__).with_name("scenarios") / "default.toml"


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse ``key.path=value``; the value is read as a TOML value, else as a plain string.

    Raises:
        DeleverInputError: no ``=`` or an empty key.
    """
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise DeleverInputError(f"--set {item!r}: expected key.path=value")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return [k.strip() for k in key.split(".")], value


def set_key(raw: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``raw[path[0]]...[path[-1]] = value`` in place, creating (or replacing non-table) intermediate tables.

    The one merge rule of ``--set`` and of policy sets: only the named leaf changes, so a key under
    ``venue.overrides`` joins the scenario's other overrides instead of replacing them.
    """
    node = raw
    for k in path[:-1]:
        nxt = node.get(k)
        if not isinstance(nxt, dict):
            nxt = node[k] = {}
        node = nxt
    node[path[-1]] = value


def table_leaves(table: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[list[str], Any]]:
    """The leaves of a nested table as ``(key path, value)`` pairs (a non-table value, e.g. a list, is a leaf)."""
    out: list[tuple[list[str], Any]] = []
    for k, v in table.items():
        if isinstance(v, dict):  # an empty table sets nothing
            out.extend(table_leaves(v, (*prefix, k)))
        else:
            out.append(([*prefix, k], v))
    return out


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``key.path=value`` set (intermediate tables created).

    A key under ``venue.overrides`` is kept nested there; validation of the path happens later.
    """
    out = json.loads(json.dumps(raw))
    for item in overrides:
        set_key(out, *parse_override(item))
    return out


def merge_table(raw: dict[str, Any], table: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``raw`` with every leaf of the nested ``table`` set as ``--set`` would set it."""
    out = json.loads(json.dumps(raw))
    for path, value in table_leaves(table):
        set_key(out, path, value)
    return out


def read_scenario_raw(path: str | Path | None = None) -> tuple[dict[str, Any], Path]:
    """The scenario TOML as a dict (the embedded default when ``path`` is None) and its path.

    Raises:
        DeleverInputError: missing file or TOML syntax error (naming the file, line and column).
    """
    src = Path(path) if path is not None else DEFAULT_SCENARIO
    try:
        return tomllib.loads(src.read_text()), src
    except FileNotFoundError:
        raise DeleverInputError(f"{src}: scenario file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise DeleverInputError(f"{src}: not valid TOML: {exc}") from None


def validate_scenario(raw: dict[str, Any], where: str) -> Scenario:
    """Validate a raw scenario dict.

    Raises:
        DeleverInputError: unknown key or bad value, as ``<where>: field '<dotted.key>': <problem>``.
    """
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        raise DeleverInputError(format_validation(exc, where)) from None


def load_scenario(path: str | Path | None = None, overrides: list[str] | None = None) -> Scenario:
    """Load and validate a scenario TOML (the embedded default when ``path`` is None).

    Raises:
        DeleverInputError: missing file, TOML syntax error, unknown key or bad value (the message
            names the file and the dotted field).
    """
    raw, src = read_scenario_raw(path)
    return validate_scenario(apply_overrides(raw, overrides or []), str(src))


def find_price_file(path: str | Path, data_dir: Path, option: str) -> Path:
    """A price file named on the command line: absolute, relative to the working directory, or to ``data_dir``.

    Args:
        path: The file as given.
        data_dir: Data directory.
        option: The option that named it (for the message), e.g. ``"--klines"``.

    Returns:
        The resolved path when it exists as given (absolute or relative to the working directory), else
        ``path`` unchanged (relative to ``data_dir``, which :func:`resolve_path` resolves).

    Raises:
        DeleverInputError: the file does not exist.
    """
    p = Path(path)
    if p.is_file():
        return p.resolve()
    if p.is_absolute() or not (data_dir / p).is_file():
        raise DeleverInputError(f"{option}: price file not found: {path} (absolute, relative to the working "
                                f"directory, or to the data dir {data_dir})")
    return p


def with_klines_driver(scenario: Scenario, klines: str | Path, data_dir: Path, mode: str) -> Scenario:
    """``scenario`` driven by the kline file ``klines`` (intrabar ``ohlc``, at the file's own price level).

    ``klines`` is absolute, relative to the working directory, or relative to ``data_dir``; ``mode`` is the
    driver mode (``"stress"`` or ``"replay"``). Used by the ``--klines`` option of heatmap and replay.

    Raises:
        DeleverInputError: the file does not exist.
    """
    p = find_price_file(klines, data_dir, "--klines")
    dump = scenario.model_dump(mode="json")
    dump["price_driver"] = {"kind": "historical", "mode": mode, "path": str(p), "intrabar": "ohlc"}
    dump["market"]["start_price"] = None
    return Scenario.model_validate(dump)


def config_hash(scenario: Scenario, venue_rules: BaseModel | None = None) -> str:
    """SHA-256 (hex, first 16 chars) of the canonical JSON of the scenario and its resolved venue rules."""
    payload = {"scenario": scenario.model_dump(mode="json")}
    if venue_rules is not None:
        payload["venue_rules"] = venue_rules.model_dump(mode="json")
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _project_root() -> Path | None:
    for base in (Path.cwd(), *Path.cwd().parents):
        pp = base / "pyproject.toml"
        if pp.is_file() and 'name = "delever"' in pp.read_text(errors="ignore"):
            return base
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").is_file() else None


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """Data directory: ``data_dir``, else ``$DELEVER_DATA_DIR``, else ``../shared/data`` beside the project root."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("DELEVER_DATA_DIR")
    if env:
        return Path(env)
    root = _project_root()
    return (root if root is not None else Path.cwd()) / ".." / "shared" / "data"


def resolve_path(rel: str, data_dir: Path, field: str) -> Path:
    """Resolve a data path from a scenario (absolute, or relative to the data dir).

    Raises:
        DeleverInputError: the file does not exist.
    """
    p = Path(rel)
    if not p.is_absolute():
        p = data_dir / p
    if not p.is_file():
        raise DeleverInputError(f"{field}: data file not found: {p} (set --data-dir or DELEVER_DATA_DIR)")
    return p
