"""A trading session re-executed on L1 item by item (issue 12).

The family tests generate states and records kind by kind; this one runs what
a sequencer really writes: an in-process exchange (tests/unit/perps_support
``Sim``: signed orders through the block builder's matching, quorum-signed
oracle prices, funding ticks and the other block-start records of the node's
assembler) trades for a while: prices move, orders rest, cross, are modified
and cancelled, margin moves, stops fire, a position is liquidated into the
book, the vault takes deposits, funding is paid; then (rules v3) an ETH long
with no bid left is liquidated down the ladder (a Deleverage naming the
profitable short, the fund paying the bad debt), and the L1 inbox forces bob's
BTC short closed: the insurance fund takes it over at the mark and the engine
unwinds it at once (a Deleverage whose account is the fund, naming the three
BTC longs, closed at the mark), so the BTC drop that follows finds no position
left to liquidate. Its log becomes blocks, the blocks become trace
items (``prover.records.compute_block_items``), and every item is re-executed
by onestep.vy with the witness the Python reference builds: the same state
root, context and outcome at every position, so any item of the session can
be the one a game ends on (all 66 items: the book-first Liquidate, the two
Deleverage records and the ForcedClose included). An item whose kind (or
branch) is not ported would raise PendingKind in Python and, for a pending
tag, revert "pending" on L1; the test reports how many of each kind were
proven and requires none pending.
"""
from __future__ import annotations

import collections

import pytest

from l1_bridge.dispute import advance
from unit.perps_support import ADDR, BTC, ETH, KEYS, Sim, sign, usd
from prover.hashing import keccak
from prover.records import PENDING_TAGS, PendingKind, compute_block_items, decode_replay_item
from prover.trace import TraceRunner, build_tree
from sequencer.core.encoding import encode_block, make_block
from sequencer.core.records import Deleverage, ForcedClose, Liquidate, ModifyOrder, PlaceTrigger, Trade, VaultDeposit
from sequencer.core.rules.positions import INSURANCE_ADDRESS
from sequencer.core.rules.triggers import STOP_LOSS
from sequencer.core.transition import apply_block_bytes
from sequencer.node.assembler import BlockAssembler

pytestmark = pytest.mark.evm

STEP = 10**6  # 0.01 BTC


def start_block(sim: Sim, advance_ms: int) -> None:
    """The node's block-start records (funding, unwinds, auction ends, due cancel-alls, crossed triggers)."""
    sim.now += advance_ms
    assembler = BlockAssembler(sim.state, sim.ctx, max_records=4096, exchange=sim.exchange)
    sim.log.extend((sim.now, r) for r in assembler.block_start_records(sim.now))


def run_session(forced_close: bool = False) -> Sim:
    """The session; ``forced_close``: with the L1 inbox's forced close of
    bob's BTC position (an output of it then needs that inbox entry on the
    bridge: the dispute-game tests leave it out)."""
    sim = Sim(alice=usd(100_000), bob=usd(100_000), carol=usd(100_000), dave=usd(20_000), erin=usd(50_000),
              fund=usd(1_000_000))
    sim.set_price(usd(60_000))
    sim.set_price(usd(3_000), market=ETH)
    sim.place("bob", False, usd(60_000), 20 * STEP)
    sim.place("alice", True, usd(60_100), 10 * STEP)                        # a trade at the maker's price
    sim.place("carol", True, usd(59_000), 5 * STEP)                         # rests
    resting = sim.place("carol", True, usd(58_000), 5 * STEP)[0]
    sim.submit(sign(ModifyOrder(ADDR["carol"], resting.nonce, usd(58_500), 4 * STEP, sim.next_nonce("carol"),
                                sim.now + 3_600_000, b""), KEYS["carol"]))
    sim.submit(sim.cancel_record("carol", resting.nonce + 1))
    sim.place("dave", True, usd(60_000), 30 * STEP, leverage=20)             # a leveraged long against bob
    sim.submit(sign(PlaceTrigger(ADDR["alice"], BTC, False, usd(59_500), usd(59_000), 5 * STEP, 10, STOP_LOSS,
                                 True, sim.next_nonce("alice"), sim.now + 3_600_000, b""), KEYS["alice"]))
    sim.submit(sim.adjust_record("alice", usd(1_000)))
    sim.submit(sim.transfer_record("erin", "carol", usd(500)))
    sim.submit(sign(VaultDeposit(ADDR["erin"], usd(10_000), 0, sim.next_nonce("erin"), sim.now + 60_000, b""),
                    KEYS["erin"]))
    sim.submit(sim.withdraw_record("erin", usd(100)))
    sim.place("erin", False, usd(3_000), 10**8, market=ETH)
    sim.place("carol", True, usd(3_010), 10**8, market=ETH)
    start_block(sim, 1_000)
    sim.set_price(usd(59_300))                                                # alice's stop crosses
    start_block(sim, 1_000)
    sim.set_price(usd(57_500), advance_ms=2_000)                              # dave is liquidated
    start_block(sim, 1_000)
    sim.set_price(usd(57_400), advance_ms=sim.markets[BTC].funding_interval_ms)
    sim.set_price(usd(2_990), market=ETH)
    start_block(sim, 1_000)                                                   # funding is due
    sim.place("bob", True, usd(57_600), 2 * STEP)
    sim.set_price(usd(2_650), market=ETH)     # carol's ETH long bankrupt, no bid: Deleverage against erin's short
    start_block(sim, 1_000)
    if forced_close:                          # the fund takes bob's short over at the mark (his bid cancelled)
        sim.submit(ForcedClose(sim.state.globals.inbox_count, ADDR["bob"], BTC))  # and unwinds it against the longs
        start_block(sim, 1_000)
    sim.set_price(usd(53_000))                # without the forced close: dave's and carol's longs down the ladder
    return sim


