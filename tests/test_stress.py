"""Monte Carlo stress runner: same numbers whatever the executor, workers and block size; checkpoints,
resume (after deleted blocks, a failing block, a kill -9), critical shock, the run folder, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import delever.stress as stress_mod
from delever.cli import app
from delever.errors import DeleverInputError
from delever.pathgen import generate_paths, path_seeds, prepare_generator
from delever.paths import PricePath, shock_path
from delever.runner import prepare, run_path
from delever.scenario import ShockDriver, load_scenario
from delever.stress import (
    FAN_QUANTILES,
    StressError,
    critical_shock,
    plan_blocks,
    run_stress,
    stress_config_hash,
)
from report_helpers import check_report, entries

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
# Small and fast (24 paths x 30 steps on a 2000-position book), with fat-tailed paths and a small
# insurance fund without a position cap, so that some paths deplete it and reach ADL.
SMALL = [
    "book.synthesize.positions=2000", "stress.horizon_s=600", "stress.dt_s=20", "stress.paths=24",
    "insurance_fund.initial_usd=2e6", "venue.overrides.backstop.max_net_notional_ratio=0",
    'stress.generator={kind="merton", sigma_annual=1.0, jumps_per_day=400.0, jump_mean=-0.03, jump_std=0.03}',
]
REQUIRED_KEYS = {
    "paths", "seed", "config_hash", "executor", "lar_95_usd", "lar_99_usd", "bad_debt_var_95_usd",
    "bad_debt_var_99_usd", "bad_debt_es_95_usd", "bad_debt_es_99_usd", "p_insurance_depleted", "p_adl",
    "amplification_p50", "amplification_p99", "critical_shock_pct", "adl_notional_dist", "engine", "wall_s",
    "paths_per_s",
}
# Everything that must not depend on how the work was cut or where it ran.
NUMBER_KEYS = sorted(REQUIRED_KEYS - {"executor", "wall_s", "paths_per_s", "engine"} | {
    "liquidated_notional_dist", "bad_debt_dist", "amplification_dist", "p_insurance_depleted_ci95", "p_adl_ci95",
    "critical_shock_bracket_pct", "liquidated_es_99_usd", "positions"})
cli = CliRunner()


def _scenario(*extra: str):
    return load_scenario(None, [*SMALL, *extra])


@pytest.fixture(scope="module")
def reference():
    """An uninterrupted in-process run of SMALL in one block on the general engine, nothing written."""
    return run_stress(_scenario(), DATA, executor="inprocess", block_size=24, progress=False, engine="general")


def _same_numbers(a: dict, b: dict) -> None:
    for key in NUMBER_KEYS:
        assert a[key] == b[key], key


def _same_paths(a, b) -> None:
    """Per-path metrics equal on every column both tables have, but the money checks (each engine's own sums)."""
    checks = {"ledger_imbalance_usd", "open_interest_mismatch_qty"}
    common = [c for c in b.column_names if c in a.column_names and c != "engine" and c not in checks]
    assert len(common) >= 20
    assert a.select(common).equals(b.select(common))


def test_fast_kernel_gives_the_general_engine_numbers_adl_paths_included(reference):
    res = run_stress(_scenario(), DATA, executor="inprocess", block_size=24, progress=False, engine="fast")
    assert res.summary["engine"] == "fast"
    _same_paths(res.paths, reference.paths)
    _same_numbers(res.summary, reference.summary)
    engines = np.asarray(res.paths.column("engine").to_pylist())
    adl = reference.paths.column("adl_count").to_numpy() > 0
    assert adl.any() and (engines == "fast").all()
    assert res.summary["paths_kernel"] == 24 and res.summary["paths_general"] == 0
    assert set(res.summary["path_engines"]) == {"fast"} and res.summary["path_engines"]["fast"]["paths"] == 24
    # measured on every path by the kernel itself, not a placeholder
    imbalance = np.abs(res.paths.column("ledger_imbalance_usd").to_numpy())
    assert res.summary["ledger_imbalance_max_usd"] == imbalance.max() < 1e-3
    assert res.summary["open_interest_mismatch_max_qty"] < 1e-6


def test_money_check_summary_is_null_with_a_reason_when_a_path_was_not_checked(reference):
    from delever.stress import _money_check_summary

    t = reference.paths
    assert _money_check_summary(t)["ledger_imbalance_max_usd"] < 1e-3
    col = t.column_names.index("ledger_imbalance_usd")
    values = t.column(col).to_pylist()
    values[3] = None
    out = _money_check_summary(t.set_column(col, "ledger_imbalance_usd", pa.array(values, pa.float64())))
    assert out["ledger_imbalance_max_usd"] is None and "1 of 24 paths" in out["ledger_imbalance_max_usd_reason"]
    out = _money_check_summary(t.drop_columns(["ledger_imbalance_usd"]))
    assert out["ledger_imbalance_max_usd"] is None and "24 of 24" in out["ledger_imbalance_max_usd_reason"]


# --------------------------------------------------------------------------- determinism
def test_the_reference_run_has_tails_and_consistent_metrics(reference):
    s, t = reference.summary, reference.paths
    assert REQUIRED_KEYS <= set(s) and s["engine"] == "general" and s["executor"] == "inprocess"
    assert t.num_rows == 24 and t.column("path").to_pylist() == list(range(24))
    liq = t.column("liquidated_notional_usd").to_numpy()
    depleted = t.column("insurance_depleted").to_numpy(zero_copy_only=False)
    assert 0 < depleted.sum() < 24, "the small scenario should deplete the fund on some paths, not all"
    assert s["lar_95_usd"] == pytest.approx(np.quantile(liq, 0.95), rel=1e-12)
    assert s["lar_99_usd"] >= s["lar_95_usd"] > 0
    assert s["p_insurance_depleted"] == depleted.mean()
    assert s["p_adl"] == (t.column("adl_count").to_numpy() > 0).mean()
    lo, hi = s["p_adl_ci95"]
    assert lo < s["p_adl"] < hi
    assert s["adl_notional_dist"]["p99"] >= s["adl_notional_dist"]["p50"] >= 0
    assert s["bad_debt_es_99_usd"] >= s["bad_debt_var_99_usd"] >= s["bad_debt_var_95_usd"] >= 0
    assert s["ledger_imbalance_max_usd"] < 1e-3
    # a path's row is exactly what the general engine gives on that path's generated prices
    sc = _scenario()
    prices = generate_paths(prepare_generator(sc.stress.generator, DATA), s["start_price"], s["steps"], s["dt_s"],
                            path_seeds(s["seed"], 24)[5:6])
    path = PricePath(np.arange(s["steps"] + 1) * s["dt_s"], prices[0], "stress", "one path", None)
    assert run_path(prepare(sc, DATA), path)["liquidated_notional_usd"] == liq[5]


@pytest.mark.parametrize(("executor", "workers", "block_size"), [
    ("inprocess", None, 5),
    ("processes", 2, 7),
    ("processes", 1, 24),
])
def test_same_seed_same_numbers_whatever_executor_workers_and_block_size(reference, executor, workers, block_size):
    res = run_stress(_scenario(), DATA, executor=executor, workers=workers, block_size=block_size, progress=False)
    _same_paths(res.paths, reference.paths)
    _same_numbers(res.summary, reference.summary)
    assert res.summary["executor"] == executor and res.summary["blocks"] == -(-24 // block_size)
    assert res.fan == reference.fan


def test_dask_local_cluster_gives_the_same_numbers(reference, tmp_path):
    pytest.importorskip("distributed")
    res = run_stress(_scenario(), DATA, executor="dask", workers=2, block_size=6, out_dir=tmp_path, progress=False)
    _same_paths(res.paths, reference.paths)
    _same_numbers(res.summary, reference.summary)
    assert res.summary["executor"] == "dask" and res.summary["workers"] == 2
    assert len(list((res.run_folder / "blocks").glob("block-*.parquet"))) == 4


def test_a_different_seed_gives_different_paths(reference):
    other = run_stress(_scenario("seed=8", "stress.critical_shock.enabled=false"), DATA, executor="inprocess",
                       progress=False)
    assert other.summary["config_hash"] != reference.summary["config_hash"]
    assert not other.paths.select(["liquidated_notional_usd"]).equals(reference.paths.select(["liquidated_notional_usd"]))


def test_block_size_is_not_part_of_the_config_hash():
    sc = _scenario()
    prep = prepare(sc, DATA)
    assert stress_config_hash(sc, prep) == stress_config_hash(_scenario("stress.block_size=3"), prep)
    assert stress_config_hash(sc, prep) != stress_config_hash(_scenario("stress.paths=25"), prep)


def test_block_seeds_are_the_path_seeds_of_pathgen():
    seeds = path_seeds(7, 50)
    for i in (0, 1, 17, 49):
        mine = stress_mod._spawn_children(7, i, i + 1)[0]
        assert np.array_equal(mine.generate_state(8), seeds[i].generate_state(8))
    assert stress_mod._seed_plan(7, 50) is None  # lazily built per block, no list of every path's seed


def test_plan_blocks_covers_every_path_once():
    blocks = plan_blocks(23, 5)
    assert [(b.start, b.stop) for b in blocks] == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 23)]
    assert blocks[4].file_name == "block-00004.parquet"
    for bad in ((0, 5), (-3, 5), (10, 0)):
        with pytest.raises(DeleverInputError):
            plan_blocks(*bad)


