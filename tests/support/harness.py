"""Run __main__.py under Pulumi's mock engine for a committed stack, and render what it registers.

No cluster, no Pulumi CLI: the mocks play the engine and the providers, computing what the
cluster would (Service clusterIPs, the LoadBalancer address, random passwords, the image digest).

Offline render for reviewers (`make render`):
    .venv/bin/python -m tests.support.harness signet testnet4 mainnet --set mainnet:payoutAddress=bc1…
writes build/manifests/<stack>.yaml.
"""

import argparse
import asyncio
import functools
import hashlib
import ipaddress
import json
import runpy
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.sync_await import _ensure_event_loop

from tests.support.constants import MAINNET_TEST_ADDRESS, PROJECT, ROOT, STACKS

LOAD_BALANCER_IP = "203.0.113.10"


@dataclass
class Registered:
    """One resource as the engine saw it: inputs, the state the mocks computed, and options."""

    type: str
    name: str
    urn: str
    parent: str
    inputs: dict[str, Any]
    state: dict[str, Any]
    retain_on_delete: bool
    protect: bool
    depends_on: list[str]
    provider: str
    additional_secret_outputs: list[str]

    @property
    def plain_inputs(self) -> dict[str, Any]:
        """Inputs with Pulumi's secret wrappers removed."""
        return dict(_plain(self.inputs))


@dataclass
class Run:
    stack: str
    config: dict[str, str]
    resources: list[Registered] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    unknown_outputs: set[str] = field(default_factory=set)
    error: BaseException | None = None

    def of_type(self, type_: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str) -> Registered:
        matches = [r for r in self.resources if r.type == type_ and r.name == name]
        assert len(matches) == 1, f"expected one {type_} named {name}, found {len(matches)}"
        return matches[0]

    def manifests(self) -> list[dict[str, Any]]:
        return [to_manifest(r) for r in self.resources if r.type.startswith("kubernetes:")]


def _digest(*parts: object) -> bytes:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()


def _random_bytes(name: str, inputs: dict[str, Any], length: int) -> bytes:
    """Deterministic stand-in randomness: a function of the name and the keepers only,
    so tests can tell whether a settings change would replace a random resource."""
    out = b""
    counter = 0
    while len(out) < length:
        out += _digest(name, inputs.get("keepers"), counter)
        counter += 1
    return out[:length]


class StackMocks(pulumi.runtime.Mocks):
    def __init__(self, preview: bool = False) -> None:
        self.preview = preview

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == "kubernetes:core/v1:Service" and self.preview:
            pass  # a first preview: the API server has assigned no address yet
        elif args.typ == "kubernetes:core/v1:Service":
            spec = dict(state.get("spec") or {})
            # A stable address per Service, from the service CIDR, as the API server assigns.
            spec["clusterIP"] = str(
                ipaddress.ip_address("10.96.0.0") + int.from_bytes(_digest(args.name)[:2], "big") + 10
            )
            if spec.get("type") in ("NodePort", "LoadBalancer"):
                spec["ports"] = [
                    {**p, "nodePort": p.get("nodePort") or 30000 + i} for i, p in enumerate(spec["ports"])
                ]
            state["spec"] = spec
            if spec.get("type") == "LoadBalancer":
                state["status"] = {"loadBalancer": {"ingress": [{"ip": LOAD_BALANCER_IP}]}}
        elif args.typ == "random:index/randomPassword:RandomPassword":
            alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
            raw = _random_bytes(args.name, args.inputs, int(args.inputs["length"]))
            state["result"] = "".join(alphabet[b % len(alphabet)] for b in raw)
        elif args.typ == "docker:index/image:Image":
            repository = str(args.inputs["imageName"]).rsplit(":", 1)[0]
            state["repoDigest"] = f"{repository}@sha256:{_digest(args.inputs).hex()}"
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, also keeping each registration's resource options."""

    def __init__(self, mocks: StackMocks, run: Run):
        super().__init__(mocks)
        self.run = run
        # The SDK gives each worker thread that registers a resource an event loop of its
        # own and never closes it; run_stack closes them once the run is over.
        self.thread_loops: set[asyncio.AbstractEventLoop] = set()

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        self.thread_loops.add(_ensure_event_loop())  # type: ignore[no-untyped-call]
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            registration = self.resources[response.urn]
            self.run.resources.append(
                Registered(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent,
                    inputs=rpc.deserialize_properties(request.object, keep_unknowns=True),
                    state=dict(registration.state),
                    retain_on_delete=bool(request.retainOnDelete),
                    protect=bool(request.protect),
                    depends_on=list(request.dependencies),
                    provider=request.provider,
                    additional_secret_outputs=list(request.additionalSecretOutputs),
                )
            )
        return response


