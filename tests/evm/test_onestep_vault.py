"""The differential test of the backstop vault's one-steps (onestep.vy routing
VaultDeposit, VaultWithdraw and VaultUnwind to onestep_vault.vy): Hypothesis
generates vault states (the vault's free collateral, its positions in several
markets long, short and flat with leftover margin, fresh, stale and missing
marks, any funding since the snapshots, holders with shares locked and
unlocked, donation states where a few shares stand for much collateral, an
unwind order already placed this minute) and records, valid by construction
or adversarial (deposits below the minimum, past the collateral, min_shares
and min_amount past what is paid, withdrawals of more shares than held or
while locked or past the vault's free collateral, the vault's and the
insurance fund's own address, other keys' and malformed signatures, used
nonces, expiry edges, unwinds of another size, limit or market, raw item
bytes), runs the Python rules (prover.trace over sequencer.core) and the
contracts on py-evm from the same pre-state, and requires the same post-state
root and the same receipt outcome."""
from __future__ import annotations

from fractions import Fraction

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from onestep_support import BTC, ETH, PRICES, get_examples, params_of, run_both
from prover import fraud_vectors as fv
from prover.keys import get_market_key, get_position_key, get_vault_share_key
from prover.records import compute_record_item, decode_item, encode_item, get_item_size
from prover.trace import Opening, TraceContext, TraceRunner
from sequencer.core.commitment import compute_dirty_leaves
from sequencer.core.encoding import encode_record
from sequencer.core.presets import DEVNET, MAX_INT64
from sequencer.core.records import VaultDeposit, VaultUnwind, VaultWithdraw
from sequencer.core.rules.base import RuleError
from sequencer.core.rules.positions import INSURANCE_ADDRESS
from sequencer.core.rules.vault import (VAULT_ADDRESS, compute_amount_for_shares, compute_shares_for_deposit,
                                        compute_vault_equity, compute_vault_unwind, get_total_shares,
                                        get_unwind_nonce)
from sequencer.core.state import Account, Order, Position, VaultShare
from sequencer.core.transition import apply_record
from test_onestep_differential import nonce_lists, nonces_for, pick, signature

pytestmark = pytest.mark.evm

U64 = 2**64 - 1
I64 = 2**63
MAX = DEVNET.max_amount
AHEAD = DEVNET.max_expiry_ahead_ms
MIN_DEPOSIT = DEVNET.vault_min_deposit
LOCKUP = DEVNET.vault_lockup_ms
MINUTE = 60_000
VAULT = VAULT_ADDRESS
EXAMPLES = get_examples(250)


@pytest.fixture(scope="module")
def onestep(onestep_contract):
    return onestep_contract


# --- states ---------------------------------------------------------------------------------

@st.composite
def markets(draw, market_id: int, fresh: bool = False):
    """A market with a fresh, stale or missing mark and any funding index
    (``fresh``: a fresh mark)."""
    p = params_of(market_id)
    price = draw(st.integers(1, 10**5)) * p.tick_size if draw(st.booleans()) else PRICES[market_id]
    if fresh:
        return fv.make_market(market_id, price, oracle_time_ms=fv.BLOCK_TIME - draw(st.sampled_from([0, 1000])),
                              funding_index=draw(st.integers(-10**12, 10**12)), funding_time_ms=fv.BLOCK_TIME - MINUTE)
    age = draw(st.sampled_from([0, 1000, 1000, 1000, p.oracle_max_age_ms, p.oracle_max_age_ms + 1, 10**6]))
    index = draw(st.one_of(st.integers(-10**12, 10**12), st.sampled_from([0, I64 - 1 - 10**9, -(I64 - 1)])))
    market = fv.make_market(market_id, price if draw(st.integers(0, 9)) else 0, oracle_time_ms=fv.BLOCK_TIME - age,
                            funding_index=index, funding_time_ms=fv.BLOCK_TIME - MINUTE)
    mark = draw(st.sampled_from([price, price, price, price + p.tick_size, max(price - 7, 1), 0]))
    return msgspec.structs.replace(market, mark_price=mark)


