"""Stack settings: the typed, immutable `Settings` model (components/stack_config.py fills it
from `pulumi.Config`).

Every setting is declared once, here: its key (camelCase, the `pulumi config set` name),
type, default (fixed or per network) and description. README's settings reference and the
`config:` block of Pulumi.yaml are generated from this model (scripts/settings_reference.py).
"""

import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from components.networks import NETWORKS, NetworkFacts, pruned_storage
from components.placement import Placement
from components.setting_types import (
    I64_MAX,
    MAX_CERT_VALIDITY_SECS,
    MAX_POOL_SIGNATURE_BYTES,
    MAX_USER_IDENTITY_BYTES,
    U16_MAX,
    DnsLabel,
    Image,
    Labels,
    Model,
    NodeBuild,
    Peer,
    Percent,
    PositiveF32,
    Quantity,
    Resources,
    Toleration,
    Upstream,
    annotations_check,
    bare_type,
    cidr_check,
    coinbase_tag_check,
    host_check,
    node_port_check,
    utf8_at_most,
    yaml_text_check,
)

PROJECT: Final = "sv2-k8s"
# Smallest prune target Bitcoin Core accepts, in MiB.
MIN_PRUNE_MIB: Final = 550
# Below this the node cannot hold a useful dbcache next to its mempool.
MIN_NODE_MEMORY_MIB: Final = 2048
# Templates older than an hour miss most of the mempool's fees; no fee rise exceeds all bitcoin.
MAX_TP_INTERVAL_SECS: Final = 3600
MAX_MONEY_SATS: Final = 21_000_000 * 100_000_000
# Translator sizing (README's sizing table; make bench-chain measures it): a translator_sv2 0.2.0
# replica always survived 300 SV1 connections opened at once, 400 in some runs (it drops miners
# whose queue on an internal 1,000-message channel lags), so a replica is sized for 200 miners,
# which is what one replica takes at once when every miner reconnects after a pool restart.
# docs/operations.md#sizing-translators
MINERS_PER_TRANSLATOR: Final = 200
EXPECTED_MINERS: Final = 400
# Two replicas at least: a node drain or a crash must not take every miner's translator.
MIN_TRANSLATORS: Final = 2


def _resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> dict[str, Any]:
    return {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": cpu_limit, "memory": memory_limit},
    }


def _default_storage(network: NetworkFacts, prune_mib: str) -> str:
    # An invalid pruneMib is reported by its own check; size as if unpruned meanwhile.
    if prune_mib.isdigit() and int(prune_mib) > 0:
        return pruned_storage(int(prune_mib))
    return network.default_storage


# Per-network defaults: settings whose default depends on the chain (components/networks.py).
PER_NETWORK_DEFAULTS: Final[dict[str, Callable[[NetworkFacts, Mapping[str, Any]], Any]]] = {
    "storageSize": lambda net, raw: _default_storage(net, str(raw.get("pruneMib", "0"))),
    "nodeResources": lambda net, raw: {part: dict(amounts) for part, amounts in net.node_resources.items()},
}


# How numbers are written in stack config: whole numbers, and decimals (exponents allowed: hash rates).
_PLAIN_NUMBERS: Final = {
    int: re.compile(r"-?[0-9]+"),
    float: re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?"),
}


def _described(description: str, accepted: str, **kwargs: Any) -> Any:
    """A Field with the description the reference shows and the hint errors print."""
    return Field(description=description, json_schema_extra={"accepted": accepted}, **kwargs)


