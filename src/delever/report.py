"""Terminal summary (rich) and the HTML report (plotly.js from the output root, works offline)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots
from rich.console import Console
from rich.table import Table

from delever.plotly_asset import plotly_script_src
from delever.run_result import RunResult

KEY_FIGURES = (
    ("venue", "venue", "{}"),
    ("mode", "price driver mode", "{}"),
    ("positions", "positions", "{:,}"),
    ("exogenous_move_pct", "exogenous move", "{:+.2f} %"),
    ("final_move_pct", "move with cascade", "{:+.2f} %"),
    ("amplification", "amplification", "{:.3f}x"),
    ("liquidated_notional_usd", "liquidated notional", "${:,.0f}"),
    ("liquidated_long_usd", "  longs", "${:,.0f}"),
    ("liquidated_short_usd", "  shorts", "${:,.0f}"),
    ("liquidation_count", "liquidation events", "{:,}"),
    ("rounds_max", "max rounds in a step", "{}"),
    ("round_cap_hits", "steps at the round cap", "{}"),
    ("insurance_fund_start_usd", "insurance fund start", "${:,.0f}"),
    ("insurance_fund_end_usd", "insurance fund end", "${:,.0f}"),
    ("bad_debt_usd", "bad debt", "${:,.0f}"),
    ("adl_notional_usd", "ADL notional", "${:,.0f}"),
    ("adl_count", "ADL fills", "{:,}"),
    ("ledger_imbalance_usd", "ledger imbalance", "${:.3g}"),
)


def _fmt(fmt: str, value: object) -> str:
    if value is None:
        return "n/a"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def print_summary(summary: dict[str, object], console: Console) -> None:
    """Print the run's key figures, notes and run folder."""
    table = Table(title=f"delever run: {summary.get('scenario')}  [{summary.get('config_hash')} seed {summary.get('seed')}]")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, label, fmt in KEY_FIGURES:
        table.add_row(label, _fmt(fmt, summary.get(key)))
    console.print(table)
    per = summary.get("per_instrument")
    if per:
        t2 = Table(title="per instrument")
        for col in ("instrument", "move", "with cascade", "liquidated", "liq. events", "ADL", "ADL fills", "funding paid"):
            t2.add_column(col, justify="left" if col == "instrument" else "right")
        for row in per:
            t2.add_row(row["instrument"], _fmt("{:+.2f} %", row["exogenous_move_pct"]),
                       _fmt("{:+.2f} %", row["final_move_pct"]), _fmt("${:,.0f}", row["liquidated_notional_usd"]),
                       _fmt("{:,}", row["liquidation_count"]), _fmt("${:,.0f}", row["adl_notional_usd"]),
                       _fmt("{:,}", row["adl_count"]), _fmt("${:,.0f}", row["funding_paid_usd"]))
        console.print(t2)
        console.print(f"accounts liquidated in several instruments: {summary.get('accounts_liquidated_multi_instrument')}"
                      f" of {summary.get('accounts_liquidated')}; ledger imbalance by asset: "
                      f"{summary.get('ledger_imbalance_by_asset')}", highlight=False)
    for note in summary.get("notes", []) or []:
        console.print(f"[dim]- {note}[/]", highlight=False)
    if summary.get("run_folder"):
        console.print(f"run folder: [bold]{summary['run_folder']}[/] ({summary.get('wall_s')} s)", highlight=False)


