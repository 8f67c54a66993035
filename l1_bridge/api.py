"""Proofs over HTTP (docs/commitment.md, "Proofs over HTTP and the CLI").

    GET /v1/proofs/account/{address}[?block=N]
        the account leaf, every position leaf it holds and the market leaves
        those need, each with its SMT proof (prover.codec.Proof JSON), against
        the state root of the head block; plus the bridge's escape() arguments
        (everything but the output struct, which only the frozen output gives).
    GET /v1/proofs/withdrawal/{hash}
        a withdrawal (index, account, amount, block), the output that pays it
        (the checkpointer's grouping: output i holds the withdrawals of L2 blocks
        (l2_block[i-1], l2_block[i]]), the withdrawals-tree proof and the
        claimWithdrawal() arguments; status "waiting_for_checkpoint" until an
        output covers its block.

The withdrawal hash is keccak256 of the withdrawal bytes
abi.encode(uint256 index, address account, uint256 amount, uint256 l2_block)
(sequencer.core.commitment.encode_withdrawal = l1_bridge.proofs.encode_withdrawal),
the key the bridge marks as claimed and the preimage of the withdrawals-tree leaf.

Only the head can be proven: the node keeps one live tree, no old versions,
so ``?block=`` other than the head is a 409.  Nothing here imports web3; the
L1 outputs are read through the ``L1Link`` the routes are built with (its
client is there once the node's L1 services connected), and the escape
arguments come from l1_bridge.proofs (eth_abi only).  The isoroll package adds
these routes to the node's API (``routes(api, l1)``).
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from l1_bridge.proofs import OutputFields, escape_args
from l1_bridge.services import L1Link
from prover.codec import Proof
from prover.hashing import EMPTY
from prover.keys import get_account_key, get_market_key, get_position_key
from prover.output import prove_withdrawal
from sequencer.core import wire
from sequencer.core.commitment import (compute_checkpoint_withdrawals, compute_checkpoint_withdrawals_root,
                                       encode_withdrawal)
from sequencer.core.hashing import keccak
from sequencer.core.state import Withdrawal
from sequencer.node.api import ApiError, json_response, parse_address_param, parse_hash_param

OUTPUTS_CACHE_S = 2.0
"""How long the list of L1 outputs read through the L1 client is reused."""

JS_SAFE = 2**53 - 1


def compute_withdrawal_hash(withdrawal: Withdrawal) -> bytes:
    """keccak256(abi.encode(index, account, amount, l2_block)): the withdrawal's identity."""
    return keccak(encode_withdrawal(withdrawal))


