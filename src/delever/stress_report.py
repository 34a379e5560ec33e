"""Stress run outputs for people: the terminal summary (rich) and the HTML report (plotly, works offline).

The report has the key risk figures, a fan chart of the generated price paths (quantile bands
1/5/25/50/75/95/99 % per step) and histograms of liquidated notional, bad debt, ADL notional and
amplification over the paths. plotly.js is written once to the output root and referenced by a
relative path (:mod:`delever.plotly_asset`), so the file opens without a network.
"""

from __future__ import annotations

import html
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots
from rich.console import Console
from rich.table import Table

from delever.plotly_asset import plotly_script_src
from delever.stress_result import StressResult

__all__ = ["STRESS_FIGURES", "print_stress_summary", "stress_figures", "write_stress_report"]

STRESS_FIGURES = (
    ("paths", "paths", "{:,}"),
    ("engine", "engine", "{}"),
    ("executor", "executor", "{}"),
    ("positions", "positions", "{:,}"),
    ("generator", "price paths", "{}"),
    ("lar_95_usd", "LaR 95 % (liquidated notional)", "${:,.0f}"),
    ("lar_99_usd", "LaR 99 %", "${:,.0f}"),
    ("bad_debt_var_95_usd", "bad debt VaR 95 %", "${:,.0f}"),
    ("bad_debt_var_99_usd", "bad debt extreme VaR 99 %", "${:,.0f}"),
    ("bad_debt_es_95_usd", "bad debt ES 95 %", "${:,.0f}"),
    ("bad_debt_es_99_usd", "bad debt ES 99 %", "${:,.0f}"),
    ("p_insurance_depleted", "P(insurance fund depleted)", "{:.2%}"),
    ("p_adl", "P(ADL)", "{:.2%}"),
    ("amplification_p50", "amplification median", "{:.3f}x"),
    ("amplification_p99", "amplification 99 %", "{:.3f}x"),
    ("critical_shock_pct", "critical shock (drop depleting the fund)", "{:.2f} %"),
    ("paths_per_s", "paths/s", "{:,.1f}"),
    ("wall_s", "wall time", "{:.2f} s"),
)
_FAN_BANDS = (("p01", "p99", "1-99 %", 0.12), ("p05", "p95", "5-95 %", 0.22), ("p25", "p75", "25-75 %", 0.38))
_HISTOGRAMS = (
    ("liquidated_notional_usd", "Liquidated notional (USD)"),
    ("bad_debt_usd", "Bad debt (USD)"),
    ("adl_notional_usd", "ADL notional (USD)"),
    ("amplification", "Amplification (x)"),
)


def _fmt(fmt: str, value: object) -> str:
    if value is None:
        return "n/a"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def _ci(summary: dict[str, Any], key: str) -> str:
    ci = summary.get(f"{key}_ci95")
    return f" [{ci[0]:.2%}, {ci[1]:.2%}]" if isinstance(ci, list | tuple) and len(ci) == 2 else ""


def _rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key, label, fmt in STRESS_FIGURES:
        text = _fmt(fmt, summary.get(key))
        if key in ("p_insurance_depleted", "p_adl") and summary.get(key) is not None:
            text += _ci(summary, key)
        if key == "critical_shock_pct" and summary.get(key) is not None:
            text += f" ± {summary.get('critical_shock_tolerance_pct', 0):g}"
            if summary.get("critical_shock_applies_to"):
                text += f" ({summary['critical_shock_applies_to']})"
        rows.append((label, text))
        if key == "lar_99_usd":
            for sym, v in (summary.get("lar_99_usd_by_instrument") or {}).items():
                rows.append((f"  LaR 99 % {sym}", _fmt(fmt, v)))
    return rows


def print_stress_summary(summary: dict[str, Any], console: Console) -> None:
    """Print a stress run's key figures, notes and run folder."""
    table = Table(title=f"delever stress: {summary.get('scenario')}  "
                        f"[{summary.get('config_hash')} seed {summary.get('seed')}]")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for label, text in _rows(summary):
        table.add_row(label, text)
    console.print(table)
    for note in summary.get("notes", []) or []:
        console.print(f"[dim]- {note}[/]", highlight=False)
    if summary.get("run_folder"):
        console.print(f"run folder: [bold]{summary['run_folder']}[/]", highlight=False)


