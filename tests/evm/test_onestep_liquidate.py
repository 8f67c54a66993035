"""The differential test of the liquidation ladder's one-steps (onestep.vy
handing Liquidate, AuctionEnd and ForcedClose to onestep_liquidate.vy).

Hypothesis generates states (markets with fresh, stale and missing marks,
any funding index and dust; positions long and short, healthy, liquidatable
and bankrupt, with funding owed or due, flat ones left in the dict; the
insurance fund's own position absent, long or short, and its balance from 0
up; orders resting; auctions running and ended) and records (valid and
adversarial: the fund's account, unlisted markets, makers named under a
policy without the book, up to 8 makers, inbox indexes out of order, raw item
bytes), runs the Python rules (prover.trace with prover.plan_liquidate) and
the contracts on py-evm from the same pre-state, and requires the same
post-state root and receipt outcome; a record whose branch is not ported
raises PendingKind in Python and reverts "pending" on L1 with the reads it
makes. The rules' market table here has one market per liquidation policy
(BTC backstop, ETH book-first, a BTC twin under the ladder)."""
from __future__ import annotations

import os

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from onestep_support import get_examples, run_both
from prover import fraud_vectors as fv
from prover.keys import GLOBAL_KEY, get_auction_key, get_market_key, get_position_key
from prover.plan_book import get_book_reads
from prover.records import PendingKind, decode_item, encode_item
from prover.trace import Opening, TraceContext, TraceRunner, get_onestep_markets
from sequencer.core.markets import (DEVNET_MARKETS, LIQUIDATION_BACKSTOP, LIQUIDATION_BOOK_FIRST,
                                    LIQUIDATION_LADDER)
from sequencer.core.records import AuctionEnd, ForcedClose, Liquidate
from sequencer.core.presets import DEVNET
from sequencer.core.rules.positions import INSURANCE_ADDRESS
from sequencer.core.state import Account, Auction, Position

pytestmark = pytest.mark.evm

BTC, ETH, LADDER, UNLISTED = 1, 2, 3, 9
MARKETS = {
    BTC: msgspec.structs.replace(DEVNET_MARKETS[1], liquidation_policy=LIQUIDATION_BACKSTOP),
    ETH: msgspec.structs.replace(DEVNET_MARKETS[2], liquidation_policy=LIQUIDATION_BOOK_FIRST),
    LADDER: msgspec.structs.replace(DEVNET_MARKETS[1], id=LADDER, symbol="BTC2-USD",
                                    liquidation_policy=LIQUIDATION_LADDER),
}
RULES = msgspec.structs.replace(fv.RULES, markets=MARKETS)
PRICES = {BTC: 60_000 * 10**6, ETH: 3_000 * 10**6, LADDER: 60_000 * 10**6}
I64 = 2**63
FUND = INSURANCE_ADDRESS
EXAMPLES = int(os.environ.get("ISOROLL_LIQUIDATE_EXAMPLES", get_examples(300)))


@pytest.fixture(scope="module")
def onestep(deploy):
    """onestep.vy routing the three tags to onestep_liquidate.vy, deployed with RULES' market table."""
    params = (RULES.domain_separator, DEVNET.max_amount, DEVNET.max_expiry_ahead_ms, DEVNET.nonce_window)
    book = deploy("onestep_book", *params, get_onestep_markets(RULES))  # ETH's Liquidate: tests/evm/test_onestep_book.py
    family = deploy("onestep_liquidate", *params, get_onestep_markets(RULES), book.address)
    return deploy("onestep", *params, [(family.address, [18, 23, 50])])




# --- states -------------------------------------------------------------------------

often = st.sampled_from([True] * 9 + [False])
"""True nine times in ten (st.integers(0, 9) leans to its edges)."""

@st.composite
def markets(draw, market_id: int):
    p = MARKETS[market_id]
    price = draw(st.sampled_from([PRICES[market_id], draw(st.integers(1, 10**5)) * p.tick_size]))
    mark = draw(st.sampled_from([price] * 6 + [price + 13 * p.tick_size, max(price - 7, 1), 0]))
    age = draw(st.sampled_from([1000, 0, 1000, 1000, p.oracle_max_age_ms, p.oracle_max_age_ms + 1]))
    index = draw(st.one_of(st.just(0), st.integers(-10**12, 10**12)))
    market = fv.make_market(market_id, price if draw(often) else 0, oracle_time_ms=fv.BLOCK_TIME - age,
                            funding_index=index, funding_dust=draw(st.integers(0, p.scale * 10**6 - 1)))
    return msgspec.structs.replace(market, mark_price=mark, open_interest=draw(st.integers(10**12, 10**15)))


