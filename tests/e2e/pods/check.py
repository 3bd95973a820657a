"""make e2e, stage "pods": a private-signet stack's pods really run, and mine through the
LoadBalancer address (docs/testing.md#stage-pods).

    cluster    the node cluster (cluster/node_cluster.py): API server, scheduler, containerd,
               kubelet, kube-proxy, a local registry, the load-balancer and storage stand-ins;
               and a private Docker engine (images/engine.py) that may push to that registry
    images     the pool and translator STAND-INS built from the cached crates on the base
               STAND-IN for debian:bookworm-slim, pushed to the local registry
    up         `pulumi up` builds the node image itself (pulumi-docker: docker/bitcoin-node in its
               air-gapped mode, the chain built here staged in releases/) and pushes it; the
               chain-data claim binds the storage stand-in
    ready      every pod Ready under the namespace's `restricted` level, both node processes
               RUNNING under supervisord, the pool connected to sv2-tp through its Service and
               the translators to the pool through its Service
    first job  the operator's probe at `pulumi stack output minersUrl` (the load balancer's
               address) gets a job on the node's tip: the time from the start of `pulumi up`
    block      the probe mines a block through that address; the node accepts it as its tip,
               its coinbase paying payoutAddress
    Then the pod-level faults (faults.py), destroy, and the node cluster's teardown, which fails the
    stage on any process, mount, interface, iptables rule or sysctl left behind.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from components import image_contract, workload
from tests.e2e.chain.check import CHAIN_SETTINGS
from tests.e2e.chain.node import Stored, read_stored
from tests.e2e.cluster.connect import Kube
from tests.e2e.cluster.node_cluster import NodeCluster
from tests.e2e.images import builds
from tests.e2e.images.engine import docker_engine
from tests.e2e.pods import faults
from tests.e2e.pods.network_policies import forbidden_flow_refused
from tests.e2e.pods.stack import (
    CLAIM,
    NAMESPACE,
    NODE_CONTAINER,
    NODE_POD,
    READY_TIMEOUT,
    STACK,
    Pods,
    all_ready,
    job_at,
    mine,
    summary,
)
from tests.e2e.processes import E2EError, wait
from tests.e2e.project import Project
from tests.e2e.stack_assertions import StackAssertions
from tests.support.constants import ROOT


class StepRunner(Protocol):
    """run.Runner: its project, its assertions, its counts and its step() that prints and counts."""

    project: Project
    assertions: StackAssertions
    passed: int
    failed: int

    def step(self, stack: str, name: str) -> AbstractContextManager[list[str]]: ...


def stack_settings(
    registry: str, base: str, apps: dict[str, str], releases: builds.ChainReleases
) -> dict[str, Any]:
    """The committed signet stack plus what this stage changes (printed by `up`)."""
    return {
        **CHAIN_SETTINGS,
        # Its exporter sidecar's image (Docker Hub) cannot be fetched or built here.
        "monitoringEnabled": False,
        "nodeImageRepository": f"{registry}/sv2/bitcoin-node",
        "nodePlatform": builds.machine_arch(),
        "nodeBuild": releases.node_build_config(base),
        "poolImage": apps["pool_sv2"],
        "translatorImage": apps["translator_sv2"],
    }


def images(pods: Pods) -> tuple[str, dict[str, str], list[str]]:
    """The base imported, the pool and translator stand-ins built and pushed."""
    base = builds.import_base(pods.docker)
    pushed: dict[str, str] = {}
    details = [f"base {base} (STAND-IN for debian:bookworm-slim)"]
    for app in builds.SV2_APPS:
        build = builds.build_sv2_app_image(pods.docker, app, base, pods.workdir).require_success()
        pushed[app] = builds.push(pods.docker, build.tag, pods.cluster.registry)
        details.append(f"{app} STAND-IN built in {build.seconds:.0f} s, pushed as {pushed[app]}")
    return base, pushed, details


def up(
    pods: Pods, base: str, apps: dict[str, str], releases: builds.ChainReleases
) -> tuple[float, list[str]]:
    """`pulumi up`, building the node image from the project copy's docker/bitcoin-node (the
    releases staged there); returns when it started (for the time to the first job) and details."""
    project, cluster = pods.project, pods.cluster
    settings = stack_settings(cluster.registry, base, apps, releases)
    project.init_stack(STACK, ROOT / "Pulumi.signet.yaml", settings)
    cluster.volume_for_claim(NAMESPACE, CLAIM, size="30Gi", owner_uid=image_contract.UID)
    started = time.monotonic()
    outcome = project.up(STACK)
    pods.miners_url = project.run("stack", "output", "minersUrl", stack=STACK).stdout.strip()
    node_image = project.run("stack", "output", "nodeImage", stack=STACK).stdout.strip()
    if not node_image.startswith(f"{cluster.registry}/"):
        raise E2EError(f"the node image {node_image} is not in the local registry {cluster.registry}")
    return started, [
        f"pulumi up {outcome.seconds:.0f} s, {len(project.state(STACK))} resources",
        f"pulumi-docker built and pushed {node_image}",
        f"nodeBuild {json.dumps(settings['nodeBuild'])} (the chain built here, staged in releases/)",
        f"images {apps['pool_sv2']}, {apps['translator_sv2']}",
        f"claim {NAMESPACE}/{CLAIM} on the hostPath storage STAND-IN",
        f"minersUrl {pods.miners_url}",
    ]


def ready(pods: Pods, stored: Stored) -> list[str]:
    """The pool and translators Ready, both node processes running. The node itself is Ready only
    once out of initial block download, which a private signet leaves at its first block: until
    then the template provider's Service routes to it unready (README, "A signet that can mine")."""
    found = all_ready(
        pods, selector=f"app.kubernetes.io/name in ({workload.POOL},{workload.TRANSLATOR})", count=3
    )
    level = pods.get("namespace", NAMESPACE)["metadata"]["labels"].get("pod-security.kubernetes.io/enforce")
    if level != "restricted":
        raise E2EError(f"namespace {NAMESPACE} enforces {level!r}, not restricted")
    status = wait(
        lambda: supervised(pods),
        READY_TIMEOUT,
        f"bitcoin-node and sv2-tp RUNNING in {NODE_POD}",
        interval=2,
        status=lambda: summary(pods.pods()),
    )
    tp_ip = pods.get("service", "bitcoin-signet-tp")["spec"]["clusterIP"]
    pool_ip = pods.get("service", workload.POOL)["spec"]["clusterIP"]
    pool, translator = json.dumps(stored.pool), json.dumps(stored.translator)
    if f'"{tp_ip}:' not in pool or f'"{pool_ip}"' not in translator:
        raise E2EError(f"the stored configs do not dial the Services' addresses (TP {tp_ip}, pool {pool_ip})")
    return [
        summary(found),
        f"namespace enforces {level}",
        f"supervisord in {NODE_POD}: {status}",
        f"pool dials sv2-tp at its Service {tp_ip}, translators the pool at its Service {pool_ip}",
    ]


