"""The namespace every object of a stack lives in, enforcing the `restricted` pod security level."""

import pulumi
import pulumi_kubernetes as k8s

from components.settings import Settings
from components.workload import NETWORK_LABEL, PART_OF


def mining_namespace(settings: Settings) -> k8s.core.v1.Namespace:
    """Deleting a Namespace deletes the chain volume in it: keep it on destroy by default."""
    return k8s.core.v1.Namespace(
        "namespace",
        metadata={
            "name": settings.namespace,
            "labels": {
                "app.kubernetes.io/part-of": PART_OF,
                NETWORK_LABEL: settings.network,
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
            },
        },
        opts=pulumi.ResourceOptions(retain_on_delete=settings.retain_chain_data),
    )
