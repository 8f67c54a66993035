"""The L1 view of the dashboard (docs/api.md, "L1"), for a node with an L1 connection:

- ``GET /v1/l1`` — the bridge: addresses, both clocks, frozen or not, the last
  outputs with their state and challenge time left, the inbox, the forced
  requests with their grace left and, when frozen, every account's escape
  amount with its registration (registerEscape inside the window, claimEscape
  after it) and the refundable deposits, each with the L1 call to make;
- ``GET /v1/l1/accounts/{address}`` — the account's withdrawals, each
  waiting for a checkpoint, in its challenge period (seconds left), ready
  (with the claim call) or claimed, and its L1 token balance.

The calls are given as ``{"to", "data"}`` (ABI-encoded calldata): the page
sends them with the user's own L1 wallet; the node signs nothing.  Claims,
escapes and refunds come from the exit kit's replay of the bridge's batch
data (``l1_bridge.exit.L1Replay``), not from this node's state: what the
page offers is what L1 alone proves.
"""
from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from l1_bridge.proofs import compute_escape_amount, escape_args
from sequencer.node.api import ApiError, json_response, parse_address_param

if TYPE_CHECKING:  # imported where used: a node without L1 never loads web3 (~1 s of start)
    from l1_bridge.exit import L1Replay

CACHE_S = 2.0
"""How long an L1 reading is reused (the page polls; the bridge moves per L1 block)."""
SHOWN = 10
"""Outputs, inbox entries and forced requests listed (the last ones)."""


def call(client, function: str, *args) -> dict:
    """An L1 call for the user's wallet to send: the bridge's address and the calldata."""
    return {"to": client.bridge.address,
            "data": getattr(client.bridge.functions, function)(*args)._encode_transaction_data()}


