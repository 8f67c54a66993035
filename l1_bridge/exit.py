"""The exit kit: everything a user needs from L1 alone (an RPC, the bridge
address, the genesis allocation) — no sequencer, no Kafka.

``L1Replay`` rebuilds the L2 state output by output from the batch data the
proposer posted as calldata (``postData`` chunks, then ``propose(..., data)``):
for each live output it reads the chunks (``BridgeClient.output_chunks``),
decodes their trace items (sequencer.executor.output.decode_batch) and applies
them with the trace semantics a dispute game re-executes
(``prover.trace.apply_item``: the real rules, record by record, block headers
checked), recomputes the output's fields with the checkpointer's own
``compute_output`` and compares the root with the one on the bridge.  On top
of it:

- ``claim_withdrawals``: proofs of the account's withdrawals in final outputs,
  claimed (each once);
- ``escape``: after a freeze, the state at the frozen output, the SMT proofs of
  the account, its positions and their markets, and the escape call
  (l1_bridge.proofs.escape_args); the amount is checked beforehand with
  l1_bridge.proofs.compute_escape_amount;
- ``refundable_deposits`` / ``refund``: deposits the frozen output never took.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Iterable

from eth_utils import to_checksum_address
from web3.logs import DISCARD

from l1_bridge.client import BridgeClient, L1Error, Signer
from l1_bridge.proofs import (MarketScale, claim_args, compute_escape_amount, compute_vault_escape_amount, escape_args,
                              vault_escape_args)
from prover.output import withdrawal_proofs
from prover.records import DataError, decode_replay_item
from prover.trace import TraceContext, apply_item
from sequencer.core.commitment import encode_withdrawal
from sequencer.core.rules.vault import VAULT_ADDRESS
from sequencer.core.state import Withdrawal
from sequencer.core.transition import Context
from sequencer.executor.context import make_context
from sequencer.executor.genesis import (compute_genesis_output_root, compute_genesis_state_root,
                                        make_genesis_chain)
from sequencer.executor.output import EMPTY, Batch, OutputFields, compute_output, decode_batch, get_output_point

__all__ = ["L1Replay", "ReplayedOutput", "compute_genesis_state_root", "escape_everyone", "make_genesis_chain",
           "make_replay_context"]

log = logging.getLogger("isoroll.l1.exit")


def make_replay_context(bridge: str, preset: str = "devnet", verify_signatures: bool = True) -> Context:
    return make_context(preset, bridge, verify_signatures=verify_signatures)


@dataclass
class ReplayedOutput:
    index: int
    l2_block: int
    posted: OutputFields
    posted_root: bytes
    computed: OutputFields | None
    withdrawals: list[Withdrawal] = field(default_factory=list)
    error: str | None = None
    chunks: list[bytes] = field(default_factory=list)
    """The output's posted data, chunk by chunk."""

    @property
    def ok(self) -> bool:
        return self.error is None and self.computed is not None and self.computed.root() == self.posted_root


