"""The differential test of the one-step: Hypothesis generates states and
items (valid, invalid and adversarial: wrong keys, high-s and malformed
signatures, used and out-of-window nonces, expiry edges, amounts at and past
every bound, inbox records out of order, closed blocks, malformed items), runs
the Python rules (prover.trace, over sequencer.core) and onestep.vy on py-evm
from the same pre-state, and requires the same post-state root, the same
trace context and the same receipt outcome."""
from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from onestep_support import get_examples
from prover import fraud_vectors as fv
from prover.records import PENDING_TAGS, BlockEnd, BlockStart, Noop, encode_item
from prover.trace import TraceContext, TraceRunner
from sequencer.core.presets import DEVNET, MAX_BLOCK_TIME_MS
from sequencer.core.records import Deposit, ForcedWithdrawal, Transfer, Withdraw
from sequencer.core.state import Account

pytestmark = pytest.mark.evm

U64 = 2**64 - 1
MAX = DEVNET.max_amount
AHEAD = DEVNET.max_expiry_ahead_ms
STRANGER = bytes.fromhex("00" * 19 + "01")
ADDRESSES = fv.ADDRESSES + [STRANGER]


@pytest.fixture(scope="module")
def onestep(onestep_contract):
    return onestep_contract


nonce_lists = st.one_of(
    st.lists(st.integers(0, U64), max_size=8, unique=True).map(lambda xs: tuple(sorted(xs))),
    st.integers(0, 2**40).map(lambda base: tuple(range(base, base + 2 * DEVNET.nonce_window, 2))),
)
accounts = st.dictionaries(st.sampled_from(ADDRESSES),
                           st.builds(Account, st.one_of(st.integers(0, 10**13), st.just(MAX)), nonce_lists),
                           max_size=len(ADDRESSES))


@st.composite
def states(draw):
    return fv.make_state(draw(accounts), block_number=draw(st.integers(0, 10**6)),
                         timestamp_ms=fv.BLOCK_TIME - draw(st.integers(0, 10**6)),
                         inbox_count=draw(st.integers(0, 50)), withdrawal_count=draw(st.integers(0, 50)),
                         total_deposited=draw(st.sampled_from([0, 10**15, MAX - 10**6, MAX])))


def pick(draw, exact: list[int], lo: int, hi: int) -> int:
    return draw(st.one_of(st.sampled_from(exact), st.integers(lo, hi)))


def amounts(draw, collateral: int) -> int:
    return pick(draw, [0, 1, collateral, collateral + 1, MAX, MAX + 1, U64], 0, U64)


def nonces_for(draw, kept: tuple[int, ...]) -> int:
    edges = [0, U64] + list(kept[:2]) + list(kept[-2:])
    if kept:
        edges += [max(kept[0] - 1, 0), min(kept[-1] + 1, U64), min(kept[0] + 1, U64)]
    return pick(draw, edges, 0, U64)


def signature(draw, record, key_index: int) -> bytes:
    signed = fv.sign(record, fv.KEYS[draw(st.sampled_from([key_index, key_index, (key_index + 1) % 4]))]).signature
    variant = draw(st.sampled_from(["good", "good", "high_s", "v", "r0", "s0", "random"]))
    if variant == "high_s":
        return fv.high_s(signed)
    if variant == "v":
        return signed[:64] + bytes([draw(st.sampled_from([0, 1, 26, 29]))])
    if variant == "r0":
        return bytes(32) + signed[32:]
    if variant == "s0":
        return signed[:32] + bytes(32) + signed[64:]
    if variant == "random":
        return draw(st.binary(min_size=65, max_size=65))
    return signed


@st.composite
def user_records(draw, state):
    """Half of them valid by construction (funded account, fresh nonce, live
    expiry, the owner's signature), the rest with any field at an edge."""
    index = draw(st.integers(0, 3))
    account = fv.ADDRESSES[index]
    valid = draw(st.booleans())
    if valid and state.accounts.get(account, Account()).collateral == 0:
        state.set_account(account, Account(draw(st.integers(1, MAX)), state.accounts.get(account, Account()).nonces))
        state.commit(0)
    kept = state.accounts.get(account, Account())
    ts = fv.BLOCK_TIME
    if valid:
        expiry = draw(st.integers(ts, ts + AHEAD))
        amount = draw(st.integers(1, min(kept.collateral, MAX)))
        top = kept.nonces[-1] if kept.nonces else -1
        nonce = draw(st.integers(top + 1, U64)) if top < U64 else nonces_for(draw, kept.nonces)
    else:
        expiry = pick(draw, [ts - 1, ts, ts + AHEAD, ts + AHEAD + 1, U64], 0, U64)
        amount, nonce = amounts(draw, kept.collateral), nonces_for(draw, kept.nonces)
    if draw(st.booleans()):
        to = draw(st.sampled_from(ADDRESSES + [draw(st.binary(min_size=20, max_size=20))]))
        record = Transfer(account, to, amount, nonce, expiry, b"")
    else:
        record = Withdraw(account, amount, nonce, expiry, b"")
    if valid:
        return fv.sign(record, fv.KEYS[index])
    return msgspec.structs.replace(record, signature=signature(draw, record, index))


