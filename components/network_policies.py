"""NetworkPolicies: deny by default, then exactly the flows the mining system needs.

miners (lbSourceRanges) → translator :34255     translator → pool :34254
pool → node's sv2-tp :8442                       the world ↔ node P2P
Prometheus namespace → metrics ports             RPC: only from rpcAllowedNamespaces
"""

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import workload
from components.networks import MONITORING_PORT, POOL_PORT, TEMPLATE_PROVIDER_PORT, TRANSLATOR_PORT
from components.settings import Settings

EVERYWHERE = ("0.0.0.0/0", "::/0")


@dataclass(frozen=True)
class NetworkPoliciesArgs:
    settings: Settings


def _pods(component: str) -> workload.Fields:
    return {"podSelector": {"matchLabels": workload.selector_labels(component)}}


def _namespaces(*names: str) -> workload.Fields:
    return {
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": list(names)}
            ]
        }
    }


def _cidrs(cidrs: tuple[str, ...]) -> list[workload.Fields]:
    return [{"ipBlock": {"cidr": cidr}} for cidr in cidrs]


def _tcp(*ports: int | str) -> list[workload.Fields]:
    return [{"protocol": "TCP", "port": port} for port in ports]


# Pods resolve Service names through the cluster DNS in kube-system.
_DNS_EGRESS: workload.Fields = {
    "to": [_namespaces("kube-system")],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}


class NetworkPolicies(pulumi.ComponentResource):
    """Who may talk to whom inside the stack's namespace, and from outside it."""

    def __init__(self, name: str, args: NetworkPoliciesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("sv2:network:NetworkPolicies", name, None, opts)
        child = workload.child_options(self, opts)
        settings = args.settings
        prometheus = _namespaces(settings.prometheus_namespace)
        # With externalTrafficPolicy Local the pods see the miners' own addresses, so this
        # CIDR rule is the same filter as the LoadBalancer's source ranges (README explains
        # what Cluster changes).
        miners = _cidrs(settings.lb_source_ranges or EVERYWHERE)
        failover_egress = [
            {"to": _cidrs((f"{u.address}/{32 if ':' not in u.address else 128}",)), "ports": _tcp(u.port)}
            for u in settings.failover_upstreams
        ]
        node_ingress = [
            {"from": [_pods(workload.POOL)], "ports": _tcp(TEMPLATE_PROVIDER_PORT)},
            {"from": _cidrs(EVERYWHERE), "ports": _tcp(settings.facts.p2p_port)},
            {"from": [prometheus], "ports": _tcp(workload.METRICS_PORT_NAME)},
        ]
        if settings.rpc_allowed_namespaces:
            node_ingress.append(
                {
                    "from": [_namespaces(*settings.rpc_allowed_namespaces)],
                    "ports": _tcp(settings.facts.rpc_port),
                }
            )

        policies: dict[str, workload.Fields] = {
            # Everything not allowed below is refused.
            "default-deny-ingress": {"podSelector": {}, "policyTypes": ["Ingress"]},
            workload.TRANSLATOR: {
                **_pods(workload.TRANSLATOR),
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {"from": miners, "ports": _tcp(TRANSLATOR_PORT)},
                    {"from": [prometheus], "ports": _tcp(MONITORING_PORT)},
                ],
                "egress": [
                    _DNS_EGRESS,
                    {"to": [_pods(workload.POOL)], "ports": _tcp(POOL_PORT)},
                    *failover_egress,
                ],
            },
            workload.POOL: {
                **_pods(workload.POOL),
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {"from": [_pods(workload.TRANSLATOR)], "ports": _tcp(POOL_PORT)},
                    {"from": [prometheus], "ports": _tcp(MONITORING_PORT)},
                ],
                "egress": [
                    _DNS_EGRESS,
                    {"to": [_pods(workload.NODE)], "ports": _tcp(TEMPLATE_PROVIDER_PORT)},
                ],
            },
            # The node's egress stays open: P2P peers can be anywhere.
            workload.NODE: {**_pods(workload.NODE), "policyTypes": ["Ingress"], "ingress": node_ingress},
        }
        for policy_name, spec in policies.items():
            resource_name = f"{name}-{policy_name}"
            k8s.networking.v1.NetworkPolicy(
                resource_name,
                metadata=workload.metadata(resource_name, "network-policy", settings.placement),
                spec=spec,
                opts=child,
            )
        self.register_outputs({})
