"""/metrics of the running pool and translator against what components/monitoring.py queries."""

from __future__ import annotations

import re

import promql_parser

from components.monitoring import (
    METRIC_SOURCES,
    SV2_APPS_PER_CHANNEL,
    SV2_APPS_V020_ONLY,
    SV2_APPS_V030_ONLY,
    alert_rules,
    dashboard,
)
from components.stack_config import parse_settings
from tests.e2e.processes import E2EError, Process, wait
from tests.e2e.sv2_apps.apps import http
from tests.e2e.sv2_apps.config import Local, Rendered

Scrape = dict[str, set[str]]  # job ("pool", "translator") → metric names with samples
CHANNEL_WAIT = 25.0  # the monitoring cache refreshes every 15 s (monitoring_cache_refresh_secs)


def names(text: str) -> set[str]:
    """Names with at least one sample in a Prometheus text scrape (a bare # HELP is not a series)."""
    return {
        m.group(1) for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})? ", text, re.MULTILINE)
    }


def scrape(local: Local) -> Scrape:
    result: Scrape = {}
    for job, address in (("pool", local.pool_monitoring), ("translator", local.translator_monitoring)):
        text = http(address, "/metrics")
        if text is None:
            raise E2EError(f"{job} /metrics on {address} did not answer")
        result[job] = names(text)
    return result


def wait_for_channels(local: Local, pool: Process, translator: Process) -> Scrape:
    """Scrapes until both caches show the per-channel series (SV1 miners must be connected)."""

    def channels() -> Scrape | None:
        current = scrape(local)
        pool_has = "sv2_client_shares_accepted_total" in current["pool"]
        return current if pool_has and "sv2_server_shares_accepted_total" in current["translator"] else None

    found: Scrape = wait(
        channels,
        CHANNEL_WAIT,
        "per-channel series with 2 miners",
        [pool, translator],
        interval=1,
        status=lambda: str(scrape(local)),
    )
    return found


def queried(rendered: Rendered) -> dict[str, set[str]]:
    """sv2-apps metric name → the jobs whose selectors name it in the alert rules and the dashboard."""
    settings = parse_settings(rendered.run.config, rendered.stack)
    expressions = [rule["expr"] for rule in alert_rules(settings, "claim")]
    expressions += [t["expr"] for panel in dashboard(settings)["panels"] for t in panel["targets"]]
    found: dict[str, set[str]] = {}

    def visit(node: promql_parser.Expr) -> bool:
        if not isinstance(node, promql_parser.VectorSelector) or node.name is None:
            return True
        if METRIC_SOURCES.get(node.name, "").startswith("sv2-apps"):
            jobs = {m.value for m in node.matchers.matchers if m.name == "job"} or {"pool", "translator"}
            found.setdefault(node.name, set()).update(jobs)
        return True

    for expression in expressions:
        promql_parser.walk(promql_parser.parse(expression), visit)
    return found


def compare(rendered: Rendered, idle: Scrape, busy: Scrape) -> str:
    used = queried(rendered)
    present, late, old = [], [], []
    for name, jobs in sorted(used.items()):
        if name in SV2_APPS_V020_ONLY:
            # This binary is v0.3.0 code: the v0.2.0 name must be gone and its successor there.
            successor = name.removesuffix("_total")
            if any(name in busy[job] for job in jobs) or not all(successor in busy[job] for job in jobs):
                raise E2EError(f"{name}: expected only its v0.3.0 successor {successor} on {sorted(jobs)}")
            old.append(name)
            continue
        where = [job for job in jobs if name in busy[job]]
        if name in SV2_APPS_V030_ONLY or len(jobs) == 1:
            missing = sorted(jobs - set(where))
        else:
            missing = [] if where else sorted(jobs)  # a selector without job: either binary will do
        if missing:
            raise E2EError(f"{name} is queried on {missing} but not exported there: {busy}")
        present.append(name)
        if not any(name in idle[job] for job in where):
            if name not in SV2_APPS_PER_CHANNEL:
                raise E2EError(f"{name} appears only with channels open but is not in SV2_APPS_PER_CHANNEL")
            late.append(name)
    exported = {job: sorted(busy[job]) for job in busy}
    return (
        f"queried and exported: {', '.join(present)}; of these only once channels exist: {', '.join(late)}; "
        f"v0.2.0 names, absent from this v0.3.0 binary as expected (queries fall back to them): "
        f"{', '.join(old)}; pool exports {', '.join(exported['pool'])}; translator exports "
        f"{', '.join(exported['translator'])}"
    )
