"""The trace of an output and the one-step reference (docs/fraud-proofs.md).

A trace position is ``(state_root, ctx)``: the state tree after some items
of the output, and the context the rules need besides the tree (the open
block's number and time, the output's withdrawals so far as a frontier).
``apply_item`` runs one item through the core rules (the reference the Vyper
one-step ``l1_bridge/contracts/onestep.vy`` must agree with, checked by the
differential tests); ``TraceRunner.step`` also returns the witness the
one-step needs: every leaf the item touches, opened against the root at the
moment it is touched, in the order the contract touches them.

Pure: no I/O, no clock.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import msgspec

from prover import plan_perps
from prover import plan_triggers
from prover import plan_auction
from prover import plan_liquidate
from prover import plan_trade
from prover import plan_oracle
from prover import plan_vault
from prover import plan_ladder
from prover.records import (BlockEnd, BlockStart, Frontier, Noop, decode_item)
from prover.codec import Proof
from prover.hashing import keccak
from prover.tree import SparseMerkleTree
from prover.keys import GLOBAL_KEY, get_account_key
from sequencer.core.commitment import compute_dirty_leaves, compute_leaf, encode_withdrawal
from sequencer.core.records import Block, Deposit, ForcedWithdrawal, Transfer, Withdraw
from sequencer.core.state import ACCOUNTS, AUCTIONS, MARKETS, ORDER_SCHEDULES, ORDERS, POSITIONS, TRIGGERS, VAULT_SHARES, State
from sequencer.core.markets import get_market_table
from sequencer.core.rules.base import Context, get_market_params
from sequencer.core.transition import apply_record, check_block_header, process_block_end


TRIGGER_KIND = 8
"""The key kind of a trigger order (prover.keys.TRIGGER): a CancelOrder may name one."""

PLANNERS = {
    **plan_perps.PLANNERS,
    **plan_triggers.PLANNERS,
    **plan_liquidate.PLANNERS,
    **plan_oracle.PLANNERS,
    **plan_vault.PLANNERS,
    **plan_trade.PLANNERS,
    **plan_auction.PLANNERS,
    **plan_ladder.PLANNERS,
}
"""The witness plan of each record kind a family contract re-executes
(prover/plan_<family>.py, one line per family; prover.families.ONESTEP_FAMILIES)."""


def u256(value: int) -> bytes:
    return value.to_bytes(32, "big")


class TraceContext(msgspec.Struct, frozen=True):
    block_open: int = 0
    block_number: int = 0
    timestamp_ms: int = 0
    withdrawals: Frontier = Frontier()

    def encode(self) -> bytes:
        """abi.encode of onestep.vy's Ctx struct (37 words)."""
        return (u256(self.block_open) + u256(self.block_number) + u256(self.timestamp_ms)
                + u256(self.withdrawals.count) + b"".join(self.withdrawals.branch))

    def hash(self) -> bytes:
        return keccak(self.encode())

    def as_arg(self) -> tuple:
        return (self.block_open, self.block_number, self.timestamp_ms,
                (self.withdrawals.count, list(self.withdrawals.branch)))


ONESTEP_MARKET_FIELDS = (
    "id", "scale", "tick_size", "step_size", "initial_margin_ppm", "maintenance_margin_ppm", "max_leverage",
    "maker_fee_ppm", "taker_fee_ppm", "funding_interval_ms", "funding_cap_ppm", "funding_interest_ppm",
    "oracle_max_age_ms", "liquidation_fee_ppm", "partial_liquidation_notional", "partial_liquidation_ppm",
    "min_order_notional", "insurance_fee_share_ppm", "liquidation_policy", "auction_duration_ms",
    "mark_basis_band_ppm", "mark_ema_half_life_ms", "mark_trade_max_age_ms", "oracle_jump_ppm",
    "oracle_jump_window_ms", "oracle_confirm_band_ppm")
"""onestep_market.vy's MarketParams struct, field by field."""