@st.composite
def positions(draw, market, fund: bool = False):
    """A position around its maintenance line at the mark: healthy, just
    liquidatable, bankrupt; funding owed or due."""
    p = MARKETS[market.id]
    mark = market.mark_price or PRICES[market.id]
    lots = draw(st.one_of(st.integers(1, 100), st.integers(1, 10**5))) * p.step_size * draw(st.sampled_from([1, -1]))
    entry = max(p.tick_size, mark + draw(st.integers(-mark // 10, mark // 10)) // p.tick_size * p.tick_size)
    cost = lots * entry // p.scale
    if fund:
        margin = 0
    else:
        maintenance = abs(lots) * mark * p.maintenance_margin_ppm // (p.scale * 10**6)
        pnl = lots * mark // p.scale - cost
        shape = draw(st.sampled_from(["liquidatable", "liquidatable", "bankrupt", "edge", "healthy"]))
        offset = {"liquidatable": st.integers(-maintenance, -1), "bankrupt": st.integers(-maintenance - 10**9, -1),
                  "edge": st.integers(-10**3, 10**3), "healthy": st.integers(0, 10**12)}[shape]
        margin = max(0, maintenance - pnl + draw(offset))
    snapshot = market.funding_index + draw(st.sampled_from([0, 0, 1, -1, 10**9, -(10**9) - 3]))
    return Position(lots, cost, margin, snapshot)


@st.composite
def liquidation_states(draw):
    listed = [draw(markets(m)) for m in (BTC, ETH, LADDER) if draw(often)]
    held = {}
    for market in listed:
        for address in draw(st.lists(st.sampled_from(fv.ADDRESSES), max_size=3, unique=True)):
            shape = draw(st.sampled_from(range(2, 12)))
            if shape == 10:  # a position closed whole stays in the dict, empty in the tree
                held[(address, market.id)] = Position(0, 0, 0, market.funding_index)
            elif shape == 11:  # flat with leftover margin
                held[(address, market.id)] = Position(0, 0, draw(st.integers(1, 10**9)), market.funding_index)
            else:
                held[(address, market.id)] = draw(positions(market))
        if draw(st.booleans()):
            held[(FUND, market.id)] = draw(positions(market, fund=True))
    auctions = {}
    for address, market_id in draw(st.lists(st.tuples(st.sampled_from(fv.ADDRESSES),
                                                      st.sampled_from([BTC, ETH, LADDER])), max_size=3, unique=True)):
        end = fv.BLOCK_TIME + draw(st.sampled_from([-1, 0, 1, -60_000, 60_000]))
        auctions[(address, market_id)] = Auction(draw(st.integers(1, 10**6)), 10**9, 9 * 10**8, end - 60_000, end)
    state = fv.make_perps_state({a: Account(10**9, ()) for a in fv.ADDRESSES}, listed, held, {},
                                inbox_count=draw(st.integers(0, 9)))
    g = state.globals
    state.set_globals(msgspec.structs.replace(g, insurance_fund=draw(st.sampled_from(
        [0, 11, 10**6, 10**9, 10**12, 10**15]))))
    for (address, market_id), auction in auctions.items():
        state.set_auction(address, market_id, auction)
    state.commit(0)
    return state


# --- records ------------------------------------------------------------------------

makers = st.lists(st.tuples(st.sampled_from(fv.ADDRESSES), st.integers(0, 2**64 - 1)), max_size=8)


@st.composite
def liquidates(draw, state):
    held = [(a, m) for (a, m), position in state.positions.items() if a != FUND]
    if held and draw(often):
        account, market = draw(st.sampled_from(held))
    else:
        account = draw(st.sampled_from(fv.ADDRESSES + [FUND]))
        market = draw(st.sampled_from([BTC, ETH, LADDER, UNLISTED]))
    named = draw(makers) if draw(st.integers(0, 3)) == 0 else []
    return Liquidate(account, market, tuple(named))


@st.composite
def auction_ends(draw, state):
    if state.auctions and draw(often):
        account, market = draw(st.sampled_from(sorted(state.auctions)))
    else:
        account = draw(st.sampled_from(fv.ADDRESSES))
        market = draw(st.sampled_from([BTC, ETH, LADDER, UNLISTED]))
    return AuctionEnd(account, market)


@st.composite
def forced_closes(draw, state):
    count = state.globals.inbox_count
    index = draw(st.sampled_from([count, count, count, count + 1, max(count - 1, 0), 2**64 - 1]))
    account = draw(st.sampled_from(fv.ADDRESSES + [FUND]))
    market = draw(st.sampled_from([BTC, ETH, UNLISTED, 2**32, 2**40 + 1, 2**256 - 1]))
    return ForcedClose(index, account, market)


@st.composite
def cases(draw):
    state = draw(liquidation_states())
    kind = draw(st.sampled_from([liquidates, liquidates, liquidates, auction_ends, forced_closes, "raw"]))
    if kind == "raw":  # any bytes of the kinds' lengths
        tag, size = draw(st.sampled_from([(18, 27), (18, 55), (18, 251), (23, 26), (50, 62)]))
        item = bytes((2, tag)) + draw(st.binary(min_size=size - 2, max_size=size - 2))
    else:
        item = encode_item(draw(kind(state)))
    ctx = fv.open_block_ctx(state) if draw(often) else TraceContext()
    return state, ctx, item


# --- running both sides ----------------------------------------------------------------

def read_openings(tree, keys):
    """Openings of `keys` against the tree as it is (the reads before any write)."""
    return [Opening(k, tree.get(k), tree.prove(k)).as_arg() for k in keys]


def pending_reads(record) -> list[bytes]:
    """The leaves the contract reads before it reverts "pending" (they are a superset)."""
    if isinstance(record, Liquidate) and record.market == ETH:
        return get_book_reads(record)  # forwarded to onestep_book.vy
    if isinstance(record, Liquidate):
        return [get_market_key(record.market), get_position_key(record.account, record.market),
                get_position_key(FUND, record.market), GLOBAL_KEY]
    if isinstance(record, AuctionEnd):
        return [get_auction_key(record.account, record.market), get_position_key(record.account, record.market),
                get_market_key(record.market)]
    return [GLOBAL_KEY]


def check_pending(onestep, state, ctx, item):
    """The reference raised PendingKind: the contract, given honest reads, reverts "pending"."""
    runner = TraceRunner(state, RULES, ctx=ctx)
    openings = read_openings(runner.tree, pending_reads(decode_item(item)))
    with pytest.raises(Exception, match="pending"):
        onestep.functions.apply(runner.state_root, ctx.as_arg(), item, openings, []).call()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=cases())
def test_python_and_vyper_agree_on_the_ladder_records(onestep, case):
    state, ctx, item = case
    try:
        runner, pre_root, result, (root, ok, _) = run_both(onestep, state, ctx, item, RULES)
    except PendingKind as e:
        event(f"pending: {str(e)[:60]}")
        check_pending(onestep, state, ctx, item)
        return
    assert (root, ok) == (runner.state_root, result.ok)
    if not ok:
        assert root == pre_root
    try:
        name = type(decode_item(item)).__name__
    except Exception:
        name = "noop"
    event(f"{name} {'applied' if ok else 'failed'}")


# --- fixed cases: each ported branch, each pending branch, forged witnesses ----------------

A, B = fv.ADDRESSES[0], fv.ADDRESSES[1]
LOT = 10_000  # 0.0001 BTC


def fixed_state(position: Position | None = None, *, market_id: int = BTC, fund: Position | None = None,
                insurance: int = 10**12, age: int = 1000, auction: Auction | None = None) -> "State":
    """One market at 60,000 with A's position (by default a long of 0.1 BTC
    bought at 60,000, margin 70 USDC: liquidatable, maintenance 72 USDC)."""
    market = msgspec.structs.replace(fv.make_market(market_id, PRICES[market_id], oracle_time_ms=fv.BLOCK_TIME - age,
                                                    funding_index=500, funding_dust=7), open_interest=10**12)
    held = {(A, market_id): position or Position(10**7, 6_000 * 10**6, 70 * 10**6, 500)}
    if fund is not None:
        held[(FUND, market_id)] = fund
    state = fv.make_perps_state({A: Account(10**9, ())}, [market], held, {})
    state.set_globals(msgspec.structs.replace(state.globals, insurance_fund=insurance))
    if auction is not None:
        state.set_auction(A, market_id, auction)
    state.commit(0)
    return state


def step_both(onestep, state, record):
    ctx = fv.open_block_ctx(state)
    runner, pre_root, result, (root, ok, _) = run_both(onestep, state, ctx, encode_item(record), RULES)
    assert (root, ok) == (runner.state_root, result.ok)
    return runner, pre_root, result


def assert_pending(onestep, state, record):
    with pytest.raises(PendingKind):
        TraceRunner(state, RULES, ctx=fv.open_block_ctx(state)).step(encode_item(record))
    check_pending(onestep, state, fv.open_block_ctx(state), encode_item(record))


def test_the_backstop_takes_a_liquidatable_position_over_at_the_mark(onestep):
    """Under the backstop policy the fund takes the position over at the mark:
    the owner keeps what is left of its margin less the capped fee; the fund's
    own short is reduced, its balance gets the fee."""
    fund = Position(-3 * 10**8, -183_000 * 10**6, 0, 0)
    state = fixed_state(fund=fund)
    runner, pre_root, result = step_both(onestep, state, Liquidate(A, BTC, ()))
    assert result.ok and runner.state_root != pre_root
    left = runner.state.positions[(A, BTC)]
    assert left.size == 0 and 0 < left.margin < 70 * 10**6
    assert runner.state.positions[(FUND, BTC)].size == fund.size + 10**7
    assert runner.state.globals.insurance_fund > 10**12
    assert len(result.witness.openings) == 8


def test_a_large_solvent_position_is_taken_over_in_part(onestep):
    """Above the partial threshold a solvent position loses a step of it, the rest stays open."""
    big = Position(10**8, 60_000 * 10**6, 700 * 10**6, 500)
    runner, _, result = step_both(onestep, fixed_state(big), Liquidate(A, BTC, ()))
    assert result.ok and 0 < runner.state.positions[(A, BTC)].size < big.size


@pytest.mark.parametrize("case", ["healthy", "stale", "no position", "the fund", "unlisted", "makers off the book"])
def test_refused_liquidations_change_nothing(onestep, case):
    state = fixed_state(Position(10**7, 6_000 * 10**6, 10**8, 500) if case == "healthy" else None,
                        age=10**6 if case == "stale" else 1000)
    record = {"no position": Liquidate(B, BTC, ()), "the fund": Liquidate(FUND, BTC, ()),
              "unlisted": Liquidate(A, UNLISTED, ()),
              "makers off the book": Liquidate(A, BTC, ((B, 3),))}.get(case, Liquidate(A, BTC, ()))
    runner, pre_root, result = step_both(onestep, state, record)
    assert not result.ok and runner.state_root == pre_root


def test_forced_close_served_as_a_no_op_or_refused_out_of_order(onestep):
    count = fixed_state().globals.inbox_count
    for record, ok in ((ForcedClose(count, A, UNLISTED), True), (ForcedClose(count, FUND, BTC), True),
                       (ForcedClose(count + 1, A, UNLISTED), False), (ForcedClose(count, A, 2**256 - 1), True)):
        runner, pre_root, result = step_both(onestep, fixed_state(), record)
        assert result.ok is ok and (runner.state_root != pre_root) is ok
        if ok:
            assert runner.state.globals.inbox_count == count + 1


def test_auction_end_refusals(onestep):
    running = Auction(LOT, 10**9, 9 * 10**8, fv.BLOCK_TIME - 1000, fv.BLOCK_TIME + 1000)
    ended = msgspec.structs.replace(running, end_ms=fv.BLOCK_TIME)
    for state in (fixed_state(), fixed_state(auction=running), fixed_state(auction=ended, age=10**6)):
        runner, pre_root, result = step_both(onestep, state, AuctionEnd(A, BTC))  # the runner steps the state
        assert not result.ok and runner.state_root == pre_root
    step_both(onestep, fixed_state(auction=ended), AuctionEnd(A, UNLISTED))


@pytest.mark.parametrize("position", [Position(0, 0, 0, 500), Position(0, 0, 5 * 10**6, 500),
                                      Position(10**7, 6_000 * 10**6, 700 * 10**6, 500)],
                         ids=["closed", "flat with margin", "recovered"])
def test_an_ended_auction_of_a_closed_or_recovered_position_is_deleted(onestep, position):
    ended = Auction(LOT, 10**9, 9 * 10**8, fv.BLOCK_TIME - 60_000, fv.BLOCK_TIME)
    runner, pre_root, result = step_both(onestep, fixed_state(position, auction=ended), AuctionEnd(A, BTC))
    assert result.ok and runner.state_root != pre_root and (A, BTC) not in runner.state.auctions
    last = result.witness.openings[-1]
    assert last.key == get_auction_key(A, BTC) and last.value is not None and last.sibling  # a deletion


def test_a_bankrupt_position_is_taken_over_and_its_leaf_deleted(onestep):
    """A bankrupt position is taken over whole: the fund pays the bad debt, the
    position's leaf is emptied (deleted on L1 with the deepest sibling's
    preimage); a forged sibling reverts."""
    bankrupt = Position(10**7, 6_600 * 10**6, 10 * 10**6, 500)
    state = fixed_state(bankrupt, insurance=10**12)
    ctx = fv.open_block_ctx(state)
    item = encode_item(Liquidate(A, BTC, ()))
    runner, pre_root, result = step_both(onestep, fixed_state(bankrupt, insurance=10**12), Liquidate(A, BTC, ()))
    assert result.ok and runner.tree.get(get_position_key(A, BTC)) is None
    assert runner.state.globals.insurance_fund < 10**12  # the bad debt paid
    args = [o.as_arg() for o in result.witness.openings]
    assert args[4][3]  # the position's rewrite carries the deletion sibling
    forged = args[:4] + [args[4][:3] + (b"\x00" + bytes(64),)] + args[5:]
    with pytest.raises(Exception):
        onestep.functions.apply(pre_root, ctx.as_arg(), item, forged, []).call()


def test_each_unported_branch_is_pending_on_both_sides(onestep):
    """The reference raises PendingKind and the contract reverts "pending"
    (given honest reads) on: a liquidation under a book policy or the ladder
    (it cancels the owner's open orders: no index of them in the tree), the
    backstop with too small a fund (auto-deleveraging ranks every opposite
    position), an AuctionEnd of a position still liquidatable (the ladder),
    a ForcedClose in a listed market."""
    ended = Auction(LOT, 10**9, 9 * 10**8, fv.BLOCK_TIME - 60_000, fv.BLOCK_TIME)
    bankrupt = Position(10**7, 6_600 * 10**6, 10 * 10**6, 500)
    cases = [(fixed_state(market_id=ETH, position=Position(10**9, 3_000 * 10**6, 30 * 10**6, 500)),
              Liquidate(A, ETH, ())),
             (fixed_state(market_id=LADDER),
              Liquidate(A, LADDER, ())),
             (fixed_state(bankrupt, insurance=0), Liquidate(A, BTC, ())),
             (fixed_state(auction=ended), AuctionEnd(A, BTC)),
             (fixed_state(), ForcedClose(3, A, BTC)),
             (fixed_state(), ForcedClose(3, B, BTC))]
    for state, record in cases:
        assert_pending(onestep, state, record)


def test_forged_witnesses_revert(onestep):
    """A takeover's witness with a leaf lied about (the position's margin, the
    fund's balance, the fund's position said absent), openings swapped or one
    missing does not verify: the step reverts, it proves nothing."""
    state = fixed_state(fund=Position(-3 * 10**8, -183_000 * 10**6, 0, 0))
    ctx = fv.open_block_ctx(state)
    item = encode_item(Liquidate(A, BTC, ()))
    runner = TraceRunner(state, RULES, ctx=ctx)
    pre_root = runner.state_root
    result = runner.step(item)
    args = [o.as_arg() for o in result.witness.openings]

    def call(openings):
        return onestep.functions.apply(pre_root, ctx.as_arg(), item, openings, []).call()

    assert call(args)[0] == runner.state_root
    richer = bytearray(args[1][1])
    richer[64:96] = (10**12).to_bytes(32, "big")
    fuller = bytearray(args[3][1])
    fuller[96:128] = (10**15).to_bytes(32, "big")
    forgeries = [[args[0], (True, bytes(richer)) + args[1][2:]] + args[2:],
                 args[:3] + [(True, bytes(fuller)) + args[3][2:]] + args[4:],
                 args[:2] + [(False, b"") + args[2][2:]] + args[3:],
                 [args[1], args[0]] + args[2:], args[:-1]]
    for forged in forgeries:
        with pytest.raises(Exception):
            call(forged)