@st.composite
def vault_positions(draw, market_id: int, funding_index: int):
    p = params_of(market_id)
    shape = draw(st.integers(0, 4))
    if shape == 0:   # flat, leftover margin: valued without a mark
        return Position(0, 0, draw(st.integers(1, 10**9)), funding_index)
    lots = draw(st.integers(1, 10**4)) * p.step_size * draw(st.sampled_from([1, -1]))
    cost = lots * draw(st.integers(1, 10**5)) * p.tick_size // p.scale
    margin = draw(st.one_of(st.integers(0, abs(cost)), st.integers(0, 10**12)))
    snapshot = funding_index + draw(st.sampled_from([0, 0, 1, -1, 10**9, -(10**9) - 3]))
    return Position(lots, cost, margin, snapshot)


UNLOCKS = [0, fv.BLOCK_TIME - 1, fv.BLOCK_TIME, fv.BLOCK_TIME + 1, fv.BLOCK_TIME + LOCKUP]


@st.composite
def vault_states(draw, fresh: bool = False):
    """Any vault state; ``fresh``: both markets listed with fresh marks."""
    accounts = draw(st.dictionaries(st.sampled_from(fv.ADDRESSES),
                                    st.builds(Account, st.integers(0, 10**13), nonce_lists), max_size=4))
    free = draw(st.one_of(st.sampled_from([0, 1, MIN_DEPOSIT, 10**12]), st.integers(0, 10**13)))
    if fresh:
        free = draw(st.integers(10**9, 10**13))
    if free or draw(st.booleans()):
        accounts[VAULT] = Account(free, ())
    listed = [draw(markets(m, fresh)) for m in (fv.BTC, fv.ETH) if fresh or draw(st.integers(0, 5))]
    index = {m.id: m.funding_index for m in listed}
    held = {}
    for market_id in (fv.BTC, fv.ETH):   # a position in a market with no leaf has no mark
        if draw(st.integers(0, 2)) if market_id in index else draw(st.integers(0, 9)) == 0:
            held[(VAULT, market_id)] = draw(vault_positions(market_id, index.get(market_id, 0)))
    orders = {}
    ts = draw(st.sampled_from([fv.BLOCK_TIME, fv.BLOCK_TIME, fv.BLOCK_TIME + 30_000, fv.BLOCK_TIME + MINUTE]))
    for market_id in (fv.BTC, fv.ETH):
        if not fresh and draw(st.integers(0, 5)) == 0:   # this minute's unwind is already placed
            nonce = get_unwind_nonce(market_id, ts, fv.RULES)
            orders[(VAULT, nonce)] = Order(b"\x01" * 32, 10**4, market=market_id, leverage=1, time_in_force=1,
                                           reduce_only=True, expiry=ts, seq=1)
    state = fv.make_perps_state(accounts, listed, held, orders, order_count=draw(st.integers(0, 100)))
    counts = st.integers(10**8, 10**13) if fresh else st.one_of(st.integers(1, 10**12), st.sampled_from([1, 2, 10**6]))
    shares = draw(st.dictionaries(st.sampled_from(fv.ADDRESSES), st.tuples(counts, st.sampled_from(UNLOCKS)),
                                  min_size=int(fresh), max_size=4))
    for address, (count, unlock) in shares.items():
        state.set_vault_share(address, VaultShare(count, unlock))
    total = sum(count for count, _ in shares.values()) + draw(st.sampled_from([0, 0, 0, 1, 10**6]))
    if total:
        state.set_vault_share(VAULT, VaultShare(total))
    state.commit(0)
    return state, ts


# --- records --------------------------------------------------------------------------------

def user_fields(draw, state, account: bytes, ts: int, valid: bool):
    kept = state.accounts.get(account, Account()).nonces
    if valid:
        top = kept[-1] if kept else -1
        nonce = draw(st.integers(top + 1, min(top + 1000, U64))) if top < U64 else nonces_for(draw, kept)
        return nonce, draw(st.integers(ts, ts + AHEAD))
    return nonces_for(draw, kept), pick(draw, [ts - 1, ts, ts + AHEAD, ts + AHEAD + 1, U64], 0, U64)


