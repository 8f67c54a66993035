"""ForcedClose (record tag 50) in the one-step (docs/fraud-proofs.md, "The
liquidation ladder"): posted packed (inbox index, account, the inbox entry's
32-byte amount as the market); onestep_liquidate.vy serves it when it is a
no-op (an unlisted market, the insurance fund's account) or refuses it out of
inbox order; in a listed market of any other account the rule cancels the
owner's open orders in it, which no witness can show complete: the Python
reference raises PendingKind and onestep.vy reverts "pending"."""
from __future__ import annotations

import msgspec
import pytest

from prover import fraud_vectors as fv
from prover.keys import GLOBAL_KEY
from prover.records import ITEM_RECORD, ONESTEP_TAGS, PendingKind, compute_block_items, decode_item
from prover.trace import Opening, TraceRunner
from sequencer.core.encoding import encode_block, encode_record
from sequencer.core.records import Block, ForcedClose

pytestmark = pytest.mark.evm

T = 1_700_000_000_000
A = bytes(range(1, 21))
ITEM = bytes((ITEM_RECORD, 50)) + (0).to_bytes(8, "big") + A + (1).to_bytes(32, "big")


@pytest.fixture(scope="module")
def onestep(onestep_contract):
    return onestep_contract


def test_a_forced_close_is_posted_packed():
    assert ForcedClose.__struct_config__.tag == 50 and 50 in ONESTEP_TAGS
    raw = encode_record(ForcedClose(0, A, 1))
    item = compute_block_items(encode_block(Block(1, b"\x00" * 32, T, (msgspec.Raw(raw),))))[1]
    assert item == ITEM and decode_item(item) == ForcedClose(0, A, 1)


def test_a_forced_close_in_a_listed_market_is_pending_on_both_sides(onestep):
    state = fv.make_state({A: fv.Account(10**6, ())}, inbox_count=0)
    ctx = fv.open_block_ctx(state)
    runner = TraceRunner(state, fv.RULES, ctx=ctx)
    with pytest.raises(PendingKind):
        runner.copy().step(ITEM)
    openings = [Opening(GLOBAL_KEY, runner.tree.get(GLOBAL_KEY), runner.tree.prove(GLOBAL_KEY)).as_arg()]
    with pytest.raises(Exception, match="pending"):
        onestep.functions.apply(runner.state_root, ctx.as_arg(), ITEM, openings, []).call()
    unlisted = ITEM[:-32] + (9).to_bytes(32, "big")  # the same entry for an unlisted market is served
    pre_root = runner.state_root
    result = runner.step(unlisted)
    root, _, ok = onestep.functions.apply(pre_root, ctx.as_arg(), unlisted,
                                          [o.as_arg() for o in result.witness.openings], []).call()
    assert result.ok and ok and root == runner.state_root != pre_root
    assert runner.state.globals.inbox_count == 1
