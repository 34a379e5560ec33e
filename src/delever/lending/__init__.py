"""DeFi lending: Aave loan books, health factor, liquidation calls, liquidators selling into AMMs.

``aave``: the engine (v2 / v3.0-3.2 / v3.3+ rules, exact integer reference, synthesizer);
``validate_aave``: the 2021-05-19 Aave v2 validation against the real LiquidationCall events.
"""

from delever.lending.aave import (
    AAVE_POOL,
    AMM_POOL,
    BLOCK_PRODUCER,
    LIQUIDATOR,
    TREASURY,
    VERSIONS,
    AmmPools,
    BookParams,
    CascadeResult,
    LendingLedger,
    LiquidatorParams,
    LoanBook,
    ReserveSet,
    health_factor,
    health_factor_exact,
    liquidation_call_exact,
    plan_liquidation,
    simulate_cascade,
    synthesize_loan_book,
    uniswap_v2_amount_out,
)

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
    "ReserveSet",
    "health_factor",
    "health_factor_exact",
    "liquidation_call_exact",
    "plan_liquidation",
    "simulate_cascade",
    "synthesize_loan_book",
    "uniswap_v2_amount_out",
    "validate_aave_2021_05_19",
]


def __getattr__(name: str):
    if name == "validate_aave_2021_05_19":
        from delever.lending.validate_aave import validate_aave_2021_05_19

        return validate_aave_2021_05_19
    raise AttributeError(name)
