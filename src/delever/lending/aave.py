"""Aave lending cascade: loan book, health factor, liquidation calls, liquidators, AMM sales, ledger.

Formulas and constants (venue-mechanics.md §7), each with its contract source:

* Health factor (``GenericLogic.calculateUserAccountData`` + ``calculateHealthFactorFromBalances``,
  aave/protocol-v2 ``contracts/protocol/libraries/logic/GenericLogic.sol``; same shape in
  aave-v3-core / aave-v3-origin): ``HF = sum_i(collateral_i * price_i * LT_i) / sum_j(debt_j * price_j)``
  over the reserves the user uses as collateral (LT > 0); liquidatable when ``HF < 1``.
  The contract first forms the value-weighted average LT with an integer division (bps) and rounds
  half up (``percentMul``, ``wadDiv``); :func:`health_factor_exact` reproduces that integer path,
  :func:`health_factor` is the float formula (they differ by < 1e-4 relative).
* Close factor. v2 (``contracts/protocol/lendingpool/LendingPoolCollateralManager.sol``,
  ``LIQUIDATION_CLOSE_FACTOR_PERCENT = 5000``): at most 50 % of the user's debt *in the chosen debt
  reserve*. v3.0-3.2 (aave-v3-core ``contracts/protocol/libraries/logic/LiquidationLogic.sol``):
  50 % (``DEFAULT_LIQUIDATION_CLOSE_FACTOR``), 100 % (``MAX_LIQUIDATION_CLOSE_FACTOR``) if
  ``HF <= 0.95`` (``CLOSE_FACTOR_HF_THRESHOLD``). v3.3+ (aave-dao/aave-v3-origin
  ``src/contracts/protocol/libraries/logic/LiquidationLogic.sol``): 100 % by default; capped at
  50 % of the user's *total* debt value only when the chosen reserve's collateral and debt are each
  >= 2,000 USD (``MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD = 2000e8``) and ``HF > 0.95``; a partial
  liquidation must leave >= 1,000 USD (``MIN_LEFTOVER_BASE``) of both the reserve debt and the
  collateral (balance minus the liquidator's part, as the contract computes it) unless it clears one
  of them, else it reverts (``MUST_NOT_LEAVE_DUST``).
* Collateral seized (``_calculateAvailableCollateralToLiquidate``, all versions):
  ``collateral = debtCovered * P_debt / P_coll * LB``; if that exceeds the user's balance, the
  whole balance is taken and ``debtCovered = balance * P_coll / P_debt / LB``.
* Protocol fee (v3 only; v2 has none): ``fee = LPF * (collateral - collateral / LB)`` goes to the
  treasury, the liquidator receives ``collateral - fee``.
* Deficit (v3.3+, ``_burnBadDebt``): when a liquidation takes the user's last collateral, all of the
  user's remaining debt is burnt and booked as reserve deficit. v2 and v3.0-3.2 keep such debt on
  the books: it is reported as bad debt (``shortfall_usd``: debt not covered by collateral at oracle
  prices), not written off.
* AMM (Uniswap v2 ``UniswapV2Library.getAmountOut``, Uniswap/v2-periphery
  ``contracts/libraries/UniswapV2Library.sol``): ``out = y * a * 997 / (x * 1000 + a * 997)``, i.e.
  ``y * a (1 - fee) / (x + a (1 - fee))`` with fee 0.3 %; ``(x + a(1-fee)) (y - out) = x y``.

Model (assumptions, each a named parameter of :class:`LiquidatorParams` or the call):

* One competitive liquidator population (one ledger party). It liquidates an account only if
  ``proceeds - debt repaid - gas > min_profit_usd``, where proceeds are what selling the received
  collateral into the collateral's AMM pool pays (stablecoin collateral: kept at par, no sale) and
  gas is ``gas_units * gas price * ETH/USD``. It chooses the debt reserve with the largest debt, the
  collateral reserve with the highest profit, and the amount that maximises profit: up to the close
  factor, but no further than the point where the pool's marginal price after its own sale falls to
  ``P_coll / (LB * phi)`` (``phi`` = liquidator's share of the seized collateral after the fee).
  Stablecoins repaid and received are worth 1 USD each.
* Accounts are visited in order of their upper-bound profit (best first); sales are sequential, each
  moving the pool price; rounds repeat within a step until a round executes nothing (or
  ``max_rounds``, reported). Within a round the oracle is fixed.
* At the start of each step (and of the first ``pool_refills_per_step`` rounds) arbitrageurs (party
  ``MARKET``) move each pool back to the step's market price with the step's liquidity
  ``L = sqrt(x * y)`` (``x = L / sqrt(P)``, ``y = L * sqrt(P)``). With one refill per step the
  liquidators' sales of a step are capped by one pool state: they stop where the pool's marginal
  price reaches ``P_coll / (LB phi (1 - fee))`` (4.5 % below the oracle for LB 1.05).
* ``oracle_feedback`` (default 0 = off): fraction of the pool's relative price impact passed to the
  oracle price of that collateral. On-chain oracles (Chainlink) aggregate off-chain venue prices and
  did not follow the price of one DEX pool, so the default is off; 1.0 makes the oracle follow the
  pool (a stress assumption). With feedback on, the next round sees the new HFs (cascade).
* Borrowers do not react (no top-ups or repayments); interest does not accrue within the run.

Money: every transfer is recorded per asset in token units (``LendingLedger``, one
:class:`~delever.ledger.AssetLedger` whose assets are the tokens; gas in native ``ETH``). Parties: borrowers use
their index ``>= 0``; :data:`AAVE_POOL` (holds the claims on borrowers = debt tokens, and the repaid
cash), :data:`TREASURY`, :data:`AMM_POOL`, :data:`LIQUIDATOR`, :data:`BLOCK_PRODUCER` (gas),
``MARKET`` (arbitrageurs) and ``BAD_DEBT`` (reserve deficit). A borrower's holding of an asset is
``collateral - debt``; :meth:`CascadeResult.check_conservation` reconciles every party's state change
with its ledger net flow and checks ``debt_0 = debt_end + repaid + deficit`` per reserve.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from delever.data.aave import AAVE_V2_MAIN_POOL, AaveV2Reserves, AaveV3Reserves
from delever.engine.ledger import BAD_DEBT, MARKET
from delever.errors import DeleverInputError
from delever.ledger import AssetLedger

__all__ = [
    "AAVE_POOL",
    "AMM_POOL",
    "BLOCK_PRODUCER",
    "LIQUIDATOR",
    "TREASURY",
    "VERSIONS",
    "AmmPools",
    "BookParams",
    "CascadeResult",
    "LendingLedger",
    "LiquidatorParams",
    "LoanBook",
    "Plan",
    "ReserveSet",
    "health_factor",
    "health_factor_exact",
    "liquidation_call_exact",
    "plan_liquidation",
    "simulate_cascade",
    "synthesize_loan_book",
    "uniswap_v2_amount_out",
]

VERSIONS = ("v2", "v3.0", "v3.3")

# --- contract constants (sources in the module docstring)
V2_CLOSE_FACTOR = 0.5                  # LIQUIDATION_CLOSE_FACTOR_PERCENT = 5000 (bps)
V3_DEFAULT_CLOSE_FACTOR = 0.5          # DEFAULT_LIQUIDATION_CLOSE_FACTOR = 0.5e4
V3_CLOSE_FACTOR_HF_THRESHOLD = 0.95    # CLOSE_FACTOR_HF_THRESHOLD = 0.95e18
V33_MIN_BASE_MAX_CLOSE_FACTOR_USD = 2000.0  # MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD = 2000e8 (USD, 8 dec)
V33_MIN_LEFTOVER_USD = 1000.0          # MIN_LEFTOVER_BASE = MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD / 2
UNISWAP_V2_FEE = 0.003                 # getAmountOut: amountIn * 997 / 1000

# --- ledger parties (borrowers are >= 0; MARKET = -1 and BAD_DEBT = -4 come from engine.ledger)
AAVE_POOL = -10
TREASURY = -11
AMM_POOL = -12
LIQUIDATOR = -13
BLOCK_PRODUCER = -14
PARTY_NAMES = {
    AAVE_POOL: "aave_pool",
    TREASURY: "treasury",
    AMM_POOL: "amm_pool",
    LIQUIDATOR: "liquidator",
    BLOCK_PRODUCER: "block_producer",
    MARKET: "arbitrageurs",
    BAD_DEBT: "deficit",
}
GAS_ASSET = "ETH"
_REL_EPS = 1e-12  # relative residue below which a balance counts as fully taken


def party_name(party: int) -> str:
    """``borrower:<index>`` or the special party's name."""
    return PARTY_NAMES.get(int(party), f"borrower:{int(party)}")


