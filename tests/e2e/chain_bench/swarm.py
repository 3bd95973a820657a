"""Simulated SV1 miners for make bench-chain: many connections in one asyncio loop, each doing
what a miner does before it hashes (subscribe, then authorize once the subscribe reply came, then
wait for work) and recording when things happened. They never hash: the translator's cost per
connection is the handshake, the jobs it sends and the state it keeps.

    swarm = Swarm([port])
    await swarm.open(1000, rate=200)                  # paced; rate=None opens them all at once
    await swarm.until(lambda: swarm.with_job() == 1000, 60, "1000 miners with a job")
    await swarm.until(lambda: swarm.on_tip(block) == 1000, 30, "the block at every miner")

Miner i connects to ports[i % len(ports)]: a load balancer's even spread over replicas.
With `reconnect`, a miner whose connection closes retries every RETRY_SECONDS, with no
back-off and no jitter: the worst case of a farm after a pool restart.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sv1_probe.probe import prevhash_bytes
from tests.e2e.processes import LOOPBACK, E2EError

RETRY_SECONDS = 0.5
SUBSCRIBE, AUTHORIZE = 1, 2


def raise_file_limit() -> int:
    """Open files up to the hard limit: a connection is a file, on either end."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def tip_of(sv1_prevhash: str) -> str:
    """A mining.notify's previous-block hash in RPC byte order (as getbestblockhash prints it)."""
    return prevhash_bytes(sv1_prevhash)[::-1].hex()


@dataclass
class Miner:
    index: int
    port: int
    connects: int = 0  # successful connections, the first one included
    connected: float | None = None  # of the current connection
    first_job: float | None = None  # of the current connection
    closed: float | None = None  # when its last connection closed (None while connected)
    tips: dict[str, float] = field(default_factory=dict)  # tip → first clean notify on it


class _Connection(asyncio.Protocol):
    def __init__(self, swarm: Swarm, miner: Miner) -> None:
        self.swarm, self.miner, self.buffer = swarm, miner, b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.send(SUBSCRIBE, "mining.subscribe", ["sv2-k8s-bench/1"])

    def send(self, request_id: int, method: str, params: list[object]) -> None:
        assert self.transport is not None
        line = json.dumps({"id": request_id, "method": method, "params": params}) + "\n"
        self.transport.write(line.encode())

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            message = json.loads(line)
            if message.get("id") == SUBSCRIBE and message.get("method") is None:
                self.send(AUTHORIZE, "mining.authorize", [f"bench.{self.miner.index}", "x"])
            elif message.get("method") == "mining.notify":
                params = message["params"]
                if self.miner.first_job is None:
                    self.miner.first_job = now
                if params[8]:
                    self.miner.tips.setdefault(tip_of(params[1]), now)

    def connection_lost(self, error: Exception | None) -> None:
        self.miner.closed = time.monotonic()
        self.swarm.lost(self.miner)


@dataclass
class Swarm:
    ports: list[int]
    host: str = LOOPBACK
    reconnect: bool = False
    miners: list[Miner] = field(default_factory=list)
    transports: dict[int, asyncio.BaseTransport] = field(default_factory=dict)
    refused: int = 0  # connection attempts that failed
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def _connect(self, miner: Miner) -> None:
        while True:
            try:
                loop = asyncio.get_running_loop()
                transport, _ = await loop.create_connection(
                    lambda: _Connection(self, miner), self.host, miner.port
                )
            except OSError:
                self.refused += 1
                if not self.reconnect:
                    miner.closed = time.monotonic()
                    return
                await asyncio.sleep(RETRY_SECONDS)
                continue
            miner.connects += 1
            miner.connected, miner.first_job, miner.closed = time.monotonic(), None, None
            self.transports[miner.index] = transport
            return

    def _spawn(self, miner: Miner) -> None:
        task = asyncio.get_running_loop().create_task(self._connect(miner))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def lost(self, miner: Miner) -> None:
        self.transports.pop(miner.index, None)
        if self.reconnect:
            self._spawn(miner)

    async def open(self, count: int, rate: float | None) -> float:
        """Opens `count` more miners, `rate` per second (None: all at once); returns the seconds
        it took to start them (their handshakes go on in the background)."""
        started = time.monotonic()
        for number in range(count):
            miner = Miner(len(self.miners), self.ports[len(self.miners) % len(self.ports)])
            self.miners.append(miner)
            self._spawn(miner)
            if rate:
                await asyncio.sleep(max(0.0, started + (number + 1) / rate - time.monotonic()))
        await asyncio.sleep(0)
        return time.monotonic() - started

    def with_job(self) -> int:
        return sum(1 for m in self.miners if m.closed is None and m.first_job is not None)

    def connected(self) -> int:
        return sum(1 for m in self.miners if m.closed is None and m.connected is not None)

    def dropped(self) -> int:
        """Miners whose connection is closed (the server closed it, or it never opened)."""
        return sum(1 for m in self.miners if m.closed is not None)

    def on_tip(self, tip: str) -> int:
        return sum(1 for m in self.miners if m.closed is None and tip in m.tips)

    def tip_latencies(self, tip: str, since: float) -> list[float]:
        return [m.tips[tip] - since for m in self.miners if tip in m.tips]

    def job_times(self) -> list[float]:
        """Seconds from each miner's connection to its first job (connected miners with a job)."""
        return [
            m.first_job - m.connected
            for m in self.miners
            if m.closed is None and m.first_job is not None and m.connected is not None
        ]

    async def until(
        self,
        done: Callable[[], bool],
        timeout: float,
        what: str,
        *,
        fail: Callable[[], str | None] = lambda: None,
    ) -> float:
        """Seconds until `done()`; E2EError after `timeout` or as soon as `fail()` names a reason."""
        started = time.monotonic()
        while not done():
            if reason := fail():
                raise E2EError(f"no {what}: {reason}")
            if time.monotonic() - started > timeout:
                raise E2EError(
                    f"no {what} within {timeout:g} s: {self.connected()} connected, "
                    f"{self.with_job()} with a job, {self.dropped()} closed, {self.refused} refused"
                )
            await asyncio.sleep(0.01)
        return time.monotonic() - started

    async def close(self) -> None:
        self.reconnect = False
        for task in list(self.tasks):
            task.cancel()
        for transport in list(self.transports.values()):
            transport.close()
        self.transports.clear()
        await asyncio.sleep(0.1)
