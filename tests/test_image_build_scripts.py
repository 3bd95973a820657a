"""Build-time scripts of the node image, run offline.

fetch-verified.sh is run against a fake release (file:// URLs) signed with throwaway GPG
keys, which the tests pin themselves; check-version.sh against commands that print
version lines. The pins the image ships are checked for form and documentation.
"""

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

IMAGE_DIR = Path(__file__).resolve().parents[1] / "docker" / "bitcoin-node"
FETCH = IMAGE_DIR / "fetch-verified.sh"
CHECK_VERSION = IMAGE_DIR / "check-version.sh"
SHIPPED_PINS = IMAGE_DIR / "trusted-builders.txt"

TARBALL = "bitcoin-30.2-x86_64-linux-gnu.tar.gz"
CONTENT = b"not really a tarball\n"
SHA256 = hashlib.sha256(CONTENT).hexdigest()
BUILDERS = ("alice", "bob", "mallory")  # mallory's key is never pinned unless a test says so

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


@dataclass
class Signers:
    home: Path  # the signing keyring
    keys: Path  # public keys as guix.sigs serves them: <name>.gpg
    fingerprints: dict[str, str]

    def pins(self, *names: str) -> str:
        """A trusted-builders file pinning each named builder's own key."""
        return "".join(f"{name} {self.fingerprints[name]}\n" for name in names)


