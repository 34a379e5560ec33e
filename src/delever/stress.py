"""Monte Carlo stress runner: one book and venue, many generated price paths, tail metrics over them.

``run_stress`` prepares the scenario once (venue, depth, book: :func:`delever.runner.prepare`) and
the path generator once (:func:`delever.pathgen.prepare_generator`), splits ``stress.paths`` paths
into blocks of ``block_size``, and for each block generates its paths from the per-path seeds
``path_seeds(seed, paths)[block]`` and runs them: on the fast kernel (:mod:`delever.engine.fast`) when
it supports the scenario (ADL included), else on the general engine (:func:`delever.runner.run_path`)
— the same numbers either way — giving one metrics row per path with its money and open-interest
checks. Each path's randomness depends only on its own seed, and the final
table is ordered by path, so the numbers are the same whatever the executor, the number of workers
or the block size.

Several instruments: a scenario with ``[[instruments]]`` is prepared by
:func:`delever.accounts_run.prepare_accounts`, its generator (``correlated`` or ``common_factor_crash``) by
:func:`delever.multi_generators.prepare_multi_generator`; each block's (P, T, I) paths run on the account engine
(:func:`delever.stress_accounts.account_path_row`), everything else (seeds, blocks, executors, checkpoints,
resume, tail metrics) is the same code. The fast kernel is one-instrument and is refused for these scenarios.

Executors (one option): ``inprocess`` (a loop in this process), ``processes`` (a
``concurrent.futures.ProcessPoolExecutor``; the prepared inputs reach each worker once, through the
pool initializer) and ``dask`` (an existing cluster at ``scheduler``, else a ``LocalCluster``; the
prepared inputs are scattered to every worker once). The engine never imports Dask. The process
pool uses the platform's default start method (fork on Linux); where that is spawn or forkserver
(macOS, Windows, Python >= 3.14), and always for Dask's ``LocalCluster``, a script calling
``run_stress`` needs the usual ``if __name__ == "__main__":`` guard.

Per-path seeds: ``path_seeds(seed, n)`` is ``SeedSequence(seed).spawn(n)``; a block's children are
built directly as ``SeedSequence(seed, spawn_key=(i,))`` (identical streams, checked at the start of a
run) so no process ever holds a list of every path's seed.

Long runs: each finished block is written to ``<run folder>/blocks/block-00012.parquet`` atomically
(temporary file + ``os.replace``) as soon as it finishes; a failing block does not remove finished
ones, and ``resume=<run folder>`` skips them. The run folder also gets ``stress_config.json`` (at the
start), ``paths.parquet``, ``price_quantiles.parquet``, ``report.html`` and, last, ``summary.json``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from delever import __version__
from delever.errors import DeleverInputError
from delever.metrics import tail_metrics
from delever.paths import PricePath, shock_path
from delever.runner import Prepared, prepare, run_path
from delever.scenario import (
    MULTI_GENERATOR_KINDS,
    SINGLE_GENERATOR_KINDS,
    Scenario,
    ShockDriver,
    StressSection,
    config_hash,
)
from delever.stress_accounts import ACCOUNT_INT_COLUMNS
from delever.stress_result import StressResult

__all__ = [
    "DASK_CONNECT_TIMEOUT_S",
    "EXECUTORS",
    "FAN_MAX_PATHS",
    "FAN_QUANTILES",
    "Block",
    "StressError",
    "StressResult",
    "critical_shock",
    "plan_blocks",
    "run_stress",
    "stress_config_hash",
]

EXECUTORS = ("inprocess", "processes", "dask")
FAN_QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.25, 0.50, 0.75, 0.95, 0.99)
FAN_MAX_PATHS = 4000  # the fan chart's quantile bands come from the first this-many paths
DASK_CONNECT_TIMEOUT_S = 5.0  # how long to try an existing Dask scheduler before giving up
_INT_COLUMNS = frozenset({"path", "liquidation_count", "rounds_max", "round_cap_hits", "adl_count"}) | ACCOUNT_INT_COLUMNS
_STEP_TOL = 1e-9


class StressError(RuntimeError):
    """A block failed while computing (not bad input); finished blocks are kept for ``resume``."""


@dataclass(frozen=True)
class Block:
    """Paths ``start <= path < stop`` of a stress run, block number ``index``."""

    index: int
    start: int
    stop: int

    @property
    def file_name(self) -> str:
        return f"block-{self.index:05d}.parquet"


@dataclass
class _Context:
    """What every worker needs; sent once per worker (pool initializer / Dask scatter)."""

    prepared: Any  # delever.runner.Prepared, or delever.accounts_run.PreparedAccounts (multi-instrument)
    generator: Any  # delever.pathgen.PreparedGenerator
    start_price: float  # the (first) instrument's start price
    n_steps: int
    dt_s: float
    seed: int
    n_paths: int
    seeds: list[np.random.SeedSequence] | None = None  # explicit seeds when not the SeedSequence spawn tree
    fast_book: Any = None        # delever.engine.fast.FastBook when the fast kernel runs the paths
    kernel_threads: bool = False  # spread a block's paths over threads (in-process executor only)
    start_prices: np.ndarray | None = None  # float64 (I,): a multi-instrument run on the account engine

    @property
    def multi(self) -> bool:
        return self.start_prices is not None


# --------------------------------------------------------------------------- planning
def plan_blocks(n_paths: int, block_size: int) -> list[Block]:
    """Split ``n_paths`` paths into consecutive blocks of ``block_size`` (the last may be shorter).

    Raises:
        DeleverInputError: ``n_paths`` or ``block_size`` below 1.
    """
    if n_paths < 1:
        raise DeleverInputError(f"--paths: expected a whole number of paths >= 1, got {n_paths!r}")
    if block_size < 1:
        raise DeleverInputError(f"--block-size: expected a whole number of paths per block >= 1, got {block_size!r}")
    return [Block(i, s, min(s + block_size, n_paths)) for i, s in enumerate(range(0, n_paths, block_size))]


def _n_steps(horizon_s: float, dt_s: float) -> int:
    """Whole steps of ``dt_s`` covering ``horizon_s`` (ceil, ignoring float noise), at least 1."""
    ratio = horizon_s / dt_s
    near = round(ratio)
    steps = near if abs(ratio - near) <= _STEP_TOL * max(1.0, ratio) else math.ceil(ratio)
    return max(1, int(steps))


def stress_config_hash(scenario: Scenario, prepared: Prepared) -> str:
    """Config hash of a stress run: the scenario and venue rules, with ``stress.block_size`` left out.

    The block size only decides how the work is cut, not the numbers, so it is set to its default
    before hashing (the hash then equals :func:`delever.runner.prepare`'s for a default block size).
    """
    default_block = StressSection.model_fields["block_size"].default
    canonical = scenario.model_copy(update={"stress": scenario.stress.model_copy(update={"block_size": default_block})})
    return config_hash(canonical, prepared.venue)


def _spawn_children(seed: int, start: int, stop: int) -> list[np.random.SeedSequence]:
    """Children ``start..stop-1`` of ``SeedSequence(seed).spawn(n)`` without spawning the ones before."""
    return [np.random.SeedSequence(seed, spawn_key=(i,)) for i in range(start, stop)]


def _same_seed(a: np.random.SeedSequence, b: np.random.SeedSequence) -> bool:
    return (a.entropy == b.entropy and tuple(a.spawn_key) == tuple(b.spawn_key) and a.pool_size == b.pool_size
            and np.array_equal(a.generate_state(4), b.generate_state(4)))


def _seed_plan(seed: int, n_paths: int) -> list[np.random.SeedSequence] | None:
    """None when ``path_seeds`` is the plain spawn tree (children built per block), else the full list."""
    from delever.pathgen import path_seeds

    probe = list(path_seeds(seed, min(n_paths, 3)))
    if len(probe) == min(n_paths, 3) and all(
            _same_seed(a, b) for a, b in zip(probe, _spawn_children(seed, 0, len(probe)), strict=True)):
        return None
    return list(path_seeds(seed, n_paths))


def _block_seeds(ctx: _Context, block: Block) -> list[np.random.SeedSequence]:
    if ctx.seeds is not None:
        return ctx.seeds[block.start:block.stop]
    return _spawn_children(ctx.seed, block.start, block.stop)


# --------------------------------------------------------------------------- one block
def _rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Per-path rows -> Table with a fixed schema: counters int64, ``insurance_depleted`` bool, rest float64."""
    names = list(rows[0])
    arrays, fields = [], []
    for name in names:
        values = [r.get(name) for r in rows]
        first = next((v for v in values if v is not None), None)
        if isinstance(first, str):
            typ = pa.string()
        elif isinstance(first, bool | np.bool_):
            typ = pa.bool_()
            values = [None if v is None else bool(v) for v in values]
        elif name in _INT_COLUMNS:
            typ = pa.int64()
            values = [None if v is None else int(v) for v in values]
        else:
            typ = pa.float64()
            values = [None if v is None else float(v) for v in values]
        arrays.append(pa.array(values, type=typ))
        fields.append(pa.field(name, typ))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _generate(ctx: _Context, seeds: list[np.random.SeedSequence]) -> np.ndarray:
    """Prices of the paths ``seeds``: float64 (P, T), or (P, T, I) for a multi-instrument run."""
    if ctx.multi:
        from delever.multi_generators import generate_multi_paths

        prices = np.asarray(generate_multi_paths(ctx.generator, ctx.start_prices, ctx.n_steps, ctx.dt_s, seeds),
                            dtype=np.float64)
        shape: tuple[int, ...] = (len(seeds), ctx.n_steps + 1, len(ctx.start_prices))
    else:
        from delever.pathgen import generate_paths

        prices = np.asarray(generate_paths(ctx.generator, ctx.start_price, ctx.n_steps, ctx.dt_s, seeds),
                            dtype=np.float64)
        shape = (len(seeds), ctx.n_steps + 1)
    if prices.shape != shape:
        raise RuntimeError(f"generator {ctx.generator.kind}: expected prices of shape {shape}, got {prices.shape}")
    if not (np.isfinite(prices).all() and (prices > 0).all()):
        raise RuntimeError(f"generator {ctx.generator.kind}: produced a non-finite or non-positive price")
    return prices


def _compute_block(ctx: _Context, block: Block) -> pa.Table:
    """Generate the block's paths and run them; one metrics row per path.

    With a fast book the Numba kernel runs every path (ADL included), otherwise the general engine.
    Both give the same numbers (``tests/test_fast_kernel.py``) and both check money and open interest
    on every path (``ledger_imbalance_usd``, ``open_interest_mismatch_qty``). A multi-instrument run puts
    each (T, I) path through the account engine (:func:`delever.stress_accounts.account_path_row`).
    """
    prices = _generate(ctx, _block_seeds(ctx, block))
    t_s = np.arange(ctx.n_steps + 1, dtype=np.float64) * ctx.dt_s
    if ctx.multi:
        from delever.stress_accounts import account_path_row

        return _rows_to_table([{"path": block.start + i, **account_path_row(ctx.prepared, t_s, px, ctx.generator.kind),
                                "engine": "general"} for i, px in enumerate(prices)])
    if ctx.fast_book is not None:
        from delever.engine.fast import run_paths_fast

        res = run_paths_fast(ctx.fast_book, t_s, prices, parallel=ctx.kernel_threads)
        res["insurance_depleted"] = res["insurance_depleted"].astype(bool)
        rows = []
        for i in range(prices.shape[0]):
            row = {"path": block.start + i}
            for name, values in res.items():
                v = values[i].item()
                row[name] = None if isinstance(v, float) and np.isnan(v) else v
            row["engine"] = "fast"
            rows.append(row)
        return _rows_to_table(rows)
    rows = []
    for i, row in enumerate(prices):
        path = PricePath(t_s, np.ascontiguousarray(row), "stress", ctx.generator.label, None)
        rows.append({"path": block.start + i, **run_path(ctx.prepared, path), "engine": "general"})
    return _rows_to_table(rows)


# --------------------------------------------------------------------------- files
def _atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write ``path`` through a temporary file in the same folder, fsync, then ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_table(table: pa.Table, path: Path) -> None:
    _atomic_write(path, lambda fh: pq.write_table(table, fh))


def _write_json(obj: Any, path: Path) -> None:
    _atomic_write(path, lambda fh: fh.write(json.dumps(obj, indent=2, default=_json_default)), mode="w")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def _read_block(path: Path, block: Block) -> pa.Table | None:
    """A finished block file, or None when it is unreadable or does not hold exactly the block's paths."""
    try:
        table = pq.read_table(path)
        paths = table.column("path").to_numpy()
    except (OSError, KeyError, pa.ArrowException):
        return None
    if not np.array_equal(paths, np.arange(block.start, block.stop)):
        return None
    return table


# --------------------------------------------------------------------------- executors
class _BlockFailed(Exception):
    def __init__(self, block: Block, cause: BaseException) -> None:
        super().__init__(f"block {block.index}: {cause}")
        self.block, self.cause = block, cause


OnDone = Callable[[Block, pa.Table], None]
Ready = Callable[[], None]

_WORKER_CTX: _Context | None = None


def _init_worker(ctx: _Context) -> None:
    """Pool initializer: keep the prepared inputs for every task this worker runs."""
    global _WORKER_CTX
    _WORKER_CTX = ctx


def _worker_block(block: Block) -> pa.Table:
    assert _WORKER_CTX is not None, "worker not initialized"
    return _compute_block(_WORKER_CTX, block)


def _dask_block(ctx: _Context, block: Block) -> pa.Table:
    return _compute_block(ctx, block)


def _run_inprocess(ctx: _Context, pending: list[Block], on_done: OnDone, ready: Ready, workers: int | None,
                   scheduler: str | None) -> int:
    ready()
    for block in pending:
        try:
            table = _compute_block(ctx, block)
        except Exception as exc:
            raise _BlockFailed(block, exc) from exc
        on_done(block, table)
    return 1


def _run_processes(ctx: _Context, pending: list[Block], on_done: OnDone, ready: Ready, workers: int | None,
                   scheduler: str | None) -> int:
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    n_workers = max(1, min(workers or os.cpu_count() or 1, len(pending)))
    window = 2 * n_workers  # blocks in flight: keeps workers busy, stops quickly on a failure
    todo = iter(pending)
    failure: tuple[Block, BaseException] | None = None
    with ProcessPoolExecutor(max_workers=n_workers, initializer=_init_worker, initargs=(ctx,)) as pool:
        inflight: dict[Future, Block] = {}

        def fill() -> None:
            while len(inflight) < window and (block := next(todo, None)) is not None:
                inflight[pool.submit(_worker_block, block)] = block

        fill()
        ready()  # after the workers exist: no progress thread is running when the pool forks
        try:
            while inflight:
                done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                for fut in done:
                    block = inflight.pop(fut)
                    exc = fut.exception()
                    if exc is not None:
                        failure = failure or (block, exc)
                    else:
                        on_done(block, fut.result())
                if failure is None:
                    fill()
        except BaseException:  # e.g. Ctrl-C or a failed block write: do not start the queued blocks
            for fut in inflight:
                fut.cancel()
            raise
    if failure is not None:
        raise _BlockFailed(*failure) from failure[1]
    return n_workers


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _dask_client(scheduler: str | None, workers: int | None, stack: Any) -> Any:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise DeleverInputError("--executor dask: needs dask[distributed] (pip install 'dask[distributed]')") from None
    if scheduler:
        try:
            client = Client(scheduler, timeout=DASK_CONNECT_TIMEOUT_S, set_as_default=False)
        except (ValueError, TypeError) as exc:
            raise DeleverInputError(f"--scheduler {scheduler}: not a Dask scheduler address ({_first_line(exc)}); "
                                    f"expected e.g. tcp://host:8786") from None
        except (OSError, TimeoutError) as exc:
            raise DeleverInputError(f"--scheduler {scheduler}: cannot reach the Dask scheduler within "
                                    f"{DASK_CONNECT_TIMEOUT_S:g} s ({_first_line(exc)})") from None
        stack.enter_context(client)
        try:
            client.wait_for_workers(1, timeout=DASK_CONNECT_TIMEOUT_S)
        except (TimeoutError, OSError):
            raise DeleverInputError(f"--scheduler {scheduler}: the Dask cluster has no workers "
                                    f"(none joined within {DASK_CONNECT_TIMEOUT_S:g} s)") from None
        return client
    cluster = stack.enter_context(LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                                               processes=True, dashboard_address=None))
    return stack.enter_context(Client(cluster, set_as_default=False))


