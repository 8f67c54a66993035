"""What the one-step differential tests share: the devnet markets the
generated states use, and running one item through the Python reference and
the contract from the same pre-state."""
from __future__ import annotations

import os

from prover import fraud_vectors as fv
from prover.trace import TraceRunner
from sequencer.core.rules.base import get_market_params

BTC = get_market_params(fv.RULES, fv.BTC)
ETH = get_market_params(fv.RULES, fv.ETH)
PRICES = {fv.BTC: 60_000 * 10**6, fv.ETH: 3_000 * 10**6}


EXAMPLES_SCALE = float(os.environ.get("ISOROLL_ONESTEP_EXAMPLES_SCALE", "0.25"))
"""The share of each differential test's example count a run makes: 0.25 in the
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