def get_blocks(sim: Sim) -> list[bytes]:
    """The session's log as block messages, one block per timestamp."""
    by_time: dict[int, list] = collections.defaultdict(list)
    for timestamp_ms, record in sim.log:
        by_time[timestamp_ms].append(record)
    messages, parent = [], b"\x00" * 32
    for number, timestamp_ms in enumerate(sorted(by_time), start=1):
        message = encode_block(make_block(number, parent, timestamp_ms, by_time[timestamp_ms]))
        messages.append(message)
        parent = keccak(message)
    return messages


@pytest.fixture(scope="module")
def session():
    sim = run_session(forced_close=True)
    messages = get_blocks(sim)
    replayed = sim.make_genesis()
    for message in messages:
        assert apply_block_bytes(replayed, message, sim.ctx).applied
    return sim, messages, replayed


def test_the_session_does_what_it_says(session):
    sim, messages, replayed = session
    kinds = collections.Counter(type(r).__name__ for _, r in sim.log)
    assert kinds["Trade"] >= 4 and kinds["OraclePrice"] >= 5 and kinds["FundingTick"] >= 1
    assert kinds["Liquidate"] >= 1 and kinds["TriggerFire"] >= 1 and kinds["ModifyOrder"] == 1
    assert kinds["ForcedClose"] == 1 and kinds["Deleverage"] == 2
    named = [(r.account, r.market, r.counterparties) for _, r in sim.log if isinstance(r, Deleverage)]
    longs = (ADDR["alice"], ADDR["carol"], ADDR["dave"])
    assert named == [(ADDR["carol"], ETH, (ADDR["erin"],)), (INSURANCE_ADDRESS, BTC, longs)]
    # the fund's unwind is written right after the forced close, in the same block
    records = [r for _, r in sim.log]
    forced = next(i for i, r in enumerate(records) if isinstance(r, ForcedClose))
    assert records[forced + 1] == Deleverage(INSURANCE_ADDRESS, BTC, longs)
    assert sim.log[forced][0] == sim.log[forced + 1][0]
    assert sim.size("erin", ETH) == sim.size("carol", ETH) == 0
    # the fund took bob's 0.2 BTC short over and closed it against alice's
    # 0.05, carol's 0.05 and dave's 0.1 (every BTC position flat, the fund's too)
    for name in ("alice", "bob", "carol", "dave"):
        assert sim.size(name) == 0
    assert sim.state.positions.get((INSURANCE_ADDRESS, BTC)) is None or not sim.state.positions[
        (INSURANCE_ADDRESS, BTC)].size
    assert not any(isinstance(r, (Liquidate, Deleverage)) for r in records[forced + 2:])  # the drop liquidates no one
    blockless = lambda state: {k: v for k, v in state.to_tables().items() if k not in ("globals", "withdrawals")}
    assert blockless(replayed) == blockless(sim.state)  # the blocks hold what the exchange applied


def test_every_item_of_the_session_agrees_on_l1(session, onestep_contract):
    sim, messages, replayed = session
    runner = TraceRunner(sim.make_genesis(), sim.ctx)
    proven, pending = collections.Counter(), collections.Counter()
    deleveraged = []
    for message in messages:
        for item in compute_block_items(message):
            record = decode_replay_item(item)
            name = type(record).__name__
            pre_root, pre_ctx = runner.state_root, runner.ctx
            try:
                result = runner.copy().step(item)
            except PendingKind:
                pending[name] += 1
                if item[0] == 2 and item[1] in PENDING_TAGS:
                    with pytest.raises(Exception, match="pending"):
                        onestep_contract.functions.apply(pre_root, pre_ctx.as_arg(), item, [], []).call()
                advance(runner, item)
                continue
            runner.step(item)
            root, ctx, ok = onestep_contract.functions.apply(
                pre_root, pre_ctx.as_arg(), item, [o.as_arg() for o in result.witness.openings],
                list(result.witness.nonces)).call()
            assert (root, onestep_contract.functions.ctx_hash(ctx).call(), ok) == (
                runner.state_root, runner.ctx.hash(), result.ok), name
            proven[name] += 1
            if isinstance(record, Deleverage):
                deleveraged.append((record.account, ok))
    assert runner.state_root == build_tree(replayed).root
    print("proven on L1:", dict(proven), "pending:", dict(pending))
    assert proven["Transfer"] and proven["PlaceOrder"] and proven["BlockStart"]
    # the book-first Liquidate (its maker filled, the owner's orders cancelled
    # by the order epoch) re-executes on onestep_book.vy, the Deleverage
    # records (carol's ETH long against erin's short, the fund's unwind of
    # bob's short) on onestep_ladder.vy, the forced close (rules v3: the fund
    # takes the position over) on onestep_liquidate.vy: every item
    assert proven["Liquidate"] >= 1 and proven["Deleverage"] == 2 and proven["ForcedClose"] == 1
    assert deleveraged == [(ADDR["carol"], True), (INSURANCE_ADDRESS, True)]  # both applied, not refused
    assert not pending, pending
    assert sum(proven.values()) == 66
