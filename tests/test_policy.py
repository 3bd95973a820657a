"""The policy pack: each policy passes a compliant resource and flags a crafted violation."""

import importlib
import runpy
import sys
from types import SimpleNamespace
from typing import Any

import pulumi_policy
import pytest
from pulumi_policy.proxy import (
    UNKNOWN_STRING_VALUE,
    unknown_checking_proxy,
)

from components.networks import NETWORKS
from tests.support.constants import ROOT

POLICY_DIR = ROOT / "policy"
# Pulumi runs the pack with policy/ on sys.path; the tests do the same.
if str(POLICY_DIR) not in sys.path:
    sys.path.append(str(POLICY_DIR))
policies = importlib.import_module("sv2_policies")

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STATEFUL_SET = "kubernetes:apps/v1:StatefulSet"
SERVICE = "kubernetes:core/v1:Service"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"


def container(name: str = "pool", image: str = "registry.example/sv2-pool:1.2.0") -> dict[str, Any]:
    """A container that meets every policy."""
    return {
        "name": name,
        "image": image,
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "livenessProbe": {"tcpSocket": {"port": 34254}},
        "readinessProbe": {"tcpSocket": {"port": 34254}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def pod_spec(**extra: Any) -> dict[str, Any]:
    return {
        "securityContext": {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container()],
        **extra,
    }


def deployment(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "pool"},
        "spec": {"template": {"spec": pod_spec(**spec)}},
    }


def first_container(props: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = props["spec"]["template"]["spec"]["containers"][0]
    return found


def service(service_type: str | None, *ports: dict[str, Any], **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ports": list(ports), **spec}
    if service_type is not None:
        body["type"] = service_type
    return {"metadata": {"name": "svc"}, "spec": body}


def node(network: str, storage: str, pruned: str = "false") -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "bitcoin-node", "sv2-k8s/network": network}
    claim = {
        "metadata": {"name": "data"},
        "spec": {"resources": {"requests": {"storage": storage}}},
    }
    return {
        "metadata": {
            "name": "node",
            "labels": labels,
            "annotations": {"sv2-k8s/pruned": pruned},
        },
        "spec": {"template": {"spec": pod_spec()}, "volumeClaimTemplates": [claim]},
    }


# Images.


@pytest.mark.parametrize(
    "image",
    [
        "registry.example/sv2-pool:1.2.0",
        "registry.example:5000/team/sv2-pool:v1",
        "sv2-pool@sha256:" + "a" * 64,
        "registry.example/sv2-pool:latest@sha256:" + "b" * 64,
    ],
)
def test_pinned_images_pass(image: str) -> None:
    props = deployment(containers=[container(image=image)])
    assert policies.check_pinned_images(DEPLOYMENT, props) == []


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("registry.example/sv2-pool:latest", "uses the 'latest' tag"),
        ("sv2-pool", "has no tag"),
        ("registry.example:5000/sv2-pool", "has no tag"),
        ("", "has no image"),
    ],
)
def test_unpinned_images_are_violations(image: str, problem: str) -> None:
    props = deployment(containers=[container(image=image)])
    (message,) = policies.check_pinned_images(DEPLOYMENT, props)
    assert "container 'pool'" in message and problem in message


def test_init_container_images_are_checked_too() -> None:
    props = deployment(initContainers=[container("init", "busybox:latest")])
    (message,) = policies.check_pinned_images(DEPLOYMENT, props)
    assert message.startswith("initContainer 'init'")


def test_images_of_cron_jobs_and_pods_are_checked() -> None:
    bad = pod_spec(containers=[container(image="busybox")])
    cron = {"spec": {"jobTemplate": {"spec": {"template": {"spec": bad}}}}}
    assert policies.check_pinned_images("kubernetes:batch/v1:CronJob", cron)
    assert policies.check_pinned_images("kubernetes:core/v1:Pod", {"spec": bad})


# Resources and probes.


def test_resources_and_probes_pass() -> None:
    assert policies.check_resources_and_probes(DEPLOYMENT, deployment()) == []


def test_missing_limit_and_probe_are_violations() -> None:
    props = deployment()
    del first_container(props)["resources"]["limits"]["cpu"]
    del first_container(props)["readinessProbe"]
    assert policies.check_resources_and_probes(DEPLOYMENT, props) == [
        "container 'pool' sets no resources.limits.cpu",
        "container 'pool' has no readinessProbe",
    ]


def test_init_containers_need_no_probes() -> None:
    props = deployment(initContainers=[{"name": "init", "image": "busybox:1.36"}])
    assert policies.check_resources_and_probes(DEPLOYMENT, props) == []


