"""GET /v1/proofs/... and `isoroll prove` on a node on the real broker.

The account proof is checked with prover.tree.verify_proof against the status
stateRoot, and (if cheap) by the Vyper verifier on py-evm.  The withdrawal
proof is checked against the withdrawals root of the output the real
Checkpointer posts, here to an in-memory bridge with BridgeClient's read/propose
surface (the anvil e2e covers the real bridge).
"""
from __future__ import annotations

import asyncio
import json
import statistics
import time

import httpx
import pytest

from nodes import dev_clients, make_config
from l1_bridge.checkpointer import Checkpointer
from l1_bridge.proofs import OutputFields, encode_withdrawal
from prover.codec import Proof, WithdrawalProof
from prover.hashing import EMPTY, keccak
from prover.keys import get_account_key
from prover.output import compute_withdrawals_root_from_proof, verify_withdrawal_proof
from prover.tree import verify_proof
from sequencer.core.state import Withdrawal
from l1_bridge import api as api_proofs
from isoroll.service import Service

pytestmark = pytest.mark.kafka

BTC = 1
USDC = 10**6


class MemoryBridge:
    """The parts of l1_bridge.client.BridgeClient the checkpointer and the proofs API use."""

    def __init__(self) -> None:
        self.outputs = [{"output_index": 0, "output_root": b"\x01" * 32, "l2_block": 0,
                         "fields": OutputFields(EMPTY, EMPTY, EMPTY, 0, EMPTY, EMPTY)}]
        self.final = 0
        self.deployment = None

    def status(self) -> dict:
        return {"frozen": False, "output_count": len(self.outputs), "open_forced_requests": 0}

    def get_output(self, i: int) -> dict:
        o = self.outputs[i]
        return {"output_root": o["output_root"], "l2_block": o["l2_block"], "inbox_count": o["fields"].inbox_count}

    def params(self) -> dict:
        return {"proposer_bond": 0}

    def bond(self) -> int:
        return 0

    def propose(self, who, output_index: int, l2_block: int, fields: OutputFields, data: bytes,
                withdrawals_total: int = 0, prior_chunks: int = 0) -> None:
        assert prior_chunks == 0  # these outputs fit one chunk
        assert output_index == len(self.outputs) and l2_block > self.outputs[-1]["l2_block"]
        self.outputs.append({"output_index": output_index, "output_root": fields.root(), "l2_block": l2_block,
                             "fields": fields})

    def live_outputs(self, from_block: int = 0) -> list[dict]:
        return list(self.outputs)

    def last_final_output(self) -> int:
        return self.final


def hexaddr(client) -> str:
    return "0x" + client.address.hex()


def b(h: str) -> bytes:
    return bytes.fromhex(h[2:])


def check_account_answer(answer: dict, state_root: str) -> list[Proof]:
    assert answer["stateRoot"] == state_root
    root = b(state_root)
    proofs = [answer["account"]["proof"]] + [p["proof"] for p in answer["positions"]] \
        + [m["proof"] for m in answer["markets"]]
    out = []
    for obj in proofs:
        proof = Proof.from_json_obj(obj)
        assert proof.included and verify_proof(root, proof), obj["key"]
        assert verify_proof(root, Proof(proof.key, proof.value + b"\x00", proof.bitmap, proof.siblings)) is False
        out.append(proof)
    return out


async def make_position(a, b_client, c) -> bool:
    """A 0.01 BTC trade between a (long) and b (short); False if this checkout has no trading SDK."""
    if not hasattr(a, "place_order"):
        return False
    from sequencer.oracle import Feeder
    update = await Feeder(c, source=None).post(BTC, 60_000 * USDC)
    assert update.receipt is not None and update.receipt["status"] == "ok", update.error
    size = 10**6  # 0.01 BTC in lots
    maker = await b_client.place_order(BTC, False, 60_000 * USDC, size, leverage=5)
    assert maker["status"] == "ok", maker
    taker = await a.place_order(BTC, True, 60_000 * USDC, size, leverage=5)
    assert taker["order"]["status"] == "filled", taker
    return True