# --------------------------------------------------------------------------- run folder, resume, failures
def test_run_folder_holds_blocks_paths_summary_config_and_report(reference, tmp_path):
    res = run_stress(_scenario(), DATA, executor="inprocess", block_size=10, out_dir=tmp_path, progress=False)
    folder = res.run_folder
    h = res.summary["config_hash"]
    assert folder.parent == tmp_path and folder.name.startswith(f"default-btcusdt-shock-stress-{h}-")
    assert sorted(p.name for p in (folder / "blocks").iterdir()) == [f"block-0000{i}.parquet" for i in range(3)]
    _same_paths(pq.read_table(folder / "paths.parquet"), reference.paths)
    summary = json.loads((folder / "summary.json").read_text())
    _same_numbers(summary, reference.summary)
    assert summary["run_folder"] == str(folder)
    config = json.loads((folder / "stress_config.json").read_text())
    assert config["config_hash"] == h and config["seed"] == 7 and config["block_size"] == 10
    assert config["scenario"]["stress"]["paths"] == 24
    quant = pq.read_table(folder / "price_quantiles.parquet")
    assert quant.column_names == ["t_s", *[f"p{round(q * 100):02d}" for q in FAN_QUANTILES]]
    p01, p50, p99 = (quant.column(c).to_numpy() for c in ("p01", "p50", "p99"))
    assert (p01 <= p50).all() and (p50 <= p99).all() and p50[0] == res.summary["start_price"]
    html = (folder / "report.html").read_text()
    check_report(folder / "report.html", tmp_path)  # plotly.js once in the output root: works offline
    for title in ("Generated price paths", "Liquidated notional (USD)", "Bad debt (USD)", "ADL notional (USD)",
                  "Amplification (x)", "LaR 99 %"):
        assert title in html
    assert not list(folder.rglob("*.tmp"))


