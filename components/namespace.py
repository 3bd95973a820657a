"""The cluster connection and the namespace every object of a stack lives in."""

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.settings import Settings
from components.workload import NETWORK_LABEL, PART_OF


@dataclass(frozen=True)
class ClusterConnection:
    """The default provider's `kubernetes:kubeconfig` and `kubernetes:context`, for the program's
    explicit provider. A kubeconfig carries credentials: it stays a secret Output."""

    kubeconfig: pulumi.Output[str] | None
    context: str | None


def cluster_connection() -> ClusterConnection:
    """Read from the stack's `kubernetes:` settings, which the default provider would use."""
    kubernetes = pulumi.Config("kubernetes")
    return ClusterConnection(kubernetes.get_secret("kubeconfig"), kubernetes.get("context"))


def kubernetes_provider(connection: ClusterConnection) -> k8s.Provider:
    """The provider every Kubernetes object goes through.

    By default pulumi-kubernetes replaces a Secret or ConfigMap whose data changes, delete
    first, and then asks whether the StatefulSet and Deployments that mount it must go too
    (docs/upstream-behaviour.md#pulumi-kubernetes-replaces-a-secret-or-configmap-whose-data-changes).
    Mutable, they are updated in place, and the config-hash annotations roll
    the pods that read them. The default provider's kubeconfig and context settings still apply.
    """
    return k8s.Provider(
        "kubernetes",
        enable_secret_mutable=True,
        enable_config_map_mutable=True,
        kubeconfig=connection.kubeconfig,
        context=connection.context,
    )


def mining_namespace(settings: Settings, connection: ClusterConnection) -> k8s.core.v1.Namespace:
    """Deleting a Namespace deletes the chain volume in it: keep it on destroy by default.

    The Namespace may exist before `up`: kept by an earlier `destroy` (retainChainData), or made
    by the cluster's operators. Since 4.29 pulumi-kubernetes creates objects client-side and fails
    on one that exists (upsert became the opt-in `upsertExistingObjects`), so the Namespace, and
    only it, goes through a provider that adopts what exists, and takes over the labels that
    another stack's provider set (a server-side apply conflict otherwise: patchForce). The rest
    keeps failing on a name clash, which guards against a rename silently taking over another
    object.
    docs/upstream-behaviour.md#pulumi-kubernetes-creates-objects-client-side-and-fails-on-one-that-exists"""
    provider = k8s.Provider(
        "kubernetes-namespace",
        kubeconfig=connection.kubeconfig,
        context=connection.context,
        upsert_existing_objects=True,
    )
    return k8s.core.v1.Namespace(
        "namespace",
        metadata={
            "name": settings.namespace,
            "annotations": {"pulumi.com/patchForce": "true"},
            "labels": {
                "app.kubernetes.io/part-of": PART_OF,
                NETWORK_LABEL: settings.network,
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
            },
        },
        opts=pulumi.ResourceOptions(provider=provider, retain_on_delete=settings.retain_chain_data),
    )
