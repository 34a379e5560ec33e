"""Validation against real crashes: statistics, Binance windows, Hyperliquid 2025-10-10, reports, command."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from scipy.stats import pearsonr, spearmanr
from typer.testing import CliRunner

import delever.validate as V
from delever.errors import DeleverInputError
from report_helpers import check_report, entries

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
KLINE_HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
                "taker_buy_quote_volume,ignore")
T0 = 1760131200000
MIN = 60_000


def need_data(*parts: str) -> Path:
    p = DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip("shared data not available")
    return p


# --------------------------------------------------------------------------- statistics
def test_correlations():
    x = np.arange(10.0)
    assert V.correlations(x, 2 * x + 1) == pytest.approx((1.0, 1.0))
    assert V.correlations(x, -x)[0] == pytest.approx(-1.0)
    assert V.correlations(x, np.ones(10)) == (None, None)
    assert V.correlations(np.array([1.0, 2.0]), np.array([2.0, 1.0])) == (None, None)
    r, rho = V.correlations(np.array([1.0, np.nan, 3.0, 4.0, 5.0]), np.array([2.0, 7.0, 1.0, 4.0, 5.0]))
    assert r is not None and rho == pytest.approx(0.8)  # the NaN pair is dropped


def test_lag_scan_is_lag0_pearson_at_zero():
    rng = np.random.default_rng(5)
    obs = rng.random(50)
    est = 0.5 * obs + rng.random(50)
    scan = dict(V.lag_scan(est, obs))
    assert sorted(scan) == list(range(-V.LAG_SCAN_MAX_MINUTES, V.LAG_SCAN_MAX_MINUTES + 1))
    assert scan[0] == pytest.approx(pearsonr(est, obs).statistic, rel=1e-12)
    assert scan[2] == pytest.approx(pearsonr(est[2:], obs[:-2]).statistic, rel=1e-12)
    assert V.best_lag(est, obs) == (max(scan, key=lambda k: scan[k]), max(scan.values()))


def test_best_lag_finds_the_shift():
    rng = np.random.default_rng(3)
    obs = rng.random(60)
    est = np.roll(obs, 2)  # the estimate comes 2 minutes after the observation
    lag, r = V.best_lag(est, obs)
    assert lag == 2 and r == pytest.approx(1.0)
    lag, _ = V.best_lag(np.roll(obs, -1), obs)
    assert lag == -1


def test_level_row_errors():
    row = V._level("x", 100.0, 150.0, "USD")
    assert row["error"] == 50.0 and row["rel_error"] == pytest.approx(0.5)
    assert V._level("x", 0.0, 1.0, "count")["rel_error"] is None
    assert V._level("x", None, 1.0, "count")["error"] is None
    assert V._err_txt({"error": -2.0, "rel_error": -0.25, "unit": "ratio"}) == "-2 (-25 %)"


# --------------------------------------------------------------------------- a. Binance window (synthetic)
def _crash_klines(path: Path, minutes: int = 40) -> Path:
    """``minutes`` one-minute bars: flat, then three legs down; taker sells spike exactly in the new-low minutes."""
    closes = [100_000.0] * 12 + [98_500, 98_700, 98_600, 96_000, 96_500, 96_800, 96_700, 93_000, 94_000, 94_500,
                                 95_000, 95_200, 95_100, 95_000, 90_000, 91_000, 92_000, 92_500]
    closes = (closes + [92_600.0] * max(0, minutes - len(closes)))[:minutes]
    rows = [KLINE_HEADER]
    prev = closes[0]
    running = prev
    for k, c in enumerate(closes):
        lo, hi = min(prev, c), max(prev, c)
        spike = lo < running
        running = min(running, lo)
        vol = 400.0 if spike else 20.0
        buy = 0.2 * vol if spike else 0.5 * vol
        t = T0 + k * MIN
        rows.append(f"{t},{prev},{hi},{lo},{c},{vol},{t + MIN - 1},{vol * c},100,{buy},{buy * c},0")
        prev = c
    path.write_text("\n".join(rows) + "\n")
    return path


def test_binance_window_synthetic_estimate_follows_sells(tmp_path):
    _crash_klines(tmp_path / "w.csv")
    w = V.BinanceWindow(key="synthetic", file="w.csv", open_interest_usd=2.0e8, open_interest_basis="test",
                        long_short_ratio=1.0, insurance_fund_usd=1.0e7,
                        depth={"source": "parametric", "kind": "sqrt", "depth_usd_at_1pct": 5.0e7},
                        entry={"source": "lognormal", "sigma": 0.02}, positions=3000, seed=1)
    ev = V.validate_binance_window(w, tmp_path, ensemble=3)
    stats = {r["statistic"]: r for r in ev["agreement"]}
    r_sell, rho_sell = ev["primary"]
    assert r_sell["statistic"].startswith("Pearson r at lag 0") and rho_sell["statistic"].startswith("Spearman rho at lag 0")
    assert r_sell["value"] > 0.7 and r_sell["band"][0] <= r_sell["band"][2]
    _assert_primary_is_scipy_lag0(ev)
    assert not any("lag" in r["statistic"] and "lag 0" not in r["statistic"] for r in ev["agreement"] + ev["primary"])
    assert len(ev["diagnostics"]) == 2 * V.LAG_SCAN_MAX_MINUTES + 2
    assert "lag chosen after seeing the data" in ev["diagnostics"][-1]["statistic"]
    assert ev["diagnostics"][V.LAG_SCAN_MAX_MINUTES]["value"] == pytest.approx(r_sell["value"])  # scan at lag 0
    choices = {c["choice"]: c for c in ev["post_hoc_choices"]}
    assert choices["warm-up left out of the statistics (WARMUP_MINUTES)"]["value"] == f"{V.WARMUP_MINUTES} minutes"
    assert any(c.startswith("best lag") for c in choices) and all(c["why"] for c in choices.values())
    assert "open_interest_usd" in ev["assumptions"]
    assert stats["of the 5 heaviest taker-sell minutes, minutes with an estimated liquidation"]["value"] >= 3
    peak = next(r for r in ev["metrics"] if r["metric"].startswith("peak minute of liquidations (estimate) vs peak "
                                                                      "minute of taker sells"))
    assert peak["observed"] >= V.WARMUP_MINUTES and peak["simulated"] is not None
    bound = next(r for r in ev["metrics"] if r["metric"].startswith("forced long sells sent to the market"))
    assert bound["observed"] == 1.0 and bound["simulated"] > 0
    assert ev["assumptions"]["warmup_minutes"] == V.WARMUP_MINUTES and ev["assumptions"]["positions"] == 3000
    assert len(ev["series"]["time_utc"]) == 40 and len(ev["series"]["estimated_long_qty"]) == 40


def test_binance_window_bound_flags_too_dense_book(tmp_path):
    """An open interest far beyond what the taker flow can carry shows as minutes over the bound."""
    _crash_klines(tmp_path / "w.csv")
    w = V.BinanceWindow(key="dense", file="w.csv", open_interest_usd=5.0e10, open_interest_basis="test",
                        long_short_ratio=1.0, insurance_fund_usd=1.0e9,
                        depth={"source": "parametric", "kind": "sqrt", "depth_usd_at_1pct": 5.0e9},
                        entry={"source": "lognormal", "sigma": 0.02}, positions=3000, seed=1)
    ev = V.validate_binance_window(w, tmp_path, ensemble=0)
    bound = next(r for r in ev["metrics"] if r["metric"].startswith("forced long sells sent to the market"))
    assert bound["simulated"] > 1.0 and "the bound binds at about" in bound["note"]


def _assert_primary_is_scipy_lag0(ev: dict) -> None:
    """The primary figures are scipy's Pearson and Spearman at lag 0 on the post-warm-up minutes."""
    k = V.WARMUP_MINUTES
    est = np.asarray(ev["series"]["estimated_long_qty"])[k:]
    sell = np.asarray(ev["series"]["taker_sell_volume"])[k:]
    assert ev["primary"][0]["value"] == pytest.approx(pearsonr(est, sell).statistic, rel=1e-12)
    assert ev["primary"][1]["value"] == pytest.approx(spearmanr(est, sell).statistic, rel=1e-12)


