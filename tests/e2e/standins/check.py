"""Checks the Python stand-ins for the language host and pulumi-random with the real Pulumi CLI, offline.

Installs them (install.sh), then drives a throwaway project through up, up again, preview,
refresh, a keepers change and destroy, against a local file backend, printing one line per step.
    usage: .venv/bin/python -m tests.e2e.standins.check [--cache DIR]   (default: the e2e toolchain's)
Exits non-zero at the first failed step and keeps its work folder for a look.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.e2e.toolchain import cache_dir
from tests.support.constants import ROOT

HERE = Path(__file__).resolve().parent
PROJECT = "standins-check"
SECRET_KEY = "4dabf18193072939515e22adb298388d"
BYTES = "random:index/randomBytes:RandomBytes"
PASSWORD = "random:index/randomPassword:RandomPassword"
STRING = "random:index/randomString:RandomString"
CHANGED = re.compile(r"\d+ (to )?(create|update|replace|delete)d?\b")

PULUMI_YAML = f"""\
name: {PROJECT}
runtime:
  name: python
  options:
    toolchain: pip
    virtualenv: {ROOT / ".venv"}
config:
  settings:
    type: object
    default:
      replicas: 2
      labels: {{tier: pool}}
"""

PROGRAM = """\
import json
import os

import pulumi
import pulumi_random as random

cfg = pulumi.Config()
random.RandomBytes("salt", length=16, keepers={"rotation": cfg.get("rotation") or "0"})
random.RandomPassword("password", length=20, special=False)
user = random.RandomString(
    "user", length=12, special=False, upper=False,
    opts=pulumi.ResourceOptions(additional_secret_outputs=["result"]),
)
pulumi.export("settings", cfg.require_object("settings"))
pulumi.export("secretKeys", json.loads(os.environ["PULUMI_CONFIG_SECRET_KEYS"]))
pulumi.export("userLength", user.result.apply(len))
"""


class StepError(Exception):
    pass


class Check:
    def __init__(self, cache: Path, work: Path) -> None:
        self.project = work / "project"
        self.log = work / "rpc.log"
        self.env = dict(os.environ)
        self.env.update(
            PULUMI_HOME=str(cache / "pulumi-home"),
            PULUMI_CONFIG_PASSPHRASE="test",
            PULUMI_SKIP_UPDATE_CHECK="true",
            PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",  # offline: nothing may be downloaded
            PATH=f"{cache / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            SV2_E2E_STANDIN_LOG=str(self.log),
        )
        self.env.pop("PULUMI_BACKEND_URL", None)
        self.env.pop("PULUMI_ACCESS_TOKEN", None)

    def pulumi(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["pulumi", *args, "--non-interactive"],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if ok and done.returncode:
            raise StepError(f"pulumi {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
        return done

    def up(self) -> str:
        return self.pulumi("up", "--yes", "--skip-plugin-pre-install").stdout

    def state(self) -> dict[str, dict[str, Any]]:
        """The random resources of the stack by type, with secrets shown (plain) and as stored."""
        shown = json.loads(self.pulumi("stack", "export", "--show-secrets").stdout)["deployment"]
        stored = json.loads(self.pulumi("stack", "export").stdout)["deployment"]
        secret = {r["urn"]: r for r in stored.get("resources", [])}
        return {
            r["type"]: {**r, "stored": secret[r["urn"]]}
            for r in shown.get("resources", [])
            if r["type"].startswith("random:index/")
        }

    def digest(self) -> dict[str, Any]:
        """What must not move when nothing changes: each random resource's id, inputs and outputs."""
        return {t: (r["id"], r["inputs"], r["outputs"]) for t, r in self.state().items()}

    def outputs(self) -> dict[str, Any]:
        return dict(json.loads(self.pulumi("stack", "output", "--json", "--show-secrets").stdout))

    def calls(self, plugin: str) -> str:
        lines = self.log.read_text().split("\n") if self.log.exists() else []
        return ", ".join(sorted({ln.split()[1] for ln in lines if ln.startswith(plugin + " ")}))


def step(name: str, ok: bool, detail: str = "") -> None:
    if not ok:
        raise StepError(f"{name}: {detail}")
    print(f"ok    {name}", flush=True)


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and SECRET_KEY in value


def plain(value: Any) -> Any:
    """A value from `stack export --show-secrets`, where secrets keep their JSON as plaintext."""
    return json.loads(value["plaintext"]) if is_secret(value) else value


