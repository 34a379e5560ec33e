"""delever benchmarks: every figure measured side by side in one run.

    python benchmarks/run.py            # full size (1e6 positions x 1e4 paths x 60 steps)
    python benchmarks/run.py --quick    # small size, a minute or so
    python benchmarks/run.py --json     # one JSON object

Figures (targets from the Monte Carlo issue in brackets; they are targets, not assertions):
- cascade_1e6_vs_floor: one cascade on 1e6 positions (fast-book build incl. the sort + one path) over the
  floor of np.sort of the same liquidation prices plus one pass over the arrays [<= 3].
- mc_fast_wall_s: Monte Carlo with the fast kernel, positions x paths x steps [< 10 s at 1e6 x 1e4 x 60].
- general_position_steps_per_s: the general engine (the fallback), per core [>= 5e7].
- speedup_vs_python: fast kernel vs its plain-Python reference (the same kernel code run by the
  Python interpreter) on the same small case, identical liquidation totals [>= 100].
- speedup_vs_mesa: fast kernel vs the Mesa agent-based model on the same small case, identical
  liquidation totals [>= 1000].
- dask_2_vs_1_workers: stress throughput of a Dask LocalCluster with 2 workers over 1 worker.
- peak_bytes_per_position: peak resident memory added by the Monte Carlo run, per position [<= 100].
- accounts_example_*: the account engine on examples/hyperliquid-2025-10-10-multi.toml as users run it (13 coins,
  cross-margined accounts, its own book size), wall and position-steps per second.
- accounts_vs_positions_ratio: the account engine over the one-instrument engine on the same one-instrument book
  and paths (the cost of the general model), with the liquidation and ADL totals compared.
Mesa comes with the bench extra: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _prepare(positions: int, extra: list[str] | None = None):
    from delever.runner import prepare
    from delever.scenario import load_scenario, resolve_data_dir

    sc = load_scenario(None, [f"book.synthesize.positions={positions}", "insurance_fund.initial_usd=1e13",
                              *(extra or [])])
    return prepare(sc, resolve_data_dir())


def _gbm_paths(prep, n_paths: int, steps: int, dt_s: float, seed: int = 1):
    from delever.pathgen import generate_paths, path_seeds, prepare_generator
    from delever.scenario import GbmPaths, resolve_data_dir

    gen = prepare_generator(GbmPaths(sigma_annual=1.5), resolve_data_dir())
    prices = generate_paths(gen, float(prep.path.price[0]), steps, dt_s, path_seeds(seed, n_paths))
    return np.arange(steps + 1) * dt_s, prices


def _shock(prep, move_pct: float, steps: int, dt_s: float):
    from delever.paths import shock_path
    from delever.scenario import ShockDriver

    return shock_path(ShockDriver(move_pct=move_pct, duration_s=steps * dt_s / 2, hold_s=steps * dt_s / 2),
                      float(prep.path.price[0]), dt_s)


def _best(fn, repeat: int = 3) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_cascade_vs_floor(n: int) -> dict:
    from delever.engine.fast import build_fast_book, run_paths_fast

    prep = _prepare(n)
    path = _shock(prep, -8.0, 60, 1.0)
    fb = build_fast_book(prep)
    run_paths_fast(fb, path.t_s, path.price[None, :], parallel=False)  # compile
    cascade = _best(lambda: run_paths_fast(build_fast_book(prep), path.t_s, path.price[None, :], parallel=False))
    lp = np.concatenate([fb.longs[0], fb.shorts[0]])
    qty = np.concatenate([fb.longs[2], fb.shorts[2]])
    floor = _best(lambda: (np.sort(lp), float(np.dot(qty, lp))))
    return {"cascade_positions": n, "cascade_wall_s": cascade, "floor_sort_scan_s": floor,
            "cascade_1e6_vs_floor": cascade / floor}


def bench_mc(n: int, paths: int, steps: int) -> dict:
    from delever.engine.fast import build_fast_book, run_paths_fast

    prep = _prepare(n)
    t_s, prices = _gbm_paths(prep, paths, steps, 60.0)
    fb = build_fast_book(prep)
    run_paths_fast(fb, t_s, prices[:2])  # compile
    t0 = time.perf_counter()
    out = run_paths_fast(fb, t_s, prices)
    wall = time.perf_counter() - t0
    return {"mc_positions": n, "mc_paths": paths, "mc_steps": steps, "mc_fast_wall_s": wall,
            "mc_paths_per_s": paths / wall, "mc_position_steps_per_s": n * paths * steps / wall,
            "mc_adl_paths": int((out["adl_count"] > 0).sum())}


def bench_general(n: int, paths: int, steps: int) -> dict:
    from delever.paths import PricePath
    from delever.runner import run_path

    prep = _prepare(n)
    t_s, prices = _gbm_paths(prep, paths, steps, 60.0, seed=2)
    t0 = time.perf_counter()
    for p in range(paths):
        run_path(prep, PricePath(t_s, prices[p], "stress", "bench", None))
    wall = time.perf_counter() - t0
    return {"general_positions": n, "general_paths": paths, "general_wall_s": wall,
            "general_position_steps_per_s": n * paths * steps / wall}


def bench_accounts(general_n: int, paths: int, steps: int) -> dict:
    """Account engine: the 13-coin example as users run it, and against the one-instrument engine on one book."""
    from delever.accounts_run import account_engine_for, execute_accounts, prepare_accounts
    from delever.paths import PricePath
    from delever.runner import make_engine
    from delever.scenario import load_scenario, resolve_data_dir

    prep = prepare_accounts(load_scenario(ROOT / "examples" / "hyperliquid-2025-10-10-multi.toml"), resolve_data_dir())
    t0 = time.perf_counter()
    summary, _, _ = execute_accounts(prep)
    wall = time.perf_counter() - t0
    out = {"accounts_example_positions": prep.book.n_positions, "accounts_example_steps": int(prep.path.t_s.size),
           "accounts_example_wall_s": wall,
           "accounts_example_position_steps_per_s": prep.book.n_positions * prep.path.t_s.size / wall}
    one = _prepare(general_n, ["insurance_fund.initial_usd=1e7"])
    t_s, prices = _gbm_paths(one, paths, steps, 60.0, seed=3)
    t_old = t_new = 0.0
    same = True
    for p in range(paths):
        path = PricePath(t_s, prices[p], "stress", "bench", None)
        one.path = path
        a = time.perf_counter()
        old = make_engine(one, path)
        old.run()
        b = time.perf_counter()
        new = account_engine_for(one)
        new.run()
        c = time.perf_counter()
        t_old, t_new = t_old + b - a, t_new + c - b
        same &= int(new.per.liquidation_count.sum()) == old.totals.liquidations and bool(
            np.isclose(new.per.adl_notional_usd.sum(), old.totals.adl_notional_usd, rtol=1e-9, atol=1e-6))
    out.update({"accounts_vs_positions_ratio": t_new / t_old, "accounts_vs_positions_identical_totals": same})
    return out


def bench_small_case(n: int) -> dict:
    """Fast kernel vs plain-Python reference vs Mesa vs general engine on one small shock case."""
    from mesa_model import CascadeModel

    from delever.engine.fast import build_fast_book, run_paths_fast
    from delever.runner import make_engine

    prep = _prepare(n)
    path = _shock(prep, -10.0, 60, 1.0)
    fb = build_fast_book(prep)
    px = path.price[None, :].copy()
    run_paths_fast(fb, path.t_s, px, parallel=False)
    fast_s = _best(lambda: run_paths_fast(fb, path.t_s, px, parallel=False), repeat=5)
    fast = run_paths_fast(fb, path.t_s, px, parallel=False)

    # The plain-Python reference: the same kernel code run by the interpreter (NUMBA_DISABLE_JIT=1),
    # in a fresh process on the same (seeded) book and path.
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run([sys.executable, __file__, "--python-child", str(n)], capture_output=True, text=True,
                         check=True, cwd=ROOT, env=env)
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    python_s, ref_liq = rec["wall_s"], rec["liquidated_notional_usd"]
    sc = prep.scenario
    model = CascadeModel(prep.venue, prep.tiers, prep.book, prep.depth, path, sc.market.impact.permanent_fraction,
                         sc.market.impact.resilience_half_life_s, sc.market.impact.max_walk_pct,
                         sc.engine.max_rounds, sc.insurance_fund.initial_usd)
    t0 = time.perf_counter()
    model.run_path()
    mesa_s = time.perf_counter() - t0
    eng = make_engine(prep, path)
    t0 = time.perf_counter()
    eng.run()
    general_s = time.perf_counter() - t0
    totals = {
        "fast": float(fast["liquidated_notional_usd"][0]),
        "python_reference": ref_liq,
        "mesa": model.liquidated_long_usd + model.liquidated_short_usd,
        "general": eng.totals.liquidated_long_usd + eng.totals.liquidated_short_usd,
    }
    base = totals["fast"]
    same = all(abs(v - base) <= 1e-9 * max(1.0, abs(base)) for v in totals.values())
    return {"small_case_positions": n, "fast_small_s": fast_s, "python_small_s": python_s, "mesa_small_s": mesa_s,
            "general_small_s": general_s, "speedup_vs_python": python_s / fast_s, "speedup_vs_mesa": mesa_s / fast_s,
            "small_case_liquidated_usd": totals, "small_case_totals_identical": same}


def bench_dask(paths: int, positions: int) -> dict:
    from delever.scenario import load_scenario, resolve_data_dir
    from delever.stress import run_stress

    sc = load_scenario(None, [f"book.synthesize.positions={positions}", f"stress.paths={paths}",
                              "stress.critical_shock.enabled=false"])
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            # the general engine: blocks heavy enough (seconds) for the scale-out to show, not the task overhead
            res = run_stress(sc, resolve_data_dir(), executor="dask", workers=workers, out_dir=Path(tmp),
                             block_size=max(1, paths // 8), progress=False, engine="general")
            rates[workers] = float(res.summary["paths_per_s"])
    return {"dask_paths": paths, "dask_positions": positions, "dask_1_worker_paths_per_s": rates[1], "dask_2_workers_paths_per_s": rates[2],
            "dask_2_vs_1_workers": rates[2] / rates[1]}


def _python_child(n: int) -> None:
    from delever.engine.fast import build_fast_book, run_paths_fast

    prep = _prepare(n)
    path = _shock(prep, -10.0, 60, 1.0)
    fb = build_fast_book(prep)
    t0 = time.perf_counter()
    out = run_paths_fast(fb, path.t_s, path.price[None, :].copy(), parallel=False)
    wall = time.perf_counter() - t0
    print(json.dumps({"wall_s": wall, "liquidated_notional_usd": float(out["liquidated_notional_usd"][0])}))


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _peak_child(n: int, paths: int, steps: int) -> None:
    from delever.engine.fast import build_fast_book, run_paths_fast

    prep = _prepare(n)
    t_s, prices = _gbm_paths(prep, paths, steps, 60.0)
    run_paths_fast(build_fast_book(prep), t_s[:3], prices[:2, :3])  # compile / load the kernel first
    # Reset the peak (Linux: writing 5 to clear_refs resets VmHWM), so only the Monte Carlo run counts:
    # the fast book (sorted arrays) plus the kernel's per-path pools and outputs.
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    run_paths_fast(build_fast_book(prep), t_s, prices)
    peak = _status_kb("VmHWM")
    print(json.dumps({"before_kb": before, "peak_kb": peak}))


def bench_memory(n: int, paths: int, steps: int) -> dict:
    """Peak resident memory the Monte Carlo run adds (fast book + kernel), per position, in a fresh process."""
    out = subprocess.run([sys.executable, __file__, "--memory-child", str(n), str(paths), str(steps)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    return {"peak_bytes_per_position": (rec["peak_kb"] - rec["before_kb"]) * 1024 / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--memory-child", nargs=3, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--python-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.python_child:
        _python_child(args.python_child)
        return
    if args.memory_child:
        _peak_child(*args.memory_child)
        return
    size = (dict(n=100_000, paths=1_000, steps=60, small=2_000, general_n=20_000, general_paths=10, dask_paths=64,
                 dask_n=10_000)
            if args.quick else
            dict(n=1_000_000, paths=10_000, steps=60, small=5_000, general_n=100_000, general_paths=10, dask_paths=128,
                 dask_n=50_000))
    results: dict[str, object] = {"quick": args.quick, "cores": os.cpu_count()}
    results.update(bench_cascade_vs_floor(size["n"]))
    results.update(bench_mc(size["n"], size["paths"], size["steps"]))
    results.update(bench_general(size["general_n"], size["general_paths"], size["steps"]))
    results.update(bench_small_case(size["small"]))
    results.update(bench_accounts(size["general_n"], size["general_paths"], size["steps"]))
    results.update(bench_dask(size["dask_paths"], size["dask_n"]))
    results.update(bench_memory(size["n"], size["paths"], size["steps"]))
    if args.json:
        print(json.dumps(results, default=float))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"delever benchmarks ({'quick' if args.quick else 'full'}, {os.cpu_count()} cores)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in results.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    Console().print(table)


if __name__ == "__main__":
    main()
