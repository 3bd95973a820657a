"""Shared fixtures: each committed stack run once under the mock engine, and its manifests."""

import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from tests.support.constants import ROOT, SHARED_REFERENCE, STACKS
from tests.support.harness import Run, run_stack, write_manifests

# Hypothesis: a fast default keeps the suite under a minute and draws new examples on every run;
# CI's thorough run (SV2_HYPOTHESIS_PROFILE=thorough, see .ci/run) draws ten times as many, the
# same ones for the same code, so a commit's CI verdict does not depend on luck. Whatever a
# random run finds becomes an explicit test.
hypothesis_settings.register_profile("fast", max_examples=40, deadline=None)
hypothesis_settings.register_profile("thorough", max_examples=400, deadline=None, derandomize=True)
# As many, freshly drawn: for hunting (`--hypothesis-seed=N` replays a hunt).
hypothesis_settings.register_profile("explore", max_examples=400, deadline=None)
hypothesis_settings.load_profile(os.environ.get("SV2_HYPOTHESIS_PROFILE", "fast"))


def shared_reference(*parts: str) -> Path:
    path = SHARED_REFERENCE.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (workplace reference material, not part of the repo)")
    return path


@pytest.fixture(scope="session")
def runs() -> dict[str, Run]:
    results = {stack: run_stack(stack) for stack in STACKS}
    for stack, run in results.items():
        assert run.error is None, f"{stack}: {run.error}"
        # The offline render reviewers read (and CI keeps as an artifact).
        write_manifests(run, ROOT / "build" / "manifests")
    return results


@pytest.fixture(params=STACKS)
def run(request: pytest.FixtureRequest, runs: dict[str, Run]) -> Run:
    return runs[request.param]


def find(run: Run, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        m for m in run.manifests() if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]


def only(run: Run, kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(run, kind, name)
    assert len(found) == 1, f"{run.stack}: expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def by_component(run: Run, kind: str, component: str) -> dict[str, Any]:
    found = [m for m in find(run, kind) if m["metadata"]["labels"].get("app.kubernetes.io/name") == component]
    assert len(found) == 1, f"{run.stack}: expected one {kind} of {component}, found {len(found)}"
    return found[0]


def pool_config(run: Run) -> dict[str, Any]:
    secret = only(run, "Secret", "pool-config")
    return tomllib.loads(secret["stringData"]["pool.toml"])


def translator_config(run: Run) -> dict[str, Any]:
    config_map = only(run, "ConfigMap", "translator-config")
    return tomllib.loads(config_map["data"]["translator.toml"])


def service_ip(run: Run, name: str) -> str:
    return str(only(run, "Service", name)["spec"]["clusterIP"])
