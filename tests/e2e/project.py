"""A throwaway copy of the project, driven with the real Pulumi CLI against a `file://` backend."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml
from pulumi.runtime import rpc

from tests.e2e.processes import output_of
from tests.e2e.toolchain import cache_dir, tool
from tests.support.constants import PROJECT, ROOT

# In the environment of every CLI run (and so of every plugin it starts): finds leftovers.
RUN_MARKER: Final = f"SV2_E2E_RUN={uuid.uuid4().hex}"
# What the program needs to run; the copy keeps the checkout's stack files untouched.
PROGRAM_FILES = ("Pulumi.yaml", "__main__.py", "requirements.txt", "components", "docker", "policy")


class PulumiError(RuntimeError):
    """A CLI command failed; the message carries the tail of its output."""


@dataclass
class Outcome:
    seconds: float
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


class Project:
    """The program in a temporary folder, with its own state backend and stack files."""

    def __init__(self, kube_env: dict[str, str], cli: Path | None = None, *, fresh: bool = False) -> None:
        """`fresh`: every file git tracks and no virtualenv, as a new clone (the language host then
        creates .venv from requirements.txt, as Pulumi.yaml says); else the program's files with
        the checkout's .venv."""
        self.kube_env = kube_env
        self.dir = Path(tempfile.mkdtemp(prefix="sv2-e2e-project-"))
        # The cached build here; elsewhere (GitHub) the CLI the workflow installed.
        self.cli = cli or tool("pulumi")
        tracked = output_of(["git", "-C", ROOT, "ls-files", "-z"]).split("\0") if fresh else PROGRAM_FILES
        for name in filter(None, tracked):
            source, target = ROOT / name, self.dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
            elif source.exists():
                shutil.copy2(source, target)
        if not fresh:
            # Pulumi.yaml names the virtualenv .venv: the checkout's, with everything pinned.
            (self.dir / ".venv").symlink_to(ROOT / ".venv")
        (self.dir / "state").mkdir()
        on_path = [str(self.cli.parent)] if self.cli.parent != Path() else []
        self.env = {
            **os.environ,
            **kube_env,
            "PATH": os.pathsep.join([*on_path, os.environ.get("PATH", "")]),
            "PULUMI_HOME": str(cache_dir() / "pulumi-home"),
            "PULUMI_BACKEND_URL": f"file://{self.dir / 'state'}",
            "PULUMI_CONFIG_PASSPHRASE": "e2e-only-passphrase",
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_SKIP_CONFIRMATIONS": "true",
            # Plugins come from PULUMI_HOME only, never from PATH (the cache bin is on it).
            "PULUMI_IGNORE_AMBIENT_PLUGINS": "true",
            # A missing plugin is an error, never a download from get.pulumi.com.
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            RUN_MARKER.split("=")[0]: RUN_MARKER.split("=")[1],
        }
        # No stale per-user setting may point the run anywhere else.
        for name in ("PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE_FILE"):
            self.env.pop(name, None)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def run(self, *args: str, stack: str | None = None, check: bool = True, timeout: float = 900) -> Outcome:
        command = [str(self.cli), *args, "--non-interactive"]
        if stack:
            command += ["--stack", stack]
        started = time.monotonic()
        result = subprocess.run(
            command, cwd=self.dir, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        outcome = Outcome(time.monotonic() - started, result.stdout, result.stderr)
        if check and result.returncode != 0:
            lines = (result.stdout + result.stderr).strip().splitlines()
            # What failed: mandatory policy violations (each with its two lines of detail) and
            # error lines; advisory notes (values not known during a preview) would hide them.
            flagged = [
                i + offset
                for i, line in enumerate(lines)
                if "[mandatory]" in line or "error" in line.lower()
                for offset in (range(3) if "[mandatory]" in line else range(1))
            ]
            shown = [lines[i] for i in sorted(set(flagged)) if i < len(lines)] or lines[-40:]
            excerpt = "\n".join(shown[:40])
            command_line = f"pulumi {' '.join(args)} (stack {stack})"
            raise PulumiError(f"{command_line} exited {result.returncode}:\n{excerpt}")
        return outcome

    def init_stack(self, stack: str, stack_file: Path, settings: dict[str, Any]) -> None:
        """A stack from a committed (or e2e) stack file, plus e2e-only settings."""
        document = yaml.safe_load(stack_file.read_text()) or {}
        config = dict(document.get("config") or {})
        config.update({f"{PROJECT}:{key}": value for key, value in settings.items()})
        (self.dir / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": config}, sort_keys=False))
        self.run("stack", "init", stack)

    def set_config(
        self, stack: str, key: str, value: str, *, path: bool = False, secret: bool = False
    ) -> None:
        flags = [*(["--path"] if path else []), *(["--secret"] if secret else [])]
        self.run("config", "set", *flags, f"{PROJECT}:{key}", value, stack=stack)

    def preview(self, stack: str, *extra: str) -> Outcome:
        return self.run("preview", "--json", "--skip-plugin-pre-install", *extra, stack=stack)

    def policy_pack(self) -> tuple[str, str]:
        """The arguments that apply the project's policy pack, as README tells operators to."""
        return "--policy-pack", str(self.dir / "policy")

    def guarded_preview(self, stack: str) -> Outcome:
        """`preview` under the policy pack, as text: `--json` leaves policy violations out."""
        outcome = self.run("preview", "--skip-plugin-pre-install", *self.policy_pack(), stack=stack)
        if "Loading policy packs...: done" not in outcome.stdout:
            raise PulumiError(f"the policy pack did not load:\n{outcome.stdout[-2000:]}")
        return outcome

    def up(self, stack: str, *extra: str) -> Outcome:
        return self.run("up", "--yes", "--skip-plugin-pre-install", *extra, stack=stack)

    def up_registering(self, stack: str) -> dict[tuple[str, str], Any]:
        """`up` under the policy pack, returning what the program itself registered: (type, name)
        → inputs. The state holds inputs after the provider's Check, which may have normalised them."""
        return self._registering(stack, "up", "--yes", *self.policy_pack())[1]

    def preview_registering(self, stack: str) -> tuple[Outcome, dict[tuple[str, str], Any]]:
        """`preview`, allowed to fail (a provider plugin missing here), and what the program
        registered before it ended."""
        return self._registering(stack, "preview", check=False)

    def _registering(
        self, stack: str, *command: str, check: bool = True
    ) -> tuple[Outcome, dict[tuple[str, str], Any]]:
        log = self.dir / f"grpc-{stack}.jsonl"
        log.unlink(missing_ok=True)
        saved = self.env.get("PULUMI_DEBUG_GRPC")
        self.env["PULUMI_DEBUG_GRPC"] = str(log)  # the engine logs each RPC of the program, as JSON
        try:
            outcome = self.run(*command, "--skip-plugin-pre-install", stack=stack, check=check)
        finally:
            if saved is None:
                self.env.pop("PULUMI_DEBUG_GRPC")
            else:
                self.env["PULUMI_DEBUG_GRPC"] = saved
        registered = registered_inputs(log)
        log.unlink()  # it holds the program's secrets in plain text
        return outcome, registered

    def destroy(self, stack: str) -> Outcome:
        return self.run("destroy", "--yes", "--skip-plugin-pre-install", stack=stack)

    def state(self, stack: str) -> list[dict[str, Any]]:
        """The stack's resources as the engine recorded them, secrets decrypted."""
        exported = self.run("stack", "export", "--show-secrets", stack=stack).json()
        resources: list[dict[str, Any]] = _unwrap(exported["deployment"].get("resources") or [])
        return resources

    def remove_stack(self, stack: str) -> None:
        self.run("stack", "rm", "--yes", "--force", stack=stack)


def _unwrap(value: Any) -> Any:
    """Secrets as `stack export --show-secrets` writes them, {<sig key>: <secret sig>, plaintext: JSON},
    replaced by their values; the markers are the SDK's own."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig and "plaintext" in value:
            return _unwrap(json.loads(value["plaintext"]))
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def leftover_processes(grace: float = 5.0) -> list[str]:
    """Processes still running with this run's marker (CLI, language hosts, plugins, programs),
    after `grace` seconds for the last ones to go."""
    marker = RUN_MARKER.encode()
    deadline = time.monotonic() + grace
    while True:
        found = []
        for proc in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    found.append(f"{proc.name}: {command[:120]}")
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def registered_inputs(log: Path) -> dict[tuple[str, str], Any]:
    """(type, name) → inputs of every RegisterResource request in a PULUMI_DEBUG_GRPC log."""
    found: dict[tuple[str, str], Any] = {}
    # One JSON document a line. Only "\n" ends one: Go's JSON leaves U+0085 unescaped in
    # strings, and str.splitlines() would break a line there.
    for line in log.read_text(encoding="utf-8").split("\n"):
        if not line:
            continue
        entry = json.loads(line)
        request = entry.get("request")
        if request and str(entry.get("method", "")).endswith(".ResourceMonitor/RegisterResource"):
            found[(str(request["type"]), str(request["name"]))] = request.get("object") or {}
    if not found:
        raise PulumiError(f"no RegisterResource request in {log}: did the CLI honour PULUMI_DEBUG_GRPC?")
    return found


def operations(preview: Any) -> dict[str, list[str]]:
    """op → URNs of the steps a `preview --json` plans (same included)."""
    found: dict[str, list[str]] = {}
    for step in preview.get("steps") or []:
        found.setdefault(str(step["op"]), []).append(str(step["urn"]))
    return found


def urn_name(urn: str) -> str:
    """'Kind::name' of a URN (Deployment::pool, RandomPassword::credentials-rpc-user)."""
    parts = urn.split("::")
    return f"{parts[-2].rsplit('$', 1)[-1].rsplit(':', 1)[-1]}::{parts[-1]}" if len(parts) >= 2 else urn
