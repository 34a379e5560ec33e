"""Readers for Hyperliquid, Aave, StableSims, Tardis and ccxt files: real-data totals and bad-input cases.

Real files are read in place from ``../shared/data`` (skipped if absent); the figures checked are the
ones stated in each folder's PROVENANCE.md. Tardis and ccxt have no real files here: the tests write
small files in the documented formats.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from delever.data.aave import (
    read_aave_v2_liquidations,
    read_aave_v2_reserves,
    read_aave_v3_reserves,
)
from delever.data.ccxt_market import (
    read_ccxt_liquidations,
    read_ccxt_ohlcv,
    read_ccxt_order_books,
    read_ccxt_trades,
)
from delever.data.defi_eth import (
    read_eth_gas_10min,
    read_eth_ohlcv_10min,
    read_stablesims_day,
    read_uniswap_v2_reserves,
)
from delever.data.hyperliquid import (
    read_adl_by_coin,
    read_adl_by_user,
    read_adl_event,
    read_adl_outlier_fills,
    read_cascade_timing,
    read_hl_ledger_2023,
    read_hl_liquidations_2023,
    read_hl_trades_2023,
    read_insurance_fund,
    read_per_asset_isolation,
)
from delever.data.tardis import (
    DERIVATIVE_TICKER_COLUMNS,
    TRADE_COLUMNS,
    book_snapshot_columns,
    read_tardis_book_snapshots,
    read_tardis_derivative_ticker,
    read_tardis_liquidations,
    read_tardis_trades,
)
from delever.errors import DeleverInputError

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
HL_ADL = DATA / "hyperliquid-2025-10-10-adl"
HL_2023 = DATA / "hyperliquid-2023-official"
AAVE = DATA / "aave-v2-liquidations-2021"
RISK = DATA / "risk-params"
SIMS = DATA / "eth-10min-defi-crash-days-stablesims"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


# =========================================================================== Hyperliquid 2025-10-10
@pytest.fixture(scope="module")
def adl_event():
    return read_adl_event(need(HL_ADL))


def test_hl_adl_totals_match_provenance(adl_event):
    ev = adl_event
    assert ev.total_adl_events == 34_983
    assert ev.total_liquidations == 63_637
    assert len(ev.by_coin) == 162 and len(ev.net_volume) == 162
    assert len(ev.by_user) == 19_337 and np.unique(ev.by_user.user).size == 19_337
    assert int(ev.by_user.is_negative_equity.sum()) == 654
    assert ev.by_coin.adl_notional_usd.sum() == pytest.approx(2.103111430859e9, rel=1e-12)
    assert ev.summary.key_findings["total_adl_notional"] == pytest.approx(2_103_111_430.859329)
    assert int(ev.by_coin.negative_equity_count.sum()) == 1147
    btc = ev.net_volume.coin == "BTC"
    eth = ev.net_volume.coin == "ETH"
    assert ev.net_volume.avg_price[btc][0] == pytest.approx(106_428, abs=1)
    assert ev.net_volume.avg_price[eth][0] == pytest.approx(3_468, abs=1)
    assert ev.by_coin.num_events.dtype == np.int64 and ev.by_coin.adl_notional_usd.dtype == np.float64
    assert any("UTC-5" in n for n in ev.notes)


def test_hl_cascade_timing(adl_event):
    tm = adl_event.timing
    assert tm.second.size == 186 and tm.second[0] == 0 and tm.second[-1] == 714
    assert tm.delay_s == pytest.approx(61.704502)
    assert (tm.first_adl_us - tm.first_liquidation_us) == 61_704_502
    assert tm.first_liquidation_us == 1_760_130_903_127_372  # 2025-10-10 21:15:03.127372 UTC
    liq, adl = tm.dense_counts()
    assert liq.shape == (715,) and liq.sum() == 63_637 and adl.sum() == 34_983
    assert adl[:61].sum() == 0 and adl[61] == 11_279  # first ADL burst 61 s after the first liquidation
    assert tm.top_burst_second[0] == 61


def test_hl_json_summaries(adl_event):
    ins = adl_event.insurance_fund
    assert ins.total_adl_events == 34_983 and ins.underwater_accounts == 302
    assert ins.top_user.size == 10 and ins.top_coin[0] == "WLD"
    assert adl_event.batch.total_timestamps == 224 and adl_event.batch.timestamps_with_both == 100
    assert adl_event.batch.burst_liquidations[0] == 11_279
    iso = adl_event.isolation
    assert iso.cross_asset_case_count == 0 and iso.burst_liquidation_tickers[0] == 110
    assert adl_event.summary.events_processed == 3_239_706


def test_hl_outlier_fills(adl_event):
    f = adl_event.outlier_fills
    assert len(f) == 480
    assert f.time_ms.min() == 1_760_130_964_831 and f.time_ms.max() == 1_760_131_336_308
    btc = f.coin == "BTC"
    assert f.adl_price[btc].min() == 102_959.0 and f.adl_price[btc].max() == 108_416.0


def test_hl_2023_official_row_counts():
    liq = read_hl_liquidations_2023(need(HL_2023 / "liquidations.csv"))
    assert len(liq) == 62 and set(liq.leverage_type.tolist()) <= {"Cross", "Isolated"}
    ratio = liq.liquidated_ntl_pos_usd / liq.liquidated_account_value_usd
    assert 95 < np.median(ratio) < 115  # PROVENANCE: median ~106
    tr = read_hl_trades_2023(need(HL_2023 / "non_mm_trades.csv.gz"))
    assert len(tr) == 35_691
    btc = tr.px[tr.coin == "BTC"]
    assert btc.min() == pytest.approx(20_087, abs=1) and btc.max() == pytest.approx(30_769, abs=1)
    assert set(np.unique(tr.side).tolist()) == {-1, 1} and tr.crossed.dtype == bool
    led = read_hl_ledger_2023(need(HL_2023 / "non_mm_ledger_updates.csv"))
    assert len(led) == 560 and led.time_ms[0] == 1_677_429_845_000  # 2023-02-26T16:44:05Z


def test_hl_bad_csv_rows(tmp_path):
    p = tmp_path / "adl_by_coin.csv"
    head = (
        "coin,adl_notional,closed_pnl,leverage_realtime,pnl_percent,is_negative_equity,num_users,num_events\n"
    )
    p.write_text(head + "BTC,1.0,2.0,3.0,4.0,0,1,1\nETH,abc,2.0,3.0,4.0,0,1,1\n")
    with pytest.raises(
        DeleverInputError, match=r"row 2: field 'adl_notional' = 'abc', expected a number"
    ) as e:
        read_adl_by_coin(p)
    assert str(p) in one_line(e)
    p.write_text(head + "BTC,1.0,2.0,3.0,4.0,0,1,1\nBTC,1.0,2.0,3.0,4.0,0,1,1\n")
    with pytest.raises(DeleverInputError, match=r"row 2: field 'coin' = 'BTC' repeats row 1"):
        read_adl_by_coin(p)
    p.write_text(head + "BTC,1.0,2.0,3.0,4.0,0,1\n")
    with pytest.raises(DeleverInputError, match=r"row 1: expected 8 comma-separated columns, got 7"):
        read_adl_by_coin(p)
    p.write_text(head + "BTC,1.0,2.0,3.0,4.0,0,1,1\n\nETH,1.0,2.0,3.0,4.0,0,1,1\n")
    with pytest.raises(DeleverInputError, match=r"row 2: blank line, expected 8"):
        read_adl_by_coin(p)  # a blank line is not skipped silently
    p.write_text(head.replace("num_users", "users") + "BTC,1.0,2.0,3.0,4.0,0,1,1\n")
    with pytest.raises(DeleverInputError, match="header is not the HyperReplay adl_by_coin CSV header"):
        read_adl_by_coin(p)
    u = tmp_path / "u.csv.gz"
    uh = "user,adl_notional,closed_pnl,leverage_realtime,pnl_percent,account_value_realtime,is_negative_equity,num_adl_events\n"
    u.write_bytes(gzip.compress((uh + "0xa,1,1,1,1,1,maybe,1\n").encode()))
    with pytest.raises(
        DeleverInputError, match=r"row 1: field 'is_negative_equity' = 'maybe', expected true or false"
    ):
        read_adl_by_user(u)


def test_hl_outlier_time_columns_must_agree(tmp_path):
    src = need(HL_ADL / "high_leverage_outliers_analysis.csv.gz")
    lines = gzip.decompress(src.read_bytes()).decode().splitlines()
    fields = lines[1].split(",")
    fields[-1] = "21:17:07"  # time_str one second off
    p = tmp_path / "o.csv"
    p.write_text("\n".join([lines[0], ",".join(fields)]) + "\n")
    with pytest.raises(DeleverInputError, match=r"row 1: field 'time_str' = '21:17:07', expected 21:17:06"):
        read_adl_outlier_fills(p)


def test_hl_json_inconsistencies_raise(tmp_path):
    doc = json.loads(need(HL_ADL / "cascade_timing_results.json").read_text())
    doc["delay_seconds"] = 60.0
    p = tmp_path / "c.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(
        DeleverInputError, match=r"field 'delay_seconds' = 60.0, expected first_adl - first_liquidation"
    ):
        read_cascade_timing(p)
    doc = json.loads((HL_ADL / "cascade_timing_results.json").read_text())
    doc["top_bursts"][1]["adls"] += 1
    p.write_text(json.dumps(doc))
    with pytest.raises(DeleverInputError, match=r"field 'top_bursts\[1\]'.*timeline entry of second 122"):
        read_cascade_timing(p)
    doc = json.loads((HL_ADL / "cascade_timing_results.json").read_text())
    doc["timeline"][5]["second"] = doc["timeline"][4]["second"]
    p.write_text(json.dumps(doc))
    with pytest.raises(DeleverInputError, match=r"field 'timeline\[5\].second'"):
        read_cascade_timing(p)
    ins = json.loads((HL_ADL / "insurance_fund_results.json").read_text())
    ins["underwater_accounts"] = 303
    p.write_text(json.dumps(ins))
    with pytest.raises(DeleverInputError, match="underwater_share_percent"):
        read_insurance_fund(p)
    iso = json.loads((HL_ADL / "per_asset_isolation_results.json").read_text())
    iso["cross_asset_case_count"] = 1
    p.write_text(json.dumps(iso))
    with pytest.raises(DeleverInputError, match="cross_asset_case_count"):
        read_per_asset_isolation(p)
    del iso["jaccard_min_first_100"]
    iso["cross_asset_case_count"] = 0
    p.write_text(json.dumps(iso))
    with pytest.raises(DeleverInputError, match="field 'jaccard_min_first_100' is missing"):
        read_per_asset_isolation(p)


def test_hl_event_cross_check_detects_mismatch(tmp_path):
    src = need(HL_ADL)
    for f in src.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    text = (tmp_path / "adl_net_volume_full_12min.csv").read_text().splitlines()
    cols = text[1].split(",")  # BTC row
    cols[4] = str(int(cols[4]) + 1)
    text[1] = ",".join(cols)
    (tmp_path / "adl_net_volume_full_12min.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(DeleverInputError, match="ADL events of BTC differs"):
        read_adl_event(tmp_path)


# =========================================================================== Aave
@pytest.fixture(scope="module")
def aave_liq():
    return read_aave_v2_liquidations(need(AAVE / "liquidations.csv.gz"))


def test_aave_v2_counts_per_day(aave_liq):
    liq = aave_liq
    assert len(liq) == 11_497
    days, counts = liq.counts_per_day()
    per = dict(zip(days.tolist(), counts.tolist(), strict=True))
    assert per["2021-05-19"] == 679 and per["2021-05-23"] == 1_113
    assert per["2022-01-22"] == 667 and per["2022-01-21"] == 548 and per["2021-05-20"] == 398
    assert counts.sum() == 11_497
    assert (liq.pool == "0xb53c1a33016b2dc2ff3653530bff1848a515c8c5").sum() == 11_384
    assert (liq.collateral_symbol == "WETH").sum() == 5_625


def test_aave_v2_two_encodings_detected_and_reported(aave_liq):
    liq = aave_liq
    assert (liq.encoding == 0).sum() == 6_231 and (liq.encoding == 1).sum() == 5_266
    assert (liq.encoding[:6231] == 0).all() and (liq.encoding[6231:] == 1).all()
    assert any("rows 1-6231" in n and "rows 6232-11497" in n for n in liq.notes)
    assert any("not in time order" in n for n in liq.notes)
    assert any("UST (1 rows)" in n for n in liq.notes)
    bad = ~liq.price_consistent
    assert bad.sum() == 111 and any("111 rows" in n for n in liq.notes)


def test_aave_v2_recomputed_usd_values(aave_liq):
    liq = aave_liq
    # First data row: 330855192754556269 wei-units of WETH (18 dec), USDT price 4.9338e14 wei -> ETH 2026.83 USD
    assert liq.collateral_amount[0] == pytest.approx(0.330855192754556269, rel=1e-15)
    assert liq.eth_usd[0] == pytest.approx(1e18 / 493380000000000.0, rel=1e-12)
    assert liq.debt_amount[0] == pytest.approx(639.17)  # 63917 GUSD base units, 2 decimals
    # PROVENANCE: upstream USD price of WETH collateral 2,178-4,671 -- that column exists only in the
    # second encoding; the recomputed first-encoding prices reach back to Dec 2020 (~600 USD).
    weth = liq.collateral_symbol == "WETH"
    second = weth & (liq.encoding == 1)
    assert liq.collateral_price_usd[second].min() == pytest.approx(2_178.27, abs=0.01)
    assert liq.collateral_price_usd[second].max() == pytest.approx(4_671.19, abs=0.01)
    first = weth & (liq.encoding == 0)
    assert 590 < liq.collateral_price_usd[first].min() < 610 and liq.collateral_price_usd[first].max() < 4_000
    # Recomputed values land on the governance bonus levels: WETH collateral bonus 5 %
    bonus = liq.implied_bonus
    ok = liq.price_consistent & weth
    assert np.median(bonus[ok]) == pytest.approx(0.05, abs=1e-9)
    assert np.mean(np.abs(bonus[ok] - 0.05) < 1e-3) > 0.9
    assert 790e6 < liq.collateral_usd.sum() < 800e6
    assert liq.collateral_usd.dtype == np.float64 and liq.timestamp_s.dtype == np.int64


def test_aave_v2_reserves():
    res = read_aave_v2_reserves(need(AAVE / "tokens_reserve_params.csv"))
    assert len(res) == 52
    i = res.index("WETH", "0xb53c1a33016b2dc2ff3653530bff1848a515c8c5")
    assert res.liquidation_threshold_bps[i] == 8500 and res.liquidation_bonus_bps[i] == 10500
    assert res.liquidation_bonus[i] == pytest.approx(0.05) and res.decimals[i] == 18
    j = res.index("WBTC", "0xb53c1a33016b2dc2ff3653530bff1848a515c8c5")
    assert (res.liquidation_threshold_bps[j], res.liquidation_bonus_bps[j], res.decimals[j]) == (
        7500,
        10750,
        8,
    )
    k = res.index("LINK", "0xb53c1a33016b2dc2ff3653530bff1848a515c8c5")
    assert (res.liquidation_threshold_bps[k], res.liquidation_bonus_bps[k]) == (7500, 11000)
    assert res.index("NOPE", "0xb53c1a33016b2dc2ff3653530bff1848a515c8c5") == -1


def test_aave_v2_reserves_bad_rows(tmp_path):
    lines = need(AAVE / "tokens_reserve_params.csv").read_text().splitlines()
    p = tmp_path / "tokens.csv"
    p.write_text("\n".join([lines[0], lines[1], lines[1]]) + "\n")
    with pytest.raises(
        DeleverInputError, match=r"row 2: field 'symbol' = 'TUSD', expected one row per reserve and pool"
    ):
        read_aave_v2_reserves(p)
    p.write_text("\n".join([lines[0], lines[1].replace("10500.0", "10500.5")]) + "\n")
    with pytest.raises(
        DeleverInputError, match=r"row 1: field 'reserveLiquidationBonus' = '10500.5', expected whole basis"
    ):
        read_aave_v2_reserves(p)
    p.write_text("\n".join([lines[0], lines[1].replace(",0x0000000000085d", ",0xZZ00000000085d")]) + "\n")
    with pytest.raises(
        DeleverInputError, match=r"row 1: field 'id'.*asset address followed by the pool address"
    ):
        read_aave_v2_reserves(p)


def _aave_rows(tmp_path: Path, rows: list[str]) -> Path:
    src = need(AAVE / "liquidations.csv.gz")
    header = gzip.decompress(src.read_bytes()).split(b"\n", 1)[0].decode()
    p = tmp_path / "liquidations.csv"
    p.write_text("\n".join([header, *rows]) + "\n")
    (tmp_path / "tokens_reserve_params.csv").write_bytes((AAVE / "tokens_reserve_params.csv").read_bytes())
    return p


RAW_ROW = (
    "330855192754556269,WETH,0xb53c1a33016b2dc2ff3653530bff1848a515c8c5,63917,GUSD,1626124715,"
    "0x3424b949dbc5d2d2654cb6fc622c4d723b2e8fb4,liquidation,493380000000000.0,446377218623049.0,"
    "0.9047331035369268,,,57827.82577876975,,,,,,,,"
)


def test_aave_v2_bad_rows(tmp_path):
    liq = read_aave_v2_liquidations(_aave_rows(tmp_path, [RAW_ROW]))
    assert len(liq) == 1 and liq.encoding[0] == 0
    assert liq.debt_price_usd[0] == pytest.approx(446377218623049.0 / 493380000000000.0)
    with pytest.raises(
        DeleverInputError, match=r"row 2: field 'collateralAmount' = '3.5', expected a raw integer"
    ):
        read_aave_v2_liquidations(_aave_rows(tmp_path, [RAW_ROW, "3.5" + RAW_ROW[18:]]))
    with pytest.raises(
        DeleverInputError, match=r"row 1: field 'principalReserve' = 'XYZ', expected a reserve listed"
    ):
        read_aave_v2_liquidations(_aave_rows(tmp_path, [RAW_ROW.replace(",GUSD,", ",XYZ,")]))
    with pytest.raises(
        DeleverInputError,
        match=r"row 1: field 'reservePriceETHPrincipal' = '', expected the asset's oracle price",
    ):
        read_aave_v2_liquidations(_aave_rows(tmp_path, [RAW_ROW.replace("446377218623049.0", "")]))
    with pytest.raises(DeleverInputError, match=r"row 1: field 'type' = 'repay', expected liquidation"):
        read_aave_v2_liquidations(_aave_rows(tmp_path, [RAW_ROW.replace(",liquidation,", ",repay,")]))
    # second encoding without USD prices
    scaled = "1.5,WETH,0xb53c1a33016b2dc2ff3653530bff1848a515c8c5,3000.0,USDC,1643887767,0xab,liquidation,,0.0004,,1.0,2600.0,,,,,,,,,"
    with pytest.raises(
        DeleverInputError, match=r"row 1: field 'reservePriceUSDPrincipal' = '', expected a price > 0"
    ):
        read_aave_v2_liquidations(_aave_rows(tmp_path, [scaled]))


def test_aave_v3_json_and_flat_csv_agree():
    js = read_aave_v3_reserves(need(RISK / "aave_v3_ethereum_reserves_snapshot_2023-10-31.json"))
    fl = read_aave_v3_reserves(need(RISK / "aave_v3_ethereum_reserves_2023-10-31_flat.csv"))
    assert len(js) == len(fl) == 25
    order_j, order_f = np.argsort(js.symbol), np.argsort(fl.symbol)
    for name in ("decimals", "ltv_bps", "liquidation_threshold_bps", "liquidation_bonus_bps", "supply_cap",
                 "oracle_latest_answer", "oracle_decimals", "emode_category", "is_frozen"):  # fmt: skip
        assert np.array_equal(getattr(js, name)[order_j], getattr(fl, name)[order_f]), name
    w = js.symbol == "WETH"
    assert (js.ltv_bps[w][0], js.liquidation_threshold_bps[w][0], js.liquidation_bonus_bps[w][0]) == (
        8050,
        8300,
        10500,
    )
    assert js.price_usd[w][0] == pytest.approx(1_816.85, abs=0.01)
    assert js.price_usd[js.symbol == "WBTC"][0] == pytest.approx(34_814.14, abs=0.01)
    u = js.symbol == "USDC"
    assert (js.ltv_bps[u][0], js.liquidation_threshold_bps[u][0], js.liquidation_bonus_bps[u][0]) == (
        7700,
        8000,
        10450,
    )
    assert js.emodes[1]["liquidationThreshold"] == 9300 and js.emodes[1]["liquidationBonus"] == 10100
    assert np.isnan(js.price_usd[js.symbol == "rETH"][0]) and any("rETH" in n for n in js.notes)


def test_aave_v3_bad_values(tmp_path):
    src = need(RISK / "aave_v3_ethereum_reserves_2023-10-31_flat.csv").read_text().splitlines()
    cols = src[0].split(",")
    row = src[1].split(",")
    row[cols.index("ltv")] = "9999"  # ltv above the liquidation threshold
    p = tmp_path / "flat.csv"
    p.write_text("\n".join([src[0], ",".join(row)]) + "\n")
    with pytest.raises(DeleverInputError, match=r"row 1: expected 0 <= ltv \(9999\) <= liquidationThreshold"):
        read_aave_v3_reserves(p)
    doc = json.loads((RISK / "aave_v3_ethereum_reserves_snapshot_2023-10-31.json").read_text())
    first = next(iter(doc["reserves"]))
    doc["reserves"][first]["liquidationBonus"] = "10750"
    j = tmp_path / "snap.json"
    j.write_text(json.dumps(doc))
    with pytest.raises(
        DeleverInputError, match=rf"field 'reserves.{first}.liquidationBonus' = '10750', expected an integer"
    ):
        read_aave_v3_reserves(j)


# =========================================================================== StableSims
def test_stablesims_days_and_documented_quirks():
    d = read_stablesims_day(need(SIMS), "2020-09-05")
    o = d.ohlcv
    assert len(o) == 144 and np.unique(o.start_ms).size == 142
    assert o.start_ms[0] == o.start_ms[1] == o.start_ms[2] == 1_599_265_200_000  # 2020-09-05 00:20 UTC
    assert any("00:20 appears 3 times (records 1, 2, 3" in n for n in o.notes)
    assert any("2 of the day's 144 ten-minute buckets missing (00:00, 00:10)" in n for n in o.notes)
    dd = o.without_exact_duplicates()
    assert len(dd) == 142 and "records 2, 3 removed" in dd.notes[-1] and len(o) == 144
    crash = read_stablesims_day(SIMS, "2021-05-19")
    assert crash.ohlcv.low.min() == 1_862.04 and crash.ohlcv.high.max() == 3_441.29
    sp = crash.reserves.spot_price
    assert 2_035 < sp.min() < 2_036 and 3_010 < sp.max() < 3_011
    assert crash.notes == []
    black = read_stablesims_day(SIMS, "2020-03-12")
    assert black.reserves is None and any("no Uniswap reserves file" in n for n in black.notes)
    assert black.ohlcv.low.min() == 101.01 and black.ohlcv.high.max() == 195.43
    assert black.gas.avg_gwei[0] < 15 and black.gas.avg_gwei.max() > 100  # ~10 gwei rising past 100
    assert black.gas.start_ms.dtype == np.int64 and len(black.gas) == 144


def test_stablesims_gas_file_with_wrong_year_is_reported():
    g = read_eth_gas_10min(need(SIMS / "eth_gas" / "02-22-2021.json.gz"))
    assert len(g) == 144
    assert any("file name says 2021-02-22 but the buckets are on 2020-02-22" in n for n in g.notes)
    assert g.start_ms[0] == 1_582_329_600_000  # 2020-02-22 00:00 UTC


def test_stablesims_uniswap_sell_and_day(tmp_path):
    r = read_uniswap_v2_reserves(need(SIMS / "uniswap_v2_eth_dai_reserves_10min" / "05-19-2021.json.gz"))
    assert len(r) == 144 and r.start_ms[0] == 1_621_382_400_000 and np.all(np.diff(r.start_ms) == 600_000)
    out = r.sell_weth(100.0)
    assert np.all(out < 100.0 * r.spot_price) and np.all(out > 0.95 * 100.0 * r.spot_price)
    p = tmp_path / "reserves.json"
    p.write_text(json.dumps([{"DAI": 2000.0, "WETH": 1.0}, {"DAI": 2000.0, "WETH": 1.0}]))
    with pytest.raises(DeleverInputError, match="pass day='YYYY-MM-DD'"):
        read_uniswap_v2_reserves(p)
    rr = read_uniswap_v2_reserves(p, day="2021-05-19")
    assert len(rr) == 2 and any("2 buckets, expected 144" in n for n in rr.notes)
    p.write_text(json.dumps([{"DAI": 2000.0, "WETH": -1.0}]))
    with pytest.raises(DeleverInputError, match=r"record 1: field 'WETH' = -1.0, expected a value > 0"):
        read_uniswap_v2_reserves(p, day="2021-05-19")


def _ohlcv_rec(start: str, o=100.0, h=101.0, lo=99.0, c=100.5, v=1.0, n=3) -> dict:
    hh, mm = int(start[11:13]), int(start[14:16])
    end = f"{start[:11]}{hh + (mm + 10) // 60:02d}:{(mm + 10) % 60:02d}:00.0000000Z"
    return {
        "time_period_start": start, "time_period_end": end,
        "time_open": start.replace(":00.0000000Z", ":01.0000000Z"), "time_close": start.replace(":00.0000000Z", ":59.0000000Z"),
        "price_open": o, "price_high": h, "price_low": lo, "price_close": c, "volume_traded": v, "trades_count": n,
    }  # fmt: skip


def test_stablesims_ohlcv_bad_records(tmp_path):
    p = tmp_path / "05-19-2021.json"
    recs = [_ohlcv_rec("2021-05-19T00:00:00.0000000Z"), _ohlcv_rec("2021-05-19T00:10:00.0000000Z")]
    p.write_text(json.dumps(recs))
    o = read_eth_ohlcv_10min(p)
    assert len(o) == 2 and any("142 of the day's 144" in n for n in o.notes)
    bad = [recs[0], _ohlcv_rec("2021-05-19T00:10:00.0000000Z", lo=101.0, o=100.0)]
    p.write_text(json.dumps(bad))
    with pytest.raises(DeleverInputError, match=r"record 2: field 'price_low/price_high'"):
        read_eth_ohlcv_10min(p)
    p.write_text(json.dumps([recs[0], _ohlcv_rec("2021-05-19T00:00:00.0000000Z", c=100.7)]))
    with pytest.raises(DeleverInputError, match=r"record 2: field 'time_period_start'.*different values"):
        read_eth_ohlcv_10min(p)
    p.write_text(json.dumps([recs[1], recs[0]]))
    with pytest.raises(DeleverInputError, match=r"record 2: .*time order"):
        read_eth_ohlcv_10min(p)
    r = dict(recs[0])
    del r["volume_traded"]
    p.write_text(json.dumps([r]))
    with pytest.raises(DeleverInputError, match=r"record 1: field 'volume_traded' is missing"):
        read_eth_ohlcv_10min(p)
    p.write_text(json.dumps([_ohlcv_rec("2021-05-19T00:05:00.0000000Z")]))
    with pytest.raises(DeleverInputError, match="10-minute grid"):
        read_eth_ohlcv_10min(p)


# =========================================================================== Tardis (test-written files)
T0 = 1_760_131_200_000_000  # 2025-10-10 21:20:00 UTC in µs


def _csv(tmp_path: Path, name: str, header: tuple[str, ...], rows: list[str], gz: bool = True) -> Path:
    text = "\n".join([",".join(header), *rows]) + "\n"
    p = tmp_path / name
    p.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return p


def test_tardis_trades(tmp_path):
    rows = [
        f"binance-futures,BTCUSDT,{T0},{T0 + 150},6489162510,sell,121000.5,0.004",
        f"binance-futures,BTCUSDT,{T0 + 1000},{T0 + 1200},,buy,121001.0,1.25",
        f"bitmex,XBTUSD,{T0 + 2000},{T0 + 2000},a-b,unknown,121002,100",
    ]
    t = read_tardis_trades(_csv(tmp_path, "trades.csv.gz", TRADE_COLUMNS, rows))
    assert len(t) == 3 and t.timestamp_us.dtype == np.int64
    assert t.side.tolist() == [-1, 1, 0] and t.id.tolist() == ["6489162510", "", "a-b"]
    assert t.price.sum() == pytest.approx(363003.5) and t.local_timestamp_us[0] == T0 + 150
    plain = read_tardis_trades(_csv(tmp_path, "trades.csv", TRADE_COLUMNS, rows, gz=False))
    assert np.array_equal(plain.amount, t.amount)


def test_tardis_trades_bad_input(tmp_path):
    good = f"binance-futures,BTCUSDT,{T0},{T0 + 150},1,sell,121000.5,0.004"
    cases = [
        (
            [good, f"binance-futures,BTCUSDT,{T0},{T0 + 100},2,sell,1,1"],
            r"row 2: field 'local_timestamp'.*ordered by local_timestamp",
        ),
        (
            [f"binance-futures,BTCUSDT,{T0 // 1000},{T0},1,sell,1,1"],
            r"row 1: field 'timestamp' = 1760131200000, expected epoch microseconds",
        ),
        (
            [f"binance-futures,BTCUSDT,{T0},{T0},1,short,1,1"],
            r"row 1: field 'side' = 'short', expected buy, sell or unknown",
        ),
        (
            [f"binance-futures,BTCUSDT,{T0},{T0},1,buy,0,1"],
            r"row 1: field 'price' = '0', expected a price > 0",
        ),
        ([f"binance-futures,BTCUSDT,{T0},{T0},1,buy,x,1"], r"row 1: field 'price' = 'x', expected a number"),
        ([f"binance-futures,BTCUSDT,{T0},{T0},1,buy,1,"], r"row 1: field 'amount' = '', expected a number"),
        ([f"binance-futures,BTCUSDT,{T0},{T0},1,buy,1"], r"row 1: expected 8 comma-separated columns, got 7"),
    ]
    for rows, pattern in cases:
        with pytest.raises(DeleverInputError, match=pattern) as e:
            read_tardis_trades(_csv(tmp_path, "t.csv.gz", TRADE_COLUMNS, rows))
        assert "t.csv.gz" in one_line(e)
    p = tmp_path / "wrong.csv"
    p.write_text("exchange,symbol,timestamp,local_timestamp,id,side,amount,price\n")
    with pytest.raises(DeleverInputError, match="header is not the Tardis trades CSV header"):
        read_tardis_trades(p)


def test_tardis_empty_day_file_and_liquidations(tmp_path):
    empty = tmp_path / "empty.csv.gz"
    empty.write_bytes(gzip.compress(b""))
    t = read_tardis_trades(empty)
    assert len(t) == 0 and "empty file" in t.notes[0]
    rows = [
        f"binance-futures,BTCUSDT,{T0},{T0 + 10},,sell,110000,0.5",
        f"binance-futures,BTCUSDT,{T0 + 5},{T0 + 20},,buy,110500,0.25",
    ]
    liq = read_tardis_liquidations(_csv(tmp_path, "liq.csv.gz", TRADE_COLUMNS, rows))
    assert liq.side.tolist() == [-1, 1] and liq.liquidated_position.tolist() == [
        1,
        -1,
    ]  # sell = long liquidated
    assert (liq.price * liq.amount).sum() == pytest.approx(82_625.0)


def test_tardis_book_snapshots(tmp_path):
    cols = book_snapshot_columns(5)
    assert len(book_snapshot_columns(25)) == 4 + 25 * 4 and cols[4:8] == (
        "asks[0].price",
        "asks[0].amount",
        "bids[0].price",
        "bids[0].amount",
    )

    def row(t: int, bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> str:
        cells = ["binance-futures", "BTCUSDT", str(t), str(t + 5)]
        for i in range(5):
            a = asks[i] if i < len(asks) else ("", "")
            b = bids[i] if i < len(bids) else ("", "")
            cells += [str(a[0]), str(a[1]), str(b[0]), str(b[1])]
        return ",".join(cells)

    bids = [(100.0 - i, 1.0 + i) for i in range(5)]
    asks = [(101.0 + i, 2.0 + i) for i in range(5)]
    rows = [row(T0, bids, asks), row(T0 + 1000, bids[:3], asks), row(T0 + 2000, [(102.0, 1.0)], asks)]
    b = read_tardis_book_snapshots(_csv(tmp_path, "book.csv.gz", cols, rows))
    assert b.levels == 5 and b.bid_price.shape == (3, 5)
    assert b.bid_price[0].tolist() == [100.0, 99.0, 98.0, 97.0, 96.0]
    assert np.isnan(b.bid_price[1, 3:]).all() and b.mid_price[0] == pytest.approx(100.5)
    assert any("1 crossed snapshot(s)" in n and "rows 3" in n for n in b.notes)
    with pytest.raises(
        DeleverInputError,
        match=r"row 1: field 'bids\[2\].price' = 100.0, expected a price strictly below level 1",
    ):
        read_tardis_book_snapshots(
            _csv(tmp_path, "b.csv.gz", cols, [row(T0, [(100, 1), (99, 1), (100, 1)], asks)])
        )
    hole = row(T0, bids, asks).split(",")
    hole[4 + 4 * 1 + 2], hole[4 + 4 * 1 + 3] = "", ""  # bids[1] empty, bids[2..] present
    with pytest.raises(
        DeleverInputError,
        match=r"row 1: field 'bids\[2\].price' = 98.0, expected empty, because level 1 is empty",
    ):
        read_tardis_book_snapshots(_csv(tmp_path, "b.csv.gz", cols, [",".join(hole)]))
    empty = tmp_path / "empty_book.csv.gz"
    empty.write_bytes(gzip.compress(b""))
    eb = read_tardis_book_snapshots(empty)
    assert len(eb) == 0 and "empty file" in eb.notes[0]
    wide = read_tardis_book_snapshots(_csv(tmp_path, "b25.csv", book_snapshot_columns(25), [], gz=False))
    assert wide.levels == 25 and wide.bid_price.shape == (0, 25) and "header only" in wide.notes[0]
    half = row(T0, bids, asks).split(",")
    half[4 + 1] = ""  # asks[0].amount missing
    with pytest.raises(DeleverInputError, match=r"row 1: field 'asks\[0\].price/amount'"):
        read_tardis_book_snapshots(_csv(tmp_path, "b.csv.gz", cols, [",".join(half)]))


def test_tardis_derivative_ticker(tmp_path):
    rows = [
        f"binance-futures,BTCUSDT,{T0},{T0 + 100},{T0 + 3_600_000_000},0.0001,0.00012,81234.5,121000,120990.5,120995",
        f"binance-futures,BTCUSDT,{T0 + 1000},{T0 + 1100},,,,,121001,,",
    ]
    d = read_tardis_derivative_ticker(_csv(tmp_path, "dt.csv.gz", DERIVATIVE_TICKER_COLUMNS, rows))
    assert len(d) == 2 and d.funding_timestamp_us.tolist() == [T0 + 3_600_000_000, -1]
    assert d.funding_rate[0] == pytest.approx(1e-4) and np.isnan(d.funding_rate[1])
    assert np.isnan(d.mark_price[1]) and d.last_price[1] == 121001.0
    bad = [f"binance-futures,BTCUSDT,{T0},{T0},,,,-5,,,"]
    with pytest.raises(
        DeleverInputError, match=r"row 1: field 'open_interest' = '-5', expected a value >= 0"
    ):
        read_tardis_derivative_ticker(_csv(tmp_path, "dt.csv.gz", DERIVATIVE_TICKER_COLUMNS, bad))
    bad = [f"binance-futures,BTCUSDT,{T0},{T0},17600000,,,,,,"]
    with pytest.raises(
        DeleverInputError, match=r"row 1: field 'funding_timestamp' = 17600000, expected epoch microseconds"
    ):
        read_tardis_derivative_ticker(_csv(tmp_path, "dt.csv.gz", DERIVATIVE_TICKER_COLUMNS, bad))


# =========================================================================== ccxt (test-written files)
MS = 1_663_570_331_000  # 2022-09-19T06:52:11.000Z


def _json(tmp_path: Path, name: str, doc) -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p


def test_ccxt_trades(tmp_path):
    trades = [
        {"info": {}, "id": "12345", "order": None, "timestamp": MS, "datetime": "2022-09-19T06:52:11.000Z",
         "symbol": "BTC/USDT:USDT", "type": None, "side": "sell", "takerOrMaker": "taker", "price": 19400.5,
         "amount": 0.25, "cost": 4850.125, "fee": None},
        {"info": {}, "id": 12346, "timestamp": MS + 7, "datetime": "2022-09-19T06:52:11.007Z", "symbol": "BTC/USDT:USDT",
         "side": "buy", "price": "19401", "amount": "0.5", "cost": None, "fee": {"cost": 0.1, "currency": "USDT"}},
    ]  # fmt: skip
    t = read_ccxt_trades(_json(tmp_path, "trades.json", trades))
    assert len(t) == 2 and t.side.tolist() == [-1, 1] and t.id.tolist() == ["12345", "12346"]
    assert (
        t.price[1] == 19401.0 and np.isnan(t.cost[1]) and t.fee_cost[1] == 0.1 and t.fee_currency[1] == "USDT"
    )
    jl = tmp_path / "trades.jsonl.gz"
    jl.write_bytes(gzip.compress(("\n".join(json.dumps(x) for x in trades) + "\n").encode()))
    assert np.array_equal(read_ccxt_trades(jl).timestamp_ms, t.timestamp_ms)
    bad = [dict(trades[0], datetime="2022-09-19T06:52:12.000Z")]
    with pytest.raises(DeleverInputError, match=r"record 1: field 'datetime'.*same instant as timestamp"):
        read_ccxt_trades(_json(tmp_path, "b.json", bad))
    with pytest.raises(DeleverInputError, match=r"record 1: field 'side' = 'long', expected buy or sell"):
        read_ccxt_trades(_json(tmp_path, "b.json", [dict(trades[0], side="long")]))
    with pytest.raises(DeleverInputError, match=r"record 2: field 'amount' = 0, expected a value > 0"):
        read_ccxt_trades(_json(tmp_path, "b.json", [trades[0], dict(trades[1], amount=0)]))
    with pytest.raises(
        DeleverInputError, match=r"record 1: field 'timestamp' = 1663570331, expected epoch milliseconds"
    ):
        read_ccxt_trades(_json(tmp_path, "b.json", [dict(trades[0], timestamp=MS // 1000, datetime=None)]))
    jl.write_bytes(gzip.compress(b'{"a": 1}\n\n{"b": 2}\n'))
    with pytest.raises(DeleverInputError, match="line 2: blank line"):
        read_ccxt_trades(jl)


def test_ccxt_ohlcv(tmp_path):
    m = 60_000
    candles = [[MS - MS % m + i * m, 100 + i, 101 + i, 99 + i, 100.5 + i, 10.0] for i in range(5)]
    o = read_ccxt_ohlcv(_json(tmp_path, "o.json", candles))
    assert len(o) == 5 and o.interval_ms == m and o.notes == [] and o.close.dtype == np.float64
    gappy = candles[:2] + candles[4:]
    g = read_ccxt_ohlcv(_json(tmp_path, "o.json", gappy))
    assert len(g) == 3 and any("1 gap(s), 2 candle(s) missing" in n for n in g.notes)
    with pytest.raises(DeleverInputError, match=r"record 3: field 'timestamp'.*expected > record 2"):
        read_ccxt_ohlcv(_json(tmp_path, "o.json", candles[:2] + [candles[1]]))
    with pytest.raises(DeleverInputError, match=r"record 1: expected low <= open, close <= high"):
        read_ccxt_ohlcv(_json(tmp_path, "o.json", [[candles[0][0], 100, 99, 98, 100, 1]]))
    with pytest.raises(
        DeleverInputError, match=r"record 1: expected \[timestamp, open, high, low, close, volume\]"
    ):
        read_ccxt_ohlcv(_json(tmp_path, "o.json", [candles[0][:5]]))
    with pytest.raises(
        DeleverInputError, match=r"record 2: step 60000 ms is not a multiple of the 90000 ms interval"
    ):
        read_ccxt_ohlcv(_json(tmp_path, "o.json", candles[:2]), interval_ms=90_000)


def test_ccxt_order_books(tmp_path):
    book = {"symbol": "BTC/USDT:USDT", "bids": [[100.0, 1.0], [99.5, 2.0, 3]], "asks": [[100.5, 1.5]],
            "timestamp": MS, "datetime": "2022-09-19T06:52:11.000Z", "nonce": 42}  # fmt: skip
    one = read_ccxt_order_books(_json(tmp_path, "book.json", book))
    assert len(one) == 1 and one.bid_price.shape == (1, 2) and np.isnan(one.ask_price[0, 1])
    assert one.bid_levels.tolist() == [2] and one.ask_levels.tolist() == [1] and one.nonce[0] == 42
    two = read_ccxt_order_books(
        _json(tmp_path, "books.json", [book, dict(book, timestamp=None, datetime=None, nonce=None)])
    )
    assert two.timestamp_ms.tolist() == [MS, -1] and any("without a timestamp" in n for n in two.notes)
    with pytest.raises(
        DeleverInputError, match=r"record 1: field 'bids\[1\]\[0\]' = 100.5, expected a price strictly below"
    ):
        read_ccxt_order_books(_json(tmp_path, "b.json", dict(book, bids=[[100.0, 1.0], [100.5, 1.0]])))
    with pytest.raises(
        DeleverInputError, match=r"record 1: field 'asks\[0\]\[1\]' = -1, expected an amount > 0"
    ):
        read_ccxt_order_books(_json(tmp_path, "b.json", dict(book, asks=[[100.5, -1]])))
    crossed = read_ccxt_order_books(_json(tmp_path, "c.json", dict(book, asks=[[99.0, 1.0]])))
    assert any("1 crossed book(s)" in n for n in crossed.notes)


def test_ccxt_liquidations(tmp_path):
    liq = [
        {"info": {}, "symbol": "BTC/USDT:USDT", "contracts": 2, "contractSize": 0.001, "price": 21000, "side": "short",
         "baseValue": 0.002, "quoteValue": 42, "timestamp": MS, "datetime": "2022-09-19T06:52:11.000Z"},
        {"info": {}, "symbol": "ETH/USDT:USDT", "contracts": None, "contractSize": None, "price": "1300.5", "side": "sell",
         "baseValue": 1.0, "quoteValue": None, "timestamp": MS + 1, "datetime": None},
        {"info": {}, "symbol": "ETH/USDT:USDT", "price": 1300, "timestamp": MS + 2},
    ]  # fmt: skip
    out = read_ccxt_liquidations(_json(tmp_path, "l.json", liq))
    assert len(out) == 3 and out.liquidated_position.tolist() == [-1, 1, 0]
    assert out.quote_value[0] == 42.0 and np.isnan(out.quote_value[1]) and out.price[1] == 1300.5
    assert any("1 record(s) without side (records 3)" in n for n in out.notes)
    with pytest.raises(
        DeleverInputError, match=r"record 1: field 'quoteValue' = 43, expected baseValue \* price = 42"
    ):
        read_ccxt_liquidations(_json(tmp_path, "b.json", [dict(liq[0], quoteValue=43)]))
    with pytest.raises(
        DeleverInputError, match=r"record 1: field 'side' = 'both', expected long or sell or short or buy"
    ):
        read_ccxt_liquidations(_json(tmp_path, "b.json", [dict(liq[0], side="both")]))
    with pytest.raises(DeleverInputError, match=r"record 1: field 'price' = None, expected a number"):
        read_ccxt_liquidations(_json(tmp_path, "b.json", [dict(liq[0], price=None)]))
    p = tmp_path / "x.json"
    p.write_text('{"not": "a list"}')
    with pytest.raises(DeleverInputError, match="expected a JSON array of ccxt liquidation records"):
        read_ccxt_liquidations(p)