def test_resume_after_deleting_blocks_gives_the_same_numbers(reference, tmp_path):
    first = run_stress(_scenario(), DATA, executor="inprocess", block_size=4, out_dir=tmp_path, progress=False)
    folder = first.run_folder
    blocks = folder / "blocks"
    for i in (1, 2, 5):
        (blocks / f"block-0000{i}.parquet").unlink()
    (blocks / "block-00003.parquet").write_bytes(b"not parquet")  # damaged file: recomputed
    (blocks / ".block-00001.parquet.4242.deadbeef.tmp").write_bytes(b"half a block")  # leftover of a killed run
    (folder / "summary.json").unlink()
    res = run_stress(_scenario(), DATA, executor="processes", workers=2, resume=folder, progress=False)
    assert res.run_folder == folder and res.summary["run_folder"] == str(folder)
    assert res.summary["blocks_resumed"] == 2 and res.summary["paths_computed"] == 16
    _same_paths(res.paths, reference.paths)
    _same_numbers(res.summary, reference.summary)
    _same_numbers(json.loads((folder / "summary.json").read_text()), reference.summary)
    assert sorted(p.name for p in blocks.iterdir()) == [f"block-0000{i}.parquet" for i in range(6)]
    assert any("recomputed" in n for n in res.summary["notes"])
    assert entries(tmp_path) == [folder.name]


