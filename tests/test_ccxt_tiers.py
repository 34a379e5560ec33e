"""Binance USD-M brackets of every symbol: the ccxt LeverageTier reader and the venue's tier file."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from delever.errors import DeleverInputError
from delever.scenario import Scenario, load_scenario
from delever.tier_source import resolve_tiers
from delever.venues import load_venue
from delever.venues.ccxt_tiers import ccxt_margin_tiers, exchange_symbol, read_ccxt_leverage_tiers

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
FILE = DATA / "risk-params" / "binance_usdm_leverage_tiers_ccxt_2024-10-24.json.gz"
BINANCE = load_venue("binance-usdm")


def _raw() -> dict:
    with gzip.open(FILE, "rt") as fh:
        return json.load(fh)


@pytest.mark.parametrize("ccxt_symbol, symbol", [("ETH/USDT:USDT", "ETHUSDT"), ("SOL/USDT:USDT", "SOLUSDT"),
                                                  ("BTC/USDC:USDC", "BTCUSDC")])
def test_brackets_equal_the_file(ccxt_symbol, symbol):
    rows = _raw()[ccxt_symbol]
    got = read_ccxt_leverage_tiers(FILE)[symbol]
    assert got.ccxt_symbol == ccxt_symbol and got.currency == ccxt_symbol.split(":")[1]
    np.testing.assert_array_equal(got.tiers.floor_usd, [float(r["info"]["notionalFloor"]) for r in rows])
    np.testing.assert_array_equal(got.tiers.max_leverage, [float(r["info"]["initialLeverage"]) for r in rows])
    np.testing.assert_array_equal(got.tiers.mmr, [float(r["info"]["maintMarginRatio"]) for r in rows])
    np.testing.assert_array_equal(got.tiers.maint_amount_usd, [float(r["info"]["cum"]) for r in rows])
    assert got.max_notional == float(rows[-1]["info"]["notionalCap"])


def test_every_symbol_is_read_and_its_cum_is_the_recursion():
    table = read_ccxt_leverage_tiers(FILE)
    assert len(table) == 349
    assert {"BTCUSDT", "ETHUSDT", "SOLUSDT", "BTCUSDT_250328", "ETHBTC"} <= set(table)


def test_solusdt_maintenance_margin_by_hand():
    # SOLUSDT brackets (file): 0-20k 0.5 %, 20k-100k 0.65 % cum 30, 100k-800k 1 % cum 380, 800k-4M 2 % cum 8,380,
    # 4M-8M 2.5 % cum 28,380. MM = N * MMR - cum, floor < N <= cap.
    t = ccxt_margin_tiers(FILE, "SOLUSDT")
    notional = np.array([10_000.0, 20_000.0, 50_000.0, 800_000.0, 1_000_000.0, 5_000_000.0])
    want = [10_000 * 0.005, 20_000 * 0.005, 50_000 * 0.0065 - 30, 800_000 * 0.01 - 380,
            1_000_000 * 0.02 - 8_380, 5_000_000 * 0.025 - 28_380]
    np.testing.assert_allclose(t.maintenance_margin(notional), want, rtol=1e-12)
    assert ccxt_margin_tiers(FILE, "SOL/USDT:USDT") is t


def test_exchange_symbol():
    assert exchange_symbol("ETH/USDT:USDT") == "ETHUSDT"
    assert exchange_symbol("BTC/USDT:USDT-250328") == "BTCUSDT_250328"
    with pytest.raises(DeleverInputError, match="BASE/QUOTE:SETTLE"):
        exchange_symbol("ETHUSDT")


def _write(tmp_path: Path, doc) -> Path:
    p = tmp_path / "tiers.json"
    p.write_text(json.dumps(doc))
    return p


def _eth() -> dict:
    return {"ETH/USDT:USDT": copy.deepcopy(_raw()["ETH/USDT:USDT"])}


def _set(doc, tier, field, value):
    row = doc["ETH/USDT:USDT"][tier - 1]
    if field.startswith("info."):
        row["info"][field[5:]] = value
    elif value is None:
        del row[field]
    else:
        row[field] = value
    return doc


@pytest.mark.parametrize("tier, field, value, needle", [
    (3, "info.cum", "951.0", "tier 3: field 'info.cum' = 951.0 differs from the continuity recursion"),
    (2, "minNotional", 40_000.0, "tier 2: field 'minNotional' = 40000.0 differs from info.notionalFloor"),
    (2, "info.notionalFloor", "40000", "tier 2: field 'minNotional' = 50000.0 differs from info.notionalFloor"),
    (1, "maintenanceMarginRate", 0.0, "tier 1: field 'maintenanceMarginRate' = 0.0 differs"),
    (4, "maxLeverage", None, "tier 4: field 'maxLeverage' missing"),
    (2, "info.cum", "abc", "tier 2: field 'info.cum': expected a number"),
    (2, "info.cum", "nan", "tier 2: field 'info.cum': expected a finite number"),
    (1, "tier", 2.0, "tier 1: field 'tier' = 2.0 differs"),
    (2, "currency", "USDC", "tier 2: field 'currency' = 'USDC' differs from tier 1"),
])
def test_bad_fields_name_file_symbol_tier_and_field(tmp_path, tier, field, value, needle):
    p = _write(tmp_path, _set(_eth(), tier, field, value))
    with pytest.raises(DeleverInputError) as ei:
        read_ccxt_leverage_tiers(p)
    assert str(p.resolve()) in str(ei.value) and "ETH/USDT:USDT" in str(ei.value) and needle in str(ei.value)


def test_range_checks(tmp_path):
    doc = _eth()
    for row in doc["ETH/USDT:USDT"]:
        row["maintenanceMarginRate"] = row["info"]["maintMarginRatio"] = 0.0
    with pytest.raises(DeleverInputError, match=r"tier 1: field 'maintenanceMarginRate' = 0.0, expected in \(0, 1\]"):
        read_ccxt_leverage_tiers(_write(tmp_path, doc))
    doc = _eth()  # a gap: tier 3 starts above tier 2's cap
    doc["ETH/USDT:USDT"][2]["minNotional"], doc["ETH/USDT:USDT"][2]["info"]["notionalFloor"] = 700_000.0, "700000"
    with pytest.raises(DeleverInputError, match=r"tier 3: field 'minNotional' = 700000.0, expected 600000.0 .*contiguous"):
        read_ccxt_leverage_tiers(_write(tmp_path, doc))
    doc = _eth()
    doc["ETH/USDT:USDT"][0]["tier"], doc["ETH/USDT:USDT"][0]["info"]["bracket"] = 2.0, "2"
    with pytest.raises(DeleverInputError, match="tier 1: field 'tier' = 2, expected 1"):
        read_ccxt_leverage_tiers(_write(tmp_path, doc))


def test_bad_files(tmp_path):
    with pytest.raises(DeleverInputError, match="not found"):
        read_ccxt_leverage_tiers(tmp_path / "none.json")
    p = tmp_path / "x.json"
    p.write_text("{")
    with pytest.raises(DeleverInputError, match="not valid JSON"):
        read_ccxt_leverage_tiers(p)
    with pytest.raises(DeleverInputError, match="expected a JSON object"):
        read_ccxt_leverage_tiers(_write(tmp_path, [1]))
    with pytest.raises(DeleverInputError, match="ETHUSDT: key is not a ccxt symbol"):
        read_ccxt_leverage_tiers(_write(tmp_path, {"ETHUSDT": _eth()["ETH/USDT:USDT"]}))
    with pytest.raises(DeleverInputError, match="ETH/USDT:USDT: expected a non-empty list"):
        read_ccxt_leverage_tiers(_write(tmp_path, {"ETH/USDT:USDT": []}))
    with pytest.raises(DeleverInputError, match="no brackets for symbol 'FOOUSDT'"):
        ccxt_margin_tiers(FILE, "FOOUSDT")


def test_venue_keeps_the_packaged_btcusdt_table_and_reads_the_rest_from_the_file():
    btc = resolve_tiers(BINANCE, "BTCUSDT", DATA)
    assert btc.table == "preset binance-usdm tiers.BTCUSDT" and btc.as_of == "2021-03-18"
    np.testing.assert_array_equal(btc.tiers.floor_usd, BINANCE.tiers_for("BTCUSDT").floor_usd)
    assert btc.tiers.floor_usd[1] == 50_000 and btc.tiers.mmr[-1] == 0.5

    eth = resolve_tiers(BINANCE, "ETHUSDT", DATA)
    assert eth.as_of == "2024-10-24" and eth.symbol == "ETHUSDT" and eth.table.endswith(FILE.name)
    assert eth.tiers is read_ccxt_leverage_tiers(FILE)["ETHUSDT"].tiers
    assert eth.provenance()["mmr"][0] == 0.004 and "as of 2024-10-24" in eth.note()
    # USDC-margined BTC is its own symbol in the file (not the packaged USDT table)
    usdc = resolve_tiers(BINANCE, "BTCUSDC", DATA)
    assert usdc.symbol == "BTCUSDC" and usdc.tiers is read_ccxt_leverage_tiers(FILE)["BTCUSDC"].tiers
    assert usdc.tiers.floor_usd[2] == 500_000 != btc.tiers.floor_usd[2]
    assert resolve_tiers(BINANCE, "ETH/USDT:USDT", DATA).tiers is eth.tiers


def test_unknown_or_non_usd_symbol_is_one_line_saying_how_to_list(tmp_path):
    with pytest.raises(DeleverInputError) as ei:
        resolve_tiers(BINANCE, "FOOUSDT", DATA)
    msg = str(ei.value)
    assert "'FOOUSDT'" in msg and "349 symbols" in msg and "delever venues --symbols" in msg and "\n" not in msg
    with pytest.raises(DeleverInputError, match="ETHBTC brackets .* are in BTC notional"):
        resolve_tiers(BINANCE, "ETHBTC", DATA)
    with pytest.raises(DeleverInputError, match="tier_file.path: data file not found"):
        resolve_tiers(BINANCE, "ETHUSDT", tmp_path)
    with pytest.raises(DeleverInputError, match="'FOOUSDT'"):
        resolve_tiers(load_venue("hyperliquid"), "FOOUSDT", DATA)   # no tier file: the preset's error


def test_default_scenario_start_price_follows_the_instrument():
    assert load_scenario().market.start_price == 117_000.0
    assert load_scenario(overrides=['market.instrument="ETHUSDT"']).market.start_price == 4022.35
    assert load_scenario(overrides=['market.instrument="SOLUSDT"', "market.start_price=150"]).market.start_price == 150
    hist = Scenario.model_validate({"market": {"instrument": "ETHUSDT", "start_price_by_instrument": {"ETHUSDT": 4e3}},
                                    "price_driver": {"kind": "historical", "path": "x.csv"}})
    assert hist.market.start_price is None   # a historical driver keeps the file's own price level
    # by coin: Hyperliquid BTC, Drift SOL-PERP take the Binance symbol's price
    assert load_scenario(overrides=['market.instrument="BTC"']).market.start_price == 117_000.0
    assert load_scenario(overrides=['market.instrument="SOL-PERP"']).market.start_price == 207.44
    # no entry: no start price, and the shock refuses to build (test_cli: exit 2, one line)
    assert load_scenario(overrides=['market.instrument="FOOUSDT"']).market.start_price is None
