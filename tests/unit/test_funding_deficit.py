"""Funding owed past a margin never leaves a position leaf with a negative
margin, whatever record acts on the position next (rules v4).

A position leaf holds no negative margin (sequencer.core.commitment: the
state root of such a state cannot be computed, and L1 reverts on it), so a
record that settles funding into a margin and then goes on must either move
the deficit into the cost (rules.positions.absorb_funding_deficit: the
liquidated position, Deleverage's counterparties, and since v4 the vault
taking lots over) or refuse.  Hypothesis builds a book+vault market and a
book+auction market, three traders, the vault and a shareholder, with
positions at a profit or a loss and funding driven against them (the
market's funding index moved, often past what a margin holds, and the
mark moved, so that positions become liquidatable), then runs a
sequence of the records that settle funding into a margin: Trade (maker and
taker, the vault's unwind orders after a VaultUnwind), VaultWithdraw,
VaultDeposit, AuctionBid (the keeper and the owner), AuctionEnd, Deleverage
(its counterparties), Liquidate (naming makers or none: the book, the vault,
the ladder) and AdjustMargin.  After every record, applied or refused: no
negative margin, free collateral or fund, and the state root computable.

What it found: under rules v3 (``schema_version=3``) the vault taking lots
over while it owes funding past its margin writes a negative margin (found
within about 1,000 examples, ISOROLL_FUNDING_DEFICIT_EXAMPLES; pinned below);
rules v4 move that deficit into its cost.  The other records refuse
instead of writing one: Trade's sides and AuctionBid's keeper
(``insufficient_margin`` after settle_fill), AuctionBid's owner and a
book close (``below_bankruptcy``), AdjustMargin (``insufficient_margin``);
Liquidate, Deleverage (its counterparties too), AuctionEnd and ForcedClose
absorb the deficit since v3.
"""
from __future__ import annotations

import os

import msgspec
from hypothesis import HealthCheck, event, given, settings, strategies as st

from prover import fraud_vectors as fv
from prover.trace import build_tree
from sequencer.core.invariants import compute_negative_balances
from sequencer.core.markets import DEVNET_MARKETS, LIQUIDATION_BOOK_AUCTION, LIQUIDATION_BOOK_VAULT
from sequencer.core.records import (AdjustMargin, AuctionBid, AuctionEnd, Deleverage, Liquidate, PlaceOrder, Trade,
                                    VaultDeposit, VaultUnwind, VaultWithdraw)
from sequencer.core.rules.orders import GOOD_TILL_CANCEL, IMMEDIATE_OR_CANCEL
from sequencer.core.rules.vault import VAULT_ADDRESS, compute_vault_unwind, get_unwind_nonce
from sequencer.core.state import Account, Auction, Position, State, VaultShare
from sequencer.core.transition import apply_record

replace = msgspec.structs.replace

VM, AM = 1, 2
MARKETS = {VM: replace(DEVNET_MARKETS[1], liquidation_policy=LIQUIDATION_BOOK_VAULT),
           AM: replace(DEVNET_MARKETS[2], liquidation_policy=LIQUIDATION_BOOK_AUCTION)}
RULES = replace(fv.RULES, markets=MARKETS)
PRICES = {VM: 60_000 * 10**6, AM: 3_000 * 10**6}
TRADERS = tuple(zip(fv.ADDRESSES[:3], fv.KEYS[:3]))
HOLDER, HOLDER_KEY = fv.ADDRESSES[3], fv.KEYS[3]
KEYS = dict(TRADERS) | {HOLDER: HOLDER_KEY}
NOW = fv.BLOCK_TIME
EXPIRY = NOW + 60_000
MAKER_NONCE = {(m, buy): 100 + 10 * m + buy for m in MARKETS for buy in (0, 1)}
"""Each trader's resting orders: a buy and a sell in each market, placed before any taker."""
ORDER_COUNT = 50
EXAMPLES = int(os.environ.get("ISOROLL_FUNDING_DEFICIT_EXAMPLES", 300))


def get_limit(m: int, buy: bool) -> int:
    """Resting limits 10% through the mark: most prices between them trade."""
    p = MARKETS[m]
    return PRICES[m] * (11 if buy else 9) // 10 // p.tick_size * p.tick_size


# --- the pre-state -------------------------------------------------------------------

