"""Monitoring: ServiceMonitors, alert rules, the dashboard and the node's exporter sidecar."""

import json
from typing import Any

import jsonschema
import promql_parser
import pytest
import yaml

from components.monitoring import METRIC_SOURCES, SV2_APPS_V020_ONLY, SV2_APPS_V030_ONLY
from components.node_exporter import EXPORTER_CONTAINER, RPC_PASSWORD_KEY, RPC_USER_KEY
from components.stack_config import SettingsError, parse_settings
from tests.conftest import find, only, shared_reference
from tests.support.constants import STACKS
from tests.support.harness import Run, run_stack

MONITORING_API = "monitoring.coreos.com/v1"


@pytest.fixture(scope="module")
def monitored_runs() -> dict[str, Run]:
    """Each committed stack with monitoring switched on (it is off by default)."""
    return {stack: run_stack(stack, {"monitoringEnabled": "true"}) for stack in STACKS}


@pytest.fixture(params=STACKS)
def run(request: pytest.FixtureRequest, monitored_runs: dict[str, Run]) -> Run:
    return monitored_runs[request.param]


def node_name(run: Run) -> str:
    return str(only(run, "StatefulSet")["metadata"]["name"])


def custom_resources(run: Run, kind: str) -> list[dict[str, Any]]:
    return [m for m in run.manifests() if m["apiVersion"] == MONITORING_API and m["kind"] == kind]


def alert_rules(run: Run) -> dict[str, dict[str, Any]]:
    (rule,) = custom_resources(run, "PrometheusRule")
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def dashboard_map(run: Run) -> dict[str, Any]:
    maps = [m for m in find(run, "ConfigMap") if m["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(maps) == 1, run.stack
    return maps[0]


def dashboard_expressions(run: Run) -> list[str]:
    (text,) = dashboard_map(run)["data"].values()
    return [target["expr"] for panel in json.loads(text)["panels"] for target in panel["targets"]]


def expressions(run: Run) -> list[str]:
    return [rule["expr"] for rule in alert_rules(run).values()] + dashboard_expressions(run)


def selectors(expression: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: promql_parser.Expr) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)
        return True

    promql_parser.walk(promql_parser.parse(expression), visit)
    return found


def matchers(selector: promql_parser.VectorSelector) -> dict[str, str]:
    return {m.name: m.value for m in selector.matchers.matchers}


def exporter(run: Run) -> dict[str, Any]:
    pod = only(run, "StatefulSet")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == EXPORTER_CONTAINER]
    return container


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PrometheusRule"])
def test_monitoring_objects_validate_against_the_operator_crds(run: Run, kind: str) -> None:
    crd = yaml.safe_load(shared_reference("crds", f"monitoring.coreos.com_{kind.lower()}s.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    objects = custom_resources(run, kind)
    assert objects
    for manifest in objects:
        # No check_schema: the CRDs carry Go regexes (`^(?i)…`) that Python's re rejects.
        jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"]).validate(manifest)
        assert manifest["metadata"]["namespace"] == run.config["namespace"]


def test_monitoring_objects_carry_the_prometheus_selector_labels(run: Run) -> None:
    wanted = parse_settings(run.config, run.stack).prometheus_labels
    for manifest in custom_resources(run, "ServiceMonitor") + custom_resources(run, "PrometheusRule"):
        assert wanted.items() <= manifest["metadata"]["labels"].items()


def test_expressions_parse_and_use_only_documented_metrics_of_this_namespace(run: Run) -> None:
    used = set()
    for expression in expressions(run):
        for selector in selectors(expression):
            used.add(selector.name)
            assert matchers(selector).get("namespace") == run.config["namespace"], expression
    assert used <= set(METRIC_SOURCES)
    # The table documents what is used, nothing more.
    assert used == set(METRIC_SOURCES)


def test_channel_queries_read_both_release_namings(run: Run) -> None:
    # v0.2.0 exports sv2_*_channels_total; v0.3.0 (the crates the e2e check runs) renamed them to
    # sv2_*_channels{channel_type}. A query naming one must also name the other.
    for expression in expressions(run):
        names = {selector.name for selector in selectors(expression)}
        for old in SV2_APPS_V020_ONLY & names:
            assert old.removesuffix("_total") in names, expression
        for new in SV2_APPS_V030_ONLY & names:
            assert f"{new}_total" in names, expression
    used = {selector.name for expression in expressions(run) for selector in selectors(expression)}
    assert used >= SV2_APPS_V020_ONLY | SV2_APPS_V030_ONLY


def test_every_required_alert_exists_with_severity_and_runbook(run: Run) -> None:
    rules = alert_rules(run)
    assert {
        "Sv2PoolDown",
        "Sv2TranslatorsUnavailable",
        "Sv2NoMinersConnected",
        "Sv2HashrateDrop",
        "Sv2NodeNotSynced",
        "Sv2NodeTipStale",
        "Sv2TemplateProviderDown",
        "Sv2NodeVolumeFilling",
        "Sv2PodRestarting",
    } <= set(rules)
    for rule in rules.values():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["runbook_url"].startswith("docs/operations.md#")


def test_volume_alert_watches_the_node_claim(run: Run) -> None:
    claim = only(run, "StatefulSet")["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    expected = f"{claim}-{node_name(run)}-0"
    names = {
        matchers(s).get("persistentvolumeclaim")
        for s in selectors(alert_rules(run)["Sv2NodeVolumeFilling"]["expr"])
    }
    assert names == {expected}


def test_thresholds_reach_the_rules() -> None:
    run = run_stack(
        "signet",
        {
            "monitoringEnabled": "true",
            "alertNoMinersMinutes": "42",
            "alertHashrateDropPercent": "30",
            "alertTipStaleMinutes": "120",
            "alertVolumeFullPercent": "77",
            "alertRestartsPerHour": "9",
        },
    )
    rules = alert_rules(run)
    assert rules["Sv2NoMinersConnected"]["for"] == "42m"
    assert "< 0.7 * sum(" in rules["Sv2HashrateDrop"]["expr"]
    assert "[120m]" in rules["Sv2NodeTipStale"]["expr"]
    assert rules["Sv2NodeVolumeFilling"]["expr"].endswith("> 77")
    assert rules["Sv2PodRestarting"]["expr"].endswith("> 9")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("alertVolumeFullPercent", "100"),
        ("alertHashrateDropPercent", "100"),
        ("alertTipStaleMinutes", "5"),
        ("alertNoMinersMinutes", "0"),
        ("alertRestartsPerHour", "0"),
        ("nodeExporterImage", "jvstein/bitcoin-prometheus-exporter:latest"),
    ],
)
def test_out_of_range_monitoring_settings_are_refused(key: str, value: str) -> None:
    with pytest.raises(SettingsError, match=key):
        parse_settings({key: value})


def test_service_monitors_select_exactly_their_metrics_service(run: Run) -> None:
    services = find(run, "Service")
    targets = {}
    for monitor in custom_resources(run, "ServiceMonitor"):
        spec = monitor["spec"]
        assert spec["namespaceSelector"] == {"matchNames": [run.config["namespace"]]}
        wanted = spec["selector"]["matchLabels"]
        (service,) = [s for s in services if wanted.items() <= s["metadata"]["labels"].items()]
        port_names = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in spec["endpoints"]} <= port_names
        assert service["spec"]["type"] == "ClusterIP"
        # The job label rules select by comes from this Service label.
        targets[service["metadata"]["labels"][spec["jobLabel"]]] = service["metadata"]["name"]
    assert targets == {
        "pool": "pool",
        "translator": "translator-metrics",
        "bitcoin-node": f"{node_name(run)}-metrics",
    }