# --------------------------------------------------------------------------- a. real window
def test_real_binance_window_2021():
    need_data("binance-um-btcusdt-1m-crash-windows", "BTCUSDT-1m-2021-05-19-window.csv")
    w = dataclasses.replace(V.BINANCE_WINDOWS[1], positions=4000)
    ev = V.validate_binance_window(w, DATA, ensemble=0)
    assert ev["primary"][0]["value"] > 0.5  # the estimate rises where the real selling spikes
    _assert_primary_is_scipy_lag0(ev)
    assert ev["window_utc"] == ["2021-05-19T12:02:00Z", "2021-05-19T14:16:00Z"]
    assert ev["event"] == "binance-btcusdt-2021-05-19" and ev["post_hoc_choices"]


# --------------------------------------------------------------------------- b. Hyperliquid (real)
@pytest.fixture(scope="module")
def hl():
    need_data(V.ADL_DIR)
    need_data("oct10-2025-coins")
    coins = tuple(c for c in V.HL_COINS if c.coin in ("SOL", "XRP", "ETH"))
    return V.validate_hyperliquid_oct10(DATA, quick=True, ensemble=2, policies=False, coins=coins)


def test_hyperliquid_observed_side_is_the_readers(hl):
    m = {r["metric"]: r for r in hl["metrics"]}
    assert m["liquidations, 21:15-21:27"]["observed"] == 63_637
    assert m["ADL-to-liquidation ratio (counts), 21:15-21:27"]["observed"] == pytest.approx(34_983 / 63_637)
    assert m["delay from the first liquidation to the first ADL, s"]["observed"] == pytest.approx(61.704502)
    coins = {c["coin"]: c for c in hl["coins"]}
    assert set(coins) == {"SOL", "XRP", "ETH"}
    assert coins["SOL"]["observed_adl_usd"] == pytest.approx(276.2e6, rel=1e-3)
    assert coins["SOL"]["observed_adl_fills"] == 3031
    adl3 = sum(c["observed_adl_usd"] for c in hl["coins"])
    assert m["ADL notional, the 3 simulated coins"]["observed"] == pytest.approx(adl3)
    tl = hl["timeline"]
    assert len(tl["minute_utc"]) == 12 and sum(tl["observed_liquidations"]) == 63_637
    assert sum(tl["observed_adl_fills"]) == 34_983
    assert tl["observed_adl_fills"][0] == 0 and tl["observed_adl_fills"][1] > 10_000


