"""What every workload shares: labels, restricted pod security, probes, await annotations."""

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Final, cast

import pulumi
import pulumi_kubernetes as k8s
from pulumi.output import UNKNOWN

from components.placement import Placement
from components.setting_types import Resources

PART_OF: Final = "sv2-k8s"
# Each workload's `app.kubernetes.io/name`: what Services, NetworkPolicies and monitors select.
NODE: Final = "bitcoin-node"
POOL: Final = "pool"
TRANSLATOR: Final = "translator"
NETWORK_LABEL: Final = "sv2-k8s/network"
CONFIG_HASH_ANNOTATION: Final = "sv2-k8s/config-hash"
# Pool and translator readiness follow the node's initial sync, which takes hours to days;
# `pulumi up` must not wait for it. Objects that would block carry this.
# docs/upstream-behaviour.md#pulumi-kubernetes-waits-for-readiness-unless-annotated
SKIP_AWAIT: Final = {"pulumi.com/skipAwait": "true"}
# skipAwait also ends a workload's delete at once, and the provider deletes in the foreground: the
# object stays "being deleted" until its pods are gone (the node's take minutes), so an `up` right
# after `destroy` failed to create it. In the background the object goes at once and its
# controller's pods after it. docs/upstream-behaviour.md#pulumi-kubernetes-deletes-workloads-in-the-foreground
WORKLOAD_AWAIT: Final = {**SKIP_AWAIT, "pulumi.com/deletionPropagationPolicy": "background"}
SCRATCH_VOLUME: Final = "tmp"
# Services with a port of this name carry METRICS_LABEL, which ServiceMonitors select on: the
# translator's miners' Service shares its component labels with the metrics one.
METRICS_PORT_NAME: Final = "metrics"
METRICS_LABEL: Final = "sv2-k8s/metrics"
# Kubernetes fields as the API spells them (camelCase), which the provider accepts as is.
# The SDK's TypedDicts spell keys in snake_case, so these stay loosely typed.
Fields = Any


def selector_labels(component: str) -> dict[str, str]:
    """The labels a Service or NetworkPolicy selects a component's pods by."""
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/part-of": PART_OF}