def test_node_metrics_service_reaches_the_exporter_port(run: Run) -> None:
    service = only(run, "Service", f"{node_name(run)}-metrics")
    (port,) = service["spec"]["ports"]
    (container_port,) = exporter(run)["ports"]
    assert port["targetPort"] == container_port["name"] == "metrics"
    assert port["port"] == container_port["containerPort"] == 9332


def test_exporter_reads_rpc_credentials_from_the_secret(run: Run) -> None:
    container = exporter(run)
    env = {e["name"]: e for e in container["env"]}
    secret_name = f"{node_name(run)}-rpc-credentials"
    assert env["BITCOIN_RPC_USER"]["valueFrom"]["secretKeyRef"] == {"name": secret_name, "key": RPC_USER_KEY}
    assert env["BITCOIN_RPC_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": secret_name,
        "key": RPC_PASSWORD_KEY,
    }
    assert "value" not in env["BITCOIN_RPC_PASSWORD"]
    assert env["BITCOIN_RPC_HOST"]["value"] == "127.0.0.1"
    node_ports = {
        p["name"]: p["containerPort"]
        for p in only(run, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert env["BITCOIN_RPC_PORT"]["value"] == str(node_ports["rpc"])
    secret = only(run, "Secret", secret_name)
    assert secret["stringData"] == {
        RPC_USER_KEY: run.outputs["rpcUser"],
        RPC_PASSWORD_KEY: run.outputs["rpcPassword"],
    }
    password = run.outputs["rpcPassword"]
    for manifest in run.manifests():
        if manifest["kind"] != "Secret":
            assert password not in json.dumps(manifest), manifest["metadata"]["name"]


def test_exporter_is_pinned_probed_and_bounded(run: Run) -> None:
    container = exporter(run)
    assert container["image"] == "jvstein/bitcoin-prometheus-exporter:v0.7.0"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["readinessProbe"]["tcpSocket"]["port"] == 9332
    assert container["livenessProbe"]["tcpSocket"]["port"] == 9332
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])


def test_dashboard_is_labelled_json_without_secrets(run: Run) -> None:
    config_map = dashboard_map(run)
    (text,) = config_map["data"].values()
    board = json.loads(text)
    titles = {panel["title"] for panel in board["panels"]}
    assert {
        "Hashrate",
        "SV1 miners",
        "Channels and clients",
        "Accepted shares per minute",
        "Uptime",
    } <= titles
    assert any("verification" in title.lower() for title in titles)
    for secret in (run.outputs["rpcUser"], run.outputs["rpcPassword"]):
        assert secret not in text


def test_monitoring_is_off_until_the_operator_opts_in() -> None:
    # Without the Prometheus Operator's CRDs a ServiceMonitor fails the first `up` after
    # retries; an operator who has them opts in with monitoringEnabled.
    run = run_stack("signet")
    assert run.error is None
    assert not [r for r in run.resources if "monitoring" in r.type]
    assert not [m for m in find(run, "ConfigMap") if "grafana_dashboard" in m["metadata"]["labels"]]
    containers = only(run, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["bitcoin-node"]
    assert find(run, "Secret", "bitcoin-signet-rpc-credentials") == []
    assert find(run, "Service", "bitcoin-signet-metrics") == []