def test_resume_refuses_another_config_hash_and_block_size(tmp_path):
    sc = _scenario("stress.critical_shock.enabled=false")
    first = run_stress(sc, DATA, executor="inprocess", block_size=8, out_dir=tmp_path, progress=False)
    other = _scenario("stress.critical_shock.enabled=false", "seed=11")
    with pytest.raises(DeleverInputError) as exc:
        run_stress(other, DATA, executor="inprocess", resume=first.run_folder, progress=False)
    msg = str(exc.value)
    assert first.summary["config_hash"] in msg and stress_config_hash(other, prepare(other, DATA)) in msg
    with pytest.raises(DeleverInputError, match="block size 8"):
        run_stress(sc, DATA, executor="inprocess", resume=first.run_folder, block_size=5, progress=False)
    with pytest.raises(DeleverInputError, match="stress_config.json"):
        run_stress(sc, DATA, executor="inprocess", resume=tmp_path, progress=False)


def test_a_failing_block_keeps_the_finished_blocks_and_resume_completes_it(reference, tmp_path, monkeypatch):
    calls = {"n": 0}

    def flaky(prep, path):
        calls["n"] += 1
        if calls["n"] == 9:  # first path of the third block
            raise RuntimeError("worker lost")
        return run_path(prep, path)

    monkeypatch.setattr(stress_mod, "run_path", flaky)
    with pytest.raises(StressError, match=r"block 2 \(paths 8-11\) failed: RuntimeError: worker lost") as exc:
        run_stress(_scenario(), DATA, executor="inprocess", block_size=4, out_dir=tmp_path, progress=False,
                   engine="general")
    (folder,) = tmp_path.iterdir()
    assert "--resume" in str(exc.value) and str(folder) in str(exc.value)
    assert sorted(p.name for p in (folder / "blocks").iterdir()) == ["block-00000.parquet", "block-00001.parquet"]
    assert not (folder / "summary.json").exists()
    monkeypatch.setattr(stress_mod, "run_path", run_path)
    res = run_stress(_scenario(), DATA, executor="inprocess", resume=folder, progress=False)
    assert res.summary["blocks_resumed"] == 2
    _same_numbers(res.summary, reference.summary)


def test_kill_9_mid_run_then_resume_gives_the_numbers_of_an_uninterrupted_run(reference, tmp_path):
    out = tmp_path / "runs"
    args = [sys.executable, "-m", "delever", "stress", "--data-dir", str(DATA), "--executor", "inprocess",
            "--block-size", "1", "--out", str(out), "--no-progress", "--json"]
    for item in SMALL:
        args += ["--set", item]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(out.glob("*/blocks/block-*.parquet"))) >= 3:
                break
            time.sleep(0.002)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    (folder,) = out.iterdir()
    finished = len(list((folder / "blocks").glob("block-*.parquet")))
    assert 3 <= finished < 24 and not (folder / "summary.json").exists(), "the run was not interrupted mid-way"
    result = cli.invoke(app, ["stress", "--data-dir", str(DATA), "--executor", "inprocess", "--resume", str(folder),
                              "--no-progress", "--json", *[a for item in SMALL for a in ("--set", item)]])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["blocks_resumed"] == finished and summary["run_folder"] == str(folder)
    _same_numbers(summary, reference.summary)
    _same_paths(pq.read_table(folder / "paths.parquet"), reference.paths)


