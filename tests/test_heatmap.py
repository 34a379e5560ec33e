"""Liquidation map (no feedback / feedback), ensemble bands, price x time heatmap, outputs and the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from delever.book import PositionBook
from delever.errors import DeleverInputError
from delever.heatmap import (
    EnsembleSpread,
    HeatmapOptions,
    build_heatmap,
    ensemble_bands,
    heatmap_command,
    level_grid,
    liquidation_heatmap,
    liquidation_map,
    liquidation_prices,
    map_no_feedback,
    perturbed_scenario,
    write_heatmap,
)
from delever.runner import prepare
from delever.scenario import load_scenario
from report_helpers import check_report, entries

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
EXAMPLE = ROOT / "examples" / "binance-btcusdt-2025-10-10.toml"
KLINE_HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
                "taker_buy_quote_volume,ignore")
T0 = 1760131200000  # 2025-10-10 21:20:00 UTC, ms
MIN = 60_000


def _prep(*overrides: str, positions: int = 2000):
    sc = load_scenario(None, [f"book.synthesize.positions={positions}", *overrides])
    return prepare(sc, DATA)


@pytest.fixture(scope="module")
def prep():
    return _prep()


def _write_klines(path: Path, closes: list[float]) -> Path:
    """1-minute klines whose bar k goes from closes[k-1] to closes[k] (open of bar 0 = closes[0])."""
    rows = [KLINE_HEADER]
    prev = closes[0]
    for k, c in enumerate(closes):
        o, hi, lo = prev, max(prev, c), min(prev, c)
        t = T0 + k * MIN
        rows.append(f"{t},{o},{hi},{lo},{c},{10.0 + k},{t + MIN - 1},{(10.0 + k) * c},42,5.0,{5.0 * c},0")
        prev = c
    path.write_text("\n".join(rows) + "\n")
    return path


# --------------------------------------------------------------------------- the map, no feedback
def test_no_feedback_map_is_exact_at_the_extremes_and_zero_at_start(prep):
    lp = liquidation_prices(prep)
    b = prep.book
    start = float(prep.path.price[0])
    finite = np.isfinite(lp)
    assert finite.all()
    value = b.qty * lp
    below, above = float(np.nanmin(lp)) * 0.99, float(np.nanmax(lp)) * 1.01
    long_usd, short_usd = map_no_feedback(b.side, b.qty, lp, np.array([below, start, above]))
    assert long_usd[0] == value[b.side > 0].sum()       # every long liquidated: exact sum
    assert short_usd[2] == value[b.side < 0].sum()      # every short liquidated: exact sum
    assert long_usd[1] == 0.0 and short_usd[1] == 0.0   # nobody is liquidatable at the start price
    assert long_usd[2] == 0.0 and short_usd[0] == 0.0


def test_no_feedback_map_on_the_level_grid_is_monotone_and_matches_a_sorted_reference(prep):
    lm = liquidation_map(prep, HeatmapOptions(range_pct=90, step_pct=1.0, feedback_step_pct=0, ensemble=0).validate())
    lp = liquidation_prices(prep)
    b = prep.book
    value = b.qty * lp
    centre = lm.move_pct.size // 2
    assert lm.move_pct[centre] == 0.0 and lm.price[centre] == lm.start_price
    assert lm.long_usd[centre] == 0.0 and lm.short_usd[centre] == 0.0
    assert lm.long_usd[0] == value[b.side > 0].sum() and lm.short_usd[-1] == value[b.side < 0].sum()
    assert np.all(np.diff(lm.long_usd) <= 0) and np.all(np.diff(lm.short_usd) >= 0)
    # reference: sort the longs by liquidation price and add from the top
    longs = b.side > 0
    order = np.argsort(lp[longs])
    lp_sorted, v_sorted = lp[longs][order], value[longs][order]
    suffix = np.concatenate([np.cumsum(v_sorted[::-1])[::-1], [0.0]])
    ref = suffix[np.searchsorted(lp_sorted, lm.price, side="left")]
    np.testing.assert_allclose(lm.long_usd, ref, rtol=1e-12, atol=1e-3)
    assert not lm.feedback.any() and np.isnan(lm.long_feedback_usd).all()


def test_hand_made_book_map():
    side = np.array([1, 1, -1, -1], np.int8)
    qty = np.array([1.0, 2.0, 3.0, 4.0])
    lp = np.array([90.0, 80.0, 110.0, np.nan])  # the last short never liquidates (not a real case, a guard)
    long_usd, short_usd = map_no_feedback(side, qty, lp, np.array([70.0, 80.0, 85.0, 90.0, 100.0, 110.0, 200.0]))
    assert long_usd.tolist() == [250.0, 250.0, 90.0, 90.0, 0.0, 0.0, 0.0]
    assert short_usd.tolist() == [0.0, 0.0, 0.0, 0.0, 0.0, 330.0, 330.0]


def test_level_grid():
    move, price = level_grid(100.0, 2.0, 0.5)
    assert move.tolist() == [-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0]
    assert price[4] == 100.0 and price[0] == pytest.approx(98.0)


# --------------------------------------------------------------------------- feedback
def test_feedback_is_at_least_no_feedback_and_adds_a_cascade(prep):
    lm = liquidation_map(prep, HeatmapOptions(range_pct=15, step_pct=0.5, feedback_step_pct=5, ensemble=0,
                                              hold_s=60).validate())
    fb = lm.feedback
    assert lm.move_pct[fb].tolist() == [-15.0, -10.0, -5.0, 0.0, 5.0, 10.0, 15.0]
    for side in ("long", "short"):
        nofb, withfb = getattr(lm, f"{side}_usd")[fb], getattr(lm, f"{side}_feedback_usd")[fb]
        assert np.all(withfb >= nofb * (1 - 1e-12))
    centre = lm.move_pct.size // 2
    assert lm.long_feedback_usd[centre] == 0.0 and lm.short_feedback_usd[centre] == 0.0
    down = fb & (lm.move_pct < 0)
    # with 2e8 USD within 1 % the liquidations move the price: the cascade reaches further than the level
    assert np.any(lm.long_feedback_usd[down] > 1.05 * lm.long_usd[down])
    assert np.all(lm.feedback_extreme_mark_usd[down] <= lm.price[down])
    assert np.all(lm.long_feedback_fill_usd[down] > 0)
    assert np.isnan(lm.long_feedback_usd[~fb]).all()


def test_feedback_with_a_very_deep_book_equals_no_feedback():
    deep = _prep("market.depth.depth_usd_at_1pct=1e14", "market.depth.kind='linear'")
    lm = liquidation_map(deep, HeatmapOptions(range_pct=15, step_pct=0.5, feedback_step_pct=5, ensemble=0,
                                              hold_s=30).validate())
    fb = lm.feedback
    assert lm.long_usd[fb].max() > 0 and lm.short_usd[fb].max() > 0
    np.testing.assert_allclose(lm.long_feedback_usd[fb], lm.long_usd[fb], rtol=1e-12)
    np.testing.assert_allclose(lm.short_feedback_usd[fb], lm.short_usd[fb], rtol=1e-12)
    np.testing.assert_allclose(lm.feedback_extreme_mark_usd[fb], lm.price[fb], rtol=1e-6)


def test_workers_give_the_same_numbers(prep):
    opts = dict(range_pct=10, step_pct=5, feedback_step_pct=10, ensemble=0, hold_s=20)
    one = liquidation_map(prep, HeatmapOptions(**opts, workers=1).validate())
    two = liquidation_map(prep, HeatmapOptions(**opts, workers=2).validate())
    np.testing.assert_array_equal(one.long_feedback_usd, two.long_feedback_usd)
    np.testing.assert_array_equal(one.short_feedback_fill_usd, two.short_feedback_fill_usd)


# --------------------------------------------------------------------------- ensemble
def test_perturbed_scenarios_are_centred_on_the_given_assumptions():
    sc = load_scenario(None)
    spread = EnsembleSpread()
    draws = [perturbed_scenario(sc, c, spread) for c in np.random.SeedSequence(3).spawn(300)]
    oi = np.array([p["open_interest_usd"] for _, p in draws]) / sc.book.synthesize.open_interest_usd
    ls = np.array([p["long_short_ratio"] for _, p in draws]) / sc.book.synthesize.long_short_ratio
    w = np.array([p["leverage_weight"] for _, p in draws])
    sig = np.array([p["entry_sigma"] for _, p in draws]) / sc.book.synthesize.entry.sigma
    assert np.median(oi) == pytest.approx(1.0, abs=0.05) and np.log(oi).std() == pytest.approx(0.2, rel=0.15)
    assert np.median(ls) == pytest.approx(1.0, abs=0.05) and np.log(sig).std() == pytest.approx(0.3, rel=0.15)
    given = np.array(sc.book.synthesize.leverage.weight) / sum(sc.book.synthesize.leverage.weight)
    np.testing.assert_allclose(w.mean(axis=0), given, atol=0.01)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    member, params = draws[0]
    assert member.book.synthesize.open_interest_usd == params["open_interest_usd"] and member.seed == params["book_seed"]
    assert member.book.synthesize.positions == sc.book.synthesize.positions
    assert len({p["book_seed"] for _, p in draws}) == 300
    # the same seed sequence gives the same member
    again = perturbed_scenario(sc, np.random.SeedSequence(3).spawn(300)[0], spread)[0]
    assert again == member


def test_ensemble_bands_are_ordered_spread_and_reproducible(prep):
    opts = HeatmapOptions(range_pct=10, step_pct=1.0, feedback_step_pct=0, ensemble=5,
                          ensemble_feedback_step_pct=10, hold_s=30).validate()
    levels = liquidation_map(prep, opts)
    bands = ensemble_bands(prep.scenario, DATA, levels, opts)
    assert bands.k == 5 and len(bands.members) == 5
    for name in ("long_usd", "short_usd"):
        arr = getattr(bands, name)
        assert arr.shape == (3, levels.move_pct.size) and np.isfinite(arr).all()
        assert np.all(arr[0] <= arr[1]) and np.all(arr[1] <= arr[2])
        assert np.any(arr[2] > arr[0] * 1.05)  # the assumptions matter
    fb = bands.feedback
    assert levels.move_pct[fb].tolist() == [-10.0, 0.0, 10.0]
    for name in ("long_feedback_usd", "short_feedback_usd"):
        arr = getattr(bands, name)
        assert np.isnan(arr[:, ~fb]).all() and np.isfinite(arr[:, fb]).all()
        assert np.all(arr[0, fb] <= arr[1, fb]) and np.all(arr[1, fb] <= arr[2, fb])
    # each member's feedback >= its no-feedback, so the medians keep the order at -10 % / +10 %
    i_dn, i_up = int(np.flatnonzero(fb)[0]), int(np.flatnonzero(fb)[-1])
    assert bands.long_feedback_usd[1, i_dn] >= bands.long_usd[1, i_dn] * (1 - 1e-12)
    assert bands.short_feedback_usd[1, i_up] >= bands.short_usd[1, i_up] * (1 - 1e-12)
    again = ensemble_bands(prep.scenario, DATA, levels, opts)
    np.testing.assert_array_equal(again.long_usd, bands.long_usd)
    np.testing.assert_array_equal(again.short_feedback_usd, bands.short_feedback_usd)


# --------------------------------------------------------------------------- heatmap
@pytest.fixture(scope="module")
def falling(tmp_path_factory):
    """A history that only falls (100k -> 88k in 30 bars) with the default book."""
    path = _write_klines(tmp_path_factory.mktemp("kl") / "fall.csv", list(np.linspace(100_000.0, 88_000.0, 30)))
    opts = HeatmapOptions(range_pct=10, step_pct=1, feedback_step_pct=0, ensemble=0, price_step_pct=0.5)
    return build_heatmap(load_scenario(None, ["book.synthesize.positions=2000"]), DATA, opts, klines=path)


def test_heatmap_sums_and_sides_on_a_falling_history(falling):
    hm, prep = falling.heatmap, falling.prepared
    assert prep.path.price[0] == 100_000.0 and falling.levels.start_price == 100_000.0
    n_t, n_p = hm.standing_long_usd.shape
    assert n_t == 30 and hm.price_lo[0] == 0.0 and hm.price_hi[-1] == np.inf
    assert np.all(hm.price_hi[:-1] == hm.price_lo[1:])
    # standing stock = opened - removed, in every time bucket
    standing = (hm.standing_long_usd + hm.standing_short_usd).sum(axis=1)
    removed = np.cumsum((hm.touched_long_usd + hm.touched_short_usd).sum(axis=1))
    np.testing.assert_allclose(standing, np.cumsum(hm.opened_usd) - removed, rtol=1e-9)
    assert (hm.standing_long_usd >= 0).all() and (hm.standing_short_usd >= 0).all()
    # a falling price never reaches a short level; long levels are reached and removed
    assert hm.touched_short_usd.sum() == 0.0 and hm.touched_long_usd.sum() > 0
    # the long levels still standing at the end lie below the lowest price seen
    alive = hm.standing_long_usd[-1] > 0
    assert hm.price_lo[alive].max() < hm.low.min()
    # short levels stand above the price
    assert hm.price_hi[hm.standing_short_usd[-1] > 0].min() > hm.close[-1]
    # opened over the history: each side's notional at start, valued at the liquidation price
    assert hm.totals["opened_usd"] == pytest.approx(hm.opened_usd.sum())
    t = hm.totals
    assert t["standing_end_usd"] + t["touched_usd"] == pytest.approx(t["opened_usd"], rel=1e-9)


def test_heatmap_book_liquidations_match_the_path_and_the_engine(falling):
    hm, prep = falling.heatmap, falling.prepared
    lp = liquidation_prices(prep)
    b = prep.book
    low = prep.path.price.min()
    expected = (b.qty * lp)[(b.side > 0) & (lp >= low)].sum()
    assert expected > 0
    assert hm.liquidated_usd.sum() == pytest.approx(expected, rel=1e-12)
    # a long's liquidation is booked in the price bucket of its liquidation price
    assert hm.liquidated_usd[:, hm.price_hi <= low].sum() == 0.0
    eng = hm.totals["engine"]
    assert hm.liquidated_feedback_usd.sum() == pytest.approx(eng["liquidated_long_usd"] + eng["liquidated_short_usd"],
                                                              rel=1e-12)
    assert hm.liquidated_feedback_usd.sum() >= 0.9 * hm.liquidated_usd.sum()
    # liquidations happen only while the price falls through the levels: none in the first bar
    assert hm.liquidated_usd[0].sum() == 0.0


def test_heatmap_time_buckets_aggregate_bars(falling, tmp_path):
    opts = HeatmapOptions(range_pct=10, step_pct=1, feedback_step_pct=0, ensemble=0, price_step_pct=0.5,
                          time_bucket_s=300)
    hm5 = liquidation_heatmap(falling.prepared, DATA, opts.validate())
    hm1 = falling.heatmap
    assert hm5.standing_long_usd.shape[0] == 6
    np.testing.assert_allclose(hm5.liquidated_usd.sum(axis=0), hm1.liquidated_usd.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(hm5.touched_long_usd.sum(), hm1.touched_long_usd.sum(), rtol=1e-9)
    np.testing.assert_allclose(hm5.standing_long_usd[-1], hm1.standing_long_usd[-1], rtol=1e-9, atol=1e-3)
    assert hm5.low[0] == hm1.low[:5].min() and hm5.close[-1] == hm1.close[-1]
    with pytest.raises(DeleverInputError, match="--time-bucket-s"):
        liquidation_heatmap(falling.prepared, DATA, HeatmapOptions(time_bucket_s=30).validate())


def test_shock_scenario_has_no_heatmap_and_a_file_book_no_ensemble(tmp_path):
    from delever.book_io import save_book

    opts = HeatmapOptions(range_pct=5, step_pct=1, feedback_step_pct=0, ensemble=2)
    r = build_heatmap(load_scenario(None, ["book.synthesize.positions=500"]), DATA, opts)
    assert r.heatmap is None and r.bands is not None
    assert any("heatmap skipped" in n for n in r.summary["notes"])
    book: PositionBook = r.prepared.book
    save_book(book, tmp_path / "book.csv")
    sc = load_scenario(None, ["book.source='file'", f"book.path='{tmp_path / 'book.csv'}'"])
    r2 = build_heatmap(sc, DATA, opts)
    assert r2.bands is None and any("ensemble skipped" in n for n in r2.summary["notes"])
    np.testing.assert_array_equal(r2.levels.long_usd, r.levels.long_usd)


@pytest.mark.parametrize("kwargs, flag", [
    ({"range_pct": 0}, "--range-pct"), ({"range_pct": 99}, "--range-pct"), ({"step_pct": 0}, "--step-pct"),
    ({"step_pct": 30}, "--step-pct"), ({"feedback_step_pct": 0.7}, "--feedback-step-pct"),
    ({"ensemble_feedback_step_pct": -1}, "--ensemble-feedback-step-pct"), ({"hold_s": -1}, "--hold-s"),
    ({"ensemble": -1}, "--ensemble"), ({"price_step_pct": 0}, "--price-step-pct"), ({"workers": 0}, "--workers"),
    ({"spread": EnsembleSpread(open_interest_sigma=-0.1)}, "--open-interest-sigma"),
    ({"spread": EnsembleSpread(leverage_concentration=0)}, "--leverage-concentration"),
])
def test_bad_options_name_the_flag(kwargs, flag):
    with pytest.raises(DeleverInputError, match=flag):
        HeatmapOptions(**kwargs).validate()


# --------------------------------------------------------------------------- command and outputs
def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(heatmap_command)
    return app


def test_example_end_to_end(tmp_path):
    if not EXAMPLE.exists() or not (DATA / "binance-2025-10-10-crash").exists():
        pytest.skip("example data not available")
    out = tmp_path / "runs"
    res = CliRunner().invoke(_app(), [
        "--scenario", str(EXAMPLE), "--set", "book.synthesize.positions=3000", "--data-dir", str(DATA),
        "--out", str(out), "--json", "--ensemble", "2", "--feedback-step-pct", "5",
        "--ensemble-feedback-step-pct", "12.5", "--hold-s", "60"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout.strip().splitlines()[-1])
    folder = Path(s["folder"])
    assert entries(out) == [folder.name]
    assert {p.name for p in folder.iterdir()} >= {"levels.parquet", "heatmap.parquet", "heatmap.html", "summary.json"}
    assert s["positions"] == 3000 and s["map"]["levels"] == 101 and s["map"]["feedback_levels"] == 11
    assert s["ensemble"]["members"] == 2
    levels = pq.read_table(folder / "levels.parquet").to_pydict()
    long_usd, long_fb = np.array(levels["long_usd"]), np.array(levels["long_feedback_usd"])
    run = np.array(levels["feedback_run"])
    assert np.all(long_fb[run] >= long_usd[run] * (1 - 1e-12))
    assert levels["long_usd"][0] == pytest.approx(s["map"]["long_total_usd"], rel=0.5)
    p05, p95 = np.array(levels["long_p05_usd"]), np.array(levels["long_p95_usd"])
    assert np.all(p05 <= p95)
    heat = pq.read_table(folder / "heatmap.parquet")
    assert heat.num_rows == s["heatmap"]["time_buckets"] * s["heatmap"]["price_buckets"]
    assert float(np.sum(heat["liquidated_feedback_usd"].to_numpy())) == pytest.approx(
        s["heatmap"]["liquidated_feedback_usd"], rel=1e-12)
    assert s["heatmap"]["liquidated_feedback_usd"] > 0 and s["heatmap"]["engine"]["exogenous_move_pct"] < -10
    html = (folder / "heatmap.html").read_text()
    assert html.count("Plotly.newPlot") >= 4
    check_report(folder / "heatmap.html", out)  # the library once in the output root
    assert s.get("png") == "heatmap.png"
    png = (folder / "heatmap.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_command_bad_input_exits_2_and_leaves_nothing(tmp_path):
    out = tmp_path / "runs"
    res = CliRunner().invoke(_app(), ["--set", "book.synthesize.positions=500", "--out", str(out),
                                      "--data-dir", str(DATA), "--feedback-step-pct", "0.3"])
    assert res.exit_code == 2 and "--feedback-step-pct" in res.output
    assert not out.exists() or not any(out.iterdir())
    res = CliRunner().invoke(_app(), ["--set", "book.synthesize.positions=500", "--out", str(out),
                                      "--data-dir", str(DATA), "--klines", str(tmp_path / "missing.csv")])
    assert res.exit_code == 2 and "--klines" in res.output


def test_write_heatmap_is_atomic(falling, tmp_path, monkeypatch):
    import delever.heatmap as hmod

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(hmod, "_write_html", boom)
    with pytest.raises(RuntimeError):
        write_heatmap(falling, tmp_path / "runs")
    assert list((tmp_path / "runs").iterdir()) == []
