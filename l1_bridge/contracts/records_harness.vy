# pragma version ~=0.4.1
"""
@title External wrappers of records.vy for the tests and the gas bench.
"""
import records


@external
@pure
def derive_root(data: Bytes[records.MAX_DATA]) -> (bool, bytes32, uint256):
    return records.derive_root(data)


@external
@pure
def verify_item(records_root: bytes32, count: uint256, item: Bytes[records.MAX_ITEM_SIZE], index: uint256,
                siblings: DynArray[bytes32, records.MAX_LIST_DEPTH]) -> bool:
    return records.verify_item(records_root, count, keccak256(item), index, siblings)


@external
@pure
def frontier_root(leaves: DynArray[bytes32, 300]) -> bytes32:
    f: records.Frontier = empty(records.Frontier)
    for leaf: bytes32 in leaves:
        f = records.push(f, records.list_leaf(leaf))
    return records.root(f)
