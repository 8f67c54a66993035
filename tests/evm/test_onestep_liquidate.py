"""The differential test of the liquidation ladder's one-steps (onestep.vy
handing Liquidate and ForcedClose to onestep_liquidate.vy, AuctionEnd to
onestep_auction_end.vy), under rules v3 (the owner's orders cancelled by the
position's order epoch; where rules v2 ranked every opposite position down
the ladder, a Liquidate and an AuctionEnd stop, a backstop takeover the fund
cannot pay is not made, a forced close goes to the insurance fund).

Hypothesis generates states (markets with fresh, stale and missing marks,
any funding index and dust; positions long and short, healthy, liquidatable
and bankrupt, with funding owed or due (owed past the margin one time in
five: rules v3 move the deficit into the cost), flat ones left in the dict, flat
ones holding margin, some with an order epoch (five-word leaves); accounts
present or absent; the insurance fund's own position absent, long or short,
and its balance from 0 up; the order count from 0; orders resting; auctions
running and ended) and records (valid and adversarial: the fund's account,
unlisted markets, makers named under a policy without the book, up to 8
makers (more than 4 refused), inbox indexes out of order, forced closes of
held and absent positions, raw item bytes), runs the Python rules
(prover.trace with prover.plan_liquidate) and the contracts on py-evm from
the same pre-state, and requires the same post-state root and receipt
outcome (no branch of these kinds is pending under rules v3 here: the book
policies' Liquidate is onestep_book.vy's, book+vault's vault step
onestep_vault_step.vy's); an
honest witness with one opening forged, dropped or swapped reverts on every
branch. The rules' market table here has one market per liquidation policy
(BTC backstop, ETH book-first, a BTC twin under the ladder, ETH twins under
book+auction and book+vault)."""
from __future__ import annotations

import os

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from onestep_support import get_examples, run_both
from prover import fraud_vectors as fv
from prover.keys import GLOBAL_KEY, get_account_key, get_auction_key, get_market_key, get_position_key
from prover.plan_book import get_book_reads
from prover.records import PendingKind, decode_item, encode_item
from prover.plan_vault_step import get_onestep_vault_step_args
from prover.trace import Opening, TraceContext, TraceRunner, get_onestep_markets
from sequencer.core.markets import (DEVNET_MARKETS, LIQUIDATION_BACKSTOP, LIQUIDATION_BOOK_AUCTION,
                                    LIQUIDATION_BOOK_FIRST, LIQUIDATION_BOOK_VAULT, LIQUIDATION_LADDER)
from sequencer.core.records import AuctionEnd, ForcedClose, Liquidate
from sequencer.core.presets import DEVNET
from sequencer.core.rules.margin import compute_funding_owed
from sequencer.core.rules.positions import INSURANCE_ADDRESS
from sequencer.core.state import Account, Auction, Position

pytestmark = pytest.mark.evm

BTC, ETH, LADDER, AUCTION, VAULT, UNLISTED = 1, 2, 3, 4, 5, 9
MARKETS = {
    BTC: msgspec.structs.replace(DEVNET_MARKETS[1], liquidation_policy=LIQUIDATION_BACKSTOP),
    ETH: msgspec.structs.replace(DEVNET_MARKETS[2], liquidation_policy=LIQUIDATION_BOOK_FIRST),
    LADDER: msgspec.structs.replace(DEVNET_MARKETS[1], id=LADDER, symbol="BTC2-USD",
                                    liquidation_policy=LIQUIDATION_LADDER),
    AUCTION: msgspec.structs.replace(DEVNET_MARKETS[2], id=AUCTION, symbol="ETH2-USD",
                                     liquidation_policy=LIQUIDATION_BOOK_AUCTION),
    VAULT: msgspec.structs.replace(DEVNET_MARKETS[2], id=VAULT, symbol="ETH3-USD",
                                   liquidation_policy=LIQUIDATION_BOOK_VAULT),
}
LISTED = tuple(MARKETS)
RULES = msgspec.structs.replace(fv.RULES, markets=MARKETS)
PRICES = {BTC: 60_000 * 10**6, ETH: 3_000 * 10**6, LADDER: 60_000 * 10**6, AUCTION: 3_000 * 10**6,
          VAULT: 3_000 * 10**6}
I64 = 2**63
FUND = INSURANCE_ADDRESS
EXAMPLES = int(os.environ.get("ISOROLL_LIQUIDATE_EXAMPLES", get_examples(300)))
FORCED_EXAMPLES = int(os.environ.get("ISOROLL_FORCED_CLOSE_EXAMPLES", get_examples(150)))
FORGED_EXAMPLES = int(os.environ.get("ISOROLL_LIQUIDATE_FORGED_EXAMPLES", get_examples(100)))
STOP_EXAMPLES = int(os.environ.get("ISOROLL_LIQUIDATE_STOP_EXAMPLES", get_examples(200)))


