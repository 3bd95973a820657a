"""Self-test of the node cluster (node_cluster.py): one line per check. Needs root.

    .venv/bin/python -m tests.e2e.cluster.node_selftest

A busybox image (Debian's busybox-static in a root filesystem of its own) is imported into
containerd, pushed to the local registry and forgotten, so that the kubelet must pull it over the
bridge. A restricted Deployment of it (uid 10001, read-only root, no capabilities, seccomp
RuntimeDefault, an emptyDir at /tmp, a claim on the storage stand-in) becomes Ready; another pod and
the host reach it through its ClusterIP Service, the host through the address the load-balancer
stand-in gave its LoadBalancer Service; kubectl exec and logs work; NetworkPolicies are enforced
(policy_selftest.py); nothing listens beyond the bridge and loopback. After the teardown nothing
may be left; then each kind of leftover is planted on purpose and the check must name it. Exits
non-zero when a check fails.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.cluster import host_network, host_state, policy_selftest
from tests.e2e.cluster.control_plane import FIRST_SERVICE_IP
from tests.e2e.cluster.control_plane_selftest import Checks
from tests.e2e.cluster.node_cluster import CGROUP, NodeCluster
from tests.e2e.cluster.probe_pod import PAGE, UID, busybox_image, pod_spec, sleeper
from tests.e2e.processes import LOOPBACK, output_of, wait

NAMESPACE = "e2e-node-check"


def manifests(image: str) -> list[dict[str, Any]]:
    tmp: tuple[str, dict[str, Any]] = ("/tmp", {"emptyDir": {}})
    web_labels = {"app": "web"}
    web = pod_spec(
        image,
        ["httpd", "-f", "-v", "-p", "8080", "-h", "/www"],
        {"tmp": tmp, "data": ("/data", {"persistentVolumeClaim": {"claimName": "data"}})},
        readinessProbe={"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
    )
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": NAMESPACE},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": NAMESPACE},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": web_labels},
                "template": {"metadata": {"labels": web_labels}, "spec": web},
            },
        },
        sleeper("client", NAMESPACE, image),
        _service("web", "ClusterIP", 80),
        _service("web-lb", "LoadBalancer", 8080),
    ]


def _service(name: str, kind: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"type": kind, "selector": {"app": "web"}, "ports": [{"port": port, "targetPort": 8080}]},
    }


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return bytes(response.read())


def _until(what: str, probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    return wait(lambda: probe() or None, timeout, what, interval=0.5)


def main() -> int:
    checks = Checks()
    workdir = Path(tempfile.mkdtemp(prefix="sv2-e2e-node-selftest-"))
    cluster = NodeCluster(workdir / "cluster", install_crds=False)
    started = time.monotonic()
    teardown_error = ""
    try:
        with cluster:
            checks.run("cluster up", cluster.describe)
            _exercise(cluster, checks)
            mounts = len(host_state.mounts_under(cluster.workdir))
            stopping = time.monotonic()
    except AssertionError as error:  # NodeClusterError: a crash, or the teardown left something
        teardown_error = str(error)
    checks.run(
        "teardown, nothing left",
        lambda: (
            _raise(teardown_error)
            if teardown_error
            else f"{time.monotonic() - stopping:.1f} s, {mounts} mounts before"
        ),
    )
    checks.run("the leftover check names what is planted", lambda: _planted(cluster))
    subprocess.run(["rm", "-rf", str(workdir)], check=False)
    print(f"{time.monotonic() - started:.0f} s in all")
    print("all checks passed" if not checks.failed else f"{checks.failed} check(s) failed")
    return 1 if checks.failed else 0


def _raise(error: object) -> str:
    raise AssertionError(str(error))


def _exercise(cluster: NodeCluster, checks: Checks) -> None:
    image = f"{cluster.registry}/e2e/busybox:selftest"

    def push() -> str:
        archive = cluster.workdir / "busybox.oci.tar"
        busybox_image(archive, image)
        cluster.import_image(archive)
        cluster.push_image(image)  # and forgotten: the kubelet must pull it
        tags = json.loads(_get(f"http://{cluster.registry}/v2/e2e/busybox/tags/list"))
        assert tags.get("tags") == ["selftest"], tags
        return f"{image}, tags {tags['tags']} from the host"

    checks.run("image in the local registry", push)
    volume = cluster.volume_for_claim(NAMESPACE, "data", owner_uid=UID)
    applied = time.monotonic()
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests(image)})
    )

    def ready() -> str:
        cluster.kubectl("wait", "--for=condition=Ready", "pod", "--all", f"-n={NAMESPACE}", "--timeout=120s")
        pods = json.loads(cluster.kubectl("get", "pods", f"-n={NAMESPACE}", "-o", "json"))["items"]
        pulled = [p["status"]["containerStatuses"][0]["imageID"] for p in pods]
        assert all(i.startswith(f"{cluster.registry}/e2e/busybox@sha256:") for i in pulled), pulled
        took = time.monotonic() - applied
        # A connect made before kube-proxy programs the endpoint keeps an un-NATed conntrack entry
        # and times out; with kube-router's syncs beside it, kube-proxy can take a few seconds.
        web_ip = next(
            p["status"]["podIP"] for p in pods if p["metadata"].get("labels", {}).get("app") == "web"
        )
        _until(
            "kube-proxy's DNAT to the web pod",
            lambda: f"--to-destination {web_ip}:8080" in output_of(["iptables-save", "-t", "nat"]),
        )
        programmed = time.monotonic() - applied - took
        return (
            f"{len(pods)} pods in {took:.1f} s, image pulled from the registry; kube-proxy's rules for"
            f" the web pod {programmed:.1f} s later"
        )

    checks.run("restricted pods Ready", ready)
    web = cluster.kubectl(
        "get", "pod", f"-n={NAMESPACE}", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"
    )

    def restricted() -> str:
        uid = cluster.exec(NAMESPACE, web, "id", "-u").strip()
        status = dict(
            line.split(":\t", 1)
            for line in cluster.exec(NAMESPACE, web, "cat", "/proc/self/status").splitlines()
        )
        seen = {key: status[key].strip() for key in ("CapEff", "CapBnd", "NoNewPrivs", "Seccomp")}
        try:
            cluster.exec(NAMESPACE, web, "touch", "/x")
        except AssertionError as error:
            refused = str(error)
        else:
            refused = "touch /x worked"
        cluster.exec(NAMESPACE, web, "touch", "/tmp/x")
        assert uid == str(UID), uid
        assert seen == {"CapEff": "0" * 16, "CapBnd": "0" * 16, "NoNewPrivs": "1", "Seccomp": "2"}, seen
        assert "Read-only file system" in refused, refused
        return f"uid {uid}, {seen}, / read-only, /tmp writable"

    checks.run("kubectl exec: restricted as asked", restricted)

    def storage() -> str:
        cluster.exec(NAMESPACE, web, "sh", "-c", "echo kept > /data/chain")
        written = (volume / "chain").read_text()
        assert written == "kept\n", written
        return f"claim bound to the stand-in's {volume}, written by uid {UID}"

    checks.run("hostPath storage stand-in", storage)
    cluster_ip = cluster.kubectl(
        "get", "service", "web", f"-n={NAMESPACE}", "-o", "jsonpath={.spec.clusterIP}"
    )

    def from_pod() -> str:
        request = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {cluster_ip} 80"
        response = cluster.exec(NAMESPACE, "client", "sh", "-c", request)
        assert response.startswith("HTTP/1.1 200") and response.endswith(PAGE.decode()), response
        cluster.exec(NAMESPACE, "client", "sh", "-c", f"nc -w 3 {FIRST_SERVICE_IP} 443 </dev/null")
        api = f"{FIRST_SERVICE_IP}:443"
        return f"client pod got the page from {cluster_ip}:80, and connected to the API server's {api}"

    checks.run("ClusterIP Service from another pod", from_pod)

    def from_host() -> str:
        assert _get(f"http://{cluster_ip}/") == PAGE
        return f"host got the page from {cluster_ip}:80"

    checks.run("ClusterIP Service from the host", from_host)

    def load_balancer() -> str:
        path = "jsonpath={.status.loadBalancer.ingress[0].ip}"
        address = _until(
            "an ingress", lambda: cluster.kubectl("get", "service", "web-lb", f"-n={NAMESPACE}", "-o", path)
        )
        assert ipaddress.ip_address(address) in ipaddress.ip_network(host_network.LOAD_BALANCER_SUBNET), (
            address
        )
        page = _until("the page through the load balancer", lambda: _get(f"http://{address}:8080/"), 30)
        assert page == PAGE, page
        return f"host got the page from {address}:8080 (load-balancer stand-in's address, kube-proxy's rules)"

    checks.run("LoadBalancer address from the host", load_balancer)

    def logs() -> str:
        log = cluster.logs(NAMESPACE, web)
        assert "GET /" in log or "response:200" in log, log[-300:]
        return f"{len(log.splitlines())} lines of httpd's log"

    checks.run("kubectl logs", logs)
    policy_selftest.check(cluster, checks, NAMESPACE, image)

    def claim_again() -> str:
        cluster.kubectl("delete", "deployment", "web", f"-n={NAMESPACE}", "--wait=true")
        cluster.kubectl("delete", "pvc", "data", f"-n={NAMESPACE}", "--wait=true")
        phase = "jsonpath={.status.phase}"
        pv = f"persistentvolume/e2e-{NAMESPACE}-data"
        _until("the volume Released", lambda: cluster.kubectl("get", pv, "-o", phase) == "Released")
        cluster.volume_for_claim(NAMESPACE, "data", owner_uid=UID)
        claim = next(m for m in manifests("unused") if m["kind"] == "PersistentVolumeClaim")
        cluster.kubectl("apply", "-f", "-", input=json.dumps(claim))
        _until(
            "the new claim Bound",
            lambda: cluster.kubectl("get", "pvc", "data", f"-n={NAMESPACE}", "-o", phase) == "Bound",
        )
        assert (volume / "chain").read_text() == "kept\n"
        return "deleted claim's volume Released, re-reserved, bound by a new claim of the name, data kept"

    checks.run("storage stand-in after the claim is deleted", claim_again)

    def listeners() -> str:
        found = cluster.listeners()
        allowed = (f"{LOOPBACK}:", f"{host_network.GATEWAY}:")
        wide = [f"{n} {a}" for n, a in found if not a.startswith(allowed)]
        assert not wide, f"beyond the bridge and loopback: {wide}"
        return ", ".join(sorted({f"{n} {a.rsplit(':', 1)[0]}" for n, a in found}))

    checks.run("listeners on the bridge or loopback only", listeners)


def _planted(cluster: NodeCluster) -> str:
    """Leaves one of each kind behind, and the check must name each; then removes them."""
    folder = cluster.workdir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mounted").mkdir(exist_ok=True)
    sysctl, before = "kernel.panic", host_state.read_sysctl("kernel.panic") or "0"
    cgroup = host_state.CGROUPS / "pids" / CGROUP
    (folder / "planted.log").touch()
    process = subprocess.Popen(["tail", "-f", str(folder / "planted.log")], stdout=subprocess.DEVNULL)
    steps = [
        (f"mount {folder / 'mounted'}", ["mount", "-t", "tmpfs", "tmpfs", str(folder / "mounted")]),
        ("interface sv2e2e-left", ["ip", "link", "add", "sv2e2e-left", "type", "bridge"]),
        ("KUBE-SELFTEST-LEFT", ["iptables", "-t", "filter", "-N", "KUBE-SELFTEST-LEFT"]),
        ("ipset KUBE-SELFTEST-LEFT", ["ipset", "create", "KUBE-SELFTEST-LEFT", "hash:ip"]),
        (f"cgroup {cgroup}", ["mkdir", str(cgroup)]),
    ]
    try:
        for _, command in steps:
            subprocess.run(command, check=True)
        host_state.write_sysctl(sysctl, str(int(before) + 7))
        found = "\n".join(cluster.leftovers())
        expected = [what for what, _ in steps] + [f"sysctl {sysctl}", f"process {process.pid} "]
        unnamed = [what for what in expected if what not in found]
        assert not unnamed, f"not named: {unnamed}; the check said: {found}"
    finally:
        process.kill()
        process.wait()
        host_state.write_sysctl(sysctl, before)
        for command in (
            ["umount", str(folder / "mounted")],
            ["ip", "link", "del", "sv2e2e-left"],
            ["iptables", "-t", "filter", "-X", "KUBE-SELFTEST-LEFT"],
            ["ipset", "destroy", "KUBE-SELFTEST-LEFT"],
            ["rmdir", str(cgroup)],
        ):
            subprocess.run(command, check=False, capture_output=True)
    after = cluster.leftovers()
    assert not after, f"after removing them: {after}"
    return f"named all {len(expected)}, and nothing once they went"


if __name__ == "__main__":
    sys.exit(main())