def _as_config(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@functools.cache
def project_defaults() -> dict[str, str]:
    """Defaults declared in Pulumi.yaml, which the CLI passes for keys a stack leaves unset."""
    document = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    return {key: _as_config(spec["default"]) for key, spec in (document.get("config") or {}).items()}


@functools.cache
def stack_config(stack: str) -> dict[str, str]:
    """The committed Pulumi.<stack>.yaml config of this project, as the engine passes it."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text()) or {}
    config: dict[str, str] = {}
    for key, value in (document.get("config") or {}).items():
        if key.startswith(f"{PROJECT}:"):
            config[key.removeprefix(f"{PROJECT}:")] = value if isinstance(value, str) else json.dumps(value)
    return config


def run_stack(
    stack: str,
    overrides: dict[str, str] | None = None,
    *,
    base: bool = True,
    program: Callable[[], None] | None = None,
    preview: bool = False,
) -> Run:
    """Run the program for a stack; `overrides` are settings by key (values as Pulumi stores them).

    With base=False the committed stack file is ignored and only `overrides` apply; `program`
    replaces __main__.py (the benchmark's floor); preview=True runs it as a first `pulumi preview`.
    """
    config = {**project_defaults(), **(dict(stack_config(stack)) if base else {}), **(overrides or {})}
    if stack == "mainnet" and base and "payoutAddress" not in (overrides or {}):
        config["payoutAddress"] = MAINNET_TEST_ADDRESS
    run = Run(stack=stack, config=config)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    pulumi.runtime.settings.ROOT.set(None)
    # Keys with a namespace of their own (kubernetes:context) go in as they are.
    pulumi.runtime.set_all_config({k if ":" in k else f"{PROJECT}:{k}": v for k, v in config.items()})
    mocks = StackMocks(preview)
    monitor = RecordingMonitor(mocks, run)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)

    def main_program() -> None:
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")

    try:
        loop.run_until_complete(pulumi.runtime.stack.run_pulumi_func(program or main_program))
        root = pulumi.runtime.settings.get_root_resource()
        exported = getattr(root, "outputs", {}) or {}
        for name, value in exported.items():
            output = pulumi.Output.from_input(value)
            run.outputs[name] = loop.run_until_complete(output.future())
            if loop.run_until_complete(output.is_secret()):
                run.secret_outputs.add(name)
            if not loop.run_until_complete(output.is_known()):
                run.unknown_outputs.add(name)
    except Exception as error:
        run.error = error
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        for thread_loop in monitor.thread_loops - {loop}:
            thread_loop.close()
    return run


def _is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def secret_strings(value: Any) -> set[str]:
    """Every string inside a value that Pulumi marks secret."""
    if _is_secret(value):
        inner = _plain(value["value"])
        found = {inner} if isinstance(inner, str) else set()
        return found | set(_strings(inner))
    if isinstance(value, dict):
        return set().union(*(secret_strings(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(secret_strings(v) for v in value))
    return set()


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _plain(value: Any) -> Any:
    """Mock state as YAML would carry it: secrets unwrapped, whole floats back to ints."""
    if _is_secret(value):
        return _plain(value["value"])
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def to_manifest(resource: Registered) -> dict[str, Any]:
    state = {k: v for k, v in resource.state.items() if k != "status" and not k.startswith("__")}
    head = {k: state.pop(k) for k in ("apiVersion", "kind", "metadata") if k in state}
    manifest: dict[str, Any] = _plain({**head, **state})
    return manifest


def write_manifests(run: Run, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{run.stack}.yaml"
    path.write_text(yaml.safe_dump_all(run.manifests(), sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("stacks", nargs="*", default=list(STACKS))
    parser.add_argument(
        "--set", action="append", default=[], metavar="STACK:KEY=VALUE", help="override a setting"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "manifests")
    options = parser.parse_args(argv)
    overrides: dict[str, dict[str, str]] = {}
    for item in options.set:
        target, _, value = item.partition("=")
        stack, _, key = target.rpartition(":")
        for name in [stack] if stack else options.stacks:
            overrides.setdefault(name, {})[key] = value
    status = 0
    for stack in options.stacks:
        run = run_stack(stack, overrides.get(stack))
        if run.error is not None:
            print(f"{stack}: {run.error}", file=sys.stderr)
            status = 1
            continue
        path = write_manifests(run, options.out)
        print(f"{stack}: {len(run.manifests())} objects → {path.relative_to(ROOT)}")
        for name, value in sorted(run.outputs.items()):
            print(f"  {name} = {'[secret]' if name in run.secret_outputs else value}")
    return status


if __name__ == "__main__":
    sys.exit(main())
