"""BitcoinNode: Bitcoin Core 30.2 and sv2-tp 1.0.5 in one pod, their configs, volume and Services."""

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker
import pulumi_kubernetes as k8s

from components import image_contract as contract
from components import workload
from components.keys import AuthorityKeyPair
from components.networks import TEMPLATE_PROVIDER_PORT
from components.node_exporter import EXPORTER_PORT, RPC_PASSWORD_KEY, RPC_USER_KEY, node_exporter_container
from components.renderers import bitcoin_conf, sv2_tp_conf
from components.setting_types import NodeBuild
from components.settings import Settings

COMPONENT = workload.NODE
# Core may need minutes to flush its chainstate; a kill mid-flush costs a reindex.
GRACE_SECONDS = 600
VOLUME = "chain-data"
# Versions docker/bitcoin-node downloads (its BITCOIN_VERSION and SV2_TP_VERSION defaults); part
# of the built image's tag unless nodeBuild names others.
BITCOIN_VERSION = "30.2"
SV2_TP_VERSION = "1.0.5"


@dataclass(frozen=True)
class BitcoinNodeArgs:
    settings: Settings
    template_provider_keys: pulumi.Input[AuthorityKeyPair]
    rpcauth: pulumi.Input[str]
    # For the exporter sidecar (monitoringEnabled); bitcoin.conf carries only rpcauth.
    rpc_user: pulumi.Input[str]
    rpc_password: pulumi.Input[str]
    registry_password: pulumi.Input[str] | None = None


@dataclass(frozen=True)
class _Services:
    p2p: k8s.core.v1.Service
    rpc: k8s.core.v1.Service
    template_provider: k8s.core.v1.Service


@dataclass(frozen=True)
class _Configs:
    """The node's config objects as pod volumes, and what a change to them must roll."""

    volumes: list[workload.Fields]
    texts: tuple[pulumi.Input[str], ...]