def labels(component: str, placement: Placement) -> dict[str, str]:
    return {
        **selector_labels(component),
        NETWORK_LABEL: placement.network,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def metadata(
    name: str,
    component: str,
    placement: Placement,
    annotations: Mapping[str, str] | None = None,
) -> Fields:
    """Explicit names: a replaced object re-attaches what it owned (claims, clusterIP users).

    No empty annotations map: the API server drops it, and pulumi-kubernetes then shows every
    Secret as changed on each `pulumi up`:
    docs/upstream-behaviour.md#an-empty-annotations-map-shows-as-a-change-on-every-run"""
    meta: Fields = {"name": name, "namespace": placement.namespace, "labels": labels(component, placement)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def config_hash(*parts: pulumi.Input[str]) -> pulumi.Output[str]:
    """A digest of rendered configuration for a pod annotation: a change rolls the pods.

    The digest reveals nothing of the secrets it covers, so it is not kept secret
    (which would make the whole pod template secret in Pulumi's state).
    """

    def digest(texts: Sequence[str]) -> str:
        return hashlib.sha256("\0".join(texts).encode()).hexdigest()

    return pulumi.Output.unsecret(pulumi.Output.all(*parts).apply(digest))


def pull_policy(image: str) -> str:
    """A digest names fixed bytes; a tag may move, so re-check it at every pod start."""
    return "IfNotPresent" if "@sha256:" in image else "Always"


def container_security(uid: int) -> Fields:
    """The Pod Security `restricted` profile, for a container that needs no privileges."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(amounts: Resources) -> Fields:
    return amounts.model_dump()


def tcp_probe(port: int, *, period: int = 10, failures: int = 3, delay: int = 0) -> Fields:
    return {
        "tcpSocket": {"port": port},
        "initialDelaySeconds": delay,
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 3,
    }


def http_probe(path: str, port: int, *, delay: int, period: int = 20, failures: int = 3) -> Fields:
    return {
        "httpGet": {"path": path, "port": port},
        "initialDelaySeconds": delay,
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 5,
    }


def exec_probe(command: Sequence[str], *, period: int, failures: int, timeout: int = 10) -> Fields:
    return {
        "exec": {"command": list(command)},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


def pod_spec(
    placement: Placement,
    *,
    service_account: pulumi.Input[str],
    uid: int,
    containers: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    grace_seconds: int,
    image_pull_secrets: Sequence[str] = (),
) -> Fields:
    """A restricted pod: non-root, no token, scratch space on /tmp, where the stack places pods."""
    spec: Fields = {
        "serviceAccountName": service_account,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": grace_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": uid,
            "fsGroup": uid,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": containers,
        "volumes": [{"name": SCRATCH_VOLUME, "emptyDir": {"sizeLimit": "256Mi"}}, *volumes],
    }
    if placement.node_selector:
        spec["nodeSelector"] = dict(placement.node_selector)
    if placement.tolerations:
        spec["tolerations"] = list(placement.tolerations)
    if image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in image_pull_secrets]
    return spec


def scratch_mount() -> Fields:
    return {"name": SCRATCH_VOLUME, "mountPath": "/tmp"}


def sigint_pre_stop() -> Fields:
    """pool_sv2 and translator_sv2 shut down cleanly on SIGINT only and ignore SIGTERM as PID 1:
    docs/upstream-behaviour.md#pool_sv2-and-translator_sv2-stop-only-on-sigint"""
    return {
        "preStop": {"exec": {"command": ["/bin/sh", "-c", "kill -INT 1; while kill -0 1; do sleep 1; done"]}}
    }


def service_account(
    name: str, component: str, placement: Placement, opts: pulumi.ResourceOptions
) -> k8s.core.v1.ServiceAccount:
    """A dedicated identity per workload, with no API token mounted anywhere."""
    return k8s.core.v1.ServiceAccount(
        name,
        metadata=metadata(name, component, placement),
        automount_service_account_token=False,
        opts=opts,
    )


def service(
    name: str,
    component: str,
    placement: Placement,
    ports: Mapping[str, int],
    opts: pulumi.ResourceOptions,
    *,
    service_type: str = "ClusterIP",
    annotations: Mapping[str, str] = SKIP_AWAIT,
    extra_spec: Mapping[str, Any] | None = None,
    node_port: int | None = None,
) -> k8s.core.v1.Service:
    """A Service on a component's pods; named ports so probes and monitors can refer to them.

    By default `pulumi up` does not wait for endpoints, which appear only once the node
    has synced.
    """
    spec: Fields = {
        "type": service_type,
        "selector": selector_labels(component),
        "ports": [
            {"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}
            for port_name, port in ports.items()
        ],
        **(extra_spec or {}),
    }
    if node_port is not None:
        spec["ports"][0]["nodePort"] = node_port
    meta = metadata(name, component, placement, annotations)
    if METRICS_PORT_NAME in ports:
        meta["labels"][METRICS_LABEL] = "true"
    return k8s.core.v1.Service(name, metadata=meta, spec=spec, opts=opts)


def cluster_ip(service: k8s.core.v1.Service) -> pulumi.Output[str]:
    """A Service's clusterIP. Before the Service exists a preview has none: unknown then, not None
    (which `pulumi preview` would show, and configs would carry, as the text "None")."""

    def known_or_unknown(ip: str | None) -> str:
        return cast(str, UNKNOWN if ip is None and pulumi.runtime.is_dry_run() else ip)

    address: pulumi.Output[str | None] = service.spec.cluster_ip
    return address.apply(known_or_unknown)


def file_secret(
    name: str,
    component: str,
    placement: Placement,
    files: Mapping[str, pulumi.Input[str]],
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.Secret:
    """Configuration files that carry secret values, mounted read-only."""
    return k8s.core.v1.Secret(
        name,
        metadata=metadata(name, component, placement),
        type="Opaque",
        string_data=dict(files),
        opts=opts,
    )


CONFIG_VOLUME: Final = "config"
HEALTH_PATH: Final = "/api/v1/health"


def sv2_app_container(
    component: str,
    *,
    image: str,
    binary: str,
    config_path: str,
    ports: Mapping[str, int],
    resources_: Resources,
    uid: int,
) -> Fields:
    """pool_sv2 or translator_sv2: the image's entrypoint ignores args, so `command` carries -c.

    The first port is the service port: a TCP probe on it means "connected upstream" (the
    apps open it only then). /api/v1/health answers while the HTTP server runs: liveness only.
    docs/upstream-behaviour.md#the-sv2-apps-images-ignore-container-args-and-run-as-root
    docs/upstream-behaviour.md#the-translator-listens-only-after-an-upstream-accepted-it
    """
    service_port = next(iter(ports.values()))
    metrics_port = ports["metrics"]
    return {
        "name": component,
        "image": image,
        "imagePullPolicy": pull_policy(image),
        "command": [binary, "-c", config_path],
        "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in ports.items()],
        "resources": resources(resources_),
        "securityContext": container_security(uid),
        "readinessProbe": tcp_probe(service_port),
        "livenessProbe": http_probe(HEALTH_PATH, metrics_port, delay=60),
        "lifecycle": sigint_pre_stop(),
        "volumeMounts": [
            {"name": CONFIG_VOLUME, "mountPath": config_path.rsplit("/", 1)[0], "readOnly": True},
            scratch_mount(),
        ],
    }


def sv2_app_template(
    component: str,
    placement: Placement,
    *,
    container: dict[str, Any],
    config_source: dict[str, Any],
    config_text: pulumi.Input[str],
    service_account_name: pulumi.Input[str],
    uid: int,
) -> Fields:
    """The pod template of pool and translator; a config change rolls the pods."""
    return {
        "metadata": {
            "labels": labels(component, placement),
            "annotations": {CONFIG_HASH_ANNOTATION: config_hash(config_text)},
        },
        "spec": pod_spec(
            placement,
            service_account=service_account_name,
            uid=uid,
            containers=[container],
            volumes=[{"name": CONFIG_VOLUME, **config_source}],
            grace_seconds=60,
        ),
    }


def child_options(parent: pulumi.Resource, opts: pulumi.ResourceOptions | None) -> pulumi.ResourceOptions:
    """Options for a component's children: parented, and ordered after what the component
    depends on (the Namespace), which Pulumi does not pass down by itself:
    docs/upstream-behaviour.md#children-inherit-providers-from-their-parent-but-not-dependencies"""
    return pulumi.ResourceOptions(parent=parent, depends_on=opts.depends_on if opts else None)
