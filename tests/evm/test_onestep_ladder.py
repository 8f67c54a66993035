"""The differential test of a Deleverage (rules v3, onestep_ladder.vy).

Hypothesis generates a liquidated position (healthy, liquidatable, bankrupt,
large enough for a partial step, owing funding past its margin, an order
epoch set or not, now and then in auction or on a stale mark), up to seven
users and the insurance fund with positions of every shape (on the other
side, rich, poor enough for the auto-deleveraging cap to cut, under water,
in profit but owing funding past their margin, with no equity, on the same
side, flat, none; the fund's well under water or not), a fund rich, short,
or just able to pay the whole position's shortfall at the mark, and
Deleverage records naming 1 to 6 of them in any order (the fund's own
position first a third of the time; now and then one named twice, the
account itself, an unlisted market); a quarter of the cases are a
Deleverage of the insurance fund's own position (long or short, owing
funding or not) against the users on the other side.  It runs the Python
rule (prover.trace with prover.plan_ladder) and the contract on py-evm from
the same pre-state and requires the same post-state root and receipt
outcome; a derandomized run of the generator (the rule alone) shows every
branch reached.  Raw items of any length (0 and 7 counterparties too), each
branch by name and forged witnesses (each opening altered, one missing, two
swapped: all revert) complete it.
"""
from __future__ import annotations

from unittest import mock

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from onestep_support import assert_forged_witnesses_revert, get_examples, params_of, run_both
from prover import fraud_vectors as fv
from prover.hashing import keccak
from prover.keys import get_position_key
from prover.records import encode_item
from prover.trace import TraceRunner, get_onestep_markets
from sequencer.core.presets import DEVNET
from sequencer.core.records import Deleverage
from sequencer.core.rules import liquidation
from sequencer.core.rules.margin import compute_equity_scaled, compute_funding_owed
from sequencer.core.rules.positions import INSURANCE_ADDRESS
from sequencer.core.state import Account, Auction, Position, State
from sequencer.core.transition import apply_record

pytestmark = pytest.mark.evm

FUND = INSURANCE_ADDRESS
OWNER = keccak(b"ladder owner")[:20]
USERS = [keccak(b"ladder user %d" % i)[:20] for i in range(7)]
PRICES = {fv.BTC: 60_000 * 10**6, fv.ETH: 3_000 * 10**6}
UNLISTED = 9
PPM = 10**6


@pytest.fixture(scope="module")
def onestep(deploy):
    """onestep.vy routing Deleverage to onestep_ladder.vy (fv.RULES' market table)."""
    family = deploy("onestep_ladder", *fv.ONESTEP_PARAMS, get_onestep_markets(fv.RULES))
    return deploy("onestep", *fv.ONESTEP_PARAMS, [(family.address, [24])])


# --- states -------------------------------------------------------------------------

@st.composite
def markets(draw, market_id: int):
    p = params_of(market_id)
    age = draw(st.sampled_from([1000] * 12 + [p.oracle_max_age_ms + 1]))
    index = draw(st.sampled_from([0, 0, draw(st.integers(-10**15, 10**15))]))
    market = fv.make_market(market_id, PRICES[market_id], oracle_time_ms=fv.BLOCK_TIME - age, funding_index=index,
                            funding_dust=draw(st.integers(0, p.scale * PPM - 1)))
    return msgspec.structs.replace(market, open_interest=draw(st.integers(10**13, 10**16)))


def draw_snapshot(draw, index: int) -> int:
    return index + draw(st.sampled_from([0, 0, 0, 1, -1, 10**9, -(10**9) - 3, 10**14, -(10**14), 3 * 10**15]))


