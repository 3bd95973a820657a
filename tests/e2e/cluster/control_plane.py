"""A private Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager.

    with ControlPlane() as cluster:
        run(["pulumi", "up", ...], env={**os.environ, **cluster.env})
        cluster.wait_for_pods("sv2", 3)

    .venv/bin/python -m tests.e2e.cluster.control_plane --shell  # prints `export KUBECONFIG=…`; Ctrl-C stops

Everything listens on 127.0.0.1 only, on free ports, with a per-run PKI in a temp dir removed on exit.
There is no kubelet and no scheduler: controllers create Pods (so Pod Security admission runs for
real) and they stay Pending. A stand-in for the cloud load-balancer controller gives every
LoadBalancer Service the ingress 127.0.0.1. Binaries come from the e2e toolchain (make e2e-tools);
its self-test is control_plane_selftest.py.
"""

from __future__ import annotations

import argparse
import base64
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
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from tests.e2e.processes import LOOPBACK, E2EError, Process, ProcessGroup, free_port, wait
from tests.e2e.toolchain import bin_dir, default_crd_dir, missing, tool

SERVICE_CIDR = "10.0.0.0/24"  # only allocated from, never routed
FIRST_SERVICE_IP = "10.0.0.1"  # the `kubernetes` Service, hence in the serving cert
# What turns the program's workloads into Pods, plus what namespaces, service accounts and
# deletion need; nothing node-, volume- or cloud-related (there are no nodes).
CONTROLLERS = (
    "deployment-controller,replicaset-controller,statefulset-controller,horizontal-pod-autoscaler-controller,"
    "disruption-controller,endpoints-controller,endpointslice-controller,garbage-collector-controller,"
    "namespace-controller,serviceaccount-controller,serviceaccount-token-controller,"
    "root-ca-certificate-publisher-controller,"
    # Claims carry the pvc-protection finalizer: without its controller a deleted namespace that
    # held a claim never finishes terminating.
    "persistentvolumeclaim-protection-controller,persistentvolume-protection-controller"
)
POD_SECURITY_MARK = "violates PodSecurity"


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
    ) -> None:
        self.bin = bin_dir()
        self.crd_dir = crd_dir or (default_crd_dir() if install_crds else None)
        if install_crds and self.crd_dir is None:
            print("control plane: no CRD directory (set SV2_E2E_CRDS): installing none", file=sys.stderr)
        self.start_timeout, self.stop_timeout, self.lb_interval = start_timeout, stop_timeout, lb_interval
        self.dir = Path()
        self.kubeconfig = Path()
        self.server = ""
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
        absent = missing("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
        if absent:
            raise ControlPlaneError(f"missing {', '.join(absent)} in {self.bin} (run make e2e-tools)")
        started = time.monotonic()
        self.dir = Path(tempfile.mkdtemp(prefix="sv2-e2e-kube-"))
        self._group = ProcessGroup(self.dir, grace=self.stop_timeout)
        if threading.current_thread() is threading.main_thread():
            self._old_sigterm = signal.signal(signal.SIGTERM, _sigterm_to_exit)
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
        self.server = f"https://{LOOPBACK}:{api_port}"
        self.kubeconfig = self._write_kubeconfig("admin", pki)
        kcm_kubeconfig = self._write_kubeconfig("controller-manager", pki)
        self._ssl = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self._ssl.load_cert_chain(pki / "admin.crt", pki / "admin.key")

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

        self._spawn(
            "kube-apiserver",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            # The default reconciler would publish 127.0.0.1 as the endpoint of the `kubernetes`
            # Service, which Endpoints validation rejects (loopback); nothing in-cluster needs it.
            "--endpoint-reconciler-type=none",
            f"--secure-port={api_port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--etcd-servers={etcd_url}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-issuer={self.server}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
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
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=false",  # its own system:masters identity
            "--cluster-name=sv2-e2e",
        )
        # The `default` ServiceAccount of `default` proves the controller-manager works.
        self._wait(
            "controller-manager (default ServiceAccount)",
            deadline,
            lambda: self._http("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
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
        # What cloud-provider-kind does on kind, minus the proxy: status only, and only loopback.
        for service in self.get_json("/api/v1/services").get("items", []):
            meta, spec = service["metadata"], service.get("spec", {})
            if spec.get("type") != "LoadBalancer" or service.get("status", {}).get("loadBalancer", {}).get(
                "ingress"
            ):
                continue
            patch = {"status": {"loadBalancer": {"ingress": [{"ip": LOOPBACK}]}}}
            path = f"/api/v1/namespaces/{meta['namespace']}/services/{meta['name']}/status"
            self.request("PATCH", path, patch, "application/merge-patch+json")

    # ---- PKI and kubeconfigs ------------------------------------------------------------------

    def _make_pki(self) -> Path:
        pki = self.dir / "pki"
        pki.mkdir(mode=0o700)
        (pki / "openssl.cnf").write_text(
            "[req]\ndistinguished_name = dn\n[dn]\n"
            "[ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
            "subjectKeyIdentifier = hash\n"
            "[server]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
            "extendedKeyUsage = serverAuth\nauthorityKeyIdentifier = keyid\n"
            f"subjectAltName = IP:{LOOPBACK},DNS:localhost,IP:{FIRST_SERVICE_IP},DNS:kubernetes,"
            "DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
            "[client]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
            "extendedKeyUsage = clientAuth\nauthorityKeyIdentifier = keyid\n"
        )

        def openssl(args: str) -> None:  # words without spaces only: file names under pki/
            result = subprocess.run(["openssl", *args.split()], cwd=pki, capture_output=True, text=True)
            if result.returncode != 0:
                raise ControlPlaneError(f"openssl {args}: {result.stderr.strip()}")

        # P-256 everywhere: quick to generate on a busy machine, and accepted for TLS and SA tokens.
        ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"
        for name, ext, subject in (
            ("ca", "ca", "/CN=sv2-e2e-ca"),
            ("apiserver", "server", "/CN=kube-apiserver"),
            ("admin", "client", "/O=system:masters/CN=sv2-e2e-admin"),
            # system:masters as well: without per-controller credentials it needs every right.
            ("controller-manager", "client", "/O=system:masters/CN=system:kube-controller-manager"),
        ):
            signer = "" if ext == "ca" else "-CA ca.crt -CAkey ca.key"
            openssl(
                f"req -x509 -config openssl.cnf {ec} {signer} -extensions {ext} -subj {subject}"
                f" -keyout {name}.key -out {name}.crt"
            )
        openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out sa.key")
        openssl("pkey -in sa.key -pubout -out sa.pub")
        return pki

    def _write_kubeconfig(self, user: str, pki: Path) -> Path:
        def data(name: str) -> str:
            return base64.b64encode((pki / name).read_bytes()).decode()

        # Embedded data rather than paths: the file stands alone wherever a tool copies it.
        text = (
            "apiVersion: v1\nkind: Config\ncurrent-context: sv2-e2e\n"
            f"clusters:\n- name: sv2-e2e\n  cluster:\n    server: {self.server}\n"
            f"    certificate-authority-data: {data('ca.crt')}\n"
            f"users:\n- name: {user}\n  user:\n    client-certificate-data: {data(user + '.crt')}\n"
            f"    client-key-data: {data(user + '.key')}\n"
            f"contexts:\n- name: sv2-e2e\n  context:\n    cluster: sv2-e2e\n    user: {user}\n"
        )
        path = self.dir / f"{user}.kubeconfig"
        path.write_text(text)
        path.chmod(0o600)
        return path

    # ---- helpers for the e2e steps ------------------------------------------------------------

    @property
    def processes(self) -> dict[str, Process]:
        return {process.name: process for process in self._group.processes}

    @property
    def env(self) -> dict[str, str]:
        """Environment for tools (kubectl, pulumi) that should talk to this cluster."""
        return {"KUBECONFIG": str(self.kubeconfig)}

    def describe(self) -> str:
        return f"loopback control plane up in {self.startup_seconds:.1f} s"

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

    def pods(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        query = f"?labelSelector={urllib.parse.quote(selector)}" if selector else ""
        items: list[dict[str, Any]] = self.get_json(f"/api/v1/namespaces/{namespace}/pods{query}")["items"]
        return items

    def wait_for_pods(
        self, namespace: str, count: int, timeout: float = 60.0, selector: str = ""
    ) -> list[dict[str, Any]]:
        """Wait until at least `count` Pods exist (admitted; Pending forever, there is no kubelet)."""

        def enough() -> list[dict[str, Any]] | None:
            self.check_alive()
            pods = self.pods(namespace, selector)
            return pods if len(pods) >= count else None

        def status() -> str:
            violations = "; ".join(self.pod_security_violations(namespace)) or "none"
            return f"{len(self.pods(namespace, selector))} pods; Pod Security violations: {violations}"

        found: list[dict[str, Any]] = wait(
            enough, timeout, f"{count} pods in {namespace}", interval=0.5, status=status
        )
        return found

    def pod_security_violations(self, namespace: str | None = None) -> list[str]:
        """'Kind namespace/name: message' for each controller that Pod Security kept from creating Pods:
        ReplicaSet conditions (ReplicaFailure/FailedCreate) and FailedCreate events (StatefulSets too)."""
        scope = f"/namespaces/{namespace}" if namespace else ""
        found: list[str] = []
        for kind, path in (("ReplicaSet", "replicasets"), ("StatefulSet", "statefulsets")):
            for item in self.get_json(f"/apis/apps/v1{scope}/{path}")["items"]:
                for condition in item.get("status", {}).get("conditions") or []:
                    if POD_SECURITY_MARK in condition.get("message", ""):
                        meta = item["metadata"]
                        found.append(f"{kind} {meta['namespace']}/{meta['name']}: {condition['message']}")
        for event in self.get_json(f"/api/v1{scope}/events")["items"]:
            if event.get("reason") == "FailedCreate" and POD_SECURITY_MARK in event.get("message", ""):
                obj = event["involvedObject"]
                found.append(f"{obj['kind']} {obj.get('namespace', '')}/{obj['name']}: {event['message']}")
        return list(dict.fromkeys(found))  # the same failure shows as a condition and as events

    def assert_pod_security(self, namespace: str, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Pods were admitted (at least `count` exist) and no controller reports a Pod Security denial."""
        pods = self.wait_for_pods(namespace, count, timeout)
        violations = self.pod_security_violations(namespace)
        if violations:
            raise ControlPlaneError("Pod Security denied pods:\n  " + "\n  ".join(violations))
        return pods

    def listeners(self) -> list[tuple[str, str]]:
        """(process, local address) of every TCP listening socket our processes hold (from `ss`)."""
        pids = {str(p.pid): p.name for p in self._group.processes}
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


def _sigterm_to_exit(signum: int, frame: FrameType | None) -> None:
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
