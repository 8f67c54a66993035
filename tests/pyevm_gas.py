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
"""
from __future__ import annotations

import os
from typing import Any

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
    estimate_gas (Chain.__init__ keeps a class-level estimator)."""
    if os.environ.get("ISOROLL_PYEVM_DEFAULT_GAS"):
        return
    try:
        from eth.chains.base import Chain
    except ImportError:  # py-evm not installed: no EVM tests to speed up
        return
    Chain.gas_estimator = staticmethod(estimate_gas)