# =========================================================================== reserves
@dataclass(frozen=True)
class ReserveSet:
    """Risk parameters of R reserves (struct of arrays).

    Attributes:
        symbol: str (R,), reserve symbol (``WETH``, ``WBTC``, ``USDC`` ...).
        decimals: int64 (R,), token decimals (used by the exact integer reference only).
        liquidation_threshold: float64 (R,), LT as a fraction (0.825); 0 = not usable as collateral.
        liquidation_bonus: float64 (R,), LB as a multiplier (1.05 = +5 %); > 1 where LT > 0.
        protocol_fee: float64 (R,), v3 liquidation protocol fee LPF, fraction of the bonus part
            (0.1); ignored by version ``v2`` (v2 has no such fee).
        is_stable: bool (R,), a USD stablecoin (priced by the caller, 1 USD in the validation).
        source: where the parameters come from.

    Raises:
        DeleverInputError: shapes differ; LT outside [0, 1]; LB <= 1 for a collateral reserve;
            ``LT * LB > 1`` (rejected by Aave's configurator: ``liquidationThreshold.percentMul(
            liquidationBonus) <= PERCENTAGE_FACTOR``); LPF outside [0, 1]; a repeated symbol.
    """

    symbol: np.ndarray
    decimals: np.ndarray
    liquidation_threshold: np.ndarray
    liquidation_bonus: np.ndarray
    protocol_fee: np.ndarray
    is_stable: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        sym = np.asarray(self.symbol, dtype=np.str_)
        object.__setattr__(self, "symbol", sym)
        r = sym.shape[0]
        for name, dt in (
            ("decimals", np.int64),
            ("liquidation_threshold", np.float64),
            ("liquidation_bonus", np.float64),
            ("protocol_fee", np.float64),
            ("is_stable", bool),
        ):
            v = np.asarray(getattr(self, name), dtype=dt)
            if v.shape != (r,):
                raise DeleverInputError(f"reserves: field '{name}' has shape {v.shape}, expected ({r},)")
            object.__setattr__(self, name, v)
        if len(set(sym.tolist())) != r:
            raise DeleverInputError(f"reserves: field 'symbol' repeats a reserve: {sym.tolist()}")
        lt, lb, fee = self.liquidation_threshold, self.liquidation_bonus, self.protocol_fee
        for k in range(r):
            s = sym[k]
            if not 0.0 <= lt[k] <= 1.0:
                raise DeleverInputError(f"reserves: {s}: field 'liquidation_threshold' = {lt[k]}, expected 0..1")
            if lt[k] > 0 and not lb[k] > 1.0:
                raise DeleverInputError(
                    f"reserves: {s}: field 'liquidation_bonus' = {lb[k]}, expected > 1 for a collateral reserve"
                )
            if lt[k] * lb[k] > 1.0 + 1e-12:
                raise DeleverInputError(
                    f"reserves: {s}: liquidation_threshold x liquidation_bonus = {lt[k] * lb[k]:.4f}, "
                    "expected <= 1 (Aave configurator rule)"
                )
            if not 0.0 <= fee[k] <= 1.0:
                raise DeleverInputError(f"reserves: {s}: field 'protocol_fee' = {fee[k]}, expected 0..1")
            if not 0 <= self.decimals[k] <= 36:
                raise DeleverInputError(f"reserves: {s}: field 'decimals' = {self.decimals[k]}, expected 0..36")

    def __len__(self) -> int:
        return int(self.symbol.shape[0])

    def index(self, symbol: str) -> int:
        """Position of ``symbol``.

        Raises:
            DeleverInputError: unknown symbol.
        """
        hit = np.flatnonzero(self.symbol == symbol)
        if hit.size == 0:
            raise DeleverInputError(f"reserves: no reserve '{symbol}' (have {', '.join(self.symbol.tolist())})")
        return int(hit[0])

    @classmethod
    def from_aave_v2(
        cls,
        params: AaveV2Reserves,
        symbols: tuple[str, ...] | list[str],
        *,
        pool: str = AAVE_V2_MAIN_POOL,
        stable: tuple[str, ...] = ("USDC", "USDT", "DAI", "TUSD", "BUSD", "GUSD", "SUSD"),
        overrides: dict[str, dict[str, float]] | None = None,
    ) -> ReserveSet:
        """Reserves from the Aave v2 params file (``tokens_reserve_params.csv``), with overrides.

        Args:
            params: :func:`delever.data.aave.read_aave_v2_reserves` result.
            symbols: reserves to take, in this order.
            pool: LendingPool address (default the main market).
            stable: symbols counted as USD stablecoins.
            overrides: ``{symbol: {"liquidation_threshold": 0.8, "liquidation_bonus": 1.1}}``
                for values that differ at the simulated date (the file is a ~2021-09 snapshot).

        Raises:
            DeleverInputError: a symbol absent from the file; an unknown override field.
        """
        rows = []
        for s in symbols:
            i = params.index(s, pool)
            if i < 0:
                raise DeleverInputError(f"{params.path}: no reserve '{s}' in pool {pool}")
            rows.append(i)
        idx = np.asarray(rows, dtype=np.int64)
        lt = params.liquidation_threshold_bps[idx] / 1e4
        lb = np.where(params.liquidation_bonus_bps[idx] > 0, params.liquidation_bonus_bps[idx] / 1e4, 1.0)
        lt = np.where(params.usage_as_collateral_enabled[idx], lt, 0.0)
        out = {"liquidation_threshold": lt.astype(np.float64), "liquidation_bonus": lb.astype(np.float64)}
        for s, ov in (overrides or {}).items():
            if s not in symbols:
                raise DeleverInputError(f"reserve overrides: '{s}' is not among {list(symbols)}")
            for k, v in ov.items():
                if k not in out:
                    raise DeleverInputError(
                        f"reserve overrides: {s}: unknown field '{k}' (liquidation_threshold, liquidation_bonus)"
                    )
                out[k][list(symbols).index(s)] = float(v)
        return cls(
            symbol=np.asarray(symbols, dtype=np.str_),
            decimals=params.decimals[idx],
            liquidation_threshold=out["liquidation_threshold"],
            liquidation_bonus=out["liquidation_bonus"],
            protocol_fee=np.zeros(len(symbols)),
            is_stable=np.isin(np.asarray(symbols), list(stable)),
            source=f"{params.path} (pool {pool})" + (f", overrides {overrides}" if overrides else ""),
        )

    @classmethod
    def from_aave_v3(
        cls,
        params: AaveV3Reserves,
        symbols: tuple[str, ...] | list[str],
        *,
        stable: tuple[str, ...] = ("USDC", "USDT", "DAI", "LUSD", "GHO", "PYUSD", "crvUSD", "FRAX"),
    ) -> ReserveSet:
        """Reserves from an Aave v3 snapshot (:func:`delever.data.aave.read_aave_v3_reserves`), LPF included.

        Raises:
            DeleverInputError: a symbol absent from the snapshot.
        """
        idx = []
        for s in symbols:
            hit = np.flatnonzero(params.symbol == s)
            if hit.size == 0:
                raise DeleverInputError(f"{params.path}: no reserve '{s}'")
            idx.append(int(hit[0]))
        ix = np.asarray(idx, dtype=np.int64)
        lt = np.where(params.usage_as_collateral_enabled[ix], params.liquidation_threshold_bps[ix] / 1e4, 0.0)
        lb = np.where(params.liquidation_bonus_bps[ix] > 0, params.liquidation_bonus_bps[ix] / 1e4, 1.0)
        return cls(
            symbol=np.asarray(symbols, dtype=np.str_),
            decimals=params.decimals[ix],
            liquidation_threshold=lt,
            liquidation_bonus=lb,
            protocol_fee=params.liquidation_protocol_fee_bps[ix] / 1e4,
            is_stable=np.isin(np.asarray(symbols), list(stable)),
            source=params.path,
        )


