"""The attacks of issue 11 on py-evm, each as a hostile operator or a hostile
user would play them against the bridge (the L2 states are built with the
real state, commitment and tree code, bridge_env.L2):

1. escapes take money reserved for others (withdrawals, refundable deposits)
   and pay first come first served under bad debt;
3. margin in a position cannot be forced out (no forced close);
4. the operator fills the forced-request cap and takes the fees;
5. head-of-line: served requests must be popped before an account files again;
6. ETH owed to a contract wallet is stuck (`send` forwards 2,300 gas);
7. deposits past what the L2 can credit (64-bit totals): refused on L1;
8. a deletion allows an instant freeze;
9. the documented MAX_AMOUNT is not the contract's.

Attack 2 (a block too big to post: the block builder's byte budget) and the
L2 side of 7 (the snapshot encoder's integers) are not the bridge's.
"""
from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest
from web3.logs import DISCARD

from bridge_env import (L2, MARKET_SCALES, MARKETS, TEST_PRESET, UNIT, Env, Reverted, addr, bridge_session,  # noqa: F401
                        inconsistency_args,
                        claim, deploy_env, deploy_test_contract, env, escape_all, make_chain)
from l1_bridge.deploy import deploy, load_artifact
from l1_bridge.proofs import compute_escape_amount
from prover.hashing import keccak
from sequencer.core.state import Market, Position, State

pytestmark = pytest.mark.evm

CHALLENGE = TEST_PRESET.challenge_period
GRACE = TEST_PRESET.forced_grace
BTC = 10**8
ROOT = Path(__file__).resolve().parents[2]


def freeze_on_new_request(env: Env, who: str) -> int:
    """`who` files a forced withdrawal the operator never serves; after the
    grace a third party freezes. The frozen output's index."""
    idx = env.force_withdraw(who, UNIT)
    env.travel(GRACE)
    r = env.send(env.bridge.functions.freeze(idx), env.users[-1])
    return env.bridge.events.Frozen().process_receipt(r, errors=DISCARD)[0]["args"]["output_index"]


# --- 1. reserved money stays reserved; bad debt is shared --------------------------------

def _bad_debt_setup(env: Env):
    """The issue's example: A long and B short 1 BTC at 60,000 with 1,000
    margin each, the price at 63,000 in the last final output (A +3,000, B's
    equity -2,000: bad debt); C has an unclaimed final withdrawal of 500, E
    1,000 of free collateral, D a deposit of 700 the L2 never took."""
    a, b, c, d, e = env.users[:5]
    l2 = L2()
    for who, amount in ((a, 1_000), (b, 1_000), (c, 500), (e, 1_000)):
        env.deposit(who, amount * UNIT)
    l2.sync_inbox(env)
    l2.set_market(Market(1, oracle_price=60_000 * UNIT, oracle_time_ms=1, funding_index=0, open_interest=BTC,
                         mark_price=60_000 * UNIT))
    l2.open_position(addr(a), 1, Position(size=BTC, cost=60_000 * UNIT, margin=1_000 * UNIT))
    l2.open_position(addr(b), 1, Position(size=-BTC, cost=-60_000 * UNIT, margin=1_000 * UNIT))
    l2.set_market(Market(1, oracle_price=63_000 * UNIT, oracle_time_ms=2, funding_index=0, open_interest=BTC,
                         mark_price=63_000 * UNIT))
    l2.withdraw(addr(c), 500 * UNIT)
    cp = l2.checkpoint()
    env.propose(cp)
    env.travel(CHALLENGE)
    env.deposit(d, 700 * UNIT)
    return l2, cp