async def test_account_and_withdrawal_proofs(broker, topic, tmp_path, api_port, monkeypatch):
    monkeypatch.setattr(api_proofs, "OUTPUTS_CACHE_S", 0.0)
    # its own transactional id: other suites share the broker
    config = make_config(broker, topic, tmp_path, api_port, sequencer_id=topic)
    async with Service(config) as service, httpx.AsyncClient(base_url=service.url) as http:
        a, b_client, c, _ = dev_clients(service.url)
        async with a, b_client, c:
            await a.transfer(b_client.address, 1_000_000)
            w1 = await a.withdraw(5_000)
            w2 = await b_client.withdraw(7_000)
            traded = await make_position(a, b_client, c)
            status = (await http.get("/v1/status")).json()

            # --- the account proof -------------------------------------------------
            r = await http.get(f"/v1/proofs/account/{hexaddr(a)}")
            assert r.status_code == 200, r.text
            answer = r.json()
            assert answer["blockNumber"] == status["blockNumber"]
            proofs = check_account_answer(answer, status["stateRoot"])
            account = await a.account()
            assert proofs[0].key == get_account_key(b(answer["address"]))
            assert int.from_bytes(proofs[0].value[:32], "big") == account["collateral"]
            if traded:
                assert [p["market"] for p in answer["positions"]] == [BTC]
                assert [m["market"] for m in answer["markets"]] == [BTC]
                size = int.from_bytes(proofs[1].value[:32], "big", signed=True)
                assert size == 10**6
            escape = answer["escape"]["args"]
            assert escape["output"] is None and escape["account_value"] == "0x" + proofs[0].value.hex()
            assert len(escape["positions"]) == len(answer["escape"]["markets"])
            for (has, *_), m in zip(escape["positions"], answer["escape"]["markets"]):
                assert has == (traded and m == BTC)

            # the head by number is fine; an older block is a clear 409; unknown account 404
            assert (await http.get(f"/v1/proofs/account/{hexaddr(a)}",
                                   params={"block": status["blockNumber"]})).status_code == 200
            old = await http.get(f"/v1/proofs/account/{hexaddr(a)}", params={"block": 1})
            assert old.status_code == 409 and old.json()["error"]["code"] == "block_not_provable"
            assert "only the head block" in old.json()["error"]["message"]
            missing = await http.get("/v1/proofs/account/0x" + "ab" * 20)
            assert missing.status_code == 404 and "exclusion proof" in missing.json()["error"]["message"]

            # response times and sizes (printed for the docs)
            times = []
            for _ in range(50):
                t0 = time.perf_counter()
                rr = await http.get(f"/v1/proofs/account/{hexaddr(a)}")
                times.append((time.perf_counter() - t0) * 1000)
                assert rr.status_code == 200
            print(f"\naccount proof: {len(r.content)} B JSON, {len(proofs)} proofs, depths "
                  f"{[p.depth for p in proofs]}, encoded {[len(p.encode()) for p in proofs]} B; "
                  f"response median {statistics.median(times):.2f} ms (p max {max(times):.2f} ms), "
                  f"prove {answer['proveMs']} ms")

            # --- withdrawals -------------------------------------------------------------
            ws = service.node.chain.state.withdrawals
            mine = [w for w in ws if w.account == a.address]
            assert [w.amount for w in mine] == [5_000]
            whash = keccak(encode_withdrawal(mine[0]))  # eth_abi's encoding: the bridge's bytes
            path = "/v1/proofs/withdrawal/0x" + whash.hex()
            no_l1 = (await http.get(path)).json()
            assert no_l1["status"] == "waiting_for_checkpoint" and no_l1["proof"] is None
            assert no_l1["withdrawal"] == {"index": mine[0].index, "account": hexaddr(a),
                                           "amount": 5_000, "block": w1["block"]}
            assert no_l1["encoded"] == "0x" + encode_withdrawal(mine[0]).hex()
            assert (await http.get("/v1/proofs/withdrawal/0x" + "00" * 32)).status_code == 404

            bridge = MemoryBridge()
            checkpointer = Checkpointer(bridge, service.node, "0x" + "11" * 20)
            service.l1.connected(bridge)
            waiting = (await http.get(path)).json()
            assert waiting["status"] == "waiting_for_checkpoint" and "no output covers" in waiting["message"]

            proposal = await checkpointer.poll_once(force=True)
            assert proposal is not None and proposal.output_index == 1
            assert len(proposal.withdrawals) == 2
            got = (await http.get(path)).json()
            assert got["status"] == "in_challenge_period"
            assert got["output"]["index"] == 1 and got["output"]["l2Block"] == proposal.l2_block
            proof = WithdrawalProof.from_json_obj(got["proof"])
            assert verify_withdrawal_proof(proposal.fields.withdrawals_root, proof)
            assert compute_withdrawals_root_from_proof(proof) == b(got["output"]["postedWithdrawalsRoot"])
            assert got["output"]["outputRoot"] == "0x" + proposal.root.hex()
            claim = got["claimArgs"]
            assert claim["output_index"] == 1 and claim["leaf_index"] == proof.index
            assert claim["withdrawal"] == [mine[0].index, hexaddr(a), 5_000, w1["block"]]
            assert [b(x) if isinstance(x, str) else x for x in claim["output"]] == list(proposal.fields)

            # a later withdrawal waits for the next output, then is in it (its own group)
            w3 = await a.withdraw(3_000)
            later = next(w for w in service.node.chain.state.withdrawals if w.block == w3["block"])
            later_path = "/v1/proofs/withdrawal/0x" + keccak(encode_withdrawal(later)).hex()
            assert (await http.get(later_path)).json()["status"] == "waiting_for_checkpoint"
            second = await checkpointer.poll_once(force=True)
            assert second.output_index == 2 and second.withdrawals == [later]
            got2 = (await http.get(later_path)).json()
            assert got2["output"]["index"] == 2 and got2["output"]["previousL2Block"] == proposal.l2_block
            assert verify_withdrawal_proof(second.fields.withdrawals_root,
                                           WithdrawalProof.from_json_obj(got2["proof"]))
            bridge.final = 2
            assert (await http.get(path)).json()["status"] == "final"

            # --- the CLI writes the same JSON (after checking it) -------------------------
            from isoroll.cli import main
            out = tmp_path / "account.json"
            rc = await asyncio.to_thread(main, ["prove", "account", hexaddr(a), "--url", service.url,
                                                "--out", str(out)])
            assert rc == 0
            written = json.loads(out.read_text())
            assert written["stateRoot"] == answer["stateRoot"] or written["blockNumber"] > answer["blockNumber"]
            check_account_answer(written, written["stateRoot"])
            wout = tmp_path / "withdrawal.json"
            rc = await asyncio.to_thread(main, ["prove", "withdrawal", "0x" + whash.hex(), "--url", service.url,
                                                "--out", str(wout)])
            assert rc == 0 and json.loads(wout.read_text())["claimArgs"] == claim
            rc = await asyncio.to_thread(main, ["prove", "account", hexaddr(a), "--url", service.url,
                                                "--block", "1", "--out", str(tmp_path / "x.json")])
            assert rc == 1 and not (tmp_path / "x.json").exists()
            assert w2["status"] == "ok"


