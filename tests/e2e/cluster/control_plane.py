"""A private Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager (and kube-scheduler).

    with ControlPlane() as cluster:
        run(["pulumi", "up", ...], env={**os.environ, **cluster.env})
        pod_security.wait_for_pods(cluster, "sv2", 3)

    .venv/bin/python -m tests.e2e.cluster.control_plane --shell  # prints `export KUBECONFIG=…`; Ctrl-C stops

Everything listens on 127.0.0.1 only, on free ports, with a per-run PKI in a temp dir removed on exit.
There is no kubelet and no scheduler: controllers create Pods (so Pod Security admission runs for
real) and they stay Pending. A stand-in for the cloud load-balancer controller gives every
LoadBalancer Service the ingress 127.0.0.1 (load_balancer.py). Binaries come from the e2e toolchain
(make e2e-tools); its self-test is control_plane_selftest.py.

The node cluster (node_cluster.py) starts it with `address` on a bridge it made (the API server
binds there, and the `kubernetes` Service's endpoint is that address, so pods reach it), the
scheduler, and a pool of load-balancer addresses that kube-proxy routes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from tests.e2e.cluster.load_balancer import LoadBalancerStandIn
from tests.e2e.cluster.pki import Pki
from tests.e2e.processes import LOOPBACK, E2EError, Process, ProcessGroup, free_port, wait
from tests.e2e.toolchain import bin_dir, default_crd_dir, missing, tool

SERVICE_CIDR = "10.0.0.0/24"  # only allocated from, never routed
FIRST_SERVICE_IP = "10.0.0.1"  # the `kubernetes` Service, hence in the serving cert
# What turns the program's workloads into Pods, plus what namespaces, service accounts and
# deletion need; nothing cloud-related.
CONTROLLERS = (
    "deployment-controller,replicaset-controller,statefulset-controller,horizontal-pod-autoscaler-controller,"
    "disruption-controller,endpoints-controller,endpointslice-controller,garbage-collector-controller,"
    "namespace-controller,serviceaccount-controller,serviceaccount-token-controller,"
    "root-ca-certificate-publisher-controller,"
    # Claims carry the pvc-protection finalizer: without its controller a deleted namespace that
    # held a claim never finishes terminating.
    "persistentvolumeclaim-protection-controller,persistentvolume-protection-controller,"
    # For the node cluster: the binding of its hostPath volumes (the storage stand-in) to claims,
    # and the node's taints (the kubelet registers it not-ready; this lifts that once it is Ready).
    "persistentvolume-binder-controller,node-lifecycle-controller"
)


class ControlPlaneError(E2EError):
    """etcd, the API server or the controller-manager failed, or a call to them did."""


def kubectl(kubeconfig: Path, *args: str, input: str | None = None, check: bool = True) -> str:
    """kubectl (the cached build, else PATH's) against the cluster of `kubeconfig`."""
    command = [str(tool("kubectl")), f"--kubeconfig={kubeconfig}", *args]
    result = subprocess.run(command, input=input, capture_output=True, text=True, check=False, timeout=300)
    if check and result.returncode != 0:
        raise ControlPlaneError(f"kubectl {' '.join(args)}: {result.stderr.strip() or result.stdout}")
    return result.stdout


class ControlPlane:
    def __init__(
        self,
        crd_dir: Path | None = None,
        install_crds: bool = True,
        start_timeout: float = 180.0,
        stop_timeout: float = 15.0,
        lb_interval: float = 1.0,
        *,
        address: str = LOOPBACK,
        folder: Path | None = None,
        load_balancer_pool: Sequence[str] = (),
        scheduler: bool = False,
    ) -> None:
        """`address`: where the API server listens and what it advertises; `folder`: the working
        folder (made, and removed on exit; default a new temp dir); `load_balancer_pool`: see
        load_balancer.py; `scheduler`: also run kube-scheduler (for a cluster with nodes)."""
        self.bin = bin_dir()
        self.address, self.folder, self.with_scheduler = address, folder, scheduler
        self.load_balancer = LoadBalancerStandIn(load_balancer_pool)
        self.crd_dir = crd_dir or (default_crd_dir() if install_crds else None)
        if install_crds and self.crd_dir is None:
            print("control plane: no CRD directory (set SV2_E2E_CRDS): installing none", file=sys.stderr)
        self.start_timeout, self.stop_timeout, self.lb_interval = start_timeout, stop_timeout, lb_interval
        self.dir = Path()
        self.kubeconfig = Path()
        self.server = ""
        self.pki: Pki | None = None
        self.startup_seconds = 0.0
        self._group = ProcessGroup(Path(), grace=stop_timeout)
        self._crashes: list[str] = []
        self._crash_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ssl: ssl.SSLContext | None = None
        self._old_sigterm: Any = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        needed = ["etcd", "kube-apiserver", "kube-controller-manager", "kubectl"]
        absent = missing(*needed, *(["kube-scheduler"] if self.with_scheduler else []))
        if absent:
            raise ControlPlaneError(f"missing {', '.join(absent)} in {self.bin} (run make e2e-tools)")
        started = time.monotonic()
        if self.folder is None:
            self.dir = Path(tempfile.mkdtemp(prefix="sv2-e2e-kube-"))
        else:
            self.dir = self.folder
            self.dir.mkdir(parents=True)
        self._group = ProcessGroup(self.dir, grace=self.stop_timeout)
        if threading.current_thread() is threading.main_thread():
            self._old_sigterm = signal.signal(signal.SIGTERM, sigterm_to_exit)
        try:
            self._start(started + self.start_timeout)
        except BaseException:
            self._shutdown()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        crashes = self._shutdown()
        if crashes and kind is None:
            raise ControlPlaneError("\n".join(crashes))

    def _start(self, deadline: float) -> None:
        pki = self._make_pki()
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        self.server = f"https://{self.address}:{api_port}"
        self.kubeconfig = self.client_kubeconfig("admin", "/O=system:masters/CN=sv2-e2e-admin")
        # system:masters as well: without per-controller credentials it needs every right.
        kcm_kubeconfig = self.client_kubeconfig(
            "controller-manager", "/O=system:masters/CN=system:kube-controller-manager"
        )
        self._ssl = ssl.create_default_context(cafile=str(pki.path("ca.crt")))
        self._ssl.load_cert_chain(pki.path("admin.crt"), pki.path("admin.key"))

        etcd_url, peer_url = f"http://{LOOPBACK}:{etcd_port}", f"http://{LOOPBACK}:{peer_port}"
        self._spawn(
            "etcd",
            f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--unsafe-no-fsync",  # throwaway data: durability only costs time
            "--log-level=warn",
        )
        self._wait("etcd /health", deadline, lambda: b'"true"' in _plain_get(f"{etcd_url}/health"))

        # The default reconciler publishes the advertised address as the endpoint of the
        # `kubernetes` Service; Endpoints validation rejects 127.0.0.1, and on loopback no pod needs it.
        reconciler = ["--endpoint-reconciler-type=none"] if self.address == LOOPBACK else []
        self._spawn(
            "kube-apiserver",
            f"--bind-address={self.address}",
            f"--advertise-address={self.address}",
            *reconciler,
            f"--secure-port={api_port}",
            f"--tls-cert-file={pki.path('apiserver.crt')}",
            f"--tls-private-key-file={pki.path('apiserver.key')}",
            f"--etcd-servers={etcd_url}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Node: each kubelet may touch only its own Node and its pods' objects (with NodeRestriction).
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--client-ca-file={pki.path('ca.crt')}",
            # For logs and exec: the API server checks the kubelet's serving certificate and shows its own.
            f"--kubelet-certificate-authority={pki.path('ca.crt')}",
            f"--kubelet-client-certificate={pki.path('apiserver-kubelet-client.crt')}",
            f"--kubelet-client-key={pki.path('apiserver-kubelet-client.key')}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--service-account-issuer={self.server}",
            f"--service-account-key-file={pki.path('sa.pub')}",
            f"--service-account-signing-key-file={pki.path('sa.key')}",
            "--allow-privileged=true",  # Pod Security, not this switch, is what the e2e checks
            # Default admission plugins stay on: PodSecurity, and ServiceAccount too, because the
            # controller-manager below creates each namespace's `default` ServiceAccount.
        )
        self._wait("kube-apiserver /readyz", deadline, lambda: self._http("GET", "/readyz")[0] == 200)

        self._spawn(
            "kube-controller-manager",
            f"--kubeconfig={kcm_kubeconfig}",
            f"--bind-address={LOOPBACK}",
            "--secure-port=0",  # no health/metrics server: nothing to listen on
            "--leader-elect=false",  # a single instance; the lease would only delay the start
            f"--controllers={CONTROLLERS}",
            f"--service-account-private-key-file={pki.path('sa.key')}",
            f"--root-ca-file={pki.path('ca.crt')}",
            "--use-service-account-credentials=false",  # its own system:masters identity
            "--cluster-name=sv2-e2e",
        )
        # The `default` ServiceAccount of `default` proves the controller-manager works.
        self._wait(
            "controller-manager (default ServiceAccount)",
            deadline,
            lambda: self._http("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
        )
        if self.with_scheduler:
            self._spawn(
                "kube-scheduler",
                f"--kubeconfig={self.client_kubeconfig('scheduler', '/CN=system:kube-scheduler')}",
                "--secure-port=0",  # no health/metrics server
                "--leader-elect=false",
            )
        if self.crd_dir is not None:
            self.kubectl("apply", "--server-side", "-f", str(self.crd_dir))  # too big for client-side apply
            self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(self.crd_dir))
        self._thread = threading.Thread(target=self._background, name="control-plane-watch", daemon=True)
        self._thread.start()

    def _shutdown(self) -> list[str]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._note_crashes()  # before stopping, so an earlier crash is not taken for our own SIGTERM
        self._group.stop()
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None
        if self.dir != Path() and self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)
        return list(self._crashes)

    # ---- processes ---------------------------------------------------------------------------

    def _spawn(self, name: str, *args: str) -> None:
        self._group.start(name, [self.bin / name, *args])

    def _note_crashes(self) -> None:
        with self._crash_lock:  # the watch thread and the caller both look
            for process in self._group.processes:
                code = process.exit_code
                if code is None or any(c.startswith(f"{process.name} exited") for c in self._crashes):
                    continue
                log = process.tail(20, separator="\n    ")
                message = f"{process.name} exited with {code}; last lines of its log:\n    {log}"
                self._crashes.append(message)
                print(f"control plane: {message}", file=sys.stderr, flush=True)

    def check_alive(self) -> None:
        """Raise if etcd, the apiserver or the controller-manager has died."""
        self._note_crashes()
        if self._crashes:
            raise ControlPlaneError("\n".join(self._crashes))

    def _wait(self, what: str, deadline: float, ready: Callable[[], bool]) -> None:
        wait(lambda: ready() or None, deadline - time.monotonic(), what, self._group.processes, interval=0.25)

    def _background(self) -> None:
        while not self._stop.wait(self.lb_interval):
            self._note_crashes()
            try:
                self._assign_load_balancers()
            except (OSError, ValueError, ControlPlaneError) as error:
                if not self._stop.is_set():
                    print(f"control plane: load-balancer stand-in: {error}", file=sys.stderr, flush=True)

    def _assign_load_balancers(self) -> None:
        services = self.get_json("/api/v1/services").get("items", [])
        for namespace, name, address in self.load_balancer.assignments(services):
            path = f"/api/v1/namespaces/{namespace}/services/{name}/status"
            patch = self.load_balancer.status_patch(address)
            self.request("PATCH", path, patch, "application/merge-patch+json")
            if self.load_balancer.pool:  # loopback ingresses are status only: not worth a line each
                print(f"control plane: {self.load_balancer.name}: {namespace}/{name} ingress {address}")

    # ---- PKI and kubeconfigs ------------------------------------------------------------------

    def _make_pki(self) -> Pki:
        self.pki = pki = Pki(self.dir / "pki")
        names = {self.address, LOOPBACK, "localhost", FIRST_SERVICE_IP}
        names |= {"kubernetes", "kubernetes.default", "kubernetes.default.svc"}
        pki.issue("apiserver", "/CN=kube-apiserver", server_names=sorted(names))
        # What the API server shows kubelets (for logs and exec), which authorize it by its group.
        pki.issue("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client")
        return pki

    def client_kubeconfig(self, user: str, subject: str) -> Path:
        """A kubeconfig (in the working folder) for a new client certificate of `subject`."""
        if self.pki is None:
            raise ControlPlaneError("the control plane has no PKI yet")
        self.pki.issue(user, subject)
        return self.pki.kubeconfig(user, self.server, self.dir / f"{user}.kubeconfig")

    # ---- helpers for the e2e steps ------------------------------------------------------------

    @property
    def processes(self) -> dict[str, Process]:
        return {process.name: process for process in self._group.processes}

    @property
    def env(self) -> dict[str, str]:
        """Environment for tools (kubectl, pulumi) that should talk to this cluster."""
        return {"KUBECONFIG": str(self.kubeconfig)}

    def describe(self) -> str:
        where = "loopback" if self.address == LOOPBACK else self.address
        return f"{where} control plane up in {self.startup_seconds:.1f} s"

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        self.check_alive()
        return kubectl(self.kubeconfig, *args, input=input, check=check)

    def _http(self, method: str, path: str, body: bytes | None = None, ctype: str = "") -> tuple[int, bytes]:
        request = urllib.request.Request(self.server + path, data=body, method=method)
        if ctype:
            request.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(request, context=self._ssl, timeout=30) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as error:
            return int(error.code), bytes(error.read())

    def request(self, method: str, path: str, body: Any = None, ctype: str = "application/json") -> Any:
        """A raw API call as the admin; returns the decoded JSON, raises on a non-2xx status."""
        status, data = self._http(method, path, None if body is None else json.dumps(body).encode(), ctype)
        if not 200 <= status < 300:
            raise ControlPlaneError(f"{method} {path}: HTTP {status}: {data.decode(errors='replace')[:500]}")
        return json.loads(data) if data else None

    def get_json(self, path: str) -> Any:
        return self.request("GET", path)

    def listeners(self) -> list[tuple[str, str]]:
        """(process, local address) of every TCP listening socket our processes hold (from `ss`)."""
        return listeners(self._group.processes)


