"""Multi-instrument runs end to end (scenario -> account engine -> summary and run folder)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from delever.errors import DeleverInputError
from delever.runner import run_scenario, write_run
from delever.scenario import load_scenario, resolve_data_dir
from report_helpers import check_report

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
HL_MULTI = ROOT / "examples" / "hyperliquid-2025-10-10-multi.toml"
FUNDING = ROOT / "examples" / "hyperliquid-funding-3day.toml"
PER_INSTRUMENT_KEYS = ("liquidated_notional_usd", "adl_notional_usd", "liquidation_count", "adl_count", "final_move_pct")


def _need_data():
    if not DATA.is_dir():
        pytest.skip("shared data not available")


def test_hyperliquid_multi_summary(tmp_path):
    _need_data()
    res = run_scenario(load_scenario(HL_MULTI, ["accounts.accounts=15000"]), resolve_data_dir())
    s = res.summary
    assert s["instruments"] == ["BTC", "ETH", "SOL", "XRP", "DOGE", "ENA", "AVAX", "LINK", "ADA", "AAVE", "LTC", "WLD",
                                "TRX"]
    assert len(s["per_instrument"]) == 13
    for row in s["per_instrument"]:
        for k in PER_INSTRUMENT_KEYS:
            assert k in row
    assert s["liquidation_count"] == sum(r["liquidation_count"] for r in s["per_instrument"])
    assert s["adl_notional_usd"] == pytest.approx(sum(r["adl_notional_usd"] for r in s["per_instrument"]))
    assert s["accounts_liquidated_multi_instrument"] > 0
    assert s["accounts_liquidated_multi_instrument"] <= s["accounts_liquidated"]
    for asset, v in s["ledger_imbalance_by_asset"].items():
        assert abs(v) < 1e-6, (asset, v)
    assert s["ledger_reconciliation_usd"] < 1e-5
    assert "funding_paid_usd" in s
    folder = write_run(res, tmp_path)
    for name in ("steps", "liquidations", "adl", "ledger"):
        assert pq.read_table(folder / f"{name}.parquet").num_rows > 0
    check_report(folder / "report.html", tmp_path)
    assert json.loads((folder / "summary.json").read_text())["per_instrument"][0]["instrument"] == "BTC"


def test_funding_not_price_tips_accounts():
    """Flat prices for three days: every liquidation is funding's doing."""
    with_funding = run_scenario(load_scenario(FUNDING, ["accounts.accounts=5000"]), resolve_data_dir()).summary
    without = run_scenario(load_scenario(FUNDING, ["accounts.accounts=5000", "engine.funding=false"]),
                           resolve_data_dir()).summary
    assert without["liquidation_count"] == 0 and without["funding_paid_usd"] == 0
    assert with_funding["liquidation_count"] > 0
    assert with_funding["funding_paid_by_longs_usd"] > 0
    assert with_funding["exogenous_move_pct"] == 0
    for v in with_funding["ledger_imbalance_by_asset"].values():
        assert abs(v) < 1e-6


@pytest.mark.parametrize(("sets", "needle"), [
    (['venue.preset="drift"'], "Drift"),
    (['venue.preset="dydx-v4"'], "dYdX"),
    (["mitigations.circuit_breaker.band_pct=5"], "mitigations.circuit_breaker"),
])
def test_refused_venues(sets, needle):
    with pytest.raises(DeleverInputError, match=needle):
        run_scenario(load_scenario(FUNDING, ["accounts.accounts=500", *sets]), resolve_data_dir())


def test_refused_start_price():
    from delever.scenario import read_scenario_raw, validate_scenario

    raw, src = read_scenario_raw(FUNDING)
    raw["instruments"][0]["start_price"] = 0
    with pytest.raises(DeleverInputError, match="instruments.0.start_price"):
        validate_scenario(raw, str(src))
    del raw["instruments"][0]["start_price"]
    with pytest.raises(DeleverInputError, match="start_price"):
        run_scenario(validate_scenario(raw, str(src)), resolve_data_dir())


@pytest.mark.parametrize("command", [["replay", "--ensemble", "0"], ["heatmap"]])
def test_one_instrument_commands_refuse_instrument_lists(command, tmp_path):
    """replay and heatmap run one instrument: a scenario with instruments is refused, not run on the default market."""
    from typer.testing import CliRunner

    from delever.cli import app

    r = CliRunner().invoke(app, [*command, "--scenario", str(FUNDING), "--no-write"])
    assert r.exit_code == 2
    assert "runs one instrument" in r.output and "Traceback" not in r.output
