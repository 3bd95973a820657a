"""What enforces NetworkPolicies in the node cluster (docs/testing.md#node-agent): kube-router's
firewall controller alone, run on the host as a process (its BGP router and service proxy stay
off; kube-proxy remains the service proxy). It watches pods, namespaces and NetworkPolicies and
programs iptables chains (KUBE-ROUTER-*, KUBE-POD-FW-*, KUBE-NWPLCY-*) and ipsets (KUBE-SRC-*,
KUBE-DST-*) that filter the pods' traffic on the bridge (bridged frames pass through iptables while
net.bridge.bridge-nf-call-iptables is 1). It does not remove them when it stops: the teardown
sweeps them with the rest of the KUBE- chains and ipsets (host_network.down).
"""

from __future__ import annotations

import json

from tests.e2e.cluster.control_plane import SERVICE_CIDR, ControlPlane
from tests.e2e.cluster.host_network import LOAD_BALANCER_SUBNET
from tests.e2e.processes import Process, ProcessGroup, output_of, wait
from tests.e2e.toolchain import binary, pinned

USER = "kube-router"
NAME = f"kube-router {pinned('KUBE_ROUTER_VERSION')}'s firewall controller"
# What its informers read; it writes nothing to the API but events.
RULES = [
    {
        "apiGroups": [""],
        "resources": ["pods", "namespaces", "nodes", "services", "endpoints"],
        "verbs": ["get", "list", "watch"],
    },
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]},
]


def start(group: ProcessGroup, plane: ControlPlane, node_name: str, timeout: float) -> Process:
    """kube-router with only its firewall, once its top-level chains are hooked into FORWARD."""
    access = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": USER},
            "rules": RULES,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": USER},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": USER},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
        },
    ]
    plane.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": access}))
    process = group.start(
        "kube-router",
        [
            binary("kube-router"),
            f"--kubeconfig={plane.client_kubeconfig(USER, f'/CN={USER}')}",
            f"--hostname-override={node_name}",
            "--run-firewall=true",
            "--run-router=false",
            "--run-service-proxy=false",
            "--enable-ipv6=false",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--loadbalancer-ip-range={LOAD_BALANCER_SUBNET}",
            "--health-port=0",  # it would listen on every interface; metrics are off by default
        ],
    )
    wait(
        lambda: _forward_jump() or None,
        timeout,
        "kube-router's KUBE-ROUTER-FORWARD hooked into FORWARD",
        [process],
        interval=0.5,
    )
    return process


def _forward_jump() -> bool:
    rules = output_of(["iptables-save", "-t", "filter"]).splitlines()
    return any(r.startswith("-A FORWARD ") and r.endswith("-j KUBE-ROUTER-FORWARD") for r in rules)
