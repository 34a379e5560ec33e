"""Correlated Monte Carlo drivers: dependence recovered, tail dependence, seeding, blocks, real 13-coin fit."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from delever.errors import DeleverInputError
from delever.multipath import minute_log_returns_multi, oct10_2025_paths
from delever.pathgen_multi import (
    SECONDS_PER_YEAR,
    common_factor_crash,
    estimate_betas,
    fit_dependence,
    generate_correlated,
    t_copula_tail_dependence,
)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

CORR3 = np.array([[1.0, 0.6, 0.3], [0.6, 1.0, 0.5], [0.3, 0.5, 1.0]])
S0 = np.array([100.0, 2.5, 0.2])
SIG = np.array([0.8, 1.2, 2.0])


def _seeds(seed: int, n: int) -> list[np.random.SeedSequence]:
    return np.random.SeedSequence(seed).spawn(n)


def _returns(prices: np.ndarray) -> np.ndarray:
    """(P, T, I) prices -> (P (T-1), I) pooled log returns."""
    r = np.diff(np.log(prices), axis=1)
    return r.reshape(-1, prices.shape[2])


def _tail_dependence(r: np.ndarray, q: float) -> float:
    """Empirical P(U2 < q | U1 < q) of the first two columns' ranks."""
    u = stats.rankdata(r[:, :2], axis=0) / (r.shape[0] + 1)
    low1 = u[:, 0] < q
    return float(np.mean(u[low1, 1] < q))


@pytest.mark.parametrize("kind", ["gaussian", "t_copula"])
def test_sample_dependence_recovers_input_correlation(kind):
    prices = generate_correlated(kind, S0, SIG, CORR3, 200, 60.0, _seeds(7, 100), dof=4.0)
    r = _returns(prices)
    n = r.shape[0]
    iu = np.triu_indices(3, 1)
    if kind == "gaussian":
        got = np.corrcoef(r.T)[iu]
        se = (1 - CORR3[iu] ** 2) / math.sqrt(n)  # large-sample s.e. of Pearson's r
    else:
        # Pearson r of a meta-t is not rho; Kendall's tau of every elliptical copula is (2/pi) arcsin(rho).
        tau = np.array([stats.kendalltau(r[:, i], r[:, j]).statistic for i, j in zip(*iu, strict=True)])
        got = np.sin(0.5 * math.pi * tau)
        se = 2.0 * (1 - CORR3[iu] ** 2) / math.sqrt(n)  # tau-based estimates are a little noisier
    assert np.all(np.abs(got - CORR3[iu]) < 5 * se), (got, CORR3[iu], se)


def test_marginal_volatility_and_drift():
    dt_s = 60.0
    prices = generate_correlated("gaussian", S0, SIG, CORR3, 300, dt_s, _seeds(3, 100))
    r = _returns(prices)
    sd = r.std(axis=0) / math.sqrt(dt_s / SECONDS_PER_YEAR)
    n = r.shape[0]
    assert np.all(np.abs(sd / SIG - 1) < 5 / math.sqrt(2 * n))
    mean = r.mean(axis=0)
    want = -0.5 * SIG**2 * dt_s / SECONDS_PER_YEAR
    assert np.all(np.abs(mean - want) < 5 * SIG * math.sqrt(dt_s / SECONDS_PER_YEAR) / math.sqrt(n))


def test_t_copula_tail_dependence_exceeds_gaussian():
    corr = np.array([[1.0, 0.5], [0.5, 1.0]])
    args = (np.array([1.0, 1.0]), np.array([1.0, 1.0]), corr, 1000, 60.0)
    g = _returns(generate_correlated("gaussian", *args, _seeds(11, 100)))
    t = _returns(generate_correlated("t_copula", *args, _seeds(11, 100), dof=3.0))
    q = 0.005  # 500 tail points of 100,000: s.e. of each estimate about 0.02
    lam_g, lam_t = _tail_dependence(g, q), _tail_dependence(t, q)
    assert lam_t > lam_g + 0.1, (lam_t, lam_g)
    # The t copula's empirical tail dependence is near its limit (0.31 for rho 0.5, nu 3); the Gaussian's
    # tends to 0 as q -> 0 (about 0.09 at q = 0.005).
    assert abs(lam_t - t_copula_tail_dependence(0.5, 3.0)) < 0.08
    assert lam_g < 0.2


