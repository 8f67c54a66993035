"""L1 gas of the fraud proofs, measured on py-evm (docs/fraud-proofs.md).

    .venv/bin/python -m bench.bench_dispute [--blocks 500] [--accounts 100000] [--json out.json]

1. A real game on the bridge's own output (bridge.vy, dispute.vy and the
   one-steps deployed by l1_bridge.deploy, the inbox holding the trace's
   deposits and forced withdrawals): an output of `--blocks` one-transfer
   blocks after a mixed prefix (3 items per block, ~110 KB of item data at
   500), a proposer lying about the last position against an honest
   challenger, both played by l1_bridge.dispute.GamePlayer: gas of propose,
   challenge (the first chunk's calldata and its records derived on L1),
   reveal, each bisect, each choose, the step; and a consistency proof.
4. An output of `--records` transfers (100 per block): posted in chunks of
   120,000 bytes (postData, then propose), challenged chunk by chunk (the
   frontier kept in storage between the transactions) and played to the end:
   gas of every transaction.
2. The one-step per item kind against a state tree of `--accounts` accounts
   (eth_estimateGas of onestep.step as a transaction: 21,000, calldata with the
   proofs, the re-execution).
3. The records-root derivation per item (two data sizes, the slope), and the
   moves of a game over 10,000 items (the contract's midpoint rule, worst case).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from eth_tester import EthereumTester, PyEVMBackend
from web3 import EthereumTesterProvider, Web3

from pathlib import Path

from l1_bridge.compile import compile_contract
from l1_bridge.deploy import deploy_onestep, load_artifact
from l1_bridge.dispute import OutputTrace
from prover import fraud_vectors as fv
from prover.keys import GLOBAL_KEY
from prover.records import decode_data
from prover.hashing import keccak
from prover.records import BlockEnd, BlockStart, Noop, compute_block_items, encode_data, encode_item
from prover.trace import TraceContext, TraceRunner, build_tree, compute_claim
from sequencer.core.records import (AdjustMargin, CancelOrder, Deposit, ForcedWithdrawal, FundingTick, PlaceOrder,
                                    Transfer, Withdraw)
from sequencer.core.state import Account, Position, State
from sequencer.core.records import AuctionEnd, ForcedClose, Liquidate
from sequencer.core.records import VaultDeposit, VaultWithdraw
from sequencer.core.records import PlaceTrigger, ScheduleCancel, ScheduledCancelAll, TriggerFire
from sequencer.core.rules.vault import VAULT_ADDRESS, compute_vault_unwind
from sequencer.core.records import OraclePrice


def make_chain() -> Web3:
    backend = PyEVMBackend(genesis_parameters=PyEVMBackend.generate_genesis_params(
        overrides={"gas_limit": 60_000_000}))
    return Web3(EthereumTesterProvider(EthereumTester(backend)))


def deploy(w3: Web3, name: str, *args: Any) -> Any:
    abi, bytecode = compile_contract(name)
    tx = w3.eth.contract(abi=abi, bytecode=bytecode).constructor(*args).transact({"from": w3.eth.accounts[0]})
    address = w3.eth.wait_for_transaction_receipt(tx)["contractAddress"]
    return w3.eth.contract(address=address, abi=abi)


def count_rounds(n: int) -> int:
    """Bisection rounds (one bisect + one choose each) before one item is left,
    worst case over the challenger's choices, with mid = (lo + hi) // 2."""
    rounds = 0
    while n > 1:
        n = max(n // 2, n - n // 2)
        rounds += 1
    return rounds


def load_game_env():
    """tests/evm/game_env.py: the bridge, the one-steps and dispute.vy on
    py-evm with the vectors' inbox (shared with the game tests)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "evm"))
    import game_env
    return game_env


def make_transfer_messages(records: int, per_block: int) -> list[bytes]:
    """The vectors' three blocks, then `records` transfers a -> b, `per_block` a block."""
    from sequencer.core.encoding import encode_block
    messages = fv.make_trace_messages()
    parent, a, b = keccak(messages[-1]), fv.ADDRESSES[0], fv.ADDRESSES[1]
    exp = fv.BLOCK_TIME + 10**7
    for k, first in enumerate(range(0, records, per_block)):
        txs = [fv.sign(Transfer(a, b, 1, 1000 + i, exp, b""), fv.KEYS[0])
               for i in range(first, min(records, first + per_block))]
        messages.append(encode_block(fv.make_block(4 + k, parent, fv.BLOCK_TIME + 4 + k, txs)))
        parent = keccak(messages[-1])
    return messages


def play_wrong_root(world: Any, items: list[bytes]) -> dict:
    """Propose `items` with a wrong state root (chunks of 120,000 bytes), an
    honest challenger opens, loads and wins; gas of every transaction."""
    ge = load_game_env()
    chunks = ge.chunks_of(items)
    started = time.perf_counter()
    honest = ge.make_trace(items)
    replay_s = time.perf_counter() - started
    root = keccak(b"wrong" + honest.end.state_root)
    liar = ge.FakeTrace(honest, len(items))
    liar.claims[-1] = compute_claim(root, honest.end.ctx)
    proposals = []
    before = world.w3.eth.block_number
    output, _ = world.propose(honest, chunks, state_root=root)
    for n in range(before + 1, world.w3.eth.block_number + 1):
        proposals += [world.w3.eth.get_transaction_receipt(t)["gasUsed"] for t in world.w3.eth.get_block(n)["transactions"]]
    who = world.others[0]
    challenger, proposer = world.player(who), world.player(world.proposer)
    game, receipt = world.games.challenge(ge.Signer.of(who), output, world.fields_of(output),
                                          world.fields_of(output - 1), chunks[0], ge.CHALLENGE_BOND)
    challenger.gas.append(("challenge", receipt["gasUsed"]))
    status = world.play_to_end(game, (challenger, OutputTrace(chunks, honest)), (proposer, OutputTrace(chunks, liar)))
    by_kind: dict[str, list[int]] = {}
    for name, gas in proposer.gas + challenger.gas:
        by_kind.setdefault(name, []).append(gas)
    return {"items": len(items), "data_bytes": sum(len(c) for c in chunks), "chunks": len(chunks),
            "chunk_items": [len(decode_data(c)) for c in chunks], "status": status, "replay_s": round(replay_s, 2),
            "rounds": len(by_kind.get("bisect", [])), "propose_txs": proposals,
            "gas": {k: {"median": int(statistics.median(v)), "max": max(v), "count": len(v), "total": sum(v)}
                    for k, v in by_kind.items()},
            "proposer_total": sum(g for _, g in proposer.gas),
            "challenger_total": sum(g for _, g in challenger.gas)}


def make_world() -> Any:
    """The game tests' world with a day on each clock (see game_env.make_world)."""
    from dataclasses import replace
    ge = load_game_env()
    return ge.make_world(replace(ge.PRESET, challenge_period=7 * 86_400, game_clock=86_400, game_extension=3_600))


def measure_game(blocks: int) -> dict:
    ge = load_game_env()
    world = make_world()
    out = play_wrong_root(world, ge.make_items(blocks))
    out["consistency_proof"] = measure_consistency_proof(world)
    return out


def measure_consistency_proof(world: Any) -> int:
    """proveInconsistent against an output whose block hash is not its state's."""
    ge = load_game_env()
    trace = ge.make_trace(ge.make_items())
    output, fields = world.propose(trace, ge.chunks_of(ge.make_items()), last_block_hash=keccak(b"other"))
    p = trace.end.tree.prove(GLOBAL_KEY)
    proof = (p.bitmap, list(p.siblings), p.other_key or b"\x00" * 32, p.other_value_hash or b"\x00" * 32)
    receipt = world.client.send("proveInconsistent", world.dispute.functions.proveInconsistent(
        output, fields.as_arg(), world.fields_of(output - 1).as_arg(), trace.end.tree.get(GLOBAL_KEY), proof),
        world.others[3])
    return receipt["gasUsed"]


def measure_big_output(records: int, per_block: int = 100) -> dict:
    ge = load_game_env()
    from prover.records import compute_block_items
    items = [i for m in make_transfer_messages(records, per_block) for i in compute_block_items(m)]
    return dict(play_wrong_root(make_world(), items), records=records, per_block=per_block)


def measure_derivation(w3: Web3) -> dict:
    harness = deploy(w3, "records_harness")
    out = {}
    for count in (100, 800):
        items = [fv.det("item", i, 131) for i in range(count)]  # Transfer-sized items, no zero bytes to speak of
        data = encode_data(items)
        out[count] = harness.functions.derive_root(data).estimate_gas() - 21_000
    per_item = (out[800] - out[100]) / 700
    return {"gas_100": out[100], "gas_800": out[800], "per_item_with_calldata": round(per_item)}


def measure_one_steps(w3: Web3, accounts: int) -> dict:
    onestep = w3.eth.contract(address=deploy_onestep(w3, fv.RULES)[0], abi=load_artifact("onestep")[0])
    a, b, c, d = fv.ADDRESSES
    population = {keccak(b"acct%d" % i)[:20]: Account(10**9, (1, 2, 3)) for i in range(accounts)}
    population.update({a: Account(10**9, tuple(range(1, 101))), b: Account(10**6, ()), c: Account(5, ())})
    lot, price = 10_000, fv.BTC_PRICE
    resting = PlaceOrder(a, fv.BTC, True, price, 10 * lot, 10, 0, False, 20, fv.BLOCK_TIME + 60_000, b"")
    state = fv.make_perps_state(  # one BTC market, a's long (owing funding since its snapshot) and resting order
        population, [fv.make_market(fv.BTC, price, funding_index=10**9 + 7, funding_time_ms=fv.BLOCK_TIME - 120_000)],
        {(a, fv.BTC): Position(100 * lot, 100 * lot * price // 10**8, 10**8, 0)}, {(a, 20): fv.make_order(resting)})
    add_vault(state, a, b, 10 * lot, price)
    add_triggers(state, c, 10 * lot, price)
    started = time.perf_counter()
    tree = build_tree(state)
    build_s = time.perf_counter() - started
    exp = fv.BLOCK_TIME + 60_000
    head = state.globals
    cases = {
        "Transfer (existing receiver)": (encode_item(fv.sign(Transfer(a, b, 5, 200, exp, b""), fv.KEYS[0])), None),
        "Transfer (new receiver)": (encode_item(fv.sign(Transfer(a, d, 5, 200, exp, b""), fv.KEYS[0])), None),
        "Withdraw": (encode_item(fv.sign(Withdraw(a, 5, 200, exp, b""), fv.KEYS[0])), None),
        "Deposit": (encode_item(Deposit(head.inbox_count, b, 10**6)), None),
        "ForcedWithdrawal": (encode_item(ForcedWithdrawal(head.inbox_count, c, 10**6)), None),
        "AdjustMargin (in, funding settled)": (encode_item(fv.sign(AdjustMargin(a, fv.BTC, 10**6, 200, exp, b""), fv.KEYS[0])), None),
        "AdjustMargin (out, initial margin at the mark)": (encode_item(fv.sign(AdjustMargin(a, fv.BTC, -10**6, 200, exp, b""), fv.KEYS[0])), None),
        "PlaceOrder": (encode_item(fv.sign(PlaceOrder(a, fv.BTC, False, price, 10 * lot, 10, 0, False, 200, exp, b""), fv.KEYS[0])), None),
        "CancelOrder": (encode_item(fv.sign(CancelOrder(a, 20, 200, exp, b""), fv.KEYS[0])), None),
        "FundingTick": (encode_item(FundingTick(fv.BTC, 50, fv.BLOCK_TIME // 60_000 * 60_000)), None),
        "PlaceOrder, refused (bad signature)": (encode_item(fv.sign(PlaceOrder(a, fv.BTC, False, price, 10 * lot, 10, 0, False, 200, exp, b""), fv.KEYS[1])), None),
        "Transfer, refused (bad signature)": (encode_item(fv.sign(Transfer(a, b, 5, 200, exp, b""), fv.KEYS[1])), None),
        "VaultDeposit (the vault long in one market)": (encode_item(fv.sign(VaultDeposit(a, 10**8, 0, 200, exp, b""), fv.KEYS[0])), None),
        "VaultWithdraw (part of the holder's shares)": (encode_item(fv.sign(VaultWithdraw(a, 10**8, 0, 200, exp, b""), fv.KEYS[0])), None),
        "VaultUnwind": (encode_item(compute_vault_unwind(state, fv.BTC, fv.BLOCK_TIME, fv.RULES)), None),
        "Liquidate, refused (healthy, 8 makers named)": (encode_item(Liquidate(a, fv.BTC, tuple((b, n) for n in range(8)))), None),
        "ForcedClose (unlisted market: served)": (encode_item(ForcedClose(head.inbox_count, a, 9)), None),
        "AuctionEnd, refused (no auction)": (encode_item(AuctionEnd(a, fv.BTC)), None),
        "PlaceTrigger": (encode_item(fv.sign(PlaceTrigger(c, fv.BTC, False, price - 10**9, price - 11 * 10**8, 10 * lot, 10, 1, True, 200, exp, b""), fv.KEYS[2])), None),
        "ScheduleCancel": (encode_item(fv.sign(ScheduleCancel(c, fv.BLOCK_TIME + 10_000, 200, exp, b""), fv.KEYS[2])), None),
        "CancelOrder (a pending trigger)": (encode_item(fv.sign(CancelOrder(c, 4, 200, exp, b""), fv.KEYS[2])), None),
        "TriggerFire": (encode_item(TriggerFire(c, 4)), None),
        "ScheduledCancelAll (rules v4: the epoch in 2 markets, 3 orders, 2 triggers cancelled)": (encode_item(ScheduledCancelAll(c)), None),
        "NOOP": (encode_item(Noop(keccak(b"tx"))), None),
        "BLOCK_START": (encode_item(BlockStart(head.block_number + 1, head.block_hash, fv.BLOCK_TIME)), TraceContext()),
        "BLOCK_END": (encode_item(BlockEnd(keccak(b"block"))), None),
    }
    out = {}
    for name, (item, ctx) in cases.items():
        copy = TraceRunner(State.from_tables(state.to_tables()), fv.RULES, tree=tree.copy(),
                           ctx=ctx or fv.open_block_ctx(state))
        root, pre_ctx = copy.state_root, copy.ctx
        witness = copy.step(item).witness
        args = (root, pre_ctx.as_arg(), item, [o.as_arg() for o in witness.openings], list(witness.nonces))
        out[name] = {"tx_gas": onestep.functions.step(*args).estimate_gas(),
                     "depths": [o.proof.depth for o in witness.openings]}
    out.update(measure_oracle_price(w3, onestep, state, tree))
    out.update(measure_take_all(onestep, state, tree))
    out.update(measure_trades(onestep, state, tree))
    out.update(measure_auction(onestep, state, tree))
    out.update(measure_book(onestep, state, tree))
    out.update(measure_ladder(onestep, state, tree))
    out.update(measure_liquidation_v3(w3, onestep, state, tree))
    out.update(measure_vault_step(w3, state, tree))
    out.update(measure_cancel_all(onestep, state, tree))
    return {"accounts": accounts, "tree_build_s": round(build_s, 1), "kinds": out}


def measure_book(onestep: Any, state: State, tree: Any) -> dict:
    """Liquidate steps in the book (rules v2; onestep.vy -> onestep_liquidate.vy
    -> onestep_book.vy): a fresh long of 1 BTC at 60,000 just below its
    maintenance margin, its partial step (0.2 BTC) sold to 1, 2 or 4 resting
    bids of fresh makers, each filled (4 makers of 4 owners: the 32-opening
    worst case); the owner's orders cancelled by the order epoch."""
    import msgspec
    from sequencer.core.commitment import compute_dirty_leaves
    from sequencer.core.state import Order
    lot, price = 10_000, fv.BTC_PRICE
    index = state.markets[fv.BTC].funding_index
    owner = keccak(b"book owner")[:20]
    makers = [keccak(b"book maker %d" % i)[:20] for i in range(4)]
    size = 10_000 * lot  # 1 BTC: a partial step of 0.2 BTC (its notional is above the partial threshold)
    step = 2_000 * lot
    out = {}
    for count in (1, 2, 4):
        runner = TraceRunner(State.from_tables(state.to_tables()), fv.RULES, tree=tree.copy(), ctx=fv.open_block_ctx(state))
        s = runner.state
        s.dirty.clear()
        s.set_account(owner, Account(10**9, ()))
        s.set_position(owner, fv.BTC, Position(size, size * price // 10**8, 700 * 10**6, index, 1))  # maintenance 720
        seq = s.globals.order_count
        for i, maker in enumerate(makers[:count]):
            s.set_account(maker, Account(10**10, ()))
            s.set_order(maker, 900, Order(keccak(b"bid" + maker), step // count, 0, False, fv.BTC, True,
                                          price - (i + 1) * 10**6, 10, 0, False, fv.BLOCK_TIME + 60_000, seq + i + 1))
        s.set_globals(msgspec.structs.replace(s.globals, order_count=seq + count))
        s.commit(0)
        runner.tree.update(compute_dirty_leaves(s))
        s.dirty.clear()
        item = encode_item(Liquidate(owner, fv.BTC, tuple((m, 900) for m in makers[:count])))
        root, pre_ctx = runner.state_root, runner.ctx
        result = runner.step(item)
        assert result.ok, count
        args = (root, pre_ctx.as_arg(), item, [o.as_arg() for o in result.witness.openings], [])
        name = f"Liquidate in the book ({count} maker{'s' if count > 1 else ''}, {len(result.witness.openings)} openings)"
        out[name] = {"tx_gas": onestep.functions.step(*args).estimate_gas(),
                     "depths": [o.proof.depth for o in result.witness.openings]}
    return out



def measure_ladder(onestep: Any, state: State, tree: Any) -> dict:
    """Deleverage steps (rules v3; onestep.vy -> onestep_ladder.vy): a fresh
    long of 0.12 BTC at 60,000 just below its maintenance margin closed at
    the mark against 1, 3 or 6 named shorts of fresh users (6: each closed
    whole, its leaf deleted; 31 openings); then the same long bankrupt with
    the fund short: the close undone and the 3 or 6 users auto-deleveraged
    at its bankruptcy price."""
    import msgspec
    from sequencer.core.commitment import compute_dirty_leaves
    from sequencer.core.records import Deleverage
    lot, price = 10_000, fv.BTC_PRICE
    index = state.markets[fv.BTC].funding_index
    owner = keccak(b"ladder owner")[:20]
    users = [keccak(b"ladder user %d" % i)[:20] for i in range(6)]
    size = 1_200 * lot
    out = {}
    from sequencer.core.rules.positions import INSURANCE_ADDRESS
    for count, bankrupt, fund_first in ((1, False, False), (3, False, False), (6, False, False), (3, True, False),
                                        (6, True, False), (5, True, True)):
        runner = TraceRunner(State.from_tables(state.to_tables()), fv.RULES, tree=tree.copy(), ctx=fv.open_block_ctx(state))
        s = runner.state
        s.dirty.clear()
        s.set_account(owner, Account(10**9, ()))
        cost = size * (61_000 if bankrupt else 60_000) * 10**6 // 10**8
        s.set_position(owner, fv.BTC, Position(size, cost, 0 if bankrupt else 84 * 10**6, index, 1))  # maintenance 86.4
        for user in users[:count]:
            lots = size // count
            s.set_account(user, Account(10**6, (1, 2)))
            s.set_position(user, fv.BTC, Position(-lots, -lots * price // 10**8, 10**9, index))
        market = s.markets[fv.BTC]
        s.set_market(msgspec.structs.replace(market, open_interest=market.open_interest + size))  # the owner's long
        if bankrupt:  # 10: short of the 12 USDC shortfall; 100 USDC (the fund's short named first): short after its loss
            s.set_globals(msgspec.structs.replace(s.globals, insurance_fund=100 * 10**6 if fund_first else 10))
        if fund_first:  # the fund's own short of 0.06 BTC entered at 50,000: 600 USDC lost at the mark
            s.set_position(INSURANCE_ADDRESS, fv.BTC, Position(-size // 2, -size // 2 * 50_000 * 10**6 // 10**8, 0, index))
        s.commit(0)
        runner.tree.update(compute_dirty_leaves(s))
        s.dirty.clear()
        named = ((INSURANCE_ADDRESS,) if fund_first else ()) + tuple(users[:count])
        item = encode_item(Deleverage(owner, fv.BTC, named))
        root, pre_ctx = runner.state_root, runner.ctx
        result = runner.step(item)
        assert result.ok, count
        args = (root, pre_ctx.as_arg(), item, [o.as_arg() for o in result.witness.openings], [])
        branch = "the fund short: auto-deleveraged" if bankrupt else "closed at the mark"
        if fund_first:
            branch = "the fund's own short named first loses at the mark: undone, the users auto-deleveraged"
        name = f"Deleverage, {branch} ({len(named)} counterpart{'ies' if count > 1 else 'y'}, {len(result.witness.openings)} openings)"
        out[name] = {"tx_gas": onestep.functions.step(*args).estimate_gas(),
                     "depths": [o.proof.depth for o in result.witness.openings]}
    out.update(measure_fund_unwind(onestep, state, tree))
    return out


def measure_fund_unwind(onestep: Any, state: State, tree: Any) -> dict:
    """Deleverage of the insurance fund's own position (rules v3,
    process_fund_unwind): its short of 0.12 BTC, owing funding, closed at the
    mark against 1, 3 or 6 fresh users' longs (6: each closed whole); then the
    same short at a loss past the insurance fund (entered at 50,000): the 3
    or 6 users auto-deleveraged at its bankruptcy price, the insurance fund
    as its margin (no close at the mark: the fund cannot pay the loss)."""
    import msgspec
    from sequencer.core.commitment import compute_dirty_leaves
    from sequencer.core.records import Deleverage
    from sequencer.core.rules.positions import INSURANCE_ADDRESS
    lot, price = 10_000, fv.BTC_PRICE
    index = state.markets[fv.BTC].funding_index
    users = [keccak(b"unwind user %d" % i)[:20] for i in range(6)]
    size = 1_200 * lot
    out = {}
    for count, losing in ((1, False), (3, False), (6, False), (3, True), (6, True)):
        runner = TraceRunner(State.from_tables(state.to_tables()), fv.RULES, tree=tree.copy(), ctx=fv.open_block_ctx(state))
        s = runner.state
        s.dirty.clear()
        entry = 50_000 if losing else 60_000
        s.set_position(INSURANCE_ADDRESS, fv.BTC, Position(-size, -size * entry * 10**6 // 10**8, 0, index + 10**12))
        for user in users[:count]:
            lots = size // count
            s.set_account(user, Account(10**6, (1, 2)))
            s.set_position(user, fv.BTC, Position(lots, lots * price // 10**8, 10**9, index))
        market = s.markets[fv.BTC]
        s.set_market(msgspec.structs.replace(market, open_interest=market.open_interest + size))  # the users' longs
        s.set_globals(msgspec.structs.replace(s.globals, insurance_fund=10 if losing else 10**12))
        s.commit(0)
        runner.tree.update(compute_dirty_leaves(s))
        s.dirty.clear()
        item = encode_item(Deleverage(INSURANCE_ADDRESS, fv.BTC, tuple(users[:count])))
        root, pre_ctx = runner.state_root, runner.ctx
        result = runner.step(item)
        assert result.ok, count
        args = (root, pre_ctx.as_arg(), item, [o.as_arg() for o in result.witness.openings], [])
        branch = "its loss past the fund: auto-deleveraged" if losing else "unwound at the mark"
        name = (f"Deleverage of the fund's own short, {branch} ({count} user{'s' if count > 1 else ''}, "
                f"{len(result.witness.openings)} openings)")
        out[name] = {"tx_gas": onestep.functions.step(*args).estimate_gas(),
                     "depths": [o.proof.depth for o in result.witness.openings]}
    return out

def measure_liquidation_v3(w3: Web3, onestep: Any, state: State, tree: Any) -> dict:
    """Rules v3's branches of the liquidation records on a fresh long of
    0.1 BTC at 60,000 (margin 70 USDC: maintenance 72): a Liquidate where
    v3 stop (funding settled, the order epoch), under the ladder policy
    (onestep_liquidate.vy, on a one-step deployed with BTC under the ladder)
    and under book-first with no makers (onestep_book.vy), and the same
    owing funding past its margin (the deficit into its cost); an
    AuctionEnd keeping its lots (onestep_auction_end.vy); a ForcedClose
    taken over by the fund, healthy (no fee) and liquidatable (the fee),
    and a bankrupt one the fund cannot pay (served as a no-op)."""
    import msgspec
    from sequencer.core.commitment import compute_dirty_leaves
    from sequencer.core.markets import LIQUIDATION_LADDER
    from sequencer.core.state import Auction
    lot, price = 10_000, fv.BTC_PRICE
    index = state.markets[fv.BTC].funding_index
    owner = keccak(b"v3 liquidation owner")[:20]
    ladder_rules, ladder = deploy_onestep_under_policy(w3, LIQUIDATION_LADDER)
    liquidatable = Position(1000 * lot, 6_000 * 10**6, 70 * 10**6, index, 1)
    owing = msgspec.structs.replace(liquidatable, funding_snapshot=index - 10**14)  # owes 10 USDC more than its 70
    owing = msgspec.structs.replace(owing, margin=5 * 10**6)
    healthy = msgspec.structs.replace(liquidatable, margin=700 * 10**6)
    bankrupt = Position(1000 * lot, 6_600 * 10**6, 10 * 10**6, index, 1)
    ended = Auction(100 * lot, price, 59_300 * 10**6, fv.BLOCK_TIME - 60_000, fv.BLOCK_TIME)
    cases = {  # name -> (the one-step, its rules, the position, an auction, the fund, the record)
        "Liquidate, the ladder policy: rules v3 stop (funding settled, epoch)":
            (ladder, ladder_rules, liquidatable, None, 10**12, "liquidate"),
        "Liquidate, the ladder policy, funding owed past the margin: the deficit into the cost":
            (ladder, ladder_rules, owing, None, 10**12, "liquidate"),
        "Liquidate, book-first, no makers: rules v3 stop (funding settled, epoch)":
            (onestep, fv.RULES, liquidatable, None, 10**12, "liquidate"),
        "AuctionEnd, still liquidatable: its lots kept (funding settled, epoch)":
            (onestep, fv.RULES, liquidatable, ended, 10**12, "auction end"),
        "ForcedClose, healthy: the fund takes it over at the mark (no fee)":
            (onestep, fv.RULES, healthy, None, 10**12, "forced close"),
        "ForcedClose, liquidatable: the fund takes it over at the mark (the fee)":
            (onestep, fv.RULES, liquidatable, None, 10**12, "forced close"),
        "ForcedClose, bankrupt, the fund short: served as a no-op":
            (onestep, fv.RULES, bankrupt, None, 10, "forced close"),
    }
    out = {}
    for name, (contract, rules, position, auction, insurance, kind) in cases.items():
        runner = TraceRunner(State.from_tables(state.to_tables()), rules, tree=tree.copy(), ctx=fv.open_block_ctx(state))
        s = runner.state
        s.dirty.clear()
        s.set_account(owner, Account(10**9, ()))
        s.set_position(owner, fv.BTC, position)
        if auction is not None:
            s.set_auction(owner, fv.BTC, auction)
        s.set_globals(msgspec.structs.replace(s.globals, insurance_fund=insurance))
        s.commit(0)
        runner.tree.update(compute_dirty_leaves(s))
        s.dirty.clear()
        item = encode_item({"liquidate": Liquidate(owner, fv.BTC, ()), "auction end": AuctionEnd(owner, fv.BTC),
                            "forced close": ForcedClose(s.globals.inbox_count, owner, fv.BTC)}[kind])
        out.update(measure_applied_step(contract, runner, item, name))
    return out


def deploy_onestep_under_policy(w3: Web3, policy: int) -> tuple[Any, Any]:
    """(rules, onestep contract): the shared vectors' rules with BTC and ETH
    under the liquidation ``policy``, and a one-step deployed for them."""
    import msgspec
    from sequencer.core.rules.base import get_market_params
    rules = msgspec.structs.replace(fv.RULES, markets={
        m: msgspec.structs.replace(get_market_params(fv.RULES, m), liquidation_policy=policy) for m in (fv.BTC, fv.ETH)})
    return rules, w3.eth.contract(address=deploy_onestep(w3, rules)[0], abi=load_artifact("onestep")[0])


def measure_applied_step(onestep: Any, runner: TraceRunner, item: bytes, name: str) -> dict:
    """{"<name> (<n> openings)": gas of onestep.step and the proof depths} for
    ``item`` stepped from the runner's state (which must apply it)."""
    root, pre_ctx = runner.state_root, runner.ctx
    result = runner.step(item)
    assert result.ok, name
    openings = result.witness.openings
    args = (root, pre_ctx.as_arg(), item, [o.as_arg() for o in openings], [])
    return {f"{name} ({len(openings)} openings)": {"tx_gas": onestep.functions.step(*args).estimate_gas(),
                                                   "depths": [o.proof.depth for o in openings]}}


def measure_vault_step(w3: Web3, state: State, tree: Any) -> dict:
    """A Liquidate naming no makers under book+vault (onestep.vy ->
    onestep_liquidate.vy -> onestep_vault_step.vy, on a one-step deployed
    with BTC and ETH under book+vault; the vault of add_vault: 10 BTC lots
    long, shares, 1,000 USDC free): a fresh long of 0.1 BTC at 60,000
    (margin 70 USDC: maintenance 72) taken over by the vault, a bankrupt
    one whose bad debt the fund pays, the same with the fund at 0 (the
    takeover undone: the record stops), and the vault without shares."""
    import msgspec
    from sequencer.core.commitment import compute_dirty_leaves
    from sequencer.core.markets import LIQUIDATION_BOOK_VAULT
    from sequencer.core.state import VaultShare
    lot = 10_000
    index = state.markets[fv.BTC].funding_index
    owner = keccak(b"vault step owner")[:20]
    rules, onestep = deploy_onestep_under_policy(w3, LIQUIDATION_BOOK_VAULT)
    liquidatable = Position(1000 * lot, 6_000 * 10**6, 70 * 10**6, index, 1)
    bankrupt = Position(1000 * lot, 6_100 * 10**6, 0, index, 1)
    cases = {  # name -> (the position, the fund, the vault's shares)
        "Liquidate, book+vault, no makers: the vault takes it over": (liquidatable, 10**12, True),
        "Liquidate, book+vault, no makers, bankrupt: the vault takes it, the fund pays the bad debt":
            (bankrupt, 10**12, True),
        "Liquidate, book+vault, no makers, bankrupt, the fund at 0: the takeover undone": (bankrupt, 0, True),
        "Liquidate, book+vault, no makers, the vault without shares: rules v3 stop": (liquidatable, 10**12, False),
    }
    out = {}
    for name, (position, insurance, shares) in cases.items():
        runner = TraceRunner(State.from_tables(state.to_tables()), rules, tree=tree.copy(), ctx=fv.open_block_ctx(state))
        s = runner.state
        s.dirty.clear()
        s.set_account(owner, Account(10**9, ()))
        s.set_position(owner, fv.BTC, position)
        s.set_globals(msgspec.structs.replace(s.globals, insurance_fund=insurance))
        if not shares:
            for holder in [h for h in s.vault_shares]:
                s.set_vault_share(holder, None)
        s.commit(0)
        runner.tree.update(compute_dirty_leaves(s))
        s.dirty.clear()
        item = encode_item(Liquidate(owner, fv.BTC, ()))
        out.update(measure_applied_step(onestep, runner, item, name))
    return out


def measure_take_all(onestep: Any, state: State, tree: Any) -> dict:
    """AdjustMargin taking all of a flat position's leftover margin: the
    position's leaf is deleted (the opening carries the deepest sibling's
    preimage, docs/commitment.md "Deleting a leaf")."""
    from prover.keys import get_position_key
    from sequencer.core.commitment import compute_dirty_leaves
    b = fv.ADDRESSES[1]
    runner = TraceRunner(State.from_tables(state.to_tables()), fv.RULES, tree=tree.copy(), ctx=fv.open_block_ctx(state))
    runner.state.dirty.clear()
    runner.state.set_position(b, fv.BTC, Position(0, 0, 10**6, 0))
    runner.state.commit(0)
    runner.tree.update(compute_dirty_leaves(runner.state))
    runner.state.dirty.clear()
    item = encode_item(fv.sign(AdjustMargin(b, fv.BTC, -10**6, 200, fv.BLOCK_TIME + 60_000, b""), fv.KEYS[1]))
    root, pre_ctx = runner.state_root, runner.ctx
    result = runner.step(item)
    assert result.ok and runner.tree.get(get_position_key(b, fv.BTC)) is None
    args = (root, pre_ctx.as_arg(), item, [o.as_arg() for o in result.witness.openings], list(result.witness.nonces))
    return {"AdjustMargin (out, all of a flat position's margin: its leaf deleted)": {
        "tx_gas": onestep.functions.step(*args).estimate_gas(), "depths": [o.proof.depth for o in result.witness.openings]}}


def measure_oracle_price(w3: Web3, onestep: Any, state: State, tree: Any) -> dict:
    """OraclePrice steps (onestep_oracle.vy): the devnet quorum (2 of 3), then
    under a 15-signer set (8 of 15) one signature (refused: no quorum), the
    quorum and all 15 (the most an item holds); each one ecrecover a signature."""
    import msgspec
    from sequencer.core import eip712
    from sequencer.core.markets import DEVNET_ORACLE_KEYS
    from sequencer.core.signing import address_of, sign_digest
    keys = tuple(keccak(b"isoroll bench oracle %d" % i) for i in range(15))
    wide = msgspec.structs.replace(fv.RULES, oracle_signers=tuple(address_of(k) for k in keys), oracle_quorum=8)
    wide_onestep = w3.eth.contract(address=deploy_onestep(w3, wide)[0], abi=load_artifact("onestep")[0])
    record = OraclePrice(fv.BTC, fv.BTC_PRICE + 10**6, fv.BLOCK_TIME - 500, ())
    runs = {"OraclePrice (2 of 3 signatures: the devnet quorum)": (onestep, fv.RULES, DEVNET_ORACLE_KEYS[:2])}
    for count, what in ((1, "refused: no quorum"), (8, "the quorum"), (15, "every signer")):
        runs[f"OraclePrice ({count} of 15 signatures: {what})"] = (wide_onestep, wide, keys[:count])
    out = {}
    for name, (contract, rules, signers) in runs.items():
        digest = eip712.compute_digest(rules.domain_separator, "OraclePrice", record)
        item = encode_item(msgspec.structs.replace(record, signatures=tuple(sign_digest(digest, k) for k in signers)))
        copy = TraceRunner(State.from_tables(state.to_tables()), rules, tree=tree.copy(), ctx=fv.open_block_ctx(state))
        root, pre_ctx = copy.state_root, copy.ctx
        witness = copy.step(item).witness
        args = (root, pre_ctx.as_arg(), item, [o.as_arg() for o in witness.openings], list(witness.nonces))
        out[name] = {"tx_gas": contract.functions.step(*args).estimate_gas(),
                     "depths": [o.proof.depth for o in witness.openings]}
    return out


def add_vault(state: State, holder: bytes, locked: bytes, lots: int, price: int) -> None:
    """The backstop vault for its kinds: its account, a long in BTC, two holders (one locked)."""
    from sequencer.core.state import VaultShare
    state.set_account(VAULT_ADDRESS, Account(10**9, ()))
    state.set_position(VAULT_ADDRESS, fv.BTC, Position(lots, lots * price // 10**8, 10**8, 10**9))
    state.set_vault_share(holder, VaultShare(10**9, fv.BLOCK_TIME - 1))
    state.set_vault_share(locked, VaultShare(5 * 10**8, fv.BLOCK_TIME + 1))
    state.set_vault_share(VAULT_ADDRESS, VaultShare(15 * 10**8))
    state.commit(0)


def measure_trades(onestep: Any, state: State, tree: Any) -> dict:
    """Trade steps (onestep_trade.vy): two fresh accounts opening both sides;
    a long closing part of its position against a fresh short; the long of
    `a` (owing funding since its snapshot) selling part of it, funding
    settled; a long closed whole (its position leaf deleted)."""
    import msgspec
    from sequencer.core.commitment import compute_dirty_leaves
    from sequencer.core.records import Trade
    from sequencer.core.state import Order
    lot, price = 10_000, fv.BTC_PRICE
    index = state.markets[fv.BTC].funding_index
    makers = [keccak(b"trade maker %d" % i)[:20] for i in range(3)]
    takers = [keccak(b"trade taker %d" % i)[:20] for i in range(3)]
    a = fv.ADDRESSES[0]
    cases = {
        "Trade (opening both sides)": (makers[0], takers[0], None),
        "Trade (closing part of one side)": (makers[1], takers[1], Position(30 * lot, 30 * lot * price // 10**8, 10**8, index)),
        "Trade (funding settled: the maker owes since its snapshot)": (a, takers[2], None),
        "Trade (closing one side whole: its leaf deleted)": (makers[2], takers[0], Position(10 * lot, 10 * lot * price // 10**8, 10**7, index)),
    }
    out = {}
    for name, (maker, taker, held) in cases.items():
        runner = TraceRunner(State.from_tables(state.to_tables()), fv.RULES, tree=tree.copy(), ctx=fv.open_block_ctx(state))
        s = runner.state
        s.dirty.clear()
        seq = s.globals.order_count + 2
        for address in (maker, taker):
            if address not in s.accounts:
                s.set_account(address, Account(10**9, ()))
        if held is not None:
            s.set_position(maker, fv.BTC, held)
        s.set_order(maker, 900, Order(keccak(b"m" + maker), 20 * lot, 0, False, fv.BTC, False, price, 10, 0, False,
                                      fv.BLOCK_TIME + 60_000, seq - 1))
        s.set_order(taker, 901, Order(keccak(b"t" + taker), 20 * lot, 0, False, fv.BTC, True, price, 10, 1, False,
                                      fv.BLOCK_TIME + 60_000, seq))
        s.set_globals(msgspec.structs.replace(s.globals, order_count=seq))
        s.commit(0)
        runner.tree.update(compute_dirty_leaves(s))
        item = encode_item(Trade(fv.BTC, maker, 900, taker, 901, price, 10 * lot))
        root, pre_ctx = runner.state_root, runner.ctx
        result = runner.step(item)
        assert result.ok, name
        args = (root, pre_ctx.as_arg(), item, [o.as_arg() for o in result.witness.openings], [])
        out[name] = {"tx_gas": onestep.functions.step(*args).estimate_gas(),
                     "depths": [o.proof.depth for o in result.witness.openings]}
    return out


def measure_auction(onestep: Any, state: State, tree: Any) -> dict:
    """AuctionBid steps (onestep_auction.vy): a keeper with collateral takes
    part of a long's auction (funding settled on the owner, the keeper
    opening), then its last lots (the auction leaf deleted); ModifyOrder
    (onestep_modify.vy) of a's resting order."""
    from sequencer.core.commitment import compute_dirty_leaves
    from sequencer.core.records import AuctionBid, ModifyOrder
    from sequencer.core.rules.base import get_market_params
    from sequencer.core.rules.liquidation import compute_auction_prices
    from sequencer.core.signing import address_of
    from sequencer.core.state import Auction
    lot, price, exp = 10_000, fv.BTC_PRICE, fv.BLOCK_TIME + 60_000
    params = get_market_params(fv.RULES, fv.BTC)
    owner, key = keccak(b"auction owner")[:20], keccak(b"auction keeper")
    keeper = address_of(key)
    cases = {
        "AuctionBid (part of the lots: the keeper opens, funding settled on the owner)": 20 * lot,
        "AuctionBid (the last lots: the auction leaf deleted)": 50 * lot,
        "ModifyOrder": None,
    }
    out = {}
    for name, lots in cases.items():
        runner = TraceRunner(State.from_tables(state.to_tables()), fv.RULES, tree=tree.copy(), ctx=fv.open_block_ctx(state))
        s = runner.state
        s.dirty.clear()
        position = Position(100 * lot, 100 * lot * price // 10**8, 2 * 10**6, 0)
        s.set_account(keeper, Account(10**9, ()))
        s.set_position(owner, fv.BTC, position)
        start, end = compute_auction_prices(position, price, s.markets[fv.BTC], params)
        s.set_auction(owner, fv.BTC, Auction(50 * lot, start, end, fv.BLOCK_TIME - 30_000, fv.BLOCK_TIME + 30_000))
        s.commit(0)
        runner.tree.update(compute_dirty_leaves(s))
        if lots is None:
            item = encode_item(fv.sign(ModifyOrder(fv.ADDRESSES[0], 20, price - 10**6, 20 * lot, 200, exp, b""), fv.KEYS[0]))
        else:
            item = encode_item(fv.sign(AuctionBid(keeper, owner, fv.BTC, lots, start, 5, 1, exp, b""), key))
        root, pre_ctx = runner.state_root, runner.ctx
        result = runner.step(item)
        assert result.ok, name
        args = (root, pre_ctx.as_arg(), item, [o.as_arg() for o in result.witness.openings], list(result.witness.nonces))
        out[name] = {"tx_gas": onestep.functions.step(*args).estimate_gas(),
                     "depths": [o.proof.depth for o in result.witness.openings]}
    return out


def measure_cancel_all(onestep: Any, state: State, tree: Any) -> dict:
    """The dead-man's switch of a market maker (rules v4): a full nonce
    window, 120 resting orders across both markets, a long in BTC and the cap
    of pending triggers (20): the epoch written in 2 markets and 20 triggers
    cancelled, 25 openings (the heaviest a devnet account reaches)."""
    from sequencer.core import eip712
    from sequencer.core.commitment import compute_dirty_leaves
    from sequencer.core.state import OrderSchedule, Trigger
    owner, lot, price = keccak(b"cancel-all maker")[:20], 10_000, fv.BTC_PRICE
    exp = fv.BLOCK_TIME + 60_000
    runner = TraceRunner(State.from_tables(state.to_tables()), fv.RULES, tree=tree.copy(), ctx=fv.open_block_ctx(state))
    s = runner.state
    s.dirty.clear()
    s.set_account(owner, Account(10**9, tuple(range(1000, 1100))))
    for k in range(120):
        market, at = (fv.BTC, price) if k % 2 else (fv.ETH, 3_000 * 10**6)
        s.set_order(owner, 200 + k, fv.make_order(PlaceOrder(owner, market, k % 4 < 2, at, 10**6, 10, 0, False,
                                                             200 + k, exp, b""), seq=1 + k))
    s.set_position(owner, fv.BTC, Position(10 * lot, 10 * lot * price // 10**8, 10**8, 0))
    for nonce in range(500, 520):
        r = PlaceTrigger(owner, fv.BTC, False, price - 10**9, price - 11 * 10**8, lot, 10, 1, True, nonce, exp, b"")
        s.set_trigger(owner, nonce, Trigger(eip712.compute_struct_hash("PlaceTrigger", r), r.market, r.is_buy,
                                            r.trigger_price, r.price, r.size, r.leverage, r.tpsl, r.reduce_only,
                                            fv.BLOCK_TIME - 5000))
    s.set_order_schedule(owner, OrderSchedule(fv.BLOCK_TIME - 1, 20, 0, 0))
    s.commit(0)
    runner.tree.update(compute_dirty_leaves(s))
    s.dirty.clear()
    root, pre_ctx = runner.state_root, runner.ctx
    item = encode_item(ScheduledCancelAll(owner))
    result = runner.step(item)
    assert result.ok
    args = (root, pre_ctx.as_arg(), item, [o.as_arg() for o in result.witness.openings], list(result.witness.nonces))
    name = "ScheduledCancelAll (rules v4, a market maker: full window, 120 orders, 20 pending triggers)"
    return {name: {"tx_gas": onestep.functions.step(*args).estimate_gas(),
                   "depths": [o.proof.depth for o in result.witness.openings]}}


def add_triggers(state: State, owner: bytes, lots: int, price: int) -> None:
    """The trigger kinds: the owner's 10 kept nonces, 3 resting orders, 2
    pending sell take-profits below the mark (crossed) and a due cancel-all."""
    from sequencer.core import eip712
    from sequencer.core.state import OrderSchedule, Trigger
    state.set_account(owner, Account(5, tuple(range(1, 11))))
    for nonce in (1, 2, 3):
        state.set_order(owner, nonce, fv.make_order(PlaceOrder(owner, fv.BTC, True, price - 10**8, lots, 10, 0, False,
                                                               nonce, fv.BLOCK_TIME + 60_000, b"")))
    for nonce in (4, 5):
        r = PlaceTrigger(owner, fv.BTC, False, price - 10**9, price - 11 * 10**8, lots, 10, 1, True, nonce,
                         fv.BLOCK_TIME + 60_000, b"")
        state.set_trigger(owner, nonce, Trigger(eip712.compute_struct_hash("PlaceTrigger", r), r.market, r.is_buy,
                                                r.trigger_price, r.price, r.size, r.leverage, r.tpsl, r.reduce_only,
                                                fv.BLOCK_TIME - 5000))
    state.set_order_schedule(owner, OrderSchedule(fv.BLOCK_TIME - 1, 2, 0, 0))
    state.commit(0)


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=500)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--records", type=int, default=10_000, help="the big output's transfers (0: skip it)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--parts", default="game,derivation,one_step,big",
                        help="which measurements, comma-separated (game, derivation, one_step, big)")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    w3 = make_chain()
    report: dict = {}
    if "game" in parts:
        report["game"] = measure_game(args.blocks)
    if "derivation" in parts:
        report["derivation"] = measure_derivation(w3)
    if "one_step" in parts:
        report["one_step"] = measure_one_steps(w3, args.accounts)
    if args.records and "big" in parts:
        report["big_output"] = measure_big_output(args.records)
    rounds_10k = count_rounds(10_000)
    report["10k_worst_case_rounds"] = {"rounds": rounds_10k, "moves": 2 * rounds_10k + 2}
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
