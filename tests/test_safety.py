"""Operational safety (issue #6): keys stay put, chain data is never lost or mixed up, and the
first `pulumi up` returns while the node is still syncing."""

import json
from typing import Any

import pytest

from components.networks import NETWORKS
from components.stack_config import SettingsError
from tests.conftest import find, only
from tests.support.constants import EXAMPLE_AUTHORITY_PUBKEY, STACKS, TEST_NETWORK_ADDRESS
from tests.support.harness import Registered, Run, run_stack

STATEFULSET = {"signet": "bitcoin-signet", "testnet4": "bitcoin-testnet4", "mainnet": "bitcoin-main"}
CLAIM_TEMPLATE = "chain-data"
INGRESS_WAIT = "jsonpath={.status.loadBalancer.ingress}"

# Random resources by the rotation setting that is their keeper.
ROTATIONS = {
    "poolKeyRotation": {"credentials-pool-authority"},
    "tpKeyRotation": {"credentials-tp-authority"},
    "rpcCredentialsRotation": {
        "credentials-rpc-user",
        "credentials-rpc-password",
        "credentials-rpcauth-salt",
    },
}
# Stack outputs derived from each rotation's random resources.
ROTATED_OUTPUTS = {
    "poolKeyRotation": {"poolPublicKey"},
    "tpKeyRotation": {"templateProviderPublicKey"},
    "rpcCredentialsRotation": {"rpcUser", "rpcPassword"},
}
CREDENTIAL_OUTPUTS = {"poolPublicKey", "templateProviderPublicKey", "rpcUser", "rpcPassword"}


def _resources(amounts: tuple[str, str, str, str]) -> str:
    cpu, memory, cpu_limit, memory_limit = amounts
    return json.dumps(
        {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu_limit, "memory": memory_limit}}
    )


