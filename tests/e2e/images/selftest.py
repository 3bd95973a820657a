"""Self-test of the e2e's images (builds.py) on a private engine (engine.py): one line per check.

    .venv/bin/python -m tests.e2e.images.selftest [--folder DIR] [--no-push]

Imports the base, checks the binaries' shared libraries against it, builds the node image in its
air-gapped mode and the pool and translator stand-ins (each timed; every build and container
without a network), runs each container read-only as a non-root user without capabilities (the
node's entrypoint brings bitcoin-node and sv2-tp up under supervisord on a private signet and
stops cleanly), proves that a checksum mismatch and a base without supervisor fail the node build
with their own messages, pushes the three images to a throwaway registry on 127.0.0.1 (the
cached `registry`) and pulls one back by digest, then stops the engine and checks that nothing
is left. Exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from components import image_contract
from components.keys import authority_key_pair
from components.renderers import bitcoin_conf, sv2_tp_conf
from components.stack_config import parse_settings
from tests.e2e.chain.node import binaries
from tests.e2e.images import builds
from tests.e2e.images.engine import NO_NETWORK, Build, Docker, docker_engine, engine_processes, mounts_under
from tests.e2e.processes import LOOPBACK, E2EError, ProcessGroup, free_port, wait
from tests.e2e.toolchain import bin_dir

# As the pods run them: read-only root, no capabilities, each app's own non-root user.
RESTRICTED = (NO_NETWORK, "--read-only", "--cap-drop", "ALL")
USERS = {"pool_sv2": "10010", "translator_sv2": "10020"}  # components/pool.py, components/translator.py
SIGNET_ADDRESS = "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"  # BIP-173 test vector


class Checks:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def step(self, name: str, check: Callable[[], str]) -> None:
        start = time.monotonic()
        try:
            detail = check()
        except E2EError as error:
            self.failed.append(name)
            print(f"images {name}: FAILED ({time.monotonic() - start:.1f} s): {error}", flush=True)
        else:
            print(f"images {name}: ok ({detail})", flush=True)


def _restricted_run(docker: Docker, image: str, user: str, entrypoint: str, *args: str) -> str:
    return docker("run", "--rm", *RESTRICTED, "--user", user, "--entrypoint", entrypoint, image, *args)


def _data_tmpfs() -> list[str]:
    """The node's data volume, writable by its user: Bitcoin Core writes there even for -version."""
    uid = image_contract.UID
    return ["--tmpfs", f"{image_contract.DATA_DIR}:uid={uid},gid={image_contract.GID},mode=0750"]


def _size(docker: Docker, image: str) -> str:
    return f"{int(docker('image', 'inspect', '--format', '{{.Size}}', image)) / 2**20:.0f} MiB"


def built(docker: Docker, build: Build) -> str:
    return f"{build.require_success().tag} in {build.seconds:.1f} s, {_size(docker, build.tag)}"


def check_libraries(docker: Docker, base: str) -> str:
    programs = {name: path for name, path in binaries().items() if name != "supervisord"}
    missing = {name: libs for name, libs in builds.missing_libraries(docker, base, programs).items() if libs}
    if missing:
        raise E2EError(f"shared libraries missing in {base}: {missing}")
    return f"ldd finds every library of {', '.join(programs)} in {base}"


# What apt-get and fetch-verified.sh print when they run.
FETCHING = re.compile(r"^(Get|Hit|Ign|Err):\d+ |^Reading package lists|^fetch-verified: ", re.MULTILINE)


def check_node_offline(build: Build) -> str:
    """The build log shows the offline path: releases verified, supervisor from the base."""
    output = build.output()
    for expected in ("RELEASES=directory", "match SHA256SUMS", "supervisor comes with the base image"):
        if expected not in output:
            raise E2EError(f"'{expected}' is not in the node build's log ({build.log})")
    if fetched := FETCHING.search(output):
        raise E2EError(f"the node build ran apt-get or fetch-verified.sh: '{fetched.group(0)}' ({build.log})")
    return "releases verified against SHA256SUMS, supervisor from the base, no apt-get, no download"


def check_node_binaries(docker: Docker, node: str, releases: builds.ChainReleases) -> str:
    commands = {
        ("bitcoin", "-m", "node", "-version"): releases.bitcoin_version,
        ("bitcoin-cli", "-version"): releases.bitcoin_version,
        ("sv2-tp", "-version"): releases.sv2_tp_version,
    }
    reports = []
    for (program, *args), version in commands.items():
        output = docker("run", "--rm", *RESTRICTED, "--user", str(image_contract.UID), *_data_tmpfs(),
                        "--entrypoint", program, node, *args)  # fmt: skip
        reports.append(output.splitlines()[0])
        if f"v{version}" not in reports[-1]:
            raise E2EError(f"'{reports[-1]}' does not report v{version}")
    return " | ".join(reports)


