"""Every record that goes on the log, as frozen tagged-union msgspec Structs.

Encoding rules (docs/log-format.md has the full text):
- msgpack, each record an array `[tag, field, field, ...]` (``array_like``)
  with a small integer tag; a block is ``[number, parent_hash, timestamp_ms,
  [record_bytes, ...]]`` where each record is kept as its own msgpack value so
  one undecodable record fails alone (it gets a failed receipt).
- Deterministic: the same Struct always encodes to the same bytes (msgspec
  writes fields in declaration order and every default explicitly).
- Forward compatibility: fields are only ever appended, each with a default.
  An older decoder ignores trailing fields it does not know; a newer decoder
  fills missing trailing fields from their defaults.  A new record kind or a
  changed meaning bumps ``SCHEMA_VERSION``; an executor stops (it does not
  skip) on a block whose schema version it does not support.
- Addresses are 20 raw bytes, hashes 32, signatures 65 (r || s || v).
"""
from __future__ import annotations

from typing import Union

import msgspec

Address = bytes
Hash32 = bytes


# gc=False: records, blocks and receipts hold only ints, bytes and tuples, so
# they cannot form reference cycles; untracked, they cost the cyclic GC nothing.
class _Record(msgspec.Struct, frozen=True, array_like=True, tag_field="kind", gc=False):
    pass


# --- user-signed (EIP-712, see sequencer.core.eip712) -------------------------

class Transfer(_Record, tag=1):
    account: Address
    to: Address
    amount: int
    nonce: int
    expiry: int
    signature: bytes


class Withdraw(_Record, tag=2):
    account: Address
    amount: int
    nonce: int
    expiry: int
    signature: bytes


class AdjustMargin(_Record, tag=3):
    account: Address
    market: int
    amount: int
    """Positive moves free collateral into the position, negative takes it out."""
    nonce: int
    expiry: int
    signature: bytes


class PlaceOrder(_Record, tag=4):
    account: Address
    market: int
    is_buy: bool
    price: int
    size: int
    leverage: int
    time_in_force: int
    reduce_only: bool
    nonce: int
    expiry: int
    signature: bytes


class CancelOrder(_Record, tag=5):
    account: Address
    order_nonce: int
    nonce: int
    expiry: int
    signature: bytes


class VaultDeposit(_Record, tag=6):
    """Deposit free collateral into the backstop vault for shares at the
    vault's equity per share (sequencer.core.rules.vault); refused when fewer
    than ``min_shares`` would be minted."""
    account: Address
    amount: int
    min_shares: int
    nonce: int
    expiry: int
    signature: bytes


class VaultWithdraw(_Record, tag=7):
    """Redeem ``shares`` of the backstop vault for free collateral once their
    lock-up has ended; refused when less than ``min_amount`` would be paid."""
    account: Address
    shares: int
    min_amount: int
    nonce: int
    expiry: int
    signature: bytes


class PlaceTrigger(_Record, tag=9):
    """An order held back until the mark crosses ``trigger_price`` (a stop-loss
    or take-profit, sequencer.core.rules.triggers); it reserves nothing and
    becomes an immediate-or-cancel order with limit ``price`` when it fires."""
    account: Address
    market: int
    is_buy: bool
    trigger_price: int
    price: int
    size: int
    leverage: int
    tpsl: int
    """1 take-profit, 2 stop-loss: with the side, which way the mark must cross."""
    reduce_only: bool
    nonce: int
    expiry: int
    signature: bytes


class ModifyOrder(_Record, tag=10):
    """Cancel the open order ``order_nonce`` and place its replacement (same
    market, side, leverage, time in force) at ``price`` / ``size`` under this
    tx's nonce, both or neither."""
    account: Address
    order_nonce: int
    price: int
    size: int
    nonce: int
    expiry: int
    signature: bytes


class ScheduleCancel(_Record, tag=11):
    """Cancel all the account's orders and triggers at ``cancel_at_ms`` (a
    dead-man's switch, Hyperliquid's scheduleCancel); 0 clears it."""
    account: Address
    cancel_at_ms: int
    nonce: int
    expiry: int
    signature: bytes


class AuctionBid(_Record, tag=8):
    """A keeper takes ``size`` lots of ``owner``'s liquidation auction in
    ``market`` at the auction's current price, if that is no worse for it
    than ``price`` (sequencer.core.rules.auction); the keeper's side is an
    ordinary opening or reducing fill at ``leverage``."""
    account: Address
    owner: Address
    market: int
    size: int
    price: int
    leverage: int
    nonce: int
    expiry: int
    signature: bytes


# --- sequencer decisions (checked by the rules) ------------------------------

