#pragma version ~=0.4.3
"""
@title A contract wallet for the bridge tests
@notice Forwards calls and counts what it receives; its receive hook writes
    storage, so it needs more than the 2,300 gas a `send` forwards.
"""

owner: public(address)
received: public(uint256)
payments: public(uint256)


@deploy
def __init__():
    self.owner = msg.sender


@external
def execute(target: address, data: Bytes[4096]):
    assert msg.sender == self.owner, "wallet: only the owner"
    raw_call(target, data)


@external
@payable
def __default__():
    self.received += msg.value
    self.payments += 1
