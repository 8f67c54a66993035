"""A web3 client of the deployed bridge and its token, for any JSON-RPC URL
(anvil, a node) or an in-process py-evm chain (web3's EthereumTesterProvider).

    c = BridgeClient.connect("http://127.0.0.1:8545", deployment="deployment.json")
    c.deposit(key, 100 * 10**6)          # approve + deposit; returns the inbox index
    c.status()                           # frozen?, outputs, inbox, both clocks

Transactions are signed locally with a private key (``key=``) or sent from an
account the node unlocks (``sender=``, anvil and eth-tester).  Every failure
is an ``L1Error`` that says which URL and what failed: a node that is down
(``L1Unavailable``), a reverted transaction with the contract's reason
(``L1Reverted``).
"""
from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from eth_account import Account
from web3 import Web3
from web3.logs import DISCARD

from l1_bridge.deploy import Deployment, load_artifact
from l1_bridge.proofs import OutputFields

MAX_UINT = 2**256 - 1


class L1Error(RuntimeError):
    """An L1 call or transaction failed; the message names the URL and the action."""


class L1Unavailable(L1Error):
    """The L1 node could not be reached."""


class L1Reverted(L1Error):
    """The bridge (or token) rejected the call; ``reason`` is the contract's message."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


def normalize_key(key: str | bytes) -> bytes:
    if isinstance(key, bytes):
        return key
    key = key.strip()
    return bytes.fromhex(key[2:] if key.startswith("0x") else key)


def address_of_key(key: str | bytes) -> str:
    return Account.from_key(normalize_key(key)).address


@dataclass(frozen=True)
class Signer:
    """Who sends a transaction: a private key, or an address the node unlocks."""
    address: str
    key: bytes | None = None

    @classmethod
    def of(cls, who: "Signer | str | bytes") -> "Signer":
        if isinstance(who, Signer):
            return who
        if isinstance(who, str) and len(who) == 42 and who.startswith("0x"):
            return cls(Web3.to_checksum_address(who))
        key = normalize_key(who)
        return cls(Account.from_key(key).address, key)


def _reason(exc: Exception) -> str:
    msg = getattr(exc, "message", None) or (exc.args[0] if exc.args else str(exc))
    if isinstance(msg, dict):
        msg = msg.get("message", str(msg))
    msg = str(msg)
    for prefix in ("execution reverted: ", "Transaction reverted: ", "revert: "):
        if prefix in msg:
            msg = msg.split(prefix, 1)[1]
    return msg


class BridgeClient:
    def __init__(self, w3: Web3, bridge: str, token: str | None = None, *, url: str = "",
                 deployment: Deployment | None = None) -> None:
        self.w3 = w3
        self.url = url or _describe_provider(w3)
        self.deployment = deployment
        self.lock = threading.RLock()
        """web3 over eth-tester is not thread-safe: services run calls in threads under this lock."""
        self.bridge = w3.eth.contract(address=Web3.to_checksum_address(bridge), abi=load_artifact("bridge")[0])
        if token is None:
            token = self._call("read the bridge's TOKEN", self.bridge.functions.TOKEN())
        self.token = w3.eth.contract(address=Web3.to_checksum_address(token), abi=load_artifact("token")[0])
        self._params: dict[str, int] | None = None

    # --- construction ---------------------------------------------------------------
    @classmethod
    def connect(cls, rpc: str | Web3, *, deployment: str | Deployment | None = None,
                bridge: str | None = None, timeout: float = 10.0) -> "BridgeClient":
        """From a JSON-RPC URL (or a Web3) and a deployment file or a bridge address."""
        if isinstance(rpc, Web3):
            w3, url = rpc, _describe_provider(rpc)
        else:
            w3, url = Web3(Web3.HTTPProvider(rpc, request_kwargs={"timeout": timeout})), rpc
        d = None
        if deployment is not None:
            d = deployment if isinstance(deployment, Deployment) else Deployment.load(deployment)
        if bridge is None and d is None:
            raise L1Error("no bridge: give a deployment file (l1_deployment_file / --deployment) "
                          "or the bridge address (l1_bridge_address / --bridge)")
        address = bridge or d.bridge
        client = cls(w3, address, d.token if d is not None and (bridge is None or bridge == d.bridge) else None,
                     url=url, deployment=d)
        code = client._guard("read the bridge's code", lambda: w3.eth.get_code(client.bridge.address))
        if not code:
            raise L1Error(f"no contract at {client.bridge.address} on {url}: wrong address, or the L1 "
                          "node was restarted without its state (redeploy, e.g. `isoroll devnet --fresh`)")
        return client

    # --- low level ----------------------------------------------------------------------
    def _guard(self, what: str, action: Callable[[], Any]) -> Any:
        import requests
        with self.lock:
            try:
                return action()
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError,
                    TimeoutError) as exc:
                raise L1Unavailable(f"L1 node at {self.url} is not reachable: cannot {what} "
                                    f"({type(exc).__name__}: {exc})") from None
            except L1Error:
                raise
            except Exception as exc:
                from web3.exceptions import ContractCustomError, ContractLogicError
                from eth_tester.exceptions import TransactionFailed
                if isinstance(exc, (ContractLogicError, ContractCustomError, TransactionFailed)):
                    reason = _reason(exc)
                    raise L1Reverted(f"{what}: rejected by the contract on {self.url}: {reason}", reason) from None
                if isinstance(exc, ValueError) and "revert" in str(exc).lower():
                    reason = _reason(exc)
                    raise L1Reverted(f"{what}: rejected by the contract on {self.url}: {reason}", reason) from None
                raise

    def _call(self, what: str, fn: Any) -> Any:
        return self._guard(what, fn.call)

    def send(self, what: str, fn: Any, who: Signer | str | bytes, *, value: int = 0, gas: int | None = None) -> Any:
        """Send a contract transaction and wait for its receipt; L1Reverted on failure."""
        signer = Signer.of(who)

        def run():
            tx: dict[str, Any] = {"from": signer.address, "value": value}
            if gas is not None:
                tx["gas"] = gas
            if signer.key is None:
                tx_hash = fn.transact(tx)
            else:
                tx["nonce"] = self.w3.eth.get_transaction_count(signer.address, "pending")
                built = fn.build_transaction(tx)
                signed = self.w3.eth.account.sign_transaction(built, signer.key)
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
            if receipt["status"] != 1:
                raise L1Reverted(f"{what}: transaction {tx_hash.hex()} reverted on {self.url}")
            return receipt
        return self._guard(what, run)

    # --- chain ---------------------------------------------------------------------------
    def block_number(self) -> int:
        return self._guard("read the block number", lambda: self.w3.eth.block_number)

    def now(self) -> int:
        return self._guard("read the latest block", lambda: self.w3.eth.get_block("latest")["timestamp"])

    def chain_id(self) -> int:
        return self._guard("read the chain id", lambda: self.w3.eth.chain_id)

    def eth_balance(self, who: str) -> int:
        return self._guard("read a balance", lambda: self.w3.eth.get_balance(Web3.to_checksum_address(who)))

    def params(self) -> dict[str, int]:
        if self._params is None:
            f = self.bridge.functions
            self._params = {name: self._call(f"read {name}", getattr(f, attr)()) for name, attr in (
                ("challenge_period", "CHALLENGE_PERIOD"), ("forced_grace", "FORCED_GRACE"),
                ("forced_fee", "FORCED_FEE"), ("proposer_bond", "PROPOSER_BOND"))}
            self._params["proposer"] = self._call("read PROPOSER", f.PROPOSER())
            self._params["challenger"] = self._call("read CHALLENGER", f.CHALLENGER())
        return self._params

    def markets(self) -> list[tuple[int, int, int]]:
        """[(id, size_scale, funding_scale)] in registration order."""
        f = self.bridge.functions
        n = self._call("read marketCount", f.marketCount())
        return [(self._call("read markets", f.market_ids(i)), self._call("read markets", f.size_scales(i)),
                 self._call("read markets", f.funding_scales(i))) for i in range(n)]

    # --- token ------------------------------------------------------------------------------
    def token_balance(self, who: str) -> int:
        return self._call("read a token balance", self.token.functions.balanceOf(Web3.to_checksum_address(who)))

    def faucet(self, who: Signer | str | bytes, amount: int, to: str | None = None) -> Any:
        f = self.token.functions
        call = f.faucet(amount) if to is None else f.faucetTo(Web3.to_checksum_address(to), amount)
        return self.send("token faucet", call, who)

    def approve(self, who: Signer | str | bytes, amount: int = MAX_UINT) -> Any:
        return self.send("approve the bridge", self.token.functions.approve(self.bridge.address, amount), who)

    # --- inbox -------------------------------------------------------------------------------
    def deposit(self, who: Signer | str | bytes, amount: int, account: str | None = None) -> int:
        """Approve if needed, deposit `amount` for `account` (default: the sender); the inbox index."""
        signer = Signer.of(who)
        allowance = self._call("read the allowance", self.token.functions.allowance(signer.address, self.bridge.address))
        if allowance < amount:
            self.approve(signer)
        r = self.send("deposit", self.bridge.functions.deposit(Web3.to_checksum_address(account or signer.address),
                                                               amount), signer)
        return self.bridge.events.Deposited().process_receipt(r, errors=DISCARD)[0]["args"]["inbox_index"]

    def force_withdraw(self, who: Signer | str | bytes, amount: int) -> int:
        r = self.send("forceWithdraw", self.bridge.functions.forceWithdraw(amount), who,
                      value=self.params()["forced_fee"])
        return self.bridge.events.ForcedWithdrawalRequested().process_receipt(r, errors=DISCARD)[0]["args"]["inbox_index"]

    def force_close(self, who: Signer | str | bytes, market_id: int) -> int:
        """forceClose(market_id): the L2 must close the sender's position in the market at the mark."""
        r = self.send("forceClose", self.bridge.functions.forceClose(market_id), who,
                      value=self.params()["forced_fee"])
        return self.bridge.events.ForcedCloseRequested().process_receipt(r, errors=DISCARD)[0]["args"]["inbox_index"]

    def inbox_count(self) -> int:
        return self._call("read the inbox count", self.bridge.functions.inbox_count())

    def inbox_hash_at(self, count: int) -> bytes:
        return self._call("read the inbox hash", self.bridge.functions.inboxHashAt(count))

    # --- outputs ------------------------------------------------------------------------------
    def deposit_bond(self, who: Signer | str | bytes, amount: int | None = None) -> Any:
        return self.send("depositBond", self.bridge.functions.depositBond(), who,
                         value=self.params()["proposer_bond"] if amount is None else amount)

    def bond(self) -> int:
        return self._call("read the bond", self.bridge.functions.bond())

    def propose(self, who: Signer | str | bytes, output_index: int, l2_block: int, fields: OutputFields,
                data: bytes, withdrawals_total: int, prior_chunks: int = 0) -> Any:
        """`withdrawals_total`: the sum of the output's withdrawal amounts (claims never exceed it);
        `data` the last chunk of its data, after `prior_chunks` chunks sent with post_data."""
        return self.send("propose", self.bridge.functions.propose(output_index, l2_block, fields.as_arg(),
                                                                  withdrawals_total, data, prior_chunks), who)

    def post_data(self, who: Signer | str | bytes, output_index: int, chunk_index: int, chunk: bytes) -> Any:
        """postData: chunk `chunk_index` of the data of the output about to be proposed."""
        return self.send(f"postData chunk {chunk_index}", self.bridge.functions.postData(
            output_index, chunk_index, chunk), who)

    def output_chunks(self, event: dict) -> list[bytes]:
        """The data of an output as posted, chunk by chunk: the postData chunks of
        its index sent before its propose transaction (the last run from chunk 0
        that chains to its data_hash), then the propose calldata."""
        from prover.records import compute_data_hash
        _, _, fields, last = self.propose_data(event["tx_hash"])
        index, block = event["output_index"], event["block_number"]
        posted = self._guard("read DataPosted events", lambda: self.bridge.events.DataPosted().get_logs(
            from_block=0, to_block=block, argument_filters={"output_index": index}))
        runs: list[list[Any]] = []
        for ev in sorted(posted, key=lambda e: (e["blockNumber"], e["logIndex"])):
            if ev["args"]["chunk_index"] == 0:
                runs.append([])
            if runs:
                runs[-1].append(ev)
        for run in reversed([[]] + runs):
            chunks = [self._chunk_of(ev["transactionHash"]) for ev in run] + [last]
            if compute_data_hash(chunks) == fields.data_hash:
                return chunks
        raise L1Error(f"output {index}: its posted chunks do not chain to its data_hash")

    def _chunk_of(self, tx_hash: bytes) -> bytes:
        tx = self._guard("read a postData transaction", lambda: self.w3.eth.get_transaction(tx_hash))
        return bytes(self.bridge.decode_function_input(tx["input"])[1]["chunk"])

    def eth_owed(self, who: str) -> int:
        """ETH the bridge owes `who` (a slashed bond won in a game), taken with withdrawEth."""
        return self._call("read eth_owed", self.bridge.functions.eth_owed(Web3.to_checksum_address(who)))

    def delete_outputs(self, who: Signer | str | bytes, from_index: int) -> Any:
        return self.send("deleteOutputs", self.bridge.functions.deleteOutputs(from_index), who)

    def output_count(self) -> int:
        return self._call("read the output count", self.bridge.functions.output_count())

    def get_output(self, index: int) -> dict:
        keys = ("output_root", "proposed_at", "final_at", "challenge_time_left", "is_final", "inbox_count",
                "l2_block", "withdrawals_total")
        return dict(zip(keys, self._call(f"read output {index}", self.bridge.functions.getOutput(index))))

    def last_final_output(self) -> int:
        return self._call("read the last final output", self.bridge.functions.lastFinalOutput())

    def output_events(self, from_block: int = 0, to_block: int | str = "latest") -> list[dict]:
        """OutputProposed events (deleted outputs included: compare roots with getOutput)."""
        evs = self._guard("read OutputProposed events", lambda: self.bridge.events.OutputProposed().get_logs(
            from_block=from_block, to_block=to_block))
        out = []
        for ev in evs:
            a = dict(ev["args"])
            a["tx_hash"] = ev["transactionHash"]
            a["block_number"] = ev["blockNumber"]
            a["fields"] = OutputFields(a["state_root"], a["withdrawals_root"], a["last_block_hash"],
                                       a["inbox_count"], a["inbox_hash"], a["data_hash"])
            out.append(a)
        return out

    def live_outputs(self, from_block: int = 0) -> list[dict]:
        """The current outputs 0..output_count-1, each the OutputProposed event that made it
        (the latest event with its index and its current root)."""
        count = self.output_count()
        roots = [self.get_output(i)["output_root"] for i in range(count)]
        chosen: dict[int, dict] = {}
        for ev in self.output_events(from_block):
            i = ev["output_index"]
            if i < count and ev["output_root"] == roots[i]:
                chosen[i] = ev
        missing = [i for i in range(count) if i not in chosen]
        if missing:
            raise L1Error(f"no OutputProposed event found on {self.url} for outputs {missing}")
        return [chosen[i] for i in range(count)]

    def propose_data(self, tx_hash: bytes) -> tuple[int, int, OutputFields, bytes]:
        """(output_index, l2_block, fields, batch data) from a propose transaction's calldata."""
        tx = self._guard("read a propose transaction", lambda: self.w3.eth.get_transaction(tx_hash))
        fn, args = self.bridge.decode_function_input(tx["input"])
        if fn.fn_name != "propose":
            raise L1Error(f"transaction {tx_hash.hex()} is not a propose call")
        o = args["output"]
        fields = OutputFields(*o) if isinstance(o, (tuple, list)) else OutputFields(
            o["state_root"], o["withdrawals_root"], o["last_block_hash"], o["inbox_count"], o["inbox_hash"],
            o["data_hash"])
        return args["output_index"], args["l2_block"], fields, bytes(args["data"])

    # --- withdrawals, freeze, escape ------------------------------------------------------------
    def claim(self, who: Signer | str | bytes, args: Sequence) -> Any:
        return self.send("claimWithdrawal", self.bridge.functions.claimWithdrawal(*args), who)

    def is_claimed(self, withdrawal_hash: bytes) -> bool:
        return self._call("read claimed", self.bridge.functions.claimed(withdrawal_hash))

    def freeze(self, who: Signer | str | bytes, request_index: int) -> Any:
        return self.send("freeze", self.bridge.functions.freeze(request_index), who)

    def can_freeze(self, request_index: int) -> bool:
        return self._call("read canFreeze", self.bridge.functions.canFreeze(request_index))

    def register_escape(self, who: Signer | str | bytes, args: Sequence) -> int:
        """registerEscape(account, output, proofs...) within the window; the amount owed."""
        r = self.send("registerEscape", self.bridge.functions.registerEscape(*args), who)
        return self.bridge.events.EscapeRegistered().process_receipt(r, errors=DISCARD)[0]["args"]["owed"]

    def claim_escape(self, who: Signer | str | bytes, account: str) -> int:
        """claimEscape(account) after the window; the amount paid."""
        r = self.send("claimEscape", self.bridge.functions.claimEscape(Web3.to_checksum_address(account)), who)
        return self.bridge.events.Escaped().process_receipt(r, errors=DISCARD)[0]["args"]["paid"]

    def escape_info(self, account: str) -> dict:
        keys = ("registered", "owed", "paid", "due")
        return dict(zip(keys, self._call("read escapeInfo", self.bridge.functions.escapeInfo(
            Web3.to_checksum_address(account)))))

    def has_escaped(self, account: str) -> bool:
        """Paid (claimEscape done)."""
        return self._call("read escaped", self.bridge.functions.escaped(Web3.to_checksum_address(account)))

    def reserves(self) -> dict:
        keys = ("unclaimed_withdrawals", "refundable_deposits", "escape_unpaid")
        return dict(zip(keys, self._call("read reserves", self.bridge.functions.reserves())))

    def refund(self, who: Signer | str | bytes, inbox_index: int, account: str, amount: int) -> Any:
        return self.send("refundDeposit", self.bridge.functions.refundDeposit(
            inbox_index, Web3.to_checksum_address(account), amount), who)

    def is_refunded(self, inbox_index: int) -> bool:
        return self._call("read refunded", self.bridge.functions.refunded(inbox_index))

    # --- status ----------------------------------------------------------------------------------
    def status(self) -> dict:
        keys = ("frozen", "frozen_at", "output_count", "last_final_output", "inbox_count", "inbox_hash",
                "open_forced_requests", "now", "escape_deadline", "escape_pool", "total_registered")
        s = dict(zip(keys, self._call("read status", self.bridge.functions.status())))
        if s["frozen"]:
            s["frozen_output"] = self._call("read frozen_output", self.bridge.functions.frozen_output())
            s["frozen_inbox_count"] = self._call("read frozen_inbox_count", self.bridge.functions.frozen_inbox_count())
        return s

    def get_forced_request(self, inbox_index: int) -> dict:
        keys = ("account", "requested_at", "deadline", "grace_left", "covered_by_live_output", "served", "kind")
        return dict(zip(keys, self._call(f"read forced request {inbox_index}",
                                         self.bridge.functions.getForcedRequest(inbox_index))))

    def inbox_events(self, from_block: int = 0, to_block: int | str = "latest") -> list[dict]:
        """Deposited, ForcedWithdrawalRequested and ForcedCloseRequested events, in inbox
        order, each {kind ("deposit", "forced", "close"), inbox_index, account, amount,
        inbox_hash, block_number, block_hash, ...}; a close has its market id as
        `market_id` and as `amount` (the entry's amount field)."""
        def read():
            evs = []
            for kind, event in (("deposit", self.bridge.events.Deposited()),
                                ("forced", self.bridge.events.ForcedWithdrawalRequested()),
                                ("close", self.bridge.events.ForcedCloseRequested())):
                for ev in event.get_logs(from_block=from_block, to_block=to_block):
                    a = dict(ev["args"])
                    if kind == "close":
                        a["amount"] = a["market_id"]
                    a.update(kind=kind, block_number=ev["blockNumber"], block_hash=bytes(ev["blockHash"]),
                             tx_hash=bytes(ev["transactionHash"]))
                    evs.append(a)
            return sorted(evs, key=lambda e: e["inbox_index"])
        return self._guard("read the inbox events", read)


def _describe_provider(w3: Web3) -> str:
    p = w3.provider
    return getattr(p, "endpoint_uri", None) or type(p).__name__


__all__ = ["BridgeClient", "L1Error", "L1Unavailable", "L1Reverted", "Signer", "address_of_key", "normalize_key"]


async def poll_forever(poller: Any, name: str, logger: logging.Logger) -> None:
    """Call ``poller.poll_once()`` every ``poller.poll_interval_s`` until cancelled.
    An L1 failure is logged and kept in ``poller.last_error`` (status shows it);
    nothing else stops the loop either, so the node's task never dies."""
    while True:
        try:
            await poller.poll_once()
            poller.last_error = None
        except asyncio.CancelledError:
            raise
        except L1Error as exc:
            poller.last_error = str(exc)
            logger.warning("%s: %s", name, exc)
        except Exception as exc:
            poller.last_error = repr(exc)
            logger.exception("%s failed; retrying", name)
        await asyncio.sleep(poller.poll_interval_s)
