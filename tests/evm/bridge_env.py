"""Helpers of the bridge tests on py-evm: a chain with the token and the bridge
deployed once per session (snapshot/revert per test), time travel, and an L2
model built from the real Python state, commitment and trees, so the Python
side and the Vyper side agree by construction.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import TransactionFailed
from web3 import EthereumTesterProvider, Web3
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from l1_bridge import inbox
from l1_bridge.compile import compile_contract
from l1_bridge.deploy import Deployment, MarketConfig, PRESETS, BridgePreset, deploy, load_artifact
from l1_bridge.proofs import MarketScale, OutputFields, claim_args, encode_withdrawal, escape_args
from prover.hashing import EMPTY, keccak
from prover.records import compute_data_hash
from prover.output import compute_withdrawals_root, withdrawal_proofs
from prover.tree import SparseMerkleTree
from sequencer.core.commitment import compute_dirty_leaves
from sequencer.core.records import Deposit, ForcedClose, ForcedWithdrawal
from sequencer.core.state import Market, Position, State, Withdrawal
from sequencer.core.presets import DEVNET
from sequencer.core.signing import get_recover
from sequencer.core.rules.accounts import add_withdrawal, process_deposit, process_forced_withdrawal
from sequencer.core.rules.table import get_rules
from sequencer.core.rules.margin import compute_long_change
from sequencer.core.rules.positions import add_open_interest
from sequencer.core.transition import Context

KIND_FORCED_CLOSE = 3

L2_CONTEXT = Context(preset=DEVNET, domain_separator=b"\x00" * 32, recover=get_recover("coincurve"))
"""Inbox records carry no signatures: the domain is never used by these rules."""

TEST_PRESET = BridgePreset("test", challenge_period=3600, forced_grace=600, forced_fee=10**15,
                           escape_window=7 * 24 * 3600, proposer_bond=10**18)
MARKETS = [MarketConfig(1, 10**8, 10**14), MarketConfig(2, 10**6, 10**12)]  # BTC 8, ETH 6 base decimals
MARKET_SCALES = [MarketScale(m.id, m.size_scale, m.funding_scale) for m in MARKETS]
UNIT = 10**6  # one collateral unit (6 decimals)


class TxReverted(Exception):
    pass


Reverted = (TxReverted, TransactionFailed, ContractLogicError)
"""What a rejected transaction or call raises (for pytest.raises)."""


def make_chain() -> tuple[Web3, EthereumTester]:
    backend = PyEVMBackend(genesis_parameters=PyEVMBackend.generate_genesis_params(
        overrides={"gas_limit": 60_000_000}))
    tester = EthereumTester(backend)
    w3 = Web3(EthereumTesterProvider(tester))
    return w3, tester


def travel_to(tester: EthereumTester, timestamp: int) -> None:
    """Mine a block at `timestamp` (eth-tester's time_travel(t) mines at t - 1),
    or just a block when the pending one is already past it."""
    if timestamp + 1 > tester.get_block_by_number("pending")["timestamp"]:
        tester.time_travel(timestamp + 1)
    else:
        tester.mine_blocks(1)


@dataclass
class Env:
    w3: Web3
    tester: EthereumTester
    d: Deployment
    token: Any
    bridge: Any
    accounts: list[str]
    proposer: str
    challenger: str
    users: list[str]

    # --- chain -------------------------------------------------------------
    def now(self) -> int:
        return self.w3.eth.get_block("latest")["timestamp"]

    def travel(self, seconds: int) -> None:
        """Move the clock forward: the latest block is `seconds` later (calls see
        that time; the next transaction runs one second after it)."""
        self.travel_to(self.now() + seconds)

    def travel_to(self, timestamp: int) -> None:
        travel_to(self.tester, timestamp)

    def send(self, call: Any, sender: str, value: int = 0) -> Any:
        try:
            tx_hash = call.transact({"from": sender, "value": value})
        except TransactionFailed as exc:
            raise TxReverted(str(exc)) from None
        except ContractLogicError as exc:
            raise TxReverted(str(exc)) from None
        receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            raise TxReverted("status 0")
        return receipt

    def balance(self, who: str) -> int:
        return self.token.functions.balanceOf(who).call()

    def fund(self, who: str, amount: int) -> None:
        self.send(self.token.functions.faucet(amount), who)
        self.send(self.token.functions.approve(self.d.bridge, 2**256 - 1), who)

    def deposit(self, who: str, amount: int, account: str | None = None) -> int:
        r = self.send(self.bridge.functions.deposit(account or who, amount), who)
        return self.bridge.events.Deposited().process_receipt(r, errors=DISCARD)[0]["args"]["inbox_index"]

    def force_withdraw(self, who: str, amount: int) -> int:
        r = self.send(self.bridge.functions.forceWithdraw(amount), who, value=self.d.parameters["forced_fee"])
        return self.bridge.events.ForcedWithdrawalRequested().process_receipt(r, errors=DISCARD)[0]["args"]["inbox_index"]

    def force_close(self, who: str, market_id: int) -> int:
        r = self.send(self.bridge.functions.forceClose(market_id), who, value=self.d.parameters["forced_fee"])
        return self.bridge.events.ForcedCloseRequested().process_receipt(r, errors=DISCARD)[0]["args"]["inbox_index"]

    def propose(self, out: "Checkpoint", *, output_index: int | None = None, sender: str | None = None,
                fields: OutputFields | None = None, data: bytes | None = None,
                withdrawals_total: int | None = None) -> Any:
        idx = self.bridge.functions.output_count().call() if output_index is None else output_index
        f = fields or out.fields
        total = out.withdrawals_total if withdrawals_total is None else withdrawals_total
        return self.send(self.bridge.functions.propose(idx, out.l2_block, f.as_arg(), total,
                                                       out.data if data is None else data),
                         sender or self.proposer)

    def new_accounts(self, n: int, eth: int = 10**18, tokens: int = 10**6 * UNIT) -> list[str]:
        """`n` more funded accounts (the chain starts with ten)."""
        out = []
        for _ in range(n):
            self._key_seed = getattr(self, "_key_seed", 0) + 1
            key = (0xB0B << 200) + self._key_seed
            address = self.tester.add_account("0x" + key.to_bytes(32, "big").hex())
            address = self.w3.to_checksum_address(address)
            self.w3.eth.send_transaction({"from": self.accounts[0], "to": address, "value": eth})
            self.fund(address, tokens)
            out.append(address)
        return out

    def status(self) -> dict:
        keys = ["frozen", "frozen_at", "output_count", "last_final_output", "inbox_count", "inbox_hash",
                "open_forced_requests", "now", "escape_deadline", "escape_pool", "total_registered"]
        return dict(zip(keys, self.bridge.functions.status().call()))

    def reserves(self) -> dict:
        keys = ["unclaimed_withdrawals", "refundable_deposits", "escape_unpaid"]
        return dict(zip(keys, self.bridge.functions.reserves().call()))


TEST_CONTRACTS = Path(__file__).resolve().parent / "contracts"


def deploy_test_contract(w3: Web3, name: str, *args: Any) -> Any:
    """Deploy tests/evm/contracts/<name>.vy from the chain's first account."""
    abi, bytecode = compile_contract(name, contracts_dir=TEST_CONTRACTS)
    tx = w3.eth.contract(abi=abi, bytecode=bytecode).constructor(*args).transact({"from": w3.eth.accounts[0]})
    return w3.eth.contract(address=w3.eth.wait_for_transaction_receipt(tx)["contractAddress"], abi=abi)


def deploy_env(preset: BridgePreset = TEST_PRESET, token_contract: str | None = None) -> Env:
    """A fresh chain with the bridge, the devnet token (or tests/evm/contracts/<token_contract>.vy),
    the proposer bonded and every user funded and approved."""
    w3, tester = make_chain()
    accounts = list(w3.eth.accounts)
    token_address = None
    if token_contract is not None:
        token_address = deploy_test_contract(w3, token_contract, "test token", "TT").address
    d = deploy(w3, preset, proposer=accounts[0], challenger=accounts[1], deployer=accounts[0], markets=MARKETS,
               token=token_address)
    token = w3.eth.contract(address=d.token, abi=load_artifact("token")[0])
    bridge = w3.eth.contract(address=d.bridge, abi=load_artifact("bridge")[0])
    env = Env(w3, tester, d, token, bridge, accounts, accounts[0], accounts[1], accounts[2:])
    env.send(bridge.functions.depositBond(), env.proposer, value=preset.proposer_bond)
    for u in env.users:
        env.fund(u, 10**6 * UNIT)
    return env


# --- the L2 side, built from the real state code ----------------------------

def addr(hexaddr: str) -> bytes:
    return bytes.fromhex(hexaddr[2:])


@dataclass
class Checkpoint:
    fields: OutputFields
    l2_block: int
    data: bytes
    withdrawals: list[Withdrawal]
    tree: SparseMerkleTree
    state_tables: dict

    @property
    def root(self) -> bytes:
        return self.fields.root()

    @property
    def withdrawals_total(self) -> int:
        return sum(w.amount for w in self.withdrawals)


@dataclass
class L2:
    """A stand-in for the L2 node: applies inbox records and direct state
    edits with the real transition functions and commits with the real tree."""
    state: State = field(default_factory=State)
    tree: SparseMerkleTree = field(default_factory=SparseMerkleTree)
    inbox_hash: bytes = inbox.EMPTY_INBOX_HASH
    l2_block: int = 0
    withdrawals_from: int = 0

    def apply_inbox(self, record: "Deposit | ForcedWithdrawal | ForcedCloseEntry") -> None:
        if isinstance(record, ForcedCloseEntry):
            self.apply_forced_close(record.inbox_index, record.account, record.market)
            return
        if isinstance(record, Deposit):
            process_deposit(self.state, record, 0, L2_CONTEXT)
        else:
            process_forced_withdrawal(self.state, record, 0, L2_CONTEXT)
        self.state.commit(0)
        self.inbox_hash = inbox.apply_inbox_record(self.inbox_hash, record)

    def sync_inbox(self, env: Env, upto: int | None = None,
                   records: list[Deposit | ForcedWithdrawal] | None = None) -> None:
        """Apply the L1 inbox entries (from the bridge's events, or `records`
        when the caller tracks them) up to count `upto`."""
        upto = env.bridge.functions.inbox_count().call() if upto is None else upto
        if records is None:
            records = read_inbox(env)
        for r in records[self.state.globals.inbox_count:upto]:
            self.apply_inbox(r)

    def withdraw(self, who: bytes, amount: int) -> None:
        a = self.state.accounts[who]
        assert a.collateral >= amount
        self.state.set_account(who, msgspec.structs.replace(a, collateral=a.collateral - amount))
        add_withdrawal(self.state, who, amount)
        self.state.commit(0)

    def apply_forced_close(self, inbox_index: int, who: bytes, market: int) -> None:
        """The L2 rule of a forced close itself, the current schema version's
        (rules v3, sequencer.core.rules.liquidation.process_forced_close_v3):
        the insurance fund takes the position over at the mark (paying any bad
        debt), its margin becomes free collateral, and whatever cannot be
        closed (the fund unable to pay) stays as it was; the entry extends
        the inbox chain."""
        assert inbox_index == self.state.globals.inbox_count
        m = self.state.markets.get(market)
        rule = get_rules(L2_CONTEXT.schema_version)[ForcedClose]
        rule(self.state, ForcedClose(inbox_index, who, market), 0 if m is None else m.oracle_time_ms, L2_CONTEXT)
        entry = bytes([KIND_FORCED_CLOSE]) + inbox_index.to_bytes(8, "big") + who + market.to_bytes(32, "big")
        self.inbox_hash = keccak(self.inbox_hash + entry)
        assert self.state.globals.inbox_hash == self.inbox_hash, "the rule and the bridge chain the entry alike"
        self.state.commit(0)

    def set_market(self, market: Market) -> None:
        self.state.set_market(market)
        self.state.commit(0)

    def open_position(self, who: bytes, market: int, position: Position) -> None:
        """Move `position.margin` from free collateral into a new position (no
        matching here); the market's open interest counts a long's size."""
        a = self.state.accounts[who]
        assert a.collateral >= position.margin and (who, market) not in self.state.positions
        self.state.set_account(who, msgspec.structs.replace(a, collateral=a.collateral - position.margin))
        self.state.set_position(who, market, position)
        add_open_interest(self.state, market, compute_long_change(0, position.size))
        self.state.commit(0)

    def checkpoint(self, data: bytes | None = None) -> Checkpoint:
        self.l2_block += 1
        self.tree.update(compute_dirty_leaves(self.state))
        ws = list(self.state.withdrawals[self.withdrawals_from:])
        self.withdrawals_from = len(self.state.withdrawals)
        wroot = compute_withdrawals_root([encode_withdrawal(w) for w in ws])
        data = data if data is not None else b"batch %d" % self.l2_block
        fields = OutputFields(self.tree.root, wroot, keccak(b"block %d" % self.l2_block),
                              self.state.globals.inbox_count, self.inbox_hash, compute_data_hash([data]))
        return Checkpoint(fields, self.l2_block, data, ws, self.tree.copy(), self.state.to_tables())


@dataclass(frozen=True)
class ForcedCloseEntry:
    """A forceClose inbox entry (kind 3, the market id in the amount field)."""
    inbox_index: int
    account: bytes
    market: int


def read_inbox(env: Env) -> list[Deposit | ForcedWithdrawal | ForcedCloseEntry]:
    """The inbox in order, from the bridge's events (what the L1 watcher does)."""
    out: dict[int, Deposit | ForcedWithdrawal | ForcedCloseEntry] = {}
    for ev in env.bridge.events.ForcedCloseRequested().get_logs(from_block=0):
        a = ev["args"]
        out[a["inbox_index"]] = ForcedCloseEntry(a["inbox_index"], addr(a["account"]), a["market_id"])
    for ev in env.bridge.events.Deposited().get_logs(from_block=0):
        a = ev["args"]
        out[a["inbox_index"]] = Deposit(a["inbox_index"], addr(a["account"]), a["amount"])
    for ev in env.bridge.events.ForcedWithdrawalRequested().get_logs(from_block=0):
        a = ev["args"]
        out[a["inbox_index"]] = ForcedWithdrawal(a["inbox_index"], addr(a["account"]), a["amount"])
    return [out[i] for i in range(len(out))]


GENESIS_FIELDS = OutputFields(EMPTY, EMPTY, EMPTY, 0, EMPTY, EMPTY)
"""Output 0 of a bridge deployed with the empty genesis state."""


def inconsistency_args(output_index: int, cp: Checkpoint, prev: OutputFields = GENESIS_FIELDS) -> tuple:
    """dispute.proveInconsistent's arguments against output `output_index`
    (checkpoint `cp`, after an output with fields `prev`): the globals leaf of
    its own state tree and its proof."""
    from prover.keys import GLOBAL_KEY
    p = cp.tree.prove(GLOBAL_KEY)
    proof = (p.bitmap, list(p.siblings), p.other_key or b"\x00" * 32, p.other_value_hash or b"\x00" * 32)
    return output_index, cp.fields.as_arg(), prev.as_arg(), cp.tree.get(GLOBAL_KEY), proof


def claim(env: Env, cp: Checkpoint, output_index: int, w: Withdrawal, sender: str | None = None) -> Any:
    _, proofs = withdrawal_proofs([encode_withdrawal(x) for x in cp.withdrawals])
    proof = proofs[cp.withdrawals.index(w)]
    args = claim_args(output_index, cp.fields, w, proof)
    return env.send(env.bridge.functions.claimWithdrawal(*args), sender or env.users[-1])


def register_escape(env: Env, cp: Checkpoint, who: str, sender: str | None = None) -> Any:
    args = escape_args(cp.tree, addr(who), cp.fields, MARKET_SCALES)
    return env.send(env.bridge.functions.registerEscape(*args), sender or who)


def claim_escape(env: Env, who: str, sender: str | None = None) -> int:
    """claimEscape(who); the amount paid (from the Escaped event)."""
    r = env.send(env.bridge.functions.claimEscape(who), sender or who)
    return env.bridge.events.Escaped().process_receipt(r, errors=DISCARD)[0]["args"]["paid"]


def end_escape_window(env: Env) -> None:
    env.travel_to(env.bridge.functions.escape_deadline().call())


def escape_all(env: Env, cp: Checkpoint, accounts: list[str], sender: str | None = None) -> dict[str, int]:
    """Every account in `accounts` registers (in that order), the window ends,
    every account claims (in that order); what each was paid."""
    for who in accounts:
        register_escape(env, cp, who, sender)
    end_escape_window(env)
    return {who: claim_escape(env, who, sender) for who in accounts}


def fields_for(cp: Checkpoint, **changes: Any) -> OutputFields:
    return cp.fields._replace(**changes)


__all__ = ["Env", "L2", "Checkpoint", "Reverted", "deploy_env", "claim", "register_escape", "claim_escape",
           "end_escape_window", "escape_all", "addr", "UNIT",
           "MARKETS", "MARKET_SCALES", "TEST_PRESET", "EMPTY", "PRESETS", "fields_for", "read_inbox", "make_chain",
           "ForcedCloseEntry", "deploy_test_contract"]


# --- pytest fixtures (import them into a test module) ---------------------------

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def bridge_session() -> Env:
    return deploy_env()


@pytest.fixture
def env(bridge_session: Env) -> Env:
    """The session's chain, rolled back after each test."""
    snap = bridge_session.tester.take_snapshot()
    yield bridge_session
    bridge_session.tester.revert_to_snapshot(snap)