def _node_files(folder: Path) -> dict[str, Path]:
    """A private signet's configs as the program renders them, and a TP key, to mount."""
    settings = parse_settings({"payoutAddress": SIGNET_ADDRESS, "signetChallenge": "51"})
    files = folder / "node-files"
    files.mkdir(exist_ok=True)
    (files / "bitcoin.conf").write_text(bitcoin_conf(settings, "e2e:00$00"))
    (files / "sv2-tp.conf").write_text(sv2_tp_conf(settings))
    (files / "sv2_authority_key").write_bytes(authority_key_pair(os.urandom(32)).key_file)
    for path in files.iterdir():
        path.chmod(0o444)
    return {
        image_contract.BITCOIN_CONF_PATH: files / "bitcoin.conf",
        image_contract.SV2_TP_CONF_PATH: files / "sv2-tp.conf",
        image_contract.TP_KEY_PATH: files / "sv2_authority_key",
    }


def check_node_entrypoint(docker: Docker, node: str, folder: Path) -> str:
    """The image's own entrypoint: supervisord brings up the node, then sv2-tp; the liveness probe
    answers; SIGTERM stops everything and the container exits 0."""
    uid = image_contract.UID
    mounts = [a for dest, src in _node_files(folder).items() for a in ("--volume", f"{src}:{dest}:ro")]
    tmpfs = [*_data_tmpfs(), "--tmpfs", "/tmp:mode=1777"]
    name = f"e2e-node-{os.getpid()}"
    start = time.monotonic()
    docker("run", "--detach", "--name", name, *RESTRICTED, "--user", f"{uid}:{uid}", *tmpfs, *mounts,
           "--env", f"{image_contract.CHAIN_ENV}=signet", node)  # fmt: skip
    try:
        logs: Callable[[], str] = lambda: docker("logs", name)  # noqa: E731
        wait(lambda: "success: sv2-tp entered RUNNING state" in logs() or None, 120, "sv2-tp RUNNING")
        up = time.monotonic() - start
        wait(
            lambda: docker("exec", name, *image_contract.LIVENESS_COMMAND) is not None, 60, "node-probe alive"
        )
        stop = time.monotonic()
        docker("stop", "--time", "120", name, timeout=180)
        state = json.loads(docker("inspect", "--format", "{{json .State}}", name))
        if state["ExitCode"] != 0:
            raise E2EError(f"the node container exited {state['ExitCode']}: {logs()[-600:]}")
        return (
            f"supervisord up, bitcoin-node and sv2-tp RUNNING in {up:.1f} s, node-probe alive, "
            f"SIGTERM to exit 0 in {time.monotonic() - stop:.1f} s"
        )
    finally:
        docker("rm", "--force", name)


def check_sv2_app(docker: Docker, app: builds.SV2App) -> str:
    image = builds.sv2_app_image_name(app)
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", image))
    # Docker leaves out what the image does not set (no USER: root, as upstream).
    layout = (
        config.get("Entrypoint"),
        config.get("WorkingDir"),
        config.get("User", ""),
        f"APP={app}" in config.get("Env", []),
    )
    if layout != (["/bin/sh", "-c", "/app/${APP}"], "/app", "", True):
        raise E2EError(f"{image} is not laid out like stratumv2/{app}:v0.2.0: {config}")
    version = _restricted_run(docker, image, USERS[app], f"/app/{app}", "--version").strip()
    # Upstream's entrypoint runs the app on its default config in /app, and ignores arguments.
    try:
        docker("run", "--rm", *RESTRICTED, "--user", USERS[app], image, "--version")
    except E2EError as error:
        if "-config.toml" not in str(error) or "not found" not in str(error):
            raise
    else:
        raise E2EError(f"{image}'s entrypoint passed container args to the app")
    size = _size(docker, image)
    return f"{version}; entrypoint /bin/sh -c /app/$APP in /app, root by default (as upstream); {size}"


def check_mismatch_fails(docker: Docker, folder: Path, base: str) -> str:
    context = builds.node_context(folder / "mismatch")
    with builds.staged_releases(context) as releases:
        victim = f"sv2-tp-{releases.sv2_tp_version}-{releases.host}.tar.gz"
        sums = context / "releases" / "SHA256SUMS"
        sums.write_text(sums.read_text().replace(releases.sha256[victim], "0" * 64))
        build = builds.build_node_image(docker, context, releases, base)
    expected = f"verify-releases: {victim}: SHA-256 is {releases.sha256[victim]}, SHA256SUMS lists {'0' * 64}"
    if build.exit_code == 0 or expected not in build.output():
        raise E2EError(f"the node build with a wrong checksum exited {build.exit_code} without '{expected}'")
    return f"exit {build.exit_code} in {build.seconds:.1f} s: {expected}"


