"""Account books on disk: several positions per account in CSV / Parquet / ccxt JSON, round trips, bad rows."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from delever.book import PositionBook
from delever.book_io import (
    account_book_from_positions,
    load_account_book,
    load_ccxt_account_book,
    save_account_book,
    save_book,
)
from delever.errors import DeleverInputError
from delever.model.accounts import AccountBook
from delever.model.instruments import Asset, InstrumentRegistry
from delever.risk.tiered import TieredRisk
from delever.synthesize_multi import MultiSynthesisParams, synthesize_accounts
from delever.venues.tiers import MarginTiers

ARRAYS = ("account_id", "group_account", "group_isolated", "pos_group", "pos_instrument", "pos_qty", "pos_entry_price",
          "balance")
COINS = ("BTCUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT")
HEADER = "account,instrument,qty,entry_price,collateral,collateral_asset,margin_mode\n"


def write(tmp: Path, text: str, name: str = "book.csv") -> Path:
    p = tmp / name
    p.write_text(text)
    return p


def assert_same(a: AccountBook, b: AccountBook) -> None:
    assert a.registry.symbols == b.registry.symbols and a.registry.assets.symbols == b.registry.assets.symbols
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def canonical(b: AccountBook):
    """Positions by (account, instrument) with their symbol, signed qty, entry, margin mode and group balances."""
    acc = b.account_id[b.pos_account]
    o = np.lexsort((b.pos_instrument, acc))
    sym = np.asarray(b.registry.symbols)[b.pos_instrument]
    return (acc[o], sym[o], b.pos_qty[o], b.pos_entry_price[o], b.group_isolated[b.pos_group][o],
            b.balance[b.pos_group][o])


def synthesized(n_accounts: int = 3_000) -> AccountBook:
    reg = InstrumentRegistry.linear(list(COINS))
    tiers = MarginTiers.from_floors([0, 5e4, 2.5e5, 1e6], [125, 100, 50, 20], [0.004, 0.005, 0.01, 0.025])
    p = MultiSynthesisParams(open_interest_usd=(1e8, 3e7, 2e7, 1e7), accounts=n_accounts, entry_source="lognormal",
                             equilibrium="start", instruments_per_account_share=(0.4, 0.3, 0.2, 0.1))
    book, _ = synthesize_accounts(p, reg, np.array([60_000.0, 150.0, 2.5, 0.2]), None, np.random.default_rng(4),
                                  TieredRisk((tiers,) * 4))
    return book


@pytest.mark.parametrize("name", ["b.csv", "b.csv.gz", "b.parquet"])
def test_round_trip(tmp_path: Path, name: str) -> None:
    book = synthesized()
    path = tmp_path / name
    save_account_book(book, path)
    back = load_account_book(path, book.registry)
    for x, y in zip(canonical(book), canonical(back), strict=True):
        np.testing.assert_array_equal(x, y)
    assert back.n_groups == book.n_groups and back.n_accounts == book.n_accounts
    # a book in the reader's own order comes back array for array
    save_account_book(back, tmp_path / ("again." + name.split(".", 1)[1]))
    assert_same(load_account_book(tmp_path / ("again." + name.split(".", 1)[1]), book.registry), back)


def test_round_trip_without_registry_infers_linear_perps(tmp_path: Path) -> None:
    book = synthesized(500)
    save_account_book(book, tmp_path / "b.parquet")
    back = load_account_book(tmp_path / "b.parquet")
    assert set(back.registry.symbols) == set(COINS) and back.registry.assets.symbols == ("USDT",)
    assert [i.base for i in back.registry.instruments] == [s.removesuffix("USDT") for s in back.registry.symbols]
    for x, y in zip(canonical(book), canonical(back), strict=True):
        np.testing.assert_array_equal(x, y)


def test_multi_collateral_cross_wallet_round_trip(tmp_path: Path) -> None:
    reg = InstrumentRegistry.linear(["BTCUSDT", "ETHUSDT", "SOLUSDT"], extra_assets=(Asset("USDC"),))
    book = AccountBook(reg, np.array([7, 9]), np.array([0, 1, 1]), np.array([False, True, True]),
                       np.array([0, 0, 0, 1, 2]), np.array([0, 1, 2, 0, 1]),
                       np.array([0.5, -3.0, 10.0, -0.1, 2.0]), np.array([60_000.0, 3_000.0, 150.0, 61_000.0, 2_900.0]),
                       np.array([[5_000.0, 1_200.5], [600.0, 0.0], [0.0, 250.0]])).validate()
    path = tmp_path / "m.csv"
    save_account_book(book, path)
    rows = path.read_text().splitlines()
    assert rows[1:4] == ['7,"BTCUSDT",0.5,60000,5000,"USDT","cross"', '7,"ETHUSDT",-3,3000,1200.5,"USDC","cross"',
                         '7,"SOLUSDT",10,150,5000,"USDT","cross"']
    assert_same(load_account_book(path, reg), book)


def test_wallet_repeated_given_once_or_summed_per_position(tmp_path: Path) -> None:
    repeated = write(tmp_path, HEADER + "1,BTCUSDT,0.1,60000,900,USDT,cross\n1,ETHUSDT,-2,3000,900,USDT,cross\n"
                                        "2,ETHUSDT,1,3000,150,USDT,isolated\n", "r.csv")
    once = write(tmp_path, HEADER + "1,BTCUSDT,0.1,60000,0,USDT,cross\n1,ETHUSDT,-2,3000,900,USDT,cross\n"
                                    "2,ETHUSDT,1,3000,150,USDT,isolated\n", "o.csv")
    shares = write(tmp_path, HEADER + "1,BTCUSDT,0.1,60000,400,USDT,cross\n1,ETHUSDT,-2,3000,500,USDT,cross\n"
                                      "2,ETHUSDT,1,3000,150,USDT,isolated\n", "s.csv")
    a = load_account_book(repeated)
    assert_same(load_account_book(once), a)
    assert_same(load_account_book(shares, cross_collateral="per_position"), a)
    assert a.balance[:, 0].tolist() == [900.0, 150.0] and a.group_isolated.tolist() == [False, True]
    with pytest.raises(DeleverInputError, match=r"s\.csv: row 1: account 1 gives cross collateral .*400\.0.* another row .*500\.0"):
        load_account_book(shares)


def test_side_column_with_positive_quantities(tmp_path: Path) -> None:
    signed = write(tmp_path, HEADER + "1,BTCUSDT,0.1,60000,900,USDT,cross\n1,ETHUSDT,-2,3000,900,USDT,cross\n", "a.csv")
    sided = write(tmp_path, "account,instrument,side,qty,entry_price,collateral,collateral_asset,margin_mode\n"
                            "1,BTCUSDT,Long,0.1,60000,900,USDT,CROSS\n1,ETHUSDT,-1,2,3000,900,USDT,cross\n", "b.csv")
    assert_same(load_account_book(sided), load_account_book(signed))


def test_one_instrument_file_becomes_an_account_book(tmp_path: Path) -> None:
    pb = PositionBook("BTCUSDT", np.array([3, 1, 2]), np.array([1, -1, 1]), np.array([0.5, 1.0, 2.0]),
                      np.array([60_000.0, 61_000.0, 59_000.0]), np.array([3_000.0, 5_000.0, 0.0]),
                      np.array([True, False, True]))
    ab = account_book_from_positions(pb)
    assert ab.n_accounts == ab.n_groups == ab.n_positions == 3
    np.testing.assert_array_equal(ab.pos_qty, [0.5, -1.0, 2.0])
    np.testing.assert_array_equal(ab.account_id[ab.pos_account], [3, 1, 2])
    np.testing.assert_array_equal(ab.group_isolated[ab.pos_group], [False, True, False])
    np.testing.assert_array_equal(ab.balance[ab.pos_group, 0], [3_000.0, 5_000.0, 0.0])
    save_book(pb, tmp_path / "one.csv")
    assert_same(load_account_book(tmp_path / "one.csv"), ab)
    reg = InstrumentRegistry.linear(["BTCUSDT"])
    assert_same(load_account_book(tmp_path / "one.csv", reg), ab)


CCXT = [
    {"symbol": "BTC/USDT:USDT", "side": "long", "contracts": 0.5, "contractSize": 1, "entryPrice": 60000,
     "collateral": 8000, "marginMode": "cross", "account": 11},
    {"symbol": "ETH/USDT:USDT", "side": "short", "contracts": "4", "entryPrice": "3000", "collateral": 8000,
     "marginMode": "cross", "account": 11},
    {"symbol": "SOL/USDC:USDC", "side": "long", "contracts": 20, "contractSize": 1, "entryPrice": 150,
     "initialMargin": 300, "isolated": True, "info": {"account": "12"}},
]


def test_ccxt_several_positions_per_account(tmp_path: Path) -> None:
    p = write(tmp_path, json.dumps(CCXT), "pos.json")
    b = load_account_book(p)
    assert b.registry.symbols == ("BTCUSDT", "ETHUSDT", "SOLUSDC")
    assert b.registry.assets.symbols == ("USDT", "USDC")
    np.testing.assert_array_equal(b.account_id, [11, 12])
    np.testing.assert_array_equal(b.pos_qty, [0.5, -4.0, 20.0])
    np.testing.assert_array_equal(b.balance, [[8000.0, 0.0], [0.0, 300.0]])
    assert b.group_isolated.tolist() == [False, True]
    # object layout (account -> positions), wallet per position
    doc = {"11": [dict(CCXT[0], collateral=5000), dict(CCXT[1], collateral=3000)], "12": [CCXT[2]]}
    q = write(tmp_path, json.dumps(doc), "map.json")
    assert_same(load_ccxt_account_book(q, cross_collateral="per_position"), b)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"side": "flat"}, r"position 2: field 'side' is 'flat'"),
        ({"contracts": -1}, r"position 2: field 'contracts' is -1"),
        ({"entryPrice": None}, r"position 2: field 'entryPrice' is None"),
        ({"symbol": "ETH/USD:ETH"}, r"position 2: ccxt symbol 'ETH/USD:ETH': inverse contract"),
        ({"marginMode": "portfolio"}, r"position 2: field 'marginMode' is 'portfolio'"),
        ({"collateral": 7000}, r"row 2: account 11 gives cross collateral .*7000\.0.* another row .*8000"),
        ({"symbol": "ETH/DAI:DAI", "collateral": 1}, r"position 2: field 'instrument' is 'ETHDAI', not an instrument"),
    ],
)
def test_bad_ccxt_positions(tmp_path: Path, change: dict, pattern: str) -> None:
    doc = [CCXT[0], dict(CCXT[1], **change), CCXT[2]]
    reg = InstrumentRegistry.linear(["BTCUSDT", "ETHUSDT", "SOLUSDC"], extra_assets=(Asset("USDC"),))
    with pytest.raises(DeleverInputError, match=pattern):
        load_ccxt_account_book(write(tmp_path, json.dumps(doc), "bad.json"), reg)


def test_ccxt_settlement_must_be_a_stablecoin_without_registry(tmp_path: Path) -> None:
    doc = [CCXT[0], dict(CCXT[1], symbol="ETH/BTC:BTC")]
    with pytest.raises(DeleverInputError, match=r"position 2: instrument 'ETHBTC' settles in 'BTC', not a USD stable"):
        load_ccxt_account_book(write(tmp_path, json.dumps(doc), "p.json"))


def test_ccxt_instrument_outside_the_registry(tmp_path: Path) -> None:
    reg = InstrumentRegistry.linear(["BTCUSDT", "ETHUSDT"], extra_assets=(Asset("USDC"),))
    with pytest.raises(DeleverInputError, match=r"position 3: field 'instrument' is 'SOLUSDC', not an instrument"):
        load_ccxt_account_book(write(tmp_path, json.dumps(CCXT), "p.json"), reg)


GOOD = "1,BTCUSDT,0.1,60000,900,USDT,cross\n"


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        (HEADER + GOOD + "2,BTCUSDT,0,60000,10,USDT,isolated\n", r"row 2: field 'qty' is 0\.0, expected a finite signed"),
        (HEADER + GOOD + "2,BTCUSDT,nan,60000,10,USDT,isolated\n", r"row 2: field 'qty' is nan"),
        (HEADER + GOOD + "2,BTCUSDT,abc,60000,10,USDT,isolated\n", r"row 2: field 'qty' is 'abc'"),
        (HEADER + GOOD + "2,BTCUSDT,1,-5,10,USDT,isolated\n", r"row 2: field 'entry_price' is -5\.0"),
        (HEADER + GOOD + "2,BTCUSDT,1,60000,-1,USDT,isolated\n", r"row 2: field 'collateral' is -1\.0"),
        (HEADER + GOOD + "2,BTCUSDT,1,60000,,USDT,isolated\n", r"row 2: field 'collateral' is '', expected an amount >= 0"),
        (HEADER + GOOD + "2.5,BTCUSDT,1,60000,1,USDT,isolated\n", r"row 2: field 'account' is '2\.5'"),
        (HEADER + GOOD + "2,BTCUSDT,1,60000,1,USDT,hedge\n", r"row 2: field 'margin_mode' is 'hedge'"),
        (HEADER + GOOD + "2,BTCUSDT,1,60000,1,EUR,isolated\n", r"row 2: field 'collateral_asset' is 'EUR', not an asset"),
        (HEADER + GOOD + "2,DOGEUSDT,1,0.2,1,USDT,isolated\n", r"row 2: field 'instrument' is 'DOGEUSDT', not an"),
        (HEADER + GOOD + "2, ,1,60000,1,USDT,isolated\n", r"row 2: field 'instrument' is empty"),
        (HEADER + GOOD + "1,BTCUSDT,0.2,60000,900,USDT,cross\n", r"account 1 has 2 positions in BTCUSDT"),
        (HEADER.replace("qty,", "qty,lots,").replace("\n", "") + "\n", r"unknown column 'lots'"),
        (HEADER.replace("margin_mode", "mode"), r"unknown column 'mode'"),
        (HEADER, r"has no rows"),
        ("account,instrument,side,qty,entry_price,collateral,collateral_asset,margin_mode\n"
         "1,BTCUSDT,long,0.1,60000,900,USDT,cross\n2,BTCUSDT,short,-1,60000,9,USDT,cross\n",
         r"row 2: field 'qty' is -1\.0, expected a finite quantity > 0 \(the side is in 'side'\)"),
        ("account,instrument,side,qty,entry_price,collateral,collateral_asset,margin_mode\n"
         "1,BTCUSDT,long,0.1,60000,900,USDT,cross\n2,BTCUSDT,up,1,60000,9,USDT,cross\n", r"row 2: field 'side' is 'up'"),
    ],
)
def test_bad_rows_refused_with_row_number(tmp_path: Path, body: str, pattern: str) -> None:
    reg = InstrumentRegistry.linear(["BTCUSDT", "ETHUSDT"])
    with pytest.raises(DeleverInputError, match=pattern):
        load_account_book(write(tmp_path, body), reg)


def test_bad_row_found_in_a_large_gzip_csv(tmp_path: Path) -> None:
    book = synthesized(2_000)
    path = tmp_path / "b.csv.gz"
    save_account_book(book, path)
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    fields = lines[1234].split(",")
    fields[3] = "0"  # entry price of data row 1234
    lines[1234] = ",".join(fields)
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(DeleverInputError, match=r"bad\.csv\.gz: row 1234: field 'entry_price' is 0\.0"):
        load_account_book(bad, book.registry)


def test_without_registry_the_assets_must_be_stablecoins(tmp_path: Path) -> None:
    with pytest.raises(DeleverInputError, match=r"row 2: field 'collateral_asset' is 'BTC', not a USD stablecoin"):
        load_account_book(write(tmp_path, HEADER + GOOD + "2,BTCUSDT,1,60000,0.1,BTC,isolated\n"))
    with pytest.raises(DeleverInputError, match=r"row 2: instrument 'BTC-PERP' does not end with a USD stablecoin"):
        load_account_book(write(tmp_path, HEADER + GOOD + "2,BTC-PERP,1,60000,1,USDT,isolated\n"))


def test_save_refuses_what_rows_cannot_hold(tmp_path: Path) -> None:
    reg = InstrumentRegistry.linear(["BTCUSDT"], extra_assets=(Asset("USDC"),))
    debt = AccountBook(reg, np.array([1]), np.array([0]), np.array([True]), np.array([0]), np.array([0]),
                       np.array([0.1]), np.array([60_000.0]), np.array([[-5.0, 900.0]]))
    with pytest.raises(DeleverInputError, match="margin group 1 has a negative balance"):
        save_account_book(debt, tmp_path / "d.csv")
    two = AccountBook(reg, np.array([1]), np.array([0]), np.array([False]), np.array([0]), np.array([0]),
                      np.array([0.1]), np.array([60_000.0]), np.array([[5.0, 900.0]]))
    with pytest.raises(DeleverInputError, match="margin group 1 holds 2 assets but 1 position"):
        save_account_book(two, tmp_path / "t.csv")
    with pytest.raises(DeleverInputError, match="cannot save an account book there"):
        save_account_book(synthesized(100), tmp_path / "t.json")