# =========================================================================== loan book
@dataclass
class LoanBook:
    """N borrowers over R reserves, struct of arrays (token units, not USD).

    Attributes:
        reserves: the reserves' risk parameters.
        borrower: int64 (N,), borrower id (also its ledger party id, >= 0).
        collateral: float64 (N, R), collateral balance per reserve, tokens (aToken balance; counts
            in HF only where LT > 0).
        debt: float64 (N, R), debt per reserve, tokens (stable + variable).

    Raises:
        DeleverInputError: shapes, negative / non-finite amounts, negative or repeated ids.
    """

    reserves: ReserveSet
    borrower: np.ndarray
    collateral: np.ndarray
    debt: np.ndarray

    def __post_init__(self) -> None:
        self.borrower = np.asarray(self.borrower, dtype=np.int64)
        self.collateral = np.array(self.collateral, dtype=np.float64)
        self.debt = np.array(self.debt, dtype=np.float64)
        n, r = self.borrower.shape[0], len(self.reserves)
        for name in ("collateral", "debt"):
            v = getattr(self, name)
            if v.shape != (n, r):
                raise DeleverInputError(f"loan book: field '{name}' has shape {v.shape}, expected ({n}, {r})")
            bad = ~np.isfinite(v) | (v < 0)
            if bad.any():
                i, k = np.argwhere(bad)[0]
                raise DeleverInputError(
                    f"loan book: borrower row {i}: field '{name}[{self.reserves.symbol[k]}]' = {v[i, k]}, "
                    "expected a finite amount >= 0"
                )
        if (self.borrower < 0).any() or np.unique(self.borrower).size != n:
            raise DeleverInputError("loan book: field 'borrower' must hold distinct ids >= 0")

    def __len__(self) -> int:
        return int(self.borrower.shape[0])

    def copy(self) -> LoanBook:
        return LoanBook(self.reserves, self.borrower.copy(), self.collateral.copy(), self.debt.copy())

    def collateral_usd(self, prices: np.ndarray) -> np.ndarray:
        """float64 (N,): collateral value at ``prices`` (float64 (R,), USD per token), LT > 0 reserves only."""
        use = self.reserves.liquidation_threshold > 0
        return self.collateral[:, use] @ np.asarray(prices, dtype=np.float64)[use]

    def debt_usd(self, prices: np.ndarray) -> np.ndarray:
        """float64 (N,): debt value at ``prices`` (USD per token)."""
        return self.debt @ np.asarray(prices, dtype=np.float64)

    def health_factor(self, prices: np.ndarray) -> np.ndarray:
        """float64 (N,): :func:`health_factor` of every borrower; inf without debt."""
        return health_factor(self.collateral, self.debt, prices, self.reserves.liquidation_threshold)


def health_factor(
    collateral: np.ndarray, debt: np.ndarray, prices: np.ndarray, liquidation_threshold: np.ndarray
) -> np.ndarray:
    """Aave health factor ``sum_i(c_i p_i LT_i) / sum_j(d_j p_j)`` (GenericLogic.sol), float path.

    Args:
        collateral: float64 (N, R), tokens.
        debt: float64 (N, R), tokens.
        prices: float64 (R,), oracle price, USD (any common base currency) per token.
        liquidation_threshold: float64 (R,), fraction; reserves with 0 do not count as collateral.

    Returns:
        float64 (N,), dimensionless; ``inf`` where the debt is 0 (the contract returns uint256 max).
    """
    p = np.asarray(prices, dtype=np.float64)
    num = collateral @ (p * np.asarray(liquidation_threshold, dtype=np.float64))
    den = debt @ p
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.inf)


# =========================================================================== exact contract math
_PCT, _HALF_PCT, _WAD = 10_000, 5_000, 10**18


def _percent_mul(value: int, pct: int) -> int:
    """PercentageMath.percentMul: ``(value * pct + 5000) / 10000`` (0 if either is 0)."""
    if value == 0 or pct == 0:
        return 0
    return (value * pct + _HALF_PCT) // _PCT


