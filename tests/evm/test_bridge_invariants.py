"""The bridge against an adversarial operator and adversarial users, as
Hypothesis-driven call sequences on py-evm.

The operator censors (proposes without taking the inbox), withholds (lets the
clock run), proposes late, posts forged outputs the challenger deletes, has
honest outputs deleted by a false positive and posts them again.  Users
deposit, withdraw, open long/short pairs that the price moves into bad debt,
spam forced withdrawals and forced closes, freeze when they can, and race
their escapes, claims and refunds in any order.  The L2 is a model built on
the real state, commitment and tree code (bridge_env.L2).

After every step:
- conservation: the bridge's token balance == deposited - claimed - escaped -
  refunded, and the contract's totals agree with the model;
- coverage: the balance covers what the contract has set aside (unclaimed
  committed withdrawals + refundable deposits + escapes still to pay), and the
  contract's reserves equal the model's;
- before a freeze, the balance also covers the whole last final L2 state:
  unclaimed final withdrawals + deposits it has not taken + its net value;
- every call the model says must fail does fail, and vice versa (freeze
  included: fresh grace after a deletion, no cap on forced requests).
After a freeze every account is paid exactly owed * min(pool, registered) //
registered, whatever the order of the calls, and the dust is below one unit
per registered account.
"""
from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test
from msgspec.structs import replace

from bridge_env import (L2, MARKET_SCALES, TEST_PRESET, UNIT, Checkpoint, Env, ForcedCloseEntry, Reverted, addr,  # noqa: F401
                        bridge_session, claim, claim_escape, register_escape)
from l1_bridge.proofs import compute_escape_amount, compute_position_equity, encode_withdrawal
from prover.hashing import keccak
from prover.output import compute_withdrawals_root
from sequencer.core.records import Deposit, ForcedWithdrawal
from sequencer.core.state import Market, Position, State, Withdrawal

pytestmark = [pytest.mark.evm, pytest.mark.slow]

CHALLENGE = TEST_PRESET.challenge_period
GRACE = TEST_PRESET.forced_grace
FEE = TEST_PRESET.forced_fee
N_USERS = 5
PRICE = 60_000 * UNIT
SIZE = 10**6  # 0.01 BTC: 600 units of notional at 60,000


STATS: dict[str, int] = {}
"""Successful / rejected calls per kind over the run (printed; shows the sequences reach the escape hatch)."""


def count(kind: str) -> None:
    STATS[kind] = STATS.get(kind, 0) + 1


def net_value(state: State) -> int:
    """Free collateral plus the signed equity of every position at its
    market's mark plus the insurance fund: what the L2 holds, all of which
    came through the bridge (rules v3: a forced close hands the position to
    the fund at the mark, the fund paying any bad debt, or is not made: bad
    debt is never created; the fund's own positions count like any)."""
    assert_balanced(state)
    scales = {m.id: m for m in MARKET_SCALES}
    total = state.globals.insurance_fund + sum(a.collateral for a in state.accounts.values())
    for (_, market), p in state.positions.items():
        m = scales[market]
        total += compute_position_equity(p, state.markets[market], m.size_scale, m.funding_scale)
    return total


def assert_balanced(state: State) -> None:
    """Every lot an output's state holds has its opposite (no close leaves one
    side open for a later price to create money), and the open interest counts
    the longs."""
    sizes = [p.size for (_, market), p in state.positions.items() if market == 1]
    assert sum(sizes) == 0, "a position without its opposite"
    open_interest = state.markets[1].open_interest if 1 in state.markets else 0
    assert open_interest == sum(s for s in sizes if s > 0), "the open interest is not the longs' sizes"


