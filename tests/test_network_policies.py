"""NetworkPolicy flows, evaluated over the rendered policies, pod labels and container ports.

A small evaluator of Kubernetes' semantics: a pod selected by any policy of a direction is
isolated in that direction, and a connection passes when some selecting policy has a rule
whose peers and ports both match; it needs the source's egress and the target's ingress.
"""

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from components.networks import NETWORKS
from tests.conftest import find
from tests.support.constants import EXAMPLE_AUTHORITY_PUBKEY
from tests.support.harness import Run, run_stack


@dataclass(frozen=True)
class Endpoint:
    """A pod (labels, namespace, named ports) or, with an ip, something outside the cluster."""

    namespace: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    ip: str | None = None


INTERNET = Endpoint(ip="198.51.100.23")


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        present = labels.get(expression["key"])
        if expression["operator"] == "In" and present not in expression["values"]:
            return False
    return True


def _peer_matches(peer: dict[str, Any], other: Endpoint, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        if other.ip is None:
            return False
        return ipaddress.ip_address(other.ip) in ipaddress.ip_network(peer["ipBlock"]["cidr"])
    if other.ip is not None:
        return False
    if "namespaceSelector" in peer:
        namespace_labels = {"kubernetes.io/metadata.name": other.namespace}
        if not _matches(peer["namespaceSelector"], namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return "podSelector" not in peer or _matches(peer["podSelector"], other.labels)


def _port_matches(rule_ports: list[dict[str, Any]] | None, port: int, target: Endpoint) -> bool:
    if not rule_ports:
        return True
    for rule_port in rule_ports:
        wanted = rule_port.get("port")
        if isinstance(wanted, str):
            wanted = target.ports.get(wanted)
        if wanted is None or wanted == port:
            return True
    return False


def _allowed(
    policies: list[dict[str, Any]], pod: Endpoint, other: Endpoint, port: int, direction: str
) -> bool:
    """Whether `pod` may receive from (Ingress) or send to (Egress) `other` on `port`."""
    if pod.ip is not None:
        return True  # outside the cluster: no policy applies
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and direction in p["spec"].get("policyTypes", ["Ingress"])
        and _matches(p["spec"]["podSelector"], pod.labels)
    ]
    if not selecting:
        return True
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    port_owner = pod if direction == "Ingress" else other
    for policy in selecting:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            peer_ok = not peers or any(_peer_matches(p, other, pod.namespace) for p in peers)
            if peer_ok and _port_matches(rule.get("ports"), port, port_owner):
                return True
    return False


def connects(run: Run, source: Endpoint, target: Endpoint, port: int) -> bool:
    policies = find(run, "NetworkPolicy")
    return _allowed(policies, source, target, port, "Egress") and _allowed(
        policies, target, source, port, "Ingress"
    )


def pod(run: Run, kind: str, component: str) -> Endpoint:
    """The pod a workload's template produces, as the policies see it."""
    for manifest in find(run, kind):
        template = manifest["spec"]["template"]
        labels = template["metadata"]["labels"]
        if labels.get("app.kubernetes.io/name") == component:
            ports = {
                p["name"]: p["containerPort"]
                for container in template["spec"]["containers"]
                for p in container.get("ports", [])
            }
            return Endpoint(manifest["metadata"]["namespace"], labels, ports)
    raise AssertionError(f"no {kind} of {component}")


def pods(run: Run) -> tuple[Endpoint, Endpoint, Endpoint]:
    return (
        pod(run, "Deployment", "translator"),
        pod(run, "Deployment", "pool"),
        pod(run, "StatefulSet", "bitcoin-node"),
    )


def prometheus(run: Run) -> Endpoint:
    return Endpoint(
        namespace=run.config.get("prometheusNamespace") or "monitoring", labels={"app": "prometheus"}
    )


def test_the_namespace_denies_ingress_by_default(run: Run) -> None:
    stranger = Endpoint(namespace=only_namespace(run), labels={"app": "debug"})
    translator, pool, node = pods(run)
    for target, port in ((pool, 34254), (node, 8442), (translator, 8080)):
        assert not connects(run, stranger, target, port)


def only_namespace(run: Run) -> str:
    return str(find(run, "Namespace")[0]["metadata"]["name"])


def test_allowed_flows(run: Run) -> None:
    facts = NETWORKS[run.stack]
    translator, pool, node = pods(run)
    assert connects(run, INTERNET, translator, 34255), "miners → translator"
    assert connects(run, translator, pool, 34254), "translator → pool"
    assert connects(run, pool, node, 8442), "pool → template provider"
    assert connects(run, INTERNET, node, facts.p2p_port), "world → node P2P"
    for target in (translator, pool):
        assert connects(run, prometheus(run), target, 8080), "Prometheus → metrics"


def test_forbidden_flows(run: Run) -> None:
    facts = NETWORKS[run.stack]
    translator, pool, node = pods(run)
    other_namespace = Endpoint(namespace="default", labels={"app": "anything"})
    forbidden = [
        (INTERNET, pool, 34254),
        (INTERNET, node, 8442),
        (INTERNET, node, facts.rpc_port),
        (INTERNET, translator, 8080),
        (INTERNET, pool, 8080),
        (translator, node, 8442),
        (translator, node, facts.rpc_port),
        (pool, node, facts.rpc_port),
        (pool, translator, 34255),
        (other_namespace, node, facts.rpc_port),
        (other_namespace, pool, 34254),
        (translator, pool, 8080),
    ]
    for source, target, port in forbidden:
        assert not connects(run, source, target, port), (
            f"{source.labels or source.ip} → {target.labels}:{port}"
        )


def test_rpc_opens_only_to_the_namespaces_a_setting_names() -> None:
    run = run_stack("signet", {"rpcAllowedNamespaces": '["ops"]'})
    _, pool, node = pods(run)
    rpc = NETWORKS["signet"].rpc_port
    assert connects(run, Endpoint(namespace="ops", labels={"app": "tool"}), node, rpc)
    assert not connects(run, Endpoint(namespace="default", labels={"app": "tool"}), node, rpc)
    assert not connects(run, pool, node, rpc)


def test_miner_source_ranges_restrict_the_translator() -> None:
    run = run_stack("signet", {"lbSourceRanges": '["203.0.113.0/24"]'})
    translator, _, _ = pods(run)
    assert connects(run, Endpoint(ip="203.0.113.50"), translator, 34255)
    assert not connects(run, INTERNET, translator, 34255)


def test_translator_egress_reaches_failover_pools_only_as_configured() -> None:
    backup = {"address": "192.0.2.9", "port": 3333, "authorityPubkey": EXAMPLE_AUTHORITY_PUBKEY}
    run = run_stack("signet", {"failoverUpstreams": json.dumps([backup])})
    translator, _, _ = pods(run)
    assert connects(run, translator, Endpoint(ip="192.0.2.9"), 3333)
    assert not connects(run, translator, Endpoint(ip="192.0.2.10"), 3333)
    assert not connects(run, translator, INTERNET, 443)
