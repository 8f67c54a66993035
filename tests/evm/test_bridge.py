"""Bridge scenarios on py-evm (issue 5): deposits and the inbox chain,
proposals, the challenger, finality by time, withdrawal claims, forced
withdrawals, freeze, escapes and refunds.  The L2 states are built with the
real state, commitment and tree code (bridge_env.L2)."""
from __future__ import annotations

import msgspec
import pytest

from bridge_env import (L2, UNIT, Env, Reverted, addr, bridge_session, claim, claim_escape, end_escape_window,  # noqa: F401
                        env, fields_for, read_inbox, register_escape, TEST_PRESET, MARKET_SCALES)
from l1_bridge import inbox
from web3.logs import DISCARD
from l1_bridge.proofs import compute_escape_amount, MarketScale
from prover.hashing import keccak
from sequencer.core.records import Deposit, ForcedWithdrawal
from sequencer.core.state import Market, Position, State

pytestmark = pytest.mark.evm

CHALLENGE = TEST_PRESET.challenge_period
GRACE = TEST_PRESET.forced_grace


def test_inbox_chain_matches_python(env: Env) -> None:
    a, b = env.users[0], env.users[1]
    env.deposit(a, 5 * UNIT)
    env.deposit(a, 7 * UNIT, account=b)
    env.force_withdraw(b, 3 * UNIT)
    records = read_inbox(env)
    assert records == [Deposit(0, addr(a), 5 * UNIT), Deposit(1, addr(b), 7 * UNIT),
                       ForcedWithdrawal(2, addr(b), 3 * UNIT)]
    hashes = inbox.compute_inbox_hashes(records)
    for count, h in enumerate(hashes):
        assert env.bridge.functions.inboxHashAt(count).call() == h
    assert env.bridge.functions.inboxHash().call() == hashes[-1]
    # the entry is the 61 bytes documented in l1_bridge.inbox
    entry = inbox.encode_inbox_record(records[2])
    assert len(entry) == inbox.ENTRY_SIZE
    assert inbox.decode_inbox_entry(entry) == records[2]
    assert keccak(hashes[2] + entry) == hashes[3]
    with pytest.raises(Reverted):
        env.bridge.functions.inboxHashAt(4).call()


def test_deposit_checks(env: Env) -> None:
    u = env.users[0]
    with pytest.raises(Reverted):
        env.deposit(u, 0)
    with pytest.raises(Reverted):
        env.deposit(u, 2**63)
    poor = env.accounts[-1]  # funded and approved, but ask for more than it has
    with pytest.raises(Reverted):
        env.deposit(poor, 10**6 * UNIT + 1)


def test_deposit_propose_finalize_claim(env: Env) -> None:
    """deposit -> (L2 withdraw) -> checkpoint -> challenge period -> claim; the
    L1 balance moves by exactly the amount."""
    u = env.users[0]
    l2 = L2()
    env.deposit(u, 100 * UNIT)
    l2.sync_inbox(env)
    l2.withdraw(addr(u), 40 * UNIT)
    cp = l2.checkpoint()
    r = env.propose(cp)
    ev = env.bridge.events.OutputProposed().process_receipt(r, errors=DISCARD)[0]["args"]
    assert ev["output_root"] == cp.root and ev["output_index"] == 1
    assert ev["final_at"] == ev["proposed_at"] + CHALLENGE
    assert env.bridge.functions.computeOutputRoot(cp.fields.as_arg()).call() == cp.root
    info = env.bridge.functions.getOutput(1).call()
    assert info[0] == cp.root and not info[4] and 0 < info[3] <= CHALLENGE
    w = cp.withdrawals[0]
    with pytest.raises(Reverted):  # claim before finality
        claim(env, cp, 1, w)
    env.travel_to(ev["final_at"] - 10)
    assert env.bridge.functions.challengeTimeLeft(1).call() == 10
    with pytest.raises(Reverted):
        claim(env, cp, 1, w)
    env.travel_to(ev["final_at"])
    assert env.bridge.functions.challengeTimeLeft(1).call() == 0
    assert env.bridge.functions.isFinal(1).call()
    assert env.bridge.functions.lastFinalOutput().call() == 1
    before = env.balance(u)
    bridge_before = env.balance(env.d.bridge)
    claim(env, cp, 1, w, sender=env.users[3])  # anyone may relay; the account is paid
    assert env.balance(u) - before == 40 * UNIT
    assert bridge_before - env.balance(env.d.bridge) == 40 * UNIT
    with pytest.raises(Reverted):  # double claim
        claim(env, cp, 1, w)


