"""The e2e's three images, built offline on a private engine (engine.py):

- the base: the rootfs tests/e2e/build/base_image.sh debootstrapped, imported as
  sv2-e2e/debian-bookworm-standin (a STAND-IN for debian:bookworm-slim, carrying supervisor);
- the node: docker/bitcoin-node in its air-gapped mode (RELEASES=directory) on that base, from
  the chain built here, staged in releases/ as upstream-layout tarballs with a SHA256SUMS;
- pool_sv2 and translator_sv2: STAND-INS for the Docker Hub images (sv2-apps.Dockerfile).

Names and repositories: tests/e2e/build/images.env.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import platform
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from components import image_contract
from components.bitcoin_node import build_args, image_tag
from components.setting_types import NodeBuild
from tests.e2e.chain.node import binaries
from tests.e2e.images.engine import NO_NETWORK, Build, Docker
from tests.e2e.processes import E2EError, output_of
from tests.e2e.toolchain import HERE as E2E_DIR
from tests.e2e.toolchain import cache_dir, pinned
from tests.support.constants import ROOT

IMAGE_PINS = E2E_DIR / "build" / "images.env"
NODE_CONTEXT = ROOT / image_contract.BUILD_CONTEXT
SV2_APPS_DOCKERFILE = Path(__file__).with_name("sv2-apps.Dockerfile")
SV2App = Literal["pool_sv2", "translator_sv2"]
SV2_APPS: tuple[SV2App, ...] = ("pool_sv2", "translator_sv2")
# As debian:bookworm-slim has them (`docker import` brings a filesystem, no configuration).
BASE_CHANGES = ("ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 'CMD ["bash"]')
# The repository's own file in releases/; anything else there is an operator's.
RELEASES_KEEP = ".gitignore"


def machine_arch() -> str:
    """This machine's architecture as Docker names it (the images are built for it alone)."""
    return {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()]


def base_rootfs() -> Path:
    tarball = cache_dir() / "images" / pinned("BASE_ROOTFS", IMAGE_PINS)
    if not tarball.is_file():
        raise E2EError(f"{tarball} is missing: build it first (bash tests/e2e/tools.sh images)")
    return tarball


def import_base(docker: Docker) -> str:
    """The base rootfs as an image, tagged with the start of its sha256; returns the name."""
    tarball = base_rootfs()
    digest = tarball.with_suffix(".sha256").read_text().strip()
    name = f"{pinned('BASE_IMAGE_REPOSITORY', IMAGE_PINS)}:{digest[:12]}"
    changes = [arg for change in BASE_CHANGES for arg in ("--change", change)]
    docker("import", *changes, "--message", "e2e stand-in for debian:bookworm-slim", tarball, name)
    return name


def missing_libraries(docker: Docker, image: str, programs: Mapping[str, Path]) -> dict[str, list[str]]:
    """For each program (name: binary on this host), the shared libraries `ldd` finds missing in
    `image`; empty when everything resolves."""
    mounts = [arg for name, path in programs.items() for arg in ("--volume", f"{path}:/check/{name}:ro")]
    script = 'for p in /check/*; do ldd "$p" | sed -n "s|^\\t*\\(.*\\) => not found$|${p##*/} \\1|p"; done'
    output = docker("run", "--rm", NO_NETWORK, *mounts, "--entrypoint", "/bin/sh", image, "-c", script)
    missing: dict[str, list[str]] = {name: [] for name in programs}
    for line in output.splitlines():
        name, library = line.split()
        missing[name].append(library)
    return missing


# --- the node image -----------------------------------------------------------------------------


def _reported_version(argv: Sequence[str | Path]) -> str:
    """The version a binary reports, as check-version.sh reads it: the word after "version v".
    In a throwaway datadir: even -version writes settings.json there."""
    with tempfile.TemporaryDirectory() as datadir:
        first = output_of([*argv, f"-datadir={datadir}"], timeout=30).splitlines()[0]
    match = re.search(r" version v?(\S+)", first)
    if not match:
        raise E2EError(f"{' '.join(map(str, argv))} reports no version: {first}")
    return match.group(1)


@dataclass(frozen=True)
class ChainReleases:
    """The chain built here as release tarballs: their versions, host and SHA-256 by file name."""

    bitcoin_version: str
    sv2_tp_version: str
    host: str
    sha256: dict[str, str]

    def node_build(self, base_image: str) -> NodeBuild:
        """The `nodeBuild` setting that builds the node image from them (pulumi up)."""
        return NodeBuild(
            base_image=base_image,
            releases="directory",
            bitcoin_version=self.bitcoin_version,
            sv2_tp_version=self.sv2_tp_version,
        )

    def node_build_config(self, base_image: str) -> dict[str, str]:
        """The same as the stack config value of `nodeBuild` (camelCase keys)."""
        return self.node_build(base_image).model_dump(by_alias=True, exclude_none=True)

    def build_args(self, base_image: str, arch: str) -> dict[str, str]:
        """docker/bitcoin-node's build arguments for them, as the program passes them."""
        return build_args(self.node_build(base_image), arch)