@pytest.fixture(scope="module")
def onestep(deploy):
    """onestep.vy routing Liquidate and ForcedClose to onestep_liquidate.vy and
    AuctionEnd to onestep_auction_end.vy, deployed with RULES' market table."""
    params = (RULES.domain_separator, DEVNET.max_amount, DEVNET.max_expiry_ahead_ms, DEVNET.nonce_window)
    book = deploy("onestep_book", *params, get_onestep_markets(RULES))  # ETH's Liquidate: tests/evm/test_onestep_book.py
    vault_step = deploy("onestep_vault_step", *params, get_onestep_markets(RULES),  # tests/evm/test_onestep_vault_step.py
                        *get_onestep_vault_step_args(RULES))
    family = deploy("onestep_liquidate", *params, get_onestep_markets(RULES), book.address, vault_step.address)
    ended = deploy("onestep_auction_end", *params, get_onestep_markets(RULES))
    return deploy("onestep", *params, [(family.address, [18, 50]), (ended.address, [23])])




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


def snapshot_owing(market, lots: int, owed: int) -> int:
    """A funding snapshot from which a position of ``lots`` owes at least
    ``owed`` (rounded up) at the market's index."""
    step = -(-owed * MARKETS[market.id].scale * 10**6 // abs(lots))
    return market.funding_index - step if lots > 0 else market.funding_index + step


@st.composite
def positions(draw, market, fund: bool = False):
    """A position around its maintenance line at the mark: healthy, just
    liquidatable, bankrupt; funding owed or due; one time in five (not the
    fund's) funding owed past its margin, by up to its PnL and twice its
    maintenance (rules v3 move the deficit into its cost: solvent or not,
    liquidatable or healthy after it)."""
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
    if not fund and draw(st.integers(0, 4)) == 0:
        extra = draw(st.integers(1, max(1, abs(pnl) + 2 * maintenance)))
        snapshot = snapshot_owing(market, lots, margin + extra)
    epoch = 0 if fund else draw(st.sampled_from([0, 0, 0, 1, 5, 2**40]))
    return Position(lots, cost, margin, snapshot, epoch)


@st.composite
def liquidation_states(draw):
    listed = [draw(markets(m)) for m in (BTC, ETH, LADDER) if draw(often)]
    listed += [draw(markets(m)) for m in (AUCTION, VAULT) if draw(st.booleans())]
    held = {}
    for market in listed:
        for address in draw(st.lists(st.sampled_from(fv.ADDRESSES), max_size=3, unique=True)):
            shape = draw(st.sampled_from(range(2, 13)))
            if shape == 10:  # a position closed whole stays in the dict, empty in the tree
                held[(address, market.id)] = Position(0, 0, 0, market.funding_index)
            elif shape == 11:  # flat with leftover margin, maybe an order epoch
                held[(address, market.id)] = Position(0, 0, draw(st.integers(1, 10**9)), market.funding_index,
                                                      draw(st.sampled_from([0, 0, 3])))
            elif shape == 12:  # flat, no margin, its orders cancelled before: a five-word leaf
                held[(address, market.id)] = Position(0, 0, 0, market.funding_index, draw(st.integers(1, 9)))
            else:
                held[(address, market.id)] = draw(positions(market))
        if draw(st.booleans()):
            held[(FUND, market.id)] = draw(positions(market, fund=True))
    auctions = {}
    owners = draw(st.lists(st.tuples(st.sampled_from(fv.ADDRESSES), st.sampled_from(LISTED)), max_size=2))
    owners += [key for key, position in held.items() if key[0] != FUND and position.size and draw(st.booleans())]
    for address, market_id in owners:  # some on the positions held (an auction runs on a position)
        end = fv.BLOCK_TIME + draw(st.sampled_from([-1, 0, 1, -60_000, 60_000]))
        auctions[(address, market_id)] = Auction(draw(st.integers(1, 10**6)), 10**9, 9 * 10**8, end - 60_000, end)
    accounts = {a: Account(draw(st.sampled_from([10**9, 0, 2**64])), draw(st.sampled_from([(), (3, 8)])))
                for a in fv.ADDRESSES if draw(often)}
    state = fv.make_perps_state(accounts, listed, held, {}, inbox_count=draw(st.integers(0, 9)),
                                order_count=draw(st.sampled_from([0, 2, 7, 2**40])))
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
        market = draw(st.sampled_from(LISTED + (UNLISTED,)))
    named = draw(makers) if draw(st.integers(0, 3)) == 0 else []
    return Liquidate(account, market, tuple(named))


@st.composite
def auction_ends(draw, state):
    if state.auctions and draw(often):
        account, market = draw(st.sampled_from(sorted(state.auctions)))
    else:
        account = draw(st.sampled_from(fv.ADDRESSES))
        market = draw(st.sampled_from(LISTED + (UNLISTED,)))
    return AuctionEnd(account, market)


@st.composite
def forced_closes(draw, state):
    count = state.globals.inbox_count
    index = draw(st.sampled_from([count] * 6 + [count + 1, max(count - 1, 0), 2**64 - 1]))
    held = [(a, m) for (a, m) in state.positions if a != FUND]
    if held and draw(often):
        account, market = draw(st.sampled_from(held))
    else:
        account = draw(st.sampled_from(fv.ADDRESSES + [FUND]))
        market = draw(st.sampled_from(LISTED + (UNLISTED, 2**32, 2**32 + 1, 2**256 - 1)))
    return ForcedClose(index, account, market)


@st.composite
def cases(draw, kinds=(liquidates, liquidates, liquidates, auction_ends, forced_closes, forced_closes, "raw")):
    state = draw(liquidation_states())
    kind = draw(st.sampled_from(kinds))
    if kind == "raw":  # any bytes of the kinds' lengths
        tag, size = draw(st.sampled_from([(18, 27), (18, 55), (18, 167), (18, 251), (23, 26), (50, 62)]))
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
    """The leaves the contract reads before it reverts "pending": only a
    Liquidate under a book policy has a pending branch left (onestep_book.vy:
    a maker order of the fund's address)."""
    assert isinstance(record, Liquidate) and MARKETS[record.market].liquidation_policy in (
        LIQUIDATION_BOOK_FIRST, LIQUIDATION_BOOK_AUCTION, LIQUIDATION_BOOK_VAULT), f"pending: {record}"
    return get_book_reads(record)  # forwarded to onestep_book.vy


def check_pending(onestep, state, ctx, item):
    """The reference raised PendingKind: the contract, given honest reads, reverts "pending"."""
    runner = TraceRunner(state, RULES, ctx=ctx)
    openings = read_openings(runner.tree, pending_reads(decode_item(item)))
    with pytest.raises(Exception, match="pending"):
        onestep.functions.apply(runner.state_root, ctx.as_arg(), item, openings, []).call()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=cases())
