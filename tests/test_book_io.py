"""Position-book loaders: round trips, ccxt JSON, and every bad-input case."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from delever.book import PositionBook
from delever.book_io import ccxt_symbol_to_instrument, load_book, load_ccxt_positions, save_book
from delever.errors import DeleverInputError

HEADER = "account,side,qty,entry_price,collateral_usd,margin_mode"


def make_book(n: int = 50, seed: int = 3) -> PositionBook:
    rng = np.random.default_rng(seed)
    return PositionBook(
        "BTCUSDT",
        rng.permutation(10 * n)[:n].astype(np.int64) - 7,
        np.where(rng.random(n) < 0.5, 1, -1),
        rng.lognormal(0, 2, n),
        60_000 * np.exp(0.03 * rng.standard_normal(n)),
        np.where(rng.random(n) < 0.1, 0.0, rng.lognormal(7, 1.5, n)),
        rng.random(n) < 0.5,
    )


def assert_same(a: PositionBook, b: PositionBook) -> None:
    assert a.instrument == b.instrument
    for name in ("account", "side", "qty", "entry_price", "collateral_usd", "cross"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)


def write(tmp_path: Path, text: str, name: str = "book.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", ["b.csv", "b.csv.gz", "b.parquet"])
def test_round_trip_is_exact(tmp_path: Path, name: str) -> None:
    book = make_book()
    path = tmp_path / name
    save_book(book, path)
    assert_same(load_book(path, "BTCUSDT"), book)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # temp file moved into place


def test_save_replaces_existing_file_atomically(tmp_path: Path) -> None:
    path = tmp_path / "b.parquet"
    save_book(make_book(10, seed=1), path)
    save_book(make_book(20, seed=2), path)
    assert len(load_book(path, "BTCUSDT")) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.parquet"]


def test_save_rejects_bad_suffix_and_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(DeleverInputError, match=r"b\.json: cannot save"):
        save_book(make_book(), tmp_path / "b.json")
    with pytest.raises(DeleverInputError, match="does not exist"):
        save_book(make_book(), tmp_path / "nope" / "b.csv")


def test_save_refuses_invalid_book(tmp_path: Path) -> None:
    book = make_book(5)
    book.qty[2] = -1.0
    with pytest.raises(DeleverInputError, match=r"row 3: field 'qty'"):
        save_book(book, tmp_path / "b.csv")
    assert list(tmp_path.iterdir()) == []


def test_csv_accepts_numeric_sides_case_and_whitespace(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        HEADER + ",instrument\n"
        "5, LONG ,0.5,60000,1000,Cross,BTCUSDT\n"
        "6,-1,2,61000.5,0,isolated,BTCUSDT\n"
        "7,+1,1e-3,59000,12.5,ISOLATED,BTCUSDT\n"
        "8,short,3,60000,100,cross,BTCUSDT\n",
    )
    b = load_book(p, "BTCUSDT")
    np.testing.assert_array_equal(b.account, [5, 6, 7, 8])
    np.testing.assert_array_equal(b.side, [1, -1, 1, -1])
    np.testing.assert_array_equal(b.qty, [0.5, 2, 1e-3, 3])
    np.testing.assert_array_equal(b.entry_price, [60000, 61000.5, 59000, 60000])
    np.testing.assert_array_equal(b.collateral_usd, [1000, 0, 12.5, 100])
    np.testing.assert_array_equal(b.cross, [True, False, False, True])
    assert b.account.dtype == np.int64 and b.side.dtype == np.int8


def test_parquet_with_integer_sides_and_dictionary_strings(tmp_path: Path) -> None:
    t = pa.table(
        {
            "account": pa.array([1, 2], pa.int32()),
            "side": pa.array([1, -1], pa.int8()),
            "qty": pa.array([1, 2], pa.int64()),
            "entry_price": [100.0, 101.0],
            "collateral_usd": [10.0, 20.0],
            "margin_mode": pa.array(["cross", "isolated"]).dictionary_encode(),
        }
    )
    p = tmp_path / "b.parquet"
    pq.write_table(t, p)
    b = load_book(p, "ETHUSDT")
    assert b.instrument == "ETHUSDT"
    np.testing.assert_array_equal(b.side, [1, -1])
    np.testing.assert_array_equal(b.qty, [1.0, 2.0])
    np.testing.assert_array_equal(b.cross, [True, False])


def test_large_csv_bad_value_found_by_row(tmp_path: Path) -> None:
    rows = [f"{i},long,1,100,10,cross" for i in range(5000)]
    rows[3716] = "3716,long,1,1OO,10,cross"
    p = write(tmp_path, HEADER + "\n" + "\n".join(rows) + "\n")
    with pytest.raises(DeleverInputError, match=r"row 3717: field 'entry_price' is '1OO'"):
        load_book(p, "BTCUSDT")


# --------------------------------------------------------------------------- bad table input
GOOD = "1,long,1,100,10,cross\n"


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        (HEADER + "\n" + GOOD + "2,sideways,1,100,10,cross\n", r"row 2: field 'side' is 'sideways'"),
        (HEADER + "\n" + GOOD + "2,0,1,100,10,cross\n", r"row 2: field 'side' is '0'"),
        (HEADER + "\n" + GOOD + "2,long,abc,100,10,cross\n", r"row 2: field 'qty' is 'abc'"),
        (HEADER + "\n" + GOOD + "2,long,,100,10,cross\n", r"row 2: field 'qty' is ''"),
        (HEADER + "\n" + GOOD + "2,long,nan,100,10,cross\n", r"row 2: field 'qty' is \S*nan"),
        (HEADER + "\n" + GOOD + "2,long,-1,100,10,cross\n", r"row 2: field 'qty' is \S*-1\.0"),
        (HEADER + "\n" + GOOD + "2,long,0,100,10,cross\n", r"row 2: field 'qty' is \S*0\.0"),
        (HEADER + "\n" + GOOD + "2,long,1,0,10,cross\n", r"row 2: field 'entry_price' is \S*0\.0"),
        (HEADER + "\n" + GOOD + "2,long,1,inf,10,cross\n", r"row 2: field 'entry_price' is \S*inf"),
        (HEADER + "\n" + GOOD + "2,long,1,100,-5,cross\n", r"row 2: field 'collateral_usd' is \S*-5\.0"),
        (HEADER + "\n" + GOOD + "2.5,long,1,100,5,cross\n", r"row 2: field 'account' is '2\.5'"),
        (HEADER + "\n" + GOOD + "x,long,1,100,5,cross\n", r"row 2: field 'account' is 'x'"),
        (HEADER + "\n" + GOOD + "2,long,1,100,5,portfolio\n", r"row 2: field 'margin_mode' is 'portfolio'"),
        (HEADER + "\n" + GOOD + "1,short,1,100,5,cross\n", r"account 1 has 2 positions"),
        (HEADER + "\n", r"no rows"),
        (
            "account,side,qty,entry_price,collateral_usd\n" + "1,long,1,100,10\n",
            r"missing column 'margin_mode'",
        ),
        (HEADER + ",leverage\n1,long,1,100,10,cross,5\n", r"unknown column 'leverage'"),
        (HEADER + "\n1,long,1,100,10\n", r"cannot read as csv"),
    ],
)
def test_bad_csv(tmp_path: Path, body: str, pattern: str) -> None:
    p = write(tmp_path, body)
    with pytest.raises(DeleverInputError, match=pattern) as exc:
        load_book(p, "BTCUSDT")
    msg = str(exc.value)
    assert msg.startswith(str(p)) and "\n" not in msg


def test_other_instruments_are_an_error_with_counts(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        HEADER + ",instrument\n"
        "1,long,1,100,10,cross,BTCUSDT\n"
        "2,long,1,100,10,cross,ETHUSDT\n"
        "3,long,1,100,10,cross,SOLUSDT\n"
        "4,long,1,100,10,cross,ETHUSDT\n",
    )
    with pytest.raises(
        DeleverInputError,
        match=r"3 of 4 rows are for other instruments: ETHUSDT \(2\), SOLUSDT \(1\) \(first at row 2\)",
    ):
        load_book(p, "BTCUSDT")


def test_parquet_null_is_an_error(tmp_path: Path) -> None:
    t = pa.table(
        {
            "account": [1, 2, 3],
            "side": ["long", "short", "long"],
            "qty": [1.0, None, 1.0],
            "entry_price": [1.0, 1.0, 1.0],
            "collateral_usd": [1.0, 1.0, 1.0],
            "margin_mode": ["cross"] * 3,
        }
    )
    p = tmp_path / "b.parquet"
    pq.write_table(t, p)
    with pytest.raises(DeleverInputError, match=r"b\.parquet: row 2: field 'qty' is empty"):
        load_book(p, "BTCUSDT")


def test_parquet_fractional_account_is_an_error(tmp_path: Path) -> None:
    t = pa.table(
        {
            "account": [1.0, 2.5],
            "side": ["long", "short"],
            "qty": [1.0, 1.0],
            "entry_price": [1.0, 1.0],
            "collateral_usd": [1.0, 1.0],
            "margin_mode": ["cross"] * 2,
        }
    )
    p = tmp_path / "b.parquet"
    pq.write_table(t, p)
    with pytest.raises(DeleverInputError, match=r"row 2: field 'account' is 2\.5"):
        load_book(p, "BTCUSDT")


def test_missing_file_bad_suffix_and_garbage(tmp_path: Path) -> None:
    with pytest.raises(DeleverInputError, match="not found"):
        load_book(tmp_path / "absent.csv", "BTCUSDT")
    with pytest.raises(DeleverInputError, match="unsupported position-book file type"):
        load_book(write(tmp_path, "x", "b.txt"), "BTCUSDT")
    with pytest.raises(DeleverInputError, match="cannot read as parquet"):
        load_book(write(tmp_path, "not parquet", "b.parquet"), "BTCUSDT")
    gz = tmp_path / "b.csv.gz"
    gz.write_bytes(b"not gzip at all")
    with pytest.raises(DeleverInputError, match=r"b\.csv\.gz: cannot read"):
        load_book(gz, "BTCUSDT")


def test_gzip_csv_written_by_hand(tmp_path: Path) -> None:
    gz = tmp_path / "b.csv.gz"
    with gzip.open(gz, "wt") as f:
        f.write(HEADER + "\n" + GOOD)
    b = load_book(gz, "BTCUSDT")
    assert len(b) == 1 and b.collateral_usd[0] == 10.0


# --------------------------------------------------------------------------- ccxt
def ccxt_pos(**kw) -> dict:
    pos = {
        "info": {},
        "id": None,
        "symbol": "BTC/USDT:USDT",
        "timestamp": 1700000000000,
        "datetime": "2023-11-14T22:13:20.000Z",
        "hedged": False,
        "side": "long",
        "contracts": 0.5,
        "contractSize": 1.0,
        "entryPrice": 36500.1,
        "markPrice": 36600.0,
        "notional": 18300.0,
        "leverage": 10.0,
        "collateral": 1830.0,
        "initialMargin": 1825.0,
        "maintenanceMargin": 73.2,
        "unrealizedPnl": 49.95,
        "liquidationPrice": 33000.0,
        "marginMode": "isolated",
        "percentage": 2.7,
    }
    pos.update(kw)
    return pos


def test_ccxt_symbol_rule() -> None:
    assert ccxt_symbol_to_instrument("BTC/USDT:USDT") == "BTCUSDT"
    assert ccxt_symbol_to_instrument("ETH/USDC:USDC") == "ETHUSDC"
    assert ccxt_symbol_to_instrument("BTC/USDT:USDT-250328") == "BTCUSDT_250328"
    with pytest.raises(DeleverInputError, match="inverse contract"):
        ccxt_symbol_to_instrument("BTC/USD:BTC")
    with pytest.raises(DeleverInputError, match="BASE/QUOTE:SETTLE"):
        ccxt_symbol_to_instrument("BTC/USDT")


def test_ccxt_list_without_accounts(tmp_path: Path) -> None:
    positions = [
        ccxt_pos(),
        ccxt_pos(
            side="short",
            contracts=3,
            contractSize=0.001,
            entryPrice="37000",
            collateral=None,
            initialMargin=11.1,
            marginMode="cross",
        ),
        ccxt_pos(contractSize=None, contracts=2, marginMode=None, isolated=False, collateral=0),
    ]
    p = write(tmp_path, json.dumps(positions), "pos.json")
    b = load_book(p, "BTCUSDT")
    np.testing.assert_array_equal(b.account, [0, 1, 2])
    np.testing.assert_array_equal(b.side, [1, -1, 1])
    np.testing.assert_allclose(b.qty, [0.5, 0.003, 2.0], rtol=1e-15)
    np.testing.assert_array_equal(b.entry_price, [36500.1, 37000.0, 36500.1])
    np.testing.assert_array_equal(b.collateral_usd, [1830.0, 11.1, 0.0])
    np.testing.assert_array_equal(b.cross, [False, True, True])


def test_ccxt_mapping_of_accounts(tmp_path: Path) -> None:
    doc = {"17": [ccxt_pos()], "4": [ccxt_pos(side="short", account=4)]}
    p = write(tmp_path, json.dumps(doc), "pos.json")
    b = load_ccxt_positions(p, "BTCUSDT")
    np.testing.assert_array_equal(b.account, [17, 4])
    np.testing.assert_array_equal(b.side, [1, -1])


def test_ccxt_list_with_accounts_in_field_or_info(tmp_path: Path) -> None:
    doc = [ccxt_pos(account=9), ccxt_pos(info={"account": "12"})]
    b = load_ccxt_positions(write(tmp_path, json.dumps(doc), "pos.json"), "BTCUSDT")
    np.testing.assert_array_equal(b.account, [9, 12])


@pytest.mark.parametrize(
    ("doc", "pattern"),
    [
        (
            [ccxt_pos(), ccxt_pos(symbol="ETH/USDT:USDT"), ccxt_pos(symbol="ETH/USDT:USDT")],
            r"2 of 3 positions are for other instruments: ETHUSDT \(2\)",
        ),
        ([ccxt_pos(symbol="BTC/USD:BTC")], r"position 1: ccxt symbol 'BTC/USD:BTC': inverse"),
        ([ccxt_pos(side="buy")], r"position 1: field 'side' is 'buy'"),
        ([ccxt_pos(), ccxt_pos(contracts=0)], r"position 2: field 'contracts' is 0"),
        ([ccxt_pos(contracts=None)], r"field 'contracts' is None"),
        ([ccxt_pos(contracts="lots")], r"field 'contracts' is 'lots'"),
        ([ccxt_pos(contractSize=-1)], r"field 'contractSize' is -1"),
        ([ccxt_pos(entryPrice=0)], r"field 'entryPrice' is 0"),
        ([ccxt_pos(collateral=-3)], r"field 'collateral' is -3"),
        ([ccxt_pos(collateral=None, initialMargin=None)], r"needs field 'collateral' or 'initialMargin'"),
        ([ccxt_pos(marginMode="portfolio")], r"field 'marginMode' is 'portfolio'"),
        ([ccxt_pos(marginMode=None)], r"field 'marginMode' is missing"),
        ([ccxt_pos(account=1), ccxt_pos()], r"position 2: field 'account' is missing"),
        ([ccxt_pos(account="alice")], r"account id 'alice' is not an integer"),
        ([ccxt_pos(account=1), ccxt_pos(account=1, side="short")], r"account 1 has 2 positions"),
        ({"x": [ccxt_pos()]}, r"account 'x' position 1: account id 'x' is not an integer"),
        ({"3": [ccxt_pos(account=4)]}, r"field 'account' is 4, expected '3'"),
        ({"3": ccxt_pos()}, r"account '3': expected a list of positions"),
        (ccxt_pos(), r"got one position"),
        ([], r"no positions"),
        ([5], r"position 1: expected a ccxt position object"),
        ("text", r"expected a list of ccxt positions"),
    ],
)
def test_bad_ccxt(tmp_path: Path, doc: object, pattern: str) -> None:
    p = write(tmp_path, json.dumps(doc), "pos.json")
    with pytest.raises(DeleverInputError, match=pattern) as exc:
        load_book(p, "BTCUSDT")
    assert str(exc.value).startswith(str(p)) and "\n" not in str(exc.value)


def test_ccxt_invalid_json(tmp_path: Path) -> None:
    p = write(tmp_path, "[{", "pos.json")
    with pytest.raises(DeleverInputError, match="not valid JSON"):
        load_ccxt_positions(p, "BTCUSDT")
