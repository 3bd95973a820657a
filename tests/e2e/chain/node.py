"""The chain stage's processes (check.py): the stack's configs as `pulumi up` stored them, turned
into loopback copies (each change recorded), the node and sv2-tp started through the node image's
own scripts under supervisord, and the real pool and translator on the stored TOMLs."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import signal
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from components import image_contract
from tests.e2e.processes import (
    LOOPBACK,
    E2EError,
    Process,
    ProcessGroup,
    free_port,
    listening,
    output_of,
    wait,
)
from tests.e2e.project import RUN_MARKER
from tests.e2e.stack_assertions import StackAssertions
from tests.e2e.sv2_apps.config import Change, Local
from tests.e2e.toolchain import bin_dir, cache_dir
from tests.support.constants import ROOT

IMAGE_DIR = ROOT / "docker" / "bitcoin-node"
STARTUP = 30.0  # seconds for a process to come up


def binaries() -> dict[str, Path]:
    chain = cache_dir() / "chain"
    return {
        "bitcoin": chain / "bin" / "bitcoin",
        "bitcoin-node": chain / "libexec" / "bitcoin-node",
        "bitcoin-cli": chain / "bin" / "bitcoin-cli",
        "sv2-tp": chain / "bin" / "sv2-tp",
        "pool_sv2": bin_dir() / "pool_sv2",
        "translator_sv2": bin_dir() / "translator_sv2",
        "supervisord": Path(sys.executable).parent / "supervisord",
    }


@dataclass
class Stored:
    """The five configs as the API server holds them, and the node's chain from its StatefulSet."""

    bitcoin_conf: str
    tp_conf: str
    tp_key: bytes
    pool: dict[str, Any]
    translator: dict[str, Any]
    chain: str
    names: list[str]

    @property
    def tp_public_key(self) -> str:
        return str(self.pool["template_provider_type"]["Sv2Tp"]["public_key"])


def read_stored(assertions: StackAssertions, namespace: str) -> Stored:
    """The configs as the API server holds them."""
    kinds = ("secrets", "configmaps", "statefulsets")
    return stored_from({kind: assertions.items(kind, namespace) for kind in kinds}, namespace)


def rendered_stored(manifests: list[dict[str, Any]]) -> Stored:
    """The same from the mock engine's manifests (tests/support/harness.py), for the sv2-apps stage."""
    kinds = {"Secret": "secrets", "ConfigMap": "configmaps", "StatefulSet": "statefulsets"}
    objects: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds.values()}
    for manifest in manifests:
        if manifest["kind"] in kinds:
            objects[kinds[manifest["kind"]]].append(manifest)
    return stored_from(objects, "the mock render")


def stored_from(objects: dict[str, list[dict[str, Any]]], where: str) -> Stored:
    names: list[str] = []

    def one(kind: str, key: str) -> bytes:
        found = [o for o in objects[kind] if key in {**(o.get("data") or {}), **(o.get("stringData") or {})}]
        if len(found) != 1:
            raise E2EError(f"{len(found)} {kind} in {where} hold {key}, expected 1")
        names.append(f"{kind[:-1].capitalize()} {found[0]['metadata']['name']}[{key}]")
        if key in (found[0].get("stringData") or {}):
            return str(found[0]["stringData"][key]).encode()
        value = str(found[0]["data"][key])
        return base64.b64decode(value) if kind == "secrets" else value.encode()

    stored = Stored(
        one("secrets", "bitcoin.conf").decode(),
        one("configmaps", "sv2-tp.conf").decode(),
        one("secrets", "sv2_authority_key"),
        tomllib.loads(one("secrets", "pool.toml").decode()),
        tomllib.loads(one("configmaps", "translator.toml").decode()),
        "",
        names,
    )
    (node,) = objects["statefulsets"]
    env = {
        e["name"]: e.get("value")
        for c in node["spec"]["template"]["spec"]["containers"]
        for e in c.get("env") or []
    }
    stored.chain = str(env.get(image_contract.CHAIN_ENV) or "")
    if stored.chain != "signet":
        raise E2EError(
            f"StatefulSet {node['metadata']['name']} sets {image_contract.CHAIN_ENV}={stored.chain!r}"
        )
    if len(stored.tp_key) != 33 or stored.tp_key[0] != 1:
        raise E2EError("the stored TP key is not 0x01 || 32-byte secret")
    return stored


