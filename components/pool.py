"""Pool: pool_sv2, exactly one replica, connected to the template provider over the network."""

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import workload
from components.keys import AuthorityKeyPair
from components.networks import MONITORING_PORT, POOL_PORT
from components.renderers import pool_toml
from components.settings import Settings

COMPONENT = workload.POOL
UID = 10010
CONFIG_PATH = "/etc/sv2/pool.toml"


@dataclass(frozen=True)
class PoolArgs:
    settings: Settings
    pool_keys: pulumi.Input[AuthorityKeyPair]
    template_provider_ip: pulumi.Input[str]
    template_provider_public_key: pulumi.Input[str]


class Pool(pulumi.ComponentResource):
    """A singleton: the pool owns channel state and job distribution."""

    address: pulumi.Output[str]

    def __init__(self, name: str, args: PoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("sv2:pool:Pool", name, None, opts)
        child = workload.child_options(self, opts)
        settings = args.settings

        config: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(
                args.pool_keys, args.template_provider_ip, args.template_provider_public_key
            ).apply(
                lambda values: pool_toml(
                    settings,
                    authority_public_key=values[0].public,
                    authority_secret_key=values[0].secret,
                    template_provider_ip=values[1],
                    template_provider_public_key=values[2],
                )
            )
        )
        config_secret = workload.file_secret(
            f"{name}-config", COMPONENT, settings.placement, {"pool.toml": config}, child
        )
        account = workload.service_account(name, COMPONENT, settings.placement, child)
        service = workload.service(
            name, COMPONENT, settings.placement, {"sv2": POOL_PORT, "metrics": MONITORING_PORT}, child
        )
        container = workload.sv2_app_container(
            COMPONENT,
            image=settings.pool_image,
            binary="/app/pool_sv2",
            config_path=CONFIG_PATH,
            ports={"sv2": POOL_PORT, "metrics": MONITORING_PORT},
            resources_=settings.pool_resources,
            uid=UID,
        )
        k8s.apps.v1.Deployment(
            name,
            metadata=workload.metadata(name, COMPONENT, settings.placement, workload.WORKLOAD_AWAIT),
            spec={
                "replicas": 1,
                # Never two pools at once: both would hand out the same search space.
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": workload.selector_labels(COMPONENT)},
                "template": workload.sv2_app_template(
                    COMPONENT,
                    settings.placement,
                    container=container,
                    config_source={
                        "secret": {"secretName": config_secret.metadata.name, "defaultMode": 0o440}
                    },
                    config_text=config,
                    service_account_name=account.metadata.name,
                    uid=UID,
                ),
            },
            opts=child,
        )
        self.address = workload.cluster_ip(service)
        self.register_outputs({"address": self.address})