def supervised(pods: Pods) -> str | None:
    """supervisorctl's lines for both programs when both are RUNNING, else None."""
    status = pods.cluster.kubectl(
        "exec",
        f"--namespace={NAMESPACE}",
        NODE_POD,
        f"--container={NODE_CONTAINER}",
        "--",
        "supervisorctl",
        "status",
        check=False,
    )
    running = [n for n in ("bitcoin-node", "sv2-tp") if re.search(rf"^{n}\s+RUNNING", status, re.MULTILINE)]
    return "bitcoin-node RUNNING, sv2-tp RUNNING" if len(running) == 2 else None


def first_job(pods: Pods, up_started: float) -> list[str]:
    probing, prevhash = job_at(pods.miners_url)
    tip = pods.cli("getbestblockhash")
    if prevhash != tip:
        raise E2EError(f"the job at {pods.miners_url} builds on {prevhash}, the node's tip is {tip}")
    return [
        f"{time.monotonic() - up_started:.0f} s from the start of pulumi up to the first job at the probe",
        f"job on the node's tip {tip[:16]}… through the load balancer's address {pods.miners_url}"
        f" ({probing:.0f} s of probing after Ready)",
    ]


def block(pods: Pods) -> list[str]:
    payout = pods.config("payoutAddress")
    result, found = mine(pods)
    coinbase = json.loads(pods.cli("getblock", found, "2"))["tx"][0]
    paid = coinbase["vout"][0]["scriptPubKey"].get("address")
    if paid != payout:
        raise E2EError(f"the coinbase of {found} pays {paid}, payoutAddress is {payout}")
    found_ready = all_ready(pods)
    return [
        f"share accepted after {result.hashes:,} hashes in {result.seconds:.1f} s",
        f"block {found[:16]}… is the node's tip at height {pods.cli('getblockcount')}",
        f"coinbase pays {coinbase['vout'][0]['value']} to {paid}",
        f"out of initial block download, every pod Ready: {summary(found_ready)}",
    ]


