"""One way to run a process in the e2e: the control plane's etcd and API server, the sv2 apps.

    with ProcessGroup(folder) as group:
        pool = group.start("pool", [binary, "-c", config])
        pool.wait_for("Starting downstream server", timeout=15)
        wait(lambda: listening(port) or None, 15, f"pool on port {port}", processes=[pool])

Each process runs in its own session with its output in a log in the group's folder, dies with
the harness (PR_SET_PDEATHSIG: a SIGKILLed harness cannot clean up), and is stopped by pid with a
grace period (its stop signal, then SIGKILL) when the group closes, last started first, failures
included. Everything listens on loopback, on ports from free_port().
"""

from __future__ import annotations

import ctypes
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

LOOPBACK = "127.0.0.1"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
T = TypeVar("T")


class E2EError(AssertionError):
    """A check of the e2e failed: what was expected, and what happened instead."""


def free_port() -> int:
    """A free TCP port on loopback. Racy by nature (released before the binary binds it); good
    enough on one host."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((LOOPBACK, port)) == 0


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def output_of(argv: Sequence[str | Path], timeout: float = 120) -> str:
    """A short command run to its end, dying with the harness: its output (stdout and stderr), or
    E2EError naming the command and its exit code."""
    done = subprocess.run(
        [str(arg) for arg in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        preexec_fn=_die_with_parent,
    )
    if done.returncode != 0:
        raise E2EError(
            f"{' '.join(map(str, argv))} exited {done.returncode}: {(done.stdout + done.stderr)[-800:]}"
        )
    return done.stdout + done.stderr


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    stop_signal: int = signal.SIGTERM
    grace: float = 15.0  # seconds between stop_signal and SIGKILL

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def exit_code(self) -> int | None:
        """None while it runs."""
        return self.popen.poll()

    def lines(self) -> list[str]:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return ANSI.sub("", text).splitlines()

    def grep(self, pattern: str) -> list[str]:
        return [line for line in self.lines() if re.search(pattern, line)]

    def tail(self, count: int = 4, separator: str = " | ") -> str:
        """The last `count` lines of its log, each cut to its last 200 characters."""
        return separator.join(line[-200:] for line in self.lines()[-count:])

    def wait_for(self, pattern: str, timeout: float) -> str:
        """The first log line matching `pattern`; fails when it does not come, or the process exits."""
        found: str = wait(
            lambda: next(iter(self.grep(pattern)), None), timeout, f"/{pattern}/ in its log", [self]
        )
        return found

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise E2EError(f"{self.name} still running after {timeout:g} s: {self.tail()}") from None

    def stop(self) -> None:
        """Ends it by pid: its stop signal, then SIGKILL once its grace period has passed."""
        if self.popen.poll() is None:
            self.popen.send_signal(self.stop_signal)
            try:
                self.popen.wait(self.grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        self.popen.wait()


def wait(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    processes: Sequence[Process] = (),
    *,
    interval: float = 0.1,
    status: Callable[[], str] | None = None,
) -> T:
    """Polls `probe` until it returns something other than None, and returns that. A probe that
    raises OSError or ValueError is not ready yet (nothing listening, half an answer). Fails early
    when one of `processes` exits meanwhile; on a timeout, says `status()` and the processes' logs."""

    def ready() -> T | None:
        try:
            return probe()
        except (OSError, ValueError):
            return None

    deadline = time.monotonic() + timeout
    while True:
        if (value := ready()) is not None:
            return value
        if exited := [p for p in processes if p.exit_code is not None]:
            if (value := ready()) is not None:  # it may have written the line, then exited
                return value
            process = exited[0]
            raise E2EError(f"no {what}: {process.name} exited with {process.exit_code}: {process.tail()}")
        if time.monotonic() > deadline:
            details = [status()] if status else []
            details += [f"{p.name}: {p.tail()}" for p in processes]
            raise E2EError(f"no {what} within {timeout:g} s" + "".join(f"; {d}" for d in details))
        time.sleep(interval)


class ProcessGroup:
    """Processes started in one folder, each logging to NN-name.log there; stopped together when
    the group closes (last started first), with `stop_signal` and `grace` seconds each."""

    def __init__(self, folder: Path, *, stop_signal: int = signal.SIGTERM, grace: float = 15.0) -> None:
        self.folder = folder
        self.stop_signal = stop_signal
        self.grace = grace
        self.processes: list[Process] = []

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, name: str, argv: Iterable[str | Path], env: Mapping[str, str] | None = None) -> Process:
        """Starts `argv` in the group's folder, stdin closed, stdout and stderr to its log."""
        log = self.folder / f"{len(self.processes):02d}-{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [str(arg) for arg in argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                env=env,
                # Own session: a terminal's Ctrl-C reaches only the harness, which stops them in order.
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        process = Process(name, popen, log, self.stop_signal, self.grace)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
