"""The differential test of the perps one-steps (onestep.vy handing AdjustMargin,
PlaceOrder, CancelOrder and FundingTick to onestep_perps.vy): Hypothesis
generates states (accounts, markets with fresh or stale marks and any funding
index and dust, open positions long and short, flat positions left in the
dict, orders open, filled and cancelled) and records, valid by construction
or adversarial (another key's signature, high-s and malformed signatures,
used and stale nonces, expiry edges, amounts past the collateral, the margin
or the initial margin, unknown markets, a market with no price, someone
else's order, cancelled and filled orders, duplicate order nonces, off-tick
prices, off-step sizes, leverage, time in force and reduce-only edges,
funding rates past the cap, misaligned and early funding times, an index
past 64 bits, and raw item bytes), runs the Python rules (prover.trace over
sequencer.core) and the contracts on py-evm from the same pre-state, and
requires the same post-state root and the same receipt outcome."""
from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from l1_bridge.deploy import deploy_onestep
from onestep_support import BTC, ETH, PRICES, get_examples, params_of, run_both
from prover import fraud_vectors as fv
from prover.keys import compute_key, get_account_key, get_market_key, get_order_key, get_position_key
from prover.records import PendingKind, decode_item, encode_item
from prover.trace import TRIGGER_KIND, TraceContext, TraceRunner, get_onestep_markets
from sequencer.core.presets import DEVNET
from sequencer.core.records import AdjustMargin, CancelOrder, FundingTick, PlaceOrder
from sequencer.core.state import Account, Position
from test_onestep_differential import nonce_lists, nonces_for, pick, signature

pytestmark = pytest.mark.evm

U64 = 2**64 - 1
I64 = 2**63
MAX = DEVNET.max_amount
AHEAD = DEVNET.max_expiry_ahead_ms
MINUTE = 60_000


@pytest.fixture(scope="module")
def onestep(onestep_contract):
    return onestep_contract