def loopback_conf(file: str, text: str, ports: dict[str, int], changes: list[Change]) -> str:
    """`text` with 0.0.0.0 binds on loopback and the listed ports replaced; nothing else changes."""
    binds = {"bind": "0.0.0.0", "rpcbind": "0.0.0.0", "sv2bind": "0.0.0.0", "rpcallowip": "0.0.0.0/0"}
    lines = []
    for line in text.splitlines():
        key, equals, value = line.partition("=")
        new = value
        if equals and binds.get(key) == value:
            new = LOOPBACK
        elif equals and key in ports:
            new = str(ports[key])
        if new != value:
            changes.append(Change(file, key, value, new, "→ loopback" if new == LOOPBACK else "→ free port"))
        lines.append(f"{key}{equals}{new}")
    result = "\n".join(lines) + "\n"
    if "0.0.0.0" in result or re.search(r"=(?!127\.)\d+\.\d+\.\d+\.\d+", result):
        raise E2EError(f"{file} still names an address off loopback:\n{result}")
    return result


@dataclass
class Chain:
    """The loopback chain of one run: its folder, its processes and where they listen."""

    root: Path
    group: ProcessGroup
    stored: Stored | None = None
    local: Local | None = None
    node: Process | None = None
    pool: Process | None = None
    translator: Process | None = None
    changes: list[Change] = dataclasses.field(default_factory=list)
    node_env: dict[str, str] = dataclasses.field(default_factory=dict)  # the container's environment
    container_restarts: int = 0

    @property
    def env(self) -> dict[str, str]:
        marker, value = RUN_MARKER.split("=", 1)
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", marker: value}

    def cli(self, *args: str, timeout: float = 120) -> str:
        conf = self.root / "etc" / "bitcoin.conf"
        command: list[str | Path] = [
            binaries()["bitcoin-cli"],
            f"-datadir={self.root / 'data'}",
            f"-conf={conf}",
            *args,
        ]
        return output_of(command, timeout).strip()

    def block(self, block_hash: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.cli("getblock", block_hash, "2"))
        return found

    def supervisorctl(self, *args: str) -> str:
        """supervisorctl of the running supervisord, reading the image's file as the image does."""
        env = [f"{key}={self.node_env[key]}" for key in ("SUPERVISOR_RUN_DIR", "SUPERVISORD_CONF")]
        ctl = binaries()["supervisord"].with_name("supervisorctl")
        return output_of(["env", *env, ctl, "-c", self.node_env["SUPERVISORD_CONF"], *args], 30).strip()

    def pid(self, program: str) -> int | None:
        """The pid supervisord has for `program`, None while it does not run."""
        try:
            pid = int(self.supervisorctl("pid", program))
        except (E2EError, ValueError):
            return None
        return pid or None

    def node_probe(self, check: str) -> tuple[int, str]:
        """The image's node-probe (what the kubelet runs): exit code and output."""
        try:
            return 0, output_of(
                ["env", *(f"{k}={v}" for k, v in self.node_env.items()), IMAGE_DIR / "node-probe", check], 30
            ).strip()
        except E2EError as error:
            found = re.search(r"exited (\d+): (.*)", str(error), re.DOTALL)
            return (int(found.group(1)), found.group(2).strip()) if found else (-1, str(error))


