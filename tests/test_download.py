"""Binance Vision downloader against a local HTTP server on 127.0.0.1 (no other network traffic).

The server (port 0, in a thread, shut down at the end) serves files the test writes: a good kline
zip with its ``.CHECKSUM``, a bookDepth zip whose checksum is wrong, and nothing for a 404.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from delever.data.download import (
    binance_vision_path,
    binance_vision_url,
    default_cache_dir,
    download_binance_vision,
    sha256_file,
)
from delever.data.klines import KLINE_COLUMNS, read_klines
from delever.errors import DeleverInputError

T0 = 1_760_054_400_000  # 2025-10-10 00:00:00 UTC, ms
KLINE_REL = "data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2025-10-10.zip"
DEPTH_REL = "data/futures/um/daily/bookDepth/BTCUSDT/BTCUSDT-bookDepth-2025-10-10.zip"


def _zip(name: str, text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, text)
    return buf.getvalue()


def _kline_csv(n: int = 3) -> str:
    rows = [",".join(KLINE_COLUMNS)]
    for i in range(n):
        t = T0 + i * 60_000
        rows.append(f"{t},100.0,101.0,99.0,100.5,10.0,{t + 59_999},1005.0,42,4.0,402.0,0")
    return "\n".join(rows) + "\n"


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, format, *args) -> None:  # noqa: A002 (stdlib signature)
        pass  # keep pytest output clean

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()


@pytest.fixture()
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path, list[str]]]:
    """A local server rooted at ``tmp_path / 'www'``; yields (base_url, www root, request log)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    www = tmp_path / "www"
    kl = www / KLINE_REL
    kl.parent.mkdir(parents=True)
    kl.write_bytes(_zip("BTCUSDT-1m-2025-10-10.csv", _kline_csv()))
    kl.with_name(kl.name + ".CHECKSUM").write_text(
        f"{hashlib.sha256(kl.read_bytes()).hexdigest()}  {kl.name}\n"
    )
    dp = www / DEPTH_REL
    dp.parent.mkdir(parents=True)
    dp.write_bytes(_zip("BTCUSDT-bookDepth-2025-10-10.csv", "timestamp,percentage,depth,notional\n"))
    dp.with_name(dp.name + ".CHECKSUM").write_text(f"{'0' * 64}  {dp.name}\n")  # wrong on purpose
    log: list[str] = []
    handler = functools.partial(type("H", (_Handler,), {"requests": log}), directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", www, log
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_url_layout():
    assert binance_vision_path("klines", "BTCUSDT", "1m", "2025-10-10") == KLINE_REL
    assert binance_vision_path("bookDepth", "BTCUSDT", None, "2025-10-10") == DEPTH_REL
    assert (
        binance_vision_path("markPriceKlines", "BTCUSD_PERP", "5m", date(2025, 10, 9), market="cm")
        == "data/futures/cm/daily/markPriceKlines/BTCUSD_PERP/5m/BTCUSD_PERP-5m-2025-10-09.zip"
    )
    assert (
        binance_vision_path("klines", "BTCUSDT", "1h", "2021-05", market="spot", period="monthly")
        == "data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2021-05.zip"
    )
    assert (
        binance_vision_url("indexPriceKlines", "BTCUSDT", "1m", "2025-10", period="monthly")
        == "https://data.binance.vision/data/futures/um/monthly/indexPriceKlines/BTCUSDT/1m/BTCUSDT-1m-2025-10.zip"
    )


@pytest.mark.parametrize(
    ("args", "kwargs", "pattern"),
    [
        (("klines", "BTCUSDT", None, "2025-10-10"), {}, "klines files need an interval"),
        (("bookDepth", "BTCUSDT", "1m", "2025-10-10"), {}, "bookDepth files have no interval"),
        (("klines", "BTCUSDT", "7m", "2025-10-10"), {}, "interval: expected one of"),
        (("klines", "btcusdt", "1m", "2025-10-10"), {}, "symbol: expected an upper-case"),
        (("klines", "BTCUSDT", "1m", "2025-10"), {}, "date: expected a daily date like '2025-10-10'"),
        (("klines", "BTCUSDT", "1m", "2025-10-10"), {"period": "monthly"}, "date: expected a monthly date"),
        (("klines", "BTCUSDT", "1m", "2025-13-01"), {}, "date: expected a daily date"),
        (("bookDepth", "BTCUSDT", None, "2025-10-10"), {"market": "spot"}, "not published for spot"),
        (("candles", "BTCUSDT", "1m", "2025-10-10"), {}, "kind: expected one of"),
        (
            ("klines", "BTCUSDT", "1m", "2025-10-10"),
            {"market": "usdm"},
            "market: expected one of um, cm, spot",
        ),
        (
            ("klines", "BTCUSDT", "1m", "2025-10-10"),
            {"period": "weekly"},
            "period: expected 'daily' or 'monthly'",
        ),
    ],
)
def test_bad_arguments(args, kwargs, pattern):
    with pytest.raises(DeleverInputError, match=pattern):
        binance_vision_path(*args, **kwargs)


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("DELEVER_CACHE_DIR", raising=False)
    assert default_cache_dir() == Path.home() / ".cache" / "delever"
    monkeypatch.setenv("DELEVER_CACHE_DIR", str(tmp_path / "envcache"))
    assert default_cache_dir() == tmp_path / "envcache"


def test_download_verifies_caches_and_reads(server, tmp_path, monkeypatch):
    base, www, log = server
    cache = tmp_path / "cache"
    p = download_binance_vision("klines", "BTCUSDT", "1m", "2025-10-10", cache_dir=cache, base_url=base)
    assert p == cache / "binance-vision" / KLINE_REL
    assert p.read_bytes() == (www / KLINE_REL).read_bytes()
    assert sha256_file(p) == hashlib.sha256(p.read_bytes()).hexdigest()
    assert p.with_name(p.name + ".CHECKSUM").is_file()
    assert log == [f"/{KLINE_REL}.CHECKSUM", f"/{KLINE_REL}"]
    k = read_klines(p)
    assert len(k) == 3 and k.open_time_ms[0] == T0
    assert not list(p.parent.glob("*.part"))

    # Second call: served from the cache, no request at all.
    again = download_binance_vision("klines", "BTCUSDT", "1m", "2025-10-10", cache_dir=cache, base_url=base)
    assert again == p and len(log) == 2

    # A corrupted cached copy is detected and fetched again.
    p.write_bytes(b"corrupt")
    fixed = download_binance_vision("klines", "BTCUSDT", "1m", "2025-10-10", cache_dir=cache, base_url=base)
    assert fixed.read_bytes() == (www / KLINE_REL).read_bytes() and len(log) == 4

    # The environment variable picks the cache when no argument is given.
    monkeypatch.setenv("DELEVER_CACHE_DIR", str(tmp_path / "envcache"))
    q = download_binance_vision("klines", "BTCUSDT", "1m", "2025-10-10", base_url=base + "/")
    assert q == tmp_path / "envcache" / "binance-vision" / KLINE_REL and q.is_file()


def test_checksum_mismatch_removes_partial_download(server, tmp_path):
    base, _, _ = server
    cache = tmp_path / "cache"
    with pytest.raises(DeleverInputError) as e:
        download_binance_vision("bookDepth", "BTCUSDT", None, "2025-10-10", cache_dir=cache, base_url=base)
    msg = str(e.value)
    assert "\n" not in msg and "SHA-256 mismatch for BTCUSDT-bookDepth-2025-10-10.zip" in msg
    assert "partial download removed" in msg and "0" * 64 in msg
    folder = cache / "binance-vision" / Path(DEPTH_REL).parent
    assert folder.is_dir() and list(folder.iterdir()) == []  # neither the zip, a .part file nor a checksum


def test_missing_file_is_a_404_error(server, tmp_path):
    base, _, log = server
    with pytest.raises(
        DeleverInputError, match=r"ETHUSDT-1m-2025-10-10\.zip\.CHECKSUM: not found \(HTTP 404\)"
    ):
        download_binance_vision(
            "klines", "ETHUSDT", "1m", "2025-10-10", cache_dir=tmp_path / "c", base_url=base
        )
    assert log == ["/data/futures/um/daily/klines/ETHUSDT/1m/ETHUSDT-1m-2025-10-10.zip.CHECKSUM"]
    assert not [f for f in (tmp_path / "c").rglob("*") if f.is_file()]


def test_checksum_for_another_file_is_rejected(server, tmp_path):
    base, www, _ = server
    (www / (KLINE_REL + ".CHECKSUM")).write_text(f"{'a' * 64}  OTHER-1m-2025-10-10.zip\n")
    with pytest.raises(
        DeleverInputError,
        match=r"checksum is for 'OTHER-1m-2025-10-10.zip', expected 'BTCUSDT-1m-2025-10-10.zip'",
    ):
        download_binance_vision(
            "klines", "BTCUSDT", "1m", "2025-10-10", cache_dir=tmp_path / "c", base_url=base
        )


def test_bad_base_url():
    with pytest.raises(DeleverInputError, match="base_url: expected an http"):
        download_binance_vision("klines", "BTCUSDT", "1m", "2025-10-10", base_url="ftp://example")