def test_claim_rejects_bad_proofs(env: Env) -> None:
    u, v = env.users[0], env.users[1]
    l2 = L2()
    env.deposit(u, 100 * UNIT)
    env.deposit(v, 100 * UNIT)
    l2.sync_inbox(env)
    l2.withdraw(addr(u), 10 * UNIT)
    l2.withdraw(addr(v), 20 * UNIT)
    l2.withdraw(addr(u), 30 * UNIT)
    cp = l2.checkpoint()
    env.propose(cp)
    env.travel(CHALLENGE)
    w = cp.withdrawals[1]
    from l1_bridge.proofs import claim_args, encode_withdrawal, withdrawal_arg
    from prover.output import withdrawal_proofs
    _, proofs = withdrawal_proofs([encode_withdrawal(x) for x in cp.withdrawals])
    args = list(claim_args(1, cp.fields, w, proofs[1]))
    bad_amount = list(args)
    bad_amount[2] = withdrawal_arg(msgspec.structs.replace(w, amount=w.amount + 1))
    for bad in (
        bad_amount,
        args[:3] + [0] + args[4:],                                          # wrong leaf index
        args[:4] + [args[4][:-1]],                                          # truncated proof
        [0] + args[1:],                                                     # genesis output
        [1, fields_for(cp, withdrawals_root=b"\x11" * 32).as_arg()] + args[2:],  # fields not the root
    ):
        with pytest.raises(Reverted):
            env.send(env.bridge.functions.claimWithdrawal(*bad), u)
    for i, x in enumerate(cp.withdrawals):
        claim(env, cp, 1, x)
    assert env.bridge.functions.total_claimed().call() == 60 * UNIT


def test_wrong_root_deleted_and_honest_one_finalizes(env: Env) -> None:
    u = env.users[0]
    l2 = L2()
    env.deposit(u, 50 * UNIT)
    l2.sync_inbox(env)
    l2.withdraw(addr(u), 50 * UNIT)
    honest = l2.checkpoint()
    # a faulty proposer inflates the withdrawal
    forged = L2()
    forged.sync_inbox(env)
    forged.state.accounts[addr(u)] = forged.state.accounts[addr(u)].__class__(collateral=500 * UNIT)
    forged.state.dirty.add(("accounts", addr(u)))
    forged.withdraw(addr(u), 500 * UNIT)
    bad = forged.checkpoint()
    env.propose(bad)
    env.propose(forged.checkpoint())  # a second output on top of the bad one
    assert env.bridge.functions.output_count().call() == 3
    with pytest.raises(Reverted):  # only the guardian
        env.send(env.bridge.functions.deleteOutputs(1), env.users[0])
    bond_before = env.bridge.functions.bond().call()
    r = env.send(env.bridge.functions.deleteOutputs(1), env.challenger)
    ev = env.bridge.events.OutputsDeleted().process_receipt(r, errors=DISCARD)[0]["args"]
    assert ev["from_index"] == 1 and ev["previous_count"] == 3 and ev["slashed"] == 0
    assert env.bridge.functions.output_count().call() == 1
    # the guardian pays nobody: the bond stays (only a won game slashes it)
    assert env.bridge.functions.bond().call() == bond_before
    assert env.bridge.functions.eth_owed(env.challenger).call() == 0
    env.propose(honest)
    env.travel(CHALLENGE)
    with pytest.raises(Reverted):  # final outputs cannot be deleted
        env.send(env.bridge.functions.deleteOutputs(1), env.challenger)
    with pytest.raises(Reverted):  # the forged withdrawal is not in a final output
        claim(env, bad, 1, bad.withdrawals[0])
    before = env.balance(u)
    claim(env, honest, 1, honest.withdrawals[0])
    assert env.balance(u) - before == 50 * UNIT
    with pytest.raises(Reverted):  # nothing owed to the guardian
        env.send(env.bridge.functions.withdrawEth(), env.challenger)


