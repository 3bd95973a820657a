"""Security: checkov finds nothing unwaived, and every pod meets the `restricted` profile."""

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.constants import ROOT, STACKS
from tests.support.harness import Run, run_stack, write_manifests

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
    # Each finding keeps its report's framework: that, not the resource's text, says what it is.
    return [
        {**failure, "check_type": report["check_type"]}
        for report in reports
        for failure in report["results"]["failed_checks"]
    ]


def _resource_label(finding: dict[str, Any]) -> str:
    """The name waivers use: `Kind name` for a Kubernetes object, `Dockerfile` for the Dockerfile."""
    check_type = finding["check_type"]
    if check_type == "kubernetes":
        # Kind.namespace.name; kinds and namespaces hold no dot, a name may.
        kind, _namespace, name = str(finding["resource"]).split(".", 2)
        return f"{kind} {name}"
    if check_type == "dockerfile":
        # The resource is <path as given>.<instruction>: any dot in the checkout's path is in it.
        return "Dockerfile"
    raise AssertionError(f"no waiver label for checkov framework {check_type!r}")


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    directory = tmp_path_factory.mktemp("manifests")
    for stack in STACKS:
        # Monitoring on, so its objects (the node's exporter sidecar) are scanned too.
        write_manifests(run_stack(stack, {"monitoringEnabled": "true"}), directory)
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


def test_labels_come_from_the_framework_not_from_the_path() -> None:
    def label(check_type: str, resource: str) -> str:
        return _resource_label({"check_type": check_type, "resource": resource})

    # A clone in ~/src/sv2.k8s once made the Dockerfile finding look like Kind.namespace.name.
    assert label("dockerfile", "/home/me/sv2.k8s/docker/bitcoin-node/Dockerfile.FROM") == "Dockerfile"
    assert label("dockerfile", "docker/bitcoin-node/Dockerfile.FROM") == "Dockerfile"
    assert label("kubernetes", "Deployment.sv2-signet.pool") == "Deployment pool"
    # Object names may contain dots; the label keeps the whole name.
    assert label("kubernetes", "ConfigMap.sv2-signet.pool.v2") == "ConfigMap pool.v2"
    with pytest.raises(AssertionError, match="terraform"):
        label("terraform", "aws_s3_bucket.data")


def test_a_checkout_path_with_a_dot_needs_the_same_waivers(
    findings: list[dict[str, Any]], tmp_path: Path
) -> None:
    # One dot in a parent folder is what split the old label into three parts.
    copy = tmp_path / "sv2.k8s" / "docker" / "bitcoin-node" / "Dockerfile"
    copy.parent.mkdir(parents=True)
    shutil.copy(ROOT / "docker" / "bitcoin-node" / "Dockerfile", copy)
    moved = _checkov("-f", copy, "--framework", "dockerfile")
    assert moved, "the Dockerfile is expected to keep its waived CKV_DOCKER_7 finding"
    assert {_resource_label(f) for f in moved} == {"Dockerfile"}
    original = {(f["check_id"], _resource_label(f)) for f in findings if f["check_type"] == "dockerfile"}
    assert {(f["check_id"], _resource_label(f)) for f in moved} == original


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
