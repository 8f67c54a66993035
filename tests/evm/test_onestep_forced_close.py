"""ForcedClose (record tag 50) in the one-step (docs/fraud-proofs.md, "The
liquidation ladder"): posted packed (inbox index, account, the inbox entry's
32-byte amount as the market); onestep_liquidate.vy serves it as a no-op (an
unlisted market, the insurance fund's account) or refuses it out of inbox
order; in a listed market of any other account rules v2 write the owner's
order epoch there (its orders cancelled with that one write, a position leaf
created when there was none) and close the position: a flat one releases its
margin; an open one goes down the ladder, which ranks the opposite positions
(the devnet table is book-first): the Python reference raises PendingKind and
onestep.vy reverts "pending". The branches in full: test_onestep_liquidate.py."""
from __future__ import annotations

import msgspec
import pytest

from prover import fraud_vectors as fv
from prover.keys import GLOBAL_KEY, get_market_key, get_position_key
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


def test_a_forced_close_in_a_listed_market_writes_the_order_epoch(onestep):
    """No position in the market: the position leaf (0, 0, 0, 0, order count)
    is created; the same entry for an unlisted market is served as a no-op."""
    for item, leaf in ((ITEM, bytes(128) + (17).to_bytes(32, "big")), (ITEM[:-32] + (9).to_bytes(32, "big"), None)):
        state = fv.make_state({A: fv.Account(10**6, ())}, inbox_count=0, order_count=17)
        ctx = fv.open_block_ctx(state)
        runner = TraceRunner(state, fv.RULES, ctx=ctx)
        pre_root = runner.state_root
        result = runner.step(item)
        root, _, ok = onestep.functions.apply(pre_root, ctx.as_arg(), item,
                                              [o.as_arg() for o in result.witness.openings], []).call()
        assert result.ok and ok and root == runner.state_root != pre_root
        assert runner.state.globals.inbox_count == 1
        assert runner.tree.get(get_position_key(A, 1)) == leaf


def test_a_forced_close_of_an_open_position_is_pending_on_both_sides(onestep):
    """An open position in the book-first devnet market closes through the
    ladder (ranked opposite positions): pending."""
    market = fv.make_market(fv.BTC, fv.BTC_PRICE)
    state = fv.make_perps_state({A: fv.Account(10**6, ())}, [market],
                                {(A, fv.BTC): fv.Position(10**7, 6_000 * 10**6, 700 * 10**6, 0)}, {}, inbox_count=0)
    ctx = fv.open_block_ctx(state)
    runner = TraceRunner(state, fv.RULES, ctx=ctx)
    with pytest.raises(PendingKind):
        runner.copy().step(ITEM)
    keys = [GLOBAL_KEY, get_position_key(A, fv.BTC), get_market_key(fv.BTC)]
    openings = [Opening(k, runner.tree.get(k), runner.tree.prove(k)).as_arg() for k in keys]
    with pytest.raises(Exception, match="pending"):
        onestep.functions.apply(runner.state_root, ctx.as_arg(), ITEM, openings, []).call()
