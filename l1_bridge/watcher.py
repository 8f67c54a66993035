"""The L1 watcher: copies the bridge's inbox (Deposited,
ForcedWithdrawalRequested and ForcedCloseRequested events) into the log, in
inbox order, once each, as Deposit / ForcedWithdrawal / ForcedClose records.

- Only events at least ``confirmations`` blocks deep are read (the confirmed
  height), so a shallower L1 reorg never reaches the log.
- It resumes from the state: the next entry to copy is
  ``globals.inbox_count`` (plus what it has in flight), so after a restart or
  a failover nothing is submitted twice; a duplicate would be refused by the
  rules anyway (``inbox_out_of_order``).
- Each event carries the chain hash after its entry; the watcher checks it
  against the L2's ``globals.inbox_hash`` chain before submitting, and
  re-reads from an earlier height when the block it last scanned changed
  hash (a reorg below the confirmed height, as anvil can simulate).
- The records go to the sequencer through ``builder.submit(record)``: the
  same path as user txs, acknowledged after the Kafka commit.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from l1_bridge.client import BridgeClient, poll_forever
from sequencer.core.inbox import apply_inbox_record
from sequencer.core.records import Deposit, ForcedClose, ForcedWithdrawal

log = logging.getLogger("isoroll.l1.watcher")

REORG_REWIND = 64
"""Blocks re-read when the last scanned block changed (a reorg deeper than the confirmations)."""


EVENT_RECORDS = {"deposit": Deposit, "forced": ForcedWithdrawal, "close": ForcedClose}


def event_to_record(ev: dict) -> Deposit | ForcedWithdrawal | ForcedClose:
    """The L2 record of one inbox event.  The account is the event's, which
    the bridge takes from msg.sender: nobody files a request for another
    account.  A close's market id is its entry's amount field."""
    account = bytes.fromhex(ev["account"][2:])
    try:
        cls = EVENT_RECORDS[ev["kind"]]
    except KeyError:
        raise ValueError(f"unknown inbox event kind {ev['kind']!r}") from None
    return cls(ev["inbox_index"], account, ev["amount"])


@dataclass
class WatchResult:
    confirmed: int
    read: int
    submitted: list


class InboxWatcher:
    def __init__(self, client: BridgeClient, node: Any, *, confirmations: int = 2, poll_interval_s: float = 1.0,
                 start_block: int = 0) -> None:
        self.client = client
        self.node = node
        self.confirmations = confirmations
        self.poll_interval_s = poll_interval_s
        self.start_block = start_block
        self.scan_from = start_block
        self.anchor: tuple[int, bytes] | None = None
        self.in_flight: set[int] = set()
        self.submitted_total = 0
        self.last_error: str | None = None

    # --- reading L1 (blocking: run in a thread) ----------------------------------------
    def read_confirmed(self) -> tuple[int, list[dict]]:
        """(confirmed height, inbox events in scan_from..confirmed), after a reorg check."""
        head = self.client.block_number()
        confirmed = head - self.confirmations
        if self.anchor is not None:
            number, hash_ = self.anchor
            block = self.client._guard("read a block", lambda: self.client.w3.eth.get_block(number))
            if bytes(block["hash"]) != hash_:
                rewind = max(self.start_block, number - REORG_REWIND)
                log.warning("L1 reorg below the confirmed height: block %d changed; re-reading from block %d",
                            number, rewind)
                self.scan_from = rewind
                self.anchor = None
        if confirmed < self.scan_from:
            return confirmed, []
        events = self.client.inbox_events(self.scan_from, confirmed)
        block = self.client._guard("read a block", lambda: self.client.w3.eth.get_block(confirmed))
        self._pending_anchor = (confirmed, bytes(block["hash"]))
        return confirmed, events

    # --- one round ------------------------------------------------------------------------------
    async def poll_once(self) -> WatchResult:
        builder = getattr(self.node, "builder", None)
        if builder is None or builder.stopped:
            return WatchResult(-1, 0, [])
        confirmed, events = await asyncio.to_thread(self.read_confirmed)
        await builder.settled()
        g = self.node.chain.state.globals
        next_index, inbox_hash = g.inbox_count, g.inbox_hash
        records = []
        complete = True
        for ev in events:
            i = ev["inbox_index"]
            if i < next_index:
                continue
            if i != next_index:
                log.warning("inbox event %d read before %d; waiting", i, next_index)
                complete = False
                break
            record = event_to_record(ev)
            h = apply_inbox_record(inbox_hash, record)
            if h != bytes(ev["inbox_hash"]):
                log.error("inbox entry %d does not extend the L2's inbox chain (L1 says %s, the L2 computes %s): "
                          "the log holds inbox entries an L1 reorg removed; the operator must intervene",
                          i, bytes(ev["inbox_hash"]).hex(), h.hex())
                self.last_error = f"inbox chain mismatch at entry {i}"
                complete = False
                break
            records.append(record)
            next_index, inbox_hash = i + 1, h
        futures = []
        for record in records:
            futures.append(builder.submit(record))
        results = await asyncio.gather(*futures, return_exceptions=True) if futures else []
        submitted = []
        for record, result in zip(records, results):
            if isinstance(result, Exception):
                code = getattr(result, "code", "")
                if code != "inbox_out_of_order":
                    log.warning("inbox entry %d not written yet (%r); retrying", record.inbox_index, result)
                    complete = False
            else:
                submitted.append(record)
        self.submitted_total += len(submitted)
        if submitted:
            log.info("copied %d L1 inbox entr%s into the log (next %d)", len(submitted),
                     "y" if len(submitted) == 1 else "ies", submitted[-1].inbox_index + 1)
        if complete and events is not None and confirmed >= self.scan_from:
            self.scan_from = confirmed + 1
            self.anchor = getattr(self, "_pending_anchor", None)
        return WatchResult(confirmed, len(events), submitted)

    async def run(self) -> None:
        await poll_forever(self, "L1 watcher", log)
