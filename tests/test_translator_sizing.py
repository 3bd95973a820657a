"""Translator sizing: a miners-per-replica budget, the fewest replicas sized from the expected farm,
scaling on connected miners where the cluster can, and an alert past the budget
(docs/operations.md#sizing-translators; the figures: make bench-chain)."""

from typing import Any

import kubernetes_validate
import pytest

from components.settings import MINERS_PER_TRANSLATOR, translator_replicas_for
from components.stack_config import SettingsError, parse_settings
from tests.conftest import only
from tests.support.constants import TEST_NETWORK_ADDRESS
from tests.support.harness import run_stack
from tests.test_monitoring import alert_rules

BASE = {"payoutAddress": TEST_NETWORK_ADDRESS}


def hpa(settings: dict[str, str]) -> dict[str, Any]:
    run = run_stack("signet", settings)
    assert run.error is None, run.error
    manifest = only(run, "HorizontalPodAutoscaler", "translator")
    kubernetes_validate.validate(manifest, "1.30", strict=True)
    spec: dict[str, Any] = manifest["spec"]
    return spec


@pytest.mark.parametrize(
    ("miners", "per_replica", "replicas"),
    [(0, 200, 2), (400, 200, 2), (401, 200, 3), (1000, 200, 5), (10_000, 200, 50), (5, 1, 5)],
)
def test_replicas_cover_the_farm_and_never_fall_below_two(
    miners: int, per_replica: int, replicas: int
) -> None:
    assert translator_replicas_for(miners, per_replica) == replicas


def test_the_defaults_give_two_replicas_of_two_hundred_miners() -> None:
    settings = parse_settings(BASE)
    assert (settings.expected_miners, settings.translator_miners_per_replica) == (400, MINERS_PER_TRANSLATOR)
    assert settings.translator_min_replicas == 0
    assert settings.min_translators == 2


def test_the_expected_farm_sizes_the_hpa_minimum() -> None:
    spec = hpa({"expectedMiners": "1000"})
    assert (spec["minReplicas"], spec["maxReplicas"]) == (5, 10)
    assert hpa({"expectedMiners": "1000", "translatorMinersPerReplica": "100"})["minReplicas"] == 10


def test_an_explicit_minimum_wins_over_the_farm() -> None:
    assert hpa({"expectedMiners": "1000", "translatorMinReplicas": "3"})["minReplicas"] == 3


def test_a_farm_beyond_the_maximum_names_what_it_needs() -> None:
    with pytest.raises(SettingsError, match=r"translatorMaxReplicas is below the 15 replicas expectedMiners"):
        parse_settings({**BASE, "expectedMiners": "3000"})
    assert (
        parse_settings({**BASE, "expectedMiners": "3000", "translatorMaxReplicas": "15"}).min_translators
        == 15
    )
    with pytest.raises(SettingsError, match=r"translatorMaxReplicas is below translatorMinReplicas"):
        parse_settings({**BASE, "translatorMinReplicas": "4", "translatorMaxReplicas": "3"})


@pytest.mark.parametrize(
    ("key", "value"),
    [("expectedMiners", "-1"), ("translatorMinersPerReplica", "0"), ("translatorScaleOnMiners", "yes")],
)
def test_bad_sizing_values_are_refused(key: str, value: str) -> None:
    with pytest.raises(SettingsError, match=key):
        parse_settings({**BASE, key: value})


def test_cpu_and_memory_alone_unless_scaling_on_miners_is_asked_for() -> None:
    assert [m["type"] for m in hpa({})["metrics"]] == ["Resource", "Resource"]


def test_scaling_on_miners_targets_the_budget_per_pod() -> None:
    spec = hpa(
        {"monitoringEnabled": "true", "translatorScaleOnMiners": "true", "translatorMinersPerReplica": "150"}
    )
    pods = [m["pods"] for m in spec["metrics"] if m["type"] == "Pods"]
    assert pods == [
        {"metric": {"name": "sv1_clients_total"}, "target": {"type": "AverageValue", "averageValue": "150"}}
    ]
    assert [m["resource"]["name"] for m in spec["metrics"] if m["type"] == "Resource"] == ["cpu", "memory"]


def test_scaling_on_miners_needs_monitoring() -> None:
    with pytest.raises(SettingsError, match="translatorScaleOnMiners needs monitoringEnabled"):
        parse_settings({**BASE, "translatorScaleOnMiners": "true"})


def test_an_alert_fires_past_the_budget() -> None:
    run = run_stack("signet", {"monitoringEnabled": "true", "translatorMinersPerReplica": "150"})
    rule = alert_rules(run)["Sv2TranslatorOverBudget"]
    assert rule["expr"].startswith("max(sv1_clients_total{") and rule["expr"].endswith("> 150")
    assert rule["annotations"]["runbook_url"] == "docs/operations.md#sv2translatoroverbudget"
