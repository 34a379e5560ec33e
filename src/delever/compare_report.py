"""Comparison outputs for people: the terminal table (rich) and the HTML report (plotly, works offline).

The table has one row per metric and one column per policy: the value with its confidence interval
and, for every policy but the baseline, the paired difference to the baseline with its interval
(green when the whole interval is below 0, i.e. the policy lowers that loss; red when above). The
report adds bar charts of every metric with interval whiskers, a forest plot of the differences,
the per-path distributions of bad debt, liquidated notional and traders' losses per policy, and for
a frontier the bad debt against liquidated notional per swept value. plotly.js is referenced from the output root (:mod:`delever.plotly_asset`).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import plotly.colors
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots
from rich.console import Console
from rich.table import Table

from delever.compare_result import CompareResult
from delever.plotly_asset import plotly_script_src

__all__ = ["compare_figures", "format_value", "print_compare", "write_compare_report"]

_GRID_COLS = 4
_DISTRIBUTIONS = (
    ("bad_debt_usd", "Bad debt (USD)"),
    ("liquidated_notional_usd", "Liquidated notional (USD)"),
    ("trader_liquidation_loss_usd", "Traders' liquidation losses (USD)"),
)


def format_value(value: float | None, unit: str, signed: bool = False) -> str:
    """``usd``: $1.23M / $45.6k / $789; ``prob``: 12.34 %; ``x``: 1.234x. None -> n/a."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    sign = "+" if signed and value > 0 else ""
    if unit == "prob":
        return f"{sign}{value * 100:.2f} %"
    if unit == "x":
        return f"{sign}{value:.3f}x"
    a = abs(value)
    if a < 0.5:
        return "$0"
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{sign}{'-' if value < 0 else ''}${a / div:.3g}{suffix}"
    return f"{sign}{'-' if value < 0 else ''}${a:,.0f}"


def _interval(ci: list[float | None] | None, unit: str, signed: bool = False) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return "[n/a]"
    return f"[{format_value(ci[0], unit, signed)}, {format_value(ci[1], unit, signed)}]"


def _verdict(cell: dict[str, Any]) -> str:
    """``lower`` / ``higher`` when the difference's whole interval is below / above 0, else ``""``.

    Differences within round-off of the value (1e-9 relative) count as 0: two policies that agree up to
    the order of a sum are not told apart.
    """
    lo, hi = cell.get("diff_ci") or (None, None)
    if lo is None or hi is None:
        return ""
    tol = 1e-9 * max(abs(cell.get("value") or 0.0), 1.0)
    return "lower" if hi < -tol else "higher" if lo > tol else ""


def _cells(summary: dict[str, Any]) -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    """Per metric: (key, label, per policy (value text, diff text, verdict))."""
    base = summary["baseline"]
    out = []
    for m in summary["metrics"]:
        row = []
        for pol in summary["policies"]:
            c = pol["metrics"][m["key"]]
            value = f"{format_value(c['value'], m['unit'])} {_interval(c['ci'], m['unit'])}"
            diff = "" if pol["name"] == base else \
                f"Δ {format_value(c['diff'], m['unit'], True)} {_interval(c['diff_ci'], m['unit'], True)}"
            row.append((value, diff, _verdict(c) if pol["name"] != base else ""))
        out.append((m["key"], m["label"], row))
    return out


def print_compare(summary: dict[str, Any], console: Console) -> None:
    """Print the comparison: metrics x policies, values with intervals and differences to the baseline."""
    what = "frontier" if summary.get("kind") == "frontier" else "compare"
    title = (f"delever {what}: {summary.get('scenario')}  [{summary.get('paths')} paths, seed {summary.get('seed')}, "
             f"{summary.get('confidence', 0.95):.0%} intervals, Δ vs {summary.get('baseline')}]")
    if what == "frontier":
        title += f"\n{summary.get('param')} on {summary.get('policy')}"
    table = Table(title=title, show_lines=True)
    table.add_column("metric")
    for pol in summary["policies"]:
        table.add_column(pol["name"], justify="right")
    for _, label, row in _cells(summary):
        texts = []
        for value, diff, verdict in row:
            style = {"lower": "green", "higher": "red"}.get(verdict)
            texts.append(value + (f"\n[{style}]{diff}[/]" if style else f"\n{diff}" if diff else ""))
        table.add_row(label, *texts)
    console.print(table)
    console.print("[dim]Δ: paired difference to the baseline on the same paths; green/red: the whole interval "
                  "is below/above 0[/]", highlight=False)
    for note in summary.get("notes", []) or []:
        console.print(f"[dim]- {note}[/]", highlight=False)
    if summary.get("run_folder"):
        console.print(f"run folder: [bold]{summary['run_folder']}[/]", highlight=False)