def test_escapes_leave_reserves_and_share_bad_debt(env: Env) -> None:
    a, b, c, d, e = env.users[:5]
    l2, cp = _bad_debt_setup(env)
    state = State.from_tables(cp.state_tables)
    owed = {who: compute_escape_amount(state, addr(who), MARKET_SCALES) for who in (a, b, e)}
    assert owed == {a: 4_000 * UNIT, b: 0, e: 1_000 * UNIT}  # B's -2,000 counts as zero
    assert env.balance(env.d.bridge) == 4_200 * UNIT
    assert freeze_on_new_request(env, e) == 1
    before = {who: env.balance(who) for who in (a, b, c, d, e)}
    # the escapes run first, in the order most favourable to A
    paid = escape_all(env, cp, [a, e, b])
    # the pool is 4,200 - 500 (C's withdrawal) - 700 (D's deposit) = 3,000 for 5,000 owed: 60% each
    assert paid == {a: 2_400 * UNIT, e: 600 * UNIT, b: 0}
    assert paid[a] * owed[e] == paid[e] * owed[a]  # the same fraction
    # C's withdrawal and D's refund were set aside
    claim(env, cp, 1, cp.withdrawals[0], sender=env.users[6])
    env.send(env.bridge.functions.refundDeposit(4, d, 700 * UNIT), env.users[6])
    assert env.balance(c) - before[c] == 500 * UNIT and env.balance(d) - before[d] == 700 * UNIT
    assert {who: env.balance(who) - before[who] for who in (a, b, e)} == paid
    assert env.balance(env.d.bridge) == 0


def test_escape_shares_do_not_depend_on_the_call_order(env: Env) -> None:
    a, b, c, d, e = env.users[:5]
    l2, cp = _bad_debt_setup(env)
    freeze_on_new_request(env, e)
    snap = env.tester.take_snapshot()
    results = []
    for order, claims_first in (([a, e, b], False), ([e, b, a], True), ([b, a, e], False)):
        env.tester.revert_to_snapshot(snap)
        before = {who: env.balance(who) for who in (a, b, e)}
        if claims_first:
            claim(env, cp, 1, cp.withdrawals[0], sender=env.users[6])
            env.send(env.bridge.functions.refundDeposit(4, d, 700 * UNIT), env.users[6])
        paid = escape_all(env, cp, order)
        results.append({who: env.balance(who) - before[who] for who in (a, b, e)})
        assert results[-1] == paid
    assert results[0] == results[1] == results[2] == {a: 2_400 * UNIT, e: 600 * UNIT, b: 0}


# --- 3. forced close of a position --------------------------------------------------------