def test_hyperliquid_simulated_side(hl):
    coins = {c["coin"]: c for c in hl["coins"]}
    sol = coins["SOL"]
    assert sol["max_leverage"] == 20 and sol["positions"] == 2000
    assert sol["sim_liquidated_usd"] > 0 and sol["sim_adl_usd"] * (1 + 1e-12) >= sol["sim_adl_usd_in_window"] >= 0
    assert coins["ETH"]["path_minutes_without_price"] == 3
    m = {r["metric"]: r for r in hl["metrics"]}
    d = m["delay from the first liquidation to the first ADL, s"]
    if d["simulated"] is not None:
        assert d["simulated"] >= 0 and d["simulated"] % 15 == 0  # the 15-s grid
    assert m["ADL notional, the 3 simulated coins"]["band"] is not None
    assert sum(hl["timeline"]["simulated_liquidations"]) == sum(c["sim_liquidations_in_window"] for c in hl["coins"])
    gaps = {g["coin"]: g for g in hl["price_gaps"]}
    assert gaps["SOL"]["fills"] == 43 and gaps["ETH"]["fills"] == 40
    assert gaps["ETH"]["hl_min_fill_usd"] < gaps["ETH"]["path_low_usd"]  # Hyperliquid went below Gemini's low
    assert gaps["ETH"]["book_long_lp_between_hl_min_and_path_low_usd"] > 0
    assert "ETH: Hyperliquid printed more than 1 % below the path's low" in V._gap_paragraph(hl)


