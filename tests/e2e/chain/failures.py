"""The chain stage's failure paths (check.py), with the real processes: what each one does when
another goes away, checked against what the deployment assumes of it.

    pool killed     SIGKILL with an SV1 miner connected: the translator must exit (so that its
                    restart brings it back) and the miner must be disconnected
    sv2-tp killed   supervisord restarts sv2-tp; the pool must exit, the translator after it
    node restarted  `bitcoin-cli stop`: supervisord restarts the node and follow-node replaces
                    sv2-tp (which never reconnects); the pool must exit; the chain is kept
    node killed     SIGKILL: the same, and what the chain looks like afterwards
    node FATAL      killed at every start: after STARTRETRIES the container exits 1; then a
                    container restart on the same volume brings everything back

No kubelet runs here: pool and translator are restarted by `Kubelet` below, which restarts an
exited container as a Deployment's kubelet does (restartPolicy Always, whatever the exit code):
the first restart at once, then after 10 s, 20 s, ... (CrashLoopBackOff). Each step starts with
a fresh back-off; in a cluster it carries over between failures less than 10 minutes apart.
Each step ends when a new SV1 miner gets a job on the node's tip (recovered).
docs/operations.md#what-an-operator-sees-when-a-part-fails
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sv1_probe.probe import ProbeError, Session, prevhash_bytes, probe
from tests.e2e.chain.node import Chain, launch_app, run_container
from tests.e2e.processes import LOOPBACK, E2EError, Process, listening

KUBELET_BACKOFF = (0.0, 10.0, 20.0, 40.0, 80.0)  # seconds before the 1st, 2nd, ... restart
RECOVERY = 120.0  # seconds for a miner to have work again
EXIT_WAIT = 40.0  # seconds for a process to exit after what it depends on went away
STARTRETRIES = 3  # entrypoint.sh's default: failed starts in a row after the first


@dataclass
class Kubelet:
    """Restarts pool and translator when they exit, with the kubelet's back-off, until a new SV1
    miner gets a job on the node's tip; `restarts` counts them (kube-state-metrics would)."""

    chain: Chain
    restarts: dict[str, int] = field(default_factory=lambda: {"pool": 0, "translator": 0})

    def recover(
        self,
        since: float,
        record: Callable[[str], None] | None = None,
        milestones: dict[str, Callable[[], bool]] | None = None,
    ) -> str:
        """Runs from the failure on; also notes when each of `milestones` first held."""
        local = self.chain.local
        assert local is not None
        started: dict[str, list[str]] = {"pool": [], "translator": []}
        due: dict[str, float] = {}
        pending, reached = dict(milestones or {}), {}
        deadline = time.monotonic() + RECOVERY
        tried = ""
        while time.monotonic() < deadline:
            for name, check in list(pending.items()):
                if check():
                    reached[name] = time.monotonic() - since
                    del pending[name]
            for which in ("pool", "translator"):
                process = self.chain.pool if which == "pool" else self.chain.translator
                if process is not None and process.exit_code is None:
                    continue
                now = time.monotonic()
                backoff = KUBELET_BACKOFF[min(len(started[which]), len(KUBELET_BACKOFF) - 1)]
                if now >= due.setdefault(which, now + backoff):
                    del due[which]
                    code = process.exit_code if process else None
                    launch_app(self.chain, which)
                    started[which].append(f"+{now - since:.1f} s (had exited {code})")
                    self.restarts[which] += 1
            tip, tried = self._work(local.sv1_port, tried)
            if tip and not pending:
                if record:
                    record("recovered")
                restarts = "; ".join(
                    f"{which} restarted at {', '.join(times)}" for which, times in started.items() if times
                )
                marks = "".join(f"{name} at +{at:.1f} s; " for name, at in reached.items())
                return (
                    f"{marks}{restarts or 'nothing restarted'}; a new miner's job is on the tip "
                    f"{tip[:16]}… {time.monotonic() - since:.1f} s after the failure"
                )
            time.sleep(0.2)
        raise E2EError(
            f"no miner had work {RECOVERY:g} s after the failure ({tried}); restarts {started}; "
            f"never seen: {list(pending)}"
        )

    def _work(self, port: int, tried: str) -> tuple[str | None, str]:
        """The tip a new SV1 miner's job builds on, if it is the node's tip; else why not."""
        if not listening(port):
            return None, tried
        try:
            job = probe(f"stratum+tcp://{LOOPBACK}:{port}", timeout=5).job
            tip = self.chain.cli("getbestblockhash", timeout=10)
        except (ProbeError, E2EError) as error:
            return None, str(error)
        previous = prevhash_bytes(job.prevhash)[::-1].hex()
        return (tip, "") if previous == tip else (None, f"job on {previous[:16]}…, tip {tip[:16]}…")