class L1Replay:
    """The L2 state rebuilt from the bridge's calldata alone."""

    def __init__(self, client: BridgeClient, *, preset: str = "devnet",
                 allocations: list[tuple[bytes, int]] = (), verify_signatures: bool = True) -> None:
        self.client = client
        self.ctx = make_replay_context(client.bridge.address, preset, verify_signatures)
        self.allocations = list(allocations)
        self.chain = make_genesis_chain(self.ctx, self.allocations)
        self.outputs: list[ReplayedOutput] = []
        self.offset = 0
        start = client.deployment.block_number if client.deployment is not None else 0
        self.from_block = max(0, start - 1)
        genesis = compute_genesis_output_root(self.chain.state_root)
        posted = client.get_output(0)["output_root"]
        if posted != genesis:
            raise L1Error("the bridge's genesis output does not match this genesis allocation "
                          f"(bridge {posted.hex()}, computed {genesis.hex()}): pass the genesis the L2 started "
                          "from (--genesis-file), or none for a devnet whose money came in as deposits")

    @property
    def l2_block(self) -> int:
        return self.chain.head_number

    def apply_output(self, event: dict) -> ReplayedOutput:
        """Apply one output's posted items and compare the roots."""
        index, l2_block, fields, _ = self.client.propose_data(event["tx_hash"])
        prev_block = self.chain.head_number
        out = ReplayedOutput(index, l2_block, fields, event["output_root"], None)
        try:
            out.chunks = self.client.output_chunks(event)
            items = decode_batch(out.chunks)
        except (DataError, L1Error) as exc:
            out.error = f"batch data does not decode: {exc}"
            return out
        ctx = TraceContext()
        for item in items:
            _, ctx = apply_item(self.chain.state, self.ctx, ctx, decode_replay_item(item))
        self.chain.compute_state_root()
        if self.chain.head_number != l2_block:
            out.error = f"the batch ends at L2 block {self.chain.head_number}, the output names {l2_block}"
        elif ctx.block_open:
            out.error = f"the batch of output {index} ends inside a block"
        out.computed, out.withdrawals = compute_output(self.chain.state, get_output_point(self.chain), prev_block,
                                                       Batch(tuple(out.chunks)))
        if out.error is None and out.computed.root() != out.posted_root:
            diffs = [name for name, a, b in zip(OutputFields._fields, out.computed, fields) if a != b]
            out.error = f"output {index}: the posted root differs from the replay ({', '.join(diffs) or 'root'})"
        total = sum(w.amount for w in out.withdrawals)
        if out.error is None and event.get("withdrawals_total", total) != total:
            out.error = (f"output {index}: the posted withdrawals total {event['withdrawals_total']} differs "
                         f"from the replay's {total}")
        return out

    def run(self, upto: int | None = None, stop_on_mismatch: bool = True) -> list[ReplayedOutput]:
        """Replay the live outputs 1..upto (default: all) not replayed yet."""
        events = self.client.live_outputs(self.from_block)
        last = len(events) - 1 if upto is None else min(upto, len(events) - 1)
        for ev in events[len(self.outputs) + 1:last + 1]:
            out = self.apply_output(ev)
            self.outputs.append(out)
            if not out.ok:
                log.warning("%s", out.error)
                if stop_on_mismatch:
                    break
        return self.outputs

    # --- withdrawals ---------------------------------------------------------------------
    def withdrawals_of(self, account: bytes | None = None) -> list[dict]:
        """Every withdrawal in a replayed output with its status and claim arguments."""
        rows = []
        final = self.client.last_final_output()
        for out in self.outputs:
            if not out.ok:
                break
            _, proofs = withdrawal_proofs([encode_withdrawal(w) for w in out.withdrawals])
            for w, proof in zip(out.withdrawals, proofs):
                if account is not None and w.account != account:
                    continue
                rows.append({"withdrawal": w, "output_index": out.index, "final": out.index <= final,
                             "claimed": self.client.is_claimed(proof.withdrawal_hash),
                             "args": claim_args(out.index, out.posted, w, proof)})
        return rows

    def claim_withdrawals(self, who: Signer | str | bytes, account: bytes | None = None) -> list[Withdrawal]:
        paid = []
        for row in self.withdrawals_of(account):
            if row["final"] and not row["claimed"]:
                self.client.claim(who, row["args"])
                paid.append(row["withdrawal"])
        return paid

    # --- escape ------------------------------------------------------------------------------
    def markets(self) -> list[MarketScale]:
        return [MarketScale(*m) for m in self.client.markets()]

    def replay_to_frozen(self) -> ReplayedOutput | None:
        s = self.client.status()
        if not s["frozen"]:
            raise L1Error("the bridge is not frozen: escapes open only after a freeze (`isoroll l1 freeze`)")
        self.run(upto=s["frozen_output"])
        if s["frozen_output"] == 0:
            return None
        out = self.outputs[s["frozen_output"] - 1]
        if not out.ok:
            raise L1Error(f"cannot rebuild the frozen output {s['frozen_output']} from L1 data: {out.error}")
        return out

    def frozen_fields(self) -> OutputFields:
        out = self.replay_to_frozen()
        if out is not None:
            return out.posted
        return OutputFields(self.chain.state_root, EMPTY, EMPTY, 0, EMPTY, EMPTY)

    def escape_amount(self, account: bytes) -> int:
        self.replay_to_frozen()
        if account not in self.chain.state.accounts:
            return 0
        return compute_escape_amount(self.chain.state, account, self.markets())

    def register_escape(self, who: Signer | str | bytes, account: bytes) -> int:
        """registerEscape for `account` (within the window after the freeze); the amount owed."""
        fields = self.frozen_fields()
        if account not in self.chain.state.accounts:
            raise L1Error(f"0x{account.hex()} has no account in the last final state: nothing to escape")
        args = escape_args(self.chain.tree, account, fields, self.markets())
        return self.client.register_escape(who, args)

    def escape(self, who: Signer | str | bytes, account: bytes) -> tuple[str, int]:
        """The escape step that is due for `account`: ("registered", owed) while the
        window is open, ("paid", amount) once it is over (claimEscape)."""
        s = self.client.status()
        if not s["frozen"]:
            raise L1Error("the bridge is not frozen: escapes open only after a freeze (`isoroll l1 freeze`)")
        info = self.client.escape_info("0x" + account.hex())
        if s["now"] < s["escape_deadline"]:
            if info["registered"]:
                raise L1Error(f"0x{account.hex()} is registered (owed {info['owed']}); it is paid once the "
                              f"window ends in {s['escape_deadline'] - s['now']} s")
            return "registered", self.register_escape(who, account)
        if not info["registered"]:
            raise L1Error(f"0x{account.hex()} did not register within the escape window: nothing to pay")
        if info["paid"]:
            raise L1Error(f"0x{account.hex()} already escaped")
        return "paid", self.client.claim_escape(who, "0x" + account.hex())

    def vault_escape_amount(self, account: bytes) -> int:
        """What registerVaultEscape adds to `account`'s escape (its part of the vault's)."""
        self.replay_to_frozen()
        return compute_vault_escape_amount(self.chain.state, account, self.markets())

    def vault_shares_of(self, account: bytes) -> int:
        """The vault shares `account` holds in the frozen state (0 for the vault itself)."""
        self.replay_to_frozen()
        entry = self.chain.state.vault_shares.get(account)
        return 0 if account == VAULT_ADDRESS or entry is None else entry.shares

    def is_vault_part_registered(self, account: bytes) -> bool:
        return self.client.bridge.functions.vault_share_registered(to_checksum_address(account)).call()

    def register_vault_escape(self, who: Signer | str | bytes, account: bytes) -> int:
        """Within the window: add `account`'s part of the backstop vault's escape
        to its own (registerVaultEscape), registering the vault's own escape and
        the account's first if they are not yet; the amount added."""
        fields = self.frozen_fields()
        entry = self.chain.state.vault_shares.get(account)
        if account == VAULT_ADDRESS or entry is None or not entry.shares:
            raise L1Error(f"0x{account.hex()} holds no vault shares in the last final state")
        bridge = self.client.bridge.functions
        if self.is_vault_part_registered(account):
            raise L1Error(f"0x{account.hex()}'s vault shares are registered already")
        for holder in (VAULT_ADDRESS, account):
            if not self.client.escape_info("0x" + holder.hex())["registered"]:
                self.register_escape(who, holder)
        args = vault_escape_args(self.chain.tree, account, fields)
        receipt = self.client.send("registerVaultEscape", bridge.registerVaultEscape(*args), who)
        events = self.client.bridge.events.VaultShareRegistered().process_receipt(receipt, errors=DISCARD)
        return events[0]["args"]["owed"]

    def wait_escape_window(self, poll_s: float = 1.0) -> None:
        """Sleep until the chain's time passes the end of the registration window."""
        while True:
            s = self.client.status()
            if s["now"] >= s["escape_deadline"]:
                return
            time.sleep(min(poll_s, max(0.1, s["escape_deadline"] - s["now"])))

    def accounts(self) -> list[bytes]:
        return sorted(self.chain.state.accounts)

    def refundable_deposits(self, account: bytes | None = None) -> list[dict]:
        s = self.client.status()
        if not s["frozen"]:
            return []
        rows = []
        for ev in self.client.inbox_events(self.from_block):
            if ev["kind"] != "deposit" or ev["inbox_index"] < s["frozen_inbox_count"]:
                continue
            if account is not None and bytes.fromhex(ev["account"][2:]) != account:
                continue
            if not self.client.is_refunded(ev["inbox_index"]):
                rows.append(ev)
        return rows

    def refund(self, who: Signer | str | bytes, account: bytes | None = None) -> list[dict]:
        done = []
        for ev in self.refundable_deposits(account):
            self.client.refund(who, ev["inbox_index"], ev["account"], ev["amount"])
            done.append(ev)
        return done


