"""Readers for Aave data: v2 LiquidationCall events (2020-12 .. 2022-04), v2 reserve params, v3 reserves.

Sources (see the PROVENANCE.md files):

* ``shared/data/aave-v2-liquidations-2021/liquidations.csv.gz`` -- 11,497 Aave v2 (Ethereum)
  LiquidationCall events collected from the Aave v2 subgraph by RPI IDEA (``DefiResearch/Data``).
* ``shared/data/aave-v2-liquidations-2021/tokens_reserve_params.csv`` -- 52 reserves of the main and
  AMM markets (snapshot ~2021-09): decimals, liquidation threshold and bonus in basis points.
* ``shared/data/risk-params/aave_v3_ethereum_reserves_snapshot_2023-10-31.json`` (and the
  ``_flat.csv`` extract) -- Aave v3 Ethereum reserve configuration read on-chain ~2023-10-31.

**The liquidation file holds two encodings** (found by this reader, not stated in PROVENANCE.md):

* rows 1..6,231 (2020-12-17 .. 2021-07-27): ``collateralAmount``/``principalAmount`` are raw integers
  in the token's base units and every price is in ETH-wei: ``priceUSDTCollateral`` is the oracle
  price of USDT in wei, ``reservePriceETH*`` the asset's price in wei (empty for WETH and AmmWETH,
  whose price is 1 ETH = 1e18 wei by definition).
  Here amount = raw / 10^decimals, ETH/USD = 1e18 / priceUSDT and asset USD = priceETH / priceUSDT.
* rows 6,232..11,497 (2021-07-28 .. 2022-04-03): amounts are already divided by 10^decimals
  (decimal strings), ``priceUSDTCollateral`` is empty, ``reservePriceETH*`` is in ETH (1.0 for
  WETH) and ``reservePriceUSD*`` is the asset's USD price, which is used as is.

Each row's encoding is detected from ``priceUSDTCollateral`` (present = raw) and must match its
amount strings; USD values are then recomputed (the upstream ``amountUSD*``/``amountETH*`` columns
have inconsistent scaling and are ignored, as are the partially filled stability labels). The
``principal*`` columns are the debt repaid by the liquidator and are called ``debt_*`` here.

Reported in ``notes`` (not fatal): the two encodings and their row ranges; rows not in time order;
rows whose collateral and debt prices imply different ETH/USD rates (upstream prices of ENJ, ZRX
and KNC in the second encoding disagree with ETH/USD; those rows' USD values are unreliable, see
``price_consistent``); reserves missing from the params file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from delever.data.files import open_bytes
from delever.data.tardis import (
    _bad,
    _col_bool,
    _col_float,
    _col_int,
    _col_str,
    _first,
    _read_csv_strings,
)
from delever.errors import DeleverInputError

__all__ = [
    "AAVE_V2_AMM_POOL",
    "AAVE_V2_MAIN_POOL",
    "AaveV2Liquidations",
    "AaveV2Reserves",
    "AaveV3Reserves",
    "read_aave_v2_liquidations",
    "read_aave_v2_reserves",
    "read_aave_v3_reserves",
]

AAVE_V2_MAIN_POOL = "0xb53c1a33016b2dc2ff3653530bff1848a515c8c5"
AAVE_V2_AMM_POOL = "0xacc030ef66f9dfeae9cbb0cd1b25654b82cfa8d5"
_ADDR = re.compile(r"^0x[0-9a-fA-F]{40}$")
_INT = re.compile(r"^[0-9]+$")
_WETH_LIKE = frozenset(
    {"WETH", "AmmWETH"}
)  # priced 1 ETH by definition (upstream leaves the ETH price empty)
_WEI = 10**18


# =========================================================================== v2 reserve params
V2_RESERVE_COLUMNS = (
    "borrowingEnabled",
    "decimals",
    "id",
    "pool",
    "reserveLiquidationBonus",
    "reserveLiquidationThreshold",
    "stableBorrowRateEnabled",
    "symbol",
    "usageAsCollateralEnabled",
)


@dataclass
class AaveV2Reserves:
    """Aave v2 reserve parameters (``tokens_reserve_params.csv``), R reserves, snapshot ~2021-09.

    Attributes:
        symbol: str (R,), reserve symbol (AMM-market reserves are prefixed ``Amm``).
        pool: str (R,), LendingPool address (main ``0xb53c...c5c8c5`` or AMM ``0xacc0...2f8d5``).
        asset: str (R,), token address (the upstream ``id`` is asset address ++ pool address).
        decimals: int64 (R,), token decimals.
        liquidation_threshold_bps: int64 (R,), 8250 = 82.5 % (0: not usable as collateral).
        liquidation_bonus_bps: int64 (R,), 10500 = collateral bought at a 5 % discount (0: none).
        borrowing_enabled: bool (R,).
        stable_borrow_rate_enabled: bool (R,).
        usage_as_collateral_enabled: bool (R,).
        path: source file.
    """

    symbol: np.ndarray
    pool: np.ndarray
    asset: np.ndarray
    decimals: np.ndarray
    liquidation_threshold_bps: np.ndarray
    liquidation_bonus_bps: np.ndarray
    borrowing_enabled: np.ndarray
    stable_borrow_rate_enabled: np.ndarray
    usage_as_collateral_enabled: np.ndarray
    path: str

    def __len__(self) -> int:
        return int(self.symbol.shape[0])

    def index(self, symbol: str, pool: str) -> int:
        """Row of reserve ``symbol`` in ``pool``; -1 if absent."""
        hit = np.flatnonzero((self.symbol == symbol) & (self.pool == pool.lower()))
        return int(hit[0]) if hit.size else -1

    @property
    def liquidation_threshold(self) -> np.ndarray:
        """float64 (R,): liquidation threshold as a fraction (0.825)."""
        return self.liquidation_threshold_bps / 1e4

    @property
    def liquidation_bonus(self) -> np.ndarray:
        """float64 (R,): bonus as a fraction above 1 (0.05 for 10500); 0 where the bps value is 0."""
        return np.where(self.liquidation_bonus_bps > 0, self.liquidation_bonus_bps / 1e4 - 1.0, 0.0)


def _bps(t, name: str, lo: int, hi: int, allow_zero: bool = True) -> np.ndarray:
    v = _col_float(t, name)
    whole = np.round(v)
    bad = (whole != v) | (((v < lo) | (v > hi)) & ~((v == 0) & allow_zero))
    if bad.any():
        i = _first(bad)
        raise _bad(t, i, name, t.cell(name, i), f"whole basis points in [{lo}, {hi}] (or 0)")
    return whole.astype(np.int64)


def read_aave_v2_reserves(path: Path | str) -> AaveV2Reserves:
    """Read the Aave v2 ``tokens_reserve_params.csv``.

    Raises:
        DeleverInputError: wrong header; unparsable value; ``id`` not asset address ++ pool address;
            decimals outside 0..36; threshold outside 1..10000 bps or bonus outside 10001..20000 bps
            (0 allowed for both); a (symbol, pool) pair listed twice.
    """
    t = _read_csv_strings(Path(path), V2_RESERVE_COLUMNS, "Aave v2 reserve params CSV")
    pool = np.char.lower(_col_str(t, "pool"))
    ids = _col_str(t, "id")
    asset = []
    for i, (rid, pl) in enumerate(zip(ids.tolist(), pool.tolist(), strict=True)):
        a = rid[: len(rid) - len(pl)]
        if not (rid.lower().endswith(pl) and _ADDR.match(a) and _ADDR.match(pl)):
            raise _bad(t, i, "id", rid, "the asset address followed by the pool address")
        asset.append(a.lower())
    dec = _col_int(t, "decimals")
    bad = (dec < 0) | (dec > 36)
    if bad.any():
        i = _first(bad)
        raise _bad(t, i, "decimals", t.cell("decimals", i), "an integer in 0..36")
    symbol = _col_str(t, "symbol")
    keys = [f"{s}@{p}" for s, p in zip(symbol.tolist(), pool.tolist(), strict=True)]
    seen: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k in seen:
            raise _bad(t, i, "symbol", symbol[i], f"one row per reserve and pool (repeats row {seen[k] + 1})")
        seen[k] = i
    return AaveV2Reserves(
        symbol=symbol,
        pool=pool,
        asset=np.asarray(asset, dtype=np.str_),
        decimals=dec,
        liquidation_threshold_bps=_bps(t, "reserveLiquidationThreshold", 1, 10_000),
        liquidation_bonus_bps=_bps(t, "reserveLiquidationBonus", 10_001, 20_000),
        borrowing_enabled=_col_bool(t, "borrowingEnabled"),
        stable_borrow_rate_enabled=_col_bool(t, "stableBorrowRateEnabled"),
        usage_as_collateral_enabled=_col_bool(t, "usageAsCollateralEnabled"),
        path=str(t.path),
    )


# =========================================================================== v2 liquidations
V2_LIQUIDATION_COLUMNS = (
    "collateralAmount",
    "collateralReserve",
    "pool",
    "principalAmount",
    "principalReserve",
    "timestamp",
    "user",
    "type",
    "priceUSDTCollateral",
    "reservePriceETHPrincipal",
    "reservePriceUSDPrincipal",
    "reservePriceETHCollateral",
    "reservePriceUSDCollateral",
    "amountUSDPincipal",
    "amountUSDCollateral",
    "liquidator",
    "amountETHPincipal",
    "amountETHCollateral",
    "amountUSDPrincipal",
    "principalCollateralStability",
    "principalStability",
    "collateralStability",
)
ENCODING_RAW, ENCODING_SCALED = 0, 1


@dataclass
class AaveV2Liquidations:
    """Aave v2 LiquidationCall events with recomputed amounts and USD values, N rows in file order.

    Attributes:
        timestamp_s: int64 (N,), block time, epoch seconds UTC.
        user: str (N,), liquidated borrower.
        liquidator: str (N,), "" where upstream left it empty (all first-encoding rows).
        pool: str (N,), LendingPool address (lower case).
        collateral_symbol: str (N,), seized collateral reserve.
        debt_symbol: str (N,), repaid debt reserve (upstream ``principalReserve``).
        collateral_amount: float64 (N,), collateral seized, token units.
        debt_amount: float64 (N,), debt repaid, token units.
        collateral_price_usd: float64 (N,), USD per collateral token.
        debt_price_usd: float64 (N,), USD per debt token.
        eth_usd: float64 (N,), ETH/USD of the oracle at that time (first encoding: 1e18 / USDT price
            in wei; second: from the WETH side if either reserve is WETH-like, else from the debt
            side's USD/ETH prices).
        encoding: int8 (N,), 0 raw integers + wei prices, 1 upstream-scaled amounts + ETH/USD prices.
        price_consistent: bool (N,), collateral and debt prices imply the same ETH/USD (to 1e-6);
            always True in the first encoding (one USDT price serves both).
        path: source file.
        notes: reported findings (see module docstring).
    """

    timestamp_s: np.ndarray
    user: np.ndarray
    liquidator: np.ndarray
    pool: np.ndarray
    collateral_symbol: np.ndarray
    debt_symbol: np.ndarray
    collateral_amount: np.ndarray
    debt_amount: np.ndarray
    collateral_price_usd: np.ndarray
    debt_price_usd: np.ndarray
    eth_usd: np.ndarray
    encoding: np.ndarray
    price_consistent: np.ndarray
    path: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.timestamp_s.shape[0])

    @property
    def collateral_usd(self) -> np.ndarray:
        """float64 (N,): USD value of the collateral seized."""
        return self.collateral_amount * self.collateral_price_usd

    @property
    def debt_usd(self) -> np.ndarray:
        """float64 (N,): USD value of the debt repaid."""
        return self.debt_amount * self.debt_price_usd

    @property
    def implied_bonus(self) -> np.ndarray:
        """float64 (N,): ``collateral_usd / debt_usd - 1``; equals the reserve's liquidation bonus at
        that time (0.05, 0.065, 0.075, 0.1, ...) unless the borrower's collateral ran out."""
        return self.collateral_usd / self.debt_usd - 1.0

    @property
    def day(self) -> np.ndarray:
        """str (N,): UTC calendar day ``YYYY-MM-DD`` of each event."""
        return np.datetime_as_string(self.timestamp_s.astype("datetime64[s]"), unit="D")

    def counts_per_day(self) -> tuple[np.ndarray, np.ndarray]:
        """(days str (D,), counts int64 (D,)) for the UTC days that have events, days ascending."""
        days, counts = np.unique(self.day, return_counts=True)
        return days, counts.astype(np.int64)


def _require_positive(t, name: str, v: np.ndarray) -> None:
    bad = ~(v > 0)
    if bad.any():
        i = _first(bad)
        raise _bad(t, i, name, t.cell(name, i), "a price > 0")


def read_aave_v2_liquidations(
    path: Path | str, reserves: AaveV2Reserves | Path | str | None = None
) -> AaveV2Liquidations:
    """Read the Aave v2 ``liquidations.csv(.gz)`` and recompute amounts and USD values per row.

    Args:
        path: the liquidation file.
        reserves: the reserve params (object or path); default ``tokens_reserve_params.csv`` in the
            same folder. Decimals are needed for every first-encoding row.

    Returns:
        :class:`AaveV2Liquidations` with every row of the file, in file order.

    Raises:
        DeleverInputError: wrong header; an unparsable or missing value; ``type`` other than
            ``liquidation``; a timestamp that is not epoch seconds; a first-encoding row whose amount
            is not an integer, whose reserve is not in the params file, or whose non-WETH reserve
            has no ETH price; a second-encoding row without both USD and ETH prices; a non-positive
            price or amount (each message names the row and field).
    """
    p = Path(path)
    if reserves is None:
        reserves = p.parent / "tokens_reserve_params.csv"
    res = reserves if isinstance(reserves, AaveV2Reserves) else read_aave_v2_reserves(reserves)
    t = _read_csv_strings(p, V2_LIQUIDATION_COLUMNS, "Aave v2 liquidations CSV")
    n = t.n
    kind = _col_str(t, "type")
    off = kind != "liquidation"
    if off.any():
        i = _first(off)
        raise _bad(t, i, "type", kind[i], "liquidation")
    ts = _col_int(t, "timestamp")
    bad_ts = (ts < 1_500_000_000) | (ts > 4_000_000_000)
    if bad_ts.any():
        i = _first(bad_ts)
        raise _bad(t, i, "timestamp", t.cell("timestamp", i), "epoch seconds")
    pool = np.char.lower(_col_str(t, "pool"))
    csym, dsym = _col_str(t, "collateralReserve"), _col_str(t, "principalReserve")
    usdt = _col_float(t, "priceUSDTCollateral", allow_empty=True)
    pe = {s: _col_float(t, f"reservePriceETH{s}", allow_empty=True) for s in ("Collateral", "Principal")}
    pu = {s: _col_float(t, f"reservePriceUSD{s}", allow_empty=True) for s in ("Collateral", "Principal")}
    raw_rows = ~np.isnan(usdt)
    dec_of = {
        f"{s}@{pl}": int(d)
        for s, pl, d in zip(res.symbol.tolist(), res.pool.tolist(), res.decimals.tolist(), strict=True)
    }

    amount = {"Collateral": np.empty(n), "Principal": np.empty(n)}
    price = {"Collateral": np.empty(n), "Principal": np.empty(n)}
    eth_usd = np.empty(n)
    consistent = np.ones(n, dtype=bool)
    missing_params: dict[str, int] = {}
    for side, sym, amt_col in (
        ("Collateral", csym, "collateralAmount"),
        ("Principal", dsym, "principalAmount"),
    ):
        strs = t.texts(amt_col)
        for i in range(n):
            s = strs[i].strip()
            if raw_rows[i]:
                if not _INT.match(s):
                    raise _bad(
                        t,
                        i,
                        amt_col,
                        s,
                        "a raw integer amount (priceUSDTCollateral is set, so this row uses raw base units)",
                    )
                key = f"{sym[i]}@{pool[i]}"
                if key not in dec_of:
                    raise _bad(
                        t,
                        i,
                        f"{side.lower()}Reserve",
                        str(sym[i]),
                        f"a reserve listed in {res.path} for pool {pool[i]} (decimals needed)",
                    )
                amount[side][i] = int(s) / 10 ** dec_of[key]
            else:
                try:
                    amount[side][i] = float(s)
                except ValueError:
                    raise _bad(t, i, amt_col, s, "a token amount") from None
                if f"{sym[i]}@{pool[i]}" not in dec_of:
                    missing_params[str(sym[i])] = missing_params.get(str(sym[i]), 0) + 1
        nonpos = ~(amount[side] > 0) | ~np.isfinite(amount[side])
        if nonpos.any():
            i = _first(nonpos)
            raise _bad(t, i, amt_col, strs[i], "an amount > 0")

    # --- first encoding: wei prices, one USDT price
    _require_positive(t, "priceUSDTCollateral", np.where(raw_rows, usdt, 1.0))
    weth = {s: np.isin(sym, list(_WETH_LIKE)) for s, sym in (("Collateral", csym), ("Principal", dsym))}
    for s in ("Collateral", "Principal"):
        need = raw_rows & ~weth[s] & np.isnan(pe[s])
        if need.any():
            i = _first(need)
            raise _bad(
                t,
                i,
                f"reservePriceETH{s}",
                "",
                "the asset's oracle price in wei (only WETH/AmmWETH may be empty)",
            )
        wei = np.where(weth[s], float(_WEI), pe[s])
        price[s][raw_rows] = (wei / usdt)[raw_rows]
    eth_usd[raw_rows] = (_WEI / usdt)[raw_rows]

    # --- second encoding: USD prices given, ETH prices in ETH
    sc = ~raw_rows
    for s in ("Collateral", "Principal"):
        for col, arr in ((f"reservePriceUSD{s}", pu[s]), (f"reservePriceETH{s}", pe[s])):
            bad = sc & ~(arr > 0)
            if bad.any():
                i = _first(bad)
                raise _bad(
                    t, i, col, t.cell(col, i),
                    "a price > 0 (priceUSDTCollateral is empty, so this row uses upstream USD/ETH prices)",
                )  # fmt: skip
        price[s][sc] = pu[s][sc]
    e_col, e_debt = pu["Collateral"] / pe["Collateral"], pu["Principal"] / pe["Principal"]
    consistent[sc] = (np.abs(e_col / e_debt - 1.0) <= 1e-6)[sc]
    eth_usd[sc] = np.where(weth["Collateral"] & ~weth["Principal"], e_col, e_debt)[sc]

    notes: list[str] = []
    idx_raw, idx_sc = np.flatnonzero(raw_rows) + 1, np.flatnonzero(sc) + 1

    def span(idx: np.ndarray) -> str:
        if idx.size == 0:
            return "none"
        sel = ts[idx - 1]
        first, last = (
            np.datetime_as_string(np.datetime64(int(v), "s"), unit="D") for v in (sel.min(), sel.max())
        )
        contiguous = idx[-1] - idx[0] + 1 == idx.size
        rows = (
            f"rows {idx[0]}-{idx[-1]}"
            if contiguous
            else f"{idx.size} rows from row {idx[0]} (not contiguous)"
        )
        return f"{rows} ({idx.size} rows, {first} to {last})"

    notes.append(
        f"{p}: amounts/prices in two encodings: raw base units + wei prices in {span(idx_raw)}; "
        f"upstream-scaled token amounts + ETH/USD prices in {span(idx_sc)}; USD values recomputed per encoding"
    )
    back = np.diff(ts) < 0
    if back.any():
        notes.append(
            f"{p}: rows are not in time order ({int(back.sum())} backward steps, first at row {_first(back) + 2}); "
            "file order kept"
        )
    if not consistent.all():
        rows = np.flatnonzero(~consistent) + 1
        sym_rows = np.concatenate([csym[rows - 1], dsym[rows - 1]])
        names, counts = np.unique(sym_rows, return_counts=True)
        top = ", ".join(f"{names[k]} {counts[k]}" for k in np.argsort(-counts, kind="stable")[:5])
        notes.append(
            f"{p}: {rows.size} rows where collateral and debt prices imply different ETH/USD (upstream price "
            f"inconsistency; rows per asset: {top}), rows {', '.join(map(str, rows[:10]))}"
            + (" ..." if rows.size > 10 else "")
            + "; their USD values are unreliable (price_consistent = False)"
        )
    if missing_params:
        listed = ", ".join(f"{k} ({v} rows)" for k, v in sorted(missing_params.items()))
        notes.append(f"{p}: reserves not in {res.path} (not needed: those rows are already scaled): {listed}")
    return AaveV2Liquidations(
        timestamp_s=ts,
        user=_col_str(t, "user"),
        liquidator=_col_str(t, "liquidator", allow_empty=True),
        pool=pool,
        collateral_symbol=csym,
        debt_symbol=dsym,
        collateral_amount=amount["Collateral"],
        debt_amount=amount["Principal"],
        collateral_price_usd=price["Collateral"],
        debt_price_usd=price["Principal"],
        eth_usd=eth_usd,
        encoding=np.where(raw_rows, ENCODING_RAW, ENCODING_SCALED).astype(np.int8),
        price_consistent=consistent,
        path=str(p),
        notes=notes,
    )


# =========================================================================== v3 reserves
V3_FLAT_COLUMNS = (
    "symbol",
    "underlying",
    "decimals",
    "ltv",
    "liquidationThreshold",
    "liquidationBonus",
    "liquidationProtocolFee",
    "reserveFactor",
    "eModeCategory",
    "usageAsCollateralEnabled",
    "borrowingEnabled",
    "isFrozen",
    "isActive",
    "isPaused",
    "isSiloed",
    "isBorrowableInIsolation",
    "debtCeiling",
    "supplyCap",
    "borrowCap",
    "oracleDescription",
    "oracleDecimals",
    "oracleLatestAnswer",
    "interestRateStrategy",
)
_V3_INT = (
    "decimals",
    "ltv",
    "liquidationThreshold",
    "liquidationBonus",
    "liquidationProtocolFee",
    "reserveFactor",
    "eModeCategory",
    "debtCeiling",
    "supplyCap",
    "borrowCap",
    "oracleLatestAnswer",
)
_V3_BOOL = (
    "usageAsCollateralEnabled",
    "borrowingEnabled",
    "isFrozen",
    "isActive",
    "isPaused",
    "isSiloed",
    "isBorrowableInIsolation",
)


@dataclass
class AaveV3Reserves:
    """Aave v3 reserve configuration snapshot, R reserves (Ethereum, ~2023-10-31).

    Attributes:
        symbol: str (R,).
        underlying: str (R,), token address (checksummed as published).
        decimals: int64 (R,).
        ltv_bps: int64 (R,), max loan-to-value, 8050 = 80.5 %.
        liquidation_threshold_bps: int64 (R,), 8300 = 83 %.
        liquidation_bonus_bps: int64 (R,), 10500 = +5 % (0 where not collateral).
        liquidation_protocol_fee_bps: int64 (R,), share of the bonus kept by the protocol.
        reserve_factor_bps: int64 (R,).
        emode_category: int64 (R,), 0 = none.
        usage_as_collateral_enabled, borrowing_enabled, is_frozen, is_active, is_paused, is_siloed,
        is_borrowable_in_isolation: bool (R,) each.
        debt_ceiling: int64 (R,), isolation-mode debt ceiling as published (Aave stores it with 2
            decimals: 450000000 = 4.5 M USD); 0 = not isolated.
        supply_cap: int64 (R,), whole tokens, 0 = no cap.
        borrow_cap: int64 (R,), whole tokens, 0 = no cap.
        oracle_description: str (R,), "" where the snapshot has none.
        oracle_decimals: int64 (R,), -1 where the snapshot has none (rETH).
        oracle_latest_answer: int64 (R,), raw oracle answer.
        interest_rate_strategy: str (R,), strategy contract address.
        emodes: {category: {"label", "ltv", "liquidationThreshold", "liquidationBonus"}} (JSON only;
            empty for the flat CSV).
        path: source file.
        notes: reported findings (missing oracle fields).
    """

    symbol: np.ndarray
    underlying: np.ndarray
    decimals: np.ndarray
    ltv_bps: np.ndarray
    liquidation_threshold_bps: np.ndarray
    liquidation_bonus_bps: np.ndarray
    liquidation_protocol_fee_bps: np.ndarray
    reserve_factor_bps: np.ndarray
    emode_category: np.ndarray
    usage_as_collateral_enabled: np.ndarray
    borrowing_enabled: np.ndarray
    is_frozen: np.ndarray
    is_active: np.ndarray
    is_paused: np.ndarray
    is_siloed: np.ndarray
    is_borrowable_in_isolation: np.ndarray
    debt_ceiling: np.ndarray
    supply_cap: np.ndarray
    borrow_cap: np.ndarray
    oracle_description: np.ndarray
    oracle_decimals: np.ndarray
    oracle_latest_answer: np.ndarray
    interest_rate_strategy: np.ndarray
    emodes: dict[int, dict]
    path: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.symbol.shape[0])

    @property
    def price_usd(self) -> np.ndarray:
        """float64 (R,): oracle price, ``answer / 10**oracle_decimals`` USD; NaN where decimals are missing."""
        dec = np.where(self.oracle_decimals >= 0, self.oracle_decimals, 0).astype(np.float64)
        return np.where(self.oracle_decimals >= 0, self.oracle_latest_answer / 10.0**dec, np.nan)


