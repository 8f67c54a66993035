# pragma version ~=0.4.1
"""
@title Test harness of the smt module (external wrappers, no state)
@notice Only for tests and gas measurement; the bridge imports smt directly.
"""

import smt


@external
@pure
def verify(root: bytes32, key: bytes32, value_hash: bytes32, proof: smt.SmtProof) -> bool:
    return smt.verify(root, key, value_hash, proof)


@external
@pure
def verify_value(root: bytes32, key: bytes32, leaf_value: Bytes[4096], proof: smt.SmtProof) -> bool:
    return smt.verify(root, key, keccak256(leaf_value), proof)


@external
@pure
def verify_exclusion(root: bytes32, key: bytes32, proof: smt.SmtProof) -> bool:
    return smt.verify_exclusion(root, key, proof)


@external
@pure
def verify_account_and_position(root: bytes32, account_key: bytes32, account_value: Bytes[4096],
                                account_proof: smt.SmtProof, position_key: bytes32,
                                position_value: Bytes[4096], position_proof: smt.SmtProof) -> bool:
    return (smt.verify(root, account_key, keccak256(account_value), account_proof)
            and smt.verify(root, position_key, keccak256(position_value), position_proof))


@external
@pure
def compute_root(key: bytes32, terminal: bytes32, bitmap: uint256, siblings: DynArray[bytes32, smt.MAX_SIBLINGS]) -> (bool, bytes32):
    return smt.fold(key, terminal, bitmap, siblings)


@external
@pure
def delete_root(key: bytes32, bitmap: uint256, siblings: DynArray[bytes32, smt.MAX_SIBLINGS], sibling: Bytes[65]) -> (bool, bytes32):
    return smt.delete_root(key, bitmap, siblings, sibling)


@external
@view
def gas_delete(root: bytes32, key: bytes32, value_hash: bytes32, proof: smt.SmtProof, sibling: Bytes[65]) -> (bool, bytes32, uint256):
    """(valid, root after the deletion, gas of verifying the leaf and deleting it)"""
    g: uint256 = msg.gas
    ok: bool = smt.verify(root, key, value_hash, proof)
    h: bytes32 = empty(bytes32)
    if ok:
        ok, h = smt.delete_root(key, proof.bitmap, proof.siblings, sibling)
    return ok, h, g - msg.gas


@external
@pure
def leaf_hash(key: bytes32, value_hash: bytes32) -> bytes32:
    return smt.leaf_hash(key, value_hash)


@external
@pure
def verify_withdrawal(root: bytes32, withdrawal_hash: bytes32, index: uint256,
                      siblings: DynArray[bytes32, smt.MAX_WITHDRAWAL_DEPTH]) -> bool:
    return smt.verify_withdrawal(root, withdrawal_hash, index, siblings)


@external
@pure
def output_root(version: uint256, state_root: bytes32, withdrawals_root: bytes32, last_block_hash: bytes32,
                inbox_count: uint256, inbox_hash: bytes32, data_hash: bytes32) -> bytes32:
    return smt.output_root(version, state_root, withdrawals_root, last_block_hash, inbox_count, inbox_hash,
                           data_hash)


@external
@view
def gas_account_and_position(root: bytes32, account_key: bytes32, account_value: Bytes[4096],
                             account_proof: smt.SmtProof, position_key: bytes32,
                             position_value: Bytes[4096], position_proof: smt.SmtProof) -> (bool, uint256):
    """(valid, gas spent inside the two verifications incl. hashing the values)"""
    g: uint256 = msg.gas
    ok: bool = (smt.verify(root, account_key, keccak256(account_value), account_proof)
                and smt.verify(root, position_key, keccak256(position_value), position_proof))
    return ok, g - msg.gas


@external
@view
def gas_verify(root: bytes32, key: bytes32, value_hash: bytes32, proof: smt.SmtProof) -> (bool, uint256):
    g: uint256 = msg.gas
    ok: bool = smt.verify(root, key, value_hash, proof)
    return ok, g - msg.gas
