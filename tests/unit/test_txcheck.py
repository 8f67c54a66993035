"""sequencer.core.txcheck: the stateless checks of a submitted tx, as the node's
workers run them."""
from __future__ import annotations

import json

from sequencer.core import eip712
from sequencer.core.encoding import compute_record_hash, decode_record
from sequencer.core.records import Transfer
from sequencer.core.signing import SECP256K1_N
from sequencer.core.txcheck import CheckedTx, check_tx, check_txs
from tx_bodies import ACCOUNT, DOMAIN, RECOVER, SEPARATOR, body

def check(data: bytes) -> CheckedTx:
    return check_tx(data, DOMAIN, SEPARATOR, RECOVER)


def test_a_good_tx_gives_its_log_bytes_and_hash():
    checked = check(body())
    assert checked.ok and not checked.code
    record = decode_record(checked.record)
    assert isinstance(record, Transfer) and record.account == ACCOUNT and record.amount == 7
    assert checked.tx_hash == compute_record_hash(checked.record)


def test_malformed_and_unknown_fields_are_refused_with_the_wire_codes():
    assert (check(b'{"type": "Transfer"').code, check(body(extra=1)).code) == ("malformed_json", "unknown_field")


def test_a_signature_under_another_domain_names_the_expected_domain():
    checked = check(body(domain=eip712.Domain(1, DOMAIN.verifying_contract)))
    assert checked.code == "bad_signature" and not checked.ok
    assert "chainId: 31337" in checked.message and "0x" + "11" * 20 in checked.message


def test_a_high_s_signature_is_refused():
    good = json.loads(body())
    sig = bytes.fromhex(good["signature"][2:])
    s = int.from_bytes(sig[32:64], "big")
    high = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])
    checked = check(body(signature=high))
    assert checked.code == "bad_signature" and "high-s" in checked.message


def test_check_txs_keeps_the_order_and_checks_each_alone():
    results = check_txs([body(nonce=1), b"[]", body(nonce=2)], DOMAIN, SEPARATOR, RECOVER)
    assert [r.ok for r in results] == [True, False, True]
    assert decode_record(results[2].record).nonce == 2