def test_propose_checks(env: Env) -> None:
    u = env.users[0]
    l2 = L2()
    env.deposit(u, 10 * UNIT)
    env.deposit(u, 10 * UNIT)
    l2.sync_inbox(env, upto=1)  # the L2 took one of the two deposits: fine
    cp = l2.checkpoint()
    bad_inbox_hash = fields_for(cp, inbox_hash=b"\x22" * 32)
    bad_inbox_count = fields_for(cp, inbox_count=3)
    bad_data_hash = fields_for(cp, data_hash=keccak(b"other data"))
    for kwargs in (dict(fields=bad_inbox_hash), dict(fields=bad_inbox_count), dict(fields=bad_data_hash),
                   dict(data=b"other data"), dict(output_index=2), dict(output_index=0),
                   dict(sender=env.users[0])):
        with pytest.raises(Reverted):
            env.propose(cp, **kwargs)
    env.propose(cp)
    with pytest.raises(Reverted):  # same output twice (index taken, l2 block not increasing)
        env.propose(cp, output_index=1)
    l2.sync_inbox(env)
    cp2 = l2.checkpoint()
    env.propose(cp2)
    l3 = L2()
    cp_back = l3.checkpoint()  # inbox count 0 < the previous output's 2
    cp_back.l2_block = 10
    with pytest.raises(Reverted):
        env.propose(cp_back)
    with pytest.raises(Reverted):  # bond cannot leave while outputs are pending
        env.send(env.bridge.functions.withdrawBond(1), env.proposer)
    env.travel(CHALLENGE)
    env.send(env.bridge.functions.withdrawBond(TEST_PRESET.proposer_bond), env.proposer)
    with pytest.raises(Reverted):
        env.propose(l2.checkpoint())


def _forced_setup(env: Env):
    """Two users with positions on the L2 and a final checkpoint; returns (l2, final checkpoint)."""
    a, b, c = env.users[0], env.users[1], env.users[2]
    l2 = L2()
    env.deposit(a, 1_000 * UNIT)
    env.deposit(b, 2_000 * UNIT)
    env.deposit(c, 300 * UNIT)
    l2.sync_inbox(env)
    l2.set_market(Market(1, oracle_price=60_000 * UNIT, oracle_time_ms=1, funding_index=0, open_interest=10**8,
                         mark_price=60_000 * UNIT))
    l2.set_market(Market(2, oracle_price=3_000 * UNIT, oracle_time_ms=1, funding_index=0, open_interest=10**6,
                         mark_price=3_000 * UNIT))
    # a: long 1 BTC at 60k with 600 margin; b: short 1 BTC at 60k with 1500 margin
    l2.open_position(addr(a), 1, Position(size=10**8, cost=60_000 * UNIT, margin=600 * UNIT, funding_snapshot=0))
    l2.open_position(addr(b), 1, Position(size=-10**8, cost=-60_000 * UNIT, margin=1_500 * UNIT, funding_snapshot=0))
    # b is also long ETH; c has no position
    l2.open_position(addr(b), 2, Position(size=2 * 10**6, cost=6_000 * UNIT, margin=100 * UNIT, funding_snapshot=0))
    # the mark moves: BTC 60.5k (a +500, b -500), funding paid by longs; the escape
    # pays at the mark (market leaf word 6), not at the oracle price (61k here)
    l2.set_market(Market(1, oracle_price=61_000 * UNIT, oracle_time_ms=2, funding_index=7 * 10**12, open_interest=10**8,
                         mark_price=60_500 * UNIT))
    l2.set_market(Market(2, oracle_price=2_950 * UNIT, oracle_time_ms=2, funding_index=3 * 10**12, open_interest=2 * 10**6,
                         mark_price=2_950 * UNIT))
    cp = l2.checkpoint()
    env.propose(cp)
    env.travel(CHALLENGE)
    return l2, cp


