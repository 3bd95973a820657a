"""The program end to end under the mock engine: every stack's objects, wired as users rely on."""

import base64
import configparser
import ipaddress
import json
import tomllib
from typing import Any

import base58
import kubernetes_validate
import pytest

from components import image_contract as contract
from components.keys import public_key_of_secret
from components.networks import NETWORKS
from components.renderers import dbcache_mib, sv2_tp_conf
from components.stack_config import parse_settings
from tests.conftest import (
    by_component,
    find,
    only,
    pool_config,
    service_ip,
    shared_reference,
    translator_config,
)
from tests.support.constants import EXAMPLE_AUTHORITY_PUBKEY, ROOT, STACKS
from tests.support.harness import LOAD_BALANCER_IP, Run, run_stack, secret_strings

POOL_REQUIRED_KEYS = {
    "listen_address",
    "authority_public_key",
    "authority_secret_key",
    "cert_validity_sec",
    "coinbase_reward_script",
    "pool_signature",
    "shares_per_minute",
    "share_batch_size",
    "server_id",
    "supported_extensions",
    "required_extensions",
    "template_provider_type",
}
TRANSLATOR_REQUIRED_KEYS = {
    "downstream_address",
    "downstream_port",
    "max_supported_version",
    "min_supported_version",
    "downstream_extranonce2_size",
    "user_identity",
    "aggregate_channels",
    "supported_extensions",
    "required_extensions",
    "downstream_difficulty_config",
    "upstreams",
}
DIFFICULTY_KEYS = {
    "min_individual_miner_hashrate",
    "shares_per_minute",
    "enable_vardiff",
    "job_keepalive_interval_secs",
}


def node_name(run: Run) -> str:
    return f"bitcoin-{NETWORKS[run.stack].core_chain}"