# --------------------------------------------------------------------------- critical shock
def test_critical_shock_is_the_smallest_drop_that_depletes_the_fund(reference):
    prep = prepare(_scenario(), DATA)
    cs = reference.summary
    assert cs["critical_shock_pct"] is not None and 0 < cs["critical_shock_pct"] < 60
    lo, hi = cs["critical_shock_bracket_pct"]
    assert hi == cs["critical_shock_pct"] and 0 < hi - lo <= cs["critical_shock_tolerance_pct"] == 0.25
    def depleted(drop):
        drv = ShockDriver(move_pct=-drop, duration_s=60.0, hold_s=540.0, shape="linear")
        return run_path(prep, shock_path(drv, cs["start_price"], 20.0))["insurance_depleted"]

    assert depleted(hi) and not depleted(lo) and not depleted(hi - 0.3)


def test_critical_shock_none_when_the_max_drop_does_not_deplete_and_zero_when_already_depleted():
    never = critical_shock(prepare(_scenario("insurance_fund.initial_usd=1e13",
                                             "stress.critical_shock.max_drop_pct=2"), DATA))
    assert never["critical_shock_pct"] is None and "does not deplete" in never["critical_shock_note"]
    assert never["critical_shock_evaluations"] == 1
    empty = critical_shock(prepare(_scenario("insurance_fund.initial_usd=0"), DATA))
    assert empty["critical_shock_pct"] == 0.0 and "without any shock" in empty["critical_shock_note"]


# --------------------------------------------------------------------------- CLI and bad input
def _cli(tmp_path: Path, *args: str):
    return cli.invoke(app, ["stress", "--data-dir", str(DATA), "--out", str(tmp_path / "runs"), "--no-progress",
                            *[a for item in SMALL for a in ("--set", item)], *args])


def test_cli_json_prints_exactly_one_object(tmp_path, reference):
    result = _cli(tmp_path, "--json", "--executor", "inprocess", "--paths", "24", "--block-size", "12")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert REQUIRED_KEYS <= set(summary) and summary["paths"] == 24 and summary["block_size"] == 12
    _same_numbers(summary, reference.summary)
    assert Path(summary["run_folder"]).is_dir()


def test_cli_table_output(tmp_path):
    result = _cli(tmp_path, "--executor", "inprocess", "--paths", "4", "--set", "stress.critical_shock.enabled=false")
    assert result.exit_code == 0, result.output
    assert "LaR 99 %" in result.stdout and "run folder" in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--paths", "0"], "--paths: expected a whole number of paths >= 1, got 0"),
    (["--paths", "-5"], "--paths: expected a whole number of paths >= 1, got -5"),
    (["--block-size", "0"], "--block-size: expected a whole number of paths per block >= 1, got 0"),
    (["--block-size", "-2"], "--block-size"),
    (["--workers", "0"], "--workers"),
    (["--executor", "threads"], "--executor: expected one of inprocess, processes, dask"),
    (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler: only used with --executor dask"),
    (["--set", "stress.paths=0"], "stress.paths"),
])
def test_cli_bad_input_exits_2_with_one_line_and_leaves_no_folder(tmp_path, args, message):
    result = _cli(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_cli_unreachable_dask_scheduler_exits_2_naming_the_address(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(stress_mod, "DASK_CONNECT_TIMEOUT_S", 0.5)
    t0 = time.monotonic()
    result = _cli(tmp_path, "--executor", "dask", "--scheduler", "tcp://127.0.0.1:1", "--paths", "4")
    assert result.exit_code == 2, result.output
    assert "--scheduler tcp://127.0.0.1:1: cannot reach the Dask scheduler" in " ".join(result.stderr.split())
    assert time.monotonic() - t0 < 20
    assert not list((tmp_path / "runs").iterdir())


def test_cli_resume_of_another_config_exits_2_naming_both_hashes(tmp_path):
    first = _cli(tmp_path, "--json", "--executor", "inprocess", "--paths", "4",
                 "--set", "stress.critical_shock.enabled=false")
    summary = json.loads(first.stdout)
    result = _cli(tmp_path, "--executor", "inprocess", "--paths", "5", "--set", "stress.critical_shock.enabled=false",
                  "--resume", summary["run_folder"])
    assert result.exit_code == 2
    text = " ".join(result.stderr.split())
    assert summary["config_hash"] in text and text.count("config hash") == 2
