"""make e2e, stage "chain": a private-signet stack, as the real `pulumi up` stored it in the API
server, mines a block through the real chain on loopback.

    binaries   the cached Bitcoin Core, sv2-tp, pool_sv2, translator_sv2 and supervisord are there
    up         `pulumi up` of Pulumi.signet.yaml + signetChallenge 51 + cheap shares; then
               bitcoin.conf, sv2-tp.conf, the TP key, pool.toml and translator.toml read back
               from the API server (not a render)
    node       the image's entrypoint.sh → run-supervisord → supervisord.conf → start-node.sh,
               start-sv2-tp.sh with the real binaries; sv2-tp's authority key = pool.toml's
    pool, translator   the real binaries on the stored TOMLs, the pool's TP = sv2-tp's port
    block      sv2-probe mines on the node's tip; its share is a block that becomes the tip,
               whose coinbase pays payoutAddress and carries poolSignature
    new tip    a block from bitcoin-cli reaches a held SV1 connection as a clean_jobs notify
    metrics    the pool's and translator's share counters on /metrics are non-zero
    teardown   translator, pool, then supervisord (sv2-tp before the node), destroy, temp dir gone

Only paths, binds and ports change (each change is printed in the step's line): the image's
paths through image-contract.sh's environment overrides, addresses in the stored files.
Every process carries the run marker (project.RUN_MARKER), so leftovers fail the run.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import tomllib
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import tomli_w

from components import image_contract
from components.settings import Settings
from sv1_probe.probe import Job, ProbeError, Session, prevhash_bytes, probe
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
from tests.e2e.project import RUN_MARKER, Project, leftover_processes
from tests.e2e.stack_assertions import StackAssertions
from tests.e2e.sv2_apps.apps import http
from tests.e2e.sv2_apps.config import Change, Local, Rendered, localise
from tests.e2e.toolchain import bin_dir, cache_dir
from tests.support.constants import PROJECT, ROOT

STACK = "signet-chain"
IMAGE_DIR = ROOT / "docker" / "bitcoin-node"
# OP_TRUE: blocks need no signature. At 500000 H/s the translator's share difficulty is
# 500000 × 60 / 6 / 2^32 = 0.00116 ≥ the genesis difficulty 0.0011265: every share is a
# block (~5 M hashes, ~5 s at the probe's ~1 MH/s).
CHAIN_SETTINGS: dict[str, Any] = {"signetChallenge": "51", "minIndividualMinerHashrate": 500000}
STARTUP = 30.0
MINE_TIMEOUT = 120.0
# generatetoaddress spends maxtries over all blocks; a signet block needs ~4.8 M on average.
MAX_TRIES = "100000000"
CHANNEL_WAIT = 25.0  # the apps' monitoring cache refreshes every 15 s


class StepRunner(Protocol):
    """run.Runner: its project, its assertions, and its step() that prints and counts."""

    project: Project
    assertions: StackAssertions

    def step(self, stack: str, name: str) -> AbstractContextManager[list[str]]: ...


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
    objects = {kind: assertions.items(kind, namespace) for kind in ("secrets", "configmaps")}
    names: list[str] = []

    def one(kind: str, key: str) -> bytes:
        found = [o for o in objects[kind] if key in (o.get("data") or {})]
        if len(found) != 1:
            raise E2EError(f"{len(found)} {kind} in {namespace} hold {key}, expected 1")
        value = str(found[0]["data"][key])
        names.append(f"{kind[:-1].capitalize()} {found[0]['metadata']['name']}[{key}]")
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
    (node,) = assertions.items("statefulsets", namespace)
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
    node = chain.node = chain.group.start("supervisord", [IMAGE_DIR / "entrypoint.sh"], env)
    node.grace = 90  # sv2-tp may wait out its 30 s template interval, node after it
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


def start_apps(chain: Chain, which: str) -> list[str]:
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
        process.wait_for("Starting downstream server", STARTUP)
        wait(lambda: listening(local.pool_port) or None, STARTUP, f"pool on {local.pool_port}", [process])
        tp = local.pool["template_provider_type"]["Sv2Tp"]["address"]
        return [f"pool on {LOOPBACK}:{local.pool_port}, its TP {tp}"]
    chain.translator = process
    process.wait_for(r"Translator Proxy: listening on", STARTUP)
    return [f"translator SV1 on {LOOPBACK}:{local.sv1_port}, upstream pool {LOOPBACK}:{local.pool_port}"]


def subscribe(port: int) -> Session:
    """An SV1 connection held open (subscribed, authorized) that keeps the translator's channel."""
    session = Session(LOOPBACK, port, STARTUP, lambda _: None)
    reply = session.call("mining.subscribe", ["sv2-k8s-e2e-chain/1"])
    _, session.extranonce1, session.extranonce2_size = reply["result"][:3]
    session.call("mining.authorize", ["e2e-held", "x"])
    while not session.jobs:
        session.pump("waiting for the first mining.notify")
    return session