def signed(draw, record, index: int, valid: bool):
    if valid:
        return fv.sign(record, fv.KEYS[index])
    return msgspec.structs.replace(record, signature=signature(draw, record, index))


def vault_value(state, ts):
    """(E, T), or None when the vault cannot be valued (a stale mark)."""
    try:
        return compute_vault_equity(state, fv.RULES, ts), get_total_shares(state)
    except RuleError:
        return None


@st.composite
def vault_deposits(draw, state, ts: int, valid: bool):
    index = draw(st.integers(0, 3))
    account = fv.ADDRESSES[index]
    acct = state.accounts.get(account, Account())
    if valid:
        if acct.collateral < MIN_DEPOSIT:
            acct = Account(draw(st.integers(MIN_DEPOSIT, 10**13)), acct.nonces)
            state.set_account(account, acct)
            state.commit(0)
        amount = draw(st.integers(MIN_DEPOSIT, acct.collateral))
        value = vault_value(state, ts)
        expected = compute_shares_for_deposit(amount, *value) if value and value[0] + 1 > 0 else 0
        min_shares = draw(st.sampled_from([0, max(expected, 0), max(expected, 0), max(expected, 0) + 1]))
    else:
        amount = pick(draw, [0, 1, MIN_DEPOSIT - 1, MIN_DEPOSIT, acct.collateral, acct.collateral + 1, MAX, U64],
                      0, U64)
        min_shares = pick(draw, [0, 1, I64 - 1, I64, U64], 0, U64)
        account = draw(st.sampled_from([account, account, VAULT, INSURANCE_ADDRESS]))
    nonce, expiry = user_fields(draw, state, account, ts, valid)
    return signed(draw, VaultDeposit(account, amount, min_shares, nonce, expiry, b""), index, valid)