def test_every_object_is_schema_valid_for_kubernetes_1_30(run: Run) -> None:
    manifests = run.manifests()
    assert manifests
    for manifest in manifests:
        # kubernetes-validate has no CRD schemas; tests/test_monitoring.py validates these.
        if manifest["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        kubernetes_validate.validate(manifest, "1.30", strict=True)


def test_every_object_lives_in_the_stack_namespace(run: Run) -> None:
    namespace = only(run, "Namespace")["metadata"]["name"]
    for manifest in run.manifests():
        if manifest["kind"] != "Namespace":
            assert manifest["metadata"]["namespace"] == namespace


# --- pool -----------------------------------------------------------------------------


def test_pool_config_has_every_key_v0_2_0_requires(run: Run) -> None:
    config = pool_config(run)
    assert set(config) >= POOL_REQUIRED_KEYS
    assert config["listen_address"] == "0.0.0.0:34254"
    assert config["monitoring_address"] == "0.0.0.0:8080"
    assert config["coinbase_reward_script"] == f"addr({run.config['payoutAddress']})"
    assert set(config["template_provider_type"]) == {"Sv2Tp"}


def test_pool_config_keys_match_upstream_examples(run: Run) -> None:
    example = shared_reference("upstream-examples", "pool", "signet-local-sv2-tp.toml")
    upstream = tomllib.loads(example.read_text())
    ours = pool_config(run)
    # Unknown keys are silently ignored by pool_sv2: every key we write must be one it reads.
    assert set(ours) - {"log_file"} == set(upstream) - {"log_file"}
    assert set(ours["template_provider_type"]["Sv2Tp"]) == {"address", "public_key"}


def test_pool_reaches_the_template_provider_by_its_cluster_ip(run: Run) -> None:
    address = pool_config(run)["template_provider_type"]["Sv2Tp"]["address"]
    host, port = address.rsplit(":", 1)
    ipaddress.ip_address(host)  # an IP literal: v0.2.0 refuses DNS names
    assert host == service_ip(run, f"{node_name(run)}-tp")
    assert port == "8442"
    assert run.outputs["templateProviderAddress"] == address


@pytest.mark.parametrize("stack", ["signet", "mainnet"])
def test_a_first_preview_shows_addresses_not_yet_assigned_as_unknown(stack: str) -> None:
    # Before the Services exist, `pulumi preview` has no clusterIP: the address outputs and the
    # configs built from them are unknown then, never the text "None".
    preview = run_stack(stack, preview=True)
    assert preview.error is None, preview.error
    assert "templateProviderAddress" in preview.unknown_outputs
    known = {name: value for name, value in preview.outputs.items() if name not in preview.unknown_outputs}
    assert "None" not in json.dumps(known)
    assert not [r.name for r in preview.resources if "None:" in json.dumps(r.plain_inputs, default=repr)]


def test_pool_authenticates_the_template_provider_key_the_node_installs(run: Run) -> None:
    key_secret = only(run, "Secret", f"{node_name(run)}-tp-key")
    key_file = base64.b64decode(key_secret["data"]["sv2_authority_key"])
    assert len(key_file) == 33 and key_file[0] == 0x01
    expected_public = public_key_of_secret(base58.b58encode_check(key_file[1:]).decode())
    assert pool_config(run)["template_provider_type"]["Sv2Tp"]["public_key"] == expected_public
    assert run.outputs["templateProviderPublicKey"] == expected_public


def test_pool_key_pair_is_consistent_and_not_the_public_example(run: Run) -> None:
    config = pool_config(run)
    assert public_key_of_secret(config["authority_secret_key"]) == config["authority_public_key"]
    assert config["authority_public_key"] != EXAMPLE_AUTHORITY_PUBKEY
    assert run.outputs["poolPublicKey"] == config["authority_public_key"]


def test_pool_deployment_is_a_recreated_singleton(run: Run) -> None:
    deployment = only(run, "Deployment", "pool")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "stratumv2/pool_sv2:v0.2.0"
    assert container["command"] == ["/app/pool_sv2", "-c", "/etc/sv2/pool.toml"]
    assert container["readinessProbe"]["tcpSocket"]["port"] == 34254
    assert container["livenessProbe"]["httpGet"] == {"path": "/api/v1/health", "port": 8080}
    assert "kill -INT 1" in " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    service = only(run, "Service", "pool")
    assert service["spec"]["type"] == "ClusterIP"
    assert {p["port"] for p in service["spec"]["ports"]} == {34254, 8080}


# --- translator -----------------------------------------------------------------------


def test_translator_config_has_every_key_v0_2_0_requires(run: Run) -> None:
    config = translator_config(run)
    assert set(config) >= TRANSLATOR_REQUIRED_KEYS
    assert set(config["downstream_difficulty_config"]) == DIFFICULTY_KEYS
    assert config["downstream_address"] == "0.0.0.0"
    assert config["downstream_port"] == 34255
    assert config["monitoring_address"] == "0.0.0.0:8080"
    assert config["min_supported_version"] == config["max_supported_version"] == 2


def test_translator_config_keys_match_upstream_examples(run: Run) -> None:
    example = shared_reference("upstream-examples", "translator", "signet-local-pool.toml")
    upstream = tomllib.loads(example.read_text())
    ours = translator_config(run)
    assert set(ours) - {"log_file"} == set(upstream) - {"log_file"}
    assert set(ours["downstream_difficulty_config"]) == set(upstream["downstream_difficulty_config"])
    assert set(ours["upstreams"][0]) == set(upstream["upstreams"][0])


def test_translator_trusts_exactly_our_pool(run: Run) -> None:
    upstream = translator_config(run)["upstreams"][0]
    ipaddress.ip_address(upstream["address"])
    assert upstream["address"] == service_ip(run, "pool")
    assert upstream["port"] == 34254
    assert upstream["authority_pubkey"] == pool_config(run)["authority_public_key"]


def test_failover_upstreams_follow_our_pool() -> None:
    backup_key = "9awtMD5KQgvRUh2yFbjVeT7b6hjipWcAsQHd6wEhgtDT9soosna"
    failover = json.dumps([{"address": "192.0.2.5", "port": 3333, "authorityPubkey": backup_key}])
    run = run_stack("signet", {"failoverUpstreams": failover})
    upstreams = translator_config(run)["upstreams"]
    assert [u["address"] for u in upstreams] == [service_ip(run, "pool"), "192.0.2.5"]
    assert upstreams[1]["authority_pubkey"].startswith("9awt")


def test_translator_scales_with_an_hpa_that_owns_replicas(run: Run) -> None:
    deployment = only(run, "Deployment", "translator")
    assert "replicas" not in deployment["spec"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    hpa = only(run, "HorizontalPodAutoscaler", "translator")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in hpa["metrics"]}
    assert targets == {"cpu": 70, "memory": 80}
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    assert hpa["scaleTargetRef"]["name"] == "translator"


def test_miners_load_balancer_exposes_sv1_only_and_waits_for_its_address(run: Run) -> None:
    miners = only(run, "Service", "translator-miners")
    assert miners["spec"]["type"] == "LoadBalancer"
    assert [p["port"] for p in miners["spec"]["ports"]] == [34255]
    assert (
        miners["metadata"]["annotations"]["pulumi.com/waitFor"] == "jsonpath={.status.loadBalancer.ingress}"
    )
    metrics = only(run, "Service", "translator-metrics")
    assert metrics["spec"]["type"] == "ClusterIP"
    assert [p["port"] for p in metrics["spec"]["ports"]] == [8080]
    assert run.outputs["minersUrl"] == f"stratum+tcp://{LOAD_BALANCER_IP}:34255"
    assert run.outputs["loadBalancerAddress"] == LOAD_BALANCER_IP


def test_load_balancer_settings_reach_the_service() -> None:
    run = run_stack(
        "signet",
        {
            "lbSourceRanges": '["203.0.113.0/24"]',
            "lbExternalTrafficPolicy": "Cluster",
            "lbAnnotations": '{"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}',
        },
    )
    miners = only(run, "Service", "translator-miners")
    assert miners["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24"]
    assert miners["spec"]["externalTrafficPolicy"] == "Cluster"
    assert miners["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-type"] == "nlb"


# --- node -----------------------------------------------------------------------------


def _ini_sections(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string("[top]\n" + text)
    return parser


NETWORK_ONLY = {"port", "bind", "rpcport", "rpcbind", "connect", "addnode", "sv2bind", "sv2port"}


def node_configs(run: Run) -> tuple[str, str]:
    name = node_name(run)
    return (
        only(run, "Secret", f"{name}-conf")["stringData"]["bitcoin.conf"],
        only(run, "ConfigMap", f"{name}-sv2-tp-conf")["data"]["sv2-tp.conf"],
    )


def test_network_only_options_sit_where_the_chain_reads_them(run: Run) -> None:
    facts = NETWORKS[run.stack]
    chain_options = [("chain", facts.core_chain), facts.sv2_tp_chain_option]
    for text, (chain_option, value) in zip(node_configs(run), chain_options, strict=True):
        parsed = _ini_sections(text)
        assert parsed["top"][chain_option] == str(value)
        where = "top" if facts.core_chain == "main" else facts.core_chain
        outside = {s for s in parsed.sections() if s != where}
        for section in outside:
            assert not NETWORK_ONLY & set(parsed[section]), f"{section} holds network-only options"
    node = _ini_sections(node_configs(run)[0])[where]
    assert (node["port"], node["rpcport"], node["rpcbind"]) == (
        str(facts.p2p_port),
        str(facts.rpc_port),
        "0.0.0.0",
    )
    tp = _ini_sections(node_configs(run)[1])[where]
    assert (tp["sv2bind"], tp["sv2port"]) == ("0.0.0.0", "8442")
    assert (tp["sv2interval"], tp["sv2feedelta"]) == ("30", "1000")


def test_bitcoin_conf_holds_rpcauth_not_the_password(run: Run) -> None:
    conf = node_configs(run)[0]
    assert "rpcauth=" in conf
    assert run.outputs["rpcPassword"] not in conf
    assert "rpcpassword" not in conf
    limit = by_component(run, "StatefulSet", "bitcoin-node")["spec"]["template"]["spec"]["containers"][0][
        "resources"
    ]["limits"]["memory"]
    assert f"dbcache={dbcache_mib(limit)}" in conf


def test_dbcache_leaves_room_below_the_memory_limit() -> None:
    for limit, mib in (("4Gi", 4096), ("16Gi", 16384), ("2Gi", 2048)):
        assert 450 <= dbcache_mib(limit) <= mib - 1024 or dbcache_mib(limit) == 450


def test_custom_signet_settings_reach_the_signet_section() -> None:
    run = run_stack("signet", {"signetChallenge": "51", "signetConnect": '["75.119.150.111"]'})
    signet = _ini_sections(node_configs(run)[0])["signet"]
    assert signet["signetchallenge"] == "51"
    assert signet["connect"] == "75.119.150.111"


def test_node_statefulset(run: Run) -> None:
    facts = NETWORKS[run.stack]
    statefulset = only(run, "StatefulSet", node_name(run))
    spec = statefulset["spec"]
    assert spec["replicas"] == 1
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 600
    container = pod["containers"][0]
    assert {p["containerPort"] for p in container["ports"]} == {facts.rpc_port, facts.p2p_port, 8442}
    claim = spec["volumeClaimTemplates"][0]["spec"]
    assert claim["resources"]["requests"]["storage"] == facts.default_storage
    # Probes never kill a syncing node: liveness accepts warm-up; readiness alone tracks sync.
    assert container["livenessProbe"]["exec"]["command"] == ["node-probe", "alive"]
    assert container["startupProbe"]["exec"]["command"] == ["node-probe", "alive"]
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 1800
    assert container["readinessProbe"]["exec"]["command"] == ["node-probe", "ready"]
    services = {s["metadata"]["name"]: s["spec"]["type"] for s in find(run, "Service")}
    name = node_name(run)
    assert services[f"{name}-rpc"] == "ClusterIP"
    assert services[f"{name}-tp"] == "ClusterIP"
    assert services[f"{name}-p2p"] == "NodePort"


def test_storage_settings_reach_the_claim() -> None:
    run = run_stack("testnet4", {"storageSize": "80Gi", "storageClass": "fast-ssd"})
    claim = only(run, "StatefulSet", "bitcoin-testnet4")["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["resources"]["requests"]["storage"] == "80Gi"
    assert claim["storageClassName"] == "fast-ssd"


def test_node_runs_the_pushed_image_by_digest(run: Run) -> None:
    image = run.one("docker:index/image:Image", f"{node_name(run)}-image")
    digest = image.state["repoDigest"]
    assert "@sha256:" in digest
    container = only(run, "StatefulSet", node_name(run))["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == digest == run.outputs["nodeImage"]
    assert image.plain_inputs["build"]["platform"] == "linux/amd64"


def test_prebuilt_node_image_builds_nothing() -> None:
    prebuilt = "registry.example.com/sv2-node:30.2"
    run = run_stack("signet", {"nodeImage": prebuilt})
    assert run.of_type("docker:index/image:Image") == []
    container = only(run, "StatefulSet", "bitcoin-signet")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == prebuilt


def test_arm64_builds_for_arm64() -> None:
    run = run_stack("signet", {"nodePlatform": "arm64"})
    image = run.one("docker:index/image:Image", "bitcoin-signet-image")
    assert image.plain_inputs["build"]["platform"] == "linux/arm64"


def test_private_registry_gets_an_image_pull_secret() -> None:
    run = run_stack(
        "signet",
        {"registryServer": "ghcr.io", "registryUsername": "ops", "registryPassword": "hunter2"},
    )
    pull = only(run, "Secret", "bitcoin-signet-registry")
    assert pull["type"] == "kubernetes.io/dockerconfigjson"
    pod = only(run, "StatefulSet", "bitcoin-signet")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "bitcoin-signet-registry"}]
    assert (
        run.one("docker:index/image:Image", "bitcoin-signet-image").plain_inputs["registry"]["server"]
        == "ghcr.io"
    )


# --- secrets --------------------------------------------------------------------------


def test_values_pulumi_marks_secret_live_only_in_secrets(run: Run) -> None:
    for resource in run.resources:
        if resource.type.startswith("kubernetes:") and secret_strings(resource.inputs):
            assert resource.type == "kubernetes:core/v1:Secret", f"{resource.name} holds secret values"
    atoms = {
        run.outputs["rpcPassword"],
        pool_config(run)["authority_secret_key"],
        node_configs(run)[0].split("rpcauth=")[1].split("\n")[0],
    }
    for config_map in find(run, "ConfigMap"):
        text = str(config_map.get("data"))
        assert not any(atom in text for atom in atoms), config_map["metadata"]["name"]


def test_credentials_are_secret_outputs(run: Run) -> None:
    assert {"rpcUser", "rpcPassword"} <= run.secret_outputs
    assert "poolPublicKey" not in run.secret_outputs


# --- rolling on change and prompt return ----------------------------------------------


def _hash(run: Run, kind: str, name: str) -> str:
    obj = only(run, kind, name)
    return str(obj["spec"]["template"]["metadata"]["annotations"]["sv2-k8s/config-hash"])


def test_config_change_rolls_the_pool_and_a_tp_key_rotation_rolls_node_and_pool(runs: dict[str, Run]) -> None:
    base = runs["signet"]
    signature = run_stack("signet", {"poolSignature": "another pool"})
    assert _hash(signature, "Deployment", "pool") != _hash(base, "Deployment", "pool")
    assert _hash(signature, "StatefulSet", "bitcoin-signet") == _hash(base, "StatefulSet", "bitcoin-signet")
    rotated = run_stack("signet", {"tpKeyRotation": "2026-11"})
    assert _hash(rotated, "Deployment", "pool") != _hash(base, "Deployment", "pool")
    assert _hash(rotated, "StatefulSet", "bitcoin-signet") != _hash(base, "StatefulSet", "bitcoin-signet")


def _awaits(manifest: dict[str, Any]) -> bool:
    annotations = manifest["metadata"].get("annotations") or {}
    return annotations.get("pulumi.com/skipAwait") != "true" and "pulumi.com/waitFor" not in annotations


def test_nothing_pulumi_awaits_depends_on_the_node_sync(run: Run) -> None:
    # Workloads' readiness follows the node's initial sync (hours to days) and Services with
    # selectors wait for ready endpoints: all skip the await; the miners' LoadBalancer waits
    # for its address only.
    for manifest in run.manifests():
        if manifest["kind"] in ("StatefulSet", "Deployment", "Service"):
            assert not _awaits(manifest), f"pulumi up would wait for {manifest['metadata']['name']}"


# --- structure ------------------------------------------------------------------------


def test_components_have_type_tokens_and_own_their_children() -> None:
    run = run_stack("signet", {"monitoringEnabled": "true"})
    components = {r.type: r for r in run.resources if r.type.startswith("sv2:")}
    assert set(components) == {
        "sv2:credentials:Credentials",
        "sv2:node:BitcoinNode",
        "sv2:pool:Pool",
        "sv2:translator:Translator",
        "sv2:network:NetworkPolicies",
        "sv2:monitoring:Monitoring",
    }
    for component in components.values():
        children = [r for r in run.resources if r.parent == component.urn]
        assert children, component.type
        assert all(c.name.startswith(component.name) for c in children)


@pytest.mark.parametrize("stack", STACKS)
def test_stack_outputs(stack: str, runs: dict[str, Run]) -> None:
    outputs = runs[stack].outputs
    assert outputs["network"] == stack
    assert {
        "namespace",
        "minersUrl",
        "loadBalancerAddress",
        "poolPublicKey",
        "templateProviderPublicKey",
        "templateProviderAddress",
        "rpcUser",
        "rpcPassword",
        "nodeImage",
    } <= set(outputs)


def test_secrets_and_config_maps_change_in_place(runs: dict[str, Run]) -> None:
    # Without the mutable flags pulumi-kubernetes replaces a Secret or ConfigMap whose data
    # changes (delete first), and with it what mounts it.
    # docs/upstream-behaviour.md#pulumi-kubernetes-replaces-a-secret-or-configmap-whose-data-changes
    run = runs["signet"]
    provider = run.one("pulumi:providers:kubernetes", "kubernetes")
    assert provider.plain_inputs["enableSecretMutable"] in (True, "true")
    assert provider.plain_inputs["enableConfigMapMutable"] in (True, "true")
    kubernetes_objects = [
        r
        for r in run.resources
        if r.type.startswith("kubernetes:") and r.type != "kubernetes:core/v1:Namespace"
    ]
    assert kubernetes_objects
    for resource in kubernetes_objects:
        assert resource.provider.startswith(provider.urn + "::"), f"{resource.name} uses {resource.provider}"


@pytest.mark.parametrize("retain", ["true", "false"])
def test_only_the_namespace_is_adopted_when_it_exists(retain: str) -> None:
    # Issue 15: pulumi-kubernetes >= 4.29 creates client-side, so `up` after `destroy` failed with
    # AlreadyExists on the Namespace that destroy kept; the random draws found the same after a
    # stack that kept it switched retainChainData off. Only that object may be adopted.
    run = run_stack("signet", {"retainChainData": retain})
    assert run.error is None, run.error
    namespace_provider = run.one("pulumi:providers:kubernetes", "kubernetes-namespace")
    assert namespace_provider.plain_inputs.get("upsertExistingObjects") in (True, "true")
    assert run.one("kubernetes:core/v1:Namespace", "namespace").provider.startswith(
        namespace_provider.urn + "::"
    )
    main_provider = run.one("pulumi:providers:kubernetes", "kubernetes")
    assert main_provider.plain_inputs.get("upsertExistingObjects") in (False, "false", None)


def test_the_image_build_context_does_not_depend_on_the_checkout(runs: dict[str, Run]) -> None:
    # pulumi-docker diffs the context as given: an absolute path rebuilds and re-pushes the
    # image, and rolls the node, whenever the checkout moves.
    # docs/upstream-behaviour.md#pulumi-docker-diffs-the-build-context-path-as-written
    (image,) = runs["signet"].of_type("docker:index/image:Image")
    context = image.plain_inputs["build"]["context"]
    assert context == "docker/bitcoin-node"
    assert (ROOT / context / "Dockerfile").is_file()


def test_every_random_credential_is_secret_in_state(runs: dict[str, Run]) -> None:
    # pulumi-random keeps ids in plain text: RandomBytes' id is its base64, RandomString's its
    # result, and RandomString's result is not even a secret output. Only
    # docs/upstream-behaviour.md#randomstring-results-and-random-ids-are-plain-text-in-state
    # RandomPassword (id "none", result secret) may carry credentials: the RPC user included.
    random_resources = [r for r in runs["signet"].resources if r.type.startswith("random:")]
    assert {r.type for r in random_resources} == {"random:index/randomPassword:RandomPassword"}
    assert {r.name for r in random_resources} >= {"credentials-rpc-user", "credentials-pool-authority"}


def test_sv2_tp_is_told_signet_with_the_option_it_checks() -> None:
    # sv2-tp looks at -signet, not at -chain=signet, for a signet-only template rule.
    settings = parse_settings({"payoutAddress": "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"})
    top = sv2_tp_conf(settings).split("\n\n")[0].splitlines()
    assert "signet=1" in top
    assert not [line for line in top if line.startswith("chain=")]


@pytest.mark.parametrize(
    ("stack", "before_sync"), [("signet", True), ("testnet4", False), ("mainnet", False)]
)
def test_the_template_provider_is_reachable_whenever_sv2_tp_serves(
    runs: dict[str, Run], stack: str, before_sync: bool
) -> None:
    # The node's pod is ready only out of initial block download. sv2-tp serves templates
    # before that on signet only: there the Service must route to the unready pod, or a
    # private signet (which stays "in IBD" until somebody mines) deadlocks;
    # docs/upstream-behaviour.md#sv2-tp-serves-templates-during-initial-block-download-on-signet-only
    # elsewhere a syncing node must take no work.
    run = runs[stack]
    name = node_name(run)
    spec = only(run, "Service", f"{name}-tp")["spec"]
    assert bool(spec.get("publishNotReadyAddresses")) is before_sync
    node = only(run, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    assert node["readinessProbe"]["exec"]["command"] == list(contract.READINESS_COMMAND)


@pytest.mark.parametrize(("stack", "fixed_port"), [("signet", None), ("mainnet", "30333")])
def test_peers_learn_the_node_port_they_can_reach(stack: str, fixed_port: str | None) -> None:
    # Peers connect to what the node advertises; behind a NodePort that is the NodePort,
    # not the container's P2P port.
    overrides = {"p2pExternalAddress": "203.0.113.5", **({"p2pNodePort": fixed_port} if fixed_port else {})}
    run = run_stack(stack, overrides)
    assert run.error is None, run.error
    name = node_name(run)
    node_port = only(run, "Service", f"{name}-p2p")["spec"]["ports"][0]["nodePort"]
    assert fixed_port is None or node_port == int(fixed_port)
    facts = NETWORKS[stack]
    section = _ini_sections(node_configs(run)[0])["top" if facts.section is None else facts.section]
    assert section["externalip"] == f"203.0.113.5:{node_port}"


def test_without_an_external_address_nothing_is_advertised(runs: dict[str, Run]) -> None:
    assert "externalip" not in node_configs(runs["signet"])[0]


def test_a_kubeconfig_from_stack_config_stays_secret() -> None:
    # The explicit provider takes the default provider's settings; a kubeconfig holds
    # credentials, so it must reach the provider (and the state) as a secret.
    kubeconfig = "apiVersion: v1\nusers: [{name: admin, user: {token: not-for-logs}}]"
    run = run_stack("signet", {"kubernetes:kubeconfig": kubeconfig, "kubernetes:context": "farm"})
    assert run.error is None, run.error
    providers = run.of_type("pulumi:providers:kubernetes")
    assert len(providers) == 2
    for provider in providers:
        assert kubeconfig in secret_strings(provider.inputs)
        assert provider.plain_inputs["context"] == "farm"