def _fan_figure(fan: dict[str, Any], start_price: float | None) -> go.Figure:
    t = np.asarray(fan["t_s"], dtype=np.float64)
    q = {k: np.asarray(v, dtype=np.float64) for k, v in fan["quantiles"].items()}
    fig = go.Figure()
    for lo, hi, name, alpha in _FAN_BANDS:
        if lo not in q or hi not in q:
            continue
        fig.add_trace(go.Scatter(x=t, y=q[lo], mode="lines", line=dict(width=0), showlegend=False,
                                 hoverinfo="skip", legendgroup=name))
        fig.add_trace(go.Scatter(x=t, y=q[hi], mode="lines", line=dict(width=0), fill="tonexty",
                                 fillcolor=f"rgba(31,119,180,{alpha})", name=name, legendgroup=name))
    if "p50" in q:
        fig.add_trace(go.Scatter(x=t, y=q["p50"], mode="lines", name="median", line=dict(color="rgb(31,119,180)")))
    if start_price:
        fig.add_hline(y=start_price, line=dict(color="grey", dash="dot"), annotation_text="start")
    which = f"{fan['instrument']}, " if fan.get("instrument") else ""
    fig.update_layout(title=f"Generated price paths: quantile bands per step ({which}{fan.get('paths', '?')} paths)",
                      xaxis_title="time (s)", yaxis_title="exogenous price (USD)")
    return fig


def _hist_figure(result: StressResult) -> go.Figure:
    fig = make_subplots(rows=2, cols=2, subplot_titles=[t for _, t in _HISTOGRAMS])
    names = result.paths.column_names
    for i, (col, title) in enumerate(_HISTOGRAMS):
        r, c = divmod(i, 2)
        if col not in names:
            continue
        values = result.paths.column(col).to_numpy(zero_copy_only=False).astype(np.float64)
        values = values[np.isfinite(values)]
        if values.size and values.min() == values.max():  # one value on every path: say so, no solid block
            fig.add_trace(go.Bar(x=[float(values[0])], y=[values.size], name=title, showlegend=False, width=[0.6],
                                 text=[f"all {values.size} paths: {values[0]:,.6g}"], textposition="outside"),
                          row=r + 1, col=c + 1)
            fig.update_xaxes(range=[float(values[0]) - 1.0, float(values[0]) + 1.0], row=r + 1, col=c + 1)
        else:
            fig.add_trace(go.Histogram(x=values, name=title, showlegend=False, nbinsx=50), row=r + 1, col=c + 1)
        fig.update_xaxes(title_text=title, row=r + 1, col=c + 1)
        fig.update_yaxes(title_text="paths", row=r + 1, col=c + 1)
    fig.update_layout(title="Outcomes over the paths")
    return fig


def stress_figures(result: StressResult) -> list[go.Figure]:
    """The report's figures: the price fan chart and the 2 x 2 outcome histograms."""
    return [_fan_figure(result.fan, result.summary.get("start_price")), _hist_figure(result)]


def write_stress_report(result: StressResult, path: Path, asset_root: Path | None = None) -> None:
    """Write the stress run's HTML report atomically; plotly.js is referenced from ``asset_root``.

    Args:
        result: the finished stress run.
        path: the HTML file to write (replaced atomically: temporary file + ``os.replace``).
        asset_root: folder that receives ``plotly-<version>.min.js`` once (:mod:`delever.plotly_asset`);
            None: the report's folder.
    """
    s = result.summary
    rows = "".join(f"<tr><td>{html.escape(label)}</td><td style='text-align:right'>{html.escape(text)}</td></tr>"
                   for label, text in _rows(s))
    src = plotly_script_src(path, asset_root)
    parts = []
    for i, fig in enumerate(stress_figures(result)):
        fig.update_layout(template="plotly_white", height=520 if i else 460)
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=src if i == 0 else False))
    notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in s.get("notes", []) or [])
    dists = {k: s[k] for k in ("liquidated_notional_dist", "bad_debt_dist", "adl_notional_dist",
                               "amplification_dist") if k in s}
    title = html.escape(str(s.get("scenario")))
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>delever stress {title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse}}
td{{padding:2px 12px;border-bottom:1px solid #eee}}pre{{background:#f6f6f6;padding:1em}}</style></head><body>
<h1>delever stress: {title}</h1>
<p>config hash <code>{html.escape(str(s.get('config_hash')))}</code>, seed {html.escape(str(s.get('seed')))},
venue <b>{html.escape(str(s.get('venue')))}</b>, {html.escape(str(s.get('paths')))} paths over
{html.escape(str(s.get('horizon_s')))} s (step {html.escape(str(s.get('dt_s')))} s), engine
<b>{html.escape(str(s.get('engine')))}</b>. Quantiles: numpy linear interpolation (type 7); ES = mean of
the outcomes at or beyond the VaR; probabilities with Wilson 95 % intervals.</p>
<table>{rows}</table>
{''.join(parts)}
<h2>Distributions</h2><pre>{html.escape(json.dumps(dists, indent=2))}</pre>
<h2>Notes</h2><ul>{notes}</ul>
</body></html>"""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(doc, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