def _percent_div(value: int, pct: int) -> int:
    """PercentageMath.percentDiv: ``(value * 10000 + pct / 2) / pct``."""
    return (value * _PCT + pct // 2) // pct


def _wad_div(a: int, b: int) -> int:
    """WadRayMath.wadDiv: ``(a * 1e18 + b / 2) / b``."""
    return (a * _WAD + b // 2) // b


def health_factor_exact(
    collateral: list[int], debt: list[int], prices: list[int], decimals: list[int], lt_bps: list[int]
) -> int:
    """Health factor in wad (1e18 = 1.0) by the contracts' integer path (v2 and v3 GenericLogic).

    ``value_i = price_i * balance_i / 10^dec_i``; ``avgLT = sum(value_i * LT_i) / sum(value_i)``
    (integer division); ``HF = percentMul(totalCollateral, avgLT).wadDiv(totalDebt)``.

    Args:
        collateral: base-unit balances per reserve (aTokens; reserves with LT 0 are skipped).
        debt: base-unit debt per reserve.
        prices: oracle prices in the base currency's smallest unit (v2: ETH wei per token; v3: USD
            with 8 decimals per token).
        decimals: token decimals per reserve.
        lt_bps: liquidation threshold per reserve, bps.

    Returns:
        int: HF in wad; ``2**256 - 1`` without debt.
    """
    tot_c = tot_d = avg = 0
    for c, d, p, dec, lt in zip(collateral, debt, prices, decimals, lt_bps, strict=True):
        unit = 10**dec
        if lt != 0 and c:
            v = p * c // unit
            tot_c += v
            avg += v * lt
        if d:
            tot_d += p * d // unit
    if tot_d == 0:
        return 2**256 - 1
    avg = avg // tot_c if tot_c else 0
    return _wad_div(_percent_mul(tot_c, avg), tot_d)


def liquidation_call_exact(
    *,
    version: str,
    collateral: list[int],
    debt: list[int],
    prices: list[int],
    decimals: list[int],
    lt_bps: list[int],
    bonus_bps: list[int],
    protocol_fee_bps: list[int],
    collateral_index: int,
    debt_index: int,
    debt_to_cover: int,
) -> dict:
    """One ``liquidationCall`` by the contracts' integer arithmetic (reference for tests).

    v2: ``LendingPoolCollateralManager.liquidationCall`` + ``_calculateAvailableCollateralToLiquidate``
    (``maxCollateral = (P_debt * debtToCover * 10^dec_c).percentMul(LB) / (P_coll * 10^dec_d)``);
    v3.0: aave-v3-core ``LiquidationLogic`` (close factor 100 % at HF <= 0.95, ``baseCollateral``
    then ``percentMul(LB)``, protocol fee); v3.3: aave-v3-origin ``LiquidationLogic`` (2,000 USD
    close-factor threshold, 1,000 USD leftover rule, deficit). Prices as in
    :func:`health_factor_exact`; v3.3 thresholds assume USD with 8 decimals.

    Returns:
        dict with ``health_factor_wad``, ``debt_repaid``, ``collateral_to_liquidator``,
        ``protocol_fee``, ``deficit`` (list per reserve, base units) and ``reverted`` (None or the
        contract's reason: ``HEALTH_FACTOR_NOT_BELOW_THRESHOLD``, ``COLLATERAL_CANNOT_BE_LIQUIDATED``,
        ``SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER``, ``MUST_NOT_LEAVE_DUST``).
    """
    if version not in VERSIONS:
        raise DeleverInputError(f"version: {version!r}, expected one of {VERSIONS}")
    c, j = collateral_index, debt_index
    hf = health_factor_exact(collateral, debt, prices, decimals, lt_bps)
    out = {"health_factor_wad": hf, "debt_repaid": 0, "collateral_to_liquidator": 0, "protocol_fee": 0,
           "deficit": [0] * len(debt), "reverted": None}  # fmt: skip
    if hf >= _WAD:
        out["reverted"] = "HEALTH_FACTOR_NOT_BELOW_THRESHOLD"
        return out
    if lt_bps[c] == 0 or collateral[c] == 0:
        out["reverted"] = "COLLATERAL_CANNOT_BE_LIQUIDATED"
        return out
    if debt[j] == 0:
        out["reverted"] = "SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER"
        return out
    pc, pd = prices[c], prices[j]
    uc, ud = 10 ** decimals[c], 10 ** decimals[j]
    bal, user_debt, lb = collateral[c], debt[j], bonus_bps[c]
    if version == "v2":
        max_debt = _percent_mul(user_debt, 5000)
    elif version == "v3.0":
        max_debt = _percent_mul(user_debt, 5000 if hf > 95 * _WAD // 100 else 10_000)
    else:
        max_debt = user_debt
        debt_base = user_debt * pd // ud
        coll_base = bal * pc // uc
        if coll_base >= 2000 * 10**8 and debt_base >= 2000 * 10**8 and hf > 95 * _WAD // 100:
            tot_debt_base = sum(d * p // 10**dec for d, p, dec in zip(debt, prices, decimals, strict=True))
            cap_base = _percent_mul(tot_debt_base, 5000)
            if debt_base > cap_base:
                max_debt = cap_base * ud // pd
    actual = min(debt_to_cover, max_debt)
    if version == "v2":
        coll = _percent_mul(pd * actual * uc, lb) // (pc * ud)
        if coll > bal:
            coll = bal
            actual = _percent_div(pc * coll * ud // (pd * uc), lb)
        fee = 0
    else:
        coll = _percent_mul(pd * actual * uc // (pc * ud), lb)
        if coll > bal:
            coll = bal
            actual = _percent_div(pc * coll * ud // (pd * uc), lb)
        fee = 0
        if protocol_fee_bps[c]:
            fee = _percent_mul(coll - _percent_div(coll, lb), protocol_fee_bps[c])
        coll -= fee
    if version == "v3.3":
        if actual < user_debt and coll + fee < bal:
            debt_ok = (user_debt - actual) * pd // ud >= 1000 * 10**8
            coll_ok = (bal - coll) * pc // uc >= 1000 * 10**8
            if not (debt_ok and coll_ok):
                out["reverted"] = "MUST_NOT_LEAVE_DUST"
                return out
        tot_coll_base = sum(
            b * p // 10**dec
            for b, p, dec, lt in zip(collateral, prices, decimals, lt_bps, strict=True)
            if lt != 0 and b
        )
        if tot_coll_base == (coll + fee) * pc // uc:
            rest = list(debt)
            rest[j] -= actual
            out["deficit"] = rest
    out.update(debt_repaid=actual, collateral_to_liquidator=coll, protocol_fee=fee)
    return out


# =========================================================================== AMM
def uniswap_v2_amount_out(amount_in, reserve_in, reserve_out, fee: float = UNISWAP_V2_FEE):
    """Uniswap v2 ``getAmountOut`` in floats: ``y * a (1 - fee) / (x + a (1 - fee))``.

    Args:
        amount_in: float or float64 array, tokens sold into the pool (>= 0).
        reserve_in: pool reserve of the sold token (x).
        reserve_out: pool reserve of the bought token (y).
        fee: LP fee fraction (0.3 %, ``UniswapV2Library.getAmountOut``: ``amountIn * 997 / 1000``).

    Returns:
        Tokens out, same shape as the broadcast inputs.
    """
    a = np.asarray(amount_in, dtype=np.float64) * (1.0 - fee)
    return np.asarray(reserve_out, dtype=np.float64) * a / (np.asarray(reserve_in, dtype=np.float64) + a)


@dataclass
class AmmPools:
    """One constant-product pool per reserve (asset vs a USD stablecoin quote), struct of arrays.

    Attributes:
        asset: float64 (R,), asset tokens in each pool (0 = no pool).
        quote: float64 (R,), quote tokens (USD stablecoin, e.g. DAI) in each pool.
        fee: LP fee fraction (Uniswap v2: 0.003).
        quote_symbol: ledger asset of the quote side.
    """

    asset: np.ndarray
    quote: np.ndarray
    fee: float = UNISWAP_V2_FEE
    quote_symbol: str = "DAI"

    @staticmethod
    def reserves_at(liquidity: np.ndarray, price: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pool reserves with ``sqrt(x y) = liquidity`` and ``y / x = price``: ``x = L/sqrt(P)``, ``y = L sqrt(P)``.

        Args:
            liquidity: float64 (R,), ``sqrt(asset * quote)``; 0 = no pool.
            price: float64 (R,), quote per asset token.
        """
        liq = np.asarray(liquidity, dtype=np.float64)
        sp = np.sqrt(np.asarray(price, dtype=np.float64))
        has = liq > 0
        return np.where(has, liq / np.where(has, sp, 1.0), 0.0), np.where(has, liq * sp, 0.0)

    @property
    def price(self) -> np.ndarray:
        """float64 (R,): quote per asset token (``quote / asset``); NaN where there is no pool."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.asset > 0, self.quote / np.where(self.asset > 0, self.asset, 1.0), np.nan)


# =========================================================================== ledger
class LendingLedger:
    """Transfers in token units, one :class:`~delever.ledger.AssetLedger` whose assets are the tokens met.

    Writes are buffered and flushed as arrays once per round (no Python object per transfer in the
    stored record). USD values are not kept here (``value_usd`` is NaN): the run values tokens at its oracle prices.
    """

    def __init__(self) -> None:
        self.ledger = AssetLedger(())
        self._buf: dict[tuple[str, str], list[tuple[int, int, float]]] = defaultdict(list)

    @property
    def assets(self) -> tuple[str, ...]:
        """The tokens with at least one transfer."""
        self.flush()
        return self.ledger.assets

    def at(self, step: int, round_: int, t_s: float) -> None:
        """Flush pending transfers, then time-stamp the following ones."""
        self.flush()
        self.ledger.at(step, round_, t_s)

    def add(self, asset: str, kind: str, src: int, dst: int, amount: float) -> None:
        """Buffer one transfer ``src -> dst`` of ``amount`` tokens of ``asset`` (negative: reverse)."""
        if amount != 0.0:
            self._buf[(asset, kind)].append((src, dst, amount))

    def flush(self) -> None:
        for (asset, kind), rows in self._buf.items():
            arr = np.asarray(rows, dtype=np.float64)
            self.ledger.transfer(kind, self.ledger.asset_code(asset), arr[:, 0].astype(np.int64),
                                 arr[:, 1].astype(np.int64), arr[:, 2], math.nan)
        self._buf.clear()

    def net_flows(self, asset: str) -> dict[int, float]:
        """Net tokens of ``asset`` received per party (inflows minus outflows)."""
        self.flush()
        if asset not in self.ledger.assets:
            return {}
        k = self.ledger.asset_code(asset)
        return {p: v for (p, a), v in self.ledger.net_flows().items() if a == k}

    def __len__(self) -> int:
        self.flush()
        return len(self.ledger)

    def to_table(self) -> pa.Table:
        """All transfers: seq, step, round, t_s, kind, asset, from/to party and name, amount (tokens)."""
        self.flush()
        t = self.ledger.to_table().drop_columns(["value_usd", "from_name", "to_name"])
        return t.append_column("from_name", pa.array([party_name(p) for p in t.column("from_party").to_pylist()],
                                                     pa.string())) \
                .append_column("to_name", pa.array([party_name(p) for p in t.column("to_party").to_pylist()],
                                                   pa.string()))


# =========================================================================== liquidator
@dataclass(frozen=True)
class LiquidatorParams:
    """Liquidator behaviour and market assumptions (defaults are assumptions, not fitted).

    Attributes:
        gas_units: gas per liquidation incl. a flash loan and the DEX sale (default 500,000; Aave v2
            ``liquidationCall`` alone is a few 100k gas, a flash-loan + swap wrapper adds as much;
            assumption).
        min_profit_usd: act only if profit exceeds this (default 0).
        amm_fee: pool LP fee (Uniswap v2: 0.003).
        oracle_feedback: fraction of the pool's relative price impact passed to the oracle
            (default 0.0 = off; see module docstring).
        pool_refills_per_step: how many times per step arbitrage restores the pools to the market
            price (at the start of each of the first rounds; default 1: all sales of a step meet
            one pool state, the literal "reserves at the first block of the bucket" model; an
            Ethereum 10-minute step has ~46 blocks, so up to ~46 is defensible if arbitrage closes
            the gap every block — the validation reports that sensitivity).
        max_rounds: round cap per step (reported when hit).
    """

    gas_units: float = 500_000.0
    min_profit_usd: float = 0.0
    amm_fee: float = UNISWAP_V2_FEE
    oracle_feedback: float = 0.0
    pool_refills_per_step: int = 1
    max_rounds: int = 100

    def __post_init__(self) -> None:
        for name, lo, hi in (
            ("gas_units", 0.0, 1e9),
            ("min_profit_usd", 0.0, 1e12),
            ("amm_fee", 0.0, 0.5),
            ("oracle_feedback", 0.0, 1.0),
            ("pool_refills_per_step", 1, 10_000),
            ("max_rounds", 1, 10_000),
        ):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and not isinstance(v, bool) and lo <= v <= hi):
                raise DeleverInputError(f"liquidator: field '{name}' = {v!r}, expected a number in [{lo}, {hi}]")


def _close_factor_cap(version: str, hf: float, debt_j: float, p_j: float, coll_val_r: float, total_debt_usd: float):
    """Max debt tokens of reserve j that one call may repay (close factor per version)."""
    if version == "v2":
        return V2_CLOSE_FACTOR * debt_j
    if version == "v3.0":
        return debt_j if hf <= V3_CLOSE_FACTOR_HF_THRESHOLD else V3_DEFAULT_CLOSE_FACTOR * debt_j
    cap = debt_j
    if (
        coll_val_r >= V33_MIN_BASE_MAX_CLOSE_FACTOR_USD
        and debt_j * p_j >= V33_MIN_BASE_MAX_CLOSE_FACTOR_USD
        and hf > V3_CLOSE_FACTOR_HF_THRESHOLD
    ):
        lim = V3_DEFAULT_CLOSE_FACTOR * total_debt_usd
        if debt_j * p_j > lim:
            cap = lim / p_j
    return cap


@dataclass
class Plan:
    """One liquidation call as planned by the liquidator (token units unless named ``_usd``)."""

    borrower_row: int
    collateral_reserve: int
    debt_reserve: int
    debt_repaid: float
    collateral_seized: float      # total taken from the borrower (liquidator part + fee)
    protocol_fee: float
    to_liquidator: float
    proceeds_usd: float           # quote tokens from selling ``to_liquidator`` (par value if no pool)
    profit_usd: float
    gas_usd: float
    hf_before: float
    collateral_all_taken: bool
    debt_all_repaid: bool


def plan_liquidation(
    collateral_row: np.ndarray,
    debt_row: np.ndarray,
    prices: np.ndarray,
    reserves: ReserveSet,
    pools: AmmPools,
    *,
    version: str = "v2",
    gas_usd: float = 0.0,
    borrower_row: int = 0,
) -> Plan | None:
    """The liquidator's most profitable liquidation call on one account, or None (HF >= 1 / none pays).

    Contract rules (close factor per version, collateral = debt x P_debt/P_coll x LB capped by the
    balance, v3 protocol fee, v3.3 leftover rule) plus the liquidator's choice: debt reserve with the
    largest debt value; for each collateral reserve the amount ``min(close-factor cap, profit
    optimum)`` where the optimum solves ``d out/d s = P_coll / (LB phi)`` for the x*y=k sale
    (``s* = (sqrt(x y (1-fee) LB phi / P_coll) - x) / (1-fee)``); the best reserve wins.

    Args:
        collateral_row: float64 (R,), the account's collateral tokens.
        debt_row: float64 (R,), the account's debt tokens.
        prices: float64 (R,), oracle USD per token.
        reserves: risk parameters.
        pools: current AMM state (not modified).
        version: ``v2``, ``v3.0`` or ``v3.3``.
        gas_usd: cost of one call, USD.
        borrower_row: row index carried into the plan.

    Returns:
        :class:`Plan` with ``profit_usd`` (may be <= 0: the caller decides), or None if the account
        is healthy or has nothing to liquidate.
    """
    c = collateral_row.tolist()
    d = debt_row.tolist()
    p = prices.tolist()
    lt = reserves.liquidation_threshold.tolist()
    lb_all = reserves.liquidation_bonus.tolist()
    lpf_all = reserves.protocol_fee.tolist() if version != "v2" else [0.0] * len(c)
    px, py = pools.asset.tolist(), pools.quote.tolist()
    gamma = 1.0 - pools.fee
    R = len(c)
    coll_val = [c[k] * p[k] if lt[k] > 0 else 0.0 for k in range(R)]
    debt_val = [d[k] * p[k] for k in range(R)]
    total_debt = sum(debt_val)
    if total_debt <= 0:
        return None
    hf = sum(coll_val[k] * lt[k] for k in range(R)) / total_debt
    if hf >= 1.0:
        return None
    j = max(range(R), key=lambda k: debt_val[k])
    best: Plan | None = None
    for r in range(R):
        if coll_val[r] <= 0:
            continue
        lb, lpf = lb_all[r], lpf_all[r]
        phi = 1.0 - lpf * (1.0 - 1.0 / lb)
        q = p[j] * lb / p[r]                    # collateral tokens seized per debt token repaid
        cap = _close_factor_cap(version, hf, d[j], p[j], coll_val[r], total_debt)
        pooled = px[r] > 0
        if pooled:
            s_star = (math.sqrt(px[r] * py[r] * gamma * lb * phi / p[r]) - px[r]) / gamma
            d_opt = s_star / (q * phi) if s_star > 0 else 0.0
        else:
            d_opt = math.inf
        tries = [min(cap, d_opt)]
        if version == "v3.3":
            tries = _v33_amounts(tries[0], cap, c[r], d[j], p[r], p[j], q, phi)
        for amt in tries:
            plan = _evaluate(amt, r, j, c, d, p, q, lb, lpf, pooled, px, py, gamma, gas_usd, hf, borrower_row)
            if plan is not None and (best is None or plan.profit_usd > best.profit_usd):
                best = plan
    return best


def _v33_amounts(amt: float, cap: float, bal: float, debt_j: float, pc: float, pd: float, q: float, phi: float):
    """Amounts the v3.3 leftover rule allows near ``amt``: itself, or shrunk / full-debt / full-collateral."""
    def seized(x: float) -> float:
        return min(x * q, bal)

    def ok(x: float) -> bool:
        s = seized(x)
        if x >= debt_j * (1 - _REL_EPS) or s >= bal * (1 - _REL_EPS):
            return True
        return (debt_j - x) * pd >= V33_MIN_LEFTOVER_USD and (bal - s * phi) * pc >= V33_MIN_LEFTOVER_USD

    if amt <= 0 or ok(amt):
        return [amt]
    out = []
    shrink = min(amt, debt_j - V33_MIN_LEFTOVER_USD / pd, (bal - V33_MIN_LEFTOVER_USD / pc) / (q * phi))
    if shrink > 0 and ok(shrink):
        out.append(shrink)
    if cap >= debt_j * (1 - _REL_EPS):
        out.append(debt_j)
    if bal / q <= cap:
        out.append(bal / q)
    return out


def _evaluate(amt, r, j, c, d, p, q, lb, lpf, pooled, px, py, gamma, gas_usd, hf, row) -> Plan | None:
    if not amt > 0:
        return None
    amt = min(amt, d[j])
    seize = amt * q
    all_coll = seize >= c[r] * (1 - _REL_EPS)
    if all_coll:
        seize = c[r]
        amt = seize * p[r] / (p[j] * lb)
    fee = (seize - seize / lb) * lpf
    to_liq = seize - fee
    if pooled:
        a = to_liq * gamma
        proceeds = py[r] * a / (px[r] + a)
    else:
        proceeds = to_liq * p[r]
    profit = proceeds - amt * p[j] - gas_usd
    return Plan(row, r, j, amt, seize, fee, to_liq, proceeds, profit, gas_usd, hf, all_coll,
                amt >= d[j] * (1 - _REL_EPS))  # fmt: skip


def _profit_upper_bound(book: LoanBook, rows: np.ndarray, prices: np.ndarray, pools: AmmPools, version: str,
                        gas_usd: float) -> np.ndarray:  # fmt: skip
    """float64 (K,): an upper bound of each account's liquidation profit at the current pool state.

    Proceeds per collateral token are at most ``pool price x (1 - fee)`` (the first unit's price;
    sales only lower it within a round), so ``profit <= d_max x max(0, q x pool x (1-fee) x phi - P_debt)
    - gas`` with ``d_max`` the close-factor cap also capped by the balance. Accounts whose bound is
    <= the profit floor are skipped without a scalar evaluation.
    """
    res = book.reserves
    c, d = book.collateral[rows], book.debt[rows]
    p = prices
    lt, lb = res.liquidation_threshold, res.liquidation_bonus
    lpf = res.protocol_fee if version != "v2" else np.zeros(len(res))
    dval = d * p
    tot_d = dval.sum(axis=1)
    hf = (c * (p * lt)).sum(axis=1) / tot_d
    j = np.argmax(dval, axis=1)
    k = np.arange(rows.size)
    dj, pj = d[k, j], p[j]
    phi = 1.0 - lpf * (1.0 - 1.0 / lb)
    unit = np.where(pools.asset > 0, pools.price * (1.0 - pools.fee), p)         # (R,)
    best = np.zeros(rows.size)
    for r in range(len(res)):
        if lt[r] <= 0:
            continue
        coll_val = c[:, r] * p[r]
        q = pj * lb[r] / p[r]
        if version == "v2":
            cap = V2_CLOSE_FACTOR * dj
        elif version == "v3.0":
            cap = np.where(hf <= V3_CLOSE_FACTOR_HF_THRESHOLD, dj, V3_DEFAULT_CLOSE_FACTOR * dj)
        else:
            lim = V3_DEFAULT_CLOSE_FACTOR * tot_d
            capped = (coll_val >= V33_MIN_BASE_MAX_CLOSE_FACTOR_USD) & (dj * pj >= V33_MIN_BASE_MAX_CLOSE_FACTOR_USD)
            capped &= (hf > V3_CLOSE_FACTOR_HF_THRESHOLD) & (dj * pj > lim)
            cap = np.where(capped, lim / pj, dj)
        cap = np.minimum(cap, c[:, r] / q)
        margin = np.maximum(q * unit[r] * phi[r] - pj, 0.0)
        best = np.maximum(best, np.where(coll_val > 0, cap * margin, 0.0))
    return best - gas_usd


# =========================================================================== simulation
_EVENT_FIELDS = {
    "step": np.int32, "round": np.int32, "borrower": np.int64, "collateral_reserve": np.int16,
    "debt_reserve": np.int16, "debt_repaid": np.float64, "collateral_seized": np.float64,
    "protocol_fee": np.float64, "debt_usd": np.float64, "collateral_usd": np.float64,
    "proceeds_usd": np.float64, "gas_usd": np.float64, "profit_usd": np.float64,
    "hf_before": np.float64, "hf_after": np.float64, "deficit_usd": np.float64,
}  # fmt: skip


@dataclass
class CascadeResult:
    """Outcome of :func:`simulate_cascade`, T steps, E liquidation events, R reserves.

    Attributes:
        events: dict of arrays (E,) — ``step``, ``round``, ``borrower`` (id), ``collateral_reserve``
            / ``debt_reserve`` (reserve index), ``debt_repaid`` / ``collateral_seized`` /
            ``protocol_fee`` (tokens; seized includes the fee), ``debt_usd`` / ``collateral_usd``
            (oracle value), ``proceeds_usd`` (AMM sale), ``gas_usd``, ``profit_usd``, ``hf_before``,
            ``hf_after``, ``deficit_usd`` (v3.3 debt burnt as deficit by this call).
        steps: dict of arrays (T,) — ``n_liquidations``, ``debt_repaid_usd``,
            ``collateral_seized_usd``, ``protocol_fee_usd``, ``liquidator_profit_usd``, ``gas_usd``,
            ``rounds``, ``n_underwater`` (HF < 1 at step end: unprofitable to liquidate),
            ``shortfall_usd`` (bad debt: sum of max(0, debt - collateral) at oracle, step end),
            ``deficit_usd`` (cumulative v3.3 deficit), ``amm_price_min`` float64 (T, R) (lowest pool
            price in the step, NaN without pool), ``oracle_price`` float64 (T, R) (oracle at step end).
        book: the loan book after the run.
        initial_book: the loan book before.
        ledger: per-asset transfer record.
        balances: {(asset, party): tokens} state of the non-borrower parties at the end.
        version: protocol version simulated.
        notes: findings (round cap hit ...).
    """

    events: dict[str, np.ndarray]
    steps: dict[str, np.ndarray]
    book: LoanBook
    initial_book: LoanBook
    ledger: LendingLedger
    balances: dict[tuple[str, int], float]
    version: str
    notes: list[str] = field(default_factory=list)

    def check_conservation(self, tol: float = 1e-9) -> dict[str, float]:
        """Reconcile the state with the ledger; returns ``{asset: worst abs mismatch (tokens)}``.

        Per asset (token units): every borrower's ``(collateral - debt)_end - (collateral - debt)_start``
        and every other party's state change must equal its ledger net flow; the Aave pool's state is
        its claims (``sum(debt)`` from the book) plus the cash repaid to it plus its deficit
        receivable; the ledger flows must sum to 0; and, from the event record independently of the
        ledger, ``debt_start - debt_end = sum(debt repaid) + deficit`` per reserve.

        Args:
            tol: allowed mismatch relative to ``max(1, collateral + debt of the asset at the start)``.

        Raises:
            AssertionError: a mismatch above ``tol`` x scale (names the asset).
        """
        res = self.book.reserves
        worst: dict[str, float] = {}
        assets = set(self.ledger.assets) | set(res.symbol.tolist()) | {a for a, _ in self.balances}
        for asset in sorted(assets):
            flows = self.ledger.net_flows(asset)
            err = abs(sum(flows.values()))
            scale = 1.0
            state = {prt: v for (a, prt), v in self.balances.items() if a == asset}
            if asset in res.symbol:
                k = res.index(asset)
                c0, d0 = self.initial_book.collateral[:, k], self.initial_book.debt[:, k]
                c1, d1 = self.book.collateral[:, k], self.book.debt[:, k]
                scale = max(1.0, float(c0.sum() + d0.sum()))
                fl = np.array([flows.get(int(b), 0.0) for b in self.book.borrower])
                err = max(err, float(np.abs((c1 - d1) - (c0 - d0) - fl).max(initial=0.0)))
                state[AAVE_POOL] = state.get(AAVE_POOL, 0.0) + float(d1.sum() - d0.sum())
                repaid = float(self.events["debt_repaid"][self.events["debt_reserve"] == k].sum())
                deficit = -self.balances.get((asset, BAD_DEBT), 0.0)
                err = max(err, abs(float(d0.sum() - d1.sum()) - repaid - deficit))
            for prt in set(state) | {p for p in flows if p < 0}:
                err = max(err, abs(state.get(prt, 0.0) - flows.get(prt, 0.0)))
            worst[asset] = err
            if err > tol * scale:
                raise AssertionError(f"conservation: asset {asset}: mismatch {err:.3e} tokens (scale {scale:.3e})")
        return worst


def simulate_cascade(
    book: LoanBook,
    *,
    oracle_price: np.ndarray,
    pool_liquidity: np.ndarray,
    gas_price_gwei: np.ndarray,
    eth_usd: np.ndarray,
    market_price: np.ndarray | None = None,
    version: str = "v2",
    liquidator: LiquidatorParams | None = None,
    quote_symbol: str = "DAI",
    step_s: float = 600.0,
) -> CascadeResult:
    """Run the liquidation cascade over T steps.

    Per step: pools re-anchored to ``market_price`` with ``pool_liquidity`` (arbitrage, recorded),
    then rounds: oracle (with optional pool feedback) -> HF -> accounts with HF < 1 whose profit upper
    bound beats the floor, best first -> :func:`plan_liquidation` at the current pool state ->
    execute if profitable (book, pool, ledger; v3.3 deficit) -> repeat until a round executes nothing.

    Args:
        book: the loan book (not modified; the result holds the end state).
        oracle_price: float64 (T, R), oracle USD per token per step.
        pool_liquidity: float64 (T, R), ``sqrt(asset x quote)`` of each reserve's AMM pool per step
            (0 = no pool: stablecoin collateral is kept at par; a volatile collateral reserve without
            a pool is an error).
        gas_price_gwei: float64 (T,), gas price paid by liquidators.
        eth_usd: float64 (T,), ETH/USD to value gas.
        market_price: float64 (T, R), price the pools are re-anchored to; default ``oracle_price``.
        version: ``v2``, ``v3.0`` or ``v3.3``.
        liquidator: :class:`LiquidatorParams` (defaults if None).
        quote_symbol: ledger asset of the pools' quote side.
        step_s: step length, seconds (ledger time stamps).

    Returns:
        :class:`CascadeResult`.

    Raises:
        DeleverInputError: unknown version; shapes; non-positive or non-finite prices; negative gas;
            a volatile collateral reserve held by some borrower without a pool.
    """
    if version not in VERSIONS:
        raise DeleverInputError(f"version: {version!r}, expected one of {', '.join(VERSIONS)}")
    lp = liquidator or LiquidatorParams()
    res = book.reserves
    R = len(res)
    oracle = np.asarray(oracle_price, dtype=np.float64)
    if oracle.ndim != 2 or oracle.shape[1] != R or oracle.shape[0] < 1:
        raise DeleverInputError(f"oracle_price: shape {oracle.shape}, expected (T, {R})")
    T = oracle.shape[0]
    mkt = oracle if market_price is None else np.asarray(market_price, dtype=np.float64)
    liq = np.asarray(pool_liquidity, dtype=np.float64)
    gas = np.asarray(gas_price_gwei, dtype=np.float64)
    eth = np.asarray(eth_usd, dtype=np.float64)
    for name, v, shape in (
        ("market_price", mkt, (T, R)),
        ("pool_liquidity", liq, (T, R)),
        ("gas_price_gwei", gas, (T,)),
        ("eth_usd", eth, (T,)),
    ):
        if v.shape != shape:
            raise DeleverInputError(f"{name}: shape {v.shape}, expected {shape}")
    for name, v, positive in (
        ("oracle_price", oracle, True),
        ("market_price", mkt, True),
        ("eth_usd", eth, True),
        ("pool_liquidity", liq, False),
        ("gas_price_gwei", gas, False),
    ):
        bad = ~np.isfinite(v) | ((v <= 0) if positive else (v < 0))
        if bad.any():
            where = np.argwhere(bad)[0]
            raise DeleverInputError(
                f"{name}: step {where[0]}" + (f", reserve {res.symbol[where[1]]}" if v.ndim == 2 else "")
                + f": {v[tuple(where)]}, expected a finite value {'> 0' if positive else '>= 0'}"
            )
    held = (book.collateral > 0).any(axis=0) & (res.liquidation_threshold > 0) & ~res.is_stable
    nopool = held & (liq == 0).any(axis=0)
    if nopool.any():
        raise DeleverInputError(
            f"pool_liquidity: reserve {res.symbol[np.flatnonzero(nopool)[0]]} is held as collateral but has "
            "no AMM pool in some step (liquidity 0); give it a pool"
        )

    start = book.copy()
    bk = book.copy()
    pools = AmmPools(np.zeros(R), np.zeros(R), fee=lp.amm_fee, quote_symbol=quote_symbol)
    ledger = LendingLedger()
    bal: dict[tuple[str, int], float] = defaultdict(float)
    sym = res.symbol.tolist()
    ev: dict[str, list] = {k: [] for k in _EVENT_FIELDS}
    st = {k: np.zeros(T) for k in (
        "n_liquidations", "debt_repaid_usd", "collateral_seized_usd", "protocol_fee_usd",
        "liquidator_profit_usd", "gas_usd", "rounds", "n_underwater", "shortfall_usd", "deficit_usd")}  # fmt: skip
    st["amm_price_min"] = np.full((T, R), np.nan)
    st["oracle_price"] = np.zeros((T, R))
    notes: list[str] = []
    lt_vec = res.liquidation_threshold
    pooled = liq.max(axis=0) > 0
    deficit_cum = 0.0

    for t in range(T):
        ledger.at(t, 0, t * step_s)
        new_x, new_y = AmmPools.reserves_at(liq[t], mkt[t])
        anchor = mkt[t]
        gas_eth = lp.gas_units * gas[t] * 1e-9
        gas_usd = gas_eth * eth[t]
        rounds = refills = 0
        prices = oracle[t]
        while True:
            if refills < lp.pool_refills_per_step:
                # --- arbitrage: pools back to the market price with this step's liquidity
                for r in range(R):
                    dx, dy = new_x[r] - pools.asset[r], new_y[r] - pools.quote[r]
                    ledger.add(sym[r], "arbitrage", MARKET, AMM_POOL, dx)
                    ledger.add(quote_symbol, "arbitrage", MARKET, AMM_POOL, dy)
                    bal[(sym[r], AMM_POOL)] += dx
                    bal[(sym[r], MARKET)] -= dx
                    bal[(quote_symbol, AMM_POOL)] += dy
                    bal[(quote_symbol, MARKET)] -= dy
                pools.asset, pools.quote = new_x.copy(), new_y.copy()
                if refills == 0:
                    st["amm_price_min"][t] = np.where(pooled, pools.price, np.nan)
                refills += 1
            prices = oracle[t].copy()
            if lp.oracle_feedback > 0:
                rel = np.where(pools.asset > 0, pools.price / anchor - 1.0, 0.0)
                prices = prices * (1.0 + lp.oracle_feedback * rel)
            hf = health_factor(bk.collateral, bk.debt, prices, lt_vec)
            rows = np.flatnonzero(hf < 1.0)
            if rows.size == 0 or rounds >= lp.max_rounds:
                if rows.size and rounds >= lp.max_rounds:
                    notes.append(f"step {t}: round cap {lp.max_rounds} reached with {rows.size} accounts HF < 1")
                break
            ub = _profit_upper_bound(bk, rows, prices, pools, version, gas_usd)
            keep = ub > lp.min_profit_usd
            rows, ub = rows[keep], ub[keep]
            if rows.size == 0:
                break
            rounds += 1
            ledger.at(t, rounds, t * step_s)
            executed = 0
            for i in rows[np.argsort(-ub, kind="stable")].tolist():
                plan = plan_liquidation(bk.collateral[i], bk.debt[i], prices, res, pools, version=version,
                                        gas_usd=gas_usd, borrower_row=i)  # fmt: skip
                if plan is None or not plan.profit_usd > lp.min_profit_usd:
                    continue
                deficit_usd = _execute(plan, bk, pools, ledger, bal, prices, version, quote_symbol, gas_eth, sym)
                deficit_cum += deficit_usd
                executed += 1
                r, j = plan.collateral_reserve, plan.debt_reserve
                for k, v in (
                    ("step", t), ("round", rounds), ("borrower", int(bk.borrower[i])), ("collateral_reserve", r),
                    ("debt_reserve", j), ("debt_repaid", plan.debt_repaid), ("collateral_seized", plan.collateral_seized),
                    ("protocol_fee", plan.protocol_fee), ("debt_usd", plan.debt_repaid * prices[j]),
                    ("collateral_usd", plan.collateral_seized * prices[r]), ("proceeds_usd", plan.proceeds_usd),
                    ("gas_usd", gas_usd), ("profit_usd", plan.profit_usd), ("hf_before", plan.hf_before),
                    ("hf_after", float(health_factor(bk.collateral[i:i + 1], bk.debt[i:i + 1], prices, lt_vec)[0])),
                    ("deficit_usd", deficit_usd),
                ):  # fmt: skip
                    ev[k].append(v)
                st["n_liquidations"][t] += 1
                st["debt_repaid_usd"][t] += plan.debt_repaid * prices[j]
                st["collateral_seized_usd"][t] += plan.collateral_seized * prices[r]
                st["protocol_fee_usd"][t] += plan.protocol_fee * prices[r]
                st["liquidator_profit_usd"][t] += plan.profit_usd
                st["gas_usd"][t] += gas_usd
                if pools.asset[r] > 0:
                    st["amm_price_min"][t, r] = min(st["amm_price_min"][t, r], pools.price[r])
            if executed == 0:
                rounds -= 1
                break
        ledger.at(t, rounds, t * step_s)
        st["rounds"][t] = rounds
        st["oracle_price"][t] = prices
        hf = health_factor(bk.collateral, bk.debt, prices, lt_vec)
        st["n_underwater"][t] = int((hf < 1.0).sum())
        short = bk.debt_usd(prices) - bk.collateral_usd(prices)
        st["shortfall_usd"][t] = float(np.maximum(short, 0.0).sum())
        st["deficit_usd"][t] = deficit_cum
    ledger.flush()
    events = {k: np.asarray(v, dtype=dt) for (k, dt), v in zip(_EVENT_FIELDS.items(), ev.values(), strict=True)}
    return CascadeResult(events, st, bk, start, ledger, dict(bal), version, notes)


def _execute(plan: Plan, bk: LoanBook, pools: AmmPools, ledger: LendingLedger, bal, prices, version: str,
             quote: str, gas_eth: float, sym: list[str]) -> float:  # fmt: skip
    """Apply one planned call to book, pool, ledger and party balances; returns the v3.3 deficit (USD)."""
    i, r, j = plan.borrower_row, plan.collateral_reserve, plan.debt_reserve
    who = int(bk.borrower[i])
    cs, ds = sym[r], sym[j]
    # debt side: liquidator repays the pool; the pool burns the borrower's debt tokens
    if plan.debt_all_repaid:
        bk.debt[i, j] = 0.0
    else:
        bk.debt[i, j] -= plan.debt_repaid
    ledger.add(ds, "repay", LIQUIDATOR, AAVE_POOL, plan.debt_repaid)
    ledger.add(ds, "debt_burn", AAVE_POOL, who, plan.debt_repaid)
    bal[(ds, LIQUIDATOR)] -= plan.debt_repaid
    bal[(ds, AAVE_POOL)] += plan.debt_repaid         # cash; its claims are the book's debt
    # collateral side: borrower -> liquidator (and the v3 fee -> treasury)
    if plan.collateral_all_taken:
        bk.collateral[i, r] = 0.0
    else:
        bk.collateral[i, r] -= plan.collateral_seized
    ledger.add(cs, "seize", who, LIQUIDATOR, plan.to_liquidator)
    ledger.add(cs, "protocol_fee", who, TREASURY, plan.protocol_fee)
    bal[(cs, LIQUIDATOR)] += plan.to_liquidator
    bal[(cs, TREASURY)] += plan.protocol_fee
    # sale into the AMM
    if pools.asset[r] > 0:
        ledger.add(cs, "amm_sell", LIQUIDATOR, AMM_POOL, plan.to_liquidator)
        ledger.add(quote, "amm_sell", AMM_POOL, LIQUIDATOR, plan.proceeds_usd)
        pools.asset[r] += plan.to_liquidator
        pools.quote[r] -= plan.proceeds_usd
        bal[(cs, LIQUIDATOR)] -= plan.to_liquidator
        bal[(cs, AMM_POOL)] += plan.to_liquidator
        bal[(quote, AMM_POOL)] -= plan.proceeds_usd
        bal[(quote, LIQUIDATOR)] += plan.proceeds_usd
    ledger.add(GAS_ASSET, "gas", LIQUIDATOR, BLOCK_PRODUCER, gas_eth)
    bal[(GAS_ASSET, LIQUIDATOR)] -= gas_eth
    bal[(GAS_ASSET, BLOCK_PRODUCER)] += gas_eth
    deficit = 0.0
    if version == "v3.3":
        use = bk.reserves.liquidation_threshold > 0
        if not (bk.collateral[i, use] > 0).any() and (bk.debt[i] > 0).any():
            for k in np.flatnonzero(bk.debt[i] > 0).tolist():
                amt = float(bk.debt[i, k])
                ledger.add(sym[k], "deficit_burn", AAVE_POOL, who, amt)
                ledger.add(sym[k], "deficit", BAD_DEBT, AAVE_POOL, amt)
                bal[(sym[k], BAD_DEBT)] -= amt
                bal[(sym[k], AAVE_POOL)] += amt      # deficit receivable replaces the burnt claim
                deficit += amt * float(prices[k])
                bk.debt[i, k] = 0.0
    return deficit


# =========================================================================== synthesizer
@dataclass(frozen=True)
class BookParams:
    """Assumptions of the loan-book synthesizer (defaults stated, not fitted to any target).

    Attributes:
        n_borrowers: accounts with volatile collateral and stablecoin debt (default 10,000).
        collateral_median_usd: median collateral value per account, USD (default 25,000).
        collateral_sigma: sigma of log collateral value (default 1.8: mean = median x e^1.62 ~ 5x,
            so ~1.26e9 USD of collateral for the defaults; heavy right tail of whales).
        collateral_mix: ``((symbol, share), ...)`` probability of each account's main collateral
            (default WETH 0.7, WBTC 0.3).
        second_collateral_prob: probability that an account also holds a second collateral reserve
            (default 0.2), drawn from ``collateral_mix`` without the main one.
        second_collateral_max_share: the second reserve's share of the value ~ U(0, this) (0.5).
        debt_mix: ``((symbol, share), ...)`` probability of the (single) debt reserve (default USDC
            0.4, USDT 0.3, DAI 0.3).
        hf_near_weight: share of accounts with HF ~ U(hf_near_low, hf_near_high] (default 0.25).
        hf_near_low: lower end, exclusive (default 1.0).
        hf_near_high: upper end (default 1.5).
        hf_far_excess_median: the rest have ``HF = hf_near_high + LogNormal(ln(this), hf_far_sigma)``
            (default median excess 0.8, i.e. median HF 2.3).
        hf_far_sigma: (default 0.8).
    """

    n_borrowers: int = 10_000
    collateral_median_usd: float = 25_000.0
    collateral_sigma: float = 1.8
    collateral_mix: tuple[tuple[str, float], ...] = (("WETH", 0.7), ("WBTC", 0.3))
    second_collateral_prob: float = 0.2
    second_collateral_max_share: float = 0.5
    debt_mix: tuple[tuple[str, float], ...] = (("USDC", 0.4), ("USDT", 0.3), ("DAI", 0.3))
    hf_near_weight: float = 0.25
    hf_near_low: float = 1.0
    hf_near_high: float = 1.5
    hf_far_excess_median: float = 0.8
    hf_far_sigma: float = 0.8

    def __post_init__(self) -> None:
        def num(name: str, lo: float, hi: float) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
                raise DeleverInputError(f"book: field '{name}' = {v!r}, expected a number in [{lo}, {hi}]")

        num("n_borrowers", 1, 10_000_000)
        if int(self.n_borrowers) != self.n_borrowers:
            raise DeleverInputError(f"book: field 'n_borrowers' = {self.n_borrowers!r}, expected an integer")
        num("collateral_median_usd", 1e-6, 1e12)
        num("collateral_sigma", 0.0, 10.0)
        num("second_collateral_prob", 0.0, 1.0)
        num("second_collateral_max_share", 0.0, 1.0)
        num("hf_near_weight", 0.0, 1.0)
        num("hf_near_low", 1.0, 100.0)
        num("hf_near_high", 1.0, 100.0)
        num("hf_far_excess_median", 1e-9, 100.0)
        num("hf_far_sigma", 0.0, 10.0)
        if self.hf_near_high < self.hf_near_low:
            raise DeleverInputError(
                f"book: field 'hf_near_high' = {self.hf_near_high}, expected >= hf_near_low ({self.hf_near_low})"
            )
        for name in ("collateral_mix", "debt_mix"):
            mix = getattr(self, name)
            try:
                shares = np.array([float(s) for _, s in mix])
            except (TypeError, ValueError):
                raise DeleverInputError(f"book: field '{name}' = {mix!r}, expected ((symbol, share), ...)") from None
            if shares.size == 0 or (shares < 0).any() or abs(shares.sum() - 1.0) > 1e-9:
                raise DeleverInputError(f"book: field '{name}' = {mix!r}, expected shares >= 0 summing to 1")


def synthesize_loan_book(
    reserves: ReserveSet, prices: np.ndarray, params: BookParams | None = None, rng: np.random.Generator | int = 0
) -> LoanBook:
    """Draw a loan book at one instant (struct of arrays, token units).

    Per account: collateral value ``V ~ LogNormal(ln(median), sigma)`` USD; main collateral reserve
    from ``collateral_mix``; with ``second_collateral_prob`` a share ``U(0, max_share)`` of V moves to
    another reserve of the mix; HF from the mixture (``hf_near_weight``: ``U(low, high]``; else
    ``high + LogNormal(ln(excess_median), far_sigma)``); debt value ``sum(V_i LT_i) / HF`` in one
    reserve from ``debt_mix``. Tokens = value / price.

    Args:
        reserves: risk parameters (collateral-mix reserves need LT > 0).
        prices: float64 (R,), USD per token at the instant.
        params: :class:`BookParams`.
        rng: generator or seed.

    Returns:
        :class:`LoanBook` with ids ``0..N-1``.

    Raises:
        DeleverInputError: a mix symbol that is not a reserve, or collateral without LT.
    """
    bp = params or BookParams()
    g = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    p = np.asarray(prices, dtype=np.float64)
    if p.shape != (len(reserves),) or not (np.isfinite(p) & (p > 0)).all():
        raise DeleverInputError(f"prices: expected ({len(reserves)},) finite values > 0, got {p}")
    n = int(bp.n_borrowers)
    c_idx = np.array([reserves.index(s) for s, _ in bp.collateral_mix])
    c_sh = np.array([s for _, s in bp.collateral_mix], dtype=np.float64)
    d_idx = np.array([reserves.index(s) for s, _ in bp.debt_mix])
    d_sh = np.array([s for _, s in bp.debt_mix], dtype=np.float64)
    lt = reserves.liquidation_threshold
    if (lt[c_idx] <= 0).any():
        bad = reserves.symbol[c_idx[lt[c_idx] <= 0][0]]
        raise DeleverInputError(f"book: field 'collateral_mix': {bad} has liquidation threshold 0")
    value = bp.collateral_median_usd * np.exp(bp.collateral_sigma * g.standard_normal(n))
    main = g.choice(c_idx.size, size=n, p=c_sh)
    share = np.zeros((n, c_idx.size))
    share[np.arange(n), main] = 1.0
    if c_idx.size > 1:
        second = g.random(n) < bp.second_collateral_prob
        k2 = g.integers(0, c_idx.size - 1, size=n)
        k2 = np.where(k2 >= main, k2 + 1, k2)          # uniform over the other reserves
        frac = np.where(second, g.random(n) * bp.second_collateral_max_share, 0.0)
        share[np.arange(n), main] -= frac
        share[np.arange(n), k2] += frac
    near = g.random(n) < bp.hf_near_weight
    u = 1.0 - g.random(n)                               # (0, 1]
    hf_near = bp.hf_near_low + (bp.hf_near_high - bp.hf_near_low) * u
    hf_far = bp.hf_near_high + bp.hf_far_excess_median * np.exp(bp.hf_far_sigma * g.standard_normal(n))
    hf = np.where(near, hf_near, hf_far)
    coll_val = value[:, None] * share                  # (n, C) USD
    debt_val = (coll_val * lt[c_idx]).sum(axis=1) / hf
    dsel = g.choice(d_idx.size, size=n, p=d_sh)
    R = len(reserves)
    collateral = np.zeros((n, R))
    np.add.at(collateral, (slice(None), c_idx), coll_val / p[c_idx])
    debt = np.zeros((n, R))
    debt[np.arange(n), d_idx[dsel]] = debt_val / p[d_idx[dsel]]
    return LoanBook(reserves, np.arange(n, dtype=np.int64), collateral, debt)

