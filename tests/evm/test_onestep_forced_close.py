"""ForcedClose (record tag 50) in the one-step (docs/fraud-proofs.md, "The
liquidation ladder"): posted packed (inbox index, account, the inbox entry's
32-byte amount as the market); onestep_liquidate.vy serves it as a no-op (an
unlisted market, the insurance fund's account) or refuses it out of inbox
order; in a listed market of any other account the owner's order epoch is
written there (its orders cancelled with that one write, a position leaf
created when there was none) and the position closes: a flat one releases
its margin; under rules v3 an open one is taken over whole by the insurance
fund at the mark (the liquidation fee when liquidatable, none when healthy;
the state as it was, the request served, when the fund cannot pay its bad
debt), under any policy. Under rules v2 (a log replayed with schema 2) an
open one went down the ladder, which ranks the opposite positions: the
Python reference raises PendingKind there. The branches in full:
test_onestep_liquidate.py."""
from __future__ import annotations

import msgspec
import pytest

from prover import fraud_vectors as fv
from prover.keys import get_position_key
from prover.records import ITEM_RECORD, ONESTEP_TAGS, PendingKind, compute_block_items, decode_item
from prover.trace import TraceRunner
from sequencer.core.encoding import encode_block, encode_record
from sequencer.core.records import Block, ForcedClose
from sequencer.core.rules.margin import compute_fee
from sequencer.core.rules.positions import INSURANCE_ADDRESS

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


def open_position_state(margin: int, insurance: int = 11):
    """A's long of 0.1 BTC at 60,000 (the mark) in the book-first devnet market."""
    market = fv.make_market(fv.BTC, fv.BTC_PRICE)
    state = fv.make_perps_state({A: fv.Account(10**6, ())}, [market],
                                {(A, fv.BTC): fv.Position(10**7, 6_000 * 10**6, margin, 0)}, {}, inbox_count=0)
    state.set_globals(msgspec.structs.replace(state.globals, insurance_fund=insurance))
    state.commit(0)
    return state


@pytest.mark.parametrize("margin,liquidatable", [(700 * 10**6, False), (70 * 10**6, True)])
def test_a_forced_close_of_an_open_position_goes_to_the_fund_on_both_sides(onestep, margin, liquidatable):
    """Rules v3, healthy (margin 700: no fee) or liquidatable (margin 70 <
    maintenance 72: the liquidation fee, 30 USDC): the fund holds the long at
    the mark, A's margin less the fee is free collateral, the fee is the fund's."""
    from onestep_support import BTC, run_both
    fee = compute_fee(6_000 * 10**6, BTC.liquidation_fee_ppm) if liquidatable else 0
    assert fee < margin
    state = open_position_state(margin)
    runner, pre_root, result, (root, ok, _) = run_both(onestep, state, fv.open_block_ctx(state), ITEM)
    assert result.ok and (ok, root) == (True, runner.state_root)
    after = runner.state
    assert after.positions[(INSURANCE_ADDRESS, fv.BTC)] == fv.Position(10**7, 6_000 * 10**6, 0, 0)
    assert after.positions[(A, fv.BTC)].size == 0 and after.globals.inbox_count == 1
    assert after.accounts[A].collateral == 10**6 + margin - fee
    assert after.globals.insurance_fund == 11 + fee


def test_a_forced_close_the_fund_cannot_pay_for_is_served_with_the_position_kept(onestep):
    """Rules v3: A's long bankrupt at the mark (cost 6,100, margin 0: 100 USDC
    of bad debt) and a fund of 11 units: the request is served, the position
    stays (its order epoch written), on both sides."""
    from onestep_support import run_both
    state = open_position_state(0)
    state.set_position(A, fv.BTC, fv.Position(10**7, 6_100 * 10**6, 0, 0))
    state.commit(0)
    runner, pre_root, result, (root, ok, _) = run_both(onestep, state, fv.open_block_ctx(state), ITEM)
    assert result.ok and (ok, root) == (True, runner.state_root)
    assert runner.state.positions[(A, fv.BTC)].size == 10**7 and runner.state.globals.inbox_count == 1
    assert (INSURANCE_ADDRESS, fv.BTC) not in runner.state.positions and runner.state.globals.insurance_fund == 11


def test_under_rules_v2_a_forced_close_of_an_open_position_is_pending():
    """A log replayed with schema 2: the open position went down the ladder
    (ranked opposite positions), which no bounded witness shows."""
    rules = msgspec.structs.replace(fv.RULES, schema_version=2)
    state = open_position_state(700 * 10**6)
    runner = TraceRunner(state, rules, ctx=fv.open_block_ctx(state))
    with pytest.raises(PendingKind):
        runner.step(ITEM)
