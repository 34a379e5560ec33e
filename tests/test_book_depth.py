"""Binance Vision bookDepth reader: real 2025-10-10 file, anomaly detection, bad input."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pytest

from delever.data.book_depth import (
    depth_curve_from_book_depth,
    read_book_depth,
    scan_anomalies,
)
from delever.errors import DeleverInputError

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
REAL = DATA / "binance-2025-10-10-crash" / "BTCUSDT-bookDepth-2025-10-10.csv.gz"
HEADER = "timestamp,percentage,depth,notional\n"


@pytest.fixture(scope="module")
def real():
    if not REAL.is_file():
        pytest.skip("shared data not available")
    table = read_book_depth(REAL)
    return table, scan_anomalies(table)


# --------------------------------------------------------------------------- synthetic files
def _snapshot(ts: str, mid: float = 100_000.0, bid_scale: float = 1.0) -> list[str]:
    """Clean snapshot: 100 BTC per 1 % band, each increment priced at the middle of its band."""
    rows = []
    for sign in (-1, 1):
        cq = cn = 0.0
        for k in (1, 2, 3, 4, 5):
            q = 100.0 * (bid_scale if sign < 0 else 1.0)
            cq += q
            cn += q * mid * (1 + sign * (k - 0.5) / 100)
            rows.append((sign * k, f"{ts},{sign * k},{cq:.3f},{cn:.4f}\n"))
    return [r for _, r in sorted(rows)]


def _write(tmp_path: Path, lines: list[str], name: str = "bd.csv", header: str = HEADER) -> Path:
    path = tmp_path / name
    text = header + "".join(lines)
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    elif name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(name[:-4] + ".csv", text)
    else:
        path.write_text(text)
    return path


def _clean_day(n: int = 4) -> list[str]:
    out = []
    for i in range(n):
        out += _snapshot(f"2025-01-01 00:{i // 6:02d}:{i % 6 * 10:02d}", mid=100_000.0 + 7 * i, bid_scale=1.0 + 0.01 * i)
    return out


# --------------------------------------------------------------------------- real file
def test_real_file_values(real):
    table, _ = real
    assert len(table) == 2879
    assert table.time_str(0) == "2025-10-10 00:00:07" and table.time_str(len(table) - 1) == "2025-10-10 23:59:30"
    assert table.bid_depth[0, 0] == 1496.75 and table.bid_notional[0, 0] == 181266014.3741
    assert table.ask_depth[0, 4] == 6182.925 and table.ask_notional[0, 4] == 766746432.071
    assert table.bid_depth[0].tolist() == [1496.75, 3859.67, 6524.776, 7493.886, 8243.012]
    # the row with a leading space in its timestamp (21:34:32, percentage -4) is parsed
    i = int(np.flatnonzero(table.times_ms == np.datetime64("2025-10-10T21:34:32", "ms").astype(np.int64))[0])
    assert table.bid_depth[i, 3] == 17.654
    assert table.first_row[1] == 11 and table.times_ms.dtype == np.int64


def test_real_file_anomalies_flag_the_stale_stretch_only(real):
    table, anomalies = real
    times = [table.time_str(i) for i in range(len(table))]
    flagged = {a.timestamp for a in anomalies}
    # every snapshot from 15:30:06 on is flagged, none before
    assert len(flagged) == 1020
    assert min(flagged) == "2025-10-10 15:30:06"
    assert flagged == {t for t in times if t >= "2025-10-10 15:30:06"}
    assert not any(t < "2025-10-10 15:30" for t in flagged)
    # the documented quirk: the stale 17.654 BTC bid level at ~121,363 during the crash
    at_crash = [a for a in anomalies if a.timestamp == "2025-10-10 21:20:38"]
    assert {a.kind for a in at_crash} == {"crossed", "stale"}
    stale = next(a for a in at_crash if a.kind == "stale")
    assert "17.654 @ 121,363.27" in stale.detail
    kinds = {a.kind for a in anomalies}
    assert kinds == {"crossed", "stale", "inconsistent"}


def test_real_curve_at_clean_time(real):
    curve = depth_curve_from_book_depth(REAL, "2025-10-10 12:00:30")
    table, _ = real
    i = int(np.searchsorted(table.times_ms, np.datetime64("2025-10-10T12:00:30", "ms").astype(np.int64), "right")) - 1
    assert curve.source == f"bookDepth {REAL.name} @ {table.time_str(i)}"
    np.testing.assert_array_equal(curve.bid.x, [0.0, 0.01, 0.02, 0.03, 0.04, 0.05])
    np.testing.assert_array_equal(curve.bid.cum_qty[1:], table.bid_depth[i])
    np.testing.assert_array_equal(curve.ask.cum_qty[1:], table.ask_depth[i])
    vb = table.bid_notional[i, 0] / table.bid_depth[i, 0]
    va = table.ask_notional[i, 0] / table.ask_depth[i, 0]
    assert curve.ref_price == pytest.approx((vb + va) / 2)
    assert 121_000 < curve.ref_price < 122_000  # BTCUSDT 5 m mark open at 12:00 UTC: 121,4xx
    assert len(curve.notes) == 1 and "1020 of 2879 snapshots anomalous" in curve.notes[0]
    assert "latest clean snapshot before the first: 2025-10-10 15:29:30" in curve.notes[0]


def test_real_curve_at_crash_time_raises_with_last_clean_snapshot(real):
    with pytest.raises(DeleverInputError) as err:
        depth_curve_from_book_depth(REAL, "2025-10-10 21:20:00")
    msg = str(err.value)
    assert "\n" not in msg
    assert REAL.name in msg and "2025-10-10 21:19:" in msg and "anomalous" in msg
    assert "latest clean snapshot before it: 2025-10-10 15:29:30" in msg
    # the first flagged snapshot is also refused; the one before it is accepted
    with pytest.raises(DeleverInputError, match="15:30:06"):
        depth_curve_from_book_depth(REAL, "2025-10-10 15:30:20")
    assert depth_curve_from_book_depth(REAL, "2025-10-10 15:30:00").source.endswith("15:29:30")


def test_real_curve_time_bounds(real):
    with pytest.raises(DeleverInputError, match="before the first snapshot"):
        depth_curve_from_book_depth(REAL, "2025-10-09 23:59:59")
    with pytest.raises(DeleverInputError, match="at most 300 s"):
        depth_curve_from_book_depth(REAL, "2025-10-11 06:00:00")
    with pytest.raises(DeleverInputError, match="market.depth.at"):
        depth_curve_from_book_depth(REAL, "10/10/2025 12:00")


# --------------------------------------------------------------------------- synthetic: formats
@pytest.mark.parametrize("name", ["bd.csv", "bd.csv.gz", "bd.zip"])
def test_reads_csv_gz_zip(tmp_path, name):
    path = _write(tmp_path, _clean_day(), name)
    table = read_book_depth(path)
    assert len(table) == 4 and table.bid_depth.shape == (4, 5)
    assert table.ask_depth[0].tolist() == [100.0, 200.0, 300.0, 400.0, 500.0]
    assert scan_anomalies(table) == []
    curve = depth_curve_from_book_depth(path, "2025-01-01 00:00:25")
    assert curve.source.endswith("00:00:20") and curve.notes == ()
    assert curve.ref_price == pytest.approx(100_014.0)  # symmetric synthetic bands: exact mid


def test_weighted_avg_price_column_is_accepted(tmp_path):
    lines = [ln.rstrip("\n") + ",1.0\n" for ln in _clean_day(2)]
    path = _write(tmp_path, lines, header="timestamp,percentage,depth,notional,weighted_avg_price\n")
    assert len(read_book_depth(path)) == 2


# --------------------------------------------------------------------------- synthetic: bad input
def _bad(tmp_path, lines, match, header=HEADER, name="bd.csv"):
    path = _write(tmp_path, lines, name, header)
    with pytest.raises(DeleverInputError, match=match) as err:
        read_book_depth(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_column(tmp_path):
    lines = [",".join(ln.split(",")[:3]) + "\n" for ln in _clean_day(1)]
    _bad(tmp_path, lines, "header", header="timestamp,percentage,depth\n")


def test_wrong_header(tmp_path):
    _bad(tmp_path, _clean_day(1), "header", header="time,percentage,depth,notional\n")


def test_nan_value_names_row(tmp_path):
    lines = _clean_day(2)
    parts = lines[12].split(",")
    lines[12] = ",".join([parts[0], parts[1], "nan", parts[3]])
    _bad(tmp_path, lines, r"row 13: field 'depth' is 'nan'")


def test_negative_value_names_row(tmp_path):
    lines = _clean_day(2)
    parts = lines[3].rstrip("\n").split(",")
    lines[3] = ",".join([parts[0], parts[1], parts[2], "-5.0"]) + "\n"
    _bad(tmp_path, lines, r"row 4: field 'notional' is '-5.0'")


def test_short_row_and_bad_percentage(tmp_path):
    lines = _clean_day(1)
    lines[5] = "2025-01-01 00:00:00,1,100.0\n"
    _bad(tmp_path, lines, r"row 6: 3 fields")
    lines = _clean_day(1)
    lines[5] = lines[5].replace(",1,", ",6,")
    _bad(tmp_path, lines, r"row 6: field 'percentage'")


def test_missing_band_is_an_error_with_row(tmp_path):
    lines = _clean_day(2)
    del lines[13]  # second snapshot loses its -2 % row
    _bad(tmp_path, lines, r"row 11: snapshot 2025-01-01 00:00:10 .* lacks band\(s\) \[-2\]")


def test_out_of_order_and_bad_timestamp(tmp_path):
    lines = _clean_day(2)
    _bad(tmp_path, lines[10:] + lines[:10], r"row 11: timestamp 2025-01-01 00:00:00 is not after")
    lines = _clean_day(1)
    lines = [ln.replace("2025-01-01 00:00:00", "2025-01-01T25:00:00") for ln in lines]
    _bad(tmp_path, lines, r"row 1: field 'timestamp'")


def test_truncated_gzip_names_row(tmp_path):
    path = _write(tmp_path, _clean_day(40), "bd.csv.gz")
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DeleverInputError, match=r"row \d+: cannot read past here, file truncated") as err:
        read_book_depth(path)
    assert str(path) in str(err.value)


def test_empty_and_missing_file(tmp_path):
    _bad(tmp_path, [], "no data rows")
    with pytest.raises(DeleverInputError, match="not found"):
        read_book_depth(tmp_path / "absent.csv")


# --------------------------------------------------------------------------- synthetic: anomalies
def test_crossed_snapshot_is_detected_and_refused(tmp_path):
    lines = _clean_day(3)
    # snapshot 2: move the bid 1 % band's notional above the asks' VWAP
    parts = lines[14].rstrip("\n").split(",")
    assert parts[1] == "-1"
    lines[14] = ",".join([parts[0], "-1", parts[2], f"{float(parts[2]) * 101_000:.4f}"]) + "\n"
    path = _write(tmp_path, lines)
    anomalies = scan_anomalies(read_book_depth(path))
    assert [(a.timestamp, a.kind) for a in anomalies] == [("2025-01-01 00:00:10", "crossed")]
    with pytest.raises(DeleverInputError, match=r"snapshot 2025-01-01 00:00:10 \(row 11\) is anomalous \(crossed.*"
                                                r"latest clean snapshot before it: 2025-01-01 00:00:00"):
        depth_curve_from_book_depth(path, "2025-01-01 00:00:15")


def test_non_monotone_snapshot_is_detected(tmp_path):
    lines = _clean_day(2)
    parts = lines[2].rstrip("\n").split(",")  # -3 % of snapshot 1: below the -2 % depth
    assert parts[1] == "-3"
    lines[2] = ",".join([parts[0], "-3", "150.000", parts[3]]) + "\n"
    path = _write(tmp_path, lines)
    anomalies = scan_anomalies(read_book_depth(path))
    assert ("2025-01-01 00:00:00", "non_monotone") in [(a.timestamp, a.kind) for a in anomalies]
    assert {a.timestamp for a in anomalies} == {"2025-01-01 00:00:00"}
    with pytest.raises(DeleverInputError, match="non_monotone"):
        depth_curve_from_book_depth(path, "2025-01-01 00:00:05")


def test_stale_level_is_detected_over_its_stretch(tmp_path):
    # A bid level (5 BTC @ 101,000) that stays while the market drops to ~95,000: in snapshots 2..6
    # it is alone in the 1 % band (identical pair), in snapshot 7 it is mixed with real bids.
    lines = _clean_day(2)
    for i, mid in enumerate((95_000.0, 94_900.0, 94_800.0, 94_700.0, 94_600.0, 94_500.0), start=2):
        snap = _snapshot(f"2025-01-01 00:01:{i * 5:02d}", mid=mid)
        if i < 7:
            snap[4] = f"2025-01-01 00:01:{i * 5:02d},-1,5.000,{5 * 101_000.0:.4f}\n"
        else:
            snap[4] = f"2025-01-01 00:01:{i * 5:02d},-1,105.000,{5 * 101_000.0 + 100 * mid * 0.995:.4f}\n"
        lines += snap
    table = read_book_depth(_write(tmp_path, lines))
    anomalies = scan_anomalies(table)
    stale = sorted(a.timestamp for a in anomalies if a.kind == "stale")
    assert stale == [f"2025-01-01 00:01:{i * 5:02d}" for i in range(2, 7)]
    assert "5 @ 101,000.00" in next(a for a in anomalies if a.kind == "stale").detail
    # the mixed snapshot 7 lies after the last exact repeat: not part of the stretch, not crossed
    assert "2025-01-01 00:01:35" not in {a.timestamp for a in anomalies if a.kind != "inconsistent"}
