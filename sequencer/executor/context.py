"""The transition's ``Context`` from plain settings (preset, bridge address,
signature backend), shared by the node, the verifier and the exit kit."""
from __future__ import annotations

from sequencer.core import eip712
from sequencer.core.presets import get_preset
from sequencer.core.signing import get_recover
from sequencer.core.transition import Context


def make_domain(preset_name: str, bridge_address: str) -> eip712.Domain:
    """The EIP-712 domain: the preset's chain id, the bridge as verifyingContract."""
    return eip712.Domain(get_preset(preset_name).chain_id, bytes.fromhex(bridge_address.removeprefix("0x")))


def make_context(preset_name: str, bridge_address: str, *, signature_backend: str = "coincurve",
                 verify_signatures: bool = True) -> Context:
    domain = make_domain(preset_name, bridge_address)
    return Context(preset=get_preset(preset_name), domain_separator=eip712.compute_domain_separator(domain),
                   recover=get_recover(signature_backend), verify_signatures=verify_signatures)