_SNAKE = {
    "ltv": "ltv_bps",
    "liquidationThreshold": "liquidation_threshold_bps",
    "liquidationBonus": "liquidation_bonus_bps",
    "liquidationProtocolFee": "liquidation_protocol_fee_bps",
    "reserveFactor": "reserve_factor_bps",
    "eModeCategory": "emode_category",
    "usageAsCollateralEnabled": "usage_as_collateral_enabled",
    "borrowingEnabled": "borrowing_enabled",
    "isFrozen": "is_frozen",
    "isActive": "is_active",
    "isPaused": "is_paused",
    "isSiloed": "is_siloed",
    "isBorrowableInIsolation": "is_borrowable_in_isolation",
    "debtCeiling": "debt_ceiling",
    "supplyCap": "supply_cap",
    "borrowCap": "borrow_cap",
    "oracleDescription": "oracle_description",
    "oracleDecimals": "oracle_decimals",
    "oracleLatestAnswer": "oracle_latest_answer",
    "interestRateStrategy": "interest_rate_strategy",
    "decimals": "decimals",
    "symbol": "symbol",
    "underlying": "underlying",
}


def _v3_check(cols: dict[str, np.ndarray], where: list[str], path: Path) -> None:
    """Cross-field checks shared by the JSON and CSV forms (``where[i]`` names reserve i)."""
    ltv, lt, bonus = cols["ltv_bps"], cols["liquidation_threshold_bps"], cols["liquidation_bonus_bps"]
    for i in range(len(where)):
        if not (0 <= ltv[i] <= lt[i] <= 10_000):
            raise DeleverInputError(
                f"{path}: {where[i]}: expected 0 <= ltv ({ltv[i]}) <= liquidationThreshold ({lt[i]}) <= 10000"
            )
        if lt[i] > 0 and not 10_000 < bonus[i] <= 20_000:
            raise DeleverInputError(
                f"{path}: {where[i]}: field 'liquidationBonus' = {bonus[i]}, expected 10001..20000 bps for a collateral reserve"
            )


