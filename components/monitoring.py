"""Monitoring: ServiceMonitors, alert rules and a Grafana dashboard for the Prometheus Operator.

Pool and translator serve /metrics themselves; Bitcoin Core has none, so the node pod runs an
exporter sidecar (components/node_exporter.py), scraped like the others. What the apps export:
docs/upstream-behaviour.md#the-monitoring-server-serves-metrics-and-an-always-ok-health-check
"""

import json
from dataclasses import dataclass
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s

from components import workload
from components.node_exporter import EXPORTER_SOURCE
from components.settings import Settings

COMPONENT = "monitoring"
# kube-prometheus-stack's Grafana sidecar loads ConfigMaps carrying this label.
DASHBOARD_LABEL: Final = {"grafana_dashboard": "1"}
# Prometheus names each target's job after this Service label, so rules say job="pool"
# whatever the Services are called.
JOB_LABEL: Final = "app.kubernetes.io/name"
# Verification progress of a synced node stays a hair below 1.
SYNCED_PROGRESS: Final = 0.999

# docs/upstream-behaviour.md#the-monitoring-server-serves-metrics-and-an-always-ok-health-check
_SV2_APPS = "sv2-apps /metrics, v0.2.0 and later"
_SV2_APPS_V020 = "sv2-apps v0.2.0 /metrics only (stratum-apps 0.2.0; renamed upstream by PR #252)"
_SV2_APPS_V030 = "sv2-apps v0.3.0+ /metrics (stratum-apps 0.3.0, crates pool_sv2/translator_sv2 0.2.0)"
_EXPORTER = EXPORTER_SOURCE
_PROMETHEUS = "Prometheus, per scrape target"
_KSM = "kube-state-metrics (kube-prometheus-stack)"
_KUBELET = "kubelet volume stats (kube-prometheus-stack)"
# Every metric an expression below uses, and who exports it (tests/test_monitoring.py checks).
METRIC_SOURCES: Final[dict[str, str]] = {
    "sv2_uptime_seconds": _SV2_APPS,
    "sv2_clients_total": _SV2_APPS,
    "sv2_client_channels_total": _SV2_APPS_V020,
    "sv2_client_channels": _SV2_APPS_V030,
    "sv2_client_hashrate_total": _SV2_APPS,
    "sv2_client_shares_accepted_total": _SV2_APPS,
    "sv2_server_channels_total": _SV2_APPS_V020,
    "sv2_server_channels": _SV2_APPS_V030,
    "sv2_server_hashrate_total": _SV2_APPS,
    "sv2_server_shares_accepted_total": _SV2_APPS,
    "sv1_clients_total": _SV2_APPS,
    "sv1_hashrate_total": _SV2_APPS,
    "bitcoin_blocks": _EXPORTER,
    "bitcoin_peers": _EXPORTER,
    "bitcoin_verification_progress": _EXPORTER,
    "up": _PROMETHEUS,
    "kube_pod_container_status_ready": _KSM,
    "kube_pod_container_status_restarts_total": _KSM,
    "kubelet_volume_stats_used_bytes": _KUBELET,
    "kubelet_volume_stats_capacity_bytes": _KUBELET,
}
# The channel gauges changed name between releases: v0.2.0 (the default images) has one
# `*_channels_total` gauge, v0.3.0 (what the e2e check runs, built from crates.io) a
# `*_channels{channel_type}` vector. Queries take whichever the running image exports.
SV2_APPS_V020_ONLY: Final = frozenset({"sv2_client_channels_total", "sv2_server_channels_total"})
SV2_APPS_V030_ONLY: Final = frozenset({"sv2_client_channels", "sv2_server_channels"})
# Per-channel vectors: no series at all until a channel is open (a translator connected to the
# pool, an SV1 miner to the translator), so an empty scrape of them is normal on an idle stack.
SV2_APPS_PER_CHANNEL: Final = frozenset(
    {"sv2_client_shares_accepted_total", "sv2_server_shares_accepted_total"}
)


@dataclass(frozen=True)
class MonitoringArgs:
    settings: Settings
    node_claim: str  # the node's chain volume claim, watched for filling up


def _selector(settings: Settings, **labels: str) -> str:
    matchers = {"namespace": settings.namespace, **labels}
    return "{" + ", ".join(f'{key}="{value}"' for key, value in matchers.items()) + "}"


def _absent_or_zero(expression: str) -> str:
    """True when the summed series is 0 or has no samples at all (nothing scraped)."""
    return f"(sum({expression}) or vector(0)) < 1"


