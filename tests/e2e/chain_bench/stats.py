"""The statistics of make bench-chain: percentiles of latencies, and CPU time and memory of a
process read from /proc (tests/test_chain_bench.py tests them)."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Percentiles:
    count: int
    p50: float
    p90: float
    p99: float
    worst: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Percentiles:
        """Percentiles by linear interpolation between the closest ranks (statistics' inclusive
        method: p50 of [1, 2, 3, 4] is 2.5); at least two samples."""
        if len(samples) < 2:
            raise ValueError(f"percentiles need at least two samples, got {len(samples)}")
        cuts = statistics.quantiles(samples, n=100, method="inclusive")
        return cls(len(samples), cuts[49], cuts[89], cuts[98], max(samples))

    def ms(self) -> str:
        return (
            f"p50 {self.p50 * 1e3:.1f} ms, p90 {self.p90 * 1e3:.1f} ms, p99 {self.p99 * 1e3:.1f} ms "
            f"(max {self.worst * 1e3:.1f} ms, n={self.count})"
        )


def cpu_seconds(stat_line: str) -> float:
    """User + system CPU seconds from a /proc/<pid>/stat line. The command name (field 2) is in
    parentheses and may itself hold spaces and parentheses, so fields count from the last ')'."""
    fields = stat_line[stat_line.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / TICKS_PER_SECOND


def rss_bytes(status_text: str) -> int:
    """VmRSS from a /proc/<pid>/status text, in bytes (0 for a zombie, which has none)."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            amount, unit = line.split()[1:3]
            if unit != "kB":
                raise ValueError(f"unexpected VmRSS unit {unit!r}")
            return int(amount) * 1024
    return 0


def process_cpu(pid: int) -> float:
    return cpu_seconds((PROC / str(pid) / "stat").read_text())


def process_rss(pid: int) -> int:
    return rss_bytes((PROC / str(pid) / "status").read_text())


def children(pid: int) -> dict[str, int]:
    """The direct children of `pid`, by command name (comm)."""
    found: dict[str, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it ended meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        if parent == pid:
            found[name] = int(entry.name)
    return found


class CpuMeter:
    """Share of one core each process used between start() and stop(): CPU seconds / wall seconds."""

    def __init__(
        self,
        pids: Mapping[str, int],
        read: Callable[[int], float] = process_cpu,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pids, self.read, self.clock = dict(pids), read, clock
        self.started = 0.0
        self.before: dict[str, float] = {}

    def start(self) -> None:
        self.before = {name: self.read(pid) for name, pid in self.pids.items()}
        self.started = self.clock()

    def stop(self) -> dict[str, float]:
        wall = self.clock() - self.started
        if wall <= 0:
            raise ValueError("no time passed between start() and stop()")
        return {name: (self.read(pid) - self.before[name]) / wall for name, pid in self.pids.items()}


def cores(shares: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {share * 100:.1f}%" for name, share in shares.items())
