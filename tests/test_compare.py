"""Policy comparison (``delever compare``) and frontier: common random numbers, the paired bootstrap, policy
sets and their errors, the run folder and the CLI; the per-path traders' liquidation losses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from delever.cli import app
from delever.compare import (
    METRICS,
    PolicySet,
    combine_policies,
    compare_metrics,
    frontier_policies,
    load_policy,
    parse_policies,
    parse_values,
    policy_scenarios,
    preset_names,
    run_compare,
    run_frontier,
)
from delever.errors import DeleverInputError
from delever.metrics import tail_metrics
from delever.pathgen import generate_paths, path_seeds, prepare_generator
from delever.runner import prepare
from engine_helpers import make_book, make_engine
from report_helpers import check_report

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
# 16 fat-tailed paths x 30 steps on a 1500-position book with a small fund: some paths deplete it and reach ADL.
SMALL = [
    "book.synthesize.positions=1500", "stress.horizon_s=600", "stress.dt_s=20", "stress.paths=16",
    "insurance_fund.initial_usd=2e6", "venue.overrides.backstop.max_net_notional_ratio=0",
    "stress.critical_shock.enabled=false",
    'stress.generator={kind="merton", sigma_annual=1.0, jumps_per_day=400.0, jump_mean=-0.03, jump_std=0.03}',
]
RESAMPLES = 300
ALL_PRESETS = {"baseline", "partial", "mark-ema", "circuit-breaker", "dynamic-margin", "pro-rata-adl"}
cli = CliRunner()


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def policy_files(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("policies")
    return {
        "same": _write(d / "same.toml", 'name = "same"\ndescription = "no overrides: the baseline again"\n'),
        "big-fund": _write(d / "big.toml", 'name = "big-fund"\n[insurance_fund]\ninitial_usd = 1.0e12\n'),
        "half": _write(d / "half.toml", "[venue.overrides.liquidation]\npartial_fraction = 0.5\n"),
    }


@pytest.fixture(scope="module")
def compared(policy_files):
    pols = parse_policies(f"baseline,partial,{policy_files['same']},{policy_files['big-fund']}")
    scenarios = policy_scenarios(None, pols, SMALL)
    return run_compare(scenarios, pols, DATA, executor="inprocess", progress=False, resamples=RESAMPLES)


def _rows(res) -> dict[str, dict]:
    return {p["name"]: p["metrics"] for p in res.summary["policies"]}


# --------------------------------------------------------------------------- common random numbers
def test_every_policy_runs_on_the_same_exogenous_paths(compared):
    prices = []
    for run in compared.runs:
        prep = prepare(run.scenario, DATA)
        st = run.scenario.stress
        gen = prepare_generator(st.generator, DATA)
        prices.append(np.asarray(generate_paths(gen, float(prep.path.price[0]), round(st.horizon_s / st.dt_s),
                                                st.dt_s, path_seeds(run.scenario.seed, st.paths))))
        assert run.result.paths.column("exogenous_move_pct").equals(
            compared.runs[0].result.paths.column("exogenous_move_pct"))
    for p in prices[1:]:
        np.testing.assert_array_equal(p, prices[0])
    assert compared.runs[0].scenario != compared.runs[1].scenario  # the policies did change something


def test_the_same_policy_twice_differs_by_exactly_zero_with_a_zero_width_interval(compared):
    rows = _rows(compared)
    assert compared.summary["baseline"] == "baseline"
    for m in METRICS:
        same, base = rows["same"][m.key], rows["baseline"][m.key]
        assert same["value"] == base["value"] and same["ci"] == base["ci"], m.key
        assert same["diff"] == 0.0 and same["diff_ci"] == [0.0, 0.0], m.key
        assert base["diff"] == 0.0 and base["diff_ci"] == [0.0, 0.0]


def test_partial_liquidation_changes_the_liquidations_and_a_huge_fund_is_never_depleted_more(compared):
    rows = _rows(compared)
    liq = {r.policy.name: r.result.paths.column("liquidation_count").to_numpy() for r in compared.runs}
    assert not np.array_equal(liq["partial"], liq["baseline"])
    assert rows["partial"]["liquidated_notional_mean_usd"]["diff"] != 0.0
    big, base = rows["big-fund"], rows["baseline"]
    assert base["p_insurance_depleted"]["value"] > 0  # the small fund is depleted on some paths
    assert big["p_insurance_depleted"]["value"] == 0.0
    assert big["p_insurance_depleted"]["diff"] < 0 and big["p_insurance_depleted"]["diff_ci"][0] < 0
    # (bad debt itself may grow: a fund that can carry its inventory takes the losses ADL would pass on)
    assert big["p_adl"]["value"] == 0.0 < base["p_adl"]["value"]
    unrecovered = {r.policy.name: r.result.paths.column("bad_debt_unrecovered_usd").to_numpy() for r in compared.runs}
    assert (unrecovered["big-fund"] <= unrecovered["baseline"]).all()


# --------------------------------------------------------------------------- the paired bootstrap
def test_point_estimates_are_the_stress_tail_metrics(compared):
    keys = ["lar_95_usd", "lar_99_usd", "bad_debt_var_95_usd", "bad_debt_var_99_usd", "bad_debt_es_95_usd",
            "bad_debt_es_99_usd", "p_insurance_depleted", "p_adl", "amplification_p50", "amplification_p99"]
    for run, row in zip(compared.runs, compared.summary["policies"], strict=True):
        tm = tail_metrics(run.result.paths)
        for key in keys:
            assert row["metrics"][key]["value"] == pytest.approx(tm[key], rel=1e-12, abs=1e-9), key
        assert row["metrics"]["p_insurance_depleted"]["ci"] == pytest.approx(tm["p_insurance_depleted_ci95"])
        loss = run.result.paths.column("trader_liquidation_loss_usd").to_numpy()
        assert row["metrics"]["trader_liquidation_loss_mean_usd"]["value"] == pytest.approx(loss.mean(), rel=1e-12)
        assert row["metrics"]["trader_liquidation_loss_mean_usd"]["value"] > 0


def test_bootstrap_intervals_hold_the_estimates_and_are_reproducible_from_the_seed(compared):
    tables = [r.result.paths for r in compared.runs]
    a = compare_metrics(tables, 0, RESAMPLES, seed=5)
    b = compare_metrics(tables, 0, RESAMPLES, seed=5)
    c = compare_metrics(tables, 0, RESAMPLES, seed=6)
    assert a == b and a != c
    for row in a:
        for m in METRICS:
            cell = row[m.key]
            if cell["value"] is None:
                continue
            lo, hi = cell["ci"]
            assert lo <= cell["value"] <= hi, m.key
            dlo, dhi = cell["diff_ci"]
            assert dlo <= cell["diff"] <= dhi, m.key
    # a wider interval at a higher level
    wide = compare_metrics(tables, 0, RESAMPLES, confidence=0.99, seed=5)
    k = "liquidated_notional_mean_usd"
    assert wide[1][k]["diff_ci"][0] <= a[1][k]["diff_ci"][0] and wide[1][k]["diff_ci"][1] >= a[1][k]["diff_ci"][1]


def test_paired_differences_are_tighter_than_the_values_intervals(compared):
    """Common random numbers: the difference's interval is far narrower than either value's."""
    rows = _rows(compared)
    k = "liquidated_notional_mean_usd"
    value_width = rows["baseline"][k]["ci"][1] - rows["baseline"][k]["ci"][0]
    diff_width = rows["partial"][k]["diff_ci"][1] - rows["partial"][k]["diff_ci"][0]
    assert 0 < diff_width < value_width


def test_compare_metrics_rejects_bad_arguments(compared):
    tables = [r.result.paths for r in compared.runs]
    with pytest.raises(DeleverInputError, match="--resamples"):
        compare_metrics(tables, 0, 10)
    with pytest.raises(DeleverInputError, match="same number"):
        compare_metrics([tables[0], tables[1].slice(0, 5)])
    with pytest.raises(DeleverInputError, match="confidence"):
        compare_metrics(tables, 0, RESAMPLES, confidence=1.5)


# --------------------------------------------------------------------------- policy sets
def test_presets_ship_and_load():
    assert set(preset_names()) == ALL_PRESETS
    for name in ALL_PRESETS:
        pol = load_policy(name)
        assert pol.name == name and pol.description
    assert load_policy("baseline").overrides == {}
    assert load_policy("partial").overrides == {"venue": {"overrides": {"liquidation": {
        "partial_threshold_usd": 100000.0, "partial_fraction": 0.2, "partial_cooldown_s": 30.0}}}}
    sc = policy_scenarios(None, [load_policy("pro-rata-adl")], SMALL)[0]
    assert sc.venue.overrides["adl"] == {"policy": "pro_rata"}


def test_policy_overrides_merge_into_the_scenarios_venue_overrides():
    sc = policy_scenarios(None, [load_policy("partial")], SMALL)[0]
    assert sc.venue.overrides["backstop"] == {"max_net_notional_ratio": 0}  # from --set, kept
    assert sc.venue.overrides["liquidation"]["partial_fraction"] == 0.2
    assert sc.insurance_fund.initial_usd == 2e6


def test_combined_policies_and_contradictions(policy_files):
    both = parse_policies("partial+pro-rata-adl")[0]
    assert both.name == "partial+pro-rata-adl"
    assert both.overrides["venue"]["overrides"]["adl"] == {"policy": "pro_rata"}
    assert both.overrides["venue"]["overrides"]["liquidation"]["partial_fraction"] == 0.2
    with pytest.raises(DeleverInputError, match=r"contradictory policies: 'venue.overrides.liquidation."
                                                r"partial_fraction' = 0.2 in partial .* = 0.5 in half"):
        parse_policies(f"partial+{policy_files['half']}")
    table_vs_value = PolicySet("t", "", {"venue": {"overrides": {"adl": "x"}}}, "test")
    with pytest.raises(DeleverInputError, match="contradictory"):
        combine_policies([load_policy("pro-rata-adl"), table_vs_value])


@pytest.mark.parametrize(("text", "files", "message"), [
    ("", {}, "--policies: expected a comma-separated list of policy presets"),
    ("baseline,,partial", {}, "--policies: item 2 of 'baseline,,partial' is empty"),
    ("baseline,nope", {}, "--policies: unknown policy 'nope' (presets: baseline, circuit-breaker"),
    ("baseline,partial,baseline", {}, "--policies: policy name 'baseline' appears twice"),
    ("{d}/missing.toml", {}, "missing.toml: policy file not found"),
    ("{d}/bad.toml", {"bad.toml": "name = 'x'\n[venue\n"}, "bad.toml: not valid TOML"),
    ("{d}/seed.toml", {"seed.toml": "seed = 3\n"}, "key 'seed' changes the random price paths"),
    ("{d}/st.toml", {"st.toml": "[stress]\npaths = 3\n"}, "key 'stress.paths' changes the random price paths"),
    ("{d}/pd.toml", {"pd.toml": "[price_driver]\nmove_pct = -20.0\n"}, "key 'price_driver.move_pct'"),
    ("{d}/nm.toml", {"nm.toml": "name = 3\n"}, "field 'name': expected a non-empty string"),
    ("baseline,{d}/dup.toml", {"dup.toml": "name = 'baseline'\n"}, "policy name 'baseline' appears twice"),
])
def test_bad_policy_lists_name_the_option(tmp_path, text, files, message):
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    with pytest.raises(DeleverInputError) as exc:
        parse_policies(text.format(d=tmp_path))
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_toml_errors_name_the_line(tmp_path):
    (tmp_path / "bad.toml").write_text("name = 'x'\n\n[venue\n")
    with pytest.raises(DeleverInputError, match=r"line 3"):
        load_policy(str(tmp_path / "bad.toml"))


@pytest.mark.parametrize(("body", "message"), [
    ("[insurance_fund]\ninitial_usdx = 1.0\n", "field 'insurance_fund.initial_usdx': unknown key"),
    ("[insurance_fund]\ninitial_usd = -1.0\n", "field 'insurance_fund.initial_usd'"),
    ("[venue.overrides.liquidation]\npartial_fraction = 7.0\n", "venue.overrides"),
    ("[venue.overrides.liquidationx]\nfoo = 1\n", "venue.overrides"),
])
def test_a_policy_key_that_is_not_a_scenario_field_is_named_with_the_policy(tmp_path, body, message):
    path = _write(tmp_path / "p.toml", "name = 'mine'\n" + body)
    with pytest.raises(DeleverInputError) as exc:
        policy_scenarios(None, parse_policies(path), SMALL)
    assert str(exc.value).startswith("--policies mine (")
    assert message in str(exc.value)


def test_scenarios_that_do_not_share_the_paths_are_refused():
    pols = parse_policies("baseline,partial")
    a, b = policy_scenarios(None, pols, SMALL)
    b = b.model_copy(update={"seed": a.seed + 1})
    with pytest.raises(DeleverInputError, match="--policies partial: 'seed' differs from baseline's"):
        run_compare([a, b], pols, DATA, executor="inprocess", progress=False)


# --------------------------------------------------------------------------- frontier
def test_values_and_frontier_policies():
    assert parse_values("2, 3,5.5") == [2, 3, 5.5]
    assert parse_values('"queue",pro_rata') == ["queue", "pro_rata"]
    for text, message in (("", "at least 2"), ("3", "at least 2"), ("1,,2", "item 2"), ("1,2,1", "appears twice")):
        with pytest.raises(DeleverInputError, match=f"--values: .*{message}"):
            parse_values(text)
    pols = frontier_policies(load_policy("partial"), "venue.overrides.liquidation.partial_fraction", [0.1, 0.5])
    assert [p.name for p in pols] == ["partial_fraction=0.1", "partial_fraction=0.5"]
    assert pols[1].overrides["venue"]["overrides"]["liquidation"] == {
        "partial_threshold_usd": 100000.0, "partial_fraction": 0.5, "partial_cooldown_s": 30.0}
    with pytest.raises(DeleverInputError, match="--param stress.paths: key 'stress.paths' changes"):
        frontier_policies(load_policy("baseline"), "stress.paths", [1, 2])
    with pytest.raises(DeleverInputError, match="--param: expected a dotted scenario key"):
        frontier_policies(load_policy("baseline"), "a..b", [1, 2])


def test_frontier_param_not_in_the_scenario_is_named():
    with pytest.raises(DeleverInputError) as exc:
        run_frontier(None, "insurance_fund.size_usd", [1, 2], load_policy("baseline"), DATA, SMALL)
    assert str(exc.value).startswith("--param size_usd=1 (")
    assert "field 'insurance_fund.size_usd': unknown key" in str(exc.value)


def test_frontier_over_the_fund_size_writes_points_and_a_chart(tmp_path):
    res = run_frontier(None, "insurance_fund.initial_usd", [1e5, 1e12], load_policy("baseline"), DATA, SMALL,
                       executor="inprocess", progress=False, resamples=RESAMPLES, out_dir=tmp_path)
    pts = res.summary["points"]
    assert [p["value"] for p in pts] == [1e5, 1e12] and res.summary["param"] == "insurance_fund.initial_usd"
    assert pts[1]["p_insurance_depleted"]["value"] <= pts[0]["p_insurance_depleted"]["value"]
    assert pts[0]["p_insurance_depleted"]["value"] > 0
    folder = res.run_folder
    assert folder.name.startswith("default-btcusdt-shock-frontier-")
    saved = json.loads((folder / "compare.json").read_text())
    assert saved["points"] == json.loads(json.dumps(pts))
    assert "Frontier: insurance_fund.initial_usd" in (folder / "report.html").read_text()


# --------------------------------------------------------------------------- CLI
def _cli(tmp_path: Path, *args: str):
    return cli.invoke(app, [args[0], "--data-dir", str(DATA), "--out", str(tmp_path / "runs"), "--no-progress",
                            "--executor", "inprocess", "--resamples", str(RESAMPLES),
                            *[a for item in SMALL for a in ("--set", item)], *args[1:]])


def test_cli_json_has_one_row_per_policy_with_intervals_and_differences(tmp_path):
    result = _cli(tmp_path, "compare", "--policies", "baseline,partial", "--paths", "8", "--json")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["paths"] == 8 and out["seed"] == 7 and out["baseline"] == "baseline"
    assert [p["name"] for p in out["policies"]] == ["baseline", "partial"]
    assert set(out["config_hashes"]) == {"baseline", "partial"}
    for pol in out["policies"]:
        assert set(pol["metrics"]) == {m.key for m in METRICS}
        for cell in pol["metrics"].values():
            assert set(cell) == {"value", "ci", "diff", "diff_ci"} and len(cell["ci"]) == 2
    folder = Path(out["run_folder"])
    assert (folder / "compare.json").is_file() and (folder / "report.html").is_file()
    for name in ("baseline", "partial"):
        table = pq.read_table(folder / "policies" / name / "paths.parquet")
        assert table.num_rows == 8 and "trader_liquidation_loss_usd" in table.column_names
        assert json.loads((folder / "policies" / name / "config.json").read_text())["policy"]["name"] == name
    html = (folder / "report.html").read_text()
    assert "Difference to baseline" in html
    check_report(folder / "report.html", folder.parent)


def test_cli_table_output(tmp_path):
    result = _cli(tmp_path, "compare", "--policies", "baseline,pro-rata-adl", "--paths", "4", "--no-write")
    assert result.exit_code == 0, result.output
    assert "LaR 99 %" in result.stdout and "pro-rata-adl" in result.stdout and "Δ" in result.stdout
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["compare", "--policies", "baseline,nope"], "--policies: unknown policy 'nope' (presets: baseline,"),
    (["compare", "--policies", ""], "--policies: expected a comma-separated list"),
    (["compare", "--policies", "baseline,baseline"], "--policies: policy name 'baseline' appears twice"),
    (["compare", "--policies", "baseline", "--paths", "0"], "--paths: expected a whole number of paths >= 1"),
    (["compare", "--policies", "baseline,partial", "--resamples", "5"], "--resamples: expected a whole number"),
    (["frontier", "--param", "insurance_fund.initial_usd", "--values", "1e6"], "--values: expected at least 2"),
    (["frontier", "--param", "insurance_fund.nope", "--values", "1,2"], "--param nope=1"),
    (["frontier", "--param", "venue.overrides.liquidation.partial_fraction", "--values", "0.5,7"],
     "--param partial_fraction=7 (venue.overrides.liquidation.partial_fraction=7 on preset baseline): venue"),
    (["frontier", "--param", "seed", "--values", "1,2"], "--param seed: key 'seed' changes the random price paths"),
    (["frontier", "--param", "x", "--values", "1,2", "--policy", "nope"], "--policy: unknown policy 'nope'"),
])
def test_cli_bad_input_exits_2_with_one_line_naming_the_option(tmp_path, args, message):
    result = _cli(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


# --------------------------------------------------------------------------- traders' liquidation losses
@pytest.mark.parametrize(("venue", "instrument", "depth_usd"), [("binance-usdm", "BTCUSDT", 2e6),
                                                                 ("hyperliquid", "BTC", 2e5)])
def test_trader_liquidation_loss_is_fees_slippage_and_surrendered_equity(venue, instrument, depth_usd):
    """From the liquidation table: market fills cost the fee plus adverse slippage versus mark; a takeover
    (Binance, at the bankruptcy price) or a backstop (Hyperliquid, at mark) costs the equity at mark."""
    book = make_book(np.random.default_rng(3), 400, instrument, max_lev=50.0)
    eng = make_engine(book, venue, move_pct=-12.0, depth_usd=depth_usd, insurance_fund_usd=1e9)
    eng.run()
    t = eng.liq_rows.to_table().to_pydict()
    want, kinds = 0.0, set()
    for kind, side, qty, price, bp, fee, mark in zip(t["kind"], t["side"], t["qty"], t["price"],
                                                     t["bankruptcy_price"], t["fee_usd"], t["mark_price"],
                                                     strict=True):
        kinds.add(kind)
        if kind in ("takeover", "backstop"):
            want += max(side * qty * (mark - bp), 0.0)
        else:
            want += fee + max(side * qty * (mark - price), 0.0)
    got = eng.totals.trader_liquidation_loss_usd
    assert kinds >= ({"market", "takeover"} if venue == "binance-usdm" else {"market", "backstop"})
    assert got == pytest.approx(want, rel=1e-9) and got > 0


def test_report_verdict_ignores_round_off_differences():
    from delever.compare_report import _verdict, format_value

    assert _verdict({"value": 2.4e7, "diff_ci": [7e-9, 1.4e-7]}) == ""
    assert _verdict({"value": 2.4e7, "diff_ci": [-5e5, -1e3]}) == "lower"
    assert _verdict({"value": 0.2, "diff_ci": [0.01, 0.2]}) == "higher"
    assert format_value(-2.5e6, "usd", True) == "-$2.5M" and format_value(0.125, "prob", True) == "+12.50 %"
    assert format_value(1e-8, "usd", True) == "$0" and format_value(None, "x") == "n/a"