def alert_rules(settings: Settings, node_claim: str) -> list[dict[str, Any]]:
    """The PrometheusRule's alerts; thresholds come from the stack settings."""
    pool_job = _selector(settings, job=workload.POOL)
    translator_job = _selector(settings, job=workload.TRANSLATOR)
    node_job = _selector(settings, job=workload.NODE)
    pool_container = _selector(settings, container=workload.POOL)
    translator_container = _selector(settings, container=workload.TRANSLATOR)
    node_container = _selector(settings, container=workload.NODE)
    translators_ready = f"sum(kube_pod_container_status_ready{translator_container})"
    claim = _selector(settings, persistentvolumeclaim=node_claim)
    keep = (100 - settings.alert_hashrate_drop_percent) / 100

    def rule(name: str, expr: str, for_: str, severity: str, summary: str) -> dict[str, Any]:
        return {
            "alert": name,
            "expr": expr,
            "for": for_,
            "labels": {"severity": severity, "namespace": settings.namespace},
            "annotations": {
                "summary": summary,
                "runbook_url": f"docs/operations.md#{name.lower()}",
            },
        }

    return [
        rule(
            "Sv2PoolDown", _absent_or_zero(f"up{pool_job}"), "5m", "critical", "The pool is absent or down."
        ),
        rule(
            "Sv2TranslatorsUnavailable",
            _absent_or_zero(f"kube_pod_container_status_ready{translator_container}"),
            "5m",
            "critical",
            "No translator is ready: miners cannot connect.",
        ),
        rule(
            "Sv2NoMinersConnected",
            f"sum(sv1_clients_total{translator_job}) == 0 and on() {translators_ready} > 0",
            f"{settings.alert_no_miners_minutes}m",
            "warning",
            "Translators are running but no SV1 miner is connected.",
        ),
        # A replica past its budget may drop every miner at the next reconnect storm:
        # docs/operations.md#sizing-translators
        rule(
            "Sv2TranslatorOverBudget",
            f"max(sv1_clients_total{translator_job}) > {settings.translator_miners_per_replica}",
            "15m",
            "warning",
            f"A translator holds more than {settings.translator_miners_per_replica} miners "
            "(translatorMinersPerReplica): raise translatorMinReplicas or expectedMiners.",
        ),
        rule(
            "Sv2HashrateDrop",
            f"sum(avg_over_time(sv2_client_hashrate_total{pool_job}[15m]))"
            f" < {keep:g} * sum(avg_over_time(sv2_client_hashrate_total{pool_job}[1h] offset 1h))",
            "15m",
            "warning",
            f"The pool's hashrate fell over {settings.alert_hashrate_drop_percent}% below the hour before.",
        ),
        rule(
            "Sv2NodeNotSynced",
            f"bitcoin_verification_progress{node_job} < {SYNCED_PROGRESS}",
            "30m",
            "warning",
            "The node is not synced (initial block download or falling behind).",
        ),
        rule(
            "Sv2NodeTipStale",
            f"changes(bitcoin_blocks{node_job}[{settings.alert_tip_stale_minutes}m]) == 0",
            "5m",
            "warning",
            f"The node's chain tip has not moved for {settings.alert_tip_stale_minutes} minutes.",
        ),
        rule(
            "Sv2NodeExporterDown",
            _absent_or_zero(f"up{node_job}"),
            "10m",
            "warning",
            "The node's metrics are not scraped: node alerts cannot fire.",
        ),
        # sv2-tp has no metrics. The pool is ready only while connected to its template provider
        # and exits when that fails (a crash-looping pool is never ready), so a synced (ready) node
        # with an unready pool means sv2-tp is not serving templates. Not on pool restarts: after
        # a node restart the pool restarts twice and serves within 20 s, and a restart count over
        # a window outlasts `for` (the chain stage's alerts step: docs/operations.md#sv2templateproviderdown).
        rule(
            "Sv2TemplateProviderDown",
            f"max(kube_pod_container_status_ready{node_container}) == 1"
            f" and on() max(kube_pod_container_status_ready{pool_container}) == 0",
            "10m",
            "critical",
            "The pool gets no templates although the node is synced: sv2-tp is likely down.",
        ),
        rule(
            "Sv2NodeVolumeFilling",
            f"100 * kubelet_volume_stats_used_bytes{claim} / kubelet_volume_stats_capacity_bytes{claim}"
            f" > {settings.alert_volume_full_percent}",
            "15m",
            "warning",
            f"The node volume {node_claim} is over {settings.alert_volume_full_percent}% full.",
        ),
        rule(
            "Sv2PodRestarting",
            f"increase(kube_pod_container_status_restarts_total{_selector(settings)}[1h])"
            f" > {settings.alert_restarts_per_hour}",
            "0m",
            "warning",
            f"A container restarted more than {settings.alert_restarts_per_hour} times in an hour.",
        ),
    ]


def _either_version(channels: str, selector: str) -> str:
    """Channel count from v0.3.0's `<name>{channel_type}` or, failing that, v0.2.0's `<name>_total`."""
    return f"sum({channels}{selector}) or sum({channels}_total{selector})"