class BridgeMachine(RuleBasedStateMachine):
    env: Env = None  # set by the test before running

    @initialize()
    def setup(self) -> None:
        env = self.env
        self.snapshot = env.tester.take_snapshot()
        self.users = env.users[:N_USERS]
        self.l2 = L2()
        self.l2.set_market(Market(1, oracle_price=PRICE, oracle_time_ms=1, mark_price=PRICE))
        self.outputs: list[tuple[Checkpoint | None, int]] = [(None, 0)]  # (checkpoint, proposed_at); 0 = genesis
        self.deleted: list[Checkpoint] = []      # honest outputs a false positive deleted, to post again
        self.deposits: dict[int, tuple[str, int]] = {}
        self.forced: dict[int, int] = {}         # inbox index -> deadline
        self.regrace_at = 0
        self.regrace_below = 0
        self.records: list = []
        self.claimed: set[bytes] = set()
        self.claimed_amount = 0
        self.registered: dict[str, int] = {}
        self.escaped: set[str] = set()
        self.refunded: set[int] = set()
        self.paid = 0
        self.deposited = 0
        self.fees = 0
        self.frozen_output: int | None = None
        self.pool = 0
        self.start_balance = env.balance(env.d.bridge)
        self.start_eth = env.w3.eth.get_balance(env.d.bridge)
        for u in range(N_USERS):  # everybody starts with a deposit and a withdrawal in output 1
            self.deposit(u, 1_000)
        self.l2.sync_inbox(env, upto=len(self.records), records=self.records)
        for u in range(N_USERS):
            self.l2_withdraw(u, 100)
        self.l2_open_pair(0, 1, 100)
        self.l2_move_price(-30)  # user 0's long is 80 units under water: bad debt from output 1 on
        self.propose_honest(0)
        self.env.travel(CHALLENGE)  # output 1 is final: a freeze has a state to escape from

    # --- model helpers ---------------------------------------------------
    def now(self) -> int:
        return self.env.now()

    @property
    def frozen(self) -> bool:
        return self.frozen_output is not None

    def is_final(self, i: int, at: int) -> bool:
        if self.frozen:
            return i <= self.frozen_output
        return i == 0 or at >= self.outputs[i][1] + CHALLENGE

    def last_final(self, at: int) -> int:
        if self.frozen:
            return self.frozen_output
        return max(i for i in range(len(self.outputs)) if self.is_final(i, at))

    def output_inbox_count(self, i: int) -> int:
        cp = self.outputs[i][0]
        return 0 if cp is None else cp.fields.inbox_count

    def live_inbox_count(self) -> int:
        return self.output_inbox_count(len(self.outputs) - 1)

    def deadline(self, index: int) -> int:
        d = self.forced[index]
        return max(d, self.regrace_at + GRACE) if index < self.regrace_below else d

    def unclaimed(self, upto: int) -> int:
        committed = sum(cp.withdrawals_total for cp, _ in self.outputs[1:upto + 1])
        return committed - self.claimed_amount

    def not_taken(self, count: int) -> int:
        return sum(amount for i, (_, amount) in self.deposits.items() if i >= count and i not in self.refunded)

    def expect(self, ok: bool, fn, *args, **kw):
        name = getattr(fn, "__name__", "call")
        if ok:
            count(name)
            return fn(*args, **kw)
        try:
            fn(*args, **kw)
        except Reverted + (ValueError,):
            count(name + " rejected")
            return None
        raise AssertionError(f"{name} should have failed")

    def frozen_state(self) -> tuple[Checkpoint | None, State]:
        cp = self.outputs[self.frozen_output][0]
        return cp, (State() if cp is None else State.from_tables(cp.state_tables))

    def escape_due(self, who: str) -> int:
        total = sum(self.registered.values())
        return self.registered[who] * min(self.pool, total) // total if total else 0

    def window_over(self, at: int) -> bool:
        return at >= self.env.bridge.functions.escape_deadline().call()

    # --- users: the inbox --------------------------------------------------------------------
    @rule(u=st.integers(0, N_USERS - 1), amount=st.integers(1, 500))
    def deposit(self, u: int, amount: int) -> None:
        who = self.users[u]
        r = self.expect(not self.frozen, self.env.deposit, who, amount * UNIT)
        if r is not None:
            assert r == len(self.records)
            self.deposits[r] = (who, amount * UNIT)
            self.records.append(Deposit(r, addr(who), amount * UNIT))
            self.deposited += amount * UNIT

    @rule(u=st.integers(0, N_USERS - 1), amount=st.integers(1, 1000), times=st.sampled_from([1, 1, 3]))
    def force_withdraw(self, u: int, amount: int, times: int) -> None:
        """Forced withdrawals, spam included: no cap and no slot per account."""
        who = self.users[u]
        for _ in range(times):
            at = self.now() + 1
            r = self.expect(not self.frozen, self.env.force_withdraw, who, amount * UNIT)
            if r is not None:
                assert r == len(self.records)
                self.forced[r] = at + GRACE
                self.records.append(ForcedWithdrawal(r, addr(who), amount * UNIT))
                self.fees += FEE

    @rule(u=st.integers(0, N_USERS - 1))
    def force_close(self, u: int) -> None:
        who = self.users[u]
        at = self.now() + 1
        r = self.expect(not self.frozen, self.env.force_close, who, 1)
        if r is not None:
            assert r == len(self.records)
            self.forced[r] = at + GRACE
            self.records.append(ForcedCloseEntry(r, addr(who), 1))
            self.fees += FEE

    # --- the L2 --------------------------------------------------------------------------------
    @rule(u=st.integers(0, N_USERS - 1), amount=st.integers(1, 300))
    def l2_withdraw(self, u: int, amount: int) -> None:
        a = self.l2.state.accounts.get(addr(self.users[u]))
        if a is not None and a.collateral >= amount * UNIT:
            self.l2.withdraw(addr(self.users[u]), amount * UNIT)

    @rule(u=st.integers(0, N_USERS - 1), v=st.integers(0, N_USERS - 1), margin=st.integers(10, 300))
    def l2_open_pair(self, u: int, v: int, margin: int) -> None:
        """u long and v short 0.01 BTC at the current price, `margin` each."""
        long, short = addr(self.users[u]), addr(self.users[v])
        accounts, positions = self.l2.state.accounts, self.l2.state.positions
        if (u == v or any(accounts.get(x) is None or accounts[x].collateral < margin * UNIT for x in (long, short))
                or (long, 1) in positions or (short, 1) in positions):
            return
        price = self.l2.state.markets[1].mark_price
        cost = SIZE * price // 10**8
        self.l2.open_position(long, 1, Position(size=SIZE, cost=cost, margin=margin * UNIT))
        self.l2.open_position(short, 1, Position(size=-SIZE, cost=-cost, margin=margin * UNIT))

    @rule(pct=st.integers(-40, 40))
    def l2_move_price(self, pct: int) -> None:
        m = self.l2.state.markets[1]
        price = max(UNIT, m.mark_price * (100 + pct) // 100)
        self.l2.set_market(replace(m, oracle_price=price, oracle_time_ms=m.oracle_time_ms + 1, mark_price=price))

    def l2_take_inbox(self, upto: int) -> None:
        for record in self.records[self.l2.state.globals.inbox_count:upto]:
            self.l2.apply_inbox(record)

    # --- the operator ----------------------------------------------------------------------------
    @rule(take=st.sampled_from([0, 0, 1, 2, 99]))
    def propose_honest(self, take: int) -> None:
        """An honest output (an output a false positive deleted goes first); take=0 censors the inbox."""
        if self.deleted:
            cp = self.deleted[0]
        else:
            self.l2_take_inbox(min(len(self.records), self.l2.state.globals.inbox_count + take))
            cp = self.l2.checkpoint()
        r = self.expect(not self.frozen, self.env.propose, cp)
        if r is None:
            if not self.deleted:
                self.l2.l2_block -= 1  # not posted: the model's next checkpoint reuses the number
                self.l2.withdrawals_from -= len(cp.withdrawals)
            return
        if self.deleted:
            self.deleted.pop(0)
        ts = self.env.w3.eth.get_block(r["blockNumber"])["timestamp"]
        self.outputs.append((cp, ts))

    def delete_from(self, index: int) -> None:
        covered = self.live_inbox_count()
        r = self.env.send(self.env.bridge.functions.deleteOutputs(index), self.env.challenger)
        deleted = [cp for cp, _ in self.outputs[index:]]
        del self.outputs[index:]
        if self.live_inbox_count() < covered:
            self.regrace_at = self.env.w3.eth.get_block(r["blockNumber"])["timestamp"]
            self.regrace_below = max(self.regrace_below, covered)
        self.env.send(self.env.bridge.functions.depositBond(), self.env.proposer, value=TEST_PRESET.proposer_bond)
        return deleted

    @rule(u=st.integers(0, N_USERS - 1))
    def propose_forged(self, u: int) -> None:
        """A wrong root (a withdrawal nobody made, a withdrawals total to match); the challenger deletes it."""
        if self.frozen or self.deleted:
            return
        fake = Withdrawal(10**6, addr(self.users[u]), 10**9 * UNIT, 0)
        base = self.l2.checkpoint()
        self.l2.l2_block -= 1
        self.l2.withdrawals_from -= len(base.withdrawals)
        fields = base.fields._replace(withdrawals_root=compute_withdrawals_root([encode_withdrawal(fake)]))
        cp = Checkpoint(fields, base.l2_block, base.data, [fake], base.tree, base.state_tables)
        r = self.env.propose(cp)
        self.outputs.append((cp, self.env.w3.eth.get_block(r["blockNumber"])["timestamp"]))
        self.delete_from(len(self.outputs) - 1)
        count("forged output deleted")

    @rule()
    def false_positive(self) -> None:
        """The challenger deletes the newest honest output while it is pending; it must be posted again."""
        at = self.now() + 1
        i = len(self.outputs) - 1
        if self.frozen or i == 0 or self.is_final(i, at):
            return
        self.deleted = self.delete_from(i) + self.deleted
        count("honest output deleted")

    @rule(take=st.sampled_from([0, 1, 99]))
    def checkpoint_and_wait(self, take: int) -> None:
        """The operator posts and the challenge period passes."""
        self.propose_honest(take)
        self.env.travel(CHALLENGE)

    @rule(dt=st.sampled_from([1, 30, GRACE, CHALLENGE // 2, CHALLENGE]))
    def travel(self, dt: int) -> None:
        """The operator withholds (or proposes late: the next proposal comes after this)."""
        self.env.travel(dt)

    # --- freeze -------------------------------------------------------------------------------
    @rule(data=st.data())
    def freeze(self, data) -> None:
        if not self.forced:
            return
        self.freeze_index(data.draw(st.sampled_from(sorted(self.forced))))

    @rule()
    def freeze_when_possible(self) -> None:
        """A user watches the clocks and freezes on the first request past its grace and uncovered."""
        at = self.now() + 1
        live = self.live_inbox_count()
        ready = [i for i in sorted(self.forced) if i >= live and at >= self.deadline(i)]
        if ready and not self.frozen:
            self.freeze_index(ready[0])

    @rule(u=st.integers(0, N_USERS - 1), ask=st.booleans())
    def operator_stops(self, u: int, ask: bool) -> None:
        """The operator goes silent for a grace (after user u asked for its money,
        if `ask`); a user freezes if a request is left uncovered."""
        if ask and not self.frozen:
            self.force_withdraw(u, 1, 1)
        self.env.travel(GRACE)
        self.freeze_when_possible()

    def freeze_index(self, index: int) -> None:
        at = self.now() + 1
        live = self.live_inbox_count()
        assert self.env.bridge.functions.getForcedRequest(index).call()[2] == self.deadline(index)
        assert self.env.bridge.functions.canFreeze(index).call() == (
            not self.frozen and self.now() >= self.deadline(index) and live <= index)
        ok = not self.frozen and at >= self.deadline(index) and live <= index
        balance = self.env.balance(self.env.d.bridge) - self.start_balance
        r = self.expect(ok, self.freeze_call, index)
        if r is None:
            return
        self.frozen_output = self.last_final(at)
        assert self.env.bridge.functions.frozen_output().call() == self.frozen_output
        reserved = self.unclaimed(self.frozen_output) + self.not_taken(self.output_inbox_count(self.frozen_output))
        self.pool = max(0, balance - reserved)
        assert self.env.status()["escape_pool"] == self.pool
        _, state = self.frozen_state()
        assert self.pool >= net_value(state), "the L2's money is not all there"

    def freeze_call(self, index: int):
        return self.env.send(self.env.bridge.functions.freeze(index), self.users[0])

    # --- withdrawals ----------------------------------------------------------------------------
    @rule(data=st.data(), valid=st.booleans())
    def claim_any(self, data, valid: bool) -> None:
        candidates = [(i, cp, w) for i, (cp, _) in enumerate(self.outputs) if cp is not None for w in cp.withdrawals]
        if valid:  # prefer one the model says is claimable
            at = self.now() + 1
            candidates = [c for c in candidates if self.is_final(c[0], at)
                          and keccak(encode_withdrawal(c[2])) not in self.claimed] or candidates
        if not candidates:
            return
        i, cp, w = data.draw(st.sampled_from(candidates))
        h = keccak(encode_withdrawal(w))
        ok = self.is_final(i, self.now() + 1) and h not in self.claimed
        before = self.env.balance(self.env.d.bridge)
        r = self.expect(ok, claim, self.env, cp, i, w)
        if r is not None:
            self.claimed.add(h)
            self.claimed_amount += w.amount
            self.paid += w.amount
            assert before - self.env.balance(self.env.d.bridge) == w.amount

    # --- escapes and refunds (racing, any order) ---------------------------------------------------
    @precondition(lambda self: self.frozen_output is not None)
    @rule(u=st.integers(0, N_USERS - 1))
    def register(self, u: int) -> None:
        who = self.users[u]
        cp, state = self.frozen_state()
        if cp is None or addr(who) not in state.accounts:
            return
        ok = who not in self.registered and not self.window_over(self.now() + 1)
        r = self.expect(ok, register_escape, self.env, cp, who, self.users[-1])
        if r is not None:
            self.registered[who] = compute_escape_amount(state, addr(who), MARKET_SCALES)
            assert self.env.bridge.functions.escape_owed(who).call() == self.registered[who]

    @precondition(lambda self: self.frozen_output is not None)
    @rule(u=st.integers(0, N_USERS - 1))
    def claim_escape(self, u: int) -> None:
        who = self.users[u]
        ok = who in self.registered and who not in self.escaped and self.window_over(self.now() + 1)
        before = self.env.balance(who)
        paid = self.expect(ok, claim_escape, self.env, who, self.users[-1])
        if paid is not None:
            self.escaped.add(who)
            assert paid == self.escape_due(who) == self.env.balance(who) - before
            self.paid += paid
            if self.pool < sum(self.registered.values()):
                count("escape paid a fraction (bad debt)")

    @precondition(lambda self: self.frozen_output is not None)
    @rule(data=st.data())
    def everyone_exits(self, data) -> None:
        """Everyone registers (in a drawn order), the window ends, then claims,
        refunds and escape payments race in another drawn order."""
        self.exit_all(data.draw(st.permutations(range(N_USERS))), lambda calls: data.draw(st.permutations(calls)))

    def exit_all(self, register_order, shuffle) -> None:
        for u in register_order:
            if not self.window_over(self.now() + 1):
                self.register(u)
        self.env.travel_to(self.env.bridge.functions.escape_deadline().call())
        calls = [("escape", u) for u in range(N_USERS)]
        calls += [("refund", i) for i in sorted(self.deposits)
                  if i >= self.output_inbox_count(self.frozen_output) and i not in self.refunded]
        calls += [("claim", i, w) for i, (cp, _) in enumerate(self.outputs[:self.frozen_output + 1]) if cp
                  for w in cp.withdrawals if keccak(encode_withdrawal(w)) not in self.claimed]
        for call in shuffle(calls):
            if call[0] == "escape":
                self.claim_escape(call[1])
            elif call[0] == "refund":
                self.refund_index(call[1])
            else:
                cp = self.outputs[call[1]][0]
                self.expect(True, claim, self.env, cp, call[1], call[2])
                self.claimed.add(keccak(encode_withdrawal(call[2])))
                self.claimed_amount += call[2].amount
                self.paid += call[2].amount
        total = sum(self.registered.values())
        shared = min(self.pool, total)
        escaped = self.env.bridge.functions.total_escaped().call()
        assert escaped == sum(self.escape_due(w) for w in self.registered)
        assert 0 <= shared - escaped < max(1, len(self.registered)), "dust beyond one unit per account"
        assert self.env.reserves() == {"unclaimed_withdrawals": 0, "refundable_deposits": 0,
                                       "escape_unpaid": shared - escaped}
        count("everyone exited")

    def finish(self) -> None:
        """The end of every sequence: the operator stops for good, someone
        freezes, everybody exits (orders drawn from the sequence's own history)."""
        if not self.frozen:
            self.operator_stops(0, True)
        if not self.frozen:  # a request covered by a live output: wait for the grace of a fresh one
            self.env.travel(CHALLENGE)
            self.operator_stops(1, True)
        assert self.frozen, "the operator stopped and the bridge could not be frozen"
        rng = random.Random(len(self.records) * 1_000_003 + self.paid)
        order = list(range(N_USERS))
        rng.shuffle(order)
        self.exit_all(order, lambda calls: rng.sample(calls, len(calls)))
        self.money_is_conserved()
        self.reserves_are_covered()

    @precondition(lambda self: self.frozen_output is not None)
    @rule(data=st.data())
    def refund(self, data) -> None:
        if not self.deposits:
            return
        self.refund_index(data.draw(st.sampled_from(sorted(self.deposits))))

    def refund_index(self, index: int) -> None:
        who, amount = self.deposits[index]
        ok = index >= self.output_inbox_count(self.frozen_output) and index not in self.refunded
        r = self.expect(ok, self.refund_call, index, who, amount)
        if r is not None:
            self.refunded.add(index)
            self.paid += amount

    def refund_call(self, index: int, who: str, amount: int):
        return self.env.send(self.env.bridge.functions.refundDeposit(index, who, amount), who)

    # --- invariants -------------------------------------------------------------------------------
    @invariant()
    def money_is_conserved(self) -> None:
        if not hasattr(self, "paid"):
            return
        assert self.paid <= self.deposited
        assert self.env.balance(self.env.d.bridge) - self.start_balance == self.deposited - self.paid
        # forced-request fees stay in the bridge: the proposer is never paid for them
        assert self.env.bridge.functions.forced_fees_held().call() == self.fees
        assert self.env.bridge.functions.eth_owed(self.env.proposer).call() == 0

    @invariant()
    def reserves_are_covered(self) -> None:
        if not hasattr(self, "paid"):
            return
        balance = self.env.balance(self.env.d.bridge) - self.start_balance
        res = self.env.reserves()
        at = self.now()
        last = self.last_final(at)
        assert res["unclaimed_withdrawals"] == self.unclaimed(last)
        if self.frozen:
            assert res["refundable_deposits"] == self.not_taken(self.output_inbox_count(last))
            total = sum(self.registered.values())
            if self.window_over(at):
                owed = sum(self.escape_due(w) for w in self.registered if w not in self.escaped)
                assert res["escape_unpaid"] >= owed
            else:
                assert res["escape_unpaid"] == self.pool - self.env.bridge.functions.total_escaped().call()
            assert self.env.status()["total_registered"] == total
        else:
            cp = self.outputs[last][0]
            state = State() if cp is None else State.from_tables(cp.state_tables)
            whole = self.unclaimed(last) + self.not_taken(self.output_inbox_count(last)) + net_value(state)
            assert balance >= whole
        assert balance >= res["unclaimed_withdrawals"] + res["refundable_deposits"] + res["escape_unpaid"]

    @invariant()
    def counts_agree(self) -> None:
        if not hasattr(self, "paid"):
            return
        assert self.env.bridge.functions.output_count().call() == len(self.outputs)

    def teardown(self) -> None:
        if getattr(self, "snapshot", None) is None:
            return
        try:
            if hasattr(self, "paid"):
                self.finish()
            b = self.env.bridge.functions
            assert b.total_deposited().call() == self.deposited
            assert b.total_claimed().call() + b.total_escaped().call() + b.total_refunded().call() == self.paid
            assert b.inbox_count().call() == len(self.records)
            assert b.frozen().call() == self.frozen
        finally:
            self.env.tester.revert_to_snapshot(self.snapshot)


def test_bridge_invariants(bridge_session: Env) -> None:
    BridgeMachine.env = bridge_session
    examples = int(os.environ.get("ISOROLL_BRIDGE_EXAMPLES", "8"))
    phases = [Phase.explicit, Phase.reuse, Phase.generate]
    if os.environ.get("ISOROLL_BRIDGE_SHRINK"):  # shrinking replays many chains: slow, opt in
        phases.append(Phase.shrink)
    run_state_machine_as_test(BridgeMachine, settings=settings(
        max_examples=examples, stateful_step_count=30, deadline=None, phases=phases, derandomize=True,
        suppress_health_check=list(HealthCheck)))
    print("bridge invariants, successful/rejected calls:", dict(sorted(STATS.items())))
    for kind in ("claim", "register_escape", "claim_escape", "freeze_call", "force_close"):
        assert STATS.get(kind, 0) > 0, f"the sequences never reached {kind}"
