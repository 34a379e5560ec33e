"""Multi-instrument Monte Carlo generators of ``delever stress``: scenario section -> prepared generator -> paths.

The wiring of :mod:`delever.pathgen_multi` (plain arrays) to a ``[[instruments]]`` scenario, the multi-instrument
counterpart of :func:`delever.pathgen.prepare_generator` / :func:`delever.pathgen.generate_paths`:

* ``correlated`` (:class:`delever.scenario.CorrelatedPaths`): per-instrument volatilities and the dependence
  fitted on the 1-minute close-to-close log returns of the instruments' own kline files
  (:func:`delever.multipath.minute_log_returns_multi` -> :func:`delever.pathgen_multi.fit_dependence`, Ledoit-Wolf or
  OAS shrinkage; t-copula correlation from Kendall's tau and ML degrees of freedom) or given in the scenario, then
  :func:`delever.pathgen_multi.generate_correlated` (Gaussian copula = multivariate GBM, or t copula).
* ``common_factor_crash`` (:class:`delever.scenario.CommonFactorCrashPaths`): the factor instrument's real crash shape
  (:func:`delever.pathgen.read_crash_shape`, rescaled to ``depth_pct`` as ``crash_shape`` does), betas and
  idiosyncratic volatilities by OLS on the same window of every instrument's file
  (:func:`delever.pathgen_multi.estimate_betas`), then :func:`delever.pathgen_multi.common_factor_crash` on the
  stress grid.

Seeds: one :class:`numpy.random.SeedSequence` per path (the stress runner's), so a block of paths equals the same
rows of the whole run bit for bit (see :mod:`delever.pathgen_multi`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from delever.errors import DeleverInputError
from delever.multipath import minute_log_returns_multi
from delever.pathgen import PreparedGenerator, read_crash_shape
from delever.pathgen_multi import (
    common_factor_crash,
    estimate_betas,
    fit_dependence,
    generate_correlated,
)
from delever.scenario import CommonFactorCrashPaths, CorrelatedPaths, InstrumentSection, resolve_path

__all__ = ["generate_multi_paths", "prepare_multi_generator"]

_FIELD = "stress.generator"
_STEP_TOL = 1e-9


def _files(instruments: Sequence[InstrumentSection], data_dir: Path, why: str) -> dict[str, Path]:
    """``{symbol: kline file}`` of every instrument (the estimation reads all of them)."""
    missing = [i.symbol for i in instruments if i.path is None]
    if missing:
        raise DeleverInputError(f"{_FIELD}: {why} reads instruments[].path; {', '.join(missing)} has none")
    return {i.symbol: resolve_path(str(i.path), data_dir, f"instruments.{i.symbol}.path") for i in instruments}


def _fmt_vec(names: Sequence[str], values: np.ndarray, fmt: str = "{:.3g}") -> str:
    return ", ".join(f"{n} {fmt.format(v)}" for n, v in zip(names, values, strict=True))


def _window_text(r_end_ms: np.ndarray, n: int) -> str:
    from delever.data.klines import format_utc_ms

    return f"{n} 1-bar returns ending {format_utc_ms(int(r_end_ms[0]))} to {format_utc_ms(int(r_end_ms[-1]))} UTC"


def _prepare_correlated(cfg: CorrelatedPaths, instruments: Sequence[InstrumentSection],
                        data_dir: Path) -> PreparedGenerator:
    names = [i.symbol for i in instruments]
    n_inst = len(names)
    params: dict[str, object] = {"copula": cfg.copula, "dependence": cfg.dependence,
                                 "marginal_dof": cfg.marginal_dof, "instruments": names}
    if cfg.dependence == "fitted":
        rets = minute_log_returns_multi(_files(instruments, data_dir, "dependence = 'fitted'"), cfg.fit_start,
                                        cfg.fit_end)
        fit = fit_dependence(rets.log_return, cfg.shrinkage, rets.interval_s, names)
        sigma = fit.sigma_annual
        corr = fit.correlation if cfg.copula == "gaussian" else fit.t_copula_correlation
        dof = cfg.dof if cfg.dof is not None else (fit.t_copula_dof if cfg.copula == "t_copula" else None)
        params.update(shrinkage_method=cfg.shrinkage, shrinkage=fit.shrinkage, fit_returns=fit.n_obs,
                      fit_interval_s=fit.interval_s, sample_correlation=fit.sample_correlation,
                      t_copula_dof_fitted=fit.t_copula_dof, t_copula_dof_at_bound=fit.t_copula_dof_at_bound,
                      excluded_returns=rets.n_excluded)
        source = (f"fitted on {_window_text(rets.end_open_time_ms, fit.n_obs)} of the instruments' files, "
                  f"{cfg.shrinkage} shrinkage {fit.shrinkage:.3g}")
    else:
        sigma = np.asarray(cfg.sigma_annual, dtype=np.float64)
        if sigma.shape != (n_inst,):
            raise DeleverInputError(f"{_FIELD}.sigma_annual: expected {n_inst} values (one per instrument), "
                                    f"got {sigma.size}")
        try:
            corr = np.asarray(cfg.correlation, dtype=np.float64)
        except ValueError:
            raise DeleverInputError(f"{_FIELD}.correlation: expected a {n_inst} x {n_inst} table of numbers") from None
        if corr.shape != (n_inst, n_inst):
            raise DeleverInputError(f"{_FIELD}.correlation: expected {n_inst} x {n_inst} (instruments), "
                                    f"got shape {corr.shape}")
        dof = cfg.dof
        source = "given in the scenario"
    drift = np.zeros(n_inst) if cfg.drift_annual is None else np.asarray(cfg.drift_annual, dtype=np.float64)
    if drift.shape != (n_inst,):
        raise DeleverInputError(f"{_FIELD}.drift_annual: expected {n_inst} values (one per instrument), "
                                f"got {drift.size}")
    params.update(sigma_annual=np.ascontiguousarray(sigma), correlation=np.ascontiguousarray(corr),
                  dof=None if dof is None else float(dof), drift_annual=drift)
    cop = "Gaussian copula (multivariate GBM)" if cfg.copula == "gaussian" else f"t copula dof {dof:.3g}"
    if cfg.copula == "t_copula" and cfg.dof is None and params.get("t_copula_dof_at_bound"):
        cop += " (at the ML search bound: the heaviest tails the fit allows)"
    label = f"correlated {cop}, {source}; vol/yr {_fmt_vec(names, sigma)}"
    gen = PreparedGenerator("correlated", label, params)
    generate_multi_paths(gen, np.ones(n_inst), 1, 60.0, [np.random.SeedSequence(0)])  # checks corr now, named
    return gen


def _prepare_common_factor(cfg: CommonFactorCrashPaths, instruments: Sequence[InstrumentSection],
                           data_dir: Path) -> PreparedGenerator:
    names = [i.symbol for i in instruments]
    factor = cfg.factor if cfg.factor is not None else names[0]
    if factor not in names:
        raise DeleverInputError(f"{_FIELD}.factor: {factor!r} is not one of the instruments ({', '.join(names)})")
    k = names.index(factor)
    files = _files(instruments, data_dir, "common_factor_crash")
    t_s, x, window = read_crash_shape(files[factor], cfg.start, cfg.end, f"{_FIELD}.factor")
    trough = float(x.min())
    target = trough if cfg.depth_pct is None else math.log1p(-cfg.depth_pct / 100.0)
    shape = x * (target / trough)
    k_trough = int(np.argmin(x))
    shape[k_trough] = target
    rets = minute_log_returns_multi(files, cfg.start, cfg.end)
    fit = estimate_betas(rets.log_return, k, names)
    params: dict[str, object] = {
        "instruments": names, "factor": factor, "t_s": t_s, "log_shape": shape, "trough_t_s": float(t_s[k_trough]),
        "depth_pct": cfg.depth_pct, "observed_depth_pct": -100.0 * math.expm1(trough),
        "depth_dispersion": float(cfg.depth_dispersion), "beta": fit.beta, "beta_stderr": fit.beta_stderr,
        "r_squared": fit.r_squared, "idio_sigma_step": fit.idio_sigma_step, "fit_interval_s": rets.interval_s,
        "fit_returns": fit.n_obs, "source": window,
    }
    depth = f"-{cfg.depth_pct:g} %" if cfg.depth_pct is not None else f"its observed {100 * math.expm1(trough):.2f} %"
    label = (f"common_factor_crash: {factor} shape of {window} rescaled to {depth}, depth factor "
             f"lognormal(0, {cfg.depth_dispersion:g}); betas {_fmt_vec(names, fit.beta)} and idiosyncratic "
             f"vol per {rets.interval_s:g} s {_fmt_vec(names, fit.idio_sigma_step)} (OLS on "
             f"{_window_text(rets.end_open_time_ms, fit.n_obs)})")
    return PreparedGenerator("common_factor_crash", label, params)


def prepare_multi_generator(cfg: CorrelatedPaths | CommonFactorCrashPaths, instruments: Sequence[InstrumentSection],
                            data_dir: Path) -> PreparedGenerator:
    """Build the prepared generator of a multi-instrument ``stress.generator`` section (reads and fits the data once).

    Args:
        cfg: the scenario's ``stress.generator`` (``correlated`` or ``common_factor_crash``).
        instruments: the scenario's ``[[instruments]]`` (column order of the paths).
        data_dir: root of the instruments' kline paths.

    Returns:
        :class:`delever.pathgen.PreparedGenerator` (kind ``"correlated"`` or ``"common_factor_crash"``) whose
        ``params`` hold the fitted or given parameters (float64 arrays, one entry per instrument).

    Raises:
        DeleverInputError: an instrument without a kline file, files that do not share one grid, a window without
            enough returns or without a crash, a factor that is not an instrument, given parameters of the wrong
            size, a correlation that is not positive definite.
    """
    if isinstance(cfg, CorrelatedPaths):
        return _prepare_correlated(cfg, instruments, data_dir)
    if isinstance(cfg, CommonFactorCrashPaths):
        return _prepare_common_factor(cfg, instruments, data_dir)
    raise DeleverInputError(f"{_FIELD}.kind: {getattr(cfg, 'kind', cfg)!r} is not a multi-instrument generator")


def _common_factor_on_grid(gen: PreparedGenerator, start_prices: np.ndarray, n_steps: int, dt_s: float,
                           seeds: list[np.random.SeedSequence]) -> np.ndarray:
    """The crash shape played back in real time on ``t_j = j dt_s`` (``np.interp`` of the log price, held after
    the window, as ``crash_shape``), idiosyncratic volatility scaled from the bar to the step by ``sqrt(dt_s / I)``."""
    p = gen.params
    horizon = n_steps * dt_s
    trough_t = float(p["trough_t_s"])  # type: ignore[arg-type]
    if trough_t > horizon * (1 + _STEP_TOL):
        raise DeleverInputError(f"stress.horizon_s: {horizon:g} s ends before the factor's crash trough at "
                                f"+{trough_t:g} s of {p['source']}; raise stress.horizon_s or move {_FIELD}.start")
    grid = np.arange(n_steps + 1, dtype=np.float64) * dt_s
    base = np.interp(grid, p["t_s"], p["log_shape"])  # type: ignore[arg-type]
    base[0] = 0.0
    idio = np.asarray(p["idio_sigma_step"]) * math.sqrt(dt_s / float(p["fit_interval_s"]))  # type: ignore[arg-type]
    return common_factor_crash(base, np.asarray(p["beta"]), idio, None, float(p["depth_dispersion"]),  # type: ignore[arg-type]
                               seeds, start_prices=start_prices)


def generate_multi_paths(gen: PreparedGenerator, start_prices: np.ndarray, n_steps: int, dt_s: float,
                         seeds: list[np.random.SeedSequence]) -> np.ndarray:
    """Simulate one block of multi-instrument paths on ``t = 0, dt_s, ..., n_steps dt_s``.

    Args:
        gen: from :func:`prepare_multi_generator`.
        start_prices: float64 (I,), USD, > 0; row 0 of every path.
        n_steps: steps, int >= 1.
        dt_s: step in seconds, > 0.
        seeds: one :class:`numpy.random.SeedSequence` per path.

    Returns:
        float64 ``(len(seeds), n_steps + 1, I)`` prices in USD, finite and > 0; rows ``a:b`` of a run equal the
        block ``seeds[a:b]``.

    Raises:
        DeleverInputError: bad arguments or parameters (named ``stress.generator``), a horizon ending before the
            crash trough, prices leaving the float64 range.
    """
    p = gen.params
    s0 = np.asarray(start_prices, dtype=np.float64)
    try:
        if gen.kind == "correlated":
            return generate_correlated(
                "gaussian" if p["copula"] == "gaussian" else "t_copula", s0, p["sigma_annual"],  # type: ignore[arg-type]
                p["correlation"], n_steps, dt_s, seeds, dof=p["dof"], drift_annual=p["drift_annual"],  # type: ignore[arg-type]
                marginal_dof=p["marginal_dof"])  # type: ignore[arg-type]
        if gen.kind == "common_factor_crash":
            return _common_factor_on_grid(gen, s0, n_steps, dt_s, seeds)
    except DeleverInputError as exc:
        if str(exc).startswith(("stress.", "instruments.")):
            raise
        raise DeleverInputError(f"{_FIELD} ({gen.kind}): {exc}") from None
    raise DeleverInputError(f"{_FIELD}.kind: {gen.kind!r} is not a multi-instrument generator")