# --------------------------------------------------------------------------- figures
def _err(values: list[float | None], cis: list[list[float | None]]) -> tuple[list[float], list[float]]:
    plus, minus = [], []
    for v, ci in zip(values, cis, strict=True):
        ok = v is not None and ci and ci[0] is not None and ci[1] is not None
        plus.append(max(ci[1] - v, 0.0) if ok else 0.0)
        minus.append(max(v - ci[0], 0.0) if ok else 0.0)
    return plus, minus


def _grid(summary: dict[str, Any], title: str) -> go.Figure:
    n = len(summary["metrics"])
    rows = math.ceil(n / _GRID_COLS)
    fig = make_subplots(rows=rows, cols=_GRID_COLS, subplot_titles=[m["label"] for m in summary["metrics"]],
                        vertical_spacing=0.5 / rows, horizontal_spacing=0.06)
    fig.update_layout(title=title, showlegend=False, height=260 * rows + 80)
    return fig


def _colors(n: int) -> list[str]:
    """One colour per policy, the same in every figure."""
    palette = plotly.colors.qualitative.Plotly
    return [palette[i % len(palette)] for i in range(n)]


def _bars_figure(summary: dict[str, Any]) -> go.Figure:
    fig = _grid(summary, f"Metrics per policy with {summary.get('confidence', 0.95):.0%} intervals")
    names = [p["name"] for p in summary["policies"]]
    colors = _colors(len(names))
    for i, m in enumerate(summary["metrics"]):
        cells = [p["metrics"][m["key"]] for p in summary["policies"]]
        values = [c["value"] for c in cells]
        plus, minus = _err(values, [c["ci"] for c in cells])
        r, c = divmod(i, _GRID_COLS)
        fig.add_trace(go.Bar(x=names, y=[np.nan if v is None else v for v in values], name=m["label"],
                             marker_color=colors,
                             error_y=dict(type="data", symmetric=False, array=plus, arrayminus=minus),
                             hovertext=[f"{n}: {format_value(v, m['unit'])} {_interval(cc['ci'], m['unit'])}"
                                        for n, v, cc in zip(names, values, cells, strict=True)],
                             hoverinfo="text"), row=r + 1, col=c + 1)
    return fig


def _forest_figure(summary: dict[str, Any]) -> go.Figure:
    base = summary["baseline"]
    others = [p for p in summary["policies"] if p["name"] != base]
    fig = _grid(summary, f"Difference to {base} on the same paths (paired bootstrap intervals)")
    names = [p["name"] for p in others]
    for i, m in enumerate(summary["metrics"]):
        cells = [p["metrics"][m["key"]] for p in others]
        diffs = [c["diff"] for c in cells]
        plus, minus = _err(diffs, [c["diff_ci"] for c in cells])
        colors = [{"lower": "seagreen", "higher": "crimson"}.get(_verdict(c), "grey") for c in cells]
        r, c = divmod(i, _GRID_COLS)
        fig.add_trace(go.Scatter(x=[np.nan if d is None else d for d in diffs], y=names, mode="markers",
                                 marker=dict(color=colors, size=9),
                                 error_x=dict(type="data", symmetric=False, array=plus, arrayminus=minus),
                                 hovertext=[f"{n}: Δ {format_value(d, m['unit'], True)} "
                                            f"{_interval(cc['diff_ci'], m['unit'], True)}"
                                            for n, d, cc in zip(names, diffs, cells, strict=True)],
                                 hoverinfo="text"), row=r + 1, col=c + 1)
        fig.add_vline(x=0.0, line=dict(color="black", width=1, dash="dot"), row=r + 1, col=c + 1)
        fig.update_yaxes(showticklabels=c == 0, row=r + 1, col=c + 1)  # the same policies in every panel
    return fig


def _distribution_figure(result: CompareResult) -> go.Figure:
    fig = make_subplots(rows=1, cols=len(_DISTRIBUTIONS), subplot_titles=[t for _, t in _DISTRIBUTIONS])
    colors = _colors(len(result.runs))
    for j, (col, _) in enumerate(_DISTRIBUTIONS):
        for run, color in zip(result.runs, colors, strict=True):
            if col not in run.result.paths.column_names:
                continue
            x = run.result.paths.column(col).to_numpy(zero_copy_only=False).astype(np.float64)
            fig.add_trace(go.Box(y=x, name=run.policy.name, boxpoints="outliers", showlegend=False,
                                 marker_color=color), row=1, col=j + 1)
    fig.update_layout(title="Per-path outcomes per policy (same paths)", height=460)
    return fig


