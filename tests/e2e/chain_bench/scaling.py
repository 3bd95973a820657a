"""SV1 connections per server (make bench-chain): N simulated miners against one translator and
against the floor (floor.py), the same client and pacing for both; bursts of connections at once;
the reconnect storm after a pool restart across the replicas the program's sizing gives."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tests.e2e.chain.node import Chain, start_apps
from tests.e2e.chain_bench.chain import start_translator
from tests.e2e.chain_bench.stats import CpuMeter, Percentiles, process_rss
from tests.e2e.chain_bench.swarm import Swarm
from tests.e2e.processes import LOOPBACK, E2EError, Process

JOB_TIMEOUT = 120.0  # for all miners of one step to have a job
FANOUT_TIMEOUT = 30.0
# The translator's vardiff loop runs every 60 s and its keepalive jobs go out after 60 s without
# one: holding the miners this long after the last job lets both fire once with all connected.
HOLD_SECONDS = 95.0
SETTLE_SECONDS = 1.0  # before reading a fresh process's memory


@dataclass
class Server:
    """An SV1 server under test: where it listens, its process, and how a new block reaches it."""

    name: str
    process: Process
    ports: list[int]
    new_block: Callable[[], Awaitable[tuple[float, str]]]  # → (when the block was made, its hash)
    pids: dict[str, int] = field(default_factory=dict)

    def broken(self, swarm: Swarm) -> str | None:
        if self.process.exit_code is not None:
            why = self.process.grep(r"shutdown|Shutdown|ERROR|error")
            last = why[-1][-200:] if why else self.process.tail(1)
            return f"{self.name} exited {self.process.exit_code}: {last}"
        if dropped := swarm.dropped():
            lagged = len(self.process.grep(r"Lagged"))
            return f"{dropped} miners dropped ({lagged} 'Lagged' log lines)"
        return None


@dataclass
class Step:
    server: str
    count: int
    seconds_to_jobs: float | None = None
    job_times: Percentiles | None = None
    rss_per_miner: float | None = None  # bytes
    fanout: Percentiles | None = None
    cpu: float | None = None  # share of a core while the miners connected
    held: float = 0.0  # seconds the miners were held afterwards, none dropped
    broke: str | None = None
    broke_at: int | None = None  # miners with a job when it broke

    def line(self) -> str:
        head = f"{self.server} {self.count:,} miners"
        if self.broke:
            return f"{head}: BROKE with {self.broke_at:,} miners with a job: {self.broke}"
        assert self.job_times and self.fanout
        memory = f", RSS {self.rss_per_miner / 1e3:.0f} kB/miner" if self.rss_per_miner is not None else ""
        return (
            f"{head}: all with a job in {self.seconds_to_jobs:.1f} s (connect→job {self.job_times.ms()}), "
            f"CPU {100 * (self.cpu or 0):.0f}% of a core while connecting{memory}; "
            f"one block to all: {self.fanout.ms()}"
            + (f"; held {self.held:g} s, none dropped" if self.held else "")
        )


async def control_block(port: int) -> tuple[float, str]:
    """The floor's new block: a made-up hash, announced over a control connection."""
    block = secrets.token_hex(32)
    _, writer = await asyncio.open_connection(LOOPBACK, port)
    made = time.monotonic()
    writer.write((json.dumps({"id": 0, "method": "bench.new_block", "params": [block]}) + "\n").encode())
    await writer.drain()
    writer.close()
    return made, block


async def reach(server: Server, swarm: Swarm) -> list[float]:
    """Seconds from a new block to its clean mining.notify, at each connected miner."""
    made, block = await server.new_block()
    live = swarm.connected()
    await swarm.until(
        lambda: swarm.on_tip(block) >= live,
        FANOUT_TIMEOUT,
        f"clean job on {block[:16]}… at all {live} miners",
        fail=lambda: server.broken(swarm),
    )
    return swarm.tip_latencies(block, made)