def test_forced_withdrawal_served_by_checkpoint(env: Env) -> None:
    a = env.users[0]
    l2, cp = _forced_setup(env)
    idx = env.force_withdraw(a, 250 * UNIT)
    info = env.bridge.functions.getForcedRequest(idx).call()
    assert info[0] == a and info[3] == GRACE and not info[4] and not info[5] and info[6] == 2
    with pytest.raises(Reverted):  # the fee is exact
        env.send(env.bridge.functions.forceWithdraw(1), env.users[1], value=0)
    with pytest.raises(Reverted):
        env.send(env.bridge.functions.forceWithdraw(0), env.users[1], value=TEST_PRESET.forced_fee)
    with pytest.raises(Reverted):  # within the grace
        env.send(env.bridge.functions.freeze(idx), env.users[5])
    l2.sync_inbox(env)
    cp2 = l2.checkpoint()
    assert cp2.withdrawals[0].amount == 250 * UNIT
    env.propose(cp2)
    env.travel(GRACE)
    assert env.bridge.functions.forcedGraceLeft(idx).call() == 0
    assert not env.bridge.functions.canFreeze(idx).call()
    with pytest.raises(Reverted):  # freeze while the request is served by a live output
        env.send(env.bridge.functions.freeze(idx), env.users[5])
    assert env.status()["open_forced_requests"] == 1  # covered, not yet served
    env.travel(CHALLENGE)
    before = env.balance(a)
    claim(env, cp2, 2, cp2.withdrawals[0])
    assert env.balance(a) - before == 250 * UNIT
    info = env.bridge.functions.getForcedRequest(idx).call()
    assert info[4] and info[5]
    assert env.status()["open_forced_requests"] == 0
    env.force_withdraw(a, 1)
    assert env.status()["open_forced_requests"] == 1
    # the fees stay in the bridge
    assert env.bridge.functions.eth_owed(env.proposer).call() == 0
    assert env.bridge.functions.forced_fees_held().call() == 2 * TEST_PRESET.forced_fee


