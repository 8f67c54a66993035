"""L1 gas of the bridge, measured on py-evm (web3 + eth-tester, Prague rules:
21,000 per tx, calldata 16/4 gas per non-zero/zero byte, but at least the
EIP-7623 floor of 40/10 -- which is what data-heavy transactions pay).

    .venv/bin/python -m bench.bench_l1_gas [--trades 2000] [--json out.json]

Measures gas per deposit, proposal, claim, forced request (withdrawal, close),
freeze, escape (register, claim) and refund, then the L1 gas per L2 trade:
- batched: blocks of signed PlaceOrder (taker) + Trade records, msgpack
  encoded as on the log, zlib-9 compressed, posted as the calldata of one
  propose() per batch (<= MAX_BATCH_BYTES); per trade = total gas / trades.
- naive baseline, same run: uncompressed, one record per L1 tx, (a) as a plain
  data transaction (21,000 + calldata only, the cheapest possible) and (b) as a
  propose() carrying that one record.
Target: batched <= 0.25 x baseline (a).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
import zlib
from typing import Any

import msgspec
from eth_tester import EthereumTester, PyEVMBackend
from web3 import EthereumTesterProvider, Web3

from l1_bridge.deploy import BridgePreset, MarketConfig, deploy, load_artifact
from l1_bridge.proofs import OutputFields, claim_args, encode_withdrawal, escape_args
from prover.hashing import EMPTY, keccak
from prover.keys import get_account_key, get_market_key, get_position_key
from prover.output import withdrawal_proofs
from prover.records import compute_data_hash
from prover.tree import SparseMerkleTree
from sequencer.core.commitment import encode_account_leaf, encode_market_leaf, encode_position_leaf
from sequencer.core.encoding import encode_block, make_block
from sequencer.core.records import PlaceOrder, Trade
from sequencer.core.state import Account, Market, Position, Withdrawal

PRESET = BridgePreset("bench", challenge_period=3600, forced_grace=600, forced_fee=10**15,
                      escape_window=3600, proposer_bond=10**18)
WITHDRAWALS = 64
WITHDRAWAL_AMOUNT = 10 * 10**6
MARKETS = [MarketConfig(1, 10**8, 10**14), MarketConfig(2, 10**6, 10**12)]
UNIT = 10**6
MAX_BATCH = 120_000


def make_chain() -> tuple[Web3, EthereumTester]:
    backend = PyEVMBackend(genesis_parameters=PyEVMBackend.generate_genesis_params(
        overrides={"gas_limit": 60_000_000}))
    tester = EthereumTester(backend)
    return Web3(EthereumTesterProvider(tester)), tester


def gas(w3: Web3, call: Any, sender: str, value: int = 0) -> int:
    r = w3.eth.wait_for_transaction_receipt(call.transact({"from": sender, "value": value}))
    assert r["status"] == 1
    return r["gasUsed"]


def make_trades(n: int, rng: random.Random, traders: list[bytes]) -> list[list]:
    """Records of n trades: per trade a signed taker PlaceOrder and the Trade
    against a resting maker order (makers re-post an order every 10 trades)."""
    out = []
    nonce = 1_700_000_000_000
    price = 60_000 * UNIT
    for i in range(n):
        nonce += rng.randint(1, 50)
        price += rng.choice((-1, 0, 1)) * 10 * UNIT
        taker, maker = rng.sample(traders, 2)
        size = rng.randint(1, 200) * 10**5
        is_buy = rng.random() < 0.5
        recs = []
        if i % 10 == 0:
            recs.append(PlaceOrder(maker, 1, not is_buy, price, size * 10, 10, 0, False, nonce - 1,
                                   nonce + 86_400_000, rng.randbytes(65)))
        recs.append(PlaceOrder(taker, 1, is_buy, price, size, 10, 1, False, nonce, nonce + 60_000,
                               rng.randbytes(65)))
        recs.append(Trade(1, maker, nonce - 1, taker, nonce, price, size))
        out.append(recs)
    return out


def encode_batches(trades: list[list], trades_per_block: int = 20) -> list[tuple[bytes, int]]:
    """[(compressed batch data, trades in it)]: msgpack array of encoded blocks, zlib level 9."""
    batches = []
    blocks: list[bytes] = []
    count = 0
    parent = EMPTY
    number = 1
    for start in range(0, len(trades), trades_per_block):
        chunk = trades[start:start + trades_per_block]
        block = encode_block(make_block(number, parent, 1_700_000_000_000 + number * 100,
                                        [r for t in chunk for r in t]))
        parent = keccak(block)
        number += 1
        candidate = zlib.compress(msgspec.msgpack.encode(blocks + [block]), 9)
        if len(candidate) > MAX_BATCH and blocks:
            batches.append((zlib.compress(msgspec.msgpack.encode(blocks), 9), count))
            blocks, count = [], 0
        blocks.append(block)
        count += len(chunk)
    if blocks:
        batches.append((zlib.compress(msgspec.msgpack.encode(blocks), 9), count))
    return batches


class Bench:
    def __init__(self) -> None:
        self.w3, self.tester = make_chain()
        w3 = self.w3
        self.accounts = list(w3.eth.accounts)
        self.proposer, self.challenger = self.accounts[0], self.accounts[1]
        self.d = deploy(w3, PRESET, proposer=self.proposer, challenger=self.challenger, markets=MARKETS)
        self.token = w3.eth.contract(address=self.d.token, abi=load_artifact("token")[0])
        self.bridge = w3.eth.contract(address=self.d.bridge, abi=load_artifact("bridge")[0])
        gas(w3, self.bridge.functions.depositBond(), self.proposer, PRESET.proposer_bond)
        self.l2_block = 0
        self.inbox: list[tuple[bytes, int]] = []

    def travel(self, seconds: int) -> None:
        now = self.w3.eth.get_block("latest")["timestamp"]
        self.tester.time_travel(now + seconds + 1)

    def propose(self, fields: OutputFields, data: bytes) -> int:
        """Every output names the same withdrawals tree (64 withdrawals of 10) and commits its total."""
        self.l2_block += 1
        idx = self.bridge.functions.output_count().call()
        return gas(self.w3, self.bridge.functions.propose(idx, self.l2_block, fields.as_arg(),
                                                          WITHDRAWALS * WITHDRAWAL_AMOUNT, data), self.proposer)

    def fields(self, state_root: bytes, withdrawals_root: bytes, data: bytes) -> OutputFields:
        count = self.bridge.functions.inbox_count().call()
        return OutputFields(state_root, withdrawals_root, keccak(b"%d" % self.l2_block), count,
                            self.bridge.functions.inboxHashAt(count).call(), compute_data_hash([data]))


def run(n_trades: int) -> dict:
    t0 = time.perf_counter()
    b = Bench()
    w3 = b.w3
    users = b.accounts[2:]
    res: dict[str, Any] = {}

    # deposits (first and repeat: a repeat writes no new account slot on L1 either way)
    for u in users[:4]:
        gas(w3, b.token.functions.faucet(10**6 * UNIT), u)
        gas(w3, b.token.functions.approve(b.d.bridge, 2**256 - 1), u)
    dep = [gas(w3, b.bridge.functions.deposit(u, 1_000 * UNIT), u) for u in users[:4]]
    res["deposit"] = max(dep)

    # a state with many accounts, so proofs have a realistic depth
    rng = random.Random(5)
    tree = SparseMerkleTree()
    filler = {get_account_key(rng.randbytes(20)): encode_account_leaf(Account(collateral=rng.randint(1, 10**12)))
              for _ in range(20_000)}
    tree.update(filler)
    u0 = bytes.fromhex(users[0][2:])
    leaves = {
        get_account_key(u0): encode_account_leaf(Account(collateral=400 * UNIT, nonces=(1, 2, 3))),
        get_position_key(u0, 1): encode_position_leaf(Position(10**7, 6_000 * UNIT, 600 * UNIT, 0)),
        get_market_key(1): encode_market_leaf(Market(1, 60_500 * UNIT, 1, 0, 10**9, mark_price=60_500 * UNIT)),
        get_market_key(2): encode_market_leaf(Market(2, 3_000 * UNIT, 1, 0, 10**9, mark_price=3_000 * UNIT)),
    }
    tree.update(leaves)
    ws = [encode_withdrawal(Withdrawal(i, bytes.fromhex(users[i % 4][2:]), WITHDRAWAL_AMOUNT, 1))
          for i in range(WITHDRAWALS)]
    wroot, wproofs = withdrawal_proofs(ws)

    # proposal with an empty batch (the fixed cost) and with a typical one
    empty_fields = b.fields(tree.root, wroot, b"")
    res["propose_empty_batch"] = b.propose(empty_fields, b"")
    first_output = b.bridge.functions.output_count().call() - 1
    first_fields = empty_fields

    # forced request
    res["force_withdraw"] = gas(w3, b.bridge.functions.forceWithdraw(UNIT), users[1], PRESET.forced_fee)
    res["force_close"] = gas(w3, b.bridge.functions.forceClose(1), users[1], PRESET.forced_fee)

    # claim (64 withdrawals in the tree: 6 siblings)
    b.travel(PRESET.challenge_period)
    wobj = Withdrawal(0, bytes.fromhex(users[0][2:]), 10 * UNIT, 1)
    args = claim_args(first_output, first_fields, wobj, wproofs[0])
    res["claim_withdrawal"] = gas(w3, b.bridge.functions.claimWithdrawal(*args), users[3])
    res["claim_withdrawal_siblings"] = len(wproofs[0].siblings)

    # L1 gas per L2 trade: batched + compressed vs one uncompressed record per tx
    traders = [rng.randbytes(20) for _ in range(200)]
    trades = make_trades(n_trades, rng, traders)
    batches = encode_batches(trades)
    batched_gas = 0
    raw_bytes = sum(len(msgspec.msgpack.encode(r)) for t in trades for r in t)
    for data, _count in batches:
        batched_gas += b.propose(b.fields(tree.root, wroot, data), data)
    per_trade = batched_gas / n_trades
    sample = trades[:50]
    plain_gas = 0
    propose_gas = 0
    n_records = 0
    for t in sample:
        for r in t:
            data = msgspec.msgpack.encode(r)
            n_records += 1
            tx = {"from": users[5], "to": users[6], "data": "0x" + data.hex(), "value": 0}
            plain_gas += w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(tx))["gasUsed"]
            propose_gas += b.propose(b.fields(tree.root, wroot, data), data)
    base_plain = plain_gas / len(sample)
    base_propose = propose_gas / len(sample)
    res["trades"] = n_trades
    res["records_per_trade"] = round(sum(len(t) for t in trades) / n_trades, 2)
    res["raw_bytes_per_trade"] = round(raw_bytes / n_trades, 1)
    res["compressed_bytes_per_trade"] = round(sum(len(d) for d, _ in batches) / n_trades, 1)
    res["batches"] = len(batches)
    res["propose_full_batch"] = max(0, batched_gas // max(1, len(batches)))
    res["l1_gas_per_trade_batched"] = round(per_trade, 1)
    res["l1_gas_per_trade_baseline_plain_tx"] = round(base_plain, 1)
    res["l1_gas_per_trade_baseline_propose"] = round(base_propose, 1)
    res["ratio_vs_plain_tx"] = round(per_trade / base_plain, 4)
    res["ratio_vs_propose"] = round(per_trade / base_propose, 4)

    # freeze, escape (account + 1 position + 1 market + 1 exclusion proof), refund
    b.travel(PRESET.forced_grace + PRESET.challenge_period)
    # outputs proposed above are final now; a request made now is uncovered
    idx = b.bridge.functions.inbox_count().call()
    gas(w3, b.bridge.functions.forceWithdraw(UNIT), users[2], PRESET.forced_fee)
    gas(w3, b.bridge.functions.deposit(users[3], 5 * UNIT), users[3])
    b.travel(PRESET.forced_grace)
    res["freeze"] = gas(w3, b.bridge.functions.freeze(idx), users[4])
    last = b.bridge.functions.frozen_output().call()
    # the last final output's fields: rebuild from the OutputProposed event
    ev = [e for e in b.bridge.events.OutputProposed().get_logs(from_block=0) if e["args"]["output_index"] == last][0]["args"]
    fields = OutputFields(ev["state_root"], ev["withdrawals_root"], ev["last_block_hash"], ev["inbox_count"],
                          ev["inbox_hash"], ev["data_hash"])
    eargs = escape_args(tree, u0, fields, [1, 2])
    res["register_escape_2_markets_1_position"] = gas(w3, b.bridge.functions.registerEscape(*eargs), users[5])
    res["escape_proof_depth_account"] = len(eargs[3][1])
    res["state_tree_leaves"] = len(tree)
    res["refund_deposit"] = gas(w3, b.bridge.functions.refundDeposit(idx + 1, users[3], 5 * UNIT), users[3])
    b.travel(PRESET.escape_window)
    res["claim_escape"] = gas(w3, b.bridge.functions.claimEscape(users[0]), users[5])
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trades", type=int, default=2000)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    res = run(a.trades)
    width = max(len(k) for k in res)
    print("== L1 gas (py-evm, Prague: EIP-7623 calldata floor) ==")
    for k, v in res.items():
        print(f"  {k:<{width}}  {v:,}" if isinstance(v, int) else f"  {k:<{width}}  {v}")
    target = res["ratio_vs_plain_tx"] <= 0.25
    print(f"  batched / naive (plain tx) = {res['ratio_vs_plain_tx']:.3f}  (target <= 0.25: {'met' if target else 'MISSED'})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
