"""Monte Carlo price path generators for ``delever stress``.

Three calls, used by the stress runner:

* :func:`path_seeds` gives one :class:`numpy.random.SeedSequence` per *path* (``SeedSequence(seed).spawn``),
  so a path's prices never depend on how paths are grouped into blocks, processes or Dask workers.
* :func:`prepare_generator` turns a scenario's ``stress.generator`` section into a small, picklable
  :class:`PreparedGenerator`: it reads the real kline data and fits the GARCH filter once, in the parent.
* :func:`generate_paths` simulates a block of paths. Path ``i`` draws its random numbers only from
  ``np.random.default_rng(seeds[i])``, always in the same order and amount, and all later arithmetic is
  element-wise per row, so ``generate_paths(g, ..., seeds[a:b])`` equals rows ``a:b`` of
  ``generate_paths(g, ..., seeds)`` bit for bit. Recursions (GARCH) loop over steps and are vectorized
  over the paths of the block; each path's innovations are drawn first, as a row, from its own generator.

Generators (``dt_s`` is the run's step in seconds; ``dt = dt_s / (365 * 24 * 3600)`` years):

* ``gbm``: log returns ``N((mu - sigma^2 / 2) dt, sigma^2 dt)`` (geometric Brownian motion; Black and
  Scholes 1973), so ``E[S_t] = S_0 exp(mu t)``.
* ``merton``: GBM plus a compound Poisson process (Merton 1976, "Option pricing when underlying stock
  returns are discontinuous", J. Financial Economics 3, 125-144): per step ``N ~ Poisson(lambda_d dt_days)``
  jumps with log sizes ``N(m, s^2)``; the drift is compensated by ``-lambda kappa dt`` with
  ``kappa = E[e^J - 1] = exp(m + s^2 / 2) - 1`` so that ``E[S_t] = S_0 exp(mu t)`` (Merton 1976, eq. 2-3).
  The sum of ``N`` normal jump sizes is drawn exactly as ``N m + s sqrt(N) z``.
* ``student_t``: i.i.d. Student-t(dof) log returns scaled by ``sigma sqrt(dt) sqrt((dof - 2) / dof)`` to
  variance ``sigma^2 dt`` (a t(dof) variable has variance ``dof / (dof - 2)``). No drift: ``E[exp(t)]`` is
  infinite for any Student t, so no mean correction exists; the median log return is 0.
* ``garch``: GARCH(1,1), GJR-GARCH(1,1,1) or EGARCH(1,1,1) fitted with ``arch`` (Sheppard) to the 1-minute
  log returns of the file(s), then simulated forward (see :func:`_simulate_garch`).
* ``fhs``: filtered historical simulation (Barone-Adesi, Giannopoulos and Vosper 1999, "VaR without
  correlations for portfolios of derivative securities", J. Futures Markets 19(5), 583-602): the same
  filter fitted by Gaussian quasi-maximum likelihood (Bollerslev and Wooldridge 1992), its standardized
  residuals ``z_t = eps_t / sigma_t`` pooled, and each path bootstraps innovations from the pool (uniformly,
  with replacement) through the fitted variance recursion.
* ``crash_shape``: a historical crash's cumulative log return, rescaled to a target depth, with a random
  depth per path and optional GBM noise (see :func:`_prepare_crash_shape`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from delever.data.klines import Klines, format_utc_ms, parse_utc_ms, read_klines, read_klines_many
from delever.errors import DeleverInputError
from delever.scenario import (
    CrashShapePaths,
    FilteredHistoricalPaths,
    GarchPaths,
    GbmPaths,
    MertonPaths,
    StudentTPaths,
    resolve_path,
)

__all__ = [
    "MIN_FIT_RETURNS",
    "SECONDS_PER_YEAR",
    "PreparedGenerator",
    "generate_paths",
    "path_seeds",
    "prepare_generator",
    "read_crash_shape",
]

SECONDS_PER_YEAR = 365.0 * 24.0 * 3600.0
SECONDS_PER_DAY = 24.0 * 3600.0
# Fewest returns a GARCH-family fit is attempted on: the models carry 3-6 parameters, and on fewer
# observations arch's optimizer mostly stops on a parameter bound.
MIN_FIT_RETURNS = 50
# Lower bound arch (8.x) puts on the Student-t / skew-t shape parameter; a fit there is degenerate
# (the infinite-variance limit of a distribution that is standardized to variance 1).
_ARCH_NU_MIN = 2.05
_NU_BOUND_TOL = 1e-3
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)  # E|e| of a standard normal; arch's EGARCH uses it for every dist
_STEP_TOL = 1e-9
# SLSQP iteration cap for arch fits (arch's default, 100, stops EGARCH/t fits on the crash windows early).
_FIT_MAXITER = 1000
# Persistence within this of 1 is reported as the integrated (IGARCH) boundary arch's constraint allows.
_IGARCH_TOL = 1e-6
_FIELD = "stress.generator"


# --------------------------------------------------------------------------- public types
def path_seeds(seed: int, n_paths: int) -> list[np.random.SeedSequence]:
    """One independent seed per path: ``SeedSequence(seed).spawn(n_paths)``.

    Args:
        seed: the scenario's seed, int >= 0.
        n_paths: number of paths, int >= 0.

    Returns:
        ``n_paths`` child :class:`numpy.random.SeedSequence`; child ``i`` always belongs to path ``i``,
        whatever the block or worker it is simulated in.

    Raises:
        DeleverInputError: negative ``seed`` or ``n_paths``.
    """
    if int(seed) < 0:
        raise DeleverInputError(f"seed: expected an integer >= 0, got {seed!r}")
    if int(n_paths) < 0:
        raise DeleverInputError(f"stress.paths: expected an integer >= 0, got {n_paths!r}")
    return np.random.SeedSequence(int(seed)).spawn(int(n_paths))


@dataclass(frozen=True, eq=False)
class PreparedGenerator:
    """A path generator ready to simulate: built once in the parent, pickled to workers.

    Attributes:
        kind: ``"gbm"``, ``"merton"``, ``"student_t"``, ``"garch"``, ``"fhs"`` or ``"crash_shape"``.
        label: human-readable description with the (fitted) parameters.
        params: everything :func:`generate_paths` needs (floats, strings and small float64 arrays:
            a residual pool of the data's length, a crash shape of one point per bar).
            Not meant to be edited; equality is identity (``eq=False``: arrays inside).
    """

    kind: str
    label: str
    params: dict[str, object]


# --------------------------------------------------------------------------- preparation
def prepare_generator(
    cfg: GbmPaths | MertonPaths | StudentTPaths | GarchPaths | FilteredHistoricalPaths | CrashShapePaths,
    data_dir: Path,
) -> PreparedGenerator:
    """Build the :class:`PreparedGenerator` of a ``stress.generator`` section.

    Parametric generators only copy their parameters. ``garch`` and ``fhs`` read the kline file(s)
    (``path`` then ``extra_paths``, joined in time order by
    :func:`~delever.data.klines.read_klines_many`) and fit the model with ``arch``; ``crash_shape`` reads
    its window.

    Args:
        cfg: one of the scenario's generator models.
        data_dir: directory against which relative data paths are resolved.

    Returns:
        :class:`PreparedGenerator`.

    Raises:
        DeleverInputError: missing or invalid data file; fewer than :data:`MIN_FIT_RETURNS` returns; a
            fit that does not converge or is degenerate (message names the model and file); a crash
            window without a drawdown; an unknown generator.
    """
    if isinstance(cfg, GbmPaths):
        label = f"gbm sigma {cfg.sigma_annual:g}/yr, drift {cfg.drift_annual:g}/yr"
        return PreparedGenerator(
            "gbm", label, {"sigma_annual": float(cfg.sigma_annual), "drift_annual": float(cfg.drift_annual)}
        )
    if isinstance(cfg, MertonPaths):
        label = (
            f"merton sigma {cfg.sigma_annual:g}/yr, drift {cfg.drift_annual:g}/yr, {cfg.jumps_per_day:g} jumps/day, "
            f"log jump N({cfg.jump_mean:g}, {cfg.jump_std:g}^2)"
        )
        params = {
            "sigma_annual": float(cfg.sigma_annual),
            "drift_annual": float(cfg.drift_annual),
            "jumps_per_day": float(cfg.jumps_per_day),
            "jump_mean": float(cfg.jump_mean),
            "jump_std": float(cfg.jump_std),
        }
        return PreparedGenerator("merton", label, params)
    if isinstance(cfg, StudentTPaths):
        label = f"student_t dof {cfg.dof:g}, sigma {cfg.sigma_annual:g}/yr"
        return PreparedGenerator(
            "student_t", label, {"sigma_annual": float(cfg.sigma_annual), "dof": float(cfg.dof)}
        )
    if isinstance(cfg, GarchPaths):
        return _prepare_garch(cfg.path, cfg.extra_paths, cfg.model, cfg.dist, data_dir, "garch")
    if isinstance(cfg, FilteredHistoricalPaths):
        return _prepare_garch(cfg.path, cfg.extra_paths, cfg.model, "normal", data_dir, "fhs")
    if isinstance(cfg, CrashShapePaths):
        return _prepare_crash_shape(cfg, data_dir)
    raise DeleverInputError(f"{_FIELD}: unsupported generator {type(cfg).__name__}")


def _log_returns(kl: Klines) -> np.ndarray:
    """float64 (T,): ``r_k = ln(close_k / close_{k-1})`` with ``close_{-1} = open_0`` (one return per bar).

    The first bar's open is its start price, as in :func:`delever.paths.historical_path` (close mode).
    """
    prices = np.concatenate([[kl.open[0]], kl.close])
    return np.diff(np.log(prices))


def _fit_scale(r: np.ndarray) -> float:
    """Power of ten ``s`` that puts ``var(s r)`` in [0.1, 1e4): arch's own rescaling rule.

    Same loop as ``arch.univariate.base.ARCHModel._check_scale`` (which warns or rescales when the
    variance lies outside that range); crash 1-minute returns get ``s = 100`` (percent).
    """
    var = float(np.var(r))
    scale = 1.0
    v = var
    while not 0.1 <= v < 1e4 and v > 0:
        scale = scale * 10 if v < 1.0 else scale / 10
        v = var * scale**2
    return scale


def _prepare_garch(
    path: str, extra_paths: list[str], model: str, dist: str, data_dir: Path, kind: str
) -> PreparedGenerator:
    """Fit the GARCH-family model of a ``garch`` or ``fhs`` generator (see module docstring).

    Model (``arch.arch_model``, ``mean="Zero"``, ``p = q = 1``): ``GARCH`` is ``vol="GARCH", o=0``
    (Bollerslev 1986); ``GJR-GARCH`` is ``vol="GARCH", o=1`` (Glosten, Jagannathan and Runkle 1993);
    ``EGARCH`` is ``vol="EGARCH", o=1`` (Nelson 1991, with the asymmetry term). A zero mean is used because
    the scenario has no mean setting and the mean of a 1-2 hour window is far inside its standard error
    (130 returns of ~0.7 % sd give ~0.06 %/min; fitted means are ~0.01-0.1 %/min), while a constant mean
    would be compounded over every simulated step. Returns are multiplied by :func:`_fit_scale` for the fit
    (``rescale=False``: the scale is ours and recorded) and divided by it when simulating.

    Fits are checked: the optimizer's ``convergence_flag`` must be 0 (SLSQP, up to ``_FIT_MAXITER``
    iterations), every parameter finite, a t/skew-t shape parameter above arch's lower bound 2.05 (a fit on
    the bound is the infinite-variance limit and its simulations overflow), and the persistence
    (``alpha + gamma/2 + beta`` for GARCH/GJR, arch's stationarity constraint, exact for symmetric
    innovations; ``beta`` for EGARCH) at most 1. On the 1-2 hour crash windows the GARCH/GJR fits land on the
    boundary, persistence 1 to ~1e-10 (a level shift of the variance inside the sample pushes persistence to 1:
    Lamoureux and Lastrapes 1990); the recursion is still well defined over a finite horizon (expected
    variance grows by ``omega`` per step), so such fits are accepted and labelled "integrated".

    Raises:
        DeleverInputError: see :func:`prepare_generator`.
    """
    from arch import arch_model  # imported here: arch is slow to import and only these generators need it

    files = [resolve_path(path, data_dir, f"{_FIELD}.path")]
    files += [resolve_path(p, data_dir, f"{_FIELD}.extra_paths") for p in extra_paths]
    kl = read_klines_many(files)
    where = ", ".join(f.name for f in files)
    model_name = model if kind == "garch" else f"{model} filter"
    r = _log_returns(kl)
    if r.size < MIN_FIT_RETURNS:
        raise DeleverInputError(
            f"{_FIELD}.path: {where}: {r.size} returns, expected at least {MIN_FIT_RETURNS} to fit {model_name}"
        )
    if not np.all(np.isfinite(r)) or float(np.var(r)) <= 0.0:
        raise DeleverInputError(f"{_FIELD}.path: {where}: returns have no variation, cannot fit {model_name}")
    scale = _fit_scale(r)
    y = r * scale
    vol, o = {"GARCH": ("GARCH", 0), "GJR-GARCH": ("GARCH", 1), "EGARCH": ("EGARCH", 1)}[model]
    am = arch_model(y, mean="Zero", vol=vol, p=1, o=o, q=1, dist=dist, rescale=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence is checked below from the flag, not from warnings
            res = am.fit(disp="off", show_warning=False, options={"maxiter": _FIT_MAXITER})
    except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
        raise DeleverInputError(f"{_FIELD}: {model_name}/{dist} fit to {where} failed: {exc}") from None
    if res.convergence_flag != 0:
        msg = str(getattr(res.optimization_result, "message", "")).strip().splitlines()[0]
        raise DeleverInputError(
            f"{_FIELD}: {model_name}/{dist} fit to {where} did not converge "
            f"(optimizer flag {res.convergence_flag}: {msg}); try another model or dist, or more data"
        )
    pv = {str(k): float(v) for k, v in res.params.items()}
    sig = np.asarray(res.conditional_volatility, dtype=np.float64)
    resid = np.asarray(res.resid, dtype=np.float64)
    if not (all(math.isfinite(v) for v in pv.values()) and np.all(np.isfinite(sig)) and np.all(sig > 0)):
        raise DeleverInputError(
            f"{_FIELD}: {model_name}/{dist} fit to {where} gave non-finite parameters {pv}"
        )
    nu = pv.get("nu", pv.get("eta"))
    if nu is not None and nu <= _ARCH_NU_MIN + _NU_BOUND_TOL:
        raise DeleverInputError(
            f"{_FIELD}: {model_name}/{dist} fit to {where} is degenerate: shape parameter {nu:.4g} sits on arch's "
            f"lower bound {_ARCH_NU_MIN} (infinite-variance limit); use another model or dist, or more data"
        )
    omega, alpha, beta = pv["omega"], pv["alpha[1]"], pv["beta[1]"]
    gamma = pv.get("gamma[1]", 0.0)
    if model == "EGARCH":
        persistence = beta
    else:
        persistence = alpha + 0.5 * gamma + beta
    if persistence > 1.0 + _IGARCH_TOL:
        raise DeleverInputError(
            f"{_FIELD}: {model_name}/{dist} fit to {where} is explosive (persistence {persistence:.6g} > 1)"
        )
    integrated = persistence >= 1.0 - _IGARCH_TOL
    dist_params: tuple[float, ...] = ()
    if dist == "t":
        dist_params = (pv["nu"],)
    elif dist == "skewt":
        dist_params = (pv["eta"], pv["lambda"])
    interval_s = kl.interval_ms / 1000.0
    params: dict[str, object] = {
        "model": model,
        "dist": dist,
        "scale": scale,
        "mu": 0.0,
        "omega": omega,
        "alpha": alpha,
        "gamma": gamma,
        "beta": beta,
        "dist_params": dist_params,
        "persistence": persistence,
        "integrated": integrated,
        "last_resid": float(resid[-1]),
        "last_variance": float(sig[-1] ** 2),
        "interval_s": interval_s,
        "n_returns": int(r.size),
        "loglikelihood": float(res.loglikelihood),
        "source": where,
    }
    shown = {"omega": omega, "alpha": alpha}
    if model != "GARCH":
        shown["gamma"] = gamma
    shown["beta"] = beta
    if dist == "t":
        shown["nu"] = pv["nu"]
    elif dist == "skewt":
        shown.update(eta=pv["eta"], **{"lambda": pv["lambda"]})
    fitted = ", ".join(f"{k}={v:.4g}" for k, v in shown.items())
    first_sigma = math.sqrt(_first_variance(params)) / scale
    head = f"garch {model}(1,1)/{dist}" if kind == "garch" else f"fhs {model}(1,1) QML filter"
    label = (
        f"{head} fitted to {where} ({r.size} x {interval_s:g} s log returns x{scale:g}, zero mean): {fitted}; "
        f"persistence {persistence:.6f}{' (integrated: IGARCH boundary)' if integrated else ''}; first-step sigma {100 * first_sigma:.3g} %/bar"
    )
    if kind == "fhs":
        z = np.asarray(res.std_resid, dtype=np.float64)
        if z.shape != r.shape or not np.all(np.isfinite(z)):
            raise DeleverInputError(
                f"{_FIELD}: {model_name} fit to {where} gave non-finite standardized residuals"
            )
        params["residuals"] = np.ascontiguousarray(z)
        label += f"; {z.size} standardized residuals bootstrapped (mean {z.mean():.3g}, sd {z.std():.3g})"
    return PreparedGenerator(kind, label, params)


def read_crash_shape(path: Path, start: str | None, end: str | None,
                     field: str = f"{_FIELD}.path") -> tuple[np.ndarray, np.ndarray, str]:
    """A kline window's crash shape: log price relative to the first open at each bar's close.

    Args:
        path: a kline file (:func:`delever.data.klines.read_klines`).
        start: UTC ``'YYYY-MM-DD HH:MM[:SS]'``, bars opening at or after it (None: the file's first bar).
        end: UTC, bars opening before it (None: the file's last bar).
        field: the scenario field named in messages (``start``/``end`` are its siblings).

    Returns:
        ``(t_s, x, window)``: float64 (K + 1,) seconds since the window start (``t = k I``, ``I`` the bar
        interval), float64 (K + 1,) ``x = [0, ln(close_k / open_0)]`` and a description of the window.

    Raises:
        DeleverInputError: unreadable file, bad ``start``/``end``, or a window that never closes below its
            first open (no crash to rescale).
    """
    parent = field.rsplit(".", 1)[0]
    start_ms = parse_utc_ms(start, f"{parent}.start") if start is not None else None
    end_ms = parse_utc_ms(end, f"{parent}.end") if end is not None else None
    full = read_klines(path)
    try:
        kl = full.select(start_ms, end_ms)
    except DeleverInputError as exc:
        raise DeleverInputError(f"{parent}.start/end: {exc}") from None
    x = np.concatenate([[0.0], np.log(kl.close / kl.open[0])])
    t_s = np.arange(x.size, dtype=np.float64) * (kl.interval_ms / 1000.0)
    window = f"{path.name} {format_utc_ms(int(kl.open_time_ms[0]))} to {format_utc_ms(kl.end_time_ms)} UTC"
    if float(x.min()) >= 0.0:
        raise DeleverInputError(
            f"{field}: {window}: no close below the window's first open, so there is no crash shape to rescale"
        )
    return t_s, x, window


def _prepare_crash_shape(cfg: CrashShapePaths, data_dir: Path) -> PreparedGenerator:
    """Read the crash window and rescale its shape (see :func:`_simulate_crash_shape` for the per-path part).

    The shape is ``x(t) = ln(close / open_0)`` at each bar's close, ``t = (k + 1) I`` seconds after the window
    start (``I`` the bar interval), with ``x(0) = 0``: the same points as a close-mode historical driver.
    It is multiplied by ``c = ln(1 - depth_pct / 100) / min(x)`` so that its trough is exactly
    ``-depth_pct`` % as a price move. Intrabar lows are not used.

    Raises:
        DeleverInputError: missing file, bad ``start``/``end``, or a window that never trades below its start.
    """
    path = resolve_path(cfg.path, data_dir, f"{_FIELD}.path")
    t_s, x, window = read_crash_shape(path, cfg.start, cfg.end, f"{_FIELD}.path")
    k_trough = int(np.argmin(x))
    trough = float(x[k_trough])
    target = math.log1p(-cfg.depth_pct / 100.0)
    shape = x * (target / trough)
    shape[k_trough] = target  # exact, whatever the float noise of the product
    factor_cap = math.log(0.01) / target  # depth factor at which the trough reaches -99 %
    params: dict[str, object] = {
        "t_s": t_s,
        "log_shape": shape,
        "trough_t_s": float(t_s[k_trough]),
        "depth_pct": float(cfg.depth_pct),
        "depth_dispersion": float(cfg.depth_dispersion),
        "factor_cap": factor_cap,
        "noise_sigma_annual": float(cfg.noise_sigma_annual),
        "source": window,
    }
    label = (
        f"crash_shape {window} (observed trough {100 * math.expm1(trough):.2f} % at +{t_s[k_trough]:g} s), "
        f"rescaled to -{cfg.depth_pct:g} %, depth factor lognormal(0, {cfg.depth_dispersion:g}) capped at "
        f"{factor_cap:.4g} (-99 %), GBM noise {cfg.noise_sigma_annual:g}/yr, real-time playback"
    )
    return PreparedGenerator("crash_shape", label, params)


# --------------------------------------------------------------------------- simulation
def generate_paths(
    gen: PreparedGenerator,
    start_price: float,
    n_steps: int,
    dt_s: float,
    seeds: list[np.random.SeedSequence],
) -> np.ndarray:
    """Simulate one block of price paths on the grid ``t = 0, dt_s, ..., n_steps dt_s``.

    Args:
        gen: from :func:`prepare_generator`.
        start_price: USD, > 0; column 0 of every path, exactly.
        n_steps: number of steps, int >= 1.
        dt_s: step in seconds, > 0. ``garch``/``fhs`` need a whole multiple of the data's bar interval
            (see :func:`_simulate_garch`).
        seeds: one :class:`numpy.random.SeedSequence` per path (from :func:`path_seeds`).

    Returns:
        float64 ``(len(seeds), n_steps + 1)`` prices in USD, all finite and > 0;
        ``generate_paths(gen, p, n, dt, seeds[a:b])`` equals ``generate_paths(gen, p, n, dt, seeds)[a:b]``.

    Raises:
        DeleverInputError: bad ``start_price``/``n_steps``/``dt_s``; a ``dt_s`` a fitted model cannot be
            simulated at; an unknown ``gen.kind``; a fitted model whose simulated prices overflow.
    """
    if not (
        isinstance(start_price, int | float | np.floating | np.integer)
        and math.isfinite(start_price)
        and start_price > 0
    ):
        raise DeleverInputError(f"market.start_price: expected a price > 0, got {start_price!r}")
    if isinstance(n_steps, bool) or int(n_steps) != n_steps or n_steps < 1:
        raise DeleverInputError(
            f"stress.horizon_s: expected at least one step of dt_s, got n_steps={n_steps!r}"
        )
    if not (math.isfinite(dt_s) and dt_s > 0):
        raise DeleverInputError(f"stress.dt_s: expected a step > 0 seconds, got {dt_s!r}")
    n_steps = int(n_steps)
    dt_s = float(dt_s)
    n_paths = len(seeds)
    if n_paths == 0:
        return np.empty((0, n_steps + 1), dtype=np.float64)
    sims = {
        "gbm": _simulate_gbm,
        "merton": _simulate_merton,
        "student_t": _simulate_student_t,
        "garch": _simulate_garch,
        "fhs": _simulate_garch,
        "crash_shape": _simulate_crash_shape,
    }
    sim = sims.get(gen.kind)
    if sim is None:
        raise DeleverInputError(
            f"{_FIELD}.kind: unknown generator kind {gen.kind!r}, expected one of {sorted(sims)}"
        )
    log_path = sim(gen, n_steps, dt_s, seeds)  # (P, n_steps + 1), log(S_t / S_0), column 0 == 0
    prices = float(start_price) * np.exp(log_path)
    prices[:, 0] = float(start_price)
    if not np.all(np.isfinite(prices) & (prices > 0)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(prices) & (prices > 0), axis=1))[0])
        raise DeleverInputError(
            f"{_FIELD}: {gen.label.split(':')[0]}: simulated prices left the float64 range on a path (block row "
            f"{bad}); the fitted model is explosive at this horizon, use another model or dist"
        )
    return prices


def _cumulate(log_returns: np.ndarray) -> np.ndarray:
    """(P, n) log returns -> (P, n + 1) cumulative log price relative to the start (column 0 = 0)."""
    out = np.zeros((log_returns.shape[0], log_returns.shape[1] + 1), dtype=np.float64)
    np.cumsum(log_returns, axis=1, out=out[:, 1:])
    return out


def _simulate_gbm(gen: PreparedGenerator, n_steps: int, dt_s: float, seeds: list) -> np.ndarray:
    """GBM log returns ``(mu - sigma^2/2) dt + sigma sqrt(dt) z``; per path: ``n_steps`` standard normals."""
    p = gen.params
    sigma, mu = float(p["sigma_annual"]), float(p["drift_annual"])
    dt = dt_s / SECONDS_PER_YEAR
    z = np.empty((len(seeds), n_steps))
    for i, s in enumerate(seeds):
        z[i] = np.random.default_rng(s).standard_normal(n_steps)
    return _cumulate((mu - 0.5 * sigma * sigma) * dt + sigma * math.sqrt(dt) * z)


def _simulate_merton(gen: PreparedGenerator, n_steps: int, dt_s: float, seeds: list) -> np.ndarray:
    """Merton (1976) jump-diffusion log returns.

    ``(mu - sigma^2/2 - lambda kappa) dt + sigma sqrt(dt) z + N m + s sqrt(N) z_J`` with
    ``N ~ Poisson(jumps_per_day * dt_s / 86400)``, ``kappa = exp(m + s^2/2) - 1``, ``lambda`` per year.
    Per path, in order: ``n_steps`` normals ``z``, ``n_steps`` Poisson counts ``N``, ``n_steps`` normals ``z_J``.
    """
    p = gen.params
    sigma, mu = float(p["sigma_annual"]), float(p["drift_annual"])
    lam_day, m, s_j = float(p["jumps_per_day"]), float(p["jump_mean"]), float(p["jump_std"])
    dt = dt_s / SECONDS_PER_YEAR
    lam_step = lam_day * dt_s / SECONDS_PER_DAY  # expected jumps per step
    kappa = math.expm1(m + 0.5 * s_j * s_j)
    n_paths = len(seeds)
    z = np.empty((n_paths, n_steps))
    nj = np.empty((n_paths, n_steps))
    zj = np.empty((n_paths, n_steps))
    for i, s in enumerate(seeds):
        rng = np.random.default_rng(s)
        z[i] = rng.standard_normal(n_steps)
        nj[i] = rng.poisson(lam_step, n_steps)
        zj[i] = rng.standard_normal(n_steps)
    drift = (mu - 0.5 * sigma * sigma) * dt - lam_step * kappa
    return _cumulate(drift + sigma * math.sqrt(dt) * z + nj * m + s_j * np.sqrt(nj) * zj)


def _simulate_student_t(gen: PreparedGenerator, n_steps: int, dt_s: float, seeds: list) -> np.ndarray:
    """I.i.d. ``sigma sqrt(dt) sqrt((dof - 2)/dof) t_dof`` log returns; per path: ``n_steps`` t draws."""
    p = gen.params
    sigma, dof = float(p["sigma_annual"]), float(p["dof"])
    dt = dt_s / SECONDS_PER_YEAR
    x = np.empty((len(seeds), n_steps))
    for i, s in enumerate(seeds):
        x[i] = np.random.default_rng(s).standard_t(dof, n_steps)
    return _cumulate(sigma * math.sqrt(dt) * math.sqrt((dof - 2.0) / dof) * x)


def _substeps(gen: PreparedGenerator, dt_s: float) -> int:
    """Bars of the fitted data per run step: ``dt_s / interval`` if it is a whole number >= 1, else an error.

    A GARCH recursion is a model of returns over the bar interval it was fitted on; GARCH is not closed
    under temporal aggregation (Drost and Nijman 1993), so scaling the variance by ``dt_s / 60`` would give a
    different, unfitted model. A whole multiple is simulated exactly (bar by bar, then sampled every k bars);
    anything else is refused.
    """
    interval_s = float(gen.params["interval_s"])  # type: ignore[arg-type]
    ratio = dt_s / interval_s
    k = round(ratio)
    if k < 1 or abs(ratio - k) > _STEP_TOL * max(1.0, ratio):
        raise DeleverInputError(
            f"stress.dt_s: {dt_s:g} s is not a whole multiple of the {interval_s:g} s bars the {gen.kind} model was "
            f"fitted on ({gen.params['source']}); set stress.dt_s to {interval_s:g} or a multiple of it"
        )
    return int(k)


def _first_variance(p: dict[str, object]) -> float:
    """One-step-ahead conditional variance (scaled units) after the last fitted bar.

    ``sigma^2_{T+1}`` from the recursion with the last fitted residual ``eps_T`` and variance ``sigma^2_T``
    (``arch``'s ``res.resid[-1]`` and ``res.conditional_volatility[-1] ** 2``): the simulation starts from
    the last fitted conditional variance and the shock that followed it, as arch's forecasts do.
    """
    eps, s2 = float(p["last_resid"]), float(p["last_variance"])  # type: ignore[arg-type]
    return float(_next_variance(p, np.array([eps]), np.array([s2]), np.array([eps / math.sqrt(s2)]))[0])


def _next_variance(p: dict[str, object], eps: np.ndarray, s2: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Variance recursion of arch's models (scaled units), element-wise over paths.

    * GARCH(1,1): ``s2' = omega + alpha eps^2 + beta s2`` (Bollerslev 1986).
    * GJR-GARCH(1,1,1): ``s2' = omega + (alpha + gamma 1[eps < 0]) eps^2 + beta s2`` (Glosten et al. 1993).
    * EGARCH(1,1,1): ``ln s2' = omega + alpha (|e| - sqrt(2/pi)) + gamma e + beta ln s2`` with
      ``e = eps / sqrt(s2)`` (Nelson 1991, in arch's parameterization, which centers ``|e|`` at the normal
      value sqrt(2/pi) for every dist).
    """
    omega, alpha, gamma, beta = (float(p[k]) for k in ("omega", "alpha", "gamma", "beta"))  # type: ignore[arg-type]
    if p["model"] == "EGARCH":
        return np.exp(omega + alpha * (np.abs(e) - _SQRT_2_OVER_PI) + gamma * e + beta * np.log(s2))
    eps2 = eps * eps
    return omega + (alpha + gamma * (eps < 0.0)) * eps2 + beta * s2


def _draw_innovations(p: dict[str, object], kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` standardized innovations (mean 0, variance 1) from the fitted distribution, one path's rng.

    * ``fhs``: ``n`` indices ``rng.integers(0, T, n)`` into the residual pool (uniform bootstrap).
    * ``normal``: ``rng.standard_normal(n)``.
    * ``t``: ``rng.standard_t(nu, n) * sqrt((nu - 2)/nu)``: arch's ``StudentsT`` (its ppf is
      ``scipy.stats.t(nu, scale=sqrt((nu-2)/nu)).ppf``), sampled directly instead of through the ppf.
    * ``skewt``: Hansen's (1994) skewed t in arch's ``SkewStudent`` parameterization (eta, lambda), sampled
      by its two-piece construction: with probability ``(1 - lambda)/2`` the left piece,
      ``z = ((1 - lambda) w y - a) / b`` with ``y = -|t_eta|``, else ``z = ((1 + lambda) w |t_eta| - a) / b``,
      ``w = sqrt((eta - 2)/eta)``, ``a = 4 lambda c (eta - 2)/(eta - 1)``, ``b^2 = 1 + 3 lambda^2 - a^2``,
      ``c = Gamma((eta+1)/2) / (sqrt(pi (eta - 2)) Gamma(eta/2))``. This is the distribution of arch's
      ``SkewStudent.ppf(U)`` (same formula, the uniform split into side and half-t quantile) at ~10x less
      cost; tests compare it with arch's cdf. Per path: ``n`` uniforms, then ``n`` t draws.
    """
    if kind == "fhs":
        pool = p["residuals"]
        assert isinstance(pool, np.ndarray)
        return pool[rng.integers(0, pool.size, n)]
    dist = p["dist"]
    if dist == "normal":
        return rng.standard_normal(n)
    dp = p["dist_params"]
    assert isinstance(dp, tuple)
    if dist == "t":
        nu = dp[0]
        return rng.standard_t(nu, n) * math.sqrt((nu - 2.0) / nu)
    eta, lam = dp
    u = rng.random(n)
    t_abs = np.abs(rng.standard_t(eta, n))
    c = math.exp(math.lgamma((eta + 1) / 2) - math.lgamma(eta / 2)) / math.sqrt(math.pi * (eta - 2))
    a = 4 * lam * c * (eta - 2) / (eta - 1)
    b = math.sqrt(1 + 3 * lam * lam - a * a)
    w = math.sqrt((eta - 2) / eta)
    signed = np.where(u < (1 - lam) / 2, -(1 - lam) * t_abs, (1 + lam) * t_abs)
    return (signed * w - a) / b


def _simulate_garch(gen: PreparedGenerator, n_steps: int, dt_s: float, seeds: list) -> np.ndarray:
    """Forward simulation of a fitted GARCH-family model (``garch``) or FHS filter (``fhs``).

    Per path, ``n = k n_steps`` standardized innovations ``e`` are drawn first as a row from the path's
    own rng (``k`` bars of the data per run step, :func:`_substeps`), then, vectorized over paths, for each
    bar: ``eps = sigma e``, return ``r = (mu + eps) / scale`` (log return), ``sigma^2`` updated by
    :func:`_next_variance`; the first ``sigma^2`` is :func:`_first_variance`. Log prices are the cumulative
    returns sampled every ``k`` bars. No variance bounds are applied (arch's ``simulate`` applies none
    either); prices that overflow are reported by :func:`generate_paths`.
    """
    p = gen.params
    k = _substeps(gen, dt_s)
    n = k * n_steps
    n_paths = len(seeds)
    e = np.empty((n_paths, n))
    for i, s in enumerate(seeds):
        e[i] = _draw_innovations(p, gen.kind, np.random.default_rng(s), n)
    scale, mu = float(p["scale"]), float(p["mu"])  # type: ignore[arg-type]
    s2 = np.full(n_paths, _first_variance(p))
    r = np.empty((n_paths, n))
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(n):
            et = e[:, t]
            eps = np.sqrt(s2) * et
            r[:, t] = mu + eps
            s2 = _next_variance(p, eps, s2, et)
    cum = _cumulate(r / scale)
    return cum[:, ::k] if k > 1 else cum


def _simulate_crash_shape(gen: PreparedGenerator, n_steps: int, dt_s: float, seeds: list) -> np.ndarray:
    """Per-path crash: ``ln(S_t/S_0) = f x(t) + sigma_n W_t - sigma_n^2 t / 2`` on the run grid.

    * ``x(t)``: the rescaled shape, played back in real time (no stretching: the crash keeps its
      historical speed, which is what liquidation cascades and book resilience respond to) and resampled onto
      ``t_j = j dt_s`` by linear interpolation in time of the log price (``np.interp``). A horizon shorter
      than the window truncates it; a longer one holds the window's last level. The grid's trough equals
      ``f ln(1 - depth_pct/100)`` whenever the trough time is a grid time (``dt_s`` divides the trough's
      offset, e.g. dt_s = 60 on 1-minute bars); otherwise interpolation makes it shallower, never deeper.
    * ``f = min(exp(d z), f_max)``, ``z ~ N(0, 1)``: lognormal(0, d) depth factor (``d = depth_dispersion``),
      capped at ``f_max = ln(0.01) / ln(1 - depth_pct/100)`` so the trough is never below -99 %.
    * Noise: a martingale GBM factor with ``sigma_n = noise_sigma_annual`` (time in years), so it does not
      move ``E[S_t]``; skipped (no draws) when ``sigma_n = 0``.

    Per path, in order: one normal ``z``, then ``n_steps`` normals for the noise (if any).

    Raises:
        DeleverInputError: the horizon ``n_steps dt_s`` ends before the shape's trough (the configured depth
            would never be reached).
    """
    p = gen.params
    t_s, shape = p["t_s"], p["log_shape"]
    assert isinstance(t_s, np.ndarray) and isinstance(shape, np.ndarray)
    horizon = n_steps * dt_s
    trough_t = float(p["trough_t_s"])  # type: ignore[arg-type]
    if trough_t > horizon * (1 + _STEP_TOL):
        raise DeleverInputError(
            f"stress.horizon_s: {horizon:g} s ends before the crash trough at +{trough_t:g} s of {p['source']}; "
            f"raise stress.horizon_s or move {_FIELD}.start closer to the trough"
        )
    grid = np.arange(n_steps + 1, dtype=np.float64) * dt_s
    base = np.interp(grid, t_s, shape)
    base[0] = 0.0
    disp, cap = float(p["depth_dispersion"]), float(p["factor_cap"])  # type: ignore[arg-type]
    sig_n = float(p["noise_sigma_annual"])  # type: ignore[arg-type]
    n_paths = len(seeds)
    zf = np.empty(n_paths)
    zn = np.empty((n_paths, n_steps)) if sig_n > 0 else None
    for i, s in enumerate(seeds):
        rng = np.random.default_rng(s)
        zf[i] = rng.standard_normal()
        if zn is not None:
            zn[i] = rng.standard_normal(n_steps)
    f = np.minimum(np.exp(disp * zf), cap)
    out = f[:, None] * base[None, :]
    if zn is not None:
        dt = dt_s / SECONDS_PER_YEAR
        out += _cumulate(sig_n * math.sqrt(dt) * zn - 0.5 * sig_n * sig_n * dt)
    return out