@st.composite
def owner_positions(draw, market, epoch: int):
    """A position around its maintenance line at the mark (large ones for a
    partial step, bankrupt ones for bad debt)."""
    p = params_of(market.id)
    mark = market.mark_price
    steps = draw(st.one_of(st.integers(1, 200), st.integers(1, 5000), st.integers(5000, 60000)))
    lots = steps * p.step_size * draw(st.sampled_from([1, -1]))
    entry = max(p.tick_size, mark + draw(st.integers(-mark // 20, mark // 20)) // p.tick_size * p.tick_size)
    cost = lots * entry // p.scale
    maintenance = abs(lots) * mark * p.maintenance_margin_ppm // (p.scale * PPM)
    pnl = lots * mark // p.scale - cost
    shape = draw(st.sampled_from(["liquidatable"] * 4 + ["bankrupt"] * 4 + ["edge", "healthy", "owes", "owes"]))
    offset = {"liquidatable": st.integers(-maintenance, -1),
              "bankrupt": st.just(0),
              "edge": st.integers(-10**3, 10**3), "healthy": st.integers(0, 10**12),
              "owes": st.integers(-maintenance, maintenance)}[shape]
    margin = max(0, maintenance - pnl + draw(offset))
    if shape == "bankrupt":  # equity -x at the mark, whatever the entry
        margin = draw(st.integers(0, maintenance))
        cost = lots * mark // p.scale + margin + draw(st.integers(1, max(1, abs(lots) * mark // p.scale // 10)))
    if shape == "owes":  # funding owed past its margin: negative after settling
        owed = margin + draw(st.integers(1, 10**8))
        snapshot = market.funding_index - owed * p.scale * PPM // lots
        return Position(lots, cost, margin, snapshot, epoch)
    snapshot = draw_snapshot(draw, market.funding_index) if draw(st.booleans()) else market.funding_index
    return Position(lots, cost, margin, snapshot, epoch)


@st.composite
def counter_positions(draw, market, side: int, fund: bool, clean: bool):
    """A counterparty's position on the other side (`side`) of the liquidated
    one (`clean`), or of any shape."""
    p = params_of(market.id)
    mark = market.mark_price
    if fund:
        shape = draw(st.sampled_from(["other"] if clean else ["other", "same_side", "none"]))
    elif clean:
        shape = draw(st.sampled_from(["rich"] * 3 + ["poor"] * 2 + ["under_water", "owes"]))
    else:
        shape = draw(st.sampled_from(["rich", "poor", "under_water", "no_equity", "same_side", "none", "flat", "owes"]))
    if shape == "none":
        return None
    snapshot = draw_snapshot(draw, market.funding_index) if draw(st.booleans()) else market.funding_index
    if shape == "flat":
        return Position(0, 0, draw(st.integers(1, 10**9)), snapshot, draw(st.sampled_from([0, 3])))
    steps = draw(st.one_of(st.integers(1, 300), st.integers(1, 20000)))
    size = steps * p.step_size * (-side if shape == "same_side" else side)
    entry = max(p.tick_size, mark + draw(st.integers(-mark // 10, mark // 10)) // p.tick_size * p.tick_size)
    cost = size * entry // p.scale
    pnl = size * mark // p.scale - cost
    notional = abs(size) * mark // p.scale
    if fund:
        if draw(st.booleans()):  # well under water: its PnL realised at the mark can tip the insurance fund
            cost = size * (mark + side * mark * draw(st.integers(5, 30)) // 100) // p.scale
        return Position(size, cost, draw(st.sampled_from([0, 0, 0, 5])), snapshot)
    if shape == "owes":  # in profit, owing funding past its margin: negative after settling, absorbed
        entry = mark - side * mark * draw(st.integers(2, 10)) // 100 // p.tick_size * p.tick_size
        cost = size * entry // p.scale
        pnl = size * mark // p.scale - cost
        margin = draw(st.integers(0, 10**6))
        owed = margin + draw(st.integers(1, max(1, pnl // 2)))
        return Position(size, cost, margin, market.funding_index - owed * p.scale * PPM // size)
    margin = {"rich": notional // draw(st.integers(2, 40)) + max(0, -pnl),
              "same_side": notional // 10 + max(0, -pnl),
              "poor": max(0, -pnl) + draw(st.integers(1, max(2, notional // 200))),
              "under_water": max(0, -pnl + draw(st.integers(1, 10**6))),
              "no_equity": max(0, -pnl + draw(st.integers(-10**6, 1)))}[shape]
    return Position(size, cost, margin, snapshot, draw(st.sampled_from([0, 0, 0, 7])))


@st.composite
def ladder_cases(draw):
    """(state, Deleverage) around one market."""
    market_id = draw(st.sampled_from([fv.BTC, fv.BTC, fv.ETH]))
    market = draw(markets(market_id))
    order_count = draw(st.sampled_from([0, 5, 40]))
    position = draw(owner_positions(market, draw(st.sampled_from([0, 0, 3, order_count]))))
    side = -1 if position.size > 0 else 1
    held = {(OWNER, market_id): position}
    accounts = {OWNER: Account(10**9, ())}
    clean = draw(st.sampled_from([True] * 3 + [False]))
    unwind = draw(st.sampled_from([False] * 3 + [True]))  # a Deleverage of the fund's own position
    fund_side = draw(st.sampled_from([1, -1])) if unwind else side
    for user in USERS:
        accounts[user] = Account(draw(st.sampled_from([0, 10**6, 10**12])), draw(st.sampled_from([(), (1, 5, 9)])))
        counter = draw(counter_positions(market, -fund_side if unwind else side, False, clean))
        if counter is not None:
            held[(user, market_id)] = counter
    fund = draw(counter_positions(market, fund_side, True, clean or unwind))
    if unwind and draw(st.booleans()):  # the fund owes funding (up to 1,000 USDC): settled out of the insurance fund
        owed = draw(st.integers(1, 10**9)) * params_of(market_id).scale * PPM
        fund = msgspec.structs.replace(fund, funding_snapshot=market.funding_index - owed // fund.size)
    if fund is not None:
        held[(FUND, market_id)] = fund
    state = fv.make_perps_state(accounts, [market], held, {}, order_count=order_count)
    insurance = draw(st.sampled_from([0, 0, 11, 10**6, 10**12, 10**12] if unwind else
                                     [0, 0, 0, 0, 11, 10**6, 10**9, 10**12, "just enough"]))
    if insurance == "just enough":  # for the whole position's shortfall at the mark: any loss past it tips the fund
        p = params_of(market_id)
        equity = compute_equity_scaled(position, market.mark_price, market, p)
        insurance = max(0, -(equity // p.scale)) + draw(st.integers(0, 2))
    state.set_globals(msgspec.structs.replace(state.globals, insurance_fund=insurance))
    if draw(st.sampled_from([False] * 12 + [True])):
        state.set_auction(OWNER, market_id, Auction(abs(position.size), 10**9, 9 * 10**8, fv.BLOCK_TIME - 1000,
                                                    fv.BLOCK_TIME + 60_000))
    state.commit(0)
    count = draw(st.sampled_from([1, 1, 2, 2, 3, 3, 4, 5, 6, 6]))
    named = draw(st.permutations(USERS if unwind else USERS + [FUND]))[:count]
    if not unwind and draw(st.sampled_from([False] * 2 + [True])):  # the engine names the fund's own first
        named = ([FUND] + [who for who in named if who != FUND])[:count]
    how = draw(st.sampled_from(["named"] * 16 + ["repeated", "the account", "none"]))
    if how == "repeated":
        named.insert(draw(st.integers(0, len(named))), draw(st.sampled_from(named)))
    elif how == "the account":
        named.insert(draw(st.integers(0, len(named))), FUND if unwind else OWNER)
    elif how == "none":
        named = []
    named = named[:6]
    account = FUND if unwind else OWNER
    if draw(st.sampled_from([False] * 19 + [True])):
        account = draw(st.sampled_from([FUND, OWNER, USERS[0]]))
    market_field = market_id if draw(st.sampled_from([True] * 19 + [False])) else UNLISTED
    return state, Deleverage(account, market_field, tuple(named))


# --- running both ---------------------------------------------------------------------

def check(onestep, state, item: bytes, r: Deleverage | None = None) -> str:
    """Python and the contract agree on the item; returns what happened."""
    ctx = fv.open_block_ctx(state)
    pre = state.to_tables()
    with Spies() as spies:
        runner, pre_root, result, (root, ok, _) = run_both(onestep, state, ctx, item)
    assert (root, ok) == (runner.state_root, result.ok), "the contract and the rule disagree"
    assert len(result.witness.openings) <= 31
    if r is None:
        return "raw " + ("applied" if ok else "refused")
    if not ok:
        assert root == pre_root
        error = apply_record(State.from_tables(pre), r, ctx.timestamp_ms, fv.RULES)
        return f"refused ({error.code if error is not None else 'noop'})"
    return describe(State.from_tables(pre), runner.state, r, spies)


class Spies:
    """What the rule's branch functions returned, each call (wrapped, not replaced)."""
    NAMES = ("process_deleverage_slice", "can_fund_pay_shortfall", "process_fund_unwind")

    def __enter__(self):
        self.calls = {name: [] for name in self.NAMES}
        self.patches = [mock.patch.object(liquidation, name, self.spy(name, getattr(liquidation, name)))
                        for name in self.NAMES]
        for patch in self.patches:
            patch.start()
        return self

    def spy(self, name, real):
        def call(*args, **kwargs):
            out = real(*args, **kwargs)
            self.calls[name].append(out)
            return out
        return call

    def ran(self, name) -> bool:
        return bool(self.calls[name])

    def __exit__(self, *exc):
        for patch in self.patches:
            patch.stop()


def owes_past_margin(state: State, who: bytes, market_id: int) -> bool:
    position = state.positions.get((who, market_id))
    if position is None or who == FUND:
        return False
    owed = compute_funding_owed(position, state.markets[market_id], params_of(market_id))
    return position.margin - owed < 0


def describe(before: State, after: State, r: Deleverage, spies: Spies) -> str:
    """The branch an applied record took, and whose funding deficit was absorbed."""
    reached = [who for who in r.counterparties if get_size(after, who, r.market) != get_size(before, who, r.market)]
    position = after.positions.get((r.account, r.market))
    rest = "whole" if position is None or position.size == 0 else "part"
    adl = spies.ran("process_deleverage_slice")
    if spies.ran("process_fund_unwind"):
        fund = before.positions[(FUND, r.market)]
        owed = compute_funding_owed(fund, before.markets[r.market], params_of(r.market))
        branch = "the fund auto-deleveraged" if adl else "the fund unwound at the mark"
        branch += ", owing funding" if owed > 0 else ""
    else:
        can_pay = spies.calls["can_fund_pay_shortfall"] == [True]
        branch = ("auto-deleveraged, the fund short at the mark" if adl else "closed at the mark") if can_pay \
            else "auto-deleveraged, the fund short of the shortfall"
        if owes_past_margin(before, r.account, r.market):
            branch += ", its deficit absorbed"
    if any(owes_past_margin(before, who, r.market) for who in reached):
        branch += ", a counterparty's deficit absorbed"
    return f"{branch} ({rest}, {len(reached)} of {len(r.counterparties)} reached)"


def get_size(state: State, who: bytes, market_id: int) -> int:
    position = state.positions.get((who, market_id))
    return 0 if position is None else position.size


EXAMPLES = get_examples(400)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(ladder_cases())
def test_deleverage_agrees(onestep, case):
    state, r = case
    event(check(onestep, state, encode_item(r), r))


REACHED = [("closed at the mark",), ("auto-deleveraged, the fund short at the mark",),
           ("auto-deleveraged, the fund short of the shortfall",), ("closed at the mark", ", its deficit absorbed"),
           ("auto-deleveraged", ", its deficit absorbed"), ("closed at the mark", "a counterparty's deficit absorbed"),
           ("auto-deleveraged, the fund short of", "a counterparty's deficit absorbed"),
           ("the fund unwound at the mark",), ("the fund unwound at the mark, owing funding",),
           ("the fund auto-deleveraged",), ("the fund auto-deleveraged, owing funding",),
           ("refused (deleverage_failed)",), ("refused (in_auction)",), ("refused (invalid_counterparty)",)]


def test_the_differential_reaches_every_branch():
    """The generator's cases (800, derandomized; the Python rule alone) reach
    each branch of rules v3's Deleverage: a negative margin after funding
    absorbed (the liquidated position's, a counterparty's), the fund able to
    pay the shortfall and still short at the mark, or not able to, the
    fund's own position unwound at the mark or auto-deleveraged, owing
    funding or not."""
    seen = set()

    @settings(max_examples=800, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(ladder_cases())
    def run(case):
        state, r = case
        before = State.from_tables(state.to_tables())
        with Spies() as spies:
            error = apply_record(state, r, fv.BLOCK_TIME, fv.RULES)
        seen.add(f"refused ({error.code})" if error is not None else describe(before, state, r, spies))
    run()
    missing = [words for words in REACHED if not any(all(w in outcome for w in words) for outcome in seen)]
    assert not missing, missing


@settings(max_examples=get_examples(60), deadline=None, suppress_health_check=list(HealthCheck))
@given(count=st.sampled_from([0, 1, 2, 3, 6, 7, 8, 255]), extra=st.sampled_from([0, 0, 0, -1, 1, 20]),
       shape=st.sampled_from(["named", "named", "random"]), data=st.data())
def test_raw_deleverage_items_agree(onestep, count, extra, shape, data):
    """Any bytes of a Deleverage's tag: a count past 6 or a length that does
    not match it is a NOOP on both sides; a right one whatever it decodes to."""
    state, _, _ = fixed_cases()["three users take the whole position at the mark"]
    if shape == "named":
        names = b"".join(data.draw(st.sampled_from(USERS[:3] + [FUND, OWNER])) for _ in range(min(count, 8)))
        body = A_ + fv.BTC.to_bytes(4, "big") + bytes([count]) + names
    else:
        body = data.draw(st.binary(min_size=25 + 20 * min(count, 8), max_size=25 + 20 * min(count, 8)))
    body = body[:len(body) + extra] if extra < 0 else body + bytes(extra)
    check(onestep, state, bytes((2, 24)) + body)


# --- fixed cases: each branch by name, forged witnesses ------------------------------------

A_ = OWNER
B, C, D, E, F, G, H = USERS
BTC_LOT = 10_000   # 0.0001 BTC
PRICE = PRICES[fv.BTC]


def short(lots: int, *, entry: int = 60_000, margin: int = 10**9, snapshot: int = 0) -> Position:
    return Position(-lots, -lots * entry * 10**6 // 10**8, margin, snapshot)


def long(lots: int, *, entry: int = 60_000, margin: int = 10**9, snapshot: int = 0) -> Position:
    return Position(lots, lots * entry * 10**6 // 10**8, margin, snapshot)


def fixed_state(counters: dict, *, size: int = 1000 * BTC_LOT, margin: int = 70 * 10**6, cost: int = 6_000 * 10**6,
                insurance: int = 10**12, auction: bool = False, oracle_age: int = 1000, funding_index: int = 0,
                order_count: int = 20, price: int = PRICE) -> State:
    """A's long (0.1 BTC at 60,000 with margin 70 USDC: maintenance 72) in
    BTC against the shorts `counters` (address -> Position)."""
    accounts = {A_: Account(10**9, ())} | {u: Account(10**6, (1, 2)) for u in USERS}
    held = {(A_, fv.BTC): Position(size, cost, margin, 0)} | {(u, fv.BTC): p for u, p in counters.items()}
    market = msgspec.structs.replace(fv.make_market(fv.BTC, price, oracle_time_ms=fv.BLOCK_TIME - oracle_age,
                                                    funding_index=funding_index), open_interest=10**14)
    state = fv.make_perps_state(accounts, [market], held, {}, order_count=order_count)
    state.set_globals(msgspec.structs.replace(state.globals, insurance_fund=insurance))
    if auction:
        state.set_auction(A_, fv.BTC, Auction(size, PRICE, 59_300 * 10**6, fv.BLOCK_TIME - 1000, fv.BLOCK_TIME + 10**4))
    state.commit(0)
    return state


def fixed_cases() -> dict:
    """name -> (a fresh pre-state, the record, the expected outcome)."""
    three = {B: short(400 * BTC_LOT), C: short(400 * BTC_LOT), D: short(400 * BTC_LOT)}
    six = {u: short(200 * BTC_LOT) for u in USERS[:6]}
    bankrupt = dict(margin=0, cost=6_100 * 10**6)           # its bankruptcy price 61,000: 100 USDC bad debt
    poor = {B: short(300 * BTC_LOT, entry=60_500, margin=3 * 10**6), C: short(2000 * BTC_LOT)}
    return {
        "one user takes the whole position at the mark": (
            fixed_state({B: short(2000 * BTC_LOT)}), Deleverage(A_, fv.BTC, (B,)), "closed"),
        "three users take the whole position at the mark": (
            fixed_state(three), Deleverage(A_, fv.BTC, (B, C, D)), "closed"),
        "six users, the last one closed whole (31 openings)": (
            fixed_state(six, size=1200 * BTC_LOT, cost=7_200 * 10**6, margin=84 * 10**6),
            Deleverage(A_, fv.BTC, tuple(USERS[:6])), "closed"),
        "two users take part; the rest stays": (
            fixed_state({B: short(300 * BTC_LOT), C: short(300 * BTC_LOT)}), Deleverage(A_, fv.BTC, (B, C)), "closed"),
        "the fund's own position first, then a user": (
            fixed_state({FUND: Position(-500 * BTC_LOT, -3_000 * 10**6, 0, 0), B: short(2000 * BTC_LOT)}),
            Deleverage(A_, fv.BTC, (FUND, B)), "closed"),
        "a partial step of a large position": (
            fixed_state({B: short(20_000 * BTC_LOT)}, size=10_000 * BTC_LOT, cost=60_000 * 10**6,
                        margin=700 * 10**6), Deleverage(A_, fv.BTC, (B,)), "closed"),
        "bad debt the fund pays": (fixed_state(three, **bankrupt), Deleverage(A_, fv.BTC, (B, C, D)), "closed"),
        "the fund short: auto-deleveraged whole": (
            fixed_state(three, insurance=10, **bankrupt), Deleverage(A_, fv.BTC, (B, C, D)), "adl"),
        "the fund short: a poor user's cap cuts, the next takes the rest": (
            fixed_state(poor, insurance=10, **bankrupt), Deleverage(A_, fv.BTC, (B, C)), "adl"),
        "the fund short: the caps leave part of the position": (
            fixed_state({B: short(300 * BTC_LOT, entry=60_500, margin=3 * 10**6)}, insurance=10, **bankrupt),
            Deleverage(A_, fv.BTC, (B,)), "adl"),
        "the fund short: its own position takes no part": (
            fixed_state({FUND: Position(-500 * BTC_LOT, -3_000 * 10**6, 0, 0), B: short(2000 * BTC_LOT)},
                        insurance=10, **bankrupt), Deleverage(A_, fv.BTC, (FUND, B)), "adl"),
        "the fund short, only its own position named": (
            fixed_state({FUND: Position(-500 * BTC_LOT, -3_000 * 10**6, 0, 0)}, insurance=10, **bankrupt),
            Deleverage(A_, fv.BTC, (FUND,)), "refused"),
        "negative margin after funding (absorbed into the cost), partly auto-deleveraged": (
            fixed_state({B: short(300 * BTC_LOT, entry=60_500, margin=3 * 10**6)}, insurance=10, margin=10**6,
                        cost=6_100 * 10**6, funding_index=10**15), Deleverage(A_, fv.BTC, (B,)), "adl"),
        "negative margin after funding (absorbed), the fund pays the shortfall at the mark": (
            fixed_state(three, margin=10**6, funding_index=10**15), Deleverage(A_, fv.BTC, (B, C, D)), "closed"),
        "a counterparty owing funding past its margin (absorbed), closed at the mark": (
            fixed_state({B: short(400 * BTC_LOT, entry=65_000, margin=10**6, snapshot=125 * 10**13),
                         C: short(400 * BTC_LOT), D: short(400 * BTC_LOT)}), Deleverage(A_, fv.BTC, (B, C, D)), "closed"),
        "a counterparty owing funding past its margin (absorbed), auto-deleveraged": (
            fixed_state({B: short(2000 * BTC_LOT, entry=66_000, margin=10**6, snapshot=10**14)}, insurance=10,
                        **bankrupt), Deleverage(A_, fv.BTC, (B,)), "adl"),
        "the fund can pay the shortfall, but its own short named first loses: auto-deleveraged": (
            fixed_state({FUND: Position(-500 * BTC_LOT, -2_500 * 10**6, 0, 0), B: short(2000 * BTC_LOT)},
                        insurance=200 * 10**6, **bankrupt), Deleverage(A_, fv.BTC, (FUND, B)), "adl"),
        "the fund's short unwound at the mark against two longs": (
            fixed_state({FUND: Position(-500 * BTC_LOT, -3_100 * 10**6, 0, 0), B: long(300 * BTC_LOT),
                         C: long(300 * BTC_LOT)}), Deleverage(FUND, fv.BTC, (B, C)), "unwound"),
        "the fund's long unwound at the mark, rounded in its favour, owing funding": (
            fixed_state({FUND: Position(500 * BTC_LOT, 2_900 * 10**6, 0, -10**14), B: short(300 * BTC_LOT)},
                        price=PRICE + 333, insurance=10**6), Deleverage(FUND, fv.BTC, (B,)), "unwound"),
        "the fund's short at a loss past the insurance fund: auto-deleveraged": (
            fixed_state({FUND: Position(-500 * BTC_LOT, -2_500 * 10**6, 0, 0), B: long(300 * BTC_LOT),
                         C: long(600 * BTC_LOT)}, insurance=10), Deleverage(FUND, fv.BTC, (B, C)), "fund adl"),
        "the fund owing funding past the insurance fund (absorbed): auto-deleveraged, part": (
            fixed_state({FUND: Position(-500 * BTC_LOT, -3_000 * 10**6, 0, 10**15),
                         B: long(300 * BTC_LOT, entry=59_000, margin=2 * 10**6)}, insurance=10),
            Deleverage(FUND, fv.BTC, (B,)), "fund adl"),
        "the fund's unwind: a counterparty on the same side": (
            fixed_state({FUND: Position(-500 * BTC_LOT, -3_000 * 10**6, 0, 0)}), Deleverage(FUND, fv.BTC, (B,)),
            "refused"),
        "the fund's unwind: no position": (fixed_state(three), Deleverage(FUND, fv.BTC, (A_,)), "refused"),
        "a counterparty owing funding past its margin, a small take (absorbed)": (
            fixed_state({C: short(999 * BTC_LOT), B: Position(-2 * 10**8, -140_000 * 10**6, 10 * 10**6, 25 * 10**12)}),
            Deleverage(A_, fv.BTC, (C, B)), "closed"),
        "a notional past 64 bits at the mark": (
            fixed_state({B: Position(-2 * 10**16, -12 * 10**18, 10**18, 0)}, size=2 * 10**16, cost=12 * 10**18 + 10**6,
                        margin=0), Deleverage(A_, fv.BTC, (B,)), "refused"),
        "the fund's unwind: a notional past 64 bits": (
            fixed_state({FUND: Position(-2 * 10**16, -12 * 10**18, 0, 0), B: long(2 * 10**16, margin=10**18)}),
            Deleverage(FUND, fv.BTC, (B,)), "refused"),
        "a healthy position": (fixed_state(three, margin=700 * 10**6), Deleverage(A_, fv.BTC, (B,)), "refused"),
        "no position": (fixed_state(three), Deleverage(E, fv.BTC, (B,)), "refused"),
        "a stale mark": (fixed_state(three, oracle_age=10**6), Deleverage(A_, fv.BTC, (B,)), "refused"),
        "an unlisted market": (fixed_state(three), Deleverage(A_, UNLISTED, (B,)), "refused"),
        "in auction": (fixed_state(three, auction=True), Deleverage(A_, fv.BTC, (B,)), "refused"),
        "the fund named for its own unwind": (
            fixed_state({FUND: Position(-500 * BTC_LOT, -3_000 * 10**6, 0, 0)}), Deleverage(FUND, fv.BTC, (A_, FUND)),
            "refused"),
        "no counterparty": (fixed_state(three), Deleverage(A_, fv.BTC, ()), "refused"),
        "a counterparty named twice": (fixed_state(three), Deleverage(A_, fv.BTC, (B, C, B)), "refused"),
        "the account among them": (fixed_state(three), Deleverage(A_, fv.BTC, (B, A_)), "refused"),
        "a counterparty on the same side": (
            fixed_state({B: Position(400 * BTC_LOT, 2_400 * 10**6, 10**9, 0)}), Deleverage(A_, fv.BTC, (B,)), "refused"),
        "a counterparty with no position": (fixed_state(three), Deleverage(A_, fv.BTC, (B, E)), "refused"),
        "a counterparty with no equity": (
            fixed_state({B: short(400 * BTC_LOT, entry=55_000, margin=20 * 10**6)}), Deleverage(A_, fv.BTC, (B,)),
            "refused"),
    }


FIXED = sorted(fixed_cases())


@pytest.mark.parametrize("name", FIXED)
def test_each_branch(onestep, name):
    state, r, expected = fixed_cases()[name]
    outcome = check(onestep, state, encode_item(r), r)
    words = {"closed": "closed at the mark", "adl": "auto-deleveraged", "refused": "refused",
             "unwound": "the fund unwound at the mark", "fund adl": "the fund auto-deleveraged"}
    assert outcome.startswith(words[expected]), outcome


def test_six_counterparties_open_31_leaves():
    state, r, _ = fixed_cases()["six users, the last one closed whole (31 openings)"]
    runner = TraceRunner(state, fv.RULES, ctx=fv.open_block_ctx(state))
    result = runner.step(encode_item(r))
    assert result.ok and len(result.witness.openings) == 31
    assert runner.tree.get(get_position_key(G, fv.BTC)) is None  # closed whole with no margin left: deleted


@pytest.mark.parametrize("name", ["three users take the whole position at the mark",
                                  "the fund can pay the shortfall, but its own short named first loses: auto-deleveraged",
                                  "the fund's short unwound at the mark against two longs",
                                  "the fund owing funding past the insurance fund (absorbed): auto-deleveraged, part"])
def test_forged_witnesses_revert(onestep, name):
    """Every opening altered (a value, a presence, its proof), one missing,
    two swapped: each reverts; the honest one gives the reference root
    (onestep_support.assert_forged_witnesses_revert)."""
    state, r, _ = fixed_cases()[name]
    assert_forged_witnesses_revert(onestep, state, r, swaps=(0, 5))
