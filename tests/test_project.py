"""The newcomer's path: README's commands, CI running them, one pin per dependency."""

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from components.setting_keys import ALL_KEYS, SECRET_SETTINGS, STRUCTURED_KEYS
from scripts.settings_reference import main as settings_reference
from tests.support.constants import ROOT, STACKS

E2E = ROOT / "tests" / "e2e"
REQUIREMENT_FILES = [
    ROOT / "requirements.txt",
    ROOT / "requirements-dev.txt",
    ROOT / "requirements-checkov.txt",
    ROOT / "policy" / "requirements.txt",
]


def _first_code_block(text: str) -> list[str]:
    block = text.split("```", 2)[1]
    return [line.split("#")[0].strip() for line in block.splitlines()[1:] if line.strip()]


def test_readme_opens_with_install_and_test_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme.index("```") < readme.index("## "), "the commands come before any section"
    assert _first_code_block(readme) == ["make setup", "make test"]
    assert "pulumi up -s signet" in readme


def test_ci_runs_the_readme_commands() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in script.splitlines() if line.strip() and not line.startswith("#")]
    assert "make setup" in commands
    assert any(re.fullmatch(r"(\w+=\w+ )*make test", c) for c in commands)


def test_every_dependency_is_pinned_exactly_once() -> None:
    seen: dict[str, Path] = {}
    for path in REQUIREMENT_FILES:
        for line in path.read_text().splitlines():
            line = line.split("#")[0].strip()
            if not line or line.startswith("-r "):
                continue
            name, separator, version = line.partition("==")
            assert separator and version, f"{path.name}: {line} is not pinned with =="
            key = name.lower().replace("_", "-")
            assert key not in seen, f"{name} is pinned in {seen[key].name} and {path.name}"
            seen[key] = path


def test_settings_reference_and_pulumi_yaml_match_the_settings_model() -> None:
    # Fails when a setting or its description changes without `make reference`.
    assert settings_reference(["--check"]) == 0


def test_project_shell_scripts_pass_shellcheck() -> None:
    shellcheck = ROOT / ".venv" / "bin" / "shellcheck"
    scripts = [ROOT / ".ci" / "run", *sorted((ROOT / "scripts").rglob("*.sh")), *sorted(E2E.rglob("*.sh"))]
    result = subprocess.run(
        [str(shellcheck), "-x", *map(str, scripts)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def _pulumi_project() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "Pulumi.yaml").read_text()))


def test_declarations_let_every_preview_start() -> None:
    # The CLI stops before the program runs on a declared key without a default, and on a
    # declared secret with a default that the stack did not set with --secret
    # (pulumi/pulumi#21865): secrets stay undeclared.
    # docs/upstream-behaviour.md#a-declared-secret-with-a-default-breaks-every-run
    declared = _pulumi_project()["config"]
    assert set(declared) == ALL_KEYS - set(SECRET_SETTINGS)
    for key, declaration in declared.items():
        assert "default" in declaration, key
        assert not declaration.get("secret"), key
        assert declaration["type"] in ("string", "integer", "boolean", "array", "object"), key


def test_lists_and_maps_are_native_config_objects() -> None:
    # A map declared as a string refuses `pulumi config set --path`.
    # docs/upstream-behaviour.md#a-stack-value-must-match-its-declared-type
    declared = _pulumi_project()["config"]
    for key in STRUCTURED_KEYS:
        declaration = declared[key]
        assert declaration["type"] in ("object", "array"), key
        if declaration["type"] == "array":
            assert declaration["items"]["type"] in ("string", "object"), key
    assert declared["nodeResources"]["type"] == "object"
    assert declared["failoverUpstreams"]["items"]["type"] == "object"


def _cli_accepts(declaration: dict[str, Any], value: Any) -> bool:
    """The CLI's type check of a stack value against its declaration."""
    kind = declaration["type"]
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        item_type = dict if declaration["items"]["type"] == "object" else str
        return isinstance(value, list) and all(isinstance(item, item_type) for item in value)
    if kind == "boolean":
        return isinstance(value, bool) or value in ("true", "false")
    if kind == "integer":
        return isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit())
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def test_the_committed_stack_files_pass_the_cli_checks() -> None:
    declared = _pulumi_project()["config"]
    for stack in STACKS:
        config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
        for key, value in config.items():
            name = key.removeprefix("sv2-k8s:")
            assert name in declared, f"{stack}: {key} is not declared in Pulumi.yaml"
            assert _cli_accepts(declared[name], value), f"{stack}: {key} has the wrong type"
