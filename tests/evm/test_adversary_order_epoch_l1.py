"""Rules v2's order epoch against the L1 twins, from an attacker's side: a
position leaf that holds nothing but the order epoch (0, 0, 0, 0, epoch) is
what a forced close of an account with no position, or a liquidation that
took all the margin, leaves.  Every rule must treat it as it treats the
absent position it stands for, on both sides (tests/unit/test_adversary_order_epoch.py
has the Python side of each attack)."""
from __future__ import annotations

import pytest

from onestep_support import PRICES, run_both
from prover import fraud_vectors as fv
from prover.keys import get_position_key
from prover.records import encode_item
from sequencer.core.records import AdjustMargin
from sequencer.core.state import Account, Position

pytestmark = pytest.mark.evm


@pytest.fixture(scope="module")
def onestep(onestep_contract):
    return onestep_contract


def epoch_only_state(position: Position):
    a = fv.ADDRESSES[0]
    return fv.make_perps_state({a: Account(10**9, ())}, [fv.make_market(fv.BTC, PRICES[fv.BTC])],
                               {(a, fv.BTC): position}, {})


def test_adjust_margin_into_an_epoch_only_position_agrees(onestep):
    """Pre: alice's BTC leaf is (0, 0, 0, 0, 5) (her orders cancelled by a
    forced close, no position).  Op: AdjustMargin +1 USDC into it.  Post: the
    rule refuses it (no_position, as for an absent leaf); L1 must refuse it too
    with the root unchanged, or a dishonest proposer's output that applied it
    wins its game against every honest challenger."""
    a = fv.ADDRESSES[0]
    state = epoch_only_state(Position(order_epoch=5))
    ctx = fv.open_block_ctx(state)
    item = encode_item(fv.sign(AdjustMargin(a, fv.BTC, 10**6, 1, fv.BLOCK_TIME + 1, b""), fv.KEYS[0]))
    runner, pre_root, result, (root, ok, _) = run_both(onestep, state, ctx, item)
    assert not result.ok                       # Python: no_position
    assert (ok, root) == (result.ok, runner.state_root)


def apply_margin_as_l1_does(state, r: AdjustMargin, timestamp_ms: int, ctx) -> None:
    """What onestep_perps.vy computes for a positive AdjustMargin into a
    present position leaf (a dishonest proposer's rule: no no_position check)."""
    from msgspec.structs import replace
    from sequencer.core.rules.base import process_user_preamble, require_market_params
    from sequencer.core.rules.positions import settle_funding
    params = require_market_params(ctx, r.market)
    account = process_user_preamble(state, r, timestamp_ms, ctx)
    position = settle_funding(state, r.account, r.market, state.positions[(r.account, r.market)], params)
    state.set_account(r.account, replace(account, collateral=account.collateral - r.amount))
    state.set_position(r.account, r.market, replace(position, margin=position.margin + r.amount))


def test_a_forged_witness_cannot_apply_a_refused_adjust_margin(onestep, monkeypatch):
    """Pre: alice's BTC leaf is (0, 0, 0, 0, 5).  Op: a dishonest proposer
    steps the AdjustMargin +1 USDC the rule refuses with the witness of the
    output it claims (the margin moved).  Post: L1 must not reach that root."""
    from sequencer.core import transition
    from sequencer.core.rules.table import get_rules
    a = fv.ADDRESSES[0]
    state = epoch_only_state(Position(order_epoch=5))
    ctx = fv.open_block_ctx(state)
    item = encode_item(fv.sign(AdjustMargin(a, fv.BTC, 10**6, 1, fv.BLOCK_TIME + 1, b""), fv.KEYS[0]))
    version = fv.RULES.schema_version  # the dishonest rule replaces the current version's (the one-step's twin)
    monkeypatch.setattr(transition, "RULE_TABLES",
                        {version: {**get_rules(version), AdjustMargin: apply_margin_as_l1_does}})
    runner, pre_root, result, (root, ok, _) = run_both(onestep, state, ctx, item)
    assert result.ok and runner.state.positions[(a, fv.BTC)].margin == 10**6   # the dishonest claim
    assert not ok and root == pre_root, "L1 applied the AdjustMargin the rule refuses"


# --- Trade: the epoch's boundary on both sides ----------------------------------------------

