"""A backstop vault shareholder's escape from L1 data alone, on py-evm: real
L2 blocks (deposits from the bridge's inbox, signed VaultDeposits applied by
the real rules) are posted through the bridge as batch data (postData chunks,
then propose), a forced withdrawal left unserved freezes the bridge, and
``isoroll l1 escape`` (cmd_escape over the py-evm chain) or ``L1Replay``
rebuilds the state from that calldata alone and registers the holder's own
escape, the vault's own escape and the holder's part of it
(registerVaultEscape), each once, then pays it after the window."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import msgspec
import pytest
from eth_tester import EthereumTester, PyEVMBackend
from eth_utils import to_checksum_address
from web3 import EthereumTesterProvider, Web3

from bridge_env import travel_to
from game_env import ANVIL_KEY, BRIDGE_ADDRESS, chunks_of
from l1_bridge import cli
from l1_bridge.client import BridgeClient, L1Error, L1Reverted
from l1_bridge.deploy import BridgePreset, deploy
from l1_bridge.dispute import LocalTrace
from l1_bridge.exit import L1Replay
from l1_bridge.proofs import vault_escape_args
from prover import fraud_vectors as fv
from prover.records import compute_block_items, compute_data_hash
from prover.trace import TraceRunner
from sequencer.core import eip712
from sequencer.core.encoding import encode_block, make_block
from sequencer.core.records import Deposit, VaultDeposit
from sequencer.core.rules.vault import VAULT_ADDRESS
from sequencer.core.signing import sign_digest
from sequencer.executor.context import make_context
from sequencer.executor.genesis import build_genesis
from sequencer.executor.output import OutputFields

pytestmark = pytest.mark.evm

USDC = 10**6
PRESET = BridgePreset("vault-escape-test", challenge_period=3600, forced_grace=7200, forced_fee=10**15,
                      escape_window=10**5, proposer_bond=10**18, game_clock=600, game_extension=60,
                      challenge_bond=10**17, move_bond=10**15)
RULES = make_context("devnet", BRIDGE_ADDRESS)
"""The rules L1Replay applies (isoroll l1 escape --preset devnet) for the bridge deployed by ANVIL_KEY."""
KA, KB, KC, KPAY = fv.KEYS
A, B, C, _ = fv.ADDRESSES
VAULT = to_checksum_address(VAULT_ADDRESS)


def sign(record, key: bytes):
    digest = eip712.compute_digest(RULES.domain_separator, eip712.get_primary_type(record), record)
    return msgspec.structs.replace(record, signature=sign_digest(digest, key))


@dataclass
class Frozen:
    w3: Web3
    tester: EthereumTester
    client: BridgeClient
    trace: LocalTrace

    def owed(self, who: bytes) -> int:
        return self.client.escape_info("0x" + who.hex())["owed"]

    def token_balance(self, who: bytes) -> int:
        return self.client.token.functions.balanceOf(to_checksum_address(who)).call()

    def end_window(self) -> None:
        travel_to(self.tester, self.client.status()["escape_deadline"] + 1)


def make_frozen() -> Frozen:
    """A, B and C deposit 300, 100 and 50 USDC on L1; L2 block 1 takes the
    deposits, and A and B put 30 and 10 USDC into the backstop vault (signed
    VaultDeposits, the real rules); the output is posted as batch data and is
    final; C's forced withdrawal is never served, and the bridge is frozen."""
    backend = PyEVMBackend(genesis_parameters=PyEVMBackend.generate_genesis_params(overrides={"gas_limit": 60_000_000}))
    tester = EthereumTester(backend)
    w3 = Web3(EthereumTesterProvider(tester))
    funder, proposer, guardian = w3.eth.accounts[:3]
    deployer = tester.add_account(ANVIL_KEY)
    for key in fv.KEYS:
        tester.add_account("0x" + key.hex())
    for who in [deployer] + [to_checksum_address(a) for a in fv.ADDRESSES]:
        w3.eth.send_transaction({"from": funder, "to": who, "value": 10 * 10**18})
    genesis = TraceRunner(build_genesis([]), RULES)
    d = deploy(w3, PRESET, proposer=proposer, challenger=guardian, deployer=deployer,
               genesis_state_root=genesis.state_root)
    assert d.bridge == BRIDGE_ADDRESS, d.bridge
    client = BridgeClient.connect(w3, deployment=d)
    client.deposit_bond(proposer, 2 * PRESET.proposer_bond)
    client.faucet(funder, 1_000 * USDC)
    for who, amount in ((A, 300), (B, 100), (C, 50)):
        client.deposit(funder, amount * USDC, to_checksum_address(who))
    now_ms = w3.eth.get_block("latest")["timestamp"] * 1000
    exp = now_ms + 3_600_000
    records = [Deposit(0, A, 300 * USDC), Deposit(1, B, 100 * USDC), Deposit(2, C, 50 * USDC),
               sign(VaultDeposit(A, 30 * USDC, 0, 1, exp, b""), KA),
               sign(VaultDeposit(B, 10 * USDC, 0, 1, exp, b""), KB)]
    message = encode_block(make_block(1, genesis.state.globals.block_hash, now_ms, records))
    items = compute_block_items(message)
    trace = LocalTrace(genesis, items)
    state = trace.end.state
    assert state.vault_shares[A].shares and state.vault_shares[B].shares   # the rules took both deposits
    chunks = chunks_of(items)
    g = state.globals
    fields = OutputFields(trace.end.state_root, trace.end.ctx.withdrawals.root(), g.block_hash, g.inbox_count,
                          g.inbox_hash, compute_data_hash(chunks))
    for i, chunk in enumerate(chunks[:-1]):
        client.post_data(proposer, 1, i, chunk)
    client.propose(proposer, 1, g.block_number, fields, chunks[-1], 0, len(chunks) - 1)
    travel_to(tester, w3.eth.get_block("latest")["timestamp"] + PRESET.challenge_period + 1)
    request = client.force_withdraw(KC, USDC)
    travel_to(tester, w3.eth.get_block("latest")["timestamp"] + PRESET.forced_grace + 1)
    client.freeze(KPAY, request)
    assert client.status()["frozen"] and client.status()["frozen_output"] == 1
    return Frozen(w3, tester, client, trace)


