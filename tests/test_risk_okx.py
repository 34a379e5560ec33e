"""OKX tiers as ``TieredRisk``: the preset's BTC schedule against OKX's documented maintenance margin.

Source: okx.com/help "Adjustment of Perpetual Swap Tiered Maintenance Margin Ratio Schedule" (2019-05-31), BTC:
"1 | 0~999 | 0.5% | 100; 2 | 1,000~9,999 | 1.0% | 50; 3 | 10,000~14999 | 1.5% | 30; 4 | 15,000~24,999 | 2.0% | 20; ..."
(contracts of 100 USD; presets/okx.toml converts them to USD floors). OKX's maintenance margin is the position value
times the MMR of the position's tier (okx.com/help/tier: "The larger the user's position, the higher the maintenance
margin ratio"; no deduction is published), so the risk model uses ``whole_position_tiers`` of the preset's table;
the preset's own table carries the continuity deduction the engine uses.
"""

from __future__ import annotations

import numpy as np
import pytest

from delever.model import AccountBook, InstrumentRegistry
from delever.risk import Prices, TieredRisk
from delever.risk.tiered import whole_position_tiers
from delever.venues import load_venue

OKX = load_venue("okx")
FACE_USD = 100.0
PRESET = OKX.tiers_for("BTC-USDT-SWAP")
RISK = TieredRisk((whole_position_tiers(PRESET),), name="okx")


@pytest.mark.parametrize(("contracts", "mmr"), [(500, 0.005), (5_000, 0.01), (12_000, 0.015), (16_000, 0.02),
                                                (20_000, 0.02), (60_000, 0.03), (125_000, 0.05)])
def test_documented_mm_is_value_times_the_tier_mmr(contracts, mmr):
    price = 10_000.0
    reg = InstrumentRegistry.linear(["BTC-USDT-SWAP"])
    qty = contracts * FACE_USD / price                 # BTC
    book = AccountBook.from_rows(reg, [1], [0], [qty], [price], [False], [1e9], [0])
    r = RISK.evaluate(book, Prices(np.array([price]), np.array([price]), np.array([1.0])))
    assert float(r.maint_usd[0]) == pytest.approx(contracts * FACE_USD * mmr, rel=1e-12)
    assert float(r.initial_usd[0]) == pytest.approx(contracts * FACE_USD / PRESET.max_leverage_for(contracts * FACE_USD))


def test_preset_table_with_continuity_deduction_is_lower_above_tier_one():
    # 16,000 contracts (tier 4, 2 %): OKX 32,000 USD; the preset's continuous table 32,000 - 13,000 (deduction).
    value = 16_000 * FACE_USD
    assert float(PRESET.maintenance_margin(value)) == pytest.approx(value * 0.02 - 13_000.0)
    assert float(whole_position_tiers(PRESET).maintenance_margin(value)) == pytest.approx(value * 0.02)


def test_a_position_exactly_at_a_tier_floor_stays_in_the_lower_tier():
    # MarginTiers classes floor < N <= cap (Binance); OKX lists "15,000~24,999" as tier 4, so exactly 15,000 contracts
    # is tier 3 here (1.5 %) and tier 4 on OKX: a documented difference at the exact floor only.
    assert float(whole_position_tiers(PRESET).maintenance_margin(15_000 * FACE_USD)) == pytest.approx(22_500.0)