def _all_margin_setup(env: Env):
    """A has every unit in the margin of a 0.1 BTC long, B is the short; the
    price then rises by 1,000; the last final output shows it."""
    a, b = env.users[:2]
    l2 = L2()
    env.deposit(a, 1_000 * UNIT)
    env.deposit(b, 1_000 * UNIT)
    l2.sync_inbox(env)
    l2.set_market(Market(1, oracle_price=60_000 * UNIT, oracle_time_ms=1, funding_index=0, open_interest=BTC,
                         mark_price=60_000 * UNIT))
    l2.open_position(addr(a), 1, Position(size=BTC // 10, cost=6_000 * UNIT, margin=1_000 * UNIT))
    l2.open_position(addr(b), 1, Position(size=-BTC // 10, cost=-6_000 * UNIT, margin=1_000 * UNIT))
    l2.set_market(Market(1, oracle_price=61_000 * UNIT, oracle_time_ms=2, funding_index=0, open_interest=BTC,
                         mark_price=61_000 * UNIT))
    cp = l2.checkpoint()
    env.propose(cp)
    env.travel(CHALLENGE)
    assert l2.state.accounts[addr(a)].collateral == 0
    return l2, cp


def test_forced_close_enters_the_inbox(env: Env) -> None:
    a = env.users[0]
    _all_margin_setup(env)
    fee = TEST_PRESET.forced_fee
    with pytest.raises(Reverted):  # a market the bridge does not know
        env.send(env.bridge.functions.forceClose(99), a, value=fee)
    with pytest.raises(Reverted):  # the fee is exact
        env.send(env.bridge.functions.forceClose(1), a, value=fee - 1)
    idx = env.force_close(a, 1)
    # kind 3, the market id in the amount field of the 61-byte entry
    entry = bytes([3]) + idx.to_bytes(8, "big") + addr(a) + (1).to_bytes(32, "big")
    h = env.bridge.functions.inboxHashAt(idx).call()
    assert env.bridge.functions.inboxHashAt(idx + 1).call() == keccak(h + entry)
    info = env.bridge.functions.getForcedRequest(idx).call()
    assert info[0] == a and info[3] == GRACE and info[6] == 3
    assert env.status()["open_forced_requests"] == 1


def test_forced_close_not_served_freezes_and_the_margin_escapes(env: Env) -> None:
    """The operator censors A's close: after the grace anyone freezes, and A's
    margin (plus its profit at the frozen mark) is paid by the escape."""
    a = env.users[0]
    l2, cp = _all_margin_setup(env)
    idx = env.force_close(a, 1)
    l2.checkpoint()  # the operator keeps trading but never covers the request
    env.travel(GRACE - 5)
    with pytest.raises(Reverted):
        env.send(env.bridge.functions.freeze(idx), env.users[5])
    env.travel(5)
    assert env.bridge.functions.canFreeze(idx).call()
    env.send(env.bridge.functions.freeze(idx), env.users[5])
    before = env.balance(a)
    paid = escape_all(env, cp, [a, env.users[1]])
    assert paid[a] == 1_100 * UNIT == env.balance(a) - before  # 1,000 margin + 0.1 BTC * 1,000
    assert paid[env.users[1]] == 900 * UNIT


def test_forced_close_served_by_a_covering_output(env: Env) -> None:
    """The L2 closes the position at the mark: the margin becomes free
    collateral and the output that covers the request stops the freeze."""
    a = env.users[0]
    l2, _ = _all_margin_setup(env)
    idx = env.force_close(a, 1)
    l2.apply_forced_close(idx, addr(a), 1)
    b = env.users[1]  # rules v3: the insurance fund takes A's healthy long over at the mark (no fee); B's short stays
    assert l2.state.accounts[addr(a)].collateral == 1_100 * UNIT and l2.state.accounts[addr(b)].collateral == 0
    assert l2.state.positions[(addr(a), 1)] == Position()
    assert l2.state.positions[(addr(b), 1)] == Position(size=-BTC // 10, cost=-6_000 * UNIT, margin=1_000 * UNIT)
    assert l2.state.positions[(bytes(20), 1)] == Position(size=BTC // 10, cost=6_100 * UNIT)
    assert l2.state.globals.insurance_fund == 0
    cp = l2.checkpoint()
    env.propose(cp)
    env.travel(GRACE)
    assert not env.bridge.functions.canFreeze(idx).call()
    with pytest.raises(Reverted):
        env.send(env.bridge.functions.freeze(idx), env.users[5])
    env.travel(CHALLENGE)
    assert env.bridge.functions.getForcedRequest(idx).call()[5]  # served
    assert env.status()["open_forced_requests"] == 0


# --- 4. no cap others can fill, fees not to the proposer ----------------------------------

def test_operator_cannot_fill_the_forced_queue(env: Env) -> None:
    victim = env.users[0]
    operator_accounts = env.users[1:5]
    fee = TEST_PRESET.forced_fee
    eth_before = env.w3.eth.get_balance(env.d.bridge)
    for who in operator_accounts:  # as many requests as the old cap held
        env.force_withdraw(who, UNIT)
    first = env.send(env.bridge.functions.forceWithdraw(UNIT), victim, value=fee)
    for who in operator_accounts * 5:  # and the operator keeps filling
        env.force_withdraw(who, UNIT)
    second = env.send(env.bridge.functions.forceWithdraw(UNIT), victim, value=fee)  # the same account again
    # the victim's cost does not grow with the others' requests
    assert first["gasUsed"] == second["gasUsed"]
    n = 4 + 1 + 20 + 1
    assert env.status()["open_forced_requests"] == n
    # the fees stay in the bridge: none goes to the proposer (who benefits from the blocks)
    assert env.bridge.functions.eth_owed(env.proposer).call() == 0
    assert env.bridge.functions.forced_fees_held().call() == n * fee
    assert env.w3.eth.get_balance(env.d.bridge) - eth_before == n * fee


# --- 5. served means covered by a final output: no pops ------------------------------------

def test_no_head_of_line_after_many_served_requests(env: Env) -> None:
    accounts = env.new_accounts(20)
    l2 = L2()
    for who in accounts:
        env.force_withdraw(who, UNIT)
    l2.sync_inbox(env)
    cp = l2.checkpoint()
    env.propose(cp)
    env.travel(CHALLENGE)
    idx = env.force_withdraw(accounts[-1], UNIT)  # the 20th account files again at once
    assert env.bridge.functions.getForcedRequest(idx).call()[0] == accounts[-1]
    assert env.status()["open_forced_requests"] == 1


# --- 6. ETH to a contract wallet --------------------------------------------------------------

def test_contract_wallet_winner_withdraws_its_reward() -> None:
    """A contract wallet proves an output wrong (a consistency proof: its block
    hash is not the one its own state holds) and takes the slashed bond with
    withdrawEth, whose raw_call forwards the gas its receive hook needs."""
    w3, _ = make_chain()
    owner, proposer = w3.eth.accounts[0], w3.eth.accounts[1]
    wallet = deploy_test_contract(w3, "wallet")
    d = deploy(w3, TEST_PRESET, proposer=proposer, deployer=owner, markets=MARKETS)
    bridge = w3.eth.contract(address=d.bridge, abi=load_artifact("bridge")[0])
    dispute = w3.eth.contract(address=d.dispute, abi=load_artifact("dispute")[0])
    env = Env(w3, None, d, None, bridge, list(w3.eth.accounts), proposer, d.challenger, [])
    env.send(bridge.functions.depositBond(), proposer, value=TEST_PRESET.proposer_bond)
    l2 = L2()
    l2.state.set_globals(msgspec.structs.replace(l2.state.globals, block_number=1))
    l2.state.commit(0)
    cp = l2.checkpoint()  # its last_block_hash is not the block hash its own state holds
    env.propose(cp)
    args = inconsistency_args(1, cp)
    env.send(wallet.functions.execute(d.dispute, dispute.encode_abi("proveInconsistent", args=list(args))), owner)
    assert bridge.functions.output_count().call() == 1
    assert bridge.functions.eth_owed(wallet.address).call() == TEST_PRESET.proposer_bond
    env.send(wallet.functions.execute(d.bridge, bridge.encode_abi("withdrawEth", args=[])), owner)
    assert wallet.functions.received().call() == TEST_PRESET.proposer_bond
    assert wallet.functions.payments().call() == 1
    assert w3.eth.get_balance(wallet.address) == TEST_PRESET.proposer_bond
    assert bridge.functions.eth_owed(wallet.address).call() == 0


# --- 7. totals past 64 bits --------------------------------------------------------------------

def test_deposits_the_l2_cannot_credit_are_refused() -> None:
    """The L2 credits a deposit only while the deposits it ever credited stay
    within 2**63-1 (its log and snapshots carry 64-bit integers); past that a
    deposit would take its inbox slot and credit nothing, a loss once a final
    output took it. The bridge refuses it instead, and keeps its own totals in
    u256 (an 18-decimal token reaches 2**63 at ~9.2 tokens)."""
    env = deploy_env(token_contract="big_token")
    a, d = env.users[0], env.users[1]
    big = env.bridge.functions.MAX_AMOUNT().call()
    cap = env.bridge.functions.MAX_TOTAL_DEPOSITS().call()
    assert cap == big == 2**63 - 1
    env.fund(a, 2 * big)
    env.fund(d, big)
    l2 = L2()
    env.deposit(a, big - 10)
    env.deposit(d, 10)  # exactly at the cap
    with pytest.raises(Reverted):
        env.deposit(d, 1)
    assert env.bridge.functions.total_deposited().call() == cap
    l2.sync_inbox(env)
    assert l2.state.accounts[addr(a)].collateral == big - 10 and l2.state.accounts[addr(d)].collateral == 10
    l2.withdraw(addr(a), big - 10)
    cp = l2.checkpoint()
    env.propose(cp)
    env.travel(CHALLENGE)
    assert env.bridge.functions.getOutput(1).call()[7] == big - 10
    with pytest.raises(Reverted):  # withdrawals do not make room: the L2's total only grows
        env.deposit(d, 1)
    freeze_on_new_request(env, d)
    assert env.reserves()["unclaimed_withdrawals"] == big - 10
    assert env.status()["escape_pool"] == 10
    before = env.balance(a)
    claim(env, cp, 1, cp.withdrawals[0])
    assert escape_all(env, cp, [a, d]) == {a: 0, d: 10}
    assert env.balance(a) - before == big - 10
    assert env.balance(env.d.bridge) == 0


# --- 8. a deletion re-arms the grace ----------------------------------------------------------------

def _covered_then_deleted(env: Env):
    a = env.users[0]
    l2 = L2()
    env.deposit(a, 10 * UNIT)
    idx = env.force_withdraw(a, UNIT)
    l2.sync_inbox(env)
    cp = l2.checkpoint()
    env.propose(cp)
    env.travel(GRACE + 60)  # the request's own grace is over; the output covers it
    assert not env.bridge.functions.canFreeze(idx).call()
    r = env.send(env.bridge.functions.deleteOutputs(1), env.challenger)  # a verifier false positive
    deleted_at = env.w3.eth.get_block(r["blockNumber"])["timestamp"]
    return l2, cp, idx, deleted_at


def test_deletion_gives_a_fresh_grace_for_the_honest_reproposal(env: Env) -> None:
    l2, cp, idx, deleted_at = _covered_then_deleted(env)
    assert not env.bridge.functions.canFreeze(idx).call()
    with pytest.raises(Reverted):
        env.send(env.bridge.functions.freeze(idx), env.users[5])
    assert env.bridge.functions.getForcedRequest(idx).call()[2] == deleted_at + GRACE
    env.travel_to(deleted_at + GRACE - 10)
    assert not env.bridge.functions.canFreeze(idx).call()
    env.send(env.bridge.functions.depositBond(), env.proposer, value=TEST_PRESET.proposer_bond)
    env.propose(cp)  # the honest output, posted again in time
    env.travel(CHALLENGE)
    assert not env.bridge.functions.canFreeze(idx).call()
    assert env.bridge.functions.getForcedRequest(idx).call()[5]


def test_deletion_then_silence_freezes_after_the_fresh_grace(env: Env) -> None:
    l2, cp, idx, deleted_at = _covered_then_deleted(env)
    env.travel_to(deleted_at + GRACE - 2)
    with pytest.raises(Reverted):
        env.send(env.bridge.functions.freeze(idx), env.users[5])
    env.travel_to(deleted_at + GRACE)
    env.send(env.bridge.functions.freeze(idx), env.users[5])
    assert env.bridge.functions.frozen().call()


# --- 9. the documented bound is the contract's ----------------------------------------------------

def test_documented_max_amount_is_the_contracts(env: Env) -> None:
    docs = (ROOT / "docs" / "l1-bridge.md").read_text()
    contract = env.bridge.functions.MAX_AMOUNT().call()
    stated = [int(n) for n in re.findall(r"MAX_AMOUNT`?[^.\n]{0,40}?2\*\*(\d+) ?- ?1", docs)]
    stated += [int(n) for n in re.findall(r"Amounts are 1 \.\.= 2\*\*(\d+) ?- ?1", docs)]
    assert stated, "docs/l1-bridge.md does not state MAX_AMOUNT"
    assert all(2**n - 1 == contract for n in stated), stated
    with pytest.raises(Reverted):
        env.deposit(env.users[0], contract + 1)