def _bubble(values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    top = v.max() if v.size and v.max() > 0 else 1.0
    return 5.0 + 30.0 * np.sqrt(np.clip(v, 0.0, None) / top)


def _figures(result: RunResult) -> list[go.Figure]:
    steps = result.tables["steps"].to_pydict()
    t = np.asarray(steps["t_s"])
    figs = []

    price = go.Figure()
    for col, name in (("exogenous_price", "exogenous"), ("index_price", "index"), ("last_price", "traded (last)"),
                      ("mark_price", "mark")):
        price.add_trace(go.Scatter(x=t, y=steps[col], name=name, mode="lines"))
    price.update_layout(title="Price path", xaxis_title="time (s)", yaxis_title="price (USD)")
    figs.append(price)

    liq = make_subplots(rows=1, cols=2, subplot_titles=("Liquidated notional by step", "Liquidated notional by round"))
    liq.add_trace(go.Bar(x=t, y=steps["liquidated_long_usd"], name="longs"), row=1, col=1)
    liq.add_trace(go.Bar(x=t, y=np.negative(steps["liquidated_short_usd"]), name="shorts (negative)"), row=1, col=1)
    rounds = result.tables["rounds"].to_pydict()
    if rounds["step"]:
        liq.add_trace(go.Scatter(x=rounds["t_s"], y=rounds["round"], mode="markers", name="rounds",
                                 marker=dict(size=_bubble(rounds["liquidated_notional_usd"]),
                                             color=rounds["liquidated_notional_usd"], colorscale="Reds",
                                             showscale=True, colorbar=dict(title="USD", x=1.02)),
                                 text=[f"${v:,.0f}" for v in rounds["liquidated_notional_usd"]]), row=1, col=2)
    liq.update_layout(title="Liquidations", barmode="relative")
    liq.update_xaxes(title_text="time (s)")
    liq.update_yaxes(title_text="USD", row=1, col=1)
    liq.update_yaxes(title_text="round within step", row=1, col=2)
    figs.append(liq)

    fund = go.Figure()
    fund.add_trace(go.Scatter(x=t, y=steps["insurance_fund_equity_usd"], name="equity (marked)", mode="lines"))
    fund.add_trace(go.Scatter(x=t, y=steps["insurance_fund_cash_usd"], name="cash", mode="lines"))
    fund.add_trace(go.Scatter(x=t, y=steps["bad_debt_usd"], name="bad debt (cumulative)", mode="lines"))
    fund.update_layout(title=f"{result.prepared.venue.backstop.holder.replace('_', ' ')} balance",
                       xaxis_title="time (s)", yaxis_title="USD")
    figs.append(fund)

    adl = result.tables["adl"].to_pydict()
    adl_fig = go.Figure()
    if adl["step"]:
        adl_fig.add_trace(go.Scatter(x=adl["t_s"], y=adl["notional_usd"], mode="markers", name="ADL fills",
                                     marker=dict(color=adl["rank"], colorscale="Viridis", showscale=True,
                                                 colorbar=dict(title="rank")),
                                     text=[f"account {a} rank {r}" for a, r in zip(adl["account"], adl["rank"], strict=True)]))
    adl_fig.update_layout(title=f"ADL fills ({len(adl['step'])})", xaxis_title="time (s)", yaxis_title="notional (USD)")
    figs.append(adl_fig)
    return figs


def write_html_report(result: RunResult, path: Path, figures: list[go.Figure] | None = None,
                      asset_root: Path | None = None) -> None:
    """Write the HTML report; plotly.js is referenced from ``asset_root`` (works offline).

    Sections: key figures, price path, liquidations by step and round, insurance fund / vault
    balance with bad debt, ADL fills, run notes and the book's assumptions. ``figures`` replaces the
    one-instrument charts (the multi-instrument report, ``delever.report_accounts``). ``asset_root``
    receives ``plotly-<version>.min.js`` once (:mod:`delever.plotly_asset`; None: the report's folder).
    """
    s = result.summary
    rows = "".join(f"<tr><td>{html.escape(label)}</td><td style='text-align:right'>{html.escape(_fmt(fmt, s.get(k)))}</td></tr>"
                   for k, label, fmt in KEY_FIGURES)
    src = plotly_script_src(path, asset_root)
    parts = []
    for i, fig in enumerate(_figures(result) if figures is None else figures):
        fig.update_layout(template="plotly_white", height=430)
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=src if i == 0 else False))
    notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in s.get("notes", []))
    assumptions = html.escape(json.dumps(result.prepared.book_assumptions, indent=2, default=str))
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>delever run {html.escape(str(s['scenario']))}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse}}
td{{padding:2px 12px;border-bottom:1px solid #eee}}pre{{background:#f6f6f6;padding:1em}}</style></head><body>
<h1>delever run: {html.escape(str(s['scenario']))}</h1>
<p>config hash <code>{html.escape(str(s['config_hash']))}</code>, seed {s['seed']}, venue <b>{html.escape(str(s['venue']))}</b>,
mode <b>{html.escape(str(s['mode']))}</b> ({'impact added to the exogenous price' if s['mode'] == 'stress' else 'observed price used as mark, no added impact'}),
driver: {html.escape(str(s['price_driver']))}</p>
<table>{rows}</table>
{''.join(parts)}
<h2>Notes</h2><ul>{notes}</ul>
<h2>Book</h2><p>{html.escape(str(s['book_source']))}</p><pre>{assumptions}</pre>
</body></html>"""
    path.write_text(doc, encoding="utf-8")