def check_base_without_supervisor(docker: Docker, folder: Path, base: str) -> str:
    bare = f"{base.split(':')[0]}:without-supervisor"
    context = folder / "bare-base"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(f"FROM {base}\nRUN dpkg --purge --force-depends supervisor\n")
    docker.build(context, bare, {}).require_success()
    node_context = builds.node_context(folder / "bare")
    with builds.staged_releases(node_context) as releases:
        build = builds.build_node_image(docker, node_context, releases, bare)
    expected = "The base image has no supervisor and apt-get could not install it"
    if build.exit_code == 0 or expected not in build.output():
        raise E2EError(f"the node build on {bare} exited {build.exit_code} without '{expected}'")
    return f"exit {build.exit_code}: {expected}"


def _registry(group: ProcessGroup, folder: Path) -> str:
    port = free_port()
    config = folder / "registry.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {folder / 'registry'}\n"
        f"http:\n  addr: {LOOPBACK}:{port}\n"
    )
    registry = group.start("registry", [bin_dir() / "registry", "serve", config])
    address = f"{LOOPBACK}:{port}"
    wait(lambda: urllib.request.urlopen(f"http://{address}/v2/", timeout=2).status == 200 or None, 30,
         "the registry answering", [registry])  # fmt: skip
    return address


def check_push(docker: Docker, images: list[str], registry: str) -> str:
    pushed = [builds.push(docker, image, registry) for image in images]
    for reference in pushed:
        name, digest = reference.removeprefix(f"{registry}/").split("@")
        request = urllib.request.Request(
            f"http://{registry}/v2/{name}/manifests/{digest}",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            if answer.headers["Docker-Content-Digest"] != digest:
                raise E2EError(
                    f"the registry serves {answer.headers['Docker-Content-Digest']} for {reference}"
                )
    # One back by digest, after removing every local name of it.
    docker("rmi", pushed[-1].split("@")[0] + ":" + images[-1].rsplit(":", 1)[1], images[-1])
    docker("pull", pushed[-1], timeout=300)
    return "; ".join(pushed) + "; the last pulled back by digest"


def clean_stop(folder: Path) -> str:
    leftovers = [command for _, command in engine_processes(folder)] + mounts_under(folder)
    if leftovers:
        raise E2EError(f"left behind: {leftovers}")
    return "no engine process and no mount left under the work folder"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folder", type=Path, help="work folder (default: a new temporary one)")
    parser.add_argument("--no-push", action="store_true", help="skip the push to a throwaway registry")
    options = parser.parse_args(argv)
    folder = (options.folder or Path(tempfile.mkdtemp(prefix="sv2-e2e-images-"))).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    checks = Checks()
    images: dict[str, str] = {}
    try:
        with docker_engine(folder / "engine") as docker, ProcessGroup(folder) as group:
            base = builds.import_base(docker)
            checks.step("base imported", lambda: f"{base}, {_size(docker, base)}")
            checks.step("shared libraries", lambda: check_libraries(docker, base))
            context = builds.node_context(folder)
            with builds.staged_releases(context) as releases:
                node = builds.build_node_image(docker, context, releases, base)
            checks.step("node build", functools.partial(built, docker, node))
            checks.step("node build offline", lambda: check_node_offline(node))
            images["node"] = node.tag
            for app in builds.SV2_APPS:
                app_build = builds.build_sv2_app_image(docker, app, base, folder)
                checks.step(f"{app} build", functools.partial(built, docker, app_build))
                images[app] = app_build.tag
            checks.step("node binaries", lambda: check_node_binaries(docker, node.tag, releases))
            checks.step("node entrypoint", lambda: check_node_entrypoint(docker, node.tag, folder))
            for app in builds.SV2_APPS:
                checks.step(f"{app} run", functools.partial(check_sv2_app, docker, app))
            checks.step("checksum mismatch", lambda: check_mismatch_fails(docker, folder, base))
            checks.step(
                "base without supervisor", lambda: check_base_without_supervisor(docker, folder, base)
            )
            if not options.no_push:
                registry = _registry(group, folder)
                checks.step("push", lambda: check_push(docker, list(images.values()), registry))
    except E2EError as error:
        checks.failed.append("engine")
        print(f"images engine: FAILED: {error}", flush=True)
    checks.step("clean stop", lambda: clean_stop(folder))
    print(f"images: {len(checks.failed)} failed{': ' + ', '.join(checks.failed) if checks.failed else ''}")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
