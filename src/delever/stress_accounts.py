"""One Monte Carlo path of a multi-instrument stress run: the account engine on a generated ``(T, I)`` path.

The multi-instrument counterpart of :func:`delever.runner.run_path` for :mod:`delever.stress`: the prepared account
book, venue, depths and tiers (:func:`delever.accounts_run.prepare_accounts`) on one generated price path per
instrument, always in ``stress`` mode (the generated price is the exogenous component; the engine adds the impact
of forced orders into each instrument's book), summarized by :func:`delever.accounts_run.account_metrics` into one
flat row: the one-instrument stress columns that exist for accounts, ``liq_usd__<SYMBOL>`` and
``adl_usd__<SYMBOL>`` per instrument, ``accounts_liquidated_multi_instrument`` and ``funding_paid_usd``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from delever.accounts_run import PreparedAccounts, account_metrics, make_account_engine
from delever.multipath import MultiPricePath
from delever.paths import shock_path
from delever.scenario import ShockDriver

__all__ = ["ACCOUNT_INT_COLUMNS", "account_path_row", "account_shock_depleted", "per_instrument_column"]

# counters of an account-engine row (int64 in the block tables)
ACCOUNT_INT_COLUMNS = frozenset({"accounts_liquidated", "accounts_liquidated_multi_instrument", "adl_accounts"})
_NESTED = ("ledger_imbalance_by_asset", "open_interest_mismatch_qty", "instruments", "per_instrument")


def per_instrument_column(prefix: str, symbol: str) -> str:
    """Name of a per-instrument column: ``liq_usd__BTCUSDT``, ``adl_usd__BTCUSDT``."""
    return f"{prefix}__{symbol}"


def account_path_row(prep: PreparedAccounts, t_s: np.ndarray, price: np.ndarray, label: str = "stress") -> dict:
    """Run the account engine of ``prep`` on one generated path and return its per-path metrics.

    Args:
        prep: the prepared multi-instrument run (book, venue, depths, tiers).
        t_s: float64 (T,), seconds since the start, ``t_s[0] == 0``.
        price: float64 (T, I), exogenous price of each instrument (USD, > 0), columns in ``prep.registry`` order.
        label: source label of the path (the run record).

    Returns:
        Flat dict: the scalar keys of :func:`delever.accounts_run.account_metrics`, per-instrument
        ``liq_usd__<SYMBOL>`` / ``adl_usd__<SYMBOL>`` (USD), ``open_interest_mismatch_qty`` (the largest over instruments) and
        ``insurance_depleted`` (any ADL because the backstop's loss exceeded its cash, any bad debt, or backstop
        equity at or below zero at the end, as :func:`delever.runner.path_metrics` defines it).

    Raises:
        DeleverInputError: a path of the wrong shape or with a non-finite or non-positive price.
    """
    symbols = tuple(prep.registry.symbols)
    path = MultiPricePath(symbols, t_s, price, "stress", start_time_utc=prep.path.start_time_utc,
                          labels=(label,) * len(symbols))
    run = dataclasses.replace(prep, path=path)
    eng = make_account_engine(run)
    eng.run()
    m = account_metrics(run, eng)
    row = {k: v for k, v in m.items() if k not in _NESTED}
    oi = m["open_interest_mismatch_qty"]
    row["open_interest_mismatch_qty"] = max((abs(v) for v in oi.values()), default=0.0)  # type: ignore[union-attr]
    for p in m["per_instrument"]:  # type: ignore[union-attr]
        row[per_instrument_column("liq_usd", p["instrument"])] = p["liquidated_notional_usd"]
        row[per_instrument_column("adl_usd", p["instrument"])] = p["adl_notional_usd"]
    fund_end = float(m["insurance_fund_end_usd"])  # type: ignore[arg-type]
    row["insurance_depleted"] = bool(eng.totals.adl_for_loss > 0 or float(m["bad_debt_usd"]) > 0  # type: ignore[arg-type]
                                     or fund_end <= 0)
    return row


def account_shock_depleted(prep: PreparedAccounts, drop_pct: float, duration_s: float, horizon_s: float,
                           dt_s: float) -> bool:
    """Whether a common drop of every instrument by ``drop_pct`` % depletes the insurance fund.

    Every instrument falls linearly by the same ``drop_pct`` % from its start price over ``duration_s`` and holds to
    ``horizon_s`` (:func:`delever.paths.shock_path` on the stress grid ``dt_s``); "depleted" as
    :func:`account_path_row`'s ``insurance_depleted``.
    """
    driver = ShockDriver(move_pct=-drop_pct, duration_s=duration_s, hold_s=max(0.0, horizon_s - duration_s),
                         shape="linear")
    rel = shock_path(driver, 1.0, dt_s)
    start = prep.path.price[0]
    price = rel.price[:, None] * start[None, :]
    price[0] = start
    return bool(account_path_row(prep, rel.t_s, price, f"shock -{drop_pct:g} %")["insurance_depleted"])
