"""The state the transition acts on, with py-evm style snapshot/commit/revert.

All values are integers (DESIGN.md "State"): collateral in quote units,
positions in base lots, fractions in ppm.  State objects are frozen Structs;
every write goes through a setter that journals the old value, so
``revert(snapshot)`` restores exactly what was there.  The setters also mark
the commitment keys they touched, so the state root is recomputed from the
changed leaves only (sequencer.core.commitment).
"""
from __future__ import annotations

from typing import Any

import msgspec

_MISSING = object()
_MARK = (None, None, None)
"""The journal triple written by State.snapshot()."""


# gc=False on every state struct (and on records, blocks and receipts): they hold
# only ints, bytes and tuples of them, so they can never be part of a reference
# cycle, and keeping millions of them out of the cyclic GC's scans saved ~10% of
# a 1M-record replay (docs/benchmarks.md).
class Account(msgspec.Struct, frozen=True, array_like=True, gc=False):
    collateral: int = 0
    """Free collateral, not locked in any position."""
    nonces: tuple[int, ...] = ()
    """The account's highest used nonces, ascending, at most preset.nonce_window."""


class Position(msgspec.Struct, frozen=True, array_like=True, gc=False):
    size: int = 0
    """Signed size in base lots (long > 0)."""
    cost: int = 0
    """Signed sum of fill notionals, in quote units."""
    margin: int = 0
    """Collateral isolated in this position."""
    funding_snapshot: int = 0
    """The market's cumulative funding index when the position last settled."""
    # Appended for the bounded cancel-all (rules v2, docs/engine.md "Liquidation"):
    order_epoch: int = 0
    """Every order of the owner in this market placed at or before this
    placement sequence number (``Globals.order_count`` then) is cancelled: a
    liquidation or a forced close (and, rules v4, a scheduled cancel-all in
    each market) cancels them all with this one write
    (0x's ``cancelOrdersUpTo``), so the state transition's cost, and its
    fraud proof's witness, do not grow with the owner's orders."""


def is_empty_position(position: Position | None) -> bool:
    """A position the state tree does not hold: flat, no cost, no margin, and
    no cancelled orders to remember (its leaf is empty; sequencer.core.commitment)."""
    return position is None or (position.size == 0 and position.cost == 0 and position.margin == 0
                                and position.order_epoch == 0)


def get_order_epoch(state: "State", address: bytes, market: int) -> int:
    """The owner's order epoch in the market: its orders with ``seq`` at or below it are cancelled."""
    position = state.positions.get((address, market))
    return 0 if position is None else position.order_epoch


def is_order_open(state: "State", address: bytes, nonce: int) -> bool:
    """Neither filled nor cancelled (by its flag or by its owner's order epoch
    in its market): what the book and the API show."""
    order = state.orders.get((address, nonce))
    return (order is not None and not order.cancelled and order.filled < order.size
            and order.seq > get_order_epoch(state, address, order.market))


class Order(msgspec.Struct, frozen=True, array_like=True, gc=False):
    params_hash: bytes
    size: int
    filled: int = 0
    cancelled: bool = False
    # Appended for the perps rules (issue 3): the signed order parameters the
    # Trade rule checks (params_hash commits to them), and the placement
    # sequence number that gives time priority and tells the taker apart.
    market: int = 0
    is_buy: bool = False
    price: int = 0
    leverage: int = 0
    time_in_force: int = 0
    reduce_only: bool = False
    expiry: int = 0
    seq: int = 0


class Market(msgspec.Struct, frozen=True, array_like=True, gc=False):
    id: int
    oracle_price: int = 0
    oracle_time_ms: int = 0
    funding_index: int = 0
    open_interest: int = 0
    funding_time_ms: int = 0
    """Timestamp of the last FundingTick (a multiple of the funding interval)."""
    funding_dust: int = 0
    """Funding rounding not yet swept to the insurance fund, in units of
    1 / (10**base_decimals * 1e6) quote units (sequencer.core.rules.positions)."""
    # Appended for the mark price (issue 10; sequencer.core.rules.mark, docs/engine.md "Mark price").
    mark_price: int = 0
    """The mark: median of the oracle, the oracle plus the basis EMA and the last
    trade, recomputed by every applied OraclePrice.  Margin, liquidation, PnL,
    funding and the escape use it (``rules.base.require_fresh_price``)."""
    basis_ema: int = 0
    """EMA of the trade-vs-oracle basis (trade price - oracle, clamped to the
    market's band), quote units per whole base unit, updated by every Trade."""
    last_trade_price: int = 0
    last_trade_time_ms: int = 0
    pending_oracle_price: int = 0
    """An oracle price that jumped beyond the market's threshold, held until the
    next price confirms it (0: none)."""
    pending_oracle_time_ms: int = 0


