"""Multi-instrument price paths: alignment on one grid, refusals (gaps, NaN, differing timestamps), catalogue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from delever.data.klines import read_klines
from delever.data.trade_bars import TRADE_BAR_COINM_COLUMNS, TRADE_BAR_SPOT_COLUMNS
from delever.errors import DeleverInputError
from delever.multipath import (
    OCT10_2025_COINS,
    MultiPricePath,
    load_historical_multi,
    minute_log_returns_multi,
    oct10_2025_paths,
)
from delever.paths import historical_path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
T0 = 1_760_128_200_000  # 2025-10-10 20:30 UTC
MIN = 60_000


def _klines(path: Path, closes: list[float], start_min: int = 0) -> Path:
    rows = ["open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
            "taker_buy_quote_volume,ignore"]
    prev = closes[0]
    for k, c in enumerate(closes):
        t = T0 + (start_min + k) * MIN
        rows.append(f"{t},{prev},{max(prev, c)},{min(prev, c)},{c},10,{t + MIN - 1},{10 * c},5,4,{4 * c},0")
        prev = c
    path.write_text("\n".join(rows) + "\n")
    return path


def _spot(path: Path, closes: list[float | None]) -> Path:
    rows = [",".join(TRADE_BAR_SPOT_COLUMNS)]
    for k, c in enumerate(closes):
        t = T0 + k * MIN
        if c is None:
            rows.append(f"{t},,,,,0,{t + MIN - 1},0,0,0,0,,")
        else:
            rows.append(f"{t},{c},{c},{c},{c},2,{t + MIN - 1},{2 * c},3,0.5,1.5,{t * 1000 + 1},{t * 1000 + 2}")
    path.write_text("\n".join(rows) + "\n")
    return path


def _coinm(path: Path, closes: list[float]) -> Path:
    rows = [",".join(TRADE_BAR_COINM_COLUMNS)]
    for k, c in enumerate(closes):
        t = T0 + k * MIN
        rows.append(f"{t},{c},{c},{c},{c},7,{t + MIN - 1},3,4,3,{t * 1000 + 1},{t * 1000 + 2}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_aligned_klines_and_trade_bars(tmp_path):
    a = _klines(tmp_path / "A.csv", [100.0, 99.0, 97.0, 98.0])
    b = _spot(tmp_path / "B.csv", [2.0, 1.9, 1.8, 1.85])
    c = _coinm(tmp_path / "C.csv", [10.0, 9.0, 9.5, 9.4])
    m = load_historical_multi({"A": a, "B": b, "C": c}, intrabar="close")
    assert m.instruments == ("A", "B", "C") and m.price.shape == (5, 3) and m.mode == "replay"
    assert np.array_equal(m.t_s, [0.0, 60.0, 120.0, 180.0, 240.0])
    assert np.array_equal(m.price[:, 0], [100.0, 100.0, 99.0, 97.0, 98.0])
    assert np.array_equal(m.price[1:, 1], [2.0, 1.9, 1.8, 1.85])
    assert m.start_time_utc == "2025-10-10T20:30:00Z"
    assert m.taker_sell_volume is not None and m.taker_sell_volume[2] is None  # COIN-M contracts not converted
    assert any("COIN-M" in n for n in m.notes)
    # Each column is exactly the one-instrument historical path of its file.
    one = historical_path(read_klines(a), "close", "replay")
    col = m.column("A")
    assert np.array_equal(col.t_s, one.t_s) and np.array_equal(col.price, one.price)
    assert np.array_equal(col.taker_sell_volume, one.taker_sell_volume)
    assert np.array_equal(m.column(1).price, m.price[:, 1])
    ohlc = load_historical_multi({"A": a, "B": b}, intrabar="ohlc", mode="stress")
    assert ohlc.price.shape == (17, 2) and ohlc.mode == "stress"
    assert np.array_equal(ohlc.column("A").price, historical_path(read_klines(a), "ohlc", "stress").price)


def test_window_selects_the_same_bars(tmp_path):
    a = _klines(tmp_path / "A.csv", [100.0, 99.0, 97.0, 98.0, 96.0])
    b = _spot(tmp_path / "B.csv", [2.0, 1.9, 1.8, 1.85, 1.7])
    m = load_historical_multi({"A": a, "B": b}, start="2025-10-10 20:31", end="2025-10-10 20:34")
    assert m.price.shape == (4, 2)
    assert m.price[0, 0] == 100.0 and m.price[-1, 0] == 98.0  # open of 20:31 (prev close), close of 20:33
    assert m.start_time_utc == "2025-10-10T20:31:00Z"


def test_minute_without_trades_is_refused_not_filled(tmp_path):
    a = _klines(tmp_path / "A.csv", [100.0, 99.0, 97.0, 98.0])
    b = _spot(tmp_path / "B.csv", [2.0, None, 1.8, 1.85])
    with pytest.raises(DeleverInputError, match=r"B\.csv: row 2: minute 2025-10-10 20:31:00 has no trade"):
        load_historical_multi({"A": a, "B": b})
    # A window that avoids it is fine.
    m = load_historical_multi({"A": a, "B": b}, start="2025-10-10 20:32")
    assert m.price.shape == (3, 2)


def test_differing_timestamps_are_refused(tmp_path):
    a = _klines(tmp_path / "A.csv", [100.0, 99.0, 97.0, 98.0])
    late = _klines(tmp_path / "L.csv", [5.0, 4.0, 4.5], start_min=1)
    with pytest.raises(DeleverInputError, match=r"L\.csv: row 1: first bar 2025-10-10 20:31:00 starts after 2025-10-10 20:30:00"):
        load_historical_multi({"A": a, "L": late})
    with pytest.raises(DeleverInputError, match=r"L\.csv: window .* reaches outside the file"):
        load_historical_multi({"A": a, "L": late}, start="2025-10-10 20:30")
    short = _klines(tmp_path / "S.csv", [5.0, 4.0])
    with pytest.raises(DeleverInputError, match=r"S\.csv: row 2: last bar 2025-10-10 20:31:00 ends before 2025-10-10 20:32:00"):
        load_historical_multi({"A": a, "S": short})


def test_gap_and_nan_in_a_kline_file_are_refused(tmp_path):
    a = _klines(tmp_path / "A.csv", [100.0, 99.0, 97.0, 98.0])
    lines = a.read_text().splitlines()
    gap = tmp_path / "G.csv"
    gap.write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    with pytest.raises(DeleverInputError, match=r"G\.csv: gap between row 1 .* gaps are not filled"):
        load_historical_multi({"A": a, "G": gap})
    nan = tmp_path / "N.csv"
    nan.write_text("\n".join(lines[:2] + [lines[2].replace(",99.0,", ",nan,", 1)] + lines[3:]) + "\n")
    with pytest.raises(DeleverInputError, match=r"N\.csv: row 2"):
        load_historical_multi({"A": a, "N": nan})


def test_multi_price_path_validation():
    t = np.array([0.0, 1.0])
    with pytest.raises(DeleverInputError, match="shape"):
        MultiPricePath(("A", "B"), t, np.ones((2, 3)), "stress")
    with pytest.raises(DeleverInputError, match="finite price > 0"):
        MultiPricePath(("A",), t, np.array([[1.0], [np.nan]]), "stress")
    with pytest.raises(DeleverInputError, match="appears twice"):
        MultiPricePath(("A", "A"), t, np.ones((2, 2)), "stress")
    with pytest.raises(DeleverInputError, match="not in this path"):
        MultiPricePath(("A",), t, np.ones((2, 1)), "stress").column("B")
    m = MultiPricePath(("A", "B"), t, np.array([[1.0, 2.0], [1.1, 1.8]]), "stress")
    assert np.allclose(m.log_returns(), [[np.log(1.1), np.log(0.9)]])
    assert m.column("B").taker_sell_volume is None and m.column("B").label == "B"


def test_returns_leave_out_minutes_without_trades(tmp_path):
    a = _klines(tmp_path / "A.csv", [100.0, 99.0, 97.0, 98.0, 96.0])
    b = _spot(tmp_path / "B.csv", [2.0, 1.9, None, 1.85, 1.7])
    r = minute_log_returns_multi({"A": a, "B": b})
    assert r.log_return.shape == (2, 2)  # returns ending 20:31 and 20:34; 20:32 and 20:33 touch the gap
    assert np.array_equal(r.end_open_time_ms, [T0 + MIN, T0 + 4 * MIN])
    assert np.allclose(r.log_return[:, 0], np.log([99.0 / 100.0, 96.0 / 98.0]))
    assert np.allclose(r.log_return[:, 1], np.log([1.9 / 2.0, 1.7 / 1.85]))
    assert r.excluded_open_time_ms == {"B": (T0 + 2 * MIN, T0 + 3 * MIN)} and r.n_excluded == 2


# --------------------------------------------------------------------------- real files
def _need_coins() -> dict[str, Path]:
    paths = oct10_2025_paths(DATA)
    if not all(p.exists() for p in paths.values()):
        pytest.skip("real data not available")
    return paths


def test_catalogue_covers_the_13_coins_and_prefers_perps():
    paths = _need_coins()
    assert list(paths) == ["BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "LTC", "TRX", "AVAX", "LINK", "AAVE", "WLD",
                           "ENA"]
    markets = {c.coin: c.market for c in OCT10_2025_COINS}
    assert markets["AAVE"] == markets["WLD"] == "coinm_perp" and markets["ETH"] == markets["ENA"] == "spot"
    assert sum(m == "usdm_perp" for m in markets.values()) == 9
    with pytest.raises(DeleverInputError, match="HYPE"):
        oct10_2025_paths(DATA, ["BTC", "HYPE"])


def test_real_window_eleven_coins_and_the_refused_thirteen():
    paths = _need_coins()
    with pytest.raises(DeleverInputError, match=r"ETHUSD-gemini.*row 10: minute 2025-10-10 20:39:00 has no trade"):
        load_historical_multi(paths)
    eleven = {c: p for c, p in paths.items() if c not in ("ETH", "ENA")}
    m = load_historical_multi(eleven)
    assert m.price.shape == (122, 11)
    btc = m.index("BTC")
    assert m.price[0, btc] == 117014.00 and m.price[-1, btc] == 112124.60  # PROVENANCE: 20:30 open -> 22:30 close
    # All 13 share the minutes 21:23-22:20 (after ETH's last empty minute, before ENA's).
    m13 = load_historical_multi(paths, start="2025-10-10 21:22", end="2025-10-10 22:21")
    assert m13.price.shape == (60, 13)


def test_empty_bars_last_trade_holds_the_previous_close():
    """ETH (Gemini bars from trades) has minutes without trades: refused by default, held at the last trade on request."""
    from delever.multipath import load_historical_multi, oct10_2025_paths

    data = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    if not (data / "oct10-2025-coins").is_dir():
        pytest.skip("shared data not available")
    paths = oct10_2025_paths(data, ["BTC", "ETH"])
    with pytest.raises(DeleverInputError, match="no trade"):
        load_historical_multi(paths)
    mp = load_historical_multi(paths, empty_bars="last_trade")
    eth = mp.price[:, 1]
    assert np.isfinite(eth).all() and mp.price.shape[0] == 122
    # 20:39 held at the 20:38 close: two equal consecutive closes (t index 9 -> 10 bars from 20:30)
    assert eth[10] == eth[9]
    assert any("held at the last trade price" in n for n in mp.notes)
    with pytest.raises(DeleverInputError, match="empty_bars"):
        load_historical_multi(paths, empty_bars="interpolate")
