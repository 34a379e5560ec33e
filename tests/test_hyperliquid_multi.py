"""Observed multi-coin statistics of Hyperliquid 2025-10-10 and the comparison with a simulation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from delever.data.hyperliquid_multi import (
    EVENT_QUANTILES,
    ObservedMultiCoin,
    compare_multi_coin,
    read_observed_multi_coin,
)
from delever.errors import DeleverInputError

ADL_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "hyperliquid-2025-10-10-adl"


@pytest.fixture(scope="module")
def observed() -> ObservedMultiCoin:
    if not (ADL_DIR / "adl_by_coin_REALTIME.csv").exists():
        pytest.skip("real data not available")
    return read_observed_multi_coin(ADL_DIR)


def test_real_tables_rows_and_totals(observed):
    # PROVENANCE.md: 162 coins, 34,983 ADL fills, 63,637 liquidation fills, 19,337 ADL'd users, 2.10 bn USD.
    assert observed.coin.size == 162
    assert observed.total_adl_count == 34_983
    assert observed.total_liquidation_count == 63_637
    assert observed.n_adl_users == 19_337
    assert observed.total_adl_notional_usd == pytest.approx(2_103_111_430.859329, rel=1e-12)
    assert observed.adl_to_liquidation_count_ratio == pytest.approx(34_983 / 63_637)
    assert int(observed.adl_events_per_user.sum()) == 34_983 and observed.adl_events_per_user.min() >= 1
    assert observed.liquidation_count is None and observed.total_liquidation_notional_usd is None
    # Outlier subset: 480 fills of 294 users; 50 of them ADL'd in 2 or more coins.
    assert observed.outlier_coins_per_user.size == 294
    assert int((observed.outlier_coins_per_user >= 2).sum()) == 50
    assert observed.mean_coins_per_adl_user == pytest.approx(32_522 / 19_337)
    per = observed.per_coin()
    assert per["BTC"]["adl_count"] == 2443 and per["BTC"]["adl_notional_usd"] == pytest.approx(620_890_947.72634)
    assert any("294 users" in n for n in observed.notes)


def test_open_interest_baseline_matches_validation(observed):
    from delever.validate import HL_COINS

    oi = {c.coin: c.open_interest_usd for c in HL_COINS}
    # A simulation that ranks coins exactly as the open-interest assumption does scores the baseline.
    sim = {c: {"adl_notional_usd": v, "adl_count": 1, "liquidation_count": 2} for c, v in oi.items()}
    out = compare_multi_coin(observed, sim, np.array([1, 2]), open_interest_usd=oi)
    assert out["baseline_open_interest_spearman"]["n"] == 13
    assert out["baseline_open_interest_spearman"]["rho"] == pytest.approx(0.857, abs=5e-4)  # "0.86" in validate
    assert out["spearman_adl_notional"]["rho"] == pytest.approx(out["baseline_open_interest_spearman"]["rho"])
    assert out["adl_count"]["observed_all_coins"] == 34_983.0


# --------------------------------------------------------------------------- synthetic, known answers
def _obs() -> ObservedMultiCoin:
    return ObservedMultiCoin(
        coin=np.array(["A", "B", "C", "D"]),
        adl_notional_usd=np.array([400.0, 300.0, 200.0, 100.0]),
        adl_count=np.array([8, 6, 4, 2]),
        adl_users=np.array([4, 3, 2, 1]),
        liquidation_count=None,
        liquidation_notional_usd=None,
        total_liquidation_count=40,
        total_liquidation_notional_usd=None,
        adl_events_per_user=np.array([1, 1, 1, 2, 2, 3, 3, 5]),
        outlier_coins_per_user=np.array([1, 1, 2, 3]),
    )


def _sim(notional: dict[str, float], adl: int = 3, liq: int = 10) -> dict[str, dict]:
    return {c: {"adl_notional_usd": v, "adl_count": adl, "liquidation_count": liq} for c, v in notional.items()}


def test_compare_known_answers():
    obs = _obs()
    assert obs.total_adl_count == 20 and obs.adl_to_liquidation_count_ratio == 0.5
    assert obs.mean_coins_per_adl_user == 10 / 8 and obs.max_multi_coin_user_share == 0.25
    assert obs.outlier_multi_coin_share == 0.5
    same = compare_multi_coin(obs, _sim({"A": 40.0, "B": 30.0, "C": 20.0, "E": 5.0}), np.array([1, 1, 1, 2, 2, 3, 3, 5]))
    assert same["coins"] == ["A", "B", "C"] and same["coins_only_simulated"] == ["E"]
    assert same["spearman_adl_notional"]["rho"] == pytest.approx(1.0) and same["spearman_adl_notional"]["n"] == 3
    assert same["baseline_open_interest_spearman"] is None
    assert same["adl_notional_usd"]["observed"] == 900.0 and same["adl_notional_usd"]["simulated"] == 90.0
    assert same["adl_notional_usd"]["rel_error"] == pytest.approx(-0.9)
    assert same["adl_notional_usd"]["observed_all_coins"] == 1000.0
    assert same["adl_count"]["observed"] == 18.0 and same["adl_count"]["simulated"] == 9.0
    assert same["liquidation_count"]["observed"] == 40.0 and same["liquidation_count"]["simulated"] == 40.0
    assert same["liquidation_count"]["rel_error"] == 0.0
    # ratio: 4 coins x 3 ADL over 4 coins x 10 liquidations = 0.3 vs 20 / 40.
    ratio = same["adl_to_liquidation_count_ratio"]
    assert ratio["observed"] == 0.5 and ratio["simulated"] == pytest.approx(0.3)
    assert ratio["rel_error"] == pytest.approx(-0.4)
    ev = same["adl_events_per_account"]
    assert ev["quantiles"] == list(EVENT_QUANTILES)
    assert ev["observed"] == ev["simulated"] == [2.0, 3.0, 5.0, 5.0, 5.0, 5.0]
    assert ev["ks_statistic"] == 0.0 and ev["n_simulated"] == 8 and ev["n_simulated_accounts_without_adl"] == 0
    assert same["liquidation_notional_usd"]["observed"] is None


def test_compare_reversed_ranking_disjoint_events_and_baseline():
    obs = _obs()
    out = compare_multi_coin(
        obs,
        _sim({"A": 1.0, "B": 2.0, "C": 3.0, "D": 4.0}),
        np.array([0, 0, 10, 11, 12]),
        open_interest_usd={"A": 9.0, "B": 8.0, "C": 1.0, "D": 2.0},
    )
    assert out["spearman_adl_notional"]["rho"] == pytest.approx(-1.0)
    assert out["baseline_open_interest_spearman"]["rho"] == pytest.approx(0.8)  # ranks 1,2,4,3 vs 1,2,3,4
    ev = out["adl_events_per_account"]
    assert ev["ks_statistic"] == 1.0  # every simulated count exceeds every observed one
    assert ev["n_simulated"] == 3 and ev["n_simulated_accounts_without_adl"] == 2
    assert ev["simulated"][0] == 11.0 and ev["mean_simulated"] == 11.0


def test_compare_degenerate_and_bad_inputs():
    obs = _obs()
    few = compare_multi_coin(obs, _sim({"A": 1.0, "B": 2.0}, liq=0), np.zeros(3, dtype=int))
    assert few["spearman_adl_notional"]["rho"] is None and few["spearman_adl_notional"]["n"] == 2
    assert few["adl_to_liquidation_count_ratio"]["simulated"] is None
    assert few["adl_events_per_account"]["simulated"] is None and few["adl_events_per_account"]["ks_statistic"] is None
    with pytest.raises(DeleverInputError, match=r"simulated_per_coin\['A'\]: missing 'liquidation_count'"):
        compare_multi_coin(obs, {"A": {"adl_notional_usd": 1.0, "adl_count": 1}}, np.ones(2))
    with pytest.raises(DeleverInputError, match=r"\['adl_notional_usd'\]"):
        compare_multi_coin(obs, _sim({"A": -1.0}), np.ones(2))
    with pytest.raises(DeleverInputError, match=r"simulated_adl_events_per_account\[1\]"):
        compare_multi_coin(obs, _sim({"A": 1.0}), np.array([1.0, 1.5]))