LOT, PRICE = 10_000, PRICES[fv.BTC]


def trade_state(maker_epoch: int, taker_epoch: int, maker_position: Position | None, taker_position: Position | None,
                funding_index: int = 0):
    """a's resting buy (seq 1, nonce 20) and b's sell placed last (seq 2 = order_count, nonce 30);
    each owner's BTC position leaf carries the given epoch (an epoch-only leaf when no position)."""
    from prover.hashing import keccak
    from sequencer.core.state import Order
    a, b = fv.ADDRESSES[0], fv.ADDRESSES[1]
    exp = fv.BLOCK_TIME + 60_000

    def order(buy: bool, seq: int) -> Order:
        return Order(keccak(b"epoch order %d" % seq), 20 * LOT, 0, False, fv.BTC, buy, PRICE, 10,
                     0 if seq == 1 else 1, False, exp, seq)

    positions = {}
    for owner, epoch, held in ((a, maker_epoch, maker_position), (b, taker_epoch, taker_position)):
        if held is not None or epoch:
            positions[(owner, fv.BTC)] = Position(**{**((held and {f: getattr(held, f) for f in held.__struct_fields__})
                                                        or {}), "order_epoch": epoch})
    market = fv.make_market(fv.BTC, PRICE, funding_index=funding_index)
    return fv.make_perps_state({a: Account(5 * 10**8, ()), b: Account(5 * 10**8, ())}, [market], positions,
                               {(a, 20): order(True, 1), (b, 30): order(False, 2)})


