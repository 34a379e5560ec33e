"""Historical replay: trade-built bars, replay mode, per-minute aggregation, ensemble bands, outputs, command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from delever.data.klines import read_klines
from delever.errors import DeleverInputError
from delever.replay import (
    TRADE_BAR_COINM_COLUMNS,
    TRADE_BAR_SPOT_COLUMNS,
    read_bars,
    replay,
    replay_command,
    replay_inputs,
    write_replay,
)
from delever.scenario import load_scenario
from report_helpers import check_report

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
COINS = DATA / "oct10-2025-coins"
KLINE_HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
                "taker_buy_quote_volume,ignore")
T0 = 1760131200000  # 2025-10-10 21:20:00 UTC
MIN = 60_000


def _klines(path: Path, closes: list[float], lows: list[float] | None = None) -> Path:
    """1-minute klines: bar k opens at the previous close and closes at closes[k]; optional lows."""
    rows = [KLINE_HEADER]
    prev = closes[0]
    for k, c in enumerate(closes):
        lo = min(prev, c) if lows is None else min(prev, c, lows[k])
        hi = max(prev, c)
        t = T0 + k * MIN
        rows.append(f"{t},{prev},{hi},{lo},{c},{10.0 + k},{t + MIN - 1},{(10.0 + k) * c},42,4.0,{4.0 * c},0")
        prev = c
    path.write_text("\n".join(rows) + "\n")
    return path


def _spot_bars(path: Path, rows: list[str]) -> Path:
    path.write_text(",".join(TRADE_BAR_SPOT_COLUMNS) + "\n" + "\n".join(rows) + "\n")
    return path


def _spot_row(k: int, o: float, h: float, lo: float, c: float, vol: float = 2.0, buy: float = 0.5) -> str:
    t = T0 + k * MIN
    return (f"{t},{o},{h},{lo},{c},{vol},{t + MIN - 1},{vol * c},3,{buy},{vol - buy},"
            f"{t * 1000 + 1},{t * 1000 + 59_000_000}")


def _empty_row(k: int) -> str:
    t = T0 + k * MIN
    return f"{t},,,,,0,{t + MIN - 1},0,0,0,0,,"


def _scenario(path: Path, *extra: str, positions: int = 1500, venue: str = "binance-usdm",
              instrument: str | None = None, mode: str = "stress"):
    """The default scenario with a historical driver on ``path`` (written to a TOML, then loaded)."""
    instrument = instrument or ("BTC" if venue == "hyperliquid" else "BTCUSDT")
    base = load_scenario(None, [f"venue.preset=\"{venue}\"", f"market.instrument=\"{instrument}\"",
                                f"book.synthesize.positions={positions}", "book.synthesize.open_interest_usd=2.0e8"])
    dump = base.model_dump(mode="json")
    dump["price_driver"] = {"kind": "historical", "mode": mode, "path": str(path)}
    dump["market"]["start_price"] = None
    sc = type(base).model_validate(dump)
    if not extra:
        return sc
    from delever.scenario import apply_overrides

    return type(base).model_validate(apply_overrides(sc.model_dump(mode="json"), list(extra)))


CRASH = [100_000.0, 99_000.0, 97_000.0, 97_500.0, 93_000.0, 94_000.0, 95_000.0, 90_000.0, 91_000.0, 92_000.0]


# --------------------------------------------------------------------------- reading
def test_trade_bars_spot_skip_empty_minutes(tmp_path):
    f = _spot_bars(tmp_path / "x-spot.csv", [_spot_row(0, 10, 11, 9.5, 10.5), _empty_row(1),
                                              _spot_row(2, 10.4, 10.6, 10.0, 10.1, vol=3.0, buy=1.0)])
    bars, notes = read_bars(f)
    assert len(bars) == 2
    assert bars.open_time_ms.tolist() == [T0, T0 + 2 * MIN]
    assert bars.low.tolist() == [9.5, 10.0]
    np.testing.assert_allclose(bars.taker_sell_volume, [1.5, 2.0])
    assert bars.end_time_ms == T0 + 3 * MIN
    assert any("1 minute(s) without trades" in n for n in notes)


def test_trade_bars_coinm_volumes_not_used(tmp_path):
    f = tmp_path / "x-coinm.csv"
    t = T0
    f.write_text(",".join(TRADE_BAR_COINM_COLUMNS) + "\n"
                 + f"{t},1.0,1.2,0.9,1.1,100,{t + MIN - 1},5,60,40,{t * 1000},{t * 1000 + 5}\n")
    bars, notes = read_bars(f)
    assert len(bars) == 1 and bars.volume.tolist() == [0.0]
    assert any("contracts" in n for n in notes)


@pytest.mark.parametrize("rows, match", [
    ([_spot_row(0, 10, 11, 9.5, 10.5), _spot_row(2, 10, 11, 9.5, 10.5)], "row 2: field 'open_time'"),
    ([_spot_row(0, 10, 11, 9.5, 10.5).replace(",3,", ",0,", 1)], "row 1: field 'open'.*count 0"),
    ([_spot_row(0, 10, 11, 10.6, 10.5)], "row 1: field 'high'"),
    ([_spot_row(0, 10, 11, 9.5, 10.5, vol=2.0, buy=0.5).replace(",1.5,", ",1.4,")], "taker buy \\+ taker sell"),
    ([_spot_row(0, 10, 11, 9.5, 10.5).replace(",10,", ",ten,", 1)], "row 1: field 'open' = 'ten'"),
    ([_empty_row(0)], "every minute is empty"),
])
def test_trade_bars_errors_name_file_row_field(tmp_path, rows, match):
    f = _spot_bars(tmp_path / "bad.csv", rows)
    with pytest.raises(DeleverInputError, match=match):
        read_bars(f)


def test_binance_klines_go_to_read_klines(tmp_path):
    f = _klines(tmp_path / "k.csv", CRASH)
    bars, notes = read_bars(f)
    ref = read_klines(f)
    assert notes == [] and len(bars) == len(ref)
    np.testing.assert_array_equal(bars.close, ref.close)


# --------------------------------------------------------------------------- inputs
def test_replay_inputs_switch_and_errors(tmp_path):
    f = _klines(tmp_path / "k.csv", CRASH)
    sc, bars, notes = replay_inputs(_scenario(f), tmp_path)
    assert sc.price_driver.mode == "replay" and len(bars) == len(CRASH)
    assert any("switched from stress to replay" in n for n in notes)
    with pytest.raises(DeleverInputError, match="price_driver: replay needs a real price path"):
        replay_inputs(load_scenario(None, []), tmp_path)
    with pytest.raises(DeleverInputError, match="--klines: price file not found"):
        replay_inputs(load_scenario(None, []), tmp_path, klines="nope.csv")
    with pytest.raises(DeleverInputError, match="price_driver.start/end"):
        replay_inputs(_scenario(f, "price_driver.start=\"2025-10-10 22:00\""), tmp_path)
    sc2, bars2, notes2 = replay_inputs(load_scenario(None, []), tmp_path, klines=f)
    assert len(bars2) == len(CRASH) and sc2.market.start_price is None and "--klines" in notes2[0]


# --------------------------------------------------------------------------- replay
@pytest.fixture(scope="module")
def crash(tmp_path_factory):
    d = tmp_path_factory.mktemp("crash")
    f = _klines(d / "crash.csv", CRASH)
    return d, f, replay(_scenario(f), d, ensemble=4)


def test_replay_no_impact_mark_is_the_observed_price(crash):
    _, _, res = crash
    steps = res.tables["steps"]
    np.testing.assert_array_equal(np.asarray(steps.column("mark_price")), res.prepared.path.price)
    np.testing.assert_array_equal(np.asarray(steps.column("exogenous_price")), res.prepared.path.price)
    assert res.prepared.path.mode == "replay" and res.summary["mode"] == "replay"
    assert res.prepared.book.entry_price.size == 1500
    assert res.summary["start_price_usd"] == CRASH[0]


def test_per_minute_sums_equal_engine_totals(crash):
    _, _, res = crash
    t, m = res.minutes, res.metrics
    assert t.num_rows == len(CRASH)
    assert np.asarray(t.column("long_liq_usd")).sum() == pytest.approx(m["liquidated_long_usd"], rel=1e-12)
    assert np.asarray(t.column("short_liq_usd")).sum() == pytest.approx(m["liquidated_short_usd"], abs=1e-6)
    counts = np.asarray(t.column("long_liq_count")) + np.asarray(t.column("short_liq_count"))
    assert counts.sum() == m["liquidation_count"]
    assert np.asarray(t.column("adl_usd")).sum() == pytest.approx(m["adl_notional_usd"], rel=1e-12, abs=1e-6)
    assert np.asarray(t.column("adl_count")).sum() == m["adl_count"]
    liq = res.tables["liquidations"]
    assert np.asarray(t.column("long_liq_qty")).sum() == pytest.approx(
        np.asarray(liq.column("qty"))[np.asarray(liq.column("side")) > 0].sum())
    assert (np.asarray(t.column("long_market_qty")) <= np.asarray(t.column("long_liq_qty")) + 1e-9).all()
    assert np.asarray(t.column("steps")).tolist() == [5] + [4] * (len(CRASH) - 1)
    assert m["liquidated_long_usd"] > 0 and m["liquidated_short_usd"] == 0


def test_static_book_liquidates_longs_only_at_new_lows(crash):
    """Replay of a fixed book: a long is liquidated only when the price goes below every earlier price."""
    _, _, res = crash
    t = res.minutes
    low = np.asarray(t.column("low"))
    qty = np.asarray(t.column("long_liq_qty"))
    running = np.minimum.accumulate(np.concatenate([[CRASH[0]], low]))[:-1]
    assert qty.sum() > 0
    assert (qty[low >= running] == 0).all()
    assert (qty[[4, 7]] > 0).all()  # the two deepest new lows


def test_bands_ordered_and_reproducible(crash):
    d, f, res = crash
    t = res.minutes
    p05, p50, p95 = (np.asarray(t.column(f"long_liq_p{q}_usd")) for q in ("05", "50", "95"))
    assert (p05 <= p50 + 1e-6).all() and (p50 <= p95 + 1e-6).all()
    assert p95.max() > 0
    assert len(res.member_metrics) == 4 and res.summary["ensemble"]["members"] == 4
    ois = [mm["params"]["open_interest_usd"] for mm in res.member_metrics]
    assert len(set(ois)) == 4
    again = replay(_scenario(f), d, ensemble=4)
    np.testing.assert_array_equal(np.asarray(again.minutes.column("long_liq_p50_usd")), p50)
    band = res.summary["ensemble"]["totals_band"]["liquidated_long_usd"]
    assert band[0] <= band[1] <= band[2]


def test_hyperliquid_replay_and_loaded_book(tmp_path):
    f = _klines(tmp_path / "k.csv", CRASH)
    res = replay(_scenario(f, venue="hyperliquid", positions=800), tmp_path, ensemble=0)
    assert res.summary["venue"] == "hyperliquid" and res.summary["ensemble"] is None
    assert np.isnan(np.asarray(res.minutes.column("long_liq_p50_usd"))).all()
    book = tmp_path / "book.csv"
    book.write_text("account,side,qty,entry_price,collateral_usd,margin_mode\n1,long,1.0,100000,2000,isolated\n"
                    "2,short,1.0,100000,50000,isolated\n")
    res2 = replay(_scenario(f, "book.source=\"file\"", f"book.path=\"{book}\""), tmp_path, ensemble=3)
    assert any("ensemble skipped" in n for n in res2.summary["notes"])
    # the 50x long (LP about 98,400) goes at the first new low below it: minute 1 reaches 99,000, minute 2 97,000
    assert np.asarray(res2.minutes.column("long_liq_count")).tolist()[:3] == [0, 0, 1]


def test_trade_built_path_replays_with_gaps(tmp_path):
    rows = [_spot_row(0, 100, 100, 99, 99.5), _empty_row(1), _spot_row(2, 99.5, 99.5, 90, 91), _empty_row(3),
            _spot_row(4, 91, 93, 91, 92)]
    f = _spot_bars(tmp_path / "gap-spot.csv", rows)
    res = replay(_scenario(f), tmp_path, ensemble=0)
    t = res.minutes
    assert t.num_rows == 5 and np.asarray(t.column("has_bar")).tolist() == [True, False, True, False, True]
    steps = np.asarray(t.column("steps"))
    assert steps[[1, 3]].tolist() == [0, 0]
    assert np.isnan(np.asarray(t.column("close"))[[1, 3]]).all()
    assert np.asarray(t.column("long_liq_usd"))[[1, 3]].tolist() == [0.0, 0.0]
    assert np.asarray(t.column("long_liq_usd"))[2] > 0
    # the backstop state carries over the minutes without a price
    eq = np.asarray(t.column("backstop_equity_usd"))
    assert eq[1] == eq[0] and eq[3] == eq[2]
    assert any("without trades" in n for n in res.summary["notes"])


# --------------------------------------------------------------------------- outputs and command
def test_write_replay_folder(crash, tmp_path):
    _, _, res = crash
    folder = write_replay(res, tmp_path / "runs")
    assert sorted(p.name for p in folder.iterdir()) == ["minutes.parquet", "replay.html", "summary.json"]
    t = pq.read_table(folder / "minutes.parquet")
    assert t.num_rows == len(CRASH) and "long_liq_p95_usd" in t.column_names
    s = json.loads((folder / "summary.json").read_text())
    assert s["totals"]["liquidated_long_usd"] == pytest.approx(res.metrics["liquidated_long_usd"])
    html = (folder / "replay.html").read_text()
    assert html.count("Plotly.newPlot") == 1 and html.count("window.PlotlyConfig") == 1 and "<h2>Notes</h2>" in html
    assert not any(p.name.startswith(".") for p in (tmp_path / "runs").iterdir())
    check_report(folder / "replay.html", tmp_path / "runs")


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("replay")(replay_command)

    @app.command("noop")
    def noop() -> None:  # a second command keeps typer in sub-command mode
        pass

    return app


def test_replay_command_json_and_errors(tmp_path):
    f = _klines(tmp_path / "k.csv", CRASH)
    sc = tmp_path / "s.toml"
    sc.write_text(f"[book.synthesize]\npositions = 1200\nopen_interest_usd = 1.0e8\n"
                  f"[price_driver]\nkind = \"historical\"\npath = \"{f}\"\n")
    (tmp_path / "empty.toml").write_text("")
    runner = CliRunner()
    r = runner.invoke(_app(), ["replay", "-s", str(sc), "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"),
                               "--ensemble", "2", "--workers", "1", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["mode"] == "replay" and s["minutes"] == len(CRASH) and Path(s["folder"]).is_dir()
    r = runner.invoke(_app(), ["replay", "-s", str(sc), "--data-dir", str(tmp_path), "--no-write", "--ensemble", "0"])
    assert r.exit_code == 0 and "delever replay" in r.stdout
    r = runner.invoke(_app(), ["replay", "--data-dir", str(tmp_path), "--no-write"])
    assert r.exit_code == 2 and "--scenario" in r.output
    r = runner.invoke(_app(), ["replay", "-s", str(sc), "--data-dir", str(tmp_path), "--no-write", "--ensemble", "-1"])
    assert r.exit_code == 2 and "--ensemble" in r.output


# --------------------------------------------------------------------------- real data
def test_real_trade_built_eth_path():
    f = COINS / "ETHUSD-gemini-spot-1m-from-trades-2025-10-10-window.csv"
    if not f.is_file():
        pytest.skip("shared data not available")
    sc = _scenario(f, "book.synthesize.open_interest_usd=3.5e9", venue="hyperliquid", instrument="ETH",
                   mode="replay")
    res = replay(sc, DATA, ensemble=0)
    t = res.minutes
    assert t.num_rows == 121 and int((~np.asarray(t.column("has_bar"))).sum()) == 3
    assert res.summary["start_price_usd"] == 4022.35
    assert res.metrics["liquidated_long_usd"] > 0


def test_equilibrium_book_has_no_start_up_liquidations():
    """A book in equilibrium with its entry history has no liquidation in the first minutes of a quiet replay start."""
    if not DATA.is_dir():
        pytest.skip("shared data not available")
    from delever.replay import replay
    from delever.scenario import load_scenario

    example = Path(__file__).resolve().parents[1] / "examples" / "binance-btcusdt-2025-10-10.toml"
    sets = ["book.synthesize.positions=20000"]
    eq = replay(load_scenario(example, sets), DATA, ensemble=0)
    raw = replay(load_scenario(example, [*sets, 'book.synthesize.entry.equilibrium="start"']), DATA, ensemble=0)
    assert eq.metrics["first_liquidation_s"] > 600            # nothing in the first 10 minutes
    assert raw.metrics["first_liquidation_s"] < eq.metrics["first_liquidation_s"]
