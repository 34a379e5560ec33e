"""Download Binance Vision archive files (data.binance.vision) into a local cache, checksum-verified.

URL layout (source: https://github.com/binance/binance-public-data and the bucket listing at
https://data.binance.vision/?prefix=data/)::

    <base_url>/data/<market path>/<period>/<kind>/<SYMBOL>/<interval>/<SYMBOL>-<interval>-<date>.zip
    <base_url>/data/<market path>/<period>/<kind>/<SYMBOL>/<SYMBOL>-<kind>-<date>.zip

with market path ``futures/um`` (USD-M), ``futures/cm`` (COIN-M) or ``spot``; period ``daily``
(date ``YYYY-MM-DD``) or ``monthly`` (``YYYY-MM``). The first form is used by the candle kinds
(``klines``, ``markPriceKlines``, ``indexPriceKlines``, ``premiumIndexKlines``), the second by the
others (``bookDepth``, ``trades``, ``aggTrades``, ``bookTicker``, ``metrics``, ``fundingRate``,
``liquidationSnapshot``). Every archive has a sibling ``<file>.CHECKSUM`` holding
``<sha256 hex>  <file name>``.

Cache: ``<cache_dir>/binance-vision/<the URL path after the base URL>``, where ``cache_dir`` is the
argument, else the environment variable ``DELEVER_CACHE_DIR``, else ``~/.cache/delever``. A cached
file is used without any network access when its SHA-256 matches the cached ``.CHECKSUM``; otherwise
it is downloaded again. Downloads go to a temporary file in the target folder, are hashed while
streaming, compared with the published checksum, and only then renamed into place (atomic on one
file system); on a mismatch the partial file is removed and
:class:`~delever.errors.DeleverInputError` names the file. Only the standard library (``urllib``) is
used; proxies from the environment apply as usual.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.request
from datetime import date as _date
from datetime import datetime
from pathlib import Path

from delever.errors import DeleverInputError

__all__ = [
    "BINANCE_VISION_URL",
    "CANDLE_KINDS",
    "FILE_KINDS",
    "binance_vision_path",
    "binance_vision_url",
    "default_cache_dir",
    "download_binance_vision",
    "sha256_file",
]

BINANCE_VISION_URL = "https://data.binance.vision"
CANDLE_KINDS: tuple[str, ...] = ("klines", "markPriceKlines", "indexPriceKlines", "premiumIndexKlines")
FILE_KINDS: tuple[str, ...] = (
    "bookDepth",
    "trades",
    "aggTrades",
    "bookTicker",
    "metrics",
    "fundingRate",
    "liquidationSnapshot",
)
_SPOT_KINDS = frozenset({"klines", "trades", "aggTrades"})
_MARKETS = {"um": "futures/um", "cm": "futures/cm", "spot": "spot"}
_INTERVALS = frozenset(
    {"1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1mo", "1M"}
)
_SYMBOL = re.compile(r"^[A-Z0-9_]{2,40}$")
_SHA = re.compile(r"^[0-9a-fA-F]{64}$")
_CHUNK = 1 << 16


def default_cache_dir() -> Path:
    """``$DELEVER_CACHE_DIR`` if set and non-empty, else ``~/.cache/delever``."""
    env = os.environ.get("DELEVER_CACHE_DIR", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "delever"


def sha256_file(path: Path | str) -> str:
    """Lower-case hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _date_text(value: str | _date, period: str) -> str:
    if isinstance(value, _date):
        return value.strftime("%Y-%m-%d" if period == "daily" else "%Y-%m")
    text = str(value).strip()
    fmt, example = ("%Y-%m-%d", "2025-10-10") if period == "daily" else ("%Y-%m", "2025-10")
    try:
        if datetime.strptime(text, fmt).strftime(fmt) != text:
            raise ValueError
    except ValueError:
        raise DeleverInputError(f"date: expected a {period} date like {example!r}, got {value!r}") from None
    return text


def binance_vision_path(
    kind: str,
    symbol: str,
    interval_or_none: str | None,
    date: str | _date,
    market: str = "um",
    period: str = "daily",
) -> str:
    """Path of an archive below the base URL, e.g. ``data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2025-10-10.zip``.

    Args:
        kind: one of :data:`CANDLE_KINDS` (needs an interval) or :data:`FILE_KINDS` (no interval).
        symbol: exchange symbol in upper case (``BTCUSDT``, COIN-M ``BTCUSD_PERP``).
        interval_or_none: candle interval (``1m``, ``5m``, ``1h``, ...) for candle kinds, else None.
        date: ``YYYY-MM-DD`` (daily) or ``YYYY-MM`` (monthly), or a :class:`datetime.date`.
        market: ``um`` (USD-M futures), ``cm`` (COIN-M futures) or ``spot``.
        period: ``daily`` or ``monthly``.

    Returns:
        The relative URL path (no leading slash).

    Raises:
        DeleverInputError: unknown kind/market/period, a kind not published for spot, a missing or
            unexpected interval, an unknown interval, a bad symbol or date.
    """
    if market not in _MARKETS:
        raise DeleverInputError(f"market: expected one of {', '.join(_MARKETS)}, got {market!r}")
    if period not in ("daily", "monthly"):
        raise DeleverInputError(f"period: expected 'daily' or 'monthly', got {period!r}")
    if kind not in CANDLE_KINDS and kind not in FILE_KINDS:
        raise DeleverInputError(f"kind: expected one of {', '.join(CANDLE_KINDS + FILE_KINDS)}, got {kind!r}")
    if market == "spot" and kind not in _SPOT_KINDS:
        raise DeleverInputError(
            f"kind: {kind!r} is not published for spot (spot has {', '.join(sorted(_SPOT_KINDS))})"
        )
    if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
        raise DeleverInputError(
            f"symbol: expected an upper-case Binance symbol like 'BTCUSDT', got {symbol!r}"
        )
    d = _date_text(date, period)
    root = f"data/{_MARKETS[market]}/{period}/{kind}/{symbol}"
    if kind in CANDLE_KINDS:
        if interval_or_none is None:
            raise DeleverInputError(f"interval: {kind} files need an interval such as '1m', got None")
        if interval_or_none not in _INTERVALS:
            raise DeleverInputError(
                f"interval: expected one of {', '.join(sorted(_INTERVALS))}, got {interval_or_none!r}"
            )
        return f"{root}/{interval_or_none}/{symbol}-{interval_or_none}-{d}.zip"
    if interval_or_none is not None:
        raise DeleverInputError(
            f"interval: {kind} files have no interval, got {interval_or_none!r} (pass None)"
        )
    return f"{root}/{symbol}-{kind}-{d}.zip"


