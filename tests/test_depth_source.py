"""A captured book must be of the scenario's instrument and near its price level."""

from __future__ import annotations

from pathlib import Path

import pytest

from delever.errors import DeleverInputError
from delever.runner import prepare
from delever.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
L2 = ROOT / "examples" / "binance-btcusdt-l2-2024-08-08.toml"
BOOK_DEPTH = ROOT / "examples" / "binance-btcusdt-2025-10-10.toml"


@pytest.mark.parametrize(("example", "sets", "needle"), [
    (L2, ['market.instrument="ETHUSDT"', "market.start_price=3000"], "captured book is BTCUSDT"),
    (L2, ["market.start_price=117000"], "within 20%"),
    (BOOK_DEPTH, ['market.instrument="SOLUSDT"'], "captured book is BTCUSDT"),
])
def test_captured_book_of_another_market_is_refused(example, sets, needle):
    if not DATA.is_dir():
        pytest.skip("shared data not available")
    with pytest.raises(DeleverInputError, match=needle):
        prepare(load_scenario(example, ["book.synthesize.positions=1000", *sets]), DATA)


def test_matching_capture_is_accepted():
    if not DATA.is_dir():
        pytest.skip("shared data not available")
    prep = prepare(load_scenario(L2, ["book.synthesize.positions=1000"]), DATA)
    assert prep.depth.symbol == "BTCUSDT"
