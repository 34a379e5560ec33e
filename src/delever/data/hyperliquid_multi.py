"""Observed side of a multi-coin validation: Hyperliquid's 2025-10-10 liquidation + ADL cascade.

Source: ``shared/data/hyperliquid-2025-10-10-adl/`` (PROVENANCE.md there), tables derived by
ConejoCapital/HyperReplay (commit a47a910f) and HyperMultiAssetedADL (commit 79bad0fa) from Hyperliquid's
public ``node_fills``/``misc_events`` archives, read and cross-checked by
:func:`delever.data.hyperliquid.read_adl_event`. Licence: HyperReplay Custom License v1.0, non-commercial
use only, attribution "Powered by HyperReplay - (c) ConejoCapital"; HyperMultiAssetedADL has no licence
(all rights reserved). Internal research and validation only.

What the tables give (event window 21:15-21:27 UTC):

* per coin (162 coins, ``adl_by_coin_REALTIME.csv``): ADL notional (USD), ADL fills, distinct ADL'd users;
  totals 34,983 ADL fills and 2,103,111,431 USD;
* liquidations: only the total count, 63,637 fills, from the per-second timeline
  (``cascade_timing_results.json``). **Per-coin liquidation counts and every liquidation notional are not
  in the tables obtained** (``liquidations_full_12min.csv`` was too large to fetch), so they are None here;
* ADL fills per ADL'd user (19,337 users, ``adl_by_user_REALTIME.csv.gz``): the distribution of ADL events
  per account (1 to 78; median 1);
* coins per ADL'd user: the exact *mean* over all ADL'd users is ``sum over coins of num_users / users``
  (1.68); the full distribution (and the share of users deleveraged in several coins) is known only for
  the **294 users of ``high_leverage_outliers_analysis.csv.gz``**, a subset selected upstream for very high
  reconstructed leverage (480 ADL fills, 21:16-21:22), not a random sample: 17 % of them were ADL'd in
  more than one coin.

:func:`compare_multi_coin` sets a simulation against these statistics (error convention of
``delever.validate``: ``rel_error = simulated / observed - 1``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from delever.data.hyperliquid import AdlEvent, read_adl_event
from delever.errors import DeleverInputError

__all__ = [
    "EVENT_QUANTILES",
    "SIMULATED_COIN_KEYS",
    "ObservedMultiCoin",
    "compare_multi_coin",
    "observed_from_event",
    "read_observed_multi_coin",
]

EVENT_QUANTILES: tuple[float, ...] = (0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
"""Quantiles of ADL events per account reported side by side."""

SIMULATED_COIN_KEYS: tuple[str, ...] = ("adl_notional_usd", "adl_count", "liquidation_count")
"""Keys each simulated coin must carry in :func:`compare_multi_coin` (``liquidation_notional_usd`` optional)."""


@dataclass(frozen=True, eq=False)
class ObservedMultiCoin:
    """Observed statistics of a multi-coin liquidation/ADL event.

    Attributes:
        coin: str (C,), coins with at least one ADL fill.
        adl_notional_usd: float64 (C,), USD notional of ADL fills per coin.
        adl_count: int64 (C,), ADL fills per coin.
        adl_users: int64 (C,), distinct ADL'd users per coin.
        liquidation_count: int64 (C,) liquidation fills per coin, or None (not in the 2025-10-10 tables).
        liquidation_notional_usd: float64 (C,) per coin, or None (not in the 2025-10-10 tables).
        total_liquidation_count: liquidation fills over all coins (63,637 on 2025-10-10).
        total_liquidation_notional_usd: over all coins, or None (not in the 2025-10-10 tables).
        adl_events_per_user: int64 (U,), ADL fills of each ADL'd user (every value >= 1).
        outlier_coins_per_user: int64 (K,), distinct coins in which each user of the high-leverage outlier
            subset was ADL'd (K = 294 on 2025-10-10; a selected subset, not a sample of all users).
        notes: what the figures cover and what is missing.
    """

    coin: np.ndarray
    adl_notional_usd: np.ndarray
    adl_count: np.ndarray
    adl_users: np.ndarray
    liquidation_count: np.ndarray | None
    liquidation_notional_usd: np.ndarray | None
    total_liquidation_count: int
    total_liquidation_notional_usd: float | None
    adl_events_per_user: np.ndarray
    outlier_coins_per_user: np.ndarray
    notes: tuple[str, ...] = ()

    @property
    def total_adl_notional_usd(self) -> float:
        """ADL notional over all coins, USD (2,103,111,431 on 2025-10-10)."""
        return float(self.adl_notional_usd.sum())

    @property
    def total_adl_count(self) -> int:
        """ADL fills over all coins (34,983 on 2025-10-10)."""
        return int(self.adl_count.sum())

    @property
    def adl_to_liquidation_count_ratio(self) -> float:
        """ADL fills per liquidation fill, all coins (34,983 / 63,637 = 0.5497 on 2025-10-10)."""
        return self.total_adl_count / self.total_liquidation_count

    @property
    def n_adl_users(self) -> int:
        """Distinct ADL'd users (19,337 on 2025-10-10)."""
        return int(self.adl_events_per_user.shape[0])

    @property
    def mean_coins_per_adl_user(self) -> float:
        """Exact mean number of coins an ADL'd user was deleveraged in: ``sum(adl_users) / n_adl_users``."""
        return float(self.adl_users.sum()) / self.n_adl_users

    @property
    def max_multi_coin_user_share(self) -> float:
        """Upper bound on the share of ADL'd users deleveraged in >= 2 coins, all users.

        ``(sum(adl_users) - U) / U``: reached if every multi-coin user was ADL'd in exactly two coins
        (the per-coin user lists are not in the tables, so the share itself is unknown for all users).
        """
        return min(1.0, (float(self.adl_users.sum()) - self.n_adl_users) / self.n_adl_users)

    @property
    def outlier_multi_coin_share(self) -> float:
        """Share of the outlier subset's users ADL'd in >= 2 coins (0.170 = 50/294 on 2025-10-10)."""
        return float(np.mean(self.outlier_coins_per_user >= 2))

    def per_coin(self) -> dict[str, dict[str, float | int | None]]:
        """``{coin: {"adl_notional_usd", "adl_count", "adl_users", "liquidation_count", "liquidation_notional_usd"}}``."""
        out: dict[str, dict[str, float | int | None]] = {}
        for k, c in enumerate(self.coin.tolist()):
            out[c] = {
                "adl_notional_usd": float(self.adl_notional_usd[k]),
                "adl_count": int(self.adl_count[k]),
                "adl_users": int(self.adl_users[k]),
                "liquidation_count": None if self.liquidation_count is None else int(self.liquidation_count[k]),
                "liquidation_notional_usd": (
                    None if self.liquidation_notional_usd is None else float(self.liquidation_notional_usd[k])
                ),
            }
        return out