def _tarball(top: str, members: Mapping[str, Path]) -> bytes:
    """An upstream-layout release tarball, the same bytes for the same binaries (fixed times,
    owners and order; gzip without a timestamp)."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as packed,
        tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for member, source in sorted(members.items()):
            info = archive.gettarinfo(str(source), f"{top}/{member}")
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime, info.mode = 0, 0o755
            with source.open("rb") as data:
                archive.addfile(info, data)
    return buffer.getvalue()


def chain_tarballs() -> tuple[ChainReleases, dict[str, bytes]]:
    """The cached chain binaries as upstream names and lays out their release tarballs."""
    chain = binaries()
    names = ("bitcoin", "bitcoin-node", "bitcoin-cli", "sv2-tp")
    missing = [str(chain[name]) for name in names if not chain[name].exists()]
    if missing:
        raise E2EError(f"the chain is not built ({', '.join(missing)}): bash tests/e2e/build/chain.sh")
    bitcoin = _reported_version([chain["bitcoin"], "-m", "node", "-version"])
    sv2_tp = _reported_version([chain["sv2-tp"], "-version"])
    host = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}[machine_arch()]
    files = {
        f"bitcoin-{bitcoin}-{host}.tar.gz": _tarball(
            f"bitcoin-{bitcoin}",
            {
                "bin/bitcoin": chain["bitcoin"],
                "bin/bitcoin-cli": chain["bitcoin-cli"],
                "libexec/bitcoin-node": chain["bitcoin-node"],
            },
        ),
        f"sv2-tp-{sv2_tp}-{host}.tar.gz": _tarball(f"sv2-tp-{sv2_tp}", {"bin/sv2-tp": chain["sv2-tp"]}),
    }
    sums = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    return ChainReleases(bitcoin, sv2_tp, host, sums), files


@contextmanager
def staged_releases(context: Path) -> Iterator[ChainReleases]:
    """The chain's tarballs and their SHA256SUMS in `context`/releases/ (a node build context:
    docker/bitcoin-node or a copy of the project's) for the block; removed afterwards. Refuses
    when releases/ already holds anything but its .gitignore: an operator's files stay theirs."""
    folder = context / "releases"
    others = sorted(p.name for p in folder.iterdir() if p.name != RELEASES_KEEP)
    if others:
        raise E2EError(f"{folder} already holds {', '.join(others)}: not staging the e2e's releases there")
    releases, files = chain_tarballs()
    files["SHA256SUMS"] = "".join(f"{releases.sha256[n]}  {n}\n" for n in sorted(releases.sha256)).encode()
    try:
        for name, data in files.items():
            (folder / name).write_bytes(data)
        yield releases
    finally:
        for name in files:
            (folder / name).unlink(missing_ok=True)


def node_context(folder: Path) -> Path:
    """A copy of docker/bitcoin-node in `folder` (its releases/ as the repository has it), for a
    build that must not touch the checkout."""

    def operators_files(directory: str, names: list[str]) -> list[str]:
        if Path(directory) != NODE_CONTEXT / "releases":
            return []
        return [name for name in names if name != RELEASES_KEEP]

    copy = folder / "bitcoin-node"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(NODE_CONTEXT, copy, ignore=operators_files)
    return copy


def node_image_name(releases: ChainReleases, base_image: str, arch: str) -> str:
    """Local name of the node image: the program's tag (versions and platform) for these releases."""
    return f"{pinned('NODE_IMAGE_REPOSITORY', IMAGE_PINS)}:{image_tag(releases.node_build(base_image), arch)}"


def build_node_image(docker: Docker, context: Path, releases: ChainReleases, base_image: str) -> Build:
    """docker/bitcoin-node (at `context`, releases staged) built offline in its air-gapped mode."""
    arch = machine_arch()
    return docker.build(
        context, node_image_name(releases, base_image, arch), releases.build_args(base_image, arch)
    )


# --- the pool and translator stand-ins -----------------------------------------------------------


def sv2_app_image_name(app: SV2App) -> str:
    """e.g. sv2-e2e/pool_sv2:crate-0.2.0: the crate's version, never upstream's v0.2.0 tag."""
    key = {"pool_sv2": "POOL", "translator_sv2": "TRANSLATOR"}[app]
    return f"{pinned(f'{key}_IMAGE_REPOSITORY', IMAGE_PINS)}:crate-{pinned(f'SV2_{key}_CRATE_VERSION')}"


def build_sv2_app_image(docker: Docker, app: SV2App, base_image: str, folder: Path) -> Build:
    """The stand-in image of `app` from its cached binary, in a build context of its own."""
    context = folder / f"{app}-context"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    shutil.copy2(binaries()[app], context / app)
    shutil.copy2(SV2_APPS_DOCKERFILE, context / "Dockerfile")
    return docker.build(context, sv2_app_image_name(app), {"BASE_IMAGE": base_image, "APP": app})


# --- pushing ----------------------------------------------------------------------------------------


def push(docker: Docker, image: str, registry: str) -> str:
    """`image` pushed to `registry` (host:port) under the same name; returns the pushed reference
    by digest (registry/name@sha256:…), which the program's image settings accept."""
    remote = f"{registry}/{image}"
    docker("tag", image, remote)
    output = docker("push", remote, timeout=600)
    match = re.search(r"digest: (sha256:[0-9a-f]{64})", output)
    if not match:
        raise E2EError(f"docker push {remote} printed no digest: {output[-400:]}")
    return f"{remote.rsplit(':', 1)[0]}@{match.group(1)}"
