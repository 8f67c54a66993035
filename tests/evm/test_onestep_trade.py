"""The differential test of the Trade one-step (onestep.vy handing tag 16 to
onestep_trade.vy): Hypothesis generates books and positions (a market with a
fresh or stale mark, any funding index, dust, basis EMA and last trade; the
maker's and the taker's accounts, positions long, short, flat with leftover
margin or absent, owing or owed funding; a resting maker order and the taker
placed last) and a Trade, valid by construction or broken on one point
(unknown, cancelled, expired, wrong-market and overfilled orders, a self
trade, the same side, a taker that is not the order placed last, a maker
placed after it or IOC, a post-only taker, prices outside the limits, off
the tick, sizes off the step, 0 or past the maximum, a stale or missing mark,
an unknown market or account, reduce-only orders that would open, too little
collateral for the margin or the fee, margins at and below the bankruptcy
price, raw item bytes); it runs the Python rule (prover.trace over
sequencer.core) and the contracts on py-evm from the same pre-state and
requires the same post-state root and receipt outcome.  A forged witness
reverts."""
from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from prover import fraud_vectors as fv
from prover.keys import get_account_key, get_order_key
from prover.plan_trade import get_trade_reads, get_trade_writes
from prover.records import PendingKind, decode_item, decode_record_item, encode_item, encode_record_item
from prover.trace import TraceRunner, build_tree
from sequencer.core.presets import DEVNET
from sequencer.core.records import Trade
from sequencer.core.rules.base import get_market_params
from sequencer.core.state import Account, Order, Position, State
from sequencer.core.transition import apply_record

pytestmark = pytest.mark.evm

MAX = DEVNET.max_amount
PRICES = {fv.BTC: 60_000 * 10**6, fv.ETH: 3_000 * 10**6}
MUTATIONS = ("unknown maker order", "unknown taker order", "maker cancelled", "taker cancelled", "maker expired",
             "taker expired", "wrong market", "maker overfilled", "taker overfilled", "self trade", "same side",
             "taker not last", "maker placed after", "maker IOC", "taker post-only", "price above the buy limit",
             "price below the sell limit", "off tick", "off step", "size 0", "price 0", "size past the maximum",
             "stale mark", "no mark", "unknown market", "market not in the state", "maker unknown account",
             "taker unknown account", "maker reduce-only", "taker reduce-only", "no collateral", "broke maker",
             "leverage 1", "taker fee edge")


@pytest.fixture(scope="module")
def onestep(onestep_contract):
    return onestep_contract


@pytest.fixture(scope="module")
def family(deploy):
    """onestep_trade.vy on its own (the Hypothesis test calls it directly:
    py-evm runs it in a third of the time of a call through onestep.vy)."""
    return deploy("onestep_trade", *fv.ONESTEP_PARAMS, fv.MARKETS)


def params_of(market_id: int):
    return get_market_params(fv.RULES, market_id)


