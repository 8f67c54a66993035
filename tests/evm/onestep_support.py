"""What the one-step differential tests share: the devnet markets the
generated states use, running one item through the Python reference and
the contract from the same pre-state, and the forged-witness check."""
from __future__ import annotations

import os

import pytest
from eth_tester.exceptions import TransactionFailed

from prover import fraud_vectors as fv
from prover.records import encode_item
from prover.trace import TraceRunner
from sequencer.core.rules.base import get_market_params
from sequencer.core.state import State

BTC = get_market_params(fv.RULES, fv.BTC)
ETH = get_market_params(fv.RULES, fv.ETH)
PRICES = {fv.BTC: 60_000 * 10**6, fv.ETH: 3_000 * 10**6}


EXAMPLES_SCALE = float(os.environ.get("ISOROLL_ONESTEP_EXAMPLES_SCALE", "0.2"))
"""The share of each differential test's example count a run makes: 0.2 in the
suite (it must fit the CI's time on 2 cores), 1 or more for a deep run (`make test-deep`)."""


def get_examples(full: int) -> int:
    """The Hypothesis examples of a differential test whose full run is ``full``."""
    return max(10, round(full * EXAMPLES_SCALE))


def params_of(market_id: int):
    return BTC if market_id == fv.BTC else ETH


def run_both(onestep, state, ctx, item, rules=fv.RULES):
    """Python's step and the contract's `apply` on the same pre-state:
    (runner after the item, pre-state root, the step's result and witness,
    (the contract's root, outcome, context))."""
    runner = TraceRunner(state, rules, ctx=ctx)
    pre_root = runner.state_root
    result = runner.step(item)
    root, post_ctx, ok = onestep.functions.apply(
        pre_root, ctx.as_arg(), item, [o.as_arg() for o in result.witness.openings],
        list(result.witness.nonces)).call()
    return runner, pre_root, result, (root, ok, post_ctx)


def honest_witness(state: State, record, rules=fv.RULES) -> tuple:
    """The reference's step of ``record`` (one the rule applies) on a copy of
    ``state`` in a fresh block: (pre-state root, context, the witness's
    openings as call arguments, post-state root)."""
    runner = TraceRunner(State.from_tables(state.to_tables()), rules, ctx=fv.open_block_ctx(state))
    pre_root, ctx = runner.state_root, runner.ctx
    result = runner.step(encode_item(record))
    assert result.ok
    return pre_root, ctx, [o.as_arg() for o in result.witness.openings], runner.state_root


def assert_forged_witnesses_revert(onestep, state: State, record, rules=fv.RULES, swaps=(0,)) -> None:
    """The honest witness gives the reference's post-state root; every opening
    altered (a value, a presence, its proof; an absent one given a value), the
    last one missing, and two neighbours swapped (at each index of ``swaps``):
    each reverts "witness". In the suite (``EXAMPLES_SCALE`` < 1) each opening
    gets one of its alterations, the kinds in turn, and every absent one a
    value; ``make test-deep`` makes every one."""
    pre_root, ctx, openings, post_root = honest_witness(state, record, rules)
    item = encode_item(record)
    apply = lambda ops: onestep.functions.apply(pre_root, ctx.as_arg(), item, ops, []).call()
    assert apply(openings)[0] == post_root
    for i, (present, value, proof, sibling) in enumerate(openings):
        lies = [(not present, value or b"\x00" * 31 + b"\x01", proof, sibling),   # present <-> absent
                (present, value, (proof[0] ^ 1,) + tuple(proof[1:]), sibling)]        # a sibling's place
        if present:
            lies.append((present, value[:-1] + bytes([value[-1] ^ 1]), proof, sibling))
        if EXAMPLES_SCALE < 1:
            lies = [lies[i % len(lies)]]
        if not present:  # an absent leaf carrying a value (readers decode it whatever the flag): always tried
            lies.append((present, b"\x00" * 31 + b"\x01", proof, sibling))
        for bad in lies:
            with pytest.raises(TransactionFailed, match="witness"):
                apply(openings[:i] + [bad] + openings[i + 1:])
    forged = [openings[:-1]] + [openings[:at] + [openings[at + 1], openings[at]] + openings[at + 2:] for at in swaps]
    for bad in forged:
        with pytest.raises(TransactionFailed, match="witness"):
            apply(bad)