def test_hyperliquid_post_hoc_choices(hl):
    choices = {c["choice"]: c for c in hl["post_hoc_choices"]}
    paths = choices["price paths of other venues in place of Hyperliquid's own"]["value"]
    assert set(paths) == {"SOL", "XRP", "ETH"} and "Gemini spot" in paths["ETH"]
    assert "lag 0" in next(r["statistic"] for r in hl["agreement"] if "liquidations per minute" in r["statistic"])


def test_hyperliquid_coin_without_tiers_is_reported(tmp_path):
    need_data(V.ADL_DIR)
    fake = V.HlCoin("NOPE", "oct10-2025-coins/BTCUSDT-1m-2025-10-10-window.csv", "test", 1.0e8)
    ev = V.validate_hyperliquid_oct10(DATA, quick=True, ensemble=0, policies=False,
                                      coins=(fake, next(c for c in V.HL_COINS if c.coin == "TRX")))
    assert [c["coin"] for c in ev["coins"]] == ["TRX"]
    assert any("NOPE: no margin tiers" in n for n in ev["notes"])


def test_adl_policy_comparison():
    need_data(V.ADL_DIR)
    sol = next(c for c in V.HL_COINS if c.coin == "SOL")
    pol = V._policy_comparison([(sol, 20.0)], DATA, quick=True)
    if not pol["available"]:
        pytest.skip(pol["note"])
    rows = {r["policy"]: r for r in pol["rows"]}
    assert set(rows) == set(V.ADL_POLICIES)
    if rows["queue"]["adl_notional_usd"] > 0:
        assert rows["pro_rata"]["accounts"] >= rows["queue"]["accounts"]
        for r in rows.values():
            assert r["haircut_usd"] >= 0 and r["excess_haircut_usd"] >= 0
            assert r["excess_haircut_usd"] == pytest.approx(max(0.0, r["haircut_usd"] - r["shortfall_usd"]))


# --------------------------------------------------------------------------- c. Aave and reports
def test_aave_skipped_when_absent(monkeypatch):
    monkeypatch.setitem(sys.modules, "delever.lending.validate_aave", None)
    ev = V._aave(DATA, quick=True)
    assert ev["kind"] == "skipped" and "not available" in ev["notes"][0]


def test_aave_post_hoc_choices_and_lag0():
    need_data("aave-v2-liquidations-2021")
    need_data("eth-10min-defi-crash-days-stablesims")
    from delever.lending.validate_aave import RESERVE_OVERRIDES_2021_05_19, validate_aave_2021_05_19

    out = validate_aave_2021_05_19(DATA, ensemble=1, sensitivity=False, n_borrowers=500)
    ev = V._aave_event(out, "Aave")
    choices = {c["choice"].split(" (")[0]: c["value"] for c in ev["post_hoc_choices"]}
    assert choices["liquidation bonus overrides read from the day's events"] == RESERVE_OVERRIDES_2021_05_19
    assert choices["Uniswap reserves shift"] == 42 and choices["WBTC log-price beta to ETH"] == 0.83
    r = next(x for x in ev["agreement"] if x["statistic"] == "Pearson r at lag 0, hourly liquidations (main pool, all "
                                                               "assets)")
    assert r["value"] == pytest.approx(pearsonr(out["observed"]["count"], out["simulated"]["count"]["p50"]).statistic)


