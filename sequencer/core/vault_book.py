"""The backstop vault's unwind on the sequencer side: a due ``VaultUnwind``
(sequencer.core.rules.vault.compute_vault_unwind) applied, its reduce-only
immediate-or-cancel order matched against the book like a taker, the fills
applied as Trades, and the accounts they touched checked for liquidation.

The block assembler calls ``get_due_vault_unwinds`` at every block start,
after the funding ticks; each unwind's records go in the block together, in
order (the Trades name the unwind's order, the order placed last)."""
from __future__ import annotations

from sequencer.core.records import PlaceOrder, Record, VaultUnwind
from sequencer.core.rules.orders import IMMEDIATE_OR_CANCEL
from sequencer.core.rules.vault import VAULT_ADDRESS, compute_vault_unwind, get_unwind_nonce
from sequencer.core.state import State
from sequencer.core.transition import Context, apply_record


def get_due_vault_unwinds(exchange, state: State, timestamp_ms: int, ctx: Context) -> list[Record]:
    """Every unwind due at this block time (applied), market by market, each
    followed by its Trades and the liquidations they cause."""
    out: list[Record] = []
    for market_id in sorted(exchange.markets):
        record = compute_vault_unwind(state, market_id, timestamp_ms, ctx)
        if record is not None:
            out += admit_vault_unwind(exchange, state, record, timestamp_ms, ctx)
    return out


def admit_vault_unwind(exchange, state: State, record: VaultUnwind, timestamp_ms: int, ctx: Context) -> list[Record]:
    """Apply the unwind and match its order (atomically: a refusal leaves the state as before)."""
    def run() -> list[Record]:
        error = apply_record(state, record, timestamp_ms, ctx)
        if error is not None:
            raise error
        order = state.orders[(VAULT_ADDRESS, get_unwind_nonce(record.market, timestamp_ms, ctx))]
        taker = PlaceOrder(VAULT_ADDRESS, record.market, order.is_buy, record.price, record.size, order.leverage,
                           IMMEDIATE_OR_CANCEL, True, get_unwind_nonce(record.market, timestamp_ms, ctx),
                           timestamp_ms, b"")
        trades, _ = exchange.match(state, taker, exchange.books[record.market], record.size, timestamp_ms, ctx)
        if not trades:
            return [record]
        touched = sorted({VAULT_ADDRESS, *(t.maker for t in trades)})
        return [record, *trades, *exchange.liquidate_accounts(state, record.market, touched, timestamp_ms, ctx)]
    return exchange.run_atomically(state, run)
