"""The differential test of a Liquidate in the book (onestep_book.vy, rules v3).

Hypothesis generates a liquidated position (healthy, liquidatable, bankrupt;
funding owed or due, owed past its margin one time in four (rules v3 move
the deficit into its cost); an order epoch already set or not), resting makers
around its bankruptcy price (on both sides, in other markets, expired,
cancelled, IOC, reduce-only, filled, placed before their owner's order
epoch, of owners with no account or too little collateral, with positions
of their own) and Liquidate records naming up to 5 of them (in price-time
order, shuffled, repeated, the liquidated owner among them, orders that do
not exist), a running auction now and then, and raw item bytes; it runs the
Python rule (RULES_V3, prover.trace with prover.plan_book) and the contract
on py-evm from the same pre-state and requires the same post-state root and
receipt outcome.  Where rules v2 went down the ladder (what the book left in
a record naming no makers under book-first, or book+auction when insolvent
or with nothing to decay; a bankrupt position in auction), rules v3 stop
after the funding settlement and the order epoch (and the auction's end).
A record whose branch is not ported (a maker order of the fund's address;
book+vault's vault step is onestep_vault_step.vy's) raises PendingKind in Python and reverts "pending"
on L1 with the reads it makes.  The rules'
market table here has one market per book policy (BTC book-first, ETH
book+auction, a BTC twin book+vault).  Forged witnesses must revert.
"""
from __future__ import annotations

import os
import random

import msgspec
import pytest
from eth_tester.exceptions import TransactionFailed
from hypothesis import HealthCheck, event, given, settings, strategies as st

from onestep_support import assert_forged_witnesses_revert, get_examples, run_both
from prover import fraud_vectors as fv
from prover.keys import GLOBAL_KEY, get_account_key, get_auction_key, get_market_key, get_order_key, get_position_key
from prover.plan_book import get_book_reads
from prover.plan_vault_step import get_onestep_vault_step_args
from prover.records import PendingKind, encode_item
from prover.trace import Opening, TraceRunner, get_onestep_markets
from sequencer.core.markets import (DEVNET_MARKETS, LIQUIDATION_BOOK_AUCTION, LIQUIDATION_BOOK_FIRST,
                                    LIQUIDATION_BOOK_VAULT)
from sequencer.core.presets import DEVNET
from sequencer.core.records import Liquidate
from sequencer.core.rules.liquidation import compute_liquidation_limit
from sequencer.core.rules.margin import compute_funding_owed
from sequencer.core.rules.positions import INSURANCE_ADDRESS
from sequencer.core.transition import apply_record
from sequencer.core.state import Account, Auction, Order, Position, State

pytestmark = pytest.mark.evm

BOOK, AUCTION, VAULT, UNLISTED = 1, 2, 3, 9
MARKETS = {
    BOOK: msgspec.structs.replace(DEVNET_MARKETS[1], liquidation_policy=LIQUIDATION_BOOK_FIRST),
    AUCTION: msgspec.structs.replace(DEVNET_MARKETS[2], liquidation_policy=LIQUIDATION_BOOK_AUCTION),
    VAULT: msgspec.structs.replace(DEVNET_MARKETS[1], id=VAULT, symbol="BTC2-USD",
                                   liquidation_policy=LIQUIDATION_BOOK_VAULT),
}
RULES = msgspec.structs.replace(fv.RULES, markets=MARKETS)
PRICES = {BOOK: 60_000 * 10**6, AUCTION: 3_000 * 10**6, VAULT: 60_000 * 10**6}
OWNER = fv.ADDRESSES[0]
MAKERS = fv.ADDRESSES[1:]
EXAMPLES = int(os.environ.get("ISOROLL_BOOK_EXAMPLES", get_examples(500)))


@pytest.fixture(scope="module")
def onestep(deploy):
    """onestep.vy routing Liquidate to onestep_liquidate.vy, which forwards it to
    onestep_book.vy (or, naming no makers under book+vault, to
    onestep_vault_step.vy: tests/evm/test_onestep_vault_step.py), deployed
    with RULES' market table."""
    params = (RULES.domain_separator, DEVNET.max_amount, DEVNET.max_expiry_ahead_ms, DEVNET.nonce_window)
    book = deploy("onestep_book", *params, get_onestep_markets(RULES))
    vault_step = deploy("onestep_vault_step", *params, get_onestep_markets(RULES), *get_onestep_vault_step_args(RULES))
    family = deploy("onestep_liquidate", *params, get_onestep_markets(RULES), book.address, vault_step.address)
    return deploy("onestep", *params, [(family.address, [18])])