def get_onestep_markets(rules: Context) -> list[tuple]:
    """The market table every family contract is deployed with
    (onestep_market.vy): per market of the rules' table, every numeric
    MarketParams field, in the struct's order."""
    table = rules.markets or get_market_table(rules.preset.markets)
    return [tuple(getattr(get_market_params(rules, market_id), name) for name in ONESTEP_MARKET_FIELDS)
            for market_id in sorted(table)]


def compute_claim(state_root: bytes, ctx: TraceContext) -> bytes:
    """claim = keccak256(state_root || keccak256(abi.encode(ctx)))."""
    return keccak(state_root + ctx.hash())


class Opening(msgspec.Struct, frozen=True):
    """One leaf as the one-step reads it: value (or absent) and its proof;
    when the one-step deletes the leaf, ``sibling`` is the hash preimage of
    the deepest sibling on its path (``SparseMerkleTree.deletion_sibling``,
    docs/commitment.md "Deleting a leaf"), else empty."""
    key: bytes
    value: bytes | None
    proof: Proof
    sibling: bytes = b""

    def as_arg(self) -> tuple:
        p = self.proof
        return (self.value is not None, self.value or b"",
                (p.bitmap, list(p.siblings), p.other_key or b"\x00" * 32, p.other_value_hash or b"\x00" * 32),
                self.sibling)


class Witness(msgspec.Struct, frozen=True):
    openings: tuple[Opening, ...] = ()
    nonces: tuple[int, ...] = ()


class StepResult(msgspec.Struct, frozen=True):
    ok: bool
    """The receipt outcome (header accepted for BLOCK_START, block open for BLOCK_END)."""
    witness: Witness


def build_tree(state: State) -> SparseMerkleTree:
    """The state tree of a whole state (clears its dirty set)."""
    entries = [(ACCOUNTS, k) for k in state.accounts] + [(POSITIONS, k) for k in state.positions]
    entries += [(ORDERS, k) for k in state.orders] + [(MARKETS, k) for k in state.markets]
    entries += [(VAULT_SHARES, k) for k in state.vault_shares]
    entries += [(TRIGGERS, k) for k in state.triggers] + [(ORDER_SCHEDULES, k) for k in state.order_schedules]
    entries += [(AUCTIONS, k) for k in state.auctions]
    entries.append(("globals", None))
    tree = SparseMerkleTree()
    tree.update(dict(compute_leaf(state, table, key) for table, key in entries))
    state.dirty.clear()
    return tree


def apply_item(state: State, rules: Context, ctx: TraceContext, item) -> tuple[bool, TraceContext]:
    """Apply one decoded item to ``state`` (the trace semantics of
    docs/fraud-proofs.md): (receipt outcome, the context after it).  The
    one-step's reference, and the L1 replay's transition (with
    ``prover.records.decode_replay_item``)."""
    ok = False
    if isinstance(item, BlockStart):
        error = check_block_header(state, Block(item.number, item.parent_hash, item.timestamp_ms, ()), rules)
        ok = error is None
        ctx = msgspec.structs.replace(ctx, block_open=int(ok), block_number=item.number,
                                      timestamp_ms=item.timestamp_ms)
    elif isinstance(item, BlockEnd):
        ok = bool(ctx.block_open)
        if ok:
            process_block_end(state, Block(ctx.block_number, b"", ctx.timestamp_ms, ()), item.block_hash)
        ctx = msgspec.structs.replace(ctx, block_open=0)
    elif not isinstance(item, Noop) and ctx.block_open:
        before = len(state.withdrawals)
        ok = apply_record(state, item, ctx.timestamp_ms, rules) is None
        frontier = ctx.withdrawals
        for withdrawal in state.withdrawals[before:]:
            frontier = frontier.push_hash(keccak(encode_withdrawal(withdrawal)))
        ctx = msgspec.structs.replace(ctx, withdrawals=frontier)
    state.commit(0)
    return ok, ctx


