"""The witness plan of Trade (l1_bridge/contracts/onestep_trade.vy;
docs/fraud-proofs.md), the most frequent record kind.

The one-step opens, in this order, the eight leaves the rule reads, each
against the pre-state root: the maker's order, the taker's order, globals,
the market, the maker's account and position, the taker's account and
position.  If the trade applies, it then writes each leaf once with its
final value, opened again against the root of the writes before it: the
maker's and the taker's orders, accounts and positions, the market, globals.
A position closed whole (flat, no margin: the empty leaf) is deleted: its
opening carries the deletion witness (``TraceRunner._open``).  A Trade has no
signature, so no kept nonces.

Pure: no I/O, no clock.
"""
from __future__ import annotations

from prover.keys import GLOBAL_KEY, get_account_key, get_market_key, get_order_key, get_position_key
from prover.records import PendingKind
from sequencer.core.records import Trade

INSURANCE_ADDRESS = bytes(20)
"""rules.positions.INSURANCE_ADDRESS: the fund's pseudo-account, which never places an order."""


def get_trade_reads(t: Trade) -> list[bytes]:
    """The leaves the rule reads, in the one-step's order."""
    return [get_order_key(t.maker, t.maker_nonce), get_order_key(t.taker, t.taker_nonce), GLOBAL_KEY,
            get_market_key(t.market), get_account_key(t.maker), get_position_key(t.maker, t.market),
            get_account_key(t.taker), get_position_key(t.taker, t.market)]


def get_trade_writes(t: Trade) -> list[bytes]:
    """The leaves an applied trade writes, in the one-step's order."""
    return [get_order_key(t.maker, t.maker_nonce), get_order_key(t.taker, t.taker_nonce), get_account_key(t.maker),
            get_account_key(t.taker), get_position_key(t.maker, t.market), get_position_key(t.taker, t.market),
            get_market_key(t.market), GLOBAL_KEY]


def plan_trade(runner, item: Trade):
    """The insurance fund's pseudo-account has no orders in any state the
    rules reach (no signature recovers address 0); an order of it in the
    tree would need its branch of settle_funding, not ported: pending, as
    onestep_trade.vy reverts."""
    reads = get_trade_reads(item)
    for address, key in ((item.maker, reads[0]), (item.taker, reads[1])):
        if address == INSURANCE_ADDRESS and runner.tree.get(key) is not None:
            raise PendingKind("Trade of an order of the insurance fund's pseudo-account is pending")
    writes = get_trade_writes(item)

    def plan(ok: bool, changed: set[bytes]) -> list[tuple[bytes, bool]]:
        return [(k, False) for k in reads] + ([(k, True) for k in writes] if ok else [])

    return plan, ()


PLANNERS = {Trade: plan_trade}
