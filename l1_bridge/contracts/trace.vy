# pragma version ~=0.4.1
"""
@title isoroll trace positions (Vyper module)
@notice The types shared by onestep.vy and dispute.vy (docs/fraud-proofs.md):
    a trace position is (state_root, ctx) and its claim is
    keccak256(state_root || keccak256(abi.encode(ctx))); the twin of
    prover/trace.py TraceContext / compute_claim.
"""
import smt
import records

MAX_OPENINGS: constant(uint256) = 32
MAX_LEAF: constant(uint256) = 512
MAX_NONCES: constant(uint256) = 100


struct Ctx:
    block_open: uint256
    block_number: uint256
    timestamp_ms: uint256
    withdrawals: records.Frontier


struct Opening:
    present: bool
    value: Bytes[MAX_LEAF]
    proof: smt.SmtProof
    # only when the one-step deletes this (present) leaf: the hash preimage
    # of the deepest sibling on its path (smt.delete_root); else empty
    sibling: Bytes[65]


@internal
@pure
def claim(state_root: bytes32, ctx: Ctx) -> bytes32:
    return keccak256(concat(state_root, keccak256(abi_encode(ctx))))