# ConfigMaps.


def test_plain_configuration_passes() -> None:
    props = {
        "data": {
            "sv2-tp.conf": "chain=signet\nsv2port=8442\n",
            "pool.toml": 'listen = "0.0.0.0"',
        }
    }
    assert policies.check_no_secrets_in_configmaps(CONFIG_MAP, props) == []


@pytest.mark.parametrize(
    ("section", "key", "value", "found"),
    [
        ("data", "rpcpassword", "x", "password"),
        ("data", "API_TOKEN", "x", "token"),
        ("binaryData", "private.key", "AAAA", "private"),
        ("data", "bitcoin.conf", "chain=signet\nrpcauth=sv2:abc$def\n", "rpcauth="),
        ("data", "bitcoin.conf", "rpcpassword=hunter2\n", "rpcpassword="),
        (
            "data",
            "pool.toml",
            'authority_secret_key = "mkDLTB"',
            "authority_secret_key",
        ),
    ],
)
def test_secret_material_in_a_configmap_is_a_violation(
    section: str, key: str, value: str, found: str
) -> None:
    (message,) = policies.check_no_secrets_in_configmaps(CONFIG_MAP, {section: {key: value}})
    assert key in message and found in message


def test_secrets_may_hold_secret_material() -> None:
    props = {"stringData": {"rpcpassword": "hunter2"}}
    assert policies.check_no_secrets_in_configmaps("kubernetes:core/v1:Secret", props) == []


# Template provider and RPC services.


@pytest.mark.parametrize("service_type", [None, "ClusterIP"])
def test_internal_services_on_cluster_ip_pass(service_type: str | None) -> None:
    props = service(service_type, {"name": "sv2-tp", "port": 8442}, {"name": "rpc", "port": 38332})
    assert policies.check_internal_services_cluster_ip(SERVICE, props) == []


def test_translator_load_balancer_passes() -> None:
    props = service("LoadBalancer", {"name": "sv1", "port": 34255, "targetPort": "sv1"})
    assert policies.check_internal_services_cluster_ip(SERVICE, props) == []


@pytest.mark.parametrize("port", [8442, *(net.rpc_port for net in NETWORKS.values()), 18443])
@pytest.mark.parametrize("service_type", ["LoadBalancer", "NodePort"])
def test_public_internal_services_are_violations(service_type: str, port: int) -> None:
    (message,) = policies.check_internal_services_cluster_ip(SERVICE, service(service_type, {"port": port}))
    assert str(port) in message and service_type in message


def test_public_port_forwarding_to_rpc_is_a_violation() -> None:
    props = service("LoadBalancer", {"port": 443, "targetPort": 8332})
    assert policies.check_internal_services_cluster_ip(SERVICE, props)


def test_external_ips_on_an_internal_service_are_a_violation() -> None:
    props = service("ClusterIP", {"port": 8442}, externalIPs=["203.0.113.7"])
    (message,) = policies.check_internal_services_cluster_ip(SERVICE, props)
    assert "externalIPs" in message


# Metrics.


def test_metrics_on_cluster_ip_pass() -> None:
    props = service("ClusterIP", {"name": "metrics", "port": 8080})
    assert policies.check_metrics_not_public(SERVICE, props) == []


def test_public_service_without_metrics_passes() -> None:
    props = service("LoadBalancer", {"name": "sv1", "port": 34255})
    assert policies.check_metrics_not_public(SERVICE, props) == []


@pytest.mark.parametrize(
    "port",
    [
        {"name": "http", "port": 8080},
        {"name": "metrics", "port": 9100},
        {"name": "Monitoring", "port": 9000},
        {"name": "web", "port": 80, "targetPort": 8080},
        {"name": "web", "port": 80, "targetPort": "metrics"},
    ],
)
def test_metrics_on_a_load_balancer_are_violations(port: dict[str, Any]) -> None:
    props = service("LoadBalancer", {"name": "sv1", "port": 34255}, port)
    (message,) = policies.check_metrics_not_public(SERVICE, props)
    assert "LoadBalancer" in message


# Node volume.


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_node_volume_of_the_network_default_passes(network: str) -> None:
    props = node(network, NETWORKS[network].default_storage)
    assert policies.check_node_volume(STATEFUL_SET, props) == []


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_node_volume_below_what_a_full_chain_needs_is_a_violation(network: str) -> None:
    (message,) = policies.check_node_volume(STATEFUL_SET, node(network, "5Gi"))
    assert NETWORKS[network].min_full_storage in message and "5Gi" in message