class TraceRunner:
    """The state, its tree and the trace context, advanced one item at a time."""

    def __init__(self, state: State, rules: Context, tree: SparseMerkleTree | None = None,
                 ctx: TraceContext | None = None) -> None:
        self.state = state
        self.rules = rules
        self.tree = tree if tree is not None else build_tree(state)
        self.ctx = ctx or TraceContext()

    @property
    def state_root(self) -> bytes:
        return self.tree.root

    @property
    def claim(self) -> bytes:
        return compute_claim(self.tree.root, self.ctx)

    def copy(self) -> "TraceRunner":
        return TraceRunner(State.from_tables(self.state.to_tables()), self.rules, self.tree.copy(), self.ctx)

    def step(self, item: bytes) -> StepResult:
        """Apply one item; returns the outcome and the one-step witness."""
        decoded = decode_item(item)
        plan, nonces = self._plan_reads(decoded)
        pre_tree = self.tree.copy()
        ok, writes = self._apply(decoded)
        return StepResult(ok, Witness(tuple(self._open(pre_tree, plan(ok, writes))), nonces))

    # --- applying --------------------------------------------------------------
    def _apply(self, item) -> tuple[bool, set[bytes]]:
        ok, self.ctx = apply_item(self.state, self.rules, self.ctx, item)
        changes = compute_dirty_leaves(self.state)
        self.tree.update(changes)
        return ok, set(changes)

    # --- the witness -------------------------------------------------------------
    def _plan_reads(self, item):
        """The leaves the one-step opens, in its order, as a function of the
        outcome: a list of (key, written).  Facts about the pre-state are read
        here, before the item is applied."""
        g = self.state.globals
        if isinstance(item, BlockStart):
            return (lambda ok, writes: [(GLOBAL_KEY, False)]), ()
        if isinstance(item, BlockEnd):
            is_open = bool(self.ctx.block_open)
            return (lambda ok, writes: [(GLOBAL_KEY, True)] if is_open else []), ()
        if isinstance(item, Noop) or not self.ctx.block_open:
            return (lambda ok, writes: []), ()
        planner = PLANNERS.get(type(item))
        if planner is not None:
            return planner(self, item)
        if not isinstance(item, (Transfer, Withdraw, Deposit, ForcedWithdrawal)):
            raise TypeError(f"{type(item).__name__} has a one-step tag but no planner in prover.trace.PLANNERS")
        account = get_account_key(item.account)
        if isinstance(item, (Transfer, Withdraw)):
            kept = self.state.accounts.get(item.account)
            nonces = kept.nonces if kept is not None else ()
            if isinstance(item, Transfer):
                to = get_account_key(item.to)
                return (lambda ok, writes: [(account, ok)] + ([(to, True)] if ok and to != account else [])), nonces
            return (lambda ok, writes: [(account, ok)] + ([(GLOBAL_KEY, True)] if ok else [])), nonces
        if isinstance(item, (Deposit, ForcedWithdrawal)):
            in_order = item.inbox_index == g.inbox_count
            return (lambda ok, writes: [(GLOBAL_KEY, False)] + (
                [(account, account in writes), (GLOBAL_KEY, True)] if in_order else [])), ()

    def _open(self, pre_tree: SparseMerkleTree, plan: list[tuple[bytes, bool]]) -> Iterable[Opening]:
        """Each planned leaf opened against the root of the writes before it;
        a written leaf is folded in with its final value, and one whose final
        value is empty (deleted) carries its deletion witness."""
        tree = pre_tree
        for key, written in plan:
            value = tree.get(key)
            final = self.tree.get(key) if written else value
            deleted = written and final is None and value is not None
            yield Opening(key, value, tree.prove(key), tree.deletion_sibling(key) if deleted else b"")
            if written:
                tree.set(key, final)


def run_items(runner: TraceRunner, items: Sequence[bytes]) -> list[bytes]:
    """The claims of a trace: [claim before item 0, after item 0, ...]."""
    claims = [runner.claim]
    for item in items:
        runner.step(item)
        claims.append(runner.claim)
    return claims
