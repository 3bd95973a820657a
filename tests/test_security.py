"""Security: checkov finds nothing unwaived, and every pod meets the `restricted` profile."""

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import ROOT, STACKS, Run, write_manifests

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
WAIVERS = yaml.safe_load((ROOT / "security" / "checkov-waivers.yaml").read_text())
# Volume types the restricted Pod Security level admits.
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def _checkov(*arguments: str | Path) -> list[dict[str, Any]]:
    if not CHECKOV.exists():
        pytest.skip(f"{CHECKOV} is missing: run `make setup`")
    completed = subprocess.run(
        [str(CHECKOV), *map(str, arguments), "--skip-download", "--compact", "--quiet", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if not completed.stdout.strip():
        raise AssertionError(f"checkov printed nothing: {completed.stderr[-2000:]}")
    reports = json.loads(completed.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    return [failure for report in reports for failure in report["results"]["failed_checks"]]


def _resource_label(failure: dict[str, Any]) -> str:
    # checkov names Kubernetes resources Kind.namespace.name, the Dockerfile by its path.
    parts = str(failure["resource"]).split(".")
    return f"{parts[0]} {parts[-1]}" if len(parts) == 3 else "Dockerfile"


@pytest.fixture(scope="module")
def findings(runs: dict[str, Run], tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    directory = tmp_path_factory.mktemp("manifests")
    for stack in STACKS:
        write_manifests(runs[stack], directory)
    return _checkov("-d", directory, "--framework", "kubernetes") + _checkov(
        "-f", ROOT / "docker" / "bitcoin-node" / "Dockerfile", "--framework", "dockerfile"
    )


def test_checkov_finds_nothing_unwaived(findings: list[dict[str, Any]]) -> None:
    unwaived = [
        f"{f['check_id']} {f['resource']}"
        for f in findings
        if f["check_id"] not in WAIVERS or _resource_label(f) not in WAIVERS[f["check_id"]]["applies_to"]
    ]
    assert unwaived == []


def test_every_waiver_is_still_needed_and_explained(findings: list[dict[str, Any]]) -> None:
    hit = {f["check_id"] for f in findings}
    for check_id, waiver in WAIVERS.items():
        assert check_id in hit, f"{check_id} no longer fails: drop its waiver"
        assert len(waiver["reason"]) > 40


def _pod_templates(run: Run) -> list[tuple[str, dict[str, Any]]]:
    return [
        (m["metadata"]["name"], m["spec"]["template"]["spec"])
        for m in run.manifests()
        if m["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")
    ]


def test_every_pod_meets_the_restricted_profile(run: Run) -> None:
    templates = _pod_templates(run)
    assert templates
    for name, pod in templates:
        pod_security = pod.get("securityContext", {})
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), name
        assert {next(iter(set(v) - {"name"})) for v in pod.get("volumes", [])} <= RESTRICTED_VOLUMES, name
        assert pod["automountServiceAccountToken"] is False, name
        assert pod.get("serviceAccountName") not in (None, "default"), name
        for container in pod["containers"] + pod.get("initContainers", []):
            security = {**pod_security, **container.get("securityContext", {})}
            where = f"{name}/{container['name']}"
            assert security.get("runAsNonRoot") is True, where
            assert security.get("runAsUser", 1) != 0, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert not security.get("privileged"), where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert not security["capabilities"].get("add"), where
            assert security["seccompProfile"]["type"] in ("RuntimeDefault", "Localhost"), where
            assert security.get("readOnlyRootFilesystem") is True, where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), where


def test_the_namespace_enforces_the_restricted_level(run: Run) -> None:
    namespace = next(m for m in run.manifests() if m["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_only_the_translator_has_a_disruption_budget(run: Run) -> None:
    # A budget on a one-replica pool or node would block every node drain (README).
    budgets = [m for m in run.manifests() if m["kind"] == "PodDisruptionBudget"]
    assert [b["metadata"]["name"] for b in budgets] == ["translator"]
    assert budgets[0]["spec"]["maxUnavailable"] == 1