def test_a_pruned_node_may_be_smaller() -> None:
    assert policies.check_node_volume(STATEFUL_SET, node("mainnet", "20Gi", pruned="true")) == []


@pytest.mark.parametrize(
    ("storage", "ok"),
    [
        ("1Ti", True),
        ("0.75Ti", True),  # 768Gi
        ("768000Mi", True),  # exactly 750Gi
        ("767999Mi", False),
        ("806G", True),  # decimal: 806e9 bytes ≈ 750.6Gi
        ("800G", False),  # decimal: 800e9 bytes ≈ 745Gi
    ],
)
def test_node_volume_quantities_are_compared_by_bytes(storage: str, ok: bool) -> None:
    messages = policies.check_node_volume(STATEFUL_SET, node("mainnet", storage))
    assert (messages == []) is ok, messages


def test_node_volume_needs_a_valid_network_label_and_pruned_annotation() -> None:
    props = node("regtest", "1Gi", pruned="yes")
    assert policies.check_node_volume(STATEFUL_SET, props) == [
        "label sv2-k8s/network is 'regtest', not one of signet, testnet4, mainnet",
        "annotation sv2-k8s/pruned is 'yes', not true/false",
    ]


def test_node_volume_must_be_a_quantity_and_exist() -> None:
    assert policies.check_node_volume(STATEFUL_SET, node("signet", "lots"))
    props = node("signet", "10Gi")
    del props["spec"]["volumeClaimTemplates"]
    assert policies.check_node_volume(STATEFUL_SET, props)


def test_other_stateful_sets_are_not_nodes() -> None:
    props = node("mainnet", "1Gi")
    props["metadata"]["labels"]["app.kubernetes.io/name"] = "postgres"
    assert policies.check_node_volume(STATEFUL_SET, props) == []


# Pod Security `restricted`.


def test_restricted_pod_passes() -> None:
    props = deployment(initContainers=[container("init")])
    assert policies.check_pod_security_restricted(DEPLOYMENT, props) == []


def test_container_level_settings_suffice() -> None:
    props = deployment()
    del props["spec"]["template"]["spec"]["securityContext"]
    assert policies.check_pod_security_restricted(DEPLOYMENT, props) == []


def test_net_bind_service_may_be_added() -> None:
    props = deployment()
    first_container(props)["securityContext"]["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    assert policies.check_pod_security_restricted(DEPLOYMENT, props) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"runAsNonRoot": False}, "does not set runAsNonRoot"),
        ({"runAsUser": 0}, "runs as user 0"),
        ({"privileged": True}, "is privileged"),
        ({"allowPrivilegeEscalation": None}, "allowPrivilegeEscalation: false"),
        ({"capabilities": {"drop": ["NET_RAW"]}}, "does not drop ALL"),
        (
            {"capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}},
            "adds capabilities ['SYS_ADMIN']",
        ),
        ({"seccompProfile": {"type": "Unconfined"}}, "seccompProfile is Unconfined"),
    ],
)
def test_container_security_violations(change: dict[str, Any], expected: str) -> None:
    props = deployment()
    context = first_container(props)["securityContext"]
    context.update({key: value for key, value in change.items() if value is not None})
    for key in [key for key, value in change.items() if value is None]:
        del context[key]
    (message,) = policies.check_pod_security_restricted(DEPLOYMENT, props)
    assert message.startswith("container 'pool'") and expected in message


def test_missing_non_root_and_seccomp_anywhere_are_violations() -> None:
    props = deployment()
    del props["spec"]["template"]["spec"]["securityContext"]
    for key in ("runAsNonRoot", "seccompProfile"):
        del first_container(props)["securityContext"][key]
    assert len(policies.check_pod_security_restricted(DEPLOYMENT, props)) == 2


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"hostNetwork": True}, "pod sets hostNetwork: true"),
        ({"hostPID": True}, "pod sets hostPID: true"),
        ({"hostIPC": True}, "pod sets hostIPC: true"),
        (
            {"volumes": [{"name": "host", "hostPath": {"path": "/"}}]},
            "volume 'host' is a hostPath volume",
        ),
        (
            {"securityContext": {"runAsNonRoot": True, "runAsUser": 0}},
            "pod runs as user 0 (root)",
        ),
    ],
)
def test_pod_security_violations(extra: dict[str, Any], expected: str) -> None:
    assert expected in policies.check_pod_security_restricted(DEPLOYMENT, deployment(**extra))


def test_init_containers_must_be_restricted_too() -> None:
    init = container("init")
    init["securityContext"]["privileged"] = True
    messages = policies.check_pod_security_restricted(DEPLOYMENT, deployment(initContainers=[init]))
    assert messages == ["initContainer 'init' is privileged"]