def test_freeze_escape_refund(env: Env) -> None:
    """The operator stops: a forced request goes uncovered, a third party
    freezes, every account escapes with what the last final state gives it,
    the sum paid never exceeds the bridge's balance, undelivered deposits are
    refunded, and nothing can be taken twice."""
    a, b, c, d = env.users[:4]
    l2, cp = _forced_setup(env)
    # a pending (never final) output: the L2 took more since; it must not count
    l2.withdraw(addr(c), 100 * UNIT)
    pending = l2.checkpoint()
    env.propose(pending)
    env.deposit(d, 77 * UNIT)          # never taken by the L2
    env.deposit(a, 5 * UNIT)           # never taken either
    idx = env.force_withdraw(c, 50 * UNIT)
    assert env.bridge.functions.forcedGraceLeft(idx).call() == GRACE
    with pytest.raises(Reverted):
        env.send(env.bridge.functions.freeze(idx), env.users[5])
    env.travel(GRACE)
    assert env.bridge.functions.canFreeze(idx).call()
    with pytest.raises(Reverted):  # not a forced request
        env.send(env.bridge.functions.freeze(idx - 1), env.users[5])
    with pytest.raises(Reverted):  # escape before the freeze
        register_escape(env, cp, a)
    r = env.send(env.bridge.functions.freeze(idx), env.users[5])
    ev = env.bridge.events.Frozen().process_receipt(r, errors=DISCARD)[0]["args"]
    assert ev["output_index"] == 1 and ev["inbox_count"] == 3
    # set aside: the deposits output 1 never took (77 + 5); output 1 committed no withdrawals
    assert ev["reserved_deposits"] == 82 * UNIT and ev["reserved_withdrawals"] == 0
    bridge_balance = env.balance(env.d.bridge)
    assert ev["escape_pool"] == bridge_balance - 82 * UNIT
    st = env.status()
    assert st["frozen"] and st["last_final_output"] == 1 and st["escape_pool"] == ev["escape_pool"]
    # frozen: no proposals, deposits or forced requests; the pending output never finalises
    for call, sender, value in ((env.bridge.functions.propose(3, 10, pending.fields.as_arg(), 0, pending.data), env.proposer, 0),
                                (env.bridge.functions.deposit(a, UNIT), a, 0),
                                (env.bridge.functions.forceWithdraw(UNIT), env.users[6], TEST_PRESET.forced_fee),
                                (env.bridge.functions.forceClose(1), env.users[6], TEST_PRESET.forced_fee),
                                (env.bridge.functions.freeze(idx), env.users[5], 0)):
        with pytest.raises(Reverted):
            env.send(call, sender, value)
    env.travel(CHALLENGE // 10)
    assert not env.bridge.functions.isFinal(2).call()
    assert env.bridge.functions.getOutput(2).call()[2] == 2**256 - 1
    with pytest.raises(Reverted):  # escape with a proof against a non-final root
        register_escape(env, pending, c)

    state = State.from_tables(cp.state_tables)
    markets = MARKET_SCALES
    expected = {who: compute_escape_amount(state, addr(who), markets) for who in (a, b, c)}
    # a: 400 free + (600 + 500 - 7 funding) ; b: 400 free + (1500 - 500 + 7) + (100 - 100 - 6)->0 floored
    assert expected == {a: 1_493 * UNIT, b: 1_407 * UNIT, c: 300 * UNIT}
    for who in (a, b):
        r = register_escape(env, cp, who, sender=env.users[5])  # anyone can run the exit for the account
        ev = env.bridge.events.EscapeRegistered().process_receipt(r, errors=DISCARD)[0]["args"]
        assert ev["owed"] == expected[who]
        with pytest.raises(Reverted):  # registered once
            register_escape(env, cp, who)
        with pytest.raises(Reverted):  # paid only after the window
            claim_escape(env, who)
    assert env.status()["total_registered"] == expected[a] + expected[b]
    with pytest.raises(ValueError):  # d never reached the L2: no account leaf to prove
        register_escape(env, cp, d)
    end_escape_window(env)
    with pytest.raises(Reverted):  # c registers too late
        register_escape(env, cp, c)
    with pytest.raises(Reverted):  # and so is not paid
        claim_escape(env, c)
    paid_total = 0
    for who in (a, b):
        before = env.balance(who)
        assert env.bridge.functions.escapeInfo(who).call()[3] == expected[who]  # the pool covers everyone
        assert claim_escape(env, who, sender=env.users[5]) == expected[who]
        assert env.balance(who) - before == expected[who]
        paid_total += expected[who]
        with pytest.raises(Reverted):  # double escape
            claim_escape(env, who)
    # refunds of the deposits the last final output did not take
    before_d, before_a = env.balance(d), env.balance(a)
    env.send(env.bridge.functions.refundDeposit(3, d, 77 * UNIT), env.users[5])
    env.send(env.bridge.functions.refundDeposit(4, a, 5 * UNIT), env.users[5])
    assert env.balance(d) - before_d == 77 * UNIT and env.balance(a) - before_a == 5 * UNIT
    for args in ((3, d, 77 * UNIT), (0, a, 1_000 * UNIT), (4, a, 6 * UNIT), (5, c, 50 * UNIT), (6, d, 1)):
        with pytest.raises(Reverted):  # twice, taken by the L2, wrong amount, a forced request, beyond the inbox
            env.send(env.bridge.functions.refundDeposit(*args), env.users[5])
    paid_total += 82 * UNIT
    assert env.balance(env.d.bridge) == bridge_balance - paid_total
    assert env.reserves() == {"unclaimed_withdrawals": 0, "refundable_deposits": 0, "escape_unpaid": 0}
    assert env.bridge.functions.total_escaped().call() == expected[a] + expected[b]
    # what stays: c's unregistered 300 and b's ETH loss (the final state holds deposits taken - withdrawn)
    assert env.balance(env.d.bridge) == 3_300 * UNIT - (1_493 + 1_407) * UNIT


def test_escape_rejects_forged_proofs(env: Env) -> None:
    a, b = env.users[0], env.users[1]
    l2, cp = _forced_setup(env)
    idx = env.force_withdraw(a, UNIT)
    env.travel(GRACE)
    env.send(env.bridge.functions.freeze(idx), env.users[5])
    from l1_bridge.proofs import escape_args
    args = list(escape_args(cp.tree, addr(b), cp.fields, MARKET_SCALES))
    account, fields, account_value, aproof, positions = args
    pos = [list(p) for p in positions]

    def attempt(**kw):
        x = dict(account=account, fields=fields, account_value=account_value, aproof=aproof,
                 positions=[tuple(p) for p in pos])
        x.update(kw)
        with pytest.raises(Reverted):
            env.send(env.bridge.functions.registerEscape(x["account"], x["fields"], x["account_value"], x["aproof"],
                                                 x["positions"]), env.users[5])

    def bump(value: bytes, word: int, delta: int) -> bytes:
        w = int.from_bytes(value[32 * word:32 * word + 32], "big", signed=True) + delta
        return value[:32 * word] + w.to_bytes(32, "big", signed=True) + value[32 * word + 32:]

    attempt(account_value=bump(account_value, 0, 1))       # inflated collateral
    attempt(account_value=account_value[:32])               # truncated leaf
    attempt(account=a)                                      # b's proof for a
    attempt(positions=[tuple(pos[0])])                      # a market left out (hides a losing position)
    hidden = list(pos[1]); hidden[0] = False                # claim "no position" with an inclusion proof
    attempt(positions=[tuple(pos[0]), tuple(hidden)])
    richer = list(pos[0]); richer[1] = bump(richer[1], 1, -1)
    attempt(positions=[tuple(richer), tuple(pos[1])])       # cost lowered by one unit
    price = list(pos[0]); price[3] = bump(price[3], 0, 10**9)
    attempt(positions=[tuple(price), tuple(pos[1])])        # market price raised
    swapped = [tuple(pos[1]), tuple(pos[0])]
    attempt(positions=swapped)                              # markets out of order
    short = list(aproof); short[1] = short[1][:-1]
    attempt(aproof=tuple(short))                            # truncated proof
    other = list(aproof); other[0] = other[0] | (1 << 200)
    attempt(aproof=tuple(other))                            # bitmap that does not match the siblings
    attempt(fields=fields_for(cp, state_root=b"\x33" * 32).as_arg())
    # and the honest call still works
    register_escape(env, cp, b)


def test_freeze_with_no_final_output_uses_genesis(env: Env) -> None:
    """Frozen before any output finalised: every deposit is refundable."""
    a = env.users[0]
    env.deposit(a, 9 * UNIT)
    idx = env.force_withdraw(a, UNIT)
    env.travel(GRACE)
    env.send(env.bridge.functions.freeze(idx), env.users[5])
    assert env.bridge.functions.frozen_output().call() == 0
    before = env.balance(a)
    env.send(env.bridge.functions.refundDeposit(0, a, 9 * UNIT), a)
    assert env.balance(a) - before == 9 * UNIT


def test_deleted_cover_reopens_freeze(env: Env) -> None:
    """A request covered only by an output the challenger deletes is uncovered again (after a fresh grace)."""
    a = env.users[0]
    l2 = L2()
    env.deposit(a, 10 * UNIT)
    idx = env.force_withdraw(a, UNIT)
    l2.sync_inbox(env)
    cp = l2.checkpoint()
    env.propose(cp)
    env.travel(GRACE)
    assert not env.bridge.functions.canFreeze(idx).call()
    env.send(env.bridge.functions.deleteOutputs(1), env.challenger)
    assert not env.bridge.functions.canFreeze(idx).call()  # a fresh grace first (test_bridge_attacks)
    assert env.bridge.functions.forcedGraceLeft(idx).call() == GRACE
    env.travel(GRACE)
    assert env.bridge.functions.canFreeze(idx).call()
    env.send(env.bridge.functions.freeze(idx), env.users[5])


def test_events_and_views(env: Env) -> None:
    assert env.bridge.functions.CHALLENGE_PERIOD().call() == CHALLENGE
    assert env.bridge.functions.FORCED_GRACE().call() == GRACE
    assert env.bridge.functions.marketCount().call() == 2
    assert env.bridge.functions.market_ids(1).call() == 2
    assert env.bridge.functions.OUTPUT_VERSION().call() == 0
    info = env.bridge.functions.getOutput(0).call()
    assert info[4] and info[3] == 0  # genesis is final
    with pytest.raises(Reverted):
        env.bridge.functions.getForcedRequest(0).call()


def test_a_deployment_lists_at_most_the_markets_the_bridge_holds(env: Env, monkeypatch) -> None:
    """The one-step's witness bounds (ScheduledCancelAll, the vault step) are
    chosen above the bridge's market limit, so no deployment can reach them:
    a ninth market is refused before anything is deployed, with the reason."""
    from l1_bridge import deploy as deploy_module
    from l1_bridge.deploy import BRIDGE_MAX_MARKETS, MarketConfig, deploy
    from sequencer.core import markets as l2_markets
    assert env.bridge.functions.MAX_MARKETS().call() == BRIDGE_MAX_MARKETS
    nonce = env.w3.eth.get_transaction_count(env.accounts[0])
    too_many = [MarketConfig(i, 10**8, 10**14) for i in range(1, BRIDGE_MAX_MARKETS + 2)]
    with pytest.raises(ValueError, match="bridge's market list has 9 markets; a deployment lists at most 8"):
        deploy(env.w3, "devnet", markets=too_many)
    wide_table = {i: l2_markets.DEVNET_MARKETS[1] for i in range(1, BRIDGE_MAX_MARKETS + 2)}
    monkeypatch.setitem(l2_markets.MARKET_TABLES, "devnet", wide_table)
    with pytest.raises(ValueError, match="the devnet market table has 9 markets"):
        deploy_module.deploy(env.w3, "devnet", markets=too_many[:2])
    monkeypatch.setitem(l2_markets.MARKET_TABLES, "devnet", l2_markets.DEVNET_MARKETS)
    from sequencer.core import presets
    monkeypatch.setitem(presets.PRESETS, "devnet", msgspec.structs.replace(presets.DEVNET, max_open_triggers=22))
    with pytest.raises(ValueError, match="allows 22 pending triggers per account"):
        deploy_module.deploy(env.w3, "devnet", markets=too_many[:2])
    assert env.w3.eth.get_transaction_count(env.accounts[0]) == nonce  # nothing was sent


@pytest.mark.parametrize("preset", ["production", "devnet"])
def test_deploy_presets(preset: str, tmp_path) -> None:
    from bridge_env import make_chain
    from l1_bridge.deploy import PRESETS, Deployment, MarketConfig, deploy, load_artifact
    w3, _ = make_chain()
    out = tmp_path / "deployment.json"
    d = deploy(w3, preset, markets=[MarketConfig(1, 10**8, 10**14)], out=out)
    assert Deployment.load(out) == d
    p = PRESETS[preset]
    bridge = w3.eth.contract(address=d.bridge, abi=load_artifact("bridge")[0])
    token = w3.eth.contract(address=d.token, abi=load_artifact("token")[0])
    assert bridge.functions.TOKEN().call() == d.token
    assert token.functions.decimals().call() == 6
    assert (bridge.functions.CHALLENGE_PERIOD().call(), bridge.functions.FORCED_GRACE().call()) == \
        (p.challenge_period, p.forced_grace)
    assert bridge.functions.PROPOSER().call() == w3.eth.accounts[0]
    assert bridge.functions.CHALLENGER().call() == w3.eth.accounts[1]
    assert bridge.functions.getOutput(0).call()[0].hex() == d.genesis_output_root[2:]
    with pytest.raises(Reverted):  # the faucet is capped
        token.functions.faucet(10**12 + 1).call({"from": w3.eth.accounts[2]})