def to_json_abi(value: Any) -> Any:
    """ABI arguments as JSON: bytes -> 0x hex, integers above 2**53 -> 0x hex
    (web3.py and ethers take both for uint256), tuples -> arrays."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "0x" + bytes(value).hex()
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if -JS_SAFE <= value <= JS_SAFE else hex(value)
    if isinstance(value, (list, tuple)):
        return [to_json_abi(v) for v in value]
    raise TypeError(f"cannot render {type(value).__name__} as an ABI argument")


def proof_json(proof: Proof) -> dict:
    return proof.to_json_obj()


class WithdrawalIndex:
    """withdrawal hash -> position in state.withdrawals, kept up to date lazily.
    The list only grows (a reverted block pops its own entries), so an entry is
    checked against the list before it is trusted."""

    def __init__(self) -> None:
        self.positions: dict[bytes, int] = {}
        self.indexed = 0

    def find(self, withdrawals: list[Withdrawal], whash: bytes) -> int | None:
        pos = self.positions.get(whash)
        if pos is not None and pos < len(withdrawals) and compute_withdrawal_hash(withdrawals[pos]) == whash:
            return pos
        if self.indexed > len(withdrawals):  # entries were popped: re-index the tail
            self.indexed = 0
            self.positions.clear()
        for i in range(self.indexed, len(withdrawals)):
            self.positions[compute_withdrawal_hash(withdrawals[i])] = i
        self.indexed = len(withdrawals)
        pos = self.positions.get(whash)
        return pos if pos is not None and compute_withdrawal_hash(withdrawals[pos]) == whash else None


class ProofsApi:
    def __init__(self, api, l1: L1Link) -> None:
        self.api = api
        self.node = api.node
        self.l1 = l1
        self.withdrawals = WithdrawalIndex()
        self._outputs: tuple[float, Any, list[dict], int] | None = None
        self._markets: list[int] | None = None

    # --- accounts ------------------------------------------------------------------
    async def get_account_proof(self, request: Request) -> Response:
        address = parse_address_param(request.path_params["address"])
        block = request.query_params.get("block")
        markets = await self.registered_markets()
        await self.api.settled()
        chain = self.node.chain
        head = chain.head_number
        if block is not None and block not in ("latest", str(head)):
            try:
                asked = int(block, 0)
            except ValueError:
                raise ApiError("invalid_field", f"block {block!r} is not a block number") from None
            if asked != head:
                raise ApiError("block_not_provable",
                               f"only the head block {head} can be proven: this node keeps the live state tree "
                               f"only, not the trees of older blocks (asked for {asked}); ask without ?block= "
                               "and check the answer's blockNumber/stateRoot", 409)
        # From here on nothing awaits: the tree, the state and the head cannot move.
        info = chain.block_infos.get(head)
        tree = chain.tree
        root = tree.root
        if chain.state.dirty or (info is not None and info.state_root not in (None, root)):
            raise ApiError("not_ready", "the state tree is behind the state (catch-up with deferred roots); "
                                        "retry in a moment")
        started = time.perf_counter()
        account_proof = tree.prove(get_account_key(address))
        if account_proof.value is None:
            raise ApiError("not_found", f"account {request.path_params['address']} is not in the state at block "
                                        f"{head} (its leaf is empty; exclusion proof: "
                                        f"{account_proof.to_json()})")
        state = chain.state
        held = sorted(m for m in set(markets) | set(state.markets) if (address, m) in state.positions)
        positions, needed = [], {}
        for market_id in held:
            p = tree.prove(get_position_key(address, market_id))
            if p.value is None:  # an empty position (size, cost and margin 0) has no leaf
                continue
            positions.append({"market": market_id, "key": wire.hex0x(p.key), "proof": proof_json(p)})
            needed[market_id] = None
        market_proofs = []
        for market_id in sorted(needed):
            m = tree.prove(get_market_key(market_id))
            market_proofs.append({"market": market_id, "key": wire.hex0x(m.key), "proof": proof_json(m)})
        escape = self.escape_arguments(tree, address, markets)
        elapsed_ms = (time.perf_counter() - started) * 1000
        return json_response({
            "address": wire.hex0x(address),
            "blockNumber": head,
            "blockHash": wire.hex0x(info.hash) if info is not None else wire.hex0x(state.globals.block_hash),
            "stateRoot": wire.hex0x(root),
            "account": {"key": wire.hex0x(account_proof.key), "proof": proof_json(account_proof)},
            "positions": positions,
            "markets": market_proofs,
            "escape": escape,
            "proveMs": round(elapsed_ms, 3),
        })

    async def registered_markets(self) -> list[int]:
        """The markets escape() wants an entry for, in the bridge's registration
        order: read from the bridge when the node runs L1 services, else the
        node's market table (the order devnet deploys them in)."""
        if self._markets is not None:
            return self._markets
        client = self.l1_client()
        if client is not None and hasattr(client, "markets"):
            try:
                self._markets = [m[0] for m in await asyncio.to_thread(client.markets)]
                return self._markets
            except Exception:  # the L1 is away: fall back to the table, do not cache
                pass
        return list(self.api.market_table())

    def escape_arguments(self, tree, address: bytes, markets: list[int]) -> dict:
        """escape(account, output, account_value, account_proof, positions) for the
        head's tree, built by l1_bridge.proofs.escape_args, with ``output`` left
        null: the bridge checks them against its frozen output, whose state root
        must equal this answer's stateRoot."""
        placeholder = OutputFields(tree.root, EMPTY, EMPTY, 0, EMPTY, EMPTY)
        account, _, value, proof, entries = escape_args(tree, address, placeholder, markets)
        return {
            "markets": markets,
            "args": {"account": account, "output": None, "account_value": to_json_abi(value),
                     "account_proof": to_json_abi(proof), "positions": to_json_abi(entries)},
            "note": "escape(account, output, account_value, account_proof, positions): fill `output` with "
                    "the frozen output's fields (Output struct); its state_root must equal stateRoot",
        }

    # --- withdrawals -------------------------------------------------------------------
    def l1_client(self):
        return self.l1.client

    async def l1_outputs(self) -> tuple[list[dict], int] | None:
        """(live outputs [{output_index, output_root, l2_block, fields}], last final
        index) from the bridge, or None when this node has no L1 connection."""
        client = self.l1_client()
        if client is None:
            return None
        now = time.monotonic()
        if self._outputs is not None and self._outputs[1] is client and now - self._outputs[0] < OUTPUTS_CACHE_S:
            return self._outputs[2], self._outputs[3]

        def read():
            deployment = getattr(client, "deployment", None)
            start = max(0, deployment.block_number - 1) if deployment is not None else 0
            return client.live_outputs(start), client.last_final_output()

        try:
            outputs, final = await asyncio.to_thread(read)
        except Exception as exc:
            raise ApiError("l1_unavailable", f"cannot read the bridge's outputs: {exc}", 503) from None
        self._outputs = (now, client, outputs, final)
        return outputs, final

    async def get_withdrawal_proof(self, request: Request) -> Response:
        raw = request.path_params["hash"]
        whash = parse_hash_param(raw)
        await self.api.settled()
        l1 = await self.l1_outputs()
        state = self.node.chain.state
        pos = self.withdrawals.find(state.withdrawals, whash)
        if pos is None:
            raise ApiError("not_found", f"no withdrawal with hash {raw} in the state (the hash is keccak256 of "
                                        "abi.encode(uint256 index, address account, uint256 amount, uint256 "
                                        "l2_block))")
        w = state.withdrawals[pos]
        out: dict[str, Any] = {
            "hash": wire.hex0x(whash),
            "withdrawal": {"index": w.index, "account": wire.hex0x(w.account), "amount": w.amount, "block": w.block},
            "encoded": wire.hex0x(encode_withdrawal(w)),
            "headBlock": self.node.chain.head_number,
        }
        if l1 is None:
            out.update(status="waiting_for_checkpoint", output=None, proof=None,
                       message="this node runs without an L1 connection: it cannot tell which output holds the "
                               "withdrawal (ask a node with l1_rpc_url, or `isoroll l1 claim`)")
            return json_response(out)
        outputs, final = l1
        covering = next((o for o in outputs if o["output_index"] > 0 and o["l2_block"] >= w.block), None)
        if covering is None:
            last = outputs[-1]["l2_block"] if outputs else 0
            out.update(status="waiting_for_checkpoint", output=None, proof=None,
                       message=f"no output covers L2 block {w.block} yet (the last output is at L2 block {last})")
            return json_response(out)
        i = covering["output_index"]
        prev_block = outputs[i - 1]["l2_block"]
        group = compute_checkpoint_withdrawals(state, prev_block, covering["l2_block"])
        root = compute_checkpoint_withdrawals_root(group)
        fields = covering["fields"]
        position = next(k for k, g in enumerate(group) if g == w)
        proof = prove_withdrawal([encode_withdrawal(g) for g in group], position)
        status = "final" if i <= final else "in_challenge_period"
        if root != fields.withdrawals_root:
            status = "mismatch"
        out.update(status=status, proof=proof.to_json_obj(), output={
            "index": i, "l2Block": covering["l2_block"], "previousL2Block": prev_block,
            "outputRoot": wire.hex0x(covering["output_root"]), "withdrawalsRoot": wire.hex0x(root),
            "postedWithdrawalsRoot": wire.hex0x(fields.withdrawals_root), "withdrawals": len(group),
            "final": i <= final, "fields": to_json_abi(tuple(fields))})
        if status == "mismatch":
            out["message"] = ("this node's withdrawals of the output's blocks do not give the posted withdrawals "
                              "root: the output or this node is wrong (the verifier challenges a bad output)")
        else:
            out["claimArgs"] = {
                "output_index": i, "output": to_json_abi(tuple(fields)),
                "withdrawal": [w.index, wire.hex0x(w.account), to_json_abi(w.amount), w.block],
                "leaf_index": proof.index, "siblings": to_json_abi(proof.siblings)}
        return json_response(out)


def routes(api, l1: L1Link) -> list[Route]:
    proofs = ProofsApi(api, l1)
    return [Route("/v1/proofs/account/{address}", proofs.get_account_proof),
            Route("/v1/proofs/withdrawal/{hash}", proofs.get_withdrawal_proof)]