class L1View:
    def __init__(self, api, l1) -> None:
        self.api = api
        self.l1 = l1
        """The node's l1_bridge.services.L1Link (its client once connected)."""
        self.lock = threading.Lock()
        self.replay: L1Replay | None = None
        self.cache: dict[str, tuple[float, Any]] = {}

    def client(self):
        client = self.l1.client
        if client is None:
            raise ApiError("not_found", "this node runs without an L1 connection (no l1_rpc_url)")
        return client

    def cached(self, key: str, read):
        from l1_bridge.client import L1Error
        hit = self.cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < CACHE_S:
            return hit[1]
        with self.lock:
            try:
                value = read()
            except L1Error as exc:
                raise ApiError("l1_unavailable", f"cannot read the bridge: {exc}", 503) from None
        self.cache[key] = (time.monotonic(), value)
        return value

    def get_replay(self, client) -> L1Replay:
        from l1_bridge.exit import L1Replay
        if self.replay is None or self.replay.client is not client:
            self.replay = L1Replay(client, preset=self.api.node.ctx.preset.name)
        self.replay.run()
        return self.replay

    # --- readings (in a thread: web3 is blocking) ----------------------------------------
    def read_bridge(self, client) -> dict:
        s, p = client.status(), client.params()
        count = s["output_count"]
        outputs = []
        for i in range(max(0, count - SHOWN), count):
            o = client.get_output(i)
            outputs.append({"index": i, "l2Block": o["l2_block"], "inboxCount": o["inbox_count"],
                            "proposedAt": o["proposed_at"], "finalAt": o["final_at"], "final": o["is_final"],
                            "challengeTimeLeft": o["challenge_time_left"]})
        events = client.inbox_events(self.replay_start(client))
        forced = []
        for e in [e for e in events if e["kind"] == "forced"][-SHOWN:]:
            f = client.get_forced_request(e["inbox_index"])
            forced.append({"inboxIndex": e["inbox_index"], "account": e["account"].lower(), "amount": e["amount"],
                           "requestedAt": f["requested_at"], "deadline": f["deadline"], "graceLeft": f["grace_left"],
                           "covered": f["covered_by_live_output"], "served": f["served"],
                           "freeze": call(client, "freeze", e["inbox_index"])
                           if not s["frozen"] and client.can_freeze(e["inbox_index"]) else None})
        out = {"rpcUrl": client.url, "chainId": client.chain_id(), "bridge": client.bridge.address,
               "token": client.token.address, "now": s["now"], "challengePeriod": p["challenge_period"],
               "forcedGrace": p["forced_grace"], "frozen": s["frozen"], "outputCount": count,
               "lastFinalOutput": s["last_final_output"], "inboxCount": s["inbox_count"],
               "openForcedRequests": s["open_forced_requests"], "outputs": outputs,
               "inbox": [{"inboxIndex": e["inbox_index"], "kind": e["kind"], "account": e["account"].lower(),
                          "amount": e["amount"], "l1Block": e["block_number"]} for e in events[-SHOWN:]],
               "forcedRequests": forced, "disputes": read_disputes(client)}
        if s["frozen"]:
            out.update(frozenAt=s["frozen_at"], frozenOutput=s["frozen_output"],
                       frozenInboxCount=s["frozen_inbox_count"], **self.read_escapes(client, s))
        return out

    @staticmethod
    def replay_start(client) -> int:
        return max(0, client.deployment.block_number - 1) if client.deployment is not None else 0

    def read_escapes(self, client, status: dict) -> dict:
        """Each account of the frozen state: what it is owed (the exit kit's replay),
        and its registration: registerEscape while the window is open, claimEscape after."""
        replay = self.get_replay(client)
        fields = replay.frozen_fields()
        markets = replay.markets()
        window_open = status["now"] < status["escape_deadline"]
        escapes = []
        for account in replay.accounts():
            who = "0x" + account.hex()
            info = client.escape_info(who)
            action = None
            if window_open and not info["registered"]:
                action = call(client, "registerEscape", *escape_args(replay.chain.tree, account, fields, markets))
            elif not window_open and info["registered"] and not info["paid"]:
                action = call(client, "claimEscape", client.w3.to_checksum_address(who))
            escapes.append({"account": who, "amount": compute_escape_amount(replay.chain.state, account, markets),
                            "registered": info["registered"], "owed": info["owed"], "paid": info["paid"],
                            "due": info["due"], "action": action})
        refunds = [{"inboxIndex": e["inbox_index"], "account": e["account"].lower(), "amount": e["amount"],
                    "refund": call(client, "refundDeposit", e["inbox_index"], e["account"], e["amount"])}
                   for e in replay.refundable_deposits()]
        return {"escapeDeadline": status["escape_deadline"], "escapePool": status["escape_pool"],
                "totalRegistered": status["total_registered"], "escapes": escapes, "refunds": refunds}

    def read_account(self, client, address: bytes, pending: list[dict]) -> dict:
        replay = self.get_replay(client)
        rows, seen = [], set()
        for r in replay.withdrawals_of(address):
            w = r["withdrawal"]
            seen.add(w.index)
            left = 0 if r["final"] else client.get_output(r["output_index"])["challenge_time_left"]
            state = "claimed" if r["claimed"] else "ready" if r["final"] else "in_challenge_period"
            rows.append({"index": w.index, "amount": w.amount, "block": w.block, "state": state,
                         "output": r["output_index"], "challengeTimeLeft": left,
                         "claim": call(client, "claimWithdrawal", *r["args"]) if state == "ready" else None})
        rows += [dict(w, state="waiting_for_checkpoint", output=None, challengeTimeLeft=None, claim=None)
                 for w in pending if w["index"] not in seen]
        return {"address": "0x" + address.hex(), "l1Balance": client.token_balance("0x" + address.hex()),
                "withdrawals": sorted(rows, key=lambda r: r["index"])}

    # --- endpoints ------------------------------------------------------------------------
    async def get_bridge(self, request: Request) -> Response:
        client = self.client()
        return json_response(await asyncio.to_thread(self.cached, "bridge", lambda: self.read_bridge(client)))

    async def get_account(self, request: Request) -> Response:
        address = parse_address_param(request.path_params["address"])
        client = self.client()
        await self.api.settled()
        pending = [{"index": w.index, "amount": w.amount, "block": w.block}
                   for w in self.api.node.chain.state.withdrawals if w.account == address][-100:]
        return json_response(await asyncio.to_thread(
            self.cached, "account:" + address.hex(), lambda: self.read_account(client, address, pending)))


def read_disputes(client) -> list[dict]:
    """The newest dispute games as `isoroll l1 disputes --json` gives them, keys in camelCase."""
    from l1_bridge.client import L1Error
    from l1_bridge.dispute import GameContract, list_games
    try:
        games = list_games(GameContract.of(client), SHOWN)
    except L1Error:  # a bridge without dispute games
        return []
    return [{"".join(w.capitalize() if i else w for i, w in enumerate(k.split("_"))): v for k, v in g.items()}
            for g in games]


def routes(api, l1) -> list[Route]:
    view = L1View(api, l1)
    return [Route("/v1/l1", view.get_bridge), Route("/v1/l1/accounts/{address}", view.get_account)]