def _run_dask(ctx: _Context, pending: list[Block], on_done: OnDone, ready: Ready, workers: int | None,
              scheduler: str | None) -> int:
    from contextlib import ExitStack

    with ExitStack() as stack:
        client = _dask_client(scheduler, workers, stack)
        from distributed import as_completed

        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        ctx_future = client.scatter(ctx, broadcast=True, hash=False)
        token = uuid.uuid4().hex[:8]
        todo = iter(pending)
        inflight: dict[str, Block] = {}
        queue = as_completed(loop=client.loop)
        failure: tuple[Block, BaseException] | None = None

        def submit() -> None:
            block = next(todo, None)
            if block is not None:
                fut = client.submit(_dask_block, ctx_future, block, key=f"delever-stress-{token}-{block.index:05d}",
                                    pure=False)
                inflight[fut.key] = block
                queue.add(fut)

        for _ in range(2 * n_workers):
            submit()
        ready()
        for fut in queue:
            block = inflight.pop(fut.key)
            if fut.status != "finished":
                try:
                    cause = fut.exception() or RuntimeError(f"Dask task {fut.status}")
                except BaseException as exc:  # cancelled or lost: exception() raises instead of returning
                    cause = RuntimeError(f"Dask task {fut.status}: {exc!r}")
                failure = failure or (block, cause)
            else:
                on_done(block, fut.result())
            if failure is None:
                submit()
        if failure is not None:
            raise _BlockFailed(*failure) from failure[1]
        return n_workers