def test_aave_event_conversion():
    fake = {
        "day": "2021-05-19", "seed": 0, "ensemble": 3, "assumptions": {"book": {"n": 1}}, "notes": ["n1"],
        "totals": {m: {"simulated_p5": 1.0, "simulated_p50": 2.0, "simulated_p95": 3.0, "observed_all": 4.0,
                       "observed_in_scope": 2.0} for m in ("count", "debt_usd", "collateral_usd")},
        "errors": {m: {"all": {"observed_peak_hour": 12, "simulated_peak_hour": 11, "mae": 1.0, "rmse": 2.0,
                               "hours_observed_within_p5_p95": 5}} for m in ("count", "debt_usd", "collateral_usd")},
        "correlation": {m: {"all": {"pearson": 0.5, "spearman": 0.4}, "in_scope": {"pearson": 0.6, "spearman": None}}
                        for m in ("count", "debt_usd", "collateral_usd")},
        "rows": [{"hour": h, "observed_count": 1.0, "sim_count_p50": 2.0, "observed_debt_usd": 3.0,
                  "sim_debt_usd_p50": 4.0, "sim_debt_usd_p5": 3.5, "sim_debt_usd_p95": 4.5} for h in range(24)],
    }
    ev = V._aave_event(fake, "Aave")
    first = ev["metrics"][0]
    assert first["observed"] == 4.0 and first["simulated"] == 2.0 and first["rel_error"] == pytest.approx(-0.5)
    assert ev["metrics"][1]["rel_error"] == pytest.approx(0.0)
    assert len(ev["extra_tables"][0]["rows"]) == 24
    assert "| 12 | 11 |" in V._md_table(["a", "b"], [["12", "11"]])


def _small_report() -> dict:
    ev = {"event": "e1", "title": "Event one", "window_utc": ["a", "b"],
          "metrics": [V._level("m1", 10.0, 12.0, "USD", "n", [11.0, 12.0, 13.0])],
          "primary": [V._stat("Pearson r at lag 0, p1", 0.7, "strong", [0.6, 0.7, 0.8])],
          "agreement": [V._stat("s1", 0.5, "moderate", [0.4, 0.5, 0.6])],
          "diagnostics": [V._stat("best lag (lag chosen after seeing the data)", 1, "r 0.9 at that lag")],
          "post_hoc_choices": [V._choice("warm-up", "10 minutes", "seen in a window"),
                               V._choice("paths", {"BTC": "a.csv"}, "only path")],
          "series": {"time_utc": ["t0", "t1"], "close": [1.0, 2.0], "taker_sell_volume": [1.0, 3.0],
                     "estimated_long_qty": [0.0, 2.0], "estimated_long_p95_qty": [0.0, 2.5]},
          "assumptions": {"open_interest_usd": 1.0e9}, "notes": ["note | with a pipe"]}
    return {"generated_utc": "2026-01-01T00:00:00Z", "quick": True, "data_dir": "d", "events": [ev], "wall_s": 0.1}


def test_write_validation_files(tmp_path):
    out = V.write_validation(_small_report(), tmp_path / "v")
    assert sorted(entries(out)) == ["validation.html", "validation.json", "validation.md"]
    check_report(out / "validation.html", out)  # the asset goes next to the page
    md = (out / "validation.md").read_text()
    assert "| m1 | 10 | 12 | 11 .. 13 | +2 (+20 %) | USD | n |" in md
    assert "note \\| with a pipe" not in md and "- note | with a pipe" in md
    assert "## Headline: correlation at lag 0" in md
    head = md.split("## Headline")[1].split("## Event one")[0]
    assert "| Event one | Pearson r at lag 0, p1 | 0.7 |" in head
    assert "best lag" not in head  # the lag scan is never in the headline
    assert "### Secondary diagnostics: lag scan (lag chosen after seeing the data; never the headline)" in md
    assert "### Choices made after seeing the data" in md and "| warm-up | 10 minutes | seen in a window |" in md
    assert '| paths | {"BTC": "a.csv"} | only path |' in md
    assert "### Assumptions (declared before the comparison)" in md
    assert md.index("### Primary statistic") < md.index("### Observed vs simulated") < md.index("### Secondary diag")
    html = (out / "validation.html").read_text()
    assert html.count("window.PlotlyConfig") == 1 and "<td>m1</td>" in html
    assert "Headline: correlation at lag 0" in html and "<td>warm-up</td>" in html
    js = json.loads((out / "validation.json").read_text())["events"][0]
    assert js["event"] == "e1" and js["post_hoc_choices"][0]["choice"] == "warm-up" and js["primary"][0]["value"] == 0.7


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("validate")(V.validate_command)

    @app.command("noop")
    def noop() -> None:
        pass

    return app


