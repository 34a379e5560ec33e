"""Policy comparison under common random numbers (``delever compare``) and a policy frontier (``delever frontier``).

A **policy set** is a set of scenario overrides: a nested TOML table merged into the scenario key by
key, with the rule of ``--set`` (:func:`delever.scenario.merge_table`; a key under
``venue.overrides`` joins the scenario's own overrides), plus ``name`` and ``description``. Named
presets ship as package data (``delever/policies/<name>.toml``); ``--policies`` also takes TOML
files, and ``a+b`` combines sets (an error when both set the same key to different values).

**Common random numbers**: every policy runs :func:`delever.stress.run_stress` with the same seed,
generator, grid and start price, so path ``i`` is the same exogenous price path under every policy
and the differences between policies are paired. A policy set may therefore not touch ``seed``,
``stress.*``, ``price_driver`` or ``market.start_price``; after the runs the per-path exogenous moves
are checked to be identical.

**Metrics** per policy, from the per-path table: LaR 95/99, mean liquidated notional, bad debt mean,
VaR and ES 95/99, P(insurance fund depleted), P(ADL), ADL notional mean and 99 %, amplification
median and 99 %, traders' liquidation losses mean and 99 % (definitions: :mod:`delever.metrics`).
Confidence intervals come from one **paired bootstrap** over paths (``scipy.stats.bootstrap`` with
``paired=True``, percentile method): every replicate resamples the path indices once and applies them
to every policy, so the difference to the baseline gets a paired interval (zero width when two
policies agree on every path). Probabilities get Wilson score intervals (:func:`delever.metrics.wilson_interval`,
not degenerate at 0 or 1); their differences the paired bootstrap.

A **frontier** sweeps one key over values: each value is a policy set (a base policy plus that key),
compared the same way; the report charts bad debt against liquidated notional per value.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import re
import sys
import time
import tomllib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats

from delever import __version__
from delever.compare_result import CompareResult, PolicyRun, PolicySet
from delever.errors import DeleverInputError
from delever.metrics import _column, expected_shortfall_along, wilson_interval
from delever.runfolder import atomic_run_folder, run_folder_name
from delever.scenario import (
    Scenario,
    apply_overrides,
    merge_table,
    read_scenario_raw,
    set_key,
    table_leaves,
    validate_scenario,
)

__all__ = [
    "CONFIDENCE",
    "DEFAULT_RESAMPLES",
    "METRICS",
    "SHARED_KEYS",
    "CompareResult",
    "Metric",
    "PolicyRun",
    "PolicySet",
    "combine_policies",
    "compare_metrics",
    "frontier_policies",
    "load_policy",
    "parse_policies",
    "parse_values",
    "policy_scenarios",
    "preset_names",
    "run_compare",
    "run_frontier",
]

DEFAULT_RESAMPLES = 2000
CONFIDENCE = 0.95
# Keys that decide the exogenous price paths: shared by every policy (common random numbers).
SHARED_KEYS: tuple[str, ...] = ("seed", "stress", "price_driver", "market.start_price",
                                 "market.start_price_by_instrument")
_BOOT_BYTES = 64 * 2**20  # memory of one batch of bootstrap replicates (resampled columns)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._=+-]+")


# --------------------------------------------------------------------------- policy sets
def preset_names() -> tuple[str, ...]:
    """Names of the shipped policy presets (``delever/policies/*.toml``), sorted."""
    files = resources.files("delever.policies")
    return tuple(sorted(p.name.removesuffix(".toml") for p in files.iterdir() if p.name.endswith(".toml")))


def _check_shared(table: dict[str, Any], label: str) -> None:
    """Raise when a policy table sets a key that would change the random price paths."""
    for path, _ in table_leaves(table):
        dotted = ".".join(path)
        for key in SHARED_KEYS:
            if dotted == key or dotted.startswith(key + "."):
                raise DeleverInputError(
                    f"{label}: key '{dotted}' changes the random price paths; {', '.join(SHARED_KEYS)} are shared "
                    "by every policy (common random numbers): set them on the scenario or with --set")


def _policy_from_text(text: str, source: str, default_name: str, label: str) -> PolicySet:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DeleverInputError(f"{label}: not valid TOML: {exc}") from None
    name = raw.pop("name", default_name)
    description = raw.pop("description", "")
    if not isinstance(name, str) or not name.strip() or "," in name:
        raise DeleverInputError(f"{label}: field 'name': expected a non-empty string without commas, got {name!r}")
    if not isinstance(description, str):
        raise DeleverInputError(f"{label}: field 'description': expected a string, got {description!r}")
    _check_shared(raw, label)
    return PolicySet(name.strip(), description, raw, source)


def load_policy(spec: str, option: str = "--policies") -> PolicySet:
    """One policy set: a preset name or a TOML file (its ``name`` key, else the file stem, names it).

    ``option`` is the command-line option named in errors.

    Raises:
        DeleverInputError: unknown preset (the known ones listed), missing file, invalid TOML (file,
            line and column), a bad ``name``/``description``, or a key shared by every policy.
    """
    spec = spec.strip()
    path = Path(spec)
    if spec.endswith(".toml") or "/" in spec or "\\" in spec or path.is_file():
        label = f"{option} {spec}"
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise DeleverInputError(f"{label}: policy file not found") from None
        except OSError as exc:
            raise DeleverInputError(f"{label}: cannot read the policy file ({exc})") from None
        return _policy_from_text(text, str(path), path.stem, label)
    known = preset_names()
    if spec not in known:
        raise DeleverInputError(f"{option}: unknown policy {spec!r} (presets: {', '.join(known)}; or a TOML file)")
    text = resources.files("delever.policies").joinpath(f"{spec}.toml").read_text()
    return _policy_from_text(text, f"preset {spec}", spec, f"{option} {spec}")


def combine_policies(parts: Sequence[PolicySet]) -> PolicySet:
    """One policy set applying every part (``a+b``).

    Raises:
        DeleverInputError: two parts set the same key to different values, or one sets a table the
            other sets to a value (contradictory policies), naming the key and both parts.
    """
    if len(parts) == 1:
        return parts[0]
    merged: dict[str, Any] = {}
    owner: dict[tuple[str, ...], tuple[str, Any]] = {}
    for part in parts:
        for path, value in table_leaves(part.overrides):
            key = tuple(path)
            for other, (who, was) in owner.items():
                prefix = other[:len(key)] == key or key[:len(other)] == other
                if prefix and (other != key or was != value):
                    raise DeleverInputError(
                        f"--policies {'+'.join(p.name for p in parts)}: contradictory policies: "
                        f"'{'.'.join(other)}' = {was!r} in {who} and '{'.'.join(key)}' = {value!r} in {part.name}")
            owner[key] = (part.name, value)
            set_key(merged, path, value)
    return PolicySet("+".join(p.name for p in parts), "; ".join(p.description for p in parts if p.description),
                     merged, " + ".join(p.source for p in parts))


def parse_policies(text: str) -> list[PolicySet]:
    """The ``--policies`` option: comma-separated preset names or TOML files; ``a+b`` combines sets.

    Raises:
        DeleverInputError: empty list or item, unknown name, bad file, contradictory parts, duplicate names.
    """
    items = [s.strip() for s in (text or "").split(",")]
    if not any(items):
        raise DeleverInputError(f"--policies: expected a comma-separated list of policy presets "
                                f"({', '.join(preset_names())}) or TOML files, got nothing")
    out: list[PolicySet] = []
    for k, item in enumerate(items, 1):
        if not item:
            raise DeleverInputError(f"--policies: item {k} of {text!r} is empty")
        parts = [item] if Path(item).is_file() else [p.strip() for p in item.split("+")]
        if not all(parts):
            raise DeleverInputError(f"--policies: {item!r}: empty part around '+'")
        out.append(combine_policies([load_policy(p) for p in parts]))
    seen: set[str] = set()
    for pol in out:
        if pol.name in seen:
            raise DeleverInputError(f"--policies: policy name {pol.name!r} appears twice (names must be unique)")
        seen.add(pol.name)
    return out


def _value_label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else json.dumps(value) if not isinstance(value, str) else value


def parse_values(text: str) -> list[Any]:
    """The ``--values`` option: comma-separated TOML values (a bare word is a string, as with ``--set``).

    Raises:
        DeleverInputError: an empty item, fewer than 2 values, or a value given twice.
    """
    items = [s.strip() for s in (text or "").split(",")]
    if len(items) == 1 and not items[0]:
        items = []
    values: list[Any] = []
    for k, raw in enumerate(items, 1):
        if not raw:
            raise DeleverInputError(f"--values: item {k} of {text!r} is empty")
        try:
            values.append(tomllib.loads(f"v = {raw}")["v"])
        except tomllib.TOMLDecodeError:
            values.append(raw)
    if len(values) < 2:
        raise DeleverInputError(f"--values: expected at least 2 comma-separated values, got {len(values)} ({text!r})")
    labels = [_value_label(v) for v in values]
    dup = next((lab for i, lab in enumerate(labels) if lab in labels[:i]), None)
    if dup is not None:
        raise DeleverInputError(f"--values: value {dup} appears twice")
    return values


def frontier_policies(base: PolicySet, param: str, values: Sequence[Any]) -> list[PolicySet]:
    """One policy set per value: ``base`` with ``param`` (a dotted scenario key) set to the value.

    Raises:
        DeleverInputError: an empty key part, or ``param`` is a key shared by every policy.
    """
    path = [p.strip() for p in param.split(".")]
    if not param.strip() or not all(path):
        raise DeleverInputError(f"--param: expected a dotted scenario key such as "
                                f"mitigations.circuit_breaker.band_pct, got {param!r}")
    out = []
    for value in values:
        table = json.loads(json.dumps(base.overrides))
        set_key(table, path, value)
        _check_shared(table, f"--param {param}")
        label = _value_label(value)
        out.append(PolicySet(f"{path[-1]}={label}", f"{base.name} with {param} = {label}", table,
                             f"{param}={label} on {base.source}"))
    return out


# --------------------------------------------------------------------------- scenarios
def policy_scenarios(scenario: str | Path | None, policies: Sequence[PolicySet], overrides: Sequence[str] = (),
                     option: str = "--policies") -> list[Scenario]:
    """The scenario under each policy: file, then ``--set`` overrides, then the policy's table.

    The scenario alone is validated first, so an error with a policy is that policy's. Venue
    overrides are resolved too (``venues.load_venue``), so a bad venue key fails before any run.

    Args:
        scenario: scenario TOML (None: the embedded default).
        policies: the policy sets.
        overrides: ``key.path=value`` items (``--set``) applied to every policy.
        option: the option named in a policy's error (``--policies``; ``--param`` for a frontier).

    Returns:
        One validated scenario per policy, in order.

    Raises:
        DeleverInputError: bad scenario or ``--set`` (named by file and field); a policy key that is not
            a scenario field or a bad value (``<option> <policy>: <where>: field '<key>': ...``).
    """
    from delever.venues import load_venue

    raw, src = read_scenario_raw(scenario)
    raw = apply_overrides(raw, list(overrides))
    base = validate_scenario(raw, str(src))
    load_venue(base.venue.preset, base.venue.overrides)
    out = []
    for pol in policies:
        label = f"{option} {pol.name} ({pol.source})"
        _check_shared(pol.overrides, label)
        sc = validate_scenario(merge_table(raw, pol.overrides), label)
        try:
            load_venue(sc.venue.preset, sc.venue.overrides)
        except DeleverInputError as exc:
            raise DeleverInputError(f"{label}: {exc}") from None
        out.append(sc)
    return out


def _shared_part(sc: Scenario) -> dict[str, Any]:
    d = sc.model_dump(mode="json")
    return {"seed": d["seed"], "stress": d["stress"], "price_driver": d["price_driver"],
            "market.start_price": d["market"]["start_price"]}


# --------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class Metric:
    """One compared figure.

    Attributes:
        key: JSON key (unit suffix ``_usd`` where USD).
        label: for tables and charts.
        column: per-path column it is computed from (``adl``: ``adl_count > 0``).
        stat: ``mean`` | ``quantile`` (numpy linear, NaN dropped) | ``es`` (mean at or beyond the quantile).
        level: quantile level for ``quantile`` and ``es``.
        unit: ``usd`` | ``prob`` | ``x`` (a ratio).
    """

    key: str
    label: str
    column: str
    stat: str
    level: float = 0.0
    unit: str = "usd"


METRICS: tuple[Metric, ...] = (
    Metric("lar_95_usd", "LaR 95 %", "liquidated_notional_usd", "quantile", 0.95),
    Metric("lar_99_usd", "LaR 99 %", "liquidated_notional_usd", "quantile", 0.99),
    Metric("liquidated_notional_mean_usd", "liquidated notional, mean", "liquidated_notional_usd", "mean"),
    Metric("bad_debt_mean_usd", "bad debt, mean", "bad_debt_usd", "mean"),
    Metric("bad_debt_var_95_usd", "bad debt VaR 95 %", "bad_debt_usd", "quantile", 0.95),
    Metric("bad_debt_var_99_usd", "bad debt VaR 99 %", "bad_debt_usd", "quantile", 0.99),
    Metric("bad_debt_es_95_usd", "bad debt ES 95 %", "bad_debt_usd", "es", 0.95),
    Metric("bad_debt_es_99_usd", "bad debt ES 99 %", "bad_debt_usd", "es", 0.99),
    Metric("p_insurance_depleted", "P(insurance fund depleted)", "insurance_depleted", "mean", unit="prob"),
    Metric("p_adl", "P(ADL)", "adl", "mean", unit="prob"),
    Metric("adl_notional_mean_usd", "ADL notional, mean", "adl_notional_usd", "mean"),
    Metric("adl_notional_p99_usd", "ADL notional 99 %", "adl_notional_usd", "quantile", 0.99),
    Metric("amplification_p50", "amplification, median", "amplification", "quantile", 0.50, "x"),
    Metric("amplification_p99", "amplification 99 %", "amplification", "quantile", 0.99, "x"),
    Metric("trader_liquidation_loss_mean_usd", "traders' liquidation losses, mean", "trader_liquidation_loss_usd",
           "mean"),
    Metric("trader_liquidation_loss_p99_usd", "traders' liquidation losses 99 %", "trader_liquidation_loss_usd",
           "quantile", 0.99),
)
_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(m.column for m in METRICS))


def _columns(table: pa.Table) -> np.ndarray:
    """float64 ``(C, n)``: the per-path columns the metrics use, in ``_COLUMNS`` order (NaN where undefined).

    Raises:
        DeleverInputError: a column missing from the table.
    """
    rows = []
    for name in _COLUMNS:
        src = "adl_count" if name == "adl" else name
        if src not in table.column_names:
            raise DeleverInputError(f"per-path outcomes: missing column {src}")
        col = np.asarray(_column(table, src), dtype=np.float64)
        rows.append((col > 0).astype(np.float64) if name == "adl" else col)
    return np.stack(rows)


def _evaluate(cols: np.ndarray, nan_free: Sequence[bool]) -> np.ndarray:
    """Every metric of ``METRICS`` on columns ``(C, ..., n)`` along the last axis -> ``(M, ...)``."""
    out = []
    for m in METRICS:
        c = _COLUMNS.index(m.column)
        x = cols[c]
        if m.stat == "mean":
            out.append(x.mean(axis=-1))
        elif m.stat == "es":
            out.append(expected_shortfall_along(x, m.level))
        elif nan_free[c]:
            out.append(np.quantile(x, m.level, axis=-1))
        else:
            with warnings.catch_warnings():  # a sample without any defined value gives NaN: reported as None
                warnings.simplefilter("ignore", RuntimeWarning)
                out.append(np.nanquantile(x, m.level, axis=-1))
    return np.stack(out)


def _bootstrap_kwargs(seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {"rng": rng} if "rng" in inspect.signature(stats.bootstrap).parameters else {"random_state": rng}


def _num(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def compare_metrics(tables: Sequence[pa.Table], baseline: int = 0, resamples: int = DEFAULT_RESAMPLES,
                    confidence: float = CONFIDENCE, seed: int = 0) -> list[dict[str, dict[str, Any]]]:
    """Every metric of every policy with its interval and its paired difference to the baseline.

    Args:
        tables: per-path tables, one per policy, the same paths in the same order (common random numbers).
        baseline: index of the reference policy.
        resamples: bootstrap replicates (>= 100).
        confidence: two-sided confidence level in (0, 1).
        seed: seed of the bootstrap's generator (the intervals are reproducible from it).

    Returns:
        One dict per policy: ``{metric key: {"value", "ci": [lo, hi], "diff", "diff_ci": [lo, hi]}}``
        (floats; None where undefined, e.g. amplification with no defined path). ``diff`` is
        ``value - baseline's value``; the baseline's own diff is 0 with interval [0, 0].

    Raises:
        DeleverInputError: no table, tables with different path counts, bad ``resamples`` or ``confidence``.
    """
    if not tables:
        raise DeleverInputError("compare: expected at least one policy, got none")
    n = tables[0].num_rows
    if n < 2 or any(t.num_rows != n for t in tables):
        raise DeleverInputError(f"compare: expected the same number (>= 2) of paths per policy, got "
                                f"{[t.num_rows for t in tables]}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 100:
        raise DeleverInputError(f"--resamples: expected a whole number of bootstrap replicates >= 100, got {resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise DeleverInputError(f"confidence: expected a level strictly between 0 and 1, got {confidence!r}")
    if not 0 <= baseline < len(tables):
        raise DeleverInputError(f"baseline: expected a policy index in 0..{len(tables) - 1}, got {baseline}")
    data = [_columns(t) for t in tables]  # P x (C, n)
    n_pol, n_col, n_met = len(data), len(_COLUMNS), len(METRICS)
    nan_free = [all(not np.isnan(d[c]).any() for d in data) for c in range(n_col)]

    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        vals = np.stack([_evaluate(s, nan_free) for s in samples])  # (P, M, ...)
        diffs = vals - vals[baseline]
        return np.concatenate([vals, diffs]).reshape((2 * n_pol * n_met, *vals.shape[2:]))

    point = statistic(*data)
    batch = max(1, min(resamples, _BOOT_BYTES // (8 * n * n_col * n_pol)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.bootstrap(tuple(data), statistic, n_resamples=resamples, batch=batch, vectorized=True,
                              paired=True, axis=-1, confidence_level=confidence, method="percentile",
                              **_bootstrap_kwargs(seed))
    lo = np.asarray(res.confidence_interval.low).reshape(2, n_pol, n_met)
    hi = np.asarray(res.confidence_interval.high).reshape(2, n_pol, n_met)
    pt = point.reshape(2, n_pol, n_met)
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    out: list[dict[str, dict[str, Any]]] = []
    for p in range(n_pol):
        row: dict[str, dict[str, Any]] = {}
        for k, m in enumerate(METRICS):
            ci = [_num(lo[0, p, k]), _num(hi[0, p, k])]
            if m.unit == "prob":
                ci = list(wilson_interval(int(round(pt[0, p, k] * n)), n, z))
            diff_ci = [0.0, 0.0] if p == baseline else [_num(lo[1, p, k]), _num(hi[1, p, k])]
            row[m.key] = {"value": _num(pt[0, p, k]), "ci": ci, "diff": _num(pt[1, p, k]), "diff_ci": diff_ci}
        out.append(row)
    return out


# --------------------------------------------------------------------------- runs
def _check_common_paths(runs: list[PolicyRun]) -> None:
    """The policies' exogenous paths must be the same: same shared keys, start price and per-path moves."""
    ref = runs[0]
    ref_shared = _shared_part(ref.scenario)
    for run in runs[1:]:
        shared = _shared_part(run.scenario)
        for key, value in shared.items():
            if value != ref_shared[key]:
                raise DeleverInputError(f"--policies {run.policy.name}: '{key}' differs from {ref.policy.name}'s; "
                                        "every policy must share it (common random numbers)")
        if run.result is None:
            continue
        a, b = ref.result, run.result
        same = (a.summary.get("start_price") == b.summary.get("start_price")
                and a.paths.column("path").equals(b.paths.column("path"))
                and a.paths.column("exogenous_move_pct").equals(b.paths.column("exogenous_move_pct")))
        if not same:
            raise RuntimeError(f"compare: policy {run.policy.name} ran on other price paths than "
                               f"{ref.policy.name} (common random numbers broken)")


def _baseline_index(policies: Sequence[PolicySet]) -> int:
    return next((i for i, p in enumerate(policies) if p.name == "baseline"), 0)


def _safe(name: str) -> str:
    return _SAFE_NAME.sub("_", name).strip("._") or "policy"


def run_compare(scenarios: Sequence[Scenario], policies: Sequence[PolicySet], data_dir: Path | str,
                executor: str = "processes", workers: int | None = None, scheduler: str | None = None,
                block_size: int | None = None, engine: str = "auto", progress: bool = True,
                out_dir: Path | str | None = None, resamples: int = DEFAULT_RESAMPLES,
                bootstrap_seed: int | None = None, confidence: float = CONFIDENCE, kind: str = "compare",
                extra: dict[str, Any] | None = None) -> CompareResult:
    """Run every policy's stress on the same random paths and compare them.

    Args:
        scenarios: one scenario per policy (:func:`policy_scenarios`); they must agree on ``seed``,
            ``stress``, ``price_driver`` and ``market.start_price``.
        policies: the policy sets, in order (the baseline is the one named ``baseline``, else the first).
        data_dir: root of the scenarios' data paths.
        executor, workers, scheduler, block_size, engine, progress: as for :func:`delever.stress.run_stress`
            (each policy runs with them; nothing is written per run).
        out_dir: folder that receives ``<scenario>-<kind>-<hash>-<UTC time>``: ``compare.json``,
            ``report.html`` and ``policies/<name>/{paths.parquet, summary.json, config.json}``,
            written atomically; None writes nothing.
        resamples: bootstrap replicates.
        bootstrap_seed: seed of the bootstrap (default: the scenario's seed).
        confidence: two-sided confidence level of the intervals.
        kind: ``compare`` or ``frontier`` (the folder name and the report title).
        extra: more keys for the summary; a frontier's (``param``, ``policy``, ``values``) also give
            ``points``, one per value with its metrics.

    Returns:
        :class:`CompareResult`.

    Raises:
        DeleverInputError: mismatched inputs, scenarios that differ in a shared key, bad options (from
            ``run_stress``), bad ``resamples``/``confidence``.
        delever.stress.StressError: a block of a policy's run failed.
    """
    from delever.stress import run_stress

    t0 = time.perf_counter()
    if not policies or len(scenarios) != len(policies):
        raise DeleverInputError(f"compare: expected one scenario per policy, got {len(scenarios)} scenarios for "
                                f"{len(policies)} policies")
    runs = [PolicyRun(p, sc, None) for p, sc in zip(policies, scenarios, strict=True)]
    _check_common_paths(runs)  # before any run
    from delever.venues import load_venue

    for i, run in enumerate(runs, 1):
        if progress:
            print(f"policy {i}/{len(runs)}: {run.policy.name}", file=sys.stderr, flush=True)
        run.venue_rules = load_venue(run.scenario.venue.preset, run.scenario.venue.overrides).model_dump(mode="json")
        run.result = run_stress(run.scenario, data_dir, executor=executor, workers=workers, scheduler=scheduler,
                                block_size=block_size, out_dir=None, progress=progress, engine=engine)
    _check_common_paths(runs)
    base = _baseline_index(policies)
    sc0 = scenarios[0]
    seed = sc0.seed if bootstrap_seed is None else bootstrap_seed
    rows = compare_metrics([r.result.paths for r in runs], base, resamples, confidence, seed)
    hashes = {r.policy.name: r.result.summary["config_hash"] for r in runs}
    summary: dict[str, Any] = {
        "kind": kind,
        "scenario": sc0.name,
        "baseline": policies[base].name,
        "paths": sc0.stress.paths,
        "seed": sc0.seed,
        "generator": runs[0].result.summary.get("generator"),
        "horizon_s": sc0.stress.horizon_s,
        "dt_s": sc0.stress.dt_s,
        "resamples": resamples,
        "bootstrap_seed": seed,
        "confidence": confidence,
        "ci_method": "paired percentile bootstrap over paths (same resampled paths for every policy); "
                     "probabilities: Wilson score interval; differences: paired bootstrap",
        "metrics": [{"key": m.key, "label": m.label, "unit": m.unit} for m in METRICS],
        "policies": [
            {"name": r.policy.name, "description": r.policy.description, "source": r.policy.source,
             "overrides": r.policy.overrides, "config_hash": hashes[r.policy.name], "metrics": row,
             "engine": r.result.summary.get("engine"),
             "paths_kernel": r.result.summary.get("paths_kernel"),
             "paths_general": r.result.summary.get("paths_general"),
             "critical_shock_pct": r.result.summary.get("critical_shock_pct"),
             "wall_s": r.result.summary.get("wall_s")}
            for r, row in zip(runs, rows, strict=True)
        ],
        "config_hashes": hashes,
        **(extra or {}),
        "notes": list(dict.fromkeys(n for r in runs for n in r.result.notes)),
        "delever_version": __version__,
        "run_folder": None,
        "wall_s": None,
    }
    if kind == "frontier" and extra is not None:
        summary["points"] = [{"value": v, "name": row["name"], **row["metrics"]}
                             for v, row in zip(extra["values"], summary["policies"], strict=True)]
    result = CompareResult(summary, runs, base)
    if out_dir is not None:
        tag = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:12]
        name = run_folder_name(sc0.name, kind, tag)
        out = Path(out_dir)
        summary["run_folder"] = str(out / name)
        with atomic_run_folder(out, name) as tmp:
            _write_folder(result, tmp)
            summary["wall_s"] = round(time.perf_counter() - t0, 3)
            (tmp / "compare.json").write_text(json.dumps(summary, indent=2, default=str))
        result.run_folder = out / name
    summary["wall_s"] = round(time.perf_counter() - t0, 3)
    return result


def _write_folder(result: CompareResult, folder: Path) -> None:
    from delever.compare_report import write_compare_report

    used: set[str] = set()
    for run in result.runs:
        sub = _safe(run.policy.name)
        while sub in used:  # names that only differ in unsafe characters
            sub += "_"
        used.add(sub)
        d = folder / "policies" / sub
        d.mkdir(parents=True)
        pq.write_table(run.result.paths, d / "paths.parquet")
        (d / "summary.json").write_text(json.dumps(run.result.summary, indent=2, default=str))
        config = {"policy": {"name": run.policy.name, "description": run.policy.description,
                             "source": run.policy.source, "overrides": run.policy.overrides},
                  "config_hash": run.result.summary["config_hash"], "seed": run.scenario.seed,
                  "scenario": run.scenario.model_dump(mode="json"), "venue_rules": run.venue_rules}
        (d / "config.json").write_text(json.dumps(config, indent=2, default=str))
    write_compare_report(result, folder / "report.html", folder.parent)


def run_frontier(scenario: str | Path | None, param: str, values: Sequence[Any], base: PolicySet,
                 data_dir: Path | str, overrides: Sequence[str] = (), **kwargs: Any) -> CompareResult:
    """Sweep ``param`` over ``values`` on top of the ``base`` policy: a comparison of one policy set per value.

    Args:
        scenario: scenario TOML (None: the embedded default).
        param: dotted scenario key, e.g. ``mitigations.circuit_breaker.band_pct``.
        values: at least 2 values (:func:`parse_values`).
        base: the policy every value is applied on (e.g. the ``circuit-breaker`` preset; ``baseline``).
        data_dir: root of the scenario's data paths.
        overrides: ``--set`` items applied to every point.
        **kwargs: passed to :func:`run_compare` (executor, workers, engine, out_dir, resamples, ...).

    Returns:
        :class:`CompareResult` whose summary adds ``param``, ``policy``, ``values`` and ``points``:
        ``[{"value", "name", <metric key>: {"value", "ci", "diff", "diff_ci"}, ...}]`` (differences to
        the first value).

    Raises:
        DeleverInputError: fewer than 2 values, a ``param`` that is not a scenario key or is shared by
            every policy, a bad value (named by ``--param``), or a bad base policy (named by ``--policy``).
    """
    if len(values) < 2:
        raise DeleverInputError(f"--values: expected at least 2 values, got {len(values)}")
    policy_scenarios(scenario, [base], overrides, option="--policy")
    pols = frontier_policies(base, param, values)
    scenarios = policy_scenarios(scenario, pols, overrides, option="--param")
    extra = {"param": param, "policy": base.name, "values": list(values)}
    return run_compare(scenarios, pols, data_dir, kind="frontier", extra=extra, **kwargs)
