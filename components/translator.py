"""Translator: translator_sv2 behind the miners' LoadBalancer, scaled by an HPA."""

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import workload
from components.networks import MONITORING_PORT, TRANSLATOR_PORT
from components.renderers import translator_toml
from components.settings import Settings

COMPONENT = workload.TRANSLATOR
UID = 10020
CONFIG_PATH = "/etc/sv2/translator.toml"
# Miners lose their connection when their translator goes away: scale down slowly.
SCALE_DOWN_WINDOW_SECONDS = 600
# The translator's gauge of connected SV1 miners, as the custom metrics adapter serves it per pod.
MINERS_METRIC = "sv1_clients_total"


@dataclass(frozen=True)
class TranslatorArgs:
    settings: Settings
    pool_ip: pulumi.Input[str]
    pool_public_key: pulumi.Input[str]


class Translator(pulumi.ComponentResource):
    """Stateless SV1→SV2 translation; miners connect to its LoadBalancer on 34255."""

    load_balancer_address: pulumi.Output[str]
    miners_url: pulumi.Output[str]

    def __init__(self, name: str, args: TranslatorArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("sv2:translator:Translator", name, None, opts)
        child = workload.child_options(self, opts)
        settings = args.settings

        config = pulumi.Output.all(args.pool_ip, args.pool_public_key).apply(
            lambda values: translator_toml(
                settings, downstream_port=TRANSLATOR_PORT, pool_ip=values[0], pool_public_key=values[1]
            )
        )
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=workload.metadata(f"{name}-config", COMPONENT, settings.placement),
            data={"translator.toml": config},
            opts=child,
        )
        account = workload.service_account(name, COMPONENT, settings.placement, child)
        container = workload.sv2_app_container(
            COMPONENT,
            image=settings.translator_image,
            binary="/app/translator_sv2",
            config_path=CONFIG_PATH,
            ports={"sv1": TRANSLATOR_PORT, "metrics": MONITORING_PORT},
            resources_=settings.translator_resources,
            uid=UID,
        )
        deployment = k8s.apps.v1.Deployment(
            name,
            metadata=workload.metadata(name, COMPONENT, settings.placement, workload.WORKLOAD_AWAIT),
            spec={
                # No `replicas`: the HPA owns it, and an update must not reset it.
                "selector": {"matchLabels": workload.selector_labels(COMPONENT)},
                # Surge first, never below the current capacity.
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
                },
                "template": workload.sv2_app_template(
                    COMPONENT,
                    settings.placement,
                    container=container,
                    config_source={"configMap": {"name": config_map.metadata.name, "defaultMode": 0o444}},
                    config_text=config,
                    service_account_name=account.metadata.name,
                    uid=UID,
                ),
            },
            opts=child,
        )
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            name,
            metadata=workload.metadata(name, COMPONENT, settings.placement),
            spec={
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": deployment.metadata.name,
                },
                "minReplicas": settings.min_translators,
                "maxReplicas": settings.translator_max_replicas,
                "metrics": [
                    _utilisation("cpu", settings.translator_cpu_target),
                    _utilisation("memory", settings.translator_memory_target),
                    *(
                        [_miners_per_replica(settings.translator_miners_per_replica)]
                        if settings.translator_scale_on_miners
                        else []
                    ),
                ],
                "behavior": {
                    "scaleDown": {
                        "stabilizationWindowSeconds": SCALE_DOWN_WINDOW_SECONDS,
                        "selectPolicy": "Min",
                        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}],
                    }
                },
            },
            opts=child,
        )
        k8s.policy.v1.PodDisruptionBudget(
            name,
            metadata=workload.metadata(name, COMPONENT, settings.placement),
            spec={
                "maxUnavailable": 1,
                "selector": {"matchLabels": workload.selector_labels(COMPONENT)},
            },
            opts=child,
        )
        miners_spec: dict[str, object] = {
            "externalTrafficPolicy": settings.lb_external_traffic_policy,
        }
        if settings.lb_source_ranges:
            miners_spec["loadBalancerSourceRanges"] = list(settings.lb_source_ranges)
        miners = workload.service(
            f"{name}-miners",
            COMPONENT,
            settings.placement,
            {"sv1": TRANSLATOR_PORT},
            child,
            service_type="LoadBalancer",
            # Wait for the address miners need, not for ready translators (they follow the
            # node's sync): docs/upstream-behaviour.md#pulumi-kubernetes-waits-for-readiness-unless-annotated
            annotations={
                **settings.lb_annotations,
                "pulumi.com/waitFor": "jsonpath={.status.loadBalancer.ingress}",
            },
            extra_spec=miners_spec,
        )
        # Metrics stay inside the cluster: never on the miners' public load balancer.
        workload.service(
            f"{name}-metrics", COMPONENT, settings.placement, {"metrics": MONITORING_PORT}, child
        )

        self.load_balancer_address = miners.status.apply(_ingress_address)
        self.miners_url = self.load_balancer_address.apply(
            lambda address: f"stratum+tcp://{address}:{TRANSLATOR_PORT}"
        )
        self.register_outputs({"miners_url": self.miners_url})


def _utilisation(resource: str, percent: int) -> dict[str, object]:
    return {
        "type": "Resource",
        "resource": {"name": resource, "target": {"type": "Utilization", "averageUtilization": percent}},
    }


def _miners_per_replica(budget: int) -> dict[str, object]:
    """The translators' own miner count (their /metrics, through the cluster's custom metrics
    adapter), averaged over the replicas: neither CPU nor memory grows with idle connections.
    docs/operations.md#scaling-on-connected-miners"""
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": MINERS_METRIC},
            "target": {"type": "AverageValue", "averageValue": str(budget)},
        },
    }


def _ingress_address(status: k8s.core.v1.outputs.ServiceStatus | None) -> str:
    ingress = (status.load_balancer.ingress if status and status.load_balancer else None) or []
    if not ingress:
        return "<pending>"
    return ingress[0].ip or ingress[0].hostname or "<pending>"