@pytest.mark.evm
async def test_served_account_proof_verifies_in_the_vyper_verifier(broker, topic, tmp_path, api_port):
    pytest.importorskip("eth_tester")
    from eth_tester import EthereumTester, PyEVMBackend
    from web3 import EthereumTesterProvider, Web3
    from l1_bridge.compile import compile_contract

    # its own transactional id: other suites share the broker
    config = make_config(broker, topic, tmp_path, api_port, sequencer_id=topic)
    async with Service(config) as service, httpx.AsyncClient(base_url=service.url) as http:
        a, b_client, c, _ = dev_clients(service.url)
        async with a, b_client, c:
            await a.transfer(b_client.address, 12_345)
            traded = await make_position(a, b_client, c)
            status = (await http.get("/v1/status")).json()
            answer = (await http.get(f"/v1/proofs/account/{hexaddr(a)}")).json()
    proofs = check_account_answer(answer, status["stateRoot"])

    backend = PyEVMBackend(genesis_parameters=PyEVMBackend.generate_genesis_params(
        overrides={"gas_limit": 60_000_000}))
    w3 = Web3(EthereumTesterProvider(EthereumTester(backend)))
    abi, bytecode = compile_contract("smt_harness")
    tx = w3.eth.contract(abi=abi, bytecode=bytecode).constructor().transact({"from": w3.eth.accounts[0]})
    harness = w3.eth.contract(address=w3.eth.wait_for_transaction_receipt(tx)["contractAddress"], abi=abi)

    root = b(answer["stateRoot"])
    escape = answer["escape"]["args"]

    def arg(p):  # the ABI-ready SmtProof the API serves, as web3 takes it
        bitmap, siblings, other_key, other_value_hash = p
        return (int(bitmap, 16) if isinstance(bitmap, str) else bitmap, [b(s) for s in siblings],
                b(other_key), b(other_value_hash))

    account = proofs[0]
    assert harness.functions.verify_value(root, account.key, account.value, arg(escape["account_proof"])).call()
    assert not harness.functions.verify_value(root, account.key, account.value + b"\x01",
                                              arg(escape["account_proof"])).call()
    if traded:
        position = proofs[1]
        entry = next(e for e, m in zip(escape["positions"], answer["escape"]["markets"]) if m == BTC)
        assert entry[0] is True and b(entry[1]) == position.value
        assert harness.functions.verify_account_and_position(
            root, account.key, account.value, arg(escape["account_proof"]),
            position.key, position.value, arg(entry[2])).call()
        market = proofs[2]
        assert harness.functions.verify_value(root, market.key, b(entry[3]), arg(entry[4])).call()
        assert b(entry[3]) == market.value
    for (has, _, pproof, _, _), m in zip(escape["positions"], answer["escape"]["markets"]):
        if not has:  # exclusion of the positions the account does not hold
            from prover.keys import get_position_key
            assert harness.functions.verify_exclusion(root, get_position_key(a.address, m), arg(pproof)).call()
