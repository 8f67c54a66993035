"""Contract invariants under Hypothesis-driven call sequences on py-evm.

A state machine drives the bridge with deposits, honest checkpoints (from an
L2 model built on the real state/commitment/tree code), forged checkpoints
that the challenger deletes, time travel, claims (valid, early and repeated),
forced withdrawals, freeze attempts, escapes and refunds.  After every step:
- the bridge's token balance == deposited - claimed - escaped - refunded, and
  the total paid out never exceeds the total deposited;
- each withdrawal is paid at most once, each account escapes at most once,
  each deposit is refunded at most once;
- every call the model says must fail does fail (and vice versa);
- at the freeze, the bridge balance covers what the frozen state owes:
  every escape + every unclaimed withdrawal of a final output + every
  refundable deposit (DESIGN invariant 5).
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)

from bridge_env import (L2, MARKET_SCALES, TEST_PRESET, UNIT, Checkpoint, Env, Reverted, addr, bridge_session,  # noqa: F401
                        claim, escape)
from l1_bridge.proofs import OutputFields, compute_escape_amount, encode_withdrawal
from prover.hashing import keccak
from prover.output import compute_withdrawals_root
from sequencer.core.records import Deposit, ForcedWithdrawal
from sequencer.core.state import Market, Position, State, Withdrawal

pytestmark = [pytest.mark.evm, pytest.mark.slow]

CHALLENGE = TEST_PRESET.challenge_period
GRACE = TEST_PRESET.forced_grace
N_USERS = 5
PRICE = 60_000 * UNIT


STATS: dict[str, int] = {}
"""Successful calls per kind over the run (printed; shows the sequences reach the escape hatch)."""


def count(kind: str) -> None:
    STATS[kind] = STATS.get(kind, 0) + 1


class BridgeMachine(RuleBasedStateMachine):
    env: Env = None  # set by the test before running

    @initialize()
    def setup(self) -> None:
        env = self.env
        self.snapshot = env.tester.take_snapshot()
        self.users = env.users[:N_USERS]
        self.l2 = L2()
        self.l2.set_market(Market(1, oracle_price=PRICE, oracle_time_ms=1))
        self.outputs: list[tuple[Checkpoint | None, int]] = [(None, 0)]  # (checkpoint, proposed_at); 0 = genesis
        self.deposits: dict[int, tuple[str, int]] = {}
        self.forced: dict[int, tuple[str, int]] = {}   # inbox index -> (account, deadline)
        self.inbox_count = 0
        self.records: list[Deposit | ForcedWithdrawal] = []
        self.claimed: set[bytes] = set()
        self.escaped: set[str] = set()
        self.refunded: set[int] = set()
        self.paid = 0
        self.deposited = 0
        self.frozen_output: int | None = None
        self.start_balance = env.balance(env.d.bridge)
        for u in range(N_USERS):  # everybody starts with a deposit and a withdrawal in output 1
            self.deposit(u, 1_000)
        self.l2.sync_inbox(env, upto=self.inbox_count, records=self.records)
        for u in range(N_USERS):
            self.l2_withdraw(u, 100)
        self.propose_honest(0)

    # --- model helpers ---------------------------------------------------
    def now(self) -> int:
        return self.env.now()

    def is_final(self, i: int, at: int) -> bool:
        if self.frozen_output is not None:
            return i <= self.frozen_output
        return i == 0 or at >= self.outputs[i][1] + CHALLENGE

    def last_final(self, at: int) -> int:
        if self.frozen_output is not None:
            return self.frozen_output
        return max(i for i in range(len(self.outputs)) if self.is_final(i, at))

    def output_inbox_count(self, i: int) -> int:
        cp = self.outputs[i][0]
        return 0 if cp is None else cp.fields.inbox_count

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
        raise AssertionError(f"{getattr(fn, '__name__', fn)} should have failed")

    @property
    def frozen(self) -> bool:
        return self.frozen_output is not None

    # --- rules -------------------------------------------------------------
    @rule(u=st.integers(0, N_USERS - 1), amount=st.integers(1, 500))
    def deposit(self, u: int, amount: int) -> None:
        who = self.users[u]
        r = self.expect(not self.frozen, self.env.deposit, who, amount * UNIT)
        if r is not None:
            assert r == self.inbox_count
            self.deposits[r] = (who, amount * UNIT)
            self.records.append(Deposit(r, addr(who), amount * UNIT))
            self.inbox_count += 1
            self.deposited += amount * UNIT

    @rule(u=st.integers(0, N_USERS - 1), amount=st.integers(1, 300))
    def l2_withdraw(self, u: int, amount: int) -> None:
        a = self.l2.state.accounts.get(addr(self.users[u]))
        if a is not None and a.collateral >= amount * UNIT:
            self.l2.withdraw(addr(self.users[u]), amount * UNIT)

    @rule(u=st.integers(0, N_USERS - 1), margin=st.integers(1, 100))
    def l2_open_position(self, u: int, margin: int) -> None:
        who = addr(self.users[u])
        a = self.l2.state.accounts.get(who)
        if a is None or a.collateral < margin * UNIT or (who, 1) in self.l2.state.positions:
            return
        size = 10**5  # 0.001 BTC at the mark: equity == margin
        self.l2.open_position(who, 1, Position(size=size, cost=size * PRICE // 10**8, margin=margin * UNIT))

    @rule(take=st.sampled_from([0, 1, 2, 99]))
    def propose_honest(self, take: int) -> None:
        self.l2.sync_inbox(self.env, upto=min(self.inbox_count, self.l2.state.globals.inbox_count + take),
                           records=self.records)
        cp = self.l2.checkpoint()
        r = self.expect(not self.frozen, self.env.propose, cp)
        if r is None:
            self.l2.l2_block -= 1  # not posted: the model's next checkpoint reuses the number
            return
        ts = self.env.w3.eth.get_block(r["blockNumber"])["timestamp"]
        self.outputs.append((cp, ts))

    @rule(u=st.integers(0, N_USERS - 1), delete=st.booleans())
    def propose_forged(self, u: int, delete: bool) -> None:
        """A wrong root (a withdrawal nobody made); the challenger deletes it."""
        if self.frozen:
            return
        fake = Withdrawal(10**6, addr(self.users[u]), 10**9 * UNIT, 0)
        base = self.l2.checkpoint()  # current honest state, with a forged withdrawals root
        self.l2.l2_block -= 1
        self.l2.withdrawals_from -= len(base.withdrawals)
        fields = base.fields._replace(withdrawals_root=compute_withdrawals_root([encode_withdrawal(fake)]))
        cp = Checkpoint(fields, base.l2_block, base.data, [fake], base.tree, base.state_tables)
        self.env.propose(cp)
        index = len(self.outputs)
        self.env.send(self.env.bridge.functions.deleteOutputs(index), self.env.challenger)
        assert self.env.bridge.functions.output_count().call() == index
        self.env.send(self.env.bridge.functions.depositBond(), self.env.proposer, value=TEST_PRESET.proposer_bond)

    @rule(dt=st.sampled_from([1, 30, GRACE, CHALLENGE // 2, CHALLENGE]))
    def travel(self, dt: int) -> None:
        self.env.travel(dt)

    @rule(take=st.sampled_from([1, 99]))
    def checkpoint_and_wait(self, take: int) -> None:
        """The operator posts and the challenge period passes."""
        self.propose_honest(take)
        self.env.travel(CHALLENGE)

    @rule()
    def operator_stops(self) -> None:
        """The grace passes with no proposal; someone freezes on the oldest uncovered request."""
        self.env.travel(GRACE)
        live_count = self.output_inbox_count(len(self.outputs) - 1)
        uncovered = [i for i in sorted(self.forced) if i >= live_count]
        if uncovered and not self.frozen:
            self.freeze_index(uncovered[0])

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
            self.paid += w.amount
            assert before - self.env.balance(self.env.d.bridge) == w.amount

    @rule(u=st.integers(0, N_USERS - 1), amount=st.integers(1, 1000))
    def force_withdraw(self, u: int, amount: int) -> None:
        who = self.users[u]
        at = self.now() + 1
        final_count = self.output_inbox_count(self.last_final(at))
        open_ = {i: v for i, v in self.forced.items() if i >= final_count}
        ok = (not self.frozen and all(a != who for a, _ in open_.values())
              and len(open_) < TEST_PRESET.max_open_forced)
        r = self.expect(ok, self.env.force_withdraw, who, amount * UNIT)
        if r is not None:
            assert r == self.inbox_count
            self.forced[r] = (who, at + GRACE)
            self.records.append(ForcedWithdrawal(r, addr(who), amount * UNIT))
            self.inbox_count += 1

    @rule(data=st.data())
    def freeze(self, data) -> None:
        if not self.forced:
            return
        self.freeze_index(data.draw(st.sampled_from(sorted(self.forced))))

    def freeze_index(self, index: int) -> None:
        at = self.now() + 1
        live_count = self.output_inbox_count(len(self.outputs) - 1)
        ok = not self.frozen and at >= self.forced[index][1] and live_count <= index
        assert self.env.bridge.functions.canFreeze(index).call() == (
            not self.frozen and self.now() >= self.forced[index][1] and live_count <= index)
        r = self.expect(ok, self.freeze_call, index)
        if r is not None:
            self.frozen_output = self.last_final(at)
            assert self.env.bridge.functions.frozen_output().call() == self.frozen_output
            self.check_coverage()

    def freeze_call(self, index: int):
        return self.env.send(self.env.bridge.functions.freeze(index), self.users[0])

    def refund_call(self, index: int, who: str, amount: int):
        return self.env.send(self.env.bridge.functions.refundDeposit(index, who, amount), who)

    def frozen_state(self) -> tuple[Checkpoint | None, State]:
        cp = self.outputs[self.frozen_output][0]
        return cp, (State() if cp is None else State.from_tables(cp.state_tables))

    def check_coverage(self) -> None:
        """DESIGN invariant 5 at the frozen root."""
        cp, state = self.frozen_state()
        owed = sum(compute_escape_amount(state, a, MARKET_SCALES) for a in state.accounts)
        unclaimed = sum(w.amount for i, (c, _) in enumerate(self.outputs[:self.frozen_output + 1]) if c
                        for w in c.withdrawals if keccak(encode_withdrawal(w)) not in self.claimed)
        frozen_count = self.output_inbox_count(self.frozen_output)
        refundable = sum(amount for i, (_, amount) in self.deposits.items() if i >= frozen_count)
        assert self.env.balance(self.env.d.bridge) - self.start_balance >= owed + unclaimed + refundable

    @precondition(lambda self: self.frozen_output is not None)
    @rule(u=st.integers(0, N_USERS - 1))
    def escape_user(self, u: int) -> None:
        who = self.users[u]
        cp, state = self.frozen_state()
        if cp is None or addr(who) not in state.accounts:
            return
        ok = who not in self.escaped
        expected = compute_escape_amount(state, addr(who), MARKET_SCALES)
        before = self.env.balance(who)
        r = self.expect(ok, escape, self.env, cp, who, self.users[-1])
        if r is not None:
            self.escaped.add(who)
            assert self.env.balance(who) - before == expected
            self.paid += expected

    @precondition(lambda self: self.frozen_output is not None)
    @rule()
    def everyone_exits(self) -> None:
        for u in range(N_USERS):
            self.escape_user(u)
        for index in sorted(self.deposits):
            if index >= self.output_inbox_count(self.frozen_output) and index not in self.refunded:
                self.refund_index(index)

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

    # --- invariants ------------------------------------------------------------
    @invariant()
    def money_is_conserved(self) -> None:
        if not hasattr(self, "paid"):
            return
        assert self.paid <= self.deposited
        assert self.env.balance(self.env.d.bridge) - self.start_balance == self.deposited - self.paid

    @invariant()
    def counts_agree(self) -> None:
        if not hasattr(self, "paid"):
            return
        assert self.env.bridge.functions.output_count().call() == len(self.outputs)

    def teardown(self) -> None:
        if getattr(self, "snapshot", None) is None:
            return
        try:
            b = self.env.bridge.functions
            assert b.total_deposited().call() == self.deposited
            assert b.total_claimed().call() + b.total_escaped().call() + b.total_refunded().call() == self.paid
            assert b.inbox_count().call() == self.inbox_count
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
        max_examples=examples, stateful_step_count=40, deadline=None, phases=phases, derandomize=True,
        suppress_health_check=list(HealthCheck)))
    print("bridge invariants, successful/rejected calls:", dict(sorted(STATS.items())))
    assert STATS.get("escape", 0) > 0 and STATS.get("claim", 0) > 0, "the sequences never reached claims and escapes"