# --- states -------------------------------------------------------------------------

often = st.sampled_from([True] * 9 + [False])


@st.composite
def markets(draw, market_id: int):
    p = MARKETS[market_id]
    price = PRICES[market_id]
    age = draw(st.sampled_from([1000] * 8 + [p.oracle_max_age_ms + 1]))
    index = draw(st.sampled_from([0, 0, draw(st.integers(-10**12, 10**12))]))
    market = fv.make_market(market_id, price, oracle_time_ms=fv.BLOCK_TIME - age, funding_index=index,
                            funding_dust=draw(st.integers(0, p.scale * 10**6 - 1)))
    return msgspec.structs.replace(market, open_interest=draw(st.integers(10**12, 10**15)))


def snapshot_owing(market, lots: int, owed: int) -> int:
    """A funding snapshot from which a position of ``lots`` owes at least
    ``owed`` (rounded up) at the market's index."""
    step = -(-owed * MARKETS[market.id].scale * 10**6 // abs(lots))
    return market.funding_index - step if lots > 0 else market.funding_index + step


@st.composite
def positions(draw, market, epoch: int, bankrupt: bool = False):
    """A position around its maintenance line at the mark (``bankrupt``: its
    equity at the mark below 0); one time in four funding owed past its
    margin, by up to its PnL and twice its maintenance (rules v3 move the
    deficit into its cost; solvent or not after it: the book, an auction
    started, a stop)."""
    p = MARKETS[market.id]
    mark = market.mark_price
    lots = draw(st.one_of(st.integers(1, 100), st.integers(1, 3000))) * p.step_size * draw(st.sampled_from([1, -1]))
    move = draw(st.integers(-mark // 20, mark // 20))
    if bankrupt:  # bought above the mark (a long) or sold below it (a short): a loss past the margin
        move = (abs(move) + p.tick_size) * (1 if lots > 0 else -1)
    entry = max(p.tick_size, mark + move // p.tick_size * p.tick_size)
    cost = lots * entry // p.scale
    maintenance = abs(lots) * mark * p.maintenance_margin_ppm // (p.scale * 10**6)
    pnl = lots * mark // p.scale - cost
    shape = "bankrupt" if bankrupt else draw(st.sampled_from(["liquidatable"] * 6 + ["bankrupt", "edge", "healthy"]))
    offset = {"liquidatable": st.integers(-maintenance, -1), "bankrupt": st.integers(-maintenance - 10**9, -maintenance - 1),
              "edge": st.integers(-10**3, 10**3), "healthy": st.integers(0, 10**12)}[shape]
    margin = max(0, maintenance - pnl + draw(offset))
    snapshot = market.funding_index + draw(st.sampled_from([0, 0, 0, 1, -1, 10**9, -(10**9) - 3]))
    if draw(st.integers(0, 3)) == 0:
        extra = draw(st.integers(1, max(1, abs(pnl) + 2 * maintenance)))
        snapshot = snapshot_owing(market, lots, margin + extra)
    return Position(lots, cost, margin, snapshot, epoch)


@st.composite
def maker_orders(draw, market, long: bool, limit: int, order_count: int, lots: int):
    """A resting order meant to take the liquidation order, with now and then
    one thing wrong with it."""
    p = MARKETS[market.id]
    mark = market.mark_price
    gap = max(abs(mark - limit) // p.tick_size, 1)
    k = draw(st.integers(0, gap)) if draw(often) else draw(st.integers(0, 3 * gap + 3))
    price = max(p.tick_size, mark - k * p.tick_size if long else mark + k * p.tick_size - gap * p.tick_size)
    steps = max(1, lots // p.step_size)
    size = draw(st.sampled_from([draw(st.integers(1, max(1, steps // 2))), draw(st.integers(1, 2 * steps))])) * p.step_size
    wrong = "none" if draw(often) else draw(st.sampled_from(["side", "market", "cancelled", "expired", "ioc",
                                                             "filled", "reduce_only"]))
    filled = draw(st.sampled_from([0, 0, 0, size // 2 // p.step_size * p.step_size]))
    return Order(fv.keccak(b"order%d" % draw(st.integers(0, 10**6))), size,
                 size if wrong == "filled" else filled, wrong == "cancelled",
                 (market.id % 3) + 1 if wrong == "market" else market.id,
                 long != (wrong == "side"), price, draw(st.integers(1, p.max_leverage)),
                 1 if wrong == "ioc" else draw(st.sampled_from([0, 0, 2])), wrong == "reduce_only",
                 fv.BLOCK_TIME - 1 if wrong == "expired" else fv.BLOCK_TIME + 10**6,
                 draw(st.integers(1, order_count)))


def price_time_key(long: bool):
    return lambda item: ((-item[1].price if long else item[1].price), item[1].seq)


@st.composite
def book_cases(draw):
    """(state, Liquidate) around one market of the table."""
    market_id = draw(st.sampled_from([BOOK, BOOK, AUCTION, AUCTION, VAULT]))
    market = draw(markets(market_id))
    order_count = draw(st.integers(5, 40))
    epoch = draw(st.sampled_from([0, 0, 0, 3, order_count]))
    in_auction = draw(st.sampled_from([False] * 6 + [True] * 2))
    position = draw(positions(market, epoch, bankrupt=in_auction and draw(st.booleans())))
    p = MARKETS[market_id]
    long = position.size > 0
    limit = compute_liquidation_limit(position, market, p)  # after the funding owed, as the rule's
    held = {(OWNER, market_id): position}
    accounts = {OWNER: Account(10**9, ())}
    for maker in MAKERS:
        shape = draw(st.sampled_from(["rich"] * 5 + ["poor", "absent", "rich_with_position"]))
        if shape != "absent":
            accounts[maker] = Account(10**14 if shape.startswith("rich") else draw(st.integers(0, 10**4)), ())
        maker_epoch = 0 if draw(often) else draw(st.integers(0, order_count))
        if shape == "rich_with_position" or maker_epoch:
            size = draw(st.integers(-500, 500)) * p.step_size
            held[(maker, market_id)] = Position(size, size * PRICES[market_id] // p.scale,
                                                draw(st.integers(0, 10**10)), market.funding_index, maker_epoch)
    orders = {}
    for i in range(draw(st.integers(0, 6))):
        owner = draw(st.sampled_from(MAKERS * 9 + [OWNER]))
        orders[(owner, 100 + i)] = draw(maker_orders(market, long, limit, order_count, abs(position.size)))
    named = sorted(orders.items(), key=price_time_key(long))
    how = draw(st.sampled_from(["ordered"] * 12 + ["shuffled", "repeated", "missing"]))
    keys = [key for key, _ in named]
    if how == "shuffled":
        random.Random(draw(st.integers(0, 99))).shuffle(keys)
    elif how == "repeated" and keys:
        keys.insert(draw(st.integers(0, len(keys))), draw(st.sampled_from(keys)))
    elif how == "missing":
        keys.insert(draw(st.integers(0, len(keys))), (draw(st.sampled_from(MAKERS)), 9999))
    keys = keys[:draw(st.sampled_from([4, 4, 4, 5, 3, 2, 1, 0]))]
    state = fv.make_perps_state(accounts, [market], held, orders, order_count=order_count)
    g = state.globals
    state.set_globals(msgspec.structs.replace(g, insurance_fund=draw(st.sampled_from([0, 11, 10**6, 10**12]))))
    if in_auction:
        end = fv.BLOCK_TIME + 60_000
        state.set_auction(OWNER, market_id, Auction(abs(position.size), 10**9, 9 * 10**8, end - 60_000, end))
    state.commit(0)
    account = OWNER if draw(often) else draw(st.sampled_from([INSURANCE_ADDRESS, MAKERS[0]]))
    market_field = market_id if draw(often) else UNLISTED
    return state, Liquidate(account, market_field, tuple(keys))


# --- running both ---------------------------------------------------------------------

def read_openings(state, r: Liquidate) -> list[tuple]:
    """The reads the contract makes past the early refusals (the pending
    branches revert before any write)."""
    tree = TraceRunner(state, RULES).tree
    keys = get_book_reads(r)
    return [Opening(key, tree.get(key), tree.prove(key)).as_arg() for key in keys]


def check(onestep, state, r: Liquidate) -> str:
    """Python and the contract agree on the record; returns what happened."""
    ctx = fv.open_block_ctx(state)
    item = encode_item(r)
    pre = state.to_tables()
    try:
        runner, pre_root, result, (root, ok, post_ctx) = run_both(onestep, state, ctx, item, rules=RULES)
    except PendingKind:
        state = State.from_tables(pre)
        pre_root = TraceRunner(state, RULES).state_root
        with pytest.raises(TransactionFailed, match="pending"):
            onestep.functions.apply(pre_root, ctx.as_arg(), item, read_openings(state, r), []).call()
        return "pending"
    assert (root, ok) == (runner.state_root, result.ok), "the contract and the rule disagree"
    assert all(position.margin >= 0 for position in runner.state.positions.values())
    assert len(result.witness.openings) <= 32
    if not ok:
        assert root == pre_root
        error = apply_record(State.from_tables(pre), r, ctx.timestamp_ms, RULES)
        return f"refused ({error.code if error is not None else '?'})"
    pre_tree_state = State.from_tables(pre)
    before = pre_tree_state.positions.get((r.account, r.market))
    pre_tree = TraceRunner(State.from_tables(pre), RULES).tree
    held = sum(runner.tree.get(get_order_key(*key)) != pre_tree.get(get_order_key(*key)) for key in set(r.makers))
    auction = get_auction_key(r.account, r.market)
    after = {(True, False): ", its auction ended", (False, True): ", an auction started"}.get(
        (pre_tree.get(auction) is not None, runner.tree.get(auction) is not None),
        ", the ladder stops" if not r.makers else "")
    owed = compute_funding_owed(before, pre_tree_state.markets[r.market], MARKETS[r.market]) if before else 0
    deficit = ", funding past the margin" if before and before.margin < owed else ""
    return f"proven ({held} of {len(r.makers)} makers filled{after}{deficit})"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(book_cases())
def test_liquidate_in_the_book_agrees(onestep, case):
    state, r = case
    outcome = check(onestep, state, r)
    event(f"{outcome} policy {MARKETS.get(r.market, MARKETS[BOOK]).liquidation_policy}")


# --- fixed cases: each branch by name, forged witnesses ------------------------------------

A, B, C, D = fv.ADDRESSES
LOT = 10_000  # 0.0001 BTC
EXP = fv.BLOCK_TIME + 60_000


def bid(size: int, price_usd: int, seq: int, *, market: int = BOOK, buy: bool = True) -> Order:
    return Order(fv.keccak(b"bid%d" % seq), size, 0, False, market, buy, price_usd * 10**6, 10, 0, False, EXP, seq)


def fixed_state(orders: dict, *, market_id: int = BOOK, margin: int = 70 * 10**6, auction: Auction | None = None,
                poor: tuple = (), cost: int = 6_000 * 10**6) -> State:
    """A's long (0.1 BTC at 60,000, or 2 ETH at 3,000: the same notional) with
    margin 70 USDC (maintenance 72) against `orders`; B, C, D rich makers."""
    size = 10**7 if market_id != AUCTION else 2 * 10**9
    position = Position(size, cost, margin, 0)
    accounts = {A: Account(10**9, ())} | {m: Account(10 if m in poor else 10**10, ()) for m in (B, C, D)}
    market = fv.make_market(market_id, PRICES[market_id])
    state = fv.make_perps_state(accounts, [market], {(A, market_id): position}, orders, order_count=20)
    if auction is not None:
        state.set_auction(A, market_id, auction)
        state.commit(0)
    return state


RUNNING = Auction(10**6, 60_000 * 10**6, 59_000 * 10**6, fv.BLOCK_TIME - 1000, fv.BLOCK_TIME + 1000)
def fixed_cases() -> dict:
    """name -> (a fresh pre-state, the record, the expected outcome)."""
    return {
        "two makers take the whole position": (
            fixed_state({(B, 1): bid(6 * 10**6, 59_900, 3), (C, 2): bid(10**7, 59_800, 4)}),
            Liquidate(A, BOOK, ((B, 1), (C, 2))), "proven"),
        "a maker with no collateral passed over, the next fills": (
            fixed_state({(B, 1): bid(6 * 10**6, 59_900, 3), (C, 2): bid(10**7, 59_800, 4)}, poor=(B,)),
            Liquidate(A, BOOK, ((B, 1), (C, 2))), "proven"),
        "four makers, one owner twice, part of the position": (
            fixed_state({(B, 1): bid(10**6, 59_900, 3), (C, 2): bid(10**6, 59_800, 4), (D, 3): bid(10**6, 59_800, 5),
                         (B, 4): bid(10**6, 59_700, 6)}),
            Liquidate(A, BOOK, ((B, 1), (C, 2), (D, 3), (B, 4))), "proven"),
        "book+auction, no makers: an auction for the position": (
            fixed_state({}, market_id=AUCTION), Liquidate(A, AUCTION, ()), "proven"),
        "book+auction, a maker: the book only": (
            fixed_state({(B, 1): bid(10**9, 2_990, 3, market=AUCTION)}, market_id=AUCTION),
            Liquidate(A, AUCTION, ((B, 1),)), "proven"),
        "book-first, no makers: the ladder stops": (fixed_state({}), Liquidate(A, BOOK, ()), "proven"),
        "book+auction, no makers, insolvent: the ladder stops": (
            fixed_state({}, market_id=AUCTION, margin=0, cost=6_100 * 10**6), Liquidate(A, AUCTION, ()), "proven"),
        "book+auction, no makers, nothing to decay: the ladder stops": (
            fixed_state({}, market_id=AUCTION, margin=0, cost=6_000 * 10**6), Liquidate(A, AUCTION, ()), "proven"),
        "book+vault, no makers: the vault": (fixed_state({}, market_id=VAULT), Liquidate(A, VAULT, ()), "proven"),
        "a solvent position in auction": (fixed_state({}, auction=RUNNING), Liquidate(A, BOOK, ()), "refused"),
        "a bankrupt position in auction: its auction ends": (
            fixed_state({}, auction=RUNNING, margin=0, cost=6_100 * 10**6), Liquidate(A, BOOK, ()), "proven"),
        "a bankrupt position in auction, makers named: its auction ends": (
            fixed_state({(B, 1): bid(10**7, 59_900, 3)}, auction=RUNNING, margin=0, cost=6_100 * 10**6),
            Liquidate(A, BOOK, ((B, 1),)), "proven"),
        "a maker order of the insurance fund's address": (
            fixed_state({(INSURANCE_ADDRESS, 1): bid(10**7, 59_900, 3)}), Liquidate(A, BOOK, ((INSURANCE_ADDRESS, 1),)),
            "pending"),
        "a refused maker named before a fund's maker": (
            fixed_state({(B, 1): bid(10**6, 59_900, 3, buy=False), (INSURANCE_ADDRESS, 1): bid(10**7, 59_800, 4)}),
            Liquidate(A, BOOK, ((B, 1), (INSURANCE_ADDRESS, 1))), "refused"),
        "a fund's maker named before a refused maker": (
            fixed_state({(INSURANCE_ADDRESS, 1): bid(10**6, 59_900, 3), (B, 1): bid(10**7, 59_800, 4, buy=False)}),
            Liquidate(A, BOOK, ((INSURANCE_ADDRESS, 1), (B, 1))), "refused"),
        "makers out of order": (
            fixed_state({(B, 1): bid(6 * 10**6, 59_900, 3), (C, 2): bid(10**7, 59_800, 4)}),
            Liquidate(A, BOOK, ((C, 2), (B, 1))), "refused"),
        "five makers": (fixed_state({}), Liquidate(A, BOOK, tuple((B, n) for n in range(5))), "refused"),
    }


FIXED = sorted(fixed_cases())


@pytest.mark.parametrize("name", FIXED)
def test_each_branch(onestep, name):
    state, r, expected = fixed_cases()[name]
    outcome = check(onestep, state, r)
    assert outcome.split(" ")[0] == expected, outcome


@pytest.mark.parametrize("name", ["four makers, one owner twice, part of the position",
                                  "book+auction, no makers: an auction for the position",
                                  "book-first, no makers: the ladder stops",
                                  "a bankrupt position in auction, makers named: its auction ends"])
def test_forged_witnesses_revert(onestep, name):
    """Every opening altered (a value, a presence, its proof), one missing,
    two swapped: each reverts; the honest one gives the reference root
    (onestep_support.assert_forged_witnesses_revert)."""
    state, r, _ = fixed_cases()[name]
    assert_forged_witnesses_revert(onestep, state, r, RULES)


@settings(max_examples=get_examples(40), deadline=None, suppress_health_check=list(HealthCheck))
@given(size=st.sampled_from([25, 26, 27, 54, 55, 56, 83, 139, 167, 251]), data=st.data())
def test_raw_liquidate_items_agree(onestep, size, data):
    """Any bytes of a Liquidate's tag: a wrong length is a NOOP on both sides,
    a right one whatever record it decodes to (its makers, a count past 4 or 8)."""
    state, _, _ = fixed_cases()["four makers, one owner twice, part of the position"]
    item = bytes((2, 18)) + data.draw(st.binary(min_size=size - 2, max_size=size - 2))
    if size >= 27 and data.draw(st.booleans()):  # the liquidated owner in a listed market, the count as long as the item
        count = (size - 27) // 28
        item = item[:2] + A + BOOK.to_bytes(4, "big") + bytes([count]) + item[27:]
    ctx = fv.open_block_ctx(state)
    try:
        runner, pre_root, result, (root, ok, _) = run_both(onestep, state, ctx, item, rules=RULES)
    except PendingKind:
        return
    assert (root, ok) == (runner.state_root, result.ok)


@pytest.mark.parametrize("auction", [None, RUNNING], ids=["no makers", "bankrupt in auction"])
def test_a_stop_whose_funding_exceeds_the_margin_moves_the_deficit_into_the_cost(onestep, auction):
    """Rules v3 (settle_liquidation_funding): where a Liquidate stops
    (book-first with no makers, a bankrupt position in auction) the position
    is written with margin 0 and the funding owed past it in its cost."""
    state = fixed_state({}, auction=auction, margin=0, cost=6_100 * 10**6)
    market = state.markets[BOOK]
    state.set_market(msgspec.structs.replace(market, funding_index=10**9))  # the long owes funding
    state.commit(0)
    owed = compute_funding_owed(state.positions[(A, BOOK)], state.markets[BOOK], MARKETS[BOOK])
    assert owed > 0
    assert check(onestep, state, Liquidate(A, BOOK, ())).startswith("proven")
    after = state.positions[(A, BOOK)]  # the runner stepped the state
    assert (after.size, after.margin, after.cost) == (10**7, 0, 6_100 * 10**6 + owed)
    assert (A, BOOK) not in state.auctions


@pytest.mark.parametrize("policy", ["book", "auction"])
def test_a_deficit_then_the_book_or_an_auction(onestep, policy):
    """Funding owed past the margin of a solvent position (its PnL pays it):
    the deficit moves into the cost first, then a maker takes the position
    (its realised PnL covers the deficit) or, under book+auction with no
    makers, an auction starts for it; both sides agree."""
    market_id = BOOK if policy == "book" else AUCTION
    orders = {(B, 1): bid(10**7, 59_900, 3)} if policy == "book" else {}
    state = fixed_state(orders, market_id=market_id, margin=10 * 10**6, cost=5_940 * 10**6)
    market = state.markets[market_id]
    state.set_market(msgspec.structs.replace(market, funding_index=2 * 10**14 if policy == "book" else 10**13))
    state.commit(0)
    before = state.positions[(A, market_id)]
    assert compute_funding_owed(before, state.markets[market_id], MARKETS[market_id]) > before.margin
    makers = ((B, 1),) if orders else ()
    assert check(onestep, state, Liquidate(A, market_id, makers)).startswith("proven")
    if policy == "auction":
        assert (A, AUCTION) in state.auctions
