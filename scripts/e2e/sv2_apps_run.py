"""Processes and loopback clients for scripts/e2e/sv2_apps.py.

Every process started through Apps is ended when the Apps context closes (SIGINT, then SIGKILL),
failures included, and dies with the Python process itself through PR_SET_PDEATHSIG.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import tomli_w

LOOPBACK = "127.0.0.1"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")


class E2EError(AssertionError):
    """A check failed: what was expected, and what the binary did instead."""


def cache_dir() -> Path:
    return Path(os.environ.get("SV2_E2E_CACHE", Path.home() / ".cache/sv2-k8s-e2e"))


def binary(name: str) -> Path:
    path = cache_dir() / "bin" / name
    if not os.access(path, os.X_OK):
        raise E2EError(f"{path} is missing: build it first (scripts/e2e/tools.sh sv2 fake_tp)")
    return path


def free_port() -> int:
    # Racy by nature (released before the binary binds it); fine on one host.
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def lines(self) -> list[str]:
        return ANSI.sub("", self.log.read_text(errors="replace")).splitlines()

    def grep(self, pattern: str) -> list[str]:
        return [line for line in self.lines() if re.search(pattern, line)]

    def wait_for(self, pattern: str, timeout: float) -> str:
        found: str = wait(
            lambda: next(iter(self.grep(pattern)), None), timeout, f"/{pattern}/ in its log", self
        )
        return found

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise E2EError(f"{self.name} still running after {timeout:g} s: {self.tail()}") from None

    def tail(self, count: int = 4) -> str:
        return " | ".join(line[-200:] for line in self.lines()[-count:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)  # what pool and translator shut down on
            try:
                self.popen.wait(8)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def wait(probe: Callable[[], Any], timeout: float, what: str, proc: Proc | None = None) -> Any:
    """Polls `probe` until it returns non-None; fails early when `proc` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := probe()) is not None:
            return value
        if proc is not None and proc.popen.poll() is not None:
            if (value := probe()) is not None:
                return value
            raise E2EError(f"no {what}: {proc.name} exited with {proc.popen.returncode}: {proc.tail()}")
        time.sleep(0.1)
    raise E2EError(f"no {what} within {timeout:g} s" + (f"; {proc.name}: {proc.tail()}" if proc else ""))


def seconds_between(lines: list[str]) -> list[float]:
    """Gaps between the tracing timestamps that start log lines."""
    stamps = [datetime.fromisoformat(m.group(1)) for line in lines if (m := STAMP.match(line))]
    return [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]


class Apps:
    """Starts processes in a scratch dir and ends every one of them on exit, failure included."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sv2-apps-e2e-"))
        self.procs: list[Proc] = []

    def __enter__(self) -> Apps:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            for proc in reversed(self.procs):
                proc.stop()
        finally:
            if os.environ.get("SV2_E2E_KEEP_LOGS"):
                print(f"e2e: logs kept in {self.dir}")
            else:
                shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, name: str, argv: list[str | Path]) -> Proc:
        log = self.dir / f"{len(self.procs):02d}-{name}.log"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUST_LOG": "debug", "NO_COLOR": "1"}
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [str(arg) for arg in argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.dir,
                env=env,
                preexec_fn=_die_with_parent,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def config(self, name: str, table: dict[str, Any]) -> Path:
        path = self.dir / f"{len(self.procs):02d}-{name}"
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


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((LOOPBACK, port)) == 0


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
