"""Monte Carlo path generators: block invariance, moments, real-data GARCH/FHS fits, crash shapes, bad input."""

from __future__ import annotations

import math
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from delever import pathgen
from delever.data.klines import KLINE_COLUMNS, read_klines
from delever.errors import DeleverInputError
from delever.pathgen import PreparedGenerator, generate_paths, path_seeds, prepare_generator
from delever.scenario import (
    CrashShapePaths,
    FilteredHistoricalPaths,
    GarchPaths,
    GbmPaths,
    MertonPaths,
    StressSection,
    StudentTPaths,
)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
W2025 = "binance-um-btcusdt-1m-crash-windows/BTCUSDT-1m-2025-10-10-window.csv"
W2021 = "binance-um-btcusdt-1m-crash-windows/BTCUSDT-1m-2021-05-19-window.csv"
W2020 = "binance-um-btcusdt-1m-crash-windows/BTCUSDT-1m-2020-03-13-window.csv"
YEAR = 365 * 24 * 3600.0


def need_data() -> Path:
    if not (DATA / W2025).exists():
        pytest.skip("real data not available")
    return DATA


_CACHE: dict[str, PreparedGenerator] = {}


def prepared(cfg) -> PreparedGenerator:
    """Fits are deterministic: prepare each config once per test session."""
    key = cfg.model_dump_json()
    if key not in _CACHE:
        _CACHE[key] = prepare_generator(cfg, need_data() if hasattr(cfg, "path") else Path("."))
    return _CACHE[key]


def all_generators() -> list[PreparedGenerator]:
    gens = [prepared(GbmPaths()), prepared(MertonPaths()), prepared(StudentTPaths())]
    if (DATA / W2025).exists():
        gens += [
            prepared(GarchPaths()),  # GJR-GARCH / t
            prepared(GarchPaths(model="GARCH", dist="skewt")),
            prepared(GarchPaths(model="EGARCH", dist="normal")),
            prepared(FilteredHistoricalPaths()),
            prepared(CrashShapePaths(noise_sigma_annual=0.5)),
        ]
    return gens


def kline_row(t_ms: int, price: float) -> str:
    return f"{t_ms},{price},{price + 1},{price - 1},{price},1.0,{t_ms + 59_999},{price},1,0.5,{price / 2},0"


def write_klines(tmp_path: Path, prices: list[float], name: str = "k.csv") -> Path:
    t0 = 1_700_000_040_000 - 1_700_000_040_000 % 60_000
    lines = [",".join(KLINE_COLUMNS)] + [kline_row(t0 + i * 60_000, p) for i, p in enumerate(prices)]
    f = tmp_path / name
    f.write_text("\n".join(lines) + "\n")
    return f


# --------------------------------------------------------------------------- seeds, blocks, determinism
def test_path_seeds_are_spawned_children():
    s = path_seeds(42, 5)
    assert len(s) == 5
    assert [c.spawn_key for c in s] == [(i,) for i in range(5)]
    assert all(c.entropy == 42 for c in s)
    with pytest.raises(DeleverInputError, match="seed"):
        path_seeds(-1, 3)


@pytest.mark.parametrize("idx", range(8))
def test_block_invariance_determinism_column0_positivity(idx):
    gens = all_generators()
    if idx >= len(gens):
        pytest.skip("real data not available")
    g = gens[idx]
    seeds = path_seeds(7, 37)
    full = generate_paths(g, 50_000.0, 60, 60.0, seeds)
    assert full.dtype == np.float64 and full.shape == (37, 61)
    assert np.all(full[:, 0] == 50_000.0)
    assert np.all(np.isfinite(full)) and np.all(full > 0)
    # any split into blocks gives the same rows, bit for bit
    for a, b in [(0, 1), (5, 18), (18, 37), (3, 4), (11, 36)]:
        np.testing.assert_array_equal(generate_paths(g, 50_000.0, 60, 60.0, seeds[a:b]), full[a:b])
    np.testing.assert_array_equal(generate_paths(g, 50_000.0, 60, 60.0, path_seeds(7, 37)), full)
    other = generate_paths(g, 50_000.0, 60, 60.0, path_seeds(8, 37))
    assert not np.array_equal(other, full)
    # paths differ from each other (except the deterministic crash shape without noise, not used here)
    assert len({row.tobytes() for row in full}) == 37


def test_prepared_generator_pickles_and_empty_block():
    for g in all_generators():
        g2 = pickle.loads(pickle.dumps(g))
        assert (g2.kind, g2.label) == (g.kind, g.label)
        seeds = path_seeds(1, 4)
        a = generate_paths(g2, 10.0, 60, 60.0, seeds)
        np.testing.assert_array_equal(a, generate_paths(g, 10.0, 60, 60.0, seeds))
        assert generate_paths(g, 10.0, 60, 60.0, []).shape == (0, 61)


