"""The witness plan of the OraclePrice one-step (l1_bridge/contracts/onestep_oracle.vy)
and the oracle set that contract is deployed with.

The one-step reads one leaf, the record's market, and writes it when the
price applies or is held pending (rules.funding.process_oracle_price,
rules.mark.apply_oracle_price).  It always verifies the oracle signatures,
as the rules do with ``Context.verify_signatures`` on (prover.fraud_vectors
.RULES, the verifier's replay by default): a trace run with a context that
skips them (a replay trusting its own log) applies a record with a missing
quorum or a stranger's signature that the contract refuses, so its claims
are not the one-step's there, as for every user-signed kind.

Pure: no I/O, no clock.
"""
from __future__ import annotations

from prover.hashing import keccak
from prover.keys import get_market_key
from sequencer.core.records import OraclePrice
from sequencer.core.rules.base import Context, get_oracle_set

MAX_ORACLE_SIGNERS = 15
"""An OraclePrice item holds at most 15 signatures (prover.records); with at
most 15 signers a record of more always repeats a signer or names a
non-signer, so the rule fails it, as the item's NOOP does.  The contract's
constructor takes at most 15 signers."""


def to_checksum_address(address: bytes) -> str:
    """EIP-55: the hex address with the letters whose keccak nibble is >= 8 in upper case."""
    digits = bytes(address).hex()
    nibbles = keccak(digits.encode()).hex()
    return "0x" + "".join(c.upper() if int(n, 16) >= 8 else c for c, n in zip(digits, nibbles))


def get_onestep_oracle_args(rules: Context) -> tuple[list[str], int]:
    """onestep_oracle.vy's constructor extras after the market table: the
    rules' oracle set (signers as checksum addresses, quorum)."""
    oracle = get_oracle_set(rules)
    if len(oracle.signers) > MAX_ORACLE_SIGNERS:
        raise ValueError(f"{len(oracle.signers)} oracle signers: the one-step takes at most {MAX_ORACLE_SIGNERS}")
    return [to_checksum_address(s) for s in oracle.signers], oracle.quorum


def plan_oracle_price(runner, item: OraclePrice):
    """The market leaf, written if the record applies."""
    market = get_market_key(item.market)
    return (lambda ok, writes: [(market, ok)]), ()


PLANNERS = {OraclePrice: plan_oracle_price}