def _panel(title: str, index: int, targets: dict[str, str], unit: str = "short") -> dict[str, Any]:
    """A time series panel in a two-column grid; `targets` maps legend to expression."""
    return {
        "type": "timeseries",
        "title": title,
        "id": index + 1,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (legend, expr) in enumerate(targets.items())
        ],
    }


def dashboard(settings: Settings) -> dict[str, Any]:
    """The Grafana dashboard: metrics only, nothing secret."""
    pool_job = _selector(settings, job=workload.POOL)
    translator_job = _selector(settings, job=workload.TRANSLATOR)
    node_job = _selector(settings, job=workload.NODE)
    everything = _selector(settings)
    panels = [
        (
            "Hashrate",
            {
                "pool (channels from translators)": f"sum(sv2_client_hashrate_total{pool_job})",
                "translators (from SV1 miners)": f"sum(sv1_hashrate_total{translator_job})",
                "translators (upstream channels)": f"sum(sv2_server_hashrate_total{translator_job})",
            },
            "short",
        ),
        (
            "SV1 miners",
            {
                "all translators": f"sum(sv1_clients_total{translator_job})",
                "{{pod}}": f"sum by (pod) (sv1_clients_total{translator_job})",
            },
            "short",
        ),
        (
            "Channels and clients",
            {
                "pool clients": f"sum(sv2_clients_total{pool_job})",
                "pool channels": _either_version("sv2_client_channels", pool_job),
                "translator upstream channels": _either_version("sv2_server_channels", translator_job),
            },
            "short",
        ),
        (
            "Accepted shares per minute",
            {
                "pool": f"60 * sum(rate(sv2_client_shares_accepted_total{pool_job}[5m]))",
                "translators": f"60 * sum(rate(sv2_server_shares_accepted_total{translator_job}[5m]))",
            },
            "short",
        ),
        ("Uptime", {"{{job}} {{pod}}": f"max by (job, pod) (sv2_uptime_seconds{everything})"}, "s"),
        (
            "Node blocks and peers",
            {"blocks": f"max(bitcoin_blocks{node_job})", "peers": f"max(bitcoin_peers{node_job})"},
            "short",
        ),
        (
            "Node verification progress",
            {"progress": f"max(bitcoin_verification_progress{node_job})"},
            "percentunit",
        ),
    ]
    return {
        "title": f"sv2-k8s {settings.network} ({settings.namespace})",
        "uid": f"sv2-k8s-{settings.namespace}"[:40],
        "tags": ["sv2-k8s", settings.network],
        "timezone": "utc",
        "schemaVersion": 39,
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}
            ]
        },
        "panels": [_panel(title, i, targets, unit) for i, (title, targets, unit) in enumerate(panels)],
    }


class Monitoring(pulumi.ComponentResource):
    """What the cluster's Prometheus Operator and Grafana pick up for this stack."""

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("sv2:monitoring:Monitoring", name, None, opts)
        child = workload.child_options(self, opts)
        settings = args.settings

        def meta(resource_name: str, extra_labels: dict[str, str]) -> workload.Fields:
            base = workload.metadata(resource_name, COMPONENT, settings.placement)
            base["labels"].update(extra_labels)
            return base

        for target in (workload.POOL, workload.TRANSLATOR, workload.NODE):
            monitor_name = f"{name}-{target}"
            k8s.apiextensions.CustomResource(
                monitor_name,
                api_version="monitoring.coreos.com/v1",
                kind="ServiceMonitor",
                metadata=meta(monitor_name, settings.prometheus_labels),
                spec={
                    "jobLabel": JOB_LABEL,
                    "namespaceSelector": {"matchNames": [settings.namespace]},
                    "selector": {
                        "matchLabels": {**workload.selector_labels(target), workload.METRICS_LABEL: "true"}
                    },
                    "endpoints": [
                        {
                            "port": workload.METRICS_PORT_NAME,
                            "path": "/metrics",
                            "interval": "30s",
                            # The node exporter makes its RPC calls during the scrape.
                            "scrapeTimeout": "20s",
                        }
                    ],
                },
                opts=child,
            )
        k8s.apiextensions.CustomResource(
            f"{name}-alerts",
            api_version="monitoring.coreos.com/v1",
            kind="PrometheusRule",
            metadata=meta(f"{name}-alerts", settings.prometheus_labels),
            spec={"groups": [{"name": "sv2-k8s", "rules": alert_rules(settings, args.node_claim)}]},
            opts=child,
        )
        k8s.core.v1.ConfigMap(
            f"{name}-dashboard",
            metadata=meta(f"{name}-dashboard", DASHBOARD_LABEL),
            data={f"sv2-k8s-{settings.namespace}.json": json.dumps(dashboard(settings), indent=2)},
            opts=child,
        )
        self.register_outputs({})