SHORT = Position(-30 * LOT, -30 * LOT * PRICE // 10**8, 10**8, 0)


@pytest.mark.parametrize("maker_epoch,taker_epoch,held", [
    (0, 0, None), (1, 0, None), (2, 0, None), (0, 1, None), (0, 2, None), (0, 3, None), (1, 2, None),
    (1, 0, SHORT), (0, 2, SHORT), (2**64 - 1, 0, SHORT), (2**255, 0, None),
])
@pytest.mark.parametrize("funding_index", [0, 3 * 10**9 + 5])
def test_trade_refuses_dead_orders_at_the_epoch_boundary_on_both_sides(onestep, maker_epoch, taker_epoch, held,
                                                                        funding_index):
    """Pre: the maker (seq 1) and the taker (seq 2 == order_count) with their
    owners' epochs around their seqs; the maker's leaf a short or epoch-only.
    Op: the Trade.  Post: refused iff seq <= epoch on either side
    (order_cancelled), Python and L1 agree on the outcome and the root; a
    live side opening from an epoch-only leaf (funding snapshot 0) starts at
    the market's funding index, as from an absent leaf."""
    from sequencer.core.records import Trade
    a, b = fv.ADDRESSES[0], fv.ADDRESSES[1]
    state = trade_state(maker_epoch, taker_epoch, held, None, funding_index)
    ctx = fv.open_block_ctx(state)
    item = encode_item(Trade(fv.BTC, a, 20, b, 30, PRICE, 10 * LOT))
    runner, pre_root, result, (root, ok, _) = run_both(onestep, state, ctx, item)
    assert result.ok == (maker_epoch < 1 and taker_epoch < 2)
    assert (ok, root) == (result.ok, runner.state_root)
    if result.ok:
        assert runner.state.positions[(a, fv.BTC)].order_epoch == maker_epoch
        assert runner.state.positions[(b, fv.BTC)].order_epoch == taker_epoch
        assert runner.state.positions[(b, fv.BTC)].funding_snapshot == funding_index


@pytest.mark.parametrize("amount", [10**6, -10**6, -5 * 10**6, -5 * 10**6 - 1])
def test_adjust_margin_of_a_flat_position_with_an_epoch_keeps_its_leaf(onestep, amount):
    """Pre: alice's flat BTC position holds 5 USDC of leftover margin and epoch
    7 (a whole liquidation).  Op: AdjustMargin.  Post: Python and L1 agree;
    taking all the margin leaves (0, 0, 0, snapshot, 7), not an empty leaf
    (the epoch must outlive the margin, or her dead orders would revive)."""
    a = fv.ADDRESSES[0]
    state = epoch_only_state(Position(0, 0, 5 * 10**6, 0, 7))
    ctx = fv.open_block_ctx(state)
    item = encode_item(fv.sign(AdjustMargin(a, fv.BTC, amount, 1, fv.BLOCK_TIME + 1, b""), fv.KEYS[0]))
    runner, pre_root, result, (root, ok, _) = run_both(onestep, state, ctx, item)
    assert result.ok == (amount >= -5 * 10**6)
    assert (ok, root) == (result.ok, runner.state_root)
    if result.ok:
        leaf = runner.tree.get(get_position_key(a, fv.BTC))
        assert len(leaf) == 160 and int.from_bytes(leaf[128:], "big") == 7
        assert runner.state.positions[(a, fv.BTC)].margin == 5 * 10**6 + amount


@pytest.mark.parametrize("held", [
    None,                                           # no leaf: (0, 0, 0, 0, count) created
    Position(0, 0, 0, 123, 0),                      # flat, no margin, a funding snapshot: an empty leaf
    Position(0, 0, 0, 123, 9),                      # epoch-only with a snapshot (a whole liquidation)
    Position(0, 0, 0, 0, 17),                       # the epoch already at the order count
    Position(0, 0, 5 * 10**6, 123, 9),              # flat with leftover margin: released
    Position(0, 0, 5 * 10**6, 123, 0),
])
def test_forced_close_of_a_flat_or_absent_position_agrees(onestep, held):
    """Pre: alice's BTC leaf flat or absent, order count 17.  Op: her forced
    close.  Post: Python and L1 agree; the leaf ends (0, 0, 0, snapshot, 17)
    (snapshot 0 when the tree held no leaf), her margin in free collateral."""
    from sequencer.core.records import ForcedClose
    a = fv.ADDRESSES[0]
    positions = {} if held is None else {(a, fv.BTC): held}
    state = fv.make_perps_state({a: Account(10**9, ())}, [fv.make_market(fv.BTC, PRICES[fv.BTC])], positions, {},
                                inbox_count=0, order_count=17)
    ctx = fv.open_block_ctx(state)
    runner, pre_root, result, (root, ok, _) = run_both(onestep, state, ctx, encode_item(ForcedClose(0, a, fv.BTC)))
    assert result.ok and (ok, root) == (True, runner.state_root)
    position = runner.state.positions[(a, fv.BTC)]
    kept = held if held is not None and (held.margin or held.order_epoch) else Position()
    assert position == Position(0, 0, 0, kept.funding_snapshot, 17)
    assert runner.state.accounts[a].collateral == 10**9 + kept.margin


@pytest.mark.parametrize("epoch", [0, 1, 5])
def test_modify_of_an_order_below_its_owners_epoch_agrees(onestep, epoch):
    """Pre: alice's resting buy (seq 1, flag clear) and her BTC epoch 0, 1
    (the order dead) or 5.  Op: a ModifyOrder of it.  Post (rules v4): both
    sides refuse it alike when the order is dead (epoch >= its seq), root
    unchanged; at epoch 0 both accept it: the old order flagged, the
    replacement seq order_count + 1 (live)."""
    from prover.hashing import keccak
    from sequencer.core.records import ModifyOrder
    from sequencer.core.state import Order
    a = fv.ADDRESSES[0]
    old = Order(keccak(b"resting"), 20 * LOT, 0, False, fv.BTC, True, PRICE, 10, 0, False, fv.BLOCK_TIME + 60_000, 1)
    positions = {(a, fv.BTC): Position(order_epoch=epoch)} if epoch else {}
    state = fv.make_perps_state({a: Account(10**9, ())}, [fv.make_market(fv.BTC, PRICE)], positions,
                                {(a, 20): old}, order_count=5)
    ctx = fv.open_block_ctx(state)
    record = fv.sign(ModifyOrder(a, 20, PRICE - 10**6, 10 * LOT, 21, fv.BLOCK_TIME + 60_000, b""), fv.KEYS[0])
    runner, pre_root, result, (root, ok, _) = run_both(onestep, state, ctx, encode_item(record))
    assert result.ok == (epoch < 1) and (ok, root) == (result.ok, runner.state_root)
    if not result.ok:
        assert root == pre_root and not runner.state.orders[(a, 20)].cancelled and (a, 21) not in runner.state.orders
        return
    assert runner.state.orders[(a, 20)].cancelled and runner.state.orders[(a, 21)].seq == 6 > epoch