# Settings that have nothing to do with keys; each changes what the stack renders.
UNRELATED_CHANGES: dict[str, dict[str, str]] = {
    "translator replicas": {"translatorMinReplicas": "3", "translatorMaxReplicas": "20"},
    "translator resources": {"translatorResources": _resources(("200m", "256Mi", "2", "512Mi"))},
    "pool resources": {"poolResources": _resources(("200m", "256Mi", "2", "1Gi"))},
    "node resources": {"nodeResources": _resources(("1", "4Gi", "4", "12Gi"))},
    "monitoring on": {"monitoringEnabled": "true"},
    "difficulty": {
        "minIndividualMinerHashrate": "1e15",
        "translatorSharesPerMinute": "12",
        "enableVardiff": "false",
        "downstreamExtranonce2Size": "6",
    },
    "pool shares": {"poolSharesPerMinute": "20", "shareBatchSize": "50", "poolSignature": "another pool"},
    "load balancer": {
        "lbSourceRanges": json.dumps(["203.0.113.0/24"]),
        "lbExternalTrafficPolicy": "Cluster",
        "lbAnnotations": json.dumps({"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}),
    },
    "storage": {"storageSize": "900Gi", "storageClass": "fast-ssd", "nodeVolumeSnapshot": "synced"},
    "images": {
        "poolImage": "stratumv2/pool_sv2:v0.2.1",
        "translatorImage": "stratumv2/translator_sv2@sha256:" + "ab" * 32,
        "nodeImage": "ghcr.io/example/sv2-bitcoin-node:30.2-sv2tp1.0.5",
    },
    "failover": {
        "failoverUpstreams": json.dumps(
            [{"address": "192.0.2.7", "port": 34254, "authorityPubkey": EXAMPLE_AUTHORITY_PUBKEY}]
        )
    },
    "retention off": {"retainChainData": "false"},
}


def randoms(run: Run) -> dict[str, Registered]:
    assert run.error is None, run.error
    found = {r.name: r for r in run.resources if r.type.startswith("random:")}
    assert set(found) == set().union(*ROTATIONS.values()), sorted(found)
    return found


def identity(resource: Registered) -> tuple[str, str, str, dict[str, Any]]:
    return resource.type, resource.urn, resource.parent, resource.plain_inputs


def statefulset(run: Run) -> dict[str, Any]:
    assert run.error is None, run.error
    return only(run, "StatefulSet")


# --- keys and credentials are stable --------------------------------------------------------


def assert_keys_and_claim_untouched(base: Run, changed: Run, change: str) -> None:
    before, after = randoms(base), randoms(changed)
    for name, resource in before.items():
        # Same URN and the same inputs, keepers included: the engine neither updates nor replaces.
        assert identity(after[name]) == identity(resource), f"{change} touches {name}"
    for output in CREDENTIAL_OUTPUTS:
        assert changed.outputs[output] == base.outputs[output], f"{change} changes {output}"
    # Nor do they rename the StatefulSet, whose name the claim's name follows (storage size,
    # snapshot and retention included): the node keeps its chain.
    assert statefulset(changed)["metadata"]["name"] == statefulset(base)["metadata"]["name"]


@pytest.mark.parametrize("change", list(UNRELATED_CHANGES))
def test_an_unrelated_setting_leaves_every_random_resource_untouched(
    change: str, runs: dict[str, Run]
) -> None:
    assert_keys_and_claim_untouched(runs["signet"], run_stack("signet", UNRELATED_CHANGES[change]), change)


@pytest.mark.parametrize("stack", STACKS)
def test_all_unrelated_settings_at_once_leave_the_keys_of_every_stack(
    stack: str, runs: dict[str, Run]
) -> None:
    everything = {key: value for change in UNRELATED_CHANGES.values() for key, value in change.items()}
    assert_keys_and_claim_untouched(runs[stack], run_stack(stack, everything), "all unrelated settings")


@pytest.mark.parametrize("rotation", list(ROTATIONS))
def test_a_rotation_replaces_exactly_its_own_random_resources(rotation: str, runs: dict[str, Run]) -> None:
    base = runs["signet"]
    rotated = run_stack("signet", {rotation: "2026-11"})
    before, after = randoms(base), randoms(rotated)
    for name, resource in before.items():
        new = after[name]
        assert new.urn == resource.urn  # a replacement in place, not a new resource beside the old
        if name in ROTATIONS[rotation]:
            assert new.plain_inputs["keepers"] == {"rotation": "2026-11"}
            assert resource.plain_inputs["keepers"] == {"rotation": "0"}
            assert {k: v for k, v in new.plain_inputs.items() if k != "keepers"} == {
                k: v for k, v in resource.plain_inputs.items() if k != "keepers"
            }
        else:
            assert identity(new) == identity(resource), f"{rotation} touches {name}"
    for output in CREDENTIAL_OUTPUTS:
        if output in ROTATED_OUTPUTS[rotation]:
            assert rotated.outputs[output] != base.outputs[output], f"{rotation} keeps {output}"
        else:
            assert rotated.outputs[output] == base.outputs[output], f"{rotation} changes {output}"


# --- nothing lost ---------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_chain_data_is_retained_by_default(stack: str, runs: dict[str, Run]) -> None:
    run = runs[stack]
    node = run.one("kubernetes:apps/v1:StatefulSet", STATEFULSET[stack])
    # An explicit name (not autonamed): a replaced StatefulSet re-attaches the same claim.
    assert node.plain_inputs["metadata"]["name"] == STATEFULSET[stack]
    assert NETWORKS[stack].core_chain in STATEFULSET[stack]
    spec = statefulset(run)["spec"]
    assert [t["metadata"]["name"] for t in spec["volumeClaimTemplates"]] == [CLAIM_TEMPLATE]
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    # Deleting the Namespace would delete the claim in it.
    namespace = run.one("kubernetes:core/v1:Namespace", "namespace")
    assert namespace.retain_on_delete


def test_opting_out_of_retention_deletes_claim_and_namespace() -> None:
    run = run_stack("testnet4", {"retainChainData": "false"})
    spec = statefulset(run)["spec"]
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Delete", "whenScaled": "Delete"}
    assert not run.one("kubernetes:core/v1:Namespace", "namespace").retain_on_delete


def test_every_chain_has_its_own_claim(runs: dict[str, Run]) -> None:
    claims = {f"{CLAIM_TEMPLATE}-{statefulset(runs[s])['metadata']['name']}-0" for s in STACKS}
    assert claims == {f"{CLAIM_TEMPLATE}-{name}-0" for name in STATEFULSET.values()}


def test_changing_the_network_never_reuses_the_old_chain_volume(runs: dict[str, Run]) -> None:
    # Same stack and namespace, another chain: a StatefulSet of another name, so a new claim
    # (chain-data-bitcoin-testnet4-0) beside the retained signet one, never a mixed datadir.
    base = runs["signet"]
    moved = run_stack("signet", {"network": "testnet4", "payoutAddress": TEST_NETWORK_ADDRESS})
    old, new = statefulset(base), statefulset(moved)
    assert new["metadata"]["namespace"] == old["metadata"]["namespace"]
    assert new["metadata"]["name"] == STATEFULSET["testnet4"] != old["metadata"]["name"]
    old_urn = base.one("kubernetes:apps/v1:StatefulSet", STATEFULSET["signet"]).urn
    assert old_urn not in {r.urn for r in moved.resources}


# --- the first deploy returns promptly ------------------------------------------------------


def _annotations(manifest: dict[str, Any]) -> dict[str, str]:
    return dict(manifest["metadata"].get("annotations") or {})


@pytest.mark.parametrize("stack", STACKS)
def test_await_rule_per_kind(stack: str, runs: dict[str, Run]) -> None:
    # pulumi-kubernetes waits for ready replicas and for Service endpoints by default. The
    # node's readiness follows its initial block download (hours on signet and testnet4, days
    # on mainnet), and the pool's and translators' readiness follows the node: waiting for any
    # of them would hold `pulumi up` until the chain has synced. Only the miners' address is
    # worth waiting for, and the LoadBalancer gets it without any ready pod.
    run = runs[stack]
    kinds = [m["kind"] for m in run.manifests()]
    assert kinds.count("StatefulSet") == 1 and kinds.count("Deployment") == 2
    for manifest in find(run, "StatefulSet") + find(run, "Deployment"):
        assert _annotations(manifest).get("pulumi.com/skipAwait") == "true", manifest["metadata"]["name"]
        # skipAwait ends the delete at once: deleted in the foreground, the object would still be
        # there for an `up` right after `destroy` (docs/upstream-behaviour.md).
        policy = _annotations(manifest).get("pulumi.com/deletionPropagationPolicy")
        assert policy == "background", manifest["metadata"]["name"]
    by_type: dict[str, list[str]] = {}
    for service in find(run, "Service"):
        by_type.setdefault(service["spec"]["type"], []).append(service["metadata"]["name"])
        annotations = _annotations(service)
        if service["spec"]["type"] == "LoadBalancer":
            assert annotations.get("pulumi.com/waitFor") == INGRESS_WAIT
            # skipAwait would win over waitFor: `pulumi up` would print no miners' address.
            assert "pulumi.com/skipAwait" not in annotations
        else:
            assert annotations.get("pulumi.com/skipAwait") == "true", service["metadata"]["name"]
            assert "pulumi.com/waitFor" not in annotations
    assert by_type["LoadBalancer"] == ["translator-miners"]
    assert f"{STATEFULSET[stack]}-p2p" in by_type["NodePort"]
    assert {f"{STATEFULSET[stack]}-rpc", f"{STATEFULSET[stack]}-tp", "pool"} <= set(by_type["ClusterIP"])
    assert run.outputs["loadBalancerAddress"] != "<pending>"


def test_load_balancer_keeps_its_wait_next_to_user_annotations() -> None:
    user = {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}
    run = run_stack("mainnet", {"lbAnnotations": json.dumps(user)})
    miners = only(run, "Service", "translator-miners")
    annotations = _annotations(miners)
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-type"] == "nlb"
    assert annotations["pulumi.com/waitFor"] == INGRESS_WAIT


@pytest.mark.parametrize("key", ["pulumi.com/waitFor", "pulumi.com/skipAwait"])
def test_user_annotations_cannot_change_how_pulumi_waits(key: str) -> None:
    run = run_stack("mainnet", {"lbAnnotations": json.dumps({key: "true"})})
    assert isinstance(run.error, SettingsError)
    assert "sv2-k8s:lbAnnotations" in str(run.error)
    assert run.resources == []


def test_a_fixed_node_port_still_skips_the_await() -> None:
    run = run_stack("testnet4", {"p2pNodePort": "30333"})
    p2p = only(run, "Service", "bitcoin-testnet4-p2p")
    assert p2p["spec"]["ports"][0]["nodePort"] == 30333
    assert _annotations(p2p)["pulumi.com/skipAwait"] == "true"


# --- fast bootstrap -------------------------------------------------------------------------


def _claim_spec(run: Run) -> dict[str, Any]:
    templates = statefulset(run)["spec"]["volumeClaimTemplates"]
    assert len(templates) == 1
    return dict(templates[0]["spec"])


def test_a_snapshot_seeds_the_node_volume() -> None:
    claim = _claim_spec(run_stack("mainnet", {"nodeVolumeSnapshot": "mainnet-synced"}))
    assert claim["dataSource"] == {
        "apiGroup": "snapshot.storage.k8s.io",
        "kind": "VolumeSnapshot",
        "name": "mainnet-synced",
    }
    assert "dataSourceRef" not in claim


@pytest.mark.parametrize("stack", STACKS)
def test_without_a_snapshot_the_volume_starts_empty(stack: str, runs: dict[str, Run]) -> None:
    claim = _claim_spec(runs[stack])
    assert "dataSource" not in claim and "dataSourceRef" not in claim
