"""Submit a Transfer to an isoroll node with nothing but eth-account and httpx,
following API.md: fetch the EIP-712 domain, sign, POST, print the receipt.

    python examples/transfer_with_eth_account.py --url http://127.0.0.1:8547 \\
        --key 0x<private key> --to 0x<address> --amount 1000000
"""
import argparse
import json
import time

import httpx
from eth_account import Account
from eth_account.messages import encode_typed_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8547")
    parser.add_argument("--key", required=True, help="private key, 0x-hex")
    parser.add_argument("--to", required=True)
    parser.add_argument("--amount", required=True, type=int, help="collateral units (6 decimals)")
    args = parser.parse_args()

    account = Account.from_key(args.key)
    domain = httpx.get(f"{args.url}/v1/status").json()["eip712Domain"]
    now_ms = int(time.time() * 1000)
    message = {"account": account.address, "to": args.to, "amount": args.amount,
               "nonce": now_ms, "expiry": now_ms + 60_000}
    typed = {
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                             {"name": "chainId", "type": "uint256"},
                             {"name": "verifyingContract", "type": "address"}],
            "Transfer": [{"name": "account", "type": "address"}, {"name": "to", "type": "address"},
                         {"name": "amount", "type": "uint256"}, {"name": "nonce", "type": "uint64"},
                         {"name": "expiry", "type": "uint64"}],
        },
        "primaryType": "Transfer",
        "domain": domain,
        "message": message,
    }
    signed = Account.sign_message(encode_typed_data(full_message=typed), args.key)
    body = {"type": "Transfer", "message": message, "signature": "0x" + signed.signature.hex().removeprefix("0x")}
    response = httpx.post(f"{args.url}/v1/tx", json=body, timeout=30)
    print(json.dumps(response.json(), indent=2))
    response.raise_for_status()


if __name__ == "__main__":
    main()
