"""Rules v3's ladder against named counterparties (Deleverage, tag 24) and
the forced close to the insurance fund, from a dishonest proposer's side.

Each attack is a wrong rule a proposer could run to build its output's
post-state around one record: close a counterparty the record did not name;
close more lots than the named ones can take; ignore the auto-deleveraging
cap; pay bad debt from a fund that cannot; leave the liquidated account's
orders live (no order epoch); let the fund's own position take part in
auto-deleveraging; serve a ForcedClose as a no-op while the fund could take
the position over.  For each, from the same pre-state:

- the wrong rule reaches another root than the rule (and does the wrong
  thing it is named for);
- onestep.vy (-> onestep_ladder.vy, onestep_liquidate.vy) with the honest
  witness gives the rule's root and outcome, and with the wrong post-state's
  witness reverts or gives the rule's root: never the wrong one;
- a dispute game over the dishonest proposer's output (one block holding the
  record, proposed through the bridge on a chain whose genesis output is the
  pre-state) bisects to the record and ends with the honest challenger
  winning: the output deleted, the proposer's bond paid to the challenger.
"""
from __future__ import annotations

import contextlib
from unittest import mock

import msgspec
import pytest
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import TransactionFailed
from web3 import EthereumTesterProvider, Web3

from bridge_env import MARKETS
from game_env import ANVIL_KEY, BRIDGE_ADDRESS, PRESET, PROPOSER_BOND, World, chunks_of
from l1_bridge.client import BridgeClient, L1Reverted
from l1_bridge.deploy import deploy, load_artifact
from l1_bridge.dispute import CHALLENGER_WON, GameContract, GamePlayer, LocalTrace
from prover import fraud_vectors as fv
from prover.hashing import EMPTY, keccak
from prover.records import compute_block_items, encode_item
from prover.trace import TraceRunner
from sequencer.core import transition
from sequencer.core.encoding import encode_block, make_block
from sequencer.core.inbox import EMPTY_INBOX_HASH
from sequencer.core.records import Deleverage, ForcedClose
from sequencer.core.rules import liquidation
from sequencer.core.rules.accounts import advance_inbox, process_inbox_index
from sequencer.core.rules.liquidation import (apply_close, compute_takes, deleverage_position, make_deleverage_cap,
                                              process_close_at_mark, process_deleverage)
from sequencer.core.rules.margin import compute_long_change
from sequencer.core.rules.positions import INSURANCE_ADDRESS, add_open_interest
from sequencer.core.rules.table import get_rules
from sequencer.core.state import Account, Position, State
from sequencer.executor.output import OutputFields
from test_dispute_game import known

pytestmark = pytest.mark.evm

FUND = INSURANCE_ADDRESS
OWNER = fv.ADDRESSES[0]     # an L1 key too: its forced close is sent to the bridge
OWNER_KEY = fv.KEYS[0]
B, C, D = (keccak(b"adversary short %d" % i)[:20] for i in range(3))
LOT = 10_000                # 0.0001 BTC
PRICE = 60_000 * 10**6
replace = msgspec.structs.replace


