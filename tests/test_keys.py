"""Authority keys and rpcauth: the exact encodings upstream reads."""

import base58
import pytest
from coincurve import PrivateKey

from components.keys import (
    CURVE_ORDER,
    authority_key_pair,
    is_authority_public_key,
    public_key_of_secret,
    rpcauth_line,
)


@pytest.mark.parametrize(
    ("secret", "public"),
    [
        # Upstream's two example pairs
        # docs/upstream-behaviour.md#sv2-authority-keys-are-base58check-strings-with-a-version-prefix
        (
            "mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n",
            "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72",
        ),
        (
            "zmBEmPhqo3A92FkiLVvyCz6htc3e53ph3ZbD4ASqGaLjwnFLi",
            "9bDuixKmZqAJnrmP746n8zU1wyAQRrus7th9dxnkPg6RzQvCnan",
        ),
    ],
)
def test_sv2_key_vectors(secret: str, public: str) -> None:
    pair = authority_key_pair(base58.b58decode_check(secret))
    assert pair.secret == secret
    assert pair.public == public
    assert public_key_of_secret(secret) == public


def _first_odd_y_seed() -> bytes:
    for value in range(1, 100):
        seed = value.to_bytes(32, "big")
        if PrivateKey(seed).public_key.format(compressed=True)[0] == 0x03:
            return seed
    raise AssertionError("no odd-Y seed among the first 100")


def test_odd_y_seed_is_normalised_to_even_y() -> None:
    seed = _first_odd_y_seed()
    pair = authority_key_pair(seed)
    secret = base58.b58decode_check(pair.secret)
    assert int.from_bytes(secret, "big") == CURVE_ORDER - int.from_bytes(seed, "big")
    point = PrivateKey(secret).public_key.format(compressed=True)
    assert point[0] == 0x02
    # Same x-only key as the original seed, so the public string is what upstream derives.
    assert base58.b58decode_check(pair.public) == b"\x01\x00" + point[1:]
    assert pair.public.startswith("9")


def test_key_file_is_33_bytes_prefix_and_secret() -> None:
    pair = authority_key_pair(bytes(range(1, 33)))
    assert len(pair.key_file) == 33
    assert pair.key_file[0] == 0x01
    assert pair.key_file[1:] == base58.b58decode_check(pair.secret)


@pytest.mark.parametrize("seed", [bytes(32), CURVE_ORDER.to_bytes(32, "big"), b"\xff" * 32, b"short"])
def test_invalid_seeds_are_refused(seed: bytes) -> None:
    with pytest.raises(ValueError):
        authority_key_pair(seed)


def test_public_key_check() -> None:
    assert is_authority_public_key("9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72")
    assert not is_authority_public_key("mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n")
    assert not is_authority_public_key("9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH73")


def test_rpcauth_matches_bitcoin_core_vector() -> None:
    # The rpcauth line and password used by Bitcoin Core's functional test rpc_users.py.
    line = rpcauth_line(
        "rt", "cA773lm788buwYe4g4WT+05pKyNruVKjQ25x3n0DQcM=", "93648e835a54c573682c2eb19f882535"
    )
    assert line == (
        "rt:93648e835a54c573682c2eb19f882535$7681e9c5b74bdd85e78166031d2058e1069b3ed7ed967c93fc63abba06f31144"
    )