def test_validate_command(monkeypatch, tmp_path):
    seen = {}

    def fake(data_dir, out_dir=None, quick=False, workers=1, ensemble=None):
        seen.update(data_dir=data_dir, out_dir=out_dir, quick=quick, workers=workers)
        rep = _small_report()
        V.write_validation(rep, out_dir)
        return rep

    monkeypatch.setattr(V, "validate_all", fake)
    runner = CliRunner()
    r = runner.invoke(_app(), ["validate", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"), "--quick",
                               "--workers", "1", "--json"])
    assert r.exit_code == 0, r.output
    js = json.loads(r.stdout)
    assert js["events"][0]["metrics"][0]["error"] == 2.0 and js["events"][0]["agreement"][0]["value"] == 0.5
    assert js["events"][0]["primary"][0]["value"] == 0.7 and len(js["events"][0]["post_hoc_choices"]) == 2
    assert seen["quick"] is True and seen["workers"] == 1 and (tmp_path / "o" / "validation.md").is_file()
    r = runner.invoke(_app(), ["validate", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0 and "Event one" in r.stdout and "observed 10, simulated 12" in r.stdout
    assert "primary: Pearson r at lag 0, p1: 0.7" in r.stdout and "choices made after seeing the data: 2" in r.stdout
    r = runner.invoke(_app(), ["validate", "--workers", "0", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--workers" in r.output

    def broken(*a, **k):
        raise DeleverInputError("some-file.csv: row 3: field 'x' is bad")

    monkeypatch.setattr(V, "validate_all", broken)
    r = runner.invoke(_app(), ["validate", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "some-file.csv: row 3" in r.output


# --------------------------------------------------------------------------- --window
WINDOW_2021 = "binance-um-btcusdt-1m-crash-windows/BTCUSDT-1m-2021-05-19-window.csv"


def _window_args(tmp_path: Path, window: str, *extra: str) -> list[str]:
    return ["validate", "--data-dir", str(DATA), "--out", str(tmp_path / "o"), "--quick", "--workers", "1",
            "--window", window, *extra]


def test_window_equals_the_builtin_window(tmp_path):
    """A user's --window with the built-in window's assumptions gives the built-in window's numbers."""
    need_data(WINDOW_2021)
    w = V.BINANCE_WINDOWS[1]
    r = CliRunner().invoke(_app(), _window_args(
        tmp_path, WINDOW_2021, "--instrument", "BTCUSDT", "--json", "--open-interest-usd", str(w.open_interest_usd),
        "--long-short-ratio", str(w.long_short_ratio), "--insurance-fund-usd", str(w.insurance_fund_usd),
        "--depth-usd-at-1pct", str(w.depth["depth_usd_at_1pct"]), "--entry-sigma", str(w.entry["sigma"]),
        "--positions", str(w.positions), "--seed", str(w.seed)))
    assert r.exit_code == 0, r.output
    (got,) = json.loads(r.stdout)["events"]
    ref = V.validate_binance_window(w, DATA, quick=True, ensemble=0)
    for key in ("primary", "agreement", "diagnostics"):
        assert [x["value"] for x in got[key]] == [x["value"] for x in ref[key]]
    assert [(x["observed"], x["simulated"]) for x in got["metrics"]] == [(x["observed"], x["simulated"])
                                                                         for x in ref["metrics"]]
    assert got["primary"][0]["value"] > 0.5 and got["post_hoc_choices"]
    assert "user file" in got["title"] and got["event"] == "binance-btcusdt-BTCUSDT-1m-2021-05-19-window"
    saved = json.loads((tmp_path / "o" / "validation.json").read_text())
    assert [e["event"] for e in saved["events"]] == [got["event"]]
    assert "## Headline: correlation at lag 0" in (tmp_path / "o" / "validation.md").read_text()


def test_window_defaults_and_absolute_path(tmp_path):
    need_data(WINDOW_2021)
    w = V.user_window(DATA / WINDOW_2021, "BTCUSDT", DATA)
    d = V.WINDOW_BOOK_DEFAULTS
    assert w.open_interest_usd == d["open_interest_usd"] and w.positions == d["positions"] and w.user
    assert w.insurance_fund_usd == pytest.approx(d["insurance_fund_fraction_of_oi"] * d["open_interest_usd"])
    assert w.depth["depth_usd_at_1pct"] == pytest.approx(d["depth_fraction_of_oi_at_1pct"] * d["open_interest_usd"])
    assert Path(w.file).is_absolute() and w.key == "BTCUSDT-1m-2021-05-19-window"


@pytest.mark.parametrize("case", ["missing", "columns", "short", "symbol", "no-instrument", "name", "negative-oi",
                                  "option-without-window"])
def test_window_bad_input_exits_2(tmp_path, case):
    need_data(WINDOW_2021)
    short = _crash_klines(tmp_path / "short.csv", minutes=V.MIN_WINDOW_MINUTES - 1)
    cols = tmp_path / "cols.csv"
    cols.write_text("open_time,open,close\n1760131200000,1,1\n")
    eth = tmp_path / "ETHUSDT-1m-2021-05-19-window.csv"
    eth.write_text((DATA / WINDOW_2021).read_text())
    args, expect = {
        "missing": (_window_args(tmp_path, str(tmp_path / "nope.csv"), "--instrument", "BTCUSDT"), "not found"),
        "columns": (_window_args(tmp_path, str(cols), "--instrument", "BTCUSDT"), "header"),
        "short": (_window_args(tmp_path, str(short), "--instrument", "BTCUSDT"), "expected at least"),
        "symbol": (_window_args(tmp_path, WINDOW_2021, "--instrument", "NOSUCHCOINUSDT"), "no margin tiers"),
        "no-instrument": (_window_args(tmp_path, WINDOW_2021), "--instrument"),
        "name": (_window_args(tmp_path, str(eth), "--instrument", "BTCUSDT"), "file name says ETHUSDT"),
        "negative-oi": (_window_args(tmp_path, WINDOW_2021, "--instrument", "BTCUSDT", "--open-interest-usd", "-1"),
                        "--open-interest-usd: expected a positive"),
        "option-without-window": (["validate", "--data-dir", str(DATA), "--open-interest-usd", "1e9"],
                                  "--open-interest-usd: only with --window"),
    }[case]
    r = CliRunner().invoke(_app(), args)
    assert r.exit_code == 2, r.output
    assert expect in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "o").exists()


def test_window_short_synthetic_passes_at_the_minimum(tmp_path):
    """Exactly MIN_WINDOW_MINUTES minutes is accepted (the bound is inclusive)."""
    path = _crash_klines(tmp_path / "w.csv", minutes=V.MIN_WINDOW_MINUTES)
    w = V.user_window(path, "BTCUSDT", tmp_path, open_interest_usd=2.0e8, positions=3000)
    rep = V.validate_window(w, tmp_path, quick=True)
    assert len(rep["events"]) == 1 and rep["events"][0]["primary"][0]["value"] is not None


def test_window_of_another_symbol_takes_its_brackets_from_the_tier_file():
    if not (DATA / "oct10-2025-coins").is_dir():
        pytest.skip("shared data not available")
    w = V.user_window("oct10-2025-coins/SOLUSDT-1m-2025-10-10-window.csv", "SOLUSDT", DATA)
    assert w.instrument == "SOLUSDT"
