"""The replay benchmark's deterministic log ends on pinned state roots.

The log is the one `python -m bench replay` writes to Kafka (bench/bench_replay.py):
round-robin Transfers between dev accounts (bench.common.plan_transfers), signed
with RFC 6979 (deterministic) signatures at fixed timestamps, cut into blocks by
``build_blocks``.  Here it is replayed in process, block message by block message,
through the executor's pure path (``apply_block_bytes``, then the dirty leaves into
the sparse Merkle tree), as a node's catch-up does without the Kafka read.

The roots were computed on the code before the executor and prover refactors
(issue 9); a change of behaviour anywhere in encoding, rules, leaves or the tree
moves them.  A change that is meant to move them (a new protocol version) re-pins
them and says why.
"""
from __future__ import annotations

import pytest

from bench.bench_replay import EXPIRY_MS, Settings, allocations, build_blocks, make_ctx
from bench.common import plan_transfers, sign_transfers
from prover.tree import SparseMerkleTree
from sequencer.core.commitment import compute_dirty_leaves
from sequencer.core.transition import apply_block_bytes
from sequencer.executor.genesis import build_genesis

SMALL = Settings(records=8_000, accounts=1_000, block_records=500)
"""16 blocks of 500; replays with signature checks in about a second."""
SMALL_MIDDLE_BLOCK = 8
SMALL_MIDDLE_ROOT = "47c6c1d29b02b76b9b54d481b3cec78d9784497601a009f8ea36ab350dc24e2d"
SMALL_FINAL_ROOT = "3f93d80d3f8ba2d237c037f2e1726d4c25b703c34d63fd3ca88307e91144bb1a"

DEFAULT = Settings()
"""The bench's default log (100,000 records, 10,000 accounts, blocks of 500).
Blocks of 4,000 (pinned at 67e5da27...ec1c before) no longer fit the block byte
budget (Preset.max_block_bytes); this root of the 500-record blocks was computed
on the code before issue 9 too, which replays the same log."""
DEFAULT_FINAL_ROOT = "96abe5ae271bd1df720f1af1cbc193bf4bab62b40b6e028a46ebefff49c58a7c"


def build_log(s: Settings) -> list[bytes]:
    """The bench's block messages for settings ``s`` (signed in this process
    for the small log, on all cores for the default one)."""
    workers = 1 if s.records <= 10_000 else None
    signed = sign_transfers(plan_transfers(s.records, s.accounts), s.accounts, expiry=EXPIRY_MS, workers=workers)
    return build_blocks(s, [x.record_bytes for x in signed])


def replay_roots(s: Settings, blocks: list[bytes], verify: bool) -> dict[int, str]:
    """Apply every block message to a fresh genesis state; the state root after
    each block, by block number."""
    state = build_genesis(allocations(s))
    ctx = make_ctx(verify)
    tree = SparseMerkleTree()
    tree.update(compute_dirty_leaves(state))
    roots = {}
    for message in blocks:
        result = apply_block_bytes(state, message, ctx)
        assert result.applied
        assert all(r.ok for r in result.receipts), [r.error for r in result.receipts if not r.ok][:3]
        tree.update(compute_dirty_leaves(state))
        roots[state.globals.block_number] = tree.root.hex()
    return roots


def test_small_bench_log_replays_to_the_pinned_roots():
    blocks = build_log(SMALL)
    assert len(blocks) == SMALL.records // SMALL.block_records
    roots = replay_roots(SMALL, blocks, verify=True)
    assert len(roots) == len(blocks)
    assert len(set(roots.values())) == len(roots), "every block changes the root"
    assert roots[SMALL_MIDDLE_BLOCK] == SMALL_MIDDLE_ROOT
    assert roots[len(blocks)] == SMALL_FINAL_ROOT


def test_a_changed_record_moves_the_root():
    """The pin can fail: the same log with one transfer's amount changed (re-signed
    and so valid) ends elsewhere."""
    s = Settings(records=1_000, accounts=100, block_records=500)
    plan = plan_transfers(s.records, s.accounts)
    honest = sign_transfers(plan, s.accounts, expiry=EXPIRY_MS, workers=1)
    edited = sign_transfers(plan[-1:], s.accounts, expiry=EXPIRY_MS, amount=2, workers=1)
    a = replay_roots(s, build_blocks(s, [x.record_bytes for x in honest]), verify=True)
    b = replay_roots(s, build_blocks(s, [x.record_bytes for x in honest[:-1] + edited]), verify=True)
    assert a[1] == b[1]
    assert a[2] != b[2]


@pytest.mark.slow
def test_default_bench_log_replays_to_the_pinned_root():
    """The 100,000-record log `python -m bench replay` uses by default (about 15 s,
    most of it signing)."""
    blocks = build_log(DEFAULT)
    roots = replay_roots(DEFAULT, blocks, verify=False)
    assert len(roots) == -(-DEFAULT.records // DEFAULT.block_records)
    assert roots[len(blocks)] == DEFAULT_FINAL_ROOT
