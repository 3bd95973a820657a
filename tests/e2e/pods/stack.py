"""What the pods stage's steps share: the stack's names, the running stack (Pods), pod states."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components import image_contract
from sv1_probe.probe import ProbeResult, parse_url, probe
from tests.e2e.chain.check import MINE_TIMEOUT, previous
from tests.e2e.cluster.node_cluster import NodeCluster
from tests.e2e.images.engine import Docker
from tests.e2e.processes import E2EError, wait
from tests.e2e.project import Project
from tests.support.constants import PROJECT

STACK = "signet-pods"
NAMESPACE = "sv2-mining"
NODE_POD = "bitcoin-signet-0"
NODE_CONTAINER = "bitcoin-node"
CLAIM = f"chain-data-{NODE_POD}"
POD_COUNT = 4  # node, pool, two translators (translatorMinReplicas)
READY_TIMEOUT = 300.0
JOB_TIMEOUT = 120.0


@dataclass
class Pods:
    """What the steps share: the cluster, the engine, the project and the stack's address."""

    cluster: NodeCluster
    project: Project
    docker: Docker
    workdir: Path
    miners_url: str = ""

    @property
    def miners(self) -> tuple[str, int]:
        return parse_url(self.miners_url)

    def cli(self, *args: str) -> str:
        """bitcoin-cli in the node container, as node-probe runs it (kubectl exec)."""
        return self.cluster.exec(
            NAMESPACE,
            NODE_POD,
            "bitcoin-cli",
            f"-datadir={image_contract.DATA_DIR}",
            f"-conf={image_contract.BITCOIN_CONF_PATH}",
            *args,
            container=NODE_CONTAINER,
        ).strip()

    def cli_when_up(self, *args: str, timeout: float = 120) -> str:
        """bitcoin-cli once the node answers (after a restart its RPC takes a while: kubectl exec
        fails until then, or the container is not even there yet)."""

        def answer() -> str | None:
            try:
                return self.cli(*args) or None
            except E2EError:
                return None

        return wait(answer, timeout, f"the node's answer to {' '.join(args)}", interval=1)

    def pods(self, component: str = "", selector: str = "") -> list[dict[str, Any]]:
        """The namespace's pods not being deleted: of one component, or matching a label selector."""
        selector = selector or (f"app.kubernetes.io/name={component}" if component else "")
        chosen = [f"--selector={selector}"] if selector else []
        listed = self.cluster.kubectl("get", "pods", f"--namespace={NAMESPACE}", *chosen, "--output=json")
        return [p for p in json.loads(listed)["items"] if not p["metadata"].get("deletionTimestamp")]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return dict(
            json.loads(self.cluster.kubectl("get", kind, name, f"--namespace={NAMESPACE}", "--output=json"))
        )

    def config(self, key: str) -> str:
        return self.project.run("config", "get", f"{PROJECT}:{key}", stack=STACK).stdout.strip()


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def restarts(pod: dict[str, Any], container: str = "") -> int:
    statuses = pod.get("status", {}).get("containerStatuses", [])
    return sum(s.get("restartCount", 0) for s in statuses if not container or s["name"] == container)


def summary(pods: list[dict[str, Any]]) -> str:
    return ", ".join(
        f"{p['metadata']['name']} {'Ready' if is_ready(p) else p.get('status', {}).get('phase')}"
        + (f" ({restarts(p)} restarts)" if restarts(p) else "")
        for p in pods
    )


def all_ready(
    pods: Pods, *, selector: str = "", count: int = POD_COUNT, timeout: float = READY_TIMEOUT
) -> list[dict[str, Any]]:
    """Waits until exactly `count` pods (matching `selector`) are there and all Ready."""

    def ready() -> list[dict[str, Any]] | None:
        found = pods.pods(selector=selector)
        return found if len(found) == count and all(is_ready(p) for p in found) else None

    return wait(
        ready,
        timeout,
        f"{count} pods Ready in {NAMESPACE}" + (f" ({selector})" if selector else ""),
        interval=2,
        status=lambda: summary(pods.pods()),
    )


def job_at(url: str, timeout: float = JOB_TIMEOUT) -> tuple[float, str]:
    """Seconds until a new SV1 connection to `url` gets a job, and the previous hash of that job."""
    started = time.monotonic()

    def attempt() -> str | None:
        try:
            return previous(probe(url, timeout=5).job)
        except Exception:  # refused, reset, no job yet: a miner tries again
            return None

    prevhash = wait(attempt, timeout, f"a job at {url}", interval=1)
    return time.monotonic() - started, prevhash


def mine(pods: Pods) -> tuple[ProbeResult, str]:
    """The operator's probe mines through the load balancer until a share is accepted; every share
    is a block here (CHAIN_SETTINGS), which must become the node's tip. The result and its hash."""
    result = probe(pods.miners_url, mine=True, timeout=JOB_TIMEOUT, mine_timeout=MINE_TIMEOUT)
    assert result.share is not None  # probe() raises unless a share was accepted
    found = str(result.share["hash"])
    wait(
        lambda: pods.cli("getbestblockhash") == found or None,
        30,
        f"the probe's block {found} as the node's tip",
        interval=1,
        status=lambda: f"tip {pods.cli('getbestblockhash')}",
    )
    return result, found