def test_tail_dependence_formula():
    # Demarta-McNeil 2005 table 1: rho 0.5, nu 4 -> 0.25; nu 2 -> 0.39; rho 0 nu 4 -> 0.08.
    assert t_copula_tail_dependence(0.5, 4.0) == pytest.approx(0.25, abs=0.005)
    assert t_copula_tail_dependence(0.5, 2.0) == pytest.approx(0.39, abs=0.005)
    assert t_copula_tail_dependence(0.0, 4.0) == pytest.approx(0.08, abs=0.005)
    assert t_copula_tail_dependence(1.0, 4.0) == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["gaussian", "t_copula"])
def test_same_seed_same_paths_and_block_invariance(kind):
    full = generate_correlated(kind, S0, SIG, CORR3, 50, 60.0, _seeds(5, 12), dof=5.0)
    again = generate_correlated(kind, S0, SIG, CORR3, 50, 60.0, _seeds(5, 12), dof=5.0)
    assert np.array_equal(full, again)
    seeds = _seeds(5, 12)
    blocks = [generate_correlated(kind, S0, SIG, CORR3, 50, 60.0, seeds[a:b], dof=5.0) for a, b in
              ((0, 1), (1, 7), (7, 12))]
    assert np.array_equal(np.concatenate(blocks), full)
    # A block's children built directly (as the stress runner does) give the same paths.
    direct = [np.random.SeedSequence(5, spawn_key=(i,)) for i in range(7, 12)]
    assert np.array_equal(generate_correlated(kind, S0, SIG, CORR3, 50, 60.0, direct, dof=5.0), full[7:12])
    other = generate_correlated(kind, S0, SIG, CORR3, 50, 60.0, _seeds(6, 12), dof=5.0)
    assert not np.array_equal(other, full)


def test_generator_rng_spawns_per_path():
    a = generate_correlated("gaussian", S0, SIG, CORR3, 20, 60.0, np.random.default_rng(1), n_paths=4)
    b = generate_correlated("gaussian", S0, SIG, CORR3, 20, 60.0, np.random.default_rng(1), n_paths=4)
    assert a.shape == (4, 21, 3) and np.array_equal(a, b)
    assert np.array_equal(a[:, 0, :], np.broadcast_to(S0, (4, 3)))


@settings(max_examples=25, deadline=None)
@given(
    sig=st.lists(st.floats(0.0, 20.0), min_size=2, max_size=2),
    rho=st.floats(-0.95, 0.95),
    kind=st.sampled_from(["gaussian", "t_copula"]),
    dof=st.floats(2.1, 50.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_prices_positive_and_finite(sig, rho, kind, dof, seed):
    corr = np.array([[1.0, rho], [rho, 1.0]])
    p = generate_correlated(kind, np.array([50_000.0, 0.05]), np.array(sig), corr, 120, 60.0, _seeds(seed, 3),
                            dof=dof, marginal_dof=3.0 if kind == "t_copula" else None)
    assert p.dtype == np.float64 and np.all(np.isfinite(p)) and np.all(p > 0)


def test_bad_inputs_are_refused():
    with pytest.raises(DeleverInputError, match="positive definite"):
        generate_correlated("gaussian", S0, SIG, np.array([[1, 0.9, 0.9], [0.9, 1, -0.9], [0.9, -0.9, 1]]), 5, 60.0,
                            _seeds(0, 1))
    with pytest.raises(DeleverInputError, match="dof"):
        generate_correlated("t_copula", S0, SIG, CORR3, 5, 60.0, _seeds(0, 1))
    with pytest.raises(DeleverInputError, match="kind"):
        generate_correlated("clayton", S0, SIG, CORR3, 5, 60.0, _seeds(0, 1))
    with pytest.raises(DeleverInputError, match="start_prices"):
        generate_correlated("gaussian", np.array([1.0, -1.0, 1.0]), SIG, CORR3, 5, 60.0, _seeds(0, 1))
    with pytest.raises(DeleverInputError, match="n_paths"):
        generate_correlated("gaussian", S0, SIG, CORR3, 5, 60.0, np.random.default_rng(0))
    with pytest.raises(DeleverInputError, match="column 1"):
        fit_dependence(np.column_stack([np.arange(5.0), np.ones(5)]))
    with pytest.raises(DeleverInputError, match="finite"):
        fit_dependence(np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 0.0]]))


