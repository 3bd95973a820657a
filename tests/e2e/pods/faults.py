"""The pods stage's faults, each with what was observed (docs/operations.md#the-same-failures-as-pods):

pool deleted         while miners are connected: what the connected miner sees, and how long
                     until a miner has work again through the load balancer
translator rollout   `kubectl rollout restart`: the disruption budget holds throughout (Ready
                     translators never below minAvailable), and miners get work after it
node killed          bitcoin-node killed inside its container each time supervisord starts it,
                     until supervisord gives up: the container exits 1 and is restarted
node pod deleted     the StatefulSet brings the pod back on the same claim, the chain's height
                     intact
destroy and up       `pulumi destroy` keeps the chain-data claim (retainChainData), and the next
                     `pulumi up` re-attaches it with its blocks
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from components import workload
from sv1_probe.probe import ProbeError, Session
from tests.e2e.chain.check import subscribe
from tests.e2e.pods.stack import (
    CLAIM,
    NAMESPACE,
    NODE_CONTAINER,
    NODE_POD,
    STACK,
    Pods,
    all_ready,
    job_at,
    mine,
    restarts,
)
from tests.e2e.processes import E2EError, wait

# Kill bitcoin-node each time it is up, from inside the container (same user, no tools needed):
# supervisord counts a start that dies within startsecs as failed, and gives up after
# startretries of them (docker/bitcoin-node/supervisord.conf).
KILL_LOOP = (
    "end=$(($(date +%s) + 60)); while [ $(date +%s) -lt $end ]; do "
    'for d in /proc/[0-9]*; do [ "$(cat $d/comm 2>/dev/null)" = bitcoin-node ] && kill -9 ${d#/proc/}; done; '
    "sleep 0.2; done"
)


def what_the_miner_saw(session: Session, seconds: float) -> str:
    """Whether a held connection was closed within `seconds`, or still answers."""
    session.budget, session.deadline = seconds, time.monotonic() + seconds
    jobs = len(session.jobs)
    try:
        while True:
            session.pump("watching the held connection")
    except ProbeError as error:
        closed = "closed" in str(error) or "reset" in str(error)
        new = len(session.jobs) - jobs
        return f"held connection {'closed by the translator' if closed else 'still open'} ({new} new jobs)"
    finally:
        session.sock.close()


def pool_deleted(pods: Pods) -> list[str]:
    host, port = pods.miners
    session = subscribe(port, host)
    (pool,) = pods.pods(workload.POOL)
    before = {p["metadata"]["name"]: restarts(p) for p in pods.pods(workload.TRANSLATOR)}
    deleted = time.monotonic()
    pods.cluster.kubectl(
        "delete", "pod", pool["metadata"]["name"], f"--namespace={NAMESPACE}", "--wait=false"
    )
    seen = what_the_miner_saw(session, 20)
    job_at(pods.miners_url)
    after = time.monotonic() - deleted
    all_ready(pods)
    restarted = {
        name: restarts(p) - before.get(name, 0)
        for p in pods.pods(workload.TRANSLATOR)
        if (name := p["metadata"]["name"])
    }
    return [
        f"deleted {pool['metadata']['name']} with a miner connected: {seen}",
        f"a miner had work again {after:.0f} s after the delete",
        f"translator restarts {restarted}",
    ]


def translator_rollout(pods: Pods) -> list[str]:
    budget = pods.get("poddisruptionbudget", workload.TRANSLATOR)["spec"]
    replicas = int(pods.get("deployment", workload.TRANSLATOR)["spec"]["replicas"])
    # The program sets maxUnavailable (components/translator.py); minAvailable is the same bound.
    minimum = (
        int(budget["minAvailable"]) if "minAvailable" in budget else replicas - int(budget["maxUnavailable"])
    )
    pods.cluster.kubectl(
        "rollout", "restart", f"deployment/{workload.TRANSLATOR}", f"--namespace={NAMESPACE}"
    )
    lowest, started = 99, time.monotonic()

    def rolled() -> bool | None:
        nonlocal lowest
        deployment = pods.get("deployment", workload.TRANSLATOR)
        status = deployment.get("status", {})
        lowest = min(lowest, int(status.get("readyReplicas", 0)))
        done = (
            status.get("observedGeneration") == deployment["metadata"]["generation"]
            and status.get("updatedReplicas") == status.get("replicas") == status.get("readyReplicas")
            and not status.get("unavailableReplicas")
        )
        return done or None

    wait(rolled, 240, "the translator rollout to finish", interval=0.5)
    seconds, _ = job_at(pods.miners_url)
    if lowest < minimum:
        raise E2EError(
            f"Ready translators fell to {lowest} during the rollout, the budget's minAvailable is {minimum}"
        )
    return [
        f"rollout done in {time.monotonic() - started:.0f} s",
        f"Ready translators never below {lowest} (the budget allows {minimum} of {replicas})",
        f"a new miner got a job {seconds:.1f} s after it",
    ]


def node_killed(pods: Pods) -> list[str]:
    node = pods.get("pod", NODE_POD)
    before, height = restarts(node, NODE_CONTAINER), pods.cli("getblockcount")
    started = time.monotonic()
    # The exec ends with the container (its processes die with it): its exit status says nothing.
    pods.cluster.kubectl(
        "exec",
        f"--namespace={NAMESPACE}",
        NODE_POD,
        f"--container={NODE_CONTAINER}",
        "--",
        "sh",
        "-c",
        KILL_LOOP,
        check=False,
    )
    wait(
        lambda: restarts(pods.get("pod", NODE_POD), NODE_CONTAINER) > before or None,
        120,
        f"{NODE_POD}'s {NODE_CONTAINER} container to restart",
        interval=1,
    )
    status = next(
        s for s in pods.get("pod", NODE_POD)["status"]["containerStatuses"] if s["name"] == NODE_CONTAINER
    )
    ended = status.get("lastState", {}).get("terminated", {})
    if ended.get("exitCode") != 1:
        raise E2EError(f"the node container's last run ended {json.dumps(ended)}, not with exit code 1")
    previous = pods.cluster.logs(NAMESPACE, NODE_POD, NODE_CONTAINER, previous=True)
    fatal = [line.strip()[:140] for line in previous.splitlines() if "run-supervisord" in line]
    if not fatal:
        raise E2EError("the node container's last log has no run-supervisord line saying why it exited")
    restarted = time.monotonic() - started
    after = pods.cli_when_up("getblockcount")
    details = [
        f"container exited {ended['exitCode']} ({ended.get('reason', '')}) and was restarted "
        f"{restarted:.0f} s after the first kill",
        fatal[-1],
        f"height {height} before the kills, {after} after the restart",
    ]
    if int(after) < int(height):
        # SIGKILL loses the blocks not yet flushed; a private signet has no peer to give them
        # back (docs/operations.md#the-same-failures-as-pods): the stage mines on.
        _, found = mine(pods)
        details.append(
            f"SIGKILL lost {int(height) - int(after)} unflushed block(s); mined {found[:16]}… again"
        )
    all_ready(pods)
    details.append(f"every pod Ready {time.monotonic() - started:.0f} s after the first kill")
    return details


def node_pod_deleted(pods: Pods) -> list[str]:
    height, tip = pods.cli("getblockcount"), pods.cli("getbestblockhash")
    claim = pods.get("persistentvolumeclaim", CLAIM)["metadata"]["uid"]
    started = time.monotonic()
    pods.cluster.kubectl(
        "delete", "pod", NODE_POD, f"--namespace={NAMESPACE}", "--wait=true", "--timeout=700s"
    )
    all_ready(pods)
    again = time.monotonic() - started
    return [*same_chain(pods, height, tip, claim), f"Ready again {again:.0f} s after the delete"]


def destroy_and_up(pods: Pods) -> list[str]:
    height, tip = pods.cli("getblockcount"), pods.cli("getbestblockhash")
    claim = pods.get("persistentvolumeclaim", CLAIM)["metadata"]["uid"]
    destroyed = pods.project.destroy(STACK)
    kept = pods.get("persistentvolumeclaim", CLAIM)["metadata"]["uid"]
    if kept != claim:
        raise E2EError(f"after destroy the claim {CLAIM} is {kept}, was {claim}")
    again = pods.project.up(STACK)
    all_ready(pods)
    return [
        f"destroy {destroyed.seconds:.0f} s kept claim {CLAIM}",
        f"up {again.seconds:.0f} s",
        *same_chain(pods, height, tip, claim),
    ]


def same_chain(pods: Pods, height: str, tip: str, claim: str) -> list[str]:
    now = pods.get("persistentvolumeclaim", CLAIM)["metadata"]["uid"]
    if now != claim:
        raise E2EError(f"the claim {CLAIM} is now {now}, was {claim}")
    again = pods.cli_when_up("getbestblockhash")
    if (pods.cli("getblockcount"), again) != (height, tip):
        raise E2EError(f"the chain is at {pods.cli('getblockcount')} {again}, was {height} {tip}")
    return [f"same claim {claim[:8]}…", f"chain intact at height {height} ({tip[:16]}…)"]


FAULTS: tuple[tuple[str, Callable[[Pods], list[str]]], ...] = (
    ("pool deleted", pool_deleted),
    ("translator rollout", translator_rollout),
    ("node pod deleted", node_pod_deleted),
    ("destroy and up", destroy_and_up),
    ("node killed", node_killed),
)
