"""Fixtures of the EVM tests: a py-evm chain behind web3 (EthereumTesterProvider)
and a deploy(name, *args) helper over l1_bridge.compile (compiled once per
source hash, cached on disk across sessions)."""

from __future__ import annotations

from typing import Any, Callable

import pytest


def _make_w3():
    from eth_tester import EthereumTester, PyEVMBackend
    from web3 import EthereumTesterProvider, Web3

    backend = PyEVMBackend(
        genesis_parameters=PyEVMBackend.generate_genesis_params(overrides={"gas_limit": 60_000_000})
    )
    tester = EthereumTester(backend)
    return Web3(EthereumTesterProvider(tester)), tester


@pytest.fixture(scope="session")
def evm_chain():
    """(web3, eth_tester) of a fresh in-process py-evm chain."""
    return _make_w3()


@pytest.fixture(scope="session")
def w3(evm_chain):
    return evm_chain[0]


@pytest.fixture(scope="session")
def deploy(w3) -> Callable[..., Any]:
    """deploy(name, *args, sender=None) -> web3 contract of contracts/<name>.vy"""
    from l1_bridge.compile import compile_contract

    def _deploy(name: str, *args: Any, sender: str | None = None) -> Any:
        abi, bytecode = compile_contract(name)
        factory = w3.eth.contract(abi=abi, bytecode=bytecode)
        tx = factory.constructor(*args).transact({"from": sender or w3.eth.accounts[0]})
        receipt = w3.eth.wait_for_transaction_receipt(tx)
        assert receipt["status"] == 1, f"deploying {name} reverted"
        return w3.eth.contract(address=receipt["contractAddress"], abi=abi)

    return _deploy


@pytest.fixture(scope="session")
def onestep_contract(w3) -> Any:
    """onestep.vy with every family contract of prover.families.ONESTEP_FAMILIES,
    deployed for prover.fraud_vectors.RULES (its market table, domain and limits)."""
    from l1_bridge.deploy import deploy_onestep, load_artifact
    from prover import fraud_vectors as fv

    address, _ = deploy_onestep(w3, fv.RULES)
    return w3.eth.contract(address=address, abi=load_artifact("onestep")[0])
