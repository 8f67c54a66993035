"""The differential test of a Liquidate's vault step (onestep_vault_step.vy,
rules v4): a Liquidate naming no makers in a book+vault market hands the
position's lots to the backstop vault (rules.liquidation.process_vault_step,
rules.vault.process_vault_takeover), and what the vault does not take stops
there (rules v3's process_ladder_step).

Hypothesis generates a liquidated position in one of two book+vault markets
(healthy, liquidatable, bankrupt; funding owed past its margin one time in
four; in auction now and then) and a vault: shares or none, free collateral
from none to plenty, positions in any of the four markets of the table
(long, short, flat with margin, on either side of the liquidated one, at a
profit or at a loss past its equity), marks fresh or stale in the other
markets (the vault cannot be valued), the insurance fund from 0 up (the
takeover's bad debt undone when it cannot pay), and the vault's own account
liquidated now and then; the Python rule (prover.trace with
prover.plan_vault_step) and the contract (through onestep.vy and
onestep_liquidate.vy) run on py-evm from the same pre-state and must give the
same post-state root and receipt outcome.  Named cases reach each branch;
forged witnesses revert; a dishonest post-state (the vault taking more than
its budget, at another price than the mark, the fund paying bad debt it
cannot) is not the one-step's.
"""
from __future__ import annotations

import os

import msgspec
import pytest
from eth_tester.exceptions import TransactionFailed
from hypothesis import HealthCheck, event, given, settings, strategies as st

from onestep_support import assert_forged_witnesses_revert, get_examples, run_both
from prover import fraud_vectors as fv
from prover.keys import get_position_key
from prover.plan_vault_step import get_onestep_vault_step_args
from prover.records import PendingKind, encode_item
from prover.trace import TraceRunner, get_onestep_markets
from sequencer.core.markets import DEVNET_MARKETS, LIQUIDATION_BOOK_FIRST, LIQUIDATION_BOOK_VAULT
from sequencer.core.presets import DEVNET
from sequencer.core.records import Liquidate
from sequencer.core.rules import vault as vault_rules
from sequencer.core.rules.base import RuleError
from sequencer.core.rules.liquidation import (LIQUIDATION_V3, cancel_orders_v2, get_liquidation_rules,
                                             settle_liquidation_funding)
from sequencer.core.invariants import compute_conservation, compute_negative_balances
from sequencer.core.rules.margin import ceil_div, compute_equity_scaled, compute_liquidation_size
from sequencer.core.rules.vault import VAULT_ADDRESS, compute_vault_equity, get_total_shares
from sequencer.core.state import Account, Auction, Position, State, VaultShare
from sequencer.core.transition import apply_record

pytestmark = pytest.mark.evm

BTC, ETH, VBTC, VETH = 1, 2, 3, 4
MARKETS = {
    BTC: msgspec.structs.replace(DEVNET_MARKETS[1], liquidation_policy=LIQUIDATION_BOOK_FIRST),
    ETH: msgspec.structs.replace(DEVNET_MARKETS[2], liquidation_policy=LIQUIDATION_BOOK_FIRST),
    VBTC: msgspec.structs.replace(DEVNET_MARKETS[1], id=VBTC, symbol="BTC2-USD", liquidation_policy=LIQUIDATION_BOOK_VAULT),
    VETH: msgspec.structs.replace(DEVNET_MARKETS[2], id=VETH, symbol="ETH2-USD", liquidation_policy=LIQUIDATION_BOOK_VAULT,
                                  initial_margin_ppm=400_000, max_leverage=3),
}
"""VETH's initial margin (40%) is above what the vault posts at its leverage
(min(5, 3): 33%), outside check_market_params (max_leverage <= 1/IMF): there
the takeover's first candidate (closing the vault's opposite position, then
opening) fails the initial margin and the second (the closing part alone)
is taken.  Under valid parameters the first candidate fails only where the
second does (its closing part is the same, at a notional no better), so
this is how the differential reaches the rule's second try."""
RULES = msgspec.structs.replace(fv.RULES, markets=MARKETS)
PRICES = {BTC: 60_000 * 10**6, ETH: 3_000 * 10**6, VBTC: 60_000 * 10**6, VETH: 3_000 * 10**6}
OWNER, HOLDER = fv.ADDRESSES[0], fv.ADDRESSES[1]
EXAMPLES = int(os.environ.get("ISOROLL_VAULT_STEP_EXAMPLES", get_examples(250)))
REACH_EXAMPLES = 400


