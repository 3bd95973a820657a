"""A private Docker engine for the e2e's image builds: containerd and dockerd of their own, with
their roots, state, pidfile and unix sockets in one folder of the run, and nothing of the host's
network touched (no bridge, no iptables rules, no masquerading, no IP forwarding: builds and
containers run with --network=none). overlay2 on cgroupfs (this kernel has cgroup v1).

    with docker_engine(folder, insecure_registry="10.88.0.1:5000") as docker:
        docker("image", "ls")
        build = docker.build(context, "name:tag", {"ARG": "value"})

Stopped by pid (dockerd, then containerd) when the block ends; then no process may still name the
folder and no mount may remain under it (a leftover is unmounted or killed, and reported as a
failure), and the folder's roots are removed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.processes import E2EError, ProcessGroup, output_of, wait

# Debian's docker.io and containerd (tests/e2e/build/node_agent.sh installs them).
DOCKERD = "dockerd"
CONTAINERD = "containerd"
# Images are built and run without a network: the builds must not need one.
NO_NETWORK = "--network=none"
# How long dockerd and containerd get between SIGTERM and SIGKILL.
STOP_GRACE = 30.0


def _executable(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise E2EError(f"{name} is not installed (tests/e2e/tools.sh node installs it)")
    return path


@dataclass(frozen=True)
class Build:
    """One `docker build`: its tag, how it ended and how long it took; its output is in `log`."""

    tag: str
    exit_code: int
    seconds: float
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def require_success(self) -> Build:
        if self.exit_code != 0:
            tail = "\n".join(self.output().splitlines()[-15:])
            raise E2EError(f"docker build of {self.tag} exited {self.exit_code} (log {self.log}):\n{tail}")
        return self


class Docker:
    """The docker CLI against one private engine, with a client config folder of its own."""

    def __init__(self, folder: Path, group: ProcessGroup) -> None:
        self.folder = folder
        self.group = group
        self.socket = folder / "docker.sock"

    @property
    def host(self) -> str:
        """DOCKER_HOST for other clients (pulumi-docker)."""
        return f"unix://{self.socket}"

    def argv(self, *args: str | Path) -> list[str | Path]:
        return [_executable("docker"), "--config", self.folder / "client", "--host", self.host, *args]

    def __call__(self, *args: str | Path, timeout: float = 300) -> str:
        """A docker command run to its end: its output, or E2EError with its exit code."""
        return output_of(self.argv(*args), timeout)

    def build(
        self,
        context: Path,
        tag: str,
        build_args: Mapping[str, str],
        *,
        dockerfile: Path | None = None,
        timeout: float = 1800,
    ) -> Build:
        """`docker build` with the classic builder (the docker CLI here has no buildx) and no
        network; the builder's output goes to a log in the engine's folder."""
        options: list[str | Path] = [NO_NETWORK, "--tag", tag]
        for name, value in build_args.items():
            options += ["--build-arg", f"{name}={value}"]
        if dockerfile is not None:
            options += ["--file", dockerfile]
        environment = dict(os.environ) | {"DOCKER_BUILDKIT": "0"}
        start = time.monotonic()
        process = self.group.start(
            f"build-{tag.replace('/', '_')}", self.argv("build", *options, context), environment
        )
        exit_code = process.wait_exit(timeout)
        return Build(tag, exit_code, time.monotonic() - start, process.log)

    def answers(self) -> bool:
        try:
            self("version", "--format", "{{.Server.Version}}", timeout=10)
        except E2EError:
            return False
        return True


def _containerd_config(root: Path) -> Path:
    """containerd for dockerd alone: its own root, state and sockets, no CRI plugin."""
    config = root / "config.toml"
    config.write_text(
        "\n".join(
            [
                "version = 2",
                f'root = "{root / "root"}"',
                f'state = "{root / "state"}"',
                'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
                # Its default, /opt/containerd, is the host's.
                '[plugins."io.containerd.internal.v1.opt"]',
                f'  path = "{root / "opt"}"',
                "[grpc]",
                f'  address = "{root / "containerd.sock"}"',
                "[ttrpc]",
                f'  address = "{root / "containerd.sock.ttrpc"}"',
                "[debug]",
                '  address = ""',
                "[metrics]",
                '  address = ""',
                "",
            ]
        )
    )
    return config


def _dockerd_argv(folder: Path, containerd_socket: Path, insecure_registry: str | None) -> list[str | Path]:
    config = folder / "daemon.json"
    # Not the host's /etc/docker/daemon.json, nor its /etc/docker/key.json (the engine's identity).
    config.write_text(json.dumps({"deprecated-key-path": str(folder / "key.json")}) + "\n")
    argv: list[str | Path] = [
        _executable(DOCKERD),
        "--config-file", config,
        "--data-root", folder / "data",
        "--exec-root", folder / "exec",
        "--pidfile", folder / "dockerd.pid",
        "--host", f"unix://{folder / 'docker.sock'}",
        "--containerd", containerd_socket,
        "--bridge=none",
        "--iptables=false",
        "--ip-masq=false",
        "--ip-forward=false",
        "--storage-driver=overlay2",
        "--exec-opt", "native.cgroupdriver=cgroupfs",
    ]  # fmt: skip
    if insecure_registry:
        argv += ["--insecure-registry", insecure_registry]
    return argv


def mounts_under(folder: Path) -> list[str]:
    """Mount points at or below `folder`, deepest first."""
    prefix = str(folder.resolve())
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), reverse=True)


# What an engine runs: only these may be found (and ended) as its leftovers.
ENGINE_PROGRAMS = frozenset({"dockerd", "containerd", "containerd-shim-runc-v2", "runc", "docker-init"})


def engine_processes(folder: Path) -> list[tuple[int, str]]:
    """Engine programs whose command line names `folder` (containerd shims, a stray dockerd)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            program = Path(os.readlink(entry / "exe")).name
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if program in ENGINE_PROGRAMS and str(folder) in command:
            found.append((int(entry.name), command.strip()))
    return found