async def connect(server: Server, count: int, rate: float | None, hold: float) -> Step:
    """`count` miners at `rate` per second; all with a job, one block to all, then held."""
    step = Step(server.name, count)
    swarm = Swarm(server.ports)
    await asyncio.sleep(SETTLE_SECONDS)
    baseline = process_rss(server.process.pid)
    meter = CpuMeter({"server": server.process.pid})
    meter.start()
    opening = asyncio.create_task(swarm.open(count, rate))
    try:
        step.seconds_to_jobs = await swarm.until(
            lambda: opening.done() and swarm.with_job() == count,
            JOB_TIMEOUT + (count / rate if rate else 0),
            f"job at all {count} miners",
            fail=lambda: server.broken(swarm),
        )
        step.cpu = meter.stop()["server"]
        step.job_times = Percentiles.of(swarm.job_times())
        await asyncio.sleep(SETTLE_SECONDS)
        step.rss_per_miner = (process_rss(server.process.pid) - baseline) / count
        step.fanout = Percentiles.of(await reach(server, swarm))
        deadline = time.monotonic() + hold
        while time.monotonic() < deadline:
            if reason := server.broken(swarm):
                raise E2EError(f"while held {hold:g} s: {reason}")
            await asyncio.sleep(0.2)
        step.held = hold
    except E2EError as error:
        step.broke, step.broke_at = str(error), swarm.with_job()
    finally:
        opening.cancel()
        await swarm.close()
    return step


@dataclass
class Storm:
    farm: int
    replicas: int
    seconds_to_jobs: float | None = None
    reconnects: int = 0
    broke: str | None = None
    translator_cpu: float | None = None

    def line(self) -> str:
        each = self.farm // self.replicas
        head = f"reconnect storm: {self.farm:,} miners on {self.replicas} replicas ({each:,} each)"
        if self.broke:
            return f"{head}: BROKE: {self.broke}"
        return (
            f"{head}: after the pool restart all {self.farm:,} had a job again "
            f"{self.seconds_to_jobs:.1f} s after the translators listened "
            f"({self.reconnects:,} reconnections: one each, "
            f"translators {100 * (self.translator_cpu or 0):.0f}% of a core each meanwhile); "
            f"none dropped in the {HOLD_SECONDS:g} s after"
        )


async def storm(chain: Chain, farm: int, replicas: int, rate: float) -> Storm:
    """`farm` miners spread evenly over `replicas` translators; the pool restarts (every
    translator exits with it, as with one upstream it does) and the translators restart at once,
    as their Deployment restarts them; every miner retries every RETRY_SECONDS meanwhile."""
    result = Storm(farm, replicas)
    started = [start_translator(chain, 1 + index) for index in range(replicas)]
    ports = [(port, metrics) for _, port, metrics in started]
    processes = [process for process, _, _ in started]
    swarm = Swarm([port for port, _ in ports], reconnect=True)

    def broken() -> str | None:
        if exited := [p for p in processes if p.exit_code is not None]:
            return f"{len(exited)} translators exited: {exited[0].tail(2)}"
        if (again := sum(m.connects for m in swarm.miners) - farm - result.reconnects) > 0:
            return f"{again} miners lost their connection and reconnected"
        return None

    try:
        await swarm.open(farm, rate)
        await swarm.until(
            lambda: swarm.with_job() == farm, JOB_TIMEOUT + farm / rate, "job at every miner", fail=broken
        )
        assert chain.pool is not None
        chain.pool.stop()
        for process in processes:
            process.wait_exit(30)
        await swarm.until(lambda: swarm.connected() == 0, 30, "every miner disconnected")
        start_apps(chain, "pool")
        processes = [start_translator(chain, 1, ports[0])[0]]
        first_listening = time.monotonic()
        processes += [
            start_translator(chain, 1 + index, port)[0] for index, port in enumerate(ports) if index
        ]
        meter = CpuMeter({str(index): process.pid for index, process in enumerate(processes)})
        meter.start()
        await swarm.until(
            lambda: swarm.with_job() == farm,
            JOB_TIMEOUT,
            "job at every miner after the restart",
            fail=lambda: next(
                (f"translator exited: {p.tail(2)}" for p in processes if p.exit_code is not None), None
            ),
        )
        result.seconds_to_jobs = time.monotonic() - first_listening
        result.translator_cpu = max(meter.stop().values())
        result.reconnects = sum(m.connects for m in swarm.miners) - farm
        if result.reconnects > farm:  # a miner the restarted translator dropped came back again
            raise E2EError(
                f"{result.reconnects - farm} miners were dropped during the storm and reconnected again"
            )
        deadline = time.monotonic() + HOLD_SECONDS
        while time.monotonic() < deadline:
            if reason := broken():
                raise E2EError(reason)
            await asyncio.sleep(0.2)
    except E2EError as error:
        result.broke = f"{error} ({swarm.with_job():,} with a job)"
    finally:
        await swarm.close()
        for process in processes:
            process.stop()
    return result
