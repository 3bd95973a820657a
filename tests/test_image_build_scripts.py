"""Build-time scripts of the node image, run offline.

fetch-verified.sh is run against a fake release (file:// URLs) signed with throwaway GPG
keys; check-version.sh against commands that print version lines.
"""

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

IMAGE_DIR = Path(__file__).resolve().parents[1] / "docker" / "bitcoin-node"
FETCH = IMAGE_DIR / "fetch-verified.sh"
CHECK_VERSION = IMAGE_DIR / "check-version.sh"

TARBALL = "bitcoin-30.2-x86_64-linux-gnu.tar.gz"
CONTENT = b"not really a tarball\n"
SHA256 = hashlib.sha256(CONTENT).hexdigest()
BUILDERS = ("alice", "bob", "mallory")  # mallory's key is never in BUILDER_KEYS

needs_gpg = pytest.mark.skipif(
    shutil.which("gpg") is None or shutil.which("curl") is None,
    reason="fetch-verified.sh needs gpg and curl (Debian packages gpg, curl)",
)


def _gpg(home: Path, *args: str) -> bytes:
    return subprocess.run(
        ["gpg", "--batch", "--quiet", "--homedir", str(home), *args],
        check=True,
        capture_output=True,
    ).stdout


@pytest.fixture(scope="module")
def signers(tmp_path_factory: pytest.TempPathFactory):
    """Throwaway builder keys: a signing keyring and a dir of public keys (<name>.gpg)."""
    root = tmp_path_factory.mktemp("signers")
    home = root / "gnupg"
    home.mkdir(mode=0o700)
    keys = root / "keys"
    keys.mkdir()
    for name in BUILDERS:
        uid = f"{name} <{name}@example.invalid>"
        _gpg(home, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
        (keys / f"{name}.gpg").write_bytes(_gpg(home, "--armor", "--export", uid))
    yield home, keys
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)


def _release(tmp_path: Path, home: Path, signed_by: tuple[str, ...], sums: bytes | None = None) -> Path:
    """A release dir: the tarball, SHA256SUMS and SHA256SUMS.asc (one armored block each)."""
    release = tmp_path / "release"
    release.mkdir()
    (release / TARBALL).write_bytes(CONTENT)
    sums = sums or f"{'0' * 64}  bitcoin-30.2.tar.gz\n{SHA256}  {TARBALL}\n".encode()
    (release / "SHA256SUMS").write_bytes(sums)
    signatures = b"".join(
        _gpg(
            home,
            "--local-user",
            f"{name}@example.invalid",
            "--armor",
            "--detach-sign",
            "--output",
            "-",
            str(release / "SHA256SUMS"),
        )
        for name in signed_by
    )
    (release / "SHA256SUMS.asc").write_bytes(signatures)
    return release