# --------------------------------------------------------------------------- fitting
def test_fit_recovers_correlation_volatility_and_t_dof():
    n = 4000
    prices = generate_correlated("t_copula", S0, SIG, CORR3, n, 60.0, _seeds(21, 1), dof=4.0)
    r = _returns(prices)
    for method in ("ledoit_wolf", "oas"):
        fit = fit_dependence(r, method=method, interval_s=60.0, instruments=["A", "B", "C"])
        assert fit.instruments == ("A", "B", "C") and fit.n_obs == n
        assert 0.0 <= fit.shrinkage < 0.05  # 4000 returns of 3 instruments hardly need shrinking
        assert np.all(np.abs(fit.t_copula_correlation - CORR3) < 0.06)
        assert np.all(np.abs(fit.sigma_annual / SIG - 1) < 0.06)
        assert np.all(np.linalg.eigvalsh(fit.correlation) > 0)
        assert np.allclose(fit.covariance, fit.correlation * np.outer(fit.sigma_step, fit.sigma_step))
        assert 2.5 < fit.t_copula_dof < 7.0 and not fit.t_copula_dof_at_bound
        assert fit.t_copula_loglik > fit.gaussian_copula_loglik


def test_fit_on_gaussian_data_prefers_large_dof():
    prices = generate_correlated("gaussian", S0, SIG, CORR3, 4000, 60.0, _seeds(22, 1))
    fit = fit_dependence(_returns(prices))
    assert fit.t_copula_dof > 15.0


def test_shrinkage_pulls_toward_identity_in_small_samples():
    rng = np.random.default_rng(0)
    r = rng.standard_normal((15, 10)) @ np.linalg.cholesky(np.full((10, 10), 0.3) + 0.7 * np.eye(10)).T
    fit = fit_dependence(r)
    assert fit.shrinkage > 0
    off = ~np.eye(10, dtype=bool)
    assert np.all(np.abs(fit.correlation[off]) <= np.abs(fit.sample_correlation[off]) + 1e-12)
    assert np.allclose(fit.correlation[off], (1 - fit.shrinkage) * fit.sample_correlation[off])


# --------------------------------------------------------------------------- common-factor crash
def _shape(t: int = 121) -> np.ndarray:
    k = np.arange(t)
    return np.where(k < 50, -0.003 * k, -0.15 + 0.001 * (k - 50))  # fall to -0.15 then partial recovery


def test_common_factor_crash_depth_and_betas():
    shape = _shape()
    betas = np.array([1.0, 2.0, 0.5])
    p = common_factor_crash(shape, betas, np.zeros(3), 20.0, 0.0, _seeds(1, 3), start_prices=S0)
    log_rel = np.log(p / S0)
    target = math.log(0.8)
    assert np.allclose(log_rel.min(axis=1), betas * target)
    assert np.allclose(p[:, 0, :], S0)
    # With noise, regressing the generated returns on the factor's recovers the betas.
    idio = np.array([0.0, 0.004, 0.01])
    p = common_factor_crash(shape, betas, idio, None, 0.0, _seeds(2, 200), start_prices=S0)
    r = _returns(p)
    fit = estimate_betas(r, factor=0)
    assert np.all(np.abs(fit.beta - betas) < 5 * fit.beta_stderr + 1e-12)
    assert np.all(np.abs(fit.idio_sigma_step[1:] / idio[1:] - 1) < 0.05)