def observed_from_event(ev: AdlEvent) -> ObservedMultiCoin:
    """Multi-coin statistics of the tables read by :func:`delever.data.hyperliquid.read_adl_event`.

    Args:
        ev: the cross-checked 2025-10-10 tables.

    Returns:
        :class:`ObservedMultiCoin` (per-coin liquidation figures None: not in the tables).
    """
    of = ev.outlier_fills
    users, inv = np.unique(of.user, return_inverse=True)
    pairs = np.unique(np.stack([inv, np.unique(of.coin, return_inverse=True)[1]], axis=1), axis=0)
    coins_per_user = np.bincount(pairs[:, 0], minlength=users.size).astype(np.int64)
    notes = (
        "per-coin liquidation counts and all liquidation notionals are not in the tables "
        "(liquidations_full_12min.csv not obtained); only the total liquidation count (per-second timeline) is known",
        f"coins per user: exact mean over all {len(ev.by_user)} ADL'd users from the per-coin user counts; "
        f"the distribution only for the {users.size} users of the high-leverage outlier subset "
        f"({len(of)} ADL fills, selected upstream for very high reconstructed leverage, not a random sample)",
        "ADL events per user: ADL fills per ADL'd user (users with no ADL fill are not in the table)",
    )
    return ObservedMultiCoin(
        coin=ev.by_coin.coin,
        adl_notional_usd=ev.by_coin.adl_notional_usd,
        adl_count=ev.by_coin.num_events,
        adl_users=ev.by_coin.num_users,
        liquidation_count=None,
        liquidation_notional_usd=None,
        total_liquidation_count=ev.total_liquidations,
        total_liquidation_notional_usd=None,
        adl_events_per_user=ev.by_user.num_adl_events,
        outlier_coins_per_user=coins_per_user,
        notes=notes + tuple(ev.notes),
    )


def read_observed_multi_coin(folder: Path | str) -> ObservedMultiCoin:
    """Read ``hyperliquid-2025-10-10-adl/`` (cross-checked) and return its multi-coin statistics.

    Raises:
        DeleverInputError: any reader error or failed cross-check of :func:`~delever.data.hyperliquid.read_adl_event`.
    """
    return observed_from_event(read_adl_event(folder))