_EXECUTOR_FUNCS = {"inprocess": _run_inprocess, "processes": _run_processes, "dask": _run_dask}


# --------------------------------------------------------------------------- critical shock
def critical_shock(prepared: Any, stress: StressSection | None = None) -> dict[str, Any]:
    """Smallest exogenous drop that depletes the insurance fund, by bisection.

    Multi-instrument runs (``prepared`` a :class:`delever.accounts_run.PreparedAccounts`): every instrument drops by
    the same percent at once (:func:`delever.stress_accounts.account_shock_depleted`), on the account engine.

    The shock is linear over ``critical_shock.duration_s`` and then held to ``stress.horizon_s``, on the
    stress grid ``stress.dt_s`` (the Monte Carlo paths' grid), built with
    :func:`delever.paths.shock_path`. "Depleted" is :func:`delever.runner.path_metrics`'
    ``insurance_depleted`` (any ADL, any bad debt, or backstop equity at or below zero at the end).
    Bisection on ``[0, max_drop_pct]`` until the bracket is at most ``tolerance_pct`` wide; it assumes
    depletion is monotone in the drop (a deeper drop never depletes less), which holds for the
    engine's liquidation set but is not checked at every point.

    Args:
        prepared: the prepared scenario (book, venue, depth): :class:`delever.runner.Prepared` or
            :class:`delever.accounts_run.PreparedAccounts`.
        stress: the stress section (default: the prepared scenario's).

    Returns:
        ``critical_shock_pct`` (the smallest tested drop that depletes the fund, in percent; 0 when it
        is depleted without a shock; None when even ``max_drop_pct`` does not deplete it),
        ``critical_shock_tolerance_pct``, ``critical_shock_bracket_pct`` ([largest drop that did not
        deplete, smallest that did]), ``critical_shock_duration_s``, ``critical_shock_max_drop_pct``,
        ``critical_shock_evaluations`` (engine runs) and ``critical_shock_note``.
    """
    st = stress if stress is not None else prepared.scenario.stress
    cs = st.critical_shock
    multi = not isinstance(prepared, Prepared)
    start = float(prepared.path.price[0][0] if multi else prepared.path.price[0])
    hold_s = max(0.0, st.horizon_s - cs.duration_s)
    runs = 0

    def depleted(drop_pct: float) -> bool:
        nonlocal runs
        runs += 1
        if multi:
            from delever.stress_accounts import account_shock_depleted

            return account_shock_depleted(prepared, drop_pct, cs.duration_s, st.horizon_s, st.dt_s)
        driver = ShockDriver(move_pct=-drop_pct, duration_s=cs.duration_s, hold_s=hold_s, shape="linear")
        return bool(run_path(prepared, shock_path(driver, start, st.dt_s))["insurance_depleted"])

    out: dict[str, Any] = {"critical_shock_pct": None, "critical_shock_tolerance_pct": cs.tolerance_pct,
                           "critical_shock_bracket_pct": None, "critical_shock_duration_s": cs.duration_s,
                           "critical_shock_max_drop_pct": cs.max_drop_pct}
    note = None
    if not depleted(cs.max_drop_pct):
        note = (f"critical shock: even a {cs.max_drop_pct:g} % drop over {cs.duration_s:g} s does not deplete the "
                f"insurance fund (critical_shock.max_drop_pct)")
    elif depleted(0.0):
        out.update(critical_shock_pct=0.0, critical_shock_bracket_pct=[0.0, 0.0])
        note = "critical shock: the insurance fund is depleted without any shock"
    else:
        lo, hi = 0.0, float(cs.max_drop_pct)
        while hi - lo > cs.tolerance_pct:
            mid = 0.5 * (lo + hi)
            if depleted(mid):
                hi = mid
            else:
                lo = mid
        out.update(critical_shock_pct=hi, critical_shock_bracket_pct=[lo, hi])
    out["critical_shock_evaluations"] = runs
    out["critical_shock_note"] = note
    if multi:
        out["critical_shock_applies_to"] = "every instrument, the same percent drop at once"
    return out


