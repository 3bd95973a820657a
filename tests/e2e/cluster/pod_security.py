"""What Pod Security admission let the controllers create, read from a control plane's API server:
the Pods that exist, and the denials controllers report (control_plane_selftest.py)."""

from __future__ import annotations

import urllib.parse
from typing import Any

from tests.e2e.cluster.control_plane import ControlPlane, ControlPlaneError
from tests.e2e.processes import wait

POD_SECURITY_MARK = "violates PodSecurity"


def pods(plane: ControlPlane, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    query = f"?labelSelector={urllib.parse.quote(selector)}" if selector else ""
    items: list[dict[str, Any]] = plane.get_json(f"/api/v1/namespaces/{namespace}/pods{query}")["items"]
    return items


def wait_for_pods(
    plane: ControlPlane, namespace: str, count: int, timeout: float = 60.0, selector: str = ""
) -> list[dict[str, Any]]:
    """Wait until at least `count` Pods exist (admitted; without a node they stay Pending)."""

    def enough() -> list[dict[str, Any]] | None:
        plane.check_alive()
        existing = pods(plane, namespace, selector)
        return existing if len(existing) >= count else None

    def status() -> str:
        violations = "; ".join(pod_security_violations(plane, namespace)) or "none"
        return f"{len(pods(plane, namespace, selector))} pods; Pod Security violations: {violations}"

    found: list[dict[str, Any]] = wait(
        enough, timeout, f"{count} pods in {namespace}", interval=0.5, status=status
    )
    return found


def pod_security_violations(plane: ControlPlane, namespace: str | None = None) -> list[str]:
    """'Kind namespace/name: message' for each controller that Pod Security kept from creating Pods:
    ReplicaSet conditions (ReplicaFailure/FailedCreate) and FailedCreate events (StatefulSets too)."""
    scope = f"/namespaces/{namespace}" if namespace else ""
    found: list[str] = []
    for kind, path in (("ReplicaSet", "replicasets"), ("StatefulSet", "statefulsets")):
        for item in plane.get_json(f"/apis/apps/v1{scope}/{path}")["items"]:
            for condition in item.get("status", {}).get("conditions") or []:
                if POD_SECURITY_MARK in condition.get("message", ""):
                    meta = item["metadata"]
                    found.append(f"{kind} {meta['namespace']}/{meta['name']}: {condition['message']}")
    for event in plane.get_json(f"/api/v1{scope}/events")["items"]:
        if event.get("reason") == "FailedCreate" and POD_SECURITY_MARK in event.get("message", ""):
            obj = event["involvedObject"]
            found.append(f"{obj['kind']} {obj.get('namespace', '')}/{obj['name']}: {event['message']}")
    return list(dict.fromkeys(found))  # the same failure shows as a condition and as events


def assert_pod_security(
    plane: ControlPlane, namespace: str, count: int, timeout: float = 60.0
) -> list[dict[str, Any]]:
    """Pods were admitted (at least `count` exist) and no controller reports a Pod Security denial."""
    admitted = wait_for_pods(plane, namespace, count, timeout)
    violations = pod_security_violations(plane, namespace)
    if violations:
        raise ControlPlaneError("Pod Security denied pods:\n  " + "\n  ".join(violations))
    return admitted