def binance_vision_url(
    kind: str,
    symbol: str,
    interval_or_none: str | None,
    date: str | _date,
    market: str = "um",
    period: str = "daily",
    base_url: str = BINANCE_VISION_URL,
) -> str:
    """Full URL of an archive (see :func:`binance_vision_path`); the checksum is this + ``.CHECKSUM``."""
    return f"{_base(base_url)}/{binance_vision_path(kind, symbol, interval_or_none, date, market, period)}"


def _base(base_url: str) -> str:
    b = str(base_url).rstrip("/")
    if not re.match(r"^https?://[^/\s]+", b):
        raise DeleverInputError(
            f"base_url: expected an http(s) URL like {BINANCE_VISION_URL!r}, got {base_url!r}"
        )
    return b


def _open(url: str, timeout: float):
    """urlopen with one-line errors (404 named as a missing archive)."""
    req = urllib.request.Request(url, headers={"User-Agent": "delever (python urllib)"})
    try:
        return urllib.request.urlopen(req, timeout=timeout)  # http(s) only: checked in _base
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise DeleverInputError(f"{url}: not found (HTTP 404); Binance Vision has no such file") from None
        raise DeleverInputError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeleverInputError(f"{url}: download failed ({reason})") from None


def _parse_checksum(text: str, file_name: str, url: str) -> str:
    parts = text.split()
    if not parts or not _SHA.match(parts[0]):
        raise DeleverInputError(f"{url}: expected '<sha256 hex>  {file_name}', got {text.strip()[:100]!r}")
    if len(parts) >= 2 and parts[-1].lstrip("*") != file_name:
        raise DeleverInputError(f"{url}: checksum is for {parts[-1]!r}, expected {file_name!r}")
    return parts[0].lower()


def _atomic_write(target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def download_binance_vision(
    kind: str,
    symbol: str,
    interval_or_none: str | None,
    date: str | _date,
    market: str = "um",
    period: str = "daily",
    cache_dir: Path | str | None = None,
    base_url: str = BINANCE_VISION_URL,
    timeout: float = 60.0,
) -> Path:
    """Fetch one Binance Vision archive (or reuse the cached copy) and verify its SHA-256.

    Args:
        kind: ``klines``, ``markPriceKlines``, ``indexPriceKlines``, ``premiumIndexKlines`` (with an
            interval) or ``bookDepth``, ``trades``, ``aggTrades``, ``bookTicker``, ``metrics``,
            ``fundingRate``, ``liquidationSnapshot`` (interval None).
        symbol: ``BTCUSDT``, ``BTCUSD_PERP``, ...
        interval_or_none: ``1m``, ``5m``, ... or None.
        date: ``YYYY-MM-DD`` (daily) / ``YYYY-MM`` (monthly) or a :class:`datetime.date`.
        market: ``um``, ``cm`` or ``spot``.
        period: ``daily`` or ``monthly``.
        cache_dir: cache root; default ``$DELEVER_CACHE_DIR`` or ``~/.cache/delever``.
        base_url: server root (default ``https://data.binance.vision``; tests use a local server).
        timeout: seconds per HTTP request.

    Returns:
        Path of the verified ``.zip`` in the cache (readable by
        :func:`delever.data.klines.read_klines` for candle kinds).

    Raises:
        DeleverInputError: bad arguments; the archive or its checksum missing on the server (404)
            or unreachable; a malformed checksum file; a SHA-256 mismatch (the partial download is
            removed and the message names the file).
    """
    rel = binance_vision_path(kind, symbol, interval_or_none, date, market, period)
    url = f"{_base(base_url)}/{rel}"
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / "binance-vision" / rel
    sum_path = target.with_name(target.name + ".CHECKSUM")
    if target.is_file() and sum_path.is_file():
        try:
            want = _parse_checksum(sum_path.read_text(), target.name, str(sum_path))
        except DeleverInputError:
            want = ""
        if want and sha256_file(target) == want:
            return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeleverInputError(f"cache_dir: cannot create {target.parent} ({exc.strerror})") from None

    with _open(url + ".CHECKSUM", timeout) as resp:
        sum_text = resp.read(4096).decode("utf-8", "replace")
    want = _parse_checksum(sum_text, target.name, url + ".CHECKSUM")

    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as fh, _open(url, timeout) as resp:
            while True:
                try:
                    chunk = resp.read(_CHUNK)
                except (OSError, TimeoutError) as exc:
                    raise DeleverInputError(f"{url}: download interrupted ({exc})") from None
                if not chunk:
                    break
                h.update(chunk)
                fh.write(chunk)
        got = h.hexdigest()
        if got != want:
            raise DeleverInputError(
                f"{url}: SHA-256 mismatch for {target.name}: expected {want} (from .CHECKSUM), got {got}; "
                "partial download removed"
            )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _atomic_write(sum_path, sum_text.encode("utf-8"))
    return target
