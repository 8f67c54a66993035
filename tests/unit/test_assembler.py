"""The block assembler (sequencer.node.assembler), without asyncio or Kafka:
checked txs in, the block's bytes, receipts and per-tx outcomes out; each
submitted tx's bytes and hash reused (encoded and hashed here: only the records
its admission derived); a block a follower applies to the same state and root;
refusals, no room, nothing to write, and revert."""
from __future__ import annotations

import msgspec
import pytest

import sequencer.node.assembler as assembler_module
from perps_support import ADDR, BTC, KEYS, ONE_BTC, T0, Sim, sign, sign_oracle, usd
from sequencer.core.encoding import compute_record_hash, decode_block, encode_record
from sequencer.core.matching import Exchange
from sequencer.core.markets import DEVNET_MARKETS
from sequencer.core.records import Deleverage, Liquidate, Trade, Transfer
from sequencer.core.transition import RuleError, apply_block_bytes
from sequencer.executor.chain import Chain
from sequencer.node.assembler import BlockAssembler, BuiltBlock, CheckedRecord, Outcome

PRICE = 60_000 * 10**6


def make(sim: Sim, exchange: bool = True, max_records: int = 4096) -> tuple[BlockAssembler, Chain]:
    chain = Chain(sim.state, sim.ctx)
    books = Exchange(DEVNET_MARKETS) if exchange else None
    return BlockAssembler(chain.state, sim.ctx, max_records=max_records, exchange=books), chain


def checked(record) -> CheckedRecord:
    """What the API builds from a tx check: the record, its log bytes, their hash."""
    raw = encode_record(record)
    return CheckedRecord(record, raw, compute_record_hash(raw))


def transfer(sim: Sim, frm: str, to: str, amount: int) -> CheckedRecord:
    return checked(sim.transfer_record(frm, to, amount))


def count_calls(monkeypatch, name: str) -> list[int]:
    calls = [0]
    original = getattr(assembler_module, name)

    def counted(*args):
        calls[0] += 1
        return original(*args)
    monkeypatch.setattr(assembler_module, name, counted)
    return calls


def test_transfers_reuse_their_bytes_and_hashes_and_a_follower_agrees(monkeypatch):
    sim = Sim(alice=usd(1_000), bob=usd(10))
    genesis = sim.make_genesis()
    asm, chain = make(sim, exchange=False)
    txs = [transfer(sim, "alice", "bob", usd(5)), transfer(sim, "bob", "alice", usd(500)),
           transfer(sim, "alice", "bob", usd(7))]
    encodes, hashes = count_calls(monkeypatch, "encode_record"), count_calls(monkeypatch, "compute_record_hash")
    assembly = asm.assemble(txs, T0)
    assert (encodes[0], hashes[0], assembly.derived_hashes) == (0, 0, 0)  # nothing encoded or hashed twice
    ok1, refused, ok2 = assembly.outcomes
    assert isinstance(refused, RuleError) and refused.code == "insufficient_collateral"
    assert isinstance(ok1, Outcome) and isinstance(ok2, Outcome) and ok1.ok and ok2.ok
    assert ok1.derived == [] and assembly.admitted == 2
    block = assembly.result.block
    assert [bytes(r) for r in block.records] == [txs[0].raw, txs[2].raw]
    assert [r.hash for r in assembly.result.receipts] == [txs[0].tx_hash, txs[2].tx_hash]
    assert (ok1.receipt.index, ok2.receipt.index) == (0, 1)
    assert decode_block(assembly.message) == block and block.number == 1
    asm.commit(assembly)
    assert chain.state.accounts[ADDR["alice"]].collateral == usd(1_000 - 12)
    # a follower applies the same bytes to the same state and receipts
    follower = Chain(genesis, sim.ctx)
    result = follower.apply_message(0, assembly.message)
    assert result.receipts == assembly.result.receipts and result.block_hash == assembly.result.block_hash
    assert follower.compute_state_root() == chain.compute_state_root()


