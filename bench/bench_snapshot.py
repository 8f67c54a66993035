"""What one node snapshot costs as history grows (sequencer.executor.snapshot).

    .venv/bin/python -m bench.bench_snapshot                 # 1,000,000 receipts
    .venv/bin/python -m bench.bench_snapshot --receipts 5000000

A chain with ``--accounts`` funded accounts, ``--receipts`` receipts and one
block index entry per 100 of them takes a snapshot after ``--new`` more
receipts.  Two ways, in the same run:

- whole: ``encode_snapshot``, everything in one file (the verifier's in-memory
  snapshots, and the node's before the index file);
- node: ``encode_node_state`` + ``encode_index_frame``, the state and tree plus
  a frame of what is new, which the node appends to ``index.bin``.

Both are the work done in the event loop (the file writes run in a thread).
Prints the time and the bytes of each, and their ratio.
"""
from __future__ import annotations

import argparse
import os
import time

from bench.common import say


def build_chain(accounts: int, receipts: int, new: int):
    from sequencer.core.records import Receipt
    from sequencer.executor.chain import BlockInfo, Chain
    from sequencer.executor.genesis import build_genesis
    from sequencer.node.config import NodeConfig, load_allocations
    from sequencer.node.node import make_context
    config = NodeConfig(genesis_dev_accounts=accounts)
    chain = Chain(build_genesis(load_allocations(config)), make_context(config))
    chain.track_index = True
    for i in range(receipts):
        receipt = Receipt(os.urandom(32), i // 100 + 1, i % 100, True, None)
        chain.receipts[receipt.hash] = receipt
    blocks = max(1, receipts // 100)
    for n in range(1, blocks + 1):
        chain.block_infos[n] = BlockInfo(n, n - 1, os.urandom(32), os.urandom(32), n, 100)
    chain.unindexed_receipts = list(chain.receipts.values())[-new:]
    chain.unindexed_blocks = list(range(max(1, blocks - new // 100 + 1), blocks + 1))
    return chain


def measure(chain, rounds: int = 3) -> dict:
    from sequencer.executor.snapshot import encode_index_frame, encode_node_state, encode_snapshot
    whole, node = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        whole_bytes = len(encode_snapshot(chain))
        whole.append(time.perf_counter() - t)
        t = time.perf_counter()
        state, tree = encode_node_state(chain)
        frame, _, _ = encode_index_frame(chain)
        node.append(time.perf_counter() - t)
        node_bytes = len(state) + len(tree) + len(frame)
    return {"whole_s": min(whole), "whole_bytes": whole_bytes, "node_s": min(node), "node_bytes": node_bytes}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--receipts", type=int, default=1_000_000)
    p.add_argument("--accounts", type=int, default=4_096)
    p.add_argument("--new", type=int, default=1_000, help="receipts applied since the last snapshot")
    args = p.parse_args(argv)
    say(f"building a chain: {args.accounts:,} accounts, {args.receipts:,} receipts, {args.new:,} new ...")
    r = measure(build_chain(args.accounts, args.receipts, args.new))
    say(f"  whole snapshot: {r['whole_s'] * 1e3:,.1f} ms, {r['whole_bytes'] / 1e6:,.2f} MB")
    say(f"  node snapshot + index frame: {r['node_s'] * 1e3:,.1f} ms, {r['node_bytes'] / 1e6:,.2f} MB "
        f"({r['whole_s'] / r['node_s']:.0f}x less time, {r['whole_bytes'] / r['node_bytes']:.0f}x fewer bytes)")
    return r


if __name__ == "__main__":
    main()
