"""The e2e's own helpers, checked without a cluster: each mutant still matches the code it breaks,
and the program's registrations are read from the engine's gRPC log."""

import base64
import json
import shutil
from pathlib import Path

import pytest
from pulumi.runtime import rpc

from components.stack_config import SettingsError
from tests.e2e.draws import draw, draw_seeds, regressions
from tests.e2e.mutants import MUTANTS
from tests.e2e.project import PulumiError, registered_inputs
from tests.e2e.stack_assertions import _as_stored, _differences, _plain, _quantities
from tests.support.constants import PROJECT, ROOT
from tests.support.harness import run_stack


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_each_mutant_breaks_the_code_as_it_is_today(mutant, tmp_path: Path) -> None:
    # A refactor that moves the guarded code must move its mutant too, or the e2e stops testing it.
    copy = tmp_path / mutant.path
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / mutant.path, copy)
    mutant.apply(tmp_path)
    assert copy.read_text() != (ROOT / mutant.path).read_text()
    with pytest.raises(AssertionError, match="is not once"):
        mutant.apply(tmp_path)  # applied already: the old text is gone


def test_registrations_are_read_from_the_grpc_log(tmp_path: Path) -> None:
    log = tmp_path / "grpc.jsonl"
    register = "/pulumirpc.ResourceMonitor/RegisterResource"
    entries = [
        {"method": register, "request": {"type": "pulumi:pulumi:Stack", "name": "s", "object": {}}},
        {"method": "/pulumirpc.ResourceProvider/Check", "request": {"urn": "x", "news": {"a": 1}}},
        {
            "method": register,
            "request": {
                "type": "kubernetes:apps/v1:Deployment",
                "name": "pool",
                "object": {"spec": {"replicas": 1}},
            },
        },
        {"method": register, "response": {"urn": "y"}},
    ]
    log.write_text("".join(json.dumps(e) + "\n" for e in entries))
    assert registered_inputs(log) == {
        ("pulumi:pulumi:Stack", "s"): {},
        ("kubernetes:apps/v1:Deployment", "pool"): {"spec": {"replicas": 1}},
    }
    log.write_text(json.dumps(entries[1]) + "\n")
    with pytest.raises(PulumiError, match="PULUMI_DEBUG_GRPC"):
        registered_inputs(log)


def test_workload_quantities_cover_containers_and_claims() -> None:
    workload = {
        "spec": {
            "template": {
                "spec": {
                    "initContainers": [{"name": "init"}],
                    "containers": [{"name": "node", "resources": {"requests": {"cpu": "0.75"}}}],
                }
            },
            "volumeClaimTemplates": [
                {"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": "1Ti"}}}}
            ],
        }
    }
    assert _quantities(workload) == {
        "container init": {},
        "container node": {"requests": {"cpu": "0.75"}},
        "claim data": {"requests": {"storage": "1Ti"}},
    }


def test_the_grpc_log_is_split_at_newlines_only(tmp_path: Path) -> None:
    # Issue 18: a drawn poolKeyRotation held U+0085 (NEL), which Go's JSON writes unescaped and
    # str.splitlines() treats as a line break: "Unterminated string" in a valid log.
    log = tmp_path / "grpc.jsonl"
    keeper = "t\u0085u\u2028v\x1cw\u00fe\U000fad55"
    entry = {
        "method": "/pulumirpc.ResourceMonitor/RegisterResource",
        "request": {
            "type": "random:index/randomPassword:RandomPassword",
            "name": "k",
            "object": {"keepers": {"r": keeper}},
        },
    }
    log.write_text(json.dumps(entry, ensure_ascii=False) + "\n", encoding="utf-8")
    assert registered_inputs(log)[("random:index/randomPassword:RandomPassword", "k")] == {
        "keepers": {"r": keeper}
    }


@pytest.mark.parametrize("case", regressions(), ids=lambda case: case.name)
def test_each_regression_draw_meets_its_verdict_under_the_mocks(case) -> None:
    # The e2e replays these through the real engine; here the program's own verdict, quickly.
    as_stored = {k: v if isinstance(v, str) else json.dumps(v) for k, v in case.settings.items()}
    run = run_stack(case.stack, as_stored)
    if case.refused_key:
        assert isinstance(run.error, SettingsError) and f"{PROJECT}:{case.refused_key} " in str(run.error)
        assert run.resources == []
    else:
        assert run.error is None, run.error


def test_draws_are_fixed_by_their_seeds() -> None:
    seeds = draw_seeds("a commit", 2)
    assert seeds == draw_seeds("a commit", 2) and seeds != draw_seeds("another commit", 2)
    first, again = draw(seeds[0]), draw(seeds[0])
    assert first == again and first.settings, "a seed must draw the same, non-empty settings"
    assert f"SV2_E2E_RANDOM_SEEDS={seeds[0]} " in first.replay


def test_live_objects_are_compared_with_every_registered_field() -> None:
    secret_sig = {rpc._special_sig_key: rpc._special_secret_sig, "value": "s3cret"}
    registered = {
        "metadata": {"name": "pool", "labels": {"a": "1"}, "annotations": {}},
        "stringData": {"pool.toml": secret_sig},
        "spec": {"ports": [{"port": 34254, "targetPort": "sv2"}]},
    }
    live = {
        "metadata": {"name": "pool", "labels": {"a": "1", "added": "x"}, "uid": "u"},
        "data": {"pool.toml": base64.b64encode(b"s3cret").decode()},
        "spec": {"ports": [{"port": 34254.0, "targetPort": "sv2", "protocol": "TCP"}]},
    }
    wanted = _as_stored("Secret", _plain(registered))
    assert _differences(wanted, live) == []
    live["spec"]["ports"][0]["targetPort"] = "other"
    live["data"]["pool.toml"] = "b3RoZXI="
    assert sorted(_differences(wanted, live)) == [
        ".data.pool.toml: registered 'czNjcmV0', live 'b3RoZXI='",
        ".spec.ports[0].targetPort: registered 'sv2', live 'other'",
    ]
    del live["metadata"]["labels"]["a"]
    assert ".metadata.labels.a is missing" in _differences(wanted, live)