@st.composite
def positions(draw, m: int, vault: bool = False) -> Position | None:
    """None, or a position on either side at a profit or a loss, its margin
    thin to thick (the vault's: at a deep profit half the time, so that it
    keeps its initial margin while it owes funding past its margin)."""
    if draw(st.integers(0, 4)) == 0:
        return None
    p, mark = MARKETS[m], PRICES[m]
    side = draw(st.sampled_from([1, -1]))
    size = side * draw(st.integers(1, 400)) * p.step_size
    move = draw(st.integers(-mark // 3, mark // 3))
    deep = vault and draw(st.booleans())
    if deep:
        size *= 5
        move = -side * draw(st.integers(mark // 4, mark // 2))
    entry = max(p.tick_size, (mark + move) // p.tick_size * p.tick_size)
    notional = abs(size) * mark // p.scale
    margin = draw(st.sampled_from([0, notional // 50, notional // 10, notional // 3, draw(st.integers(0, notional))]))
    cost = size * entry // p.scale
    snapshot = 0
    if deep:
        margin //= 10
        if draw(st.booleans()):    # funding already driven against it: owing past its margin, within its profit
            owed = margin + draw(st.integers(1, max(1, (size * mark // p.scale - cost) // 2)))
            snapshot = -side * -(-owed * p.scale * 10**6 // abs(size))
    return Position(size, cost, margin, snapshot)


def funding_indices(m: int):
    """A funding index from none to half the notional owed a lot (either side)."""
    bound = PRICES[m] * 10**6 // 2
    return st.one_of(st.sampled_from([0, bound // 100, -bound // 100, bound // 10, -bound // 10, bound, -bound]),
                     st.integers(-bound, bound))


@st.composite
def states(draw) -> State:
    accounts = {a: Account(draw(st.sampled_from([0, 10**8, 10**10, 10**12])), ()) for a, _ in TRADERS}
    accounts[HOLDER] = Account(10**10, ())
    accounts[VAULT_ADDRESS] = Account(draw(st.sampled_from([0, 10**6, 10**9, 10**11])), ())
    held, orders = {}, {}
    for m in MARKETS:
        for a in [a for a, _ in TRADERS] + [VAULT_ADDRESS]:
            position = draw(positions(m, a == VAULT_ADDRESS))
            if position is not None:
                held[(a, m)] = position
        for seq, (a, _) in enumerate(TRADERS):
            for buy in (0, 1):
                order = PlaceOrder(a, m, bool(buy), get_limit(m, bool(buy)), 10**12, draw(st.integers(1, 10)),
                                   GOOD_TILL_CANCEL, False, MAKER_NONCE[(m, buy)], EXPIRY, b"")
                orders[(a, MAKER_NONCE[(m, buy)])] = fv.make_order(order, seq=1 + seq + 3 * buy + 6 * m)
    markets = [replace(fv.make_market(m, PRICES[m]), open_interest=10**15) for m in MARKETS]
    state = fv.make_perps_state(accounts, markets, held, orders, order_count=ORDER_COUNT)
    shares = draw(st.sampled_from([0, 10**9, 10**9]))
    if shares:
        state.set_vault_share(HOLDER, VaultShare(shares, 0))
        state.set_vault_share(VAULT_ADDRESS, VaultShare(shares))
    state.set_globals(replace(state.globals, insurance_fund=draw(st.sampled_from([0, 10**6, 10**12]))))
    auctioned = [a for a, _ in TRADERS if (a, AM) in held]
    if auctioned:
        owner, size = auctioned[0], abs(held[(auctioned[0], AM)].size)
        long = held[(owner, AM)].size > 0
        start = PRICES[AM]
        end = start * (95 if long else 105) // 100
        ends = draw(st.sampled_from([NOW + 30_000, NOW - 1]))
        state.set_auction(owner, AM, Auction(size, start, end, ends - 60_000, ends))
    state.commit(0)
    return state


# --- the records ---------------------------------------------------------------------

class Run:
    """A state and the user nonces handed out so far."""

    def __init__(self, state: State):
        self.state, self.nonce = state, 1000

    def next_nonce(self) -> int:
        self.nonce += 1
        return self.nonce

    def apply(self, record) -> str:
        error = apply_record(self.state, record, NOW, RULES)
        check(self.state)
        return f"{type(record).__name__}: {'ok' if error is None else error.code}"

    def sign(self, record):
        return fv.sign(record, KEYS[record.account])


def check(state: State) -> None:
    """No negative margin, collateral or fund; the state commits."""
    assert compute_negative_balances(state) == []
    build_tree(State.from_tables(state.to_tables()))


def drive_funding(run: Run, data, m: int) -> str:
    market = run.state.markets[m]
    run.state.set_market(replace(market, funding_index=market.funding_index + data.draw(funding_indices(m))))
    run.state.commit(0)
    check(run.state)
    return "funding"


def move_mark(run: Run, data, m: int) -> str:
    """The oracle price and the mark moved by up to 20% (positions become liquidatable, or bankrupt)."""
    p, market = MARKETS[m], run.state.markets[m]
    price = max(p.tick_size, market.mark_price * (100 + data.draw(st.integers(-20, 20))) // 100 // p.tick_size
                * p.tick_size)
    run.state.set_market(replace(market, oracle_price=price, mark_price=price))
    run.state.commit(0)
    check(run.state)
    return "mark"


def trade(run: Run, data, m: int) -> str:
    """A taker's order placed (a signed PlaceOrder), then a Trade against a resting maker."""
    p = MARKETS[m]
    (taker, _), (maker, _) = data.draw(st.permutations(TRADERS))[:2]
    buy = data.draw(st.booleans())
    size = data.draw(st.integers(1, 300)) * p.step_size
    nonce = run.next_nonce()
    placed = run.apply(run.sign(PlaceOrder(taker, m, buy, get_limit(m, buy), size, data.draw(st.integers(1, 10)),
                                           IMMEDIATE_OR_CANCEL, data.draw(st.booleans()), nonce, EXPIRY, b"")))
    if not placed.endswith("ok"):
        return placed
    return run.apply(Trade(m, maker, MAKER_NONCE[(m, int(not buy))], taker, nonce, pick_price(data, m), size))


def pick_price(data, m: int) -> int:
    p = MARKETS[m]
    low, high = get_limit(m, False) // p.tick_size, get_limit(m, True) // p.tick_size
    return data.draw(st.sampled_from([PRICES[m] // p.tick_size, low, high, data.draw(st.integers(low, high))])) \
        * p.tick_size


def unwind(run: Run, data, m: int) -> str:
    """The vault's unwind order, then a Trade taking it."""
    due = compute_vault_unwind(run.state, m, NOW, RULES)
    if due is None:
        return run.apply(VaultUnwind(m, MARKETS[m].step_size, PRICES[m]))   # refused: not due
    outcome = run.apply(due)
    maker = data.draw(st.sampled_from([a for a, _ in TRADERS]))
    vault_buys = run.state.positions[(VAULT_ADDRESS, m)].size < 0
    size = data.draw(st.integers(1, due.size // MARKETS[m].step_size)) * MARKETS[m].step_size
    price = due.price if data.draw(st.booleans()) else PRICES[m]
    trade_outcome = run.apply(Trade(m, maker, MAKER_NONCE[(m, int(not vault_buys))], VAULT_ADDRESS,
                                    get_unwind_nonce(m, NOW, RULES), price, size))
    return f"{outcome}; {trade_outcome}"


def vault_withdraw(run: Run, data, m: int) -> str:
    shares = data.draw(st.sampled_from([1, 10**6, 10**9]))
    return run.apply(run.sign(VaultWithdraw(HOLDER, shares, 0, run.next_nonce(), EXPIRY, b"")))


def vault_deposit(run: Run, data, m: int) -> str:
    return run.apply(run.sign(VaultDeposit(HOLDER, data.draw(st.sampled_from([10**7, 10**9])), 0, run.next_nonce(),
                                           EXPIRY, b"")))


def auction_bid(run: Run, data, m: int) -> str:
    owners = [owner for owner, market in run.state.auctions if market == AM]
    if not owners:
        return "no auction"
    owner = owners[0]
    keeper = data.draw(st.sampled_from([a for a, _ in TRADERS if a != owner]))
    auction = run.state.auctions[(owner, AM)]
    long = run.state.positions[(owner, AM)].size > 0
    size = data.draw(st.integers(1, max(1, auction.size // MARKETS[AM].step_size))) * MARKETS[AM].step_size
    limit = get_limit(AM, long)
    return run.apply(run.sign(AuctionBid(keeper, owner, AM, size, limit, data.draw(st.integers(1, 10)),
                                         run.next_nonce(), EXPIRY, b"")))


def auction_end(run: Run, data, m: int) -> str:
    owners = [owner for owner, market in run.state.auctions if market == AM] or [TRADERS[0][0]]
    return run.apply(AuctionEnd(owners[0], AM))


def deleverage(run: Run, data, m: int) -> str:
    account = data.draw(st.sampled_from([a for a, _ in TRADERS] + [VAULT_ADDRESS]))
    position = run.state.positions.get((account, m))
    long = position is not None and position.size > 0
    others = [a for a, _ in TRADERS + ((VAULT_ADDRESS, b""),) if a != account
              and (a, m) in run.state.positions and (run.state.positions[(a, m)].size < 0) == long
              and run.state.positions[(a, m)].size]
    return run.apply(Deleverage(account, m, tuple(data.draw(st.permutations(others)))))


def liquidate(run: Run, data, m: int) -> str:
    held = [a for a, _ in TRADERS if (a, m) in run.state.positions] or [TRADERS[0][0]]
    account = data.draw(st.sampled_from(held + [VAULT_ADDRESS]))
    position = run.state.positions.get((account, m))
    makers = ()
    if position is not None and position.size and data.draw(st.booleans()):
        makers = tuple((a, MAKER_NONCE[(m, int(position.size < 0))]) for a, _ in TRADERS if a != account)[:1]
    return run.apply(Liquidate(account, m, makers))


def adjust_margin(run: Run, data, m: int) -> str:
    account = data.draw(st.sampled_from([a for a, _ in TRADERS]))
    amount = data.draw(st.sampled_from([1, 10**6, -1, -(10**6), 10**9]))
    return run.apply(run.sign(AdjustMargin(account, m, amount, run.next_nonce(), EXPIRY, b"")))


STEPS = {"funding": drive_funding, "mark": move_mark, "trade": trade, "unwind": unwind, "vault withdraw": vault_withdraw,
         "vault deposit": vault_deposit, "auction bid": auction_bid, "auction end": auction_end,
         "deleverage": deleverage, "liquidate": liquidate, "adjust margin": adjust_margin}

WEIGHTED = sorted(STEPS) + ["funding", "mark", "liquidate", "liquidate"]
"""Funding, the mark and liquidations more often: the vault takes lots over
only from a liquidatable position, and owes past its margin only after
funding moved against it."""


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(states(), st.data())
def test_no_record_leaves_a_negative_margin(state, data):
    check(state)
    run = Run(state)
    for _ in range(data.draw(st.integers(1, 8))):
        name = data.draw(st.sampled_from(WEIGHTED))
        m = data.draw(st.sampled_from([VM, AM]))
        for line in STEPS[name](run, data, m).split("; "):
            event(line)


def owing_vault_state() -> State:
    """A's 0.1 BTC long at 60,000 with 70 USDC of margin (maintenance 72) in
    the book+vault market; the vault long 0.05 BTC bought at 4,000 with 1
    USDC of margin, owing 2,500 USDC of funding (its profit, 2,800, keeps its
    initial margin), 10,000 USDC free and shares outstanding."""
    a = TRADERS[0][0]
    held = {(a, VM): Position(10**7, 6_000 * 10**6, 70 * 10**6, 0),
            (VAULT_ADDRESS, VM): Position(5 * 10**6, 200 * 10**6, 10**6, -5 * 10**16)}
    markets = [replace(fv.make_market(m, PRICES[m]), open_interest=10**15) for m in MARKETS]
    state = fv.make_perps_state({a: Account(10**9, ()), VAULT_ADDRESS: Account(10**10, ())}, markets, held, {})
    state.set_vault_share(HOLDER, VaultShare(10**9, 0))
    state.set_vault_share(VAULT_ADDRESS, VaultShare(10**9))
    state.set_globals(replace(state.globals, insurance_fund=10**9))
    state.commit(0)
    return state


def test_the_vault_owing_past_its_margin_takes_lots_and_commits():
    """The case the property finds under rules v3, pinned: v4 takes A's long into the vault with the
    vault's deficit in its cost; v3 writes its margin at -1,299 USDC."""
    state = owing_vault_state()
    assert apply_record(state, Liquidate(TRADERS[0][0], VM, ()), NOW, RULES) is None
    assert state.positions[(VAULT_ADDRESS, VM)].size == 15 * 10**6
    check(state)
    old = owing_vault_state()
    assert apply_record(old, Liquidate(TRADERS[0][0], VM, ()), NOW, replace(RULES, schema_version=3)) is None
    assert compute_negative_balances(old) == [f"position 0x{VAULT_ADDRESS.hex()}/{VM} margin {-1_299 * 10**6}"]