def steps(runner: StepRunner, pods: Pods) -> None:
    """The stage's steps in order; a failing step raises after reporting itself."""
    with runner.step(STACK, "images") as details:
        base, apps, found = images(pods)
        details += found
    # Staged for the whole stage: every `pulumi up` that (re)creates the image builds from them.
    with builds.staged_releases(pods.project.dir / image_contract.BUILD_CONTEXT) as releases:
        stack(runner, pods, base, apps, releases)


def stack(
    runner: StepRunner, pods: Pods, base: str, apps: dict[str, str], releases: builds.ChainReleases
) -> None:
    """The stack's steps, from `up` to `destroy`."""
    stack_made = False
    try:
        with runner.step(STACK, "up") as details:
            stack_made = True
            up_started, found = up(pods, base, apps, releases)
            details += found
        with runner.step(STACK, "ready") as details:
            details += ready(pods, read_stored(runner.assertions, NAMESPACE))
        with runner.step(STACK, "first job") as details:
            details += first_job(pods, up_started)
        with runner.step(STACK, "block") as details:
            details += block(pods)
        with runner.step(STACK, "network policies") as details:
            details += forbidden_flow_refused(pods.cluster, NAMESPACE)
        for name, fault in faults.FAULTS:
            with runner.step(STACK, name) as details:
                details += fault(pods)
    finally:
        if stack_made:
            with runner.step(STACK, "destroy") as details:
                details.append(f"{pods.project.destroy(STACK).seconds:.0f} s")


def check(
    make_runner: Callable[[Project, Kube], StepRunner], report: Callable[[str], None]
) -> tuple[int, int]:
    """The stage: (steps passed, steps failed). Everything started is stopped whatever fails; the
    node cluster's teardown then fails the stage if anything of it is left on the host."""
    workdir = Path(tempfile.mkdtemp(prefix="sv2-e2e-pods-"))
    started = time.monotonic()
    cluster = NodeCluster(workdir / "cluster")
    passed = failed = 0
    try:
        with cluster, docker_engine(workdir / "docker", insecure_registry=cluster.registry) as docker:
            report(f"e2e {STACK} cluster: ok ({cluster.describe()}; Docker engine at {docker.host})")
            passed += 1
            project = Project({**cluster.env, "DOCKER_HOST": docker.host})
            runner = make_runner(project, cluster)
            try:
                steps(runner, Pods(cluster, project, docker, workdir))
            except AssertionError:  # the failing step has reported itself
                pass
            finally:
                project.close()
                passed, failed = passed + runner.passed, failed + runner.failed
    except Exception as error:  # the cluster or the engine failed to start, or left something
        what = "host restored" if passed else "cluster"
        report(f"e2e {STACK} {what}: FAILED ({time.monotonic() - started:.1f} s)\n  {error}")
        return passed, failed + 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(f"e2e {STACK} host restored: ok (no process, mount, interface, iptables rule or sysctl left)")
    return passed + 1, failed
