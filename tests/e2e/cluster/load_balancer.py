"""A stand-in for a cloud's load-balancer controller (what cloud-provider-kind does on kind): it
writes `status.loadBalancer.ingress` of LoadBalancer Services, and nothing else.

Given a pool of addresses (the node cluster's, node_cluster.py), each Service gets one of its own;
kube-proxy then routes that address to the Service's endpoints, as it does for a cloud's VIP.
Without a pool (the loopback control plane, where nothing routes) every Service gets 127.0.0.1,
status only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tests.e2e.processes import LOOPBACK, E2EError


class LoadBalancerStandIn:
    name = "load-balancer stand-in"

    def __init__(self, pool: Sequence[str] = ()) -> None:
        self.pool = list(pool)

    def assignments(self, services: Sequence[dict[str, Any]]) -> list[tuple[str, str, str]]:
        """(namespace, name, address) for each LoadBalancer Service without an ingress yet: the
        first pool address no Service holds, or 127.0.0.1 without a pool."""
        held = {
            entry.get("ip")
            for service in services
            for entry in service.get("status", {}).get("loadBalancer", {}).get("ingress") or []
        }
        found = []
        for service in services:
            meta = service["metadata"]
            if service.get("spec", {}).get("type") != "LoadBalancer":
                continue
            if service.get("status", {}).get("loadBalancer", {}).get("ingress"):
                continue
            if not self.pool:
                found.append((meta["namespace"], meta["name"], LOOPBACK))
                continue
            free = next((address for address in self.pool if address not in held), None)
            if free is None:
                raise E2EError(
                    f"{self.name}: no free address in its pool of {len(self.pool)} for {meta['name']}"
                )
            held.add(free)
            found.append((meta["namespace"], meta["name"], free))
        return found

    @staticmethod
    def status_patch(address: str) -> dict[str, Any]:
        return {"status": {"loadBalancer": {"ingress": [{"ip": address}]}}}
