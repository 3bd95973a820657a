"""A one-node Kubernetes cluster whose pods really run (docs/testing.md#node-agent):

    with NodeCluster() as cluster:
        run(["pulumi", "up", ...], env={**os.environ, **cluster.env})
        cluster.kubectl("wait", "--for=condition=Ready", "pod", "--all", "-n", "sv2")

On a bridge of its own (host_network.py): the control plane (control_plane.py) with kube-scheduler,
the API server on the bridge's address; the local OCI registry (registry.py); containerd with its
CRI and the CNI bridge (container_runtime.py); the kubelet and kube-proxy (node_agent.py); unless
`network_policies=False`, kube-router's firewall controller, which enforces NetworkPolicies on the
bridge (policy_enforcer.py; a plain bridge enforces none). Two
stand-ins, named as such: a load-balancer controller that gives each LoadBalancer Service an address
of its own which kube-proxy routes (load_balancer.py), and storage: hostPath PersistentVolumes in
`volumes_dir`, made for a claim by `volume_for_claim`. Teardown removes every pod, stops it all,
unmounts, deletes the bridge, the iptables chains and ipsets, writes back the sysctls (host_state.py), and
fails when anything is left. Needs root, and the node piece of make e2e-tools. One at a time per host.

    .venv/bin/python -m tests.e2e.cluster.node_selftest   # its self-test
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.e2e.cluster import host_network, policy_enforcer, registry
from tests.e2e.cluster.container_runtime import ContainerRuntime
from tests.e2e.cluster.control_plane import ControlPlane, listeners, sigterm_to_exit
from tests.e2e.cluster.host_state import SAVED, HostState
from tests.e2e.cluster.node_agent import NodeAgent
from tests.e2e.cluster.oci_image import Rootfs, write_image
from tests.e2e.processes import E2EError, Process, ProcessGroup, free_port
from tests.e2e.toolchain import binary, missing

CGROUP = "sv2-e2e"  # the kubelet's cgroup root, in every v1 hierarchy
SANDBOX_IMAGE = "sv2-e2e.invalid/pause:local"  # imported at start; an .invalid host is never pulled
NEEDED = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet")
NEEDED_TOO = ("kube-proxy", "registry", "crictl", "pause")


class NodeClusterError(E2EError):
    """The node cluster failed to start, a process of it died, or its teardown left something."""


class NodeCluster:
    def __init__(
        self,
        workdir: Path | None = None,
        *,
        crd_dir: Path | None = None,
        install_crds: bool = True,
        node_name: str = "sv2-e2e-node",
        start_timeout: float = 240.0,
        network_policies: bool = True,
    ) -> None:
        """`workdir`: an absent or empty folder for everything it runs (kept after exit, emptied of
        mounts); default a temp dir, removed after exit. CRDs as in ControlPlane. `network_policies`:
        enforce NetworkPolicies (kube-router, the netpol piece of make e2e-tools), or not at all."""
        self._given_workdir = workdir
        self.network_policies = network_policies
        self.crd_dir, self.install_crds = crd_dir, install_crds
        self.node_name, self.start_timeout = node_name, start_timeout
        self.workdir = Path()
        self.registry = ""  # host:port of the local registry, plain HTTP
        self.startup_seconds = 0.0
        self.left_behind: list[str] = []  # after exit: what the teardown could not remove
        self.plane: ControlPlane | None = None
        self._group: ProcessGroup | None = None
        self._runtime: ContainerRuntime | None = None
        self._agent: NodeAgent | None = None
        self._enforcer: Process | None = None
        self._host: HostState | None = None
        self._network_up = False
        self._old_sigterm: Any = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> NodeCluster:
        if os.geteuid() != 0:
            raise NodeClusterError("the node cluster needs root (bridges, mounts, cgroups, iptables)")
        if absent := missing(*NEEDED, *NEEDED_TOO):
            raise NodeClusterError(f"missing {', '.join(absent)} (run: bash tests/e2e/tools.sh node)")
        if self.network_policies and (absent := missing("kube-router")):
            raise NodeClusterError(f"missing {absent[0]} (run: bash tests/e2e/tools.sh netpol)")
        if problems := host_network.conflicts():
            earlier = " ".join(map(str, previous_workdirs())) or "/tmp/sv2-e2e-node-*"
            raise NodeClusterError(
                "the host is not free for the node cluster: " + "; ".join(problems) + ". After a run killed"
                " before its teardown: .venv/bin/python -m tests.e2e.cluster.node_cluster --recover WORKDIR"
                f" (its working folder, e.g. {earlier})"
            )
        started = time.monotonic()
        if self._given_workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="sv2-e2e-node-"))
        else:
            self.workdir = self._given_workdir.resolve()
            self.workdir.mkdir(parents=True, exist_ok=True)
            if any(self.workdir.iterdir()):
                raise NodeClusterError(f"{self.workdir} is not empty")
        self._host = HostState(self.workdir, CGROUP)
        self._host.save()
        if threading.current_thread() is threading.main_thread():  # SIGTERM unwinds through __exit__
            self._old_sigterm = signal.signal(signal.SIGTERM, sigterm_to_exit)
        try:
            self._start(started + self.start_timeout)
        except BaseException:
            self.left_behind = self._teardown()
            if self.left_behind:
                print("node cluster: left behind after a failed start:\n  " + "\n  ".join(self.left_behind))
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        crashes = self._crashes()
        self.left_behind = self._teardown()
        problems = crashes + [f"left behind: {item}" for item in self.left_behind]
        if problems and kind is None:
            raise NodeClusterError("\n".join(problems))
        if problems:
            print("node cluster:\n  " + "\n  ".join(problems), file=sys.stderr)

    def _start(self, deadline: float) -> None:
        assert self._host is not None
        host_network.up()
        self._network_up = True
        self._host.make_cgroups()
        self.plane = ControlPlane(
            self.crd_dir,
            self.install_crds,
            start_timeout=deadline - time.monotonic(),
            address=host_network.GATEWAY,
            folder=self.workdir / "control-plane",
            load_balancer_pool=host_network.load_balancer_pool(),
            scheduler=True,
        )
        self.plane.__enter__()
        (self.workdir / "logs").mkdir()
        self._group = group = ProcessGroup(self.workdir / "logs")
        self.registry = f"{host_network.GATEWAY}:{free_port()}"
        registry.start(group, self.workdir / "registry", self.registry, deadline - time.monotonic())
        pause = self.workdir / "pause.oci.tar"
        write_image(pause, SANDBOX_IMAGE, Rootfs(files={"/pause": (binary("pause"), 0o755)}), ["/pause"])
        self._runtime = ContainerRuntime(self.workdir / "containerd", self.registry, SANDBOX_IMAGE)
        self._runtime.start(group, deadline - time.monotonic())
        self._runtime.import_image(pause)
        self._agent = NodeAgent(
            self.workdir / "node", self.plane, self.node_name, self._runtime.endpoint, CGROUP
        )
        (self.workdir / "node").mkdir()
        self._agent.start_kubelet(group, deadline - time.monotonic())
        self._agent.start_proxy(group, deadline - time.monotonic())
        if self.network_policies:
            self._enforcer = policy_enforcer.start(
                group, self.plane, self.node_name, deadline - time.monotonic()
            )
        (self.workdir / "volumes").mkdir()

    def _crashes(self) -> list[str]:
        found = []
        if self.plane is not None:
            try:
                self.plane.check_alive()
            except E2EError as error:
                found.append(str(error))
        for process in self._group.processes if self._group else []:
            if process.exit_code is not None:
                found.append(f"{process.name} exited with {process.exit_code}: {process.tail(10)}")
        return found

    def check_alive(self) -> None:
        """Raise if a process of the cluster has died."""
        if crashes := self._crashes():
            raise NodeClusterError("\n".join(crashes))

    def _teardown(self) -> list[str]:
        """Stops everything in the order that lets each part clean up after itself; returns what
        is left on the host (host_state.py)."""
        failed: list[str] = []
        agent, runtime = self._agent, self._runtime
        if agent is not None and agent.kubelet is not None:
            agent.kubelet.stop()  # first, or it would restart the pods removed next
        if runtime is not None and runtime.process is not None and runtime.process.exit_code is None:
            failed += [f"pod sandbox {s}" for s in runtime.remove_all_pods()]
        if self._enforcer is not None:
            self._enforcer.stop()  # before the sweep of its chains and ipsets (host_network.down)
        if agent is not None and agent.proxy is not None:
            agent.proxy.stop()
            agent.proxy_cleanup()  # whatever it misses, host_network.down sweeps
        if self._group is not None:
            self._group.stop()  # containerd, the registry
        if self.plane is not None:
            self.plane.__exit__(None, None, None)  # its crashes were noted before
        if self._host is not None:
            failed += self._host.clean()
        if self._network_up:
            failed += host_network.down()
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None
        left = failed + (self._host.leftovers() if self._host else [])
        if self._given_workdir is None and self.workdir != Path() and not any("mount" in i for i in left):
            shutil.rmtree(self.workdir, ignore_errors=True)
        return list(dict.fromkeys(left))

    # ---- what the pods stage uses ------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """Environment for tools (kubectl, pulumi) that should talk to this cluster."""
        return self._plane().env

    @property
    def kubeconfig(self) -> Path:
        return self._plane().kubeconfig

    @property
    def volumes_dir(self) -> Path:
        """Where the storage stand-in's hostPath volumes live (volume_for_claim)."""
        return self.workdir / "volumes"

    def describe(self) -> str:
        return (
            f"node cluster on {host_network.BRIDGE} {host_network.GATEWAY} up in {self.startup_seconds:.1f} s"
            f" (node {self.node_name}, registry {self.registry}, load-balancer stand-in pool"
            f" {host_network.LOAD_BALANCER_SUBNET}, hostPath storage stand-in; {self.enforcement})"
        )

    @property
    def enforcement(self) -> str:
        """What enforces NetworkPolicies here."""
        if self.network_policies:
            return f"NetworkPolicies enforced by {policy_enforcer.NAME}"
        return "NetworkPolicies not enforced (plain bridge)"

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        self.check_alive()
        return self._plane().kubectl(*args, input=input, check=check)

    def exec(self, namespace: str, pod: str, *command: str, container: str = "") -> str:
        """`command` run in a container of the pod (kubectl exec, through the API server and the
        kubelet); its output, or NodeClusterError with its exit code."""
        where = [f"--container={container}"] if container else []
        return self.kubectl("exec", f"--namespace={namespace}", pod, *where, "--", *command)

    def logs(self, namespace: str, pod: str, container: str = "", previous: bool = False) -> str:
        """A container's log (kubectl logs; `previous`: of its last terminated run)."""
        where = [f"--container={container}"] if container else []
        return self.kubectl(
            "logs", f"--namespace={namespace}", pod, *where, f"--previous={str(previous).lower()}"
        )

    def volume_for_claim(
        self, namespace: str, claim: str, *, size: str = "1Gi", owner_uid: int = 0, storage_class: str = ""
    ) -> Path:
        """The storage stand-in: a folder owned by `owner_uid` in volumes_dir and a hostPath
        PersistentVolume reserved for the claim `namespace/claim` (bound when the claim exists;
        `storage_class` must be the claim's). Retained when the claim is deleted (the volume is then
        Released: call this again, and the next claim of that name binds it, data kept).
        Returns the folder."""
        folder = self.volumes_dir / f"{namespace}-{claim}"
        folder.mkdir(exist_ok=True)
        os.chown(folder, owner_uid, owner_uid)
        volume: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"e2e-{namespace}-{claim}", "labels": {"sv2-e2e/storage": "stand-in"}},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": storage_class,
                "claimRef": {"namespace": namespace, "name": claim},
                "hostPath": {"path": str(folder), "type": "Directory"},
            },
        }
        self.kubectl("apply", "-f", "-", input=json.dumps(volume))
        name = volume["metadata"]["name"]
        if self.kubectl("get", "persistentvolume", name, "-o", "jsonpath={.status.phase}") == "Released":
            # Its claim was deleted: free it for the next claim of that name, data kept.
            unbind = [{"op": "remove", "path": f"/spec/claimRef/{key}"} for key in ("uid", "resourceVersion")]
            self.kubectl("patch", "persistentvolume", name, "--type=json", f"--patch={json.dumps(unbind)}")
        return folder

    def import_image(self, archive: Path) -> None:
        """An OCI layout tar (oci_image.py) into containerd's store, as if pulled."""
        self._runtime_or_fail().import_image(archive)

    def push_image(self, reference: str, forget: bool = True) -> None:
        """An image of containerd's store (imported) to the local registry; `forget` removes it from
        the store, so that pods must pull it from the registry."""
        runtime = self._runtime_or_fail()
        runtime.push(reference)
        if forget:
            runtime.forget(reference)

    @property
    def processes(self) -> dict[str, Process]:
        """Every process of the cluster by name: the control plane's and the node's."""
        node = {p.name: p for p in self._group.processes} if self._group else {}
        return {**(self.plane.processes if self.plane else {}), **node}

    def listeners(self) -> list[tuple[str, str]]:
        """(process, address) of every TCP socket the cluster's processes listen on."""
        return listeners(self.processes.values())

    def leftovers(self) -> list[str]:
        """What of the cluster is on the host now (after exit: what the teardown left)."""
        if self._host is None:
            raise NodeClusterError("the node cluster never started")
        return self._host.leftovers()

    def _plane(self) -> ControlPlane:
        if self.plane is None:
            raise NodeClusterError("the node cluster is not running")
        return self.plane

    def _runtime_or_fail(self) -> ContainerRuntime:
        if self._runtime is None:
            raise NodeClusterError("the node cluster is not running")
        return self._runtime


def previous_workdirs() -> list[Path]:
    """Working folders of node clusters in the temp dir that still hold a saved host state (the
    default ones, and those of harnesses that keep theirs one level down)."""
    temp = Path(tempfile.gettempdir())
    return sorted(p.parent for pattern in ("sv2-e2e-*/", "sv2-e2e-*/*/") for p in temp.glob(pattern + SAVED))


def recover(workdir: Path) -> list[str]:
    """The teardown of a cluster whose harness was killed (SIGKILL: its kubelet, containerd and
    control plane died with it, the shims and containers did not): kills those, unmounts, removes
    cgroups, writes the saved sysctls back, deletes the bridge, the chains and the ipsets; returns what
    is left."""
    host = HostState.load(workdir)
    killed = host.kill_processes()
    failed = host.clean() + host_network.down()
    print(f"node cluster recover: killed {len(killed)} processes, unmounted {len(host.unmounted)}")
    return failed + host.leftovers()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recover", type=Path, metavar="WORKDIR", help="clean up after a killed run")
    args = parser.parse_args()
    if args.recover is None:
        parser.print_help()
        return 2
    left = recover(args.recover)
    print("\n".join(f"left: {item}" for item in left) or "nothing left")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