@st.composite
def markets(draw, market_id: int):
    p = params_of(market_id)
    price = draw(st.integers(1, 10**5)) * p.tick_size if draw(st.booleans()) else PRICES[market_id]
    mark = draw(st.sampled_from([price, price, price + p.tick_size, max(price - 7, 1), 0]))
    oracle_time = fv.BLOCK_TIME - draw(st.sampled_from([0, 1000, 1000, p.oracle_max_age_ms - 30_000,
                                                        p.oracle_max_age_ms, p.oracle_max_age_ms + 1, 10**6]))
    index = draw(st.one_of(st.integers(-10**12, 10**12), st.sampled_from([0, I64 - 1 - 10**9, -(I64 - 1)])))
    funding_time = (fv.BLOCK_TIME // MINUTE - draw(st.sampled_from([1, 1, 2, 0]))) * MINUTE
    dust = draw(st.one_of(st.just(0), st.integers(0, p.scale * 10**6 - 1)))
    market = fv.make_market(market_id, price if draw(st.integers(0, 9)) else 0, oracle_time_ms=oracle_time,
                            funding_index=index, funding_time_ms=funding_time, funding_dust=dust)
    return msgspec.structs.replace(market, mark_price=mark)


@st.composite
def positions(draw, market):
    p = params_of(market.id)
    lots = draw(st.integers(1, 10**4)) * p.step_size * draw(st.sampled_from([1, -1]))
    entry = draw(st.integers(1, 10**5)) * p.tick_size
    cost = lots * entry // p.scale
    margin = draw(st.one_of(st.integers(0, abs(cost)), st.integers(0, 10**12)))
    snapshot = market.funding_index + draw(st.sampled_from([0, 0, 1, -1, 10**9, -(10**9) - 3]))
    return Position(lots, cost, margin, snapshot)


@st.composite
def perps_states(draw):
    accounts = draw(st.dictionaries(st.sampled_from(fv.ADDRESSES),
                                    st.builds(Account, st.integers(0, 10**13), nonce_lists), max_size=4))
    listed = [draw(markets(m)) for m in (fv.BTC, fv.ETH) if draw(st.integers(0, 5))]
    held = {}
    for market in listed:
        for address in draw(st.lists(st.sampled_from(fv.ADDRESSES), min_size=1, max_size=4, unique=True)):
            shape = draw(st.integers(0, 9))
            if shape == 0:  # a position closed whole stays in the dict, empty in the tree
                held[(address, market.id)] = Position(0, 0, 0, market.funding_index)
            elif shape == 1:  # closed whole by a liquidation, leftover margin kept
                held[(address, market.id)] = Position(0, 0, draw(st.integers(1, 10**9)), market.funding_index)
            elif shape == 2:  # rules v2: only the order epoch of a forced close or a liquidation left
                held[(address, market.id)] = Position(0, 0, 0, draw(st.sampled_from([0, market.funding_index])),
                                                      order_epoch=draw(st.integers(1, 50)))
            else:
                epoch = draw(st.sampled_from([0, 0, 0, 7]))     # an epoch set by an earlier liquidation
                held[(address, market.id)] = msgspec.structs.replace(draw(positions(market)), order_epoch=epoch)
    orders = {}
    for address, nonce in draw(st.lists(st.tuples(st.sampled_from(fv.ADDRESSES), st.integers(0, 40)), max_size=4,
                                        unique=True)):
        record = PlaceOrder(address, fv.BTC, draw(st.booleans()), PRICES[fv.BTC], 10 * BTC.step_size, 10, 0, False,
                            nonce, fv.BLOCK_TIME + 1, b"")
        size = record.size
        orders[(address, nonce)] = fv.make_order(record, filled=draw(st.sampled_from([0, size // 2, size])),
                                                 cancelled=draw(st.integers(0, 3)) == 0, seq=nonce + 1)
    return fv.make_perps_state(accounts, listed, held, orders, order_count=draw(st.integers(0, 100)))


def user_fields(draw, state, index: int, valid: bool):
    """(nonce, expiry) fresh and live when valid, else anything at an edge."""
    kept = state.accounts.get(fv.ADDRESSES[index], Account()).nonces
    ts = fv.BLOCK_TIME
    if valid:
        top = kept[-1] if kept else -1
        nonce = draw(st.integers(top + 1, min(top + 1000, U64))) if top < U64 else nonces_for(draw, kept)
        return nonce, draw(st.integers(ts + 30_000, ts + AHEAD))
    return nonces_for(draw, kept), pick(draw, [ts - 1, ts, ts + AHEAD, ts + AHEAD + 1, U64], 0, U64)


def signed(draw, record, index: int, valid: bool):
    if valid:
        return fv.sign(record, fv.KEYS[index])
    return msgspec.structs.replace(record, signature=signature(draw, record, index))


def fund(draw, state, account: bytes) -> Account:
    """The account, given collateral if it has none (a valid record's signer)."""
    acct = state.accounts.get(account, Account())
    if acct.collateral == 0:
        acct = Account(draw(st.integers(1, 10**13)), acct.nonces)
        state.set_account(account, acct)
        state.commit(0)
    return acct


@st.composite
def adjust_margins(draw, state, valid: bool):
    index = draw(st.integers(0, 3))
    account = fv.ADDRESSES[index]
    held = [m for (a, m), position in state.positions.items() if a == account and (position.size or position.margin)]
    flat = [m for m in held if state.positions[(account, m)].size == 0]
    if flat and valid and draw(st.booleans()):  # a flat position's leftover margin, often all of it
        held = flat
    market = draw(st.sampled_from(held)) if held and valid else draw(st.sampled_from([1, 2, 3, 0]))
    position = state.positions.get((account, market), Position())
    if valid:
        collateral = fund(draw, state, account).collateral
        amount = draw(st.one_of(st.integers(1, collateral), st.integers(-max(position.margin // 4, 1), -1),
                                st.just(-position.margin)))  # all of it: a flat position's leaf is deleted
    else:
        collateral = state.accounts.get(account, Account()).collateral
        amount = pick(draw, [collateral, collateral + 1, position.margin, -position.margin, -position.margin - 1,
                             0, MAX, -MAX, -I64, I64 - 1, 1, -1], -I64, I64 - 1)
    nonce, expiry = user_fields(draw, state, index, valid)
    return signed(draw, AdjustMargin(account, market, amount, nonce, expiry, b""), index, valid)


@st.composite
def place_orders(draw, state, valid: bool):
    index = draw(st.integers(0, 3))
    account = fv.ADDRESSES[index]
    market = draw(st.sampled_from([1, 1, 2] if valid else [1, 2, 3]))
    p = params_of(market)
    price = draw(st.integers(1, 10**5)) * p.tick_size
    size = draw(st.integers(1, 10**3)) * p.step_size
    leverage = draw(st.integers(1, p.max_leverage))
    reduce_only = draw(st.booleans())
    tif = 1 if reduce_only else draw(st.sampled_from([0, 1, 2]))
    if price * size < p.min_order_notional * p.scale and not reduce_only:
        size = -(-p.min_order_notional * p.scale // price // p.step_size) * p.step_size
    if not valid:
        price += draw(st.sampled_from([0, 0, 1]))
        size += draw(st.sampled_from([0, 0, 1]))
        price, size = draw(st.sampled_from([(price, size), (0, size), (MAX + 1, size), (price, 0),
                                            (p.tick_size, p.step_size)]))
        leverage = draw(st.sampled_from([leverage, p.max_leverage + 1, 0, 2**32 - 1]))
        tif = draw(st.sampled_from([tif, 0, 1, 2, 3, 255]))
    nonce, expiry = user_fields(draw, state, index, valid)
    if not valid and draw(st.integers(0, 2)) == 0:
        nonce = draw(st.sampled_from([n for (a, n) in state.orders if a == account] or [nonce]))  # duplicate
    record = PlaceOrder(account, market, draw(st.booleans()), price, size, leverage, tif, reduce_only, nonce,
                        expiry, b"")
    return signed(draw, record, index, valid)


@st.composite
def cancel_orders(draw, state, valid: bool):
    index = draw(st.integers(0, 3))
    account = fv.ADDRESSES[index]
    own = [n for (a, n) in state.orders if a == account]
    others = [n for (a, n) in state.orders if a != account]
    if valid:
        order_nonce = draw(st.sampled_from(own)) if own else 41
        if not own:
            order = PlaceOrder(account, fv.BTC, True, PRICES[fv.BTC], 10 * BTC.step_size, 10, 0, False, 41,
                               fv.BLOCK_TIME + 1, b"")
            state.set_order(account, 41, fv.make_order(order))
            state.commit(0)
    else:
        order_nonce = pick(draw, own + others + [41, U64], 0, U64)
    nonce, expiry = user_fields(draw, state, index, valid)
    return signed(draw, CancelOrder(account, order_nonce, nonce, expiry, b""), index, valid)


@st.composite
def funding_ticks(draw, state, valid: bool):
    due = fv.BLOCK_TIME // MINUTE * MINUTE
    if valid:
        market = draw(st.sampled_from(sorted(state.markets) or [1]))
        cap = params_of(market).funding_cap_ppm
        return FundingTick(market, draw(st.integers(-cap, cap)), due)
    market = draw(st.sampled_from([1, 1, 2, 3]))
    cap = params_of(market).funding_cap_ppm
    rate = pick(draw, [cap, -cap, cap + 1, -cap - 1, 0, I64 - 1, -I64], -cap, cap)
    at = draw(st.sampled_from([due, due, due - MINUTE, due + MINUTE, due - 1, 0, U64]))
    return FundingTick(market, rate, at)


@st.composite
def perps_cases(draw):
    state = draw(perps_states())
    kind = draw(st.sampled_from([adjust_margins, adjust_margins, place_orders, cancel_orders, funding_ticks, "raw"]))
    if kind == "raw":  # any bytes of a perps item's length: bool bytes 2..255, any market, rate, price
        tag, size = draw(st.sampled_from([(3, 115), (4, 130), (5, 111), (17, 22)]))
        item = bytes((2, tag)) + draw(st.binary(min_size=size - 2, max_size=size - 2))
    else:
        item = encode_item(draw(kind(state, draw(st.booleans()))))
    ts = draw(st.sampled_from([fv.BLOCK_TIME, fv.BLOCK_TIME, fv.BLOCK_TIME + 30_000]))
    ctx = fv.open_block_ctx(state, ts) if draw(st.integers(0, 9)) else TraceContext()
    return state, ctx, item


def check_deletion(onestep, pre_root, ctx, item, result, runner):
    """A record that deletes a leaf (an AdjustMargin taking all of a flat
    position's margin): the deleted leaf is gone from the Python tree, and
    the contract refuses the deletion opening with its sibling preimage
    dropped or lying about the sibling's shape, key or value."""
    args = [o.as_arg() for o in result.witness.openings]
    deletions = [i for i, o in enumerate(result.witness.openings) if o.sibling]
    for i in deletions:
        assert runner.tree.get(result.witness.openings[i].key) is None
        pre = result.witness.openings[i].sibling
        flipped = bytes([1 - pre[0]]) + pre[1:]
        for lie in (b"", flipped, pre[:1] + bytes([pre[1] ^ 1]) + pre[2:], pre[:-1] + bytes([pre[-1] ^ 1])):
            forged = list(args)
            forged[i] = args[i][:3] + (lie,)
            with pytest.raises(Exception, match="bad deletion"):
                onestep.functions.apply(pre_root, ctx.as_arg(), item, forged, list(result.witness.nonces)).call()
    return len(deletions)


@settings(max_examples=get_examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=perps_cases())
def test_python_and_vyper_agree_on_perps_kinds(onestep, case):
    state, ctx, item = case
    runner, pre_root, result, (root, ok, post_ctx) = run_both(onestep, state, ctx, item)
    assert (root, ok) == (runner.state_root, result.ok)
    assert onestep.functions.ctx_hash(post_ctx).call() == runner.ctx.hash()
    if not ok:
        assert root == pre_root  # a failed record changes nothing
    event(f"{type(decode_item(item)).__name__} {'applied' if ok else 'failed'}")
    if check_deletion(onestep, pre_root, ctx, item, result, runner):
        event("AdjustMargin deleting a flat position's leaf")


def test_valid_records_of_each_kind_apply(onestep):
    """The vectors' valid case of each kind applies on both sides and changes the root."""
    for name in ("adjust margin in", "adjust margin out", "place order", "cancel order", "funding tick"):
        case = next(c for c in fv.perps_cases() if c["name"] == name)
        assert case["ok"] and case["post_state_root"] != case["state_root"], name


def test_a_forged_position_or_market_reverts(onestep):
    """A witness that lies about a leaf the rule reads (more margin, a fresher
    price) does not verify: the step reverts, it proves nothing."""
    state = fv.make_perps_state(
        {fv.ADDRESSES[0]: Account(10**9, ())}, [fv.make_market(fv.BTC, PRICES[fv.BTC])],
        {(fv.ADDRESSES[0], fv.BTC): Position(10**6, 600 * 10**6, 10**8, 0)}, {})
    record = fv.sign(AdjustMargin(fv.ADDRESSES[0], fv.BTC, -10**6, 1, fv.BLOCK_TIME + 1, b""), fv.KEYS[0])
    ctx = fv.open_block_ctx(state)
    runner = TraceRunner(state, fv.RULES, ctx=ctx)
    pre_root = runner.state_root
    result = runner.step(encode_item(record))
    assert result.ok
    args = [o.as_arg() for o in result.witness.openings]
    forged = list(args)
    position = bytearray(args[0][1])
    position[64:96] = (10**12).to_bytes(32, "big")  # the margin inflated
    forged[0] = (True, bytes(position), args[0][2], b"")
    with pytest.raises(Exception, match="bad opening"):
        onestep.functions.apply(pre_root, ctx.as_arg(), encode_item(record), forged, []).call()
    assert onestep.functions.apply(pre_root, ctx.as_arg(), encode_item(record), args, []).call()[0] == runner.state_root


def _proof(tree, key):
    p = tree.prove(key)
    return (p.bitmap, list(p.siblings), p.other_key or bytes(32), p.other_value_hash or bytes(32))


def test_perps_items_decode_to_their_records():
    """decode_item is encode_item's inverse on every perps kind (signed fields and bools too)."""
    records = [AdjustMargin(fv.ADDRESSES[0], 2, -(I64), 0, U64, b"\x01" * 65),
               PlaceOrder(fv.ADDRESSES[1], 2**32 - 1, True, U64, 1, 2**32 - 1, 255, True, 5, 6, b"\x02" * 65),
               CancelOrder(fv.ADDRESSES[2], U64, 1, 2, b"\x03" * 65), FundingTick(1, -5, 60_000)]
    for record in records:
        assert decode_item(encode_item(record)) == record
    item = bytearray(encode_item(records[1]))
    item[26] = 7  # any non-zero bool byte is true
    assert decode_item(bytes(item)).is_buy is True


def test_deploy_onestep_sets_the_market_table(w3):
    """l1_bridge.deploy.deploy_onestep deploys the families for a rule context
    and routes their tags; each holds the rules' whole market table."""
    onestep_address, families = deploy_onestep(w3, fv.RULES)
    from l1_bridge.deploy import load_artifact
    from prover.families import ONESTEP_FAMILIES
    onestep = w3.eth.contract(address=onestep_address, abi=load_artifact("onestep")[0])
    for name, tags, _ in ONESTEP_FAMILIES:
        assert all(onestep.functions.route(tag).call() == families[name] for tag in tags)
    assert onestep.functions.route(1).call() == "0x" + "00" * 20
    perps = w3.eth.contract(address=families["onestep_perps"], abi=load_artifact("onestep_perps")[0])
    for market in get_onestep_markets(fv.RULES):
        assert tuple(perps.functions.market_table(market[0]).call()) == market
    assert perps.functions.market_table(3).call()[1] == 0


def test_leftover_margin_of_a_flat_position(onestep):
    """After a whole liquidation a flat position keeps leftover margin (a
    non-empty leaf): adding to it and taking part of it back re-execute on L1;
    taking all of it deletes the leaf, with the same root on both sides, and
    a lie about the deleted leaf's sibling reverts."""
    a = fv.ADDRESSES[0]
    state = fv.make_perps_state({a: Account(10**9, ())}, [fv.make_market(fv.BTC, PRICES[fv.BTC])],
                                {(a, fv.BTC): Position(0, 0, 5 * 10**6, 0)}, {})
    ctx = fv.open_block_ctx(state)
    for nonce, amount in ((1, 10**6), (2, -10**6)):
        item = encode_item(fv.sign(AdjustMargin(a, fv.BTC, amount, nonce, fv.BLOCK_TIME + 1, b""), fv.KEYS[0]))
        runner, pre_root, result, (root, ok, _) = run_both(onestep, state, ctx, item)
        assert result.ok and ok and root == runner.state_root != pre_root
    item = encode_item(fv.sign(AdjustMargin(a, fv.BTC, -5 * 10**6, 3, fv.BLOCK_TIME + 1, b""), fv.KEYS[0]))
    runner, pre_root, result, (root, ok, _) = run_both(onestep, state, ctx, item)
    assert result.ok and ok and root == runner.state_root != pre_root
    assert runner.tree.get(get_position_key(a, fv.BTC)) is None
    assert check_deletion(onestep, pre_root, ctx, item, result, runner) == 1


def test_take_all_of_every_tree_shape(onestep):
    """The take-all deletion with each shape of the position's deepest
    sibling (a leaf that moves up, a node) and among many positions: the same
    root on both sides, each deletion checked against forged siblings."""
    a = fv.ADDRESSES[0]
    markets = [fv.make_market(fv.BTC, PRICES[fv.BTC]), fv.make_market(fv.ETH, PRICES[fv.ETH])]
    found = {}
    for others in range(120):  # the first state of each shape (found in Python, then run on both)
        held = {(a, fv.BTC): Position(0, 0, 7 * 10**6, 0)}
        for i in range(others):
            held[((i + 1).to_bytes(2, "big") * 10, fv.BTC if i % 2 else fv.ETH)] = Position(0, 0, 10**6 + i, 0)
        state = fv.make_perps_state({a: Account(10**9, ())}, markets, held, {})
        ctx = fv.open_block_ctx(state)
        item = encode_item(fv.sign(AdjustMargin(a, fv.BTC, -7 * 10**6, 1, fv.BLOCK_TIME + 1, b""), fv.KEYS[0]))
        runner = TraceRunner(fv.make_perps_state({a: Account(10**9, ())}, markets, held, {}), fv.RULES, ctx=ctx)
        result = runner.step(item)
        deleted = next(o for o in result.witness.openings if o.sibling)
        depth, rest = deleted.proof.bitmap.bit_length(), deleted.proof.bitmap ^ (1 << (deleted.proof.bitmap.bit_length() - 1))
        shape = "node" if deleted.sibling[:1] == b"\x01" else "leaf, one level" if depth - rest.bit_length() == 1 else "leaf moving up"
        found.setdefault(shape, (state, ctx, item))
    assert set(found) == {"node", "leaf, one level", "leaf moving up"}
    for shape, (state, ctx, item) in found.items():
        runner, pre_root, result, (root, ok, _) = run_both(onestep, state, ctx, item)
        assert result.ok and ok and root == runner.state_root, shape
        assert check_deletion(onestep, pre_root, ctx, item, result, runner) == 1