class BitcoinNode(pulumi.ComponentResource):
    """A StatefulSet of one pod: the multiprocess node and sv2-tp under supervisord."""

    image: pulumi.Output[str]
    template_provider_ip: pulumi.Output[str]
    chain_data_claim: str

    def __init__(self, name: str, args: BitcoinNodeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("sv2:node:BitcoinNode", name, None, opts)
        child = workload.child_options(self, opts)
        settings = args.settings

        self.image, pull_secrets = self._image(name, settings, args.registry_password, child)
        account = workload.service_account(name, COMPONENT, settings.placement, child)
        services = self._services(name, settings, child)
        configs = self._config_objects(name, settings, args, services.p2p, child)
        containers = [self._node_container(settings)]
        if settings.monitoring_enabled:
            containers.append(self._exporter(name, settings, args, child))
        self.chain_data_claim = f"{VOLUME}-{name}-0"
        pod_spec = workload.pod_spec(
            settings.placement,
            service_account=account.metadata.name,
            uid=contract.UID,
            containers=containers,
            volumes=configs.volumes,
            grace_seconds=GRACE_SECONDS,
            image_pull_secrets=pull_secrets,
        )
        self._stateful_set(name, settings, services.rpc, pod_spec, configs, child)

        self.template_provider_ip = workload.cluster_ip(services.template_provider)
        self.register_outputs({"image": self.image, "template_provider_ip": self.template_provider_ip})

    def _services(self, name: str, settings: Settings, opts: pulumi.ResourceOptions) -> _Services:
        facts, placement = settings.facts, settings.placement
        p2p = workload.service(
            f"{name}-p2p",
            COMPONENT,
            placement,
            {"p2p": facts.p2p_port},
            opts,
            service_type="NodePort",
            node_port=settings.p2p_node_port or None,
        )
        rpc = workload.service(f"{name}-rpc", COMPONENT, placement, {"rpc": facts.rpc_port}, opts)
        # The pod is ready once out of initial block download. Where sv2-tp serves templates
        # before that (signet), its Service must not wait for readiness, or a private signet,
        # which stays "in IBD" until somebody mines, never gets its first block.
        # docs/upstream-behaviour.md#sv2-tp-serves-templates-during-initial-block-download-on-signet-only
        template_provider = workload.service(
            f"{name}-tp",
            COMPONENT,
            placement,
            {"sv2-tp": TEMPLATE_PROVIDER_PORT},
            opts,
            extra_spec={"publishNotReadyAddresses": True} if facts.templates_during_ibd else None,
        )
        return _Services(p2p, rpc, template_provider)

    def _config_objects(
        self,
        name: str,
        settings: Settings,
        args: BitcoinNodeArgs,
        p2p: k8s.core.v1.Service,
        opts: pulumi.ResourceOptions,
    ) -> _Configs:
        """bitcoin.conf (a Secret: it carries rpcauth), sv2-tp.conf, and the TP's key file."""
        placement = settings.placement
        # The NodePort Kubernetes allocated (or the fixed one) is what the node advertises.
        p2p_node_port = p2p.spec.ports.apply(lambda ports: ports[0].node_port)
        node_conf: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(args.rpcauth, p2p_node_port).apply(
                lambda values: bitcoin_conf(settings, values[0], values[1])
            )
        )
        tp_conf = sv2_tp_conf(settings)
        key_file_b64: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.from_input(args.template_provider_keys).apply(
                lambda keys: base64.b64encode(keys.key_file).decode()
            )
        )
        conf_secret = workload.file_secret(
            f"{name}-conf", COMPONENT, placement, {"bitcoin.conf": node_conf}, opts
        )
        tp_conf_map = k8s.core.v1.ConfigMap(
            f"{name}-sv2-tp-conf",
            metadata=workload.metadata(f"{name}-sv2-tp-conf", COMPONENT, placement),
            data={"sv2-tp.conf": tp_conf},
            opts=opts,
        )
        key_secret = k8s.core.v1.Secret(
            f"{name}-tp-key",
            metadata=workload.metadata(f"{name}-tp-key", COMPONENT, placement),
            type="Opaque",
            data={"sv2_authority_key": key_file_b64},
            opts=opts,
        )
        volumes = [
            {
                "name": "bitcoin-conf",
                "secret": {"secretName": conf_secret.metadata.name, "defaultMode": 0o440},
            },
            {"name": "sv2-tp-conf", "configMap": {"name": tp_conf_map.metadata.name, "defaultMode": 0o444}},
            {"name": "sv2-tp-key", "secret": {"secretName": key_secret.metadata.name, "defaultMode": 0o440}},
        ]
        return _Configs(volumes, (node_conf, tp_conf, key_file_b64))

    def _node_container(self, settings: Settings) -> workload.Fields:
        """bitcoin-node and sv2-tp under supervisord, as the image runs them."""
        facts = settings.facts
        ports = {"rpc": facts.rpc_port, "p2p": facts.p2p_port, "sv2-tp": TEMPLATE_PROVIDER_PORT}
        return {
            "name": COMPONENT,
            "image": self.image,
            "imagePullPolicy": self.image.apply(workload.pull_policy),
            "env": [{"name": contract.CHAIN_ENV, "value": facts.core_chain}],
            "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in ports.items()],
            "resources": workload.resources(settings.node_resources),
            "securityContext": workload.container_security(contract.UID),
            # Liveness treats RPC warm-up (-28) as alive, and the startup probe allows an hour
            # before the first answer: nothing restarts a node that is syncing or warming up.
            "startupProbe": workload.exec_probe(contract.LIVENESS_COMMAND, period=10, failures=360),
            "livenessProbe": workload.exec_probe(contract.LIVENESS_COMMAND, period=30, failures=10),
            # Ready once out of initial block download: only then does sv2-tp serve templates
            # on testnet4 and mainnet, so a syncing node takes no work there.
            "readinessProbe": workload.exec_probe(contract.READINESS_COMMAND, period=30, failures=2),
            "volumeMounts": [
                {"name": VOLUME, "mountPath": contract.DATA_DIR},
                {
                    "name": "bitcoin-conf",
                    "mountPath": str(Path(contract.BITCOIN_CONF_PATH).parent),
                    "readOnly": True,
                },
                {
                    "name": "sv2-tp-conf",
                    "mountPath": str(Path(contract.SV2_TP_CONF_PATH).parent),
                    "readOnly": True,
                },
                {"name": "sv2-tp-key", "mountPath": str(Path(contract.TP_KEY_PATH).parent), "readOnly": True},
                workload.scratch_mount(),
            ],
        }

    def _exporter(
        self, name: str, settings: Settings, args: BitcoinNodeArgs, opts: pulumi.ResourceOptions
    ) -> workload.Fields:
        """The metrics sidecar (monitoringEnabled), its RPC credentials and its Service."""
        rpc_credentials = workload.file_secret(
            f"{name}-rpc-credentials",
            COMPONENT,
            settings.placement,
            {RPC_USER_KEY: args.rpc_user, RPC_PASSWORD_KEY: args.rpc_password},
            opts,
        )
        workload.service(
            f"{name}-metrics",
            COMPONENT,
            settings.placement,
            {workload.METRICS_PORT_NAME: EXPORTER_PORT},
            opts,
        )
        return node_exporter_container(
            settings.node_exporter_image,
            settings.node_exporter_resources,
            settings.facts.rpc_port,
            rpc_credentials.metadata.name,
        )

    def _claim_spec(self, settings: Settings) -> workload.Fields:
        spec: workload.Fields = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": settings.storage_size}},
        }
        if settings.storage_class:
            spec["storageClassName"] = settings.storage_class
        if settings.node_volume_snapshot:
            # Start from a synced copy instead of days of initial block download.
            spec["dataSource"] = {
                "apiGroup": "snapshot.storage.k8s.io",
                "kind": "VolumeSnapshot",
                "name": settings.node_volume_snapshot,
            }
        return spec

    def _stateful_set(
        self,
        name: str,
        settings: Settings,
        rpc: k8s.core.v1.Service,
        pod_spec: workload.Fields,
        configs: _Configs,
        opts: pulumi.ResourceOptions,
    ) -> k8s.apps.v1.StatefulSet:
        placement = settings.placement
        retention = "Retain" if settings.retain_chain_data else "Delete"
        return k8s.apps.v1.StatefulSet(
            name,
            metadata=workload.metadata(
                name,
                COMPONENT,
                placement,
                {**workload.WORKLOAD_AWAIT, "sv2-k8s/pruned": str(settings.pruned).lower()},
            ),
            spec={
                "replicas": 1,
                "serviceName": rpc.metadata.name,
                "podManagementPolicy": "OrderedReady",
                "selector": {"matchLabels": workload.selector_labels(COMPONENT)},
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": retention, "whenScaled": retention},
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": VOLUME, "labels": workload.labels(COMPONENT, placement)},
                        "spec": self._claim_spec(settings),
                    }
                ],
                "template": {
                    "metadata": {
                        "labels": workload.labels(COMPONENT, placement),
                        # A new TP key or config restarts the pod, so sv2-tp and the pool
                        # switch keys together.
                        "annotations": {
                            workload.CONFIG_HASH_ANNOTATION: workload.config_hash(*configs.texts)
                        },
                    },
                    "spec": pod_spec,
                },
            },
            # Kubernetes cannot change volumeClaimTemplates in place: a new size, class or
            # snapshot would make Pulumi replace the StatefulSet. They apply to new claims;
            # README explains how to grow the existing one.
            opts=pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(ignore_changes=["spec.volumeClaimTemplates"])
            ),
        )

    def _image(
        self,
        name: str,
        settings: Settings,
        password: pulumi.Input[str] | None,
        opts: pulumi.ResourceOptions,
    ) -> tuple[pulumi.Output[str], list[str]]:
        """The node image by repo digest (built and pushed here), or the configured prebuilt one."""
        pull_secrets: list[str] = []
        if settings.registry_server and settings.registry_username and password is not None:
            secret_name = f"{name}-registry"
            auth: pulumi.Output[str] = pulumi.Output.secret(
                pulumi.Output.from_input(password).apply(
                    lambda pw: json.dumps(
                        {
                            "auths": {
                                settings.registry_server: {
                                    "auth": base64.b64encode(
                                        f"{settings.registry_username}:{pw}".encode()
                                    ).decode()
                                }
                            }
                        }
                    )
                )
            )
            k8s.core.v1.Secret(
                secret_name,
                metadata=workload.metadata(secret_name, COMPONENT, settings.placement),
                type="kubernetes.io/dockerconfigjson",
                string_data={".dockerconfigjson": auth},
                opts=opts,
            )
            pull_secrets.append(secret_name)
        if settings.node_image:
            return pulumi.Output.from_input(settings.node_image), pull_secrets
        registry = (
            docker.RegistryArgs(
                server=settings.registry_server, username=settings.registry_username, password=password
            )
            if settings.registry_server
            else None
        )
        tag = image_tag(settings.node_build, settings.node_platform)
        image = docker.Image(
            f"{name}-image",
            image_name=f"{settings.node_image_repository}:{tag}",
            build=docker.DockerBuildArgs(
                # Relative to the project (Pulumi runs the program there): an absolute path
                # differs between checkouts and would rebuild and roll the node on every move.
                # docs/upstream-behaviour.md#pulumi-docker-diffs-the-build-context-path-as-written
                context=contract.BUILD_CONTEXT,
                platform=f"linux/{settings.node_platform}",
                args=build_args(settings.node_build, settings.node_platform),
                # Tarballs from releases/ and a base carrying supervisor need no network: none
                # proves it, and an engine without a bridge (air-gapped, the e2e's) builds only so.
                network="none" if settings.node_build.releases == "directory" else None,
            ),
            registry=registry,
            opts=opts,
        )
        # The digest, not the tag: every pod runs exactly the bytes that were pushed.
        return image.repo_digest, pull_secrets


def image_tag(build: NodeBuild, platform: str) -> str:
    """The built image's tag: the versions it carries and the platform, e.g. 30.2-sv2tp1.0.5-amd64."""
    bitcoin = build.bitcoin_version or BITCOIN_VERSION
    return f"{bitcoin}-sv2tp{build.sv2_tp_version or SV2_TP_VERSION}-{platform}"


def build_args(build: NodeBuild, platform: str) -> dict[str, str]:
    """docker/bitcoin-node's build arguments: those nodeBuild sets, and no others, so that a stack
    without nodeBuild keeps the inputs (and the image) it had."""
    args = {"TARGETARCH": platform}
    optional = {
        "BASE_IMAGE": build.base_image,
        "RELEASES": None if build.releases == "download" else build.releases,
        "BITCOIN_VERSION": build.bitcoin_version,
        "SV2_TP_VERSION": build.sv2_tp_version,
    }
    return args | {key: value for key, value in optional.items() if value}