# --------------------------------------------------------------------------- moments
def test_gbm_log_return_moments_and_mean_price():
    sigma, mu, dt_s = 0.8, 0.5, 3600.0
    g = prepare_generator(GbmPaths(sigma_annual=sigma, drift_annual=mu), Path("."))
    n_paths, n_steps = 4000, 50
    p = generate_paths(g, 100.0, n_steps, dt_s, path_seeds(3, n_paths))
    r = np.diff(np.log(p), axis=1).ravel()
    dt = dt_s / YEAR
    n = r.size
    m_exp, v_exp = (mu - sigma**2 / 2) * dt, sigma**2 * dt
    assert abs(r.mean() - m_exp) < 4 * math.sqrt(v_exp / n)
    assert abs(r.var() - v_exp) < 4 * v_exp * math.sqrt(2 / n)
    # E[S_T] = S_0 exp(mu T)
    st = p[:, -1] / 100.0
    assert abs(st.mean() - math.exp(mu * n_steps * dt)) < 4 * st.std() / math.sqrt(n_paths)


def test_student_t_variance_and_fat_tails():
    sigma, dof, dt_s = 0.6, 5.0, 60.0
    g = prepare_generator(StudentTPaths(sigma_annual=sigma, dof=dof), Path("."))
    p = generate_paths(g, 100.0, 60, dt_s, path_seeds(4, 2000))
    r = np.diff(np.log(p), axis=1).ravel()
    v_exp = sigma**2 * dt_s / YEAR
    assert abs(r.var() / v_exp - 1) < 0.05  # t(5) has kurtosis 9: the sample variance is within ~2 %
    assert stats.kurtosis(r, fisher=False) > 5.0  # theory 3 + 6/(dof - 4) = 9; a normal gives 3
    gn = prepare_generator(GbmPaths(sigma_annual=sigma), Path("."))
    rn = np.diff(np.log(generate_paths(gn, 100.0, 60, dt_s, path_seeds(4, 2000))), axis=1).ravel()
    assert abs(stats.kurtosis(rn, fisher=False) - 3.0) < 0.2


def test_merton_jump_count_and_compensated_drift():
    # Tiny diffusion and fixed jump size: each jump is a visible -5 % log step.
    cfg = MertonPaths(sigma_annual=0.01, drift_annual=0.0, jumps_per_day=24.0, jump_mean=-0.05, jump_std=0.0)
    g = prepare_generator(cfg, Path("."))
    n_paths, n_steps, dt_s = 3000, 60, 600.0
    p = generate_paths(g, 100.0, n_steps, dt_s, path_seeds(5, n_paths))
    r = np.diff(np.log(p), axis=1)
    counts = np.rint(-r / 0.05).astype(int)  # jumps in each step
    lam_step = 24.0 * dt_s / 86400.0
    total = counts.sum()
    expected = lam_step * counts.size
    assert abs(total - expected) < 4 * math.sqrt(expected)
    assert abs(counts.var() / lam_step - 1) < 0.1  # Poisson: variance = mean
    # drift compensation (Merton 1976): E[S_T] = S_0 despite a mean log jump of -5 %
    st = p[:, -1] / 100.0
    se = st.std() / math.sqrt(n_paths)
    assert abs(st.mean() - 1.0) < 4 * se
    uncompensated = math.exp(lam_step * n_steps * math.expm1(-0.05))  # what E[S_T] would be without it
    assert abs(uncompensated - 1.0) > 20 * se


# --------------------------------------------------------------------------- GARCH on real data
def _arch_fit(path: str, vol: str, o: int, dist: str):
    from arch import arch_model

    k = read_klines(need_data() / path)
    r = np.diff(np.log(np.concatenate([[k.open[0]], k.close]))) * 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return r, arch_model(r, mean="Zero", vol=vol, p=1, o=o, q=1, dist=dist, rescale=False).fit(disp="off")