def short(lots: int, *, entry: int = 60_000, margin: int = 10**9) -> Position:
    return Position(-lots * LOT, -lots * LOT * entry * 10**6 // 10**8, margin, 0)


def make_pre_state(counters: dict, *, margin: int = 70 * 10**6, cost: int = 6_000 * 10**6,
                   insurance: int = 10**12, order_count: int = 20) -> State:
    """OWNER's long of 0.1 BTC at 60,000 (margin 70 USDC: maintenance is 72,
    liquidatable; cost 6,100 and margin 0: bankrupt at 61,000, 100 USDC of
    bad debt) against the BTC shorts ``counters``; an empty inbox (a game's
    genesis: the bridge's inbox chain starts empty)."""
    accounts = {OWNER: Account(10**9, ())} | {u: Account(10**6, ()) for u in (B, C, D)}
    held = {(OWNER, fv.BTC): Position(1000 * LOT, cost, margin, 0)} | {(u, fv.BTC): p for u, p in counters.items()}
    market = replace(fv.make_market(fv.BTC, PRICE), open_interest=10**14)
    state = fv.make_perps_state(accounts, [market], held, {}, order_count=order_count, inbox_count=0)
    state.set_globals(replace(state.globals, insurance_fund=insurance, inbox_hash=EMPTY_INBOX_HASH))
    state.commit(0)
    return state


BANKRUPT = dict(margin=0, cost=6_100 * 10**6)


# --- the wrong rules ---------------------------------------------------------------------

def replace_rule(kind: type, rule) -> contextlib.AbstractContextManager:
    """The current schema's rule table with ``kind``'s rule replaced."""
    version = fv.RULES.schema_version
    return mock.patch.object(transition, "RULE_TABLES", {version: {**get_rules(version), kind: rule}})


def close_others(state, r: Deleverage, timestamp_ms, ctx) -> None:
    """Closes C's short, which the record (naming B) did not name."""
    process_deleverage(state, replace(r, counterparties=(C,)), timestamp_ms, ctx)


def close_all_at_mark(state, address, position, qty, mark, params, counterparties) -> None:
    """Closes the whole step at the mark whatever the named can take (the rest
    of the lots vanish): close_against (current signature, each counterparty's
    funding deficit absorbed as the rule does) without its refusal."""
    def lenient(state, counterparties, qty, total, params, cap=None, failure=None, absorb_deficit=False):
        remaining, left = qty, total
        for who, counter, _ in counterparties:
            take = min(remaining, abs(counter.size))
            notional = left if take == remaining else total * take // qty
            deleverage_position(state, who, counter, take, notional, params, absorb_deficit)
            remaining, left = remaining - take, left - notional
    with mock.patch.object(liquidation, "close_against", lenient):
        process_close_at_mark(state, address, position, qty, mark, params, None, counterparties,
                              absorb_deficit=True)


def close_at_mark_unfunded(state, address, position, qty, mark, params, counterparties) -> None:
    """The close at the mark kept though the fund cannot pay its bad debt:
    the fund pays what it has, the rest of the debt is forgotten (a negative
    fund has no leaf: the state tree holds it unsigned)."""
    process_close_at_mark(state, address, position, compute_takes(counterparties, qty), mark, params, None,
                          counterparties, absorb_deficit=True)
    state.set_globals(replace(state.globals, insurance_fund=max(0, state.globals.insurance_fund)))


def no_cap(position, mark, market, params):
    return lambda counter: abs(counter.size)


def release_past_bankruptcy(state, address, position, qty, notional, free, side):
    """close_and_release without its bankruptcy check: the loss past the margin is forgotten."""
    share = position.margin if qty == abs(position.size) else position.margin * qty // abs(position.size)
    closed, realised = apply_close(position, qty, notional)
    released = min(max(0, share + realised), max(0, position.margin + realised))
    return replace(closed, margin=max(0, position.margin + realised - released)), free + released


@contextlib.contextmanager
def uncapped():
    """Auto-deleveraging with no cap: a counterparty takes lots past what its
    margin can pay for, its loss past the margin forgotten."""
    with mock.patch.object(liquidation, "make_deleverage_cap", no_cap), \
            mock.patch.object(liquidation, "close_and_release", release_past_bankruptcy):
        yield


def keep_orders(state, address, market_id, position):
    return position


def slice_with_fund(state, address, position, mark, params, counterparties) -> None:
    """process_deleverage_slice with the fund's position among the takers."""
    qty = abs(position.size)
    cap = make_deleverage_cap(position, mark, state.markets[params.id], params)
    lots = compute_takes(counterparties, qty, cap)
    notional = (position.margin - position.cost) * lots // qty
    closed, realised = apply_close(position, lots, notional)
    state.set_position(address, params.id, replace(closed, margin=0 if lots == qty else position.margin + realised))
    add_open_interest(state, params.id, compute_long_change(position.size, closed.size))
    liquidation.close_against(state, counterparties, lots, -notional, params, cap)


def serve_as_noop(state, r: ForcedClose, timestamp_ms, ctx) -> None:
    """The inbox entry served, the position left open."""
    process_inbox_index(state, r.inbox_index)
    advance_inbox(state, r)


def size_of(state: State, who: bytes) -> int:
    position = state.positions.get((who, fv.BTC))
    return 0 if position is None else position.size


ATTACKS = {
    # name: (pre-state, record, the wrong rule, what it does wrong: a test true of its state only)
    "a counterparty the record did not name": (
        lambda: make_pre_state({B: short(2000), C: short(2000)}), Deleverage(OWNER, fv.BTC, (B,)),
        lambda: replace_rule(Deleverage, close_others), lambda s: size_of(s, C) != short(2000).size),
    "more lots than the named can take": (
        lambda: make_pre_state({B: short(300)}), Deleverage(OWNER, fv.BTC, (B,)),
        lambda: mock.patch.object(liquidation, "process_named_ladder", close_all_at_mark),
        lambda s: size_of(s, OWNER) == 0),
    "the auto-deleveraging cap ignored": (
        lambda: make_pre_state({B: short(300, entry=60_500, margin=3 * 10**6), C: short(2000)}, insurance=10,
                               **BANKRUPT), Deleverage(OWNER, fv.BTC, (B, C)),
        uncapped, lambda s: size_of(s, B) == 0),
    "bad debt paid by a fund that cannot": (
        lambda: make_pre_state({B: short(400), C: short(400), D: short(400)}, insurance=10, **BANKRUPT),
        Deleverage(OWNER, fv.BTC, (B, C, D)),
        lambda: mock.patch.object(liquidation, "process_named_ladder", close_at_mark_unfunded),
        lambda s: s.globals.insurance_fund == 0),
    "the liquidated orders left live (no epoch)": (
        lambda: make_pre_state({B: short(2000)}), Deleverage(OWNER, fv.BTC, (B,)),
        lambda: mock.patch.object(liquidation, "cancel_orders_v2", keep_orders),
        lambda s: s.positions[(OWNER, fv.BTC)].order_epoch != 20),
    "the fund's position in auto-deleveraging": (
        lambda: make_pre_state({FUND: Position(-500 * LOT, -500 * LOT * 61_000 * 10**6 // 10**8, 0, 0),
                                B: short(2000)}, insurance=10, **BANKRUPT), Deleverage(OWNER, fv.BTC, (FUND, B)),
        lambda: mock.patch.object(liquidation, "process_deleverage_slice", slice_with_fund),
        lambda s: size_of(s, FUND) != -500 * LOT),
    "a forced close served as a no-op while the fund could take it": (
        lambda: make_pre_state({B: short(1000)}, margin=700 * 10**6), ForcedClose(0, OWNER, fv.BTC),
        lambda: replace_rule(ForcedClose, serve_as_noop), lambda s: size_of(s, OWNER) != 0),
}
NAMES = sorted(ATTACKS)


def copy_state(state: State) -> State:
    return State.from_tables(state.to_tables())


# --- the one-step ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def onestep(onestep_contract):
    return onestep_contract


@pytest.mark.parametrize("name", NAMES)
def test_the_one_step_gives_the_honest_root_not_the_wrong_one(onestep, name):
    make, record, wrong_rule, lie = ATTACKS[name]
    state = make()
    ctx, item = fv.open_block_ctx(state), encode_item(record)
    honest = TraceRunner(copy_state(state), fv.RULES, ctx=ctx)
    pre_root = honest.state_root
    good = honest.step(item)
    liar = TraceRunner(copy_state(state), fv.RULES, ctx=ctx)
    with wrong_rule():
        bad = liar.step(item)
    assert good.ok and lie(liar.state) and not lie(honest.state), "the wrong rule does what it is named for"
    assert liar.state_root != honest.state_root

    def apply(witness):
        return onestep.functions.apply(pre_root, ctx.as_arg(), item, [o.as_arg() for o in witness.openings],
                                       list(witness.nonces)).call()

    root, _, ok = apply(good.witness)
    assert (root, ok) == (honest.state_root, True)
    try:
        root, _, ok = apply(bad.witness)
    except TransactionFailed:
        return                                   # the wrong post-state's openings do not prove
    assert (root, ok) == (honest.state_root, True) != (liar.state_root, True)


# --- the game ----------------------------------------------------------------------------

class DishonestPlayer(GamePlayer):
    """The proposer of the wrong output: it defends its claims and steps with
    the witness its wrong rule builds, which reverts on L1 (counted)."""

    def __init__(self, games, signer, wrong_rule) -> None:
        super().__init__(games, signer)
        self.wrong_rule = wrong_rule
        self.refused_steps = 0

    def make(self, game, g, move, known) -> None:
        try:
            with self.wrong_rule():
                super().make(game, g, move, known)
        except L1Reverted:
            if move.kind != "step":
                raise
            self.refused_steps += 1


def make_world(genesis: State, record) -> World:
    """The contracts (l1_bridge.deploy) on a chain whose genesis output is
    ``genesis``; a ForcedClose's inbox entry requested from OWNER's key."""
    backend = PyEVMBackend(genesis_parameters=PyEVMBackend.generate_genesis_params(overrides={"gas_limit": 60_000_000}))
    tester = EthereumTester(backend)
    w3 = Web3(EthereumTesterProvider(tester))
    funder = w3.eth.accounts[0]
    deployer = tester.add_account(ANVIL_KEY)
    owner = tester.add_account("0x" + OWNER_KEY.hex())
    for who in (deployer, owner):
        w3.eth.send_transaction({"from": funder, "to": who, "value": 100 * 10**18})
    genesis_root = TraceRunner(copy_state(genesis), fv.RULES).state_root
    accounts = list(w3.eth.accounts)
    proposer, guardian = accounts[1], accounts[2]
    d = deploy(w3, PRESET, proposer=proposer, challenger=guardian, deployer=deployer, markets=MARKETS,
               genesis_state_root=genesis_root)
    assert d.bridge == BRIDGE_ADDRESS
    client = BridgeClient.connect(w3, deployment=d)
    client.deposit_bond(proposer, 5 * PROPOSER_BOND)
    if isinstance(record, ForcedClose):
        assert client.force_close(owner, record.market) == record.inbox_index
    games = GameContract(w3.eth.contract(address=d.dispute, abi=load_artifact("dispute")[0]), client)
    others = [a for a in accounts if a not in (proposer, guardian, deployer, owner)]
    return World(w3, tester, client, games, games.contract, proposer, guardian, others,
                 OutputFields(genesis_root, EMPTY, EMPTY, 0, EMPTY, EMPTY))


@pytest.mark.parametrize("name", NAMES)
def test_a_game_over_the_wrong_output_is_won_by_the_honest_challenger(name):
    make, record, wrong_rule, _ = ATTACKS[name]
    state = make()
    g = state.globals
    items = compute_block_items(encode_block(make_block(g.block_number + 1, g.block_hash, fv.BLOCK_TIME, [record])))
    at = next(i for i, item in enumerate(items) if item == encode_item(record))
    honest = LocalTrace(TraceRunner(copy_state(state), fv.RULES), items)
    with wrong_rule():
        wrong = LocalTrace(TraceRunner(copy_state(state), fv.RULES), items)
    assert not honest.pending and honest.claims[:at + 1] == wrong.claims[:at + 1]
    assert honest.claims[at + 1] != wrong.claims[at + 1]        # the first wrong claim: the record's post-state
    world = make_world(state, record)
    chunks = chunks_of(items)
    output, _ = world.propose(wrong, chunks)
    challenger = world.others[0]
    game = world.challenge(challenger, output, known(honest, chunks))
    bad, good = DishonestPlayer(world.games, world.proposer, wrong_rule), world.player(challenger)
    status = world.play_to_end(game, (bad, known(wrong, chunks)), (good, known(honest, chunks)))
    assert status == CHALLENGER_WON
    view = world.games.game(game)
    assert (view.lo, view.hi) == (at, at + 1)      # the step re-executed the record
    assert bad.refused_steps == 1 and [m for m, _ in good.gas].count("step") == 1  # the liar's step reverted
    assert world.client.output_count() == output  # the wrong output is deleted
    assert world.client.eth_owed(challenger) == PROPOSER_BOND