def accepted_block(
    chain: Chain, found: str, whose: str, payout: str, signature: str
) -> tuple[dict[str, Any], list[str]]:
    """Block `found` becomes the node's tip, the pool logged it as found, and its coinbase pays
    `payout` and carries /`signature`/: the block (getblock verbosity 2) and what was seen."""
    wait(
        lambda: chain.cli("getbestblockhash") == found or None,
        30,
        f"{whose} block {found} as the node's tip",
        [p for p in (chain.node, chain.pool) if p],
        interval=0.5,
        status=lambda: f"tip {chain.cli('getbestblockhash')}",
    )
    pool = chain.pool
    assert pool is not None
    announced = pool.wait_for(rf"Block Found.*{found}", 10)
    block = chain.block(found)
    coinbase = block["tx"][0]
    paid = coinbase["vout"][0]["scriptPubKey"].get("address")
    if paid != payout:
        raise E2EError(f"the coinbase of {found} pays {paid}, payoutAddress is {payout}")
    tag = f"/{signature}/".encode().hex()
    if tag not in coinbase["vin"][0]["coinbase"]:
        raise E2EError(f"the coinbase scriptSig {coinbase['vin'][0]['coinbase']} lacks /{signature}/ ({tag})")
    return block, [
        f"pool logged Block Found {announced.rsplit('💰', 1)[-1].strip()[:16]}…",
        f"block {found[:16]}… is the tip at height {block['height']}",
        f"coinbase pays {coinbase['vout'][0]['value']} to {paid}",
        f"scriptSig {coinbase['vin'][0]['coinbase'][:40]}… carries /{signature}/",
    ]


def start_node(chain: Chain, stored: Stored) -> list[str]:
    """The image's entrypoint under the real supervisord; the files where image-contract.sh says."""
    root, local = chain.root, chain.local
    assert local is not None
    for sub in ("data", "etc", "secrets", "run"):
        (root / sub).mkdir()
    paths = {
        "NODE_DATA_DIR": (image_contract.DATA_DIR, root / "data"),
        "BITCOIN_CONF": (image_contract.BITCOIN_CONF_PATH, root / "etc" / "bitcoin.conf"),
        "SV2_TP_CONF": (image_contract.SV2_TP_CONF_PATH, root / "etc" / "sv2-tp.conf"),
        "SV2_TP_KEY_SOURCE": (image_contract.TP_KEY_PATH, root / "secrets" / "sv2_authority_key"),
        "SUPERVISOR_RUN_DIR": ("/tmp", root / "run"),
        "SUPERVISORD_CONF": ("/etc/supervisor/supervisord.conf", IMAGE_DIR / "supervisord.conf"),
    }
    for name, (image_path, path) in paths.items():
        why = "the image's file, from the checkout" if name == "SUPERVISORD_CONF" else "image path → temp dir"
        chain.changes.append(Change("env", name, image_path, str(path), why))
    ports = {"port": free_port(), "rpcport": free_port()}
    bitcoin_conf = loopback_conf("bitcoin.conf", stored.bitcoin_conf, ports, chain.changes)
    tp_conf = loopback_conf("sv2-tp.conf", stored.tp_conf, {"sv2port": local.tp_port}, chain.changes)
    paths["BITCOIN_CONF"][1].write_text(bitcoin_conf)
    paths["SV2_TP_CONF"][1].write_text(tp_conf)
    key = paths["SV2_TP_KEY_SOURCE"][1]
    key.write_bytes(stored.tp_key)
    key.chmod(0o400)
    # PATH: the image's scripts, the real binaries, python3 and supervisorctl with supervisor.
    on_path = [IMAGE_DIR, binaries()["bitcoin"].parent, Path(sys.executable).parent]
    chain.changes.append(Change("env", "PATH", "image", ":".join(map(str, on_path)) + ":…", "real binaries"))
    env = {
        **chain.env,
        **{name: str(path) for name, (_, path) in paths.items()},
        image_contract.CHAIN_ENV: stored.chain,
        "PATH": os.pathsep.join([*map(str, on_path), chain.env["PATH"]]),
    }
    chain.node_env = env
    node = run_container(chain)
    try:
        line = node.wait_for(r"Template Provider authority key: ", STARTUP)
    except E2EError as error:
        errors = node.grep(r"Error|error:|refusing|giving up|FATAL|exited: ")
        raise E2EError(f"{error}; the first errors: {' | '.join(errors[:4])}") from error
    logged = line.rsplit("Template Provider authority key: ", 1)[1].split()[0]
    if logged != stored.tp_public_key:
        raise E2EError(
            f"sv2-tp's authority key {logged} is not pool.toml's TP public_key {stored.tp_public_key}"
        )
    installed = root / "data" / stored.chain / "sv2_authority_key"
    if installed.read_bytes() != stored.tp_key:
        raise E2EError(f"{installed} differs from the stored key")
    wait(lambda: listening(local.tp_port) or None, STARTUP, f"sv2-tp on port {local.tp_port}", [node])
    node.wait_for(r"success: sv2-tp entered RUNNING", STARTUP)  # after its startsecs
    programs = [
        p for p in ("bitcoin-node", "sv2-tp", "follow-node") if node.grep(rf"success: {p} entered RUNNING")
    ]
    if len(programs) != 3:
        raise E2EError(f"supervisord reports only {programs} RUNNING: {node.tail(8)}")
    return [
        f"supervisord RUNNING {', '.join(programs)}",
        f"sv2-tp authority key {logged} = pool.toml TP public_key "
        f"(installed as {installed.relative_to(root)})",
        f"sv2-tp on {LOOPBACK}:{local.tp_port}",
        f"tip height {chain.cli('getblockcount')}",
    ]


