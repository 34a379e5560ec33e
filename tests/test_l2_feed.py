"""L2 feed rebuild (hftbacktest captures): real Binance USD-M / COIN-M / Hyperliquid files, bad input."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import numpy as np
import pytest

from delever.data.l2_feed import depth_curve_from_l2, format_utc_ns, rebuild_l2_book
from delever.errors import DeleverInputError

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "orderbook-l2-hftbacktest"
USDM = DATA / "usdm_btcusdt_20240808.jsonl.gz"
COINM = DATA / "cm_btcusd_perp_20240808.jsonl.gz"
HL = DATA / "hyperliquid_btcusd_20250126.jsonl.gz"

T0 = 1_700_000_000_000_000_000  # 2023-11-14 22:13:20 UTC, in ns


def _need(path: Path) -> None:
    if not path.is_file():
        pytest.skip("shared data not available")


def _book_ticker_at(path: Path, last_u: int) -> dict:
    """The last bookTicker whose update id is <= last_u (the BBO after that update)."""
    best = None
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if "@bookTicker" in line:
                data = json.loads(line.split(" ", 1)[1])["data"]
                if data["u"] <= last_u and (best is None or data["u"] >= best["u"]):
                    best = data
    return best


@pytest.fixture(scope="module")
def usdm_end():
    _need(USDM)
    t0 = time.perf_counter()
    book = rebuild_l2_book(USDM)
    return book, time.perf_counter() - t0


# --------------------------------------------------------------------------- real files
def test_usdm_end_of_capture_matches_book_ticker(usdm_end):
    book, seconds = usdm_end
    assert seconds < 10.0  # ~1 s measured
    assert book.venue == "binance-usdm"
    assert format_utc_ns(book.time_ns) == "2024-08-08 23:59:59.833492"
    assert book.stats["snapshot_line"] == 55
    assert book.stats["diffs_dropped_before_snapshot"] == 4 and book.stats["diffs_applied"] == 6547
    ticker = _book_ticker_at(USDM, book.stats["last_update_id"])
    assert (book.bid_px[0], book.bid_qty[0]) == (float(ticker["b"]), float(ticker["B"]))
    assert (book.ask_px[0], book.ask_qty[0]) == (float(ticker["a"]), float(ticker["A"]))
    assert (book.bid_px[0], book.ask_px[0]) == (61659.7, 61659.8)
    assert (np.diff(book.bid_px) < 0).all() and (np.diff(book.ask_px) > 0).all()
    assert (book.bid_qty > 0).all() and (book.ask_qty > 0).all()


def test_usdm_one_percent_depth(usdm_end):
    book, _ = usdm_end
    bid_usd, ask_usd = book.notional_within_usd(0.01)
    # measured on this file; the bid side is a lower bound (price left the snapshot's range)
    assert bid_usd == pytest.approx(83_097_082.67, rel=1e-9)
    assert ask_usd == pytest.approx(294_715_784.10, rel=1e-9)
    assert book.coverage_bid_px == 61653.4 and book.coverage_ask_px == 61976.2


def test_usdm_mid_capture_matches_book_ticker():
    _need(USDM)
    book = rebuild_l2_book(USDM, at="2024-08-08 23:57:51.898753")
    assert book.stats["lines"] == 50000
    ticker = _book_ticker_at(USDM, book.stats["last_update_id"])
    assert (book.bid_px[0], book.bid_qty[0], book.ask_px[0], book.ask_qty[0]) == (61639.9, 0.492, 61640.0, 129.382)
    assert (float(ticker["b"]), float(ticker["B"]), float(ticker["a"]), float(ticker["A"])) == (
        61639.9, 0.492, 61640.0, 129.382)


def test_usdm_curve(usdm_end):
    book, _ = usdm_end
    curve = depth_curve_from_l2(USDM)
    assert curve.ref_price == pytest.approx((61659.7 + 61659.8) / 2)
    assert curve.bid.x.size == book.bid_px.size + 1
    assert float(curve.bid.x[1]) == pytest.approx(1 - 61659.7 / curve.ref_price)
    np.testing.assert_allclose(curve.bid.cum_qty[-1], book.bid_qty.sum())
    # cumulative qty at each level's x is exact (sum through that level)
    k = 200
    assert float(curve.ask.qty_within(curve.ask.x[k])) == pytest.approx(book.ask_qty[:k].sum(), rel=1e-12)
    assert "usdm_btcusdt_20240808.jsonl.gz @ 2024-08-08 23:59:59.833492" in curve.source
    assert any("covered bids down to 61,653.40" in n for n in curve.notes)


def test_usdm_at_before_snapshot_raises():
    _need(USDM)
    with pytest.raises(DeleverInputError, match=r"no REST depth snapshot .* at or before market.depth.at"):
        rebuild_l2_book(USDM, at="2024-08-08 23:54:15.300")


def test_coinm_contracts_converted_to_base_units():
    _need(COINM)
    with pytest.raises(DeleverInputError, match="contract_size_usd"):
        rebuild_l2_book(COINM)
    book = rebuild_l2_book(COINM, contract_size_usd=100.0)
    assert book.venue == "binance-coinm"
    ticker = _book_ticker_at(COINM, book.stats["last_update_id"])
    assert (book.bid_px[0], book.ask_px[0]) == (float(ticker["b"]), float(ticker["a"])) == (61668.6, 61668.7)
    assert book.bid_qty[0] == pytest.approx(float(ticker["B"]) * 100.0 / 61668.6, rel=1e-12)
    assert book.ask_qty[0] == pytest.approx(float(ticker["A"]) * 100.0 / 61668.7, rel=1e-12)
    bid_usd, ask_usd = book.notional_within_usd(0.01)
    # in contracts: notional = contracts * 100 USD exactly
    assert bid_usd == pytest.approx(43_411_700.0, rel=1e-9) and ask_usd == pytest.approx(15_152_100.0, rel=1e-9)


def test_contract_size_refused_for_usdm_and_hyperliquid():
    _need(HL)
    with pytest.raises(DeleverInputError, match="only for COIN-M"):
        rebuild_l2_book(HL, contract_size_usd=100.0)


def test_hyperliquid_latest_snapshot_at_or_before():
    _need(HL)
    book = rebuild_l2_book(HL, at="2025-01-26 19:14:06.5")  # between lines 7 and 8
    assert book.venue == "hyperliquid" and book.stats["snapshot_line"] == 7
    assert (book.bid_px[0], book.bid_qty[0]) == (105055.0, 3.27523)
    assert (book.ask_px[0], book.ask_qty[0]) == (105056.0, 6.34472)
    assert book.bid_px.size == 20 and book.coverage_bid_px is None
    end = depth_curve_from_l2(HL)
    assert end.ref_price == 105050.5 and "line 55" in end.source
    with pytest.raises(DeleverInputError, match="no order-book message"):
        rebuild_l2_book(HL, at="2025-01-26 19:00:00")


# --------------------------------------------------------------------------- synthetic captures
def _line(i: int, obj: dict) -> str:
    return f"{T0 + i * 1_000_000_000} {json.dumps(obj, separators=(',', ':'))}\n"


def _diff(U: int, u: int, pu: int, b=(), a=(), coin_m: bool = False) -> dict:
    data = {"e": "depthUpdate", "E": 0, "T": 0, "s": "BTCUSDT", "U": U, "u": u, "pu": pu,
            "b": [list(x) for x in b], "a": [list(x) for x in a]}
    if coin_m:
        data["ps"] = "BTCUSD"
    return {"stream": "btcusdt@depth@0ms", "data": data}


def _snap(last_id: int, bids, asks) -> dict:
    return {"lastUpdateId": last_id, "E": 0, "T": 0, "bids": [list(x) for x in bids], "asks": [list(x) for x in asks]}


def _write(tmp_path: Path, lines: list[str], name: str = "cap.jsonl.gz") -> Path:
    path = tmp_path / name
    path.write_bytes(gzip.compress("".join(lines).encode()))
    return path


def _at(i: int) -> str:
    return format_utc_ns(T0 + i * 1_000_000_000)


BIDS = (("100.0", "1.0"), ("99.0", "2.0"))
ASKS = (("101.0", "1.5"), ("102.0", "2.5"))


def _capture() -> list[str]:
    return [
        _line(0, _diff(90, 95, 89, b=[("100.0", "9.0")])),          # dropped: u < lastUpdateId
        _line(1, _diff(96, 101, 95, b=[("100.0", "3.0")])),         # bridges lastUpdateId 100
        _line(2, {"stream": "btcusdt@trade", "data": {"p": "100.5"}}),
        _line(3, _snap(100, BIDS, ASKS)),
        _line(4, _diff(102, 110, 101, b=[("99.0", "0.000")], a=[("101.5", "0.5")])),
        _line(5, {"stream": "btcusdt@bookTicker", "data": {"b": "100.0"}}),
        _line(6, _diff(111, 120, 110, b=[("98.0", "4.0")])),
    ]


def test_synthetic_binance_rules(tmp_path):
    path = _write(tmp_path, _capture())
    book = rebuild_l2_book(path)
    assert book.bid_px.tolist() == [100.0, 98.0] and book.bid_qty.tolist() == [3.0, 4.0]
    assert book.ask_px.tolist() == [101.0, 101.5, 102.0] and book.ask_qty.tolist() == [1.5, 0.5, 2.5]
    assert book.stats["diffs_dropped_before_snapshot"] == 1 and book.stats["last_update_id"] == 120
    mid_book = rebuild_l2_book(path, at=_at(4))
    assert mid_book.bid_px.tolist() == [100.0] and mid_book.ask_px.tolist() == [101.0, 101.5, 102.0]
    curve = depth_curve_from_l2(path)
    mid = 100.5
    np.testing.assert_allclose(curve.bid.x, [0.0, 1 - 100.0 / mid, 1 - 98.0 / mid])
    np.testing.assert_allclose(curve.bid.cum_qty, [0.0, 3.0, 7.0])
    np.testing.assert_allclose(curve.ask.cum_qty, [0.0, 1.5, 2.0, 4.5])


def test_gap_is_reported_and_at_after_it_raises(tmp_path):
    lines = _capture() + [_line(7, _diff(125, 130, 122, b=[("97.0", "1.0")]))]  # pu 122 != 120
    path = _write(tmp_path, lines)
    with pytest.raises(DeleverInputError, match=r"out of sync .* line 8: diff pu=122 does not chain .* u=120"):
        rebuild_l2_book(path)
    assert rebuild_l2_book(path, at=_at(6)).bid_px.tolist() == [100.0, 98.0]  # before the gap: fine


def test_gap_resynced_by_a_later_snapshot(tmp_path):
    lines = _capture() + [
        _line(7, _diff(125, 130, 122, b=[("97.0", "1.0")])),
        _line(8, _diff(131, 140, 130, b=[("96.0", "1.0")])),
        _line(9, _snap(135, (("100.0", "5.0"),), (("101.0", "6.0"),))),
        _line(10, _diff(141, 150, 140, a=[("103.0", "1.0")])),
    ]
    book = rebuild_l2_book(_write(tmp_path, lines))
    # diff 131..140 bridges snapshot 135 and is applied, then 141..150 chains
    assert book.bid_px.tolist() == [100.0, 96.0] and book.bid_qty.tolist() == [5.0, 1.0]
    assert book.ask_px.tolist() == [101.0, 103.0]
    assert any("gap at line 8" in n for n in book.notes) and any("resynced" in n for n in book.notes)


def test_first_diff_not_bridging_snapshot_is_a_gap(tmp_path):
    lines = [_line(0, _snap(100, BIDS, ASKS)), _line(1, _diff(105, 110, 104, b=[("99.5", "1.0")]))]
    with pytest.raises(DeleverInputError, match=r"starts at U=105 > lastUpdateId\+1"):
        rebuild_l2_book(_write(tmp_path, lines))


def test_crossed_book_raises(tmp_path):
    lines = [_line(0, _snap(100, BIDS, ASKS)), _line(1, _diff(99, 105, 98, b=[("101.0", "1.0")]))]
    with pytest.raises(DeleverInputError, match=r"crossed book .* best bid 101.00 >= best ask 101.00"):
        depth_curve_from_l2(_write(tmp_path, lines))
    hl = {"channel": "l2Book", "data": {"coin": "BTC", "time": 0, "levels": [
        [{"px": "105.0", "sz": "1.0", "n": 1}], [{"px": "104.0", "sz": "1.0", "n": 1}]]}}
    with pytest.raises(DeleverInputError, match="crossed book"):
        depth_curve_from_l2(_write(tmp_path, [_line(0, hl)], "hl.jsonl.gz"))


def test_coin_m_synthetic_conversion(tmp_path):
    snap = _snap(100, (("50000.0", "10"),), (("50010.0", "20"),))
    snap["pair"] = "BTCUSD"
    path = _write(tmp_path, [_line(0, snap), _line(1, _diff(99, 101, 98, b=[("49990.0", "5")], coin_m=True))])
    book = rebuild_l2_book(path, contract_size_usd=100.0)
    np.testing.assert_allclose(book.bid_qty, [10 * 100 / 50000.0, 5 * 100 / 49990.0])
    np.testing.assert_allclose(book.ask_qty, [20 * 100 / 50010.0])


def test_truncated_gzip_names_line(tmp_path):
    lines = _capture() * 1 + [_line(7 + i, _diff(121 + i, 121 + i, 120 + i, b=[("97.0", f"{i}.5")]))
                              for i in range(3000)]
    path = _write(tmp_path, lines)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DeleverInputError, match=r"line \d+: cannot read past here, file truncated"):
        rebuild_l2_book(path)


@pytest.mark.parametrize("bad,match", [
    ("not-a-timestamp {}\n", r"line 2: expected '<local_receive_ts_ns> <json>'"),
    (f"{T0 + 5} {{\"stream\":\"btcusdt@depth@0ms\",\"data\":{{\"e\":\"depthUpdate\"\n", r"line 2: invalid JSON"),
    (_line(5, {"stream": "btcusdt@kline_1m", "data": {}}), r"line 2: unrecognized message"),
    (_line(5, _diff(99, 105, 98, b=[("100.0", "-1")])), r"line 2: b: level \['100.0', '-1'\]"),
    (_line(5, _diff(99, 105, 98, b=[("abc", "1")])), r"line 2: b: level \['abc', '1'\]"),
    (_line(5, {"stream": "btcusdt@depth@0ms", "data": {"e": "depthUpdate", "U": 1, "u": "x", "pu": 0}}),
     r"line 2: field 'u' is 'x'"),
    (f"{T0 - 5} {{}}\n", r"line 2: local receive timestamp .* before the previous line"),
])
def test_malformed_lines_name_the_line(tmp_path, bad, match):
    path = _write(tmp_path, [_line(0, _snap(100, BIDS, ASKS)), bad])
    with pytest.raises(DeleverInputError, match=match) as err:
        rebuild_l2_book(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_file_and_bad_at(tmp_path):
    with pytest.raises(DeleverInputError, match="not found"):
        rebuild_l2_book(tmp_path / "absent.jsonl.gz")
    path = _write(tmp_path, _capture())
    with pytest.raises(DeleverInputError, match="market.depth.at"):
        rebuild_l2_book(path, at="yesterday")