def test_garch_fit_2025_10_10_default_model():
    g = prepared(GarchPaths())
    p = g.params
    assert p["model"] == "GJR-GARCH" and p["dist"] == "t" and p["scale"] == 100.0
    assert p["n_returns"] == 130 and p["interval_s"] == 60.0
    for k in ("omega", "alpha", "gamma", "beta", "last_variance"):
        assert math.isfinite(p[k]) and p[k] >= 0
    assert p["omega"] > 0 and 2.05 < p["dist_params"][0] < 10
    # this window's fit sits on arch's stationarity bound (IGARCH); it must not exceed it
    assert 0.99 < p["persistence"] <= 1 + 1e-9 and p["integrated"]
    assert "GJR-GARCH(1,1)/t" in g.label and "integrated" in g.label
    # the simulation starts from arch's own one-step-ahead forecast
    _, res = _arch_fit(W2025, "GARCH", 1, "t")
    assert math.isclose(
        pathgen._first_variance(p), float(res.forecast(horizon=1).variance.iloc[-1, 0]), rel_tol=1e-6
    )


def test_garch_fit_2021_05_19_and_2020_stationary():
    g = prepared(GarchPaths(path=W2021))
    p = g.params
    assert p["n_returns"] == 134
    assert all(math.isfinite(p[k]) for k in ("omega", "alpha", "gamma", "beta", "persistence"))
    assert p["persistence"] <= 1 + 1e-9
    # the longer 2020-03-13 window (285 returns) gives a strictly stationary fit
    g3 = prepared(GarchPaths(path=W2020))
    assert g3.params["persistence"] < 0.99 and not g3.params["integrated"]
    assert "integrated" not in g3.label


@pytest.mark.parametrize(("model", "vol", "o"), [("GARCH", "GARCH", 0), ("EGARCH", "EGARCH", 1)])
def test_first_variance_matches_arch_forecast(model, vol, o):
    g = prepared(GarchPaths(path=W2020, model=model, dist="normal"))
    _, res = _arch_fit(W2020, vol, o, "normal")
    assert math.isclose(
        pathgen._first_variance(g.params), float(res.forecast(horizon=1).variance.iloc[-1, 0]), rel_tol=1e-6
    )


def test_garch_simulation_matches_scalar_reference():
    """Vectorized recursion == a per-path scalar loop of the GJR-GARCH equations, same innovations."""
    g = prepared(GarchPaths())
    p = g.params
    seeds = path_seeds(11, 3)
    got = generate_paths(g, 1000.0, 8, 60.0, seeds)
    nu = p["dist_params"][0]
    for i, s in enumerate(seeds):
        e = np.random.default_rng(s).standard_t(nu, 8) * math.sqrt((nu - 2) / nu)
        eps, s2 = p["last_resid"], p["last_variance"]
        logp, row = 0.0, [1000.0]
        for t in range(8):
            s2 = p["omega"] + (p["alpha"] + p["gamma"] * (eps < 0)) * eps * eps + p["beta"] * s2
            eps = math.sqrt(s2) * e[t]
            logp += eps / 100.0
            row.append(1000.0 * math.exp(logp))
        np.testing.assert_allclose(got[i], row, rtol=1e-12)


def test_garch_first_step_variance_by_monte_carlo():
    g = prepared(GarchPaths(dist="skewt"))
    p = generate_paths(g, 1.0, 1, 60.0, path_seeds(12, 20_000))
    r = np.log(p[:, 1])
    v = pathgen._first_variance(g.params) / 100.0**2
    assert abs(r.var() / v - 1) < 0.1


@pytest.mark.parametrize(("dist", "params"), [("t", (3.7,)), ("skewt", (3.9, -0.2)), ("skewt", (8.0, 0.4))])
def test_innovation_samplers_match_arch_distributions(dist, params):
    from arch.univariate import SkewStudent, StudentsT

    rng = np.random.default_rng(0)
    z = pathgen._draw_innovations({"dist": dist, "dist_params": params}, "garch", rng, 20_000)
    d = StudentsT() if dist == "t" else SkewStudent()
    assert stats.kstest(z, lambda x: d.cdf(x, list(params))).pvalue > 1e-3
    if dist == "skewt":  # the test can tell a wrong skew apart
        wrong = [params[0], -params[1]]
        assert stats.kstest(z, lambda x: d.cdf(x, wrong)).pvalue < 1e-3


def test_garch_dt_multiple_is_exact_aggregation_and_other_dt_rejected():
    g = prepared(GarchPaths())
    seeds = path_seeds(9, 6)
    fine = generate_paths(g, 100.0, 60, 60.0, seeds)
    coarse = generate_paths(g, 100.0, 30, 120.0, seeds)
    np.testing.assert_array_equal(coarse, fine[:, ::2])
    for bad_dt in (30.0, 90.0, 1.0):
        with pytest.raises(DeleverInputError, match=r"stress.dt_s: .* whole multiple of the 60 s bars"):
            generate_paths(g, 100.0, 10, bad_dt, seeds)