# --------------------------------------------------------------------------- comparison
def _level(observed: float | None, simulated: float | None) -> dict[str, float | None]:
    rel = None
    if observed is not None and simulated is not None and observed != 0:
        rel = simulated / observed - 1.0
    err = None if observed is None or simulated is None else simulated - observed
    return {"observed": observed, "simulated": simulated, "error": err, "rel_error": rel}


def _spearman(x: np.ndarray, y: np.ndarray) -> dict[str, float | int | None]:
    n = int(x.size)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"rho": None, "p_value": None, "n": n}  # undefined: too few coins or a constant ranking
    res = stats.spearmanr(x, y)
    return {"rho": float(res.statistic), "p_value": float(res.pvalue), "n": n}


def _simulated_coin(coin: str, row: Mapping[str, object]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in SIMULATED_COIN_KEYS + ("liquidation_notional_usd",):
        if key not in row:
            if key == "liquidation_notional_usd":
                continue
            raise DeleverInputError(
                f"simulated_per_coin[{coin!r}]: missing '{key}', expected keys {', '.join(SIMULATED_COIN_KEYS)}"
            )
        v = float(row[key])  # type: ignore[arg-type]
        if not (np.isfinite(v) and v >= 0):
            raise DeleverInputError(f"simulated_per_coin[{coin!r}]['{key}']: {row[key]!r}, expected a finite value >= 0")
        out[key] = v
    return out


def compare_multi_coin(
    observed: ObservedMultiCoin,
    simulated_per_coin: dict[str, dict],
    simulated_adl_events_per_account: np.ndarray,
    open_interest_usd: Mapping[str, float] | None = None,
) -> dict[str, object]:
    """Set a multi-coin simulation against the observed event.

    Args:
        observed: from :func:`read_observed_multi_coin`.
        simulated_per_coin: ``{coin: {"adl_notional_usd", "adl_count", "liquidation_count"
            [, "liquidation_notional_usd"]}}`` (USD, fills, liquidation events), values finite and >= 0.
        simulated_adl_events_per_account: int (A,), ADL fills per simulated account, >= 0. Accounts with 0
            are left out of the distribution (the observed table lists only ADL'd users) and counted in
            ``n_simulated_accounts_without_adl``.
        open_interest_usd: optional ``{coin: open interest}`` for the baseline: the Spearman rank
            correlation of open interest alone with the observed ADL notional over the same coins (for
            the assumed Hyperliquid open interest of ``delever.validate.HL_COINS`` it is 0.857 on 13 coins).

    Returns:
        A dict:

        * ``coins``: coins in both (sorted); ``coins_only_simulated``: simulated coins with no observed ADL row;
        * ``spearman_adl_notional``: ``{"rho", "p_value", "n"}``, ``scipy.stats.spearmanr`` of ADL notional
          by coin, simulated vs observed, over ``coins`` (rho None with fewer than 3 coins or a constant side);
        * ``baseline_open_interest_spearman``: same shape, open interest vs observed ADL notional over the
          coins in both that have an open interest (None without ``open_interest_usd``);
        * ``adl_notional_usd``, ``adl_count``: ``{"observed", "simulated", "error", "rel_error"}`` summed over
          ``coins``, plus ``observed_all_coins``;
        * ``liquidation_count``: simulated over all simulated coins against the observed total of all coins
          (per-coin observed counts are not available), same keys; ``liquidation_notional_usd`` likewise
          when both sides have it, else observed None;
        * ``adl_to_liquidation_count_ratio``: observed (all coins) vs simulated (sum ADL / sum liquidations
          of the simulated coins; None when it simulated no liquidation);
        * ``adl_events_per_account``: ``quantiles`` (:data:`EVENT_QUANTILES`), ``observed``/``simulated``
          quantiles (``numpy.quantile``, ``inverted_cdf``: values that occur), ``mean_observed``,
          ``mean_simulated``, ``ks_statistic``/``ks_p_value`` (``scipy.stats.ks_2samp``; None when no
          simulated account was ADL'd), ``n_observed``, ``n_simulated``, ``n_simulated_accounts_without_adl``;
        * ``coins_per_adl_user``: the observed mean (all users), the upper bound on the multi-coin share
          (all users) and the outlier subset's share, for reference;
        * ``notes``: what is compared with what.

    Raises:
        DeleverInputError: a simulated coin without the required keys or with a negative/non-finite value;
            event counts that are negative, non-integer or not 1-d.
    """
    sim = {str(c): _simulated_coin(str(c), row) for c, row in simulated_per_coin.items()}
    obs = observed.per_coin()
    both = sorted(set(sim) & set(obs))
    only_sim = sorted(set(sim) - set(obs))
    obs_adl = np.array([obs[c]["adl_notional_usd"] for c in both], dtype=np.float64)
    sim_adl = np.array([sim[c]["adl_notional_usd"] for c in both], dtype=np.float64)
    notes = [
        f"{len(both)} coins in both; ranking and ADL totals over them",
        "observed liquidations are known only as a total over all coins; the simulated count is over the "
        "simulated coins",
    ]
    if only_sim:
        notes.append(f"simulated coins without an observed ADL row (left out of the ranking): {', '.join(only_sim)}")

    baseline = None
    if open_interest_usd is not None:
        oi_coins = [c for c in both if c in open_interest_usd]
        baseline = _spearman(
            np.array([float(open_interest_usd[c]) for c in oi_coins]),
            np.array([obs[c]["adl_notional_usd"] for c in oi_coins], dtype=np.float64),
        )

    sim_liq = sum(v["liquidation_count"] for v in sim.values())
    sim_adl_n = sum(sim[c]["adl_count"] for c in both)
    sim_adl_all = sum(v["adl_count"] for v in sim.values())
    adl_notional = _level(float(obs_adl.sum()), float(sim_adl.sum()))
    adl_notional["observed_all_coins"] = observed.total_adl_notional_usd
    adl_count = _level(float(sum(obs[c]["adl_count"] for c in both)), float(sim_adl_n))
    adl_count["observed_all_coins"] = float(observed.total_adl_count)
    sim_liq_usd = (
        sum(v["liquidation_notional_usd"] for v in sim.values())
        if sim and all("liquidation_notional_usd" in v for v in sim.values())
        else None
    )

    ev = np.asarray(simulated_adl_events_per_account)
    if ev.ndim != 1:
        raise DeleverInputError(f"simulated_adl_events_per_account: expected a 1-d array, got shape {ev.shape}")
    evf = ev.astype(np.float64)
    bad = ~np.isfinite(evf) | (evf < 0) | (evf != np.round(evf))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DeleverInputError(f"simulated_adl_events_per_account[{i}]: {ev[i]!r}, expected an integer count >= 0")
    ev_int = evf.astype(np.int64)
    adl_d = ev_int[ev_int > 0]
    q = np.array(EVENT_QUANTILES)
    obs_ev = observed.adl_events_per_user
    events: dict[str, object] = {
        "quantiles": list(EVENT_QUANTILES),
        "observed": np.quantile(obs_ev, q, method="inverted_cdf").astype(float).tolist(),
        "simulated": np.quantile(adl_d, q, method="inverted_cdf").astype(float).tolist() if adl_d.size else None,
        "mean_observed": float(obs_ev.mean()),
        "mean_simulated": float(adl_d.mean()) if adl_d.size else None,
        "ks_statistic": None,
        "ks_p_value": None,
        "n_observed": int(obs_ev.size),
        "n_simulated": int(adl_d.size),
        "n_simulated_accounts_without_adl": int(ev_int.size - adl_d.size),
    }
    if adl_d.size:
        ks = stats.ks_2samp(obs_ev, adl_d)
        events["ks_statistic"], events["ks_p_value"] = float(ks.statistic), float(ks.pvalue)
    return {
        "coins": both,
        "coins_only_simulated": only_sim,
        "spearman_adl_notional": _spearman(sim_adl, obs_adl),
        "baseline_open_interest_spearman": baseline,
        "adl_notional_usd": adl_notional,
        "adl_count": adl_count,
        "liquidation_count": _level(float(observed.total_liquidation_count), float(sim_liq)),
        "liquidation_notional_usd": _level(observed.total_liquidation_notional_usd, sim_liq_usd),
        "adl_to_liquidation_count_ratio": _level(
            observed.adl_to_liquidation_count_ratio, (sim_adl_all / sim_liq) if sim_liq > 0 else None
        ),
        "adl_events_per_account": events,
        "coins_per_adl_user": {
            "observed_mean_all_users": observed.mean_coins_per_adl_user,
            "observed_max_multi_coin_share_all_users": observed.max_multi_coin_user_share,
            "observed_multi_coin_share_outlier_subset": observed.outlier_multi_coin_share,
            "outlier_subset_users": int(observed.outlier_coins_per_user.size),
        },
        "notes": notes + list(observed.notes),
    }
