"""The template provider the sv2-apps checks run the pool against (check.py).

RealTp: for signet, the real Bitcoin Core and sv2-tp started as the chain stage does (the node
image's scripts under supervisord, tests/e2e/chain/node.py) on the stack's rendered bitcoin.conf,
sv2-tp.conf and TP key. A public-signet node at genesis is still in initial block download, and
sv2-tp serves templates there on signet only:
docs/upstream-behaviour.md#sv2-tp-serves-templates-during-initial-block-download-on-signet-only
FakeTp: fake-tp/ (a stand-in), where the real one cannot serve: testnet4 and mainnet, whose sv2-tp
serves nothing until its node has synced the network's chain (no network here), and signet when
the chain binaries are not built.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path
from types import TracebackType

import base58

from tests.e2e.chain.node import (
    Chain,
    binaries,
    rendered_stored,
    restart_tp_with_key,
    start_node,
)
from tests.e2e.processes import LOOPBACK, E2EError, Process, ProcessGroup, listening, wait
from tests.e2e.sv2_apps.apps import Apps
from tests.e2e.sv2_apps.config import Change, Local, Rendered
from tests.e2e.toolchain import binary

STARTUP = 15.0


class FakeTp:
    """fake-tp, a stand-in speaking Template Distribution over Noise with one template."""

    name = "fake-tp (stand-in)"

    def __init__(self, apps: Apps, rendered: Rendered, local: Local) -> None:
        self.apps, self.rendered, self.local = apps, rendered, local
        self.process: Process | None = None

    def serve(self, right_key: bool) -> str:
        if self.process:
            self.process.stop()
        public, secret = (
            (self.rendered.tp_public_key, self.rendered.tp_secret)
            if right_key
            else (self.rendered.pool_public_key, self.rendered.pool["authority_secret_key"])
        )
        argv: list[str | Path] = [binary("fake-tp"), f"{LOOPBACK}:{self.local.tp_port}", public, secret]
        self.process = self.apps.start("fake-tp", argv)
        self.process.wait_for("listening on", STARTUP)
        return f"fake-tp signing with {public[:10]}…"

    def saw_pool(self) -> str:
        tp = self.process
        assert tp is not None
        if not tp.grep("noise handshake completed"):
            raise E2EError("fake-tp saw no Noise handshake")
        for message in ("SetupConnection protocol=TemplateDistributionProtocol", "CoinbaseOutputConstraints"):
            tp.wait_for(message, STARTUP)
        return "fake-tp got SetupConnection + CoinbaseOutputConstraints"

    def kill(self) -> str:
        assert self.process is not None
        self.process.popen.kill()
        return "fake-tp killed"

    def __enter__(self) -> FakeTp:
        return self

    def __exit__(self, *_: object) -> None:
        return None


class RealTp:
    """Bitcoin Core and sv2-tp through the node image's scripts, on the stack's rendered configs."""

    name = "the real sv2-tp 1.0.5 on Bitcoin Core (30.x branch-off)"

    def __init__(self, rendered: Rendered, local: Local) -> None:
        self.rendered, self.local = rendered, local
        root = Path(tempfile.mkdtemp(prefix="sv2-tp-"))  # short: node.sock must fit in 108 bytes
        self.chain = Chain(root, ProcessGroup(root, grace=15), local=local)
        self.key = b""
        self.started: list[str] = []

    @staticmethod
    def available() -> bool:
        chain = ("bitcoin", "bitcoin-node", "bitcoin-cli", "sv2-tp", "supervisord")
        return all(os.access(binaries()[name], os.X_OK) for name in chain)

    def __enter__(self) -> RealTp:
        stored = rendered_stored(self.rendered.run.manifests())
        if not stored.bitcoin_conf.rstrip().rsplit("\n[", 1)[-1].startswith("signet]"):
            raise E2EError(f"bitcoin.conf does not end in its [signet] section:\n{stored.bitcoin_conf}")
        # The public signet has seeds: no peers, so that nothing leaves loopback.
        stored.bitcoin_conf = stored.bitcoin_conf.rstrip() + "\nconnect=0\n"
        self.chain.changes.append(
            Change("bitcoin.conf", "[signet] connect", None, 0, "no peers: loopback only")
        )
        self.key = stored.tp_key
        try:
            self.started = start_node(self.chain, stored)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.chain.group.stop()
        finally:
            if os.environ.get("SV2_E2E_KEEP_LOGS"):
                print(f"e2e: logs kept in {self.chain.root}")
            else:
                shutil.rmtree(self.chain.root, ignore_errors=True)

    def serve(self, right_key: bool) -> str:
        """sv2-tp restarted by supervisord with the stack's key or another valid one (the pool's)."""
        if right_key:
            key, expected = self.key, self.rendered.tp_public_key
        else:
            key = b"\x01" + base58.b58decode_check(self.rendered.pool["authority_secret_key"])
            expected = self.rendered.pool_public_key
        logged = restart_tp_with_key(self.chain, key)
        if logged != expected:
            raise E2EError(f"sv2-tp logs authority key {logged}, expected {expected}")
        return f"real sv2-tp restarted with the key file of {logged[:10]}…"

    def saw_pool(self) -> str:
        return "real sv2-tp (logs no client messages at info level)"

    def kill(self) -> str:
        pid = self.chain.pid("sv2-tp")
        if pid is None:
            raise E2EError(f"sv2-tp is not running: {self.chain.supervisorctl('status')}")
        os.kill(pid, signal.SIGKILL)
        port = self.local.tp_port
        node = self.chain.node
        wait(lambda: listening(port) or None, 30, "sv2-tp restarted by supervisord", [node] if node else [])
        return f"real sv2-tp (pid {pid}) SIGKILLed (supervisord restarted it)"
