"""Charts of a multi-instrument run (account engine): prices, liquidations and ADL per instrument, the backstop."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from delever.report import write_html_report

if TYPE_CHECKING:
    from delever.run_result import RunResult


def account_figures(result: RunResult) -> list[go.Figure]:
    """Price move per instrument (mark vs exogenous, % from start), liquidated and ADL notional per instrument and
    step, the backstop's equity, and the per-instrument totals."""
    steps = result.tables["steps"].to_pandas()
    figs = []
    price = make_subplots(rows=1, cols=1)
    for sym, g in steps.groupby("instrument", sort=False):
        start = float(g["exogenous_price"].iloc[0])
        price.add_trace(go.Scatter(x=g["t_s"], y=(g["mark_price"] / start - 1) * 100, name=f"{sym} mark", mode="lines"))
    price.update_layout(title="Mark price per instrument, % from start", xaxis_title="time (s)",
                        yaxis_title="move (%)")
    figs.append(price)
    for col, title in (("liquidated_notional_usd", "Liquidated notional per step (USD)"),
                       ("adl_notional_usd", "ADL notional per step (USD)")):
        f = go.Figure()
        for sym, g in steps.groupby("instrument", sort=False):
            if g[col].to_numpy().any():
                f.add_trace(go.Bar(x=g["t_s"], y=g[col], name=str(sym)))
        f.update_layout(title=title, barmode="stack", xaxis_title="time (s)", yaxis_title="USD")
        figs.append(f)
    first = steps.drop_duplicates("step")
    fund = go.Figure(go.Scatter(x=first["t_s"], y=first["backstop_equity_usd"], name="backstop equity", mode="lines"))
    fund.update_layout(title="Backstop equity (USD, at mark)", xaxis_title="time (s)", yaxis_title="USD")
    figs.append(fund)
    per = result.summary.get("per_instrument") or []
    if per:
        syms = [p["instrument"] for p in per]
        tot = go.Figure([go.Bar(x=syms, y=[p["liquidated_notional_usd"] for p in per], name="liquidated"),
                         go.Bar(x=syms, y=[p["adl_notional_usd"] for p in per], name="ADL")])
        tot.update_layout(title="Totals per instrument (USD)", barmode="group", yaxis_title="USD",
                          yaxis_type="log" if np.ptp([p["liquidated_notional_usd"] + 1 for p in per]) > 1e3 else None)
        figs.append(tot)
    return figs


def write_accounts_report(result: RunResult, path: Path, asset_root: Path | None = None) -> None:
    """The run report of a multi-instrument run (same page as a one-instrument run, other charts)."""
    write_html_report(result, path, account_figures(result), asset_root)