@st.composite
def vault_withdraws(draw, state, ts: int, valid: bool):
    holders = [a for a in state.vault_shares if a != VAULT and a in fv.ADDRESSES]
    account = draw(st.sampled_from(holders)) if holders and valid else draw(st.sampled_from(fv.ADDRESSES + [VAULT]))
    index = fv.ADDRESSES.index(account) if account in fv.ADDRESSES else 0
    entry = state.vault_shares.get(account, VaultShare())
    held = entry.shares
    if valid and held and entry.unlock_ms > ts and draw(st.integers(0, 3)):
        state.set_vault_share(account, VaultShare(held, ts))   # the lock-up is over (ends at block time)
        state.commit(0)
    if valid and held:
        shares = draw(st.one_of(st.integers(1, held), st.sampled_from([held, max(held // 2, 1), max(held - 1, 1)])))
        value = vault_value(state, ts)
        expected = compute_amount_for_shares(shares, *value) if value else 0
        min_amount = draw(st.sampled_from([0, max(expected, 0), max(expected, 0), max(expected, 0) + 1]))
    else:
        total = get_total_shares(state)
        shares = pick(draw, [0, 1, held, held + 1, total, total + 1, MAX, U64], 0, U64)
        min_amount = pick(draw, [0, 1, I64 - 1, I64, U64], 0, U64)
    nonce, expiry = user_fields(draw, state, account, ts, valid)
    return signed(draw, VaultWithdraw(account, shares, min_amount, nonce, expiry, b""), index, valid)


@st.composite
def vault_unwinds(draw, state, ts: int, valid: bool):
    held = [m for (a, m), p in state.positions.items() if a == VAULT and p.size]
    market = draw(st.sampled_from(held if held and valid else [fv.BTC, fv.ETH, fv.BTC, 3]))
    due = compute_vault_unwind(state, market, ts, fv.RULES)
    if due is not None and valid:
        return due
    p = params_of(market)
    base = due or VaultUnwind(market, draw(st.integers(1, 10**4)) * p.step_size, PRICES[fv.BTC if market == 3 else market])
    size = draw(st.sampled_from([base.size, base.size + p.step_size, base.size - p.step_size, base.size + 1, 0, U64]))
    price = draw(st.sampled_from([base.price, base.price + p.tick_size, base.price - p.tick_size, 0, U64]))
    return VaultUnwind(draw(st.sampled_from([market, market, 2**32 - 1])), max(size, 0), max(price, 0))


@st.composite
def vault_cases(draw):
    state, ts = draw(vault_states())
    kind = draw(st.sampled_from([vault_deposits, vault_deposits, vault_withdraws, vault_withdraws, vault_unwinds,
                                 "raw"]))
    if kind == "raw":   # any bytes of a vault item's length
        tag, size = draw(st.sampled_from([(6, 119), (7, 119), (21, 22)]))
        item = bytes((2, tag)) + draw(st.binary(min_size=size - 2, max_size=size - 2))
    else:
        item = encode_item(draw(kind(state, ts, draw(st.booleans()))))
    ctx = fv.open_block_ctx(state, ts) if draw(st.integers(0, 9)) else TraceContext()
    return state, ctx, item


# --- running both ---------------------------------------------------------------------------

@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=vault_cases())
def test_python_and_vyper_agree_on_vault_kinds(onestep, case):
    state, ctx, item = case
    runner, pre_root, result, (root, ok, post_ctx) = run_both(onestep, state, ctx, item)
    assert (root, ok) == (runner.state_root, result.ok)
    assert onestep.functions.ctx_hash(post_ctx).call() == runner.ctx.hash()
    if not ok:
        assert root == pre_root
    record = decode_item(item)
    deleted = any(o.sibling for o in result.witness.openings)
    event(f"{type(record).__name__} {'applied' if ok else 'failed'}{' (a share leaf deleted)' if deleted else ''}")


@st.composite
def valid_vault_cases(draw):
    """Fresh marks and records valid by construction: most apply."""
    state, ts = draw(vault_states(fresh=True))
    kind = draw(st.sampled_from([vault_deposits, vault_withdraws, vault_unwinds]))
    return state, fv.open_block_ctx(state, ts), encode_item(draw(kind(state, ts, True)))


@settings(max_examples=EXAMPLES // 2, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=valid_vault_cases())
def test_python_and_vyper_agree_on_valid_vault_records(onestep, case):
    test_python_and_vyper_agree_on_vault_kinds.hypothesis.inner_test(onestep, case)


# --- targeted cases -----------------------------------------------------------------------

A, B = fv.ADDRESSES[0], fv.ADDRESSES[1]
EXP = fv.BLOCK_TIME + 60_000
LONG_BTC = Position(10**6, 600 * 10**6, 10**8, 10**9)
SHORT_ETH = Position(-(10**9), -3_010 * 10**6, 5 * 10**8, -(10**9))


def deposit(amount: int, min_shares: int = 0, nonce: int = 12, account: bytes = A, key: int = 0) -> VaultDeposit:
    return fv.sign(VaultDeposit(account, amount, min_shares, nonce, EXP, b""), fv.KEYS[key])


def withdraw(shares: int, min_amount: int = 0, nonce: int = 12, account: bytes = A, key: int = 0) -> VaultWithdraw:
    return fv.sign(VaultWithdraw(account, shares, min_amount, nonce, EXP, b""), fv.KEYS[key])


def call(onestep, runner, item, openings, nonces=()):
    return onestep.functions.apply(runner.state_root, runner.ctx.as_arg(), item, openings, list(nonces)).call()


def witness_of(state, item, ts=fv.BLOCK_TIME):
    """(pre-state runner, the step's result, its openings as arguments, the
    post-state root) of an item run on a copy."""
    runner = TraceRunner(state, fv.RULES, ctx=fv.open_block_ctx(state, ts))
    after = runner.copy()
    result = after.step(item)
    return runner, result, [o.as_arg() for o in result.witness.openings], after.state_root


def test_vault_items_decode_to_their_records():
    """decode_item is encode_item's inverse; the items are 119, 119 and 22 bytes."""
    records = [VaultDeposit(A, U64, U64, U64, U64, b"\x01" * 65), VaultWithdraw(B, 1, 0, 0, 1, b"\x02" * 65),
               VaultUnwind(2**32 - 1, U64, U64)]
    for record in records:
        assert decode_item(encode_item(record)) == record
    assert [get_item_size(t) for t in (6, 7, 21)] == [119, 119, 22]


@pytest.mark.parametrize("record", [
    VaultDeposit(A, -1, 0, 1, EXP, bytes(65)), VaultDeposit(A, 10**8, -1, 1, EXP, bytes(65)),
    VaultWithdraw(A, -(2**63), 0, 1, EXP, bytes(65)), VaultWithdraw(A, 10**8, -1, 1, EXP, bytes(65)),
    VaultDeposit(A, 10**8, 0, 1, EXP, bytes(64)),
    VaultUnwind(2**32, 10**4, 10**6), VaultUnwind(1, -1, 10**6), VaultUnwind(1, 10**4, -1)],
    ids=lambda r: f"{type(r).__name__}")
def test_a_field_past_its_width_is_a_noop_the_rule_refuses_too(record):
    """A value past its field's width makes the item a NOOP: every such record
    fails in the rule with no change (the log's msgpack carries no integer past
    2**64 - 1, so past an 8-byte field is negative; a market id past 4 bytes
    is unknown; a signature is 65 bytes). Values within the widths but past
    the rule's bounds (above 2**63 - 1) are items the differential test runs."""
    state = fv.make_vault_state(positions={fv.BTC: LONG_BTC})
    before = state.to_tables()
    assert decode_item(compute_record_item(encode_record(record))).__class__.__name__ == "Noop"
    assert apply_record(state, record, fv.BLOCK_TIME, fv.RULES) is not None
    assert state.to_tables() == before


def test_the_vault_vectors_apply(onestep):
    """The vectors' valid cases of each kind apply on both sides and change the root."""
    cases = {c["name"]: c for c in fv.vault_cases()}
    for name in ("vault deposit", "vault deposit, positions in two markets", "vault withdraw",
                 "vault unwind, long", "vault unwind, short"):
        assert cases[name]["ok"] and cases[name]["post_state_root"] != cases[name]["state_root"], name
    for name in ("vault deposit, donation: no whole share", "vault deposit, below the minimum",
                 "vault withdraw, locked", "vault unwind, twice in a minute", "vault deposit, stale mark"):
        assert not cases[name]["ok"] and cases[name]["post_state_root"] == cases[name]["state_root"], name


def test_a_missing_vault_position_reverts(onestep):
    """The vault holds positions in two markets: a witness that leaves one out
    (to value the vault without its loss) does not verify."""
    state = fv.make_vault_state(positions={fv.BTC: LONG_BTC, fv.ETH: SHORT_ETH})
    item = encode_item(deposit(10**8))
    runner, result, args, post_root = witness_of(state, item)
    assert result.ok and call(onestep, runner, item, args, result.witness.nonces)[::2] == [post_root, True]
    position_eth = get_position_key(VAULT, fv.ETH)
    keys = [o.key for o in result.witness.openings]
    at = keys.index(position_eth)
    for forged in (args[:at] + args[at + 2:],                               # the ETH position and market left out
                   args[:at] + [Opening(position_eth, None, runner.tree.prove(get_position_key(VAULT, 3))).as_arg()]
                   + args[at + 1:]):                                        # an absence proof of another key
        with pytest.raises(Exception, match="witness"):
            call(onestep, runner, item, forged, result.witness.nonces)


def test_a_forged_share_leaf_reverts(onestep):
    """A withdrawal with the holder's share leaf inflated (or its lock-up
    moved back), or the vault's total lowered, does not verify."""
    state = fv.make_vault_state()
    item = encode_item(withdraw(10**8, account=B, key=1))   # B's shares are locked
    runner, result, args, _ = witness_of(state, item)
    assert not result.ok
    keys = [o.key for o in result.witness.openings]
    holder, total = keys.index(get_vault_share_key(B)), keys.index(get_vault_share_key(VAULT))
    for at, value in ((holder, (10**12).to_bytes(32, "big") + (0).to_bytes(32, "big")),
                      (holder, (5 * 10**8).to_bytes(32, "big") + (0).to_bytes(32, "big")),
                      (total, (1).to_bytes(32, "big") + bytes(32))):
        forged = list(args)
        forged[at] = (True, value) + tuple(args[at][2:])
        with pytest.raises(Exception, match="bad opening"):
            call(onestep, runner, item, forged, result.witness.nonces)
    assert call(onestep, runner, item, args, result.witness.nonces)[2] is False


def test_a_forged_fresh_mark_reverts(onestep):
    """With a stale mark the vault cannot be valued; a witness claiming a
    fresh oracle time for the market does not verify."""
    state = fv.make_vault_state(positions={fv.BTC: LONG_BTC}, oracle_time_ms=fv.BLOCK_TIME - 61_000)
    item = encode_item(deposit(10**8))
    runner, result, args, _ = witness_of(state, item)
    assert not result.ok
    at = [o.key for o in result.witness.openings].index(get_market_key(fv.BTC))
    leaf = bytearray(args[at][1])
    leaf[32:64] = fv.BLOCK_TIME.to_bytes(32, "big")
    forged = list(args)
    forged[at] = (True, bytes(leaf)) + tuple(args[at][2:])
    with pytest.raises(Exception, match="bad opening"):
        call(onestep, runner, item, forged, result.witness.nonces)


def test_unwind_twice_in_a_minute(onestep):
    """The unwind due applies once per market per minute: the same record
    again in the minute fails on both sides, the next minute's applies."""
    state = fv.make_vault_state(positions={fv.BTC: LONG_BTC, fv.ETH: SHORT_ETH})
    runner = TraceRunner(state, fv.RULES, ctx=fv.open_block_ctx(state))
    due = compute_vault_unwind(runner.state, fv.BTC, fv.BLOCK_TIME, fv.RULES)
    for expect in (True, False):
        pre_root, pre_ctx = runner.state_root, runner.ctx
        result = runner.step(encode_item(due))
        root, _, ok = onestep.functions.apply(pre_root, pre_ctx.as_arg(), encode_item(due),
                                              [o.as_arg() for o in result.witness.openings], []).call()
        assert (root, ok) == (runner.state_root, result.ok) and ok is expect
    later = msgspec.structs.replace(runner.ctx, timestamp_ms=fv.BLOCK_TIME + MINUTE)
    runner.ctx = later
    runner.state.set_market(msgspec.structs.replace(runner.state.markets[fv.BTC], oracle_time_ms=fv.BLOCK_TIME + MINUTE))
    runner.state.commit(0)
    runner.tree.update(compute_dirty_leaves(runner.state))
    again = compute_vault_unwind(runner.state, fv.BTC, fv.BLOCK_TIME + MINUTE, fv.RULES)
    assert again is not None
    pre_root = runner.state_root
    result = runner.step(encode_item(again))
    root, _, ok = onestep.functions.apply(pre_root, later.as_arg(), encode_item(again),
                                          [o.as_arg() for o in result.witness.openings], []).call()
    assert ok and result.ok and root == runner.state_root


def test_withdrawing_the_last_shares_deletes_the_share_leaf(onestep):
    """A holder's last shares redeemed empty its share leaf, the vault's last
    its total: both leaves are deleted on both sides (the deepest sibling's
    preimage in the witness); a forged sibling reverts."""
    state = fv.make_vault_state(holders={A: (10**9, fv.BLOCK_TIME - 1)})
    for item, gone in ((encode_item(withdraw(10**9 - 1)), ()),
                       (encode_item(withdraw(10**9)), (get_vault_share_key(A), get_vault_share_key(VAULT)))):
        runner, result, args, post_root = witness_of(state, item)
        assert result.ok and call(onestep, runner, item, args, result.witness.nonces)[::2] == [post_root, True]
        after = runner.copy()
        after.step(item)
        assert all(after.tree.get(k) is None and runner.tree.get(k) is not None for k in gone)
    deletions = [i for i, o in enumerate(result.witness.openings) if o.sibling]
    assert len(deletions) == 2
    for at in deletions:
        forged = list(args)
        sibling = bytearray(args[at][3])
        sibling[-1] ^= 1
        forged[at] = tuple(args[at][:3]) + (bytes(sibling),)
        with pytest.raises(Exception, match="witness"):
            call(onestep, runner, item, forged, result.witness.nonces)