def _frontier_figure(summary: dict[str, Any]) -> go.Figure:
    pols = summary["policies"]
    labels = [str(v) for v in summary.get("values", [p["name"] for p in pols])]
    ys = (("bad_debt_mean_usd", "bad debt, mean (USD)"), ("bad_debt_es_95_usd", "bad debt ES 95 % (USD)"))
    fig = make_subplots(rows=1, cols=2, subplot_titles=[t for _, t in ys])
    xcells = [p["metrics"]["liquidated_notional_mean_usd"] for p in pols]
    xs = [c["value"] for c in xcells]
    xplus, xminus = _err(xs, [c["ci"] for c in xcells])
    for j, (key, title) in enumerate(ys):
        cells = [p["metrics"][key] for p in pols]
        y = [c["value"] for c in cells]
        yplus, yminus = _err(y, [c["ci"] for c in cells])
        fig.add_trace(go.Scatter(x=xs, y=y, mode="lines+markers+text", text=labels, textposition="top center",
                                 showlegend=False, line=dict(dash="dot"),
                                 error_x=dict(type="data", symmetric=False, array=xplus, arrayminus=xminus),
                                 error_y=dict(type="data", symmetric=False, array=yplus, arrayminus=yminus)),
                      row=1, col=j + 1)
        fig.update_xaxes(title_text="liquidated notional, mean (USD)", row=1, col=j + 1)
        fig.update_yaxes(title_text=title, row=1, col=j + 1)
    fig.update_layout(title=f"Frontier: {summary.get('param')} (labels) on {summary.get('policy')}: bad debt against "
                            f"liquidation volume", height=500)
    return fig


def compare_figures(result: CompareResult) -> list[go.Figure]:
    """The report's figures: (frontier chart,) metric bars, difference forest plot, per-path distributions."""
    s = result.summary
    figs = [_frontier_figure(s)] if s.get("kind") == "frontier" else []
    return [*figs, _bars_figure(s), _forest_figure(s), _distribution_figure(result)]


def _html_table(summary: dict[str, Any]) -> str:
    head = "".join(f"<th>{html.escape(p['name'])}</th>" for p in summary["policies"])
    body = []
    for _, label, row in _cells(summary):
        tds = []
        for value, diff, verdict in row:
            color = {"lower": "seagreen", "higher": "crimson"}.get(verdict, "#555")
            tds.append(f"<td>{html.escape(value)}<br><span style='color:{color}'>{html.escape(diff)}</span></td>")
        body.append(f"<tr><td>{html.escape(label)}</td>{''.join(tds)}</tr>")
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(body)}</table>"


def write_compare_report(result: CompareResult, path: Path, asset_root: Path | None = None) -> None:
    """Write the comparison's HTML report atomically; plotly.js is referenced from ``asset_root``.

    Args:
        result: the finished comparison (or frontier).
        path: the HTML file (temporary file + ``os.replace``).
        asset_root: folder that receives ``plotly-<version>.min.js`` once (:mod:`delever.plotly_asset`);
            None: the report's folder.
    """
    from delever.stress import _atomic_write

    s = result.summary
    src = plotly_script_src(path, asset_root)
    parts = []
    for i, fig in enumerate(compare_figures(result)):
        fig.update_layout(template="plotly_white")
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=src if i == 0 else False))
    policies = "".join(f"<li><b>{html.escape(p['name'])}</b> ({html.escape(p['source'])}, config hash "
                       f"<code>{html.escape(str(p['config_hash']))}</code>, engine {html.escape(str(p['engine']))}): "
                       f"{html.escape(p['description'])}<br><code>{html.escape(json.dumps(p['overrides']))}</code></li>"
                       for p in s["policies"])
    notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in s.get("notes", []) or [])
    what = "frontier" if s.get("kind") == "frontier" else "compare"
    title = html.escape(str(s.get("scenario")))
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>delever {what} {title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}}table{{border-collapse:collapse}}
td,th{{padding:3px 10px;border-bottom:1px solid #eee;text-align:right;vertical-align:top}}
td:first-child{{text-align:left}}</style></head><body>
<h1>delever {what}: {title}</h1>
<p>{html.escape(str(s.get('paths')))} paths (seed {html.escape(str(s.get('seed')))}, {html.escape(str(s.get('generator')))},
{html.escape(str(s.get('horizon_s')))} s in steps of {html.escape(str(s.get('dt_s')))} s), the same paths for every
policy (common random numbers). Intervals: {html.escape(str(s.get('ci_method')))}; {html.escape(str(s.get('resamples')))}
replicates, seed {html.escape(str(s.get('bootstrap_seed')))}, level {html.escape(str(s.get('confidence')))}.
Differences (Δ) are to <b>{html.escape(str(s.get('baseline')))}</b>; green: the whole interval is below 0.</p>
{_html_table(s)}
{''.join(parts)}
<h2>Policies</h2><ul>{policies}</ul>
<h2>Notes</h2><ul>{notes}</ul>
</body></html>"""
    _atomic_write(Path(path), lambda fh: fh.write(doc), mode="w")