def provider_string_result_is_plain() -> bool:
    """RandomString's result straight from the provider stand-in: plain, as upstream's."""
    path = HERE / "pulumi-resource-random"
    loader = importlib.machinery.SourceFileLoader("standin_random", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # dataclasses look their module up there
    loader.exec_module(module)
    plan = module.planned(STRING, {"length": 12})
    _, computed = module.generate(STRING, plan)
    return not is_secret(module.outputs(STRING, plan, "x", computed)["result"])


def run(check: Check, work: Path, cache: Path) -> None:
    installer = subprocess.run(
        ["bash", str(HERE / "install.sh"), str(cache)], capture_output=True, text=True, check=False
    )
    step("install.sh", installer.returncode == 0, installer.stdout + installer.stderr)
    check.project.mkdir()
    (check.project / "Pulumi.yaml").write_text(PULUMI_YAML)
    (check.project / "__main__.py").write_text(PROGRAM)
    (work / "state").mkdir()
    check.pulumi("login", f"file://{work / 'state'}")
    check.pulumi("stack", "init", "dev")
    check.pulumi("config", "set", "--secret", "token", "hunter2")
    step("login to a file backend, stack init dev", True)

    check.up()
    first = check.digest()
    step(
        "up creates RandomBytes, RandomPassword, RandomString",
        sorted(first) == sorted([BYTES, PASSWORD, STRING]),
        f"random resources in state: {sorted(first)}",
    )
    outs = check.outputs()
    step(
        "object config (type: object in Pulumi.yaml) reaches the program",
        outs.get("settings") == {"replicas": 2, "labels": {"tier": "pool"}},
        f"settings output: {outs.get('settings')}",
    )
    step(
        "secret config keys reach the program (PULUMI_CONFIG_SECRET_KEYS)",
        outs.get("secretKeys") == [f"{PROJECT}:token"],
        f"secretKeys output: {outs.get('secretKeys')}",
    )

    text = check.up()
    step("second up changes nothing", not CHANGED.search(text) and check.digest() == first, text)
    done = check.pulumi("preview", "--expect-no-changes", "--skip-plugin-pre-install", ok=False)
    step("preview --expect-no-changes", done.returncode == 0, done.stdout + done.stderr)
    done = check.pulumi("refresh", "--yes", "--expect-no-changes", "--skip-plugin-pre-install", ok=False)
    step(
        "refresh --expect-no-changes",
        done.returncode == 0 and check.digest() == first,
        done.stdout + done.stderr,
    )

    check.pulumi("config", "set", "rotation", "1")
    preview = json.loads(check.pulumi("preview", "--json", "--skip-plugin-pre-install").stdout)
    replaced = [s["urn"].rsplit("::", 1)[-1] for s in preview["steps"] if s["op"] not in ("same", "read")]
    step(
        "keepers change: preview replaces RandomBytes only",
        replaced == ["salt"],
        f"changed steps: {replaced}",
    )
    check.up()
    after = check.state()
    changed = sorted(t for t in first if first[t][2] != after[t]["outputs"])
    step("keepers change: up replaces RandomBytes only", changed == [BYTES], f"changed: {changed}")

    stored = {t: r["stored"] for t, r in after.items()}
    secret_outputs = {
        t: sorted(k for k, v in r["outputs"].items() if is_secret(v)) for t, r in stored.items()
    }
    expected = {BYTES: ["base64", "hex"], PASSWORD: ["bcryptHash", "result"], STRING: ["result"]}
    step(
        "stack export: secret outputs as upstream",
        secret_outputs == expected,
        f"secret outputs: {secret_outputs}",
    )
    step(
        "RandomString result secret only through additional_secret_outputs",
        stored[STRING].get("additionalSecretOutputs") == ["result"] and provider_string_result_is_plain(),
        f"additionalSecretOutputs: {stored[STRING].get('additionalSecretOutputs')}",
    )
    plain_ids = (
        stored[STRING]["id"] == plain(after[STRING]["outputs"]["result"])
        and stored[BYTES]["id"] == plain(after[BYTES]["outputs"]["base64"])
        and stored[PASSWORD]["id"] == "none"
    )
    step(
        "ids as upstream, in plain text: RandomString's is its result, RandomBytes' its base64",
        plain_ids,
        f"ids: { {t: r['id'] for t, r in stored.items()} }",
    )

    check.pulumi("destroy", "--yes", "--skip-plugin-pre-install")
    step("destroy removes them all", check.state() == {}, f"left: {sorted(check.state())}")
    print(f"info  language host RPCs called: {check.calls('language')}")
    print(f"info  random provider RPCs called: {check.calls('random')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=cache_dir())
    cache = parser.parse_args().cache.resolve()
    work = Path(tempfile.mkdtemp(prefix="sv2-standins-"))
    check = Check(cache, work)
    try:
        run(check, work, cache)
    except (StepError, subprocess.TimeoutExpired) as e:
        print(f"FAIL  {e}\n      (work folder kept: {work})", flush=True)
        sys.exit(1)
    finally:
        if check.project.exists():  # forget the throwaway backend and project in the shared PULUMI_HOME
            check.pulumi("logout", f"file://{work / 'state'}", ok=False)
            for stale in (cache / "pulumi-home" / "workspaces").glob(f"{PROJECT}-*-workspace.json"):
                stale.unlink()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