@st.composite
def positions(draw, p, market, price: int, size: int):
    """A position of one side: absent, flat (with or without leftover
    margin) or long / short, around the trade's size, margined from broke to
    rich, owing or owed funding since its snapshot."""
    shape = draw(st.integers(0, 9))
    index = market.funding_index
    if shape == 0:
        return None
    if shape == 1:
        return Position(0, 0, 0, index + draw(st.integers(-5, 5)))
    if shape == 2:
        return Position(0, 0, draw(st.integers(1, 10**9)), index)
    lots = draw(st.sampled_from([size, size, size // 2 // p.step_size * p.step_size or p.step_size, 2 * size,
                                 draw(st.integers(1, 3000)) * p.step_size]))
    lots *= draw(st.sampled_from([1, -1]))
    spread = draw(st.sampled_from([price // 1000, price // 100, price // 20])) // p.tick_size
    entry = price + draw(st.integers(-spread, spread)) * p.tick_size
    cost = lots * entry // p.scale
    margin = draw(st.one_of(st.integers(abs(cost) // 10, abs(cost) // 2 + 1), st.integers(abs(cost) // 10, 10**11),
                            st.integers(0, abs(cost) // 30 + 1)))
    snapshot = index + draw(st.sampled_from([0, 0, 0, 1, -1, 10**9, -(10**9) - 3, 10**12]))
    return Position(lots, cost, margin, snapshot)


def make_order(market: int, is_buy: bool, price: int, size: int, *, filled: int = 0, leverage: int = 10,
               tif: int = 0, reduce_only: bool = False, expiry: int = fv.BLOCK_TIME + 1, seq: int = 1,
               cancelled: bool = False) -> Order:
    return Order(fv.keccak(b"order%d" % seq), size, filled, cancelled, market, is_buy, price, leverage, tif,
                 reduce_only, expiry, seq)


@st.composite
def trade_cases(draw):
    """(state, ctx, item, name): a book of a resting maker order and the
    taker placed last, both sides' accounts and positions, and a Trade
    between them, valid or broken on one point."""
    market_id = draw(st.sampled_from([fv.BTC, fv.BTC, fv.ETH]))
    p = params_of(market_id)
    price = PRICES[market_id] + draw(st.integers(-3000, 3000)) * p.tick_size
    mark = max(p.tick_size, price + draw(st.sampled_from([0, 0, p.tick_size, -p.tick_size, price // 100,
                                                           -price // 100, 7])))
    oracle = mark + draw(st.sampled_from([0, 0, 0, 3 * p.tick_size, -5 * p.tick_size]))
    band = oracle * p.mark_basis_band_ppm // 10**6
    market = msgspec.structs.replace(
        fv.make_market(market_id, oracle, oracle_time_ms=fv.BLOCK_TIME - draw(st.sampled_from([0, 1000, 30_000]))),
        mark_price=mark, funding_index=draw(st.integers(-10**12, 10**12)),
        funding_dust=draw(st.integers(0, p.scale * 10**6 - 1)), basis_ema=draw(st.integers(-band, band)),
        last_trade_price=draw(st.sampled_from([0, price, oracle])),
        last_trade_time_ms=draw(st.sampled_from([0, fv.BLOCK_TIME, fv.BLOCK_TIME - 1, fv.BLOCK_TIME - 30_000,
                                                  fv.BLOCK_TIME - 10**6])))
    size = draw(st.integers(1, 2000)) * p.step_size
    mi, ti = draw(st.sampled_from([(0, 1), (1, 0), (2, 3), (3, 1)]))
    maker, taker = fv.ADDRESSES[mi], fv.ADDRESSES[ti]
    held = {maker: draw(positions(p, market, price, size)), taker: draw(positions(p, market, price, size))}
    market = msgspec.structs.replace(market, open_interest=sum(max(q.size, 0) for q in held.values() if q)
                                     + draw(st.integers(0, 10**8)))
    rich = st.sampled_from([10**12, 10**11, 5 * 10**10, 10**10, 10**9, 10**8]).flatmap(lambda c: st.integers(c, 2 * c))
    accounts = {maker: Account(draw(rich), (1, 2)), taker: Account(draw(rich), ())}
    order_count = draw(st.integers(2, 60))
    maker_buys = draw(st.booleans())
    expiries = st.sampled_from([fv.BLOCK_TIME + 60_000] * 8 + [fv.BLOCK_TIME, fv.BLOCK_TIME + 5, 2**64 - 1])
    ticks = st.integers(0, 50).map(lambda k: k * p.tick_size)
    maker_limit = price + draw(ticks) if maker_buys else price - draw(ticks)
    taker_limit = price - draw(ticks) if maker_buys else price + draw(ticks)
    maker_filled = draw(st.sampled_from([0, 0, p.step_size * 3]))
    maker_order = make_order(market_id, maker_buys, maker_limit, size + maker_filled + draw(st.sampled_from([0, size])),
                             filled=maker_filled, leverage=draw(st.sampled_from([1, 2, 5, 10, 20, p.max_leverage])),
                             tif=draw(st.sampled_from([0, 0, 2])), reduce_only=draw(st.sampled_from([False] * 9 + [True])),
                             seq=draw(st.integers(1, order_count - 1)), expiry=draw(expiries))
    taker_order = make_order(market_id, not maker_buys, taker_limit, size + draw(st.sampled_from([0, size])),
                             leverage=draw(st.sampled_from([1, 2, 5, 10, 20, p.max_leverage])), tif=draw(st.sampled_from([0, 1, 1])),
                             reduce_only=draw(st.sampled_from([False] * 9 + [True])), seq=order_count,
                             expiry=draw(expiries))
    maker_nonce, taker_nonce = draw(st.integers(0, 2**64 - 1)), draw(st.integers(0, 50))
    record = Trade(market_id, maker, maker_nonce, taker, taker_nonce, price, size)
    markets = [market]
    name = draw(st.sampled_from(("valid",) * len(MUTATIONS) + MUTATIONS))
    r = msgspec.structs.replace
    if name == "unknown maker order":
        record = r(record, maker_nonce=maker_nonce ^ 1)
    elif name == "unknown taker order":
        record = r(record, taker_nonce=taker_nonce + 1)
    elif name == "maker cancelled":
        maker_order = r(maker_order, cancelled=True)
    elif name == "taker cancelled":
        taker_order = r(taker_order, cancelled=True)
    elif name == "maker expired":
        maker_order = r(maker_order, expiry=fv.BLOCK_TIME - 1)
    elif name == "taker expired":
        taker_order = r(taker_order, expiry=fv.BLOCK_TIME - 1)
    elif name == "wrong market":
        maker_order = r(maker_order, market=3 - market_id)
    elif name == "maker overfilled":
        maker_order = r(maker_order, filled=maker_order.size - size + p.step_size)
    elif name == "taker overfilled":
        record = r(record, size=taker_order.size + p.step_size)
    elif name == "self trade":
        record = r(record, taker=maker)
        taker = maker
    elif name == "same side":
        taker_order = r(taker_order, is_buy=maker_buys)
    elif name == "taker not last":
        order_count += 1
    elif name == "maker placed after":
        maker_order = r(maker_order, seq=order_count + 1)
    elif name == "maker IOC":
        maker_order = r(maker_order, time_in_force=1)
    elif name == "taker post-only":
        taker_order = r(taker_order, time_in_force=2)
    elif name == "price above the buy limit":
        record = r(record, price=max(maker_limit, taker_limit) + p.tick_size)
    elif name == "price below the sell limit":
        record = r(record, price=min(maker_limit, taker_limit) - p.tick_size)
    elif name == "off tick":
        record = r(record, price=price + draw(st.integers(1, p.tick_size - 1)))
    elif name == "off step":
        record = r(record, size=size - draw(st.integers(1, p.step_size - 1)))
    elif name == "size 0":
        record = r(record, size=0)
    elif name == "price 0":
        record = r(record, price=0)
    elif name == "size past the maximum":
        record = r(record, size=(MAX // p.step_size + 1) * p.step_size)
    elif name == "stale mark":
        markets = [r(market, oracle_time_ms=fv.BLOCK_TIME - p.oracle_max_age_ms - 1)]
    elif name == "no mark":
        markets = [r(market, mark_price=0) if draw(st.booleans()) else r(market, oracle_price=0)]
    elif name == "unknown market":
        record = r(record, market=draw(st.sampled_from([0, 3, 2**32 - 1])))
    elif name == "market not in the state":
        markets = []
    elif name == "maker unknown account":
        del accounts[maker]
    elif name == "taker unknown account":
        accounts.pop(taker, None)
    elif name == "maker reduce-only":
        maker_order = r(maker_order, reduce_only=True)
    elif name == "taker reduce-only":
        taker_order = r(taker_order, reduce_only=True)
    elif name == "no collateral":
        accounts[draw(st.sampled_from([maker, taker]))] = Account(draw(st.integers(0, 10)), ())
    elif name == "broke maker":
        if held[maker] is not None and held[maker].size:
            held[maker] = r(held[maker], margin=0)
    elif name == "taker fee edge":  # a fresh taker with the margin and the fee to the unit, or one short
        held[taker] = None
        notional = size * price // p.scale
        margin = -(-notional // taker_order.leverage)
        fee = -(-notional * p.taker_fee_ppm // 10**6)
        accounts[taker] = Account(margin + fee - draw(st.integers(0, 1)), ())
    elif name == "leverage 1":
        maker_order, taker_order = r(maker_order, leverage=1), r(taker_order, leverage=1)
    orders = {(maker, maker_nonce): maker_order, (taker, taker_nonce): taker_order}
    positions_ = {(a, market_id): q for a, q in held.items() if q is not None}
    state = fv.make_perps_state(accounts, markets, positions_, orders, order_count=order_count)
    ts = fv.BLOCK_TIME + draw(st.sampled_from([0, 0, 0, 5, 11]))
    return state, fv.open_block_ctx(state, ts), encode_item(record), name


def copy_state(state: State) -> State:
    return State.from_tables(state.to_tables())


def check_pending(family, state, ctx, item):
    """The reference raised PendingKind: the contract, given the honest
    witness up to that point, reverts "pending"."""
    runner = TraceRunner(copy_state(state), fv.RULES, ctx=ctx)
    pre_tree, pre_root = runner.tree.copy(), runner.state_root
    t = decode_record_item(bytes(item))
    assert runner._apply(t)[0]
    openings = list(runner._open(pre_tree, [(k, False) for k in get_trade_reads(t)]
                                 + [(k, True) for k in get_trade_writes(t)]))
    with pytest.raises(Exception, match="pending"):
        family.functions.apply(pre_root, ctx.as_arg(), item, [o.as_arg() for o in openings], []).call()


def error_code(state: State, item: bytes, ts: int) -> str:
    error = apply_record(copy_state(state), decode_item(item), ts, fv.RULES)
    return "applied" if error is None else error.code


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=trade_cases())
def test_python_and_vyper_agree_on_trades(family, case):
    state, ctx, item, name = case
    code = error_code(state, item, ctx.timestamp_ms)
    runner = TraceRunner(copy_state(state), fv.RULES, ctx=ctx)
    pre_root = runner.state_root
    try:
        result = runner.step(item)
    except PendingKind:
        event("pending")
        check_pending(family, state, ctx, item)
        return
    root, ok = family.functions.apply(pre_root, ctx.as_arg(), item,
                                      [o.as_arg() for o in result.witness.openings], []).call()
    assert (root, ok) == (runner.state_root, result.ok), (name, code)
    assert runner.ctx == ctx  # a Trade leaves the trace context as it was
    if not ok:
        assert root == pre_root
    event(f"{name}: {code}")
    if ok:
        t = decode_item(item)
        for who in (t.maker, t.taker):
            before = state.positions.get((who, t.market))
            after = runner.state.positions.get((who, t.market))
            if before is not None and before.size and after.size == 0:
                event("a position closed whole (its leaf deleted)")
            elif before is not None and before.size * after.size < 0:
                event("a position flipped")


def mutate(draw, openings: list) -> list:
    """The honest witness with one lie: an opening dropped, duplicated or
    swapped, its presence flipped, a byte of its value, a sibling, its
    bitmap or its deletion sibling changed (for a position closed whole:
    none, a leaf or a node that is not the deepest sibling, a neighbour
    leaf with another key)."""
    out = [list(o) for o in openings]
    i = draw(st.integers(0, len(out) - 1))
    deleting = [k for k, o in enumerate(out) if o[3]]
    if deleting and draw(st.booleans()):  # a position closed whole: lie about the shape around it
        k = draw(st.sampled_from(deleting))
        out[k][3] = draw(st.sampled_from([b"", b"\x00" + bytes(64), b"\x01" + bytes(64), bytes(out[k][3][:-1]) + b"\x01",
                                          b"\x00" + bytes(out[k][3][1:33])[::-1] + bytes(out[k][3][33:])]))
        return [tuple(o) for o in out]
    how = draw(st.sampled_from(["drop", "swap", "present", "value", "sibling", "bitmap", "duplicate", "extra byte",
                                "deletion sibling"]))
    if how == "drop":
        del out[i]
    elif how == "swap":
        j = draw(st.integers(0, len(out) - 1))
        out[i], out[j] = out[j], out[i]
    elif how == "duplicate":
        out.insert(i, list(out[i]))
    elif how == "present":
        out[i][0] = not out[i][0]
    elif how == "value":
        value = bytearray(out[i][1] or b"\x00" * 32)
        k = draw(st.integers(0, len(value) - 1))
        value[k] ^= draw(st.integers(1, 255))
        out[i][1] = bytes(value)
    elif how == "extra byte":
        out[i][1] = out[i][1] + b"\x00"
    elif how == "sibling":
        bitmap, siblings, other_key, other_hash = out[i][2]
        siblings = list(siblings) + [b"\x11" * 32] if not siblings else [b"\x11" * 32] + list(siblings)[1:]
        out[i][2] = (bitmap, siblings, other_key, other_hash)
    elif how == "deletion sibling":  # on an opening that deletes nothing, the field is not read
        out[i][3] = b"\x00" + bytes(64)
    else:
        bitmap, siblings, other_key, other_hash = out[i][2]
        out[i][2] = (bitmap ^ (1 << draw(st.integers(0, 20))), siblings, other_key, other_hash)
    return [tuple(o) for o in out]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=trade_cases(), data=st.data())
def test_a_forged_witness_reverts_or_changes_nothing(family, case, data):
    """An attacker's witness: one opening of the honest one changed. The step
    reverts, or (a lie about what the rule never reads, such as the value of
    an absent leaf) gives the honest result: never another root or outcome."""
    state, ctx, item, _ = case
    runner = TraceRunner(copy_state(state), fv.RULES, ctx=ctx)
    pre_root = runner.state_root
    try:
        result = runner.step(item)
    except PendingKind:
        return
    honest = [o.as_arg() for o in result.witness.openings]
    forged = mutate(data.draw, honest)
    try:
        root, ok = family.functions.apply(pre_root, ctx.as_arg(), item, forged, []).call()
    except Exception as exc:  # reverted: it proves nothing
        event(f"reverted: {str(exc).split(':')[-1].strip()}")
        return
    event("same result")
    assert (root, ok) == (runner.state_root, result.ok)


def test_a_trade_outside_the_item_widths_is_refused_by_the_rule():
    """The packed layout's widths (market 4, nonces 8, prices and sizes 8
    bytes) cover every Trade the rule can apply: one with a field past its
    width is a NOOP item, and the rule fails it with no change."""
    case = fv.trade_cases()[0]
    assert case["ok"]
    a, b = fv.ADDRESSES[:2]
    lot, price = 10_000, fv.BTC_PRICE
    good = Trade(fv.BTC, a, 20, b, 30, price, 10 * lot)
    r = msgspec.structs.replace
    for bad in (r(good, market=2**32 + fv.BTC), r(good, maker_nonce=2**64 + 20), r(good, taker_nonce=-1),
                r(good, price=2**64 + price), r(good, size=2**64 + 10 * lot), r(good, price=-price),
                r(good, maker=a + b"\x00"), r(good, taker=b[1:])):
        assert encode_record_item(bad) is None
        state = trade_book()
        before = build_tree(state).root
        assert apply_record(state, bad, fv.BLOCK_TIME, fv.RULES) is not None
        assert build_tree(state).root == before
    state = trade_book()
    assert apply_record(state, good, fv.BLOCK_TIME, fv.RULES) is None


def trade_book() -> State:
    """The vectors' first trade's book: a's resting buy (a, 20), b's sell (b, 30) placed last."""
    a, b = fv.ADDRESSES[:2]
    lot, price = 10_000, fv.BTC_PRICE
    maker = Order(b"\x01" * 32, 20 * lot, 0, False, fv.BTC, True, price, 10, 0, False, fv.BLOCK_TIME + 60_000, 1)
    taker = Order(b"\x02" * 32, 20 * lot, 0, False, fv.BTC, False, price, 10, 1, False, fv.BLOCK_TIME + 60_000, 2)
    return fv.make_perps_state({a: Account(5 * 10**8, ()), b: Account(5 * 10**8, ())}, [fv.make_market(fv.BTC, price)],
                               {}, {(a, 20): maker, (b, 30): taker})


def test_valid_trades_change_the_root_and_broken_ones_do_not():
    """The vectors' trades: each valid one applies and changes the root, each broken one fails with none."""
    cases = fv.trade_cases()
    assert sum(c["ok"] for c in cases) >= 6
    for c in cases:
        assert (c["post_state_root"] != c["state_root"]) is c["ok"], c["name"]
        assert len(c["openings"]) == (16 if c["ok"] else 8), c["name"]