def listeners(processes: Iterable[Process]) -> list[tuple[str, str]]:
    """(process, local address) of every TCP listening socket `processes` hold (from `ss`)."""
    pids = {str(p.pid): p.name for p in processes}
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        for pid, name in pids.items():
            if len(fields) >= 4 and f"pid={pid}," in line:
                found.append((name, fields[3]))
    return found


def _plain_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return bytes(response.read())


def sigterm_to_exit(signum: int, frame: FrameType | None) -> None:
    # Unwind through the context manager, as Ctrl-C does, so the processes stop and the dir goes.
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shell", action="store_true", help="start, print the KUBECONFIG, wait for Ctrl-C")
    parser.add_argument(
        "--crds", type=Path, help="CRD directory (default: $SV2_E2E_CRDS, shared/reference or the tool cache)"
    )
    parser.add_argument("--no-crds", action="store_true", help="install no CRDs")
    args = parser.parse_args()
    if not args.shell:
        parser.print_help()
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    try:
        with ControlPlane(crd_dir=args.crds, install_crds=not args.no_crds) as cluster:
            print(f"export KUBECONFIG={cluster.kubeconfig}")
            print(f"# {cluster.server}, up in {cluster.startup_seconds:.1f}s; Ctrl-C stops", file=sys.stderr)
            print(f"# kubectl: {cluster.bin / 'kubectl'}", file=sys.stderr, flush=True)
            while True:
                time.sleep(1)
                cluster.check_alive()
    except KeyboardInterrupt:
        print("# stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
