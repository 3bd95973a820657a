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
    independent miner
               independent_miner.py: `para miner` (an SV1 CPU miner nobody here wrote) finds a
               block that becomes the tip, paying payoutAddress, with para's nonce and extranonce
    pool killed, sv2-tp killed, node restarted, node killed, node FATAL
               failures.py: what each process does when another goes away, the image's
               supervisord and follow-node at work, the apps restarted as a kubelet would, and
               the time until a new miner has work on the tip again
    alerts     alerts.py: the stored PrometheusRule, by promtool, against series built from
               what the steps above recorded (idle, busy, each fault, each recovery)
    teardown   translator, pool, then supervisord (sv2-tp before the node), destroy, temp dir gone

Only paths, binds and ports change (each change is printed in the step's line): the image's
paths through image-contract.sh's environment overrides, addresses in the stored files.
Every process carries the run marker (project.RUN_MARKER), so leftovers fail the run.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import tempfile
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, cast

from components.settings import Settings
from sv1_probe.probe import Job, ProbeError, Session, prevhash_bytes, probe
from tests.e2e.chain import failures, independent_miner
from tests.e2e.chain.alerts import Recorder, evaluate, watched_names
from tests.e2e.chain.node import (
    STARTUP,
    Chain,
    accepted_block,
    binaries,
    read_stored,
    start_apps,
    start_node,
)
from tests.e2e.processes import (
    LOOPBACK,
    E2EError,
    ProcessGroup,
    output_of,
    wait,
)
from tests.e2e.project import Project, leftover_processes
from tests.e2e.stack_assertions import StackAssertions
from tests.e2e.sv2_apps.apps import http
from tests.e2e.sv2_apps.config import Rendered, localise
from tests.support.constants import PROJECT, ROOT

STACK = "signet-chain"
# OP_TRUE: blocks need no signature. At 500000 H/s the translator's share difficulty is
# 500000 × 60 / 6 / 2^32 = 0.00116 ≥ the genesis difficulty 0.0011265: every share is a
# block (~5 M hashes, ~5 s at the probe's ~1 MH/s).
# Monitoring on: the PrometheusRule the alerts step evaluates is the one `pulumi up` stored.
CHAIN_SETTINGS: dict[str, Any] = {
    "signetChallenge": "51",
    "minIndividualMinerHashrate": 500000,
    "monitoringEnabled": True,
}
MINE_TIMEOUT = 120.0
# generatetoaddress spends maxtries over all blocks; a signet block needs ~4.8 M on average.
MAX_TRIES = "100000000"
CHANNEL_WAIT = 25.0  # the apps' monitoring cache refreshes every 15 s


class StepRunner(Protocol):
    """run.Runner: its project, its assertions, and its step() that prints and counts."""

    project: Project
    assertions: StackAssertions

    def step(self, stack: str, name: str) -> AbstractContextManager[list[str]]: ...


def subscribe(port: int, host: str = LOOPBACK) -> Session:
    """An SV1 connection held open (subscribed, authorized, with a job) that keeps the translator's
    channel."""
    session = Session(host, port, STARTUP, lambda _: None)
    reply = session.call("mining.subscribe", ["sv2-k8s-e2e/1"])
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
    _, accepted = accepted_block(chain, share["hash"], "the probe's", payout, signature)
    return [
        f"job on tip {tip[:16]}… (height {height})",
        f"share accepted after {result.hashes:,} hashes in {result.seconds:.1f} s "
        f"at difficulty {result.difficulty:.6g}",
        *accepted,
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
            chain.changes += chain.local.changes
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
            (rule,) = runner.assertions.items("prometheusrules", namespace)
            (group,) = rule["spec"]["groups"]
            kubelet = failures.Kubelet(chain)
            recorder = Recorder(
                chain,
                namespace,
                watched_names(group["rules"]),
                lambda: {**kubelet.restarts, "bitcoin-node": chain.container_restarts},
            )
            recorder.record("idle")
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
                recorder.record("busy")
        finally:
            if held:
                held.sock.close()
        with runner.step(STACK, "independent miner") as details:
            details += independent_miner.mine(chain, payout, signature)
        stage = {"idle": "idle"}
        for name, path in FAILURES.items():
            with runner.step(STACK, name) as details:
                details += path(chain, kubelet, functools.partial(_record, recorder, stage, name))
        with runner.step(STACK, "alerts") as details:
            details += evaluate(recorder, group, chain.root / "promtool", stage, "busy")
    finally:
        with runner.step(STACK, "teardown") as details:
            details += teardown(chain, project, up)


FAILURES = {
    "pool killed": failures.pool_killed,
    "sv2-tp killed": failures.tp_killed,
    "node restarted": failures.node_restarted,
    "node killed": failures.node_killed,
    "node FATAL": failures.node_fatal,
}


def _record(recorder: Recorder, stage: dict[str, str], step: str, moment: str) -> None:
    """A snapshot named after the step and the moment (the fault, or "recovered")."""
    name = step if moment != "recovered" else f"{step}, recovered"
    recorder.record(name)
    stage[name] = name


def _config(project: Project, key: str) -> str:
    outcome = project.run("config", "get", f"{PROJECT}:{key}", stack=STACK, check=False)
    return outcome.stdout.strip()
