"""The block assembler: checked txs in, one block out, synchronously.

``BlockAssembler.assemble`` admits each checked tx against the live state (the
order books match a PlaceOrder, a price triggers liquidations), refuses what
breaks a rule (``RuleError``, the state as before), cuts the block and applies
its end.  It returns an ``Assembly``: the block's bytes and hash, every record
as an object, the receipts, and per submitted tx its ``Outcome`` (receipt and
the records its admission derived: the taker's trades, the liquidations a
price caused).  The async driver (sequencer.node.builder) writes the bytes in
one Kafka transaction and then ``commit``s, or ``revert``s when the log did
not take them.  No asyncio, no I/O: tests drive it directly.

Each thing is done once: a submitted tx arrives as a ``CheckedRecord`` (its
record decoded once, where the tx check's answer crosses back from the worker
process, its log bytes and hash as the check computed them); the block reuses
those bytes (only derived records are encoded here) and the receipts reuse the
hash (only derived records are hashed here).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import msgspec

from sequencer.core.encoding import compute_block_hash, compute_record_hash, encode_block, encode_record
from sequencer.core.records import Block, Receipt, Record
from sequencer.core.rules.funding import get_due_funding_time
from sequencer.core.vault_book import get_due_vault_unwinds
from sequencer.core.state import State
from sequencer.core.transition import BlockResult, Context, RuleError, apply_record, process_block_end

Admit = Callable[[State, Record, int, Context], list[Record]]


def admit_single(state: State, record: Record, timestamp_ms: int, ctx: Context) -> list[Record]:
    """Admission without order books: apply the record alone; raise its RuleError."""
    error = apply_record(state, record, timestamp_ms, ctx)
    if error is not None:
        raise error
    return [record]


class CheckedRecord(msgspec.Struct, frozen=True, gc=False):
    """A tx that passed the stateless checks: the record, its log bytes (what
    the block carries) and its hash (keccak of those bytes, the receipt's)."""
    record: Record
    raw: bytes
    tx_hash: bytes

    @classmethod
    def of(cls, record: Record) -> "CheckedRecord":
        """A record checked here (the oracle route, tests): encoded and hashed once."""
        raw = encode_record(record)
        return cls(record, raw, compute_record_hash(raw))


class Outcome(msgspec.Struct, frozen=True, gc=False):
    """What happened to one admitted tx once its block committed."""
    receipt: Receipt
    derived: list[Record]
    """The records its admission added right after it (a PlaceOrder's trades as
    the taker, the liquidations an OraclePrice triggered)."""

    @property
    def ok(self) -> bool:
        return self.receipt.ok


class BuiltBlock(BlockResult):
    """A block this sequencer assembled: the chain listeners get its records as
    objects and need not decode the block again."""
    records: list[Record]


@dataclass(slots=True)
class Assembly:
    outcomes: list[Outcome | RuleError | None]
    """Per submitted tx: its Outcome, the RuleError that refused it, or None
    (no room left: it goes into the next block)."""
    snapshot: int
    result: BuiltBlock | None = None
    """None when nothing was admitted (no block to write)."""
    message: bytes = b""
    derived_hashes: int = field(default=0)
    """Records hashed here (the derived ones; submitted txs came hashed)."""

    @property
    def admitted(self) -> int:
        return sum(1 for o in self.outcomes if isinstance(o, Outcome))


class BlockAssembler:
    RESERVED_RECORDS = 256
    """Room kept in every block for the records one admission derives (trades,
    liquidations, funding ticks), so a block never exceeds max_records."""
    RESERVED_BYTES = 16_384
    """Bytes kept in every block for what one admission derives (about 150
    trades), so the byte budget (Preset.max_block_bytes) is rarely passed after
    an admission; when it is, that admission is undone and waits for the next
    block."""
    MAX_TRIGGER_FIRES = 32
    """Triggers fired at the start of one block, at most; crossed ones past it
    (earliest placed first) fire in the next blocks."""
    MAX_SCHEDULED_CANCELS = 16
    """Scheduled cancel-alls run at the start of one block, at most."""
    MAX_TRIGGER_RECORDS = 384
    """Once the fires of a block have derived this many records (about 32 KB of
    trades) no further trigger fires in it: a fire that sweeps the book derives many."""
    BLOCK_OVERHEAD = 64
    """An upper bound on a block message's bytes besides its records (number,
    parent hash, time, the array headers)."""

    def __init__(self, state: State, ctx: Context, *, max_records: int, exchange=None,
                 admit: Admit = admit_single) -> None:
        """``exchange``: the order books (sequencer.core.matching.Exchange), or None
        for the account model alone (``admit``)."""
        self.state = state
        self.ctx = ctx
        self.max_records = max_records
        self.max_bytes = ctx.preset.max_block_bytes - self.BLOCK_OVERHEAD
        """The most record bytes a block may carry."""
        self.exchange = exchange
        self.admit = admit if exchange is None else exchange.admit

    def is_funding_due(self, now_ms: int) -> bool:
        """Whether a block cut now would start with a funding tick (nothing applied)."""
        if self.exchange is None:
            return False
        timestamp_ms = max(now_ms, self.state.globals.timestamp_ms)
        markets = self.state.markets
        return any(get_due_funding_time(markets.get(market_id), params, timestamp_ms) is not None
                   for market_id, params in self.exchange.markets.items())

    def is_block_start_due(self, now_ms: int) -> bool:
        """Whether a block cut now would start with records of its own (funding
        ticks, scheduled cancel-alls, trigger fires): an idle builder cuts one."""
        if self.exchange is None:
            return False
        timestamp_ms = max(now_ms, self.state.globals.timestamp_ms)
        triggers = self.exchange.triggers
        auction_due = any(a.end_ms <= timestamp_ms for a in self.state.auctions.values())
        return (self.is_funding_due(now_ms) or auction_due or bool(triggers.get_due_cancels(timestamp_ms, 1))
                or triggers.has_crossed(self.state, self.exchange.markets, timestamp_ms))

    def block_start_records(self, timestamp_ms: int) -> list[Record]:
        """Funding ticks due at this block time (and the liquidations they cause),
        the vault's unwinds, then the scheduled cancel-alls due, then the
        triggers the mark crossed (each bounded per block; MAX_TRIGGER_FIRES)."""
        if self.exchange is None:
            return []
        exchange, state, ctx = self.exchange, self.state, self.ctx
        exchange.prune_expired(timestamp_ms)
        records = exchange.due_funding(state, timestamp_ms, ctx)
        records += get_due_vault_unwinds(exchange, state, timestamp_ms, ctx)
        records += exchange.due_auction_ends(state, timestamp_ms, ctx)
        for account in exchange.triggers.get_due_cancels(timestamp_ms, self.MAX_SCHEDULED_CANCELS):
            records += exchange.run_scheduled_cancel(state, account, timestamp_ms, ctx)
        return records + self.fire_crossed_triggers(timestamp_ms)

    def fire_crossed_triggers(self, timestamp_ms: int) -> list[Record]:
        """Fire the crossed triggers, at most MAX_TRIGGER_FIRES and while the
        fires have derived fewer than MAX_TRIGGER_RECORDS records."""
        exchange, state, ctx = self.exchange, self.state, self.ctx
        records: list[Record] = []
        for key in exchange.triggers.get_crossed(state, exchange.markets, timestamp_ms, self.MAX_TRIGGER_FIRES):
            if len(records) >= self.MAX_TRIGGER_RECORDS:
                break
            try:
                fired = exchange.run_atomically(state, exchange.fire_trigger, state, key, timestamp_ms, ctx)
            except RuleError:
                exchange.triggers.remove(key)  # the index was stale: the rule knows better
                continue
            records += fired
        return records

    def assemble(self, txs: Sequence[CheckedRecord], now_ms: int) -> Assembly:
        """Admit ``txs`` in order into the next block (applied to the state under a
        snapshot: ``commit`` or ``revert`` it)."""
        state = self.state
        g = state.globals
        timestamp_ms = max(now_ms, g.timestamp_ms)
        snapshot = state.snapshot()
        records = self.block_start_records(timestamp_ms)
        raws = [encode_record(r) for r in records]
        hashes: list[bytes | None] = [None] * len(records)
        outcomes: list[Outcome | RuleError | None] = []
        positions: list[tuple[int, int, int]] = []  # (outcome index, record index, derived count)
        room = self.max_records - self.RESERVED_RECORDS
        size = sum(map(len, raws))
        byte_room = self.max_bytes - self.RESERVED_BYTES
        for tx in txs:
            if len(tx.raw) > self.max_bytes:
                outcomes.append(RuleError("tx_too_large", f"{len(tx.raw)} bytes; a block carries at most "
                                                          f"{self.max_bytes} bytes of records"))
                continue
            if len(records) >= room or (positions and size + len(tx.raw) > byte_room):
                outcomes.append(None)
                continue
            mark = state.snapshot()
            try:
                derived = self.admit(state, tx.record, timestamp_ms, self.ctx)
            except RuleError as exc:
                outcomes.append(exc)
                continue
            derived_raws = [encode_record(record) for record in derived[1:]]
            added = len(tx.raw) + sum(map(len, derived_raws))
            if size + added > self.max_bytes:
                outcomes.append(self._undo(mark, tx, added, alone=not positions))
                continue
            size += added
            positions.append((len(outcomes), len(records), len(derived) - 1))
            outcomes.append(None)
            records += derived
            raws.append(tx.raw)
            hashes.append(tx.tx_hash)
            raws += derived_raws
            hashes += [None] * len(derived_raws)
        if not records:
            state.revert(snapshot)  # nothing was applied (admission is atomic)
            return Assembly(outcomes, snapshot)
        block = Block(g.block_number + 1, g.block_hash, timestamp_ms, tuple(map(msgspec.Raw, raws)))
        message = encode_block(block)
        if len(message) > self.ctx.preset.max_block_bytes:  # BLOCK_OVERHEAD is wrong: a bug, not input
            raise AssertionError(f"assembled a block of {len(message)} bytes, over the budget")
        block_hash = compute_block_hash(message)
        process_block_end(state, block, block_hash)
        computed = 0
        receipts = []
        for i, (raw, known) in enumerate(zip(raws, hashes)):
            if known is None:
                known = compute_record_hash(raw)
                computed += 1
            receipts.append(Receipt(known, block.number, i, True, None))
        for outcome_index, at, count in positions:
            outcomes[outcome_index] = Outcome(receipts[at], records[at + 1:at + 1 + count])
        result = BuiltBlock(block, block_hash, receipts, True, records)
        return Assembly(outcomes, snapshot, result, message, computed)

    def _undo(self, mark: int, tx: CheckedRecord, added: int, alone: bool) -> RuleError | None:
        """Undo an admission whose derived records passed the byte budget: it
        waits for the next block (None), or, alone in its block, is refused."""
        self.state.revert(mark)
        if self.exchange is not None:
            self.exchange.rebuild(self.state)
        if not alone:
            return None
        return RuleError("tx_too_large", f"with the records it derives the tx takes {added} bytes; "
                                         f"a block carries at most {self.max_bytes} bytes of records")

    def commit(self, assembly: Assembly) -> None:
        """The block is in the log: its changes are final."""
        self.state.commit(0)

    def revert(self, assembly: Assembly) -> None:
        """The log did not take the block: undo it (and the books that followed it)."""
        self.state.revert(assembly.snapshot)
        if self.exchange is not None:
            self.exchange.rebuild(self.state)