def test_fhs_residual_pool_2025_10_10():
    g = prepared(FilteredHistoricalPaths())
    z = g.params["residuals"]
    assert isinstance(z, np.ndarray) and z.dtype == np.float64 and z.shape == (130,)
    assert g.params["dist"] == "normal"  # QML filter
    _, res = _arch_fit(W2025, "GARCH", 1, "normal")
    np.testing.assert_allclose(z, np.asarray(res.std_resid), rtol=1e-6)
    # the bootstrapped innovations are pool values: first step's standardized return is in the pool
    paths = generate_paths(g, 1.0, 1, 60.0, path_seeds(2, 50))
    e1 = np.log(paths[:, 1]) * 100.0 / math.sqrt(pathgen._first_variance(g.params))
    assert np.all(np.min(np.abs(e1[:, None] - z[None, :]), axis=1) < 1e-9)


def test_fhs_pool_size_equals_returns_2021():
    g = prepared(FilteredHistoricalPaths(path=W2021, model="GARCH"))
    assert g.params["residuals"].shape == (g.params["n_returns"],) == (134,)


# --------------------------------------------------------------------------- crash shape
def test_crash_shape_trough_equals_depth_without_dispersion():
    g = prepared(CrashShapePaths(depth_pct=20.0, depth_dispersion=0.0))
    p = generate_paths(g, 1000.0, 60, 60.0, path_seeds(1, 5))
    np.testing.assert_allclose(p.min(axis=1), 800.0, rtol=1e-12)
    assert np.all(p == p[0])  # no randomness left: every path is the rescaled shape
    # shape == rescaled observed closes at the bar closes (real-time playback, dt = bar interval)
    k = read_klines(need_data() / W2025)
    x = np.log(np.concatenate([[k.open[0]], k.close]) / k.open[0])
    c = math.log(0.8) / x.min()
    np.testing.assert_allclose(np.log(p[0] / 1000.0), c * x[:61], rtol=1e-9, atol=1e-15)
    assert "rescaled to -20 %" in g.label


def test_crash_shape_grid_interpolation_hold_and_cap():
    g = prepared(CrashShapePaths(depth_pct=20.0, depth_dispersion=0.0))
    shape = g.params["log_shape"]
    # finer grid: linear interpolation of the log price between bar closes; trough still on the grid
    p30 = generate_paths(g, 1.0, 120, 30.0, path_seeds(1, 1))[0]
    np.testing.assert_allclose(np.log(p30[::2]), shape[:61], atol=1e-15)
    np.testing.assert_allclose(np.log(p30[1::2]), (shape[:60] + shape[1:61]) / 2, atol=1e-15)
    # a grid that misses the trough time is shallower, never deeper
    p45 = generate_paths(g, 1.0, 100, 45.0, path_seeds(1, 1))[0]
    assert p45.min() > 0.8
    # longer horizon than the window: the last level is held
    long = generate_paths(g, 1.0, 200, 60.0, path_seeds(1, 1))[0]
    assert np.all(long[131:] == long[130]) and math.isclose(math.log(long[130]), shape[-1], abs_tol=1e-15)
    # wide dispersion: depth factors capped so the trough is never below -99 %
    gw = prepared(CrashShapePaths(depth_pct=90.0, depth_dispersion=3.0))
    troughs = generate_paths(gw, 1.0, 60, 60.0, path_seeds(2, 400)).min(axis=1)
    assert np.all(troughs >= 0.01 * (1 - 1e-12))
    assert np.sum(np.isclose(troughs, 0.01, rtol=1e-9)) > 50  # P(f > cap = 2) = P(z > 0.23) ~ 41 %
    assert np.ptp(troughs) > 0.5


def test_crash_shape_errors():
    d = need_data()
    g = prepared(CrashShapePaths(path=W2021))  # trough at +4080 s
    with pytest.raises(
        DeleverInputError, match=r"stress.horizon_s: 3600 s ends before the crash trough at \+4080 s"
    ):
        generate_paths(g, 100.0, 60, 60.0, path_seeds(0, 2))
    assert generate_paths(g, 100.0, 70, 60.0, path_seeds(0, 2)).shape == (2, 71)
    g2 = prepare_generator(CrashShapePaths(path=W2021, start="2021-05-19 12:30"), d)
    assert g2.params["trough_t_s"] == 4080 - 28 * 60
    with pytest.raises(DeleverInputError, match=r"stress.generator.start/end: .*before the first bar"):
        prepare_generator(CrashShapePaths(path=W2021, start="2021-05-19 11:00"), d)
    with pytest.raises(DeleverInputError, match=r"stress.generator.start: expected a UTC time"):
        prepare_generator(CrashShapePaths(path=W2021, start="noon"), d)
    # a window that only rises has no crash to rescale (2025-10-10 bounce after the 21:20 low)
    with pytest.raises(DeleverInputError, match="no close below the window's first open"):
        prepare_generator(CrashShapePaths(start="2025-10-10 21:20", end="2025-10-10 21:23"), d)


