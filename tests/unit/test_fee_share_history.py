"""The insurance fund's history and the history projection (sequencer.node.history)
over a real Chain: every change of the fund is listed by kind (the fee share
exactly, liquidation fees and bad debt net, funding dust), the changes add up
to the balance, and the projection is the same whether it ran in one pass,
was stopped and reopened (skipping what it holds), or rebuilt a hole from
genesis (candles built out of order included)."""
from __future__ import annotations

import asyncio
import itertools

import msgspec

from perps_support import BTC, CTX, ONE_BTC, Sim, usd
from sequencer.core.encoding import compute_block_hash, encode_block, encode_record
from sequencer.core.markets import DEVNET_MARKETS, INSURANCE_FEE_SHARE_PPM
from sequencer.core.presets import PPM
from sequencer.core.records import Block, Deleverage, Liquidate, Trade
from sequencer.executor.chain import Chain
from sequencer.log.kafka import LogMessage
from sequencer.node.history import HistoryProjection, HistoryStore

PRICE = usd(60_000)


def to_messages(sim: Sim) -> list[bytes]:
    """The Sim's log as blocks, one per block time, chained from its genesis."""
    state = sim.make_genesis()
    parent, number, out = state.globals.block_hash, 0, []
    for now, group in itertools.groupby(sim.log, key=lambda item: item[0]):
        number += 1
        message = encode_block(Block(number, parent, now, tuple(msgspec.Raw(encode_record(r)) for _, r in group)))
        parent = compute_block_hash(message)
        out.append(message)
    return out


def project(sim: Sim, messages: list[bytes], store: HistoryStore, start: int = 0, stop: int | None = None) -> Chain:
    chain = Chain(sim.make_genesis(), CTX)
    HistoryProjection(store, lambda: DEVNET_MARKETS).attach(chain)
    for offset, message in enumerate(messages[:stop]):
        if offset >= start:
            assert chain.apply_message(offset, message).applied
    return chain


def dump(store: HistoryStore) -> dict:
    db = store.db
    return {table: db.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall()
            for table in ("fills", "account_fills", "trades", "candles", "prices", "funding_ticks", "funding_payments",
                          "insurance")}


