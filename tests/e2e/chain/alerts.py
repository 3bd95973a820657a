"""The chain stage's alert check (check.py): the PrometheusRule that `pulumi up` stored, evaluated
by the real promtool against series built from what the stage saw.

Recorder.record() snapshots, at named moments of the stage, what Prometheus would have scraped and
what kube-state-metrics would say:
    recorded  the pool's and translator's /metrics samples (every name a rule queries), `up` = 1
              when the scrape answered; each container's readiness as its probe sees it (pool and
              translator: a TCP connect to the service port; the node: the image's own
              `node-probe ready`); restarts as counted by this stage's kubelet stand-in; the
              node's height and verification progress from bitcoin-cli (what the exporter reads)
    synthetic the timeline: each scenario holds a snapshot's values for a stated number of
              minutes (a fault that lasts), and a healthy chain gains a block every 10 minutes
              from the recorded height; node exporter `up` is 1 throughout; no volume series
Each scenario says which alerts must fire, and when; promtool checks it. A copy with one
expectation reversed must make promtool fail, so the check is seen to be able to fail.
docs/testing.md#alert-rules-against-recorded-series
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import promql_parser
import yaml
from prometheus_client.parser import text_string_to_metric_families

from components import workload
from components.monitoring import METRIC_SOURCES
from tests.e2e.chain.node import Chain
from tests.e2e.processes import E2EError, listening
from tests.e2e.sv2_apps.apps import http
from tests.e2e.toolchain import binary

Key = tuple[str, tuple[tuple[str, str], ...]]  # metric name, sorted labels
INTERVAL_SECONDS = 30  # the ServiceMonitors' scrape interval
HEALTHY_MINUTES = 150  # history before a fault: HashrateDrop compares with the hour before last
BLOCK_MINUTES = 10
# Functions that assume a counter: a gauge that goes down reads to them as a counter reset.
COUNTER_FUNCTIONS = frozenset({"rate", "irate", "increase", "resets"})


def key(name: str, **labels: str) -> Key:
    return name, tuple(sorted(labels.items()))


@dataclass
class Recorder:
    chain: Chain
    namespace: str
    watched: frozenset[str]
    restarts: Callable[[], dict[str, int]]
    snapshots: dict[str, dict[Key, float]] = field(default_factory=dict)

    def record(self, name: str) -> None:
        local = self.chain.local
        assert local is not None
        series: dict[Key, float] = {}
        ns = self.namespace
        for job, address in (
            (workload.POOL, local.pool_monitoring),
            (workload.TRANSLATOR, local.translator_monitoring),
        ):
            text = http(address, "/metrics")
            pod = f"{job}-e2e"
            series[key("up", job=job, namespace=ns, pod=pod)] = 1.0 if text else 0.0
            for family in text_string_to_metric_families(text or ""):
                for sample in family.samples:
                    if sample.name in self.watched:
                        series[key(sample.name, job=job, namespace=ns, pod=pod, **sample.labels)] = (
                            sample.value
                        )
        ready = {
            workload.POOL: listening(local.pool_port),
            workload.TRANSLATOR: listening(local.sv1_port),
            workload.NODE: self.chain.node_probe("ready")[0] == 0,
        }
        restarts = self.restarts()
        for container, is_ready in ready.items():
            labels = {"namespace": ns, "container": container, "pod": f"{container}-e2e"}
            series[key("kube_pod_container_status_ready", **labels)] = float(is_ready)
            series[key("kube_pod_container_status_restarts_total", **labels)] = float(
                restarts.get(container, 0)
            )
        node = {"job": workload.NODE, "namespace": ns, "pod": f"{workload.NODE}-e2e"}
        series[key("up", **node)] = 1.0
        try:
            info = json.loads(self.chain.cli("getblockchaininfo", timeout=10))
        except E2EError:
            pass  # no RPC: the exporter has nothing to report
        else:
            series[key("bitcoin_blocks", **node)] = float(info["blocks"])
            series[key("bitcoin_verification_progress", **node)] = float(info["verificationprogress"])
        self.snapshots[name] = series

    def describe(self, name: str) -> str:
        wanted = ("sv1_clients_total", "sv2_client_hashrate_total", "up", "kube_pod_container_status_ready")
        shown = [
            f"{metric}{{{','.join(v for k, v in labels if k in ('job', 'container'))}}}={value:g}"
            for (metric, labels), value in sorted(self.snapshots[name].items())
            if metric in wanted
        ]
        return f"{name}: {' '.join(shown)}"


def watched_names(rules: list[dict[str, Any]]) -> frozenset[str]:
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    for rule in rules:
        promql_parser.walk(promql_parser.parse(rule["expr"]), visit)
    return frozenset(names)


def counter_functions_on_gauges(rules: list[dict[str, Any]]) -> list[str]:
    """Rules that apply rate()/increase()/… to an sv2-apps metric: every one of those is a gauge
    (docs/upstream-behaviour.md#the-apps-share-counters-are-per-channel-gauges)."""
    found: list[str] = []
    for rule in rules:

        def visit(node: promql_parser.Expr, alert: str = rule["alert"]) -> bool:
            if isinstance(node, promql_parser.Call) and node.func.name in COUNTER_FUNCTIONS:
                for arg in node.args:
                    if isinstance(arg, promql_parser.MatrixSelector):
                        name = arg.vector_selector.name or ""
                        if METRIC_SOURCES.get(name, "").startswith("sv2-apps"):
                            found.append(f"{alert}: {node.func.name}({name})")
            return True

        promql_parser.walk(promql_parser.parse(rule["expr"]), visit)
    return found


@dataclass(frozen=True)
class Scenario:
    name: str
    segments: tuple[tuple[str, int], ...]  # snapshot name, minutes held; "healthy" moves the tip
    expected: tuple[tuple[int, frozenset[str]], ...]  # minutes after the healthy history → firing


def _minutes(text: str) -> int:
    found = re.fullmatch(r"(\d+)m", text)
    if not found:
        raise E2EError(f"a rule's `for` of {text!r} is not whole minutes")
    return int(found.group(1))


def scenarios(rules: list[dict[str, Any]], healthy: str, stage: dict[str, str]) -> list[Scenario]:
    """What must fire, and when, for the faults of this stage held for a while. `stage` names the
    snapshots: idle (no miner), and per fault the moment it happened and when it was recovered."""
    wait = {rule["alert"]: _minutes(rule["for"]) for rule in rules}
    no_miners, down = wait["Sv2NoMinersConnected"], wait["Sv2PoolDown"]
    tp_down = wait["Sv2TemplateProviderDown"]
    down_now = frozenset({"Sv2PoolDown", "Sv2TranslatorsUnavailable"})
    return [
        Scenario("healthy as recorded", ((healthy, HEALTHY_MINUTES),), ((0, frozenset()),)),
        Scenario(
            "the miner leaves (the idle values)",
            ((healthy, HEALTHY_MINUTES), (stage["idle"], no_miners + 40)),
            (
                (no_miners - 1, frozenset()),
                (no_miners + 1, frozenset({"Sv2NoMinersConnected"})),
                (no_miners + 30, frozenset({"Sv2NoMinersConnected", "Sv2HashrateDrop"})),
            ),
        ),
        Scenario(
            "pool killed and not back",
            ((healthy, HEALTHY_MINUTES), (stage["pool killed"], tp_down + 5)),
            (
                (down - 1, frozenset()),
                (down + 1, down_now),
                (tp_down + 1, down_now | {"Sv2TemplateProviderDown"}),
            ),
        ),
        Scenario(
            # The recorded recovery has no miner back (the stage's miners left): paged only later.
            "sv2-tp killed, recovered as recorded, no miner back",
            (
                (healthy, HEALTHY_MINUTES),
                (stage["sv2-tp killed"], 1),
                (stage["sv2-tp killed, recovered"], no_miners + 10),
            ),
            (
                (2, frozenset()),
                (no_miners - 1, frozenset()),
                (no_miners + 2, frozenset({"Sv2NoMinersConnected"})),
            ),
        ),
        Scenario(
            "node FATAL and not back",
            ((healthy, HEALTHY_MINUTES), (stage["node FATAL"], tp_down + 5)),
            ((down - 1, frozenset()), (tp_down + 1, down_now)),
        ),
    ]


def _input_series(recorder: Recorder, scenario: Scenario, healthy: str) -> list[dict[str, str]]:
    snapshots = recorder.snapshots
    keys = sorted({k for name, _ in scenario.segments for k in snapshots[name]})
    per_minute = 60 // INTERVAL_SECONDS
    result = []
    for metric, labels in keys:
        values: list[str] = []
        for name, minutes in scenario.segments:
            value = snapshots[name].get((metric, labels))
            for step in range(minutes * per_minute):
                if value is None:
                    values.append("_")
                elif metric == "bitcoin_blocks" and name == healthy:
                    values.append(f"{value + step // (BLOCK_MINUTES * per_minute):g}")
                else:
                    values.append(f"{value:g}")
        selector = ",".join(f'{k}="{v}"' for k, v in labels)
        result.append({"series": f"{metric}{{{selector}}}", "values": " ".join(values)})
    return result


def restarting(recorder: Recorder, rule: dict[str, Any], scenario: Scenario) -> list[dict[str, Any]] | None:
    """Sv2PodRestarting's alerts for the restarts recorded in the scenario (all within its hour):
    one per container restarted more often than the rule's threshold; None when a count equals
    the threshold (increase() extrapolates, so either outcome is right)."""
    threshold = float(rule["expr"].rsplit(">", 1)[1])
    first, last = recorder.snapshots[scenario.segments[0][0]], recorder.snapshots[scenario.segments[-1][0]]
    alerts = []
    for (metric, labels), value in last.items():
        if metric != "kube_pod_container_status_restarts_total":
            continue
        increase = value - first.get((metric, labels), 0.0)
        if increase == threshold:
            return None
        if increase > threshold:
            alerts.append(
                {"exp_labels": {**dict(labels), **rule["labels"]}, "exp_annotations": rule["annotations"]}
            )
    return alerts


def promtool_tests(
    recorder: Recorder,
    rules: list[dict[str, Any]],
    scenarios_: list[Scenario],
    healthy: str,
    flip: bool = False,
) -> dict[str, Any]:
    """promtool's unit-test file; with `flip`, the first expectation that fires is reversed."""
    tests = []
    flipped = False
    for scenario in scenarios_:
        start = HEALTHY_MINUTES if len(scenario.segments) > 1 else HEALTHY_MINUTES - 1
        checks = []
        for minutes, firing in scenario.expected:
            for rule in rules:
                fires = rule["alert"] in firing
                if flip and fires and not flipped:
                    fires, flipped = False, True
                alerts = (
                    [{"exp_labels": rule["labels"], "exp_annotations": rule["annotations"]}] if fires else []
                )
                if rule["alert"] == "Sv2PodRestarting":
                    found = restarting(recorder, rule, scenario)
                    if found is None:
                        continue
                    alerts = found
                checks.append(
                    {"eval_time": f"{start + minutes}m", "alertname": rule["alert"], "exp_alerts": alerts}
                )
        tests.append(
            {
                "name": scenario.name,
                "interval": f"{INTERVAL_SECONDS}s",
                "input_series": _input_series(recorder, scenario, healthy),
                "alert_rule_test": checks,
            }
        )
    return {"rule_files": ["rules.yaml"], "evaluation_interval": f"{INTERVAL_SECONDS}s", "tests": tests}


def promtool(folder: Path, *args: str) -> tuple[int, str]:
    done = subprocess.run(
        [str(binary("promtool")), *args], cwd=folder, capture_output=True, text=True, timeout=120, check=False
    )
    return done.returncode, done.stdout + done.stderr


def evaluate(
    recorder: Recorder, group: dict[str, Any], folder: Path, stage: dict[str, str], healthy: str
) -> list[str]:
    rules: list[dict[str, Any]] = group["rules"]
    misuse = counter_functions_on_gauges(rules)
    if misuse:
        raise E2EError(
            f"counter functions on sv2-apps gauges (a channel's reset reads as a counter reset): {misuse}"
        )
    folder.mkdir(exist_ok=True)
    (folder / "rules.yaml").write_text(yaml.safe_dump({"groups": [group]}))
    code, out = promtool(folder, "check", "rules", "rules.yaml")
    if code != 0:
        raise E2EError(f"promtool check rules: {out}")
    checked = re.search(r"SUCCESS: (\d+) rules found", out)
    all_scenarios = scenarios(rules, healthy, stage)
    (folder / "tests.yaml").write_text(
        yaml.safe_dump(promtool_tests(recorder, rules, all_scenarios, healthy))
    )
    code, out = promtool(folder, "test", "rules", "tests.yaml")
    if code != 0:
        raise E2EError(f"promtool test rules:\n{out[-3000:]}")
    (folder / "flipped.yaml").write_text(
        yaml.safe_dump(promtool_tests(recorder, rules, all_scenarios, healthy, flip=True))
    )
    flipped_code, flipped_out = promtool(folder, "test", "rules", "flipped.yaml")
    if flipped_code == 0 or "FAILED" not in flipped_out:
        raise E2EError(f"promtool passed a test whose expectation was reversed: {flipped_out[-600:]}")
    fired = sorted({a for s in all_scenarios for _, f in s.expected for a in f})
    return [
        f"promtool check rules: {checked.group(1) if checked else '?'} rules of the stored PrometheusRule",
        "no rule applies rate/increase/irate/resets to an sv2-apps gauge",
        *[recorder.describe(name) for name in (healthy, *stage.values())],
        f"promtool test rules: {len(all_scenarios)} scenarios ({'; '.join(s.name for s in all_scenarios)}) "
        f"pass; fired as expected: {', '.join(fired)}; every other alert silent at each check",
        f"with one expectation reversed promtool fails (exit {flipped_code})",
    ]