# --------------------------------------------------------------------------- bad input
def test_missing_file_names_field(tmp_path):
    for cfg in (
        GarchPaths(path="nope.csv"),
        FilteredHistoricalPaths(path="nope.csv"),
        CrashShapePaths(path="nope.csv"),
    ):
        with pytest.raises(
            DeleverInputError, match=r"^stress.generator.path: data file not found: .*nope.csv"
        ):
            prepare_generator(cfg, tmp_path)
    with pytest.raises(DeleverInputError, match=r"stress.generator.extra_paths: data file not found"):
        prepare_generator(
            GarchPaths(path=str(write_klines(tmp_path, [100.0] * 5)), extra_paths=["x.csv"]), tmp_path
        )


def test_too_few_returns_to_fit(tmp_path):
    f = write_klines(tmp_path, [100.0 + (i % 3) for i in range(30)])
    for cfg in (GarchPaths(path=str(f)), FilteredHistoricalPaths(path="k.csv")):
        with pytest.raises(
            DeleverInputError, match=r"k.csv: 30 returns, expected at least 50 to fit GJR-GARCH"
        ):
            prepare_generator(cfg, tmp_path)
    write_klines(tmp_path, [100.0] * 80, name="flat.csv")
    with pytest.raises(DeleverInputError, match="returns have no variation"):
        prepare_generator(GarchPaths(path="flat.csv"), tmp_path)


def test_extra_paths_are_joined(tmp_path):
    rng = np.random.default_rng(0)
    prices = list(100.0 * np.exp(np.cumsum(rng.standard_normal(160) * 0.002)))
    t0 = 1_700_000_040_000 - 1_700_000_040_000 % 60_000
    head = ",".join(KLINE_COLUMNS)
    for name, part in (("a.csv", range(0, 80)), ("b.csv", range(80, 160))):
        rows = [kline_row(t0 + i * 60_000, round(prices[i], 2)) for i in part]
        (tmp_path / name).write_text("\n".join([head, *rows]) + "\n")
    g = prepare_generator(
        GarchPaths(path="b.csv", extra_paths=["a.csv"], model="GARCH", dist="normal"), tmp_path
    )
    assert g.params["n_returns"] == 160 and "b.csv, a.csv" in g.label


def test_non_convergence_and_degenerate_fit_are_input_errors(monkeypatch):
    d = need_data()
    # a fit stopped by the iteration cap (SLSQP flag 9) is refused, naming model and file
    monkeypatch.setattr(pathgen, "_FIT_MAXITER", 2)
    with pytest.raises(
        DeleverInputError, match=r"GJR-GARCH/t fit to BTCUSDT-1m-2025-10-10-window.csv did not converge"
    ):
        prepare_generator(GarchPaths(), d)
    monkeypatch.undo()
    # EGARCH/t on the 2025 window converges onto nu = 2.05 (arch's bound): refused as degenerate
    with pytest.raises(
        DeleverInputError, match=r"EGARCH/t fit to BTCUSDT-1m-2025-10-10-window.csv is degenerate"
    ):
        prepare_generator(GarchPaths(model="EGARCH", dist="t"), d)


def test_generate_paths_argument_errors():
    g = prepared(GbmPaths())
    s = path_seeds(0, 2)
    with pytest.raises(DeleverInputError, match="market.start_price"):
        generate_paths(g, 0.0, 10, 60.0, s)
    with pytest.raises(DeleverInputError, match="market.start_price"):
        generate_paths(g, float("nan"), 10, 60.0, s)
    with pytest.raises(DeleverInputError, match="n_steps"):
        generate_paths(g, 1.0, 0, 60.0, s)
    with pytest.raises(DeleverInputError, match="stress.dt_s"):
        generate_paths(g, 1.0, 10, -1.0, s)
    with pytest.raises(DeleverInputError, match="unknown generator kind 'bogus'"):
        generate_paths(PreparedGenerator("bogus", "", {}), 1.0, 10, 60.0, s)


def test_default_stress_section_generates():
    st = StressSection()
    g = prepare_generator(st.generator, Path("."))
    n = int(round(st.horizon_s / st.dt_s))
    p = generate_paths(g, 60_000.0, n, st.dt_s, path_seeds(0, 8))
    assert p.shape == (8, n + 1)
