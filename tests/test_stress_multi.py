"""Monte Carlo stress of multi-instrument scenarios on the account engine: the same paths.parquet whatever the
executor and block size, resume, money conserved per path, generators fitted on the instruments' real files
(correlation, betas), the common drop of the critical shock, and the combinations the CLI refuses (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from delever.accounts_run import prepare_accounts
from delever.cli import app
from delever.multi_generators import generate_multi_paths, prepare_multi_generator
from delever.multipath import minute_log_returns_multi
from delever.pathgen import path_seeds
from delever.pathgen_multi import estimate_betas, fit_dependence
from delever.scenario import load_scenario
from delever.stress import critical_shock, run_stress
from delever.stress_accounts import account_shock_depleted

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
COINS = ("BTCUSDT", "SOLUSDT", "XRPUSDT")
FILES = {c: f"oct10-2025-coins/{c}-1m-2025-10-10-window.csv" for c in COINS}
# 3 Binance perps of 2025-10-10, 2000 accounts, 20 paths of 15 one-minute steps; a small insurance fund so that
# the fund's position cap and ADL are reached on some paths.
SMALL = """
name = "multi-small"
seed = 7
[venue]
preset = "binance-usdm"
[multi_driver]
kind = "historical"
mode = "stress"
intrabar = "close"
[insurance_fund]
initial_usd = 2.0e6
[accounts]
accounts = 2000
instruments_per_account_share = [0.6, 0.3, 0.1]
cross_share = 0.6
[stress]
paths = 20
horizon_s = 900
dt_s = 60
block_size = 6
[stress.generator]
kind = "correlated"
copula = "t_copula"
[stress.critical_shock]
enabled = false
""" + "".join(f"""
[[instruments]]
symbol = "{c}"
path = "{FILES[c]}"
open_interest_usd = {oi}
depth = {{ source = "parametric", kind = "sqrt", depth_usd_at_1pct = {oi / 50} }}
""" for c, oi in zip(COINS, (2e8, 6e7, 4e7), strict=True))
cli = CliRunner()


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("scenario") / "multi-small.toml"
    p.write_text(SMALL)
    return p


@pytest.fixture(scope="module")
def reference(small_file, tmp_path_factory):
    """The in-process run (blocks of 6), written to a run folder."""
    out = tmp_path_factory.mktemp("ref")
    return run_stress(load_scenario(small_file), DATA, executor="inprocess", out_dir=out, progress=False)


def _paths_table(folder: Path):
    return pq.read_table(Path(folder) / "paths.parquet")


def test_processes_and_another_block_size_give_the_same_paths_parquet(reference, small_file, tmp_path):
    res = run_stress(load_scenario(small_file), DATA, executor="processes", workers=2, block_size=7, out_dir=tmp_path,
                     progress=False)
    a, b = _paths_table(reference.run_folder), _paths_table(res.run_folder)
    assert a.num_rows == 20 and a.equals(b)
    for key in ("lar_95_usd", "lar_99_usd", "lar_99_usd_by_instrument", "bad_debt_var_99_usd", "p_adl",
                "amplification_p50", "config_hash"):
        assert reference.summary[key] == res.summary[key], key
    s = reference.summary
    assert s["engine"] == "general" and s["engine_kind"] == "accounts" and s["paths_general"] == 20
    assert set(s["lar_99_usd_by_instrument"]) == set(COINS)
    assert s["instrument"] == list(COINS) and s["accounts"] == 2000


def test_resume_after_deleting_blocks_gives_the_same_paths_parquet(reference, small_file, tmp_path):
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(reference.run_folder, folder)
    (folder / "paths.parquet").unlink()
    for name in ("block-00001.parquet", "block-00003.parquet"):
        (folder / "blocks" / name).unlink()
    res = run_stress(load_scenario(small_file), DATA, executor="inprocess", resume=folder, progress=False)
    assert res.summary["blocks_resumed"] == 2 and res.summary["paths_computed"] == 8  # blocks of 6, 6, 6, 2
    assert _paths_table(folder).equals(_paths_table(reference.run_folder))


def test_money_is_conserved_on_every_path_and_the_columns_add_up(reference):
    t = reference.paths
    liq = t.column("liquidated_notional_usd").to_numpy()
    scale = np.maximum(liq, 1.0)
    assert (liq > 0).all()
    assert (np.abs(t.column("ledger_imbalance_usd").to_numpy()) <= 1e-6 * scale).all()
    assert (t.column("ledger_reconciliation_usd").to_numpy() <= 1e-6 * scale).all()
    assert (t.column("open_interest_mismatch_qty").to_numpy() <= 1e-6).all()
    per = sum(t.column(f"liq_usd__{c}").to_numpy() for c in COINS)
    np.testing.assert_allclose(per, liq, rtol=1e-9)
    adl = sum(t.column(f"adl_usd__{c}").to_numpy() for c in COINS)
    np.testing.assert_allclose(adl, t.column("adl_notional_usd").to_numpy(), rtol=1e-9, atol=1e-6)
    multi = t.column("accounts_liquidated_multi_instrument").to_numpy()
    assert (multi <= t.column("accounts_liquidated").to_numpy()).all() and multi.sum() > 0
    assert "funding_paid_usd" in t.column_names
    assert reference.summary["ledger_imbalance_max_usd"] <= 1e-6 * float(liq.max())
    # measured on every account-engine path, never null for want of a column
    assert reference.summary["open_interest_mismatch_max_qty"] is not None
    assert reference.summary["open_interest_mismatch_max_qty"] <= 1e-6


def test_the_fitted_correlation_of_the_real_files_drives_the_paths(small_file):
    sc = load_scenario(small_file, ['stress.generator={kind="correlated", shrinkage="oas"}'])
    gen = prepare_multi_generator(sc.stress.generator, sc.instruments, DATA)
    rets = minute_log_returns_multi({c: DATA / FILES[c] for c in COINS})
    fit = fit_dependence(rets.log_return, "oas", rets.interval_s, COINS)
    np.testing.assert_array_equal(gen.params["correlation"], fit.correlation)
    np.testing.assert_array_equal(gen.params["sigma_annual"], fit.sigma_annual)
    assert (fit.sample_correlation[np.triu_indices(3, 1)] > 0.15).all()  # coins crashed together that evening
    prices = generate_multi_paths(gen, np.array([117_000.0, 207.0, 2.7]), 40, 60.0, path_seeds(3, 200))
    r = np.diff(np.log(prices), axis=1).reshape(-1, 3)
    got = np.corrcoef(r, rowvar=False)
    iu = np.triu_indices(3, 1)
    assert np.all(got[iu] > 0) and np.max(np.abs(got[iu] - fit.correlation[iu])) < 0.1
    vol = r.std(axis=0) * np.sqrt(365 * 24 * 60)
    np.testing.assert_allclose(vol, fit.sigma_annual, rtol=0.1)


def test_common_factor_crash_replays_the_factor_and_uses_the_fitted_betas(small_file):
    sc = load_scenario(small_file, ['stress.generator={kind="common_factor_crash", depth_pct=10, '
                                    'depth_dispersion=0.0}'])
    gen = prepare_multi_generator(sc.stress.generator, sc.instruments, DATA)
    rets = minute_log_returns_multi({c: DATA / FILES[c] for c in COINS})
    np.testing.assert_array_equal(gen.params["beta"], estimate_betas(rets.log_return, 0, COINS).beta)
    start = np.array([117_000.0, 207.0, 2.7])
    prices = generate_multi_paths(gen, start, 120, 60.0, path_seeds(5, 4))
    btc = prices[:, :, 0] / start[0]
    np.testing.assert_allclose(btc, np.broadcast_to(btc[0], btc.shape), rtol=1e-12)  # no noise on the factor
    assert btc.min() == pytest.approx(0.90, rel=1e-12)  # the trough rescaled to -10 %
    with pytest.raises(Exception, match="stress.horizon_s"):
        generate_multi_paths(gen, start, 5, 60.0, path_seeds(5, 1))


def test_critical_shock_is_a_common_drop_of_every_instrument(small_file):
    sc = load_scenario(small_file, ["stress.critical_shock.max_drop_pct=40", "stress.critical_shock.tolerance_pct=5",
                                    "venue.overrides.backstop.max_net_notional_ratio=0"])
    prep = prepare_accounts(sc, DATA)
    out = critical_shock(prep, sc.stress)
    lo, hi = out["critical_shock_bracket_pct"]
    assert out["critical_shock_pct"] == hi and hi - lo <= 5
    cs, st = sc.stress.critical_shock, sc.stress
    assert account_shock_depleted(prep, hi, cs.duration_s, st.horizon_s, st.dt_s)
    assert not account_shock_depleted(prep, lo, cs.duration_s, st.horizon_s, st.dt_s)
    assert out["critical_shock_applies_to"].startswith("every instrument")


@pytest.mark.parametrize(("args", "needle"), [
    (["--set", 'stress.generator={kind="gbm"}'], "stress.generator.kind: 'gbm'"),
    (["--engine", "fast"], "--engine fast"),
    (["--set", 'stress.generator={kind="common_factor_crash", factor="ETHUSDT"}'], "stress.generator.factor"),
    (["--set", 'stress.generator={kind="correlated", dependence="given", sigma_annual=[1.0, 2.0], '
               'correlation=[[1.0, 0.5], [0.5, 1.0]]}'], "stress.generator.sigma_annual"),
    (["--set", 'stress.generator={kind="correlated", dependence="given", sigma_annual=[1.0, 1.0, 1.0], '
               'correlation=[[1.0, 0.9, 0.9], [0.9, 1.0, -0.9], [0.9, -0.9, 1.0]]}'], "not positive definite"),
])
def test_cli_refuses_bad_multi_combinations_with_exit_2(small_file, tmp_path, args, needle):
    result = cli.invoke(app, ["stress", "--scenario", str(small_file), "--data-dir", str(DATA), "--no-progress",
                              "--executor", "inprocess", "--out", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert needle in " ".join(result.output.split())
    assert not any(tmp_path.iterdir())


def test_cli_refuses_a_multi_generator_on_a_one_instrument_scenario(tmp_path):
    result = cli.invoke(app, ["stress", "--data-dir", str(DATA), "--no-progress", "--executor", "inprocess",
                              "--out", str(tmp_path), "--set", "stress.generator.kind=correlated"])
    assert result.exit_code == 2, result.output
    assert "stress.generator.kind: 'correlated' needs a scenario with [[instruments]]" in " ".join(
        result.output.split())


def test_cli_multi_stress_json(small_file, tmp_path):
    result = cli.invoke(app, ["stress", "--scenario", str(small_file), "--data-dir", str(DATA), "--no-progress",
                              "--executor", "inprocess", "--paths", "4", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["paths"] == 4 and summary["generator_kind"] == "correlated"
    assert "t copula" in summary["generator"] and set(summary["start_prices"]) == set(COINS)
    assert (Path(summary["run_folder"]) / "report.html").is_file()
    quant = pq.read_table(Path(summary["run_folder"]) / "price_quantiles.parquet")
    assert {f"p50__{c}" for c in COINS} <= set(quant.column_names)

