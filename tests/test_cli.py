"""End-to-end: the CLI on the embedded default and on every example scenario; bad input exits 2, leaves nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from delever.cli import app
from report_helpers import check_report, entries

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))
REQUIRED_KEYS = {
    "scenario", "config_hash", "seed", "venue", "exogenous_move_pct", "final_move_pct", "amplification",
    "liquidated_notional_usd", "liquidated_long_usd", "liquidated_short_usd", "liquidation_count", "rounds_max",
    "insurance_fund_start_usd", "insurance_fund_end_usd", "bad_debt_usd", "adl_notional_usd", "adl_count",
    "ledger_imbalance_usd",
}
runner = CliRunner()


def _run(args: list[str], tmp_path: Path):
    result = runner.invoke(app, ["run", "--out", str(tmp_path / "runs"), "--data-dir", str(DATA), *args])
    return result


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def _check_balanced(summary: dict) -> None:
    assert REQUIRED_KEYS <= set(summary)
    assert abs(summary["ledger_imbalance_usd"]) <= 1e-6 * max(summary["liquidated_notional_usd"], 1.0)
    assert summary["ledger_reconciliation_usd"] <= 1e-6 * max(summary["liquidated_notional_usd"], 1.0)
    assert summary["liquidated_notional_usd"] == pytest.approx(
        summary["liquidated_long_usd"] + summary["liquidated_short_usd"])


def test_default_run_writes_every_table_and_the_report(tmp_path):
    summary = _json(_run(["--json", "--set", "book.synthesize.positions=4000"], tmp_path))
    _check_balanced(summary)
    assert summary["venue"] == "binance-usdm" and summary["mode"] == "stress"
    assert summary["liquidated_notional_usd"] > 0 and summary["amplification"] >= 1.0
    folder = Path(summary["run_folder"])
    for name in ("steps", "rounds", "liquidations", "adl", "ledger"):
        assert pq.read_table(folder / f"{name}.parquet").num_rows > 0 or name == "adl"
    html = (folder / "report.html").read_text()
    assert "plotly" in html and "Price path" in html and "ADL fills" in html
    config = json.loads((folder / "config.json").read_text())
    assert config["config_hash"] == summary["config_hash"] and config["seed"] == summary["seed"]
    assert entries(tmp_path / "runs") == [folder.name]
    check_report(folder / "report.html", tmp_path / "runs")


def test_same_config_and_seed_give_the_same_numbers(tmp_path):
    args = ["--json", "--no-write", "--set", "book.synthesize.positions=3000"]
    a, b = _json(_run(args, tmp_path)), _json(_run(args, tmp_path))
    for key in REQUIRED_KEYS:
        assert a[key] == b[key], key
    c = _json(_run([*args, "--set", "seed=99"], tmp_path))
    assert c["config_hash"] != a["config_hash"]


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_runs(example, tmp_path):
    if not DATA.is_dir():
        pytest.skip("shared data not available")
    summary = _json(_run(["--scenario", str(example), "--json", "--no-report"], tmp_path))
    _check_balanced(summary)
    assert summary["liquidation_count"] > 0


def test_real_data_run_meets_the_done_criteria(tmp_path):
    if not DATA.is_dir():
        pytest.skip("shared data not available")
    example = ROOT / "examples" / "binance-btcusdt-2025-10-10.toml"
    base = _json(_run(["--scenario", str(example), "--json", "--no-write"], tmp_path))
    assert base["liquidated_notional_usd"] > 0
    assert base["amplification"] >= 1.0
    assert abs(base["ledger_imbalance_usd"]) < 1e-6 * base["liquidated_notional_usd"]
    no_fund = _json(_run(["--scenario", str(example), "--json", "--no-write", "--set", "insurance_fund.initial_usd=0"],
                         tmp_path))
    assert no_fund["adl_count"] > 0
    assert no_fund["insurance_fund_start_usd"] == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "market.impact.foo=1"], "market.impact.foo"),
        (["--set", "engine.max_rounds=0"], "engine.max_rounds"),
        (["--set", "venue.preset=\"nope\""], "venue.preset"),
        (["--set", "venue.overrides.liquidation.clearance_fee_rate=-1"], "clearance_fee_rate"),
        (["--set", "noequals"], "key.path=value"),
        (["--scenario", "does/not/exist.toml"], "not found"),
        (["--set", "market.instrument=\"FOOUSDT\"", "--set", "market.start_price=1"], "delever venues --symbols"),
        (["--set", "market.instrument=\"BNBUSDT\""], "market.start_price: required with a shock"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_folder(args, needle, tmp_path):
    result = _run(args, tmp_path)
    assert result.exit_code == 2
    assert needle in result.output
    assert len(result.output.strip().splitlines()) <= 3  # one message (rich may wrap a long line)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_bad_files_exit_2(tmp_path):
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("name = 'x'\n[market\n")
    result = _run(["--scenario", str(bad_toml)], tmp_path)
    assert result.exit_code == 2 and "not valid TOML" in result.output

    book = tmp_path / "book.csv"
    book.write_text("account,side,qty,entry_price,collateral,margin_mode\n1,long,1,100000,5000,isolated\n")
    result = _run(["--set", "book.source=\"file\"", "--set", f"book.path=\"{book}\""], tmp_path)
    assert result.exit_code == 2 and "book.csv" in result.output

    book.write_text("account,side,qty,entry_price,collateral_usd,margin_mode\n1,long,nan,100000,5000,isolated\n")
    result = _run(["--set", "book.source=\"file\"", "--set", f"book.path=\"{book}\""], tmp_path)
    assert result.exit_code == 2 and "qty" in result.output

    book.write_text("account,side,qty,entry_price,collateral_usd,margin_mode\n")
    result = _run(["--set", "book.source=\"file\"", "--set", f"book.path=\"{book}\""], tmp_path)
    assert result.exit_code == 2 and "no rows" in result.output

    klines = tmp_path / "k.csv"
    klines.write_text("1760128080000,117050.00,117103.10,-1,116986.40,248.017,1760128139999,1,1,1,1,0\n")
    scenario = tmp_path / "hist.toml"
    scenario.write_text(f'[market]\nstart_price = 117000.0\n[price_driver]\nkind = "historical"\npath = "{klines}"\n')
    result = _run(["--scenario", str(scenario)], tmp_path)
    assert result.exit_code == 2 and "k.csv" in result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_run_on_another_binance_symbol_uses_the_tier_file(tmp_path):
    summary = _json(_run(["--json", "--set", "market.instrument=\"ETHUSDT\"", "--set",
                          "book.synthesize.positions=3000"], tmp_path))
    _check_balanced(summary)
    assert summary["instrument"] == "ETHUSDT" and "from 4022.35 USD" in summary["price_driver"]
    assert any("ETHUSDT from" in n and "as of 2024-10-24" in n for n in summary["notes"])
    config = json.loads((Path(summary["run_folder"]) / "config.json").read_text())
    tiers = config["margin_tiers"]
    assert tiers["symbol"] == "ETHUSDT" and tiers["as_of"] == "2024-10-24"
    assert tiers["table"].endswith("binance_usdm_leverage_tiers_ccxt_2024-10-24.json.gz")
    assert tiers["floor_usd"][:3] == [0.0, 50_000.0, 600_000.0] and tiers["maint_amount_usd"][2] == 950.0
    assert config["scenario"]["market"]["start_price"] == 4022.35


def test_venues_lists_presets_with_sources():
    result = runner.invoke(app, ["venues"])
    assert result.exit_code == 0
    assert "binance-usdm" in result.output and "hyperliquid" in result.output and "venue-mechanics" in result.output


def test_version():
    from delever.cli import app

    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.startswith("delever ")
