"""Leaves of the state tree: which key each piece of state lives under and the
bytes committed for it (docs/commitment.md).

Leaf values are ABI-style 32-byte words so the L1 contracts can read them with
plain slicing (the escape hatch decodes accounts, positions and markets):
- account:  collateral (uint256) || nonces_hash (bytes32)
- position: size (int256) || cost (int256) || margin (uint256) || funding_snapshot (int256)
            [|| order_epoch, only when non-zero (rules v2)]
- order:    params_hash (bytes32) || size (uint256) || filled (uint256) || cancelled (uint256 0/1) ||
            market || is_buy (0/1) || price || leverage || time_in_force || reduce_only (0/1) ||
            expiry || seq
- market:   oracle_price || oracle_time_ms || funding_index (int256) || open_interest ||
            funding_time_ms || funding_dust || mark_price (word 6: the mark the escape reads) ||
            basis_ema (int256) || last_trade_price || last_trade_time_ms || pending_oracle_price ||
            pending_oracle_time_ms
- globals:  block_number || block_hash || timestamp_ms || insurance_fund || fee_pool ||
            inbox_count || inbox_hash || withdrawal_count || total_deposited || total_withdrawn ||
            order_count
- vault share: shares (uint256) || unlock_ms (uint256); under the vault's own address the
            shares are the total (sequencer.core.rules.vault)
- trigger:  params_hash (bytes32) || market || is_buy (0/1) || trigger_price || price || size ||
            leverage || tpsl || reduce_only (0/1) || placed_ms || status (0 pending, 1 fired, 2 cancelled)
- order schedule: cancel_at_ms || open_triggers || cancel_day || cancels (all zero: an empty leaf)
- auction:  size || start_price || end_price || start_ms || end_ms (sequencer.core.rules.auction)
An absent entry (or a position of size 0 with no cost, no margin and no order epoch, or a vault entry with
no shares) is an empty leaf.
"""
from __future__ import annotations

import struct
from typing import Any

from prover.hashing import keccak
from prover.keys import (GLOBAL_KEY, get_account_key, get_market_key, get_order_key, get_position_key,
                         get_vault_share_key, get_auction_key)
from prover.keys import get_order_schedule_key, get_trigger_key
from prover.output import compute_withdrawals_root
from sequencer.core.state import (AUCTIONS, Auction, ACCOUNTS, MARKETS, ORDERS, POSITIONS, VAULT_SHARES, Account, Globals, Market,
                                  Order, Position, State, VaultShare, Withdrawal)

from sequencer.core.state import ORDER_SCHEDULES, TRIGGERS, OrderSchedule, Trigger, is_empty_position


def u256(value: int) -> bytes:
    return value.to_bytes(32, "big")


def i256(value: int) -> bytes:
    return value.to_bytes(32, "big", signed=True)


def compute_nonces_hash(nonces: tuple[int, ...]) -> bytes:
    """keccak of the kept nonces as big-endian u64s, ascending."""
    return keccak(struct.pack(f">{len(nonces)}Q", *nonces))


def encode_account_leaf(account: Account) -> bytes:
    return u256(account.collateral) + compute_nonces_hash(account.nonces)


def encode_position_leaf(position: Position) -> bytes:
    """Four words; a fifth, the order epoch, only once it is set (rules v2), so
    every leaf written before it keeps its value."""
    leaf = i256(position.size) + i256(position.cost) + u256(position.margin) + i256(position.funding_snapshot)
    return leaf + u256(position.order_epoch) if position.order_epoch else leaf


def encode_order_leaf(order: Order) -> bytes:
    return (order.params_hash + u256(order.size) + u256(order.filled) + u256(int(order.cancelled))
            + u256(order.market) + u256(int(order.is_buy)) + u256(order.price) + u256(order.leverage)
            + u256(order.time_in_force) + u256(int(order.reduce_only)) + u256(order.expiry)
            + u256(order.seq))


def encode_market_leaf(market: Market) -> bytes:
    return (u256(market.oracle_price) + u256(market.oracle_time_ms) + i256(market.funding_index)
            + u256(market.open_interest) + u256(market.funding_time_ms) + u256(market.funding_dust)
            + u256(market.mark_price) + i256(market.basis_ema) + u256(market.last_trade_price)
            + u256(market.last_trade_time_ms) + u256(market.pending_oracle_price)
            + u256(market.pending_oracle_time_ms))