def exited(process: Process | None, since: float, what: str) -> tuple[int, float]:
    """Its exit code and when, or E2EError saying that it stayed up (nothing would restart it)."""
    assert process is not None
    try:
        code = process.wait_exit(EXIT_WAIT)
    except E2EError as error:
        raise E2EError(f"{process.name} stayed up after {what}: nothing restarts it ({error})") from None
    return code, time.monotonic() - since


def disconnected(session: Session, timeout: float = 10.0) -> float:
    """Seconds until the server closed this SV1 connection."""
    started = time.monotonic()
    session.budget, session.deadline = timeout, started + timeout
    try:
        while True:
            session.pump("waiting for the translator to close the connection")
    except ProbeError as error:
        if "closed" in str(error) or "lost" in str(error):
            return time.monotonic() - started
        raise E2EError(f"the SV1 miner stayed connected: {error}") from None


def pool_killed(chain: Chain, kubelet: Kubelet, record: Callable[[str], None]) -> list[str]:
    local, pool = chain.local, chain.pool
    assert local is not None and pool is not None
    held = Session(LOOPBACK, local.sv1_port, 15, lambda _: None)
    try:
        held.call("mining.subscribe", ["sv2-k8s-e2e-chain/1"])
        held.call("mining.authorize", ["e2e-held", "x"])
        while not held.jobs:
            held.pump("waiting for the first mining.notify")
        since = time.monotonic()
        pool.popen.kill()
        code, after = exited(chain.translator, since, "its pool was killed")
        closed = disconnected(held)
    finally:
        held.sock.close()
    record("pool killed")
    return [
        f"pool SIGKILLed with an SV1 miner connected: translator exited {code} after {after:.2f} s, "
        f"the miner's connection closed {closed:.2f} s later",
        kubelet.recover(since, record),
    ]


def tp_killed(chain: Chain, kubelet: Kubelet, record: Callable[[str], None]) -> list[str]:
    old = chain.pid("sv2-tp")
    if old is None:
        raise E2EError(f"supervisord runs no sv2-tp: {chain.supervisorctl('status')}")
    since = time.monotonic()
    os.kill(old, signal.SIGKILL)
    pool_code, pool_after = exited(chain.pool, since, "sv2-tp was killed")
    translator_code, translator_after = exited(chain.translator, since, "its pool exited")
    record("sv2-tp killed")
    recovered = kubelet.recover(since, record, {"sv2-tp restarted by supervisord": _tp_replaced(chain, old)})
    return [
        f"sv2-tp (pid {old}) SIGKILLed: pool exited {pool_code} after {pool_after:.2f} s, translator "
        f"{translator_code} after {translator_after:.2f} s",
        recovered,
    ]


def _tp_replaced(chain: Chain, old: int) -> Callable[[], bool]:
    """sv2-tp runs with another pid than `old` and listens (supervisord or follow-node restarted it)."""
    port = chain.local.tp_port if chain.local else 0
    return lambda: chain.pid("sv2-tp") not in (None, old) and listening(port)


def _node_events(chain: Chain, seen: int) -> str:
    """supervisord's and follow-node's lines about the node and sv2-tp since line `seen`."""
    node = chain.node
    assert node is not None
    log = node.lines()[seen:]
    if any("FATAL" in line for line in log):
        raise E2EError(f"a program reached FATAL on one node exit: {node.tail(8)}")
    pattern = r"(exited|stopped|spawned): '?(bitcoin-node|sv2-tp)|follow-node: bitcoin-node is"
    return ", ".join(
        re.sub(r"^\S+ \S+ \w+ |^follow-node: ", "", line).split(" with pid")[0]
        for line in log
        if re.search(pattern, line)
    )


