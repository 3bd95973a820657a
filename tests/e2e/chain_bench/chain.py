"""The chain make bench-chain measures: a private-signet stack's configs as the program renders them
(the mock engine, as `make render`: the data plane does not depend on how the configs reached
the API server), the node and sv2-tp through the image's scripts under supervisord, the pool and
any number of translator replicas — all started by the chain stage's own code
(tests/e2e/chain/node.py), on loopback."""

from __future__ import annotations

import base64
import copy
import dataclasses
import http.client
import json
import os
import tomllib
from pathlib import Path
from typing import Any

from tests.e2e.chain.node import Chain, Stored, start_apps, start_node
from tests.e2e.chain_bench.stats import children
from tests.e2e.processes import LOOPBACK, E2EError, Process, ProcessGroup, free_port
from tests.e2e.sv2_apps.config import Rendered, localise
from tests.support.harness import run_stack

# OP_TRUE: blocks need no signature, so the bench makes its own with generatetoaddress.
STACK_SETTINGS = {"signetChallenge": "51"}
MAX_TRIES = 100_000_000  # one budget for all blocks of a call; a block needs ~4.8 M on average


def rendered_stored(settings: dict[str, Any]) -> tuple[Stored, Any]:
    run = run_stack("signet", {**STACK_SETTINGS, **settings})
    if run.error is not None:
        raise E2EError(f"the program failed under the mock engine: {run.error}")
    manifests = run.manifests()
    names: list[str] = []

    def one(key: str) -> bytes:
        found = [
            (m, part)
            for m in manifests
            for part in ("data", "stringData")
            if m["kind"] in ("Secret", "ConfigMap") and key in (m.get(part) or {})
        ]
        if len(found) != 1:
            raise E2EError(f"{len(found)} rendered objects hold {key}, expected 1")
        manifest, part = found[0]
        names.append(f"{manifest['kind']} {manifest['metadata']['name']}[{key}]")
        value = str(manifest[part][key])
        return base64.b64decode(value) if manifest["kind"] == "Secret" and part == "data" else value.encode()

    stored = Stored(
        one("bitcoin.conf").decode(),
        one("sv2-tp.conf").decode(),
        one("sv2_authority_key"),
        tomllib.loads(one("pool.toml").decode()),
        tomllib.loads(one("translator.toml").decode()),
        "signet",
        names,
    )
    return stored, run


def start_chain(root: Path, settings: dict[str, Any]) -> Chain:
    """Node and sv2-tp (image scripts, supervisord), then nothing else: the caller starts the pool."""
    stored, run = rendered_stored(settings)
    local = localise(Rendered("signet", run, stored.pool, stored.translator, ""))
    chain = Chain(root, ProcessGroup(root, grace=15), stored, local)
    chain.changes += [
        dataclasses.replace(c, why=c.why.replace("fake-tp", "sv2-tp's loopback port")) for c in local.changes
    ]
    start_node(chain, stored)
    return chain


def start_translator(
    chain: Chain, replica: int, ports: tuple[int, str] | None = None
) -> tuple[Process, int, str]:
    """A translator on the rendered TOML; replica 0 on the localised ports, any other on
    `ports` (SV1 port, metrics address) or fresh ones. Returns it, its SV1 port and metrics address."""
    local = chain.local
    assert local is not None
    table = copy.deepcopy(local.translator)
    if replica:
        table["downstream_port"], table["monitoring_address"] = ports or (
            free_port(),
            f"{LOOPBACK}:{free_port()}",
        )
    copy_ = dataclasses.replace(chain, local=dataclasses.replace(local, translator=table))
    start_apps(copy_, "translator")
    assert copy_.translator is not None
    return copy_.translator, int(table["downstream_port"]), str(table["monitoring_address"])


def node_pids(chain: Chain) -> dict[str, int]:
    """bitcoin-node and sv2-tp, the children of the image's supervisord."""
    assert chain.node is not None
    found = children(chain.node.pid)
    missing = {"bitcoin-node", "sv2-tp"} - found.keys()
    if missing:
        raise E2EError(f"supervisord ({chain.node.pid}) has no child {sorted(missing)}: {sorted(found)}")
    return {"bitcoin-node": found["bitcoin-node"], "sv2-tp": found["sv2-tp"]}


def threads(pid: int) -> list[int]:
    return [int(task) for task in os.listdir(f"/proc/{pid}/task")]


class Rpc:
    """JSON-RPC to the node over one kept-alive HTTP connection, authenticated by its cookie."""

    def __init__(self, chain: Chain) -> None:
        conf = (chain.root / "etc" / "bitcoin.conf").read_text()
        port = next(line.split("=", 1)[1] for line in conf.splitlines() if line.startswith("rpcport="))
        cookie = (chain.root / "data" / "signet" / ".cookie").read_text().strip()
        self.auth = "Basic " + base64.b64encode(cookie.encode()).decode()
        self.http = http.client.HTTPConnection(LOOPBACK, int(port), timeout=300)

    def __call__(self, method: str, *params: object) -> Any:
        body = json.dumps({"jsonrpc": "1.0", "id": method, "method": method, "params": list(params)})
        headers = {"Authorization": self.auth, "Content-Type": "application/json"}
        try:
            self.http.request("POST", "/", body, headers)
            answer = self.http.getresponse().read()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            self.http.close()  # the node closes a connection idle for its -rpcservertimeout (30 s)
            self.http.request("POST", "/", body, headers)
            answer = self.http.getresponse().read()
        reply = json.loads(answer)
        if reply.get("error"):
            raise E2EError(f"{method}: {reply['error']}")
        return reply["result"]

    def mine(self, address: str) -> str:
        (block,) = self("generatetoaddress", 1, address, MAX_TRIES)
        return str(block)

    def close(self) -> None:
        self.http.close()