def escape_everyone(replay: L1Replay, who: Signer | str | bytes, accounts: Iterable[bytes] | None = None,
                    wait: bool = True, vault_parts: dict[bytes, int] | None = None) -> dict[bytes, int]:
    """Escape every account of the frozen state (anyone may pay the gas):
    register each one not yet registered while the window is open, and each
    vault shareholder's part of the vault's escape (registerVaultEscape, into
    `vault_parts`), then (with `wait`, or once the window is over) pay each
    registered one not yet paid (never the vault's address: its escape went
    to its shareholders).  {account: paid} (or {account: owed} when only
    registering)."""
    replay.replay_to_frozen()
    targets = replay.accounts() if accounts is None else list(accounts)
    owed = {}
    s = replay.client.status()
    if s["now"] < s["escape_deadline"]:
        for a in targets:
            if not replay.client.escape_info("0x" + a.hex())["registered"]:
                owed[a] = replay.register_escape(who, a)
        for a in targets:
            if replay.vault_shares_of(a) and not replay.is_vault_part_registered(a):
                part = replay.register_vault_escape(who, a)
                owed[a] = owed.get(a, 0) + part
                if vault_parts is not None:
                    vault_parts[a] = part
        if not wait:
            return owed
        replay.wait_escape_window()
    paid = {}
    for a in targets:
        if a == VAULT_ADDRESS:
            continue
        info = replay.client.escape_info("0x" + a.hex())
        if info["registered"] and not info["paid"]:
            paid[a] = replay.client.claim_escape(who, "0x" + a.hex())
    return paid
