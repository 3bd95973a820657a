"""The sv2 apps on loopback for check.py: each run in a scratch folder, and the clients that talk to
them (HTTP monitoring API, SV1 miners).

Every process started through Apps is ended when the Apps context closes (SIGINT, what pool and
translator shut down on, then SIGKILL), failures included; see tests/e2e/processes.py.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import tomli_w

from tests.e2e.processes import LOOPBACK, E2EError, Process, ProcessGroup

STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")


def seconds_between(lines: list[str]) -> list[float]:
    """Gaps between the tracing timestamps that start log lines."""
    stamps = [datetime.fromisoformat(m.group(1)) for line in lines if (m := STAMP.match(line))]
    return [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]


class Apps:
    """Starts processes in a scratch dir and ends every one of them on exit, failure included."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sv2-apps-e2e-"))
        self.group = ProcessGroup(self.dir, stop_signal=signal.SIGINT, grace=8)

    def __enter__(self) -> Apps:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.group.stop()
        finally:
            if os.environ.get("SV2_E2E_KEEP_LOGS"):
                print(f"e2e: logs kept in {self.dir}")
            else:
                shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, name: str, argv: list[str | Path]) -> Process:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUST_LOG": "debug", "NO_COLOR": "1"}
        return self.group.start(name, argv, env)

    def config(self, name: str, table: dict[str, Any]) -> Path:
        path = self.dir / f"{len(self.group.processes):02d}-{name}"
        path.write_text(tomli_w.dumps(table))
        return path


def http(address: str, path: str, timeout: float = 2.0) -> str | None:
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=timeout) as response:
            return str(response.read().decode())
    except (urllib.error.URLError, OSError):
        return None


def http_json(address: str, path: str) -> Any:
    text = http(address, path)
    if text is None:
        raise E2EError(f"GET http://{address}{path} failed")
    return json.loads(text)


@dataclass
class Sv1Miner:
    """An SV1 connection held open (subscribe and authorize sent) so the translator keeps a channel."""

    port: int
    worker: str
    sock: socket.socket = field(init=False)

    def __post_init__(self) -> None:
        self.sock = socket.create_connection((LOOPBACK, self.port), timeout=5)
        calls = [("mining.subscribe", ["sv2-k8s-e2e/1"]), ("mining.authorize", [self.worker, "x"])]
        for number, (method, params) in enumerate(calls, 1):
            self.sock.sendall(json.dumps({"id": number, "method": method, "params": params}).encode() + b"\n")


@contextlib.contextmanager
def held(miners: list[Sv1Miner]) -> Iterator[None]:
    try:
        yield
    finally:
        for miner in miners:
            miner.sock.close()
