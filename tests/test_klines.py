"""Binance kline reader: real files, file forms (header, gz, zip, µs) and every bad-input case."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pytest

from delever.data.klines import (
    KLINE_COLUMNS,
    format_utc_ms,
    parse_utc_ms,
    read_klines,
    read_klines_many,
)
from delever.errors import DeleverInputError

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
WINDOWS = DATA / "binance-um-btcusdt-1m-crash-windows"
CRASH = DATA / "binance-2025-10-10-crash"
COINS = DATA / "oct10-2025-coins"

HEADER = ",".join(KLINE_COLUMNS)
T0 = 1760131200000  # 2025-10-10 21:20:00 UTC in ms
MIN = 60_000


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path


def row(
    t_ms: int, o=100.0, h=101.0, lo=99.0, c=100.5, v=10.0, tb=4.0, *, per_ms=1, interval=MIN, close=None
) -> str:
    t = t_ms * per_ms
    ct = close if close is not None else t + interval * per_ms - 1
    qv, tq = (v * c, tb * c) if isinstance(c, float) else (v * 100.0, tb * 100.0)
    return f"{t},{o},{h},{lo},{c},{v},{ct},{qv},42,{tb},{tq},0"


def write(tmp_path: Path, lines: list[str], name: str = "k.csv", header: bool = True) -> Path:
    p = tmp_path / name
    p.write_text("\n".join(([HEADER] if header else []) + lines) + "\n")
    return p


def good_rows(n: int = 5, **kw) -> list[str]:
    return [row(T0 + i * MIN, **kw) for i in range(n)]


# --------------------------------------------------------------------------- real files
def test_real_um_windows_row_counts_and_edges():
    k = read_klines(need(WINDOWS / "BTCUSDT-1m-2020-03-13-window.csv"))
    assert len(k) == 285 and k.interval_ms == 60_000
    assert k.open_time_ms.dtype == np.int64 and k.close.dtype == np.float64
    assert k.open_time_ms[0] == 1584055500000
    assert (k.open[0], k.high[0], k.low[0], k.close[0]) == (5150.39, 5208.94, 5034.71, 5066.22)
    assert k.volume[0] == 3932.115 and k.taker_buy_volume[0] == 1778.444
    assert k.open_time_ms[-1] == 1584072540000 and k.close[-1] == 4958.76
    assert k.low.min() == 3621.81 and format_utc_ms(k.open_time_ms[k.low.argmin()]) == "2020-03-13 02:16:00"

    k = read_klines(WINDOWS / "BTCUSDT-1m-2021-05-19-window.csv")
    assert len(k) == 134 and k.close[-1] == 34495.37 and k.low.min() == 28688.0

    k = read_klines(WINDOWS / "BTCUSDT-1m-2025-10-10-window.csv")
    assert len(k) == 130
    assert format_utc_ms(k.open_time_ms[0]) == "2025-10-10 20:28:00" and k.open[0] == 117050.0
    assert format_utc_ms(k.open_time_ms[-1]) == "2025-10-10 22:37:00" and k.close[-1] == 112875.0
    i = int(k.low.argmin())
    assert k.low[i] == 101516.5 and k.open_time_ms[i] == T0
    np.testing.assert_allclose(k.taker_sell_volume[i], 8051.444 - 4090.732)


def test_real_window_selection():
    k = read_klines(
        need(WINDOWS / "BTCUSDT-1m-2025-10-10-window.csv"), "2025-10-10 21:20", "2025-10-10 21:22:00"
    )
    assert len(k) == 2
    assert k.open.tolist() == [103441.3, 104311.2] and k.close.tolist() == [104311.2, 106416.5]


def test_real_zip_mark_price_klines_have_header_and_zero_volume():
    k = read_klines(need(CRASH / "BTCUSDT-5m-2025-10-08.zip"))
    assert len(k) == 288 and k.interval_ms == 300_000
    assert k.open_time_ms[0] == 1759881600000 and k.open[0] == 121286.5 and k.high[0] == 121568.75958696
    assert k.close[-1] == 123237.95754348
    assert not k.volume.any() and not k.taker_buy_volume.any()

    k = read_klines(CRASH / "BTCUSD_PERP-1m-2025-10-10.zip")
    assert len(k) == 1440 and k.interval_ms == 60_000
    assert k.open[0] == 121662.0 and k.close[-1] == 112992.6
    assert round(k.low.min(), 2) == 102497.49 and k.open_time_ms[k.low.argmin()] == T0


def test_real_many_zip_days_join_in_time_order():
    days = [need(CRASH / f"BTCUSDT-5m-2025-10-{d:02d}.zip") for d in (10, 8, 9)]  # unordered on purpose
    k = read_klines_many(days)
    assert len(k) == 3 * 288
    assert np.all(np.diff(k.open_time_ms) == 300_000)
    assert k.open_time_ms[0] == 1759881600000 and k.close[-1] == 112722.0
    names = [Path(p).name for p in k.path.split(" + ")]
    assert names == ["BTCUSDT-5m-2025-10-08.zip", "BTCUSDT-5m-2025-10-09.zip", "BTCUSDT-5m-2025-10-10.zip"]
    w = read_klines_many(days, start="2025-10-09 23:50", end="2025-10-10 00:10")
    assert len(w) == 4 and w.open_time_ms[2] == 1760054400000 and w.open[2] == 121582.7910045


def test_real_many_gap_between_files(tmp_path):
    with pytest.raises(
        DeleverInputError, match=r"BTCUSDT-5m-2025-10-10.zip: row 1 .*does not continue.*288 bar"
    ):
        read_klines_many([need(CRASH / "BTCUSDT-5m-2025-10-08.zip"), CRASH / "BTCUSDT-5m-2025-10-10.zip"])


def test_real_coins_all_read():
    files = sorted(need(COINS).glob("*USDT-1m-2025-10-10-window.csv"))
    assert len(files) == 9
    for f in files:
        k = read_klines(f)
        assert len(k) == 121 and k.open_time_ms[0] == 1760128200000 and k.open_time_ms[-1] == 1760135400000
    sol = read_klines(COINS / "SOLUSDT-1m-2025-10-10-window.csv")
    assert sol.open[0] == 207.44 and sol.close[-1] == 184.56 and sol.low.min() == 141.28


def test_real_trade_built_bars_rejected():
    f = need(COINS / "ETHUSD-gemini-spot-1m-from-trades-2025-10-10-window.csv")
    with pytest.raises(DeleverInputError, match="header is not the Binance kline header"):
        read_klines(f)


# --------------------------------------------------------------------------- file forms
def test_header_and_no_header_read_the_same(tmp_path):
    a = read_klines(write(tmp_path, good_rows(), "a.csv", header=True))
    b = read_klines(write(tmp_path, good_rows(), "b.csv", header=False))
    assert len(a) == len(b) == 5
    np.testing.assert_array_equal(a.open_time_ms, b.open_time_ms)
    np.testing.assert_array_equal(a.close, b.close)
    assert a.open_time_ms[4] == T0 + 4 * MIN and a.interval_ms == MIN


def test_gz_and_zip(tmp_path):
    text = "\n".join(good_rows(3)) + "\n"
    gz = tmp_path / "k.csv.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    z = tmp_path / "k.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("k.csv", HEADER + "\n" + text)
    assert len(read_klines(gz)) == 3 and len(read_klines(z)) == 3
    assert read_klines(z).volume.tolist() == [10.0, 10.0, 10.0]


def test_zip_with_two_members_rejected(tmp_path):
    z = tmp_path / "two.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.csv", "\n".join(good_rows(2)))
        zf.writestr("b.csv", "\n".join(good_rows(2)))
    with pytest.raises(
        DeleverInputError, match="two.zip: expected a zip holding one file, found a.csv, b.csv"
    ):
        read_klines(z)


def test_microsecond_timestamps_converted(tmp_path):
    k = read_klines(write(tmp_path, good_rows(4, per_ms=1000), header=False))
    assert k.open_time_ms[0] == T0 and k.interval_ms == MIN
    assert np.all(np.diff(k.open_time_ms) == MIN)


def test_single_bar_interval_from_close_time(tmp_path):
    k = read_klines(write(tmp_path, [row(T0, interval=300_000)]))
    assert len(k) == 1 and k.interval_ms == 300_000 and k.end_time_ms == T0 + 300_000


def test_crlf_line_endings(tmp_path):
    p = tmp_path / "crlf.csv"
    p.write_bytes(("\r\n".join([HEADER, *good_rows(3)]) + "\r\n").encode())
    assert len(read_klines(p)) == 3


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (lambda r: r.__setitem__(2, row(T0 + 2 * MIN, o="")), r"row 3: field 'open' is empty or NaN"),
        (lambda r: r.__setitem__(1, row(T0 + MIN, c="nan")), r"row 2: field 'close' is empty or NaN"),
        (lambda r: r.__setitem__(1, row(T0 + MIN, h="inf")), r"row 2: field 'high' = inf, expected a finite"),
        (
            lambda r: r.__setitem__(3, row(T0 + 3 * MIN, h="abc")),
            r"row 4: field 'high' = 'abc', expected a number",
        ),
        (lambda r: r.__setitem__(0, row(T0, o=0.0, lo=0.0)), r"row 1: open = 0.0, expected a price > 0"),
        (lambda r: r.__setitem__(1, row(T0 + MIN, lo=-1.0)), r"row 2: low = -1.0, expected a price > 0"),
        (
            lambda r: r.__setitem__(2, row(T0 + 2 * MIN, c=102.0)),
            r"row 3: expected low <= open, close <= high",
        ),
        (
            lambda r: r.__setitem__(2, row(T0 + 2 * MIN, o=98.0)),
            r"row 3: expected low <= open, close <= high",
        ),
        (
            lambda r: r.__setitem__(4, row(T0 + 4 * MIN, v=-1.0, tb=0.0)),
            r"row 5: volume = -1.0, expected >= 0",
        ),
        (
            lambda r: r.__setitem__(1, row(T0 + MIN, v=1.0, tb=2.0)),
            r"row 2: taker_buy_volume 2.0 exceeds volume 1.0",
        ),
        (
            lambda r: r.__setitem__(2, r[1]),
            r"row 3: open_time 2025-10-10 21:21:00 is not after row 2 .*duplicate",
        ),
        (
            lambda r: r.__setitem__(2, row(T0)),
            r"row 3: open_time 2025-10-10 21:20:00 is not after row 2 .*out of order",
        ),
        (
            lambda r: r.__delitem__(2),
            r"gap between row 2 \(2025-10-10 21:21:00\) and row 3 \(2025-10-10 21:23:00\).*1 bar",
        ),
        (
            lambda r: r.__setitem__(1, row(T0 + MIN, close=T0 + 2 * MIN)),
            r"row 2: close_time .* is not open_time \+ interval - 1",
        ),
        (
            lambda r: r.__setitem__(3, row(T0 + 3 * MIN, per_ms=1000)),
            r"row 4: open_time \d+ is in µs but row 1 is in ms",
        ),
        (
            lambda r: r.__setitem__(0, row(T0 // 1000)),
            r"row 1: open_time \d+ is neither epoch milliseconds nor microseconds",
        ),
        (
            lambda r: r.__setitem__(2, row(T0 + 2 * MIN)[:-2]),
            r"row 3: expected 12 comma-separated columns, got 11",
        ),
        (lambda r: r.__setitem__(2, ""), r"row 3: blank line, expected 12 comma-separated columns"),
    ],
)
@pytest.mark.parametrize("header", [True, False])
def test_bad_rows_named(tmp_path, mutate, pattern, header):
    rows = good_rows(5)
    mutate(rows)
    p = write(tmp_path, rows, header=header)
    with pytest.raises(DeleverInputError, match=r"k\.csv: " + pattern) as exc:
        read_klines(p)
    assert "\n" not in str(exc.value)


def test_gap_in_microsecond_file_reported_in_ms(tmp_path):
    rows = good_rows(5, per_ms=1000)
    del rows[1:3]
    with pytest.raises(DeleverInputError, match=r"step 180000 ms, expected 60000 ms \(2 bar\(s\) missing\)"):
        read_klines(write(tmp_path, rows, header=False))


def test_irregular_step(tmp_path):
    rows = good_rows(5)
    rows[4] = row(T0 + 4 * MIN + 30_000)
    with pytest.raises(DeleverInputError, match=r"step 90000 ms.*not a multiple"):
        read_klines(write(tmp_path, rows))


def test_empty_wrong_header_missing_file(tmp_path):
    with pytest.raises(DeleverInputError, match="empty file"):
        read_klines(write(tmp_path, [], header=False))
    with pytest.raises(DeleverInputError, match="no data rows"):
        read_klines(write(tmp_path, [], "h.csv", header=True))
    p = tmp_path / "bad_header.csv"
    p.write_text("time,o,h,l,c\n" + "\n".join(good_rows(2)))
    with pytest.raises(DeleverInputError, match="header is not the Binance kline header"):
        read_klines(p)
    with pytest.raises(DeleverInputError, match="nope.csv: kline file not found"):
        read_klines(tmp_path / "nope.csv")
    bad_zip = tmp_path / "x.zip"
    bad_zip.write_bytes(b"not a zip")
    with pytest.raises(DeleverInputError, match="not a valid zip"):
        read_klines(bad_zip)


def test_window_errors(tmp_path):
    p = write(tmp_path, good_rows(5))
    assert len(read_klines(p, start="2025-10-10 21:21", end="2025-10-10 21:23")) == 2
    assert len(read_klines(p, end="2025-10-10 21:25")) == 5  # end == end of last bar is inside
    with pytest.raises(
        DeleverInputError, match=r"start: expected a UTC time 'YYYY-MM-DD HH:MM\[:SS\]', got '21:20'"
    ):
        read_klines(p, start="21:20")
    with pytest.raises(DeleverInputError, match="start 2025-10-10 21:19:00 is before the first bar"):
        read_klines(p, start="2025-10-10 21:19")
    with pytest.raises(DeleverInputError, match="end 2025-10-10 21:26:00 is after the last bar ends"):
        read_klines(p, end="2025-10-10 21:26")
    with pytest.raises(DeleverInputError, match="must be before end"):
        read_klines(p, start="2025-10-10 21:23", end="2025-10-10 21:22")
    with pytest.raises(DeleverInputError, match="no bar opens in"):
        read_klines(p, start="2025-10-10 21:20:10", end="2025-10-10 21:20:50")


def test_many_overlap_interval_and_empty(tmp_path):
    a = write(tmp_path, good_rows(3), "a.csv")
    b = write(tmp_path, [row(T0 + 2 * MIN + i * MIN) for i in range(3)], "b.csv")
    with pytest.raises(DeleverInputError, match=r"b.csv: row 1 \(2025-10-10 21:22:00\) overlaps .*a.csv"):
        read_klines_many([a, b])
    c = write(tmp_path, [row(T0 + 3 * MIN + i * 300_000, interval=300_000) for i in range(2)], "c.csv")
    with pytest.raises(DeleverInputError, match="c.csv: interval 300000 ms differs from 60000 ms"):
        read_klines_many([a, c])
    d = write(tmp_path, [row(T0 + 3 * MIN + i * MIN) for i in range(2)], "d.csv")
    k = read_klines_many([d, a])
    assert len(k) == 5 and k.open_time_ms[-1] == T0 + 4 * MIN
    with pytest.raises(DeleverInputError, match="at least one"):
        read_klines_many([])


def test_parse_utc_ms():
    assert parse_utc_ms("2025-10-10 21:20", "x") == T0
    assert parse_utc_ms("2025-10-10 21:20:00", "x") == T0
    assert parse_utc_ms("2025-10-10T21:20:30", "x") == T0 + 30_000
    with pytest.raises(DeleverInputError, match="price_driver.start: expected"):
        parse_utc_ms("2025-13-10 21:20", "price_driver.start")


def test_non_integer_time_and_sub_ms_microseconds(tmp_path):
    rows = good_rows(3)
    rows[1] = rows[1].replace(str(T0 + MIN), "1.76013126e12", 1)
    with pytest.raises(
        DeleverInputError, match=r"row 2: field 'open_time' = '1.76013126e12', expected an integer"
    ):
        read_klines(write(tmp_path, rows))
    rows = good_rows(3, per_ms=1000)
    rows[2] = rows[2].replace(str((T0 + 2 * MIN) * 1000), str((T0 + 2 * MIN) * 1000 + 5), 1)
    with pytest.raises(DeleverInputError, match=r"row 3: open_time \d+ µs is not a whole millisecond"):
        read_klines(write(tmp_path, rows, "us.csv"))
