"""Monte Carlo price paths of several instruments with dependence estimated from real returns.

Three pieces, plain arrays in and out (the scenario wiring lives elsewhere):

* :func:`fit_dependence`: from 1-bar log returns ``(N, I)`` (e.g. :func:`delever.multipath.minute_log_returns_multi`)
  a shrunk covariance and correlation (Ledoit and Wolf 2004, "A well-conditioned estimator for
  large-dimensional covariance matrices", J. Multivariate Analysis 88, 365-411, or Chen, Wiesel, Eldar and
  Hero 2010, "Shrinkage algorithms for MMSE covariance estimation", IEEE Trans. Signal Processing 58(10),
  the OAS estimator; both from scikit-learn, ``sklearn.covariance.LedoitWolf`` / ``OAS``), and a
  Student-t copula: correlation from Kendall's tau (``rho = sin(pi tau / 2)``, valid for every elliptical
  copula; Lindskog, McNeil and Schmock 2003, "Kendall's tau for elliptical distributions") shrunk with
  the same intensity, and degrees of freedom by maximum likelihood on the pseudo-observations (the
  two-step "IFM with ranks" estimator of Genest, Ghoudi and Rivest 1995; Demarta and McNeil 2005, "The t
  copula and related copulas", Int. Statistical Review 73(1), 111-129, section 5).
* :func:`generate_correlated`: correlated log returns, Gaussian copula (a multivariate GBM) or t copula,
  each instrument with its own annualized volatility.
* :func:`common_factor_crash` with :func:`estimate_betas`: every instrument follows ``beta_i`` times a
  real crash shape (e.g. BTC on 2025-10-10) plus idiosyncratic noise (a one-factor market model: Sharpe
  1963, "A simplified model for portfolio analysis", Management Science 9(2); betas by OLS of each coin's
  1-minute log returns on the factor's over the real window).

Randomness: every generator takes either a :class:`numpy.random.Generator` with ``n_paths`` (then the
paths get ``rng.spawn(n_paths)`` children) or one :class:`numpy.random.SeedSequence` per path (as
``delever.pathgen.path_seeds`` gives them; the stress runner builds a block's children directly). Path
``p`` draws its numbers only from its own child, always in the same order and amount, and the
arithmetic after the draws is per path, so a block of paths ``seeds[a:b]`` equals rows ``a:b`` of the
whole run bit for bit, whatever the block size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from delever.errors import DeleverInputError

__all__ = [
    "SECONDS_PER_YEAR",
    "BetaFit",
    "DependenceFit",
    "common_factor_crash",
    "estimate_betas",
    "fit_dependence",
    "generate_correlated",
    "t_copula_tail_dependence",
]

SECONDS_PER_YEAR = 365.0 * 24.0 * 3600.0  # the calendar year of delever.pathgen (crypto trades every day)
_DOF_BOUNDS = (2.05, 200.0)  # t-copula dof search interval; 200 is Gaussian to 3 decimals in tail terms
_DOF_AT_BOUND_TOL = 1e-2


# --------------------------------------------------------------------------- estimation
@dataclass(frozen=True, eq=False)
class DependenceFit:
    """Dependence of I instruments' log returns (:func:`fit_dependence`).

    Attributes:
        instruments: names (column order), or ``()`` when not given.
        method: ``"ledoit_wolf"`` or ``"oas"``.
        n_obs: N returns used.
        interval_s: seconds per return (bar length).
        mean_step: float64 (I,), sample mean log return per step.
        sigma_step: float64 (I,), sample standard deviation of the log return per step (ddof 0, as the
            scikit-learn estimators use).
        sigma_annual: float64 (I,), ``sigma_step * sqrt(SECONDS_PER_YEAR / interval_s)``.
        correlation: float64 (I, I), shrunk correlation (positive definite).
        covariance: float64 (I, I), ``diag(sigma_step) @ correlation @ diag(sigma_step)``, per step.
        shrinkage: the estimator's shrinkage intensity (``shrinkage_``), in [0, 1].
        sample_correlation: float64 (I, I), the plain Pearson correlation.
        kendall_tau: float64 (I, I), Kendall's tau-b.
        t_copula_correlation: float64 (I, I), ``(1 - shrinkage) sin(pi tau / 2) + shrinkage I``.
        t_copula_dof: maximum-likelihood degrees of freedom of the t copula.
        t_copula_dof_at_bound: True when the optimum is at the search interval's edge (2.05 or 200).
        t_copula_loglik: copula log-likelihood at the optimum.
        gaussian_copula_loglik: log-likelihood of the Gaussian copula with the same correlation
            (the t copula nests it as dof -> infinity; the difference is the evidence for tail dependence).
    """

    instruments: tuple[str, ...]
    method: str
    n_obs: int
    interval_s: float
    mean_step: np.ndarray
    sigma_step: np.ndarray
    sigma_annual: np.ndarray
    correlation: np.ndarray
    covariance: np.ndarray
    shrinkage: float
    sample_correlation: np.ndarray
    kendall_tau: np.ndarray
    t_copula_correlation: np.ndarray
    t_copula_dof: float
    t_copula_dof_at_bound: bool
    t_copula_loglik: float
    gaussian_copula_loglik: float


def _check_returns(returns: np.ndarray, name: str = "returns") -> np.ndarray:
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] < 3 or r.shape[1] < 1:
        raise DeleverInputError(f"{name}: expected a (N, I) array with N >= 3 and I >= 1, got shape {r.shape}")
    bad = ~np.isfinite(r)
    if bad.any():
        k, i = np.argwhere(bad)[0]
        raise DeleverInputError(f"{name}: row {k}, column {i}: {r[k, i]!r}, expected a finite log return")
    flat = np.ptp(r, axis=0) == 0
    if flat.any():
        raise DeleverInputError(f"{name}: column {int(np.flatnonzero(flat)[0])} is constant, expected varying returns")
    return r


def _to_correlation(c: np.ndarray) -> np.ndarray:
    d = np.sqrt(np.diag(c))
    out = c / np.outer(d, d)
    np.fill_diagonal(out, 1.0)
    return 0.5 * (out + out.T)


def _is_pd(m: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(m)
    except np.linalg.LinAlgError:
        return False
    return True


def _pseudo_observations(r: np.ndarray) -> np.ndarray:
    """Ranks scaled to (0, 1): ``rank / (N + 1)`` per column (ties get their average rank)."""
    return stats.rankdata(r, axis=0) / (r.shape[0] + 1.0)


def _t_copula_loglik(u: np.ndarray, corr: np.ndarray, dof: float) -> float:
    """``sum log c(u)``, ``c = f_{t,P,nu}(x) / prod f_{t,nu}(x_i)`` with ``x = t_nu^{-1}(u)`` (Demarta-McNeil eq. 3)."""
    x = stats.t.ppf(u, dof)
    joint = stats.multivariate_t.logpdf(x, loc=np.zeros(u.shape[1]), shape=corr, df=dof)
    return float(np.sum(joint) - np.sum(stats.t.logpdf(x, dof)))


def _gaussian_copula_loglik(u: np.ndarray, corr: np.ndarray) -> float:
    x = stats.norm.ppf(u)
    joint = stats.multivariate_normal.logpdf(x, mean=np.zeros(u.shape[1]), cov=corr)
    return float(np.sum(joint) - np.sum(stats.norm.logpdf(x)))


def fit_dependence(
    returns: np.ndarray,
    method: str = "ledoit_wolf",
    interval_s: float = 60.0,
    instruments: Sequence[str] | None = None,
) -> DependenceFit:
    """Shrunk correlation/covariance and a Student-t copula of I instruments' log returns.

    Shrinkage is applied to the standardized returns ``z = (r - mean) / std`` so the target (a multiple
    of the identity) is the identity correlation, and the variances are the sample ones: shrinking raw
    returns would pull every coin's variance toward the average and blur their very different volatilities.
    The t-copula correlation is the Kendall's-tau inversion ``sin(pi tau / 2)`` shrunk toward the identity
    with the same intensity (the raw inversion need not be positive definite in small samples); the degrees
    of freedom maximize the copula likelihood of the pseudo-observations (``scipy.optimize.minimize_scalar``,
    bounded to [2.05, 200]).

    Args:
        returns: float64 (N, I) log returns per bar, finite, N >= 3, no constant column.
        method: ``"ledoit_wolf"`` (``sklearn.covariance.LedoitWolf``) or ``"oas"`` (``sklearn.covariance.OAS``).
        interval_s: bar length in seconds (> 0), to annualize the volatilities.
        instruments: optional names, I of them.

    Returns:
        :class:`DependenceFit`.

    Raises:
        DeleverInputError: bad shape, non-finite or constant column, unknown method, names that do
            not match I, or a t-copula correlation that is not positive definite even after shrinkage.
    """
    from sklearn.covariance import OAS, LedoitWolf  # heavy import, only where estimation runs

    r = _check_returns(returns)
    n, n_inst = r.shape
    if method not in ("ledoit_wolf", "oas"):
        raise DeleverInputError(f"method: expected 'ledoit_wolf' or 'oas', got {method!r}")
    if not (math.isfinite(interval_s) and interval_s > 0):
        raise DeleverInputError(f"interval_s: expected seconds > 0, got {interval_s!r}")
    names = tuple(str(x) for x in instruments) if instruments is not None else ()
    if names and len(names) != n_inst:
        raise DeleverInputError(f"instruments: expected {n_inst} names (columns of returns), got {len(names)}")
    mean = r.mean(axis=0)
    sd = r.std(axis=0)
    z = (r - mean) / sd
    est = (LedoitWolf() if method == "ledoit_wolf" else OAS()).fit(z)
    corr = _to_correlation(np.asarray(est.covariance_, dtype=np.float64))
    shrink = float(est.shrinkage_)
    sample = _to_correlation(np.cov(r, rowvar=False, bias=True).reshape(n_inst, n_inst))
    tau = np.eye(n_inst)
    for i in range(n_inst):
        for j in range(i + 1, n_inst):
            tau[i, j] = tau[j, i] = float(stats.kendalltau(r[:, i], r[:, j]).statistic)
    t_corr = (1.0 - shrink) * np.sin(0.5 * math.pi * tau) + shrink * np.eye(n_inst)
    np.fill_diagonal(t_corr, 1.0)
    if not _is_pd(t_corr):
        raise DeleverInputError(
            f"returns: Kendall's-tau correlation is not positive definite after shrinkage {shrink:.3g} "
            f"({n} returns of {n_inst} instruments); use more returns or fewer instruments"
        )
    u = _pseudo_observations(r)
    lo, hi = _DOF_BOUNDS
    res = optimize.minimize_scalar(
        lambda log_nu: -_t_copula_loglik(u, t_corr, math.exp(log_nu)),
        bounds=(math.log(lo), math.log(hi)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    dof = math.exp(float(res.x))
    at_bound = dof < lo * (1 + _DOF_AT_BOUND_TOL) or dof > hi * (1 - _DOF_AT_BOUND_TOL)
    return DependenceFit(
        instruments=names,
        method=method,
        n_obs=n,
        interval_s=float(interval_s),
        mean_step=mean,
        sigma_step=sd,
        sigma_annual=sd * math.sqrt(SECONDS_PER_YEAR / interval_s),
        correlation=corr,
        covariance=corr * np.outer(sd, sd),
        shrinkage=shrink,
        sample_correlation=sample,
        kendall_tau=tau,
        t_copula_correlation=t_corr,
        t_copula_dof=dof,
        t_copula_dof_at_bound=bool(at_bound),
        t_copula_loglik=-float(res.fun),
        gaussian_copula_loglik=_gaussian_copula_loglik(u, t_corr),
    )


def t_copula_tail_dependence(rho: float, dof: float) -> float:
    """Coefficient of (lower = upper) tail dependence of a bivariate t copula.

    ``lambda = 2 t_{nu+1}(-sqrt((nu + 1)(1 - rho) / (1 + rho)))`` (Embrechts, McNeil and Straumann 2002,
    "Correlation and dependence in risk management", section 4.4; Demarta-McNeil 2005 eq. 5). The Gaussian
    copula has 0 for every ``rho < 1``.

    Raises:
        DeleverInputError: ``rho`` outside (-1, 1] or ``dof`` not > 0.
    """
    if not (-1.0 < rho <= 1.0) or not (dof > 0):
        raise DeleverInputError(f"t_copula_tail_dependence: expected -1 < rho <= 1 and dof > 0, got {rho!r}, {dof!r}")
    return float(2.0 * stats.t.cdf(-math.sqrt((dof + 1.0) * (1.0 - rho) / (1.0 + rho)), dof + 1.0))


@dataclass(frozen=True, eq=False)
class BetaFit:
    """One-factor regression ``r_i = alpha_i + beta_i r_f + e_i`` of each instrument on a factor.

    Attributes:
        factor: name or column index of the factor.
        instruments: names (column order), or ``()``.
        beta: float64 (I,), OLS slope (1 for the factor itself).
        beta_stderr: float64 (I,), OLS standard error of the slope.
        alpha_step: float64 (I,), intercept per step (log return).
        idio_sigma_step: float64 (I,), residual standard deviation per step (ddof 2; 0 for the factor).
        r_squared: float64 (I,).
        n_obs: N returns.
    """

    factor: str | int
    instruments: tuple[str, ...]
    beta: np.ndarray
    beta_stderr: np.ndarray
    alpha_step: np.ndarray
    idio_sigma_step: np.ndarray
    r_squared: np.ndarray
    n_obs: int


def estimate_betas(
    returns: np.ndarray, factor: int = 0, instruments: Sequence[str] | None = None
) -> BetaFit:
    """OLS betas and idiosyncratic volatilities of every column of ``returns`` on column ``factor``.

    ``scipy.stats.linregress`` per column; the residual standard deviation is
    ``sqrt(sum e^2 / (N - 2))``. For the factor itself beta is 1 and the residual is 0.

    Args:
        returns: float64 (N, I) log returns per bar (e.g. 1-minute returns of the 2025-10-10 window).
        factor: column of the factor (e.g. BTC).
        instruments: optional names, I of them.

    Returns:
        :class:`BetaFit`.

    Raises:
        DeleverInputError: bad returns (see :func:`fit_dependence`), ``factor`` out of range, names not
            matching I.
    """
    r = _check_returns(returns)
    n, n_inst = r.shape
    if not 0 <= int(factor) < n_inst:
        raise DeleverInputError(f"factor: expected a column 0..{n_inst - 1}, got {factor!r}")
    names = tuple(str(x) for x in instruments) if instruments is not None else ()
    if names and len(names) != n_inst:
        raise DeleverInputError(f"instruments: expected {n_inst} names (columns of returns), got {len(names)}")
    f = int(factor)
    x = r[:, f]
    beta, se, alpha, idio, r2 = (np.zeros(n_inst) for _ in range(5))
    for i in range(n_inst):
        if i == f:
            beta[i], r2[i] = 1.0, 1.0
            continue
        lr = stats.linregress(x, r[:, i])
        beta[i], se[i], alpha[i], r2[i] = lr.slope, lr.stderr, lr.intercept, lr.rvalue**2
        resid = r[:, i] - lr.intercept - lr.slope * x
        idio[i] = math.sqrt(float(resid @ resid) / (n - 2))
    return BetaFit(
        factor=names[f] if names else f,
        instruments=names,
        beta=beta,
        beta_stderr=se,
        alpha_step=alpha,
        idio_sigma_step=idio,
        r_squared=r2,
        n_obs=n,
    )


# --------------------------------------------------------------------------- simulation helpers
RngArg = np.random.Generator | Sequence[np.random.SeedSequence]


def _path_rngs(rng: RngArg, n_paths: int | None) -> list[np.random.Generator]:
    """One generator per path: ``rng.spawn(n_paths)``, or ``default_rng(seed)`` per given seed."""
    if isinstance(rng, np.random.Generator):
        if n_paths is None or isinstance(n_paths, bool) or int(n_paths) != n_paths or n_paths < 0:
            raise DeleverInputError(f"n_paths: expected an integer >= 0 with a Generator, got {n_paths!r}")
        return list(rng.spawn(int(n_paths)))
    seeds = list(rng)
    if n_paths is not None and int(n_paths) != len(seeds):
        raise DeleverInputError(f"n_paths: {n_paths!r} differs from the {len(seeds)} per-path seeds given")
    for k, s in enumerate(seeds):
        if not isinstance(s, np.random.SeedSequence):
            raise DeleverInputError(f"rng: seed {k} is {type(s).__name__}, expected numpy.random.SeedSequence")
    return [np.random.default_rng(s) for s in seeds]


def _vector(x: object, n: int, name: str, positive: bool = False, nonneg: bool = False) -> np.ndarray:
    v = np.asarray(x, dtype=np.float64)
    if v.shape != (n,):
        raise DeleverInputError(f"{name}: expected shape ({n},), got {v.shape}")
    bad = ~np.isfinite(v) | (v <= 0 if positive else False) | (v < 0 if nonneg else False)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        what = "> 0" if positive else ">= 0" if nonneg else "finite"
        raise DeleverInputError(f"{name}[{i}]: {v[i]!r}, expected a finite value {what}")
    return v


def _finite_prices(prices: np.ndarray, what: str) -> np.ndarray:
    ok = np.isfinite(prices) & (prices > 0)
    if not ok.all():
        p, k, i = np.argwhere(~ok)[0]
        raise DeleverInputError(
            f"{what}: path {p}, step {k}, instrument {i}: price {prices[p, k, i]!r} left the float64 range; "
            "the volatilities are too large for this horizon"
        )
    return prices


# --------------------------------------------------------------------------- correlated generators
def generate_correlated(
    kind: str,
    start_prices: np.ndarray,
    sigma_annual: np.ndarray,
    correlation: np.ndarray,
    n_steps: int,
    dt_s: float,
    rng: RngArg,
    n_paths: int | None = None,
    *,
    dof: float | None = None,
    drift_annual: np.ndarray | None = None,
    marginal_dof: float | None = None,
) -> np.ndarray:
    """Correlated price paths of I instruments on ``t = 0, dt_s, ..., n_steps dt_s``.

    Per step the log return of instrument ``i`` is ``(mu_i - sigma_i^2 / 2) dt + sigma_i sqrt(dt) e_i``
    (``dt = dt_s / SECONDS_PER_YEAR``) with ``e`` unit-variance innovations whose dependence is:

    * ``"gaussian"``: ``e = L z``, ``z ~ N(0, I)``, ``L L^T = correlation`` (Cholesky): a multivariate
      geometric Brownian motion, Gaussian copula, ``E[S_t] = S_0 exp(mu t)``.
    * ``"t_copula"``: ``y = L z / sqrt(w / nu)``, ``w ~ chi2(nu)`` (one ``w`` per step shared by all
      instruments: a crash hits every coin in the same minute), ``u_i = t_nu(y_i)``, and
      ``e_i = Phi^{-1}(u_i)`` (Gaussian margins, so only the dependence differs from ``"gaussian"``) or,
      with ``marginal_dof = m``, the Student-t(m) quantile scaled to unit variance
      (``sqrt((m - 2) / m)``). Demarta-McNeil 2005, section 2 (simulation algorithm). Its tail dependence
      is :func:`t_copula_tail_dependence`; its Kendall's tau equals the Gaussian one,
      ``(2 / pi) arcsin(rho)``. The drift is not compensated for t margins (``E[exp]`` is infinite).

    Draws per path, in order: ``n_steps x I`` standard normals (row by row), then for ``"t_copula"``
    ``n_steps`` chi-square(nu) variates.

    Args:
        kind: ``"gaussian"`` or ``"t_copula"``.
        start_prices: float64 (I,), USD, > 0; row 0 of every path, exactly.
        sigma_annual: float64 (I,), annualized volatility of each instrument (e.g. ``DependenceFit.sigma_annual``), >= 0.
        correlation: float64 (I, I), symmetric positive definite, unit diagonal.
        n_steps: steps, int >= 1.
        dt_s: step in seconds, > 0.
        rng: a ``numpy.random.Generator`` (with ``n_paths``; paths get ``rng.spawn(n_paths)``) or one
            ``numpy.random.SeedSequence`` per path.
        n_paths: number of paths with a Generator (checked against the seeds otherwise).
        dof: t-copula degrees of freedom, > 2 (required for ``"t_copula"``; e.g. ``DependenceFit.t_copula_dof``).
        drift_annual: float64 (I,), ``mu`` per instrument (default 0).
        marginal_dof: Student-t margins' degrees of freedom, > 2 (``"t_copula"`` only; default Gaussian margins).

    Returns:
        float64 (P, n_steps + 1, I) prices in USD, finite and > 0.

    Raises:
        DeleverInputError: unknown kind; shapes that disagree; non-positive prices; negative volatility;
            a correlation that is not symmetric, unit-diagonal and positive definite; bad ``dof``/``marginal_dof``/
            ``n_steps``/``dt_s``/``n_paths``; prices leaving the float64 range.
    """
    if kind not in ("gaussian", "t_copula"):
        raise DeleverInputError(f"kind: expected 'gaussian' or 't_copula', got {kind!r}")
    s0 = np.asarray(start_prices, dtype=np.float64)
    if s0.ndim != 1 or s0.size < 1:
        raise DeleverInputError(f"start_prices: expected a (I,) array, got shape {s0.shape}")
    n_inst = s0.size
    s0 = _vector(s0, n_inst, "start_prices", positive=True)
    sig = _vector(sigma_annual, n_inst, "sigma_annual", nonneg=True)
    mu = np.zeros(n_inst) if drift_annual is None else _vector(drift_annual, n_inst, "drift_annual")
    corr = np.asarray(correlation, dtype=np.float64)
    if corr.shape != (n_inst, n_inst) or not np.all(np.isfinite(corr)):
        raise DeleverInputError(f"correlation: expected a finite ({n_inst}, {n_inst}) matrix, got shape {corr.shape}")
    if not np.allclose(corr, corr.T, atol=1e-12) or not np.allclose(np.diag(corr), 1.0, atol=1e-12):
        raise DeleverInputError("correlation: expected a symmetric matrix with unit diagonal")
    try:
        chol = np.linalg.cholesky(corr)
    except np.linalg.LinAlgError:
        raise DeleverInputError("correlation: not positive definite (Cholesky failed)") from None
    if isinstance(n_steps, bool) or int(n_steps) != n_steps or n_steps < 1:
        raise DeleverInputError(f"n_steps: expected an integer >= 1, got {n_steps!r}")
    if not (math.isfinite(dt_s) and dt_s > 0):
        raise DeleverInputError(f"dt_s: expected a step > 0 seconds, got {dt_s!r}")
    if kind == "t_copula":
        if dof is None or not (math.isfinite(dof) and dof > 2):
            raise DeleverInputError(f"dof: expected t-copula degrees of freedom > 2, got {dof!r}")
    if marginal_dof is not None and (kind != "t_copula" or not (math.isfinite(marginal_dof) and marginal_dof > 2)):
        raise DeleverInputError(f"marginal_dof: expected > 2 with kind 't_copula', got {marginal_dof!r} ({kind})")
    n_steps = int(n_steps)
    gens = _path_rngs(rng, n_paths)
    n_p = len(gens)
    z = np.empty((n_p, n_steps, n_inst))
    w = np.empty((n_p, n_steps)) if kind == "t_copula" else None
    for p, g in enumerate(gens):
        z[p] = g.standard_normal((n_steps, n_inst))
        if w is not None:
            w[p] = g.chisquare(float(dof), n_steps)
    e = z @ chol.T  # (P, n, I): correlated standard normals
    if w is not None:
        y = e / np.sqrt(w / float(dof))[..., None]
        # Upper tail through the survival function, by symmetry, so no quantile is evaluated at u = 1.
        sf = stats.t.sf(np.abs(y), float(dof))
        if marginal_dof is None:
            e = np.sign(y) * stats.norm.isf(sf)
        else:
            m = float(marginal_dof)
            e = np.sign(y) * stats.t.isf(sf, m) * math.sqrt((m - 2.0) / m)
    dt = float(dt_s) / SECONDS_PER_YEAR
    step = (mu - 0.5 * sig * sig) * dt + sig * math.sqrt(dt) * e
    log_path = np.zeros((n_p, n_steps + 1, n_inst))
    np.cumsum(step, axis=1, out=log_path[:, 1:, :])
    prices = s0 * np.exp(log_path)
    prices[:, 0, :] = s0
    return _finite_prices(prices, f"generate_correlated({kind})")


def common_factor_crash(
    shape: np.ndarray,
    betas: np.ndarray,
    idio_sigma: np.ndarray,
    depth_pct: float | None,
    dispersion: float,
    rng: RngArg,
    n_paths: int | None = None,
    *,
    start_prices: np.ndarray,
) -> np.ndarray:
    """Crash paths of I instruments driven by one real crash shape: ``beta_i`` x factor + idiosyncratic noise.

    With ``x(t)`` the factor's log price relative to its start (e.g. ``ln(BTC_t / BTC_0)`` over
    2025-10-10 20:30-22:30 at each bar close) on its own grid of T points, per path:

    * ``c = ln(1 - depth_pct / 100) / min(x)`` rescales the shape so the factor's trough is exactly
      ``-depth_pct`` % (``c = 1``, the observed depth, when ``depth_pct`` is None), as
      ``delever.pathgen``'s ``crash_shape`` does;
    * ``f = min(exp(dispersion z), f_max)``, ``z ~ N(0, 1)``: the path's depth factor (lognormal, capped
      so the factor's trough is never below -99 %, ``f_max = ln(0.01) / (c min(x))``);
    * ``ln(S_i(t_k) / S_i(0)) = beta_i f c x(t_k) + sum_{j<=k} (s_i eps_ij - s_i^2 / 2)``, ``eps ~ N(0, 1)``
      i.i.d.: the one-factor market model with the factor's path given, and a martingale idiosyncratic
      factor (``s_i = idio_sigma[i]`` per step of the shape's grid, e.g. ``BetaFit.idio_sigma_step``), so
      the noise does not move ``E[S_i]``.

    The shape plays back on its own grid (no resampling; the crash keeps its historical speed).
    Draws per path, in order: one normal ``z``, then ``(T - 1) x I`` normals (row by row).

    Args:
        shape: float64 (T,), factor log price relative to the start, ``shape[0] == 0``, ``min < 0``.
        betas: float64 (I,), factor loadings (e.g. :func:`estimate_betas` ``.beta``), finite.
        idio_sigma: float64 (I,), idiosyncratic log-return volatility per step of ``shape``'s grid, >= 0.
        depth_pct: factor trough in percent, 0 < depth_pct < 99, or None (the shape's own depth).
        dispersion: lognormal sigma of the depth factor, >= 0.
        rng: a ``numpy.random.Generator`` (with ``n_paths``) or one ``numpy.random.SeedSequence`` per path.
        n_paths: number of paths with a Generator.
        start_prices: float64 (I,), USD, > 0; row 0 of every path, exactly.

    Returns:
        float64 (P, T, I) prices in USD, finite and > 0.

    Raises:
        DeleverInputError: a shape that does not start at 0, is not finite or never falls below 0; shapes
            of ``betas``/``idio_sigma``/``start_prices`` that differ; bad ``depth_pct``/``dispersion``/``n_paths``.
    """
    x = np.asarray(shape, dtype=np.float64)
    if x.ndim != 1 or x.size < 2 or not np.all(np.isfinite(x)):
        raise DeleverInputError(f"shape: expected a finite (T,) log-price array with T >= 2, got shape {x.shape}")
    if x[0] != 0.0:
        raise DeleverInputError(f"shape[0]: {x[0]!r}, expected 0 (log price relative to the start)")
    trough = float(x.min())
    if trough >= 0.0:
        raise DeleverInputError("shape: never falls below its start, so there is no crash to rescale")
    b = np.asarray(betas, dtype=np.float64)
    if b.ndim != 1 or b.size < 1:
        raise DeleverInputError(f"betas: expected a (I,) array, got shape {b.shape}")
    n_inst = b.size
    b = _vector(b, n_inst, "betas")
    s = _vector(idio_sigma, n_inst, "idio_sigma", nonneg=True)
    s0 = _vector(start_prices, n_inst, "start_prices", positive=True)
    if depth_pct is not None and not (0.0 < depth_pct < 99.0):
        raise DeleverInputError(f"depth_pct: expected 0 < depth_pct < 99 (percent) or None, got {depth_pct!r}")
    if not (math.isfinite(dispersion) and dispersion >= 0):
        raise DeleverInputError(f"dispersion: expected a lognormal sigma >= 0, got {dispersion!r}")
    target = trough if depth_pct is None else math.log1p(-float(depth_pct) / 100.0)
    base = x * (target / trough)
    f_max = math.log(0.01) / target
    gens = _path_rngs(rng, n_paths)
    n_p, n_t = len(gens), x.size
    zf = np.empty(n_p)
    eps = np.empty((n_p, n_t - 1, n_inst))
    for p, g in enumerate(gens):
        zf[p] = g.standard_normal()
        eps[p] = g.standard_normal((n_t - 1, n_inst))
    f = np.minimum(np.exp(float(dispersion) * zf), f_max)
    log_path = (f[:, None, None] * base[None, :, None]) * b[None, None, :]
    noise = np.zeros((n_p, n_t, n_inst))
    np.cumsum(s * eps - 0.5 * s * s, axis=1, out=noise[:, 1:, :])
    prices = s0 * np.exp(log_path + noise)
    prices[:, 0, :] = s0
    return _finite_prices(prices, "common_factor_crash")