def run_container(chain: Chain) -> Process:
    """The node container's entrypoint (again, after a container restart) on the same volume."""
    chain.container_restarts += chain.node is not None
    node = chain.node = chain.group.start("supervisord", [IMAGE_DIR / "entrypoint.sh"], chain.node_env)
    node.grace = 90  # sv2-tp may wait out its 30 s template interval, node after it
    return node


def launch_app(chain: Chain, which: str) -> Process:
    """pool_sv2 or translator_sv2 on its stored TOML, not waited for (a container start)."""
    local = chain.local
    assert local is not None
    table = local.pool if which == "pool" else local.translator
    config = chain.root / f"{which}.toml"
    config.write_text(tomli_w.dumps(table))
    env = {**chain.env, "RUST_LOG": "info", "NO_COLOR": "1"}
    process = chain.group.start(which, [binaries()[f"{which}_sv2"], "-c", config], env)
    process.stop_signal, process.grace = signal.SIGINT, 10
    if which == "pool":
        chain.pool = process
    else:
        chain.translator = process
    return process


def start_apps(chain: Chain, which: str) -> list[str]:
    local = chain.local
    assert local is not None
    process = launch_app(chain, which)
    if which == "pool":
        process.wait_for("Starting downstream server", STARTUP)
        wait(lambda: listening(local.pool_port) or None, STARTUP, f"pool on {local.pool_port}", [process])
        tp = local.pool["template_provider_type"]["Sv2Tp"]["address"]
        return [f"pool on {LOOPBACK}:{local.pool_port}, its TP {tp}"]
    process.wait_for(r"Translator Proxy: listening on", STARTUP)
    return [f"translator SV1 on {LOOPBACK}:{local.sv1_port}, upstream pool {LOOPBACK}:{local.pool_port}"]


def restart_tp_with_key(chain: Chain, key: bytes) -> str:
    """Puts `key` where the image mounts the TP key Secret and restarts sv2-tp, which
    start-sv2-tp.sh installs it for (a rotated Secret); returns the authority key sv2-tp logs."""
    node, local = chain.node, chain.local
    assert node is not None and local is not None
    source = Path(chain.node_env["SV2_TP_KEY_SOURCE"])
    source.chmod(0o600)
    source.write_bytes(key)
    source.chmod(0o400)
    seen = len(node.lines())
    chain.supervisorctl("restart", "sv2-tp")
    line = wait(
        lambda: next((x for x in node.lines()[seen:] if "Template Provider authority key: " in x), None),
        STARTUP,
        "sv2-tp's authority key after the restart",
        [node],
    )
    wait(lambda: listening(local.tp_port) or None, STARTUP, f"sv2-tp on port {local.tp_port}", [node])
    return line.rsplit("Template Provider authority key: ", 1)[1].split()[0]