class Settings(Model):
    """All settings of one stack. Attribute names are snake_case; keys are camelCase."""

    # -- network and placement
    network: Literal["signet", "testnet4", "mainnet"] = _described(
        "Bitcoin network of this stack.", "signet, testnet4 or mainnet", default="signet"
    )
    namespace: DnsLabel = _described(
        "Kubernetes namespace of every object; give each stack sharing a cluster its own.",
        "a DNS-1123 label",
        default="sv2-mining",
    )
    payout_address: str | None = _described(
        "Address that receives the block reward (coinbase output). No default on mainnet.",
        "an address of the stack's network",
        default=None,
    )
    node_selector: Labels = _described(
        "Node labels every pod must match.", "a map of label to value", default_factory=dict
    )
    tolerations: tuple[Toleration, ...] = _described(
        "Tolerations added to every pod.",
        "a list of Kubernetes tolerations (key, operator, value, effect, tolerationSeconds)",
        default=(),
    )
    # -- images
    pool_image: Image = _described(
        "Pool image (tag or @sha256 digest).",
        "an image reference with a tag other than latest, or a digest",
        default="stratumv2/pool_sv2:v0.2.0",
    )
    translator_image: Image = _described(
        "Translator image (tag or @sha256 digest).",
        "an image reference with a tag other than latest, or a digest",
        default="stratumv2/translator_sv2:v0.2.0",
    )
    node_image: Image | None = _described(
        "Prebuilt node image to run instead of building docker/bitcoin-node.",
        "an image reference with a tag or digest",
        default=None,
    )
    node_image_repository: str = _described(
        "Repository the built node image is pushed to.",
        "a repository such as ghcr.io/you/sv2-bitcoin-node",
        default="localhost:5000/sv2-bitcoin-node",
    )
    node_platform: Literal["amd64", "arm64"] = _described(
        "CPU architecture of the built node image.", "amd64 or arm64", default="amd64"
    )
    node_build: NodeBuild = _described(
        "How docker/bitcoin-node is built without nodeImage: base image, and release tarballs downloaded "
        "(the pinned 30.2 and 1.0.5) or taken from docker/bitcoin-node/releases/ (air-gapped, built "
        "without a network).",
        "{baseImage: an image reference, releases: download or directory, bitcoinVersion and "
        "sv2TpVersion: versions such as 30.2 (directory only)}",
        default=NodeBuild(),
    )
    registry_server: str | None = _described(
        "Registry to log in to for pushing and pulling the node image.",
        "a registry host such as ghcr.io",
        default=None,
    )
    registry_username: str | None = _described(
        "Registry user; set the password with `pulumi config set --secret registryPassword`.",
        "a user name",
        default=None,
    )
    # -- node
    storage_size: Quantity = _described(
        "Size of the node volume (10Gi signet, 50Gi testnet4, 1Ti mainnet; pruned: kept MiB + 15Gi).",
        "a Kubernetes quantity such as 50Gi",
        default=None,
    )
    storage_class: DnsLabel | None = _described(
        "StorageClass of the node volume; the cluster default when unset.",
        "a StorageClass name",
        default=None,
    )
    prune_mib: Annotated[int, Field(ge=0)] = _described(
        "Prune block files to this many MiB (0 keeps the full chain).",
        f"0, or at least {MIN_PRUNE_MIB}",
        default=0,
    )
    node_volume_snapshot: DnsLabel | None = _described(
        "VolumeSnapshot (same namespace) to create a new node volume from, e.g. a synced chain.",
        "the name of a VolumeSnapshot",
        default=None,
    )
    retain_chain_data: bool = _described(
        "Keep the node volume and the Namespace on `pulumi destroy` (false deletes them).",
        "true or false",
        default=True,
    )
    node_resources: Resources = _described(
        "Requests and limits of the node container; dbcache is derived from the memory limit.",
        "{requests: {cpu, memory}, limits: {cpu, memory}}",
        default=None,
    )
    p2p_node_port: Annotated[int, AfterValidator(node_port_check)] = _described(
        "Fixed NodePort for P2P; 0 lets Kubernetes pick one.",
        "0, or a port from 30000 to 32767",
        default=0,
        alias="p2pNodePort",  # to_camel would spell it p2PNodePort
    )
    p2p_external_address: Annotated[str, AfterValidator(host_check)] | None = _described(
        "Address (IP or DNS name) at which peers reach a cluster node; the node advertises it with "
        "the P2P NodePort, so inbound peers find it.",
        "an IP address or DNS name, without a port",
        default=None,
        alias="p2pExternalAddress",  # to_camel would spell it p2PExternalAddress
    )
    tp_interval_secs: Annotated[int, Field(ge=1, le=MAX_TP_INTERVAL_SECS)] = _described(
        "sv2-tp: seconds between template updates (-sv2interval).",
        f"1 to {MAX_TP_INTERVAL_SECS} seconds",
        default=30,
    )
    tp_fee_delta_sats: Annotated[int, Field(ge=0, le=MAX_MONEY_SATS)] = _described(
        "sv2-tp: fee increase in sats that triggers a new template (-sv2feedelta).",
        "0 to 2.1e15 sats (all bitcoin)",
        default=1000,
    )
    signet_challenge: str | None = _described(
        "Custom signet challenge script in hex (51 = OP_TRUE, blocks need no signature).",
        "hex bytes such as 51; signet only",
        default=None,
    )
    signet_connect: tuple[Peer, ...] = _described(
        "Peers the node connects to exclusively (custom signet).",
        "a list of host[:port]; signet only",
        default=(),
    )
    signet_addnode: tuple[Peer, ...] = _described(
        "Extra peers the node adds (custom signet).",
        "a list of host[:port]; signet only",
        default=(),
    )
    # -- pool
    pool_signature: Annotated[str, AfterValidator(coinbase_tag_check)] = _described(
        "Text the pool writes into the coinbase.",
        f"1 to {MAX_POOL_SIGNATURE_BYTES} printable ASCII characters, no '/'",
        default="sv2-k8s",
        min_length=1,
    )
    pool_shares_per_minute: PositiveF32 = _described(
        "Shares per minute the pool expects per channel.", "a number above 0 (a 32-bit float)", default=6.0
    )
    share_batch_size: Annotated[int, Field(ge=1, le=I64_MAX)] = _described(
        "Shares the pool acknowledges per batch.", "a whole number, at least 1", default=10
    )
    server_id: Annotated[int, Field(ge=0, le=U16_MAX)] = _described(
        "Pool server id (unique per pool sharing a search space).", "0 to 65535", default=1
    )
    cert_validity_secs: Annotated[int, Field(ge=60, le=MAX_CERT_VALIDITY_SECS)] = _described(
        "Validity of the pool's Noise certificates, seconds.",
        f"60 to {MAX_CERT_VALIDITY_SECS}",
        default=3600,
    )
    pool_resources: Resources = _described(
        "Requests and limits of the pool container.",
        "{requests: {cpu, memory}, limits: {cpu, memory}}",
        default=Resources.model_validate(_resources("100m", "128Mi", "1", "512Mi")),
    )
    # -- translator
    expected_miners: Annotated[int, Field(ge=0)] = _described(
        "SV1 miners you expect to connect; sizes translatorMinReplicas.",
        "a whole number, 0 or more",
        default=EXPECTED_MINERS,
    )
    translator_miners_per_replica: Annotated[int, Field(ge=1)] = _described(
        "Miners one translator replica is sized for: all of them may reconnect at once.",
        "a whole number, at least 1",
        default=MINERS_PER_TRANSLATOR,
    )
    translator_min_replicas: Annotated[int, Field(ge=0)] = _described(
        "Fewest translator replicas (HPA); 0 sizes them from expectedMiners.",
        "0, or a whole number of replicas",
        default=0,
    )
    translator_max_replicas: Annotated[int, Field(ge=1, le=100)] = _described(
        "Most translator replicas (HPA).", "1 to 100, not below translatorMinReplicas", default=10
    )
    translator_scale_on_miners: bool = _described(
        "Also scale translators on connected SV1 miners per replica (needs monitoringEnabled and a "
        "custom metrics adapter serving sv1_clients_total; see docs/operations.md).",
        "true or false",
        default=False,
    )
    translator_cpu_target: Percent = _described(
        "HPA target CPU utilisation, percent.", "1 to 100", default=70
    )
    translator_memory_target: Percent = _described(
        "HPA target memory utilisation, percent.", "1 to 100", default=80
    )
    translator_resources: Resources = _described(
        "Requests and limits of the translator container.",
        "{requests: {cpu, memory}, limits: {cpu, memory}}",
        default=Resources.model_validate(_resources("100m", "128Mi", "1", "256Mi")),
    )
    user_identity: Annotated[
        str, AfterValidator(utf8_at_most(MAX_USER_IDENTITY_BYTES)), AfterValidator(yaml_text_check)
    ] = _described(
        "User identity the translator presents upstream.",
        f"a non-empty string of at most {MAX_USER_IDENTITY_BYTES} bytes, without control characters",
        default="sv2-k8s",
        min_length=1,
    )
    min_individual_miner_hashrate: PositiveF32 = _described(
        "Hashrate (H/s) of the weakest miner; sets the starting difficulty.",
        "a number above 0 (a 32-bit float)",
        default=10e12,
    )
    translator_shares_per_minute: PositiveF32 = _described(
        "Shares per minute each SV1 miner should send.", "a number above 0 (a 32-bit float)", default=6.0
    )
    enable_vardiff: bool = _described(
        "Adjust each miner's difficulty to its hashrate.", "true or false", default=True
    )
    aggregate_channels: bool = _described(
        "Share one upstream channel among all miners of a translator.",
        "true or false",
        default=True,
    )
    job_keepalive_interval_secs: Annotated[int, Field(ge=0, le=U16_MAX)] = _described(
        "Seconds between keepalive jobs to SV1 miners (0 disables).", "0 to 65535", default=60
    )
    downstream_extranonce2_size: Annotated[int, Field(ge=2, le=8)] = _described(
        "Extranonce2 bytes rolled by SV1 miners.", "2 to 8", default=4
    )
    failover_upstreams: tuple[Upstream, ...] = _described(
        "Pools the translator fails over to after ours, in order.",
        "a list of {address: IP literal, port, authorityPubkey}",
        default=(),
    )
    # -- miners' load balancer
    lb_source_ranges: tuple[Annotated[str, AfterValidator(cidr_check)], ...] = _described(
        "CIDRs allowed to reach the miners' LoadBalancer; empty allows everyone.",
        "a list of CIDRs such as 203.0.113.0/24",
        default=(),
    )
    lb_external_traffic_policy: Literal["Local", "Cluster"] = _described(
        "Local keeps miners' source addresses (needed for the CIDR NetworkPolicy).",
        "Local or Cluster",
        default="Local",
    )
    lb_annotations: Annotated[dict[str, str], AfterValidator(annotations_check)] = _described(
        "Annotations of the miners' LoadBalancer Service (cloud-specific).",
        "a map of annotation to value",
        default_factory=dict,
    )
    # -- monitoring
    monitoring_enabled: bool = _described(
        "Create ServiceMonitors, alert rules and the dashboard; needs the Prometheus Operator's CRDs, "
        "so it is off until you opt in.",
        "true or false",
        default=False,
    )
    prometheus_namespace: DnsLabel = _described(
        "Namespace of the Prometheus that scrapes the metrics ports (NetworkPolicy source).",
        "a namespace name",
        default="monitoring",
    )
    prometheus_labels: Labels = _described(
        "Labels the cluster's Prometheus selects ServiceMonitors and rules by.",
        "a map of label to value",
        default_factory=lambda: {"release": "kube-prometheus-stack"},
    )
    node_exporter_image: Image = _described(
        "Bitcoin Core exporter run next to the node when monitoring is enabled (tag or digest).",
        "an image reference with a tag other than latest, or a digest",
        default="jvstein/bitcoin-prometheus-exporter:v0.7.0",
    )
    node_exporter_resources: Resources = _described(
        "Requests and limits of the node's exporter sidecar.",
        "{requests: {cpu, memory}, limits: {cpu, memory}}",
        default=Resources.model_validate(_resources("10m", "48Mi", "200m", "128Mi")),
    )
    alert_no_miners_minutes: Annotated[int, Field(ge=1, le=1440)] = _described(
        "Alert when running translators have had no SV1 miner for this many minutes.",
        "1 to 1440",
        default=15,
    )
    alert_hashrate_drop_percent: Annotated[int, Field(ge=1, le=99)] = _described(
        "Alert when the pool's hashrate falls this many percent below the previous hour's.",
        "1 to 99",
        default=50,
    )
    alert_tip_stale_minutes: Annotated[int, Field(ge=10, le=1440)] = _described(
        "Alert when the node's chain tip has not moved for this many minutes.",
        "10 to 1440",
        default=90,
    )
    alert_volume_full_percent: Annotated[int, Field(ge=50, le=99)] = _described(
        "Alert when the node volume is fuller than this, percent.", "50 to 99", default=85
    )
    alert_restarts_per_hour: Annotated[int, Field(ge=1, le=100)] = _described(
        "Alert when a container restarts more often than this within an hour.",
        "1 to 100",
        default=3,
    )
    # -- network policies
    rpc_allowed_namespaces: tuple[DnsLabel, ...] = _described(
        "Namespaces whose pods may reach the node's RPC port (none by default).",
        "a list of namespace names",
        default=(),
    )
    # -- keys and credentials
    pool_key_rotation: str = _described(
        "Change to generate a new pool authority key (miners' translators follow).",
        "any string",
        default="0",
    )
    tp_key_rotation: str = _described(
        "Change to generate a new template provider key.", "any string", default="0"
    )
    rpc_credentials_rotation: str = _described(
        "Change to generate new RPC credentials.", "any string", default="0"
    )

    @field_validator("*", mode="before")
    @classmethod
    def _plain_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # Python would also read "1_0", " 3 ", "3.0" or "inf" as numbers; an operator did not
        # mean them as such.
        kind = bare_type(cls.model_fields[str(info.field_name)].annotation)
        if kind in _PLAIN_NUMBERS and isinstance(value, str) and not _PLAIN_NUMBERS[kind].fullmatch(value):
            raise ValueError("is not a whole number" if kind is int else "is not a decimal number")
        return value

    @property
    def min_translators(self) -> int:
        """translatorMinReplicas, or the replicas expectedMiners needs at the per-replica budget."""
        if self.translator_min_replicas:
            return self.translator_min_replicas
        return translator_replicas_for(self.expected_miners, self.translator_miners_per_replica)

    @property
    def facts(self) -> NetworkFacts:
        return NETWORKS[self.network]

    @property
    def pruned(self) -> bool:
        return self.prune_mib > 0

    @property
    def placement(self) -> Placement:
        """What every workload object needs of the settings: namespace, network, pod placement."""
        return Placement(
            namespace=self.namespace,
            network=self.network,
            node_selector=dict(self.node_selector),
            tolerations=tuple(t.model_dump(by_alias=True, exclude_none=True) for t in self.tolerations),
        )


def translator_replicas_for(miners: int, per_replica: int) -> int:
    """Replicas that keep each at or under `per_replica` miners, and never fewer than two."""
    return max(MIN_TRANSLATORS, -(-miners // per_replica))
