"""eth_estimateGas for the in-process py-evm chains of the tests, in two or
three executions of the transaction instead of about fourteen.

py-evm's default estimator (``eth.estimators.gas.binary_gas_search_intrinsic_tolerance``)
runs the transaction at the intrinsic gas, at the block gas limit, and then
bisects the whole range between them (60,000,000 gas in the tests' chains) down
to 21,000 gas: about twelve more full executions per estimate, and web3 makes
an estimate for every transaction sent without a gas limit.  Most of the EVM
tests' time went there.

This one makes the same two first runs (so it fails the same way, with the same
revert reason, and returns the intrinsic gas for a plain transfer), then tries
what the run at the block gas limit consumed plus a 32nd (a call passes on at
most 63/64 of the gas left); if that fails it doubles the excess until a run
succeeds and bisects down to 21,000 gas or a 32nd of the estimate, whichever is
more.  So an estimate is usually two full runs, and like the default's it is a
limit at which the transaction was seen to succeed, at most a 32nd (or 21,000
gas) above the least that does.

``install()`` makes it the estimator of every py-evm chain created afterwards in
this process (tests/conftest.py calls it); the deployed code and the chains'
behaviour are the same.  ``ISOROLL_PYEVM_DEFAULT_GAS=1`` keeps py-evm's own
estimator (to compare).

``install()`` also gives every request that runs EVM code (``eth_call``,
``eth_estimateGas``, ``eth_send*Transaction``) room on CPython's frame stack
(``run_with_stack_room``): CPython 3.11 keeps frames in 16 KB chunks, maps a new
chunk when a call crosses a chunk's end and unmaps it when that call returns.
py-evm's interpreter loop sitting at a chunk's end did that on nearly every
opcode (about a million mmap/munmap pairs in one differential test, half of
its time in the kernel). ``ISOROLL_PYEVM_NO_STACK_ROOM=1`` leaves the requests
as they are (to compare).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable

TOLERANCE = 21_000  # the default estimator's (binary_gas_search_intrinsic_tolerance)


def _run(state: Any, transaction: Any, gas: int, **overrides: Any) -> tuple[Any, int]:
    """(error or None, gas the execution consumed) of `transaction` with a
    `gas` limit, the state left as it was."""
    from eth.vm.spoof import SpoofTransaction

    snapshot = state.snapshot()
    try:
        computation = state.apply_transaction(SpoofTransaction(transaction, gas=gas, **overrides))
        return (computation.error if computation.is_error else None), computation.get_gas_used()
    finally:
        state.revert(snapshot)


def estimate_gas(state: Any, transaction: Any) -> int:
    if not hasattr(transaction, "sender"):
        raise TypeError("Transaction is missing attribute sender.",
                        "If sending an unsigned transaction, use SpoofTransaction and provide the",
                        "sender using the 'from' parameter")
    intrinsic = transaction.intrinsic_gas
    if _run(state, transaction, intrinsic, gas_price=0)[0] is None:
        return intrinsic
    error, used = _run(state, transaction, state.gas_limit, gas_price=0)
    if error is not None:
        raise error
    out_of_gas = intrinsic + used - 1  # the run at the limit consumed `used` beyond the intrinsic gas
    excess = max(used // 32, 1)
    viable = None
    while viable is None:
        candidate = min(intrinsic + used + excess, state.gas_limit)
        if candidate >= state.gas_limit or _run(state, transaction, candidate)[0] is None:
            viable = candidate  # (the block gas limit was seen to succeed above)
        else:
            out_of_gas, excess = candidate, excess * 2
    while viable - out_of_gas > max(TOLERANCE, viable // 32):
        midpoint = (viable + out_of_gas) // 2
        if _run(state, transaction, midpoint)[0] is None:
            viable = midpoint
        else:
            out_of_gas = midpoint
    return viable


def install() -> None:
    """Every py-evm chain created from now on in this process estimates with
    estimate_gas (Chain.__init__ keeps a class-level estimator), and its EVM
    runs through web3 get the frame-stack room (install_stack_room), and
    eth_hash hashes with pysha3 (use_pysha3)."""
    use_pysha3()
    install_stack_room()
    if os.environ.get("ISOROLL_PYEVM_DEFAULT_GAS"):
        return
    try:
        from eth.chains.base import Chain
    except ImportError:  # py-evm not installed: no EVM tests to speed up
        return
    Chain.gas_estimator = staticmethod(estimate_gas)


STACK_ROOM_SLOTS = 16_500
"""Local variables of the frame that makes the room: with CPython's 1,000 slots of
margin that is over 128 KB, so CPython maps a 256 KB chunk for it (it doubles
16 KB until the frame fits) and the calls made from it have the ~130 KB left
behind it: no chunk boundary inside an EVM run.  A frame of the same size called
from inside it does not fit in those 130 KB and starts a chunk of its own."""


def _make_stack_room() -> Callable[..., Any]:
    names = " = ".join(f"_{i}" for i in range(STACK_ROOM_SLOTS))
    source = ("def run_with_stack_room(fn, *args):\n"
              "    if fn is None:  # never: the names only size the frame\n"
              f"        {names} = None\n"
              "    return fn(*args)\n")
    namespace: dict[str, Any] = {}
    exec(compile(source, "<tests/pyevm_gas.py stack room>", "exec"), namespace)
    return namespace["run_with_stack_room"]


run_with_stack_room = _make_stack_room()
"""run_with_stack_room(fn, *args) -> fn(*args), started at the head of a 256 KB
frame-stack chunk (about 0.1 ms per call)."""

EVM_METHODS = frozenset({"eth_call", "eth_estimateGas", "eth_sendTransaction", "eth_sendRawTransaction"})


def install_stack_room() -> None:
    """The web3 requests to in-process chains that run EVM code go through
    run_with_stack_room (CPython 3.11 and later: the ones with the chunked frame stack)."""
    if os.environ.get("ISOROLL_PYEVM_NO_STACK_ROOM") or sys.version_info < (3, 11) \
            or sys.implementation.name != "cpython":
        return
    try:
        from web3.providers.eth_tester.main import EthereumTesterProvider
    except ImportError:
        return
    make_request = EthereumTesterProvider.make_request
    if getattr(make_request, "stack_room", False):
        return

    def make_request_with_room(self, method, params):
        if method in EVM_METHODS:
            return run_with_stack_room(make_request, self, method, params)
        return make_request(self, method, params)

    make_request_with_room.stack_room = True
    EthereumTesterProvider.make_request = make_request_with_room


def use_pysha3() -> None:
    """Unless ETH_HASH_BACKEND says otherwise, eth_hash (py-evm's state tries,
    web3, eth-account) hashes with pysha3 (a dependency of isoroll): with both
    installed it picks pycryptodome, about 9 us per keccak through its Python
    wrapper against about 1 us, for the same digests.  Set before the first
    hash, when eth_hash reads it; the processes the tests start inherit it."""
    if "ETH_HASH_BACKEND" in os.environ:
        return
    try:
        import sha3  # noqa: F401  (safe-pysha3)
    except ImportError:
        return
    os.environ["ETH_HASH_BACKEND"] = "pysha3"