def previous(job: Job) -> str:
    """The job's previous-block hash in RPC byte order."""
    return prevhash_bytes(job.prevhash)[::-1].hex()


def mine_block(chain: Chain, payout: str, signature: str) -> list[str]:
    local = chain.local
    assert local is not None
    tip, height = chain.cli("getbestblockhash"), int(chain.cli("getblockcount"))
    result = probe(
        f"stratum+tcp://{LOOPBACK}:{local.sv1_port}", mine=True, timeout=STARTUP, mine_timeout=MINE_TIMEOUT
    )
    if previous(result.job) != tip:
        raise E2EError(f"the probe's job builds on {previous(result.job)}, the node's tip is {tip}")
    share = result.share
    assert share is not None  # probe() raises unless a share was accepted
    found = share["hash"]
    wait(
        lambda: chain.cli("getbestblockhash") == found or None,
        30,
        f"the probe's block {found} as the node's tip",
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
    return [
        f"job on tip {tip[:16]}… (height {height})",
        f"share accepted after {result.hashes:,} hashes in {result.seconds:.1f} s "
        f"at difficulty {result.difficulty:.6g}",
        f"pool logged Block Found {announced.rsplit('💰', 1)[-1].strip()[:16]}…",
        f"block {found[:16]}… is the tip at height {block['height']}",
        f"coinbase pays {coinbase['vout'][0]['value']} to {paid}",
        f"scriptSig {coinbase['vin'][0]['coinbase'][:40]}… carries /{signature}/",
    ]


def new_tip(chain: Chain, held: Session, payout: str) -> list[str]:
    (generated,) = json.loads(chain.cli("generatetoaddress", "1", payout, MAX_TRIES, timeout=300))
    held.budget, held.deadline = STARTUP, time.monotonic() + STARTUP
    try:
        while not any(job.clean and previous(job) == generated for job in held.jobs):
            held.pump(f"waiting for a clean mining.notify on {generated}")
    except ProbeError as error:
        seen = [f"{job.job_id} clean={job.clean} on {previous(job)[:16]}…" for job in held.jobs]
        raise E2EError(f"{error}; the held connection got {', '.join(seen)}") from error
    job = next(job for job in held.jobs if job.clean and previous(job) == generated)
    return [
        f"generatetoaddress → {generated[:16]}… (height {chain.cli('getblockcount')})",
        f"held SV1 connection got job {job.job_id} clean_jobs={str(job.clean).lower()} on it",
    ]


def share_counters(address: str) -> dict[str, float]:
    text = http(address, "/metrics")
    if text is None:
        raise E2EError(f"GET http://{address}/metrics failed")
    counters: dict[str, float] = {}
    for match in re.finditer(r"^(\w*shares_accepted\w*)(\{[^}]*\})? (\S+)$", text, re.MULTILINE):
        counters[match.group(1)] = counters.get(match.group(1), 0.0) + float(match.group(3))
    return counters


def metrics(chain: Chain) -> list[str]:
    local = chain.local
    assert local is not None
    jobs = {"pool": local.pool_monitoring, "translator": local.translator_monitoring}

    def counted() -> dict[str, dict[str, float]] | None:
        found = {job: share_counters(address) for job, address in jobs.items()}
        return found if all(any(v > 0 for v in c.values()) for c in found.values()) else None

    found = wait(
        counted,
        CHANNEL_WAIT,
        "non-zero share counters on both /metrics",
        [p for p in (chain.pool, chain.translator) if p],
        interval=1,
        status=lambda: str({job: share_counters(address) for job, address in jobs.items()}),
    )
    return [f"{job} {', '.join(f'{n}={v:g}' for n, v in c.items())}" for job, c in found.items()]


def teardown(chain: Chain, project: Project, up: bool) -> list[str]:
    """Everything is stopped and removed whatever failed; then the problems, if any, are raised."""
    details: list[str] = []
    problems: list[str] = []
    for process in (chain.translator, chain.pool):
        if process:
            process.stop()
            details.append(f"{process.name} stopped")
    node = chain.node
    if node and node.exit_code is not None:  # it ended on its own: the failing step says why
        details.append(f"supervisord had already exited {node.exit_code}")
    elif node:
        started, seen = time.monotonic(), len(node.lines())
        node.stop()
        during = node.lines()[seen:]  # only what stopping brought: an earlier failure is its step's
        aborted = [line for line in during if re.search(r"terminate called|SIGABRT|SIGKILL", line)]
        clean = [
            p for p in ("sv2-tp", "bitcoin-node") if f"stopped: {p} (exit status 0)" in "\n".join(during)
        ]
        if node.exit_code != 0 or aborted or "bitcoin-node" not in clean:
            problems.append(
                f"supervisord exit {node.exit_code}, clean stops {clean}: {' | '.join(aborted[:3])}"
            )
        else:
            order = (
                "sv2-tp then bitcoin-node"
                if clean[0] == "sv2-tp"
                else "bitcoin-node (sv2-tp was not running)"
            )
            details.append(
                f"supervisord exit 0 after {time.monotonic() - started:.1f} s, {order} exit status 0"
            )
    chain.group.stop()
    if up:
        try:
            project.destroy(STACK)
            details.append(f"{STACK} destroyed")
        except Exception as error:  # reported below, after the rest is cleaned up
            problems.append(f"destroy: {error}")
    keep = os.environ.get("SV2_E2E_KEEP_LOGS")
    if not keep:
        shutil.rmtree(chain.root, ignore_errors=True)
    left = leftover_processes(grace=10)
    if left:
        problems.append(f"processes left: {left}")
    details.append(f"logs kept in {chain.root}" if keep else f"{chain.root} removed, no process left")
    if problems:
        raise E2EError("; ".join(problems))
    return details


def check(runner: StepRunner, settings: dict[str, Any]) -> None:
    """The stage's steps in order; a failing step raises (run.StepFailedError) after the teardown."""
    with runner.step(STACK, "binaries") as details:
        absent = [f"{name} ({path})" for name, path in binaries().items() if not os.access(path, os.X_OK)]
        if absent:
            raise E2EError(
                f"{', '.join(absent)} not built: run make e2e-tools, or skip the stage (SV2_E2E_SKIP=chain)"
            )
        found = binaries()
        node = output_of([found["bitcoin"], "-m", "node", "-version"]).splitlines()[0]
        tp = output_of([found["sv2-tp"], "-version"]).splitlines()[0]
        details += [node, tp, "pool_sv2, translator_sv2, supervisord"]
    project = runner.project
    root = Path(tempfile.mkdtemp(prefix="sv2-chain-"))  # short: node.sock must fit in 108 bytes
    chain = Chain(root, ProcessGroup(root, grace=15))
    up = False
    try:
        with runner.step(STACK, "up") as details:
            project.init_stack(STACK, ROOT / "Pulumi.signet.yaml", {**settings, **CHAIN_SETTINGS})
            up = True
            outcome = project.up(STACK)
            namespace = _config(project, "namespace") or "sv2-mining"
            stored = chain.stored = read_stored(runner.assertions, namespace)
            rendered = Rendered(STACK, cast(Any, None), stored.pool, stored.translator, "")
            chain.local = localise(rendered)
            chain.changes += [
                dataclasses.replace(c, why=c.why.replace("fake-tp", "sv2-tp's loopback port"))
                for c in chain.local.changes
            ]
            hashrate = stored.translator["downstream_difficulty_config"]["min_individual_miner_hashrate"]
            details += [
                f"pulumi up {outcome.seconds:.0f} s, {len(project.state(STACK))} resources",
                f"read back from the API server: {', '.join(stored.names)}",
                f"signetchallenge=51 in bitcoin.conf: {'signetchallenge=51' in stored.bitcoin_conf}",
                f"min_individual_miner_hashrate {hashrate:g}",
            ]
            if "signetchallenge=51" not in stored.bitcoin_conf:
                raise E2EError(f"the stored bitcoin.conf has no signetchallenge=51:\n{stored.bitcoin_conf}")
        with runner.step(STACK, "node and sv2-tp") as details:
            details += start_node(chain, stored)
        with runner.step(STACK, "pool and translator") as details:
            details += start_apps(chain, "pool") + start_apps(chain, "translator")
            details.append("; ".join(str(change) for change in chain.changes))
        payout = _config(project, "payoutAddress")
        signature = _config(project, "poolSignature") or str(Settings.model_fields["pool_signature"].default)
        held: Session | None = None
        try:
            with runner.step(STACK, "block") as details:
                # Held from before the probe on: the translator's channel, and so its counters, stay.
                assert chain.local is not None
                held = subscribe(chain.local.sv1_port)
                details += mine_block(chain, payout, signature)
            with runner.step(STACK, "new tip") as details:
                details += new_tip(chain, held, payout)
            with runner.step(STACK, "metrics") as details:
                details += metrics(chain)
        finally:
            if held:
                held.sock.close()
    finally:
        with runner.step(STACK, "teardown") as details:
            details += teardown(chain, project, up)


def _config(project: Project, key: str) -> str:
    outcome = project.run("config", "get", f"{PROJECT}:{key}", stack=STACK, check=False)
    return outcome.stdout.strip()
