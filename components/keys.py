"""SV2 authority keys and Bitcoin Core rpcauth lines, derived from random bytes (pure functions).

Encodings: docs/upstream-behaviour.md#sv2-authority-keys-are-base58check-strings-with-a-version-prefix
and docs/upstream-behaviour.md#rpcauth-is-an-hmac-of-the-password-keyed-with-the-salt-text
"""

import hashlib
import hmac
from dataclasses import dataclass

import base58
from coincurve import PrivateKey

# Order of the secp256k1 group.
CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
# Little-endian u16 version 1, prefixed to the x-only public key.
_PUBLIC_KEY_VERSION = b"\x01\x00"
# sv2-tp's key file: 0x01 then the 32-byte secret
# (docs/upstream-behaviour.md#sv2-tp-loads-its-authority-key-from-a-file-in-the-net-datadir).
_KEY_FILE_PREFIX = b"\x01"


@dataclass(frozen=True)
class AuthorityKeyPair:
    secret: str  # base58check of the 32-byte secret, as pool_sv2 reads it
    public: str  # base58check of version || x-only key, starts with 9
    key_file: bytes  # the 33-byte file sv2-tp loads from its net datadir


def authority_key_pair(seed: bytes) -> AuthorityKeyPair:
    """The key pair for a 32-byte seed, normalised to an even-Y public point like upstream."""
    if len(seed) != 32:
        raise ValueError("an authority key needs exactly 32 random bytes")
    scalar = int.from_bytes(seed, "big")
    if not 1 <= scalar < CURVE_ORDER:
        # Happens with probability ~2^-128; a new seed (rotation) is the honest answer.
        raise ValueError("the random seed is not a valid secp256k1 secret; rotate the key")
    compressed = PrivateKey(seed).public_key.format(compressed=True)
    if compressed[0] == 0x03:  # odd Y: n - s has the same x and an even Y
        scalar = CURVE_ORDER - scalar
        compressed = PrivateKey(scalar.to_bytes(32, "big")).public_key.format(compressed=True)
    secret = scalar.to_bytes(32, "big")
    return AuthorityKeyPair(
        secret=base58.b58encode_check(secret).decode(),
        public=base58.b58encode_check(_PUBLIC_KEY_VERSION + compressed[1:]).decode(),
        key_file=_KEY_FILE_PREFIX + secret,
    )


def public_key_of_secret(secret: str) -> str:
    """The public string for a base58check secret string (for checking vectors)."""
    return authority_key_pair(base58.b58decode_check(secret)).public


def is_authority_public_key(text: str) -> bool:
    try:
        payload = base58.b58decode_check(text)
    except ValueError:
        return False
    return len(payload) == 34 and payload[:2] == _PUBLIC_KEY_VERSION


def rpcauth_line(user: str, password: str, salt_hex: str) -> str:
    """`rpcauth=` value: HMAC-SHA256 keyed with the salt string over the password."""
    digest = hmac.new(salt_hex.encode(), password.encode(), hashlib.sha256).hexdigest()
    return f"{user}:{salt_hex}${digest}"