def trading_session() -> Sim:
    """Trades at several prices, a funding tick, a healthy liquidation (fee to the
    fund) and a bankrupt one (bad debt paid by the fund)."""
    sim = Sim(fund=usd(100_000), alice=usd(20_000), bob=usd(1_000_000), carol=usd(1_000_000),
              dave=usd(3_000))
    sim.set_price(PRICE)
    for price in (60_000, 60_010, 59_990):                               # a block each
        sim.now += 1
        sim.place("bob", False, usd(price), ONE_BTC // 10)
        sim.place("carol", True, usd(price), ONE_BTC // 10, tif=1)
    sim.now += 1
    sim.place("bob", False, PRICE, ONE_BTC)
    sim.place("alice", True, PRICE, ONE_BTC, leverage=10)               # 10x long 1 BTC
    sim.place("bob", False, PRICE, ONE_BTC // 10)
    sim.place("dave", True, PRICE, ONE_BTC // 10, leverage=20)           # 20x long 0.1 BTC
    sim.now += 60_000
    sim.set_price(PRICE)
    sim.funding()
    sim.set_price(usd(57_500))                                           # dave: liquidated with margin left
    sim.set_price(usd(50_000))                                           # alice: bankrupt, the fund pays
    return sim


def test_every_change_of_the_fund_is_listed_by_kind_and_adds_up():
    sim = trading_session()
    messages = to_messages(sim)
    store = HistoryStore(None)
    chain = project(sim, messages, store)
    tables, expected = chain.state.to_tables(), sim.state.to_tables()
    assert tables.pop("globals").insurance_fund == expected.pop("globals").insurance_fund
    assert tables == expected                                              # the blocks replay the session
    changes = store.insurance(10_000, None)["items"][::-1]                # oldest first
    kinds = {c["kind"] for c in changes}
    assert kinds <= {"fee_share", "liquidation", "funding_dust"} and {"fee_share", "liquidation"} <= kinds
    # The changes add up: each balance is the one before plus the amount, ending at the fund.
    balance = usd(100_000)
    for change in changes:
        balance += change["amount"]
        assert change["balance"] == balance and change["amount"] != 0
    assert balance == sim.state.globals.insurance_fund
    # The fee share is exact: a fifth (rounded down) of each trade's fees, block by block.
    trades_by_block = {}
    for fill in store.db.execute("SELECT fill FROM fills"):
        fill = msgspec.json.decode(fill[0])
        trades_by_block.setdefault(fill["block"], {})[fill["index"]] = fill
    expected = {b: sum((f["makerFee"] + f["takerFee"]) * INSURANCE_FEE_SHARE_PPM // PPM for f in fills.values())
                for b, fills in trades_by_block.items()}
    assert {c["block"]: c["amount"] for c in changes if c["kind"] == "fee_share"} == expected
    # Liquidations: a fee in, then bad debt out (the bankrupt long's loss beyond its margin).
    liquidation = [c["amount"] for c in changes if c["kind"] == "liquidation"]
    assert len(liquidation) == 2 and liquidation[0] > 0 > liquidation[1]
    # (rules v3: each liquidation's step down the ladder is a Deleverage)
    assert sum(type(r) in (Liquidate, Deleverage) for _, r in sim.log) >= 2
    assert sum(type(r) is Trade for _, r in sim.log) >= 5


def test_pages_are_newest_first_with_a_cursor_to_the_last_one():
    sim = trading_session()
    store = HistoryStore(None)
    project(sim, to_messages(sim), store)
    everything = store.insurance(10_000, None)
    assert everything["next"] is None and len(everything["items"]) >= 6
    pages, cursor = [], None
    while True:
        page = store.insurance(3, cursor)
        pages += page["items"]
        cursor = page["next"]
        if cursor is None:
            break
        block, index = map(int, cursor.split(":"))
        cursor = (block, index)
    assert pages == everything["items"]
    keys = [(c["block"], c["index"]) for c in pages]
    assert keys == sorted(keys, reverse=True) and len(set(keys)) == len(keys)
    assert store.insurance(5, (0, 0)) == {"items": [], "next": None}       # nothing before block 0
    assert store.account_fills(b"\x00" * 20, 5, None) == {"items": [], "next": None}


def test_a_reopened_store_skips_what_it_holds(tmp_path):
    sim = trading_session()
    messages = to_messages(sim)
    once = HistoryStore(None)
    project(sim, messages, once)
    path = tmp_path / "history.sqlite"
    first = HistoryStore(path)
    project(sim, messages, first, stop=len(messages) // 2)
    first.close()
    # A restart from genesis (no snapshot): the whole log is replayed; the store is ahead.
    again = HistoryStore(path)
    assert again.next_offset == len(messages) // 2
    project(sim, messages, again)
    assert dump(again) == dump(once)
    again.close()
    # A restart once more replays everything again: nothing changes.
    third = HistoryStore(path)
    project(sim, messages, third)
    assert dump(third) == dump(once) and third.next_offset == len(messages)


def test_a_store_behind_the_snapshot_is_rebuilt_from_genesis(tmp_path):
    sim = trading_session()
    messages = to_messages(sim)
    once = HistoryStore(None)
    project(sim, messages, once)
    snapshot_at = len(messages) * 2 // 3
    chain = project(sim, messages, HistoryStore(None), stop=snapshot_at)   # the state a snapshot would hold
    store = HistoryStore(tmp_path / "history.sqlite")
    projection = HistoryProjection(store, lambda: DEVNET_MARKETS)
    chain.listeners.clear()
    projection.attach(chain)                                               # behind: history from here on
    assert store.history_from == snapshot_at
    for offset in range(snapshot_at, len(messages)):
        chain.apply_message(offset, messages[offset])
    assert dump(store) != dump(once)                                       # the hole before the snapshot

    async def log_from_genesis():
        for offset, message in enumerate(messages):
            yield LogMessage(offset, message, None)

    written = asyncio.run(projection.rebuild(Chain(sim.make_genesis(), CTX), log_from_genesis()))
    assert written == snapshot_at and store.history_from == 0
    assert dump(store) == dump(once)                                       # candles merged out of order too
    assert HistoryStore(tmp_path / "history.sqlite").history_from == 0     # and it says so after a restart


def test_a_file_of_another_layout_is_dropped_and_rebuilt(tmp_path):
    path = tmp_path / "history.sqlite"
    old = HistoryStore(path)
    old.skip(42)
    old.db.execute("PRAGMA user_version = 0")                             # written by another version
    old.close()
    store = HistoryStore(path)
    assert store.next_offset == 0 and store.insurance(10, None) == {"items": [], "next": None}
    chain = Chain(Sim().make_genesis(), CTX)
    chain.next_offset = 7                                                  # a node starting from a snapshot
    HistoryProjection(store, lambda: DEVNET_MARKETS).attach(chain)
    assert store.history_from == 7                                         # so it rebuilds from genesis
