"""The statistics and the pure helpers of make bench-chain (tests/e2e/chain_bench/)."""

import os

import pytest

from tests.e2e.chain_bench.floor import sv1_prevhash
from tests.e2e.chain_bench.stats import (
    TICKS_PER_SECOND,
    CpuMeter,
    Percentiles,
    cpu_seconds,
    process_cpu,
    process_rss,
    rss_bytes,
)
from tests.e2e.chain_bench.swarm import tip_of


def test_percentiles_interpolate_between_ranks() -> None:
    found = Percentiles.of([float(n) for n in range(1, 101)])  # 1 … 100
    assert (found.count, found.p50, found.p90, found.p99, found.worst) == (100, 50.5, 90.1, 99.01, 100.0)
    assert Percentiles.of([4.0, 1.0, 3.0, 2.0]).p50 == 2.5  # order does not matter


def test_percentiles_of_one_outlier_show_it_only_at_the_top() -> None:
    found = Percentiles.of([0.001] * 99 + [1.0])
    assert found.p50 == found.p90 == 0.001
    assert found.worst == 1.0
    assert 0.001 < found.p99 < 1.0


def test_percentiles_need_two_samples() -> None:
    with pytest.raises(ValueError, match="at least two"):
        Percentiles.of([1.0])


def test_milliseconds_line() -> None:
    assert Percentiles.of([0.001, 0.003]).ms() == ("p50 2.0 ms, p90 2.8 ms, p99 3.0 ms (max 3.0 ms, n=2)")


def test_cpu_seconds_count_fields_after_the_command_name() -> None:
    # A thread name with spaces and parentheses, as sv2-tp's and Bitcoin Core's have.
    fields = ["S", "1", "2", "3", "0", "-1", "4194560", "0", "0", "0", "0"]
    line = f"42 (b-sv2 (conn) x) {' '.join(fields)} {3 * TICKS_PER_SECOND} {TICKS_PER_SECOND} 0 0 20 0"
    assert cpu_seconds(line) == 4.0


def test_rss_in_bytes_and_zero_for_a_zombie() -> None:
    assert rss_bytes("Name:\tx\nVmRSS:\t   1024 kB\nThreads:\t1\n") == 1024 * 1024
    assert rss_bytes("Name:\tx\nState:\tZ (zombie)\n") == 0
    with pytest.raises(ValueError, match="unit"):
        rss_bytes("VmRSS:\t1 MB\n")


def test_this_process_reads_from_proc() -> None:
    assert process_rss(os.getpid()) > 1 << 20
    before = process_cpu(os.getpid())
    sum(range(3_000_000))
    assert process_cpu(os.getpid()) > before


def test_cpu_meter_divides_cpu_time_by_wall_time() -> None:
    cpu = {1: 10.0, 2: 5.0}
    clock = [100.0]
    meter = CpuMeter({"busy": 1, "idle": 2}, read=lambda pid: cpu[pid], clock=lambda: clock[0])
    meter.start()
    cpu[1] += 3.0  # three CPU seconds in four wall seconds
    clock[0] += 4.0
    assert meter.stop() == {"busy": 0.75, "idle": 0.0}


def test_cpu_meter_refuses_no_elapsed_time() -> None:
    meter = CpuMeter({"x": 1}, read=lambda pid: 0.0, clock=lambda: 5.0)
    meter.start()
    with pytest.raises(ValueError, match="no time"):
        meter.stop()


def test_floor_and_swarm_agree_on_the_previous_block_hash() -> None:
    # Block 1 of the signet genesis chain, as RPC prints it; SV1 swaps each 4-byte word.
    block = "00000086d6b2636cb2a392d45edc4ec544a10024d30141c9adf4bfd9de533b53"
    assert sv1_prevhash(block) != block
    assert tip_of(sv1_prevhash(block)) == block
