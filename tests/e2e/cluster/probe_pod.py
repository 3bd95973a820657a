"""A busybox image and restricted pods of it, for checks run inside the node cluster's pod network
(node_selftest.py, policy_selftest.py, the pods stage's network_policies.py).

The image is Debian's busybox-static in a root filesystem of its own, running as uid 10001; its
pods meet Pod Security `restricted` (non-root, no capabilities, no privilege escalation, seccomp
RuntimeDefault, read-only root with an emptyDir at /tmp).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.cluster.node_cluster import NodeCluster
from tests.e2e.cluster.oci_image import Rootfs, write_image

UID = 10001
PAGE = b"sv2-e2e node self-test\n"  # what the image's /www serves
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static (make e2e-tools installs it)
# What the checks run in the containers (its wget crashes, static: nc speaks HTTP instead).
APPLETS = ("sh", "httpd", "sleep", "id", "touch", "cat", "nc", "printf")
CONNECT_SECONDS = 3


def busybox_image(archive: Path, reference: str) -> None:
    rootfs = Rootfs(
        folders={"/bin": 0o755, "/tmp": 0o1777, "/www": 0o755, "/data": 0o755},
        files={"/bin/busybox": (BUSYBOX, 0o755), "/www/index.html": (PAGE, 0o644)},
        links={f"/bin/{applet}": "busybox" for applet in APPLETS},
    )
    write_image(archive, reference, rootfs, ["/bin/busybox"], user=str(UID))


def pod_spec(
    image: str, args: list[str], mounts: dict[str, tuple[str, dict[str, Any]]], **extra: Any
) -> dict[str, Any]:
    """A restricted pod of one container; `mounts`: volume name to (path, source)."""
    container = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "Always",
        "args": args,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": name, "mountPath": path} for name, (path, _) in mounts.items()],
        **extra,
    }
    return {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": 1,  # busybox as PID 1 ignores SIGTERM
        "automountServiceAccountToken": True,  # a projected token: a tmpfs the teardown must unmount
        "containers": [container],
        "volumes": [{"name": name, **source} for name, (_, source) in mounts.items()],
    }


def sleeper(name: str, namespace: str, image: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A restricted pod that only waits, for kubectl exec."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": pod_spec(image, ["sleep", "3600"], {"tmp": ("/tmp", {"emptyDir": {}})}),
    }


def tcp_connect(cluster: NodeCluster, namespace: str, pod: str, address: str, port: int) -> str:
    """A TCP connect from inside `pod` (busybox nc, closed at once): "connected", or why not
    ("refused" is how the policy enforcer's REJECT looks, "timed out" a DROP)."""
    script = f"nc -w {CONNECT_SECONDS} {address} {port} </dev/null 2>&1; echo exit $?"
    said = cluster.exec(namespace, pod, "sh", "-c", script).strip()
    if said.endswith("exit 0"):
        return "connected"
    if "refused" in said:
        return "refused"
    if "timed out" in said.lower():
        return "timed out"
    return f"failed: {said[-200:]}"
