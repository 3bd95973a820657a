"""containerd with its CRI for the node cluster's kubelet (docs/testing.md#node-agent), everything in
its own folder: root, state, socket, runc's state, the pods' network namespaces; the CNI config
beside it; images of the local registry pulled over plain HTTP.

What this kernel needs (without CAP_SYS_RESOURCE runc cannot write a container's oom_score_adj
below its own, so the CRI keeps it at least ours): docs/testing.md#node-agent.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.e2e.cluster import host_network
from tests.e2e.processes import E2EError, Process, ProcessGroup, output_of, wait
from tests.e2e.toolchain import binary, tool

CONFIG = """\
version = 2
root = "{folder}/root"
state = "{folder}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{folder}/containerd.sock"
[ttrpc]
  address = "{folder}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{folder}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  enable_selinux = false
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  BinaryName = "/usr/sbin/runc"
  Root = "{folder}/runc"
  SystemdCgroup = false
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{folder}/cni"
  max_conf_num = 1
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "{folder}/certs.d"
"""
HOSTS = """\
server = "http://{registry}"
[host."http://{registry}"]
  capabilities = ["pull", "resolve", "push"]
"""
NAMESPACE = "k8s.io"  # where the CRI keeps its images and containers


class ContainerRuntime:
    def __init__(self, folder: Path, registry: str, sandbox_image: str) -> None:
        self.folder, self.registry, self.sandbox_image = folder, registry, sandbox_image
        self.socket = folder / "containerd.sock"
        self.endpoint = f"unix://{self.socket}"
        self.process: Process | None = None

    def start(self, group: ProcessGroup, timeout: float) -> Process:
        (self.folder / "cni").mkdir(parents=True)
        cni = host_network.cni_config(self.folder / "cni-ipam")
        (self.folder / "cni" / "10-sv2-e2e.conflist").write_text(json.dumps(cni, indent=2))
        hosts = self.folder / "certs.d" / self.registry
        hosts.mkdir(parents=True)
        (hosts / "hosts.toml").write_text(HOSTS.format(registry=self.registry))
        config = self.folder / "config.toml"
        config.write_text(CONFIG.format(folder=self.folder, sandbox_image=self.sandbox_image))
        (self.folder / "crictl.yaml").write_text(
            f"runtime-endpoint: {self.endpoint}\nimage-endpoint: {self.endpoint}\ntimeout: 60\n"
        )
        self.process = group.start("containerd", [tool("containerd"), "--config", config])
        wait(
            lambda: self.ctr("version") or None, timeout, "containerd's socket", [self.process], interval=0.2
        )
        return self.process

    def ctr(self, *args: str) -> str:
        return output_of([tool("ctr"), "--address", self.socket, "--namespace", NAMESPACE, *args])

    def crictl(self, *args: str, timeout: float = 120) -> str:
        return output_of([binary("crictl"), "--config", self.folder / "crictl.yaml", *args], timeout=timeout)

    def import_image(self, archive: Path) -> None:
        """An OCI layout tar (oci_image.py) into the CRI's store, unpacked for its snapshotter."""
        self.ctr("images", "import", "--snapshotter", "overlayfs", str(archive))

    def push(self, reference: str) -> None:
        """An image of the store to the local registry (plain HTTP)."""
        self.ctr("images", "push", "--plain-http", reference)

    def forget(self, reference: str) -> None:
        """Removes an image from the store, so that the next pod that needs it pulls it."""
        self.ctr("images", "rm", "--sync", reference)

    def remove_all_pods(self, timeout: float = 120) -> list[str]:
        """Stops and removes every pod sandbox through the CRI (the CNI plugins take their network
        down: veth, address, rules); returns what is left after `timeout` (sandbox ids)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.crictl("rmp", "--force", "--all", timeout=timeout)
            except E2EError as error:
                if time.monotonic() > deadline:
                    return [f"crictl rmp: {error}"]
            left = self.crictl("pods", "--quiet").split()
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(1)
