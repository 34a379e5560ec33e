"""Price drivers: shock shapes exactly, historical close/ohlc paths on real and small files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from delever.data.klines import KLINE_COLUMNS, read_klines
from delever.errors import DeleverInputError
from delever.paths import PricePath, build_price_path, historical_path
from delever.scenario import HistoricalDriver, ShockDriver

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
BTC_WINDOW = "binance-um-btcusdt-1m-crash-windows/BTCUSDT-1m-2025-10-10-window.csv"
T0 = 1760131200000  # 2025-10-10 21:20:00 UTC
MIN = 60_000


def need_data() -> Path:
    if not (DATA / BTC_WINDOW).exists():
        pytest.skip("real data not available")
    return DATA


def check_invariants(p: PricePath) -> None:
    assert p.t_s.dtype == np.float64 and p.price.dtype == np.float64
    assert p.t_s.shape == p.price.shape and p.t_s[0] == 0.0
    assert np.all(np.diff(p.t_s) > 0) and np.all(p.price > 0)
    if p.taker_sell_volume is not None:
        assert p.taker_sell_volume.dtype == np.float64 and p.taker_sell_volume.shape == p.t_s.shape


# --------------------------------------------------------------------------- shock
def test_shock_linear_exact():
    d = ShockDriver(move_pct=-8.0, duration_s=4.0, hold_s=3.0, shape="linear")
    p = build_price_path(d, 100_000.0, 1.0, Path("."))
    check_invariants(p)
    np.testing.assert_array_equal(p.t_s, [0, 1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_allclose(
        p.price, [100_000, 98_000, 96_000, 94_000, 92_000, 92_000, 92_000, 92_000], rtol=1e-15
    )
    assert p.price[4] == 100_000.0 * (1 - 0.08) and p.price[-1] == p.price[4]
    assert p.mode == "stress" and p.start_time_utc is None and p.taker_sell_volume is None
    assert "linear" in p.label and "-8%" in p.label


def test_shock_linear_duration_not_multiple_of_dt():
    d = ShockDriver(move_pct=-10.0, duration_s=2.5, hold_s=2.0, shape="linear")
    p = build_price_path(d, 200.0, 1.0, Path("."))
    check_invariants(p)
    # ceil(2.5/1) = 3 move steps, ceil(2/1) = 2 hold steps; the slope is the configured one (-8 USD/s)
    np.testing.assert_array_equal(p.t_s, [0, 1, 2, 3, 4, 5])
    np.testing.assert_allclose(p.price[:3], [200.0, 192.0, 184.0], rtol=1e-15)
    target = 200.0 * (1 - 0.10)
    assert p.price[3] == target and p.price[4] == target and p.price[5] == target


def test_shock_float_dt_no_spurious_extra_step():
    d = ShockDriver(move_pct=5.0, duration_s=0.3, hold_s=0.0, shape="linear")
    p = build_price_path(d, 10.0, 0.1, Path("."))  # 0.3/0.1 = 2.9999999999999996 in floats
    assert len(p) == 4
    assert p.price[-1] == 10.0 * 1.05 and p.price[-1] > p.price[-2] > p.price[1] > p.price[0] == 10.0


def test_shock_step_exact():
    d = ShockDriver(move_pct=-20.0, duration_s=3.0, hold_s=2.0, shape="step")
    p = build_price_path(d, 50.0, 1.0, Path("."))
    check_invariants(p)
    np.testing.assert_array_equal(p.t_s, [0, 1, 2, 3, 4, 5])
    assert p.price.tolist() == [50.0, 40.0, 40.0, 40.0, 40.0, 40.0]


def test_shock_zero_duration_is_a_step():
    d = ShockDriver(move_pct=-8.0, duration_s=0.0, hold_s=2.0, shape="linear")
    p = build_price_path(d, 100.0, 1.0, Path("."))
    assert p.t_s.tolist() == [0.0, 1.0, 2.0, 3.0] and p.price.tolist() == [100.0, 92.0, 92.0, 92.0]


def test_shock_needs_start_price():
    with pytest.raises(DeleverInputError, match=r"^market\.start_price: required"):
        build_price_path(ShockDriver(), None, 1.0, Path("."))
    with pytest.raises(DeleverInputError, match=r"market\.start_price: expected a price > 0"):
        build_price_path(ShockDriver(), -1.0, 1.0, Path("."))


# --------------------------------------------------------------------------- historical, real data
def test_historical_ohlc_real_window_contains_crash_low():
    data = need_data()
    d = HistoricalDriver(path=BTC_WINDOW, start="2025-10-10 21:15", end="2025-10-10 21:30", intrabar="ohlc")
    p = build_price_path(d, None, 1.0, data)
    check_invariants(p)
    assert len(p) == 1 + 4 * 15
    np.testing.assert_allclose(np.diff(p.t_s), 15.0)
    assert p.start_time_utc == "2025-10-10T21:15:00Z" and p.mode == "stress"
    # the 21:20 bar: open 103441.3, high 106458.8, low 101516.5, close 104311.2 -> low nearer the open
    k = 5
    assert p.t_s[1 + 4 * k] == 315.0 and p.price[1 + 4 * k] == 101516.5
    assert (
        p.price[2 + 4 * k] == 106458.8 and p.price[3 + 4 * k] == 104311.2 and p.price[4 + 4 * k] == 104311.2
    )
    assert p.price.min() == 101516.5 and p.t_s[np.argmin(p.price)] == 315.0
    # taker sell volume of the 21:20 bar (8051.444 - 4090.732 BTC) spread over its 4 sub-steps
    np.testing.assert_allclose(p.taker_sell_volume[1 + 4 * k : 5 + 4 * k], (8051.444 - 4090.732) / 4)
    assert p.taker_sell_volume[0] == 0.0


def test_historical_close_real_whole_file():
    data = need_data()
    p = build_price_path(HistoricalDriver(path=BTC_WINDOW, intrabar="close"), None, 1.0, data)
    check_invariants(p)
    assert len(p) == 131 and p.t_s[-1] == 130 * 60.0
    assert p.price[0] == 117050.0 and p.price[1] == 116986.4 and p.price[-1] == 112875.0
    assert p.start_time_utc == "2025-10-10T20:28:00Z"
    assert p.taker_sell_volume[1] == pytest.approx(248.017 - 131.627)
    assert p.price.min() > 101516.5  # closes never reach the intrabar low


def test_historical_mark_zip_replay_has_no_volume():
    data = need_data()
    d = HistoricalDriver(
        path="binance-2025-10-10-crash/BTCUSDT-5m-2025-10-10.zip",
        mode="replay",
        start="2025-10-10 21:00",
        end="2025-10-10 21:30",
    )
    p = build_price_path(d, None, 1.0, data)
    check_invariants(p)
    assert p.mode == "replay" and p.taker_sell_volume is None
    assert len(p) == 1 + 4 * 6 and p.t_s[1] == 75.0
    assert round(p.price.min(), 2) == 101877.69


def test_historical_rescaled_to_start_price():
    data = need_data()
    d = HistoricalDriver(path=BTC_WINDOW, start="2025-10-10 21:15", end="2025-10-10 21:30")
    raw = build_price_path(d, None, 1.0, data)
    p = build_price_path(d, 50_000.0, 1.0, data)
    assert p.price[0] == 50_000.0
    np.testing.assert_allclose(p.price / raw.price, 50_000.0 / raw.price[0], rtol=1e-14)
    assert "rescaled" in p.label and "50000" in p.label and "rescaled" not in raw.label


def test_historical_driver_errors():
    data = need_data()
    with pytest.raises(DeleverInputError, match=r"^price_driver\.path: data file not found"):
        build_price_path(HistoricalDriver(path="nope/missing.csv"), None, 1.0, data)
    with pytest.raises(DeleverInputError, match=r"^price_driver\.start: expected a UTC time"):
        build_price_path(HistoricalDriver(path=BTC_WINDOW, start="yesterday"), None, 1.0, data)
    with pytest.raises(
        DeleverInputError, match=r"^price_driver\.start/end: .*start 2025-10-10 20:00:00 is before"
    ):
        build_price_path(HistoricalDriver(path=BTC_WINDOW, start="2025-10-10 20:00"), None, 1.0, data)


# --------------------------------------------------------------------------- historical, small files
def small_klines(tmp_path: Path, bars: list[tuple[float, float, float, float, float, float]]) -> Path:
    lines = [",".join(KLINE_COLUMNS)]
    for i, (o, h, lo, c, v, tb) in enumerate(bars):
        t = T0 + i * MIN
        lines.append(f"{t},{o},{h},{lo},{c},{v},{t + MIN - 1},{v * c},1,{tb},{tb * c},0")
    p = tmp_path / "small.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_ohlc_ordering_and_grid(tmp_path):
    f = small_klines(
        tmp_path,
        [
            (100.0, 101.0, 95.0, 96.0, 8.0, 2.0),  # high nearer the open -> H then L
            (96.0, 99.0, 95.0, 98.0, 4.0, 4.0),  # low nearer -> L then H
            (98.0, 100.0, 96.0, 97.0, 0.0, 0.0),  # tie |2| == |2| -> high first
        ],
    )
    p = historical_path(read_klines(f), "ohlc", "stress")
    check_invariants(p)
    assert p.t_s.tolist() == [0.0, 15, 30, 45, 60, 75, 90, 105, 120, 135, 150, 165, 180]
    assert p.price.tolist() == [100, 101, 95, 96, 96, 95, 99, 98, 98, 100, 96, 97, 97]
    assert p.taker_sell_volume.tolist() == [0, 1.5, 1.5, 1.5, 1.5, 0, 0, 0, 0, 0, 0, 0, 0]
    # bar closes sit at the same times in both modes
    c = historical_path(read_klines(f), "close", "replay")
    assert c.t_s.tolist() == [0.0, 60.0, 120.0, 180.0] and c.price.tolist() == [100, 96, 98, 97]
    assert c.taker_sell_volume.tolist() == [0.0, 6.0, 0.0, 0.0] and c.mode == "replay"
    np.testing.assert_array_equal(p.price[np.isin(p.t_s, c.t_s)], c.price)


def test_historical_path_rejects_bad_options(tmp_path):
    k = read_klines(small_klines(tmp_path, [(100.0, 101.0, 99.0, 100.0, 1.0, 0.5)]))
    with pytest.raises(DeleverInputError, match="price_driver.intrabar"):
        historical_path(k, "tick", "stress")
    with pytest.raises(DeleverInputError, match="price_driver.mode"):
        historical_path(k, "ohlc", "live")
    with pytest.raises(DeleverInputError, match="market.start_price"):
        historical_path(k, "ohlc", "stress", start_price=0.0)
