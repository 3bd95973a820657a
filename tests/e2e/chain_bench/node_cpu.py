"""Whether sv2-tp's busy loop starves bitcoin-node (make bench-chain, before the miners).

sv2-tp 1.0.5 keeps a core busy while the pool is connected
(docs/upstream-behaviour.md#sv2-tp-keeps-a-core-busy-while-a-client-is-connected); in the pod it
shares the node container's CPU with bitcoin-node, under `nice -n 10` (start-sv2-tp.sh). Here
both are pinned to one core — a container with one core to share, tighter than any default
nodeResources — and the node's share of that core while it mines (generatetoaddress: CPU bound,
validation included) and its RPC latency are measured with sv2-tp idle (no pool), spinning at
the image's nice 10, and spinning at nice 0 (the control: what the nice buys).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.chain_bench.chain import Rpc, threads
from tests.e2e.chain_bench.stats import CpuMeter, Percentiles

MINE_SECONDS = 6.0
RPC_CALLS = 200
CORE = 0


@dataclass(frozen=True)
class NodeCpu:
    condition: str
    node_share: float  # of the shared core, while mining
    tp_share: float
    blocks: int
    rpc: Percentiles  # getblockchaininfo round trips, not mining

    def line(self) -> str:
        return (
            f"{self.condition}: bitcoin-node {self.node_share * 100:.0f}% of the shared core while mining "
            f"({self.blocks} blocks in {MINE_SECONDS:g} s), sv2-tp {self.tp_share * 100:.0f}%; "
            f"getblockchaininfo {self.rpc.ms()}"
        )


def nice_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[16])  # field 19 of proc(5)


def pin(pids: dict[str, int]) -> None:
    """Every thread of each process on CORE (threads started later inherit it)."""
    for pid in pids.values():
        for tid in threads(pid):
            os.sched_setaffinity(tid, {CORE})


def unpin(pids: dict[str, int]) -> None:
    everywhere = set(range(os.cpu_count() or 1))
    for pid in pids.values():
        for tid in threads(pid):
            os.sched_setaffinity(tid, everywhere)


def renice(pid: int, value: int) -> None:
    """Niceness is per thread on Linux: set it on each."""
    for tid in threads(pid):
        os.setpriority(os.PRIO_PROCESS, tid, value)


def measure(condition: str, rpc: Rpc, pids: dict[str, int], address: str) -> NodeCpu:
    pin(pids)
    rounds = []
    for _ in range(RPC_CALLS):
        started = time.monotonic()
        rpc("getblockchaininfo")
        rounds.append(time.monotonic() - started)
    meter = CpuMeter(pids)
    meter.start()
    blocks, deadline = 0, time.monotonic() + MINE_SECONDS
    while time.monotonic() < deadline:
        rpc.mine(address)
        blocks += 1
    shares = meter.stop()
    return NodeCpu(condition, shares["bitcoin-node"], shares["sv2-tp"], blocks, Percentiles.of(rounds))
