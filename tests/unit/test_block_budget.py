"""The byte budget of a block (Preset.max_block_bytes, issue 11 attack 2): the
assembler splits a burst so every block fits, refuses a tx that can never fit,
undoes an admission whose derived records pass the budget, and the rules reject
an over-budget block in the log (every executor skips it), so a block of
valid records is posted in one proposal, and any block in 120,000-byte chunks."""
from __future__ import annotations

import re
from pathlib import Path

import msgspec

from perps_support import ADDR, BTC, KEYS, T0, Sim, sign, usd
from sequencer.core.encoding import compute_record_hash, encode_block, encode_record
from sequencer.core.presets import MAX_BLOCK_BYTES
from sequencer.core.records import Block, Transfer
from sequencer.core.transition import apply_block_bytes
from sequencer.executor.chain import Chain
from sequencer.executor.output import decode_batch, encode_batch
from prover.records import compute_block_items
from sequencer.core.matching import Exchange
from sequencer.core.markets import DEVNET_MARKETS
from sequencer.node.assembler import BlockAssembler, CheckedRecord, Outcome

BRIDGE_SOURCE = Path(__file__).resolve().parents[2] / "l1_bridge" / "contracts" / "bridge.vy"
MAX_BATCH_BYTES = int(re.search(r"^MAX_BATCH_BYTES: public\(constant\(uint256\)\) = (\d+)$",
                                BRIDGE_SOURCE.read_text(), re.M).group(1))
"""What one proposal carries, read from the contract itself."""
BIG = 2**33  # above 2**32: 9-byte msgpack ints, the largest encoding of a nonce and an amount


def checked(record) -> CheckedRecord:
    raw = encode_record(record)
    return CheckedRecord(record, raw, compute_record_hash(raw))


def max_size_transfers(n: int, frm: str = "alice", to: str = "bob") -> list[CheckedRecord]:
    """``n`` valid signed transfers of the largest encoding a Transfer has."""
    return [checked(sign(Transfer(ADDR[frm], ADDR[to], BIG + i, BIG + i, T0 + 3_600_000, b""), KEYS[frm]))
            for i in range(n)]


def with_budget(sim: Sim, max_block_bytes: int) -> None:
    preset = msgspec.structs.replace(sim.ctx.preset, max_block_bytes=max_block_bytes)
    sim.ctx = msgspec.structs.replace(sim.ctx, preset=preset)


def test_any_block_within_the_budget_is_posted_in_chunks_of_one_proposal():
    """The worst block for the item encoding: one-byte records that are no
    record (each a 35-byte NOOP frame for one byte of the block: ~3.3 MB of
    items in 28 chunks)."""
    records = tuple(msgspec.Raw(b"\x01") for _ in range(MAX_BLOCK_BYTES - 100))
    message = encode_block(Block(1, b"\x00" * 32, T0, records))
    assert len(message) <= MAX_BLOCK_BYTES
    batch = encode_batch([message])
    assert len(batch.chunks) > 1 and all(len(c) <= MAX_BATCH_BYTES for c in batch.chunks)
    assert decode_batch(batch.chunks) == compute_block_items(message)


def test_a_burst_is_split_into_blocks_within_the_budget_that_a_follower_applies():
    sim = Sim(alice=2**63 - 1)
    follower = sim.make_genesis()
    asm = BlockAssembler(Chain(sim.state, sim.ctx).state, sim.ctx, max_records=4096)
    pending = max_size_transfers(2_000)
    blocks = 0
    now = T0
    while pending:
        assembly = asm.assemble(pending, now)
        assert not any(isinstance(o, Exception) for o in assembly.outcomes)
        admitted = [tx for tx, o in zip(pending, assembly.outcomes) if isinstance(o, Outcome)]
        assert admitted and len(assembly.message) <= MAX_BLOCK_BYTES
        assert len(encode_batch([assembly.message]).chunks) == 1  # its items fit one proposal
        asm.commit(assembly)
        result = apply_block_bytes(follower, assembly.message, sim.ctx)
        assert result.applied and all(r.ok for r in result.receipts)
        pending = [tx for tx, o in zip(pending, assembly.outcomes) if o is None]
        blocks += 1
        now += 1
    assert blocks >= 2_000 * 150 // MAX_BLOCK_BYTES  # ~140 bytes a transfer: it did split
    assert follower.accounts[ADDR["bob"]].collateral == sim.state.accounts[ADDR["bob"]].collateral


def test_a_tx_larger_than_the_budget_is_refused_and_changes_nothing():
    sim = Sim(alice=usd(1_000))
    with_budget(sim, 200)
    asm = BlockAssembler(sim.state, sim.ctx, max_records=4096)
    big = max_size_transfers(1)[0]
    assert len(big.raw) > 200 - BlockAssembler.BLOCK_OVERHEAD
    before = sim.state.to_tables()
    assembly = asm.assemble([big], T0)
    (outcome,) = assembly.outcomes
    assert outcome.code == "tx_too_large" and assembly.result is None
    assert sim.state.to_tables() == before


def test_an_admission_whose_trades_pass_the_budget_is_undone_and_waits():
    sim = Sim(alice=usd(100_000), bob=usd(100_000), carol=usd(100_000))
    books = Exchange(DEVNET_MARKETS)
    sim.exchange = books
    sim.set_price(60_000 * 10**6)
    for i in range(60):  # sixty resting asks of bob
        sim.place("bob", False, (60_000 + i) * 10**6, 10**5)
    sim.state.commit(0)
    with_budget(sim, 2_000)
    asm = BlockAssembler(sim.state, sim.ctx, max_records=4096, exchange=books)
    small = checked(sim.transfer_record("carol", "alice", usd(1)))
    sweep = checked(sim.order("alice", True, 60_100 * 10**6, 60 * 10**5))
    before = sim.state.to_tables()
    assembly = asm.assemble([small, sweep], sim.now)
    ok, waits = assembly.outcomes
    assert isinstance(ok, Outcome) and waits is None
    assert len(assembly.message) <= 2_000
    assert sim.state.positions.get((ADDR["alice"], BTC)) is None  # the sweep left no trace
    asm.revert(assembly)
    assert sim.state.to_tables() == before
    assembly = asm.assemble([sweep], sim.now)  # alone it still cannot fit: refused
    assert assembly.outcomes[0].code == "tx_too_large"
    assert sim.state.positions.get((ADDR["alice"], BTC)) is None
    asm.revert(assembly)  # the block of funding ticks due at this time, if any
    assert sim.state.to_tables() == before


def test_every_executor_rejects_a_block_over_the_budget():
    sim = Sim(alice=2**63 - 1)
    state = sim.make_genesis()
    g = state.globals
    raws = [tx.raw for tx in max_size_transfers(MAX_BLOCK_BYTES // 130)]
    message = encode_block(Block(g.block_number + 1, g.block_hash, T0, tuple(map(msgspec.Raw, raws))))
    assert len(message) > MAX_BLOCK_BYTES and len(raws) <= sim.ctx.preset.max_block_records
    before = state.to_tables()
    result = apply_block_bytes(state, message, sim.ctx)
    assert not result.applied and "block_too_large" in result.receipts[0].error
    assert state.to_tables() == before
    fits = raws[:len(raws) * 9 // 10]
    message = encode_block(Block(g.block_number + 1, g.block_hash, T0, tuple(map(msgspec.Raw, fits))))
    assert len(message) <= MAX_BLOCK_BYTES
    assert apply_block_bytes(state, message, sim.ctx).applied
