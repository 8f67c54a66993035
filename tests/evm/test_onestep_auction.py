"""The differential test of the AuctionBid and ModifyOrder one-steps
(onestep.vy handing tag 8 to onestep_auction.vy and tag 10 to
onestep_modify.vy): Hypothesis generates states (a liquidated position long
or short in auction, its auction started at any time before the block,
fresh, stale and missing marks, funding owed either way, keepers with no
account, no collateral or plenty, flat, on the same side or the other side
of the owner, resting orders open, filled, cancelled, expired,
immediate-or-cancel and someone else's, triggers holding a nonce) and
records valid by construction or adversarial (the price decayed past the
keeper's limit by one tick, more lots than are left, the auction over or
absent, the owner bidding on itself, leverage, size and price edges, off-tick
and off-step modifies, below the minimum notional, a taken nonce, signatures
and nonces as the perps test's, raw item bytes), runs the Python rules
(prover.trace over sequencer.core) and the contracts on py-evm from the same
pre-state, and requires the same post-state root and receipt outcome.  A bid
that empties a leaf (the auction sold out, a position closed flat with no
margin) deletes it on both sides; a forged deletion sibling reverts."""
from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from onestep_support import BTC, ETH, get_examples, params_of, run_both
from prover import fraud_vectors as fv
from prover.keys import get_auction_key
from prover.records import PendingKind, decode_item, encode_item
from prover.trace import TraceContext, TraceRunner, get_onestep_markets
from sequencer.core.records import AuctionBid, ModifyOrder, PlaceOrder
from sequencer.core.rules.auction import compute_auction_price
from sequencer.core.rules.liquidation import compute_auction_prices
from sequencer.core.state import Account, Auction, Order, Position, Trigger, get_order_epoch
from test_onestep_differential import nonce_lists, nonces_for, pick, signature

pytestmark = pytest.mark.evm

U64 = 2**64 - 1
MAX = fv.RULES.preset.max_amount
AHEAD = fv.RULES.preset.max_expiry_ahead_ms


@pytest.fixture(scope="module")
def onestep(deploy):
    markets = get_onestep_markets(fv.RULES)
    auction = deploy("onestep_auction", *fv.ONESTEP_PARAMS, markets)
    modify = deploy("onestep_modify", *fv.ONESTEP_PARAMS, markets)
    return deploy("onestep", *fv.ONESTEP_PARAMS, [(auction.address, [8]), (modify.address, [10])])


def user_fields(draw, kept: tuple[int, ...], valid: bool, ts: int):
    """(nonce, expiry) fresh and live from block time to `ts` when valid, else anything at an edge."""
    if valid:
        top = kept[-1] if kept else -1
        nonce = draw(st.integers(top + 1, min(top + 1000, U64))) if top < U64 else nonces_for(draw, kept)
        return nonce, draw(st.integers(ts, fv.BLOCK_TIME + AHEAD))
    return nonces_for(draw, kept), pick(draw, [ts - 1, ts, ts + AHEAD, ts + AHEAD + 1, U64], 0, U64)


def signed(draw, record, index: int, valid: bool):
    if valid:
        return fv.sign(record, fv.KEYS[index])
    return msgspec.structs.replace(record, signature=signature(draw, record, index))


# --- AuctionBid ------------------------------------------------------------------------