# --------------------------------------------------------------------------- fan chart data
def _fan(ctx: _Context) -> dict[str, Any]:
    """Quantile bands per step of the first ``FAN_MAX_PATHS`` generated paths (regenerated from their seeds)."""
    k = min(ctx.n_paths, FAN_MAX_PATHS)
    seeds = ctx.seeds[:k] if ctx.seeds is not None else _spawn_children(ctx.seed, 0, k)
    prices = _generate(ctx, seeds)
    qs = np.quantile(prices, FAN_QUANTILES, axis=0)
    labels = [f"p{round(q * 100):02d}" for q in FAN_QUANTILES]
    fan: dict[str, Any] = {"t_s": (np.arange(ctx.n_steps + 1) * ctx.dt_s).tolist(), "paths": k}
    if not ctx.multi:
        fan["quantiles"] = {lab: row.tolist() for lab, row in zip(labels, qs, strict=True)}
        return fan
    # several instruments: the report's chart shows the first; price_quantiles.parquet holds every one
    symbols = list(ctx.prepared.registry.symbols)
    fan["instrument"] = symbols[0]
    fan["quantiles"] = {lab: row[:, 0].tolist() for lab, row in zip(labels, qs, strict=True)}
    fan["quantiles_by_instrument"] = {sym: {lab: row[:, i].tolist() for lab, row in zip(labels, qs, strict=True)}
                                      for i, sym in enumerate(symbols)}
    return fan