@st.composite
def inbox_records(draw, state):
    count = state.globals.inbox_count
    index = draw(st.one_of(st.just(count), st.just(count), st.sampled_from([count + 1, max(count - 1, 0)]),
                           st.integers(0, U64)))
    account = draw(st.sampled_from(ADDRESSES))
    collateral = state.accounts.get(account, Account()).collateral
    amount = pick(draw, [0, 1, collateral, collateral + 1, MAX, MAX + 1, 2**256 - 1], 0, 2**256 - 1)
    return draw(st.sampled_from([Deposit, ForcedWithdrawal]))(index, account, amount)


@st.composite
def cases(draw):
    state = draw(states())
    head = state.globals
    kind = draw(st.sampled_from(["user", "user", "user", "inbox", "inbox", "start", "end", "noise"]))
    ctx = fv.open_block_ctx(state) if draw(st.integers(0, 9)) else TraceContext()
    if kind == "user":
        item = encode_item(draw(user_records(state)))
    elif kind == "inbox":
        item = encode_item(draw(inbox_records(state)))
    elif kind == "start":
        number = draw(st.sampled_from([head.block_number + 1] * 3 + [head.block_number, head.block_number + 2]))
        parent = draw(st.sampled_from([head.block_hash] * 3 + [bytes(32)]))
        ts = draw(st.sampled_from([head.timestamp_ms, fv.BLOCK_TIME, fv.BLOCK_TIME, head.timestamp_ms - 1,
                                     MAX_BLOCK_TIME_MS, MAX_BLOCK_TIME_MS + 1]))
        item, ctx = encode_item(BlockStart(number, parent, ts)), TraceContext()
    elif kind == "end":
        item = encode_item(BlockEnd(draw(st.binary(min_size=32, max_size=32))))
    else:
        item = draw(st.one_of(st.binary(min_size=1, max_size=140).filter(lambda b: b[:2] not in PENDING_PREFIXES),
                              st.binary(min_size=32, max_size=32).map(lambda h: encode_item(Noop(h)))))
    return state, ctx, item


PENDING_PREFIXES = {bytes([2, tag]) for tag in PENDING_TAGS}


@settings(max_examples=get_examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=cases())
def test_python_and_vyper_agree(onestep, case):
    state, ctx, item = case
    runner = TraceRunner(state, fv.RULES, ctx=ctx)
    pre_root = runner.state_root
    result = runner.step(item)
    root, post_ctx, ok = onestep.functions.apply(
        pre_root, ctx.as_arg(), item, [o.as_arg() for o in result.witness.openings],
        list(result.witness.nonces)).call()
    assert (root, ok) == (runner.state_root, result.ok)
    assert onestep.functions.ctx_hash(post_ctx).call() == runner.ctx.hash()


@pytest.mark.parametrize("ts, opens", [(MAX_BLOCK_TIME_MS, True), (MAX_BLOCK_TIME_MS + 1, False), (2**64 - 1, False)])
def test_a_block_dated_after_the_year_9999_does_not_open(onestep, ts, opens):
    """Rules v4: a sequencer that dates a block past the bound (to reach a
    vault unwind nonce past 8 bytes, or any time L1 cannot carry) gets a
    block that opens nothing, on both sides; the last millisecond of 9999 opens."""
    state = fv.make_state({})
    head = state.globals
    runner = TraceRunner(state, fv.RULES, ctx=TraceContext())
    item = encode_item(BlockStart(head.block_number + 1, head.block_hash, ts))
    result = runner.step(item)
    root, post_ctx, ok = onestep.functions.apply(
        runner.state_root, TraceContext().as_arg(), item, [o.as_arg() for o in result.witness.openings],
        list(result.witness.nonces)).call()
    assert ok == result.ok == opens
    assert runner.ctx.block_open == int(opens)
    assert onestep.functions.ctx_hash(post_ctx).call() == runner.ctx.hash()
