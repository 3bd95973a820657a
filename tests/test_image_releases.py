"""Where the node image takes its release tarballs (docker/bitcoin-node/take-releases.sh), run
offline: RELEASES=directory checks the operator's releases/ against its SHA256SUMS and never
installs or downloads anything; the default, RELEASES=download, fetches the pinned 30.2 and
1.0.5 tarballs through fetch-verified.sh (tested on its own in test_image_build_scripts.py)."""

import hashlib
import io
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.support.constants import ROOT

IMAGE_DIR = ROOT / "docker" / "bitcoin-node"
DOCKERFILE = IMAGE_DIR / "Dockerfile"
TAKE = IMAGE_DIR / "take-releases.sh"
VERIFY = IMAGE_DIR / "verify-releases.sh"
BITCOIN = "30.99.0-g9f744fffc39d"  # a version other than the pinned one: directory mode allows it
SV2_TP = "1.0.5"
# Commands the directory mode must never run: each records its call, then fails.
FORBIDDEN = ("apt-get", "curl", "gpg", "fetch-verified.sh")


def _arg(name: str) -> str:
    (value,) = re.findall(rf"^ARG {name}=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    return value


def _tarball(top: str, members: tuple[str, ...]) -> bytes:
    """An upstream-layout release tarball whose binaries are scripts naming themselves."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member in members:
            data = f"#!/bin/sh\necho {member}\n".encode()
            info = tarfile.TarInfo(f"{top}/{member}")
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


BITCOIN_MEMBERS = ("bin/bitcoin", "bin/bitcoin-cli", "libexec/bitcoin-node")


def _releases(tmp_path: Path, host: str = "x86_64-linux-gnu", bitcoin: str = BITCOIN) -> Path:
    """releases/ as an operator lays it out: both tarballs and SHA256SUMS listing them."""
    releases = tmp_path / "releases"
    releases.mkdir()
    files = {
        f"bitcoin-{bitcoin}-{host}.tar.gz": _tarball(f"bitcoin-{bitcoin}", BITCOIN_MEMBERS),
        f"sv2-tp-{SV2_TP}-{host}.tar.gz": _tarball(f"sv2-tp-{SV2_TP}", ("bin/sv2-tp",)),
    }
    for name, data in files.items():
        (releases / name).write_bytes(data)
    _write_sums(releases, files)
    (releases / ".gitignore").write_text("*\n!.gitignore\n")
    return releases


def _write_sums(releases: Path, files: dict[str, bytes], extra: str = "") -> None:
    lines = [f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in files.items()]
    (releases / "SHA256SUMS").write_text("# checksums\n" + "".join(lines) + extra)


def _stubs(tmp_path: Path) -> Path:
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in FORBIDDEN:
        stub = stubs / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >>"{tmp_path}/calls"\nexit 97\n')
        stub.chmod(0o755)
    return stubs


def _take(tmp_path: Path, stubs: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": f"{stubs}:{IMAGE_DIR}:{os.environ['PATH']}",
        "TARGETARCH": "amd64",
        "RELEASES": "directory",
        "RELEASES_DIR": str(tmp_path / "releases"),
        "BITCOIN_VERSION": BITCOIN,
        "SV2_TP_VERSION": SV2_TP,
    } | env
    return subprocess.run(
        [str(TAKE), str(tmp_path / "out")], env=environment, capture_output=True, text=True, timeout=30
    )


def _calls(tmp_path: Path) -> list[str]:
    calls = tmp_path / "calls"
    return calls.read_text().splitlines() if calls.exists() else []


def test_the_default_build_downloads() -> None:
    assert _arg("RELEASES") == "download"


@pytest.mark.parametrize(("arch", "host"), [("amd64", "x86_64-linux-gnu"), ("arm64", "aarch64-linux-gnu")])
def test_directory_mode_installs_the_binaries_without_downloading(
    tmp_path: Path, arch: str, host: str
) -> None:
    _releases(tmp_path, host)
    result = _take(tmp_path, _stubs(tmp_path), TARGETARCH=arch)
    assert result.returncode == 0, result.stderr
    assert _calls(tmp_path) == []
    out = tmp_path / "out"
    for member in (*BITCOIN_MEMBERS, "bin/sv2-tp"):
        assert os.access(out / member, os.X_OK), member
        assert subprocess.run([out / member], capture_output=True, text=True).stdout == f"{member}\n"
    assert "3 file(s)" not in result.stderr  # .gitignore is the repository's, never a release file
    assert "2 file(s) in" in result.stderr


def _assert_refused(result: subprocess.CompletedProcess[str], tmp_path: Path, message: str) -> None:
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()
    assert _calls(tmp_path) == []


def test_a_checksum_mismatch_fails_naming_the_file(tmp_path: Path) -> None:
    releases = _releases(tmp_path)
    tarball = releases / f"sv2-tp-{SV2_TP}-x86_64-linux-gnu.tar.gz"
    tarball.write_bytes(tarball.read_bytes() + b"\0")
    result = _take(tmp_path, _stubs(tmp_path))
    _assert_refused(result, tmp_path, f"{tarball.name}: SHA-256 is ")


def test_a_tarball_without_an_entry_fails(tmp_path: Path) -> None:
    releases = _releases(tmp_path)
    name = f"bitcoin-{BITCOIN}-x86_64-linux-gnu.tar.gz"
    sums = releases / "SHA256SUMS"
    sums.write_text("".join(line for line in sums.read_text().splitlines(True) if name not in line))
    _assert_refused(_take(tmp_path, _stubs(tmp_path)), tmp_path, f"{name}: no entry in SHA256SUMS")


def test_a_listed_tarball_that_is_absent_fails(tmp_path: Path) -> None:
    releases = _releases(tmp_path)
    name = f"sv2-tp-{SV2_TP}-x86_64-linux-gnu.tar.gz"
    (releases / name).unlink()
    _assert_refused(_take(tmp_path, _stubs(tmp_path)), tmp_path, f"{name}: listed in SHA256SUMS but missing")


def test_another_version_than_the_build_argument_fails(tmp_path: Path) -> None:
    _releases(tmp_path, bitcoin="30.2")
    result = _take(tmp_path, _stubs(tmp_path))  # BITCOIN_VERSION names 30.99.0-…
    _assert_refused(result, tmp_path, f"bitcoin-{BITCOIN}-x86_64-linux-gnu.tar.gz: no entry in SHA256SUMS")


def test_every_file_in_the_folder_is_checked(tmp_path: Path) -> None:
    releases = _releases(tmp_path)
    (releases / "notes.txt").write_text("unlisted\n")
    _assert_refused(_take(tmp_path, _stubs(tmp_path)), tmp_path, "notes.txt: no entry in SHA256SUMS")


def test_without_sha256sums_nothing_is_taken(tmp_path: Path) -> None:
    (_releases(tmp_path) / "SHA256SUMS").unlink()
    _assert_refused(_take(tmp_path, _stubs(tmp_path)), tmp_path, "SHA256SUMS is missing")


@pytest.mark.parametrize(
    "line",
    ["0123  short-hash.tar.gz", f"{'A' * 64}  upper.tar.gz", f"{'a' * 64}  dir/escape.tar.gz", "garbage"],
)
def test_a_malformed_checksum_line_fails(tmp_path: Path, line: str) -> None:
    releases = _releases(tmp_path)
    with (releases / "SHA256SUMS").open("a") as sums:
        sums.write(line + "\n")
    _assert_refused(_take(tmp_path, _stubs(tmp_path)), tmp_path, "SHA256SUMS line 4 is not")


def test_two_hashes_for_one_file_fail(tmp_path: Path) -> None:
    releases = _releases(tmp_path)
    name = f"sv2-tp-{SV2_TP}-x86_64-linux-gnu.tar.gz"
    with (releases / "SHA256SUMS").open("a") as sums:
        sums.write(f"{'0' * 64}  {name}\n")
    _assert_refused(
        _take(tmp_path, _stubs(tmp_path)), tmp_path, f"{name}: SHA256SUMS lists it with different"
    )


def test_upstreams_star_and_other_platforms_entries_are_accepted(tmp_path: Path) -> None:
    releases = _releases(tmp_path)
    sums = releases / "SHA256SUMS"
    text = sums.read_text().replace("  bitcoin-", " *bitcoin-")
    sums.write_text(text + f"{'1' * 64}  bitcoin-{BITCOIN}-riscv64-linux-gnu.tar.gz\n")
    result = _take(tmp_path, _stubs(tmp_path))
    assert result.returncode == 0, result.stderr


def test_a_tarball_without_upstreams_layout_fails(tmp_path: Path) -> None:
    releases = _releases(tmp_path)
    name = f"bitcoin-{BITCOIN}-x86_64-linux-gnu.tar.gz"
    files = {p.name: p.read_bytes() for p in releases.glob("*.tar.gz")}
    files[name] = _tarball(f"bitcoin-{BITCOIN}", ("bin/bitcoin", "bin/bitcoin-cli"))
    (releases / name).write_bytes(files[name])
    _write_sums(releases, files)
    _assert_refused(_take(tmp_path, _stubs(tmp_path)), tmp_path, f"{name} does not hold")


def test_an_unknown_mode_fails(tmp_path: Path) -> None:
    _releases(tmp_path)
    _assert_refused(_take(tmp_path, _stubs(tmp_path), RELEASES="mirror"), tmp_path, "RELEASES must be")


def test_download_mode_fetches_the_pinned_releases(tmp_path: Path) -> None:
    """The default mode, with apt-get and fetch-verified.sh stubbed: the pinned URLs, hashes and
    guix.sigs commit reach fetch-verified.sh, whose verified files are installed."""
    stubs = _stubs(tmp_path)
    bitcoin, sv2_tp, host = _arg("BITCOIN_VERSION"), _arg("SV2_TP_VERSION"), "x86_64-linux-gnu"
    (stubs / "apt-get").write_text(f'#!/bin/sh\necho "apt-get $*" >>"{tmp_path}/calls"\n')
    tarballs = tmp_path / "fetched"
    tarballs.mkdir()
    (tarballs / f"bitcoin-{bitcoin}-{host}.tar.gz").write_bytes(
        _tarball(f"bitcoin-{bitcoin}", BITCOIN_MEMBERS)
    )
    (tarballs / f"sv2-tp-{sv2_tp}-{host}.tar.gz").write_bytes(_tarball(f"sv2-tp-{sv2_tp}", ("bin/sv2-tp",)))
    (stubs / "fetch-verified.sh").write_text(
        "#!/bin/sh\n"
        'line="fetch-verified.sh $* SUMS_URL=${SUMS_URL:-} KEYS=${KEYS_BASE_URL:-}"\n'
        f'echo "$line" >>"{tmp_path}/calls"\n'
        f'cp "{tarballs}/${{1##*/}}" "$3"\n'
    )
    env = {
        "RELEASES": "download",
        "BITCOIN_VERSION": bitcoin,
        "SV2_TP_VERSION": sv2_tp,
        "GUIX_SIGS_COMMIT": _arg("GUIX_SIGS_COMMIT"),
        "BITCOIN_SHA256_X86_64": _arg("BITCOIN_SHA256_X86_64"),
        "SV2_TP_SHA256_X86_64": _arg("SV2_TP_SHA256_X86_64"),
    }
    result = _take(tmp_path, stubs, **env)
    assert result.returncode == 0, result.stderr
    release = f"https://bitcoincore.org/bin/bitcoin-core-{bitcoin}"
    keys = f"https://raw.githubusercontent.com/bitcoin-core/guix.sigs/{_arg('GUIX_SIGS_COMMIT')}/builder-keys"
    calls = _calls(tmp_path)
    assert calls[:2] == [
        "apt-get update",
        "apt-get install -y --no-install-recommends ca-certificates curl gpg",
    ]
    bitcoin_call, sv2_tp_call = calls[2:]
    assert bitcoin_call.startswith(
        f"fetch-verified.sh {release}/bitcoin-{bitcoin}-{host}.tar.gz {_arg('BITCOIN_SHA256_X86_64')} "
    )
    assert bitcoin_call.endswith(f"SUMS_URL={release}/SHA256SUMS KEYS={keys}")
    assert sv2_tp_call.startswith(
        f"fetch-verified.sh https://github.com/stratum-mining/sv2-tp/releases/download/v{sv2_tp}/"
        f"sv2-tp-{sv2_tp}-{host}.tar.gz {_arg('SV2_TP_SHA256_X86_64')} "
    )
    assert sv2_tp_call.endswith("SUMS_URL= KEYS=")  # sv2-tp: the pinned hash alone
    assert os.access(tmp_path / "out" / "libexec" / "bitcoin-node", os.X_OK)


def test_download_mode_refuses_a_moving_guix_sigs_reference(tmp_path: Path) -> None:
    result = _take(tmp_path, _stubs(tmp_path), RELEASES="download", GUIX_SIGS_COMMIT="main")
    _assert_refused(result, tmp_path, "GUIX_SIGS_COMMIT must be a full commit hash")


def test_verify_releases_needs_a_folder_and_files(tmp_path: Path) -> None:
    usage = subprocess.run([str(VERIFY), str(tmp_path)], capture_output=True, text=True, timeout=10)
    assert usage.returncode == 2
    missing = subprocess.run(
        [str(VERIFY), str(tmp_path / "nowhere"), "x.tar.gz"], capture_output=True, text=True, timeout=10
    )
    assert missing.returncode == 1
    assert "is not a directory" in missing.stderr
