"""Self-test of the loopback control plane (control_plane.py): one line per check.

    .venv/bin/python -m tests.e2e.cluster.control_plane_selftest

Starts it, proves that Pod Security admission decides which Pods the controllers may create, that
LoadBalancer Services get their (loopback) ingress, that nothing listens beyond 127.0.0.1, that a
crash is reported, and that nothing is left behind. Exits non-zero when a check fails.
(What the e2e asserts of the stacks in a cluster is tests/e2e/stack_assertions.py.)
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

from tests.e2e.cluster.control_plane import ControlPlane, ControlPlaneError
from tests.e2e.cluster.pod_security import pod_security_violations, pods, wait_for_pods
from tests.e2e.processes import LOOPBACK, wait

NAMESPACE = "e2e-check"
RESTRICTED: dict[str, Any] = {  # what the restricted Pod Security level asks of a container
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
IMAGE = "registry.invalid/never-pulled:1"  # no kubelet: nothing ever pulls it


def _workload(kind: str, name: str, security: dict[str, Any]) -> dict[str, Any]:
    labels = {"app": name}
    spec: dict[str, Any] = {
        "replicas": 1,
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "main", "image": IMAGE, "securityContext": security}]},
        },
    }
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }


MANIFESTS: list[dict[str, Any]] = [
    {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
    },
    _workload("Deployment", "good", RESTRICTED),
    _workload("Deployment", "bad", {"privileged": True}),
    _workload("StatefulSet", "bad-sts", {}),  # root, no seccomp profile: denied too
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "lb", "namespace": NAMESPACE},
        "spec": {"type": "LoadBalancer", "selector": {"app": "good"}, "ports": [{"port": 3333}]},
    },
]


def _until(what: str, probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    return wait(lambda: probe() or None, timeout, what, interval=0.5)


class Checks:
    def __init__(self) -> None:
        self.failed = 0

    def run(self, name: str, check: Callable[[], str]) -> None:
        try:
            detail = check()
        except (AssertionError, OSError) as error:  # ControlPlaneError is an AssertionError
            self.failed += 1
            print(f"FAIL {name}: {error}", flush=True)
        else:
            print(f"ok   {name}{f' ({detail})' if detail else ''}", flush=True)


def main() -> int:
    checks = Checks()
    pids: list[int] = []
    cluster = ControlPlane()
    exit_error: BaseException | None = None
    try:
        with cluster:
            pids = [process.pid for process in cluster.processes.values()]
            checks.run("control plane up", lambda: f"{cluster.startup_seconds:.1f}s, {cluster.server}")
            _exercise(cluster, checks)
    except ControlPlaneError as error:
        exit_error = error
    # The crash check kills the controller-manager on purpose: leaving must report it, and only it.
    expected = exit_error is not None and "kube-controller-manager exited" in str(exit_error)
    checks.run("crash reported on exit", lambda: "" if expected else _raise(exit_error or "nothing reported"))
    checks.run("no process left", lambda: _no_process_left(pids))
    checks.run(
        "temp dir removed", lambda: "" if not cluster.dir.exists() else _raise(f"{cluster.dir} exists")
    )
    print("all checks passed" if not checks.failed else f"{checks.failed} check(s) failed")
    return 1 if checks.failed else 0


def _raise(error: object) -> str:
    raise AssertionError(str(error))


def _exercise(cluster: ControlPlane, checks: Checks) -> None:
    checks.run("readyz", lambda: cluster.kubectl("get", "--raw", "/readyz").strip())

    def crds() -> str:
        path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        items = cluster.get_json(path)["items"]
        names = sorted(i["metadata"]["name"] for i in items if i["spec"]["group"] == "monitoring.coreos.com")
        established = [
            i["metadata"]["name"]
            for i in items
            if any(c["type"] == "Established" and c["status"] == "True" for c in i["status"]["conditions"])
        ]
        assert names and set(names) <= set(established), f"monitoring CRDs {names}, established {established}"
        return ", ".join(n.split(".")[0] for n in names)

    checks.run("Prometheus Operator CRDs established", crds)
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": MANIFESTS})
    )

    def good_pod() -> str:
        good = wait_for_pods(cluster, NAMESPACE, 1, timeout=60, selector="app=good")
        phase = good[0]["status"].get("phase")
        assert phase == "Pending", f"phase {phase}"
        return f"{good[0]['metadata']['name']} created, Pending (no kubelet)"

    checks.run("restricted Deployment gets its Pod", good_pod)

    def violations(name: str, kind: str) -> Callable[[], str]:
        def check() -> str:
            prefix = f"{kind} {NAMESPACE}/{name}"
            found: list[str] = _until(
                f"a Pod Security denial for {name}",
                lambda: [v for v in pod_security_violations(cluster, NAMESPACE) if v.startswith(prefix)],
            )
            admitted = pods(cluster, NAMESPACE, f"app={name}")
            assert not admitted, f"{len(admitted)} pods of {name} admitted"
            assert all("good" not in v.split(":")[0] for v in pod_security_violations(cluster, NAMESPACE))
            return found[0][:150]

        return check

    checks.run("privileged Deployment denied, reported", violations("bad", "ReplicaSet"))
    checks.run("root StatefulSet denied, reported", violations("bad-sts", "StatefulSet"))

    def load_balancer() -> str:
        path = f"/api/v1/namespaces/{NAMESPACE}/services/lb"
        ingress = _until(
            "an ingress", lambda: cluster.get_json(path)["status"]["loadBalancer"].get("ingress"), 15
        )
        assert ingress == [{"ip": LOOPBACK, "ipMode": "VIP"}] or ingress == [{"ip": LOOPBACK}], ingress
        return f"ingress {ingress[0]['ip']}"

    checks.run("LoadBalancer Service gets its ingress", load_balancer)

    def loopback_only() -> str:
        listeners = cluster.listeners()
        names = {name for name, _ in listeners}
        assert {"etcd", "kube-apiserver"} <= names, f"listeners {listeners}"
        wide = [f"{n} {a}" for n, a in listeners if not a.startswith(f"{LOOPBACK}:")]
        assert not wide, f"beyond loopback: {wide}"
        return ", ".join(f"{n} {a}" for n, a in listeners)

    checks.run("only 127.0.0.1 listeners (ss -ltnp)", loopback_only)

    def namespace_deleted() -> str:
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false")
        _until(
            "the namespace to go",
            lambda: not cluster.kubectl("get", "namespace", "-o", "name").count(NAMESPACE),
        )
        return "namespace controller finalized it"

    checks.run("namespace deletion completes", namespace_deleted)

    def crash() -> str:
        victim = cluster.processes["kube-controller-manager"].popen
        victim.kill()
        victim.wait()
        try:
            cluster.check_alive()
        except ControlPlaneError as error:
            assert "kube-controller-manager exited with -9" in str(error), str(error)
            return "check_alive raised, with the log tail"
        raise AssertionError("check_alive did not notice")

    checks.run("crash detected", crash)


def _no_process_left(pids: list[int]) -> str:
    assert pids, "no processes were started"
    alive = [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
    assert not alive, f"still running: {alive}"
    return f"{len(pids)} stopped"


if __name__ == "__main__":
    sys.exit(main())