def test_python_and_vyper_agree_on_the_ladder_records(onestep, case):
    check_both(onestep, case)


@settings(max_examples=FORCED_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=cases(kinds=(forced_closes,)))
def test_python_and_vyper_agree_on_forced_closes(onestep, case):
    """Rules v2's ForcedClose branches: the order epoch of a held or absent
    position, a flat one's margin released, a stale mark, the fund's takeover."""
    check_both(onestep, case)


@st.composite
def bankrupt_positions(draw, market):
    """A position whose equity at the mark is below 0 (its loss passes its
    margin), long or short, with funding owed or due now and then, owed past
    its margin one time in four."""
    p = MARKETS[market.id]
    lots = draw(st.integers(1, 1000)) * p.step_size * draw(st.sampled_from([1, -1]))
    notional = abs(lots) * market.mark_price // p.scale
    margin = draw(st.integers(0, notional // 10))
    cost = lots * market.mark_price // p.scale + margin + draw(st.integers(1, notional // 10 + 1))
    snapshot = market.funding_index + draw(st.sampled_from([0, 0, 1, -1, 10**9]))
    if draw(st.integers(0, 3)) == 0:
        snapshot = snapshot_owing(market, lots, margin + draw(st.integers(1, 10**9)))
    return Position(lots, cost, margin, snapshot, draw(st.sampled_from([0, 0, 5])))


@st.composite
def stop_cases(draw):
    """One position, around its maintenance line, in a market under the
    ladder, the backstop or a book policy, a running or ended auction now and
    then, the fund's position and balance drawn: a Liquidate naming no makers
    or an AuctionEnd of it (the branches where rules v3 stop, the backstop's
    fund short)."""
    market_id = draw(st.sampled_from([LADDER, LADDER, BTC, BTC, ETH, AUCTION]))
    p = MARKETS[market_id]
    age = draw(st.sampled_from([1000] * 5 + [p.oracle_max_age_ms + 1]))
    market = msgspec.structs.replace(fv.make_market(
        market_id, PRICES[market_id], oracle_time_ms=fv.BLOCK_TIME - age,
        funding_index=draw(st.sampled_from([0, draw(st.integers(-10**12, 10**12))])),
        funding_dust=draw(st.integers(0, p.scale * 10**6 - 1))), open_interest=draw(st.integers(10**12, 10**15)))
    account = draw(st.sampled_from(fv.ADDRESSES))
    held = {(account, market_id): draw(positions(market) if draw(st.booleans()) else bankrupt_positions(market))}
    if draw(st.booleans()):
        held[(FUND, market_id)] = draw(positions(market, fund=True))
    state = fv.make_perps_state({account: Account(10**9, ())}, [market], held, {},
                                order_count=draw(st.sampled_from([0, 7, 2**40])))
    state.set_globals(msgspec.structs.replace(state.globals, insurance_fund=draw(st.sampled_from(
        [0, 11, 10**6, 10**12]))))
    in_auction = draw(st.booleans())
    if in_auction:
        end = fv.BLOCK_TIME + draw(st.sampled_from([-1, 0, 60_000]))
        state.set_auction(account, market_id, Auction(draw(st.integers(1, 10**6)), 10**9, 9 * 10**8, end - 60_000, end))
    state.commit(0)
    ended = draw(st.booleans() if in_auction else st.sampled_from([False] * 5 + [True]))
    record = AuctionEnd(account, market_id) if ended else Liquidate(account, market_id, ())
    return state, fv.open_block_ctx(state), encode_item(record)


@settings(max_examples=STOP_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=stop_cases())
def test_python_and_vyper_agree_where_rules_v3_stop(onestep, case):
    """The ladder policy's stop, a position in auction (bankrupt: its auction
    ends; solvent: refused), the backstop's takeover and its fund short, an
    AuctionEnd keeping the lots or ending the auction."""
    check_both(onestep, case)


@settings(max_examples=FORGED_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=st.one_of(cases(kinds=(liquidates, auction_ends, forced_closes, forced_closes)), stop_cases()),
       data=st.data())
def test_a_forged_witness_reverts_on_every_branch(onestep, case, data):
    """An honest witness with one opening lied about (a byte of its value
    changed, said absent or present), dropped, or swapped with the next one
    (when they differ): the step reverts, whatever branch the record takes."""
    state, ctx, item = case
    runner = TraceRunner(state, RULES, ctx=ctx)
    pre_root = runner.state_root
    try:
        result = runner.step(item)
    except PendingKind:
        return
    args = [o.as_arg() for o in result.witness.openings]
    if not args:
        return
    i = data.draw(st.integers(0, len(args) - 1))
    present, value, proof, sibling = args[i]
    how = data.draw(st.sampled_from(["value", "presence", "drop", "swap"]))
    if how == "value" and value:
        k = data.draw(st.integers(0, len(value) - 1))
        forged = args[:i] + [(present, value[:k] + bytes([value[k] ^ 1]) + value[k + 1:], proof, sibling)] + args[i + 1:]
    elif how in ("value", "presence"):
        forged = args[:i] + [(not present, value, proof, sibling)] + args[i + 1:]
    elif how == "swap" and i + 1 < len(args) and args[i] != args[i + 1]:
        forged = args[:i] + [args[i + 1], args[i]] + args[i + 2:]
    else:
        forged = args[:i] + args[i + 1:]
    event(f"{type(decode_item(item)).__name__} {'applied' if result.ok else 'failed'}: {how}")
    with pytest.raises(Exception):
        onestep.functions.apply(pre_root, ctx.as_arg(), item, forged, []).call()


def check_both(onestep, case):
    state, ctx, item = case
    deficit = owes_past_margin(state, item)  # before the runner steps the state
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
        record = decode_item(item)
    except Exception:
        event("noop")
        return
    assert all(position.margin >= 0 for position in runner.state.positions.values())
    event(f"{type(record).__name__} {'applied' if ok else 'failed'}{describe(record, result) if ok else ''}{deficit}")


def owes_past_margin(state, item: bytes) -> str:
    """", funding past the margin" when the item's position owes more funding
    than its margin in ``state`` (rules v3: the deficit moves into its cost)."""
    try:
        record = decode_item(item)
    except Exception:
        return ""
    position = state.positions.get((getattr(record, "account", None), getattr(record, "market", None)))
    if position is None or record.market not in MARKETS or record.market not in state.markets:
        return ""
    owed = compute_funding_owed(position, state.markets[record.market], MARKETS[record.market])
    return ", funding past the margin" if position.margin - owed < 0 else ""


POLICY_NAMES = {LIQUIDATION_LADDER: "ladder", LIQUIDATION_BACKSTOP: "backstop", LIQUIDATION_BOOK_FIRST: "book-first",
                LIQUIDATION_BOOK_AUCTION: "book+auction", LIQUIDATION_BOOK_VAULT: "book+vault"}


def describe(record, result) -> str:
    """Which branch an applied record took, from its witness (a key opened
    twice was read, then written)."""
    keys = [o.key for o in result.witness.openings]
    twice = lambda key: keys.count(key) >= 2
    policy = POLICY_NAMES.get(MARKETS[record.market].liquidation_policy, "") if record.market in MARKETS else ""
    if isinstance(record, AuctionEnd):
        return ": lots kept, funding settled, epoch" if GLOBAL_KEY in keys else ": auction ended"
    if isinstance(record, Liquidate):
        if policy == "backstop":
            return f" {policy}: " + ("the fund's takeover" if twice(get_position_key(FUND, record.market))
                                     else "the fund short, funding settled")
        auction = [o for o in result.witness.openings if o.key == get_auction_key(record.account, record.market)]
        if len(auction) == 2:  # read, then written: deleted (it was there) or started
            return f" {policy}: " + ("bankrupt in auction, auction ended" if auction[1].value is not None
                                     else "an auction started")
        return f" {policy}: " + ("stop" if policy == "ladder" else "book" if record.makers else "book, no makers")
    if len(keys) == 1:
        return ": served as a no-op"
    fund = get_position_key(FUND, record.market)
    released = ", margin released" if get_account_key(record.account) in keys else ""
    if twice(fund):
        return f" {policy}: the fund's takeover{released}"
    if fund in keys:
        return f" {policy}: the fund short, served"
    if get_market_key(record.market) in keys:
        return ": stale mark or past 64 bits, served"
    return ": order epoch" + released


# --- fixed cases: each branch, forged witnesses -------------------------------------------

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


ENDED = Auction(LOT, 10**9, 9 * 10**8, fv.BLOCK_TIME - 60_000, fv.BLOCK_TIME)
RUNNING = Auction(LOT, 10**9, 9 * 10**8, fv.BLOCK_TIME - 1000, fv.BLOCK_TIME + 1000)
BANKRUPT = Position(10**7, 6_600 * 10**6, 10 * 10**6, 500)
HEALTHY = Position(10**7, 6_000 * 10**6, 700 * 10**6, 500)


def assert_stopped(runner, before: Position, market_id: int, *, epoch: bool = True):
    """The ladder's stop (rules v3): the position keeps its lots and cost,
    its margin less the funding owed; its snapshot is the index; its order
    epoch is the order count (none written under the backstop)."""
    after = runner.state.positions[(A, market_id)]
    assert (after.size, after.cost, after.funding_snapshot) == (before.size, before.cost, 500)
    assert after.margin < before.margin  # the funding owed
    assert after.order_epoch == (runner.state.globals.order_count if epoch else before.order_epoch)


def owing(position: Position) -> Position:
    """The position with funding owed since its snapshot (10**9 from the market's index, 500)."""
    return msgspec.structs.replace(position, funding_snapshot=500 - 10**9 if position.size > 0 else 500 + 10**9)


def with_order_count(state, count: int = 41):
    state.set_globals(msgspec.structs.replace(state.globals, order_count=count))
    state.commit(0)
    return state


def test_the_ladder_policy_stops_after_the_funding_and_the_epoch(onestep):
    """Rules v3: a Liquidate under the ladder policy settles the funding and
    writes the order epoch; the lots wait for Deleverage records."""
    position = owing(Position(10**7, 6_000 * 10**6, 70 * 10**6, 0))
    state = with_order_count(fixed_state(position, market_id=LADDER))
    runner, pre_root, result = step_both(onestep, state, Liquidate(A, LADDER, ()))
    assert result.ok and runner.state_root != pre_root
    assert_stopped(runner, position, LADDER)
    assert [o.key for o in result.witness.openings][3:] == [
        get_auction_key(A, LADDER), get_position_key(A, LADDER), get_market_key(LADDER), GLOBAL_KEY]


@pytest.mark.parametrize("bankrupt", [True, False], ids=["bankrupt: its auction ends", "solvent: refused"])
def test_a_position_in_auction_under_the_ladder_policy(onestep, bankrupt):
    """In auction: refused ("in_auction") unless bankrupt at the mark; a
    bankrupt one's auction ends and the record stops (rules v3)."""
    position = owing(BANKRUPT if bankrupt else Position(10**7, 6_000 * 10**6, 70 * 10**6, 0))
    state = with_order_count(fixed_state(position, market_id=LADDER, auction=RUNNING))
    runner, pre_root, result = step_both(onestep, state, Liquidate(A, LADDER, ()))
    assert result.ok is bankrupt and (runner.state_root != pre_root) is bankrupt
    if bankrupt:
        assert (A, LADDER) not in runner.state.auctions
        assert_stopped(runner, position, LADDER)


def test_a_backstop_takeover_the_fund_cannot_pay_is_not_made(onestep):
    """Rules v3: a bankrupt position, an empty fund: no takeover, no
    auto-deleveraging; only the position's funding settles (no epoch)."""
    position = owing(BANKRUPT)
    state = with_order_count(fixed_state(position, insurance=0))
    runner, pre_root, result = step_both(onestep, state, Liquidate(A, BTC, ()))
    assert result.ok and runner.state_root != pre_root
    assert_stopped(runner, position, BTC, epoch=False)
    keys = [o.key for o in result.witness.openings]
    assert keys[3:] == [get_position_key(FUND, BTC), get_position_key(A, BTC), get_market_key(BTC), GLOBAL_KEY]


def test_an_auction_end_of_a_position_still_liquidatable_keeps_its_lots(onestep):
    """Rules v3: the auction leaf is deleted, the position keeps its lots:
    its funding settles, its orders are cancelled (the epoch)."""
    position = owing(Position(10**7, 6_000 * 10**6, 70 * 10**6, 0))
    state = with_order_count(fixed_state(position, auction=ENDED))
    runner, pre_root, result = step_both(onestep, state, AuctionEnd(A, BTC))
    assert result.ok and (A, BTC) not in runner.state.auctions
    assert_stopped(runner, position, BTC)
    assert [o.key for o in result.witness.openings] == [
        get_auction_key(A, BTC), get_position_key(A, BTC), get_market_key(BTC), GLOBAL_KEY,
        get_auction_key(A, BTC), get_position_key(A, BTC), get_market_key(BTC), GLOBAL_KEY]


def test_more_than_four_makers_are_refused_on_both_sides(onestep):
    """Rules v2 name at most 4 makers: 5 to 8 (what the item layout holds)
    refuse the Liquidate, under the book policy too, with nothing changed."""
    state = fixed_state(market_id=ETH, position=Position(10**9, 3_000 * 10**6, 30 * 10**6, 500))
    for n in (5, 8):
        runner, pre_root, result = step_both(onestep, state, Liquidate(A, ETH, tuple((B, k) for k in range(n))))
        assert not result.ok and runner.state_root == pre_root


# --- ForcedClose under rules v2: the order epoch ---------------------------------------------

def forced(onestep, state, account=A, market=BTC):
    count = state.globals.inbox_count
    runner, pre_root, result = step_both(onestep, state, ForcedClose(count, account, market))
    assert result.ok and runner.state.globals.inbox_count == count + 1
    return runner, result


def test_a_forced_close_with_no_position_writes_the_order_epoch(onestep):
    """No position leaf: the leaf (0, 0, 0, 0, epoch = the order count) is
    created, so every order of the owner placed so far is dead; with no order
    ever placed (count 0) the epoch is 0 and the leaf stays empty."""
    state = fixed_state()
    state.set_globals(msgspec.structs.replace(state.globals, order_count=41))
    state.commit(0)
    runner, result = forced(onestep, state, B)
    assert runner.tree.get(get_position_key(B, BTC)) == bytes(128) + (41).to_bytes(32, "big")
    assert [o.key for o in result.witness.openings] == [GLOBAL_KEY, get_position_key(B, BTC),
                                                        get_position_key(B, BTC), GLOBAL_KEY]
    state.set_globals(msgspec.structs.replace(state.globals, order_count=0))
    state.commit(0)
    runner, _ = forced(onestep, state, B)
    assert runner.tree.get(get_position_key(B, BTC)) is None


@pytest.mark.parametrize("known", [True, False], ids=["account", "no account leaf"])
def test_a_forced_close_of_a_flat_position_releases_its_margin(onestep, known):
    """A flat position holding margin: the margin moves to free collateral
    (the account created when it has no leaf), the position keeps its epoch
    and its funding snapshot, margin 0."""
    state = fixed_state(Position(0, 0, 5 * 10**6, 500, 3))
    if not known:
        state.set_account(A, None)
        state.commit(0)
    before = state.accounts[A].collateral if known else 0
    runner, result = forced(onestep, state)
    assert runner.state.accounts[A].collateral == before + 5 * 10**6
    assert runner.state.positions[(A, BTC)] == Position(0, 0, 0, 500, state.globals.order_count)
    assert len(result.witness.openings) == 5


def test_a_forced_close_on_a_stale_mark_is_served_as_a_no_op(onestep):
    """An open position needs a fresh mark: the whole close is undone, its
    epoch too; the request is served (the inbox entry counted)."""
    state = fixed_state(age=10**6)
    position = state.positions[(A, BTC)]
    runner, result = forced(onestep, state)
    assert runner.state.positions[(A, BTC)] == position
    assert [o.key for o in result.witness.openings][-1] == GLOBAL_KEY and len(result.witness.openings) == 4


def lots_in(market_id: int) -> int:
    """0.1 BTC or 2 ETH: 6,000 USDC at the market's price."""
    return 6_000 * 10**6 * MARKETS[market_id].scale // PRICES[market_id]


@pytest.mark.parametrize("market_id", LISTED, ids=[POLICY_NAMES[MARKETS[m].liquidation_policy] for m in LISTED])
@pytest.mark.parametrize("shape", ["liquidatable long", "liquidatable short", "bankrupt", "healthy"])
def test_a_forced_close_of_an_open_position_is_a_whole_fund_takeover(onestep, market_id, shape):
    """Rules v3, every policy: the fund takes the whole position over at the
    mark (the liquidation fee if liquidatable, none if healthy); what margin
    is left moves to free collateral; the position keeps its new epoch (a
    five-word leaf, size 0)."""
    lots = lots_in(market_id)
    position = {"liquidatable long": Position(lots, 6_000 * 10**6, 70 * 10**6, 500, 2),
                "liquidatable short": Position(-lots, -5_990 * 10**6, 50 * 10**6, 400),
                "bankrupt": Position(lots, 6_600 * 10**6, 10 * 10**6, 500),
                "healthy": Position(lots, 6_000 * 10**6, 700 * 10**6, 500)}[shape]
    fund = Position(-30 * lots, -180_000 * 10**6, 0, 500)
    state = fixed_state(position, market_id=market_id, fund=fund)
    g, collateral = state.globals, state.accounts[A].collateral
    runner, result = forced(onestep, state, market=market_id)
    left = runner.state.positions[(A, market_id)]
    assert left.size == 0 and left.margin == 0 and left.order_epoch == g.order_count
    assert runner.state.positions[(FUND, market_id)].size == fund.size + position.size
    released = runner.state.accounts[A].collateral - collateral
    assert len(result.witness.openings) == (9 if released else 8) and (released > 0) is (shape != "bankrupt")
    fee = runner.state.globals.insurance_fund - g.insurance_fund
    if shape == "healthy":  # no fee: the margin plus the PnL at the mark (0 here) comes back whole
        assert fee == 0 and released == position.margin


@pytest.mark.parametrize("market_id", LISTED, ids=[POLICY_NAMES[MARKETS[m].liquidation_policy] for m in LISTED])
def test_a_forced_close_the_fund_cannot_pay_is_served_as_a_no_op(onestep, market_id):
    """A bankrupt position, an empty fund: the close (its epoch too) is undone,
    the request served."""
    lots = lots_in(market_id)
    state = fixed_state(Position(lots, 6_600 * 10**6, 10 * 10**6, 500), market_id=market_id, insurance=0)
    position = state.positions[(A, market_id)]
    runner, result = forced(onestep, state, market=market_id)
    assert runner.state.positions[(A, market_id)] == position
    assert [o.key for o in result.witness.openings] == [GLOBAL_KEY, get_position_key(A, market_id),
                                                        get_market_key(market_id), get_position_key(FUND, market_id),
                                                        GLOBAL_KEY]


def test_a_forced_close_past_64_bits_is_served_as_a_no_op(onestep):
    """A notional past 2**63 - 1 refuses the takeover: the close is undone, served."""
    huge = Position(10**17, 6 * 10**19, 10**9, 500)
    state = fixed_state(huge)
    runner, result = forced(onestep, state)
    assert runner.state.positions[(A, BTC)] == huge


def get_honest_witness(onestep, state, item: bytes):
    """The honest witness of ``item`` (its openings as call arguments) and a
    call of the contract's apply on any list of openings; the honest one
    gives the reference's root."""
    ctx = fv.open_block_ctx(state)
    runner = TraceRunner(state, RULES, ctx=ctx)
    pre_root = runner.state_root
    result = runner.step(item)
    args = [o.as_arg() for o in result.witness.openings]

    def call(openings):
        return onestep.functions.apply(pre_root, ctx.as_arg(), item, openings, []).call()

    assert call(args)[0] == runner.state_root
    return args, call


def test_forged_forced_close_witnesses_revert(onestep):
    """A flat position's margin lied about, an account leaf with more
    collateral, a position said absent, a missing opening: no proof."""
    state = fixed_state(Position(0, 0, 5 * 10**6, 500))
    args, call = get_honest_witness(onestep, state, encode_item(ForcedClose(state.globals.inbox_count, A, BTC)))
    richer = bytearray(args[1][1])
    richer[64:96] = (10**12).to_bytes(32, "big")
    fuller = bytearray(args[3][1])
    fuller[0:32] = (10**15).to_bytes(32, "big")
    forgeries = [args[:1] + [(True, bytes(richer)) + args[1][2:]] + args[2:],
                 args[:3] + [(True, bytes(fuller)) + args[3][2:]] + args[4:],
                 args[:1] + [(False, b"") + args[1][2:]] + args[2:],
                 args[:3] + args[4:], args[:-1]]
    for forged in forgeries:
        with pytest.raises(Exception):
            call(forged)


def test_a_liquidation_keeps_the_order_epoch_of_the_position(onestep):
    """A position with an order epoch (a five-word leaf) taken over by the
    fund keeps it: the leaf stays (size 0, no margin, the epoch)."""
    bankrupt = Position(10**7, 6_600 * 10**6, 10 * 10**6, 500, 9)
    runner, _, result = step_both(onestep, fixed_state(bankrupt), Liquidate(A, BTC, ()))
    assert result.ok and runner.state.positions[(A, BTC)].order_epoch == 9
    assert len(runner.tree.get(get_position_key(A, BTC))) == 160


def test_forged_witnesses_revert(onestep):
    """A takeover's witness with a leaf lied about (the position's margin, the
    fund's balance, the fund's position said absent), openings swapped or one
    missing does not verify: the step reverts, it proves nothing."""
    state = fixed_state(fund=Position(-3 * 10**8, -183_000 * 10**6, 0, 0))
    args, call = get_honest_witness(onestep, state, encode_item(Liquidate(A, BTC, ())))
    richer = bytearray(args[2][1])
    richer[64:96] = (10**12).to_bytes(32, "big")
    fuller = bytearray(args[0][1])
    fuller[96:128] = (10**15).to_bytes(32, "big")
    forgeries = [args[:2] + [(True, bytes(richer)) + args[2][2:]] + args[3:],
                 [(True, bytes(fuller)) + args[0][2:]] + args[1:],
                 args[:3] + [(False, b"") + args[3][2:]] + args[4:],
                 [args[0], args[2], args[1]] + args[3:], args[:-1]]
    for forged in forgeries:
        with pytest.raises(Exception):
            call(forged)


NEW_BRANCHES = {
    "the ladder's stop": lambda: (with_order_count(fixed_state(owing(Position(10**7, 6_000 * 10**6, 70 * 10**6, 0)),
                                                               market_id=LADDER)), Liquidate(A, LADDER, ())),
    "bankrupt in auction": lambda: (fixed_state(owing(BANKRUPT), market_id=LADDER, auction=RUNNING),
                                    Liquidate(A, LADDER, ())),
    "the backstop's fund short": lambda: (fixed_state(owing(BANKRUPT), insurance=0), Liquidate(A, BTC, ())),
    "an auction end keeping its lots": lambda: (fixed_state(auction=ENDED), AuctionEnd(A, BTC)),
    "a healthy forced close": lambda: (fixed_state(HEALTHY, market_id=LADDER),
                                       ForcedClose(fixed_state().globals.inbox_count, A, LADDER)),
    "a forced close the fund cannot pay": lambda: (fixed_state(BANKRUPT, insurance=0),
                                                   ForcedClose(fixed_state().globals.inbox_count, A, BTC)),
}


@pytest.mark.parametrize("name", sorted(NEW_BRANCHES))
def test_forged_witnesses_of_the_v3_branches_revert(onestep, name):
    """Each opening lied about (a byte of its value, or its presence), the
    last one missing, the first two swapped: no proof."""
    state, record = NEW_BRANCHES[name]()
    args, call = get_honest_witness(onestep, state, encode_item(record))
    forgeries = [args[:-1], [args[1], args[0]] + args[2:]]
    for i, (present, value, proof, sibling) in enumerate(args):
        lie = (present, value[:-1] + bytes([value[-1] ^ 1]), proof, sibling) if present and value else \
            (not present, value, proof, sibling)
        forgeries.append(args[:i] + [lie] + args[i + 1:])
    for forged in forgeries:
        with pytest.raises(Exception):
            call(forged)


DEFICITS = {  # name -> (market, auction, insurance, the record's kind); A's position owes funding past its margin
    "ladder": (LADDER, None, 0, Liquidate), "bankrupt in auction": (LADDER, RUNNING, 0, Liquidate),
    "auction end": (BTC, ENDED, 0, AuctionEnd), "backstop, the fund short": (BTC, None, 0, Liquidate),
    "backstop, the fund's takeover": (BTC, None, 10**12, Liquidate),
    "forced close, bankrupt": (LADDER, None, 10**12, ForcedClose),
}


@pytest.mark.parametrize("name", list(DEFICITS))
def test_funding_owed_past_the_margin_moves_into_the_cost(onestep, name):
    """A bankrupt long with no margin and funding owed (rules v3,
    settle_liquidation_funding): where the record stops, the position is
    written with margin 0 and the deficit in its cost (its equity, its
    bankruptcy price unchanged); where the fund takes it over, the bad debt
    it pays includes the deficit. Both sides agree; no margin ends below 0."""
    market_id, auction, insurance, kind = DEFICITS[name]
    before = owing(Position(10**7, 6_600 * 10**6, 0, 0))
    state = fixed_state(before, market_id=market_id, auction=auction, insurance=insurance)
    owed = compute_funding_owed(before, state.markets[market_id], MARKETS[market_id])
    assert owed > 0
    record = {Liquidate: Liquidate(A, market_id, ()), AuctionEnd: AuctionEnd(A, market_id),
              ForcedClose: ForcedClose(state.globals.inbox_count, A, market_id)}[kind]
    runner, pre_root, result = step_both(onestep, state, record)
    assert result.ok and runner.state_root != pre_root
    assert all(position.margin >= 0 for position in runner.state.positions.values())
    after = runner.state.positions[(A, market_id)]
    if insurance:  # taken over whole: the fund paid the bad debt, the deficit with it
        assert after.size == 0 and after.margin == 0
        paid = 10**12 - runner.state.globals.insurance_fund
        assert paid == 6_600 * 10**6 + owed - 10**7 * PRICES[market_id] // MARKETS[market_id].scale
    else:  # stopped: margin 0, the deficit in the cost
        assert (after.size, after.margin, after.cost) == (before.size, 0, before.cost + owed)


def test_a_deficit_partial_takeover_agrees(onestep):
    """A large solvent long (a partial step) whose funding owed passes its
    margin: its cost holds the deficit before the step, whose realised PnL
    then pays it (the backstop, the fund's takeover in part)."""
    big = Position(10**8, 59_300 * 10**6, 10 * 10**6, 500 - 10**14)
    state = fixed_state(big)
    owed = compute_funding_owed(big, state.markets[BTC], MARKETS[BTC])
    assert owed > big.margin
    runner, _, result = step_both(onestep, state, Liquidate(A, BTC, ()))
    after = runner.state.positions[(A, BTC)]
    assert result.ok and 0 < after.size < big.size and after.margin >= 0