def _v3_notes(cols: dict[str, np.ndarray], path: Path) -> list[str]:
    miss = [str(s) for s, d in zip(cols["symbol"], cols["oracle_decimals"], strict=True) if d < 0]
    return (
        [f"{path}: oracleDecimals missing for {', '.join(miss)}; price_usd is NaN there (not guessed)"]
        if miss
        else []
    )


def read_aave_v3_reserves(path: Path | str) -> AaveV3Reserves:
    """Read the Aave v3 reserve snapshot: the BGD-Labs ``.json`` report or the ``_flat.csv`` extract.

    Args:
        path: ``aave_v3_ethereum_reserves_snapshot_2023-10-31.json`` or ``..._flat.csv``.

    Returns:
        :class:`AaveV3Reserves` (JSON: reserves in the file's key order; CSV: file order).

    Raises:
        DeleverInputError: missing/mistyped field (JSON: named ``reserves.<address>.<field>``; CSV:
            row and field); ``ltv <= liquidationThreshold <= 10000`` violated; a collateral reserve
            with a bonus outside 10001..20000 bps.
    """
    p = Path(path)
    if p.name.lower().endswith((".json", ".json.gz")):
        raw = open_bytes(p, "Aave v3 reserve snapshot")
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DeleverInputError(f"{p}: not valid JSON ({exc})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("reserves"), dict) or not doc["reserves"]:
            raise DeleverInputError(
                f"{p}: field 'reserves' is missing or empty, expected an object of reserves"
            )
        cols: dict[str, list] = {v: [] for v in _SNAKE.values()}
        where = []
        for addr, r in doc["reserves"].items():
            w = f"reserves.{addr}"
            where.append(w)
            if not isinstance(r, dict):
                raise DeleverInputError(f"{p}: field '{w}' is not an object")
            for src, dst in _SNAKE.items():
                cols[dst].append(_v3_json_value(r, src, f"{w}.{src}", p))
        arrays = _v3_arrays(cols)
        emodes: dict[int, dict] = {}
        for k, e in (doc.get("eModes") or {}).items():
            if not isinstance(e, dict) or any(
                not isinstance(e.get(f), int) for f in ("ltv", "liquidationThreshold", "liquidationBonus")
            ):
                raise DeleverInputError(
                    f"{p}: field 'eModes.{k}' expected ltv, liquidationThreshold, liquidationBonus integers"
                )
            emodes[int(k)] = {
                f: e[f] for f in ("label", "ltv", "liquidationThreshold", "liquidationBonus") if f in e
            }
        notes = _v3_notes(arrays, p)
    else:
        t = _read_csv_strings(p, V3_FLAT_COLUMNS, "Aave v3 flat reserves CSV")
        cols = {}
        for src in V3_FLAT_COLUMNS:
            dst = _SNAKE[src]
            if src in _V3_BOOL:
                cols[dst] = _col_bool(t, src)
            elif src == "oracleDecimals":
                cols[dst] = _col_int(t, src, allow_empty=True, empty=-1)
            elif src in _V3_INT:
                v = _col_int(t, src)
                neg = v < 0
                if neg.any():
                    i = _first(neg)
                    raise _bad(t, i, src, t.cell(src, i), "an integer >= 0")
                cols[dst] = v
            else:
                cols[dst] = _col_str(t, src, allow_empty=src == "oracleDescription")
        arrays = _v3_arrays(cols)
        where = [f"row {i + 1}" for i in range(t.n)]
        emodes = {}
        notes = _v3_notes(arrays, p)
    _v3_check(arrays, where, p)
    return AaveV3Reserves(**arrays, emodes=emodes, path=str(p), notes=notes)


def _v3_json_value(r: dict, src: str, where: str, path: Path) -> object:
    """One typed field of a JSON reserve; missing oracle decimals/description become -1/""."""
    v = r.get(src)
    if src == "oracleDecimals" and v is None:
        return -1
    if src == "oracleDescription" and v is None:
        return ""
    if src in _V3_BOOL:
        ok, expected = isinstance(v, bool), "true/false"
    elif src in _V3_INT or src == "oracleDecimals":
        ok, expected = isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"
    else:
        ok, expected = isinstance(v, str), "a string"
    if not ok:
        raise DeleverInputError(f"{path}: field '{where}' = {v!r}, expected {expected}")
    return v


def _v3_arrays(cols: dict) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for src, dst in _SNAKE.items():
        v = cols[dst]
        if src in _V3_BOOL:
            out[dst] = np.asarray(v, dtype=bool)
        elif src in _V3_INT or src == "oracleDecimals":
            out[dst] = np.asarray(v, dtype=np.int64)
        else:
            out[dst] = np.asarray(v, dtype=np.str_)
    return out