def _fetch(
    tmp_path: Path,
    keys: Path,
    release: Path,
    pinned: str = SHA256,
    signed: bool = True,
    builders: str = "alice bob",
    min_sigs: str = "2",
) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "GNUPGHOME"}
    if signed:
        env |= {
            "SUMS_URL": f"file://{release}/SHA256SUMS",
            "KEYS_BASE_URL": f"file://{keys}",
            "BUILDER_KEYS": builders,
            "MIN_GOOD_SIGS": min_sigs,
        }
    return subprocess.run(
        [str(FETCH), f"file://{release}/{TARBALL}", pinned, str(tmp_path / "out.tar.gz")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def _assert_refused(result: subprocess.CompletedProcess, tmp_path: Path, message: str) -> None:
    assert result.returncode != 0, result.stdout + result.stderr
    assert message in result.stderr
    assert not (tmp_path / "out.tar.gz").exists()


@needs_gpg
def test_good_release_passes(signers, tmp_path: Path) -> None:
    home, keys = signers
    # mallory's signature is by a key outside the keyring: ignored, as upstream's other builders.
    release = _release(tmp_path, home, ("alice", "mallory", "bob"))
    result = _fetch(tmp_path, keys, release)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.tar.gz").read_bytes() == CONTENT
    assert result.stderr.count("good signature:") == 2


@needs_gpg
def test_builder_without_key_only_lowers_the_count(signers, tmp_path: Path) -> None:
    home, keys = signers
    release = _release(tmp_path, home, ("alice", "bob"))
    result = _fetch(tmp_path, keys, release, builders="alice gone bob")
    assert result.returncode == 0, result.stderr
    assert "no usable key for builder 'gone'" in result.stderr


@needs_gpg
def test_pinned_hash_mismatch_fails(signers, tmp_path: Path) -> None:
    home, keys = signers
    release = _release(tmp_path, home, ("alice", "bob"))
    result = _fetch(tmp_path, keys, release, pinned="ab" * 32)
    _assert_refused(result, tmp_path, "pinned is " + "ab" * 32)


@needs_gpg
def test_tampered_tarball_fails(signers, tmp_path: Path) -> None:
    home, keys = signers
    release = _release(tmp_path, home, ("alice", "bob"))
    (release / TARBALL).write_bytes(CONTENT + b"evil")
    _assert_refused(_fetch(tmp_path, keys, release), tmp_path, "SHA-256 is ")


@needs_gpg
def test_bad_signature_fails(signers, tmp_path: Path) -> None:
    home, keys = signers
    release = _release(tmp_path, home, ("alice", "bob"))
    # Still lists the right hash: only the signature check can catch this edit.
    with (release / "SHA256SUMS").open("ab") as sums:
        sums.write(f"{'1' * 64}  bitcoin-30.2-riscv64-linux-gnu.tar.gz\n".encode())
    _assert_refused(_fetch(tmp_path, keys, release), tmp_path, "BAD signature")


@needs_gpg
@pytest.mark.parametrize(
    "signed_by",
    [("alice", "mallory"), ("alice", "alice"), ()],
    ids=["unknown-key", "same-key-twice", "unsigned"],
)
def test_too_few_good_signatures_fail(signers, tmp_path: Path, signed_by) -> None:
    home, keys = signers
    release = _release(tmp_path, home, signed_by)
    result = _fetch(tmp_path, keys, release)
    _assert_refused(result, tmp_path, "good builder signature(s), 2 required")


@needs_gpg
def test_sums_listing_another_hash_fails(signers, tmp_path: Path) -> None:
    home, keys = signers
    release = _release(tmp_path, home, ("alice", "bob"), sums=f"{'2' * 64}  {TARBALL}\n".encode())
    _assert_refused(_fetch(tmp_path, keys, release), tmp_path, "signed SHA256SUMS lists")


@needs_gpg
def test_hash_only_mode(tmp_path: Path) -> None:
    """Without SUMS_URL (sv2-tp) the pinned SHA-256 alone decides."""
    release = tmp_path / "release"
    release.mkdir()
    (release / TARBALL).write_bytes(CONTENT)
    assert _fetch(tmp_path, tmp_path, release, signed=False).returncode == 0
    (tmp_path / "out.tar.gz").unlink()
    _assert_refused(
        _fetch(tmp_path, tmp_path, release, pinned="0" * 64, signed=False), tmp_path, "pinned is " + "0" * 64
    )


@pytest.mark.parametrize(
    ("expected", "line", "ok"),
    [
        ("30.2", "Bitcoin Core daemon version v30.2.0 bitcoin-node", True),
        ("30.2", "Bitcoin Core RPC client version v30.2.0", True),
        ("1.0.5", "Sv2 Template Provider sv2-tp version v1.0.5", True),
        ("30.2", "Bitcoin Core daemon version v30.1.0 bitcoin-node", False),
        ("30.2", "Bitcoin Core daemon version v30.2.0rc1 bitcoin-node", False),
        ("1.0.5", "Sv2 Template Provider sv2-tp version v1.0.50", False),
        ("1.0.5", "no version here", False),
    ],
)
def test_check_version(expected: str, line: str, ok: bool) -> None:
    result = subprocess.run(
        [str(CHECK_VERSION), expected, "printf", "%s\\nCopyright (C) 2009-2025\\n", line],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert (result.returncode == 0) is ok, result.stdout + result.stderr


def test_check_version_fails_when_the_command_fails() -> None:
    result = subprocess.run([str(CHECK_VERSION), "30.2", "false"], capture_output=True, timeout=10)
    assert result.returncode != 0