# --------------------------------------------------------------------------- progress
class _Progress:
    """Rich progress bar on stderr with paths/s (no-op when disabled).

    It is started by :meth:`start`, which the executors call once their workers exist, so no refresh
    thread is running when a process pool forks.
    """

    def __init__(self, enabled: bool, total: int, already: int, label: str) -> None:
        self.enabled = enabled
        self.started = False
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class _Rate(ProgressColumn):
            def render(self, task: Any) -> Text:
                elapsed = task.elapsed or 0.0
                done = task.completed - already
                return Text(f"{done / elapsed:,.1f} paths/s" if elapsed > 0 and done > 0 else "- paths/s",
                            style="progress.data.speed")

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True))
        self.task = self.bar.add_task(label, total=total, completed=already, start=False)

    def start(self) -> None:
        if self.enabled and not self.started:
            self.started = True
            self.bar.start()
            self.bar.start_task(self.task)

    def advance(self, n: int) -> None:
        if self.enabled:
            self.start()
            self.bar.advance(self.task, n)

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled and self.started:
            self.bar.stop()


# --------------------------------------------------------------------------- the run
def _check_options(executor: str, workers: int | None, scheduler: str | None, block_size: int | None) -> None:
    if executor not in EXECUTORS:
        raise DeleverInputError(f"--executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise DeleverInputError(f"--workers: expected a whole number of workers >= 1, got {workers!r}")
    if block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1):
        raise DeleverInputError(f"--block-size: expected a whole number of paths per block >= 1, got {block_size!r}")
    if scheduler is not None and executor != "dask":
        raise DeleverInputError(f"--scheduler: only used with --executor dask (got --executor {executor})")