def node_restarted(chain: Chain, kubelet: Kubelet, record: Callable[[str], None]) -> list[str]:
    node = chain.node
    assert node is not None
    tip, height = chain.cli("getbestblockhash"), chain.cli("getblockcount")
    old_tp, seen = chain.pid("sv2-tp"), len(node.lines())
    assert old_tp is not None
    since = time.monotonic()
    chain.cli("stop")
    pool_code, pool_after = exited(chain.pool, since, "the node stopped")
    record("node restarted")
    recovered = kubelet.recover(since, record, {"sv2-tp replaced": _tp_replaced(chain, old_tp)})
    after = chain.cli("getblockcount")
    if chain.cli("getbestblockhash") != tip:
        raise E2EError(f"a clean restart changed the tip: {tip} at {height} → height {after}")
    return [
        f"bitcoin-cli stop: pool exited {pool_code} after {pool_after:.1f} s; {_node_events(chain, seen)}",
        f"{recovered}; the tip is kept (height {after})",
    ]


def node_killed(chain: Chain, kubelet: Kubelet, record: Callable[[str], None]) -> list[str]:
    node = chain.node
    assert node is not None
    height = chain.cli("getblockcount")
    old_node, old_tp, seen = chain.pid("bitcoin-node"), chain.pid("sv2-tp"), len(node.lines())
    assert old_node is not None and old_tp is not None
    since = time.monotonic()
    os.kill(old_node, signal.SIGKILL)
    pool_code, pool_after = exited(chain.pool, since, "the node was killed")
    record("node killed")
    recovered = kubelet.recover(since, record, {"sv2-tp replaced": _tp_replaced(chain, old_tp)})
    return [
        f"bitcoin-node SIGKILLed: pool exited {pool_code} after {pool_after:.1f} s; "
        f"{_node_events(chain, seen)}",
        f"{recovered}; height {height} before, {chain.cli('getblockcount')} after",
    ]


def node_fatal(chain: Chain, kubelet: Kubelet, record: Callable[[str], None]) -> list[str]:
    """The node killed at every start, within its startsecs, until supervisord gives up."""
    node = chain.node
    assert node is not None
    first = chain.pid("bitcoin-node")
    assert first is not None
    seen = len(node.lines())
    since = time.monotonic()
    os.kill(first, signal.SIGKILL)
    killed: list[int] = [first]
    while node.exit_code is None and time.monotonic() - since < 60:
        text = "\n".join(node.lines()[seen:])
        for pid in map(int, re.findall(r"spawned: 'bitcoin-node' with pid (\d+)", text)):
            if pid not in killed:
                killed.append(pid)
                with contextlib.suppress(ProcessLookupError):  # it may have failed on its own
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    code = node.wait_exit(60)
    down = time.monotonic() - since
    log = node.lines()[seen:]
    gave_up = [line for line in log if "gave up: bitcoin-node entered FATAL" in line]
    # Anywhere in its log: written to the first file offset when the log is a file, not a pipe.
    said = node.grep(r"run-supervisord: exiting 1 because bitcoin-node reached FATAL")
    if code != 1 or not gave_up or not said or len(killed) != STARTRETRIES + 2:
        raise E2EError(
            f"supervisord exit {code} after {len(killed)} kills, FATAL seen: {bool(gave_up)}: {node.tail(6)}"
        )
    record("node FATAL")
    pool_code, _ = exited(chain.pool, since, "the node container exited")
    restarted = time.monotonic()
    run_container(chain)  # the kubelet restarts the container (first restart at once)
    return [
        f"bitcoin-node killed while RUNNING, then at each of its {len(killed) - 1} restarts within "
        f"startsecs: FATAL, supervisord exit {code} {down:.1f} s after the first kill "
        f"({said[0].strip()}); pool exited {pool_code}",
        "container restarted on the same volume: "
        + kubelet.recover(restarted, record, {"sv2-tp listening": _tp_replaced(chain, 0)}),
    ]
