"""Payout address checks: the pool accepts any address, so a wrong-network one is our job.

docs/upstream-behaviour.md#the-pool-does-not-check-the-payout-address-network
"""

import base58
from embit import bech32

from components.networks import NetworkFacts


def address_problem(address: str, network: NetworkFacts) -> str | None:
    """Why `address` cannot receive this network's coinbase, or None when it can."""
    lowered = address.lower()
    if lowered.startswith(("bc1", "tb1", "bcrt1")):
        hrp = lowered.split("1", 1)[0]
        if hrp != network.bech32_hrp:
            return f"a {hrp}1… address belongs to another network"
        # Verifies the checksum and its variant: bech32 for v0, bech32m for v1+ (BIP-350).
        version, program = bech32.decode(network.bech32_hrp, address)
        if version is None or program is None:
            return "the bech32/bech32m checksum or encoding is invalid"
        return None
    try:
        payload = base58.b58decode_check(address)
    except ValueError:
        return "not a valid base58check or bech32 address (bad checksum or characters)"
    if len(payload) != 21:
        return "a base58check address must carry a 20-byte hash"
    if payload[0] not in (network.p2pkh_version, network.p2sh_version):
        return "the address version belongs to another network"
    return None


def accepted_address_forms(network: NetworkFacts) -> str:
    """The address forms a network accepts, for error messages."""
    if network.is_mainnet:
        return "a mainnet address starting with bc1, 1 or 3"
    return f"a {network.name} address starting with tb1, m, n or 2"
