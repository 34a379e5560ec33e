"""Multi-coin Hyperliquid validation on the account engine."""

from __future__ import annotations

from pathlib import Path

import pytest

import delever.validate as V
from delever.scenario import load_scenario
from delever.validate_multi import hyperliquid_multi_scenario, validate_hyperliquid_multi

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"


def test_example_is_the_validated_scenario():
    """examples/hyperliquid-2025-10-10-multi.toml and the validation run the same scenario (they cannot drift)."""
    ex = load_scenario(ROOT / "examples" / "hyperliquid-2025-10-10-multi.toml")
    assert ex.model_dump() == hyperliquid_multi_scenario().model_dump()


@pytest.fixture(scope="module")
def event():
    if not DATA.is_dir():
        pytest.skip("shared data not available")
    return validate_hyperliquid_multi(DATA, quick=True)


def test_headline_and_report(event, tmp_path):
    h = event["headline"]
    assert -1.0 <= h["spearman_adl_notional_by_coin"] <= 1.0
    assert h["spearman_open_interest_baseline"] == pytest.approx(0.857, abs=1e-3)
    assert h["adl_notional_usd"]["observed"] > 1e9 and h["adl_notional_usd"]["simulated"] >= 0
    assert h["adl_to_liquidation_count_ratio"]["observed"] == pytest.approx(34_983 / 63_637)
    assert h["accounts_liquidated_multi_instrument"] <= h["accounts_liquidated"]
    assert event["post_hoc_choices"]
    report = {"generated_utc": "2026-12-04T00:00:00Z", "quick": True, "data_dir": str(DATA), "events": [event],
              "wall_s": 1.0}
    view = V._json_view(report)
    assert view["hyperliquid_2025_10_10_multi"]["adl_notional_usd"]["observed"] == h["adl_notional_usd"]["observed"]
    V.write_validation(report, tmp_path)
    md = (tmp_path / "validation.md").read_text()
    assert "13 coins in one run" in md and "ADL fills per ADL'd account" in md


def test_binance_multi_example_is_the_validated_book():
    """The example runs the validation's book (the validation replays it; the example adds a [stress] section)."""
    from delever.scenario import validate_scenario
    from delever.validate_multi import binance_multi_raw

    ex = load_scenario(ROOT / "examples" / "binance-2025-10-10-multi.toml").model_dump()
    ref = validate_scenario(binance_multi_raw(), "x").model_dump()
    ex.pop("stress"), ref.pop("stress")
    assert ex == ref


def test_binance_multi_validation():
    if not DATA.is_dir():
        pytest.skip("shared data not available")
    from delever.validate_multi import validate_binance_multi

    ev = validate_binance_multi(DATA, quick=True)
    h = ev["headline"]
    assert len(h["pearson_lag0_by_coin"]) == 9
    assert -1 <= h["median_pearson_lag0"] <= 1
    assert h["spearman_totals_by_coin"] is not None
    assert len(ev["extra_tables"][0]["rows"]) == 9
