"""The pods stage's check that the program's NetworkPolicies are enforced (docs/testing.md#node-agent):
a pod the policies do not name is refused by the node, on its RPC port and on the template
provider's. The allowed direction (pool -> sv2-tp, translators -> pool, miners -> translators) is
shown by the stack mining a block through the load balancer; the pool's image has no shell tools
to try a connect from.
"""

from __future__ import annotations

import json
from typing import Any

from components import workload
from components.networks import TEMPLATE_PROVIDER_PORT
from tests.e2e.cluster.node_cluster import NodeCluster
from tests.e2e.cluster.probe_pod import busybox_image, sleeper, tcp_connect
from tests.e2e.processes import E2EError

PROBE_POD = "policy-probe"
RPC_SERVICE = "bitcoin-signet-rpc"


def forbidden_flow_refused(cluster: NodeCluster, namespace: str) -> list[str]:
    """A throwaway restricted busybox pod in `namespace` connects to the node's RPC port (through
    the Service and to the pod's address) and to its template-provider port; each must be refused
    or time out. Returns one detail line per flow; raises E2EError when one connects."""
    if not cluster.network_policies:
        raise E2EError(f"nothing to check: {cluster.enforcement}")
    image = f"{cluster.registry}/e2e/busybox:policy-probe"
    archive = cluster.workdir / "policy-probe.oci.tar"
    busybox_image(archive, image)
    cluster.import_image(archive)
    cluster.push_image(image)
    node = _node_pod(cluster, namespace)
    service = json.loads(
        cluster.kubectl("get", "service", RPC_SERVICE, f"--namespace={namespace}", "--output=json")
    )
    rpc_port = next(
        p["containerPort"] for c in node["spec"]["containers"] for p in c["ports"] if p["name"] == "rpc"
    )
    service_ip, service_port = service["spec"]["clusterIP"], service["spec"]["ports"][0]["port"]
    pod_ip = node["status"]["podIP"]
    flows = {
        f"RPC Service {RPC_SERVICE} {service_ip}:{service_port}": (service_ip, service_port),
        f"RPC on node pod {pod_ip}:{rpc_port}": (pod_ip, rpc_port),
        f"template provider on node pod {pod_ip}:{TEMPLATE_PROVIDER_PORT}": (pod_ip, TEMPLATE_PROVIDER_PORT),
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(sleeper(PROBE_POD, namespace, image)))
    try:
        cluster.kubectl(
            "wait", "--for=condition=Ready", f"pod/{PROBE_POD}", f"--namespace={namespace}", "--timeout=120s"
        )
        outcomes = {what: tcp_connect(cluster, namespace, PROBE_POD, *where) for what, where in flows.items()}
    finally:
        cluster.kubectl("delete", "pod", PROBE_POD, f"--namespace={namespace}", "--wait=true", check=False)
    details = [f"{PROBE_POD} (no policy names it) -> {what}: {outcome}" for what, outcome in outcomes.items()]
    if any(outcome not in ("refused", "timed out") for outcome in outcomes.values()):
        raise E2EError(f"a forbidden flow was not refused ({cluster.enforcement}): " + "; ".join(details))
    return [*details, cluster.enforcement]


def _node_pod(cluster: NodeCluster, namespace: str) -> dict[str, Any]:
    selector = ",".join(f"{k}={v}" for k, v in workload.selector_labels(workload.NODE).items())
    listed = cluster.kubectl(
        "get", "pods", f"--namespace={namespace}", f"--selector={selector}", "--output=json"
    )
    pods = json.loads(listed)["items"]
    if len(pods) != 1 or not pods[0]["status"].get("podIP"):
        raise E2EError(
            f"expected one node pod with an address, found {[p['metadata']['name'] for p in pods]}"
        )
    return dict(pods[0])