class Withdrawal(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """An entry of the withdrawals tree: claimable on L1 once its checkpoint is final."""
    index: int
    account: bytes
    amount: int
    block: int


class Globals(msgspec.Struct, frozen=True, array_like=True, gc=False):
    block_number: int = 0
    block_hash: bytes = b"\x00" * 32
    timestamp_ms: int = 0
    insurance_fund: int = 0
    fee_pool: int = 0
    inbox_count: int = 0
    inbox_hash: bytes = b"\x00" * 32
    withdrawal_count: int = 0
    total_deposited: int = 0
    """Genesis allocations plus L1 deposits credited, for the conservation check."""
    total_withdrawn: int = 0
    order_count: int = 0
    """Orders placed so far; the last placed order is the only possible taker."""


class VaultShare(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A depositor's shares of the backstop vault (sequencer.core.rules.vault).
    The entry under the vault's own address holds the total shares."""
    shares: int = 0
    unlock_ms: int = 0
    """Block time from which the shares may be withdrawn (the lock-up of the
    depositor's last deposit ends)."""


TRIGGER_PENDING, TRIGGER_FIRED, TRIGGER_CANCELLED = 0, 1, 2


class Trigger(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A stop-loss / take-profit waiting for the mark (sequencer.core.rules.triggers).
    It reserves nothing; when it fires it becomes the order (account, nonce)."""
    params_hash: bytes
    """EIP-712 hashStruct of the signed PlaceTrigger."""
    market: int
    is_buy: bool
    trigger_price: int
    price: int
    """The limit of the order it becomes (immediate-or-cancel)."""
    size: int
    leverage: int
    tpsl: int
    """1 take-profit, 2 stop-loss."""
    reduce_only: bool
    placed_ms: int
    """Block time of its placement: with the key, the order in which crossed triggers fire."""
    status: int = TRIGGER_PENDING


class OrderSchedule(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Per account: the dead-man's switch and the count of pending triggers."""
    cancel_at_ms: int = 0
    """When all the account's orders and triggers are cancelled; 0 = none scheduled."""
    open_triggers: int = 0
    """Pending triggers (bounded by Preset.max_open_triggers)."""
    cancel_day: int = 0
    """The UTC day (block time // 86,400,000) that ``cancels`` counts."""
    cancels: int = 0
    """Scheduled cancel-alls run on ``cancel_day`` (bounded per day)."""


class Auction(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A Dutch auction of part of a liquidated position among keepers
    (sequencer.core.rules.auction, policy book+auction): the price moves
    linearly from ``start_price`` (the mark when it started) to ``end_price``
    (the position's bankruptcy price then) between ``start_ms`` and ``end_ms``."""
    size: int
    """Lots still for sale (the lots stay in the owner's position until a bid takes them)."""
    start_price: int
    end_price: int
    start_ms: int
    end_ms: int


# Table names, also the `kind` part of commitment keys.
ACCOUNTS = "accounts"
POSITIONS = "positions"
ORDERS = "orders"
MARKETS = "markets"
VAULT_SHARES = "vault_shares"
TRIGGERS = "triggers"
ORDER_SCHEDULES = "order_schedules"
AUCTIONS = "auctions"


class State:
    """Mutable container of frozen values.  Not thread-safe; one owner."""

    __slots__ = ("accounts", "positions", "orders", "markets", "globals", "withdrawals",
                 "_journal", "dirty", "vault_shares", "triggers", "order_schedules", "auctions",
                 "_order_index")

    def __init__(self) -> None:
        self.accounts: dict[bytes, Account] = {}
        self.positions: dict[tuple[bytes, int], Position] = {}
        self.orders: dict[tuple[bytes, int], Order] = {}
        self.markets: dict[int, Market] = {}
        self.globals = Globals()
        self.withdrawals: list[Withdrawal] = []
        self._journal: list[Any] = []
        """Flat (table, key, old value) triples, not a list of tuples: a block
        keeps its journal until it ends (so a bug can revert the whole block),
        and thousands of live tuples cost the cyclic GC a scan each time it ran
        (1.5% of a replay); the flat list adds no container objects."""
        self.dirty: set[tuple[str, Any]] = set()
        self.triggers: dict[tuple[bytes, int], Trigger] = {}
        self.order_schedules: dict[bytes, OrderSchedule] = {}
        self.vault_shares: dict[bytes, VaultShare] = {}
        """Backstop vault shares per depositor; the total under the vault's address."""
        self.auctions: dict[tuple[bytes, int], Auction] = {}
        """Liquidation auctions by (owner, market)."""
        self._order_index: dict[bytes, set[int]] = {}
        """Index, not state: per owner, the nonces of the orders that may be
        open, so a liquidation or a cancel-all finds an owner's open orders
        without scanning the orders table.  Every open order's nonce is in it:
        ``set_order`` adds an order when it is first written, a ``revert`` that
        brings back an open order adds it again, ``from_tables`` builds it.  An
        order that filled or was cancelled leaves at its owner's next lookup
        (``get_open_order_nonces``), so fills and cancels, most of the writes,
        never touch the index."""

    # --- snapshot / commit / revert -------------------------------------
    def snapshot(self) -> int:
        """A snapshot id to ``revert`` to or ``commit``.  It writes a marker into
        the journal so that a snapshot taken inside another one never gets the
        same id as the outer one: with a bare journal length, a record applied
        first under a block-level snapshot got id 0 too, and its ``commit(0)``
        dropped the journal the block-level ``revert`` needed."""
        self._journal += _MARK
        return len(self._journal) - 3

    def revert(self, snapshot: int) -> None:
        journal = self._journal
        while len(journal) > snapshot:
            old = journal.pop()
            key = journal.pop()
            table = journal.pop()
            if table is None:  # a snapshot marker
                continue
            if table == "globals":
                self.globals = old
            elif table == "withdrawals":
                self.withdrawals.pop()
            else:
                store = getattr(self, table)
                if table == ORDERS and old is not _MISSING:
                    self._index_order(key[0], key[1])
                if old is _MISSING:
                    store.pop(key, None)
                else:
                    store[key] = old

    def commit(self, snapshot: int) -> None:
        """Keep the changes made since ``snapshot``.  The outermost commit
        (snapshot 0, or a bare ``commit(0)`` at the end of a block) drops the
        journal; an inner commit keeps it for the enclosing snapshot."""
        if snapshot == 0:
            self._journal.clear()

    # --- journaled writes -----------------------------------------------
    def _put(self, table: str, key: Any, value: Any) -> None:
        store = getattr(self, table)
        journal = self._journal
        journal.append(table)
        journal.append(key)
        journal.append(store.get(key, _MISSING))
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value
        self.dirty.add((table, key))

    def set_account(self, address: bytes, account: Account) -> None:
        """``_put`` spelled out for the accounts table: it is written twice per
        Transfer, and the generic getattr + None check showed in replay profiles."""
        accounts = self.accounts
        journal = self._journal
        journal.append(ACCOUNTS)
        journal.append(address)
        journal.append(accounts.get(address, _MISSING))
        accounts[address] = account
        self.dirty.add((ACCOUNTS, address))

    def set_position(self, address: bytes, market: int, position: Position | None) -> None:
        self._put(POSITIONS, (address, market), position)

    def set_order(self, address: bytes, nonce: int, order: Order | None) -> None:
        """``_put`` spelled out (it runs for every order and every fill); a new
        order goes into the owner's index of orders that may be open."""
        key = (address, nonce)
        orders = self.orders
        old = orders.get(key)
        journal = self._journal
        journal.append(ORDERS)
        journal.append(key)
        journal.append(_MISSING if old is None else old)
        if order is None:
            orders.pop(key, None)
        else:
            orders[key] = order
        self.dirty.add((ORDERS, key))
        if old is None:  # a new order (nonces are never reused, so only a revert reopens one)
            self._index_order(address, nonce)

    def _index_order(self, address: bytes, nonce: int) -> None:
        nonces = self._order_index.get(address)
        if nonces is None:
            self._order_index[address] = {nonce}
        else:
            nonces.add(nonce)

    def get_open_order_nonces(self, address: bytes, market: int) -> list[int]:
        """The nonces of the owner's open orders in the market, ascending.  The
        owner's orders that are no longer open leave the index here."""
        nonces = self._order_index.get(address)
        if not nonces:
            return []
        orders = self.orders
        closed = []
        found = []
        for nonce in nonces:
            order = orders.get((address, nonce))
            if order is None or order.cancelled or order.filled >= order.size:
                closed.append(nonce)
            elif order.market == market:
                found.append(nonce)
        nonces.difference_update(closed)
        if not nonces:
            del self._order_index[address]
        return sorted(found)

    @property
    def open_orders(self) -> dict[tuple[bytes, int], set[int]]:
        """The nonces of each (owner, market)'s open orders (not cancelled, not
        filled), computed from the index (for checks; the rules use
        ``get_open_order_nonces``)."""
        out: dict[tuple[bytes, int], set[int]] = {}
        for address, nonces in self._order_index.items():
            for nonce in nonces:
                order = self.orders.get((address, nonce))
                if order is not None and not order.cancelled and order.filled < order.size:
                    out.setdefault((address, order.market), set()).add(nonce)
        return out

    def set_market(self, market: Market) -> None:
        self._put(MARKETS, market.id, market)

    def set_globals(self, globals_: Globals) -> None:
        self._journal += ("globals", None, self.globals)
        self.globals = globals_
        self.dirty.add(("globals", None))

    def set_vault_share(self, address: bytes, share: VaultShare | None) -> None:
        self._put(VAULT_SHARES, address, share)

    def set_trigger(self, address: bytes, nonce: int, trigger: Trigger) -> None:
        self._put(TRIGGERS, (address, nonce), trigger)

    def set_order_schedule(self, address: bytes, schedule: OrderSchedule | None) -> None:
        self._put(ORDER_SCHEDULES, address, schedule)

    def set_auction(self, address: bytes, market: int, auction: Auction | None) -> None:
        self._put(AUCTIONS, (address, market), auction)

    def append_withdrawal(self, withdrawal: Withdrawal) -> None:
        self._journal += ("withdrawals", None, None)
        self.withdrawals.append(withdrawal)

    # --- reads ------------------------------------------------------------
    def get_account(self, address: bytes) -> Account | None:
        return self.accounts.get(address)

    def get_position(self, address: bytes, market: int) -> Position | None:
        return self.positions.get((address, market))

    # --- copies -----------------------------------------------------------
    def to_tables(self) -> dict[str, Any]:
        """Plain data for snapshots and equality checks (journal excluded)."""
        return {
            "accounts": sorted(self.accounts.items()),
            "positions": sorted(self.positions.items()),
            "orders": sorted(self.orders.items()),
            "markets": sorted(self.markets.items()),
            "globals": self.globals,
            "withdrawals": self.withdrawals,
            "vault_shares": sorted(self.vault_shares.items()),
            "triggers": sorted(self.triggers.items()),
            "order_schedules": sorted(self.order_schedules.items()),
            "auctions": sorted(self.auctions.items()),
        }

    @classmethod
    def from_tables(cls, tables: dict[str, Any]) -> "State":
        state = cls()
        state.accounts = {bytes(k): v for k, v in tables["accounts"]}
        state.positions = {(bytes(k[0]), k[1]): v for k, v in tables["positions"]}
        state.orders = {(bytes(k[0]), k[1]): v for k, v in tables["orders"]}
        state.markets = {k: v for k, v in tables["markets"]}
        state.globals = tables["globals"]
        state.withdrawals = list(tables["withdrawals"])
        state.vault_shares = {bytes(k): v for k, v in tables.get("vault_shares", ())}
        state.triggers = {(bytes(k[0]), k[1]): v for k, v in tables.get("triggers", ())}
        state.order_schedules = {bytes(k): v for k, v in tables.get("order_schedules", ())}
        state.auctions = {(bytes(k[0]), k[1]): v for k, v in tables.get("auctions", ())}
        for (address, nonce), order in state.orders.items():
            if not order.cancelled and order.filled < order.size:
                state._index_order(address, nonce)
        return state