@st.composite
def owner_positions(draw, market, p):
    lots = draw(st.integers(1, 2000)) * p.step_size * draw(st.sampled_from([1, -1]))
    mark = market.mark_price or market.oracle_price or 10**3 * p.tick_size
    entry = mark + draw(st.integers(-mark // 20, mark // 20))
    cost = lots * entry // p.scale
    margin = draw(st.one_of(st.integers(0, abs(cost) // 20 + 1), st.integers(0, 10**7)))
    snapshot = market.funding_index + draw(st.sampled_from([0, 0, 0, 1, -1, 10**9, -(10**9) - 3]))
    return Position(lots, cost, margin, snapshot)


@st.composite
def keeper_positions(draw, market, p, owner_size: int):
    shape = draw(st.sampled_from(["none", "none", "same", "other", "flat margin"]))
    snapshot = market.funding_index + draw(st.sampled_from([0, 0, 1, -7, 10**9]))
    if shape == "none":
        return None
    if shape == "flat margin":
        return Position(0, 0, draw(st.integers(1, 10**8)), snapshot)
    keeper_long = (owner_size > 0) == (shape == "same")  # the keeper takes the owner's side of the book
    lots = draw(st.integers(1, 3000)) * p.step_size * (1 if keeper_long else -1)
    mark = market.mark_price or 10**3 * p.tick_size
    entry = mark + draw(st.integers(-mark // 10, mark // 10))
    cost = lots * entry // p.scale
    return Position(lots, cost, draw(st.integers(0, abs(cost) + 10**6)), snapshot)


@st.composite
def auction_states(draw, healthy: bool):
    """A position in auction and a keeper; `healthy`: the auction running,
    the mark fresh and the keeper funded (the bid then hinges on its terms
    and margins), else any of them off."""
    market_id = draw(st.sampled_from([fv.BTC, fv.BTC, fv.ETH]))
    p = params_of(market_id)
    price = draw(st.integers(10**3, 10**5)) * p.tick_size
    ages = [0, 1000] if healthy else [1000, p.oracle_max_age_ms, p.oracle_max_age_ms + 1, 10**6]
    index = draw(st.sampled_from([0, 10**9 + 7, -(3 * 10**9)]))
    dust = draw(st.sampled_from([0, 12_345, p.scale * 10**6 - 1]))
    market = fv.make_market(market_id, price if healthy or draw(st.booleans()) else 0,
                            oracle_time_ms=fv.BLOCK_TIME - draw(st.sampled_from(ages)), funding_index=index,
                            funding_dust=dust)
    if market.oracle_price:
        market = msgspec.structs.replace(market, mark_price=draw(st.sampled_from([price, price + p.tick_size])))
    owner_i, keeper_i = draw(st.permutations(range(4)))[:2]
    owner, keeper = fv.ADDRESSES[owner_i], fv.ADDRESSES[keeper_i]
    position = draw(owner_positions(market, p))
    positions = {(owner, market_id): position}
    held = draw(keeper_positions(market, p, position.size))
    if held is not None:
        positions[(keeper, market_id)] = held
    accounts = {owner: Account(draw(st.integers(0, 10**9)), ())}
    if healthy or draw(st.booleans()):
        collateral = draw(st.sampled_from([10**13, 10**9] if healthy else [0, 10**4, 10**13]))
        accounts[keeper] = Account(collateral, draw(nonce_lists))
    longs = sum(max(pos.size, 0) for pos in positions.values())
    market = msgspec.structs.replace(market, open_interest=longs + draw(st.sampled_from([0, 10**6])))
    state = fv.make_perps_state(accounts, [market], positions, {}, order_count=draw(st.integers(0, 100)))
    start, end = compute_auction_prices(position, market.mark_price or price, market, p)
    if not healthy and draw(st.booleans()):  # an auction with nothing to decay (the ladder starts none) still prices
        end = start
    lots = draw(st.integers(1, abs(position.size) // p.step_size)) * p.step_size
    if not healthy:
        lots = draw(st.sampled_from([lots, abs(position.size), abs(position.size) + p.step_size]))
    ago = draw(st.integers(0, p.auction_duration_ms - 1)) if healthy else \
        draw(st.sampled_from([0, 59_999, 60_000, 90_000, -5]))
    if healthy or draw(st.booleans()):
        start_ms = fv.BLOCK_TIME - ago
        state.set_auction(owner, market_id, Auction(lots, start, end, start_ms, start_ms + p.auction_duration_ms))
        state.commit(0)
    return state, market_id, owner_i, keeper_i


@st.composite
def auction_bids(draw, case, valid: bool):
    """A bid by the keeper for part of what is left at a limit no worse than
    the price now (valid), or one thing off."""
    state, market_id, owner_i, keeper_i = case
    p = params_of(market_id)
    owner = fv.ADDRESSES[owner_i]
    auction = state.auctions.get((owner, market_id))
    position = state.positions[(owner, market_id)]
    long = position.size > 0
    left = auction.size if auction else 10 * p.step_size
    most = max(1, min(left, abs(position.size)) // p.step_size)
    size = draw(st.sampled_from([draw(st.integers(1, most)), 1, most])) * p.step_size
    now = compute_auction_price(auction, fv.BLOCK_TIME, p) if auction else 10**3 * p.tick_size
    limit = now + draw(st.integers(0, 5)) * p.tick_size if long else max(1, now - draw(st.integers(0, 5)) * p.tick_size)
    leverage = draw(st.integers(1, p.max_leverage))
    account_i, market, target, what = keeper_i, market_id, owner, ""
    if not valid:
        what = draw(st.sampled_from(["limit", "size", "self", "market", "absent", "leverage", "step", "price",
                                     "any price", "user"]))
        if what == "limit":  # the price decayed one tick past the keeper's limit
            limit = now - p.tick_size if long else now + p.tick_size
        elif what == "size":
            size = min(left, abs(position.size)) + p.step_size
        elif what == "self":  # the owner bidding on its own auction
            account_i = owner_i
        elif what == "market":
            market = draw(st.sampled_from([3, 2 if market_id == 1 else 1, 2**32 - 1]))
        elif what == "absent":
            target = fv.ADDRESSES[draw(st.sampled_from([i for i in range(4) if i != owner_i]))]
        elif what == "leverage":
            leverage = draw(st.sampled_from([0, p.max_leverage + 1, 2**32 - 1]))
        elif what == "step":
            size = draw(st.sampled_from([size + 1, 0, MAX + 1, MAX - MAX % p.step_size]))
        elif what == "price":
            limit = 0
        elif what == "any price":  # any 256-bit limit is a signed EIP-712 uint256
            limit = draw(st.sampled_from([2**256 - 1, 2**64, 2**63]))
    kept = state.accounts.get(fv.ADDRESSES[account_i], Account()).nonces
    nonce, expiry = user_fields(draw, kept, what != "user", fv.BLOCK_TIME + 60_000)
    record = AuctionBid(fv.ADDRESSES[account_i], target, market, size, limit, leverage, nonce, expiry, b"")
    return signed(draw, record, account_i, what != "user")


@st.composite
def auction_cases(draw):
    healthy = draw(st.booleans())
    case = draw(auction_states(healthy))
    if not healthy and draw(st.integers(0, 7)) == 0:  # any bytes of the item's length
        item = bytes((2, 8)) + draw(st.binary(min_size=169, max_size=169))
    else:
        item = encode_item(draw(auction_bids(case, healthy and draw(st.sampled_from([True, True, False])))))
    ts = fv.BLOCK_TIME if healthy else draw(st.sampled_from([fv.BLOCK_TIME, fv.BLOCK_TIME + 30_000,
                                                              fv.BLOCK_TIME + 60_000]))
    ctx = fv.open_block_ctx(case[0], ts) if healthy or draw(st.integers(0, 5)) else TraceContext()
    return case[0], ctx, item


def check_deletions(onestep, pre_root, ctx, item, witness) -> int:
    """Each deleted leaf's opening with a forged sibling (another preimage)
    makes the step revert; returns how many leaves the step deleted."""
    deleted = [i for i, o in enumerate(witness.openings) if o.sibling]
    for i in deleted[:1]:
        openings = [o.as_arg() for o in witness.openings]
        sibling = bytearray(openings[i][3])
        sibling[-1] ^= 1
        openings[i] = openings[i][:3] + (bytes(sibling),)
        with pytest.raises(Exception, match="witness"):
            onestep.functions.apply(pre_root, ctx.as_arg(), item, openings, list(witness.nonces)).call()
    return len(deleted)


def check_agree(onestep, state, ctx, item) -> str:
    runner, pre_root, result, (root, ok, post_ctx) = run_both(onestep, state, ctx, item)
    assert onestep.functions.ctx_hash(post_ctx).call() == runner.ctx.hash()
    assert (root, ok) == (runner.state_root, result.ok)
    if not ok:
        assert root == pre_root  # a failed record changes nothing
        return "failed"
    return "applied, a leaf deleted" if check_deletions(onestep, pre_root, ctx, item, result.witness) else "applied"


def State_copy(state):
    from sequencer.core.state import State
    return State.from_tables(state.to_tables())


@settings(max_examples=get_examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=auction_cases())
def test_python_and_vyper_agree_on_auction_bids(onestep, case):
    state, ctx, item = case
    outcome = check_agree(onestep, state, ctx, item)
    event(f"AuctionBid {outcome}")


# --- ModifyOrder ------------------------------------------------------------------------

@st.composite
def modify_states(draw):
    accounts = draw(st.dictionaries(st.sampled_from(fv.ADDRESSES), st.builds(Account, st.integers(0, 10**13), nonce_lists),
                                    max_size=4))
    markets = [fv.make_market(fv.BTC, 60_000 * 10**6), fv.make_market(fv.ETH, 3_000 * 10**6)]
    orders = {}
    for address, nonce in draw(st.lists(st.tuples(st.sampled_from(fv.ADDRESSES), st.integers(0, 40)), min_size=1,
                                        max_size=5, unique=True)):
        market = draw(st.sampled_from([fv.BTC, fv.BTC, fv.ETH, 3]))
        p = params_of(market)
        tif = draw(st.sampled_from([0, 0, 2, 1]))
        record = PlaceOrder(address, market, draw(st.booleans()), draw(st.integers(1, 10**5)) * p.tick_size,
                            draw(st.integers(1, 10**3)) * p.step_size, draw(st.sampled_from([1, 10, 50, 51])), tif,
                            draw(st.integers(0, 7)) == 0, nonce,
                            fv.BLOCK_TIME + draw(st.sampled_from([60_000, 60_000, 0, -1])), b"")
        size = record.size
        orders[(address, nonce)] = fv.make_order(record, filled=draw(st.sampled_from([0, 0, size // 2, size])),
                                                 cancelled=draw(st.integers(0, 5)) == 0, seq=nonce + 1)
    positions = draw(order_epochs(orders))
    state = fv.make_perps_state(accounts, markets, positions, orders, order_count=draw(st.integers(0, 100)))
    for address, nonce in draw(st.lists(st.tuples(st.sampled_from(fv.ADDRESSES), st.integers(0, 60)), max_size=3,
                                        unique=True)):
        if (address, nonce) not in orders:
            state.set_trigger(address, nonce, Trigger(bytes(32), fv.BTC, True, 1, 1, 1, 1, 1, False, 0))
    state.commit(0)
    return state


@st.composite
def order_epochs(draw, orders: dict) -> dict:
    """Each order owner's position in the order's market (rules v4: its order
    epoch says whether the order is open): absent, or an epoch at, just above
    or just below one of its orders' seq (a liquidation, a forced close or the
    dead-man's switch), 0 or huge, on an epoch-only leaf or a held position."""
    positions = {}
    for (address, _), order in orders.items():
        key = (address, order.market)
        shape = draw(st.sampled_from(["absent", "absent", "at", "above", "below", "zero", "huge"]))
        if key in positions or shape == "absent":
            continue
        epoch = {"at": order.seq, "above": order.seq + 1, "below": order.seq - 1, "zero": 0,
                 "huge": 2**64 - 1}[shape]
        p = params_of(order.market)
        held = draw(st.sampled_from([None, Position(7 * p.step_size, 7 * p.step_size * 10**3 * p.tick_size // p.scale,
                                                    10**7, 5)]))
        if held is None and epoch == 0:
            continue  # an empty leaf is an absent one
        positions[key] = msgspec.structs.replace(held or Position(), order_epoch=epoch)
    return positions


def give_dead_order(draw, state, account: bytes) -> None:
    """An order resting by its flag (nonce 41, BTC) that its owner's order
    epoch cancelled: the epoch at its seq or above, on an epoch-only leaf or
    a held position (what a liquidation or the dead-man's switch leaves)."""
    record = PlaceOrder(account, fv.BTC, draw(st.booleans()), 60_000 * 10**6, 10 * BTC.step_size, 10,
                        draw(st.sampled_from([0, 2])), False, 41, fv.BLOCK_TIME + 60_000, b"")
    seq = draw(st.integers(1, 100))
    held = state.positions.get((account, fv.BTC)) or Position()
    epoch = draw(st.sampled_from([seq, seq, seq + 1, 2**64 - 1]))
    state.set_position(account, fv.BTC, msgspec.structs.replace(held, order_epoch=max(held.order_epoch, epoch)))
    state.set_order(account, 41, fv.make_order(record, seq=seq))
    state.commit(0)


@st.composite
def modify_orders(draw, state, valid: bool, dead: bool = False):
    """``dead``: every term valid, but the old order is dead by its owner's
    order epoch (rules v4 refuses it; v1-v3 took it)."""
    index = draw(st.integers(0, 3))
    account = fv.ADDRESSES[index]
    resting = [(n, o) for (a, n), o in state.orders.items() if a == account and not o.cancelled
               and o.filled < o.size and o.time_in_force != 1 and o.expiry >= fv.BLOCK_TIME and o.market != 3
               and (o.seq <= get_order_epoch(state, account, o.market)) == dead]
    if dead and not resting:
        give_dead_order(draw, state, account)
        resting = [(41, state.orders[(account, 41)])]
    if valid and not resting:  # give the signer a resting order (above its BTC epoch)
        record = PlaceOrder(account, fv.BTC, draw(st.booleans()), 60_000 * 10**6, 10 * BTC.step_size, 10,
                            draw(st.sampled_from([0, 2])), False, 41, fv.BLOCK_TIME + 60_000, b"")
        state.set_order(account, 41, fv.make_order(record, seq=max(42, get_order_epoch(state, account, fv.BTC) + 1)))
        state.commit(0)
        resting = [(41, state.orders[(account, 41)])]
    if valid:
        order_nonce, order = draw(st.sampled_from(resting))
    else:
        own = [n for (a, n) in state.orders if a == account]  # filled, cancelled, dead by epoch, expired, IOC or resting
        others = [n for (a, n) in state.orders if a != account]  # someone else's
        order_nonce = draw(st.sampled_from(own or [41])) if draw(st.booleans()) else \
            pick(draw, others + [41, U64], 0, U64)
        order = state.orders.get((account, order_nonce))
    p = params_of(order.market if order else fv.BTC)
    price = draw(st.integers(1, 10**5)) * p.tick_size
    size = draw(st.integers(1, 10**3)) * p.step_size
    if price * size < p.min_order_notional * p.scale:
        size = -(-p.min_order_notional * p.scale // price // p.step_size) * p.step_size
    if not valid:
        price, size = draw(st.sampled_from([(price, size), (price + 1, size), (price, size + 1), (0, size),
                                            (price, 0), (MAX + 1, size), (p.tick_size, p.step_size)]))
    kept = state.accounts.get(account, Account()).nonces
    nonce, expiry = user_fields(draw, kept, valid, fv.BLOCK_TIME + 30_000)
    if not valid and draw(st.integers(0, 2)) == 0:  # a nonce an order or a trigger already holds
        taken = [n for (a, n) in list(state.orders) + list(state.triggers) if a == account]
        nonce = draw(st.sampled_from(taken or [nonce]))
    return signed(draw, ModifyOrder(account, order_nonce, price, size, nonce, expiry, b""), index, valid)


@st.composite
def modify_cases(draw):
    state = draw(modify_states())
    if draw(st.integers(0, 15)) == 0:
        item = bytes((2, 10)) + draw(st.binary(min_size=125, max_size=125))
    else:
        mode = draw(st.sampled_from(["valid", "valid", "invalid", "dead"]))
        item = encode_item(draw(modify_orders(state, mode != "invalid", dead=mode == "dead")))
    ts = draw(st.sampled_from([fv.BLOCK_TIME, fv.BLOCK_TIME, fv.BLOCK_TIME + 30_000]))
    ctx = fv.open_block_ctx(state, ts) if draw(st.sampled_from([True, True, True, False])) else TraceContext()
    return state, ctx, item


@settings(max_examples=get_examples(120), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=modify_cases())
def test_python_and_vyper_agree_on_modify_orders(onestep, case):
    state, ctx, item = case
    record = decode_item(item) if len(item) == 127 else None
    old = state.orders.get((record.account, record.order_nonce)) if isinstance(record, ModifyOrder) else None
    dead = old is not None and not old.cancelled and old.seq <= get_order_epoch(state, record.account, old.market)
    outcome = check_agree(onestep, state, ctx, item)
    event(f"ModifyOrder {outcome}")
    if dead:
        event(f"ModifyOrder of an order dead by its owner's epoch {outcome}")


# --- attackers' witnesses and the pending bids -------------------------------------------

def honest_step(case_name: str):
    """A vector case's state, ctx, item and Python result, rebuilt."""
    case = next(c for c in fv.auction_cases() if c["name"] == case_name)
    assert case["ok"]
    return case


def vector_args(case: dict) -> tuple:
    from test_onestep_vectors import b, ctx_arg, opening_arg
    return (b(case["state_root"]), ctx_arg(case["ctx"]), b(case["item"]),
            [opening_arg(o) for o in case["openings"]], case["nonces"])


def with_word(opening: tuple, word: int, value: int) -> tuple:
    leaf = bytearray(opening[1])
    leaf[32 * word:32 * word + 32] = value.to_bytes(32, "big", signed=True)
    return (opening[0], bytes(leaf)) + tuple(opening[2:])


@pytest.mark.parametrize("name", ["auction bid", "modify order"])
def test_the_honest_witness_applies(onestep, name):
    case = honest_step(name)
    root, _, ok = onestep.functions.apply(*vector_args(case)).call()
    assert ok and root == bytes.fromhex(case["post_state_root"][2:]) != bytes.fromhex(case["state_root"][2:])


@pytest.mark.parametrize("forge", [
    "auction start price", "auction lots", "keeper collateral", "owner margin", "market mark", "a write left out",
    "writes swapped", "nonces"])
def test_a_forged_auction_witness_reverts(onestep, forge):
    """A witness lying about a leaf the bid reads (a cheaper auction, more
    lots, more collateral or margin, another mark), leaving a write out,
    opening the writes in another order or naming other kept nonces proves
    nothing: the step reverts."""
    state_root, ctx, item, openings, nonces = vector_args(honest_step("auction bid"))
    openings = list(openings)
    if forge == "auction start price":
        openings[0] = with_word(openings[0], 1, 1)
    elif forge == "auction lots":
        openings[0] = with_word(openings[0], 0, 10**12)
    elif forge == "keeper collateral":
        openings[3] = with_word(openings[3], 0, 10**15)
    elif forge == "owner margin":
        openings[2] = with_word(openings[2], 2, 10**12)
    elif forge == "market mark":
        openings[1] = with_word(openings[1], 6, 10**6)
    elif forge == "a write left out":
        openings = openings[:-1]
    elif forge == "writes swapped":
        openings[5], openings[6] = openings[6], openings[5]
    elif forge == "nonces":
        nonces = [4]
    with pytest.raises(Exception, match="witness"):
        onestep.functions.apply(state_root, ctx, item, openings, nonces).call()


EPOCH_FORGES = {"epoch shown lower": "modify order, dead by its owner's order epoch (above its seq)",
                "epoch shown at zero": "modify order, dead by the epoch of a held position",
                "position shown absent": "modify order, dead by its owner's order epoch (at its seq)",
                "position left out": "modify order, dead by its owner's order epoch (at its seq)",
                "position shown present": "modify order",
                "live position's epoch shown higher": "modify order, its owner's order epoch below its seq"}


@pytest.mark.parametrize("forge", ["old order uncancelled", "new slot claimed empty", "trigger slot claimed empty",
                                   "account collateral", *EPOCH_FORGES])
def test_a_forged_modify_witness_reverts(onestep, forge):
    """ModifyOrder: a cancelled order shown open, an order or trigger holding
    the new nonce shown absent, a richer account; rules v4: the owner's order
    epoch shown lower (or zero, or its position absent, or another market's
    or left out) to revive a dead order, or a live order's epoch
    shown higher (or a position invented) to refuse an honest modify: the
    step reverts."""
    name = {"old order uncancelled": "modify order, cancelled", "new slot claimed empty": "modify order, the nonce of an order",
            "trigger slot claimed empty": "modify order, the nonce of a trigger", **EPOCH_FORGES}.get(forge, "modify order")
    case = next(c for c in fv.auction_cases() if c["name"] == name)
    state_root, ctx, item, openings, nonces = vector_args(case)
    openings = list(openings)
    if forge == "old order uncancelled":
        openings[0] = with_word(openings[0], 3, 0)
    elif forge in ("new slot claimed empty", "trigger slot claimed empty"):
        i = 1 if forge == "new slot claimed empty" else 2
        assert openings[i][0]
        openings[i] = (False, b"") + tuple(openings[i][2:])
    elif forge == "account collateral":
        openings[3] = with_word(openings[3], 0, 10**15)
    else:
        openings = forge_position(onestep, case, forge, openings)
    with pytest.raises(Exception, match="witness"):
        onestep.functions.apply(state_root, ctx, item, openings, nonces).call()


def forge_position(onestep, case: dict, forge: str, openings: list) -> list:
    """The ModifyOrder witness with its fifth opening (the owner's position in
    the old order's market) lying as ``forge`` says."""
    present, value, proof, sibling = openings[4]
    if forge == "epoch shown lower":
        return openings[:4] + [with_word(openings[4], 4, 1)] + openings[5:]
    if forge == "epoch shown at zero":
        return openings[:4] + [(present, value[:128], proof, sibling)] + openings[5:]
    if forge == "live position's epoch shown higher":
        return openings[:4] + [(present, value[:128] + (10**6).to_bytes(32, "big"), proof, sibling)] + openings[5:]
    if forge in ("position shown absent", "position shown present"):
        return openings[:4] + [(not present, b"" if present else b"\x00" * 128, proof, sibling)] + openings[5:]
    assert forge == "position left out"
    return openings[:4]


def dead_order_state(epoch: int, held: Position | None = None):
    """alice's resting buy (nonce 20, seq 3, BTC, flag clear), her BTC
    position ``held`` (or none) with order epoch ``epoch``, order count 5."""
    from prover.hashing import keccak
    a, lot = fv.ADDRESSES[0], BTC.step_size
    old = Order(keccak(b"quote"), 20 * lot, 0, False, fv.BTC, True, fv.BTC_PRICE, 10, 0, False,
                fv.BLOCK_TIME + 60_000, 3)
    positions = {(a, fv.BTC): msgspec.structs.replace(held or Position(), order_epoch=epoch)} \
        if held is not None or epoch else {}
    return fv.make_perps_state({a: Account(10**9, ())}, [fv.make_market(fv.BTC, fv.BTC_PRICE),
                                                         fv.make_market(fv.ETH, 3_000 * 10**6)],
                               positions, {(a, 20): old}, order_count=5)


def modify_of_20(price: int = fv.BTC_PRICE - 10**6, nonce: int = 21) -> ModifyOrder:
    return fv.sign(ModifyOrder(fv.ADDRESSES[0], 20, price, 10 * BTC.step_size, nonce, fv.BLOCK_TIME + 60_000, b""),
                   fv.KEYS[0])


def test_the_position_of_another_market_cannot_stand_for_the_old_orders(onestep):
    """Pre: alice's BTC quote (seq 3) dead by her BTC epoch 3; no ETH
    position.  Op: the ModifyOrder with its fifth opening the (absent) ETH
    position, epoch 0.  Post: the step reverts (the opening must be the old
    order's market's); the honest witness refuses the modify, root unchanged."""
    from prover.keys import get_position_key
    state = dead_order_state(3)
    item = encode_item(modify_of_20())
    runner, pre_root, result, (root, ok, _) = run_both(onestep, state, fv.open_block_ctx(state), item)
    assert not result.ok and (ok, root) == (False, pre_root) and root == runner.state_root
    openings = [o.as_arg() for o in result.witness.openings]
    eth = get_position_key(fv.ADDRESSES[0], fv.ETH)
    from prover.trace import Opening
    openings[4] = Opening(eth, None, runner.tree.prove(eth)).as_arg()
    with pytest.raises(Exception, match="witness"):
        onestep.functions.apply(pre_root, fv.open_block_ctx(state).as_arg(), item, openings, []).call()


def bid_on(state, owner_i: int, keeper_i: int, size: int, nonce: int = 1):
    auction = state.auctions[(fv.ADDRESSES[owner_i], fv.BTC)]
    return encode_item(fv.sign(AuctionBid(fv.ADDRESSES[keeper_i], fv.ADDRESSES[owner_i], fv.BTC, size, 2**200, 5,
                                          nonce, fv.BLOCK_TIME + 60_000, b""), fv.KEYS[keeper_i])), auction


def auction_state(owner: bytes, size: int, lots: int, margin: int = 10**6):
    p = BTC
    position = Position(size, size * fv.BTC_PRICE // p.scale, margin, 0)
    market = msgspec.structs.replace(fv.make_market(fv.BTC, fv.BTC_PRICE), open_interest=max(size, 0))
    state = fv.make_perps_state({fv.ADDRESSES[1]: Account(10**12, ())}, [market], {(owner, fv.BTC): position}, {})
    start, end = compute_auction_prices(position, fv.BTC_PRICE, market, p)
    state.set_auction(owner, fv.BTC, Auction(lots, start, end, fv.BLOCK_TIME - 10_000, fv.BLOCK_TIME + 50_000))
    state.commit(0)
    return state


def test_a_bid_that_sells_the_auction_out_deletes_its_leaf(onestep):
    """The last lots: the auction leaf is deleted on both sides (and the
    owner's position with it when it ends flat with no margin); a forged
    deletion sibling reverts."""
    lot = BTC.step_size
    for margin, lots, size in ((10**6, 50 * lot, 100 * lot), (0, 100 * lot, 100 * lot), (10**6, 100 * lot, -100 * lot)):
        state = auction_state(fv.ADDRESSES[0], size, lots, margin)
        ctx = fv.open_block_ctx(state)
        item = encode_item(fv.sign(AuctionBid(fv.ADDRESSES[1], fv.ADDRESSES[0], fv.BTC, lots, 2**200 if size > 0 else 1,
                                              5, 1, fv.BLOCK_TIME + 60_000, b""), fv.KEYS[1]))
        runner, pre_root, result, (root, ok, _) = run_both(onestep, State_copy(state), ctx, item)
        assert ok and result.ok and root == runner.state_root
        assert runner.tree.get(get_auction_key(fv.ADDRESSES[0], fv.BTC)) is None
        assert check_deletions(onestep, pre_root, ctx, item, result.witness) >= 1


def test_the_insurance_funds_auction_is_pending(onestep):
    """An auction of the fund's own position (the ladder never starts one):
    its funding settles into the fund, not ported: pending on both sides."""
    lot = BTC.step_size
    state = auction_state(bytes(20), 100 * lot, 50 * lot)
    ctx = fv.open_block_ctx(state)
    item = encode_item(fv.sign(AuctionBid(fv.ADDRESSES[1], bytes(20), fv.BTC, lot, 2**200, 5, 1,
                                          fv.BLOCK_TIME + 60_000, b""), fv.KEYS[1]))
    runner = TraceRunner(State_copy(state), fv.RULES, ctx=ctx)
    with pytest.raises(PendingKind):
        runner.copy().step(item)
    keys = [get_auction_key(bytes(20), fv.BTC)]
    from prover.keys import get_account_key, get_market_key, get_position_key
    keys += [get_market_key(fv.BTC), get_position_key(bytes(20), fv.BTC), get_account_key(fv.ADDRESSES[1]),
             get_position_key(fv.ADDRESSES[1], fv.BTC)]
    from prover.trace import Opening
    openings = [Opening(k, runner.tree.get(k), runner.tree.prove(k)).as_arg() for k in keys]
    with pytest.raises(Exception, match="pending"):
        onestep.functions.apply(runner.state_root, ctx.as_arg(), item, openings, []).call()


def test_the_price_decays_with_the_block_time(onestep):
    """The same bid at a limit one tick above the price at 20 s: refused at
    10 s (the price is higher), taken at 20 s and later, on both sides."""
    lot = BTC.step_size
    state = auction_state(fv.ADDRESSES[0], 100 * lot, 50 * lot)
    auction = state.auctions[(fv.ADDRESSES[0], fv.BTC)]
    assert auction.start_price > auction.end_price
    at = auction.start_ms + 20_000
    limit = compute_auction_price(auction, at, BTC)
    record = fv.sign(AuctionBid(fv.ADDRESSES[1], fv.ADDRESSES[0], fv.BTC, lot, limit, 5, 1,
                                fv.BLOCK_TIME + 60_000, b""), fv.KEYS[1])
    outcomes = [check_agree(onestep, State_copy(state), fv.open_block_ctx(state, ts), encode_item(record))
                for ts in (auction.start_ms + 10_000, at, at + 5_000)]
    assert outcomes == ["failed", "applied", "applied"]


def test_auction_and_modify_items_decode_to_their_records():
    records = [AuctionBid(fv.ADDRESSES[0], fv.ADDRESSES[1], 2**32 - 1, U64, 2**256 - 1, 2**32 - 1, U64, 0,
                          b"\x01" * 65),
               ModifyOrder(fv.ADDRESSES[2], U64, U64, 1, 0, U64, b"\x02" * 65)]
    for record in records:
        assert decode_item(encode_item(record)) == record
    assert len(encode_item(records[0])) == 171 and len(encode_item(records[1])) == 127



def test_a_modify_price_past_its_width_is_a_noop_the_rule_refuses_too():
    """The packed widths only drop records the rule refuses: a ModifyOrder
    price past 8 bytes has no item (NOOP) and fails with invalid_price."""
    from prover.records import encode_record_item
    from sequencer.core.transition import apply_record
    state = fv.make_perps_state({}, [fv.make_market(fv.BTC, fv.BTC_PRICE)], {}, {
        (fv.ADDRESSES[0], 20): fv.make_order(PlaceOrder(fv.ADDRESSES[0], fv.BTC, True, fv.BTC_PRICE, 10 * BTC.step_size,
                                                        10, 0, False, 20, fv.BLOCK_TIME + 60_000, b""))})
    record = fv.sign(ModifyOrder(fv.ADDRESSES[0], 20, 2**64, BTC.step_size * 10, 30, fv.BLOCK_TIME + 60_000, b""),
                     fv.KEYS[0])
    assert encode_record_item(record) is None
    assert apply_record(state, record, fv.BLOCK_TIME, fv.RULES).code == "invalid_price"