def test_common_factor_crash_seeds_blocks_and_dispersion():
    shape, betas, idio = _shape(), np.array([1.0, 3.0]), np.array([0.0, 0.02])
    s0 = np.array([1.0, 1.0])
    full = common_factor_crash(shape, betas, idio, 15.0, 0.3, _seeds(9, 10), start_prices=s0)
    parts = [common_factor_crash(shape, betas, idio, 15.0, 0.3, _seeds(9, 10)[a:b], start_prices=s0)
             for a, b in ((0, 4), (4, 10))]
    assert np.array_equal(np.concatenate(parts), full)
    troughs = np.log(full[:, :, 0]).min(axis=1)
    assert np.std(troughs) > 0  # the depth factor varies per path
    assert np.all(troughs >= math.log(0.01) - 1e-12)  # capped at -99 %
    g = common_factor_crash(shape, betas, idio, 15.0, 0.3, np.random.default_rng(4), n_paths=3, start_prices=s0)
    assert g.shape == (3, shape.size, 2) and np.all(np.isfinite(g)) and np.all(g > 0)


def test_common_factor_crash_bad_shape():
    with pytest.raises(DeleverInputError, match="no crash"):
        common_factor_crash(np.array([0.0, 0.1]), np.ones(1), np.zeros(1), 10.0, 0.0, _seeds(0, 1),
                            start_prices=np.ones(1))
    with pytest.raises(DeleverInputError, match=r"shape\[0\]"):
        common_factor_crash(np.array([0.1, -0.1]), np.ones(1), np.zeros(1), 10.0, 0.0, _seeds(0, 1),
                            start_prices=np.ones(1))


# --------------------------------------------------------------------------- real 13-coin window
def test_real_13_coin_fit_is_positive_definite():
    paths = oct10_2025_paths(DATA)
    if not all(p.exists() for p in paths.values()):
        pytest.skip("real data not available")
    r = minute_log_returns_multi(paths)
    assert r.log_return.shape == (112, 13)  # 120 returns less the 8 touching ETH's and ENA's empty minutes
    fit = fit_dependence(r.log_return, instruments=r.instruments)
    assert np.linalg.eigvalsh(fit.correlation).min() > 0
    assert np.linalg.eigvalsh(fit.t_copula_correlation).min() > 0
    assert np.linalg.eigvalsh(fit.covariance).min() > 0
    b = estimate_betas(r.log_return, factor=r.instruments.index("BTC"), instruments=r.instruments)
    assert b.factor == "BTC" and b.beta[0] == 1.0
    # Alts fell several times as far as BTC that evening: every USD-M alt has a BTC beta well above 1.
    for coin in ("XRP", "ADA", "LINK", "WLD"):
        assert b.beta[r.instruments.index(coin)] > 1.5
    prices = generate_correlated("t_copula", np.ones(13), fit.sigma_annual, fit.t_copula_correlation, 30, 60.0,
                                 _seeds(0, 2), dof=fit.t_copula_dof)
    assert np.all(np.isfinite(prices)) and np.all(prices > 0)


def test_real_btc_crash_shape_drives_the_other_coins():
    paths = oct10_2025_paths(DATA)
    if not all(p.exists() for p in paths.values()):
        pytest.skip("real data not available")
    from delever.multipath import load_historical_multi

    btc = load_historical_multi({"BTC": paths["BTC"]}, intrabar="close")
    shape = np.log(btc.price[:, 0] / btc.price[0, 0])
    assert btc.price[:, 0].min() == 103_441.3  # lowest 1-minute close (the 21:20 low, 101,516.5, is intrabar)
    r = minute_log_returns_multi({c: paths[c] for c in ("BTC", "SOL", "XRP", "ADA")})
    b = estimate_betas(r.log_return, 0, r.instruments)
    p = common_factor_crash(shape, b.beta, b.idio_sigma_step, 20.0, 0.2, _seeds(3, 50), start_prices=np.ones(4))
    assert p.shape == (50, shape.size, 4) and np.all(np.isfinite(p)) and np.all(p > 0)
    assert np.all(np.abs(np.log(p[:, :, 0]).min(axis=1)) <= abs(math.log(0.01)) + 1e-12)
