"""What the node cluster changes on the host beyond its network, put back at teardown, and the check
that nothing is left (docs/testing.md#node-agent).

Before the start, `HostState` records the sysctls the kubelet, kube-proxy and the bridge write
(the kubelet sets kernel.panic, kernel.panic_on_oops, vm.overcommit_memory and others; the pods'
gateway needs ip_forward), the interfaces there are, and which of the host paths the runtime may
create exist. At teardown `clean` unmounts whatever is still mounted under the working folder (the
kubelet's tmpfs volumes, the pods' network namespaces, the containers' root filesystems), removes
the pods' cgroups, writes the sysctls back and removes the host paths that were not there; then
`leftovers` lists anything that remains: processes, mounts, interfaces, iptables chains and rules,
ipsets, sysctls, cgroups, paths. It must come out empty.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.e2e.cluster import host_network

# Written by the kubelet (setupKernelTunables), kube-proxy (conntrack, route_localnet) or for the
# bridge; kube-proxy is configured not to need any of its own.
SYSCTLS = (
    "net.ipv4.ip_forward",
    "kernel.panic",
    "kernel.panic_on_oops",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.conf.all.route_localnet",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
)
# Where containerd, libcni and the kubelet put things outside their configured folders.
HOST_PATHS = (
    "/run/containerd",
    "/run/netns",
    "/var/lib/cni",
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/kubelet",
    "/etc/cni",
    "/etc/kubernetes",
    "/usr/libexec/kubernetes",
)
CGROUPS = Path("/sys/fs/cgroup")
SAVED = "host-state.json"


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctl(name: str) -> str | None:
    try:
        return _sysctl_path(name).read_text().strip()
    except OSError:
        return None  # not on this kernel (e.g. nf_conntrack not loaded yet)


def write_sysctl(name: str, value: str) -> None:
    _sysctl_path(name).write_text(value)


def interfaces() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def mounts_under(*folders: Path) -> list[str]:
    """Mount points under any of `folders`, deepest first (the order to unmount them)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == str(f) or point.startswith(f"{f}/") for f in folders):
            found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def cgroup_dirs(name: str) -> list[Path]:
    """The cgroup `name` (a top-level one) in each v1 hierarchy that has it."""
    return [h / name for h in sorted(CGROUPS.iterdir()) if (h / name).is_dir()]


class HostState:
    """The host before the cluster: recorded at construction, and saved in the working folder (for
    `recover` after a run killed before its teardown)."""

    def __init__(self, workdir: Path, cgroup: str) -> None:
        self.workdir, self.cgroup = workdir, cgroup
        self.sysctls = {name: read_sysctl(name) for name in SYSCTLS}
        self.interfaces = interfaces()
        self.paths = {path for path in HOST_PATHS if Path(path).exists()}
        self.unmounted: list[str] = []

    def save(self) -> None:
        record = {"cgroup": self.cgroup, "sysctls": self.sysctls, "interfaces": sorted(self.interfaces)}
        (self.workdir / SAVED).write_text(json.dumps({**record, "paths": sorted(self.paths)}, indent=2))

    @classmethod
    def load(cls, workdir: Path) -> HostState:
        record = json.loads((workdir / SAVED).read_text())
        state = cls(workdir, record["cgroup"])
        state.sysctls, state.paths = record["sysctls"], set(record["paths"])
        state.interfaces = set(record["interfaces"])
        return state

    def kill_processes(self, timeout: float = 15) -> list[str]:
        """SIGKILLs the cluster's processes still running (after a harness was killed, the shims
        and containers outlive containerd) and waits until they are gone; returns them."""
        found = self._processes()
        pids = [int(line.split()[0]) for line in found]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        return found

    def make_cgroups(self) -> None:
        """The kubelet's cgroup root in every v1 hierarchy, cpuset filled from the top (a new
        cpuset is empty, and a task cannot join an empty one)."""
        for hierarchy in sorted(CGROUPS.iterdir()):
            if not (hierarchy / "cgroup.procs").exists() or hierarchy.name == "unified":
                continue
            (hierarchy / self.cgroup).mkdir(exist_ok=True)
            for knob in ("cpuset.cpus", "cpuset.mems"):
                if (hierarchy / knob).exists():
                    (hierarchy / self.cgroup / knob).write_text((hierarchy / knob).read_text())

    def clean(self) -> list[str]:
        """Unmounts, removes cgroups, writes sysctls back, removes created paths; returns what failed."""
        failed = []
        for point in self._mounts():
            done = subprocess.run(["umount", point], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                failed.append(f"umount {point}: {done.stderr.strip()}")
            else:
                self.unmounted.append(point)
        for top in cgroup_dirs(self.cgroup):
            for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                try:
                    folder.rmdir()
                except OSError as error:
                    failed.append(f"rmdir {folder}: {error}")
            try:
                top.rmdir()
            except OSError as error:
                failed.append(f"rmdir {top}: {error}")
        for name, value in self.sysctls.items():
            if value is not None and read_sysctl(name) != value:
                try:
                    write_sysctl(name, value)
                except OSError as error:
                    failed.append(f"sysctl {name}={value}: {error}")
        for path in set(HOST_PATHS) - self.paths:
            if Path(path).exists() and not mounts_under(Path(path)):
                shutil.rmtree(path, ignore_errors=True)
        return failed

    def leftovers(self) -> list[str]:
        """Everything of the cluster that is still there, one line each; empty when it is all gone."""
        found = [f"process {p}" for p in self._processes()]
        found += [f"mount {m}" for m in self._mounts()]
        found += [f"interface {i}" for i in sorted(interfaces() - self.interfaces)]
        found += [f"iptables {rule}" for rule in host_network.owned_iptables()]
        found += [f"ipset {name}" for name in host_network.owned_ipsets()]
        for name, value in self.sysctls.items():
            now = read_sysctl(name)
            if value is not None and now != value:
                found.append(f"sysctl {name} = {now}, was {value}")
        found += [f"cgroup {c}" for c in cgroup_dirs(self.cgroup)]
        found += [f"path {p}" for p in sorted(set(HOST_PATHS) - self.paths) if Path(p).exists()]
        return found

    def _mounts(self) -> list[str]:
        """Mounts under the working folder, or under a host path that was not there before (what
        is under the others belongs to someone else)."""
        return mounts_under(self.workdir, *(Path(p) for p in HOST_PATHS if p not in self.paths))

    def _processes(self) -> list[str]:
        """'pid command' of processes started for the cluster: those naming the working folder
        (containerd, the shims, the kubelet...) or living in the pods' cgroups (the containers)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                cgroups = (entry / "cgroup").read_text()
            except OSError:
                continue  # gone meanwhile
            if (
                str(self.workdir) in command
                or f"/{self.cgroup}/" in cgroups
                or f":/{self.cgroup}\n" in cgroups
            ):
                found.append(f"{entry.name} {command.strip()[:160]}")
        return found
