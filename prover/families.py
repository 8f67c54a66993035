"""The one-step family contracts (docs/fraud-proofs.md, "Family contracts"):
which contract re-executes which record tags on L1, and the constructor
arguments each takes after the shared market table, as a function of the rule
context.  ``l1_bridge.deploy.deploy_onestep`` deploys them; the shared vectors
(prover.fraud_vectors) carry the same table; prover.records.ONESTEP_TAGS lists
the same tags and prover.trace.PLANNERS the same kinds (a test checks).

Pure: no I/O, no clock.
"""
from __future__ import annotations

from typing import Any, Callable

from prover.plan_oracle import get_onestep_oracle_args
from prover.plan_triggers import get_onestep_triggers_args
from prover.plan_vault import get_onestep_vault_args
from prover.plan_vault_step import get_onestep_vault_step_args


def get_market_table_args(rules: Any) -> tuple:
    """The constructor extras of a family that needs only the market table."""
    return ()


def get_onestep_liquidate_args(rules: Any) -> tuple:
    """onestep_liquidate.vy's constructor extras: the address of onestep_book.vy
    (a family listed before it, routed no tag of its own), which it forwards a
    Liquidate under a book policy to; "@name" is resolved at deployment
    (resolve_family_args); then that of onestep_vault_step.vy, which it
    forwards a Liquidate naming no makers under book+vault to."""
    return ("@onestep_book", "@onestep_vault_step")


def resolve_family_args(args: tuple, deployed: dict[str, str]) -> tuple:
    """Constructor extras with each "@name" replaced by the address of the
    family contract ``name`` deployed before."""
    return tuple(deployed[a[1:]] if isinstance(a, str) and a.startswith("@") else a for a in args)


ONESTEP_FAMILIES: tuple[tuple[str, tuple[int, ...], Callable[[Any], tuple]], ...] = (
    ("onestep_perps", (3, 4, 17), get_market_table_args),
    ("onestep_oracle", (32,), get_onestep_oracle_args),
    ("onestep_vault", (6, 7, 21), get_onestep_vault_args),
    ("onestep_trade", (16,), get_market_table_args),
    ("onestep_book", (), get_market_table_args),
    ("onestep_vault_step", (), get_onestep_vault_step_args),
    ("onestep_liquidate", (18, 50), get_onestep_liquidate_args),
    ("onestep_auction_end", (23,), get_market_table_args),
    ("onestep_auction", (8,), get_market_table_args),
    ("onestep_modify", (10,), get_market_table_args),
    ("onestep_triggers", (5, 9, 11, 19, 20), get_onestep_triggers_args),
    ("onestep_ladder", (24,), get_market_table_args),
)
"""(contract, the record tags onestep.vy routes to it, its constructor extras
after the market table)."""