def test_policies_ignore_unrelated_resources() -> None:
    for validator in (
        policies.check_pinned_images,
        policies.check_resources_and_probes,
        policies.check_pod_security_restricted,
        policies.check_node_volume,
    ):
        assert validator(SERVICE, service("LoadBalancer", {"port": 8442})) == []


# The pulumi-policy side.


class Recorder:
    """A report_violation callback that keeps the messages."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, message: str, urn: str | None = None) -> None:
        self.messages.append(message)


def test_adapter_reports_each_message() -> None:
    args = SimpleNamespace(
        resource_type=DEPLOYMENT,
        props=deployment(containers=[container(image="pool:latest")]),
    )
    report = Recorder()
    policies.adapt(policies.check_pinned_images)(args, report)
    assert report.messages == policies.check_pinned_images(DEPLOYMENT, args.props)
    assert len(report.messages) == 1


def test_pack_policies_are_mandatory_and_reach_the_validators() -> None:
    by_name = {policy.name: policy for policy in policies.POLICIES}
    assert len(by_name) == len(policies.POLICIES) == 8
    advisory = {
        name for name, p in by_name.items() if p.enforcement_level != pulumi_policy.EnforcementLevel.MANDATORY
    }
    assert advisory == {"checked-at-up"}
    assert by_name["checked-at-up"].enforcement_level == pulumi_policy.EnforcementLevel.ADVISORY
    bad = deployment()
    first_container(bad)["securityContext"]["privileged"] = True
    args = SimpleNamespace(resource_type=DEPLOYMENT, props=unknown_checking_proxy(bad))
    report = Recorder()
    by_name["pod-security-restricted"].validate(args, report)
    assert report.messages == ["container 'pool' is privileged"]


def validate(policy_name: str, resource_type: str, props: dict[str, Any]) -> list[str]:
    """What one policy of the pack reports for props as the engine hands them over (proxied)."""
    (policy,) = [p for p in policies.POLICIES if p.name == policy_name]
    report = Recorder()
    policy.validate(SimpleNamespace(resource_type=resource_type, props=unknown_checking_proxy(props)), report)
    return report.messages


def test_a_policy_skips_a_value_unknown_during_preview_and_checks_the_rest() -> None:
    # Issue 18: a TOML embedding a Service address not yet assigned made the whole
    # no-secrets-in-configmaps policy "can't run during preview" for that ConfigMap.
    config = {"data": {"translator.toml": UNKNOWN_STRING_VALUE, "pool.toml": "rpcpassword=x"}}
    assert validate("no-secrets-in-configmaps", CONFIG_MAP, config) == [
        "data 'pool.toml' contains rpcpassword=: use a Secret"
    ]
    assert validate("checked-at-up", CONFIG_MAP, config) == [
        "not checked during preview, unknown until up: .data.translator.toml"
    ]
    props = deployment()
    first_container(props)["image"] = UNKNOWN_STRING_VALUE
    first_container(props)["securityContext"]["privileged"] = True
    assert validate("pinned-images", DEPLOYMENT, props) == []
    assert validate("pod-security-restricted", DEPLOYMENT, props) == ["container 'pool' is privileged"]
    assert validate("checked-at-up", DEPLOYMENT, props) == [
        "not checked during preview, unknown until up: .spec.template.spec.containers[0].image"
    ]
    assert validate("checked-at-up", DEPLOYMENT, deployment()) == []


@pytest.mark.parametrize(
    ("policy_name", "resource_type", "props"),
    [
        ("node-volume-minimum", STATEFUL_SET, node("mainnet", UNKNOWN_STRING_VALUE)),
        ("internal-services-cluster-ip", SERVICE, service(UNKNOWN_STRING_VALUE, {"port": 8442})),
    ],
)
def test_an_unknown_value_is_not_a_violation(
    policy_name: str, resource_type: str, props: dict[str, Any]
) -> None:
    assert validate(policy_name, resource_type, props) == []


def test_pack_entry_point_builds_the_pack(monkeypatch: pytest.MonkeyPatch) -> None:
    built: dict[str, Any] = {}
    # The real PolicyPack serves gRPC forever; record its arguments instead.
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kwargs: built.update(kwargs))
    runpy.run_path(str(POLICY_DIR / "__main__.py"))
    assert built["name"] == "sv2-k8s"
    assert built["policies"] is policies.POLICIES
    assert built["enforcement_level"] == pulumi_policy.EnforcementLevel.MANDATORY
