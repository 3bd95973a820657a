"""The node self-test's NetworkPolicy step (node_selftest.py; docs/testing.md#node-agent): in a
namespace where pods `client` and an `app=web` httpd on port 8080 (Service `web`, port 80) run, a
default-deny-ingress policy and one that lets pods labelled `access=web` reach the web pods on 8080.
The labelled client still connects, to the pod and through the Service, and the web pod stays Ready
(the kubelet's probes come from the node); an unlabelled pod is refused. Once the policies are
deleted the unlabelled pod connects again, so a refusal had the policies for its cause.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.e2e.cluster.control_plane_selftest import Checks
from tests.e2e.cluster.node_cluster import NodeCluster
from tests.e2e.cluster.probe_pod import sleeper, tcp_connect
from tests.e2e.processes import wait

WEB_PORT = 8080
SERVICE_PORT = 80
ALLOWED = {"access": "web"}
ENFORCE_SECONDS = 60.0  # kube-router's sync after a policy or pod changes takes seconds


def policies(namespace: str) -> list[dict[str, Any]]:
    deny = {"podSelector": {}, "policyTypes": ["Ingress"]}
    allow = {
        "podSelector": {"matchLabels": {"app": "web"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": ALLOWED}}], "ports": [{"port": WEB_PORT}]}],
    }
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
        for name, spec in (("default-deny-ingress", deny), ("allow-web", allow))
    ]


def check(cluster: NodeCluster, checks: Checks, namespace: str, image: str) -> None:
    """Runs its checks in `namespace` (where `client` and the web pod run); leaves no policy and
    no pod of its own behind."""

    def web() -> tuple[str, str, str]:
        pod = "jsonpath={.items[0].metadata.name} {.items[0].status.podIP}"
        name, address = cluster.kubectl("get", "pod", f"-n={namespace}", "-l", "app=web", "-o", pod).split()
        service = cluster.kubectl(
            "get", "service", "web", f"-n={namespace}", "-o", "jsonpath={.spec.clusterIP}"
        )
        return name, address, service

    def enforced() -> str:
        cluster.kubectl("label", "pod", "client", f"-n={namespace}", "--overwrite", *_pairs(ALLOWED))
        intruder = sleeper("intruder", namespace, image)
        cluster.kubectl("apply", "-f", "-", input=json.dumps(intruder))
        cluster.kubectl("wait", "--for=condition=Ready", "pod/intruder", f"-n={namespace}", "--timeout=60s")
        name, address, service = web()
        before = tcp_connect(cluster, namespace, "intruder", address, WEB_PORT)
        assert before == "connected", f"before any policy, intruder -> {address}:{WEB_PORT}: {before}"
        applied = time.monotonic()
        cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": policies(namespace)}),
        )
        denied = wait(
            lambda: _refused(tcp_connect(cluster, namespace, "intruder", address, WEB_PORT)),
            ENFORCE_SECONDS,
            f"intruder -> web pod {address}:{WEB_PORT} refused",
            interval=1,
        )
        took = time.monotonic() - applied
        through_service = tcp_connect(cluster, namespace, "intruder", service, SERVICE_PORT)
        allowed = {
            f"client -> {address}:{WEB_PORT}": tcp_connect(cluster, namespace, "client", address, WEB_PORT),
            f"client -> {service}:{SERVICE_PORT}": tcp_connect(
                cluster, namespace, "client", service, SERVICE_PORT
            ),
        }
        assert all(v == "connected" for v in allowed.values()), f"allowed flows: {allowed}"
        assert through_service != "connected", f"intruder -> Service {service}:{SERVICE_PORT} connected"
        ready = cluster.kubectl(
            "get",
            "pod",
            name,
            f"-n={namespace}",
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
        )
        assert ready == "True", f"web pod Ready={ready} under the policies (the kubelet's probes)"
        return (
            f"within {took:.1f} s intruder -> pod {address}:{WEB_PORT} {denied}, -> Service {service}:"
            f"{SERVICE_PORT} {through_service}; labelled client connected to both; web pod still Ready"
        )

    checks.run("NetworkPolicy: allowed flows connect, a denied one is refused", enforced)

    def lifted() -> str:
        _, address, _ = web()
        deleted = time.monotonic()
        cluster.kubectl("delete", "networkpolicy", "--all", f"-n={namespace}", "--wait=true")
        wait(
            lambda: tcp_connect(cluster, namespace, "intruder", address, WEB_PORT) == "connected" or None,
            ENFORCE_SECONDS,
            f"intruder -> web pod {address}:{WEB_PORT} connecting once the policies are deleted",
            interval=1,
        )
        took = time.monotonic() - deleted
        cluster.kubectl("delete", "pod", "intruder", f"-n={namespace}", "--wait=true")
        return f"policies deleted: intruder -> {address}:{WEB_PORT} connected within {took:.1f} s"

    checks.run("NetworkPolicy deleted: the denied flow connects again", lifted)


def _refused(outcome: str) -> str | None:
    return outcome if outcome in ("refused", "timed out") else None


def _pairs(labels: dict[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in labels.items()]