@pytest.fixture
def frozen(monkeypatch) -> Frozen:
    f = make_frozen()
    monkeypatch.setattr(cli, "_client", lambda args: f.client)   # the CLI over this py-evm chain
    return f


def escape_cli(capsys, account: bytes | None = None, *, all_: bool = False, wait: bool = False) -> tuple[int, str, str]:
    args = argparse.Namespace(rpc=None, deployment=None, bridge=None, preset="devnet", genesis_file=None,
                              key="0x" + KPAY.hex(), key_file=None, all=all_, wait=wait,
                              account=None if account is None else "0x" + account.hex())
    code = cli._run(cli.cmd_escape, args)
    out, err = capsys.readouterr()
    return code, out, err


def expected_parts(f: Frozen) -> tuple[int, dict[bytes, int]]:
    """The vault's escape (its collateral: it holds no position) and each
    holder's part, from the posted state: floor(vault * shares / total)."""
    state = f.trace.end.state
    vault = state.accounts[VAULT_ADDRESS].collateral
    total = state.vault_shares[VAULT_ADDRESS].shares
    return vault, {h: vault * state.vault_shares[h].shares // total for h in (A, B)}


def test_escape_registers_the_holders_vault_part_once_and_pays_it(frozen: Frozen, capsys) -> None:
    f = frozen
    vault, parts = expected_parts(f)
    assert vault == 40 * USDC and abs(parts[A] - 30 * USDC) <= 1 and abs(parts[B] - 10 * USDC) <= 1
    assert not f.client.escape_info(VAULT)["registered"] and f.owed(A) == 0

    code, out, err = escape_cli(capsys, A)
    assert code == 0, err
    assert f"registered 0x{A.hex()}: owed 270" in out, out
    assert f"registered the backstop vault 0x{VAULT_ADDRESS.hex()}: owed 40" in out, out
    assert f"registered 0x{A.hex()}'s part of the backstop vault: +{cli._fmt(parts[A])}" in out, out
    assert f.owed(A) == 270 * USDC + parts[A] and f.owed(VAULT_ADDRESS) == vault

    code, out, err = escape_cli(capsys, A)              # idempotent: says what is registered, changes nothing
    assert code == 1 and "Traceback" not in err
    assert f"0x{A.hex()} is registered already" in out and "part of the backstop vault is registered already" in out
    assert "nothing to do" in err
    assert f.owed(A) == 270 * USDC + parts[A]

    replay = L1Replay(f.client)                         # B through the exit kit: the vault is registered already
    assert replay.vault_escape_amount(B) == parts[B]
    assert replay.register_vault_escape(KPAY, B) == parts[B]
    assert f.owed(B) == 90 * USDC + parts[B]
    with pytest.raises(L1Error, match="registered already"):
        replay.register_vault_escape(KPAY, B)

    code, out, err = escape_cli(capsys, C)              # no shares: the plain escape
    assert code == 0 and "backstop vault" not in out and f.owed(C) == 50 * USDC

    f.end_window()
    before = f.token_balance(A)
    code, out, err = escape_cli(capsys, A)
    assert code == 0, err
    assert f.token_balance(A) - before == 270 * USDC + parts[A]
    assert f"escaped 0x{A.hex()}: paid {cli._fmt(270 * USDC + parts[A])}" in out


def test_attacker_cannot_double_count_jump_the_vault_or_borrow_a_leaf(frozen: Frozen) -> None:
    f = frozen
    replay = L1Replay(f.client)
    replay.replay_to_frozen()
    tree, fields = replay.chain.tree, replay.frozen_fields()
    bridge = f.client.bridge.functions
    replay.register_escape(KPAY, B)
    with pytest.raises(L1Reverted):                     # before the vault's own escape
        f.client.send("registerVaultEscape", bridge.registerVaultEscape(*vault_escape_args(tree, B, fields)), KB)
    assert f.owed(B) == 90 * USDC
    replay.register_escape(KPAY, VAULT_ADDRESS)
    replay.register_escape(KPAY, C)
    a_args = vault_escape_args(tree, A, fields)
    with pytest.raises(L1Reverted):                     # A's share leaf for C (no shares)
        f.client.send("registerVaultEscape", bridge.registerVaultEscape(to_checksum_address(C), *a_args[1:]), KC)
    with pytest.raises(L1Reverted):                     # A's share leaf for B (fewer shares)
        f.client.send("registerVaultEscape", bridge.registerVaultEscape(to_checksum_address(B), *a_args[1:]), KB)
    assert f.owed(C) == 50 * USDC and f.owed(B) == 90 * USDC
    _, parts = expected_parts(f)
    assert replay.register_vault_escape(KPAY, B) == parts[B]
    with pytest.raises(L1Reverted):                     # twice, straight at the contract
        f.client.send("registerVaultEscape", bridge.registerVaultEscape(*vault_escape_args(tree, B, fields)), KB)
    assert f.owed(B) == 90 * USDC + parts[B]


def test_escape_all_covers_every_holder_and_never_pays_the_vault(frozen: Frozen, capsys) -> None:
    f = frozen
    vault, parts = expected_parts(f)
    code, out, err = escape_cli(capsys, all_=True)
    assert code == 0, err
    for h in (A, B):
        assert f"of which 0x{h.hex()}'s part of the backstop vault: {cli._fmt(parts[h])}" in out, out
    owed = {A: 270 * USDC + parts[A], B: 90 * USDC + parts[B], C: 50 * USDC}
    assert {h: f.owed(h) for h in owed} == owed
    code, out, err = escape_cli(capsys, all_=True)      # a second run registers nothing more
    assert code == 0 and out == "" and {h: f.owed(h) for h in owed} == owed
    f.end_window()
    before = {h: f.token_balance(h) for h in owed}
    code, out, err = escape_cli(capsys, all_=True)
    assert code == 0, err
    assert {h: f.token_balance(h) - before[h] for h in owed} == owed
    assert f.token_balance(VAULT_ADDRESS) == 0 and "0x" + VAULT_ADDRESS.hex() not in out
    assert sum(owed.values()) <= 450 * USDC
