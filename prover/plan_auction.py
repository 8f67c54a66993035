"""The witness plans of AuctionBid (onestep_auction.vy) and ModifyOrder
(onestep_modify.vy) (docs/fraud-proofs.md); the planner contract of
prover/plan_perps.py: ``plan_x(runner, record) -> (plan, nonces)``.

AuctionBid reads five leaves against the pre-state root (the auction, the
market, the owner's position, the keeper's account and position) and, if it
applies, writes each leaf whose value changed, in a fixed order, opened
again against the root of the writes before it.  A leaf the bid empties (the
auction sold out, a position closed flat with no margin) is written like any
other: ``TraceRunner._open`` gives its opening the deletion sibling.

Pure: no I/O, no clock.
"""
from __future__ import annotations

from prover.keys import (GLOBAL_KEY, get_account_key, get_auction_key, get_market_key, get_order_key,
                         get_position_key, get_trigger_key)
from prover.records import PendingKind
from sequencer.core.records import AuctionBid, ModifyOrder
from sequencer.core.state import get_order_epoch

ZERO_ADDRESS = bytes(20)


def get_kept_nonces(runner, account: bytes) -> tuple[int, ...]:
    kept = runner.state.accounts.get(account)
    return kept.nonces if kept is not None else ()


def plan_auction_bid(runner, item: AuctionBid):
    auction = get_auction_key(item.owner, item.market)
    market = get_market_key(item.market)
    owner = get_position_key(item.owner, item.market)
    account = get_account_key(item.account)
    keeper = get_position_key(item.account, item.market)
    if item.owner == ZERO_ADDRESS and runner.tree.get(auction) is not None:
        raise PendingKind("AuctionBid on the insurance fund's auction: its funding settlement is not ported")
    reads = [(auction, False), (market, False), (owner, False), (account, False), (keeper, False)]
    order = (account, keeper, owner, market, GLOBAL_KEY, auction)
    before = {key: runner.tree.get(key) for key in order}

    def plan(ok: bool, writes) -> list[tuple[bytes, bool]]:
        if not ok:
            return reads
        return reads + [(key, True) for key in order if runner.tree.get(key) != before[key]]
    return plan, get_kept_nonces(runner, item.account)


def plan_modify_order(runner, item: ModifyOrder):
    """Reads the old order, the new nonce's order and trigger slots, the
    account and, when the old order is registered, its owner's position in
    its market (rules v4: the order epoch there says whether it is open);
    if it applies, the four writes.  Under rules v2-v3 a modify of an order
    dead by its epoch (their rule reads the flag only) is pending."""
    account = get_account_key(item.account)
    old, new = get_order_key(item.account, item.order_nonce), get_order_key(item.account, item.nonce)
    reads = [(old, False), (new, False), (get_trigger_key(item.account, item.nonce), False), (account, False)]
    order = runner.state.orders.get((item.account, item.order_nonce))
    if order is not None:
        epoch = get_order_epoch(runner.state, item.account, order.market)
        if runner.rules.schema_version < 4 and not order.cancelled and order.seq <= epoch:
            raise PendingKind(f"ModifyOrder of an order dead by its owner's order epoch under rules "
                              f"v{runner.rules.schema_version} (the flag only): the one-step re-executes v4's refusal")
        reads.append((get_position_key(item.account, order.market), False))
    return (lambda ok, writes: reads + (
        [(account, True), (old, True), (GLOBAL_KEY, True), (new, True)] if ok else [])), \
        get_kept_nonces(runner, item.account)


PLANNERS = {AuctionBid: plan_auction_bid, ModifyOrder: plan_modify_order}
