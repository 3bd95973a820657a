"""The project's facts that the tests, the render, the benchmarks and the e2e all use: one
definition each."""

from pathlib import Path
from typing import Final

from components.settings import PROJECT

__all__ = [
    "EXAMPLE_AUTHORITY_PUBKEY",
    "MAINNET_ADDRESSES",
    "MAINNET_TEST_ADDRESS",
    "PROJECT",
    "ROOT",
    "SHARED_REFERENCE",
    "STACKS",
    "TEST_NETWORK_ADDRESS",
    "TEST_NETWORK_ADDRESSES",
]

# The checkout: Pulumi.yaml, __main__.py and the committed stack files.
ROOT: Final = Path(__file__).resolve().parents[2]
# Reference material of the workplace beside the checkout; absent on GitHub, so what reads it
# skips there (or falls back).
SHARED_REFERENCE: Final = ROOT.parent / "shared" / "reference"
# The committed stacks (Pulumi.<stack>.yaml), one per network.
STACKS: Final = ("signet", "testnet4", "mainnet")

# Valid addresses, nobody's wallet: BIP-173/BIP-350 vectors and well-known base58 ones.
# The mainnet one for renders, tests and the e2e (the committed mainnet stack has none).
MAINNET_TEST_ADDRESS: Final = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
# Valid on signet and testnet4 alike (both use the test networks' prefixes).
TEST_NETWORK_ADDRESS: Final = "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"
MAINNET_ADDRESSES: Final = (
    MAINNET_TEST_ADDRESS,  # P2WPKH
    "bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3",  # P2WSH
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",  # P2TR (bech32m)
    "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",  # P2PKH
    "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",  # P2SH
)
TEST_NETWORK_ADDRESSES: Final = (
    TEST_NETWORK_ADDRESS,
    "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
    "tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c",
    "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn",
    "2MzQwSSnBHWHqSAqtTVQ6v47XtaisrJa1Vc",
)
# A valid SV2 authority public key: upstream's example (sv2-apps' example configs), nobody's pool.
EXAMPLE_AUTHORITY_PUBKEY: Final = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72"