def deploy_chain(deploy, rules=RULES):
    """onestep.vy routing Liquidate to onestep_liquidate.vy, which forwards a
    book+vault Liquidate naming no makers to onestep_vault_step.vy."""
    params = (rules.domain_separator, DEVNET.max_amount, DEVNET.max_expiry_ahead_ms, DEVNET.nonce_window)
    markets = get_onestep_markets(rules)
    book = deploy("onestep_book", *params, markets)
    vault_step = deploy("onestep_vault_step", *params, markets, *get_onestep_vault_step_args(rules))
    family = deploy("onestep_liquidate", *params, markets, book.address, vault_step.address)
    return deploy("onestep", *params, [(family.address, [18])]), vault_step


@pytest.fixture(scope="module")
def chain(deploy):
    return deploy_chain(deploy)


@pytest.fixture(scope="module")
def onestep(chain):
    return chain[0]


# --- states -------------------------------------------------------------------------

often = st.sampled_from([True] * 9 + [False])


@st.composite
def markets(draw, market_id: int, liquidated: bool):
    p = MARKETS[market_id]
    fresh = draw(often) if liquidated else draw(st.sampled_from([True] * 3 + [False]))
    age = 1000 if fresh else p.oracle_max_age_ms + draw(st.sampled_from([1, 10**6]))
    index = draw(st.sampled_from([0, 0, draw(st.integers(-10**12, 10**12))]))
    market = fv.make_market(market_id, PRICES[market_id], oracle_time_ms=fv.BLOCK_TIME - age, funding_index=index,
                            funding_dust=draw(st.integers(0, p.scale * 10**6 - 1)))
    return msgspec.structs.replace(market, open_interest=draw(st.integers(10**12, 10**15)))


