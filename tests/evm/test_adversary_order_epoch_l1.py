"""Rules v2's order epoch against the L1 twins, from an attacker's side: a
position leaf that holds nothing but the order epoch (0, 0, 0, 0, epoch) is
what a forced close of an account with no position, or a liquidation that
took all the margin, leaves.  Every rule must treat it as it treats the
absent position it stands for, on both sides (tests/unit/test_adversary_order_epoch.py
has the Python side of each attack)."""
from __future__ import annotations

import pytest

from onestep_support import PRICES, run_both
from prover import fraud_vectors as fv
from prover.keys import get_position_key
from prover.records import encode_item
from sequencer.core.records import AdjustMargin
from sequencer.core.state import Account, Position


@pytest.fixture(scope="module")
def onestep(onestep_contract):
    return onestep_contract


def epoch_only_state(position: Position):
    a = fv.ADDRESSES[0]
    return fv.make_perps_state({a: Account(10**9, ())}, [fv.make_market(fv.BTC, PRICES[fv.BTC])],
                               {(a, fv.BTC): position}, {})


@pytest.mark.xfail(strict=True, reason="onestep_perps.vy AdjustMargin refuses only an ABSENT position leaf "
                                       "(`if not op_pos.present`); the rule (positions.process_adjust_margin) "
                                       "refuses size == cost == margin == 0, so an epoch-only leaf "
                                       "(0,0,0,0,epoch) is accepted on L1 and refused in Python")
def test_adjust_margin_into_an_epoch_only_position_agrees(onestep):
    """Pre: alice's BTC leaf is (0, 0, 0, 0, 5) (her orders cancelled by a
    forced close, no position).  Op: AdjustMargin +1 USDC into it.  Post: the
    rule refuses it (no_position, as for an absent leaf); L1 must refuse it too
    with the root unchanged, or a dishonest proposer's output that applied it
    wins its game against every honest challenger."""
    a = fv.ADDRESSES[0]
    state = epoch_only_state(Position(order_epoch=5))
    ctx = fv.open_block_ctx(state)
    item = encode_item(fv.sign(AdjustMargin(a, fv.BTC, 10**6, 1, fv.BLOCK_TIME + 1, b""), fv.KEYS[0]))
    runner, pre_root, result, (root, ok, _) = run_both(onestep, state, ctx, item)
    assert not result.ok                       # Python: no_position
    assert (ok, root) == (result.ok, runner.state_root)


def apply_margin_as_l1_does(state, r: AdjustMargin, timestamp_ms: int, ctx) -> None:
    """What onestep_perps.vy computes for a positive AdjustMargin into a
    present position leaf (a dishonest proposer's rule: no no_position check)."""
    from msgspec.structs import replace
    from sequencer.core.rules.base import process_user_preamble, require_market_params
    from sequencer.core.rules.positions import settle_funding
    params = require_market_params(ctx, r.market)
    account = process_user_preamble(state, r, timestamp_ms, ctx)
    position = settle_funding(state, r.account, r.market, state.positions[(r.account, r.market)], params)
    state.set_account(r.account, replace(account, collateral=account.collateral - r.amount))
    state.set_position(r.account, r.market, replace(position, margin=position.margin + r.amount))


@pytest.mark.xfail(strict=True, reason="onestep_perps.vy AdjustMargin applies a positive amount to an epoch-only "
                                       "position leaf the rule refuses (no_position): a dishonest proposer's "
                                       "witness makes L1 agree with an output that applied it")
def test_a_forged_witness_cannot_apply_a_refused_adjust_margin(onestep, monkeypatch):
    """Pre: alice's BTC leaf is (0, 0, 0, 0, 5).  Op: a dishonest proposer
    steps the AdjustMargin +1 USDC the rule refuses with the witness of the
    output it claims (the margin moved).  Post: L1 must not reach that root."""
    from sequencer.core import transition
    from sequencer.core.rules.table import RULES_V2
    a = fv.ADDRESSES[0]
    state = epoch_only_state(Position(order_epoch=5))
    ctx = fv.open_block_ctx(state)
    item = encode_item(fv.sign(AdjustMargin(a, fv.BTC, 10**6, 1, fv.BLOCK_TIME + 1, b""), fv.KEYS[0]))
    monkeypatch.setattr(transition, "RULE_TABLES", {2: {**RULES_V2, AdjustMargin: apply_margin_as_l1_does}})
    runner, pre_root, result, (root, ok, _) = run_both(onestep, state, ctx, item)
    assert result.ok and runner.state.positions[(a, fv.BTC)].margin == 10**6   # the dishonest claim
    assert not ok and root == pre_root, "L1 applied the AdjustMargin the rule refuses"