class Trade(_Record, tag=16):
    market: int
    maker: Address
    maker_nonce: int
    taker: Address
    taker_nonce: int
    price: int
    size: int


class FundingTick(_Record, tag=17):
    market: int
    rate_ppm: int
    """Signed funding rate for the interval, in ppm of notional."""
    timestamp_ms: int


class Liquidate(_Record, tag=18):
    account: Address
    market: int
    makers: tuple[tuple[Address, int], ...] = ()
    """The resting orders (owner, nonce) the liquidation order meets, best
    first, at most rules.liquidation.MAX_LIQUIDATION_MAKERS (the book-first
    policies; docs/engine.md).  Fewer than that: the book has nothing more
    within the limit, and what it did not take goes down the ladder."""


class VaultUnwind(_Record, tag=21):
    """The sequencer sends a bounded immediate-or-cancel reduce-only order of
    the backstop vault into the book (its size and limit are computed by the
    rule from the vault's position and the mark; Trades follow it)."""
    market: int
    size: int
    price: int


class TriggerFire(_Record, tag=19):
    """The trigger (account, nonce) fires: the rule checks the mark crossed."""
    account: Address
    nonce: int


class ScheduledCancelAll(_Record, tag=20):
    """The account's scheduled cancel-all is due: the rule checks the time passed."""
    account: Address


class AuctionEnd(_Record, tag=23):
    """The liquidation auction of ``account`` in ``market`` is over: what it did
    not sell goes down the ladder (fund / ADL)."""
    account: Address
    market: int


# --- oracle ---------------------------------------------------------------

class Deleverage(_Record, tag=24):
    """Rules v3: the ladder step of a liquidation.  The liquidatable position
    of ``account`` in ``market`` closes against the opposite positions
    ``counterparties`` names (at most rules.liquidation.MAX_DELEVERAGE_COUNTERPARTIES,
    in the engine's ranking by profit x leverage): at the mark with the
    insurance fund paying any bad debt, or, when the fund cannot, at the
    position's bankruptcy price (auto-deleveraging).  What they cannot take
    waits for the next record (docs/engine.md)."""
    account: Address
    market: int
    counterparties: tuple[Address, ...]


class OraclePrice(_Record, tag=32):
    market: int
    price: int
    timestamp_ms: int
    signatures: tuple[bytes, ...]
    """One EIP-712 OraclePrice signature per signer; k of n must verify."""


# --- copied from the L1 inbox ------------------------------------------------

class Deposit(_Record, tag=48):
    inbox_index: int
    account: Address
    amount: int


class ForcedWithdrawal(_Record, tag=49):
    inbox_index: int
    account: Address
    amount: int


class ForcedClose(_Record, tag=50):
    """Close ``account``'s position in ``market`` at the mark (the bridge's
    ``forceClose``; its inbox entry carries the market in the amount field)."""
    inbox_index: int
    account: Address
    market: int


UserRecord = Union[Transfer, Withdraw, AdjustMargin, PlaceOrder, CancelOrder, VaultDeposit, VaultWithdraw,
                   PlaceTrigger, ModifyOrder, ScheduleCancel, AuctionBid]
Record = Union[
    Transfer, Withdraw, AdjustMargin, PlaceOrder, CancelOrder,
    Trade, FundingTick, Liquidate, OraclePrice, Deposit, ForcedWithdrawal, ForcedClose,
    VaultDeposit, VaultWithdraw, VaultUnwind,
    PlaceTrigger, ModifyOrder, ScheduleCancel, TriggerFire, ScheduledCancelAll,
    AuctionBid, AuctionEnd, Deleverage,
]
USER_RECORD_TYPES: tuple[type, ...] = (Transfer, Withdraw, AdjustMargin, PlaceOrder, CancelOrder, VaultDeposit,
                                       VaultWithdraw, PlaceTrigger, ModifyOrder, ScheduleCancel, AuctionBid)
RECORD_TYPES: tuple[type, ...] = USER_RECORD_TYPES + (
    Trade, FundingTick, Liquidate, OraclePrice, Deposit, ForcedWithdrawal, ForcedClose, VaultUnwind,
    TriggerFire, ScheduledCancelAll, AuctionEnd, Deleverage)


class Block(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One L2 block = one Kafka message.  ``records`` holds each record's own
    msgpack bytes (see the module docstring)."""
    number: int
    parent_hash: Hash32
    timestamp_ms: int
    records: tuple[msgspec.Raw, ...]


class Receipt(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """The outcome of one record (or of one undecodable Kafka message)."""
    hash: Hash32
    block: int
    index: int
    ok: bool
    error: str | None = None