def _open_resume(folder: Path, chash: str, block_size: int | None) -> tuple[dict[str, Any], int]:
    cfg_path = folder / "stress_config.json"
    if not cfg_path.is_file():
        raise DeleverInputError(f"--resume {folder}: no stress_config.json there (not a stress run folder)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DeleverInputError(f"--resume {cfg_path}: not readable JSON ({exc})") from None
    stored = cfg.get("config_hash")
    if stored != chash:
        raise DeleverInputError(f"--resume {folder}: the folder holds config hash {stored}, this scenario has "
                                f"config hash {chash} (resume with the same scenario, --set and --paths)")
    stored_bs = cfg.get("block_size")
    if not isinstance(stored_bs, int) or stored_bs < 1:
        raise DeleverInputError(f"--resume {cfg_path}: field 'block_size': expected a whole number >= 1, "
                                f"got {stored_bs!r}")
    if block_size is not None and block_size != stored_bs:
        raise DeleverInputError(f"--block-size: the resumed run uses block size {stored_bs}, got {block_size} "
                                f"(leave --block-size out when resuming)")
    return cfg, stored_bs


def _load_finished(blocks_dir: Path, blocks: list[Block], notes: list[str]) -> dict[int, pa.Table]:
    """Finished blocks already on disk; leftover temporary files (of a killed run) are removed."""
    for tmp in [*blocks_dir.glob(".block-*.tmp"), *blocks_dir.parent.glob(".*.tmp")]:
        tmp.unlink(missing_ok=True)
    done: dict[int, pa.Table] = {}
    bad = 0
    for block in blocks:
        path = blocks_dir / block.file_name
        if path.is_file():
            table = _read_block(path, block)
            if table is None:
                bad += 1
            else:
                done[block.index] = table
    if bad:
        notes.append(f"resume: {bad} unreadable or mismatched block file(s) recomputed")
    return done


def _concat(tables: Iterable[pa.Table]) -> pa.Table:
    tables = list(tables)
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except TypeError:  # pyarrow < 14
        return pa.concat_tables(tables, promote=True)


def _check_engine_name(engine: str) -> None:
    if engine not in ("auto", "fast", "general"):
        raise DeleverInputError(f"--engine: expected auto, fast or general, got {engine!r}")


def _choose_engine(engine: str, prep: Prepared) -> tuple[str, str, Any]:
    """Pick the engine for the paths: returns (name, reason, FastBook or None)."""
    _check_engine_name(engine)
    if engine == "general":
        return "general", "requested", None
    from delever.engine.fast import build_fast_book, fast_kernel_support

    ok, why = fast_kernel_support(prep, "stress")
    if not ok:
        if engine == "fast":
            raise DeleverInputError(f"--engine fast: {why}")
        return "general", why, None
    return "fast", "fixed positions across paths: sorted liquidation prices and cursors, ADL in the kernel", \
        build_fast_book(prep)


def _path_engines(engines: np.ndarray, engine_used: str, engine_reason: str) -> dict[str, dict[str, Any]]:
    """Paths per engine with the reason that engine ran them (a resumed run keeps its blocks' engines)."""
    reasons = {"fast": "fast kernel: fixed positions across paths, ADL in the kernel",
               "general": "general engine: " + (engine_reason if engine_used == "general" else "rows of an earlier run")}
    return {name: {"paths": int(np.sum(engines == name)), "reason": reasons[name]}
            for name in ("fast", "general") if np.any(engines == name)}


def _money_check_summary(table: pa.Table) -> dict[str, Any]:
    """Worst per-path money and open-interest checks; null with a reason when some path was not checked."""
    out: dict[str, Any] = {}
    for col, key in (("ledger_imbalance_usd", "ledger_imbalance_max_usd"),
                     ("open_interest_mismatch_qty", "open_interest_mismatch_max_qty")):
        values = table.column(col).to_pylist() if col in table.column_names else [None] * table.num_rows
        missing = sum(v is None for v in values)
        if missing or not values:
            out[key] = None
            out[f"{key}_reason"] = f"{missing} of {len(values)} paths have no {col} (rows of an earlier run)"
        else:
            out[key] = float(np.max(np.abs(values)))
    return out


def _check_generator_kind(scenario: Scenario, engine: str) -> None:
    """Refuse a generator of the wrong family, and the fast kernel on a multi-instrument scenario (one line each)."""
    _check_engine_name(engine)
    kind = scenario.stress.generator.kind
    if scenario.is_multi and kind not in MULTI_GENERATOR_KINDS:
        raise DeleverInputError(f"stress.generator.kind: {kind!r} generates one instrument's path; a scenario with "
                                f"[[instruments]] needs one of {', '.join(MULTI_GENERATOR_KINDS)}")
    if not scenario.is_multi and kind not in SINGLE_GENERATOR_KINDS:
        raise DeleverInputError(f"stress.generator.kind: {kind!r} needs a scenario with [[instruments]] (several "
                                f"instruments); for one instrument use one of {', '.join(SINGLE_GENERATOR_KINDS)}")
    if scenario.is_multi and engine == "fast":
        raise DeleverInputError("--engine fast: the fast kernel runs one instrument's fixed positions; a scenario "
                                "with [[instruments]] runs on the account engine (use --engine auto or general)")


def _prepare_run(scenario: Scenario, data_dir: Path) -> tuple[Any, Any, np.ndarray | None]:
    """Prepared inputs, prepared generator and, for a multi-instrument run, the start prices (I,)."""
    if scenario.is_multi:
        from delever.accounts_run import prepare_accounts
        from delever.multi_generators import prepare_multi_generator

        prep = prepare_accounts(scenario, data_dir)
        gen = prepare_multi_generator(scenario.stress.generator, scenario.instruments, data_dir)  # type: ignore[arg-type]
        return prep, gen, prep.path.price[0].copy()
    from delever.pathgen import prepare_generator

    return prepare(scenario, data_dir), prepare_generator(scenario.stress.generator, data_dir), None  # type: ignore[arg-type]


def _lar_99_by_instrument(table: pa.Table, symbols: list[str]) -> dict[str, float]:
    """Per-instrument LaR 99 % (liquidated notional of each instrument, ``liq_usd__<SYMBOL>`` columns)."""
    from delever.metrics import liquidations_at_risk
    from delever.stress_accounts import per_instrument_column

    return {s: liquidations_at_risk(table.column(per_instrument_column("liq_usd", s)).to_numpy(), (0.99,))[
        "lar_99_usd"] for s in symbols}


def run_stress(scenario: Scenario, data_dir: Path | str, executor: str = "processes", workers: int | None = None,
               scheduler: str | None = None, block_size: int | None = None, out_dir: Path | str | None = None,
               resume: Path | str | None = None, progress: bool = True, engine: str = "auto") -> StressResult:
    """Run the Monte Carlo stress of ``scenario``: ``stress.paths`` generated paths, tail metrics, critical shock.

    Args:
        scenario: the validated scenario (``scenario.stress`` sets paths, horizon, grid, generator,
            default block size and the critical shock search).
        data_dir: root of the scenario's data paths.
        executor: ``"inprocess"``, ``"processes"`` or ``"dask"``.
        workers: worker processes (``processes``; Dask ``LocalCluster`` workers); default ``os.cpu_count()``.
        scheduler: address of an existing Dask scheduler (``dask`` only); default: a local cluster.
        block_size: paths per block (unit of work and of checkpointing); default ``stress.block_size``,
            or the resumed run's.
        out_dir: folder that receives the run folder ``<scenario name>-stress-<config_hash>-<UTC time>``;
            None (and no ``resume``) writes nothing; ignored when resuming.
        resume: a run folder of an interrupted run with the same config hash: finished blocks are
            read back, the rest computed; the final numbers equal an uninterrupted run's.
        progress: show a progress bar with paths/s on stderr.
        engine: ``"auto"`` (the fast kernel when it supports the scenario, else the general engine),
            ``"fast"`` (an error when it does not) or ``"general"``. The numbers are the same; the
            summary says which engine ran and why. A scenario with ``[[instruments]]`` always runs on the
            account engine (``"general"``; ``"fast"`` is refused: the kernel is one-instrument) with a
            ``correlated`` or ``common_factor_crash`` generator; its summary adds
            ``lar_99_usd_by_instrument`` and the per-path table ``liq_usd__<SYMBOL>``/``adl_usd__<SYMBOL>``.

    Returns:
        :class:`StressResult` with the summary, the per-path table and the fan chart data.

    Raises:
        DeleverInputError: bad option, bad scenario input, unreachable Dask scheduler, a resume
            folder that is not a stress run or has a different config hash, a one-instrument generator on a
            multi-instrument scenario (or the reverse), ``--engine fast`` on a multi-instrument scenario.
        StressError: a block failed to compute; finished blocks are kept in the run folder.
    """
    t_wall = time.perf_counter()
    _check_options(executor, workers, scheduler, block_size)
    data_dir = Path(data_dir)
    st = scenario.stress
    plan_blocks(st.paths, block_size or st.block_size)  # validates the counts before any work
    _check_generator_kind(scenario, engine)
    prep, gen, start_prices = _prepare_run(scenario, data_dir)
    chash = stress_config_hash(scenario, prep)
    notes: list[str] = [*prep.notes]

    folder: Path | None = None
    if resume is not None:
        folder = Path(resume)
        resumed_cfg, bs = _open_resume(folder, chash, block_size)
        # a resumed run keeps its engine, so every block holds the same columns
        stored_engine = resumed_cfg.get("engine", "general")
        if engine not in ("auto", stored_engine):
            raise DeleverInputError(f"--engine: the resumed run used the {stored_engine} engine, got {engine!r} "
                                    "(leave --engine out when resuming)")
        engine = stored_engine
    else:
        bs = block_size or st.block_size
    blocks = plan_blocks(st.paths, bs)
    if scenario.is_multi:
        engine_used, fast_book = "general", None
        engine_reason = (f"account engine: cross-margined accounts over {len(scenario.instruments)} instruments "
                         "(the fast kernel is one-instrument)")
        if scenario.multi_driver.mode == "replay":
            notes.append("stress paths run in stress mode (generated prices are exogenous, impact added); the "
                         "scenario's replay mode applies to its historical run only")
    else:
        engine_used, engine_reason, fast_book = _choose_engine(engine, prep)
    start_price = float(start_prices[0]) if start_prices is not None else float(prep.path.price[0])
    ctx = _Context(prep, gen, start_price, _n_steps(st.horizon_s, st.dt_s), float(st.dt_s),
                   int(scenario.seed), int(st.paths), _seed_plan(int(scenario.seed), int(st.paths)),
                   fast_book=fast_book, kernel_threads=executor == "inprocess", start_prices=start_prices)

    fan = _fan(ctx)  # also tries the generator on this grid before any folder or worker exists

    created = False
    if folder is None and out_dir is not None:
        created = True
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        folder = Path(out_dir) / f"{scenario.name}-stress-{chash}-{stamp}"
        (folder / "blocks").mkdir(parents=True)
        config = {
            "kind": "stress", "config_hash": chash, "seed": scenario.seed, "paths": st.paths, "block_size": bs,
            "blocks": len(blocks), "steps": ctx.n_steps, "dt_s": st.dt_s, "horizon_s": st.horizon_s,
            "engine": engine_used, "generator": gen.label, "generator_kind": gen.kind, "generator_params": gen.params,
            "scenario": scenario.model_dump(mode="json"), "venue_rules": prep.venue.model_dump(mode="json"),
            "book_assumptions": prep.book_assumptions, "margin_tiers": prep.tier_provenance,
            "delever_version": __version__,
            "created_utc": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        _write_json(config, folder / "stress_config.json")
    blocks_dir = folder / "blocks" if folder is not None else None
    if blocks_dir is not None:
        blocks_dir.mkdir(parents=True, exist_ok=True)

    done = _load_finished(blocks_dir, blocks, notes) if (resume is not None and blocks_dir is not None) else {}
    pending = [b for b in blocks if b.index not in done]
    resumed_paths = sum(b.stop - b.start for b in blocks if b.index in done)
    if done:
        notes.append(f"resume: {len(done)} of {len(blocks)} blocks ({resumed_paths} paths) read from {blocks_dir}")

    def on_done(block: Block, table: pa.Table) -> None:
        if blocks_dir is not None:
            _write_table(table, blocks_dir / block.file_name)
        done[block.index] = table
        bar.advance(block.stop - block.start)

    t_compute = time.perf_counter()
    used_workers = 0

    def ready() -> None:  # workers up: the paths/s clock starts here
        nonlocal t_compute
        t_compute = time.perf_counter()
        bar.start()

    t_startup = time.perf_counter()
    with _Progress(progress, st.paths, resumed_paths, f"stress {scenario.name}") as bar:
        if pending:
            try:
                used_workers = _EXECUTOR_FUNCS[executor](ctx, pending, on_done, ready, workers, scheduler)
            except DeleverInputError:
                if created and not done:  # bad input before anything finished: leave no run folder behind
                    shutil.rmtree(folder, ignore_errors=True)
                raise
            except _BlockFailed as exc:
                if created and not done and isinstance(exc.cause, DeleverInputError):
                    shutil.rmtree(folder, ignore_errors=True)
                    raise exc.cause from None
                kept = (f"{len(done)} finished blocks kept in {blocks_dir}; resume with --resume {folder}"
                        if blocks_dir is not None else "nothing written (no --out)")
                where = f"block {exc.block.index} (paths {exc.block.start}-{exc.block.stop - 1})"
                if isinstance(exc.cause, DeleverInputError):
                    raise DeleverInputError(f"{exc.cause} [{where}; {kept}]") from exc.cause
                raise StressError(f"{where} failed: {type(exc.cause).__name__}: {exc.cause}; {kept}") from exc.cause
    compute_s = time.perf_counter() - t_compute
    startup_s = t_compute - t_startup
    computed_paths = st.paths - resumed_paths

    table = _concat(done[b.index] for b in blocks)
    shock = critical_shock(prep, st) if st.critical_shock.enabled else {
        "critical_shock_pct": None, "critical_shock_note": "critical shock search disabled"}
    if shock.get("critical_shock_note"):
        notes.append(shock["critical_shock_note"])
    risk = tail_metrics(table)
    engines = np.asarray(table.column("engine").to_pylist())
    symbols = list(prep.registry.symbols) if scenario.is_multi else [scenario.market.instrument]
    summary: dict[str, Any] = {
        "scenario": scenario.name,
        "kind": "stress",
        "config_hash": chash,
        "seed": scenario.seed,
        "paths": st.paths,
        "executor": executor,
        "workers": used_workers or None,
        "scheduler": scheduler,
        "engine": engine_used,
        "engine_reason": engine_reason,
        "engine_kind": "accounts" if scenario.is_multi else "cascade",
        "paths_kernel": int(np.sum(engines == "fast")),
        "paths_general": int(np.sum(engines == "general")),
        "path_engines": _path_engines(engines, engine_used, engine_reason),
        "venue": prep.venue.name,
        "instrument": symbols if scenario.is_multi else scenario.market.instrument,
        "positions": prep.book.n_positions if scenario.is_multi else len(prep.book),
        "accounts": prep.book.n_accounts if scenario.is_multi else None,
        "start_price": ctx.start_price,
        "start_prices": dict(zip(symbols, start_prices.tolist(), strict=True)) if start_prices is not None else None,
        "generator": gen.label,
        "generator_kind": gen.kind,
        "horizon_s": st.horizon_s,
        "dt_s": st.dt_s,
        "steps": ctx.n_steps,
        "block_size": bs,
        "blocks": len(blocks),
        "blocks_resumed": len(blocks) - len(pending),
        "paths_computed": computed_paths,
        **{k: v for k, v in risk.items() if k != "paths"},
        "lar_99_usd_by_instrument": _lar_99_by_instrument(table, symbols) if scenario.is_multi else None,
        **shock,
        "round_cap_hit_paths": int((table.column("round_cap_hits").to_numpy() > 0).sum())
        if "round_cap_hits" in table.column_names else None,
        **_money_check_summary(table),
        "fan_paths": fan["paths"],
        "executor_startup_s": round(startup_s, 3),
        "compute_s": round(compute_s, 3),
        "paths_per_s": round(computed_paths / compute_s, 2) if computed_paths and compute_s > 0 else None,
        "wall_s": None,
        "book_source": prep.book_source,
        "notes": notes,
        "run_folder": str(folder) if folder is not None else None,
    }
    result = StressResult(summary, table, fan, folder, notes)
    summary["wall_s"] = round(time.perf_counter() - t_wall, 3)  # the report shows the time up to here
    if folder is not None:
        _write_table(table, folder / "paths.parquet")
        by_ins = fan.get("quantiles_by_instrument")
        fan_table = pa.table({"t_s": fan["t_s"], **fan["quantiles"]} if by_ins is None else
                             {"t_s": fan["t_s"], **{f"{lab}__{sym}": v for sym, q in by_ins.items()
                                                    for lab, v in q.items()}})
        _write_table(fan_table, folder / "price_quantiles.parquet")
        from delever.stress_report import write_stress_report

        write_stress_report(result, folder / "report.html", folder.parent)
    summary["wall_s"] = round(time.perf_counter() - t_wall, 3)
    if folder is not None:
        _write_json(summary, folder / "summary.json")
    return result
