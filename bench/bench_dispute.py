"""L1 gas of the fraud proofs, measured on py-evm (docs/fraud-proofs.md).

    .venv/bin/python -m bench.bench_dispute [--blocks 500] [--accounts 100000] [--json out.json]

1. A real game: an output of `--blocks` one-transfer blocks after a mixed
   prefix (3 items per block, ~110 KB of item data at 500), a proposer lying
   about the last position against an honest challenger, both played by
   l1_bridge.dispute.GamePlayer: gas of propose, challenge (data calldata and
   the records root derived on L1), each bisect, each choose, and the step.
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

from l1_bridge.compile import compile_contract
from l1_bridge.dispute import GamePlayer, LocalTrace
from prover import fraud_vectors as fv
from prover.hashing import keccak
from prover.records import BlockEnd, BlockStart, Noop, compute_block_items, encode_data, encode_item
from prover.trace import TraceContext, TraceRunner, build_tree, compute_claim
from sequencer.core.records import Deposit, ForcedWithdrawal, Transfer, Withdraw
from sequencer.core.state import Account, State


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


def measure_game(w3: Web3, blocks: int) -> dict:
    items = [item for m in fv.make_trace_messages(extra_blocks=blocks) for item in compute_block_items(m)]
    data = encode_data(items)
    started = time.perf_counter()
    honest = LocalTrace(TraceRunner(fv.make_trace_genesis(), fv.RULES), items)
    replay_s = time.perf_counter() - started
    onestep = deploy(w3, "onestep", *fv.ONESTEP_PARAMS, deploy(w3, "onestep_perps", *fv.PERPS_PARAMS).address)
    genesis_root = TraceRunner(fv.make_trace_genesis(), fv.RULES).state_root
    dispute = deploy(w3, "dispute", onestep.address, w3.eth.accounts[0], genesis_root, 3600, 600, 60,
                     10**18, 10**17, 10**15)
    liar = LocalTrace.__new__(LocalTrace)
    liar.__dict__.update(honest.__dict__)
    wrong_root = keccak(b"wrong")
    liar.claims = honest.claims[:-1] + [compute_claim(wrong_root, honest.end.ctx)]
    proposer = GamePlayer(w3, dispute, w3.eth.accounts[0], liar)
    challenger = GamePlayer(w3, dispute, w3.eth.accounts[1], honest)
    output = proposer.propose(wrong_root, honest.end.ctx.as_arg(), honest.end.ctx.withdrawals.root(), keccak(data))
    game = challenger.challenge(output, data)
    status = challenger.play_to_end(game, proposer.play)
    moves = proposer.gas + challenger.gas
    by_kind: dict[str, list[int]] = {}
    for name, gas in moves:
        by_kind.setdefault(name, []).append(gas)
    return {"items": len(items), "data_bytes": len(data), "status": status, "replay_s": round(replay_s, 2),
            "rounds": len(by_kind.get("bisect", [])),
            "gas": {k: {"median": int(statistics.median(v)), "max": max(v), "count": len(v)} for k, v in by_kind.items()},
            "proposer_total": sum(g for n, g in proposer.gas if n != "propose"),
            "challenger_total": sum(g for _, g in challenger.gas)}


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
    onestep = deploy(w3, "onestep", *fv.ONESTEP_PARAMS, deploy(w3, "onestep_perps", *fv.PERPS_PARAMS).address)
    a, b, c, d = fv.ADDRESSES
    population = {keccak(b"acct%d" % i)[:20]: Account(10**9, (1, 2, 3)) for i in range(accounts)}
    population.update({a: Account(10**9, tuple(range(1, 101))), b: Account(10**6, ()), c: Account(5, ())})
    state = fv.make_state(population)
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
        "Transfer, refused (bad signature)": (encode_item(fv.sign(Transfer(a, b, 5, 200, exp, b""), fv.KEYS[1])), None),
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
    return {"accounts": accounts, "tree_build_s": round(build_s, 1), "kinds": out}


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=500)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    w3 = make_chain()
    report = {"game": measure_game(w3, args.blocks), "derivation": measure_derivation(w3),
              "one_step": measure_one_steps(w3, args.accounts)}
    g = report["game"]
    rounds_10k = count_rounds(10_000)
    moves = {k: v["median"] for k, v in g["gas"].items()}
    report["10k"] = {
        "rounds": rounds_10k, "moves": 2 * rounds_10k + 1,
        "challenger_gas_excluding_open": rounds_10k * moves["choose"] + moves["step"],
        "open_gas_extrapolated": moves["challenge"] + round((10_000 - g["items"])
                                                            * report["derivation"]["per_item_with_calldata"]),
        "proposer_gas": rounds_10k * moves["bisect"],
    }
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