def test_a_taker_order_gets_its_trades_and_only_they_are_encoded(monkeypatch):
    sim = Sim(fund=usd(100_000), alice=usd(100_000), bob=usd(100_000))
    asm, chain = make(sim)
    price = checked(sign_oracle(BTC, PRICE, T0))
    maker = checked(sim.order("bob", False, PRICE, ONE_BTC // 100))
    first = asm.assemble([price, maker], T0)
    asm.commit(first)
    assert all(isinstance(o, Outcome) and o.derived == [] for o in first.outcomes)
    taker = checked(sim.order("alice", True, PRICE, ONE_BTC // 100))
    encodes, hashes = count_calls(monkeypatch, "encode_record"), count_calls(monkeypatch, "compute_record_hash")
    assembly = asm.assemble([taker], T0 + 1)
    (outcome,) = assembly.outcomes
    trades = outcome.derived
    assert len(trades) == 1 and isinstance(trades[0], Trade)
    assert (trades[0].taker, trades[0].maker, trades[0].size) == (ADDR["alice"], ADDR["bob"], ONE_BTC // 100)
    assert isinstance(assembly.result, BuiltBlock)
    records = assembly.result.records  # the listeners get objects, not bytes
    start = outcome.receipt.index  # block-start records (the funding tick now due) come first
    assert records[start:] == [taker.record, *trades]
    assert encodes[0] == hashes[0] == assembly.derived_hashes == len(records) - 1  # all but the taker's
    receipts = assembly.result.receipts
    assert receipts[start] == outcome.receipt and receipts[start].hash == taker.tx_hash
    assert receipts[start + 1].hash == compute_record_hash(encode_record(trades[0]))
    # the same block, applied from its bytes by the transition, gives the same receipts
    replica = sim.make_genesis()
    for b in (first, assembly):
        assert apply_block_bytes(replica, b.message, sim.ctx).receipts == b.result.receipts


def test_a_price_that_liquidates_reports_the_liquidations():
    sim = Sim(fund=usd(1_000_000), alice=usd(10_000), bob=usd(1_000_000))
    asm, chain = make(sim)
    size = ONE_BTC // 10
    setup = [checked(sign_oracle(BTC, PRICE, T0)), checked(sim.order("bob", False, PRICE, size, leverage=2)),
             checked(sim.order("alice", True, PRICE, size, leverage=10))]
    asm.commit(asm.assemble(setup, T0))
    assert chain.state.positions[(ADDR["alice"], BTC)].size == size
    crash = checked(sign_oracle(BTC, PRICE // 2, T0 + 999))         # a jump: held until confirmed
    confirmation = checked(sign_oracle(BTC, PRICE // 2, T0 + 1_000))
    assembly = asm.assemble([crash, confirmation], T0 + 1_000)
    pending, outcome = assembly.outcomes
    assert not any(isinstance(r, (Liquidate, Deleverage)) for r in pending.derived)
    liquidations = [r for r in outcome.derived if isinstance(r, (Liquidate, Deleverage))]   # v3: Deleverage
    assert [(r.account, r.market) for r in liquidations] == [(ADDR["alice"], BTC)]


def test_no_room_defers_and_nothing_admitted_writes_nothing():
    sim = Sim(alice=usd(1_000), bob=usd(1_000))
    asm, chain = make(sim, exchange=False, max_records=BlockAssembler.RESERVED_RECORDS + 2)
    txs = [transfer(sim, "alice", "bob", 1) for _ in range(4)]
    assembly = asm.assemble(txs, T0)
    assert [type(o) for o in assembly.outcomes] == [Outcome, Outcome, type(None), type(None)]
    asm.commit(assembly)
    before = chain.state.to_tables()
    empty = asm.assemble([transfer(sim, "bob", "alice", usd(10_000))], T0)  # refused: nothing to write
    assert empty.result is None and empty.message == b"" and isinstance(empty.outcomes[0], RuleError)
    assert chain.state.to_tables() == before and chain.state._journal == []


def test_revert_undoes_the_block_and_the_books():
    sim = Sim(fund=usd(100_000), alice=usd(100_000), bob=usd(100_000))
    asm, chain = make(sim)
    asm.commit(asm.assemble([checked(sign_oracle(BTC, PRICE, T0))], T0))
    before = chain.state.to_tables()
    root = chain.compute_state_root()
    maker = checked(sim.order("bob", False, PRICE, ONE_BTC // 100))
    assembly = asm.assemble([maker], T0 + 1)
    assert asm.exchange.open_orders(ADDR["bob"])  # resting while the block is in flight
    asm.revert(assembly)  # the log did not take it
    assert chain.state.to_tables() == before and chain.compute_state_root() == root
    assert asm.exchange.open_orders(ADDR["bob"]) == []
    assert chain.state.globals.block_number == 1


def test_a_bug_in_admission_propagates_and_leaves_the_state():
    sim = Sim(alice=usd(1_000), bob=usd(1_000))
    chain = Chain(sim.state, sim.ctx)

    def admit(state, record, timestamp_ms, ctx):
        raise ZeroDivisionError("a bug")
    asm = BlockAssembler(chain.state, sim.ctx, max_records=4096, admit=admit)
    before = chain.state.to_tables()
    with pytest.raises(ZeroDivisionError):
        asm.assemble([transfer(sim, "alice", "bob", 1)], T0)
    assert chain.state.to_tables() == before


def test_checked_record_of_encodes_and_hashes_once():
    record = sign(Transfer(ADDR["alice"], ADDR["bob"], 5, 1, T0 + 60_000, b""), KEYS["alice"])
    tx = CheckedRecord.of(record)
    assert tx.raw == encode_record(record) and tx.tx_hash == compute_record_hash(tx.raw)
    assert msgspec.msgpack.decode(tx.raw) is not None