# Host folders containerd 1.6 and dockerd 20.10 create whatever their configuration says (shim
# sockets, plugin discovery): removed again when this engine created them and they are empty.
HOST_FOLDERS = tuple(
    map(Path, ("/run/containerd/s", "/run/containerd", "/run/docker/plugins", "/run/docker"))
)


def _remove_created(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except FileNotFoundError:
            pass
        except OSError:  # in use by another engine by now: not ours to remove
            pass


def _clean_up(folder: Path, created: list[Path]) -> list[str]:
    """After the engine stopped: what it left behind (killed or unmounted here), then its roots
    and the host folders it created removed. Returns the leftovers, for the caller to report."""
    leftovers = []
    for pid, command in engine_processes(folder):
        leftovers.append(f"process {pid} ({command[:120]})")
        os.kill(pid, signal.SIGKILL)
    for point in mounts_under(folder):
        leftovers.append(f"mount {point}")
        output_of(["umount", "--lazy", point], timeout=30)
    for root in ("data", "exec", "containerd"):
        shutil.rmtree(folder / root, ignore_errors=True)
    _remove_created(created)
    return leftovers


@contextmanager
def docker_engine(
    folder: Path, *, insecure_registry: str | None = None, timeout: float = 60
) -> Iterator[Docker]:
    """containerd and dockerd under `folder`; `insecure_registry` (host:port) is a plain-HTTP
    registry the engine may push to and pull from (loopback registries are so already)."""
    folder = folder.resolve()
    containerd_root = folder / "containerd"
    containerd_root.mkdir(parents=True, exist_ok=True)
    containerd_socket = containerd_root / "containerd.sock"
    created = [host_folder for host_folder in HOST_FOLDERS if not host_folder.exists()]
    leftovers: list[str] = []
    try:
        with ProcessGroup(folder, grace=STOP_GRACE) as group:
            containerd = group.start(
                "containerd", [_executable(CONTAINERD), "--config", _containerd_config(containerd_root)]
            )
            wait(lambda: containerd_socket.is_socket() or None, timeout, "containerd's socket", [containerd])
            dockerd = group.start("dockerd", _dockerd_argv(folder, containerd_socket, insecure_registry))
            docker = Docker(folder, group)
            wait(lambda: docker.answers() or None, timeout, "dockerd answering", [dockerd, containerd])
            yield docker
    finally:
        leftovers = _clean_up(folder, created)
    if leftovers:
        raise E2EError(f"the Docker engine in {folder} left behind: {', '.join(leftovers)}")