def snapshot_owing(market, lots: int, owed: int) -> int:
    """A funding snapshot from which a position of ``lots`` owes at least ``owed`` at the market's index."""
    step = -(-owed * MARKETS[market.id].scale * 10**6 // abs(lots))
    return market.funding_index - step if lots > 0 else market.funding_index + step


@st.composite
def liquidated_positions(draw, market, epoch: int):
    """A position around its maintenance line at the mark (bankrupt now and
    then; funding owed past its margin one time in four)."""
    p = MARKETS[market.id]
    mark = market.mark_price
    lots = draw(st.one_of(st.integers(1, 100), st.integers(1, 5000))) * p.step_size * draw(st.sampled_from([1, -1]))
    entry = max(p.tick_size, mark + draw(st.integers(-mark // 20, mark // 20)) // p.tick_size * p.tick_size)
    cost = lots * entry // p.scale
    maintenance = abs(lots) * mark * p.maintenance_margin_ppm // (p.scale * 10**6)
    pnl = lots * mark // p.scale - cost
    shape = draw(st.sampled_from(["liquidatable"] * 5 + ["bankrupt"] * 2 + ["edge", "healthy"]))
    offset = {"liquidatable": st.integers(-maintenance, -1), "bankrupt": st.integers(-maintenance - 10**9, -maintenance - 1),
              "edge": st.integers(-10**3, 10**3), "healthy": st.integers(0, 10**12)}[shape]
    margin = max(0, maintenance - pnl + draw(offset))
    snapshot = market.funding_index + draw(st.sampled_from([0, 0, 0, 1, -1, 10**9]))
    if draw(st.integers(0, 3)) == 0:
        snapshot = snapshot_owing(market, lots, margin + draw(st.integers(1, max(1, abs(pnl) + 2 * maintenance))))
    return Position(lots, cost, margin, snapshot, epoch)


@st.composite
def vault_positions(draw, market, liquidated: Position | None):
    """The vault's position in a market: none, flat with margin, or a size on
    either side (the other side of the liquidated one most of the time),
    its entry at a profit or a loss, its margin from thin to thick, owing
    funding past its margin one time in five."""
    p = MARKETS[market.id]
    shape = draw(st.sampled_from(["none", "none", "flat", "size", "size", "size"]))
    if shape == "none":
        return None
    if shape == "flat":
        return Position(0, 0, draw(st.integers(1, 10**9)), market.funding_index)
    side = draw(st.sampled_from([1, -1]))
    if liquidated is not None and draw(st.booleans()):
        side = 1 if liquidated.size < 0 else -1    # opposite: the takeover closes it first
    lots = side * draw(st.integers(1, 3000)) * p.step_size
    mark = market.mark_price
    entry = max(p.tick_size, mark + draw(st.integers(-mark // 10, mark // 10)) // p.tick_size * p.tick_size)
    notional = abs(lots) * mark // p.scale
    margin = draw(st.sampled_from([notional // 5, notional // 2, notional, draw(st.integers(0, notional + 1))]))
    offset = draw(st.sampled_from([0, 0, 10**6, -(10**6), None]))
    snapshot = market.funding_index + offset if offset is not None else \
        snapshot_owing(market, lots, margin + 1 + notional // 1000)   # owing past its margin: v4 absorb it
    return Position(lots, lots * entry // p.scale, margin, snapshot)


@st.composite
def vault_cases(draw):
    """(state, Liquidate) of a book+vault market with the vault around it."""
    market_id = draw(st.sampled_from([VBTC, VETH]))
    table = {m: draw(markets(m, m == market_id)) for m in MARKETS}
    order_count = draw(st.integers(0, 40))
    epoch = draw(st.sampled_from([0, 0, 3]))
    owner = VAULT_ADDRESS if draw(st.integers(0, 15)) == 0 else OWNER
    position = draw(liquidated_positions(table[market_id], epoch))
    held = {(owner, market_id): position}
    for m, market in table.items():
        if owner == VAULT_ADDRESS and m == market_id:
            continue
        mine = draw(vault_positions(market, position if m == market_id else None))
        if mine is not None:
            held[(VAULT_ADDRESS, m)] = mine
    free = draw(st.sampled_from([0, 10**6, 10**9, 10**11, draw(st.integers(0, 10**12))]))
    accounts = {OWNER: Account(10**9, ())}
    if free or draw(st.booleans()):
        accounts[VAULT_ADDRESS] = Account(free, ())
    state = fv.make_perps_state(accounts, list(table.values()), held, {}, order_count=order_count)
    shares = draw(st.sampled_from([0, 10**9, 10**9, 10**12]))
    if shares:
        state.set_vault_share(HOLDER, VaultShare(shares, 0))
        state.set_vault_share(VAULT_ADDRESS, VaultShare(shares))
    g = state.globals
    state.set_globals(msgspec.structs.replace(g, insurance_fund=draw(st.sampled_from([0, 0, 11, 10**6, 10**12]))))
    if draw(st.integers(0, 7)) == 0:
        end = fv.BLOCK_TIME + 60_000
        state.set_auction(owner, market_id, Auction(abs(position.size), 10**9, 9 * 10**8, end - 60_000, end))
    state.commit(0)
    return state, Liquidate(owner, market_id, ())


# --- running both ---------------------------------------------------------------------

def classify(pre: dict, r: Liquidate, rules=RULES) -> str:
    """The branch the rule takes from the pre-state ``pre`` (its tables): a
    dry run of process_liquidate_v3's steps up to the vault's takeover."""
    state = State.from_tables(pre)
    params = rules.markets[r.market]
    if (r.account, r.market) in state.auctions:
        return "in auction"
    if r.account == VAULT_ADDRESS:
        return "the vault liquidated"
    if not get_total_shares(state):
        return "no shares"
    try:
        equity = compute_vault_equity(state, rules, state.globals.timestamp_ms)
    except RuleError:
        return "a stale mark of the vault"
    if equity <= 0:
        return "equity <= 0"
    mark = state.markets[r.market].mark_price
    position = settle_liquidation_funding(state, LIQUIDATION_V3, r.account, r.market,
                                          state.positions[(r.account, r.market)], params)
    qty = compute_liquidation_size(position, mark, state.markets[r.market], params)
    position = cancel_orders_v2(state, r.account, r.market, position)
    candidates = vault_rules.compute_takeover_candidates(state, rules, position, qty, mark, params, equity)
    if not candidates:
        return "no candidate"
    for i, lots in enumerate(candidates):
        snapshot = state.snapshot()
        if vault_rules.apply_takeover(state, rules, r.account, position, lots, mark, params, equity,
                                      get_liquidation_rules(rules).absorb_vault_deficit):
            if state.globals.insurance_fund < 0:
                return "the fund undone"
            what = "all" if lots == qty else "part"
            bankrupt = ", bankrupt" if compute_equity_scaled(position, mark, state.markets[r.market], params) < 0 else ""
            deficit = ", the vault's deficit absorbed" if owes_past_margin(pre, r.market, rules) else ""
            return f"taken ({what}, candidate {i + 1} of {len(candidates)}{bankrupt}){deficit}"
        state.revert(snapshot)
    return "every candidate refused"


def owes_past_margin(pre: dict, market_id: int, rules=RULES) -> bool:
    """The vault's position in the market owes funding past its margin (rules v4: into its cost)."""
    state = State.from_tables(pre)
    position = state.positions.get((VAULT_ADDRESS, market_id))
    if position is None:
        return False
    market, params = state.markets[market_id], rules.markets[market_id]
    owed = ceil_div(position.size * (market.funding_index - position.funding_snapshot), params.scale * 10**6)
    return position.margin - owed < 0


def check(onestep, state, r: Liquidate) -> str:
    """Python and the contract agree on the record; returns what happened."""
    ctx = fv.open_block_ctx(state)
    pre = state.to_tables()
    runner, pre_root, result, (root, ok, _) = run_both(onestep, state, ctx, encode_item(r), rules=RULES)
    assert (root, ok) == (runner.state_root, result.ok), "the contract and the rule disagree"
    assert len(result.witness.openings) <= 32
    if not ok:
        assert root == pre_root
        error = apply_record(State.from_tables(pre), r, ctx.timestamp_ms, RULES)
        return f"refused ({error.code if error is not None else '?'})"
    return f"proven: {classify(pre, r)}"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(vault_cases())
def test_the_vault_step_agrees(onestep, case):
    state, r = case
    event(check(onestep, state, r))


BRANCHES = ("refused", "in auction", "the vault liquidated", "no shares", "a stale mark of the vault", "equity <= 0",
            "no candidate", "every candidate refused", "the fund undone", "taken (all", "taken (part", "candidate 2 of 2",
            "bankrupt)")
"""What the generator must reach (substrings of ``classify``'s labels)."""


def test_the_generator_reaches_every_branch():
    """The Hypothesis differential's states reach every branch of the rule
    (the Python rule alone, derandomized: no EVM)."""
    seen: set[str] = set()

    @settings(max_examples=REACH_EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(vault_cases())
    def run(case):
        state, r = case
        pre = state.to_tables()
        error = apply_record(State.from_tables(pre), r, fv.BLOCK_TIME, RULES)
        seen.add("refused" if error is not None else classify(pre, r))

    run()
    missing = [branch for branch in BRANCHES if not any(branch in label for label in seen)]
    assert not missing, f"not reached: {missing} (reached: {sorted(seen)})"


# --- each branch by name -----------------------------------------------------------------

A = OWNER
LOT = 10_000  # 0.0001 BTC


def fixed_state(*, vault: dict | None = None, free: int = 10**10, shares: int = 10**9, margin: int = 70 * 10**6,
                cost: int = 6_000 * 10**6, size: int = 10**7, insurance: int = 10**9, stale: tuple = (),
                auction: Auction | None = None, index: int = 0, market: int = VBTC) -> State:
    """A's long (0.1 BTC at 60,000 in the book+vault BTC twin) with margin 70
    USDC (maintenance 72); the vault with `free` collateral, `shares` and its
    positions `vault` (market -> Position); the markets in `stale` stale.
    ``market`` VETH: A's long is 2 ETH at 3,000 there instead (the same notional)."""
    table = [msgspec.structs.replace(fv.make_market(m, PRICES[m], oracle_time_ms=fv.BLOCK_TIME - (10**7 if m in stale else 1000),
                                                    funding_index=index if m == VBTC else 0), open_interest=10**12)
             for m in MARKETS]
    lots = size if market == VBTC else size * 200
    held = {(A, market): Position(lots, cost, margin, 0)} | {(VAULT_ADDRESS, m): p for m, p in (vault or {}).items()}
    state = fv.make_perps_state({A: Account(10**9, ()), VAULT_ADDRESS: Account(free, ())}, table, held, {},
                                order_count=20)
    if shares:
        state.set_vault_share(fv.ADDRESSES[1], VaultShare(shares, 0))
        state.set_vault_share(VAULT_ADDRESS, VaultShare(shares))
    state.set_globals(msgspec.structs.replace(state.globals, insurance_fund=insurance))
    if auction is not None:
        state.set_auction(A, VBTC, auction)
    state.commit(0)
    return state


RUNNING = Auction(10**6, 60_000 * 10**6, 59_000 * 10**6, fv.BLOCK_TIME - 1000, fv.BLOCK_TIME + 1000)
SHORT = Position(-5 * 10**6, -3_000 * 10**6, 600 * 10**6, 0)       # the vault's 0.05 BTC short at 60,000
ETH_LONG = Position(10**9, 3_000 * 10**6, 500 * 10**6, 0)           # 1 ETH at 3,000


def fixed_cases() -> dict:
    """name -> (a fresh pre-state, the record, the expected outcome prefix)."""
    bankrupt = dict(margin=0, cost=6_100 * 10**6)
    return {
        "the vault takes the whole position": (fixed_state(), "proven: taken (all"),
        "the vault closes its short first, then opens": (fixed_state(vault={VBTC: SHORT}), "proven: taken (all"),
        "the first candidate refused, the second (closing only) taken": (
            fixed_state(vault={VETH: Position(-10**9, -3_000 * 10**6, 600 * 10**6, 0)}, market=VETH),
            "proven: taken (part, candidate 2 of 2"),
        "the vault's budget takes part, the rest stops": (fixed_state(free=300 * 10**6), "proven: taken (part"),
        "no budget: only its opposite short closes": (
            fixed_state(vault={VBTC: SHORT, ETH: Position(10**9, 3_000 * 10**6, 10**11, 0)}, free=0),
            "proven: taken (part, candidate"),
        "positions in several markets, all fresh": (
            fixed_state(vault={BTC: Position(-10**6, -600 * 10**6, 100 * 10**6, 0), ETH: ETH_LONG, VETH: ETH_LONG}),
            "proven: taken"),
        "a stale mark in another market: no takeover": (
            fixed_state(vault={ETH: ETH_LONG}, stale=(ETH,)), "proven: a stale mark"),
        "a stale market where the vault is flat: valued": (
            fixed_state(vault={ETH: Position(0, 0, 5 * 10**6, 0)}, stale=(ETH,)), "proven: taken"),
        "the vault has no shares": (fixed_state(shares=0), "proven: no shares"),
        "the vault's equity is not positive": (
            fixed_state(vault={BTC: Position(10**7, 9_000 * 10**6, 10**6, 0)}, free=10**6), "proven: equity <= 0"),
        "no budget, nothing to close: no candidate": (
            fixed_state(free=0, vault={VETH: Position(0, 0, 10**8, 0)}), "proven: no candidate"),
        "a bankrupt position: the fund pays its bad debt": (fixed_state(**bankrupt), "proven: taken (all"),
        "a bankrupt position the fund cannot pay: undone": (fixed_state(insurance=0, **bankrupt), "proven: the fund undone"),
        "funding owed past the margin": (fixed_state(margin=10 * 10**6, index=2 * 10**14), "proven: taken"),
        "a solvent position in auction": (fixed_state(auction=RUNNING), "refused"),
        "a bankrupt position in auction: its auction ends": (fixed_state(auction=RUNNING, **bankrupt),
                                                             "proven: in auction"),
        "a healthy position": (fixed_state(margin=500 * 10**6), "refused"),
        "a stale mark of the liquidated market": (fixed_state(stale=(VBTC,)), "refused"),
    }


FIXED = sorted(fixed_cases())


@pytest.mark.parametrize("name", FIXED)
def test_each_branch(onestep, name):
    state, expected = fixed_cases()[name]
    market = VETH if (A, VETH) in state.positions else VBTC
    outcome = check(onestep, state, Liquidate(A, market, ()))
    assert outcome.startswith(expected), outcome


def test_the_vault_liquidated_is_not_taken_over(onestep):
    state = fixed_state(vault={VBTC: Position(10**7, 6_000 * 10**6, 70 * 10**6, 0)})
    assert check(onestep, state, Liquidate(VAULT_ADDRESS, VBTC, ())) == "proven: the vault liquidated"


@pytest.mark.parametrize("name", ["the vault closes its short first, then opens",
                                  "positions in several markets, all fresh",
                                  "a bankrupt position in auction: its auction ends"])
def test_forged_witnesses_revert(onestep, name):
    """Every opening altered (a value, a presence, its proof), one missing,
    two swapped: each reverts; the honest one gives the reference root."""
    state, _ = fixed_cases()[name]
    assert_forged_witnesses_revert(onestep, state, Liquidate(A, VBTC, ()), RULES)


# --- the witness bound: pending past 32 openings ------------------------------------------

def test_past_the_bound_pending(deploy):
    """A table of 14 markets with the vault holding a size in 8 of them: 6
    reads before the vault's, 14 positions, 8 markets, the total, and 5
    writes pass 32: PendingKind in Python, "pending" on L1 (with the reads
    the contract makes before it)."""
    many = {m: msgspec.structs.replace(DEVNET_MARKETS[1], id=m, symbol=f"M{m}-USD",
                                       liquidation_policy=LIQUIDATION_BOOK_VAULT) for m in range(1, 15)}
    rules = msgspec.structs.replace(fv.RULES, markets=many)
    onestep, _ = deploy_chain(deploy, rules)
    table = [fv.make_market(m, PRICES[BTC]) for m in many]
    held = {(A, 1): Position(10**7, 6_000 * 10**6, 70 * 10**6, 0)}
    held |= {(VAULT_ADDRESS, m): Position(10**6, 600 * 10**6, 10**8, 0) for m in range(2, 10)}
    state = fv.make_perps_state({A: Account(10**9, ()), VAULT_ADDRESS: Account(10**10, ())}, table, held, {},
                                order_count=20)
    state.set_vault_share(VAULT_ADDRESS, VaultShare(10**9))
    state.commit(0)
    r = Liquidate(A, 1, ())
    ctx = fv.open_block_ctx(state)
    runner = TraceRunner(State.from_tables(state.to_tables()), rules, ctx=ctx)
    with pytest.raises(PendingKind):
        runner.step(encode_item(r))
    from prover.plan_book import get_book_reads
    from prover.plan_vault import get_vault_reads
    keys = get_book_reads(r) + [k for k, _ in get_vault_reads(runner)]
    tree = runner.tree
    from prover.trace import Opening
    openings = [Opening(k, tree.get(k), tree.prove(k)).as_arg() for k in keys[:32]]
    with pytest.raises(TransactionFailed, match="pending"):
        onestep.functions.apply(runner.state_root, ctx.as_arg(), encode_item(r), openings, []).call()


# --- a dishonest proposer ------------------------------------------------------------------

def dishonest_root(state: State, r: Liquidate, lie) -> bytes:
    """The post-state root a proposer claims after running the rule with
    ``lie`` (a context manager patching it) instead of the rule."""
    runner = TraceRunner(State.from_tables(state.to_tables()), RULES, ctx=fv.open_block_ctx(state))
    with lie():
        runner.step(encode_item(r))
    return runner.state_root


def patched(target, name, replacement):
    import contextlib

    @contextlib.contextmanager
    def lie():
        original = getattr(target, name)
        setattr(target, name, replacement)
        try:
            yield
        finally:
            setattr(target, name, original)
    return lie


def over_budget(state, ctx, position, qty, mark, params, equity):
    return [abs(position.size)]   # the whole position whatever the vault's budget


def off_the_mark(state, ctx, address, position, lots, mark, params, equity, absorb_deficit):
    return ORIGINAL_APPLY(state, ctx, address, position, lots, mark - 100 * 10**6, params, equity, absorb_deficit)


ORIGINAL_APPLY = vault_rules.apply_takeover


def no_undo(state, ctx, address, position, lots, mark, params):
    """The takeover kept though the fund cannot pay its bad debt, the fund's
    deficit hidden (left at 0: money out of nowhere)."""
    from sequencer.core.rules.vault import process_vault_takeover
    taken = process_vault_takeover(state, ctx, address, position, lots, mark, params, absorb_deficit=True)
    g = state.globals
    state.set_globals(msgspec.structs.replace(g, insurance_fund=max(0, g.insurance_fund)))
    return taken


@pytest.mark.parametrize("lie_name", ["over budget", "off the mark", "the fund pays what it cannot"])
def test_a_dishonest_post_state_is_not_the_one_steps(onestep, lie_name):
    """The one-step, given the honest witness, gives the honest root; the
    proposer's root differs from it; and the witness a proposer would build
    on its own wrong run either reverts or gives the honest root too."""
    from sequencer.core.rules import liquidation
    cases = {
        "over budget": (fixed_state(free=300 * 10**6), patched(vault_rules, "compute_takeover_candidates", over_budget)),
        "off the mark": (fixed_state(), patched(vault_rules, "apply_takeover", off_the_mark)),
        "the fund pays what it cannot": (fixed_state(insurance=0, margin=0, cost=6_100 * 10**6),
                                         patched(liquidation, "process_vault_step", no_undo)),
    }
    state, lie = cases[lie_name]
    r = Liquidate(A, VBTC, ())
    honest = TraceRunner(State.from_tables(state.to_tables()), RULES, ctx=fv.open_block_ctx(state))
    pre_root, ctx = honest.state_root, honest.ctx
    result = honest.step(encode_item(r))
    item = encode_item(r)
    root, _, ok = onestep.functions.apply(pre_root, ctx.as_arg(), item, [o.as_arg() for o in result.witness.openings],
                                         []).call()
    assert (root, ok) == (honest.state_root, True)
    claimed = dishonest_root(state, r, lie)
    assert claimed != honest.state_root, "the lie must change the post-state"
    liar = TraceRunner(State.from_tables(state.to_tables()), RULES, ctx=fv.open_block_ctx(state))
    with lie():
        lying = liar.step(item)
    try:
        root, _, _ = onestep.functions.apply(pre_root, ctx.as_arg(), item,
                                             [o.as_arg() for o in lying.witness.openings], []).call()
    except TransactionFailed:
        return
    assert root != claimed and root == honest.state_root


# --- the vault's funding deficit (rules v4) ----------------------------------------------

OWING = Position(5 * 10**6, 200 * 10**6, 10**6, -5 * 10**16)
"""The vault long 0.05 BTC bought at 4,000 (a profit of 2,800 USDC at
60,000), margin 1 USDC, owing 2,500 USDC of funding (index 0)."""


def vault_view(state: State) -> tuple:
    """(the vault's equity, S x its position's equity at the mark, its
    position's margin - funding owed - cost, its free collateral)."""
    params, market = MARKETS[VBTC], state.markets[VBTC]
    position = state.positions[(VAULT_ADDRESS, VBTC)]
    owed = ceil_div(position.size * (market.funding_index - position.funding_snapshot), params.scale * 10**6)
    return (compute_vault_equity(state, RULES, fv.BLOCK_TIME),
            compute_equity_scaled(position, market.mark_price, market, params),
            position.margin - owed - position.cost, state.accounts[VAULT_ADDRESS].collateral)


def test_the_vault_owing_funding_past_its_margin_takes_lots(onestep):
    """Rules v4: the vault (OWING) takes A's 0.1 BTC long at the mark, 6,000
    USDC, at its leverage (1,200 USDC of margin); the 2,499 USDC it owes past
    its margin move into its cost first.  Python and L1 agree; no position
    holds a negative margin; the vault's equity grows by the fee alone, its
    position's equity by the margin posted, its bankruptcy line (margin -
    funding owed - cost) by the margin posted less the notional bought, its
    free collateral by the fee less that margin; conservation's discrepancy
    is what it was (before v4 its margin ended at -1,299 and no state root
    could be computed after the record)."""
    state = fixed_state(vault={VBTC: OWING})
    pre = State.from_tables(state.to_tables())
    assert check(onestep, state, Liquidate(A, VBTC, ())) == "proven: taken (all, candidate 1 of 1), the vault's deficit absorbed"
    post = State.from_tables(pre.to_tables())
    assert apply_record(post, Liquidate(A, VBTC, ()), fv.BLOCK_TIME, RULES) is None
    assert not compute_negative_balances(post)
    vault = post.positions[(VAULT_ADDRESS, VBTC)]
    required, notional = 1_200 * 10**6, 6_000 * 10**6
    fee = min(ceil_div(notional * MARKETS[VBTC].liquidation_fee_ppm, 10**6), 70 * 10**6)
    assert (vault.size, vault.margin, vault.cost) == (15 * 10**6, required, (200 + 2_499 + 6_000) * 10**6)
    equity, held, line, free = vault_view(pre)
    assert vault_view(post) == (equity + fee, held + required * MARKETS[VBTC].scale, line + required - notional,
                                free - required + fee)
    assert (compute_conservation(post, MARKETS).discrepancy == compute_conservation(pre, MARKETS).discrepancy)
    assert post.positions[(A, VBTC)].margin >= 0


@st.composite
def owing_vaults(draw):
    """A pre-state whose vault holds a position in the liquidated market at
    a profit, owing funding past its margin (up to its whole profit and
    beyond), on either side of A's long, with free collateral from none to
    plenty; A's margin from bankrupt to just liquidatable."""
    p = MARKETS[VBTC]
    side = draw(st.sampled_from([1, -1]))
    lots = side * draw(st.integers(1, 2000)) * p.step_size
    mark = PRICES[VBTC]
    entry = (mark - side * draw(st.integers(1, mark // 2))) // p.tick_size * p.tick_size
    cost = lots * entry // p.scale
    profit = lots * mark // p.scale - cost
    margin = draw(st.integers(0, abs(cost) // 5))
    owed = margin + draw(st.integers(1, profit + profit // 10 + 1))
    snapshot = -(-owed * p.scale * 10**6 // abs(lots)) * -side
    free = draw(st.sampled_from([0, 10**8, 10**10, draw(st.integers(0, 10**11))]))
    a_margin = draw(st.integers(0, 70 * 10**6))
    return fixed_state(vault={VBTC: Position(lots, cost, margin, snapshot)}, free=free, margin=a_margin)


@settings(max_examples=get_examples(60), deadline=None, suppress_health_check=list(HealthCheck))
@given(owing_vaults())
def test_the_vault_owing_past_its_margin_agrees(onestep, state):
    """The differential on vaults owing funding past their margin: Python
    (rules v4) and L1 agree, and the state root after the record exists
    (no position leaf with a negative margin)."""
    pre = state.to_tables()
    outcome = check(onestep, state, Liquidate(A, VBTC, ()))
    event(outcome)
    post = State.from_tables(pre)
    apply_record(post, Liquidate(A, VBTC, ()), fv.BLOCK_TIME, RULES)
    assert not compute_negative_balances(post)


def test_before_v4_the_vaults_margin_went_negative():
    """Logs written under rules v1-v3 replay as they were: the same record
    under v3 leaves the vault's margin negative (no state root after it)."""
    state = fixed_state(vault={VBTC: OWING})
    v3 = msgspec.structs.replace(RULES, schema_version=3)
    assert apply_record(state, Liquidate(A, VBTC, ()), fv.BLOCK_TIME, v3) is None
    assert state.positions[(VAULT_ADDRESS, VBTC)].margin == (1 - 2_500 + 1_200) * 10**6


# --- the shared vectors (tests/vectors/onestep_vectors.json, its book+vault table) -----------

def get_vector_table() -> dict:
    import json
    return next(t for t in json.loads(fv.ONESTEP_PATH.read_text())["tables"] if t["name"] == "book+vault")


VECTOR_TABLE = get_vector_table()


@pytest.fixture(scope="module")
def vector_onestep(deploy):
    """Every family deployed with the vectors' book+vault table, as test_onestep_vectors does with the devnet one."""
    from prover.families import resolve_family_args
    from test_onestep_vectors import b
    params = fv.ONESTEP_PARAMS
    markets = [tuple(m) for m in VECTOR_TABLE["markets"]]
    deployed, routes = {}, []
    for name, tags, extras in VECTOR_TABLE["families"]:
        extras = [b(x) if isinstance(x, str) and x.startswith("0x") else x for x in extras]
        deployed[name] = deploy(name, *params, markets, *resolve_family_args(extras, deployed)).address
        routes.append((deployed[name], tags))
    return deploy("onestep", *params, routes)


@pytest.mark.parametrize("case", VECTOR_TABLE["cases"], ids=lambda c: c["name"])
def test_shared_vectors(vector_onestep, case):
    """The contract gives each vector's post-state root, context and outcome."""
    from test_onestep_vectors import b, call_apply
    root, ctx, ok = call_apply(vector_onestep, case)
    assert (root, ok) == (b(case["post_state_root"]), case["ok"])
    assert vector_onestep.functions.ctx_hash(ctx).call() == b(case["post_ctx_hash"])


def test_the_vectors_reach_their_branches():
    """Each vector's name is the branch classify finds (the Python rule on the pre-state, the vectors' table)."""
    expected = {"the whole position": "taken (all", "closes its short first": "taken (all",
                "budget takes part": "taken (part", "owing funding past its margin": "deficit absorbed",
                "three markets": "taken (all", "a stale mark": "a stale mark of the vault", "no shares": "no shares",
                "the fund pays": "bankrupt)", "the fund cannot": "the fund undone", "in auction": "in auction",
                "healthy": "refused"}
    rules = fv.get_vault_step_rules()
    states = fv.vault_step_states()
    assert [name for name, _ in states] == [c["name"] for c in VECTOR_TABLE["cases"]]
    for name, state in states:
        label = [v for k, v in expected.items() if k in name]
        assert len(label) == 1, name
        r = Liquidate(A, fv.VBTC, ())
        pre = state.to_tables()
        error = apply_record(State.from_tables(pre), r, fv.BLOCK_TIME, rules)
        seen = "refused" if error is not None else classify(pre, r, rules)
        assert label[0] in seen, (name, seen)