@pytest.fixture(scope="module")
def signers(tmp_path_factory: pytest.TempPathFactory):
    """Throwaway builder keys."""
    root = tmp_path_factory.mktemp("signers")
    home = root / "gnupg"
    home.mkdir(mode=0o700)
    keys = root / "keys"
    keys.mkdir()
    fingerprints = {}
    for name in BUILDERS:
        uid = f"{name} <{name}@example.invalid>"
        _gpg(home, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
        (keys / f"{name}.gpg").write_bytes(_gpg(home, "--armor", "--export", uid))
        listing = _gpg(home, "--with-colons", "--list-keys", uid).decode()
        fingerprints[name] = re.findall(r"^fpr:+([0-9A-F]{40}):", listing, re.MULTILINE)[0]
    yield Signers(home, keys, fingerprints)
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
    signers: Signers,
    release: Path,
    pinned: str = SHA256,
    signed: bool = True,
    pins: str | None = None,
    keys: Path | None = None,
    min_sigs: str = "2",
) -> subprocess.CompletedProcess:
    """fetch-verified.sh on the release; pins (the trusted-builders file) pins alice and bob
    unless given, and key files come from keys (signers.keys unless given)."""
    env = {key: value for key, value in os.environ.items() if key != "GNUPGHOME"}
    if signed:
        pin_file = tmp_path / "trusted-builders.txt"
        pin_file.write_text(signers.pins("alice", "bob") if pins is None else pins)
        env |= {
            "SUMS_URL": f"file://{release}/SHA256SUMS",
            "KEYS_BASE_URL": f"file://{keys or signers.keys}",
            "TRUSTED_BUILDERS": str(pin_file),
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
def test_good_release_passes(signers: Signers, tmp_path: Path) -> None:
    # mallory's signature is by a key outside the keyring: ignored, as upstream's other builders.
    release = _release(tmp_path, signers.home, ("alice", "mallory", "bob"))
    result = _fetch(tmp_path, signers, release)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.tar.gz").read_bytes() == CONTENT
    assert result.stderr.count("good signature:") == 2


@needs_gpg
def test_the_pins_decide_whose_signatures_count(signers: Signers, tmp_path: Path) -> None:
    release = _release(tmp_path, signers.home, ("alice", "mallory"))
    refused = _fetch(tmp_path, signers, release)
    _assert_refused(refused, tmp_path, "1 good signature(s) by pinned builder keys, 2 required")
    accepted = _fetch(tmp_path, signers, release, pins=signers.pins("alice", "mallory"))
    assert accepted.returncode == 0, accepted.stderr


@needs_gpg
@pytest.mark.parametrize("change", ["replaced", "added"])
def test_key_file_with_an_unpinned_key_fails(signers: Signers, tmp_path: Path, change: str) -> None:
    """Whoever controls the key files (a moving branch, a compromised mirror) cannot slip
    in a key of their own, even one whose signatures are good."""
    keys = tmp_path / "keys"
    shutil.copytree(signers.keys, keys)
    mallory = (signers.keys / "mallory.gpg").read_bytes()
    alice = mallory if change == "replaced" else (keys / "alice.gpg").read_bytes() + mallory
    (keys / "alice.gpg").write_bytes(alice)
    release = _release(tmp_path, signers.home, ("alice", "mallory", "bob"))
    result = _fetch(tmp_path, signers, release, keys=keys)
    _assert_refused(result, tmp_path, "key file of builder 'alice' holds [")
    assert signers.fingerprints["mallory"] in result.stderr
    assert f"not only the pinned key {signers.fingerprints['alice']}" in result.stderr


@needs_gpg
def test_builder_without_key_only_lowers_the_count(signers: Signers, tmp_path: Path) -> None:
    release = _release(tmp_path, signers.home, ("alice", "bob"))
    pins = signers.pins("alice") + f"gone {'A' * 40}\n" + signers.pins("bob")
    result = _fetch(tmp_path, signers, release, pins=pins)
    assert result.returncode == 0, result.stderr
    assert "no key file for builder 'gone'" in result.stderr


@needs_gpg
@pytest.mark.parametrize(
    "line",
    [
        "alice {short}",
        "alice {lower}",
        "alice {spaced}",
        "alice",
        "alice {fpr} extra",
        "../alice {fpr}",
    ],
    ids=["key-id", "lowercase", "spaced", "no-fingerprint", "extra-field", "path-in-name"],
)
def test_malformed_pin_fails(signers: Signers, tmp_path: Path, line: str) -> None:
    """Only a full fingerprint, as gpg prints it, pins a key: a short key ID can be forged."""
    fpr = signers.fingerprints["alice"]
    spaced = " ".join(fpr[i : i + 4] for i in range(0, 40, 4))
    pin = line.format(short=fpr[-16:], lower=fpr.lower(), spaced=spaced, fpr=fpr)
    release = _release(tmp_path, signers.home, ("alice", "bob"))
    result = _fetch(tmp_path, signers, release, pins="# a comment\n\n" + pin + "\n" + signers.pins("bob"))
    _assert_refused(result, tmp_path, "is not '<name> <40 uppercase hex digits>'")


@needs_gpg
def test_pins_without_a_builder_fail(signers: Signers, tmp_path: Path) -> None:
    release = _release(tmp_path, signers.home, ("alice", "bob"))
    result = _fetch(tmp_path, signers, release, pins="# nobody\n")
    _assert_refused(result, tmp_path, "pins no builder")


@needs_gpg
def test_pinned_hash_mismatch_fails(signers: Signers, tmp_path: Path) -> None:
    release = _release(tmp_path, signers.home, ("alice", "bob"))
    result = _fetch(tmp_path, signers, release, pinned="ab" * 32)
    _assert_refused(result, tmp_path, "pinned is " + "ab" * 32)


@needs_gpg
def test_tampered_tarball_fails(signers: Signers, tmp_path: Path) -> None:
    release = _release(tmp_path, signers.home, ("alice", "bob"))
    (release / TARBALL).write_bytes(CONTENT + b"evil")
    _assert_refused(_fetch(tmp_path, signers, release), tmp_path, "SHA-256 is ")


@needs_gpg
def test_bad_signature_fails(signers: Signers, tmp_path: Path) -> None:
    release = _release(tmp_path, signers.home, ("alice", "bob"))
    # Still lists the right hash: only the signature check can catch this edit.
    with (release / "SHA256SUMS").open("ab") as sums:
        sums.write(f"{'1' * 64}  bitcoin-30.2-riscv64-linux-gnu.tar.gz\n".encode())
    _assert_refused(_fetch(tmp_path, signers, release), tmp_path, "BAD signature")


@needs_gpg
@pytest.mark.parametrize(
    "signed_by",
    [("alice", "mallory"), ("alice", "alice"), ()],
    ids=["unpinned-key", "same-key-twice", "unsigned"],
)
def test_too_few_good_signatures_fail(signers: Signers, tmp_path: Path, signed_by) -> None:
    release = _release(tmp_path, signers.home, signed_by)
    result = _fetch(tmp_path, signers, release)
    _assert_refused(result, tmp_path, "good signature(s) by pinned builder keys, 2 required")


@needs_gpg
def test_sums_listing_another_hash_fails(signers: Signers, tmp_path: Path) -> None:
    release = _release(tmp_path, signers.home, ("alice", "bob"), sums=f"{'2' * 64}  {TARBALL}\n".encode())
    _assert_refused(_fetch(tmp_path, signers, release), tmp_path, "signed SHA256SUMS lists")


@needs_gpg
def test_hash_only_mode(signers: Signers, tmp_path: Path) -> None:
    """Without SUMS_URL (sv2-tp) the pinned SHA-256 alone decides."""
    release = tmp_path / "release"
    release.mkdir()
    (release / TARBALL).write_bytes(CONTENT)
    assert _fetch(tmp_path, signers, release, signed=False).returncode == 0
    (tmp_path / "out.tar.gz").unlink()
    _assert_refused(
        _fetch(tmp_path, signers, release, pinned="0" * 64, signed=False), tmp_path, "pinned is " + "0" * 64
    )


def _dockerfile_arg(name: str) -> str:
    (value,) = re.findall(rf"^ARG {name}=(\S+)$", (IMAGE_DIR / "Dockerfile").read_text(), re.MULTILINE)
    return value


def test_shipped_pins_are_full_fingerprints_and_documented() -> None:
    lines = [line for line in SHIPPED_PINS.read_text().splitlines() if line and not line.startswith("#")]
    pins = dict(line.split() for line in lines)
    assert len(pins) == len(lines), "one builder a line, each builder once"
    assert len(set(pins.values())) == len(pins), "one key per builder"
    for name, fingerprint in pins.items():
        assert re.fullmatch(r"[0-9A-Za-z._-]+", name), name
        assert re.fullmatch(r"[0-9A-F]{40}", fingerprint), name
    # More pinned builders than signatures required: one missing or expired key is no outage.
    assert len(pins) > int(_dockerfile_arg("MIN_GOOD_SIGS"))
    # The key files come from one fixed commit, never a branch.
    commit = _dockerfile_arg("GUIX_SIGS_COMMIT")
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    readme = (IMAGE_DIR / "README.md").read_text()
    assert commit in readme
    for name, fingerprint in pins.items():
        row = rf"`{re.escape(name)}` \| `{fingerprint}`"
        assert re.search(row, readme), f"README.md must say where {name}'s pin comes from"


@needs_gpg
def test_shipped_pins_parse(signers: Signers, tmp_path: Path) -> None:
    """fetch-verified.sh reads the shipped file: every builder is looked up (none is found
    here), and none is rejected as malformed."""
    release = _release(tmp_path, signers.home, ("alice", "bob"))
    result = _fetch(tmp_path, signers, release, pins=SHIPPED_PINS.read_text(), keys=tmp_path)
    _assert_refused(result, tmp_path, "0 good signature(s) by pinned builder keys")
    names = [line.split()[0] for line in SHIPPED_PINS.read_text().splitlines() if line and line[0] != "#"]
    for name in names:
        assert f"no key file for builder '{name}'" in result.stderr


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