def encode_globals_leaf(g: Globals) -> bytes:
    return (u256(g.block_number) + g.block_hash + u256(g.timestamp_ms) + u256(g.insurance_fund)
            + u256(g.fee_pool) + u256(g.inbox_count) + g.inbox_hash + u256(g.withdrawal_count)
            + u256(g.total_deposited) + u256(g.total_withdrawn) + u256(g.order_count))


def encode_vault_share_leaf(share: VaultShare) -> bytes:
    return u256(share.shares) + u256(share.unlock_ms)


def encode_trigger_leaf(trigger: Trigger) -> bytes:
    return (trigger.params_hash + u256(trigger.market) + u256(int(trigger.is_buy)) + u256(trigger.trigger_price)
            + u256(trigger.price) + u256(trigger.size) + u256(trigger.leverage) + u256(trigger.tpsl)
            + u256(int(trigger.reduce_only)) + u256(trigger.placed_ms) + u256(trigger.status))


def encode_order_schedule_leaf(schedule: OrderSchedule) -> bytes:
    return (u256(schedule.cancel_at_ms) + u256(schedule.open_triggers) + u256(schedule.cancel_day)
            + u256(schedule.cancels))


def encode_auction_leaf(auction: Auction) -> bytes:
    return (u256(auction.size) + u256(auction.start_price) + u256(auction.end_price) + u256(auction.start_ms)
            + u256(auction.end_ms))


def compute_leaf(state: State, table: str, key: Any) -> tuple[bytes, bytes | None]:
    """(tree key, leaf value or None for empty) of one dirty state entry."""
    if table == ACCOUNTS:
        account = state.accounts.get(key)
        return get_account_key(key), None if account is None else encode_account_leaf(account)
    if table == POSITIONS:
        position = state.positions.get(key)
        return get_position_key(*key), None if is_empty_position(position) else encode_position_leaf(position)
    if table == ORDERS:
        order = state.orders.get(key)
        return get_order_key(*key), None if order is None else encode_order_leaf(order)
    if table == MARKETS:
        market = state.markets.get(key)
        return get_market_key(key), None if market is None else encode_market_leaf(market)
    if table == "globals":
        return GLOBAL_KEY, encode_globals_leaf(state.globals)
    if table == VAULT_SHARES:
        share = state.vault_shares.get(key)
        return get_vault_share_key(key), None if share is None or share.shares == 0 else encode_vault_share_leaf(share)
    if table == TRIGGERS:
        trigger = state.triggers.get(key)
        return get_trigger_key(*key), None if trigger is None else encode_trigger_leaf(trigger)
    if table == ORDER_SCHEDULES:
        schedule = state.order_schedules.get(key)
        empty = schedule is None or schedule == OrderSchedule()
        return get_order_schedule_key(key), None if empty else encode_order_schedule_leaf(schedule)
    if table == AUCTIONS:
        auction = state.auctions.get(key)
        return get_auction_key(*key), None if auction is None else encode_auction_leaf(auction)
    raise ValueError(f"unknown state table {table!r}")


def compute_dirty_leaves(state: State) -> dict[bytes, bytes | None]:
    """The tree updates for everything touched since the last call; clears the set."""
    changes = dict(compute_leaf(state, table, key) for table, key in state.dirty)
    state.dirty.clear()
    return changes


# --- the withdrawals tree of a checkpoint (prover/output.py) ------------------------

def encode_withdrawal(withdrawal: Withdrawal) -> bytes:
    """The bytes of a withdrawal as the bridge hashes them:
    abi.encode(uint256 index, address account, uint256 amount, uint256 l2_block)
    (= l1_bridge.proofs.encode_withdrawal, without eth_abi)."""
    if len(withdrawal.account) != 20:
        raise ValueError("withdrawal account must be a 20-byte address")
    return (u256(withdrawal.index) + b"\x00" * 12 + bytes(withdrawal.account) + u256(withdrawal.amount)
            + u256(withdrawal.block))


def compute_checkpoint_withdrawals(state: State, after_block: int, upto_block: int) -> list[Withdrawal]:
    """The withdrawals made in L2 blocks after_block < block <= upto_block, in order."""
    return [w for w in state.withdrawals if after_block < w.block <= upto_block]


def compute_checkpoint_withdrawals_root(withdrawals: list[Withdrawal]) -> bytes:
    return compute_withdrawals_root([encode_withdrawal(w) for w in withdrawals])
